# The ci-runner scenarios (issue 27), sourced by bench/run after its set-up: CI runners start every job with an
# EMPTY store and rely on a registry cache. For each workload (copy-many, cache-mount, six-stages), in the same
# repetition:
#   cold          a cold build, no export                          (the reference for `export`)
#   export        the same with --cache-to type=registry,mode=max  (its extra time over `cold`)
#   cold-push     the same with --cache-to mode=max and --push      (the reference for `fresh`)
#   fresh         an empty store (the base only), --cache-from that cache, nothing changed
#   fresh-push    the same, pushing to ANOTHER repository of the registry
#   fresh-changed the same with one source file changed
#   fresh-min     as `fresh`, from a mode=min cache (what BuildKit's inline cache is)
# and BuildKit (the private dockerd) with its inline cache: `export` (BUILDKIT_INLINE_CACHE=1, then docker push)
# and `fresh` (its build cache pruned and the images removed, then --cache-from the pushed image).
# For rbuild's fresh runs, the blob bytes the store gained besides the base are recorded (`bytes[...]`).

declare -A ci_bytes ci_steps
ci_workloads=(copy-many cache-mount six-stages)

ci_store_bytes() { du -sb "$work/rbuild/blobs" | cut -f1; }
ci_build() { # KEY CONTEXT ARGS...: a measured rbuild build; records its steps run and the store's blob growth
  local key=$1 ctx=$2; shift 2
  local before
  before=$(ci_store_bytes)
  measure "$key" "$rbuild" --root "$work/rbuild" build --progress plain "$@" "$ctx"
  ci_steps[$key]=$(sed -n 's/^built .*(\([0-9]*\) steps run.*/\1/p' "$work/last.log")
  ci_bytes[$key]=$(($(ci_store_bytes) - before))
}
ci_change() { # WORKLOAD CONTEXT: change one source file
  case $1 in
    copy-many) echo changed >>"$2/files/d007/f00007.txt" ;;
    cache-mount) echo changed >>"$2/input.txt" ;;
    six-stages) sed -i 's/1600000/1600001/' "$2/Dockerfile" ;;
  esac
}

ci_runner_section() {
  local rep w ctx reg cache
  start_registry
  reg=127.0.0.1:$port
  for rep in $(seq 1 "$reps"); do
    for w in "${ci_workloads[@]}"; do
      progress "repetition $rep/$reps: ci-runner $w"
      ctx=$(fresh_context "$w")
      cache="type=registry,ref=$reg/ci/$w:cache-$rep"
      reset_rbuild
      ci_build "ci-runner/$w/cold" "$ctx" -t bench
      reset_rbuild
      ci_build "ci-runner/$w/export" "$ctx" -t bench --cache-to "$cache-x,mode=max"
      reset_rbuild
      ci_build "ci-runner/$w/cold-push" "$ctx" -t "$reg/ci/$w:app-$rep" --cache-to "$cache,mode=max" --push
      reset_rbuild
      "$rbuild" --root "$work/rbuild" build --progress quiet -t bench --cache-to "$cache-min,mode=min" "$ctx" >/dev/null
      reset_rbuild
      ci_build "ci-runner/$w/fresh" "$ctx" -t bench --cache-from "$cache"
      reset_rbuild
      ci_build "ci-runner/$w/fresh-push" "$ctx" -t "$reg/elsewhere/$w:app-$rep" --cache-from "$cache" --push
      reset_rbuild
      ci_build "ci-runner/$w/fresh-min" "$ctx" -t bench --cache-from "$cache-min"
      reset_rbuild
      ci_change "$w" "$ctx"
      ci_build "ci-runner/$w/fresh-changed" "$ctx" -t bench --cache-from "$cache"
      rm -rf "$work/rbuild"
      # BuildKit with its inline cache.
      ctx=$(fresh_context "$w")
      reset_buildkit
      measure "ci-runner/$w/buildkit export" sh -c "DOCKER_BUILDKIT=1 docker -H unix://$dd/sock build -q --network host \
        --build-arg BUILDKIT_INLINE_CACHE=1 -t $reg/bk/$w:$rep '$ctx' && docker -H unix://$dd/sock push -q $reg/bk/$w:$rep"
      reset_buildkit
      dk rmi -f "$reg/bk/$w:$rep" >/dev/null 2>&1 || true
      measure "ci-runner/$w/buildkit fresh" build_buildkit_from "$ctx" "$reg/bk/$w:$rep"
      reset_buildkit
    done
  done
  stop_registry
}
build_buildkit_from() { DOCKER_BUILDKIT=1 /usr/bin/docker -H "unix://$dd/sock" build -q --network host --cache-from "$2" -t bench "$1"; }

ci_runner_report() { # the rows for BENCHMARKS.md
  local w cold export_s cold_push fresh ratio_own ratio_bk overhead
  echo "## ci-runner: an empty store with a registry cache"
  echo
  echo "Median seconds; steps run; blob bytes the store gained besides the base (what was downloaded, plus the image's"
  echo "own config and manifest). BuildKit's inline cache is mode=min: compare it with rbuild's \`fresh-min\`."
  echo
  echo "| workload | cold | export (overhead) | cold + export + push | fresh | fresh-push | fresh-changed | fresh-min | BuildKit export+push | BuildKit fresh | fresh / cold-push | fresh-min / BuildKit fresh |"
  echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
  for w in "${ci_workloads[@]}"; do
    cold=$(med "ci-runner/$w/cold")
    export_s=$(med "ci-runner/$w/export")
    cold_push=$(med "ci-runner/$w/cold-push")
    fresh=$(med "ci-runner/$w/fresh")
    overhead=$(echo "scale=1; ($export_s - $cold) * 100 / $cold" | bc)
    ratio_own=$(echo "scale=3; $fresh / $cold_push" | bc | sed 's/^\./0./')
    ratio_bk=$(echo "scale=3; $(med "ci-runner/$w/fresh-min") / $(med "ci-runner/$w/buildkit fresh")" | bc | sed 's/^\./0./')
    cell() { echo "$(med "ci-runner/$w/$1") s, ${ci_steps[ci-runner/$w/$1]:-?} run, $(( ${ci_bytes[ci-runner/$w/$1]:-0} / 1024 )) KiB"; }
    echo "| $w | $cold s | $export_s s ($overhead %) | $cold_push s | $(cell fresh) | $(cell fresh-push) | $(cell fresh-changed) | $(cell fresh-min) | $(med "ci-runner/$w/buildkit export") s | $(med "ci-runner/$w/buildkit fresh") s | ${ratio_own}x | ${ratio_bk}x |"
  done
  echo
}
