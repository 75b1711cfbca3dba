-- Secrets never show: distinctive API token, OAuth client secret, access and
-- refresh tokens and webhook password are set, many failure paths are driven,
-- and every error string, tostring(err), tostring of the client and its
-- tables, debug-hook event, sandbox request log, and the output of spawned
-- processes is searched for each of them.
local sandbox = require "support.sandbox"
local pipedrive = require "pipedrive"
local core = require "pipedrive.core"

local API_TOKEN = "SECRETapitokenA1b2C3d4E5f6"
local WRONG_TOKEN = "SECRETwrongtokenZ9y8X7w6"
local CLIENT_ID = "secrets-client"
local CLIENT_SECRET = "SECRETclientsecretQ1w2E3r4"
local WRONG_SECRET = "SECRETwrongsecretP0o9I8u7"
local FAKE_ACCESS = "SECRETaccessTokenM1n2B3v4"
local FAKE_REFRESH = "SECRETrefreshTokenL5k6J7h8"
local HOOK_PASSWORD = "SECREThookPassw0rdG5f4D3s2"

describe("secrets", function()
  local sb, sb_log
  local secrets = { API_TOKEN, WRONG_TOKEN, CLIENT_SECRET, WRONG_SECRET, FAKE_ACCESS, FAKE_REFRESH, HOOK_PASSWORD,
                    core.base64_encode(CLIENT_ID .. ":" .. CLIENT_SECRET), core.base64_encode("hook:" .. HOOK_PASSWORD) }
  local texts = {}   -- { where, text } of everything searched at the end
  local events = {}  -- debug hook events of every client made here

  -- Every string inside v (tables walked, metatables' __tostring used).
  local function add(where, v, depth, seen)
    depth, seen = depth or 0, seen or {}
    if type(v) == "string" then
      texts[#texts + 1] = { where, v }
    elseif type(v) == "table" and not seen[v] and depth < 8 then
      seen[v] = true
      texts[#texts + 1] = { where .. " (tostring)", tostring(v) }
      for k, x in pairs(v) do
        add(where .. "." .. tostring(k), k, depth + 1, seen)
        add(where .. "." .. tostring(k), x, depth + 1, seen)
      end
    elseif v ~= nil then
      texts[#texts + 1] = { where, tostring(v) }
    end
  end

  local function hook(ev) events[#events + 1] = ev end

  local function failure(where, v, err)
    assert.is_nil(v, where)
    assert.is_not_nil(err, where)
    add(where, err)
    add(where .. " message", err.message)
    return err
  end

  local function raised(where, fn, ...)
    local ok, e = pcall(fn, ...)
    assert.is_false(ok, where)
    add(where, e)
    return e
  end

  local function client(extra)
    local o = { api_token = API_TOKEN, base_url = sb.url, log = hook, retries = { base = 0.01, max = 2 } }
    for k, v in pairs(extra or {}) do o[k] = v end
    local pd = pipedrive.new(o)
    add("tostring(client)", tostring(pd))
    for k, v in pairs(pd) do add("client." .. k, v) end
    return pd
  end

  local function faults(list)
    sb.admin("DELETE", "/_sandbox/faults")
    if list then assert.equal(200, (sb.admin("POST", "/_sandbox/faults", list))) end
  end

  setup(function()
    sb_log = os.tmpname()
    sb = sandbox.start{ api_token = API_TOKEN, log = sb_log,
                        args = { "--oauth-client", CLIENT_ID .. ":" .. CLIENT_SECRET, "--oauth-auto-approve" } }
  end)

  teardown(function()
    sb.stop()
    os.remove(sb_log)
  end)

  it("API token: bad base_url, 401, 403 HTML, 429, 5xx, timeouts, transport errors, redirects", function()
    raised("bad scheme", pipedrive.new, { api_token = API_TOKEN, base_url = "ftp://h/?api_token=" .. API_TOKEN })
    raised("base_url with a query", pipedrive.new, { api_token = API_TOKEN, base_url = "https://h/?api_token=" .. API_TOKEN })
    raised("remote http", pipedrive.new, { api_token = API_TOKEN, base_url = "http://u:" .. API_TOKEN .. "@example.com" })
    raised("token with a space", pipedrive.new, { api_token = API_TOKEN .. " x" })
    raised("token with a newline", pipedrive.new, { api_token = API_TOKEN .. "\n" })

    local wrong = client{ api_token = WRONG_TOKEN }
    failure("401", wrong.deals.list())
    wrong.close()

    local pd = client()
    faults{ { fault = "html403", count = 1 } }
    failure("403 html", pd.deals.list())
    faults{ { fault = "status", status = 429, retry_after = 0, count = 5 } }
    failure("429", pd.deals.list())
    faults{ { fault = "status", status = 429, daily = true, count = 1 } }
    failure("429 daily", pd.deals.add{ title = "x" })
    faults{ { fault = "status", status = 503, count = 5 } }
    failure("503", pd.deals.list())
    faults{ { fault = "status", status = 502, when = "after", count = 1 } }
    failure("502 post", pd.deals.add{ title = "x" })
    faults{ { fault = "cut", count = 5 } }
    failure("cut", pd.deals.list())
    faults{ { fault = "truncate", count = 1 } }
    failure("truncate", pd.deals.list())
    faults{ { fault = "redirect", location = "http://localhost:1/?api_token=" .. API_TOKEN, count = 1 } }
    failure("redirect", pd.deals.list())
    faults()
    local slow = client{ timeout = 0.2, retries = false }
    faults{ { fault = "delay", delay = 0.4, count = 1 } }
    failure("timeout", slow.deals.list())
    faults{ { fault = "drip", bytes = 4, interval = 0.1, count = 1 } }
    failure("drip timeout", slow.deals.add{ title = "slow" })
    faults()
    slow.close()
    local dead = client{ base_url = "http://127.0.0.1:1" }
    failure("refused", dead.deals.list())
    dead.close()
    local bad_tls = client{ base_url = "https://127.0.0.1:1", retries = false }
    failure("tls refused", bad_tls.deals.list())
    -- a deal error body that quotes what was sent
    failure("validation", pd.deals.add{ title = "x", stage_id = 999999 })
    add("rate_limit", pd.rate_limit())
    pd.close()
  end)

  it("OAuth: exchange, invalid_grant, invalid_client, 401 replay, revoke", function()
    local function oauth_client(extra)
      local o = { client_id = CLIENT_ID, client_secret = CLIENT_SECRET, redirect_uri = "http://127.0.0.1:9/cb" }
      for k, v in pairs(extra or {}) do o[k] = v end
      local pd = pipedrive.new{ oauth = o, oauth_url = sb.url, base_url = sb.url, log = hook,
                                retries = { base = 0.01, max = 1 } }
      add("tostring(oauth client)", tostring(pd))
      for k, v in pairs(pd) do add("oauth client." .. k, v) end
      return pd
    end
    -- A real exchange: the sandbox's tokens join the secrets.
    local pd = oauth_client()
    local url, state = pd.oauth.authorize_url{}
    local h = core.http_new{}
    local consent = assert(h:perform{ method = "GET", url = url, headers = {} })
    h:close()
    local code = consent.headers.location:match("[?&]code=([^&]+)")
    assert.is_string(code)
    secrets[#secrets + 1] = code
    local before = #events
    local token = assert(pd.oauth.exchange(code, state))
    secrets[#secrets + 1] = token.access_token
    secrets[#secrets + 1] = token.refresh_token
    -- The token call is in the debug hook too, masked.
    local req, res = events[before + 1], events[before + 2]
    assert.equal("request", req.type)
    assert.equal(sb.url .. "/oauth/token", req.url)
    assert.equal(1, req.attempt)
    assert.equal("***", req.headers.authorization)
    assert.matches("code=***", req.body, 1, true)
    assert.equal("response", res.type)
    assert.equal(200, res.status)
    assert.matches('"access_token":"***"', res.body, 1, true)
    assert.matches('"refresh_token":"***"', res.body, 1, true)
    assert.is_table((pd.deals.list()))
    failure("code used twice", pd.oauth.exchange(code, state))
    failure("wrong state", pd.oauth.exchange("SECRETcode", "nope"))
    assert.is_true((pd.oauth.refresh()))
    local t2 = pd.oauth.token()
    secrets[#secrets + 1] = t2.access_token
    secrets[#secrets + 1] = t2.refresh_token
    assert(pd.oauth.revoke())
    failure("after revoke", pd.deals.list())

    -- Made-up tokens: a 401, then invalid_grant on the refresh.
    local fake = oauth_client{ token = { access_token = FAKE_ACCESS, refresh_token = FAKE_REFRESH, token_type = "Bearer",
                                         expires_at = os.time() + 3600 } }
    failure("invalid_grant", fake.deals.list())
    failure("reauth", fake.deals.list())
    -- A wrong client secret: invalid_client.
    local wrong = oauth_client{ client_secret = WRONG_SECRET,
                                token = { access_token = FAKE_ACCESS, refresh_token = FAKE_REFRESH, expires_at = 1 } }
    failure("invalid_client", wrong.oauth.refresh())
    raised("oauth misuse", pipedrive.new, { oauth = { client_id = CLIENT_ID, client_secret = 5 } })
    raised("oauth and token", pipedrive.new,
      { api_token = API_TOKEN, oauth = { client_id = "a", client_secret = CLIENT_SECRET } })
  end)

  it("token_file errors", function()
    local dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir -m 700 " .. dir))
    local path = dir .. "/t.json"
    local doc = '{"access_token":"' .. FAKE_ACCESS .. '","refresh_token":"' .. FAKE_REFRESH .. '"}'
    local f = assert(io.open(path, "w"))
    f:write(doc)
    f:close()
    os.execute("chmod 644 " .. path)
    failure("token_file readable by others", pipedrive.token_file(path))
    os.execute("chmod 600 " .. path)
    f = assert(io.open(path, "w"))
    f:write(doc:sub(1, -3))
    f:close()
    failure("token_file broken JSON", pipedrive.token_file(path))
    failure("token_file directory", pipedrive.token_file(dir))
    os.execute("rm -rf " .. dir)
  end)

  it("webhook triggers: enable failures, refused requests, misuse", function()
    local pd = client{ retries = false }
    local lines = {}
    local tr = pd.triggers{ url = "http://127.0.0.1:9/hook", user = "hook", password = HOOK_PASSWORD,
                            log = function(line) lines[#lines + 1] = line end }
    tr:on("deal.added", function(ev) error("callback got " .. tostring(ev.id) .. " " .. HOOK_PASSWORD) end)
    add("tostring(triggers)", tostring(tr))
    faults{ { match = { method = "POST", path = "/api/v1/webhooks" }, fault = "status", status = 503, count = 1 } }
    failure("enable 503", tr:enable())
    faults{ { match = { method = "POST", path = "/api/v1/webhooks" }, fault = "cut", count = 1 } }
    failure("enable cut", tr:enable())
    faults()
    assert(tr:enable())
    local body = core.json_encode{ meta = { version = "2.0", action = "create", entity = "deal", entity_id = "1", id = "ev1" },
                                   data = { id = 1, title = "x" } }
    for _, auth in ipairs({ "Basic " .. core.base64_encode("hook:" .. HOOK_PASSWORD),
                            "Basic " .. core.base64_encode("hook:" .. HOOK_PASSWORD .. "x"), HOOK_PASSWORD }) do
      local status, headers, answer = tr:handle{ method = "POST", body = body,
        headers = { authorization = auth, ["content-type"] = "application/json" } }
      add("handle", { status, headers, answer })
    end
    add("trigger log", lines)
    assert(tr:disable())
    raised("triggers password misuse", pd.triggers, { url = "https://h/x", user = "hook", password = HOOK_PASSWORD .. "\n" })
    raised("triggers user misuse", pd.triggers, { url = "https://h/x", password = HOOK_PASSWORD })
    pd.close()
  end)

  it("a spawned script's stdout and stderr", function()
    local script = os.tmpname()
    local f = assert(io.open(script, "w"))
    f:write(([[
local pipedrive = require "pipedrive"
local pd = pipedrive.new{ api_token = %q, base_url = %q, retries = false,
                          log = function(ev) io.stderr:write(require("pipedrive.core").json_encode(ev), "\n") end }
print(pd)
print(pd.deals.list())
print(select(2, pd.deals.add{ title = "x", stage_id = 999999 }))
local dead = pipedrive.new{ api_token = %q, base_url = "http://127.0.0.1:1", retries = false }
print(dead.deals.list())
for _ in dead.deals.each() do end -- raises the error object: an uncaught error
]]):format(API_TOKEN, sb.url, API_TOKEN))
    f:close()
    local lua = os.getenv("LUA") or "lua5.4"
    local p = io.popen(("LUA_PATH=%q LUA_CPATH=%q %s %s 2>&1; echo exit=$?"):format(package.path, package.cpath, lua, script))
    local out = p:read("*a")
    p:close()
    os.remove(script)
    assert.matches("pipedrive.client", out, 1, true)
    assert.matches("exit=1", out, 1, true)
    add("child output", out)
  end)

  it("are in none of the texts, the hook events, the sandbox's request log or its output", function()
    add("hook events", events)
    add("sandbox request log", sb.requests())
    local f = io.open(sb_log, "r")
    if f then
      add("sandbox output", f:read("*a"))
      f:close()
    end
    assert.is_true(#events > 20)
    assert.is_true(#texts > 200)
    local leaks = {}
    for _, t in ipairs(texts) do
      for _, s in ipairs(secrets) do
        if t[2]:find(s, 1, true) then leaks[#leaks + 1] = t[1] .. ": " .. t[2]:sub(1, 200) end
      end
    end
    assert.same({}, leaks)
  end)
end)
