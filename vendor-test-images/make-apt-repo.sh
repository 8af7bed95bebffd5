#!/usr/bin/env bash
# Make a flat local apt repository (a directory of .debs with a Packages index) for the Debian test image: what
# `apt-get install` in the differential tests' Dockerfiles fetches from loopback, so those tests stay offline.
# The packages and everything they depend on are downloaded with `apt-get download` from the mirror this machine's
# apt uses (the same suite as the debian test image); the index is written here, without dpkg-dev or apt-utils.
#
# usage: make-apt-repo.sh OUT_DIR PACKAGE...
# A Dockerfile uses it with `echo "deb [trusted=yes] http://127.0.0.1:PORT/ ./" > /etc/apt/sources.list`.
set -euo pipefail
out=${1:?usage: make-apt-repo.sh OUT_DIR PACKAGE...}
shift
[ $# -gt 0 ] || { echo "make-apt-repo.sh: name at least one package" >&2; exit 1; }

stage=$(mktemp -d "$(dirname "$out")/.$(basename "$out").XXXXXX")
trap 'rm -rf "$stage"' EXIT

closure() {
  apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts --no-breaks --no-replaces \
    --no-enhances "$@" | grep -E '^[a-z0-9]' | sort -u
}
pkgs=$(closure "$@" 2>/dev/null || true)
if [ -z "$pkgs" ] || ! (cd "$stage" && apt-get download $pkgs >/dev/null 2>&1); then
  if [ "$(id -u)" != 0 ]; then
    echo "make-apt-repo.sh: cannot download $* (run 'apt-get update' as root first)" >&2
    exit 1
  fi
  apt-get update -qq >/dev/null
  pkgs=$(closure "$@")
  (cd "$stage" && apt-get download $pkgs >/dev/null)
fi

# The Packages index: each package's control fields, then where it is and its checksums.
for deb in "$stage"/*.deb; do
  dpkg-deb -f "$deb"
  name=$(basename "$deb")
  echo "Filename: ./$name"
  echo "Size: $(stat -c %s "$deb")"
  echo "SHA256: $(sha256sum "$deb" | cut -d' ' -f1)"
  echo
done > "$stage/Packages"
rm -rf "$out"
mv "$stage" "$out"
trap - EXIT
chmod 755 "$out"
echo "$(ls "$out"/*.deb | wc -l) packages in $out"
