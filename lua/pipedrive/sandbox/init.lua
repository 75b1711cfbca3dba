--- The Pipedrive sandbox: a stateful simulator of Pipedrive's REST API.
--
--   local sandbox = require "pipedrive.sandbox"
--   local app = sandbox.new{ api_token = "sandbox-token" }
--   local status, headers, body = app:handle{ method = "GET", path = "/api/v2/deals",
--     query_string = "limit=5", headers = { ["x-api-token"] = "sandbox-token" }, body = "" }
--
-- `app:handle(req)` is a pure request -> response function; `pipedrive.sandbox.server`
-- puts it behind `pipedrive.sandbox.httpd` (the fault-injection build of pipedrive.httpd).
-- It shares no code with the client it tests (its own JSON writer, lua-cjson for reading).
--
-- Served: API v1 under /v1 and /api/v1, API v2 under /api/v2 (see `route`),
-- and the admin endpoints under /_sandbox/ (loopback clients only, no token):
--   GET    /_sandbox/health    {"ok":true}
--   POST   /_sandbox/reset     back to the seeded company (also clears the request log)
--   GET    /_sandbox/state     every record, deleted ones included, and the id counters
--   GET    /_sandbox/requests  the API requests received (tokens redacted; a body that is not UTF-8
--                               also as body_base64)
--   DELETE /_sandbox/requests  clears that log
--   GET    /_sandbox/deliveries  webhook delivery attempts (see delivery.lua)
--   DELETE /_sandbox/deliveries  clears that log
--   POST   /_sandbox/bulk      {"object":"deal","count":N,"title_prefix":"Bulk","fields":{...}}
--   POST   /_sandbox/shutdown  asks the server loop to stop
--   GET|POST /_sandbox/latency  {"seconds":0.05}: every API answer is held back that long,
--                               without blocking other requests (pipedrive.sandbox.httpd's hold)
--   GET|DELETE /_sandbox/concurrency  {"held":n,"peak_in_flight":m} (the server's count of
--                               API requests in flight at once; DELETE resets the peak)
--   GET    /_sandbox/oauth     OAuth counts; POST /_sandbox/oauth/expire ends every access token now
--   GET|POST|DELETE /_sandbox/faults  fault-injection rules (faults.lua): list, add (a JSON list), clear
--   GET|POST|DELETE /_sandbox/rate_limit  the burst limiter: figures; on with {"limit":N,"search_limit":M}; off
--
-- With oauth_clients it also plays oauth.pipedrive.com under /oauth/ (see oauth.lua),
-- and API calls may carry "Authorization: Bearer <access token>".
--
-- opts of `new`: api_token (default "sandbox-token"), fixtures (deals created at
-- start and on reset), custom_fields (true: seed fields.lua's fixture custom fields too),
-- clock (seconds; default sandbox.time.wall), rate_limit (requests per
-- 2 s window, default 80), search_rate_limit (default 10), enforce_rate (answer 429
-- once a window is spent; default false: the headers only), daily_limit (POSTs per
-- day, default 10000), omit_nulls (leave out a property without a value whose schema
-- does not allow null; the default writes null there, as Pipedrive does: see shapes.lua;
-- real_nulls = false means the same), log_max (request log size, 10000),
-- webhook_retry_delays (seconds before each retry, default { 3, 30, 150 }),
-- webhook_duplicate (send every successful delivery twice), webhook_timeout (10),
-- oauth_clients ({ [client_id] = secret }), token_ttl (3600), code_ttl (300),
-- oauth_auto_approve, api_domain (for token answers; default the request's Host),
-- faults (a list of fault rules, see faults.lua; kept across /_sandbox/reset).
--
-- Webhook deliveries are only queued while a request is handled; a server
-- loop sends them with `app:tick()` between requests (`app:wait(max)` says
-- how long it may sleep before that is due) and ends with `app:close()`.
local compat = require "pipedrive.compat"
local json = require "pipedrive.sandbox.json"
local util = require "pipedrive.sandbox.util"
local time = require "pipedrive.sandbox.time"
local check = require "pipedrive.sandbox.check"
local store_mod = require "pipedrive.sandbox.store"
local api = require "pipedrive.sandbox.api"
local activities = require "pipedrive.sandbox.activities"
local field_defs = require "pipedrive.sandbox.fields"
local webhooks = require "pipedrive.sandbox.webhooks"
local oauth = require "pipedrive.sandbox.oauth"
local faults = require "pipedrive.sandbox.faults"
local uploads = require "pipedrive.sandbox.uploads"
local generic = require "pipedrive.sandbox.generic"

local null, array = json.null, json.array
local fail = check.fail

local M = {}

M.DEFAULT_TOKEN = "sandbox-token"
M.ERROR_INFO = api.ERROR_INFO
M.WINDOW = 2

local App = {}
App.__index = App

function M.new(opts)
  opts = opts or {}
  local app = setmetatable({
    api_token = opts.api_token or M.DEFAULT_TOKEN,
    rate_limit = opts.rate_limit or 80,
    search_rate_limit = opts.search_rate_limit or 10,
    enforce_rate = opts.enforce_rate == true,
    daily_limit = opts.daily_limit or 10000,
    log_max = opts.log_max or 10000,
    clock = opts.clock or time.wall,
    stop_requested = false,
    latency = opts.latency,
  }, App)
  app.fine_clock = opts.fine_clock or opts.clock or time.now
  app.store = store_mod.new{ clock = app.clock, fixtures = opts.fixtures, seed = opts.seed,
                               custom_fields = opts.custom_fields }
  app.store.real_nulls = not opts.omit_nulls and opts.real_nulls ~= false
  app.generic = generic.new()
  app.oauth = oauth.new(app, { clients = opts.oauth_clients, token_ttl = opts.token_ttl, code_ttl = opts.code_ttl,
                               auto_approve = opts.oauth_auto_approve, api_domain = opts.api_domain })
  app.hooks = webhooks.new(app, { retry_delays = opts.webhook_retry_delays, duplicate = opts.webhook_duplicate,
                                  timeout = opts.webhook_timeout })
  app.faults = faults.new(opts.sleep or time.sleep)
  if opts.faults then
    local ok, ferr = app.faults:add(opts.faults)
    if not ok then error("sandbox: faults: " .. ferr, 2) end
  end
  app:reset_counters()
  return app
end

function App:reset_counters()
  self.log = array()
  self.windows = {}
  self.daily_left = self.daily_limit
  self.list_cache = { n = 0 }
end

--- Back to the seeded state: records, request log, rate-limit counters,
-- webhooks and their pending deliveries.
function App:reset()
  self.store:reset()
  self.uploads = nil
  self.generic = generic.new()
  self.hooks:reset()
  self.oauth:reset()
  self:reset_counters()
end

--- Webhook deliveries: start the due ones, collect the finished ones.
function App:tick()
  self.hooks.delivery:pump()
end

--- Seconds the server loop may wait for requests before tick() has work (at most `max`).
function App:wait(max)
  return self.hooks.delivery:wait(max)
end

function App:close()
  self.hooks.delivery:close()
end

------------------------------------------------------------------------------
-- Answers
------------------------------------------------------------------------------
local function error_body(status, message, extra)
  if status == 401 then
    return { success = false, error = "unauthorized access", errorCode = 401, error_info = M.ERROR_INFO }
  end
  return { success = false, error = message, error_info = (extra and extra.error_info) or M.ERROR_INFO,
           data = null, additional_data = null }
end
M.error_body = error_body

--- Rate-limit bookkeeping: a window of M.WINDOW seconds per token, starting
-- with its first request; search endpoints count in their own, smaller window.
-- `peek` looks without counting. Returns limit, remaining, reset (whole seconds).
function App:rate(ctx, peek)
  local bucket = ctx.search and "search" or "api"
  local limit = ctx.search and self.search_rate_limit or self.rate_limit
  local key = bucket .. "\0" .. (ctx.token or "")
  local now = self.fine_clock()
  local w = self.windows[key]
  if not w or now - w.start >= M.WINDOW then
    w = { start = now, count = 0 }
    if not peek then self.windows[key] = w end
  end
  if not peek then w.count = w.count + 1 end
  local reset = math.max(0, math.ceil(w.start + M.WINDOW - now))
  return limit, math.max(0, limit - w.count), reset
end

--- With enforce_rate: a 429 (as Pipedrive's burst limit answers) when this
-- token's window is spent; the request is not processed. It still counts.
function App:check_rate(ctx)
  if not self.enforce_rate then return end
  local _, remaining, reset = self:rate(ctx, true)
  if remaining <= 0 then
    self.rate_limited = (self.rate_limited or 0) + 1
    fail(429, "Request over limit", { headers = { ["retry-after"] = tostring(math.max(1, reset)) } })
  end
end

--- The one way out for API answers: status, headers (rate limits added), JSON text.
-- A fault-injection mode (429s, 5xx) belongs here.
function App:respond(ctx, status, body, headers)
  headers = headers or {}
  headers["content-type"] = "application/json"
  if ctx.api then
    local limit, remaining, reset = self:rate(ctx)
    headers["x-ratelimit-limit"] = tostring(limit)
    headers["x-ratelimit-remaining"] = tostring(remaining)
    headers["x-ratelimit-reset"] = tostring(reset)
    if ctx.method == "POST" then
      self.daily_left = math.max(0, self.daily_left - 1)
      headers["x-daily-requests-left"] = tostring(self.daily_left)
    end
  end
  return status, headers, json.encode(body)
end

------------------------------------------------------------------------------
-- Authentication: one place for API tokens and OAuth access tokens.
------------------------------------------------------------------------------
--- The token a request presents: the x-api-token header, else an
-- "Authorization: Bearer" header, else the legacy api_token query parameter.
function App:credentials(req, query) -- luacheck: ignore 212/self
  local h = req.headers or {}
  local token = h["x-api-token"]
  if token then return token, "api_token" end
  local auth = h.authorization
  if auth then
    local bearer = auth:match("^[Bb]earer%s+(%S+)%s*$")
    if bearer then return bearer, "bearer" end
  end
  if query.api_token then return query.api_token, "api_token" end
  return nil
end

--- The user a request acts as, or nil (401). Returns user, token, scheme
-- ("api_token", "bearer" for the API token as Bearer, "oauth" for an access token).
function App:authenticate(req, query)
  local token, scheme = self:credentials(req, query)
  if token and token == self.api_token then return self.store:me(), token, scheme end
  if token and scheme == "bearer" and self.oauth:accepts(token) then return self.store:me(), token, "oauth" end
  return nil, token, scheme
end

------------------------------------------------------------------------------
-- Routing
------------------------------------------------------------------------------
local V1_LOOKUPS = {
  users = api.users, filters = api.filters, stages = api.stages, pipelines = api.pipelines,
  leadLabels = api.lead_labels, currencies = api.currencies,
}
local V2_LOOKUPS = { stages = api.stages, pipelines = api.pipelines }

--- API version and the rest of the path: /v1/x and /api/v1/x -> "v1", "x".
local function split_prefix(path)
  local rest = path:match("^/api/v1/(.*)$") or path:match("^/v1/(.*)$")
  if rest then return "v1", rest end
  rest = path:match("^/api/v2/(.*)$")
  if rest then return "v2", rest end
  return nil
end

-- Resources with their own router: fn(version, segs) -> methods, resource, path id.
local ROUTERS = { activities = activities.route, webhooks = webhooks.route }
for word in pairs(field_defs.PATHS) do ROUTERS[word] = field_defs.route end

--- methods (method -> handler), resource, path id; nil for an unknown path.
local function route(version, segs)
  local up, up_res, up_id = uploads.route(version, segs) -- multipart endpoints (files, pictures) first
  if up then return up, up_res, up_id end
  local n, top = #segs, segs[1]
  local res = api.RESOURCES[top]
  if res then
    if n == 2 and segs[2] == "search" then return { GET = api.search }, res end
    if res.kind == "lead" and version == "v2" then return nil end
    if n == 1 then return { GET = api.list, POST = api.add }, res end
    if n == 2 and res.kind == "lead" and segs[2] == "archived" then
      return { GET = api.list_archived_leads_v1 }, res
    end
    if n == 2 and res.kind == "deal" and version == "v2" and segs[2] == "archived" then
      return { GET = api.list_archived_deals_v2 }, res
    end
    if n == 2 then
      -- updates: PATCH in v2 and for v1 leads, PUT for the other v1 records
      local update = (version == "v2" or res.kind == "lead") and "PATCH" or "PUT"
      return { GET = api.get, DELETE = api.delete, [update] = api.update }, res, segs[2]
    end
    return nil
  end
  local router = ROUTERS[top]
  if router then return router(version, segs) end
  if n ~= 1 then return nil end
  local fn = (version == "v1" and V1_LOOKUPS or V2_LOOKUPS)[top]
  if fn then return { GET = fn } end
  return nil
end
M.route = route

local function allow_header(methods)
  local names = {}
  for m in pairs(methods) do names[#names + 1] = m end
  table.sort(names)
  return table.concat(names, ", ")
end

local function path_id(res, s)
  if res.any_id then return s end
  if res.kind == "lead" then
    if not util.is_uuid(s) then check.invalid("id", "must be a lead id (a UUID)") end
    return s:lower()
  end
  local n = s:match("^%d+$") and compat.tointeger(tonumber(s))
  if not n or n < 1 then check.invalid("id", "must be a positive integer") end
  return n
end

local function read_body(req, version, res)
  local ct = ((req.headers or {})["content-type"] or ""):lower():match("^%s*([^;%s]+)") or ""
  local lenient = version == "v1" and res.kind ~= "lead"
  if ct == "multipart/form-data" then return uploads.parse(req.body or "", req.headers["content-type"]) end
  if ct == "application/json" then
    local v, err = json.decode(req.body or "")
    if v == nil then fail(400, "Malformed JSON in request body: " .. tostring(err)) end
    if res.list_body then return check.body({}, false), v end
    if type(v) ~= "table" or v[1] ~= nil then fail(400, "Request body must be a JSON object") end
    return check.body(v, lenient)
  end
  if ct == "application/x-www-form-urlencoded" and lenient then
    return check.body(util.parse_form(req.body), true)
  end
  local accepted = lenient and "application/json or application/x-www-form-urlencoded" or "application/json"
  check.invalid("content-type", ("expected %s, got '%s'"):format(accepted, ct))
end

-- A path segment the hand-modelled /{id} route may take as an id (else a sub-collection
-- such as /deals/summary or /users/me may be meant).
local function id_like(res, s)
  if res and res.any_id then return true end
  if res and res.kind == "lead" then return util.is_uuid(s) end
  return s:match("^%d+$") ~= nil
end

--- The hand-modelled records of a lookup collection (generic.SEEDED), in the request's version.
function App:seed(key, ctx)
  local fn = (ctx.api == "v2" and V2_LOOKUPS[key]) or V1_LOOKUPS[key]
  if not fn then return nil end
  local status, body = fn(self, { api = ctx.api == "v2" and V2_LOOKUPS[key] and "v2" or "v1", q = check.query({}),
                                  me = ctx.me })
  if status ~= 200 or type(body.data) ~= "table" then return nil end
  return body.data
end

--- Whether the generic store answers rather than the hand-modelled route: the route has no
-- such method, took a word for an id, or lists a lookup the generic store has written to.
function App:wants_generic(version, segs, methods, res, id, method)
  if not methods or not methods[method] then return true end
  if id and not id_like(res, id) then return true end
  if #segs == 1 and not res and self.generic.took[segs[1]] then return version ~= nil end
  return false
end

function App:dispatch(ctx)
  local req = ctx.req
  local path = req.path or "/"
  if #path > 1 then path = path:gsub("/+$", "") end
  local version, rest = split_prefix(path)
  ctx.api = version
  local query = util.parse_query(req.query_string)
  ctx.query = query
  ctx.token = self:credentials(req, query)
  if not version then fail(404, ("Not found: no endpoint %s %s"):format(ctx.method, path)) end
  local segs = {}
  for s in rest:gmatch("[^/]+") do segs[#segs + 1] = s end
  local methods, res, id = route(version, segs)
  if self:wants_generic(version, segs, methods, res, id, ctx.method) then
    local entry, params = generic.match(version, segs)
    if entry and methods and id and not id_like(res, id) then
      -- a word where the route wants an id: a sub-collection only where the file has one
      -- (/deals/archived, /users/me), else the id check's 400 below
      for i = 2, #segs do
        if segs[i] == id and type(entry.segs[i]) ~= "string" then entry = nil break end
      end
    end
    if entry then
      if not entry.methods[ctx.method] then
        fail(405, ("Method %s is not allowed on %s"):format(ctx.method, path),
          { headers = { allow = allow_header(entry.methods) } })
      end
      ctx.me = self:authenticate(req, query)
      if not ctx.me then fail(401, "unauthorized access") end
      ctx.search = segs[#segs] == "search"
      self:check_rate(ctx)
      return generic.handle(self, ctx, entry, params, function(key, c) return self:seed(key, c) end)
    end
  end
  if not methods then fail(404, ("Not found: no endpoint %s %s"):format(ctx.method, path)) end
  ctx.search = segs[2] == "search"
  local fn = methods[ctx.method]
  if not fn then
    fail(405, ("Method %s is not allowed on %s"):format(ctx.method, path), { headers = { allow = allow_header(methods) } })
  end
  ctx.me = self:authenticate(req, query)
  if not ctx.me then fail(401, "unauthorized access") end
  self:check_rate(ctx)
  ctx.q = check.query(query)
  if id then ctx.id = path_id(res, id) end
  local m = ctx.method
  if m == "POST" or m == "PUT" or m == "PATCH" or (m == "DELETE" and res.list_body) then
    ctx.body, ctx.body_list = read_body(req, version, res)
  end
  return fn(self, ctx, res)
end

------------------------------------------------------------------------------
-- Request log
------------------------------------------------------------------------------
local REDACT = { ["x-api-token"] = true, authorization = true }
local SECRET_PARAMS = { "api_token", "code", "refresh_token", "token", "client_secret", "http_auth_password" }

-- The log is for tests to read back, so secrets in it are replaced by ***:
-- token headers, secret form or query parameters, webhook passwords in JSON.
local function redact_params(s)
  s = "&" .. s
  for _, name in ipairs(SECRET_PARAMS) do
    s = s:gsub("(&" .. name .. "=)[^&]*", "%1***")
  end
  return s:sub(2)
end

local function redact_body(body, content_type)
  if content_type and content_type:find("x-www-form-urlencoded", 1, true) then return redact_params(body) end
  return (body:gsub('("http_auth_password"%s*:%s*)"[^"]*"', '%1"***"'))
end

-- The log is served as JSON, which must be UTF-8: a body that is not (a file
-- part's bytes) is logged with each stray byte as U+FFFD, and exactly as
-- body_base64. Returns body, body_base64 (nil for a UTF-8 body).
local UTF8_SEQ = { "^[%z\1-\127]", "^[\194-\223][\128-\191]", "^[\224-\239][\128-\191][\128-\191]",
                   "^[\240-\244][\128-\191][\128-\191][\128-\191]" }
local function loggable(body)
  if compat.utf8_len(body) then return body end
  local out, i, n = {}, 1, #body
  while i <= n do
    local j
    for _, pat in ipairs(UTF8_SEQ) do
      local _, e = body:find(pat, i)
      if e then j = e break end
    end
    if j then
      out[#out + 1] = body:sub(i, j)
      i = j + 1
    else
      out[#out + 1] = "\239\191\189"
      i = i + 1
    end
  end
  return table.concat(out), util.b64_encode(body)
end

function App:record(req)
  local headers = {}
  for k, v in pairs(req.headers or {}) do
    k = tostring(k):lower()
    headers[k] = REDACT[k] and "***" or v
  end
  local log = self.log
  local body, body_base64 = loggable(oauth.is_oauth_path(req.path) and oauth.redact_body(req)
    or redact_body(req.body or "", headers["content-type"]))
  log[#log + 1] = { method = req.method, path = req.path, query_string = redact_params(req.query_string or ""),
                    headers = headers, body = body, body_base64 = body_base64 }
  if #log > self.log_max then
    local keep = compat.idiv(self.log_max, 2)
    for i = 1, keep do log[i] = log[#log - keep + i] end
    for i = #log, keep + 1, -1 do log[i] = nil end
  end
end

------------------------------------------------------------------------------
-- Admin endpoints
------------------------------------------------------------------------------
local function is_loopback(addr)
  if addr == nil or addr == "" then return true end
  return addr:match("^127%.") ~= nil or addr == "::1" or addr:match("^::ffff:127%.") ~= nil
end
M.is_loopback = is_loopback

local BULK_KINDS = {
  deal = "deal", deals = "deal", person = "person", persons = "person", organization = "organization",
  organizations = "organization", org = "organization", lead = "lead", leads = "lead",
}

function App:bulk(req)
  local b = json.decode(req.body or "")
  if type(b) ~= "table" then fail(400, "bulk: expected a JSON object {object, count, title_prefix, fields}") end
  local kind = BULK_KINDS[b.object]
  if not kind then fail(400, "bulk: object must be one of deal, person, organization, lead") end
  local count = b.count
  if compat.math_type(count) ~= "integer" or count < 1 or count > 1000000 then
    fail(400, "bulk: count must be an integer from 1 to 1000000")
  end
  local prefix = b.title_prefix or b.name_prefix or "Bulk"
  if type(prefix) ~= "string" then fail(400, "bulk: title_prefix must be a string") end
  local given = b.fields or {}
  if type(given) ~= "table" then fail(400, "bulk: fields must be an object") end
  local raw = {}
  for k, v in pairs(given) do raw[k] = v end
  local name_key = (kind == "deal" or kind == "lead") and "title" or "name"
  raw[name_key] = prefix
  -- The fields are checked like an API v2 body (leads: like their v1 body).
  local fields = api.NORMALIZE[kind](self, check.body(raw, false), kind == "lead" and "v1" or "v2",
    { unlinked_ok = true })
  fields[name_key] = nil
  local made = self.store:bulk(kind, count, prefix, fields)
  return 201, { ok = true, success = true, object = kind, count = #made,
                first_id = made[1].id, last_id = made[#made].id }
end

local ADMIN = {
  ["/_sandbox/health"] = { GET = function() return 200, { ok = true } end },
  ["/_sandbox/reset"] = { POST = function(self)
    self:reset()
    return 200, { ok = true }
  end },
  ["/_sandbox/state"] = { GET = function(self)
    local state = self.store:dump()
    state.webhooks = self.hooks:dump()
    return 200, state
  end },
  ["/_sandbox/requests"] = {
    GET = function(self) return 200, self.log end,
    DELETE = function(self)
      self.log = array()
      return 200, { ok = true }
    end,
  },
  ["/_sandbox/deliveries"] = {
    GET = function(self) return 200, self.hooks.delivery.log end,
    DELETE = function(self)
      self.hooks.delivery.log = array()
      return 200, { ok = true }
    end,
  },
  ["/_sandbox/faults"] = {
    GET = function(self) return 200, { rules = array(self.faults.rules), hits = self.faults.hits } end,
    POST = function(self, req)
      local list = json.decode(req.body or "")
      if type(list) ~= "table" then fail(400, "the body must be a JSON list of fault rules") end
      local added, err = self.faults:add(list)
      if not added then fail(400, err) end
      return 200, { ok = true, rules = #self.faults.rules }
    end,
    DELETE = function(self)
      self.faults:clear()
      return 200, { ok = true }
    end,
  },
  ["/_sandbox/rate_limit"] = {
    GET = function(self)
      return 200, { enforce = self.enforce_rate, limit = self.rate_limit, search_limit = self.search_rate_limit,
                    window = M.WINDOW, rate_limited = self.rate_limited or 0 }
    end,
    POST = function(self, req)
      local b = json.decode(req.body or "")
      if type(b) ~= "table" then fail(400, "expected {\"limit\": N, \"search_limit\": M}") end
      for _, k in ipairs({ "limit", "search_limit" }) do
        if b[k] ~= nil and (compat.math_type(b[k]) ~= "integer" or b[k] < 1) then
          fail(400, k .. " must be a positive integer")
        end
      end
      self.rate_limit = b.limit or self.rate_limit
      self.search_rate_limit = b.search_limit or self.search_rate_limit
      self.enforce_rate, self.windows, self.rate_limited = true, {}, 0
      return 200, { ok = true }
    end,
    DELETE = function(self)
      self.enforce_rate, self.windows = false, {}
      return 200, { ok = true }
    end,
  },
  ["/_sandbox/bulk"] = { POST = function(self, req) return self:bulk(req) end },
  ["/_sandbox/latency"] = {
    GET = function(self) return 200, { seconds = self.latency or 0 } end,
    POST = function(self, req)
      local b = json.decode(req.body or "")
      local v = type(b) == "table" and b.seconds
      if type(v) ~= "number" or v < 0 or v > 60 or v ~= v then fail(400, "latency: seconds must be from 0 to 60") end
      self.latency = v > 0 and v or nil
      return 200, { ok = true, seconds = v }
    end,
  },
  ["/_sandbox/concurrency"] = {
    GET = function(self)
      local st = self.server and self.server:stats() or { held = 0, peak_in_flight = 0 }
      return 200, st
    end,
    DELETE = function(self)
      if self.server then self.server:stats(true) end
      return 200, { ok = true }
    end,
  },
  ["/_sandbox/shutdown"] = { POST = function(self)
    self.stop_requested = true
    return 200, { ok = true }
  end },
}
for p, methods in pairs(oauth.ADMIN) do ADMIN[p] = methods end

function App:admin(req, path)
  local headers = { ["content-type"] = "application/json" }
  if not is_loopback(req.remote_addr) then
    return 403, headers, json.encode({ ok = false, error = "the /_sandbox/ endpoints answer loopback clients only" })
  end
  local methods = ADMIN[path]
  if not methods then
    return 404, headers, json.encode({ ok = false, error = "no admin endpoint " .. path })
  end
  local fn = methods[(req.method or "GET"):upper()]
  if not fn then
    headers.allow = allow_header(methods)
    return 405, headers, json.encode({ ok = false, error = "method not allowed on " .. path })
  end
  local ok, status, body = pcall(fn, self, req)
  if not ok then
    if check.is_failure(status) then
      return status.status, headers, json.encode({ ok = false, error = status.message })
    end
    error(status, 0)
  end
  return status, headers, json.encode(body)
end

------------------------------------------------------------------------------
-- Entry point
------------------------------------------------------------------------------
--- req = { method, path, query_string, headers (lower-case names), body, remote_addr }
-- -> status, headers, body (JSON text).
function App:handle(req)
  local path = req.path or "/"
  if req.query_string == nil and path:find("?", 1, true) then
    -- a request table written by hand: "/api/v2/deals?limit=5"
    local p, q = path:match("^([^?]*)%?(.*)$")
    local copy = {}
    for k, v in pairs(req) do copy[k] = v end
    copy.path, copy.query_string = p, q
    req, path = copy, p
  end
  local given = req.headers or {}
  for k in pairs(given) do
    if type(k) == "string" and k:find("%u") then
      local lower = {}
      for name, v in pairs(given) do lower[tostring(name):lower()] = v end
      local copy = {}
      for kk, v in pairs(req) do copy[kk] = v end
      copy.headers = lower
      req = copy
      break
    end
  end
  if path == "/_sandbox" or path:sub(1, 10) == "/_sandbox/" then return self:admin(req, path) end
  self:record(req)
  local fault = self.faults:take((req.method or "GET"):upper(), path)
  if fault and not faults.processes(fault) then return self.faults:answer(fault) end
  if fault then return self.faults:answer(fault, self:process(req, path)) end
  if self.latency then
    local status, headers, body = self:process(req, path)
    return status, headers, body, self.latency
  end
  return self:process(req, path)
end

--- Answers an API (or OAuth) request that was logged.
function App:process(req, path)
  if oauth.is_oauth_path(path) then return self.oauth:handle(req) end
  local ctx = { req = req, method = (req.method or "GET"):upper() }
  local ok, status, body = xpcall(function() return self.dispatch(self, ctx) end, function(e)
    if check.is_failure(e) then return e end
    return debug.traceback(tostring(e), 2)
  end)
  local headers
  if not ok then
    local e = status
    if check.is_failure(e) then
      status, body = e.status, error_body(e.status, e.message, e.extra)
      headers = e.extra and e.extra.headers
    else
      io.stderr:write("pipedrive sandbox: internal error: ", tostring(e), "\n")
      status, body = 500, error_body(500, "Internal server error")
    end
  end
  return self:respond(ctx, status, body, headers)
end

return M
