--- The generic store: every operation of openapi-v2.yaml and openapi-v1.yaml that the
-- hand-modelled resources (api.lua, activities.lua, webhooks.lua, oauth.lua) do not serve.
--
-- Driven by pipedrive.sandbox.routes_gen (written by tools/gen_sandbox_routes.lua from the
-- files; loaded on the first request that reaches this module, never at start).
-- Records are the request's fields; answers are built from the operation's response
-- schema: every documented property present, the stored value where there is one, null
-- where the property has no value (left out with omit_nulls when the schema does not
-- allow null), false/[]/the first enum value for booleans, arrays and enums.
--
-- What each operation does follows from its path template and method:
--   .../{x}  GET read, PATCH/PUT/POST update, DELETE delete (404 for an unknown id)
--   .../lit  GET list (data is an array; paged by cursor or offset as the operation's
--            parameters say) or a single answer; POST create; DELETE the `ids` given;
--            PUT/PATCH update the single record kept at that path
-- The collection is the template up to its last {x}, with the parent ids filled in, and is
-- the same for v1 and v2 (POST /api/v2/deals/7/followers and GET /v1/deals/7/followers...).
-- A missing required body field is Pipedrive's 400. Collections that the hand-modelled
-- lookups list (users, leadLabels, currencies, filters, stages, pipelines) start from their
-- records; after a write there the generic store also answers their list.
local compat = require "pipedrive.compat"
local json = require "pipedrive.sandbox.json"
local util = require "pipedrive.sandbox.util"
local time = require "pipedrive.sandbox.time"
local check = require "pipedrive.sandbox.check"

local array, null = json.array, json.null
local fail, invalid = check.fail, check.invalid

local M = {}

local routes -- { S = nodes, ops = list }, loaded by index()
local by_key -- version .. " " .. first segment .. " " .. segment count -> { path = { segs, methods } ... }

