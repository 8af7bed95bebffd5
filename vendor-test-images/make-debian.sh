#!/usr/bin/env bash
# Make the `debian` test image (bookworm, minbase variant) as an OCI layout with debootstrap, from the Debian
# mirror this machine's apt is configured with (or DEBIAN_MIRROR). Needs root (debootstrap does). Slower than
# busybox; built only by the tests that need it and cached. Its digest changes when the archive's packages do.
#
# usage: make-debian.sh OUT_DIR
# env:   DEBIAN_MIRROR   the mirror URL (default: the one apt uses for bookworm/main)
#        DEBIAN_SUITE    default bookworm
#        SOURCE_DATE_EPOCH  the image's timestamps (default 0)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib/oci-layout.sh"

out=${1:?usage: make-debian.sh OUT_DIR}
mkdir -p "$(dirname "$out")"
out=$(cd "$(dirname "$out")" && pwd)/$(basename "$out")
suite=${DEBIAN_SUITE:-bookworm}
if [ "$(id -u)" != 0 ]; then
  echo "make-debian.sh needs root (debootstrap creates files of many owners)" >&2
  exit 1
fi
command -v debootstrap >/dev/null || { apt-get update -qq && apt-get install -y -qq debootstrap >/dev/null; }
mirror=${DEBIAN_MIRROR:-$(apt-cache policy 2>/dev/null | awk -v s="$suite/main" '$3 == s { print $2; exit }')}
if [ -z "$mirror" ]; then
  echo "no Debian mirror for $suite found in apt's sources; set DEBIAN_MIRROR" >&2
  exit 1
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-0}
debootstrap --variant=minbase "$suite" "$work/rootfs" "$mirror" > "$work/debootstrap.log" 2>&1 || {
  tail -n 30 "$work/debootstrap.log" >&2
  exit 1
}
root="$work/rootfs"
# Drop what varies between runs or does not belong in an image.
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/cache/apt/*.bin "$root"/var/lib/apt/lists/* \
  "$root"/var/log/* "$root"/dev/* "$root"/var/cache/ldconfig/aux-cache "$root"/debootstrap
: > "$root/etc/machine-id"
version="$suite minbase $(date -u +%Y-%m-%d)"
make_oci_layout "$root" "$out" "debootstrap --variant=minbase $suite (rbuild vendor-test-images)" '["bash"]'
