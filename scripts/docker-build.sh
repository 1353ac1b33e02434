#!/usr/bin/env bash
# Build synqra's images where no image registry is reachable (this machine), from Debian's packages:
#   scripts/docker-build.sh [docker build options...]
# 1. the base image (scripts/docker-base.sh; skipped if it exists),
# 2. synqra-redis:bookworm (docker/redis.Dockerfile; stands in for redis:7-alpine),
# 3. synqra-proxy:latest (docker/Dockerfile with BASE_IMAGE=the local base).
# Host networking lets apt and pip reach their mirrors as the host does. If pip is configured
# with a local wheel folder (PIP_FIND_LINKS or `pip config`; here it holds the torch CPU
# wheel), it is served on 127.0.0.1 for the build; CA certificates added to the host are passed
# to the build stage. Prints the build time and the image size.
# With internet access to Docker Hub, plain `docker compose -f docker/compose.yaml build` works.
set -euo pipefail
cd "$(dirname "$0")/.."
base="${SYNQRA_BASE_IMAGE:-synqra-base:bookworm}"
image="${SYNQRA_IMAGE:-synqra-proxy:latest}"
redis_image="${SYNQRA_REDIS_IMAGE:-synqra-redis:bookworm}"

docker image inspect "$base" >/dev/null 2>&1 || bash scripts/docker-base.sh "$base"

build_args=(--build-arg "BASE_IMAGE=$base")
wheels="${SYNQRA_WHEELS_DIR:-}"
if [ -z "$wheels" ]; then
  for w in ${PIP_FIND_LINKS:-} $(python3 -m pip config get global.find-links 2>/dev/null || true); do
    [ -d "$w" ] && { wheels="$w"; break; }
  done
fi
server_pid=""
cleanup() { [ -z "$server_pid" ] || kill "$server_pid" 2>/dev/null || true; }
trap cleanup EXIT
if [ -n "$wheels" ]; then
  # A fixed port keeps the build arg (part of the layer cache key) the same across builds.
  port="${SYNQRA_WHEELS_PORT:-38417}"
  python3 -m http.server --bind 127.0.0.1 --directory "$wheels" "$port" >/dev/null 2>&1 &
  server_pid=$!
  for _ in $(seq 50); do
    python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/')" 2>/dev/null && break
    kill -0 "$server_pid" 2>/dev/null || { echo "cannot serve $wheels on 127.0.0.1:$port (busy? set SYNQRA_WHEELS_PORT)" >&2; exit 1; }
    sleep 0.1
  done
  echo "offering pip the wheels in $wheels (http://127.0.0.1:$port/)" >&2
  build_args+=(--build-arg "PIP_FIND_LINKS=http://127.0.0.1:$port/" --build-arg "TORCH_INDEX_URL=")
fi

# CA certificates added to this host (e.g. for a TLS-inspecting egress proxy): pip in the build
# must trust them too. Only the build stage sees them.
extra_ca=""
for crt in /usr/local/share/ca-certificates/*.crt; do
  [ -f "$crt" ] && extra_ca="$extra_ca$(cat "$crt")"$'\n'
done
[ -z "$extra_ca" ] || build_args+=(--build-arg "EXTRA_CA_CERTS=$extra_ca")

# The build stage is tagged too (${image%:*}:build-stage): its layers (llama.cpp compiled) are the cache of
# the next build, and a tag keeps them when superseded images are pruned below.
label=(--label org.synqra.build=1)
t0=$(date +%s)
docker build --force-rm --network host "${label[@]}" --build-arg "BASE_IMAGE=$base" -t "$redis_image" -f docker/redis.Dockerfile docker >&2
t1=$(date +%s)
docker build --force-rm --network host "${label[@]}" "${build_args[@]}" --target build -t "${image%:*}:build-stage" -f docker/Dockerfile "$@" . >&2
docker build --force-rm --network host "${label[@]}" "${build_args[@]}" -t "$image" -f docker/Dockerfile "$@" . >&2
t2=$(date +%s)
# Images of earlier builds that these replaced (untagged now); other images are left alone.
docker image prune -f --filter label=org.synqra.build=1 >&2
size=$(docker image inspect -f '{{.Size}}' "$image")
echo "built $redis_image in $((t1 - t0)) s and $image in $((t2 - t1)) s; $image is $((size / 1000000)) MB"
