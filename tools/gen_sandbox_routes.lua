-- Writes lua/pipedrive/sandbox/routes_gen.lua from openapi/openapi-v2.yaml and
-- openapi/openapi-v1.yaml (`make sandbox-routes`; spec/sandbox_routes_spec.lua fails
-- when the committed file is stale).
--
-- The sandbox must start fast and must not need lyaml, so it never reads the YAML:
-- this tool turns every operation into a line of plain Lua data (method, path
-- template, operationId, paging style, required body fields, success status) and
-- every response schema into compact nodes without descriptions or examples,
-- shared between operations when they are equal (the files repeat the same inline
-- schemas many times).
--
-- Node: { t = "o"|"a"|"s"|"i"|"n"|"b"|"x" (any), n = true (nullable), p = { name = node },
--         i = node (items), e = { enum values }, f = format }; a node is an index into S.
-- allOf branches are merged into one object; of oneOf/anyOf the first alternative is kept.
--
-- usage: lua5.4 tools/gen_sandbox_routes.lua [OUT] (default lua/pipedrive/sandbox/routes_gen.lua)
local lyaml = require "lyaml"

local FILES = { { "v2", "openapi/openapi-v2.yaml" }, { "v1", "openapi/openapi-v1.yaml" } }
local METHODS = { "get", "post", "put", "patch", "delete" }
local MAX_DEPTH = 8

local function read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

local function is_null(v) return v == nil or v == lyaml.null end

