-- Pacing from the rate-limit headers, redirects (capped; credentials only to
-- the same origin) and the debug hook, end to end against sandboxes.
local sandbox = require "support.sandbox"
local pipedrive = require "pipedrive"
local core = require "pipedrive.core"

local raises = require("support.util").raises

local TOKEN = "reliab-T0KEN-9f8e7d6c5b4a"
local OTHER = "other-T0KEN-0a1b2c3d4e5f"

describe("reliability", function()
  local sb, other

  setup(function()
    sb = sandbox.start{ api_token = TOKEN }
    other = sandbox.start{ api_token = OTHER }
  end)

  teardown(function()
    sb.stop()
    other.stop()
  end)

  before_each(function()
    sb.admin("DELETE", "/_sandbox/faults")
    sb.admin("DELETE", "/_sandbox/rate_limit")
    sb.reset()
    other.reset()
  end)

  local function faults(s, list)
    local status, body = s.admin("POST", "/_sandbox/faults", list)
    assert.equal(200, status, body and body.error)
  end

  describe("pacing", function()
    it("without pace a burst meets 429s (then retries); with pace it slows down and meets none", function()
      sb.admin("POST", "/_sandbox/rate_limit", { limit = 3 })
      local plain = sb.client{ retries = { base = 0.05, deadline = 10 } }
      for _ = 1, 5 do assert.is_table((plain.deals.list())) end
      plain.close()
      local _, figures = sb.admin("GET", "/_sandbox/rate_limit")
      assert.is_true(figures.rate_limited >= 1)

      sb.admin("DELETE", "/_sandbox/rate_limit")
      sb.admin("POST", "/_sandbox/rate_limit", { limit = 3 })
      local waits, events = {}, {}
      local paced = sb.client{ pace = true, retries = false,
                               sleep = function(s) waits[#waits + 1] = s; core.sleep(s) end,
                               log = function(ev) if ev.type == "pace" then events[#events + 1] = ev end end }
      local t = core.now()
      for _ = 1, 7 do
        local list, err = paced.deals.list()
        assert.is_table(list, tostring(err))
      end
      local elapsed = core.now() - t
      paced.close()
      _, figures = sb.admin("GET", "/_sandbox/rate_limit")
      assert.equal(0, figures.rate_limited)
      -- 3 per 2-second window: calls 4-6 wait for the second window, call 7 for the third
      assert.is_true(elapsed >= 4 and elapsed < 6, "elapsed " .. elapsed)
      local long = 0
      for _, w in ipairs(waits) do
        assert.is_true(w > 0 and w <= 2.01)
        if w > 1 then long = long + 1 end
      end
      assert.equal(2, long) -- before call 4 and before call 7
      assert.is_true(#events >= 2)
      assert.equal("api", events[1].bucket)
      assert.is_true(events[1].wait > 1)
    end)

    it("search is paced in its own window; reserve and max_wait bound it", function()
      sb.admin("POST", "/_sandbox/rate_limit", { limit = 100, search_limit = 2 })
      local waits = {}
      local pd = sb.client{ pace = { reserve = 0, max_wait = 0.5 }, retries = false,
                            sleep = function(s) waits[#waits + 1] = s; core.sleep(s) end }
      assert.is_table((pd.deals.search("ab")))
      assert.is_table((pd.deals.list()))
      assert.is_table((pd.deals.search("ab"))) -- remaining 0 after this one
      assert.equal(0, #waits)
      assert.is_table((pd.deals.list())) -- the api window is not spent: no wait
      assert.equal(0, #waits)
      local _, err = pd.deals.search("ab") -- waits max_wait (0.5 s), less than the window: still a 429
      assert.equal(1, #waits)
      assert.equal(0.5, waits[1])
      assert.equal("rate_limited", err and err.kind)
      assert.equal("burst", err.scope)
      pd.close()
    end)

    it("misuse raises", function()
      assert.matches("pace", raises(pipedrive.new, { api_token = "x", pace = "yes" }))
      assert.matches("unknown pace option", raises(pipedrive.new, { api_token = "x", pace = { slow = 1 } }))
      assert.matches("pace.reserve", raises(pipedrive.new, { api_token = "x", pace = { reserve = 1 } }))
    end)
  end)

  describe("redirects", function()
    local function other_requests()
      return select(2, other.admin("GET", "/_sandbox/requests"))
    end

    it("are not followed by default: one error of kind redirect, without the Location", function()
      faults(sb, { { fault = "redirect", status = 302, location = other.url .. "/api/v2/deals?api_token=" .. TOKEN } })
      local pd = sb.client{}
      local v, err = pd.deals.list()
      assert.is_nil(v)
      assert.equal("redirect", err.kind)
      assert.equal(302, err.status)
      assert.equal(1, err.attempts)
      assert.is_nil(tostring(err):find(other.url, 1, true))
      assert.is_nil(tostring(err):find(TOKEN, 1, true))
      assert.equal(0, #other_requests())
      pd.close()
    end)

    it("to the same origin keep the token", function()
      local id = assert(sb.client{}.deals.add{ title = "Here" }).id
      faults(sb, { { match = { path = "/api/v2/deals/999" }, fault = "redirect", status = 301,
                     location = "/api/v2/deals/" .. id } })
      local pd = sb.client{ max_redirects = 2 }
      local d, err = pd.deals.get(999)
      assert.is_table(d, tostring(err))
      assert.equal(id, d.id)
      pd.close()
    end)

    it("to another host (127.0.0.1 -> localhost) never carry x-api-token or an api_token parameter", function()
      local port = other.url:match(":(%d+)$")
      faults(sb, { { fault = "redirect", status = 307,
                     location = "http://localhost:" .. port .. "/api/v2/deals?limit=5&api_token=" .. TOKEN } })
      local pd = sb.client{ max_redirects = 3 }
      local v, err = pd.deals.list()
      assert.is_nil(v)
      assert.equal("unauthorized", err.kind) -- the other host got no credentials at all
      local seen = other_requests()
      assert.equal(1, #seen)
      assert.is_nil(seen[1].headers["x-api-token"])
      assert.is_nil(seen[1].headers.authorization)
      assert.equal("limit=5", seen[1].query_string)
      pd.close()
    end)

    it("an OAuth Bearer token stays on its origin too", function()
      local hdrs
      local pd = pipedrive.new{ api_token = TOKEN, base_url = sb.url, max_redirects = 1,
        transport = function(req)
          hdrs = req.headers
          if req.url:find(sb.url, 1, true) == 1 then
            return { status = 308, headers = { location = other.url .. "/api/v2/deals" }, body = "" }
          end
          return { status = 200, headers = { ["content-type"] = "application/json" },
                   body = '{"success":true,"data":[]}' }
        end }
      assert.is_table((pd.deals.list()))
      assert.is_nil(hdrs["x-api-token"])
      assert.is_nil(hdrs.authorization)
    end)

    it("a POST is not resent with its body to another host; the cap holds", function()
      faults(sb, { { match = { method = "POST" }, fault = "redirect", status = 307, location = other.url .. "/api/v2/deals" } })
      local pd = sb.client{ max_redirects = 5 }
      local v, err = pd.deals.add{ title = "Nowhere" }
      assert.is_nil(v)
      assert.equal("redirect", err.kind)
      assert.matches("another host", err.message)
      assert.equal(0, #other_requests())
      sb.admin("DELETE", "/_sandbox/faults")
      faults(sb, { { fault = "redirect", status = 302, location = "/api/v2/deals" } }) -- a loop
      v, err = pd.deals.list()
      assert.is_nil(v)
      assert.equal("redirect", err.kind)
      assert.matches("more than 5 redirects", err.message)
      pd.close()
      assert.equal(0, #sb.state().deals)
    end)

    it("https never continues over plain http to a remote host", function()
      local calls = 0
      local pd = pipedrive.new{ api_token = TOKEN, base_url = "https://x.pipedrive.com", max_redirects = 2,
        transport = function()
          calls = calls + 1
          return { status = 301, headers = { location = "http://evil.example/api/v2/deals" }, body = "" }
        end }
      local _, err = pd.deals.list()
      assert.equal("redirect", err.kind)
      assert.matches("plain http", err.message)
      assert.equal(1, calls)
      assert.matches("max_redirects", raises(pipedrive.new, { api_token = "x", max_redirects = -1 }))
    end)
  end)

  describe("debug hook", function()
    it("gets copies of requests and responses with the token masked, per attempt", function()
      local events = {}
      local pd = sb.client{ log = function(ev) events[#events + 1] = ev end, retries = { base = 0.01 } }
      faults(sb, { { match = { method = "GET" }, fault = "status", status = 503, count = 1 } })
      assert.is_table((pd.deals.list{ limit = 2 }))
      assert.equal(4, #events)
      local req1, res1, req2, res2 = events[1], events[2], events[3], events[4]
      assert.equal("request", req1.type)
      assert.equal(1, req1.attempt)
      assert.equal("GET", req1.method)
      assert.equal(sb.url .. "/api/v2/deals?limit=2", req1.url)
      assert.equal("***", req1.headers["x-api-token"])
      assert.equal("response", res1.type)
      assert.equal(503, res1.status)
      assert.equal(2, req2.attempt)
      assert.equal(200, res2.status)
      assert.is_string(res2.body)
      assert.is_number(res2.elapsed)
      -- Copies: changing them changes nothing for the next call.
      req1.headers["x-api-token"] = "tampered"
      assert.is_table((pd.deals.list()))
      assert.equal("***", events[5].headers["x-api-token"])
      pd.close()
    end)

    it("masks webhook passwords in bodies and failures are events too", function()
      local events = {}
      local pd = sb.client{ log = function(ev) events[#events + 1] = ev end, retries = false }
      local tr = pd.triggers{ url = "http://127.0.0.1:9/hook", user = "u", password = "hook-PASSW0RD-xyz" }
      tr:on("deal.added", function() end)
      assert(tr:enable())
      local dead = pipedrive.new{ api_token = TOKEN, base_url = "http://127.0.0.1:1", retries = false,
                                  log = function(ev) events[#events + 1] = ev end }
      dead.deals.list()
      local text = {}
      for _, ev in ipairs(events) do
        for k, v in pairs(ev) do
          text[#text + 1] = tostring(k) .. "=" .. (type(v) == "table" and core.json_encode(v) or tostring(v))
        end
      end
      local all = table.concat(text, "\n")
      assert.is_nil(all:find("hook-PASSW0RD-xyz", 1, true))
      assert.is_nil(all:find(TOKEN, 1, true))
      assert.matches('"http_auth_password":"***"', all, 1, true)
      assert.equal("error", events[#events].type)
      assert.equal("network", events[#events].kind)
      pd.close()
    end)
  end)
end)
