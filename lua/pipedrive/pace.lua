--- Pacing: the calls of a client kept inside Pipedrive's rate limits before
-- they are sent, so that a long run never meets a 429.
--
-- Pipedrive counts requests per token in a rolling window (2 s; search
-- endpoints in their own, smaller one) and token costs per company and UTC
-- day. The pacer counts what this client has sent, per window ("bucket"):
-- a request holds a slot from the moment it is sent until `window` seconds
-- after its answer arrived. Pipedrive saw the request somewhere between the two,
-- so however long answers take, no `window`-long stretch of Pipedrive's clock
-- holds more than `limit` of our requests. A call waits (clock.sleep: a timer
-- inside pd.parallel, ngx.sleep under nginx) until a slot is free; reading
-- the last answer's x-ratelimit-remaining instead would count neither the
-- requests in flight nor those of the other tasks.
--
-- The limit is the window's x-ratelimit-limit, learned from the first answer
-- (until then one request at a time goes, unless `limit` is given). A 429 met
-- anyway (another program using the same token) closes the bucket for its
-- Retry-After. With `daily`, token costs are added up per UTC day and a call
-- that would go past the budget fails before it is sent (scope "daily"), as
-- do POST/PUT calls once x-daily-requests-left said 0.
--
-- With `shared` (a pipedrive.redis object) the same counting happens in Redis
-- (pace_shared.lua), across every process and host that uses the token; when
-- Redis cannot be reached the local counting takes over, said once through
-- the client's log hook, until Redis answers again.
local compat = require "pipedrive.compat"
local core = require "pipedrive.core"

local M = {}

local DEFAULTS = { reserve = 0, max_wait = 10, window = 2, lease = 60 }
local NUMBERS = { reserve = true, max_wait = true, window = true, lease = true }
local INTEGERS = { limit = true, search_limit = true, daily = true }
M.POLL = 0.01         -- the wait while every slot is held by a request in flight
M.UNKNOWN_COST = 10   -- a pd.request of an operation without x-token-cost

local function bad(k, what) return nil, ("pace.%s must be %s"):format(k, what) end

--- Checks a `pace` option: true, false/nil, or a table of the options below.
-- Returns the policy, false when off, or nil, message.
--   reserve   fraction of each window left unused (0 to below 1; default 0), for
--             other programs using the same token
--   max_wait  seconds a call waits for a slot at most (10); then it is sent anyway
--   limit, search_limit  requests per window before the first answer says
--   window    seconds (2)
--   daily     token budget per UTC day (default: not counted)
--   shared    a pipedrive.redis object: count in Redis, across processes and hosts
--   key       the account's name in Redis (default: a hash of the API token, or
--             of the OAuth client id and company domain)
--   lease     seconds a request in flight holds its slot at most (60: a process
--             that died mid-request frees its slots after this)
function M.policy(value)
  if value == nil or value == false then return false end
  local p = {}
  for k, v in pairs(DEFAULTS) do p[k] = v end
  if value == true then return p end
  if type(value) ~= "table" then return nil, "pace must be true, false or a table { limit, daily, shared, ... }" end
  for k, v in pairs(value) do
    if NUMBERS[k] then
      if type(v) ~= "number" or v ~= v or v < 0 or v == math.huge then return bad(k, "a non-negative number") end
      if k == "reserve" and v >= 1 then return bad(k, "a number from 0 to below 1") end
      if (k == "window" or k == "lease") and v <= 0 then return bad(k, "a positive number of seconds") end
    elseif INTEGERS[k] then
      if compat.math_type(v) ~= "integer" or v < 1 then return bad(k, "a positive integer") end
    elseif k == "shared" then
      if type(v) ~= "table" or type(v.eval) ~= "function" or type(v.token_key) ~= "function" then
        return bad(k, "a pipedrive.redis object")
      end
    elseif k == "key" then
      if type(v) ~= "string" or v == "" or v:find("[%c%s]") then return bad(k, "a non-empty string without spaces") end
    else
      return nil, ("unknown pace option '%s'"):format(tostring(k))
    end
    p[k] = v
  end
  return p
end

