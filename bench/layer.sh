#!/usr/bin/env bash
# Layer-writing throughput: strata's writer (tar + diffID | parallel gzip/zstd + digest, one pass)
# against the shell pipelines a user would write, on the same trees, in one run, interleaved.
#
#   bench/layer.sh [REPS]        (default 3; needs root for nothing, ~15 GiB free in $BENCH_DIR)
#
# Trees: one 2 GiB file (base64 of random bytes: ~75% compressible, like text/binaries mixed) and
# 50,000 small files (0–8 KiB). Prints per-case medians (MB/s of tree bytes), ratio ours/peer
# (time; < 1 means strata is faster) and strata's peak RSS (must stay under 100 MiB).
set -euo pipefail
reps=${1:-3}
here=$(cd "$(dirname "$0")" && pwd); repo=$(cd "$here/.." && pwd)
source "$here/lib.sh"
S=$(strata_binary)
command -v zstd >/dev/null && [ -x /usr/bin/time ] || { echo "need zstd and /usr/bin/time (apt-get install zstd time)" >&2; exit 1; }
work=${BENCH_DIR:-/var/tmp/strata-bench-layer}
mkdir -p "$work"
trap 'rm -rf "$work/store" "$work/out"' EXIT

big="$work/big"; small="$work/small"
if [ ! -f "$big/file" ]; then
  mkdir -p "$big"
  head -c $((1536 * 1024 * 1024)) /dev/urandom | base64 -w 0 | head -c $((2048 * 1024 * 1024)) > "$big/file.tmp"
  mv "$big/file.tmp" "$big/file"
fi
if [ ! -f "$small/.done" ]; then
  mkdir -p "$small"
  python3 - "$small" <<'PY'
import os, random, sys, base64
root = sys.argv[1]; r = random.Random(42)
for i in range(50000):
    d = os.path.join(root, f"d{i // 500:03d}")
    os.makedirs(d, exist_ok=True)
    n = r.randint(0, 8192)
    with open(os.path.join(d, f"f{i:05d}.txt"), "wb") as f:
        f.write(base64.b64encode(os.urandom(n * 3 // 4 + 1))[:n])
PY
  touch "$small/.done"
fi
bytes_of() { du -sb --apparent-size "$1" | cut -f1; }

declare -A T
rss_max=0
run_case() { # name cmd...
  local name=$1; shift
  sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true
  local t0 t1; t0=$(now)
  "$@" >/dev/null
  t1=$(now)
  T[$name]+="$(echo "$t1 - $t0" | bc -l) "
}
ours() { # tree compression
  rm -rf "$work/store"
  /usr/bin/time -f %M -o "$work/rss" "$S" --root "$work/store" import --compression "$2" "$1" bench:x
  local r; r=$(cat "$work/rss"); [ "$r" -gt "$rss_max" ] && rss_max=$r; return 0
}
peer_gzip() { tar -C "$1" -cf - . | gzip | sha256sum; }
peer_zstd() { tar -C "$1" -cf - . | zstd -q -T0 | sha256sum; }

for i in $(seq "$reps"); do
  for tree in big small; do
    dir=${!tree}
    run_case "ours-gzip-$tree" ours "$dir" gzip
    run_case "peer-gzip-$tree" peer_gzip "$dir"
    run_case "ours-zstd-$tree" ours "$dir" zstd
    run_case "peer-zstd-$tree" peer_zstd "$dir"
  done
done

printf '%-28s %10s %10s %10s %10s %8s\n' case "ours s" "peer s" "ours MB/s" "peer MB/s" ratio
for tree in big small; do
  dir=${!tree}; b=$(bytes_of "$dir")
  for c in gzip zstd; do
    o=$(echo "${T[ours-$c-$tree]}" | median); p=$(echo "${T[peer-$c-$tree]}" | median)
    label="$tree ($c) vs tar|$c|sha256sum"
    printf '%-28s %10.2f %10.2f %10.1f %10.1f %8.2f\n' "$tree-$c" "$o" "$p" \
      "$(echo "$b / 1000000 / $o" | bc -l)" "$(echo "$b / 1000000 / $p" | bc -l)" "$(echo "$o / $p" | bc -l)"
    : "$label"
  done
done
echo "strata peak RSS: $((rss_max / 1024)) MiB (limit 100 MiB)"
[ $((rss_max / 1024)) -lt 100 ]