-- allOf merged (properties, required, nullable); oneOf/anyOf: the first alternative.
local function flatten(s)
  if type(s) ~= "table" then return {} end
  if s.allOf then
    local out = { properties = {}, required = {}, type = s.type, nullable = s.nullable }
    for _, part in ipairs(s.allOf) do
      local f = flatten(part)
      out.type = out.type or f.type
      if f.items then out.items = f.items end
      if f.enum then out.enum = f.enum end
      if f.format then out.format = f.format end
      for k, v in pairs(f.properties or {}) do out.properties[k] = v end
      for _, r in ipairs(f.required or {}) do out.required[#out.required + 1] = r end
      if f.nullable == true then out.nullable = true end
    end
    for k, v in pairs(s.properties or {}) do out.properties[k] = v end
    if next(out.properties) == nil then out.properties = nil end
    return out
  end
  local alt = s.oneOf or s.anyOf
  if alt and alt[1] then
    local f = flatten(alt[1])
    local copy = {}
    for k, v in pairs(f) do copy[k] = v end
    if s.nullable == true then copy.nullable = true end
    return copy
  end
  return s
end

local TYPES = { object = "o", array = "a", string = "s", integer = "i", number = "n", boolean = "b" }

-- Plain Lua text of a value (sorted keys, so equal nodes give equal text).
local KEYWORDS = {}
for w in ("and break do else elseif end false for function goto if in local nil not or repeat return then true"
  .. " until while"):gmatch("%a+") do KEYWORDS[w] = true end

local function ser(v)
  local t = type(v)
  if t == "string" then return ("%q"):format(v) end
  if t == "number" then
    if math.type(v) == "integer" then return tostring(v) end
    return ("%.17g"):format(v)
  end
  if t == "boolean" then return tostring(v) end
  if v == lyaml.null then return "N" end
  local keys = {}
  for k in pairs(v) do keys[#keys + 1] = k end
  table.sort(keys, function(a, b)
    if type(a) == type(b) then return a < b end
    return type(a) == "number"
  end)
  local parts = {}
  local n = #v
  for i = 1, n do parts[#parts + 1] = ser(v[i]) end
  for _, k in ipairs(keys) do
    if not (math.type(k) == "integer" and k >= 1 and k <= n) then
      local key = (type(k) == "string" and k:match("^[%a_][%w_]*$") and not KEYWORDS[k]) and k or ("[" .. ser(tostring(k)) .. "]")
      parts[#parts + 1] = key .. "=" .. ser(v[k])
    end
  end
  return "{" .. table.concat(parts, ",") .. "}"
end

local nodes, index = {}, {}

-- schema -> node index (deduplicated by text).
local function node(s, depth)
  s = flatten(s)
  local out = {}
  local t = s.type
  if is_null(t) then
    if s.properties then t = "object" elseif s.items then t = "array" end
  end
  out.t = TYPES[t] or "x"
  if s.nullable == true then out.n = true end
  if s.format and type(s.format) == "string" then out.f = s.format end
  if type(s.enum) == "table" then
    local e = {}
    for _, v in ipairs(s.enum) do if not is_null(v) then e[#e + 1] = v end end
    if #e > 0 then out.e = e end
  end
  if depth < MAX_DEPTH then
    if out.t == "o" and type(s.properties) == "table" then
      local p, keys = {}, {}
      for k in pairs(s.properties) do keys[#keys + 1] = tostring(k) end
      table.sort(keys) -- nodes are numbered in the order they are met: keep it the same every run
      for _, k in ipairs(keys) do p[k] = node(s.properties[k] or s.properties[tonumber(k)], depth + 1) end
      if next(p) then out.p = p end
    elseif out.t == "a" and type(s.items) == "table" then
      out.i = node(s.items, depth + 1)
    end
  end
  local text = ser(out)
  local id = index[text]
  if not id then
    nodes[#nodes + 1] = text
    id = #nodes
    index[text] = id
  end
  return id
end

local function json_schema(content)
  if type(content) ~= "table" then return nil end
  for _, ct in ipairs{ "application/json", "multipart/form-data", "application/x-www-form-urlencoded" } do
    local c = content[ct]
    if c and c.schema then return c.schema, ct end
  end
end

local function names(list)
  local out = {}
  for _, v in ipairs(list or {}) do out[#out + 1] = tostring(v) end
  table.sort(out)
  return out
end

local ops = {}

for _, file in ipairs(FILES) do
  local version, path = file[1], file[2]
  local doc = lyaml.load(read(path))
  local paths = {}
  for p in pairs(doc.paths) do paths[#paths + 1] = p end
  table.sort(paths)
  for _, p in ipairs(paths) do
    local item = doc.paths[p]
    for _, m in ipairs(METHODS) do
      local op = item[m]
      if op then
        local params = {}
        for _, prm in ipairs(item.parameters or {}) do params[#params + 1] = prm end
        for _, prm in ipairs(op.parameters or {}) do params[#params + 1] = prm end
        local query, path_types = {}, {}
        for _, prm in ipairs(params) do
          if prm["in"] == "query" then query[prm.name] = true end
          if prm["in"] == "path" then
            local ps = flatten(prm.schema or {})
            path_types[prm.name] = (ps.type == "integer" or ps.type == "number") and "i" or "s"
          end
        end
        local paging = (query.cursor and "cursor") or (query.start and "offset") or "none"
        local o = { m = m:upper(), p = p, id = op.operationId, v = version, pg = paging, pt = path_types }
        local body, ct = json_schema(op.requestBody and op.requestBody.content)
        if body then
          local fb = flatten(body)
          local req = names(fb.required)
          if #req > 0 then o.req = req end
          if ct ~= "application/json" then o.ct = ct end
        end
        local codes = {}
        for code in pairs(op.responses or {}) do
          local c = tostring(code)
          if c:match("^2%d%d$") then codes[#codes + 1] = c end
        end
        table.sort(codes)
        if codes[1] then
          o.st = tonumber(codes[1])
          local res = op.responses[codes[1]] or op.responses[tonumber(codes[1])]
          local schema = json_schema(res and res.content)
          if schema then o.r = node(schema, 0) end
        end
        ops[#ops + 1] = o
      end
    end
  end
end

local out = { "-- Generated by tools/gen_sandbox_routes.lua from openapi/openapi-v2.yaml and openapi/openapi-v1.yaml:",
  "-- do not edit (`make sandbox-routes`). The data only: pipedrive.sandbox.generic reads it.",
  "-- ops: m method, p path template, id operationId, v file, pg paging, pt path parameter types,",
  "-- req required body fields, ct body type when not JSON, st success status, r response schema (index into S).",

  "local S = {}" }
for i, text in ipairs(nodes) do out[#out + 1] = ("S[%d]=%s"):format(i, text) end
out[#out + 1] = "local ops = {"
for _, o in ipairs(ops) do out[#out + 1] = ser(o) .. "," end
out[#out + 1] = "}"
out[#out + 1] = "return { S = S, ops = ops }"
local target = arg[1] or "lua/pipedrive/sandbox/routes_gen.lua"
local f = assert(io.open(target, "wb"))
f:write(table.concat(out, "\n"), "\n")
f:close()
io.stderr:write(("%s: %d operations, %d schema nodes\n"):format(target, #ops, #nodes))
