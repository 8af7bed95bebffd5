#!/usr/bin/env bash
# Benchmark: pushing the big-layer image (~500 MB of files, one gzip layer) to a local Distribution registry
# (Debian's docker-registry on 127.0.0.1): rbuild push (first, then a second push of the same image), skopeo copy
# from an OCI layout of the same image, and buildah push (from its own storage, compressing while it pushes), in
# the same run. Each first push goes to a fresh repository of a fresh registry storage. Prints a Markdown table.
#
# usage: bench/push.sh [RUNS]      (run as root; installs buildah when missing)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
source bench/lib.sh push
export RBUILD_ROOT=$work/store
"$rbuild" load -i "$layout" >/dev/null
"$rbuild" tag busybox localhost/busybox:latest
"$rbuild" build --progress quiet -t big bench/workloads/big-layer >/dev/null
mkdir -p "$work/layout"
"$rbuild" save -o "$work/layout" big >/dev/null
"$rbuild" save -o "$work/big.tar" --format docker big >/dev/null
bah() { buildah --root "$work/buildah/root" --runroot "$work/buildah/run" --storage-driver overlay "$@"; }
bah pull -q "docker-archive:$work/big.tar" >/dev/null

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
registry_pid=
start_registry() {
  rm -rf "$work/registry"
  mkdir -p "$work/registry"
  printf 'version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: 127.0.0.1:%s\n' \
    "$work/registry/data" "$port" >"$work/registry/config.yml"
  docker-registry serve "$work/registry/config.yml" >"$work/registry/log" 2>&1 &
  registry_pid=$!
  for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.05; done
}
stop_registry() { kill "$registry_pid" 2>/dev/null || true; wait "$registry_pid" 2>/dev/null || true; }
trap stop_registry EXIT


declare -a r1 r2 s1 s2 b1 b2
for i in $(seq 1 "$runs"); do
  start_registry
  r1+=("$(seconds "$rbuild" push big "127.0.0.1:$port/bench/rbuild:1")")
  r2+=("$(seconds "$rbuild" push big "127.0.0.1:$port/bench/rbuild:1")")
  s1+=("$(seconds skopeo copy -q --dest-tls-verify=false "oci:$work/layout:latest" "docker://127.0.0.1:$port/bench/skopeo:1")")
  s2+=("$(seconds skopeo copy -q --dest-tls-verify=false "oci:$work/layout:latest" "docker://127.0.0.1:$port/bench/skopeo:1")")
  b1+=("$(seconds bah push --tls-verify=false big "docker://127.0.0.1:$port/bench/buildah:1")")
  b2+=("$(seconds bah push --tls-verify=false big "docker://127.0.0.1:$port/bench/buildah:1")")
  stop_registry
done
size=$(du -sm "$work/layout/blobs" | cut -f1)
R1=$(median "${r1[@]}"); R2=$(median "${r2[@]}"); S1=$(median "${s1[@]}"); S2=$(median "${s2[@]}")
B1=$(median "${b1[@]}"); B2=$(median "${b2[@]}")
echo "| tool | first push s | second push s | first vs skopeo | first vs buildah |"
echo "|---|---|---|---|---|"
echo "| \`rbuild push\` | $R1 | $R2 | $(ratio "$R1" "$S1")x | $(ratio "$R1" "$B1")x |"
echo "| \`skopeo copy\` (OCI layout) | $S1 | $S2 | 1.000x | $(ratio "$S1" "$B1")x |"
echo "| \`buildah push\` | $B1 | $B2 | $(ratio "$B1" "$S1")x | 1.000x |"
echo
echo "Image blobs: ${size} MB (compressed)."
