mkdir -p src/dir/sub
printf 'in archive\n' > src/dir/file
printf 'deeper\n' > src/dir/sub/f
ln -s file src/dir/link
ln src/dir/file src/dir/hardlink
chmod 0750 src/dir/sub
tar --owner=1000 --group=1000 --numeric-owner -C src -cf plain.tar dir
gzip -9 -c plain.tar > gz.tar.gz
bzip2 -c plain.tar > bz2.tar.bz2
xz -c plain.tar > xz.tar.xz
printf 'just text\n' > not-an-archive.txt
rm -rf src
