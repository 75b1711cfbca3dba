--- The sandbox's API endpoints: input checks, selection, paging and answers.
--
-- Each handler is `fn(app, ctx)` and returns `status, body` (a Lua table that
-- `json` encodes). `ctx` holds `api` ("v1"/"v2"), `q` (a check.query), `id`
-- (the path id, already checked), `body` (a check.body for POSTs) and `me`
-- (the authenticated user). Failures raise through `check.fail`.
local compat = require "pipedrive.compat"
local json = require "pipedrive.sandbox.json"
local util = require "pipedrive.sandbox.util"
local check = require "pipedrive.sandbox.check"
local shapes = require "pipedrive.sandbox.shapes"
local field_defs = require "pipedrive.sandbox.fields"

local array, null = json.array, json.null
local invalid, fail = check.invalid, check.fail

local M = {}

M.ERROR_INFO = "Please check developers.pipedrive.com"

M.RESOURCES = {
  deals = { kind = "deal", label = "Deal", filter_type = "deals" },
  persons = { kind = "person", label = "Person", filter_type = "people" },
  organizations = { kind = "organization", label = "Organization", filter_type = "org" },
  leads = { kind = "lead", label = "Lead", filter_type = "leads" },
}

------------------------------------------------------------------------------
-- Selection with a small cache: a list query walks all records once per
-- version of the data; the following pages of the same query reuse the result.
------------------------------------------------------------------------------
local CACHE_SIZE = 8

