--- The call with `field_names` and/or `expand` (pipeline.lua hands a call
-- here only when one of them is on, so calls without them cost what they
-- did): custom fields given by name are turned into hashes before the
-- arguments are checked, the answer's records get their custom fields by
-- name and the related records asked for.
local core = require "pipedrive.core"
local expand = require "pipedrive.expand"
local fields = require "pipedrive.fields"

local type, pairs, ipairs = type, pairs, ipairs

local M = {}

--- The records of an answer `data`: a list, a search's items, or one record.
function M.records(data)
  if type(data) ~= "table" then return {} end
  if data[1] ~= nil or getmetatable(data) == core.array_mt then return data end
  if type(data.items) == "table" then
    local list = {}
    for i, it in ipairs(data.items) do list[i] = type(it) == "table" and it.item or it end
    return list
  end
  return { data }
end

--- Rewrites the records of `data` (answer of `version` for object `kind`):
-- custom fields by name when `named`, relations `names` when given.
-- Returns true or nil, err.
function M.shape(p, kind, version, data, named, names)
  local records = M.records(data)
  if named and kind and #records > 0 then
    local idx, err = fields.get(p, kind)
    if not idx then return nil, err end
    for _, r in ipairs(records) do fields.decode(idx, r) end
  end
  if names and #names > 0 and #records > 0 then
    local ok, err = expand.apply(p, version, names, records)
    if not ok then return nil, err end
  end
  return true
end

--- Splits the options off `args`: returns the arguments left, field_names
-- (boolean), the expand list (or nil), or raises naming the function.
function M.options(p, who, args, level)
  local named, names = p.field_names, nil
  if type(args) ~= "table" or (args.field_names == nil and args.expand == nil) then return args, named, nil end
  local a = {}
  for k, v in pairs(args) do a[k] = v end
  if a.field_names ~= nil then
    if type(a.field_names) ~= "boolean" then error(who .. ": field_names must be a boolean", level + 1) end
    named = a.field_names
  end
  if a.expand ~= nil then
    local list, err = expand.check(a.expand)
    if not list then error(who .. ": " .. err, level + 1) end
    names = list
  end
  a.field_names, a.expand = nil, nil
  return a, named, names
end

--- A webhook event's current and previous reshaped (pd.triggers{ field_names, expand }).
-- Returns true or nil, err.
function M.event(p, ev, named, names)
  local object = ev.object
  local kind = (object == "lead" and "deal") or (fields.KINDS[object] and object) or nil
  for _, which in ipairs({ "current", "previous" }) do
    local r = ev[which]
    if type(r) == "table" then
      -- previous holds only what changed: no relations for it.
      local ok, err = M.shape(p, kind, p.api, r, named and kind ~= nil, which == "current" and names or nil)
      if not ok then return nil, err end
    end
  end
  return true
end

--- One call of `op` with the options on. Returns data, info or nil, err.
function M.call(p, rname, fname, op, args, level)
  local who = ("pipedrive.%s.%s"):format(rname, fname)
  local a, named, names = M.options(p, who, args, level + 1)
  local kind = fields.KIND[rname]
  if named and kind and op.custom_fields and type(a) == "table" and type(a.custom_fields) == "table" then
    local version = p:plan(op).version
    local hashed, err = fields.encode(p, kind, version, a.custom_fields)
    if not hashed then
      if fields.is_misuse(err) then error(who .. ": " .. err.message, level + 1) end
      return nil, err
    end
    local copy = {}
    for k, v in pairs(a) do copy[k] = v end
    copy.custom_fields = hashed
    a = copy
  end
  local data, info = p:call(rname, fname, op, a, level + 1, true)
  if data == nil or op.kind == "delete" or type(data) ~= "table" then return data, info end
  local ok, err = M.shape(p, kind, info.api, data, named and kind ~= nil, names)
  if not ok then return nil, err end
  return data, info
end

return M
