--- handle(): one webhook HTTP request -> status, headers, body. Checks the
-- method, Basic auth (constant time), size, content type and payload; runs
-- the matching callbacks under pcall; answers 5xx when one fails, so that
-- Pipedrive delivers again; claims and marks events in the seen store so that
-- a redelivery is acknowledged without calling anything twice; answers 503
-- while the seen store fails (nothing runs that cannot be de-duplicated).
-- Never raises.
local compat = require "pipedrive.compat"
local core = require "pipedrive.core"
local event = require "pipedrive.triggers.event"
local callbacks = require "pipedrive.triggers.callbacks"
local state = require "pipedrive.triggers.state"

local M = {}

local emit = state.emit

-- An id for a log line: its text, cut at 80 bytes (ids come from the request,
-- and a log line must not grow with the body).
local function shown(v)
  local t = tostring(v)
  if #t > 80 then t = t:sub(1, 80) .. "..." end
  return t
end

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
  if st.shape and not ev.shaped then
    -- A failed read of field definitions or related records fails the
    -- delivery (5xx): Pipedrive delivers it again.
    local ok, sok, serr = pcall(st.shape, ev)
    if not ok or not sok then
      emit(st, "error", ("reshaping %s (id %s) failed: %s"):format(ev.event, shown(ev.id),
        tostring(ok and (serr and serr.message or serr) or sok)))
      return #fns
    end
    ev.shaped = true
  end
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
          :format(ev.event, shown(ev.id), tostring(ev.meta.attempt), tostring(why)))
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

-- Header names lower-cased; a repeated header (OpenResty gives a list) counts once.
local function lower_headers(req)
  local headers = {}
  if type(req.headers) == "table" then
    for k, v in pairs(req.headers) do
      if type(k) == "string" then
        if type(v) == "table" then v = v[1] end
        headers[k:lower()] = v
      end
    end
  end
  return headers
end

-- True when the request carries the expected Basic credentials (constant time).
local function authorized(st, given)
  if type(given) ~= "string" or #given > 4096 then return false end
  local scheme, cred = given:match("^%s*(%a+)%s+([%w+/=]+)%s*$")
  return scheme ~= nil and scheme:lower() == "basic" and core.consttime_equal("Basic " .. cred, st.expected)
end

