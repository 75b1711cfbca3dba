-- Triggers end to end: a sandbox process with real webhook delivery (curl
-- POSTs with Basic auth, retries after 0.2, 0.3, 0.5 s), the client under test
-- registering the webhooks, and pd.triggers listening on loopback in this
-- process. Records are added and changed through the client; the callbacks
-- must fire once each with the normalized event, for v2 and v1 webhooks.
local compat = require "pipedrive.compat"
local core = require "pipedrive.core"
local sandbox = require "support.sandbox"

local USER, PASSWORD = "hook", "p@ss:w0rd"
local SEVEN = { "activity.added", "deal.added", "organization.added", "person.added", "deal.updated",
                "organization.updated", "person.updated" }
local RETRIES = { "--webhook-retry-delays", "0.2,0.3,0.5" }

-- Serves until pred() holds (true) or `seconds` pass (then pred()).
local function pump(tr, pred, seconds)
  tr:serve{ stop_when = pred, timeout = seconds or 20 }
  return pred()
end

local function deliveries(sb)
  local status, log = sb.admin("GET", "/_sandbox/deliveries")
  assert.equal(200, status)
  return log
end

local function ours(pd, url)
  local out = {}
  for _, w in ipairs(assert(pd.webhooks.list())) do
    if w.subscription_url == url then out[#out + 1] = w end
  end
  return out
end

local function contains(list, x)
  for _, v in ipairs(list or {}) do
    if v == x then return true end
  end
  return false
end

-- The log lines of a triggers object, for messages on failure.
local function logger()
  local lines = {}
  return lines, function(line, level) lines[#lines + 1] = level .. " " .. line end
end

describe("triggers end to end (sandbox)", function()
  local sb, pd

  setup(function()
    sb = sandbox.start{ args = RETRIES }
    pd = sb.client()
  end)
  teardown(function()
    if pd then pd.close() end
    if sb then sb.stop() end
  end)
  before_each(function() sb.reset() end)

  for _, version in ipairs({ "2.0", "1.0" }) do
    it("fires each of the seven triggers exactly once with the normalized event (version " .. version .. ")",
      function()
        local lines, log = logger()
        local tr = pd.triggers{ user = USER, password = PASSWORD, version = version, log = log }
        local got = {}
        for _, key in ipairs(SEVEN) do
          got[key] = {}
          tr:on(key, function(ev) table.insert(got[key], ev) end)
        end
        local port, url = tr:listen{ port = 0, path = "/pipedrive" }
        assert.equal(("http://127.0.0.1:%d/pipedrive"):format(port), url)
        local ok, res = tr:enable()
        assert(ok, tostring(res))
        assert.equal(7, #res.created)

        local hooks = ours(pd, url)
        assert.equal(7, #hooks)
        local hook_ids = {}
        for _, w in ipairs(hooks) do
          hook_ids[w.id] = true
          assert.equal(version, w.version)
          assert.equal(USER, w.http_auth_user)
          assert.matches("^pipedrive%-lua ", w.name)
        end

        local deal = assert(pd.deals.add{ title = "E2E deal", value = 100 })
        local org = assert(pd.organizations.add{ name = "E2E org" })
        local person = assert(pd.persons.add{ name = "E2E person" })
        local act = assert(pd.activities.add{ subject = "E2E call", type = "call" })
        assert(pd.deals.update(deal.id, { title = "E2E deal 2" }))
        assert(pd.organizations.update(org.id, { name = "E2E org 2" }))
        assert(pd.persons.update(person.id, { name = "E2E person 2" }))

        local function all_arrived()
          for _, key in ipairs(SEVEN) do
            if #got[key] == 0 then return false end
          end
          return true
        end
        assert.is_true(pump(tr, all_arrived, 20), table.concat(lines, "\n"))
        pump(tr, function() return false end, 0.5) -- nothing more may come
        for _, key in ipairs(SEVEN) do assert.equal(1, #got[key], key) end

        local want = {
          ["deal.added"] = { deal.id, "title", "E2E deal" },
          ["organization.added"] = { org.id, "name", "E2E org" },
          ["person.added"] = { person.id, "name", "E2E person" },
          ["activity.added"] = { act.id, "subject", "E2E call" },
          ["deal.updated"] = { deal.id, "title", "E2E deal 2", "E2E deal" },
          ["organization.updated"] = { org.id, "name", "E2E org 2", "E2E org" },
          ["person.updated"] = { person.id, "name", "E2E person 2", "E2E person" },
        }
        for key, w in pairs(want) do
          local ev = got[key][1]
          local id, field, now, before = compat.unpack(w)
          assert.equal(key, ev.event)
          assert.equal(key, ev.object .. "." .. ev.action)
          assert.equal(id, ev.id)
          assert.equal("integer", compat.math_type(ev.id))
          assert.equal(now, ev.current[field], key)
          if before then
            assert.equal(before, ev.previous[field], key)
            assert.is_true(contains(ev.changed, field), key)
            assert.is_false(contains(ev.changed, "update_time"))
          else
            assert.is_nil(ev.previous)
            assert.is_nil(ev.changed)
          end
          assert.equal(version, ev.meta.version)
          assert.is_true(hook_ids[ev.meta.webhook_id], key)
          assert.equal(1, ev.meta.attempt)
          assert.is_number(ev.meta.timestamp)
          assert.is_true(math.abs(ev.meta.timestamp - os.time()) < 3 * 86400 * 365) -- a plausible epoch
          assert.equal("api", ev.meta.change_source)
          assert.equal("integer", compat.math_type(ev.meta.company_id))
          assert.equal("integer", compat.math_type(ev.meta.user_id))
          if version == "2.0" then
            assert.matches("^%x+%-%x+%-4%x+%-%x+%-%x+$", ev.meta.event_id)
            assert.equal(ev.meta.event_id, ev.raw.meta.id)
          else
            assert.is_nil(ev.meta.event_id)
            assert.equal(ev.meta.attempt - 1, ev.raw.retry)
          end
        end
        -- v2 sends only the changed fields as previous; v1 the whole record
        local prev = got["deal.updated"][1].previous
        if version == "2.0" then
          assert.same({ title = "E2E deal" }, prev)
        else
          assert.equal(100, prev.value)
        end

        -- every delivery succeeded at the first attempt
        local ok_all = pump(tr, function() return #deliveries(sb) >= 7 end, 10)
        assert.is_true(ok_all)
        for _, e in ipairs(deliveries(sb)) do
          assert.equal(200, e.status)
          assert.equal(1, e.attempt)
        end

        assert.is_true((tr:disable()))
        assert.equal(0, #ours(pd, url))
        tr:close()
        assert.is_nil(table.concat(lines, "\n"):find(PASSWORD, 1, true))
      end)
  end

  it("enable twice creates no duplicates, follows the callbacks, and disable leaves none of ours", function()
    local tr = pd.triggers{ user = USER, password = PASSWORD, log = function() end }
    for _, key in ipairs(SEVEN) do tr:on(key, function() end) end
    local _, url = tr:listen{}
    -- someone else's webhook on the same URL and one of ours from an earlier run
    assert(pd.webhooks.add{ subscription_url = url, event_action = "*", event_object = "*", name = "Someone else" })
    assert(pd.webhooks.add{ subscription_url = url, event_action = "delete", event_object = "deal",
                            name = "pipedrive-lua deal.delete", version = "2.0" })
    local ok, res = tr:enable()
    assert(ok, tostring(res))
    assert.equal(7, #res.created)
    assert.equal(1, #res.deleted)
    assert.equal(8, #ours(pd, url))
    ok, res = tr:enable()
    assert.is_true(ok)
    assert.same({ 0, 7, 0 }, { #res.created, #res.kept, #res.deleted })
    assert.equal(8, #ours(pd, url))

    -- "deal.*" covers deal.added and deal.updated: one webhook instead of two
    tr:on("deal.*", function() end)
    ok, res = tr:enable()
    assert.is_true(ok)
    assert.same({ 1, 5, 2 }, { #res.created, #res.kept, #res.deleted })
    local names = {}
    for _, w in ipairs(ours(pd, url)) do names[#names + 1] = w.name end
    table.sort(names)
    assert.same({ "Someone else", "pipedrive-lua activity.create", "pipedrive-lua deal.*",
                  "pipedrive-lua organization.change", "pipedrive-lua organization.create",
                  "pipedrive-lua person.change", "pipedrive-lua person.create" }, names)

    -- a new password replaces the webhooks that carry the old one
    local tr2 = pd.triggers{ url = url, user = USER, password = "new password", log = function() end }
    tr2:on("person.added", function() end)
    ok, res = tr2:enable()
    assert.is_true(ok)
    assert.same({ 1, 0, 6 }, { #res.created, #res.kept, #res.deleted })

    assert.is_true((tr2:disable()))
    local left = ours(pd, url)
    assert.equal(1, #left)
    assert.equal("Someone else", left[1].name)
    assert.is_true((tr:disable())) -- nothing left of ours: still fine
    tr:close()
  end)

  it("refuses wrong, missing and malformed requests with the right status and no callback", function()
    local lines, log = logger()
    local tr = pd.triggers{ user = USER, password = PASSWORD, log = log }
    local calls = 0
    tr:on("*", function() calls = calls + 1 end)
    local port, url = tr:listen{ path = "/pipedrive" }
    -- webhooks that deliver with a wrong password and with none (registered by hand)
    assert(pd.webhooks.add{ subscription_url = url, event_action = "create", event_object = "deal",
                            name = "wrong password", http_auth_user = USER, http_auth_password = "guess" })
    assert(pd.webhooks.add{ subscription_url = url, event_action = "create", event_object = "deal",
                            name = "no auth" })
    assert(pd.deals.add{ title = "Nobody may hear this" })
    -- each is tried 4 times (first attempt and 3 retries), then dropped
    assert.is_true(pump(tr, function()
      local n = 0
      for _, e in ipairs(deliveries(sb)) do
        if e.dropped then n = n + 1 end
      end
      return n == 2
    end, 20))
    for _, e in ipairs(deliveries(sb)) do assert.equal(401, e.status) end
    assert.equal(8, #deliveries(sb))

    -- hand-made requests from curl processes
    local base = ("http://127.0.0.1:%d"):format(port)
    local auth = "Authorization: Basic " .. core.base64_encode(USER .. ":" .. PASSWORD)
    local good = core.json_encode{ meta = { version = "2.0", action = "create", entity = "deal", entity_id = "1",
                                            id = "hand-made-1", attempt = 1 }, data = { id = 1 } }
    local dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir -m 700 " .. dir))
    local cases = {
      { "garbage", 400, "POST", "/pipedrive", { auth, "Content-Type: application/json" }, "not json at all" },
      { "truncated", 400, "POST", "/pipedrive", { auth, "Content-Type: application/json" }, good:sub(1, 30) },
      { "not a payload", 400, "POST", "/pipedrive", { auth, "Content-Type: application/json" }, '{"a":1}' },
      { "oversize", 413, "POST", "/pipedrive", { auth, "Content-Type: application/json" }, ("x"):rep(1048577) },
      { "wrong method", 405, "PUT", "/pipedrive", { auth, "Content-Type: application/json" }, good },
      { "wrong type", 415, "POST", "/pipedrive", { auth, "Content-Type: text/plain" }, good },
      { "wrong path", 404, "POST", "/elsewhere", { auth, "Content-Type: application/json" }, good },
      { "no auth", 401, "POST", "/pipedrive", { "Content-Type: application/json" }, good },
      { "malformed auth", 401, "POST", "/pipedrive", { "Authorization: Basic", "Content-Type: application/json" },
        good },
    }
    for i, c in ipairs(cases) do
      local body, out = dir .. "/body" .. i, dir .. "/out" .. i
      local f = assert(io.open(body, "wb"))
      f:write(c[6])
      f:close()
      local h = {}
      for _, line in ipairs(c[5]) do h[#h + 1] = "-H '" .. line .. "'" end
      os.execute(("(curl -s -o /dev/null -w '%%{http_code}' --max-time 10 -X %s %s --data-binary @%s '%s%s'"
        .. " > %s.tmp 2>/dev/null; mv %s.tmp %s) &"):format(c[3], table.concat(h, " "), body, base, c[4], out, out, out))
    end
    local read = require("support.util").read_file
    assert.is_true(pump(tr, function()
      for i = 1, #cases do
        if not read(dir .. "/out" .. i) then return false end
      end
      return true
    end, 20))
    for i, c in ipairs(cases) do
      assert.equal(tostring(c[2]), read(dir .. "/out" .. i), c[1])
    end
    os.execute("rm -rf " .. dir)
    assert.equal(0, calls)
    assert.is_nil(table.concat(lines, "\n"):find(PASSWORD, 1, true))
    assert.is_nil(table.concat(lines, "\n"):find("guess", 1, true))
    tr:close()
  end)
end)

describe("triggers end to end: failures and duplicate deliveries (sandbox --webhook-duplicate)", function()
  local sb, pd

  setup(function()
    local args = { "--webhook-duplicate" }
    for _, a in ipairs(RETRIES) do args[#args + 1] = a end
    sb = sandbox.start{ args = args }
    pd = sb.client()
  end)
  teardown(function()
    if pd then pd.close() end
    if sb then sb.stop() end
  end)
  before_each(function() sb.reset() end)

  for _, version in ipairs({ "2.0", "1.0" }) do
    it("a failing callback is called again on redelivery, succeeds once, and the duplicate is only acknowledged"
      .. " (version " .. version .. ")", function()
      local lines, log = logger()
      local tr = pd.triggers{ user = USER, password = PASSWORD, version = version, log = log }
      local attempts, successes = {}, 0
      tr:on("deal.added", function(ev)
        attempts[#attempts + 1] = ev.meta.attempt
        if #attempts == 1 then error("the first try fails") end
        successes = successes + 1
      end)
      local updates = 0
      tr:on("person.updated", function() updates = updates + 1 end)
      tr:listen{}
      assert(tr:enable())
      local deal = assert(pd.deals.add{ title = "Retried" })
      local person = assert(pd.persons.add{ name = "Twice" })
      assert(pd.persons.update(person.id, { name = "Twice 2" }))

      -- deal: attempt 1 (500), attempt 2 (200), its duplicate (200, no call); person.updated: 200 + duplicate
      local function settled()
        local log_ = deliveries(sb)
        local dup = 0
        for _, e in ipairs(log_) do
          if e.duplicate then dup = dup + 1 end
        end
        return dup == 2 and #log_ == 5
      end
      assert.is_true(pump(tr, settled, 20), table.concat(lines, "\n"))
      pump(tr, function() return false end, 0.5)
      assert.same({ 1, 2 }, attempts)
      assert.equal(1, successes)
      assert.equal(1, updates)

      local by = {}
      for _, e in ipairs(deliveries(sb)) do
        local k = e.object .. (e.duplicate and " dup" or "") .. " " .. e.attempt
        by[k] = e.status
      end
      assert.same({ ["deal 1"] = 500, ["deal 2"] = 200, ["deal dup 2"] = 200, ["person 1"] = 200,
                    ["person dup 1"] = 200 }, by)
      local text = table.concat(lines, "\n")
      assert.matches("the first try fails", text, 1, true)
      assert.matches("duplicate deal.added (id " .. deal.id .. ", attempt 2)", text, 1, true)
      assert.matches("duplicate person.updated", text, 1, true)
      assert.is_true((tr:disable()))
      tr:close()
    end)
  end
end)
