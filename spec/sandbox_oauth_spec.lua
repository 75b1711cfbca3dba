-- The sandbox's OAuth server: through app:handle with request tables and a
-- pinned clock, then once end to end over a real process with curl.
-- Answers are read with lua-cjson; Basic credentials and query strings are
-- built here, independently of the sandbox's own helpers.
local compat = require "pipedrive.compat"
local sandbox = require "pipedrive.sandbox"
local cjson = require "cjson"

local T0 = 1795867200
local ID, SECRET = "app-one", "s3cret-One"
local ID2, SECRET2 = "app-two", "s3cret-Two"
local REDIRECT = "http://127.0.0.1:8976/callback"
local HOST = "127.0.0.1:4100"
local UNAUTHORIZED = { success = false, error = "unauthorized access", errorCode = 401,
                       error_info = "Please check developers.pipedrive.com" }

local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

local function base64(s)
  local out = {}
  for i = 1, #s, 3 do
    local a, b, c = s:byte(i, i + 2)
    local n = a * 65536 + (b or 0) * 256 + (c or 0)
    local chars = {}
    for k = 3, 0, -1 do
      local v = math.floor(n / 64 ^ k) % 64
      chars[#chars + 1] = B64:sub(v + 1, v + 1)
    end
    local text = table.concat(chars)
    if not b then text = text:sub(1, 2) .. "=="
    elseif not c then text = text:sub(1, 3) .. "=" end
    out[#out + 1] = text
  end
  return table.concat(out)
end

local function basic(id, secret) return "Basic " .. base64(id .. ":" .. secret) end

local function pct(s)
  return (tostring(s):gsub("[^%w%-%._~]", function(ch) return ("%%%02X"):format(ch:byte()) end))
end

local function unpct(s)
  return (s:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

-- { {k, v}, ... } -> "k=v&..." (ordered, so tests can name the exact text)
local function form(pairs_)
  local parts = {}
  for _, p in ipairs(pairs_) do parts[#parts + 1] = p[1] .. "=" .. pct(p[2]) end
  return table.concat(parts, "&")
end

local function query_of(url)
  local q = {}
  for k, v in (url:match("%?(.*)$") or ""):gmatch("([^&=]+)=([^&]*)") do q[k] = unpct(v) end
  return q
end

local function new_app(opts)
  opts = opts or {}
  local now = T0
  opts.clock = function() return now end
  if opts.oauth_clients == nil then opts.oauth_clients = { [ID] = SECRET, [ID2] = SECRET2 } end
  if opts.oauth_auto_approve == nil then opts.oauth_auto_approve = true end
  local app = sandbox.new(opts)
  app.advance = function(s) now = now + s end
  return app
end

local function request(app, method, path, query, headers, body)
  headers = headers or {}
  if headers.host == nil then headers.host = HOST end
  local status, h, text = app:handle{ method = method, path = path, query_string = query or "",
                                      headers = headers, body = body or "", remote_addr = "127.0.0.1" }
  return status, h, text
end

local function decode(text)
  local ok, doc = pcall(cjson.decode, text)
  assert(ok, "not JSON: " .. tostring(text))
  return doc
end

local function authorize(app, params, headers)
  params = params or {}
  local q = {}
  for _, k in ipairs({ "client_id", "redirect_uri", "state", "scope", "response_type" }) do
    local v = params[k]
    if v == nil and k == "client_id" then v = ID end
    if v == nil and k == "redirect_uri" then v = REDIRECT end
    if v ~= false and v ~= nil then q[#q + 1] = { k, v } end
  end
  return request(app, "GET", "/oauth/authorize", form(q), headers)
end

-- Authorize (auto-approve) and return the code.
local function get_code(app, params)
  local status, h, text = authorize(app, params)
  assert.equal(302, status, text)
  return assert(query_of(h.location).code), h.location
end

-- POST /oauth/token; `fields` is an ordered list; opts: auth (false: none), content_type.
local function token_call(app, fields, opts)
  opts = opts or {}
  local headers = { ["content-type"] = opts.content_type or "application/x-www-form-urlencoded" }
  if opts.auth ~= false then headers.authorization = opts.auth or basic(ID, SECRET) end
  local body = type(fields) == "string" and fields or form(fields)
  local status, h, text = request(app, "POST", opts.path or "/oauth/token", "", headers, body)
  return status, decode(text), h, text
end

local function exchange(app, code, opts)
  return token_call(app, { { "grant_type", "authorization_code" }, { "code", code },
                           { "redirect_uri", (opts or {}).redirect_uri or REDIRECT } }, opts)
end

local function refresh(app, rt, opts)
  return token_call(app, { { "grant_type", "refresh_token" }, { "refresh_token", rt } }, opts)
end

local function revoke(app, token, hint, opts)
  local fields = { { "token", token } }
  if hint then fields[2] = { "token_type_hint", hint } end
  opts = opts or {}
  opts.path = "/oauth/revoke"
  return token_call(app, fields, opts)
end

local function login(app, params)
  local status, doc = exchange(app, get_code(app, params))
  assert.equal(200, status, cjson.encode(doc))
  return doc
end

local function api(app, access)
  local status, _, text = request(app, "GET", "/api/v2/deals", "", { authorization = "Bearer " .. access })
  return status, decode(text)
end

local function stats(app)
  local _, _, text = request(app, "GET", "/_sandbox/oauth")
  local doc = decode(text)
  for k, v in pairs(doc) do doc[k] = compat.tointeger(v) or v end
  return doc
end

local function assert_oauth_error(status, doc, want_status, code, message)
  assert.equal(want_status, status, cjson.encode(doc))
  assert.same({ success = false, error = code, error_description = message, message = message }, doc)
end

describe("sandbox OAuth", function()
  local app
  before_each(function() app = new_app() end)

  it("is off without clients: /oauth/ answers 404 and no Bearer token but the API token works", function()
    local plain = sandbox.new{}
    local status, _, text = plain:handle{ method = "GET", path = "/oauth/authorize",
                                          query_string = "client_id=x&redirect_uri=" .. pct(REDIRECT), headers = {} }
    assert.equal(404, status)
    assert.matches("--oauth-client", decode(text).message, 1, true)
    assert.equal(401, (plain:handle{ method = "GET", path = "/v1/deals", headers = { authorization = "Bearer x" } }))
  end)

  describe("authorize", function()
    it("auto-approves with a 302 to the redirect URI, echoing the state exactly", function()
      local state = "a b&c=d/é?%+"
      local status, h = authorize(app, { state = state })
      assert.equal(302, status)
      local base, qs = h.location:match("^([^?]*)%?(.*)$")
      assert.equal(REDIRECT, base)
      assert.matches("^code=[%x]+&state=[%w%%%-%._~]+$", qs)
      assert.equal(state, query_of(h.location).state)
      assert.equal("no-store", h["cache-control"])
    end)

    it("adds to a redirect URI that has a query, and leaves state out when none was given", function()
      local _, h = authorize(app, { redirect_uri = "https://app.example/cb?x=1", state = false })
      assert.matches("^https://app%.example/cb%?x=1&code=%x+$", h.location)
    end)

    it("refuses an unknown client or a bad redirect URI with a 400 page, never a redirect", function()
      local cases = {
        { { client_id = "nobody" }, "invalid_client", "Invalid client: client_id is unknown" },
        { { client_id = false }, "invalid_request", "Missing parameter: client_id" },
        { { redirect_uri = false }, "invalid_request", "Invalid request: redirect_uri is invalid" },
        { { redirect_uri = "/callback" }, "invalid_request", "Invalid request: redirect_uri is invalid" },
        { { redirect_uri = "ftp://host/cb" }, "invalid_request", "Invalid request: redirect_uri is invalid" },
        { { redirect_uri = "http://host/cb#frag" }, "invalid_request", "Invalid request: redirect_uri is invalid" },
        { { redirect_uri = "http:///cb" }, "invalid_request", "Invalid request: redirect_uri is invalid" },
      }
      for _, c in ipairs(cases) do
        local status, h, text = authorize(app, c[1])
        assert.equal(400, status)
        assert.is_nil(h.location)
        assert.matches("^text/html", h["content-type"])
        assert.matches(c[3], text, 1, true)
        status, h, text = authorize(app, c[1], { accept = "application/json" })
        assert.equal(400, status)
        assert.is_nil(h.location)
        assert_oauth_error(status, decode(text), 400, c[2], c[3])
      end
    end)

    it("sends other response types back to the redirect URI as an error", function()
      local status, h = authorize(app, { state = "s1", response_type = "token" })
      assert.equal(302, status)
      assert.same({ error = "unsupported_response_type", state = "s1" }, query_of(h.location))
    end)

    it("without auto-approve shows a consent page; Approve redirects with a code, Deny with access_denied", function()
      local manual = new_app{ oauth_auto_approve = false }
      local function consent(state)
        local status, h, text = authorize(manual, { state = state, scope = "deals:read <b>" })
        assert.equal(200, status)
        assert.matches("^text/html", h["content-type"])
        assert.matches('action="/oauth/authorize/decision"', text, 1, true)
        assert.matches("deals:read &lt;b&gt;", text, 1, true)
        return text:match('name="request" value="(%x+)"')
      end
      local function decide(id, decision)
        return request(manual, "POST", "/oauth/authorize/decision", "",
          { ["content-type"] = "application/x-www-form-urlencoded" }, form{ { "request", id }, { "decision", decision } })
      end
      local id = assert(consent("st-1"))
      local status, h = decide(id, "approve")
      assert.equal(302, status)
      local q = query_of(h.location)
      assert.equal("st-1", q.state)
      local status2, doc = exchange(manual, q.code)
      assert.equal(200, status2)
      assert.equal("deals:read <b>", doc.scope)
      -- a consent is answered once
      assert.equal(400, (decide(id, "approve")))

      local id2 = assert(consent("st-2"))
      status, h = decide(id2, "deny")
      assert.equal(302, status)
      assert.same({ error = "access_denied", state = "st-2" }, query_of(h.location))
      assert.equal(400, (decide("00ff", "approve")))
    end)
  end)

  describe("token endpoint", function()
    it("exchanges a code for a Bearer token with api_domain, the ttl and the requested scope", function()
      local ttl_app = new_app{ token_ttl = 120 }
      local status, doc, h = exchange(ttl_app, get_code(ttl_app, { scope = "deals:full users:read" }))
      assert.equal(200, status)
      assert.equal("Bearer", doc.token_type)
      assert.equal(120, doc.expires_in)
      assert.equal("deals:full users:read", doc.scope)
      assert.equal("http://" .. HOST, doc.api_domain)
      assert.matches("^%x+$", doc.access_token)
      assert.matches("^%x+$", doc.refresh_token)
      assert.is_true(#doc.access_token >= 40 and #doc.refresh_token >= 40)
      assert.not_equal(doc.access_token, doc.refresh_token)
      assert.equal("no-store", h["cache-control"])
      assert.equal("base", login(ttl_app).scope) -- no scope asked: "base"
    end)

    it("authenticates the client with HTTP Basic only, and never echoes the secret", function()
      local code = get_code(app)
      local function refused(opts, message)
        local status, doc, h, text = exchange(app, code, opts)
        assert_oauth_error(status, doc, 401, "invalid_client", message)
        assert.is_string(h["www-authenticate"])
        assert.is_nil(text:find("wrong-secret", 1, true))
        assert.is_nil(text:find(SECRET, 1, true))
      end
      refused({ auth = false }, "Invalid client: cannot retrieve client credentials")
      refused({ auth = basic(ID, "wrong-secret") }, "Invalid client: client_id or client_secret is invalid")
      refused({ auth = basic("nobody", SECRET) }, "Invalid client: client_id or client_secret is invalid")
      refused({ auth = "Bearer " .. SECRET }, "Invalid client: client credentials must be sent with HTTP Basic")
      refused({ auth = "Basic " .. base64("no-colon") }, "Invalid client: client credentials are malformed")
      -- credentials in the body do not count
      local status = token_call(app, { { "grant_type", "authorization_code" }, { "code", code },
        { "redirect_uri", REDIRECT }, { "client_id", ID }, { "client_secret", SECRET } }, { auth = false })
      assert.equal(401, status)
      -- the refusals did not use the code up
      assert.equal(200, (exchange(app, code)))
    end)

    it("wants a form body and a supported grant_type", function()
      local status, doc = token_call(app, cjson.encode{ grant_type = "authorization_code" },
        { content_type = "application/json" })
      assert_oauth_error(status, doc, 400, "invalid_request",
        "Invalid request: content-type must be application/x-www-form-urlencoded")
      status, doc = token_call(app, { { "code", "x" } })
      assert_oauth_error(status, doc, 400, "invalid_request", "Missing parameter: grant_type")
      status, doc = token_call(app, { { "grant_type", "password" } })
      assert_oauth_error(status, doc, 400, "unsupported_grant_type", "Unsupported grant type")
      status, doc = token_call(app, { { "grant_type", "authorization_code" }, { "redirect_uri", REDIRECT } })
      assert_oauth_error(status, doc, 400, "invalid_request", "Missing parameter: code")
      -- a charset parameter is fine
      status = exchange(app, get_code(app), { content_type = "application/x-www-form-urlencoded; charset=UTF-8" })
      assert.equal(200, status)
      -- other methods
      local s405, h = request(app, "GET", "/oauth/token")
      assert.equal(405, s405)
      assert.equal("POST", h.allow)
      assert.equal(404, (request(app, "GET", "/oauth/nothing")))
    end)

    it("refuses unknown, foreign, expired and mismatched codes", function()
      local status, doc = exchange(app, "0123abcd")
      assert_oauth_error(status, doc, 400, "invalid_grant", "Invalid grant: authorization_code is invalid")

      local code = get_code(app)
      status, doc = exchange(app, code, { auth = basic(ID2, SECRET2) })
      assert_oauth_error(status, doc, 400, "invalid_grant", "Invalid grant: authorization_code is invalid")
      status, doc = exchange(app, code, { redirect_uri = REDIRECT .. "x" })
      assert_oauth_error(status, doc, 400, "invalid_grant", "Invalid request: redirect_uri is invalid")
      assert.equal(200, (exchange(app, code))) -- still good for its own client and URI

      local short = new_app{ code_ttl = 300 }
      local c1, c2 = get_code(short), get_code(short)
      short.advance(300)
      assert.equal(200, (exchange(short, c1))) -- 300 s is still within its life
      short.advance(1)
      status, doc = exchange(short, c2)
      assert_oauth_error(status, doc, 400, "invalid_grant", "Invalid grant: authorization_code has expired")
    end)

    it("takes a code once; using it again also revokes the tokens it gave", function()
      local code = get_code(app)
      local _, tok = exchange(app, code)
      assert.equal(200, (api(app, tok.access_token)))
      local status, doc = exchange(app, code)
      assert_oauth_error(status, doc, 400, "invalid_grant", "Invalid grant: authorization_code is invalid")
      assert.equal(401, (api(app, tok.access_token)))
      status, doc = refresh(app, tok.refresh_token)
      assert_oauth_error(status, doc, 400, "invalid_grant", "Invalid grant: refresh_token is invalid")
    end)

    it("refreshes with rotation: a new pair, and the old refresh token stops working", function()
      local tok = login(app)
      local status, new = refresh(app, tok.refresh_token)
      assert.equal(200, status)
      assert.not_equal(tok.access_token, new.access_token)
      assert.not_equal(tok.refresh_token, new.refresh_token)
      assert.equal(tok.scope, new.scope)
      assert.equal(3600, new.expires_in)
      assert.equal(200, (api(app, new.access_token)))
      local doc
      status, doc = refresh(app, tok.refresh_token)
      assert_oauth_error(status, doc, 400, "invalid_grant", "Invalid grant: refresh_token is invalid")
      status, doc = refresh(app, new.refresh_token, { auth = basic(ID2, SECRET2) })
      assert_oauth_error(status, doc, 400, "invalid_grant", "Invalid grant: refresh_token is invalid")
      status, doc = token_call(app, { { "grant_type", "refresh_token" } })
      assert_oauth_error(status, doc, 400, "invalid_request", "Missing parameter: refresh_token")
      assert.equal(200, (refresh(app, new.refresh_token)))
      assert.same({ exchanges = 1, refreshes = 2, revokes = 0, failed_refreshes = 3, active_access_tokens = 3 },
        stats(app))
    end)
  end)

  describe("API with Bearer tokens", function()
    it("accepts an access token until it expires, then answers the usual 401", function()
      local tok = login(app)
      local status, doc = api(app, tok.access_token)
      assert.equal(200, status)
      assert.is_true(doc.success)
      app.advance(3600)
      assert.equal(200, (api(app, tok.access_token)))
      app.advance(1)
      status, doc = api(app, tok.access_token)
      assert.equal(401, status)
      assert.same(UNAUTHORIZED, doc)
      status, doc = api(app, "deadbeef")
      assert.same({ 401, UNAUTHORIZED }, { status, doc })
      -- the API token keeps working every way
      assert.equal(200, (request(app, "GET", "/v1/deals", "", { ["x-api-token"] = "sandbox-token" })))
      assert.equal(200, (request(app, "GET", "/v1/deals", "", { authorization = "Bearer sandbox-token" })))
      assert.equal(200, (request(app, "GET", "/v1/deals", "api_token=sandbox-token")))
      -- a refresh token is not an access token
      assert.equal(401, (api(app, tok.refresh_token)))
    end)

    it("/_sandbox/oauth/expire ends every access token now; refresh gets a working one", function()
      local a, b = login(app), login(app)
      assert.equal(2, stats(app).active_access_tokens)
      local status, _, text = request(app, "POST", "/_sandbox/oauth/expire")
      assert.equal(200, status)
      assert.equal(2, decode(text).expired)
      assert.equal(401, (api(app, a.access_token)))
      assert.equal(401, (api(app, b.access_token)))
      assert.equal(0, stats(app).active_access_tokens)
      local _, new = refresh(app, a.refresh_token)
      assert.equal(200, (api(app, new.access_token)))
    end)
  end)

  describe("revoke", function()
    it("revoking a refresh token ends it and its access tokens; an access token alone ends only itself", function()
      local tok = login(app)
      local _, second = refresh(app, tok.refresh_token) -- tok.access_token is still in force
      assert.equal(200, (api(app, tok.access_token)))
      local status, doc = revoke(app, second.refresh_token, "refresh_token")
      assert.equal(200, status)
      assert.is_true(doc.success)
      assert.equal(401, (api(app, tok.access_token)))
      assert.equal(401, (api(app, second.access_token)))
      assert.equal(400, (refresh(app, second.refresh_token)))

      local other = login(app)
      assert.equal(200, (revoke(app, other.access_token)))
      assert.equal(401, (api(app, other.access_token)))
      assert.equal(200, (refresh(app, other.refresh_token)))
    end)

    it("answers 200 for unknown and foreign tokens, changing nothing; refuses bad requests", function()
      local tok = login(app)
      assert.equal(200, (revoke(app, "not-a-token", "access_token")))
      assert.equal(200, (revoke(app, tok.refresh_token, nil, { auth = basic(ID2, SECRET2) })))
      assert.equal(200, (api(app, tok.access_token)))
      local status, doc = revoke(app, tok.refresh_token, nil, { auth = basic(ID, "nope") })
      assert_oauth_error(status, doc, 401, "invalid_client", "Invalid client: client_id or client_secret is invalid")
      status, doc = token_call(app, { { "token_type_hint", "access_token" } }, { path = "/oauth/revoke" })
      assert_oauth_error(status, doc, 400, "invalid_request", "Missing parameter: token")
      status = revoke(app, tok.refresh_token, nil, { content_type = "text/plain" })
      assert.equal(400, status)
      assert.equal(200, (api(app, tok.access_token)))
      assert.equal(2, stats(app).revokes)
    end)
  end)

  describe("admin and log", function()
    it("counts; reset forgets every code and token", function()
      local tok = login(app)
      local code = get_code(app)
      refresh(app, tok.refresh_token)
      refresh(app, tok.refresh_token)
      revoke(app, "x")
      assert.same({ exchanges = 1, refreshes = 1, revokes = 1, failed_refreshes = 1, active_access_tokens = 2 },
        stats(app))
      assert.equal(200, (request(app, "POST", "/_sandbox/reset")))
      assert.same({ exchanges = 0, refreshes = 0, revokes = 0, failed_refreshes = 0, active_access_tokens = 0 },
        stats(app))
      assert.equal(401, (api(app, tok.access_token)))
      assert.equal(400, (exchange(app, code)))
      assert.equal(405, (request(app, "GET", "/_sandbox/oauth/expire")))
      assert.equal(403, (app:handle{ method = "GET", path = "/_sandbox/oauth", headers = {}, remote_addr = "192.0.2.1" }))
    end)

    it("keeps no secret in the request log", function()
      local code = get_code(app)
      local _, tok = exchange(app, code)
      refresh(app, tok.refresh_token)
      revoke(app, tok.access_token, "access_token")
      token_call(app, cjson.encode{ code = code, client_secret = SECRET }, { content_type = "application/json" })
      api(app, tok.access_token)
      local _, _, text = request(app, "GET", "/_sandbox/requests")
      for _, secret in ipairs({ code, tok.access_token, tok.refresh_token, SECRET, base64(ID .. ":" .. SECRET) }) do
        assert.is_nil(text:find(secret, 1, true), "a secret is in the log")
      end
      local log = decode(text)
      local first_token = log[2] -- log[1] is the authorize call
      assert.equal("/oauth/token", first_token.path)
      assert.equal("grant_type=authorization_code&code=***&redirect_uri=" .. pct(REDIRECT), first_token.body)
      assert.equal("***", first_token.headers.authorization)
      assert.equal("grant_type=refresh_token&refresh_token=***", log[3].body)
      assert.equal("token=***&token_type_hint=access_token", log[4].body)
      assert.equal("***", log[5].body)
    end)
  end)
end)

describe("sandbox OAuth command line", function()
  local server = require "pipedrive.sandbox.server"

  it("takes repeated --oauth-client, --token-ttl, --code-ttl and --oauth-auto-approve", function()
    local o = assert(server.parse_args{ "--oauth-client", "a:x:y", "--oauth-client=b:z", "--token-ttl", "60",
                                        "--code-ttl=1", "--oauth-auto-approve" })
    assert.same({ a = "x:y", b = "z" }, o.oauth_clients)
    assert.same({ 60, 1, true }, { o.token_ttl, o.code_ttl, o.oauth_auto_approve })
    assert.equal(0.5, assert(server.parse_args{ "--token-ttl", "0.5" }).token_ttl)
    for _, bad in ipairs({ { "--oauth-client", "nosecret" }, { "--oauth-client", ":s" }, { "--oauth-client", "a:" },
                           { "--oauth-client", "a:1", "--oauth-client", "a:2" }, { "--token-ttl", "0" },
                           { "--code-ttl", "x" }, { "--oauth-auto-approve=1" }, { "--token-ttl" } }) do
      assert.is_nil(server.parse_args(bad), table.concat(bad, " "))
    end
  end)
end)

describe("sandbox OAuth process", function()
  local spawn = require "pipedrive.sandbox.spawn"
  local sb, short

  setup(function()
    sb = spawn.start{ args = { "--oauth-client", ID .. ":" .. SECRET, "--oauth-auto-approve", "--token-ttl", "600" } }
    short = spawn.start{ args = { "--oauth-client", ID .. ":" .. SECRET, "--oauth-auto-approve", "--code-ttl", "1" } }
  end)
  teardown(function()
    if sb then sb.stop() end
    if short then short.stop() end
  end)

  -- curl with a list of arguments (each shell-quoted); returns status, body, redirect location.
  local function curl(args)
    local quoted = {}
    for i, a in ipairs(args) do quoted[i] = "'" .. a:gsub("'", "'\\''") .. "'" end
    local f = assert(io.popen("curl -s -o - -w '\\n%{http_code} %{redirect_url}' " .. table.concat(quoted, " ")))
    local out = f:read("*a")
    f:close()
    local body, status, location = out:match("^(.*)\n(%d+) (.*)$")
    return tonumber(status), body, location
  end

  local function post_token(base, body, auth, ctype)
    local args = { "-X", "POST", "-H", "content-type: " .. (ctype or "application/x-www-form-urlencoded"),
                   "--data-binary", body, base .. "/oauth/token" }
    if auth ~= false then table.insert(args, 1, "-H"); table.insert(args, 2, "authorization: " .. (auth or basic(ID, SECRET))) end
    local status, text = curl(args)
    return status, decode(text)
  end

  local function auth_code(base, state)
    local status, _, location = curl{ base .. "/oauth/authorize?client_id=" .. ID .. "&redirect_uri=" .. pct(REDIRECT)
      .. "&state=" .. pct(state) }
    assert.equal(302, status)
    local q = query_of(location)
    assert.equal(state, q.state)
    assert.equal(REDIRECT, location:match("^[^?]*"))
    return q.code
  end

  local function code_body(code)
    return form{ { "grant_type", "authorization_code" }, { "code", code }, { "redirect_uri", REDIRECT } }
  end

  local function deals(base, access)
    return (curl{ "-H", "authorization: Bearer " .. access, base .. "/api/v2/deals" })
  end

  it("runs the whole flow over HTTP", function()
    local url = sb.url
    local code = auth_code(url, "xyz 1/2")
    local status, tok = post_token(url, code_body(code))
    assert.equal(200, status)
    assert.equal(url, tok.api_domain)
    assert.equal(600, compat.tointeger(tok.expires_in))
    assert.equal(200, deals(tok.api_domain, tok.access_token))

    assert.equal(200, (curl{ "-X", "POST", url .. "/_sandbox/oauth/expire" }))
    assert.equal(401, deals(url, tok.access_token))

    local new
    status, new = post_token(url, form{ { "grant_type", "refresh_token" }, { "refresh_token", tok.refresh_token } })
    assert.equal(200, status)
    assert.not_equal(tok.refresh_token, new.refresh_token)
    assert.equal(200, deals(url, new.access_token))

    local doc
    status, doc = post_token(url, form{ { "grant_type", "refresh_token" }, { "refresh_token", tok.refresh_token } })
    assert_oauth_error(status, doc, 400, "invalid_grant", "Invalid grant: refresh_token is invalid")

    status, doc = post_token(url, code_body(code))
    assert_oauth_error(status, doc, 400, "invalid_grant", "Invalid grant: authorization_code is invalid")
    assert.equal(401, deals(url, new.access_token)) -- the reuse ended the grant

    local fresh_code = auth_code(url, "s2")
    status, doc = post_token(url, code_body(fresh_code), basic(ID, "wrong-secret"))
    assert_oauth_error(status, doc, 401, "invalid_client", "Invalid client: client_id or client_secret is invalid")
    status, doc = post_token(url, cjson.encode{ grant_type = "authorization_code", code = fresh_code },
      nil, "application/json")
    assert.equal(400, status)
    assert.equal("invalid_request", doc.error)

    local last
    status, last = post_token(url, code_body(fresh_code))
    assert.equal(200, status)
    assert.equal(200, deals(url, last.access_token))
    status = curl{ "-H", "authorization: " .. basic(ID, SECRET), "--data-urlencode", "token=" .. last.refresh_token,
                   "--data-urlencode", "token_type_hint=refresh_token", url .. "/oauth/revoke" }
    assert.equal(200, status)
    assert.equal(401, deals(url, last.access_token))

    local _, text = curl{ url .. "/_sandbox/oauth" }
    local counts = decode(text)
    for k, v in pairs(counts) do counts[k] = compat.tointeger(v) end
    assert.same({ exchanges = 2, refreshes = 1, revokes = 1, failed_refreshes = 1, active_access_tokens = 0 }, counts)

    local _, log = curl{ url .. "/_sandbox/requests" }
    for _, secret in ipairs({ code, fresh_code, tok.refresh_token, last.refresh_token, SECRET }) do
      assert.is_nil(log:find(secret, 1, true), "a secret is in the request log")
    end
  end)

  it("lets a code expire after --code-ttl", function()
    local code = auth_code(short.url, "late")
    os.execute("sleep 2.2")
    local status, doc = post_token(short.url, code_body(code))
    assert_oauth_error(status, doc, 400, "invalid_grant", "Invalid grant: authorization_code has expired")
    -- a prompt exchange still works
    status = post_token(short.url, code_body(auth_code(short.url, "quick")))
    assert.equal(200, status)
  end)
end)
