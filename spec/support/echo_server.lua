-- A tiny HTTP server for the transport specs, built on pipedrive.httpd and run
-- as a separate process by support.process:
--   lua5.4 spec/support/echo_server.lua --port-file F [--max-body N] [--host H]
--     [--request-timeout S] [--connection-limit N] [--per-ip-limit N]   (httpd.listen's limits)
--
-- Every answer carries `x-echo-method` and `X-Mixed-Case` headers. Routes:
--   /sleep?ms=N      wait N ms, then echo (for client timeouts)
--   /status/NNN      echo with that status
--   /big?n=N         a body of N "x" bytes
--   /error           the handler raises (the server answers 500)
--   /bad-return      the handler returns a non-status (500)
--   /stop            answer, then leave the serve loop and exit
--   /counters        srv:counters() plus `calls` (handler calls before this one), as a Lua table
--   anything else    200 and the request itself as a Lua table constructor:
--                    "return { method = ..., path = ..., raw_path = ..., query_string = ...,
--                    headers = {...}, body = ..., remote_addr = ..., remote_port = ... }"
--                    (load it with an empty environment; see echo_server.decode)
local compat = require "pipedrive.compat"
local httpd = require "pipedrive.httpd"
local proc = require "support.process"

local function serialize(v)
  local t = type(v)
  if t == "string" then return ("%q"):format(v) end
  if t == "number" or t == "boolean" or t == "nil" then return tostring(v) end
  assert(t == "table", "cannot serialize " .. t)
  local keys = {}
  for k in pairs(v) do keys[#keys + 1] = k end
  table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
  local out = {}
  for _, k in ipairs(keys) do out[#out + 1] = ("[%s] = %s"):format(serialize(k), serialize(v[k])) end
  return "{ " .. table.concat(out, ", ") .. " }"
end

local function query_param(qs, name)
  for k, v in qs:gmatch("([^&=]+)=([^&]*)") do
    if k == name then return v end
  end
end

local function main()
  local o = proc.parse_args(arg)
  local srv
  local calls = 0
  local function handler(req)
    if req.path == "/counters" then
      local c = srv.counters and srv:counters() or {} -- an older build has none
      c.calls = calls
      return 200, { ["content-type"] = "text/plain" }, "return " .. serialize(c)
    end
    calls = calls + 1
    local headers = { ["x-echo-method"] = req.method, ["X-Mixed-Case"] = "Yes", ["content-type"] = "text/plain" }
    local status = 200
    if req.path == "/sleep" then
      local ms = tonumber(query_param(req.query_string, "ms")) or 1000
      os.execute(("sleep %.3f"):format(ms / 1000))
    elseif req.path:match("^/status/%d+$") then
      status = tonumber(req.path:match("%d+"))
    elseif req.path == "/big" then
      return 200, headers, ("x"):rep(tonumber(query_param(req.query_string, "n")) or 0)
    elseif req.path == "/error" then
      error("boom from the echo handler")
    elseif req.path == "/bad-return" then
      return "not a status"
    elseif req.path == "/stop" then
      srv:stop()
    end
    return status, headers, "return " .. serialize(req)
  end
  local err
  srv, err = httpd.listen{
    host = o.host or "127.0.0.1", port = 0, handler = handler,
    max_body = tonumber(o.max_body) or 1048576, connection_timeout = 10,
    request_timeout = tonumber(o.request_timeout), connection_limit = tonumber(o.connection_limit),
    per_ip_limit = tonumber(o.per_ip_limit),
  }
  assert(srv, err)
  proc.announce(o.port_file, srv:port())
  srv:run()
  -- Give the answer to /stop a moment to leave before the sockets close.
  for _ = 1, 5 do srv:step(0.02) end
  srv:close()
end

-- Loaded as a module (require "support.echo_server") it only offers decode,
-- for specs that read its answers; run as a script it serves.
if ... == "support.echo_server" then
  return {
    decode = function(body)
      local fn = assert(compat.load(body, "=echo", "t", {}))
      return fn()
    end,
  }
end
main()
