-- The sandbox's record updates, activities, webhooks API and webhook delivery.
-- App-level tests go through app:handle (no network; queued deliveries are
-- read from the queue); the end-to-end tests run a real sandbox process and a
-- receiver made with pipedrive.httpd in this process, and talk to the sandbox
-- with the curl command line (not the client under test).
local cjson = require "cjson"

local support_app = require "support.app"
local T0 = support_app.T0
local new_app, integers = support_app.new_app, support_app.integers
local call, ok_call, ids, state = support_app.call, support_app.ok_call, support_app.ids, support_app.state

local function admin(app, method, path)
  local status, _, text = app:handle{ method = method, path = path, headers = {}, body = "" }
  return status, integers(cjson.decode(text))
end

-- The queued deliveries, decoded: { {job = job, body = payload}, ... }.
local function queued(app)
  local out = {}
  for i, job in ipairs(app.hooks.delivery.queue) do
    out[i] = { job = job, body = integers(cjson.decode(job.body(job.attempt))) }
  end
  return out
end

local function webhook(app, fields, want)
  local body = { subscription_url = "http://127.0.0.1:9/hook", event_action = "*", event_object = "*",
                 name = "Spec webhook" }
  for k, v in pairs(fields or {}) do body[k] = v end
  return ok_call(app, "POST", "/v1/webhooks", { body = body }, want or 201)
end

