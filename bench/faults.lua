-- Runs the fault matrix (spec/support/fault_matrix.lua) once against a fresh
-- sandbox and counts what happened, for bench/RELIABILITY.md:
--   make bench-faults        (or: lua5.4 bench/faults.lua [--rounds N])
-- Prints one line per cell, then the totals: cells, requests the sandbox
-- received under faults, deals created by adds against the deals the sandbox
-- processed (meant), duplicates, and cells whose outcome was wrong.
-- Exits 1 when a cell went wrong or a deal was duplicated.
package.path = "lua/?.lua;lua/?/init.lua;spec/?.lua;" .. package.path
package.cpath = "build/?.so;" .. package.cpath

local sandbox = require "support.sandbox"
local matrix = require "support.fault_matrix"

local rounds = 1
for i = 1, #arg do
  if arg[i] == "--rounds" then rounds = math.floor(tonumber(arg[i + 1]) or 1) end
end

local sb = sandbox.start{ api_token = "bench-faults-token" }
local t = { cells = 0, wrong = 0, calls = 0, requests = 0, created = 0, meant = 0, duplicates = 0,
            successes = 0, errors = 0, kinds = 0 }
local kinds = {}
for _ = 1, rounds do
  for _, case in ipairs(matrix.CASES) do
    kinds[case.name] = true
    for _, op in ipairs(matrix.OPS) do
      local expect = case.expect[op]
      local out = matrix.run(sb, case, op)
      local bad
      for _, res in ipairs(out.results) do
        t.calls = t.calls + 1
        if res.value ~= nil then t.successes = t.successes + 1 else t.errors = t.errors + 1 end
        local ok, why = matrix.check(expect, res)
        if not ok then bad = why end
      end
      if out.elapsed >= out.deadline then bad = "past its deadline" end
      if op == "add" then
        t.created = t.created + out.created
        t.meant = t.meant + expect.created
        t.duplicates = t.duplicates + math.max(0, out.created - #out.results)
        if out.created ~= expect.created then bad = ("%d deals, meant %d"):format(out.created, expect.created) end
      end
      if expect.gone and not out.gone then bad = "the deal was not deleted" end
      t.cells = t.cells + 1
      t.requests = t.requests + out.requests
      if bad then t.wrong = t.wrong + 1 end
      local first = out.results[1]
      local outcome = first.value ~= nil and "ok" or (first.err and first.err.kind or "?")
      print(("%-44s %-6s %-10s %2d requests %5.2f s%s"):format(case.name, op, outcome, out.requests, out.elapsed,
        bad and ("  WRONG: " .. bad) or ""))
    end
  end
end
sb.stop()
for _ in pairs(kinds) do t.kinds = t.kinds + 1 end

print(("faults tried: %d kinds x %d operations = %d cells (%d round%s)"):format(t.kinds, #matrix.OPS,
  t.cells, rounds, rounds == 1 and "" or "s"))
print(("calls: %d (%d succeeded, %d one clear error); requests the sandbox received: %d"):format(t.calls,
  t.successes, t.errors, t.requests))
print(("adds: deals created %d, meant %d (processed by the sandbox), duplicates %d"):format(t.created, t.meant,
  t.duplicates))
print(("cells with a wrong outcome: %d"):format(t.wrong))
os.exit((t.wrong == 0 and t.duplicates == 0) and 0 or 1)
