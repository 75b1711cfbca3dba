-- Test helper: Pipedrive's published OpenAPI 3.0.1 files as response contracts.
--
--   local oa = require "support.openapi"
--   local spec = oa.load("openapi-v2.yaml")                       -- parsed once per process ("v2" works too)
--   local schema = oa.response_schema(spec, "/deals", "get", 200)  -- nil, reason when not documented
--   local body = assert(oa.json_decode(text))                     -- keeps 7 (integer) apart from 7.0 (float)
--   local ok, problems = oa.validate(schema, body, spec)
--   -- problems: { '$.data[3].owner_id: expected integer, got string "12"', ... }
--
-- The files are read from $PIPEDRIVE_OPENAPI_DIR, else from <repo>/openapi (vendored, see openapi/README.md).
--
-- Numbers. The schemas tell "integer" from "number", so bodies are decoded with
-- the client's own codec, core.json_decode: a number written without fraction or
-- exponent that fits in 64 bits becomes a Lua integer, any other number a float.
-- "integer" then accepts Lua integers only (7.0 is refused), "number" accepts
-- both. Decoded arrays carry core.array_mt (oa.array_mt is the same table) and
-- oa.json_decode marks decoded objects with oa.object_mt, so an empty [] is not
-- mistaken for {}; JSON null is core.null (oa.null).
-- Validation covers: type, nullable, enum, format (date, date-time, uuid; loosely),
-- properties, required, additionalProperties (allowed unless false), items, allOf
-- (the branches are merged: their properties, required lists and
-- additionalProperties apply together to one object), oneOf and anyOf (at least one
-- alternative must match), minimum/maximum, minLength/maxLength, minItems/maxItems,
-- and $ref to anywhere in the same file ("#/components/schemas/X"), resolved when
-- reached, with $ref chains and allOf loops cut instead of recursed forever.
--
-- Generic handling of the official files' habits (none of them hides a wrong value):
--   * a schema without `type` that has `properties` is taken as an object, one with
--     `items` as an array (the files often leave `type` out of allOf branches);
--   * `nullable: true` next to allOf/oneOf/anyOf makes the whole schema accept null
--     (the usual OpenAPI 3.0 way of writing a nullable $ref);
--   * a property named in UPPER_SNAKE_CASE with an underscore (USER_ID, PERSON_ID,
--     ORGANIZATION_ID, PICTURE_ID ...) is a placeholder for the keys of a map
--     (related_objects.user["123"]), so it validates every key no other property names;
--   * YAML turns unquoted keys such as 128 or 200 into numbers; keys are compared as strings;
--   * where a file contradicts itself, its own example counts: given the response's
--     example (opts.example), a wrong type or null that the example shows at the same
--     place, or an undeclared property it has there, is listed as allowed, not as a
--     problem (e.g. related_objects.user.*.has_pic: integer in the schema, false in the
--     example; v1 deals' additional_data.pagination, in the example only).
local compat = require "pipedrive.compat"
local core = require "pipedrive.core"
local lyaml = require "lyaml"

local M = {}

M.null = core.null
M.array_mt = core.array_mt
M.object_mt = { __name = "openapi.object", __jsontype = "object" }

M.files = {
  v2 = "openapi-v2.yaml",
  v1 = "openapi-v1.yaml",
  ["v1-old"] = "openapi-v1-2026-01-14.yaml",
}

local function is_null(v)
  return v == M.null or v == lyaml.null
end
M.is_null = is_null

---------------------------------------------------------------------------
-- Locating and loading the files
---------------------------------------------------------------------------

-- <repo> is two levels above this file (spec/support/openapi.lua).
local function repo_root()
  local src = debug.getinfo(1, "S").source
  if src:sub(1, 1) ~= "@" then return "." end
  local file = "/" .. src:sub(2):gsub("\\", "/")
  local dir = file:match("^(.*)/spec/support/[^/]+$")
  if dir == nil then return file:sub(2):match("^(.*)/[^/]+$") .. "/../.." end
  return dir == "" and "." or dir:sub(2)
end

function M.dir()
  local env = os.getenv("PIPEDRIVE_OPENAPI_DIR")
  if env and env ~= "" then return (env:gsub("/+$", "")) end
  return repo_root() .. "/openapi"
end

local cache = {}                                   -- file name -> document
local metas = setmetatable({}, { __mode = "k" })   -- document -> { name, file, views }

local function meta(spec)
  local m = metas[spec]
  if not m then
    m = { name = "the document", views = setmetatable({}, { __mode = "k" }) }
    metas[spec] = m
  end
  return m
end

-- oa.load("openapi-v2.yaml" | "v2" | "v1" | "v1-old") -> the parsed document, cached.
function M.load(name)
  name = M.files[name] or name
  if cache[name] then return cache[name] end
  local file = M.dir() .. "/" .. name
  local f, err = io.open(file, "rb")
  if not f then
    error(("cannot read the OpenAPI file %s (%s); set PIPEDRIVE_OPENAPI_DIR to the folder holding it")
      :format(file, tostring(err)), 2)
  end
  local text = f:read("*a")
  f:close()
  local doc = lyaml.load(text)
  if type(doc) ~= "table" or type(doc.paths) ~= "table" then
    error(file .. " is not an OpenAPI document (no paths)", 2)
  end
  local m = meta(doc)
  m.name, m.file = name, file
  cache[name] = doc
  return doc
end

-- The file name a document was loaded from (for messages).
function M.name(spec) return meta(spec).name end

---------------------------------------------------------------------------
-- JSON decoding: core.json_decode, objects marked
---------------------------------------------------------------------------

-- Marks every decoded object (a table without a metatable: arrays carry
-- core.array_mt) with oa.object_mt, so that an empty {} is an object.
local function mark_objects(v)
  if type(v) ~= "table" then return v end
  if getmetatable(v) == nil then setmetatable(v, M.object_mt) end
  for _, x in pairs(v) do mark_objects(x) end
  return v
end

-- oa.json_decode(text) -> value | nil, message
function M.json_decode(text)
  if type(text) ~= "string" then return nil, "JSON: expected a string, got " .. type(text) end
  local v, err = core.json_decode(text)
  if v == nil then return nil, "JSON: " .. tostring(err):gsub("^json_decode: ", "") end
  return mark_objects(v)
end

-- The YAML's own examples in the same value space as decoded JSON (lyaml.null -> oa.null,
-- sequences -> arrays, mappings -> objects with string keys). YAML cannot tell an empty
-- sequence from an empty mapping once parsed, so empty tables stay unmarked ("either").
function M.from_yaml(v)
  if v == lyaml.null then return M.null end
  if type(v) ~= "table" then return v end
  if next(v) == nil then return {} end
  local n, count = #v, 0
  for _ in pairs(v) do count = count + 1 end
  if n > 0 and n == count then
    local a = setmetatable({}, M.array_mt)
    for i = 1, n do a[i] = M.from_yaml(v[i]) end
    return a
  end
  local o = setmetatable({}, M.object_mt)
  for k, x in pairs(v) do o[tostring(k)] = M.from_yaml(x) end
  return o
