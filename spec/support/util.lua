-- Small helpers shared by specs.
local M = {}

--- Calls fn(...) expecting it to raise; returns the error as a string.
function M.raises(fn, ...)
  local ok, msg = pcall(fn, ...)
  assert(not ok, "expected an error")
  return tostring(msg)
end

return M
