-- OAuth 2.0 end to end against the sandbox's OAuth server: login on loopback,
-- calls with Bearer to api_domain, refresh before expiry and after a 401,
-- the token file, revoke, and every misuse the issue lists.
local compat = require "pipedrive.compat"
local sandbox = require "support.sandbox"
local pipedrive = require "pipedrive"
local core = require "pipedrive.core"

local CLIENT_ID, CLIENT_SECRET = "spec-client", "spec-secret-Zq81"

local free_port = require("support.util").free_port

-- The "browser": follows the authorize URL and its redirect in the background.
local function browser(url)
  os.execute("curl -s -L -o /dev/null --max-time 10 '" .. url:gsub("'", "%%27") .. "' &")
end

local function tmpdir()
  local d = os.tmpname()
  os.remove(d)
  assert(os.execute("mkdir -m 700 " .. d))
  return d
end

local function oauth_counts(sb) return select(2, sb.admin("GET", "/_sandbox/oauth")) end

describe("OAuth", function()
  local sb, dir

  setup(function()
    sb = sandbox.start{ args = { "--oauth-client", CLIENT_ID .. ":" .. CLIENT_SECRET, "--oauth-auto-approve",
                                 "--token-ttl", "3" } }
    dir = tmpdir()
  end)

  teardown(function()
    sb.stop()
    os.execute("rm -rf " .. dir)
  end)

  local function new_client(extra)
    local o = { client_id = CLIENT_ID, client_secret = CLIENT_SECRET,
                redirect_uri = ("http://127.0.0.1:%d/callback"):format(free_port()) }
    for k, v in pairs(extra or {}) do o[k] = v end
    return pipedrive.new{ oauth = o, oauth_url = sb.url }
  end

  it("goes from login to calls, refresh, a reloaded token file, revoke and reauth_required", function()
    local path = dir .. "/token.json"
    local store = assert(pipedrive.token_file(path))
    assert.is_nil(store.token)
    local pd = new_client{ store = store }

    -- no token yet: a clear runtime error, nothing sent
    local none, nerr = pd.deals.list()
    assert.is_nil(none)
    assert.equal("reauth_required", nerr.kind)

    local token, err = pd.oauth.login{ open = browser, quiet = true, timeout = 20 }
    assert.is_table(token, tostring(err))
    assert.equal("Bearer", token.token_type)
    assert.equal(sb.url, token.api_domain)
    assert.equal("integer", compat.math_type(token.expires_at))
    assert.equal(sb.url, pd.base_url()) -- calls go to api_domain

    -- persisted atomically with mode 0600
    local info = assert(core.file_info(path))
    assert.equal(384, info.mode % 512)
    assert.equal(token.access_token, core.json_decode(assert(core.read_file(path))).access_token)

    local d = assert(pd.deals.add{ title = "Via OAuth" })
    local log = sb.requests()
    assert.equal("***", log[#log].headers.authorization)
    assert.is_nil(log[#log].headers["x-api-token"])

    -- a token refused before its expiry: one refresh, the call replayed once
    local before = oauth_counts(sb)
    sb.admin("POST", "/_sandbox/oauth/expire")
    sb.clear_requests()
    local got = assert(pd.deals.get(d.id))
    assert.equal("Via OAuth", got.title)
    assert.equal(before.refreshes + 1, oauth_counts(sb).refreshes)
    local gets = 0
    for _, r in ipairs(sb.requests()) do
      if r.method == "GET" and r.path == "/api/v2/deals/" .. d.id then gets = gets + 1 end
    end
    assert.equal(2, gets) -- refused with 401, then replayed once after the refresh
    assert.not_equal(token.access_token, pd.oauth.token().access_token)

    -- a later run: a new client from the file, after the access token expired
    pd.close()
    os.execute("sleep 3.2")
    local store2 = assert(pipedrive.token_file(path))
    assert.is_table(store2.token)
    local pd2 = new_client{ store = store2 }
    local n = oauth_counts(sb).refreshes
    local list = assert(pd2.deals.list())
    assert.equal(1, #list)
    assert.equal(n + 1, oauth_counts(sb).refreshes) -- refreshed before sending, no 401 round trip

    -- revoke: the file is gone and calls need a new login
    assert.is_true(pd2.oauth.revoke())
    assert.is_nil(core.file_info(path))
    local after, rerr = pd2.deals.list()
    assert.is_nil(after)
    assert.equal("reauth_required", rerr.kind)
    pd2.close()
  end)

  it("a refresh token that was revoked elsewhere gives reauth_required and no on_token call", function()
    local calls = 0
    local pd = new_client{ on_token = function() calls = calls + 1 end }
    assert(pd.oauth.login{ open = browser, quiet = true, timeout = 20 })
    assert.equal(1, calls)
    -- another client with the same refresh token rotates it away
    local other = new_client{ token = pd.oauth.token() }
    assert.is_true(other.oauth.refresh())
    local ok, err = pd.oauth.refresh()
    assert.is_nil(ok)
    assert.equal("reauth_required", err.kind)
    assert.equal(1, calls)
    -- and it stops trying: the next call fails at once, without a request
    sb.clear_requests()
    local _, err2 = pd.oauth.refresh()
    assert.equal("reauth_required", err2.kind)
    assert.same({}, sb.requests())
    pd.close()
    other.close()
  end)

  -- Plain Lua 5.1 cannot yield across the pcall of the call pipeline (LuaJIT and 5.2+ can).
  local it_yield = (_VERSION ~= "Lua 5.1" or rawget(_G, "jit")) and it or pending
  it_yield("expired tokens on parallel calls cause exactly one refresh", function()
    local http = core.http_new{}
    local pd = new_client{}
    assert(pd.oauth.login{ open = browser, quiet = true, timeout = 20 })
    -- a client with a yielding transport: five coroutines interleave like parallel requests
    local y2 = pipedrive.new{
      oauth = { client_id = CLIENT_ID, client_secret = CLIENT_SECRET, token = pd.oauth.token() },
      oauth_url = sb.url,
      transport = function(req)
        coroutine.yield()
        return http:perform(req)
      end,
    }
    sb.admin("POST", "/_sandbox/oauth/expire")
    local before = oauth_counts(sb).refreshes
    local cos, results = {}, {}
    for i = 1, 5 do
      cos[i] = coroutine.create(function() results[i] = { y2.users.list() } end)
    end
    local running = true
    while running do
      running = false
      for i = 1, 5 do
        if coroutine.status(cos[i]) ~= "dead" then
          assert(coroutine.resume(cos[i]))
          running = true
        end
      end
    end
    for i = 1, 5 do assert.is_table(results[i][1], tostring(results[i][2])) end
    assert.equal(before + 1, oauth_counts(sb).refreshes)
    pd.close()
    y2.close()
    http:close()
  end)

  it("expired tokens inside pd.parallel cause exactly one refresh; every call succeeds", function()
    local pd = new_client{}
    assert(pd.oauth.login{ open = browser, quiet = true, timeout = 20 })
    for _, how in ipairs({ "expire", "401" }) do
      if how == "expire" then
        sb.admin("POST", "/_sandbox/oauth/expire") -- refused: a 401, refresh, replay
      end
      local before = oauth_counts(sb).refreshes
      local fns = {}
      for i = 1, 8 do fns[i] = function() return pd.users.list() end end
      local results, failed = pd.parallel(fns, { concurrency = 8 })
      assert.equal(0, failed, failed > 0 and tostring(results[1].err) or nil)
      local want = how == "expire" and 1 or 0
      assert.equal(before + want, oauth_counts(sb).refreshes)
    end
    pd.close()
  end)

  describe("misuse and refusals", function()
    it("a wrong state is refused without a request", function()
      local pd = new_client{}
      local _, state = pd.oauth.authorize_url{}
      sb.clear_requests()
      local t, err = pd.oauth.exchange("some-code", state .. "x")
      assert.is_nil(t)
      assert.equal("invalid_state", err.kind)
      assert.same({}, sb.requests())
      pd.close()
    end)

    it("a code used twice is refused the second time", function()
      local pd = new_client{}
      local url, state = pd.oauth.authorize_url{}
      -- follow the authorize URL by hand to read the code from the redirect
      local f = io.popen("curl -s -o /dev/null -w '%{redirect_url}' '" .. url .. "'")
      local location = f:read("*a")
      f:close()
      local code = location:match("[?&]code=([^&]+)")
      assert.is_string(code)
      assert(pd.oauth.exchange(code, state))
      local url2, state2 = pd.oauth.authorize_url{}
      assert.is_string(url2)
      local t, err = pd.oauth.exchange(code, state2)
      assert.is_nil(t)
      assert.equal("invalid_grant", err.kind)
      assert.is_nil(tostring(err):find(code, 1, true))
      pd.close()
    end)

    it("a wrong client secret gives invalid_client and never shows the secret", function()
      local pd = pipedrive.new{ oauth = { client_id = CLIENT_ID, client_secret = "wrong-secret-value",
                                          redirect_uri = "http://127.0.0.1:1/cb" }, oauth_url = sb.url }
      local url, state = pd.oauth.authorize_url{}
      local f = io.popen("curl -s -o /dev/null -w '%{redirect_url}' '" .. url .. "'")
      local code = f:read("*a"):match("[?&]code=([^&]+)")
      f:close()
      local t, err = pd.oauth.exchange(code, state)
      assert.is_nil(t)
      assert.equal("invalid_client", err.kind)
      assert.is_nil(tostring(err):find("wrong-secret-value", 1, true))
      assert.is_nil(tostring(pd):find("wrong-secret-value", 1, true))
      pd.close()
    end)

    it("a token file others can read, or with broken JSON, is refused and left as it was", function()
      local loose = dir .. "/loose.json"
      local fh = io.open(loose, "w")
      fh:write('{"access_token":"abc"}')
      fh:close()
      os.execute("chmod 644 " .. loose)
      local store, err = pipedrive.token_file(loose)
      assert.is_nil(store)
      assert.equal("token_file", err.kind)
      assert.matches("chmod 600", tostring(err), 1, true)

      local broken = dir .. "/broken.json"
      assert(core.write_file_atomic(broken, '{"access_token": "abc', 384))
      local s2, err2 = pipedrive.token_file(broken)
      assert.is_nil(s2)
      assert.matches("broken JSON", tostring(err2), 1, true)
      assert.equal('{"access_token": "abc', core.read_file(broken))
    end)

    it("refuses bad OAuth options at pipedrive.new", function()
      local ok, msg = pcall(pipedrive.new, { oauth = { client_id = "x" } })
      assert.is_false(ok)
      assert.matches("oauth.client_secret", msg, 1, true)
      ok, msg = pcall(pipedrive.new, { api_token = "t", oauth = { client_id = "x", client_secret = "y" } })
      assert.is_false(ok)
      assert.matches("not both", msg, 1, true)
    end)

    it("login refuses a redirect URI that is not loopback", function()
      local pd = pipedrive.new{ oauth = { client_id = CLIENT_ID, client_secret = CLIENT_SECRET,
                                          redirect_uri = "https://example.com/cb" }, oauth_url = sb.url }
      local ok, msg = pcall(pd.oauth.login, { quiet = true })
      assert.is_false(ok)
      assert.matches("loopback", msg, 1, true)
      pd.close()
      -- read by libcurl's parser: user info never passes for a loopback host, and a query has no place
      for _, uri in ipairs{ "http://localhost@evil.example:8976/cb", "http://127.0.0.1@evil.example:8976/cb",
                            "http://u:p@127.0.0.1:8976/cb", "http://127.0.0.1:8976/cb?x=1" } do
        pd = pipedrive.new{ oauth = { client_id = CLIENT_ID, client_secret = CLIENT_SECRET, redirect_uri = uri },
                            oauth_url = sb.url }
        ok, msg = pcall(pd.oauth.login, { quiet = true })
        assert.is_false(ok, uri)
        assert.matches("loopback", msg, 1, true)
        pd.close()
      end
    end)
  end)
end)
