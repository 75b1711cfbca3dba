-- Unit specs for the OAuth part of pipedrive.core (csrc/oauth.c): request
-- building, token parsing, error kinds, and that no secret ever reaches an
-- error message. No network: requests and responses are plain tables.
local compat = require "pipedrive.compat"
local core = require "pipedrive.core"

local SECRET = "cs-Sup3rS3cret-0123456789"
local CODE = "code-7f3a9c1e5b"
local RT = "rt-4d2f8a6b0c1e"
local AT = "at-9e8d7c6b5a43"

-- A raw JSON fragment for token_body (other strings become JSON strings).
local RAW = {}
local function raw(s) return setmetatable({ s }, RAW) end

-- A token response body: the defaults below, changed by `fields` (false
-- removes a member).
local function token_body(fields)
  local t = {
    access_token = AT, token_type = "Bearer", refresh_token = RT, scope = "base,deals:full",
    expires_in = 3599, api_domain = "https://acme.pipedrive.com",
  }
  for k, v in pairs(fields or {}) do
    if v == false then t[k] = nil else t[k] = v end
  end
  local parts = {}
  for k, v in pairs(t) do
    local value
    if getmetatable(v) == RAW then value = v[1]
    elseif type(v) == "string" then value = '"' .. v .. '"'
    else value = tostring(v) end
    parts[#parts + 1] = ('"%s":%s'):format(k, value)
  end
  return "{" .. table.concat(parts, ",") .. "}"
end

local function parse(status, body, ctx, now)
  return core.oauth_parse_token({ status = status, headers = {}, body = body }, now or 1700000000,
    ctx or { grant_type = "authorization_code" })
end

-- Every string that must never be shown: the values of the inputs.
local function assert_no_secret(s)
  for _, v in ipairs({ SECRET, CODE, RT, AT }) do
    assert.is_nil(s:find(v, 1, true), "secret value leaked into: " .. s)
  end
end

local function raise_message(f, ...)
  local ok, msg = pcall(f, ...)
  assert.is_false(ok)
  return tostring(msg)
end

describe("core.random_token", function()
  it("gives base64url without padding of the requested size", function()
    for _, n in ipairs({ 16, 17, 18, 24, 32, 63, 64 }) do
      local s = core.random_token(n)
      assert.equal(math.ceil(n * 4 / 3), #s)
      assert.truthy(s:match("^[A-Za-z0-9_-]+$"))
    end
    assert.equal(43, #core.random_token())
  end)

  it("does not repeat", function()
    local seen = {}
    for _ = 1, 2000 do
      local s = core.random_token(16)
      assert.is_nil(seen[s])
      seen[s] = true
    end
  end)

  it("uses the whole alphabet", function()
    local chars = {}
    for _ = 1, 200 do
      for c in core.random_token(64):gmatch(".") do chars[c] = true end
    end
    local n = 0
    for _ in pairs(chars) do n = n + 1 end
    assert.equal(64, n)
  end)

  it("refuses sizes outside 16..64", function()
    assert.has_error(function() core.random_token(15) end)
    assert.has_error(function() core.random_token(65) end)
    assert.has_error(function() core.random_token(20.5) end)
    assert.has_error(function() core.random_token("many") end)
  end)
end)

describe("core.consttime_equal", function()
  it("compares like ==", function()
    local cases = {
      { "", "" }, { "a", "" }, { "", "a" }, { "abc", "abc" }, { "abc", "abd" }, { "abc", "ab" },
      { "ab", "abc" }, { "a\0b", "a\0b" }, { "a\0b", "a\0c" }, { "a\0", "a" }, { ("x"):rep(1000), ("x"):rep(1000) },
      { ("x"):rep(1000), ("x"):rep(999) .. "y" }, { "\255", "\255" }, { "\255", "\254" },
    }
    for _, c in ipairs(cases) do
      assert.equal(c[1] == c[2], core.consttime_equal(c[1], c[2]), ("%q vs %q"):format(c[1], c[2]))
    end
  end)

  it("refuses non-strings", function()
    assert.has_error(function() core.consttime_equal(nil, "a") end)
    assert.has_error(function() core.consttime_equal("a", {}) end)
  end)
end)

describe("core.base64_encode", function()
  it("matches the RFC 4648 vectors", function()
    local v = { [""] = "", f = "Zg==", fo = "Zm8=", foo = "Zm9v", foob = "Zm9vYg==", fooba = "Zm9vYmE=",
                foobar = "Zm9vYmFy" }
    for i, o in pairs(v) do assert.equal(o, core.base64_encode(i)) end
  end)

  it("uses the standard alphabet for binary input", function()
    assert.equal("+//9", core.base64_encode("\251\255\253"))
    assert.equal("AAEC/w==", core.base64_encode("\0\1\2\255"))
  end)
end)

describe("core.oauth_authorize_url", function()
  it("composes the authorize URL with encoded values", function()
    local url = core.oauth_authorize_url{
      client_id = "b1c2d3", redirect_uri = "http://127.0.0.1:8080/cb?x=1 y&z=ä", state = "st_-.~ate",
    }
    assert.equal("https://oauth.pipedrive.com/oauth/authorize?client_id=b1c2d3"
      .. "&redirect_uri=http%3A%2F%2F127.0.0.1%3A8080%2Fcb%3Fx%3D1%20y%26z%3D%C3%A4&state=st_-.~ate", url)
  end)

  it("uses oauth_url without its trailing slashes and appends a scope", function()
    local url = core.oauth_authorize_url{ oauth_url = "http://127.0.0.1:5000//", client_id = "id",
                                          redirect_uri = "https://app.example/cb", state = "s", scope = "base deals:read" }
    assert.equal("http://127.0.0.1:5000/oauth/authorize?client_id=id&redirect_uri=https%3A%2F%2Fapp.example%2Fcb"
      .. "&state=s&scope=base%20deals%3Aread", url)
    url = core.oauth_authorize_url{ client_id = "id", redirect_uri = "https://a/cb", state = "s",
                                    scope = { "base", "leads:full" } }
    assert.truthy(url:find("&scope=base%20leads%3Afull", 1, true))
  end)

  it("never carries the client secret", function()
    local url = core.oauth_authorize_url{ client_id = "id", client_secret = SECRET, redirect_uri = "https://a/cb",
                                          state = "s" }
    assert_no_secret(url)
    assert.is_nil(url:find("secret", 1, true))
  end)

  it("raises naming the missing or invalid field", function()
    local base = { client_id = "id", redirect_uri = "https://a/cb", state = "s" }
    local function without(k, v)
      local t = {}
      for a, b in pairs(base) do t[a] = b end
      t[k] = v
      return t
    end
    for _, k in ipairs({ "client_id", "redirect_uri", "state" }) do
      local msg = raise_message(core.oauth_authorize_url, without(k, nil))
      assert.truthy(msg:find("oauth_authorize_url: field '" .. k .. "'", 1, true), msg)
      msg = raise_message(core.oauth_authorize_url, without(k, ""))
      assert.truthy(msg:find("field '" .. k .. "'", 1, true), msg)
      msg = raise_message(core.oauth_authorize_url, without(k, 42))
      assert.truthy(msg:find("field '" .. k .. "'", 1, true), msg)
    end
    local msg = raise_message(core.oauth_authorize_url, without("redirect_uri", "https://a/cb\r\nX: y"))
    assert.truthy(msg:find("field 'redirect_uri'", 1, true), msg)
    msg = raise_message(core.oauth_authorize_url, without("oauth_url", "ftp://oauth.example"))
    assert.truthy(msg:find("field 'oauth_url'", 1, true), msg)
    msg = raise_message(core.oauth_authorize_url, without("oauth_url", "https://o.example/?a=b"))
    assert.truthy(msg:find("field 'oauth_url'", 1, true), msg)
    msg = raise_message(core.oauth_authorize_url, without("scope", { "base", 7 }))
    assert.truthy(msg:find("field 'scope'", 1, true), msg)
    assert.has_error(function() core.oauth_authorize_url("id") end)
  end)
end)

describe("core.oauth_token_request", function()
  local function code_fields()
    return { oauth_url = "https://oauth.example", client_id = "Aladdin", client_secret = "open sesame",
             grant_type = "authorization_code", code = "a/b+c d", redirect_uri = "https://app.example/cb?x=1" }
  end

  it("builds the code exchange", function()
    local r = core.oauth_token_request(code_fields())
    assert.equal("POST", r.method)
    assert.equal("https://oauth.example/oauth/token", r.url)
    -- RFC 7617's example credentials.
    assert.equal("Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==", r.headers.authorization)
    assert.equal("application/x-www-form-urlencoded", r.headers["content-type"])
    assert.equal("application/json", r.headers.accept)
    assert.equal("grant_type=authorization_code&code=a%2Fb%2Bc%20d"
      .. "&redirect_uri=https%3A%2F%2Fapp.example%2Fcb%3Fx%3D1", r.body)
  end)

  it("builds the refresh, to Pipedrive's host by default", function()
    local r = core.oauth_token_request{ client_id = "id", client_secret = SECRET, grant_type = "refresh_token",
                                        refresh_token = "12:34:ab=" }
    assert.equal("https://oauth.pipedrive.com/oauth/token", r.url)
    assert.equal("grant_type=refresh_token&refresh_token=12%3A34%3Aab%3D", r.body)
    assert.equal("Basic " .. core.base64_encode("id:" .. SECRET), r.headers.authorization)
  end)

  it("raises naming the field, never quoting secret values", function()
    local cases = {
      { "client_id", nil }, { "client_secret", nil }, { "grant_type", nil }, { "code", nil },
      { "redirect_uri", nil }, { "client_id", "with:colon" }, { "grant_type", "password" },
      { "code", "" }, { "client_secret", 5 },
    }
    for _, c in ipairs(cases) do
      local f = code_fields()
      f.client_secret, f.code = SECRET, CODE
      f[c[1]] = c[2]
      local msg = raise_message(core.oauth_token_request, f)
      assert.truthy(msg:find("oauth_token_request: field '" .. c[1] .. "'", 1, true), msg)
      assert_no_secret(msg)
    end
    local msg = raise_message(core.oauth_token_request, { client_id = "id", client_secret = SECRET,
                                                          grant_type = "refresh_token" })
    assert.truthy(msg:find("field 'refresh_token'", 1, true), msg)
    msg = raise_message(core.oauth_token_request, { client_id = "id", client_secret = SECRET .. ("x"):rep(20000),
                                                    grant_type = "refresh_token", refresh_token = RT })
    assert.truthy(msg:find("field 'client_secret' is too long", 1, true), msg)
    assert_no_secret(msg)
    msg = raise_message(core.oauth_token_request, { client_id = "id", client_secret = SECRET,
                                                    grant_type = "refresh_token", refresh_token = RT .. "\n" })
    assert.truthy(msg:find("field 'refresh_token'", 1, true), msg)
    assert_no_secret(msg)
  end)
end)

describe("core.oauth_revoke_request", function()
  it("builds the revocation", function()
    local r = core.oauth_revoke_request{ oauth_url = "http://127.0.0.1:1/", client_id = "Aladdin",
                                         client_secret = "open sesame", token = "t/1", token_type_hint = "refresh_token" }
    assert.equal("POST", r.method)
    assert.equal("http://127.0.0.1:1/oauth/revoke", r.url)
    assert.equal("token=t%2F1&token_type_hint=refresh_token", r.body)
    assert.equal("Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==", r.headers.authorization)
    assert.equal("application/x-www-form-urlencoded", r.headers["content-type"])
    r = core.oauth_revoke_request{ client_id = "a", client_secret = "b", token = "t" }
    assert.equal("token=t", r.body)
    assert.equal("https://oauth.pipedrive.com/oauth/revoke", r.url)
  end)

  it("refuses a bad hint or a missing token", function()
    local msg = raise_message(core.oauth_revoke_request, { client_id = "a", client_secret = SECRET, token = RT,
                                                           token_type_hint = "id_token" })
    assert.truthy(msg:find("field 'token_type_hint'", 1, true), msg)
    assert_no_secret(msg)
    msg = raise_message(core.oauth_revoke_request, { client_id = "a", client_secret = SECRET })
    assert.truthy(msg:find("field 'token'", 1, true), msg)
  end)
end)

describe("core.oauth_parse_token", function()
  it("reads a token, with integers and expires_at", function()
    local t = assert(parse(200, token_body(), nil, 1700000000))
    assert.same({ access_token = AT, refresh_token = RT, token_type = "Bearer", scope = "base,deals:full",
                  expires_in = 3599, expires_at = 1700003599, api_domain = "https://acme.pipedrive.com" }, t)
    assert.equal("integer", compat.math_type(t.expires_in))
    assert.equal("integer", compat.math_type(t.expires_at))
  end)

  it("rounds a fractional clock and lifetime down, and accepts any Bearer case", function()
    local t = assert(parse(200, token_body{ expires_in = raw"3600.9", token_type = "bEaReR" }, nil, 1700000000.75))
    assert.equal(3600, t.expires_in)
    assert.equal(1700003600, t.expires_at)
    assert.equal("integer", compat.math_type(t.expires_at))
    assert.equal("Bearer", t.token_type)
  end)

  it("keeps the old refresh token when a refresh answer has none", function()
    local t = assert(parse(200, token_body{ refresh_token = false }, { grant_type = "refresh_token",
                                                                       refresh_token = "old-rt" }))
    assert.equal("old-rt", t.refresh_token)
    t = assert(parse(200, token_body{ refresh_token = false }))
    assert.is_nil(t.refresh_token)
    t = assert(parse(200, token_body{ refresh_token = "new-rt" }, { grant_type = "refresh_token",
                                                                    refresh_token = "old-rt" }))
    assert.equal("new-rt", t.refresh_token)
  end)

  it("treats api_domain and scope as optional, and ignores other members", function()
    local t = assert(parse(200, [[ {"access_token":"a","token_type":"Bearer","expires_in":60,
      "extra":{"nested":[1,2,{"x":null}]},"n":null,"b":true} ]]))
    assert.is_nil(t.api_domain)
    assert.is_nil(t.scope)
    assert.equal("a", t.access_token)
  end)

  it("counts null, object and array members as absent", function()
    local ctx = { grant_type = "refresh_token", refresh_token = "old-rt" }
    local t = assert(parse(200, token_body{ refresh_token = raw"null", api_domain = raw"null", scope = raw"{}" }, ctx))
    assert.equal("old-rt", t.refresh_token)
    assert.is_nil(t.api_domain)
    assert.is_nil(t.scope)
    t = assert(parse(200, token_body{ refresh_token = raw'["x"]', error = raw'{"code":1}', success = raw"null" }, ctx))
    assert.equal("old-rt", t.refresh_token)
  end)

  it("reads no body holding a string of 64 KiB or nesting deeper than 64", function()
    local function kind(body) return select(2, parse(400, body)).kind end
    local s = ("x"):rep(64 * 1024 - 1)
    assert.equal("invalid_grant", kind('{"error":"invalid_grant","m":"' .. s .. '"}'))
    assert.equal("oauth", kind('{"error":"invalid_grant","m":"' .. s .. 'x"}'))
    assert.equal("oauth", kind('{"error":"invalid_grant","' .. s .. 'x":1}'))
    assert.equal("invalid_grant", kind('{"error":"invalid_grant","m":' .. ("["):rep(63) .. ("]"):rep(63) .. "}"))
    assert.equal("oauth", kind('{"error":"invalid_grant","m":' .. ("["):rep(64) .. ("]"):rep(64) .. "}"))
  end)

  it("still classifies an answer with stray bytes, lone surrogates or huge numbers", function()
    local ctx = { grant_type = "refresh_token", refresh_token = RT }
    local _, err = parse(400, '{"error":"invalid_grant","error_description":"Ung\252ltig \\udc00","n":1e999}', ctx)
    assert.equal("reauth_required", err.kind)
    assert.equal("Ung\252ltig \239\191\189", err.message)
  end)

  it("decodes JSON string escapes", function()
    local t = assert(parse(200, [[{"access_token":"a\/b","token_type":"Bearer","expires_in":1,
      "scope":"caf\u00e9 \ud83d\ude00 \ud800x \"q\""}]]))
    assert.equal("a/b", t.access_token)
    assert.equal("café 😀 \239\191\189x \"q\"", t.scope)
  end)

  describe("error kinds", function()
    local function fails(kind, status, body, ctx)
      local t, err = parse(status, body, ctx)
      assert.is_nil(t)
      assert.equal(kind, err.kind)
      assert.equal(status, err.status)
      assert.equal("POST", err.method)
      assert.equal("/oauth/token", err.path)
      assert.is_nil(err.body)
      return err
    end

    it("maps Pipedrive's message form of invalid_grant by grant type", function()
      local body = '{"success":false,"message":"Invalid grant: refresh_token is invalid","data":null}'
      local err = fails("reauth_required", 400, body, { grant_type = "refresh_token", refresh_token = RT })
      assert.equal("Invalid grant: refresh_token is invalid", err.message)
      err = fails("invalid_grant", 400, '{"success":false,"message":"Invalid grant: authorization_code has expired"}')
      assert.equal("Invalid grant: authorization_code has expired", err.message)
    end)

    it("maps the RFC 6749 form", function()
      local err = fails("reauth_required", 400,
        '{"error":"invalid_grant","error_description":"Invalid grant: refresh_token is invalid"}',
        { grant_type = "refresh_token" })
      assert.equal("invalid_grant", err.oauth_error)
      assert.equal("Invalid grant: refresh_token is invalid", err.message)
      err = fails("invalid_grant", 400, '{"error":"invalid_grant"}')
      assert.equal("invalid_grant", err.message)
      err = fails("invalid_client", 401, '{"error":"invalid_client","error_description":"Invalid client: bad secret"}')
      assert.equal("Invalid client: bad secret", err.message)
      fails("invalid_client", 400, '{"success":false,"message":"Invalid client: client_id is invalid"}')
    end)

    it("maps other refusals, server errors and odd statuses", function()
      local err = fails("oauth", 400, '{"success":false,"message":"Unsupported grant type"}')
      assert.equal("Unsupported grant type", err.message)
      err = fails("oauth", 400, '{"success":false,"message":"Missing parameter: grant_type"}')
      assert.equal("Missing parameter: grant_type", err.message)
      err = fails("oauth", 403, "<html>Forbidden</html>")
      assert.equal("token endpoint answered HTTP 403", err.message)
      fails("oauth", 429, "")
      err = fails("server", 502, "<html>Bad gateway</html>")
      assert.equal("token endpoint answered HTTP 502", err.message)
      -- A server fault must not force a new login.
      fails("server", 500, '{"error":"invalid_grant"}', { grant_type = "refresh_token" })
      fails("http", 302, "")
      fails("oauth", 200, '{"success":false,"message":"nope"}')
      fails("oauth", 200, '{"error":"temporarily_unavailable"}')
      fails("invalid_grant", 200, '{"error":"invalid_grant"}')
    end)

    it("calls a malformed 2xx a decode error", function()
      fails("decode", 200, "")
      fails("decode", 200, nil)
      fails("decode", 200, "not json")
      fails("decode", 200, "[1,2]")
      fails("decode", 200, '"a string"')
      fails("decode", 200, token_body() .. "x")
      fails("decode", 201, token_body{ access_token = false })
      fails("decode", 200, token_body{ access_token = "" })
      fails("decode", 200, token_body{ access_token = 12 })
      fails("decode", 200, token_body{ access_token = "a\\r\\nX-Injected: 1" })
      fails("decode", 200, token_body{ access_token = "a b" })
      fails("decode", 200, token_body{ token_type = "mac" })
      fails("decode", 200, token_body{ token_type = false })
      fails("decode", 200, token_body{ expires_in = false })
      fails("decode", 200, token_body{ expires_in = 0 })
      fails("decode", 200, token_body{ expires_in = -5 })
      fails("decode", 200, token_body{ expires_in = "3600" })
      fails("decode", 200, token_body{ expires_in = raw"1e300" })
      fails("decode", 200, token_body{ refresh_token = "" })
      fails("decode", 200, token_body{ refresh_token = raw"true" })
      fails("decode", 200, token_body{ api_domain = "ftp://acme.pipedrive.com" })
      fails("decode", 200, token_body{ api_domain = "https://" })
      fails("decode", 200, token_body{ api_domain = "https://a b" })
      fails("decode", 200, token_body{ api_domain = raw"7" })
    end)
  end)

  describe("malformed bodies", function()
    it("survives every truncation of a valid body", function()
      local body = token_body() .. "  "
      for i = 0, #body - 3 do
        local t, err = parse(200, body:sub(1, i))
        assert.is_nil(t)
        assert.equal("decode", err.kind)
      end
      assert.truthy(parse(200, body))
    end)

    it("survives huge strings, numbers, nesting and bodies", function()
      local cases = {
        token_body{ access_token = ("A"):rep(70000) },       -- longer than any JSON string we read
        token_body{ access_token = ("A"):rep(20000) },       -- readable, but not a plausible token
        token_body{ expires_in = raw(("9"):rep(400)) },
        token_body{ expires_in = raw"9223372036854775807" },
        token_body{ expires_in = raw"-9223372036854775808" },
        token_body{ extra = raw(("["):rep(100000) .. ("]"):rep(100000)) },
        token_body{ extra = raw(("["):rep(30) .. ("]"):rep(30)) },
        ("{"):rep(100000),
        '{"access_token":"' .. ("\\u12"):rep(1000),
        '{"a":"\\x"}', '{"a":"\1"}', '{"a":01}', '{"a":1.}', '{"a":.5}', '{"a":-}', '{"a":1e}', '{"a" 1}',
        '{"a":1,}', '{,}', '{"a":tru}', '{"a":nul}', '{"a":[1,]}', '{"a":{"b"}}', "{'a':1}",
        "\0\0\0", ("x"):rep(2 * 1024 * 1024),
      }
      for i, body in ipairs(cases) do
        local ok, t, err = pcall(parse, 200, body)
        assert.is_true(ok, "case " .. i .. " raised: " .. tostring(t))
        if i ~= 7 then
          assert.is_nil(t, "case " .. i)
          assert.equal("decode", err.kind, "case " .. i)
        end
      end
      -- 4xx with a huge or broken body still gives its status-based kind.
      local _, err = parse(400, ("{"):rep(1000))
      assert.equal("oauth", err.kind)
      _, err = parse(400, '{"message":"' .. ("m"):rep(100000) .. '"}')
      assert.equal("oauth", err.kind)
      assert.is_true(#err.message < 400)
    end)

    it("survives random bytes and random corruption", function()
      math.randomseed(42)
      local good = token_body()
      for _ = 1, 3000 do
        local b
        if math.random() < 0.3 then
          local t = {}
          for i = 1, math.random(0, 64) do t[i] = string.char(math.random(0, 255)) end
          b = table.concat(t)
        else
          local p = math.random(1, #good)
          b = good:sub(1, p - 1) .. string.char(math.random(0, 255)) .. good:sub(p + 1)
        end
        local ok, t, err = pcall(parse, math.random() < 0.5 and 200 or 400, b)
        assert.is_true(ok, tostring(t))
        assert.is_true(t ~= nil or type(err) == "table")
      end
    end)

    it("raises on misuse by the caller", function()
      assert.has_error(function() core.oauth_parse_token(nil, 0) end)
      assert.has_error(function() core.oauth_parse_token({ body = "{}" }, 0) end)
      assert.has_error(function() core.oauth_parse_token({ status = 200, body = {} }, 0) end)
      assert.has_error(function() core.oauth_parse_token({ status = 200, body = "{}" }, "now") end)
      assert.has_error(function() core.oauth_parse_token({ status = 200, body = "{}" }, 0 / 0) end)
      assert.has_error(function() core.oauth_parse_token({ status = 200, body = "{}" }, 0, "ctx") end)
    end)
  end)

  describe("secrets", function()
    local ctx = { grant_type = "refresh_token", refresh_token = RT, code = CODE, client_secret = SECRET }

    it("are scrubbed from server messages that echo them", function()
      local bodies = {
        '{"error":"invalid_grant","error_description":"refresh_token ' .. RT .. ' is invalid"}',
        '{"success":false,"message":"code ' .. CODE .. ' and secret ' .. SECRET .. ' refused"}',
        '{"error":"invalid_request","error_description":"got ' .. AT .. '","access_token":"' .. AT .. '"}',
      }
      for _, b in ipairs(bodies) do
        local _, err = parse(400, b, ctx)
        assert.truthy(err.message:find("[redacted]", 1, true), err.message)
        assert_no_secret(err.message)
        assert_no_secret(tostring(err))
      end
    end)

    it("are scrubbed even when unknown, if they look like tokens", function()
      local unknown = "7654321:12345678:0a1b2c3d4e5f60718293a4b5c6d7e8f9"
      local _, err = parse(400, '{"message":"Invalid grant: ' .. unknown .. ' expired"}', {})
      assert.equal("Invalid grant: [redacted] expired", err.message)
    end)

    it("never leave a malformed 2xx through the error", function()
      for _, b in ipairs({ token_body{ token_type = "mac" }, token_body{ expires_in = 0 },
                           token_body{ api_domain = "gopher://x" }, token_body() .. "," }) do
        local t, err = parse(200, b, ctx)
        assert.is_nil(t)
        assert_no_secret(err.message)
        assert_no_secret(tostring(err))
        for _, v in pairs(err) do
          if type(v) == "string" then assert_no_secret(v) end
        end
      end
    end)

    it("control characters in messages are neutralised and length is bounded", function()
      local _, err = parse(400, '{"message":"bad\\r\\nSet-Cookie: x\\u0000y"}', {})
      assert.equal("bad  Set-Cookie: x y", err.message)
      _, err = parse(400, '{"message":"' .. ("é"):rep(1000) .. '"}', {})
      assert.is_true(#err.message < 320)
      assert.truthy(compat.utf8_len(err.message))
    end)
  end)

  it("gives the same answer on every round of a long parse loop (make asan / make valgrind check leaks)", function()
    local ctx = { grant_type = "refresh_token", refresh_token = RT }
    local tokens, refused = 0, 0
    for i = 1, 2000 do
      local ok = i % 2 == 0 and i % 3 == 0
      local t, err = parse(i % 2 == 0 and 200 or 400, i % 3 == 0 and token_body() or '{"error":"invalid_grant"}', ctx)
      if ok then
        assert(t and t.access_token, "round " .. i .. " should give a token")
        tokens = tokens + 1
      else
        assert(t == nil and err.kind, "round " .. i .. " should fail")
        refused = refused + 1
      end
    end
    assert.equal(333, tokens)
    assert.equal(1667, refused)
  end)
end)

describe("core.oauth_needs_refresh", function()
  it("compares now + skew with expires_at", function()
    local t = { expires_at = 1000 }
    assert.is_false(core.oauth_needs_refresh(t, 900, 60))
    assert.is_false(core.oauth_needs_refresh(t, 939, 60))
    assert.is_true(core.oauth_needs_refresh(t, 940, 60))
    assert.is_true(core.oauth_needs_refresh(t, 1000))
    assert.is_false(core.oauth_needs_refresh(t, 999))
    assert.is_true(core.oauth_needs_refresh(t, 2000, 0))
  end)

  it("says yes when the expiry is unknown", function()
    assert.is_true(core.oauth_needs_refresh({}, 0, 0))
    assert.is_true(core.oauth_needs_refresh({ expires_at = "1000" }, 0, 0))
    assert.is_true(core.oauth_needs_refresh(nil, 0, 0))
    assert.has_error(function() core.oauth_needs_refresh({}, "now") end)
  end)

  it("works on a parsed token", function()
    local t = assert(parse(200, token_body(), nil, 5000))
    assert.is_false(core.oauth_needs_refresh(t, 5000, 60))
    assert.is_true(core.oauth_needs_refresh(t, 5000 + 3599 - 60, 60))
  end)
end)
