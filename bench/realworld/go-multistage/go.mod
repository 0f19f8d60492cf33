module example.com/realworld/server

go 1.19
