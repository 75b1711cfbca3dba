--- The call pipeline of a client: one call of one operation goes
--   credentials -> argument check and translation (params.lua) ->
--   core.build_request -> transport -> core.parse_response ->
--   rate-limit bookkeeping -> retry (retry.lua) -> one replay after a token refresh.
--
-- A Pipeline is made by client.lua (the wiring) and kept in its weak private
-- table: it holds the credentials, so it is never reachable from the client
-- table. Per operation a plan is computed once (method, path, paging, the
-- parse context, whether the id alone may skip the general translation), so a
-- call does no work that depends only on the operation. Headers are read only
-- by the C core: `info.rate_limit` / `err.rate_limit` and `err.retry_after`.
local compat = require "pipedrive.compat"
local core = require "pipedrive.core"
local params = require "pipedrive.params"
local retry = require "pipedrive.retry"

local build_request, parse_response, error_mt = core.build_request, core.parse_response, core.error_mt
local url_parse, is_loopback = core.url_parse, core.is_loopback
local next, type, os_time = next, type, os.time

-- An id as it appears in a path: 5.3+ integers concatenate as digits; before,
-- numbers are doubles and `..` could print an exponent.
local id_text = compat.has_integers and tostring or function(v)
  return type(v) == "number" and ("%d"):format(v) or v
end

local M = {}

local Pipeline = {}
Pipeline.__index = Pipeline

--- A pipeline over `o` (fields set by client.lua: api, base_url,
-- explicit_base, insecure, policy, pace, log, headers, auth, send, clock,
-- hook). Tables it reuses between calls are created here.
function M.new(o)
  o.plans = {}
  o.build_args = {} -- reused for build_request and parse_response (see take/give below)
  o.parse_ctx = {}
  return setmetatable(o, Pipeline)
end

--- The plan of `op` for this client's API version, made on first use.
function Pipeline:plan(op)
  local plan = self.plans[op]
  if plan then return plan end
  -- v2 serves an operation unless the client asked for v1 and v1 has it.
  local version = ((self.api == "v1" and op.v1) or not op.v2) and "v1" or "v2"
  local route = op[version]
  local method = route.method
  local search = op.kind == "search"
  plan = {
    version = version, route = route, method = method, path = route.path, paging = route.paging,
    is_body = params.sends_body(op, version), search = search, cost = route.cost,
    -- Lists and searches come in large pages: worth asking for compression.
    compress = (op.kind == "list" or search) or nil,
    bucket = search and "search" or "api",
  }
  -- An operation taking a file part is sent as multipart/form-data: its body
  -- fields become the parts (see multipart_fields).
  for _, spec in pairs(op.params or {}) do
    if spec.type == "file" then plan.raw, plan.multipart = true, true end
  end
  -- A GET or DELETE whose only required argument is its one path parameter
  -- (get(5), delete("uuid")): given alone, the id is checked and put into the
  -- path here, the rest of the translation has nothing to do.
  if not plan.is_body then
    local name, check = params.path_only(op)
    local prefix, suffix = route.path:match("^([^{]*){" .. (name or "") .. "}([^{]*)$")
    if name and prefix then
      plan.id_name, plan.id_check, plan.prefix, plan.suffix = name, check, prefix, suffix
    end
  end
  self.plans[op] = plan
  return plan
end

--- The headers and API host for the next call: the OAuth token's api_domain
-- unless base_url was given, refreshing the token first when it is due.
-- Returns headers, host, generation or nil, err.
function Pipeline:credentials()
  local auth = self.auth
  if not auth then return self.headers, self.base_url end
  local value, generation = auth.authorization()
  if not value then return nil, generation end
  local host = self.base_url
  local domain = not self.explicit_base and auth.api_domain()
  if domain then
    local checked, why = self:domain_base(domain)
    -- A token whose api_domain fails base_url's rules (user@host, plain http off
    -- loopback...) sends nothing anywhere: the call fails, naming the rule only.
    if not checked then
      return nil, setmetatable({ kind = "reauth_required", message = "the OAuth token's api_domain is refused: "
        .. why:gsub("^base_url ", "it ") .. "; log in again" }, core.error_mt)
    end
    host = checked
  end
  return { authorization = value, accept = "application/json" }, host, generation
