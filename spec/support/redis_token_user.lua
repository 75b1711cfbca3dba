-- A process whose OAuth token lives in Redis (shared:token_store), for
-- spec/redis_oauth_spec.lua:
--   redis_token_user.lua REDIS_URL OAUTH_URL SECONDS PAUSE
-- with PD_CLIENT_ID and PD_CLIENT_SECRET in the environment. Calls
-- pd.users.list{} for SECONDS seconds every PAUSE seconds and prints one line
-- per call: "ok", "err <kind> <message>" or "raised <message>".
local pipedrive = require "pipedrive"
local core = require "pipedrive.core"

local url, oauth_url = arg[1], arg[2]
local seconds, pause = tonumber(arg[3]), tonumber(arg[4])
local shared = pipedrive.redis{ url = url, prefix = "oauth-spec:" }
local pd = pipedrive.new{ oauth_url = oauth_url, oauth = { client_id = os.getenv("PD_CLIENT_ID"),
  client_secret = os.getenv("PD_CLIENT_SECRET"), store = shared:token_store("acct") } }
local deadline = core.now() + seconds
repeat
  local ok, data, err = pcall(pd.users.list, {})
  if not ok then
    print("raised " .. tostring(data))
  elseif data == nil then
    print("err " .. tostring(err.kind) .. " " .. tostring(err))
  else
    print("ok")
  end
  io.stdout:flush()
  core.sleep(pause)
until core.now() >= deadline
