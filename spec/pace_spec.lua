-- Pacing that plans ahead (pace.lua, pace_shared.lua) against the sandbox's
-- own burst limiter (--rate-limit 40: 40 requests per 2-second window, 20 per
-- second), in one process and in three OS processes sharing a real Redis.
-- The issue's bar: 0 answers 429 and an elapsed time within 1.1x of the
-- limit's ideal (N / 20 s). The long runs use the issue's sizes under Lua 5.4
-- (the main run); the other interpreters of `make test-all` run smaller ones.
local pipedrive = require "pipedrive"
local core = require "pipedrive.core"
local sandbox = require "support.sandbox"
local redis = require "support.redis"
local compat = require "pipedrive.compat"

local MAIN = (os.getenv("LUA") or "lua5.4"):match("lua5%.4$") ~= nil
local LIMIT = 40
local RATE = LIMIT / 2

local function figures(sb)
  return select(2, sb.admin("GET", "/_sandbox/rate_limit"))
end

local function person_names(sb)
  local names, n = {}, 0
  for _, p in ipairs(sb.state().persons) do
    names[p.name] = (names[p.name] or 0) + 1
    n = n + 1
  end
  return names, n
end

-- Workers as OS processes (spec/support/pace_worker.lua), started together;
-- returns a function that waits for their JSON reports.
local function start_workers(sb, redis_url, count, n, conc, prefix)
  local dir = os.tmpname()
  os.remove(dir)
  assert(compat.execute("mkdir -p '" .. dir .. "'"))
  local lua = os.getenv("LUA") or "lua5.4"
  local start_at = core.now() + 1
  local env = ("LUA_PATH=%q LUA_CPATH=%q"):format(package.path, package.cpath)
  for w = 1, count do
    local cmd = ("%s %s spec/support/pace_worker.lua %s %s %s %d %d %.6f %s/w%d.json %s%d >%s/w%d.log 2>&1 &")
      :format(env, lua, sb.url, sb.api_token, redis_url or "-", n, conc, start_at, dir, w, prefix, w, dir, w)
    assert(compat.execute(cmd))
  end
  return start_at, function(timeout)
    local reports = {}
    local deadline = core.now() + timeout
    for w = 1, count do
      local path = ("%s/w%d.json"):format(dir, w)
      local f = io.open(path)
      while not f and core.now() < deadline do
        core.sleep(0.2)
        f = io.open(path)
      end
      assert(f, "worker " .. w .. " did not finish: " .. tostring(io.open(dir .. "/w" .. w .. ".log"):read("*a")))
      -- the file is written in one go, then closed: wait for the closing brace
      local text = f:read("*a")
      f:close()
      while not text:find("}%s*$") do
        core.sleep(0.05)
        f = io.open(path); text = f:read("*a"); f:close()
      end
      reports[w] = core.json_decode(text)
    end
    compat.execute("rm -rf '" .. dir .. "'")
    return reports
  end
end

