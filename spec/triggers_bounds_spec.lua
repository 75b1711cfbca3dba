-- Issue 13, the webhook path: memory bounded by configuration whatever the
-- traffic (case 2), and exact webhook ids (case 8). The bodies are written as
-- JSON text, as an attacker or a peculiar sender would: numbers JSON allows
-- but a double cannot hold, words no subscription names, ids of any length.
local compat = require "pipedrive.compat"
local core = require "pipedrive.core"
local triggers = require "pipedrive.triggers"
local state = require "pipedrive.triggers.state"
local MAX_KEY = require("pipedrive.triggers.event").MAX_KEY

local USER, PASSWORD = "hook", "s3cret:pw"
local AUTH = "Basic " .. core.base64_encode(USER .. ":" .. PASSWORD)
local HEADERS = { ["content-type"] = "application/json", authorization = AUTH }

local function make(opts)
  local o = { user = USER, password = PASSWORD, log = function() end }
  for k, v in pairs(opts or {}) do o[k] = v end
  return triggers.new(nil, o)
end

local function post(tr, body)
  return (tr:handle{ method = "POST", headers = HEADERS, body = body, remote_addr = "127.0.0.1" })
end

-- The Lua heap in KiB after full collections.
local function heap()
  collectgarbage("collect")
  collectgarbage("collect")
  return collectgarbage("count")
end

-- A v2 body; `id`, `entity_id` and `data_id` are JSON text (numbers unquoted).
local function v2(entity, action, id, entity_id, data_id)
  return ('{"meta":{"action":"%s","entity":"%s","id":%s,"entity_id":%s,"webhook_id":"21","version":"2.0",'
    .. '"timestamp":"2026-11-28T12:00:00Z","attempt":1},"data":{"id":%s,"title":"t"},"previous":null}')
    :format(action, entity, id, entity_id, data_id)
end

-- A v1 body; `id` is JSON text.
local function v1(object, action, id)
  return ('{"v":1,"event":"%s.%s","retry":0,"meta":{"v":1,"action":"%s","object":"%s","id":%s,"webhook_id":"31",'
    .. '"timestamp":1795867200,"timestamp_micro":1795867200250000},"current":{"id":%s,"name":"n"},"previous":null}')
    :format(action, object, action, object, id, id)
end

-- The number of (object, action) lists in the callback cache.
local function cached_lists(tr)
  local n = 0
  for _, per in pairs(state.peek(tr).by_event) do
    for _ in pairs(per) do n = n + 1 end
  end
  return n
end

