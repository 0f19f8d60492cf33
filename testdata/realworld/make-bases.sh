#!/usr/bin/env bash
# Makes local stand-ins of the official base images the real-world projects use (no Docker Hub
# here), in a strata store:
#
#   debian:bookworm        testdata/debian/make-debian.sh (debootstrap --variant=minbase)
#   debian:bookworm-slim   the same rootfs without docs, man pages and locales, and with the
#                          dpkg path excludes the official slim image has
#   python:3.11-slim       FROM debian:bookworm-slim + Debian's python3, python3-pip, python3-venv
#   node:18-slim           FROM debian:bookworm-slim + Debian's nodejs, npm
#   golang:1.19            FROM debian:bookworm + Debian's golang-go
#   rust:1.63              FROM debian:bookworm + Debian's rustc, cargo
#
#   testdata/realworld/make-bases.sh [python|node|golang|rust]...   # default: all of them
#   (uses $STRATA and $STRATA_ROOT as strata does; the Debian pair is always made)
#
# The language bases are built once with `strata build` from bases/<lang>.Dockerfile and cached
# as OCI archives under $STRATA_REALWORLD_CACHE (default /var/tmp/strata-realworld-bases), keyed by
# the ISO week (as the Debian rootfs is) and a hash of this script and the base Dockerfiles; later
# runs only `strata load` them. `archive NAME` prints where a base's OCI archive is, so benches can
# hand the very same image to buildah (`oci-archive:`) and, through `strata save --format docker`,
# to Docker.
#
# A local CA (a TLS-intercepting proxy's, from /usr/local/share/ca-certificates) is copied into the
# language bases, so pip/npm inside a build trust what the host trusts; without one nothing is added.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
: "${STRATA:?set STRATA to the strata binary}"
cache_root=${STRATA_REALWORLD_CACHE:-/var/tmp/strata-realworld-bases}
hash=$(cat "$here/make-bases.sh" "$here"/bases/*.Dockerfile | sha256sum | cut -c1-12)
key="$(date -u +%G-W%V)-$hash"
cache="$cache_root/$key"

declare -A ref=(
  [python]=python:3.11-slim [node]=node:18-slim [golang]=golang:1.19 [rust]=rust:1.63
)
declare -A from=(
  [python]=debian:bookworm-slim [node]=debian:bookworm-slim [golang]=debian:bookworm
  [rust]=debian:bookworm
)

if [ "${1:-}" = archive ]; then
  echo "$cache/${2:?usage: make-bases.sh archive LANG}.oci.tar"
  exit 0
fi
langs=("$@")
[ ${#langs[@]} -gt 0 ] || langs=(python node golang rust)
for l in "${langs[@]}"; do
  [ -n "${ref[$l]:-}" ] || { echo "make-bases: unknown base '$l' (python, node, golang, rust)" >&2; exit 2; }
done

log() { echo "make-bases: $*" >&2; }
st() { "$STRATA" "$@"; }

# debian:bookworm, from the weekly debootstrap cache.
"$repo/testdata/debian/make-debian.sh" debian:bookworm >/dev/null

# debian:bookworm-slim: the same files minus what the official slim image excludes
# (debuerreotype's slimify list: docs, man/info pages, locales but C/en), with the same dpkg
# path-exclude file so packages installed later stay slim too.
mkdir -p "$cache_root"
slim=$(mktemp -d "$cache_root/.slim.XXXXXX")
trap 'rm -rf "$slim"' EXIT
st export debian:bookworm -o "$slim/rootfs.tar"
mkdir "$slim/rootfs"
tar -xpf "$slim/rootfs.tar" -C "$slim/rootfs" --numeric-owner \
  --exclude='./usr/share/doc/*' --exclude='./usr/share/man/*' --exclude='./usr/share/info/*' \
  --exclude='./usr/share/locale/*' --exclude='./usr/share/lintian/*' --exclude='./usr/share/linda/*'
rm "$slim/rootfs.tar"
mkdir -p "$slim/rootfs/etc/dpkg/dpkg.cfg.d"
cat > "$slim/rootfs/etc/dpkg/dpkg.cfg.d/docker" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/en*
EOF
st import --change 'CMD ["bash"]' \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  "$slim/rootfs" debian:bookworm-slim >/dev/null
rm -rf "$slim/rootfs"

# The language bases: load the cached archive, or build it once (one builder at a time per cache).
mkdir -p "$cache"
exec 9>"$cache/.lock"
flock 9
for l in "${langs[@]}"; do
  archive="$cache/$l.oci.tar"
  if [ ! -s "$archive" ]; then
    log "building ${ref[$l]} FROM ${from[$l]} (cached afterwards in $cache)"
    ctx="$slim/ctx-$l"
    mkdir -p "$ctx/extra-ca"
    cp /usr/local/share/ca-certificates/*.crt "$ctx/extra-ca/" 2>/dev/null || true
    cp "$here/bases/$l.Dockerfile" "$ctx/Dockerfile"
    st build --progress plain -t "${ref[$l]}" "$ctx" >"$slim/build-$l.log" 2>&1 \
      || { tail -40 "$slim/build-$l.log" >&2; exit 1; }
    st save --format oci -o "$archive.tmp" "${ref[$l]}"
    mv "$archive.tmp" "$archive"
  else
    st load -i "$archive" >/dev/null
  fi
done
flock -u 9
# Older caches are stale: drop them (not the one in use).
find "$cache_root" -mindepth 1 -maxdepth 1 -name '20*-W*' ! -name "$key" -exec rm -rf {} +
