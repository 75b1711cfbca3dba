-- The fault matrix: each injected fault (sandbox /_sandbox/faults) against
-- reads, deletes and adds. Each ends in success after retries or in one clear
-- error of the right kind, within its deadline, and never a duplicate record.
-- Waits are kept small (base 0.05 s) so the whole file runs in a few seconds.
local sandbox = require "support.sandbox"
local pipedrive = require "pipedrive"
local core = require "pipedrive.core"

local raises = require("support.util").raises

local TOKEN = "faults-T0KEN-s3cret-4711"
local FAST = { base = 0.05, cap = 0.2, deadline = 5 }

describe("fault matrix", function()
  local sb, pd
  local errors_seen = {}

  setup(function()
    sb = sandbox.start{ api_token = TOKEN }
    pd = sb.client{ retries = FAST }
  end)

  teardown(function()
    pd.close()
    sb.stop()
    -- No error line ever carries the API token.
    for _, err in ipairs(errors_seen) do
      assert.is_nil(tostring(err):find(TOKEN, 1, true))
      assert.is_nil(tostring(err.message):find(TOKEN, 1, true))
    end
  end)

  before_each(function()
    sb.admin("DELETE", "/_sandbox/faults")
    sb.reset()
  end)

  local function faults(list)
    local status, body = sb.admin("POST", "/_sandbox/faults", list)
    assert.equal(200, status, body and body.error)
  end

  local function count(method, path)
    local n = 0
    for _, r in ipairs(sb.requests()) do
      if r.method == method and r.path == path then n = n + 1 end
    end
    return n
  end

  local function deals() return #sb.state().deals end

  local function failed(v, err)
    assert.is_nil(v)
    assert.is_table(err)
    errors_seen[#errors_seen + 1] = err
    assert.is_nil(tostring(err):find(TOKEN, 1, true))
    return err
  end

  local function new_deal()
    local d = assert(pd.deals.add{ title = "Seed" })
    sb.clear_requests()
    return d.id
  end

  describe("reads", function()
    it("429 without Retry-After: backoff, then success", function()
      faults{ { match = { method = "GET", path = "/api/v2/deals" }, fault = "status", status = 429, count = 2 } }
      local t = core.now()
      local list, info = pd.deals.list()
      assert.is_table(list, tostring(info))
      assert.equal(3, count("GET", "/api/v2/deals"))
      assert.is_true(core.now() - t < FAST.deadline)
    end)

    it("429 with Retry-After: waits that long, then success", function()
      local id = new_deal()
      faults{ { fault = "status", status = 429, retry_after = 0.3, count = 1 } }
      local t = core.now()
      local d = assert(pd.deals.get(id))
      assert.equal(id, d.id)
      assert.is_true(core.now() - t >= 0.29)
      assert.equal(2, count("GET", "/api/v2/deals/" .. id))
    end)

    it("503 burst: success for GET", function()
      faults{ { match = { method = "GET" }, fault = "status", status = 503, count = 3 } }
      assert.is_table((pd.deals.list()))
      assert.equal(4, count("GET", "/api/v2/deals"))
    end)

    it("a dropped connection: success for GET", function()
      faults{ { match = { method = "GET" }, fault = "drop", count = 2 } }
      assert.is_table((pd.deals.list()))
      assert.equal(3, count("GET", "/api/v2/deals"))
    end)

    it("html403: kind forbidden, not retried, no HTML in the message", function()
      faults{ { fault = "html403", count = 1 } }
      local err = failed(pd.deals.list())
      assert.equal("forbidden", err.kind)
      assert.equal(403, err.status)
      assert.equal(1, err.attempts)
      assert.is_nil(tostring(err):find("<", 1, true))
      assert.is_nil(err.message:find("<", 1, true))
      assert.equal(1, count("GET", "/api/v2/deals"))
    end)

    it("truncated and invalid JSON on a 200: kind decode", function()
      faults{ { fault = "truncate", count = 1 }, { fault = "invalid_json", count = 1 } }
      local err = failed(pd.deals.list())
      assert.equal("decode", err.kind)
      err = failed(pd.deals.list())
      assert.equal("decode", err.kind)
      assert.is_table((pd.deals.list()))
    end)
  end)

  describe("deletes", function()
    it("503 and 429 bursts: deleted after retries", function()
      local id = new_deal()
      faults{ { match = { method = "DELETE" }, fault = "status", status = 503, count = 1 },
              { match = { method = "DELETE" }, fault = "status", status = 429, count = 1 } }
      local v, err = pd.deals.delete(id)
      assert.is_not_nil(v, tostring(err))
      assert.equal(3, count("DELETE", "/api/v2/deals/" .. id))
      local _, gerr = pd.deals.get(id)
      assert.equal("not_found", gerr and gerr.kind)
    end)
  end)

  describe("adds", function()
    local function add() return pd.deals.add{ title = "Once" } end

    it("429 (twice): retried, exactly one deal", function()
      faults{ { match = { method = "POST" }, fault = "status", status = 429, count = 2 } }
      local d, err = add()
      assert.is_table(d, tostring(err))
      assert.equal(1, deals())
      assert.equal(3, count("POST", "/api/v2/deals"))
    end)

    it("503 before processing: one error of kind server, not retried, no deal", function()
      faults{ { match = { method = "POST" }, fault = "status", status = 503, count = 3 } }
      local err = failed(add())
      assert.equal("server", err.kind)
      assert.equal(1, err.attempts)
      assert.equal(0, deals())
      assert.equal(1, count("POST", "/api/v2/deals"))
    end)

    it("502 after processing: an error, the deal exists once", function()
      faults{ { match = { method = "POST" }, fault = "status", status = 502, when = "after", count = 1 } }
      local err = failed(add())
      assert.equal("server", err.kind)
      assert.equal(1, deals())
      assert.equal(1, count("POST", "/api/v2/deals"))
    end)

    it("connection dropped after processing: an error, never a duplicate", function()
      assert.is_table((pd.deals.list())) -- a kept-alive connection exists
      faults{ { match = { method = "POST" }, fault = "drop", when = "after", count = 1 } }
      local err = failed(add())
      assert.equal("network", err.kind)
      assert.equal("transfer", err.stage)
      assert.equal(1, deals())
      assert.equal(1, count("POST", "/api/v2/deals"))
    end)

    it("connection dropped before processing: an error, no deal", function()
      faults{ { match = { method = "POST" }, fault = "drop", count = 1 } }
      failed(add())
      assert.equal(0, deals())
      assert.equal(1, count("POST", "/api/v2/deals"))
    end)

    it("a timeout after sending: not retried, the deal exists once", function()
      local slow = sb.client{ retries = FAST, timeout = 0.3 }
      faults{ { match = { method = "POST" }, fault = "delay", delay = 0.6, count = 1 } }
      local err = failed(slow.deals.add{ title = "Slow" })
      assert.equal("timeout", err.kind)
      assert.equal(1, err.attempts)
      assert.equal(1, deals())
      assert.equal(1, count("POST", "/api/v2/deals"))
      slow.close()
    end)

    it("a refused connection (nothing sent) is retried even for POST", function()
      local waits = {}
      local dead = pipedrive.new{ api_token = TOKEN, base_url = "http://127.0.0.1:1",
                                  retries = { max = 2 }, sleep = function(s) waits[#waits + 1] = s end }
      local err = failed(dead.deals.add{ title = "Nowhere" })
      assert.equal("network", err.kind)
      assert.equal(3, err.attempts)
      assert.equal(2, #waits)
      dead.close()
    end)
  end)

  describe("policy", function()
    it("retries = false (per call or per client) gives the first error", function()
      faults{ { fault = "status", status = 503, count = 2 } }
      local err = failed(pd.deals.list{ retries = false })
      assert.equal(1, err.attempts)
      assert.is_nil(tostring(err):find("attempts", 1, true))
      local off = sb.client{ retries = false }
      err = failed(off.deals.list())
      assert.equal("server", err.kind)
      assert.equal(1, err.attempts)
      off.close()
      assert.equal(2, count("GET", "/api/v2/deals"))
    end)

    it("the last error says how many attempts were made", function()
      faults{ { fault = "status", status = 503 } }
      local err = failed(pd.deals.list{ retries = { max = 2 } })
      assert.equal("server", err.kind)
      assert.equal(3, err.attempts)
      assert.matches("after 3 attempts", tostring(err), 1, true)
      assert.equal(3, count("GET", "/api/v2/deals"))
    end)

    it("waits are full jitter, capped, and the deadline is respected", function()
      local waits = {}
      local c = sb.client{ retries = { max = 6, base = 0.1, cap = 0.25 }, sleep = function(s) waits[#waits + 1] = s end }
      faults{ { fault = "status", status = 503 } }
      local err = failed(c.deals.list())
      assert.equal(7, err.attempts)
      assert.equal(6, #waits)
      for i, w in ipairs(waits) do
        assert.is_true(w >= 0 and w <= math.min(0.25, 0.1 * 2 ^ (i - 1)))
      end
      c.close()
      -- A Retry-After beyond the deadline ends the retries at once.
      sb.admin("DELETE", "/_sandbox/faults")
      faults{ { fault = "status", status = 429, retry_after = 3 } }
      local t = core.now()
      err = failed(pd.deals.list{ retries = { deadline = 1 } })
      assert.equal("rate_limited", err.kind)
      assert.equal(1, err.attempts)
      assert.is_true(core.now() - t < 1)
      -- Real waits stop before the deadline.
      sb.admin("DELETE", "/_sandbox/faults")
      faults{ { fault = "status", status = 503, retry_after = 0.3 } }
      t = core.now()
      err = failed(pd.deals.list{ retries = { deadline = 1, max = 10 } })
      assert.is_true(core.now() - t < 1.2)
      assert.is_true(err.attempts >= 3 and err.attempts <= 4)
    end)

    it("429 scope: burst with a reset header, daily when the daily budget is spent", function()
      faults{ { fault = "status", status = 429, reset = 1, count = 1 },
              { fault = "status", status = 429, daily = true, count = 1 } }
      local err = failed(pd.deals.list{ retries = false })
      assert.equal("rate_limited", err.kind)
      assert.equal("burst", err.scope)
      assert.equal(1, err.retry_after)
      err = failed(pd.deals.list()) -- daily: not retried, only midnight helps
      assert.equal("daily", err.scope)
      assert.equal(1, err.attempts)
      assert.equal(2, count("GET", "/api/v2/deals"))
    end)

    it("pd.rate_limit() gives the last figures seen", function()
      assert.is_table((pd.deals.list()))
      local rl = pd.rate_limit()
      assert.is_number(rl.limit)
      assert.is_number(rl.remaining)
      assert.is_number(rl.reset)
      assert.is_number(rl.at)
    end)

    it("each takes retries too", function()
      faults{ { fault = "status", status = 503, count = 1 } }
      local n = 0
      for _ in pd.deals.each{ retries = { max = 1 } } do n = n + 1 end
      assert.equal(0, n)
    end)

    it("misuse raises", function()
      assert.matches("retries", raises(pd.deals.list, { retries = "yes" }))
      assert.matches("unknown retries option", raises(pipedrive.new, { api_token = "x", retries = { tries = 1 } }))
      assert.matches("sleep", raises(pipedrive.new, { api_token = "x", sleep = 5 }))
    end)

    it("the sandbox refuses a bad rule", function()
      local status = sb.admin("POST", "/_sandbox/faults", { { fault = "explode" } })
      assert.equal(400, status)
    end)
  end)

  -- Every fault of spec/support/fault_matrix.lua against reads, deletes and
  -- adds: success, or one error of the right kind; within the deadline; the
  -- deals that exist afterwards are exactly those the sandbox processed.
  describe("matrix", function()
    local matrix = require "support.fault_matrix"
    for _, case in ipairs(matrix.CASES) do
      for _, op in ipairs(matrix.OPS) do
        local expect = case.expect[op]
        it(op .. " under " .. case.name, function()
          local out = matrix.run(sb, case, op)
          for _, res in ipairs(out.results) do
            if res.err then errors_seen[#errors_seen + 1] = res.err end
            local ok, why = matrix.check(expect, res)
            assert(ok, why)
          end
          assert.is_true(out.elapsed < out.deadline, "past the deadline: " .. out.elapsed)
          if op == "add" then assert.equal(expect.created, out.created) end
          if expect.gone then assert.is_true(out.gone) end
          assert.is_true(out.requests >= (case.calls or 1))
        end)
      end
    end

    it("the burst limiter sends Pipedrive's headers on every answer and 429s a spent window", function()
      sb.admin("POST", "/_sandbox/rate_limit", { limit = 2, search_limit = 1 })
      local seen = {}
      for _ = 1, 3 do
        local status, _, res = sb.raw("GET", "/api/v2/deals", { ["x-api-token"] = TOKEN })
        seen[#seen + 1] = { status = status, remaining = res.headers["x-ratelimit-remaining"],
                            limit = res.headers["x-ratelimit-limit"], reset = res.headers["x-ratelimit-reset"],
                            retry_after = res.headers["retry-after"] }
      end
      local s1 = sb.raw("GET", "/api/v2/deals/search?term=ab", { ["x-api-token"] = TOKEN })
      local s2 = sb.raw("GET", "/api/v2/deals/search?term=ab", { ["x-api-token"] = TOKEN })
      local _, figures = sb.admin("GET", "/_sandbox/rate_limit")
      sb.admin("DELETE", "/_sandbox/rate_limit")
      assert.same({ 200, 200, 429 }, { seen[1].status, seen[2].status, seen[3].status })
      assert.same({ "1", "0", "0" }, { seen[1].remaining, seen[2].remaining, seen[3].remaining })
      for _, s in ipairs(seen) do
        assert.equal("2", s.limit)
        assert.is_truthy(tonumber(s.reset) and tonumber(s.reset) <= 2)
      end
      assert.is_truthy(tonumber(seen[3].retry_after) >= 1)
      assert.same({ 200, 429 }, { s1, s2 }) -- search has its own window
      assert.equal(2, figures.rate_limited)
    end)
  end)
end)
