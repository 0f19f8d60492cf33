#!/usr/bin/env bash
# bench/realworld.sh [N] — the Dockerfiles real projects ship (bench/realworld/<name>/), built by
# strata, by buildah (Debian's 1.28: `bud --layers --format docker --runtime /usr/sbin/runc`) and
# by Docker 20.10's embedded BuildKit (`DOCKER_BUILDKIT=1 docker build`), each in three cases:
#
#   cold      `--no-cache`, cache mounts empty on every tool: strata and BuildKit give a step
#             that ignores the cache a fresh cache mount; buildah 1.28 keeps its mounts under
#             $TMPDIR/buildah-cache, so the bench empties that before each of its cold builds
#             (a warm go build cache made buildah's cold go build 6x faster than the others')
#   no-op     the same build again
#   one-file  after one source file changed (the project's case.env names it)
#
# interleaved (the tool order rotates each rep), medians of N (default 3), ratios strata/peer.
# Every built image is then run and checked: a server must answer its URL (run detached with
# `--network none`, reached with `nsenter -n` inside the container's own network namespace, so the
# host's network is never touched), a CLI must print its expected output.
#
# Base images (bench/realworld's Debian, python, node, golang, rust stand-ins from
# testdata/realworld/make-bases.sh) are prepared before anything is timed and handed to every tool
# as the same image: strata's store, `buildah pull docker-archive:` and `docker load` of
# `strata save --format docker`. Their preparation is excluded from every tool's times.
#
# Docker: installs docker.io when missing and starts its own dockerd (private --data-root,
# --exec-root, pidfile, a unix socket under the work dir, containerd namespace of its own,
# --iptables=false --bridge=none), stopped on exit. Builds use the host network for RUN on all
# three tools (strata's and BuildKit's default; `--network host` for the peers).
#
# Env: CASES="flask express …" (default: every project), TOOLS="strata buildah docker",
# COLD_BASE=1 (strata's bases not unpacked before its first build: see the base preparation),
# BENCH_DIR (default /var/tmp/strata-bench-realworld), STRATA (binary), KEEP=1 (keep the work dir),
# STRATA_TIMING=1 is set for strata's runs and the per-phase breakdowns are kept in
# $BENCH_DIR/timing/ (bench/realworld/PROFILE.md).
set -euo pipefail
reps=${1:-3}
here=$(cd "$(dirname "$0")" && pwd); repo=$(cd "$here/.." && pwd)
source "$here/lib.sh"
S=$(strata_binary)
projects=$here/realworld
CASES=${CASES:-$(cd "$projects" && for d in */; do [ -f "$d/Dockerfile" ] && echo "${d%/}"; done)}
TOOLS=${TOOLS:-strata buildah docker}
work=${BENCH_DIR:-/var/tmp/strata-bench-realworld}
build_timeout=${BUILD_TIMEOUT:-900}

has_tool() { [[ " $TOOLS " == *" $1 "* ]]; }
for t in buildah podman runc nsenter curl jq; do
  command -v "$t" >/dev/null || { echo "bench/realworld.sh needs $t (scripts/setup.sh)" >&2; exit 1; }
done
if has_tool docker && ! command -v dockerd >/dev/null; then
  echo "installing docker.io (Docker 20.10, Debian 12)…" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker.io >/dev/null
fi

# --- private state of every tool, removed on exit ------------------------------------------------
# buildah/podman want a short --runroot: under /run, named after the work dir.
store=$work/strata; broot=$work/buildah-root; brun=/run/strata-rw-$(echo "$work" | sha256sum | cut -c1-8)
dsock=$work/docker/docker.sock; dpid=""
B() { buildah --root "$broot" --runroot "$brun" --storage-driver overlay "$@"; }
P() {
  podman --root "$broot" --runroot "$brun" --storage-driver overlay --runtime /usr/sbin/runc \
    --cgroup-manager cgroupfs --events-backend file "$@"
}
# Debian's docker.io client (the one in /usr/bin speaks the 20.10 API).
D() { DOCKER_BUILDKIT=1 /usr/bin/docker -H "unix://$dsock" "$@"; }
cleanup() {
  set +e
  [ -n "${watchdog_pid:-}" ] && kill "$watchdog_pid" 2>/dev/null
  P rm -af -t 0 >/dev/null 2>&1
  "$S" --root "$store" ps -aq 2>/dev/null | xargs -r "$S" --root "$store" rm -f >/dev/null 2>&1
  if [ -n "$dpid" ]; then
    D ps -aq 2>/dev/null | xargs -r /usr/bin/docker -H "unix://$dsock" rm -f >/dev/null 2>&1
    kill "$dpid" 2>/dev/null
    for _ in $(seq 1 100); do kill -0 "$dpid" 2>/dev/null || break; sleep 0.2; done
    kill -9 "$dpid" 2>/dev/null
  fi
  B rm --all >/dev/null 2>&1
  # Whatever overlay/shm mounts the tools left under the work dir or buildah's runroot.
  grep -oE " ($work|$brun)[^ ]*" /proc/self/mounts | sort -r | xargs -r -n1 umount -l 2>/dev/null
  if [ "${KEEP:-0}" != 1 ]; then rm -rf "$store" "$broot" "$brun" "$work/docker" "$work/ctx" "$work/bases" "$work/buildah-tmp"; fi
}
trap cleanup EXIT
cleanup
mkdir -p "$work/docker" "$work/ctx" "$work/bases" "$work/timing" "$work/logs" "$work/buildah-tmp"

