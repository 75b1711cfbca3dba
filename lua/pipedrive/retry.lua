--- Retries for the client's calls: which failures are retried, how long to
-- wait, and the loop itself. client.lua's call() hands one attempt to `run`.
--
-- Policy: { max = 5, base = 0.5, cap = 30, deadline = 120 } where `max` is the
-- number of retries after the first attempt (so at most max + 1 attempts),
-- waits are full jitter (random between 0 and min(cap, base * 2^(retry-1)))
-- unless the answer names a wait (`err.retry_after`, which core.parse_response
-- reads from Retry-After, or x-ratelimit-reset on a 429),
-- and no wait may end past `deadline` seconds after the first attempt began.
--
-- What is retried: 429 (except a daily-budget 429, which only midnight
-- clears), 502/503/504 and transport errors. GET, DELETE and PUT are
-- idempotent and retried on all of them. Any other method (POST, PATCH) only
-- when Pipedrive certainly did not act: a 429, or a transport error with
-- stage "connect" (nothing was sent) - never after a timeout or a failure
-- once the request was sent, never on a 5xx.
local compat = require "pipedrive.compat"
local core = require "pipedrive.core"

local M = {}

M.DEFAULTS = { max = 5, base = 0.5, cap = 30, deadline = 120 }

local IDEMPOTENT = { GET = true, DELETE = true, PUT = true, HEAD = true, OPTIONS = true }
local RETRY_STATUS = { [429] = true, [502] = true, [503] = true, [504] = true }

--- Checks a `retries` option and merges it over `base` (the defaults, or the
-- client's policy for a per-call value). Returns the policy, or false when
-- retries are off, or nil, message.
function M.policy(value, base)
  base = base or M.DEFAULTS
  if value == nil then return base end
  if value == true then return base or M.DEFAULTS end
  if value == false then return false end
  if type(value) ~= "table" then return nil, "retries must be false or a table { max, base, cap, deadline }" end
  local p = {}
  for k, v in pairs(base or M.DEFAULTS) do p[k] = v end
  for k, v in pairs(value) do
    if M.DEFAULTS[k] == nil then return nil, ("unknown retries option '%s'"):format(tostring(k)) end
    if type(v) ~= "number" or v ~= v or v < 0 or v == math.huge then
      return nil, ("retries.%s must be a non-negative number"):format(k)
    end
    if k == "max" and compat.math_type(v) ~= "integer" then return nil, "retries.max must be an integer" end
    p[k] = v
  end
  return p
end

--- Marks a 429 error as burst or daily exhaustion (err.scope):
-- "daily" when x-daily-requests-left was 0 (`err.rate_limit.daily_left`, read
-- by core.parse_response) or Pipedrive's message speaks of a daily
-- limit/budget; otherwise "burst" (the 2-second window, the usual case).
function M.classify(err)
  if type(err) ~= "table" or err.status ~= 429 then return end
  local msg = type(err.message) == "string" and err.message:lower() or ""
  local fig = err.rate_limit
  if (type(fig) == "table" and fig.daily_left == 0) or msg:find("daily", 1, true) or msg:find("per day", 1, true) then
    err.scope = "daily"
  else
    err.scope = "burst"
  end
end

--- Whether `err` (from an attempt of `method`) may be retried.
function M.retryable(method, err)
  if type(err) ~= "table" then return false end
  local status = err.status
  if status then
    if status == 429 then return err.scope ~= "daily" end
    return RETRY_STATUS[status] == true and IDEMPOTENT[method] == true
  end
  if err.kind == "network" or err.kind == "timeout" then
    return IDEMPOTENT[method] == true or err.stage == "connect"
  end
  return false
end

--- The wait before retry number `n` (1-based): the answer's own wait when it
-- names one, else full jitter.
function M.delay(policy, n, err, random)
  local hinted = type(err) == "table" and err.retry_after
  if type(hinted) == "number" and hinted >= 0 and hinted == hinted then return hinted, true end
  local ceiling = math.min(policy.cap, policy.base * 2 ^ (n - 1))
  return (random or math.random)() * ceiling, false
end

--- Runs `attempt(n, ...)` (returning value, info or nil, err, ...) under
-- `policy`; the extra arguments are handed to every attempt, so a caller
-- needs no closure per call. clock = { now = fn, sleep = fn, random = fn }.
-- On final failure the error gets `attempts`, and its message
-- "(after n attempts)" when n > 1.
function M.run(policy, method, attempt, clock, ...)
  local now = clock and clock.now or core.now
  local sleep = clock and clock.sleep or core.sleep
  local random = clock and clock.random
  local started = now()
  local n = 0
  while true do
    n = n + 1
    local value, info, extra = attempt(n, ...)
    if value ~= nil then return value, info end
    local retry = policy and n <= policy.max and M.retryable(method, info)
    local wait
    if retry then
      wait = M.delay(policy, n, info, random)
      if now() + wait - started > policy.deadline then retry = false end
    end
    if not retry then
      if type(info) == "table" then
        info.attempts = n
        if n > 1 then
          info.message = (type(info.message) == "string" and info.message ~= "" and (info.message .. " ") or "")
            .. ("(after %d attempts)"):format(n)
        end
      end
      return nil, info, extra
    end
    sleep(wait)
  end
end

return M
