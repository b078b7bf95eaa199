#!/usr/bin/env bash
# Starts and stops a local S3 server (moto) on 127.0.0.1 with one bucket.
#   moto.sh start DIR PORT [BUCKET=registry]   pid in DIR/moto.pid, log in DIR/moto.log
#   moto.sh stop DIR
set -euo pipefail
cmd=${1:?usage: moto.sh start DIR PORT [BUCKET] | stop DIR}
dir=${2:?usage: moto.sh start DIR PORT [BUCKET] | stop DIR}
case "$cmd" in
start)
  port=${3:?usage: moto.sh start DIR PORT [BUCKET]}
  bucket=${4:-registry}
  mkdir -p "$dir"
  env -u AWS_CA_BUNDLE python3 -m moto.server -H 127.0.0.1 -p "$port" >"$dir/moto.log" 2>&1 &
  echo $! > "$dir/moto.pid"
  for _ in $(seq 1 200); do
    if curl -s -o /dev/null "http://127.0.0.1:$port/"; then
      curl -sf -X PUT "http://127.0.0.1:$port/$bucket" -o /dev/null
      echo "http://127.0.0.1:$port"
      exit 0
    fi
    if ! kill -0 "$(cat "$dir/moto.pid")" 2>/dev/null; then
      echo "moto (python3 -m moto.server) exited; its log:" >&2; cat "$dir/moto.log" >&2; exit 1
    fi
    sleep 0.05
  done
  echo "moto did not answer on 127.0.0.1:$port within 10 s" >&2
  exit 1
  ;;
stop)
  pidfile="$dir/moto.pid"
  [ -f "$pidfile" ] || exit 0
  pid=$(cat "$pidfile")
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
  kill -KILL "$pid" 2>/dev/null || true
  rm -f "$pidfile"
  ;;
*) echo "usage: moto.sh start DIR PORT [BUCKET] | stop DIR" >&2; exit 2 ;;
esac
