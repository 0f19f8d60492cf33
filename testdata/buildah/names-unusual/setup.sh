# Names tar's old 100-byte header can't hold, non-ASCII and blank characters, in the context.
d=$(printf 'x%.0s' $(seq 1 120))
mkdir -p "$d/sub dir"
printf 'deep\n' > "$d/sub dir/$(printf 'y%.0s' $(seq 1 150)).txt"
printf 'u\n' > "ünïcödé 名前.txt"
printf 's\n' > "with space.txt"
