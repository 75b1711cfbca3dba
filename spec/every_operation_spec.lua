-- Every operation of openapi-v2.yaml and openapi-v1.yaml, once, against a sandbox over HTTP:
-- a request built from the operation's schema (path ids of records made first through the
-- collection's POST, required query parameters and required body fields from the file's
-- examples, enums and formats), and the answer's status (a documented 2xx) and body
-- (validated with spec/support/openapi.lua, real nulls accepted) checked. The counts per
-- file are printed at the end. Left out, with the reason: SKIP.
local oa = require "support.openapi"
local sandbox = require "support.sandbox"
local core = require "pipedrive.core"

local FILES = { { "v2", "openapi-v2.yaml", "/api/v2" }, { "v1", "openapi-v1.yaml", "/v1" } }
local METHOD_ORDER = { post = 1, get = 2, put = 3, patch = 3, delete = 5 }

-- operationId -> reason. Empty: the OAuth endpoints (oauth.pipedrive.com) are not in these two
-- files (spec/sandbox_oauth_spec.lua covers them), and every operation of both files answers.
local SKIP = {
}

-- Where the file contradicts itself between two operations of one resource:
-- operationId -> { [JSON path] = reason } (oa.validate's allow)
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
  updateFilter = { type = "deals" },
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

local function body_of(spec, op)
  local rb = op.requestBody and oa.resolve(spec, op.requestBody)
  local content = rb and rb.content
  if not content then return nil end
  local ct = content["application/json"] and "application/json"
    or content["multipart/form-data"] and "multipart/form-data"
    or content["application/x-www-form-urlencoded"] and "application/x-www-form-urlencoded"
  if not ct then return nil end
  local b = sample(spec, content[ct].schema, nil, 0)
  if type(b) ~= "table" then b = {} end
  return b, ct
end

local encode_body = oa.encode_sample

describe("every operation of the OpenAPI files against the sandbox", function()
  local sb
  local counts = {}
  setup(function() sb = sandbox.start() end)
  teardown(function()
    if sb then sb.stop() end
    local lines = {}
    for _, f in ipairs(FILES) do
      local c = counts[f[1]] or { ok = 0, total = 0, skipped = 0 }
      lines[#lines + 1] = ("%s: %d of %d operations answered a documented 2xx that validates (%d skipped)")
        :format(f[2], c.ok, c.total, c.skipped)
    end
    io.stderr:write("\nevery operation: " .. table.concat(lines, "; ") .. "\n")
  end)

  local function raw(method, path, query, body, ct)
    local qs = {}
    for k, v in pairs(query or {}) do qs[#qs + 1] = core.url_encode(k) .. "=" .. core.url_encode(tostring(v)) end
    table.sort(qs)
    local url = path .. (#qs > 0 and ("?" .. table.concat(qs, "&")) or "")
    local headers = { ["x-api-token"] = sb.api_token }
    if body then headers["content-type"] = ct end
    local status, _, res = sb.raw(method:upper(), url, headers, body)
    return status, res.body
  end

  for _, f in ipairs(FILES) do
    local version, file, prefix = f[1], f[2], f[3]
    it(file, function()
      local spec = oa.load(file)
      -- an organization for the leads to link to (v1 leads need one; organizations are v2)
      local st, org_text = raw("post", "/api/v2/organizations", nil, core.json_encode({ name = "Every Org" }),
        "application/json")
      assert.equal(200, st, org_text)
      local org = core.json_decode(org_text).data.id
      local ops = {}
      for p, item in pairs(spec.paths) do
        for m, op in pairs(item) do
          if METHOD_ORDER[m] then ops[#ops + 1] = { path = p, method = m, op = op, item = item } end
        end
      end
      table.sort(ops, function(a, b)
        if a.path ~= b.path then return a.path < b.path end
        return METHOD_ORDER[a.method] < METHOD_ORDER[b.method]
      end)
      local c = { ok = 0, total = #ops, skipped = 0 }
      counts[version] = c
      local made = {} -- collection path -> id of a record made there
      local failures = {}

      -- An id for the {param} that ends `collection`: a record made through its POST when
      -- the file has one (remembered), else 1.
      local extra = { org = org }
      -- The body of an operation: the schema's sample and BODY's fields.
      local function body_for(op, path)
        local b, ct = body_of(spec, op)
        local add = BODY[op.operationId]
        if type(add) == "function" then add = add(extra, path) end
        if add then
          b = b or {}
          ct = ct or "application/json"
          for k, v in pairs(add) do b[k] = v end
        end
        return b, ct
      end

      -- An id for the {param} that ends `collection` (a template; `actual` with the parents'
      -- ids): a record made through its POST when the file has one (remembered), else 1.
      local function id_for(collection, actual, fresh, pschema)
        if made[actual] and not fresh then return made[actual] end
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
        local status, body = raw("post", prefix .. actual, nil, text, ctype)
        local doc = status < 300 and oa.json_decode(body)
        local data = doc and type(doc.data) == "table" and doc.data or {}
        local id = data.id
        if id == nil or oa.is_null(id) then id = data.uuid end
        if id == nil or oa.is_null(id) then id = data.field_code end -- v2 fields are named by their code
        if status < 300 and type(data.options) == "table" and collection:match("Fields$") then
          extra.options = extra.options or {}
          local option_ids = {}
          for i, o in ipairs(data.options) do option_ids[i] = o.id end
          extra.options[id] = option_ids
        end
        if (id == nil or oa.is_null(id)) and status < 300 then
          -- no id in the answer: the record is named by the id field the request gave
          for k, v in pairs(b or {}) do
            if k:match("id$") and type(v) == "string" then id = v end
          end
        end
        if id == nil or oa.is_null(id) then id = fallback end
        if not fresh then made[actual] = id end
        if collection == "/leads" and not extra.lead then extra.lead = id end
        return id
      end

      for _, o in ipairs(ops) do
        local id = o.op.operationId
        if SKIP[id] then
          c.skipped = c.skipped + 1
        else
          local params = {}
          for _, prm in ipairs(o.item.parameters or {}) do params[#params + 1] = oa.resolve(spec, prm) end
          for _, prm in ipairs(o.op.parameters or {}) do params[#params + 1] = oa.resolve(spec, prm) end
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
                pschema)
              path = path .. "/" .. tostring(v)
            else
              path = path .. "/" .. s
            end
          end
          local query = {}
          for _, prm in ipairs(params) do
            if prm["in"] == "query" and prm.required then query[prm.name] = sample(spec, prm.schema, prm.name, 0) end
          end
          if QUERY[id] then
            for k, v in pairs(QUERY[id](function(coll) return id_for(coll, coll, true) end)) do query[k] = v end
          end
          local b, ct = body_for(o.op, path)
          local text, ctype
          if b and o.method ~= "get" and (o.method ~= "delete" or o.op.requestBody) then text, ctype = encode_body(b, ct) end
          local status, body = raw(o.method, prefix .. path, query, text, ctype)
          local title = ("%s %s%s (%s)"):format(o.method:upper(), prefix, o.path, id)
          local schema = status < 300 and oa.response_schema(spec, o.path, o.method, status)
          if status >= 300 then
            failures[#failures + 1] = ("%s: status %d: %s"):format(title, status, body:sub(1, 160))
          elseif not schema then
            -- a documented success without a JSON body (a download): the status is what counts
            local documented = o.op.responses and (o.op.responses[status] or o.op.responses[tostring(status)])
            if documented then c.ok = c.ok + 1 else failures[#failures + 1] = title .. ": status " .. status end
          else
            local doc = oa.json_decode(body)
            local ok, problems = false, { "not JSON" }
            if doc ~= nil then
              ok, problems = oa.validate(schema, doc, spec, { real_nulls = true, allow = ALLOW[id] })
            end
            if ok then
              c.ok = c.ok + 1
            else
              failures[#failures + 1] = title .. ":\n      " .. table.concat(problems, "\n      ", 1,
                math.min(#problems, 5))
            end
          end
        end
      end
      assert(#failures == 0, ("%d of %d operations failed:\n  %s"):format(#failures, #ops,
        table.concat(failures, "\n  ")))
    end)
  end
end)
