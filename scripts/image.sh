#!/usr/bin/env bash
# Builds the container image (Dockerfile: FROM scratch, static regsweep, CA certificates)
# with buildah, runs it once (--version, and a dry run over a tiny registry tree), pushes it
# to a test registry on 127.0.0.1 and checks it is pullable. Run by scripts/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
bash scripts/install-deps.sh
target=x86_64-unknown-linux-gnu
RUSTFLAGS="-C target-feature=+crt-static" \
  cargo build --release --locked --target "$target" --bin regsweep
bin=target/$target/release/regsweep
if ldd "$bin" 2>&1 | grep -q '=>'; then
  echo "image: $bin is not statically linked" >&2
  exit 1
fi
ctx=target/image
rm -rf "$ctx" && mkdir -p "$ctx"
cp "$bin" /etc/ssl/certs/ca-certificates.crt "$ctx/"
strip "$ctx/regsweep"
store=(--storage-driver vfs --root "$PWD/target/image-storage" --runroot "$PWD/target/image-run")
buildah "${store[@]}" bud --quiet --isolation chroot -t localhost/regsweep:test -f Dockerfile "$ctx" >/dev/null
ctr=$(buildah "${store[@]}" from localhost/regsweep:test)
trap 'buildah "${store[@]}" rm "$ctr" >/dev/null 2>&1 || true' EXIT
version=$(buildah "${store[@]}" run --isolation chroot "$ctr" -- /regsweep --version)
echo "image: runs: $version"
# A dry run inside the image over a tiny generated registry tree mounted at /registry.
tree=$(mktemp -d /tmp/regsweep-image-tree.XXXXXX)
cargo run -q --locked -p regsweep-testkit --bin regsweep-gen -- "$tree" 2 40 8 1 >/dev/null
chmod -R a+rX "$tree"
buildah "${store[@]}" run --isolation chroot -v "$tree:/registry:ro" -e DRY_RUN=true "$ctr" -- /regsweep \
  > "$tree.out"
grep -q "Running against local storage" "$tree.out"
grep -Eq "Dry run: |Nothing to do" "$tree.out"
echo "image: dry run over /registry in the image: $(grep -E 'Dry run: |Nothing to do' "$tree.out")"
rm -rf "$tree" "$tree.out"
# Push to a test registry and pull it back.
reg=$(mktemp -d /tmp/regsweep-image-reg.XXXXXX)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
url=$(bash scripts/registry.sh start "$reg" "$port")
trap 'buildah "${store[@]}" rm "$ctr" >/dev/null 2>&1 || true; bash scripts/registry.sh stop "$reg"; rm -rf "$reg"' EXIT
buildah "${store[@]}" push --quiet --tls-verify=false localhost/regsweep:test "docker://127.0.0.1:$port/regsweep:test"
out=$(mktemp -d /tmp/regsweep-image-pull.XXXXXX)
skopeo copy --quiet --src-tls-verify=false "docker://127.0.0.1:$port/regsweep:test" "oci:$out:pulled"
skopeo inspect --tls-verify=false "docker://127.0.0.1:$port/regsweep:test" \
  | python3 -c 'import json,sys; c=json.load(sys.stdin); print("image: pushed to", sys.argv[1], "and pulled back:", c["Digest"], c["Os"] + "/" + c["Architecture"])' "$url"
rm -rf "$out"
