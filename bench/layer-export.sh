#!/usr/bin/env bash
# Benchmark: export of the big-layer tree (~512 MB, 5,000 files, half random, half text) to a compressed layer
# by rbuild (tar + sha256 of the tar + compression + sha256 of the blob, in one pass), side by side with the raw
# limits on the same tree in the same run: `tar -c | pigz -1`, `tar -c | gzip -6`, `tar -c | sha256sum`.
# Median of REPS runs (default 3); prints a Markdown table and peak RSS of rbuild.
#
# usage: bench/layer-export.sh [REPS]
set -euo pipefail
cd "$(dirname "$0")/.."
reps=${1:-3}
work=${BENCH_WORK:-target/bench}
mkdir -p "$work"
# pigz and gzip for the raw limits, GNU time for peak RSS, bc for arithmetic (Debian packages).
missing=()
for pkg in pigz time bc gzip; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
cargo build --release -q -p rbuild
rbuild=target/release/rbuild
tree="$work/big-tree"
if [ ! -f "$tree/.complete" ]; then
  rm -rf "$tree"
  sh bench/workloads/big-layer/gen-big.sh "$tree/data" 5000
  touch "$tree/.complete"
fi
size_mb=$(du -sm "$tree/data" | cut -f1)

# run NAME COMMAND...: time a command REPS times, alternating with the others; collect seconds.
declare -A times
run_once() {
  local name=$1; shift
  sync
  local start end
  start=$(date +%s.%N)
  "$@" >/dev/null
  end=$(date +%s.%N)
  times[$name]="${times[$name]:-} $(echo "$end - $start" | bc -l)"
}
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

out="$work/out"
for i in $(seq 1 "$reps"); do
  run_once "rbuild gzip:6" "$rbuild" debug pack "$tree/data" -o "$out.rb6" --compression gzip:6
  run_once "rbuild gzip:1" "$rbuild" debug pack "$tree/data" -o "$out.rb1" --compression gzip:1
  run_once "rbuild zstd:3" "$rbuild" debug pack "$tree/data" -o "$out.rbz" --compression zstd:3
  run_once "tar | pigz -1" sh -c "tar -C '$tree' -cf - data | pigz -1 > '$out.pigz'"
  run_once "tar | gzip -6" sh -c "tar -C '$tree' -cf - data | gzip -6 > '$out.gz6'"
  run_once "tar | sha256sum" sh -c "tar -C '$tree' -cf - data | sha256sum"
done
rss=$( { /usr/bin/time -v "$rbuild" debug pack "$tree/data" -o "$out.rb6" --compression gzip:6 >/dev/null; } 2>&1 |
  awk -F: '/Maximum resident/ {gsub(/ /, "", $2); print $2}')

pigz=$(echo "${times["tar | pigz -1"]}" | median)
gz6=$(echo "${times["tar | gzip -6"]}" | median)
echo "| command | median s | MB/s | vs tar\|pigz -1 | vs tar\|gzip -6 | output MB |"
echo "|---|---|---|---|---|---|"
for name in "rbuild gzip:6" "rbuild gzip:1" "rbuild zstd:3" "tar | pigz -1" "tar | gzip -6" "tar | sha256sum"; do
  m=$(echo "${times[$name]}" | median)
  case $name in
    "rbuild gzip:6") f=$out.rb6 ;; "rbuild gzip:1") f=$out.rb1 ;; "rbuild zstd:3") f=$out.rbz ;;
    "tar | pigz -1") f=$out.pigz ;; "tar | gzip -6") f=$out.gz6 ;; *) f= ;;
  esac
  osize=$([ -n "$f" ] && echo $(( $(stat -c %s "$f") / 1000000 )) || echo "-")
  printf '| `%s` | %.2f | %.0f | %.2fx | %.2fx | %s |\n' "$name" "$m" "$(echo "$size_mb / $m" | bc -l)" \
    "$(echo "$m / $pigz" | bc -l)" "$(echo "$m / $gz6" | bc -l)" "$osize"
done
echo
echo "Tree: ${size_mb} MB in 5,000 files; ${reps} repetitions, alternating; $(nproc) CPUs; rbuild gzip:6 peak RSS ${rss} kB."
