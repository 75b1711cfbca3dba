-- pipedrive.redis inside a real nginx (two workers, LuaJIT) against a real
-- redis-server, over cosockets (lua/pipedrive/redis_ngx.lua; lua-resty-redis is
-- not installed here, so our RESP client is what runs): replies mapped as in
-- spec/redis_spec.lua, connections pooled per worker, phases without cosockets,
-- pacing shared by the workers in Redis (0 answers 429), webhook
-- de-duplication and one OAuth refresh through Redis, and Redis down.
-- Handlers: spec/support/nginx_redis_app.lua. Pending only when nginx or
-- redis-server is not installed (./run installs both).
local core = require "pipedrive.core"
local sandbox = require "support.sandbox"
local nginx = require "support.nginx"
local redis = require "support.redis"

local CLIENT_ID, CLIENT_SECRET = "ngx-redis-client", "ngx-redis-secret-W3"
local HOOK_USER, HOOK_PASSWORD = "hook", "ngx-redis-hook-pw"
local LIMIT = 40 -- the sandbox's burst limit: 40 requests per 2 s window

if not nginx.available() or not redis.available() then
  describe("nginx with Redis", function()
    pending(not nginx.available() and nginx.MISSING or "redis-server is not installed")
  end)
  return
end

local curl_many = nginx.curl_many

