--- pipedrive: a Pipedrive CRM client for Lua with a C core.
--
--   local pipedrive = require "pipedrive"
--   local pd = pipedrive.new{ api_token = "...", base_url = "https://yourcompany.pipedrive.com" }
--   local deals, info = pd.deals.list{ status = "open" }
--
-- Module-level resource tables (`pipedrive.deals.search{...}`) use a default
-- client made by `pipedrive.configure{...}`, or on first use from the
-- environment (PIPEDRIVE_API_TOKEN, PIPEDRIVE_BASE_URL). Requiring the module
-- does no I/O and reads no environment.
local core = require "pipedrive.core"
local client = require "pipedrive.client"
local operations = require "pipedrive.operations"

local M = {
  _VERSION = client.VERSION,
  --- JSON null: decoded nulls are this value; send it to set a field to null.
  null = core.null,
  --- Marks a table as a JSON array, so that an empty one is sent as [].
  array = core.array,
  --- The declarative table of operations (read-only use).
  operations = operations,
  new = client.new,
}

local default

local function file_error(kind, message)
  return nil, setmetatable({ kind = kind, message = message }, core.error_mt)
end

--- A token store in a JSON file: returns { token, on_token, on_revoke } to
-- put in pipedrive.new's `oauth` table, or nil, err when the file exists but
-- cannot be trusted (others may read it, or it is not a saved token); then
-- nothing is overwritten. Writes are atomic (temporary file, then rename)
-- with mode 0600, so a crash never leaves half a token.
function M.token_file(path)
  if type(path) ~= "string" or path == "" then error("pipedrive.token_file: path must be a string", 2) end
  local token
  local info = core.file_info(path)
  if info then
    if not info.is_regular then return file_error("token_file", path .. " is not a regular file") end
    if info.mode % 64 ~= 0 then
      return file_error("token_file", ("%s can be read by others (mode %o): chmod 600 it or remove it")
        :format(path, info.mode))
    end
    local text, rerr = core.read_file(path, 65536)
    if not text then return file_error("token_file", rerr) end
    local t = core.json_decode(text)
    if type(t) ~= "table" or type(t.access_token) ~= "string" then
      return file_error("token_file", path .. " does not hold a saved token (broken JSON?); remove it to log in again")
    end
    token = t
  end
  local store = { path = path, token = token }
  function store.on_token(t)
    local ok, werr = core.write_file_atomic(path, core.json_encode(t), 384)
    if not ok then error("pipedrive.token_file: cannot save the token: " .. tostring(werr), 0) end
    store.token = t
  end
  function store.on_revoke()
    os.remove(path)
    store.token = nil
  end
  return store
end

--- Sets the module-level default client; returns it.
function M.configure(opts)
  local c = client.new(opts)
  if default then default.close() end
  default = c
  return c
end

local function default_client()
  if not default then
    local token = os.getenv("PIPEDRIVE_API_TOKEN")
    if not token or token == "" then
      error("pipedrive: no default client: call pipedrive.configure{ api_token = ... }"
        .. " or set PIPEDRIVE_API_TOKEN", 3)
    end
    default = client.new{ api_token = token, base_url = os.getenv("PIPEDRIVE_BASE_URL") }
  end
  return default
end

--- pd.parallel on the default client.
function M.parallel(fns, opts)
  return default_client().parallel(fns, opts)
end

--- pd.call on the default client.
function M.call(operation_id, args)
  return default_client().call(operation_id, args)
end

-- pipedrive.deals, pipedrive.notes...: the default client's resources, made on first use.
setmetatable(M, {
  __index = function(t, rname)
    if type(rname) ~= "string" or not operations.has(rname) then return nil end
    local r = setmetatable({}, {
      __index = function(_, fname)
        local fn = default_client()[rname][fname]
        if fn == nil then error(("pipedrive.%s has no function '%s'"):format(rname, tostring(fname)), 2) end
        return fn
      end,
    })
    rawset(t, rname, r)
    return r
  end,
})

return M
