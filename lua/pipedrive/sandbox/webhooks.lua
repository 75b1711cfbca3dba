--- Webhooks: the /v1/webhooks API and the events it subscribes to.
--
-- The API follows the current v1 file (FACTS §5): GET/POST /v1/webhooks,
-- DELETE /v1/webhooks/{id}, answers in the {"status","success"} envelope with
-- field errors under "errors". A webhook of version "2.0" (the default) names
-- events in v2 words (create|change|delete|*, objects incl. lead), one of
-- version "1.0" in v1 words (added|updated|deleted|merged|*, objects incl.
-- activityType, no lead).
--
-- Events: the API handlers call
--   local ev = hooks:prepare(kind, action, record_before)  -- before changing anything
--   ... change the store ...
--   hooks:publish(ev, record_after)                         -- nil after a delete
-- prepare renders the "before" state only when some active webhook wants the
-- event, so the common case (no webhooks) costs a table lookup. publish builds
-- one payload per matching webhook, in that webhook's version format, and
-- queues it with `pipedrive.sandbox.delivery`, which sends it later from the
-- server loop (never while an API call is being answered).
local compat = require "pipedrive.compat"
local json = require "pipedrive.sandbox.json"
local util = require "pipedrive.sandbox.util"
local time = require "pipedrive.sandbox.time"
local check = require "pipedrive.sandbox.check"
local shapes = require "pipedrive.sandbox.shapes"
local activities = require "pipedrive.sandbox.activities"
local delivery_mod = require "pipedrive.sandbox.delivery"

local array, null = json.array, json.null

local M = {}

M.MAX_PER_USER = 40
M.V2_ACTIONS = { "create", "change", "delete", "*" }
M.V2_OBJECTS = { "activity", "deal", "lead", "note", "organization", "person", "pipeline", "product", "stage",
                 "user", "*" }
M.V1_ACTIONS = { "added", "updated", "deleted", "merged", "*" }
M.V1_OBJECTS = { "activity", "activityType", "deal", "note", "organization", "person", "pipeline", "product",
                 "stage", "user", "*" }

-- v2 action -> v1 action.
local V1_ACTION = { create = "added", change = "updated", delete = "deleted" }
M.V1_ACTION = V1_ACTION

local RESOURCE = { kind = "webhook", label = "Webhook" }

local Hooks = {}
Hooks.__index = Hooks

--- opts: retry_delays, duplicate, timeout (passed to the delivery queue), seed.
function M.new(app, opts)
  opts = opts or {}
  local hooks = setmetatable({
    app = app,
    -- event ids differ from one sandbox process to the next unless a seed is given
    uuid_state = compat.tointeger(opts.seed)
      or (time.wall() + (tonumber(tostring({}):match("0x(%x+)") or "0", 16) or 0)) % 4294967296,
    delivery = delivery_mod.new{ retry_delays = opts.retry_delays, duplicate = opts.duplicate,
                                 timeout = opts.timeout },
  }, Hooks)
  hooks:reset()
  return hooks
end

--- No webhooks, nothing queued (deliveries already running are let finish unrecorded).
function Hooks:reset()
  self.list = {}
  self.by_id = {}
  self.last_id = 0
  self.delivery:reset()
end

-- A version 4 UUID (events, correlation ids), from its own generator.
function Hooks:uuid()
  local id
  id, self.uuid_state = util.uuid4(self.uuid_state)
  return id
end

------------------------------------------------------------------------------
-- The webhook object
------------------------------------------------------------------------------
local function or_null(v)
  if v == nil then return null end
  return v
end

local function render(w)
  return {
    id = w.id, company_id = w.company_id, owner_id = w.owner_id, user_id = w.user_id,
    event_action = w.event_action, event_object = w.event_object, subscription_url = w.subscription_url,
    version = w.version, is_active = 1, add_time = time.ms(w.add_time), remove_time = null,
    type = "general", http_auth_user = or_null(w.http_auth_user), http_auth_password = or_null(w.http_auth_password),
    remove_reason = null, last_delivery_time = w.last_delivery_time and time.ms(w.last_delivery_time) or null,
    last_http_status = or_null(w.last_http_status), admin_id = w.admin_id, name = w.name,
  }
end
M.render = render

--- The webhooks for GET /_sandbox/state (passwords masked).
function Hooks:dump()
  local out = array()
  for i, w in ipairs(self.list) do
    local r = render(w)
    if w.http_auth_password then r.http_auth_password = "***" end
    out[i] = r
  end
  return out
