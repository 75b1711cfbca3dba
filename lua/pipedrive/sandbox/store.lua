--- The sandbox's state: the seeded company and the records created through the API.
--
-- One canonical record per object; `shapes` renders v1 or v2 JSON from it.
-- Deals, persons and organizations have integer ids counted per type and are
-- only marked deleted (Pipedrive purges them after 30 days, the sandbox never);
-- leads have UUID ids and are removed for real. Lists are arrays in id order
-- (ids only grow, so appending keeps them sorted) plus an id -> record map.
--
-- Times are numbers of seconds since the epoch (UTC). The clock is
-- `opts.clock` (default sandbox.time.wall) so specs can pin it.
local compat = require "pipedrive.compat"
local json = require "pipedrive.sandbox.json"
local util = require "pipedrive.sandbox.util"
local time = require "pipedrive.sandbox.time"
local field_defs = require "pipedrive.sandbox.fields"

local array = json.array

local M = {}

-- 2026-01-05 09:00:00 UTC: when the seeded company "was set up".
M.SEED_TIME = 1767603600

M.COMPANY = {
  id = 7701001,
  name = "Sandbox Trading Ltd",
  domain = "sandbox",
}

local function user(id, name, email, is_you, admin, phone, created)
  return {
    id = id, name = name, email = email, is_you = is_you, admin = admin, phone = phone,
    default_currency = "EUR", locale = "en_US", lang = 1, timezone_name = "Europe/Berlin",
    timezone_offset = "+01:00", role_id = 1, active_flag = true, activated = true, is_deleted = false,
    has_created_company = is_you, created = created, modified = M.SEED_TIME, last_login = M.SEED_TIME,
    icon_url = nil,
  }
end

local function seed_users()
  return {
    user(1, "Alex Sandbox", "alex@sandbox.example", true, true, "+49 30 5550101", M.SEED_TIME - 86400 * 60),
    user(2, "Brook Tester", "brook@sandbox.example", false, false, "+49 30 5550102", M.SEED_TIME - 86400 * 30),
    user(3, "Casey Demo", "casey@sandbox.example", false, false, nil, M.SEED_TIME - 86400 * 7),
  }
end

local function seed_pipelines()
  return {
    { id = 1, name = "Sales", url_title = "sales", order_nr = 0, active = true, deal_probability = true,
      selected = true, add_time = M.SEED_TIME, update_time = M.SEED_TIME },
    { id = 2, name = "Partnerships", url_title = "partnerships", order_nr = 1, active = true,
      deal_probability = false, selected = false, add_time = M.SEED_TIME, update_time = M.SEED_TIME },
  }
end

local function stage(id, pipeline_id, order_nr, name, probability, rotten_days)
  return { id = id, pipeline_id = pipeline_id, order_nr = order_nr, name = name,
           deal_probability = probability, rotten_flag = rotten_days ~= nil, rotten_days = rotten_days,
           active_flag = true, add_time = M.SEED_TIME, update_time = M.SEED_TIME }
end

local function seed_stages()
  return {
    stage(1, 1, 1, "Qualified", 10),
    stage(2, 1, 2, "Contact Made", 20),
    stage(3, 1, 3, "Proposal Made", 50),
    stage(4, 1, 4, "Negotiations Started", 80, 14),
    stage(5, 2, 1, "Introduction", 25),
    stage(6, 2, 2, "Evaluation", 50, 30),
    stage(7, 2, 3, "Agreement Signed", 90),
  }
end

-- Filters with what they select. `match(record, store)` is applied on top of
-- the list's own rules (deleted records stay out unless asked for).
local FILTER_RULES = {
  [1] = function(d) return d.status == "open" end,
  [2] = function(d) return d.status == "won" end,
  [3] = function(d) return (d.value or 0) >= 10000 end,
  [4] = function() return true end,
  [5] = function(o) return o.address ~= nil and (o.address.value or "") ~= "" end,
  [6] = function(p) return p.emails[1] ~= nil end,
  [7] = function(l) return l.value ~= nil end,
}
M.FILTER_RULES = FILTER_RULES

