#!/usr/bin/env bash
# Offline migration mode against API deletes, on one repository with many tags (each API
# delete makes the registry read every tag of the repository).
#   scripts/bench-offline.sh [MANIFESTS=5000] [TAGS=1000]
# Generates one repository with regsweep-gen, then on two copies of the same storage:
# regsweep through the API of a real docker-registry on 127.0.0.1, and regsweep
# --delete-via storage --registry-stopped. Checks both leave the same revisions and tags.
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-5000}
tags=${2:-1000}
bash scripts/install-deps.sh
cargo build --release --locked --workspace --bins >/dev/null
work=$(mktemp -d /tmp/regsweep-bench-offline.XXXXXX)
port=${BENCH_PORT:-5097}
trap 'bash scripts/registry.sh stop "$work/reg" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
./target/release/regsweep-gen "$work/pristine" 1 "$n" "$tags" 5 >/dev/null
now() { date +%s.%N; }
state() { # revision and tag links left, as one sorted listing
  (cd "$1/docker/registry/v2/repositories" && find . -path '*/revisions/*/link' -o -path '*/tags/*/current/link' | sort)
}

mkdir -p "$work/reg"
cp -a "$work/pristine" "$work/reg/storage"
url=$(bash scripts/registry.sh start "$work/reg" "$port")
t0=$(now)
REGISTRY_URL="$url" REGISTRY_DIR="$work/reg/storage" QUIET=true ./target/release/regsweep > "$work/api.txt"
t1=$(now)
bash scripts/registry.sh stop "$work/reg"
api=$(python3 -c "print($t1-$t0)")
deleted=$(grep -o 'Cleaned [0-9]* of [0-9]*' "$work/api.txt" | tail -1)
state "$work/reg/storage" > "$work/api.state"

cp -a "$work/pristine" "$work/offline"
t0=$(now)
REGISTRY_DIR="$work/offline" DELETE_VIA=storage REGISTRY_STOPPED=true QUIET=true \
  ./target/release/regsweep > "$work/offline.txt"
t1=$(now)
off=$(python3 -c "print($t1-$t0)")
state "$work/offline" > "$work/offline.state"
cmp -s "$work/api.state" "$work/offline.state" || { echo "end states differ" >&2; exit 1; }
echo "one repository, $n revisions, $tags tags: $deleted"
printf '%-40s %8.2f s\n' "API deletes (regsweep, whole run)" "$api"
printf '%-40s %8.2f s\n' "--delete-via storage (whole run)" "$off"
python3 -c "print(f'storage mode is {$api/$off:.1f}x faster; same end state')"
