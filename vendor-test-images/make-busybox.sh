#!/usr/bin/env bash
# Make the `busybox` test image as an OCI layout, offline except for fetching Debian's busybox-static package,
# laid out as docker.io's busybox is: the static binary in /bin with every applet a hard link to it in /bin,
# docker.io's users and groups (root, daemon, bin, sys, ..., wheel 10, nobody/nogroup 65534; from busybox-etc/),
# /etc/shadow, /root 0700, /tmp 1777, /home and /var/{spool/mail,www}, two history entries (the layer and
# `CMD ["sh"]`). Debian's busybox has no adduser/addgroup applets, so busybox-etc/ has stand-in scripts doing
# what `adduser -D NAME` and `addgroup` do there. Same .deb in, same manifest digest out.
#
# usage: make-busybox.sh OUT_DIR
# env:   BUSYBOX_DEB      use this busybox-static .deb instead of downloading one (air-gapped hosts)
#        DEB_CACHE        where downloaded .debs are kept (default: OUT_DIR/../debs)
#        SOURCE_DATE_EPOCH  the image's timestamps (default 0)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib/oci-layout.sh"

out=${1:?usage: make-busybox.sh OUT_DIR}
mkdir -p "$(dirname "$out")"
out=$(cd "$(dirname "$out")" && pwd)/$(basename "$out")
deb=${BUSYBOX_DEB:-$(fetch_deb busybox-static "${DEB_CACHE:-$(dirname "$out")/debs}")}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
. "$here/lib/busybox-rootfs.sh"
dpkg-deb -x "$deb" "$work/pkg"
"$work/pkg/bin/busybox" --list > "$work/applets"
root="$work/rootfs"
busybox_rootfs "$deb" "$root" "$work/applets"
version=$(dpkg-deb -f "$deb" Version)
make_oci_layout "$root" "$out" "busybox-static $version (rbuild vendor-test-images)" '["sh"]' force-root-owner
