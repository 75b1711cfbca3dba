-- shared:token_store(name) and shared:seen() against a real Redis: the store
-- contracts pipedrive.oauth and pd.triggers rely on (the multi-process cases
-- are in redis_oauth_spec.lua and redis_triggers_spec.lua).
local core = require "pipedrive.core"
local pipedrive = require "pipedrive"
local redis = require "support.redis"

if not redis.available() then
  describe("Redis stores", function() pending("redis-server or the pipedrive.hiredis module is missing") end)
  return
end

local function raises(pattern, fn)
  local ok, msg = pcall(fn)
  assert.is_false(ok)
  assert.matches(pattern, tostring(msg))
end

describe("Redis stores", function()
  local srv, shared

  setup(function() srv = redis.start() end)
  teardown(function() if srv then srv:stop() end end)
  before_each(function()
    srv:cli("FLUSHALL")
    shared = pipedrive.redis{ url = srv.url, prefix = "t:", timeout = 0.5 }
  end)
  after_each(function() shared:close() end)

  describe("token_store", function()
    local token = { access_token = "at-1", refresh_token = "rt-1", token_type = "Bearer", expires_in = 60,
                    expires_at = os.time() + 60, api_domain = "https://x.pipedrive.com" }

    it("keeps the token as JSON in prefix .. 'oauth:' .. name; reads nothing before first use", function()
      local store = shared:token_store("acct")
      assert.is_nil(store.token)
      assert.is_nil(store.reload())
      assert.is_true(store.on_token(token))
      assert.same(token, core.json_decode(srv:cli("GET", "t:oauth:acct")))
      local other = pipedrive.redis{ url = srv.url, prefix = "t:" }:token_store("acct")
      assert.same(token, other.reload())
      store.on_revoke()
      assert.is_nil(other.reload())
    end)

    it("refuses a malformed stored token with kind token_store", function()
      srv:cli("SET", "t:oauth:acct", '{"access_token":"has space"}')
      local t, err = shared:token_store("acct").reload()
      assert.is_nil(t)
      assert.equal("token_store", err.kind)
    end)

    it("lock: one holder at a time, freed only by its holder, waiters time out with refresh_in_progress", function()
      local a = shared:token_store("acct", { wait = 0.3, lock_ttl = 5 })
      local b = pipedrive.redis{ url = srv.url, prefix = "t:" }:token_store("acct", { wait = 0.3 })
      local inner
      local r1, r2 = a.lock(function()
        assert.matches("^[%w_-]+$", srv:cli("GET", "t:oauth-lock:acct"))
        local t0 = core.now()
        inner = { b.lock(function() return "never" end) }
        inner.waited = core.now() - t0
        return "done", 2
      end)
      assert.equal("done", r1)
      assert.equal(2, r2)
      assert.is_nil(inner[1])
      assert.equal("refresh_in_progress", inner[2].kind)
      assert.is_true(inner.waited >= 0.3)
      assert.equal("", srv:cli("GET", "t:oauth-lock:acct")) -- released
      -- a lock that is not ours (it expired and another took it) is left alone
      local stolen = a.lock(function()
        srv:cli("SET", "t:oauth-lock:acct", "someone-else")
        return true
      end)
      assert.is_true(stolen)
      assert.equal("someone-else", srv:cli("GET", "t:oauth-lock:acct"))
      -- a raise inside fn still releases the lock
      srv:cli("DEL", "t:oauth-lock:acct")
      assert.has_error(function() a.lock(function() error("boom", 0) end) end, "boom")
      assert.equal("", srv:cli("GET", "t:oauth-lock:acct"))
    end)

    it("a waiter sleeps with the sleep it is given and gets the lock once it is freed", function()
      local a = shared:token_store("acct")
      srv:cli("SET", "t:oauth-lock:acct", "held", "PX", "200")
      local sleeps = 0
      local got = a.lock(function() return "mine" end, function(s)
        sleeps = sleeps + 1
        core.sleep(s)
      end)
      assert.equal("mine", got)
      assert.is_true(sleeps > 1)
    end)

    it("gives nil, err (redis_unavailable) from reload, on_token and lock while Redis is down", function()
      local store = shared:token_store("acct")
      srv:kill()
      local ran = false
      for _, r in ipairs({ { store.reload() }, { store.on_token(token) }, { store.lock(function() ran = true end) } }) do
        assert.is_nil(r[1])
        assert.equal("redis_unavailable", r[2].kind)
      end
      assert.is_false(ran)
      srv:restart()
    end)

    it("raises for misuse, naming the method", function()
      raises("token_store: name must be", function() shared:token_store("") end)
      raises("token_store: name must be", function() shared:token_store("a b") end)
      raises("token_store: unknown option 'ttl'", function() shared:token_store("a", { ttl = 3 }) end)
      raises("token_store: wait must be a positive number", function() shared:token_store("a", { wait = -1 }) end)
    end)
  end)

  describe("seen", function()
    it("claim is atomic: true, then busy; mark makes it seen; release deletes only a claim", function()
      local s1, s2 = shared:seen(), pipedrive.redis{ url = srv.url, prefix = "t:" }:seen()
      assert.is_true(s1.claim("v2|ev-1"))
      assert.equal("claimed", srv:cli("GET", "t:seen:v2|ev-1"))
      local ok, why = s2.claim("v2|ev-1")
      assert.is_false(ok)
      assert.equal("busy", why)
      assert.is_false(s2.check("v2|ev-1"))
      assert.is_true(s1.release("v2|ev-1"))
      assert.is_true(s2.claim("v2|ev-1"))
      assert.is_true(s2.mark("v2|ev-1", 100))
      assert.equal("seen", srv:cli("GET", "t:seen:v2|ev-1"))
      local ttl = tonumber(srv:cli("PTTL", "t:seen:v2|ev-1"))
      assert.is_true(ttl > 90000 and ttl <= 100000, tostring(ttl))
      assert.is_true(s1.check("v2|ev-1"))
      ok, why = s1.claim("v2|ev-1")
      assert.is_false(ok)
      assert.equal("seen", why)
      assert.is_true(s1.release("v2|ev-1")) -- a seen event is not a claim: kept
      assert.equal("seen", srv:cli("GET", "t:seen:v2|ev-1"))
    end)

    it("a claim ends after the store's ttl (a handler that died)", function()
      local s = shared:seen{ ttl = 0.2 }
      assert.is_true(s.claim("k"))
      assert.is_false(s.claim("k"))
      core.sleep(0.3)
      assert.is_true(s.claim("k"))
    end)

    it("gives nil, err (redis_unavailable) from every function while Redis is down", function()
      local s = shared:seen()
      srv:kill()
      for _, r in ipairs({ { s.check("k") }, { s.claim("k") }, { s.mark("k", 10) }, { s.release("k") } }) do
        assert.is_nil(r[1])
        assert.equal("redis_unavailable", r[2].kind)
      end
      srv:restart()
    end)

    it("raises for misuse", function()
      raises("seen: unknown option 'running_ttl'", function() shared:seen{ running_ttl = 3 } end)
      raises("seen: ttl must be a positive number", function() shared:seen{ ttl = 0 } end)
    end)
  end)
end)
