--- handle(): one webhook HTTP request -> status, headers, body. Checks the
-- method, Basic auth (constant time), size, content type and payload; runs
-- the matching callbacks under pcall; answers 5xx when one fails, so that
-- Pipedrive delivers again; claims and marks events in the seen store so that
-- a redelivery is acknowledged without calling anything twice. Never raises.
local compat = require "pipedrive.compat"
local core = require "pipedrive.core"
local event = require "pipedrive.triggers.event"
local callbacks = require "pipedrive.triggers.callbacks"
local state = require "pipedrive.triggers.state"

local M = {}

local emit = state.emit

--- A JSON answer: status, headers, body.
function M.reply(status, doc, extra)
  local headers = { ["content-type"] = "application/json", ["cache-control"] = "no-store" }
  for k, v in pairs(extra or {}) do headers[k] = v end
  return status, headers, core.json_encode(doc)
end
local reply = M.reply

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
  local ev, why = event.normalize(payload)
  if not ev then return reply(400, { error = why }) end

  local fns = callbacks.lookup(st, ev.object, ev.action)
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

--- Handles one request for the state of a triggers object; an internal
-- failure is logged and answers 500.
function M.handle(st, req, opts)
  local ok, status, headers, body = pcall(handle, st, req, opts)
  if ok then return status, headers, body end
  emit(st, "error", "internal error: " .. tostring(status))
  return reply(500, { error = "internal error" })
end

return M
