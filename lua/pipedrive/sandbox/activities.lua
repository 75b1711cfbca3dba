--- Activities: /api/v2/activities (v2 file) and /v1/activities (the 2026-01-14 v1 file).
--
-- Records live in the store as kind "activity" (integer ids, soft-deleted like
-- deals). The canonical record:
--   id, subject, type (an activity type key), owner_id, creator_user_id,
--   update_user_id, deal_id, lead_id, person_id, org_id, due_date ("YYYY-MM-DD"),
--   due_time and duration ("HH:MM"), busy (nil: busy when a time is set), done,
--   marked_as_done_time, note, public_description, location ({value, parts}),
--   priority, add_time, update_time, deleted, due_key (sort key of due_date).
-- v2 names the owner owner_id and the busy flag busy; v1 user_id and busy_flag,
-- and takes done as 0/1 too.
local compat = require "pipedrive.compat"
local json = require "pipedrive.sandbox.json"
local util = require "pipedrive.sandbox.util"
local time = require "pipedrive.sandbox.time"
local check = require "pipedrive.sandbox.check"
local shapes = require "pipedrive.sandbox.shapes"
local api = require "pipedrive.sandbox.api"

local H = api.helpers
local array, null = json.array, json.null
local invalid = check.invalid

local M = {}

M.RESOURCE = { kind = "activity", label = "Activity", filter_type = "activity" }

-- The activity types every Pipedrive company starts with: key -> name.
M.TYPES = { call = "Call", meeting = "Meeting", task = "Task", deadline = "Deadline", email = "Email",
            lunch = "Lunch" }
local TYPE_KEYS = { "call", "deadline", "email", "lunch", "meeting", "task" }

------------------------------------------------------------------------------
-- Input
------------------------------------------------------------------------------
-- "HH:MM" or "HH:MM:SS" -> "HH:MM" (activities have minute resolution).
local function clock_field(b, name, max_hours)
  local v = b:get(name)
  if v == nil then return nil end
  local h, m, s
  if type(v) == "string" then
    h, m, s = v:match("^(%d%d?):(%d%d)$")
    if not h then h, m, s = v:match("^(%d%d?):(%d%d):(%d%d)$") end
  end
  h, m = tonumber(h), tonumber(m)
  if not h or h > max_hours or m > 59 or (s and tonumber(s) > 59) then
    invalid(name, "must be a time in the format HH:MM")
  end
  return ("%02d:%02d"):format(h, m)
end

local function lead_ref(app, b)
  local v = b:get("lead_id")
  if v == nil then return nil end
  if not util.is_uuid(v) then invalid("lead_id", "must be a lead id (a UUID)") end
  v = v:lower()
  if not app.store:get("lead", v) then invalid("lead_id", ("lead %s not found"):format(v)) end
  return v
end

local function normalize(app, b, api_version, update)
  local f = {}
  local subject = b:string("subject", { max = 255 })
  if subject and not subject:find("%S") then
    if update then invalid("subject", "cannot be empty") end
    subject = nil
  end
  f.subject = subject
  f.type = b:enum("type", TYPE_KEYS)
  f.owner_id = H.user_ref(app, b, api_version == "v1" and "user_id" or "owner_id")
  f.deal_id = H.live_ref(app, b, "deal_id", "deal", "deal")
  f.lead_id = lead_ref(app, b)
  f.person_id = H.live_ref(app, b, "person_id", "person", "person")
  f.org_id = H.live_ref(app, b, "org_id", "organization", "organization")
  f.due_date = b:date("due_date")
  f.due_time = clock_field(b, "due_time", 23)
  f.duration = clock_field(b, "duration", 99)
  f.busy = b:bool(api_version == "v1" and "busy_flag" or "busy")
  f.done = b:bool("done")
  f.note = b:string("note")
  f.public_description = b:string("public_description")
  f.location = H.address(b, "location")
  if api_version == "v2" then f.priority = b:int("priority", { min = 0 }) end
  return f
end

-- Body names an update may set to null, and the record field each clears.
local CLEARABLE = {
  deal_id = "deal_id", lead_id = "lead_id", person_id = "person_id", org_id = "org_id", due_date = "due_date",
  due_time = "due_time", duration = "duration", note = "note", public_description = "public_description",
  location = "location", priority = "priority", busy = "busy", busy_flag = "busy",
}

