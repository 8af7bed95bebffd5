#!/usr/bin/env bash
# Benchmark: cold and warm builds of the five workloads with rbuild, BuildKit (a private dockerd from Debian's
# docker.io, DOCKER_BUILDKIT=1) and buildah (overlay storage, chroot isolation, --layers), in the same run.
# Cold: a store holding only the base image. Warm: the same build again, nothing changed. Prints a Markdown
# table of seconds (median of RUNS) and rbuild's ratio to each peer (below 1 means rbuild is faster).
#
# usage: bench/builds.sh [RUNS] [WORKLOAD...]      (run as root; installs buildah and docker.io when missing)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
shift || true
workloads=("$@")
[ ${#workloads[@]} -gt 0 ] || workloads=(small-steps big-layer multistage-parallel cache-mount copy-many)
source bench/lib.sh builds

# The base image as a docker archive, for dockerd and buildah.
"$rbuild" --root "$work/seed" load -i "$layout" >/dev/null
"$rbuild" --root "$work/seed" tag busybox localhost/busybox:latest
"$rbuild" --root "$work/seed" save -o "$work/busybox.tar" --format docker localhost/busybox:latest

# A private dockerd.
dd=$work/dockerd
mkdir -p "$dd"
/usr/sbin/dockerd --data-root "$dd/data" --exec-root "$dd/exec" --pidfile "$dd/pid" -H "unix://$dd/sock" \
  --bridge=none --iptables=false --ip6tables=false >"$dd/log" 2>&1 &
dockerd_pid=$!
cleanup() {
  kill "$dockerd_pid" 2>/dev/null || true
  wait "$dockerd_pid" 2>/dev/null || true
  grep " $dd/" /proc/mounts | awk '{print $2}' | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
}
trap cleanup EXIT
dk() { DOCKER_BUILDKIT=1 /usr/bin/docker -H "unix://$dd/sock" "$@"; }
for _ in $(seq 1 120); do dk version >/dev/null 2>&1 && break; sleep 0.5; done
dk load -i "$work/busybox.tar" >/dev/null


context_for() { # WORKLOAD: a fresh copy of the workload's context
  local ctx=$work/ctx-$1
  rm -rf "$ctx"
  cp -a "bench/workloads/$1" "$ctx"
  if [ -x "$ctx/gen-context.sh" ]; then (cd "$ctx" && ./gen-context.sh "$ctx" >/dev/null); fi
  echo "$ctx"
}

rbuild_cold_warm() { # CTX: prints "cold warm"
  local store=$work/rbuild-store
  rm -rf "$store"
  "$rbuild" --root "$store" load -i "$layout" >/dev/null
  "$rbuild" --root "$store" tag busybox localhost/busybox:latest
  local c w
  c=$(seconds "$rbuild" --root "$store" build --progress plain -t bench "$1")
  w=$(seconds "$rbuild" --root "$store" build --progress plain -t bench "$1")
  rm -rf "$store"
  echo "$c $w"
}

buildkit_cold_warm() {
  dk rmi -f bench >/dev/null 2>&1 || true
  dk builder prune -af >/dev/null 2>&1 || true
  local c w
  c=$(seconds dk build --network host -t bench "$1")
  w=$(seconds dk build --network host -t bench "$1")
  echo "$c $w"
}

buildah_cold_warm() {
  local b=$work/buildah
  rm -rf "$b"
  # buildah keeps RUN --mount=type=cache directories outside its storage: clear them for a cold build.
  rm -rf /var/tmp/buildah-cache-* 2>/dev/null || true
  bah() { buildah --root "$b/root" --runroot "$b/run" --storage-driver overlay "$@"; }
  bah pull -q "docker-archive:$work/busybox.tar" >/dev/null
  bah tag "$(bah images -q | head -1)" localhost/busybox:latest
  local c w
  c=$(seconds bah bud --layers --isolation chroot -t bench "$1")
  w=$(seconds bah bud --layers --isolation chroot -t bench "$1")
  bah rmi -af >/dev/null 2>&1 || true
  rm -rf "$b"
  echo "$c $w"
}

echo "| workload | rbuild cold | BuildKit cold | buildah cold | rbuild warm | BuildKit warm | buildah warm | cold vs BuildKit | cold vs buildah | warm vs BuildKit | warm vs buildah |"
echo "|---|---|---|---|---|---|---|---|---|---|---|"
for w in "${workloads[@]}"; do
  ctx=$(context_for "$w")
  declare -A cold=() warm=()
  for tool in rbuild buildkit buildah; do
    cs=() ws=()
    for _ in $(seq 1 "$runs"); do
      read -r c wm < <("${tool}_cold_warm" "$ctx")
      cs+=("$c"); ws+=("$wm")
    done
    cold[$tool]=$(median "${cs[@]}"); warm[$tool]=$(median "${ws[@]}")
  done
  echo "| $w | ${cold[rbuild]} s | ${cold[buildkit]} s | ${cold[buildah]} s | ${warm[rbuild]} s | ${warm[buildkit]} s | ${warm[buildah]} s | $(ratio "${cold[rbuild]}" "${cold[buildkit]}")x | $(ratio "${cold[rbuild]}" "${cold[buildah]}")x | $(ratio "${warm[rbuild]}" "${warm[buildkit]}")x | $(ratio "${warm[rbuild]}" "${warm[buildah]}")x |"
done
