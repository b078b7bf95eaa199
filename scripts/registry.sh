#!/usr/bin/env bash
# Starts and stops the real docker-registry 2.8 on 127.0.0.1 with filesystem storage.
#   registry.sh start DIR PORT   config in DIR/config.yml, storage in DIR/storage, pid in DIR/registry.pid
#   registry.sh stop DIR         SIGTERM by that pid, then wait for it to exit
# Extra YAML (auth, tls) may be put in DIR/extra.yml before start: it is appended to the config.
# Registry environment overrides such as REGISTRY_STORAGE_DELETE_ENABLED=false pass through.
# With S3_TEST_ENDPOINT (and S3_TEST_BUCKET, S3_TEST_ROOT) set, storage is S3 instead.
set -euo pipefail
cmd=${1:?usage: registry.sh start DIR PORT | stop DIR}
dir=${2:?usage: registry.sh start DIR PORT | stop DIR}

case "$cmd" in
start)
  port=${3:?usage: registry.sh start DIR PORT}
  mkdir -p "$dir/storage"
  dir=$(cd "$dir" && pwd)
  if [ -n "${S3_TEST_ENDPOINT:-}" ]; then
    # S3 storage on a local S3 server (see moto.sh), as DESIGN section 7 says.
    driver="  s3:
    accesskey: test
    secretkey: test
    region: us-east-1
    regionendpoint: $S3_TEST_ENDPOINT
    bucket: ${S3_TEST_BUCKET:-registry}
    forcepathstyle: true
    secure: false
    v4auth: true
    rootdirectory: ${S3_TEST_ROOT:-/registry}
  redirect:
    disable: true"
  else
    driver="  filesystem:
    rootdirectory: $dir/storage"
  fi
  cat > "$dir/config.yml" <<YAML
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
$driver
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:$port
YAML
  [ -f "$dir/extra.yml" ] && cat "$dir/extra.yml" >> "$dir/config.yml"
  scheme=http; [ -n "${REGISTRY_HTTP_TLS_CERTIFICATE:-}" ] && scheme=https
  env -u AWS_CA_BUNDLE docker-registry serve "$dir/config.yml" >"$dir/registry.log" 2>&1 &
  echo $! > "$dir/registry.pid"
  for _ in $(seq 1 100); do
    if curl -sk -o /dev/null "$scheme://127.0.0.1:$port/v2/"; then
      echo "$scheme://127.0.0.1:$port"
      exit 0
    fi
    if ! kill -0 "$(cat "$dir/registry.pid")" 2>/dev/null; then
      echo "docker-registry exited; its log:" >&2; cat "$dir/registry.log" >&2; exit 1
    fi
    sleep 0.05
  done
  echo "docker-registry did not answer on 127.0.0.1:$port within 5 s" >&2
  exit 1
  ;;
stop)
  pidfile="$dir/registry.pid"
  [ -f "$pidfile" ] || exit 0
  pid=$(cat "$pidfile")
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
  kill -KILL "$pid" 2>/dev/null || true
  rm -f "$pidfile"
  ;;
*)
  echo "usage: registry.sh start DIR PORT | stop DIR" >&2; exit 2 ;;
esac
