--- pipedrive.redis under OpenResty: the backend that talks to Redis over
-- nginx cosockets, so a command never blocks the worker.
--
-- backend() is called by pipedrive.redis for every command under nginx:
--   * in a phase with cosockets (rewrite, access, content, timers, ssl_*
--     handlers) it gives lua-resty-redis's adapter when `require "resty.redis"`
--     works, else our own RESP2 client below;
--   * in any other phase (init, init_worker, set, log, header_filter,
--     body_filter, balancer...) it gives nil and a message naming the phase:
--     the C module would block the whole worker there, so it is never used.
-- A backend is `connect{ host, port | path, timeout, pool } -> conn | nil, msg`
-- with `conn:command(argv) -> reply | nil, msg, kind ("io" | "reply")`,
-- `conn.reused` (true when the connection came from the keepalive pool: AUTH
-- and SELECT were done by whoever opened it), `conn:release(keep)` (back into
-- the worker's pool named `pool`, or closed when keep is false or the stream
-- is not at a reply boundary), `conn:close()` and `conn:forked()` (always
-- false: nothing here outlives one method call).
--
-- A cosocket belongs to the request (or timer) that made it and must not be
-- touched by another, and two requests of one worker may use the same
-- pipedrive.redis object at once. So a connection is taken from the pool for
-- one method call and given back before it returns; nothing is kept between
-- calls but what is in nginx's keepalive pool.
--
-- Replies map as in the C module: bulk and status strings -> strings,
-- integers -> integers, arrays -> sequences, nil -> false; an error reply
-- (also one nested in an array) fails the command with its text (kind
-- "reply"). Everything read is bounded: a line (status, error, length) at
-- LINE_MAX bytes, a bulk string at BULK_MAX, an array at ARRAY_MAX elements
-- and DEPTH_MAX levels; past a bound the connection is closed (kind "io").
--
-- Requiring this module does nothing with ngx; functions look it up when called.
local compat = require "pipedrive.compat"

local M = {}

local LINE_MAX = 65536
local BULK_MAX = 512 * 1024 * 1024
local ARRAY_MAX = 16 * 1024 * 1024
local DEPTH_MAX = 32
local CHUNK = 16384
local KEEPALIVE_MS = 60000
local ARGS_MAX = 1048576
local COMMAND_MAX = 512 * 1024 * 1024

M.LINE_MAX, M.BULK_MAX, M.ARRAY_MAX, M.DEPTH_MAX = LINE_MAX, BULK_MAX, ARRAY_MAX, DEPTH_MAX

-- The phases in which lua-nginx-module gives cosockets.
local COSOCKET_PHASES = { rewrite = true, access = true, content = true, timer = true, ssl_cert = true,
                          ssl_session_fetch = true, ssl_client_hello = true, preread = true }

local function ngx_table()
  return rawget(_G, "ngx")
end

-- Milliseconds for a cosocket timeout: at least 1.
local function ms(seconds)
  local v = math.floor(seconds * 1000 + 0.5)
  return v < 1 and 1 or v
end

-- connect()'s target: "unix:PATH", or host (an IPv6 address in brackets) and port.
local function target(o)
  if o.path then return "unix:" .. o.path end
  if o.host:find(":", 1, true) then return "[" .. o.host .. "]", o.port end
  return o.host, o.port
end

------------------------------------------------------------------------------
-- Our RESP2 client over ngx.socket.tcp
------------------------------------------------------------------------------
local Conn = {}
Conn.__index = Conn

-- Reads more bytes into the buffer (what is already parsed is dropped first).
local function fill(self)
  local data, err = self.sock:receiveany(CHUNK)
  if not data then return nil, err end
  if self.pos > 1 then
    self.buf = self.buf:sub(self.pos) .. data
    self.pos = 1
  else
    self.buf = self.buf .. data
  end
  return true
end

-- One CRLF-terminated line, without the CRLF; nil, message past LINE_MAX.
local function line(self)
  local scanned = 0 -- bytes after pos known to hold no CRLF (fill may move pos)
  while true do
    local e = self.buf:find("\r\n", self.pos + scanned, true)
    if e then
      local l = self.buf:sub(self.pos, e - 1)
      self.pos = e + 2
      return l
    end
    local have = #self.buf - self.pos + 1
    if have > LINE_MAX then return nil, "a reply line is longer than 64 KiB" end
    scanned = have > 0 and have - 1 or 0 -- a CR may end the buffer
    local ok, err = fill(self)
    if not ok then return nil, err end
  end
