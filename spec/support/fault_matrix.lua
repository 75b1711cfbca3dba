-- The fault matrix as data: each fault the sandbox injects, against a read
-- (GET a deal), a delete and an add, with the outcome the client must reach.
-- spec/e2e_faults_spec.lua asserts every cell; bench/faults.lua runs the same
-- cells and counts what happened (requests sent, records created).
--
-- A case: name, rules (fault rules for one operation's method), client
-- (extra options of pipedrive.new), limit (turns on the sandbox's burst
-- limiter with that many requests per window, and the operation runs `calls`
-- times in a row), expect[op] = { ok = true } or { kind, attempts, stage },
-- plus `created` for adds (deals that must exist afterwards: 1 when the
-- sandbox processed the request, 0 when it did not) and for deletes `gone`
-- (the deal must be deleted afterwards) and `or_kind` (an accepted error
-- when the retry finds the deal already deleted).
local core = require "pipedrive.core"

local M = {}

M.RETRIES = { base = 0.05, cap = 0.2, deadline = 5 }

local function rule(t)
  return function(method)
    local r = { match = { method = method } }
    for k, v in pairs(t) do r[k] = v end
    return { r }
  end
end

local OK = { ok = true }
local OK_ADD = { ok = true, created = 1 }

M.CASES = {
  { name = "429 with x-ratelimit-reset", rules = rule{ fault = "status", status = 429, reset = 0, count = 2 },
    expect = { read = OK, delete = { ok = true, gone = true }, add = OK_ADD } },
  { name = "503 before processing", rules = rule{ fault = "status", status = 503, count = 2 },
    expect = { read = OK, delete = { ok = true, gone = true },
               add = { kind = "server", attempts = 1, created = 0 } } },
  { name = "502 after processing", rules = rule{ fault = "status", status = 502, when = "after", count = 1 },
    expect = { read = OK, delete = { ok = true, or_kind = "not_found", gone = true },
               add = { kind = "server", attempts = 1, created = 1 } } },
  { name = "dropped before the answer, not processed", rules = rule{ fault = "drop", count = 1 },
    expect = { read = OK, delete = { ok = true, gone = true },
               add = { kind = "network", stage = "transfer", attempts = 1, created = 0 } } },
  { name = "dropped before the answer, processed", rules = rule{ fault = "drop", when = "after", count = 1 },
    expect = { read = OK, delete = { ok = true, or_kind = "not_found", gone = true },
               add = { kind = "network", stage = "transfer", attempts = 1, created = 1 } } },
  { name = "dropped in the middle of the body", rules = rule{ fault = "cut", count = 1 },
    expect = { read = OK, delete = { ok = true, or_kind = "not_found", gone = true },
               add = { kind = "network", stage = "transfer", attempts = 1, created = 1 } } },
  { name = "headers then nothing", rules = rule{ fault = "cut", bytes = 0, count = 1 },
    expect = { read = OK, delete = { ok = true, or_kind = "not_found", gone = true },
               add = { kind = "network", stage = "transfer", attempts = 1, created = 1 } } },
  { name = "slow drip body within the timeout", client = { timeout = 5 },
    rules = rule{ fault = "drip", bytes = 64, interval = 0.02, count = 1 },
    expect = { read = OK, delete = { ok = true, gone = true }, add = OK_ADD } },
  { name = "slow drip body past the timeout", client = { timeout = 0.4 },
    rules = rule{ fault = "drip", bytes = 8, interval = 0.1, count = 1 },
    expect = { read = OK, delete = { ok = true, or_kind = "not_found", gone = true },
               add = { kind = "timeout", attempts = 1, created = 1 } } },
  { name = "answer after the client's timeout", client = { timeout = 0.3 },
    rules = rule{ fault = "delay", delay = 0.6, count = 1 },
    expect = { read = OK, delete = { ok = true, or_kind = "not_found", gone = true },
               add = { kind = "timeout", attempts = 1, created = 1 } } },
  { name = "Cloudflare HTML 403", rules = rule{ fault = "html403", count = 1 },
    expect = { read = { kind = "forbidden", attempts = 1 }, delete = { kind = "forbidden", attempts = 1 },
               add = { kind = "forbidden", attempts = 1, created = 0 } } },
  { name = "truncated JSON", rules = rule{ fault = "truncate", count = 1 },
    expect = { read = { kind = "decode", attempts = 1 }, delete = { kind = "decode", attempts = 1, gone = true },
               add = { kind = "decode", attempts = 1, created = 1 } } },
  { name = "invalid JSON", rules = rule{ fault = "invalid_json", count = 1 },
    expect = { read = { kind = "decode", attempts = 1 }, delete = { kind = "decode", attempts = 1, gone = true },
               add = { kind = "decode", attempts = 1, created = 1 } } },
  { name = "the sandbox's burst limiter (3 per 2 s)", limit = 3, calls = 5,
    expect = { read = OK, delete = { ok = true, gone = true }, add = { ok = true, created = 5 } } },
}

M.OPS = { "read", "delete", "add" }
M.METHOD = { read = "GET", delete = "DELETE", add = "POST" }

local function deals_titled(sb, title)
  local n = 0
  for _, d in ipairs(sb.state().deals) do
    if d.title == title then n = n + 1 end
  end
  return n
end

local function is_deleted(sb, id)
  for _, d in ipairs(sb.state().deals) do
    if d.id == id then return d.is_deleted == true or d.deleted == true or d.status == "deleted" end
  end
  return true
end

--- Runs one cell against the sandbox `sb` (spec/support/sandbox.lua) and
-- returns what happened: { results = { {value, err}... }, requests (what the
-- sandbox received for the operation's method, 429s included), created (deals
-- with this cell's title), gone (for deletes), elapsed, deadline }.
function M.run(sb, case, op)
  sb.admin("DELETE", "/_sandbox/faults")
  sb.admin("DELETE", "/_sandbox/rate_limit")
  sb.reset()
  local o = { retries = M.RETRIES }
  for k, v in pairs(case.client or {}) do o[k] = v end
  local pd = sb.client(o)
  local setup = sb.client{ retries = false }
  local calls = case.calls or 1
  local title = ("Matrix %s %s"):format(case.name, op)
  local ids = {}
  if op ~= "add" then
    for i = 1, calls do ids[i] = assert(setup.deals.add{ title = "Existing " .. i }).id end
  end
  setup.close()
  sb.clear_requests()
  if case.limit then sb.admin("POST", "/_sandbox/rate_limit", { limit = case.limit }) end
  if case.rules then
    local status, body = sb.admin("POST", "/_sandbox/faults", case.rules(M.METHOD[op]))
    assert(status == 200, body and body.error)
  end
  local out = { results = {}, deadline = M.RETRIES.deadline + (o.timeout or 30) }
  local t = core.now()
  for i = 1, calls do
    local v, err
    if op == "read" then v, err = pd.deals.get(ids[i])
    elseif op == "delete" then v, err = pd.deals.delete(ids[i])
    else v, err = pd.deals.add{ title = title } end
    out.results[i] = { value = v, err = err }
  end
  out.elapsed = core.now() - t
  pd.close()
  sb.admin("DELETE", "/_sandbox/rate_limit")
  sb.admin("DELETE", "/_sandbox/faults")
  local n = 0
  for _, r in ipairs(sb.requests()) do
    if r.method == M.METHOD[op] and r.path:find("^/api/v2/deals") then n = n + 1 end
  end
  out.requests = n
  out.created = op == "add" and deals_titled(sb, title) or nil
  if op == "delete" then
    out.gone = true
    for _, id in ipairs(ids) do out.gone = out.gone and is_deleted(sb, id) end
  end
  return out
end

--- Whether one result meets the cell's expectation: true, or false and why.
function M.check(expect, res)
  local err = res.err
  if expect.ok and res.value ~= nil then return true end
  if expect.ok and not expect.or_kind then return false, "expected success, got " .. tostring(err) end
  local kind = expect.kind or expect.or_kind
  if res.value ~= nil then return false, "expected an error of kind " .. kind .. ", got success" end
  if type(err) ~= "table" then return false, "the error is not a table" end
  if err.kind ~= kind then return false, ("expected kind %s, got %s"):format(kind, tostring(err)) end
  if expect.attempts and err.attempts ~= expect.attempts then
    return false, ("expected %d attempts, got %s"):format(expect.attempts, tostring(err.attempts))
  end
  if expect.stage and err.stage ~= expect.stage then
    return false, ("expected stage %s, got %s"):format(expect.stage, tostring(err.stage))
  end
  return true
end

return M
