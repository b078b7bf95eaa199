#!/usr/bin/env bash
# The online collection's push storm, longer than the tests run it:
#   scripts/stress-online-gc.sh [SECONDS=120] [MODE=fs] [SETTLE=5s]
# MODE: fs (filesystem registry, no cache), s3 (registry on moto), redis (filesystem
# registry with a Redis blob descriptor cache: Debian's redis-server), or collector (the
# control: the registry's own `docker-registry garbage-collect` run while the registry
# serves with Debian's default in-memory cache, which must show broken images).
# Starts everything on 127.0.0.1 in a temporary directory, runs regsweep-stress (4
# pushers reusing the layers of deleted images, 2 pullers) with `regsweep gc --online
# --settle SETTLE` (MIN_AGE=0) in a loop, then pulls every manifest pushed and not deleted
# in full. Exits 1 when an image is broken (for the control: when none is).
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-120}
mode=${2:-fs}
settle=${3:-5s}
bash scripts/install-deps.sh
cargo build --release --locked --workspace --bins >/dev/null
bin=$(pwd)/target/release
dir=$(mktemp -d /tmp/regsweep-stress.XXXXXX)
redis_pid=""
cleanup() {
  scripts/registry.sh stop "$dir/registry" || true
  [ -z "$redis_pid" ] || kill "$redis_pid" 2>/dev/null || true
  [ ! -d "$dir/moto" ] || scripts/moto.sh stop "$dir/moto" || true
  rm -rf "$dir"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
env_gc=(MIN_AGE=0 QUIET=true SUMMARY_ONLY=true REGISTRY_DIR="$dir/registry/storage")
reg_env=()
case "$mode" in
fs|collector) ;;
redis)
  rport=$(free_port)
  redis-server --port "$rport" --bind 127.0.0.1 --save "" --appendonly no >/dev/null 2>&1 &
  redis_pid=$!
  for _ in $(seq 1 100); do (exec 3<>/dev/tcp/127.0.0.1/"$rport") 2>/dev/null && break; sleep 0.05; done
  reg_env=(REGISTRY_STORAGE_CACHE_BLOBDESCRIPTOR=redis REGISTRY_REDIS_ADDR=127.0.0.1:$rport)
  env_gc+=("${reg_env[@]}")
  ;;
s3)
  murl=$(scripts/moto.sh start "$dir/moto" "$(free_port)" registry)
  reg_env=(S3_TEST_ENDPOINT="$murl" S3_TEST_BUCKET=registry S3_TEST_ROOT=/registry)
  env_gc=(MIN_AGE=0 QUIET=true SUMMARY_ONLY=true REGISTRY_STORAGE=S3 ACCESS_KEY=test SECRET_KEY=test
          BUCKET=registry REGION=us-east-1 REGISTRY_DIR=/registry S3_ENDPOINT="$murl")
  ;;
*) echo "MODE must be fs, s3, redis or collector" >&2; exit 2 ;;
esac
[ "$mode" != collector ] || reg_env=(REGISTRY_STORAGE_CACHE_BLOBDESCRIPTOR=inmemory)
url=$(env ${reg_env[@]+"${reg_env[@]}"} scripts/registry.sh start "$dir/registry" "$(free_port)")
config="$dir/registry/config.yml"
if [ "$mode" = collector ]; then
  if "$bin/regsweep-stress" "$url" "$secs" -- docker-registry garbage-collect "$config"; then
    echo "control: the registry's collector broke nothing the storm could see" >&2
    exit 1
  fi
  echo "control: broken images seen, as expected"
  exit 0
fi
"$bin/regsweep-stress" "$url" "$secs" -- env "${env_gc[@]}" "$bin/regsweep" gc --online \
  --settle "$settle" --registry-config "$config"