start_dockerd() {
  # Its own containerd namespace: a system containerd other dockerds use keeps their images apart.
  dockerd --data-root "$work/docker/data" --exec-root "$work/docker/exec" \
    -H "unix://$dsock" --pidfile "$work/docker/dockerd.pid" \
    --containerd-namespace strata-bench-rw --containerd-plugins-namespace strata-bench-rw-plugins \
    --iptables=false --ip-masq=false --bridge=none --storage-driver overlay2 \
    >"$work/docker/dockerd.log" 2>&1 &
  dpid=$!
  for _ in $(seq 1 150); do
    D version >/dev/null 2>&1 && return 0
    kill -0 "$dpid" 2>/dev/null || break
    sleep 0.2
  done
  tail -20 "$work/docker/dockerd.log" >&2
  echo "dockerd did not start (log above)" >&2
  exit 1
}

# --- bases: the same images for every tool, prepared untimed -------------------------------------
# The bases each project uses: its FROM images that are not stages or scratch.
bases_of() {
  awk 'toupper($1)=="FROM" { i=2; while ($i ~ /^--/) i++; img[n++]=$i; if (toupper($(i+1))=="AS") st[$(i+2)]=1 }
       END { for (k=0;k<n;k++) if (!(img[k] in st) && img[k]!="scratch") print img[k] }' \
    "$projects/$1/Dockerfile"
}
needed=$(for c in $CASES; do bases_of "$c"; done | sort -u)
langs=$(for b in $needed; do case $b in python:*) echo python;; node:*) echo node;;
  golang:*) echo golang;; rust:*) echo rust;; esac; done | sort -u)
echo "preparing bases (untimed): $(echo $needed)" >&2
# shellcheck disable=SC2086
STRATA="$S" STRATA_ROOT="$store" "$repo/testdata/realworld/make-bases.sh" $langs
# strata unpacks a layer when something first uses it; buildah (pull) and Docker (load) unpack
# while the base is made ready. So strata's bases are unpacked here too, untimed, for the same
# start (COLD_BASE=1 leaves that unpack inside strata's first build, as after a `strata load`).
if [ "${COLD_BASE:-0}" != 1 ]; then
  for b in $needed; do "$S" --root "$store" run --rm --network none "$b" true; done
