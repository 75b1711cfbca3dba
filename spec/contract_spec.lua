-- Contract: every endpoint the sandbox serves answers with bodies that conform to
-- Pipedrive's own OpenAPI files (vendored in openapi/, or read from
-- $PIPEDRIVE_OPENAPI_DIR; see spec/support/openapi.lua):
--   openapi-v2.yaml              /api/v2/...
--   openapi-v1-2026-01-14.yaml   v1 deals, persons, organizations, stages, pipelines
--   openapi-v1.yaml              v1 leads, users, filters, leadLabels, currencies, webhooks
-- (v1 activities and the v1 updates of deals, persons and organizations: the 2026-01-14 file)
-- v1 endpoints are called under both prefixes the sandbox accepts, /v1 and /api/v1.
--
-- Requests go through the curl command line, not through the client under test,
-- and bodies are decoded by the validator's own decoder (integers stay integers).
-- Error responses are checked against the schema the file gives for that
-- path/method/status; the files document hardly any error responses, so otherwise
-- against the generic error schemas they do document (see ERROR_SCHEMAS).
--
-- Besides the schemas, every body must carry the envelope Pipedrive documents:
-- `success` true on 2xx and false otherwise, and the list/paging fields asked for.
-- Properties the schemas do not name count as mismatches (the sandbox should not
-- invent fields), except those listed in ALLOW with the reason.
--
-- CONTRACT_VERBOSE=1 also prints what ALLOW and the files' own examples let pass, and
-- the documented properties each response leaves out. CONTRACT_SANDBOX_ARGS passes
-- extra command-line options to the sandbox (e.g. "--omit-nulls").
-- The sandbox writes null for a property without a value, as Pipedrive does, also where
-- the schema does not allow null; those nulls are accepted (oa.validate's real_nulls)
-- unless the sandbox runs with --omit-nulls, where every null must be one the schema allows.
local compat = require "pipedrive.compat"
local oa = require "support.openapi"
local cjson = require "cjson"

local VERBOSE = os.getenv("CONTRACT_VERBOSE") == "1"
local REAL_NULLS = not (" " .. (os.getenv("CONTRACT_SANDBOX_ARGS") or "") .. " "):find(" --omit-nulls ", 1, true)
local T0 = os.clock()

-- Places where the official schema is at odds with what FACTS.md documents. Keys are
-- "<METHOD> <path> <JSON path>": path as in the file with its /v1 or /api/v2 prefix,
-- or * for any; METHOD ERROR means any method, error responses (status >= 400) only;
-- in the JSON path [] stands for any index and * for any key. An entry also covers
-- everything below its JSON path.
-- (Where the file's own example shows the form, as for /v1/deals' nested pagination,
-- the validator accepts it without an entry here; see spec/support/openapi.lua.)
-- An entry no check needed is reported at the end, so the list stays short and true.
local ALLOW = {
  ["GET /v1/leads $.additional_data.pagination"] =
    "FACTS §1: v1 lists nest start/limit/more_items_in_collection in additional_data.pagination; "
    .. "the leads schema lists them flat under additional_data (and its example has no paging)",
  ["GET /v1/leads/archived $.additional_data.pagination"] = "as for GET /v1/leads (same schema)",
  ["ERROR * $.error_info"] = "FACTS §1: error bodies carry error_info; failResponse and unathorizedResponse omit it",
  ["ERROR * $.data"] = "FACTS §1: error bodies carry data: null; failResponse and unathorizedResponse omit it",
  ["ERROR * $.additional_data"] = "FACTS §1: error bodies carry additional_data: null; the two schemas omit it",
}

-- Error schemas used when the file documents none for the path/method/status.
local ERROR_SCHEMAS = {
  v1 = {
    [401] = { "v1", "/users/me", "get", 401, "unathorizedResponse" },
    [400] = { "v1", "/users/{id}", "get", 404, "failResponse" },
    [404] = { "v1", "/users/{id}", "get", 404, "failResponse" },
    -- FACTS §5: 422 when the 40-webhooks cap is hit; the file documents no body, so the
    -- webhooks API's own error body is expected
    [422] = { "v1", "/webhooks", "post", 400, "the 400 body of POST /webhooks" },
  },
  v2 = {
    [401] = { "v1", "/users/me", "get", 401, "unathorizedResponse" }, -- v2 documents no 401
    [400] = { "v2", "/deals/{id}/convert/lead", "post", 404, "GetConvertResponse" },
    [404] = { "v2", "/deals/{id}/convert/lead", "post", 404, "GetConvertResponse" },
  },
}

local FILES = { v2 = "openapi-v2.yaml", v1 = "openapi-v1.yaml", ["v1-old"] = "openapi-v1-2026-01-14.yaml" }

---------------------------------------------------------------------------
-- HTTP through the curl command line
---------------------------------------------------------------------------

local function shq(s)
  return "'" .. tostring(s):gsub("'", [['\'']]) .. "'"
end

local curl_calls = 0

-- Returns status (number), body text.
local function curl(method, url, headers, body, fields)
  local cmd = { "curl -sS --max-time 20 -X", method, "-o - -w", shq("\n%{http_code}") }
  for _, f in ipairs(fields or {}) do cmd[#cmd + 1] = "-F " .. shq(f) end -- multipart/form-data, curl's own
  for name, value in pairs(headers or {}) do
    cmd[#cmd + 1] = "-H " .. shq(name .. ": " .. value)
  end
  if body then cmd[#cmd + 1] = "--data-binary " .. shq(body) end
  cmd[#cmd + 1] = shq(url)
  local p = assert(io.popen(table.concat(cmd, " ") .. " 2>&1", "r"))
  local out = p:read("*a")
  p:close()
  curl_calls = curl_calls + 1
  local text, code = out:match("^(.*)\n(%d%d%d)$")
  assert(text, ("curl %s %s failed: %s"):format(method, url, out))
  return tonumber(code), text
end

local function qs(query)
  if not query then return "" end
  local keys = {}
  for k in pairs(query) do keys[#keys + 1] = k end
  table.sort(keys)
  local parts = {}
  for _, k in ipairs(keys) do
    local v = tostring(query[k]):gsub("[^%w%-%._~]", function(c) return ("%%%02X"):format(c:byte()) end)
    parts[#parts + 1] = k .. "=" .. v
  end
  return "?" .. table.concat(parts, "&")
end

---------------------------------------------------------------------------
-- The sandbox and its data
---------------------------------------------------------------------------

local sb -- { url, api_token, stop }
local ctx = {} -- ids of what setup created
local mismatches = {} -- every failure, printed together at the end

-- An API call with the sandbox's token (or opts.token, false for none). A 429 (the
-- sandbox's rate limits) is waited out: rate limiting is not what this spec checks.
local function call(method, path, opts)
  opts = opts or {}
  local headers = { accept = "application/json" }
  local token = opts.token
  if token == nil then token = sb.api_token end
  if token then headers["x-api-token"] = token end
  local body
  if opts.body then
    body = cjson.encode(opts.body)
    headers["content-type"] = "application/json"
  end
  local status, text
  for _ = 1, 5 do
    status, text = curl(method, sb.url .. path .. qs(opts.query), headers, body, opts.fields)
    if status ~= 429 then break end
    os.execute("sleep 1")
  end
  return status, text
end

-- POST that must succeed (used to make data); returns the decoded data.
local function make(path, body)
  local status, text = call("POST", path, { body = body })
  assert(status == 200 or status == 201, ("POST %s -> %d: %s"):format(path, status, text:sub(1, 300)))
  local doc = assert(oa.json_decode(text))
  return doc.data
end

---------------------------------------------------------------------------
-- One check
---------------------------------------------------------------------------

local allow_used = {}

-- The validator's allow predicate for one response; notes which entries were used.
local function allow_for(method, canon, status)
  local t, full = {}, {}
  for key, reason in pairs(ALLOW) do
    local m, p, jp = key:match("^(%S+) (%S+) (%S+)$")
    assert(m, "bad ALLOW key " .. key)
    local m_ok = m == method or m == "*" or (m == "ERROR" and status >= 400)
    if m_ok and (p == "*" or p == canon) then
      t[jp] = reason
      full[jp] = key
    end
  end
  local match = oa.allow_matcher(t)
  return function(path)
    local reason, jp = match(path)
    if reason then allow_used[full[jp]] = true end
    return reason
  end
end

local function schema_for(c)
  local spec = oa.load(FILES[c.file])
  local schema, example = oa.response_schema(spec, c.doc, c.method, c.status)
  if schema then return spec, schema, example, FILES[c.file] end
  local e = assert(ERROR_SCHEMAS[c.file == "v2" and "v2" or "v1"][c.status],
    ("no schema for %s %s %d and no generic one"):format(c.method, c.doc, c.status))
  local gspec = oa.load(FILES[e[1]])
  local gschema, gexample = assert(oa.response_schema(gspec, e[2], e[3], e[4]))
  return gspec, gschema, gexample, ("%s %s (of %s %s %d)"):format(FILES[e[1]], e[5], e[3]:upper(), e[2], e[4])
end

local function report(title, lines)
  local text = title .. "\n    " .. table.concat(lines, "\n    ")
  mismatches[#mismatches + 1] = text
  assert(false, text)
end

-- c = { method, prefix, doc (path in the file), file, status, path (actual, optional),
--       query, body, token, expect = function(body, status) -> list of failures }
local function verify(c, title)
  local path = c.path or c.doc
  if type(path) == "function" then path = path() end
  local query = type(c.query) == "function" and c.query() or c.query
  local body = type(c.body) == "function" and c.body() or c.body
  local fields = type(c.fields) == "function" and c.fields() or c.fields
  local status, text = call(c.method:upper(), c.prefix .. path, { query = query, body = body, token = c.token,
    fields = fields })
  local failures = {}
  if status ~= c.status then
    failures[#failures + 1] = ("status: expected %d, got %d"):format(c.status, status)
  end
  local doc, derr = oa.json_decode(text)
  if doc == nil then
    failures[#failures + 1] = ("body is not JSON (%s): %s"):format(derr, text:sub(1, 200))
    report(title, failures)
  end
  local spec, schema, example = schema_for(c)
  local canon = (c.file == "v2" and "/api/v2" or "/v1") .. c.doc
  local absent = VERBOSE and {} or nil
  local ok, problems, allowed = oa.validate(schema, doc, spec, {
    allow = allow_for(c.method:upper(), canon, status), example = example, undeclared = "problem", absent = absent,
    real_nulls = REAL_NULLS,
  })
  if not ok then
    for _, p in ipairs(problems) do failures[#failures + 1] = p end
  end
  if oa.kind(doc) == "object" then
    local want = c.status < 400
    if doc.success ~= want then
      failures[#failures + 1] = ("$.success: expected %s (FACTS §1 envelope), got %s"):format(tostring(want),
        oa.kind(doc.success) == "null" and "null" or tostring(doc.success))
    end
    if c.envelope == "webhooks" and status ~= 401 then
      -- FACTS §5: the webhooks API answers {"status":"ok"|"error","success",...} with field errors in `errors`
      local want_status = want and "ok" or "error"
      if doc.status ~= want_status then
        failures[#failures + 1] = ("$.status: expected %q (FACTS §5 envelope), got %s"):format(want_status,
          tostring(doc.status))
      end
      if not want and oa.kind(doc.errors) ~= "object" then
        failures[#failures + 1] = "$.errors: expected the field errors object (FACTS §5), got " .. oa.kind(doc.errors)
      end
    elseif not want and type(doc.error) ~= "string" then
      failures[#failures + 1] = "$.error: expected the error message string (FACTS §1), got " .. oa.kind(doc.error)
    end
  else
    failures[#failures + 1] = "$: expected a JSON object envelope, got " .. oa.kind(doc)
  end
  if c.expect and #failures == 0 then
    for _, f in ipairs(c.expect(doc, status) or {}) do failures[#failures + 1] = f end
  end
  if VERBOSE then
    local left = {}
    for p in pairs(absent) do left[#left + 1] = p end
    table.sort(left)
    if #allowed > 0 or #left > 0 then
      io.stderr:write(title, "\n    ", table.concat(allowed, "\n    "), #allowed > 0 and "\n    " or "",
        #left > 0 and ("documented but left out: " .. table.concat(left, ", ")) or "", "\n")
    end
  end
  if #failures > 0 then report(title, failures) end
  return doc
end

---------------------------------------------------------------------------
-- Expectations that make a check meaningful (a list with items, paging present)
---------------------------------------------------------------------------

local function list_of(min)
  return function(doc)
    local data = doc.data
    if oa.kind(data) == "object" and data.items then data = data.items end
    if oa.kind(data) ~= "array" or #data < min then
      return { ("$.data: expected at least %d items to check, got %s"):format(min,
        oa.kind(data) == "array" and #data or oa.kind(data)) }
    end
  end
end

local function cursor_more(doc)
  local fails = list_of(1)(doc) or {}
  local ad = doc.additional_data
  if oa.kind(ad) ~= "object" or type(ad.next_cursor) ~= "string" then
    fails[#fails + 1] = "$.additional_data.next_cursor: expected a cursor string (FACTS §1: more items exist)"
  end
  return fails
end

local function offset_more(doc)
  local fails = list_of(1)(doc) or {}
  local pg = oa.kind(doc.additional_data) == "object" and doc.additional_data.pagination
  if oa.kind(pg) ~= "object" or pg.more_items_in_collection ~= true or compat.math_type(pg.next_start) ~= "integer" then
    fails[#fails + 1] = "$.additional_data.pagination: expected more_items_in_collection true and next_start "
      .. "(FACTS §1: more items exist)"
  end
  return fails
end

---------------------------------------------------------------------------
-- The cases
---------------------------------------------------------------------------

local CASES = {}

local function add(c)
  CASES[#CASES + 1] = c
end

local V1_PREFIXES = { "/v1", "/api/v1" }

-- success checks; `file` names which OpenAPI file documents the path
local function endpoint(file, prefixes, c)
  for _, prefix in ipairs(prefixes) do
    local e = {}
    for k, v in pairs(c) do e[k] = v end
    e.file, e.prefix = file, prefix
    add(e)
  end
end

local function v2_resource(name, singular, make_body)
  local base = "/" .. name
  endpoint("v2", { "/api/v2" }, { method = "get", doc = base, status = 200, expect = list_of(3) })
  endpoint("v2", { "/api/v2" }, { method = "get", doc = base, status = 200, query = { limit = 2 },
    note = "first page, limit=2", expect = cursor_more })
  endpoint("v2", { "/api/v2" }, { method = "get", doc = base, status = 200, note = "next page by cursor",
    query = function()
      local _, text = call("GET", "/api/v2" .. base, { query = { limit = 2 } })
      return { limit = 2, cursor = assert(oa.json_decode(text)).additional_data.next_cursor }
    end, expect = list_of(1) })
  endpoint("v2", { "/api/v2" }, { method = "post", doc = base, status = 200, body = make_body })
  endpoint("v2", { "/api/v2" }, { method = "get", doc = base .. "/{id}", status = 200,
    path = function() return base .. "/" .. ctx[singular .. "_v2"] end })
  endpoint("v2", { "/api/v2" }, { method = "delete", doc = base .. "/{id}", status = 200,
    path = function() return base .. "/" .. make("/api/v2" .. base, make_body()).id end })
  endpoint("v2", { "/api/v2" }, { method = "get", doc = base .. "/search", status = 200,
    query = { term = "Contract" }, expect = list_of(2) })
  endpoint("v2", { "/api/v2" }, { method = "get", doc = base .. "/search", status = 200,
    query = { term = "Contract", limit = 1 }, note = "limit=1", expect = cursor_more })
  -- errors
  endpoint("v2", { "/api/v2" }, { method = "get", doc = base, status = 401, token = "wrong-token", note = "wrong token" })
  endpoint("v2", { "/api/v2" }, { method = "get", doc = base .. "/{id}", status = 404, path = base .. "/987654",
    note = "unknown id" })
  endpoint("v2", { "/api/v2" }, { method = "delete", doc = base .. "/{id}", status = 404, path = base .. "/987654",
    note = "unknown id" })
  endpoint("v2", { "/api/v2" }, { method = "post", doc = base, status = 400, body = { visible_to = 3 },
    note = "no " .. (name == "deals" and "title" or "name") })
  endpoint("v2", { "/api/v2" }, { method = "get", doc = base .. "/search", status = 400, note = "no term" })
end

local function v1_resource(name, singular, make_body)
  local base = "/" .. name
  endpoint("v1-old", V1_PREFIXES, { method = "get", doc = base, status = 200, expect = list_of(3) })
  endpoint("v1-old", V1_PREFIXES, { method = "get", doc = base, status = 200, query = { start = 0, limit = 2 },
    note = "start=0&limit=2", expect = offset_more })
  endpoint("v1-old", V1_PREFIXES, { method = "get", doc = base, status = 200, query = { start = 2, limit = 2 },
    note = "start=2&limit=2", expect = list_of(1) })
  endpoint("v1-old", V1_PREFIXES, { method = "post", doc = base, status = 201, body = make_body })
  endpoint("v1-old", V1_PREFIXES, { method = "get", doc = base .. "/{id}", status = 200,
    path = function() return base .. "/" .. ctx[singular .. "_v1"] end })
  endpoint("v1-old", V1_PREFIXES, { method = "delete", doc = base .. "/{id}", status = 200,
    path = function() return base .. "/" .. make("/v1" .. base, make_body()).id end })
  endpoint("v1-old", V1_PREFIXES, { method = "get", doc = base .. "/search", status = 200,
    query = { term = "Contract" }, expect = list_of(2) })
  endpoint("v1-old", V1_PREFIXES, { method = "get", doc = base .. "/search", status = 200,
    query = { term = "Contract", start = 0, limit = 1 }, note = "limit=1", expect = offset_more })
  endpoint("v1-old", V1_PREFIXES, { method = "get", doc = base, status = 401, token = "wrong-token",
    note = "wrong token" })
  endpoint("v1-old", V1_PREFIXES, { method = "get", doc = base .. "/{id}", status = 404, path = base .. "/987654",
    note = "unknown id" })
  endpoint("v1-old", V1_PREFIXES, { method = "post", doc = base, status = 400, body = { visible_to = "3" },
    note = "no " .. (name == "deals" and "title" or "name") })
  endpoint("v1-old", V1_PREFIXES, { method = "get", doc = base .. "/search", status = 400, note = "no term" })
end

local seq = 0
local function next_n()
  seq = seq + 1
  return seq
end

v2_resource("deals", "deal", function()
  return { title = "Contract Deal " .. next_n(), value = 1500, currency = "EUR",
    person_id = ctx.person_v2, org_id = ctx.org_v2, expected_close_date = "2030-01-31" }
end)
v2_resource("persons", "person", function()
  return { name = "Contract Person " .. next_n(), org_id = ctx.org_v2,
    emails = { { value = "p" .. seq .. "@example.com", primary = true, label = "work" } },
    phones = { { value = "+3725550" .. seq, primary = true, label = "mobile" } } }
end)
v2_resource("organizations", "org", function()
  return { name = "Contract Org " .. next_n(), address = { value = "Tallinn, Estonia" } }
end)

v1_resource("deals", "deal", function()
  return { title = "Contract Deal " .. next_n(), value = "2500", currency = "EUR",
    person_id = ctx.person_v2, org_id = ctx.org_v2, expected_close_date = "2030-02-28" }
end)
v1_resource("persons", "person", function()
  return { name = "Contract Person " .. next_n(), org_id = ctx.org_v2,
    email = { { value = "q" .. seq .. "@example.com", primary = true, label = "work" } },
    phone = { { value = "+3725551" .. seq, primary = true, label = "work" } } }
end)
v1_resource("organizations", "org", function()
  return { name = "Contract Org " .. next_n(), address = "Tartu, Estonia" }
end)

-- stages and pipelines: lists only
endpoint("v2", { "/api/v2" }, { method = "get", doc = "/stages", status = 200, expect = list_of(2) })
endpoint("v2", { "/api/v2" }, { method = "get", doc = "/stages", status = 200, query = { limit = 1 },
  note = "limit=1", expect = cursor_more })
endpoint("v2", { "/api/v2" }, { method = "get", doc = "/stages", status = 401, token = "wrong-token",
  note = "wrong token" })
endpoint("v2", { "/api/v2" }, { method = "get", doc = "/pipelines", status = 200, expect = list_of(1) })
endpoint("v2", { "/api/v2" }, { method = "get", doc = "/pipelines", status = 401, token = "wrong-token",
  note = "wrong token" })
endpoint("v1-old", V1_PREFIXES, { method = "get", doc = "/stages", status = 200, expect = list_of(2) })
endpoint("v1-old", V1_PREFIXES, { method = "get", doc = "/stages", status = 200, query = { start = 0, limit = 1 },
  note = "start=0&limit=1", expect = offset_more })
endpoint("v1-old", V1_PREFIXES, { method = "get", doc = "/stages", status = 401, token = "wrong-token",
  note = "wrong token" })
endpoint("v1-old", V1_PREFIXES, { method = "get", doc = "/pipelines", status = 200, expect = list_of(1) })
endpoint("v1-old", V1_PREFIXES, { method = "get", doc = "/pipelines", status = 401, token = "wrong-token",
  note = "wrong token" })

-- uploads (multipart/form-data, sent by the curl command's -F): files and a person's picture
local UPLOAD = os.tmpname()
do
  local f = assert(io.open(UPLOAD, "wb"))
  f:write("contract upload\n")
  f:close()
end
local function upload_file()
  local status, text = call("POST", "/v1/files", { fields = { "file=@" .. UPLOAD .. ";filename=c.txt" } })
  assert(status == 200, text)
  return assert(oa.json_decode(text)).data.id
end
endpoint("v1", V1_PREFIXES, { method = "post", doc = "/files", status = 200,
  fields = function() return { "file=@" .. UPLOAD .. ";filename=contract.txt;type=text/plain",
                               "deal_id=" .. ctx.deal_v2 } end })
endpoint("v1", V1_PREFIXES, { method = "post", doc = "/files", status = 400, body = { deal_id = 1 },
  note = "JSON instead of multipart" })
endpoint("v1", V1_PREFIXES, { method = "get", doc = "/files", status = 200,
  query = function() upload_file() return { start = 0, limit = 1 } end, expect = offset_more })
endpoint("v1", V1_PREFIXES, { method = "get", doc = "/files/{id}", status = 200,
  path = function() return "/files/" .. upload_file() end })
endpoint("v1", V1_PREFIXES, { method = "put", doc = "/files/{id}", status = 200,
  path = function() return "/files/" .. upload_file() end, body = { name = "renamed.txt", description = "notes" },
  expect = function(doc)
    if doc.data.name == "renamed.txt" and doc.data.description == "notes" then return {} end
    return { "the file's name and description were not updated" }
  end })
endpoint("v1", V1_PREFIXES, { method = "delete", doc = "/files/{id}", status = 200,
  path = function() return "/files/" .. upload_file() end })
endpoint("v1", V1_PREFIXES, { method = "get", doc = "/files/{id}", status = 404, path = "/files/987654",
  note = "unknown id" })
endpoint("v1", V1_PREFIXES, { method = "post", doc = "/persons/{id}/picture", status = 200,
  path = function() return "/persons/" .. ctx.person_v2 .. "/picture" end,
  fields = function() return { "file=@" .. UPLOAD .. ";filename=face.png;type=image/png", "crop_x=0" } end })
endpoint("v1", V1_PREFIXES, { method = "delete", doc = "/persons/{id}/picture", status = 200,
  path = function()
    local p = "/persons/" .. ctx.person_v2 .. "/picture"
    local status, text = call("POST", "/v1" .. p, { fields = { "file=@" .. UPLOAD .. ";filename=face.png;type=image/png" } })
    assert(status == 200, text)
    return p
  end })

-- leads: v1 CRUD (current v1 file), search in v1 and v2
local function lead_body()
  return { title = "Contract Lead " .. next_n(), person_id = ctx.person_v2, organization_id = ctx.org_v2,
    value = { amount = 750, currency = "EUR" }, expected_close_date = "2030-03-31" }
end
endpoint("v1", V1_PREFIXES, { method = "get", doc = "/leads", status = 200, expect = list_of(3) })
endpoint("v1", V1_PREFIXES, { method = "get", doc = "/leads", status = 200, query = { start = 0, limit = 2 },
  note = "start=0&limit=2", expect = offset_more })
endpoint("v1", V1_PREFIXES, { method = "get", doc = "/leads/archived", status = 200 })
-- an archived deal leaves GET /api/v2/deals for /api/v2/deals/archived
endpoint("v2", { "/api/v2" }, { method = "get", doc = "/deals/archived", status = 200, query = function()
  make("/api/v2/deals", { title = "Contract Deal archived", is_archived = true })
  return { limit = 100 }
end, expect = function(doc)
  for _, d in ipairs(doc.data) do
    if d.is_archived ~= true then return { "$.data[]: a deal that is not archived" } end
  end
  if #doc.data < 1 then return { "$.data: expected the archived deal" } end
end })
endpoint("v1", V1_PREFIXES, { method = "post", doc = "/leads", status = 201, body = lead_body })
endpoint("v1", V1_PREFIXES, { method = "get", doc = "/leads/{id}", status = 200,
  path = function() return "/leads/" .. ctx.lead_v1 end })
endpoint("v1", V1_PREFIXES, { method = "delete", doc = "/leads/{id}", status = 200,
  path = function() return "/leads/" .. make("/v1/leads", lead_body()).id end })
endpoint("v1", V1_PREFIXES, { method = "get", doc = "/leads/{id}", status = 404,
  path = "/leads/00000000-0000-4000-8000-000000000000", note = "unknown id" })
endpoint("v1", V1_PREFIXES, { method = "delete", doc = "/leads/{id}", status = 404,
  path = "/leads/00000000-0000-4000-8000-000000000000", note = "unknown id" })
endpoint("v1", V1_PREFIXES, { method = "post", doc = "/leads", status = 400, body = { title = "No person, no org" },
  note = "neither person nor organization" })
endpoint("v1", V1_PREFIXES, { method = "get", doc = "/leads", status = 401, token = "wrong-token", note = "wrong token" })
endpoint("v1", V1_PREFIXES, { method = "get", doc = "/leads/search", status = 200, query = { term = "Contract" },
  expect = list_of(2) })
endpoint("v1", V1_PREFIXES, { method = "get", doc = "/leads/search", status = 200,
  query = { term = "Contract", start = 0, limit = 1 }, note = "limit=1", expect = offset_more })
endpoint("v2", { "/api/v2" }, { method = "get", doc = "/leads/search", status = 200, query = { term = "Contract" },
  expect = list_of(2) })
endpoint("v2", { "/api/v2" }, { method = "get", doc = "/leads/search", status = 200,
  query = { term = "Contract", limit = 1 }, note = "limit=1", expect = cursor_more })
endpoint("v2", { "/api/v2" }, { method = "get", doc = "/leads/search", status = 400, note = "no term" })

-- lookups (current v1 file)
for _, p in ipairs{ "/users", "/leadLabels", "/currencies" } do
  endpoint("v1", V1_PREFIXES, { method = "get", doc = p, status = 200, expect = list_of(1) })
  endpoint("v1", V1_PREFIXES, { method = "get", doc = p, status = 401, token = "wrong-token", note = "wrong token" })
end
endpoint("v1", V1_PREFIXES, { method = "get", doc = "/filters", status = 200, expect = list_of(1) })
endpoint("v1", V1_PREFIXES, { method = "get", doc = "/filters", status = 200, query = { type = "deals" },
  note = "type=deals", expect = list_of(1) })
endpoint("v1", V1_PREFIXES, { method = "get", doc = "/filters", status = 401, token = "wrong-token",
  note = "wrong token" })

-- updates: v2 PATCH, v1 PUT (2026-01-14 file), v1 leads PATCH (current file)
local UPDATES = {
  { "deals", "deal", { title = "Contract Deal A (renamed)", value = 1200, status = "won" }, { title = "" } },
  { "persons", "person", { name = "Contract Person A (renamed)", emails = { { value = "new@example.com" } } },
    { name = "" } },
  { "organizations", "org", { name = "Contract Org A (renamed)", address = { value = "Narva" } }, { name = "" } },
}
for _, u in ipairs(UPDATES) do
  local base, singular, body, bad = "/" .. u[1], u[2], u[3], u[4]
  endpoint("v2", { "/api/v2" }, { method = "patch", doc = base .. "/{id}", status = 200, body = body,
    path = function() return base .. "/" .. ctx[singular .. "_v2"] end })
  endpoint("v2", { "/api/v2" }, { method = "patch", doc = base .. "/{id}", status = 404, body = body,
    path = base .. "/987654", note = "unknown id" })
  endpoint("v2", { "/api/v2" }, { method = "patch", doc = base .. "/{id}", status = 400, body = bad,
    path = function() return base .. "/" .. ctx[singular .. "_v2"] end, note = "empty name" })
  local v1body = {}
  for k, v in pairs(body) do v1body[k] = v end
  if v1body.value then v1body.value = "1300" end
  if v1body.emails then v1body.email, v1body.emails = "newer@example.com", nil end
  if v1body.address then v1body.address = "Tartu" end
  endpoint("v1-old", V1_PREFIXES, { method = "put", doc = base .. "/{id}", status = 200, body = v1body,
    path = function() return base .. "/" .. ctx[singular .. "_v1"] end })
  endpoint("v1-old", V1_PREFIXES, { method = "put", doc = base .. "/{id}", status = 404, body = v1body,
    path = base .. "/987654", note = "unknown id" })
end
endpoint("v1", V1_PREFIXES, { method = "patch", doc = "/leads/{id}", status = 200,
  body = { title = "Contract Lead A (renamed)", value = { amount = 900, currency = "EUR" }, was_seen = true },
  path = function() return "/leads/" .. ctx.lead_v1 end })
endpoint("v1", V1_PREFIXES, { method = "patch", doc = "/leads/{id}", status = 404, body = { title = "x" },
  path = "/leads/00000000-0000-4000-8000-000000000000", note = "unknown id" })

-- activities: v2 (v2 file) and v1 (2026-01-14 file)
local function activity_body(v1)
  local n = next_n()
  local b = { subject = "Contract call " .. n, type = "meeting", due_date = "2030-04-0" .. (n % 9 + 1),
    due_time = "10:30", duration = "00:45", deal_id = ctx.deal_v2, person_id = ctx.person_v2, org_id = ctx.org_v2,
    note = "Agenda", public_description = "Public", location = "Tallinn" }
  if v1 then
    b.user_id, b.busy_flag, b.done = 1, true, 0
  else
    b.owner_id, b.busy, b.done, b.priority = 1, true, false, 1
    b.location = { value = "Tallinn, Estonia", locality = "Tallinn", country = "Estonia" }
  end
  return b
end
endpoint("v2", { "/api/v2" }, { method = "get", doc = "/activities", status = 200, expect = list_of(3) })
endpoint("v2", { "/api/v2" }, { method = "get", doc = "/activities", status = 200, query = { limit = 2 },
  note = "first page, limit=2", expect = cursor_more })
endpoint("v2", { "/api/v2" }, { method = "get", doc = "/activities", status = 200,
  query = { limit = 2, sort_by = "due_date", sort_direction = "desc" }, note = "sort_by=due_date", expect = cursor_more })
endpoint("v2", { "/api/v2" }, { method = "post", doc = "/activities", status = 200, body = activity_body })
endpoint("v2", { "/api/v2" }, { method = "get", doc = "/activities/{id}", status = 200,
  path = function() return "/activities/" .. ctx.activity_v2 end })
endpoint("v2", { "/api/v2" }, { method = "patch", doc = "/activities/{id}", status = 200,
  body = { subject = "Contract call (moved)", done = true, due_time = "11:00" },
  path = function() return "/activities/" .. ctx.activity_v2 end })
endpoint("v2", { "/api/v2" }, { method = "delete", doc = "/activities/{id}", status = 200,
  path = function() return "/activities/" .. make("/api/v2/activities", activity_body()).id end })
endpoint("v2", { "/api/v2" }, { method = "get", doc = "/activities/{id}", status = 404, path = "/activities/987654",
  note = "unknown id" })
endpoint("v2", { "/api/v2" }, { method = "patch", doc = "/activities/{id}", status = 404, path = "/activities/987654",
  body = { subject = "x" }, note = "unknown id" })
endpoint("v2", { "/api/v2" }, { method = "delete", doc = "/activities/{id}", status = 404, path = "/activities/987654",
  note = "unknown id" })
endpoint("v2", { "/api/v2" }, { method = "post", doc = "/activities", status = 400, body = { type = "picnic" },
  note = "unknown type" })
endpoint("v2", { "/api/v2" }, { method = "get", doc = "/activities", status = 401, token = "wrong-token",
  note = "wrong token" })
endpoint("v1-old", V1_PREFIXES, { method = "get", doc = "/activities", status = 200, expect = list_of(3) })
endpoint("v1-old", V1_PREFIXES, { method = "get", doc = "/activities", status = 200, query = { start = 0, limit = 2 },
  note = "start=0&limit=2", expect = offset_more })
endpoint("v1-old", V1_PREFIXES, { method = "post", doc = "/activities", status = 201,
  body = function() return activity_body(true) end })
endpoint("v1-old", V1_PREFIXES, { method = "get", doc = "/activities/{id}", status = 200,
  path = function() return "/activities/" .. ctx.activity_v1 end })
endpoint("v1-old", V1_PREFIXES, { method = "put", doc = "/activities/{id}", status = 200,
  body = { subject = "Contract call (v1 moved)", done = 1, duration = "01:00" },
  path = function() return "/activities/" .. ctx.activity_v1 end })
endpoint("v1-old", V1_PREFIXES, { method = "delete", doc = "/activities/{id}", status = 200,
  path = function() return "/activities/" .. make("/v1/activities", activity_body(true)).id end })
endpoint("v1-old", V1_PREFIXES, { method = "get", doc = "/activities/{id}", status = 404, path = "/activities/987654",
  note = "unknown id" })
endpoint("v1-old", V1_PREFIXES, { method = "post", doc = "/activities", status = 400, body = { due_date = "someday" },
  note = "bad due_date" })
endpoint("v1-old", V1_PREFIXES, { method = "get", doc = "/activities", status = 401, token = "wrong-token",
  note = "wrong token" })

-- field definitions (v2 file: /xFields/{field_code} with /options; current v1 file: /xFields/{id}
-- and the bulk DELETE /xFields?ids=). Each check that changes or deletes makes its own field.
local function enum_field(v1)
  local b = { field_type = "enum", options = { { label = "Gold" }, { label = "Silver" }, { label = "Bronze" } } }
  b[v1 and "name" or "field_name"] = "Contract field " .. next_n()
  return b
end
local last_field -- the field a path function made, for the body function of the same check
local function fresh_field(kind, v1)
  last_field = make((v1 and "/v1/" or "/api/v2/") .. kind .. "Fields", enum_field(v1))
  return last_field
end
local function option_ids()
  local ids = {}
  for i, o in ipairs(last_field.options) do ids[i] = o.id end
  return ids
end
for _, kind in ipairs{ "deal", "person", "organization", "product" } do
  local base = "/" .. kind .. "Fields"
  local function v2_path(suffix)
    return function() return base .. "/" .. fresh_field(kind).field_code .. (suffix or "") end
  end
  local function v1_path() return base .. "/" .. fresh_field(kind, true).id end
  endpoint("v2", { "/api/v2" }, { method = "get", doc = base, status = 200, expect = list_of(3) })
  endpoint("v2", { "/api/v2" }, { method = "post", doc = base, status = 200, body = function() return enum_field() end })
  endpoint("v2", { "/api/v2" }, { method = "get", doc = base .. "/{field_code}", status = 200, path = v2_path() })
  endpoint("v2", { "/api/v2" }, { method = "patch", doc = base .. "/{field_code}", status = 200, path = v2_path(),
    body = { field_name = "Contract field renamed" } })
  endpoint("v2", { "/api/v2" }, { method = "delete", doc = base .. "/{field_code}", status = 200, path = v2_path() })
  endpoint("v2", { "/api/v2" }, { method = "post", doc = base .. "/{field_code}/options", status = 200,
    path = v2_path("/options"), body = { { label = "Platinum" } } })
  endpoint("v2", { "/api/v2" }, { method = "patch", doc = base .. "/{field_code}/options", status = 200,
    path = v2_path("/options"), body = function() return { { id = option_ids()[1], label = "Gold+" } } end })
  endpoint("v2", { "/api/v2" }, { method = "delete", doc = base .. "/{field_code}/options", status = 200,
    path = v2_path("/options"), body = function() return { { id = option_ids()[2] } } end })
  endpoint("v1", V1_PREFIXES, { method = "get", doc = base, status = 200, expect = list_of(3) })
  endpoint("v1", V1_PREFIXES, { method = "post", doc = base, status = kind == "product" and 201 or 200,
    body = function() return enum_field(true) end })
  endpoint("v1", V1_PREFIXES, { method = "get", doc = base .. "/{id}", status = 200, path = v1_path })
  endpoint("v1", V1_PREFIXES, { method = "put", doc = base .. "/{id}", status = 200, path = v1_path,
    body = { name = "Contract field renamed" } })
  endpoint("v1", V1_PREFIXES, { method = "delete", doc = base .. "/{id}", status = 200, path = v1_path })
  endpoint("v1", V1_PREFIXES, { method = "delete", doc = base, status = 200,
    query = function() return { ids = tostring(fresh_field(kind, true).id) } end })
end
endpoint("v2", { "/api/v2" }, { method = "get", doc = "/activityFields", status = 200, expect = list_of(3) })
endpoint("v2", { "/api/v2" }, { method = "get", doc = "/activityFields/{field_code}", status = 200,
  path = "/activityFields/subject", note = "a standard field" })
endpoint("v1", V1_PREFIXES, { method = "get", doc = "/activityFields", status = 200, expect = list_of(3) })
endpoint("v1", V1_PREFIXES, { method = "get", doc = "/leadFields", status = 200, expect = list_of(3) })

-- webhooks (current v1 file; FACTS §5). Their events (notes) never happen, so nothing is delivered.
local function webhook_body(extra)
  return function()
    local b = { subscription_url = "http://127.0.0.1:9/contract-hook", event_action = "create",
      event_object = "note", name = "Contract webhook " .. next_n() }
    for k, v in pairs(extra or {}) do b[k] = v end
    return b
  end
end
local webhooks_full = false
endpoint("v1", V1_PREFIXES, { method = "get", doc = "/webhooks", status = 200, envelope = "webhooks",
  expect = list_of(1) })
endpoint("v1", V1_PREFIXES, { method = "post", doc = "/webhooks", status = 201, envelope = "webhooks",
  body = webhook_body() })
endpoint("v1", V1_PREFIXES, { method = "post", doc = "/webhooks", status = 201, envelope = "webhooks",
  body = webhook_body{ version = "1.0", event_action = "added", event_object = "activityType",
                       http_auth_user = "hook", http_auth_password = "s3cret" },
  note = "version 1.0, Basic auth" })
endpoint("v1", V1_PREFIXES, { method = "delete", doc = "/webhooks/{id}", status = 200, envelope = "webhooks",
  path = function() return "/webhooks/" .. make("/v1/webhooks", webhook_body()()).id end })
endpoint("v1", V1_PREFIXES, { method = "delete", doc = "/webhooks/{id}", status = 404, envelope = "webhooks",
  path = "/webhooks/987654", note = "unknown id" })
endpoint("v1", V1_PREFIXES, { method = "post", doc = "/webhooks", status = 400, envelope = "webhooks",
  body = webhook_body{ subscription_url = "not a url" }, note = "bad subscription_url" })
endpoint("v1", V1_PREFIXES, { method = "post", doc = "/webhooks", status = 400, envelope = "webhooks",
  body = webhook_body{ event_action = "added" }, note = "v1 action in a version 2.0 webhook" })
endpoint("v1", V1_PREFIXES, { method = "post", doc = "/webhooks", status = 422, envelope = "webhooks",
  body = function()
    if not webhooks_full then
      for _ = 1, 40 do make("/v1/webhooks", webhook_body{ user_id = 3 }()) end
      webhooks_full = true
    end
    return webhook_body{ user_id = 3 }()
  end, note = "40 webhooks per user" })
endpoint("v1", V1_PREFIXES, { method = "get", doc = "/webhooks", status = 401, envelope = "webhooks",
  token = "wrong-token", note = "wrong token" })

---------------------------------------------------------------------------

local function title_of(c)
  local t = ("%s %s%s"):format(c.method:upper(), c.prefix, c.doc)
  if c.status >= 400 or c.note then
    t = t .. " (" .. (c.status >= 400 and (c.status .. (c.note and ", " or "")) or "") .. (c.note or "") .. ")"
  end
  local _, _, _, file = schema_for(c)
  return t .. " matches " .. file
end

describe("contract: sandbox responses match Pipedrive's OpenAPI files", function()
  setup(function()
    for _, f in pairs(FILES) do oa.load(f) end -- parse the files once, before the clock matters
    local spawn = require "pipedrive.sandbox.spawn"
    local args = {}
    for a in (os.getenv("CONTRACT_SANDBOX_ARGS") or ""):gmatch("%S+") do args[#args + 1] = a end
    sb = spawn.start{ args = args }
    -- data: persons, organizations, deals linked to both, leads (each in both versions)
    ctx.org_v2 = make("/api/v2/organizations", { name = "Contract Org A", address = { value = "Tallinn" } }).id
    ctx.person_v2 = make("/api/v2/persons", { name = "Contract Person A", org_id = ctx.org_v2 }).id
    ctx.deal_v2 = make("/api/v2/deals", { title = "Contract Deal A", person_id = ctx.person_v2,
      org_id = ctx.org_v2, value = 1000, currency = "EUR" }).id
    ctx.org_v1 = make("/v1/organizations", { name = "Contract Org B" }).id
    ctx.person_v1 = make("/v1/persons", { name = "Contract Person B", org_id = ctx.org_v1 }).id
    ctx.deal_v1 = make("/v1/deals", { title = "Contract Deal B", person_id = ctx.person_v1, org_id = ctx.org_v1,
      value = "2000", currency = "EUR" }).id
    make("/api/v2/organizations", { name = "Contract Org C" })
    make("/api/v2/persons", { name = "Contract Person C", org_id = ctx.org_v1 })
    make("/api/v2/deals", { title = "Contract Deal C", person_id = ctx.person_v1, org_id = ctx.org_v1 })
    ctx.lead_v1 = make("/v1/leads", { title = "Contract Lead A", person_id = ctx.person_v2,
      value = { amount = 500, currency = "EUR" } }).id
    make("/v1/leads", { title = "Contract Lead B", organization_id = ctx.org_v1 })
    make("/v1/leads", { title = "Contract Lead C", person_id = ctx.person_v1, organization_id = ctx.org_v1 })
    ctx.activity_v2 = make("/api/v2/activities", activity_body()).id
    make("/api/v2/activities", activity_body())
    ctx.activity_v1 = make("/v1/activities", activity_body(true)).id
    make("/v1/activities", activity_body(true))
    make("/v1/webhooks", webhook_body()())
  end)

  teardown(function()
    if sb then sb.stop() end
    if #mismatches > 0 then
      io.stderr:write(("\ncontract mismatches (%d endpoints):\n  %s\n"):format(#mismatches,
        table.concat(mismatches, "\n  ")))
    end
    local unused = {}
    for key in pairs(ALLOW) do
      if not allow_used[key] then unused[#unused + 1] = key end
    end
    if #unused > 0 and #mismatches == 0 then
      table.sort(unused)
      io.stderr:write("\ncontract: ALLOW entries no response needed (remove them?):\n  ",
        table.concat(unused, "\n  "), "\n")
    end
    if VERBOSE then
      io.stderr:write(("contract: %d curl calls, %.2f s CPU in this process\n"):format(curl_calls, os.clock() - T0))
    end
  end)

  for _, c in ipairs(CASES) do
    it(title_of(c), function() verify(c, title_of(c)) end)
  end

  -- Keeps "every endpoint" true as the sandbox grows: each path of the three files
  -- is put to the sandbox's router (in this process; nothing is sent), and every
  -- method it routes must have a success check above, under each prefix. Path parameters are
  -- compared without their names: the v1 file's /dealFields/{id} and the v2 file's
  -- /dealFields/{field_code} routed under the other version are one endpoint.
  it("every endpoint the sandbox routes, among the files' paths, has a check here", function()
    local route = require("pipedrive.sandbox").route
    local covered = {}
    for _, c in ipairs(CASES) do
      if c.status < 300 then covered[c.method:upper() .. " " .. c.prefix .. c.doc:gsub("{[^}]+}", "{}")] = true end
    end
    local missing, seen = {}, {}
    for _, f in pairs(FILES) do
      for path in pairs(oa.load(f).paths) do
        local segs, literal = {}, {}
        for s in path:gmatch("[^/]+") do
          segs[#segs + 1] = s:match("^{.+}$") and "1" or s
          literal[s] = not s:match("^{.+}$")
        end
        for _, version in ipairs{ "v1", "v2" } do
          local methods, _, id = route(version, segs)
          -- /deals/archived reaching the /deals/{id} route is the id check's 400, not an endpoint
          if id ~= nil and literal[id] then methods = nil end
          for method in pairs(methods or {}) do
            for _, prefix in ipairs(version == "v2" and { "/api/v2" } or V1_PREFIXES) do
              local key = method .. " " .. prefix .. path:gsub("{[^}]+}", "{}")
              if not covered[key] and not seen[key] then
                seen[key] = true
                missing[#missing + 1] = key
              end
            end
          end
        end
      end
    end
    table.sort(missing)
    assert(#missing == 0, "served by the sandbox but not checked here:\n    " .. table.concat(missing, "\n    "))
  end)
end)