end

---------------------------------------------------------------------------
-- Finding schemas
---------------------------------------------------------------------------

local function unescape_pointer(seg)
  seg = seg:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end)
  return (seg:gsub("~1", "/"):gsub("~0", "~"))
end

-- Follows a chain of $ref (local "#/..." pointers only). Returns the target or nil, message.
function M.resolve(spec, node)
  local chain
  while type(node) == "table" and node["$ref"] ~= nil do
    local ref = node["$ref"]
    if type(ref) ~= "string" or ref:sub(1, 2) ~= "#/" then
      return nil, "unsupported $ref " .. tostring(ref)
    end
    chain = chain or {}
    if chain[ref] then return nil, "$ref cycle through " .. ref end
    chain[ref] = true
    local target = spec
    for seg in ref:sub(3):gmatch("[^/]+") do
      seg = unescape_pointer(seg)
      if type(target) ~= "table" then target = nil break end
      local nxt = target[seg]
      if nxt == nil and tonumber(seg) then nxt = target[tonumber(seg)] end
      target = nxt
      if target == nil then break end
    end
    if target == nil then return nil, "unresolved $ref " .. ref end
    node = target
  end
  return node
end

local function lookup(t, key)
  if type(t) ~= "table" then return nil end
  local v = t[key]
  if v == nil then v = t[tostring(key)] end
  if v == nil and tonumber(key) then v = t[tonumber(key)] end
  return v
