# The compose-chain scenarios (issue 27), sourced by bench/run after its set-up: workloads/compose-chain, a Compose
# project of six services (a base image service, three services FROM it — one through `additional_contexts:
# service:` —, two independent), built whole: `cold` (stores holding only the busybox base), `warm` (nothing
# changed) and `base-changed` (one file of the base's context). Peers in the same repetition: Debian's
# docker-compose (v1) with BuildKit (COMPOSE_DOCKER_CLI_BUILD=1 DOCKER_BUILDKIT=1) on the private dockerd, given
# compose-v1.yaml (depends_on orders the builds; app3 names the base image), and buildah building the services in
# dependency order by script.

chain_services=(base app1 app2 app3 ind1 ind2)

chain_rbuild() { "$rbuild" --root "$work/rbuild" compose -f "$1/compose.yaml" build --progress quiet; }
chain_compose_v1() {
  # Debian's docker CLI (/usr/bin), which has the classic builder's BuildKit switch (no buildx needed).
  PATH=/usr/bin:$PATH DOCKER_HOST="unix://$dd/sock" COMPOSE_DOCKER_CLI_BUILD=1 DOCKER_BUILDKIT=1 docker-compose -f "$1/compose-v1.yaml" build -q
}
chain_buildah() {
  local svc df
  for svc in "${chain_services[@]}"; do
    df=Dockerfile
    [ "$svc" = app3 ] && df=Dockerfile.v1
    bah bud -q --layers --isolation chroot -t "localhost/chain-$svc:latest" -f "$1/$svc/$df" "$1/$svc" >/dev/null
  done
}
chain_reset_compose_v1() {
  local svc
  for svc in "${chain_services[@]}"; do dk rmi -f "localhost/chain-$svc:latest" >/dev/null 2>&1 || true; done
  reset_buildkit
}

compose_chain_section() {
  local rep tool ctx
  for rep in $(seq 1 "$reps"); do
    for tool in rbuild compose_v1 buildah; do
      progress "repetition $rep/$reps: compose-chain with $tool"
      ctx=$(fresh_context compose-chain)
      case $tool in
        rbuild) reset_rbuild ;;
        compose_v1) chain_reset_compose_v1 ;;
        buildah) reset_buildah ;;
      esac
      measure "compose-chain/$tool/cold" "chain_$tool" "$ctx"
      measure "compose-chain/$tool/warm" "chain_$tool" "$ctx"
      [ "$tool" = rbuild ] && chain_not_cached=$(grep -c "^service .* steps run" "$work/last.log" || true)
      echo "changed in repetition $rep" >>"$ctx/base/base.txt"
      measure "compose-chain/$tool/base-changed" "chain_$tool" "$ctx"
    done
  done
  chain_reset_compose_v1
}

compose_chain_report() { # the rows for BENCHMARKS.md
  local sc r v1 bah
  echo "## compose-chain: a Compose project of six services, three built FROM a fourth"
  echo
  echo "Median seconds for the whole project. docker-compose is Debian's v1 with BuildKit; buildah builds the services"
  echo "in dependency order. rbuild's warm run: ${chain_not_cached:-?} services not fully cached."
  echo
  echo "| scenario | rbuild | docker-compose + BuildKit | buildah | vs docker-compose | vs buildah |"
  echo "|---|---|---|---|---|---|"
  for sc in cold warm base-changed; do
    r=$(med "compose-chain/rbuild/$sc")
    v1=$(med "compose-chain/compose_v1/$sc")
    bah=$(med "compose-chain/buildah/$sc")
    echo "| $sc | $r | $v1 | $bah | $(ratio_of "$r" "$v1")x | $(ratio_of "$r" "$bah")x |"
  done
  echo
  local cold_r warm_s changed_r
  cold_r=$(ratio_of "$(med compose-chain/rbuild/cold)" "$(med compose-chain/compose_v1/cold)")
  warm_s=$(med compose-chain/rbuild/warm)
  changed_r=$(ratio_of "$(med compose-chain/rbuild/base-changed)" "$(med compose-chain/compose_v1/base-changed)")
  echo "| target | measured | |"
  echo "|---|---|---|"
  echo "| \`compose-chain/cold\` <= 0.5x docker-compose + BuildKit | ${cold_r}x | $(mark le "$cold_r" 0.5) |"
  echo "| \`compose-chain/warm\` 0 steps run in every service, < 150 ms | ${chain_not_cached:-?} services ran steps; $warm_s s | $(mark eval '[ "${chain_not_cached:-1}" = 0 ] && lt "$warm_s" 0.15') |"
  echo "| \`compose-chain/base-changed\` <= 0.5x docker-compose + BuildKit | ${changed_r}x | $(mark le "$changed_r" 0.5) |"
  echo
}
