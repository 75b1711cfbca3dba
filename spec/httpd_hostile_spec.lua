-- pipedrive.httpd against hostile clients (issue 13, cases 1, 3 and 10): slow
-- connections, conflicting framing headers, a NUL in the path. The listener
-- runs as its own process (support.echo_server, whose /counters route shows
-- srv:counters() and how many requests reached the handler); raw requests and
-- slow clients come from spec/support/raw_client.pl (core Perl), deliveries
-- from the curl command line tool. Traffic only to 127.0.0.1; the slow
-- clients connect from 127.0.0.2, which Linux routes to loopback too, so the
-- per-address cap can tell them from the deliveries.
local core = require "pipedrive.core"
local proc = require "support.process"
local echo = require "support.echo_server"
local slurp = require("support.util").read_file

local RAW = "spec/support/raw_client.pl"

local function sh_quote(s) return "'" .. tostring(s):gsub("'", [['\'']]) .. "'" end

-- Sends `request` verbatim; returns the answer and whether the server closed.
local function raw(port, request, seconds)
  local tmp = os.tmpname()
  local f = assert(io.open(tmp, "wb"))
  f:write(request)
  f:close()
  local p = assert(io.popen(("perl %s send 127.0.0.1 %d %d < %s"):format(RAW, port, seconds or 3, sh_quote(tmp))))
  local out = p:read("*a")
  p:close()
  os.remove(tmp)
  local body, mark = out:match("^(.*)\n(%-%-%a+%-%-)\n$")
  return body or out, mark == "--closed--"
end

-- One delivery with curl: the status code (0 when nothing answered).
local function deliver(port)
  local p = assert(io.popen(("curl -s -o /dev/null -w '%%{http_code}' --max-time 3 -X POST -d '{}' "
    .. "-H 'content-type: application/json' http://127.0.0.1:%d/hook"):format(port)))
  local code = p:read("*a")
  p:close()
  return tonumber(code) or 0
end

local function counters(port)
  local p = assert(io.popen(("curl -s --max-time 3 http://127.0.0.1:%d/counters"):format(port)))
  local body = p:read("*a")
  p:close()
  return echo.decode(body)
end

-- Starts `count` slow clients from 127.0.0.2 in the background; returns a
-- function that waits for them and gives their "opened=N closed=M refused=R".
local function slow_clients(port, count, seconds, interval)
  local out, ready = os.tmpname(), os.tmpname()
  os.remove(out)
  os.remove(ready)
  os.execute(("(perl %s slow 127.0.0.1 %d %d %d 127.0.0.2 %s 0 %s > %s.part; mv %s.part %s) >/dev/null 2>&1 &")
    :format(RAW, port, count, seconds, tostring(interval), sh_quote(ready), sh_quote(out), sh_quote(out),
      sh_quote(out)))
  local deadline = core.now() + 20
  while not slurp(ready) and core.now() < deadline do core.sleep(0.05) end
  assert(slurp(ready), "the slow clients did not start")
  return function()
    local limit = core.now() + seconds + 20
    while not slurp(out) and core.now() < limit do core.sleep(0.1) end
    local text = slurp(out) or ""
    os.remove(out)
    os.remove(ready)
    local o, c, r = text:match("opened=(%d+) closed=(%d+) refused=(%d+)")
    return { opened = tonumber(o), closed = tonumber(c), refused = tonumber(r) }
  end
end

local function listener(args)
  local log = os.tmpname()
  local p = proc.spawn{ script = "spec/support/echo_server.lua", args = args or {}, log = log }
  return p, function()
    p:stop()
    os.remove(log)
  end
end

