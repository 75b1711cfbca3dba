-- The sandbox's generic store (pipedrive.sandbox.generic): resources no hand-modelled code
-- serves, answered from the OpenAPI files (through the generated routes_gen.lua).
-- In process (app:handle); every answer is validated against the file's response schema
-- with spec/support/openapi.lua (real nulls accepted, undeclared properties refused).
local support_app = require "support.app"
local oa = require "support.openapi"

local new_app, call = support_app.new_app, support_app.call

local FILES = { v2 = "openapi-v2.yaml", v1 = "openapi-v1.yaml" }

-- the archived list is the same deal as GET /api/v2/deals, whose schema has these two
local ARCHIVED_ALLOW = {
  ["$.data[].archive_time"] = "documented for GET /api/v2/deals, left out of the archived list's schema",
  ["$.data[].creator_user_id"] = "documented for GET /api/v2/deals, left out of the archived list's schema",
}

-- status, decoded (validator's decoder: integers stay integers), after checking the
-- answer against the documented schema of `doc_path` (the template) in the version's file.
local function checked(app, method, path, opts, want)
  local version = path:match("^/api/v2/") and "v2" or "v1"
  local doc_path = (opts and opts.doc) or path:gsub("^/api/v2", ""):gsub("^/v1", ""):gsub("%?.*$", "")
  local status, _, _, text = call(app, method, path, opts)
  assert.equal(want or 200, status, text)
  local body = assert(oa.json_decode(text))
  local spec = oa.load(FILES[version])
  local schema = oa.response_schema(spec, doc_path, method:lower(), status)
  if status < 300 then
    assert(schema, ("no schema for %s %s %d"):format(method, doc_path, status))
    local ok, problems = oa.validate(schema, body, spec, { undeclared = "problem", real_nulls = true,
      allow = opts and opts.allow })
    assert(ok, method .. " " .. path .. ":\n  " .. table.concat(problems or {}, "\n  "))
  end
  return status, body
end

describe("sandbox generic store", function()
  local app
  before_each(function() app = new_app() end)

  it("creates, reads, updates, lists and deletes v1 notes", function()
    local _, made = checked(app, "POST", "/v1/notes", { body = { content = "first", deal_id = 1 } })
    local id = made.data.id
    assert.equal("first", made.data.content)
    assert.equal(1, made.data.deal_id)
    assert.equal(oa.null, made.data.person_id) -- a real null: no person
    local _, got = checked(app, "GET", "/v1/notes/" .. id, { doc = "/notes/{id}" })
    assert.equal("first", got.data.content)
    local _, upd = checked(app, "PUT", "/v1/notes/" .. id, { doc = "/notes/{id}", body = { content = "second" } })
    assert.equal("second", upd.data.content)
    assert.equal(1, upd.data.deal_id)
    for i = 1, 4 do checked(app, "POST", "/v1/notes", { body = { content = "n" .. i } }) end
    local _, p1 = checked(app, "GET", "/v1/notes", { query = { limit = 2 } })
    assert.equal(2, #p1.data)
    assert.same({ start = 0, limit = 2, more_items_in_collection = true, next_start = 2 },
      p1.additional_data.pagination)
    local _, p3 = checked(app, "GET", "/v1/notes", { query = { limit = 2, start = 4 } })
    assert.equal(1, #p3.data)
    assert.is_false(p3.additional_data.pagination.more_items_in_collection)
    local _, del = checked(app, "DELETE", "/v1/notes/" .. id, { doc = "/notes/{id}" })
    assert.is_true(del.data)
    local status, body = call(app, "GET", "/v1/notes/" .. id)
    assert.equal(404, status)
    assert.is_false(body.success)
    assert.is_string(body.error)
  end)

  it("answers a missing required field with Pipedrive's 400", function()
    local status, body = call(app, "POST", "/v1/notes", { body = { deal_id = 1 } })
    assert.equal(400, status)
    assert.same({ success = false, error = "Validation failed: content: is required",
                  error_info = "Please check developers.pipedrive.com", data = body.data,
                  additional_data = body.additional_data }, body)
    status = call(app, "POST", "/api/v2/products", { body = { code = "x" } })
    assert.equal(400, status)
  end)

  it("pages v2 products by cursor until next_cursor is null", function()
    for i = 1, 5 do
      local _, made = checked(app, "POST", "/api/v2/products", { body = { name = "P" .. i, code = "C" .. i } }, 201)
      assert.equal("P" .. i, made.data.name)
    end
    local names, cursor, pages = {}, nil, 0
    repeat
      local _, page = checked(app, "GET", "/api/v2/products", { query = { limit = 2, cursor = cursor } })
      for _, p in ipairs(page.data) do names[#names + 1] = p.name end
      cursor = page.additional_data.next_cursor
      pages = pages + 1
    until cursor == oa.null
    assert.equal(3, pages)
    assert.same({ "P1", "P2", "P3", "P4", "P5" }, names)
    local _, upd = checked(app, "PATCH", "/api/v2/products/2", { doc = "/products/{id}", body = { name = "Two" } })
    assert.equal("Two", upd.data.name)
    assert.equal("C2", upd.data.code)
    checked(app, "DELETE", "/api/v2/products/2", { doc = "/products/{id}" })
    assert.equal(404, (call(app, "GET", "/api/v2/products/2")))
    assert.equal(400, (call(app, "GET", "/api/v2/products", { query = { cursor = "bogus" } })))
  end)

  it("serves activity types, currencies, lead labels, deal fields and project templates", function()
    local _, t = checked(app, "POST", "/v1/activityTypes", { body = { name = "Demo", icon_key = "call" } })
    checked(app, "GET", "/v1/activityTypes")
    local _, types = checked(app, "GET", "/v1/activityTypes")
    assert.equal("Demo", types.data[#types.data].name)
    checked(app, "PUT", "/v1/activityTypes/" .. t.data.id, { doc = "/activityTypes/{id}", body = { name = "Demo 2" } })
    checked(app, "DELETE", "/v1/activityTypes/" .. t.data.id, { doc = "/activityTypes/{id}" })

    local _, cur = checked(app, "GET", "/v1/currencies")
    assert.is_true(#cur.data > 0) -- the hand-modelled list

    -- lead labels: the hand-modelled list, then the generic store once written to
    local _, before = checked(app, "GET", "/v1/leadLabels")
    local _, label = checked(app, "POST", "/v1/leadLabels", { body = { name = "Warm", color = "yellow" } })
    assert.matches("^%x+%-%x+%-%x+%-%x+%-%x+$", label.data.id)
    local _, after = checked(app, "GET", "/v1/leadLabels")
    assert.equal(#before.data + 1, #after.data)
    checked(app, "PATCH", "/v1/leadLabels/" .. label.data.id, { doc = "/leadLabels/{id}", body = { color = "red" } })
    checked(app, "DELETE", "/v1/leadLabels/" .. label.data.id, { doc = "/leadLabels/{id}" })
    local _, final = checked(app, "GET", "/v1/leadLabels")
    assert.equal(#before.data, #final.data)

    local _, f = checked(app, "POST", "/api/v2/dealFields", { body = { field_name = "Budget", field_type = "double" } })
    assert.equal("Budget", f.data.field_name)
    checked(app, "GET", "/api/v2/dealFields")

    checked(app, "GET", "/api/v2/projectTemplates")
    -- the API has no way to create a template: any id names one (Pipedrive has them)
    local _, tpl = checked(app, "GET", "/api/v2/projectTemplates/77", { doc = "/projectTemplates/{id}" })
    assert.equal(77, tpl.data.id)
    -- where the API creates records, an id never made is a 404
    assert.equal(404, (call(app, "GET", "/api/v2/products/77")))
    assert.equal(404, (call(app, "PUT", "/v1/activityTypes/77", { body = { name = "x" } })))
  end)

  it("routes sub-collections before /{id}", function()
    support_app.ok_call(app, "POST", "/api/v2/deals", { body = { title = "Followed" } })
    local _, f = checked(app, "POST", "/api/v2/deals/1/followers", { doc = "/deals/{id}/followers", body = { user_id = 1 } },
      201)
    assert.equal(1, f.data.user_id)
    local _, list = checked(app, "GET", "/api/v2/deals/1/followers", { doc = "/deals/{id}/followers" })
    assert.equal(1, #list.data)
    checked(app, "DELETE", "/api/v2/deals/1/followers/1", { doc = "/deals/{id}/followers/{follower_id}" })
    local _, me = checked(app, "GET", "/v1/users/me")
    assert.equal(app.store:me().id, me.data.id)
    -- archived deals leave the default v2 list
    support_app.ok_call(app, "PATCH", "/api/v2/deals/1", { body = { is_archived = true } })
    local _, live = checked(app, "GET", "/api/v2/deals")
    assert.equal(0, #live.data)
    local _, arch = checked(app, "GET", "/api/v2/deals/archived", { allow = ARCHIVED_ALLOW })
    assert.equal(1, #arch.data)
    assert.is_true(arch.data[1].is_archived)
  end)

  it("loads the generated routes on the first generic request only", function()
    local lua = os.getenv("LUA") or "lua5.4"
    local script = [[
      package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
      local app = require("pipedrive.sandbox").new{}
      local h = { ["x-api-token"] = "sandbox-token" }
      app:handle{ method = "GET", path = "/api/v2/deals", headers = h, body = "" }
      app:handle{ method = "GET", path = "/v1/users", headers = h, body = "" }
      io.write(package.loaded["pipedrive.sandbox.routes_gen"] and "loaded" or "not", " ")
      app:handle{ method = "GET", path = "/v1/notes", headers = h, body = "" }
      io.write(package.loaded["pipedrive.sandbox.routes_gen"] and "loaded" or "not")
    ]]
    local cpath = package.cpath:match("^[^;]*")
    local p = io.popen(("%s -e %q 2>&1"):format(lua, ("package.cpath = %q .. ';' .. package.cpath; "):format(cpath)
      .. script:gsub("\n", " ")))
    local out = p:read("*a")
    p:close()
    assert.equal("not loaded", out)
  end)
end)
