-- The generated operations table (lua/pipedrive/operations/gen, index, ids and
-- the rockspec's module list) is what tools/gen_operations.lua makes from the
-- vendored OpenAPI files today: regenerated in memory and compared.
package.path = "tools/?.lua;" .. package.path
local gen = require "gen_operations"
local operations = require "pipedrive.operations"

local read = require("support.util").read_file

-- The first line where two texts differ, for the failure message.
local function first_difference(a, b)
  local la, lb = {}, {}
  for l in (a .. "\n"):gmatch("([^\n]*)\n") do la[#la + 1] = l end
  for l in (b .. "\n"):gmatch("([^\n]*)\n") do lb[#lb + 1] = l end
  for i = 1, math.max(#la, #lb) do
    if la[i] ~= lb[i] then
      return ("line %d: committed %q, generated %q"):format(i, la[i] or "<end>", lb[i] or "<end>")
    end
  end
end

describe("the generated operations", function()
  local files, notes = gen.generate(".")
  files[gen.ROCKSPEC] = gen.rockspec(read(gen.ROCKSPEC), files)

  it("are up to date with openapi/*.yaml (run `make operations` when this fails)", function()
    for path, text in pairs(files) do
      local committed = read(path)
      assert(committed, path .. " is missing: run make operations")
      if committed ~= text then
        error(path .. " is stale (make operations): " .. first_difference(committed, text), 0)
      end
    end
    -- Nothing generated earlier and no longer made is left behind.
    local p = io.popen("ls lua/pipedrive/operations/gen/*.lua")
    for f in p:lines() do assert(files[f], f .. " is not generated any more: run make operations") end
    p:close()
  end)

  it("cover every operation of the v2 and today's v1 file but OAuth's", function()
    assert.equal(158, notes.count.v2)
    assert.equal(210, notes.count.v1)
    assert.equal(3, #notes.left_out)
    for _, l in ipairs(notes.left_out) do assert.matches(" /oauth/", l, 1, true) end
    local ids = require "pipedrive.operations.ids"
    local n = 0
    for id, ref in pairs(ids) do
      n = n + 1
      local rname, fname, op = operations.find(id)
      assert.equal(ref, rname .. "." .. fname)
      assert.is_table(op, id)
      assert.is_true(op.operation_id.v1 == id or op.operation_id.v2 == id or "v1_" .. op.operation_id.v1 == id, id)
    end
    -- An operationId in both files names one function (v2 serves it, v1 is its api = "v1" route).
    local both = 0
    for _, rname in ipairs(operations.ALL_RESOURCES) do
      for _, op in pairs(operations[rname]) do
        if type(op) == "table" and op.operation_id and op.operation_id.v1 and op.operation_id.v1 == op.operation_id.v2 then
          both = both + 1
        end
      end
    end
    assert.equal(158 + 210 - both, n)
  end)

  it("name resources and functions by the documented rule", function()
    local cases = {
      { "getDealFollowers", "deals", "list_followers" }, { "addDealFollower", "deals", "add_follower" },
      { "deleteDealFollower", "deals", "delete_follower" }, { "getDealProducts", "deals", "list_products" },
      { "getNotes", "notes", "list" }, { "getNote", "notes", "get" }, { "addNote", "notes", "add" },
      { "updateNote", "notes", "update" }, { "deleteNote", "notes", "delete" },
      { "getDealFields", "deal_fields", "list" }, { "getActivityTypes", "activity_types", "list" },
      { "getLeadLabels", "lead_labels", "list" }, { "getCurrencies", "currencies", "list" },
      { "searchProducts", "products", "search" }, { "mergeDeals", "deals", "merge" },
      { "findUsersByName", "users", "find" }, { "getArchivedDeals", "deals", "list_archived" },
      { "getDealsProducts", "deals", "list_products_of_deals" },
    }
    for _, c in ipairs(cases) do
      local rname, fname = operations.find(c[1])
      assert.same({ c[2], c[3] }, { rname, fname })
    end
  end)

  it("keep the original operations from the overlay, with their operationId", function()
    local overlay = require "pipedrive.operations.overlay"
    for _, rname in ipairs(operations.RESOURCES) do
      for fname, op in pairs(overlay[rname]) do
        if type(op) == "table" and op.kind then assert.equal(op, operations[rname][fname]) end
      end
    end
    -- v1 deals are in the retired file only: the overlay has their route.
    assert.same({ v2 = "getDeals" }, operations.deals.list.operation_id)
    assert.equal("/api/v1/deals", operations.deals.list.v1.path)
    assert.equal("/api/v1/leads/archived", operations.leads.list_archived.v1.path)
  end)

  it("check arguments from the schema: nested bodies, arrays, enums, files, per-version requirements", function()
    local params = require "pipedrive.params"
    local core = require "pipedrive.core"
    local bulk = operations.deals.add_products_bulk
    local out, msg = params.translate(bulk, "v2", { id = 5, data = { { product_id = "x" } } })
    assert.is_nil(out)
    assert.equal("field 'data[1].product_id' must be an integer, got 'x'", msg)
    out, msg = params.translate(bulk, "v2", { id = 5, data = { { product_id = 1, item_price = 2, quantity = 1,
      billing_frequency = "yearly" } } })
    assert.is_nil(out)
    assert.matches("field 'data[1].billing_frequency' must be one of one-time, annually", msg, 1, true)
    out = assert(params.translate(bulk, "v2", { id = 5, data = { { product_id = 1, item_price = 2, quantity = 1 } } }))
    assert.equal(1, out.data[1].product_id)
    assert.equal("[{\"item_price\":2,\"product_id\":1,\"quantity\":1}]", core.json_encode(out.data))
    -- an array body is the argument `body`, sent as the whole body
    local opt = operations.deal_fields.add_option
    out = assert(params.translate(opt, "v2", { field_code = "abc", body = { { label = "x" } } }))
    assert.equal("x", out[1].label)
    -- a path parameter only one version has is required in that version only
    local get = operations.deal_fields.get
    assert(params.translate(get, "v2", { field_code = "abc" }))
    out, msg = params.translate(get, "v1", { field_code = "abc" })
    assert.is_nil(out)
    assert.matches("field 'field_code' is not available in API v1", msg, 1, true)
    assert.equal("field 'id' is required", select(2, params.translate(get, "v1", {})))
    -- files: { path = ... } or { data = ..., filename = ... }
    local add_file = operations.files.add
    assert.is_true(add_file.multipart)
    assert(params.translate(add_file, "v1", { file = { data = "hello", filename = "a.txt" } }))
    out, msg = params.translate(add_file, "v1", { file = "a.txt" })
    assert.is_nil(out)
    assert.matches("field 'file' must be { path = file } or { data = string, filename = string } (optional type)", msg, 1, true)
    -- a query parameter of a call that sends a body goes to route.query
    local fadd = operations.filters.add
    local r
    out, r = params.translate(fadd, "v1", { name = "F", type = "deals", conditions = { glue = "and" },
                                            include_field_code = true })
    assert(out, r)
    assert.same({ include_field_code = true }, r.query)
    assert.is_nil(out.include_field_code)
    assert.equal("F", out.name)
  end)

  it("reach every operation by operationId through pd.call, and raise on an unknown one", function()
    local pipedrive = require "pipedrive"
    local seen = {}
    local pd = pipedrive.new{ api_token = "t", base_url = "http://127.0.0.1:9", transport = function(req)
      seen[#seen + 1] = req.method .. " " .. req.url
      return { status = 200, headers = { ["content-type"] = "application/json" }, body = '{"success":true,"data":[]}' }
    end }
    assert(pd.call("getDealFollowers", { id = 5 }))
    assert(pd.deals.list_followers(5))
    assert(pd:call("getNotes", { limit = 2 }))
    assert.same({ "GET http://127.0.0.1:9/api/v2/deals/5/followers", "GET http://127.0.0.1:9/api/v2/deals/5/followers",
                  "GET http://127.0.0.1:9/api/v1/notes?limit=2" }, seen)
    local ok, err = pcall(pd.call, "noSuchOperation", {})
    assert.is_false(ok)
    assert.matches("pipedrive.call: unknown operationId 'noSuchOperation'", err, 1, true)
    ok, err = pcall(pd.notes.add, {})
    assert.is_false(ok)
    assert.matches("pipedrive.notes.add: field 'content' is required", err, 1, true)
    pd.close()
  end)
end)
