#!/usr/bin/env bash
# Union file system benchmark: the same 3 layers (20k small files, one 500 MB file, whiteouts, an
# opaque directory) mounted read-only by kernel overlayfs, fuse-overlayfs and strata's FUSE file
# system (`strata-fuse`, same command line as fuse-overlayfs), measured interleaved
# (kernel, fuse-overlayfs, strata, kernel, …) for $REPS repetitions.
#
#   cold find   remount + drop_caches, then `find MNT`
#   cold stat   remount + drop_caches, then lstat of every entry (`find MNT -printf '%s %m'`)
#   warm tar    tar of the 20k small files (after one warm-up pass) piped through cat
#   cold read   remount + drop_caches, then a 1 MiB-block sequential read of the 500 MB file
#
# Prints the median of each figure, the ratio to kernel overlayfs, the servers' peak RSS, and the
# time `strata mount` takes for a 20k-file image whose merged index is already in the store.
#
#   STRATA=target/release/strata REPS=3 bench/unionfs.sh
set -euo pipefail
source "$(dirname "$0")/lib.sh"
STRATA=$(strata_binary)
REPS=${REPS:-3}
BASE=${BASE:-/var/tmp/strata-bench-unionfs}
SMALL=${SMALL:-20000}
BIG_MB=${BIG_MB:-500}
[ "$(id -u)" = 0 ] || { echo "run as root (mounts, drop_caches)" >&2; exit 1; }
command -v fuse-overlayfs >/dev/null || { echo "fuse-overlayfs missing: apt-get install fuse-overlayfs" >&2; exit 1; }

mkdir -p "$BASE/bin"
ln -sf "$STRATA" "$BASE/bin/strata-fuse"
L1=$BASE/l1 L2=$BASE/l2 L3=$BASE/l3 MNT=$BASE/mnt
mkdir -p "$MNT"
cleanup() { umount "$MNT" 2>/dev/null || umount -l "$MNT" 2>/dev/null || true; }
trap cleanup EXIT

if [ ! -f "$BASE/.layers-done-$SMALL-$BIG_MB" ]; then
  echo "making layers in $BASE (once)…" >&2
  rm -rf "$L1" "$L2" "$L3"; mkdir -p "$L1/small" "$L2/small" "$L3/small"
  # layer 1: $SMALL small files in 200 directories, and the big file
  per=$((SMALL / 200))
  for d in $(seq 0 199); do
    mkdir -p "$L1/small/d$d"
    for f in $(seq 0 $((per - 1))); do printf 'file %d/%d\n%0200d\n' "$d" "$f" 0 > "$L1/small/d$d/f$f"; done
  done
  dd if=/dev/urandom of="$L1/big" bs=1M count="$BIG_MB" status=none
  # layer 2: whiteouts (a file per directory in 50 directories, and one whole directory),
  # an opaque directory with new content
  for d in $(seq 0 49); do mkdir -p "$L2/small/d$d"; mknod "$L2/small/d$d/f0" c 0 0; done
  mknod "$L2/small/d199" c 0 0
  mkdir -p "$L2/small/d198"; setfattr -n trusted.overlay.opaque -v y "$L2/small/d198"
  for f in $(seq 0 9); do echo "opaque $f" > "$L2/small/d198/n$f"; done
  # layer 3: some files replaced
  for d in $(seq 100 109); do mkdir -p "$L3/small/d$d"; echo "top $d" > "$L3/small/d$d/f1"; done
  touch "$BASE/.layers-done-$SMALL-$BIG_MB"
fi
LOWER="$L3:$L2:$L1"   # top first, as overlay wants it

