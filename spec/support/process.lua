-- Test helper: run a Lua script as a background process that listens on a
-- port, and stop it again.
--
--   local proc = require "support.process"
--   local p = proc.spawn{
--     script = "spec/support/echo_server.lua",  -- or code = "lua source"
--     args = { "--max-body", "1024" },           -- extra arguments (strings/numbers)
--     env = { NAME = "value" },                  -- extra environment variables
--     timeout = 5,                               -- seconds to wait for the port (default 5)
--     log = "/tmp/x.log",                        -- child's stdout+stderr (default: inherit stderr)
--   }
--   p.port, p.pid, p.url ("http://127.0.0.1:PORT"), p:alive(), p:stop()
--
-- The child gets `--port-file FILE` as its first two arguments and must write
-- its port there once it is listening; `proc.announce(port_file, port)` does
-- that atomically, and `proc.parse_args(arg)` reads `--name value` pairs.
-- The child inherits this process's package.path and package.cpath (so it
-- finds build/?.so and lua/?.lua like busted does) and runs under $LUA, else
-- lua5.4. spawn raises if no port appears in time (the child is killed and its
-- log, when there is one, is quoted). p:stop() sends TERM, then KILL after
-- 2 s, and is idempotent; it also runs when p is garbage collected.
local M = {}

local function shell_quote(s)
  return "'" .. tostring(s):gsub("'", [['\'']]) .. "'"
end

-- os.execute("sleep") is the only sub-second wait plain Lua has.
local function sleep(seconds)
  os.execute(("sleep %.3f"):format(seconds))
end

local function read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

-- A pid counts as alive unless it is gone or a zombie; zombies matter when
-- nothing reaps orphans (PID 1 in some containers).
local function pid_alive(pid)
  local stat = read_file("/proc/" .. pid .. "/stat")
  if stat then
    local state = stat:match("^%d+ %b() (%a)")
    return state ~= nil and state ~= "Z" and state ~= "X"
  end
  return os.execute("kill -0 " .. pid .. " 2>/dev/null") == true
end

local Process = {}
Process.__index = Process

function Process:alive()
  return not self.stopped and pid_alive(self.pid)
end

--- Stops the child: TERM, then KILL if it is still there after `grace` seconds
-- (default 2). Removes the temporary files. Safe to call more than once.
function Process:stop(grace)
  if self.stopped then return end
  self.stopped = true
  if pid_alive(self.pid) then
    os.execute("kill -TERM " .. self.pid .. " 2>/dev/null")
    local deadline = os.time() + (grace or 2)
    while pid_alive(self.pid) and os.time() <= deadline do sleep(0.02) end
    if pid_alive(self.pid) then os.execute("kill -KILL " .. self.pid .. " 2>/dev/null") end
  end
  for _, f in ipairs(self._tmpfiles) do os.remove(f) end
end

Process.__gc = Process.stop
Process.__close = function(self) self:stop() end
Process.__tostring = function(self)
  return ("process %d (port %s%s)"):format(self.pid, tostring(self.port), self.stopped and ", stopped" or "")
end

--- Starts the child and waits for its port; see the header for `opts`.
function M.spawn(opts)
  assert(type(opts) == "table", "process.spawn: options table expected")
  assert((opts.script == nil) ~= (opts.code == nil), "process.spawn: give exactly one of script or code")
  local tmpfiles = {}
  local script = opts.script
  if opts.code then
    script = os.tmpname()
    tmpfiles[#tmpfiles + 1] = script
    local f = assert(io.open(script, "wb"))
    f:write(opts.code)
    f:close()
  end
  local port_file = os.tmpname()
  tmpfiles[#tmpfiles + 1] = port_file
  os.remove(port_file) -- os.tmpname creates it; the child's rename makes it appear when ready

  local env = {
    LUA_PATH_5_4 = package.path, LUA_PATH = package.path,
    LUA_CPATH_5_4 = package.cpath, LUA_CPATH = package.cpath,
  }
  for k, v in pairs(opts.env or {}) do
    assert(type(k) == "string" and k:match("^[%a_][%w_]*$"), "process.spawn: bad environment variable name")
    env[k] = tostring(v)
  end
  local parts = { "env" }
  local names = {}
  for k in pairs(env) do names[#names + 1] = k end
  table.sort(names)
  for _, k in ipairs(names) do parts[#parts + 1] = shell_quote(k .. "=" .. env[k]) end
  parts[#parts + 1] = shell_quote(opts.lua or os.getenv("LUA") or "lua5.4")
  parts[#parts + 1] = shell_quote(script)
  parts[#parts + 1] = "--port-file"
  parts[#parts + 1] = shell_quote(port_file)
  for _, a in ipairs(opts.args or {}) do parts[#parts + 1] = shell_quote(a) end
  local redirect = " </dev/null 1>&2"
  if opts.log then redirect = " </dev/null >" .. shell_quote(opts.log) .. " 2>&1" end

  local sh = assert(io.popen(table.concat(parts, " ") .. redirect .. " & echo $!", "r"))
  local pid = tonumber(sh:read("l"))
  sh:close()
  assert(pid, "process.spawn: could not start " .. script)

  local p = setmetatable({ pid = pid, port_file = port_file, log = opts.log, _tmpfiles = tmpfiles }, Process)
  local timeout = opts.timeout or 5
  local t0 = os.time()
  local waited = 0
  while true do
    local text = read_file(port_file)
    local port = text and tonumber(text:match("^%s*(%d+)%s*$"))
    if port then
      p.port = port
      p.url = "http://127.0.0.1:" .. port
      return p
    end
    local dead = not pid_alive(pid)
    -- os.time() has 1 s resolution; count the sleeps too so the wait is not cut short.
    if dead or (waited >= timeout and os.time() - t0 >= timeout) then
      p:stop()
      local why = dead and "exited before announcing a port" or ("announced no port within %g s"):format(timeout)
      local tail = opts.log and read_file(opts.log)
      if tail and #tail > 0 then why = why .. "; log:\n" .. tail:sub(-2000) end
      error(("process.spawn: %s %s"):format(script, why), 2)
    end
    sleep(0.02)
    waited = waited + 0.02
  end
end

--- For the child: parse `--name value` pairs from `argv` (default: the global
-- arg) into a table; names keep their dashes stripped: --port-file -> port_file.
function M.parse_args(argv)
  argv = argv or arg or {}
  local out, i = {}, 1
  while i <= #argv do
    local name = argv[i]:match("^%-%-([%w%-_]+)$")
    assert(name, "unexpected argument " .. tostring(argv[i]))
    out[name:gsub("%-", "_")] = argv[i + 1]
    i = i + 2
  end
  return out
end

--- For the child: tell the parent it is listening on `port`. Written to a
-- temporary name and renamed, so the parent never reads half a line.
function M.announce(port_file, port)
  if not port_file then return end
  local tmp = port_file .. ".tmp"
  local f = assert(io.open(tmp, "wb"))
  f:write(("%d\n"):format(port))
  f:close()
  assert(os.rename(tmp, port_file))
end

return M
