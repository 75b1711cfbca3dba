--- Generates the operations table from Pipedrive's vendored OpenAPI files.
--
-- Reads openapi/openapi-v2.yaml and openapi/openapi-v1.yaml (today's v1) and
-- writes, per resource, lua/pipedrive/operations/gen/<resource>.lua, plus
-- lua/pipedrive/operations/index.lua (the resource names) and
-- lua/pipedrive/operations/ids.lua (operationId -> "resource.function").
-- The hand-written part (lua/pipedrive/operations/overlay.lua) is applied at
-- run time by lua/pipedrive/operations/init.lua, not here.
--
-- Usage: lua5.4 tools/gen_operations.lua [root]      (writes the files)
--        require-able: generate(root) -> { [relative path] = text }, notes
--
-- Names (README "Every Pipedrive operation"): resource = the path's first
-- segment in snake_case; function = a standard verb where the path is the
-- collection or /{id} (list, get, add, update, delete, search), otherwise
-- <verb>_<static segments after the resource, snake_case>, verb = list (GET
-- ending on a static segment), get (GET ending on a parameter), add (POST),
-- update (PUT, PATCH), delete (DELETE); the last segment is made singular
-- when a parameter follows it or the verb is add. Where a static segment is
-- an action (find, merge, duplicate, convert, archive, receive) the name is
-- the static segments alone. A request body that is an array is the
-- argument `body`. Two operations reaching
-- the same name make the generator fail, unless RENAME below names one.
local lyaml = require "lyaml"

local M = {}

-- Operations left out, with the reason (none of them is reachable with an API token).
local LEFT_OUT_PREFIX = { ["/oauth/"] = "OAuth endpoints live on oauth.pipedrive.com: see pipedrive.new{ oauth = ... }" }

-- Explicit names where the rule would give two operations one name.
-- Key: "<version> <METHOD> <path as in the file>".
local RENAME = {
  ["v2 GET /deals/products"] = "list_products_of_deals",
  ["v2 GET /deals/installments"] = "list_installments_of_deals",
}

local function read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

local function snake(s)
  return (s:gsub("(%l)(%u)", "%1_%2"):gsub("(%u)(%u%l)", "%1_%2"):gsub("%-", "_"):lower())
end

local function singular(s)
  if s:match("ies$") then return s:sub(1, -4) .. "y" end
  if s:match("sses$") or s:match("xes$") or s:match("uses$") then return s:sub(1, -3) end
  if s:match("[^su]s$") then return s:sub(1, -2) end
  return s
end

-- Resolves $ref (local components only) in `doc`.
local function resolver(doc)
  return function(node)
    local seen = 0
    while type(node) == "table" and node["$ref"] do
      local ref = node["$ref"]
      local cur = doc
      for part in ref:gsub("^#/", ""):gmatch("[^/]+") do cur = cur[part] end
      node = cur
      seen = seen + 1
      assert(seen < 20, "reference loop at " .. ref)
    end
    return node
  end
end

-- Flattens allOf / anyOf / oneOf of an object schema into one
-- { properties, required } (anyOf/oneOf: the union, nothing required).
local function flatten(schema, deref, depth)
  schema = deref(schema)
  if type(schema) ~= "table" then return {} end
  local out = { type = schema.type, enum = schema.enum, format = schema.format, items = schema.items,
                nullable = schema.nullable, properties = {}, required = {}, description = schema.description }
  local function absorb(s, keep_required)
    s = flatten(s, deref, depth + 1)
    out.type = out.type or s.type
    out.items = out.items or s.items
    out.enum = out.enum or s.enum
    out.format = out.format or s.format
    out.description = out.description or s.description
    for k, v in pairs(s.properties or {}) do
      if out.properties[k] == nil then out.properties[k] = v end
    end
    if keep_required then
      for _, r in ipairs(s.required or {}) do out.required[#out.required + 1] = r end
    end
  end
  if depth < 12 then
    for _, s in ipairs(schema.allOf or {}) do absorb(s, true) end
    for _, s in ipairs(schema.anyOf or {}) do absorb(s, false) end
    for _, s in ipairs(schema.oneOf or {}) do absorb(s, false) end
  end
  for k, v in pairs(schema.properties or {}) do out.properties[k] = v end
  for _, r in ipairs(schema.required or {}) do out.required[#out.required + 1] = r end
  if not out.type and next(out.properties) then out.type = "object" end
  return out
end

-- A compact schema for nested checks: type, enum, items, properties, required.
local function compact(schema, deref, depth)
  local s = flatten(schema, deref, 0)
  local c = { type = s.type }
  if s.enum and s.type ~= "boolean" then c.enum = s.enum end
  if depth >= 3 then return c end
  if s.type == "array" and s.items then c.items = compact(s.items, deref, depth + 1) end
  if s.type == "object" and next(s.properties) then
    c.properties = {}
    for k, v in pairs(s.properties) do c.properties[k] = compact(v, deref, depth + 1) end
    if #s.required > 0 then
      local req = {}
      for _, r in ipairs(s.required) do
        if s.properties[r] then req[#req + 1] = r end
      end
      table.sort(req)
      if #req > 0 then c.required = req end
    end
  end
  return c
end

-- Our parameter type for a scalar schema.
local function param_type(s, where, name)
  local t = s.type
  if where == "path" then
    if t == "integer" or t == "number" then return "id" end
    if s.format == "uuid" then return "uuid" end
    return "string"
  end
  if s.format == "binary" then return "file" end
  if t == "integer" then return (name == "id" or name:match("_id$")) and where == "query" and "id" or "integer" end
  if t == "number" then return "number" end
  if t == "boolean" then return "boolean" end
  if t == "string" then return s.format == "date" and "date" or "string" end
  if t == "array" then return where == "query" and "list" or "array" end
  if t == "object" then return "object" end
  return "any"
end

local function param_spec(s, where, name, deref, required)
  s = flatten(s, deref, 0)
  local spec = { type = param_type(s, where, name), ["in"] = where }
  if where == "path" then spec.path = true end
  if required then spec.required = true end
  if s.enum and s.type ~= "boolean" and spec.type ~= "array" and spec.type ~= "object" then
    local e = {}
    for i, v in ipairs(s.enum) do
      if v ~= lyaml.null then e[#e + 1] = tostring(v) end
      if i > 200 then break end
    end
    if #e > 0 then spec.enum = e end
  end
  if spec.type == "list" and s.items then
    local items = flatten(s.items, deref, 0)
    if items.enum then
      local e = {}
      for _, v in ipairs(items.enum) do e[#e + 1] = tostring(v) end
      spec.enum = e
    end
  end
  if spec.type == "integer" and (name == "limit") then spec.min = 1 end
  if where == "body" and (spec.type == "array" or spec.type == "object") then
    local c = compact(s, deref, 0)
    if c.items or c.properties then spec.schema = c end
  end
  return spec
end

-- Static segments that are actions, not things: the name is then the static
-- segments alone (users.find, deals.merge, deals.convert_lead, projects.archive).
local ACTIONS = { find = true, merge = true, duplicate = true, convert = true, archive = true, receive = true }

-- The function name of `method path` (path without the version prefix).
local function name_of(method, path)
  local segs = {}
  for seg in path:gmatch("[^/]+") do segs[#segs + 1] = seg end
  local resource = snake(segs[1])
  local statics, ends_param = {}, false
  for i = 2, #segs do
    local seg = segs[i]
    if seg:match("^{") then
      ends_param = true
    else
      statics[#statics + 1] = snake(seg)
      ends_param = false
    end
  end
  local rest = #segs - 1
  if rest == 0 then
    if method == "get" then return resource, "list" end
    if method == "post" then return resource, "add" end
    if method == "delete" then return resource, "delete_many" end
    return resource, "update_many"
  end
  if rest == 1 and ends_param then
    if method == "get" then return resource, "get" end
    if method == "delete" then return resource, "delete" end
    if method == "put" or method == "patch" then return resource, "update" end
  end
  if rest == 1 and statics[1] == "search" and method == "get" then return resource, "search" end
  for _, st in ipairs(statics) do
    if ACTIONS[st] then return resource, table.concat(statics, "_") end
  end
  local verb = ({ get = ends_param and "get" or "list", post = "add", put = "update", patch = "update",
                  delete = "delete" })[method]
  if ends_param or verb == "add" then statics[#statics] = singular(statics[#statics]) end
  return resource, verb .. "_" .. table.concat(statics, "_")
end

local KIND = { list = "list", get = "get", add = "add", update = "update", delete = "delete", search = "search" }

-- The operations of one OpenAPI document: list of { version, resource, fname, op }.
local function operations_of(doc, version, notes)
  local deref = resolver(doc)
  local out = {}
  local prefix = version == "v2" and "/api/v2" or "/api/v1"
  local paths = {}
  for p in pairs(doc.paths) do paths[#paths + 1] = p end
  table.sort(paths)
  for _, path in ipairs(paths) do
    local item = doc.paths[path]
    for _, method in ipairs({ "get", "post", "put", "patch", "delete" }) do
      local o = item[method]
      if o then
        local skip
        for pre, why in pairs(LEFT_OUT_PREFIX) do
          if path:sub(1, #pre) == pre then skip = why end
        end
        if skip then
          notes.left_out[#notes.left_out + 1] = ("%s %s %s (%s): %s"):format(version, method:upper(), path,
            o.operationId, skip)
        else
          local resource, fname = name_of(method, path)
          fname = RENAME[("%s %s %s"):format(version, method:upper(), path)] or fname
          local params, paging = {}, "none"
          local all = {}
          for _, prm in ipairs(item.parameters or {}) do all[#all + 1] = prm end
          for _, prm in ipairs(o.parameters or {}) do all[#all + 1] = prm end
          for _, prm in ipairs(all) do
            prm = deref(prm)
            if prm["in"] == "path" or prm["in"] == "query" then
              params[prm.name] = param_spec(prm.schema or {}, prm["in"], prm.name, deref,
                prm.required == true or prm["in"] == "path")
              if prm["in"] == "query" then
                if prm.name == "cursor" then paging = "cursor" elseif prm.name == "start" and paging == "none" then
                  paging = "offset"
                end
              end
            end
          end
          local multipart
          local rb = o.requestBody and deref(o.requestBody)
          if rb and rb.content then
            local media = rb.content["application/json"] or rb.content["multipart/form-data"]
              or rb.content["application/x-www-form-urlencoded"]
            multipart = rb.content["application/json"] == nil and rb.content["multipart/form-data"] ~= nil
            if media and media.schema then
              local s = flatten(media.schema, deref, 0)
              local req = {}
              for _, r in ipairs(s.required) do req[r] = true end
              for pname, ps in pairs(s.properties) do
                if params[pname] then
                  notes.shadowed[#notes.shadowed + 1] = ("%s %s %s: body field '%s' has a query or path namesake")
                    :format(version, method:upper(), path, pname)
                else
                  params[pname] = param_spec(ps, "body", pname, deref, req[pname] or nil)
                end
              end
              if s.type == "array" then
                -- The body is an array: one argument, `body`, is all of it.
                params.body = { type = "array", ["in"] = "body", whole = true, required = rb.required or nil,
                                schema = compact(media.schema, deref, 0) }
              end
            end
          end
          local cost = tonumber(o["x-token-cost"]) or (method == "get" and 2 or 10)
          out[#out + 1] = {
            version = version, resource = resource, fname = fname, path = path,
            op = {
              kind = KIND[fname] or "call",
              route = { method = method:upper(), path = prefix .. path, paging = paging,
                        cost = math.floor(cost) },
              params = params,
              operation_id = o.operationId,
              multipart = multipart or nil,
              deprecated = o.deprecated or nil,
            },
          }
        end
      end
    end
  end
  return out
end

-- Lua source of a value, keys sorted, for stable output.
local function serialize(v, indent)
  indent = indent or ""
  local t = type(v)
  if t == "string" then return ("%q"):format(v):gsub("\\\n", "\\n") end
  if t == "number" then
    if v == math.floor(v) and math.abs(v) < 2 ^ 53 then return ("%d"):format(v) end
    return tostring(v)
  end
  if t == "boolean" then return tostring(v) end
  assert(t == "table", "cannot serialize " .. t)
  if #v > 0 then
    local parts = {}
    local simple = true
    for _, x in ipairs(v) do
      if type(x) == "table" then simple = false end
    end
    for i, x in ipairs(v) do parts[i] = serialize(x, indent .. "  ") end
    if simple then
      local one = "{ " .. table.concat(parts, ", ") .. " }"
      if #one + #indent < 100 then return one end
      -- a long list of scalars: wrapped, several per line
      local lines, line = {}, ""
      for _, p in ipairs(parts) do
        if line ~= "" and #line + #p + #indent > 100 then
          lines[#lines + 1] = line
          line = ""
        end
        line = line .. p .. ", "
      end
      lines[#lines + 1] = line
      for i, l in ipairs(lines) do lines[i] = indent .. "  " .. l:gsub(" $", "") end
      return "{\n" .. table.concat(lines, "\n") .. "\n" .. indent .. "}"
    end
    return "{\n" .. indent .. "  " .. table.concat(parts, ",\n" .. indent .. "  ") .. ",\n" .. indent .. "}"
  end
  local keys = {}
  for k in pairs(v) do keys[#keys + 1] = k end
  if #keys == 0 then return "{}" end
  table.sort(keys)
  local parts = {}
  for _, k in ipairs(keys) do
    local key = k:match("^[%a_][%w_]*$") and not ({ ["in"] = true, ["and"] = true, ["or"] = true, ["not"] = true,
      ["end"] = true, ["for"] = true, ["if"] = true, ["then"] = true, ["function"] = true, ["local"] = true,
      ["nil"] = true, ["true"] = true, ["false"] = true, ["repeat"] = true, ["until"] = true, ["while"] = true,
      ["do"] = true, ["else"] = true, ["elseif"] = true, ["break"] = true, ["return"] = true, ["goto"] = true })[k]
      and k or ("[%q]"):format(k)
    parts[#parts + 1] = key .. " = " .. serialize(v[k], indent .. "  ")
  end
  local one = "{ " .. table.concat(parts, ", ") .. " }"
  if #one + #indent < 90 and not one:find("\n") then return one end
  return "{\n" .. indent .. "  " .. table.concat(parts, ",\n" .. indent .. "  ") .. ",\n" .. indent .. "}"
end

local HEADER = "-- Generated by tools/gen_operations.lua from openapi/*.yaml: do not edit (make operations).\n"

--- Generates every file; returns { [relative path] = text }, notes.
function M.generate(root)
  root = root or "."
  local notes = { left_out = {}, shadowed = {}, count = {} }
  local docs = {
    v2 = lyaml.load(read(root .. "/openapi/openapi-v2.yaml")),
    v1 = lyaml.load(read(root .. "/openapi/openapi-v1.yaml")),
  }
  local resources = {}
  local ids = {}
  for _, version in ipairs({ "v2", "v1" }) do
    local n = 0
    for _, e in ipairs(operations_of(docs[version], version, notes)) do
      n = n + 1
      local res = resources[e.resource]
      if not res then
        res = { object = singular(e.resource), functions = {} }
        resources[e.resource] = res
      end
      local op = res.functions[e.fname]
      if op and op[version] then
        error(("name collision: %s.%s is both %s %s and %s %s (add a RENAME)"):format(e.resource, e.fname,
          op[version].method, op[version].path, e.op.route.method, e.op.route.path))
      end
      if not op then
        op = { kind = e.op.kind, params = e.op.params, operation_id = {} }
        res.functions[e.fname] = op
      else
        -- v2 serves the operation; v1 is its api = "v1" route. Parameters of
        -- one route that the other lacks are refused in the other version, and
        -- required only in their own (required_in).
        for pname, spec in pairs(op.params) do
          if not e.op.params[pname] then
            spec.v1 = false
            spec.hint = "only Pipedrive's API v2 has it; drop api = 'v1' from pipedrive.new"
            if spec.required then spec.required, spec.required_in = nil, "v2" end
          elseif spec.required and not e.op.params[pname].required then
            spec.required, spec.required_in = nil, "v2"
          end
        end
        for pname, spec in pairs(e.op.params) do
          if not op.params[pname] then
            spec.v2 = false
            spec.hint = "only Pipedrive's API v1 has it: pipedrive.new{ api = 'v1' }"
            if spec.required then spec.required, spec.required_in = nil, "v1" end
            op.params[pname] = spec
          end
        end
      end
      op[version] = e.op.route
      op.operation_id[version] = e.op.operation_id
      op.multipart = op.multipart or e.op.multipart
      local key = e.op.operation_id
      if ids[key] and ids[key] ~= e.resource .. "." .. e.fname then
        -- Same operationId in both files for different names: the v2 one keeps it, the v1 one is v1_<id>.
        key = "v1_" .. key
      end
      ids[key] = e.resource .. "." .. e.fname
    end
    notes.count[version] = n
  end
  local files, names = {}, {}
  for rname, res in pairs(resources) do
    names[#names + 1] = rname
    local body = { object = res.object }
    for fname, op in pairs(res.functions) do
      -- The serving route's one path parameter (any name) is the positional argument.
      local pp = {}
      for pname in (op.v2 or op.v1).path:gmatch("{([^}]+)}") do pp[#pp + 1] = pname end
      if #pp == 1 and pp[1] ~= "id" then op.positional = pp[1] end
      if next(op.operation_id) == nil then op.operation_id = nil end
      body[fname] = op
    end
    files["lua/pipedrive/operations/gen/" .. rname .. ".lua"] = HEADER .. "return " .. serialize(body) .. "\n"
  end
  table.sort(names)
  files["lua/pipedrive/operations/index.lua"] = HEADER
    .. "-- Every resource name; the operations of one are loaded on first use.\nreturn "
    .. serialize(names) .. "\n"
  files["lua/pipedrive/operations/ids.lua"] = HEADER
    .. "-- operationId -> \"resource.function\" (pd.call).\nreturn " .. serialize(ids) .. "\n"
  notes.resources = #names
  return files, notes
end

-- The rockspec with the generated modules listed between its two markers.
function M.rockspec(text, files)
  local lines = {}
  for path in pairs(files) do
    local mod = path:gsub("^lua/", ""):gsub("%.lua$", ""):gsub("/", ".")
    lines[#lines + 1] = ('    ["%s"] = "%s",'):format(mod, path)
  end
  table.sort(lines)
  local head, tail = text:match("^(.-%-%- generated operations: begin[^\n]*\n).-([ ]*%-%- generated operations: end.*)$")
  assert(head, "rockspec: the generated-operations markers are missing")
  return head .. table.concat(lines, "\n") .. "\n" .. tail
end

M.ROCKSPEC = "rockspec/pipedrive-0.1.0-1.rockspec"

if not pcall(debug.getlocal, 4, 1) then
  local root = arg and arg[1] or "."
  local files, notes = M.generate(root)
  os.execute("mkdir -p " .. root .. "/lua/pipedrive/operations/gen && rm -f " .. root
    .. "/lua/pipedrive/operations/gen/*.lua")
  files[M.ROCKSPEC] = M.rockspec(read(root .. "/" .. M.ROCKSPEC), files)
  local n = 0
  for path, text in pairs(files) do
    local f = assert(io.open(root .. "/" .. path, "wb"))
    f:write(text)
    f:close()
    n = n + 1
  end
  print(("wrote %d files: %d resources; operations v2 %d, v1 %d; left out %d"):format(n, notes.resources,
    notes.count.v2, notes.count.v1, #notes.left_out))
  for _, l in ipairs(notes.left_out) do print("  left out: " .. l) end
  for _, l in ipairs(notes.shadowed) do print("  note: " .. l) end
end

return M
