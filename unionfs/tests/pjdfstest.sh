#!/usr/bin/env bash
# pjdfstest (the Rust port: `cargo install pjdfstest`) on a --rw union mount of ours
# (`strata-fuse`) and of fuse-overlayfs, over the same two lower layers, with the same config.
# Prints pass/fail counts for both and writes the full logs and the failure lists to $OUT.
#
#   STRATA=target/release/strata PJDFSTEST=pjdfstest OUT=/tmp/pjd unionfs/tests/pjdfstest.sh
set -euo pipefail
STRATA=${STRATA:-target/release/strata}
PJDFSTEST=${PJDFSTEST:-pjdfstest}
OUT=${OUT:-/tmp/strata-pjdfstest}
STRATA=$(readlink -f "$STRATA")
mkdir -p "$OUT"
work=$(mktemp -d /tmp/strata-pjd.XXXXXX)
chmod 0755 "$work"   # the unprivileged test users must reach the mountpoint
bin="$work/bin"; mkdir -p "$bin"; ln -s "$STRATA" "$bin/strata-fuse"
mounts=()
cleanup() {
  for m in "${mounts[@]}"; do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

# pjdfstest switches to two unprivileged users for its permission tests: nobody and "tests"
# (created here, as a system user with its own group, if missing).
getent passwd tests >/dev/null || useradd -r -M -U -s /usr/sbin/nologin tests
nobody_group=$(id -gn nobody)
cat > "$work/pjdfstest.toml" <<TOML
[features]
posix_fallocate = {}
utime_now = {}
utimensat = {}
rename_ctime = {}
[settings]
naptime = 0.01
allow_remount = false
[dummy_auth]
entries = [["nobody", "$nobody_group"], ["tests", "tests"]]
TOML

run_one() { # name mount-command...
  local name=$1; shift
  local d="$work/$name"; mkdir -p "$d"/{lower1,lower2,upper,work,mnt}
  echo base > "$d/lower1/base"; mkdir -p "$d/lower2/dir"; echo top > "$d/lower2/dir/top"
  "$@" "$d"
  mounts+=("$d/mnt")
  chmod 0777 "$d/mnt"
  mkdir -p "$d/mnt/pjd" && chmod 0777 "$d/mnt/pjd"
  (cd "$d/mnt/pjd" && timeout 1800 "$PJDFSTEST" -c "$work/pjdfstest.toml" -p "$d/mnt/pjd" > "$OUT/$name.log" 2>&1) || true
  umount "$d/mnt"
  local pass fail skip summary
  summary=$(grep -E '^Summary:' "$OUT/$name.log" | tail -1)
  fail=$(sed -nE 's/^Summary: ([0-9]+) failed.*/\1/p' <<<"$summary"); fail=${fail:-0}
  skip=$(sed -nE 's/.* ([0-9]+) skipped.*/\1/p' <<<"$summary"); skip=${skip:-0}
  pass=$(sed -nE 's/.* ([0-9]+) passed.*/\1/p' <<<"$summary"); pass=${pass:-0}
  grep -E '^[a-z_0-9:]+ +FAILED$' "$OUT/$name.log" | awk '{print $1}' | sort > "$OUT/$name.failed" || true
  printf '%-16s passed %4d  failed %4d  skipped %4d  (of %d)\n' "$name" "$pass" "$fail" "$skip" $((pass + fail + skip))
}
mount_strata() {
  local d=$1
  "$bin/strata-fuse" -o "lowerdir=$d/lower2:$d/lower1,upperdir=$d/upper,workdir=$d/work" "$d/mnt"
}
mount_fuse_overlayfs() {
  local d=$1
  fuse-overlayfs -o "lowerdir=$d/lower2:$d/lower1,upperdir=$d/upper,workdir=$d/work,allow_other" "$d/mnt"
}
echo "pjdfstest $("$PJDFSTEST" -V 2>/dev/null | awk '{print $2}') on --rw union mounts (logs in $OUT)"
run_one strata mount_strata
run_one fuse-overlayfs mount_fuse_overlayfs
echo "failing only on strata:";         comm -23 "$OUT/strata.failed" "$OUT/fuse-overlayfs.failed" | sed 's/^/  /'
echo "failing only on fuse-overlayfs:"; comm -13 "$OUT/strata.failed" "$OUT/fuse-overlayfs.failed" | sed 's/^/  /'
