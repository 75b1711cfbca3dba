--- Custom fields by name: the definitions of a client's custom fields (read
-- from the *Fields endpoints, cached per client and object kind for a TTL,
-- read again once when a name is not found), requests written with field
-- names and option labels turned into hashes and option ids, and answers
-- turned back into `record.custom_fields` keyed by name with labels.
--
-- The cache lives in the Pipeline (`p.field_cache`), so it is per client and
-- never shared. Nothing here runs unless `field_names` is on.
local core = require "pipedrive.core"
local operations = require "pipedrive.operations"

local null = core.null
local type, pairs, ipairs, next = type, pairs, ipairs, next

local M = {}

local HASH = "^" .. ("%x"):rep(40) .. "$"
local HASH_SUB = "^(" .. ("%x"):rep(40) .. ")_([%w_]+)$"

-- The object kind of each resource whose records carry custom fields, and
-- the resource serving its field definitions (leads use deal fields).
M.KIND = { deals = "deal", leads = "deal", persons = "person", organizations = "organization",
           products = "product", activities = "activity" }
local FIELDS_RESOURCE = { deal = "deal_fields", person = "person_fields", organization = "organization_fields",
                          product = "product_fields", activity = "activity_fields" }
M.KINDS = FIELDS_RESOURCE

-- v1 keeps a field's sub-values in sibling keys `<hash>_<sub>`; v2 in an
-- object (Pipedrive's v2 migration guide: monetary {value, currency}, date and time ranges
-- {value, until}, address {value, <parts>}; a time is a plain string). The sub-values each
-- field type has, besides `value`.
local SUBS = {
  monetary = { "currency" },
  daterange = { "until" },
  timerange = { "until" },
  address = { "subpremise", "street_number", "route", "sublocality", "locality", "admin_area_level_1",
              "admin_area_level_2", "country", "postal_code", "formatted_address" },
}
M.SUBS = SUBS

local DEFAULT_TTL = 300