describe("issue 13 case 2: the webhook path's memory is bounded", function()
  -- 200,000 varied deliveries: entity and action words nobody subscribed to
  -- (a new pair almost every time), known ones, failing callbacks (the
  -- partial-success memory), redeliveries, v1 and v2, event ids of 3 KB
  -- (keys are remembered) and of 5 KB (refused). dedupe_max = 100.
  it("200k varied events through handle keep the heap under a bound", function()
    local tr = make{ dedupe_max = 100 }
    local ran = 0
    tr:on("deal.added", function() ran = ran + 1 end)
    tr:on("*.updated", function() ran = ran + 1 end)
    tr:on("person.*", function(ev)
      if ev.id % 3 == 0 then error("failing on purpose") end
      ran = ran + 1
    end)
    local long = ("L"):rep(3000)
    local function body(i)
      local k = i % 10
      if k == 0 then return v2("deal", "create", ('"e%d"'):format(i), i, i) end
      if k == 1 then return v2("person", "change", ('"e%d"'):format(i), i, i) end
      if k == 2 then return v2("x" .. i, "y" .. (i * 7), ('"e%d"'):format(i), i, i) end
      if k == 3 then return v2("deal", "act" .. i, ('"e%d"'):format(i), i, i) end
      if k == 4 then return v2("obj" .. i, "change", '"same"', i, i) end -- redeliveries of one id
      if k == 5 then return v1("o" .. i, "updated", i) end
      if k == 6 then return v1("person", "deleted", i) end
      if k == 7 and i % 100 == 7 then return v2("deal", "create", ('"%s%d"'):format(long, i), i, i) end
      if k == 7 and i % 100 == 17 then return v2("deal", "create", ('"%s%s%d"'):format(long, long, i), i, i) end
      if k == 7 then return v2("deal", "create", ('"e%d"'):format(i), i, i) end
      if k == 8 then return v2("w" .. i, "v" .. i, tostring(i) .. "123456789012345678901234567890", i, i) end
      return v1("p" .. (i % 977), "a" .. i, i .. ".5")
    end
    -- warm up (the caches fill to their caps), then measure the rest
    local N, WARM = 200000, 5000
    local statuses = {}
    for i = 1, WARM do post(tr, body(i)) end
    local before = heap()
    local t0 = core.now()
    for i = WARM + 1, N do
      local s = post(tr, body(i))
      statuses[s] = (statuses[s] or 0) + 1
    end
    local took = core.now() - t0
    local after = heap()
    print(("\n  200k events via handle: %.1f s (%.0f/s), heap %.0f -> %.0f KiB, %d callback runs")
      :format(took, (N - WARM) / took, before, after, ran))
    assert.is_true(after - before < 2048, ("the heap grew by %.0f KiB"):format(after - before))
    assert.is_true(statuses[200] > 0.5 * N and statuses[500] > 0 and statuses[400] > 0)
    assert.is_true(ran > 0.3 * N)
    assert.is_true(cached_lists(tr) <= 12 * 6)
    assert.is_true(tr:remembered() <= 100)
    local st = state.peek(tr)
    assert.is_true(st.partial:size() <= 100)
    assert.is_nil(next(st.inflight))
    for k in pairs(st.memory.items) do assert.is_true(#k <= MAX_KEY) end
  end)

  it("the callback cache holds one list per known pair (+ one for unknown words), answers unchanged", function()
    local tr = make()
    local got = {}
    tr:on("*", function(ev) got[#got + 1] = ev.event end)
    tr:on("deal.*", function() got[#got + 1] = "deal.*" end)
    for i = 1, 500 do
      assert.equal(200, post(tr, v2("thing" .. i, "act" .. i, ('"c%d"'):format(i), i, i)))
    end
    assert.equal(200, post(tr, v2("deal", "zap", '"z"', 1, 1)))
    assert.equal(2, cached_lists(tr)) -- "?.?" and "deal.?"
    assert.equal(502, #got)
    assert.equal("thing500.act500", got[500])
    assert.same({ "deal.*", "deal.zap" }, { got[501], got[502] }) -- most specific key first
  end)

  it("a long event id is remembered as a bounded key and still de-duplicates; a huge one is refused", function()
    local tr = make()
    local n = 0
    tr:on("deal.added", function() n = n + 1 end)
    local a, b = ("A"):rep(4000), ("A"):rep(3999) .. "B"
    assert.equal(200, post(tr, v2("deal", "create", '"' .. a .. '"', 1, 1)))
    assert.equal(200, post(tr, v2("deal", "create", '"' .. a .. '"', 1, 1))) -- a redelivery
    assert.equal(200, post(tr, v2("deal", "create", '"' .. b .. '"', 1, 1))) -- another event
    assert.equal(2, n)
    assert.equal(2, tr:remembered())
    for k in pairs(state.peek(tr).memory.items) do assert.is_true(#k <= MAX_KEY) end
    local status, _, body = tr:handle{ method = "POST", headers = HEADERS,
                                       body = v2("deal", "create", '"' .. ("C"):rep(5000) .. '"', 1, 1) }
    assert.equal(400, status)
    assert.matches("too long", body)
    assert.equal(2, n)
  end)

  it("log lines quote at most 80 bytes of an id", function()
    local lines = {}
    local tr = make{ log = function(line) lines[#lines + 1] = line end }
    tr:on("deal.added", function() end)
    local long = ("9"):rep(100000)
    assert.equal(200, post(tr, v2("deal", "create", '"x"', '"' .. long .. '"', 1)))
    assert.equal(200, post(tr, v2("deal", "create", '"x"', '"' .. long .. '"', 1)))
    assert.equal(2, #lines)
    for _, line in ipairs(lines) do assert.is_true(#line < 200, line:sub(1, 200)) end
    assert.matches(("9"):rep(80) .. "%.%.%.", lines[1])
  end)

  it("5,000 varied events through the real listener keep its heap under a bound", function()
    local proc = require "support.process"
    local report = os.tmpname()
    local p = proc.spawn{ code = [[
      local proc = require "support.process"
      local o = proc.parse_args(arg)
      local tr = require("pipedrive.triggers").new(nil, { user = "hook", password = "s3cret:pw", dedupe_max = 50,
                                                          log = function() end })
      tr:on("deal.added", function() end)
      tr:on("user.deleted", function()
        collectgarbage("collect")
        collectgarbage("collect")
        local f = assert(io.open(os.getenv("REPORT"), "a"))
        f:write(("%.0f\n"):format(collectgarbage("count")))
        f:close()
      end)
      local port = assert(tr:listen{ port = 0, path = "/hook" })
      proc.announce(o.port_file, port)
      tr:serve{ timeout = 120 }
    ]], env = { REPORT = report } }
    local h = core.http_new{ timeout = 10 }
    local url = p.url .. "/hook"
    local function send(body)
      local res = assert(h:perform{ method = "POST", url = url, headers = HEADERS, body = body })
      return res.status
    end
    local function report_heap(i)
      assert.equal(200, send(v2("user", "delete", ('"r%d"'):format(i), 1, 1)))
      local lines = {}
      for line in io.lines(report) do lines[#lines + 1] = tonumber(line) end
      return lines[#lines]
    end
    local function batch(from, to)
      for i = from, to do
        local s = send(i % 2 == 0 and v2("e" .. i, "a" .. i, ('"%d"'):format(i), i, i)
          or v2("deal", "create", i .. "123456789012345678901234567890.5", i, i))
        assert.equal(200, s)
      end
    end
    batch(1, 1000)
    local before = report_heap(1)
    batch(1001, 5000)
    local after = report_heap(2)
    h:close()
    p:stop()
    os.remove(report)
    print(("\n  5k events via the listener: heap %.0f -> %.0f KiB"):format(before, after))
    assert.is_true(after - before < 256, ("the listener's heap grew by %.0f KiB"):format(after - before))
  end)
end)

describe("issue 13 case 8: webhook ids stay exact", function()
  local function recorded()
    local tr = make()
    local evs = {}
    tr:on("*", function(ev) evs[#evs + 1] = ev end)
    return tr, evs
  end
  local D35a, D35b = "12345678901234567890123456789012345", "12345678901234567890123456789012346"

  it("two distinct 35-digit event ids are two events, ids kept as their digits", function()
    local tr, evs = recorded()
    assert.equal(200, post(tr, v2("deal", "create", D35a, 5, 5)))
    assert.equal(200, post(tr, v2("deal", "create", D35b, 5, 5)))
    assert.equal(2, #evs)
    assert.equal(D35a, evs[1].meta.event_id)
    assert.equal(D35b, evs[2].meta.event_id)
    assert.equal("v2|" .. D35a, evs[1].meta.dedupe_key)
    assert.equal(200, post(tr, v2("deal", "create", D35b, 5, 5))) -- a redelivery still de-duplicates
    assert.equal(2, #evs)
  end)

  it("ids with a fraction are strings, never floats; 1.5 and 1.50000000000000001 differ", function()
    local tr, evs = recorded()
    assert.equal(200, post(tr, v2("deal", "create", "1.5", "1.5", "1.5")))
    assert.equal(200, post(tr, v2("deal", "create", "1.50000000000000001", 7, 7)))
    assert.equal(200, post(tr, v2("deal", "create", "1.0000000000000000001", 8, 8))) -- not the integer 1
    assert.equal(3, #evs)
    assert.equal("1.5", evs[1].meta.event_id)
    assert.equal("1.5", evs[1].id)
    assert.equal("1.50000000000000001", evs[2].meta.event_id)
    assert.equal("1.0000000000000000001", evs[3].meta.event_id)
    for _, ev in ipairs(evs) do
      assert.not_equal("float", compat.math_type(ev.id))
      assert.not_equal("float", compat.math_type(ev.meta.event_id))
    end
    assert.equal(1.5, evs[1].current.id) -- the record itself is decoded as usual
  end)

  it("without an event id, distinct large entity ids give distinct keys (v2 and v1)", function()
    local tr, evs = recorded()
    local function nometa(entity_id)
      return ('{"meta":{"action":"change","entity":"deal","entity_id":%s,"webhook_id":%s,"version":"2.0",'
        .. '"timestamp":"2026-11-28T12:00:00Z"},"data":{"id":%s},"previous":{"id":%s}}')
        :format(entity_id, D35a, entity_id, entity_id)
    end
    assert.equal(200, post(tr, nometa(D35a)))
    assert.equal(200, post(tr, nometa(D35b)))
    assert.equal(200, post(tr, nometa("9007199254740993")))
    assert.equal(200, post(tr, nometa("9007199254740992")))
    assert.equal(200, post(tr, v1("deal", "updated", "9007199254740993")))
    assert.equal(200, post(tr, v1("deal", "updated", "9007199254740992")))
    assert.equal(200, post(tr, v1("deal", "updated", D35a)))
    assert.equal(200, post(tr, v1("deal", "updated", D35b)))
    assert.equal(8, #evs)
    assert.equal(D35a, evs[1].id)
    assert.equal(D35b, evs[2].id)
    assert.equal(D35a, evs[1].meta.webhook_id)
    local keys = {}
    for _, ev in ipairs(evs) do
      assert.not_equal("float", compat.math_type(ev.id))
      assert.is_nil(keys[ev.meta.dedupe_key])
      keys[ev.meta.dedupe_key] = true
    end
    -- beyond 2^53: an exact integer where the Lua number type holds it, else the digits
    if compat.has_integers then
      assert.equal("integer", compat.math_type(evs[3].id))
      assert.equal("9007199254740993", ("%d"):format(evs[3].id))
    else
      assert.equal("9007199254740993", evs[3].id)
    end
    assert.equal("9007199254740992", ("%d"):format(evs[4].id))
  end)

  it("to_id: an exact integer or a string, never a float", function()
    local to_id = triggers.to_id
    assert.equal(42, to_id(42))
    assert.equal(42, to_id("42"))
    assert.equal(42, to_id("42.0"))
    assert.equal(42, to_id(42.0))
    assert.equal("integer", compat.math_type(to_id(42.0)))
    assert.equal("1.5", to_id(1.5))
    assert.equal("0.1", to_id(0.1))
    assert.equal(D35a, to_id(D35a))
    assert.equal("42.", to_id("42."))
    assert.equal("1e3", to_id("1e3"))
    assert.equal("deadbeef-0000", to_id("deadbeef-0000"))
    assert.is_nil(to_id(0 / 0))
    assert.is_nil(to_id(""))
    local big = to_id(2 ^ 80)
    assert.equal("1208925819614629174706176", big)
    if not compat.has_integers then assert.equal("9007199254740993", to_id("9007199254740993")) end
  end)
end)
