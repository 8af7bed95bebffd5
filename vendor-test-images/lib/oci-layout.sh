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
  local epoch=${SOURCE_DATE_EPOCH:-0}
  local created
  created=$(date -u -d "@$epoch" +%Y-%m-%dT%H:%M:%SZ)
  local stage
  stage=$(mktemp -d "$(dirname "$out")/.$(basename "$out").XXXXXX")
  mkdir -p "$stage/blobs/sha256"

  local owner_args=(--numeric-owner)
  if [ "$owner_mode" = force-root-owner ]; then owner_args+=(--owner=0 --group=0); fi
  # Entries are named without a leading "./", in byte order, with one fixed mtime.
  (cd "$rootfs" && LC_ALL=C find . -mindepth 1 -maxdepth 1 -printf '%P\n' | LC_ALL=C sort) > "$stage/members"
  LC_ALL=C tar --sort=name --format=posix \
    --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime \
    --mtime="@$epoch" "${owner_args[@]}" \
    -C "$rootfs" -cf "$stage/layer.tar" -T "$stage/members"
  gzip -n -6 -c "$stage/layer.tar" > "$stage/layer.tar.gz"
  local diff_id layer_digest layer_size
  diff_id=$(sha256_of "$stage/layer.tar")
  layer_digest=$(sha256_of "$stage/layer.tar.gz")
  layer_size=$(size_of "$stage/layer.tar.gz")
  mv "$stage/layer.tar.gz" "$stage/blobs/sha256/$layer_digest"
  rm -f "$stage/layer.tar" "$stage/members"

  printf '{"created":"%s","architecture":"%s","os":"linux","config":{"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],"Cmd":%s},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]},"history":[{"created":"%s","created_by":"%s"},{"created":"%s","created_by":"CMD %s","empty_layer":true}]}' \
    "$created" "$(oci_arch)" "$cmd_json" "$diff_id" "$created" "$created_by" "$created" "${cmd_json//\"/\\\"}" \
    > "$stage/config.json"
  local config_digest config_size
  config_digest=$(sha256_of "$stage/config.json")
  config_size=$(size_of "$stage/config.json")
  mv "$stage/config.json" "$stage/blobs/sha256/$config_digest"

  printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:%s","size":%s}]}' \
    "$config_digest" "$config_size" "$layer_digest" "$layer_size" > "$stage/manifest.json"
  local manifest_digest manifest_size
  manifest_digest=$(sha256_of "$stage/manifest.json")
  manifest_size=$(size_of "$stage/manifest.json")
  mv "$stage/manifest.json" "$stage/blobs/sha256/$manifest_digest"

  printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"org.opencontainers.image.ref.name":"latest"}}]}' \
    "$manifest_digest" "$manifest_size" > "$stage/index.json"
  printf '{"imageLayoutVersion":"1.0.0"}' > "$stage/oci-layout"
  chmod -R a+rX "$stage"

  # Replace the output atomically: readers see the old layout or the new one, never half of one.
  if [ -e "$out" ]; then
    local old="$out.old.$$"
    mv "$out" "$old"
    mv "$stage" "$out"
    rm -rf "$old"
  else
    mv "$stage" "$out"
  fi
  echo "sha256:$manifest_digest"
}

# fetch_deb PACKAGE CACHE_DIR: print the path of PACKAGE's .deb in CACHE_DIR, downloading it with
# `apt-get download` (the one remote source these scripts use) when it is not there yet.
fetch_deb() {
  local pkg=$1 cache=$2
  mkdir -p "$cache"
  local found
  found=$(ls "$cache/${pkg}"_*.deb 2>/dev/null | head -n1 || true)
  if [ -z "$found" ]; then
    if ! (cd "$cache" && apt-get download "$pkg" >/dev/null 2>&1); then
      if [ "$(id -u)" = 0 ]; then
        apt-get update -qq >/dev/null
        (cd "$cache" && apt-get download "$pkg" >/dev/null)
      else
        echo "cannot download $pkg (run 'apt-get update' as root, or place ${pkg}_*.deb in $cache)" >&2
        return 1
      fi
    fi
    found=$(ls "$cache/${pkg}"_*.deb | head -n1)
  fi
  echo "$found"
}
