-- One "host" of the shared-pacing specs: adds N persons through pd.parallel
-- with pace = { shared = pipedrive.redis{ url } } and writes what happened
-- as JSON. Started as an OS process (several at once) by spec/pace_spec.lua:
--   lua pace_worker.lua BASE_URL TOKEN REDIS_URL N CONCURRENCY START_AT OUT NAME
-- START_AT is a core.now() time (the monotonic clock is the machine's, the
-- same in every process) so that the workers begin together.
local pipedrive = require "pipedrive"
local core = require "pipedrive.core"

local base, token, redis_url, n, conc, start_at, out, name = arg[1], arg[2], arg[3], tonumber(arg[4]),
  tonumber(arg[5]), tonumber(arg[6]), arg[7], arg[8]
local shared = redis_url ~= "-" and pipedrive.redis{ url = redis_url, timeout = 0.5, retry_interval = 0.5 } or nil
local logs, forced = {}, 0
local pd = pipedrive.new{ api_token = token, base_url = base, pace = { shared = shared },
  retries = { base = 0.2, deadline = 120 },
  log = function(ev)
    if ev.type == "pace" and ev.message then logs[#logs + 1] = ev.message end
    if ev.type == "pace" and ev.forced then forced = forced + 1 end
  end }
local fns = {}
for i = 1, n do fns[i] = function() return pd.persons.add{ name = name .. "-" .. i } end end
local wait = start_at - core.now()
if wait > 0 then core.sleep(wait) end
local results, failed = pd.parallel(fns, { concurrency = conc })
local ended = core.now()
local errors = {}
for i = 1, n do
  if not results[i].ok then errors[#errors + 1] = tostring(results[i].err) end
end
local f = assert(io.open(out, "wb"))
f:write(core.json_encode{ ended = ended, failed = failed, forced = forced, errors = core.array(errors), logs = core.array(logs) })
f:close()
pd.close()