fi
has_tool docker && start_dockerd
for b in $needed; do
  tar=$work/bases/${b//[:\/]/_}.tar
  "$S" --root "$store" save --format docker -o "$tar" "$b"
  if has_tool buildah; then B tag "$(B pull -q "docker-archive:$tar")" "$b" >/dev/null; fi
  if has_tool docker; then D load -q -i "$tar" >/dev/null; fi
  rm -f "$tar"
done

# --- one build -----------------------------------------------------------------------------------
# Builds are bounded by a watchdog, not by `timeout` around each one: `timeout`'s own fork, exec and
# signal setup cost 2–3 ms per call on this machine, which would be a third of a no-op strata
# build. Every build runs with STRATA_BENCH_BUILD=1 in its environment; the watchdog checks every
# 5 s and kills a build process older than BUILD_TIMEOUT seconds (the build then fails as below).
watchdog() {
  # Ends with the bench ($$ is the script's pid in this subshell too), even after a kill -9.
  while kill -0 $$ 2>/dev/null && sleep 5; do
    for e in /proc/[0-9]*/environ; do
      grep -qz '^STRATA_BENCH_BUILD=1$' "$e" 2>/dev/null || continue
      local pid=${e#/proc/}; pid=${pid%/environ}
      local age; age=$(ps -o etimes= -p "$pid" 2>/dev/null) || continue
      age=${age// /}
      if [ -n "$age" ] && [ "$age" -gt "$build_timeout" ]; then
        echo "watchdog: build process $pid ran over ${build_timeout}s, killing it" >&2
        kill -TERM "$pid" 2>/dev/null
      fi
    done
  done
}
watchdog &
watchdog_pid=$!
declare -A T     # T[project/case/tool] = "t1 t2 …"
# The project's settings (case.env): PORT URL_PATH EXPECT PROTOCOL EXPECT_OUTPUT CHANGE PEERS PEER_SED.
load_case() {
  PORT=""; URL_PATH=/; EXPECT=""; PROTOCOL=http; EXPECT_OUTPUT=""; CHANGE=""; PEERS=all; PEER_SED=""
  # shellcheck disable=SC1090
  source "$projects/$1/case.env"
}
tool_runs() { # project tool -> whether the tool builds this project
  [ "$2" = strata ] || [ "$PEERS" != none ]
}
build() { # project tool case -> seconds (the build's log in $work/logs)
  local p=$1 tool=$2 kase=$3 ctx=$work/ctx/$1 nc=() t0 t1 rc=0
  [ "$kase" = cold ] && nc=(--no-cache)
  if [ "$kase" = cold ] && [ "$tool" = buildah ]; then rm -rf "$work/buildah-tmp"/buildah-cache*; fi
  local log=$work/logs/$p-$tool-$kase.log
  t0=$EPOCHREALTIME  # no subshell inside the timed span (a no-op build is ~5 ms)
  case $tool in
    strata) STRATA_BENCH_BUILD=1 STRATA_TIMING=1 "$S" --root "$store" build --progress plain \
              "${nc[@]}" -t "rw-$p" "$ctx" >"$log" 2>&1 || rc=$? ;;
    # buildah keeps RUN cache mounts in $TMPDIR/buildah-cache (/var/tmp by default), which
    # outlives --root: a private TMPDIR keeps them from leaking between runs (strata's and
    # Docker's live in their private stores).
    buildah) STRATA_BENCH_BUILD=1 TMPDIR=$work/buildah-tmp buildah --root "$broot" --runroot "$brun" \
               --storage-driver overlay bud --runtime /usr/sbin/runc --layers --format docker \
               --network host --pull=never "${nc[@]}" -f "$ctx/Dockerfile.peer" -t "rw-$p" "$ctx" \
               >"$log" 2>&1 || rc=$? ;;
    docker) STRATA_BENCH_BUILD=1 DOCKER_BUILDKIT=1 /usr/bin/docker -H "unix://$dsock" \
              build --progress plain --network host "${nc[@]}" -f "$ctx/Dockerfile.peer" \
              -t "rw-$p" "$ctx" >"$log" 2>&1 || rc=$? ;;
  esac
  t1=$EPOCHREALTIME
  if [ "$rc" != 0 ]; then
    echo "FAILED: $tool build of $p ($kase), exit $rc; last lines of $log:" >&2
    tail -15 "$log" >&2
    return 1
  fi
  if [ "$tool" = strata ]; then grep '^timing:' "$log" >"$work/timing/$p-$kase.txt" || true; fi
  awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.3f", b - a}'
}
# Appends a line the file's language ignores (a new, distinct change each call).
touch_source() { # file n
  local f=$1 n=$2
  case $f in
    *.py|*.sh|*.ini|*.conf) echo "# bench change $n" >>"$f" ;;
    *.js|*.go|*.rs) echo "// bench change $n" >>"$f" ;;
    *.html) echo "<!-- bench change $n -->" >>"$f" ;;
    *.txt) echo "bench$n: bench change $n" >>"$f" ;;
    *) echo "# bench change $n" >>"$f" ;;
  esac
}

