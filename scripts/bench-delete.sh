#!/usr/bin/env bash
# Deleter throughput against the real docker-registry on 127.0.0.1.
#   scripts/bench-delete.sh [N=2000]
# Pushes N untagged manifests once, keeps a pristine copy of the storage, then for each
# concurrency deletes them all with regsweep and, on a fresh copy, with a plain parallel
# HTTP client (curl --parallel) over the same digests. Prints deletes/s and the ratio.
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-2000}
bash scripts/install-deps.sh
cargo build --release --locked --workspace --bins >/dev/null
work=$(mktemp -d /tmp/regsweep-bench-delete.XXXXXX)
port=${BENCH_PORT:-5098}
repo=bench/untagged
trap 'bash scripts/registry.sh stop "$work/reg" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT

url=$(bash scripts/registry.sh start "$work/reg" "$port")
./target/release/regsweep-testpush "$url" untagged "$repo" "$n"
bash scripts/registry.sh stop "$work/reg"
cp -a "$work/reg/storage" "$work/pristine"
revs="$work/pristine/docker/registry/v2/repositories/$repo/_manifests/revisions/sha256"
total=$(ls "$revs" | wc -l)

fresh() {
  rm -rf "$work/reg/storage"
  cp -a "$work/pristine" "$work/reg/storage"
  bash scripts/registry.sh start "$work/reg" "$port" >/dev/null
}
seconds() { python3 -c "import sys; print(f'{float(sys.argv[1]):.2f}')" "$1"; }
now() { date +%s.%N; }

printf '%-34s %8s %10s %12s\n' "client" "deletes" "seconds" "deletes/s"
for c in 1 4 8 16; do
  fresh
  t0=$(now)
  REGISTRY_URL="$url" REGISTRY_DIR="$work/reg/storage" MIN_AGE=0 CONCURRENCY=$c \
    ./target/release/regsweep > "$work/out.txt"
  t1=$(now)
  bash scripts/registry.sh stop "$work/reg"
  left=$(find "$work/reg/storage/docker/registry/v2/repositories/$repo/_manifests/revisions" -name link | wc -l)
  [ "$left" -eq 0 ] || { echo "regsweep left $left revisions" >&2; exit 1; }
  rs=$(python3 -c "print(($t1-$t0))"); rrate=$(python3 -c "print(f'{$total/($t1-$t0):.0f}')")

  fresh
  for h in $(ls "$revs"); do printf 'url = "%s/v2/%s/manifests/sha256:%s"\n-X DELETE\n-o /dev/null\n' "$url" "$repo" "$h"; done > "$work/curl.cfg"
  t0=$(now)
  curl -s --no-progress-meter --parallel --parallel-max "$c" -K "$work/curl.cfg" 2>/dev/null
  t1=$(now)
  bash scripts/registry.sh stop "$work/reg"
  crate=$(python3 -c "print(f'{$total/($t1-$t0):.0f}')")
  printf '%-34s %8s %10s %12s\n' "regsweep (scan+plan+delete) c=$c" "$total" "$(seconds "$rs")" "$rrate"
  printf '%-34s %8s %10s %12s\n' "curl --parallel c=$c" "$total" "$(seconds "$(python3 -c "print($t1-$t0)")")" "$crate"
  echo "ratio regsweep/curl at c=$c: $(python3 -c "print(f'{$rrate/$crate:.2f}')")"
done
