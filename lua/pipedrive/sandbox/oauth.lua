--- The sandbox's OAuth 2.0 server: it stands in for oauth.pipedrive.com while
-- the rest of the sandbox stands in for the company's API host.
--
--   GET  /oauth/authorize?client_id&redirect_uri[&state][&scope][&response_type=code]
--        auto-approve: 302 to redirect_uri?code=..&state=..; otherwise a consent
--        page whose form POSTs to /oauth/authorize/decision
--   POST /oauth/authorize/decision   form: request, decision=approve|deny
--   POST /oauth/token    Basic client auth, form: grant_type=authorization_code
--                        (code, redirect_uri) or grant_type=refresh_token (refresh_token)
--   POST /oauth/revoke   Basic client auth, form: token[, token_type_hint]
--
-- Model: each exchanged code opens a "grant" (client, scope). A grant has one
-- live refresh token at a time (every refresh rotates it) and any number of
-- access tokens. Revoking the refresh token, or presenting a used code again,
-- revokes the whole grant and so every token it produced.
--
-- Every error answer has one JSON shape that carries both the OAuth error
-- code and Pipedrive's message:
--   {"success":false,"error":"invalid_grant",
--    "error_description":"Invalid grant: authorization_code is invalid",
--    "message":"Invalid grant: authorization_code is invalid"}
-- Error pages of the browser endpoints are HTML unless the request accepts
-- application/json.
--
-- Times come from the app's fine clock (pinned in specs). A code or token with
-- a lifetime of N seconds is taken for at least N seconds: it is expired only
-- once the clock has passed issue time + N, so a whole-second clock never ends
-- it early. No answer and no log line ever holds a client secret.
local compat = require "pipedrive.compat"
local json = require "pipedrive.sandbox.json"
local util = require "pipedrive.sandbox.util"

local M = {}

M.DEFAULT_TOKEN_TTL = 3600 -- seconds an access token lives
M.DEFAULT_CODE_TTL = 300   -- Pipedrive's codes live 5 minutes
M.PENDING_TTL = 600        -- a consent page may be answered this long
M.DEFAULT_SCOPE = "base"

-- Form fields whose values are secrets: masked in the request log.
local SECRET_FIELDS = { code = true, refresh_token = true, token = true, access_token = true,
                        client_secret = true, password = true }

