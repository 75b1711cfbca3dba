--- The callbacks of a triggers object: registration per event key, the
-- lookup for an event (most specific key first, cached), and the webhooks the
-- callbacks need. Works on the private state's `handlers` and `by_event`.
local event = require "pipedrive.triggers.event"

local M = {}

--- Adds fn under a normalized key ("deal.added", "deal.*", "*.*"); once per key.
function M.add(st, k, fn)
  local list = st.handlers[k]
  if not list then
    list = {}
    st.handlers[k] = list
  end
  for _, f in ipairs(list) do
    if f == fn then return end
  end
  list[#list + 1] = fn
  st.by_event = {}
end

--- Removes fn from a normalized key, or every callback of the key without fn.
function M.remove(st, k, fn)
  local list = st.handlers[k]
  if not list then return end
  st.by_event = {}
  if fn == nil then
    st.handlers[k] = nil
    return
  end
  for i = #list, 1, -1 do
    if list[i] == fn then table.remove(list, i) end
  end
  if #list == 0 then st.handlers[k] = nil end
end

-- Every object and action word a callback can name (both versions): an
-- event's words outside these can only match wildcard keys.
local KNOWN_OBJECTS, KNOWN_ACTIONS = {}, {}
for _, t in pairs(event.OBJECTS) do for w in pairs(t) do KNOWN_OBJECTS[w] = true end end
for _, t in pairs(event.ACTIONS) do for w in pairs(t) do KNOWN_ACTIONS[w] = true end end

-- The callbacks for an event, most specific key first, each once; the list
-- is kept per object and action until on() or off() changes the callbacks
-- (callers never modify it). The words come from the request: any word no
-- key can name is looked up as "?" (never a key), so the cache holds at most
-- (objects + 1) x (actions + 1) lists whatever the traffic.
function M.lookup(st, object, action)
  if not KNOWN_OBJECTS[object] then object = "?" end
  if not KNOWN_ACTIONS[action] then action = "?" end
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

--- The number of callbacks registered (for tostring).
function M.count(st)
  local n = 0
  for _, list in pairs(st.handlers) do n = n + #list end
  return n
end

--- The webhooks the callbacks need, in the version's words, without any that
-- another one covers: a list of { event_action, event_object } sorted by object, action.
function M.subscriptions(st)
  local wanted = {}
  for k, list in pairs(st.handlers) do
    if #list > 0 then
      local object, action = k:match("^(.-)%.(.*)$")
      if st.version == "2.0" then action = event.TO_V2[action] end
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

return M
