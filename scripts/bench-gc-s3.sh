#!/usr/bin/env bash
# Side-by-side blob GC benchmark on S3 (a local S3 server on 127.0.0.1):
#   scripts/bench-gc-s3.sh [REVISIONS=5000] [TAGS=REVISIONS/5] [REPOS=REVISIONS/500]
# S3_SERVER=moto (default; the server the tests use) or s3d (regsweep-s3d, the testkit's
# in-memory S3); with s3d, LATENCY=20ms answers every request that much later, as a real
# S3 across a network does (its round trip, not a local server's CPU, is what users wait
# on). A generated tree, cleaned offline as in bench-gc.sh, is uploaded three times into
# one bucket (roots /ours, /online and /theirs). Then: a cleanup dry run, regsweep gc
# --dry-run and docker-registry garbage-collect --dry-run, then the real sweeps: regsweep
# gc, regsweep gc --online (--settle SETTLE, default 2s: its wall time is the offline one
# plus the settle period, the copies and the re-marks), and docker-registry
# garbage-collect (last: it then lists a bucket with fewer keys, which only flatters it).
# Prints wall times, the ratios, and checks the three sweeps left the same blob keys.
# moto answers each LIST by scanning every key of the bucket, so absolute times grow with
# the bucket's size there.
set -euo pipefail
cd "$(dirname "$0")/.."
revs=${1:-5000}
tags=${2:-$(( revs / 5 ))}
repos=${3:-$(( revs / 500 > 2 ? revs / 500 : 2 ))}
bash scripts/install-deps.sh
command -v /usr/bin/time >/dev/null || { apt-get update -qq && apt-get install -y -qq time >/dev/null; }
cargo build --release --locked --workspace --bins >/dev/null
base=target/bench-gc-s3-$revs
if [ ! -d "$base/docker/registry/v2/repositories" ]; then
  rm -rf "$base"
  ./target/release/regsweep-gen "$base" "$repos" "$revs" "$tags" 1 >/dev/null
  REGISTRY_DIR="$base" DELETE_VIA=storage REGISTRY_STOPPED=true MIN_AGE=0 QUIET=true \
    SUMMARY_ONLY=true ./target/release/regsweep > /dev/null || [ $? -eq 4 ]
fi
work=$(mktemp -d /tmp/regsweep-bench-gc-s3.XXXXXX)
port=${BENCH_PORT:-5098}
server=${S3_SERVER:-moto}
. scripts/lib.sh
if [ "$server" = s3d ]; then
  trap '[ -n "${KEEP:-}" ] || { stop_pidfile "$work/s3d.pid"; rm -rf "$work"; }' EXIT
  ./target/release/regsweep-s3d --latency="${LATENCY:-0s}" "127.0.0.1:$port" test test registry > "$work/s3d.log" 2>&1 &
  echo $! > "$work/s3d.pid"
  url=http://127.0.0.1:$port
  wait_up regsweep-s3d "$url/" "$work/s3d.pid" "$work/s3d.log" 200
else
  trap '[ -n "${KEEP:-}" ] || { bash scripts/moto.sh stop "$work" >/dev/null 2>&1 || true; rm -rf "$work"; }' EXIT
  url=$(bash scripts/moto.sh start "$work" "$port" registry)
fi
for root in ours online theirs; do
  echo "uploaded to /$root: $(./target/release/regsweep-testpush "$url" s3put-dir registry "/$root" "$base")"
done
cat > "$work/config.yml" <<YAML
version: 0.1
log: {level: error}
storage:
  s3:
    accesskey: test
    secretkey: test
    region: us-east-1
    regionendpoint: $url
    bucket: registry
    forcepathstyle: true
    secure: false
    v4auth: true
    rootdirectory: /theirs
  delete: {enabled: true}
