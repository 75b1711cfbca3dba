--- Webhook triggers: Pipedrive events delivered to Lua callbacks.
--
--   local triggers = pd.triggers{ url = "https://my.host/pipedrive", user = "hook", password = "s3cret" }
--   triggers:on("deal.added", function(ev) print(ev.id, ev.current.title) end)
--   assert(triggers:enable())            -- Pipedrive's webhooks now match the callbacks
--   triggers:serve{ port = 8080 }        -- or call triggers:handle(req) from any HTTP server
--
-- The package, one concern per module (this file is the object and its methods):
--   * event.lua: normalize(payload), a v1 or v2 webhook body -> one event shape
--     { event, object, action, id, current, previous, changed, meta, raw };
--     the vocabulary of subscription keys.
--   * seen.lua: the seen memory (bounded, with a TTL), the default de-duplication store.
--   * callbacks.lua: registration, the lookup per event, the webhooks needed.
--   * handler.lua: handle(req), one HTTP request -> status, headers, body.
--   * reconcile.lua: enable()/disable(), the user's webhooks made to match the callbacks.
--   * listener.lua: listen()/serve()/stop()/close() on pipedrive.httpd.
--   * state.lua: the private state per object and its log lines.
--
-- Secrets: the password and the Authorization value derived from it live in the
-- private state (not in the object), and are scrubbed from every log line and
-- error this package produces (pipedrive.redact's scrubber).
local compat = require "pipedrive.compat"
local core = require "pipedrive.core"
local event = require "pipedrive.triggers.event"
local seen_mod = require "pipedrive.triggers.seen"
local callbacks = require "pipedrive.triggers.callbacks"
local handler = require "pipedrive.triggers.handler"
local reconcile = require "pipedrive.triggers.reconcile"
local listener = require "pipedrive.triggers.listener"
local state = require "pipedrive.triggers.state"

local M = {
  OBJECTS = event.OBJECTS, ACTIONS = event.ACTIONS, parse_key = event.parse_key, to_id = event.to_id,
  epoch = event.epoch, normalize = event.normalize, memory = seen_mod.memory,
}

local Triggers = {}
Triggers.__index = Triggers
Triggers.__name = "pipedrive.triggers"

-- A URL without user:password@, query or fragment (for display: some put a
-- token there).
local function display_url(url)
  local u = url and core.url_parse(url)
  if not u then return "no url" end
  return u.origin .. u.path
end

local KNOWN = { url = true, user = true, password = true, version = true, name = true, max_body = true,
                seen = true, dedupe_ttl = true, dedupe_max = true, log = true, clock = true, user_id = true,
                field_names = true, expand = true }

-- An http(s) URL libcurl's parser reads (the one URL parser), of a sane length.
local function check_url(url)
  if type(url) ~= "string" or #url > 2048 then return false end
  local u = core.url_parse(url)
  return u ~= nil and (u.scheme == "http" or u.scheme == "https")
end

-- Raises for a bad option, at the caller of M.new (misuse <- check_* <- M.new <- caller).
local function misuse(message)
  error("pipedrive.triggers: " .. message, 4)
end

local function positive(opts, k, default, integer)
  local v = opts[k]
  if v == nil then return default end
  if type(v) ~= "number" or v <= 0 or (integer and compat.math_type(v) ~= "integer") then
    error(("pipedrive.triggers: %s must be a positive %s"):format(k, integer and "integer" or "number"), 3)
  end
  return v
end

-- Known keys, url, version, name, functions and user_id.
local function check_options(opts)
  if type(opts) ~= "table" then misuse("expected a table of options") end
  for k in pairs(opts) do
    if not KNOWN[k] then misuse(("unknown option '%s'"):format(tostring(k))) end
  end
  if opts.url ~= nil and not check_url(opts.url) then
    misuse("url must be an http(s) URL such as \"https://my.host/pipedrive\"")
  end
  local version = opts.version
  if version ~= nil and version ~= "2.0" and version ~= "1.0" then misuse("version must be \"2.0\" or \"1.0\"") end
  local name = opts.name
  if name ~= nil and (type(name) ~= "string" or not name:find("%S") or #name > 200 or name:find("%c")) then
    misuse("name must be a non-empty string of at most 200 characters")
  end
  for _, k in ipairs({ "log", "clock" }) do
    if opts[k] ~= nil and type(opts[k]) ~= "function" then misuse(("%s must be a function"):format(k)) end
  end
  if opts.user_id ~= nil and compat.math_type(opts.user_id) ~= "integer" then misuse("user_id must be an integer") end
end

-- HTTP Basic credentials: both or neither, usable in a header.
local function check_credentials(user, password)
  if (user == nil) ~= (password == nil) then misuse("give both user and password (HTTP Basic auth), or neither") end
  if user == nil then return end
  if type(user) ~= "string" or user == "" or user:find("[:%c]") then
    misuse("user must be a non-empty string without ':' or control characters")
  end
  if type(password) ~= "string" or password == "" or password:find("%c") then
    misuse("password must be a non-empty string without control characters")
  end
end

-- A user's seen store: check and mark, optionally claim and release.
local function check_store(seen)
  if seen == nil then return end
  if type(seen) ~= "table" or type(seen.check) ~= "function" or type(seen.mark) ~= "function" then
    misuse("seen must be a table { check = function(key), mark = function(key, ttl) }")
  end
  if (seen.claim ~= nil and type(seen.claim) ~= "function")
    or (seen.release ~= nil and type(seen.release) ~= "function") then
    misuse("seen.claim and seen.release must be functions")
  end
end

--- Creates a triggers object. `client` (a pipedrive.new client) is needed by
-- enable/disable only; nil gives a receiver that can handle and serve.
-- opts: url, user, password, version ("2.0"), name ("pipedrive-lua"),
-- max_body (1 MiB), seen ({check, mark}), dedupe_ttl (3600 s),
-- dedupe_max (10000), log (function(line, level)), clock (function -> seconds),
-- user_id (whose permissions filter the events).
function M.new(client, opts, shaper)
  if opts == nil then opts = {} end
  check_options(opts)
  if opts.field_names ~= nil and type(opts.field_names) ~= "boolean" then misuse("field_names must be a boolean") end
  local expand_list
  if opts.expand ~= nil then
    local why
    expand_list, why = require("pipedrive.expand").check(opts.expand)
    if not expand_list then misuse(why) end
  end
  local user, password = opts.user, opts.password
  check_credentials(user, password)
  check_store(opts.seen)
  -- one clock: core.now (monotonic) for expiry, deadlines and durations,
  -- unless the user gives the expiry clock
  local clock = opts.clock or core.now
  local self = setmetatable({}, Triggers)
  local st = {
    client = client, url = opts.url, user = user, version = opts.version or "2.0", name = opts.name or "pipedrive-lua",
    max_body = positive(opts, "max_body", 1048576, true),
    ttl = positive(opts, "dedupe_ttl", 3600),
    max = positive(opts, "dedupe_max", 10000, true),
    log = opts.log, clock = clock, wall = core.now, user_id = opts.user_id,
    handlers = {}, by_event = {}, order = {}, inflight = {}, secrets = {},
  }
  -- field_names / expand: each event's current and previous reshaped by the
  -- client (extras.lua) before the callbacks run.
  if shaper and (opts.field_names or expand_list) then
    local named = opts.field_names == true
    st.shape = function(ev) return shaper(ev, named, expand_list) end
  end
  st.memory = seen_mod.memory(st.max, clock)
  st.partial = seen_mod.memory(st.max, clock)
  st.seen = opts.seen or seen_mod.store(st.memory)
  if user then
    local cred = core.base64_encode(user .. ":" .. password)
    st.password = password
    st.expected = "Basic " .. cred
    st.secrets = { password, cred }
  end
  state.bind(self, st)
  return self
end


--- Registers fn(ev) for an event key: "deal.added", "deal.updated",
-- "person.*", "*.deleted", "*" (v2 words such as "deal.create" work too).
-- Unknown objects or actions for the webhook version raise. Registering the
-- same function twice for a key has no effect. Returns the triggers object.
function Triggers:on(key, fn)
  local st = state.of(self)
  local k, err = event.parse_key(key, st.version)
  if not k then error("triggers:on: " .. err, 2) end
  if type(fn) ~= "function" then error("triggers:on: expected a function after the event", 2) end
  callbacks.add(st, k, fn)
  return self
end

--- Removes fn from an event key, or every callback of the key without fn.
-- Returns the triggers object.
function Triggers:off(key, fn)
  local st = state.of(self)
  local k, err = event.parse_key(key, st.version)
  if not k then error("triggers:off: " .. err, 2) end
  callbacks.remove(st, k, fn)
  return self
end

--- The webhooks the callbacks need, in the version's words, without any that
-- another one covers: a list of { event_action, event_object } sorted by object, action.
function Triggers:subscriptions()
  return callbacks.subscriptions(state.of(self))
end

--- Handles one webhook request, from any HTTP server:
-- req = { method, headers (any case), body, remote_addr (optional, for logs) }.
-- Returns status, headers, body. Never raises: an internal failure answers 500.
-- opts.defer = function(job): answer 200 ("accepted") once the request is checked
-- and the event claimed, and hand job(premature) to the host to run the callbacks
-- later (pipedrive.ngx.webhook passes ngx.timer.at).
function Triggers:handle(req, opts)
  local st = state.of(self)
  if opts ~= nil and (type(opts) ~= "table" or (opts.defer ~= nil and type(opts.defer) ~= "function")) then
    error("triggers:handle: opts must be a table { defer = function(job) }", 2)
  end
  return handler.handle(st, req, opts)
end

-- The client enable/disable work with; raises when there is none or no url.
local function need_client(st, what)
  if type(st.client) ~= "table" or type(st.client.webhooks) ~= "table" then
    error(("triggers:%s: these triggers have no client (make them with pd.triggers{...})"):format(what), 3)
  end
  if not st.url then
    error(("triggers:%s: no url: give url to pd.triggers{...} or call triggers:listen first"):format(what), 3)
  end
  return st.client
end

--- Makes the user's webhooks match the callbacks: creates those missing,
-- keeps those that already fit, then deletes our stale ones (same url, name
-- starting with our prefix). Returns true, { created, kept, deleted } or
-- nil, err (then nothing of ours was deleted that is still wanted; call again).
function Triggers:enable()
  local st = state.of(self)
  return reconcile.enable(st, need_client(st, "enable"))
end

--- Deletes our webhooks (same url, name starting with our prefix). Returns
-- true, { deleted } or nil, err.
function Triggers:disable()
  local st = state.of(self)
  return reconcile.disable(st, need_client(st, "disable"))
end

--- Starts listening (without serving yet): opts = { host = "127.0.0.1",
-- port = 0 (any free port), path (default: the path of url, else "/"),
-- connection_timeout = 10, connection_limit = 256, request_timeout = 10,
-- per_ip_limit = 32: pipedrive.httpd's limits, README "Webhook triggers" }. Returns port, url
-- (the url given to pd.triggers, or, when none was, this listener's own
-- http://host:port/path, which enable() then subscribes) or nil, err.
function Triggers:listen(opts)
  local port, url = listener.listen(state.of(self), opts, 3)
  return port, url
end

--- Serves webhook requests until triggers:stop() (e.g. from a callback),
-- `timeout` seconds, or `stop_when()` (also accepted as ["until"]) returns
-- true. Listens first (with these opts, see listen) unless already listening;
-- a listener opened here is closed on return. Callbacks run inside, one
-- request at a time; libmicrohttpd keeps the other connections waiting.
-- Returns true, or nil, err when it could not listen.
function Triggers:serve(opts)
  local ok, err = listener.serve(state.of(self), opts, 3)
  return ok, err
end

--- Makes serve() return once the request under way is answered.
function Triggers:stop()
  state.of(self).stopping = true
end

--- Stops listening and drops open connections. Idempotent.
function Triggers:close()
  listener.close(state.of(self))
end

--- The port listened on, or nil.
function Triggers:port()
  local st = state.of(self)
  return st.server and st.server:port() or nil
end

--- The subscription URL (given, or made by listen), or nil.
function Triggers:url()
  return state.of(self).url
end

--- Handled events remembered by the default store (for tests and monitoring).
function Triggers:remembered()
  return state.of(self).memory:size()
end

-- One line without secrets: version, url without credentials or query, callbacks, auth, port.
Triggers.__tostring = function(self)
  local st = state.peek(self)
  if not st then return "pipedrive.triggers" end
  local n = callbacks.count(st)
  return ("pipedrive.triggers (version %s, %s, %d callback%s%s%s)"):format(st.version, display_url(st.url), n,
    n == 1 and "" or "s", st.expected and ", basic auth" or "",
    st.server and (", listening on port " .. st.server:port()) or "")
end
Triggers.__close = function(self) self:close() end

return M
