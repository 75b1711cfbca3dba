--- pipedrive.redis{...}: one Redis shared by the workers and hosts of one
-- Pipedrive account (token stores, webhook de-duplication, pacing).
--
--   local shared = pipedrive.redis{ host = "127.0.0.1", port = 6379, password = nil, db = 0,
--                                   prefix = "pipedrive:", timeout = 1, retry_interval = 1 }
--   -- or pipedrive.redis{ url = "redis://:password@host:port/db" }
--   shared:command("SET", shared:key("a", 1), "v")   -> reply | nil, err
--   shared:eval(script, { keys }, { args })          -> reply | nil, err
--   shared:key(...), shared:token_key(secret), shared:now(), shared:close()
--
-- Construction checks the options and does no I/O: the connection is made on
-- first use (so the object can be made at module level, or before a fork: a
-- connection made by another process is dropped, never shared). Replies: bulk
-- and status strings -> strings, integers -> integers, arrays -> sequences,
-- nil -> false. Failures are `nil, err` with core.error_mt:
--   kind "redis"              an error reply: err.code its first word (NOSCRIPT,
--                             WRONGTYPE, NOAUTH...), err.message its text
--   kind "redis_unavailable"  connect failure or timeout: err.stage "connect" or
--                             "transfer". The connection is dropped; the next
--                             command connects again (once per command), but
--                             after a failed connect for `retry_interval`
--                             seconds every command fails at once, so a host
--                             whose Redis is down never waits a connect timeout
--                             per call.
-- The password (and a URL's user info) never appears in an error or tostring;
-- the object never prints. After close() every method raises.
--
-- Backends: backend() picks the transport. Plain Lua uses the C module
-- pipedrive.hiredis (csrc/redis.c), one connection kept per object. Under
-- OpenResty it is pipedrive.redis_ngx (cosockets: lua-resty-redis when
-- installed, else our own RESP client); in a phase without cosockets (init,
-- init_worker, log, header_filter...) commands fail with kind
-- "redis_unavailable" naming the phase, and the C module is never used there.
-- A backend is `connect{ host, port, path, timeout, pool } -> conn | nil,
-- message` with `conn:command(argv) -> reply | nil, message, kind ("io" |
-- "reply")`, `conn:forked()` and `conn:close()`. A pooled backend (redis_ngx)
-- has `pooled = true`: its connection lives for one method call only (a
-- cosocket belongs to one request, and requests of a worker share the
-- object), taken from nginx's keepalive pool named by host, port, db and a
-- hash of the credentials, AUTH/SELECT sent only when it is new
-- (`conn.reused` false), and given back by `conn:release(keep)`. Commands
-- that change a connection's state (SELECT, MULTI, WATCH, SUBSCRIBE...) close
-- it instead of pooling it: under nginx each call may get another connection,
-- so such sequences belong in one eval script.
local compat = require "pipedrive.compat"
local core = require "pipedrive.core"

local M = {}

local NAME = "pipedrive.redis"
local SCRIPTS_MAX = 256 -- scripts whose sha is kept per object (a cache, so bounded)

local Redis = {}
Redis.__index = Redis
M.class = Redis

-- Private state per object (weak keys): the password and the connection stay
-- out of the public table, so dumping the object shows neither.
local state = setmetatable({}, { __mode = "k" })

-- The transport for this process: see the header.
-- Returns the backend, or nil, message (under nginx, a phase without cosockets).
local function backend()
  local ngx = rawget(_G, "ngx")
  if type(ngx) == "table" and type(ngx.get_phase) == "function" then
    return require("pipedrive.redis_ngx").backend()
  end
  return require "pipedrive.hiredis"
end
M.backend = backend

local function misuse(fmt, ...)
  error(NAME .. ": " .. fmt:format(...), 3)
end

local OPTIONS = {
  host = "string", port = "number", password = "string", db = "number", prefix = "string",
  timeout = "number", url = "string", retry_interval = "number", path = "string",
}

local function is_int(v)
  return type(v) == "number" and compat.math_type(v) == "integer"
end

-- host, port, password, db (and user) from a redis:// URL; raises when it is unusable.
local function from_url(url, o)
  local u, why = core.url_parse(url)
  if not u then misuse("url is not a valid URL (%s)", why) end
  if u.scheme ~= "redis" then misuse("url must use the redis:// scheme") end
  if u.query or u.fragment then misuse("url must not have a query or fragment") end
  local db = 0
  if u.path ~= "/" then
    local d = u.path:match("^/(%d+)$")
    if not d or #d > 9 then misuse("url's path must be a database number (redis://host:port/3)") end
    db = tonumber(d)
  end
  local user, password = nil, nil
  if u.has_userinfo then
    local uerr
    user, password, uerr = core.url_userinfo(url)
    if uerr then misuse("url's user info is malformed") end
    if user == "" then user = nil end
    if password == "" then password = nil end
  end
  local host = u.host
  if host:sub(1, 1) == "[" then host = host:sub(2, -2) end
  o.host, o.port, o.db, o.user, o.password = host, u.port or 6379, db, user, password
end

--- pipedrive.redis(opts) / require("pipedrive.redis").new(opts): the object; raises on misuse.
function M.new(opts)
  if opts == nil then opts = {} end
  if type(opts) ~= "table" then misuse("options must be a table, got %s", type(opts)) end
  for k, v in pairs(opts) do
    local want = OPTIONS[k]
    if not want then misuse("unknown option '%s'", tostring(k)) end
    if type(v) ~= want then misuse("%s must be a %s, got %s", k, want, type(v)) end
  end
  local o = {}
  if opts.url ~= nil then
    for _, k in ipairs({ "host", "port", "password", "db", "path" }) do
      if opts[k] ~= nil then misuse("url and %s cannot be given together", k) end
    end
    from_url(opts.url, o)
  else
    o.host, o.port, o.password, o.db, o.path = opts.host or "127.0.0.1", opts.port or 6379, opts.password,
      opts.db or 0, opts.path
    if opts.path and (opts.host or opts.port) then misuse("path and host/port cannot be given together") end
  end
  if not is_int(o.port) or o.port < 1 or o.port > 65535 then misuse("port must be an integer in 1..65535") end
  if o.host == "" or o.host:find("[%s%c]") then misuse("host must be a host name or address") end
  if not is_int(o.db) or o.db < 0 then misuse("db must be an integer >= 0") end
  if o.password == "" then misuse("password must not be empty") end
  local timeout = opts.timeout or 1
  if not (timeout > 0 and timeout <= 86400) then misuse("timeout must be > 0 (seconds, at most 86400)") end
  local retry_interval = opts.retry_interval or 1
  if not (retry_interval >= 0 and retry_interval <= 86400) then
    misuse("retry_interval must be >= 0 (seconds, at most 86400)")
  end
  local self = setmetatable({ prefix = opts.prefix or "pipedrive:" }, Redis)
  -- the keepalive pool's name under nginx: connections there have done this AUTH and SELECT
  local pool = ("pipedrive.redis:%s:%s:%d:%s"):format(o.path or o.host, o.path and "" or o.port, o.db,
    core.sha256_hex((o.user or "") .. "\0" .. (o.password or "")):sub(1, 16))
  state[self] = {
    host = o.host, port = o.port, path = o.path, db = o.db, user = o.user, password = o.password, pool = pool,
    timeout = timeout, retry_interval = retry_interval,
    conn = nil, loaded = {}, sha = {}, nscripts = 0,
    down_until = nil, down_err = nil, closed = false,
  }
  return self
end

local function st(self, method)
  local s = state[self]
  if not s then error(("%s: %s called without an object (use shared:%s)"):format(NAME, method, method), 3) end
  if s.closed then error(NAME .. ": closed", 3) end
  return s
end

local function where(s)
  return s.path or (s.host:find(":", 1, true) and "[" .. s.host .. "]" or s.host) .. ":" .. s.port
end

local function unavailable(s, stage, message)
  return setmetatable({ kind = "redis_unavailable", stage = stage,
                        message = ("redis %s: %s"):format(where(s), message) }, core.error_mt)
end

local function reply_error(text, command)
  local code = text:match("^([A-Z][A-Z0-9_%-]*)[%s]") or text:match("^([A-Z][A-Z0-9_%-]*)$") or "ERR"
  return setmetatable({ kind = "redis", code = code, message = text, command = command }, core.error_mt)
end

-- Closes `conn` (default: the kept one) and forgets which scripts are loaded.
local function drop(s, conn)
  conn = conn or s.conn
  if conn then conn:close() end
  if conn == s.conn then s.conn = nil end
  s.loaded = {}
end

-- One command on `conn`: reply, or nil, err (the connection is dropped on an
-- I/O failure).
local function send(s, conn, argv)
  local reply, msg, kind = conn:command(argv)
  if reply ~= nil then return reply end
  if kind == "io" then
    drop(s, conn)
    return nil, unavailable(s, "transfer", msg)
  end
  return nil, reply_error(msg, argv[1])
end

-- A connection for one method call, or nil, err: the kept one, or a new one
-- (AUTH, SELECT) unless the last connect failed less than retry_interval ago.
-- Pooled backends give a connection per call (see the header): end the call
-- with finish().
local function connection(s)
  if s.conn and s.conn:forked() then drop(s) end
  if s.conn then return s.conn end
  local b, why = backend()
  if not b then return nil, unavailable(s, "connect", why) end -- the phase, not Redis: no retry_interval
  local now = core.now()
  if s.down_until and now < s.down_until then
    local e = s.down_err
    return nil, setmetatable({ kind = e.kind, stage = e.stage, code = e.code,
                               message = e.message .. " (not retried for " .. s.retry_interval .. " s)" },
                             core.error_mt)
  end
  local conn, msg = b.connect{ host = s.host, port = s.port, path = s.path, timeout = s.timeout, pool = s.pool }
  local err
  if conn then
    if not b.pooled then s.conn = conn end
    if s.password and not conn.reused then
      local argv = s.user and { "AUTH", s.user, s.password } or { "AUTH", s.password }
      err = select(2, send(s, conn, argv))
    end
    if not err and s.db ~= 0 and not conn.reused then
      err = select(2, send(s, conn, { "SELECT", ("%d"):format(s.db) }))
    end
    if err then drop(s, conn) end
  else
    err = unavailable(s, "connect", msg)
  end
  if err then
    if err.stage == "transfer" then err.stage = "connect" end
    s.down_until, s.down_err = now + s.retry_interval, err
    return nil, err
  end
  s.down_until, s.down_err = nil, nil
  return conn, b.pooled
end

-- Commands after which a pooled connection is closed, not pooled: they change
-- its state for whoever takes it next.
local STATEFUL = { SELECT = true, AUTH = true, HELLO = true, RESET = true, MULTI = true, WATCH = true,
                   SUBSCRIBE = true, PSUBSCRIBE = true, SSUBSCRIBE = true, MONITOR = true, CLIENT = true,
                   READONLY = true, READWRITE = true }

-- Ends a method call: a pooled connection goes back to its pool (closed when
-- `keep` is false); the kept one stays. Returns the call's results.
local function finish(conn, pooled, keep, ...)
  if pooled then conn:release(keep) end
  return ...
end

-- A command argument as the string sent: strings as they are, integers in
-- decimal, floats in their shortest round-trip form.
local function arg_string(v, i)
  local t = type(v)
  if t == "string" then return v end
  if t == "number" then
    if v ~= v or v == math.huge or v == -math.huge then misuse("argument %d is not a finite number", i) end
    if compat.math_type(v) == "integer" then return ("%d"):format(v) end
    for prec = 15, 17 do
      local s = ("%." .. prec .. "g"):format(v)
      if tonumber(s) == v or prec == 17 then return s end
    end
  end
  misuse("argument %d must be a string or a number, got %s", i, t)
end

local function run(s, argv, keep)
  local conn, pooled = connection(s)
  if not conn then return nil, pooled end
  return finish(conn, pooled, keep, send(s, conn, argv))
end

--- shared:command(name, ...) -> reply, or nil, err.
function Redis:command(name, ...)
  local s = st(self, "command")
  if type(name) ~= "string" or name == "" then misuse("command name must be a non-empty string") end
  local n = select("#", ...)
  local argv = { name }
  for i = 1, n do argv[i + 1] = arg_string((select(i, ...)), i) end
  return run(s, argv, not STATEFUL[name:upper()])
end

local function append_list(argv, list, what)
  if list == nil then return 0 end
  if type(list) ~= "table" then misuse("eval: %s must be a table", what) end
  local n = #list
  for i = 1, n do
    local ok, v = pcall(arg_string, list[i], i)
    if not ok then misuse("eval: %s[%d] must be a string or a number", what, i) end
    argv[#argv + 1] = v
  end
  return n
end

-- SCRIPT LOAD on `conn`: the sha, or nil, err.
local function load_script(s, conn, script)
  local sha, err = send(s, conn, { "SCRIPT", "LOAD", script })
  if not sha then return nil, err end
  if not s.sha[script] then
    if s.nscripts >= SCRIPTS_MAX then
      s.sha, s.loaded, s.nscripts = {}, {}, 0
    end
    s.nscripts = s.nscripts + 1
  end
  s.sha[script], s.loaded[script] = sha, true
  return sha
end

-- eval's work on one connection (the script loaded when it is not yet).
local function run_script(s, conn, script, argv)
  local sha = s.loaded[script] and s.sha[script]
  local err
  if not sha then
    sha, err = load_script(s, conn, script)
    if not sha then return nil, err end
  end
  argv[2] = sha
  local reply
  reply, err = send(s, conn, argv)
  if reply == nil and err.code == "NOSCRIPT" then
    -- the server lost its scripts (restart, SCRIPT FLUSH): the connection still works
    s.loaded = {}
    sha, err = load_script(s, conn, script)
    if not sha then return nil, err end
    argv[2] = sha
    return send(s, conn, argv)
  end
  return reply, err
end

--- shared:eval(script, keys, args) -> reply, or nil, err: EVALSHA of the script
-- loaded once per connection (under nginx: once per server, while no NOSCRIPT
-- says it was lost); on NOSCRIPT it is loaded again and run once more.
function Redis:eval(script, keys, args)
  local s = st(self, "eval")
  if type(script) ~= "string" or script == "" then misuse("eval: script must be a non-empty string") end
  local argv = { "EVALSHA", false, false }
  argv[3] = ("%d"):format(append_list(argv, keys, "keys"))
  append_list(argv, args, "args")
  local conn, pooled = connection(s)
  if not conn then return nil, pooled end
  return finish(conn, pooled, true, run_script(s, conn, script, argv))
end

--- shared:key(...) -> prefix .. parts joined by ":".
function Redis:key(...)
  st(self, "key")
  local parts = { ... }
  for i = 1, select("#", ...) do
    local v = parts[i]
    if type(v) == "number" then
      parts[i] = arg_string(v, i)
    elseif type(v) ~= "string" then
      misuse("key: part %d must be a string or a number, got %s", i, type(v))
    end
  end
  return self.prefix .. table.concat(parts, ":")
end

--- shared:token_key(secret) -> 32 hex characters naming a credential in keys
-- (a SHA-256 prefix: stable across hosts, says nothing about the secret).
function Redis:token_key(secret)
  st(self, "token_key")
  if type(secret) ~= "string" or secret == "" then misuse("token_key: secret must be a non-empty string") end
  return core.sha256_hex(secret):sub(1, 32)
end

--- shared:now() -> Redis's clock (TIME) in seconds, or nil, err: the one clock all hosts share.
function Redis:now()
  local s = st(self, "now")
  local t, err = run(s, { "TIME" }, true)
  if not t then return nil, err end
  return tonumber(t[1]) + tonumber(t[2]) / 1e6
end

--- shared:close(): drops the connection; idempotent. Every other method raises afterwards.
function Redis:close()
  local s = state[self]
  if not s or s.closed then return true end
  drop(s)
  s.closed = true
  s.password = nil
  return true
end
Redis.__gc = Redis.close
Redis.__close = Redis.close

function Redis:__tostring()
  local s = state[self]
  if not s or s.closed then return NAME .. " (closed)" end
  return ("%s (%s db %d)"):format(NAME, where(s), s.db)
end

-- The stores (token_store, seen) are methods of the class, kept in their own module.
require("pipedrive.redis_stores").attach(Redis)

setmetatable(M, { __call = function(_, opts) return M.new(opts) end })

return M
