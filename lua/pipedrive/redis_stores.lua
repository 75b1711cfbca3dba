--- The stores that live in Redis, as methods of the pipedrive.redis object:
--
--   local shared = pipedrive.redis{ host = "10.0.0.5" }
--   pipedrive.new{ oauth = { client_id = ..., client_secret = ..., store = shared:token_store("acct") } }
--   pd.triggers{ ..., seen = shared:seen() }
--
-- * token_store(name, opts): the OAuth token of `name` as JSON in one key
--   (prefix .. "oauth:" .. name), the same store contract as pipedrive.token_file
--   and pipedrive.ngx.token_store: `token` (nil: read on first use, no I/O
--   here), `reload()`, `on_token(t)`, `on_revoke()`, `lock(fn, sleep)`. The
--   refresh lock is a key of its own (prefix .. "oauth-lock:" .. name) taken with
--   SET NX PX and a random value, released by a compare-and-delete script, so
--   only its holder frees it and a dead holder's lock ends after `lock_ttl`.
--   Waiters poll it (sleeping with the client's sleep: a scheduler timer inside
--   pd.parallel) and then adopt the token the holder saved (oauth.lua reads it
--   under the lock). Redis unreachable: every function gives nil, err (kind
--   "redis_unavailable") and the refresh is not sent.
-- * seen(opts): pd.triggers' de-duplication store { check, claim, mark,
--   release } in keys prefix .. "seen:" .. dedupe key: claim is one script
--   (SET NX with the claim's expiry, value "claimed"; else what is there),
--   mark sets "seen" for the event ttl, release deletes only a claim. Each
--   returns nil, err when Redis fails; the handler then answers 503.
--
-- attach(class) puts token_store and seen on the redis object's class (redis.lua
-- calls it once).
local compat = require "pipedrive.compat"
local core = require "pipedrive.core"

local M = {}

