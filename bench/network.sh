#!/usr/bin/env bash
# bench/network.sh — published ports (issue 14): strata's `-p` against podman's `-p` (Debian's,
# `--runtime /usr/sbin/runc`, its own --root/--runroot in a temp dir), in one run, interleaved;
# medians and ratios ours/podman.
#
#   throughput   MB/s of a 256 MiB download (busybox httpd in the container, curl on the
#                host side through 127.0.0.1:PORT), 2×DL per tool per rep in ABBA order — target
#                ratio ≥ 1.0. The ratio of the two medians and, more robust on a shared box,
#                the median of the per-rep ratios (each rep's two sides saw the same load) with
#                its quartiles. Printed with each side's spread (min–max) and the client's CPU
#                per download (curl's user+sys, which includes the receive path's softirq
#                work run in its context): what the datapath costs, which barely moves with
#                the load, where MB/s is that cost divided by the CPU share each side gets on
#                the shared cores and moves with whatever else runs.
#   conn-rate    connections/s: `ab -n N -c 4` (a new TCP connection per request, no keep-alive)
#                for a small file, one sample per tool per rep (order alternating) — target
#                ratio ≥ 1.0; the ratio of the medians and the median of the per-rep ratios;
#                and the whole machine's CPU per 1000 connections (what a connection costs)
#   start        `strata run -d -p 18090:80` against `strata run -d --network none` (ms; the
#                difference is the bridge's start overhead) — target < 20 ms
#   attach       the network setup phase alone, in process: strata's own per-phase timings
#                (`STRATA_LOG=strata_runner::network=debug`, `run --rm -p … true`), medians
#
# Everything runs in a network namespace this script creates (`unshare --net`), gone when it
# ends, so the bridges, veths and rules of both tools exist only there; clients talk to
# 127.0.0.1 in that namespace. The host's network is not touched.
#
# Usage: bench/network.sh [REPS]   (default 15, ~40 s idle: per run, the paired conn/s ratios'
#                                   quartiles are ±2–8%, fewer reps leave its median to chance)
#   STRATA=path   the binary (default: the release build, see bench/lib.sh)
#   AB_N=3000     requests per conn-rate sample
#   DL=2          ABBA groups of downloads per rep (2: four downloads per tool per rep)
set -euo pipefail
reps=${1:-15}
here=$(cd "$(dirname "$0")" && pwd); repo=$(cd "$here/.." && pwd)
# shellcheck source=bench/lib.sh
source "$here/lib.sh"
S=$(strata_binary)
for t in podman runc curl ab ip nft; do
  command -v "$t" >/dev/null || { echo "bench/network.sh needs $t (scripts/setup.sh)" >&2; exit 1; }
done

# Re-run inside a fresh network namespace.
# (`unshare --net`, not `ip netns exec`: that one remounts /sys and hides the cgroup mounts
# podman's runc needs.) The namespace goes when the last process in it does; cleanup below
# removes every container of both tools first.
if [[ -z ${STRATA_BENCH_NETNS:-} ]]; then
  STRATA_BENCH_NETNS=1 STRATA="$S" exec unshare --net "$0" "$@"
fi
ip link set lo up

AB_N=${AB_N:-3000}
DL=${DL:-2}
W=$(mktemp -d /var/tmp/strata-bench-network.XXXXXX)
ROOT=$W/store
P=(podman --root "$W/podman" --runroot "$W/podman-run" --runtime /usr/sbin/runc
   --cgroup-manager cgroupfs --events-backend file)
# See bench/containers.sh: runc can't start anything here with podman's default rlimits.
PRUN=(--ulimit nofile=1024:1024 --ulimit nproc=1024:1024)
cleanup() {
  "$S" --root "$ROOT" ps -aq --no-trunc 2>/dev/null | xargs -r "$S" --root "$ROOT" rm -f >/dev/null 2>&1 || true
  "${P[@]}" rm -af -t 0 >/dev/null 2>&1 || true
  findmnt -rn -o TARGET | grep "^$W" | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
  rm -rf "$W"
}
trap cleanup EXIT

STRATA="$S" STRATA_ROOT="$ROOT" "$repo/testdata/make-busybox.sh" >/dev/null
"$S" --root "$ROOT" save -o "$W/busybox.tar" busybox:latest
"${P[@]}" load -i "$W/busybox.tar" >/dev/null

