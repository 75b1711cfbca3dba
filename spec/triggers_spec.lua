-- Unit specs of pipedrive.triggers: normalization of v1 and v2 payloads,
-- handle() (statuses, auth, dedupe, failures), the seen memory, subscription
-- keys and reconciliation against a fake client, and the listener on
-- loopback. The payloads are written by hand after FACTS §5; the end-to-end
-- spec (e2e_triggers_spec.lua) checks them against the sandbox's deliveries.
local compat = require "pipedrive.compat"
local core = require "pipedrive.core"
local triggers = require "pipedrive.triggers"
local util = require "support.util"

local null = core.null
local USER, PASSWORD = "hook", "s3cret:pw"
local AUTH = "Basic " .. core.base64_encode(USER .. ":" .. PASSWORD)
local T0 = 1795867200 -- 2026-11-28T12:00:00Z

-- A v2 body. meta fields as Pipedrive's guide shows them (ids as strings);
-- each body gets its own event id.
local event_seq = 0
local function v2(action, entity, data, previous, meta)
  event_seq = event_seq + 1
  local m = {
    action = action, entity = entity, company_id = "7701001", correlation_id = "c0ffee00-0000-4000-8000-000000000001",
    entity_id = tostring((data ~= null and data or previous).id), id = ("e1e1e1e1-0000-4000-8000-%012d"):format(event_seq),
    is_bulk_edit = false, timestamp = "2026-11-28T12:00:00.250Z", type = "general", user_id = "11", version = "2.0",
    webhook_id = "21", webhook_owner_id = "11", change_source = "app", attempt = 1, host = "acme.pipedrive.com",
    permitted_user_ids = { "11", "12" },
  }
  for k, v in pairs(meta or {}) do m[k] = v end
  return { meta = m, data = data, previous = previous }
end

-- A v1 body.
local function v1(action, object, current, previous, meta, retry)
  local id = (current ~= null and current or previous).id
  local m = {
    v = 1, action = action, object = object, change_source = "api", id = id, company_id = 7701001, user_id = 11,
    host = "acme.pipedrive.com", timestamp = T0, timestamp_micro = T0 * 1000000 + 250000,
    permitted_user_ids = { 11, 12 }, trans_pending = false, is_bulk_update = false, pipedrive_service_name = false,
    matches_filters = { current = core.array(), previous = core.array() }, webhook_id = "31",
  }
  for k, v in pairs(meta or {}) do m[k] = v end
  return { v = 1, matches_filters = { current = core.array(), previous = core.array() }, meta = m, retry = retry or 0,
           current = current, previous = previous, event = action .. "." .. object }
end

local function post(tr, payload, headers)
  local h = { ["content-type"] = "application/json", authorization = AUTH }
  for k, v in pairs(headers or {}) do
    if v == false then h[k] = nil else h[k] = v end
  end
  local body = type(payload) == "string" and payload or core.json_encode(payload)
  local status, rh, rb = tr:handle{ method = "POST", headers = h, body = body, remote_addr = "127.0.0.1" }
  return status, rh, rb
end

