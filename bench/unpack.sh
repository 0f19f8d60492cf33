#!/usr/bin/env bash
# bench/unpack.sh: the first use of a big base layer. strata's first `run --rm IMG true` on an image
# whose layer is not unpacked yet (read + verify + inflate + diffID + create every file, then one
# container start) against `umoci unpack` of the very same image from the same OCI layout (strata's
# store is one), which also verifies digests and creates every file. Interleaved, medians, ratio.
#
#   bench/unpack.sh [REPS]       (default 5)
#   STRATA=path   the binary (default: target/release/strata, built if needed)
#   BASE=dir      the tree to import as the base (default: the debootstrapped Debian rootfs of
#                 testdata/debian/make-debian.sh, made if missing; ~120 MB, ~6.7k files)
#
# strata's warm `run --rm IMG true` (layer already unpacked) is timed too and printed, so the
# container start can be told apart from the unpack.
#
# Then `load` + the first `run --rm IMG true` of the same image saved as a docker archive, into a
# fresh store each rep: `load` unpacks the layers (as `pull` and `docker load` do), so the first run
# only starts. BASELINE=older/strata times the same with it, interleaved (before issue 17 `load`
# left layers packed and the first run unpacked them).
set -euo pipefail
reps=${1:-5}
here=$(cd "$(dirname "$0")" && pwd); repo=$(cd "$here/.." && pwd)
source "$here/lib.sh"
S=$(strata_binary)
command -v umoci >/dev/null || { echo "need umoci (scripts/setup.sh installs it)" >&2; exit 1; }
work=$(mktemp -d /var/tmp/strata-bench-unpack.XXXXXX)
trap 'rm -rf "$work"' EXIT
export STRATA_ROOT=$work/store

if [ -n "${BASE:-}" ]; then
  "$S" import "$BASE" bench/base:1 >/dev/null
else
  STRATA=$S "$repo/testdata/debian/make-debian.sh" bench/base:1 >/dev/null
fi
ref=docker.io/bench/base:1

BASE_BIN=$(baseline_binary)
declare -A T
timed() { # name cmd...
  local name=$1; shift
  local t0 t1; t0=$(now)
  "$@" >/dev/null
  t1=$(now)
  T[$name]+="$(echo "$t1 - $t0" | bc -l) "
}
for i in $(seq "$reps"); do
  rm -rf "$STRATA_ROOT"/layers/sha256/*
  timed strata-first "$S" run --rm bench/base:1 true
  timed strata-warm "$S" run --rm bench/base:1 true
  rm -rf "$work/umoci"
  timed umoci umoci unpack --image "$STRATA_ROOT:$ref" "$work/umoci"
done

o=$(echo "${T[strata-first]}" | median); w=$(echo "${T[strata-warm]}" | median)
p=$(echo "${T[umoci]}" | median)
printf '%-40s %8.2f s   runs: %s\n' "strata first run (unpack + start)" "$o" "${T[strata-first]}"
printf '%-40s %8.2f s   runs: %s\n' "strata warm run (start only)" "$w" "${T[strata-warm]}"
printf '%-40s %8.2f s   runs: %s\n' "umoci unpack" "$p" "${T[umoci]}"
echo "ratio strata first run / umoci unpack: $(ratio "$o" "$p")   ($reps reps, $(load_note))"

# --- load + first run ------------------------------------------------------------------------------
archive=$work/base.tar
"$S" save -o "$archive" bench/base:1
bins=(new); [ -n "$BASE_BIN" ] && bins+=(old)
for i in $(seq "$reps"); do
  for b in "${bins[@]}"; do
    bin=$S; [ "$b" = old ] && bin=$BASE_BIN
    rm -rf "$work/loaded"
    STRATA_ROOT=$work/loaded timed "load-$b" "$bin" load -q -i "$archive"
    STRATA_ROOT=$work/loaded timed "run1-$b" "$bin" run --rm bench/base:1 true
  done
done
for b in "${bins[@]}"; do
  l=$(echo "${T[load-$b]}" | median); r=$(echo "${T[run1-$b]}" | median)
  printf '%-40s %8.2f s + first run %6.2f s = %6.2f s   load runs: %s  first runs: %s\n' \
    "strata ($b) load" "$l" "$r" "$(echo "$l + $r" | bc -l)" "${T[load-$b]}" "${T[run1-$b]}"
  declare "total_$b=$(echo "$l + $r" | bc -l)" "run1_$b=$r"
done
if [ -n "$BASE_BIN" ]; then
  echo "load + first run new/old: $(ratio "$total_new" "$total_old"); first run alone new/old: $(ratio "$run1_new" "$run1_old")   ($reps reps, $(load_note))"
fi
