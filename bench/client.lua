--- The pipedrive client's side of bench/RESULTS.md, one measurement per run:
--   lua5.4 bench/client.lua get URL N        deals.get(1) N times (rows 1, 2)
--   lua5.4 bench/client.lua latency URL N C  N deals.get, C at once (C = 1: plain sequential calls) (row 3)
--   lua5.4 bench/client.lua page URL N [prefetch]  each over N deals, 500 per page (row 4)
--   lua5.4 bench/client.lua growth URL N     RSS after 1,000 calls and after N more (row 6)
-- PD_BENCH_PACE=local (pace = true) or PD_BENCH_PACE=redis://... (pace counted in
-- that Redis) paces the client (row 9). Prints one JSON line. CPU is os.clock() (user+sys of this process) over the
-- measured calls only; peak_rss_kb is VmHWM from /proc/self/status.
local pipedrive = require "pipedrive"
local core = require "pipedrive.core"

local function status(field)
  local f = assert(io.open("/proc/self/status"))
  local s = f:read("a")
  f:close()
  return tonumber(s:match(field .. ":%s*(%d+)"))
end

-- User and system CPU seconds of this process (clock ticks from /proc/self/stat).
local TICK = 0.01
local function cpu_split()
  local f = assert(io.open("/proc/self/stat"))
  local st = f:read("a")
  f:close()
  local fields = {}
  for w in st:match("%) (.*)$"):gmatch("%S+") do fields[#fields + 1] = w end
  return tonumber(fields[12]) * TICK, tonumber(fields[13]) * TICK
end

local function out(t)
  t.peak_rss_kb = status("VmHWM")
  print(core.json_encode(t))
end

local mode, url, n, extra = arg[1], arg[2], tonumber(arg[3]), arg[4]
local pace = os.getenv("PD_BENCH_PACE")
if pace == "local" then pace = true
elseif pace then pace = { shared = pipedrive.redis{ url = pace } } end
local pd = pipedrive.new{ api_token = "bench-token", base_url = url, retries = false, pace = pace }

if mode == "get" then
  for _ = 1, 100 do assert(pd.deals.get(1)) end
  local c, w = os.clock(), core.now()
  local u0, s0 = cpu_split()
  for _ = 1, n do
    local d = pd.deals.get(1)
    if not d then error("call failed") end
  end
  local u1, s1 = cpu_split()
  out{ calls = n, cpu_us = (os.clock() - c) * 1e6 / n, wall_us = (core.now() - w) * 1e6 / n,
       user_us = (u1 - u0) * 1e6 / n, sys_us = (s1 - s0) * 1e6 / n }
elseif mode == "latency" then
  local conc = tonumber(extra)
  assert(pd.deals.get(1))
  local w = core.now()
  if conc == 1 then
    for i = 1, n do assert(pd.deals.get(i % 50 + 1)) end
  else
    local fns = {}
    for i = 1, n do fns[i] = function() return pd.deals.get(i % 50 + 1) end end
    local _, failed = pd.parallel(fns, { concurrency = conc })
    assert(failed == 0)
  end
  out{ calls = n, concurrency = conc, wall_s = core.now() - w }
elseif mode == "page" then
  local c, w, count = os.clock(), core.now(), 0
  for d in pd.deals.each{ limit = 500, prefetch = extra == "prefetch", max_items = n } do
    if d.id then count = count + 1 end
  end
  assert(count == n, ("paged %d of %d"):format(count, n))
  local wall = core.now() - w
  out{ records = count, wall_s = wall, records_per_s = count / wall, cpu_s = os.clock() - c }
elseif mode == "growth" then
  for _ = 1, 1000 do assert(pd.deals.get(1)) end
  collectgarbage("collect")
  local before = status("VmRSS")
  for _ = 1, n do
    local d = pd.deals.get(1)
    if not d then error("call failed") end
  end
  collectgarbage("collect")
  local after = status("VmRSS")
  out{ calls = n, rss_before_kb = before, rss_after_kb = after, growth_kb = after - before }
else
  io.stderr:write("usage: client.lua get|latency|page|growth URL N [extra]\n")
  os.exit(2)
end
pd.close()
