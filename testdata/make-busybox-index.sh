#!/usr/bin/env bash
# Makes a two-platform busybox image offline: busybox for linux/amd64 and linux/arm64 (each with
# testdata/make-busybox.sh, arm64 from Debian's busybox-static:arm64), combined into one OCI image
# index tagged NAME (default busybox-multi:latest). The children are named NAME-amd64 and
# NAME-arm64 while the index is made, then only the index keeps a name.
#
#   testdata/make-busybox-index.sh [NAME] [PLATFORM…]   # default platforms: linux/amd64 linux/arm64
#
# Uses $STRATA and $STRATA_ROOT as make-busybox.sh does.
set -euo pipefail
name=${1:-busybox-multi:latest}
shift || true
platforms=("$@")
[ ${#platforms[@]} -gt 0 ] || platforms=(linux/amd64 linux/arm64)
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
if [ -z "${STRATA:-}" ]; then
  if command -v strata >/dev/null 2>&1; then STRATA=strata
  elif [ -x "$repo/target/release/strata" ]; then STRATA="$repo/target/release/strata"
  elif [ -x "$repo/target/debug/strata" ]; then STRATA="$repo/target/debug/strata"
  else echo "make-busybox-index: no strata binary (build it or set \$STRATA)" >&2; exit 1; fi
fi
export STRATA
repo_name=${name%:*}
parts=()
for p in "${platforms[@]}"; do
  child="$repo_name:tmp-${p//\//-}"
  "$here/make-busybox.sh" "$child" "$p" >/dev/null
  parts+=("$child")
done
"$STRATA" manifest create "$name" "${parts[@]}"
for c in "${parts[@]}"; do "$STRATA" rmi "$c" >/dev/null; done
