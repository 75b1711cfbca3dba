--- A Pipedrive client: one set of credentials, one connection, the resource tables.
--
-- Each call goes through the same three steps, so that any transport can sit in
-- the middle: `core.build_request` (C) turns the translated arguments into
-- method, URL, headers and body; the transport (libcurl by default, or a Lua
-- function given as `transport`) performs it; `core.parse_response` (C) maps the
-- answer to `value, info` or `nil, err`.
local compat = require "pipedrive.compat"
local core = require "pipedrive.core"
local pdngx = require "pipedrive.ngx"
local operations = require "pipedrive.operations"
local params = require "pipedrive.params"
local oauth = require "pipedrive.oauth"
local retry = require "pipedrive.retry"
local redact = require "pipedrive.redact"
local redirect = require "pipedrive.redirect"
local scheduler = require "pipedrive.scheduler"

local M = {}

local VERSION = "0.1.0"
local DEFAULT_BASE_URL = "https://api.pipedrive.com"

local client_mt = {}
client_mt.__index = client_mt

local function is_loopback(host)
  return host == "localhost" or host:match("^127%.%d+%.%d+%.%d+$") ~= nil or host == "[::1]"
end

-- Checks base_url: https anywhere, plain http only on loopback (or when asked).
local function check_base_url(url, insecure)
  if type(url) ~= "string" then return nil, "base_url must be a string" end
  local scheme, host = url:match("^(https?)://(%[?[%w%.%-:]+%]?)")
  if not scheme then
    -- Only the scheme is quoted: the rest of a URL may hold a token.
    local given = url:match("^(%a[%w+.-]*):")
    return nil, "base_url must start with https:// (got " .. (given and ("'" .. given:sub(1, 20) .. ":'") or "no scheme") .. ")"
  end
  local hostname = host:match("^(%[.*%])") or host:match("^([^:]+)")
  if scheme == "http" and not insecure and not is_loopback(hostname) then
    return nil, "base_url uses plain http to a host that is not loopback; use https, or insecure = true"
  end
  if url:find("[?#]") or url:find("%s") then return nil, "base_url must not have a query, fragment or spaces" end
  return (url:gsub("/+$", ""))
end

local function transport_error(message, method, path)
  return setmetatable({ kind = "network", message = message, method = method, path = path }, core.error_mt)
end

