-- What the client puts on the wire, read back from the sandbox's request log:
-- token placement, URL encoding, v1/v2 parameter translation, JSON bodies.
local compat = require "pipedrive.compat"
local sandbox = require "support.sandbox"
local pipedrive = require "pipedrive"
local core = require "pipedrive.core"

local function last(sb)
  local log = sb.requests()
  return log[#log]
end

local raises = require("support.util").raises

describe("requests on the wire", function()
  local sb, v2, v1

  setup(function()
    sb = sandbox.start()
    v2 = sb.client()
    v1 = sb.client{ api = "v1" }
  end)

  teardown(function()
    v2.close()
    v1.close()
    sb.stop()
  end)

  before_each(function() sb.clear_requests() end)

  it("sends the API token in a header, never in the URL", function()
    assert(v2.deals.list{ limit = 3 })
    local r = last(sb)
    assert.equal("GET", r.method)
    assert.equal("/api/v2/deals", r.path)
    assert.is_nil(r.query_string:find("api_token", 1, true))
    assert.is_nil(r.query_string:find(sb.api_token, 1, true))
    assert.equal("***", r.headers["x-api-token"])
    assert.equal("limit=3", r.query_string)
  end)

  it("percent-encodes search terms, UTF-8 included", function()
    assert(v2.deals.search{ term = "Zoë & Co/?", fields = { "title", "notes" } })
    local r = last(sb)
    assert.equal("/api/v2/deals/search", r.path)
    assert.equal("fields=title%2Cnotes&term=Zo%C3%AB%20%26%20Co%2F%3F", r.query_string)
  end)

  it("translates seed names to v2: user_id -> owner_id, sort -> sort_by/sort_direction", function()
    assert(v2.deals.list{ user_id = 2, sort = "add_time DESC", status = "all_not_deleted" })
    local r = last(sb)
    assert.equal("owner_id=2&sort_by=add_time&sort_direction=desc", r.query_string)
  end)

  it("translates v2 names to v1: owner_id -> user_id, sort_by -> sort", function()
    assert(v1.deals.list{ owner_id = 2, sort_by = "add_time", sort_direction = "desc", status = "open" })
    local r = last(sb)
    assert.equal("/api/v1/deals", r.path)
    assert.equal("sort=add_time%20DESC&status=open&user_id=2", r.query_string)
  end)

  it("refuses what v2 cannot express, naming the alternative, and sends nothing", function()
    local msg = raises(v2.organizations.list, { first_char = "a" })
    assert.matches("pipedrive.organizations.list: field 'first_char' is not available in API v2", msg, 1, true)
    assert.matches("search", msg, 1, true)
    msg = raises(v2.deals.list, { sort = "title ASC" })
    assert.matches("sort 'title ASC' cannot be expressed in API v2", msg, 1, true)
    msg = raises(v1.deals.list, { pipeline_id = 1 })
    assert.matches("not available in API v1", msg, 1, true)
    assert.same({}, sb.requests())
  end)

  it("sends JSON bodies with arrays that stay arrays, even empty ones", function()
    local p = assert(v2.persons.add{ name = "Arrays", email = {}, label_ids = {} })
    local r = last(sb)
    assert.equal("POST", r.method)
    assert.equal("application/json", r.headers["content-type"])
    local body = core.json_decode(r.body)
    assert.equal("Arrays", body.name)
    assert.equal(core.array_mt, getmetatable(body.emails))
    assert.equal(0, #body.emails)
    assert.truthy(r.body:find('"emails":[]', 1, true))
    assert.truthy(r.body:find('"label_ids":[]', 1, true))
    assert.equal("integer", compat.math_type(p.id))
  end)

  it("sends v1 person contacts under the seed's names", function()
    assert(v1.persons.add{ name = "Seed", email = "a@b.example", phone = { "123", "456" } })
    local body = core.json_decode(last(sb).body)
    assert.equal("a@b.example", body.email[1].value)
    assert.is_true(body.email[1].primary)
    assert.equal("456", body.phone[2].value)
  end)

  it("sends pipedrive.null as JSON null and leaves nil out", function()
    assert(v2.deals.add{ title = "Nulls", expected_close_date = pipedrive.null, currency = nil })
    local r = last(sb)
    assert.truthy(r.body:find('"expected_close_date":null', 1, true))
    assert.is_nil(r.body:find("currency", 1, true))
  end)

  it("moves custom-field keys under custom_fields in v2 and keeps them flat in v1", function()
    local field = assert(v1.request("POST", "/v1/dealFields", { body = { name = "Custom", field_type = "varchar" } }))
    local key = field.key
    assert(v2.deals.add{ title = "Custom", [key] = "x" })
    assert.equal("x", core.json_decode(last(sb).body).custom_fields[key])
    assert(v1.deals.add{ title = "Custom", [key] = "y" })
    assert.equal("y", core.json_decode(last(sb).body)[key])
  end)

  it("keeps the webhook password out of the sandbox's request log", function()
    local hook = assert(v2.webhooks.add{ subscription_url = "http://127.0.0.1:9/hook", event_action = "create",
                                         event_object = "deal", name = "log check", http_auth_user = "u",
                                         http_auth_password = "pw-Secret-42" })
    local r = last(sb)
    assert.is_nil(r.body:find("pw-Secret-42", 1, true))
    assert.truthy(r.body:find('"http_auth_password":"***"', 1, true))
    assert(v2.webhooks.delete(hook.id))
  end)
end)