--- The slots of one window with this many free: what a limit allows after the reserve.
function M.allowed(limit, reserve)
  if not limit then return 1 end
  local n = math.floor(limit * (1 - reserve))
  return n < 1 and 1 or n
end

--- The UTC day number of a wall-clock time (days since the epoch).
function M.day(t)
  return compat.idiv(math.floor(t), 86400)
end

local function daily_error(message)
  return setmetatable({ kind = "rate_limited", scope = "daily", message = message }, core.error_mt)
end

--- The error of a call the daily budget does not allow (not sent).
function M.over_budget(budget, spent, cost)
  return daily_error(("the daily token budget (%d) would be exceeded: %s spent today, this call costs %d; not sent")
    :format(budget, tostring(spent), cost))
end

--- The error of a POST/PUT after Pipedrive said none are left today (not sent).
function M.writes_closed()
  return daily_error("Pipedrive said no POST/PUT requests are left today (x-daily-requests-left: 0); not sent")
end

------------------------------------------------------------------------------
-- The local counting: per bucket, requests in flight and a queue of the times
-- at which answered ones free their slot (appended in time order, since each
-- is its answer's time plus the window).
------------------------------------------------------------------------------
local Local = {}
Local.__index = Local

function M.local_counter(policy, now)
  return setmetatable({ policy = policy, now = now or core.now, buckets = {},
                        day = nil, spent = 0, daily_closed = nil }, Local)
end

function Local:bucket(name)
  local b = self.buckets[name]
  if not b then
    local p = self.policy
    b = { inflight = 0, flying = {}, free_at = {}, head = 1, tail = 0, blocked = 0,
          limit = name == "search" and p.search_limit or (name ~= "search" and p.limit) or nil }
    self.buckets[name] = b
  end
  return b
end

--- The daily budget: true, or nil, err when `cost` would exceed it (nothing is counted then).
function Local:spend(cost, method, wall)
  local p = self.policy
  local day = M.day(wall)
  if self.day ~= day then self.day, self.spent, self.daily_closed = day, 0, nil end
  if self.daily_closed and (method == "POST" or method == "PUT") then return nil, M.writes_closed() end
  if p.daily then
    if self.spent + cost > p.daily then return nil, M.over_budget(p.daily, self.spent, cost) end
    self.spent = self.spent + cost
  end
  return true
end

-- A slot held by a request in flight, until its answer or its lease's end (a
-- task cancelled or raising mid-request never releases it).
local function fly(b, now, lease)
  local ticket = {}
  b.flying[ticket] = now + lease
  b.inflight = b.inflight + 1
  return ticket
end

--- Takes a slot of `bucket` now: a ticket, or false and the seconds to wait for one.
function Local:take(bucket)
  local b = self:bucket(bucket)
  local now = self.now()
  if b.blocked > now then return false, b.blocked - now end
  local q = b.free_at
  while b.head <= b.tail and q[b.head] <= now do
    q[b.head] = nil
    b.head = b.head + 1
  end
  local allowed = M.allowed(b.limit, self.policy.reserve)
  if b.inflight + (b.tail - b.head + 1) >= allowed then
    for t, lease_end in pairs(b.flying) do
      if lease_end <= now then b.flying[t], b.inflight = nil, b.inflight - 1 end
    end
  end
  if b.inflight + (b.tail - b.head + 1) < allowed then return fly(b, now, self.policy.lease) end
  if b.head <= b.tail then return false, q[b.head] - now end
  return false, M.POLL
end

--- Takes a slot without looking (the wait for one ran out): it still counts.
function Local:force(bucket)
  return fly(self:bucket(bucket), self.now(), self.policy.lease)
end

--- The answer (or failure) of the request holding `ticket`: its slot is freed
-- a window from now; what the answer said (limit, 429, daily) is kept.
function Local:release(bucket, ticket, fig, blocked_for)
  local b = self:bucket(bucket)
  local now = self.now()
  if b.flying[ticket] then
    b.flying[ticket] = nil
    b.inflight = b.inflight - 1
    b.tail = b.tail + 1
    b.free_at[b.tail] = now + self.policy.window
  end
  if fig then -- an answer (a transport failure has none): what its headers said
    if compat.math_type(fig.limit) == "integer" and fig.limit > 0 then
      b.limit = fig.limit
    elseif not b.limit then
      b.limit = math.huge -- a server that names no limit: nothing to pace by
    end
    if fig.daily_left == 0 then self.daily_closed = true end
  end
  if blocked_for and blocked_for > 0 then b.blocked = math.max(b.blocked, now + blocked_for) end
