--- The standalone listener: a pipedrive.httpd server on one path whose
-- requests go to the handler, and the loop that serves it. Misuse raises at
-- `level` (3: the caller of the triggers method).
local core = require "pipedrive.core"
local handler = require "pipedrive.triggers.handler"
local state = require "pipedrive.triggers.state"

local M = {}

local emit = state.emit

-- The path part of a URL ("/" when it has none).
local function url_path(url)
  local u = url and core.url_parse(url)
  return u and u.path or nil
end

-- The URL a listener on host:port/path is reached at from this machine.
local function own_url(host, port, path)
  local shown = host
  if host == "0.0.0.0" then shown = "127.0.0.1" elseif host == "::" then shown = "::1" end
  if shown:find(":") then shown = "[" .. shown .. "]" end
  return ("http://%s:%d%s"):format(shown, port, path)
end

--- Starts listening (see Triggers:listen): port, url or nil, err.
function M.listen(st, opts, level)
  level = level or 3
  opts = opts or {}
  if type(opts) ~= "table" then error("triggers:listen: expected a table of options", level) end
  if st.server then error("triggers:listen: already listening (call triggers:close() first)", level) end
  local path = opts.path or url_path(st.url) or "/"
  if type(path) ~= "string" or path:sub(1, 1) ~= "/" then error("triggers:listen: path must start with '/'", level) end
  local host = opts.host or "127.0.0.1"
  local httpd = require "pipedrive.httpd"
  local srv, err = httpd.listen{
    host = host, port = opts.port or 0, max_body = st.max_body, log_errors = false,
    connection_timeout = opts.connection_timeout, connection_limit = opts.connection_limit,
    request_timeout = opts.request_timeout, per_ip_limit = opts.per_ip_limit,
    handler = function(req)
      if req.path ~= path then return handler.reply(404, { error = "not found" }) end
      return handler.handle(st, req)
    end,
  }
  if not srv then return nil, err end
  st.server, st.path = srv, path
  if not st.url then st.url = own_url(host, srv:port(), path) end
  emit(st, "info", ("listening on %s port %d, path %s"):format(host, srv:port(), path))
  return srv:port(), st.url
end

-- Checks serve's options; returns the timeout and the stop condition.
local function serve_options(opts, level)
  if type(opts) ~= "table" then error("triggers:serve: expected a table of options", level) end
  local timeout = opts.timeout
  if timeout ~= nil and (type(timeout) ~= "number" or timeout < 0) then
    error("triggers:serve: timeout must be a number of seconds", level)
  end
  local stop_when = opts.stop_when or opts["until"]
  if stop_when ~= nil and type(stop_when) ~= "function" then
    error("triggers:serve: stop_when must be a function", level)
  end
  return timeout, stop_when
end

-- Steps the server until stopped, the deadline or stop_when().
local function loop(st, deadline, stop_when)
  local srv = st.server
  while not st.stopping do
    if stop_when and stop_when() then break end
    local wait = 0.05
    if deadline then
      local left = deadline - st.wall()
      if left <= 0 then break end
      if left < wait then wait = left end
    end
    srv:step(wait)
  end
end

--- Serves until stop, timeout or stop_when (see Triggers:serve): true or nil, err.
function M.serve(st, opts, level)
  level = level or 3
  opts = opts or {}
  local timeout, stop_when = serve_options(opts, level + 1)
  if st.serving then error("triggers:serve: already serving (called from a callback?)", level) end
  local own = false
  if not st.server then
    local port, err = M.listen(st, { host = opts.host, port = opts.port, path = opts.path,
                                     connection_timeout = opts.connection_timeout,
                                     connection_limit = opts.connection_limit,
                                     request_timeout = opts.request_timeout,
                                     per_ip_limit = opts.per_ip_limit }, level + 1)
    if not port then return nil, err end
    own = true
  end
  local deadline = timeout and st.wall() + timeout
  st.serving, st.stopping = true, false
  local ok, err = pcall(loop, st, deadline, stop_when)
  st.serving, st.stopping = false, false
  if own then M.close(st) end
  if not ok then error(err, 0) end
  return true
end

--- Stops listening and drops open connections. Idempotent.
function M.close(st)
  if st.server then
    st.server:close()
    st.server = nil
  end
  st.stopping = true
end

return M
