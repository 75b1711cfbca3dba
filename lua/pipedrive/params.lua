--- Checks a call's arguments against its operation in `pipedrive.operations` and
-- translates them into what one API version expects.
--
-- Nothing here sends anything: a bad argument is reported before any request,
-- so it cannot change data in Pipedrive. Problems come back as a message; the
-- caller raises it naming the function.
local compat = require "pipedrive.compat"
local core = require "pipedrive.core"

local null, array = core.null, core.array
local mtype, tointeger = compat.math_type, compat.tointeger

local M = {}

local UUID = "^%x%x%x%x%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%x%x%x%x%x%x%x%x$"
local CUSTOM_FIELD_KEY = "^" .. ("%x"):rep(40) .. "$"

local function as_id(v)
  local i
  if mtype(v) == "integer" then
    i = v
  elseif type(v) == "number" then
    i = tointeger(v)
  elseif type(v) == "string" and v:match("^%d+$") and #v < 19 then
    i = tointeger(tonumber(v))
  end
  if i and i > 0 then return i end
end

local function describe(v)
  if type(v) == "string" then
    return ("'%s'"):format(#v > 40 and v:sub(1, 37) .. "..." or v)
  end
  return v == null and "pipedrive.null" or type(v)
end

local function list_of(v, check, what)
  if type(v) ~= "table" then return nil, "an array of " .. what end
  local out, n = array(), 0
  for k in pairs(v) do
    if mtype(k) ~= "integer" or k < 1 then return nil, "an array of " .. what end
    n = n + 1
  end
  for i = 1, n do
    local x = v[i]
    if x == nil then return nil, "an array of " .. what .. " without holes" end
    local y = check(x)
    if y == nil then return nil, "an array of " .. what .. " (item " .. i .. " is " .. describe(x) .. ")" end
    out[i] = y
  end
  return out
end

-- A person's email or phone: a string, or an array of strings or of
-- { value, primary, label } tables. Always sent as an array, even an empty one.
local function contact(x)
  if type(x) == "string" then return { value = x } end
  if type(x) ~= "table" or type(x.value) ~= "string" then return nil end
  local c = { value = x.value }
  for k, v in pairs(x) do
    if k == "primary" then
      if type(v) ~= "boolean" then return nil end
      c.primary = v
    elseif k == "label" then
      if type(v) ~= "string" then return nil end
      c.label = v
    elseif k ~= "value" then
      return nil
    end
  end
  return c
end

-- A value against a compact JSON schema ({ type, enum, items, properties,
-- required }, as tools/gen_operations.lua writes it). Returns the value (arrays
-- marked as JSON arrays) or nil, message naming the field path `where`.
local MAX_DEPTH = 16
local function validate(schema, v, where, depth)
  if v == null then return null end
  if depth > MAX_DEPTH then return nil, ("field '%s' is nested too deeply"):format(where) end
  local t = schema.type
  local bad
  if t == "integer" then
    if not (type(v) == "number" and tointeger(v)) then bad = "an integer" end
  elseif t == "number" then
    if type(v) ~= "number" then bad = "a number" end
  elseif t == "string" then
    if type(v) ~= "string" then bad = "a string" end
  elseif t == "boolean" then
    if type(v) ~= "boolean" then bad = "a boolean" end
  elseif t == "array" then
    if type(v) ~= "table" then
      bad = "an array"
    else
      local n = 0
      for k in pairs(v) do
        if mtype(k) ~= "integer" or k < 1 then return nil, ("field '%s' must be an array"):format(where) end
        n = n + 1
      end
      local out = array()
      for i = 1, n do
        if v[i] == nil then return nil, ("field '%s' must be an array without holes"):format(where) end
        local x = v[i]
        if schema.items then
          local err
          x, err = validate(schema.items, x, ("%s[%d]"):format(where, i), depth + 1)
          if x == nil then return nil, err end
        end
        out[i] = x
      end
      return out
    end
  elseif t == "object" then
    if type(v) ~= "table" then
      bad = "a table"
    else
      local out = {}
      local props = schema.properties
      for k, x in pairs(v) do
        if type(k) ~= "string" then return nil, ("field '%s' must have string keys"):format(where) end
        local ps = props and props[k]
        if ps then
          local y, err = validate(ps, x, where .. "." .. k, depth + 1)
          if y == nil then return nil, err end
          x = y
        end
        out[k] = x
      end
      for _, r in ipairs(schema.required or {}) do
        if v[r] == nil then return nil, ("field '%s.%s' is required"):format(where, r) end
      end
      return out
    end
  end
  if bad then return nil, ("field '%s' must be %s, got %s"):format(where, bad, describe(v)) end
  if schema.enum then
    local s = tostring(v)
    for _, e in ipairs(schema.enum) do
      if tostring(e) == s then return v end
    end
    local shown = {}
    for i, e in ipairs(schema.enum) do shown[i] = tostring(e) end
    return nil, ("field '%s' must be one of %s, got '%s'"):format(where, table.concat(shown, ", "), s)
  end
  return v
end

-- Each checker returns the normalised value, or nil and what was expected.
local checkers = {
  any = function(v) return v end,
  array = function(v) return list_of(v, function(x) return x end, "values") end,
  id = function(v) return as_id(v), "a positive integer id" end,
  uuid = function(v)
    if type(v) == "string" and v:match(UUID) then return v end
    return nil, "a lead id (a UUID string)"
  end,
  integer = function(v)
    local i = (type(v) == "number" or type(v) == "string") and tointeger(tonumber(v))
    return i or nil, "an integer"
  end,
  number = function(v)
    local n = tonumber(v)
    if n and n == n and n ~= math.huge and n ~= -math.huge and (type(v) == "number" or v:match("^%s*[-+]?[%d.]+%s*$")) then
      return tointeger(n) or n
    end
    return nil, "a number"
  end,
  boolean = function(v)
    if type(v) == "boolean" then return v end
    if v == 0 or v == 1 then return v == 1 end
    return nil, "a boolean"
  end,
  string = function(v) return type(v) == "string" and v or nil, "a string" end,
  scalar = function(v)
    if type(v) == "string" or type(v) == "number" then return v end
    return nil, "a string or a number"
  end,
  date = function(v)
    if type(v) == "string" and v:match("^%d%d%d%d%-%d%d%-%d%d$") then return v end
    return nil, "a date 'YYYY-MM-DD'"
  end,
  -- Query arrays (deal_ids, fields...): items are strings or integers (the
  -- files type several as arrays of integer ids), sent comma-joined.
  list = function(v)
    if type(v) == "string" then return v end
    local l = list_of(v, function(x)
      if type(x) == "string" then return x end
      local i = type(x) == "number" and tointeger(x)
      return i and tostring(i) or nil
    end, "strings or integers")
    return l and table.concat(l, ","), "a string or an array of strings or integers"
  end,
  ids = function(v)
    if type(v) == "string" then
      local out = array()
      for part in v:gmatch("[^,]+") do
        local id = as_id(part:match("^%s*(.-)%s*$"))
        if not id then return nil, "an array of positive integer ids" end
        out[#out + 1] = id
      end
      return out
    end
    return list_of(v, as_id, "positive integer ids")
  end,
  uuids = function(v)
    return list_of(v, function(x) return type(x) == "string" and x:match(UUID) and x or nil end, "UUID strings")
  end,
  object = function(v) return type(v) == "table" and v or nil, "a table" end,
  string_or_object = function(v)
    if type(v) == "string" or type(v) == "table" then return v end
    return nil, "a string or a table"
  end,
  contacts = function(v)
    if type(v) == "string" then return array({ { value = v, primary = true } }) end
    return list_of(v, contact, "strings or { value, primary, label } tables")
  end,
  -- A multipart file part (pipeline.lua sends the call as multipart/form-data):
  -- { path = "a.pdf" } or { data = "...", filename = "a.pdf" }, optional type.
  file = function(v)
    local what = "{ path = file } or { data = string, filename = string } (optional type)"
    if type(v) ~= "table" or (type(v.path) == "string") == (type(v.data) == "string") then return nil, what end
    for k, x in pairs(v) do
      if (k ~= "path" and k ~= "data" and k ~= "filename" and k ~= "type") or type(x) ~= "string" then
        return nil, what
      end
    end
    if v.data and not v.filename then return nil, what end
    return v
  end,
  money = function(v)
    if type(v) == "table" and type(v.amount) == "number" and type(v.currency) == "string" then
      for k in pairs(v) do
        if k ~= "amount" and k ~= "currency" then return nil, "{ amount = number, currency = string }" end
      end
      return { amount = v.amount, currency = v.currency }
    end
    return nil, "{ amount = number, currency = string }"
  end,
}

local function in_enum(enum, v)
  local s = tostring(v)
  for _, e in ipairs(enum) do
    if e == s then return true end
  end
  return false
end

-- Checks one value against its spec; returns the normalised value or nil, message.
local function check(name, spec, v)
  if v == null then
    if spec.required then return nil, ("field '%s' is required and cannot be null"):format(name) end
    return null
  end
  if spec.schema then return validate(spec.schema, v, name, 1) end
  local checker = checkers[spec.type]
  local out, expected = checker(v)
  if out == nil then
    return nil, ("field '%s' must be %s, got %s"):format(name, expected, describe(v))
  end
  if spec.enum then
    local items = spec.type == "list" and out or tostring(out)
    for item in items:gmatch("[^,]+") do
      if not in_enum(spec.enum, item) then
        return nil, ("field '%s' must be one of %s, got '%s'"):format(name, table.concat(spec.enum, ", "), item)
      end
    end
  end
  if type(out) == "string" then
    local len = compat.utf8_len(out) or #out
    if spec.min_len and len < spec.min_len then
      return nil, ("field '%s' must have at least %d characters"):format(name, spec.min_len)
    end
    if spec.max_len and len > spec.max_len then
      return nil, ("field '%s' must have at most %d characters"):format(name, spec.max_len)
    end
  elseif type(out) == "number" then
    if spec.min and out < spec.min then return nil, ("field '%s' must be at least %d"):format(name, spec.min) end
    if spec.max and out > spec.max then return nil, ("field '%s' must be at most %d"):format(name, spec.max) end
  end
  return out
end

local function put(out, key, value, from)
  local old = out[key]
  if old ~= nil and old ~= value then
    return ("fields '%s' and '%s' both set '%s'; give one"):format(from, key, key)
  end
  out[key] = value
end

-- The names of an operation's required parameters, computed once per
-- operation table (operations.lua is never re-read per call).
local required_of = setmetatable({}, { __mode = "k" })
local function required(params)
  local list = required_of[params]
  if not list then
    list = {}
    for name, spec in pairs(params) do
      if spec.required or spec.required_in then list[#list + 1] = name end
    end
    table.sort(list)
    required_of[params] = list
  end
  return list
end

--- For an operation whose one required argument is a path parameter of type
-- id or uuid, and nothing else is demanded (no require_one): its name and a
-- function giving the checked value of that argument alone, or nil when it
-- is wrong (then `translate` says why). nil for any other operation.
-- pipeline.lua uses it so that get(5) skips the general translation.
function M.path_only(op)
  local req = required(op.params)
  if #req ~= 1 or op.require_one or op.params[req[1]].required_in then return nil end
  local name = req[1]
  local spec = op.params[name]
  if not spec.path or (spec.type ~= "id" and spec.type ~= "uuid") or spec.enum or spec.min or spec.max
    or spec.min_len or spec.max_len then
    return nil
  end
  local checker = checkers[spec.type]
  return name, function(v)
    if v == null then return nil end
    return (checker(v))
  end
end

--- Whether `op` in `version` sends a body: every method but GET and DELETE,
-- and DELETE when a parameter is marked in = "body"; not a generated operation
-- whose every parameter is in the path or the query (the file gives it no
-- request body: POST /deals/{id}/duplicate sends none, not "{}"). Cached per
-- operation.
local body_of = setmetatable({}, { __mode = "k" })
function M.sends_body(op, version)
  local cached = body_of[op]
  if cached == nil then
    cached = {}
    for _, v in ipairs({ "v1", "v2" }) do
      local r = op[v]
      if r then
        local b = r.method ~= "GET" and r.method ~= "DELETE"
        if b and op.operation_id and not op.custom_fields then
          local any = false
          for _, spec in pairs(op.params) do
            if spec["in"] ~= "path" and spec["in"] ~= "query" then any = true end
          end
          b = any
        end
        if r.method == "DELETE" then
          for _, spec in pairs(op.params) do
            if spec["in"] == "body" then b = true end
          end
        end
        cached[v] = b
      end
    end
    body_of[op] = cached
  end
  return cached[version] == true
end

--- Translates `args` for `op` in `version` ("v1" or "v2").
-- Returns out (query or body fields), route = { path_params, path?, cost?, query? }
-- or nil, message when the arguments are wrong. `route.query` holds the
-- parameters marked in = "query" of an operation that sends a body.
function M.translate(op, version, args)
  if args == nil then args = {} end
  if type(args) ~= "table" then return nil, "expected a table of arguments, got " .. type(args) end
  local params = op.params
  local out, route = {}, { path_params = {} }
  local keys, n = {}, 0
  for k in pairs(args) do
    if type(k) ~= "string" then return nil, "argument keys must be strings, got " .. describe(k) end
    n = n + 1
    keys[n] = k
  end
  if n > 1 then table.sort(keys) end
  for _, k in ipairs(keys) do
    local v, spec = args[k], params[k]
    if spec then
      local value, err = check(k, spec, v)
      if value == nil then return nil, err end
      local map = spec[version]
      if map == false then
        return nil, ("field '%s' is not available in API %s: %s"):format(k, version, spec.hint or "")
      elseif spec.path then
        route.path_params[k] = value
      elseif spec.whole then
        route.whole = value
      elseif spec["in"] == "query" and M.sends_body(op, version) then
        route.query = route.query or {}
        route.query[k] = value
      elseif type(map) == "function" then
        if value == null then
          err = put(out, k, null, k)
        else
          err = map(value, out, args, route)
        end
      else
        err = put(out, map or k, value, k)
      end
      if err then return nil, err end
    elseif op.custom_fields and (k:match(CUSTOM_FIELD_KEY) or k == "custom_fields") then
      local fields = k == "custom_fields" and v or { [k] = v }
      if type(fields) ~= "table" then return nil, "field 'custom_fields' must be a table" end
      local target = out
      if version == "v2" then
        out.custom_fields = out.custom_fields or {}
        target = out.custom_fields
      end
      for ck, cv in pairs(fields) do
        if type(ck) ~= "string" then return nil, "custom field keys must be strings" end
        target[ck] = cv
      end
    else
      return nil, ("unknown field '%s'"):format(k)
    end
  end
  local req = required(params)
  for i = 1, #req do
    local name = req[i]
    if args[name] == nil and (params[name].required or params[name].required_in == version) then
      return nil, ("field '%s' is required"):format(name)
    end
  end
  if params.term and args.term and args.exact_match ~= true and (compat.utf8_len(args.term) or #args.term) < 2 then
    return nil, "field 'term' must have at least 2 characters (1 with exact_match = true)"
  end
  if op.require_one then
    local any = false
    for _, name in ipairs(op.require_one[1]) do
      if args[name] ~= nil and args[name] ~= null then any = true end
    end
    if not any then return nil, op.require_one[2] end
  end
  if route.whole ~= nil then out = route.whole end
  return out, route
end

--- The parameter names an operation accepts, sorted (for error messages and docs).
function M.names(op)
  local names = {}
  for k in pairs(op.params) do names[#names + 1] = k end
  table.sort(names)
  return names
end

return M