local function seed_filters()
  local function filter(id, name, ftype)
    return { id = id, name = name, type = ftype, active_flag = true, temporary_flag = false, user_id = 1,
             visible_to = "7", is_editable = true, add_time = M.SEED_TIME, update_time = M.SEED_TIME }
  end
  return {
    filter(1, "All open deals", "deals"),
    filter(2, "Won deals", "deals"),
    filter(3, "Big deals", "deals"),
    filter(4, "All leads", "leads"),
    filter(5, "Organizations with address", "org"),
    filter(6, "People with email", "people"),
    filter(7, "Leads with a value", "leads"),
  }
end

local function seed_lead_labels()
  return {
    { id = "5f1e7a2c-3b4d-4c8e-9a10-1b2c3d4e5f60", name = "Hot", color = "red",
      add_time = M.SEED_TIME, update_time = M.SEED_TIME },
    { id = "8a9b0c1d-2e3f-4a5b-8c6d-7e8f9a0b1c2d", name = "Cold", color = "blue",
      add_time = M.SEED_TIME, update_time = M.SEED_TIME },
  }
end

local function seed_currencies()
  return {
    { id = 1, code = "EUR", name = "Euro", symbol = "€", decimal_points = 2, active_flag = true,
      is_custom_flag = false },
    { id = 2, code = "USD", name = "US Dollar", symbol = "$", decimal_points = 2, active_flag = true,
      is_custom_flag = false },
    { id = 3, code = "GBP", name = "Pound Sterling", symbol = "£", decimal_points = 2, active_flag = true,
      is_custom_flag = false },
  }
end

local function index(list, key)
  local by = {}
  for _, r in ipairs(list) do by[r[key or "id"]] = r end
  return by
end

local Store = {}
Store.__index = Store
Store.FILTER_RULES = FILTER_RULES

-- The kinds of records the API creates.
M.KINDS = { "deal", "person", "organization", "lead", "activity" }

