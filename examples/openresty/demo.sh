#!/bin/sh
# `make openresty-demo`: a sandbox with a few deals on a free loopback port, and
# examples/openresty/nginx.conf in nginx (prefix build/openresty/, port 8080 or
# $PORT) calling it. Shows one answer, then serves until Ctrl-C (DEMO_ONCE=1:
# stops after the answer).
set -eu
cd "$(dirname "$0")/../.."
root=$(pwd)
port=${PORT:-8080}
prefix=$root/build/openresty
mkdir -p "$prefix/logs" "$prefix/tmp"
rm -f "$prefix/sandbox.port"
# the prefix holds the paths the config names relative to it
ln -sfn "$root/lua" "$prefix/lua"
mkdir -p "$prefix/build" "$prefix/examples"
ln -sfn "$root/build/luajit" "$prefix/build/luajit"
ln -sfn "$root/examples/openresty" "$prefix/examples/openresty"
sed "s/127.0.0.1:8080/127.0.0.1:$port/" examples/openresty/nginx.conf >"$prefix/nginx.conf"
cp examples/openresty/pipedrive-location.conf "$prefix/pipedrive-location.conf"

LUA_PATH="$root/lua/?.lua;$root/lua/?/init.lua;;" LUA_CPATH="$root/build/?.so;;" \
  lua5.4 bin/pipedrive-sandbox --port 0 --port-file "$prefix/sandbox.port" --api-token demo-token \
  --fixtures 5 --exit-after 3600 --quiet >"$prefix/logs/sandbox.log" 2>&1 &
sandbox=$!
nginx_pid=""
stop() {
  [ -n "$nginx_pid" ] && kill -QUIT "$nginx_pid" 2>/dev/null || true
  kill "$sandbox" 2>/dev/null || true
}
trap 'stop' EXIT
trap 'exit 0' INT TERM
i=0
while [ ! -s "$prefix/sandbox.port" ] && [ $i -lt 400 ]; do sleep 0.05; i=$((i + 1)); done
sb_url="http://127.0.0.1:$(cat "$prefix/sandbox.port")"
echo "sandbox: $sb_url"

PIPEDRIVE_API_TOKEN=demo-token PIPEDRIVE_BASE_URL=$sb_url \
  nginx -p "$prefix" -c "$prefix/nginx.conf" -g 'daemon off;' &
nginx_pid=$!
i=0
until curl -s -o /dev/null "http://127.0.0.1:$port/" || [ $i -ge 100 ]; do sleep 0.05; i=$((i + 1)); done
echo "nginx: http://127.0.0.1:$port/ (logs in $prefix/logs)"
echo "GET /deals ->"
curl -s "http://127.0.0.1:$port/deals"
if [ "${DEMO_ONCE:-0}" = 1 ]; then exit 0; fi
echo "serving; Ctrl-C stops nginx and the sandbox"
wait "$nginx_pid"
