-- Test helper: a real nginx (Debian's nginx + libnginx-mod-http-lua, LuaJIT)
-- with this worktree's modules, for the specs that run the library inside it.
--
--   local nginx = require "support.nginx"
--   if not nginx.available() then pending(nginx.MISSING) return end
--   local srv = nginx.start{ http = "...", server = "...", workers = 2, init = "lua code",
--                            reuseport = true }  -- the kernel spreads connections over the workers
--   srv.base ("http://127.0.0.1:PORT"), srv.port, srv:log() (error.log), srv:stop()
--   nginx.curl_many(urls, { post = body, headers = {...}, h2 = true }) -> { { status, time, body, json } }
--
-- start() builds the LuaJIT modules (build/luajit/), writes nginx.conf in a
-- temporary prefix (lua_package_path: lua/ and spec/ of this worktree; a
-- shared dict `pipedrive`; the internal location of pipedrive.ngx's
-- transport), starts nginx in the foreground and waits for its /ping location. `http` is added to the http block, `server` to the
-- server block (more `listen` lines too).
local core = require "pipedrive.core"
local spawn = require "pipedrive.sandbox.spawn"
local free_port = require("support.util").free_port

local M = {}

M.MODULES = "/usr/lib/nginx/modules"
M.MISSING = "nginx with libnginx-mod-http-lua is not installed (apt-get install nginx libnginx-mod-http-lua)"

local function exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end

local function sh(cmd)
  local p = assert(io.popen(cmd, "r"))
  local out = p:read("*a")
  p:close()
  return out
end
M.sh = sh

local function q(s) return "'" .. tostring(s):gsub("'", [['\'']]) .. "'" end
M.q = q

local nginx_bin = sh("command -v nginx 2>/dev/null"):match("%S+")

--- true when nginx and its Lua module are installed.
function M.available()
  return nginx_bin ~= nil and exists(M.MODULES .. "/ngx_http_lua_module.so")
    and exists(M.MODULES .. "/ndk_http_module.so")
end

--- Several requests at once with curl: one { status, time, body, json } per URL, in order.
-- opts.h2: all over one HTTP/2 connection (so one nginx worker serves them all);
-- opts.post: a body to POST; opts.headers: extra request headers.
function M.curl_many(urls, opts)
  opts = opts or {}
  local dir = os.tmpname()
  os.remove(dir)
  assert(os.execute("mkdir " .. q(dir)))
  local args = { "curl -s --max-time " .. (opts.max_time or 20) .. " -w '%{urlnum} %{http_code} %{time_total}\\n'" }
  if #urls > 1 then args[#args + 1] = opts.h2 and "--parallel" or "--parallel --parallel-immediate" end
  if #urls > 1 then args[#args + 1] = "--parallel-max " .. math.min(#urls, 100) end
  if opts.h2 then args[#args + 1] = "--http2-prior-knowledge" end
  for _, h in ipairs(opts.headers or {}) do args[#args + 1] = "-H " .. q(h) end
  if opts.post then
    local f = assert(io.open(dir .. "/body", "wb"))
    f:write(opts.post)
    f:close()
    args[#args + 1] = "--data-binary @" .. q(dir .. "/body")
  end
  for i, u in ipairs(urls) do args[#args + 1] = ("-o %s %s"):format(q(dir .. "/" .. i), q(u)) end
  local out = sh(table.concat(args, " ") .. " 2>/dev/null")
  local results = {}
  for n, status, t in out:gmatch("(%d+) (%d+) ([%d.]+)") do
    local i = tonumber(n) + 1
    local f = io.open(dir .. "/" .. i, "rb")
    local body = f and f:read("*a") or ""
    if f then f:close() end
    results[i] = { status = tonumber(status), time = tonumber(t), body = body,
                   json = select(2, pcall(core.json_decode, body)) }
  end
  os.execute("rm -rf " .. q(dir))
  return results
end

local Server = {}
Server.__index = Server

--- nginx's error.log so far.
function Server:log()
  return sh("cat " .. q(self.prefix .. "/logs/error.log") .. " 2>/dev/null")
end

--- Stops nginx (QUIT, then KILL) and removes its prefix; idempotent. Returns the final error.log.
function Server:stop()
  if self.stopped then return self.last_log end
  self.stopped = true
  local pid = self.pid
  if pid and spawn.pid_alive(pid) then
    os.execute("kill -QUIT " .. pid)
    for _ = 1, 100 do
      if not spawn.pid_alive(pid) then break end
      os.execute("sleep 0.05")
    end
    if spawn.pid_alive(pid) then os.execute("kill -KILL " .. pid) end
  end
  self.last_log = self:log()
  os.execute("rm -rf " .. q(self.prefix))
  return self.last_log
end

--- Starts nginx; see the header.
function M.start(opts)
  local root = os.getenv("PWD") or "."
  -- the module nginx loads: built for LuaJIT into build/luajit/
  -- (not the MAKEFLAGS of a make that runs this suite: its LUA= would win)
  assert(os.execute("env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL make -s --no-print-directory LUA=luajit all >/dev/null"))
  local prefix = os.tmpname()
  os.remove(prefix)
  assert(os.execute(("mkdir -p %s/logs %s/tmp %s/conf"):format(q(prefix), q(prefix), q(prefix))))
  local self = setmetatable({ prefix = prefix, port = free_port(), root = root }, Server)
  self.base = "http://127.0.0.1:" .. self.port
  local text = ([[
load_module %s/ndk_http_module.so;
load_module %s/ngx_http_lua_module.so;
worker_processes %d;
pid logs/nginx.pid;
error_log logs/error.log notice;
events { worker_connections 256; }
http {
  access_log off;
  client_body_temp_path tmp/body; proxy_temp_path tmp/proxy; fastcgi_temp_path tmp/fastcgi;
  uwsgi_temp_path tmp/uwsgi; scgi_temp_path tmp/scgi;
  lua_package_path "%s/lua/?.lua;%s/lua/?/init.lua;%s/spec/?.lua;;";
  lua_package_cpath "%s/build/luajit/?.so;;";
  lua_shared_dict pipedrive 1m;
  init_by_lua_block { %s }
  %s
  server {
    listen 127.0.0.1:%d%s;
    location = /ping { content_by_lua_block { ngx.print('{"pid":' .. ngx.worker.pid() .. '}') } }
    %s
    include %s/examples/openresty/pipedrive-location.conf;
  }
}
]]):format(M.MODULES, M.MODULES, opts.workers or 2, root, root, root, root, opts.init or "", opts.http or "",
    self.port, opts.reuseport and " reuseport" or "", opts.server or "", root)
  local f = assert(io.open(prefix .. "/conf/nginx.conf", "wb"))
  f:write(text)
  f:close()
  self.pid = tonumber(sh(("%s -p %s -c conf/nginx.conf -g 'daemon off;' </dev/null >%s/logs/stdout 2>&1 & echo $!")
    :format(q(nginx_bin), q(prefix), q(prefix))))
  for _ = 1, 100 do
    local r = M.curl_many({ self.base .. "/ping" })[1]
    if r and r.status == 200 then return self end
    if not spawn.pid_alive(self.pid) then break end
    os.execute("sleep 0.05")
  end
  local why = sh("cat " .. q(prefix .. "/logs/stdout") .. " " .. q(prefix .. "/logs/error.log"))
  self:stop()
  error("nginx did not start: " .. why, 2)
end

return M
