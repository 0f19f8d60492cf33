#!/usr/bin/env bash
# bench/bindmount.sh — a RUN that bind-mounts a stage (issue 12: content-based key of the mounted
# stage): strata against buildah (Debian's 1.28) on the same fixture, in one run, interleaved,
# REPS repetitions; prints medians, the ratio ours/peer and the machine's load.
#
# Fixture: stage `data` writes MB MiB of zeros to /data/blob and the build arg V to /v; the final
# stage runs `sleep 2 && md5sum` over `--mount=type=bind,from=data,source=/data` (standing for a
# costly step that reads the stage). Both tools first build it once (V=0). Then, per rep:
#   "rerun": a new V — the data stage reruns, /data is unchanged: strata keys the final RUN on
#            the mounted content and hits; a key on the stage's identity reruns it.
#   "same":  the same V again — every step a hit; what strata pays here is hashing the mounted
#            MB MiB on every build.
#
# Usage: bench/bindmount.sh [REPS]   (default 5)
#   STRATA=path     the binary (default the release build)
#   BENCH_DIR=dir   work dir (default /var/tmp/strata-bench-bindmount)
#   MB=64           size of the mounted file
set -euo pipefail
reps=${1:-5}
here=$(cd "$(dirname "$0")" && pwd); repo=$(cd "$here/.." && pwd)
source "$here/lib.sh"
S=$(strata_binary)
for t in buildah bc; do
  command -v "$t" >/dev/null || { echo "bench/bindmount.sh needs $t" >&2; exit 1; }
done
MB=${MB:-64}
work=${BENCH_DIR:-/var/tmp/strata-bench-bindmount}
mkdir -p "$work"
B() { buildah --root "$work/broot" --runroot "$work/broot-run" --storage-driver overlay "$@"; }
cleanup() {
  if [[ -d $work/broot ]]; then
    B rm --all >/dev/null 2>&1 || true
    umount -R "$work/broot/overlay" 2>/dev/null || true
  fi
  rm -rf "$work/store" "$work/broot" "$work/broot-run" "$work/ctx" "$work/bb.tar"
}
trap cleanup EXIT
cleanup

echo "setting up (base in both stores, $MB MiB mounted)…" >&2
STRATA="$S" STRATA_ROOT="$work/store" "$repo/testdata/make-busybox.sh" localhost/bb:latest >/dev/null
"$S" --root "$work/store" save --format oci -o "$work/bb.tar" localhost/bb:latest
B pull -q "oci-archive:$work/bb.tar" >/dev/null
B tag "$(B images -q | head -1)" localhost/bb:latest
ctx=$work/ctx
mkdir -p "$ctx"
cat >"$ctx/Dockerfile" <<D
FROM localhost/bb:latest AS data
ARG V
RUN mkdir /data && dd if=/dev/zero of=/data/blob bs=1048576 count=$MB 2>/dev/null && echo \$V > /v
FROM localhost/bb:latest
RUN --mount=type=bind,from=data,source=/data,target=/m sleep 2 && md5sum /m/blob > /sum
D

ours() { "$S" --root "$work/store" build --progress plain -t bench:1 --build-arg "V=$1" "$ctx"; }
peer() { B --runtime /usr/sbin/runc bud --layers --pull=never -q -t bench:1 --build-arg "V=$1" "$ctx"; }
ours 0 >/dev/null 2>&1
peer 0 >/dev/null 2>&1

declare -A T
run() { # key cmd…
  local key=$1; shift
  local t0 t1
  t0=$(now)
  "$@" >"$work/last.log" 2>&1 || { echo "FAILED: $*" >&2; tail -20 "$work/last.log" >&2; exit 1; }
  t1=$(now)
  T[$key]+="$(echo "$t1 - $t0" | bc -l) "
}
for i in $(seq "$reps"); do
  run ours-rerun ours "$i"
  n=$(grep -m1 'RUN --mount=type=bind' "$work/last.log" | sed 's/^#\([0-9]*\) .*/\1/')
  grep -q "^#$n CACHED" "$work/last.log" || { echo "ours: final RUN not a hit" >&2; cat "$work/last.log" >&2; exit 1; }
  run peer-rerun peer "$i"
  run ours-same ours "$i"
  run peer-same peer "$i"
done

echo "RUN --mount=type=bind,from=STAGE over $MB MiB, median of $reps, $(load_note):"
for k in rerun same; do
  o=$(echo "${T[ours-$k]}" | median); p=$(echo "${T[peer-$k]}" | median)
  printf '  %-6s strata %.3f s  buildah %.3f s  ratio ours/buildah %s\n' "$k" "$o" "$p" "$(ratio "$o" "$p")"
done
