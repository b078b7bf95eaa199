#!/usr/bin/env bash
# Demo: starts a real docker-registry on 127.0.0.1 with demo images in ./.demo, shows
# regsweep's plan (dry run), cleans up through the API, collects blobs with `regsweep gc`
# (registry stopped), pulls every kept tag in full, and shows a second run finding nothing.
# Re-runnable; nothing outside ./.demo.
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
echo "== regsweep gc: blob garbage collection with the registry stopped"
# Stopped, nothing uploads: every unreferenced blob may go, however young (--min-age 0).
bash scripts/registry.sh stop "$demo"
blobs="$demo/storage/docker/registry/v2/blobs"
before=$(du -sk "$blobs" | cut -f1)
REGISTRY_DIR="$demo/storage" ./target/release/regsweep gc --registry-stopped --min-age 0 --summary-only
after=$(du -sk "$blobs" | cut -f1)
echo "storage (blobs): ${before} KiB before, ${after} KiB after"
url=$(bash scripts/registry.sh start "$demo" "$port")
echo
echo "== every kept tag pulls in full (skopeo copy of every image it reaches: manifest, config, layers, digests checked)"
host=${url#http://}
# Each tag with the images it reaches: itself, or every image under its index (nested too;
# skopeo's --all stops at a nested index).
leaves=$(python3 - "$url" <<'PY'
import json, sys, urllib.request
base = sys.argv[1]
accept = ", ".join([
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
])
def get(path):
    req = urllib.request.Request(base + path, headers={"Accept": accept})
    with urllib.request.urlopen(req) as r:
        return json.load(r)
def images(repo, ref):
    m = get(f"/v2/{repo}/manifests/{ref}")
    if "manifests" not in m:
        return [ref]
    return [i for c in m["manifests"] for i in images(repo, c["digest"])]
for repo in get("/v2/_catalog")["repositories"]:
    for tag in sorted(get(f"/v2/{repo}/tags/list")["tags"] or []):
        for image in images(repo, tag):
            sep = "@" if image.startswith("sha256:") else ":"
            print(f"{repo}:{tag} {repo}{sep}{image}")
PY
)
failed_tags=""
while read -r tag image; do
  out="$demo/pull/${image//[:\/@]/_}"
  rm -rf "$out"; mkdir -p "$out"
  if ! skopeo copy -q --src-tls-verify=false "docker://$host/$image" "dir:$out" >/dev/null 2>"$out.err"; then
    echo "FAILED  $image ($tag): $(head -c 300 "$out.err")"; failed_tags="$failed_tags $tag"
  fi
done <<< "$leaves"
tags=$(cut -d' ' -f1 <<< "$leaves" | sort -u)
for tag in $tags; do
  case " $failed_tags " in *" $tag "*) ;; *) echo "ok      $tag (images: $(grep -c "^$tag " <<< "$leaves"))";; esac
done
failed=$(tr ' ' '\n' <<< "$failed_tags" | sort -u | grep -c . || true)
echo "$(wc -w <<< "$tags") tags pulled in full, $failed failed"
echo
echo "== a second run finds nothing to do"
REGISTRY_URL="$url" REGISTRY_DIR="$demo/storage" ./target/release/regsweep | tail -1
bash scripts/registry.sh stop "$demo"
REGISTRY_DIR="$demo/storage" ./target/release/regsweep gc --registry-stopped --min-age 0 --dry-run --summary-only | grep '^Blobs to delete'
[ "$failed" -eq 0 ]
