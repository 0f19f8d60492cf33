module example.com/realworld/api

go 1.19
