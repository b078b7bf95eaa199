#!/usr/bin/env bash
# S3 listing benchmark on a local S3 server (moto) on 127.0.0.1.
#   scripts/bench-s3.sh [MANIFESTS=100000] [PER_REPO=100]
# Writes the link keys of MANIFESTS revisions (PER_REPO per repository, a fifth of them
# tagged) straight into the bucket, then lists them with regsweep's S3 lister (parallel by
# repository, tags resolved from ETags) beside one sequential ListObjectsV2 stream over the
# same prefix. Prints wall time and request counts of both.
set -euo pipefail
cd "$(dirname "$0")/.."
manifests=${1:-100000}
per_repo=${2:-100}
repos=$(( manifests / per_repo ))
bash scripts/install-deps.sh
cargo build --release --locked --workspace --bins >/dev/null
work=$(mktemp -d /tmp/regsweep-bench-s3.XXXXXX)
port=${BENCH_PORT:-5097}
trap 'bash scripts/moto.sh stop "$work" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
url=$(bash scripts/moto.sh start "$work" "$port" registry)
t0=$(date +%s.%N)
S3FILL_NO_BLOBS=1 ./target/release/regsweep-testpush "$url" s3fill registry /registry "$repos" "$per_repo" $(( per_repo / 5 )) 0
t1=$(date +%s.%N)
echo "filled in $(python3 -c "print(f'{$t1-$t0:.1f}')") s"
./target/release/regsweep-testpush "$url" s3list registry /registry
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
print(f"sequential ListObjectsV2: {keys} keys in {time.time()-t0:.2f} s; {pages} LIST requests")
PY