-- Triggers with auth and a log kept in `lines`.
local function make(opts)
  local lines = {}
  local o = { user = USER, password = PASSWORD, log = function(line, level) lines[#lines + 1] = level .. " " .. line end }
  for k, v in pairs(opts or {}) do o[k] = v end
  local tr = triggers.new(nil, o)
  return tr, lines
end

-- Records every event given to the callback.
local function recorder()
  local r = { events = {} }
  r.fn = function(ev) r.events[#r.events + 1] = ev end
  return r
end

local DEAL = { id = 5, title = "Big deal", value = 1000, currency = "EUR", stage_id = 1, update_time = "2026-11-28T12:00:00Z" }
local DEAL2 = { id = 5, title = "Bigger deal", value = 2500, currency = "EUR", stage_id = 1,
                update_time = "2026-11-28T12:00:01Z" }
local PERSON = { id = 7, name = "Pat Doe", emails = core.array(), update_time = "2026-11-28T12:00:00Z" }
local PERSON2 = { id = 7, name = "Pat Roe", emails = core.array(), update_time = "2026-11-28T12:00:01Z" }
local ORG = { id = 9, name = "Acme", address = null, update_time = "2026-11-28T12:00:00Z" }
local ORG2 = { id = 9, name = "Acme", address = "1 Main St", update_time = "2026-11-28T12:00:01Z" }
local ACTIVITY = { id = 3, subject = "Call", type = "call", deal_id = 5, done = false }

-- The seven seed triggers: key, v2 body, v1 body, expected current, previous (v2), changed.
local SEVEN = {
  { "activity.added", v2("create", "activity", ACTIVITY, null), v1("added", "activity", ACTIVITY, null), 3,
    "Call", "subject" },
  { "deal.added", v2("create", "deal", DEAL, null), v1("added", "deal", DEAL, null), 5, "Big deal", "title" },
  { "organization.added", v2("create", "organization", ORG, null), v1("added", "organization", ORG, null), 9,
    "Acme", "name" },
  { "person.added", v2("create", "person", PERSON, null), v1("added", "person", PERSON, null), 7, "Pat Doe", "name" },
  { "deal.updated", v2("change", "deal", DEAL2, { title = "Big deal", value = 1000, update_time = DEAL.update_time }),
    v1("updated", "deal", DEAL2, DEAL), 5, "Bigger deal", "title", { "title", "value" } },
  { "organization.updated", v2("change", "organization", ORG2, { address = null }), v1("updated", "organization",
    ORG2, ORG), 9, "1 Main St", "address", { "address" } },
  { "person.updated", v2("change", "person", PERSON2, { name = "Pat Doe" }), v1("updated", "person", PERSON2, PERSON),
    7, "Pat Roe", "name", { "name" } },
}

describe("triggers.normalize", function()
  for _, case in ipairs(SEVEN) do
    local key, b2, b1, id, value, field, changed = compat.unpack(case)
    local object, action = key:match("^(.-)%.(.*)$")

    it("v2 " .. key, function()
      local ev = assert(triggers.normalize(core.json_decode(core.json_encode(b2))))
      assert.equal(key, ev.event)
      assert.equal(object, ev.object)
      assert.equal(action, ev.action)
      assert.equal(id, ev.id)
      assert.equal("integer", compat.math_type(ev.id))
      assert.equal(value, ev.current[field])
      if action == "added" then
        assert.is_nil(ev.previous)
        assert.is_nil(ev.changed)
      else
        assert.same(b2.previous, ev.previous) -- only what changed
        assert.same(changed, ev.changed)
      end
      local m = ev.meta
      assert.equal("2.0", m.version)
      assert.equal(b2.meta.id, m.event_id)
      assert.equal(21, m.webhook_id)
      assert.equal(1, m.attempt)
      assert.equal(T0 + 0.25, m.timestamp)
      assert.equal(11, m.user_id)
      assert.equal(7701001, m.company_id)
      assert.equal("app", m.change_source)
      assert.is_false(m.is_bulk)
      assert.equal(b2.meta.correlation_id, m.correlation_id)
      assert.equal("v2|" .. b2.meta.id, m.dedupe_key)
      assert.equal(b2.meta.entity, ev.raw.meta.entity)
    end)

    it("v1 " .. key, function()
      local ev = assert(triggers.normalize(core.json_decode(core.json_encode(b1))))
      assert.equal(key, ev.event)
      assert.equal(object, ev.object)
      assert.equal(action, ev.action)
      assert.equal(id, ev.id)
      assert.equal(value, ev.current[field])
      if action == "added" then
        assert.is_nil(ev.previous)
        assert.is_nil(ev.changed)
      else
        assert.same(b1.previous, ev.previous) -- v1 sends the whole previous record
        assert.same(changed, ev.changed)     -- update_time is left out
      end
      local m = ev.meta
      assert.equal("1.0", m.version)
      assert.is_nil(m.event_id)
      assert.equal(31, m.webhook_id)
      assert.equal(1, m.attempt)
      assert.equal(T0 + 0.25, m.timestamp)
      assert.equal(11, m.user_id)
      assert.equal(7701001, m.company_id)
      assert.equal("api", m.change_source)
      assert.is_false(m.is_bulk)
      assert.matches("^v1|31|" .. object .. "|" .. id .. "|" .. action .. "|", m.dedupe_key)
    end)
  end

  it("reads an attempt below 1 as the first (found by fuzz_triggers)", function()
    assert.equal(1, triggers.normalize(v2("delete", "deal", null, DEAL2, { attempt = 0 })).meta.attempt)
    assert.equal(1, triggers.normalize(v2("delete", "deal", null, DEAL2, { attempt = -3 })).meta.attempt)
    assert.equal(1, triggers.normalize(v1("deleted", "person", null, PERSON, nil, -5)).meta.attempt)
    assert.equal(1, triggers.normalize(v1("deleted", "person", null, PERSON, nil, compat.maxinteger)).meta.attempt)
  end)

  it("maps deletes, v1 merges, retries and bulk edits", function()
    local ev = triggers.normalize(v2("delete", "deal", null, DEAL2, { merged_to_id = "6", is_bulk_edit = true,
                                                                    attempt = 3 }))
    assert.equal("deal.deleted", ev.event)
    assert.is_nil(ev.current)
    assert.equal("Bigger deal", ev.previous.title)
    assert.equal(6, ev.meta.merged_to_id)
    assert.equal(3, ev.meta.attempt)
    assert.is_true(ev.meta.is_bulk)
    ev = triggers.normalize(v1("deleted", "person", null, PERSON, nil, 2))
    assert.equal("person.deleted", ev.event)
    assert.equal(7, ev.id)
    assert.equal(3, ev.meta.attempt)
    assert.is_nil(ev.current)
    ev = triggers.normalize(v1("merged", "person", PERSON2, PERSON, { is_bulk_update = true }))
    assert.equal("person.merged", ev.event)
    assert.is_true(ev.meta.is_bulk)
  end)

  it("accepts integer ids and epoch timestamps in v2 (as third-party captures show)", function()
    local ev = triggers.normalize(v2("create", "deal", DEAL, null, { entity_id = 5, webhook_id = 21, user_id = 11,
      company_id = 7701001, timestamp = T0 }))
    assert.equal(5, ev.id)
    assert.equal(21, ev.meta.webhook_id)
    assert.equal(T0, ev.meta.timestamp)
    ev = triggers.normalize(v2("create", "deal", DEAL, null, { entity_id = 5.0, timestamp = T0 * 1000 + 500 }))
    assert.equal("integer", compat.math_type(ev.id))
    assert.equal(T0 + 0.5, ev.meta.timestamp)
    ev = triggers.normalize(v2("create", "deal", DEAL, null, { entity_id = nil, timestamp = "2026-11-28T13:00:00+01:00" }))
    assert.equal(5, ev.id) -- from data.id
    assert.equal(T0, ev.meta.timestamp)
  end)

  it("keeps string ids that are not numbers (leads) and reads v1 user events from current[0]", function()
    local uuid = "adf21080-0e10-11eb-879b-05d71fb426ec"
    local ev = triggers.normalize(v2("create", "lead", { id = uuid, title = "Lead" }, null))
    assert.equal(uuid, ev.id)
    ev = triggers.normalize(v1("updated", "user", { { id = 11, name = "Ann" } }, { { id = 11, name = "An" } },
                               { id = 11 }))
    assert.equal("user.updated", ev.event)
    assert.equal("Ann", ev.current.name)
    assert.equal("An", ev.previous.name)
    assert.same({ "name" }, ev.changed)
  end)

  it("takes object and action from v1 `event` when meta lacks them", function()
    local b = v1("added", "deal", DEAL, null)
    b.meta.object, b.meta.action = nil, nil
    local ev = assert(triggers.normalize(b))
    assert.equal("deal.added", ev.event)
  end)

  it("refuses what is not a webhook payload", function()
    for _, p in ipairs({ "x", 1, core.array{ 1 }, {}, { meta = "x" }, { meta = { foo = 1 } },
                         { meta = { version = "2.0", entity = "deal" } },
                         { meta = { version = "2.0", entity = "de al", action = "create" } },
                         { v = 1, meta = { object = "deal", action = 5 } } }) do
      local ev, err = triggers.normalize(p)
      assert.is_nil(ev)
      assert.is_string(err)
    end
  end)

  it("reads the timestamps Pipedrive writes", function()
    assert.equal(T0, triggers.epoch(T0))
    assert.equal(T0, triggers.epoch(tostring(T0)))
    assert.equal(T0 + 0.25, triggers.epoch(T0 * 1000000 + 250000))
    assert.equal(T0, triggers.epoch("2026-11-28 12:00:00"))
    assert.equal(T0 + 0.5, triggers.epoch("2026-11-28T12:00:00.5Z"))
    assert.equal(T0, triggers.epoch("2026-11-28T07:00:00-0500"))
    assert.equal(951782400, triggers.epoch("2000-02-29T00:00:00Z"))
    assert.is_nil(triggers.epoch("yesterday"))
    assert.is_nil(triggers.epoch("2026-13-01T00:00:00Z"))
    assert.is_nil(triggers.epoch(null))
  end)

  -- Dates go through core.iso8601, the one date parser: a day that does not
  -- exist is refused (the hand-written parser took any day up to 31), a bare
  -- date is midnight UTC.
  it("reads ISO 8601 with core.iso8601", function()
    assert.is_nil(triggers.epoch("2026-02-30T00:00:00Z"))
    assert.is_nil(triggers.epoch("2026-02-29T00:00:00Z"))
    assert.equal(T0 - 12 * 3600, triggers.epoch("2026-11-28"))
    assert.equal(core.iso8601("2026-11-28T12:00:00.5+01:00"), triggers.epoch("2026-11-28T12:00:00.5+01:00"))
  end)
end)

describe("triggers:handle", function()
  it("calls the callback of each of the seven triggers once, in both versions", function()
    for _, version in ipairs({ "2.0", "1.0" }) do
      local tr = make{ version = version }
      local got = {}
      for _, case in ipairs(SEVEN) do
        tr:on(case[1], function(ev) got[#got + 1] = ev.event .. ":" .. ev.id end)
      end
      for _, case in ipairs(SEVEN) do
        local status, h, body = post(tr, version == "2.0" and case[2] or case[3])
        assert.equal(200, status)
        assert.equal("application/json", h["content-type"])
        assert.same({ status = "ok" }, core.json_decode(body))
      end
      local want = {}
      for i, case in ipairs(SEVEN) do want[i] = case[1] .. ":" .. case[4] end
      assert.same(want, got)
    end
  end)

  it("accepts both payload versions whatever the webhook version", function()
    local tr = make{ version = "1.0" }
    local r = recorder()
    tr:on("deal.added", r.fn)
    assert.equal(200, (post(tr, SEVEN[2][2])))
    assert.equal(200, (post(tr, SEVEN[2][3])))
    assert.equal(2, #r.events)
  end)

  describe("auth", function()
    local tr, lines, r
    before_each(function()
      tr, lines = make()
      r = recorder()
      tr:on("*", r.fn)
    end)

    local function refused(headers)
      local status, h, body = post(tr, SEVEN[2][2], headers)
      assert.equal(401, status)
      assert.matches('^Basic realm="pipedrive%-lua"', h["www-authenticate"])
      assert.same({ error = "unauthorized" }, core.json_decode(body))
    end

    it("answers 401 to no, wrong or malformed credentials, and never calls back", function()
      refused{ authorization = false }
      refused{ authorization = "Basic " .. core.base64_encode(USER .. ":wrong") }
      refused{ authorization = "Basic " .. core.base64_encode("other:" .. PASSWORD) }
      refused{ authorization = "Basic " .. core.base64_encode(USER .. ":" .. PASSWORD .. "x") }
      refused{ authorization = "Basic " .. core.base64_encode(USER .. ":" .. PASSWORD):sub(1, -2) }
      refused{ authorization = "Basic" }
      refused{ authorization = "Basic !!!!" }
      refused{ authorization = "Bearer " .. core.base64_encode(USER .. ":" .. PASSWORD) }
      refused{ authorization = AUTH .. " extra" }
      refused{ authorization = "" }
      refused{ authorization = ("A"):rep(10000) }
      assert.equal(0, #r.events)
      assert.equal(11, #lines)
      for _, l in ipairs(lines) do assert.matches("^warn pipedrive.triggers: refused a request from 127.0.0.1", l) end
    end)

    it("accepts the scheme in any case, header names in any case, and surrounding spaces", function()
      assert.equal(200, (post(tr, SEVEN[1][2], { authorization = false,
        Authorization = "basic " .. core.base64_encode(USER .. ":" .. PASSWORD) .. " " })))
      assert.equal(1, #r.events)
    end)

    it("compares in constant time against the precomputed value", function()
      local calls = {}
      local real = core.consttime_equal
      core.consttime_equal = function(a, b)
        calls[#calls + 1] = { a, b }
        return real(a, b)
      end
      local ok, err = pcall(function()
        post(tr, SEVEN[1][2], { authorization = "Basic " .. core.base64_encode("x:y") })
        post(tr, SEVEN[1][2])
      end)
      core.consttime_equal = real
      assert(ok, err)
      assert.equal(2, #calls)
      assert.equal(AUTH, calls[2][1])
      assert.equal(AUTH, calls[2][2])
    end)

    it("without user and password, any request is accepted", function()
      local open = triggers.new(nil, { log = function() end })
      open:on("*", r.fn)
      assert.equal(200, (post(open, SEVEN[1][2], { authorization = false })))
      assert.equal(1, #r.events)
    end)
  end)

  it("answers 405 to other methods, with Allow", function()
    local tr = make()
    local r = recorder()
    tr:on("*", r.fn)
    for _, m in ipairs({ "GET", "PUT", "DELETE", "HEAD", "", 5 }) do
      local status, h = tr:handle{ method = m, headers = { authorization = AUTH }, body = core.json_encode(SEVEN[1][2]) }
      assert.equal(405, status)
      assert.equal("POST", h.allow)
    end
    assert.equal(200, (tr:handle{ method = "post", headers = { authorization = AUTH },
                                  body = core.json_encode(SEVEN[1][2]) }))
    assert.equal(1, #r.events)
  end)

  it("answers 413 to a body over max_body", function()
    local tr = make{ max_body = 2000 }
    local r = recorder()
    tr:on("*", r.fn)
    local p = v2("create", "deal", { id = 1, title = ("x"):rep(2100) }, null)
    assert.equal(413, (post(tr, p)))
    p.data.title = "x"
    assert.equal(200, (post(tr, p)))
    assert.equal(1, #r.events)
  end)

  it("answers 415 to a content type that is not JSON, and accepts JSON types and none", function()
    local tr = make()
    local r = recorder()
    tr:on("*", r.fn)
    for _, ct in ipairs({ "text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x",
                          "application/jsonx", "" }) do
      assert.equal(415, (post(tr, SEVEN[1][2], { ["content-type"] = ct })))
    end
    assert.equal(0, #r.events)
    local p = SEVEN[1][2]
    assert.equal(200, (post(tr, p, { ["content-type"] = "Application/JSON; charset=utf-8" })))
    p = v2("create", "deal", DEAL, null, { id = "other-1" })
    assert.equal(200, (post(tr, p, { ["content-type"] = "application/vnd.api+json" })))
    p = v2("create", "deal", DEAL, null, { id = "other-2" })
    assert.equal(200, (post(tr, p, { ["content-type"] = false })))
    assert.equal(3, #r.events)
  end)

  it("answers 400 to garbage, truncated JSON and bodies that are not webhook payloads", function()
    local tr = make()
    local r = recorder()
    tr:on("*", r.fn)
    local text = core.json_encode(SEVEN[5][2])
    local bad = { "", "garbage", "\0\1\2", "{", text:sub(1, #text - 1), text:sub(1, 40), "[]", "null", "42",
                  '"string"', "{}", '{"meta":null}', '{"meta":{"v":1}}', text .. "x",
                  ("["):rep(5000) .. ("]"):rep(5000), '{"meta":{"version":"2.0","entity":"deal","action":"create"}' }
    for _, b in ipairs(bad) do
      local status, _, body = post(tr, b)
      assert.equal(400, status, b:sub(1, 60))
      assert.is_string(core.json_decode(body).error)
    end
    assert.equal(0, #r.events)
  end)

  it("acknowledges an event without a callback with 200 and calls nothing", function()
    local tr, lines = make()
    local r = recorder()
    tr:on("deal.added", r.fn)
    local status, _, body = post(tr, SEVEN[3][2]) -- organization.added
    assert.equal(200, status)
    assert.same({ status = "ignored" }, core.json_decode(body))
    status = post(tr, v2("archive", "deal", DEAL, null)) -- an action Pipedrive may add one day
    assert.equal(200, status)
    assert.equal(0, #r.events)
    assert.matches("ignored organization.added", lines[1], 1, true)
  end)

  it("answers 500 when a callback raises, calls it again on redelivery, then acknowledges duplicates", function()
    local tr, lines = make()
    local calls, fail = 0, true
    tr:on("deal.added", function(ev)
      calls = calls + 1
      if fail then error("database down for " .. ev.event) end
    end)
    local p = v2("create", "deal", DEAL, null)
    local status, _, body = post(tr, p)
    assert.equal(500, status)
    assert.same({ error = "callback failed" }, core.json_decode(body)) -- the cause stays in the log
    assert.matches("database down for deal.added", lines[1], 1, true)
    assert.matches("^error ", lines[1])
    fail = false
    p.meta.attempt = 2
    assert.equal(200, (post(tr, p)))
    assert.equal(2, calls)
    p.meta.attempt = 3
    local _, _, dup = post(tr, p)
    assert.same({ status = "duplicate" }, core.json_decode(dup))
    assert.equal(2, calls)
  end)

  it("treats `return nil, err` and `return false` as failures, `return nil` and no return as success", function()
    local callbacks = {
      function() return nil, "no stock" end, function() return false end, function() return false, "refused" end,
      function() return nil end, function() end, function() return true end, function() return 0 end,
    }
    local statuses = {}
    for i, fn in ipairs(callbacks) do
      local tr = make()
      tr:on("deal.*", fn)
      statuses[i] = (post(tr, SEVEN[2][2]))
    end
    assert.same({ 500, 500, 500, 200, 200, 200, 200 }, statuses)
  end)

  it("acknowledges a duplicate delivery without a second call (v2 by event id, v1 by webhook/object/id/time)", function()
    local tr = make()
    local r = recorder()
    tr:on("*", r.fn)
    local p2 = v2("create", "deal", DEAL, null)
    assert.equal(200, (post(tr, p2)))
    assert.equal(200, (post(tr, p2)))
    p2.meta.attempt = 2
    assert.equal(200, (post(tr, p2)))
    assert.equal(1, #r.events)
    -- another event id is another event, even with the same content
    p2.meta.id = "e1e1e1e1-0000-4000-8000-0000000000ff"
    assert.equal(200, (post(tr, p2)))
    assert.equal(2, #r.events)

    local p1 = v1("added", "deal", DEAL, null)
    assert.equal(200, (post(tr, p1)))
    p1.retry = 1 -- a retry of the same event
    assert.equal(200, (post(tr, p1)))
    assert.equal(3, #r.events)
    -- the same deal changed twice within one timestamp: two events
    local a = v1("updated", "deal", DEAL2, DEAL)
    local b = v1("updated", "deal", { id = 5, title = "Other", value = 2500, currency = "EUR", stage_id = 1 }, DEAL2)
    assert.equal(200, (post(tr, a)))
    assert.equal(200, (post(tr, b)))
    assert.equal(5, #r.events)
    -- another webhook delivering the same change is a separate delivery
    local c = v1("updated", "deal", DEAL2, DEAL, { webhook_id = "32" })
    assert.equal(200, (post(tr, c)))
    assert.equal(6, #r.events)
  end)

  it("on a partial failure, a redelivery calls only the callbacks that have not succeeded", function()
    local tr = make()
    local a, b, fail = 0, 0, true
    tr:on("deal.added", function() a = a + 1 end)
    tr:on("*", function()
      b = b + 1
      if fail then return nil, "not now" end
    end)
    local p = v2("create", "deal", DEAL, null)
    assert.equal(500, (post(tr, p)))
    assert.equal(500, (post(tr, p)))
    fail = false
    assert.equal(200, (post(tr, p)))
    assert.equal(200, (post(tr, p)))
    assert.equal(1, a)
    assert.equal(3, b)
  end)

  it("dispatches to exact, object.*, *.action and * subscriptions, most specific first", function()
    local tr = make()
    local order = {}
    local function note(tag) return function(ev) order[#order + 1] = tag .. ">" .. ev.event end end
    local star = note("*")
    tr:on("*", star)
    tr:on("deal.*", note("deal.*"))
    tr:on("*.updated", note("*.updated"))
    tr:on("deal.updated", note("deal.updated"))
    tr:on("deal.change", note("deal.change")) -- v2 word, same key
    tr:on("*", star)                          -- registered twice: called once
    post(tr, SEVEN[5][2]) -- deal.updated
    post(tr, SEVEN[3][2]) -- organization.added
    assert.same({ "deal.updated>deal.updated", "deal.change>deal.updated", "deal.*>deal.updated",
                  "*.updated>deal.updated", "*>deal.updated", "*>organization.added" }, order)
  end)

  it("off removes one callback or all of a key", function()
    local tr = make()
    local r1, r2 = recorder(), recorder()
    tr:on("deal.added", r1.fn):on("deal.added", r2.fn)
    tr:off("deal.added", r1.fn)
    post(tr, SEVEN[2][2])
    assert.equal(0, #r1.events)
    assert.equal(1, #r2.events)
    tr:off("deal.create")
    local status, _, body = post(tr, v2("create", "deal", DEAL, null, { id = "new-event" }))
    assert.equal(200, status)
    assert.same({ status = "ignored" }, core.json_decode(body))
    assert.equal(1, #r2.events)
    tr:off("person.added") -- nothing there: no error
  end)

  it("never raises, whatever it is given", function()
    local tr = make()
    tr:on("*", function() end)
    local inputs = { nil, 5, "POST", {}, { method = "POST" }, { method = "POST", headers = 5, body = 5 },
                     { method = "POST", headers = { [1] = "x", authorization = { AUTH } }, body = "{}" },
                     { method = "POST", headers = { authorization = 5 }, body = "{}" },
                     { method = {}, headers = {}, body = "" } }
    for i = 1, #inputs + 1 do
      local status, h, body = tr:handle(inputs[i])
      assert.is_number(status)
      assert.is_table(h)
      assert.is_string(body)
    end
    -- random bytes and random cuts of a real body
    local text = core.json_encode(SEVEN[5][3])
    math.randomseed(42)
    for _ = 1, 300 do
      local cut = text:sub(1, math.random(0, #text))
      local bytes = {}
      for j = 1, math.random(0, 64) do bytes[j] = string.char(math.random(0, 255)) end
      for _, b in ipairs({ cut, table.concat(bytes), cut .. table.concat(bytes) }) do
        local status = post(tr, b)
        assert.is_true(status == 200 or status == 400, tostring(status))
      end
    end
  end)

  it("answers 500 on an internal failure and logs it", function()
    local tr, lines = make()
    local broken = setmetatable({}, { __index = function() error("broken host table") end })
    local headers = { authorization = broken }
    local status, h, body = tr:handle{ method = "POST", headers = headers, body = "{}" }
    assert.equal(500, status)
    assert.equal("application/json", h["content-type"])
    assert.same({ error = "internal error" }, core.json_decode(body))
    assert.matches("internal error: .*broken host table", lines[#lines])
  end)

  it("takes the first value of a repeated header (OpenResty gives a list)", function()
    local tr = make()
    local r = recorder()
    tr:on("*", r.fn)
    assert.equal(200, (tr:handle{ method = "POST", body = core.json_encode(SEVEN[1][2]),
      headers = { authorization = { AUTH, "Basic eA==" }, ["content-type"] = { "application/json" } } }))
    assert.equal(1, #r.events)
  end)
end)

describe("the seen memory", function()
  local function clocked(opts)
    local now = T0
    opts = opts or {}
    opts.clock = function() return now end
    local tr = make(opts)
    return tr, function(s) now = now + s end
  end

  it("forgets events after dedupe_ttl", function()
    local tr, advance = clocked{ dedupe_ttl = 60 }
    local r = recorder()
    tr:on("*", r.fn)
    local p = v2("create", "deal", DEAL, null)
    post(tr, p)
    advance(59)
    post(tr, p)
    assert.equal(1, #r.events)
    advance(2)
    post(tr, p)
    assert.equal(2, #r.events)
  end)

  it("keeps at most dedupe_max events, forgetting the oldest", function()
    local tr = clocked{ dedupe_max = 3 }
    local r = recorder()
    tr:on("*", r.fn)
    local function ev(i) return v2("create", "deal", DEAL, null, { id = "event-" .. i }) end
    for i = 1, 4 do post(tr, ev(i)) end
    assert.equal(4, #r.events)
    assert.equal(3, tr:remembered())
    post(tr, ev(4))
    post(tr, ev(3))
    assert.equal(4, #r.events)
    post(tr, ev(1)) -- forgotten, so handled again
    assert.equal(5, #r.events)
    for i = 5, 1000 do post(tr, ev(i)) end
    assert.equal(3, tr:remembered())
  end)

  it("bounds its bookkeeping under churn", function()
    local now = 0
    local m = triggers.memory(10, function() return now end)
    for i = 1, 5000 do
      m:set("k" .. i, true, 100)
      if i % 2 == 0 then m:delete("k" .. (i - 1)) end
      now = now + 0.01
    end
    assert.is_true(m:size() <= 10)
    assert.is_true(m.tail - m.head + 1 <= 2 * 10 + 64 + 1)
    now = now + 1000
    assert.equal(0, m:size())
    assert.is_nil(m:get("k5000"))
  end)

  it("uses a store of the user's: check(key), mark(key, ttl)", function()
    local store, checked, marked = {}, {}, {}
    local seen = {
      check = function(key)
        checked[#checked + 1] = key
        return store[key] ~= nil
      end,
      mark = function(key, ttl)
        marked[#marked + 1] = { key, ttl }
        store[key] = true
      end,
    }
    local tr = make{ seen = seen, dedupe_ttl = 120 }
    local r = recorder()
    tr:on("*", r.fn)
    local p = v2("create", "deal", DEAL, null)
    post(tr, p)
    post(tr, p)
    assert.equal(1, #r.events)
    assert.same({ "v2|" .. p.meta.id, "v2|" .. p.meta.id }, checked)
    assert.same({ { "v2|" .. p.meta.id, 120 } }, marked)
    assert.equal(0, tr:remembered()) -- the default memory is not used
    -- a second receiver sharing the store (another worker) does not call again
    local tr2 = make{ seen = seen }
    tr2:on("*", r.fn)
    post(tr2, p)
    assert.equal(1, #r.events)
  end)

  it("answers 503 and runs nothing when the store fails to check, and acknowledges when it fails to mark", function()
    local check_ok = false
    local tr, lines = make{ seen = { check = function()
                                       if not check_ok then error("redis down") end
                                       return false
                                     end,
                                     mark = function() error("redis still down") end } }
    local r = recorder()
    tr:on("*", r.fn)
    assert.equal(503, (post(tr, SEVEN[1][2])))
    assert.equal(0, #r.events)
    check_ok = true
    assert.equal(200, (post(tr, SEVEN[1][2])))
    assert.equal(1, #r.events)
    local text = table.concat(lines, "\n")
    assert.matches("redis down", text, 1, true)
    assert.matches("redis still down", text, 1, true)
  end)

  it("answers 503 to a copy of an event whose callbacks are still running", function()
    local tr = make()
    local inner
    tr:on("*", function() inner = { post(tr, SEVEN[1][2]) } end)
    assert.equal(200, (post(tr, SEVEN[1][2])))
    assert.equal(503, inner[1])
    assert.equal("3", inner[2]["retry-after"])
  end)
end)

describe("triggers options and keys", function()
  it("refuses bad options", function()
    for _, o in ipairs({ { nope = 1 }, { user = "u" }, { password = "p" }, { user = "a:b", password = "p" },
                         { user = "u", password = "" }, { version = "2" }, { version = 2 }, { url = "ftp://x" },
                         { url = "not a url" }, { name = "" }, { name = ("n"):rep(201) }, { max_body = 0 },
                         { dedupe_ttl = -1 }, { dedupe_max = 1.5 }, { seen = {} }, { log = "stderr" },
                         { user_id = "1" } }) do
      local msg = util.raises(triggers.new, nil, o)
      assert.matches("^pipedrive.triggers: ", msg)
    end
    assert.matches("expected a table", util.raises(triggers.new, nil, "x"))
  end)

  -- The url is read by core.url_parse, libcurl's parser: the one the client
  -- checks every URL with. What it refuses is refused here too.
  it("reads url with the one URL parser, and shows it without user info, query or fragment", function()
    for _, u in ipairs({ "http://h:99999/", "https://exa mple.com/", "http://h/\1", ("https://h/"):rep(300) }) do
      assert.matches("url must be", util.raises(triggers.new, nil, { url = u }))
    end
    local tr = triggers.new(nil, { url = "HTTPS://u:pw@Hooks.Example:443/a/../pd?token=t#f" })
    local shown = tostring(tr)
    assert.matches("https://hooks.example/pd,", shown, 1, true)
    assert.is_nil(shown:find("pw", 1, true))
    assert.is_nil(shown:find("token", 1, true))
  end)

  it("refuses unknown events for the webhook version", function()
    local v2t = triggers.new(nil, {})
    local v1t = triggers.new(nil, { version = "1.0" })
    local fn = function() end
    for _, k in ipairs({ "deals.added", "deal.created", "deal", "deal.added.x", ".added", "deal.merged",
                         "activityType.added", 5 }) do
      assert.matches("triggers:on: ", util.raises(v2t.on, v2t, k, fn))
    end
    for _, k in ipairs({ "lead.added", "deal.archived" }) do
      assert.matches("triggers:on: ", util.raises(v1t.on, v1t, k, fn))
    end
    v1t:on("deal.merged", fn):on("activityType.*", fn):on("deal.create", fn)
    v2t:on("lead.*", fn):on("*.change", fn)
    assert.matches("expected a function", util.raises(v2t.on, v2t, "deal.added"))
    assert.matches("expected a triggers object", util.raises(v2t.on, {}, "deal.added", fn))
  end)

  it("subscribes to the fewest webhooks, in the version's words", function()
    local fn = function() end
    local t2 = triggers.new(nil, {})
    t2:on("deal.added", fn):on("deal.updated", fn):on("person.added", fn):on("activity.added", fn)
    assert.same({ { event_action = "create", event_object = "activity" },
                  { event_action = "change", event_object = "deal" },
                  { event_action = "create", event_object = "deal" },
                  { event_action = "create", event_object = "person" } }, t2:subscriptions())
    t2:on("deal.*", fn)
    t2:on("*.added", fn)
    assert.same({ { event_action = "create", event_object = "*" }, { event_action = "*", event_object = "deal" } },
      t2:subscriptions())
    t2:on("*", fn)
    assert.same({ { event_action = "*", event_object = "*" } }, t2:subscriptions())
    local t1 = triggers.new(nil, { version = "1.0" })
    t1:on("organization.updated", fn):on("person.*", fn):on("person.added", fn)
    assert.same({ { event_action = "updated", event_object = "organization" },
                  { event_action = "*", event_object = "person" } }, t1:subscriptions())
    t1:off("person.*")
    assert.same({ { event_action = "updated", event_object = "organization" },
                  { event_action = "added", event_object = "person" } }, t1:subscriptions())
  end)
end)

------------------------------------------------------------------------------
-- enable/disable against a fake Webhooks API
------------------------------------------------------------------------------
local function fake_client(opts)
  opts = opts or {}
  local c = { hooks = {}, calls = {}, next_id = 100 }
  for _, w in ipairs(opts.existing or {}) do c.hooks[#c.hooks + 1] = w end
  local function err(status, message)
    return nil, setmetatable({ kind = "validation", status = status, message = message, method = "POST",
                               path = "/api/v1/webhooks", body = { echo = PASSWORD } }, core.error_mt)
  end
  c.webhooks = {
    list = function()
      c.calls[#c.calls + 1] = "list"
      if opts.list_fails then return err(500, "boom") end
      local out = {}
      for i, w in ipairs(c.hooks) do out[i] = w end
      return out
    end,
    add = function(a)
      c.calls[#c.calls + 1] = "add " .. a.event_object .. "." .. a.event_action
      c.added = c.added or {}
      c.added[#c.added + 1] = a
      if opts.cap and #c.hooks >= opts.cap then return err(422, "webhooks limit reached") end
      if opts.add_fails then return err(400, "rejected " .. tostring(a.http_auth_password)) end
      c.next_id = c.next_id + 1
      local w = { id = c.next_id, subscription_url = a.subscription_url, event_action = a.event_action,
                  event_object = a.event_object, name = a.name, version = a.version,
                  http_auth_user = a.http_auth_user or null, http_auth_password = a.http_auth_password or null }
      c.hooks[#c.hooks + 1] = w
      return w
    end,
    delete = function(id)
      c.calls[#c.calls + 1] = "delete " .. id
      for i, w in ipairs(c.hooks) do
        if w.id == id then
          table.remove(c.hooks, i)
          return null
        end
      end
      return nil, setmetatable({ kind = "not_found", status = 404, message = "not found" }, core.error_mt)
    end,
  }
  return c
end

describe("triggers:enable and triggers:disable (fake API)", function()
  local URL = "https://my.host/pipedrive"
  local fn = function() end

  local function seven(tr)
    for _, k in ipairs({ "activity.added", "deal.added", "organization.added", "person.added", "deal.updated",
                         "organization.updated", "person.updated" }) do
      tr:on(k, fn)
    end
    return tr
  end

  it("creates one webhook per subscription, with name, version and Basic credentials", function()
    local c = fake_client()
    local tr = seven(triggers.new(c, { url = URL, user = USER, password = PASSWORD }))
    local ok, res = tr:enable()
    assert.is_true(ok)
    assert.equal(7, #res.created)
    assert.equal(7, #c.hooks)
    for _, a in ipairs(c.added) do
      assert.equal(URL, a.subscription_url)
      assert.equal("2.0", a.version)
      assert.equal(USER, a.http_auth_user)
      assert.equal(PASSWORD, a.http_auth_password)
      assert.equal("pipedrive-lua " .. a.event_object .. "." .. a.event_action, a.name)
      assert.is_true(a.event_action == "create" or a.event_action == "change")
    end
    -- again: nothing to do
    c.calls = {}
    ok, res = tr:enable()
    assert.is_true(ok)
    assert.same({ "list" }, c.calls)
    assert.equal(7, #res.kept)
    assert.equal(0, #res.created)
    assert.equal(0, #res.deleted)
  end)

  it("deletes its own stale webhooks (after creating the new ones) and leaves everyone else's", function()
    local existing = {
      { id = 1, subscription_url = URL, event_action = "create", event_object = "deal", name = "pipedrive-lua deal.create",
        version = "2.0", http_auth_user = null, http_auth_password = null },                  -- ours, wanted
      { id = 2, subscription_url = URL, event_action = "delete", event_object = "deal", name = "pipedrive-lua x",
        version = "2.0", http_auth_user = null, http_auth_password = null },                  -- ours, stale
      { id = 3, subscription_url = URL, event_action = "create", event_object = "deal", name = "pipedrive-lua deal.create",
        version = "2.0", http_auth_user = null, http_auth_password = null },                  -- ours, a duplicate
      { id = 4, subscription_url = URL, event_action = "create", event_object = "person", name = "pipedrive-lua",
        version = "1.0", http_auth_user = null, http_auth_password = null },                  -- ours, wrong version
      { id = 5, subscription_url = "https://other/", event_action = "*", event_object = "*", name = "pipedrive-lua",
        version = "2.0" },                                                                    -- another url
      { id = 6, subscription_url = URL, event_action = "*", event_object = "*", name = "pipedrive-lua2 all",
        version = "2.0" },                                                                    -- another prefix
      { id = 7, subscription_url = URL, event_action = "*", event_object = "*", name = "Zapier", version = "2.0" },
    }
    local c = fake_client{ existing = existing }
    local tr = triggers.new(c, { url = URL })
    tr:on("deal.added", fn):on("person.added", fn)
    local ok, res = tr:enable()
    assert.is_true(ok)
    assert.same({ "list", "add person.create", "delete 2", "delete 3", "delete 4" }, c.calls)
    assert.same({ 1 }, { res.kept[1].id })
    local ids = {}
    for _, w in ipairs(c.hooks) do ids[#ids + 1] = w.id end
    assert.same({ 1, 5, 6, 7, 101 }, ids)
    -- disable removes ours only
    c.calls = {}
    ok, res = tr:disable()
    assert.is_true(ok)
    assert.same({ "list", "delete 1", "delete 101" }, c.calls)
    assert.equal(2, #res.deleted)
    ids = {}
    for _, w in ipairs(c.hooks) do ids[#ids + 1] = w.id end
    assert.same({ 5, 6, 7 }, ids)
  end)

  it("replaces webhooks whose credentials no longer match", function()
    local c = fake_client{ existing = {
      { id = 1, subscription_url = URL, event_action = "create", event_object = "deal", name = "pipedrive-lua deal.create",
        version = "2.0", http_auth_user = USER, http_auth_password = "old password" },
      { id = 2, subscription_url = URL, event_action = "change", event_object = "deal", name = "pipedrive-lua deal.change",
        version = "2.0", http_auth_user = USER, http_auth_password = "********" },  -- masked: cannot tell, kept
      { id = 3, subscription_url = URL, event_action = "create", event_object = "person",
        name = "pipedrive-lua person.create", version = "2.0", http_auth_user = null, http_auth_password = null },
    } }
    local tr = triggers.new(c, { url = URL, user = USER, password = PASSWORD })
    tr:on("deal.added", fn):on("deal.updated", fn):on("person.added", fn)
    assert.is_true((tr:enable()))
    assert.same({ "list", "add deal.create", "add person.create", "delete 1", "delete 3" }, c.calls)
  end)

  it("makes room with its stale webhooks when Pipedrive says the 40 cap is reached", function()
    local c = fake_client{ cap = 2, existing = {
      { id = 1, subscription_url = URL, event_action = "*", event_object = "*", name = "pipedrive-lua *.*",
        version = "2.0" },
      { id = 2, subscription_url = "https://else/", event_action = "*", event_object = "*", name = "else",
        version = "2.0" },
    } }
    local tr = triggers.new(c, { url = URL })
    tr:on("deal.added", fn)
    assert.is_true((tr:enable()))
    assert.same({ "list", "add deal.create", "delete 1", "add deal.create" }, c.calls)
  end)

  it("returns nil, err without the password or the response body", function()
    local tr = triggers.new(fake_client{ add_fails = true }, { url = URL, user = USER, password = PASSWORD })
    tr:on("deal.added", fn)
    local ok, err = tr:enable()
    assert.is_nil(ok)
    assert.equal(400, err.status)
    assert.is_nil(err.body)
    assert.matches("creating the webhook for deal.create: rejected ***", err.message, 1, true)
    assert.is_nil(tostring(err):find(PASSWORD, 1, true))
    tr = triggers.new(fake_client{ list_fails = true }, { url = URL })
    ok, err = tr:disable()
    assert.is_nil(ok)
    assert.matches("listing webhooks", tostring(err))
  end)

  it("with no callbacks, enable removes all of ours", function()
    local c = fake_client()
    local tr = seven(triggers.new(c, { url = URL }))
    assert.is_true((tr:enable()))
    for _, k in ipairs({ "activity.added", "deal.added", "organization.added", "person.added", "deal.updated",
                         "organization.updated", "person.updated" }) do
      tr:off(k)
    end
    local ok, res = tr:enable()
    assert.is_true(ok)
    assert.equal(7, #res.deleted)
    assert.equal(0, #c.hooks)
  end)

  it("needs a client and a url", function()
    local tr = triggers.new(nil, {})
    assert.matches("no client", util.raises(tr.enable, tr))
    tr = triggers.new(fake_client(), {})
    assert.matches("no url", util.raises(tr.disable, tr))
  end)
end)

describe("secrets", function()
  it("never show in tostring, the object, logs, responses or errors", function()
    local lines = {}
    local out = {}
    local tr = triggers.new(fake_client{ add_fails = true }, {
      url = "https://u:urlpw@my.host/p?token=urltoken", user = USER, password = PASSWORD,
      log = function(line) lines[#lines + 1] = line end,
    })
    tr:on("deal.added", function() error("callback saw " .. PASSWORD .. " and " .. AUTH) end)
    out[#out + 1] = tostring(tr)
    assert.is_nil(next(tr)) -- nothing stored in the object itself
    for _, h in ipairs({ false, "Basic " .. core.base64_encode(USER .. ":nope"), AUTH }) do
      local status, headers, body = post(tr, SEVEN[2][2], { authorization = h })
      out[#out + 1] = tostring(status) .. body
      for k, v in pairs(headers) do out[#out + 1] = k .. v end
    end
    local _, err = tr:enable()
    out[#out + 1] = tostring(err)
    out[#out + 1] = err.message
    out[#out + 1] = table.concat(lines, "\n")
    local all = table.concat(out, "\n")
    assert.matches("callback saw *** and Basic ***", all, 1, true)
    assert.is_nil(all:find(PASSWORD, 1, true))
    assert.is_nil(all:find(core.base64_encode(USER .. ":" .. PASSWORD), 1, true))
    assert.is_nil(out[1]:find("urlpw", 1, true))
    assert.is_nil(out[1]:find("urltoken", 1, true))
    assert.matches("https://my.host/p", out[1], 1, true)
  end)
end)

------------------------------------------------------------------------------
-- The listener (loopback)
------------------------------------------------------------------------------
describe("triggers:listen and triggers:serve", function()
  -- POSTs from a child curl so that this process can serve meanwhile.
  -- The exit status lands in `out` (written at once by mv when curl is done).
  local function curl_bg(url, body, headers, out)
    local h = {}
    for k, v in pairs(headers or {}) do h[#h + 1] = ("-H '%s: %s'"):format(k, v) end
    local file = out .. ".body"
    local f = assert(io.open(file, "wb"))
    f:write(body)
    f:close()
    os.execute(("(curl -s -o /dev/null -w '%%{http_code}' --max-time 10 -X POST %s --data-binary @'%s' '%s'"
      .. " > '%s.tmp' 2>/dev/null; rm -f '%s'; mv '%s.tmp' '%s') &")
      :format(table.concat(h, " "), file, url, out, file, out, out))
  end
  local read = require("support.util").read_file

  it("listens on a free port, serves several requests until stop_when, checks the path", function()
    local tr = make()
    local r = recorder()
    tr:on("*", r.fn)
    local port, url = tr:listen{ port = 0, path = "/hook" }
    assert.is_true(port > 0)
    assert.equal(("http://127.0.0.1:%d/hook"):format(port), url)
    assert.equal(url, tr:url())
    assert.equal(port, tr:port())
    assert.matches("listening on port " .. port, tostring(tr))
    local outs = {}
    for i = 1, 5 do
      outs[i] = os.tmpname()
      local p = v2("create", "deal", DEAL, null, { id = "serve-" .. i })
      curl_bg(url, core.json_encode(p), { ["content-type"] = "application/json", authorization = AUTH }, outs[i])
    end
    local wrong = os.tmpname()
    curl_bg(("http://127.0.0.1:%d/other"):format(port), "{}", { authorization = AUTH }, wrong)
    local big = os.tmpname()
    curl_bg(url, ("x"):rep(1048577), { authorization = AUTH }, big)
    local function all_done()
      for _, f in ipairs(outs) do
        if (read(f) or "") == "" then return false end
      end
      return (read(wrong) or "") ~= "" and (read(big) or "") ~= ""
    end
    assert.is_true(tr:serve{ stop_when = all_done, timeout = 20 })
    for _, f in ipairs(outs) do
      assert.equal("200", read(f))
      os.remove(f)
    end
    assert.equal("404", read(wrong))
    assert.equal("413", read(big))
    os.remove(wrong)
    os.remove(big)
    assert.equal(5, #r.events)
    assert.equal(port, tr:port()) -- a listener opened by listen() stays open
    tr:close()
    tr:close()
    assert.is_nil(tr:port())
  end)

  it("returns after `timeout` seconds, and when a callback calls stop()", function()
    local tr = make()
    local t0 = os.time()
    assert.is_true(tr:serve{ port = 0, timeout = 0.2 })
    assert.is_true(os.time() - t0 <= 2)
    assert.is_nil(tr:port()) -- serve closed the listener it opened
    tr:on("deal.added", function() tr:stop() end)
    local port = tr:listen{}
    local out = os.tmpname()
    curl_bg(("http://127.0.0.1:%d/"):format(port), core.json_encode(SEVEN[2][2]),
      { ["content-type"] = "application/json", authorization = AUTH }, out)
    assert.is_true(tr:serve{ timeout = 20 })
    local t = os.time()
    while (read(out) or "") == "" and os.time() - t < 5 do os.execute("sleep 0.05") end
    assert.equal("200", read(out))
    os.remove(out)
    tr:close()
  end)

  it("refuses misuse", function()
    local tr = make()
    tr:listen{}
    assert.matches("already listening", util.raises(tr.listen, tr, {}))
    assert.matches("path must start", util.raises(function() make():listen{ path = "x" } end))
    assert.matches("timeout must be", util.raises(tr.serve, tr, { timeout = "1" }))
    tr:close()
  end)

  it("takes the path from url by default", function()
    local tr = make{ url = "https://example.com/hooks/pd?x=1" }
    local port = tr:listen{}
    assert.is_number(port)
    assert.equal("https://example.com/hooks/pd?x=1", tr:url())
    local out = os.tmpname()
    curl_bg(("http://127.0.0.1:%d/hooks/pd"):format(port), core.json_encode(SEVEN[2][2]),
      { ["content-type"] = "application/json", authorization = AUTH }, out)
    tr:serve{ stop_when = function() return (read(out) or "") ~= "" end, timeout = 10 }
    assert.equal("200", read(out))
    os.remove(out)
    tr:close()
  end)
end)