# --- running and checking a built image ----------------------------------------------------------
# A server in the container's own network namespace (no network: --network none) answers on
# 127.0.0.1:PORT; we enter that namespace with nsenter -n to ask it.
probe() { # pid
  local pid=$1 out=""
  for _ in $(seq 1 60); do
    if [ "$PROTOCOL" = redis ]; then
      out=$(nsenter -t "$pid" -n timeout 3 bash -c \
        'exec 3<>/dev/tcp/127.0.0.1/'"$PORT"'; printf "PING\r\n" >&3; head -c 5 <&3' 2>/dev/null) || true
    else
      out=$(nsenter -t "$pid" -n curl -fsS -m 3 "http://127.0.0.1:$PORT$URL_PATH" 2>/dev/null) || true
    fi
    [[ $out == *"$EXPECT"* ]] && { echo ok; return 0; }
    sleep 0.5
  done
  echo "FAIL (got '${out:0:80}')"
}
# podman with its default rlimits fails to start containers on this machine (runc cannot set
# them): explicit ones, as tests/containers_podman.rs does.
ulimits=(--ulimit nofile=1024:1024 --ulimit nproc=1024:1024)
check_image() { # project tool -> "ok" or "FAIL …"
  local p=$1 tool=$2 img=rw-$1 id pid out
  if [ -n "$EXPECT_OUTPUT" ]; then
    case $tool in
      strata) out=$("$S" --root "$store" run --rm --network none "$img" </dev/null 2>&1) || true ;;
      buildah) out=$(P run --rm --network none "${ulimits[@]}" "$img" </dev/null 2>&1) || true ;;
      docker) out=$(D run --rm --network none "$img" </dev/null 2>&1) || true ;;
    esac
    [ "$out" = "$EXPECT_OUTPUT" ] && echo ok || echo "FAIL (printed '${out:0:80}')"
    return
  fi
  case $tool in
    strata) id=$("$S" --root "$store" run -d --network none "$img")
            pid=$("$S" --root "$store" inspect "$id" | jq -r '.[0].State.Pid') ;;
    buildah) id=$(P run -d --network none "${ulimits[@]}" "$img")
             pid=$(P inspect -f '{{.State.Pid}}' "$id") ;;
    docker) id=$(D run -d --network none "$img"); pid=$(D inspect -f '{{.State.Pid}}' "$id") ;;
  esac
  probe "$pid"
  case $tool in
    strata) "$S" --root "$store" rm -f "$id" >/dev/null ;;
    buildah) P rm -f -t 0 "$id" >/dev/null ;;
    docker) D rm -f "$id" >/dev/null ;;
  esac
}

# --- the runs ------------------------------------------------------------------------------------
declare -A CHECK
rotate() { # rep tools… -> the tools, rotated by rep
  local r=$1; shift; local a=("$@") n=$#
  for ((i = 0; i < n; i++)); do echo "${a[(i + r) % n]}"; done
}
for p in $CASES; do
  load_case "$p"
  rm -rf "$work/ctx/$p"; cp -a "$projects/$p" "$work/ctx/$p"
  sed -e "${PEER_SED:-}" "$work/ctx/$p/Dockerfile" >"$work/ctx/$p/Dockerfile.peer"
  echo "Dockerfile.peer" >>"$work/ctx/$p/.dockerignore"
  tools=(); for t in $TOOLS; do tool_runs "$p" "$t" && tools+=("$t"); done
  echo "== $p (${tools[*]}), $(load_note)" >&2
  for ((r = 0; r < reps; r++)); do
    for kase in cold noop change; do
      [ "$kase" = change ] && touch_source "$work/ctx/$p/$CHANGE" "$r"
      for tool in $(rotate "$r" "${tools[@]}"); do
        s=$(build "$p" "$tool" "$kase") || exit 1
        T[$p/$kase/$tool]+="$s "
        echo "   $kase $tool ${s}s" >&2
      done
    done
  done
  for tool in "${tools[@]}"; do CHECK[$p/$tool]=$(check_image "$p" "$tool"); done
done

# --- the table -----------------------------------------------------------------------------------
echo
echo "realworld: strata vs buildah $(buildah --version | awk '{print $3}') vs Docker $(has_tool docker && D version -f '{{.Server.Version}}' 2>/dev/null || echo '-') (BuildKit), $reps reps, interleaved, medians; $(load_note) at the end"
printf '%-14s %-8s %9s %9s %7s %9s %7s  %s\n' project case strata buildah ratio docker ratio "image check (strata/buildah/docker)"
for p in $CASES; do
  load_case "$p"
  for kase in cold noop change; do
    ms=$(echo "${T[$p/$kase/strata]:-}" | median 2>/dev/null || echo "")
    row=$(printf '%-14s %-8s %8ss' "$p" "$kase" "$ms")
    for peer in buildah docker; do
      mp=$(echo "${T[$p/$kase/$peer]:-}" | median 2>/dev/null || echo "")
      if [ -n "$mp" ] && [ -n "$ms" ]; then
        row+=$(printf ' %8ss %7s' "$mp" "$(ratio "$ms" "$mp")")
      else
        row+=$(printf ' %9s %7s' "n/a" "")
      fi
    done
    checks="${CHECK[$p/strata]:--}/${CHECK[$p/buildah]:--}/${CHECK[$p/docker]:--}"
    [ "$kase" = cold ] && row+="  $checks"
    echo "$row"
  done
done
echo "strata per-phase timings (STRATA_TIMING=1) of the last rep: $work/timing/"
fails=$(for k in "${!CHECK[@]}"; do [[ ${CHECK[$k]} == ok ]] || echo "$k"; done)
if [ -n "$fails" ]; then echo "image checks failed: $(echo $fails)" >&2; exit 1; fi