mount_fs() { # kind
  case $1 in
    kernel) mount -t overlay overlay -o "ro,lowerdir=$LOWER" "$MNT" ;;
    fuse-overlayfs) fuse-overlayfs -o "lowerdir=$LOWER" "$MNT" ;;
    strata) "$BASE/bin/strata-fuse" -o "lowerdir=$LOWER" "$MNT" ;;
  esac
}
server_pid() { # kind
  case $1 in
    kernel) echo "" ;;
    fuse-overlayfs) pgrep -n -f "fuse-overlayfs -o lowerdir=$LOWER" || true ;;
    strata) pgrep -n -f "strata-fuse -o lowerdir=$LOWER" || true ;;
  esac
}
remount() { cleanup; mount_fs "$1"; }
drop() { sync; echo 3 > /proc/sys/vm/drop_caches; }
now_ns() { date +%s%N; }
ms() { echo $(( ($2 - $1) / 1000000 )); }

declare -A T
declare -A RSS
kinds=(kernel fuse-overlayfs strata)
figures=(cold_find cold_stat warm_tar cold_read)
entries=""
for rep in $(seq 1 "$REPS"); do
  for k in "${kinds[@]}"; do
    remount "$k"; drop; s=$(now_ns); n=$(find "$MNT" | wc -l); e=$(now_ns); T[$k,cold_find]+="$(ms "$s" "$e") "
    if [ -z "$entries" ]; then entries=$n; elif [ "$n" != "$entries" ]; then echo "$k shows $n entries, expected $entries" >&2; exit 1; fi
    remount "$k"; drop; s=$(now_ns); find "$MNT" -printf '%s %m\n' > /dev/null; e=$(now_ns); T[$k,cold_stat]+="$(ms "$s" "$e") "
    tar -cf - -C "$MNT" small | cat > /dev/null
    s=$(now_ns); tar -cf - -C "$MNT" small | cat > /dev/null; e=$(now_ns); T[$k,warm_tar]+="$(ms "$s" "$e") "
    remount "$k"; drop; s=$(now_ns); dd if="$MNT/big" of=/dev/null bs=1M status=none; e=$(now_ns); T[$k,cold_read]+="$(ms "$s" "$e") "
    pid=$(server_pid "$k")
    if [ -n "$pid" ]; then RSS[$k]=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status"); else RSS[$k]="-"; fi
    cleanup
  done
done

echo
echo "union file systems over 3 layers ($entries entries, ${BIG_MB} MB file), median of $REPS, ms"
printf '%-10s %10s %16s %10s %14s %14s\n' figure kernel fuse-overlayfs strata "fuse-ovl/kern" "strata/kern"
for f in "${figures[@]}"; do
  k=$(median <<<"${T[kernel,$f]}"); o=$(median <<<"${T[fuse-overlayfs,$f]}"); s=$(median <<<"${T[strata,$f]}")
  printf '%-10s %10s %16s %10s %14s %14s\n' "$f" "$k" "$o" "$s" \
    "$(awk -v a="$o" -v b="$k" 'BEGIN {printf "%.2fx", (b > 0 ? a / b : 0)}')" \
    "$(awk -v a="$s" -v b="$k" 'BEGIN {printf "%.2fx", (b > 0 ? a / b : 0)}')"
done
echo "peak RSS of the server (KiB): fuse-overlayfs ${RSS[fuse-overlayfs]}, strata ${RSS[strata]}"

# Mount time of an indexed image: the small-file layer as a one-layer image in a scratch store.
ROOT=$BASE/store
if [ ! -f "$BASE/.image-done-$SMALL" ]; then
  rm -rf "$ROOT"
  tar -C "$L1" -cf "$BASE/small.tar" small
  STRATA_ROOT=$ROOT "$STRATA" import "$BASE/small.tar" bench-small:latest > /dev/null
  touch "$BASE/.image-done-$SMALL"
fi
STRATA_ROOT=$ROOT "$STRATA" mount bench-small "$MNT" && STRATA_ROOT=$ROOT "$STRATA" umount "$MNT"  # builds the index
mt=""
for i in $(seq 1 10); do
  s=$(now_ns); STRATA_ROOT=$ROOT "$STRATA" mount bench-small "$MNT"; e=$(now_ns)
  mt+="$(ms "$s" "$e") "
  STRATA_ROOT=$ROOT "$STRATA" umount "$MNT"
done
echo "strata mount of an indexed $SMALL-file image (returns when the mount answers): median $(median <<<"$mt") ms of 10 (${mt% })"
