# Shared set-up for the benchmark scripts (sourced): work directory, buildah and the test packages installed,
# a release build of rbuild ($rbuild), the busybox test image ($layout), and a `seconds` timer.
work=$PWD/${BENCH_WORK:-target/bench}/$1
rm -rf "$work"
mkdir -p "$work"
dpkg-query -W -f='${Status}' buildah 2>/dev/null | grep -q "install ok installed" || {
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends buildah >/dev/null
}
scripts/install-test-deps.sh >/dev/null
cargo build --release -q -p rbuild
rbuild=$PWD/target/release/rbuild
layout=$PWD/target/test-images/busybox
[ -f "$layout/index.json" ] || vendor-test-images/make-busybox.sh "$layout" >/dev/null

seconds() { # COMMAND...: run it, print wall seconds (its output goes to $work/last.log)
  local start end
  start=$(date +%s%N)
  "$@" >"$work/last.log" 2>&1 || { cat "$work/last.log" >&2; return 1; }
  end=$(date +%s%N)
  echo "scale=3; ($end - $start) / 1000000000" | bc | sed 's/^\./0./'
}
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
ratio() { echo "scale=3; $1 / $2" | bc | sed 's/^\./0./'; }
