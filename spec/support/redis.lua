-- Test helper: a real redis-server on a free loopback port, for the specs of
-- pipedrive.redis and everything built on it.
--
--   local redis = require "support.redis"
--   if not redis.available() then pending("redis-server or pipedrive.hiredis missing") return end
--   local srv = redis.start()            -- opts: { password = "...", args = { "--maxmemory", "1mb" } }
--   srv.host, srv.port, srv.url ("redis://127.0.0.1:PORT"), srv.password
--   srv:cli("GET", "k")                  -- redis-cli's output (trailing newline removed)
--   srv:pause() / srv:resume()           -- SIGSTOP / SIGCONT: a Redis that stops answering
--   srv:restart()                        -- stopped and started again on the same port, empty
--   srv:stop()                           -- idempotent; also on garbage collection
--
-- The server runs with no persistence (no RDB, no AOF) in a temporary
-- directory of its own, daemonized with a pid file; start raises with its log
-- when it does not answer PING within 5 s. A port another process took
-- between choosing and binding is retried with a new one.
local compat = require "pipedrive.compat"
local core = require "pipedrive.core"
local spawn = require "pipedrive.sandbox.spawn"
local util = require "support.util"

local M = {}

local Server = {}
Server.__index = Server

local function q(s)
  return "'" .. tostring(s):gsub("'", [['\'']]) .. "'"
end

local function capture(cmd)
  local p = assert(io.popen(cmd .. " 2>&1", "r"))
  local out = p:read("*a")
  p:close()
  return (out:gsub("\n$", ""))
end

--- true when redis-server, redis-cli and the C module pipedrive.hiredis are all there.
function M.available()
  if not compat.execute("command -v redis-server >/dev/null 2>&1 && command -v redis-cli >/dev/null 2>&1") then
    return false
  end
  return (pcall(require, "pipedrive.hiredis"))
end

function Server:pid()
  local s = util.read_file(self.dir .. "/redis.pid")
  return s and tonumber(s:match("%d+"))
end

--- redis-cli against this server; returns its output (one reply per line).
function Server:cli(...)
  local cmd = { "redis-cli", "-h", self.host, "-p", self.port }
  if self.password then
    cmd[#cmd + 1] = "--no-auth-warning"
    cmd[#cmd + 1] = "-a"
    cmd[#cmd + 1] = self.password
  end
  for _, a in ipairs({ ... }) do cmd[#cmd + 1] = a end
  for i, a in ipairs(cmd) do cmd[i] = q(a) end
  return capture(table.concat(cmd, " "))
end

local function launch(self)
  os.remove(self.dir .. "/redis.pid")
  local log = self.dir .. "/redis.log"
  local argv = { "redis-server", "--port", self.port, "--bind", self.host, "--save", "", "--appendonly", "no",
                 "--dir", self.dir, "--daemonize", "yes", "--pidfile", self.dir .. "/redis.pid",
                 "--logfile", log, "--protected-mode", "no" }
  if self.password then
    argv[#argv + 1] = "--requirepass"
    argv[#argv + 1] = self.password
  end
  for _, a in ipairs(self.args) do argv[#argv + 1] = a end
  for i, a in ipairs(argv) do argv[i] = q(a) end
  compat.execute(table.concat(argv, " ") .. " >>" .. q(log) .. " 2>&1")
  local deadline = core.now() + 5
  while core.now() < deadline do
    if self:pid() and self:cli("PING") == "PONG" then return true end
    local text = util.read_file(log) or ""
    if text:find("Address already in use", 1, true) then return false, "port" end
    core.sleep(0.02)
  end
  return false, util.read_file(log) or "(no log)"
end

-- Waits until the server's process is gone (after TERM/KILL).
local function wait_gone(pid, seconds)
  local deadline = core.now() + seconds
  while core.now() < deadline do
    if not spawn.pid_alive(pid) then return true end
    core.sleep(0.02)
  end
  return false
end

local function kill(self)
  local pid = self:pid()
  if not pid then return end
  compat.execute("kill -CONT " .. pid .. " 2>/dev/null")
  compat.execute("kill -TERM " .. pid .. " 2>/dev/null")
  if not wait_gone(pid, 3) then
    compat.execute("kill -KILL " .. pid .. " 2>/dev/null")
    wait_gone(pid, 2)
  end
  os.remove(self.dir .. "/redis.pid")
end

--- Starts a server; see the header.
function M.start(opts)
  opts = opts or {}
  local dir = os.tmpname()
  os.remove(dir)
  assert(compat.execute("mkdir -m 700 " .. q(dir)), "support.redis: cannot make " .. dir)
  local self = setmetatable({ host = "127.0.0.1", dir = dir, password = opts.password, args = opts.args or {} },
                            Server)
  local why
  for _ = 1, 10 do
    self.port = util.free_port()
    local ok, w = launch(self)
    if ok then
      self.url = ("redis://%s:%d"):format(self.host, self.port)
      return self
    end
    why = w
    kill(self)
    if w ~= "port" then break end
  end
  compat.execute("rm -rf " .. q(dir))
  error("support.redis: redis-server did not start: " .. tostring(why), 2)
end

function Server:pause()
  assert(compat.execute("kill -STOP " .. assert(self:pid())), "support.redis: SIGSTOP failed")
end

function Server:resume()
  assert(compat.execute("kill -CONT " .. assert(self:pid())), "support.redis: SIGCONT failed")
end

--- Stops the server and starts a new one on the same port (no data survives).
function Server:restart()
  kill(self)
  local deadline = core.now() + 5
  repeat
    local ok, why = launch(self)
    if ok then return self end
    kill(self)
    if why ~= "port" then error("support.redis: restart failed: " .. tostring(why), 2) end
    core.sleep(0.1)
  until core.now() > deadline
  error("support.redis: restart failed: port still in use", 2)
end

--- Stops the server and removes its directory; idempotent.
function Server:stop()
  if self.stopped then return end
  self.stopped = true
  kill(self)
  compat.execute("rm -rf " .. q(self.dir))
end

Server.__gc = Server.stop
Server.__close = Server.stop

--- The server stopped only (the same port stays reserved for restart); for "Redis is down" specs.
function Server:kill()
  kill(self)
end

return M
