#!/usr/bin/env bash
# bench/containers.sh — detached containers, strata against podman (Debian's, `--runtime
# /usr/sbin/runc`, cgroupfs, its own --root/--runroot in the work dir) in the same run,
# interleaved (ours, podman, ours, …) so load changes hit both alike; medians and ratios
# ours/podman (< 1: strata is faster). Both run the busybox of testdata/make-busybox.sh (saved by
# strata as a docker-archive and loaded into podman), with no network namespace of the host.
#
# Cases (issue 13's "Must show"; targets in brackets):
#   run-d      `run -d IMAGE sleep 1000` until the command returns (it has started) [≤ 0.3×]
#   exec       `exec C true` in a running container                                  [≤ 0.3×]
#   stop-t1    `stop -t 1` of a container whose PID 1 ignores SIGTERM (sleep as PID 1): the grace
#              second plus the kill
#   ps-100     `ps` with 100 running containers, ours only as an absolute target     [< 20 ms]
#              (podman's is printed for reference)
#
# podman here: its default rlimits (nofile/nproc at the maximum) make runc fail to start
# anything in this sandbox (conmon runs with lower limits), so podman runs get
# `--ulimit nofile=1024:1024 --ulimit nproc=1024:1024`.
#
# Usage: bench/containers.sh [REPS]   (default 15)
#   STRATA=path   the binary (default $CARGO_TARGET_DIR or target/, release)
#   PS_N=100      containers for ps-100
set -euo pipefail
reps=${1:-15}
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=bench/lib.sh
. "$here/lib.sh"
repo=$bench_repo
S=$(strata_binary)
for t in podman runc python3; do
  command -v "$t" >/dev/null || { echo "bench/containers.sh needs $t" >&2; exit 1; }
done
PS_N=${PS_N:-100}
W=$(mktemp -d /var/tmp/strata-bench-containers.XXXXXX)
ROOT=$W/store
P=(podman --root "$W/podman" --runroot "$W/podman-run" --runtime /usr/sbin/runc
   --cgroup-manager cgroupfs --events-backend file)
PRUN=(--network none --ulimit nofile=1024:1024 --ulimit nproc=1024:1024)
cleanup() {
  "$S" --root "$ROOT" ps -aq --no-trunc 2>/dev/null | xargs -r "$S" --root "$ROOT" rm -f >/dev/null 2>&1 || true
  "${P[@]}" rm -af -t 0 >/dev/null 2>&1 || true
  # podman's overlay driver keeps its storage mounted on itself, and the `container cleanup`
  # processes conmon starts when a container ends may mount it again a moment later.
  for _ in 1 2 3; do
    findmnt -rn -o TARGET | grep "^$W" | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
    sleep 1
  done
  rm -rf "$W"
}
trap cleanup EXIT

STRATA="$S" STRATA_ROOT="$ROOT" "$repo/testdata/make-busybox.sh" >/dev/null
"$S" --root "$ROOT" save -o "$W/busybox.tar" busybox:latest
"${P[@]}" load -i "$W/busybox.tar" >/dev/null
# Warm both (first unpack of the layer, podman's first container).
"$S" --root "$ROOT" run --rm busybox true
"${P[@]}" run --rm "${PRUN[@]}" busybox true

us() { echo "${EPOCHREALTIME/./}"; }
# time_into FILE CMD…: appends the command's wall time (µs); its output is discarded.
time_into() { local f=$1; shift; local t0; t0=$(us); "$@" >/dev/null 2>&1; echo $(( $(us) - t0 )) >>"$f"; }
# The median of FILE's µs values, in ms with two decimals (lib.sh's median).
median_ms() { median <"$1" | awk '{printf "%.2f", $1/1000}'; }

echo "reps: $reps, interleaved; $(load_note)"
printf '%-10s %12s %12s %8s\n' case strata_ms podman_ms ratio

# run-d
for i in $(seq 1 "$reps"); do
  time_into "$W/rund.ours" "$S" --root "$ROOT" run -d --name "r$i" busybox sleep 1000
  time_into "$W/rund.podman" "${P[@]}" run -d "${PRUN[@]}" --name "r$i" busybox sleep 1000
done
# exec (in the first containers, running)
for i in $(seq 1 "$reps"); do
  time_into "$W/exec.ours" "$S" --root "$ROOT" exec r1 true
  time_into "$W/exec.podman" "${P[@]}" exec r1 true
done
# stop -t 1 of a container ignoring SIGTERM (sleep as PID 1 has no handler)
for i in $(seq 1 "$reps"); do
  time_into "$W/stop.ours" "$S" --root "$ROOT" stop -t 1 "r$i"
  time_into "$W/stop.podman" "${P[@]}" stop -t 1 "r$i"
done
for c in rund exec stop; do
  o=$(median_ms "$W/$c.ours"); p=$(median_ms "$W/$c.podman")
  printf '%-10s %12s %12s %8s\n' "$c" "$o" "$p" "$(ratio "$o" "$p")"
done

# ps with PS_N running containers
"$S" --root "$ROOT" ps -aq --no-trunc | xargs -r "$S" --root "$ROOT" rm -f >/dev/null
"${P[@]}" rm -af -t 0 >/dev/null
for i in $(seq 1 "$PS_N"); do
  "$S" --root "$ROOT" run -d busybox sleep 1000 >/dev/null
  "${P[@]}" run -d "${PRUN[@]}" busybox sleep 1000 >/dev/null
done
[ "$("$S" --root "$ROOT" ps -q | wc -l)" -eq "$PS_N" ] || { echo "not $PS_N running" >&2; exit 1; }
for i in $(seq 1 "$reps"); do
  time_into "$W/ps.ours" "$S" --root "$ROOT" ps
  time_into "$W/ps.podman" "${P[@]}" ps
done
o=$(median_ms "$W/ps.ours"); p=$(median_ms "$W/ps.podman")
printf '%-10s %12s %12s %8s\n' "ps-$PS_N" "$o" "$p" "$(ratio "$o" "$p")"
