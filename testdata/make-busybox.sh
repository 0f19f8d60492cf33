#!/usr/bin/env bash
# Makes a busybox base image offline from Debian's busybox-static and loads it into a strata store
# as busybox:latest (or the name given as $1), for this host's platform or the one given as $2.
#
#   testdata/make-busybox.sh [NAME] [PLATFORM]
#       uses $STRATA (default: strata on PATH, else target/*/strata) and $STRATA_ROOT / --root as
#       strata does. PLATFORM (linux/arm64, linux/arm/v7, linux/riscv64…) other than the host's
#       takes busybox from Debian's busybox-static:<debian arch> (`dpkg --add-architecture` and
#       `apt-get download`, cached in $BUSYBOX_DEB_CACHE, default /var/cache/strata-testdata).
#
# The tarball is made reproducibly (sorted, numeric root owners, fixed mtime), so the image digest
# is the same on every run with the same busybox-static package.
set -euo pipefail
name=${1:-busybox:latest}
platform=${2:-}
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)

if [ -z "${STRATA:-}" ]; then
  if command -v strata >/dev/null 2>&1; then STRATA=strata
  elif [ -x "$repo/target/release/strata" ]; then STRATA="$repo/target/release/strata"
  elif [ -x "$repo/target/debug/strata" ]; then STRATA="$repo/target/debug/strata"
  else echo "make-busybox: no strata binary (build it or set \$STRATA)" >&2; exit 1; fi
fi

# The static build is what we need (the rootfs has no libc). Ask dpkg rather than running busybox
# through a pipe: with pipefail, `busybox --help | head -1` can fail on SIGPIPE and send every
# caller (tests run in parallel) into a racing apt-get.
bb_status=$(dpkg-query -W -f='${Status}' busybox-static 2>/dev/null || true)
if [ "$bb_status" != "install ok installed" ]; then
  if [ "$(id -u)" = 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq busybox-static >/dev/null \
      || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq busybox-static >/dev/null; }
  else
    echo "make-busybox: /bin/busybox missing: apt-get install busybox-static" >&2; exit 1
  fi
fi

host_arch=$(dpkg --print-architecture)
deb_arch=$host_arch
if [ -n "$platform" ]; then
  case "$platform" in
    */amd64|amd64) deb_arch=amd64 ;;
    */arm64*|arm64) deb_arch=arm64 ;;
    */arm/v7|*/arm) deb_arch=armhf ;;
    */arm/v6|*/arm/v5) deb_arch=armel ;;
    */386|386) deb_arch=i386 ;;
    */riscv64|riscv64) deb_arch=riscv64 ;;
    */ppc64le|ppc64le) deb_arch=ppc64el ;;
    */s390x|s390x) deb_arch=s390x ;;
    *) echo "make-busybox: unknown platform $platform" >&2; exit 1 ;;
  esac
fi

rootfs=$(mktemp -d)
trap 'rm -rf "$rootfs"' EXIT
mkdir -p "$rootfs"/{bin,sbin,usr/bin,usr/sbin,etc,tmp,root,home,var,proc,sys,dev}
if [ "$deb_arch" = "$host_arch" ]; then
  cp /bin/busybox "$rootfs/bin/busybox"
else
  cache=${BUSYBOX_DEB_CACHE:-/var/cache/strata-testdata}
  mkdir -p "$cache"
  # One download at a time: tests make bases in parallel.
  exec 9>"$cache/.lock"
  flock 9
  deb=$(ls "$cache"/busybox-static_*_"$deb_arch".deb 2>/dev/null | head -1 || true)
  if [ -z "$deb" ]; then
    if ! dpkg --print-foreign-architectures | grep -qx "$deb_arch"; then
      [ "$(id -u)" = 0 ] || { echo "make-busybox: run as root: dpkg --add-architecture $deb_arch && apt-get update" >&2; exit 1; }
      dpkg --add-architecture "$deb_arch"
      apt-get update -qq
    fi
    (cd "$cache" && apt-get download -qq "busybox-static:$deb_arch" 2>/dev/null) \
      || { apt-get update -qq && (cd "$cache" && apt-get download -qq "busybox-static:$deb_arch"); }
    deb=$(ls "$cache"/busybox-static_*_"$deb_arch".deb | head -1)
  fi
  flock -u 9
  unpacked=$(mktemp -d)
  dpkg-deb -x "$deb" "$unpacked"
  cp "$unpacked/bin/busybox" "$rootfs/bin/busybox"
  rm -rf "$unpacked"
fi
chmod 0755 "$rootfs/bin/busybox"
# One symlink per applet, where busybox would install it (the host's busybox lists them: the
# same Debian version for every architecture, and it runs without emulation).
/bin/busybox --list-full | while read -r applet; do
  [ "$applet" = bin/busybox ] && continue
  dir=$(dirname "$applet")
  mkdir -p "$rootfs/$dir"
  case "$dir" in
    bin) target=busybox ;;
    sbin) target=../bin/busybox ;;
    usr/bin|usr/sbin) target=../../bin/busybox ;;
    *) target=/bin/busybox ;;
  esac
  ln -sf "$target" "$rootfs/$applet"
done
cat > "$rootfs/etc/passwd" <<'P'
root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
nobody:x:65534:65534:nobody:/home:/bin/false
P
cat > "$rootfs/etc/group" <<'G'
root:x:0:
daemon:x:1:
nogroup:x:65534:
G
chmod 1777 "$rootfs/tmp"
chmod 0700 "$rootfs/root"
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 --format=pax \
    --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime \
    -C "$rootfs" -cf - . \
  | "$STRATA" import ${platform:+--platform "$platform"} --change 'CMD ["sh"]' --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' - "$name"
