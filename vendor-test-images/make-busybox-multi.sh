#!/usr/bin/env bash
# Make the multi-platform `busybox-multi` test image: ONE OCI layout whose tag `latest` names an image index (as
# buildx writes one) of busybox for linux/amd64, linux/arm64, linux/arm/v7, linux/ppc64le and linux/s390x, each
# made as make-busybox.sh makes the host's, from Debian's busybox-static package of that architecture (downloaded
# with `apt-get download busybox-static:ARCH`, which needs `dpkg --add-architecture ARCH`: done as root). Same
# .debs in, same index digest out.
#
# usage: make-busybox-multi.sh OUT_DIR
# env:   BUSYBOX_ARCHS    Debian architectures to include (default: amd64 arm64 armhf ppc64el s390x)
#        DEB_CACHE        where downloaded .debs are kept (default: OUT_DIR/../debs)
#        SOURCE_DATE_EPOCH  the images' timestamps (default 0)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib/oci-layout.sh"
. "$here/lib/busybox-rootfs.sh"

out=${1:?usage: make-busybox-multi.sh OUT_DIR}
mkdir -p "$(dirname "$out")"
out=$(cd "$(dirname "$out")" && pwd)/$(basename "$out")
cache=${DEB_CACHE:-$(dirname "$out")/debs}
archs=${BUSYBOX_ARCHS:-amd64 arm64 armhf ppc64el s390x}

work=$(mktemp -d)
stage=$(new_layout_stage "$out")
trap 'rm -rf "$work" "$stage"' EXIT
# The applets, from this machine's own busybox of the same package (a foreign one cannot run here).
host_deb=$(fetch_deb busybox-static "$cache")
dpkg-deb -x "$host_deb" "$work/host"
"$work/host/bin/busybox" --list > "$work/applets"

entries=()
for arch in $archs; do
  deb=$(fetch_deb busybox-static "$cache" "$arch")
  case "$arch" in
    amd64) platform='"architecture":"amd64","os":"linux"'; oci=amd64; variant="" ;;
    arm64) platform='"architecture":"arm64","os":"linux","variant":"v8"'; oci=arm64; variant=v8 ;;
    armhf) platform='"architecture":"arm","os":"linux","variant":"v7"'; oci=arm; variant=v7 ;;
    ppc64el) platform='"architecture":"ppc64le","os":"linux"'; oci=ppc64le; variant="" ;;
    s390x) platform='"architecture":"s390x","os":"linux"'; oci=s390x; variant="" ;;
    i386) platform='"architecture":"386","os":"linux"'; oci=386; variant="" ;;
    *) echo "make-busybox-multi.sh: unknown architecture $arch" >&2; exit 2 ;;
  esac
  root="$work/rootfs-$arch"
  busybox_rootfs "$deb" "$root" "$work/applets"
  version=$(dpkg-deb -f "$deb" Version)
  manifest=$(write_image_blobs "$root" "$stage" "busybox-static $version $arch (rbuild vendor-test-images)" \
    '["sh"]' force-root-owner "$oci" "$variant")
  entries+=("$(printf '{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"platform":{%s}}' \
    "${manifest% *}" "${manifest#* }" "$platform")")
done

(IFS=,; printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[%s]}' \
  "${entries[*]}") > "$work/index"
index_digest=$(sha256_of "$work/index")
index_size=$(size_of "$work/index")
mv "$work/index" "$stage/blobs/sha256/$index_digest"
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.index.v1+json","digest":"sha256:%s","size":%s,"annotations":{"org.opencontainers.image.ref.name":"latest"}}]}' \
  "$index_digest" "$index_size" > "$stage/index.json"
finish_layout "$stage" "$out"
echo "sha256:$index_digest"
