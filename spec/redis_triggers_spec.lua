-- Three webhook listener processes sharing one seen store in a real Redis
-- (shared:seen()): every event delivered to all three at once, and again later,
-- runs its callbacks once in total; a failing callback runs again on a
-- redelivery; while Redis is down the listeners answer 503 and run nothing, and
-- after it is back a redelivery runs the callback once (issue 16).
local core = require "pipedrive.core"
local redis = require "support.redis"
local proc = require "support.process"
local util = require "support.util"

if not redis.available() then
  describe("webhook listeners sharing Redis", function()
    pending("redis-server or the pipedrive.hiredis module is missing")
  end)
  return
end

local AUTH = "hook:hook-pw-R7"

local function q(s) return "'" .. tostring(s):gsub("'", [['\'']]) .. "'" end

local function body(id, title, attempt)
  return core.json_encode{
    meta = { action = "create", entity = "deal", entity_id = tostring(id), id = "ev-redis-" .. id, version = "2.0",
             timestamp = "2026-11-28T12:00:00.250Z", company_id = "1", user_id = "1", attempt = attempt or 1 },
    data = { id = id, title = title or ("Deal " .. id) }, previous = core.null,
  }
end

describe("webhook listeners sharing Redis", function()
  local srv, dir, listeners

  setup(function()
    srv = redis.start()
    dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir -m 700 " .. q(dir)))
    listeners = {}
    for i = 1, 3 do
      local runs, log = ("%s/runs-%d"):format(dir, i), ("%s/log-%d"):format(dir, i)
      listeners[i] = proc.spawn{ script = "spec/support/redis_listener.lua", log = log, timeout = 10,
        args = { "--redis", srv.url, "--prefix", "hooks:", "--runs", runs, "--flags", dir } }
      listeners[i].runs, listeners[i].logfile = runs, log
    end
  end)

  teardown(function()
    for _, l in ipairs(listeners or {}) do l:stop() end
    if srv then srv:stop() end
    if dir and dir:match("^/tmp/") then os.execute("rm -rf " .. q(dir)) end
  end)

  -- POSTs `text` to every listener at the same time (one curl each, in the
  -- background); returns the answers in listener order: { status, doc }.
  local function deliver(text)
    local input = dir .. "/body.json"
    local f = assert(io.open(input, "wb"))
    f:write(text)
    f:close()
    local cmds = {}
    for i, l in ipairs(listeners) do
      cmds[i] = ("curl -s -m 10 -u %s -H 'content-type: application/json' --data-binary @%s -o %s -w '%%{http_code}'"
        .. " %s/hook > %s &"):format(q(AUTH), q(input), q(dir .. "/answer-" .. i), l.url, q(dir .. "/status-" .. i))
    end
    assert(os.execute(table.concat(cmds, " ") .. " wait"))
    local out = {}
    for i in ipairs(listeners) do
      local status = tonumber(util.read_file(dir .. "/status-" .. i))
      out[i] = { status = status, doc = core.json_decode(util.read_file(dir .. "/answer-" .. i) or "null") }
    end
    return out
  end

  -- How many times each listener's callback ran for the deal `id`, summed.
  local function runs(id)
    local n = 0
    for _, l in ipairs(listeners) do
      for line in (util.read_file(l.runs) or ""):gmatch("[^\n]+") do
        if line == tostring(id) then n = n + 1 end
      end
    end
    return n
  end

  local function statuses(answers)
    local t = {}
    for i, a in ipairs(answers) do t[i] = a.status end
    table.sort(t)
    return table.concat(t, ",")
  end

  local function count(answers, status, what)
    local n = 0
    for _, a in ipairs(answers) do
      if a.status == status and (what == nil or (a.doc and (a.doc.status == what or a.doc.error == what))) then
        n = n + 1
      end
    end
    return n
  end

  it("runs each event's callbacks once in total, delivered to all three at once and again later", function()
    for id = 1, 5 do
      local first = deliver(body(id))
      -- one listener runs it (0.3 s); the two others find it claimed: busy, Pipedrive retries
      assert.equal(1, count(first, 200, "ok"), statuses(first))
      assert.equal(2, count(first, 503, "this event is being handled"), statuses(first))
      assert.equal(1, runs(id))
    end
    for id = 1, 5 do
      local again = deliver(body(id, nil, 2))
      assert.equal(3, count(again, 200, "duplicate"), statuses(again))
      assert.equal(1, runs(id))
    end
  end)

  it("runs a failed callback again on a redelivery, then marks the event", function()
    local id = 10
    local first = deliver(body(id, "fail once"))
    assert.equal(1, count(first, 500), statuses(first))
    assert.equal(2, count(first, 503), statuses(first))
    assert.equal(1, runs(id))
    local second = deliver(body(id, "fail once", 2))
    assert.equal(1, count(second, 200, "ok"), statuses(second))
    assert.equal(2, count(second, 503, "this event is being handled"), statuses(second))
    assert.equal(2, runs(id))
    local third = deliver(body(id, "fail once", 3))
    assert.equal(3, count(third, 200, "duplicate"), statuses(third))
    assert.equal(2, runs(id))
  end)

  it("answers 503 while Redis is down (logged once), and runs the redelivery once when it is back", function()
    local id = 20
    srv:kill()
    for attempt = 1, 2 do
      local down = deliver(body(id, nil, attempt))
      assert.equal(3, count(down, 503, "the de-duplication store is unavailable"), statuses(down))
    end
    assert.equal(0, runs(id))
    for _, l in ipairs(listeners) do
      local log = util.read_file(l.logfile)
      local _, lines = log:gsub("the seen store failed to claim an event %(answering 503 until it works again%)", "")
      assert.equal(1, lines, log)
      assert.matches("redis_unavailable", log)
      assert.not_matches("hook%-pw%-R7", log)
    end
    srv:restart()
    core.sleep(1.2) -- the listeners' retry interval after a failed connect
    local back = deliver(body(id, nil, 3))
    assert.equal(1, count(back, 200, "ok"), statuses(back))
    assert.equal(2, count(back, 503, "this event is being handled"), statuses(back))
    assert.equal(1, runs(id))
    local later = deliver(body(id, nil, 4))
    assert.equal(3, count(later, 200, "duplicate"), statuses(later))
    assert.equal(1, runs(id))
    for _, l in ipairs(listeners) do
      assert.matches("the seen store works again", util.read_file(l.logfile))
    end
  end)
end)