--- Loads the generated data once and indexes it by version, first segment and length.
local function index()
  if by_key then return by_key end
  routes = require "pipedrive.sandbox.routes_gen"
  by_key = {}
  local paths = {}
  for _, op in ipairs(routes.ops) do
    local pk = op.v .. " " .. op.p
    local entry = paths[pk]
    if not entry then
      local segs = {}
      for s in op.p:gmatch("[^/]+") do segs[#segs + 1] = s:match("^{(.+)}$") and { param = s:match("^{(.+)}$") } or s end
      entry = { segs = segs, methods = {}, path = op.p }
      paths[pk] = entry
      local key = op.v .. " " .. tostring(segs[1]) .. " " .. #segs
      local list = by_key[key] or {}
      by_key[key] = list
      list[#list + 1] = entry
    end
    entry.methods[op.m] = op
  end
  -- an item path is creatable when its collection (the template without the last {x}) has a POST
  local posts = {}
  for _, op in ipairs(routes.ops) do
    if op.m == "POST" then posts[(op.p:gsub("{[^}]*}", "{}"))] = true end
  end
  for _, entry in pairs(paths) do
    local coll = entry.path:match("^(.*)/{[^}]*}$")
    entry.creatable = coll ~= nil and posts[(coll:gsub("{[^}]*}", "{}"))] == true
  end
  return by_key
end

--- The operations of the path that `segs` names in `version`, the most literal template
-- winning (/deals/archived before /deals/{id}): entry, params (name -> string); nil when none.
function M.match(version, segs)
  local list = index()[version .. " " .. tostring(segs[1]) .. " " .. #segs]
  if not list then return nil end
  local best, best_params, best_score
  for _, e in ipairs(list) do
    local params, score = {}, 0
    for i, s in ipairs(e.segs) do
      if type(s) == "table" then
        params[s.param] = segs[i]
        score = score * 2
      elseif s == segs[i] then
        score = score * 2 + 1
      else
        params = nil
        break
      end
    end
    if params and (not best_score or score > best_score) then best, best_params, best_score = e, params, score end
  end
  return best, best_params
end

--- Operation counts per file (for the specs' notes).
function M.operations()
  index()
  return routes.ops
end

------------------------------------------------------------------------------
-- Answers built from schemas
------------------------------------------------------------------------------
local TRUE = { ["true"] = true, ["1"] = true }
local FALSE = { ["false"] = true, ["0"] = true }

local build

-- The stored value written as the schema says, where a plain conversion does it.
local function coerce(v, n, ctx)
  if v == null or n == nil then return v end
  local t = n.t
  if t == "i" then
    local x = type(v) == "string" and tonumber(v) or v
    if type(x) == "number" and compat.tointeger(x) then return compat.tointeger(x) end
  elseif t == "n" then
    if type(v) == "string" and tonumber(v) then return tonumber(v) end
  elseif t == "s" then
    if type(v) == "number" then return tostring(compat.tointeger(v) or v) end
  elseif t == "b" then
    if type(v) == "string" then
      if TRUE[v] then return true elseif FALSE[v] then return false end
    elseif v == 1 or v == 0 then
      return v == 1
    end
  elseif t == "a" then
    if type(v) == "table" then
      local out = array()
      local item = n.i and routes.S[n.i]
      for i, x in ipairs(v) do out[i] = coerce(x, item, ctx) end
      return out
    end
  elseif t == "o" then
    if type(v) == "table" and not json.is_array(v) then return build(n, v, ctx, false) end
    -- an id sent where the answer holds the linked object ({"person_id": 5} -> {id = 5, ...})
    if (type(v) == "number" or type(v) == "string") and n.p and (n.p.id or n.p.value) then
      return build(n, { id = n.p.id and v or nil, value = n.p.value and v or nil }, ctx, false)
    end
  end
  return v
end

-- add_time and update_time of each record (seconds), kept beside the record's fields.
local stamps = setmetatable({}, { __mode = "k" })

-- The value of a property the record does not have.
local function missing(name, n, ctx, rec)
  if name == "id" and rec.id ~= nil then return rec.id end
  local t = stamps[rec]
  if t and t[name] then return (ctx.version == "v2" and time.v2 or time.v1)(t[name]) end
  if n.n then return null end
  if n.t == "b" then return false end
  if n.t == "a" then return array() end
  if n.t == "o" then return build(n, {}, ctx, false) end
  if ctx.real_nulls then return null end
  if n.e then return n.e[1] end
  return nil
end

--- node, record -> the answer object: every property of the schema.
function build(n, rec, ctx, top)
  if n.t ~= "o" or not n.p then
    if type(rec) == "table" then return rec end
    return {}
  end
  local out = {}
  for name, idx in pairs(n.p) do
    -- UPPER_SNAKE properties stand for the keys of a map (related_objects.user["12"])
    if not name:match("^%u[%u%d]*_[%u%d_]+$") then
      local child = routes.S[idx]
      local v = rec[name]
      if v ~= nil then out[name] = coerce(v, child, ctx) else out[name] = missing(name, child, ctx, rec) end
    end
  end
  if top and rec.id ~= nil and out.id == nil and n.p.id then out.id = rec.id end
  return out
end

--- The schema node of the envelope's `data` (and `additional_data`) of an operation.
local function parts(op)
  local r = op.r and routes.S[op.r]
  local data = r and r.p and r.p.data and routes.S[r.p.data]
  local extra = r and r.p and r.p.additional_data and routes.S[r.p.additional_data]
  return r, data, extra
end

------------------------------------------------------------------------------
-- The store
------------------------------------------------------------------------------
--- Per-app state: collections by key; `took` names the lookups the generic store now lists.
function M.new()
  return { cols = {}, took = {}, singles = {}, uuid_state = 20260114 }
end

local function singular(seg)
  if seg:sub(-3) == "ies" then return seg:sub(1, -4) .. "y" end
  if seg:sub(-1) == "s" then return seg:sub(1, -2) end
  return seg
end

-- Lookups whose hand-modelled list seeds the generic collection (see init.lua).
M.SEEDED = { users = true, leadLabels = true, currencies = true, filters = true, stages = true, pipelines = true }

local function collection(app, ctx, key, seed)
  local st = app.generic
  local c = st.cols[key]
  if c then return c end
  c = { items = {}, next_id = 1, gone = {} }
  st.cols[key] = c
  if seed and M.SEEDED[key] then
    local items = seed(key, ctx)
    for _, r in ipairs(items or {}) do
      local rec = {}
      for k, v in pairs(r) do rec[k] = v end
      stamps[rec] = {}
      c.items[#c.items + 1] = rec
      if compat.math_type(rec.id) == "integer" and rec.id >= c.next_id then c.next_id = rec.id + 1 end
    end
  end
  return c
end

local function find(c, id)
  local s = tostring(id)
  for i, r in ipairs(c.items) do
    if tostring(r.id) == s then return r, i end
  end
  return nil
end

-- The id of a new record: a UUID where the schema's or path's id is a string, else the next integer.
local function new_id(app, c, data_node)
  local idn = data_node and data_node.p and data_node.p.id and routes.S[data_node.p.id]
  if idn and idn.t == "s" then
    local id
    id, app.generic.uuid_state = util.uuid4(app.generic.uuid_state)
    return id
  end
  local id = c.next_id
  c.next_id = id + 1
  return id
end

------------------------------------------------------------------------------
-- Request bodies
------------------------------------------------------------------------------
-- multipart/form-data: fields as strings, files as { file_name, file_size }.
local function parse_multipart(body, ctype)
  local boundary = ctype:match('boundary="([^"]+)"') or ctype:match("boundary=([^;%s]+)")
  if not boundary then invalid("content-type", "multipart/form-data without a boundary") end
  local out, delim = {}, "--" .. boundary
  local pos = 1
  while true do
    local s = body:find(delim, pos, true)
    if not s then break end
    local head_start = s + #delim
    if body:sub(head_start, head_start + 1) == "--" then break end
    local head_end = body:find("\r\n\r\n", head_start, true)
    if not head_end then break end
    local head = body:sub(head_start, head_end)
    local next_s = body:find("\r\n" .. delim, head_end + 4, true)
    if not next_s then break end
    local value = body:sub(head_end + 4, next_s - 1)
    local name = head:match('name="([^"]*)"')
    local filename = head:match('filename="([^"]*)"')
    if name then
      if filename then out[name] = { file_name = filename, file_size = #value } else out[name] = value end
    end
    pos = next_s + 2
  end
  return out
end

local function read_body(req)
  local raw = (req.headers or {})["content-type"] or ""
  local ct = raw:lower():match("^%s*([^;%s]+)") or ""
  local text = req.body or ""
  if ct == "application/json" then
    if text == "" then return {} end
    local v, err = json.decode(text)
    if v == nil then fail(400, "Malformed JSON in request body: " .. tostring(err)) end
    if type(v) ~= "table" then fail(400, "Request body must be a JSON object") end
    return v
  elseif ct == "application/x-www-form-urlencoded" then
    return util.parse_form(text)
  elseif ct == "multipart/form-data" then
    return parse_multipart(text, raw)
  elseif text == "" then
    return {}
  end
  invalid("content-type", ("expected application/json, got '%s'"):format(ct))
end

------------------------------------------------------------------------------
-- Handling
------------------------------------------------------------------------------
local PAGING_PARAMS = { start = true, limit = true, cursor = true, sort = true, sort_by = true,
  sort_direction = true, api_token = true, owner_id = true }

local function page_of(op, q, items)
  local limit = tonumber(q.limit or "") or 100
  if limit < 1 or limit > 500 or limit % 1 ~= 0 then invalid("limit", "must be an integer from 1 to 500") end
  limit = compat.tointeger(limit)
  if op.pg == "cursor" then
    local start = 0
    if q.cursor and q.cursor ~= "" then
      local dec = util.b64_decode(q.cursor)
      start = dec and dec:match("^g:(%d+)$") and compat.tointeger(tonumber(dec:match("^g:(%d+)$")))
      if not start then invalid("cursor", "is not a cursor this server gave out") end
    end
    local page = array()
    for i = start + 1, math.min(#items, start + limit) do page[#page + 1] = items[i] end
    local more = start + limit < #items
    return page, { next_cursor = more and util.b64_encode("g:" .. (start + limit)) or null }
  elseif op.pg == "offset" then
    local start = tonumber(q.start or "") or 0
    if start < 0 or start % 1 ~= 0 then invalid("start", "must be a non-negative integer") end
    start = compat.tointeger(start)
    local page = array()
    for i = start + 1, math.min(#items, start + limit) do page[#page + 1] = items[i] end
    local more = start + limit < #items
    return page, { pagination = { start = start, limit = limit, more_items_in_collection = more,
                                  next_start = more and (start + limit) or nil } }
  end
  local page = array()
  for i, r in ipairs(items) do page[i] = r end
  return page, nil
end

-- The answer envelope: the response schema's other properties, then success/data/additional_data.
local function answer(op, ctx, data, extra)
  local r, _, extra_node = parts(op)
  local body = r and build(r, {}, ctx, false) or {}
  body.success = true
  body.data = data
  if extra then
    local ad = extra_node and build(extra_node, {}, ctx, false) or {}
    for k, v in pairs(extra) do ad[k] = v end
    body.additional_data = ad
  elseif body.additional_data ~= nil and extra_node then
    body.additional_data = build(extra_node, {}, ctx, false)
  end
  return op.st or 200, body
end

--- One list item: a record, or its id where the schema lists plain ids (team users).
function M.item(item, rec, ctx)
  if not item then return rec end
  if item.t ~= "o" and item.t ~= "x" then return coerce(rec.id, item, ctx) end
  return build(item, rec, ctx, true)
end

local function render(op, ctx, rec)
  local _, data = parts(op)
  if not data then return { id = rec.id } end
  if data.t == "b" then return true end
  if data.t == "i" or data.t == "s" then return coerce(rec.id, data, ctx) end
  if data.t == "a" then
    local item = data.i and routes.S[data.i]
    local out = array()
    if rec.ids then
      for i, x in ipairs(rec.ids) do out[i] = M.item(item, { id = x }, ctx) end
    else
      out[1] = M.item(item, rec, ctx)
    end
    return out
  end
  if rec.ids then rec = { id = rec.ids[1] or rec.parent_id } end
  return build(data, rec, ctx, true)
end

local function check_required(op, body)
  for _, name in ipairs(op.req or {}) do
    local v = body[name]
    if v == nil or v == null or v == "" then invalid(name, "is required") end
  end
end

--- Answers one request: app, ctx (method, api, req, query), the matched entry and params.
-- `seed(key, ctx)` gives the hand-modelled records of a lookup collection.
function M.handle(app, ctx, entry, params, seed)
  local op = entry.methods[ctx.method]
  local segs = entry.segs
  local version = ctx.api
  local rctx = { version = version, real_nulls = app.store.real_nulls }
  local n = #segs
  local last_param = type(segs[n]) == "table"
  -- the collection key and the fields the parents give
  local parent = {}
  local key_parts = {}
  for i = 1, last_param and n - 1 or n do
    local s = segs[i]
    if type(s) == "table" then
      local v = params[s.param]
      key_parts[#key_parts + 1] = v
      local prev = segs[i - 1]
      if type(prev) == "string" then
        local num = v:match("^%d+$") and compat.tointeger(tonumber(v))
        parent[singular(prev) .. "_id"] = num or v
      end
    else
      key_parts[#key_parts + 1] = s
    end
  end
  local key = table.concat(key_parts, "/")
  local q = ctx.query
  local m = ctx.method
  local body = (m == "POST" or m == "PUT" or m == "PATCH") and read_body(ctx.req) or {}
  if m ~= "GET" and m ~= "DELETE" then check_required(op, body) end
  local now = app.clock()
  local c = collection(app, ctx, key, seed)
  if m ~= "GET" and n <= 2 and M.SEEDED[key] then app.generic.took[key] = true end

  if last_param then
    local id = params[segs[n].param]
    local rec, pos = find(c, id)
    if not rec then
      -- a record may be named by the field its parent relation gives (follower_id -> user_id)
      for i, r in ipairs(c.items) do
        for k, v in pairs(r) do
          if k ~= "id" and (k:match("_id$") or k == "uuid") and tostring(v) == id then rec, pos = r, i break end
        end
        if rec then break end
      end
    end
    if not rec and not entry.creatable and not c.gone[id] then
      -- a resource the API offers no way to create (fields, templates, mail threads...):
      -- Pipedrive has such records, so any id names one until it is deleted
      rec = { id = id:match("^%d+$") and compat.tointeger(tonumber(id)) or id }
      for k, v in pairs(parent) do rec[k] = v end
      stamps[rec] = { add_time = now, update_time = now }
      c.items[#c.items + 1] = rec
      pos = #c.items
    end
    if not rec then fail(404, ("Not found: no record with id %s at %s"):format(id, entry.path)) end
    if m == "GET" then return answer(op, rctx, render(op, rctx, rec)) end
    if m == "DELETE" then
      table.remove(c.items, pos)
      c.gone[id] = true
      return answer(op, rctx, render(op, rctx, rec))
    end
    for k, v in pairs(body) do if k ~= "id" then rec[k] = v end end
    stamps[rec].update_time = now
    return answer(op, rctx, render(op, rctx, rec))
  end

  local _, data = parts(op)
  if m == "GET" and data and data.t == "a" then
    local items = {}
    for _, r in ipairs(c.items) do
      local keep = true
      for k, v in pairs(q) do
        if not PAGING_PARAMS[k] and r[k] ~= nil and type(r[k]) ~= "table" and tostring(r[k]) ~= v then
          keep = false
          break
        end
      end
      if keep then items[#items + 1] = r end
    end
    local page, extra = page_of(op, q, items)
    local item = data.i and routes.S[data.i]
    local out = array()
    for i, r in ipairs(page) do out[i] = M.item(item, r, rctx) end
    return answer(op, rctx, out, extra)
  end
  if m == "POST" then
    local rec = {}
    for k, v in pairs(parent) do rec[k] = v end
    for k, v in pairs(body) do rec[k] = v end
    local item = data and (data.t == "a" and data.i and routes.S[data.i] or data)
    if rec.id == nil then rec.id = new_id(app, c, item) end
    if rec.uuid == nil and item and item.p and item.p.uuid then
      rec.uuid, app.generic.uuid_state = util.uuid4(app.generic.uuid_state)
    end
    stamps[rec] = { add_time = now, update_time = now }
    c.items[#c.items + 1] = rec
    return answer(op, rctx, render(op, rctx, rec))
  end
  if m == "DELETE" then
    -- DELETE /things?ids=1,2: those records go
    local ids = array()
    local wanted = {}
    for s in (q.ids or ""):gmatch("[^,]+") do wanted[s] = true end
    for i = #c.items, 1, -1 do
      local r = c.items[i]
      if wanted[tostring(r.id)] then
        table.remove(c.items, i)
        table.insert(ids, 1, r.id)
      end
    end
    local parent_id
    for _, v in pairs(parent) do parent_id = v end
    return answer(op, rctx, render(op, rctx, { ids = ids, parent_id = parent_id }))
  end
  -- GET, PUT, PATCH of a single answer kept at this path
  local single = app.generic.singles[key]
  if not single then
    single = {}
    for k, v in pairs(parent) do single[k] = v end
    if key == "users/me" and seed then
      local me = app.store:me()
      for _, u in ipairs(seed("users", ctx) or {}) do
        if u.id == me.id then for k, v in pairs(u) do single[k] = v end end
      end
    end
    app.generic.singles[key] = single
  end
  for k, v in pairs(body) do single[k] = v end
  return answer(op, rctx, render(op, rctx, single))
end

return M