describe("pipedrive.httpd against hostile clients", function()
  describe("framing and path", function()
    local p, done

    setup(function() p, done = listener({ "--max-body", "4096" }) end)
    teardown(function() if done then done() end end)

    -- Sends the request, expects one 400 (or `status`), a closed connection
    -- and no handler call at all.
    local function refused(request, status)
      local before = counters(p.port).calls
      local answer, closed = raw(p.port, request)
      assert.equal(status or 400, tonumber(answer:match("^HTTP/1%.1 (%d%d%d)")))
      -- every answer on the connection is that refusal (libmicrohttpd 0.9.75 sends its own 400
      -- for "Content-Length: 5, 5" twice), never the smuggled request's
      local _, answers = answer:gsub("HTTP/1%.1 %d%d%d", "")
      local _, refusals = answer:gsub("HTTP/1%.1 " .. (status or 400), "")
      assert.is_true(answers >= 1)
      assert.equal(answers, refusals)
      assert.is_true(closed)
      assert.equal(before, counters(p.port).calls)
    end

    it("refuses two different Content-Length values: no smuggled second request", function()
      refused("POST /hook HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 52\r\n\r\n"
        .. "helloPOST /smuggled HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
    end)

    it("refuses two equal Content-Length headers", function()
      refused("POST /hook HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello")
    end)

    it("refuses Content-Length together with Transfer-Encoding", function()
      refused("POST /hook HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
        .. "0\r\n\r\nPOST /smuggled HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
    end)

    it("refuses a coding other than chunked, and a length that is not digits", function()
      refused("POST /hook HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n")
      refused("POST /hook HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"
        .. "0\r\n\r\n")
      refused("POST /hook HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 5\r\n\r\nhello")
    end)

    it("refuses malformed chunk sizes", function()
      refused("POST /hook HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n")
      refused("POST /hook HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\nhello\r\n0\r\n\r\n")
      -- a size past 64 bits is libmicrohttpd's 413
      refused("POST /hook HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        .. ("f"):rep(40) .. "\r\nhello\r\n0\r\n\r\n", 413)
    end)

    it("refuses a NUL in the path (POST /%00xyz is not /)", function()
      refused("POST /%00xyz HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}")
      refused("POST /hook%00 HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
    end)

    it("still serves well-framed requests, chunked ones included, and counts the refusals", function()
      local answer = raw(p.port, "POST /hook HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
        .. "Connection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
      assert.equal("200", answer:match("^HTTP/1%.1 (%d%d%d)"))
      assert.truthy(answer:find('["body"] = "hello"', 1, true))
      assert.is_true(counters(p.port).bad_request >= 7) -- ours; libmicrohttpd's own 400s are not counted
    end)
  end)

  describe("slow connections", function()
    it("300 slow clients from one address leave deliveries answered (per-address cap)", function()
      local p, done = listener({ "--request-timeout", "3" })
      local finish = slow_clients(p.port, 300, 5, 0.5)
      local ok = 0
      for _ = 1, 5 do
        if deliver(p.port) == 200 then ok = ok + 1 end
        core.sleep(0.3)
      end
      local r = finish()
      done()
      assert.equal(5, ok)
      assert.equal(300, r.opened + r.refused)
    end)

    it("past connection_limit the oldest unfinished request makes room, so deliveries get through", function()
      local p, done = listener({ "--request-timeout", "30", "--connection-limit", "64", "--per-ip-limit", "0" })
      local finish = slow_clients(p.port, 300, 5, 0.5)
      local ok = 0
      for _ = 1, 5 do
        if deliver(p.port) == 200 then ok = ok + 1 end
        core.sleep(0.3)
      end
      local c = counters(p.port)
      finish()
      done()
      assert.equal(5, ok)
      assert.is_true(c.evicted >= 300 - 64, "evicted " .. tostring(c.evicted))
      assert.is_true(c.open <= 64, "open " .. tostring(c.open))
    end)

    it("a request head that trickles in is cut at request_timeout, though each byte restarts the idle timer", function()
      local p, done = listener({ "--request-timeout", "2" })
      local t0 = core.now()
      local finish = slow_clients(p.port, 3, 6, 0.3)
      local r = finish()
      local c = counters(p.port)
      done()
      assert.equal(3, r.opened)
      assert.equal(3, r.closed)
      assert.equal(3, c.timed_out)
      assert.is_true(core.now() - t0 < 15)
    end)
  end)
end)
