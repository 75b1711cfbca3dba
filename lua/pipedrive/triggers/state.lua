--- The private state of triggers objects and what every part of the package
-- does with it: find it, write a log line with the secrets scrubbed.
--
-- Each triggers object's state (callbacks, options, the webhook password and
-- the Authorization value derived from it, the listener) lives here in a table
-- with weak keys, never in the object the user holds and prints.
local redact = require "pipedrive.redact"

local M = {}

local private = setmetatable({}, { __mode = "k" })

--- Attaches a state to a new triggers object.
function M.bind(self, st)
  private[self] = st
end

--- The state of a triggers object, or a raise naming the misuse (for a method
-- called with a dot, or on something else); `level` as error's, default 3.
function M.of(self, level)
  local st = private[self]
  if not st then error("pipedrive.triggers: expected a triggers object (use triggers:method(...))", level or 3) end
  return st
end

--- The state or nil (tostring must never raise).
function M.peek(self)
  return private[self]
end

--- A text with every secret of the object masked.
function M.scrub(st, text)
  return redact.text(tostring(text), st.secrets, 1)
end

--- One log line: to the user's log function (errors it raises are ignored),
-- else warnings and errors to stderr.
function M.emit(st, level, line)
  line = "pipedrive.triggers: " .. M.scrub(st, line)
  if st.log then
    pcall(st.log, line, level)
  elseif level ~= "info" then
    io.stderr:write(line, "\n")
  end
end

return M
