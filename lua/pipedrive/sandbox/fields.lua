--- Field definitions and custom field values: /v1/{deal,person,organization,product,activity}Fields
-- (and GET /v1/leadFields), /api/v2/{...}Fields with their /options, and the checks and renderings of
-- custom field values on records.
--
-- A company's fields per kind live in the store (`st.field_defs[kind]`, seeded by `seed` on every
-- reset): the standard fields Pipedrive lists (not custom: edit_flag false, key = the record's
-- property) and the custom fields added through the API (key: 40 hex characters). Leads use the
-- deal fields. A stored custom value is kept in one canonical form, the v2 one:
--   varchar/varchar_auto/text/phone: string   double: number   int: integer   date: "YYYY-MM-DD"
--   time: "HH:MM:SS"   enum: option id   set: array of option ids   user/org/people: an id
--   monetary: { value, currency }   daterange/timerange: { value, until }   address: { value, <parts> } (v2 migration guide)
-- v1 writes and reads them flat: `key` plus `key_currency` (monetary), `key_until` (ranges),
-- `key_<part>` (address; `key_formatted_address` too); enum as the id, set as "id,id" in answers.
-- v2 answers carry every custom field of the kind under `custom_fields` (null when unset).
local compat = require "pipedrive.compat"
local json = require "pipedrive.sandbox.json"
local util = require "pipedrive.sandbox.util"
local time = require "pipedrive.sandbox.time"
local check = require "pipedrive.sandbox.check"

local array, null = json.array, json.null
local invalid, fail = check.invalid, check.fail

local M = {}

-- Path word -> kind; leadFields (v1, read only) shows the deal fields.
M.PATHS = { dealFields = "deal", personFields = "person", organizationFields = "organization",
            productFields = "product", activityFields = "activity", leadFields = "deal" }
-- Kinds whose fields the API may change (activity fields are read only in both files).
local WRITABLE = { deal = true, person = true, organization = true, product = true }
-- Record kind -> the kind of its field definitions.
local DEF_KIND = { deal = "deal", lead = "deal", person = "person", organization = "organization",
                   product = "product", activity = "activity" }

M.ADDRESS_PARTS = { "subpremise", "street_number", "route", "sublocality", "locality",
                    "admin_area_level_1", "admin_area_level_2", "country", "postal_code", "formatted_address" }

-- The types a custom field may have (the v2 add body's enum; the v1 file's is the same plus visible_to).
local CUSTOM_TYPES = { "varchar", "text", "double", "phone", "date", "daterange", "time", "timerange", "set",
                       "enum", "varchar_auto", "address", "monetary", "org", "people", "user" }
local CUSTOM_TYPE_SET = {}
for _, t in ipairs(CUSTOM_TYPES) do CUSTOM_TYPE_SET[t] = true end

local SUBFIELDS = {
  monetary = { { "value", "Amount", "double" }, { "currency", "Currency", "varchar" } },
  daterange = { { "value", "Start date", "date" }, { "until", "End date", "date" } },
  timerange = { { "value", "Start time", "time" }, { "until", "End time", "time" } },
}

