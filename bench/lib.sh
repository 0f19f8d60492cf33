# bench/lib.sh: what every bench shares (sourced, not run): the strata binary under test, a
# baseline strata to compare it with, a clock, medians and ratios. Each bench runs ours and the
# peer in the same run, interleaved, and prints medians and the ratio ours/peer (below 1: strata
# is faster).
#
# Environment every bench that sources this honours:
#   STRATA=path     the strata under test (default: the release build, brought up to date)
#   BASELINE=path   an older strata binary (e.g. built in `git worktree add /work/wt-base <rev>`):
#                   each case also times it, interleaved with ours, and prints new/old ratios
#   PEER=0          skip the peer (buildah…): with BASELINE, before/after numbers in seconds
#                   instead of minutes

bench_repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# The strata binary: $STRATA as given, else the release build under $CARGO_TARGET_DIR or target/,
# brought up to date first (a no-op when it is).
strata_binary() {
  if [[ -n ${STRATA:-} ]]; then
    readlink -f "$STRATA"
    return
  fi
  (cd "$bench_repo" && cargo build --release --bin strata -q >&2)
  readlink -f "${CARGO_TARGET_DIR:-$bench_repo/target}/release/strata"
}

# The baseline strata binary ($BASELINE, resolved), or nothing when none is asked for. Fails when
# $BASELINE is set but is not an executable: a typo must not silently drop the comparison.
baseline_binary() {
  [[ -n ${BASELINE:-} ]] || return 0
  if [[ ! -x $BASELINE ]]; then
    echo "BASELINE=$BASELINE is not an executable strata binary" >&2
    return 1
  fi
  readlink -f "$BASELINE"
}

# Whether the peer runs (everything but PEER=0).
peer_enabled() { [[ ${PEER:-1} != 0 ]]; }

# Seconds since the epoch, with microseconds ($EPOCHREALTIME: no process started, so timing a
# 10 ms command is not skewed by forking `date`).
now() { echo "${EPOCHREALTIME:-$(date +%s.%N)}"; }

# timed VAR CMD...: runs CMD (stdout and stderr as the caller redirects them) and appends its wall
# time in seconds, then a space, to the variable VAR. Measured with $EPOCHREALTIME around the
# command alone: no subshell or `date` inside the timed span. Returns CMD's status.
timed() {
  local __var=$1 __t0 __t1 __rc=0
  shift
  __t0=${EPOCHREALTIME/./}
  "$@" || __rc=$?
  __t1=${EPOCHREALTIME/./}
  printf -v "$__var" '%s%s ' "${!__var:-}" "$(((__t1 - __t0) / 1000000)).$(printf '%06d' $(((__t1 - __t0) % 1000000)))"
  return $__rc
}

# The median of the numbers on stdin (separated by spaces or newlines); the mean of the two middle
# ones for an even count.
median() {
  tr -s ' \t' '\n' | grep -v '^$' | sort -g |
    awk '{a[NR]=$1} END {if (NR == 0) exit 1; if (NR % 2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'
}

# ours/peer with two decimals.
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }

# The machine's load, printed beside every result.
load_note() { echo "load $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores"; }
