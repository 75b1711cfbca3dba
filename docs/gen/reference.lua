--- Generates docs/REFERENCE.md from pipedrive.operations (lua/pipedrive/operations/), Pipedrive's
-- vendored OpenAPI files (openapi/*.yaml) and the hand-written text of
-- docs/gen/template.md and docs/gen/overlay.yaml.
--
--   local ref = require "reference"            -- with docs/gen/?.lua on package.path
--   local text = ref.generate{ root = "." }    -- the whole document, as a string
--
-- docs/gen/gen_reference.lua writes it (`make docs`); spec/docs_reference_spec.lua
-- compares it with the committed file. The output depends only on those files:
-- resources and functions in the order operations gives (RESOURCES, then the rest
-- of ALL_RESOURCES; FUNCTIONS, anything else after them, sorted), parameters sorted, no dates.
--
-- Nothing here names a resource or a parameter: the generator walks whatever
-- operations.lua holds. For each operation and API version it looks up the path and
-- method in the OpenAPI file of that version (v2: openapi-v2.yaml; v1: openapi-v1.yaml,
-- else the 2026-01-14 snapshot that still has the retired v1 endpoints) and takes each
-- parameter's description from the query/path parameters or the request body's
-- properties, under the name sent to that version.
local lyaml = require "lyaml"

local M = {}

-- The parsed OpenAPI files, per checkout root (parsing them takes about a second).
M.loaded = {}

local VERSIONS = { "v2", "v1" }
-- Per API version, the OpenAPI files to look in, first match wins.
local FILES = {
  v2 = { "openapi-v2.yaml" },
  v1 = { "openapi-v1.yaml", "openapi-v1-2026-01-14.yaml" },
}

local function read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

local function sorted_keys(t)
  local out = {}
  for k in pairs(t) do out[#out + 1] = k end
  table.sort(out, function(a, b) return tostring(a) < tostring(b) end)
  return out
end

-- Keys in the order `order` lists them, then the rest sorted.
local function ordered(keys, order)
  local rank = {}
  for i, k in ipairs(order or {}) do rank[k] = i end
  table.sort(keys, function(a, b)
    local ra, rb = rank[a] or math.huge, rank[b] or math.huge
    if ra ~= rb then return ra < rb end
    return tostring(a) < tostring(b)
  end)
  return keys
end

------------------------------------------------------------------------------
-- OpenAPI lookups
------------------------------------------------------------------------------

-- "/deals/{id}" and "/deals/{deal_id}" are the same route.
local function route_key(method, path)
  return method:lower() .. " " .. path:gsub("{[^}]*}", "{}")
end

-- A document with its routes indexed by method and normalized path.
local function load_doc(root, name)
  local doc = lyaml.load(read(root .. "/openapi/" .. name))
  local routes = {}
  for path, item in pairs(doc.paths or {}) do
    for method, op in pairs(item) do
      if type(op) == "table" and method ~= "parameters" then
        routes[route_key(method, path)] = { op = op, item = item }
      end
    end
  end
  return { doc = doc, routes = routes, name = name }
end

-- Follows "#/components/..." references inside one document (bounded).
local function deref(doc, node)
  for _ = 1, 20 do
    if type(node) ~= "table" or type(node["$ref"]) ~= "string" then return node end
    local t = doc
    for part in node["$ref"]:gmatch("[^/#]+") do
      t = type(t) == "table" and t[part] or nil
    end
    node = t
  end
  return node
end

-- Every property of a (possibly composed) body schema: name -> property schema.
local function collect_properties(doc, schema, out, depth)
  schema = deref(doc, schema)
  if type(schema) ~= "table" or depth > 10 then return out end
  for name, prop in pairs(schema.properties or {}) do
    if out[name] == nil then out[name] = prop end
  end
  for _, key in ipairs({ "allOf", "oneOf", "anyOf" }) do
    for _, sub in ipairs(schema[key] or {}) do collect_properties(doc, sub, out, depth + 1) end
  end
  return out
end

-- The description of a parameter or property schema (its own, else its target's).
local function description_of(doc, node, depth)
  depth = depth or 0
  if type(node) ~= "table" or depth > 10 then return nil end
  if type(node.description) == "string" then return node.description end
  local target = deref(doc, node)
  if target ~= node then return description_of(doc, target, depth + 1) end
  for _, key in ipairs({ "allOf", "oneOf", "anyOf" }) do
    for _, sub in ipairs(node[key] or {}) do
      local d = description_of(doc, sub, depth + 1)
      if d then return d end
    end
  end
  return nil
end

-- What one route documents: { params = name -> description, body = name -> description, summary }.
local function route_info(entry, d)
  local info = { params = {}, body = {}, summary = entry.op.summary }
  local lists = { entry.item.parameters or {}, entry.op.parameters or {} }
  for _, list in ipairs(lists) do
    for _, p in ipairs(list) do
      p = deref(d.doc, p)
      if type(p) == "table" and p.name then info.params[p.name] = description_of(d.doc, p) or "" end
    end
  end
  local rb = deref(d.doc, entry.op.requestBody)
  if type(rb) == "table" and type(rb.content) == "table" then
    for _, ctype in ipairs(sorted_keys(rb.content)) do
      local props = collect_properties(d.doc, rb.content[ctype].schema, {}, 0)
      for name, prop in pairs(props) do
        if info.body[name] == nil then info.body[name] = description_of(d.doc, prop) or "" end
      end
    end
  end
  return info
end

------------------------------------------------------------------------------
-- Text
------------------------------------------------------------------------------

-- One line of plain Markdown from an OpenAPI description: HTML tags and link
-- targets gone, whitespace collapsed, the first sentence only.
local function clean(desc)
  if type(desc) ~= "string" then return nil end
  local s = desc:gsub("<[^>]*>", " ")
  s = s:gsub("%[([^%]]*)%]%([^%)]*%)", "%1")
  s = s:gsub("&nbsp;", " "):gsub("&lt;", "<"):gsub("&gt;", ">"):gsub("&amp;", "&")
  s = s:gsub("%s+", " "):gsub("^ ", ""):gsub(" $", "")
  -- the first sentence: a period followed by a space and a capital letter
  local stop = s:find("[%.!?] %u")
  if stop then s = s:sub(1, stop) end
  if s == "" then return nil end
  if not s:find("[%.!?]$") then s = s .. "." end
  return s
end

local function cell(s)
  return (tostring(s):gsub("|", "\\|"):gsub("\n", " "))
end

local function code(s) return "`" .. tostring(s) .. "`" end

-- "#pddealslist" style anchors, as GitHub makes them from a heading.
local function anchor(heading)
  return "#" .. heading:lower():gsub("[^%w%-_ ]", ""):gsub(" ", "-")
end

------------------------------------------------------------------------------
-- The document
------------------------------------------------------------------------------

-- The overlay's note for a parameter: "resource.function.param", "function.param", "param".
local function note_for(overlay, rname, fname, pname)
  local notes = overlay.notes or {}
  return notes[rname .. "." .. fname .. "." .. pname] or notes[fname .. "." .. pname] or notes[pname]
end

local function kind_text(overlay, kind, field)
  local k = (overlay.kinds or {})[kind] or (overlay.kinds or {}).default or {}
  return k[field]
end

local function fill(text, vars)
  return (text:gsub("{([%w_]+)}", function(k) return vars[k] end))
end

-- "v2 as `owner_id`, v1" for one parameter.
local function versions_cell(op, spec)
  local parts, refused = {}, {}
  for _, v in ipairs(VERSIONS) do
    if op[v] then
      local w = spec[v]
      if w == false then
        refused[#refused + 1] = v
      elseif type(w) == "string" then
        parts[#parts + 1] = v .. " as " .. code(w)
      elseif type(w) == "function" then
        parts[#parts + 1] = v .. " (translated)"
      else
        parts[#parts + 1] = v
      end
    end
  end
  return table.concat(parts, ", "), refused
end

local function allowed_cell(spec)
  local parts = {}
  if spec.enum then
    local e = {}
    for i, v in ipairs(spec.enum) do e[i] = code(v) end
    parts[#parts + 1] = table.concat(e, ", ")
  end
  if spec.min and spec.max then
    parts[#parts + 1] = ("%d to %d"):format(spec.min, spec.max)
  elseif spec.min then
    parts[#parts + 1] = (">= %d"):format(spec.min)
  elseif spec.max then
    parts[#parts + 1] = ("<= %d"):format(spec.max)
  end
  if spec.min_len and spec.max_len and spec.min_len == spec.max_len then
    parts[#parts + 1] = ("%d characters"):format(spec.min_len)
  else
    if spec.min_len and spec.min_len > 1 then parts[#parts + 1] = ("%d+ characters"):format(spec.min_len) end
    if spec.max_len then parts[#parts + 1] = ("at most %d characters"):format(spec.max_len) end
  end
  return table.concat(parts, "; ")
end

-- The description of `pname` of operation `op` from the OpenAPI files: the first
-- version (v2, v1) whose route documents it under the name sent to that version.
local function openapi_description(ctx, op, pname, spec)
  for _, v in ipairs(VERSIONS) do
    local info = op[v] and ctx.route(v, op[v])
    local wire = spec[v]
    if info and wire ~= false then
      local name = type(wire) == "string" and wire or pname
      local d = info.params[name] or info.body[name]
      if d and clean(d) then return clean(d) end
    end
  end
  return nil
end

local function param_rows(ctx, rname, fname, op)
  local overlay = ctx.overlay
  local names = sorted_keys(op.params or {})
  table.sort(names, function(a, b)
    local ra, rb = op.params[a].required and 0 or 1, op.params[b].required and 0 or 1
    if ra ~= rb then return ra < rb end
    return a < b
  end)
  local rows, refusals = {}, {}
  for _, pname in ipairs(names) do
    local spec = op.params[pname]
    local desc = openapi_description(ctx, op, pname, spec)
    ctx.stats.params = ctx.stats.params + 1
    if desc then ctx.stats.described = ctx.stats.described + 1 end
    local note = note_for(overlay, rname, fname, pname)
    local meaning = desc or ""
    if note then meaning = (meaning ~= "" and meaning .. " " or "") .. note end
    local api, refused = versions_cell(op, spec)
    if #refused > 0 then
      -- grouped under the table: one line per (versions, hint)
      local key = table.concat(refused, ", ") .. "\0" .. (spec.hint or "")
      if not refusals[key] then
        refusals[key] = { versions = table.concat(refused, ", "), hint = spec.hint, names = {} }
        refusals[#refusals + 1] = key
      end
      local list = refusals[key].names
      list[#list + 1] = code(pname)
    end
    if api == "" then api = "none" end
    if spec.path then api = api .. " (in the path)" end
    local ty = (overlay.types or {})[spec.type] or spec.type or ""
    rows[#rows + 1] = ("| %s | %s | %s | %s | %s | %s |"):format(code(pname), cell(ty),
      spec.required and "yes" or "", cell(allowed_cell(spec)), cell(api), cell(meaning))
    if not desc and not note then ctx.stats.missing[#ctx.stats.missing + 1] = rname .. "." .. fname .. "." .. pname end
  end
  return rows, refusals
end

local function route_line(op)
  local parts = {}
  for _, v in ipairs(VERSIONS) do
    local r = op[v]
    if r then
      local extra = {}
      if r.paging and r.paging ~= "none" then extra[#extra + 1] = r.paging .. " paging" end
      if r.cost then extra[#extra + 1] = "cost " .. r.cost end
      parts[#parts + 1] = ("%s: %s %s%s"):format(v, code(r.method), code(r.path),
        #extra > 0 and (" (" .. table.concat(extra, ", ") .. ")") or "")
    end
  end
  return table.concat(parts, " · ")
end

-- The call forms of one function, e.g. "pd.deals.get(id [, {...}])".
local function signature(overlay, rname, fname, op)
  local form = kind_text(overlay, op.kind, "call") or "pd.{resource}.{fn}{...}"
  return fill(form, { resource = rname, fn = fname })
end

local function function_section(ctx, rname, fname, op, out)
  local overlay = ctx.overlay
  local head = ("pd.%s.%s"):format(rname, fname)
  out[#out + 1] = "### " .. head
  out[#out + 1] = ""
  out[#out + 1] = code(signature(overlay, rname, fname, op))
  out[#out + 1] = ""
  local summary
  for _, v in ipairs(VERSIONS) do
    local info = op[v] and ctx.route(v, op[v])
    if info and info.summary then summary = summary or clean(info.summary) end
  end
  if summary then
    out[#out + 1] = summary .. (summary:find("[%.!?]$") and "" or ".")
    out[#out + 1] = ""
  end
  out[#out + 1] = "Endpoint: " .. route_line(op) .. "."
  if op.operation_id then
    local ids, seen = {}, {}
    for _, v in ipairs(VERSIONS) do
      local id = op.operation_id[v]
      if id and not seen[id] then
        seen[id] = true
        ids[#ids + 1] = code(id) .. " (" .. v .. ")"
      end
    end
    out[#out + 1] = "operationId (for `pd.call`): " .. table.concat(ids, ", ") .. "."
  end
  if not op.v2 then out[#out + 1] = kind_text(overlay, "v1_only", "text") or "" end
  out[#out + 1] = ""
  local vars = { resource = rname, fn = fname, object = ctx.ops[rname].object or "record" }
  local returns = kind_text(overlay, op.kind, "returns")
  if returns then
    out[#out + 1] = "Returns: " .. fill(returns, vars)
    out[#out + 1] = ""
  end
  if next(op.params or {}) then
    out[#out + 1] = "| parameter | type | required | allowed values | API | meaning |"
    out[#out + 1] = "|---|---|---|---|---|---|"
    local rows, refusals = param_rows(ctx, rname, fname, op)
    for _, row in ipairs(rows) do out[#out + 1] = row end
    out[#out + 1] = ""
    for _, key in ipairs(refusals) do
      local r = refusals[key]
      out[#out + 1] = fill(ctx.overlay.refused or "Refused in {versions}: {names}. {hint}", {
        versions = r.versions, names = table.concat(r.names, ", "),
        hint = r.hint and (r.hint:gsub("^%l", string.upper) .. ".") or "" })
      out[#out + 1] = ""
    end
  else
    out[#out + 1] = "No parameters."
    out[#out + 1] = ""
  end
  if op.require_one then
    local names = {}
    for i, n in ipairs(op.require_one[1]) do names[i] = code(n) end
    out[#out + 1] = ("At least one of %s is required (%s)."):format(table.concat(names, ", "), op.require_one[2])
    out[#out + 1] = ""
  end
  if op.custom_fields then
    out[#out + 1] = overlay.custom_fields or ""
    out[#out + 1] = ""
  end
  local errors = kind_text(overlay, op.kind, "errors")
  if errors then
    out[#out + 1] = "Errors: " .. fill(errors, vars)
    out[#out + 1] = ""
  end
  ctx.stats.functions = ctx.stats.functions + 1
  return head
end

-- `each`, made by the client from every `list`.
local function each_section(ctx, rname, op, out)
  local overlay = ctx.overlay
  local head = ("pd.%s.each"):format(rname)
  out[#out + 1] = "### " .. head
  out[#out + 1] = ""
  out[#out + 1] = code(fill(kind_text(overlay, "each", "call") or "", { resource = rname }))
  out[#out + 1] = ""
  local vars = { resource = rname, fn = "each", object = ctx.ops[rname].object or "record",
                 list_anchor = anchor("pd." .. rname .. ".list") }
  local paging = {}
  for _, v in ipairs(VERSIONS) do
    if op[v] then paging[#paging + 1] = ("%s %s"):format(v, op[v].paging == "none" and "one answer" or
      (op[v].paging .. " paging")) end
  end
  vars.paging = table.concat(paging, ", ")
  out[#out + 1] = fill(kind_text(overlay, "each", "returns") or "", vars)
  out[#out + 1] = ""
  ctx.stats.functions = ctx.stats.functions + 1
  return head
end

--- Returns the document as a string, and counts { functions, params, described, missing }.
-- opts.root: the checkout (default "."). opts.operations: the table to document
-- (default: lua/pipedrive/operations.lua of the checkout).
function M.generate(opts)
  opts = opts or {}
  local root = opts.root or "."
  local ops = opts.operations
  if not ops then
    package.path = root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;" .. package.path
    ops = require "pipedrive.operations"
  end
  local overlay = lyaml.load(read(root .. "/docs/gen/overlay.yaml"))
  local template = read(root .. "/docs/gen/template.md")

  local docs = M.loaded[root] or {}
  M.loaded[root] = docs
  local cache = {}
  local ctx = { ops = ops, overlay = overlay,
                stats = { functions = 0, params = 0, described = 0, missing = {} } }
  -- The documented route of an operation's version, or nil.
  function ctx.route(v, r)
    local key = v .. " " .. route_key(r.method, r.path:gsub("^/api/v%d+", ""):gsub("^/v%d+", ""))
    if cache[key] == nil then
      cache[key] = false
      local rk = route_key(r.method, r.path:gsub("^/api/v%d+", ""):gsub("^/v%d+", ""))
      for _, name in ipairs(FILES[v]) do
        docs[name] = docs[name] or load_doc(root, name)
        local entry = docs[name].routes[rk]
        if entry then
          cache[key] = route_info(entry, docs[name])
          break
        end
      end
    end
    return cache[key] or nil
  end

  -- Resources: what the client exposes (RESOURCES), else every table of operations.
  local rnames = {}
  if type(ops.RESOURCES) == "table" then
    local seen = {}
    for i, r in ipairs(ops.RESOURCES) do rnames[i], seen[r] = r, true end
    -- then every other resource (the generated ones), sorted
    for _, r in ipairs(ops.ALL_RESOURCES or {}) do
      if not seen[r] then rnames[#rnames + 1] = r end
    end
  else
    for k, v in pairs(ops) do
      if type(v) == "table" and type(k) == "string" and k:match("^%l") then rnames[#rnames + 1] = k end
    end
    table.sort(rnames)
  end

  local body, toc = {}, {}
  for _, rname in ipairs(rnames) do
    local res = ops[rname]
    local fnames = {}
    for k, v in pairs(res) do
      if type(v) == "table" and v.kind then fnames[#fnames + 1] = k end
    end
    if res.list and res.list.kind then fnames[#fnames + 1] = "each" end
    ordered(fnames, ops.FUNCTIONS)
    local title = "pd." .. rname
    body[#body + 1] = "## " .. title
    body[#body + 1] = ""
    local rtext = (overlay.resources or {})[rname]
    if rtext then
      body[#body + 1] = rtext:gsub("%s+$", "")
      body[#body + 1] = ""
    end
    local links = {}
    for _, fname in ipairs(fnames) do
      links[#links + 1] = ("[%s](%s)"):format(code(fname), anchor("pd." .. rname .. "." .. fname))
    end
    body[#body + 1] = "Functions: " .. table.concat(links, ", ") .. "."
    body[#body + 1] = ""
    toc[#toc + 1] = ("- [%s](%s): %s"):format(code(title), anchor(title), table.concat(links, ", "))
    for _, fname in ipairs(fnames) do
      if fname == "each" then
        each_section(ctx, rname, res.list, body)
      else
        function_section(ctx, rname, fname, res[fname], body)
      end
    end
  end

  local text = template
  text = text:gsub("{{toc}}", function() return table.concat(toc, "\n") end)
  text = text:gsub("{{resources}}", function() return (table.concat(body, "\n"):gsub("\n+$", "")) end)
  text = text:gsub("\n\n\n+", "\n\n")
  return text, ctx.stats
end

return M
