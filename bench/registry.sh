#!/usr/bin/env bash
# bench/registry.sh: push and pull of a 4-layer ~400 MB image, strata vs `skopeo copy`, against the
# same local docker-registry (CNCF distribution 2.8) on 127.0.0.1.
#
#   bench/registry.sh [REPS]        # default 9; STRATA=path/to/strata (default: target/release/strata)
#                                   # LAYER_MB=100 (per layer), KEEP=1 keeps the work dir
#                                   # BASELINE=older/strata adds it to every rep (new/old ratios)
#
# Every run gets fresh registry storage (push: empty; pull: a copy of a storage that holds the image)
# and a fresh destination, and skopeo's blob-info cache (/var/lib/containers/cache) is removed before
# each skopeo run, or repeated pushes turn into mounts. Runs are interleaved, and the order of the
# tools is reversed every other rep (ABBA): what one run leaves behind (page cache to reclaim, the
# memory its deleted files freed) then falls on each tool equally. Times are wall-clock medians with
# their spread (min-max and the middle half, p25-p75), CPU is the client's user + sys (the registry
# shares the same 2 cores, so the client's CPU matters as much as its parallelism), peak RSS is the
# largest max-RSS of any run (GNU time). The load is printed at the start and at the end.
#
# Pull compares like with like: skopeo writes the blobs to an OCI layout (`oci:` transport) and
# strata stores them (`--no-unpack`); strata's default pull also unpacks each layer as it arrives,
# measured on its own line for reference.
set -euo pipefail
reps=${1:-9}
layer_mb=${LAYER_MB:-100}
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
source "$here/lib.sh"
STRATA=$(strata_binary)
BASE=$(baseline_binary)
for tool in docker-registry skopeo pigz jq /usr/bin/time; do
  command -v "$tool" >/dev/null || { echo "missing $tool" >&2; exit 1; }
done

work=$(mktemp -d /var/tmp/strata-bench-registry.XXXXXX)
reg_pid=
cleanup() {
  [ -n "$reg_pid" ] && kill "$reg_pid" 2>/dev/null && wait "$reg_pid" 2>/dev/null || true
  [ -n "${KEEP:-}" ] || rm -rf "$work"
}
trap cleanup EXIT

# docker-registry reads REGISTRY_* as configuration: never pass ours along.
for v in $(env | grep -o '^REGISTRY_[A-Z_]*' || true); do unset "$v"; done
export DOCKER_CONFIG=$work/docker REGISTRY_AUTH_FILE=$work/auth.json STRATA_REGISTRIES_CONFIG=$work/registries.toml
mkdir -p "$DOCKER_CONFIG"

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
host=127.0.0.1:$port

start_registry() { # $1 = storage dir
  cat > "$work/registry.yml" <<Y
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $1
  delete:
    enabled: true
http:
  addr: $host
Y
  env -u REGISTRY_AUTH_FILE docker-registry serve "$work/registry.yml" >"$work/registry.log" 2>&1 &
  reg_pid=$!
  for _ in $(seq 1 200); do
    curl -sf "http://$host/v2/" >/dev/null 2>&1 && return 0
    sleep 0.05
  done
  echo "registry did not start: $(cat "$work/registry.log")" >&2; exit 1
}
stop_registry() { kill "$reg_pid" 2>/dev/null || true; wait "$reg_pid" 2>/dev/null || true; reg_pid=; }