local function due_key(a)
  return (a.due_date or "") .. " " .. (a.due_time or "")
end

------------------------------------------------------------------------------
-- Shapes
------------------------------------------------------------------------------
local function busy_of(a)
  if a.busy ~= nil then return a.busy end
  return a.due_time ~= nil
end

local function participants_v2(a)
  local out = array()
  if a.person_id then out[1] = { person_id = a.person_id, primary = true } end
  return out
end

--- An activity in API v2. opts.include: set of include_fields (attendees).
function M.v2(st, a, opts)
  local NONE = shapes.none(st)
  local location = NONE
  if a.location then
    location = {}
    for k, v in pairs(a.location) do location[k] = v end
  end
  local r = {
    id = a.id, subject = a.subject, type = a.type, owner_id = a.owner_id, creator_user_id = a.creator_user_id,
    is_deleted = a.deleted, add_time = time.v2(a.add_time), update_time = time.v2(a.update_time),
    deal_id = a.deal_id or NONE, lead_id = a.lead_id or NONE, person_id = a.person_id or NONE,
    org_id = a.org_id or NONE, project_id = NONE, due_date = a.due_date or NONE,
    due_time = a.due_time and (a.due_time .. ":00") or NONE, duration = a.duration and (a.duration .. ":00") or NONE,
    busy = busy_of(a), done = a.done, marked_as_done_time = time.v2(a.marked_as_done_time) or NONE,
    location = location, participants = participants_v2(a), public_description = a.public_description or NONE,
    priority = a.priority or NONE, note = a.note or NONE,
  }
  if opts and opts.include and opts.include.attendees then r.attendees = array() end
  return r
end

--- An activity in API v1 (flat ids, names of what it links to).
function M.v1(st, a)
  local NONE = shapes.none(st)
  local owner = st:user(a.owner_id)
  local deal = a.deal_id and st:get("deal", a.deal_id)
  local person = a.person_id and st:get("person", a.person_id)
  local org = a.org_id and st:get("organization", a.org_id)
  local loc = a.location
  local participants = null
  if a.person_id then participants = array({ { person_id = a.person_id, primary_flag = true } }) end
  local r = {
    id = a.id, company_id = st.company.id, user_id = a.owner_id, assigned_to_user_id = a.owner_id,
    created_by_user_id = a.creator_user_id, update_user_id = a.update_user_id or NONE, done = a.done,
    type = a.type, subject = a.subject, due_date = a.due_date or NONE, due_time = a.due_time or NONE,
    duration = a.duration or NONE, busy_flag = busy_of(a), add_time = time.v1(a.add_time),
    update_time = time.v1(a.update_time), marked_as_done_time = time.v1(a.marked_as_done_time) or NONE,
    active_flag = not a.deleted, deal_id = a.deal_id or NONE, lead_id = a.lead_id or null,
    person_id = a.person_id or NONE, org_id = a.org_id or NONE, project_id = null, note = a.note or NONE,
    public_description = a.public_description or NONE, location = loc and loc.value or NONE,
    location_formatted_address = loc and loc.value or NONE, participants = participants, attendees = null,
    series = array(), owner_name = owner and owner.name or NONE, deal_title = deal and deal.title or NONE,
    person_name = person and person.name or NONE, org_name = org and org.name or NONE,
    person_dropbox_bcc = person and shapes.cc_email(st, "person" .. person.id) or NONE,
    deal_dropbox_bcc = deal and shapes.cc_email(st, "deal" .. deal.id) or NONE,
  }
  for _, part in ipairs(shapes.ADDRESS_PARTS) do
    r["location_" .. part] = (loc and loc[part]) or NONE
  end
  return r
end

