--- Canonical records -> the JSON shapes of Pipedrive's API v1 and v2.
--
-- Field names, types and nesting follow Pipedrive's OpenAPI files (v1 deals,
-- persons, organizations, stages, pipelines: the 2026-01-14 v1 file; leads,
-- users, filters, lead labels, currencies: the current v1 file; v2: the v2 file).
--
-- About null: the schemas mark some properties nullable and others not, and
-- list none as required. A property is written as null only where its schema
-- allows null. A property that has no value and whose schema does not allow
-- null (a deal's org_id when the deal has no organization, won_time of an open
-- deal, ...) is null when the store's `real_nulls` is set (the default: it is
-- what Pipedrive itself sends), and left out with the sandbox's omit_nulls.
local compat = require "pipedrive.compat"
local json = require "pipedrive.sandbox.json"
local time = require "pipedrive.sandbox.time"
local field_defs = require "pipedrive.sandbox.fields"

local array, null = json.array, json.null
local floor = math.floor

local M = {}

------------------------------------------------------------------------------
-- Times and money
------------------------------------------------------------------------------
local v1_time, v2_time = time.v1, time.v2

local function group_thousands(int_part)
  local s = tostring(int_part)
  local out = s:reverse():gsub("(%d%d%d)", "%1,"):reverse()
  if out:sub(1, 1) == "," then out = out:sub(2) end
  return out
end

--- "€5,000" / "$1,234.50": the currency symbol and grouped digits.
function M.money(st, value, code)
  local cur = st:currency(code)
  local symbol = cur and cur.symbol or (code .. " ")
  local neg = value < 0
  if neg then value = -value end
  local int = floor(value)
  local cents = floor((value - int) * 100 + 0.5)
  if cents >= 100 then int, cents = int + 1, 0 end
  local s = symbol .. group_thousands(compat.tointeger(int) or int)
  if cents > 0 then s = s .. (".%02d"):format(cents) end
  return (neg and "-" or "") .. s
end

local function integral(n)
  if n == nil then return nil end
  return compat.tointeger(n) or n
end

------------------------------------------------------------------------------
-- Small pieces
------------------------------------------------------------------------------
local function cc_email(st, what)
  return ("%s+%s@pipedrivemail.com"):format(st.company.domain, what)
end

local function none(st)
  if st.real_nulls then return null end
  return nil
end

local function first_char(name)
  local c = name:match("^[%z\1-\127\194-\244][\128-\191]*") or ""
  return c:lower()
end
M.first_char = first_char

local function contacts_v1(list)
  local out = array()
  for i, c in ipairs(list) do
    out[i] = { value = c.value, primary = c.primary, label = c.label }
  end
  if #out == 0 then
    -- Pipedrive v1 answers an empty contact list with one empty primary entry.
    out[1] = { value = "", primary = true }
  end
  return out
end

local function contacts_v2(list)
  local out = array()
  for i, c in ipairs(list) do
    out[i] = { value = c.value, primary = c.primary, label = c.label }
  end
  return out
end

local function contact_values(list)
  local out = array()
  for i, c in ipairs(list) do out[i] = c.value end
  return out
end

local function primary_value(list)
  for _, c in ipairs(list) do
    if c.primary then return c.value end
  end
  return list[1] and list[1].value or nil
end

local function copy_array(list)
  local out = array()
  for i, v in ipairs(list) do out[i] = v end
  return out
end

