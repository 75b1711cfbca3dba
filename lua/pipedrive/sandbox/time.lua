--- The sandbox's one clock and its one date module.
--
-- Intervals (rate-limit windows, OAuth lifetimes, webhook retry schedules,
-- waits and deadlines) use `now()`: CLOCK_MONOTONIC seconds from
-- pipedrive.core, the same C clock as the client's, and `sleep(s)`. The dates
-- records carry (add_time, update_time, webhook timestamps) are wall-clock
-- seconds since the epoch from `wall()` (os.time: whole seconds, as Pipedrive
-- writes them). Dates are written (v1, v2, with milliseconds) and read
-- (parse_date, parse_time) only here.
local core = require "pipedrive.core"

local floor = math.floor

local M = {}

M.now, M.sleep, M.wall = core.now, core.sleep, os.time

-- A formatter of whole seconds in one os.date format, with a cache per
-- second (a page of records shares few distinct times), emptied when it grows
-- past 20,000 entries.
local function cached(format)
  local cache, n = {}, 0
  return function(t)
    if t == nil then return nil end
    local s = floor(t)
    local r = cache[s]
    if not r then
      r = os.date(format, s)
      n = n + 1
      if n > 20000 then cache, n = {}, 0 end
      cache[s] = r
    end
    return r
  end
end

--- "YYYY-MM-DD HH:MM:SS" (UTC), the v1 format.
M.v1 = cached("!%Y-%m-%d %H:%M:%S")

--- RFC 3339 "YYYY-MM-DDTHH:MM:SSZ", the v2 format.
M.v2 = cached("!%Y-%m-%dT%H:%M:%SZ")

--- ISO 8601 with milliseconds, as leads carry them.
function M.ms(t)
  if t == nil then return nil end
  local s = floor(t)
  local ms = floor((t - s) * 1000 + 0.5)
  if ms >= 1000 then s, ms = s + 1, 0 end
  return os.date("!%Y-%m-%dT%H:%M:%S", s) .. (".%03dZ"):format(ms)
end

-- Days since 1970-01-01 of a proleptic Gregorian date.
local function days_from_civil(y, m, d)
  if m <= 2 then y = y - 1 end
  local era = floor((y >= 0 and y or y - 399) / 400)
  local yoe = y - era * 400
  local mp = m > 2 and m - 3 or m + 9
  local doy = floor((153 * mp + 2) / 5) + d - 1
  local doe = yoe * 365 + floor(yoe / 4) - floor(yoe / 100) + doy
  return era * 146097 + doe - 719468
end

local DAYS_IN_MONTH = { 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 }

local function valid_date(y, m, d)
  if m < 1 or m > 12 or d < 1 or d > DAYS_IN_MONTH[m] then return false end
  if m == 2 and d == 29 and not (y % 4 == 0 and (y % 100 ~= 0 or y % 400 == 0)) then return false end
  return true
end

--- "YYYY-MM-DD" that names a real day -> the same string, else nil.
function M.parse_date(s)
  if type(s) ~= "string" then return nil end
  local y, m, d = s:match("^(%d%d%d%d)%-(%d%d)%-(%d%d)$")
  if not y or not valid_date(tonumber(y), tonumber(m), tonumber(d)) then return nil end
  return s
end

--- A time as the APIs write it -> seconds since the epoch (UTC), or nil.
-- Accepts "YYYY-MM-DD HH:MM:SS" (v1, UTC), RFC 3339 ("...T...Z", fractions,
-- "+hh:mm" offsets) and a bare "YYYY-MM-DD" (midnight UTC).
function M.parse_time(s)
  if type(s) ~= "string" then return nil end
  local y, mo, d, rest = s:match("^(%d%d%d%d)%-(%d%d)%-(%d%d)(.*)$")
  if not y then return nil end
  y, mo, d = tonumber(y), tonumber(mo), tonumber(d)
  if not valid_date(y, mo, d) then return nil end
  local h, mi, sec, frac, zone = 0, 0, 0, 0, ""
  if rest ~= "" then
    local hh, mm, ss, tail = rest:match("^[T ](%d%d):(%d%d):(%d%d)(.*)$")
    if not hh then return nil end
    h, mi, sec = tonumber(hh), tonumber(mm), tonumber(ss)
    local f, z = tail:match("^%.(%d+)(.*)$")
    if f then
      frac = tonumber("0." .. f)
      tail = z
    end
    zone = tail
  end
  if h > 23 or mi > 59 or sec > 60 then return nil end
  local offset = 0
  if zone ~= "Z" and zone ~= "z" and zone ~= "" then
    local sign, oh, om = zone:match("^([+-])(%d%d):?(%d%d)$")
    if not sign then return nil end
    offset = (tonumber(oh) * 3600 + tonumber(om) * 60) * (sign == "+" and 1 or -1)
  end
  local t = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec - offset
  if frac > 0 then return t + frac end
  return t
end

return M