http: {addr: 127.0.0.1:0}
YAML
s3() { # root: regsweep's environment for that root
  echo REGISTRY_STORAGE=S3 ACCESS_KEY=test SECRET_KEY=test BUCKET=registry REGION=us-east-1 \
    S3_ENDPOINT="$url" REGISTRY_DIR="/$1" MIN_AGE=0 SUMMARY_ONLY=true QUIET=true
}
measure() { # key, label, command...
  local key=$1 label=$2; shift 2
  /usr/bin/time -f "%e %M" -o "$work/time" "$@" > "$work/$key.out" 2>&1 ||
    { tail -5 "$work/$key.out" >&2; exit 1; }
  read -r secs kb < "$work/time"
  printf '%-44s %9s s %9s MiB\n' "$label" "$secs" "$(( kb / 1024 ))"
  echo "$secs" > "$work/$key.secs"
}
# The registry's configuration for the online collection: no blob descriptor cache.
sed 's#rootdirectory: /theirs#rootdirectory: /online#' "$work/config.yml" > "$work/online.yml"
echo "tree: $base ($revs revisions before cleanup, $tags tags, $repos repositories) on $server${LATENCY:+, latency $LATENCY}"
# shellcheck disable=SC2046
measure cleanup-dry "regsweep (cleanup) dry run" env $(s3 ours) DRY_RUN=true ./target/release/regsweep
# shellcheck disable=SC2046
measure ours-dry "regsweep gc --dry-run" env $(s3 ours) DRY_RUN=true ./target/release/regsweep gc
measure theirs-dry "docker-registry garbage-collect --dry-run" env -u AWS_CA_BUNDLE docker-registry garbage-collect --dry-run "$work/config.yml"
# shellcheck disable=SC2046
measure ours "regsweep gc (sweep)" env $(s3 ours) REGISTRY_STOPPED=true ./target/release/regsweep gc
# shellcheck disable=SC2046
measure online "regsweep gc --online --settle ${SETTLE:-2s}" env $(s3 online) ./target/release/regsweep gc --online --settle "${SETTLE:-2s}" --registry-config "$work/online.yml"
measure theirs "docker-registry garbage-collect (sweep)" env -u AWS_CA_BUNDLE docker-registry garbage-collect "$work/config.yml"
grep -h "Blobs to delete\|Deleted\|Quarantined" "$work/ours-dry.out" "$work/ours.out" "$work/online.out" || true
r() { cat "$work/$1.secs"; }
python3 - "$(r ours-dry)" "$(r theirs-dry)" "$(r ours)" "$(r theirs)" "$(r online)" <<'PY'
import sys
od, td, o, t, on = map(float, sys.argv[1:])
print(f"dry run: garbage-collect / regsweep gc: {td/od:.1f}x")
print(f"sweep:   garbage-collect / regsweep gc: {t/o:.1f}x")
print(f"sweep:   garbage-collect / regsweep gc --online: {t/on:.1f}x")
PY
env -u AWS_CA_BUNDLE python3 - "$url" <<'PY'
import sys, boto3
s3 = boto3.client("s3", endpoint_url=sys.argv[1], aws_access_key_id="test",
                  aws_secret_access_key="test", region_name="us-east-1")
def blobs(root):
    out, token = set(), None
    while True:
        kw = dict(Bucket="registry", Prefix=f"{root}/docker/registry/v2/blobs/")
        if token: kw["ContinuationToken"] = token
        r = s3.list_objects_v2(**kw)
        out |= {o["Key"][len(root):] for o in r.get("Contents", [])}
        if not r.get("IsTruncated"): return out
        token = r["NextContinuationToken"]
ours, online, theirs = blobs("ours"), blobs("online"), blobs("theirs")
print(f"blob keys left: regsweep {len(ours)}, regsweep --online {len(online)}, registry {len(theirs)}")
if ours != theirs or online != theirs:
    sys.exit("the sweeps left different blob keys")
print("the three sweeps left the same blob keys")
PY
