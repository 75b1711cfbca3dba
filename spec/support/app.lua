-- The sandbox app called in process, through app:handle with request tables
-- (no network), for the sandbox's own specs. Bodies are read with lua-cjson,
-- which is independent of both the sandbox's writer and the client's decoder.
local compat = require "pipedrive.compat"
local sandbox = require "pipedrive.sandbox"
local cjson = require "cjson"
local luassert = require "luassert"

local M = {}

M.TOKEN = "sandbox-token"
M.T0 = 1795867200 -- 2026-11-28 12:00:00 UTC

--- A sandbox app on a clock that only moves by app.advance(seconds).
function M.new_app(opts)
  opts = opts or {}
  local now = M.T0
  opts.clock = function() return now end
  local app = sandbox.new(opts)
  app.advance = function(s) now = now + s end
  return app
end

--- cjson reads every number as a float; ids and counts are integers.
function M.integers(v)
  if type(v) == "number" then return compat.tointeger(v) or v end
  if type(v) == "table" then
    for k, x in pairs(v) do v[k] = M.integers(x) end
  end
  return v
end

--- A query table as a query string, keys sorted (a string passes through).
function M.encode_query(q)
  if type(q) ~= "table" then return q or "" end
  local keys = {}
  for k in pairs(q) do keys[#keys + 1] = k end
  table.sort(keys)
  local parts = {}
  for _, k in ipairs(keys) do
    local v = tostring(q[k]):gsub("[^%w%-%._~]", function(c) return ("%%%02X"):format(c:byte()) end)
    parts[#parts + 1] = k .. "=" .. v
  end
  return table.concat(parts, "&")
end

--- One request; returns status, the decoded body, headers, the raw body.
-- opts: query (table or string), body (table -> JSON, or a string), headers,
-- token (false: none), content_type, remote_addr.
function M.call(app, method, path, opts)
  opts = opts or {}
  local headers = {}
  if opts.token ~= false then headers["x-api-token"] = opts.token or M.TOKEN end
  local body = opts.body
  if type(body) == "table" then body = cjson.encode(body) end
  if body then headers["content-type"] = opts.content_type or "application/json" end
  for k, v in pairs(opts.headers or {}) do headers[k] = v end
  local status, h, text = app:handle{ method = method, path = path, query_string = M.encode_query(opts.query),
                                      headers = headers, body = body or "", remote_addr = opts.remote_addr }
  local ok, doc = pcall(cjson.decode, text)
  assert(ok, "response is not JSON: " .. tostring(text))
  return status, M.integers(doc), h, text
end

--- M.call that must answer `want` (200); returns the decoded body, headers, raw body.
function M.ok_call(app, method, path, opts, want)
  local status, doc, h, text = M.call(app, method, path, opts)
  luassert.equal(want or 200, status, text)
  return doc, h, text
end

--- The ids of a list of records, in order.
function M.ids(list)
  local out = {}
  for i, r in ipairs(list) do out[i] = r.id end
  return out
end

--- The sandbox's whole state as its JSON text (to prove a refused request changed nothing).
function M.state(app)
  local _, _, text = app:handle{ method = "GET", path = "/_sandbox/state", headers = {}, body = "" }
  return text
end

return M