--- A new store in its seeded state. opts: clock, seed (lead UUIDs), fixtures (deals to pre-create),
-- custom_fields (true: seed fields.lua's fixture custom fields too).
function M.new(opts)
  opts = opts or {}
  local st = setmetatable({
    clock = opts.clock or time.wall,
    fixtures = opts.fixtures or 0,
    custom_fixtures = opts.custom_fields == true,
    -- The UUID generator is not reset with the data, so a lead id is never reused.
    uuid_state = compat.tointeger(opts.seed) or 0x5eed,
    version = 0,
  }, Store)
  st:reset()
  return st
end

--- Back to the seeded company with no records (plus the fixtures, if any).
function Store:reset()
  self.company = M.COMPANY
  self.users = seed_users()
  self.pipelines = seed_pipelines()
  self.stages = seed_stages()
  self.filters = seed_filters()
  self.lead_labels = seed_lead_labels()
  self.currencies = seed_currencies()
  self.user_by_id = index(self.users)
  self.pipeline_by_id = index(self.pipelines)
  self.stage_by_id = index(self.stages)
  self.filter_by_id = index(self.filters)
  self.lead_label_by_id = index(self.lead_labels)
  self.currency_by_code = index(self.currencies, "code")
  self.records = { deal = {}, person = {}, organization = {}, lead = {}, activity = {} }
  self.by_id = { deal = {}, person = {}, organization = {}, lead = {}, activity = {} }
  self.last_id = { deal = 0, person = 0, organization = 0, activity = 0 }
  -- How many records of a kind are marked deleted: with none, "every live
  -- record in id order" is the list itself and needs no walk.
  self.deleted_count = { deal = 0, person = 0, organization = 0, lead = 0, activity = 0 }
  self.version = self.version + 1
  self.counts_cache = nil
  field_defs.seed(self, M.SEED_TIME)
  if self.custom_fixtures then field_defs.seed_fixtures(self) end
  if self.fixtures > 0 then
    self:bulk("deal", self.fixtures, "Fixture deal")
  end
end

function Store:now()
  return self.clock()
end

function Store:touch()
  self.version = self.version + 1
end

function Store:me()
  return self.users[1]
end

function Store:user(id) return self.user_by_id[id] end
function Store:stage(id) return self.stage_by_id[id] end
function Store:pipeline(id) return self.pipeline_by_id[id] end
function Store:filter(id) return self.filter_by_id[id] end
function Store:lead_label(id) return self.lead_label_by_id[id] end
function Store:currency(code) return self.currency_by_code[code] end

--- The stages of a pipeline in order.
function Store:pipeline_stages(pipeline_id)
  local out = {}
  for _, s in ipairs(self.stages) do
    if s.pipeline_id == pipeline_id then out[#out + 1] = s end
  end
  table.sort(out, function(a, b) return a.order_nr < b.order_nr end)
  return out
end

--- All records of a kind, deleted ones included, in id (creation) order.
function Store:list(kind)
  return self.records[kind]
end

--- A record by id, deleted ones included; nil when there is none.
function Store:get(kind, id)
  return self.by_id[kind][id]
end

--- A record that exists and is not deleted.
function Store:live(kind, id)
  local r = self.by_id[kind][id]
  if r and not r.deleted then return r end
  return nil
end

-- A version 4 UUID from a 64-bit linear congruential generator.
function Store:uuid()
  local id
  id, self.uuid_state = util.uuid4(self.uuid_state)
  return id
end

local function add(self, kind, r)
  local list = self.records[kind]
  list[#list + 1] = r
  self.by_id[kind][r.id] = r
  if r.deleted then self.deleted_count[kind] = self.deleted_count[kind] + 1 end
  self:touch()
  return r
end

local function next_id(self, kind)
  local id = self.last_id[kind] + 1
  self.last_id[kind] = id
  return id
end

--- Stores a record built elsewhere (activities): `build(id, now)` returns it.
function Store:insert(kind, build)
  return add(self, kind, build(next_id(self, kind), self:now()))
end

--- Creates a deal from fields already checked by the app (see init.lua).
function Store:add_deal(f)
  local now = self:now()
  local stage_id = f.stage_id
  local pipeline_id = f.pipeline_id
  if stage_id then
    pipeline_id = self.stage_by_id[stage_id].pipeline_id
  else
    pipeline_id = pipeline_id or self.pipelines[1].id
    stage_id = self:pipeline_stages(pipeline_id)[1].id
  end
  local owner = self.user_by_id[f.owner_id or self:me().id]
  local status = f.status or "open"
  local deleted = false
  if status == "deleted" then
    status, deleted = "open", true
  end
  local add_time = f.add_time or now
  local d = {
    id = next_id(self, "deal"),
    title = f.title,
    value = f.value or 0,
    currency = f.currency or owner.default_currency,
    status = status,
    deleted = deleted or f.is_deleted == true,
    owner_id = owner.id,
    creator_user_id = self:me().id,
    person_id = f.person_id,
    org_id = f.org_id,
    pipeline_id = pipeline_id,
    stage_id = stage_id,
    add_time = add_time,
    update_time = now,
    stage_change_time = add_time,
    expected_close_date = f.expected_close_date,
    probability = f.probability,
    lost_reason = f.lost_reason,
    visible_to = f.visible_to or 3,
    label_ids = array(f.label_ids or {}),
    is_archived = f.is_archived == true,
    archive_time = f.archive_time,
    origin = "API",
    origin_id = f.origin_id,
    channel = f.channel,
    channel_id = f.channel_id,
    custom_fields = f.custom_fields or {},
  }
  if d.is_archived and not d.archive_time then d.archive_time = now end
  if status == "won" then
    d.won_time = f.won_time or now
    d.first_won_time = d.won_time
    d.close_time = f.close_time or d.won_time
  elseif status == "lost" then
    d.lost_time = f.lost_time or now
    d.close_time = f.close_time or d.lost_time
  end
  return add(self, "deal", d)
end

local function split_name(name)
  local first, last = name:match("^(%S+)%s+(.-)%s*$")
  if not first then return name, nil end
  if last == "" then last = nil end
  return first, last
end

--- Creates a person from checked fields.
function Store:add_person(f)
  local now = self:now()
  local first, last = split_name(f.name)
  return add(self, "person", {
    id = next_id(self, "person"),
    name = f.name,
    first_name = first,
    last_name = last,
    owner_id = f.owner_id or self:me().id,
    org_id = f.org_id,
    emails = array(f.emails or {}),
    phones = array(f.phones or {}),
    ims = array(f.ims or {}),
    label_ids = array(f.label_ids or {}),
    visible_to = f.visible_to or 3,
    marketing_status = f.marketing_status,
    birthday = f.birthday,
    job_title = f.job_title,
    notes = f.notes,
    postal_address = f.postal_address,
    add_time = f.add_time or now,
    update_time = now,
    deleted = false,
    custom_fields = f.custom_fields or {},
  })
end

--- Creates an organization from checked fields.
function Store:add_organization(f)
  local now = self:now()
  return add(self, "organization", {
    id = next_id(self, "organization"),
    name = f.name,
    owner_id = f.owner_id or self:me().id,
    label_ids = array(f.label_ids or {}),
    visible_to = f.visible_to or 3,
    address = f.address,
    website = f.website,
    linkedin = f.linkedin,
    industry = f.industry,
    annual_revenue = f.annual_revenue,
    employee_count = f.employee_count,
    add_time = f.add_time or now,
    update_time = now,
    deleted = false,
    custom_fields = f.custom_fields or {},
  })
end

--- Creates a lead from checked fields.
function Store:add_lead(f)
  local now = self:now()
  local me = self:me().id
  return add(self, "lead", {
    id = self:uuid(),
    title = f.title,
    owner_id = f.owner_id or me,
    creator_id = me,
    label_ids = array(f.label_ids or {}),
    person_id = f.person_id,
    organization_id = f.organization_id,
    value = f.value,
    expected_close_date = f.expected_close_date,
    visible_to = f.visible_to or 3,
    was_seen = f.was_seen == true,
    origin = "API",
    source_name = "API",
    origin_id = f.origin_id,
    channel = f.channel,
    channel_id = f.channel_id,
    is_archived = false,
    add_time = now,
    update_time = now,
    custom_fields = f.custom_fields or {},
  })
end

local ADDERS = {
  deal = Store.add_deal, person = Store.add_person,
  organization = Store.add_organization, lead = Store.add_lead,
}

--- Creates a record of `kind` from checked fields.
function Store:add(kind, f)
  return ADDERS[kind](self, f)
end

-- What an update changes beyond the fields themselves, per kind. `old` is a
-- shallow copy of the record before the fields were written.
local function update_deal(self, d, f, old, now)
  if f.stage_id then
    d.pipeline_id = self.stage_by_id[f.stage_id].pipeline_id
  elseif f.pipeline_id and self.stage_by_id[d.stage_id].pipeline_id ~= f.pipeline_id then
    d.stage_id = self:pipeline_stages(f.pipeline_id)[1].id
  end
  if d.stage_id ~= old.stage_id then d.stage_change_time = now end
  local status = f.status
  if status == "deleted" or f.is_deleted == true then
    d.status = old.status
    if not d.deleted then
      d.deleted = true
      self.deleted_count.deal = self.deleted_count.deal + 1
    end
  else
    d.deleted = old.deleted
  end
  if status and status ~= "deleted" and status ~= old.status then
    if status == "won" then
      d.won_time = f.won_time or now
      d.first_won_time = d.first_won_time or d.won_time
      d.close_time = f.close_time or d.won_time
      d.lost_time = nil
    elseif status == "lost" then
      d.lost_time = f.lost_time or now
      d.close_time = f.close_time or d.lost_time
      d.won_time = nil
    else
      d.won_time, d.lost_time, d.close_time = nil, nil, nil
    end
  end
  if f.is_archived == true and not old.is_archived then d.archive_time = f.archive_time or now end
  if f.is_archived == false then d.archive_time = nil end
  d.is_deleted = nil
end

local function update_person(_, p, f)
  if f.name then p.first_name, p.last_name = split_name(f.name) end
end

local UPDATERS = { deal = update_deal, person = update_person }

--- Writes checked fields into a live record: `fields` (name -> new value;
-- custom_fields are merged), `clear` (a set of names to unset). Arrays are
-- replaced. Returns the record.
function Store:update(kind, r, fields, clear)
  local now = self:now()
  local old = {}
  for k, v in pairs(r) do old[k] = v end
  for k, v in pairs(fields) do
    if k == "custom_fields" then
      local merged = {}
      for ck, cv in pairs(r.custom_fields or {}) do merged[ck] = cv end
      for ck, cv in pairs(v) do
        if cv == json.null then merged[ck] = nil else merged[ck] = cv end
      end
      r.custom_fields = merged
    elseif k == "label_ids" or k == "emails" or k == "phones" or k == "ims" then
      r[k] = array(v)
    else
      r[k] = v
    end
  end
  for k in pairs(clear or {}) do r[k] = nil end
  local extra = UPDATERS[kind]
  if extra then extra(self, r, fields, old, now) end
  r.update_time = now
  self:touch()
  return r
end

--- Deletes: deals, persons and organizations are marked, leads removed.
-- Returns the record, or nil when there is no live record with that id.
function Store:delete(kind, id)
  local r = self:live(kind, id)
  if not r then return nil end
  if kind == "lead" then
    local list = self.records.lead
    for i = #list, 1, -1 do
      if list[i] == r then
        table.remove(list, i)
        break
      end
    end
    self.by_id.lead[id] = nil
  else
    r.deleted = true
    r.update_time = self:now()
    self.deleted_count[kind] = self.deleted_count[kind] + 1
  end
  self:touch()
  return r
end

--- Creates `count` records quickly: titles/names are "<prefix> <n>".
-- `fields` (optional) is merged into each record's fields. A lead needs a
-- person or an organization: when neither is given one organization is made.
function Store:bulk(kind, count, prefix, fields)
  fields = fields or {}
  prefix = prefix or "Bulk"
  local made = {}
  if kind == "lead" and not fields.person_id and not fields.organization_id then
    local o = self:add_organization{ name = prefix .. " leads organization" }
    local copy = {}
    for k, v in pairs(fields) do copy[k] = v end
    copy.organization_id = o.id
    fields = copy
  end
  local name_key = (kind == "person" or kind == "organization") and "name" or "title"
  for i = 1, count do
    local f = {}
    for k, v in pairs(fields) do f[k] = v end
    f[name_key] = ("%s %d"):format(prefix, i)
    if f.label_ids then f.label_ids = { compat.unpack(f.label_ids) } end
    made[i] = self:add(kind, f)
  end
  return made
end

--- Per person and organization: deal counts by status, and people per organization.
-- Computed once per version of the data.
function Store:counts()
  local c = self.counts_cache
  if c and c.version == self.version then return c end
  c = { version = self.version, person = {}, organization = {}, people = {} }
  local function bump(map, id, status)
    if not id then return end
    local t = map[id]
    if not t then
      t = { open = 0, won = 0, lost = 0 }
      map[id] = t
    end
    t[status] = t[status] + 1
  end
  for _, d in ipairs(self.records.deal) do
    if not d.deleted then
      bump(c.person, d.person_id, d.status)
      bump(c.organization, d.org_id, d.status)
    end
  end
  for _, p in ipairs(self.records.person) do
    if not p.deleted and p.org_id then c.people[p.org_id] = (c.people[p.org_id] or 0) + 1 end
  end
  self.counts_cache = c
  return c
end

local function copy_records(list)
  local out = array()
  for i, r in ipairs(list) do out[i] = r end
  return out
end

--- Everything, deleted records included, for GET /_sandbox/state.
function Store:dump()
  return {
    company = self.company,
    counters = { deal = self.last_id.deal, person = self.last_id.person,
                 organization = self.last_id.organization, lead = #self.records.lead,
                 activity = self.last_id.activity },
    deals = copy_records(self.records.deal),
    persons = copy_records(self.records.person),
    organizations = copy_records(self.records.organization),
    leads = copy_records(self.records.lead),
    activities = copy_records(self.records.activity),
    users = copy_records(self.users),
    pipelines = copy_records(self.pipelines),
    stages = copy_records(self.stages),
    filters = copy_records(self.filters),
    lead_labels = copy_records(self.lead_labels),
    currencies = copy_records(self.currencies),
  }
end

return M
