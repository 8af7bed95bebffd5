# Shared by make-busybox.sh and make-busybox-multi.sh: the busybox root filesystem, laid out as docker.io's
# busybox is (see make-busybox.sh).
#
# busybox_rootfs DEB ROOT APPLETS_FILE
#   DEB           a busybox-static .deb (of any architecture)
#   ROOT          the directory to fill (created)
#   APPLETS_FILE  the applet names, one a line (`busybox --list` of the same version; a foreign binary cannot be
#                 asked here)
busybox_rootfs() {
  local deb=$1 root=$2 applets=$3
  local here
  here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
  local pkg
  pkg=$(mktemp -d)
  dpkg-deb -x "$deb" "$pkg"
  mkdir -p "$root"/{bin,etc,dev,proc,sys,tmp,root,home,usr/sbin,var/spool/mail,var/www}
  install -m 0755 "$pkg/bin/busybox" "$root/bin/busybox"
  rm -rf "$pkg"
  # Every applet a hard link to the binary, in /bin (as `busybox --install /bin` makes them).
  while read -r applet; do
    [ "$applet" = busybox ] || ln "$root/bin/busybox" "$root/bin/$applet"
  done < "$applets"
  for f in adduser addgroup; do
    install -m 0755 "$here/busybox-etc/$f" "$root/bin/$f"
  done
  for f in passwd group; do
    install -m 0644 "$here/busybox-etc/$f" "$root/etc/$f"
  done
  install -m 0640 "$here/busybox-etc/shadow" "$root/etc/shadow"
  find "$root" -type d -exec chmod 0755 {} +
  chmod 1777 "$root/tmp"
  chmod 0700 "$root/root"
}
