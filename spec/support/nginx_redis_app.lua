-- The site spec/nginx_redis_spec.lua runs inside a real nginx with a real Redis:
-- pipedrive.redis over cosockets (lua/pipedrive/redis_ngx.lua). configure{...}
-- runs in init_by_lua and makes the redis object there (before the fork: no
-- I/O at construction); init_worker() and the log phase try a command where
-- nginx has no cosockets and keep what they got in the shared dict.
--   /redis          replies mapped, errors, a deep reply, NOSCRIPT, a big value: JSON
--   /pace?n=N       N persons.add through a per-worker client paced in Redis
--   /hook-a /hook-b pipedrive.ngx.webhook, two triggers objects sharing shared:seen()
--   /count          the counters of the shared dict as JSON
--   /token          POST: saves a token through shared:token_store("x"); /oauth-users: users.list with it
--   /phases         what init_worker, a timer it started and the log phase got
-- luacheck: globals ngx
local pipedrive = require "pipedrive"
local pdngx = require "pipedrive.ngx"
local core = require "pipedrive.core"
local compat = require "pipedrive.compat"

local M = {}
local conf, shared

function M.configure(c)
  conf = c
  shared = pipedrive.redis{ port = c.redis_port, prefix = "ngx:", timeout = 0.5, retry_interval = 0.5 }
end

local function json(status, v)
  ngx.status = status
  ngx.header["content-type"] = "application/json"
  ngx.print(core.json_encode(v))
end

local function described(v, err)
  if err then return { err = { kind = err.kind, code = err.code, stage = err.stage, message = err.message } } end
  return { value = v, type = compat.math_type(v) or type(v) }
end

function M.init_worker()
  local dict = ngx.shared.pipedrive
  local _, err = shared:command("PING")
  dict:set("phase:init_worker", err and (err.kind .. " | " .. err.message) or "no error")
  ngx.timer.at(0, function()
    local v, terr = shared:command("INCR", shared:key("timer-ran"))
    dict:set("phase:timer", terr and tostring(terr) or ("INCR " .. tostring(v)))
  end)
end

function M.log_phase()
  local _, err = shared:command("PING")
  ngx.shared.pipedrive:set("phase:log", err and (err.kind .. " | " .. err.message) or "no error")
end

function M.phases()
  local dict = ngx.shared.pipedrive
  return json(200, { init_worker = dict:get("phase:init_worker"), timer = dict:get("phase:timer"),
                     log = dict:get("phase:log") })
end

function M.redis()
  local out = {}
  local function put(name, v, err) out[name] = described(v, err) end
  put("set", shared:command("SET", shared:key("bin\0key"), "a\0b\255"))
  local bin, berr = shared:command("GET", shared:key("bin\0key"))
  out.get = { binary_ok = bin == "a\0b\255", err = berr and tostring(berr) }
  put("missing", shared:command("GET", shared:key("missing")))
  put("incr", shared:command("INCRBY", shared:key("counter", ngx.worker.pid()), 41))
  put("float", shared:command("INCRBYFLOAT", shared:key("float", ngx.worker.pid()), 0.1))
  put("nested", shared:eval("return {1, {'two', {3, false}}, redis.status_reply('OK')}"))
  put("keys_args", shared:eval("return {KEYS[1], ARGV[1], ARGV[2]}", { shared:key("k") }, { 7, "x" }))
  put("empty", shared:command("LRANGE", shared:key("none"), 0, -1))
  put("wrongtype", shared:command("LPUSH", shared:key("bin\0key"), "x"))
  put("nested_error", shared:eval("return {1, redis.error_reply('MYERR nested')}"))
  put("deep", shared:eval("local t = {1} for i = 1, 40 do t = {t} end return t"))
  put("after_deep", shared:command("PING"))
  put("depth_ok", shared:eval("local t = {1} for i = 1, 20 do t = {t} end return t"))
  local big = ("0123456789abcdef"):rep(65536) -- 1 MiB: several reads
  shared:command("SET", shared:key("big"), big)
  local got = shared:command("GET", shared:key("big"))
  out.big_ok = got == big
  put("flush", shared:command("SCRIPT", "FLUSH"))
  put("after_flush", shared:eval("return 'again'"))
  put("select", shared:command("SELECT", 0)) -- closes its connection instead of pooling it
  return json(200, out)
end

local clients = {}
local function client(name, opts)
  if not clients[name] then clients[name] = pipedrive.new(opts()) end
  return clients[name]
end

function M.pace()
  local dict = ngx.shared.pipedrive
  local pd = client("pace", function()
    return { api_token = conf.api_token, base_url = conf.pace_url, pace = { shared = shared },
             log = function(ev)
               if ev.type == "pace" and ev.message then
                 dict:incr("pace_lines", 1, 0)
                 dict:set("pace_line:" .. ngx.worker.pid() .. ":" .. dict:get("pace_lines"), ev.message)
               end
             end }
  end)
  local n = tonumber(ngx.var.arg_n) or 1
  local ok, errors = 0, {}
  for i = 1, n do
    local p, err = pd.persons.add{ name = (ngx.var.arg_tag or "ngx") .. "-" .. ngx.worker.pid() .. "-" .. i }
    if p then ok = ok + 1 else errors[#errors + 1] = tostring(err) end
  end
  return json(200, { ok = ok, errors = core.array(errors), pid = ngx.worker.pid() })
end

function M.pace_lines()
  local dict, lines = ngx.shared.pipedrive, {}
  for _, k in ipairs(dict:get_keys(0)) do
    local pid = k:match("^pace_line:(%d+):")
    if pid then lines[#lines + 1] = { pid = tonumber(pid), message = dict:get(k) } end
  end
  return json(200, core.array(lines))
end

local hooks = {}
function M.hook(name)
  if not hooks[name] then
    local t = client("plain", function() return { api_token = conf.api_token, base_url = conf.pace_url } end)
      .triggers{ user = conf.hook_user, password = conf.hook_password, seen = shared:seen() }
    t:on("deal.*", function(ev)
      local dict = ngx.shared.pipedrive
      dict:incr("runs", 1, 0)
      ngx.sleep(0.5) -- long enough for the duplicates to arrive meanwhile
      dict:set("last_title", ev.current and ev.current.title or "?")
      dict:set("ran_at", name)
    end)
    hooks[name] = t
  end
  return pdngx.webhook(hooks[name])
end

function M.count()
  local dict = ngx.shared.pipedrive
  return json(200, { runs = dict:get("runs") or 0, title = dict:get("last_title"), at = dict:get("ran_at") })
end

function M.token()
  ngx.req.read_body()
  local ok, err = shared:token_store("x").on_token(core.json_decode(ngx.req.get_body_data()))
  return json(ok and 200 or 502, { ok = ok, error = err and tostring(err) })
end

function M.oauth_users()
  local pd = client("oauth", function()
    return { oauth = { client_id = conf.client_id, client_secret = conf.client_secret,
                       store = shared:token_store("x") },
             oauth_url = conf.oauth_url, base_url = conf.oauth_url }
  end)
  local users, err = pd.users.list()
  if not users then return json(502, { error = tostring(err) }) end
  return json(200, { count = #users, pid = ngx.worker.pid() })
end

return M
