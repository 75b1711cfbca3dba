-- Unit specs of core.build_request (csrc/request.c): URL composition, query and
-- path encoding, headers, JSON and form bodies, and misuse messages.
local compat = require "pipedrive.compat"
local core = require "pipedrive.core"

local build, null, array = core.build_request, core.null, core.array

local BASE = "https://acme.pipedrive.com"

local raises = require("support.util").raises

local function req(t)
  t.method = t.method or "GET"
  t.base_url = t.base_url or BASE
  t.path = t.path or "/api/v2/deals"
  return build(t)
end

describe("core.build_request", function()
  it("composes method, base URL and path", function()
    local r = req { path = "/api/v2/deals" }
    assert.equal("GET", r.method)
    assert.equal("https://acme.pipedrive.com/api/v2/deals", r.url)
    assert.same({}, r.headers)
    assert.is_nil(r.body)
  end)

  it("removes trailing slashes from the base URL and upper-cases the method", function()
    local r = req { method = "delete", base_url = BASE .. "//", path = "/v1/webhooks/{id}", path_params = { id = 5 } }
    assert.equal("DELETE", r.method)
    assert.equal("https://acme.pipedrive.com/v1/webhooks/5", r.url)
    r = req { base_url = "http://127.0.0.1:8080/prefix/", path = "/x" }
    assert.equal("http://127.0.0.1:8080/prefix/x", r.url)
  end)

  it("substitutes and percent-encodes path parameters", function()
    local r = req { path = "/api/v2/deals/{id}", path_params = { id = 42 } }
    assert.equal(BASE .. "/api/v2/deals/42", r.url)
    r = req { path = "/v1/leads/{id}", path_params = { id = "adf21080-0e10-11eb-879b-05d71fb426ec" } }
    assert.equal(BASE .. "/v1/leads/adf21080-0e10-11eb-879b-05d71fb426ec", r.url)
    r = req { path = "/x/{a}/y/{b_2}", path_params = { a = "../etc/passwd", b_2 = "Zoë & Co?" } }
    assert.equal(BASE .. "/x/..%2Fetc%2Fpasswd/y/Zo%C3%AB%20%26%20Co%3F", r.url)
    r = req { path = "/x/{n}", path_params = { n = 2.5 } }
    assert.equal(BASE .. "/x/2.5", r.url)
  end)

  it("sorts the query by key and encodes keys and values", function()
    local r = req { query = { status = "open", limit = 100, cursor = "eyJpZCI6Mn0=", term = "Zoë & Co/?",
                              ["a b"] = "x+y" } }
    assert.equal(BASE .. "/api/v2/deals?a%20b=x%2By&cursor=eyJpZCI6Mn0%3D&limit=100&status=open" ..
      "&term=Zo%C3%AB%20%26%20Co%2F%3F", r.url)
  end)

  it("writes integers, floats and booleans as the API reads them", function()
    local r = req { query = { a = 5, b = 5.0, c = 0.1, d = -3, e = true, f = false, g = compat.maxinteger,
                              h = 1e20, i = 1 / 3 } }
    local g = compat.has_integers and "9223372036854775807" or "9007199254740992" -- 2^53 on 5.1/LuaJIT
    assert.equal(BASE .. "/api/v2/deals?a=5&b=5&c=0.1&d=-3&e=true&f=false&g=" .. g ..
      "&h=1e%2B20&i=0.3333333333333333", r.url)
  end)

  it("joins arrays with a comma, each item encoded", function()
    local r = req { query = { ids = { 1, 2, 3 }, fields = { "title", "a,b", "é" }, flags = array { true, 1.5 } } }
    assert.equal(BASE .. "/api/v2/deals?fields=title,a%2Cb,%C3%A9&flags=true,1.5&ids=1,2,3", r.url)
  end)

  it("leaves out absent values and adds no '?' for an empty query", function()
    local r = req { query = { status = nil } }
    assert.equal(BASE .. "/api/v2/deals", r.url)
    r = req { query = {}, path = "/x" }
    assert.equal(BASE .. "/x", r.url)
    r = req { query = { e = "" } }
    assert.equal(BASE .. "/api/v2/deals?e=", r.url)
  end)

  it("copies headers with lower-cased names", function()
    local given = { ["X-Api-Token"] = "t0k", Accept = "application/json", ["x-n"] = 3 }
    local r = req { headers = given }
    assert.same({ ["x-api-token"] = "t0k", accept = "application/json", ["x-n"] = "3" }, r.headers)
    assert.are_not.equal(given, r.headers)
    assert.equal("t0k", given["X-Api-Token"])
  end)

  it("encodes a table body as JSON and sets content-type", function()
    local r = req { method = "POST", headers = { ["Content-Type"] = "text/plain", accept = "application/json" },
                    body = { title = "Zoë", value = 1500.5, label_ids = array(), person_id = null, n = 5 } }
    assert.equal("POST", r.method)
    assert.equal('{"label_ids":[],"n":5,"person_id":null,"title":"Zoë","value":1500.5}', r.body)
    assert.equal("application/json", r.headers["content-type"])
    assert.equal("application/json", r.headers.accept)
    assert.equal("[1,2]", req { method = "POST", body = { 1, 2 } }.body)
    assert.equal("{}", req { method = "POST", body = {} }.body)
  end)

  it("encodes a form body and sets its content-type", function()
    local r = req { method = "POST", base_url = "https://oauth.pipedrive.com", path = "/oauth/token",
                    form = { grant_type = "authorization_code", code = "a b+c/=", redirect_uri = "http://127.0.0.1:8080/cb",
                             n = 1, ok = true } }
    assert.equal("https://oauth.pipedrive.com/oauth/token", r.url)
    assert.equal("code=a%20b%2Bc%2F%3D&grant_type=authorization_code&n=1&ok=true" ..
      "&redirect_uri=http%3A%2F%2F127.0.0.1%3A8080%2Fcb", r.body)
    assert.equal("application/x-www-form-urlencoded", r.headers["content-type"])
    assert.equal("", req { method = "POST", form = {} }.body)
  end)

  it("gives the same URL for the same arguments", function()
    local q = {}
    for i = 1, 50 do q["k" .. i] = i end
    local first = req { query = q }.url
    for _ = 1, 5 do
      local copy = {}
      for k, v in pairs(q) do copy[k] = v end
      assert.equal(first, req { query = copy }.url)
    end
    assert.matches("k1=1&k10=10&k11=11", first, 1, true)
  end)
end)

