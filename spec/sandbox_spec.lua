-- The sandbox app through app:handle with request tables (no network), and
-- once as a real process over loopback. Bodies are read with lua-cjson, which
-- is independent of both the sandbox's own writer and the client's C decoder.
local cjson = require "cjson"

local support_app = require "support.app"
local TOKEN = support_app.TOKEN
local new_app, integers = support_app.new_app, support_app.integers
local call, ok_call, ids, state = support_app.call, support_app.ok_call, support_app.ids, support_app.state

describe("sandbox app", function()
  local app
  before_each(function() app = new_app() end)

  describe("authentication", function()
    it("answers 401 with Pipedrive's body without a token or with a wrong one", function()
      for _, opts in ipairs({ { token = false }, { token = "nope" },
                              { token = false, headers = { authorization = "Bearer nope" } } }) do
        local status, doc = call(app, "GET", "/api/v2/deals", opts)
        assert.equal(401, status)
        assert.same({ success = false, error = "unauthorized access", errorCode = 401,
                      error_info = "Please check developers.pipedrive.com" }, doc)
      end
    end)

    it("accepts the token as x-api-token, as a Bearer token and as the legacy api_token parameter", function()
      ok_call(app, "GET", "/api/v2/deals")
      ok_call(app, "GET", "/api/v2/deals", { token = false, headers = { authorization = "Bearer " .. TOKEN } })
      ok_call(app, "GET", "/v1/deals", { token = false, query = { api_token = TOKEN } })
    end)

    it("uses the configured token", function()
      local other = new_app{ api_token = "s3cret" }
      assert.equal(401, (call(other, "GET", "/api/v1/users")))
      ok_call(other, "GET", "/api/v1/users", { token = "s3cret" })
    end)
  end)

  describe("routing", function()
    it("serves v1 under /v1 and /api/v1, v2 under /api/v2", function()
      local a = ok_call(app, "GET", "/v1/pipelines")
      local b = ok_call(app, "GET", "/api/v1/pipelines")
      assert.same(a, b)
      local v2 = ok_call(app, "GET", "/api/v2/pipelines")
      assert.equal("boolean", type(v2.data[1].is_deleted))
    end)

    it("takes hand-written request tables: query in the path, mixed-case header names", function()
      ok_call(app, "POST", "/api/v2/deals", { body = { title = "x" } })
      local status, _, text = app:handle{ method = "GET", path = "/api/v2/deals?limit=1",
                                          headers = { ["X-Api-Token"] = TOKEN } }
      assert.equal(200, status, text)
      assert.equal(1, #cjson.decode(text).data)
    end)

    it("404 for an unknown path, 405 for a wrong method", function()
      local status, doc = call(app, "GET", "/api/v2/nothing")
      assert.equal(404, status)
      assert.is_false(doc.success)
      assert.equal(404, (call(app, "GET", "/api/v2/leads"))) -- leads are listed in v1 only
      assert.equal(404, (call(app, "GET", "/api/v2/users")))
      local s405, d405, h = call(app, "PUT", "/api/v2/deals")
      assert.equal(405, s405)
      assert.is_false(d405.success)
      assert.equal("GET, POST", h.allow)
      assert.equal(405, (call(app, "PATCH", "/api/v1/users", { body = {} }))) -- POST /users is addUser
    end)
  end)

  describe("deals", function()
    it("v1 add answers 201 with nested owner, person and organization objects", function()
      local org = ok_call(app, "POST", "/api/v1/organizations", { body = { name = "Initech" } }, 201).data
      local person = ok_call(app, "POST", "/api/v1/persons", { body = { name = "Peter Gibbons", org_id = org.id } },
        201).data
      local doc, _, text = ok_call(app, "POST", "/api/v1/deals", { body = {
        title = "TPS reports", value = "5000", currency = "usd", user_id = 2, person_id = person.id, org_id = org.id,
      } }, 201)
      local d = doc.data
      assert.is_true(doc.success)
      assert.equal(1, d.id)
      assert.equal(5000, d.value)
      assert.truthy(text:find('"value":5000,', 1, true))
      assert.equal("USD", d.currency)
      assert.equal("$5,000", d.formatted_value)
      assert.equal("open", d.status)
      assert.equal("API", d.origin)
      assert.equal(2, d.user_id.id)
      assert.equal(2, d.user_id.value)
      assert.equal("Brook Tester", d.owner_name)
      assert.equal(1, d.creator_user_id.id)
      assert.equal(person.id, d.person_id.value)
      assert.equal("Peter Gibbons", d.person_name)
      assert.equal(org.id, d.org_id.value)
      assert.equal(1, d.org_id.people_count)
      assert.equal(1, d.pipeline_id)
      assert.equal(1, d.stage_id)
      assert.equal("3", d.visible_to)
      assert.equal("2026-11-28 12:00:00", d.add_time)
      assert.same({ "1", "2" }, (function()
        local k = {}
        for id in pairs(doc.related_objects.user) do k[#k + 1] = id end
        table.sort(k)
        return k
      end)())
      assert.equal("Peter Gibbons", doc.related_objects.person[tostring(person.id)].name)
      assert.equal("Initech", doc.related_objects.organization[tostring(org.id)].name)
    end)

    it("v1 get adds age, stage history and the dropbox address", function()
      ok_call(app, "POST", "/v1/deals", { body = { title = "Aged", stage_id = 3 } }, 201)
      app.advance(3 * 86400 + 3600 + 61)
      local doc = ok_call(app, "GET", "/v1/deals/1")
      assert.equal(3, doc.data.age.d)
      assert.equal(1, doc.data.age.h)
      assert.equal(1, doc.data.age.i)
      assert.equal(1, doc.data.age.s)
      assert.same({ 1, 2, 3, 4 }, doc.data.stay_in_pipeline_stages.order_of_stages)
      assert.equal("sandbox+deal1@pipedrivemail.com", doc.additional_data.dropbox_email)
      assert.equal(1, doc.related_objects.stage["3"].pipeline_id)
    end)

    it("v2 add answers 200 with flat ids, RFC 3339 times, [] and {} kept", function()
      local key = ok_call(app, "POST", "/v1/dealFields", { body = { name = "Tier", field_type = "varchar" } }).data.key
      local doc, _, text = ok_call(app, "POST", "/api/v2/deals", { body = {
        title = "Flat", value = 12000.5, owner_id = 3, status = "won", custom_fields = { [key] = "gold" },
      } })
      local d = doc.data
      assert.equal(3, d.owner_id)
      assert.equal(12000.5, d.value)
      assert.is_false(d.is_deleted)
      assert.equal("won", d.status)
      assert.equal("2026-11-28T12:00:00Z", d.add_time)
      assert.equal("2026-11-28T12:00:00Z", d.won_time)
      assert.equal("gold", d.custom_fields[key])
      assert.truthy(text:find('"label_ids":[]', 1, true))
      assert.equal(cjson.null, d.person_id) -- no person: null, as Pipedrive sends (the schema says not nullable)
      local plain = ok_call(app, "POST", "/api/v2/deals", { body = { title = "Plain" } })
      -- every custom field of the company, null when unset
      assert.truthy(select(4, call(app, "GET", "/api/v2/deals/" .. plain.data.id))
        :find('"custom_fields":{"' .. key .. '":null}', 1, true))
    end)

    it("v1 keeps custom-field keys flat and ignores unknown fields", function()
      local key = ok_call(app, "POST", "/v1/dealFields", { body = { name = "Tier", field_type = "varchar" } }).data.key
      local d = ok_call(app, "POST", "/v1/deals", { body = { title = "Custom", [key] = "x", bogus = 1 } }, 201).data
      assert.equal("x", d[key])
      assert.is_nil(d.bogus)
      local v2 = ok_call(app, "GET", "/api/v2/deals/" .. d.id).data
      assert.equal("x", v2.custom_fields[key])
    end)

    it("accepts form-encoded v1 POSTs", function()
      local doc = ok_call(app, "POST", "/v1/deals", { body = "title=Form+deal&value=12.5&label%5B%5D=3&label%5B%5D=4",
        content_type = "application/x-www-form-urlencoded" }, 201)
      assert.equal("Form deal", doc.data.title)
      assert.equal(12.5, doc.data.value)
      assert.equal("3,4", doc.data.label)
    end)

    it("places a deal in the pipeline of its stage, or in the first stage of a pipeline", function()
      local a = ok_call(app, "POST", "/api/v2/deals", { body = { title = "A", stage_id = 6, pipeline_id = 1 } }).data
      assert.equal(2, a.pipeline_id)
      local b = ok_call(app, "POST", "/api/v2/deals", { body = { title = "B", pipeline_id = 2 } }).data
      assert.equal(5, b.stage_id)
    end)

    it("soft-deletes: gone from get and default lists, listed with status=deleted", function()
      for i = 1, 3 do ok_call(app, "POST", "/api/v2/deals", { body = { title = "D" .. i } }) end
      local del = ok_call(app, "DELETE", "/api/v2/deals/2")
      assert.same({ success = true, data = { id = 2 } }, del)
      local status, doc = call(app, "GET", "/api/v2/deals/2")
      assert.equal(404, status)
      assert.same({ success = false, error = "Deal not found", error_info = "Please check developers.pipedrive.com",
                    data = cjson.null, additional_data = cjson.null }, doc)
      assert.equal(404, (call(app, "GET", "/v1/deals/2")))
      assert.equal(404, (call(app, "DELETE", "/v1/deals/2")))
      assert.same({ 1, 3 }, ids(ok_call(app, "GET", "/v1/deals").data))
      assert.same({ 1, 3 }, ids(ok_call(app, "GET", "/api/v2/deals").data))
      local deleted = ok_call(app, "GET", "/v1/deals", { query = { status = "deleted" } }).data
      assert.same({ 2 }, ids(deleted))
      assert.is_true(deleted[1].deleted)
      assert.equal("deleted", deleted[1].status)
      assert.same({ 2 }, ids(ok_call(app, "GET", "/api/v2/deals", { query = { status = "deleted" } }).data))
      local dump = cjson.decode(state(app))
      assert.equal(3, #dump.deals)
      assert.is_true(dump.deals[2].deleted)
    end)

    it("filters v1 lists by user_id, owned_by_you, stage_id, status and filter_id", function()
      local function add(t) return ok_call(app, "POST", "/api/v2/deals", { body = t }).data.id end
      local a = add{ title = "a", owner_id = 1, value = 20000 }
      local b = add{ title = "b", owner_id = 2, status = "won", stage_id = 2 }
      local c = add{ title = "c", owner_id = 2, status = "lost" }
      local function list(q) return ids(ok_call(app, "GET", "/v1/deals", { query = q }).data) end
      assert.same({ b, c }, list{ user_id = 2 })
      assert.same({ a }, list{ owned_by_you = 1 })
      assert.same({ b }, list{ stage_id = 2 })
      assert.same({ c }, list{ status = "lost" })
      assert.same({ a }, list{ filter_id = 1 })                -- All open deals
      assert.same({ b }, list{ filter_id = 2, user_id = 1 })   -- Won deals; filter_id wins over user_id
      assert.same({ a }, list{ filter_id = 3 })                -- Big deals (value >= 10000)
    end)

    it("filters v2 lists", function()
      local p = ok_call(app, "POST", "/api/v2/persons", { body = { name = "P" } }).data.id
      local o = ok_call(app, "POST", "/api/v2/organizations", { body = { name = "O" } }).data.id
      local function add(t) return ok_call(app, "POST", "/api/v2/deals", { body = t }).data.id end
      local a = add{ title = "a", person_id = p }
      local b = add{ title = "b", org_id = o, pipeline_id = 2, status = "won" }
      local c = add{ title = "c", owner_id = 3, status = "lost" }
      local function list(q) return ids(ok_call(app, "GET", "/api/v2/deals", { query = q }).data) end
      assert.same({ a }, list{ person_id = p })
      assert.same({ b }, list{ org_id = o })
      assert.same({ b }, list{ pipeline_id = 2 })
      assert.same({ c }, list{ owner_id = 3 })
      assert.same({ b, c }, list{ status = "won,lost" })
      assert.same({ a, c }, list{ ids = a .. "," .. c })
      assert.same({ c, b, a }, list{ sort_by = "id", sort_direction = "desc" })
      assert.same({ b }, list{ filter_id = 2, owner_id = 3 }) -- filter_id overrides the other filters
      app.advance(10)
      ok_call(app, "DELETE", "/api/v2/deals/" .. c)
      assert.same({}, list{ updated_since = "2026-11-28T12:00:05Z" })
      assert.same({ c }, list{ updated_since = "2026-11-28T12:00:05Z", status = "deleted" })
      assert.same({ a, b }, list{ updated_until = "2026-11-28T12:00:05Z" })
    end)

    it("sorts v1 lists by several first-level fields", function()
      for _, t in ipairs({ "beta", "Alpha", "beta", "gamma" }) do
        ok_call(app, "POST", "/api/v2/deals", { body = { title = t } })
      end
      local function list(sort) return ids(ok_call(app, "GET", "/v1/deals", { query = { sort = sort } }).data) end
      assert.same({ 2, 1, 3, 4 }, list("title ASC"))
      assert.same({ 2, 3, 1, 4 }, list("title ASC, id DESC"))
      assert.same({ 4, 3, 2, 1 }, list("id DESC"))
    end)
  end)

  describe("persons and organizations", function()
    it("v1 takes email/phone as a string or a list; v2 takes emails/phones", function()
      local a = ok_call(app, "POST", "/v1/persons", { body = { name = "Zoë Müller", email = "zoe@x.example",
        phone = { { value = "+1 555", label = "mobile" }, { value = "+1 556", primary = true } } } }, 201).data
      assert.same({ { value = "zoe@x.example", primary = true, label = "work" } }, a.email)
      assert.is_false(a.phone[1].primary)
      assert.is_true(a.phone[2].primary)
      assert.equal("mobile", a.phone[1].label)
      assert.equal("Zoë", a.first_name)
      assert.equal("Müller", a.last_name)
      assert.equal("z", a.first_char)
      local b = ok_call(app, "POST", "/api/v2/persons", { body = { name = "Bo",
        emails = { { value = "bo@x.example", primary = true, label = "home" } } } }).data
      assert.same({ { value = "bo@x.example", primary = true, label = "home" } }, b.emails)
      assert.same({}, b.phones)
      local v1 = ok_call(app, "GET", "/v1/persons/" .. b.id).data
      assert.same({ { value = "", primary = true } }, v1.phone) -- how v1 shows "no phone"
    end)

    it("organizations carry the address as a v1 string and a v2 object", function()
      local o = ok_call(app, "POST", "/v1/organizations", { body = { name = "Globex", address = "Main St 1" } }, 201).data
      assert.equal("Main St 1", o.address)
      local v2 = ok_call(app, "GET", "/api/v2/organizations/" .. o.id).data
      assert.same({ value = "Main St 1" }, v2.address)
      local p = ok_call(app, "POST", "/api/v2/organizations", { body = { name = "Hooli",
        address = { value = "1 Infinite Loop", locality = "Cupertino" }, website = "https://hooli.example" } }).data
      assert.equal("Cupertino", p.address.locality)
      assert.equal("Cupertino", ok_call(app, "GET", "/v1/organizations/" .. p.id).data.address_locality)
    end)

    it("lists by first_char, user_id and filter_id, and soft-deletes", function()
      for _, n in ipairs({ "ångström", "Apple", "banana", "Åland" }) do
        ok_call(app, "POST", "/api/v2/organizations", { body = { name = n, address = n == "Apple" and "x" or nil } })
      end
      local function list(q) return ids(ok_call(app, "GET", "/v1/organizations", { query = q }).data) end
      assert.same({ 2 }, list{ first_char = "a" })
      assert.same({ 1, 4 }, list{ first_char = "Å" })
      assert.same({ 2 }, list{ filter_id = 5 }) -- organizations with address
      ok_call(app, "DELETE", "/v1/organizations/2")
      assert.same({ 1, 3, 4 }, list{})
      assert.equal(404, (call(app, "GET", "/api/v2/organizations/2")))
      ok_call(app, "POST", "/api/v2/persons", { body = { name = "Mailer", emails = { { value = "m@x" } } } })
      ok_call(app, "POST", "/api/v2/persons", { body = { name = "Silent" } })
      assert.same({ 1 }, ids(ok_call(app, "GET", "/v1/persons", { query = { filter_id = 6 } }).data))
      assert.same({ 1 }, ids(ok_call(app, "GET", "/api/v2/persons", { query = { filter_id = 6 } }).data))
    end)
  end)

  describe("leads", function()
    it("add, get, list, delete (for real) with UUID ids", function()
      local p = ok_call(app, "POST", "/api/v2/persons", { body = { name = "Lead Person" } }).data.id
      local doc = ok_call(app, "POST", "/v1/leads", { body = { title = "Lead Ångström", person_id = p,
        value = { amount = 1200, currency = "EUR" }, label_ids = { "5f1e7a2c-3b4d-4c8e-9a10-1b2c3d4e5f60" },
        archived_status = "all" } }, 201)
      local l = doc.data
      assert.matches("^%x%x%x%x%x%x%x%x%-%x%x%x%x%-4%x%x%x%-[89ab]%x%x%x%-%x%x%x%x%x%x%x%x%x%x%x%x$", l.id)
      assert.equal(1200, l.value.amount)
      assert.equal("API", l.source_name)
      assert.equal("2026-11-28T12:00:00.000Z", l.add_time)
      assert.equal(cjson.null, l.organization_id)
      assert.equal("3", l.visible_to)
      assert.same({ l.id }, ids(ok_call(app, "GET", "/api/v1/leads", { query = { archived_status = "all" } }).data))
      assert.same({ l.id }, ids(ok_call(app, "GET", "/v1/leads", { query = { person_id = p } }).data))
      -- an empty v1 list is data: null, as Pipedrive sends it
      assert.equal(cjson.null, ok_call(app, "GET", "/v1/leads", { query = { person_id = p + 1 } }).data)
      assert.equal(cjson.null, ok_call(app, "GET", "/v1/leads/archived").data)
      assert.equal(l.id, ok_call(app, "GET", "/v1/leads/" .. l.id).data.id)
      assert.same({ success = true, data = { id = l.id } }, ok_call(app, "DELETE", "/v1/leads/" .. l.id))
      local status, err = call(app, "GET", "/v1/leads/" .. l.id)
      assert.equal(404, status)
      assert.equal("requested lead not found", err.error)
      assert.equal("Object was not found.", err.error_info)
      assert.same({}, cjson.decode(state(app)).leads)
    end)

    it("refuses a lead without person or organization, and unknown labels", function()
      local status, doc = call(app, "POST", "/v1/leads", { body = { title = "Orphan" } })
      assert.equal(400, status)
      assert.matches("person_id", doc.error)
      assert.matches("organization_id", doc.error)
      local o = ok_call(app, "POST", "/api/v2/organizations", { body = { name = "O" } }).data.id
      status, doc = call(app, "POST", "/v1/leads", { body = { title = "L", organization_id = o,
        label_ids = { "00000000-0000-4000-8000-000000000000" } } })
      assert.equal(400, status)
      assert.matches("label_ids", doc.error)
    end)
  end)

  describe("paging", function()
    before_each(function()
      ok_call(app, "POST", "/_sandbox/bulk", { token = false, body = { object = "deal", count = 23,
        title_prefix = "Page" } }, 201)
    end)

    it("v1 pages by offset with next_start only while more items exist", function()
      local seen, start, pages = {}, 0, 0
      repeat
        local doc = ok_call(app, "GET", "/v1/deals", { query = { start = start, limit = 10 } })
        local pg = doc.additional_data.pagination
        assert.equal(start, pg.start)
        assert.equal(10, pg.limit)
        for _, d in ipairs(doc.data) do seen[#seen + 1] = d.id end
        pages = pages + 1
        if pg.more_items_in_collection then
          assert.equal(start + 10, pg.next_start)
          start = pg.next_start
        else
          assert.is_nil(pg.next_start)
        end
      until not pg.more_items_in_collection
      assert.equal(3, pages)
      assert.equal(23, #seen)
      assert.equal(23, seen[23])
      local doc = ok_call(app, "GET", "/v1/deals", { query = { limit = 100000 } })
      assert.equal(500, doc.additional_data.pagination.limit) -- v1 clamps
    end)

    it("v2 pages by cursor; the last page has no next cursor", function()
      local seen, cursor, pages = {}, nil, 0
      repeat
        local doc = ok_call(app, "GET", "/api/v2/deals", { query = { limit = 10, cursor = cursor } })
        for _, d in ipairs(doc.data) do seen[#seen + 1] = d.id end
        cursor = doc.additional_data.next_cursor
        pages = pages + 1
      until cursor == cjson.null -- the end of a v2 list is next_cursor: null
      assert.equal(3, pages)
      assert.same(ids(ok_call(app, "GET", "/api/v2/deals").data), seen)
      local desc = {}
      cursor = nil
      repeat
        local doc = ok_call(app, "GET", "/api/v2/deals", { query = { limit = 7, cursor = cursor,
          sort_by = "update_time", sort_direction = "desc" } })
        for _, d in ipairs(doc.data) do desc[#desc + 1] = d.id end
        cursor = doc.additional_data.next_cursor
      until cursor == cjson.null
      assert.equal(23, #desc)
      assert.equal(23, desc[1])
    end)

    it("a cursor stays valid when records are added behind it", function()
      local first = ok_call(app, "GET", "/api/v2/deals", { query = { limit = 20 } })
      ok_call(app, "POST", "/api/v2/deals", { body = { title = "late" } })
      local rest = ok_call(app, "GET", "/api/v2/deals", { query = { limit = 20,
        cursor = first.additional_data.next_cursor } })
      assert.same({ 21, 22, 23, 24 }, ids(rest.data))
    end)

    it("with omit_nulls, properties without a value that the schema does not allow null are left out", function()
      local relaxed = new_app{ omit_nulls = true }
      assert.is_nil(ok_call(relaxed, "GET", "/api/v2/deals").additional_data.next_cursor)
      assert.same({}, ok_call(relaxed, "GET", "/v1/deals").data)
      ok_call(relaxed, "POST", "/api/v2/deals", { body = { title = "x" } })
      assert.is_nil(ok_call(relaxed, "GET", "/api/v2/deals/1").data.person_id)
    end)

    it("by default (real nulls) the end of a v2 list is next_cursor: null and empty v1 lists are data: null", function()
      local real = new_app()
      local doc = ok_call(real, "GET", "/api/v2/deals")
      assert.equal(cjson.null, doc.additional_data.next_cursor)
      assert.equal(cjson.null, ok_call(real, "GET", "/v1/deals").data)
      ok_call(real, "POST", "/api/v2/deals", { body = { title = "x" } })
      assert.equal(cjson.null, ok_call(real, "GET", "/api/v2/deals/1").data.person_id)
    end)

    it("v2 refuses limit over 500 and a cursor it did not give out", function()
      local status, doc = call(app, "GET", "/api/v2/deals", { query = { limit = 501 } })
      assert.equal(400, status)
      assert.matches("limit", doc.error)
      status, doc = call(app, "GET", "/api/v2/deals", { query = { cursor = "not-a-cursor" } })
      assert.equal(400, status)
      assert.matches("cursor", doc.error)
    end)

    it("pages stages in v1 and v2", function()
      local doc = ok_call(app, "GET", "/v1/stages", { query = { pipeline_id = 1, limit = 3 } })
      assert.same({ 1, 2, 3 }, ids(doc.data))
      assert.equal(3, doc.additional_data.pagination.next_start)
      local v2 = ok_call(app, "GET", "/api/v2/stages", { query = { limit = 5 } })
      assert.equal(5, #v2.data)
      local rest = ok_call(app, "GET", "/api/v2/stages", { query = { limit = 5, cursor = v2.additional_data.next_cursor } })
      assert.same({ 6, 7 }, ids(rest.data))
      local by_order = ok_call(app, "GET", "/api/v2/stages", { query = { pipeline_id = 2, sort_by = "order_nr",
        sort_direction = "desc" } })
      assert.same({ 7, 6, 5 }, ids(by_order.data))
    end)
  end)

  describe("search", function()
    before_each(function()
      local o = ok_call(app, "POST", "/api/v2/organizations", { body = { name = "Acme Corp",
        address = { value = "Renewal Road 5" } } }).data.id
      local p = ok_call(app, "POST", "/v1/persons", { body = { name = "Zoë Renner", email = "zoe@acme.example",
        phone = "+49 30 123", org_id = o } }, 201).data.id
      ok_call(app, "POST", "/api/v2/deals", { body = { title = "Acme renewal", person_id = p, org_id = o } })
      ok_call(app, "POST", "/api/v2/deals", { body = { title = "renewal", status = "won" } })
      ok_call(app, "POST", "/api/v2/deals", { body = { title = "Big Renewal plan" } })
      ok_call(app, "POST", "/api/v2/deals", { body = { title = "Other" } })
    end)

    it("matches case-insensitively and scores exact and prefix matches higher", function()
      local doc = ok_call(app, "GET", "/api/v1/deals/search", { query = { term = "RENEWAL" } })
      local items = doc.data.items
      assert.same({ 2, 1, 3 }, (function()
        local out = {}
        for i, it in ipairs(items) do out[i] = it.item.id end
        return out
      end)())
      assert.is_true(items[1].result_score > items[2].result_score)
      assert.equal("deal", items[1].item.type)
      assert.equal("Zoë Renner", items[2].item.person.name)
      assert.equal(cjson.null, items[1].item.person)
      assert.equal("Qualified", items[1].item.stage.name)
    end)

    it("exact_match compares whole fields; filters by status, person and organization", function()
      local function hits(api, q)
        local doc = ok_call(app, "GET", "/" .. api .. "/deals/search", { query = q })
        local out = {}
        for i, it in ipairs(doc.data.items) do out[i] = it.item.id end
        return out
      end
      assert.same({ 1 }, hits("v1", { term = "acme renewal", exact_match = true }))
      assert.same({}, hits("v1", { term = "acme", exact_match = true }))
      assert.same({ 2 }, hits("api/v2", { term = "renewal", status = "won" }))
      assert.same({ 1 }, hits("api/v2", { term = "renewal", person_id = 1 }))
      assert.same({ 1 }, hits("api/v2", { term = "renewal", organization_id = 1 }))
      assert.same({}, hits("api/v2", { term = "R", exact_match = true }))
    end)

    it("searches persons by name, email and phone, organizations by name and address", function()
      local function hits(path, q)
        local out = {}
        for i, it in ipairs(ok_call(app, "GET", path, { query = q }).data.items) do out[i] = it.item.id end
        return out
      end
      assert.same({ 1 }, hits("/api/v2/persons/search", { term = "ZOË" }))
      assert.same({ 1 }, hits("/v1/persons/search", { term = "zoe@acme", fields = "email" }))
      assert.same({}, hits("/v1/persons/search", { term = "zoë", fields = "email" }))
      assert.same({ 1 }, hits("/v1/persons/search", { term = "30 123" }))
      assert.same({ 1 }, hits("/api/v2/organizations/search", { term = "renewal road" }))
      assert.same({}, hits("/api/v2/organizations/search", { term = "renewal road", fields = "name" }))
      local item = ok_call(app, "GET", "/v1/persons/search", { query = { term = "zoë" } }).data.items[1].item
      assert.same({ "zoe@acme.example" }, item.emails)
      assert.same({ "+49 30 123" }, item.phones)
      assert.equal("Acme Corp", item.organization.name)
    end)

    it("searches leads in v1 and v2", function()
      ok_call(app, "POST", "/v1/leads", { body = { title = "Renewal lead", person_id = 1 } }, 201)
      local v1 = ok_call(app, "GET", "/v1/leads/search", { query = { term = "renewal" } }).data.items
      local v2 = ok_call(app, "GET", "/api/v2/leads/search", { query = { term = "renewal" } }).data.items
      assert.equal(1, #v1)
      assert.equal("lead", v1[1].item.type)
      assert.same(v1, v2)
    end)

    it("pages results: v1 by offset, v2 by cursor", function()
      local doc = ok_call(app, "GET", "/v1/deals/search", { query = { term = "renewal", limit = 2 } })
      assert.equal(2, #doc.data.items)
      assert.equal(2, doc.additional_data.pagination.next_start)
      local v2 = ok_call(app, "GET", "/api/v2/deals/search", { query = { term = "renewal", limit = 2 } })
      local rest = ok_call(app, "GET", "/api/v2/deals/search", { query = { term = "renewal", limit = 2,
        cursor = v2.additional_data.next_cursor } })
      assert.equal(1, #rest.data.items)
      assert.equal(3, rest.data.items[1].item.id)
      assert.equal(cjson.null, rest.additional_data.next_cursor)
    end)

    it("refuses short and missing terms and unknown fields", function()
      for _, q in ipairs({ {}, { term = "a" }, { term = " " }, { term = "ab", fields = "colour" },
                            { term = "ab", status = "deleted" } }) do
        local status, doc = call(app, "GET", "/api/v2/deals/search", { query = q })
        assert.equal(400, status)
        assert.is_false(doc.success)
      end
      ok_call(app, "GET", "/api/v2/deals/search", { query = { term = "ab" } })
    end)
  end)

  describe("lookups", function()
    it("users, filters, pipelines, stages, lead labels, currencies", function()
      local users = ok_call(app, "GET", "/v1/users").data
      assert.equal(3, #users)
      assert.is_true(users[1].is_you)
      assert.is_false(users[2].is_you)
      assert.equal("Alex Sandbox", users[1].name)
      local filters = ok_call(app, "GET", "/v1/filters", { query = { type = "deals" } }).data
      assert.same({ "All open deals", "Won deals", "Big deals" }, (function()
        local out = {}
        for i, f in ipairs(filters) do out[i] = f.name end
        return out
      end)())
      assert.equal(7, #ok_call(app, "GET", "/v1/filters").data)
      assert.equal(400, (call(app, "GET", "/v1/filters", { query = { type = "dealz" } })))
      local pipelines = ok_call(app, "GET", "/v1/pipelines").data
      assert.same({ "Sales", "Partnerships" }, { pipelines[1].name, pipelines[2].name })
      assert.is_true(pipelines[1].selected)
      local stages = ok_call(app, "GET", "/api/v1/stages", { query = { pipeline_id = 2 } }).data
      assert.same({ 5, 6, 7 }, ids(stages))
      assert.equal("Partnerships", stages[1].pipeline_name)
      local labels = ok_call(app, "GET", "/v1/leadLabels").data
      assert.same({ "Hot", "Cold" }, { labels[1].name, labels[2].name })
      local cur = ok_call(app, "GET", "/v1/currencies").data
      assert.same({ "EUR", "USD", "GBP" }, { cur[1].code, cur[2].code, cur[3].code })
      assert.equal("€", cur[1].symbol)
      assert.same({ "USD" }, { ok_call(app, "GET", "/v1/currencies", { query = { term = "doll" } }).data[1].code })
    end)
  end)

  describe("bad input", function()
    local function bad(method, path, opts, field)
      local before = state(app)
      local status, doc = call(app, method, path, opts)
      assert.equal(400, status, path .. " " .. cjson.encode(doc))
      assert.is_false(doc.success)
      assert.equal("Please check developers.pipedrive.com", doc.error_info)
      if field then assert.matches(field, doc.error, 1, true) end
      assert.equal(before, state(app))
    end

    it("answers 400 naming the field and changes nothing", function()
      ok_call(app, "POST", "/api/v2/deals", { body = { title = "keep" } })
      ok_call(app, "POST", "/api/v2/persons", { body = { name = "keep" } })
      bad("POST", "/api/v2/deals", { body = { value = 5 } }, "title")
      bad("POST", "/api/v2/deals", { body = { title = "" } }, "title")
      bad("POST", "/api/v2/deals", { body = { title = 5 } }, "title")
      bad("POST", "/v1/deals", { body = { title = "x", status = "closed" } }, "status")
      bad("POST", "/api/v2/deals", { body = { title = "x", value = "5" } }, "value")
      bad("POST", "/api/v2/deals", { body = { title = "x", person_id = 99 } }, "person_id")
      bad("POST", "/api/v2/deals", { body = { title = "x", owner_id = 99 } }, "owner_id")
      bad("POST", "/api/v2/deals", { body = { title = "x", stage_id = 99 } }, "stage_id")
      bad("POST", "/api/v2/deals", { body = { title = "x", visible_to = 4 } }, "visible_to")
      bad("POST", "/api/v2/deals", { body = { title = "x", expected_close_date = "2026-02-30" } },
        "expected_close_date")
      bad("POST", "/api/v2/deals", { body = "{\"title\": " }, "JSON")
      bad("POST", "/api/v2/deals", { body = "[1]" }, "object")
      bad("POST", "/api/v2/deals", { body = "title=x", content_type = "application/x-www-form-urlencoded" },
        "content-type")
      bad("POST", "/v1/deals", { body = "title: x", content_type = "text/plain" }, "content-type")
      bad("POST", "/v1/leads", { body = "title=x&person_id=1", content_type = "application/x-www-form-urlencoded" },
        "content-type")
      bad("POST", "/api/v2/persons", { body = { name = "x", emails = { 5 } } }, "emails")
      bad("POST", "/v1/persons", { body = { email = "a@b" } }, "name")
      bad("POST", "/v1/leads", { body = { title = "x", person_id = 1, value = { amount = "5" } } }, "value")
      bad("GET", "/api/v2/deals/abc", {}, "id")
      bad("GET", "/api/v2/deals/0", {}, "id")
      bad("DELETE", "/v1/leads/123", {}, "id")
      bad("GET", "/v1/deals", { query = { status = "closed" } }, "status")
      bad("GET", "/api/v2/deals", { query = { status = "open,closed" } }, "status")
      bad("GET", "/v1/deals", { query = { user_id = "x" } }, "user_id")
      bad("GET", "/v1/deals", { query = { start = -1 } }, "start")
      bad("GET", "/v1/deals", { query = { sort = "colour ASC" } }, "sort")
      bad("GET", "/v1/deals", { query = { sort = "title UP" } }, "sort")
      bad("GET", "/v1/deals", { query = { filter_id = 987654 } }, "filter_id")
      bad("GET", "/v1/deals", { query = { filter_id = 6 } }, "filter_id") -- a people filter
      bad("GET", "/api/v2/deals", { query = { sort_by = "title" } }, "sort_by")
      bad("GET", "/api/v2/deals", { query = { updated_since = "yesterday" } }, "updated_since")
      bad("GET", "/api/v2/deals", { query = { include_fields = "colour" } }, "include_fields")
      bad("GET", "/v1/persons", { query = { first_char = "ab" } }, "first_char")
      bad("GET", "/v1/leads", { query = { sort = "value ASC" } }, "sort")
    end)
  end)

  describe("JSON text", function()
    it("keeps UTF-8 bytes intact both ways", function()
      local name = "Zoë Ångström 東京 🚀 \"quoted\" back\\slash"
      local text = select(4, call(app, "POST", "/api/v2/persons", { body = { name = name } }))
      assert.truthy(text:find("Zoë Ångström 東京 🚀", 1, true))
      assert.equal(name, cjson.decode(text).data.name)
      assert.equal(name, ok_call(app, "GET", "/v1/persons/1").data.name)
      local dump = cjson.decode(state(app))
      assert.equal(name, dump.persons[1].name)
    end)

    it("writes integers as integers", function()
      local text = select(4, call(app, "POST", "/api/v2/deals", { body = { title = "Ints", value = 5000.0,
        probability = 50 } }))
      assert.truthy(text:find('"id":1,', 1, true))
      assert.truthy(text:find('"value":5000,', 1, true))
      assert.truthy(text:find('"probability":50,', 1, true))
      assert.is_nil(text:find("%d%.0[,}]"))
      local list = select(4, call(app, "GET", "/v1/deals"))
      assert.is_nil(list:find("%d%.0[,}]"))
    end)

    it("escapes control characters and gives the same text for the same data", function()
      local text = select(4, call(app, "POST", "/api/v2/deals", { body = { title = "tab\there\nnew\1" } }))
      assert.truthy(text:find([["title":"tab\there\nnew\u0001"]], 1, true))
      local a = select(4, call(app, "GET", "/api/v2/deals/1"))
      local b = select(4, call(app, "GET", "/api/v2/deals/1"))
      assert.equal(a, b)
    end)
  end)

  describe("rate-limit headers", function()
    it("count down within the window, search separately; POSTs report the daily budget", function()
      local _, _, h1 = call(app, "GET", "/api/v2/deals")
      local _, _, h2 = call(app, "GET", "/api/v2/deals")
      assert.equal("80", h1["x-ratelimit-limit"])
      assert.equal(tonumber(h1["x-ratelimit-remaining"]) - 1, tonumber(h2["x-ratelimit-remaining"]))
      assert.is_true(tonumber(h2["x-ratelimit-reset"]) >= 0 and tonumber(h2["x-ratelimit-reset"]) <= 2)
      assert.is_nil(h1["x-daily-requests-left"])
      local _, _, hs = call(app, "GET", "/api/v2/deals/search", { query = { term = "xy" } })
      assert.equal("10", hs["x-ratelimit-limit"])
      assert.equal("9", hs["x-ratelimit-remaining"])
      local _, _, hp = call(app, "POST", "/api/v2/deals", { body = { title = "x" } })
      assert.equal("9999", hp["x-daily-requests-left"])
      local _, _, h401 = call(app, "GET", "/api/v2/deals", { token = "bad" })
      assert.equal("80", h401["x-ratelimit-limit"])
      app.advance(2)
      local _, _, h3 = call(app, "GET", "/api/v2/deals")
      assert.equal("79", h3["x-ratelimit-remaining"])
    end)
  end)

  describe("admin endpoints", function()
    local function admin(method, path, body, remote)
      local status, h, text = app:handle{ method = method, path = path, query_string = "", headers = {},
                                          body = body and cjson.encode(body) or "", remote_addr = remote }
      return status, integers(cjson.decode(text)), h, text
    end

    it("health, and loopback clients only", function()
      local status, body = admin("GET", "/_sandbox/health", nil, "127.0.0.1")
      assert.same({ 200, { ok = true } }, { status, body })
      assert.equal(200, (admin("GET", "/_sandbox/health", nil, "::1")))
      assert.equal(403, (admin("GET", "/_sandbox/health", nil, "192.0.2.7")))
      assert.equal(404, (admin("GET", "/_sandbox/nothing")))
      assert.equal(405, (admin("GET", "/_sandbox/reset")))
    end)

    it("state shows every record, deleted ones too, and the counters; reset goes back to the seed", function()
      ok_call(app, "POST", "/api/v2/deals", { body = { title = "a" } })
      ok_call(app, "DELETE", "/api/v2/deals/1")
      local _, s = admin("GET", "/_sandbox/state")
      assert.equal(1, s.counters.deal)
      assert.is_true(s.deals[1].deleted)
      assert.equal(3, #s.users)
      assert.equal(7, #s.stages)
      assert.equal(200, (admin("POST", "/_sandbox/reset")))
      _, s = admin("GET", "/_sandbox/state")
      assert.equal(0, s.counters.deal)
      assert.same({}, s.deals)
      assert.equal(1, ok_call(app, "POST", "/api/v2/deals", { body = { title = "again" } }).data.id)
    end)

    it("logs API requests with the token redacted; the log clears", function()
      local _, _, _, empty = admin("GET", "/_sandbox/requests")
      assert.equal("[]", empty)
      call(app, "GET", "/api/v2/deals", { query = { limit = 3 } })
      call(app, "POST", "/v1/deals", { token = false, headers = { authorization = "Bearer " .. TOKEN },
                                       body = { title = "Logged" } })
      local _, log = admin("GET", "/_sandbox/requests")
      assert.equal(2, #log)
      assert.same({ method = "GET", path = "/api/v2/deals", query_string = "limit=3",
                    headers = { ["x-api-token"] = "***" }, body = "" }, log[1])
      assert.equal("***", log[2].headers.authorization)
      assert.equal("application/json", log[2].headers["content-type"])
      assert.equal('{"title":"Logged"}', log[2].body)
      admin("DELETE", "/_sandbox/requests")
      _, log = admin("GET", "/_sandbox/requests")
      assert.same({}, log)
    end)

    it("bulk creates records of each kind", function()
      local status, r = admin("POST", "/_sandbox/bulk", { object = "deal", count = 5, title_prefix = "Bulk",
                                                          fields = { status = "won", owner_id = 2 } })
      assert.equal(201, status)
      assert.same({ 1, 5 }, { r.first_id, r.last_id })
      local deals = ok_call(app, "GET", "/api/v2/deals").data
      assert.equal("Bulk 5", deals[5].title)
      assert.equal("won", deals[5].status)
      assert.equal(2, deals[5].owner_id)
      assert.equal(201, (admin("POST", "/_sandbox/bulk", { object = "person", count = 2 })))
      assert.equal(201, (admin("POST", "/_sandbox/bulk", { object = "lead", count = 3, title_prefix = "L" })))
      assert.equal(3, #ok_call(app, "GET", "/v1/leads").data)
      assert.equal(400, (admin("POST", "/_sandbox/bulk", { object = "deal", count = 0 })))
      assert.equal(400, (admin("POST", "/_sandbox/bulk", { object = "widget", count = 1 })))
      assert.equal(400, (admin("POST", "/_sandbox/bulk", { object = "deal", count = 1, fields = { status = "x" } })))
    end)

    it("fixtures are part of the seeded state", function()
      local fx = new_app{ fixtures = 7 }
      assert.equal(7, #ok_call(fx, "GET", "/api/v2/deals").data)
      fx:reset()
      assert.equal(7, #ok_call(fx, "GET", "/api/v2/deals").data)
    end)
  end)
end)

describe("sandbox command line", function()
  local server = require "pipedrive.sandbox.server"

  it("parses options and refuses bad ones", function()
    local o = assert(server.parse_args{ "--port", "0", "--api-token=T", "--fixtures", "3", "--quiet" })
    assert.same({ host = "127.0.0.1", port = 0, api_token = "T", fixtures = 3, quiet = true }, o)
    assert.is_nil(server.parse_args{ "--port", "x" })
    assert.is_nil(server.parse_args{ "--nope" })
    assert.is_nil(server.parse_args{ "--port" })
    assert.is_nil(server.parse_args{ "--exit-after", "-1" })
    o = assert(server.parse_args{ "--rate-limit", "5", "--search-rate-limit=2" })
    assert.equal(5, o.rate_limit)
    assert.equal(2, o.search_rate_limit)
    assert.is_nil(server.parse_args{ "--rate-limit", "0" })
    assert.is_nil(server.parse_args{ "--search-rate-limit", "x" })
  end)

  it("--rate-limit enforces the burst limit from the start", function()
    local sb = require("support.sandbox").start{ args = { "--rate-limit", "1" } }
    local s1 = sb.raw("GET", "/api/v2/deals", { ["x-api-token"] = sb.api_token })
    local s2 = sb.raw("GET", "/api/v2/deals", { ["x-api-token"] = sb.api_token })
    local _, figures = sb.admin("GET", "/_sandbox/rate_limit")
    sb.stop()
    assert.same({ 200, 429 }, { s1, s2 })
    assert.is_true(figures.enforce)
    assert.equal(1, figures.limit)
  end)

  it("refuses a non-loopback host without --allow-remote", function()
    assert.equal(2, server.main{ "--host", "0.0.0.0", "--quiet" })
  end)
end)

describe("sandbox process", function()
  local spawn = require "pipedrive.sandbox.spawn"
  local sb

  setup(function() sb = spawn.start{ api_token = "proc-token", args = { "--fixtures", "3" } } end)
  teardown(function() if sb then sb.stop() end end)

  local function curl(args)
    local f = assert(io.popen("curl -s " .. args))
    local out = f:read("*a")
    f:close()
    return out
  end

  it("answers over loopback with the token, and stops", function()
    assert.matches("^http://127%.0%.0%.1:%d+$", sb.url)
    local doc = cjson.decode(curl(("-H 'x-api-token: proc-token' '%s/api/v2/deals?limit=2'"):format(sb.url)))
    assert.is_true(doc.success)
    assert.same({ 1, 2 }, ids(doc.data))
    assert.is_string(doc.additional_data.next_cursor)
    local denied = cjson.decode(curl(("'%s/v1/deals'"):format(sb.url)))
    assert.equal("unauthorized access", denied.error)
    assert.same({ ok = true }, cjson.decode(curl(sb.url .. "/_sandbox/health")))
    local made = cjson.decode(curl(("-H 'x-api-token: proc-token' -H 'content-type: application/json'"
      .. " --data-binary '{\"title\":\"Über deal\"}' '%s/v1/deals'"):format(sb.url)))
    assert.equal("Über deal", made.data.title)
    assert.equal(4, made.data.id)
    assert.is_true(spawn.pid_alive(sb.pid))
    sb.stop()
    assert.is_false(spawn.pid_alive(sb.pid))
    sb.stop() -- idempotent
  end)
end)
