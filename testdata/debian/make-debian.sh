#!/usr/bin/env bash
# Makes a minimal Debian bookworm root filesystem with debootstrap (--variant=minbase), from the
# mirror the host's apt uses, with the host's apt source configuration copied in (so `apt-get
# update` inside a build reaches the same mirror), and imports it into a strata store.
#
#   testdata/debian/make-debian.sh NAME        # uses $STRATA and $STRATA_ROOT as strata does
#
# The rootfs is cached under $STRATA_DEBIAN_CACHE (default /var/tmp/strata-test-debian), keyed by
# suite, architecture and the ISO week, so the test suite debootstraps at most once a week and a
# fresh machine builds it from nothing. A half-made rootfs never becomes the cache: it is built in
# a temp dir next to it and renamed into place only when debootstrap succeeded.
set -euo pipefail
name=${1:?usage: make-debian.sh NAME}
suite=bookworm
arch=$(dpkg --print-architecture)
cache=${STRATA_DEBIAN_CACHE:-/var/tmp/strata-test-debian}
key="$suite-minbase-$arch-$(date -u +%G-W%V)"
rootfs="$cache/$key"
: "${STRATA:?set STRATA to the strata binary}"

# The host's mirror: the first deb URI of the sources that list this suite (deb822 .sources or
# one-line .list files). Falls back to Debian's canonical mirror name.
mirror=""
for f in /etc/apt/sources.list.d/*.sources; do
  [ -e "$f" ] || continue
  mirror=$(awk -v s="$suite" '
      /^URIs:/ {u=$2} /^Suites:/ {for (i=2;i<=NF;i++) if ($i==s) found=1}
      /^$/ {if (found && u!="") {print u; exit} found=0; u=""}
      END {if (found && u!="") print u}' "$f" | head -1)
  [ -n "$mirror" ] && break
done
if [ -z "$mirror" ] && [ -e /etc/apt/sources.list ]; then
  mirror=$(awk -v s="$suite" '$1=="deb" && $3==s {print $2; exit}' /etc/apt/sources.list)
fi
mirror=${mirror:-http://deb.debian.org/debian}

if [ ! -x "$rootfs/usr/bin/apt-get" ]; then
  command -v debootstrap >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null; }
  mkdir -p "$cache"
  # Only one debootstrap at a time per cache (tests may run in parallel).
  exec 9>"$cache/.lock"
  flock 9
  if [ ! -x "$rootfs/usr/bin/apt-get" ]; then
    tmp=$(mktemp -d "$cache/.tmp-$key.XXXXXX")
    trap 'rm -rf "$tmp"' EXIT
    echo "make-debian: debootstrap --variant=minbase $suite from $mirror" >&2
    debootstrap --variant=minbase --arch="$arch" "$suite" "$tmp/rootfs" "$mirror" >"$tmp/log" 2>&1 \
      || { tail -30 "$tmp/log" >&2; exit 1; }
    # The host's apt sources (only the Debian ones: third-party repositories need keys the
    # rootfs doesn't have), so the image's apt-get reaches the same mirror as the host's.
    rm -f "$tmp/rootfs/etc/apt/sources.list"
    copied=0
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list; do
      [ -f "$f" ] || continue
      grep -q 'debian' "$f" || continue
      case "$f" in *google*|*nodesource*) continue ;; esac
      mkdir -p "$tmp/rootfs$(dirname "$f")"
      cp "$f" "$tmp/rootfs$f"
      copied=1
    done
    [ "$copied" = 1 ] || echo "deb $mirror $suite main" > "$tmp/rootfs/etc/apt/sources.list"
    # Trim what an image doesn't need (debootstrap's apt lists and package cache).
    rm -rf "$tmp/rootfs/var/cache/apt/archives/"*.deb "$tmp/rootfs/var/lib/apt/lists/"* "$tmp/rootfs/debootstrap"
    # Older weeks' caches are stale: drop them.
    find "$cache" -mindepth 1 -maxdepth 1 -name "$suite-minbase-$arch-*" ! -name "$key" -exec rm -rf {} +
    mv "$tmp/rootfs" "$rootfs"
  fi
  flock -u 9
fi
"$STRATA" import --change 'CMD ["bash"]' \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' "$rootfs" "$name"
