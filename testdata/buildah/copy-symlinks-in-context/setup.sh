# Symlinks live in the context, made here (git keeps them, but this keeps the corpus self-explaining).
mkdir -p dir
printf 'target\n' > dir/target
ln -s target dir/rel-link
ln -s /etc/passwd dir/abs-link
ln -s ../outside dir/up-link
ln -s dir/target link-to-file
