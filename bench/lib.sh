# bench/lib.sh: what every bench shares (sourced, not run): the strata binary under test, a clock,
# medians and ratios. Each bench runs ours and the peer in the same run, interleaved, and prints
# medians and the ratio ours/peer (below 1: strata is faster).

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

# Seconds since the epoch, with nanoseconds.
now() { date +%s.%N; }

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
