--- OAuth 2.0 (authorization code) for a client: authorize URL, code exchange,
-- refresh, revoke, and a loopback login for scripts.
--
-- The protocol work (URLs, form bodies, Basic client authentication, token
-- response parsing, Pipedrive's OAuth errors, expiry arithmetic, random state)
-- is done by the C core; this file keeps the per-client state and decides when
-- to refresh. Tokens and the client secret live only in this closure.
local compat = require "pipedrive.compat"
local core = require "pipedrive.core"

local M = {}

local DEFAULT_OAUTH_URL = "https://oauth.pipedrive.com"
local REFRESH_SKEW = 60      -- refresh this many seconds before expiry
local STATE_TTL = 600        -- an authorize URL's state is accepted this long

local function copy(t)
  if t == nil then return nil end
  local r = {}
  for k, v in pairs(t) do r[k] = v end
  return r
end

local function fail(kind, message, path)
  return nil, setmetatable({ kind = kind, message = message, method = "POST", path = path or "/oauth/token" },
    core.error_mt)
end

--- Checks a saved token table enough to use it.
local function valid_token(t)
  return type(t) == "table" and type(t.access_token) == "string" and t.access_token ~= ""
end

--- Creates the OAuth state of one client.
-- `opts` is pipedrive.new's `oauth` table; `send(req)` performs a request with
-- the client's transport; `oauth_url` overrides Pipedrive's OAuth host;
-- `sleep(seconds)` is the client's wait (a scheduler timer inside a task),
-- handed to a shared store's lock(fn, sleep) for its polling.
function M.new(opts, send, oauth_url, sleep)
  if type(opts) ~= "table" then error("pipedrive.new: oauth must be a table", 3) end
  if opts.store ~= nil then
    -- A ready store such as pipedrive.token_file(path): its token and hooks.
    local store, o = opts.store, {}
    if type(store) ~= "table" or type(store.on_token) ~= "function" then
      error("pipedrive.new: oauth.store must be a store such as pipedrive.token_file(path)", 3)
    end
    for k, v in pairs(opts) do o[k] = v end
    o.store, o.token = nil, o.token or store.token
    o.on_token, o.on_revoke = o.on_token or store.on_token, o.on_revoke or store.on_revoke
    -- A store shared by processes also gives lock(fn) (one refresh at a time) and
    -- load() (the newest token, read before every call: pipedrive.ngx.token_store)
    -- or reload() (a token another process saved, read under the lock before a
    -- refresh and after invalid_grant: pipedrive.token_file, shared:token_store).
    -- load, reload and lock may give nil, err (a store that cannot be reached:
    -- shared:token_store): the call fails with it and nothing is refreshed blind.
    o.load, o.lock, o.reload = store.load, store.lock, store.reload
    opts = o
  end
  for _, k in ipairs({ "client_id", "client_secret" }) do
    if type(opts[k]) ~= "string" or opts[k] == "" then
      error(("pipedrive.new: oauth.%s must be a non-empty string"):format(k), 3)
    end
  end
  if opts.redirect_uri ~= nil and type(opts.redirect_uri) ~= "string" then
    error("pipedrive.new: oauth.redirect_uri must be a string", 3)
  end
  if opts.on_token ~= nil and type(opts.on_token) ~= "function" then
    error("pipedrive.new: oauth.on_token must be a function(token)", 3)
  end
  if opts.token ~= nil and not valid_token(opts.token) then
    error("pipedrive.new: oauth.token must be a token table with an access_token", 3)
  end
  local known = { client_id = true, client_secret = true, redirect_uri = true, token = true, on_token = true,
                  on_revoke = true, skew = true, scope = true, load = true, lock = true, reload = true }
  for k in pairs(opts) do
    if not known[k] then error(("pipedrive.new: unknown oauth option '%s'"):format(tostring(k)), 3) end
  end

  local client_id, client_secret, redirect_uri = opts.client_id, opts.client_secret, opts.redirect_uri
  local base = (oauth_url or DEFAULT_OAUTH_URL):gsub("/+$", "")
  local skew = opts.skew or REFRESH_SKEW
  local token = copy(opts.token)
  local broken = false          -- set by invalid_grant: only a new login helps
  local generation = 0          -- bumped on every new token: single-flight refresh
  local refreshing = false
  local lock_holder             -- the coroutine refreshing under a shared store's lock
  local revoked = false         -- set by revoke, for a clearer error afterwards
  local pending_states = {}
  local reload = opts.reload or opts.load
  local self = {}

  -- Takes a new token and hands it to on_token. A token that cannot be saved
  -- (on_token returned nil, err) is still used by this client: true, or nil, err.
  local function publish(t)
    token = t
    generation = generation + 1
    broken, revoked = false, false
    if opts.on_token then
      local ok, err = opts.on_token(copy(t))
      if ok == nil and err ~= nil then
        if getmetatable(err) ~= core.error_mt then
          err = setmetatable({ kind = "token_save", message = tostring(err) }, core.error_mt)
        end
        return nil, err
      end
    end
    return true
  end

  -- Takes the token the shared store holds when it differs from `had` (the
  -- access token this call started with): another process, or another
  -- coroutine of this client, saved it meanwhile. True when taken, false when
  -- not, nil, err when the store cannot be read (then nobody may refresh).
  local function adopt_stored(had)
    if not reload then return false end
    local current, rerr = reload()
    if current == nil and rerr ~= nil then return nil, rerr end
    if valid_token(current) and current.access_token ~= had then
      -- Already ours (another coroutine adopted it while the store yielded, under
      -- nginx): no new generation, or a call that sent it and met a 401 would
      -- take that for a refresh and replay the same token.
      if token and token.access_token == current.access_token and not broken then return true end
      token, generation, broken, revoked = copy(current), generation + 1, false, false
      return true
    end
    return false
  end

  local function token_call(fields)
    fields.oauth_url, fields.client_id, fields.client_secret = base, client_id, client_secret
    local req = core.oauth_token_request(fields)
    local res, err = send(req)
    if not res then return nil, err end
    -- The ctx also names the secrets sent, so that an echo of them is redacted.
    return core.oauth_parse_token(res, os.time(), { grant_type = fields.grant_type,
      refresh_token = fields.refresh_token, code = fields.code, client_secret = client_secret })
  end

  --- The authorize URL to send the user to, and the random state it carries.
  function self.authorize_url(args)
    args = args or {}
    if type(args) ~= "table" then error("pipedrive.oauth.authorize_url: expected a table", 2) end
    local uri = args.redirect_uri or redirect_uri
    if type(uri) ~= "string" then
      error("pipedrive.oauth.authorize_url: field 'redirect_uri' is required (here or in pipedrive.new's oauth)", 2)
    end
    local state = args.state or core.random_token(24)
    local now = os.time()
    for s, t in pairs(pending_states) do
      if now - t > STATE_TTL then pending_states[s] = nil end
    end
    pending_states[state] = now
    local url = core.oauth_authorize_url{ oauth_url = base, client_id = client_id, redirect_uri = uri,
                                          state = state, scope = args.scope or opts.scope }
    return url, state
  end

  --- Exchanges the code from the redirect for a token. `state` must be the one
  -- authorize_url returned (or `expected_state` when another process made it).
  function self.exchange(code, state, args)
    if type(code) ~= "string" or code == "" then error("pipedrive.oauth.exchange: code must be a string", 2) end
    if type(state) ~= "string" then
      error("pipedrive.oauth.exchange: state must be the string authorize_url returned", 2)
    end
    args = args or {}
    local ok = false
    if args.expected_state then
      ok = core.consttime_equal(state, args.expected_state)
    else
      for s, t in pairs(pending_states) do
        if core.consttime_equal(state, s) and os.time() - t <= STATE_TTL then ok = true end
      end
    end
    if not ok then return fail("invalid_state", "the state of the redirect does not match an authorize_url of this client") end
    pending_states[state] = nil
    local uri = args.redirect_uri or redirect_uri
    if type(uri) ~= "string" then error("pipedrive.oauth.exchange: redirect_uri is required", 2) end
    local t, err = token_call{ grant_type = "authorization_code", code = code, redirect_uri = uri }
    if not t then return nil, err end
    local saved, serr = publish(t)
    if not saved then return nil, serr end
    return copy(t)
  end

  --- Refreshes the access token now. Single-flight: when `seen` (a generation
  -- number) is given and a newer token arrived meanwhile, nothing is sent.
  function self.refresh(seen)
    if seen and seen ~= generation and token and not broken then return true end
    local co = coroutine.running() or "main"
    if opts.lock and lock_holder ~= co then
      -- Shared store: one refresh across every process and coroutine; whoever
      -- waited adopts the token the holder stored instead of refreshing with a
      -- refresh token that the holder's refresh has just rotated out.
      local had = token and token.access_token
      return opts.lock(function()
        local adopted, aerr = adopt_stored(had)
        if adopted == nil then return nil, aerr end
        if adopted then return true end
        lock_holder = co
        local ok, r1, r2 = pcall(self.refresh)
        lock_holder = nil
        if not ok then error(r1, 0) end
        return r1, r2
      end, sleep)
    end
    if broken then return fail("reauth_required", "the refresh token was refused: log in again") end
    if not token or type(token.refresh_token) ~= "string" then
      return fail("reauth_required", "no refresh token: log in (pd.oauth.login or exchange) first")
    end
    if refreshing then
      -- Another coroutine of this client is refreshing (its transport yielded):
      -- wait for it instead of sending a second refresh, then use its result.
      if not compat.isyieldable() then
        return fail("refresh_in_progress", "a refresh of this client's token is already running")
      end
      local before = generation
      while refreshing do coroutine.yield() end
      if generation ~= before then return true end
      return self.refresh()
    end
    refreshing = true
    local ok, t, err = pcall(token_call, { grant_type = "refresh_token", refresh_token = token.refresh_token })
    refreshing = false
    if not ok then error(t, 0) end
    if not t then
      if err.kind == "reauth_required" then
        -- Refused: maybe another process (not taking our lock) rotated it and saved
        -- the new token; else only a new login helps (unknown while the store fails).
        local adopted, aerr = adopt_stored(token.access_token)
        if adopted then return true end
        if adopted == nil then return nil, aerr end
        broken = true
      end
      return nil, err
    end
    return publish(t)
  end

  --- Revokes the refresh token (and with it the access token) at Pipedrive.
  function self.revoke()
    if not token then return true end
    local req = core.oauth_revoke_request{
      oauth_url = base, client_id = client_id, client_secret = client_secret,
      token = token.refresh_token or token.access_token,
      token_type_hint = token.refresh_token and "refresh_token" or "access_token",
    }
    local res, err = send(req)
    if not res then return nil, err end
    if res.status < 200 or res.status > 299 then
      return fail(res.status >= 500 and "server" or "oauth", ("revoke answered HTTP %d"):format(res.status),
        "/oauth/revoke")
    end
    token, broken, revoked = nil, false, true
    generation = generation + 1
    if opts.on_revoke then opts.on_revoke() end
    return true
  end

  --- The current token (a copy), for saving elsewhere.
  function self.token() return copy(token) end

  --- For the client: the Authorization header value and the token's
  -- generation, refreshing first when the token is about to expire.
  function self.authorization()
    -- Stuck without a usable token: another process may have logged in or
    -- refreshed since (read only in this state, so a broken client sends nothing).
    if (broken or not token) and opts.reload then
      local adopted, aerr = adopt_stored(token and token.access_token)
      if adopted == nil then return nil, aerr end
    end
    if broken then return fail("reauth_required", "the refresh token was refused: log in again") end
    if opts.load then
      -- a shared store may hold a newer token than ours (another process refreshed it)
      local current, lerr = opts.load()
      if current == nil and lerr ~= nil then return nil, lerr end
      if current and (not token or current.access_token ~= token.access_token) then
        token, generation = current, generation + 1
      end
    end
    if not token then
      return fail("reauth_required", revoked and "the token was revoked: log in again (pd.oauth.login or exchange)"
        or "no OAuth token yet: call pd.oauth.login or pd.oauth.exchange")
    end
    -- The margin never exceeds half the token's lifetime, so short-lived
    -- tokens are not refreshed before every call.
    local margin = skew
    if compat.math_type(token.expires_in) == "integer" then margin = math.min(skew, compat.idiv(token.expires_in, 2)) end
    if core.oauth_needs_refresh(token, os.time(), margin) and token.refresh_token then
      local ok, err = self.refresh(generation)
      if not ok then return nil, err end
    end
    return "Bearer " .. token.access_token, generation
  end

  --- The API host the token belongs to (Pipedrive's `api_domain`), if any.
  function self.api_domain() return token and token.api_domain end

  return self
end

return M
