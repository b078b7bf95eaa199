#!/usr/bin/env bash
# Starts and stops a local S3 server (moto) on 127.0.0.1 with one bucket.
#   moto.sh start DIR PORT [BUCKET=registry]   pid in DIR/moto.pid, log in DIR/moto.log
#   moto.sh stop DIR
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cmd=${1:?usage: moto.sh start DIR PORT [BUCKET] | stop DIR}
dir=${2:?usage: moto.sh start DIR PORT [BUCKET] | stop DIR}
case "$cmd" in
start)
  port=${3:?usage: moto.sh start DIR PORT [BUCKET]}
  bucket=${4:-registry}
  mkdir -p "$dir"
  env -u AWS_CA_BUNDLE python3 -m moto.server -H 127.0.0.1 -p "$port" >"$dir/moto.log" 2>&1 &
  echo $! > "$dir/moto.pid"
  wait_up "moto (python3 -m moto.server)" "http://127.0.0.1:$port/" "$dir/moto.pid" "$dir/moto.log" 200
  curl -sf -X PUT "http://127.0.0.1:$port/$bucket" -o /dev/null
  echo "http://127.0.0.1:$port"
  ;;
stop)
  stop_pidfile "$dir/moto.pid"
  ;;
*) echo "usage: moto.sh start DIR PORT [BUCKET] | stop DIR" >&2; exit 2 ;;
esac
