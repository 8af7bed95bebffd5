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
#   export-mounts (cache-mount only) `export` with mounts=true: the cache mount's 100 MB go too; its floor is
#                 the upload of the same blob with curl (the registry's own rate)
# and BuildKit (the private dockerd) with its inline cache: `export` (BUILDKIT_INLINE_CACHE=1, then docker push)
# and `fresh` (its build cache pruned and the images removed, then --cache-from the pushed image).
# For rbuild's fresh runs, the blob bytes the store gained besides the base are recorded (`bytes[...]`).

declare -A ci_bytes ci_steps ci_blob_gets
ci_floor_upload=-
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

ci_blob_get_count() { grep -c '"GET /v2/[^ ]*/blobs/sha256:' "$work/registry/log" || true; }
ci_upload_floor() { # BLOB: seconds to upload it to the registry with curl (one monolithic PUT)
  local blob=$1 loc start end
  loc=$(curl -si -X POST "http://127.0.0.1:$port/v2/floor/blob/blobs/uploads/" | sed -n 's/^[Ll]ocation: //p' | tr -d '\r')
  case $loc in http*) ;; *) loc="http://127.0.0.1:$port$loc" ;; esac
  case $loc in *\?*) loc="$loc&" ;; *) loc="$loc?" ;; esac
  start=$(date +%s%N)
  curl -sf -X PUT -H 'Content-Type: application/octet-stream' --data-binary "@$blob" \
    "${loc}digest=sha256:$(basename "$blob")" >/dev/null
  end=$(date +%s%N)
  echo "scale=3; ($end - $start) / 1000000000" | bc | sed 's/^\./0./'
}