--- Creates a client. See README.md for every option.
function M.new(opts)
  if type(opts) ~= "table" then error("pipedrive.new: expected a table of options", 2) end
  local known = { api_token = true, base_url = true, api = true, timeout = true, connect_timeout = true,
                  transport = true, insecure = true, user_agent = true, max_response = true,
                  oauth = true, oauth_url = true, retries = true, sleep = true,
                  pace = true, max_redirects = true, log = true }
  for k in pairs(opts) do
    if not known[k] then error(("pipedrive.new: unknown option '%s'"):format(tostring(k)), 2) end
  end
  local token = opts.api_token
  if opts.oauth ~= nil and token ~= nil then error("pipedrive.new: give api_token or oauth, not both", 2) end
  if opts.oauth == nil and (type(token) ~= "string" or token == "" or token:find("[%c%s]")) then
    error("pipedrive.new: api_token must be a non-empty string without spaces (or give oauth = {...})", 2)
  end
  local api = opts.api or "v2"
  if api ~= "v1" and api ~= "v2" then error("pipedrive.new: api must be 'v1' or 'v2'", 2) end
  local insecure = opts.insecure
  local base_url, err = check_base_url(opts.base_url or DEFAULT_BASE_URL, insecure)
  if not base_url then error("pipedrive.new: " .. err, 2) end
  if opts.oauth_url ~= nil then
    local ok, oerr = check_base_url(opts.oauth_url, insecure)
    if not ok then error("pipedrive.new: oauth_url: " .. oerr:gsub("^base_url ", ""), 2) end
  end
  if opts.transport ~= nil and type(opts.transport) ~= "function" then
    error("pipedrive.new: transport must be a function(req) returning { status, headers, body }", 2)
  end
  for _, k in ipairs({ "timeout", "connect_timeout" }) do
    if opts[k] ~= nil and (type(opts[k]) ~= "number" or opts[k] <= 0) then
      error(("pipedrive.new: %s must be a positive number of seconds"):format(k), 2)
    end
  end

  local policy, perr = retry.policy(opts.retries)
  if policy == nil then error("pipedrive.new: " .. perr, 2) end
  if opts.sleep ~= nil and type(opts.sleep) ~= "function" then
    error("pipedrive.new: sleep must be a function(seconds)", 2)
  end
  local in_nginx = pdngx.available() -- there the worker must never block: nginx does the I/O and the waits
  local last_rate, last_rate_at -- the last rate-limit figures seen and when, for pd.rate_limit()
  local pace, pace_err = retry.pace_policy(opts.pace)
  if pace == nil then error("pipedrive.new: " .. pace_err, 2) end
  local windows = {} -- per bucket ("api", "search"): the last figures and when (core.now()) they came
  local max_redirects = opts.max_redirects or 0
  if compat.math_type(max_redirects) ~= "integer" or max_redirects < 0 or max_redirects > 20 then
    error("pipedrive.new: max_redirects must be an integer from 0 to 20", 2)
  end
  if opts.log ~= nil and type(opts.log) ~= "function" then
    error("pipedrive.new: log must be a function(event)", 2)
  end

  -- With libcurl, calls made inside pd.parallel (or a prefetch) are tasks of
  -- `sched`: their requests go to one multi handle, their retry waits become
  -- timers. Elsewhere they use the client's easy handle, one at a time.
  local http, sched
  local transport = opts.transport or (in_nginx and pdngx.transport() or nil)
  if not transport then
    local http_opts = {
      timeout = opts.timeout, connect_timeout = opts.connect_timeout,
      max_response = opts.max_response,
      user_agent = opts.user_agent or ("pipedrive-lua/" .. VERSION),
    }
    http = core.http_new(http_opts)
    -- Plain Lua 5.1 cannot yield across the call pipeline's pcall: there
    -- pd.parallel runs its functions one after another and prefetch is off.
    if compat.yield_across_pcall then sched = scheduler.new(function() return core.multi_new(http_opts) end) end
    transport = function(req)
      if sched and sched.current() then return sched.perform(req) end
      return http:perform(req)
    end
  end
  -- Under the call pipeline: the debug hook sees every hop of every attempt;
  -- above it, redirects are followed in Lua (credentials stay on their origin).
  local hook = { attempt = 1, redirect = 0 }
  local auth -- set below; the hook's literal net asks it for the live tokens
  hook.secrets = function()
    local list = { token }
    if opts.oauth and type(opts.oauth) == "table" then list[#list + 1] = opts.oauth.client_secret end
    local t = auth and auth.token()
    if t then list[#list + 1], list[#list + 2] = t.access_token, t.refresh_token end
    return list
  end
  if opts.log then transport = redact.wrap(transport, opts.log, hook, core.now) end
  transport = redirect.wrap(transport, max_redirects, insecure, hook)
  local user_sleep = opts.sleep or (in_nginx and pdngx.sleep) or nil
  local clock = { now = core.now, sleep = function(seconds)
    if not user_sleep and sched and sched.current() then return sched.sleep(seconds) end
    return (user_sleep or core.sleep)(seconds)
  end }

  -- Credentials live only in these upvalues and in the header tables handed to
  -- the transport; the client table never holds them.
  local api_token_headers = token and { ["x-api-token"] = token, accept = "application/json" }
  -- OAuth token calls are POSTs: retried only on a 429 and when nothing was sent.
  local function oauth_send(req)
    hook.attempt = 1
    if not policy then return transport(req) end
    local res, ferr, last = retry.run(policy, "POST", function(n)
      hook.attempt = n
      local r, e = transport(req)
      if r and r.status == 429 then
        local h = r.headers or {}
        return nil, { status = 429, retry_after = tonumber(h["retry-after"] or h["x-ratelimit-reset"] or "") }, r
      end
      return r, e
    end, clock)
    if res then return res end
    if last then return last end -- the final 429 answer, for the token parser
    return nil, ferr
  end
  auth = opts.oauth ~= nil and oauth.new(opts.oauth, oauth_send, opts.oauth_url) or nil
  local explicit_base = opts.base_url ~= nil

  -- The headers and API host for the next call: the OAuth token's api_domain
  -- unless base_url was given, refreshing the token first when it is due.
  local function credentials()
    if not auth then return api_token_headers, base_url end
    local value, generation = auth.authorization()
    if not value then return nil, generation end
    local host = base_url
    local domain = not explicit_base and auth.api_domain()
    if domain then host = check_base_url(domain, insecure) or base_url end
    return { authorization = value, accept = "application/json" }, host, generation
  end

  local self = setmetatable({ api = api }, client_mt)
  local function base_for_display()
    local d = not explicit_base and auth and auth.api_domain()
    return d or base_url
  end

  -- One call of one operation; `level` places misuse errors at the user's line.
  local function call(rname, fname, op, args, level)
    local call_policy = policy
    if type(args) == "table" and args.retries ~= nil then
      -- Per-call retries: taken out before the arguments are translated.
      local p, perr2 = retry.policy(args.retries, policy)
      if p == nil then error(("pipedrive.%s.%s: %s"):format(rname, fname, perr2), level + 1) end
      call_policy = p
      local a = {}
      for k, v in pairs(args) do a[k] = v end
      a.retries = nil
      args = a
    end
    local version = (api == "v1" or not op.v2) and "v1" or "v2"
    local route = op[version]
    local fields, r = params.translate(op, version, args)
    if not fields then error(("pipedrive.%s.%s: %s"):format(rname, fname, r), level + 1) end
    local path = r.path or route.path
    local ctx_path = path
    if next(r.path_params) ~= nil then ctx_path = path:gsub("{(%w+)}", r.path_params) end
    local is_body = route.method ~= "GET" and route.method ~= "DELETE"
    -- One attempt: credentials, request, transport, answer. Returns
    -- data, info or nil, err, the token generation it used.
    local bucket = op.kind == "search" and "search" or "api"
    local function once(n)
      -- Pacing: the last answer of this bucket said its window is nearly spent.
      local wait = pace and retry.pace_wait(pace, windows[bucket], clock.now()) or 0
      if wait > 0 then
        if opts.log then opts.log{ type = "pace", wait = wait, bucket = bucket, remaining = windows[bucket].remaining } end
        clock.sleep(wait)
        windows[bucket] = nil
      end
      local headers, host, generation = credentials()
      if not headers then
        host.method, host.path = route.method, ctx_path
        return nil, host
      end
      local req = core.build_request{
        method = route.method, base_url = host, path = path, path_params = r.path_params,
        query = not is_body and fields or nil, body = is_body and fields or nil, headers = headers,
      }
      hook.attempt = n or 1 -- after credentials(): a token refresh there reports its own attempts
      -- Lists and searches come in large pages: worth asking for compression.
      if op.kind == "list" or op.kind == "search" then req.compress = true end
      local res, terr = transport(req)
      if not res then
        if type(terr) ~= "table" then
          terr = transport_error(tostring(terr or "transport failed"), route.method, ctx_path)
        end
        terr.method, terr.path = terr.method or route.method, terr.path or ctx_path
        return nil, terr, generation
      end
      local data, info = core.parse_response(res, {
        method = route.method, path = ctx_path, paging = route.paging, search = op.kind == "search",
      })
      -- On success parse_response has read the rate-limit figures already.
      local fig
      if data ~= nil then
        if next(info.rate_limit) ~= nil then fig = info.rate_limit end
      else
        fig = retry.rate_limit(res.headers, os.time())
      end
      if fig then
        last_rate, last_rate_at = fig, os.time()
        if pace then
          windows[bucket] = { limit = fig.limit, remaining = fig.remaining, reset = fig.reset,
                              daily_left = fig.daily_left, mono = clock.now() }
        end
      end
      if data ~= nil then
        info.api = version
        info.cost = r.cost or route.cost
        return data, info
      end
      retry.classify(info, res.headers)
      return nil, info, generation
    end
    for attempt = 1, 2 do
      local data, info, generation = retry.run(call_policy, route.method, once, clock)
      if data ~= nil then return data, info end
      -- An access token refused before its expiry: refresh once (unless another
      -- call already did) and replay the call once.
      if not (auth and attempt == 1 and info.kind == "unauthorized") then return nil, info end
      local ok, rerr = auth.refresh(generation)
      if not ok then
        rerr.method, rerr.path = route.method, ctx_path
        return nil, rerr
      end
    end
  end

  -- Lazy pages as a generic-for iterator. A failed page raises the error
  -- object (as io.lines does): ending the loop silently would lose data.
  local function each(rname, op, args)
    if args ~= nil and type(args) ~= "table" then
      error(("pipedrive.%s.each: expected a table of arguments, got %s"):format(rname, type(args)), 3)
    end
    local a = {}
    for k, v in pairs(args or {}) do a[k] = v end
    local max_items, prefetch = a.max_items, a.prefetch
    a.max_items, a.prefetch = nil, nil
    if prefetch ~= nil and type(prefetch) ~= "boolean" then
      error(("pipedrive.%s.each: prefetch must be a boolean"):format(rname), 3)
    end
    if a.retries ~= nil and retry.policy(a.retries, policy) == nil then
      error(("pipedrive.%s.each: %s"):format(rname, select(2, retry.policy(a.retries, policy))), 3)
    end
    if max_items ~= nil and (compat.math_type(max_items) ~= "integer" or max_items < 0) then
      error(("pipedrive.%s.each: max_items must be a non-negative integer"):format(rname), 3)
    end
    local version = (api == "v1" or not op.v2) and "v1" or "v2"
    local paging = op[version].paging
    if paging ~= "none" and a.limit == nil then a.limit = 500 end
    -- Check the arguments now, so misuse raises at the for statement.
    local checked = a
    if a.retries ~= nil then
      checked = {}
      for k, v in pairs(a) do checked[k] = v end
      checked.retries = nil
    end
    local ok, problem = params.translate(op, version, checked)
    if not ok then error(("pipedrive.%s.each: %s"):format(rname, problem), 3) end
    local page, i, count, done = nil, 0, 0, false
    -- prefetch: the next page's call runs as a task on the multi handle while
    -- the caller works on this page (not inside a parallel task, where the
    -- call itself already lets the other tasks run, nor with a Lua transport).
    prefetch = prefetch and sched ~= nil
    local pending -- the task fetching the next page
    local function fetch()
      if pending then
        local r = sched.wait(pending)
        pending = nil
        if not r[1] then error(r[2], 0) end
        return r[2], r[3]
      end
      return call(rname, "each", op, a, 2)
    end
    local function start_prefetch()
      if sched.current() or (max_items and count + #page >= max_items) then return end
      local snapshot = {}
      for k, v in pairs(a) do snapshot[k] = v end
      pending = sched.spawn(function() return call(rname, "each", op, snapshot, 2) end)
      sched.step(0) -- sends the request now
    end
    -- Lua 5.4 closes it when a loop breaks; before 5.4 nothing does, so it can
    -- also be called: `local it, s, c, stop = pd.deals.each{...}` ... `stop()`.
    local function drop_prefetch()
      if pending then sched.cancel(pending) end
      pending = nil
    end
    local closer = prefetch and setmetatable({}, { __close = drop_prefetch, __call = drop_prefetch }) or nil
    local function iter()
      if max_items and count >= max_items then return nil end
      if page == nil or i >= #page then
        if done then return nil end
        local data, info = fetch()
        if data == nil then error(info, 2) end
        page, i = data, 0
        if paging == "none" or not info.more then
          done = true
        elseif paging == "cursor" then
          if not info.next_cursor or info.next_cursor == a.cursor then
            error(setmetatable({ kind = "decode", message = "more items announced without a new cursor",
                                 path = op[version].path }, core.error_mt), 2)
          end
          a.cursor = info.next_cursor
        else
          local next_start = info.next_start
          if compat.math_type(next_start) ~= "integer" or next_start <= (a.start or 0) then
            error(setmetatable({ kind = "decode", message = "more items announced without a next_start beyond "
                                   .. tostring(a.start or 0), path = op[version].path }, core.error_mt), 2)
          end
          a.start = next_start
        end
        if #page == 0 then return nil end
        if prefetch and not done then start_prefetch() end
      elseif pending and i % 32 == 0 then
        sched.step(0) -- keeps the prefetch's transfer moving
      end
      i = i + 1
      count = count + 1
      return page[i]
    end
    return iter, nil, nil, closer
  end

  for _, rname in ipairs(operations.RESOURCES) do
    local resource = operations[rname]
    local t = {}
    for fname, op in pairs(resource) do
      if type(op) == "table" and op.kind then
        local function fn(a, b)
          if a == t then a = b end -- also callable as pd.deals:list{...}
          -- get(5), get(5, { include_fields = ... }), update(5, { title = ... }), search("acme", { ... })
          local positional = (op.kind == "get" or op.kind == "delete" or op.kind == "update") and "id"
            or (op.kind == "search" and "term")
          if positional and a ~= nil and type(a) ~= "table" then
            local merged = { [positional] = a }
            if type(b) == "table" then
              for k, v in pairs(b) do merged[k] = v end
            end
            a = merged
          end
          return call(rname, fname, op, a, 2)
        end
        t[fname] = fn
        if fname == "list" then
          t.each = function(a, b)
            if a == t then a = b end
            return each(rname, op, a)
          end
        end
      end
    end
    self[rname] = t
  end

  --- Closes the connection; the client cannot be used afterwards. Idempotent.
  local closed = false
  function self.close()
    closed = true
    if sched then sched.close() end
    if http then http:close() end
  end

  --- Runs fns (a list of functions making ordinary calls) at once, at most
  -- `concurrency` at a time; see README "Concurrency".
  function self.parallel(a, b)
    if a == self then a, b = b, nil end -- also callable as pd:parallel(fns, opts)
    if closed then error("pipedrive.parallel: the client is closed", 2) end
    return M.run_parallel(sched, a, b)
  end

  --- Transfers on the multi handle not yet collected: 0 between parallel
  -- runs, and after a prefetching loop ends or breaks.
  function self.in_flight()
    return sched and sched.in_flight() or 0
  end

  --- Webhook triggers on this client's account: pd.triggers{ url = ..., user = ..., password = ... }.
  -- See lua/pipedrive/triggers.lua and the README.
  function self.triggers(a, b)
    if a == self then a = b end -- also callable as pd:triggers{...}
    return require("pipedrive.triggers").new(self, a)
  end

  --- The last rate-limit figures seen: { limit, remaining, reset, daily_left, at }
  -- (`at` is os.time() of that answer), or nil before any answer carried them.
  function self.rate_limit()
    if not last_rate then return nil end
    local copy = {}
    for k, v in pairs(last_rate) do copy[k] = v end
    copy.at = last_rate_at
    return copy
  end

  --- The base URL calls go to now (the OAuth token's api_domain when it has one).
  function self.base_url() return base_for_display() end

  if auth then
    self.oauth = {
      authorize_url = auth.authorize_url, exchange = auth.exchange, revoke = auth.revoke, token = auth.token,
      refresh = function() return auth.refresh() end,
      login = function(args) return require("pipedrive.login").run(auth, opts.oauth.redirect_uri, args) end,
    }
  end

  return self
end

client_mt.__tostring = function(self)
  return ("pipedrive.client (api %s, %s%s)"):format(self.api, self.base_url(), self.oauth and ", oauth" or "")
end
client_mt.__close = function(self) self.close() end
client_mt.__name = "pipedrive.client"

-- One slot of pd.parallel's results from compat.pack(ok, fn's returns...).
local function parallel_slot(r)
  if not r[1] then return { nil, r[2], n = 2, ok = false, err = r[2], raised = true } end
  local slot = compat.pack(compat.unpack(r, 2, r.n))
  if slot[1] == nil and slot[2] ~= nil then
    slot.ok, slot.err = false, slot[2]
  else
    slot.ok, slot.value, slot.info = true, slot[1], slot[2]
  end
  return slot
end

local PARALLEL_OPTS = { concurrency = true, on_result = true }

--- pd.parallel's body: checks, then runs the functions as tasks of `sched`
-- (or one after another when there is none: a Lua transport, or a call from
-- inside a parallel task). Returns the slots in order and the failure count.
function M.run_parallel(sched, fns, popts)
  if type(fns) ~= "table" then error("pipedrive.parallel: expected a list of functions", 3) end
  local n = #fns
  for k, fn in pairs(fns) do
    if compat.math_type(k) ~= "integer" or k < 1 or k > n then
      error("pipedrive.parallel: expected a list of functions (keys 1..n, no holes)", 3)
    end
    if type(fn) ~= "function" then error(("pipedrive.parallel: item %d is not a function"):format(k), 3) end
  end
  popts = popts or {}
  if type(popts) ~= "table" then error("pipedrive.parallel: options must be a table", 3) end
  for k in pairs(popts) do
    if not PARALLEL_OPTS[k] then error(("pipedrive.parallel: unknown option '%s'"):format(tostring(k)), 3) end
  end
  local conc = popts.concurrency or 8
  if compat.math_type(conc) ~= "integer" or conc < 1 or conc > 1024 then
    error("pipedrive.parallel: concurrency must be an integer from 1 to 1024", 3)
  end
  local on_result = popts.on_result
  if on_result ~= nil and type(on_result) ~= "function" then
    error("pipedrive.parallel: on_result must be a function(i, slot)", 3)
  end
  local results, failed, finished = {}, 0, 0
  local function record(i, r)
    local slot = parallel_slot(r)
    results[i] = slot
    finished = finished + 1
    if not slot.ok then failed = failed + 1 end
    if on_result then on_result(i, slot) end
  end
  if not sched or sched.current() then
    for i = 1, n do record(i, compat.pack(pcall(fns[i]))) end
    return results, failed
  end
  local next_i, active, tasks = 1, 0, {}
  local launch
  launch = function()
    while active < conc and next_i <= n do
      local i = next_i
      next_i, active = i + 1, active + 1
      tasks[i] = sched.spawn(fns[i], function(r)
        tasks[i], active = nil, active - 1
        launch() -- only queues the next task; the scheduler's loop starts it
        record(i, r)
      end)
    end
  end
  local ok, err = pcall(function()
    launch()
    while finished < n do
      if not sched.step(1) and finished < n then error("pipedrive.parallel: stalled", 0) end
    end
  end)
  if not ok then
    for _, task in pairs(tasks) do sched.cancel(task) end
    error(err, 0)
  end
  return results, failed
end

M.VERSION = VERSION
return M
