-- triggers:handle(req, { defer = fn }) and seen stores with claim/release: the
-- pieces pipedrive.ngx.webhook builds on (answer first, run the callbacks later,
-- one claim per event across processes), here without nginx, on every Lua.
local core = require "pipedrive.core"
local triggers = require "pipedrive.triggers"

local USER, PASSWORD = "hook", "defer-pw"
local AUTH = "Basic " .. core.base64_encode(USER .. ":" .. PASSWORD)

local seq = 0
local function body(id)
  seq = seq + 1
  return core.json_encode{
    meta = { action = "create", entity = "deal", entity_id = tostring(id), id = "ev-defer-" .. id, version = "2.0",
             timestamp = "2026-11-28T12:00:00.250Z", company_id = "1", user_id = "1", attempt = seq },
    data = { id = id, title = "Deal " .. id }, previous = core.null,
  }
end

-- A seen store shared by several triggers objects, as a shared dict is by workers.
local function shared_store()
  local entries = {}
  return {
    entries = entries,
    check = function(key) return entries[key] == "done" end,
    claim = function(key)
      if entries[key] == nil then
        entries[key] = "running"
        return true
      end
      return false, entries[key] == "done" and "seen" or "busy"
    end,
    mark = function(key) entries[key] = "done" end,
    release = function(key) entries[key] = nil end,
  }
end

