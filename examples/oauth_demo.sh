#!/bin/sh
# `make oauth-demo`: a sandbox with an OAuth client and 3-second access tokens;
# examples/oauth.lua logs in (curl plays the browser), then runs again after the
# token expired and keeps working from the saved file.
set -eu
export LUA_PATH='lua/?.lua;lua/?/init.lua;;' LUA_CPATH='build/?.so;;'
dir=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null; rm -rf "$dir"' EXIT
lua5.4 bin/pipedrive-sandbox --port 0 --port-file "$dir/port" --quiet --exit-after 120 \
  --oauth-client demo-client:demo-secret --oauth-auto-approve --token-ttl 3 &
pid=$!
i=0; while [ ! -s "$dir/port" ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done
export PIPEDRIVE_OAUTH_URL="http://127.0.0.1:$(cat "$dir/port")"
export PIPEDRIVE_CLIENT_ID=demo-client PIPEDRIVE_CLIENT_SECRET=demo-secret
export PIPEDRIVE_TOKEN_FILE="$dir/token.json" PIPEDRIVE_REDIRECT_URI="http://127.0.0.1:8976/callback"
echo "== first run: login"
lua5.4 examples/oauth.lua --fetch
echo "== waiting 4 s: the access token expires"
sleep 4
echo "== second run: the saved token, refreshed"
lua5.4 examples/oauth.lua
ls -l "$dir/token.json" | cut -c1-10