# --- The image: an OCI layout that is also a strata store root ------------------------------------
seed=$work/seed
mkdir -p "$seed/blobs/sha256"
echo '{"imageLayoutVersion":"1.0.0"}' > "$seed/oci-layout"
echo "making a 4-layer image of ${layer_mb} MB incompressible layers..." >&2
layers_json=
diff_ids=
for i in 1 2 3 4; do
  d=$work/layer$i; mkdir -p "$d/data"
  head -c "$((layer_mb * 1000 * 1000))" /dev/urandom > "$d/data/blob$i"
  tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -C "$d" -cf "$work/layer$i.tar" data
  diff_id=sha256:$(sha256sum "$work/layer$i.tar" | cut -d' ' -f1)
  pigz -1 -n -c "$work/layer$i.tar" > "$work/layer$i.tgz"
  dg=$(sha256sum "$work/layer$i.tgz" | cut -d' ' -f1)
  size=$(stat -c %s "$work/layer$i.tgz")
  mv "$work/layer$i.tgz" "$seed/blobs/sha256/$dg"
  rm -rf "$d" "$work/layer$i.tar"
  layers_json="$layers_json${layers_json:+,}{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+gzip\",\"digest\":\"sha256:$dg\",\"size\":$size}"
  diff_ids="$diff_ids${diff_ids:+,}\"$diff_id\""
done
arch=$(uname -m); case $arch in x86_64) arch=amd64;; aarch64) arch=arm64;; esac
printf '{"architecture":"%s","os":"linux","config":{},"rootfs":{"type":"layers","diff_ids":[%s]},"history":[{},{},{},{}]}' "$arch" "$diff_ids" > "$work/config.json"
cdg=$(sha256sum "$work/config.json" | cut -d' ' -f1); csize=$(stat -c %s "$work/config.json")
mv "$work/config.json" "$seed/blobs/sha256/$cdg"
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[%s]}' "$cdg" "$csize" "$layers_json" > "$work/manifest.json"
mdg=$(sha256sum "$work/manifest.json" | cut -d' ' -f1); msize=$(stat -c %s "$work/manifest.json")
mv "$work/manifest.json" "$seed/blobs/sha256/$mdg"
printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"org.opencontainers.image.ref.name":"docker.io/library/bench:latest"}}]}' "$mdg" "$msize" > "$seed/index.json"
total=$(du -sb "$seed/blobs" | cut -f1)
echo "image sha256:$mdg, $((total / 1000000)) MB" >&2

# A registry storage that holds the image, copied for every pull run.
pulled_storage=$work/pull-storage
start_registry "$pulled_storage"
STRATA_ROOT=$seed "$STRATA" push -q bench "$host/bench:1" >/dev/null
stop_registry

# skopeo's blob-info cache: removed before each skopeo run, or repeated pushes turn into mounts.
# Only its files: other users of this machine may be writing beside them in the same directory.
clear_skopeo_cache() { rm -f /var/lib/containers/cache/blob-info-cache-v1.* 2>/dev/null || true; }

# --- Timing ----------------------------------------------------------------------------------------
declare -A times rss cpus
measure() { # name, command...
  local name=$1; shift
  local out=$work/time.out
  /usr/bin/time -f "%e %M %U %S" -o "$out" "$@" >/dev/null 2>"$work/last.err" || { echo "$name failed:" >&2; cat "$work/last.err" >&2; exit 1; }
  read -r secs kb user sys < "$out"
  times[$name]="${times[$name]:-} $secs"
  # CPU time (user + sys) of the client: on a machine loaded by others the wall time mostly
  # measures the scheduler's share, the CPU time what the client itself costs.
  cpus[$name]="${cpus[$name]:-} $(echo "$user + $sys" | bc -l)"
  local prev=${rss[$name]:-0}
  if [ "$kb" -gt "$prev" ]; then rss[$name]=$kb; fi
}

# One push and one pull (two for strata: without and with unpack) by $1 = strata|skopeo|baseline.
run_tool() {
  local tool=$1 bin=$STRATA
  [ "$tool" = baseline ] && bin=$BASE
  # push: empty registry
  rm -rf "$work/reg"; mkdir -p "$work/reg"; start_registry "$work/reg"
  clear_skopeo_cache
  if [ "$tool" = skopeo ]; then
    measure push-skopeo skopeo copy -q --dest-tls-verify=false "oci:$seed:docker.io/library/bench:latest" "docker://$host/bench:1"
  else
    measure "push-$tool" env STRATA_ROOT="$seed" "$bin" push -q bench "$host/bench:1"
  fi
  stop_registry
  # pull: registry holding the image, fresh destination
  rm -rf "$work/reg" "$work/dest"; cp -a "$pulled_storage" "$work/reg"; start_registry "$work/reg"
  clear_skopeo_cache
  if [ "$tool" = skopeo ]; then
    measure pull-skopeo skopeo copy -q --src-tls-verify=false "docker://$host/bench:1" "oci:$work/dest:bench"
  else
    measure "pull-$tool" "$bin" --root "$work/dest" pull -q --no-unpack "$host/bench:1"
    rm -rf "$work/dest"
    measure "pull-$tool-unpack" "$bin" --root "$work/dest" pull -q "$host/bench:1"
  fi
  rm -rf "$work/dest"
  stop_registry
}

