-- pd.request (any path through the call pipeline), multipart uploads (libcurl's
-- mime API, and the core's body for Lua transports) and pd.each over any
-- paged operation or raw path, end to end against the sandbox. Wire details
-- are read back from the sandbox's request log.
local sandbox = require "support.sandbox"
local core = require "pipedrive.core"
local raises = require("support.util").raises

local function last(sb)
  local log = sb.requests()
  return log[#log]
end

local function write(path, s)
  local f = assert(io.open(path, "wb"))
  f:write(s)
  f:close()
end

describe("pd.request", function()
  local sb, pd, tmp

  setup(function()
    sb = sandbox.start()
    pd = sb.client()
    tmp = os.tmpname()
  end)

  teardown(function()
    os.remove(tmp)
    pd.close()
    sb.stop()
  end)

  before_each(function() sb.clear_requests() end)

  it("returns the envelope's data and info for any path, v2 and v1", function()
    local deal = assert(pd.deals.add{ title = "Raw one", value = 10, currency = "EUR" })
    local data, info = pd.request("GET", "/api/v2/deals/{id}", { path_params = { id = deal.id } })
    assert.equal(deal.id, data.id)
    assert.equal("Raw one", data.title)
    assert.equal(200, info.status)
    assert.equal("v2", info.api)
    assert.is_number(info.rate_limit.remaining)
    local v1data = assert(pd.request("GET", "/v1/deals/" .. deal.id))
    assert.equal("Raw one", v1data.title)
    local r = last(sb)
    assert.equal("/v1/deals/" .. deal.id, r.path)
    assert.equal("***", r.headers["x-api-token"])
  end)

  it("sends query, JSON body and form body as given", function()
    local added = assert(pd.request("post", "/api/v2/deals", { body = { title = "Posted raw", value = 3 } }))
    assert.equal("Posted raw", added.title)
    local r = last(sb)
    assert.equal("POST", r.method)
    assert.equal("application/json", r.headers["content-type"])
    assert.equal("Posted raw", core.json_decode(r.body).title)
    local list, info = assert(pd.request("GET", "/api/v2/deals", { query = { limit = 1, status = "open" } }))
    assert.equal(1, #list)
    assert.equal("limit=1&status=open", last(sb).query_string)
    assert.is_string(info.next_cursor) -- GET under /api/v2 pages by cursor
    local changed = assert(pd.request("PUT", "/v1/deals/" .. added.id, { form = { title = "Formed" } }))
    assert.equal("Formed", changed.title)
    assert.equal("application/x-www-form-urlencoded", last(sb).headers["content-type"])
    assert.equal("title=Formed", last(sb).body)
  end)

  it("accepts an absolute URL on the client's own origin", function()
    local data = assert(pd.request("GET", sb.url .. "/api/v2/pipelines"))
    assert.is_true(#data >= 1)
    assert.equal("/api/v2/pipelines", last(sb).path)
  end)

  it("fails with nil, err like every call", function()
    local data, err = pd.request("GET", "/api/v2/deals/999999")
    assert.is_nil(data)
    assert.equal("not_found", err.kind)
    assert.equal(404, err.status)
    assert.equal("GET", err.method)
    assert.equal("/api/v2/deals/999999", err.path)
    assert.is_nil(tostring(err):find(sb.api_token, 1, true))
  end)

  it("raises on misuse, naming pd.request and the field", function()
    assert.matches("pipedrive.request: method must be one of GET, POST, PUT, PATCH, DELETE, got 'TRACE'",
      raises(pd.request, "TRACE", "/v1/deals"), nil, true)
    assert.matches("pipedrive.request: path must start with '/'", raises(pd.request, "GET", "v1/deals"), nil, true)
    assert.matches("pipedrive.request: path is a URL of another host",
      raises(pd.request, "GET", "https://elsewhere.example.com/api/v2/deals"), nil, true)
    assert.matches("pipedrive.request: path must not contain '?'",
      raises(pd.request, "GET", "/api/v2/deals?limit=1"), nil, true)
    assert.matches("pipedrive.request: query field 'limit' must be a string, number, boolean",
      raises(pd.request, "GET", "/api/v2/deals", { query = { limit = function() end } }), nil, true)
    assert.matches("pipedrive.request: unknown option 'params'",
      raises(pd.request, "GET", "/api/v2/deals", { params = {} }), nil, true)
    assert.matches("pipedrive.request: give one of body, form and multipart",
      raises(pd.request, "POST", "/api/v2/deals", { body = {}, form = { a = 1 } }), nil, true)
    assert.matches("pipedrive.request: missing path parameter 'id'",
      raises(pd.request, "GET", "/api/v2/deals/{id}"), nil, true)
    assert.equal(0, #sb.requests()) -- nothing was sent
  end)

  it("retries a GET on a 503 and goes through the log hook", function()
    local events = {}
    local logged = sb.client{ log = function(ev) events[#events + 1] = ev end, retries = { base = 0.01, cap = 0.01 } }
    local status = sb.admin("POST", "/_sandbox/faults",
      { { match = { method = "GET", path = "/api/v2/stages" }, fault = "status", status = 503, count = 1 } })
    assert.equal(200, status)
    local data, info = logged.request("GET", "/api/v2/stages")
    sb.admin("DELETE", "/_sandbox/faults")
    assert.is_table(data, tostring(info))
    assert.equal(200, info.status)
    local requests = 0
    for _, ev in ipairs(events) do
      if ev.type == "request" then requests = requests + 1 end
      assert.is_nil(ev.headers and ev.headers["x-api-token"] ~= "***" and ev.headers["x-api-token"] or nil)
    end
    assert.equal(2, requests)
    logged.close()
  end)

  it("uploads a file from a path through libcurl's mime API", function()
    local deal = assert(pd.deals.add{ title = "With file" })
    write(tmp, "first line\nsecond line\n")
    local file, info = pd.request("POST", "/v1/files", { multipart = {
      { name = "file", path = tmp, filename = "notes.txt", type = "text/plain" },
      { name = "deal_id", data = deal.id },
    } })
    assert.is_table(file, tostring(info))
    assert.equal(23, file.file_size)
    assert.equal("notes.txt", file.file_name)
    assert.equal(deal.id, file.deal_id)
    local r = last(sb)
    assert.matches("^multipart/form%-data; boundary=", r.headers["content-type"])
    assert.truthy(r.body:find('name="file"; filename="notes.txt"\r\nContent-Type: text/plain\r\n\r\n'
      .. "first line\nsecond line\n\r\n", 1, true))
    assert.truthy(r.body:find('name="deal_id"\r\n\r\n' .. deal.id .. "\r\n", 1, true))
    local got = assert(pd.request("GET", "/v1/files/" .. file.id))
    assert.equal(23, got.file_size)
  end)

  it("uploads data held in a string, binary bytes included, and a person's picture", function()
    local bytes = "\137PNG\r\n\26\n\0\0\0\rIHDR" .. ("\0\255"):rep(100)
    local file = assert(pd.request("POST", "/v1/files", { multipart = {
      { name = "file", data = bytes, filename = "pixel.png", type = "image/png" } } }))
    assert.equal(#bytes, file.file_size)
    assert.equal("img", file.file_type)
    local person = assert(pd.persons.add{ name = "Pictured" })
    local pic = assert(pd.request("POST", "/v1/persons/{id}/picture", { path_params = { id = person.id },
      multipart = { { name = "file", data = bytes, filename = "face.png", type = "image/png" },
                    { name = "crop_x", data = 0 } } }))
    assert.equal("person", pic.item_type)
    assert.equal(person.id, pic.item_id)
    assert.is_string(pic.pictures["128"])
  end)

  it("reports a file it cannot read as err.kind 'file' before sending anything", function()
    local data, err = pd.request("POST", "/v1/files", { multipart = {
      { name = "file", path = "/nonexistent/dir/report.pdf" } } })
    assert.is_nil(data)
    assert.equal("file", err.kind)
    assert.equal(1, err.attempts) -- not retried
    assert.matches("cannot read file 'report.pdf'", err.message, nil, true)
    assert.equal(0, #sb.requests())
  end)

  it("sends multipart through a Lua transport as one body with a boundary", function()
    local http = core.http_new{}
    local seen
    local viaLua = sb.client{ transport = function(req)
      seen = req
      return http:perform(req)
    end }
    write(tmp, "through Lua")
    local file = assert(viaLua.request("POST", "/v1/files", { multipart = { { name = "file", path = tmp } } }))
    assert.equal(11, file.file_size)
    assert.is_nil(seen.multipart)
    local boundary = seen.headers["content-type"]:match("^multipart/form%-data; boundary=(%S+)$")
    assert.is_string(boundary)
    assert.equal("--" .. boundary .. "--\r\n", seen.body:sub(-#boundary - 6))
    assert.equal(last(sb).body, seen.body)
    viaLua.close()
    http:close()
  end)

  it("refuses bad parts, naming the part and the field", function()
    assert.matches("pipedrive.request: multipart part 1 needs exactly one of 'path'",
      raises(pd.request, "POST", "/v1/files", { multipart = { { name = "file" } } }), nil, true)
    assert.matches("pipedrive.request: multipart part 2 needs a 'name'",
      raises(pd.request, "POST", "/v1/files", { multipart = { { name = "a", data = "x" }, { data = "y" } } }),
      nil, true)
    assert.matches("pipedrive.request: multipart part 1 field 'filename'",
      raises(pd.request, "POST", "/v1/files", { multipart = { { name = "f", data = "x", filename = 'a"b' } } }),
      nil, true)
  end)
end)

describe("pd.each", function()
  local sb, pd

  setup(function()
    sb = sandbox.start()
    pd = sb.client()
    sb.bulk("deal", 7, "Paged")
  end)

  teardown(function()
    pd.close()
    sb.stop()
  end)

  it("pages a raw v2 path by cursor and a raw v1 path by offset", function()
    local titles = {}
    for d in pd.each("/api/v2/deals", { query = { limit = 2 } }) do titles[#titles + 1] = d.title end
    assert.equal(7, #titles)
    local pages = 0
    for _, r in ipairs(sb.requests()) do
      if r.path == "/api/v2/deals" then pages = pages + 1 end
    end
    assert.equal(4, pages)
    local n = 0
    for _ in pd.each("/v1/deals", { query = { limit = 3 }, max_items = 5 }) do n = n + 1 end
    assert.equal(5, n)
  end)

  it("walks an operation given by its function", function()
    local n = 0
    for d in pd.each(pd.deals.list, { limit = 3 }) do
      n = n + 1
      assert.is_number(d.id)
    end
    assert.equal(7, n)
  end)

  it("raises on a target it cannot page", function()
    assert.matches("pipedrive.each: expected an operation's function", raises(pd.each, 42), nil, true)
    assert.matches("pipedrive.each: no operation with the operationId 'noSuchThing'",
      raises(pd.each, "noSuchThing"), nil, true)
    assert.matches("pipedrive.request: path is a URL of another host",
      raises(pd.each, "https://elsewhere.example.com/v1/deals"), nil, true)
  end)
end)