describe("sandbox record updates", function()
  local app
  before_each(function() app = new_app() end)

  local function bad(method, path, body, field, opts)
    local before = state(app)
    local status, doc = call(app, method, path, { body = body, content_type = opts and opts.content_type })
    assert.equal(400, status, path .. " " .. cjson.encode(doc))
    assert.is_false(doc.success)
    if field then assert.matches(field, doc.error, 1, true) end
    assert.equal(before, state(app))
  end

  it("v2 PATCH changes the given fields of a deal and answers it in the v2 shape", function()
    local ck = ok_call(app, "POST", "/v1/dealFields", { body = { name = "C", field_type = "varchar" } }).data.key
    local dk = ok_call(app, "POST", "/v1/dealFields", { body = { name = "D", field_type = "double" } }).data.key
    local p = ok_call(app, "POST", "/api/v2/persons", { body = { name = "Pat" } }).data.id
    local d = ok_call(app, "POST", "/api/v2/deals", { body = { title = "Old", value = 10, person_id = p } }).data
    app.advance(60)
    local u = ok_call(app, "PATCH", "/api/v2/deals/" .. d.id, { body = {
      title = "New", value = 2500.5, status = "won", stage_id = 6, custom_fields = { [ck] = "x" },
    } }).data
    assert.equal("New", u.title)
    assert.equal(2500.5, u.value)
    assert.equal("won", u.status)
    assert.equal("2026-11-28T12:01:00Z", u.won_time)
    assert.equal("2026-11-28T12:01:00Z", u.close_time)
    assert.equal("2026-11-28T12:01:00Z", u.update_time)
    assert.equal("2026-11-28T12:00:00Z", u.add_time)
    assert.equal(6, u.stage_id)
    assert.equal(2, u.pipeline_id) -- the stage's pipeline
    assert.equal("2026-11-28T12:01:00Z", u.stage_change_time)
    assert.equal(p, u.person_id)   -- not given: unchanged
    assert.equal("x", u.custom_fields[ck])
    assert.same(u, ok_call(app, "GET", "/api/v2/deals/" .. d.id).data)
    -- null unsets; custom fields merge
    local v = ok_call(app, "PATCH", "/api/v2/deals/" .. d.id, { body = { person_id = cjson.null, status = "open",
      custom_fields = { [dk] = 7 } } }).data
    assert.equal(cjson.null, v.person_id)
    assert.equal(cjson.null, v.won_time)
    assert.same({ [ck] = "x", [dk] = 7 }, v.custom_fields)
  end)

  it("v1 PUT takes v1 names and forms, answers 200 with nested objects and related_objects", function()
    local d = ok_call(app, "POST", "/v1/deals", { body = { title = "A" } }, 201).data
    local doc = ok_call(app, "PUT", "/v1/deals/" .. d.id, { body = { user_id = 2, value = "99", pipeline_id = 2,
      label = "3" } })
    assert.equal(2, doc.data.user_id.id)
    assert.equal("Brook Tester", doc.data.owner_name)
    assert.equal(99, doc.data.value)
    assert.equal(5, doc.data.stage_id) -- first stage of the new pipeline
    assert.equal("3", doc.data.label)
    assert.truthy(doc.related_objects.user["2"])
    local form = ok_call(app, "PUT", "/api/v1/deals/" .. d.id, { body = "title=Form+title&status=lost",
      content_type = "application/x-www-form-urlencoded" }).data
    assert.equal("Form title", form.title)
    assert.equal("lost", form.status)
    assert.equal("2026-11-28 12:00:00", form.lost_time)
  end)

  it("updates persons, organizations and leads", function()
    local o = ok_call(app, "POST", "/api/v2/organizations", { body = { name = "Org" } }).data.id
    local p = ok_call(app, "POST", "/v1/persons", { body = { name = "Ann Lee", email = "a@x.example" } }, 201).data.id
    local person = ok_call(app, "PATCH", "/api/v2/persons/" .. p, { body = { name = "Ann Marie Lee", org_id = o,
      emails = { { value = "b@x.example", primary = true } } } }).data
    assert.equal("Ann", person.first_name)
    assert.equal("Marie Lee", person.last_name)
    assert.equal(o, person.org_id)
    assert.same({ { value = "b@x.example", primary = true, label = "work" } }, person.emails)
    local v1 = ok_call(app, "PUT", "/v1/persons/" .. p, { body = { phone = "+1 555" } }).data
    assert.equal("+1 555", v1.phone[1].value)
    assert.equal("b@x.example", v1.email[1].value)
    local org = ok_call(app, "PUT", "/v1/organizations/" .. o, { body = { name = "Org Renamed", address = "Tartu" } })
      .data
    assert.equal("Org Renamed", org.name)
    assert.equal("Tartu", org.address)
    local lead = ok_call(app, "POST", "/v1/leads", { body = { title = "L", person_id = p,
      value = { amount = 5, currency = "EUR" } } }, 201).data
    local l2 = ok_call(app, "PATCH", "/v1/leads/" .. lead.id, { body = { title = "L2", value = cjson.null,
      is_archived = true, organization_id = o } }).data
    assert.equal("L2", l2.title)
    assert.equal(cjson.null, l2.value)
    assert.is_true(l2.is_archived)
    assert.equal(cjson.null, ok_call(app, "GET", "/v1/leads").data) -- an empty v1 list
    assert.same({ lead.id }, ids(ok_call(app, "GET", "/v1/leads/archived").data))
    bad("PATCH", "/v1/leads/" .. lead.id, { person_id = cjson.null, organization_id = cjson.null }, "person_id")
  end)

  it("answers 400 naming the field and changes nothing", function()
    ok_call(app, "POST", "/api/v2/deals", { body = { title = "keep" } })
    ok_call(app, "POST", "/v1/persons", { body = { name = "keep" } }, 201)
    bad("PATCH", "/api/v2/deals/1", { title = "" }, "title")
    bad("PATCH", "/api/v2/deals/1", { title = cjson.null }, "title")
    bad("PATCH", "/api/v2/deals/1", { title = "ok", status = "closed" }, "status")
    bad("PATCH", "/api/v2/deals/1", { title = "ok", person_id = 99 }, "person_id")
    bad("PATCH", "/api/v2/deals/1", { value = "5" }, "value")
    bad("PUT", "/v1/deals/1", { user_id = 99 }, "user_id")
    bad("PUT", "/v1/persons/1", { name = " " }, "name")
    bad("PATCH", "/api/v2/deals/1", "title=x", "content-type", { content_type = "application/x-www-form-urlencoded" })
  end)

  it("404 for missing and deleted records, 405 for the other version's method", function()
    ok_call(app, "POST", "/api/v2/deals", { body = { title = "gone" } })
    ok_call(app, "DELETE", "/api/v2/deals/1")
    assert.equal(404, (call(app, "PATCH", "/api/v2/deals/1", { body = { title = "x" } })))
    assert.equal(404, (call(app, "PUT", "/v1/deals/1", { body = { title = "x" } })))
    assert.equal(404, (call(app, "PUT", "/v1/persons/5", { body = { name = "x" } })))
    local status, doc = call(app, "PATCH", "/v1/leads/00000000-0000-4000-8000-000000000000", { body = { title = "x" } })
    assert.equal(404, status)
    assert.equal("requested lead not found", doc.error)
    local s405, _, h = call(app, "PUT", "/api/v2/deals/1", { body = { title = "x" } })
    assert.equal(405, s405)
    assert.equal("DELETE, GET, PATCH", h.allow)
    assert.equal(405, (call(app, "PATCH", "/v1/deals/1", { body = { title = "x" } })))
  end)
end)

