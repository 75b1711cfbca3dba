--- Input checks of the sandbox: query parameters and body fields.
--
-- Every reader raises a `check.failure` (caught by the app and answered as a
-- Pipedrive error body) with a message that names the field:
--   "Validation failed: status: must be one of open, won, lost, deleted, all_not_deleted"
local compat = require "pipedrive.compat"
local json = require "pipedrive.sandbox.json"
local time = require "pipedrive.sandbox.time"

local null = json.null

local M = {}

local Failure = { __name = "pipedrive.sandbox.failure" }
Failure.__index = Failure
Failure.__tostring = function(f) return ("%d %s"):format(f.status, f.message) end
M.Failure = Failure

--- Raises an HTTP error answer. `extra` fields go into the error body.
function M.fail(status, message, extra)
  error(setmetatable({ status = status, message = message, extra = extra }, Failure), 0)
end

function M.is_failure(e)
  return getmetatable(e) == Failure
end

local fail = M.fail

--- 400 "Validation failed: <field>: <what>".
function M.invalid(field, what)
  fail(400, ("Validation failed: %s: %s"):format(field, what))
end
local invalid = M.invalid

------------------------------------------------------------------------------
-- Query parameters (always strings)
------------------------------------------------------------------------------
local Query = {}
Query.__index = Query

--- Wraps a parsed query table.
function M.query(q)
  return setmetatable({ raw = q }, Query)
end

function Query:string(name)
  local v = self.raw[name]
  if v == nil then return nil end
  return v
end

--- An integer parameter; `min`/`max` bound it (max_clamp clamps instead).
function Query:int(name, opts)
  local v = self.raw[name]
  if v == nil or v == "" then return nil end
  local n = v:match("^%s*([+-]?%d+)%s*$") and compat.tointeger(tonumber(v))
  if not n then invalid(name, "must be an integer") end
  opts = opts or {}
  if opts.min and n < opts.min then invalid(name, ("must be at least %d"):format(opts.min)) end
  if opts.max and n > opts.max then invalid(name, ("must be at most %d"):format(opts.max)) end
  if opts.clamp and n > opts.clamp then n = opts.clamp end
  return n
end

--- An id parameter: a positive integer.
function Query:id(name)
  return self:int(name, { min = 1 })
end

local TRUE = { ["true"] = true, ["1"] = true }
local FALSE = { ["false"] = true, ["0"] = true }

function Query:bool(name)
  local v = self.raw[name]
  if v == nil or v == "" then return nil end
  v = v:lower()
  if TRUE[v] then return true end
  if FALSE[v] then return false end
  invalid(name, "must be true or false")
end

local function one_of(list)
  return "must be one of " .. table.concat(list, ", ")
end
M.one_of = one_of

local function in_list(list, v)
  for _, x in ipairs(list) do
    if x == v then return true end
  end
  return false
end
M.in_list = in_list

function Query:enum(name, list, default)
  local v = self.raw[name]
  if v == nil or v == "" then return default end
  if not in_list(list, v) then invalid(name, one_of(list)) end
  return v
end

