--- Webhook triggers: Pipedrive events delivered to Lua callbacks.
--
--   local triggers = pd.triggers{ url = "https://my.host/pipedrive", user = "hook", password = "s3cret" }
--   triggers:on("deal.added", function(ev) print(ev.id, ev.current.title) end)
--   assert(triggers:enable())            -- Pipedrive's webhooks now match the callbacks
--   triggers:serve{ port = 8080 }        -- or call triggers:handle(req) from any HTTP server
--
-- Four parts, each usable alone:
--   * normalize(payload): a v1 or v2 webhook body -> one event shape
--     { event, object, action, id, current, previous, changed, meta, raw }.
--   * handle(req): one HTTP request -> status, headers, body. Checks method,
--     Basic auth (constant time), size, content type and payload; runs the
--     matching callbacks under pcall; answers 5xx when one fails, so that
--     Pipedrive delivers again; remembers handled events (bounded, with a
--     TTL, or in a store of the user's) so that a redelivery is acknowledged
--     without calling anything twice. It never raises.
--   * enable()/disable(): declarative reconciliation of the user's webhooks
--     with the registered callbacks (our webhooks are those with our URL and
--     a name starting with our prefix; nobody else's are touched).
--   * listen()/serve()/stop()/close(): a standalone listener on pipedrive.httpd.
--
-- Secrets: the password and the Authorization value derived from it live in a
-- private table (not in the object), and are scrubbed from every log line and
-- error this module produces.
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

M.OBJECTS, M.ACTIONS = OBJECTS, ACTIONS

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

-- An id as the user wants it: an integer when it is one (also "42" and 42.0),
-- else the string (lead ids are UUIDs).
local function to_id(v)
  local mt = compat.math_type(v)
  if mt == "integer" then return v end
  if mt == "float" then return compat.tointeger(v) or v end
  if type(v) == "string" and v ~= "" then
    if v:match("^%-?%d+$") then return compat.tointeger(tonumber(v)) or v end
    return v
  end
  return nil
end
M.to_id = to_id

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

-- Days since 1970-01-01 of a proleptic Gregorian date (no time zone involved).
local function days_from_civil(y, m, d)
  y = m <= 2 and y - 1 or y
  local idiv = compat.idiv
  local era = idiv(y >= 0 and y or y - 399, 400)
  local yoe = y - era * 400
  local doy = idiv(153 * (m + (m > 2 and -3 or 9)) + 2, 5) + d - 1
  local doe = yoe * 365 + idiv(yoe, 4) - idiv(yoe, 100) + doy
  return era * 146097 + doe - 719468
end

--- Seconds since the epoch (a float when there is a fraction) from what
-- Pipedrive puts in a timestamp: epoch seconds, milliseconds or microseconds
-- (as numbers or digit strings), or an ISO 8601 date-time (UTC unless it has
-- an offset; "T" or a space between date and time). nil when it is none.
function M.epoch(v)
  if type(v) == "string" and v:match("^%d+$") then v = tonumber(v) end
  if type(v) == "number" then
    if v ~= v or v < 0 then return nil end
    if v >= 1e14 then return v / 1e6 end
    if v >= 1e11 then return v / 1e3 end
    return v
  end
  if type(v) ~= "string" then return nil end
  local y, mo, d, h, mi, s, rest = v:match("^(%d%d%d%d)%-(%d%d)%-(%d%d)[T ](%d%d):(%d%d):(%d%d)(.*)$")
  if not y then return nil end
  y, mo, d, h, mi, s = tonumber(y), tonumber(mo), tonumber(d), tonumber(h), tonumber(mi), tonumber(s)
  if mo < 1 or mo > 12 or d < 1 or d > 31 or h > 23 or mi > 59 or s > 60 then return nil end
  local frac = 0
  local digits, zone = rest:match("^%.(%d+)(.*)$")
  if digits then
    frac = tonumber("0." .. digits)
    rest = zone
  end
  local offset = 0
  if rest ~= "" and rest ~= "Z" and rest ~= "z" then
    local sign, oh, om = rest:match("^([+-])(%d%d):?(%d%d)$")
    if not sign then return nil end
    offset = (tonumber(oh) * 3600 + tonumber(om) * 60) * (sign == "+" and 1 or -1)
  end
  local t = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + s - offset
  if frac > 0 then return t + frac end
  return t
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
  elseif compat.math_type(v) == "float" and compat.tointeger(v) then
    out[#out + 1] = tostring(compat.tointeger(v))
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

local function word(v)
  return type(v) == "string" and v:match("^[%a][%w_]*$") ~= nil and #v <= 64
end

local function normalize_v2(p, meta)
  local raw_action = meta.action
  if not word(raw_action) or not word(meta.entity) then
    return nil, "meta.action and meta.entity must be words"
  end
  local current, previous = record(p.data), record(p.previous)
  local action = FROM_V2[raw_action] or raw_action
  local ev = {
    object = meta.entity, action = action,
    id = to_id(meta.entity_id) or to_id(current and current.id) or to_id(previous and previous.id),
    current = current, previous = previous,
    meta = {
      version = "2.0", event_id = type(meta.id) == "string" and meta.id or to_id(meta.id),
      webhook_id = to_id(meta.webhook_id), attempt = attempt_number(meta.attempt),
      timestamp = M.epoch(meta.timestamp), user_id = to_id(meta.user_id), company_id = to_id(meta.company_id),
      change_source = value(meta.change_source), is_bulk = meta.is_bulk_edit == true,
      correlation_id = value(meta.correlation_id), host = value(meta.host), type = value(meta.type),
      webhook_owner_id = to_id(meta.webhook_owner_id),
      merged_to_id = to_id(meta.merged_to_id), merged_from_id = to_id(meta.merged_from_id),
    },
  }
  if action == "updated" then ev.changed = changed_keys(current, previous, true) end
  local key = ev.meta.event_id
  if key == nil then
    key = table.concat({ tostring(meta.webhook_id), ev.object, tostring(ev.id), raw_action,
                         tostring(meta.timestamp) }, "|")
  end
  ev.meta.dedupe_key = "v2|" .. tostring(key)
  return ev
end

local function normalize_v1(p, meta)
  local object, action = meta.object, meta.action
  if (object == nil or action == nil) and type(p.event) == "string" then
    local a, o = p.event:match("^([%w_]+)%.([%w_]+)$")
    object, action = object or o, action or a
  end
  if not word(action) or not word(object) then return nil, "meta.action and meta.object must be words" end
  local current, previous = record(p.current), record(p.previous)
  local retry = attempt_number((to_int(p.retry) or 0) + 1) - 1
  local ev = {
    object = object, action = action,
    id = to_id(meta.id) or to_id(current and current.id) or to_id(previous and previous.id),
    current = current, previous = previous,
    meta = {
      version = "1.0", webhook_id = to_id(meta.webhook_id), attempt = retry + 1,
      timestamp = M.epoch(meta.timestamp_micro) or M.epoch(meta.timestamp), user_id = to_id(meta.user_id),
      company_id = to_id(meta.company_id), change_source = value(meta.change_source),
      is_bulk = meta.is_bulk_update == true, host = value(meta.host),
      pipedrive_service_name = value(meta.pipedrive_service_name),
    },
  }
  if action == "updated" then ev.changed = changed_keys(current, previous, false) end
  -- v1 events have no id of their own: the webhook, the record, the action
  -- and the time name one, and a fingerprint of the records keeps two
  -- changes within the same timestamp apart (the retry counter is left out).
  local text = {}
  canon(p.current, text)
  canon(p.previous, text)
  ev.meta.dedupe_key = table.concat({ "v1", tostring(meta.webhook_id), object, tostring(ev.id), action,
    tostring(value(meta.timestamp_micro) or value(meta.timestamp)), fingerprint(table.concat(text)) }, "|")
  return ev
end

--- One event from a decoded webhook body (v1 or v2): returns
-- { event = "deal.added", object, action, id, current, previous, changed, meta, raw },
-- or nil, reason when the value is not a webhook payload. `changed` (updates
-- only) lists the fields whose value changed, sorted, without update_time.
-- Nested JSON nulls stay pipedrive.null; an absent or null record is nil.
function M.normalize(p)
  if type(p) ~= "table" or getmetatable(p) == core.array_mt or p[1] ~= nil then
    return nil, "the body is not a JSON object"
  end
  local meta = p.meta
  if type(meta) ~= "table" or meta == null then return nil, "the body has no meta object" end
  local ev, err
  if tostring(value(meta.version)):match("^2") or meta.entity ~= nil then
    ev, err = normalize_v2(p, meta)
  elseif p.v == 1 or meta.v == 1 or meta.object ~= nil or p.event ~= nil then
    ev, err = normalize_v1(p, meta)
  else
    return nil, "the body is not a Pipedrive webhook payload"
  end
  if not ev then return nil, err end
  ev.event = ev.object .. "." .. ev.action
  ev.raw = p
  return ev
end

------------------------------------------------------------------------------
-- A bounded memory with expiry (the default store of seen events)
------------------------------------------------------------------------------
local Memory = {}
Memory.__index = Memory

-- Entries live in three parallel rings (key, expiry, value) indexed by an
-- insertion counter: slot = (i - 1) % cap + 1, entries from `head` to `tail`.
-- `items[key]` is the counter of the key's latest insertion; an older one in
-- the rings is dead. No table per entry: a full memory of 10,000 events is
-- 10,000 strings for the garbage collector, not 30,000 objects, which keeps
-- its pauses short in a busy listener. Dead entries are at most
-- 2 * count + 64 (trim compacts beyond), so the rings never wrap onto live ones.
function M.memory(max, clock)
  return setmetatable({ max = max, clock = clock or os.time, items = {}, keys = {}, expires = {}, values = {},
                        head = 1, tail = 0, count = 0, cap = 2 * max + 66 }, Memory)
end

function Memory:get(key)
  local i = self.items[key]
  if not i then return nil end
  local slot = (i - 1) % self.cap + 1
  if self.expires[slot] <= self.clock() then
    self:delete(key)
    return nil
  end
  return self.values[slot]
end

function Memory:delete(key)
  if self.items[key] then
    self.items[key] = nil
    self.count = self.count - 1
  end
end

-- Drops expired entries from the front and the oldest ones beyond `max`; the
-- rings are compacted when deleted keys make them much longer than the live
-- entries.
function Memory:trim(now)
  local items, keys, expires, values, cap = self.items, self.keys, self.expires, self.values, self.cap
  while self.head <= self.tail do
    local i = self.head
    local slot = (i - 1) % cap + 1
    local key = keys[slot]
    local live = items[key] == i
    if live and self.count <= self.max and expires[slot] > now then break end
    if live then
      items[key] = nil
      self.count = self.count - 1
    end
    keys[slot], values[slot] = false, false
    self.head = i + 1
  end
  if self.tail - self.head + 1 > 2 * self.count + 64 then
    local k2, e2, v2, n = {}, {}, {}, 0
    for i = self.head, self.tail do
      local slot = (i - 1) % cap + 1
      local key = keys[slot]
      if items[key] == i then
        n = n + 1
        k2[n], e2[n], v2[n] = key, expires[slot], values[slot]
        items[key] = n
      end
    end
    self.keys, self.expires, self.values, self.head, self.tail = k2, e2, v2, 1, n
  end
end

function Memory:set(key, v, ttl)
  local now = self.clock()
  if not self.items[key] then self.count = self.count + 1 end
  local i = self.tail + 1
  local slot = (i - 1) % self.cap + 1
  self.tail = i
  self.items[key] = i
  self.keys[slot], self.expires[slot], self.values[slot] = key, now + ttl, v
  self:trim(now)
end

function Memory:size()
  self:trim(self.clock())
  return self.count
end

------------------------------------------------------------------------------
-- The triggers object
------------------------------------------------------------------------------
local Triggers = {}
Triggers.__index = Triggers
Triggers.__name = "pipedrive.triggers"

-- Private state per object (weak keys): secrets never sit in the object itself.
local private = setmetatable({}, { __mode = "k" })

local function state(self)
  local st = private[self]
  if not st then error("pipedrive.triggers: expected a triggers object (use triggers:method(...))", 3) end
  return st
end

-- Seconds with a fraction when LuaSocket is there, else whole seconds.
local function default_clock()
  local ok, socket = pcall(require, "socket")
  if ok and type(socket) == "table" and type(socket.gettime) == "function" then return socket.gettime end
  return os.time
end

local function plain_pattern(s)
  return (s:gsub("[%^%$%(%)%%%.%[%]%*%+%-%?]", "%%%0"))
end

-- Removes every secret we know from a text.
local function scrub(st, text)
  text = tostring(text)
  for _, secret in ipairs(st.secrets) do
    text = text:gsub(plain_pattern(secret), "***")
  end
  return text
end

local function emit(st, level, line)
  line = "pipedrive.triggers: " .. scrub(st, line)
  if st.log then
    pcall(st.log, line, level)
  elseif level ~= "info" then
    io.stderr:write(line, "\n")
  end
end

-- A URL without user:password@, query or fragment (for display: some put a
-- token there).
local function display_url(url)
  if not url then return "no url" end
  return (url:gsub("^(%a[%w+.-]*://)[^/@]*@", "%1"):gsub("[?#].*$", ""))
end

local KNOWN = { url = true, user = true, password = true, version = true, name = true, max_body = true,
                seen = true, dedupe_ttl = true, dedupe_max = true, log = true, clock = true, user_id = true }

local function check_url(url)
  return type(url) == "string" and #url <= 2048 and url:match("^[hH][tT][tT][pP][sS]?://[^/%s?#]+") ~= nil
    and not url:find("[%s%c]")
end

local function positive(opts, k, default, integer)
  local v = opts[k]
  if v == nil then return default end
  if type(v) ~= "number" or v <= 0 or (integer and compat.math_type(v) ~= "integer") then
    error(("pipedrive.triggers: %s must be a positive %s"):format(k, integer and "integer" or "number"), 3)
  end
  return v
end

--- Creates a triggers object. `client` (a pipedrive.new client) is needed by
-- enable/disable only; nil gives a receiver that can handle and serve.
-- opts: url, user, password, version ("2.0"), name ("pipedrive-lua"),
-- max_body (1 MiB), seen ({check, mark}), dedupe_ttl (3600 s),
-- dedupe_max (10000), log (function(line, level)), clock (function -> seconds),
-- user_id (whose permissions filter the events).
function M.new(client, opts)
  if opts == nil then opts = {} end
  if type(opts) ~= "table" then error("pipedrive.triggers: expected a table of options", 2) end
  for k in pairs(opts) do
    if not KNOWN[k] then error(("pipedrive.triggers: unknown option '%s'"):format(tostring(k)), 2) end
  end
  if opts.url ~= nil and not check_url(opts.url) then
    error("pipedrive.triggers: url must be an http(s) URL such as \"https://my.host/pipedrive\"", 2)
  end
  local user, password = opts.user, opts.password
  if (user == nil) ~= (password == nil) then
    error("pipedrive.triggers: give both user and password (HTTP Basic auth), or neither", 2)
  end
  if user ~= nil then
    if type(user) ~= "string" or user == "" or user:find("[:%c]") then
      error("pipedrive.triggers: user must be a non-empty string without ':' or control characters", 2)
    end
    if type(password) ~= "string" or password == "" or password:find("%c") then
      error("pipedrive.triggers: password must be a non-empty string without control characters", 2)
    end
  end
  local version = opts.version or "2.0"
  if version ~= "2.0" and version ~= "1.0" then error("pipedrive.triggers: version must be \"2.0\" or \"1.0\"", 2) end
  local name = opts.name or "pipedrive-lua"
  if type(name) ~= "string" or not name:find("%S") or #name > 200 or name:find("%c") then
    error("pipedrive.triggers: name must be a non-empty string of at most 200 characters", 2)
  end
  local seen = opts.seen
  if seen ~= nil and (type(seen) ~= "table" or type(seen.check) ~= "function" or type(seen.mark) ~= "function") then
    error("pipedrive.triggers: seen must be a table { check = function(key), mark = function(key, ttl) }", 2)
  end
  if seen ~= nil and ((seen.claim ~= nil and type(seen.claim) ~= "function")
    or (seen.release ~= nil and type(seen.release) ~= "function")) then
    error("pipedrive.triggers: seen.claim and seen.release must be functions", 2)
  end
  for _, k in ipairs({ "log", "clock" }) do
    if opts[k] ~= nil and type(opts[k]) ~= "function" then
      error(("pipedrive.triggers: %s must be a function"):format(k), 2)
    end
  end
  if opts.user_id ~= nil and compat.math_type(opts.user_id) ~= "integer" then
    error("pipedrive.triggers: user_id must be an integer", 2)
  end

  local clock = opts.clock or default_clock()
  local wall = opts.clock and default_clock() or clock
  local self = setmetatable({}, Triggers)
  local st = {
    client = client, url = opts.url, user = user, version = version, name = name,
    max_body = positive(opts, "max_body", 1048576, true),
    ttl = positive(opts, "dedupe_ttl", 3600),
    max = positive(opts, "dedupe_max", 10000, true),
    log = opts.log, clock = clock, wall = wall, user_id = opts.user_id,
    handlers = {}, by_event = {}, order = {}, inflight = {}, secrets = {},
  }
  st.memory = M.memory(st.max, clock)
  st.partial = M.memory(st.max, clock)
  if seen then
    st.seen = seen
  else
    st.seen = {
      check = function(key) return st.memory:get(key) ~= nil end,
      mark = function(key, ttl) st.memory:set(key, true, ttl) end,
    }
  end
  if user then
    local cred = core.base64_encode(user .. ":" .. password)
    st.password = password
    st.expected = "Basic " .. cred
    st.secrets = { password, cred }
  end
  private[self] = st
  return self
end

--- Registers fn(ev) for an event key: "deal.added", "deal.updated",
-- "person.*", "*.deleted", "*" (v2 words such as "deal.create" work too).
-- Unknown objects or actions for the webhook version raise. Registering the
-- same function twice for a key has no effect. Returns the triggers object.
function Triggers:on(key, fn)
  local st = state(self)
  local k, err = M.parse_key(key, st.version)
  if not k then error("triggers:on: " .. err, 2) end
  if type(fn) ~= "function" then error("triggers:on: expected a function after the event", 2) end
  local list = st.handlers[k]
  if not list then
    list = {}
    st.handlers[k] = list
  end
  for _, f in ipairs(list) do
    if f == fn then return self end
  end
  list[#list + 1] = fn
  st.by_event = {}
  return self
end

--- Removes fn from an event key, or every callback of the key without fn.
-- Returns the triggers object.
function Triggers:off(key, fn)
  local st = state(self)
  local k, err = M.parse_key(key, st.version)
  if not k then error("triggers:off: " .. err, 2) end
  local list = st.handlers[k]
  if not list then return self end
  st.by_event = {}
  if fn == nil then
    st.handlers[k] = nil
    return self
  end
  for i = #list, 1, -1 do
    if list[i] == fn then table.remove(list, i) end
  end
  if #list == 0 then st.handlers[k] = nil end
  return self
end

-- The callbacks for an event, most specific key first, each once; the list
-- is kept per object and action until on() or off() changes the callbacks
-- (callers never modify it).
local function callbacks(st, object, action)
  local cached = st.by_event[object]
  cached = cached and cached[action]
  if cached then return cached end
  local out, dup = {}, {}
  for _, k in ipairs({ object .. "." .. action, object .. ".*", "*." .. action, "*.*" }) do
    for _, fn in ipairs(st.handlers[k] or {}) do
      if not dup[fn] then
        dup[fn] = true
        out[#out + 1] = fn
      end
    end
  end
  local per = st.by_event[object]
  if not per then
    per = {}
    st.by_event[object] = per
  end
  per[action] = out
  return out
end

--- The webhooks the callbacks need, in the version's words, without any that
-- another one covers: a list of { event_action, event_object } sorted by object, action.
function Triggers:subscriptions()
  local st = state(self)
  local wanted = {}
  for k, list in pairs(st.handlers) do
    if #list > 0 then
      local object, action = k:match("^(.-)%.(.*)$")
      if st.version == "2.0" then action = TO_V2[action] end
      wanted[#wanted + 1] = { event_action = action, event_object = object }
    end
  end
  local out = {}
  for _, a in ipairs(wanted) do
    local covered = false
    for _, b in ipairs(wanted) do
      if b ~= a and (b.event_action == "*" or b.event_action == a.event_action)
         and (b.event_object == "*" or b.event_object == a.event_object)
         and not (b.event_action == a.event_action and b.event_object == a.event_object) then
        covered = true
        break
      end
    end
    if not covered then out[#out + 1] = a end
  end
  table.sort(out, function(x, y)
    if x.event_object ~= y.event_object then return x.event_object < y.event_object end
    return x.event_action < y.event_action
  end)
  return out
end

------------------------------------------------------------------------------
-- handle(): one HTTP request
------------------------------------------------------------------------------
local function reply(status, doc, extra)
  local headers = { ["content-type"] = "application/json", ["cache-control"] = "no-store" }
  for k, v in pairs(extra or {}) do headers[k] = v end
  return status, headers, core.json_encode(doc)
end

local function is_json(ct)
  local media = ct:match("^%s*([^;%s]+)")
  if not media then return false end
  media = media:lower()
  return media == "application/json" or media:match("^application/[%w.%-]+%+json$") ~= nil
end

-- Runs the callbacks not yet successful for this event; returns the number that failed.
local function run_callbacks(st, ev, fns, key)
  local done = st.partial:get(key) or {}
  local failed = 0
  for _, fn in ipairs(fns) do
    if not done[fn] then
      local r = compat.pack(pcall(fn, ev))
      local why
      if not r[1] then
        why = r[2]
      elseif r[2] == false then
        why = r[3] or "returned false"
      elseif r[2] == nil and r.n >= 3 and r[3] ~= nil then
        why = r[3]
      end
      if why ~= nil then
        failed = failed + 1
        emit(st, "error", ("callback for %s (id %s, attempt %s) failed: %s")
          :format(ev.event, tostring(ev.id), tostring(ev.meta.attempt), tostring(why)))
      else
        done[fn] = true
      end
    end
  end
  if failed > 0 then
    st.partial:set(key, done, st.ttl)
  else
    st.partial:delete(key)
  end
  return failed
end

local function handle(st, req, hopts)
  if type(req) ~= "table" then return reply(400, { error = "no request" }) end
  local method = type(req.method) == "string" and req.method:upper() or ""
  if method ~= "POST" then return reply(405, { error = "method not allowed" }, { allow = "POST" }) end
  local from = type(req.remote_addr) == "string" and (" from " .. req.remote_addr:sub(1, 64)) or ""

  local headers = {}
  if type(req.headers) == "table" then
    for k, v in pairs(req.headers) do
      if type(k) == "string" then
        if type(v) == "table" then v = v[1] end -- a repeated header (OpenResty gives a list)
        headers[k:lower()] = v
      end
    end
  end

  if st.expected then
    local given = headers.authorization
    local ok = false
    if type(given) == "string" and #given <= 4096 then
      local scheme, cred = given:match("^%s*(%a+)%s+([%w+/=]+)%s*$")
      if scheme and scheme:lower() == "basic" then ok = core.consttime_equal("Basic " .. cred, st.expected) end
    end
    if not ok then
      emit(st, "warn", ("refused a request%s: %s"):format(from,
        given == nil and "no Authorization header" or "wrong or malformed Authorization"))
      return reply(401, { error = "unauthorized" },
        { ["www-authenticate"] = ('Basic realm="%s", charset="UTF-8"'):format((st.name:gsub('["\\]', ""))) })
    end
  end

  local body = req.body
  if body ~= nil and type(body) ~= "string" then return reply(400, { error = "the body must be a string" }) end
  body = body or ""
  if #body > st.max_body then
    emit(st, "warn", ("refused a body of %d bytes%s (max_body %d)"):format(#body, from, st.max_body))
    return reply(413, { error = "payload too large" })
  end
  local ct = headers["content-type"]
  if ct ~= nil and (type(ct) ~= "string" or not is_json(ct)) then
    return reply(415, { error = "expected application/json" })
  end
  local ok, payload = pcall(core.json_decode, body)
  if not ok or payload == nil then return reply(400, { error = "the body is not JSON" }) end
  local ev, why = M.normalize(payload)
  if not ev then return reply(400, { error = why }) end

  local fns = callbacks(st, ev.object, ev.action)
  if #fns == 0 then
    emit(st, "info", ("ignored %s (id %s): no callback"):format(ev.event, tostring(ev.id)))
    return reply(200, { status = "ignored" })
  end

  local key = ev.meta.dedupe_key
  local function duplicate()
    emit(st, "info", ("duplicate %s (id %s, attempt %s) acknowledged"):format(ev.event, tostring(ev.id),
      tostring(ev.meta.attempt)))
    return reply(200, { status = "duplicate" })
  end
  local function busy()
    -- the same event arrived while its callbacks still run (a host that
    -- yields inside callbacks): let Pipedrive send it again later
    return reply(503, { error = "this event is being handled" }, { ["retry-after"] = "3" })
  end
  -- A store shared by processes (pipedrive.ngx.seen) claims the event for one of them at once.
  local claim = st.seen.claim
  if claim then
    local cok, got, claim_state = pcall(claim, key, st.ttl)
    if not cok then
      emit(st, "error", "the seen store failed to claim an event (handling it anyway): " .. tostring(got))
    elseif not got then
      if claim_state == "seen" then return duplicate() end
      return busy()
    end
  else
    if st.inflight[key] then return busy() end
    local cok, was_seen = pcall(st.seen.check, key)
    if not cok then
      emit(st, "error", "the seen store failed to check an event (handling it anyway): " .. tostring(was_seen))
      was_seen = false
    end
    if was_seen then return duplicate() end
  end
  local function release()
    if claim and st.seen.release then pcall(st.seen.release, key) end
  end

  -- Runs the callbacks; true when all succeeded, and only then is the event marked seen.
  local function run()
    st.inflight[key] = true
    local t0 = st.wall()
    local rok, failed = pcall(run_callbacks, st, ev, fns, key)
    st.inflight[key] = nil
    if not rok then
      release()
      error(failed, 0)
    end
    local took = st.wall() - t0
    if took >= 5 then
      emit(st, "warn", ("callbacks for %s took %g s; Pipedrive gives up after 10 s: queue long work")
        :format(ev.event, took))
    end
    if failed > 0 then
      release()
      return false
    end
    local mok, merr = pcall(st.seen.mark, key, st.ttl)
    if not mok then emit(st, "error", "the seen store failed to remember an event: " .. tostring(merr)) end
    if st.log then -- info lines go nowhere without a log function: not even formatted
      emit(st, "info", ("handled %s (id %s, attempt %s)"):format(ev.event, tostring(ev.id), tostring(ev.meta.attempt)))
    end
    return true
  end

  local defer = hopts and hopts.defer
  if defer then
    -- Answer now, run later (OpenResty: ngx.timer.at). A failure then can no longer
    -- become a 5xx: it is logged and the event left unmarked for a redelivery.
    st.inflight[key] = true
    local dok, derr = pcall(defer, function(premature)
      if premature then -- the host is shutting down: leave the event to a redelivery
        st.inflight[key] = nil
        return release()
      end
      local rok, e = pcall(run)
      if not rok then emit(st, "error", "internal error in deferred callbacks: " .. tostring(e)) end
    end)
    if not dok then
      st.inflight[key] = nil
      release()
      emit(st, "error", "could not defer the callbacks: " .. tostring(derr))
      return busy()
    end
    return reply(200, { status = "accepted" })
  end
  if not run() then return reply(500, { error = "callback failed" }) end
  return reply(200, { status = "ok" })
end

--- Handles one webhook request, from any HTTP server:
-- req = { method, headers (any case), body, remote_addr (optional, for logs) }.
-- Returns status, headers, body. Never raises: an internal failure answers 500.
-- opts.defer = function(job): answer 200 ("accepted") once the request is checked
-- and the event claimed, and hand job(premature) to the host to run the callbacks
-- later (pipedrive.ngx.webhook passes ngx.timer.at).
function Triggers:handle(req, opts)
  local st = state(self)
  if opts ~= nil and (type(opts) ~= "table" or (opts.defer ~= nil and type(opts.defer) ~= "function")) then
    error("triggers:handle: opts must be a table { defer = function(job) }", 2)
  end
  local ok, status, headers, body = pcall(handle, st, req, opts)
  if ok then return status, headers, body end
  emit(st, "error", "internal error: " .. tostring(status))
  return reply(500, { error = "internal error" })
end

------------------------------------------------------------------------------
-- enable() / disable(): declarative reconciliation
------------------------------------------------------------------------------
local function need_client(st, what)
  if type(st.client) ~= "table" or type(st.client.webhooks) ~= "table" then
    error(("triggers:%s: these triggers have no client (make them with pd.triggers{...})"):format(what), 3)
  end
  if not st.url then
    error(("triggers:%s: no url: give url to pd.triggers{...} or call triggers:listen first"):format(what), 3)
  end
  return st.client
end

-- An error the user may print or log: no response body, secrets scrubbed.
local function public_error(st, err, doing)
  local e = type(err) == "table" and err or { message = tostring(err) }
  return setmetatable({
    kind = e.kind or "error", status = e.status, code = e.code, method = e.method, path = e.path,
    retry_after = e.retry_after, message = scrub(st, doing .. ": " .. tostring(e.message or "failed")),
  }, core.error_mt)
end

local function ours(st, w)
  if type(w) ~= "table" or w.subscription_url ~= st.url or type(w.name) ~= "string" then return false end
  return w.name == st.name or w.name:sub(1, #st.name + 1) == st.name .. " "
end

-- Whether an existing webhook of ours still delivers what we want, as we want it.
local function still_good(st, w)
  if w.version ~= nil and w.version ~= st.version then return false end
  local u = w.http_auth_user
  if u ~= nil then
    if u == null or u == "" then u = nil end
    if u ~= st.user then return false end
  end
  local p = w.http_auth_password
  if type(p) == "string" and p ~= "" and not p:match("^%*+$") and p ~= st.password then return false end
  if p == null and st.password then return false end
  return true
end

local function summary(w)
  return { id = to_id(w.id), event_action = w.event_action, event_object = w.event_object, name = w.name,
           version = w.version }
end

local function delete_all(st, c, list, out)
  for _, w in ipairs(list) do
    local ok, err = c.webhooks.delete(w.id)
    if ok == nil and not (type(err) == "table" and err.status == 404) then
      return nil, public_error(st, err, ("deleting webhook %s"):format(tostring(w.id)))
    end
    out[#out + 1] = summary(w)
  end
  return true
end

--- Makes the user's webhooks match the callbacks: creates those missing,
-- keeps those that already fit, then deletes our stale ones (same url, name
-- starting with our prefix). Returns true, { created, kept, deleted } or
-- nil, err (then nothing of ours was deleted that is still wanted; call again).
function Triggers:enable()
  local st = state(self)
  local c = need_client(st, "enable")
  -- at most 40 (v1: 10 objects x 4 actions), Pipedrive's cap per user; other
  -- webhooks of the same user can still make Pipedrive refuse one (422)
  local desired = self:subscriptions()
  local list, lerr = c.webhooks.list()
  if not list then return nil, public_error(st, lerr, "listing webhooks") end
  local want = {}
  for _, d in ipairs(desired) do want[d.event_action .. "|" .. d.event_object] = d end
  local keep, stale = {}, {}
  local result = { created = {}, kept = {}, deleted = {} }
  for _, w in ipairs(list) do
    if ours(st, w) then
      local k = tostring(w.event_action) .. "|" .. tostring(w.event_object)
      if want[k] and not keep[k] and still_good(st, w) then
        keep[k] = w
        result.kept[#result.kept + 1] = summary(w)
      else
        stale[#stale + 1] = w
      end
    end
  end
  -- Create first, delete after: a moment with both delivers twice rather than losing events.
  for _, d in ipairs(desired) do
    local k = d.event_action .. "|" .. d.event_object
    if not keep[k] then
      local args = {
        subscription_url = st.url, event_action = d.event_action, event_object = d.event_object,
        name = ("%s %s.%s"):format(st.name, d.event_object, d.event_action), version = st.version,
        http_auth_user = st.user, http_auth_password = st.password, user_id = st.user_id,
      }
      local w, aerr = c.webhooks.add(args)
      if not w and type(aerr) == "table" and aerr.status == 422 and #stale > 0 then
        -- at the 40-webhook cap: make room with our stale ones, then try again
        local ok, derr = delete_all(st, c, stale, result.deleted)
        stale = {}
        if not ok then return nil, derr end
        w, aerr = c.webhooks.add(args)
      end
      if not w then
        return nil, public_error(st, aerr, ("creating the webhook for %s.%s"):format(d.event_object, d.event_action))
      end
      result.created[#result.created + 1] = summary(w)
      emit(st, "info", ("created webhook %s (%s.%s)"):format(tostring(w.id), d.event_object, d.event_action))
    end
  end
  local ok, derr = delete_all(st, c, stale, result.deleted)
  if not ok then return nil, derr end
  return true, result
end

--- Deletes our webhooks (same url, name starting with our prefix). Returns
-- true, { deleted } or nil, err.
function Triggers:disable()
  local st = state(self)
  local c = need_client(st, "disable")
  local list, lerr = c.webhooks.list()
  if not list then return nil, public_error(st, lerr, "listing webhooks") end
  local mine = {}
  for _, w in ipairs(list) do
    if ours(st, w) then mine[#mine + 1] = w end
  end
  local result = { deleted = {} }
  local ok, derr = delete_all(st, c, mine, result.deleted)
  if not ok then return nil, derr end
  return true, result
end

------------------------------------------------------------------------------
-- The standalone listener
------------------------------------------------------------------------------
local function url_path(url)
  if not url then return nil end
  local path = url:match("^%a[%w+.-]*://[^/?#]*(/[^?#]*)")
  return path or "/"
end

--- Starts listening (without serving yet): opts = { host = "127.0.0.1",
-- port = 0 (any free port), path (default: the path of url, else "/"),
-- connection_timeout = 10, connection_limit = 256, request_timeout = 10,
-- per_ip_limit = 32: pipedrive.httpd's limits, README "Webhook triggers" }. Returns port, url
-- (the url given to pd.triggers, or, when none was, this listener's own
-- http://host:port/path, which enable() then subscribes) or nil, err.
function Triggers:listen(opts)
  local st = state(self)
  opts = opts or {}
  if type(opts) ~= "table" then error("triggers:listen: expected a table of options", 2) end
  if st.server then error("triggers:listen: already listening (call triggers:close() first)", 2) end
  local path = opts.path or url_path(st.url) or "/"
  if type(path) ~= "string" or path:sub(1, 1) ~= "/" then error("triggers:listen: path must start with '/'", 2) end
  local host = opts.host or "127.0.0.1"
  local httpd = require "pipedrive.httpd"
  local srv, err = httpd.listen{
    host = host, port = opts.port or 0, max_body = st.max_body, log_errors = false,
    connection_timeout = opts.connection_timeout, connection_limit = opts.connection_limit,
    request_timeout = opts.request_timeout, per_ip_limit = opts.per_ip_limit,
    handler = function(req)
      if req.path ~= path then return reply(404, { error = "not found" }) end
      return self:handle(req)
    end,
  }
  if not srv then return nil, err end
  st.server, st.path = srv, path
  if not st.url then
    local shown = host
    if host == "0.0.0.0" then shown = "127.0.0.1" elseif host == "::" then shown = "::1" end
    if shown:find(":") then shown = "[" .. shown .. "]" end
    st.url = ("http://%s:%d%s"):format(shown, srv:port(), path)
  end
  emit(st, "info", ("listening on %s port %d, path %s"):format(host, srv:port(), path))
  return srv:port(), st.url
end

--- Serves webhook requests until triggers:stop() (e.g. from a callback),
-- `timeout` seconds, or `stop_when()` (also accepted as ["until"]) returns
-- true. Listens first (with these opts, see listen) unless already listening;
-- a listener opened here is closed on return. Callbacks run inside, one
-- request at a time; libmicrohttpd keeps the other connections waiting.
-- Returns true, or nil, err when it could not listen.
function Triggers:serve(opts)
  local st = state(self)
  opts = opts or {}
  if type(opts) ~= "table" then error("triggers:serve: expected a table of options", 2) end
  if st.serving then error("triggers:serve: already serving (called from a callback?)", 2) end
  local timeout = opts.timeout
  if timeout ~= nil and (type(timeout) ~= "number" or timeout < 0) then
    error("triggers:serve: timeout must be a number of seconds", 2)
  end
  local stop_when = opts.stop_when or opts["until"]
  if stop_when ~= nil and type(stop_when) ~= "function" then
    error("triggers:serve: stop_when must be a function", 2)
  end
  local own = false
  if not st.server then
    local port, err = self:listen{ host = opts.host, port = opts.port, path = opts.path,
                                   connection_timeout = opts.connection_timeout,
                                   connection_limit = opts.connection_limit,
                                   request_timeout = opts.request_timeout, per_ip_limit = opts.per_ip_limit }
    if not port then return nil, err end
    own = true
  end
  local srv = st.server
  local deadline = timeout and st.wall() + timeout
  st.serving, st.stopping = true, false
  local ok, err = pcall(function()
    while not st.stopping do
      if stop_when and stop_when() then break end
      local wait = 0.05
      if deadline then
        local left = deadline - st.wall()
        if left <= 0 then break end
        if left < wait then wait = left end
      end
      srv:step(wait)
    end
  end)
  st.serving, st.stopping = false, false
  if own then self:close() end
  if not ok then error(err, 0) end
  return true
end

--- Makes serve() return once the request under way is answered.
function Triggers:stop()
  state(self).stopping = true
end

--- Stops listening and drops open connections. Idempotent.
function Triggers:close()
  local st = state(self)
  if st.server then
    st.server:close()
    st.server = nil
  end
  st.stopping = true
end

--- The port listened on, or nil.
function Triggers:port()
  local st = state(self)
  return st.server and st.server:port() or nil
end

--- The subscription URL (given, or made by listen), or nil.
function Triggers:url()
  return state(self).url
end

--- Handled events remembered by the default store (for tests and monitoring).
function Triggers:remembered()
  return state(self).memory:size()
end

Triggers.__tostring = function(self)
  local st = private[self]
  if not st then return "pipedrive.triggers" end
  local n = 0
  for _, list in pairs(st.handlers) do n = n + #list end
  return ("pipedrive.triggers (version %s, %s, %d callback%s%s%s)"):format(st.version, display_url(st.url), n,
    n == 1 and "" or "s", st.expected and ", basic auth" or "",
    st.server and (", listening on port " .. st.server:port()) or "")
end
Triggers.__close = function(self) self:close() end

return M
