#!/usr/bin/env bash
# Layer-writing throughput: strata's writer (tar + diffID | parallel gzip/zstd + digest, one pass)
# against the shell pipelines a user would write, on the same trees, in one run, interleaved.
#
#   bench/layer.sh [REPS]        (default 3; needs root for nothing, ~15 GiB free in $BENCH_DIR)
#   BIG_MB=2048                  size of the big file (a smaller one for a quick run)
#   COMPRESSIONS="gzip zstd"     which compressions to run
#   BASELINE=path/to/strata      also time an older strata binary in the same interleaved run and
#                                print new/baseline (a before/after measurement)
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

big_mb=${BIG_MB:-2048}
compressions=${COMPRESSIONS:-gzip zstd}
big="$work/big"; [ "$big_mb" = 2048 ] || big="$work/big-$big_mb"
small="$work/small"
if [ ! -f "$big/file" ]; then
  mkdir -p "$big"
  head -c $((big_mb * 3 / 4 * 1024 * 1024)) /dev/urandom | base64 -w 0 | head -c $((big_mb * 1024 * 1024)) > "$big/file.tmp"
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
ours() { # tree compression [binary]
  rm -rf "$work/store"
  /usr/bin/time -f %M -o "$work/rss" "${3:-$S}" --root "$work/store" import --compression "$2" "$1" bench:x
  local r; r=$(cat "$work/rss"); [ "$r" -gt "$rss_max" ] && rss_max=$r; return 0
}
peer_gzip() { tar -C "$1" -cf - . | gzip | sha256sum; }
peer_zstd() { tar -C "$1" -cf - . | zstd -q -T0 | sha256sum; }

for i in $(seq "$reps"); do
  for tree in big small; do
    dir=${!tree}
    for c in $compressions; do
      run_case "ours-$c-$tree" ours "$dir" "$c"
      run_case "peer-$c-$tree" "peer_$c" "$dir"
      [ -z "${BASELINE:-}" ] || run_case "base-$c-$tree" ours "$dir" "$c" "$BASELINE"
    done
  done
done

printf '%-28s %10s %10s %10s %10s %8s\n' case "ours s" "peer s" "ours MB/s" "peer MB/s" ratio
for tree in big small; do
  dir=${!tree}; b=$(bytes_of "$dir")
  for c in $compressions; do
    o=$(echo "${T[ours-$c-$tree]}" | median); p=$(echo "${T[peer-$c-$tree]}" | median)
    label="$tree ($c) vs tar|$c|sha256sum"
    printf '%-28s %10.2f %10.2f %10.1f %10.1f %8.2f\n' "$tree-$c" "$o" "$p" \
      "$(echo "$b / 1000000 / $o" | bc -l)" "$(echo "$b / 1000000 / $p" | bc -l)" "$(echo "$o / $p" | bc -l)"
    : "$label"
    if [ -n "${BASELINE:-}" ]; then
      bl=$(echo "${T[base-$c-$tree]}" | median)
      printf '%-28s %10.2f s baseline, new/baseline %.2f\n' "$tree-$c" "$bl" "$(echo "$o / $bl" | bc -l)"
    fi
  done
done
echo "strata peak RSS: $((rss_max / 1024)) MiB (limit 100 MiB); $reps reps, $(load_note)"
[ $((rss_max / 1024)) -lt 100 ]