------------------------------------------------------------------------------
-- Small helpers
------------------------------------------------------------------------------
--- `n` random bytes from the kernel as 2n hex digits.
local function random_hex(n)
  local f = assert(io.open("/dev/urandom", "rb"), "pipedrive sandbox: cannot open /dev/urandom")
  local bytes = f:read(n)
  f:close()
  assert(bytes and #bytes == n, "pipedrive sandbox: short read from /dev/urandom")
  return (bytes:gsub(".", function(c) return ("%02x"):format(c:byte()) end))
end
M.random_hex = random_hex

--- Compares two strings in time that depends on their lengths only.
local function same_secret(a, b)
  if type(a) ~= "string" or type(b) ~= "string" or #a ~= #b then return false end
  local diff = 0
  for i = 1, #a do diff = diff + math.abs(a:byte(i) - b:byte(i)) end
  return diff == 0
end

--- Percent-encodes everything but RFC 3986's unreserved characters.
local function encode(s)
  return (tostring(s):gsub("[^%w%-%._~]", function(c) return ("%%%02X"):format(c:byte()) end))
end
M.encode = encode

local function html_escape(s)
  return (tostring(s):gsub("[&<>\"']", { ["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;", ['"'] = "&quot;",
                                         ["'"] = "&#39;" }))
end

local function media_type(req)
  return (((req.headers or {})["content-type"] or ""):lower():match("^%s*([^;%s]+)")) or ""
end

--- An absolute http(s) URL with a host, visible ASCII only, no fragment.
local function valid_redirect(uri)
  if type(uri) ~= "string" or #uri > 2048 or uri:find("[^\33-\126]") or uri:find("#", 1, true) then return false end
  local scheme, host = uri:match("^(%a+)://([^/?]+)")
  if not scheme then return false end
  scheme = scheme:lower()
  return (scheme == "http" or scheme == "https") and not host:find("@", 1, true)
end
M.valid_redirect = valid_redirect

--- uri with the parameters (a list of {name, value}; nil values left out) added to its query.
local function with_query(uri, params)
  local parts = {}
  for _, p in ipairs(params) do
    if p[2] ~= nil then parts[#parts + 1] = p[1] .. "=" .. encode(p[2]) end
  end
  if #parts == 0 then return uri end
  local sep = "?"
  if uri:find("?", 1, true) then sep = (uri:sub(-1) == "?" or uri:sub(-1) == "&") and "" or "&" end
  return uri .. sep .. table.concat(parts, "&")
end
M.with_query = with_query

------------------------------------------------------------------------------
-- Answers
------------------------------------------------------------------------------
local NO_STORE = "no-store"

local function json_answer(status, body, headers)
  headers = headers or {}
  headers["content-type"] = "application/json"
  headers["cache-control"] = NO_STORE
  headers.pragma = "no-cache"
  return status, headers, json.encode(body)
end

local function error_doc(code, message)
  return { success = false, error = code, error_description = message, message = message }
end
M.error_doc = error_doc

local function json_error(status, code, message, headers)
  return json_answer(status, error_doc(code, message), headers)
end

local PAGE = [[<!doctype html>
<html><head><meta charset="utf-8"><title>%s</title></head>
<body style="font-family:sans-serif;max-width:40em;margin:3em auto">
<h1>%s</h1>
%s
</body></html>
]]

local function html_answer(status, title, inner, headers)
  headers = headers or {}
  headers["content-type"] = "text/html; charset=utf-8"
  headers["cache-control"] = NO_STORE
  headers["x-frame-options"] = "DENY"
  return status, headers, PAGE:format(html_escape(title), html_escape(title), inner)
end

local function wants_json(req)
  local accept = ((req.headers or {}).accept or ""):lower()
  return accept:find("application/json", 1, true) ~= nil
end

--- An error of a browser endpoint: JSON when asked for, else a page. Never a redirect.
local function page_error(req, status, code, message)
  if wants_json(req) then return json_error(status, code, message) end
  return html_answer(status, "Authorization failed",
    ("<p>%s</p><p>Error: <code>%s</code></p>"):format(html_escape(message), html_escape(code)))
end

local function redirect(uri, params)
  local location = with_query(uri, params)
  return 302, { location = location, ["cache-control"] = NO_STORE, ["content-type"] = "text/html; charset=utf-8" },
    ('<!doctype html><p>Redirecting to <a href="%s">the application</a>.</p>\n'):format(html_escape(location))
end

------------------------------------------------------------------------------
-- State
------------------------------------------------------------------------------
local OAuth = {}
OAuth.__index = OAuth

--- opts: clients ({ [client_id] = secret }), token_ttl, code_ttl (seconds),
-- auto_approve, api_domain (fixed; default the request's Host), clock.
function M.new(app, opts)
  opts = opts or {}
  local clients = {}
  for id, secret in pairs(opts.clients or {}) do
    if type(id) ~= "string" or id == "" or id:find(":", 1, true) or type(secret) ~= "string" or secret == "" then
      error("pipedrive.sandbox: oauth clients must map a client id (no ':') to a non-empty secret", 3)
    end
    clients[id] = secret
  end
  local function positive(v, default, name)
    if v == nil then return default end
    if type(v) ~= "number" or v <= 0 or v ~= v or v == math.huge then
      error(("pipedrive.sandbox: %s must be a positive number of seconds"):format(name), 3)
    end
    return v
  end
  local self = setmetatable({
    app = app,
    clients = clients,
    enabled = next(clients) ~= nil,
    token_ttl = positive(opts.token_ttl, M.DEFAULT_TOKEN_TTL, "token_ttl"),
    code_ttl = positive(opts.code_ttl, M.DEFAULT_CODE_TTL, "code_ttl"),
    auto_approve = opts.auto_approve == true,
    fixed_domain = opts.api_domain,
    clock = opts.clock or function() return app.fine_clock() end,
  }, OAuth)
  self:reset()
  return self
end

--- Forgets every code, token, pending consent and count.
function OAuth:reset()
  self.codes = {}          -- code -> { client_id, redirect_uri, scope, expires, used, grant }
  self.pending = {}        -- consent request id -> { client_id, redirect_uri, state, scope, expires }
  self.grants = {}         -- grant id -> { client_id, scope, revoked, refresh_token }
  self.refresh_tokens = {} -- token -> { grant, active }
  self.access_tokens = {}  -- token -> { grant, expires, revoked }
  self.next_grant = 0
  self.counts = { exchanges = 0, refreshes = 0, revokes = 0, failed_refreshes = 0 }
end

--- A fresh random string that is not a key of `t` yet.
local function fresh(t, nbytes)
  while true do
    local s = random_hex(nbytes)
    if t[s] == nil then return s end
  end
end

function OAuth:grant_of(entry)
  local g = entry and self.grants[entry.grant]
  if g and not g.revoked then return g end
  return nil
end

--- Whether `token` is an access token in force (known, unrevoked, unexpired).
function OAuth:accepts(token)
  local a = self.access_tokens[token]
  if not a or a.revoked or not self:grant_of(a) then return false end
  return self.clock() <= a.expires
end

function OAuth:active_count()
  local n, now = 0, self.clock()
  for _, a in pairs(self.access_tokens) do
    if not a.revoked and self:grant_of(a) and now <= a.expires then n = n + 1 end
  end
  return n
end

--- Expires every access token now; returns how many were still in force.
function OAuth:expire_all()
  local n, now = 0, self.clock()
  for _, a in pairs(self.access_tokens) do
    if not a.revoked and self:grant_of(a) and now <= a.expires then n = n + 1 end
    if a.expires >= now then a.expires = now - 1 end
  end
  return n
end

function OAuth:stats()
  local c = self.counts
  return { exchanges = c.exchanges, refreshes = c.refreshes, revokes = c.revokes,
           failed_refreshes = c.failed_refreshes, active_access_tokens = self:active_count() }
end

function OAuth:revoke_grant(id)
  local g = self.grants[id]
  if g then g.revoked = true end
end

--- The API base URL the tokens are for: fixed, else the Host the client used.
function OAuth:api_domain(req)
  if self.fixed_domain then return self.fixed_domain end
  local host = (req.headers or {}).host
  if type(host) == "string" and (host:match("^[%w%.%-]+:%d+$") or host:match("^[%w%.%-]+$")
      or host:match("^%[[%x:%.]+%]:%d+$") or host:match("^%[[%x:%.]+%]$")) then
    return "http://" .. host
  end
  return "http://127.0.0.1"
end

--- New access and refresh tokens for grant `id` (its previous refresh token stops working).
function OAuth:issue(req, id)
  local g = self.grants[id]
  local old = g.refresh_token and self.refresh_tokens[g.refresh_token]
  if old then old.active = false end
  local access = fresh(self.access_tokens, 32)
  self.access_tokens[access] = { grant = id, expires = self.clock() + self.token_ttl, revoked = false }
  local refresh = fresh(self.refresh_tokens, 32)
  self.refresh_tokens[refresh] = { grant = id, active = true }
  g.refresh_token = refresh
  local ttl = self.token_ttl
  return { access_token = access, token_type = "Bearer", refresh_token = refresh, scope = g.scope,
           expires_in = compat.tointeger(ttl) or math.max(1, math.ceil(ttl)), api_domain = self:api_domain(req) }
end

------------------------------------------------------------------------------
-- Client authentication and form bodies
------------------------------------------------------------------------------
--- The client id of a request's valid HTTP Basic credentials, or nil and the message.
function OAuth:client_auth(req)
  local auth = (req.headers or {}).authorization
  if type(auth) ~= "string" or auth == "" then return nil, "Invalid client: cannot retrieve client credentials" end
  local b64 = auth:match("^[Bb][Aa][Ss][Ii][Cc]%s+([%w%+/_%-]+=*)%s*$")
  if not b64 then return nil, "Invalid client: client credentials must be sent with HTTP Basic" end
  local plain = util.b64_decode(b64)
  local id, secret = (plain or ""):match("^([^:]+):(.*)$")
  if not id then return nil, "Invalid client: client credentials are malformed" end
  local want = self.clients[id]
  if not want or not same_secret(want, secret) then
    return nil, "Invalid client: client_id or client_secret is invalid"
  end
  return id
end

local FORM = "application/x-www-form-urlencoded"

local function read_form(req)
  if media_type(req) ~= FORM then
    return nil, "Invalid request: content-type must be " .. FORM
  end
  return util.parse_query(req.body or "")
end

--- The request body as the request log keeps it: secret form values become
-- "***"; a body of another type to an OAuth path is replaced whole.
function M.redact_body(req)
  local body = req.body or ""
  if body == "" then return body end
  if media_type(req) ~= FORM then return "***" end
  local parts = {}
  for pair in body:gmatch("[^&]+") do
    local k = pair:match("^([^=]*)") or pair
    if SECRET_FIELDS[util.url_decode(k, true)] then pair = k .. "=***" end
    parts[#parts + 1] = pair
  end
  return table.concat(parts, "&")
end

--- Whether a path is served here (and its body is redacted in the log).
function M.is_oauth_path(path)
  return path == "/oauth" or (type(path) == "string" and path:sub(1, 7) == "/oauth/")
end

------------------------------------------------------------------------------
-- Endpoints
------------------------------------------------------------------------------
local function invalid_client(message)
  return json_error(401, "invalid_client", message, { ["www-authenticate"] = 'Basic realm="oauth"' })
end

local function invalid_grant(message)
  return json_error(400, "invalid_grant", message)
end

--- A code for an approved authorization request, sent back to its redirect URI.
function OAuth:approve(p)
  local code = fresh(self.codes, 20)
  self.codes[code] = { client_id = p.client_id, redirect_uri = p.redirect_uri, scope = p.scope,
                       expires = self.clock() + self.code_ttl, used = false }
  return redirect(p.redirect_uri, { { "code", code }, { "state", p.state } })
end

local CONSENT = [[<p>The application <strong>%s</strong> asks for access to your Pipedrive company
<strong>Sandbox Trading Ltd</strong> with the scope <code>%s</code>.</p>
<p>You will be sent back to <code>%s</code>.</p>
<form method="post" action="/oauth/authorize/decision">
<input type="hidden" name="request" value="%s">
<button type="submit" name="decision" value="approve">Approve</button>
<button type="submit" name="decision" value="deny">Deny</button>
</form>]]

function OAuth:authorize(req, query)
  local client_id = query.client_id
  if client_id == nil or client_id == "" then
    return page_error(req, 400, "invalid_request", "Missing parameter: client_id")
  end
  if not self.clients[client_id] then
    return page_error(req, 400, "invalid_client", "Invalid client: client_id is unknown")
  end
  local uri = query.redirect_uri
  if not valid_redirect(uri) then
    return page_error(req, 400, "invalid_request", "Invalid request: redirect_uri is invalid")
  end
  -- From here on the redirect URI is trusted, so errors go back to it.
  local state = query.state
  if query.response_type ~= nil and query.response_type ~= "code" then
    return redirect(uri, { { "error", "unsupported_response_type" }, { "state", state } })
  end
  local scope = query.scope
  if scope == nil or scope == "" then scope = M.DEFAULT_SCOPE end
  local p = { client_id = client_id, redirect_uri = uri, state = state, scope = scope }
  if self.auto_approve then return self:approve(p) end
  local now = self.clock()
  for id, old in pairs(self.pending) do
    if old.expires <= now then self.pending[id] = nil end
  end
  local id = fresh(self.pending, 16)
  p.expires = now + M.PENDING_TTL
  self.pending[id] = p
  return html_answer(200, "Authorize " .. client_id,
    CONSENT:format(html_escape(client_id), html_escape(scope), html_escape(uri), id))
end

function OAuth:decision(req)
  local form, err = read_form(req)
  if not form then return page_error(req, 400, "invalid_request", err) end
  local id = form.request
  local p = id and self.pending[id]
  if not p or p.expires <= self.clock() then
    if p then self.pending[id] = nil end
    return page_error(req, 400, "invalid_request",
      "Invalid request: this authorization request is unknown, already answered or expired")
  end
  if form.decision == "approve" then
    self.pending[id] = nil
    return self:approve(p)
  elseif form.decision == "deny" then
    self.pending[id] = nil
    return redirect(p.redirect_uri, { { "error", "access_denied" }, { "state", p.state } })
  end
  return page_error(req, 400, "invalid_request", "Missing parameter: decision (approve or deny)")
end

function OAuth:grant_code(req, client, form)
  local code, uri = form.code, form.redirect_uri
  if code == nil or code == "" then return json_error(400, "invalid_request", "Missing parameter: code") end
  if uri == nil or uri == "" then return json_error(400, "invalid_request", "Missing parameter: redirect_uri") end
  local c = self.codes[code]
  if not c or c.client_id ~= client then return invalid_grant("Invalid grant: authorization_code is invalid") end
  if c.used then
    -- a code seen twice may have been stolen: end what the first use produced
    if c.grant then self:revoke_grant(c.grant) end
    return invalid_grant("Invalid grant: authorization_code is invalid")
  end
  if self.clock() > c.expires then return invalid_grant("Invalid grant: authorization_code has expired") end
  if uri ~= c.redirect_uri then return invalid_grant("Invalid request: redirect_uri is invalid") end
  c.used = true
  self.next_grant = self.next_grant + 1
  local id = self.next_grant
  self.grants[id] = { client_id = client, scope = c.scope, revoked = false }
  c.grant = id
  self.counts.exchanges = self.counts.exchanges + 1
  return json_answer(200, self:issue(req, id))
end

function OAuth:grant_refresh(req, client, form)
  local token = form.refresh_token
  if token == nil or token == "" then
    self.counts.failed_refreshes = self.counts.failed_refreshes + 1
    return json_error(400, "invalid_request", "Missing parameter: refresh_token")
  end
  local r = self.refresh_tokens[token]
  local g = self:grant_of(r)
  if not r or not r.active or not g or g.client_id ~= client then
    self.counts.failed_refreshes = self.counts.failed_refreshes + 1
    return invalid_grant("Invalid grant: refresh_token is invalid")
  end
  self.counts.refreshes = self.counts.refreshes + 1
  return json_answer(200, self:issue(req, r.grant))
end

function OAuth:token(req)
  local client, cerr = self:client_auth(req)
  if not client then return invalid_client(cerr) end
  local form, ferr = read_form(req)
  if not form then return json_error(400, "invalid_request", ferr) end
  local grant = form.grant_type
  if grant == nil or grant == "" then return json_error(400, "invalid_request", "Missing parameter: grant_type") end
  if grant == "authorization_code" then return self:grant_code(req, client, form) end
  if grant == "refresh_token" then return self:grant_refresh(req, client, form) end
  return json_error(400, "unsupported_grant_type", "Unsupported grant type")
end

--- RFC 7009: a well-formed request is answered 200 whether or not the token
-- was known (another client's token counts as unknown and stays valid).
function OAuth:revoke(req)
  local client, cerr = self:client_auth(req)
  if not client then return invalid_client(cerr) end
  local form, ferr = read_form(req)
  if not form then return json_error(400, "invalid_request", ferr) end
  local token = form.token
  if token == nil or token == "" then return json_error(400, "invalid_request", "Missing parameter: token") end
  local r = self.refresh_tokens[token]
  local g = r and self.grants[r.grant]
  if g and g.client_id == client then
    self:revoke_grant(r.grant)
  else
    local a = self.access_tokens[token]
    g = a and self.grants[a.grant]
    if g and g.client_id == client then a.revoked = true end
  end
  self.counts.revokes = self.counts.revokes + 1
  return json_answer(200, { success = true })
end

local ROUTES = {
  ["/oauth/authorize"] = { GET = OAuth.authorize },
  ["/oauth/authorize/decision"] = { POST = OAuth.decision },
  ["/oauth/token"] = { POST = OAuth.token },
  ["/oauth/revoke"] = { POST = OAuth.revoke },
}

--- Answers a request under /oauth/: status, headers, body.
function OAuth:handle(req)
  local path = req.path or "/"
  if #path > 1 then path = path:gsub("/+$", "") end
  if not self.enabled then
    return json_error(404, "not_found", "OAuth is off in this sandbox: start it with --oauth-client ID:SECRET")
  end
  local methods = ROUTES[path]
  if not methods then return json_error(404, "not_found", "Not found: no endpoint " .. path) end
  local method = (req.method or "GET"):upper()
  local fn = methods[method]
  if not fn then
    local names = {}
    for m in pairs(methods) do names[#names + 1] = m end
    table.sort(names)
    return json_error(405, "invalid_request", ("Method %s is not allowed on %s"):format(method, path),
      { allow = table.concat(names, ", ") })
  end
  local ok, status, headers, body = xpcall(function() return fn(self, req, util.parse_query(req.query_string)) end,
    debug.traceback)
  if not ok then
    io.stderr:write("pipedrive sandbox: internal error in OAuth: ", tostring(status), "\n")
    return json_error(500, "server_error", "Internal server error")
  end
  return status, headers, body
end

------------------------------------------------------------------------------
-- Admin endpoints (merged into the sandbox's /_sandbox/ table)
------------------------------------------------------------------------------
M.ADMIN = {
  ["/_sandbox/oauth"] = { GET = function(app) return 200, app.oauth:stats() end },
  ["/_sandbox/oauth/expire"] = { POST = function(app)
    return 200, { ok = true, expired = app.oauth:expire_all() }
  end },
}

return M
