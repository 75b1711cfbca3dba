-- `make demo`: starts a local sandbox Pipedrive on a free loopback port, runs
-- examples/quickstart.lua against it with API v2 and then API v1, stops it.
-- With an argument (`make more-demo`: more_resources) it runs examples/<that>.lua once instead.
local spawn = require "pipedrive.sandbox.spawn"

local sandbox = spawn.start{ api_token = "demo-token" }
print(("sandbox: %s"):format(sandbox.url))

local lua = arg and arg[-1] or "lua5.4"
local ok = true
local script = arg and arg[1] and arg[1]:match("^[%w_]+$") or "quickstart"
for _, mode in ipairs(script == "quickstart" and { "", "--v1" } or { "" }) do
  print(("\n== %s %s==\n"):format(script, mode == "" and "(API v2) " or "(API v1) "))
  local cmd = ("PIPEDRIVE_API_TOKEN=%s PIPEDRIVE_BASE_URL=%s LUA_PATH=%q LUA_CPATH=%q %s examples/%s.lua %s")
    :format(sandbox.api_token, sandbox.url, package.path, package.cpath, lua, script, mode)
  ok = os.execute(cmd) and ok
end
sandbox.stop()
print(ok and "\ndemo complete" or "\ndemo FAILED")
os.exit(ok and 0 or 1)
