--- The sandbox as a program: command line, HTTP server loop.
--
--   pipedrive-sandbox --port 0 --port-file /tmp/port --api-token T
--   lua5.4 -e "os.exit(require('pipedrive.sandbox.server').main(arg))" -- --help
local compat = require "pipedrive.compat"
local sandbox = require "pipedrive.sandbox"
local time = require "pipedrive.sandbox.time"

local M = {}

M.USAGE = [[
Usage: pipedrive-sandbox [options]

A local, stateful simulator of Pipedrive's REST API (v1 under /v1 and /api/v1,
v2 under /api/v2) for tests. Data lives in memory and starts as a seeded
company: 3 users, 2 pipelines with their stages, filters, lead labels and
currencies, and no deals, persons, organizations or leads.

Options:
  --host ADDR          address to listen on (default 127.0.0.1); an address
                       other than loopback needs --allow-remote
  --allow-remote       allow a non-loopback --host (the /_sandbox/ admin
                       endpoints still answer loopback clients only)
  --port N             port to listen on; 0 picks a free one (default 0)
  --port-file FILE     write the bound port to FILE once listening
                       (written to FILE.tmp, then renamed)
  --api-token T        the API token clients must send (default "sandbox-token"),
                       as the x-api-token header, "Authorization: Bearer T",
                       or the legacy api_token query parameter
  --fixtures N         create N deals at start (and on reset)
  --custom-fields      also seed custom fields (one of each type on deals, a few
                       on persons and organizations; see GET /v1/dealFields)
  --exit-after SECONDS stop after this many seconds (a safety net for tests)
  --omit-nulls         leave out a property that has no value where the OpenAPI
                       schema does not allow null (default: write null, as
                       Pipedrive itself does; --real-nulls names that default)
  --webhook-retry-delays LIST
                       seconds to wait before each retry of a failed webhook
                       delivery, comma-separated (default 3,30,150: four
                       attempts); "" sends each event once
  --webhook-duplicate  send every successfully delivered webhook event a
                       second time, as real networks sometimes do
  --oauth-client ID:SECRET
                       register an OAuth app (repeatable); without one the
                       /oauth/ endpoints answer 404
  --oauth-auto-approve GET /oauth/authorize redirects at once with a code
                       (default: a consent page with Approve and Deny buttons)
  --token-ttl SECONDS  lifetime of OAuth access tokens (default 3600)
  --code-ttl SECONDS   lifetime of authorization codes (default 300, as
                       Pipedrive's 5 minutes)
  --fault RULE_JSON    inject a fault (repeatable), e.g.
                       '{"match":{"method":"POST"},"fault":"status","status":429,"retry_after":1,"count":2}';
                       fault: status, drop, delay, html403, truncate, invalid_json,
                       cut (drop in the middle of the body, "bytes"), drip (slow
                       body, "bytes" per "interval" s), redirect ("location");
                       "when":"after" processes the request first (see
                       GET|POST|DELETE /_sandbox/faults)
  --rate-limit N       enforce a burst limit of N requests per 2-second window
                       per token (search endpoints: --search-rate-limit, default
                       10): a spent window answers 429 with Retry-After. Without
                       it the x-ratelimit-* headers are sent (N = 80) but never
                       enforced (also POST|DELETE /_sandbox/rate_limit)
  --search-rate-limit N  the search endpoints' own window (default 10)
  --latency SECONDS    hold every API answer back this long (e.g. 0.05), without
                       blocking other requests: a remote Pipedrive's round trip,
                       for concurrency tests and benchmarks
  --quiet              do not print the listening line
  -h, --help           show this text

Webhooks: POST /v1/webhooks subscribes a URL to events (version "2.0" by
default, "1.0" for the v1 payload format). Creating, updating and deleting
deals, persons, organizations, activities and leads (v2 webhooks only)
through the API sends each matching webhook a JSON POST, with HTTP Basic
auth when the webhook has http_auth_user/http_auth_password. Deliveries go
out after the API call is answered, from background curl processes; a 2xx
answer within 10 s is a success, anything else is retried (see
--webhook-retry-delays) and then dropped.

OAuth (with --oauth-client): the sandbox also plays oauth.pipedrive.com.
GET /oauth/authorize?client_id=..&redirect_uri=..&state=..[&scope=..] leads to
redirect_uri?code=..&state=.. (or error=access_denied); POST /oauth/token
(HTTP Basic client auth, form body) takes grant_type=authorization_code
(code, redirect_uri) and grant_type=refresh_token (refresh_token; every refresh
also replaces the refresh token); POST /oauth/revoke takes token. Token answers
name api_domain, the sandbox's own URL; API calls there take
"Authorization: Bearer <access_token>" beside the API token.

Admin endpoints (no token, loopback clients only):
  GET /_sandbox/health, POST /_sandbox/reset (also removes webhooks and
  pending deliveries), GET /_sandbox/state, GET|DELETE /_sandbox/requests,
  GET|DELETE /_sandbox/deliveries (webhook delivery attempts: webhook_id,
  event_id, object, action, attempt, status, ok, time), POST /_sandbox/bulk
  {"object":"deal","count":N,"title_prefix":"Bulk"}, POST /_sandbox/shutdown,
  GET /_sandbox/oauth (exchanges, refreshes, revokes, failed_refreshes,
  active_access_tokens), POST /_sandbox/oauth/expire (ends every access
  token now; /_sandbox/reset also forgets all OAuth codes and tokens),
  GET|POST /_sandbox/latency ({"seconds":0.05}), GET|DELETE
  /_sandbox/concurrency (held answers, peak_in_flight),
  GET /_sandbox/faults (rules left, hits), POST /_sandbox/faults (a JSON
  list of rules, added after the present ones), DELETE /_sandbox/faults,
  GET /_sandbox/rate_limit (limits, whether enforced, 429s given),
  POST /_sandbox/rate_limit {"limit":N,"search_limit":M} (enforce),
  DELETE /_sandbox/rate_limit (headers only again)

It exits on SIGTERM or SIGINT.
]]

