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
