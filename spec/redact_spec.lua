-- The redaction behind the debug hook and the redirect rules, as plain functions.
local redact = require "pipedrive.redact"
local redirect = require "pipedrive.redirect"

describe("redact", function()
  it("masks secret JSON values at any depth, escaped quotes included", function()
    local body = '{"a":1,"access_token":"x\\"y\\\\","nested":{"Refresh_Token" : "r1"},'
      .. '"list":[{"http_auth_password":"p\\u0041"}],"token":5,"title":"access_token"}'
    assert.equal('{"a":1,"access_token":"***","nested":{"Refresh_Token" : "***"},'
      .. '"list":[{"http_auth_password":"***"}],"token":5,"title":"access_token"}', redact.json(body))
    assert.equal('{"code":"***"', redact.json('{"code":"abc')) -- unterminated: the rest is dropped
    assert.equal("plain text", redact.json("plain text"))
  end)

  it("masks form and query parameters by decoded name, and user info in URLs", function()
    assert.equal("grant_type=refresh_token&refresh_token=***&client%5Fsecret=***&x=1",
      redact.params("grant_type=refresh_token&refresh_token=abc&client%5Fsecret=s&x=1"))
    assert.equal("https://***@h/p?a=1&api_token=***#f", redact.url("https://u:pw@h/p?a=1&api_token=T#f"))
    assert.equal("https://h/p", redact.url("https://h/p"))
  end)

  -- redact.url reads URLs with core.url_parse, as libcurl does: what it shows is
  -- what is sent, normalized (lower-case host, default port and dot segments gone).
  it("shows a URL as libcurl reads it, and no part of a text that is not one", function()
    assert.equal("https://***@evil.example/x?token=***", redact.url("https://localhost@EVIL.example:443/a/../x?token=t"))
    assert.equal("http://[::1]:8080/?code=***&b", redact.url("http://[::1]:8080?code=c&b"))
    assert.equal("(not a URL)", redact.url("https://h:99999/?api_token=T"))
    assert.equal("(not a URL)", redact.url("api_token=T"))
  end)

  it("is the one scrubber: literal secrets, at least `min` bytes (default 4)", function()
    assert.equal("a *** b ***", redact.text("a s3cret b s3cret", { "s3cret" }))
    assert.equal("id abc", redact.text("id abc", { "abc" }))
    assert.equal("id ***", redact.text("id abc", { "abc" }, 1))
    assert.equal(5, redact.text(5, { "5" }, 1))
  end)

  it("masks credential headers and copies the table", function()
    local given = { ["X-Api-Token"] = "T", Authorization = "Bearer b", accept = "application/json" }
    local h = redact.headers(given)
    assert.same({ ["x-api-token"] = "***", authorization = "***", accept = "application/json" }, h)
    assert.equal("T", given["X-Api-Token"])
  end)
end)

describe("redirect", function()
  it("resolves Locations and compares origins", function()
    assert.equal("https://h:8/a/c", redirect.resolve("https://h:8/a/b?q", "c"))
    assert.equal("https://h:8/x", redirect.resolve("https://h:8/a/b", "/x"))
    assert.equal("http://o/y", redirect.resolve("http://h/a", "//o/y"))
    assert.equal("https://o/z", redirect.resolve("http://h/a", "https://o/z"))
    assert.same({ "https", "h", "443" }, { redirect.origin("https://H/p") })
    assert.same({ "http", "[::1]", "8080" }, { redirect.origin("http://u:p@[::1]:8080/") })
    assert.is_nil(redirect.origin("ftp://h/"))
    -- one parser: the host checked is the host libcurl connects to, never the user info
    assert.same({ "http", "evil.example", "80" }, { redirect.origin("http://localhost@evil.example/") })
    assert.same({ "http", "127.0.0.1", "80" }, { redirect.origin("http://evil.example@127.0.0.1/") })
    assert.is_nil(redirect.resolve("http://h/a", "http://a b/"))
  end)

  it("takes no user info for a loopback host, and follows no Location that carries credentials", function()
    for _, location in ipairs{ "http://localhost@evil.example/x", "http://u:p@127.0.0.1/x", "https://u@h/same" } do
      local n = 0
      local send = redirect.wrap(function()
        n = n + 1
        return { status = 302, headers = { location = location }, body = "" }
      end, 3, false)
      local v, err = send{ method = "GET", url = "https://h/a", headers = { ["x-api-token"] = "T" } }
      assert.is_nil(v)
      assert.equal("redirect", err.kind)
      assert.matches("credentials in the URL", err.message, 1, true)
      assert.equal(1, n)
      assert.is_nil(tostring(err):find("evil", 1, true))
    end
    -- https -> plain http is allowed to loopback only: by the host libcurl would connect to
    local seen = {}
    local send = redirect.wrap(function(req)
      seen[#seen + 1] = req
      if #seen == 1 then return { status = 302, headers = { location = "http://127.0.0.1:9/x" }, body = "" } end
      return { status = 200, headers = {}, body = "ok" }
    end, 3, false)
    assert.equal("ok", send{ method = "GET", url = "https://h/a", headers = {} }.body)
    assert.equal("http://127.0.0.1:9/x", seen[2].url)
  end)

  it("keeps credentials on the same origin and drops them elsewhere", function()
    local seen = {}
    local hops = {
      { status = 302, headers = { location = "/same" }, body = "" },
      { status = 307, headers = { location = "https://other/x?api_token=T&y=1" }, body = "" },
      { status = 200, headers = {}, body = "ok" },
    }
    local send = redirect.wrap(function(req)
      seen[#seen + 1] = req
      return hops[#seen]
    end, 5, false)
    local res = send{ method = "GET", url = "https://api.pipedrive.com/v1/deals",
                      headers = { ["x-api-token"] = "T", Cookie = "c", accept = "a" } }
    assert.equal("ok", res.body)
    assert.equal("T", seen[2].headers["x-api-token"])
    assert.equal("https://api.pipedrive.com/same", seen[2].url)
    assert.is_nil(seen[3].headers["x-api-token"])
    assert.is_nil(seen[3].headers.Cookie)
    assert.equal("a", seen[3].headers.accept)
    assert.equal("https://other/x?y=1", seen[3].url)
  end)

  it("turns a POST into a GET on 303 and refuses a body to another origin on 307", function()
    local seen = {}
    local send = redirect.wrap(function(req)
      seen[#seen + 1] = req
      if #seen == 1 then return { status = 303, headers = { location = "/done" }, body = "" } end
      return { status = 200, headers = {}, body = "" }
    end, 1, false)
    send{ method = "POST", url = "https://h/a", headers = { ["content-type"] = "application/json" }, body = "{}" }
    assert.equal("GET", seen[2].method)
    assert.is_nil(seen[2].body)
    assert.is_nil(seen[2].headers["content-type"])
    local n = 0
    send = redirect.wrap(function()
      n = n + 1
      return { status = 307, headers = { location = "https://elsewhere/a" }, body = "" }
    end, 3, false)
    local v, err = send{ method = "POST", url = "https://h/a", headers = {}, body = "{}" }
    assert.is_nil(v)
    assert.equal("redirect", err.kind)
    assert.equal(1, n)
    assert.is_nil(tostring(err):find("elsewhere", 1, true))
  end)
end)