--- related_objects of v1 answers: users, deals, persons, organizations.
-- The file gives persons and organizations an active_flag in the answers to
-- POST and PUT only (`saved`).
function M.related(st, list, saved)
  local users, deals, persons, orgs = {}, {}, {}, {}
  for _, a in ipairs(list) do
    for _, uid in ipairs({ a.owner_id, a.creator_user_id }) do
      local u = st:user(uid)
      if u then users[tostring(u.id)] = shapes.user_related(u) end
    end
    local d = a.deal_id and st:get("deal", a.deal_id)
    if d then
      deals[tostring(d.id)] = { id = d.id, title = d.title, status = d.deleted and "deleted" or d.status,
                                value = compat.tointeger(d.value) or d.value, currency = d.currency,
                                stage_id = d.stage_id, pipeline_id = d.pipeline_id }
    end
    local p = a.person_id and st:get("person", a.person_id)
    if p then
      persons[tostring(p.id)] = shapes.person_related(p)
      if not saved then persons[tostring(p.id)].active_flag = nil end
    end
    local o = a.org_id and st:get("organization", a.org_id)
    if o then
      orgs[tostring(o.id)] = shapes.org_related(st, o)
      if not saved then orgs[tostring(o.id)].active_flag = nil end
    end
  end
  return { user = users, deal = deals, person = persons, organization = orgs }
end

local function one_v1(app, a, status, saved)
  local st = app.store
  return status, { success = true, data = M.v1(st, a), related_objects = M.related(st, { a }, saved) }
end

------------------------------------------------------------------------------
-- Handlers
------------------------------------------------------------------------------
local function list_v2(app, ctx, res)
  local q, st = ctx.q, app.store
  local filter_id = q:id("filter_id")
  local rule = H.filter_rule(app, filter_id, res.filter_type)
  local ids = q:ids("ids", 100)
  local owner_id, deal_id = q:id("owner_id"), q:id("deal_id")
  local person_id, org_id = q:id("person_id"), q:id("org_id")
  local lead_id = q:string("lead_id")
  if lead_id == "" then lead_id = nil end
  if lead_id then
    if not util.is_uuid(lead_id) then invalid("lead_id", "must be a lead id (a UUID)") end
    lead_id = lead_id:lower()
  end
  local done = q:bool("done")
  local since, till = H.since_until(q)
  local sort_by, desc = H.v2_sort(q, { "id", "update_time", "add_time", "due_date" })
  local include = H.v2_include(q, { "attendees" })
  local limit = H.cursor_limit(q)
  local pred
  if rule then
    pred = function(a) return not a.deleted and rule(a) end
  else
    pred = function(a)
      if a.deleted then return false end
      if ids and not ids[a.id] then return false end
      if owner_id and a.owner_id ~= owner_id then return false end
      if deal_id and a.deal_id ~= deal_id then return false end
      if lead_id and a.lead_id ~= lead_id then return false end
      if person_id and a.person_id ~= person_id then return false end
      if org_id and a.org_id ~= org_id then return false end
      if done ~= nil and a.done ~= done then return false end
      if since and a.update_time < since then return false end
      if till and a.update_time >= till then return false end
      return true
    end
  end
  local field = sort_by == "due_date" and "due_key" or sort_by
  local less = H.v2_order(field, desc)
  local key = table.concat({ "v2activity", tostring(filter_id), q.raw.ids or "", tostring(owner_id), tostring(deal_id),
    tostring(lead_id), tostring(person_id), tostring(org_id), tostring(done), tostring(since), tostring(till),
    field, tostring(desc) }, "|")
  local live_only = not rule and not ids and not owner_id and not deal_id and not lead_id and not person_id
    and not org_id and done == nil and not since and not till
  local items = H.select_records(app, "activity", key, pred, (field ~= "id" or desc) and less or nil, live_only)
  local page, next_cursor = H.cursor_page(app, q, items, field, desc, less, limit)
  local opts = { include = include }
  return 200, { success = true, data = H.map(page, function(a) return M.v2(st, a, opts) end),
                additional_data = { next_cursor = next_cursor } }
end

