--- Webhook events: the vocabulary of subscription keys, and one event shape
-- from a v1 or v2 webhook body (normalize). Pure functions, no state.
local compat = require "pipedrive.compat"
local core = require "pipedrive.core"

local M = {}

local null = core.null

------------------------------------------------------------------------------
-- Vocabulary
------------------------------------------------------------------------------
local function set(list)
  local s = {}
  for _, v in ipairs(list) do s[v] = true end
  return s
end

-- Objects a webhook of each version can subscribe to (FACTS §5).
local OBJECTS = {
  ["2.0"] = set{ "activity", "deal", "lead", "note", "organization", "person", "pipeline", "product", "stage", "user" },
  ["1.0"] = set{ "activity", "activityType", "deal", "note", "organization", "person", "pipeline", "product", "stage",
                 "user" },
}
-- Our action words (the v1 ones) that a webhook of each version can deliver.
local ACTIONS = {
  ["2.0"] = set{ "added", "updated", "deleted" },
  ["1.0"] = set{ "added", "updated", "deleted", "merged" },
}
-- v2 action words -> ours; and back.
local FROM_V2 = { create = "added", change = "updated", delete = "deleted" }
local TO_V2 = { added = "create", updated = "change", deleted = "delete", ["*"] = "*" }

M.OBJECTS, M.ACTIONS, M.TO_V2 = OBJECTS, ACTIONS, TO_V2

