-- From a client id and secret to working calls, with the token kept in a file.
--
--   PIPEDRIVE_CLIENT_ID=... PIPEDRIVE_CLIENT_SECRET=... lua5.4 examples/oauth.lua
--
-- The first run prints (and, with --open, opens) Pipedrive's authorize URL and
-- waits for the browser's redirect on http://127.0.0.1:8976/callback; later runs
-- take the token from the file (PIPEDRIVE_TOKEN_FILE, default ./pipedrive-token.json)
-- and refresh it when it has expired. PIPEDRIVE_OAUTH_URL points at another OAuth
-- host (a sandbox); --fetch lets curl play the browser (for a sandbox that
-- approves at once). `make oauth-demo` runs it twice against a sandbox.
local pipedrive = require "pipedrive"

local flags = {}
for _, a in ipairs(arg or {}) do flags[a] = true end

local path = os.getenv("PIPEDRIVE_TOKEN_FILE") or "pipedrive-token.json"
local store = assert(pipedrive.token_file(path))

local pd = pipedrive.new{
  oauth = {
    client_id = assert(os.getenv("PIPEDRIVE_CLIENT_ID"), "set PIPEDRIVE_CLIENT_ID"),
    client_secret = assert(os.getenv("PIPEDRIVE_CLIENT_SECRET"), "set PIPEDRIVE_CLIENT_SECRET"),
    redirect_uri = os.getenv("PIPEDRIVE_REDIRECT_URI") or "http://127.0.0.1:8976/callback",
    store = store,
  },
  oauth_url = os.getenv("PIPEDRIVE_OAUTH_URL"),
}

if store.token then
  print(("using the token saved in %s"):format(path))
else
  local open = flags["--open"] or nil
  if flags["--fetch"] then
    open = function(url) os.execute("curl -s -L -o /dev/null --max-time 20 '" .. url .. "' &") end
  end
  local token, err = pd.oauth.login{ open = open, timeout = 300 }
  if not token then
    io.stderr:write("login failed: ", tostring(err), "\n")
    os.exit(1)
  end
  print(("logged in; API host %s; token saved in %s"):format(token.api_domain or "?", path))
end

local users, err = pd.users.list()
if not users then
  io.stderr:write("call failed: ", tostring(err), "\n")
  os.exit(1)
end
print(("%d users in the company, calls go to %s"):format(#users, pd.base_url()))
local deal = assert(pd.deals.add{ title = "Added with OAuth at " .. os.date("!%H:%M:%S") })
print(("added deal %d %q"):format(deal.id, deal.title))
local t = pd.oauth.token()
print(("access token valid for %d more seconds"):format(t.expires_at - os.time()))
pd.close()