ci_runner_section() {
  local rep w ctx reg cache gets
  registry_log_level=info start_registry
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
      if [ "$w" = cache-mount ]; then
        reset_rbuild
        ci_build "ci-runner/$w/export-mounts" "$ctx" -t bench --cache-to "$cache-m,mode=max,mounts=true"
        # The cache mount's layer is the store's biggest blob.
        ci_floor_upload=$(ci_upload_floor "$(ls -S "$work/rbuild/blobs/sha256"/* | head -1)")
        ci_mount_mb=$(( $(stat -c %s "$(ls -S "$work/rbuild/blobs/sha256"/* | head -1)") / 1000000 ))
      fi
      reset_rbuild
      ci_build "ci-runner/$w/cold-push" "$ctx" -t "$reg/ci/$w:app-$rep" --cache-to "$cache,mode=max" --push
      reset_rbuild
      "$rbuild" --root "$work/rbuild" build --progress quiet -t bench --cache-to "$cache-min,mode=min" "$ctx" >/dev/null
      reset_rbuild
      ci_build "ci-runner/$w/fresh" "$ctx" -t bench --cache-from "$cache"
      reset_rbuild
      gets=$(ci_blob_get_count)
      ci_build "ci-runner/$w/fresh-push" "$ctx" -t "$reg/elsewhere/$w:app-$rep" --cache-from "$cache" --push
      ci_blob_gets[$w]=$(($(ci_blob_get_count) - gets))
      reset_rbuild
      ci_build "ci-runner/$w/fresh-min" "$ctx" -t bench --cache-from "$cache-min"
      reset_rbuild
      ci_change "$w" "$ctx"
      ci_build "ci-runner/$w/fresh-changed" "$ctx" -t bench --cache-from "$cache"
      rm -rf "$work/rbuild"
      # BuildKit with its inline cache.
      ctx=$(fresh_context "$w")
      reset_buildkit
      measure "ci-runner/$w/buildkit export" sh -c "DOCKER_BUILDKIT=1 /usr/bin/docker -H unix://$dd/sock build -q \
        --network host --build-arg BUILDKIT_INLINE_CACHE=1 -t $reg/bk/$w:$rep '$ctx' \
        && /usr/bin/docker -H unix://$dd/sock push -q $reg/bk/$w:$rep"
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
  local w cold export_s cold_push fresh overhead
  echo "## ci-runner: an empty store with a registry cache"
  echo
  echo "Median seconds; steps run; blob bytes the store gained besides the base (downloads, plus the image's own"
  echo "config and manifest). BuildKit (Docker 20.10) has only its inline cache, mode=min: compare it with"
  echo "rbuild's \`fresh-min\`."
  echo
  echo "| workload | cold | export (overhead) | cold + export + push | fresh | fresh-push (blob GETs) | fresh-changed | fresh-min | BuildKit export+push | BuildKit fresh | fresh / cold-push | fresh-min / BuildKit fresh |"
  echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
  for w in "${ci_workloads[@]}"; do
    cold=$(med "ci-runner/$w/cold")
    export_s=$(med "ci-runner/$w/export")
    cold_push=$(med "ci-runner/$w/cold-push")
    fresh=$(med "ci-runner/$w/fresh")
    overhead=$(echo "scale=1; ($export_s - $cold) * 100 / $cold" | bc)
    cell() { echo "$(med "ci-runner/$w/$1") s, ${ci_steps[ci-runner/$w/$1]:-?} run, $(( ${ci_bytes[ci-runner/$w/$1]:-0} / 1024 )) KiB"; }
    echo "| $w | $cold s | $export_s s ($overhead %) | $cold_push s | $(cell fresh) | $(cell fresh-push) (${ci_blob_gets[$w]:-?}) | $(cell fresh-changed) | $(cell fresh-min) | $(med "ci-runner/$w/buildkit export") s | $(med "ci-runner/$w/buildkit fresh") s | $(ratio_of "$fresh" "$cold_push")x | $(ratio_of "$(med "ci-runner/$w/fresh-min")" "$(med "ci-runner/$w/buildkit fresh")")x |"
  done
  echo
  local fresh_ratio bk_ratio ov_many ov_six em
  fresh_ratio=$(ratio_of "$(med ci-runner/copy-many/fresh)" "$(med ci-runner/copy-many/cold-push)")
  bk_ratio=$(ratio_of "$(med ci-runner/copy-many/fresh-min)" "$(med "ci-runner/copy-many/buildkit fresh")")
  ov_many=$(ratio_of "$(med ci-runner/copy-many/export)" "$(med ci-runner/copy-many/cold)")
  ov_six=$(ratio_of "$(med ci-runner/six-stages/export)" "$(med ci-runner/six-stages/cold)")
  em=$(med ci-runner/cache-mount/export-mounts)
  echo "| target | measured | |"
  echo "|---|---|---|"
  echo "| \`ci-runner/fresh\` (copy-many) <= 0.25x its cold build with export and push, 0 steps run | ${fresh_ratio}x, ${ci_steps[ci-runner/copy-many/fresh]:-?} run | $(mark eval 'le "$fresh_ratio" 0.25 && [ "${ci_steps[ci-runner/copy-many/fresh]:-1}" = 0 ]') |"
  echo "| \`ci-runner/fresh\` (copy-many) <= 0.5x BuildKit's fresh runner | ${bk_ratio}x | $(mark le "$bk_ratio" 0.5) |"
  echo "| \`ci-runner/fresh-push\`: no layer blob downloaded (the registry's log: only the cache config) | ${ci_blob_gets[copy-many]:-?}, ${ci_blob_gets[cache-mount]:-?}, ${ci_blob_gets[six-stages]:-?} blob GETs | $(mark eval '[ "${ci_blob_gets[copy-many]:-9}" -le 1 ] && [ "${ci_blob_gets[cache-mount]:-9}" -le 1 ] && [ "${ci_blob_gets[six-stages]:-9}" -le 1 ]') |"
  echo "| \`ci-runner/export\` overhead <= 10 % (copy-many, six-stages: no cache mounts) | ${ov_many}x, ${ov_six}x | $(mark eval 'le "$ov_many" 1.10 && le "$ov_six" 1.10') |"
  echo "| \`ci-runner/export\` with mounts=true (cache-mount, ${ci_mount_mb:-?} MB mount layer): no target | $em s vs $(med ci-runner/cache-mount/cold) s cold; floor: the upload alone takes $ci_floor_upload s | report |"
  echo
}
