#!/usr/bin/env bash
# Installs what the tests and the demo need, only where it is missing (Debian packages).
set -euo pipefail
need=()
command -v docker-registry >/dev/null 2>&1 || need+=(docker-registry)
command -v skopeo >/dev/null 2>&1 || need+=(skopeo)
command -v htpasswd >/dev/null 2>&1 || need+=(apache2-utils)
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
command -v buildah >/dev/null 2>&1 || need+=(buildah)
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
# The metrics tests: a real Pushgateway, and promtool (package prometheus) to lint the textfile.
command -v prometheus-pushgateway >/dev/null 2>&1 || need+=(prometheus-pushgateway)
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
command -v python3 >/dev/null 2>&1 || need+=(python3 python3-pip)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}" >&2
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
# The local S3 server for the S3 tests (PyPI).
if ! python3 -c 'import moto.server, flask, flask_cors' >/dev/null 2>&1; then
  echo "installing: moto[server] flask flask-cors (pip)" >&2
  python3 -m pip install -q "moto[server]" flask flask-cors
fi
