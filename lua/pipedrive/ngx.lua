--- OpenResty (nginx + lua-nginx-module): what the library needs to run inside nginx
-- without blocking a worker.
--
--   local pdngx = require "pipedrive.ngx"
--   local pd = pipedrive.new{ api_token = ..., transport = pdngx.transport() }  -- the default under nginx
--   pipedrive.new{ oauth = { client_id = ..., client_secret = ...,
--                            store = pdngx.token_store("pipedrive", "oauth") } }
--   pdngx.webhook(triggers, { dict = "pipedrive" })                              -- in content_by_lua
--
-- * transport(opts): a subrequest (ngx.location.capture) to an internal location that
--   proxy_passes to Pipedrive, so nginx itself does the I/O and the worker keeps serving.
--   Subrequests exist only in the rewrite, access and content phases; elsewhere (timers,
--   init_worker) lua-resty-http is used when it is installed, else the call returns
--   nil, err (kind "unsupported") saying so. libcurl is never used by it.
-- * upstream(): the rewrite_by_lua handler of that internal location (see README "OpenResty").
-- * token_store(dict, key): the OAuth token in a shared dict, seen by every worker, with a
--   cross-worker lock so that one refresh happens at a time (lua-resty-lock when installed,
--   else an add-with-expiry lock and an ngx.sleep wait).
-- * seen(dict): the webhook de-duplication store of pd.triggers in a shared dict.
-- * webhook(triggers, opts): answers the current request with triggers:handle and runs
--   the callbacks after the answer, in ngx.timer.at(0, ...) (or before it, defer = false).
--
-- Requiring this module does nothing with ngx; every function looks it up when called.
local compat = require "pipedrive.compat"
local core = require "pipedrive.core"

local M = {}

local REQUEST_PHASES = { rewrite = true, access = true, content = true }

-- The ngx table, or a raise naming the caller when not under OpenResty.
local function need_ngx(what)
  local ngx = rawget(_G, "ngx")
  if type(ngx) ~= "table" or type(ngx.get_phase) ~= "function" then
    error(("pipedrive.ngx.%s: only works inside OpenResty (no ngx table)"):format(what), 3)
  end
  return ngx
end

local function fail(kind, message, stage)
  return nil, setmetatable({ kind = kind, message = message, stage = stage }, core.error_mt)
end

--- True when running inside nginx (the ngx API is there).
function M.available()
  local ngx = rawget(_G, "ngx")
  return type(ngx) == "table" and type(ngx.get_phase) == "function"
end

--- The retry loop's wait under nginx: ngx.sleep yields to the event loop.
function M.sleep(seconds)
  return need_ngx("sleep").sleep(seconds)
end

