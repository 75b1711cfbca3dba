-- The seven webhook triggers: registers them, listens, prints every event.
--
-- Against a local sandbox (started and stopped by this script):
--   LUA_PATH='lua/?.lua;lua/?/init.lua;;' LUA_CPATH='build/?.so;;' lua5.4 examples/triggers.lua
-- It prints the sandbox's URL and token and a few curl commands: add and
-- change deals, persons, organizations and activities from another terminal
-- (or run examples/quickstart.lua against the sandbox) and watch the events.
-- Options: --v1 (webhooks of version 1.0), --for SECONDS (stop after that
-- long), --demo (make the changes itself and stop once all seven triggers
-- have fired).
--
-- Against Pipedrive: set PIPEDRIVE_API_TOKEN (and PIPEDRIVE_BASE_URL), and
--   TRIGGERS_URL       the public https URL that reaches this listener
--   TRIGGERS_LISTEN    host:port to listen on (default 127.0.0.1:8080)
--   TRIGGERS_USER, TRIGGERS_PASSWORD   the Basic credentials Pipedrive will send
-- The webhooks stay registered when the script is interrupted (the next run
-- reuses them); `--disable` deletes them.
local pipedrive = require "pipedrive"

local opts = { version = "2.0" }
local i = 1
while arg and arg[i] do
  local a = arg[i]
  if a == "--v1" then
    opts.version = "1.0"
  elseif a == "--demo" then
    opts.demo = true
  elseif a == "--disable" then
    opts.disable = true
  elseif a == "--for" then
    i = i + 1
    opts.seconds = tonumber(arg[i]) or error("--for needs a number of seconds")
  else
    io.stderr:write("usage: examples/triggers.lua [--v1] [--demo] [--for SECONDS] [--disable]\n")
    os.exit(2)
  end
  i = i + 1
end

local token = os.getenv("PIPEDRIVE_API_TOKEN")
local sandbox, pd, user, password, url, listen_host, listen_port
if token and token ~= "" then
  pd = pipedrive.new{ api_token = token, base_url = os.getenv("PIPEDRIVE_BASE_URL") }
  url = os.getenv("TRIGGERS_URL") or error("set TRIGGERS_URL to the public URL of this listener")
  user, password = os.getenv("TRIGGERS_USER"), os.getenv("TRIGGERS_PASSWORD")
  local listen = os.getenv("TRIGGERS_LISTEN") or "127.0.0.1:8080"
  listen_host, listen_port = listen:match("^%[?([^%]]*)%]?:(%d+)$")
  listen_port = tonumber(listen_port) or error("TRIGGERS_LISTEN must be host:port")
else
  sandbox = require("pipedrive.sandbox.spawn").start{
    api_token = "demo-token", args = { "--webhook-retry-delays", "1,3,10" },
  }
  pd = pipedrive.new{ api_token = sandbox.api_token, base_url = sandbox.url }
  user, password = "hook", require("pipedrive.core").random_token(16)
  listen_host, listen_port = "127.0.0.1", 0
end

local triggers = pd.triggers{
  url = url, user = user, password = password, version = opts.version,
  log = function(line, level)
    if level ~= "info" then io.stderr:write(line, "\n") end
  end,
}

if opts.disable then
  local ok, err = triggers:disable()
  if not ok then
    io.stderr:write("disable failed: ", tostring(err), "\n")
    os.exit(1)
  end
  print(("deleted %d webhook(s)"):format(#err.deleted))
  os.exit(0)
end

-- One line per event; for changes, each changed field with old -> new.
local function show(v)
  if v == nil or v == pipedrive.null then return "null" end
  if type(v) == "table" then return "{...}" end
  if type(v) ~= "string" then return tostring(v) end
  return ("%q"):format(tostring(v)):sub(1, 60)
end

local seen = {}
local function print_event(ev)
  local r = ev.current or ev.previous or {}
  local label = r.title or r.name or r.subject
  print(("%-20s id=%s %s  (webhook v%s #%s, attempt %d)"):format(ev.event, tostring(ev.id),
    label and show(label) or "", ev.meta.version, tostring(ev.meta.webhook_id), ev.meta.attempt))
  for _, k in ipairs(ev.changed or {}) do
    print(("%22s %s: %s -> %s"):format("", k, show(ev.previous[k]), show(ev.current and ev.current[k])))
  end
  seen[ev.event] = true
end

local SEVEN = { "activity.added", "deal.added", "organization.added", "person.added",
                "deal.updated", "organization.updated", "person.updated" }
for _, key in ipairs(SEVEN) do triggers:on(key, print_event) end

local port, err = triggers:listen{ host = listen_host, port = listen_port, path = "/pipedrive" }
if not port then
  io.stderr:write(tostring(err), "\n")
  os.exit(1)
end
local ok, res = triggers:enable()
if not ok then
  io.stderr:write("enable failed: ", tostring(res), "\n")
  if sandbox then sandbox.stop() end
  os.exit(1)
end
print(("%s\nwebhooks: %d created, %d kept, %d deleted; listening on port %d")
  :format(tostring(triggers), #res.created, #res.kept, #res.deleted, port))

if sandbox then
  local curl = "curl -s -H 'x-api-token: %s' -H 'content-type: application/json' -X %s -d '%s' %s/api/v2/%s\n"
  print(("\nsandbox: %s (token %s). In another terminal, for example:\n"):format(sandbox.url, sandbox.api_token))
  io.write((curl):format(sandbox.api_token, "POST", '{"title":"Hello"}', sandbox.url, "deals"))
  io.write((curl):format(sandbox.api_token, "PATCH", '{"title":"Hello again","value":50}', sandbox.url, "deals/1"))
  io.write((curl):format(sandbox.api_token, "POST", '{"name":"Ada"}', sandbox.url, "persons"))
  io.write((curl):format(sandbox.api_token, "POST", '{"subject":"Call Ada","type":"call"}', sandbox.url,
    "activities"))
  print(("or: PIPEDRIVE_API_TOKEN=%s PIPEDRIVE_BASE_URL=%s lua5.4 examples/quickstart.lua\n")
    :format(sandbox.api_token, sandbox.url))
end

if opts.demo then
  local function check(v, e)
    if v == nil then error(tostring(e), 2) end
    return v
  end
  local deal = check(pd.deals.add{ title = "Demo deal", value = 100, currency = "EUR" })
  local org = check(pd.organizations.add{ name = "Demo Ltd" })
  local person = check(pd.persons.add{ name = "Dee Demo", org_id = org.id })
  check(pd.activities.add{ subject = "Call Dee", type = "call", deal_id = deal.id, person_id = person.id })
  check(pd.deals.update(deal.id, { title = "Demo deal (won)", value = 250, status = "won" }))
  check(pd.organizations.update(org.id, { name = "Demo Limited" }))
  check(pd.persons.update(person.id, { name = "Dee Demo-Smith" }))
end

local function all_seven()
  for _, key in ipairs(SEVEN) do
    if not seen[key] then return false end
  end
  return true
end
triggers:serve{ timeout = opts.seconds or (opts.demo and 30 or nil), stop_when = opts.demo and all_seven or nil }

local done = all_seven()
if sandbox then
  triggers:disable()
  sandbox.stop()
end
triggers:close()
if opts.demo then
  print(done and "\nall seven triggers fired" or "\nsome triggers did not fire")
  os.exit(done and 0 or 1)
end
