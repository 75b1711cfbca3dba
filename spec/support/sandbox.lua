-- Test helper: a sandbox process per spec file, plus its admin API.
--   local sandbox = require "support.sandbox"
--   local sb = sandbox.start()        -- in setup()
--   local pd = sb.client{ api = "v1" }
--   sb.state(), sb.requests(), sb.clear_requests(), sb.reset(), sb.bulk("deal", 20)
--   sb.login(client_id, client_secret) -> an OAuth token (a sandbox with --oauth-client, --oauth-auto-approve)
--   sb.stop()                         -- in teardown()
-- Admin calls use the C core's transport and JSON directly, not the client
-- under test, so a client bug cannot hide itself.
local spawn = require "pipedrive.sandbox.spawn"
local core = require "pipedrive.core"
local pipedrive = require "pipedrive"

local M = {}

function M.start(opts)
  local sb = spawn.start(opts or {})
  local http = core.http_new{ timeout = 20 }

  function sb.admin(method, path, body)
    local res, err = http:perform{
      method = method, url = sb.url .. path,
      headers = body and { ["content-type"] = "application/json" } or {},
      body = body and core.json_encode(body) or nil,
    }
    assert(res, tostring(err))
    return res.status, core.json_decode(res.body)
  end

  function sb.state() return select(2, sb.admin("GET", "/_sandbox/state")) end
  function sb.requests() return select(2, sb.admin("GET", "/_sandbox/requests")) end
  function sb.clear_requests() sb.admin("DELETE", "/_sandbox/requests") end
  function sb.reset() sb.admin("POST", "/_sandbox/reset") end
  function sb.bulk(object, count, prefix)
    local status, body = sb.admin("POST", "/_sandbox/bulk", { object = object, count = count, title_prefix = prefix })
    assert(status == 200 or status == 201, "bulk failed: " .. tostring(status))
    return body
  end
  -- A raw API call with any token, for what the client would refuse to send.
  function sb.raw(method, path, headers, body)
    local res = assert(http:perform{ method = method, url = sb.url .. path, headers = headers or {}, body = body })
    return res.status, core.json_decode(res.body), res
  end

  -- An OAuth token of a sandbox started with --oauth-client ID:SECRET and
  -- --oauth-auto-approve: pd.oauth.login with curl as the browser.
  function sb.login(client_id, client_secret)
    local redirect = ("http://127.0.0.1:%d/callback"):format(require("support.util").free_port())
    local pd = pipedrive.new{ oauth_url = sb.url, oauth = { client_id = client_id, client_secret = client_secret,
                                                            redirect_uri = redirect } }
    local token = assert(pd.oauth.login{ quiet = true, timeout = 20, open = function(url)
      os.execute("curl -s -L -o /dev/null --max-time 10 '" .. url:gsub("'", "%%27") .. "' &")
    end })
    pd.close()
    return token
  end

  function sb.client(extra)
    local o = { api_token = sb.api_token, base_url = sb.url }
    for k, v in pairs(extra or {}) do o[k] = v end
    return pipedrive.new(o)
  end

  local stop = sb.stop
  function sb.stop()
    http:close()
    stop()
  end
  return sb
end

return M
