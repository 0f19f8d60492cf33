mkdir -p dir/sub
printf 'shared\n' > dir/a
ln dir/a dir/b
ln dir/a dir/sub/c
printf 'alone\n' > dir/d
