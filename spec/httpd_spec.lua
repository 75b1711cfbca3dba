-- pipedrive.httpd: the libmicrohttpd server. The echo server runs as its own
-- process (support.process) and is driven with the curl command line tool, so
-- these specs do not depend on the client transport they help to test.
local httpd = require "pipedrive.httpd"
local proc = require "support.process"
local echo = require "support.echo_server"

local function sh_quote(s) return "'" .. tostring(s):gsub("'", [['\'']]) .. "'" end

local slurp = require("support.util").read_file

-- Builds a curl command line writing headers and body to temporary files.
local function curl_cmd(method, url, opts)
  opts = opts or {}
  local hfile, bfile = os.tmpname(), os.tmpname()
  local parts = { "curl -s -g -o", sh_quote(bfile), "-D", sh_quote(hfile), "-w '%{http_code}'", "--max-time 10" }
  if method ~= "GET" then parts[#parts + 1] = "-X " .. sh_quote(method) end
  for _, h in ipairs(opts.headers or {}) do parts[#parts + 1] = "-H " .. sh_quote(h) end
  if opts.body_file then parts[#parts + 1] = "--data-binary @" .. sh_quote(opts.body_file) end
  parts[#parts + 1] = sh_quote(url)
  return table.concat(parts, " "), hfile, bfile
end

-- Reads what curl_cmd's files hold: status, headers (lower-cased names), body.
local function curl_result(code, hfile, bfile)
  local headers = {}
  for line in (slurp(hfile) or ""):gmatch("[^\r\n]+") do
    local k, v = line:match("^([^:]+):%s*(.*)$")
    if k then headers[k:lower()] = v end
  end
  local body = slurp(bfile) or ""
  os.remove(hfile)
  os.remove(bfile)
  return tonumber(code), headers, body
end

-- One request with the curl CLI; `opts.body` is sent verbatim.
local function curl(method, url, opts)
  opts = opts or {}
  local tmp
  if opts.body then
    tmp = os.tmpname()
    local f = assert(io.open(tmp, "wb"))
    f:write(opts.body)
    f:close()
    opts.body_file = tmp
  end
  local cmd, hfile, bfile = curl_cmd(method, url, opts)
  local p = assert(io.popen(cmd))
  local code = p:read("*a")
  p:close()
  if tmp then os.remove(tmp) end
  return curl_result(code, hfile, bfile)
end

-- For servers inside this process: start curl in the background, then drive
-- srv:step() until curl has finished (or `seconds` passed).
local function curl_against(srv, method, path, opts, seconds)
  local cmd, hfile, bfile = curl_cmd(method, "http://127.0.0.1:" .. srv:port() .. path, opts)
  local done = os.tmpname()
  os.remove(done)
  os.execute("(" .. cmd .. " > " .. sh_quote(done .. ".part") .. "; mv " .. sh_quote(done .. ".part") .. " "
    .. sh_quote(done) .. ") >/dev/null 2>&1 &")
  local deadline = os.time() + (seconds or 5)
  while not slurp(done) and os.time() <= deadline do
    local ok = pcall(srv.step, srv, 0.05)
    if not ok then os.execute("sleep 0.05") end -- the server was closed by its handler
  end
  local code = slurp(done)
  os.remove(done)
  return curl_result(code, hfile, bfile)
end

describe("pipedrive.httpd", function()
  describe("served from another process", function()
    local p, base, log

    setup(function()
      log = os.tmpname()
      p = proc.spawn{ script = "spec/support/echo_server.lua", args = { "--max-body", "1024" }, log = log }
      base = p.url
    end)

    teardown(function()
      if p then p:stop() end
      os.remove(log)
    end)

    it("picks a free port for port 0 and announces it", function()
      assert.is_number(p.port)
      assert.is_true(p.port > 0 and p.port < 65536)
      assert.is_true(p:alive())
    end)

    it("passes method, decoded path, raw path and the raw query string", function()
      local status, headers, body = curl("GET", base .. "/caf%C3%A9/a%20b?name=Jos%C3%A9%20%26%20co&x=1+2&e=")
      assert.equal(200, status)
      assert.equal("GET", headers["x-echo-method"])
      local req = echo.decode(body)
      assert.equal("GET", req.method)
      assert.equal("/café/a b", req.path)
      assert.equal("/caf%C3%A9/a%20b", req.raw_path)
      assert.equal("name=Jos%C3%A9%20%26%20co&x=1+2&e=", req.query_string)
      assert.equal("HTTP/1.1", req.version)
      assert.equal("127.0.0.1", req.remote_addr)
      assert.is_number(req.remote_port)
    end)

    it("gives an empty query string when there is none", function()
      local _, _, body = curl("GET", base .. "/plain")
      local req = echo.decode(body)
      assert.equal("", req.query_string)
      assert.equal("/plain", req.raw_path)
    end)

    it("lower-cases request header names and joins repeated ones", function()
      local _, _, body = curl("GET", base .. "/h", {
        headers = { "X-Api-Token: SECRET123", "X-Multi: one", "x-multi: two", "Content-Type: text/x-test" },
      })
      local req = echo.decode(body)
      assert.equal("SECRET123", req.headers["x-api-token"])
      assert.equal("one, two", req.headers["x-multi"])
      assert.equal("text/x-test", req.headers["content-type"])
      for name in pairs(req.headers) do assert.equal(name:lower(), name) end
    end)

    it("passes a POST body byte for byte, NULs included", function()
      local sent = "a\0b\r\nc" .. ("é"):rep(10)
      local status, _, body = curl("POST", base .. "/post", { body = sent })
      assert.equal(200, status)
      local req = echo.decode(body)
      assert.equal("POST", req.method)
      assert.equal(sent, req.body)
    end)

    it("serves PUT, PATCH and DELETE", function()
      for _, m in ipairs{ "PUT", "PATCH", "DELETE" } do
        local status, headers, body = curl(m, base .. "/x", { body = m == "DELETE" and nil or "{}" })
        assert.equal(200, status)
        assert.equal(m, headers["x-echo-method"])
        assert.equal(m, echo.decode(body).method)
      end
    end)

    it("sends the handler's status and headers", function()
      local status, headers = curl("GET", base .. "/status/418")
      assert.equal(418, status)
      assert.equal("Yes", headers["x-mixed-case"])
      local status2 = curl("GET", base .. "/status/204")
      assert.equal(204, status2)
    end)

    it("accepts a body of exactly max_body bytes", function()
      local status, _, body = curl("POST", base .. "/post", { body = ("b"):rep(1024) })
      assert.equal(200, status)
      assert.equal(1024, #echo.decode(body).body)
    end)

    it("answers 413 without calling the handler when the body is larger than max_body", function()
      -- with Content-Length and Expect: 100-continue (curl's default for larger bodies)
      local status = curl("POST", base .. "/post", { body = ("b"):rep(5000) })
      assert.equal(413, status)
      -- with Content-Length, no Expect: the body is read and dropped
      status = curl("POST", base .. "/post", { body = ("b"):rep(1025), headers = { "Expect:" } })
      assert.equal(413, status)
      -- chunked: the size is only known while reading
      status = curl("POST", base .. "/post", { body = ("b"):rep(3000), headers = { "Transfer-Encoding: chunked" } })
      assert.equal(413, status)
      -- and the server still works afterwards
      assert.equal(200, (curl("GET", base .. "/after")))
    end)

    it("answers 500 with the message when the handler raises, and logs it", function()
      local status, _, body = curl("GET", base .. "/error")
      assert.equal(500, status)
      assert.matches("boom from the echo handler", body)
      assert.is_nil(body:find("traceback", 1, true))
      assert.matches("boom from the echo handler", slurp(log))
      assert.matches("stack traceback", slurp(log))
    end)

    it("answers 500 when the handler returns something that is not a response", function()
      local status, _, body = curl("GET", base .. "/bad-return")
      assert.equal(500, status)
      assert.matches("status", body)
    end)

    it("survives a malformed request", function()
      local out = io.popen("printf 'NOT HTTP AT ALL\\r\\n\\r\\n' | curl -s --max-time 3 telnet://127.0.0.1:" .. p.port
        .. " 2>&1; true")
      out:read("*a")
      out:close()
      assert.equal(200, (curl("GET", base .. "/still-alive")))
    end)

    it("stops when a handler calls srv:stop()", function()
      assert.equal(200, (curl("GET", base .. "/stop")))
      local deadline = os.time() + 3
      while p:alive() and os.time() <= deadline do os.execute("sleep 0.05") end
      assert.is_false(p:alive())
      p:stop()
      p:stop() -- idempotent
    end)
  end)

  describe("in this process", function()
    local function ok_handler() return 200, {}, "ok" end

    it("listens on port 0, reports the real port and host", function()
      local srv = assert(httpd.listen{ handler = ok_handler })
      assert.is_true(srv:port() > 0)
      assert.equal("127.0.0.1", srv:host())
      assert.equal("pipedrive.httpd 127.0.0.1:" .. srv:port(), tostring(srv))
      assert.is_true(srv:step(0))
      srv:close()
    end)

    it("close is idempotent, also as __close, and a closed server raises", function()
      local srv = assert(httpd.listen{ handler = ok_handler })
      assert.is_true(srv:close())
      assert.is_true(srv:close())
      assert.equal("pipedrive.httpd (closed)", tostring(srv))
      for _, m in ipairs{ "port", "step", "run", "stop", "host" } do
        local ok, err = pcall(srv[m], srv)
        assert.is_false(ok)
        assert.matches("closed server", err)
      end
      local s2 = assert(httpd.listen{ handler = ok_handler })
      assert.is_true(s2:port() > 0)
      if _VERSION == "Lua 5.4" then -- a to-be-closed variable; before 5.4 only the metamethod is there
        assert(load("local s2 <close> = ..."))(s2)
      else
        getmetatable(s2).__close(s2)
      end
      assert.equal("pipedrive.httpd (closed)", tostring(s2))
    end)

    it("frees the port on close", function()
      local srv = assert(httpd.listen{ handler = ok_handler })
      local port = srv:port()
      srv:close()
      local again = assert(httpd.listen{ handler = ok_handler, port = port })
      assert.equal(port, again:port())
      again:close()
    end)

    it("returns nil, message when the port is taken", function()
      local srv = assert(httpd.listen{ handler = ok_handler })
      local other, err = httpd.listen{ handler = ok_handler, port = srv:port() }
      assert.is_nil(other)
      assert.matches("cannot listen on 127.0.0.1 port " .. srv:port(), err)
      srv:close()
    end)

    it("raises on bad options", function()
      assert.has_error(function() httpd.listen() end)
      assert.has_error(function() httpd.listen{} end, "httpd.listen: 'handler' must be a function")
      assert.has_error(function() httpd.listen{ handler = ok_handler, port = 70000 } end)
      assert.has_error(function() httpd.listen{ handler = ok_handler, port = "80" } end)
      assert.has_error(function() httpd.listen{ handler = ok_handler, max_body = -1 } end)
      assert.has_error(function() httpd.listen{ handler = ok_handler, host = "localhost" } end)
    end)

    it("binds IPv6 loopback when asked", function()
      local srv = httpd.listen{ handler = ok_handler, host = "::1" }
      if not srv then return end -- no IPv6 on this machine
      assert.equal("pipedrive.httpd [::1]:" .. srv:port(), tostring(srv))
      srv:close()
    end)

    it("runs the handler on the caller's thread inside step()", function()
      local seen
      local srv = assert(httpd.listen{ handler = function(req)
        seen = req
        return 201, { ["X-From"] = "here", ["X-Num"] = 42 }, "made"
      end })
      local status, headers, body = curl_against(srv, "POST", "/things?a=1", { body_file = "/dev/null" })
      assert.equal(201, status)
      assert.equal("here", headers["x-from"])
      assert.equal("42", headers["x-num"])
      assert.equal("made", body)
      assert.equal("POST", seen.method)
      assert.equal("a=1", seen.query_string)
      srv:close()
    end)

    it("answers 500 for a header that would split the response", function()
      local srv = assert(httpd.listen{ log_errors = false,
        handler = function() return 200, { ["X-Bad"] = "a\r\nInjected: yes" }, "" end })
      local status, headers = curl_against(srv, "GET", "/")
      assert.equal(500, status)
      assert.is_nil(headers.injected)
      srv:close()
    end)

    it("refuses a nested step from a handler with a 500", function()
      local srv
      srv = assert(httpd.listen{ log_errors = false, handler = function() srv:step(0) return 200, {}, "" end })
      local status, _, body = curl_against(srv, "GET", "/")
      assert.equal(500, status)
      assert.matches("inside its own handler", body)
      srv:close()
    end)

    it("run() returns when a handler calls stop()", function()
      local srv, n
      n = 0
      srv = assert(httpd.listen{ handler = function()
        n = n + 1
        srv:stop()
        return 200, {}, "bye"
      end })
      local cmd, hfile, bfile = curl_cmd("GET", "http://127.0.0.1:" .. srv:port() .. "/")
      os.execute(cmd .. " >/dev/null 2>&1 &")
      srv:run()
      assert.equal(1, n)
      for _ = 1, 5 do srv:step(0.02) end
      curl_result("", hfile, bfile)
      srv:close()
    end)

    it("can be closed from inside its own handler", function()
      local srv
      srv = assert(httpd.listen{ handler = function()
        srv:close()
        return 200, {}, "closing"
      end })
      curl_against(srv, "GET", "/", nil, 2)
      assert.equal("pipedrive.httpd (closed)", tostring(srv))
      assert.has_error(function() srv:port() end)
    end)

    it("answers 500 when the handler yields", function()
      local srv = assert(httpd.listen{ log_errors = false, handler = function() coroutine.yield() end })
      local status
      local co = coroutine.wrap(function() status = curl_against(srv, "GET", "/") end)
      co()
      assert.equal(500, status)
      srv:close()
    end)

    it("as users load it, has no fault injection: no stats, a fourth result is ignored, \"drop\" is no status", function()
      local srv = assert(httpd.listen{ log_errors = false, handler = function(req)
        if req.path == "/drop" then return "drop" end
        return 200, {}, "whole body", { cut = 2 }
      end })
      assert.is_nil(srv.stats)
      local status, _, body = curl_against(srv, "GET", "/")
      assert.equal(200, status)
      assert.equal("whole body", body)
      assert.equal(500, (curl_against(srv, "GET", "/drop")))
      srv:close()
    end)

    it("the sandbox's build is another class and keeps its faults", function()
      local faulty = require "pipedrive.sandbox.httpd"
      local srv = assert(faulty.listen{ handler = function() return 200, {}, "ok" end })
      assert.is_function(srv.stats)
      assert.matches("^pipedrive%.sandbox%.httpd 127%.0%.0%.1:%d+$", tostring(srv))
      srv:close()
      assert.equal("pipedrive.sandbox.httpd (closed)", tostring(srv))
    end)
  end)
end)