local function list_v1(app, ctx, res)
  local q, st = ctx.q, app.store
  local filter_id = q:id("filter_id")
  local rule = H.filter_rule(app, filter_id, res.filter_type)
  -- user_id: whose activities (default the caller; 0 = everyone's).
  local user_id = q:int("user_id", { min = 0 })
  if user_id == nil then user_id = ctx.me.id end
  local types = select(2, q:list("type", TYPE_KEYS))
  local start_date = q:string("start_date")
  local end_date = q:string("end_date")
  if start_date == "" then start_date = nil end
  if end_date == "" then end_date = nil end
  if start_date and not time.parse_date(start_date) then invalid("start_date", "must be a date YYYY-MM-DD") end
  if end_date and not time.parse_date(end_date) then invalid("end_date", "must be a date YYYY-MM-DD") end
  local done = q:enum("done", { "0", "1" })
  local start, limit = H.offset_params(q)
  local function pred(a)
    if a.deleted then return false end
    if user_id ~= 0 and a.owner_id ~= user_id then return false end
    if types and not types[a.type] then return false end
    if start_date and (not a.due_date or a.due_date < start_date) then return false end
    if end_date and (not a.due_date or a.due_date > end_date) then return false end
    if done and a.done ~= (done == "1") then return false end
    if rule and not rule(a) then return false end
    return true
  end
  local key = table.concat({ "v1activity", tostring(filter_id), tostring(user_id), q.raw.type or "",
    tostring(start_date), tostring(end_date), tostring(done) }, "|")
  local items = H.select_records(app, "activity", key, pred)
  local page, pagination = H.offset_page(items, start, limit)
  local data = H.map(page, function(a) return M.v1(st, a) end)
  return 200, { success = true, data = H.empty_v1_data(app, data), additional_data = { pagination = pagination },
                related_objects = M.related(st, page) }
end

function M.list(app, ctx, res)
  if ctx.api == "v2" then return list_v2(app, ctx, res) end
  return list_v1(app, ctx, res)
end

function M.get(app, ctx, res)
  local st = app.store
  local a = st:live("activity", ctx.id)
  if not a then H.not_found(res) end
  if ctx.api == "v2" then
    local include = H.v2_include(ctx.q, { "attendees" })
    return 200, { success = true, data = M.v2(st, a, { include = include }) }
  end
  return one_v1(app, a, 200)
end

function M.add(app, ctx)
  local st = app.store
  local f = normalize(app, ctx.body, ctx.api, false)
  local me = ctx.me.id
  local a = st:insert("activity", function(id, now)
    local r = {
      id = id, type = f.type or "call", owner_id = f.owner_id or me, creator_user_id = me, update_user_id = me,
      deal_id = f.deal_id, lead_id = f.lead_id, person_id = f.person_id, org_id = f.org_id,
      due_date = f.due_date, due_time = f.due_time, duration = f.duration, busy = f.busy, done = f.done == true,
      note = f.note, public_description = f.public_description, location = f.location, priority = f.priority,
      add_time = now, update_time = now, deleted = false,
    }
    r.subject = f.subject or M.TYPES[r.type]
    if r.done then r.marked_as_done_time = now end
    r.due_key = due_key(r)
    return r
  end)
  app.hooks:publish(app.hooks:prepare("activity", "create"), a)
  if ctx.api == "v2" then return 200, { success = true, data = M.v2(st, a) } end
  return one_v1(app, a, 201, true)
end

function M.update(app, ctx, res)
  local st = app.store
  local a = st:live("activity", ctx.id)
  if not a then H.not_found(res) end
  local b = ctx.body
  local fields = normalize(app, b, ctx.api, true)
  local clear = {}
  for name, field in pairs(CLEARABLE) do
    if b.raw[name] == null then clear[field] = true end
  end
  if fields.done == true and not a.done then fields.marked_as_done_time = st:now() end
  if fields.done == false and a.done then clear.marked_as_done_time = true end
  fields.update_user_id = ctx.me.id
  local ev = app.hooks:prepare("activity", "change", a)
  st:update("activity", a, fields, clear)
  a.due_key = due_key(a)
  app.hooks:publish(ev, a)
  if ctx.api == "v2" then return 200, { success = true, data = M.v2(st, a) } end
  return one_v1(app, a, 200, true)
end

function M.delete(app, ctx, res)
  local st = app.store
  local a = st:live("activity", ctx.id)
  if not a then H.not_found(res) end
  local ev = app.hooks:prepare("activity", "delete", a)
  st:delete("activity", a.id)
  app.hooks:publish(ev, nil)
  return 200, { success = true, data = { id = a.id } }
end

--- Routing for /activities[/{id}]: methods, resource, path id.
function M.route(version, segs)
  local n = #segs
  if n == 1 then return { GET = M.list, POST = M.add }, M.RESOURCE end
  if n == 2 then
    return { GET = M.get, DELETE = M.delete, [version == "v2" and "PATCH" or "PUT"] = M.update }, M.RESOURCE, segs[2]
  end
  return nil
end

return M
