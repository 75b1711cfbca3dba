--- pipedrive.new: the wiring of a client. It checks the options, chooses the
-- transport (libcurl, nginx's subrequests or the user's function) and stacks
-- the optional layers on it (debug hook, redirects), sets up OAuth, and builds
-- the resource tables. The call itself is pipeline.lua; `each` is paging.lua;
-- pd.parallel runs on scheduler.lua.
--
-- The client table holds only public functions and `api`. The Pipeline (with
-- the API token's headers and the OAuth state) lives in the weak-keyed
-- `private` table and in the resource functions' upvalues, so neither
-- tostring nor pairs ever reach a secret.
local compat = require "pipedrive.compat"
local core = require "pipedrive.core"
local pdngx = require "pipedrive.ngx"
local operations = require "pipedrive.operations"
local oauth = require "pipedrive.oauth"
local paging = require "pipedrive.paging"
local pipeline = require "pipedrive.pipeline"
local pacing = require "pipedrive.pace"
local retry = require "pipedrive.retry"
local redact = require "pipedrive.redact"
local redirect = require "pipedrive.redirect"
local scheduler = require "pipedrive.scheduler"

local M = {}

local VERSION = "0.1.0"
local DEFAULT_BASE_URL = "https://api.pipedrive.com"
local KNOWN = { api_token = true, base_url = true, api = true, timeout = true, connect_timeout = true,
                transport = true, insecure = true, user_agent = true, max_response = true,
                oauth = true, oauth_url = true, retries = true, sleep = true,
                pace = true, max_redirects = true, log = true,
                field_names = true, cache_ttl = true }
-- The operations that take an id or a term as their first argument.
local POSITIONAL = { get = "id", delete = "id", update = "id", search = "term" }

local check_base_url = pipeline.check_base_url

local private = setmetatable({}, { __mode = "k" }) -- client -> { pipeline, sched, http, closed }

local Client = { __name = "pipedrive.client" } -- the metatable; its functions take the client

-- Checks the options that need no other part; raises naming the option.
-- Returns base_url without trailing slashes, the retry policy, the pace policy.
local function check_options(opts)
  if type(opts) ~= "table" then error("pipedrive.new: expected a table of options", 3) end
  for k in pairs(opts) do
    if not KNOWN[k] then error(("pipedrive.new: unknown option '%s'"):format(tostring(k)), 3) end
  end
  local token = opts.api_token
  if opts.oauth ~= nil and token ~= nil then error("pipedrive.new: give api_token or oauth, not both", 3) end
  if opts.oauth == nil and (type(token) ~= "string" or token == "" or token:find("[%c%s]")) then
    error("pipedrive.new: api_token must be a non-empty string without spaces (or give oauth = {...})", 3)
  end
  local api = opts.api or "v2"
  if api ~= "v1" and api ~= "v2" then error("pipedrive.new: api must be 'v1' or 'v2'", 3) end
  local base_url, err = check_base_url(opts.base_url or DEFAULT_BASE_URL, opts.insecure)
  if not base_url then error("pipedrive.new: " .. err, 3) end
  if opts.oauth_url ~= nil then
    local ok, oerr = check_base_url(opts.oauth_url, opts.insecure)
    if not ok then error("pipedrive.new: oauth_url: " .. oerr:gsub("^base_url ", ""), 3) end
  end
  if opts.transport ~= nil and type(opts.transport) ~= "function" then
    error("pipedrive.new: transport must be a function(req) returning { status, headers, body }", 3)
  end
  for _, k in ipairs({ "timeout", "connect_timeout" }) do
    if opts[k] ~= nil and (type(opts[k]) ~= "number" or opts[k] <= 0) then
      error(("pipedrive.new: %s must be a positive number of seconds"):format(k), 3)
    end
  end
  local policy, perr = retry.policy(opts.retries)
  if policy == nil then error("pipedrive.new: " .. perr, 3) end
  if opts.sleep ~= nil and type(opts.sleep) ~= "function" then
    error("pipedrive.new: sleep must be a function(seconds)", 3)
  end
  local pace, pace_err = pacing.policy(opts.pace)
  if pace == nil then error("pipedrive.new: " .. pace_err, 3) end
  local max_redirects = opts.max_redirects or 0
  if compat.math_type(max_redirects) ~= "integer" or max_redirects < 0 or max_redirects > 20 then
    error("pipedrive.new: max_redirects must be an integer from 0 to 20", 3)
  end
  if opts.log ~= nil and type(opts.log) ~= "function" then
    error("pipedrive.new: log must be a function(event)", 3)
  end
  if opts.field_names ~= nil and type(opts.field_names) ~= "boolean" then
    error("pipedrive.new: field_names must be a boolean", 3)
  end
  if opts.cache_ttl ~= nil and (type(opts.cache_ttl) ~= "number" or opts.cache_ttl < 0) then
    error("pipedrive.new: cache_ttl must be a number of seconds, 0 or more", 3)
  end
  return base_url, policy, pace
end

-- The transport: the user's, nginx's, or libcurl's. With libcurl, calls made
-- inside pd.parallel (or a prefetch) are tasks of `sched`: their requests go
-- to one multi handle, their retry waits become timers. Elsewhere they use the
-- client's easy handle, one at a time. Returns send, http, sched.
local function base_transport(opts, in_nginx)
  local transport = opts.transport or (in_nginx and pdngx.transport() or nil)
  if transport then return M.string_bodies(transport) end
  local http_opts = {
    timeout = opts.timeout, connect_timeout = opts.connect_timeout, max_response = opts.max_response,
    user_agent = opts.user_agent or ("pipedrive-lua/" .. VERSION),
  }
  local http = core.http_new(http_opts)
  local sched
  -- Plain Lua 5.1 cannot yield across the call pipeline's pcall: there
  -- pd.parallel runs its functions one after another and prefetch is off.
  if compat.yield_across_pcall then sched = scheduler.new(function() return core.multi_new(http_opts) end) end
  if not sched then return function(req) return http:perform(req) end, http end
  local current, perform = sched.current, sched.perform
  return function(req)
    if sched.tasks > 0 and current() then return perform(req) end
    return http:perform(req)
  end, http, sched
end

--- A transport that takes string bodies only (nginx's, the user's function)
-- wrapped so that a multipart request reaches it as one body with its
-- boundary, written by the core (core.multipart_body). A file that cannot be
-- read is the call's failure (err.kind "file"), before anything is sent.
function M.string_bodies(transport)
  return function(req)
    local parts = req.multipart
    if parts == nil then return transport(req) end
    local body, ctype = core.multipart_body(parts)
    if not body then
      local u = core.url_parse(req.url)
      return nil, setmetatable({ kind = "file", stage = "connect", message = ctype, method = req.method,
                                 path = u and u.path }, core.error_mt)
    end
    local headers = {}
    for k, v in pairs(req.headers or {}) do headers[k] = v end
    headers["content-type"] = ctype
    local copy = {}
    for k, v in pairs(req) do copy[k] = v end
    copy.multipart, copy.body, copy.headers = nil, body, headers
    return transport(copy)
  end
end

-- The account whose windows a shared pacer counts: pace.key, else a hash of
-- the API token, else of the OAuth client id and the company's api_domain
-- (an access token changes at every refresh; the company does not).
local function pace_account(pace, opts, auth)
  if not pace.shared then return nil end
  if pace.key then
    local key = pace.key
    return function() return key end
  end
  local shared = pace.shared
  if opts.api_token then
    local key = shared:token_key(opts.api_token)
    return function() return key end
  end
  local client_id, domain, key = opts.oauth.client_id, false, nil
  return function()
    local d = auth.api_domain() or ""
    if d ~= domain then domain, key = d, "o" .. shared:token_key(client_id .. "\0" .. d) end
    return key
  end
end

-- The retry waits: the user's sleep, nginx's, a scheduler timer inside a task, or core.sleep.
local function make_clock(opts, in_nginx, sched)
  local user_sleep = opts.sleep or (in_nginx and pdngx.sleep) or nil
  return { now = core.now, sleep = function(seconds)
    if not user_sleep and sched and sched.current() then return sched.sleep(seconds) end
    return (user_sleep or core.sleep)(seconds)
  end }
end

-- OAuth token calls are POSTs: retried only on a 429 and when nothing was
-- sent. The 429's wait is read by the core (core.retry_after), as err.retry_after is.
local function oauth_sender(send, policy, hook, clock)
  return function(req)
    hook.attempt = 1
    if not policy then return send(req) end
    local res, ferr, last = retry.run(policy, "POST", function(n)
      hook.attempt = n
      local r, e = send(req)
      if r and r.status == 429 then
        return nil, { status = 429, retry_after = core.retry_after(r) }, r
      end
      return r, e
    end, clock)
    if res then return res end
    if last then return last end -- the final 429 answer, for the token parser
    return nil, ferr
  end
end

-- The resource table of `rname`: its functions, callable as pd.deals.list{...}
-- or pd.deals:list{...}; get(5), delete(5), update(5, {...}), search("acme", {...}).
-- `each` walks `list`; any other GET with paging named list_<x> gets each_<x>.
-- `ops` (weak keys) maps each function to what pd.each(fn) needs.
local function resource(p, sched, rname, ops)
  local t = {}
  for fname, op in pairs(operations[rname]) do
    if type(op) == "table" and op.kind then
      local positional = op.positional or POSITIONAL[op.kind]
      if op.kind == "call" and not op.positional and op.params.id and op.params.id.path then positional = "id" end
      local plan = p:plan(op)
      -- get(5) skips the translation, unless field_names asks for the answer to be reshaped.
      local id_check = not p.field_names and plan.id_check
      t[fname] = function(a, b)
        if a == t then a = b end
        if positional and a ~= nil and type(a) ~= "table" then
          if type(b) ~= "table" and id_check then
            local value = id_check(a)
            if value ~= nil then return p:call_id(plan, value) end
          end
          local merged = { [positional] = a }
          if type(b) == "table" then
            for k, v in pairs(b) do merged[k] = v end
          end
          a = merged
        end
        return p:call(rname, fname, op, a, 2)
      end
      ops[t[fname]] = { rname = rname, fname = fname, op = op }
      local each_name = fname == "list" and "each" or (plan.paging ~= "none" and plan.method == "GET"
        and fname:match("^list_(.+)") and "each_" .. fname:match("^list_(.+)"))
      if each_name and not operations[rname][each_name] then
        t[each_name] = function(a, b)
          if a == t then a = b end
          return paging.each(p, sched, rname, op, a, each_name)
        end
      end
    end
  end
  return t
end

--- Creates a client. See README.md for every option.
function M.new(opts)
  local base_url, policy, pace = check_options(opts)
  local in_nginx = pdngx.available() -- there the worker must never block: nginx does the I/O and the waits
  local send, http, sched = base_transport(opts, in_nginx)
  -- Under the call pipeline: the debug hook sees every hop of every attempt;
  -- above it, redirects are followed in Lua (credentials stay on their origin).
  local hook = { attempt = 1, redirect = 0 }
  local token = opts.api_token
  local auth -- set below; the hook's literal net asks it for the live tokens
  hook.secrets = function()
    local list = { token }
    if type(opts.oauth) == "table" then list[#list + 1] = opts.oauth.client_secret end
    local t = auth and auth.token()
    if t then list[#list + 1], list[#list + 2] = t.access_token, t.refresh_token end
    return list
  end
  if opts.log then send = redact.wrap(send, opts.log, hook, core.now) end
  send = redirect.wrap(send, opts.max_redirects or 0, opts.insecure, hook)
  local clock = make_clock(opts, in_nginx, sched)
  auth = opts.oauth ~= nil and oauth.new(opts.oauth, oauth_sender(send, policy, hook, clock), opts.oauth_url,
    clock.sleep) or nil

  local p = pipeline.new{
    api = opts.api or "v2", base_url = base_url, explicit_base = opts.base_url ~= nil, insecure = opts.insecure,
    policy = policy, pace = pace, log = opts.log, auth = auth, send = send, clock = clock, hook = hook,
    headers = token and { ["x-api-token"] = token, accept = "application/json" },
    field_names = opts.field_names or nil, cache_ttl = opts.cache_ttl,
  }
  if pace then p:set_pacer(pacing.new(pace, { clock = clock, log = opts.log, account = pace_account(pace, opts, auth) })) end
  local self = setmetatable({ api = p.api }, Client)
  private[self] = { pipeline = p, sched = sched, http = http, closed = false,
                    ops = setmetatable({}, { __mode = "k" }) } -- function -> what pd.each(fn) needs
  -- Resource tables are built on first use (Client.__index): the client costs
  -- the same whatever the number of operations.
  self.request = function(a, b, c, d)
    if a == self then a, b, c = b, c, d end
    local data, info = p:request(a, b, c, 2)
    return data, info
  end
  self.each = function(a, b, c)
    if a == self then a, b = b, c end
    return Client.each(self, p, sched, private[self].ops, a, b)
  end

  -- The public functions work called as pd.close() and as pd:close().
  self.close = function() return Client.close(self) end
  self.parallel = function(a, b)
    if a == self then a, b = b, nil end
    return Client.parallel(self, a, b)
  end
  self.in_flight = function() return Client.in_flight(self) end
  self.triggers = function(a, b)
    if a == self then a = b end
    return require("pipedrive.triggers").new(self, a, function(ev, named, names)
      return require("pipedrive.extras").event(p, ev, named, names)
    end)
  end
  self.rate_limit = function() return Client.rate_limit(self) end
  self.call = function(a, b, c)
    if a == self then a, b = b, c end
    return Client.call(self, a, b)
  end
  self.base_url = function() return p:current_base() end
  -- pd.fields("deal"): the field definitions of an object kind (cached, see fields.lua).
  self.fields = function(a, b)
    if a == self then a = b end
    return require("pipedrive.fields").public(p, a)
  end
  if auth then
    self.oauth = {
      authorize_url = auth.authorize_url, exchange = auth.exchange, revoke = auth.revoke, token = auth.token,
      refresh = function() return auth.refresh() end,
      login = function(args) return require("pipedrive.login").run(auth, opts.oauth.redirect_uri, args) end,
    }
  end
  return self
end

-- pd.notes, pd.deal_fields...: the resource table, made on first use.
function Client.__index(self, k)
  if type(k) == "string" and operations.has(k) then
    local st = private[self]
    local t = resource(st.pipeline, st.sched, k, st.ops)
    rawset(self, k, t)
    return t
  end
end

--- pd.call(operationId, args): any operation by its OpenAPI operationId
-- (e.g. "getDealFollowers"), the same as the resource function it names.
function Client.call(self, operation_id, args)
  local rname, fname = operations.find(operation_id)
  if not rname then
    error(("pipedrive.call: unknown operationId '%s'"):format(tostring(operation_id)), 3)
  end
  return self[rname][fname](args)
end

--- Closes the connection; the client cannot be used afterwards. Idempotent.
function Client.close(self)
  local st = private[self]
  st.closed = true
  if st.sched then st.sched.close() end
  if st.http then st.http:close() end
end

--- Runs fns (a list of functions making ordinary calls) at once, at most
-- `concurrency` at a time; see README "Concurrency".
function Client.parallel(self, fns, popts)
  local st = private[self]
  -- Reached by tail calls from pd.parallel: level 2 is the user's code.
  if st.closed then error("pipedrive.parallel: the client is closed", 2) end
  return scheduler.parallel(st.sched, fns, popts)
end


--- pd.each(target, args): the pages of any paged operation, named by its
-- function (pd.deals.list_followers), its OpenAPI operationId, or a raw GET
-- path ("/api/v2/deals/{id}/followers", with { path_params, query }).
function Client.each(self, p, sched, ops, target, args)
  if private[self].closed then error("pipedrive.each: the client is closed", 3) end
  if type(target) == "string" and (target:sub(1, 1) == "/" or target:match("^%a[%w+.-]*://")) then
    return paging.each_path(p, sched, target, args)
  end
  local entry = ops[target]
  if type(target) == "string" then
    local rname, fname, op = operations.find(target)
    if not op then error(("pipedrive.each: no operation with the operationId '%s'"):format(target:sub(1, 60)), 3) end
    entry = { rname = rname, fname = fname, op = op }
  elseif not entry then
    error("pipedrive.each: expected an operation's function (pd.deals.list), an operationId or a path, got "
      .. type(target), 3)
  end
  return paging.each(p, sched, entry.rname, entry.op, args, "each")
end

--- Transfers on the multi handle not yet collected: 0 between parallel
-- runs, and after a prefetching loop ends or breaks.
function Client.in_flight(self)
  local sched = private[self].sched
  return sched and sched.in_flight() or 0
end

--- The last rate-limit figures seen: { limit, remaining, reset, daily_left, at }
-- (`at` is os.time() of that answer), or nil before any answer carried them.
function Client.rate_limit(self)
  local p = private[self].pipeline
  if not p.last_rate then return nil end
  local copy = {}
  for k, v in pairs(p.last_rate) do copy[k] = v end
  copy.at = p.last_rate_at
  return copy
end

function Client.__tostring(self)
  return ("pipedrive.client (api %s, %s%s)"):format(self.api, self.base_url(), self.oauth and ", oauth" or "")
end

function Client.__close(self) self.close() end

M.VERSION = VERSION
return M
