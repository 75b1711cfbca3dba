-- Every generated operation (lua/pipedrive/operations/ids.lua: both files' operations the
-- generator kept), once, THROUGH THE CLIENT: pd.call(operationId, args) with arguments built
-- from the operation's OpenAPI schema (path ids of records made first, required query
-- parameters, the request body's required fields, a PNG for file parts), on a client of the
-- file's API version (api = "v1" where the function also has a v2 route: the client prefers v2).
-- Checked for each call:
--   the request the client sent, as the sandbox logged it: one request, the operation's method,
--     a path matching its template (with the ids given), query parameters the operation names
--     (values valid for their schema, required ones present), a JSON body valid against the
--     requestBody schema (multipart: every required part present);
--   the answer: the raw body the client received (its `log` hook's response event) valid
--     against the documented response schema, and the `data` the call returned equal to that
--     body's `data` (a download: the bytes themselves).
-- The counts per file are printed at the end. Left out, with the reason: SKIP (and the
-- generator's own list: the OAuth endpoints of the v1 file, see tools/gen_operations.lua).
local compat = require "pipedrive.compat"
local oa = require "support.openapi"
local sandbox = require "support.sandbox"
local core = require "pipedrive.core"
local operations = require "pipedrive.operations"
local ids = require "pipedrive.operations.ids"

local FILES = { { "v2", "openapi-v2.yaml", "/api/v2" }, { "v1", "openapi-v1.yaml", "/api/v1" } }
local METHOD_ORDER = { post = 1, get = 2, put = 3, patch = 3, delete = 5 }

-- operationId -> reason. The OAuth endpoints are not generated (the generator lists them).
local SKIP = {
}

-- Where the file contradicts itself between two operations of one resource (as in
-- spec/every_operation_spec.lua): operationId -> { [JSON path] = reason } (oa.validate's allow).
local PICTURE = "the file's schema nests the picture under a PICTURE_ID map key; its own example (and Pipedrive)"
  .. " answer the picture itself as data"
local ALLOW = {
  addPersonPicture = {},
  deleteAdditionalDiscount = { ["$.data.id"] = "POST /deals/{id}/discounts answers a string (UUID) id; "
    .. "this DELETE's schema says integer" },
}
for _, k in ipairs({ "id", "item_type", "item_id", "active_flag", "add_time", "update_time", "added_by_user_id",
                    "pictures" }) do
  ALLOW.addPersonPicture["$.data." .. k] = PICTURE
end

-- Bodies the schema alone does not make valid (the sandbox checks what Pipedrive checks):
-- operationId -> fields added to the sample body; a function gets the ids made so far.
local BODY = {
  addPerson = { name = "Every Person" },
  addOrganization = { name = "Every Org" },
  addDeal = { title = "Every Deal" },
  addFilter = { type = "deals", name = "Every filter" },
  addLead = function(made) return { title = "Every Lead", organization_id = made.org } end,
  addWebhook = { subscription_url = "http://127.0.0.1:9/every", event_action = "*", event_object = "*" },
}

-- Field definitions: an enum field (options to add, rename and delete), and the option ids a made
-- field answered (extra.options[field code or id]) for the options operations.
local function enum_field()
  return { field_type = "enum", options = { { label = "Every A" }, { label = "Every B" } } }
end
local function options_of(extra, path)
  local code = path and path:match("Fields/([^/]+)/options$")
  return extra.options and extra.options[code] or {}
end
for _, kind in ipairs({ "Deal", "Person", "Organization", "Product" }) do
  BODY["add" .. kind .. "Field"] = enum_field
  BODY["update" .. kind .. "FieldOptions"] = function(extra, path)
    return { { id = options_of(extra, path)[1], label = "Every A renamed" } }
  end
  BODY["delete" .. kind .. "FieldOptions"] = function(extra, path) return { { id = options_of(extra, path)[2] } } end
end

-- Required query parameters the schema's sample does not make valid: operationId -> function
-- (given fresh(collection), the id of a record made for it) returning the parameters.
local QUERY = {}
for _, kind in ipairs({ "Deal", "Person", "Organization", "Product" }) do
  QUERY["delete" .. kind .. "Fields"] = function(fresh)
    return { ids = tostring(fresh("/" .. kind:lower() .. "Fields")) }
  end
end
-- The kinds whose v2 fields the sandbox serves (named by field code; "id" is a field every company has).
local FIELD_KINDS = { deal = true, person = true, organization = true, product = true, activity = true }

local flatten = oa.sample_view

local sample = oa.sample

-- The request body of `op`: its media type and schema (nil when it takes none).
local function body_schema(spec, op)
  local rb = op.requestBody and oa.resolve(spec, op.requestBody)
  local content = rb and rb.content
  if not content then return nil end
  for _, ct in ipairs({ "application/json", "multipart/form-data", "application/x-www-form-urlencoded" }) do
    if content[ct] then return ct, content[ct].schema end
  end
end

local encode_body = oa.encode_sample

local function url_decode(s)
  return (s:gsub("+", " "):gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

-- A query value (text) as the JSON value its schema describes, for the validator.
local function query_value(spec, schema, text)
  local s = flatten(spec, schema)
  if s.type == "integer" or s.type == "number" then return compat.tointeger(tonumber(text)) or tonumber(text) or text end
  if s.type == "boolean" then
    if text == "true" or text == "1" then return true end
    if text == "false" or text == "0" then return false end
    return text
  end
  if s.type == "array" then
    local out = core.array()
    for part in text:gmatch("[^,]+") do out[#out + 1] = query_value(spec, s.items or {}, part) end
    return out
  end
  return text
end

-- Deep equality of the client's data `a` and the logged answer's `b` (null is one value;
-- metatables ignored). The log hook masks the values of secret-looking keys (`code`: a
-- currency's code too) as "***": that matches any string.
local function same(a, b)
  if b == "***" and type(a) == "string" then return true end
  if type(a) ~= "table" or type(b) ~= "table" then return a == b end
  for k, v in pairs(a) do
    if not same(v, b[k]) then return false end
  end
  for k in pairs(b) do
    if a[k] == nil then return false end
  end
  return true
end

describe("every generated operation through the client against the sandbox", function()
  local sb
  local counts = {}
  local answers = {} -- the client's log hook: the last response event
  local clients = {}
  setup(function()
    sb = sandbox.start()
    local function log(ev)
      if ev.type == "response" or ev.type == "error" then answers[#answers + 1] = ev end
    end
    clients.v2 = sb.client{ log = log, retries = false }
    clients.v1 = sb.client{ api = "v1", log = log, retries = false }
  end)
  teardown(function()
    if sb then sb.stop() end
    local lines = {}
    for _, f in ipairs(FILES) do
      local c = counts[f[1]] or { ok = 0, total = 0, skipped = 0 }
      lines[#lines + 1] = ("%s: %d of %d operations called through pd.call, request and answer valid (%d skipped)")
        :format(f[2], c.ok, c.total, c.skipped)
    end
    io.stderr:write("\nevery client operation: " .. table.concat(lines, "; ") .. "\n")
  end)

  local function raw(method, path, body, ct)
    local headers = { ["x-api-token"] = sb.api_token }
    if body then headers["content-type"] = ct end
    local status, _, res = sb.raw(method:upper(), path, headers, body)
    return status, res.body
  end

  for _, f in ipairs(FILES) do
    local version, file, prefix = f[1], f[2], f[3]
    it(file, function()
      local spec = oa.load(file)
      local st, org_text = raw("post", "/api/v2/organizations", core.json_encode({ name = "Every Org" }),
        "application/json")
      assert.equal(200, st, org_text)
      local extra = { org = core.json_decode(org_text).data.id }
      local ops = {}
      for p, item in pairs(spec.paths) do
        for m, op in pairs(item) do
          if METHOD_ORDER[m] and type(op) == "table" and ids[op.operationId] then
            ops[#ops + 1] = { path = p, method = m, op = op, item = item }
          end
        end
      end
      table.sort(ops, function(a, b)
        if a.path ~= b.path then return a.path < b.path end
        return METHOD_ORDER[a.method] < METHOD_ORDER[b.method]
      end)
      local c = { ok = 0, total = #ops, skipped = 0 }
      counts[version] = c
      local made = {}
      local failures = {}

      -- The sample body of an operation (a table of fields, or an array) and its media type.
      local function body_for(op, path)
        local ct, schema = body_schema(spec, op)
        local b = schema and sample(spec, schema, nil, 0)
        if schema and type(b) ~= "table" then b = {} end
        local add = BODY[op.operationId]
        if type(add) == "function" then add = add(extra, path) end
        if add then
          b, ct = b or {}, ct or "application/json"
          for k, v in pairs(add) do b[k] = v end
        end
        return b, ct
      end

      -- An id for the {param} that ends `collection` (as in every_operation_spec: a record
      -- made over raw HTTP through the collection's POST when the file has one, else 1).
      local function id_for(collection, actual, fresh, pschema, pname)
        local key = actual .. " " .. pname
        if made[key] and not fresh then return made[key] end
        local post = spec.paths[collection] and spec.paths[collection].post
        local fallback = 1
        local ps = pschema and flatten(spec, pschema)
        if ps and (ps.format == "uuid" or collection == "/leads") then
          fallback = extra.lead or "00000000-0000-4000-8000-000000000001"
        end
        if FIELD_KINDS[collection:match("^/(%a+)Fields$") or ""] and prefix:find("v2") then fallback = "id" end
        if not post then return fallback end
        local text, ctype
        local b, ct = body_for(post)
        if b then text, ctype = encode_body(b, ct) end
        local status, body = raw("post", prefix .. actual, text, ctype)
        local doc = status < 300 and oa.json_decode(body)
        local data = doc and type(doc.data) == "table" and doc.data or {}
        local id = data[pname]
        if id == nil or oa.is_null(id) then id = data.id end
        if id == nil or oa.is_null(id) then id = data.uuid end
        if (id == nil or oa.is_null(id)) and status < 300 then
          -- no id in the answer: the record is named by an id field of the request (in name
          -- order; for a UUID parameter, a UUID one)
          local names = {}
          for k, v in pairs(b or {}) do
            if k:match("id$") and type(v) == "string" then names[#names + 1] = k end
          end
          table.sort(names)
          for _, k in ipairs(names) do
            local uuid = b[k]:match("^%x+%-%x+%-%x+%-%x+%-%x+$")
            if id == nil and (uuid or not (ps and ps.format == "uuid")) then id = b[k] end
          end
        end
        if id == nil or oa.is_null(id) then id = fallback end
        if status < 300 and type(data.options) == "table" and collection:match("Fields$") then
          extra.options = extra.options or {}
          local option_ids = {}
          for i, o in ipairs(data.options) do option_ids[i] = o.id end
          extra.options[id] = option_ids
        end
        if not fresh then made[key] = id end
        if collection == "/leads" and not extra.lead then extra.lead = id end
        return id
      end

      -- The problems of the logged request `r` for operation `o` called with `path_values`.
      local function check_request(o, params, r, path_values, ct)
        local problems = {}
        if r.method ~= o.method:upper() then problems[#problems + 1] = "method " .. tostring(r.method) end
        local pattern = "^" .. prefix:gsub("%p", "%%%0") .. o.path:gsub("[%-%.]", "%%%0"):gsub("{[^}]+}", "([^/]+)")
          .. "$"
        local got = { r.path:match(pattern) }
        if #got == 0 then
          problems[#problems + 1] = "path " .. tostring(r.path) .. " does not match " .. prefix .. o.path
        else
          for i, v in ipairs(path_values) do
            if url_decode(got[i]) ~= tostring(v) then
              problems[#problems + 1] = ("path parameter %d is %s, expected %s"):format(i, got[i], tostring(v))
            end
          end
        end
        local query_params, seen = {}, {}
        for _, prm in ipairs(params) do if prm["in"] == "query" then query_params[prm.name] = prm end end
        for pair in (r.query_string or ""):gmatch("[^&]+") do
          local k, v = pair:match("^([^=]*)=?(.*)$")
          k, v = url_decode(k), url_decode(v)
          local prm = query_params[k]
          if not prm then
            problems[#problems + 1] = "query parameter '" .. k .. "' is not the operation's"
          else
            seen[k] = true
            local ok, why = oa.validate(prm.schema or {}, query_value(spec, prm.schema or {}, v), spec)
            if not ok then problems[#problems + 1] = "query " .. k .. ": " .. table.concat(why, "; ") end
          end
        end
        for k, prm in pairs(query_params) do
          if prm.required and not seen[k] then problems[#problems + 1] = "required query '" .. k .. "' missing" end
        end
        local rct, schema = body_schema(spec, o.op)
        local sent_ct = r.headers and r.headers["content-type"] or ""
        local body = r.body or ""
        if not schema then
          if body ~= "" and ct == nil then problems[#problems + 1] = "a body where the operation takes none" end
        elseif rct == "application/json" then
          if not sent_ct:find("application/json", 1, true) then
            problems[#problems + 1] = "content-type " .. sent_ct .. ", expected application/json"
          end
          local doc = oa.json_decode(body)
          if doc == nil then
            problems[#problems + 1] = "body is not JSON: " .. body:sub(1, 80)
          else
            local ok, why = oa.validate(schema, doc, spec)
            if not ok then problems[#problems + 1] = "body: " .. table.concat(why, "; ", 1, math.min(#why, 4)) end
          end
        elseif rct == "multipart/form-data" then
          if not sent_ct:find("multipart/form-data", 1, true) then
            problems[#problems + 1] = "content-type " .. sent_ct .. ", expected multipart/form-data"
          end
          local fs = flatten(spec, schema)
          for _, name in ipairs(fs.required or {}) do
            if not body:find('name="' .. name .. '"', 1, true) then
              problems[#problems + 1] = "multipart part '" .. name .. "' missing"
            end
          end
        end
        return problems
      end

      for _, o in ipairs(ops) do
        local opid = o.op.operationId
        local title = ("%s %s%s (%s)"):format(o.method:upper(), prefix, o.path, opid)
        -- The same operationId in both files for two functions: the v1 one is v1_<operationId>.
        local callid = opid
        local rname, fname = ids[opid]:match("^([%w_]+)%.([%w_]+)$")
        local gop = operations[rname][fname]
        if not (gop.operation_id and gop.operation_id[version] == opid) and ids["v1_" .. opid] then
          callid = "v1_" .. opid
          rname, fname = ids[callid]:match("^([%w_]+)%.([%w_]+)$")
          gop = operations[rname][fname]
        end
        if SKIP[opid] then
          c.skipped = c.skipped + 1
        elseif not (gop.operation_id and gop.operation_id[version] == opid) then
          failures[#failures + 1] = ("%s: pd.call reaches %s.%s, which does not serve this operation of %s")
            :format(title, rname, fname, file)
        else
          local params = {}
          for _, prm in ipairs(o.item.parameters or {}) do params[#params + 1] = oa.resolve(spec, prm) end
          for _, prm in ipairs(o.op.parameters or {}) do params[#params + 1] = oa.resolve(spec, prm) end
          local args, path_values = {}, {}
          local segs, path = {}, ""
          for s in o.path:gmatch("[^/]+") do segs[#segs + 1] = s end
          for i, s in ipairs(segs) do
            local pname = s:match("^{(.+)}$")
            if pname then
              local pschema
              for _, prm in ipairs(params) do
                if prm["in"] == "path" and prm.name == pname then pschema = prm.schema end
              end
              local v = id_for("/" .. table.concat(segs, "/", 1, i - 1), path, o.method == "delete" and i == #segs,
                pschema, pname)
              -- a path parameter the file types as a string is given as one (goal ids, field codes)
              if flatten(spec, pschema or {}).type == "string" then v = tostring(v) end
              path = path .. "/" .. tostring(v)
              args[pname] = v
              path_values[#path_values + 1] = v
            else
              path = path .. "/" .. s
            end
          end
          for _, prm in ipairs(params) do
            if prm["in"] == "query" and prm.required then args[prm.name] = sample(spec, prm.schema, prm.name, 0) end
          end
          if QUERY[opid] then
            for k, v in pairs(QUERY[opid](function(coll) return id_for(coll, coll, true, nil, "id") end)) do
              args[k] = v
            end
          end
          local b, ct = body_for(o.op, path)
          if b and o.method ~= "get" then
            local _, schema = body_schema(spec, o.op)
            if schema and flatten(spec, schema).type == "array" then
              args.body = b
            else
              for k, v in pairs(b) do args[k] = v end
            end
          end
          local client = (version == "v1" and gop.v2) and clients.v1 or clients.v2
          sb.clear_requests()
          for i = #answers, 1, -1 do answers[i] = nil end
          local ok, data, info = pcall(client.call, callid, args)
          local log = sb.requests()
          if log == nil then error(title .. ": the request log is unreadable") end
          local problems = {}
          if not ok then
            problems[1] = "pd.call raised: " .. tostring(data)
          elseif data == nil then
            problems[1] = "pd.call failed: " .. tostring(info)
          elseif #log ~= 1 or #answers ~= 1 then
            problems[1] = ("%d requests logged, %d answers seen; expected one"):format(#log, #answers)
          else
            for _, p in ipairs(check_request(o, params, log[1], path_values, ct)) do problems[#problems + 1] = p end
            local status, body = answers[1].status, answers[1].body or ""
            local schema = oa.response_schema(spec, o.path, o.method, status)
            if not schema then
              local documented = o.op.responses and (o.op.responses[status] or o.op.responses[tostring(status)])
              if not documented then problems[#problems + 1] = "status " .. tostring(status) .. " not documented" end
              if type(data) == "string" and data ~= body then problems[#problems + 1] = "data is not the body" end
            else
              local doc = oa.json_decode(body)
              if doc == nil then
                problems[#problems + 1] = "answer is not JSON"
              else
                local vok, why = oa.validate(schema, doc, spec, { real_nulls = true, allow = ALLOW[opid] })
                if not vok then
                  problems[#problems + 1] = "answer: " .. table.concat(why, "; ", 1, math.min(#why, 4))
                end
                -- what the client returns of the envelope: a search's items, [] for a list's null
                local want = doc.data
                if gop.kind == "search" and oa.kind(want) == "object" then want = want.items end
                if (want == nil or oa.is_null(want)) and (gop.kind == "search" or gop[version].paging ~= "none")
                then
                  want = core.array()
                end
                if type(doc) == "table" and want ~= nil and not same(data, want) then
                  problems[#problems + 1] = "returned data differs from the answer's data"
                end
              end
            end
          end
          if #problems == 0 then
            c.ok = c.ok + 1
          else
            failures[#failures + 1] = title .. ":\n      " .. table.concat(problems, "\n      ", 1,
              math.min(#problems, 5))
          end
        end
      end
      assert(#failures == 0, ("%d of %d operations failed:\n  %s"):format(#failures, #ops,
        table.concat(failures, "\n  ")))
    end)
  end
end)
