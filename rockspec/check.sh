#!/bin/sh
# The rocks as a user gets them: `make rock` makes both source rocks from this
# checkout, then for each interpreter given (lua5.1 .. lua5.4, luajit; default:
# lua5.4 lua5.1 luajit), in a temporary tree and as a user without any luarocks
# configuration of their own (HOME is a new folder):
#   - `luarocks install ./pipedrive-<v>.src.rock` with no flag at all exits 0, says
#     no "warning", installs no lua-cjson; `require "pipedrive"` and the
#     installed `pipedrive` command work from the tree;
#   - after the one Debian step the README gives (`luarocks config
#     rocks_provided.lua-cjson 2.1.0-1`: Debian's lua-cjson package is no rock),
#     `luarocks install ./pipedrive-sandbox-<v>.src.rock` does too, its
#     `pipedrive-sandbox` starts and listens, a script using only the tree's
#     modules adds and reads back a deal through it, the `pipedrive` command
#     finds that deal, and `pipedrive nginx-snippet` prints the OpenResty location.
# Plus one check that `luarocks lint` passes both rockspecs.
# Last line: "N passed, N failed" (one check per interpreter, one for lint).
set -u
cd "$(dirname "$0")/.."
[ $# -eq 0 ] && set -- lua5.4 lua5.1 luajit
passed=0 failed=0
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT INT TERM
checkout=$(pwd)

if ! make -s rock ROCKS="$work/rocks" >"$work/rock.log" 2>&1; then
  echo "make rock failed:"; cat "$work/rock.log"
  echo "0 passed, $(($# + 1)) failed"
  exit 1
fi
client=$(cd "$work/rocks" && ls pipedrive-[0-9]*.src.rock)
sandbox=$(cd "$work/rocks" && ls pipedrive-sandbox-*.src.rock)
rock_version=$(echo "$client" | sed 's/^pipedrive-\(.*\)-[0-9]*\.src\.rock$/\1/')

lint_ok=1
for spec in rockspec/*.rockspec; do
  if ! out=$(luarocks lint "$spec" 2>&1) || [ -n "$out" ]; then
    echo "luarocks lint $spec: $out"; lint_ok=0
  fi
done
if [ $lint_ok -eq 1 ]; then
  echo "luarocks lint: both rockspecs clean"; passed=$((passed + 1))
else
  failed=$((failed + 1))
fi

# warned LOG: the lines of LOG that mention a warning (none is allowed)
warned() { grep -i "warning" "$1"; }

for lua in "$@"; do
  tree=$(mktemp -d "$work/tree.XXXXXX")
  mkdir -p "$tree/home/.luarocks"
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
  (
    export HOME="$tree/home"
    lr() { luarocks --lua-version="$version" "$@"; }
    cd "$work/rocks" || exit 1
    if ! lr install --tree="$tree" "./$client" >"$tree/client.log" 2>&1; then
      echo "$lua: luarocks install ./$client failed:"; tail -n 20 "$tree/client.log"; exit 1
    fi
    if warned "$tree/client.log"; then echo "$lua: luarocks install ./$client warned"; exit 1; fi
    eval "$(lr --tree="$tree" path)"
    # from / so that nothing of the checkout can be found
    out=$(cd / && "$lua" -e "
      local pipedrive = require 'pipedrive'
      local found -- package.searchpath is not in 5.1
      for t in package.cpath:gmatch('[^;]+') do
        local f = io.open((t:gsub('?', 'pipedrive/core')), 'rb')
        if f then f:close(); found = t; break end
      end
      assert(found and found:find('$tree', 1, true), 'pipedrive.core is not the tree\'s')
      io.write(pipedrive._VERSION)" 2>&1)
    [ "$out" = "$rock_version" ] || { echo "$lua: require 'pipedrive' from the tree: $out"; exit 1; }
    ver=$(cd / && "$tree/bin/pipedrive" --version 2>&1) ||
      { echo "$lua: the installed pipedrive command failed: $ver"; exit 1; }

    lr config rocks_provided.lua-cjson 2.1.0-1 >"$tree/config.log" 2>&1 ||
      { echo "$lua: luarocks config rocks_provided failed:"; cat "$tree/config.log"; exit 1; }
    if ! lr install --tree="$tree" "./$sandbox" >"$tree/sandbox-install.log" 2>&1; then
      echo "$lua: luarocks install ./$sandbox failed:"; tail -n 20 "$tree/sandbox-install.log"; exit 1
    fi
    if warned "$tree/sandbox-install.log"; then echo "$lua: luarocks install ./$sandbox warned"; exit 1; fi
    if [ -e "$tree/lib/luarocks/rocks-$version/lua-cjson" ] || [ -n "$(find "$tree" -name 'cjson*')" ]; then
      echo "$lua: lua-cjson was installed into the tree"; exit 1
    fi
    help=$(cd / && "$tree/bin/pipedrive-sandbox" --help 2>&1) ||
      { echo "$lua: pipedrive-sandbox --help failed: $help"; exit 1; }

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
    out=$(cd / && "$lua" -e "
      local pipedrive = require 'pipedrive'
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
      *"From the rock"*) ;;
      *) echo "$lua: the installed pipedrive command failed: $cli"; exit 1 ;;
    esac
    (cd / && "$tree/bin/pipedrive" nginx-snippet) >"$tree/snippet.conf" 2>&1 &&
      cmp -s "$tree/snippet.conf" "$checkout/examples/openresty/pipedrive-location.conf" ||
      { echo "$lua: pipedrive nginx-snippet does not print examples/openresty/pipedrive-location.conf"; exit 1; }
    echo "$lua: both rocks installed without flags or warnings, no lua-cjson in the tree;" \
      "sandbox, module, pipedrive command and nginx-snippet work ($out)"
  )
  if [ $? -eq 0 ]; then passed=$((passed + 1)); else failed=$((failed + 1)); fi
  rm -rf "$tree"
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
