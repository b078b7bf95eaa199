#!/usr/bin/env bash
# Side-by-side scan benchmark on one generated tree (warm cache):
#   scripts/bench-scan.sh [REVISIONS=1000000] [TAGS=REVISIONS/5] [REPOS=REVISIONS/5000]
# 1. regsweep dry run with JSON output to /dev/null (scan, manifest and config reads, plan);
# 2. find <root>/docker/registry/v2/repositories -name link, and the pruned find that never
#    enters `_layers` (as regsweep never does);
# 3. docker-registry garbage-collect --dry-run --delete-untagged on a config for the tree.
# Prints each wall time and peak RSS (GNU time) and the ratios: the median of RUNS runs
# (default 3 warm, 1 cold), the largest RSS, and every run's time. The tree is kept in
# target/bench-tree-<REVISIONS> for reruns (delete it to regenerate).
# COLD=1 (root only) drops the page cache before each measurement instead of warming it.
# IMAGE=1 (root only) puts the tree on a loop-mounted ext4 image with 1 KiB blocks and
# inline data (~5 KB per manifest instead of ~35 KB with 4 KiB blocks), which is how a
# 1M-manifest tree fits on a small disk; the image is target/bench-tree-<REVISIONS>.img.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
revs=${1:-1000000}
tags=${2:-$(( revs / 5 ))}
repos=${3:-$(( revs / 5000 > 2 ? revs / 5000 : 2 ))}
bash scripts/install-deps.sh
command -v /usr/bin/time >/dev/null || { apt-get update -qq && apt-get install -y -qq time >/dev/null; }
cargo build --release --locked --workspace --bins >/dev/null
root=target/bench-tree-$revs
[ -z "${IMAGE:-}" ] || mount_image "$root" "$revs"
if [ ! -d "$root/docker/registry/v2/repositories" ]; then
  mountpoint -q "$root" || rm -rf "$root"
  ./target/release/regsweep-gen "$root" "$repos" "$revs" "$tags" 1
fi
root=$(cd "$root" && pwd)
cfg=$(mktemp /tmp/regsweep-bench-scan.XXXXXX.yml)
trap 'rm -f "$cfg"' EXIT
cat > "$cfg" <<YAML
version: 0.1
log: {level: error}
storage:
  filesystem: {rootdirectory: $root}
  delete: {enabled: true}
http: {addr: 127.0.0.1:0}
YAML
if [ -z "${COLD:-}" ]; then
  # Warm the page cache.
  find "$root" -type f -name link > /dev/null
  find "$root/docker/registry/v2/blobs" -name data -exec cat {} + > /dev/null
fi

runs=${RUNS:-$([ -n "${COLD:-}" ] && echo 1 || echo 3)}
measure() { # name, command... (median wall time and largest peak RSS of $runs runs)
  local name=$1; shift
  local all=()
  for _ in $(seq "${MEASURE_RUNS:-$runs}"); do
    if [ -n "${COLD:-}" ]; then sync; echo 3 > /proc/sys/vm/drop_caches; fi
    /usr/bin/time -f "%e %M" -o /tmp/regsweep-bench-time "$@" > /dev/null 2>&1
    all+=("$(cat /tmp/regsweep-bench-time)")
  done
  read -r secs kb spread < <(printf '%s\n' "${all[@]}" | python3 -c '
import sys
rows = [l.split() for l in sys.stdin if l.strip()]
t = sorted(float(r[0]) for r in rows)
print(f"{t[len(t) // 2]:.2f}", max(int(r[1]) for r in rows), ",".join(f"{x:.2f}" for x in t))')
  printf '%-48s %9s s %9s MiB   (runs: %s)\n' "$name" "$secs" "$(( kb / 1024 ))" "$spread"
  echo "$secs" > "/tmp/regsweep-bench-$(echo "$name" | cut -d' ' -f1)"
}
echo "tree: $root ($revs revisions, $tags tags, $repos repositories)"
measure "regsweep (dry run, JSON to /dev/null)" env REGISTRY_DIR="$root" DRY_RUN=true OUTPUT_FORMAT=json ./target/release/regsweep
measure "find (-name link)" find "$root/docker/registry/v2/repositories" -name link
measure "pruned (find -name _layers -prune -o -name link -print)" find "$root/docker/registry/v2/repositories" -name _layers -prune -o -name link -print
r=$(cat /tmp/regsweep-bench-regsweep); f=$(cat /tmp/regsweep-bench-find); p=$(cat /tmp/regsweep-bench-pruned)
python3 -c "print(f'regsweep / find: {$r/$f:.2f}x; regsweep / pruned find: {$r/$p:.2f}x')"
# The registry's own collector needs ~6 ms per manifest here (about 100 min at 1M):
# SKIP_GC=1 leaves it out.
if [ -z "${SKIP_GC:-}" ]; then
  MEASURE_RUNS=1 measure "garbage-collect (--dry-run --delete-untagged)" env -u AWS_CA_BUNDLE docker-registry garbage-collect --dry-run --delete-untagged "$cfg"
  g=$(cat /tmp/regsweep-bench-garbage-collect)
  python3 -c "print(f'garbage-collect / regsweep: {$g/$r:.1f}x')"
fi
