#!/usr/bin/env bash
# bench/run.sh — container start+stop latency: `strata run --rm IMAGE /bin/true` against
# `crun run` and `runc run` of an OCI bundle holding the same busybox rootfs.
#
# Everything runs inside one `unshare -m` with /sys/fs/cgroup/unified unmounted in that mount
# namespace: on this cgroup-v1 hybrid host crun otherwise refuses to create cgroups. Runs are
# interleaved (ours, crun, runc, ours, …) so load changes hit all three alike. Ours includes
# mounting the overlay rootfs from the store's unpacked layer plus a fresh upper dir, and
# removing it (--rm); the peers bind their bundle's rootfs directory.
#
# strata creates a cgroup only when a limit is set; the "--pids-limit" row includes one, as
# crun's and runc's runs always do.
#
# Usage: bench/run.sh [RUNS]   (default 40; STRATA=path/to/strata to pick the binary)
set -euo pipefail

RUNS=${1:-40}
HERE=$(cd "$(dirname "$0")/.." && pwd)
source "$HERE/bench/lib.sh"
STRATA=$(strata_binary)
for tool in crun runc jq unshare tar; do
    command -v "$tool" >/dev/null || { echo "bench/run.sh needs $tool" >&2; exit 1; }
done

WORK=$(mktemp -d /var/tmp/strata-bench-run.XXXXXX)
cleanup() { rm -rf "$WORK"; }
trap cleanup EXIT

# One busybox rootfs (Debian busybox-static), used for both the image and the bundle.
ROOTFS=$WORK/bundle/rootfs
mkdir -p "$ROOTFS"/{bin,sbin,usr/bin,usr/sbin,etc,tmp,root,proc,sys,dev}
chmod 1777 "$ROOTFS/tmp"
cp /bin/busybox "$ROOTFS/bin/busybox"
/bin/busybox --list-full | while read -r p; do
    [[ $p == bin/busybox || -z $p ]] && continue
    mkdir -p "$ROOTFS/$(dirname "$p")"
    ln -sf /bin/busybox "$ROOTFS/$p"
done
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$ROOTFS/etc/passwd"
printf 'root:x:0:\n' >"$ROOTFS/etc/group"

STORE=$WORK/store
tar --numeric-owner -C "$ROOTFS" -cf "$WORK/rootfs.tar" .
"$STRATA" --root "$STORE" import "$WORK/rootfs.tar" bench-busybox:latest -c 'CMD ["sh"]' >/dev/null
# Unpack the layer once (first run), as any run after the first finds it unpacked.
"$STRATA" --root "$STORE" run --rm bench-busybox:latest /bin/true

# The bundle: crun's default spec, no terminal, /bin/true.
(cd "$WORK/bundle" && crun spec)
jq '.process.terminal = false | .process.args = ["/bin/true"] | .root.readonly = false' \
    "$WORK/bundle/config.json" >"$WORK/bundle/config.json.new"
mv "$WORK/bundle/config.json.new" "$WORK/bundle/config.json"

echo "runs: $RUNS each, interleaved; load: $(cut -d' ' -f1-3 /proc/loadavg)"

unshare -m bash -s "$RUNS" "$STRATA" "$STORE" "$WORK" <<'INNER'
set -euo pipefail
RUNS=$1 STRATA=$2 STORE=$3 WORK=$4
umount /sys/fs/cgroup/unified 2>/dev/null || true
# ${EPOCHREALTIME/./} (bash 5): microseconds, no fork of date(1) or a subshell.
: >"$WORK/ours.us"; : >"$WORK/ourscg.us"; : >"$WORK/crun.us"; : >"$WORK/runc.us"
for i in $(seq 1 "$RUNS"); do
    t0=${EPOCHREALTIME/./}; "$STRATA" --root "$STORE" run --rm bench-busybox:latest /bin/true; t1=${EPOCHREALTIME/./}
    echo $(( t1-t0 )) >>"$WORK/ours.us"
    # Ours with a cgroup too (strata creates one only when a limit is given; crun/runc always do).
    t0=${EPOCHREALTIME/./}; "$STRATA" --root "$STORE" run --rm --pids-limit 100000 bench-busybox:latest /bin/true; t1=${EPOCHREALTIME/./}
    echo $(( t1-t0 )) >>"$WORK/ourscg.us"
    t0=${EPOCHREALTIME/./}; crun --root "/run/strata-bench-crun" run -b "$WORK/bundle" "bench-crun-$i" </dev/null; t1=${EPOCHREALTIME/./}
    echo $(( t1-t0 )) >>"$WORK/crun.us"
    t0=${EPOCHREALTIME/./}; runc --root "/run/strata-bench-runc" run -b "$WORK/bundle" "bench-runc-$i" </dev/null; t1=${EPOCHREALTIME/./}
    echo $(( t1-t0 )) >>"$WORK/runc.us"
done
INNER

# Median in ms from a file of microseconds.
median_ms() { median <"$1" | awk '{printf "%.2f\n", $1/1000}'; }
ours=$(median_ms "$WORK/ours.us"); ourscg=$(median_ms "$WORK/ourscg.us")
crun=$(median_ms "$WORK/crun.us"); runc=$(median_ms "$WORK/runc.us")
printf '%-28s %10s\n' "command" "median ms"
printf '%-28s %10s\n' "strata run --rm" "$ours"
printf '%-28s %10s\n' "strata run --rm --pids-limit" "$ourscg"
printf '%-28s %10s\n' "crun run" "$crun"
printf '%-28s %10s\n' "runc run" "$runc"
printf 'ratio ours/crun: %s\n' "$(ratio "$ours" "$crun")"
printf 'ratio ours/runc: %s\n' "$(ratio "$ours" "$runc")"
printf 'ratio ours(with cgroup)/crun: %s\n' "$(ratio "$ourscg" "$crun")"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
