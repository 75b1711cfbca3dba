--- Callgrind counts only, quickly: row 1 (instructions per `deals.get` for the
-- client and for the raw libcurl + lua-cjson loop, side by side in one run)
-- and row 4 (client instructions per record while paging), the same way
-- bench/run.lua measures them, without the timed rows.
--   make bench-ir            (or: lua5.4 bench/ir.lua [--no-paging] [--profile FILE])
-- --profile FILE keeps the callgrind output of the client's 1300-call run in
-- FILE for callgrind_annotate (where the instructions go).
local core = require "pipedrive.core"
local spawn = require "pipedrive.sandbox.spawn"

local PAGING, PROFILE = true, nil
do
  local i = 1
  while arg[i] do
    if arg[i] == "--no-paging" then PAGING = false
    elseif arg[i] == "--profile" then i = i + 1; PROFILE = arg[i]
    else error("usage: lua5.4 bench/ir.lua [--no-paging] [--profile FILE]") end
    i = i + 1
  end
end

local RAW = "build/bench/raw_curl"

local function sh(cmd)
  local p = assert(io.popen(cmd .. " 2>&1"))
  local out = p:read("a")
  local ok = p:close()
  return out, ok
end

-- Instructions of one run of `cmd_fmt` with N = n, under callgrind.
local function ir(cmd_fmt, n, out_file)
  local out = sh(("valgrind --tool=callgrind --callgrind-out-file=%s " .. cmd_fmt):format(out_file or "/dev/null", n))
  local refs = out:match("I%s+refs:%s+([%d,]+)")
  if not refs then error("bench: callgrind failed: " .. out) end
  return tonumber((refs:gsub(",", "")))
end

local function per_call(cmd_fmt, short, long, profile)
  return (ir(cmd_fmt, long, profile) - ir(cmd_fmt, short)) / (long - short)
end

local function free_port()
  local srv = require("pipedrive.httpd").listen{ port = 0, handler = function() return 204, {}, "" end }
  local port = srv:port()
  srv:close()
  return port
end

local function thousands(v)
  local s = ("%d"):format(math.floor(v + 0.5))
  return (s:reverse():gsub("(%d%d%d)", "%1,"):reverse():gsub("^,", ""))
end

local prefix = sh("mktemp -d"):match("(%S+)")
local nginx_pid, sandbox
local function cleanup()
  if nginx_pid then os.execute("kill " .. nginx_pid .. " 2>/dev/null") end
  if sandbox then sandbox.stop() end
  os.execute("rm -rf '" .. prefix .. "'")
end

local ok, err = pcall(function()
  os.execute(("chmod 755 '%s' && mkdir -p '%s/www' '%s/tmp' && cp bench/deal.json '%s/www/' && chmod 644 '%s/www/deal.json'")
    :format(prefix, prefix, prefix, prefix, prefix))
  local port = free_port()
  local conf = assert(io.open("bench/nginx.conf.in")):read("a"):gsub("@PREFIX@", prefix):gsub("@PORT@", tostring(port))
  local cf = assert(io.open(prefix .. "/nginx.conf", "w"))
  cf:write(conf)
  cf:close()
  nginx_pid = tonumber((sh(("nginx -p '%s' -c '%s/nginx.conf' -e '%s/error.log' >/dev/null 2>&1 & echo $!")
    :format(prefix, prefix, prefix))):match("(%d+)%s*$"))
  local url = ("http://127.0.0.1:%d"):format(port)
  local h = core.http_new{ timeout = 1 }
  local deadline = core.now() + 10
  while not h:perform{ method = "GET", url = url .. "/api/v2/deals/1" } do
    if core.now() > deadline then error("bench: nginx does not answer") end
    core.sleep(0.05)
  end
  h:close()

  local raw = per_call(RAW .. " " .. url .. "/api/v2/deals/1 %d", 300, 1300)
  local lua = per_call("lua5.4 bench/client.lua get " .. url .. " %d", 300, 1300, PROFILE)
  print(("row 1: pipedrive %s Ir per deals.get, raw libcurl + lua-cjson %s Ir: %.3fx")
    :format(thousands(lua), thousands(raw), lua / raw))

  if PAGING then
    -- --omit-nulls: the page shape the earlier figures were measured on (real nulls, the
    -- sandbox's default since issue 14, add ~4,200 Ir of decoding per record)
    sandbox = spawn.start{ api_token = "bench-token", args = { "--fixtures", "0", "--quiet", "--omit-nulls" } }
    local hh = core.http_new{ timeout = 120 }
    local res = assert(hh:perform{ method = "POST", url = sandbox.url .. "/_sandbox/bulk",
      headers = { ["content-type"] = "application/json" },
      body = core.json_encode{ object = "deal", count = 12000, title_prefix = "Bulk" } })
    assert(res.status == 200 or res.status == 201, "bulk seed failed")
    hh:close()
    local page = per_call("lua5.4 bench/client.lua page " .. sandbox.url .. " %d plain", 2000, 12000)
    print(("row 4: %s client Ir per record while paging"):format(thousands(page)))
  end
end)
cleanup()
if not ok then
  io.stderr:write(tostring(err), "\n")
  os.exit(1)
end