end

-- n bytes followed by CRLF (a bulk string's payload).
local function payload(self, n)
  local have = #self.buf - self.pos + 1
  local s
  if have >= n + 2 then
    s = self.buf:sub(self.pos, self.pos + n + 1)
    self.pos = self.pos + n + 2
  else
    local head = self.buf:sub(self.pos)
    self.buf, self.pos = "", 1
    local rest, err = self.sock:receive(n + 2 - have)
    if not rest then return nil, err end
    s = head .. rest
  end
  if s:sub(-2) ~= "\r\n" then return nil, "a bulk string does not end with CRLF" end
  return s:sub(1, n)
end

-- A length or integer line's number: an integer, or nil.
local function integer(text)
  if not text:match("^%-?%d+$") or #text > 20 then return nil end
  return tonumber(text)
end

-- One reply value; nil, message on an I/O or protocol failure (the stream is
-- then unusable). An error reply reads as false and its text is kept in
-- self.failed (the first one), so that the whole reply is consumed.
local function read(self, depth)
  local l, err = line(self)
  if not l then return nil, err end
  local t, rest = l:sub(1, 1), l:sub(2)
  if t == "+" then return rest end
  if t == "-" then
    if not self.failed then self.failed = rest end
    return false
  end
  if t == ":" then
    local n = integer(rest)
    if not n then return nil, "malformed integer reply" end
    return n
  end
  if t == "$" then
    local n = integer(rest)
    if not n or n < -1 then return nil, "malformed bulk length" end
    if n == -1 then return false end
    if n > BULK_MAX then return nil, "a bulk reply is longer than 512 MiB" end
    return payload(self, n)
  end
  if t == "*" then
    local n = integer(rest)
    if not n or n < -1 then return nil, "malformed array length" end
    if n == -1 then return false end
    if n > ARRAY_MAX then return nil, "an array reply has more than 16777216 elements" end
    if depth >= DEPTH_MAX then return nil, "reply nested too deeply" end
    local out = {}
    for i = 1, n do
      local v, verr = read(self, depth + 1)
      if v == nil then return nil, verr end
      out[i] = v
    end
    return out
  end
  return nil, "not a RESP2 reply (type byte " .. ("%q"):format(t) .. ")"
end

-- The command as RESP2 (an array of bulk strings), as a table for sock:send.
local function encode(argv)
  local n = #argv
  if n == 0 or n > ARGS_MAX then error("pipedrive.redis_ngx: 1 to 1048576 arguments expected", 3) end
  local parts, total = { "*" .. n .. "\r\n" }, 0
  for i = 1, n do
    local a = argv[i]
    if type(a) ~= "string" then
      error(("pipedrive.redis_ngx: argument %d is a %s, not a string"):format(i, type(a)), 3)
    end
    total = total + #a
    if total > COMMAND_MAX then error("pipedrive.redis_ngx: command longer than 512 MiB", 3) end
    parts[#parts + 1] = "$" .. #a .. "\r\n"
    parts[#parts + 1] = a
    parts[#parts + 1] = "\r\n"
  end
  return parts
end

--- One command and its reply: reply | nil, message, kind.
function Conn:command(argv)
  local parts = encode(argv)
  if self.closed then return nil, "connection is closed", "io" end
  local sent, err = self.sock:send(parts)
  if not sent then
    self:close()
    return nil, err, "io"
  end
  self.failed = nil
  local v, rerr = read(self, 0)
  if v == nil then
    self:close()
    return nil, rerr, "io"
  end
  if self.failed then
    local text = self.failed
    self.failed = nil
    return nil, text, "reply"
  end
  return v
end

function Conn.forked() return false end

--- Closes the socket; idempotent.
function Conn:close()
  if self.closed then return end
  self.closed = true
  self.sock:close()
end

--- Puts the connection back into the worker's pool (only at a reply
-- boundary, with nothing left unread), or closes it when keep is false.
function Conn:release(keep)
  if self.closed then return end
  if keep == false or self.pos <= #self.buf then return self:close() end
  self.closed = true
  local ok = self.sock:setkeepalive(KEEPALIVE_MS)
  if not ok then self.sock:close() end
end

local Own = { pooled = true }

--- connect{ host, port | path, timeout, pool } -> conn | nil, message.
function Own.connect(o)
  local sock, err = ngx_table().socket.tcp()
  if not sock then return nil, err end
  local t = ms(o.timeout)
  sock:settimeouts(t, t, t)
  local host, port = target(o)
  local ok
  if port then
    ok, err = sock:connect(host, port, { pool = o.pool })
  else
    ok, err = sock:connect(host, { pool = o.pool })
  end
  if not ok then return nil, err end
  local reused = sock:getreusedtimes()
  return setmetatable({ sock = sock, buf = "", pos = 1, reused = (reused or 0) > 0, closed = false }, Conn)
end

------------------------------------------------------------------------------
-- lua-resty-redis, when installed: the same contract over its object
------------------------------------------------------------------------------
local Resty = {}
Resty.__index = Resty

-- lua-resty-redis's own methods: never Redis commands sent through it.
local RESTY_METHODS = { new = true, connect = true, close = true, set_timeout = true, set_timeouts = true,
                        set_keepalive = true, get_reused_times = true, init_pipeline = true,
                        commit_pipeline = true, cancel_pipeline = true, read_reply = true, array_to_hash = true,
                        add_commands = true, hmset = true, subscribe = true, psubscribe = true,
                        unsubscribe = true, punsubscribe = true }

-- A lua-resty-redis reply in our mapping: ngx.null -> false; a nested error
-- ({ false, text }) fails the command. Returns value or nil, text, kind.
local function from_resty(v, null, depth)
  if v == null then return false end
  if type(v) ~= "table" then return v end
  if v[1] == false then return nil, tostring(v[2]), "reply" end
  if depth >= DEPTH_MAX then return nil, "reply nested too deeply", "reply" end
  local out = {}
  for i = 1, #v do
    local x, msg, kind = from_resty(v[i], null, depth + 1)
    if x == nil then return nil, msg, kind end
    out[i] = x
  end
  return out
end

function Resty:command(argv)
  if self.closed then return nil, "connection is closed", "io" end
  local name = argv[1]:lower()
  if RESTY_METHODS[name] then return nil, ("ERR unknown command '%s'"):format(argv[1]), "reply" end
  local res, err = self.red[name](self.red, compat.unpack(argv, 2))
  if res == nil then
    self:close()
    return nil, tostring(err), "io"
  end
  if res == false then return nil, tostring(err), "reply" end
  return from_resty(res, ngx_table().null, 0)
end

function Resty.forked() return false end

function Resty:close()
  if self.closed then return end
  self.closed = true
  self.red:close()
end

function Resty:release(keep)
  if self.closed then return end
  if keep == false then return self:close() end
  self.closed = true
  if not self.red:set_keepalive(KEEPALIVE_MS) then self.red:close() end
end

local function resty_backend(redis)
  return {
    pooled = true,
    connect = function(o)
      local red = redis:new()
      local t = ms(o.timeout)
      red:set_timeouts(t, t, t)
      local host, port = target(o)
      local ok, err
      if port then ok, err = red:connect(host, port, { pool = o.pool })
      else ok, err = red:connect(host, { pool = o.pool }) end
      if not ok then return nil, err end
      return setmetatable({ red = red, reused = (red:get_reused_times() or 0) > 0, closed = false }, Resty)
    end,
  }
end

------------------------------------------------------------------------------
-- The choice
------------------------------------------------------------------------------
local resty -- false when lua-resty-redis is not installed, its backend when it is

--- The backend for the current phase, or nil, message (no cosockets here).
-- opts.own: our RESP client even when lua-resty-redis is installed.
function M.backend(opts)
  local ngx = ngx_table()
  local phase = ngx.get_phase()
  if not COSOCKET_PHASES[phase] then
    return nil, ("nginx's %s phase has no cosockets, and a blocking connection would stall the worker:"
      .. " use Redis from a rewrite/access/content handler or a timer (ngx.timer.at)"):format(phase)
  end
  if opts and opts.own then return Own end
  if resty == nil then
    local ok, m = pcall(require, "resty.redis")
    resty = ok and type(m) == "table" and resty_backend(m) or false
  end
  return resty or Own
end

M.own = Own

return M
