#!/usr/bin/env bash
# Demo: starts a real docker-registry on 127.0.0.1 with demo images in ./.demo, shows
# regsweep's plan (dry run), then stops the registry. Re-runnable; nothing outside ./.demo.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cargo build --release --locked --bins
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
echo "== regsweep, dry run"
REGISTRY_URL="$url" REGISTRY_DIR="$demo/storage" DRY_RUN=true ./target/release/regsweep
