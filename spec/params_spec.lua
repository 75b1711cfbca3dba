-- Unit specs of the argument checks and v1/v2 translation (pipedrive.params over
-- pipedrive.operations): no network, so every rule can be pinned exactly.
local compat = require "pipedrive.compat"
local operations = require "pipedrive.operations"
local params = require "pipedrive.params"
local core = require "pipedrive.core"

local function tr(resource, fn, version, args)
  return params.translate(operations[resource][fn], version, args)
end

describe("pipedrive.params.translate", function()
  it("normalises ids: integral floats and digit strings become integers", function()
    local out, route = tr("deals", "get", "v2", { id = 5.0 })
    assert.same({}, out)
    assert.equal("integer", compat.math_type(route.path_params.id))
    local _, r2 = tr("deals", "get", "v2", { id = "42" })
    assert.equal(42, r2.path_params.id)
    local bad, msg = tr("deals", "get", "v2", { id = 4.5 })
    assert.is_nil(bad)
    assert.matches("field 'id' must be a positive integer id, got number", msg, 1, true)
    assert.is_nil((tr("deals", "get", "v2", { id = 0 })))
    assert.is_nil((tr("deals", "get", "v2", { id = -3 })))
  end)

  it("maps the seed's deal list parameters to v2", function()
    local out = assert(tr("deals", "list", "v2",
      { user_id = 7, filter_id = 2, stage_id = 3, status = "open", sort = "update_time asc" }))
    assert.same({ owner_id = 7, filter_id = 2, stage_id = 3, status = "open",
                  sort_by = "update_time", sort_direction = "asc" }, out)
    out = assert(tr("deals", "list", "v2", { status = "all_not_deleted" }))
    assert.same({}, out)
  end)

  it("keeps the seed's names in v1 and maps v2 names back", function()
    assert.same({ user_id = 7, owned_by_you = 1 }, (tr("deals", "list", "v1", { owner_id = 7, owned_by_you = true })))
    assert.same({ sort = "id DESC" }, (tr("deals", "list", "v1", { sort_by = "id", sort_direction = "desc" })))
  end)

  it("refuses two names for one parameter with different values", function()
    local out, msg = tr("deals", "list", "v2", { user_id = 1, owner_id = 2 })
    assert.is_nil(out)
    assert.matches("both set 'owner_id'", msg, 1, true)
  end)

  it("refuses what a version cannot express, with the alternative", function()
    local out, msg = tr("persons", "list", "v2", { first_char = "z" })
    assert.is_nil(out)
    assert.matches("not available in API v2", msg, 1, true)
    assert.matches("search{ term = ... }", msg, 1, true)
    out, msg = tr("deals", "list", "v2", { sort = "title ASC, id DESC" })
    assert.is_nil(out)
    assert.matches("sorts by one of add_time, id, update_time", msg, 1, true)
    out, msg = tr("deals", "list", "v2", { owned_by_you = 1 })
    assert.is_nil(out)
    assert.matches("owner_id", msg, 1, true)
    out, msg = tr("deals", "list", "v2", { start = 100 })
    assert.is_nil(out)
    assert.matches("cursor", msg, 1, true)
    out, msg = tr("deals", "list", "v1", { cursor = "abc" })
    assert.is_nil(out)
    assert.matches("next_start", msg, 1, true)
  end)

  it("joins list parameters and checks each element against the enum", function()
    assert.same({ term = "ab", fields = "title,notes" },
      (tr("deals", "search", "v2", { term = "ab", fields = { "title", "notes" } })))
    local out, msg = tr("deals", "search", "v2", { term = "ab", fields = { "title", "email" } })
    assert.is_nil(out)
    assert.matches("must be one of custom_fields, notes, title, got 'email'", msg, 1, true)
  end)

  it("joins query arrays of integer ids (deal_ids) and refuses fractions", function()
    assert.same({ deal_ids = "3,17" }, (tr("deals", "list_products_of_deals", "v2", { deal_ids = { 3, 17 } })))
    local out, msg = tr("deals", "list_products_of_deals", "v2", { deal_ids = { 3, 1.5 } })
    assert.is_nil(out)
    assert.matches("field 'deal_ids' must be a string or an array of strings or integers", msg, 1, true)
  end)

  it("sends no body for a generated POST the file gives none, a body for the original component's", function()
    assert.is_false(params.sends_body(operations.deals.duplicate, "v1"))
    assert.is_false(params.sends_body(operations.products.duplicate, "v2"))
    assert.is_true(params.sends_body(operations.notes.add, "v1"))
    assert.is_true(params.sends_body(operations.deals.add, "v2"))
  end)

  it("counts the search term's characters, not bytes", function()
    assert.is_nil((tr("persons", "search", "v2", { term = "ë" })))
    assert.truthy((tr("persons", "search", "v2", { term = "ëa" })))
    assert.truthy((tr("persons", "search", "v2", { term = "ë", exact_match = true })))
  end)

  it("turns person contacts into arrays of {value, primary, label} under the version's name", function()
    local out = assert(tr("persons", "add", "v2", { name = "A", email = "a@x.example", phone = {} }))
    assert.same({ { value = "a@x.example", primary = true } }, out.emails)
    assert.equal(core.array_mt, getmetatable(out.phones))
    assert.equal('{"emails":[{"primary":true,"value":"a@x.example"}],"name":"A","phones":[]}',
      core.json_encode(out))
    out = assert(tr("persons", "add", "v1", { name = "A", emails = { { value = "b", label = "work" } } }))
    assert.same({ { value = "b", label = "work" } }, out.email)
  end)

  it("converts deal value and visible_to to each version's type", function()
    assert.same({ title = "t", value = "12.5", visible_to = "3" },
      (tr("deals", "add", "v1", { title = "t", value = 12.5, visible_to = 3 })))
    assert.same({ title = "t", value = 12, visible_to = 3 },
      (tr("deals", "add", "v2", { title = "t", value = "12", visible_to = "3" })))
    assert.is_nil((tr("deals", "add", "v2", { title = "t", visible_to = 4 })))
    assert.is_nil((tr("deals", "add", "v2", { title = "t", value = "12abc" })))
  end)

  it("routes leads' archived_status to Pipedrive's archived endpoint", function()
    local out, route = tr("leads", "list", "v1", { archived_status = "archived" })
    assert.same({}, out)
    assert.equal("/api/v1/leads/archived", route.path)
    local _, r2 = tr("leads", "list", "v1", { archived_status = "not_archived" })
    assert.is_nil(r2.path)
    local bad, msg = tr("leads", "list", "v1", { archived_status = "all" })
    assert.is_nil(bad)
    assert.matches("call list (or each)", msg, 1, true)
  end)

  it("accepts org_id as the lead's organization and requires a person or organization", function()
    local out = assert(tr("leads", "add", "v1", { title = "L", org_id = 3 }))
    assert.same({ title = "L", organization_id = 3 }, out)
    local none, msg = tr("leads", "add", "v1", { title = "L" })
    assert.is_nil(none)
    assert.matches("person_id or an organization_id", msg, 1, true)
    assert.is_nil((tr("leads", "add", "v1", { title = "L", person_id = 1, value = { amount = "x", currency = "EUR" } })))
  end)

  it("wraps an organization's address for v2 and flattens it for v1", function()
    assert.same({ value = "Main St 1" }, (tr("organizations", "add", "v2", { name = "O", address = "Main St 1" })).address)
    assert.equal("Main St 1", (tr("organizations", "add", "v1", { name = "O", address = { value = "Main St 1" } })).address)
  end)

  it("passes pipedrive.null through for optional fields only", function()
    assert.equal(core.null, (tr("deals", "add", "v2", { title = "t", expected_close_date = core.null })).expected_close_date)
    local out, msg = tr("deals", "add", "v2", { title = core.null })
    assert.is_nil(out)
    assert.matches("required", msg, 1, true)
  end)

  it("describes every operation with a path per version, a paging style and a cost", function()
    for _, rname in ipairs(operations.RESOURCES) do
      for fname, op in pairs(operations[rname]) do
        if type(op) == "table" and op.kind then
          assert.is_table(op.v1 or op.v2, rname .. "." .. fname)
          for _, v in ipairs({ "v1", "v2" }) do
            local route = op[v]
            if route then
              assert.matches("^/api/" .. v .. "/", route.path)
              assert.is_true(route.paging == "offset" or route.paging == "cursor" or route.paging == "none")
              assert.equal("integer", compat.math_type(route.cost))
            end
          end
        end
      end
    end
  end)
end)
