#!/usr/bin/env bash
# Parse + plan a generated 5,000-line Dockerfile: in-process (library, median of 30 runs) and
# end-to-end (`strata build --check`, hyperfine). Target: under 50 ms.
#
# No peer offers a parse-only mode on this machine (buildah has no --check; BuildKit's
# `docker build --check` needs a daemon), so the figure is compared with the 50 ms budget.
# Usage: bench/parse.sh            (run from anywhere; builds release binaries first)
#   BASELINE=path/to/old/strata  also time the old binary's `build --check`, interleaved with
#                                ours (RUNS each, default 30), and print the new/old ratio
#   INPROCESS=0                  skip the in-process library figure (ours only: it compiles
#                                a release test binary first)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# 50 stages x 100 lines: ARG/ENV/LABEL/WORKDIR/RUN (with continuations and a heredoc),
# COPY --from the previous stage, EXPOSE; global ARGs in FROM.
python3 - "$work/Dockerfile" <<'PY'
import sys
out = ["# syntax=docker/dockerfile:1", "ARG BASE=debian", "ARG TAG=12"]
for s in range(50):
    base = "${BASE}:${TAG}" if s % 5 == 0 else f"s{s-1}"
    out.append(f"FROM {base} AS s{s}")
    out.append(f"ARG V{s}=value-{s}")
    i = 0
    while len(out) < (s + 1) * 100 + 3:
        k = i % 8
        if k == 0:
            out.append(f"ENV K{s}_{i}=\"${{V{s}}}-{i}\" P{i}=${{PATH}}")
        elif k == 1:
            out += [f"RUN echo {i} \\", f"    && echo ${{V{s}}} \\", "    && true"]
        elif k == 2:
            out.append(f"LABEL org.example.k{i}=\"v {i}\"")
        elif k == 3:
            out.append(f"WORKDIR /src/${{V{s}}}/{i}")
        elif k == 4 and s > 0:
            out.append(f"COPY --from=s{s-1} --chown=1000:1000 /src/a{i} /dst/b{i}/")
        elif k == 5:
            out += ["RUN <<EOF", f"echo heredoc {i}", "EOF"]
        elif k == 6:
            out.append(f"EXPOSE {8000 + i}/tcp")
        else:
            out.append(f"RUN --mount=type=cache,target=/root/.cache/{i} make -j2 target{i}")
        i += 1
out.append('CMD ["app"]')
open(sys.argv[1], "w").write("\n".join(out) + "\n")
PY
mkdir -p "$work/ctx"
echo "generated $(wc -l < "$work/Dockerfile") lines"

if [[ ${INPROCESS:-1} != 0 ]]; then
  echo "== in-process parse + plan (release library)"
  STRATA_BENCH_DOCKERFILE="$work/Dockerfile" cargo test --release -q -p strata-dockerfile --test bench_parse \
      -- --ignored --nocapture 2>&1 | grep -E "parse|plan|median|test result"
fi

echo "== end-to-end: strata build --check (process start, read, parse, plan, print)"
source bench/lib.sh
S=$(strata_binary)
OLD=$(baseline_binary)
if [[ -z $OLD ]]; then
  hyperfine -N --warmup 3 --runs 30 --export-json "$work/check.json" \
      "$S build --check -f $work/Dockerfile $work/ctx"
  jq -r '.results[0] | "end-to-end median: \(.median * 1000 | floor) ms wall (user \(.user * 1000 | floor) ms, system \(.system * 1000 | floor) ms); budget 50 ms"' "$work/check.json"
  load_note
  exit 0
fi
# Ours and the baseline alternate run by run (hyperfine would run all of one, then all of the
# other, and a load change between the two halves would read as a difference).
check() { "$1" build --check -f "$work/Dockerfile" "$work/ctx" >/dev/null; }
for _ in 1 2 3; do check "$S"; check "$OLD"; done
new_t=; old_t=
for _ in $(seq "${RUNS:-30}"); do
  timed new_t check "$S"
  timed old_t check "$OLD"
done
n=$(echo "$new_t" | median); o=$(echo "$old_t" | median)
printf 'end-to-end median: new %.1f ms, baseline %.1f ms, new/old %s (%s runs each, interleaved; %s)\n' \
  "$(echo "$n * 1000" | bc -l)" "$(echo "$o * 1000" | bc -l)" "$(ratio "$n" "$o")" "${RUNS:-30}" "$(load_note)"
