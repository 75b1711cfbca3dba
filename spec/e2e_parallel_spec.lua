-- pd.parallel and each{ prefetch = true } end to end against the sandbox:
-- order, per-slot errors, the concurrency limit (counted by the sandbox, which
-- holds each answer back with --latency without blocking the others), retries
-- and retry waits inside a run, prefetching, and nothing left in flight.
local sandbox = require "support.sandbox"
local pipedrive = require "pipedrive"
local core = require "pipedrive.core"

local raises = require("support.util").raises

-- Lua 5.4 closes a for loop's fourth value when the loop breaks; earlier versions do not.
local CLOSES = _VERSION == "Lua 5.4"
-- Plain Lua 5.1 cannot yield across pcall: there runs are sequential and prefetch is off.
local CONCURRENT = require("pipedrive.compat").yield_across_pcall
local it_concurrent = CONCURRENT and it or pending
local FAST = { base = 0.05, cap = 0.2, deadline = 5 }

describe("pd.parallel", function()
  local sb, pd

  setup(function()
    sb = sandbox.start{ args = { "--fixtures", "60" } }
    pd = sb.client{ retries = FAST }
  end)

  teardown(function()
    pd.close()
    sb.stop()
  end)

  before_each(function()
    sb.admin("DELETE", "/_sandbox/faults")
    sb.admin("POST", "/_sandbox/latency", { seconds = 0 })
    sb.admin("DELETE", "/_sandbox/concurrency")
    sb.clear_requests()
  end)

  local function count(method, path)
    local n = 0
    for _, r in ipairs(sb.requests()) do
      if r.method == method and (path == nil or r.path == path) then n = n + 1 end
    end
    return n
  end

  local function getters(n, id_of)
    local fns = {}
    for i = 1, n do
      local id = id_of and id_of(i) or i
      fns[i] = function() return pd.deals.get(id) end
    end
    return fns
  end

  it("returns each function's results in the caller's order", function()
    sb.admin("POST", "/_sandbox/latency", { seconds = 0.01 })
    local results, failed = pd.parallel(getters(40, function(i) return 41 - i end), { concurrency = 7 })
    assert.equal(0, failed)
    assert.equal(40, #results)
    for i, slot in ipairs(results) do
      assert.is_true(slot.ok)
      assert.equal(41 - i, slot.value.id)
      assert.equal(41 - i, slot[1].id)
      assert.equal(200, slot.info.status)
      assert.equal(slot.info, slot[2])
    end
    assert.equal(40, count("GET"))
    assert.equal(0, pd.in_flight())
  end)

  it("gives each slot its own error: an API error, a raised string, a raised table", function()
    local boom = setmetatable({ kind = "mine", message = "custom" }, core.error_mt)
    local results, failed = pd.parallel({
      function() return pd.deals.get(1) end,
      function() return pd.deals.get(999999) end,
      function() error("plain failure", 0) end,
      function() error(boom) end,
      function() return pd.deals.get(2) end,
      function() end,
    }, { concurrency = 3 })
    assert.equal(3, failed)
    assert.equal(1, results[1].value.id)
    assert.is_false(results[2].ok)
    assert.equal("not_found", results[2].err.kind)
    assert.is_nil(results[2][1])
    assert.equal(results[2].err, results[2][2])
    assert.is_false(results[3].ok)
    assert.is_true(results[3].raised)
    assert.equal("plain failure", results[3].err)
    assert.equal(boom, results[4].err)
    assert.equal(2, results[5].value.id)
    assert.is_true(results[6].ok) -- returned nothing: not a failure
    assert.equal(0, results[6].n)
  end)

  it("never has more than `concurrency` requests in flight, and reaches it", function()
    sb.admin("POST", "/_sandbox/latency", { seconds = 0.05 })
    for _, conc in ipairs({ 1, 5, 16 }) do
      sb.admin("DELETE", "/_sandbox/concurrency")
      local _, failed = pd.parallel(getters(48, function(i) return i % 60 + 1 end), { concurrency = conc })
      assert.equal(0, failed)
      local _, st = sb.admin("GET", "/_sandbox/concurrency")
      assert.equal(CONCURRENT and conc or 1, st.peak_in_flight)
      assert.equal(0, st.held)
    end
  end)

  it_concurrent("runs 64 calls with 50 ms latency at concurrency 16 close to 4 round trips", function()
    sb.admin("POST", "/_sandbox/latency", { seconds = 0.05 })
    local t = core.now()
    local _, failed = pd.parallel(getters(64, function(i) return i % 60 + 1 end), { concurrency = 16 })
    local wall = core.now() - t
    assert.equal(0, failed)
    -- sequential would take 64 x 50 ms = 3.2 s; four waves take 0.2 s
    assert.is_true(wall < 1.6, ("took %.2f s"):format(wall))
  end)

  it_concurrent("retries inside a run, and a retry wait does not hold up the others", function()
    sb.admin("POST", "/_sandbox/faults", {
      { match = { method = "GET", path = "/api/v2/deals/3" }, fault = "status", status = 503, count = 2 },
      { match = { method = "GET", path = "/api/v2/deals/1" }, fault = "status", status = 429, retry_after = 0.5,
        count = 1 },
    })
    local order = {}
    local results, failed = pd.parallel(getters(12), {
      concurrency = 12, on_result = function(i) order[#order + 1] = i end,
    })
    assert.equal(0, failed)
    for i = 1, 12 do assert.equal(i, results[i].value.id) end
    assert.equal(2, count("GET", "/api/v2/deals/3") - 1)
    assert.equal(2, count("GET", "/api/v2/deals/1"))
    assert.equal(15, count("GET"))
    -- the call waiting 0.5 s for its retry finished last; all others before it
    assert.equal(12, #order)
    assert.equal(1, order[12])
  end)

  it("gives up per slot after the retries, with the attempts counted", function()
    sb.admin("POST", "/_sandbox/faults", {
      { match = { method = "GET", path = "/api/v2/deals/2" }, fault = "status", status = 503 },
    })
    local results, failed = pd.parallel(getters(4), { concurrency = 4 })
    assert.equal(1, failed)
    assert.equal("server", results[2].err.kind)
    assert.equal(FAST.max or 6, results[2].err.attempts)
    assert.is_true(results[1].ok and results[3].ok and results[4].ok)
  end)

  it("reports a timeout per slot", function()
    local slow = sb.client{ timeout = 0.2, retries = false }
    sb.admin("POST", "/_sandbox/latency", { seconds = 1 })
    local fns = {}
    for i = 1, 3 do fns[i] = function() return slow.deals.get(i) end end
    local results, failed = slow.parallel(fns, { concurrency = 3 })
    assert.equal(3, failed)
    for i = 1, 3 do assert.equal("timeout", results[i].err.kind) end
    slow.close()
  end)

  it("adds records in parallel exactly once each", function()
    local before = #sb.state().deals
    local fns = {}
    for i = 1, 20 do fns[i] = function() return pd.deals.add{ title = "P" .. i } end end
    local results, failed = pd.parallel(fns, { concurrency = 8 })
    assert.equal(0, failed)
    for i = 1, 20 do assert.equal("P" .. i, results[i].value.title) end
    assert.equal(before + 20, #sb.state().deals)
    assert.equal(20, count("POST", "/api/v2/deals"))
  end)

  it("runs a nested parallel inside a task, and plain coroutines of the caller's own", function()
    local results = pd.parallel({
      function()
        local inner = pd.parallel(getters(3))
        return inner[1].value.id + inner[2].value.id + inner[3].value.id
      end,
      function()
        local co = coroutine.wrap(function() coroutine.yield(pd.deals.get(5).id) end)
        return co()
      end,
    })
    assert.equal(6, results[1].value)
    assert.equal(5, results[2].value)
  end)

  it("raises on misuse, naming the function and the field", function()
    assert.matches("pipedrive.parallel: expected a list of functions", raises(pd.parallel, "x"))
    assert.matches("item 2 is not a function", raises(pd.parallel, { function() end, 5 }))
    assert.matches("no holes", raises(pd.parallel, { [1] = function() end, [3] = function() end }))
    assert.matches("concurrency must be an integer", raises(pd.parallel, {}, { concurrency = 0 }))
    assert.matches("unknown option 'limit'", raises(pd.parallel, {}, { limit = 2 }))
    assert.same({}, (pd.parallel({})))
  end)

  it("an error in on_result ends the run and leaves nothing in flight", function()
    sb.admin("POST", "/_sandbox/latency", { seconds = 0.05 })
    local msg = raises(pd.parallel, getters(10), { concurrency = 4, on_result = function() error("stop here", 0) end })
    assert.equal("stop here", msg)
    assert.equal(0, pd.in_flight())
    assert.equal(7, pd.deals.get(7).id) -- the client still works
  end)

  it("is also a method and a module function of the default client", function()
    local results = pd:parallel(getters(2))
    assert.equal(2, results[2].value.id)
    pipedrive.configure{ api_token = sb.api_token, base_url = sb.url }
    results = pipedrive.parallel{ function() return pipedrive.deals.get(3) end }
    assert.equal(3, results[1].value.id)
  end)

  it("with a Lua transport runs the functions one after another, in order", function()
    local http = core.http_new{}
    local seen = {}
    local lua_pd = sb.client{ transport = function(req)
      seen[#seen + 1] = req.url:match("/deals/(%d+)")
      return http:perform(req)
    end }
    local fns = {}
    for i = 1, 5 do fns[i] = function() return lua_pd.deals.get(i) end end
    local results, failed = lua_pd.parallel(fns, { concurrency = 5 })
    assert.equal(0, failed)
    assert.same({ "1", "2", "3", "4", "5" }, seen)
    assert.equal(4, results[4].value.id)
    lua_pd.close()
    http:close()
  end)

  it("asks for compressed answers on lists, not on single records", function()
    assert(pd.deals.list{ limit = 2 })
    assert(pd.deals.get(1))
    local log = sb.requests()
    assert.equal("/api/v2/deals", log[1].path)
    assert.matches("gzip", log[1].headers["accept-encoding"])
    assert.equal("/api/v2/deals/1", log[2].path)
    assert.is_nil(log[2].headers["accept-encoding"])
  end)

  it("closes idempotently; a closed client refuses a run", function()
    local c = sb.client{}
    assert.equal(1, c.parallel(getters(1))[1].value.id)
    c.close()
    c.close()
    assert.matches("closed", raises(c.parallel, getters(1)))
    assert.equal(0, c.in_flight())
  end)
end)

describe("each{ prefetch = true }", function()
  local sb, pd

  setup(function()
    sb = sandbox.start{ args = { "--fixtures", "0" } }
    sb.bulk("deal", 1234, "Pre")
    pd = sb.client{}
  end)

  teardown(function()
    pd.close()
    sb.stop()
  end)

  before_each(function()
    sb.admin("POST", "/_sandbox/latency", { seconds = 0 })
    sb.clear_requests()
  end)

  local function pages()
    local n = 0
    for _, r in ipairs(sb.requests()) do
      if r.path == "/api/v2/deals" then n = n + 1 end
    end
    return n
  end

  it("yields the same records in the same order as without it, one request per page", function()
    local plain = {}
    for d in pd.deals.each{ limit = 100 } do plain[#plain + 1] = d.id end
    sb.clear_requests()
    local pre = {}
    for d in pd.deals.each{ limit = 100, prefetch = true } do pre[#pre + 1] = d.id end
    assert.equal(1234, #pre)
    assert.same(plain, pre)
    assert.equal(13, pages())
    assert.equal(0, pd.in_flight())
  end)

  it("has the next page's request at the server while the caller works on this page", function()
    sb.admin("POST", "/_sandbox/latency", { seconds = 1 })
    local n = 0
    local held
    local iter, state, control, stop = pd.deals.each{ limit = 500, prefetch = true }
    for _ in iter, state, control, stop do
      n = n + 1
      if n == 1 then
        core.sleep(0.2)
        held = pages()
        break
      end
    end
    if not CONCURRENT then return assert.equal(1, held) end -- no prefetch on plain 5.1
    assert.equal(2, held) -- page 2 was asked for before page 1 was used up
    assert.equal(CLOSES and 0 or 1, pd.in_flight()) -- before 5.4 a break closes nothing...
    stop() -- ...and the iterator's fourth value drops the prefetch on every version
    assert.equal(0, pd.in_flight())
  end)

  it("without prefetch nothing is asked for ahead", function()
    sb.admin("POST", "/_sandbox/latency", { seconds = 0.3 })
    for _ in pd.deals.each{ limit = 500, max_items = 1 } do
      core.sleep(0.2)
      assert.equal(1, pages())
    end
  end)

  it("a break drops the prefetch in flight; the client goes on", function()
    sb.admin("POST", "/_sandbox/latency", { seconds = 0.2 })
    local n = 0
    local iter, state, control, stop = pd.deals.each{ limit = 100, prefetch = true }
    for _ in iter, state, control, stop do
      n = n + 1
      if n == 150 then break end
    end
    assert.equal(150, n)
    if not CLOSES and stop then stop() end
    assert.equal(0, pd.in_flight())
    assert.is_table(pd.deals.get(1))
  end)

  it("raises a failed page at the loop, and refuses a non-boolean prefetch", function()
    sb.admin("POST", "/_sandbox/faults", {
      { match = { method = "GET", path = "/api/v2/deals" }, fault = "status", status = 400, count = 1, when = "before" },
    })
    local c = sb.client{ retries = false }
    local ok, err = pcall(function()
      for _ in c.deals.each{ limit = 500, prefetch = true } do end
    end)
    sb.admin("DELETE", "/_sandbox/faults")
    assert.is_false(ok)
    assert.equal("validation", err.kind)
    assert.matches("prefetch must be a boolean", raises(c.deals.each, { prefetch = "yes" }))
    c.close()
  end)
end)