end

--- An OAuth token's api_domain checked by base_url's rules: the base URL or nil, why.
-- Parsed once per domain (a token keeps its domain across refreshes), not per call.
function Pipeline:domain_base(domain)
  if self.domain ~= domain then
    self.domain, self.domain_checked, self.domain_why = domain, M.check_base_url(domain, self.insecure)
  end
  return self.domain_checked, self.domain_why
end

--- The base URL calls go to now (an api_domain that fails the checks is not one).
function Pipeline:current_base()
  local d = not self.explicit_base and self.auth and self.auth.api_domain()
  return d and self:domain_base(d) or self.base_url
end

-- Records rate-limit figures `fig` (from info or err) for pd.rate_limit().
function Pipeline:note_rate(fig)
  self.last_rate, self.last_rate_at = fig, os_time()
end

local function transport_error(message, method, path)
  return setmetatable({ kind = "network", message = message, method = method, path = path }, error_mt)
end

--- One attempt: credentials, request, transport, answer. Returns data, info
-- or nil, err, the token generation it used. `path` is the template (filled
-- by build_request from `path_params`) or the finished path (path_params nil);
-- `ctx_path` the finished path, for errors.
function Pipeline:attempt(plan, fields, path_params, path, ctx_path, n, query)
  local method = plan.method
  local headers, host, generation = self:credentials()
  if not headers then
    host.method, host.path = method, ctx_path
    return nil, host
  end
  -- The argument tables of the two C calls are reused; one taken while in use
  -- (a finalizer calling the client from inside build_request) is replaced.
  local a = self.build_args or {}
  self.build_args = nil
  a.method, a.base_url, a.path, a.path_params, a.headers = method, host, path, path_params, headers
  if plan.raw then
    -- pd.request and multipart operations: `fields` holds each part of the request.
    a.query, a.body, a.form, a.multipart = fields.query, fields.body, fields.form, fields.multipart
  elseif plan.is_body then
    a.query, a.body = query, fields
  else
    a.query, a.body = fields, nil
  end
  local req = build_request(a)
  a.body, a.query, a.headers, a.path_params = nil, nil, nil, nil
  if plan.raw then a.form, a.multipart = nil, nil end
  self.build_args = a
  self.hook.attempt = n or 1 -- after credentials(): a token refresh there reports its own attempts
  req.compress = plan.compress
  local res, terr = self.send(req)
  if not res then
    if type(terr) ~= "table" then terr = transport_error(tostring(terr or "transport failed"), method, ctx_path) end
    terr.method, terr.path = terr.method or method, terr.path or ctx_path
    return nil, terr, generation
  end
  local ctx = self.parse_ctx or {}
  self.parse_ctx = nil
  ctx.method, ctx.path, ctx.paging, ctx.search = method, ctx_path, plan.paging, plan.search
  local data, info = parse_response(res, ctx)
  self.parse_ctx = ctx
  local fig = info.rate_limit
  if fig and next(fig) ~= nil then self:note_rate(fig) end
  if data ~= nil then
    info.api = plan.version
    info.cost = plan.cost
    return data, info
  end
  retry.classify(info)
  return nil, info, generation
end

--- Paces this client's calls: every attempt then asks `pacer` (pace.lua) for a
-- slot first; an unpaced client's attempts do no pacing work at all.
function Pipeline:set_pacer(pacer)
  self.pacer, self.attempt = pacer, Pipeline.paced_attempt
end

