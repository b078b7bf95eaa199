#!/usr/bin/env bash
# S3 listing benchmark on a local S3 server on 127.0.0.1: regsweep-s3d (the testkit's
# in-memory S3, where a LIST costs its page as on S3) or, with S3_SERVER=moto, moto (which
# re-reads the whole bucket on every LIST).
#   scripts/bench-s3.sh [MANIFESTS=100000] [PER_REPO=100]
# Writes the link keys of MANIFESTS revisions (PER_REPO per repository, a fifth of them
# tagged) straight into the bucket, then lists them with regsweep's S3 lister (parallel by
# repository, tags resolved from ETags) beside one sequential ListObjectsV2 stream over the
# same prefix (by regsweep's own client, and by boto3). Prints wall time and request counts.
# TREE=DIR uploads a tree made by regsweep-gen instead of link keys (`_layers`, blobs and
# all), e.g. `regsweep-gen target/t 1000 100000 20000 1 && TREE=target/t bash scripts/bench-s3.sh`.
set -euo pipefail
cd "$(dirname "$0")/.."
manifests=${1:-100000}
per_repo=${2:-100}
repos=$(( manifests / per_repo ))
bash scripts/install-deps.sh
cargo build --release --locked --workspace --bins >/dev/null
work=$(mktemp -d /tmp/regsweep-bench-s3.XXXXXX)
port=${BENCH_PORT:-5097}
if [ "${S3_SERVER:-s3d}" = moto ]; then
  trap 'bash scripts/moto.sh stop "$work" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
  url=$(bash scripts/moto.sh start "$work" "$port" registry)
else
  . scripts/lib.sh
  trap 'stop_pidfile "$work/s3d.pid"; rm -rf "$work"' EXIT
  ./target/release/regsweep-s3d "127.0.0.1:$port" test test registry > "$work/s3d.log" 2>&1 &
  echo $! > "$work/s3d.pid"
  url=http://127.0.0.1:$port
  wait_up regsweep-s3d "$url/" "$work/s3d.pid" "$work/s3d.log" 200
fi
echo "server: ${S3_SERVER:-s3d} at $url"
t0=$(date +%s.%N)
if [ -n "${TREE:-}" ]; then
  # A generated filesystem tree (regsweep-gen), every key of it.
  ./target/release/regsweep-testpush "$url" s3put-dir registry /registry "$TREE"
else
  S3FILL_NO_BLOBS=1 ./target/release/regsweep-testpush "$url" s3fill registry /registry "$repos" "$per_repo" $(( per_repo / 5 )) 0
fi
t1=$(date +%s.%N)
echo "filled in $(python3 -c "print(f'{$t1-$t0:.1f}')") s"
./target/release/regsweep-testpush "$url" s3list registry /registry
./target/release/regsweep-testpush "$url" s3stream registry /registry
env -u AWS_CA_BUNDLE python3 - "$url" <<'PY'
import sys, time, boto3
s3 = boto3.client("s3", endpoint_url=sys.argv[1], aws_access_key_id="test",
                  aws_secret_access_key="test", region_name="us-east-1")
t0 = time.time(); pages = keys = 0; token = None
while True:
    kw = dict(Bucket="registry", Prefix="registry/docker/registry/v2/repositories/", MaxKeys=1000)
    if token: kw["ContinuationToken"] = token
    r = s3.list_objects_v2(**kw); pages += 1; keys += r.get("KeyCount", 0)
    if not r.get("IsTruncated"): break
    token = r["NextContinuationToken"]
print(f"sequential ListObjectsV2 (boto3): {keys} keys in {time.time()-t0:.2f} s; {pages} LIST requests")
PY