local function sorted_keys(s)
  local out = {}
  for k in pairs(s) do out[#out + 1] = k end
  table.sort(out)
  return out
end

--- Parses a subscription key ("deal.added", "deal.*", "*.updated", "*",
-- also "deal.create" in v2 words) for a webhook version: returns the
-- normalized key, object, action; or nil, message.
function M.parse_key(key, version)
  if type(key) ~= "string" then return nil, "the event must be a string such as \"deal.added\"" end
  if key == "*" then return "*.*", "*", "*" end
  local object, action = key:match("^([%w_*]+)%.([%w_*]+)$")
  if not object then
    return nil, ("'%s' is not an event: use \"object.action\" (\"deal.added\", \"deal.*\") or \"*\"")
      :format(key:sub(1, 60))
  end
  action = FROM_V2[action] or action
  if object ~= "*" and not OBJECTS[version][object] then
    return nil, ("unknown object '%s' for version %s webhooks (one of: %s, *)")
      :format(object, version, table.concat(sorted_keys(OBJECTS[version]), ", "))
  end
  if action ~= "*" and not ACTIONS[version][action] then
    return nil, ("unknown action '%s' for version %s webhooks (one of: %s, *)")
      :format(action, version, table.concat(sorted_keys(ACTIONS[version]), ", "))
  end
  return object .. "." .. action, object, action
end

------------------------------------------------------------------------------
-- Normalization
------------------------------------------------------------------------------
local function value(v)
  if v == null then return nil end
  return v
end

-- The integer a decimal integer text stands for, only when the Lua number
-- type holds it exactly (int64 on 5.3+, 2^53 before): "42" -> 42,
-- "9007199254740993" on 5.1 -> nil (it would round).
local function exact_integer(digits)
  local n = compat.tointeger(tonumber(digits))
  if n == nil then return nil end
  local sign, rest = digits:match("^(%-?)0*(%d*)$")
  if rest == "" then sign, rest = "", "0" end
  if ("%d"):format(n) ~= sign .. rest then return nil end
  return n
end

-- The shortest text that reads back as the float v (never rounded away).
local function float_text(v)
  if v == math.floor(v) and v > -1e300 and v < 1e300 then
    local t = ("%.0f"):format(v)
    if tonumber(t) == v then return t end
  end
  for digits = 15, 17 do
    local t = ("%." .. digits .. "g"):format(v)
    if tonumber(t) == v then return t end
  end
  return ("%.17g"):format(v)
end

-- An id as the user wants it: an integer when it is one exactly (also "42",
-- "42.0" and 42.0), else a string (lead ids are UUIDs; 1.5 -> "1.5"; a
-- 35-digit id keeps all its digits): never a float, so two distinct ids
-- never become one. JSON numbers that would round reach here as their text
-- (json_decode's exact mode, see M.needs_exact).
local function to_id(v)
  local mt = compat.math_type(v)
  if mt == "integer" then return v end
  if mt == "float" then
    if v ~= v or v == math.huge or v == -math.huge then return nil end
    return compat.tointeger(v) or float_text(v)
  end
  if type(v) == "string" and v ~= "" then
    local digits = v:match("^(%-?%d+)%.?0*$")
    if digits and not v:find("%.$") then return exact_integer(digits) or v end
    return v
  end
  return nil
end
M.to_id = to_id

-- A number the default decoding may have rounded: a float, or an integer
-- at or beyond 2^53. Before Lua 5.3 every number is a double and a rounded
-- one can look integral ("1.0000000000000000001" -> 1), so any number counts.
local function inexact(v)
  if type(v) ~= "number" then return false end
  if not compat.has_integers then return true end
  return compat.math_type(v) ~= "integer" or v >= 9007199254740992 or v <= -9007199254740992
end

local function to_int(v)
  if compat.math_type(v) == "integer" then return v end
  if compat.math_type(v) == "float" then return compat.tointeger(v) end
  if type(v) == "string" and v:match("^%d+$") then return compat.tointeger(tonumber(v)) end
  return nil
end

-- A delivery attempt counts from 1; a payload's 0, negative or absurd count
-- (found by fuzz_triggers) is read as the first attempt.
local function attempt_number(v)
  local n = to_int(v)
  if n == nil or n < 1 or n > 1000000 then return 1 end
  return n
end

--- Seconds since the epoch (a float when there is a fraction) from what
-- Pipedrive puts in a timestamp: epoch seconds, milliseconds or microseconds
-- (as numbers or digit strings), or an ISO 8601 date-time read by core.iso8601,
-- the one date parser (UTC unless it has an offset). nil when it is none.
function M.epoch(v)
  if type(v) == "string" and v:match("^%d+$") then v = tonumber(v) end
  if type(v) == "number" then
    if v ~= v or v < 0 then return nil end
    if v >= 1e14 then return v / 1e6 end
    if v >= 1e11 then return v / 1e3 end
    return v
  end
  if type(v) ~= "string" then return nil end
  return core.iso8601(v)
end

local function deep_equal(a, b)
  if a == b then return true end
  if type(a) ~= "table" or type(b) ~= "table" then return false end
  for k, v in pairs(a) do
    if not deep_equal(v, b[k]) then return false end
  end
  for k in pairs(b) do
    if a[k] == nil then return false end
  end
  return true
end

-- A record as a webhook carries it: v1 user events carry [record].
local function record(v)
  v = value(v)
  if type(v) == "table" and v[1] ~= nil and type(v[1]) == "table" and v.id == nil then return v[1] end
  if type(v) == "table" then return v end
  return nil
end

--- Whether a decoded payload holds an id or meta value that the default
-- decoding may have rounded (1.5, a 35-digit id; before 5.3 any number):
-- then the handler decodes the body again in json_decode's exact
-- mode and gives that to normalize, so ids and de-duplication keys are exact.
function M.needs_exact(p)
  if type(p) ~= "table" then return false end
  if type(p.meta) == "table" then
    for _, v in pairs(p.meta) do
      if inexact(v) then return true end
    end
  end
  for _, k in ipairs({ "data", "current", "previous" }) do
    local r = record(p[k])
    if r and inexact(r.id) then return true end
  end
  return false
end

-- Keys that changed (sorted), leaving out update_time, which every update changes.
local function changed_keys(current, previous, only_previous)
  local keys = {}
  if type(previous) ~= "table" then return keys end
  if only_previous then
    for k in pairs(previous) do
      if type(k) == "string" and k ~= "update_time" then keys[#keys + 1] = k end
    end
  else
    local cur = type(current) == "table" and current or {}
    local seen = {}
    for _, t in ipairs({ previous, cur }) do
      for k in pairs(t) do
        if type(k) == "string" and not seen[k] and k ~= "update_time" then
          seen[k] = true
          if not deep_equal(previous[k], cur[k]) then keys[#keys + 1] = k end
        end
      end
    end
  end
  table.sort(keys)
  return keys
end

-- A canonical text of a decoded JSON value (keys sorted), for fingerprints.
local function canon(v, out)
  local t = type(v)
  if t == "table" then
    local keys = {}
    for k in pairs(v) do keys[#keys + 1] = k end
    table.sort(keys, function(a, b)
      if type(a) == type(b) then return a < b end
      return type(a) == "number"
    end)
    out[#out + 1] = "{"
    for _, k in ipairs(keys) do
      out[#out + 1] = tostring(k)
      out[#out + 1] = "="
      canon(v[k], out)
      out[#out + 1] = ","
    end
    out[#out + 1] = "}"
  elseif v == null then
    out[#out + 1] = "null"
  elseif t == "string" then
    out[#out + 1] = ("%q"):format(v)
  elseif compat.math_type(v) == "float" then
    out[#out + 1] = compat.tointeger(v) and tostring(compat.tointeger(v)) or float_text(v)
  else
    out[#out + 1] = tostring(v)
  end
end

-- A 64-bit fingerprint of a string as 16 hex digits: two 32-bit polynomial hashes
-- modulo primes, exact in doubles so every Lua version computes the same.
local function fingerprint(s)
  local h1, h2 = 5381, 52711
  for i = 1, #s do
    local c = s:byte(i)
    h1 = (h1 * 131 + c) % 4294967291
    h2 = (h2 * 65599 + c) % 4294967279
  end
  return ("%08x%08x"):format(h1, h2)
end

-- De-duplication keys are remembered (dedupe_max of them) and their parts
-- come from the request: a key longer than MAX_KEY is kept as its start and
-- the fingerprint of the whole (at most MAX_KEY bytes), and one longer than
-- MAX_KEY_TEXT refuses the event (Pipedrive's ids are short; fingerprinting
-- a megabyte in Lua would cost more than the request is worth).
local MAX_KEY, MAX_KEY_TEXT = 200, 4096
M.MAX_KEY, M.MAX_KEY_TEXT = MAX_KEY, MAX_KEY_TEXT
local function bounded_key(k)
  if #k <= MAX_KEY then return k end
  if #k > MAX_KEY_TEXT then return nil, "the event's id or timestamp is too long" end
  return k:sub(1, MAX_KEY - 30) .. "#" .. fingerprint(k) .. "#" .. #k
end

local function word(v)
  return type(v) == "string" and v:match("^[%a][%w_]*$") ~= nil and #v <= 64
end

-- `x` is the exact decoding of the same body (or p itself): ids and the
-- parts of the de-duplication key are read from it.
local function normalize_v2(p, meta, x)
  local raw_action = meta.action
  if not word(raw_action) or not word(meta.entity) then
    return nil, "meta.action and meta.entity must be words"
  end
  local current, previous = record(p.data), record(p.previous)
  local xm, xcur, xprev = x.meta, record(x.data), record(x.previous)
  local action = FROM_V2[raw_action] or raw_action
  local ev = {
    object = meta.entity, action = action,
    id = to_id(xm.entity_id) or to_id(xcur and xcur.id) or to_id(xprev and xprev.id),
    current = current, previous = previous,
    meta = {
      version = "2.0", event_id = type(xm.id) == "string" and xm.id or to_id(xm.id),
      webhook_id = to_id(xm.webhook_id), attempt = attempt_number(meta.attempt),
      timestamp = M.epoch(meta.timestamp), user_id = to_id(xm.user_id), company_id = to_id(xm.company_id),
      change_source = value(meta.change_source), is_bulk = meta.is_bulk_edit == true,
      correlation_id = value(meta.correlation_id), host = value(meta.host), type = value(meta.type),
      webhook_owner_id = to_id(xm.webhook_owner_id),
      merged_to_id = to_id(xm.merged_to_id), merged_from_id = to_id(xm.merged_from_id),
    },
  }
  if action == "updated" then ev.changed = changed_keys(current, previous, true) end
  local key = ev.meta.event_id
  if key == nil then
    key = table.concat({ tostring(xm.webhook_id), ev.object, tostring(ev.id), raw_action,
                         tostring(xm.timestamp) }, "|")
  end
  local why
  ev.meta.dedupe_key, why = bounded_key("v2|" .. tostring(key))
  if not ev.meta.dedupe_key then return nil, why end
  return ev
end

local function normalize_v1(p, meta, x)
  local object, action = meta.object, meta.action
  if (object == nil or action == nil) and type(p.event) == "string" then
    local a, o = p.event:match("^([%w_]+)%.([%w_]+)$")
    object, action = object or o, action or a
  end
  if not word(action) or not word(object) then return nil, "meta.action and meta.object must be words" end
  local current, previous = record(p.current), record(p.previous)
  local xm, xcur, xprev = x.meta, record(x.current), record(x.previous)
  local retry = attempt_number((to_int(p.retry) or 0) + 1) - 1
  local ev = {
    object = object, action = action,
    id = to_id(xm.id) or to_id(xcur and xcur.id) or to_id(xprev and xprev.id),
    current = current, previous = previous,
    meta = {
      version = "1.0", webhook_id = to_id(xm.webhook_id), attempt = retry + 1,
      timestamp = M.epoch(meta.timestamp_micro) or M.epoch(meta.timestamp), user_id = to_id(xm.user_id),
      company_id = to_id(xm.company_id), change_source = value(meta.change_source),
      is_bulk = meta.is_bulk_update == true, host = value(meta.host),
      pipedrive_service_name = value(meta.pipedrive_service_name),
    },
  }
  if action == "updated" then ev.changed = changed_keys(current, previous, false) end
  -- v1 events have no id of their own: the webhook, the record, the action
  -- and the time name one, and a fingerprint of the records keeps two
  -- changes within the same timestamp apart (the retry counter is left out).
  local text = {}
  canon(x.current, text)
  canon(x.previous, text)
  local why
  ev.meta.dedupe_key, why = bounded_key(table.concat({ "v1", tostring(xm.webhook_id), object, tostring(ev.id),
    action, tostring(value(xm.timestamp_micro) or value(xm.timestamp)), fingerprint(table.concat(text)) }, "|"))
  if not ev.meta.dedupe_key then return nil, why end
  return ev
end

--- One event from a decoded webhook body (v1 or v2), `exact` optionally the
-- same body decoded with json_decode's exact mode (see M.needs_exact): returns
-- { event = "deal.added", object, action, id, current, previous, changed, meta, raw },
-- or nil, reason when the value is not a webhook payload. `changed` (updates
-- only) lists the fields whose value changed, sorted, without update_time.
-- Nested JSON nulls stay pipedrive.null; an absent or null record is nil.
function M.normalize(p, exact)
  if type(p) ~= "table" or getmetatable(p) == core.array_mt or p[1] ~= nil then
    return nil, "the body is not a JSON object"
  end
  local meta = p.meta
  if type(meta) ~= "table" or meta == null then return nil, "the body has no meta object" end
  local x = p
  if type(exact) == "table" and type(exact.meta) == "table" then x = exact end
  local ev, err
  if tostring(value(meta.version)):match("^2") or meta.entity ~= nil then
    ev, err = normalize_v2(p, meta, x)
  elseif p.v == 1 or meta.v == 1 or meta.object ~= nil or p.event ~= nil then
    ev, err = normalize_v1(p, meta, x)
  else
    return nil, "the body is not a Pipedrive webhook payload"
  end
  if not ev then return nil, err end
  ev.event = ev.object .. "." .. ev.action
  ev.raw = p
  return ev
end

return M
