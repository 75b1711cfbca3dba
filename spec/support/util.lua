-- Small helpers shared by specs.
local M = {}

--- Calls fn(...) expecting it to raise; returns the error as a string.
function M.raises(fn, ...)
  local ok, msg = pcall(fn, ...)
  assert(not ok, "expected an error")
  return tostring(msg)
end

--- A loopback port nothing listens on now (a redirect URI that must not answer, a port to give a child).
function M.free_port()
  local httpd = require "pipedrive.httpd"
  local srv = assert(httpd.listen{ port = 0, handler = function() return 204, {}, "" end })
  local port = srv:port()
  srv:close()
  return port
end

return M
