#!/usr/bin/env bash
# Installs what strata's tests, benches and example need on a Debian 12 machine (as root).
# Idempotent: installs only what is missing.
set -euo pipefail
APT_PKGS=(
  buildah skopeo umoci oci-image-tool fuse-overlayfs crun runc docker-registry hyperfine
  busybox-static debootstrap fuse3 apache2-utils zstd pigz bzip2 xz-utils attr time jq bc
  python3 iproute2 iputils-ping nftables libnftables1 util-linux kmod openssl curl passwd tar coreutils
  podman procps
  qemu-user-static
)
missing=()
for p in "${APT_PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "setup: missing packages ${missing[*]}; run as root (apt-get install)" >&2
    exit 1
  fi
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Kernel modules the tests use (present on this kernel; loading is a no-op if built in).
modprobe overlay 2>/dev/null || true
modprobe fuse 2>/dev/null || true
# Multi-platform tests and bench: arm64 packages (busybox-static:arm64 for the arm64 base image,
# fetched with `apt-get download` by testdata/make-busybox.sh) and binfmt_misc mounted so
# `strata binfmt --install` can register qemu-user-static's handlers.
if [ "$(id -u)" = 0 ]; then
  if ! dpkg --print-foreign-architectures | grep -qx arm64; then
    dpkg --add-architecture arm64
    apt-get update -qq
  fi
  if [ ! -e /proc/sys/fs/binfmt_misc/register ]; then
    mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc 2>/dev/null || true
  fi
fi
# The suite's fmt and clippy steps: add the rustup components only when they are missing.
if command -v rustup >/dev/null 2>&1; then
  for c in rustfmt clippy; do
    rustup component list --installed 2>/dev/null | grep -q "^$c" || rustup component add "$c"
  done
fi
