--- Start a sandbox process from Lua (tests, benchmarks, demos) and stop it.
--
--   local sb = require("pipedrive.sandbox.spawn").start{ api_token = "T", args = { "--fixtures", "100" } }
--   -- sb.url ("http://127.0.0.1:PORT"), sb.port, sb.pid, sb.api_token, sb.log
--   sb.stop()
--
-- The child runs this same interpreter (any of Lua 5.1 to 5.4 or LuaJIT;
-- opts.lua overrides) with `-e "require('pipedrive.sandbox.server').main{...}"`,
-- and inherits package.path / package.cpath through LUA_PATH / LUA_CPATH, so it
-- finds the same modules from a checkout and from an installation. It always
-- gets `--exit-after` (default 3600 s) so a forgotten sandbox goes away.
-- start() returns once the child has written its port file, which it does only
-- after the server listens.
--
-- opts: api_token (default "sandbox-token"), args (extra command-line strings),
-- timeout (seconds to wait for the port, default 10), exit_after (default 3600),
-- lua (interpreter), log (file for the child's output; default a temporary file,
-- removed on stop).
local compat = require "pipedrive.compat"
local time = require "pipedrive.sandbox.time"

local M = {}

local function shell_quote(s)
  return "'" .. tostring(s):gsub("'", [['\'']]) .. "'"
end

local sleep = time.sleep

local function read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

-- Gone, or a zombie nobody reaped yet (as happens when PID 1 does not reap).
local function pid_alive(pid)
  local stat = read_file("/proc/" .. pid .. "/stat")
  if stat then
    local state = stat:match("^%d+ %b() (%a)")
    return state ~= nil and state ~= "Z" and state ~= "X"
  end
  return compat.execute("kill -0 " .. pid .. " 2>/dev/null")
end
M.pid_alive = pid_alive

--- The interpreter running this process (lua5.1 .. lua5.4, luajit, or a path to one),
-- found as the lowest arg[-n]; else the Debian name for this version.
function M.interpreter()
  if type(arg) == "table" then
    local i, lowest = -1, nil
    while arg[i] ~= nil do
      lowest = arg[i]
      i = i - 1
    end
    if type(lowest) == "string" and lowest:match("lua[%w%.%-]*$") and not lowest:match("busted") then
      return lowest
    end
  end
  if rawget(_G, "jit") then return "luajit" end
  return "lua" .. _VERSION:match("%d+%.%d+")
end

local function lua_list(items)
  local parts = {}
  for i, s in ipairs(items) do parts[i] = ("%q"):format(tostring(s)) end
  return "{" .. table.concat(parts, ",") .. "}"
end

--- Starts a program in the background and waits until it writes its port.
-- opts: argv (function(port_file) returning the command: interpreter and
-- arguments; the child writes its port to port_file), env (extra variables), log (a file for the
-- child's output; default a temporary one, quoted when the start fails),
-- timeout (seconds, default 10), what (names the program in errors).
-- The child gets this process's package.path and package.cpath. Returns
-- { pid, port, url, log?, stop = function(grace) } (stop: TERM, then KILL after
-- `grace` seconds, default 2; idempotent; also on __gc and __close); raises
-- when no port appears in time or the child exits first.
function M.launch(opts)
  local what = opts.what or "the program"
  local port_file = os.tmpname()
  os.remove(port_file) -- the child's rename makes it appear when the server listens
  local log, own_log = opts.log, false
  if not log then
    log = os.tmpname()
    own_log = true
  end
  local env = { LUA_PATH = package.path, LUA_CPATH = package.cpath }
  for _, v in ipairs({ "5_2", "5_3", "5_4" }) do -- the versioned names win where they apply
    env["LUA_PATH_" .. v], env["LUA_CPATH_" .. v] = package.path, package.cpath
  end
  for k, v in pairs(opts.env or {}) do
    assert(type(k) == "string" and k:match("^[%a_][%w_]*$"), "spawn.launch: bad environment variable name")
    env[k] = tostring(v)
  end
  local names = {}
  for k in pairs(env) do names[#names + 1] = k end
  table.sort(names)
  local parts = { "env" }
  for _, k in ipairs(names) do parts[#parts + 1] = shell_quote(k .. "=" .. env[k]) end
  for _, a in ipairs(opts.argv(port_file)) do parts[#parts + 1] = shell_quote(a) end
  local cmd = table.concat(parts, " ") .. " </dev/null >" .. shell_quote(log) .. " 2>&1 & echo $!"
  local sh = assert(io.popen(cmd, "r"))
  local pid = tonumber(sh:read("*l"))
  sh:close()
  if not pid then error("pipedrive.sandbox.spawn: could not start " .. what, 2) end

  local stopped = false
  local function stop(grace)
    if stopped then return end
    stopped = true
    if pid_alive(pid) then
      os.execute("kill -TERM " .. pid .. " 2>/dev/null")
      local deadline = time.now() + (grace or 2)
      while pid_alive(pid) and time.now() <= deadline do sleep(0.02) end
      if pid_alive(pid) then os.execute("kill -KILL " .. pid .. " 2>/dev/null") end
    end
    os.remove(port_file)
    os.remove(port_file .. ".tmp")
    if own_log then os.remove(log) end
  end

  local timeout = opts.timeout or 10
  local t0 = time.now()
  while true do
    local text = read_file(port_file)
    local port = text and tonumber(text:match("^%s*(%d+)%s*$"))
    if port then
      local p = { url = "http://127.0.0.1:" .. port, port = port, pid = pid,
                  log = not own_log and log or nil, stop = stop }
      return setmetatable(p, { __gc = function() stop() end, __close = function() stop() end })
    end
    local dead = not pid_alive(pid)
    if dead or time.now() - t0 >= timeout then
      local out = read_file(log) or ""
      stop()
      local why = dead and "exited before listening" or ("did not listen within %g s"):format(timeout)
      if out ~= "" then why = why .. ": " .. out:sub(-2000) end
      error(("pipedrive.sandbox.spawn: %s %s"):format(what, why), 2)
    end
    sleep(0.02)
  end
end

--- Starts a sandbox and waits for its port; raises when it does not come up.
function M.start(opts)
  opts = opts or {}
  local api_token = opts.api_token or "sandbox-token"
  local lua = opts.lua or M.interpreter()
  local function argv(port_file)
    local args = { "--port", "0", "--port-file", port_file, "--api-token", api_token,
                   "--exit-after", tostring(opts.exit_after or 3600), "--quiet" }
    for _, a in ipairs(opts.args or {}) do args[#args + 1] = tostring(a) end
    return { lua, "-e", ("os.exit(require('pipedrive.sandbox.server').main(%s))"):format(lua_list(args)) }
  end
  local ok, sb = pcall(M.launch, { argv = argv, log = opts.log, timeout = opts.timeout, what = "the sandbox" })
  if not ok then error(sb, 2) end
  sb.api_token = api_token
  return sb
end

return M
