-- Pipedrive's official Node.js SDK against the sandbox (bench/node_sdk_check.js, also
-- `make node-sdk-check`): every call succeeds and every answer has the SDK's declared types.
-- Pending when node or the SDK (bench/node_modules, `npm ci` in bench/) is missing.
local sandbox = require "support.sandbox"

local function have_node()
  local ok = os.execute("node --version >/dev/null 2>&1")
  return ok == true or ok == 0
end

local function have_sdk()
  local f = io.open("bench/node_modules/pipedrive/package.json", "r")
  if f then f:close() end
  return f ~= nil
end

describe("the official Node SDK against the sandbox", function()
  if not have_node() then
    pending("node is not installed (the Node SDK check needs Node.js 18 or later)")
    return
  end
  if not have_sdk() then
    pending("the Node SDK is not installed: `make node-sdk-check` (npm ci in bench/) installs it")
    return
  end

  local sb
  setup(function() sb = sandbox.start() end)
  teardown(function() if sb then sb.stop() end end)

  local function run(extra)
    local p = assert(io.popen(("node bench/node_sdk_check.js %s %s %s 2>&1"):format(sb.url, sb.api_token, extra or "")))
    local out = p:read("*a")
    p:close()
    return out
  end

  it("runs every call with answers of the SDK's types", function()
    local out = run()
    local passed, failed, pend = out:match("\n(%d+) passed, (%d+) failed, (%d+) pending\n?$")
    assert.is_not_nil(passed, out)
    assert.are.equal("0", failed, out)
    assert.are.equal("0", pend, out)
    -- 45: the checker's self-test and 44 calls (6 APIs of v2, 3 of v1)
    assert.are.equal(45, tonumber(passed), out)
    assert.truthy(out:find("ok   checker self-test", 1, true), out)
    assert.truthy(out:find("ok   v1 NotesApi.updateNote", 1, true), out)
    assert.truthy(out:find("ok   v2 ProductsApi.searchProducts", 1, true), out)
    assert.is_nil(out:find("FAIL", 1, true), out)
  end)
end)