--- One attempt of a paced client: a slot of the window (and the daily budget)
-- first, freed by the answer; returns as attempt does.
function Pipeline:paced_attempt(plan, fields, path_params, path, ctx_path, n, query, cost)
  local pacer = self.pacer
  local ticket, perr = pacer:acquire(plan.bucket, cost or plan.cost, plan.method)
  if not ticket then
    perr.method, perr.path = plan.method, ctx_path
    return nil, perr
  end
  -- (A raise or a cancelled task leaves the slot held: its lease frees it.)
  local data, info, generation = Pipeline.attempt(self, plan, fields, path_params, path, ctx_path, n, query)
  local fig = info and info.rate_limit
  if data == nil and type(info) == "table" and not info.status then fig = nil -- nothing answered
  elseif fig == nil then fig = {} end
  pacer:release(ticket, fig, data == nil and info or nil)
  return data, info, generation
end

-- Attempt number n of a call, as retry.run calls it.
local function attempt_n(n, self, plan, fields, path_params, path, ctx_path, query, cost)
  return self:attempt(plan, fields, path_params, path, ctx_path, n, query, cost)
end

--- The attempts of one call under `policy`, and one replay after refreshing
-- an access token refused before its expiry. Returns data, info or nil, err.
function Pipeline:run(plan, policy, fields, path_params, path, ctx_path, cost, query)
  local auth = self.auth
  for round = 1, 2 do
    local data, info, generation
    if policy then
      data, info, generation = retry.run(policy, plan.method, attempt_n, self.clock,
        self, plan, fields, path_params, path, ctx_path, query, cost)
    else
      data, info, generation = self:attempt(plan, fields, path_params, path, ctx_path, 1, query, cost)
      if data == nil and type(info) == "table" then info.attempts = 1 end
    end
    if data ~= nil then
      if cost then info.cost = cost end
      return data, info
    end
    if not (auth and round == 1 and info.kind == "unauthorized") then return nil, info end
    local ok, rerr = auth.refresh(generation)
    if not ok then
      rerr.method, rerr.path = plan.method, ctx_path
      return nil, rerr
    end
  end
end

--- A call whose arguments are the plan's path parameter alone, already
-- checked (`value`): nothing to translate.
function Pipeline:call_id(plan, value)
  local path = plan.prefix .. id_text(value) .. plan.suffix
  return self:run(plan, self.policy, nil, nil, path, path)
end

--- One call of one operation; `level` places misuse errors at the user's line.
-- With field_names or expand on (the client's option or the call's), the
-- call goes through extras.lua, which comes back here with `plain` set.
function Pipeline:call(rname, fname, op, args, level, plain)
  if not plain and (self.field_names or (type(args) == "table" and (args.field_names ~= nil
      or args.expand ~= nil))) then
    return require("pipedrive.extras").call(self, rname, fname, op, args, level + 1)
  end
  local plan = self.plans[op] or self:plan(op)
  local policy = self.policy
  if type(args) == "table" then
    if args.retries ~= nil then
      -- Per-call retries: taken out before the arguments are translated.
      local p, perr = retry.policy(args.retries, policy)
      if p == nil then error(("pipedrive.%s.%s: %s"):format(rname, fname, perr), level + 1) end
      policy = p
      local a = {}
      for k, v in pairs(args) do a[k] = v end
      a.retries = nil
      args = a
    elseif plan.id_check then
      -- { id = 5 } alone: the same as get(5).
      local k = next(args)
      if k == plan.id_name and next(args, k) == nil then
        local value = plan.id_check(args[k])
        if value ~= nil then return self:call_id(plan, value) end
      end
    end
  end
  local fields, r = params.translate(op, plan.version, args)
  if not fields then error(("pipedrive.%s.%s: %s"):format(rname, fname, r), level + 1) end
  if plan.multipart then fields = { multipart = M.multipart_fields(fields) } end
  local path = r.path or plan.path
  local path_params, ctx_path = r.path_params, path
  if next(path_params) ~= nil then
    ctx_path = path:gsub("{([%w_]+)}", path_params)
  else
    path_params = nil
  end
  return self:run(plan, policy, fields, path_params, path, ctx_path, r.cost, r.query)
