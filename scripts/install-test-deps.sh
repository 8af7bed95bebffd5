#!/usr/bin/env bash
# Install what the test suite needs, idempotently: Debian packages (only the missing ones; apt-get update only
# when something is missing) and, when run as root, the unprivileged user the rootless tests run as.
set -euo pipefail

# skopeo, umoci: independent checks of the images rbuild and vendor-test-images write.
# docker.io: a private dockerd that loads and runs rbuild's archives (started by the tests, as root).
# debootstrap: the debian test image. tmux: a real terminal for the live progress view. ca-certificates, gzip, tar: the image scripts.
# uidmap: newuidmap/newgidmap, for sandboxes that map subordinate ids. fuse-overlayfs: the snapshotter used
# where the kernel refuses overlayfs. qemu-user-static: the emulators foreign-platform RUN steps register.
packages=(tmux skopeo umoci docker.io uidmap fuse-overlayfs debootstrap ca-certificates gzip tar git curl python3 docker-registry apache2-utils openssl bzip2 xz-utils zstd qemu-user-static)
test_user=rbuild-test

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"
  elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then sudo "$@"
  else
    echo "install-test-deps: need root to run: $*" >&2
    echo "install-test-deps: run this script as root (or with passwordless sudo) once" >&2
    exit 1
  fi
}

if [ ${#missing[@]} -gt 0 ]; then
  echo "install-test-deps: installing ${missing[*]}"
  # A mirror caught mid-sync fails one index of many (often a foreign architecture's): go on with what was read;
  # the install itself says so if a package cannot be found.
  as_root apt-get update -qq || echo "install-test-deps: apt-get update reported errors; installing from the indexes it read" >&2
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The architectures of the multi-platform busybox test image (vendor-test-images/make-busybox-multi.sh downloads
# their busybox-static packages).
if [ "$(id -u)" = 0 ]; then
  added=0
  for arch in arm64 armhf ppc64el s390x; do
    [ "$arch" = "$(dpkg --print-architecture)" ] && continue
    dpkg --print-foreign-architectures | grep -qx "$arch" || { dpkg --add-architecture "$arch"; added=1; }
  done
  # A mirror in mid-sync fails some lists; the downloads that need them say so.
  [ "$added" = 0 ] || apt-get update -qq >/dev/null 2>&1 || true
fi

if [ "$(id -u)" = 0 ]; then
  if ! id "$test_user" >/dev/null 2>&1; then
    useradd --create-home --shell /bin/sh "$test_user"
    echo "install-test-deps: created user $test_user"
  fi
  # Subordinate id ranges, so the user's sandboxes can map files of any owner.
  for f in /etc/subuid /etc/subgid; do
    touch "$f"
    grep -q "^$test_user:" "$f" || echo "$test_user:200000:65536" >> "$f"
  done
  # A second user with no subordinate ranges: automatic detection must fall back to one id for it.
  nosub_user=rbuild-nosub
  if ! id "$nosub_user" >/dev/null 2>&1; then
    useradd --create-home --shell /bin/sh "$nosub_user"
    echo "install-test-deps: created user $nosub_user"
  fi
  sed -i "/^$nosub_user:/d" /etc/subuid /etc/subgid
fi