describe("sandbox activities", function()
  local app
  before_each(function() app = new_app() end)

  it("v2 add: defaults, flat ids, RFC 3339 times; v1 add: user_id, 0/1 done, HH:MM", function()
    local d = ok_call(app, "POST", "/api/v2/deals", { body = { title = "D" } }).data.id
    local a = ok_call(app, "POST", "/api/v2/activities", { body = { deal_id = d } }).data
    assert.equal("call", a.type)
    assert.equal("Call", a.subject)
    assert.equal(1, a.owner_id)
    assert.equal(d, a.deal_id)
    assert.is_false(a.done)
    assert.is_false(a.busy)
    assert.is_false(a.is_deleted)
    assert.equal("2026-11-28T12:00:00Z", a.add_time)
    local b = ok_call(app, "POST", "/api/v2/activities", { body = { subject = "Demo", type = "meeting", owner_id = 2,
      due_date = "2026-12-01", due_time = "09:30", duration = "01:00", done = true, priority = 2,
      location = { value = "Tallinn", country = "Estonia" } } }).data
    assert.equal("09:30:00", b.due_time)
    assert.equal("01:00:00", b.duration)
    assert.is_true(b.busy)
    assert.is_true(b.done)
    assert.equal("2026-11-28T12:00:00Z", b.marked_as_done_time)
    assert.equal("Estonia", b.location.country)
    local doc = ok_call(app, "POST", "/v1/activities", { body = { subject = "Lunch", type = "lunch", user_id = 3,
      deal_id = d, due_time = "12:15:00", done = 1, busy_flag = "0" } }, 201)
    local c = doc.data
    assert.equal(3, c.user_id)
    assert.equal("12:15", c.due_time)
    assert.is_true(c.done)
    assert.is_false(c.busy_flag)
    assert.equal("D", c.deal_title)
    assert.equal("Casey Demo", c.owner_name)
    assert.equal("2026-11-28 12:00:00", c.add_time)
    assert.equal("D", doc.related_objects.deal[tostring(d)].title)
    assert.truthy(doc.related_objects.user["3"])
  end)

  it("lists v2 with filters, sorting and cursors; v1 per user with offsets", function()
    local d = ok_call(app, "POST", "/api/v2/deals", { body = { title = "D" } }).data.id
    local function add(t) return ok_call(app, "POST", "/api/v2/activities", { body = t }).data.id end
    local a = add{ subject = "a", due_date = "2026-12-03" }
    local b = add{ subject = "b", due_date = "2026-12-01", deal_id = d, done = true }
    local c = add{ subject = "c", owner_id = 2, due_date = "2026-12-02", type = "task" }
    local function v2(q) return ids(ok_call(app, "GET", "/api/v2/activities", { query = q }).data) end
    assert.same({ a, b, c }, v2{})
    assert.same({ b }, v2{ deal_id = d })
    assert.same({ c }, v2{ owner_id = 2 })
    assert.same({ a, c }, v2{ done = false })
    assert.same({ b, c, a }, v2{ sort_by = "due_date" })
    assert.same({ a, c, b }, v2{ sort_by = "due_date", sort_direction = "desc" })
    local first = ok_call(app, "GET", "/api/v2/activities", { query = { limit = 2, sort_by = "due_date" } })
    assert.same({ b, c }, ids(first.data))
    local rest = ok_call(app, "GET", "/api/v2/activities", { query = { limit = 2, sort_by = "due_date",
      cursor = first.additional_data.next_cursor } })
    assert.same({ a }, ids(rest.data))
    local function v1(q) return ids(ok_call(app, "GET", "/v1/activities", { query = q }).data) end
    assert.same({ a, b }, v1{})                 -- the caller's
    assert.same({ a, b, c }, v1{ user_id = 0 }) -- everyone's
    assert.same({ c }, v1{ user_id = 2 })
    assert.same({ c }, v1{ user_id = 0, type = "task" })
    assert.same({ b }, v1{ done = 1 })
    assert.same({ b, c }, v1{ user_id = 0, start_date = "2026-12-01", end_date = "2026-12-02" })
    local page = ok_call(app, "GET", "/v1/activities", { query = { user_id = 0, limit = 2 } })
    assert.same({ start = 0, limit = 2, more_items_in_collection = true, next_start = 2 },
      page.additional_data.pagination)
  end)

  it("updates (done sets marked_as_done_time), deletes softly, refuses bad input", function()
    ok_call(app, "POST", "/api/v2/activities", { body = { subject = "x", due_time = "10:00" } })
    app.advance(30)
    local u = ok_call(app, "PATCH", "/api/v2/activities/1", { body = { done = true, due_time = cjson.null } }).data
    assert.is_true(u.done)
    assert.equal("2026-11-28T12:00:30Z", u.marked_as_done_time)
    assert.equal("2026-11-28T12:00:30Z", u.update_time)
    assert.equal(cjson.null, u.due_time)
    local v = ok_call(app, "PUT", "/v1/activities/1", { body = { done = 0, subject = "y" } }).data
    assert.is_false(v.done)
    assert.equal("y", v.subject)
    assert.equal(cjson.null, v.marked_as_done_time)
    local before = state(app)
    for _, body in ipairs({ { type = "picnic" }, { due_time = "25:00" }, { due_date = "2026-02-30" }, { deal_id = 9 },
                            { lead_id = "00000000-0000-4000-8000-000000000000" }, { subject = "" },
                            { done = "yes" } }) do
      local status, doc = call(app, "PATCH", "/api/v2/activities/1", { body = body })
      assert.equal(400, status, cjson.encode(body))
      assert.is_false(doc.success)
    end
    assert.equal(before, state(app))
    assert.same({ success = true, data = { id = 1 } }, ok_call(app, "DELETE", "/v1/activities/1"))
    assert.equal(404, (call(app, "GET", "/api/v2/activities/1")))
    assert.equal(404, (call(app, "PATCH", "/api/v2/activities/1", { body = { subject = "z" } })))
    assert.equal(404, (call(app, "DELETE", "/api/v2/activities/1")))
    assert.same({}, ok_call(app, "GET", "/api/v2/activities").data)
  end)
end)

