#!/usr/bin/env bash
# bench/build.sh — `strata build` against buildah (Debian's 1.28: `buildah --runtime
# /usr/sbin/runc bud --layers --format docker`, its own --root/--runroot in a temp dir) on the
# same Dockerfiles and contexts, in one run, interleaved (ours, peer, ours, …), REPS repetitions
# each; prints medians, the ratio ours/peer (< 1: strata is faster) and peak RSS where asked.
#
# The base image is the busybox of testdata/make-busybox.sh, saved by strata as an OCI archive
# and pulled into buildah's store, so both start from the very same layer.
#
# Cases (issue 4's "Must show"):
#   cold          FROM, COPY a 200-file dir, two RUNs, metadata; --no-cache on both sides
#   noop-10k      rebuild of `COPY . /ctx` + RUN on a 10k-file context with nothing changed
#   noop-20k      rebuild of `FROM scratch` + `COPY . /ctx` of 100 dirs x 200 files with nothing
#                 changed: the cache key's context walk and little else (NOOP_RUNS runs each)
#   one-changed   the same after rewriting one file of the 10k (new content every rep)
#   copy-1g       COPY of a 1 GiB / 20k-file context, --no-cache (ours with --compression zstd:
#                 buildah keeps layers uncompressed in its store, zstd is the closest we offer)
#   run-100k      RUN touching one file on a 100k-file base, --no-cache; also our snapshot time
#                 as strata prints it with STRATA_SNAPSHOT_TIMING=1 (upperdir diff + layer write)
#   rss-4g        peak RSS (/usr/bin/time -v) of a build that COPYs one 4 GiB file (sparse: the
#                 read path is the same, the disk is spared), ours only
#
# Usage: bench/build.sh [REPS]   (default 3)
#   STRATA=path        the binary (default $CARGO_TARGET_DIR or target/, release)
#   BASELINE=path      an older strata: every case also runs it (its own store), interleaved
#                      with ours, and the report adds its medians and new/old ratios
#   PEER=0             leave buildah out (with BASELINE: before/after numbers without it)
#   BENCH_DIR=dir      work dir (default /var/tmp/strata-bench-build; ~3 GiB free needed)
#   SMALL_FILES=10000  files of the no-op / one-changed context
#   BIG_MB=1024 BIG_FILES=20000   the copy-1g context
#   BASE_FILES=100000  files of the run-100k base
#   HUGE_GB=4          the rss-4g file
#   NOOP_RUNS=15       runs per tool of noop-20k
#   SKIP="copy-1g rss-4g"  cases to leave out
#   SETTLE=65          seconds of quiet before each one-changed run (see that case)
set -euo pipefail
reps=${1:-3}
here=$(cd "$(dirname "$0")" && pwd); repo=$(cd "$here/.." && pwd)
source "$here/lib.sh"
S=$(strata_binary)
OLD=$(baseline_binary)
needed="bc python3"
if peer_enabled; then needed+=" buildah skopeo runc"; fi
for t in $needed; do
  command -v "$t" >/dev/null || { echo "bench/build.sh needs $t (PEER=0 leaves buildah out)" >&2; exit 1; }
done
[ -x /usr/bin/time ] || { echo "bench/build.sh needs /usr/bin/time (apt-get install time)" >&2; exit 1; }
SMALL_FILES=${SMALL_FILES:-10000}; BIG_MB=${BIG_MB:-1024}; BIG_FILES=${BIG_FILES:-20000}
BASE_FILES=${BASE_FILES:-100000}; HUGE_GB=${HUGE_GB:-4}; SKIP=${SKIP:-}
work=${BENCH_DIR:-/var/tmp/strata-bench-build}
mkdir -p "$work"
store=$work/store; store_old=$work/store-old; broot=$work/buildah-root; brun=$work/buildah-runroot
cleanup() {
  if peer_enabled; then
    buildah --root "$broot" --runroot "$brun" rm --all >/dev/null 2>&1 || true
    umount -R "$broot/overlay" 2>/dev/null || true
  fi
  rm -rf "$store" "$store_old" "$broot" "$brun" "$work/ctx" "$work/huge" "$work/bb.tar" "$work/base.tar"
}
trap cleanup EXIT
cleanup
B() { buildah --root "$broot" --runroot "$brun" --storage-driver overlay "$@"; }
skip() { [[ " $SKIP " == *" $1 "* ]]; }