-- The event a request carries, or nil and the answer refusing it (method,
-- credentials, size, content type, JSON, payload shape).
local function read_event(st, req)
  if type(req) ~= "table" then return nil, reply(400, { error = "no request" }) end
  local method = type(req.method) == "string" and req.method:upper() or ""
  if method ~= "POST" then return nil, reply(405, { error = "method not allowed" }, { allow = "POST" }) end
  local from = type(req.remote_addr) == "string" and (" from " .. req.remote_addr:sub(1, 64)) or ""
  local headers = lower_headers(req)
  if st.expected and not authorized(st, headers.authorization) then
    emit(st, "warn", ("refused a request%s: %s"):format(from,
      headers.authorization == nil and "no Authorization header" or "wrong or malformed Authorization"))
    return nil, reply(401, { error = "unauthorized" },
      { ["www-authenticate"] = ('Basic realm="%s", charset="UTF-8"'):format((st.name:gsub('["\\]', ""))) })
  end
  local body = req.body
  if body ~= nil and type(body) ~= "string" then return nil, reply(400, { error = "the body must be a string" }) end
  body = body or ""
  if #body > st.max_body then
    emit(st, "warn", ("refused a body of %d bytes%s (max_body %d)"):format(#body, from, st.max_body))
    return nil, reply(413, { error = "payload too large" })
  end
  local ct = headers["content-type"]
  if ct ~= nil and (type(ct) ~= "string" or not is_json(ct)) then
    return nil, reply(415, { error = "expected application/json" })
  end
  local ok, payload = pcall(core.json_decode, body)
  if not ok or payload == nil then return nil, reply(400, { error = "the body is not JSON" }) end
  -- ids that the decoding may have rounded: read them again, exactly (rare: never for Pipedrive's own)
  local exact
  if event.needs_exact(payload) then exact = core.json_decode(body, { exact = true }) end
  local ev, why = event.normalize(payload, exact)
  if not ev then return nil, reply(400, { error = why }) end
  return ev
end

-- The answer to a redelivery of a handled event.
local function duplicate(st, ev)
  emit(st, "info", ("duplicate %s (id %s, attempt %s) acknowledged"):format(ev.event, shown(ev.id),
    tostring(ev.meta.attempt)))
  return reply(200, { status = "duplicate" })
end

-- The answer while the same event's callbacks still run (a host that yields
-- inside callbacks): Pipedrive sends it again later.
local function busy()
  return reply(503, { error = "this event is being handled" }, { ["retry-after"] = "3" })
end

-- The answer while the seen store fails: the callbacks cannot be de-duplicated,
-- so they do not run; Pipedrive delivers the event again later.
local function unavailable()
  return reply(503, { error = "the de-duplication store is unavailable" }, { ["retry-after"] = "5" })
end

-- A failure of the seen store (raised, or nil, err): logged once per outage.
local function store_failed(st, what, err)
  if not st.seen_down then
    st.seen_down = true
    emit(st, "error", ("the seen store failed to %s an event (answering 503 until it works again): %s")
      :format(what, tostring(err)))
  end
  return "unavailable"
end

-- The seen store answered again after an outage: said once.
local function store_works(st)
  if st.seen_down then
    st.seen_down = false
    emit(st, "warn", "the seen store works again")
  end
end

-- Whether the event may run now: "run", "duplicate", "busy" or "unavailable".
-- A store shared by processes (pipedrive.ngx.seen, shared:seen()) claims the
-- event for one of them at once. A store that fails (raises, or returns nil,
-- err) answers 503: running callbacks that may already have run elsewhere is
-- worse than a redelivery.
local function claim(st, key)
  local seen = st.seen
  if seen.claim then
    local cok, got, claim_state = pcall(seen.claim, key, st.ttl)
    if not cok then return store_failed(st, "claim", got) end
    if got == nil then return store_failed(st, "claim", claim_state or "no answer") end
    store_works(st)
    if not got then return claim_state == "seen" and "duplicate" or "busy" end
    return "run"
  end
  if st.inflight[key] then return "busy" end
  local cok, was_seen, cerr = pcall(seen.check, key)
  if not cok then return store_failed(st, "check", was_seen) end
  if was_seen == nil and cerr ~= nil then return store_failed(st, "check", cerr) end
  store_works(st)
  return was_seen and "duplicate" or "run"
end

-- Gives a claimed event back to a shared store (its run failed or never
-- happened); when that fails, the claim ends at its expiry instead.
local function release(st, key)
  if st.seen.claim and st.seen.release then
    local ok, r, err = pcall(st.seen.release, key)
    if not ok or (r == nil and err ~= nil) then
      emit(st, "error", "the seen store failed to release an event (a redelivery runs it once the claim expires): "
        .. tostring(ok and err or r))
    end
  end
end

-- Runs the callbacks; true when all succeeded, and only then is the event marked seen.
local function run(st, ev, fns)
  local key = ev.meta.dedupe_key
  st.inflight[key] = true
  local t0 = st.wall()
  local rok, failed = pcall(run_callbacks, st, ev, fns, key)
  st.inflight[key] = nil
  if not rok then
    release(st, key)
    error(failed, 0)
  end
  local took = st.wall() - t0
  if took >= 5 then
    emit(st, "warn", ("callbacks for %s took %g s; Pipedrive gives up after 10 s: queue long work")
      :format(ev.event, took))
  end
  if failed > 0 then
    release(st, key)
    return false
  end
  -- The callbacks ran: the answer stays 200 even when the event cannot be
  -- remembered (a later duplicate is the lesser harm than a 5xx that makes
  -- Pipedrive deliver, and the callbacks run, again at once).
  local mok, mres, merr = pcall(st.seen.mark, key, st.ttl)
  if not mok or (mres == nil and merr ~= nil) then
    emit(st, "error", "the seen store failed to remember an event (a redelivery may run it again): "
      .. tostring(mok and merr or mres))
  end
  if st.log then -- info lines go nowhere without a log function: not even formatted
    emit(st, "info", ("handled %s (id %s, attempt %s)"):format(ev.event, shown(ev.id), tostring(ev.meta.attempt)))
  end
  return true
end

-- Answers now and hands the run to the host (OpenResty: ngx.timer.at). A
-- failure then can no longer become a 5xx: it is logged and the event left
-- unmarked for a redelivery.
local function deferred(st, ev, fns, defer)
  local key = ev.meta.dedupe_key
  st.inflight[key] = true
  local dok, derr = pcall(defer, function(premature)
    if premature then -- the host is shutting down: leave the event to a redelivery
      st.inflight[key] = nil
      return release(st, key)
    end
    local rok, e = pcall(run, st, ev, fns)
    if not rok then emit(st, "error", "internal error in deferred callbacks: " .. tostring(e)) end
  end)
  if not dok then
    st.inflight[key] = nil
    release(st, key)
    emit(st, "error", "could not defer the callbacks: " .. tostring(derr))
    return busy()
  end
  return reply(200, { status = "accepted" })
end

local function handle(st, req, hopts)
  local ev, status, headers, body = read_event(st, req)
  if not ev then return status, headers, body end
  local fns = callbacks.lookup(st, ev.object, ev.action)
  if #fns == 0 then
    emit(st, "info", ("ignored %s (id %s): no callback"):format(ev.event, shown(ev.id)))
    return reply(200, { status = "ignored" })
  end
  local verdict = claim(st, ev.meta.dedupe_key)
  if verdict == "duplicate" then return duplicate(st, ev) end
  if verdict == "busy" then return busy() end
  if verdict == "unavailable" then return unavailable() end
  if hopts and hopts.defer then return deferred(st, ev, fns, hopts.defer) end
  if not run(st, ev, fns) then return reply(500, { error = "callback failed" }) end
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