local function make(seen)
  local lines = {}
  local tr = triggers.new(nil, { user = USER, password = PASSWORD, seen = seen,
                                 log = function(line, level) lines[#lines + 1] = level .. " " .. line end })
  local runs = { n = 0, fail = false }
  tr:on("deal.added", function(ev)
    runs.n = runs.n + 1
    runs.last = ev.id
    if runs.fail then
      runs.fail = false
      error("fails this once")
    end
  end)
  return tr, runs, lines
end

local function post(tr, text, jobs)
  local status, _, rb = tr:handle({ method = "POST", body = text,
                                    headers = { authorization = AUTH, ["content-type"] = "application/json" } },
                                  jobs and { defer = function(job) jobs[#jobs + 1] = job end } or nil)
  return status, core.json_decode(rb)
end

describe("triggers:handle with defer", function()
  it("answers 200 accepted at once and runs the callbacks when the job runs", function()
    local tr, runs = make()
    local jobs = {}
    local text = body(1)
    local status, doc = post(tr, text, jobs)
    assert.equal(200, status)
    assert.same({ status = "accepted" }, doc)
    assert.equal(0, runs.n)
    assert.equal(1, #jobs)
    jobs[1](false)
    assert.equal(1, runs.n)
    assert.equal(1, runs.last)
    -- handled: a later copy is a duplicate and starts nothing
    status, doc = post(tr, text, jobs)
    assert.equal(200, status)
    assert.same({ status = "duplicate" }, doc)
    assert.equal(1, #jobs)
  end)

  it("leaves an event whose callback failed in the job to its redelivery", function()
    local tr, runs, lines = make()
    runs.fail = true
    local jobs = {}
    local text = body(2)
    assert.equal(200, (post(tr, text, jobs)))
    jobs[1](false)
    assert.equal(1, runs.n)
    assert.matches("callback for deal.added .* failed: .*fails this once", table.concat(lines, "\n"))
    local status, doc = post(tr, text, jobs)
    assert.equal(200, status)
    assert.same({ status = "accepted" }, doc)
    jobs[2](false)
    assert.equal(2, runs.n)
    assert.same({ status = "duplicate" }, select(2, post(tr, text, jobs)))
  end)

  it("answers 503 and keeps nothing when the host cannot defer", function()
    local store = shared_store()
    local tr, runs = make(store)
    local status, _, rb = tr:handle({ method = "POST", body = body(3),
                                      headers = { authorization = AUTH, ["content-type"] = "application/json" } },
                                    { defer = function() error("no timers left") end })
    assert.equal(503, status)
    assert.same({ error = "this event is being handled" }, core.json_decode(rb))
    assert.equal(0, runs.n)
    assert.is_nil(next(store.entries))
  end)

  it("does not run a job the host calls as premature (shutting down), and releases the event", function()
    local store = shared_store()
    local tr, runs = make(store)
    local jobs = {}
    assert.equal(200, (post(tr, body(4), jobs)))
    jobs[1](true)
    assert.equal(0, runs.n)
    assert.is_nil(next(store.entries))
  end)

  it("refuses options that are not { defer = function }", function()
    local tr = make()
    assert.has_error(function() tr:handle({ method = "POST" }, "now") end,
      "triggers:handle: opts must be a table { defer = function(job) }")
    assert.has_error(function() tr:handle({ method = "POST" }, { defer = true }) end,
      "triggers:handle: opts must be a table { defer = function(job) }")
  end)
end)

describe("a seen store with claim, shared by two triggers objects", function()
  it("gives each event to one of them: the other answers 503 while it runs, then duplicate", function()
    local store = shared_store()
    local a, runs_a = make(store)
    local b, runs_b = make(store)
    local jobs = {}
    local text = body(5)
    assert.equal(200, (post(a, text, jobs)))
    local status, doc = post(b, text, jobs)
    assert.equal(503, status)
    assert.same({ error = "this event is being handled" }, doc)
    jobs[1](false)
    assert.same({ status = "duplicate" }, select(2, post(b, text, jobs)))
    assert.equal(1, runs_a.n)
    assert.equal(0, runs_b.n)
  end)

  it("releases the claim when a callback fails without defer (500), so a redelivery runs it", function()
    local store = shared_store()
    local a, runs_a = make(store)
    local b, runs_b = make(store)
    runs_a.fail = true
    local text = body(6)
    assert.equal(500, (post(a, text)))
    assert.is_nil(next(store.entries))
    assert.equal(200, (post(b, text)))
    assert.equal("done", select(2, next(store.entries)))
    assert.equal(1, runs_a.n)
    assert.equal(1, runs_b.n)
  end)

  it("answers 503 without running the callbacks while the store fails to claim, logged once per outage", function()
    local store = shared_store()
    local claim = store.claim
    store.claim = function() error("dict is full", 0) end
    local tr, runs, lines = make(store)
    local text = body(7)
    local status, doc = post(tr, text)
    assert.equal(503, status)
    assert.same({ error = "the de-duplication store is unavailable" }, doc)
    assert.equal(0, runs.n)
    -- a store returning nil, err fails the same way; still one line for the outage
    store.claim = function() return nil, "connection refused" end
    assert.equal(503, (post(tr, text)))
    assert.equal(0, runs.n)
    local errors = {}
    for _, l in ipairs(lines) do if l:match("^error ") then errors[#errors + 1] = l end end
    assert.equal(1, #errors)
    assert.matches("failed to claim an event %(answering 503 until it works again%): dict is full", errors[1])
    -- the store is back: the redelivery runs the callbacks once, and the recovery is said
    store.claim = claim
    assert.equal(200, (post(tr, text)))
    assert.equal(1, runs.n)
    assert.matches("the seen store works again", table.concat(lines, "\n"))
    assert.same({ status = "duplicate" }, select(2, post(tr, text)))
  end)

  it("answers 503 while a check-only store fails (nil, err or a raise)", function()
    local store = { check = function() return nil, "down" end, mark = function() end }
    local tr, runs, lines = make(store)
    assert.equal(503, (post(tr, body(8))))
    store.check = function() error("down too", 0) end
    assert.equal(503, (post(tr, body(8))))
    assert.equal(0, runs.n)
    assert.matches("failed to check an event %(answering 503 until it works again%): down", table.concat(lines, "\n"))
  end)

  it("answers 200 when mark fails after the callbacks succeeded, and logs it", function()
    local store = shared_store()
    store.mark = function() return nil, "read only replica" end
    local tr, runs, lines = make(store)
    assert.equal(200, (post(tr, body(9))))
    assert.equal(1, runs.n)
    assert.matches("failed to remember an event %(a redelivery may run it again%): read only replica",
      table.concat(lines, "\n"))
  end)

  it("refuses claim or release that are not functions", function()
    assert.has_error(function()
      triggers.new(nil, { seen = { check = function() end, mark = function() end, claim = true } })
    end, "pipedrive.triggers: seen.claim and seen.release must be functions")
  end)
end)