--- A comma-separated list; `allowed` restricts the elements. Returns an array
-- (nil when absent) and a set.
function Query:list(name, allowed)
  local v = self.raw[name]
  if v == nil or v == "" then return nil end
  local out, set = {}, {}
  for part in v:gmatch("[^,]+") do
    part = part:match("^%s*(.-)%s*$")
    if part ~= "" then
      if allowed and not in_list(allowed, part) then
        invalid(name, ("'%s' is not allowed; %s"):format(part, one_of(allowed)))
      end
      out[#out + 1] = part
      set[part] = true
    end
  end
  return out, set
end

--- A comma-separated list of positive integers.
function Query:ids(name, max)
  local parts = self:list(name)
  if not parts then return nil end
  if max and #parts > max then invalid(name, ("at most %d ids"):format(max)) end
  local set = {}
  for _, p in ipairs(parts) do
    local n = p:match("^%d+$") and compat.tointeger(tonumber(p))
    if not n or n < 1 then invalid(name, "must be a comma-separated list of integer ids") end
    set[n] = true
  end
  return set
end

function Query:time(name)
  local v = self.raw[name]
  if v == nil or v == "" then return nil end
  local t = time.parse_time(v)
  if not t then invalid(name, "must be a time such as 2026-11-28T12:00:00Z") end
  return t
end

------------------------------------------------------------------------------
-- Body fields (JSON values; form bodies give strings, accepted when `lenient`)
------------------------------------------------------------------------------
local Body = {}
Body.__index = Body

--- Wraps a decoded body. `lenient` (API v1) accepts numbers and booleans written as strings.
function M.body(b, lenient)
  return setmetatable({ raw = b, lenient = lenient }, Body)
end

--- The raw value, with JSON null as nil.
function Body:get(name)
  local v = self.raw[name]
  if v == null then return nil end
  return v
end

function Body:has(name)
  return self.raw[name] ~= nil
end

function Body:string(name, opts)
  local v = self:get(name)
  if v == nil then
    if opts and opts.required then invalid(name, "is required") end
    return nil
  end
  if type(v) == "number" and self.lenient then v = tostring(v) end
  if type(v) ~= "string" then invalid(name, "must be a string") end
  if opts and opts.required and not v:find("%S") then invalid(name, "is required") end
  if opts and opts.max and compat.utf8_len(v) and compat.utf8_len(v) > opts.max then
    invalid(name, ("must be at most %d characters"):format(opts.max))
  end
  return v
end

local function to_int(self, v)
  if compat.math_type(v) == "integer" then return v end
  if type(v) == "number" then return compat.tointeger(v) end
  if type(v) == "string" and self.lenient and v:match("^%s*[+-]?%d+%s*$") then return compat.tointeger(tonumber(v)) end
  return nil
end

function Body:int(name, opts)
  local v = self:get(name)
  if v == nil then return nil end
  local n = to_int(self, v)
  if not n then invalid(name, "must be an integer") end
  if opts and opts.min and n < opts.min then invalid(name, ("must be at least %d"):format(opts.min)) end
  return n
end

function Body:id(name)
  return self:int(name, { min = 1 })
end

function Body:number(name, opts)
  local v = self:get(name)
  if v == nil then return nil end
  local n = v
  if type(v) == "string" and (self.lenient or (opts and opts.string_ok)) then
    if v == "" then return nil end
    n = tonumber(v)
  end
  if type(n) ~= "number" or n ~= n or n == math.huge or n == -math.huge then invalid(name, "must be a number") end
  if opts and opts.min and n < opts.min then invalid(name, ("must be at least %s"):format(opts.min)) end
  if opts and opts.max and n > opts.max then invalid(name, ("must be at most %s"):format(opts.max)) end
  return compat.tointeger(n) or n
end

function Body:bool(name)
  local v = self:get(name)
  if v == nil then return nil end
  if type(v) == "boolean" then return v end
  if self.lenient and (type(v) == "string" or type(v) == "number") then
    local s = tostring(v):lower()
    if TRUE[s] then return true end
    if FALSE[s] then return false end
  end
  invalid(name, "must be a boolean")
end

function Body:enum(name, list)
  local v = self:get(name)
  if v == nil then return nil end
  if type(v) == "number" then v = tostring(compat.tointeger(v) or v) end
  if type(v) ~= "string" or not in_list(list, v) then invalid(name, one_of(list)) end
  return v
end

function Body:date(name)
  local v = self:get(name)
  if v == nil then return nil end
  if not time.parse_date(v) then invalid(name, "must be a date in the format YYYY-MM-DD") end
  return v
end

function Body:time(name)
  local v = self:get(name)
  if v == nil then return nil end
  local t = time.parse_time(v)
  if not t then invalid(name, "must be a time such as 2026-11-28 12:00:00 or 2026-11-28T12:00:00Z") end
  return t
end

--- An array of positive integers (a single integer counts as one in lenient mode).
function Body:int_array(name)
  local v = self:get(name)
  if v == nil then return nil end
  if type(v) ~= "table" then
    local n = self.lenient and to_int(self, v)
    if n then return { n } end
    invalid(name, "must be an array of integers")
  end
  local out = {}
  for i, x in ipairs(v) do
    local n = to_int(self, x)
    if not n or n < 1 then invalid(name, "must be an array of integers") end
    out[i] = n
  end
  if next(v) ~= nil and #out == 0 then invalid(name, "must be an array of integers") end
  return out
end

--- visible_to: 1, 3, 5 or 7 (v1 writes it as a string, v2 as an integer).
function Body:visible_to(name)
  local v = self:get(name or "visible_to")
  if v == nil then return nil end
  local n = to_int(self, v)
  if type(v) == "string" and v:match("^[1357]$") then n = tonumber(v) end
  if not n or (n ~= 1 and n ~= 3 and n ~= 5 and n ~= 7) then invalid(name or "visible_to", one_of({ "1", "3", "5", "7" })) end
  return n
end

return M
