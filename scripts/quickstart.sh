#!/usr/bin/env bash
# Sets everything up and runs strata's main job on the example: builds strata, makes the busybox
# base image offline from Debian's busybox-static, builds testdata/example into example:1, runs
# it, mounts it and lists it.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --release --bin strata --locked
export STRATA="${CARGO_TARGET_DIR:-$PWD/target}/release/strata"
export STRATA_ROOT="${STRATA_ROOT:-$PWD/.strata-example}"
testdata/make-busybox.sh busybox:latest
echo "== strata build -f testdata/example/Dockerfile -t example:1 testdata/example"
"$STRATA" build --progress plain -f testdata/example/Dockerfile -t example:1 testdata/example
echo "== strata images --tree"
"$STRATA" images --tree
echo "== strata inspect example:1 (config)"
"$STRATA" inspect example:1 | jq '.[0] | {Id, Digest, RepoTags, Config: .Config.config}'
echo "== strata run --rm example:1"
"$STRATA" run --rm example:1
mnt=$(mktemp -d)
trap '"$STRATA" umount "$mnt" 2>/dev/null || true; rmdir "$mnt" 2>/dev/null || true' EXIT
echo "== strata mount example:1 $mnt && ls -l $mnt/app"
"$STRATA" mount example:1 "$mnt"
ls -l "$mnt/app"
"$STRATA" umount "$mnt"
