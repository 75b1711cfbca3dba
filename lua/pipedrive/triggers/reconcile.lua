--- Declarative reconciliation: the user's Pipedrive webhooks made to match
-- the registered callbacks. Ours are those with our URL and a name starting
-- with our prefix; nobody else's are touched. Errors returned are public:
-- no response body, secrets scrubbed.
local core = require "pipedrive.core"
local event = require "pipedrive.triggers.event"
local callbacks = require "pipedrive.triggers.callbacks"
local state = require "pipedrive.triggers.state"

local M = {}

local null = core.null
local emit, to_id = state.emit, event.to_id

-- An error the user may print or log: no response body, secrets scrubbed.
local function public_error(st, err, doing)
  local e = type(err) == "table" and err or { message = tostring(err) }
  return setmetatable({
    kind = e.kind or "error", status = e.status, code = e.code, method = e.method, path = e.path,
    retry_after = e.retry_after, message = state.scrub(st, doing .. ": " .. tostring(e.message or "failed")),
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

-- Our webhooks among `list`, split into those to keep (by "action|object",
-- each once, still delivering as we want) and the stale rest.
local function sort_ours(st, list, desired, result)
  local want = {}
  for _, d in ipairs(desired) do want[d.event_action .. "|" .. d.event_object] = d end
  local keep, stale = {}, {}
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
  return keep, stale
end

-- Creates the webhook for one subscription; at Pipedrive's 40-webhook cap
-- (422) it makes room with our stale ones first (then `stale` is emptied).
-- Returns the webhook or nil, err.
local function create(st, c, d, stale, result)
  local args = {
    subscription_url = st.url, event_action = d.event_action, event_object = d.event_object,
    name = ("%s %s.%s"):format(st.name, d.event_object, d.event_action), version = st.version,
    http_auth_user = st.user, http_auth_password = st.password, user_id = st.user_id,
  }
  local w, aerr = c.webhooks.add(args)
  if not w and type(aerr) == "table" and aerr.status == 422 and #stale > 0 then
    local ok, derr = delete_all(st, c, stale, result.deleted)
    for i = #stale, 1, -1 do stale[i] = nil end
    if not ok then return nil, derr end
    w, aerr = c.webhooks.add(args)
  end
  if not w then
    return nil, public_error(st, aerr, ("creating the webhook for %s.%s"):format(d.event_object, d.event_action))
  end
  result.created[#result.created + 1] = summary(w)
  emit(st, "info", ("created webhook %s (%s.%s)"):format(tostring(w.id), d.event_object, d.event_action))
  return w
end

--- Makes the user's webhooks match the callbacks: creates those missing,
-- keeps those that already fit, then deletes our stale ones (same url, name
-- starting with our prefix). Returns true, { created, kept, deleted } or
-- nil, err (then nothing of ours was deleted that is still wanted; call again).
-- At most 40 subscriptions (v1: 10 objects x 4 actions), Pipedrive's cap per
-- user; other webhooks of the same user can still make Pipedrive refuse one (422).
function M.enable(st, c)
  local desired = callbacks.subscriptions(st)
  local list, lerr = c.webhooks.list()
  if not list then return nil, public_error(st, lerr, "listing webhooks") end
  local result = { created = {}, kept = {}, deleted = {} }
  local keep, stale = sort_ours(st, list, desired, result)
  -- Create first, delete after: a moment with both delivers twice rather than losing events.
  for _, d in ipairs(desired) do
    if not keep[d.event_action .. "|" .. d.event_object] then
      local w, err = create(st, c, d, stale, result)
      if not w then return nil, err end
    end
  end
  local ok, derr = delete_all(st, c, stale, result.deleted)
  if not ok then return nil, derr end
  return true, result
end

--- Deletes our webhooks (same url, name starting with our prefix). Returns
-- true, { deleted } or nil, err.
function M.disable(st, c)
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

return M
