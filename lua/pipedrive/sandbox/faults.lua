--- Fault injection for the sandbox: rules that make chosen requests fail the
-- way real networks and Pipedrive do, so tests can prove the client's retries.
--
-- A rule (JSON from POST /_sandbox/faults or --fault):
--   { "match": { "method": "POST", "path": "/api/v2/deals", "prefix": "/api/v2/" } (each optional),
--     "fault": "status" | "drop" | "delay" | "html403" | "truncate" | "invalid_json" | "cut" | "drip",
--     "status": 503 (for "status"; default 503), "retry_after": 1 (a Retry-After header),
--     "reset": 1 (x-ratelimit-reset, with x-ratelimit-remaining 0), "daily": true (x-daily-requests-left 0
--     and a daily-limit message), "count": 2 (how many matching requests it hits; absent: until cleared),
--     "delay": 0.2 (seconds to wait before answering; the whole fault for "delay"),
--     "when": "before" (default: answer without processing; nothing changes) | "after"
--     (process the request, data changes, then answer with the fault) }
-- "truncate" and "invalid_json" always process the request and spoil its answer's body.
-- "drop" closes the connection without an answer (pipedrive.sandbox.httpd's "drop").
-- "cut" sends the status line, the headers (with the whole body's length) and
--   the first "bytes" bytes of the body (default: half of it), then closes the
--   connection: a drop in the middle of the body.
-- "drip" sends the body "bytes" bytes at a time (default 16), "interval"
--   seconds apart (default 0.05): a slow body. Both process the request first.
-- "redirect" answers "status" (default 302) with a Location header "location"
--   (a URL or path), without processing: for the client's redirect rules.
-- The first rule that matches (and has count left) applies; each request takes at most one.
local compat = require "pipedrive.compat"
local json = require "pipedrive.sandbox.json"

local M = {}

local KINDS = { status = true, drop = true, delay = true, html403 = true, truncate = true, invalid_json = true,
                cut = true, drip = true, redirect = true }
local KEYS = { match = true, fault = true, status = true, retry_after = true, reset = true, daily = true,
               count = true, delay = true, when = true, bytes = true, interval = true,
               location = true }

M.HTML403 = "<!DOCTYPE html>\n<html><head><title>Attention Required! | Cloudflare</title></head>\n"
  .. "<body><h1>Sorry, you have been blocked</h1><p>You are unable to access pipedrive.com</p>"
  .. "<p>Cloudflare Ray ID: 0000000000000000</p></body></html>\n"

local function nonneg(v) return type(v) == "number" and v >= 0 and v == v and v < 3600 end

--- Checks one rule; returns a copy or nil, message.
function M.check(rule)
  if type(rule) ~= "table" then return nil, "a fault rule must be an object" end
  for k in pairs(rule) do
    if not KEYS[k] then return nil, ("unknown fault rule key '%s'"):format(tostring(k)) end
  end
  if not KINDS[rule.fault] then
    return nil, "fault must be one of status, drop, delay, html403, truncate, invalid_json, cut, drip, redirect"
  end
  local r = { fault = rule.fault, when = rule.when or "before", retry_after = rule.retry_after,
              reset = rule.reset, daily = rule.daily == true, delay = rule.delay, count = rule.count,
              status = rule.status or (rule.fault == "redirect" and 302 or 503), bytes = rule.bytes,
              interval = rule.interval, location = rule.location }
  if r.fault == "redirect" and (type(r.location) ~= "string" or r.location == "" or r.location:find("[%c]")) then
    return nil, "a redirect needs a location (a URL or path)"
  end
  if r.bytes ~= nil and (compat.math_type(r.bytes) ~= "integer" or r.bytes < 0 or r.bytes > 65536) then
    return nil, "bytes must be an integer from 0 to 65536"
  end
  if r.interval ~= nil and not (nonneg(r.interval) and r.interval <= 10) then
    return nil, "interval must be a number of seconds from 0 to 10"
  end
  if r.when ~= "before" and r.when ~= "after" then return nil, "when must be before or after" end
  if compat.math_type(r.status) ~= "integer" or r.status < 200 or r.status > 599 then
    return nil, "status must be an integer from 200 to 599"
  end
  if r.count ~= nil and (compat.math_type(r.count) ~= "integer" or r.count < 1) then
    return nil, "count must be a positive integer"
  end
  for _, k in ipairs({ "retry_after", "reset", "delay" }) do
    if r[k] ~= nil and not nonneg(r[k]) then return nil, k .. " must be a number of seconds from 0 to 3600" end
  end
  local m = rule.match
  if m ~= nil then
    if type(m) ~= "table" then return nil, "match must be an object" end
    for k, v in pairs(m) do
      if (k ~= "method" and k ~= "path" and k ~= "prefix") or type(v) ~= "string" then
        return nil, "match takes method, path and prefix, each a string"
      end
    end
    r.match = { method = m.method and m.method:upper(), path = m.path, prefix = m.prefix }
  end
  return r
end

local Faults = {}
Faults.__index = Faults

function M.new(sleep)
  return setmetatable({ rules = {}, sleep = sleep, hits = 0 }, Faults)
end

--- Adds rules (a list, or one rule); all or none. Returns true or nil, message.
function Faults:add(list)
  if type(list) ~= "table" then return nil, "expected a list of fault rules" end
  if list.fault ~= nil then list = { list } end
  local checked = {}
  for i, rule in ipairs(list) do
    local r, err = M.check(rule)
    if not r then return nil, ("rule %d: %s"):format(i, err) end
    checked[#checked + 1] = r
  end
  for _, r in ipairs(checked) do self.rules[#self.rules + 1] = r end
  return true
end

function Faults:clear()
  self.rules = {}
  self.hits = 0
end

--- The rule that applies to this request (its count taken), or nil.
function Faults:take(method, path)
  for i, r in ipairs(self.rules) do
    local m = r.match
    if not m or ((not m.method or m.method == method) and (not m.path or m.path == path)
                 and (not m.prefix or path:sub(1, #m.prefix) == m.prefix)) then
      if r.count then
        r.count = r.count - 1
        if r.count <= 0 then table.remove(self.rules, i) end
      end
      self.hits = self.hits + 1
      return r
    end
  end
end

--- Whether the request must be processed before the fault answers.
function M.processes(r)
  return r.fault == "delay" or r.fault == "truncate" or r.fault == "invalid_json" or r.fault == "cut"
    or r.fault == "drip" or r.when == "after"
end

--- The fault's answer; `status, headers, body` is the real answer when the
-- request was processed. Waits rule.delay seconds first. "cut" and "drip"
-- add a fourth value, the options pipedrive.sandbox.httpd sends the body with.
function Faults:answer(r, status, headers, body)
  if r.delay and r.delay > 0 and self.sleep then self.sleep(r.delay) end
  if r.fault == "delay" then return status, headers, body end
  if r.fault == "drop" then return "drop" end
  if r.fault == "truncate" then return status, headers, (body or ""):sub(1, compat.idiv(#(body or ""), 2)) end
  if r.fault == "invalid_json" then return status, headers, '{"success": true, "data": {"id": 1,, }' end
  if r.fault == "cut" then return status, headers, body, { cut = r.bytes or compat.idiv(#(body or ""), 2) } end
  if r.fault == "drip" then return status, headers, body, { drip = math.max(1, r.bytes or 16), interval = r.interval or 0.05 } end
  if r.fault == "redirect" then return r.status, { location = r.location, ["content-type"] = "text/plain" }, "" end
  if r.fault == "html403" then return 403, { ["content-type"] = "text/html; charset=UTF-8" }, M.HTML403 end
  local h = { ["content-type"] = "application/json" }
  local message = "Service unavailable"
  if r.status == 429 then
    message = r.daily and "Daily API request limit exceeded" or "Request over limit"
    if r.daily then h["x-daily-requests-left"] = "0" end
  elseif r.status < 500 then
    message = "Injected fault"
  end
  if r.retry_after then h["retry-after"] = tostring(compat.tointeger(r.retry_after) or r.retry_after) end
  if r.reset then
    h["x-ratelimit-remaining"] = "0"
    h["x-ratelimit-reset"] = tostring(compat.tointeger(r.reset) or r.reset)
  end
  return r.status, h, json.encode({ success = false, error = message, errorCode = r.status,
                                    data = json.null, additional_data = json.null })
end

return M