echo "setting up (busybox base in both stores)…" >&2
STRATA="$S" STRATA_ROOT="$store" "$repo/testdata/make-busybox.sh" localhost/bb:latest >/dev/null
if [[ -n $OLD ]]; then
  STRATA="$OLD" STRATA_ROOT="$store_old" "$repo/testdata/make-busybox.sh" localhost/bb:latest >/dev/null
fi
if peer_enabled; then
  "$S" --root "$store" save --format oci -o "$work/bb.tar" localhost/bb:latest
  B tag "$(B pull -q "oci-archive:$work/bb.tar")" localhost/bb:latest
fi

gen_files() { # dir count total_bytes
  python3 - "$@" <<'PY'
import os, sys, random, base64
root, n, total = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
r = random.Random(7); size = max(1, total // n)
chunk = base64.b64encode(os.urandom(size * 3 // 4 + 3))[:size]
for i in range(n):
    d = os.path.join(root, f"d{i // 1000:03d}")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"f{i:06d}"), "wb") as f:
        # Distinct content per file (the prefix), text-like bytes.
        f.write(b"%08d" % i + chunk[8:])
PY
}

declare -A T
time_it() { # key cmd… (stdout/stderr of the command to $work/last.log)
  local key=$1 t=; shift
  timed t "$@" >"$work/last.log" 2>&1 || { echo "FAILED: $*" >&2; tail -20 "$work/last.log" >&2; exit 1; }
  T[$key]+="$t"
}
ours() { "$S" --root "$store" build --progress plain -t "bench:$1" "${@:2}"; }
old() { "$OLD" --root "$store_old" build --progress plain -t "bench:$1" "${@:2}"; }
peer() { B --runtime /usr/sbin/runc bud --layers --format docker --pull=never -q -t "bench:$1" "${@:2}"; }
# others KEY NAME ARGS…: after ours, the baseline and the peer (each when enabled), same arguments.
others() {
  local key=$1; shift
  if [[ -n $OLD ]]; then time_it "old-$key" old "$@"; fi
  if peer_enabled; then time_it "peer-$key" peer "$@"; fi
  return 0
}
# warm NAME ARGS…: a first, untimed build by every tool in the run.
warm() {
  ours "$@" >/dev/null 2>&1
  if [[ -n $OLD ]]; then old "$@" >/dev/null 2>&1; fi
  if peer_enabled; then peer "$@" >/dev/null 2>&1; fi
  return 0
}

ctx=$work/ctx
# --- cold ------------------------------------------------------------------------------------
if ! skip cold; then
  echo "case cold…" >&2
  rm -rf "$ctx"; mkdir -p "$ctx/app"; gen_files "$ctx/app" 200 $((4 * 1024 * 1024))
  cat >"$ctx/Dockerfile" <<'D'
FROM localhost/bb:latest
ENV APP=/app
COPY app/ /app/
RUN ls -R /app | wc -l > /count && echo built > /built
RUN mkdir -p /var/cache/x && cp /count /var/cache/x/
WORKDIR /app
EXPOSE 8080
CMD ["sh"]
D
  for _ in $(seq "$reps"); do
    time_it ours-cold ours cold --no-cache "$ctx"
    others cold cold --no-cache "$ctx"
  done
fi

# --- no-op rebuild and one file changed on a 10k-file context ---------------------------------
if ! skip noop-10k || ! skip one-changed; then
  echo "case noop-10k / one-changed ($SMALL_FILES files)…" >&2
  rm -rf "$ctx"; mkdir -p "$ctx/src"; gen_files "$ctx/src" "$SMALL_FILES" $((SMALL_FILES * 2048))
  cat >"$ctx/Dockerfile" <<'D'
FROM localhost/bb:latest
ENV APP=/src
COPY . /ctx/
RUN ls /ctx/src | wc -l > /count
CMD ["sh"]
D
  warm small "$ctx"
  if ! skip noop-10k; then
    for _ in $(seq "$reps"); do
      time_it ours-noop ours small "$ctx"
      grep -q CACHED "$work/last.log" || { echo "no-op rebuild was not cached" >&2; exit 1; }
      others noop small "$ctx"
    done
  fi
  if ! skip one-changed; then
    # Both tools create ~10k inodes here (the new COPY layer; buildah's container). On ext4,
    # inode allocation skips inodes deleted in the last 60 s (fs/ext4/ialloc.c
    # recently_deleted(), a linear scan: perf shows it at ~40% of the run), and buildah deletes
    # its 10k-file working container at the end of every bud — so whichever tool runs next pays
    # for the other's deletions (ours went from 1.4 s to 3.2 s). Each timed run therefore
    # starts on a settled filesystem (SETTLE seconds after the previous run, both tools alike;
    # SETTLE=0 gives the raw back-to-back figure).
    settle() { sync; sleep "${SETTLE:-65}"; }
    for i in $(seq "$reps"); do
      echo "changed $i $(now)" >"$ctx/src/d000/f000000"
      settle; time_it ours-one ours small "$ctx"
      if [[ -n $OLD ]]; then settle; time_it old-one old small "$ctx"; fi
      if peer_enabled; then settle; time_it peer-one peer small "$ctx"; fi
    done
  fi
fi

# --- no-op rebuild of a 20k-file context, FROM scratch ----------------------------------------
if ! skip noop-20k; then
  echo "case noop-20k (100 dirs x 200 files, FROM scratch)…" >&2
  rm -rf "$ctx"; mkdir -p "$ctx"
  python3 - "$ctx" <<'PY'
import os, sys
for d in range(100):
    os.makedirs(f"{sys.argv[1]}/d{d:03d}")
    for f in range(200):
        with open(f"{sys.argv[1]}/d{d:03d}/f{f:03d}.txt", "w") as fh:
            fh.write(f"{d} {f}\n")
PY
  printf 'FROM scratch\nCOPY . /ctx\n' >"$ctx/Dockerfile"
  warm scratch20k "$ctx"
  for _ in $(seq "${NOOP_RUNS:-15}"); do
    time_it ours-noop20k ours scratch20k "$ctx"
    grep -q CACHED "$work/last.log" || { echo "no-op rebuild was not cached" >&2; exit 1; }
    others noop20k scratch20k "$ctx"
  done
fi

# --- 1 GiB / 20k-file COPY --------------------------------------------------------------------
if ! skip copy-1g; then
  echo "case copy-1g ($BIG_MB MiB / $BIG_FILES files)…" >&2
  rm -rf "$ctx"; mkdir -p "$ctx/data"; gen_files "$ctx/data" "$BIG_FILES" $((BIG_MB * 1024 * 1024))
  printf 'FROM localhost/bb:latest\nCOPY data/ /data/\n' >"$ctx/Dockerfile"
  for _ in $(seq "$reps"); do
    time_it ours-copy1g ours big --no-cache --compression zstd "$ctx"
    if [[ -n $OLD ]]; then time_it old-copy1g old big --no-cache --compression zstd "$ctx"; fi
    if peer_enabled; then time_it peer-copy1g peer big --no-cache "$ctx"; fi
  done
fi

# --- RUN touching one file on a 100k-file base ------------------------------------------------
snap=""
if ! skip run-100k; then
  echo "case run-100k ($BASE_FILES-file base)…" >&2
  rm -rf "$ctx"; mkdir -p "$ctx/base"
  gen_files "$ctx/base" "$BASE_FILES" $((BASE_FILES * 64))
  tar -C "$ctx/base" -cf "$work/base.tar" .
  "$S" --root "$store" import "$work/base.tar" localhost/big:latest >/dev/null
  if [[ -n $OLD ]]; then "$OLD" --root "$store_old" import "$work/base.tar" localhost/big:latest >/dev/null; fi
  if peer_enabled; then
    "$S" --root "$store" save --format oci -o "$work/bb.tar" localhost/big:latest
    B tag "$(B pull -q "oci-archive:$work/bb.tar")" localhost/big:latest
  fi
  rm -rf "$ctx"; mkdir -p "$ctx"
  # The base has no shell: the step copies busybox in first (a COPY), then RUN touches one file.
  cp /bin/busybox "$ctx/busybox"
  printf 'FROM localhost/big:latest\nCOPY busybox /bin/sh\nRUN echo touched > /d000/f000001\n' >"$ctx/Dockerfile"
  warm big100k "$ctx"
  for i in $(seq "$reps"); do
    # A new RUN each time (the text changes), the base and the COPY stay cached on both sides.
    printf 'FROM localhost/big:latest\nCOPY busybox /bin/sh\nRUN echo touched %s > /d000/f000001\n' "$i" >"$ctx/Dockerfile"
    time_it ours-run100k env STRATA_SNAPSHOT_TIMING=1 "$S" --root "$store" build --progress plain -t bench:big100k "$ctx"
    snap+="$(sed -n 's/^snapshot: \([0-9.]*\) ms.*/\1/p' "$work/last.log" | tail -1) "
    others run100k big100k "$ctx"
  done
fi

# --- peak RSS of a 4 GiB COPY -----------------------------------------------------------------
rss=""; rss_old=""
if ! skip rss-4g; then
  echo "case rss-4g (${HUGE_GB} GiB file)…" >&2
  rm -rf "$ctx"; mkdir -p "$ctx"
  truncate -s "${HUGE_GB}G" "$ctx/huge"
  printf 'FROM localhost/bb:latest\nCOPY huge /huge\n' >"$ctx/Dockerfile"
  /usr/bin/time -v "$S" --root "$store" build --progress plain --no-cache -t bench:huge "$ctx" \
    >"$work/last.log" 2>&1 || { tail -20 "$work/last.log" >&2; exit 1; }
  rss=$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$work/last.log")
  if [[ -n $OLD ]]; then
    /usr/bin/time -v "$OLD" --root "$store_old" build --progress plain --no-cache -t bench:huge "$ctx" \
      >"$work/last.log" 2>&1 || { tail -20 "$work/last.log" >&2; exit 1; }
    rss_old=$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$work/last.log")
  fi
fi

# --- report -----------------------------------------------------------------------------------
echo
peer_name=none
if peer_enabled; then peer_name="buildah $(buildah --version | awk '{print $3}')"; fi
echo "strata build vs ${OLD:+baseline $OLD and }peer $peer_name, $reps reps, interleaved, medians; load: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores"
printf '%-44s %10s' case "strata s"
if [[ -n $OLD ]]; then printf ' %10s %8s' "old s" "new/old"; fi
if peer_enabled; then printf ' %10s %8s' "buildah s" ratio; fi
echo
row() { # key label
  [ -n "${T[ours-$1]:-}" ] || return 0
  local o b p; o=$(echo "${T[ours-$1]}" | median)
  printf '%-44s %10.3f' "$2" "$o"
  if [[ -n $OLD ]]; then b=$(echo "${T[old-$1]}" | median); printf ' %10.3f %8s' "$b" "$(ratio "$o" "$b")"; fi
  if peer_enabled; then p=$(echo "${T[peer-$1]}" | median); printf ' %10.3f %8s' "$p" "$(ratio "$o" "$p")"; fi
  echo
}
row cold "cold build (--no-cache)"
row noop "no-op rebuild, $SMALL_FILES-file context"
row noop20k "no-op rebuild, 20k files FROM scratch"
row one "rebuild after one file changed"
row copy1g "COPY ${BIG_MB} MiB / $BIG_FILES files (--no-cache)"
row run100k "RUN touching 1 file on a $BASE_FILES-file base"
if [ -n "$snap" ]; then printf '%-44s %10s ms (median of: %s)\n' "  strata snapshot of that RUN" "$(echo "$snap" | median)" "$snap"; fi
if [ -n "$rss" ]; then
  printf '%-44s %10s MiB%s\n' "peak RSS, COPY of a ${HUGE_GB} GiB file" "$((rss / 1024))" \
    "${rss_old:+ (baseline $((rss_old / 1024)) MiB)}"
fi