end

--- The body fields of a multipart operation as parts: a file field
-- ({ path } or { data, filename }, optional type) becomes a file part, any
-- other field a text part (numbers and booleans as text, tables as JSON), in
-- the order of their names, so the same arguments make the same body.
function M.multipart_fields(fields)
  local names = {}
  for k, v in pairs(fields) do
    if v ~= core.null then names[#names + 1] = k end
  end
  table.sort(names)
  local parts = {}
  for i, k in ipairs(names) do
    local v = fields[k]
    if type(v) == "table" and (v.path or v.data) and (v.path or v.filename) and not getmetatable(v) then
      parts[i] = { name = k, path = v.path, data = v.data, filename = v.filename, type = v.type }
    elseif type(v) == "table" then
      parts[i] = { name = k, data = core.json_encode(v), type = "application/json" }
    else
      parts[i] = { name = k, data = v }
    end
  end
  return parts
end

local METHODS = { GET = true, POST = true, PUT = true, PATCH = true, DELETE = true }
local REQUEST_OPTS = { query = true, body = true, form = true, multipart = true, path_params = true, retries = true,
                       paging = true }
local PAGING = { cursor = true, offset = true, none = true }

-- Raises a misuse of pd.request naming the field, at the user's line.
local function request_misuse(level, fmt, ...)
  error("pipedrive.request: " .. fmt:format(...), level + 1)
end

--- The plan of pd.request(method, path, opts) after its checks (misuse
-- raises naming pd.request and the field). `path` is a path under the base
-- URL, or an absolute URL on the same origin (its path is taken).
function Pipeline:request_plan(method, path, opts, level)
  level = level + 1
  if type(method) ~= "string" or not METHODS[method:upper()] then
    request_misuse(level, "method must be one of GET, POST, PUT, PATCH, DELETE, got %s",
      type(method) == "string" and ("'" .. method:sub(1, 20) .. "'") or type(method))
  end
  method = method:upper()
  if type(path) ~= "string" then request_misuse(level, "path must be a string such as '/api/v2/deals', got %s", type(path)) end
  if path:match("^%a[%w+.-]*://") then
    local u = url_parse(path)
    local base = url_parse(self:current_base())
    if not u or not base or u.origin ~= base.origin then
      request_misuse(level, "path is a URL of another host; give a path under the client's base URL such as"
        .. " '/api/v2/deals' (credentials are sent only there)")
    end
    if u.query or u.fragment then
      request_misuse(level, "path must not carry a query or fragment; give opts.query")
    end
    path = u.path
    local prefix = base.path:gsub("/+$", "")
    if prefix ~= "" and path:sub(1, #prefix + 1) == prefix .. "/" then path = path:sub(#prefix + 1) end
  end
  if path:sub(1, 1) ~= "/" then request_misuse(level, "path must start with '/' (such as '/api/v2/deals')") end
  if path:find("[?#]") then request_misuse(level, "path must not contain '?' or '#'; give the query as opts.query") end
  if path:find("[%c%s]") then request_misuse(level, "path must not contain spaces or control characters") end
  if opts ~= nil and type(opts) ~= "table" then
    request_misuse(level, "expected a table of options { query, body, form, multipart, ... }, got %s", type(opts))
  end
  opts = opts or {}
  for k in pairs(opts) do
    if not REQUEST_OPTS[k] then
      request_misuse(level, "unknown option '%s' (query, body, form, multipart, path_params, retries, paging)",
        tostring(k))
    end
  end
  if opts.query ~= nil and type(opts.query) ~= "table" then request_misuse(level, "query must be a table") end
  if opts.body ~= nil and type(opts.body) ~= "table" then
    request_misuse(level, "body must be a table (sent as JSON)")
  end
  if opts.paging ~= nil and not PAGING[opts.paging] then
    request_misuse(level, "paging must be 'cursor', 'offset' or 'none'")
  end
  if (opts.body ~= nil and 1 or 0) + (opts.form ~= nil and 1 or 0) + (opts.multipart ~= nil and 1 or 0) > 1 then
    request_misuse(level, "give one of body, form and multipart")
  end
  if (opts.body or opts.form or opts.multipart) and (method == "GET" or method == "DELETE") then
    request_misuse(level, "a %s request has no body (give query)", method)
  end
  -- Every value is checked here, by the same code that encodes it, so misuse
  -- raises now and names pd.request rather than later inside a retry.
  local ok, err = pcall(build_request, { method = method, base_url = "http://127.0.0.1", path = path,
    path_params = opts.path_params, query = opts.query, body = opts.body, form = opts.form, multipart = opts.multipart })
  if not ok then request_misuse(level, "%s", (tostring(err):gsub("^build_request: ", ""))) end
  local version = path:match("^/api/v2/") and "v2" or "v1"
  local paging = opts.paging or (method == "GET" and (version == "v2" and "cursor" or "offset")) or "none"
  local search = path:match("/search$") or path:match("^/v1/itemSearch") or path:match("^/api/v%d/itemSearch")
  return { version = version, method = method, path = path, paging = paging, raw = true, search = false,
           bucket = search and "search" or "api", compress = method == "GET" or nil,
           is_body = method ~= "GET" and method ~= "DELETE" }, opts
end

--- pd.request(method, path, opts): one request of any path with the client's
-- authentication, retries, pacing and redirects. Returns data, info or nil, err.
function Pipeline:request(method, path, opts, level)
  local plan
  plan, opts = self:request_plan(method, path, opts, level + 1)
  local policy = self.policy
  if opts.retries ~= nil then
    local p, perr = retry.policy(opts.retries, policy)
    if p == nil then request_misuse(level, "%s", perr) end
    policy = p
  end
  local path_params, ctx_path = opts.path_params, plan.path
  if path_params and next(path_params) ~= nil then
    ctx_path = plan.path:gsub("{([^}]+)}", function(k) return tostring(path_params[k]) end)
  else
    path_params = nil
  end
  return self:run(plan, policy, opts, path_params, plan.path, ctx_path)
end

--- Checks base_url: an absolute https URL (plain http only to loopback, or
-- with `insecure`), without user information, query or fragment. Read by
-- core.url_parse (libcurl's parser), so the host checked is the host libcurl
-- connects to. Returns the URL rebuilt from what was parsed (origin and path,
-- no trailing slash), or nil, message; messages never quote more than the
-- scheme: the rest of a URL may hold a token.
function M.check_base_url(url, insecure)
  if type(url) ~= "string" then return nil, "base_url must be a string" end
  local u, perr = url_parse(url)
  if not u then return nil, "base_url must be an absolute https:// URL (" .. perr .. ")" end
  local scheme = u.scheme
  if scheme ~= "https" and scheme ~= "http" then
    return nil, "base_url must start with https:// (got '" .. scheme:sub(1, 20) .. ":')"
  end
  if u.has_userinfo then return nil, "base_url must not hold a user name or password (user@host)" end
  if scheme == "http" and not insecure and not is_loopback(u.host) then
    return nil, "base_url uses plain http to a host that is not loopback; use https, or insecure = true"
  end
  if u.query or u.fragment then return nil, "base_url must not have a query or fragment" end
  local path = u.path:gsub("/+$", "")
  -- The client adds /api/v1 and /api/v2 itself: a base ending in an API prefix
  -- would send /api/v1/api/v2/deals. (Other paths stay allowed: a proxy's prefix.)
  local lower = path:lower()
  if lower:match("/api/v%d+$") or lower:match("^/v%d+$") or lower == "/api" then
    return nil, ("base_url must not end in the API's path %s (the client adds /api/v1 and /api/v2): use %s")
      :format(path, u.origin)
  end
  return u.origin .. path
end

return M