describe("pacing", function()
  describe("one process", function()
    local sb
    before_each(function() sb = sandbox.start{ args = { "--rate-limit", LIMIT } } end)
    after_each(function() sb.stop() end)

    it("pd.parallel of many adds at concurrency 16 meets no 429 and keeps the limit's pace", function()
      local n = MAIN and 1000 or 200
      local forced = 0
      local pd = sb.client{ pace = true, log = function(ev) if ev.forced then forced = forced + 1 end end }
      local fns = {}
      for i = 1, n do fns[i] = function() return pd.persons.add{ name = "one-" .. i } end end
      local t = core.now()
      local results, failed = pd.parallel(fns, { concurrency = 16 })
      local elapsed = core.now() - t
      pd.close()
      assert.equal(0, failed, failed > 0 and tostring(results[1].err) or nil)
      assert.equal(0, figures(sb).rate_limited)
      assert.equal(0, forced) -- no call waited past max_wait (then it would be sent anyway)
      local ideal = n / RATE
      assert.is_true(elapsed <= 1.1 * ideal, ("elapsed %.2f s, ideal %.2f s"):format(elapsed, ideal))
      -- and not faster than the limit allows (the windows were really used)
      assert.is_true(elapsed >= ideal - 2 - 0.5, ("elapsed %.2f s, ideal %.2f s"):format(elapsed, ideal))
      local names, count = person_names(sb)
      for i = 1, n do assert.equal(1, names["one-" .. i]) end
      assert.is_true(count >= n)
    end)

    it("without pace the same burst meets 429s (the bar the pacer is measured against)", function()
      local pd = sb.client{ retries = { base = 0.05, deadline = 30 } }
      local fns = {}
      for i = 1, 100 do fns[i] = function() return pd.persons.add{ name = "raw-" .. i } end end
      local _, failed = pd.parallel(fns, { concurrency = 16 })
      pd.close()
      assert.equal(0, failed)
      assert.is_true(figures(sb).rate_limited > 0)
    end)

    it("goes one request at a time until an answer names the limit, unless pace.limit says it", function()
      if not compat.yield_across_pcall then
        pending("plain Lua 5.1 runs pd.parallel one call at a time: nothing to tell apart")
        return
      end
      -- the kinds of the first two log events of four parallel lists under `pace`
      local function first_two(pace)
        local seen = {}
        local pd = sb.client{ pace = pace, log = function(ev)
          if ev.type == "request" or ev.type == "response" then seen[#seen + 1] = ev.type end
        end }
        local fns = {}
        for i = 1, 4 do fns[i] = function() return pd.persons.list{ limit = 1 } end end
        local _, failed = pd.parallel(fns, { concurrency = 4 })
        pd.close()
        assert.equal(0, failed)
        return seen[1] .. "," .. seen[2]
      end
      -- the first request's answer came before the second request left
      assert.equal("request,response", first_two(true))
      -- with the limit known beforehand, the four leave together
      assert.equal("request,request", first_two{ limit = LIMIT })
    end)

    it("a 429 met anyway (another program on the token) closes the window for its Retry-After", function()
      local status = sb.admin("POST", "/_sandbox/faults",
        { { match = { method = "GET", path = "/api/v2/deals" }, fault = "status", status = 429, retry_after = 1, count = 1 } })
      assert.equal(200, status)
      local waits = {}
      local pd = sb.client{ pace = true, retries = false,
                            sleep = function(s) waits[#waits + 1] = s; core.sleep(s) end }
      local _, err = pd.deals.list()
      assert.equal(429, err.status)
      local t = core.now()
      assert.is_table((pd.deals.list()))
      assert.is_true(core.now() - t >= 0.9, "the second call waited for the Retry-After")
      assert.is_true(#waits >= 1)
      pd.close()
    end)
  end)

  describe("the daily budget", function()
    local sb
    before_each(function() sb = sandbox.start() end)
    after_each(function() sb.stop() end)

    it("a call that would exceed pace.daily fails before it is sent, scope daily", function()
      local pd = sb.client{ pace = { daily = 12 } }  -- persons.add costs 5 (x-token-cost, v2)
      assert.is_table((pd.persons.add{ name = "d1" }))
      assert.is_table((pd.persons.add{ name = "d2" }))
      sb.clear_requests()
      local value, err = pd.persons.add{ name = "d3" }
      assert.is_nil(value)
      assert.equal("rate_limited", err.kind)
      assert.equal("daily", err.scope)
      assert.matches("daily token budget %(12%) would be exceeded: 10 spent today", err.message)
      assert.equal(1, err.attempts)
      assert.equal(0, #sb.requests())
      assert.is_table((pd.persons.get(1) or {})) -- a get costs 1: 11 of 12
      pd.close()
    end)

    it("after x-daily-requests-left: 0, POST and PUT fail before they are sent; GET goes on", function()
      local status = sb.admin("POST", "/_sandbox/faults",
        { { match = { method = "POST", path = "/api/v2/persons" }, fault = "status", status = 429, daily = true, count = 1 } })
      assert.equal(200, status)
      local pd = sb.client{ pace = true }
      local _, err = pd.persons.add{ name = "x" }
      assert.equal("daily", err.scope)
      sb.clear_requests()
      _, err = pd.persons.add{ name = "y" }
      assert.equal("daily", err.scope)
      assert.matches("not sent", err.message)
      assert.equal(0, #sb.requests())
      assert.is_table((pd.persons.list()))
      pd.close()
    end)

    it("misuse raises naming the option", function()
      local function raises(o)
        local ok, e = pcall(pipedrive.new, { api_token = "x", pace = o })
        assert.is_false(ok)
        return tostring(e)
      end
      assert.matches("pace.daily must be a positive integer", raises{ daily = 0 })
      assert.matches("pace.limit must be a positive integer", raises{ limit = 1.5 })
      assert.matches("pace.shared must be a pipedrive.redis object", raises{ shared = {} })
      assert.matches("pace.window must be a positive number", raises{ window = 0 })
      assert.matches("pace.key must be", raises{ key = "a b" })
      assert.matches("unknown pace option 'slow'", raises{ slow = 1 })
    end)
  end)

  describe("three processes sharing Redis", function()
    if not redis.available() then
      pending("redis-server or pipedrive.hiredis missing (./run deps installs them)")
      return
    end
    local sb, srv
    before_each(function()
      srv = redis.start()
      sb = sandbox.start{ args = { "--rate-limit", LIMIT } }
    end)
    after_each(function()
      sb.stop()
      srv:stop()
    end)

    it("count the windows together: no 429, within 1.1x of the limit's ideal", function()
      local n = tonumber(os.getenv("PACE_N") or "") or (MAIN and 300 or 60)
      local start_at, wait = start_workers(sb, srv.url, 3, n, 16, "s")
      local reports = wait(3 * n / RATE * 1.5 + 30)
      local last = 0
      for w, r in ipairs(reports) do
        assert.equal(0, r.failed, "worker " .. w .. ": " .. tostring(r.errors[1]))
        assert.equal(0, #r.logs, table.concat(r.logs, " | ")) -- never fell back
        assert.equal(0, r.forced) -- no call waited past max_wait
        if r.ended > last then last = r.ended end
      end
      local elapsed, ideal = last - start_at, 3 * n / RATE
      assert.equal(0, figures(sb).rate_limited)
      assert.is_true(elapsed <= 1.1 * ideal, ("elapsed %.2f s, ideal %.2f s"):format(elapsed, ideal))
      local names = person_names(sb)
      for w = 1, 3 do
        for i = 1, n do assert.equal(1, names[("s%d-%d"):format(w, i)]) end
      end
    end)

    it("counts the daily budget of every client of the token together, under keys that never hold the token", function()
      local shared = pipedrive.redis{ url = srv.url, prefix = "t:" }
      local a = sb.client{ pace = { shared = shared, daily = 12 } }
      local b = sb.client{ pace = { shared = pipedrive.redis{ url = srv.url, prefix = "t:" }, daily = 12 } }
      assert.is_table((a.persons.add{ name = "daily-a" }))   -- 5 of 12
      assert.is_table((b.persons.add{ name = "daily-b" }))   -- 10 of 12, counted in Redis
      local value, err = a.persons.add{ name = "daily-c" }
      assert.is_nil(value)
      assert.equal("daily", err.scope)
      assert.matches("10 spent today", err.message)
      local keys = srv:cli("KEYS", "*")
      assert.matches("t:pace:", keys)
      assert.is_nil(keys:find(sb.api_token, 1, true))
      for key in keys:gmatch("[^\n]+") do assert.matches("^t:", key) end
      a.close(); b.close(); shared:close()
    end)

    it("Redis stopped mid-run and started again: local fallback said once, every add done once", function()
      local n = 120 -- long enough (18 s at 20/s) to outlast the outage on every interpreter
      local start_at, wait = start_workers(sb, srv.url, 3, n, 8, "r")
      core.sleep(math.max(0, start_at - core.now()) + 1.5)
      srv:kill()
      core.sleep(2.5)
      srv:restart()
      local reports = wait(3 * n / RATE * 3 + 60)
      local names = person_names(sb)
      for w, r in ipairs(reports) do
        assert.equal(0, r.failed, "worker " .. w .. ": " .. tostring(r.errors[1]))
        -- fell back once, came back once (in that order)
        assert.equal(2, #r.logs, table.concat(r.logs, " | "))
        assert.matches("Redis is unreachable: pacing falls back", r.logs[1])
        assert.matches("counted in Redis again", r.logs[2])
        for i = 1, n do assert.equal(1, names[("r%d-%d"):format(w, i)], ("r%d-%d"):format(w, i)) end
      end
    end)
  end)
end)
