-- A process that uses a shared OAuth token store, for spec/token_file_spec.lua
-- (a token file) and spec/redis_oauth_spec.lua (Redis):
--   token_user.lua PATH|redis://... OAUTH_URL [SECONDS [PAUSE]]
-- with PD_CLIENT_ID and PD_CLIENT_SECRET in the environment. A redis:// URL
-- means shared:token_store("acct") under the prefix "oauth-spec:". Calls
-- pd.users.list{} once, or for SECONDS seconds every PAUSE seconds, and prints
-- one line per call: "ok", "err <kind> <message>" or "raised <message>"; then
-- "token <access token in memory>".
local pipedrive = require "pipedrive"
local core = require "pipedrive.core"

local path, url = arg[1], arg[2]
local seconds, pause = tonumber(arg[3] or "0"), tonumber(arg[4] or "0.1")
local store
if path:match("^redis://") then
  store = pipedrive.redis{ url = path, prefix = "oauth-spec:" }:token_store("acct")
else
  store = assert(pipedrive.token_file(path))
end
local pd = pipedrive.new{ oauth_url = url, oauth = { client_id = os.getenv("PD_CLIENT_ID"),
                                                     client_secret = os.getenv("PD_CLIENT_SECRET"), store = store } }
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
  if core.now() < deadline then core.sleep(pause) end
until core.now() >= deadline
print("token " .. tostring((pd.oauth.token() or {}).access_token))
