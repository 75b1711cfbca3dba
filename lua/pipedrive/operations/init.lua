--- The operations table: every Pipedrive operation, generated from the vendored
-- OpenAPI files (lua/pipedrive/operations/gen/<resource>.lua, written by
-- tools/gen_operations.lua: `make operations`), with the hand-written overlay
-- (operations/overlay.lua: the original component's parameter names and their
-- v1/v2 translations, leads' archived routing, costs) applied on top.
--
-- A resource's operations are loaded on first use (`operations.notes`), so
-- requiring the library costs the same whatever the number of operations.
--
-- Fields of the table:
--   <resource>       -> { object = ..., <function> = operation } (see overlay.lua's header
--                       for an operation's fields; generated ones add `operation_id`,
--                       `positional`, `multipart`, and `in` / `schema` on parameters)
--   RESOURCES        the original component's resources, in a stable order
--   ALL_RESOURCES    every resource, sorted (index.lua)
--   FUNCTIONS        the standard functions, in the order docs and the CLI show them
--   has(name)        true when `name` is a resource
--   find(operation_id) -> resource, function, operation (nil when unknown)
local index = require "pipedrive.operations.index"

local M = {}

local is_resource = {}
for _, r in ipairs(index) do is_resource[r] = true end

local overlay -- loaded with the first resource: it holds the RESOURCES order

local function get_overlay()
  if not overlay then overlay = require "pipedrive.operations.overlay" end
  return overlay
end

-- The generated operations of `rname` with the overlay's functions on top:
-- an overlay function replaces the generated one's routes and parameters and
-- keeps its operationId (and its v1 or v2 route when the overlay has none but
-- the same path: never the case today, so the overlay's routes are complete).
local function load_resource(rname)
  local gen = require("pipedrive.operations.gen." .. rname)
  local hand = get_overlay()[rname]
  local res = {}
  for k, v in pairs(gen) do res[k] = v end
  if hand then
    for k, v in pairs(hand) do
      if type(v) == "table" and v.kind then
        local g = gen[k]
        if g and g.operation_id and v.operation_id == nil then v.operation_id = g.operation_id end
      end
      res[k] = v
    end
  end
  return res
end

M.ALL_RESOURCES = index
M.FUNCTIONS = { "list", "each", "add", "search", "get", "update", "delete" }

function M.has(name)
  return is_resource[name] == true
end

local ids -- operationId -> "resource.function", loaded by the first find

function M.find(operation_id)
  ids = ids or require "pipedrive.operations.ids"
  local ref = type(operation_id) == "string" and ids[operation_id]
  if not ref then return nil end
  local rname, fname = ref:match("^([%w_]+)%.([%w_]+)$")
  return rname, fname, M[rname][fname]
end

setmetatable(M, {
  __index = function(t, k)
    if k == "RESOURCES" then
      local r = get_overlay().RESOURCES
      rawset(t, k, r)
      return r
    end
    if is_resource[k] then
      local r = load_resource(k)
      rawset(t, k, r)
      return r
    end
  end,
})

return M