-- `live_only`: the predicate only drops deleted records (then, with none
-- deleted, the store's own array is the answer).
local function select_records(app, kind, key, pred, cmp, live_only)
  local st = app.store
  if live_only and not cmp and st.deleted_count[kind] == 0 then return st:list(kind) end
  local cache = app.list_cache
  local entry = cache[key]
  if entry and entry.version == st.version then return entry.items end
  local items, n = {}, 0
  for _, r in ipairs(st:list(kind)) do
    if pred(r) then
      n = n + 1
      items[n] = r
    end
  end
  if cmp then table.sort(items, cmp) end
  cache.n = (cache.n or 0) + 1
  if cache.n > CACHE_SIZE then
    app.list_cache = { n = 1 }
    cache = app.list_cache
  end
  cache[key] = { version = st.version, items = items }
  return items
end

------------------------------------------------------------------------------
-- Paging
------------------------------------------------------------------------------
local function offset_params(q)
  local start = q:int("start", { min = 0 }) or 0
  local limit = q:int("limit", { min = 1, clamp = 500 }) or 100
  return start, limit
end

local function offset_page(items, start, limit)
  local page = array()
  for i = start + 1, math.min(#items, start + limit) do page[#page + 1] = items[i] end
  local more = #items > start + limit
  local pagination = { start = start, limit = limit, more_items_in_collection = more }
  if more then pagination.next_start = start + limit end
  return page, pagination
end

-- next_cursor at the end of a list: Pipedrive sends null, the v2 schema
-- declares a non-nullable string; left out unless real_nulls (see shapes.lua).
local function app_none(app)
  if app.store.real_nulls then return null end
  return nil
end

local function encode_cursor(t)
  return util.b64_encode(json.encode(t))
end

local function decode_cursor(s)
  local text = util.b64_decode(s)
  local t = text and json.decode(text)
  if type(t) ~= "table" then invalid("cursor", "is not a cursor this API gave out") end
  return t
end

local function cursor_limit(q)
  return q:int("limit", { min = 1, max = 500 }) or 100
end

local function id_less(a, b) return a.id < b.id end

--- Sorting for v2 lists: by `field` (id, add_time, update_time, order_nr), ties by id.
local function v2_order(field, desc)
  if field == "id" then
    if desc then return function(a, b) return a.id > b.id end end
    return id_less
  end
  if desc then
    return function(a, b)
      local x, y = a[field], b[field]
      if x ~= y then return x > y end
      return a.id > b.id
    end
  end
  return function(a, b)
    local x, y = a[field], b[field]
    if x ~= y then return x < y end
    return a.id < b.id
  end
end

-- One page after the position the cursor names. `items` is sorted by `less`.
local function cursor_page(app, q, items, field, desc, less, limit)
  local first = 1
  local cursor = q:string("cursor")
  local dir = desc and "desc" or "asc"
  if cursor and cursor ~= "" then
    local c = decode_cursor(cursor)
    if c.field ~= field or c.sortDirection ~= dir or compat.math_type(c.id) ~= "integer" or c.fieldValue == nil then
      invalid("cursor", "does not belong to this list and sort order")
    end
    local mark = { id = c.id, [field] = c.fieldValue }
    local lo, hi = 1, #items + 1
    while lo < hi do
      local mid = compat.idiv(lo + hi, 2)
      if less(mark, items[mid]) then hi = mid else lo = mid + 1 end
    end
    first = lo
  end
  local page = array()
  local last = math.min(#items, first + limit - 1)
  for i = first, last do page[#page + 1] = items[i] end
  local next_cursor = app_none(app)
  if last < #items and #page > 0 then
    local r = page[#page]
    next_cursor = encode_cursor({ field = field, fieldValue = r[field], sortDirection = dir, id = r.id })
  end
  return page, next_cursor
end

-- Search results page by position.
local function offset_cursor_page(app, q, items, limit)
  local first = 1
  local cursor = q:string("cursor")
  if cursor and cursor ~= "" then
    local c = decode_cursor(cursor)
    if compat.math_type(c.offset) ~= "integer" or c.offset < 0 then invalid("cursor", "is not a cursor this API gave out") end
    first = c.offset + 1
  end
  local page = array()
  local last = math.min(#items, first + limit - 1)
  for i = first, last do page[#page + 1] = items[i] end
  local next_cursor = app_none(app)
  if last < #items then next_cursor = encode_cursor({ offset = last }) end
  return page, next_cursor
end

------------------------------------------------------------------------------
-- v1 sort: "title ASC, id DESC"
------------------------------------------------------------------------------
local function lower_or_nil(s) return s and util.fold(s) or nil end

local function name_of(st, kind, id)
  local r = id and st:get(kind, id)
  return r and util.fold(r.name) or nil
end

local function user_name(st, id)
  local u = id and st:user(id)
  return u and util.fold(u.name) or nil
end

local SORT_FIELDS = {
  deal = {
    id = function(r) return r.id end,
    title = function(r) return util.fold(r.title) end,
    value = function(r) return r.value end,
    currency = function(r) return r.currency end,
    status = function(r) return r.deleted and "deleted" or r.status end,
    stage_id = function(r) return r.stage_id end,
    pipeline_id = function(r) return r.pipeline_id end,
    user_id = function(r) return r.owner_id end,
    creator_user_id = function(r) return r.creator_user_id end,
    person_id = function(r) return r.person_id end,
    org_id = function(r) return r.org_id end,
    add_time = function(r) return r.add_time end,
    update_time = function(r) return r.update_time end,
    stage_change_time = function(r) return r.stage_change_time end,
    won_time = function(r) return r.won_time end,
    lost_time = function(r) return r.lost_time end,
    close_time = function(r) return r.close_time end,
    expected_close_date = function(r) return r.expected_close_date end,
    probability = function(r) return r.probability end,
    visible_to = function(r) return r.visible_to end,
    origin = function(r) return r.origin end,
    owner_name = function(r, st) return user_name(st, r.owner_id) end,
    person_name = function(r, st) return name_of(st, "person", r.person_id) end,
    org_name = function(r, st) return name_of(st, "organization", r.org_id) end,
  },
  person = {
    id = function(r) return r.id end,
    name = function(r) return util.fold(r.name) end,
    first_name = function(r) return lower_or_nil(r.first_name) end,
    last_name = function(r) return lower_or_nil(r.last_name) end,
    first_char = function(r) return shapes.first_char(r.name) end,
    owner_id = function(r) return r.owner_id end,
    org_id = function(r) return r.org_id end,
    add_time = function(r) return r.add_time end,
    update_time = function(r) return r.update_time end,
    visible_to = function(r) return r.visible_to end,
    label = function(r) return r.label_ids[1] end,
    email = function(r) return r.emails[1] and util.fold(r.emails[1].value) or nil end,
    phone = function(r) return r.phones[1] and r.phones[1].value or nil end,
    owner_name = function(r, st) return user_name(st, r.owner_id) end,
    org_name = function(r, st) return name_of(st, "organization", r.org_id) end,
  },
  organization = {
    id = function(r) return r.id end,
    name = function(r) return util.fold(r.name) end,
    first_char = function(r) return shapes.first_char(r.name) end,
    owner_id = function(r) return r.owner_id end,
    add_time = function(r) return r.add_time end,
    update_time = function(r) return r.update_time end,
    visible_to = function(r) return r.visible_to end,
    label = function(r) return r.label_ids[1] end,
    address = function(r) return r.address and lower_or_nil(r.address.value) or nil end,
    owner_name = function(r, st) return user_name(st, r.owner_id) end,
  },
  lead = {
    id = function(r) return r.id end,
    title = function(r) return util.fold(r.title) end,
    owner_id = function(r) return r.owner_id end,
    creator_id = function(r) return r.creator_id end,
    was_seen = function(r) return r.was_seen and 1 or 0 end,
    expected_close_date = function(r) return r.expected_close_date end,
    next_activity_id = function() return nil end,
    add_time = function(r) return r.add_time end,
    update_time = function(r) return r.update_time end,
  },
}
M.SORT_FIELDS = SORT_FIELDS

-- Parses a v1 sort string into a comparator (nil when absent) and a cache key.
local function v1_sort(st, kind, s)
  if s == nil or s == "" then return nil, "" end
  local fields = SORT_FIELDS[kind]
  local keys = {}
  for part in s:gmatch("[^,]+") do
    local field, dir = part:match("^%s*([%w_]+)%s*(%a*)%s*$")
    if not field then invalid("sort", ("cannot read '%s'; write it as \"field ASC, field DESC\""):format(part)) end
    if not fields[field] then
      local names = {}
      for k in pairs(fields) do names[#names + 1] = k end
      table.sort(names)
      invalid("sort", ("unknown field '%s'; sortable fields: %s"):format(field, table.concat(names, ", ")))
    end
    dir = dir:upper()
    if dir ~= "" and dir ~= "ASC" and dir ~= "DESC" then
      invalid("sort", ("direction of '%s' must be ASC or DESC"):format(field))
    end
    keys[#keys + 1] = { get = fields[field], desc = dir == "DESC", name = field .. " " .. (dir == "" and "ASC" or dir) }
  end
  if #keys == 0 then return nil, "" end
  local names = {}
  for i, k in ipairs(keys) do names[i] = k.name end
  -- Sort keys are computed once per record, not once per comparison.
  return function(items)
    local vals = {}
    for _, r in ipairs(items) do
      local v = {}
      for i, k in ipairs(keys) do v[i] = k.get(r, st) end
      vals[r] = v
    end
    table.sort(items, function(a, b)
      local va, vb = vals[a], vals[b]
      for i, k in ipairs(keys) do
        local x, y = va[i], vb[i]
        if x ~= y then
          if x == nil then return not k.desc end
          if y == nil then return k.desc end
          if k.desc then return x > y end
          return x < y
        end
      end
      return a.id < b.id
    end)
  end, table.concat(names, ",")
end

-- Like select_records, with a v1 sort applied to the selection.
local function select_sorted(app, kind, key, pred, sorter, live_only)
  local cache = app.list_cache
  local entry = cache[key]
  if entry and entry.version == app.store.version then return entry.items end
  local items = select_records(app, kind, key .. "#unsorted", pred, nil, live_only)
  if sorter then
    local copy = {}
    for i, r in ipairs(items) do copy[i] = r end
    sorter(copy)
    items = copy
  end
  app.list_cache[key] = { version = app.store.version, items = items }
  return items
end

------------------------------------------------------------------------------
-- Shared checks
------------------------------------------------------------------------------
local function filter_rule(app, filter_id, ftype)
  if not filter_id then return nil end
  local f = app.store:filter(filter_id)
  if not f then invalid("filter_id", ("filter %d not found"):format(filter_id)) end
  if f.type ~= ftype then
    invalid("filter_id", ("filter %d is a '%s' filter, not '%s'"):format(filter_id, f.type, ftype))
  end
  return app.store.FILTER_RULES[filter_id]
end

local function live_ref(app, b, name, kind, label)
  local id = b:id(name)
  if id and not app.store:live(kind, id) then invalid(name, ("%s %d not found"):format(label, id)) end
  return id
end

local function user_ref(app, b, name)
  local id = b:id(name)
  if id and not app.store:user(id) then invalid(name, ("user %d not found"):format(id)) end
  return id
end

local function v2_include(q, allowed)
  local _, set = q:list("include_fields", allowed)
  return set
end

local function v2_custom(q)
  local list, set = q:list("custom_fields")
  if list and #list > 15 then invalid("custom_fields", "at most 15 keys") end
  return set
end

local function v2_sort(q, fields)
  local sort_by = q:enum("sort_by", fields or { "id", "update_time", "add_time" }, "id")
  local dir = q:enum("sort_direction", { "asc", "desc" }, "asc")
  return sort_by, dir == "desc"
end

local function not_found(res)
  if res.kind == "lead" then
    fail(404, "requested lead not found", { error_info = "Object was not found." })
  end
  fail(404, res.label .. " not found")
end

------------------------------------------------------------------------------
-- Body normalizers: request body -> fields for store:add
------------------------------------------------------------------------------
local function contacts(b, name)
  local v = b:get(name)
  if v == nil then return nil end
  local list = v
  if type(v) == "string" then list = { v } end
  if type(list) ~= "table" then invalid(name, "must be a string or an array of {value, primary, label}") end
  local out, has_primary = {}, false
  for i, c in ipairs(list) do
    local entry
    if type(c) == "string" then
      entry = { value = c, label = "work" }
    elseif type(c) == "table" and type(c.value) == "string" then
      entry = { value = c.value, label = "work" }
      if c.label ~= nil and c.label ~= null then
        if type(c.label) ~= "string" then invalid(name, ("entry %d: label must be a string"):format(i)) end
        entry.label = c.label
      end
      local p = c.primary
      if p == "true" or p == "1" then p = true elseif p == "false" or p == "0" then p = false end
      if p ~= nil and p ~= null then
        if type(p) ~= "boolean" then invalid(name, ("entry %d: primary must be a boolean"):format(i)) end
        entry.primary = p
      end
    else
      invalid(name, ("entry %d must be a string or an object with a string value"):format(i))
    end
    if entry.value ~= "" then
      if entry.primary and has_primary then entry.primary = false end
      has_primary = has_primary or entry.primary == true
      out[#out + 1] = entry
    end
  end
  if next(list) ~= nil and list[1] == nil then invalid(name, "must be a string or an array of {value, primary, label}") end
  for i, e in ipairs(out) do
    if e.primary == nil then e.primary = (not has_primary and i == 1) end
  end
  return out
end

local function address(b, name)
  local v = b:get(name)
  if v == nil then return nil end
  if type(v) == "string" then
    if v == "" then return nil end
    return { value = v }
  end
  if type(v) ~= "table" or v[1] ~= nil then invalid(name, "must be a string or an object with a value") end
  local out = {}
  if v.value ~= nil and v.value ~= null then
    if type(v.value) ~= "string" then invalid(name, "value must be a string") end
    out.value = v.value
  end
  for _, part in ipairs(shapes.ADDRESS_PARTS) do
    local p = v[part]
    if p ~= nil and p ~= null then
      if type(p) ~= "string" then invalid(name, part .. " must be a string") end
      out[part] = p
    end
  end
  if next(out) == nil then return nil end
  return out
end

local function labels(b, api)
  if api == "v1" then
    local single = b:get("label")
    if single ~= nil and type(single) ~= "table" then return { b:id("label") } end
    return b:int_array("label") or b:int_array("label_ids")
  end
  return b:int_array("label_ids")
end

-- The record's name or title: required when adding; when updating it may be
-- left out, but not emptied.
local function name_field(b, name, opts)
  local update = opts and opts.update
  if update and b.raw[name] == null then invalid(name, "cannot be empty") end
  local v = b:string(name, { required = not update, max = 255 })
  if update and v and not v:find("%S") then invalid(name, "cannot be empty") end
  return v
end

local function normalize_deal(app, b, api, opts)
  local f = {}
  f.title = name_field(b, "title", opts)
  f.value = b:number("value", { string_ok = api == "v1" })
  local cur = b:string("currency")
  if cur then
    if not cur:match("^%a%a%a$") then invalid("currency", "must be a 3-letter currency code such as EUR") end
    f.currency = cur:upper()
  end
  f.owner_id = user_ref(app, b, api == "v1" and "user_id" or "owner_id")
  f.person_id = live_ref(app, b, "person_id", "person", "person")
  f.org_id = live_ref(app, b, "org_id", "organization", "organization")
  f.stage_id = b:id("stage_id")
  if f.stage_id and not app.store:stage(f.stage_id) then invalid("stage_id", ("stage %d not found"):format(f.stage_id)) end
  f.pipeline_id = b:id("pipeline_id")
  if f.pipeline_id and not app.store:pipeline(f.pipeline_id) then
    invalid("pipeline_id", ("pipeline %d not found"):format(f.pipeline_id))
  end
  f.status = b:enum("status", { "open", "won", "lost", "deleted" })
  f.expected_close_date = b:date("expected_close_date")
  f.probability = b:number("probability", { min = 0, max = 100, string_ok = api == "v1" })
  f.lost_reason = b:string("lost_reason")
  f.visible_to = b:visible_to()
  f.label_ids = labels(b, api)
  f.add_time = b:time("add_time")
  f.won_time = b:time("won_time")
  f.lost_time = b:time("lost_time")
  f.close_time = b:time("close_time")
  f.archive_time = b:time("archive_time")
  f.is_archived = b:bool("is_archived")
  if api == "v2" then f.is_deleted = b:bool("is_deleted") end
  f.origin_id = b:string("origin_id")
  f.channel = b:int("channel")
  f.channel_id = b:string("channel_id")
  f.custom_fields = field_defs.values(app, b, api, "deal", opts and opts.update and (opts.record or {}))
  return f
end

local MARKETING = { "no_consent", "unsubscribed", "subscribed", "archived" }

local function normalize_person(app, b, api, opts)
  local f = {}
  f.name = name_field(b, "name", opts)
  f.owner_id = user_ref(app, b, "owner_id")
  f.org_id = live_ref(app, b, "org_id", "organization", "organization")
  if api == "v1" then
    f.emails = contacts(b, "email")
    f.phones = contacts(b, "phone")
  else
    f.emails = contacts(b, "emails")
    f.phones = contacts(b, "phones")
    f.ims = contacts(b, "im")
    f.birthday = b:date("birthday")
    f.job_title = b:string("job_title")
    f.notes = b:string("notes")
    f.postal_address = address(b, "postal_address")
  end
  f.label_ids = labels(b, api)
  f.visible_to = b:visible_to()
  f.marketing_status = b:enum("marketing_status", MARKETING)
  f.add_time = b:time("add_time")
  f.custom_fields = field_defs.values(app, b, api, "person", opts and opts.update and (opts.record or {}))
  return f
end

local function normalize_org(app, b, api, opts)
  local f = {}
  f.name = name_field(b, "name", opts)
  f.owner_id = user_ref(app, b, "owner_id")
  f.label_ids = labels(b, api)
  f.visible_to = b:visible_to()
  f.add_time = b:time("add_time")
  f.address = address(b, "address")
  if api == "v2" then
    f.website = b:string("website")
    f.linkedin = b:string("linkedin")
    f.industry = b:int("industry")
    f.annual_revenue = b:int("annual_revenue")
    f.employee_count = b:int("employee_count", { min = 0 })
  end
  f.custom_fields = field_defs.values(app, b, api, "organization", opts and opts.update and (opts.record or {}))
  return f
end

local function normalize_lead(app, b, _, opts)
  local f = {}
  local update = opts and opts.update
  f.title = name_field(b, "title", opts)
  f.owner_id = user_ref(app, b, "owner_id")
  f.person_id = live_ref(app, b, "person_id", "person", "person")
  f.organization_id = live_ref(app, b, "organization_id", "organization", "organization")
  if update then f.is_archived = b:bool("is_archived") end
  if not f.person_id and not f.organization_id and not (opts and (opts.unlinked_ok or update)) then
    invalid("person_id", "a lead must be linked to a person_id or an organization_id")
  end
  local labels_v = b:get("label_ids")
  if labels_v ~= nil then
    if type(labels_v) ~= "table" then invalid("label_ids", "must be an array of lead label ids (UUIDs)") end
    f.label_ids = {}
    for i, id in ipairs(labels_v) do
      if not util.is_uuid(id) then invalid("label_ids", "must be an array of lead label ids (UUIDs)") end
      if not app.store:lead_label(id) then invalid("label_ids", ("lead label %s not found"):format(id)) end
      f.label_ids[i] = id
    end
  end
  local value = b:get("value")
  if value ~= nil then
    if type(value) ~= "table" then invalid("value", "must be an object {amount, currency} or null") end
    local amount, currency = value.amount, value.currency
    if type(amount) ~= "number" then invalid("value", "amount is required and must be a number") end
    if type(currency) ~= "string" or not currency:match("^%a%a%a$") then
      invalid("value", "currency is required and must be a 3-letter code")
    end
    f.value = { amount = amount, currency = currency:upper() }
  end
  f.expected_close_date = b:date("expected_close_date")
  f.visible_to = b:visible_to()
  f.was_seen = b:bool("was_seen")
  f.origin_id = b:string("origin_id")
  f.channel = b:int("channel")
  f.channel_id = b:string("channel_id")
  f.custom_fields = field_defs.values(app, b, "v1", "lead", opts and opts.update and (opts.record or {}))
  return f
end

M.NORMALIZE = {
  deal = normalize_deal, person = normalize_person, organization = normalize_org, lead = normalize_lead,
}

------------------------------------------------------------------------------
-- Lists
------------------------------------------------------------------------------
local DEAL_STATUS_V1 = { "open", "won", "lost", "deleted", "all_not_deleted" }
local DEAL_STATUS_V2 = { "open", "won", "lost", "deleted" }
local DEAL_INCLUDE = {
  "next_activity_id", "last_activity_id", "first_won_time", "products_count", "files_count", "notes_count",
  "followers_count", "email_messages_count", "activities_count", "done_activities_count",
  "undone_activities_count", "participants_count", "last_incoming_mail_time", "last_outgoing_mail_time",
  "smart_bcc_email", "source_lead_id",
}
local PERSON_INCLUDE = {
  "next_activity_id", "last_activity_id", "open_deals_count", "related_open_deals_count", "closed_deals_count",
  "related_closed_deals_count", "participant_open_deals_count", "participant_closed_deals_count",
  "email_messages_count", "activities_count", "done_activities_count", "undone_activities_count", "files_count",
  "notes_count", "followers_count", "won_deals_count", "related_won_deals_count", "lost_deals_count",
  "related_lost_deals_count", "last_incoming_mail_time", "last_outgoing_mail_time", "marketing_status",
  "doi_status", "smart_bcc_email",
}
local ORG_INCLUDE = {
  "next_activity_id", "last_activity_id", "open_deals_count", "related_open_deals_count", "closed_deals_count",
  "related_closed_deals_count", "email_messages_count", "people_count", "activities_count",
  "done_activities_count", "undone_activities_count", "files_count", "notes_count", "followers_count",
  "won_deals_count", "related_won_deals_count", "lost_deals_count", "related_lost_deals_count", "smart_bcc_email",
}
local INCLUDE = { deal = DEAL_INCLUDE, person = PERSON_INCLUDE, organization = ORG_INCLUDE }

local function v1_list_answer(pagination, data, related)
  local body = { success = true, data = data, additional_data = { pagination = pagination } }
  if related then body.related_objects = related end
  return 200, body
end

local function map(page, fn, ...)
  local out = array()
  for i, r in ipairs(page) do out[i] = fn(r, ...) end
  return out
end

local function empty_v1_data(app, data)
  -- Pipedrive v1 answers an empty list with data null; the schemas say array.
  if #data == 0 and app.store.real_nulls then return null end
  return data
end

function M.list_deals_v1(app, ctx)
  local q, st = ctx.q, app.store
  local filter_id = q:id("filter_id")
  local rule = filter_rule(app, filter_id, "deals")
  local owned = q:bool("owned_by_you")
  local user_id = q:id("user_id")
  local stage_id = q:id("stage_id")
  local status = q:enum("status", DEAL_STATUS_V1, "all_not_deleted")
  local sorter, sort_key = v1_sort(st, "deal", q:string("sort"))
  local start, limit = offset_params(q)
  local owner
  if not rule then
    if owned then owner = ctx.me.id elseif user_id then owner = user_id end
  end
  local function pred(d)
    if status == "deleted" then
      if not d.deleted then return false end
    elseif d.deleted then
      return false
    elseif status ~= "all_not_deleted" and d.status ~= status then
      return false
    end
    if owner and d.owner_id ~= owner then return false end
    if stage_id and d.stage_id ~= stage_id then return false end
    if rule and not rule(d) then return false end
    return true
  end
  local key = table.concat({ "v1deal", status, tostring(owner), tostring(stage_id), tostring(filter_id), sort_key }, "|")
  local live_only = status == "all_not_deleted" and not owner and not stage_id and not rule
  local items = select_sorted(app, "deal", key, pred, sorter, live_only)
  local page, pagination = offset_page(items, start, limit)
  local data = map(page, function(d) return shapes.deal_v1(st, d) end)
  return v1_list_answer(pagination, empty_v1_data(app, data), shapes.related(st, "deal", page))
end

local function since_until(q)
  return q:time("updated_since"), q:time("updated_until")
end

-- Whether any deal is archived (cached per version of the data): without one, the
-- default list may still be the store's own array.
local function any_archived(app)
  local st = app.store
  local memo = app.archived_memo
  if memo and memo.version == st.version then return memo.any end
  local any = false
  for _, d in ipairs(st:list("deal")) do
    if d.is_archived then any = true break end
  end
  app.archived_memo = { version = st.version, any = any }
  return any
end

--- GET /api/v2/deals (archived deals left out) and, with `archived`, /api/v2/deals/archived.
function M.list_deals_v2(app, ctx, _, archived)
  archived = archived == true
  local q, st = ctx.q, app.store
  local filter_id = q:id("filter_id")
  local rule = filter_rule(app, filter_id, "deals")
  local ids = q:ids("ids", 100)
  local owner_id, person_id, org_id = q:id("owner_id"), q:id("person_id"), q:id("org_id")
  local pipeline_id, stage_id = q:id("pipeline_id"), q:id("stage_id")
  local status_list, status_set = q:list("status", DEAL_STATUS_V2)
  local since, till = since_until(q)
  local sort_by, desc = v2_sort(q)
  local include = v2_include(q, DEAL_INCLUDE)
  local custom = v2_custom(q)
  local option_labels = q:bool("include_option_labels")
  q:bool("include_labels")
  local limit = cursor_limit(q)
  local pred
  if rule then
    pred = function(d) return not d.deleted and (d.is_archived == true) == archived and rule(d) end
  else
    pred = function(d)
      if (d.is_archived == true) ~= archived then return false end
      if status_set then
        if d.deleted then
          if not status_set.deleted then return false end
        elseif not status_set[d.status] then
          return false
        end
      elseif d.deleted then
        return false
      end
      if ids and not ids[d.id] then return false end
      if owner_id and d.owner_id ~= owner_id then return false end
      if person_id and d.person_id ~= person_id then return false end
      if org_id and d.org_id ~= org_id then return false end
      if pipeline_id and d.pipeline_id ~= pipeline_id then return false end
      if stage_id and d.stage_id ~= stage_id then return false end
      if since and d.update_time < since then return false end
      if till and d.update_time >= till then return false end
      return true
    end
  end
  local less = v2_order(sort_by, desc)
  local key = table.concat({ "v2deal", tostring(archived), tostring(filter_id), q.raw.ids or "", tostring(owner_id),
    tostring(person_id), tostring(org_id), tostring(pipeline_id), tostring(stage_id), table.concat(status_list or {}, ","),
    tostring(since), tostring(till), sort_by, tostring(desc) }, "|")
  local live_only = not rule and not status_set and not ids and not owner_id and not person_id and not org_id
    and not pipeline_id and not stage_id and not since and not till
    and not archived and not any_archived(app)
  local items = select_records(app, "deal", key, pred, (sort_by ~= "id" or desc) and less or nil, live_only)
  local page, next_cursor = cursor_page(app, q, items, sort_by, desc, less, limit)
  local opts = { include = include, custom_fields = custom, option_labels = option_labels }
  return 200, { success = true, data = map(page, function(d) return shapes.deal_v2(st, d, opts) end),
                additional_data = { next_cursor = next_cursor } }
end

local function first_char_param(q)
  local c = q:string("first_char")
  if c == nil or c == "" then return nil end
  if compat.utf8_len(c) ~= 1 then invalid("first_char", "must be a single character") end
  return util.fold(c)
end

-- v1 persons and organizations.
function M.list_archived_deals_v2(app, ctx, res)
  return M.list_deals_v2(app, ctx, res, true)
end

function M.list_contacts_v1(app, ctx, res)
  local q, st, kind = ctx.q, app.store, res.kind
  local filter_id = q:id("filter_id")
  local rule = filter_rule(app, filter_id, res.filter_type)
  local user_id = q:id("user_id")
  local fc = first_char_param(q)
  local sorter, sort_key = v1_sort(st, kind, q:string("sort"))
  local start, limit = offset_params(q)
  local owner = not rule and user_id or nil
  local function pred(r)
    if r.deleted then return false end
    if owner and r.owner_id ~= owner then return false end
    if fc and util.fold(shapes.first_char(r.name)) ~= fc then return false end
    if rule and not rule(r) then return false end
    return true
  end
  local key = table.concat({ "v1" .. kind, tostring(owner), tostring(filter_id), fc or "", sort_key }, "|")
  local items = select_sorted(app, kind, key, pred, sorter, not owner and not fc and not rule)
  local page, pagination = offset_page(items, start, limit)
  local shape = kind == "person" and shapes.person_v1 or shapes.org_v1
  local data = map(page, function(r) return shape(st, r) end)
  return v1_list_answer(pagination, empty_v1_data(app, data), shapes.related(st, kind, page))
end

-- v2 persons and organizations.
function M.list_contacts_v2(app, ctx, res)
  local q, st, kind = ctx.q, app.store, res.kind
  local filter_id = q:id("filter_id")
  local rule = filter_rule(app, filter_id, res.filter_type)
  local ids = q:ids("ids", 100)
  local owner_id = q:id("owner_id")
  local org_id, deal_id
  if kind == "person" then org_id, deal_id = q:id("org_id"), q:id("deal_id") end
  local since, till = since_until(q)
  local sort_by, desc = v2_sort(q)
  local include = v2_include(q, INCLUDE[kind])
  local custom = v2_custom(q)
  local option_labels = q:bool("include_option_labels")
  q:bool("include_labels")
  local limit = cursor_limit(q)
  local deal_person = false
  if deal_id then
    local d = st:live("deal", deal_id)
    deal_person = d and d.person_id or false
  end
  local pred
  if rule then
    pred = function(r) return not r.deleted and rule(r) end
  else
    pred = function(r)
      if r.deleted then return false end
      if ids and not ids[r.id] then return false end
      if owner_id and r.owner_id ~= owner_id then return false end
      if org_id and r.org_id ~= org_id then return false end
      if deal_id and r.id ~= deal_person then return false end
      if since and r.update_time < since then return false end
      if till and r.update_time >= till then return false end
      return true
    end
  end
  local less = v2_order(sort_by, desc)
  local key = table.concat({ "v2" .. kind, tostring(filter_id), q.raw.ids or "", tostring(owner_id), tostring(org_id),
    tostring(deal_id), tostring(since), tostring(till), sort_by, tostring(desc) }, "|")
  local live_only = not rule and not ids and not owner_id and not org_id and not deal_id and not since and not till
  local items = select_records(app, kind, key, pred, (sort_by ~= "id" or desc) and less or nil, live_only)
  local page, next_cursor = cursor_page(app, q, items, sort_by, desc, less, limit)
  local shape = kind == "person" and shapes.person_v2 or shapes.org_v2
  local opts = { include = include, custom_fields = custom, option_labels = option_labels }
  return 200, { success = true, data = map(page, function(r) return shape(st, r, opts) end),
                additional_data = { next_cursor = next_cursor } }
end

local LEAD_SORT = { "id", "title", "owner_id", "creator_id", "was_seen", "expected_close_date", "next_activity_id",
                    "add_time", "update_time" }

function M.list_leads_v1(app, ctx, _, archived)
  local q, st = ctx.q, app.store
  local filter_id = q:id("filter_id")
  local rule = filter_rule(app, filter_id, "leads")
  local owner_id, person_id, org_id = q:id("owner_id"), q:id("person_id"), q:id("organization_id")
  local since = q:time("updated_since")
  local sort = q:string("sort")
  if sort and sort ~= "" then
    for part in sort:gmatch("[^,]+") do
      local field = part:match("^%s*([%w_]+)")
      if not field or not check.in_list(LEAD_SORT, field) then invalid("sort", check.one_of(LEAD_SORT)) end
    end
  end
  local sorter, sort_key = v1_sort(st, "lead", sort)
  local start, limit = offset_params(q)
  -- archived_status: gone from Pipedrive's spec in 2025; accepted and ignored.
  if rule then owner_id, person_id, org_id = nil, nil, nil end
  local function pred(l)
    if l.is_archived ~= archived then return false end
    if owner_id and l.owner_id ~= owner_id then return false end
    if person_id and l.person_id ~= person_id then return false end
    if org_id and l.organization_id ~= org_id then return false end
    if since and l.update_time < since then return false end
    if rule and not rule(l) then return false end
    return true
  end
  local key = table.concat({ "v1lead", tostring(archived), tostring(owner_id), tostring(person_id), tostring(org_id),
    tostring(filter_id), tostring(since), sort_key }, "|")
  local items = select_sorted(app, "lead", key, pred, sorter)
  local page, pagination = offset_page(items, start, limit)
  local data = map(page, function(l) return shapes.lead_v1(st, l) end)
  return v1_list_answer(pagination, empty_v1_data(app, data))
end

function M.list_archived_leads_v1(app, ctx, res)
  return M.list_leads_v1(app, ctx, res, true)
end

function M.list(app, ctx, res)
  if res.kind == "deal" then
    return (ctx.api == "v1" and M.list_deals_v1 or M.list_deals_v2)(app, ctx)
  elseif res.kind == "lead" then
    return M.list_leads_v1(app, ctx, res, false)
  end
  return (ctx.api == "v1" and M.list_contacts_v1 or M.list_contacts_v2)(app, ctx, res)
end

------------------------------------------------------------------------------
-- Get, add, delete
------------------------------------------------------------------------------
local function dropbox(app, what)
  return ("%s+%s@pipedrivemail.com"):format(app.store.company.domain, what)
end

function M.get(app, ctx, res)
  local st, kind = app.store, res.kind
  local r = st:live(kind, ctx.id)
  if not r then not_found(res) end
  if kind == "lead" then
    return 200, { success = true, data = shapes.lead_v1(st, r) }
  end
  if ctx.api == "v2" then
    local opts = { include = v2_include(ctx.q, INCLUDE[kind]), custom_fields = v2_custom(ctx.q),
                   option_labels = ctx.q:bool("include_option_labels") }
    local shape = ({ deal = shapes.deal_v2, person = shapes.person_v2, organization = shapes.org_v2 })[kind]
    return 200, { success = true, data = shape(st, r, opts) }
  end
  local body = { success = true, related_objects = shapes.related(st, kind, { r }) }
  if kind == "deal" then
    body.data = shapes.deal_v1(st, r, true)
    body.additional_data = { dropbox_email = dropbox(app, "deal" .. r.id) }
  elseif kind == "person" then
    body.data = shapes.person_v1(st, r)
    body.additional_data = { dropbox_email = dropbox(app, "person" .. r.id) }
  else
    body.data = shapes.org_v1(st, r, true)
    local owner = st:user(r.owner_id)
    body.additional_data = {
      dropbox_email = dropbox(app, "org" .. r.id),
      followers = { [tostring(owner.id)] = { id = owner.id, user_id = owner.id, name = owner.name,
                                               email = owner.email } },
    }
  end
  return 200, body
end

-- The answer to an add (v1 201, v2 200) or an update (200): the record in the version's shape.
local function saved(app, kind, api, r, v1_status)
  local st = app.store
  if kind == "lead" then
    return v1_status, { success = true, data = shapes.lead_v1(st, r) }
  end
  if api == "v2" then
    local shape = ({ deal = shapes.deal_v2, person = shapes.person_v2, organization = shapes.org_v2 })[kind]
    return 200, { success = true, data = shape(st, r) }
  end
  local shape = ({ deal = shapes.deal_v1, person = shapes.person_v1, organization = shapes.org_v1 })[kind]
  local related = shapes.related(st, kind, { r })
  if kind == "person" then related = { user = related.user } end
  return v1_status, { success = true, data = shape(st, r), related_objects = related }
end

function M.add(app, ctx, res)
  local kind = res.kind
  local fields = M.NORMALIZE[kind](app, ctx.body, ctx.api)
  local r = app.store:add(kind, fields)
  app.hooks:publish(app.hooks:prepare(kind, "create"), r)
  return saved(app, kind, ctx.api, r, 201)
end

-- Body fields an update may set to null to unset them.
local CLEARABLE = {
  deal = { "person_id", "org_id", "expected_close_date", "probability", "lost_reason", "origin_id", "channel",
           "channel_id" },
  person = { "org_id", "birthday", "job_title", "notes", "postal_address" },
  organization = { "address", "website", "linkedin", "industry", "annual_revenue", "employee_count" },
  lead = { "person_id", "organization_id", "value", "expected_close_date", "origin_id", "channel", "channel_id" },
}
M.CLEARABLE = CLEARABLE

--- The fields and the set of cleared names of an update body, checked like an
-- add (nothing required). Raises before anything changes.
function M.update_fields(app, ctx, kind, record)
  local b = ctx.body
  local fields = M.NORMALIZE[kind](app, b, ctx.api, { update = true, record = record and record.custom_fields })
  local clear = {}
  for _, name in ipairs(CLEARABLE[kind] or {}) do
    if b.raw[name] == null then clear[name] = true end
  end
  if b.raw.label_ids == null or (ctx.api == "v1" and b.raw.label == null) then fields.label_ids = {} end
  return fields, clear
end

-- PATCH /api/v2/x/{id}, PUT /v1/x/{id}, PATCH /v1/leads/{id}.
function M.update(app, ctx, res)
  local st, kind = app.store, res.kind
  local r = st:live(kind, ctx.id)
  if not r then not_found(res) end
  local fields, clear = M.update_fields(app, ctx, kind, r)
  if kind == "lead" then
    local person = not clear.person_id and (fields.person_id or r.person_id)
    local org = not clear.organization_id and (fields.organization_id or r.organization_id)
    if not person and not org then
      invalid("person_id", "a lead must stay linked to a person_id or an organization_id")
    end
  end
  local ev = app.hooks:prepare(kind, "change", r)
  st:update(kind, r, fields, clear)
  app.hooks:publish(ev, r)
  return saved(app, kind, ctx.api, r, 200)
end

function M.delete(app, ctx, res)
  local st, kind = app.store, res.kind
  local r = st:live(kind, ctx.id)
  if not r then not_found(res) end
  local ev = app.hooks:prepare(kind, "delete", r)
  st:delete(kind, ctx.id)
  app.hooks:publish(ev, nil)
  return 200, { success = true, data = { id = r.id } }
end

------------------------------------------------------------------------------
-- Search
------------------------------------------------------------------------------
local SEARCH = {
  deal = { fields = { "custom_fields", "notes", "title" }, include = { "deal.cc_email" }, main = "title" },
  person = { fields = { "custom_fields", "email", "notes", "phone", "name" }, include = { "person.picture" },
             main = "name" },
  organization = { fields = { "address", "custom_fields", "notes", "name" }, include = {}, main = "name" },
  lead = { fields = { "custom_fields", "notes", "title" }, include = { "lead.was_seen" }, main = "title" },
}

local function custom_texts(r)
  local out = {}
  for _, v in pairs(r.custom_fields) do
    if type(v) == "string" or type(v) == "number" then out[#out + 1] = tostring(v) end
  end
  return out
end

local function contact_texts(list)
  local out = {}
  for i, c in ipairs(list) do out[i] = c.value end
  return out
end

-- Field name -> the texts a record offers to search.
local SEARCH_TEXTS = {
  title = function(r) return { r.title } end,
  name = function(r) return { r.name } end,
  notes = function(r) return { r.notes } end,
  custom_fields = custom_texts,
  email = function(r) return contact_texts(r.emails) end,
  phone = function(r) return contact_texts(r.phones) end,
  address = function(r) return { r.address and r.address.value } end,
}

-- Folded texts per record and field, kept while the record lives.
local folded = setmetatable({}, { __mode = "k" })

local function texts_of(r, field)
  local per = folded[r]
  if not per then
    per = {}
    folded[r] = per
  end
  local t = per[field]
  if not t then
    t = {}
    for _, s in pairs(SEARCH_TEXTS[field](r)) do
      if type(s) == "string" and s ~= "" then t[#t + 1] = util.fold(s) end
    end
    per[field] = t
  end
  return t
end

local function text_score(text, term, exact)
  if text == term then return 1 end
  if exact then return nil end
  local i = text:find(term, 1, true)
  if not i then return nil end
  if i == 1 then return 0.8 end
  if text:sub(i - 1, i - 1):match("[%s%p]") then return 0.6 end
  return 0.4
end

function M.search(app, ctx, res)
  local q, st, kind = ctx.q, app.store, res.kind
  local spec = SEARCH[kind]
  local term = q:string("term")
  if term == nil or not term:find("%S") then invalid("term", "is required") end
  term = term:match("^%s*(.-)%s*$")
  local exact = q:bool("exact_match") or false
  local len = compat.utf8_len(term) or #term
  if len < (exact and 1 or 2) then
    invalid("term", "must be at least 2 characters long (1 when exact_match is true)")
  end
  local fields = q:list("fields", spec.fields) or spec.fields
  local _, include = q:list("include_fields", spec.include)
  local person_id, org_id, status
  if kind == "deal" or kind == "lead" then person_id = q:id("person_id") end
  if kind ~= "organization" then org_id = q:id("organization_id") end
  if kind == "deal" then status = q:enum("status", { "open", "won", "lost" }) end
  local cursor_mode = ctx.api == "v2"
  local start, limit
  if cursor_mode then
    start, limit = 0, cursor_limit(q)
  else
    start, limit = offset_params(q)
  end

  local needle = util.fold(term)
  local hits = {}
  for pos, r in ipairs(st:list(kind)) do
    if not r.deleted
      and (not person_id or r.person_id == person_id)
      and (not org_id or (r.org_id or r.organization_id) == org_id)
      and (not status or r.status == status) then
      local best
      for _, field in ipairs(fields) do
        local weight = field == spec.main and 1 or 0.9
        for _, text in ipairs(texts_of(r, field)) do
          local s = text_score(text, needle, exact)
          if s and (not best or s * weight > best) then best = s * weight end
        end
      end
      if best then hits[#hits + 1] = { score = best, pos = pos, r = r } end
    end
  end
  table.sort(hits, function(a, b)
    if a.score ~= b.score then return a.score > b.score end
    return a.pos < b.pos
  end)

  local item = ({ deal = shapes.deal_item, person = shapes.person_item, organization = shapes.org_item,
                  lead = shapes.lead_item })[kind]
  local function render(page)
    local items = array()
    for i, h in ipairs(page) do
      items[i] = { result_score = math.floor(h.score * 10000 + 0.5) / 10000, item = item(st, h.r, include) }
    end
    return { items = items }
  end
  if cursor_mode then
    local page, next_cursor = offset_cursor_page(app, q, hits, limit)
    return 200, { success = true, data = render(page), additional_data = { next_cursor = next_cursor } }
  end
  local page, pagination = offset_page(hits, start, limit)
  return 200, { success = true, data = render(page), additional_data = { pagination = pagination } }
end

------------------------------------------------------------------------------
-- Lookups: users, filters, stages, pipelines, lead labels, currencies
------------------------------------------------------------------------------
function M.users(app)
  local st = app.store
  return 200, { success = true, data = map(st.users, function(u) return shapes.user_v1(st, u) end) }
end

local FILTER_TYPES = { "deals", "leads", "org", "people", "products", "activity", "projects" }

function M.filters(app, ctx)
  local st = app.store
  local ftype = ctx.q:enum("type", FILTER_TYPES)
  local data = array()
  for _, f in ipairs(st.filters) do
    if not ftype or f.type == ftype then data[#data + 1] = shapes.filter_v1(st, f) end
  end
  return 200, { success = true, data = data }
end

function M.stages(app, ctx)
  local q, st = ctx.q, app.store
  local pipeline_id = q:id("pipeline_id")
  local items = {}
  for _, s in ipairs(st.stages) do
    if not pipeline_id or s.pipeline_id == pipeline_id then items[#items + 1] = s end
  end
  if ctx.api == "v1" then
    local start, limit = offset_params(q)
    local page, pagination = offset_page(items, start, limit)
    return v1_list_answer(pagination, map(page, function(s) return shapes.stage_v1(st, s) end))
  end
  local sort_by, desc = v2_sort(q, { "id", "update_time", "add_time", "order_nr" })
  local limit = cursor_limit(q)
  local less = v2_order(sort_by, desc)
  table.sort(items, less)
  local page, next_cursor = cursor_page(app, q, items, sort_by, desc, less, limit)
  return 200, { success = true, data = map(page, function(s) return shapes.stage_v2(st, s) end),
                additional_data = { next_cursor = next_cursor } }
end

function M.pipelines(app, ctx)
  local q, st = ctx.q, app.store
  if ctx.api == "v1" then
    return 200, { success = true, data = map(st.pipelines, function(p) return shapes.pipeline_v1(st, p) end) }
  end
  local sort_by, desc = v2_sort(q)
  local limit = cursor_limit(q)
  local less = v2_order(sort_by, desc)
  local items = {}
  for i, p in ipairs(st.pipelines) do items[i] = p end
  table.sort(items, less)
  local page, next_cursor = cursor_page(app, q, items, sort_by, desc, less, limit)
  return 200, { success = true, data = map(page, function(p) return shapes.pipeline_v2(st, p) end),
                additional_data = { next_cursor = next_cursor } }
end

function M.lead_labels(app)
  local st = app.store
  return 200, { success = true, data = map(st.lead_labels, function(l) return shapes.lead_label_v1(st, l) end) }
end

-- For the handlers in other files (activities).
M.helpers = {
  select_records = select_records, offset_params = offset_params, offset_page = offset_page,
  cursor_page = cursor_page, cursor_limit = cursor_limit, v2_order = v2_order, v2_sort = v2_sort,
  filter_rule = filter_rule, live_ref = live_ref, user_ref = user_ref, v2_include = v2_include,
  not_found = not_found, address = address, app_none = app_none, map = map, v1_list_answer = v1_list_answer,
  empty_v1_data = empty_v1_data, since_until = since_until,
}

function M.currencies(app, ctx)
  local st = app.store
  local term = ctx.q:string("term")
  term = term and term ~= "" and util.fold(term) or nil
  local data = array()
  for _, c in ipairs(st.currencies) do
    if not term or util.fold(c.code):find(term, 1, true) or util.fold(c.name):find(term, 1, true) then
      data[#data + 1] = shapes.currency_v1(st, c)
    end
  end
  return 200, { success = true, data = data }
end

return M
