--- Pacing counted in Redis: the same slots as pace.lua's local counting,
-- kept where every process and host using the token sees them, each step one
-- atomic script on Redis's own clock (so hosts whose clocks differ agree).
--
-- Per account (a hash of the token, never the token) and bucket, a sorted set
-- holds one member per request: scored `lease` seconds ahead while it is in
-- flight, rescored to `window` seconds after its answer when it comes back.
-- Members past their score are dropped, so a process that dies mid-request
-- frees its slots after the lease. A hash per account keeps what answers
-- said: each bucket's x-ratelimit-limit and until when a 429 closed it; a
-- third hash the tokens spent per UTC day.
local core = require "pipedrive.core"
local pace = require "pipedrive.pace"

local M = {}

-- KEYS: slots (zset), facts (hash), daily (hash), queue (zset: waiters in
-- order of arrival), polled (zset: each waiter's last try).
-- ARGV: member, lease, window, limit known here ('' none), reserve, cost,
--       daily budget ('' none), method, bucket, force ('1': take without looking).
-- Returns { 1 } taken, { 0, wait } (wait '' = every slot is in flight: poll),
-- { -1, spent } over the daily budget, { -2 } no POST/PUT left today.
-- Waiters are served first come, first served across every process: a
-- request may take a slot only when the free slots outnumber the waiters
-- ahead of it; a waiter that stopped trying (its process died) leaves the
-- queue after STALE seconds. Numbers go back as text: Redis would cut a Lua
-- float to an integer.
local TAKE = [[
local STALE, MAX_POLL = 3, 1
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local slots, facts, daily, queue, polled = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local member, lease, window = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local bucket, force = ARGV[9], ARGV[10] == '1'
redis.call('ZREMRANGEBYSCORE', slots, '-inf', now)
local stale = redis.call('ZRANGEBYSCORE', polled, '-inf', now - STALE)
for i = 1, #stale do redis.call('ZREM', queue, stale[i]) end
if #stale > 0 then redis.call('ZREMRANGEBYSCORE', polled, '-inf', now - STALE) end
local function wait(seconds)
  if redis.call('ZSCORE', queue, member) == false then
    redis.call('ZADD', queue, redis.call('INCR', queue .. ':n'), member)
  end
  redis.call('ZADD', polled, now, member)
  redis.call('PEXPIRE', queue, 60000)
  redis.call('PEXPIRE', polled, 60000)
  if seconds == '' then return { 0, '' } end
  return { 0, tostring(math.min(seconds, MAX_POLL)) }
end
if not force then
  local blocked = tonumber(redis.call('HGET', facts, bucket .. ':blocked') or '0') or 0
  if blocked > now then return wait(blocked - now) end
  local limit = tonumber(redis.call('HGET', facts, bucket) or '') or tonumber(ARGV[4])
  local allowed = 1
  if limit then allowed = math.max(1, math.floor(limit * (1 - tonumber(ARGV[5])))) end
  local free = allowed - redis.call('ZCARD', slots)
  local ahead = redis.call('ZRANK', queue, member)
  if ahead == false then ahead = redis.call('ZCARD', queue) end
  if ahead >= free then
    -- the slot this waiter's turn needs is the (ahead - free + 1)-th to free
    local k = ahead - math.max(free, 0)
    local nth = redis.call('ZRANGEBYSCORE', slots, '-inf', now + window, 'WITHSCORES', 'LIMIT', k, 1)
    if nth[2] then return wait(math.max(tonumber(nth[2]) - now, 0.001)) end
    return wait('')
  end
  local day = tostring(math.floor(now / 86400))
  local method = ARGV[8]
  if (method == 'POST' or method == 'PUT') and redis.call('HGET', daily, day .. ':closed') then return { -2 } end
  local budget = tonumber(ARGV[7])
  if budget then
    local cost = tonumber(ARGV[6])
    local spent = tonumber(redis.call('HGET', daily, day) or '0')
    if spent + cost > budget then return { -1, tostring(spent) } end
    redis.call('HINCRBY', daily, day, cost)
    redis.call('EXPIRE', daily, 172800)
  end
end
redis.call('ZREM', queue, member)
redis.call('ZREM', polled, member)
redis.call('ZADD', slots, now + lease, member)
redis.call('PEXPIRE', slots, math.ceil((lease + window) * 1000))
redis.call('EXPIRE', facts, 172800)
return { 1 }
]]

-- KEYS: slots, facts, daily. ARGV: member, window, limit ('' none), bucket,
-- blocked_for ('' none), daily_closed ('1'), no_limit ('1': the answer named
-- no limit; kept only when none is known).
local RELEASE = [[
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local slots, facts, daily = KEYS[1], KEYS[2], KEYS[3]
if redis.call('ZSCORE', slots, ARGV[1]) then
  redis.call('ZADD', slots, now + tonumber(ARGV[2]), ARGV[1])
end
if ARGV[3] ~= '' then redis.call('HSET', facts, ARGV[4], ARGV[3])
elseif ARGV[7] == '1' then redis.call('HSETNX', facts, ARGV[4], '1000000000') end
if ARGV[5] ~= '' then
  local til = now + tonumber(ARGV[5])
  local key = ARGV[4] .. ':blocked'
  if til > (tonumber(redis.call('HGET', facts, key) or '0') or 0) then redis.call('HSET', facts, key, tostring(til)) end
end
if ARGV[6] == '1' then
  redis.call('HSET', daily, tostring(math.floor(now / 86400)) .. ':closed', '1')
  redis.call('EXPIRE', daily, 172800)
end
return 1
]]

local Shared = {}
Shared.__index = Shared

--- The shared counting of `policy` (policy.shared is the Redis object).
function M.new(policy)
  return setmetatable({ policy = policy, redis = policy.shared, me = core.random_token(16), n = 0,
                        keys = {} }, Shared)
end

-- The three keys of an account and bucket, made once.
function Shared:keys_of(account, bucket)
  local id = account .. "\0" .. bucket
  local k = self.keys[id]
  if not k then
    local r = self.redis
    k = { r:key("pace", account, bucket), r:key("pace", account), r:key("daily", account),
          r:key("pace", account, bucket, "queue"), r:key("pace", account, bucket, "polled") }
    self.keys[id] = k
  end
  return k
end

local function number_text(v)
  if v == nil then return "" end
  return ("%.17g"):format(v)
end

--- A new member name: one per call's wait and slot, unique across processes.
function Shared:member()
  self.n = self.n + 1
  return self.me .. ":" .. self.n
end

-- Runs TAKE; returns the raw reply or nil, err.
function Shared:run_take(account, bucket, member, cost, method, force)
  local p = self.policy
  local limit = bucket == "search" and p.search_limit or (bucket ~= "search" and p.limit) or nil
  local reply, err = self.redis:eval(TAKE, self:keys_of(account, bucket), {
    member, number_text(p.lease), number_text(p.window), limit and tostring(limit) or "", number_text(p.reserve),
    tostring(cost or 0), p.daily and tostring(p.daily) or "", method or "GET", bucket, force and "1" or "" })
  return reply, err
end

--- Takes a slot for `member` (the same name on every try of one call): true |
-- false, wait (seconds) | nil, nil, err (Redis failed, or err.scope "daily").
function Shared:take(account, bucket, member, cost, method)
  local reply, err = self:run_take(account, bucket, member, cost, method, false)
  if reply == nil then return nil, nil, err end
  local code = tonumber(reply[1])
  if code == 1 then return true end
  if code == 0 then
    local wait = tonumber(reply[2])
    return false, wait or pace.POLL * 2
  end
  if code == -2 then return nil, nil, pace.writes_closed() end
  return nil, nil, pace.over_budget(self.policy.daily, reply[2], cost)
end

--- Takes a slot for `member` without looking (its wait ran out): true, or nil.
function Shared:force(account, bucket, member)
  return self:run_take(account, bucket, member, 0, "GET", true) and true or nil
end

--- Frees `member`'s slot a window from now and stores what the answer said.
-- true, or nil, err.
function Shared:release(account, bucket, member, fig, blocked_for)
  local limit, none = "", ""
  if fig then
    local l = fig.limit
    if type(l) == "number" and l > 0 and l % 1 == 0 then limit = ("%d"):format(l) else none = "1" end
  end
  local reply, err = self.redis:eval(RELEASE, self:keys_of(account, bucket), {
    member, number_text(self.policy.window), limit, bucket, blocked_for and number_text(blocked_for) or "",
    fig and fig.daily_left == 0 and "1" or "", none })
  if reply == nil then return nil, err end
  return true
end

return M
