# Shared by the make-*.sh scripts: turn a root filesystem directory into a one-layer OCI image layout,
# deterministically (sorted entries, fixed mtimes, gzip without name or timestamp), so that the same inputs give
# the same manifest digest every time.
#
# make_oci_layout ROOTFS OUT_DIR CREATED_BY CMD_JSON [force-root-owner]
#   ROOTFS      the directory to pack (its contents become the image root)
#   OUT_DIR     the OCI layout to write; replaced atomically (written beside it, then renamed)
#   CREATED_BY  the layer's history entry's created_by text (a second entry records the CMD, as docker.io's do)
#   CMD_JSON    the config's Cmd, as a JSON array, e.g. '["sh"]'
#   force-root-owner: record every entry as owned by 0:0 (for trees unpacked by a non-root user)

oci_arch() {
  case "$(dpkg --print-architecture)" in
    amd64) echo amd64 ;; arm64) echo arm64 ;; armhf) echo arm ;; i386) echo 386 ;;
    ppc64el) echo ppc64le ;; s390x) echo s390x ;; riscv64) echo riscv64 ;;
    *) dpkg --print-architecture ;;
  esac
}

sha256_of() { sha256sum "$1" | cut -d' ' -f1; }
size_of() { stat -c %s "$1"; }

make_oci_layout() {
  local rootfs=$1 out=$2 created_by=$3 cmd_json=$4 owner_mode=${5:-}
  local stage
  stage=$(new_layout_stage "$out")
  local manifest
  manifest=$(write_image_blobs "$rootfs" "$stage" "$created_by" "$cmd_json" "$owner_mode" "$(oci_arch)" "")
  local manifest_digest=${manifest% *} manifest_size=${manifest#* }
  printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"org.opencontainers.image.ref.name":"latest"}}]}' \
    "$manifest_digest" "$manifest_size" > "$stage/index.json"
  finish_layout "$stage" "$out"
  echo "sha256:$manifest_digest"
}

# new_layout_stage OUT_DIR: a fresh directory beside OUT_DIR to write the layout in (see finish_layout).
new_layout_stage() {
  local out=$1 stage
  stage=$(mktemp -d "$(dirname "$out")/.$(basename "$out").XXXXXX")
  mkdir -p "$stage/blobs/sha256"
  echo "$stage"
}

# write_image_blobs ROOTFS STAGE CREATED_BY CMD_JSON OWNER_MODE ARCH VARIANT: the layer, config and manifest of
# one image (architecture ARCH, variant VARIANT or none) as blobs of the layout being written in STAGE; prints the
# manifest's hex digest and size.
write_image_blobs() {
  local rootfs=$1 stage=$2 created_by=$3 cmd_json=$4 owner_mode=$5 arch=$6 variant=$7
  local epoch=${SOURCE_DATE_EPOCH:-0}
  local created
  created=$(date -u -d "@$epoch" +%Y-%m-%dT%H:%M:%SZ)
  local work
  work=$(mktemp -d "$stage/.image.XXXXXX")

  local owner_args=(--numeric-owner)
  if [ "$owner_mode" = force-root-owner ]; then owner_args+=(--owner=0 --group=0); fi
  # Entries are named without a leading "./", in byte order, with one fixed mtime.
  (cd "$rootfs" && LC_ALL=C find . -mindepth 1 -maxdepth 1 -printf '%P\n' | LC_ALL=C sort) > "$work/members"
  LC_ALL=C tar --sort=name --format=posix \
    --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime \
    --mtime="@$epoch" "${owner_args[@]}" \
    -C "$rootfs" -cf "$work/layer.tar" -T "$work/members"
  gzip -n -6 -c "$work/layer.tar" > "$work/layer.tar.gz"
  local diff_id layer_digest layer_size
  diff_id=$(sha256_of "$work/layer.tar")
  layer_digest=$(sha256_of "$work/layer.tar.gz")
  layer_size=$(size_of "$work/layer.tar.gz")
  mv "$work/layer.tar.gz" "$stage/blobs/sha256/$layer_digest"

  local variant_json=""
  if [ -n "$variant" ]; then variant_json=",\"variant\":\"$variant\""; fi
  printf '{"created":"%s","architecture":"%s"%s,"os":"linux","config":{"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],"Cmd":%s},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]},"history":[{"created":"%s","created_by":"%s"},{"created":"%s","created_by":"CMD %s","empty_layer":true}]}' \
    "$created" "$arch" "$variant_json" "$cmd_json" "$diff_id" "$created" "$created_by" "$created" "${cmd_json//\"/\\\"}" \
    > "$work/config.json"
  local config_digest config_size
  config_digest=$(sha256_of "$work/config.json")
  config_size=$(size_of "$work/config.json")
  mv "$work/config.json" "$stage/blobs/sha256/$config_digest"

  printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:%s","size":%s}]}' \
    "$config_digest" "$config_size" "$layer_digest" "$layer_size" > "$work/manifest.json"
  local manifest_digest manifest_size
  manifest_digest=$(sha256_of "$work/manifest.json")
  manifest_size=$(size_of "$work/manifest.json")
  mv "$work/manifest.json" "$stage/blobs/sha256/$manifest_digest"
  rm -rf "$work"
  echo "$manifest_digest $manifest_size"
}

# finish_layout STAGE OUT_DIR: write `oci-layout`, make the layout readable by all, and replace OUT_DIR with it
# atomically: readers see the old layout or the new one, never half of one.
finish_layout() {
  local stage=$1 out=$2
  printf '{"imageLayoutVersion":"1.0.0"}' > "$stage/oci-layout"
  chmod -R a+rX "$stage"
  if [ -e "$out" ]; then
    local old="$out.old.$$"
    mv "$out" "$old"
    mv "$stage" "$out"
    rm -rf "$old"
  else
    mv "$stage" "$out"
  fi
}

# fetch_deb PACKAGE CACHE_DIR [ARCH]: print the path of PACKAGE's .deb for ARCH (a Debian architecture, default
# this machine's) in CACHE_DIR, downloading it with `apt-get download` (the one remote source these scripts use)
# when it is not there yet. A foreign ARCH is added to dpkg's architectures first (as root).
fetch_deb() {
  local pkg=$1 cache=$2 arch=${3:-$(dpkg --print-architecture)}
  mkdir -p "$cache"
  local found
  found=$(ls "$cache/${pkg}"_*_"$arch".deb 2>/dev/null | head -n1 || true)
  if [ -z "$found" ]; then
    if ! (cd "$cache" && apt-get download "$pkg:$arch" >/dev/null 2>&1); then
      if [ "$(id -u)" = 0 ]; then
        if [ "$arch" != "$(dpkg --print-architecture)" ] && ! dpkg --print-foreign-architectures | grep -qx "$arch"; then
          dpkg --add-architecture "$arch"
        fi
        apt-get update -qq >/dev/null 2>&1 || true  # a mirror mid-sync fails some lists; the download decides
        (cd "$cache" && apt-get download "$pkg:$arch" >/dev/null)
      else
        echo "cannot download $pkg:$arch (run 'apt-get update' as root, or place ${pkg}_*_$arch.deb in $cache)" >&2
        return 1
      fi
    fi
    found=$(ls "$cache/${pkg}"_*_"$arch".deb | head -n1)
  fi
  echo "$found"
}