-- Response headers as the client expects them: lower-case names, the last value of a repeat.
local function lower_headers(h)
  local out = {}
  for k, v in pairs(h or {}) do
    if type(v) == "table" then v = v[#v] end
    out[tostring(k):lower()] = tostring(v)
  end
  return out
end

local resty_http -- false when lua-resty-http is not installed, the module when it is
local function load_resty_http()
  if resty_http == nil then
    local ok, m = pcall(require, "resty.http")
    resty_http = ok and type(m) == "table" and m or false
  end
  return resty_http
end

-- One request through lua-resty-http (cosockets: timers and request phases alike).
local function via_resty_http(http, req, opts)
  local c = http.new()
  c:set_timeouts(opts.connect_timeout * 1000, opts.timeout * 1000, opts.timeout * 1000)
  local res, err = c:request_uri(req.url, {
    method = req.method, headers = req.headers, body = req.body, ssl_verify = opts.verify ~= false,
    keepalive_timeout = 60000,
  })
  if not res then
    err = tostring(err)
    return fail(err:find("timeout") and "timeout" or "network", "lua-resty-http: " .. err:sub(1, 200),
      err:find("connect") and "connect" or "transfer")
  end
  return { status = res.status, headers = lower_headers(res.headers), body = res.body or "" }
end

--- A transport for pipedrive.new running inside nginx.
-- opts: location (the internal location, default "/_pipedrive"), timeout and
-- connect_timeout (seconds, for lua-resty-http; the location's proxy_*_timeout
-- apply to subrequests), via ("subrequest" or "resty.http"; default: a subrequest
-- in the rewrite/access/content phases, lua-resty-http elsewhere when installed).
function M.transport(opts)
  opts = opts or {}
  if type(opts) ~= "table" then error("pipedrive.ngx.transport: expected a table of options", 2) end
  local location = opts.location or "/_pipedrive"
  if type(location) ~= "string" or location:sub(1, 1) ~= "/" then
    error("pipedrive.ngx.transport: location must be a path such as \"/_pipedrive\"", 2)
  end
  if opts.via ~= nil and opts.via ~= "subrequest" and opts.via ~= "resty.http" then
    error('pipedrive.ngx.transport: via must be "subrequest" or "resty.http"', 2)
  end
  local ropts = { timeout = opts.timeout or 30, connect_timeout = opts.connect_timeout or 10, verify = opts.verify }

  return function(req)
    local ngx = need_ngx("transport")
    local phase = ngx.get_phase()
    local via = opts.via or (REQUEST_PHASES[phase] and "subrequest" or "resty.http")
    -- lua-nginx-module refuses subrequests inside HTTP/2 requests (0.10.23 raises)
    local h2 = via == "subrequest" and REQUEST_PHASES[phase] and ngx.req.http_version() == 2
    if h2 and not opts.via then via = "resty.http" end
    if via == "resty.http" then
      local http = load_resty_http()
      if http then return via_resty_http(http, req, ropts) end
      if h2 then
        return fail("unsupported", "nginx cannot make subrequests while serving an HTTP/2 request:"
          .. " serve this location over HTTP/1.1, or install lua-resty-http")
      end
      return fail("unsupported", ("no non-blocking HTTP in nginx's %s phase: subrequests work only in"
        .. " rewrite/access/content handlers; install lua-resty-http for timers"):format(phase))
    end
    if h2 then
      return fail("unsupported", "nginx cannot make subrequests while serving an HTTP/2 request:"
        .. " serve this location over HTTP/1.1, or use via = \"resty.http\" with lua-resty-http")
    end
    if not REQUEST_PHASES[phase] then
      return fail("unsupported", ("nginx subrequests do not work in the %s phase: call from a"
        .. " rewrite/access/content handler, or install lua-resty-http"):format(phase))
    end
    local method = ngx["HTTP_" .. req.method]
    if not method then return fail("unsupported", "nginx cannot send the method " .. tostring(req.method)) end
    local h = req.headers or {}
    local body = req.body
    if body == nil and (req.method == "POST" or req.method == "PUT" or req.method == "PATCH") then body = "" end
    local res = ngx.location.capture(location, {
      method = method, body = body,
      -- a fresh ngx.ctx for the subrequest: upstream() reads the request from it
      ctx = { pipedrive = { url = req.url, authorization = h.authorization or "",
                            api_token = h["x-api-token"] or "", content_type = h["content-type"] or "",
                            accept = h.accept or "application/json" } },
    })
    if not res or not res.status then return fail("network", "the nginx subrequest failed", "transfer") end
    if res.truncated then
      -- nginx got no (whole) answer: a 502/504 of its own has no body. Whether any byte
      -- of the request left is not known here, so the stage is "transfer" (POSTs are then
      -- not resent by the retry policy).
      local empty = (res.body or "") == ""
      if empty and res.status == 504 then return fail("timeout", "nginx: the API did not answer in time", "transfer") end
      if empty and res.status == 502 then return fail("network", "nginx could not reach the API", "transfer") end
      return fail("network", "the response from the API was cut short", "transfer")
    end
    if res.status == 404 and (res.body or ""):find("<center>nginx", 1, true) then
      return fail("unsupported", ("nginx answered 404 for the internal location %s: add it to nginx.conf"
        .. " (see README, OpenResty)"):format(location))
    end
    return { status = res.status, headers = lower_headers(res.header), body = res.body or "" }
  end
end

--- The rewrite_by_lua handler of the internal location: moves the request that
-- transport() put in the subrequest's ngx.ctx into the variables proxy_pass uses.
function M.upstream()
  local ngx = need_ngx("upstream")
  local r = ngx.ctx.pipedrive
  if type(r) ~= "table" or type(r.url) ~= "string" or not r.url:match("^https?://") then
    return ngx.exit(ngx.HTTP_NOT_FOUND)
  end
  local v = ngx.var
  v.pipedrive_url = r.url
  v.pipedrive_authorization = r.authorization
  v.pipedrive_api_token = r.api_token
  v.pipedrive_content_type = r.content_type
  v.pipedrive_accept = r.accept
end

------------------------------------------------------------------------------
-- Shared dicts: the token store, the refresh lock, the seen store
------------------------------------------------------------------------------
local function shared(ngx, dict, what)
  if type(dict) == "string" then
    local d = ngx.shared[dict]
    if not d then
      error(("pipedrive.ngx.%s: no lua_shared_dict %s in nginx.conf"):format(what, dict), 3)
    end
    return d
  end
  if type(dict) ~= "table" and type(dict) ~= "userdata" then
    error(("pipedrive.ngx.%s: dict must be the name of a lua_shared_dict or ngx.shared.NAME"):format(what), 3)
  end
  return dict
end

-- Runs fn() while holding the lock `name` of dict across all workers; returns its
-- results, or nil, err when the lock could not be had within `timeout` seconds.
-- lua-resty-lock when installed; else dict:add with an expiry (a dead holder's lock
-- goes away) and an ngx.sleep wait.
local function with_lock(ngx, dict_name, dict, name, timeout, fn)
  local ok_lock, lockmod = pcall(require, "resty.lock")
  if ok_lock and type(dict_name) == "string" then
    local lock = lockmod:new(dict_name, { exptime = timeout + 5, timeout = timeout })
    local elapsed, lerr = lock:lock(name)
    if not elapsed then return fail("refresh_in_progress", "could not take the refresh lock: " .. tostring(lerr)) end
    local r = compat.pack(pcall(fn))
    lock:unlock()
    if not r[1] then error(r[2], 0) end
    return compat.unpack(r, 2, r.n)
  end
  local deadline = ngx.now() + timeout
  local wait = 0.005
  while true do
    local ok, err = dict:add(name, ngx.worker.pid(), timeout + 5)
    if ok then break end
    if err ~= "exists" then return fail("refresh_in_progress", "could not take the refresh lock: " .. tostring(err)) end
    if ngx.now() >= deadline then
      return fail("refresh_in_progress", "another worker has been refreshing the token for too long")
    end
    ngx.sleep(wait)
    wait = math.min(wait * 2, 0.1)
  end
  local r = compat.pack(pcall(fn))
  dict:delete(name)
  if not r[1] then error(r[2], 0) end
  return compat.unpack(r, 2, r.n)
end

--- An OAuth token store in a shared dict, for pipedrive.new's oauth.store: every
-- worker sees the newest token, and refreshes happen one at a time across
-- workers (the others wait for it and use its result). Use it from request
-- handlers or timers (the lock waits with ngx.sleep).
-- dict: a lua_shared_dict name (or ngx.shared.NAME); key: the entry's name (default "token").
-- opts.lock_timeout: seconds to wait for another worker's refresh (default 15).
function M.token_store(dict, key, opts)
  local ngx = need_ngx("token_store")
  local dict_name = type(dict) == "string" and dict or nil
  dict = shared(ngx, dict, "token_store")
  key = key or "token"
  if type(key) ~= "string" or key == "" then error("pipedrive.ngx.token_store: key must be a string", 2) end
  opts = opts or {}
  local lock_timeout = opts.lock_timeout or 15

  local store = {}
  --- The token saved in the dict, or nil.
  function store.load()
    local text = dict:get(key)
    if type(text) ~= "string" then return nil end
    local ok, t = pcall(core.json_decode, text)
    if ok and type(t) == "table" and type(t.access_token) == "string" then return t end
    return nil
  end
  store.token = store.load()
  function store.on_token(t)
    local ok, err, forcible = dict:set(key, core.json_encode(t))
    if not ok then error("pipedrive.ngx.token_store: cannot save the token: " .. tostring(err), 0) end
    if forcible then ngx.log(ngx.WARN, "pipedrive.ngx.token_store: the shared dict is full; entries were evicted") end
  end
  function store.on_revoke() dict:delete(key) end
  --- Runs fn while no other worker refreshes this token.
  function store.lock(fn)
    return with_lock(ngx, dict_name, dict, key .. ":refresh-lock", lock_timeout, fn)
  end
  return store
end

--- The seen-events store of pd.triggers in a shared dict: { check, mark, claim, release }.
-- claim(key) takes an event for one handler across all workers (the entry says
-- "running" for `running_ttl` seconds, default 60, so a crashed worker's claim ends);
-- mark(key, ttl) records success; release(key) lets a redelivery be handled again.
function M.seen(dict, opts)
  local ngx = need_ngx("seen")
  dict = shared(ngx, dict, "seen")
  opts = opts or {}
  local prefix = opts.prefix or "seen:"
  local running_ttl = opts.running_ttl or 60
  return {
    check = function(key) return dict:get(prefix .. key) == "done" end,
    claim = function(key)
      local ok, err = dict:add(prefix .. key, "running", running_ttl)
      if ok then return true end
      if err ~= "exists" then error("the shared dict refused the event: " .. tostring(err), 0) end
      return false, dict:get(prefix .. key) == "done" and "seen" or "busy"
    end,
    mark = function(key, ttl)
      local ok, err = dict:set(prefix .. key, "done", ttl)
      if not ok then error("the shared dict refused the event: " .. tostring(err), 0) end
    end,
    release = function(key) dict:delete(prefix .. key) end,
  }
end

------------------------------------------------------------------------------
-- Webhooks
------------------------------------------------------------------------------
--- Answers the current request (content_by_lua) with triggers:handle.
-- opts.defer (default true): answer as soon as the request is checked and the
-- event claimed, then run the callbacks in ngx.timer.at(0, ...). A callback
-- failure there cannot turn into a 5xx any more: it is logged and the event is
-- released (not marked seen), so a later redelivery of it runs the callbacks
-- again. With defer = false the callbacks run before the answer (still without
-- blocking the worker when they call the API through this transport) and a
-- failure answers 500, so that Pipedrive delivers again.
-- The triggers object should use pipedrive.ngx.seen(dict) as its `seen` store so
-- that de-duplication holds across workers.
function M.webhook(triggers, opts)
  local ngx = need_ngx("webhook")
  opts = opts or {}
  ngx.req.read_body()
  local body = ngx.req.get_body_data()
  if body == nil then
    local file = ngx.req.get_body_file()
    if file then
      local f = io.open(file, "rb")
      if f then
        body = f:read("*a")
        f:close()
      end
    end
  end
  local req = { method = ngx.req.get_method(), headers = ngx.req.get_headers(100), body = body or "",
                remote_addr = ngx.var.remote_addr }
  local defer
  if opts.defer ~= false then
    defer = function(job)
      local ok, err = ngx.timer.at(0, function(premature) job(premature) end)
      if not ok then error("cannot start a timer: " .. tostring(err), 0) end
    end
  end
  local status, headers, text = triggers:handle(req, { defer = defer })
  ngx.status = status
  for k, v in pairs(headers or {}) do ngx.header[k] = v end
  ngx.print(text or "")
end

return M
