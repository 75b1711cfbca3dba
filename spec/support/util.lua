-- Small helpers shared by specs.
local M = {}

--- Calls fn(...) expecting it to raise; returns the error as a string.
function M.raises(fn, ...)
  local ok, msg = pcall(fn, ...)
  assert(not ok, "expected an error")
  return tostring(msg)
end

--- A whole file's bytes, or nil when it cannot be opened (not written yet).
function M.read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
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
