-- lua/pipedrive/sandbox/routes_gen.lua is generated from openapi/*.yaml by
-- tools/gen_sandbox_routes.lua (`make sandbox-routes`): this fails when the committed
-- file is not what the generator writes today, and checks what the sandbox relies on.
describe("sandbox routes_gen.lua", function()
  it("is what `make sandbox-routes` writes from the vendored files", function()
    local tmp = os.tmpname()
    local p = io.popen("lua5.4 tools/gen_sandbox_routes.lua " .. tmp .. " 2>&1")
    local log = p:read("*a")
    p:close()
    local read = require("support.util").read_file
    local fresh = read(tmp)
    os.remove(tmp)
    assert.matches("371 operations", log)
    assert(fresh == read("lua/pipedrive/sandbox/routes_gen.lua"),
      "lua/pipedrive/sandbox/routes_gen.lua is stale: run `make sandbox-routes` and commit it")
  end)

  it("holds every operation of both files with its operationId, once", function()
    local r = require "pipedrive.sandbox.routes_gen"
    local per, ids = { v1 = 0, v2 = 0 }, {}
    for _, op in ipairs(r.ops) do
      per[op.v] = per[op.v] + 1
      assert.is_string(op.id)
      local k = op.v .. " " .. op.id
      assert.is_nil(ids[k], k)
      ids[k] = true
      assert.is_true(op.r == nil or r.S[op.r] ~= nil)
    end
    assert.same({ v1 = 213, v2 = 158 }, per)
  end)
end)
