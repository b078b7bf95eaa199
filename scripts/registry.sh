#!/usr/bin/env bash
# Starts and stops the real docker-registry 2.8 on 127.0.0.1 with filesystem storage.
#   registry.sh start DIR PORT   config in DIR/config.yml, storage in DIR/storage, pid in DIR/registry.pid
#   registry.sh stop DIR         SIGTERM by that pid, then wait for it to exit
# Extra YAML (auth, tls) may be put in DIR/extra.yml before start: it is appended to the config.
# Registry environment overrides such as REGISTRY_STORAGE_DELETE_ENABLED=false pass through.
# With S3_TEST_ENDPOINT (and S3_TEST_BUCKET, S3_TEST_ROOT) set, storage is S3 instead.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cmd=${1:?usage: registry.sh start DIR PORT | stop DIR}
dir=${2:?usage: registry.sh start DIR PORT | stop DIR}

case "$cmd" in
start)
  port=${3:?usage: registry.sh start DIR PORT}
  mkdir -p "$dir/storage"
  dir=$(cd "$dir" && pwd)
  if [ -n "${S3_TEST_ENDPOINT:-}" ]; then
    # S3 storage on a local S3 server (moto.sh: the one the registry's S3 driver works with here).
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
  wait_up docker-registry "$scheme://127.0.0.1:$port/v2/" "$dir/registry.pid" "$dir/registry.log" 100
  echo "$scheme://127.0.0.1:$port"
  ;;
stop)
  stop_pidfile "$dir/registry.pid"
  ;;
*)
  echo "usage: registry.sh start DIR PORT | stop DIR" >&2; exit 2 ;;
esac
