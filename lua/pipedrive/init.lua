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

--- A Redis shared by workers and hosts (token stores, webhook de-duplication,
-- pacing): see pipedrive.redis. Loaded on first use (it needs pipedrive.hiredis).
function M.redis(opts)
  return require("pipedrive.redis").new(opts)
end

local default

--- A token store in a JSON file, shared safely by processes: see pipedrive.token_file.
M.token_file = require("pipedrive.token_file").open

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