end

------------------------------------------------------------------------------
-- API: GET/POST /v1/webhooks, DELETE /v1/webhooks/{id}
------------------------------------------------------------------------------
local function errors_body(errors)
  return { status = "error", success = false, errors = errors }
end

--- An absolute http(s) URL: a host (name, IPv4 or [IPv6]), an optional port,
-- no spaces or control characters.
function M.valid_url(s)
  if type(s) ~= "string" or #s > 2048 or s:find("[%c%s\"\\]") then return false end
  local scheme, rest = s:match("^(%a[%w+.-]*)://(.*)$")
  if not scheme then return false end
  scheme = scheme:lower()
  if scheme ~= "http" and scheme ~= "https" then return false end
  local authority = rest:match("^([^/?#]*)")
  authority = authority:gsub("^.*@", "")
  local host, port = authority:match("^(%b[])(.*)$")
  if not host then host, port = authority:match("^([^:]*)(.*)$") end
  if host == "" or not (host:match("^%[[%x:.]+%]$") or host:match("^[%w][%w.-]*$")) then return false end
  if port ~= "" then
    local n = port:match("^:(%d+)$")
    n = n and tonumber(n)
    if not n or n < 1 or n > 65535 then return false end
  end
  return true
end

function M.list(app)
  local data = array()
  for i, w in ipairs(app.hooks.list) do data[i] = render(w) end
  return 200, { status = "ok", success = true, data = data }
end

