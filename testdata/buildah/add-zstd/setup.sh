mkdir -p src/dir && printf 'zstd\n' > src/dir/file
tar -C src -cf - dir | zstd -q -c > z.tar.zst
rm -rf src
