#!/usr/bin/env bash
# Make the `busybox` test image as an OCI layout, offline except for fetching Debian's busybox-static package:
# the static busybox binary, a symlink for every applet, /etc/passwd and /etc/group (root, a user 1000, nobody),
# /tmp, /root and the usual empty mount points. Same .deb in, same manifest digest out.
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
dpkg-deb -x "$deb" "$work/pkg"
root="$work/rootfs"
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,etc,dev,proc,sys,tmp,root,home/user,var,run}
install -m 0755 "$work/pkg/bin/busybox" "$root/bin/busybox"
# One symlink per applet, at the path busybox itself reports.
"$root/bin/busybox" --list-full | while read -r applet; do
  [ "$applet" = bin/busybox ] && continue
  mkdir -p "$root/$(dirname "$applet")"
  ln -sf /bin/busybox "$root/$applet"
done
cat > "$root/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/bin/sh
user:x:1000:1000:user:/home/user:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
PASSWD
cat > "$root/etc/group" <<'GROUP'
root:x:0:
user:x:1000:
nogroup:x:65534:
GROUP
chmod 0644 "$root/etc/passwd" "$root/etc/group"
find "$root" -type d -exec chmod 0755 {} +
chmod 1777 "$root/tmp"
chmod 0700 "$root/root"
version=$(dpkg-deb -f "$deb" Version)
make_oci_layout "$root" "$out" "busybox-static $version (rbuild vendor-test-images)" '["sh"]' force-root-owner
