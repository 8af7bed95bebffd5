#!/usr/bin/env bash
# Benchmark: per-run overhead of the sandbox. 100 sequential `true` runs in the busybox image with
# `rbuild run` (as root; and as the unprivileged test user with one id and with subordinate ids), side by side
# with `buildah run` on the same image in the same run (root, chroot isolation, and its default OCI runtime).
# Prints a Markdown table of milliseconds per run.
#
# usage: bench/run-overhead.sh [RUNS]      (run as root; installs what it needs)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-100}
work=${BENCH_WORK:-target/bench}/run-overhead
mkdir -p "$work"
source bench/lib.sh

ms_per_run() { # COMMAND...: runs it $runs times, prints milliseconds per run
  local start end
  start=$(date +%s%N)
  for _ in $(seq 1 "$runs"); do "$@" >/dev/null; done
  end=$(date +%s%N)
  echo "scale=2; ($end - $start) / 1000000 / $runs" | bc
}

store=$work/run-overhead-store
rm -rf "$store"
"$rbuild" --root "$store" load -i "$layout" >/dev/null
"$rbuild" --root "$store" run busybox true
root_ms=$(ms_per_run "$rbuild" --root "$store" run busybox true)

user_store=/tmp/rbuild-bench-user-store
rm -rf "$user_store"
runuser -u rbuild-test -- "$rbuild" --root "$user_store" load -i "$layout" >/dev/null
single_ms=$(ms_per_run runuser -u rbuild-test -- env RBUILD_USERNS=single "$rbuild" --root "$user_store" run busybox true)
subuid_ms=$(ms_per_run runuser -u rbuild-test -- env RBUILD_USERNS=subuid "$rbuild" --root "$user_store" run busybox true)
runuser_ms=$(ms_per_run runuser -u rbuild-test -- true)
rm -rf "$user_store"

bstore=$work/buildah-store
ctr=$(buildah --root "$bstore/root" --runroot "$bstore/run" --storage-driver overlay from "oci:$layout:latest")
bah() { buildah --root "$bstore/root" --runroot "$bstore/run" --storage-driver overlay "$@"; }
bah run --isolation chroot "$ctr" true
buildah_chroot_ms=$(ms_per_run bah run --isolation chroot "$ctr" true)
buildah_oci_ms=$(bah run --isolation oci "$ctr" true >/dev/null 2>&1 && ms_per_run bah run --isolation oci "$ctr" true || echo "n/a")
bah rm "$ctr" >/dev/null
rm -rf "$bstore"

echo "| tool | ms per run | vs buildah run (chroot) |"
echo "|---|---|---|"
for row in "rbuild run (root)|$root_ms" "rbuild run (rootless, one id)|$single_ms" \
  "rbuild run (rootless, subordinate ids)|$subuid_ms" "buildah run --isolation chroot (root)|$buildah_chroot_ms" \
  "buildah run --isolation oci (root)|$buildah_oci_ms"; do
  name=${row%%|*}; ms=${row##*|}
  if [ "$ms" = "n/a" ]; then ratio="-"; else ratio=$(echo "scale=3; $ms / $buildah_chroot_ms" | bc); fi
  echo "| \`$name\` | $ms | ${ratio}x |"
done
echo
echo "$runs sequential runs of \`true\` in busybox, each tool from a warm store; $(nproc) CPUs."
echo "The rootless rows include \`runuser\` itself: ${runuser_ms} ms per call."