describe("nginx with Redis", function()
  local srv, ngx_srv, sbp, sbo, base

  setup(function()
    srv = redis.start()
    sbp = sandbox.start{ args = { "--rate-limit", LIMIT } }
    sbo = sandbox.start{ args = { "--oauth-client", CLIENT_ID .. ":" .. CLIENT_SECRET, "--oauth-auto-approve",
                                  "--token-ttl", "3" } }
    local app = 'require("support.nginx_redis_app")'
    local function loc(path, call)
      return ("location = %s { content_by_lua_block { %s.%s } }\n"):format(path, app, call)
    end
    ngx_srv = nginx.start{
      reuseport = true,
      init = ("%s.configure{ redis_port = %d, api_token = %q, pace_url = %q, oauth_url = %q, client_id = %q,"
        .. " client_secret = %q, hook_user = %q, hook_password = %q }"):format(app, srv.port, sbp.api_token, sbp.url,
        sbo.url, CLIENT_ID, CLIENT_SECRET, HOOK_USER, HOOK_PASSWORD),
      http = ("init_worker_by_lua_block { %s.init_worker() }"):format(app),
      server = loc("/redis", "redis()") .. loc("/pace", "pace()") .. loc("/pace-lines", "pace_lines()")
        .. loc("/hook-a", 'hook("a")') .. loc("/hook-b", 'hook("b")') .. loc("/count", "count()")
        .. loc("/token", "token()") .. loc("/oauth-users", "oauth_users()") .. loc("/phases", "phases()")
        .. ("location = /logged { content_by_lua_block { ngx.print('ok') } log_by_lua_block { %s.log_phase() } }")
          :format(app),
    }
    base = ngx_srv.base
  end)

  teardown(function()
    local log = ngx_srv and ngx_srv:stop() or ""
    if srv then srv:stop() end
    if sbp then sbp.stop() end
    if sbo then sbo.stop() end
    -- nothing the handlers raised, and no secret in nginx's log
    assert.is_nil(log:match("[^\n]*runtime error[^\n]*"), log)
    assert.is_nil(log:match("[^\n]*lua entry thread aborted[^\n]*"), log)
    assert.is_nil(log:find(HOOK_PASSWORD, 1, true))
    assert.is_nil(log:find(CLIENT_SECRET, 1, true))
  end)

  local function connections()
    return tonumber(srv:cli("INFO", "stats"):match("total_connections_received:(%d+)"))
  end

  it("maps replies over cosockets as the C module does", function()
    local r = curl_many({ base .. "/redis" })[1]
    assert.equal(200, r.status, r.body)
    local v = r.json
    assert.same({ value = "OK", type = "string" }, v.set)
    assert.same({ binary_ok = true }, v.get) -- NUL and a byte that is not UTF-8 come back as sent
    assert.same({ value = false, type = "boolean" }, v.missing)
    assert.same({ value = 41, type = "integer" }, v.incr)
    assert.same({ value = "0.1", type = "string" }, v.float)
    assert.same({ 1, { "two", { 3, false } }, "OK" }, v.nested.value)
    assert.same({ "ngx:k", "7", "x" }, v.keys_args.value)
    assert.same({}, v.empty.value)
    assert.equal("redis", v.wrongtype.err.kind)
    assert.equal("WRONGTYPE", v.wrongtype.err.code)
    -- an error inside an array fails the command, and the stream stays usable
    assert.equal("MYERR", v.nested_error.err.code)
    -- past 32 levels the reply is refused, the connection closed; the next command reconnects
    assert.equal("redis_unavailable", v.deep.err.kind)
    assert.equal("transfer", v.deep.err.stage)
    assert.matches("nested too deeply", v.deep.err.message)
    assert.equal("PONG", v.after_deep.value)
    local d, depth = v.depth_ok.value, 0
    while type(d) == "table" do d, depth = d[1], depth + 1 end
    assert.equal(21, depth)
    assert.is_true(v.big_ok)
    assert.equal("OK", v.flush.value)
    assert.equal("again", v.after_flush.value) -- NOSCRIPT: loaded again, run once more
    assert.equal("OK", v.select.value)
  end)

  it("keeps connections in the worker's pool instead of one per command", function()
    curl_many({ base .. "/redis" }) -- warm both workers' pools
    local before = connections()
    local urls = {}
    for i = 1, 10 do urls[i] = base .. "/redis" end
    local rs = curl_many(urls)
    for i = 1, 10 do assert.equal(200, rs[i].status, rs[i].body) end
    local made = connections() - before
    -- each /redis closes two on purpose (the deep reply, SELECT) and runs ~20 commands:
    -- 10 requests without a pool would be ~200 connections
    assert.is_true(made <= 10 * 2 + 20, "connections made: " .. made)
  end)

  it("refuses to block where nginx has no cosockets, naming the phase; a timer works", function()
    curl_many({ base .. "/logged" })
    local p = curl_many({ base .. "/phases" })[1].json
    assert.matches("^redis_unavailable | redis 127%.0%.0%.1:%d+: nginx's init_worker phase has no cosockets",
      p.init_worker)
    assert.matches("^redis_unavailable | .*nginx's log phase has no cosockets", p.log)
    assert.matches("^INCR [12]$", p.timer)
    assert.equal("2", srv:cli("GET", "ngx:timer-ran")) -- both workers' timers
  end)

  it("paces a burst from both workers in Redis: no 429, every add done", function()
    local before = select(2, sbp.admin("GET", "/_sandbox/rate_limit"))
    local urls = {}
    for i = 1, 12 do urls[i] = base .. "/pace?n=10&tag=burst" .. i end
    local t0 = core.now()
    local rs = curl_many(urls, { max_time = 60 })
    local took = core.now() - t0
    local pids, done = {}, 0
    for i = 1, 12 do
      assert.equal(200, rs[i].status, rs[i].body)
      assert.same({}, rs[i].json.errors)
      done = done + rs[i].json.ok
      pids[rs[i].json.pid] = true
    end
    assert.equal(120, done)
    local workers = 0
    for _ in pairs(pids) do workers = workers + 1 end
    assert.equal(2, workers) -- reuseport spreads the 12 connections over both
    local after = select(2, sbp.admin("GET", "/_sandbox/rate_limit"))
    assert.equal(before.rate_limited or 0, after.rate_limited or 0)
    print(("\n  nginx, 2 workers, 12 requests x 10 adds paced in Redis: %.2f s, %d answers 429")
      :format(took, (after.rate_limited or 0) - (before.rate_limited or 0)))
    -- 40 at once, then 20 per second: (120 - 40) / 20 = 4 s at best; the issue's bar is 1.1x of
    -- N / 20 s, kept loose here (two nginx workers and the sandbox share two cores with the suite)
    assert.is_true(took >= 3.5, ("took %.2f s: faster than the limit allows"):format(took))
    assert.is_true(took < 1.5 * 120 / (LIMIT / 2), ("took %.2f s"):format(took))
    assert.same({}, curl_many({ base .. "/pace-lines" })[1].json) -- Redis never failed
  end)

  local function delivery(title, id)
    return core.json_encode{
      meta = { action = "create", entity = "deal", entity_id = tostring(id), id = "ev-ngx-redis-" .. id,
               version = "2.0", timestamp = "2026-11-28T12:00:00.250Z", company_id = "1", user_id = "1",
               attempt = 1, correlation_id = "c-" .. id, webhook_id = "1", type = "general" },
      data = { id = id, title = title }, previous = core.null,
    }
  end
  local HDR = { "Authorization: Basic " .. core.base64_encode(HOOK_USER .. ":" .. HOOK_PASSWORD),
                "Content-Type: application/json" }

  it("runs a webhook's callback once across two locations and both workers (seen in Redis)", function()
    local urls = {}
    for i = 1, 8 do urls[i] = base .. (i % 2 == 0 and "/hook-a" or "/hook-b") end
    local rs = curl_many(urls, { post = delivery("Once via Redis", 7001), headers = HDR })
    local accepted = 0
    for i = 1, 8 do
      assert.is_true(rs[i].status == 200 or rs[i].status == 503, rs[i].body)
      if rs[i].json.status == "accepted" then accepted = accepted + 1 end
    end
    assert.equal(1, accepted)
    os.execute("sleep 0.9")
    local c = curl_many({ base .. "/count" })[1].json
    assert.equal(1, c.runs)
    assert.equal("Once via Redis", c.title)
    local key = srv:cli("--scan", "--pattern", "ngx:seen:*")
    assert.matches("^ngx:seen:[^\n]+$", key)
    assert.equal("seen", srv:cli("GET", key))
    local again = curl_many({ base .. "/hook-a" }, { post = delivery("Once via Redis", 7001), headers = HDR })[1]
    assert.equal("duplicate", again.json.status)
    assert.equal(1, curl_many({ base .. "/count" })[1].json.runs)
  end)

  it("refreshes an expired OAuth token once across workers (token and lock in Redis)", function()
    local token = sbo.login(CLIENT_ID, CLIENT_SECRET)
    local seeded = curl_many({ base .. "/token" }, { post = core.json_encode(token) })[1]
    assert.equal(200, seeded.status, seeded.body)
    sbo.admin("POST", "/_sandbox/oauth/expire")
    local before = select(2, sbo.admin("GET", "/_sandbox/oauth")).refreshes
    local urls = {}
    for i = 1, 8 do urls[i] = base .. "/oauth-users" end
    local rs = curl_many(urls)
    for i = 1, 8 do assert.equal(200, rs[i].status, rs[i].body) end
    assert.equal(before + 1, select(2, sbo.admin("GET", "/_sandbox/oauth")).refreshes)
    -- the refreshed token is the one in Redis, and no key names it
    local saved = core.json_decode(srv:cli("GET", "ngx:oauth:x"))
    assert.is_string(saved.access_token)
    assert.equal("", srv:cli("--scan", "--pattern", "*" .. saved.access_token .. "*"))
  end)

  it("with Redis down: webhooks answer 503, pacing falls back to each worker's own counting, said once", function()
    srv:kill()
    local r = curl_many({ base .. "/hook-a" }, { post = delivery("While down", 7002), headers = HDR })[1]
    assert.equal(503, r.status, r.body)
    local urls = {}
    for i = 1, 6 do urls[i] = base .. "/pace?n=3&tag=down" .. i end
    local rs = curl_many(urls, { max_time = 60 })
    local pids = {}
    for i = 1, 6 do
      assert.equal(200, rs[i].status, rs[i].body)
      assert.same({}, rs[i].json.errors)
      assert.equal(3, rs[i].json.ok)
      pids[rs[i].json.pid] = true
    end
    local lines, per_pid = curl_many({ base .. "/pace-lines" })[1].json, {}
    for _, l in ipairs(lines) do
      assert.matches("^Redis is unreachable: pacing falls back", l.message)
      assert.is_nil(l.message:find(sbp.api_token, 1, true))
      per_pid[l.pid] = (per_pid[l.pid] or 0) + 1
    end
    for pid in pairs(pids) do assert.equal(1, per_pid[pid], "one line per worker") end
    -- Redis back: the webhook is served again
    srv:restart()
    os.execute("sleep 0.6") -- past retry_interval
    local back = curl_many({ base .. "/hook-b" }, { post = delivery("After", 7003), headers = HDR })[1]
    assert.equal(200, back.status, back.body)
    assert.equal("accepted", back.json.status)
  end)
end)