describe("core.build_request misuse", function()
  it("raises on a missing or bad path parameter, naming it", function()
    assert.equal("build_request: missing path parameter 'id'", raises(req, { path = "/deals/{id}" }))
    assert.equal("build_request: missing path parameter 'id'",
      raises(req, { path = "/deals/{id}", path_params = { ID = 1 } }))
    assert.equal("build_request: path parameter 'id' must be a string or a number, got pipedrive.null",
      raises(req, { path = "/deals/{id}", path_params = { id = null } }))
    assert.equal("build_request: path parameter 'id' must be a string or a number, got table",
      raises(req, { path = "/deals/{id}", path_params = { id = {} } }))
    assert.equal("build_request: path parameter 'id' must be a string or a number, got boolean",
      raises(req, { path = "/deals/{id}", path_params = { id = true } }))
    assert.equal("build_request: path parameter 'id' is empty",
      raises(req, { path = "/deals/{id}", path_params = { id = "" } }))
    assert.equal("build_request: path parameter 'id' is not a finite number",
      raises(req, { path = "/deals/{id}", path_params = { id = 0 / 0 } }))
  end)

  it("raises on a malformed path template", function()
    assert.matches("'{' without a matching '}'", raises(req, { path = "/deals/{id" }), 1, true)
    assert.matches("'}' without a matching '{'", raises(req, { path = "/deals/id}" }), 1, true)
    assert.matches("empty parameter name", raises(req, { path = "/deals/{}" }), 1, true)
    assert.matches("field 'path' may not contain", raises(req, { path = "/deals?x=1" }), 1, true)
    assert.matches("field 'path' may not contain", raises(req, { path = "/de als" }), 1, true)
    assert.matches("field 'path' may not contain", raises(req, { path = "/d\r\nHost: x" }), 1, true)
    assert.matches("field 'path' must start with '/'", raises(req, { path = "deals" }), 1, true)
  end)

  it("refuses core.null and non-scalars in the query, naming the field", function()
    assert.equal("build_request: query field 'owner_id' is pipedrive.null; leave it out (nil) instead",
      raises(req, { query = { owner_id = null } }))
    assert.equal("build_request: query field 'x' has an item 2 that is not a string, finite number or boolean",
      raises(req, { query = { x = { 1, {} } } }))
    assert.equal("build_request: query field 'x' has an item 1 that is not a string, finite number or boolean",
      raises(req, { query = { x = { null } } }))
    assert.equal("build_request: query field 'x' is an empty array", raises(req, { query = { x = {} } }))
    assert.equal("build_request: query field 'x' must be a scalar or an array 1..n of scalars",
      raises(req, { query = { x = { a = 1 } } }))
    assert.equal("build_request: query field 'f' must be a string, number, boolean or array of them, got function",
      raises(req, { query = { f = print } }))
    assert.equal("build_request: query field 'n' is not a finite number", raises(req, { query = { n = math.huge } }))
    assert.equal("build_request: query keys must be strings, got number", raises(req, { query = { 1 } }))
  end)

  it("refuses tables and null in a form", function()
    assert.equal("build_request: form field 'a' must be a string, number, boolean, got table",
      raises(req, { method = "POST", form = { a = { 1 } } }))
    assert.equal("build_request: form field 'a' is pipedrive.null; leave it out (nil) instead",
      raises(req, { method = "POST", form = { a = null } }))
    assert.equal("build_request: give either 'body' or 'form', not both",
      raises(req, { method = "POST", form = {}, body = {} }))
  end)

  it("raises on a body JSON cannot hold, with the path", function()
    assert.equal("build_request: field 'body': cannot encode function at .person.email[2]",
      raises(req, { method = "POST", body = { person = { email = { "a", print } } } }))
    assert.equal("build_request: field 'body' must be a table (it is encoded as JSON), got string",
      raises(req, { method = "POST", body = "{}" }))
  end)

  it("checks required fields and their types", function()
    assert.equal("build_request: expected a table, got nil", raises(build, nil))
    assert.equal("build_request: field 'method' must be a string, got nil",
      raises(build, { base_url = BASE, path = "/x" }))
    assert.equal("build_request: field 'base_url' must be a string, got nil", raises(build, { method = "GET", path = "/x" }))
    assert.equal("build_request: field 'path' must be a string, got nil", raises(build, { method = "GET", base_url = BASE }))
    assert.equal("build_request: field 'query' must be a table, got string", raises(req, { query = "a=1" }))
    assert.equal("build_request: field 'headers' must be a table, got string", raises(req, { headers = "x" }))
    assert.equal("build_request: field 'path_params' must be a table, got number", raises(req, { path_params = 5 }))
    assert.matches("field 'method' must be an HTTP method", raises(req, { method = "GE T" }), 1, true)
    assert.matches("field 'method' must be an HTTP method", raises(req, { method = "" }), 1, true)
  end)

  it("checks the base URL without quoting it", function()
    local msg = raises(req, { base_url = "ftp://user:pa55@x" })
    assert.equal("build_request: field 'base_url' must start with http:// or https://", msg)
    msg = raises(req, { base_url = "https://user:pa55@x.example/a b" })
    assert.matches("field 'base_url' may not contain", msg, 1, true)
    assert.is_nil(msg:find("pa55", 1, true))
    assert.matches("may not contain", raises(req, { base_url = "https://x.example?q=1" }), 1, true)
  end)

  it("refuses header injection and never prints header values", function()
    local msg = raises(req, { headers = { ["x-api-token"] = "s3cret\r\nX-Evil: 1" } })
    assert.equal("build_request: header 'x-api-token' has a value with a line break or NUL byte", msg)
    assert.is_nil(msg:find("s3cret", 1, true))
    msg = raises(req, { headers = { ["bad name"] = "s3cret" } })
    assert.equal("build_request: header name 'bad name' has a character not allowed in a header name", msg)
    assert.is_nil(msg:find("s3cret", 1, true))
    msg = raises(req, { headers = { authorization = true } })
    assert.equal("build_request: header 'authorization' must be a string, got boolean", msg)
    msg = raises(req, { headers = { Accept = "a", accept = "b" } })
    assert.matches("is given twice", msg, 1, true)
    assert.equal("build_request: header names must be strings, got number", raises(req, { headers = { "x" } }))
  end)

  it("bounds the URL length", function()
    local msg = raises(req, { query = { term = ("x"):rep(70000) } })
    assert.equal("build_request: URL longer than 65536 bytes", msg)
  end)
end)
