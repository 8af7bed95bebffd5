# Shared set-up for the benchmark scripts (sourced): the packages they need installed (idempotently), a release
# build of rbuild ($rbuild), the busybox test image ($layout), and `median`.
missing=()
for pkg in buildah docker.io docker-compose skopeo umoci pigz zstd docker-registry time bc uidmap; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq || echo "bench: apt-get update reported errors; installing from the indexes it read" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
scripts/install-test-deps.sh >/dev/null
# Static, as scripts/dist builds it: what users get, and what runs inside the CI-container tiers' busybox.
host_target=$(rustc -vV | sed -n 's/^host: //p')
RUSTFLAGS="-C target-feature=+crt-static" cargo build --release -q --locked -p rbuild --target "$host_target"
rbuild=$PWD/target/$host_target/release/rbuild
layout=$PWD/target/test-images/busybox
[ -f "$layout/index.json" ] || vendor-test-images/make-busybox.sh "$layout" >/dev/null
# The multi-platform busybox (amd64, arm64, ...), for the foreign-platform rows.
multi_layout=$PWD/target/test-images/busybox-multi
[ -f "$multi_layout/index.json" ] || vendor-test-images/make-busybox-multi.sh "$multi_layout" >/dev/null

median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