end

------------------------------------------------------------------------------
-- The pacer of a client: the local counting, or the shared one with the local
-- one as its fallback.
------------------------------------------------------------------------------
local Pacer = {}
Pacer.__index = Pacer

--- A pacer for `policy`. o = { clock = { now, sleep }, log = fn|nil,
-- account = fn() -> the account's key part (for shared counting) }.
function M.new(policy, o)
  local self = setmetatable({ policy = policy, clock = o.clock, log = o.log, account = o.account,
                              counter = M.local_counter(policy, o.clock.now), wall = o.wall or os.time }, Pacer)
  if policy.shared then self.shared = require("pipedrive.pace_shared").new(policy) end
  return self
end

-- Reports a change between shared and local counting once.
function Pacer:mode(shared, err)
  if self.on_shared == shared then return end
  local before = self.on_shared
  self.on_shared = shared
  if before == nil and shared then return end -- the first success needs no line
  if self.log then
    if shared then
      self.log{ type = "pace", shared = true, message = "pacing is counted in Redis again" }
    else
      self.log{ type = "pace", shared = false, message = "Redis is unreachable: pacing falls back to this process's "
        .. "own counting (" .. tostring(err and err.message or err) .. ")" }
    end
  end
end

--- Before a request: waits for a slot of `bucket` and spends `cost` of the
-- daily budget. Returns a ticket for release(), or nil, err (daily budget).
function Pacer:acquire(bucket, cost, method)
  local p, clock = self.policy, self.clock
  cost = cost or M.UNKNOWN_COST
  local waited, spent = 0, false
  local shared = self.shared
  local member = shared and shared:member()
  while true do
    local ok, wait, err
    if shared then
      ok, wait, err = shared:take(self.account(), bucket, member, cost, method)
      if ok == nil and err and err.scope == "daily" then return nil, err end
      if ok == nil then
        self:mode(false, err)
        shared = nil
      else
        self:mode(true)
        if ok then return { shared = true, bucket = bucket, id = member } end
      end
    end
    if not shared then
      if not spent then
        local derr
        spent, derr = self.counter:spend(cost, method, self.wall())
        if not spent then return nil, derr end
      end
      ok, wait = self.counter:take(bucket)
      if ok then return { bucket = bucket, id = ok } end
    end
    if waited >= p.max_wait then
      -- Waited long enough: sent anyway (the retry loop meets the 429, if any).
      if self.log then self.log{ type = "pace", bucket = bucket, forced = true, waited = waited } end
      if shared and shared:force(self.account(), bucket, member) then
        return { shared = true, bucket = bucket, id = member }
      end
      return { bucket = bucket, id = self.counter:force(bucket) }
    end
    wait = math.min(wait, p.max_wait - waited)
    if wait < 0.001 then wait = 0.001 end
    if self.log and waited == 0 then self.log{ type = "pace", wait = wait, bucket = bucket } end
    clock.sleep(wait)
    waited = waited + wait
  end
end

--- After a request: frees its slot a window from now and keeps what the
-- answer said (`fig`: info/err.rate_limit; `err` for a 429's wait).
function Pacer:release(ticket, fig, err)
  local blocked_for
  if type(err) == "table" and err.status == 429 then
    blocked_for = type(err.retry_after) == "number" and err.retry_after or self.policy.window
  end
  if ticket.shared then
    local ok, rerr = self.shared:release(self.account(), ticket.bucket, ticket.id, fig, blocked_for)
    if ok == nil then self:mode(false, rerr) end
    -- the local counter also learns the figures, for a fallback
    if fig and compat.math_type(fig.limit) == "integer" then self.counter:bucket(ticket.bucket).limit = fig.limit end
    return
  end
  self.counter:release(ticket.bucket, ticket.id, fig, blocked_for)
end

return M
