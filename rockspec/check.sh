#!/bin/sh
# Installs the rock with `luarocks make` into a temporary tree for each
# interpreter given (lua5.1 .. lua5.4, luajit; default: lua5.4 lua5.1 luajit),
# then checks the installation as a user would have it: the installed
# pipedrive-sandbox script starts and listens, a script using only the tree's
# modules adds and reads back a deal through it, and the installed pipedrive
# command finds that deal.
# Last line: "N passed, N failed" (one check per interpreter).
set -u
cd "$(dirname "$0")/.."
[ $# -eq 0 ] && set -- lua5.4 lua5.1 luajit
passed=0 failed=0
for lua in "$@"; do
  tree=$(mktemp -d)
  case "$lua" in
    luajit*)
      version=5.1
      # luarocks has no flag for the interpreter: a config naming LuaJIT and its headers
      printf 'lua_interpreter = "%s"\nvariables = { LUA_INCDIR = "/usr/include/luajit-2.1", LUA_BINDIR = "/usr/bin" }\n' \
        "$lua" >"$tree/config.lua"
      export LUAROCKS_CONFIG="$tree/config.lua" ;;
    lua5.*) version=${lua#lua}; unset LUAROCKS_CONFIG ;;
    *) echo "rockspec/check.sh: unknown interpreter $lua" >&2; failed=$((failed + 1)); continue ;;
  esac
  ok=1
  # built from a copy, as from a fresh clone: the checkout's build/ stays as it is
  mkdir "$tree/src"
  cp -R Makefile csrc lua bin rockspec "$tree/src/"
  if ! (cd "$tree/src" && luarocks --lua-version="$version" --tree="$tree" make --deps-mode=none \
      rockspec/pipedrive-0.1.0-1.rockspec) >"$tree/build.log" 2>&1; then
    echo "$lua: luarocks make failed:"; tail -n 20 "$tree/build.log"; ok=0
  fi
  if [ $ok -eq 1 ]; then
    (
      eval "$(luarocks --lua-version="$version" --tree="$tree" path)"
      "$tree/bin/pipedrive-sandbox" --port 0 --port-file "$tree/port" --api-token rock-token \
        --exit-after 60 --quiet </dev/null >"$tree/sandbox.log" 2>&1 &
      sb=$!
      i=0
      while [ ! -s "$tree/port" ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i + 1)); done
      if [ ! -s "$tree/port" ]; then
        echo "$lua: the installed pipedrive-sandbox did not listen:"; cat "$tree/sandbox.log"
        kill "$sb" 2>/dev/null; exit 1
      fi
      port=$(cat "$tree/port")
      # from / so that nothing of the checkout can be found
      out=$(cd / && "$lua" -e "
        local pipedrive = require 'pipedrive'
        assert(package.cpath:find('$tree', 1, true), 'the tree is not in package.cpath')
        local pd = pipedrive.new{ api_token = 'rock-token', base_url = 'http://127.0.0.1:$port' }
        local d = assert(pd.deals.add{ title = 'From the rock' })
        local got = assert(pd.deals.get(d.id))
        io.write(rawget(_G, 'jit') and jit.version or _VERSION, ' ', got.title)" 2>&1)
      cli=$(cd / && PIPEDRIVE_API_TOKEN=rock-token PIPEDRIVE_BASE_URL="http://127.0.0.1:$port" \
        "$tree/bin/pipedrive" deals search rock --json 2>&1)
      kill "$sb" 2>/dev/null
      case "$out" in
        *"From the rock") ;;
        *) echo "$lua: the installed module failed: $out"; exit 1 ;;
      esac
      case "$cli" in
        *"From the rock"*) echo "$lua: installed; sandbox, module and pipedrive command work ($out)" ;;
        *) echo "$lua: the installed pipedrive command failed: $cli"; exit 1 ;;
      esac
    ) || ok=0
  fi
  rm -rf "$tree"
  if [ $ok -eq 1 ]; then passed=$((passed + 1)); else failed=$((failed + 1)); fi
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