local LOCK_TTL = 30   -- seconds a refresh lock lives when its holder never frees it
local LOCK_WAIT = 35  -- seconds a waiter polls for it (longer than LOCK_TTL: a dead holder's lock ends first)
local CLAIM_TTL = 60  -- seconds an event's claim lives when its handler never marks or releases it
local EVENT_TTL = 3600

-- Deletes the key only while it still holds this holder's value.
local RELEASE_LOCK = [[
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0]]

-- 1 claimed now, 2 already seen, 3 claimed by someone else.
local CLAIM = [[
if redis.call('SET', KEYS[1], 'claimed', 'NX', 'PX', ARGV[1]) then return 1 end
if redis.call('GET', KEYS[1]) == 'seen' then return 2 end
return 3]]

-- Deletes the key only while it is a claim (never an event already marked seen).
local RELEASE_CLAIM = [[
if redis.call('GET', KEYS[1]) == 'claimed' then return redis.call('DEL', KEYS[1]) end
return 0]]

local function fail(kind, message)
  return nil, setmetatable({ kind = kind, message = message }, core.error_mt)
end

-- Raises for a bad options table of `what` (only the names in `known`, positive numbers).
local function options(what, opts, known)
  if opts == nil then return {} end
  if type(opts) ~= "table" then error(("pipedrive.redis: %s: opts must be a table"):format(what), 3) end
  for k, v in pairs(opts) do
    if not known[k] then error(("pipedrive.redis: %s: unknown option '%s'"):format(what, tostring(k)), 3) end
    if type(v) ~= "number" or v ~= v or v <= 0 or v == math.huge then
      error(("pipedrive.redis: %s: %s must be a positive number of seconds"):format(what, k), 3)
    end
  end
  return opts
end

-- Milliseconds for PX: at least 1.
local function ms(seconds)
  return math.max(1, math.floor(seconds * 1000 + 0.5))
end

-- A credential value: printable ASCII without spaces, not empty.
local function credential(s)
  return type(s) == "string" and s ~= "" and not s:find("[^\33-\126]")
end

-- The token a key's text holds, or nil, err when it is not a token we saved.
local function decode_token(text, name)
  local ok, t = pcall(core.json_decode, text)
  local good = ok and type(t) == "table" and credential(t.access_token)
    and (t.refresh_token == nil or credential(t.refresh_token))
    and (t.expires_at == nil or type(t.expires_at) == "number")
  if not good then
    return fail("token_store", ("the Redis token of '%s' is malformed; delete its key and log in again"):format(name))
  end
  return t
end

--- shared:token_store(name [, { lock_ttl = 30, wait = 35 }]): see the header.
function M.token_store(self, name, opts)
  if type(name) ~= "string" or name == "" or name:find("[%c ]") then
    error("pipedrive.redis: token_store: name must be a non-empty string without spaces or control characters", 2)
  end
  opts = options("token_store", opts, { lock_ttl = true, wait = true })
  local lock_ms = ms(opts.lock_ttl or LOCK_TTL)
  local wait = opts.wait or LOCK_WAIT
  local key, lock_key = self:key("oauth", name), self:key("oauth-lock", name)
  local store = { token = nil } -- nothing read here: oauth.lua reloads when it has no token

  --- The token saved in Redis (nil when there is none), or nil, err.
  function store.reload()
    local text, err = self:command("GET", key)
    if text == nil then return nil, err end
    if text == false then return nil end
    local t, terr = decode_token(text, name)
    if not t then return nil, terr end
    store.token = t
    return t
  end

  --- Saves a new token: true, or nil, err (the client keeps it in memory then).
  function store.on_token(t)
    local ok, err = self:command("SET", key, core.json_encode(t))
    if not ok then return nil, err end
    store.token = t
    return true
  end

  --- Forgets the token (the next login saves a new one). Best effort: a failure
  -- leaves a revoked token that the next refresh finds refused.
  function store.on_revoke()
    self:command("DEL", key)
    store.token = nil
  end

  --- Runs fn while holding the refresh lock of this token across processes and
  -- hosts; fn's results, or nil, err when Redis fails (kind redis_unavailable)
  -- or the lock stays taken longer than `wait` (kind refresh_in_progress).
  -- `sleep(seconds)` waits between polls (oauth.lua passes its client's).
  function store.lock(fn, sleep)
    sleep = sleep or core.sleep
    local value = core.random_token(16)
    local deadline = core.now() + wait
    local pause = 0.005
    while true do
      local ok, err = self:command("SET", lock_key, value, "NX", "PX", lock_ms)
      if ok == nil then return nil, err end
      if ok then break end
      if core.now() >= deadline then
        return fail("refresh_in_progress", ("another process has held the refresh lock of '%s' for more than %g s")
          :format(name, wait))
      end
      sleep(pause)
      pause = math.min(pause * 2, 0.05)
    end
    local r = compat.pack(pcall(fn))
    -- a failed release leaves the lock to its expiry (lock_ttl): never wrong, only slower
    self:eval(RELEASE_LOCK, { lock_key }, { value })
    if not r[1] then error(r[2], 0) end
    return compat.unpack(r, 2, r.n)
  end

  return store
end

--- shared:seen([{ ttl = 60 }]): see the header; `ttl` is the claim's lifetime
-- (a handler that dies mid-callbacks frees its event after it).
function M.seen(self, opts)
  opts = options("seen", opts, { ttl = true })
  local claim_ms = ms(opts.ttl or CLAIM_TTL)
  local function k(key)
    if type(key) ~= "string" then error("pipedrive.redis: seen: the key must be a string", 3) end
    return self:key("seen", key)
  end
  return {
    --- true when the event was handled, false when not, nil, err when Redis fails.
    check = function(key)
      local v, err = self:command("GET", k(key))
      if v == nil then return nil, err end
      return v == "seen"
    end,
    --- true (ours now) | false, "seen" | false, "busy" | nil, err.
    claim = function(key)
      local r, err = self:eval(CLAIM, { k(key) }, { claim_ms })
      if r == nil then return nil, err end
      if r == 1 then return true end
      return false, r == 2 and "seen" or "busy"
    end,
    --- Records a handled event for `ttl` seconds: true or nil, err.
    mark = function(key, ttl)
      local ok, err = self:command("SET", k(key), "seen", "PX", ms(ttl or EVENT_TTL))
      if not ok then return nil, err end
      return true
    end,
    --- Gives a claimed event back (a redelivery runs it): true or nil, err.
    release = function(key)
      local ok, err = self:eval(RELEASE_CLAIM, { k(key) }, {})
      if ok == nil then return nil, err end
      return true
    end,
  }
end

--- Puts the methods on the redis object's class table.
function M.attach(class)
  class.token_store = M.token_store
  class.seen = M.seen
  return class
end

return M
