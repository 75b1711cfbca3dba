-- Test helper: run a Lua script as a background process that listens on a
-- port, and stop it again.
--
--   local proc = require "support.process"
--   local p = proc.spawn{
--     script = "spec/support/echo_server.lua",  -- or code = "lua source"
--     args = { "--max-body", "1024" },           -- extra arguments (strings/numbers)
--     env = { NAME = "value" },                  -- extra environment variables
--     timeout = 5,                               -- seconds to wait for the port (default 5)
--     log = "/tmp/x.log",                        -- child's stdout+stderr (default: a temporary file)
--   }
--   p.port, p.pid, p.url ("http://127.0.0.1:PORT"), p:alive(), p:stop()
--   local r = proc.run{ script = "bin/pipedrive", args = { "deals", "list" }, env = {...} }
--   r.code, r.stdout, r.stderr  (a program that runs to completion)
--
-- The child gets `--port-file FILE` as its first two arguments and must write
-- its port there once it is listening; `proc.announce(port_file, port)` does
-- that atomically, and `proc.parse_args(arg)` reads `--name value` pairs.
-- The child inherits this process's package.path and package.cpath (so it
-- finds build/?.so and lua/?.lua like busted does) and runs under $LUA, else
-- lua5.4. spawn raises if no port appears in time (the child is killed and its
-- log is quoted). It is pipedrive.sandbox.spawn.launch with a script. p:stop() sends TERM, then KILL after
-- 2 s, and is idempotent; it also runs when p is garbage collected.
local compat = require "pipedrive.compat"
local spawn = require "pipedrive.sandbox.spawn"

local M = {}

local Process = {}
Process.__index = Process

function Process:alive()
  return not self.stopped and spawn.pid_alive(self.pid)
end

--- Stops the child (TERM, then KILL after `grace` seconds, default 2) and
-- removes the temporary files. Safe to call more than once.
function Process:stop(grace)
  if self.stopped then return end
  self.stopped = true
  self._launched.stop(grace)
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
  local ok, launched = pcall(spawn.launch, {
    argv = function(port_file)
      local argv = { opts.lua or os.getenv("LUA") or "lua5.4", script, "--port-file", port_file }
      for _, a in ipairs(opts.args or {}) do argv[#argv + 1] = tostring(a) end
      return argv
    end,
    env = opts.env, log = opts.log, timeout = opts.timeout or 5, what = script,
  })
  if not ok then
    for _, f in ipairs(tmpfiles) do os.remove(f) end
    error(launched, 2)
  end
  return setmetatable({ pid = launched.pid, port = launched.port, url = launched.url, log = opts.log,
                        _launched = launched, _tmpfiles = tmpfiles }, Process)
end

--- Runs a program to completion (a command-line tool, not a server): the Lua
-- `script` with `args` under $LUA (else lua5.4), with only PATH, HOME, the
-- package paths and `env` in its environment, `stdin` (text) as its input.
-- Returns { code = exit status, stdout = text, stderr = text }.
function M.run(opts)
  local function q(s) return "'" .. tostring(s):gsub("'", [['\'']]) .. "'" end
  local out, err, input = os.tmpname(), os.tmpname(), os.tmpname()
  local f = assert(io.open(input, "wb"))
  f:write(opts.stdin or "")
  f:close()
  local parts = { "env", "-i", q("PATH=" .. (os.getenv("PATH") or "/usr/bin:/bin")), q("HOME=" .. (os.getenv("HOME") or "/")),
                  q("LUA_PATH=" .. package.path), q("LUA_CPATH=" .. package.cpath) }
  local names = {}
  for k in pairs(opts.env or {}) do names[#names + 1] = k end
  table.sort(names)
  for _, k in ipairs(names) do parts[#parts + 1] = q(k .. "=" .. opts.env[k]) end
  parts[#parts + 1] = q(opts.lua or os.getenv("LUA") or "lua5.4")
  parts[#parts + 1] = q(opts.script)
  for _, a in ipairs(opts.args or {}) do parts[#parts + 1] = q(a) end
  local cmd = table.concat(parts, " ") .. " <" .. q(input) .. " >" .. q(out) .. " 2>" .. q(err)
  local code = compat.execute_code(cmd)
  local function slurp(path)
    local h = assert(io.open(path, "rb"))
    local s = h:read("*a")
    h:close()
    os.remove(path)
    return s
  end
  os.remove(input)
  return { code = code, stdout = slurp(out), stderr = slurp(err) }
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
