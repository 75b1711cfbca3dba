-- core.http_new / h:perform: the libcurl transport, against the echo server
-- (spec/support/echo_server.lua) running as its own process.
local core = require "pipedrive.core"
local httpd = require "pipedrive.httpd"
local proc = require "support.process"
local echo = require "support.echo_server"

-- A port nobody listens on: bind one, then let it go.
local function closed_port()
  local srv = assert(httpd.listen{ handler = function() return 200 end })
  local port = srv:port()
  srv:close()
  return port
end

-- Every string an error exposes, for the "no secrets" checks.
local function error_text(err)
  local parts = { tostring(err) }
  for k, v in pairs(err) do parts[#parts + 1] = tostring(k) .. "=" .. tostring(v) end
  return table.concat(parts, "\n")
end

describe("core.http", function()
  local p, base, log

  setup(function()
    log = os.tmpname()
    p = proc.spawn{ script = "spec/support/echo_server.lua", log = log }
    base = p.url
  end)

  teardown(function()
    if p then p:stop() end
    os.remove(log)
  end)

  describe("requests", function()
    local h
    before_each(function() h = core.http_new{ timeout = 10 } end)
    after_each(function() h:close() end)

    it("round-trips GET, POST, PUT, PATCH and DELETE", function()
      for _, m in ipairs{ "GET", "POST", "PUT", "PATCH", "DELETE" } do
        local body = m ~= "GET" and ('{"m":"' .. m .. '"}') or nil
        local res, err = h:perform{ method = m, url = base .. "/things/1?x=1", body = body }
        assert.is_nil(err)
        assert.equal(200, res.status)
        assert.equal(m, res.headers["x-echo-method"])
        local req = echo.decode(res.body)
        assert.equal(m, req.method)
        assert.equal("/things/1", req.path)
        assert.equal("x=1", req.query_string)
        assert.equal(body or "", req.body)
      end
    end)

    it("sends an empty body with Content-Length 0 for POST, PUT and PATCH without one", function()
      for _, m in ipairs{ "POST", "PUT", "PATCH" } do
        local req = echo.decode(assert(h:perform{ method = m, url = base .. "/e" }).body)
        assert.equal(m, req.method)
        assert.equal("0", req.headers["content-length"])
        assert.equal("", req.body)
      end
      local req = echo.decode(assert(h:perform{ method = "DELETE", url = base .. "/e" }).body)
      assert.is_nil(req.headers["content-length"])
    end)

    it("does not keep the method or body of the previous request", function()
      assert(h:perform{ method = "POST", url = base .. "/a", body = "first" })
      local req = echo.decode(assert(h:perform{ method = "GET", url = base .. "/b" }).body)
      assert.equal("GET", req.method)
      assert.equal("", req.body)
      assert.is_nil(req.headers["content-length"])
      local res = assert(h:perform{ method = "HEAD", url = base .. "/c" })
      assert.equal(200, res.status)
      assert.equal("", res.body)
      req = echo.decode(assert(h:perform{ method = "GET", url = base .. "/d" }).body)
      assert.equal("GET", req.method)
    end)

    it("sends the request headers, and neither Expect nor a form content type", function()
      local res = assert(h:perform{
        method = "POST", url = base .. "/h", body = ("x"):rep(4096),
        headers = { ["X-Api-Token"] = "SECRET123", accept = "application/json", ["x-number"] = 7, ["x-empty"] = "" },
      })
      local req = echo.decode(res.body)
      assert.equal("SECRET123", req.headers["x-api-token"])
      assert.equal("application/json", req.headers.accept)
      assert.equal("7", req.headers["x-number"])
      assert.equal("", req.headers["x-empty"])
      assert.is_nil(req.headers.expect)
      assert.is_nil(req.headers["content-type"])
      assert.equal(4096, #req.body)
      assert.matches("^pipedrive%-lua/", req.headers["user-agent"])
    end)

    it("keeps a content type the caller gives", function()
      local res = assert(h:perform{ method = "POST", url = base .. "/j", body = "{}",
        headers = { ["content-type"] = "application/json" } })
      assert.equal("application/json", echo.decode(res.body).headers["content-type"])
    end)

    it("uses the configured user agent", function()
      local h2 = core.http_new{ user_agent = "my-agent/1.0" }
      local req = echo.decode(assert(h2:perform{ method = "GET", url = base .. "/" }).body)
      assert.equal("my-agent/1.0", req.headers["user-agent"])
      h2:close()
    end)

    it("lower-cases response header names", function()
      local res = assert(h:perform{ method = "GET", url = base .. "/" })
      assert.equal("Yes", res.headers["x-mixed-case"])
      assert.equal("text/plain", res.headers["content-type"])
      for name in pairs(res.headers) do assert.equal(name:lower(), name) end
    end)

    it("returns HTTP error statuses as responses", function()
      for _, code in ipairs{ 201, 204, 400, 401, 404, 429, 500, 503 } do
        local res, err = h:perform{ method = "GET", url = base .. "/status/" .. code }
        assert.is_nil(err)
        assert.equal(code, res.status)
      end
    end)

    it("passes bodies byte for byte, NULs and UTF-8 included, in both directions", function()
      local sent = "a\0b\r\n" .. ("é€"):rep(1000) .. ("z"):rep(200000)
      local res = assert(h:perform{ method = "POST", url = base .. "/bin", body = sent })
      assert.equal(sent, echo.decode(res.body).body)
      res = assert(h:perform{ method = "GET", url = base .. "/big?n=3000000" })
      assert.equal(3000000, #res.body)
    end)

    it("keeps the connection alive between calls on one handle", function()
      local a = echo.decode(assert(h:perform{ method = "GET", url = base .. "/1" }).body)
      local b = echo.decode(assert(h:perform{ method = "PUT", url = base .. "/2", body = "x" }).body)
      local c = echo.decode(assert(h:perform{ method = "GET", url = base .. "/3" }).body)
      assert.equal(a.remote_port, b.remote_port)
      assert.equal(a.remote_port, c.remote_port)
      -- POST and PATCH go on a fresh connection: libcurl never resends those.
      local fresh = echo.decode(assert(h:perform{ method = "POST", url = base .. "/5", body = "x" }).body)
      assert.not_equal(a.remote_port, fresh.remote_port)
      local h2 = core.http_new{}
      local d = echo.decode(assert(h2:perform{ method = "GET", url = base .. "/4" }).body)
      assert.not_equal(a.remote_port, d.remote_port)
      h2:close()
    end)

    it("still works after a failed request", function()
      assert.is_nil((h:perform{ method = "GET", url = "http://127.0.0.1:" .. closed_port() .. "/" }))
      local res = assert(h:perform{ method = "GET", url = base .. "/after" })
      assert.equal(200, res.status)
    end)
  end)

  describe("failures", function()
    it("connection refused: nil, err with kind network and stage connect", function()
      local h = core.http_new{}
      local res, err = h:perform{ method = "POST", url = "http://127.0.0.1:" .. closed_port() .. "/api/v2/deals?x=1",
        body = "{}" }
      assert.is_nil(res)
      assert.equal("network", err.kind)
      assert.equal("connect", err.stage)
      assert.equal("POST", err.method)
      assert.equal("/api/v2/deals", err.path)
      assert.is_string(err.message)
      if core.error_mt then assert.equal(core.error_mt, getmetatable(err)) end
      local line = tostring(err)
      assert.is_nil(line:find("\n"))
      assert.matches("network", line)
      h:close()
    end)

    it("an unresolvable host is a connect-stage network error", function()
      local h = core.http_new{ connect_timeout = 5 }
      local _, err = h:perform{ method = "GET", url = "http://no-such-host.invalid/x" }
      assert.equal("network", err.kind)
      assert.equal("connect", err.stage)
      assert.equal("/x", err.path)
      h:close()
    end)

    it("a server slower than the timeout: kind timeout, stage transfer", function()
      local h = core.http_new{ timeout = 0.3 }
      local t0 = os.time()
      local res, err = h:perform{ method = "GET", url = base .. "/sleep?ms=1500" }
      assert.is_nil(res)
      assert.equal("timeout", err.kind)
      assert.equal("transfer", err.stage)
      assert.equal("/sleep", err.path)
      assert.is_true(os.time() - t0 <= 1)
      h:close()
      -- let the echo server finish its sleep before the next spec
      local h2 = core.http_new{ timeout = 5 }
      assert(h2:perform{ method = "GET", url = base .. "/ready" })
      h2:close()
    end)

    it("a response larger than max_response is an error; one of exactly that size is not", function()
      local h = core.http_new{ max_response = 1000 }
      local res, err = h:perform{ method = "GET", url = base .. "/big?n=1001" }
      assert.is_nil(res)
      assert.equal("network", err.kind)
      assert.matches("response larger than 1000 bytes", err.message)
      res = assert(h:perform{ method = "GET", url = base .. "/big?n=1000" })
      assert.equal(1000, #res.body)
      h:close()
    end)

    it("refuses schemes other than http and https", function()
      local h = core.http_new{}
      local res, err = h:perform{ method = "GET", url = "file:///etc/passwd" }
      assert.is_nil(res)
      assert.equal("network", err.kind)
      h:close()
    end)

    it("never puts header values or the query string into an error", function()
      local h = core.http_new{ timeout = 0.3 }
      local secret_headers = { ["x-api-token"] = "SECRET123", authorization = "Bearer TOKEN456" }
      local urls = {
        "http://127.0.0.1:" .. closed_port() .. "/api/v1/deals?api_token=QSECRET789&x=1",
        "http://no-such-host.invalid/api?api_token=QSECRET789",
        base .. "/sleep?ms=1000&api_token=QSECRET789",
        "http://127.0.0.1:99999/p?api_token=QSECRET789",
        "file:///etc/passwd?api_token=QSECRET789",
      }
      for _, url in ipairs(urls) do
        local res, err = h:perform{ method = "GET", url = url, headers = secret_headers }
        assert.is_nil(res)
        local text = error_text(err)
        for _, secret in ipairs{ "SECRET123", "TOKEN456", "QSECRET789", "api_token", "x-api-token" } do
          assert.is_nil(text:find(secret, 1, true), secret .. " leaked in: " .. text)
        end
        assert.is_nil(tostring(err):find("\n"))
      end
      h:close()
      local h2 = core.http_new{ timeout = 5 }
      assert(h2:perform{ method = "GET", url = base .. "/ready" })
      h2:close()
    end)
  end)

  describe("the handle", function()
    it("close is idempotent, also as __close; a closed handle raises", function()
      local h = core.http_new{}
      assert.equal("pipedrive.http (open)", tostring(h))
      assert.is_true(h:close())
      assert.is_true(h:close())
      assert.equal("pipedrive.http (closed)", tostring(h))
      local ok, err = pcall(h.perform, h, { method = "GET", url = base .. "/" })
      assert.is_false(ok)
      assert.matches("closed", err)
      local inner = core.http_new{}
      assert(inner:perform{ method = "GET", url = base .. "/" })
      if _VERSION == "Lua 5.4" then -- a to-be-closed variable; before 5.4 only the metamethod is there
        assert(load("local h2 <close> = ..."))(inner)
      else
        getmetatable(inner).__close(inner)
      end
      assert.equal("pipedrive.http (closed)", tostring(inner))
    end)

    it("shows no secrets in tostring", function()
      local h = core.http_new{ user_agent = "agent-SECRET" }
      assert(h:perform{ method = "GET", url = base .. "/?api_token=QSECRET", headers = { ["x-api-token"] = "HSECRET" } })
      local s = tostring(h)
      assert.is_nil(s:find("SECRET", 1, true))
      h:close()
    end)

    it("raises on misuse, before sending, without quoting header values", function()
      local h = core.http_new{}
      assert.has_error(function() h:perform() end)
      assert.has_error(function() h:perform{ method = "GET" } end)
      assert.has_error(function() h:perform{ method = "get", url = base } end)
      assert.has_error(function() h:perform{ method = "TRACE", url = base } end)
      assert.has_error(function() h:perform{ method = "POST", url = base, body = {} } end)
      assert.has_error(function() h:perform{ method = "GET", url = base, headers = "x" } end)
      assert.has_error(function() h:perform{ method = "GET", url = base, headers = { ["bad name"] = "v" } } end)
      local ok, err = pcall(h.perform, h, { method = "GET", url = base,
        headers = { ["x-api-token"] = "SECRET123\r\nInjected: 1" } })
      assert.is_false(ok)
      assert.matches("x%-api%-token", err)
      assert.is_nil(err:find("SECRET123", 1, true))
      -- still usable
      assert(h:perform{ method = "GET", url = base .. "/" })
      h:close()
    end)

    it("raises on bad options", function()
      assert.has_error(function() core.http_new{ timeout = "3" } end)
      assert.has_error(function() core.http_new{ timeout = -1 } end)
      assert.has_error(function() core.http_new{ max_response = 0 } end)
      assert.has_error(function() core.http_new{ verify = "yes" } end)
      assert.has_error(function() core.http_new{ user_agent = "a\r\nb" } end)
      assert.has_error(function() core.http_new(5) end)
      local h = core.http_new()
      assert.equal("pipedrive.http (open)", tostring(h))
      h:close()
    end)
  end)
end)