local function custom_values(fields)
  local out, keys = array(), {}
  for k in pairs(fields) do keys[#keys + 1] = k end
  table.sort(keys)
  for _, k in ipairs(keys) do
    local v = fields[k]
    if type(v) == "string" or type(v) == "number" then out[#out + 1] = tostring(v) end
  end
  return out
end

local function vis_v1(n) return tostring(n) end

-- The user as a v1 record embeds it (deal user_id/creator_user_id: has_pic boolean).
local function user_ref_deal(u)
  return { id = u.id, name = u.name, email = u.email, has_pic = false, pic_hash = null,
           active_flag = u.active_flag, value = u.id }
end

-- The user as persons and organizations embed it (has_pic is an integer there).
local function user_ref_contact(u)
  return { id = u.id, name = u.name, email = u.email, has_pic = 0, pic_hash = null,
           active_flag = u.active_flag, value = u.id }
end

local function user_related(u)
  return { id = u.id, name = u.name, email = u.email, has_pic = 0, pic_hash = null, active_flag = u.active_flag }
end

local function age(seconds)
  seconds = math.max(0, floor(seconds))
  local total = seconds
  local y = compat.idiv(seconds, 365 * 86400)
  seconds = seconds - y * 365 * 86400
  local m = compat.idiv(seconds, 30 * 86400)
  seconds = seconds - m * 30 * 86400
  local d = compat.idiv(seconds, 86400)
  seconds = seconds - d * 86400
  local h = compat.idiv(seconds, 3600)
  seconds = seconds - h * 3600
  local i = compat.idiv(seconds, 60)
  return { y = y, m = m, d = d, h = h, i = i, s = seconds - i * 60, total_seconds = total }
end

------------------------------------------------------------------------------
-- Persons and organizations as deals embed them
------------------------------------------------------------------------------
local function person_ref(p)
  return { value = p.id, name = p.name, active_flag = not p.deleted, owner_id = p.owner_id,
           email = contacts_v1(p.emails), phone = contacts_v1(p.phones) }
end

local function org_address(o)
  return o.address and o.address.value or nil
end

local function org_ref(st, o)
  local counts = st:counts()
  return { value = o.id, name = o.name, active_flag = not o.deleted, owner_id = o.owner_id,
           people_count = counts.people[o.id] or 0, cc_email = cc_email(st, "org" .. o.id),
           address = org_address(o) or none(st) }
end

local function person_related(p)
  local r = person_ref(p)
  r.value, r.id = nil, p.id
  return r
end

local function org_related(st, o)
  local r = org_ref(st, o)
  r.value, r.id = nil, o.id
  return r
end

-- For other record types' related_objects (activities).
M.person_related, M.org_related, M.user_related = person_related, org_related, user_related
M.cc_email, M.none = cc_email, none

------------------------------------------------------------------------------
-- Stages, pipelines, users, filters, labels, currencies
------------------------------------------------------------------------------
function M.stage_v1(st, s)
  local p = st:pipeline(s.pipeline_id)
  return {
    id = s.id, order_nr = s.order_nr, name = s.name, active_flag = s.active_flag,
    deal_probability = s.deal_probability, pipeline_id = s.pipeline_id, rotten_flag = s.rotten_flag,
    rotten_days = s.rotten_days or none(st), add_time = v1_time(s.add_time), update_time = v1_time(s.update_time),
    pipeline_name = p.name, pipeline_deal_probability = p.deal_probability,
  }
end

function M.stage_v2(_, s)
  return {
    id = s.id, order_nr = s.order_nr, name = s.name, is_deleted = not s.active_flag,
    deal_probability = s.deal_probability, pipeline_id = s.pipeline_id, is_deal_rot_enabled = s.rotten_flag,
    days_to_rotten = s.rotten_days or null, add_time = v2_time(s.add_time), update_time = v2_time(s.update_time),
  }
end

function M.pipeline_v1(_, p)
  return {
    id = p.id, name = p.name, url_title = p.url_title, order_nr = p.order_nr, active = p.active,
    deal_probability = p.deal_probability, add_time = v1_time(p.add_time), update_time = v1_time(p.update_time),
    selected = p.selected,
  }
end

function M.pipeline_v2(_, p)
  return {
    id = p.id, name = p.name, order_nr = p.order_nr, is_deleted = not p.active,
    is_deal_probability_enabled = p.deal_probability, add_time = v2_time(p.add_time),
    update_time = v2_time(p.update_time),
  }
end

local PERMISSION_SETS = {
  sales_admin = "0d6b2f4e-8c1a-4e57-9b3d-2a6f1c8e4d70",
  sales_user = "3e9a7c15-6b2d-4f08-a1c4-7d5e9b3f2a61",
  global_admin = "b4c81e2a-5d7f-4a39-8e06-1f2d3c4b5a69",
}

function M.user_v1(st, u)
  local access = array()
  if u.admin then
    access[1] = { app = "sales", admin = true, permission_set_id = PERMISSION_SETS.sales_admin }
    access[2] = { app = "global", admin = true, permission_set_id = PERMISSION_SETS.global_admin }
  else
    access[1] = { app = "sales", admin = false, permission_set_id = PERMISSION_SETS.sales_user }
  end
  return {
    id = u.id, name = u.name, email = u.email, default_currency = u.default_currency, locale = u.locale,
    lang = u.lang, phone = u.phone or null, activated = u.activated, last_login = v1_time(u.last_login),
    created = v1_time(u.created), modified = v1_time(u.modified) or null,
    has_created_company = u.has_created_company, access = access, active_flag = u.active_flag,
    timezone_name = u.timezone_name, timezone_offset = u.timezone_offset, role_id = u.role_id,
    icon_url = u.icon_url or null, is_you = u.id == st:me().id, is_deleted = u.is_deleted,
  }
end

function M.filter_v1(_, f)
  return {
    id = f.id, name = f.name, active_flag = f.active_flag, type = f.type, temporary_flag = f.temporary_flag,
    user_id = f.user_id, add_time = v1_time(f.add_time), update_time = v1_time(f.update_time),
    visible_to = f.visible_to, custom_view_id = null, filter_code = null, is_editable = f.is_editable,
    last_used_time = null,
  }
end

function M.lead_label_v1(_, l)
  return { id = l.id, name = l.name, color = l.color, add_time = time.ms(l.add_time),
           update_time = time.ms(l.update_time) }
end

function M.currency_v1(_, c)
  return { id = c.id, code = c.code, name = c.name, decimal_points = c.decimal_points, symbol = c.symbol,
           active_flag = c.active_flag, is_custom_flag = c.is_custom_flag }
end

------------------------------------------------------------------------------
-- Deals
------------------------------------------------------------------------------
local function deal_status(d)
  if d.deleted then return "deleted" end
  return d.status
end

local function weighted(st, d)
  local p = d.probability
  if p == nil then
    local s = st:stage(d.stage_id)
    local pl = st:pipeline(d.pipeline_id)
    p = (pl and pl.deal_probability and s) and s.deal_probability or 100
  end
  local w = d.value * p / 100
  return compat.tointeger(w) or w
end

local function labels_v1(ids)
  if ids[1] == nil then return nil end
  local parts = {}
  for i, id in ipairs(ids) do parts[i] = tostring(id) end
  return table.concat(parts, ",")
end

--- A deal in API v1. `get` adds what GET /deals/{id} has on top of lists.
function M.deal_v1(st, d, get)
  local NONE = none(st)
  local owner = st:user(d.owner_id)
  local creator = st:user(d.creator_user_id)
  local stage = st:stage(d.stage_id)
  local person = d.person_id and st:get("person", d.person_id)
  local org = d.org_id and st:get("organization", d.org_id)
  local w = weighted(st, d)
  local status = deal_status(d)
  local r = {
    id = d.id, title = d.title, value = integral(d.value), currency = d.currency, status = status,
    active = status == "open", deleted = d.deleted, is_archived = d.is_archived,
    stage_id = d.stage_id, pipeline_id = d.pipeline_id, stage_order_nr = stage.order_nr,
    user_id = user_ref_deal(owner), creator_user_id = user_ref_deal(creator), owner_name = owner.name,
    person_id = person and person_ref(person) or NONE, person_name = person and person.name or NONE,
    org_id = org and org_ref(st, org) or NONE, org_name = org and org.name or NONE,
    add_time = v1_time(d.add_time), update_time = v1_time(d.update_time),
    stage_change_time = v1_time(d.stage_change_time),
    won_time = v1_time(d.won_time) or NONE, first_won_time = v1_time(d.first_won_time) or NONE,
    lost_time = v1_time(d.lost_time) or NONE, close_time = v1_time(d.close_time) or null,
    archive_time = d.archive_time and v1_time(d.archive_time) or nil,
    expected_close_date = d.expected_close_date or NONE,
    probability = d.probability or null, lost_reason = d.lost_reason or null,
    visible_to = vis_v1(d.visible_to), label = labels_v1(d.label_ids) or NONE,
    formatted_value = M.money(st, d.value, d.currency), weighted_value = w,
    formatted_weighted_value = M.money(st, w, d.currency), weighted_value_currency = d.currency,
    cc_email = cc_email(st, "deal" .. d.id), origin = d.origin, origin_id = d.origin_id or null,
    channel = d.channel or null, channel_id = d.channel_id or null, rotten_time = null,
    acv = null, acv_currency = null, arr = null, arr_currency = null, mrr = null, mrr_currency = null,
    products_count = 0, files_count = 0, notes_count = 0, followers_count = 1, email_messages_count = 0,
    activities_count = 0, done_activities_count = 0, undone_activities_count = 0,
    participants_count = person and 1 or 0, person_hidden = false, org_hidden = false,
    last_activity_id = null, last_activity_date = null, next_activity_id = null,
    next_activity_date = NONE, next_activity_time = NONE, next_activity_subject = NONE,
    next_activity_type = NONE, next_activity_duration = NONE, next_activity_note = NONE,
    last_incoming_mail_time = NONE, last_outgoing_mail_time = NONE,
  }
  if get then
    local now = st:now()
    r.age = age(now - d.add_time)
    local times, order = {}, array()
    for i, s in ipairs(st:pipeline_stages(d.pipeline_id)) do order[i] = s.id end
    times[tostring(d.stage_id)] = math.max(0, floor(now - d.stage_change_time))
    r.stay_in_pipeline_stages = { times_in_stages = times, order_of_stages = order }
    r.average_time_to_won = age(0)
    r.average_stage_progress = #order > 0 and (stage.order_nr / #order) or 0
    r.last_activity = null
    r.next_activity = null
  end
  return field_defs.v1_flat(st, "deal", d.custom_fields, r)
end

local DEAL_INCLUDE = {
  next_activity_id = function() return null end,
  last_activity_id = function() return null end,
  first_won_time = function(_, d) return v2_time(d.first_won_time) or null end,
  products_count = function() return 0 end,
  files_count = function() return 0 end,
  notes_count = function() return 0 end,
  followers_count = function() return 1 end,
  email_messages_count = function() return 0 end,
  activities_count = function() return 0 end,
  done_activities_count = function() return 0 end,
  undone_activities_count = function() return 0 end,
  participants_count = function(_, d) return d.person_id and 1 or 0 end,
  last_incoming_mail_time = function() return null end,
  last_outgoing_mail_time = function() return null end,
  smart_bcc_email = function(st, d) return cc_email(st, "deal" .. d.id) end,
  source_lead_id = function() return null end,
}
M.DEAL_INCLUDE = DEAL_INCLUDE

--- A deal in API v2. `opts.include` (set of names) adds optional fields,
-- `opts.custom_fields` (set of keys) limits custom_fields.
function M.deal_v2(st, d, opts)
  local NONE = none(st)
  local r = {
    id = d.id, title = d.title, value = integral(d.value), currency = d.currency, status = deal_status(d),
    is_deleted = d.deleted, is_archived = d.is_archived, archive_time = v2_time(d.archive_time) or null,
    owner_id = d.owner_id, creator_user_id = d.creator_user_id,
    person_id = d.person_id or NONE, org_id = d.org_id or NONE,
    pipeline_id = d.pipeline_id, stage_id = d.stage_id,
    add_time = v2_time(d.add_time), update_time = v2_time(d.update_time),
    stage_change_time = v2_time(d.stage_change_time),
    won_time = v2_time(d.won_time) or NONE, lost_time = v2_time(d.lost_time) or NONE,
    close_time = v2_time(d.close_time) or null, expected_close_date = d.expected_close_date or NONE,
    probability = d.probability or null, lost_reason = d.lost_reason or null, visible_to = d.visible_to,
    label_ids = copy_array(d.label_ids), origin = d.origin, origin_id = d.origin_id or null,
    channel = d.channel or null, channel_id = d.channel_id or null, source_lead_id = null,
    acv = null, arr = null, mrr = null,
    custom_fields = field_defs.v2_object(st, "deal", d.custom_fields, opts and opts.custom_fields,
      opts and opts.option_labels),
  }
  if opts and opts.include then
    for name in pairs(opts.include) do
      local f = DEAL_INCLUDE[name]
      if f then r[name] = f(st, d) end
    end
  end
  return r
end

------------------------------------------------------------------------------
-- Persons
------------------------------------------------------------------------------
local function deal_counts(st, map, id)
  local c = st:counts()[map][id]
  if not c then return 0, 0, 0 end
  return c.open, c.won, c.lost
end

function M.person_v1(st, p)
  local NONE = none(st)
  local owner = st:user(p.owner_id)
  local org = p.org_id and st:get("organization", p.org_id)
  local open, won, lost = deal_counts(st, "person", p.id)
  local r = {
    id = p.id, company_id = st.company.id, name = p.name, first_name = p.first_name or NONE,
    last_name = p.last_name or NONE, first_char = first_char(p.name), active_flag = not p.deleted,
    owner_id = user_ref_contact(owner), owner_name = owner.name,
    org_id = org and org_ref(st, org) or NONE, org_name = org and org.name or NONE,
    email = contacts_v1(p.emails), phone = contacts_v1(p.phones), primary_email = primary_value(p.emails) or nil,
    label = p.label_ids[1] or NONE, label_ids = copy_array(p.label_ids), visible_to = vis_v1(p.visible_to),
    add_time = v1_time(p.add_time), update_time = v1_time(p.update_time), cc_email = cc_email(st, "person" .. p.id),
    picture_id = NONE, marketing_status = p.marketing_status,
    open_deals_count = open, related_open_deals_count = open, won_deals_count = won,
    related_won_deals_count = won, lost_deals_count = lost, related_lost_deals_count = lost,
    closed_deals_count = won + lost, related_closed_deals_count = won + lost,
    activities_count = 0, done_activities_count = 0, undone_activities_count = 0, email_messages_count = 0,
    files_count = 0, notes_count = 0, followers_count = 1,
    last_activity_id = null, last_activity_date = null, next_activity_id = null, next_activity_date = null,
    next_activity_time = null, last_incoming_mail_time = NONE, last_outgoing_mail_time = NONE,
  }
  return field_defs.v1_flat(st, "person", p.custom_fields, r)
end

local CONTACT_INCLUDE_ZERO = {
  "open_deals_count", "related_open_deals_count", "closed_deals_count", "related_closed_deals_count",
  "participant_open_deals_count", "participant_closed_deals_count", "email_messages_count", "activities_count",
  "done_activities_count", "undone_activities_count", "files_count", "notes_count", "won_deals_count",
  "related_won_deals_count", "lost_deals_count", "related_lost_deals_count",
}

local function contact_include(st, kind, rec, name)
  local open, won, lost = deal_counts(st, kind, rec.id)
  if name == "open_deals_count" or name == "related_open_deals_count" then return open end
  if name == "won_deals_count" or name == "related_won_deals_count" then return won end
  if name == "lost_deals_count" or name == "related_lost_deals_count" then return lost end
  if name == "closed_deals_count" or name == "related_closed_deals_count" then return won + lost end
  if name == "people_count" then return st:counts().people[rec.id] or 0 end
  if name == "followers_count" then return 1 end
  if name == "smart_bcc_email" then return cc_email(st, kind .. rec.id) end
  if name == "marketing_status" then return rec.marketing_status or "no_consent" end
  if name == "doi_status" then return null end
  for _, z in ipairs(CONTACT_INCLUDE_ZERO) do
    if z == name then return 0 end
  end
  return null
end

function M.person_v2(st, p, opts)
  local NONE = none(st)
  local r = {
    id = p.id, name = p.name, first_name = p.first_name or NONE, last_name = p.last_name or NONE,
    owner_id = p.owner_id, org_id = p.org_id or NONE, emails = contacts_v2(p.emails),
    phones = contacts_v2(p.phones), im = contacts_v2(p.ims), label_ids = copy_array(p.label_ids),
    visible_to = p.visible_to, is_deleted = p.deleted, add_time = v2_time(p.add_time),
    update_time = v2_time(p.update_time), birthday = p.birthday or NONE, job_title = p.job_title or NONE,
    notes = p.notes or NONE, picture_id = NONE, postal_address = p.postal_address or NONE,
    custom_fields = field_defs.v2_object(st, "person", p.custom_fields, opts and opts.custom_fields,
      opts and opts.option_labels),
  }
  if opts and opts.include then
    for name in pairs(opts.include) do r[name] = contact_include(st, "person", p, name) end
  end
  return r
end

------------------------------------------------------------------------------
-- Organizations
------------------------------------------------------------------------------
local ADDRESS_PARTS = { "subpremise", "street_number", "route", "sublocality", "locality",
                        "admin_area_level_1", "admin_area_level_2", "country", "postal_code" }
M.ADDRESS_PARTS = ADDRESS_PARTS

function M.org_v1(st, o, get)
  local NONE = none(st)
  local owner = st:user(o.owner_id)
  local open, won, lost = deal_counts(st, "organization", o.id)
  local r = {
    id = o.id, company_id = st.company.id, name = o.name, first_char = first_char(o.name),
    active_flag = not o.deleted, owner_id = user_ref_contact(owner), owner_name = owner.name,
    label = o.label_ids[1] or NONE, label_ids = copy_array(o.label_ids), visible_to = vis_v1(o.visible_to),
    add_time = v1_time(o.add_time), update_time = v1_time(o.update_time), cc_email = cc_email(st, "org" .. o.id),
    people_count = st:counts().people[o.id] or 0, picture_id = NONE, country_code = null,
    address = org_address(o) or NONE, address_formatted_address = org_address(o) or NONE,
    open_deals_count = open, related_open_deals_count = open, won_deals_count = won,
    related_won_deals_count = won, lost_deals_count = lost, related_lost_deals_count = lost,
    closed_deals_count = won + lost, related_closed_deals_count = won + lost,
    activities_count = 0, done_activities_count = 0, undone_activities_count = 0, email_messages_count = 0,
    files_count = 0, notes_count = 0, followers_count = 1,
    last_activity_id = null, last_activity_date = null, next_activity_id = null, next_activity_date = null,
    next_activity_time = null,
  }
  for _, part in ipairs(ADDRESS_PARTS) do
    r["address_" .. part] = (o.address and o.address[part]) or NONE
  end
  if get then
    r.edit_name = true
    r.last_activity = null
    r.next_activity = null
  end
  return field_defs.v1_flat(st, "organization", o.custom_fields, r)
end

function M.org_v2(st, o, opts)
  local NONE = none(st)
  local address = NONE
  if o.address then
    address = {}
    for k, v in pairs(o.address) do address[k] = v end
  end
  local r = {
    id = o.id, name = o.name, owner_id = o.owner_id, label_ids = copy_array(o.label_ids),
    visible_to = o.visible_to, is_deleted = o.deleted, add_time = v2_time(o.add_time),
    update_time = v2_time(o.update_time), address = address, website = o.website or null,
    linkedin = o.linkedin or null, industry = o.industry or null, annual_revenue = o.annual_revenue or null,
    employee_count = o.employee_count or null,
    custom_fields = field_defs.v2_object(st, "organization", o.custom_fields, opts and opts.custom_fields,
      opts and opts.option_labels),
  }
  if opts and opts.include then
    for name in pairs(opts.include) do r[name] = contact_include(st, "organization", o, name) end
  end
  return r
end

------------------------------------------------------------------------------
-- Leads
------------------------------------------------------------------------------
function M.lead_v1(st, l)
  local r = {
    id = l.id, title = l.title, owner_id = l.owner_id, creator_id = l.creator_id,
    label_ids = copy_array(l.label_ids), person_id = l.person_id or null,
    organization_id = l.organization_id or null, source_name = l.source_name, origin = l.origin,
    origin_id = l.origin_id or null, channel = l.channel or null, channel_id = l.channel_id or null,
    is_archived = l.is_archived, was_seen = l.was_seen,
    value = l.value and { amount = integral(l.value.amount), currency = l.value.currency } or null,
    expected_close_date = l.expected_close_date or null, next_activity_id = null,
    add_time = time.ms(l.add_time), update_time = time.ms(l.update_time),
    visible_to = vis_v1(l.visible_to), cc_email = cc_email(st, "lead" .. l.id:gsub("%-", ""):sub(1, 12)),
    source_deal_id = null,
  }
  return field_defs.v1_flat(st, "lead", l.custom_fields, r, true)
end

------------------------------------------------------------------------------
-- Search items (the same in v1 and v2)
------------------------------------------------------------------------------
local function search_value(v)
  if v == nil then return nil end
  return compat.tointeger(v) or v
end

function M.deal_item(st, d, include)
  local stage = st:stage(d.stage_id)
  local person = d.person_id and st:get("person", d.person_id)
  local org = d.org_id and st:get("organization", d.org_id)
  local item = {
    id = d.id, type = "deal", title = d.title, value = search_value(d.value), currency = d.currency,
    status = deal_status(d), visible_to = d.visible_to, owner = { id = d.owner_id },
    stage = { id = stage.id, name = stage.name },
    person = person and { id = person.id, name = person.name } or null,
    organization = org and { id = org.id, name = org.name } or null,
    custom_fields = custom_values(d.custom_fields), notes = array(), is_archived = d.is_archived,
  }
  if include and include["deal.cc_email"] then item.cc_email = cc_email(st, "deal" .. d.id) end
  return item
end

function M.person_item(st, p, include)
  local org = p.org_id and st:get("organization", p.org_id)
  local item = {
    id = p.id, type = "person", name = p.name, phones = contact_values(p.phones),
    emails = contact_values(p.emails), visible_to = p.visible_to, owner = { id = p.owner_id },
    organization = org and { id = org.id, name = org.name, address = org_address(org) } or none(st),
    custom_fields = custom_values(p.custom_fields), notes = array(p.notes and { p.notes } or {}),
  }
  if include and include["person.picture"] then item.picture = null end
  return item
end

function M.org_item(st, o)
  return {
    id = o.id, type = "organization", name = o.name, address = org_address(o) or none(st),
    visible_to = o.visible_to, owner = { id = o.owner_id }, custom_fields = custom_values(o.custom_fields),
    notes = array(),
  }
end

function M.lead_item(st, l, include)
  local NONE = none(st)
  local person = l.person_id and st:get("person", l.person_id)
  local org = l.organization_id and st:get("organization", l.organization_id)
  local item = {
    id = l.id, type = "lead", title = l.title, owner = { id = l.owner_id },
    person = person and { id = person.id, name = person.name } or NONE,
    organization = org and { id = org.id, name = org.name } or NONE,
    phones = person and contact_values(person.phones) or array(),
    emails = person and contact_values(person.emails) or array(),
    custom_fields = custom_values(l.custom_fields), notes = array(),
    value = l.value and search_value(l.value.amount) or NONE, currency = l.value and l.value.currency or NONE,
    visible_to = l.visible_to, is_archived = l.is_archived,
  }
  if include and include["lead.was_seen"] then item.was_seen = l.was_seen end
  return item
end

------------------------------------------------------------------------------
-- related_objects of v1 answers
------------------------------------------------------------------------------
--- Collects the users, persons, organizations, stages and pipelines that v1
-- records refer to, keyed by id string, as Pipedrive's related_objects.
function M.related(st, kind, records)
  local users, persons, orgs, stages, pipelines = {}, {}, {}, {}, {}
  local function add_user(id)
    local u = id and st:user(id)
    if u then users[tostring(id)] = user_related(u) end
  end
  local function add_org(id)
    local o = id and st:get("organization", id)
    if o then orgs[tostring(id)] = org_related(st, o) end
  end
  for _, r in ipairs(records) do
    add_user(r.owner_id)
    if kind == "deal" then
      add_user(r.creator_user_id)
      local p = r.person_id and st:get("person", r.person_id)
      if p then persons[tostring(p.id)] = person_related(p) end
      add_org(r.org_id)
      local s = st:stage(r.stage_id)
      stages[tostring(s.id)] = M.stage_v1(st, s)
      stages[tostring(s.id)].company_id = st.company.id
      local pl = st:pipeline(r.pipeline_id)
      pipelines[tostring(pl.id)] = M.pipeline_v1(st, pl)
    elseif kind == "person" then
      add_org(r.org_id)
    end
  end
  if kind == "deal" then
    return { user = users, person = persons, organization = orgs, stage = stages, pipeline = pipelines }
  end
  return { user = users, organization = orgs, picture = {} }
end

return M
