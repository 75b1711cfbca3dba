-- The library inside a real nginx (Debian's nginx + libnginx-mod-http-lua, LuaJIT):
-- a temporary prefix with a generated nginx.conf, two workers on a high loopback
-- port, the module loaded from this worktree (build/luajit/), sandboxes as the API.
-- Handlers live in spec/support/nginx_app.lua. Pending, with the reason, only when
-- nginx or its Lua module is not installed (./run installs both).
local core = require "pipedrive.core"
local sandbox = require "support.sandbox"
local spawn = require "pipedrive.sandbox.spawn"

local MODULES = "/usr/lib/nginx/modules"
local CLIENT_ID, CLIENT_SECRET = "nginx-client", "nginx-secret-Qx7"
local HOOK_USER, HOOK_PASSWORD = "hook", "nginx-hook-pw"

local function exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end

local function sh(cmd)
  local p = assert(io.popen(cmd, "r"))
  local out = p:read("*a")
  p:close()
  return out
end

local free_port = require("support.util").free_port

local function q(s) return "'" .. tostring(s):gsub("'", [['\'']]) .. "'" end

local nginx_bin = sh("command -v nginx 2>/dev/null"):match("%S+")
local have_nginx = nginx_bin ~= nil and exists(MODULES .. "/ngx_http_lua_module.so")
  and exists(MODULES .. "/ndk_http_module.so")

if not have_nginx then
  describe("nginx", function()
    pending("nginx with libnginx-mod-http-lua is not installed (apt-get install nginx libnginx-mod-http-lua)")
  end)
  return
end

-- Several requests at once with curl: returns one { status, time, body } per URL, in order.
-- opts.h2: all over one HTTP/2 connection (so one nginx worker serves them all);
-- opts.post: a body to POST; opts.headers: extra request headers.
local function curl_many(urls, opts)
  opts = opts or {}
  local dir = os.tmpname()
  os.remove(dir)
  assert(os.execute("mkdir " .. q(dir)))
  local args = { "curl -s --max-time 20 -w '%{urlnum} %{http_code} %{time_total}\\n'" }
  if #urls > 1 then args[#args + 1] = opts.h2 and "--parallel" or "--parallel --parallel-immediate" end
  if opts.h2 then args[#args + 1] = "--http2-prior-knowledge" end
  for _, h in ipairs(opts.headers or {}) do args[#args + 1] = "-H " .. q(h) end
  if opts.post then
    local f = assert(io.open(dir .. "/body", "wb"))
    f:write(opts.post)
    f:close()
    args[#args + 1] = "--data-binary @" .. q(dir .. "/body")
  end
  for i, u in ipairs(urls) do args[#args + 1] = ("-o %s %s"):format(q(dir .. "/" .. i), q(u)) end
  local out = sh(table.concat(args, " ") .. " 2>/dev/null")
  local results = {}
  for n, status, t in out:gmatch("(%d+) (%d+) ([%d.]+)") do
    local i = tonumber(n) + 1
    local f = io.open(dir .. "/" .. i, "rb")
    local body = f and f:read("*a") or ""
    if f then f:close() end
    results[i] = { status = tonumber(status), time = tonumber(t), body = body,
                   json = select(2, pcall(core.json_decode, body)) }
  end
  os.execute("rm -rf " .. q(dir))
  return results
end

describe("nginx", function()
  local sb1, sb2, sb3, prefix, port, h2port, base, pid

  local function config(root)
    local lua_path = ("%s/lua/?.lua;%s/lua/?/init.lua;%s/spec/?.lua;;"):format(root, root, root)
    local cpath = root .. "/build/luajit/?.so;;"
    return ([[
load_module %s/ndk_http_module.so;
load_module %s/ngx_http_lua_module.so;
worker_processes 2;
pid logs/nginx.pid;
error_log logs/error.log notice;
events { worker_connections 128; }
http {
  access_log off;
  client_body_temp_path tmp/body; proxy_temp_path tmp/proxy; fastcgi_temp_path tmp/fastcgi;
  uwsgi_temp_path tmp/uwsgi; scgi_temp_path tmp/scgi;
  lua_package_path "%s";
  lua_package_cpath "%s";
  lua_shared_dict pipedrive 1m;
  init_by_lua_block {
    require("support.nginx_app").configure{
      api_token = %q, sandboxes = { %q, %q, %q }, closed_url = %q,
      hook_user = %q, hook_password = %q, client_id = %q, client_secret = %q,
    }
  }
  server {
    listen 127.0.0.1:%d;
    listen 127.0.0.1:%d http2;
    location = /deals { content_by_lua_block { require("support.nginx_app").deals() } }
    location = /slow { content_by_lua_block { require("support.nginx_app").slow() } }
    location = /ping { content_by_lua_block { require("support.nginx_app").ping() } }
    location = /unreachable { content_by_lua_block { require("support.nginx_app").unreachable() } }
    location = /timer-call { content_by_lua_block { require("support.nginx_app").timer_call() } }
    location = /webhook { content_by_lua_block { require("support.nginx_app").webhook() } }
    location = /fail-once { content_by_lua_block { require("support.nginx_app").set_fail() } }
    location = /count { content_by_lua_block { require("support.nginx_app").count() } }
    location = /token { content_by_lua_block { require("support.nginx_app").token() } }
    location = /oauth-users { content_by_lua_block { require("support.nginx_app").oauth_users() } }
    include %s/examples/openresty/pipedrive-location.conf;
  }
}
]]):format(MODULES, MODULES, lua_path, cpath, sb1.api_token, sb1.url, sb2.url, sb3.url,
      "http://127.0.0.1:" .. free_port(), HOOK_USER, HOOK_PASSWORD, CLIENT_ID, CLIENT_SECRET, port, h2port,
      root)
  end

  setup(function()
    local root = os.getenv("PWD") or "."
    -- the module nginx loads: built for LuaJIT into build/luajit/
    -- (not the MAKEFLAGS of a make that runs this suite: its LUA= would win)
    assert(os.execute("env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL make -s --no-print-directory LUA=luajit all >/dev/null"))
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
    prefix = os.tmpname()
    os.remove(prefix)
    assert(os.execute(("mkdir -p %s/logs %s/tmp %s/conf"):format(q(prefix), q(prefix), q(prefix))))
    port, h2port = free_port(), free_port()
    base = "http://127.0.0.1:" .. port
    local f = assert(io.open(prefix .. "/conf/nginx.conf", "wb"))
    f:write(config(root))
    f:close()
    pid = tonumber(sh(("%s -p %s -c conf/nginx.conf -g 'daemon off;' </dev/null >%s/logs/stdout 2>&1 & echo $!")
      :format(q(nginx_bin), q(prefix), q(prefix))))
    local up = false
    for _ = 1, 100 do
      local r = curl_many({ base .. "/ping" })[1]
      if r and r.status == 200 then
        up = true
        break
      end
      if not spawn.pid_alive(pid) then break end
      os.execute("sleep 0.05")
    end
    if not up then
      error("nginx did not start: " .. sh("cat " .. q(prefix .. "/logs/stdout") .. " " .. q(prefix .. "/logs/error.log")))
    end
  end)

  teardown(function()
    if pid and spawn.pid_alive(pid) then
      os.execute("kill -QUIT " .. pid)
      for _ = 1, 100 do
        if not spawn.pid_alive(pid) then break end
        os.execute("sleep 0.05")
      end
      if spawn.pid_alive(pid) then os.execute("kill -KILL " .. pid) end
    end
    if prefix then
      local log = sh("cat " .. q(prefix .. "/logs/error.log") .. " 2>/dev/null")
      -- nothing the handlers raised, and no secret in nginx's log
      assert.is_nil(log:match("%[error%][^\n]*lua[^\n]*"), log)
      assert.is_nil(log:find(HOOK_PASSWORD, 1, true))
      assert.is_nil(log:find(CLIENT_SECRET, 1, true))
      os.execute("rm -rf " .. q(prefix))
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
    local pipedrive = require "pipedrive"
    local pd = pipedrive.new{ oauth = { client_id = CLIENT_ID, client_secret = CLIENT_SECRET,
                                        redirect_uri = ("http://127.0.0.1:%d/callback"):format(free_port()) },
                              oauth_url = sb1.url }
    assert(pd.oauth.login{ quiet = true, timeout = 20, open = function(url)
      os.execute("curl -s -L -o /dev/null --max-time 10 " .. q(url) .. " &")
    end })
    assert.equal(200, curl_many({ base .. "/token" }, { post = core.json_encode(pd.oauth.token()) })[1].status)
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
