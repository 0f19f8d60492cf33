#!/usr/bin/env bash
# COPY throughput and memory: `strata build` against buildah on the same Dockerfile and context,
# in one run, interleaved.
#
#   bench/copy.sh [REPS]        (default 3; root; ~12 GiB free in $BENCH_DIR)
#
# Cases:
#   20k  — `COPY data /data/` of 20,000 files, 1 GiB in all (incompressible slices of random
#          bytes), FROM scratch. strata with its default gzip layers and with --compression zstd;
#          buildah with --no-cache (its local layers are stored uncompressed).
#   4g   — `COPY big.bin /big.bin` of one 4 GiB file: strata's peak RSS (target < 150 MiB).
# Prints per-case medians (seconds), the ratio ours/buildah (< 1: strata faster) and peak RSS.
#
#   BASELINE=path/to/old/strata   also run the old binary on every strata case, interleaved,
#                                 and print new/old ratios
#   PEER=0                        leave buildah out (with BASELINE: a before/after run)
set -euo pipefail
reps=${1:-3}
here=$(cd "$(dirname "$0")" && pwd); repo=$(cd "$here/.." && pwd)
source "$here/lib.sh"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$repo/target}"
S=$(strata_binary)
OLD=$(baseline_binary)
[ -x /usr/bin/time ] || { echo "need /usr/bin/time" >&2; exit 1; }
if peer_enabled; then command -v buildah >/dev/null || { echo "need buildah (or PEER=0)" >&2; exit 1; }; fi
work=${BENCH_DIR:-/var/tmp/strata-bench-copy}
mkdir -p "$work"
tag=strata-bench-copy
trap 'rm -rf "$work/store"; if peer_enabled; then buildah rmi -f $tag >/dev/null 2>&1 || true; fi' EXIT

ctx="$work/ctx20k"
if [ ! -f "$ctx/.done" ]; then
  mkdir -p "$ctx/data"
  python3 - "$ctx/data" <<'PY'
import os, sys
base = sys.argv[1]; blob = os.urandom(1 << 20); n = 20000; size = (1 << 30) // n
for i in range(n):
    d = f"{base}/d{i // 500:03d}"
    os.makedirs(d, exist_ok=True)
    off = (i * 7919) % ((1 << 20) - size)
    with open(f"{d}/f{i:05d}.bin", "wb") as f:
        f.write(blob[off:off + size])
PY
  printf 'FROM scratch\nCOPY data /data/\n' > "$ctx/Dockerfile"
  touch "$ctx/.done"
fi
big="$work/ctx4g"
if [ ! -f "$big/big.bin" ]; then
  mkdir -p "$big"
  head -c $((4096 * 1024 * 1024)) /dev/urandom > "$big/big.bin.tmp" && mv "$big/big.bin.tmp" "$big/big.bin"
  printf 'FROM scratch\nCOPY big.bin /big.bin\n' > "$big/Dockerfile"
fi

# run NAME CMD... : appends "NAME seconds maxrss_kb" to $work/times
run() {
  local name=$1; shift
  rm -rf "$work/store"; sync
  /usr/bin/time -f "$name %e %M" -a -o "$work/times" "$@" >/dev/null 2>"$work/last.err" \
    || { cat "$work/last.err" >&2; exit 1; }
}
: > "$work/times"
for _ in $(seq "$reps"); do
  run strata-gzip "$S" --root "$work/store" build -t $tag "$ctx"
  run strata-zstd "$S" --root "$work/store" build --compression zstd -t $tag "$ctx"
  if [[ -n $OLD ]]; then
    run old-gzip "$OLD" --root "$work/store" build -t $tag "$ctx"
    run old-zstd "$OLD" --root "$work/store" build --compression zstd -t $tag "$ctx"
  fi
  if peer_enabled; then
    run buildah buildah --runtime /usr/sbin/runc bud --no-cache --layers --format docker -t $tag "$ctx"
    buildah rmi -f $tag >/dev/null 2>&1 || true
  fi
done
run strata-4g "$S" --root "$work/store" build -t $tag "$big"
[[ -z $OLD ]] || run old-4g "$OLD" --root "$work/store" build -t $tag "$big"

median_of() { grep "^$1 " "$work/times" | awk '{print $2}' | median; }
rss() { grep "^$1 " "$work/times" | awk '{print $3}' | sort -n | tail -1; }
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores; $reps reps, interleaved, medians"
for c in gzip zstd; do
  m=$(median_of strata-$c)
  printf '20k files / 1 GiB  strata-%-5s median %6.2f s  peak RSS %4d MiB' "$c" "$m" $(( $(rss strata-$c) / 1024 ))
  if peer_enabled; then
    b=$(median_of buildah)
    printf '  buildah %6.2f s  ratio %s' "$b" "$(ratio "$m" "$b")"
  fi
  if [[ -n $OLD ]]; then
    o=$(median_of old-$c)
    printf '  baseline %6.2f s (RSS %d MiB)  new/old %s' "$o" $(( $(rss old-$c) / 1024 )) "$(ratio "$m" "$o")"
  fi
  echo
done
printf '4 GiB file         strata-gzip  %6.2f s  peak RSS %d MiB (target < 150)' \
  "$(median_of strata-4g)" $(( $(rss strata-4g) / 1024 ))
if [[ -n $OLD ]]; then
  printf '  baseline %6.2f s (RSS %d MiB)  new/old %s' "$(median_of old-4g)" $(( $(rss old-4g) / 1024 )) \
    "$(ratio "$(median_of strata-4g)" "$(median_of old-4g)")"
fi
echo