describe("sandbox webhooks API", function()
  local app
  before_each(function() app = new_app() end)

  it("lists, creates with every field of the schema, deletes", function()
    assert.same({ status = "ok", success = true, data = {} }, ok_call(app, "GET", "/v1/webhooks"))
    local doc = webhook(app, { event_action = "create", event_object = "deal", http_auth_user = "hook",
                               http_auth_password = "pw" })
    assert.same({
      status = "ok", success = true,
      data = { id = 1, company_id = 7701001, owner_id = 1, user_id = 1, event_action = "create",
               event_object = "deal", subscription_url = "http://127.0.0.1:9/hook", version = "2.0", is_active = 1,
               add_time = "2026-11-28T12:00:00.000Z", remove_time = cjson.null, type = "general",
               http_auth_user = "hook", http_auth_password = "pw", remove_reason = cjson.null,
               last_delivery_time = cjson.null, last_http_status = cjson.null, admin_id = 1, name = "Spec webhook" },
    }, doc)
    local v1 = webhook(app, { version = "1.0", event_action = "updated", event_object = "activityType",
                              user_id = 2 }).data
    assert.equal("1.0", v1.version)
    assert.equal(2, v1.user_id)
    assert.same({ 1, 2 }, ids(ok_call(app, "GET", "/api/v1/webhooks").data))
    assert.same({ status = "ok", success = true }, ok_call(app, "DELETE", "/v1/webhooks/1"))
    local status, gone = call(app, "DELETE", "/v1/webhooks/1")
    assert.equal(404, status)
    assert.same({ status = "error", success = false, errors = { id = { "not found" } } }, gone)
    assert.same({ 2 }, ids(ok_call(app, "GET", "/v1/webhooks").data))
    assert.equal(404, (call(app, "GET", "/api/v2/webhooks")))
    assert.equal(401, (call(app, "GET", "/v1/webhooks", { token = "nope" })))
  end)

  it("answers 400 with field errors, in the vocabulary of the version", function()
    local function refused(body)
      local status, doc = call(app, "POST", "/v1/webhooks", { body = body })
      assert.equal(400, status, cjson.encode(body))
      assert.equal("error", doc.status)
      assert.is_false(doc.success)
      return doc.errors
    end
    local e = refused({})
    assert.same({ "subscription_url", "event_action", "event_object", "name" }, (function()
      local out = {}
      for _, k in ipairs({ "subscription_url", "event_action", "event_object", "name" }) do
        if e[k] then out[#out + 1] = k end
      end
      return out
    end)())
    local base = { subscription_url = "https://example.com/h", event_action = "create", event_object = "deal",
                   name = "n" }
    local function with(t)
      local b = {}
      for k, v in pairs(base) do b[k] = v end
      for k, v in pairs(t) do b[k] = v end
      return b
    end
    for _, url in ipairs({ "example.com/hook", "ftp://example.com/", "http://", "http://exa mple.com/",
                           "http://example.com:99999/", 42 }) do
      assert.same({ subscription_url = { "invalid or non-reachable URL" } }, refused(with{ subscription_url = url }))
    end
    assert.truthy(refused(with{ event_action = "added" }).event_action)        -- a v1 word, version 2.0
    assert.truthy(refused(with{ event_object = "activityType" }).event_object)
    assert.truthy(refused(with{ version = "1.0" }).event_action)               -- a v2 word, version 1.0
    assert.truthy(refused(with{ version = "1.0", event_action = "added", event_object = "lead" }).event_object)
    assert.truthy(refused(with{ version = "3.0" }).version)
    assert.truthy(refused(with{ name = ("x"):rep(256) }).name)
    assert.truthy(refused(with{ user_id = 99 }).user_id)
    assert.truthy(refused(with{ http_auth_password = 5 }).http_auth_password)
    assert.same({}, ok_call(app, "GET", "/v1/webhooks").data)
    webhook(app, with{ version = "1.0", event_action = "merged", event_object = "person" })
    webhook(app, with{ event_action = "*", event_object = "lead", subscription_url = "http://[::1]:8080/x?y=1" })
  end)

  it("allows 40 webhooks per user, then answers 422", function()
    for i = 1, 40 do webhook(app, { name = "w" .. i }) end
    local status, doc = call(app, "POST", "/v1/webhooks", { body = { subscription_url = "http://127.0.0.1:9/",
      event_action = "*", event_object = "*", name = "one too many" } })
    assert.equal(422, status)
    assert.equal("error", doc.status)
    assert.is_false(doc.success)
    assert.truthy(doc.errors.user_id)
    webhook(app, { user_id = 2 }) -- another user's count
    ok_call(app, "DELETE", "/v1/webhooks/7")
    webhook(app, {})
  end)

  it("reset removes webhooks and pending deliveries; state masks passwords", function()
    webhook(app, { http_auth_user = "u", http_auth_password = "secret" })
    ok_call(app, "POST", "/api/v2/deals", { body = { title = "x" } })
    assert.equal(1, #app.hooks.delivery.queue)
    local _, s = admin(app, "GET", "/_sandbox/state")
    assert.equal("***", s.webhooks[1].http_auth_password)
    assert.same({ 200, { ok = true } }, { admin(app, "POST", "/_sandbox/reset") })
    assert.same({}, ok_call(app, "GET", "/v1/webhooks").data)
    assert.equal(0, #app.hooks.delivery.queue)
    assert.same({ 200, {} }, { admin(app, "GET", "/_sandbox/deliveries") })
    assert.same({ 200, { ok = true } }, { admin(app, "DELETE", "/_sandbox/deliveries") })
  end)
end)

describe("sandbox webhook events", function()
  local app
  before_each(function() app = new_app() end)

  it("v2: create, change (only the changed fields in previous), delete (data null)", function()
    webhook(app, { event_action = "*", event_object = "deal" })
    local d = ok_call(app, "POST", "/api/v2/deals", { body = { title = "T", value = 5 } }).data
    app.advance(10)
    ok_call(app, "PATCH", "/api/v2/deals/" .. d.id, { body = { title = "T2", value = 7 } })
    ok_call(app, "DELETE", "/api/v2/deals/" .. d.id)
    local q = queued(app)
    assert.equal(3, #q)
    local create, change, delete = q[1].body, q[2].body, q[3].body
    local m = create.meta
    assert.equal("create", m.action)
    assert.equal("deal", m.entity)
    assert.equal("7701001", m.company_id)
    assert.equal(tostring(d.id), m.entity_id)
    assert.matches("^%x+%-%x+%-4%x+%-[89ab]%x+%-%x+$", m.id)
    assert.matches("^%x+%-%x+%-4%x+%-[89ab]%x+%-%x+$", m.correlation_id)
    assert.is_false(m.is_bulk_edit)
    assert.equal("2026-11-28T12:00:00.000Z", m.timestamp)
    assert.equal("general", m.type)
    assert.equal("1", m.user_id)
    assert.equal("2.0", m.version)
    assert.equal("1", m.webhook_id)
    assert.equal("1", m.webhook_owner_id)
    assert.equal("api", m.change_source)
    assert.equal(1, m.attempt)
    assert.equal("sandbox.pipedrive.com", m.host)
    assert.same({ "1", "2", "3" }, m.permitted_user_ids)
    assert.equal("T", create.data.title)
    assert.equal(1, create.data.owner_id)
    assert.equal(cjson.null, create.previous)
    assert.equal("change", change.meta.action)
    assert.equal("T2", change.data.title)
    assert.equal("2026-11-28T12:00:10.000Z", change.meta.timestamp)
    assert.same({ title = "T", value = 5 }, change.previous)
    assert.equal("delete", delete.meta.action)
    assert.equal(cjson.null, delete.data)
    assert.equal("T2", delete.previous.title)
    assert.is_false(delete.previous.is_deleted)
    assert.are_not.equal(create.meta.id, change.meta.id)
    assert.equal(create.meta.id, q[1].job.event_id)
    assert.same({ "deal", "create" }, { q[1].job.object, q[1].job.action })
  end)

  it("v1: added/updated/deleted with flat ids, the whole previous record, retry and meta", function()
    webhook(app, { version = "1.0", event_action = "*", event_object = "deal" })
    local d = ok_call(app, "POST", "/v1/deals", { body = { title = "T" } }, 201).data
    ok_call(app, "PUT", "/v1/deals/" .. d.id, { body = { title = "T2" } })
    ok_call(app, "DELETE", "/v1/deals/" .. d.id)
    local q = queued(app)
    assert.equal(3, #q)
    local added, updated, deleted = q[1].body, q[2].body, q[3].body
    assert.equal(1, added.v)
    assert.equal("added.deal", added.event)
    assert.equal(0, added.retry)
    assert.same({ current = {}, previous = {} }, added.matches_filters)
    local m = added.meta
    assert.same({ 1, "added", "deal", d.id, 7701001, 1, "sandbox.pipedrive.com", T0, T0 * 1000000, false, false,
                  false, "1", "api" },
      { m.v, m.action, m.object, m.id, m.company_id, m.user_id, m.host, m.timestamp, m.timestamp_micro,
        m.trans_pending, m.is_bulk_update, m.pipedrive_service_name, m.webhook_id, m.change_source })
    assert.same({ 1, 2, 3 }, m.permitted_user_ids)
    assert.equal("T", added.current.title)
    assert.equal(1, added.current.user_id) -- an id, not the API's nested user object
    assert.equal(cjson.null, added.previous)
    assert.equal("updated.deal", updated.event)
    assert.equal("T2", updated.current.title)
    assert.equal("T", updated.previous.title)
    assert.equal(updated.current.id, updated.previous.id)
    assert.equal("deleted.deal", deleted.event)
    assert.equal(cjson.null, deleted.current)
    assert.equal("T2", deleted.previous.title)
    -- the retry counter is per attempt; the event is the same
    local job = q[1].job
    local again = integers(cjson.decode(job.body(3)))
    assert.equal(2, again.retry)
    assert.equal(m.timestamp, again.meta.timestamp)
  end)

  it("matches action and object in the webhook's version, wildcards included", function()
    webhook(app, { name = "v2 all" })                                                      -- 1
    webhook(app, { version = "1.0", name = "v1 all" })                                     -- 2
    webhook(app, { version = "1.0", event_action = "updated", event_object = "person" })   -- 3
    webhook(app, { event_action = "delete", event_object = "*" })                          -- 4
    webhook(app, { event_action = "create", event_object = "note" })                       -- 5
    webhook(app, { event_action = "*", event_object = "lead" })                            -- 6
    local p = ok_call(app, "POST", "/api/v2/persons", { body = { name = "P" } }).data.id
    ok_call(app, "PATCH", "/api/v2/persons/" .. p, { body = { name = "Q" } })
    ok_call(app, "POST", "/v1/leads", { body = { title = "L", person_id = p } }, 201)
    local a = ok_call(app, "POST", "/api/v2/activities", { body = { subject = "A" } }).data.id
    ok_call(app, "DELETE", "/api/v2/activities/" .. a)
    local got = {}
    for _, e in ipairs(queued(app)) do
      local w = e.job.webhook.id
      got[w] = got[w] or {}
      table.insert(got[w], e.job.object .. "." .. e.job.action)
    end
    assert.same({ "person.create", "person.change", "lead.create", "activity.create", "activity.delete" }, got[1])
    assert.same({ "person.create", "person.change", "activity.create", "activity.delete" }, got[2]) -- no leads in v1
    assert.same({ "person.change" }, got[3])
    assert.same({ "activity.delete" }, got[4])
    assert.is_nil(got[5])
    assert.same({ "lead.create" }, got[6])
  end)

  it("activity events carry the v1 notification fields; nothing is sent for refused calls or bulk data", function()
    webhook(app, { version = "1.0", event_action = "added", event_object = "activity" })
    ok_call(app, "POST", "/v1/activities", { body = { subject = "Call" } }, 201)
    local q = queued(app)
    assert.equal(1, #q)
    assert.is_false(q[1].body.meta.send_activity_notifications)
    assert.equal("Call", q[1].body.current.subject)
    webhook(app, { name = "all" })
    assert.equal(400, (call(app, "POST", "/api/v2/deals", { body = { value = 1 } })))
    assert.equal(404, (call(app, "PATCH", "/api/v2/deals/5", { body = { title = "x" } })))
    app:handle{ method = "POST", path = "/_sandbox/bulk", headers = {}, body = '{"object":"deal","count":3}' }
    assert.equal(1, #app.hooks.delivery.queue)
  end)
end)

describe("sandbox webhook command line", function()
  local server = require "pipedrive.sandbox.server"

  it("parses --webhook-retry-delays and --webhook-duplicate", function()
    local o = assert(server.parse_args{ "--webhook-retry-delays", "0.2, 0.5,1", "--webhook-duplicate" })
    assert.same({ 0.2, 0.5, 1 }, o.webhook_retry_delays)
    assert.is_true(o.webhook_duplicate)
    assert.same({}, assert(server.parse_args{ "--webhook-retry-delays=" }).webhook_retry_delays)
    assert.is_nil(server.parse_args{ "--webhook-retry-delays", "3,x" })
    assert.is_nil(server.parse_args{ "--webhook-retry-delays", "-1" })
    assert.is_nil(server.parse_args{ "--webhook-duplicate=yes" })
    assert.truthy(server.USAGE:find("--webhook-retry-delays", 1, true))
    assert.truthy(server.USAGE:find("/_sandbox/deliveries", 1, true))
  end)
end)

------------------------------------------------------------------------------
-- End to end: a sandbox process delivers to a receiver in this process.
------------------------------------------------------------------------------
local function shq(s)
  return "'" .. tostring(s):gsub("'", [['\'']]) .. "'"
end

-- A raw API call through the curl command line: status, decoded body.
local function curl(sb, method, path, body)
  local cmd = { "curl -s --max-time 20 -X", method, "-o - -w", shq("\n%{http_code}"),
                "-H", shq("x-api-token: " .. sb.api_token) }
  if body then
    cmd[#cmd + 1] = "-H 'content-type: application/json' --data-binary " .. shq(cjson.encode(body))
  end
  cmd[#cmd + 1] = shq(sb.url .. path)
  local p = assert(io.popen(table.concat(cmd, " ")))
  local out = p:read("*a")
  p:close()
  local text, code = out:match("^(.*)\n(%d%d%d)$")
  assert(text, "curl failed: " .. out)
  return tonumber(code), integers(cjson.decode(text))
end

-- A receiver: answers each path from a plan (a list of statuses, then 200).
local function receiver()
  local httpd = require "pipedrive.httpd"
  local r = { got = {}, plan = {} }
  r.srv = assert(httpd.listen{ host = "127.0.0.1", port = 0, handler = function(req)
    local headers = {}
    for k, v in pairs(req.headers or {}) do headers[k:lower()] = v end
    local n = 0
    for _, g in ipairs(r.got) do
      if g.path == req.path then n = n + 1 end
    end
    r.got[#r.got + 1] = { path = req.path, method = req.method, headers = headers,
                          body = integers(cjson.decode(req.body)) }
    local status = (r.plan[req.path] or {})[n + 1] or 200
    return status, { ["content-type"] = "text/plain" }, "thanks"
  end })
  r.url = "http://127.0.0.1:" .. r.srv:port()
  function r.at(path)
    local out = {}
    for _, g in ipairs(r.got) do
      if g.path == path then out[#out + 1] = g end
    end
    return out
  end
  -- Serves until pred() holds (true) or the deadline passes (false).
  function r.until_(pred, seconds)
    local steps = math.floor((seconds or 10) / 0.05)
    local t0 = os.time()
    for _ = 1, steps * 2 do
      if pred() then return true end
      r.srv:step(0.05)
      if os.time() - t0 > (seconds or 10) then break end
    end
    return pred()
  end
  function r.reset()
    r.got, r.plan = {}, {}
  end
  return r
end

local function admin_get(sb, path)
  local p = assert(io.popen("curl -s --max-time 20 " .. shq(sb.url .. path)))
  local out = p:read("*a")
  p:close()
  return integers(cjson.decode(out))
end

local function admin_post(sb, path)
  os.execute("curl -s -o /dev/null --max-time 20 -X POST " .. shq(sb.url .. path))
end

describe("sandbox webhook delivery (process)", function()
  local spawn = require "pipedrive.sandbox.spawn"
  local sb, rx

  setup(function()
    rx = receiver()
    sb = spawn.start{ args = { "--webhook-retry-delays", "0.2,0.2,0.2" } }
  end)
  teardown(function()
    if sb then sb.stop() end
    if rx then rx.srv:close() end
  end)
  before_each(function()
    admin_post(sb, "/_sandbox/reset")
    rx.reset()
  end)

  it("POSTs v2 and v1 payloads for a deal's create, change and delete, with Basic auth", function()
    local s2, w2 = curl(sb, "POST", "/v1/webhooks", { subscription_url = rx.url .. "/v2", event_action = "*",
      event_object = "deal", name = "v2", http_auth_user = "hook", http_auth_password = "p@ss:word" })
    assert.equal(201, s2)
    local s1 = curl(sb, "POST", "/v1/webhooks", { subscription_url = rx.url .. "/v1", event_action = "*",
      event_object = "*", name = "v1", version = "1.0" })
    assert.equal(201, s1)
    local _, made = curl(sb, "POST", "/api/v2/deals", { title = "Webhook deal", value = 100 })
    local id = made.data.id
    assert.equal(200, (curl(sb, "PATCH", "/api/v2/deals/" .. id, { title = "Webhook deal 2" })))
    assert.equal(200, (curl(sb, "DELETE", "/api/v2/deals/" .. id)))
    assert.is_true(rx.until_(function() return #rx.at("/v2") >= 3 and #rx.at("/v1") >= 3 end, 15),
      "deliveries: " .. #rx.got)

    local by = {}
    for _, g in ipairs(rx.got) do
      assert.equal("POST", g.method)
      assert.matches("^application/json", g.headers["content-type"])
      local key = g.path == "/v2" and ("v2." .. g.body.meta.action) or ("v1." .. g.body.event)
      by[key] = g
    end
    local create, change, delete = by["v2.create"], by["v2.change"], by["v2.delete"]
    assert.equal("Basic " .. require("pipedrive.sandbox.delivery").basic("hook", "p@ss:word"),
      create.headers.authorization)
    assert.equal("Basic aG9vazpwQHNzOndvcmQ=", create.headers.authorization)
    assert.is_nil(by["v1.added.deal"].headers.authorization)
    assert.equal("Webhook deal", create.body.data.title)
    assert.equal(tostring(id), create.body.meta.entity_id)
    assert.equal(tostring(w2.data.id), create.body.meta.webhook_id)
    assert.equal(1, create.body.meta.attempt)
    assert.equal(cjson.null, create.body.previous)
    assert.equal("Webhook deal 2", change.body.data.title)
    assert.same({ title = "Webhook deal" }, change.body.previous)
    assert.equal(cjson.null, delete.body.data)
    assert.equal("Webhook deal 2", delete.body.previous.title)
    assert.equal("Webhook deal", by["v1.added.deal"].body.current.title)
    assert.equal(cjson.null, by["v1.added.deal"].body.previous)
    assert.equal("Webhook deal", by["v1.updated.deal"].body.previous.title)
    assert.equal("Webhook deal 2", by["v1.updated.deal"].body.current.title)
    assert.equal(cjson.null, by["v1.deleted.deal"].body.current)
    assert.equal(0, by["v1.deleted.deal"].body.retry)

    -- the sandbox records an attempt once its curl has ended, a moment after the receiver answered
    assert.is_true(rx.until_(function() return #admin_get(sb, "/_sandbox/deliveries") >= 6 end, 10))
    local log = admin_get(sb, "/_sandbox/deliveries")
    assert.equal(6, #log)
    for _, e in ipairs(log) do
      assert.is_true(e.ok)
      assert.equal(200, e.status)
      assert.equal(1, e.attempt)
      assert.equal("deal", e.object)
      assert.is_nil(e.http_auth_password)
    end
    assert.is_nil(cjson.encode(log):find("p@ss", 1, true))
    local _, hooks = curl(sb, "GET", "/v1/webhooks")
    assert.equal(200, hooks.data[1].last_http_status)
    assert.is_string(hooks.data[1].last_delivery_time)
  end)

  it("retries a failing receiver with the same event (attempt 1, 2, 3) until it answers 2xx", function()
    rx.plan["/v2"] = { 500, 500 }
    rx.plan["/v1"] = { 503, 500 }
    curl(sb, "POST", "/v1/webhooks", { subscription_url = rx.url .. "/v2", event_action = "create",
      event_object = "deal", name = "v2" })
    curl(sb, "POST", "/v1/webhooks", { subscription_url = rx.url .. "/v1", event_action = "added",
      event_object = "deal", name = "v1", version = "1.0" })
    curl(sb, "POST", "/api/v2/deals", { title = "Flaky" })
    assert.is_true(rx.until_(function() return #rx.at("/v2") >= 3 and #rx.at("/v1") >= 3 end, 15))
    local v2, v1 = rx.at("/v2"), rx.at("/v1")
    assert.same({ 1, 2, 3 }, { v2[1].body.meta.attempt, v2[2].body.meta.attempt, v2[3].body.meta.attempt })
    assert.equal(v2[1].body.meta.id, v2[3].body.meta.id)
    assert.equal(v2[1].body.meta.timestamp, v2[3].body.meta.timestamp)
    assert.same({ 0, 1, 2 }, { v1[1].body.retry, v1[2].body.retry, v1[3].body.retry })
    assert.equal(v1[1].body.meta.timestamp, v1[3].body.meta.timestamp)
    rx.until_(function() return false end, 0.3) -- nothing more comes
    assert.equal(3, #rx.at("/v2"))
    assert.is_true(rx.until_(function() return #admin_get(sb, "/_sandbox/deliveries") >= 6 end, 10))
    local log = admin_get(sb, "/_sandbox/deliveries")
    local attempts = {}
    for _, e in ipairs(log) do
      if e.webhook_id == 1 then attempts[#attempts + 1] = { e.attempt, e.status, e.ok } end
    end
    assert.same({ { 1, 500, false }, { 2, 500, false }, { 3, 200, true } }, attempts)
  end)

  it("drops a delivery after the last retry and records it", function()
    rx.plan["/down"] = { 500, 500, 500, 500, 500 }
    curl(sb, "POST", "/v1/webhooks", { subscription_url = rx.url .. "/down", event_action = "*",
      event_object = "person", name = "down" })
    curl(sb, "POST", "/api/v2/persons", { name = "Nobody home" })
    assert.is_true(rx.until_(function()
      local log = admin_get(sb, "/_sandbox/deliveries")
      return #log == 4 and log[4].dropped == true
    end, 15))
    assert.equal(4, #rx.at("/down"))
    local log = admin_get(sb, "/_sandbox/deliveries")
    assert.same({ 1, 2, 3, 4 }, { log[1].attempt, log[2].attempt, log[3].attempt, log[4].attempt })
    assert.equal(log[1].event_id, log[4].event_id)
    assert.equal(0, #(function()
      os.execute("curl -s -o /dev/null -X DELETE " .. shq(sb.url .. "/_sandbox/deliveries"))
      return admin_get(sb, "/_sandbox/deliveries")
    end)())
  end)

  it("counts an unreachable receiver as a failure (status 0)", function()
    local probe = require("pipedrive.httpd").listen{ port = 0, handler = function() return 200, {}, "" end }
    local port = probe:port()
    probe:close()
    curl(sb, "POST", "/v1/webhooks", { subscription_url = ("http://127.0.0.1:%d/nothing"):format(port),
      event_action = "*", event_object = "deal", name = "nowhere" })
    curl(sb, "POST", "/api/v2/deals", { title = "Unheard" })
    assert.is_true(rx.until_(function() return #admin_get(sb, "/_sandbox/deliveries") >= 1 end, 15))
    local e = admin_get(sb, "/_sandbox/deliveries")[1]
    assert.equal(0, e.status)
    assert.is_false(e.ok)
  end)
end)

describe("sandbox webhook delivery with --webhook-duplicate (process)", function()
  local spawn = require "pipedrive.sandbox.spawn"
  local sb, rx

  setup(function()
    rx = receiver()
    sb = spawn.start{ args = { "--webhook-duplicate", "--webhook-retry-delays", "0.2" } }
  end)
  teardown(function()
    if sb then sb.stop() end
    if rx then rx.srv:close() end
  end)

  it("delivers every successful event twice, the same event both times", function()
    curl(sb, "POST", "/v1/webhooks", { subscription_url = rx.url .. "/dup", event_action = "create",
      event_object = "organization", name = "dup" })
    curl(sb, "POST", "/api/v2/organizations", { name = "Twice Ltd" })
    assert.is_true(rx.until_(function() return #rx.at("/dup") >= 2 end, 15))
    rx.until_(function() return false end, 0.3)
    local got = rx.at("/dup")
    assert.equal(2, #got)
    assert.same(got[1].body, got[2].body)
    assert.equal("Twice Ltd", got[1].body.data.name)
    assert.is_true(rx.until_(function() return #admin_get(sb, "/_sandbox/deliveries") >= 2 end, 10))
    local log = admin_get(sb, "/_sandbox/deliveries")
    assert.equal(2, #log)
    assert.is_nil(log[1].duplicate)
    assert.is_true(log[2].duplicate)
    assert.equal(log[1].event_id, log[2].event_id)
  end)
end)