-- The standard fields Pipedrive lists per kind: key, name, type, options (built-in option ids are strings).
local STANDARD = {
  deal = {
    { "id", "ID", "double" }, { "title", "Title", "varchar" }, { "creator_user_id", "Creator", "user" },
    { "owner_id", "Owner", "user" }, { "value", "Value", "monetary" }, { "currency", "Currency", "varchar" },
    { "org_id", "Organization", "org" }, { "person_id", "Contact person", "people" },
    { "pipeline_id", "Pipeline", "double" }, { "stage_id", "Stage", "double" },
    { "status", "Status", "enum", { { "open", "Open" }, { "won", "Won" }, { "lost", "Lost" },
                                      { "deleted", "Deleted" } } },
    { "probability", "Probability", "double" }, { "lost_reason", "Lost reason", "varchar" },
    { "visible_to", "Visible to", "visible_to" }, { "label_ids", "Label", "set" },
    { "expected_close_date", "Expected close date", "date" }, { "add_time", "Deal created", "date" },
    { "update_time", "Update time", "date" }, { "won_time", "Won time", "date" }, { "lost_time", "Lost time", "date" },
    { "close_time", "Deal closed on", "date" },
  },
  person = {
    { "id", "ID", "double" }, { "name", "Name", "varchar" }, { "first_name", "First name", "varchar" },
    { "last_name", "Last name", "varchar" }, { "owner_id", "Owner", "user" }, { "org_id", "Organization", "org" },
    { "emails", "Email", "varchar" }, { "phones", "Phone", "phone" }, { "label_ids", "Labels", "set" },
    { "visible_to", "Visible to", "visible_to" }, { "add_time", "Person created", "date" },
    { "update_time", "Update time", "date" },
  },
  organization = {
    { "id", "ID", "double" }, { "name", "Name", "varchar" }, { "owner_id", "Owner", "user" },
    { "address", "Address", "address" }, { "label_ids", "Labels", "set" },
    { "visible_to", "Visible to", "visible_to" }, { "add_time", "Organization created", "date" },
    { "update_time", "Update time", "date" },
  },
  product = {
    { "id", "ID", "double" }, { "name", "Name", "varchar" }, { "code", "Product code", "varchar" },
    { "unit", "Unit", "varchar" }, { "tax", "Tax", "double" }, { "prices", "Unit prices", "varchar" },
    { "owner_id", "Owner", "user" }, { "visible_to", "Visible to", "varchar" },
    { "description", "Description", "text" },
  },
  activity = {
    { "id", "ID", "double" }, { "subject", "Subject", "varchar" }, { "type", "Type", "varchar" },
    { "owner_id", "Assigned to user", "user" }, { "due_date", "Due date", "date" },
    { "due_time", "Due time", "time" }, { "duration", "Duration", "time" }, { "deal_id", "Deal", "double" },
    { "person_id", "Contact person", "people" }, { "org_id", "Organization", "org" },
    { "note", "Note", "text" }, { "done", "Done", "enum", { { "0", "Not done" }, { "1", "Done" } } },
  },
}

------------------------------------------------------------------------------
-- Definitions in the store
------------------------------------------------------------------------------
local function next_id(st, name)
  st[name] = st[name] + 1
  return st[name]
end

-- A 40-hex-character key, unique in the store: derived from a counter and the name, so the
-- same steps give the same keys (specs may rely on it only through the API).
local function new_key(st, kind, name)
  local h, out = 5381, {}
  local seed = ("%s|%s|%d"):format(kind, name, st.field_seq)
  for i = 1, 5 do
    for c in (seed .. i):gmatch(".") do h = (h * 33 + c:byte()) % 4294967291 end
    out[i] = ("%08x"):format(h)
  end
  return table.concat(out)
end

-- A definition record. opts: custom, options (list of labels or {id,label}), user id, time.
local function make_field(st, kind, key, name, ftype, opts)
  local now = opts.time or st:now()
  local f = { id = next_id(st, "field_seq"), key = key, name = name, field_type = ftype, custom = opts.custom,
              add_time = now, update_time = now, order_nr = #st.field_defs[kind] + 1, user_id = opts.user_id,
              add_visible = opts.add_visible, description = opts.description, kind = kind }
  if opts.options then
    f.options = {}
    for i, o in ipairs(opts.options) do
      if type(o) == "table" then
        f.options[i] = { id = o[1], label = o[2] }
      else
        f.options[i] = { id = next_id(st, "option_seq"), label = o, add_time = now, update_time = now }
      end
    end
  end
  return f
end

