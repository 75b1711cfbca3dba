-- The generated operations table (lua/pipedrive/operations/gen, index, ids and
-- the rockspec's module list) is what tools/gen_operations.lua makes from the
-- vendored OpenAPI files today: regenerated in memory and compared.
package.path = "tools/?.lua;" .. package.path
local gen = require "gen_operations"
local operations = require "pipedrive.operations"

local function read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

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
end)