-- Edit distance of two short strings (case-insensitive), for suggestions.
local function distance(a, b)
  a, b = a:lower(), b:lower()
  if #a > 100 or #b > 100 then return math.huge end
  local prev = {}
  for j = 0, #b do prev[j] = j end
  for i = 1, #a do
    local cur = { [0] = i }
    local ca = a:byte(i)
    for j = 1, #b do
      local cost = ca == b:byte(j) and 0 or 1
      cur[j] = math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
    end
    prev = cur
  end
  return prev[#b]
end

--- The (at most three) candidates closest to `name`, quoted and joined.
function M.closest(name, candidates)
  local scored = {}
  for _, c in ipairs(candidates) do scored[#scored + 1] = { c, distance(name, c) } end
  table.sort(scored, function(x, y)
    if x[2] ~= y[2] then return x[2] < y[2] end
    return x[1] < y[1]
  end)
  local out = {}
  for i = 1, math.min(3, #scored) do out[i] = "'" .. scored[i][1] .. "'" end
  return #out > 0 and table.concat(out, ", ") or "none"
end

-- One definition in one shape whatever the API version answered.
local function normalize(d)
  local key = d.field_code or d.key
  local name = d.field_name or d.name
  if type(key) ~= "string" or type(name) ~= "string" then return nil end
  local options
  if type(d.options) == "table" then
    options = {}
    for i, o in ipairs(d.options) do
      if type(o) == "table" then options[i] = { id = o.id, label = o.label } end
    end
  end
  return { key = key, name = name, type = d.field_type, options = options,
           custom = d.is_custom_field == true or key:match(HASH) ~= nil }
end

-- Reads every definition of `kind` (all pages). Returns the list or nil, err.
local function fetch(p, kind)
  local rname = FIELDS_RESOURCE[kind]
  local op = operations[rname].list
  local plan = p:plan(op)
  local list, args = {}, {}
  for _ = 1, 50 do -- bounded: 50 pages of 500 definitions
    if plan.version == "v2" then args.limit = 500 end
    local data, info = p:call(rname, "list", op, args, 1, true)
    if data == nil then return nil, info end
    for _, d in ipairs(data) do
      local n = normalize(d)
      if n then list[#list + 1] = n end
    end
    if not info.more then break end
    if info.next_cursor then
      args = { cursor = info.next_cursor }
    elseif info.next_start then
      args = { start = info.next_start }
    else
      break
    end
  end
  return list
end

-- The index of a definition list: custom fields by name (a name shared by
-- two fields keeps both hashes), every field by key.
local function index(list)
  local by_name, by_key, names = {}, {}, {}
  for _, d in ipairs(list) do
    by_key[d.key] = d
    if d.custom then
      local seen = by_name[d.name]
      if seen then
        seen.dup = seen.dup or { seen.key }
        seen.dup[#seen.dup + 1] = d.key
      else
        by_name[d.name] = d
        names[#names + 1] = d.name
      end
    end
    if d.options then
      d.by_label, d.by_id = {}, {}
      for _, o in ipairs(d.options) do
        if o.label ~= nil then d.by_label[o.label] = o.id end
        if o.id ~= nil then d.by_id[o.id] = o.label; d.by_id[tostring(o.id)] = o.label end
      end
    end
  end
  table.sort(names)
  return { list = list, by_name = by_name, by_key = by_key, names = names }
end

--- The definitions of `kind` for client pipeline `p`, from the cache when
-- younger than the TTL; `force` reads them again. Returns the index or nil, err.
function M.get(p, kind, force)
  local cache = p.field_cache
  if not cache then
    cache = {}
    p.field_cache = cache
  end
  local now = core.now()
  local entry = cache[kind]
  if entry and not force and now - entry.at < (p.cache_ttl or DEFAULT_TTL) then return entry.index end
  local list, err = fetch(p, kind)
  if not list then return nil, err end
  entry = { at = now, index = index(list) }
  cache[kind] = entry
  return entry.index
end

--- pd.fields(kind): the definitions as a list of { key, name, type, options, custom }.
function M.public(p, kind)
  if not FIELDS_RESOURCE[kind] then
    local kinds = {}
    for k in pairs(FIELDS_RESOURCE) do kinds[#kinds + 1] = k end
    table.sort(kinds)
    error(("pipedrive.fields: unknown object kind '%s' (one of %s)"):format(tostring(kind),
      table.concat(kinds, ", ")), 3)
  end
  local idx, err = M.get(p, kind)
  if not idx then return nil, err end
  local out = {}
  for i, d in ipairs(idx.list) do
    local opts
    if d.options then
      opts = {}
      for j, o in ipairs(d.options) do opts[j] = { id = o.id, label = o.label } end
    end
    out[i] = { key = d.key, name = d.name, type = d.type, options = opts, custom = d.custom }
  end
  return out
end

-- A problem with a name or label: a misuse, raised by the caller.
local Misuse = {}

local function misuse(msg) return setmetatable({ message = msg }, Misuse) end
M.is_misuse = function(e) return getmetatable(e) == Misuse end

-- The definition for `name` (a field name, or a hash as is), or nil, misuse.
local function lookup(idx, name, kind)
  local d = idx.by_name[name]
  if d then
    if d.dup then
      return nil, misuse(("custom field name '%s' is shared by %d %s fields (%s): give the hash"):format(
        name, #d.dup, kind, table.concat(d.dup, ", ")))
    end
    return d
  end
  if name:match(HASH) then return idx.by_key[name] or { key = name } end
  return nil, misuse(("unknown custom field '%s' of %s (closest: %s)"):format(name, kind,
    M.closest(name, idx.names)))
end

-- An option label (or id) of `d` as its id, or nil, misuse.
local function option_id(d, v, kind)
  if not d.by_label then return v end
  if d.by_id[v] ~= nil then return v end
  local id = d.by_label[v]
  if id ~= nil then return id end
  local labels = {}
  for _, o in ipairs(d.options) do labels[#labels + 1] = tostring(o.label) end
  return nil, misuse(("unknown option '%s' of the %s field '%s' (closest: %s)"):format(tostring(v), kind, d.name,
    M.closest(tostring(v), labels)))
end

-- The value of field `d` as the API takes it in `version`; writes into `out`
-- (v2: out[hash] = value or object; v1: hash and hash_<sub> keys).
local function encode_value(d, v, version, out, kind)
  local t = d.type
  if v == null then out[d.key] = null return end
  if t == "enum" then
    local id, e = option_id(d, v, kind)
    if id == nil then return e end
    out[d.key] = id
  elseif t == "set" then
    local list = type(v) == "table" and v or { v }
    local ids = core.array()
    for i, x in ipairs(list) do
      local id, e = option_id(d, x, kind)
      if id == nil then return e end
      ids[i] = id
    end
    out[d.key] = ids
  elseif SUBS[t] and type(v) == "table" then
    if version == "v2" then
      local obj = {}
      for k, x in pairs(v) do obj[k] = x end
      out[d.key] = obj
    else
      out[d.key] = v.value
      for _, sub in ipairs(SUBS[t]) do
        if v[sub] ~= nil then out[d.key .. "_" .. sub] = v[sub] end
      end
    end
  else
    out[d.key] = v
  end
end

--- Custom fields given by name (`named`: name or hash -> value) as the
-- request of `version` carries them: a table of hash (and v1 sub-key) ->
-- value. An unknown name reads the definitions again once. Returns the
-- table, or nil, err (a fetch failure), or raises nothing: a misuse comes
-- back as nil, misuse (M.is_misuse) for the caller to raise.
function M.encode(p, kind, version, named)
  local idx, err = M.get(p, kind)
  if not idx then return nil, err end
  local out, refreshed = {}, false
  local names = {}
  for k in pairs(named) do
    if type(k) ~= "string" then return nil, misuse("custom field keys must be strings") end
    names[#names + 1] = k
  end
  table.sort(names)
  for _, name in ipairs(names) do
    local d, e = lookup(idx, name, kind)
    if not d and not refreshed and not e.message:find("is shared by") then
      refreshed = true
      idx, err = M.get(p, kind, true)
      if not idx then return nil, err end
      d, e = lookup(idx, name, kind)
    end
    if not d then return nil, e end
    e = encode_value(d, named[name], version, out, kind)
    if e then return nil, e end
  end
  return out
end

-- A stored value of field `d` as the user reads it: labels for options.
local function decode_value(d, v)
  if v == nil or v == null or not d.by_id then return v end
  if d.type == "set" then
    local list = v
    if type(v) == "string" then
      list = {}
      for id in v:gmatch("[^,]+") do list[#list + 1] = tonumber(id) or id end
    elseif type(v) ~= "table" then
      list = { v }
    end
    local labels = core.array()
    for i, x in ipairs(list) do
      if type(x) == "table" then x = x.id end
      labels[i] = d.by_id[x] or x
    end
    return labels
  end
  if type(v) == "table" and v.id ~= nil then v = v.id end
  local label = d.by_id[v]
  if label == nil and type(v) == "string" then label = d.by_id[tonumber(v)] end
  if label == nil then return v end
  return label
end

--- Rewrites `record` in place: its custom fields (v2: under custom_fields;
-- v1: flat hash and hash_<sub> keys, removed from the top) moved to
-- record.custom_fields keyed by name, option ids as labels. Hashes without a
-- definition keep their hash as key.
function M.decode(idx, record)
  if type(record) ~= "table" then return record end
  local named = {}
  local cf = record.custom_fields
  if type(cf) == "table" and cf[1] == nil then
    for k, v in pairs(cf) do
      local d = idx.by_key[k]
      if d then
        if type(v) == "table" and SUBS[d.type] then
          local copy = {}
          for sk, sv in pairs(v) do copy[sk] = sv end
          named[d.name] = copy
        else
          named[d.name] = decode_value(d, v)
        end
      else
        named[k] = v
      end
    end
  end
  -- v1: flat keys.
  local flat = {}
  for k in pairs(record) do
    if type(k) == "string" and (k:match(HASH) or k:match(HASH_SUB)) then flat[#flat + 1] = k end
  end
  if cf == nil and #flat == 0 then return record end
  table.sort(flat)
  for _, k in ipairs(flat) do
    local v = record[k]
    record[k] = nil
    local hash, sub = k:match(HASH_SUB)
    hash = hash or k
    local d = idx.by_key[hash]
    local name = d and d.name or hash
    if d and SUBS[d.type] then
      local obj = named[name]
      if type(obj) ~= "table" then
        obj = { value = obj }
        named[name] = obj
      end
      obj[sub or "value"] = v
    elseif sub then
      record[k] = v -- a sibling key of a field we do not know as composite
    else
      named[name] = d and decode_value(d, v) or v
    end
  end
  -- v1 composite fields with no value at all come back as nil.
  for name, v in pairs(named) do
    if type(v) == "table" and v.value == nil and not getmetatable(v) and next(v) ~= nil then
      local only_null = true
      for _, x in pairs(v) do if x ~= null then only_null = false end end
      if only_null then named[name] = null end
    end
  end
  record.custom_fields = named
  return record
end

return M
