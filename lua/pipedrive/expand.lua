--- Related records added to answers (`expand = { "owner", "person", ... }`):
-- for a page of records, each named relation costs at most one request (v2's
-- `ids=` filter for persons and organizations; one cached list for users,
-- stages and pipelines), never one per record. Fetched records are cached per
-- client (`p.related`) for a TTL and bounded in number. Under api = "v1" the
-- nested objects Pipedrive already sends are used, without a request.
local core = require "pipedrive.core"
local compat = require "pipedrive.compat"
local operations = require "pipedrive.operations"

local null = core.null
local type, pairs, ipairs = type, pairs, ipairs

local M = {}

local DEFAULT_TTL = 300
local MAX_CACHED = 5000 -- records per relation kept between calls
local IDS_PER_REQUEST = 100

-- Each relation: the record keys that hold its id (v2 first, then other
-- records' spellings) and how its records are fetched.
local RELATIONS = {
  owner = { keys = { "owner_id", "user_id" }, source = "users" },
  creator = { keys = { "creator_user_id", "creator_id" }, source = "users" },
  person = { keys = { "person_id" }, source = "persons" },
  organization = { keys = { "org_id", "organization_id" }, source = "organizations" },
  stage = { keys = { "stage_id" }, source = "stages" },
  pipeline = { keys = { "pipeline_id" }, source = "pipelines" },
}
M.RELATIONS = RELATIONS

-- What the user reads of each source's records.
local SHAPE = {
  users = function(u) return { id = u.id, name = u.name, email = u.email } end,
  persons = function(r)
    return { id = r.id, name = r.name, emails = r.emails or r.email, phones = r.phones or r.phone }
  end,
  organizations = function(r) return { id = r.id, name = r.name, address = r.address } end,
  stages = function(r) return { id = r.id, name = r.name, pipeline_id = r.pipeline_id } end,
  pipelines = function(r) return { id = r.id, name = r.name } end,
}

-- v1's nested objects ({ value = id, name, email, phone, address }) as the user reads them.
local NESTED = {
  users = function(o) return { id = o.id or o.value, name = o.name, email = o.email } end,
  persons = function(o)
    return { id = o.value or o.id, name = o.name, emails = o.email or o.emails, phones = o.phone or o.phones }
  end,
  organizations = function(o) return { id = o.value or o.id, name = o.name, address = o.address } end,
}

--- Checks an `expand` value; returns the list or nil, message.
function M.check(v)
  if type(v) == "string" then v = { v } end
  if type(v) ~= "table" then return nil, "expand must be a list of relation names" end
  local names = {}
  for k in pairs(RELATIONS) do names[#names + 1] = k end
  table.sort(names)
  for _, r in ipairs(v) do
    if not RELATIONS[r] then
      return nil, ("expand: unknown relation '%s' (one of %s)"):format(tostring(r), table.concat(names, ", "))
    end
  end
  return v
end

-- The id an answer holds for relation `rel` in `record` (an id, or v1's nested object).
local function related_id(record, rel)
  for _, k in ipairs(rel.keys) do
    local v = record[k]
    if v ~= nil and v ~= null then
      if type(v) == "table" then return v.value or v.id, v, k end
      return v, nil, k
    end
  end
end

local function cache_of(p, source)
  local all = p.related
  if not all then
    all = {}
    p.related = all
  end
  local c = all[source]
  if not c then
    c = { n = 0, at = {}, rec = {} }
    all[source] = c
  end
  return c
end

local function remember(c, id, rec, now)
  if c.rec[id] == nil then
    if c.n >= MAX_CACHED then
      c.n, c.at, c.rec = 0, {}, {}
    end
    c.n = c.n + 1
  end
  c.rec[id], c.at[id] = rec, now
end

-- One request of `rname`.`fname` through the client's pipeline.
local function call(p, rname, fname, args)
  local op = operations[rname][fname]
  return p:call(rname, fname, op, args, 1)
end

-- Fills the cache of `source` for `wanted` (set of ids) not yet cached.
-- Returns true or nil, err.
local function load(p, source, wanted, now, ttl)
  local c = cache_of(p, source)
  local missing = {}
  for id in pairs(wanted) do
    if c.rec[id] == nil or now - c.at[id] >= ttl then missing[#missing + 1] = id end
  end
  if #missing == 0 then return true end
  local shape = SHAPE[source]
  if source == "users" or source == "stages" or source == "pipelines" then
    -- Small lists: read whole, once per TTL.
    if c.whole_at and now - c.whole_at < ttl then return true end
    local data, err = call(p, source, "list", source == "users" and {} or { limit = 500 })
    if data == nil then return nil, err end
    for _, r in ipairs(data) do remember(c, r.id, shape(r), now) end
    c.whole_at = now
    return true
  end
  table.sort(missing, function(a, b) return tostring(a) < tostring(b) end)
  for i = 1, #missing, IDS_PER_REQUEST do
    local ids = {}
    for j = i, math.min(#missing, i + IDS_PER_REQUEST - 1) do ids[#ids + 1] = missing[j] end
    local data, err = call(p, source, "list", { ids = ids, limit = IDS_PER_REQUEST })
    if data == nil then return nil, err end
    for _, r in ipairs(data) do remember(c, r.id, shape(r), now) end
  end
  return true
end

--- Adds the relations `names` to each record of `records` (a list) as
-- record.<relation>. Returns true or nil, err (a failed fetch).
function M.apply(p, version, names, records)
  local now, ttl = core.now(), p.cache_ttl or DEFAULT_TTL
  for _, name in ipairs(names) do
    local rel = RELATIONS[name]
    local source = rel.source
    local wanted, any = {}, false
    for _, r in ipairs(records) do
      if type(r) == "table" then
        local id, nested = related_id(r, rel)
        if id ~= nil then
          if nested and NESTED[source] then
            r[name] = NESTED[source](nested)
          else
            wanted[id] = true
            any = true
          end
        end
      end
    end
    if any then
      -- v1 has no ids filter: under v1, persons and organizations come only nested.
      if version == "v1" and (source == "persons" or source == "organizations") then
        any = false
      end
    end
    if any then
      local ok, err = load(p, source, wanted, now, ttl)
      if not ok then return nil, err end
      local c = cache_of(p, source)
      for _, r in ipairs(records) do
        if type(r) == "table" and r[name] == nil then
          local id = related_id(r, rel)
          if id ~= nil then r[name] = c.rec[id] or c.rec[compat.tointeger(id) or id] end
        end
      end
    end
  end
  return true
end

return M