function M.add(app, ctx)
  local hooks, st = app.hooks, app.store
  local raw = ctx.body.raw
  local errors = {}
  local function err(field, msg)
    errors[field] = errors[field] or array()
    table.insert(errors[field], msg)
  end
  local function given(name)
    local v = raw[name]
    if v == null then return nil end
    return v
  end

  local version = given("version")
  if version == nil then
    version = "2.0"
  elseif version == 1 or version == 2 then
    version = ("%d.0"):format(version)
  elseif version ~= "1.0" and version ~= "2.0" then
    err("version", "must be one of 1.0, 2.0")
    version = nil
  end

  local url = given("subscription_url")
  if url == nil or url == "" then
    err("subscription_url", "is required")
  elseif not M.valid_url(url) then
    err("subscription_url", "invalid or non-reachable URL")
  end

  local actions = version == "1.0" and M.V1_ACTIONS or M.V2_ACTIONS
  local objects = version == "1.0" and M.V1_OBJECTS or M.V2_OBJECTS
  local function enum(name, list)
    local v = given(name)
    if v == nil or v == "" then
      err(name, "is required")
    elseif version and (type(v) ~= "string" or not check.in_list(list, v)) then
      err(name, ("must be one of %s for version %s webhooks"):format(table.concat(list, ", "), version))
    end
    return v
  end
  local action = enum("event_action", actions)
  local object = enum("event_object", objects)

  local name = given("name")
  if name == nil or (type(name) == "string" and not name:find("%S")) then
    err("name", "is required")
  elseif type(name) ~= "string" then
    err("name", "must be a string")
  elseif (compat.utf8_len(name) or #name) > 255 then
    err("name", "must be at most 255 characters")
  end

  local user_id = given("user_id")
  if type(user_id) == "string" and user_id:match("^%d+$") then user_id = compat.tointeger(tonumber(user_id)) end
  if user_id ~= nil then
    if compat.math_type(user_id) ~= "integer" then
      err("user_id", "must be an integer")
    elseif not st:user(user_id) then
      err("user_id", ("user %d not found"):format(user_id))
    end
  end

  for _, field in ipairs({ "http_auth_user", "http_auth_password" }) do
    local v = given(field)
    if v ~= nil and type(v) ~= "string" then err(field, "must be a string or null") end
  end

  if next(errors) then return 400, errors_body(errors) end

  user_id = user_id or ctx.me.id
  local count = 0
  for _, w in ipairs(hooks.list) do
    if w.user_id == user_id then count = count + 1 end
  end
  if count >= M.MAX_PER_USER then
    return 422, errors_body({ user_id = array({ ("webhooks limit reached: a user can have at most %d webhooks")
      :format(M.MAX_PER_USER) }) })
  end

  hooks.last_id = hooks.last_id + 1
  local auth_user, auth_password = given("http_auth_user"), given("http_auth_password")
  if auth_user == "" then auth_user = nil end
  if auth_password == "" then auth_password = nil end
  local w = {
    id = hooks.last_id, company_id = st.company.id, owner_id = ctx.me.id, admin_id = ctx.me.id, user_id = user_id,
    event_action = action, event_object = object, subscription_url = url, version = version, name = name,
    http_auth_user = auth_user, http_auth_password = auth_password, add_time = st:now(),
  }
  hooks.list[#hooks.list + 1] = w
  hooks.by_id[w.id] = w
  return 201, { status = "ok", success = true, data = render(w) }
end

function M.delete(app, ctx)
  local hooks = app.hooks
  local w = hooks.by_id[ctx.id]
  if not w then return 404, errors_body({ id = array({ "not found" }) }) end
  hooks.by_id[w.id] = nil
  for i = #hooks.list, 1, -1 do
    if hooks.list[i] == w then table.remove(hooks.list, i) end
  end
  w.removed = true -- queued deliveries of this webhook are dropped
  return 200, { status = "ok", success = true }
end

--- Routing for /v1/webhooks[/{id}] (API v1 only).
function M.route(version, segs)
  if version ~= "v1" then return nil end
  if #segs == 1 then return { GET = M.list, POST = M.add }, RESOURCE end
  if #segs == 2 then return { DELETE = M.delete }, RESOURCE, segs[2] end
  return nil
end

------------------------------------------------------------------------------
-- Events
------------------------------------------------------------------------------
-- Whether webhook w wants `action` (v2 word) on `kind`.
local function wants(w, kind, action)
  if w.version == "1.0" then
    if kind == "lead" then return false end
    return (w.event_action == "*" or w.event_action == V1_ACTION[action])
      and (w.event_object == "*" or w.event_object == kind)
  end
  return (w.event_action == "*" or w.event_action == action) and (w.event_object == "*" or w.event_object == kind)
end

-- The webhooks that want the event, and which payload versions they need.
function Hooks:matching(kind, action)
  local out, need = {}, {}
  for _, w in ipairs(self.list) do
    if wants(w, kind, action) then
      out[#out + 1] = w
      need[w.version] = true
    end
  end
  return out, need
end

-- v1 records embed owner, person and organization as objects; v1 webhook
-- payloads carry their ids.
local REF_KEYS = { "user_id", "creator_user_id", "person_id", "org_id", "owner_id" }

local function flatten_refs(r)
  for _, k in ipairs(REF_KEYS) do
    local v = r[k]
    if type(v) == "table" and v ~= null and v.value ~= nil then r[k] = v.value end
  end
  return r
end

local V1_SHAPE = {
  deal = function(st, r) return flatten_refs(shapes.deal_v1(st, r)) end,
  person = function(st, r) return flatten_refs(shapes.person_v1(st, r)) end,
  organization = function(st, r) return flatten_refs(shapes.org_v1(st, r)) end,
  activity = function(st, r) return activities.v1(st, r) end,
}

local V2_SHAPE = {
  deal = function(st, r) return shapes.deal_v2(st, r) end,
  person = function(st, r) return shapes.person_v2(st, r) end,
  organization = function(st, r) return shapes.org_v2(st, r) end,
  activity = function(st, r) return activities.v2(st, r) end,
  lead = function(st, r) return shapes.lead_v1(st, r) end,
}

-- The record in each payload version that is needed; payloads write null
-- where Pipedrive does (real_nulls), whatever the API answers do.
local function snapshot(st, kind, r, need)
  local saved = st.real_nulls
  st.real_nulls = true
  local ok, out = pcall(function()
    local t = {}
    if need["1.0"] and V1_SHAPE[kind] then t["1.0"] = V1_SHAPE[kind](st, r) end
    if need["2.0"] then t["2.0"] = V2_SHAPE[kind](st, r) end
    return t
  end)
  st.real_nulls = saved
  if not ok then error(out, 0) end
  return out
end

local function same(a, b)
  return json.encode(a == nil and null or a) == json.encode(b == nil and null or b)
end

--- The fields of `old` that differ in `new`, with their old values (v2 `previous`
-- of a change). update_time always changes and is left out; custom_fields
-- list only the keys that changed.
function M.changed(old, new)
  local prev = {}
  for k, ov in pairs(old) do
    if k ~= "update_time" and not same(ov, new[k]) then prev[k] = ov end
  end
  for k in pairs(new) do
    if old[k] == nil and k ~= "update_time" then prev[k] = null end
  end
  local oc, nc = old.custom_fields, new.custom_fields
  if prev.custom_fields and type(oc) == "table" and type(nc) == "table" then
    local cf = {}
    for k, v in pairs(oc) do
      if not same(v, nc[k]) then cf[k] = v end
    end
    for k in pairs(nc) do
      if oc[k] == nil then cf[k] = null end
    end
    prev.custom_fields = cf
  end
  return prev
end

--- Call before changing the store. Returns nil when no webhook wants the event.
function Hooks:prepare(kind, action, before)
  if #self.list == 0 then return nil end
  local targets, need = self:matching(kind, action)
  if #targets == 0 then return nil end
  local ev = { kind = kind, action = action, targets = targets, need = need }
  if before then
    ev.id = before.id
    ev.before = snapshot(self.app.store, kind, before, need)
  end
  return ev
end

local iso_ms = time.ms

-- The v1 payload of one event for one webhook; `retry` is set per attempt.
local function payload_v1(self, ev, w, meta_common)
  local st = self.app.store
  local before, after = ev.before and ev.before["1.0"], ev.after and ev.after["1.0"]
  local matches = function() return { current = array(), previous = array() } end
  local meta = {
    v = 1, action = V1_ACTION[ev.action], object = ev.kind, id = ev.id, company_id = st.company.id,
    user_id = meta_common.user_id, host = meta_common.host, timestamp = math.floor(ev.time),
    timestamp_micro = math.floor(ev.time * 1000000), permitted_user_ids = meta_common.permitted,
    trans_pending = false, is_bulk_update = false, pipedrive_service_name = false, matches_filters = matches(),
    webhook_id = tostring(w.id), change_source = "api",
  }
  if ev.kind == "activity" then
    meta.send_activity_notifications = false
    meta.activity_notifications_language = "en_US"
  end
  local current = null
  if ev.action ~= "delete" then current = after end
  local previous = null
  if ev.action ~= "create" then previous = before end
  return {
    v = 1, matches_filters = matches(), meta = meta, retry = 0, current = current, previous = previous,
    event = V1_ACTION[ev.action] .. "." .. ev.kind,
  }
end

-- The v2 payload of one event for one webhook; meta.attempt is set per attempt.
local function payload_v2(self, ev, w, meta_common, event_id)
  local st = self.app.store
  local before, after = ev.before and ev.before["2.0"], ev.after and ev.after["2.0"]
  local permitted = array()
  for i, id in ipairs(meta_common.permitted) do permitted[i] = tostring(id) end
  local data, previous = null, null
  if ev.action == "create" then
    data = after
  elseif ev.action == "change" then
    data, previous = after, M.changed(before, after)
  else
    previous = before
  end
  return {
    meta = {
      action = ev.action, entity = ev.kind, company_id = tostring(st.company.id),
      correlation_id = ev.correlation_id, entity_id = tostring(ev.id), id = event_id, is_bulk_edit = false,
      timestamp = iso_ms(ev.time), type = "general", user_id = tostring(meta_common.user_id), version = "2.0",
      webhook_id = tostring(w.id), webhook_owner_id = tostring(w.owner_id), change_source = "api", attempt = 1,
      host = meta_common.host, permitted_user_ids = permitted,
    },
    data = data,
    previous = previous,
  }
end

--- Call after changing the store: queues one delivery per webhook that wants the event.
function Hooks:publish(ev, after)
  if not ev then return end
  local st = self.app.store
  if after then
    ev.id = after.id
    ev.after = snapshot(st, ev.kind, after, ev.need)
  end
  ev.time = st:now()
  ev.correlation_id = self:uuid()
  local permitted = array()
  for i, u in ipairs(st.users) do permitted[i] = u.id end
  local common = { user_id = st:me().id, host = st.company.domain .. ".pipedrive.com", permitted = permitted }
  for _, w in ipairs(ev.targets) do
    local event_id = self:uuid()
    local body
    if w.version == "1.0" then
      local p = payload_v1(self, ev, w, common)
      body = function(attempt)
        p.retry = attempt - 1
        return json.encode(p)
      end
    else
      local p = payload_v2(self, ev, w, common, event_id)
      body = function(attempt)
        p.meta.attempt = attempt
        return json.encode(p)
      end
    end
    self.delivery:enqueue{
      webhook = w, url = w.subscription_url, user = w.http_auth_user, password = w.http_auth_password,
      event_id = event_id, object = ev.kind, action = ev.action, body = body,
    }
  end
end

return M