# The server: a 256 MiB file and a small one, busybox httpd on port 80.
SERVE='mkdir -p /www && dd if=/dev/zero of=/www/big bs=1M count=256 2>/dev/null && echo hi >/www/small && exec httpd -f -p 80 -h /www'
"$S" --root "$ROOT" run -d --name web -p 18080:80 busybox sh -c "$SERVE" >/dev/null
"${P[@]}" run -d "${PRUN[@]}" --name web -p 18081:80 busybox sh -c "$SERVE" >/dev/null
for port in 18080 18081; do
  for _ in $(seq 100); do curl -sf -o /dev/null "http://127.0.0.1:$port/small" && break; sleep 0.1; done
done

# Where each server runs: its cpu and memory cgroups (v1 lines, or v2's) and autogroup. Both
# tools put a container in cgroups of its own (podman `libpod_parent/libpod-ID` in every
# hierarchy, strata `strata/ID` in all but cpu without --cpus, README "Networks"); in the root
# cpu cgroup ours setsid()s into an autogroup of its own (sched(7); an autogroup counts only
# for a task in the root cpu cgroup).
placement() {
  [[ -n $1 && -r /proc/$1/cgroup ]] || { echo "?"; return; }
  echo "cpu $(grep -E '^([0-9]+:([^:]*,)?cpu(,[^:]*)?:|0::)' "/proc/$1/cgroup" | head -n1 | cut -d: -f3)" \
    "memory $(grep -E '^([0-9]+:([^:]*,)?memory(,[^:]*)?:|0::)' "/proc/$1/cgroup" | head -n1 | cut -d: -f3)" \
    "$(cut -d' ' -f1 "/proc/$1/autogroup" 2>/dev/null)"
}
pid_podman=$("${P[@]}" inspect -f '{{.State.Pid}}' web)
pid_ours=""
for d in /proc/[0-9]*; do
  [[ $(cat "$d/comm" 2>/dev/null) == httpd && ${d#/proc/} != "$pid_podman" ]] && { pid_ours=${d#/proc/}; break; }
done
echo "servers: strata $(placement "$pid_ours"); podman $(placement "$pid_podman")"
# The links' MTU (strata: 65520 inside the machine, the way out keeps the uplink's; podman:
# 1500; README "Networks").
mtu() { nsenter -t "$1" -n ip -o link show eth0 2>/dev/null | grep -o 'mtu [0-9]*' | cut -d' ' -f2; }
echo "eth0 MTU: strata $(mtu "$pid_ours"), podman $(mtu "$pid_podman")"

us() { echo "${EPOCHREALTIME/./}"; }
med() { median | awk '{printf "%.2f", $1}'; }
# One download from port $1: "MB/s client-CPU-ms". (The server's CPU is not counted: busybox
# httpd serves each connection in a child it does not wait for, whose time no parent collects.)
download() {
  local TIMEFORMAT='%U %S'
  { time curl -s -o /dev/null -w '%{speed_download} ' "http://127.0.0.1:$1/big"; } 2>&1 |
    awk '{printf "%.1f %.0f\n", $1 / 1048576, ($2 + $3) * 1000}'
}
# One conn-rate sample on port $1: "conn/s CPU-ms-per-1000-connections", the CPU being the whole
# machine's busy time (/proc/stat: user, nice, system, irq, softirq) while ab ran — client,
# server, forks and the kernel's network work together, which moves less with the load than
# conn/s does.
busy_ticks() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8}' /proc/stat; }
HZ=$(getconf CLK_TCK)
rate() {
  local t0 t1 r
  t0=$(busy_ticks)
  r=$(ab -q -n "$AB_N" -c 4 "http://127.0.0.1:$1/small" 2>/dev/null | awk '/Requests per second/ {print $4}')
  t1=$(busy_ticks)
  echo "$r $(awk -v t=$((t1 - t0)) -v hz="$HZ" -v n="$AB_N" 'BEGIN {printf "%.1f", t * 1000 / hz * 1000 / n}')"
}

echo "reps: $reps, interleaved; $(load_note)"
# Which tool goes first alternates: on this shared box the first of a pair can be favoured.
# Downloads go ABBA (two per tool per rep), so neither holds the same place every time.
for i in $(seq "$reps"); do
  : >"$W/rep.ours"; : >"$W/rep.podman"
  for _ in $(seq "$DL"); do
    for who in $( ((i % 2)) && echo ours podman podman ours || echo podman ours ours podman); do
      if [[ $who == ours ]]; then download 18080; else download 18081; fi | tee -a "$W/tp.$who" >>"$W/rep.$who"
    done
  done
  # This rep's ratio (mean MB/s ours / podman): both sides of a rep saw the same load, so the
  # median of these paired ratios is not moved by the load drifting between reps.
  paste <(awk '{s += $1} END {print s / NR}' "$W/rep.ours") \
        <(awk '{s += $1} END {print s / NR}' "$W/rep.podman") |
    awk '{printf "%.4f\n", $1 / $2}' >>"$W/tp.pairs"
  for who in $( ((i % 2)) && echo "podman:18081 ours:18080" || echo "ours:18080 podman:18081"); do
    rate "${who#*:}" >>"$W/cr.${who%:*}"
  done
  # This rep's conn/s ratio, paired as the downloads'.
  paste <(tail -n1 "$W/cr.ours") <(tail -n1 "$W/cr.podman") | awk '{printf "%.4f\n", $1 / $3}' >>"$W/cr.pairs"
done
bridge() { "$S" --root "$ROOT" run -d -p 18090:80 busybox sleep 1000; }
none() { "$S" --root "$ROOT" run -d --network none busybox sleep 1000; }
for i in $(seq "$reps"); do
  # Two of each per rep, ABBA as the downloads; each sample's container is removed before the
  # next.
  for case in $( ((i % 2)) && echo bridge none none bridge || echo none bridge bridge none); do
    t0=$(us); id=$("$case"); echo $(( $(us) - t0 )) >>"$W/start.$case"
    "$S" --root "$ROOT" rm -f "$id" >/dev/null
  done
  # The setup phase alone, as strata times it (a foreground run logs it on stderr).
  STRATA_LOG=strata_runner::network=debug "$S" --root "$ROOT" run --rm -p 18091:80 busybox true 2>&1 >/dev/null |
    grep -o 'network attach .*' >>"$W/phases" || true
done
echo "after the runs: $(load_note)"

printf '%-12s %12s %12s %8s\n' case strata podman ratio
col() { awk -v c="$1" '{print $c}' "$2"; }
o=$(col 1 "$W/tp.ours" | med); p=$(col 1 "$W/tp.podman" | med)
printf '%-12s %12s %12s %8s\n' "MB/s" "$o" "$p" "$(ratio "$o" "$p")"
spread() { col 1 "$1" | sort -g | awk 'NR == 1 {a = $1} {b = $1} END {printf "%.0f-%.0f", a, b}'; }
printf '%-12s %12s %12s\n' "  min-max" "$(spread "$W/tp.ours")" "$(spread "$W/tp.podman")"
# The median of a file's per-rep ratios, with their quartiles.
q() { sort -g "$2" | awk -v f="$1" '{a[NR] = $1} END {i = int(f * (NR - 1) + 1.5); printf "%.2f", a[i]}'; }
paired() {
  printf '%-12s %12s %12s %8s   (median of %d per-rep ratios; quartiles %s-%s)\n' "  paired" "" "" \
    "$(med <"$1")" "$(wc -l <"$1")" "$(q 0.25 "$1")" "$(q 0.75 "$1")"
}
paired "$W/tp.pairs"
o=$(col 2 "$W/tp.ours" | med); p=$(col 2 "$W/tp.podman" | med)
printf '%-12s %12s %12s %8s   (curl CPU per download)\n' "client ms" "$o" "$p" "$(ratio "$o" "$p")"
o=$(col 1 "$W/cr.ours" | med); p=$(col 1 "$W/cr.podman" | med)
printf '%-12s %12s %12s %8s\n' "conn/s" "$o" "$p" "$(ratio "$o" "$p")"
paired "$W/cr.pairs"
o=$(col 2 "$W/cr.ours" | med); p=$(col 2 "$W/cr.podman" | med)
printf '%-12s %12s %12s %8s   (machine CPU ms per 1000 connections)\n' "conn CPU" "$o" "$p" "$(ratio "$o" "$p")"
b=$(awk '{print $1/1000}' "$W/start.bridge" | med); n=$(awk '{print $1/1000}' "$W/start.none" | med)
printf 'start run -d -p: %s ms, --network none: %s ms, bridge overhead: %s ms (target < 20)\n' "$b" "$n" \
  "$(awk -v a="$b" -v b="$n" 'BEGIN {printf "%.2f", a-b}')"
# Per phase: "network attach ID: lease+bridge 0.71 ms, netns 0.70 ms, …, total 5.77 ms".
phase() { grep -o "$1 [0-9.]* ms" "$W/phases" | awk '{print $(NF-1)}' | med; }
printf 'attach in process (medians, ms): lease %s, netns %s, veth %s, eth0 %s, ports %s, total %s\n' \
  "$(phase lease+bridge)" "$(phase netns)" "$(phase veth)" "$(phase eth0)" "$(phase ports)" "$(phase total)"
