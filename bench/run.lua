--- `make bench`: every row of bench/RESULTS.md, measured side by side in one
-- run on this machine, written to bench/RESULTS.md (or --out FILE).
--   lua5.4 bench/run.lua [--quick] [--out FILE]
--   lua5.4 bench/run.lua --only slow [--quick]   row 7 alone, printed (RESULTS.md untouched)
--   lua5.4 bench/run.lua --only pace [--quick]   row 9 alone, printed (RESULTS.md untouched)
-- Needs what bench/deps.sh installs. Each measurement is a separate process
-- (bench/client.lua, bench/raw_curl, bench/node_*.js) printing one JSON line;
-- CPU figures are user+sys of that process over the measured loop only
-- (getrusage / os.clock / process.cpuUsage), repeated and reduced to the
-- median. Callgrind counts are instructions per call: the difference between
-- a long and a short run divided by the difference in calls, so start-up and
-- warm-up cancel out.
local core = require "pipedrive.core"
local spawn = require "pipedrive.sandbox.spawn"

local QUICK, OUT, ONLY = false, "bench/RESULTS.md", nil
do
  local i = 1
  while arg[i] do
    if arg[i] == "--quick" then QUICK = true
    elseif arg[i] == "--out" then i = i + 1; OUT = arg[i]
    elseif arg[i] == "--only" and (arg[i + 1] == "slow" or arg[i + 1] == "pace") then i = i + 1; ONLY = arg[i]
    else error("usage: lua5.4 bench/run.lua [--quick] [--out FILE] [--only slow|pace]") end
    i = i + 1
  end
end

local REPS = QUICK and 3 or 5
local LUA = "lua5.4"
local ENV = "" -- LUA_PATH and LUA_CPATH come from make bench, and children inherit them
local RAW = "build/bench/raw_curl"

local function log(fmt, ...) io.stderr:write(("[bench] " .. fmt .. "\n"):format(...)) end

local function sh(cmd)
  local p = assert(io.popen(cmd .. " 2>&1"))
  local out = p:read("a")
  local ok = p:close()
  return out, ok
end

-- Runs a command that prints one JSON line; returns the decoded table.
local function json_run(cmd)
  local out, ok = sh(cmd)
  local line = out:match("(%b{})%s*$")
  local t = line and core.json_decode(line)
  if not ok or type(t) ~= "table" then error("bench: command failed: " .. cmd .. "\n" .. out) end
  return t
end