local FLAGS = { allow_remote = true, quiet = true, real_nulls = true, omit_nulls = true, help = true, webhook_duplicate = true,
                oauth_auto_approve = true, custom_fields = true }
local VALUES = { host = true, port = true, port_file = true, api_token = true, fixtures = true, exit_after = true,
                 webhook_retry_delays = true, oauth_client = true, token_ttl = true, code_ttl = true,
                 fault = true, rate_limit = true, search_rate_limit = true, latency = true }

--- argv -> options table, or nil and a message.
function M.parse_args(argv)
  local o = { host = "127.0.0.1", port = 0, api_token = sandbox.DEFAULT_TOKEN }
  local i = 1
  while argv[i] ~= nil do
    local a = argv[i]
    i = i + 1
    if a == "-h" then a = "--help" end
    local name, inline = a:match("^%-%-([%w%-]+)=(.*)$")
    if not name then name = a:match("^%-%-([%w%-]+)$") end
    if not name then return nil, ("unexpected argument '%s'"):format(a) end
    name = name:gsub("%-", "_")
    if FLAGS[name] then
      if inline then return nil, ("--%s takes no value"):format(name:gsub("_", "-")) end
      o[name] = true
    elseif VALUES[name] then
      local v = inline
      if v == nil then
        v = argv[i]
        i = i + 1
      end
      if v == nil then return nil, ("--%s needs a value"):format(name:gsub("_", "-")) end
      if name == "oauth_client" then
        local id, secret = v:match("^([^:]+):(.+)$")
        if not id then return nil, "--oauth-client must be ID:SECRET, both non-empty" end
        o.oauth_clients = o.oauth_clients or {}
        if o.oauth_clients[id] then return nil, "--oauth-client: client id given twice" end
        o.oauth_clients[id] = secret
      elseif name == "fault" then
        local rule = require("pipedrive.sandbox.json").decode(v)
        local faults = require "pipedrive.sandbox.faults"
        local ok, ferr = faults.check(rule)
        if not ok then return nil, "--fault: " .. (type(rule) == "table" and ferr or "not a JSON object") end
        o.faults = o.faults or {}
        o.faults[#o.faults + 1] = rule
      else
        o[name] = v
      end
    else
      return nil, ("unknown option '%s'"):format(a)
    end
  end
  local function int(name, min, max)
    local v = o[name]
    if v == nil or compat.math_type(v) == "integer" then return true end
    local n = tostring(v):match("^%d+$") and compat.tointeger(tonumber(v))
    if not n or n < min or n > max then return false end
    o[name] = n
    return true
  end
  if not int("port", 0, 65535) then return nil, "--port must be an integer from 0 to 65535" end
  if not int("fixtures", 0, 10000000) then return nil, "--fixtures must be a non-negative integer" end
  if not int("rate_limit", 1, 1000000) then return nil, "--rate-limit must be a positive integer" end
  if not int("search_rate_limit", 1, 1000000) then return nil, "--search-rate-limit must be a positive integer" end
  if o.exit_after ~= nil then
    local n = tonumber(o.exit_after)
    if not n or n <= 0 then return nil, "--exit-after must be a positive number of seconds" end
    o.exit_after = n
  end
  if o.latency ~= nil then
    local n = tonumber(o.latency)
    if not n or n < 0 or n > 60 then return nil, "--latency must be a number of seconds from 0 to 60" end
    o.latency = n > 0 and n or nil
  end
  for _, name in ipairs({ "token_ttl", "code_ttl" }) do
    if o[name] ~= nil then
      local n = tonumber(o[name])
      if not n or n <= 0 or n ~= n or n == math.huge then
        return nil, ("--%s must be a positive number of seconds"):format(name:gsub("_", "-"))
      end
      o[name] = compat.tointeger(n) or n
    end
  end
  if o.webhook_retry_delays ~= nil and type(o.webhook_retry_delays) == "string" then
    local delays = {}
    for part in o.webhook_retry_delays:gmatch("[^,]+") do
      local n = tonumber((part:gsub("^%s+", ""):gsub("%s+$", "")))
      if not n or n < 0 or n ~= n or n == math.huge then
        return nil, "--webhook-retry-delays must be a comma-separated list of seconds, such as 3,30,150"
      end
      delays[#delays + 1] = n
    end
    if #delays > 10 then return nil, "--webhook-retry-delays takes at most 10 delays" end
    o.webhook_retry_delays = delays
  end
  if o.api_token == "" then return nil, "--api-token must not be empty" end
  if o.host == "localhost" then o.host = "127.0.0.1" end
  return o
end

local function is_loopback_host(h)
  return h:match("^127%.%d+%.%d+%.%d+$") ~= nil or h == "::1"
end

--- Writes the port to `file` atomically (a temporary name, then rename).
function M.write_port_file(file, port)
  local tmp = file .. ".tmp"
  local f, err = io.open(tmp, "wb")
  if not f then return nil, err end
  f:write(("%d\n"):format(port))
  f:close()
  local ok, rerr = os.rename(tmp, file)
  if not ok then
    os.remove(tmp)
    return nil, rerr
  end
  return true
end

--- Runs the sandbox until SIGTERM, /_sandbox/shutdown or --exit-after.
-- Returns the process exit status (0 fine, 1 could not start, 2 usage).
function M.main(argv)
  argv = argv or {}
  local o, err = M.parse_args(argv)
  if not o then
    io.stderr:write("pipedrive-sandbox: ", err, "\n\n", M.USAGE)
    return 2
  end
  if o.help then
    io.stdout:write(M.USAGE)
    return 0
  end
  if not is_loopback_host(o.host) and not o.allow_remote then
    io.stderr:write(("pipedrive-sandbox: refusing to listen on %s, which is not a loopback address;"
      .. " pass --allow-remote if you mean it\n"):format(o.host))
    return 2
  end
  local httpd = require "pipedrive.sandbox.httpd"
  local app = sandbox.new{ api_token = o.api_token, fixtures = o.fixtures, custom_fields = o.custom_fields,
                           omit_nulls = o.omit_nulls,
                           webhook_retry_delays = o.webhook_retry_delays, webhook_duplicate = o.webhook_duplicate,
                           oauth_clients = o.oauth_clients, token_ttl = o.token_ttl, code_ttl = o.code_ttl,
                           oauth_auto_approve = o.oauth_auto_approve, faults = o.faults,
                           rate_limit = o.rate_limit, search_rate_limit = o.search_rate_limit,
                           enforce_rate = o.rate_limit ~= nil, latency = o.latency }
  local srv, lerr = httpd.listen{
    host = o.host, port = o.port, max_body = 16 * 1024 * 1024,
    -- every client of a local simulator shares one address, and held answers (--latency)
    -- keep their connections: no per-address cap here
    per_ip_limit = 0,
    handler = function(req) return app:handle(req) end,
  }
  if not srv then
    io.stderr:write("pipedrive-sandbox: ", tostring(lerr), "\n")
    return 1
  end
  app.server = srv -- for /_sandbox/concurrency
  local port = srv:port()
  if o.port_file then
    local ok, werr = M.write_port_file(o.port_file, port)
    if not ok then
      io.stderr:write("pipedrive-sandbox: cannot write the port file: ", tostring(werr), "\n")
      srv:close()
      return 1
    end
  end
  if not o.quiet then
    local shown = o.host:find(":", 1, true) and ("[" .. o.host .. "]") or o.host
    io.stdout:write(("pipedrive sandbox listening on http://%s:%d\n"):format(shown, port))
    io.stdout:flush()
  end
  -- Requests are served in srv:step; webhook deliveries start and are
  -- collected between steps (app:tick), so the loop wakes up as often as
  -- they need (app:wait) and never waits for a receiver.
  local deadline = o.exit_after and (time.now() + o.exit_after)
  while not app.stop_requested do
    local wait = app:wait(0.5)
    if deadline then
      local left = deadline - time.now()
      if left <= 0 then break end
      if left < wait then wait = left end
    end
    srv:step(wait)
    app:tick()
  end
  app:close()
  srv:close()
  return 0
end

return M
