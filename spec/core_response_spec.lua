-- Unit specs of core.parse_response and core.error_mt (csrc/response.c): every
-- envelope shape Pipedrive sends, and every failure class, without a network.
local compat = require "pipedrive.compat"
local core = require "pipedrive.core"

local parse, null = core.parse_response, core.null

local function res(status, body, headers)
  return { status = status, body = body, headers = headers or { ["content-type"] = "application/json" } }
end

local raises = require("support.util").raises

local V2_LIST = { method = "GET", path = "/api/v2/deals", paging = "cursor" }
local V1_LIST = { method = "GET", path = "/api/v1/deals", paging = "offset" }
local GET_ONE = { method = "GET", path = "/api/v2/deals/999999", paging = "none" }

describe("core.parse_response on success", function()
  it("unwraps a v2 cursor list", function()
    local data, info = parse(res(200,
      '{"success":true,"data":[{"id":1,"title":"A"},{"id":2,"title":"B"}],"additional_data":{"next_cursor":"eyJpZCI6Mn0"}}',
      { ["x-ratelimit-limit"] = "80", ["x-ratelimit-remaining"] = "79", ["x-ratelimit-reset"] = "2",
        ["x-daily-requests-left"] = "9999" }), V2_LIST)
    assert.equal(2, #data)
    assert.equal(core.array_mt, getmetatable(data))
    assert.equal("integer", compat.math_type(data[1].id))
    assert.equal("B", data[2].title)
    assert.equal(200, info.status)
    assert.equal("eyJpZCI6Mn0", info.next_cursor)
    assert.is_true(info.more)
    assert.is_nil(info.next_start)
    assert.equal("eyJpZCI6Mn0", info.additional_data.next_cursor)
    assert.same({ limit = 80, remaining = 79, reset = 2, daily_left = 9999 }, info.rate_limit)
    assert.equal("integer", compat.math_type(info.rate_limit.limit))
  end)

  it("ends a v2 list on a null cursor", function()
    local data, info = parse(res(200, '{"success":true,"data":[{"id":1}],"additional_data":{"next_cursor":null}}'),
      V2_LIST)
    assert.equal(1, #data)
    assert.is_false(info.more)
    assert.is_nil(info.next_cursor)
    assert.same({}, info.rate_limit)
  end)

  it("keeps the headers table itself in info", function()
    local h = { ["x-ratelimit-remaining"] = " 5 " }
    local _, info = parse(res(200, '{"success":true,"data":{"id":1}}', h), GET_ONE)
    assert.equal(h, info.headers)
    assert.equal(5, info.rate_limit.remaining)
  end)

  it("unwraps a v1 offset list with nested pagination and related objects", function()
    local body = '{"success":true,"data":[{"id":1}],' ..
      '"additional_data":{"pagination":{"start":0,"limit":1,"more_items_in_collection":true,"next_start":1}},' ..
      '"related_objects":{"user":{"123":{"id":123,"name":"Ann"}}}}'
    local data, info = parse(res(200, body), V1_LIST)
    assert.equal(1, #data)
    assert.is_true(info.more)
    assert.equal(1, info.next_start)
    assert.equal("integer", compat.math_type(info.next_start))
    assert.is_nil(info.next_cursor)
    assert.equal("Ann", info.related_objects.user["123"].name)
  end)

  it("reads v1 pagination placed directly under additional_data", function()
    local _, info = parse(res(200, '{"success":true,"data":[{"id":1}],' ..
      '"additional_data":{"start":100,"limit":100,"more_items_in_collection":true,"next_start":200}}'), V1_LIST)
    assert.is_true(info.more)
    assert.equal(200, info.next_start)
    _, info = parse(res(200, '{"success":true,"data":[{"id":1}],' ..
      '"additional_data":{"start":100,"limit":50,"more_items_in_collection":true}}'), V1_LIST)
    assert.is_true(info.more)
    assert.equal(150, info.next_start)
  end)

  it("ends a v1 list when more_items_in_collection is false", function()
    local _, info = parse(res(200, '{"success":true,"data":[],' ..
      '"additional_data":{"pagination":{"start":0,"limit":100,"more_items_in_collection":false}}}'), V1_LIST)
    assert.is_false(info.more)
    assert.is_nil(info.next_start)
  end)

  it("turns a list whose data is null or missing into an empty array", function()
    for _, body in ipairs { '{"success":true,"data":null}', '{"success":true}',
                            '{"success":true,"data":null,"additional_data":null}' } do
      local data, info = parse(res(200, body), V1_LIST)
      assert.same({}, data)
      assert.equal(core.array_mt, getmetatable(data))
      assert.equal("[]", core.json_encode(data))
      assert.is_false(info.more)
      assert.is_nil(info.additional_data)
    end
  end)

  it("unwraps search results from data.items, keeping result_score and item", function()
    local body = '{"success":true,"data":{"items":[{"result_score":0.93,"item":{"id":7,"type":"deal","title":"Zoë"}}]},' ..
      '"additional_data":{"next_cursor":"c2"}}'
    local data, info = parse(res(200, body), { method = "GET", path = "/api/v2/deals/search", paging = "cursor",
                                               search = true })
    assert.equal(1, #data)
    assert.equal(0.93, data[1].result_score)
    assert.equal(7, data[1].item.id)
    assert.equal("Zoë", data[1].item.title)
    assert.equal("c2", info.next_cursor)
    -- v1 search pages with an offset
    data, info = parse(res(200, '{"success":true,"data":{"items":[]},' ..
      '"additional_data":{"pagination":{"start":0,"limit":100,"more_items_in_collection":false}}}'),
      { method = "GET", path = "/v1/deals/search", paging = "offset", search = true })
    assert.same({}, data)
    assert.equal(core.array_mt, getmetatable(data))
    assert.is_false(info.more)
  end)

  it("gives an empty array for a search without items", function()
    for _, body in ipairs { '{"success":true,"data":null}', '{"success":true,"data":{}}',
                            '{"success":true,"data":{"items":null}}' } do
      local data = parse(res(200, body), { method = "GET", path = "/v1/itemSearch", paging = "offset", search = true })
      assert.same({}, data)
      assert.equal(core.array_mt, getmetatable(data))
    end
  end)

  it("returns a single object as is", function()
    local data, info = parse(res(200, '{"success":true,"data":{"id":5,"title":"T","value":1500.5,"label_ids":[]}}'),
      GET_ONE)
    assert.equal(5, data.id)
    assert.equal(1500.5, data.value)
    assert.equal("[]", core.json_encode(data.label_ids))
    assert.is_false(info.more)
  end)

  it("returns a delete answer as is, and core.null for a success without data", function()
    local data = parse(res(200, '{"success":true,"data":{"id":5}}'), { method = "DELETE", path = "/api/v2/deals/5" })
    assert.same({ id = 5 }, data)
    data = parse(res(200, '{"status":"ok","success":true}'), { method = "DELETE", path = "/v1/webhooks/5" })
    assert.equal(null, data)
    data = parse(res(201, '{"success":true,"data":null}'), { method = "POST", path = "/v1/x" })
    assert.equal(null, data)
  end)

  it("accepts 201 and works without ctx or headers", function()
    local data, info = parse({ status = 201, body = '{"success":true,"data":{"id":9}}' })
    assert.equal(9, data.id)
    assert.same({}, info.headers)
    assert.equal(201, info.status)
  end)
end)

describe("core.parse_response on failure", function()
  it("maps a Pipedrive 404 body to not_found with its message", function()
    local body = '{"success":false,"error":"Deal not found","error_info":"Please check developers.pipedrive.com",' ..
      '"data":null,"additional_data":null}'
    local v, err = parse(res(404, body), GET_ONE)
    assert.is_nil(v)
    assert.equal(core.error_mt, getmetatable(err))
    assert.equal("not_found", err.kind)
    assert.equal(404, err.status)
    assert.equal("Deal not found", err.message)
    assert.equal("GET", err.method)
    assert.equal("/api/v2/deals/999999", err.path)
    assert.equal("Please check developers.pipedrive.com", err.error_info)
    assert.is_false(err.body.success)
    assert.is_nil(err.body_text)
    assert.is_nil(err.retry_after)
    assert.equal("pipedrive: not_found (HTTP 404) GET /api/v2/deals/999999: Deal not found", tostring(err))
  end)

  it("maps 401 to unauthorized and keeps errorCode as code", function()
    local _, err = parse(res(401, '{"success":false,"error":"unauthorized access","errorCode":401}'), V2_LIST)
    assert.equal("unauthorized", err.kind)
    assert.equal("unauthorized access", err.message)
    assert.equal(401, err.code)
    assert.equal("pipedrive: unauthorized (HTTP 401) GET /api/v2/deals: unauthorized access", tostring(err))
  end)

  it("keeps a 403 plan-limit code", function()
    local _, err = parse(res(403, '{"success":false,"error":"Deals limit reached","code":"feature_capping_deals_limit"}'),
      { method = "POST", path = "/api/v2/deals" })
    assert.equal("forbidden", err.kind)
    assert.equal("feature_capping_deals_limit", err.code)
  end)

  it("never puts an HTML page into the message", function()
    local html = "<!DOCTYPE html>\n<html><head><title>Attention Required! | Cloudflare</title></head>" ..
      ("<body>" .. ("x"):rep(2000) .. "</body></html>")
    local _, err = parse(res(403, html, { ["content-type"] = "text/html" }), V2_LIST)
    assert.equal("forbidden", err.kind)
    assert.equal("HTTP 403 Forbidden", err.message)
    assert.is_nil(err.body)
    assert.equal(512, #err.body_text)
    assert.equal(html:sub(1, 512), err.body_text)
    local line = tostring(err)
    assert.equal("pipedrive: forbidden (HTTP 403) GET /api/v2/deals: HTTP 403 Forbidden", line)
    assert.is_nil(line:find("<", 1, true))
  end)

  it("maps 429 to rate_limited with retry_after from Retry-After", function()
    local _, err = parse(res(429, '{"success":false,"error":"Too many requests"}',
      { ["retry-after"] = "7", ["x-ratelimit-reset"] = "2" }), V2_LIST)
    assert.equal("rate_limited", err.kind)
    assert.equal(7, err.retry_after)
    assert.equal("integer", compat.math_type(err.retry_after))
  end)

  it("falls back to x-ratelimit-reset on 429 without Retry-After", function()
    local _, err = parse(res(429, "", { ["x-ratelimit-reset"] = "2" }), V2_LIST)
    assert.equal("rate_limited", err.kind)
    assert.equal(2, err.retry_after)
    assert.equal("HTTP 429 Too Many Requests", err.message)
    _, err = parse(res(429, ""), V2_LIST)
    assert.is_nil(err.retry_after)
  end)

  it("reads a Retry-After date as seconds from now", function()
    local when = os.time() + 120
    local date = os.date("!%a, %d %b %Y %H:%M:%S GMT", when)
    local _, err = parse(res(503, "", { ["retry-after"] = date }), V2_LIST)
    assert.equal("server", err.kind)
    assert.is_true(err.retry_after >= 115 and err.retry_after <= 120, tostring(err.retry_after))
    _, err = parse(res(503, "", { ["retry-after"] = "Sun, 06 Nov 1994 08:49:37 GMT" }), V2_LIST)
    assert.equal(0, err.retry_after)
    _, err = parse(res(503, "", { ["retry-after"] = "soon" }), V2_LIST)
    assert.is_nil(err.retry_after)
  end)

  it("maps 5xx to server", function()
    for _, st in ipairs { 500, 501, 502, 503, 504, 599 } do
      local _, err = parse(res(st, '{"success":false,"error":"Internal error"}'), V2_LIST)
      assert.equal("server", err.kind)
      assert.equal(st, err.status)
    end
    local _, err = parse(res(500, "oops"), V2_LIST)
    assert.equal("HTTP 500 Internal Server Error", err.message)
    assert.equal("oops", err.body_text)
  end)

  it("maps every status class of the contract", function()
    local kinds = { [400] = "validation", [401] = "unauthorized", [402] = "payment_required", [403] = "forbidden",
                    [404] = "not_found", [405] = "unsupported", [409] = "http", [410] = "not_found",
                    [415] = "unsupported", [422] = "validation", [429] = "rate_limited", [500] = "server",
                    [503] = "server", [301] = "http", [100] = "http", [418] = "http" }
    for st, kind in pairs(kinds) do
      local _, err = parse(res(st, "{}"), V2_LIST)
      assert.equal(kind, err.kind, "status " .. st)
    end
  end)

  it("uses message, then the first of errors, then the status line", function()
    local _, err = parse(res(403, '{"success":false,"message":"Forbidden"}'), V2_LIST)
    assert.equal("Forbidden", err.message)
    _, err = parse(res(400, '{"status":"error","success":false,"errors":{"subscription_url":["invalid or non-reachable URL"]}}'),
      { method = "POST", path = "/v1/webhooks" })
    assert.equal("validation", err.kind)
    assert.equal("subscription_url: invalid or non-reachable URL", err.message)
    _, err = parse(res(404, '{"status":"error","success":false,"errors":{"id":["not found"],"a":["first"]}}'), V2_LIST)
    assert.equal("a: first", err.message)
    _, err = parse(res(400, '{"success":false,"errors":["plain"]}'), V2_LIST)
    assert.equal("plain", err.message)
    _, err = parse(res(400, '{"success":false,"errors":[{"message":"in object"}]}'), V2_LIST)
    assert.equal("in object", err.message)
    _, err = parse(res(400, '{"success":false,"error":""}'), V2_LIST)
    assert.equal("HTTP 400 Bad Request", err.message)
    _, err = parse(res(418, '{"success":false}'), V2_LIST)
    assert.equal("HTTP 418", err.message)
  end)

  it("treats a 2xx with success false as a failure", function()
    local v, err = parse(res(200, '{"success":false,"error":"Something went wrong"}'), V2_LIST)
    assert.is_nil(v)
    assert.equal("http", err.kind)
    assert.equal(200, err.status)
    assert.equal("Something went wrong", err.message)
    v, err = parse(res(200, '{"success":false,"error":"no","errorCode":404}'), V2_LIST)
    assert.is_nil(v)
    assert.equal("not_found", err.kind)
  end)

  it("reports a 2xx body that is not a JSON object as decode", function()
    local v, err = parse(res(200, "<html>maintenance</html>"), V2_LIST)
    assert.is_nil(v)
    assert.equal("decode", err.kind)
    assert.equal(200, err.status)
    assert.matches("^response body is not valid JSON %(unexpected character at byte 1", err.message)
    assert.is_nil(err.message:find("maintenance", 1, true))
    assert.equal("<html>maintenance</html>", err.body_text)
    v, err = parse(res(200, '{"success":true,"data":[1,2'), V2_LIST)
    assert.is_nil(v)
    assert.equal("decode", err.kind)
    v, err = parse(res(200, "[1,2]"), V2_LIST)
    assert.is_nil(v)
    assert.equal("decode", err.kind)
    assert.equal("response body is not a JSON object", err.message)
    v, err = parse(res(200, ""), V2_LIST)
    assert.is_nil(v)
    assert.equal("decode", err.kind)
    assert.equal("response body is empty", err.message)
    v, err = parse(res(200, "null"), V2_LIST)
    assert.is_nil(v)
    assert.equal("decode", err.kind)
  end)

  it("never puts a query string into the error", function()
    local _, err = parse(res(404, '{"success":false,"error":"x"}'),
      { method = "GET", path = "/api/v2/deals?api_token=SECRET" })
    assert.equal("/api/v2/deals", err.path)
    assert.is_nil(tostring(err):find("SECRET", 1, true))
  end)
end)

describe("core.error_mt", function()
  it("gives one line, leaving out absent parts", function()
    local function line(t) return tostring(setmetatable(t, core.error_mt)) end
    assert.equal("pipedrive: timeout GET /api/v2/deals: Operation timed out after 30000 ms",
      line { kind = "timeout", method = "GET", path = "/api/v2/deals", message = "Operation timed out after 30000 ms" })
    assert.equal("pipedrive: token_file: bad mode", line { kind = "token_file", message = "bad mode" })
    assert.equal("pipedrive: error", line {})
    assert.equal("pipedrive: http (HTTP 302)", line { kind = "http", status = 302 })
    assert.equal("pipedrive: x /p: a b c", line { kind = "x", path = "/p?token=1#f", message = "a\nb\r\nc" })
    local long = line { kind = "x", message = ("é"):rep(400) }
    assert.is_nil(long:find("\n"))
    assert.equal("...", long:sub(-3))
    assert.is_true(#long < 600)
    assert.is_truthy(compat.utf8_len(long))
  end)

  it("is the metatable of every error from parse_response", function()
    local _, err = parse(res(500, ""), V2_LIST)
    assert.equal(core.error_mt, getmetatable(err))
    assert.equal("pipedrive.error", core.error_mt.__name)
  end)
end)

describe("core.parse_response misuse", function()
  it("raises naming the function and field", function()
    assert.matches("parse_response: expected a response table, got nil", raises(parse, nil), 1, true)
    assert.matches("parse_response: res.status must be an integer HTTP status", raises(parse, { body = "" }), 1, true)
    assert.matches("parse_response: res.body must be a string", raises(parse, { status = 200, body = 5 }), 1, true)
    assert.matches("parse_response: res.headers must be a table", raises(parse, { status = 200, headers = "x" }), 1, true)
    assert.matches("parse_response: ctx must be a table", raises(parse, { status = 200 }, "x"), 1, true)
    assert.matches("parse_response: ctx.paging must be", raises(parse, { status = 200 }, { paging = "pages" }), 1, true)
  end)
end)