end

-- oa.operation(spec, "/deals/{id}", "GET") -> the operation object | nil, message
function M.operation(spec, path, method)
  local item = lookup(spec.paths, path)
  if item == nil then return nil, ("%s documents no path %s"):format(meta(spec).name, path) end
  local err
  item, err = M.resolve(spec, item)
  if not item then return nil, err end
  local op = item[method:lower()]
  if op == nil then
    return nil, ("%s documents no %s %s"):format(meta(spec).name, method:upper(), path)
  end
  return M.resolve(spec, op)
end

-- oa.response(spec, path, method, status) -> response object, the status key used | nil, message
-- Looks for the exact status, then "4XX"-style ranges, then "default".
function M.response(spec, path, method, status)
  local op, err = M.operation(spec, path, method)
  if not op then return nil, err end
  local responses = op.responses or {}
  local code = tostring(status)
  for _, key in ipairs{ code, code:sub(1, 1) .. "XX", code:sub(1, 1) .. "xx", "default" } do
    local r = lookup(responses, key)
    if r ~= nil then
      local res, rerr = M.resolve(spec, r)
      if not res then return nil, rerr end
      return res, key
    end
  end
  local have = {}
  for k in pairs(responses) do have[#have + 1] = tostring(k) end
  table.sort(have)
  return nil, ("%s documents no %s response for %s %s (it has: %s)")
    :format(meta(spec).name, code, method:upper(), path, table.concat(have, ", "))
end

-- oa.response_schema(spec, path, method, status[, media]) -> schema, example | nil, message
-- media defaults to application/json (a media type with parameters also matches).
function M.response_schema(spec, path, method, status, media)
  local res, err = M.response(spec, path, method, status)
  if not res then return nil, err end
  media = media or "application/json"
  local content = res.content or {}
  local mt = content[media]
  if mt == nil then
    for k, v in pairs(content) do
      if tostring(k):lower():match("^[^;]+") == media then mt = v break end
    end
  end
  if mt == nil or mt.schema == nil then
    return nil, ("%s: %s %s %s has no %s schema"):format(meta(spec).name, method:upper(), path, tostring(status), media)
  end
  local example = mt.example
  if example == nil and type(mt.examples) == "table" then
    local _, first = next(mt.examples)
    first = M.resolve(spec, first)
    example = type(first) == "table" and first.value or nil
  end
  return mt.schema, example
end

---------------------------------------------------------------------------
-- Validation
---------------------------------------------------------------------------

local function kind(v)
  if is_null(v) then return "null" end
  local t = type(v)
  if t == "number" then return compat.math_type(v) == "integer" and "integer" or "number" end
  if t ~= "table" then return t end
  local mt = getmetatable(v)
  if mt == M.array_mt then return "array" end
  if mt == M.object_mt then return "object" end
  if next(v) == nil then return "empty" end -- a hand-made {}: either an empty array or object
  local n, count = compat.rawlen(v), 0
  for _ in pairs(v) do count = count + 1 end
  if n > 0 and n == count then return "array" end
  return "object"
end
M.kind = kind

local TYPE_OK = {
  integer = { integer = true },
  number = { integer = true, number = true },
  string = { string = true },
  boolean = { boolean = true },
  object = { object = true, empty = true },
  array = { array = true, empty = true },
}

local function preview(v)
  local k = kind(v)
  if k == "string" then
    local s = v
    if #s > 40 then s = s:sub(1, 37) .. "..." end
    return (("string %q"):format(s):gsub("\\\n", "\\n"))
  elseif k == "integer" then
    return ("integer %d"):format(v)
  elseif k == "number" then
    local txt = ("%.14g"):format(v)
    if tonumber(txt) ~= v then txt = ("%.17g"):format(v) end
    if not txt:find("[.eEn]") then txt = txt .. ".0" end
    return "number " .. txt
  elseif k == "boolean" then
    return "boolean " .. tostring(v)
  elseif k == "empty" then
    return "empty table"
  end
  return k
end

local function show(v)
  if type(v) == "string" then return ("%q"):format(v) end
  if is_null(v) then return "null" end
  return tostring(v)
end

local function key_path(path, key)
  if key:match("^[%w_%-]+$") then return path .. "." .. key end
  return path .. "[" .. ("%q"):format(key) .. "]"
end

-- UPPER_SNAKE_CASE property names stand for map keys (related_objects.user.USER_ID).
local function placeholder(name)
  return name:match("^[A-Z][A-Z0-9]*_[A-Z0-9_]+$") ~= nil
end

local function declared_type(node)
  local t = node.type
  if t == nil or t == lyaml.null then
    if node.properties ~= nil or node.additionalProperties ~= nil then return "object", true end
    if node.items ~= nil then return "array", true end
    return nil
  end
  return t
end

-- The flattened view of a schema: the node and all its allOf branches (depth first,
-- refs resolved, each node once). Cached per document.
local function view_of(st, node)
  local views = st.meta.views
  local v = views[node]
  if v then return v end
  v = { parts = {}, errors = {} }
  local seen = {}
  local function add(n, from)
    local r, err = M.resolve(st.spec, n)
    if not r then v.errors[#v.errors + 1] = err or ("no schema at " .. from) return end
    if type(r) ~= "table" then
      v.errors[#v.errors + 1] = ("schema at %s is a %s, not an object"):format(from, type(r))
      return
    end
    if seen[r] then return end -- an allOf loop: each schema counts once
    seen[r] = true
    v.parts[#v.parts + 1] = r
    if type(r.allOf) == "table" then
      for i, sub in ipairs(r.allOf) do add(sub, from .. ".allOf[" .. i .. "]") end
    end
  end
  add(node, "schema")
  v.root = v.parts[1]
  views[node] = v
  return v
end

local function accepts_null(st, node, guard)
  local v = view_of(st, node)
  if v.root and v.root.nullable == true then return true end
  guard = guard or {}
  if guard[node] then return true end
  guard[node] = true
  for _, p in ipairs(v.parts) do
    if declared_type(p) and p.nullable ~= true then return false end
    for _, key in ipairs{ "oneOf", "anyOf" } do
      if type(p[key]) == "table" then
        local any = false
        for _, alt in ipairs(p[key]) do
          if accepts_null(st, alt, guard) then any = true break end
        end
        if not any then return false end
      end
    end
  end
  return true
end

local function expected_name(st, node)
  local names, seen = {}, {}
  for _, p in ipairs(view_of(st, node).parts) do
    local t = declared_type(p)
    if t and not seen[t] then seen[t] = true names[#names + 1] = tostring(t) end
  end
  return #names > 0 and table.concat(names, " and ") or "a value"
end

local FORMATS = {
  date = function(s) return s:match("^%d%d%d%d%-%d%d%-%d%d$") ~= nil end,
  ["date-time"] = function(s) return s:match("^%d%d%d%d%-%d%d%-%d%d[Tt ]%d%d:%d%d") ~= nil end,
  uuid = function(s)
    return s:match("^%x%x%x%x%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%x%x%x%x%x%x%x%x$") ~= nil
  end,
}
M.formats = FORMATS

-- "$.data[3].x" -> "$.data[].x"; numeric map keys ("$.related_objects.user.123") -> ".*"
local function normalize(path)
  path = path:gsub("%[%d+%]", "[]")
  path = path:gsub("%.%d+%f[.%[%z]", ".*"):gsub('%["%d+"%]', ".*")
  return path
end
M.normalize_path = normalize

-- normalized path -> { kind = true } for every value in an official example
local function example_index(example)
  local idx = {}
  local function walk(v, path)
    local k = M.kind(v)
    local n = normalize(path)
    idx[n] = idx[n] or {}
    idx[n][k] = true
    if k == "array" then
      for i = 1, #v do walk(v[i], path .. "[" .. (i - 1) .. "]") end
    elseif k == "object" then
      for key, x in pairs(v) do walk(x, key_path(path, tostring(key))) end
    end
  end
  walk(M.from_yaml(example), "$")
  return idx
end

local check

local function problem(st, path, msg)
  st.count = st.count + 1
  if st.allow then
    local reason = st.allow(path, msg)
    if reason then
      st.allowed[#st.allowed + 1] = ("%s: %s (allowed: %s)"):format(path, msg, reason)
      return
    end
  end
  if #st.problems < st.max then
    st.problems[#st.problems + 1] = path .. ": " .. msg
  elseif #st.problems == st.max then
    st.problems[#st.problems + 1] = "... more problems left out"
  end
end

-- A wrong type (or a null) the file's own example shows at the same place is
-- waived: the document contradicts itself there, and the value follows one of its forms.
local function mismatch(st, path, msg, k)
  local seen = st.example_kinds and st.example_kinds[normalize(path)]
  if seen and (seen[k] or (seen.empty and (k == "object" or k == "array"))
      or (k == "empty" and (seen.object or seen.array))) then
    st.allowed[#st.allowed + 1] = ("%s: %s (allowed: the file's own example has a %s here)")
      :format(path, msg, k)
    return
  end
  problem(st, path, msg)
end

local function sub_state(st, path)
  return {
    spec = st.spec, meta = st.meta, problems = {}, allowed = {}, count = 0, max = st.max,
    allow = st.allow, formats = st.formats, visiting = st.visiting, undeclared = st.undeclared,
    example_kinds = st.example_kinds, root = path, real_nulls = st.real_nulls,
  }
end

local function check_alternatives(st, p, key, value, path)
  local alts = p[key]
  if type(alts) ~= "table" or #alts == 0 then return end
  local best
  for i, alt in ipairs(alts) do
    local sub = sub_state(st, path)
    check(sub, alt, value, path)
    if sub.count == 0 then
      for _, a in ipairs(sub.allowed) do st.allowed[#st.allowed + 1] = a end
      return
    end
    -- nearest: an alternative of the right type that failed deeper, then the fewest problems
    if not best or (best.type_miss and not sub.type_miss)
        or (best.type_miss == sub.type_miss and sub.count < best.count) then
      best = sub
      best.index = i
    end
  end
  problem(st, path, ("matches none of the %d %s alternatives; nearest is #%d: %s")
    :format(#alts, key, best.index, table.concat(best.problems, "; ")))
end

local function check_object(st, parts, value, path)
  local props, order, holders, ap_schemas, closed, open, required = {}, {}, {}, {}, false, false, {}
  for _, p in ipairs(parts) do
    if type(p.properties) == "table" then
      for name, sub in pairs(p.properties) do
        name = tostring(name)
        if placeholder(name) then
          holders[#holders + 1] = sub
        else
          if not props[name] then props[name] = {} order[#order + 1] = name end
          table.insert(props[name], sub)
        end
      end
    end
    if type(p.required) == "table" then
      for _, name in ipairs(p.required) do required[#required + 1] = tostring(name) end
    end
    local ap = p.additionalProperties
    if ap == false then
      closed = true
    elseif ap == true then
      open = true
    elseif type(ap) == "table" and ap ~= lyaml.null then
      ap_schemas[#ap_schemas + 1] = ap
    end
  end
  local missing = {}
  for _, name in ipairs(required) do
    if value[name] == nil then missing[name] = true end
  end
  if st.absent then
    table.sort(order)
    for _, name in ipairs(order) do
      if value[name] == nil then st.absent[normalize(key_path(path, name))] = true end
    end
  end
  local keys = {}
  for k in pairs(value) do keys[#keys + 1] = k end
  for name in pairs(missing) do keys[#keys + 1] = name end
  table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
  for _, k in ipairs(keys) do
    local val, name = value[k], tostring(k)
    local child = key_path(path, name)
    if val == nil then
      problem(st, child, "required property missing")
    elseif props[name] then
      for _, sub in ipairs(props[name]) do check(st, sub, val, child) end
    elseif #holders > 0 then
      if #holders == 1 then
        check(st, holders[1], val, child)
      else
        check_alternatives(st, { anyOf = holders }, "anyOf", val, child)
      end
    elseif #ap_schemas > 0 then
      for _, sub in ipairs(ap_schemas) do check(st, sub, val, child) end
    elseif closed then
      problem(st, child, "unexpected property (additionalProperties is false)")
    else
      if st.unknown then st.unknown[normalize(child)] = true end
      -- opts.undeclared = "problem": only objects whose schema names some properties
      if st.undeclared and #order > 0 and not open then
        if st.example_kinds and st.example_kinds[normalize(child)] then
          st.allowed[#st.allowed + 1] = child .. ": property not in the schema (allowed: the file's own example has it)"
        else
          problem(st, child, "property not in the schema")
        end
      end
    end
  end
end

local function check_scalar_rules(st, p, value, k, path)
  if type(p.enum) == "table" and #p.enum > 0 then
    local hit = false
    for _, e in ipairs(p.enum) do
      if e == value or (is_null(e) and is_null(value)) then hit = true break end
    end
    if not hit then
      local shown = {}
      for i, e in ipairs(p.enum) do
        if i > 12 then shown[#shown + 1] = "..." break end
        shown[#shown + 1] = show(e)
      end
      problem(st, path, ("expected one of %s, got %s"):format(table.concat(shown, ", "), preview(value)))
    end
  end
  if k == "string" then
    local f = st.formats and FORMATS[p.format]
    if f and not f(value) then
      problem(st, path, ("expected format %s, got %s"):format(p.format, preview(value)))
    end
    local len = compat.utf8_len(value) or #value
    if tonumber(p.minLength) and len < p.minLength then
      problem(st, path, ("expected at least %d characters, got %d"):format(p.minLength, len))
    end
    if tonumber(p.maxLength) and len > p.maxLength then
      problem(st, path, ("expected at most %d characters, got %d"):format(p.maxLength, len))
    end
  elseif k == "integer" or k == "number" then
    if tonumber(p.minimum) and (value < p.minimum or (p.exclusiveMinimum == true and value == p.minimum)) then
      problem(st, path, ("expected a value >= %s, got %s"):format(show(p.minimum), show(value)))
    end
    if tonumber(p.maximum) and (value > p.maximum or (p.exclusiveMaximum == true and value == p.maximum)) then
      problem(st, path, ("expected a value <= %s, got %s"):format(show(p.maximum), show(value)))
    end
  elseif k == "array" then
    if tonumber(p.minItems) and #value < p.minItems then
      problem(st, path, ("expected at least %d items, got %d"):format(p.minItems, #value))
    end
    if tonumber(p.maxItems) and #value > p.maxItems then
      problem(st, path, ("expected at most %d items, got %d"):format(p.maxItems, #value))
    end
  end
end

function check(st, node, value, path)
  local v = view_of(st, node)
  for _, err in ipairs(v.errors) do problem(st, path, "schema error: " .. err) end
  if not v.root then return end
  -- cycle guard: the same schema for the same value again, without descending, is a loop
  local active = st.visiting[v.root]
  if active and active[value] then return end
  active = active or {}
  st.visiting[v.root] = active
  active[value] = true

  local k = kind(value)
  if k == "null" then
    if not accepts_null(st, node) and st.real_nulls and path ~= st.root then
      st.allowed[#st.allowed + 1] = ("%s: null where the schema does not allow it (allowed: real_nulls,"
        .. " Pipedrive sends null for a property without a value)"):format(path)
    elseif not accepts_null(st, node) then
      mismatch(st, path, ("expected %s, got null (not nullable)"):format(expected_name(st, node)), k)
    end
    active[value] = nil
    return
  end

  -- types first: a value of the wrong type is reported once, and not looked into
  for _, p in ipairs(v.parts) do
    local t = declared_type(p)
    if t then
      local okk = TYPE_OK[t]
      if not okk then
        problem(st, path, ("schema error: unknown type %s"):format(show(t)))
        active[value] = nil
        return
      end
      if not okk[k] then
        if path == st.root then st.type_miss = true end
        mismatch(st, path, ("expected %s, got %s"):format(t, preview(value)), k)
        active[value] = nil
        return
      end
    end
  end

  for _, p in ipairs(v.parts) do check_scalar_rules(st, p, value, k, path) end

  local is_object, is_array = k == "object", k == "array"
  if k == "empty" then
    -- a hand-made {} is whatever the schema expects
    for _, p in ipairs(v.parts) do
      local t = declared_type(p)
      if t == "array" then is_array = true elseif t == "object" then is_object = true end
    end
  end
  if is_object then check_object(st, v.parts, value, path) end
  if is_array then
    for _, p in ipairs(v.parts) do
      if p.items ~= nil then
        for i = 1, #value do check(st, p.items, value[i], path .. "[" .. (i - 1) .. "]") end
      end
    end
  end

  for _, p in ipairs(v.parts) do
    check_alternatives(st, p, "oneOf", value, path)
    check_alternatives(st, p, "anyOf", value, path)
  end
  active[value] = nil
end

-- Builds the allow predicate from { ["$.data[].won_time"] = "reason" }: [] matches any
-- index, * any one key, and a key also covers everything below it.
local function allow_fn(allow)
  if type(allow) == "function" or allow == nil then return allow end
  local pats, keys = {}, {}
  for key in pairs(allow) do keys[#keys + 1] = key end
  table.sort(keys)
  for _, key in ipairs(keys) do
    local reason = allow[key]
    local pat = key:gsub("[%^%$%(%)%%%.%[%]%*%+%-%?]", function(c)
      if c == "*" then return "\1" end
      return "%" .. c
    end)
    pat = pat:gsub("%%%[%%%]", "%%[%%d+%%]"):gsub("\1", "[^.%%[]+")
    pats[#pats + 1] = { pat = "^" .. pat, reason = reason, key = key }
  end
  return function(path)
    for _, e in ipairs(pats) do
      local _, last = path:find(e.pat)
      if last then
        local nxt = path:sub(last + 1, last + 1)
        if nxt == "" or nxt == "." or nxt == "[" then return e.reason, e.key end
      end
    end
  end
end
-- oa.allow_matcher{ ["$.data[].x"] = "reason" } -> function(path) -> reason, key | nil
M.allow_matcher = allow_fn

--- A schema as the every-operation specs build sample requests from it: $refs resolved,
-- allOf branches merged into one object view (type, items, properties, required), and
-- the first alternative of a oneOf/anyOf.
function M.sample_view(spec, s)
  s = M.resolve(spec, s) or s
  if type(s) ~= "table" then return {} end
  if s.allOf then
    local out = { properties = {}, required = {} }
    for _, part in ipairs(s.allOf) do
      local f = M.sample_view(spec, part)
      out.type = out.type or f.type
      out.items = out.items or f.items
      for k, v in pairs(f.properties or {}) do out.properties[k] = v end
      for _, r in ipairs(f.required or {}) do out.required[#out.required + 1] = r end
    end
    return out
  end
  local alt = s.oneOf or s.anyOf
  if alt and alt[1] then return M.sample_view(spec, alt[1]) end
  return s
end

-- A tiny PNG (its signature): person pictures take images only, files take anything.
M.PNG = "\137PNG\r\n\026\n\r\n"

--- A valid value for a schema, for the every-operation specs' sample requests: its
-- example, the first enum value, else one by type and format; a binary string is a file
-- part ({ data = M.PNG, filename, type }), as the client takes files; depth bounds nesting.
function M.sample(spec, s, name, depth)
  s = M.sample_view(spec, s)
  if s.format == "binary" then return { data = M.PNG, filename = "a.png", type = "image/png" } end
  if s.example ~= nil and not M.is_null(s.example) and type(s.example) ~= "table" then return s.example end
  if type(s.enum) == "table" and s.enum[1] ~= nil and not M.is_null(s.enum[1]) then return s.enum[1] end
  local t = s.type
  if t == nil then t = s.properties and "object" or (s.items and "array") or "string" end
  if t == "integer" then return (s.minimum and math.max(1, s.minimum)) or 1 end
  if t == "number" then return (name and name:match("_id$")) and 1 or 1.5 end -- v1 types some ids as number
  if t == "boolean" then return true end
  if t == "array" then
    if depth > 4 or not s.items then return core.array() end
    return core.array({ M.sample(spec, s.items, name, depth + 1) })
  end
  if t == "object" then
    local out = {}
    if depth > 4 then return out end
    for _, r in ipairs(s.required or {}) do
      local ps = s.properties and s.properties[r]
      out[r] = ps and M.sample(spec, ps, r, depth + 1) or "x"
    end
    return out
  end
  if s.format == "date" then return "2026-12-01" end
  if s.format == "date-time" then return "2026-12-01T10:00:00Z" end
  if s.format == "email" or (name and name:find("email")) then return "someone@example.com" end
  if s.format == "uuid" then return "00000000-0000-4000-8000-000000000001" end
  return "Every operation " .. tostring(name or "")
end

--- A sample body (oa.sample) as text of its media type: JSON, form, or multipart where a
-- file part ({ data = M.PNG, ... }) becomes a PNG file part. Returns body, content type.
function M.encode_sample(b, ct)
  if ct == "application/json" then return core.json_encode(b), ct end
  if ct == "application/x-www-form-urlencoded" then
    local parts = {}
    for k, v in pairs(b) do parts[#parts + 1] = core.url_encode(k) .. "=" .. core.url_encode(tostring(v)) end
    table.sort(parts)
    return table.concat(parts, "&"), ct
  end
  local boundary = "everyoperationboundary"
  local parts = {}
  for k, v in pairs(b) do
    if type(v) == "table" and v.data == M.PNG then
      parts[#parts + 1] = ('--%s\r\nContent-Disposition: form-data; name="%s"; filename="a.png"\r\n'
        .. 'Content-Type: image/png\r\n\r\n%s\r\n'):format(boundary, k, M.PNG)
    else
      parts[#parts + 1] = ('--%s\r\nContent-Disposition: form-data; name="%s"\r\n\r\n%s\r\n')
        :format(boundary, k, type(v) == "table" and core.json_encode(v) or tostring(v))
    end
  end
  parts[#parts + 1] = "--" .. boundary .. "--\r\n"
  return table.concat(parts), ct .. "; boundary=" .. boundary
end

-- oa.validate(schema, value, spec[, opts]) -> true | false, problems, allowed
--   opts.allow   = { ["$.data[].won_time"] = "reason" } or function(path, message) -> reason|nil:
--                  matching problems move to the third result instead of failing the check
--   opts.example = the official example of that response (oa.response_schema's second
--                  result): a wrong type or null that the example itself shows at the same
--                  place is moved to the third result (the file contradicts its schema there)
--   opts.undeclared = "problem": a property the object's schema does not name is a problem
--                  (objects with additionalProperties or without any properties excepted,
--                  and, with opts.example, properties the example has at that place)
--   opts.real_nulls = true: a null below the root where the schema does not allow one is
--                  moved to the third result (Pipedrive writes null for any property without
--                  a value, whatever the file says; the sandbox does the same by default)
--   opts.formats = false to ignore `format`
--   opts.max     = most problems listed (default 100)
--   opts.unknown = a table that collects the normalized paths of undeclared properties
--   opts.absent  = a table that collects the normalized paths of declared properties left out
--   opts.path    = the name of the root (default "$")
function M.validate(schema, value, spec, opts)
  if type(schema) ~= "table" then error("oa.validate: the schema must be a table, got " .. type(schema), 2) end
  opts = opts or {}
  spec = spec or {}
  local st = {
    spec = spec, meta = meta(spec), problems = {}, allowed = {}, count = 0,
    max = opts.max or 100, allow = allow_fn(opts.allow), formats = opts.formats ~= false,
    unknown = opts.unknown, absent = opts.absent, visiting = {},
    undeclared = opts.undeclared == "problem",
    example_kinds = opts.example ~= nil and example_index(opts.example) or nil,
    root = opts.path or "$", real_nulls = opts.real_nulls == true,
  }
  if value == nil then
    problem(st, opts.path or "$", "no value")
  else
    check(st, schema, value, opts.path or "$")
  end
  return #st.problems == 0, st.problems, st.allowed
end

return M
