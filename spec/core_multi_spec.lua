-- core.multi_new (csrc/multi.c) against a pipedrive.sandbox.httpd server (the fault build) on loopback
-- that holds some answers back (a handler's fourth result): many transfers
-- at once, results by id, removal, misuse, close; and the server's count of
-- requests in flight.
local core = require "pipedrive.core"
local httpd = require "pipedrive.sandbox.httpd"

local raises = require("support.util").raises

describe("core.multi_new", function()
  local srv, base, pid

  -- The server runs in a child process so that it serves while this one waits in m:step.
  setup(function()
    local port_file = os.tmpname()
    local script = ([[
      package.cpath = %q
      local httpd = require "pipedrive.sandbox.httpd"
      local srv
      srv = httpd.listen{ port = 0, handler = function(req)
        if req.path == "/ae" then return 200, {}, req.headers["accept-encoding"] or "none" end
        if req.path == "/stats" then
          local st = srv:stats(req.query_string == "reset")
          return 200, {}, ("%%d %%d"):format(st.held, st.peak_in_flight)
        end
        local hold = tonumber(req.query_string:match("hold=([%%d.]+)"))
        return 200, { ["x-path"] = req.path }, "body of " .. req.path, hold
      end }
      local f = io.open(%q .. ".tmp", "w"); f:write(srv:port()); f:close()
      os.rename(%q .. ".tmp", %q)
      local stop = os.time() + 60
      while os.time() < stop do srv:step(0.05) end
    ]]):format(package.cpath, port_file, port_file, port_file)
    local script_file = os.tmpname()
    local sf = assert(io.open(script_file, "w"))
    sf:write(script)
    sf:close()
    local lua = os.getenv("LUA") or require("pipedrive.sandbox.spawn").interpreter()
    local p = io.popen(lua .. " " .. script_file .. " >/dev/null 2>&1 & echo $!")
    pid = p:read("*l")
    p:close()
    local port
    for _ = 1, 200 do
      local f = io.open(port_file)
      local s = f and f:read("*a")
      if f then f:close() end
      port = s and tonumber(s)
      if port then break end
      core.sleep(0.02)
    end
    os.remove(port_file)
    os.remove(script_file)
    assert(port, "test server did not start")
    base = ("http://127.0.0.1:%d"):format(port)
    srv = true
  end)

  teardown(function()
    if pid then os.execute("kill " .. pid .. " 2>/dev/null") end
  end)

  local function collect(m, want)
    local got = {}
    local deadline = core.now() + 10
    while #got < want and core.now() < deadline do
      for _, id in ipairs({ m:step(1) }) do got[#got + 1] = id end
    end
    return got
  end

  it("runs transfers at once and hands each answer to its id", function()
    assert.is_true(srv)
    local m = core.multi_new{ timeout = 5 }
    local ids = {}
    for i = 1, 10 do ids[i] = m:add{ method = "GET", url = base .. "/r" .. i .. "?hold=0.3" } end
    assert.equal(10, m:pending())
    local t = core.now()
    local got = collect(m, 10)
    local wall = core.now() - t
    assert.equal(10, #got)
    assert.is_true(wall < 2, ("took %.2f s"):format(wall)) -- sequential would take 3 s
    for i = 1, 10 do
      local res = assert(m:result(ids[i]))
      assert.equal(200, res.status)
      assert.equal("/r" .. i, res.headers["x-path"])
      assert.equal("body of /r" .. i, res.body)
    end
    assert.equal(0, m:pending())
    -- the server saw them all in flight together
    local h = core.http_new{}
    local counts = assert(h:perform{ method = "GET", url = base .. "/stats?reset" }).body
    h:close()
    assert.equal("0 10", counts)
    m:close()
  end)

  it("gives transport errors as results, with the path and no query", function()
    local m = core.multi_new{ timeout = 5 }
    local id = m:add{ method = "GET", url = "http://127.0.0.1:1/nothing?secret=abcdef" }
    collect(m, 1)
    local res, err = m:result(id)
    assert.is_nil(res)
    assert.equal("network", err.kind)
    assert.equal("connect", err.stage)
    assert.equal("/nothing", err.path)
    assert.is_nil(tostring(err):find("abcdef", 1, true))
    m:close()
  end)

  it("times out per transfer, and removes one without its answer", function()
    local m = core.multi_new{ timeout = 0.2 }
    local slow = m:add{ method = "GET", url = base .. "/slow?hold=2" }
    local dropped = m:add{ method = "GET", url = base .. "/dropped?hold=2" }
    m:remove(dropped)
    assert.equal(1, m:pending())
    local got = collect(m, 1)
    assert.same({ slow }, got)
    local _, err = m:result(slow)
    assert.equal("timeout", err.kind)
    assert.equal(0, m:pending())
    m:close()
  end)

  it("asks for a compressed answer only when the request says so (req.compress), on the same handle", function()
    local h = core.http_new{}
    local m = core.multi_new{}
    local function via_multi(req)
      local id = m:add(req)
      collect(m, 1)
      return m:result(id)
    end
    for _, perform in ipairs({ function(req) return h:perform(req) end, via_multi }) do
      local seen = {}
      local asks = { true, false, nil, true }
      for i = 1, 4 do
        seen[i] = assert(perform{ method = "GET", url = base .. "/ae", compress = asks[i] }).body
      end
      assert.matches("gzip", seen[1])
      assert.equal("none", seen[2])
      assert.equal("none", seen[3])
      assert.matches("gzip", seen[4])
    end
    h:close()
    m:close()
  end)

  it("reuses slots, refuses misuse, and closes idempotently", function()
    local m = core.multi_new{}
    local a = m:add{ method = "GET", url = base .. "/a" }
    collect(m, 1)
    assert(m:result(a))
    local b = m:add{ method = "GET", url = base .. "/b" }
    assert.equal(a, b) -- the free slot again
    assert.matches("no transfer 99", raises(m.result, m, 99))
    assert.matches("still running", raises(m.result, m, b))
    assert.matches("method must be", raises(m.add, m, { method = "BREW", url = base }))
    assert.matches("invalid value for header", raises(m.add, m, { method = "GET", url = base,
                                                                  headers = { x = "a\r\nb" } }))
    assert.same({ b }, collect(m, 1))
    assert.equal(0, select("#", m:step(0))) -- a finished transfer is reported once
    assert(m:result(b))
    assert.matches("pipedrive.multi %(open%)", tostring(m))
    m:close()
    m:close()
    assert.matches("closed", raises(m.add, m, { method = "GET", url = base }))
    assert.equal(0, m:pending())
    assert.matches("pipedrive.multi %(closed%)", tostring(m))
  end)
end)

describe("pipedrive.sandbox.httpd hold", function()
  it("refuses a hold that is not a number", function()
    local srv = httpd.listen{ port = 0, log_errors = false, handler = function() return 200, {}, "x", "soon" end }
    local m = core.multi_new{ timeout = 5 }
    local id = m:add{ method = "GET", url = ("http://127.0.0.1:%d/"):format(srv:port()) }
    local got
    for _ = 1, 100 do
      srv:step(0.01)
      got = select(1, m:step(0.01))
      if got then break end
    end
    local res = assert(m:result(id))
    assert.equal(500, res.status)
    assert.matches("fourth result", res.body)
    m:close()
    srv:close()
  end)

  it("closes with answers still held", function()
    local srv = httpd.listen{ port = 0, handler = function() return 200, {}, "late", 30 end }
    local m = core.multi_new{ timeout = 5 }
    m:add{ method = "GET", url = ("http://127.0.0.1:%d/"):format(srv:port()) }
    for _ = 1, 20 do
      srv:step(0.01)
      m:step(0.01)
    end
    assert.equal(1, srv:stats().held)
    srv:close()
    srv:close()
    m:close()
  end)
end)

