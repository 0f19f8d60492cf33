#!/usr/bin/env bash
# Sets everything up and runs strata's main job on the example: builds strata, makes the busybox
# base image offline from Debian's busybox-static, and shows it.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --release --bin strata --locked
export STRATA="$PWD/target/release/strata"
export STRATA_ROOT="${STRATA_ROOT:-$PWD/.strata-example}"
testdata/make-busybox.sh busybox:latest
echo "== strata images --tree"
"$STRATA" images --tree
echo "== strata inspect busybox (config)"
"$STRATA" inspect busybox | jq '.[0] | {Id, Digest, RepoTags, Config: .Config.config}'
echo "== strata history busybox"
"$STRATA" history busybox
