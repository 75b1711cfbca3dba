-- The site spec/nginx_spec.lua runs inside a real nginx (lua-nginx-module, LuaJIT).
-- nginx.conf calls configure{...} in init_by_lua and one handler per location:
--   /deals         the first page of deals, through the nginx transport (JSON)
--   /slow?sb=N     persons.list on sandbox N (which delays it), with the worker pid
--   /ping          the worker pid at once
--   /unreachable   a call to a closed port: the error's kind and stage
--   /timer-call    a call from ngx.timer.at: the error it gets (no subrequests there)
--   /webhook       pipedrive.ngx.webhook with a shared-dict seen store; the callback
--                  counts its runs in the shared dict (and fails while "fail" is set)
--   /count         the counters as JSON
--   /token         POST: seeds the OAuth token store; /oauth-users: users.list with OAuth
-- luacheck: globals ngx
local pipedrive = require "pipedrive"
local pdngx = require "pipedrive.ngx"
local core = require "pipedrive.core"

local M = {}
local conf
local clients = {} -- per worker: module state is per worker

function M.configure(c) conf = c end

local function json(status, v)
  ngx.status = status
  ngx.header["content-type"] = "application/json"
  ngx.print(core.json_encode(v))
end

local function client(n)
  n = n or 1
  if not clients[n] then
    clients[n] = pipedrive.new{ api_token = conf.api_token, base_url = conf.sandboxes[n] }
  end
  return clients[n]
end

function M.deals()
  local deals, err = client().deals.list{ limit = 3 }
  if not deals then return json(502, { error = tostring(err) }) end
  local out = {}
  for i, d in ipairs(deals) do out[i] = { id = d.id, title = d.title } end
  return json(200, core.array(out))
end

function M.slow()
  local n = tonumber(ngx.var.arg_sb) or 1
  local t0 = ngx.now()
  local persons, err = client(n).persons.list{ limit = 1 }
  ngx.update_time()
  if not persons then return json(502, { error = tostring(err) }) end
  return json(200, { pid = ngx.worker.pid(), took = ngx.now() - t0, count = #persons })
end

function M.ping()
  return json(200, { pid = ngx.worker.pid() })
end

function M.unreachable()
  local pd = pipedrive.new{ api_token = "x", base_url = conf.closed_url, retries = false }
  local _, err = pd.deals.list()
  return json(200, { kind = err and err.kind, stage = err and err.stage, message = err and err.message })
end

function M.timer_call()
  local dict = ngx.shared.pipedrive
  local ok, terr = ngx.timer.at(0, function()
    local _, err = client().users.list()
    dict:set("timer_error", err and (err.kind .. ": " .. err.message) or "no error")
  end)
  if not ok then return json(500, { error = terr }) end
  ngx.sleep(0.3)
  return json(200, { error = dict:get("timer_error") })
end

local triggers
function M.webhook()
  if not triggers then
    triggers = client().triggers{ user = conf.hook_user, password = conf.hook_password,
                                  seen = pdngx.seen("pipedrive") }
    triggers:on("deal.*", function(ev)
      local dict = ngx.shared.pipedrive
      dict:incr("runs", 1, 0)
      ngx.sleep(0.8) -- long enough for the concurrent duplicates to arrive meanwhile
      if dict:get("fail") then
        dict:delete("fail")
        error("the callback fails this once")
      end
      dict:incr("done", 1, 0)
      dict:set("last_title", ev.current and ev.current.title or "?")
      dict:set("pids", (dict:get("pids") or "") .. ngx.worker.pid() .. " ")
    end)
  end
  ngx.shared.pipedrive:set("seen_pid_" .. ngx.worker.pid(), true)
  return pdngx.webhook(triggers, { defer = ngx.var.arg_defer ~= "0" })
end

function M.set_fail()
  ngx.shared.pipedrive:set("fail", true)
  return json(200, { ok = true })
end

function M.count()
  local dict = ngx.shared.pipedrive
  local workers = 0
  for _, k in ipairs(dict:get_keys(0)) do
    if k:match("^seen_pid_") then workers = workers + 1 end
  end
  return json(200, { runs = dict:get("runs") or 0, done = dict:get("done") or 0,
                     title = dict:get("last_title"), workers = workers })
end

local oauth_client
function M.token()
  ngx.req.read_body()
  ngx.shared.pipedrive:set("oauth", ngx.req.get_body_data())
  oauth_client = nil
  return json(200, { ok = true })
end

function M.oauth_users()
  if not oauth_client then
    oauth_client = pipedrive.new{
      oauth = { client_id = conf.client_id, client_secret = conf.client_secret,
                store = pdngx.token_store("pipedrive", "oauth") },
      oauth_url = conf.sandboxes[1], base_url = conf.sandboxes[1],
    }
  end
  local users, err = oauth_client.users.list()
  if not users then return json(502, { error = tostring(err) }) end
  return json(200, { count = #users, pid = ngx.worker.pid() })
end

return M
