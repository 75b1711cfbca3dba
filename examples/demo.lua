-- `make demo`: starts a local sandbox Pipedrive on a free loopback port, runs
-- examples/quickstart.lua against it with API v2 and then API v1, stops it.
local spawn = require "pipedrive.sandbox.spawn"

local sandbox = spawn.start{ api_token = "demo-token" }
print(("sandbox: %s"):format(sandbox.url))

local lua = arg and arg[-1] or "lua5.4"
local ok = true
for _, mode in ipairs({ "", "--v1" }) do
  print(("\n== quickstart %s==\n"):format(mode == "" and "(API v2) " or "(API v1) "))
  local cmd = ("PIPEDRIVE_API_TOKEN=%s PIPEDRIVE_BASE_URL=%s LUA_PATH=%q LUA_CPATH=%q %s examples/quickstart.lua %s")
    :format(sandbox.api_token, sandbox.url, package.path, package.cpath, lua, mode)
  ok = os.execute(cmd) and ok
end
sandbox.stop()
print(ok and "\ndemo complete" or "\ndemo FAILED")
os.exit(ok and 0 or 1)
