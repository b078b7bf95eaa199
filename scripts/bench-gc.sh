#!/usr/bin/env bash
# Side-by-side blob GC benchmark on one generated tree (warm cache):
#   scripts/bench-gc.sh [REVISIONS=100000] [TAGS=REVISIONS/5] [REPOS=REVISIONS/5000]
# The tree (from regsweep-gen) is first cleaned offline (untagged manifests removed), so
# their blobs are garbage. Then, each on a fresh copy of that cleaned tree:
# 1. regsweep gc --dry-run (mark every manifest, list unmarked blobs);
# 2. docker-registry garbage-collect --dry-run on a config for the tree;
# 3. find over blobs/ (-name data) plus the pruned find over the manifest links;
# 4. the real sweeps: regsweep gc, and docker-registry garbage-collect.
# Prints wall time and peak RSS (GNU time) and the ratios; checks both sweeps leave the same
# blob files. Trees live in target/bench-gc-<REVISIONS>* (delete them to regenerate).
# IMAGE=1 (root only) puts the tree on a loop-mounted ext4 image (1 KiB blocks, inline
# data; see bench-scan.sh), target/bench-gc-<REVISIONS>.img, for trees the disk cannot
# hold three times: then only the dry runs and the finds run, on that one tree.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
revs=${1:-100000}
tags=${2:-$(( revs / 5 ))}
repos=${3:-$(( revs / 5000 > 2 ? revs / 5000 : 2 ))}
bash scripts/install-deps.sh
command -v /usr/bin/time >/dev/null || { apt-get update -qq && apt-get install -y -qq time >/dev/null; }
cargo build --release --locked --workspace --bins >/dev/null
base=target/bench-gc-$revs
[ -z "${IMAGE:-}" ] || mount_image "$base" "$revs"
if [ ! -d "$base/docker/registry/v2/repositories" ]; then
  mountpoint -q "$base" || rm -rf "$base"
  ./target/release/regsweep-gen "$base" "$repos" "$revs" "$tags" 1 >/dev/null
  REGISTRY_DIR="$base" DELETE_VIA=storage REGISTRY_STOPPED=true MIN_AGE=0 QUIET=true \
    SUMMARY_ONLY=true ./target/release/regsweep > /dev/null || [ $? -eq 4 ]
fi
base=$(cd "$base" && pwd)
ours=$base-regsweep; theirs=$base-registry; online=$base-online
if [ -n "${IMAGE:-}" ]; then
  ours=$base; theirs=$base
else
  rm -rf "$ours" "$theirs" "$online"
  cp -a "$base" "$ours"; cp -a "$base" "$theirs"; cp -a "$base" "$online"
fi
cfg=$(mktemp /tmp/regsweep-bench-gc.XXXXXX.yml)
trap 'rm -f "$cfg" "$cfg.online"' EXIT
cat > "$cfg" <<YAML
version: 0.1
log: {level: error}
storage:
  filesystem: {rootdirectory: $theirs}
  delete: {enabled: true}
http: {addr: 127.0.0.1:0}
YAML
# Warm the page cache.
find "$ours" "$theirs" -type f -name link > /dev/null
find "$ours/docker/registry/v2/blobs" "$theirs/docker/registry/v2/blobs" -name data > /dev/null
find "$ours/docker/registry/v2/blobs" -name data -exec cat {} + > /dev/null

measure() { # key, label, command...
  local key=$1 label=$2; shift 2
  /usr/bin/time -f "%e %M" -o /tmp/regsweep-bench-time "$@" > /dev/null 2>&1
  read -r secs kb < /tmp/regsweep-bench-time
  printf '%-56s %9s s %9s MiB\n' "$label" "$secs" "$(( kb / 1024 ))"
  echo "$secs" > "/tmp/regsweep-bench-gc-$key"
}
echo "tree: $base ($revs revisions before cleanup, $tags tags, $repos repositories)"
export MIN_AGE=0
measure ours-dry "regsweep gc --dry-run" env REGISTRY_DIR="$ours" DRY_RUN=true SUMMARY_ONLY=true ./target/release/regsweep gc
measure find "find blobs -name data + pruned find of links" sh -c \
  "find '$ours/docker/registry/v2/blobs' -name data; find '$ours/docker/registry/v2/repositories' -name _layers -prune -o -name link -print"
measure theirs-dry "docker-registry garbage-collect --dry-run" env -u AWS_CA_BUNDLE docker-registry garbage-collect --dry-run "$cfg"
if [ -n "${IMAGE:-}" ]; then
  python3 -c "od, f, td = $(cat /tmp/regsweep-bench-gc-ours-dry), $(cat /tmp/regsweep-bench-gc-find), $(cat /tmp/regsweep-bench-gc-theirs-dry); print(f'dry run: garbage-collect / regsweep gc: {td/od:.1f}x; regsweep gc / find: {od/f:.2f}x')"
  exit 0
fi
measure ours "regsweep gc (sweep)" env REGISTRY_DIR="$ours" REGISTRY_STOPPED=true SUMMARY_ONLY=true ./target/release/regsweep gc
measure theirs "docker-registry garbage-collect (sweep)" env -u AWS_CA_BUNDLE docker-registry garbage-collect "$cfg"
# Online: the same collection with the quarantine (one rename a blob), re-marks over
# --settle (default here 2s: the wall time is the offline one plus the settle period), and
# the quarantine's deletion. Its report says what one re-mark cost, beside the pruned find
# of the links alone, which a re-mark must not exceed.
sed "s#$theirs#$online#" "$cfg" > "$cfg.online"
/usr/bin/time -f "%e %M" -o /tmp/regsweep-bench-time env REGISTRY_DIR="$online" SUMMARY_ONLY=true \
  ./target/release/regsweep gc --online --settle "${SETTLE:-2s}" --registry-config "$cfg.online" > /tmp/regsweep-bench-gc-online.out 2>&1
read -r secs kb < /tmp/regsweep-bench-time
printf '%-56s %9s s %9s MiB\n' "regsweep gc --online --settle ${SETTLE:-2s}" "$secs" "$(( kb / 1024 ))"
echo "$secs" > /tmp/regsweep-bench-gc-online
grep -h "Settled" /tmp/regsweep-bench-gc-online.out
measure links "pruned find of the links (what a re-mark lists)" \
  find "$online/docker/registry/v2/repositories" -name _layers -prune -o -name link -print
r() { cat "/tmp/regsweep-bench-gc-$1"; }
python3 - "$(r ours-dry)" "$(r find)" "$(r theirs-dry)" "$(r ours)" "$(r theirs)" <<'PY'
import sys
od, f, td, o, t = map(float, sys.argv[1:])
print(f"dry run: garbage-collect / regsweep gc: {td/od:.1f}x; regsweep gc / find: {od/f:.2f}x")
print(f"sweep:   garbage-collect / regsweep gc: {t/o:.1f}x")
PY
if diff <(cd "$ours" && find docker/registry/v2/blobs -name data | sort) <(cd "$online" && find docker/registry/v2/blobs -name data | sort) > /dev/null; then
  echo "the online collection left the same blob data files"
else
  echo "the online collection left other blob data files" >&2; exit 1
fi
if diff <(cd "$ours" && find docker/registry/v2/blobs | sort) <(cd "$theirs" && find docker/registry/v2/blobs | sort) > /dev/null; then
  echo "both sweeps left the same blob files"
else
  echo "the sweeps left different blob files" >&2; exit 1
fi
