--- pipedrive.token_file(path): an OAuth token store in a JSON file, for
-- pipedrive.new's `oauth.store`, safe to share between processes of one user
-- on one host.
--
-- The file is trusted only when it is a regular file (not a symbolic link),
-- owned by the current user, with mode 0600 (no group or other bits), in a
-- directory owned by the current user or root that nobody else can write to
-- (a sticky directory such as /tmp is accepted: there others can neither
-- rename nor remove our file). The checks are made by core.open_private on
-- the open descriptors (O_NOFOLLOW, fstat), not on names. Its token must be
-- well formed: access_token (and refresh_token when present) printable ASCII
-- without spaces, the other fields of the right types without control
-- characters; a file that breaks a rule is refused and never overwritten.
--
-- Sharing: Pipedrive rotates the refresh token on every refresh, so a process
-- that refreshes with a token another process already used gets invalid_grant.
-- The store gives pipedrive.oauth a `lock(fn)` (flock on the file, across
-- processes) and a `reload()`: under the lock the file is read again before
-- refreshing, and a token another process saved meanwhile is adopted instead
-- of refreshing; after an invalid_grant the file is read again too.
--
-- Saving is atomic (temporary file, fsync, rename; mode 0600). A token that
-- cannot be saved makes on_token return nil, err: the new token stays in this
-- process's memory and the file keeps the old one.
local compat = require "pipedrive.compat"
local core = require "pipedrive.core"

local M = {}

local MAX_BYTES = 65536   -- a token file is a few hundred bytes
local LOCK_TIMEOUT = 30   -- seconds to wait for another process's refresh
local ENOENT = 2

local function file_error(message)
  return nil, setmetatable({ kind = "token_file", message = message }, core.error_mt)
end

-- A token or similar credential: printable ASCII, no spaces, not empty.
local function credential(s)
  return type(s) == "string" and s ~= "" and not s:find("[^\33-\126]")
end

-- Which field of a decoded token file is malformed, or nil when it is fine.
local function malformed(t)
  if type(t) ~= "table" or t.access_token == nil then return "" end
  if not credential(t.access_token) then return "access_token" end
  if t.refresh_token ~= nil and not credential(t.refresh_token) then return "refresh_token" end
  for _, k in ipairs({ "token_type", "scope", "api_domain" }) do
    local v = t[k]
    if v ~= nil and (type(v) ~= "string" or v:find("%c")) then return k end
  end
  for _, k in ipairs({ "expires_at", "expires_in" }) do
    local v = t[k]
    if v ~= nil and (type(v) ~= "number" or v ~= v or v == math.huge or v == -math.huge) then return k end
  end
  return nil
end

-- The token in an open private file, or nil, message.
local function read_token(h, path)
  local text, err = h:read(MAX_BYTES)
  if not text then return nil, err end
  local t = core.json_decode(text)
  local bad = malformed(t)
  if bad == "" then
    return nil, path .. " does not hold a saved token (broken JSON?); remove it to log in again"
  elseif bad then
    return nil, ("%s holds a malformed token (field %s: wrong type or control characters); remove it to log in again")
      :format(path, bad)
  end
  return t
end

-- Opens path (locked when lock_timeout is given) and reads its token.
-- Returns token (nil when there is no file), or false, message.
local function load_file(path, lock_timeout)
  local h, err, errno = core.open_private(path, lock_timeout)
  if not h then
    if errno == ENOENT then return nil end
    return false, err
  end
  local t, rerr = read_token(h, path)
  h:close()
  if not t then return false, rerr end
  return t
end

--- Opens the store: nil, err (kind "token_file") when the file exists but
-- cannot be trusted or does not hold a well-formed token, or when its
-- directory cannot be trusted; nothing is overwritten then. A missing file is
-- fine (no token yet: log in). opts.lock_timeout: seconds to wait for another
-- process's refresh (default 30).
function M.open(path, opts)
  if type(path) ~= "string" or path == "" then error("pipedrive.token_file: path must be a string", 2) end
  if opts ~= nil and type(opts) ~= "table" then error("pipedrive.token_file: opts must be a table", 2) end
  local lock_timeout = opts and opts.lock_timeout or LOCK_TIMEOUT
  if type(lock_timeout) ~= "number" or lock_timeout < 0 then
    error("pipedrive.token_file: opts.lock_timeout must be a number of seconds", 2)
  end
  local token, err = load_file(path)
  if token == false then return file_error(err) end

  local store = { path = path, token = token }
  local seen = token and token.access_token -- the file's token when this store last read or wrote it
  local held                                -- the locked file while lock(fn) runs

  --- The token in the file when another process saved a new one since this
  -- store last read or wrote it; nil otherwise (no change, no file, or a file
  -- that is no longer trusted: the token in memory is kept then).
  function store.reload()
    local t
    if held then
      t = read_token(held, path)
    else
      t = load_file(path)
    end
    if not t or t.access_token == seen then return nil end
    seen, store.token = t.access_token, t
    return t
  end

  --- Saves a new token: true, or nil, err when it cannot be written (the
  -- file then keeps its old contents).
  function store.on_token(t)
    local ok, werr = core.write_file_atomic(path, core.json_encode(t), 384)
    if not ok then
      return file_error("cannot save the token (kept in memory for this process only): " .. tostring(werr))
    end
    seen, store.token = t.access_token, t
    return true
  end

  function store.on_revoke()
    os.remove(path)
    seen, store.token = nil, nil
  end

  --- Runs fn while holding the file's lock (flock), so that one process at a
  -- time refreshes; returns fn's results, or nil, err when the lock cannot be
  -- had. Without a file there is nothing to share and fn runs at once.
  function store.lock(fn)
    if held then return fn() end
    local h, lerr, errno = core.open_private(path, lock_timeout)
    if not h then
      if errno == ENOENT then return fn() end
      return file_error(lerr)
    end
    held = h
    local r = compat.pack(pcall(fn))
    held = nil
    h:close()
    if not r[1] then error(r[2], 0) end
    return compat.unpack(r, 2, r.n)
  end

  return store
end

return M
