#!/usr/bin/env bash
# bench/cache.sh — a build cache shared through a registry (issue 15): strata's
# `--cache-to/--cache-from type=registry` against buildah's `--cache-to/--cache-from` (Debian's
# 1.28) on the same local docker-registry and fixture, in one run, interleaved, REPS repetitions;
# prints medians, the ratio ours/peer and bytes downloaded, with the machine's load.
#
# Fixture: FROM the busybox of testdata/make-busybox.sh (saved by strata, pulled by buildah, so
# both start from the same layer), COPY of a FILES-file context, a RUN with a cache mount, a RUN.
# Runner A (once per tool) builds it and exports image + cache to the registry. Runner B (every
# rep) starts from an empty store holding only the base, and builds the same context with
# --cache-from: that build is what is timed ("B"). Also timed: pulling the final image alone into
# an empty store (`strata pull`), the floor B is compared with.
# Bytes downloaded are the GET response sizes in the registry's access log during B's build.
#
# Usage: bench/cache.sh [REPS]   (default 5)
#   STRATA=path     the binary (default the release build)
#   BENCH_DIR=dir   work dir (default /var/tmp/strata-bench-cache)
#   FILES=5000      files of the context (2 KiB each)
set -euo pipefail
reps=${1:-5}
here=$(cd "$(dirname "$0")" && pwd); repo=$(cd "$here/.." && pwd)
source "$here/lib.sh"
S=$(strata_binary)
for t in buildah docker-registry bc python3; do
  command -v "$t" >/dev/null || { echo "bench/cache.sh needs $t" >&2; exit 1; }
done
FILES=${FILES:-5000}
work=${BENCH_DIR:-/var/tmp/strata-bench-cache}
mkdir -p "$work"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
reg=127.0.0.1:$port
regpid=
B() { buildah --root "$1" --runroot "$1-run" --storage-driver overlay "${@:2}"; }
cleanup() {
  [[ -n $regpid ]] && kill "$regpid" 2>/dev/null || true
  for r in "$work"/broot*; do
    [[ -d $r ]] || continue
    B "$r" rm --all >/dev/null 2>&1 || true
    umount -R "$r/overlay" 2>/dev/null || true
  done
  rm -rf "$work"/store* "$work"/broot* "$work/ctx" "$work/registry" "$work/bb.tar"
}
trap cleanup EXIT
cleanup

cat >"$work/registry.yml" <<EOF
version: 0.1
log:
  level: error
storage:
  filesystem:
    rootdirectory: $work/registry
http:
  addr: $reg
EOF
# The access log (on stdout) gives each GET's response size.
env -u REGISTRY_AUTH_FILE docker-registry serve "$work/registry.yml" >"$work/access.log" 2>"$work/registry.err" &
regpid=$!
for _ in $(seq 50); do (echo >"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done

echo "setting up (base in both stores, $FILES-file context)…" >&2
fresh_ours() { # dir: an empty strata store with the base
  STRATA="$S" STRATA_ROOT="$1" "$repo/testdata/make-busybox.sh" localhost/bb:latest >/dev/null
}
fresh_peer() { # dir: an empty buildah store with the base
  B "$1" pull -q "oci-archive:$work/bb.tar" >/dev/null
  B "$1" tag "$(B "$1" images -q | head -1)" localhost/bb:latest
}
fresh_ours "$work/store-a"
"$S" --root "$work/store-a" save --format oci -o "$work/bb.tar" localhost/bb:latest
fresh_peer "$work/broot-a"
ctx=$work/ctx
mkdir -p "$ctx/src"
python3 - "$ctx/src" "$FILES" <<'PY'
import os, sys
root, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    d = os.path.join(root, f"d{i // 500:03d}")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"f{i:05d}"), "wb") as f:
        f.write((b"%08d" % i) * 256)
PY
cat >"$ctx/Dockerfile" <<'D'
FROM localhost/bb:latest
COPY src/ /src/
RUN --mount=type=cache,target=/cache ls -R /src | wc -l > /count && cp /count /cache/
RUN echo built > /built
D

# Runner A: build, push image and cache.
"$S" --root "$work/store-a" build --progress plain -t "$reg/ours:1" \
  -o "type=registry,name=$reg/ours:1" \
  --cache-to "type=registry,ref=$reg/ours:cache,mode=max,mounts=true" "$ctx" >"$work/a.log" 2>&1 ||
  { tail -20 "$work/a.log" >&2; exit 1; }
B "$work/broot-a" --runtime /usr/sbin/runc bud --layers --format docker --pull=never -q \
  --tls-verify=false --cache-to "$reg/peer-cache" -t "$reg/peer:1" "$ctx" >"$work/pa.log" 2>&1 ||
  { tail -20 "$work/pa.log" >&2; exit 1; }
B "$work/broot-a" push -q --tls-verify=false "$reg/peer:1" >/dev/null

declare -A T BYTES
bytes_since() { # line number: sum of GET response sizes logged after it
  tail -n +"$(($1 + 1))" "$work/access.log" |
    awk '/"GET / { for (i = 1; i <= NF; i++) if ($i ~ /^[0-9][0-9][0-9]$/ && $(i+1) ~ /^[0-9]+$/) { s += $(i+1); break } } END { print s + 0 }'
}
run() { # key cmd…
  local key=$1; shift
  local mark t0 t1; mark=$(wc -l <"$work/access.log")
  t0=$(now)
  "$@" >"$work/last.log" 2>&1 || { echo "FAILED: $*" >&2; tail -20 "$work/last.log" >&2; exit 1; }
  t1=$(now)
  T[$key]+="$(echo "$t1 - $t0" | bc -l) "
  BYTES[$key]=$(bytes_since "$mark")
}
for i in $(seq "$reps"); do
  rm -rf "$work/store-b" "$work/store-p"; fresh_ours "$work/store-b"; fresh_ours "$work/store-p"
  B "$work/broot-b" rm --all >/dev/null 2>&1 || true
  umount -R "$work/broot-b/overlay" 2>/dev/null || true; rm -rf "$work/broot-b" "$work/broot-b-run"
  fresh_peer "$work/broot-b"
  run ours-b "$S" --root "$work/store-b" build --progress plain -t bench:b \
    --cache-from "type=registry,ref=$reg/ours:cache" "$ctx"
  grep -q CACHED "$work/last.log" || { echo "ours: no hit" >&2; cat "$work/last.log" >&2; exit 1; }
  run peer-b B "$work/broot-b" --runtime /usr/sbin/runc bud --layers --format docker --pull=never \
    -q --tls-verify=false --cache-from "$reg/peer-cache" -t bench:b "$ctx"
  run ours-pull "$S" --root "$work/store-p" pull "$reg/ours:1"
done

m_ours=$(echo "${T[ours-b]}" | median); m_peer=$(echo "${T[peer-b]}" | median)
m_pull=$(echo "${T[ours-pull]}" | median)
echo "runner B (empty store, warm registry), $FILES-file context, median of $reps, $(load_note):"
printf '  strata --cache-from  %.3f s  %s bytes downloaded\n' "$m_ours" "${BYTES[ours-b]}"
printf '  buildah --cache-from %.3f s  %s bytes downloaded\n' "$m_peer" "${BYTES[peer-b]}"
echo "  ratio ours/buildah: $(ratio "$m_ours" "$m_peer") (target <= 0.3)"
printf '  strata pull of the final image alone %.3f s  %s bytes\n' "$m_pull" "${BYTES[ours-pull]}"
echo "  ratio B / pull: $(ratio "$m_ours" "$m_pull") (target <= 1.5)"