tools=(strata skopeo)
[ -n "$BASE" ] && tools+=(baseline)
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
for rep in $(seq 1 "$reps"); do
  order=("${tools[@]}")
  if [ $((rep % 2)) = 0 ]; then # ABBA: reversed every other rep
    order=(); for ((i = ${#tools[@]} - 1; i >= 0; i--)); do order+=("${tools[$i]}"); done
  fi
  echo "rep $rep/$reps: ${order[*]}" >&2
  for tool in "${order[@]}"; do run_tool "$tool"; done
done

# min-max and p25-p75 of the numbers on stdin.
spread() {
  tr -s ' \t' '\n' | grep -v '^$' | sort -g |
    awk '{a[NR]=$1} END {q1=a[int((NR+3)/4)]; q3=a[int((3*NR+3)/4)]; printf "%s-%s (p25-p75 %s-%s)", a[1], a[NR], q1, q3}'
}

names=(push-strata push-skopeo pull-strata pull-skopeo pull-strata-unpack)
[ -n "$BASE" ] && names+=(push-baseline pull-baseline pull-baseline-unpack)
printf '\n%-22s %9s %7s %9s   %s\n' "run" "median s" "CPU s" "peak RSS" "wall spread: min-max (p25-p75)"
for name in "${names[@]}"; do
  m=$(echo "${times[$name]}" | median)
  c=$(echo "${cpus[$name]}" | median)
  printf '%-22s %9s %7.2f %5s MiB   %s\n' "$name" "$m" "$c" "$(( ${rss[$name]} / 1024 ))" "$(echo "${times[$name]}" | spread)"
  declare "med_${name//-/_}=$m" "cpu_${name//-/_}=$c"
done
echo "($reps reps, $((total / 1000000)) MB image, $(nproc) cores; load at start $load_start, at end $(cut -d' ' -f1-3 /proc/loadavg))"
echo
echo "push ratio strata/skopeo: $(ratio "$med_push_strata" "$med_push_skopeo")   (goal <= 0.6)"
echo "pull ratio strata/skopeo: $(ratio "$med_pull_strata" "$med_pull_skopeo")   (goal <= 0.6)"
echo "pull+unpack strata/skopeo pull: $(ratio "$med_pull_strata_unpack" "$med_pull_skopeo")"
echo "CPU (user+sys) strata/skopeo: push $(ratio "$cpu_push_strata" "$cpu_push_skopeo"), pull $(ratio "$cpu_pull_strata" "$cpu_pull_skopeo")"
if [ -n "$BASE" ]; then
  echo "new/old (BASELINE=$BASE): push $(ratio "$med_push_strata" "$med_push_baseline") (CPU $(ratio "$cpu_push_strata" "$cpu_push_baseline")), pull $(ratio "$med_pull_strata" "$med_pull_baseline") (CPU $(ratio "$cpu_pull_strata" "$cpu_pull_baseline")), pull+unpack $(ratio "$med_pull_strata_unpack" "$med_pull_baseline_unpack") (CPU $(ratio "$cpu_pull_strata_unpack" "$cpu_pull_baseline_unpack"))"
fi
echo "peak RSS strata: push $(( ${rss[push-strata]} / 1024 )) MiB, pull $(( ${rss[pull-strata]} / 1024 )) MiB, pull+unpack $(( ${rss[pull-strata-unpack]} / 1024 )) MiB   (goal < 100 MiB)"
