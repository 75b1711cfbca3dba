-- `make docs`: writes docs/REFERENCE.md (see docs/gen/reference.lua).
--   lua5.4 docs/gen/gen_reference.lua [output path]
-- Run from the checkout's root; prints what it documented.
package.path = "docs/gen/?.lua;lua/?.lua;lua/?/init.lua;" .. package.path
local reference = require "reference"

local out = arg and arg[1] or "docs/REFERENCE.md"
local text, stats = reference.generate{ root = "." }
local f = assert(io.open(out, "wb"))
f:write(text)
f:close()
print(("%s: %d functions, %d parameters (%d with an OpenAPI description)")
  :format(out, stats.functions, stats.params, stats.described))
if #stats.missing > 0 then
  io.stderr:write("no description for: ", table.concat(stats.missing, ", "), "\n")
end
