--- Start-up cost of the library (bench/RESULTS.md row 8): CPU time and Lua heap
-- of `require "pipedrive"` + `pipedrive.new`, and the wall time of the CLI's
-- `--help`, each the median of fresh processes; and that a call's cost does
-- not depend on the number of operations (per-call Lua instructions counted by
-- a count hook for deals.get against a transport function, no network).
--
--   lua5.4 bench/startup.lua [ROOT ...]   (each ROOT a checkout with lua/ and build/; default ".")
--
-- `make bench-startup` runs it for this checkout and, when BASE is set, for
-- another (e.g. a `git archive main` extracted into a folder) for comparison.
local RUNS = 21

local function median(t)
  table.sort(t)
  return t[(#t + 1) // 2]
end

local PROBE = [[
local t0 = os.clock()
local pipedrive = require "pipedrive"
local pd = pipedrive.new{ api_token = "x", base_url = "http://127.0.0.1:9" }
local t1 = os.clock()
collectgarbage() collectgarbage()
io.write(string.format("%.3f %.1f\n", (t1 - t0) * 1000, collectgarbage("count")))
]]

local CALLS = [[
local pipedrive = require "pipedrive"
local body = '{"success":true,"data":{"id":5,"title":"x"}}'
local res = { status = 200, headers = { ["content-type"] = "application/json" }, body = body }
local pd = pipedrive.new{ api_token = "x", base_url = "http://127.0.0.1:9", transport = function() return res end }
if LOAD_ALL then
  for _, r in ipairs(pipedrive.operations.ALL_RESOURCES or {}) do local _ = pd[r].list end
end
for _ = 1, 100 do pd.deals.get(5) pd.deals.list{ limit = 5 } end
local n = 0
debug.sethook(function() n = n + 1 end, "", 1)
for _ = 1, 1000 do pd.deals.get(5) pd.deals.list{ limit = 5 } end
debug.sethook()
io.write(string.format("%d\n", n // 1000))
]]

local function run_lua(root, code)
  local env = ("LUA_PATH='%s/lua/?.lua;%s/lua/?/init.lua;;' LUA_CPATH='%s/build/?.so;;'"):format(root, root, root)
  local p = assert(io.popen(env .. " lua5.4 -e " .. ("%q"):format(code):gsub("\\\n", "\n"):gsub("%$", "\\$")))
  local out = p:read("*a")
  p:close()
  return out
end

local function measure(root)
  local cpu, heap, help = {}, {}, {}
  for _ = 1, RUNS do
    local ms, kib = run_lua(root, PROBE):match("([%d.]+) ([%d.]+)")
    cpu[#cpu + 1], heap[#heap + 1] = tonumber(ms), tonumber(kib)
  end
  local env = ("LUA_PATH='%s/lua/?.lua;%s/lua/?/init.lua;;' LUA_CPATH='%s/build/?.so;;'"):format(root, root, root)
  for _ = 1, RUNS do
    local p = assert(io.popen(("%s sh -c 'time -p lua5.4 %s/bin/pipedrive --help >/dev/null' 2>&1"):format(env, root)))
    local out = p:read("*a")
    p:close()
    local user, sys = out:match("user ([%d.]+)"), out:match("sys ([%d.]+)")
    help[#help + 1] = (tonumber(user) + tonumber(sys)) * 1000
  end
  local instr = tonumber(run_lua(root, "local LOAD_ALL = false " .. CALLS):match("(%d+)"))
  local instr_all = tonumber(run_lua(root, "local LOAD_ALL = true " .. CALLS):match("(%d+)"))
  local all_heap = run_lua(root, "local pipedrive = require 'pipedrive' local pd = pipedrive.new{ api_token = 'x',"
    .. " base_url = 'http://127.0.0.1:9' } for _, r in ipairs(pipedrive.operations.ALL_RESOURCES or {}) do"
    .. " local _ = pd[r].list end collectgarbage() collectgarbage() io.write(collectgarbage('count'))")
  return { cpu = median(cpu), heap = median(heap), help = median(help), instr = instr, instr_all = instr_all,
           all_heap = tonumber(all_heap) }
end

local roots = { ... }
if #roots == 0 then roots = { "." } end
for _, root in ipairs(roots) do
  local m = measure(root)
  print(("%s: require + new %.1f ms CPU, %.0f KiB Lua heap (%.0f KiB with every resource loaded);"
    .. " pipedrive --help %.0f ms CPU; Lua VM instructions per deals.get + deals.list: %d (%d with every"
    .. " resource loaded)"):format(root, m.cpu, m.heap, m.all_heap, m.help, m.instr, m.instr_all))
end
