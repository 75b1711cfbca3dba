-- The module-level default client: pipedrive.configure{...} or the environment.
local sandbox = require "support.sandbox"
local LUA = os.getenv("LUA") or require("pipedrive.sandbox.spawn").interpreter()

describe("default client", function()
  local sb

  setup(function() sb = sandbox.start() end)
  teardown(function() sb.stop() end)

  it("pipedrive.deals.* works after configure", function()
    local pipedrive = require "pipedrive"
    local c = pipedrive.configure{ api_token = sb.api_token, base_url = sb.url }
    local d = assert(pipedrive.deals.add{ title = "Module level" })
    local got = assert(pipedrive.deals.get(d.id))
    assert.equal("Module level", got.title)
    local hits = assert(pipedrive.deals.search{ term = "module" })
    assert.equal(d.id, hits[1].item.id)
    assert.equal(c.deals.get, pipedrive.deals.get)
  end)

  it("a fresh process takes PIPEDRIVE_API_TOKEN and PIPEDRIVE_BASE_URL", function()
    local code = [[local p = require "pipedrive"; local u = assert(p.users.list()); io.write(#u)]]
    local cmd = ("PIPEDRIVE_API_TOKEN=%s PIPEDRIVE_BASE_URL=%s LUA_PATH=%q LUA_CPATH=%q %s -e %q")
      :format(sb.api_token, sb.url, package.path, package.cpath, LUA, code)
    local f = io.popen(cmd)
    local out = f:read("*a")
    f:close()
    assert.is_true(tonumber(out) >= 2)
  end)

  it("without configuration or environment it raises a clear error", function()
    local code = [[local p = require "pipedrive"; local ok, e = pcall(function() return p.deals.list end); io.write(tostring(e))]]
    local f = io.popen(("env -u PIPEDRIVE_API_TOKEN LUA_PATH=%q LUA_CPATH=%q %s -e %q")
      :format(package.path, package.cpath, LUA, code))
    local out = f:read("*a")
    f:close()
    assert.matches("no default client", out, 1, true)
  end)

  it("two clients keep their own credentials", function()
    local pipedrive = require "pipedrive"
    local good = pipedrive.new{ api_token = sb.api_token, base_url = sb.url }
    local bad = pipedrive.new{ api_token = "other", base_url = sb.url }
    assert(good.users.list())
    local _, err = bad.users.list()
    assert.equal("unauthorized", err.kind)
    assert(good.users.list())
    good.close()
    bad.close()
  end)
end)
