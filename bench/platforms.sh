#!/usr/bin/env bash
# bench/platforms.sh — a two-platform build (linux/amd64 + linux/arm64 under QEMU) where half of
# the work is platform-independent (testdata/platforms/Dockerfile: a `$BUILDPLATFORM` stage,
# then per-platform work), three ways in one run, interleaved, REPS repetitions:
#
#   multi       strata build --platform linux/amd64,linux/arm64 (platforms concurrently, the
#               shared stage once)
#   sequential  strata build --platform linux/amd64, then --platform linux/arm64, each
#               --no-cache (no sharing: what a CI loop over platforms does)
#   buildah     buildah build --platform linux/amd64,linux/arm64 --manifest (Debian's 1.28,
#               --runtime /usr/sbin/runc, its own --root/--runroot)
#
# Both tools start from the same busybox index (testdata/make-busybox-index.sh), served by a
# docker-registry on 127.0.0.1 and pulled into each store before timing. Every repetition passes
# a new NONCE build arg, so nothing is a cache hit (buildah keeps no layer cache without --layers).
# Prints medians, the ratios multi/sequential and multi/buildah, and the load.
#
# Usage: bench/platforms.sh [REPS]   (default 3; needs root, qemu-user-static, buildah, skopeo,
#        docker-registry; registers the arm64 binfmt handler if missing and removes it after)
#   GEN_MB=32 TARGET_MB=24  work of the shared stage / the per-platform stage (MiB gzipped x4 / x1):
#                           with these the shared stage takes about as long as the two platforms'
#                           own steps together (amd64 native + arm64 under QEMU): half the work
set -euo pipefail
reps=${1:-3}
here=$(cd "$(dirname "$0")" && pwd); repo=$(cd "$here/.." && pwd)
source "$here/lib.sh"
S=$(strata_binary)
for t in buildah skopeo docker-registry bc; do
  command -v "$t" >/dev/null || { echo "bench/platforms.sh needs $t (scripts/setup.sh)" >&2; exit 1; }
done
GEN_MB=${GEN_MB:-32}; TARGET_MB=${TARGET_MB:-24}
work=$(mktemp -d /var/tmp/strata-bench-platforms.XXXXXX)
store=$work/store; broot=$work/buildah-root; brun=$work/buildah-runroot
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
registered=
cleanup() {
  [ -n "${reg_pid:-}" ] && kill "$reg_pid" 2>/dev/null || true
  buildah --root "$broot" --runroot "$brun" rm --all >/dev/null 2>&1 || true
  umount -R "$broot/overlay" 2>/dev/null || true
  [ -n "$registered" ] && "$S" binfmt --uninstall --arch arm64 >/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
B() { buildah --root "$broot" --runroot "$brun" --storage-driver overlay "$@"; }

[ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] || { "$S" binfmt --install --arch arm64 >/dev/null; registered=1; }
echo "setting up (busybox index in a registry, pulled into both stores)…" >&2
STRATA="$S" STRATA_ROOT="$store" "$repo/testdata/make-busybox-index.sh" bb:latest >/dev/null
mkdir -p "$work/reg"
cat > "$work/reg/config.yml" <<YML
version: 0.1
log:
  level: error
storage:
  filesystem:
    rootdirectory: $work/reg/storage
http:
  addr: 127.0.0.1:$port
YML
docker-registry serve "$work/reg/config.yml" >"$work/reg/log" 2>&1 &
reg_pid=$!
for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
base=127.0.0.1:$port/bench/bb:latest
"$S" --root "$store" push -q bb:latest "$base" >/dev/null
"$S" --root "$store" rmi bb:latest >/dev/null
"$S" --root "$store" pull -q --all-platforms "$base" >/dev/null
for p in linux/amd64 linux/arm64; do B pull -q --tls-verify=false --platform "$p" "docker://$base" >/dev/null; done
ctx=$work/ctx; mkdir -p "$ctx"
sed "s#^FROM \(--platform=\$BUILDPLATFORM \)\?bb#FROM \1$base#" "$repo/testdata/platforms/Dockerfile" > "$ctx/Dockerfile"
args=(--build-arg "GEN_MB=$GEN_MB" --build-arg "TARGET_MB=$TARGET_MB")

declare -A T
time_it() { # key cmd…
  local key=$1; shift
  local t0 t1; t0=$(now)
  "$@" >"$work/last.log" 2>&1 || { echo "FAILED: $*" >&2; tail -20 "$work/last.log" >&2; exit 1; }
  t1=$(now)
  T[$key]+="$(echo "$t1 - $t0" | bc -l) "
}
multi() { "$S" --root "$store" build --progress plain --platform linux/amd64,linux/arm64 "${args[@]}" --build-arg "NONCE=$1" -t out:multi "$ctx"; }
sequential() {
  "$S" --root "$store" build --progress plain --no-cache --platform linux/amd64 "${args[@]}" --build-arg "NONCE=$1" -t out:amd64 "$ctx"
  "$S" --root "$store" build --progress plain --no-cache --platform linux/arm64 "${args[@]}" --build-arg "NONCE=$1" -t out:arm64 "$ctx"
}
peer() {
  B rmi -f localhost/out:multi >/dev/null 2>&1 || true
  B build --runtime /usr/sbin/runc --tls-verify=false --pull=missing --platform linux/amd64,linux/arm64 \
    "${args[@]}" --build-arg "NONCE=$1" --manifest localhost/out:multi "$ctx"
}
echo "warm-up (not timed)…" >&2
multi warm >/dev/null 2>&1; peer warm >/dev/null 2>&1
for i in $(seq "$reps"); do
  time_it multi multi "m$i-$RANDOM"
  time_it buildah peer "b$i-$RANDOM"
  time_it sequential sequential "s$i-$RANDOM"
done
# The arm64 image really is arm64, and the shared stage was shared.
arch=$("$S" --root "$store" run --rm --platform linux/arm64 out:multi cat /arch)
[ "$arch" = aarch64 ] || { echo "arm64 image says $arch" >&2; exit 1; }
m=$(echo "${T[multi]}" | median); s=$(echo "${T[sequential]}" | median); b=$(echo "${T[buildah]}" | median)
printf '%-44s %8s s   (runs: %s)\n' "strata build --platform amd64,arm64" "$m" "${T[multi]}"
printf '%-44s %8s s   (runs: %s)\n' "strata, one platform after the other" "$s" "${T[sequential]}"
printf '%-44s %8s s   (runs: %s)\n' "buildah build --platform amd64,arm64" "$b" "${T[buildah]}"
echo "ratio multi/sequential $(ratio "$m" "$s")   multi/buildah $(ratio "$m" "$b")   (GEN_MB=$GEN_MB TARGET_MB=$TARGET_MB, $(load_note))"