local function add_def(st, kind, f)
  local list = st.field_defs[kind]
  list[#list + 1] = f
  st.field_by_key[kind][f.key] = f
end

--- Seeds the standard fields of every kind into a store (called by store:reset).
function M.seed(st, seed_time)
  st.field_defs, st.field_by_key = {}, {}
  st.field_seq, st.option_seq = 12000, 0
  for kind, list in pairs(STANDARD) do
    st.field_defs[kind], st.field_by_key[kind] = {}, {}
    for _, s in ipairs(list) do
      add_def(st, kind, make_field(st, kind, s[1], s[2], s[3], { custom = false, options = s[4], time = seed_time }))
    end
  end
end

--- The definitions of a record kind (leads: the deal fields), in order.
function M.defs(st, kind)
  return st.field_defs[DEF_KIND[kind] or kind] or {}
end

--- The custom definitions of a record kind.
local function custom_defs(st, kind)
  local out = {}
  for _, f in ipairs(M.defs(st, kind)) do
    if f.custom then out[#out + 1] = f end
  end
  return out
end

--- Adds a custom field (used by the API and by the `--custom-fields` seed); returns it.
function M.add_custom(st, kind, name, ftype, opts)
  opts = opts or {}
  local key = new_key(st, kind, name)
  local f = make_field(st, kind, key, name, ftype, { custom = true, options = opts.options, user_id = opts.user_id,
                                                     add_visible = opts.add_visible, description = opts.description })
  add_def(st, kind, f)
  st:touch()
  return f
end

-- The custom fields `--custom-fields` seeds: one of each type on deals, a few on persons and organizations.
local FIXTURE_FIELDS = {
  deal = {
    { "Renewal date", "date" }, { "Tier", "enum", { "Bronze", "Silver", "Gold" } },
    { "Regions", "set", { "EMEA", "Americas", "APAC" } }, { "Contract value", "monetary" },
    { "Notes summary", "text" }, { "Seats", "double" }, { "Score", "double" }, { "Campaign", "varchar" },
    { "Term", "daterange" }, { "Call window", "timerange" }, { "Kick-off time", "time" },
    { "Site", "address" }, { "Account manager", "user" }, { "Partner", "org" }, { "Sponsor", "people" },
    { "Hotline", "phone" }, { "Source tag", "varchar_auto" },
  },
  person = { { "Birthday card", "date" }, { "Segment", "enum", { "SMB", "Mid-market", "Enterprise" } },
             { "Interests", "set", { "Product", "Pricing", "Support" } }, { "Nickname", "varchar" } },
  organization = { { "Region", "enum", { "North", "South", "East", "West" } }, { "Revenue band", "monetary" },
                   { "Head office", "address" } },
}

--- Seeds FIXTURE_FIELDS (the `--custom-fields` option).
function M.seed_fixtures(st)
  for _, kind in ipairs({ "deal", "person", "organization" }) do
    for _, f in ipairs(FIXTURE_FIELDS[kind]) do M.add_custom(st, kind, f[1], f[2], { options = f[3] }) end
  end
end

------------------------------------------------------------------------------
-- Values: request -> canonical
------------------------------------------------------------------------------
local function where(f) return ("custom field '%s' (%s)"):format(f.key, f.name) end

local function option_by_id(f, id)
  for _, o in ipairs(f.options or {}) do
    if o.id == id then return o end
  end
  return nil
end

-- An integer from a JSON number or (v1) a decimal string.
local function to_int(v, lenient)
  if type(v) == "string" and lenient and v:match("^%s*%d+%s*$") then v = tonumber(v) end
  if type(v) == "number" then return compat.tointeger(v) end
  return nil
end

local function option_id(f, v, lenient)
  local id = to_int(v, lenient)
  if not id then invalid(where(f), "must be an option id (an integer)") end
  if not option_by_id(f, id) then invalid(where(f), ("option %s does not exist"):format(tostring(v))) end
  return id
end

local function clock(f, v)
  local h, m, s
  if type(v) == "string" then
    h, m, s = v:match("^(%d%d):(%d%d):(%d%d)$")
    if not h then h, m = v:match("^(%d%d):(%d%d)$") s = "00" end
  end
  if not h or tonumber(h) > 23 or tonumber(m) > 59 or tonumber(s) > 59 then
    invalid(where(f), "must be a time HH:MM:SS")
  end
  return ("%s:%s:%s"):format(h, m, s)
end

local function day(f, v)
  if not time.parse_date(v) then invalid(where(f), "must be a date YYYY-MM-DD") end
  return v
end

local function text(f, v, lenient, max)
  if lenient and type(v) == "number" then v = tostring(v) end
  if type(v) ~= "string" then invalid(where(f), "must be a string") end
  if #v > max then invalid(where(f), ("at most %d characters"):format(max)) end
  return v
end

local function number(f, v, lenient)
  if lenient and type(v) == "string" then v = tonumber(v) end
  if type(v) ~= "number" or v ~= v or v == math.huge or v == -math.huge then invalid(where(f), "must be a number") end
  return v
end

local function ref(app, f, v, lenient)
  local id = to_int(v, lenient)
  if type(v) == "table" and v.value ~= nil then id = to_int(v.value, true) end
  if not id or id < 1 then invalid(where(f), "must be an id") end
  local st = app.store
  local ok
  if f.field_type == "user" then ok = st:user(id) ~= nil
  elseif f.field_type == "org" then ok = st:live("organization", id) ~= nil
  else ok = st:live("person", id) ~= nil end
  if not ok then invalid(where(f), ("%d not found"):format(id)) end
  return id
end

local function currency(app, f, c)
  if c == nil or c == null then return app.store:me().default_currency end
  if type(c) ~= "string" or not app.store:currency(c:upper()) then
    invalid(where(f), "currency must be a known currency code")
  end
  return c:upper()
end

local function address_obj(f, v, parts)
  local out = {}
  if type(v) == "string" then
    out.value = v
  elseif type(v) == "table" and v[1] == nil then
    if v.value ~= nil and v.value ~= null then out.value = text(f, v.value, false, 255) end
  else
    invalid(where(f), "must be a string or an object with a value")
  end
  for _, p in ipairs(M.ADDRESS_PARTS) do
    local pv = parts and parts[p]
    if type(v) == "table" then pv = v[p] end
    if pv ~= nil and pv ~= null then out[p] = text(f, pv, true, 255) end
  end
  return out
end

-- One canonical value from the v2 form (or the v1 flat value `v` with its side keys in `side`).
local function value_of(app, f, v, api, side)
  local t, lenient = f.field_type, api == "v1"
  if t == "varchar" or t == "varchar_auto" or t == "phone" then return text(f, v, lenient, 255) end
  if t == "text" then return text(f, v, lenient, 65535) end
  if t == "double" then return number(f, v, lenient) end
  if t == "int" then
    local n = to_int(v, lenient)
    if not n then invalid(where(f), "must be an integer") end
    return n
  end
  if t == "date" then return day(f, v) end
  if t == "time" then return clock(f, v) end
  if t == "enum" then return option_id(f, v, lenient) end
  if t == "set" then
    local list = v
    if lenient and type(v) == "string" then
      list = {}
      for part in v:gmatch("[^,]+") do list[#list + 1] = part end
    elseif lenient and type(v) == "number" then
      list = { v }
    end
    if type(list) ~= "table" or (next(list) ~= nil and list[1] == nil) then
      invalid(where(f), "must be an array of option ids")
    end
    if #list == 0 then invalid(where(f), "an empty array is not supported; send null to clear the selection") end
    local out, seen = array(), {}
    for _, x in ipairs(list) do
      local id = option_id(f, x, lenient)
      if not seen[id] then out[#out + 1], seen[id] = id, true end
    end
    return out
  end
  if t == "user" or t == "org" or t == "people" then return ref(app, f, v, lenient) end
  if t == "monetary" then
    if api == "v1" then
      return { value = number(f, v, true), currency = currency(app, f, side.currency) }
    end
    if type(v) ~= "table" or v[1] ~= nil then invalid(where(f), "must be an object {value, currency}") end
    return { value = number(f, v.value, false), currency = currency(app, f, v.currency) }
  end
  if t == "daterange" or t == "timerange" then
    local one = t == "daterange" and day or clock
    local a, b
    if api == "v1" then
      a, b = v, side["until"]
    else
      if type(v) ~= "table" or v[1] ~= nil then invalid(where(f), "must be an object {value, until}") end
      a, b = v.value, v["until"]
    end
    if a == nil or b == nil or b == null then invalid(where(f), "needs both a start and an end") end
    a, b = one(f, a), one(f, b)
    if b < a then invalid(where(f), "the end is before the start") end
    return { value = a, ["until"] = b }
  end
  if t == "address" then return address_obj(f, v, api == "v1" and side or nil) end
  invalid(where(f), ("fields of type %s cannot be set"):format(t))
end

-- v1 flat keys: "<hash>" or "<hash>_<suffix>" -> hash, suffix.
local function split_flat(k)
  if type(k) ~= "string" or #k < 40 then return nil end
  local hash, rest = k:sub(1, 40), k:sub(41)
  if not util.is_custom_key(hash) then return nil end
  if rest == "" then return hash, nil end
  local suffix = rest:match("^_(.+)$")
  if not suffix then return nil end
  return hash, suffix
end

--- The custom field values of a body, checked against the kind's definitions: hash -> canonical
-- value (json.null clears, kept only when `update`). v2 reads `custom_fields`, v1 flat keys.
-- An unknown hash or option, or a value of the wrong type, is a 400.
function M.values(app, b, api, kind, update)
  local st, out = app.store, {}
  local by_key = st.field_by_key[DEF_KIND[kind] or kind] or {}
  local function put(hash, v, side)
    local f = by_key[hash]
    if not f or not f.custom then fail(400, ("Custom field '%s' does not exist"):format(hash)) end
    if v == null or v == nil then
      if update then out[hash] = null end
      return
    end
    out[hash] = value_of(app, f, v, api, side)
  end
  if api == "v2" then
    local cf = b:get("custom_fields")
    if cf == nil then return out end
    if type(cf) ~= "table" or cf[1] ~= nil then invalid("custom_fields", "must be an object") end
    for k, v in pairs(cf) do put(k, v) end
    return out
  end
  local mains, sides = {}, {}
  for k, v in pairs(b.raw) do
    local hash, suffix = split_flat(k)
    if hash then
      if suffix then
        sides[hash] = sides[hash] or {}
        sides[hash][suffix] = v
      else
        mains[hash] = v
      end
    end
  end
  for hash, side in pairs(sides) do
    if mains[hash] == nil then
      local f = by_key[hash]
      if not f or not f.custom then fail(400, ("Custom field '%s' does not exist"):format(hash)) end
      -- a side key alone: the main value kept, e.g. a new currency for the stored amount
      local old = update and update[hash]
      if type(old) == "table" and old.value ~= nil then mains[hash] = old.value
      else invalid(where(f), ("%s_%s needs %s"):format(hash, next(side), hash)) end
    end
  end
  for hash, v in pairs(mains) do put(hash, v, sides[hash] or {}) end
  return out
end

------------------------------------------------------------------------------
-- Values: canonical -> answers
------------------------------------------------------------------------------
local function copy(v)
  if type(v) ~= "table" then return v end
  local out = {}
  for k, x in pairs(v) do out[k] = x end
  if v[1] ~= nil or getmetatable(v) == getmetatable(array()) then out = array(out) end
  return out
end

local function with_label(f, id)
  local o = option_by_id(f, id)
  return { id = id, label = o and o.label or null }
end

--- The v2 `custom_fields` object of a record: every custom field of the kind (null when unset),
-- or only the keys in `only`; enum/set as {id, label} with `labels`.
function M.v2_object(st, kind, values, only, labels)
  local out = {}
  values = values or {}
  for _, f in ipairs(custom_defs(st, kind)) do
    if not only or only[f.key] then
      local v = values[f.key]
      if v == nil then
        out[f.key] = null
      elseif labels and f.field_type == "enum" then
        out[f.key] = with_label(f, v)
      elseif labels and f.field_type == "set" then
        local list = array()
        for i, id in ipairs(v) do list[i] = with_label(f, id) end
        out[f.key] = list
      else
        out[f.key] = copy(v)
      end
    end
  end
  return out
end

--- Writes the v1 flat keys of a record's custom values into `obj`; `set_only` leaves unset fields out.
function M.v1_flat(st, kind, values, obj, set_only)
  values = values or {}
  for _, f in ipairs(custom_defs(st, kind)) do
    local k, v, t = f.key, values[f.key], f.field_type
    if v ~= nil or not set_only then
      local function put(name, x) if x == nil then obj[name] = null else obj[name] = x end end
      if t == "monetary" then
        put(k, v and v.value) put(k .. "_currency", v and v.currency)
      elseif t == "daterange" or t == "timerange" then
        put(k, v and v.value) put(k .. "_until", v and v["until"])
      elseif t == "address" then
        put(k, v and v.value)
        for _, p in ipairs(M.ADDRESS_PARTS) do put(k .. "_" .. p, v and v[p]) end
        if v and v.formatted_address == nil then obj[k .. "_formatted_address"] = v.value or null end
      elseif t == "enum" then
        put(k, v and tostring(v))
      elseif t == "set" then
        local ids = {}
        for i, id in ipairs(v or {}) do ids[i] = tostring(id) end
        put(k, v and table.concat(ids, ","))
      else
        put(k, copy(v))
      end
    end
  end
  return obj
end

------------------------------------------------------------------------------
-- Definitions: answers
------------------------------------------------------------------------------
local function options_out(f, v2)
  if not f.options then return null end
  local out = array()
  for i, o in ipairs(f.options) do
    out[i] = { id = o.id, label = o.label }
    if v2 and f.custom then
      out[i].color = null
      out[i].add_time = o.add_time and time.v2(o.add_time) or null
      out[i].update_time = o.update_time and time.v2(o.update_time) or null
    end
  end
  return out
end

local function subfields_out(f, v2)
  local list = SUBFIELDS[f.field_type]
  if f.field_type == "address" then
    list = {}
    for _, p in ipairs(M.ADDRESS_PARTS) do list[#list + 1] = { p, p:gsub("_", " "), "varchar" } end
  end
  if not list then return null end
  local out = array()
  for i, s in ipairs(list) do
    local code = (v2 and s[1]) or (s[1] == "value" and f.key or f.key .. "_" .. s[1])
    if v2 then
      out[i] = { field_code = code, field_name = s[2], field_type = s[3] }
    else
      out[i] = { key = code, name = s[2], field_type = s[3] }
    end
  end
  return out
end

function M.field_v1(_, f)
  return {
    id = f.id, key = f.key, name = f.name, order_nr = f.order_nr, field_type = f.field_type,
    add_time = time.v1(f.add_time), update_time = time.v1(f.update_time),
    last_updated_by_user_id = f.user_id or null, created_by_user_id = f.user_id or null,
    active_flag = true, edit_flag = f.custom, details_visible_flag = true,
    add_visible_flag = f.add_visible == true or not f.custom, important_flag = false,
    bulk_edit_allowed = f.custom or f.key ~= "id", filtering_allowed = true, sortable_flag = true,
    searchable_flag = f.custom and (f.field_type == "varchar" or f.field_type == "text"), index_visible_flag = true,
    mandatory_flag = false, is_subfield = false, options = options_out(f, false), subfields = subfields_out(f, false),
  }
end

-- What the files' field schemas leave out per kind: the v1 product field has no is_subfield or
-- subfields, the v2 organization and product fields no description.
local V1_OMIT = { product = { "is_subfield", "subfields" } }
local V2_OMIT = { organization = { "description" }, product = { "description" } }
local function omit(r, list)
  for _, k in ipairs(list or {}) do r[k] = nil end
  return r
end
local field_v1 = M.field_v1
function M.field_v1(st, f) return omit(field_v1(st, f), V1_OMIT[f.kind]) end

function M.field_v2(_, f, include)
  local r = {
    field_name = f.name, field_code = f.key, description = f.description or null, field_type = f.field_type,
    options = options_out(f, true), subfields = subfields_out(f, true), is_custom_field = f.custom,
    is_optional_response_field = false,
  }
  include = include or {}
  if include.ui_visibility then
    r.ui_visibility = { add_visible_flag = f.add_visible == true or not f.custom, details_visible_flag = true,
                        projects_detail_visible_flag = false,
                        show_in_pipelines = { show_in_all = true, pipeline_ids = array() } }
  end
  if include.important_fields then r.important_fields = { enabled = false, stage_ids = array() } end
  if include.required_fields then r.required_fields = { enabled = false, stage_ids = array(), statuses = {} } end
  return omit(r, V2_OMIT[f.kind])
end

------------------------------------------------------------------------------
-- Handlers
------------------------------------------------------------------------------
local function find(app, ctx, res)
  local list = app.store.field_defs[res.kind]
  for _, f in ipairs(list) do
    if (ctx.api == "v1" and f.id == ctx.id) or (ctx.api == "v2" and f.key == ctx.id) then return f end
  end
  fail(404, "Field not found")
end

local function writable(res)
  if not WRITABLE[res.kind] or res.read_only then fail(405, ("%s fields cannot be changed"):format(res.kind)) end
end

local function list_fields(app, ctx, res)
  local st, q = app.store, ctx.q
  local defs = st.field_defs[res.kind]
  local limit = q:int("limit", { min = 1, max = 500 }) or 100
  if ctx.api == "v1" then
    local start = q:int("start", { min = 0 }) or 0
    local data = array()
    for i = start + 1, math.min(#defs, start + limit) do data[#data + 1] = M.field_v1(st, defs[i]) end
    return 200, { success = true, data = data, additional_data = { pagination = {
      start = start, limit = limit, more_items_in_collection = #defs > start + limit,
      next_start = #defs > start + limit and start + limit or nil } } }
  end
  local _, include = q:list("include_fields", { "ui_visibility", "important_fields", "required_fields" })
  local cursor = q:string("cursor")
  local first = 0
  if cursor then
    first = tonumber(cursor:match("^f(%d+)$") or "")
    if not first then invalid("cursor", "is not a cursor this list gave") end
  end
  local data = array()
  for i = first + 1, math.min(#defs, first + limit) do data[#data + 1] = M.field_v2(st, defs[i], include) end
  local more = #defs > first + limit
  return 200, { success = true, data = data, additional_data = { next_cursor = more and ("f%d"):format(first + limit)
                                                                   or null } }
end

local function one(app, ctx, _, f)
  if ctx.api == "v1" then return 200, { success = true, data = M.field_v1(app.store, f) } end
  local _, include = ctx.q:list("include_fields", { "ui_visibility", "important_fields", "required_fields" })
  return 200, { success = true, data = M.field_v2(app.store, f, include) }
end

local function get(app, ctx, res) return one(app, ctx, res, find(app, ctx, res)) end

-- Labels of a new field's options: [{label}] (v1 also takes plain strings).
local function option_labels(b, api, f_type)
  local opts = b:get("options")
  if opts == nil then
    if f_type == "enum" or f_type == "set" then invalid("options", "are required for enum and set fields") end
    return nil
  end
  if f_type ~= "enum" and f_type ~= "set" then invalid("options", "only enum and set fields have options") end
  if type(opts) ~= "table" or (next(opts) ~= nil and opts[1] == nil) then invalid("options", "must be an array") end
  local out = {}
  for i, o in ipairs(opts) do
    local label = type(o) == "table" and o.label or (api == "v1" and o or nil)
    if type(label) ~= "string" or label == "" then invalid("options", ("item %d needs a label"):format(i)) end
    out[i] = label
  end
  return out
end

local function add(app, ctx, res)
  writable(res)
  local b, api = ctx.body, ctx.api
  local name = b:string(api == "v1" and "name" or "field_name", { required = true })
  if name == "" or #name > 255 then invalid(api == "v1" and "name" or "field_name", "1 to 255 characters") end
  local ftype = b:string("field_type", { required = true })
  if not CUSTOM_TYPE_SET[ftype] then
    invalid("field_type", "must be one of " .. table.concat(CUSTOM_TYPES, ", "))
  end
  local add_visible = b:get("add_visible_flag")
  local ui = b:get("ui_visibility")
  if type(ui) == "table" and ui.add_visible_flag ~= nil then add_visible = ui.add_visible_flag == true end
  local f = M.add_custom(app.store, res.kind, name, ftype, {
    options = option_labels(b, api, ftype), user_id = ctx.me.id, add_visible = add_visible == true,
    description = api == "v2" and b:string("description") or nil })
  local status, body = one(app, ctx, res, f)
  return res.add_status or status, body
end

local function update(app, ctx, res)
  writable(res)
  local f = find(app, ctx, res)
  if not f.custom then fail(403, "Standard fields cannot be changed") end
  local b, api, st = ctx.body, ctx.api, app.store
  local name = b:string(api == "v1" and "name" or "field_name")
  if name then
    if name == "" or #name > 255 then invalid(api == "v1" and "name" or "field_name", "1 to 255 characters") end
    f.name = name
  end
  if api == "v2" and b:has("description") then f.description = b:string("description") end
  if api == "v1" and b:get("options") ~= nil then
    -- v1 PUT replaces the options: items with an id keep it (relabelled), items without get a new one
    if f.field_type ~= "enum" and f.field_type ~= "set" then invalid("options", "only enum and set fields have options") end
    local given = b:get("options")
    if type(given) ~= "table" or (next(given) ~= nil and given[1] == nil) then invalid("options", "must be an array") end
    local new = {}
    for i, o in ipairs(given) do
      if type(o) ~= "table" or type(o.label) ~= "string" or o.label == "" then
        invalid("options", ("item %d needs a label"):format(i))
      end
      if o.id ~= nil then
        local old = option_by_id(f, to_int(o.id, true))
        if not old then invalid("options", ("option %s does not exist"):format(tostring(o.id))) end
        new[i] = { id = old.id, label = o.label, add_time = old.add_time, update_time = st:now() }
      else
        new[i] = { id = next_id(st, "option_seq"), label = o.label, add_time = st:now(), update_time = st:now() }
      end
    end
    f.options = new
  end
  local ui = b:get("ui_visibility")
  if type(ui) == "table" and ui.add_visible_flag ~= nil then f.add_visible = ui.add_visible_flag == true end
  if b:get("add_visible_flag") ~= nil then f.add_visible = b:get("add_visible_flag") == true end
  f.update_time, f.user_id = st:now(), ctx.me.id
  st:touch()
  return one(app, ctx, res, f)
end

local function remove(st, kind, f)
  local list = st.field_defs[kind]
  for i, x in ipairs(list) do
    if x == f then table.remove(list, i) break end
  end
  st.field_by_key[kind][f.key] = nil
  st:touch()
end

local function delete(app, ctx, res)
  writable(res)
  local f = find(app, ctx, res)
  if not f.custom then fail(403, "Standard fields cannot be deleted") end
  remove(app.store, res.kind, f)
  if ctx.api == "v1" then return 200, { success = true, data = { id = f.id } } end
  return 200, { success = true, data = omit({ field_name = f.name, field_code = f.key, field_type = f.field_type,
                                              description = f.description or null, is_custom_field = true,
                                              is_optional_response_field = false, options = null, subfields = null },
                                            V2_OMIT[f.kind]) }
end

-- DELETE /v1/xFields?ids=1,2: bulk delete.
local function delete_many(app, ctx, res)
  writable(res)
  local ids = ctx.q:ids("ids", 500)
  if not ids then invalid("ids", "is required") end
  local st, gone = app.store, array()
  local targets = {}
  for _, f in ipairs(st.field_defs[res.kind]) do
    if ids[f.id] then
      if not f.custom then fail(403, "Standard fields cannot be deleted") end
      targets[#targets + 1] = f
    end
  end
  for _, f in ipairs(targets) do
    remove(st, res.kind, f)
    gone[#gone + 1] = f.id
  end
  return 200, { success = true, data = { id = gone } }
end

-- /api/v2/xFields/{code}/options: POST [{label}], PATCH [{id, label}], DELETE [{id}].
local function options(app, ctx, res)
  writable(res)
  local f = find(app, ctx, res)
  if f.field_type ~= "enum" and f.field_type ~= "set" then fail(400, "Only enum and set fields have options") end
  local items, st, m = ctx.body_list, app.store, ctx.method
  if type(items) ~= "table" or items[1] == nil then fail(400, "Request body must be a non-empty JSON array") end
  local now, data = st:now(), array()
  local targets = {}
  for i, o in ipairs(items) do
    if type(o) ~= "table" then invalid("options", ("item %d must be an object"):format(i)) end
    if m ~= "POST" then
      local opt = option_by_id(f, to_int(o.id, false))
      if not opt then invalid("options", ("option %s does not exist"):format(tostring(o.id))) end
      targets[i] = opt
    end
    if m ~= "DELETE" and (type(o.label) ~= "string" or o.label == "" or #o.label > 255) then
      invalid("options", ("item %d needs a label (1 to 255 characters)"):format(i))
    end
  end
  for i, o in ipairs(items) do
    if m == "POST" then
      local opt = { id = next_id(st, "option_seq"), label = o.label, add_time = now, update_time = now }
      f.options[#f.options + 1] = opt
      data[i] = { id = opt.id, label = opt.label }
    elseif m == "PATCH" then
      targets[i].label, targets[i].update_time = o.label, now
      data[i] = { id = targets[i].id, label = o.label }
    else
      for j, x in ipairs(f.options) do
        if x == targets[i] then table.remove(f.options, j) break end
      end
      data[i] = { id = targets[i].id, label = targets[i].label }
    end
  end
  f.update_time = now
  st:touch()
  return 200, { success = true, data = data, additional_data = null }
end

--- Routes of the field endpoints: methods, resource, path id (v1 an integer, v2 a field_code).
function M.route(version, segs)
  local kind = M.PATHS[segs[1]]
  if not kind then return nil end
  local res = { kind = kind, label = "Field", fields = true, any_id = version == "v2",
                read_only = segs[1] == "leadFields" or nil,
                add_status = (version == "v1" and kind == "product") and 201 or nil }
  if segs[1] == "leadFields" and version == "v2" then return nil end
  local n = #segs
  local ro = kind == "activity" or segs[1] == "leadFields"
  if n == 1 then
    if ro then return { GET = list_fields }, res end
    local methods = { GET = list_fields, POST = add }
    if version == "v1" then methods.DELETE = delete_many end
    return methods, res
  end
  -- v1 names a field by its integer id (v1 activity and lead fields only as a list), v2 by its code
  if version == "v1" and (ro or not segs[2]:match("^%d+$")) then return nil end
  if n == 2 and version == "v2" and kind == "activity" then return { GET = get }, res, segs[2] end
  if n == 2 then
    return { GET = get, DELETE = delete, [version == "v1" and "PUT" or "PATCH"] = update }, res, segs[2]
  end
  if n == 3 and version == "v2" and segs[3] == "options" then
    res.list_body = true
    return { POST = options, PATCH = options, DELETE = options }, res, segs[2]
  end
  return nil
end

return M
