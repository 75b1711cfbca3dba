#!/bin/sh
# Installs what `make bench` needs and is missing (Debian 12), then the
# official Node.js SDK into bench/node_modules (npm, from bench/package.json).
# Not part of CI.
set -eu
cd "$(dirname "$0")/.."
PACKAGES="nginx wrk nodejs valgrind lua-cjson gcc pkg-config liblua5.4-dev libcurl4-openssl-dev libmicrohttpd-dev libhiredis-dev redis-server"
missing=""
for p in $PACKAGES; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
# npm: Debian's package, unless a Node.js that brings its own npm is installed
command -v npm >/dev/null 2>&1 || missing="$missing npm"
if [ -n "$missing" ]; then
  echo "installing:$missing"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  # shellcheck disable=SC2086
  $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi
if [ ! -f bench/node_modules/pipedrive/package.json ]; then
  (cd bench && npm install --no-audit --no-fund --silent)
fi
