#!/usr/bin/env bash
# Demo: starts a real docker-registry on 127.0.0.1 with demo images in ./.demo, shows
# regsweep's plan (dry run), then stops the registry. Re-runnable; nothing outside ./.demo.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cargo build --release --locked --workspace --bins
demo=.demo
port=${DEMO_PORT:-5099}
bash scripts/registry.sh stop "$demo" 2>/dev/null || true
rm -rf "$demo"
url=$(bash scripts/registry.sh start "$demo" "$port")
trap 'bash scripts/registry.sh stop "$demo"' EXIT
echo "== pushing demo images to $url"
./target/release/regsweep-testpush "$url" > "$demo/pushed.json"
# Make the pushes look two hours old so the 1h grace period does not protect them.
find "$demo/storage/docker/registry/v2/repositories" -exec touch -h -d '2 hours ago' {} +
echo "== regsweep, dry run: the plan"
REGISTRY_URL="$url" REGISTRY_DIR="$demo/storage" DRY_RUN=true ./target/release/regsweep
echo
echo "== regsweep, for real: deletes through the registry API"
REGISTRY_URL="$url" REGISTRY_DIR="$demo/storage" ./target/release/regsweep
echo
echo "== docker-registry garbage-collect (registry stopped), then restart"
before=$(du -sk "$demo/storage" | cut -f1)
bash scripts/registry.sh stop "$demo"
env -u AWS_CA_BUNDLE docker-registry garbage-collect "$demo/config.yml" 2>&1 | grep -c 'blob eligible for deletion' | xargs -I{} echo "{} blobs collected"
after=$(du -sk "$demo/storage" | cut -f1)
echo "storage: ${before} KiB -> ${after} KiB"
url=$(bash scripts/registry.sh start "$demo" "$port")
echo
echo "== every kept tag still pulls (skopeo inspect)"
for ref in demo/app:1.0 demo/app:2.0 demo/app:nested demo/app:stable lib/base:3.16 other:v1; do
  skopeo inspect --tls-verify=false --raw "docker://${url#http://}/$ref" >/dev/null && echo "ok  $ref"
done
echo
echo "== a second run finds nothing to do"
REGISTRY_URL="$url" REGISTRY_DIR="$demo/storage" ./target/release/regsweep | tail -2
