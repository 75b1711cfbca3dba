-- The library inside a real nginx (Debian's nginx + libnginx-mod-http-lua, LuaJIT):
-- a temporary prefix with a generated nginx.conf, two workers on a high loopback
-- port, the module loaded from this worktree (build/luajit/), sandboxes as the API.
-- Handlers live in spec/support/nginx_app.lua. Pending, with the reason, only when
-- nginx or its Lua module is not installed (./run installs both).
local core = require "pipedrive.core"
local sandbox = require "support.sandbox"
local nginx = require "support.nginx"

local CLIENT_ID, CLIENT_SECRET = "nginx-client", "nginx-secret-Qx7"
local HOOK_USER, HOOK_PASSWORD = "hook", "nginx-hook-pw"

local free_port = require("support.util").free_port

if not nginx.available() then
  describe("nginx", function()
    pending(nginx.MISSING)
  end)
  return
end

local curl_many = nginx.curl_many

describe("nginx", function()
  local sb1, sb2, sb3, srv, h2port, base

  setup(function()
    local args = { "--oauth-client", CLIENT_ID .. ":" .. CLIENT_SECRET, "--oauth-auto-approve", "--token-ttl", "3" }
    sb1 = sandbox.start{ args = args }
    sb2 = sandbox.start{ args = args }
    sb3 = sandbox.start{ args = args }
    for _, sb in ipairs({ sb1, sb2, sb3 }) do
      local pd = sb.client()
      for i = 1, 3 do assert(pd.deals.add{ title = "nginx deal " .. i }) end
      assert(pd.persons.add{ name = "Slow Person" })
      local status = sb.admin("POST", "/_sandbox/faults",
        { { match = { method = "GET", path = "/api/v2/persons" }, fault = "delay", delay = 1 } })
      assert(status == 200 or status == 201, "faults: " .. tostring(status))
    end
    h2port = free_port()
    local locations = { "listen 127.0.0.1:" .. h2port .. " http2;" }
    for _, l in ipairs({ { "/deals", "deals" }, { "/slow", "slow" }, { "/unreachable", "unreachable" },
                         { "/timer-call", "timer_call" }, { "/webhook", "webhook" }, { "/fail-once", "set_fail" },
                         { "/count", "count" }, { "/token", "token" }, { "/oauth-users", "oauth_users" } }) do
      locations[#locations + 1] = ('location = %s { content_by_lua_block { require("support.nginx_app").%s() } }')
        :format(l[1], l[2])
    end
    srv = nginx.start{
      init = ([[require("support.nginx_app").configure{
      api_token = %q, sandboxes = { %q, %q, %q }, closed_url = %q,
      hook_user = %q, hook_password = %q, client_id = %q, client_secret = %q,
    }]]):format(sb1.api_token, sb1.url, sb2.url, sb3.url, "http://127.0.0.1:" .. free_port(), HOOK_USER,
        HOOK_PASSWORD, CLIENT_ID, CLIENT_SECRET),
      server = table.concat(locations, "\n    "),
    }
    base = srv.base
  end)

  teardown(function()
    if srv then
      local log = srv:stop()
      -- nothing the handlers raised, and no secret in nginx's log
      assert.is_nil(log:match("%[error%][^\n]*lua[^\n]*"), log)
      assert.is_nil(log:find(HOOK_PASSWORD, 1, true))
      assert.is_nil(log:find(CLIENT_SECRET, 1, true))
    end
    if sb1 then sb1.stop() end
    if sb2 then sb2.stop() end
    if sb3 then sb3.stop() end
  end)

  it("serves API calls made in a request handler through the nginx transport", function()
    sb1.clear_requests()
    local r = curl_many({ base .. "/deals" }, { headers = { "Cookie: visitor=secret-cookie", "X-Visitor: v" } })[1]
    assert.equal(200, r.status, r.body)
    -- the sandbox got our token and accept header, and nothing of the visitor's request
    local seen = sb1.requests()
    local last = seen[#seen]
    assert.equal("GET", last.method)
    assert.equal("/api/v2/deals", last.path)
    assert.equal("***", last.headers["x-api-token"])
    assert.equal("application/json", last.headers.accept)
    assert.is_nil(last.headers.cookie)
    assert.is_nil(last.headers["x-visitor"])
    local direct = assert(sb1.client().deals.list{ limit = 3 })
    assert.equal(3, #r.json)
    for i, d in ipairs(direct) do
      assert.equal(d.id, r.json[i].id)
      assert.equal(d.title, r.json[i].title)
    end
  end)

  it("does not block the worker: slow calls in parallel take the time of one", function()
    local single = curl_many({ base .. "/slow?sb=1" })[1]
    assert.equal(200, single.status, single.body)
    assert.is_true(single.time >= 0.9, "the sandbox delay applies: " .. single.time)
    -- Three slow requests (each to its own sandbox, which serves one at a time) on
    -- two workers: at least two of them share a worker, which must not serialize them.
    -- (ngx.location.capture refuses HTTP/2, so one connection cannot pin them.)
    local rs = curl_many({ base .. "/slow?sb=1", base .. "/slow?sb=2", base .. "/slow?sb=3" })
    local by_pid, shared = {}, nil
    for i = 1, 3 do
      assert.equal(200, rs[i].status, rs[i].body)
      local p = rs[i].json.pid
      if by_pid[p] then shared = { by_pid[p], rs[i] } end
      by_pid[p] = rs[i]
    end
    assert.truthy(shared)
    local both = math.max(shared[1].time, shared[2].time)
    assert.is_true(both < 1.6 * single.time,
      ("two slow calls in one worker took %.2f s, one alone %.2f s"):format(both, single.time))
    -- and meanwhile each worker answers a trivial request at once
    local during = curl_many({ base .. "/slow?sb=1", base .. "/slow?sb=2", base .. "/slow?sb=3",
                               base .. "/ping", base .. "/ping", base .. "/ping", base .. "/ping" })
    for i = 4, 7 do
      assert.equal(200, during[i].status)
      assert.is_true(during[i].time < 0.5, ("/ping took %.2f s"):format(during[i].time))
    end
    for i = 1, 3 do
      assert.equal(200, during[i].status)
      assert.is_true(during[i].time < 1.6 * single.time)
    end
  end)

  it("says how to fix an API call from an HTTP/2 request (no subrequests there)", function()
    local r = curl_many({ "http://127.0.0.1:" .. h2port .. "/deals" }, { h2 = true })[1]
    assert.equal(502, r.status, r.body)
    assert.matches("unsupported .*HTTP/2 request: serve this location over HTTP/1.1, or install lua%-resty%-http",
      r.json.error)
  end)

  it("maps an unreachable API to a network error", function()
    local r = curl_many({ base .. "/unreachable" })[1]
    assert.equal(200, r.status, r.body)
    assert.equal("network", r.json.kind)
    assert.equal("transfer", r.json.stage) -- nginx does not tell whether a byte left
    assert.equal("nginx could not reach the API", r.json.message)
  end)

  it("refuses to make a blocking call from a timer, saying what to do", function()
    local r = curl_many({ base .. "/timer-call" })[1]
    assert.equal(200, r.status, r.body)
    assert.matches("^unsupported: .*timer.*lua%-resty%-http", r.json.error)
  end)

  local function delivery(title, id)
    return core.json_encode{
      meta = { action = "create", entity = "deal", entity_id = tostring(id), id = "ev-nginx-" .. id, version = "2.0",
               timestamp = "2026-11-28T12:00:00.250Z", company_id = "1", user_id = "1", attempt = 1,
               correlation_id = "c-" .. id, webhook_id = "1", type = "general" },
      data = { id = id, title = title }, previous = core.null,
    }
  end
  local AUTH = "Authorization: Basic " .. core.base64_encode(HOOK_USER .. ":" .. HOOK_PASSWORD)

  it("runs webhook callbacks exactly once across two workers, after answering", function()
    local urls = {}
    for i = 1, 8 do urls[i] = base .. "/webhook" end
    local t0 = os.time()
    local rs = curl_many(urls, { post = delivery("Hooked once", 9001),
                                 headers = { AUTH, "Content-Type: application/json" } })
    local accepted = 0
    for i = 1, 8 do
      assert.is_true(rs[i].status == 200 or rs[i].status == 503, rs[i].body)
      if rs[i].json.status == "accepted" then accepted = accepted + 1 end
      assert.is_true(rs[i].time < 0.6, "answered before the callback (0.8 s) ended")
    end
    assert.equal(1, accepted)
    os.execute("sleep 1.2")
    local c = curl_many({ base .. "/count" })[1].json
    assert.equal(1, c.runs)
    assert.equal(1, c.done)
    assert.equal("Hooked once", c.title)
    -- a later redelivery of the same event is acknowledged as a duplicate
    local again = curl_many({ base .. "/webhook" }, { post = delivery("Hooked once", 9001),
                                                     headers = { AUTH, "Content-Type: application/json" } })[1]
    assert.equal("duplicate", again.json.status)
    assert.equal(1, curl_many({ base .. "/count" })[1].json.runs)
    assert.is_true(os.time() - t0 < 10)
  end)

  it("leaves an event whose deferred callback failed to its redelivery", function()
    local hdr = { AUTH, "Content-Type: application/json" }
    curl_many({ base .. "/fail-once" })
    local before = curl_many({ base .. "/count" })[1].json
    local first = curl_many({ base .. "/webhook" }, { post = delivery("Second try", 9002), headers = hdr })[1]
    assert.equal("accepted", first.json.status)
    os.execute("sleep 1.2")
    local mid = curl_many({ base .. "/count" })[1].json
    assert.equal(before.runs + 1, mid.runs)
    assert.equal(before.done, mid.done)
    local redelivered = curl_many({ base .. "/webhook" }, { post = delivery("Second try", 9002), headers = hdr })[1]
    assert.equal("accepted", redelivered.json.status)
    os.execute("sleep 1.2")
    local after = curl_many({ base .. "/count" })[1].json
    assert.equal(before.done + 1, after.done)
    assert.equal("Second try", after.title)
  end)

  it("refuses a webhook without the right password", function()
    local r = curl_many({ base .. "/webhook" }, { post = delivery("x", 9003), headers = { "Content-Type: application/json" } })[1]
    assert.equal(401, r.status)
  end)

  it("refreshes an expired OAuth token once across workers and requests", function()
    local token = sb1.login(CLIENT_ID, CLIENT_SECRET)
    assert.equal(200, curl_many({ base .. "/token" }, { post = core.json_encode(token) })[1].status)
    sb1.admin("POST", "/_sandbox/oauth/expire")
    local before = select(2, sb1.admin("GET", "/_sandbox/oauth")).refreshes
    local urls = {}
    for i = 1, 8 do urls[i] = base .. "/oauth-users" end
    local rs = curl_many(urls)
    for i = 1, 8 do assert.equal(200, rs[i].status, rs[i].body) end
    local after = select(2, sb1.admin("GET", "/_sandbox/oauth")).refreshes
    assert.equal(before + 1, after)
  end)
end)