local function median(list)
  local s = {}
  for i, v in ipairs(list) do s[i] = v end
  table.sort(s)
  local n = #s
  if n % 2 == 1 then return s[(n + 1) // 2] end
  return (s[n // 2] + s[n // 2 + 1]) / 2
end

local function field(runs, name)
  local out = {}
  for i, r in ipairs(runs) do out[i] = r[name] end
  return out
end

local function free_port()
  local httpd = require "pipedrive.httpd"
  local srv = httpd.listen{ port = 0, handler = function() return 204, {}, "" end }
  local port = srv:port()
  srv:close()
  return port
end

local function wait_http(url, seconds)
  local h = core.http_new{ timeout = 1 }
  local deadline = core.now() + seconds
  while core.now() < deadline do
    local res = h:perform{ method = "GET", url = url }
    if res and res.status < 500 then
      h:close()
      return true
    end
    core.sleep(0.05)
  end
  h:close()
  error("bench: nothing answers at " .. url)
end

-- Instructions per call under callgrind: (Ir(long) - Ir(short)) / (long - short).
local function ir_per_call(cmd_fmt, short, long)
  local function ir(n)
    local out = sh(("valgrind --tool=callgrind --callgrind-out-file=/dev/null " .. cmd_fmt):format(n))
    local refs = out:match("I%s+refs:%s+([%d,]+)")
    if not refs then error("bench: callgrind failed: " .. out) end
    return tonumber((refs:gsub(",", "")))
  end
  return (ir(long) - ir(short)) / (long - short)
end

-- CPU seconds (user + sys) a process has used so far, from /proc/PID/stat.
local CLK_TCK = tonumber((sh("getconf CLK_TCK"))) or 100
local function proc_cpu(pid)
  local f = io.open("/proc/" .. pid .. "/stat")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  local rest = s:match("%) (.*)$")
  local fields = {}
  for w in rest:gmatch("%S+") do fields[#fields + 1] = w end
  return (tonumber(fields[12]) + tonumber(fields[13])) / CLK_TCK -- utime, stime (fields 14, 15 of stat)
end

local function bg(cmd)
  local out = sh(cmd .. " >/dev/null 2>&1 & echo $!")
  return tonumber(out:match("(%d+)%s*$"))
end

local function kill(pid)
  if pid then os.execute("kill " .. pid .. " 2>/dev/null") end
end

local function fmt(v, digits)
  if type(v) ~= "number" then return tostring(v) end
  return ("%." .. (digits or 1) .. "f"):format(v)
end

local function thousands(v)
  local s = ("%d"):format(math.floor(v + 0.5))
  return (s:reverse():gsub("(%d%d%d)", "%1,"):reverse():gsub("^,", ""))
end

local function list(t, d)
  local s = {}
  for i, v in ipairs(t) do s[i] = fmt(v, d) end
  return table.concat(s, ", ")
end

------------------------------------------------------------------------------
local results = {}
local cleanup = {}
local function at_exit(fn) cleanup[#cleanup + 1] = fn end
local function finish()
  for i = #cleanup, 1, -1 do pcall(cleanup[i]) end
end

-- Row 7: valid deliveries per second (wrk, as row 5) to the webhook listener
-- alone, then while 1,000 slow connections are open: each sends the start of a
-- request head and one more byte a second (spec/support/raw_client.pl, from
-- 127.0.0.2; a connection the listener closes at its request deadline is
-- opened again, so about 1,000 stay open). Needs `ulimit -n` above ~2,100.
local function row7()
  local port = free_port()
  local pid = bg(("%s%s bench/lua_webhook.lua %d 2048"):format(ENV, LUA, port))
  at_exit(function() kill(pid) end)
  wait_http(("http://127.0.0.1:%d/hook"):format(port), 10)
  local secs = QUICK and 3 or 5
  local function rps()
    local out = sh(("wrk -t1 -c16 -d%ds -s bench/wrk_webhook.lua http://127.0.0.1:%d/hook"):format(secs, port))
    local v = tonumber(out:match("Requests/sec:%s+([%d%.]+)"))
    if not v then error("bench: wrk failed:\n" .. out) end
    local non2xx = tonumber(out:match("Non%-2xx or 3xx responses:%s+(%d+)")) or 0
    local errors = out:match("Socket errors:[^\n]*") or "none"
    return v, non2xx, errors
  end
  local function open_conns()
    return tonumber((sh(("ss -Htn state established '( sport = :%d )' | wc -l"):format(port)))) or -1
  end
  local reps = QUICK and 2 or 3
  local base, slow, non2xx, errors, open = {}, {}, 0, {}, {}
  for i = 1, reps do base[i] = rps() end
  local ready = os.tmpname()
  os.remove(ready)
  local slow_pid = bg(("perl spec/support/raw_client.pl slow 127.0.0.1 %d 1000 %d 127.0.0.2 1 1 %s")
    :format(port, reps * (secs + 3) + 30, ready))
  at_exit(function() kill(slow_pid); os.remove(ready) end)
  local deadline = core.now() + 30
  while not io.open(ready) and core.now() < deadline do core.sleep(0.1) end
  core.sleep(1)
  for i = 1, reps do
    open[i] = open_conns()
    local n
    slow[i], n, errors[i] = rps()
    non2xx = non2xx + n
    log("row 7 rep %d: %d slow connections open, %.0f req/s (alone: %.0f req/s)", i, open[i], slow[i], base[i])
  end
  kill(slow_pid)
  kill(pid)
  return { secs = secs, base_rps = median(base), slow_rps = median(slow), base_all = base, slow_all = slow,
           open = median(open), non2xx = non2xx, errors = errors[1] }
end

local function row7_line(r7)
  return ("| 7 | webhook listener under wrk (1 thread, 16 connections, %d s) while %s slow connections are open "
    .. "| %s req/s | alone: %s req/s | %.2fx | same order (>= 0.1x) | %s |")
    :format(r7.secs, thousands(r7.open), thousands(r7.slow_rps), thousands(r7.base_rps), r7.slow_rps / r7.base_rps,
      (r7.slow_rps / r7.base_rps >= 0.1) and "**met**" or "**missed**")
end

local function row7_details(r7)
  return ("Row 7: req/s alone %s; with the slow connections %s; non-2xx answers %d; wrk socket errors: %s. "
    .. "The slow clients: `perl spec/support/raw_client.pl slow 127.0.0.1 PORT 1000 SECONDS 127.0.0.2 1 1`; the "
    .. "listener: `lua5.4 bench/lua_webhook.lua PORT 2048` (per-address cap off, request_timeout 10 s).")
    :format(list(r7.base_all, 0), list(r7.slow_all, 0), r7.non2xx, r7.errors)
end

-- Row 9: pacing against the sandbox's burst limiter (--rate-limit 40: 20 adds/s
-- at most). (a) three OS processes (spec/support/pace_worker.lua), each adding
-- N persons with pd.parallel at concurrency 16, pacing counted together in a
-- real Redis; then the same three with only their own local pacers. Aggregate
-- adds per second as a fraction of the limit, and the 429s the sandbox gave.
-- (b) the per-call cost of pacing: deals.get against the static nginx of row 1
-- unpaced, paced locally, and paced in Redis (two scripts per call).
local function row9(static)
  package.path = "spec/?.lua;" .. package.path
  local redis = require "support.redis"
  local srv = redis.start()
  at_exit(function() srv:stop() end)
  local n = QUICK and 100 or 300
  local function three(redis_url)
    local sb = spawn.start{ api_token = "bench-token", args = { "--rate-limit", "40", "--quiet" } }
    local dir = sh("mktemp -d"):match("(%S+)")
    local start_at = core.now() + 1
    local cmds = {}
    for w = 1, 3 do
      cmds[w] = ("%s%s spec/support/pace_worker.lua %s bench-token %s %d 16 %.6f %s/w%d.json w%d >%s/w%d.log 2>&1")
        :format(ENV, LUA, sb.url, redis_url or "-", n, start_at, dir, w, w, dir, w)
    end
    os.execute(table.concat(cmds, " & ") .. " & wait")
    local last, failed = 0, 0
    for w = 1, 3 do
      local f = assert(io.open(("%s/w%d.json"):format(dir, w)), "a pace worker failed")
      local r = core.json_decode(f:read("a"))
      f:close()
      if r.ended > last then last = r.ended end
      failed = failed + r.failed
    end
    local h = core.http_new{}
    local fig = core.json_decode(assert(h:perform{ method = "GET", url = sb.url .. "/_sandbox/rate_limit" }).body)
    h:close()
    sb.stop()
    os.execute("rm -rf '" .. dir .. "'")
    local elapsed = last - start_at
    return { adds = 3 * n, elapsed = elapsed, rate = 3 * n / elapsed, fraction = 3 * n / elapsed / 20,
             r429 = fig.rate_limited, failed = failed }
  end
  local shared, alone = three(srv.url), three(nil)
  log("row 9a: shared %.2f s (%.3f of the limit, %d x 429); local only %.2f s (%d x 429)", shared.elapsed,
    shared.fraction, shared.r429, alone.elapsed, alone.r429)
  -- the workers taught Redis this token's limit (40): forget it, or (b) would be paced at 20 calls/s
  srv:cli("FLUSHALL")
  local N = QUICK and 2000 or 10000
  local cost = {}
  for _, mode in ipairs({ "off", "local", "redis" }) do
    local env = mode == "off" and "" or ("PD_BENCH_PACE=%s "):format(mode == "local" and "local" or srv.url)
    local runs = {}
    for i = 1, REPS do runs[i] = json_run(("%s%s%s bench/client.lua get %s %d"):format(ENV, env, LUA, static, N)) end
    cost[mode] = { cpu = median(field(runs, "cpu_us")), wall = median(field(runs, "wall_us")) }
    log("row 9b: %s: %.1f us CPU, %.1f us wall per call", mode, cost[mode].cpu, cost[mode].wall)
  end
  srv:stop()
  return { n = n, shared = shared, alone = alone, cost = cost, calls = N }
end

local function row9_line(r9)
  local s = r9.shared
  return ("| 9 | pacing: 3 processes x %d adds sharing Redis, sandbox `--rate-limit 40` (20/s) | %.1f adds/s = %.3f of the "
    .. "limit, %d x 429 | each process pacing alone: %d x 429 | per call: %+.1f us CPU, %+.1f us wall (local pacing: "
    .. "%+.1f us CPU) | 0 x 429, >= 0.95 of the limit | %s |")
    :format(r9.n, s.rate, s.fraction, s.r429, r9.alone.r429, r9.cost.redis.cpu - r9.cost.off.cpu,
      r9.cost.redis.wall - r9.cost.off.wall, r9.cost["local"].cpu - r9.cost.off.cpu,
      (s.r429 == 0 and s.fraction >= 0.95 and s.failed == 0) and "**met**" or "**missed**")
end

local function row9_details(r9)
  local s, a, c = r9.shared, r9.alone, r9.cost
  return ("Row 9: sharing Redis, %d adds in %.2f s (%d failed); each process pacing only itself, %.2f s, %d answers 429 "
    .. "(retried, %d failed). Per `deals.get` against the static nginx of row 1 (%d calls, median of runs): unpaced "
    .. "%.1f us CPU / %.1f us wall; paced locally %.1f / %.1f; paced in Redis %.1f / %.1f (two EVALSHA per call over "
    .. "loopback). Workers: `spec/support/pace_worker.lua`; one process alone is in spec/pace_spec.lua (1,000 adds).")
    :format(s.adds, s.elapsed, s.failed, a.elapsed, a.r429, a.failed, r9.calls, c.off.cpu, c.off.wall,
      c["local"].cpu, c["local"].wall, c.redis.cpu, c.redis.wall)
end

-- The static server of rows 1, 2, 6 and 9: a private nginx on a free high port
-- serving bench/deal.json; returns its URL (stopped at exit).
local function start_static()
  local prefix = sh("mktemp -d"):match("(%S+)")
  at_exit(function() os.execute("rm -rf '" .. prefix .. "'") end)
  os.execute(("chmod 755 '%s' && mkdir -p '%s/www' '%s/tmp' && cp bench/deal.json '%s/www/' && chmod 644 '%s/www/deal.json'")
    :format(prefix, prefix, prefix, prefix, prefix))
  local port = free_port()
  local conf = assert(io.open("bench/nginx.conf.in")):read("a"):gsub("@PREFIX@", prefix):gsub("@PORT@", tostring(port))
  local cf = assert(io.open(prefix .. "/nginx.conf", "w"))
  cf:write(conf)
  cf:close()
  local nginx_pid = bg(("nginx -p '%s' -c '%s/nginx.conf' -e '%s/error.log'"):format(prefix, prefix, prefix))
  at_exit(function()
    local f = io.open(prefix .. "/nginx.pid")
    if f then kill(f:read("l")); f:close() end
    kill(nginx_pid)
  end)
  local static = ("http://127.0.0.1:%d"):format(port)
  wait_http(static .. "/api/v2/deals/1", 10)
  return static
end

-- `--only slow|pace`: one row alone, printed (RESULTS.md untouched); exits.
local function only(measure, line, details)
  local ok1, r = pcall(measure)
  finish()
  if not ok1 then
    io.stderr:write(tostring(r), "\n")
    os.exit(1)
  end
  print(line(r))
  print(details(r))
  os.exit(0)
end

if ONLY == "pace" then only(function() return row9(start_static()) end, row9_line, row9_details) end
if ONLY == "slow" then only(row7, row7_line, row7_details) end

local ok, err = pcall(function()
  local static = start_static()
  local deal_bytes = #assert(io.open("bench/deal.json")):read("a")
  log("nginx on %s serving a %d-byte deal", static, deal_bytes)

  -- Row 1: client CPU per deals.get vs the raw libcurl + lua-cjson loop.
  -- Runs of about a second each, so that a burst of other work on the machine is averaged out.
  local N1 = QUICK and 5000 or 20000
  local raw_runs, lua_runs = {}, {}
  for i = 1, REPS do
    raw_runs[i] = json_run(("%s %s/api/v2/deals/1 %d"):format(RAW, static, N1))
    lua_runs[i] = json_run(("%s%s bench/client.lua get %s %d"):format(ENV, LUA, static, N1))
    log("row 1 rep %d: raw %.1f us, pipedrive %.1f us", i, raw_runs[i].cpu_us, lua_runs[i].cpu_us)
  end
  local raw_ir = ir_per_call(RAW .. " " .. static .. "/api/v2/deals/1 %d", 300, 1300)
  local lua_ir = ir_per_call(ENV .. LUA .. " bench/client.lua get " .. static .. " %d", 300, 1300)
  results.row1 = {
    n = N1, raw_cpu = median(field(raw_runs, "cpu_us")), lua_cpu = median(field(lua_runs, "cpu_us")),
    raw_wall = median(field(raw_runs, "wall_us")), lua_wall = median(field(lua_runs, "wall_us")),
    raw_rss = median(field(raw_runs, "peak_rss_kb")), lua_rss = median(field(lua_runs, "peak_rss_kb")),
    raw_ir = raw_ir, lua_ir = lua_ir, raw_all = field(raw_runs, "cpu_us"), lua_all = field(lua_runs, "cpu_us"),
    raw_user = median(field(raw_runs, "user_us")), raw_sys = median(field(raw_runs, "sys_us")),
    lua_user = median(field(lua_runs, "user_us")), lua_sys = median(field(lua_runs, "sys_us")),
  }
  -- Each pair ran back to back, under the same load from the rest of the machine: the
  -- median of the pairs' ratios is steadier than the ratio of the medians.
  local ratios = {}
  for i = 1, REPS do ratios[i] = lua_runs[i].cpu_us / raw_runs[i].cpu_us end
  results.row1.ratio, results.row1.ratios = median(ratios), ratios

  -- Row 2: the official Node.js SDK against the same server, same calls.
  local N2 = QUICK and 1000 or 2000 -- Node SDK calls per run (about 1.3 s); the Lua runs make N1
  local node_runs, lua2_runs = {}, {}
  for i = 1, REPS do
    node_runs[i] = json_run(("node bench/node_sdk.js %s %d"):format(static, N2))
    lua2_runs[i] = json_run(("%s%s bench/client.lua get %s %d"):format(ENV, LUA, static, N1))
    log("row 2 rep %d: node sdk %.1f us %d KiB, pipedrive %.1f us %d KiB", i, node_runs[i].cpu_us,
      node_runs[i].peak_rss_kb, lua2_runs[i].cpu_us, lua2_runs[i].peak_rss_kb)
  end
  results.row2 = {
    n = N2, node_cpu = median(field(node_runs, "cpu_us")), lua_cpu = median(field(lua2_runs, "cpu_us")),
    node_rss = median(field(node_runs, "peak_rss_kb")), lua_rss = median(field(lua2_runs, "peak_rss_kb")),
    node_all = field(node_runs, "cpu_us"), lua_all = field(lua2_runs, "cpu_us"),
    node_user = median(field(node_runs, "user_us")), node_sys = median(field(node_runs, "sys_us")),
    lua_user = median(field(lua2_runs, "user_us")), lua_sys = median(field(lua2_runs, "sys_us")),
  }
  local cpu_ratios, rss_ratios = {}, {}
  for i = 1, REPS do
    cpu_ratios[i] = node_runs[i].cpu_us / lua2_runs[i].cpu_us
    rss_ratios[i] = node_runs[i].peak_rss_kb / lua2_runs[i].peak_rss_kb
  end
  results.row2.cpu_ratio, results.row2.cpu_ratios = median(cpu_ratios), cpu_ratios
  results.row2.rss_ratio = median(rss_ratios)

  -- Row 6: 100,000 calls in one process (before the sandbox rows: same server).
  local N6 = QUICK and 20000 or 100000
  results.row6 = json_run(("%s%s bench/client.lua growth %s %d"):format(ENV, LUA, static, N6))
  log("row 6: %d calls, RSS %d -> %d KiB", N6, results.row6.rss_before_kb, results.row6.rss_after_kb)

  -- Row 3: 200 calls against the sandbox with 50 ms latency.
  local sb3 = spawn.start{ api_token = "bench-token", args = { "--latency", "0.05", "--fixtures", "50", "--quiet" } }
  at_exit(function() sb3.stop() end)
  local seq, par = {}, {}
  for i = 1, (QUICK and 2 or 3) do
    seq[i] = json_run(("%s%s bench/client.lua latency %s 200 1"):format(ENV, LUA, sb3.url))
    log("row 3 rep %d: sequential %.2f s", i, seq[i].wall_s)
  end
  for i = 1, REPS do
    par[i] = json_run(("%s%s bench/client.lua latency %s 200 16"):format(ENV, LUA, sb3.url))
    log("row 3 rep %d: concurrency 16 %.3f s", i, par[i].wall_s)
  end
  results.row3 = { seq = median(field(seq, "wall_s")), par = median(field(par, "wall_s")), ideal = 200 / 16 * 0.05,
                   seq_all = field(seq, "wall_s"), par_all = field(par, "wall_s") }
  sb3.stop()

  -- Row 4: paging 100,000 deals at 500 per page.
  -- --omit-nulls: the page shape the earlier figures were measured on (real nulls, the
  -- sandbox's default since issue 14, add ~4,200 Ir of decoding per record)
  local sb4 = spawn.start{ api_token = "bench-token", args = { "--fixtures", "0", "--quiet", "--omit-nulls" } }
  at_exit(function() sb4.stop() end)
  local total = QUICK and 20000 or 100000
  do
    local h = core.http_new{ timeout = 120 }
    local t = core.now()
    local res = assert(h:perform{ method = "POST", url = sb4.url .. "/_sandbox/bulk",
      headers = { ["content-type"] = "application/json" },
      body = core.json_encode{ object = "deal", count = total, title_prefix = "Bulk" } })
    assert(res.status == 200 or res.status == 201, "bulk seed failed")
    h:close()
    log("row 4: seeded %d deals in %.2f s", total, core.now() - t)
  end
  local row4 = {}
  for _, mode in ipairs({ "plain", "prefetch" }) do
    for _, count in ipairs({ total // 10, total }) do
      local runs = {}
      for i = 1, (QUICK and 2 or 3) do
        runs[i] = json_run(("%s%s bench/client.lua page %s %d %s"):format(ENV, LUA, sb4.url, count, mode))
      end
      local r = { mode = mode, count = count, rps = median(field(runs, "records_per_s")),
                  rss = median(field(runs, "peak_rss_kb")), cpu = median(field(runs, "cpu_s")) }
      row4[#row4 + 1] = r
      log("row 4: %s %d records: %.0f records/s, peak RSS %d KiB", mode, count, r.rps, r.rss)
    end
  end
  results.row4 = row4
  results.row4_ir = ir_per_call(ENV .. LUA .. " bench/client.lua page " .. sb4.url .. " %d plain", 2000, 12000)
  sb4.stop()

  -- Row 5: webhook listener under wrk vs a Node.js http server.
  local lua_port, node_port = free_port(), free_port()
  local lua_pid = bg(("%s%s bench/lua_webhook.lua %d"):format(ENV, LUA, lua_port))
  at_exit(function() kill(lua_pid) end)
  local node_pid = bg(("node bench/node_webhook.js %d"):format(node_port))
  at_exit(function() kill(node_pid) end)
  wait_http(("http://127.0.0.1:%d/hook"):format(lua_port), 10)
  wait_http(("http://127.0.0.1:%d/hook"):format(node_port), 10)
  local secs = QUICK and 3 or 5
  local function wrk(port, pid)
    local c0 = proc_cpu(pid)
    local out = sh(("wrk -t1 -c16 -d%ds --latency -s bench/wrk_webhook.lua http://127.0.0.1:%d/hook"):format(secs, port))
    local c1 = proc_cpu(pid)
    local rps = tonumber(out:match("Requests/sec:%s+([%d%.]+)"))
    local requests = tonumber(out:match("(%d+) requests in"))
    local p99, unit = out:match("%s99%%%s+([%d%.]+)(%a+)")
    p99 = tonumber(p99)
    if unit == "us" then p99 = p99 / 1000 elseif unit == "s" then p99 = p99 * 1000 end
    local non2xx = tonumber(out:match("Non%-2xx or 3xx responses:%s+(%d+)")) or 0
    if not rps or not p99 then error("bench: wrk failed:\n" .. out) end
    return { rps = rps, p99_ms = p99, non2xx = non2xx, cpu_us = (c1 - c0) * 1e6 / requests }
  end
  local lw, nw = {}, {}
  for i = 1, (QUICK and 2 or 3) do
    lw[i] = wrk(lua_port, lua_pid)
    nw[i] = wrk(node_port, node_pid)
    log("row 5 rep %d: pipedrive %.0f req/s p99 %.2f ms, node %.0f req/s p99 %.2f ms", i, lw[i].rps, lw[i].p99_ms,
      nw[i].rps, nw[i].p99_ms)
  end
  results.row5 = { secs = secs,
    lua_rps = median(field(lw, "rps")), lua_p99 = median(field(lw, "p99_ms")), lua_cpu = median(field(lw, "cpu_us")),
    node_rps = median(field(nw, "rps")), node_p99 = median(field(nw, "p99_ms")), node_cpu = median(field(nw, "cpu_us")),
    lua_non2xx = lw[1].non2xx, node_non2xx = nw[1].non2xx }
  kill(lua_pid)
  kill(node_pid)

  results.row7 = row7()
  results.row9 = row9(static)
end)
finish()
if not ok then
  io.stderr:write(tostring(err), "\n")
  os.exit(1)
end

------------------------------------------------------------------------------
-- RESULTS.md
------------------------------------------------------------------------------
local function first_line(cmd) return ((sh(cmd)):match("[^\n]*")) end
local machine = {
  date = os.date("!%Y-%m-%d %H:%M UTC"),
  cpu = (first_line("grep -m1 'model name' /proc/cpuinfo"):gsub("^.-:%s*", "")),
  cores = first_line("nproc"),
  kernel = first_line("uname -sr"),
  lua = (first_line("lua5.4 -v"):match("^Lua [%d%.]+")) or "Lua 5.4",
  curl = first_line("curl-config --version"),
  nginx = (sh("nginx -v")):match("nginx/[%d%.]+") or "?",
  node = first_line("node --version"),
  sdk = (sh("node -p \"require('./bench/node_modules/pipedrive/package.json').version\"")):match("[%d%.]+") or "?",
  wrk = "wrk " .. ((sh("wrk -v")):match("wrk%s+(%S+)") or "?"),
}

local r1, r2, r3, r5, r6 = results.row1, results.row2, results.row3, results.row5, results.row6
local N1_CALLS = r1.n
local function verdict(okay) return okay and "**met**" or "**missed**" end

local o = {}
local function w(s) o[#o + 1] = s or "" end
w("# Benchmarks")
w()
w("Produced by `make bench` (bench/run.lua" .. (QUICK and " --quick" or "") .. "); every figure below "
  .. "comes from that one run, side by side.")
w(("Machine: %s, %s cores (shared with other work), %s. %s; %s; %s; Node.js %s with npm `pipedrive` %s; %s.")
  :format(machine.cpu, machine.cores, machine.kernel, machine.lua, machine.curl, machine.nginx, machine.node,
    machine.sdk, machine.wrk))
w("Run " .. machine.date .. ".")
w()
w("CPU is user+sys of the measuring process over the measured loop only (after 100 warm-up calls), per call;")
w("ratios in rows 1 and 2 are the median of the ratios of runs made back to back (pairs share the machine's load);")
w(("each figure is the median of %d runs (row 3 sequential, rows 4 and 5: %d). Peak RSS is VmHWM. Callgrind")
  :format(REPS, QUICK and 2 or 3))
w("counts are instructions per call, (Ir of 1300 calls - Ir of 300 calls) / 1000, so start-up cancels out.")
w()
w("| # | what | pipedrive (Lua) | peer | ratio | target | |")
w("|---|---|---|---|---|---|---|")
w(("| 1 | CPU per `deals.get`, nginx on loopback, %d-byte deal | %s us (%s Ir) | raw libcurl + "
  .. "lua-cjson: %s us (%s Ir) | %.2fx | <= 1.25x | %s |")
  :format(#assert(io.open("bench/deal.json")):read("a"), fmt(r1.lua_cpu), thousands(r1.lua_ir), fmt(r1.raw_cpu),
    thousands(r1.raw_ir), r1.ratio, verdict(r1.ratio <= 1.25)))
w(("| 2a | CPU per call, same server | %s us | Node SDK `getDeal`: %s us | %.1fx less | >= 15x less | %s |")
  :format(fmt(r2.lua_cpu), fmt(r2.node_cpu), r2.cpu_ratio, verdict(r2.cpu_ratio >= 15)))
w(("| 2b | peak RSS (Lua: %d calls, Node: %d) | %s MiB | Node SDK: %s MiB | %.1fx less | >= 5x less | %s |")
  :format(N1_CALLS, r2.n, fmt(r2.lua_rss / 1024), fmt(r2.node_rss / 1024), r2.rss_ratio,
    verdict(r2.rss_ratio >= 5)))
w(("| 3 | 200 calls, sandbox with 50 ms latency | concurrency 16: %s s | sequential: %s s (ideal "
  .. "parallel %s s) | %.2fx ideal | <= 1.5x ideal | %s |")
  :format(fmt(r3.par, 3), fmt(r3.seq, 2), fmt(r3.ideal, 3), r3.par / r3.ideal, verdict(r3.par / r3.ideal <= 1.5)))
local big, small
for _, r in ipairs(results.row4) do
  if r.mode == "plain" and r.count == (QUICK and 20000 or 100000) then big = r end
  if r.mode == "plain" and r.count ~= (QUICK and 20000 or 100000) then small = r end
end
w(("| 4 | paging %s deals, 500 per page | %s records/s, peak RSS %s MiB | %s records: peak RSS %s MiB "
  .. "| %+d KiB for 10x the records | not growing (< 1 MiB more) | %s |")
  :format(thousands(big.count), thousands(big.rps), fmt(big.rss / 1024), thousands(small.count), fmt(small.rss / 1024),
    big.rss - small.rss, verdict(big.rss - small.rss < 1024)))
w(("| 5 | webhook listener under wrk (1 thread, 16 connections, %d s) | %s req/s, p99 %s ms, %s us "
  .. "CPU/req | Node.js http: %s req/s, p99 %s ms, %s us CPU/req | %.2fx req/s | ahead | %s |")
  :format(r5.secs, thousands(r5.lua_rps), fmt(r5.lua_p99, 2), fmt(r5.lua_cpu), thousands(r5.node_rps), fmt(r5.node_p99, 2),
    fmt(r5.node_cpu), r5.lua_rps / r5.node_rps, verdict(r5.lua_rps > r5.node_rps)))
w(("| 6 | %s calls in one process | RSS %s -> %s KiB: %+d KiB | - | - | < 1 MiB growth | %s |")
  :format(thousands(r6.calls), thousands(r6.rss_before_kb), thousands(r6.rss_after_kb), r6.growth_kb,
    verdict(r6.growth_kb < 1024)))
w(row7_line(results.row7))
w(row9_line(results.row9))
w()
w("## Details")
w()
w(("Row 1 (%d calls per run): pipedrive CPU us per run %s; raw %s. Wall per call: pipedrive %s us, "
  .. "raw %s us. Peak RSS %s vs %s MiB.")
  :format(r1.n, list(r1.lua_all), list(r1.raw_all), fmt(r1.lua_wall), fmt(r1.raw_wall), fmt(r1.lua_rss / 1024),
    fmt(r1.raw_rss / 1024)))
w(("Row 1 user / sys us per call (medians): pipedrive %s / %s, raw %s / %s.")
  :format(fmt(r1.lua_user), fmt(r1.lua_sys), fmt(r1.raw_user), fmt(r1.raw_sys)))
w(("Row 1 ratio per pair (pipedrive / raw, run back to back): %s; the table shows their median. "
  .. "Callgrind (no noise from the machine): %.2fx.")
  :format(list(r1.ratios, 2), r1.lua_ir / r1.raw_ir))
w(("Row 2 (%d Node SDK calls, %d pipedrive calls per run): Node SDK CPU us per run %s; pipedrive %s.")
  :format(r2.n, N1_CALLS, list(r2.node_all, 0), list(r2.lua_all)))
w(("Row 2 user / sys us per call (medians): Node SDK %s / %s, pipedrive %s / %s.")
  :format(fmt(r2.node_user), fmt(r2.node_sys), fmt(r2.lua_user), fmt(r2.lua_sys)))
w(("Row 2 ratio per pair (Node SDK / pipedrive): %s; the table shows their median.")
  :format(list(r2.cpu_ratios, 1)))
w(("Row 3: sequential runs %s s; concurrency 16 runs %s s. Sequential is 200 x 50 ms plus the calls themselves.")
  :format(list(r3.seq_all, 2), list(r3.par_all, 3)))
w("Row 4 (client side; the sandbox, a Lua program rendering 500 deals per page, sets the pace):")
w()
w("| mode | records | records/s | peak RSS MiB | client CPU s |")
w("|---|---|---|---|---|")
for _, r in ipairs(results.row4) do
  w(("| %s | %s | %s | %s | %s |"):format(r.mode, thousands(r.count), thousands(r.rps), fmt(r.rss / 1024), fmt(r.cpu, 3)))
end
w()
w(("Client instructions per record while paging (callgrind, 12,000 - 2,000 records): %s Ir.")
  :format(thousands(results.row4_ir)))
w(("Row 5: non-2xx answers: pipedrive %d, node %d. CPU/req is the server process's user+sys over the "
  .. "wrk run divided by the requests wrk completed.")
  :format(r5.lua_non2xx, r5.node_non2xx))
w(row7_details(results.row7))
w(row9_details(results.row9))
w()
w("## Commands")
w()
w("Everything: `make bench` (installs what is missing with bench/deps.sh, builds, runs `lua5.4 bench/run.lua`).")
w("The single measurements it repeats, with URL the nginx or sandbox address it started:")
w()
w("```")
w(("build/bench/raw_curl URL/api/v2/deals/1 %d                       # row 1 peer"):format(r1.n))
w(("lua5.4 bench/client.lua get URL %d                                  # rows 1 and 2"):format(r1.n))
w(("node bench/node_sdk.js URL %d                                       # row 2 peer"):format(r2.n))
w("bin/pipedrive-sandbox --latency 0.05 --fixtures 50 --api-token bench-token   # row 3 server")
w("lua5.4 bench/client.lua latency URL 200 1 ; lua5.4 bench/client.lua latency URL 200 16")
w("POST URL/_sandbox/bulk {\"object\":\"deal\",\"count\":100000}            # row 4 seed")
w("lua5.4 bench/client.lua page URL 100000 [prefetch]")
w("lua5.4 bench/lua_webhook.lua PORT ; node bench/node_webhook.js PORT  # row 5 servers")
w("wrk -t1 -c16 -d5s --latency -s bench/wrk_webhook.lua http://127.0.0.1:PORT/hook")
w(("lua5.4 bench/client.lua growth URL %d                             # row 6"):format(r6.calls))
w("valgrind --tool=callgrind <command with N = 300 and 1300>            # Ir per call")
w("```")
w()
w("(`lua5.4 bench/...` commands run with LUA_PATH='lua/?.lua;lua/?/init.lua;;' LUA_CPATH='build/?.so;;'.)")
w()
local notes = io.open("bench/NOTES.md")
if notes then
  w(notes:read("a"))
  notes:close()
end
local f = assert(io.open(OUT, "w"))
f:write(table.concat(o, "\n"), "\n")
f:close()
log("wrote %s", OUT)
