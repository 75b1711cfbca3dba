--- The hand-written overlay of the operations table.
--
-- Every operation is generated from Pipedrive's OpenAPI files
-- (tools/gen_operations.lua -> operations/gen/); pipedrive.operations applies
-- this overlay on top. It holds what the files cannot say: the original
-- component's operations with their parameter names and v1/v2 translations,
-- leads' archived routing, the retired v1 routes that `api = "v1"` uses, and
-- their costs. A function defined here replaces the generated one of the same
-- name (keeping its operationId); every other function stays generated.
--
-- Operation fields:
--   v1, v2      = { method, path, paging = "offset"|"cursor"|"none", cost = n }
--                 (an operation without v2 is served by v1 in every mode; one
--                 without v1 by v2 in every mode)
--   kind        = "list" | "search" | "get" | "add" | "update" | "delete" | "call"
--   params      = name -> spec (query parameters; for "add", body fields)
--   operation_id = { v1 = ..., v2 = ... } (generated)
--   positional  = the path parameter taken as first argument when it is not `id`
--   multipart   = true: the body is multipart/form-data (parameters of type "file")
--   require_one = { {names...}, message }: at least one of the names must be given
--
-- Parameter spec fields:
--   type     = "id" | "uuid" | "integer" | "number" | "boolean" | "string" | "date"
--            | "list" (string or array of strings or integers, sent comma-joined) | "ids" | "uuids"
--            | "object" | "contacts" (a string or an array of {value, primary, label})
--   enum     = allowed values (for "list", each element)
--   required = true
--   required_in = "v1" | "v2": required in that version only (generated, where the
--              two routes of one function differ)
--   min_len  = minimum string length (search terms)
--   v1, v2   = nil: same name in that version; "name": renamed; false: the version
--              cannot express it (the error quotes `hint`); a function
--              fn(value, out, args, route) -> nil | errmsg that writes its translation into
--              `out` (and may change route.path / route.cost)
--   hint     = what to do instead when a version cannot express the parameter
--   in       = "path" | "query" | "body" (generated; otherwise path params have
--              path = true, and the method decides between query and body)
--   schema   = compact JSON schema of an "array" or "object" body field
--              ({ type, enum, items, properties, required }), checked recursively
--   whole    = true: the value is the whole request body (an array body)
local compat = require "pipedrive.compat"
local M = {}

local function merge(...)
  local r = {}
  for _, t in ipairs({ ... }) do
    for k, v in pairs(t) do r[k] = v end
  end
  return r
end

local V2_ONLY = "only Pipedrive's API v2 has it; drop api = 'v1' from pipedrive.new"

-- v1 `sort` ("add_time DESC") <-> v2 `sort_by` + `sort_direction`.
local function sort_to_v2(fields)
  return function(value, out)
    local parts = {}
    for part in value:gmatch("[^,]+") do parts[#parts + 1] = part end
    local field, dir = (parts[1] or ""):match("^%s*([%w_]+)%s*(%a*)%s*$")
    dir = dir and dir:lower() or ""
    if #parts ~= 1 or not field or not fields[field] or (dir ~= "" and dir ~= "asc" and dir ~= "desc") then
      local names = {}
      for k in pairs(fields) do names[#names + 1] = k end
      table.sort(names)
      return ("sort '%s' cannot be expressed in API v2, which sorts by one of %s (sort_by, sort_direction);"
        .. " sort the results in Lua or use pipedrive.new{ api = 'v1' }"):format(value, table.concat(names, ", "))
    end
    out.sort_by = field
    if dir ~= "" then out.sort_direction = dir end
  end
end

-- v2 `sort_by` / `sort_direction` -> v1 `sort`.
local function sort_by_to_v1(value, out, args)
  local dir = (args.sort_direction or "asc"):upper()
  out.sort = value .. " " .. dir
end

local function sort_direction_to_v1(_, _, args)
  if not args.sort_by then return "sort_direction needs sort_by" end
end

local SORT_V2_FIELDS = { id = true, update_time = true, add_time = true }
local SORT_DIRECTIONS = { "asc", "desc" }

-- Paging parameters of every list and search.
local OFFSET_PAGING = {
  start = { type = "integer", min = 0, v2 = false,
            hint = "API v2 pages with a cursor: pass info.next_cursor as cursor" },
  cursor = { type = "string", v1 = false,
             hint = "API v1 pages with an offset: pass info.next_start as start" },
  limit = { type = "integer", min = 1, max = 500 },
}

-- v2-only list filters shared by deals, persons and organizations.
local V2_LIST = {
  ids = { type = "ids", v1 = false, hint = V2_ONLY },
  updated_since = { type = "string", v1 = false, hint = V2_ONLY },
  updated_until = { type = "string", v1 = false, hint = V2_ONLY },
  custom_fields = { type = "list", v1 = false, hint = V2_ONLY },
  include_option_labels = { type = "boolean", v1 = false, hint = V2_ONLY },
  include_labels = { type = "boolean", v1 = false, hint = V2_ONLY },
  sort_by = { type = "string", enum = { "id", "update_time", "add_time" }, v1 = sort_by_to_v1 },
  sort_direction = { type = "string", enum = SORT_DIRECTIONS, v1 = sort_direction_to_v1 },
}

-- Owner: the seed calls it user_id (v1 lists), Pipedrive v2 owner_id.
local OWNER_AS_USER = {
  user_id = { type = "id", v2 = "owner_id" },
  owner_id = { type = "id", v1 = "user_id" },
}

local FIRST_CHAR = {
  first_char = { type = "string", min_len = 1, max_len = 1, v2 = false,
                 hint = "API v2 cannot filter by first letter; use search{ term = ... }"
                   .. " or pipedrive.new{ api = 'v1' }" },
}

local function visible_to_v1(value, out) out.visible_to = tostring(value) end
local function visible_to_v2(value, out)
  local n = compat.tointeger(tonumber(value))
  if not n then return "visible_to must be 1, 3, 5 or 7" end
  out.visible_to = n
end
local VISIBLE_TO = { type = "scalar", enum = { "1", "3", "5", "7" },
                     v1 = visible_to_v1, v2 = visible_to_v2 }

local function search_params(fields, extra)
  return merge({
    term = { type = "string", required = true, min_len = 1 },
    fields = { type = "list", enum = fields },
    exact_match = { type = "boolean" },
  }, OFFSET_PAGING, extra or {})
end

local function by_id(kind, id_type, v1path, v2path, v1cost, v2cost, extra)
  return {
    kind = kind,
    v1 = { method = kind == "delete" and "DELETE" or "GET", path = v1path, paging = "none", cost = v1cost },
    v2 = v2path and { method = kind == "delete" and "DELETE" or "GET", path = v2path, paging = "none", cost = v2cost },
    params = merge({ id = { type = id_type, required = true, path = true } }, extra or {}),
  }
end

-- An update takes the add fields, none of them required, plus the id in the path.
local function update_of(add, id_type, v1, v2)
  local p = {}
  for k, spec in pairs(add.params) do
    local c = {}
    for kk, vv in pairs(spec) do c[kk] = vv end
    c.required = nil
    p[k] = c
  end
  p.id = { type = id_type, required = true, path = true }
  return { kind = "update", v1 = v1, v2 = v2, params = p, custom_fields = add.custom_fields }
end

local function include_fields(list)
  return { include_fields = { type = "list", enum = list } }
end

------------------------------------------------------------------------------
-- Deals
------------------------------------------------------------------------------
M.deals = {
  object = "deal",
  id_type = "id",
  list = {
    kind = "list",
    v1 = { method = "GET", path = "/api/v1/deals", paging = "offset", cost = 20 },
    v2 = { method = "GET", path = "/api/v2/deals", paging = "cursor", cost = 10 },
    params = merge(OFFSET_PAGING, OWNER_AS_USER, V2_LIST, {
      filter_id = { type = "id" },
      stage_id = { type = "id" },
      status = { type = "list", enum = { "open", "won", "lost", "deleted", "all_not_deleted" },
                 v1 = function(value, out)
                   if value:find(",", 1, true) then return "API v1 filters by one status at a time" end
                   out.status = value
                 end,
                 v2 = function(value, out)
                   if value ~= "all_not_deleted" then out.status = value end
                 end },
      sort = { type = "string", v2 = sort_to_v2(SORT_V2_FIELDS) },
      owned_by_you = { type = "boolean", v1 = function(value, out) out.owned_by_you = value and 1 or 0 end,
                       v2 = false, hint = "pass owner_id = your user id (pd.users.list: is_you)" },
      person_id = { type = "id", v1 = false, hint = V2_ONLY },
      org_id = { type = "id", v1 = false, hint = V2_ONLY },
      pipeline_id = { type = "id", v1 = false, hint = "filter by stage_id, or use API v2" },
      include_fields = { type = "list", v1 = false, hint = V2_ONLY },
    }),
  },
  search = {
    kind = "search",
    v1 = { method = "GET", path = "/api/v1/deals/search", paging = "offset", cost = 40 },
    v2 = { method = "GET", path = "/api/v2/deals/search", paging = "cursor", cost = 20 },
    params = search_params({ "custom_fields", "notes", "title" }, merge({
      person_id = { type = "id" },
      organization_id = { type = "id" },
      status = { type = "string", enum = { "open", "won", "lost" } },
    }, include_fields({ "deal.cc_email" }))),
  },
  get = by_id("get", "id", "/api/v1/deals/{id}", "/api/v2/deals/{id}", 2, 1, {
    include_fields = { type = "list", v1 = false, hint = V2_ONLY },
    custom_fields = { type = "list", v1 = false, hint = V2_ONLY },
  }),
  delete = by_id("delete", "id", "/api/v1/deals/{id}", "/api/v2/deals/{id}", 6, 3),
  add = {
    kind = "add",
    v1 = { method = "POST", path = "/api/v1/deals", paging = "none", cost = 10 },
    v2 = { method = "POST", path = "/api/v2/deals", paging = "none", cost = 5 },
    custom_fields = true,
    params = merge(OWNER_AS_USER, {
      title = { type = "string", required = true, min_len = 1 },
      value = { type = "number", v1 = function(value, out) out.value = tostring(value) end },
      currency = { type = "string", min_len = 3, max_len = 3 },
      person_id = { type = "id" },
      org_id = { type = "id" },
      pipeline_id = { type = "id" },
      stage_id = { type = "id" },
      status = { type = "string", enum = { "open", "won", "lost", "deleted" } },
      expected_close_date = { type = "date" },
      probability = { type = "number" },
      lost_reason = { type = "string" },
      visible_to = VISIBLE_TO,
      label = { type = "ids", v2 = "label_ids" },
      label_ids = { type = "ids", v1 = "label" },
      add_time = { type = "string" },
      won_time = { type = "string" },
      lost_time = { type = "string" },
      close_time = { type = "string" },
      archive_time = { type = "string" },
      is_archived = { type = "boolean" },
      is_deleted = { type = "boolean", v1 = false, hint = "use status = 'deleted' in API v1" },
      origin_id = { type = "string", v2 = false, hint = "API v2 does not take origin_id" },
      channel = { type = "integer", v2 = false, hint = "API v2 does not take channel" },
      channel_id = { type = "string", v2 = false, hint = "API v2 does not take channel_id" },
    }),
  },
}

------------------------------------------------------------------------------
-- Leads: CRUD and list exist only in v1; search exists in both.
------------------------------------------------------------------------------
local LEAD_SORT = { "id", "title", "owner_id", "creator_id", "was_seen", "expected_close_date",
                    "next_activity_id", "add_time", "update_time" }

M.leads = {
  object = "lead",
  id_type = "uuid",
  list = {
    kind = "list",
    v1 = { method = "GET", path = "/api/v1/leads", paging = "offset", cost = 20 },
    params = merge(OFFSET_PAGING, {
      owner_id = { type = "id" },
      user_id = { type = "id", v1 = "owner_id" },
      person_id = { type = "id" },
      organization_id = { type = "id" },
      filter_id = { type = "id" },
      updated_since = { type = "string" },
      sort = { type = "string", v1 = function(value, out)
        for part in value:gmatch("[^,]+") do
          local field, dir = part:match("^%s*([%w_]+)%s*(%a*)%s*$")
          local ok = false
          for _, f in ipairs(LEAD_SORT) do ok = ok or f == field end
          dir = (dir or ""):upper()
          if not ok or (dir ~= "" and dir ~= "ASC" and dir ~= "DESC") then
            return ("sort '%s': leads sort by %s, each optionally ASC or DESC")
              :format(value, table.concat(LEAD_SORT, ", "))
          end
        end
        out.sort = value
      end },
      -- Pipedrive removed this parameter (2025) and serves archived leads from their
      -- own endpoint; the seed still sends it, so it selects the endpoint here.
      archived_status = { type = "string", enum = { "not_archived", "archived", "all" },
        v1 = function(value, _, _, route)
          if value == "archived" then
            route.path = "/api/v1/leads/archived"
            route.cost = 40
          elseif value == "all" then
            return "Pipedrive no longer lists archived and active leads together: call list (or each)"
              .. " twice, with archived_status = 'not_archived' and 'archived'"
          end
        end },
    }),
  },
  search = {
    kind = "search",
    v1 = { method = "GET", path = "/api/v1/leads/search", paging = "offset", cost = 40 },
    v2 = { method = "GET", path = "/api/v2/leads/search", paging = "cursor", cost = 20 },
    params = search_params({ "custom_fields", "notes", "title" }, merge({
      person_id = { type = "id" },
      organization_id = { type = "id" },
    }, include_fields({ "lead.was_seen" }))),
  },
  get = by_id("get", "uuid", "/api/v1/leads/{id}", nil, 2),
  delete = by_id("delete", "uuid", "/api/v1/leads/{id}", nil, 6),
  add = {
    kind = "add",
    v1 = { method = "POST", path = "/api/v1/leads", paging = "none", cost = 10 },
    require_one = { { "person_id", "organization_id" },
                    "a lead must be linked to a person_id or an organization_id (or both)" },
    params = {
      title = { type = "string", required = true, min_len = 1 },
      owner_id = { type = "id" },
      label_ids = { type = "uuids" },
      person_id = { type = "id" },
      organization_id = { type = "id" },
      org_id = { type = "id", v1 = "organization_id" },
      value = { type = "money" },
      expected_close_date = { type = "date" },
      visible_to = VISIBLE_TO,
      was_seen = { type = "boolean" },
      origin_id = { type = "string" },
      channel = { type = "integer" },
      channel_id = { type = "string" },
    },
  },
}
-- `org_id` is an alias: the check for one of person/organization must see it.
M.leads.add.require_one[1][3] = "org_id"

------------------------------------------------------------------------------
-- Organizations
------------------------------------------------------------------------------
local function address_v2(value, out)
  out.address = type(value) == "table" and value or { value = value }
end
local function address_v1(value, out)
  if type(value) == "table" then
    if type(value.value) ~= "string" then return "address must be a string or { value = string }" end
    out.address = value.value
  else
    out.address = value
  end
end

M.organizations = {
  object = "organization",
  id_type = "id",
  list = {
    kind = "list",
    v1 = { method = "GET", path = "/api/v1/organizations", paging = "offset", cost = 20 },
    v2 = { method = "GET", path = "/api/v2/organizations", paging = "cursor", cost = 10 },
    params = merge(OFFSET_PAGING, OWNER_AS_USER, V2_LIST, FIRST_CHAR, {
      filter_id = { type = "id" },
      sort = { type = "string", v2 = sort_to_v2(SORT_V2_FIELDS) },
      include_fields = { type = "list", v1 = false, hint = V2_ONLY },
    }),
  },
  search = {
    kind = "search",
    v1 = { method = "GET", path = "/api/v1/organizations/search", paging = "offset", cost = 40 },
    v2 = { method = "GET", path = "/api/v2/organizations/search", paging = "cursor", cost = 20 },
    params = search_params({ "address", "custom_fields", "notes", "name" }),
  },
  get = by_id("get", "id", "/api/v1/organizations/{id}", "/api/v2/organizations/{id}", 2, 1, {
    include_fields = { type = "list", v1 = false, hint = V2_ONLY },
    custom_fields = { type = "list", v1 = false, hint = V2_ONLY },
  }),
  delete = by_id("delete", "id", "/api/v1/organizations/{id}", "/api/v2/organizations/{id}", 6, 3),
  add = {
    kind = "add",
    v1 = { method = "POST", path = "/api/v1/organizations", paging = "none", cost = 10 },
    v2 = { method = "POST", path = "/api/v2/organizations", paging = "none", cost = 5 },
    custom_fields = true,
    params = {
      name = { type = "string", required = true, min_len = 1 },
      owner_id = { type = "id" },
      user_id = { type = "id", v1 = "owner_id", v2 = "owner_id" },
      add_time = { type = "string" },
      visible_to = VISIBLE_TO,
      label = { type = "id", v2 = function(value, out) out.label_ids = { value } end },
      label_ids = { type = "ids" },
      address = { type = "string_or_object", v1 = address_v1, v2 = address_v2 },
      website = { type = "string", v1 = false, hint = V2_ONLY },
      linkedin = { type = "string", v1 = false, hint = V2_ONLY },
      industry = { type = "integer", v1 = false, hint = V2_ONLY },
      annual_revenue = { type = "integer", v1 = false, hint = V2_ONLY },
      employee_count = { type = "integer", v1 = false, hint = V2_ONLY },
    },
  },
}

------------------------------------------------------------------------------
-- Persons
------------------------------------------------------------------------------
M.persons = {
  object = "person",
  id_type = "id",
  list = {
    kind = "list",
    v1 = { method = "GET", path = "/api/v1/persons", paging = "offset", cost = 20 },
    v2 = { method = "GET", path = "/api/v2/persons", paging = "cursor", cost = 10 },
    params = merge(OFFSET_PAGING, OWNER_AS_USER, V2_LIST, FIRST_CHAR, {
      filter_id = { type = "id" },
      sort = { type = "string", v2 = sort_to_v2(SORT_V2_FIELDS) },
      org_id = { type = "id", v1 = false, hint = V2_ONLY },
      deal_id = { type = "id", v1 = false, hint = V2_ONLY },
      include_fields = { type = "list", v1 = false, hint = V2_ONLY },
    }),
  },
  search = {
    kind = "search",
    v1 = { method = "GET", path = "/api/v1/persons/search", paging = "offset", cost = 40 },
    v2 = { method = "GET", path = "/api/v2/persons/search", paging = "cursor", cost = 20 },
    params = search_params({ "custom_fields", "email", "notes", "phone", "name" }, merge({
      organization_id = { type = "id" },
    }, include_fields({ "person.picture" }))),
  },
  get = by_id("get", "id", "/api/v1/persons/{id}", "/api/v2/persons/{id}", 2, 1, {
    include_fields = { type = "list", v1 = false, hint = V2_ONLY },
    custom_fields = { type = "list", v1 = false, hint = V2_ONLY },
  }),
  delete = by_id("delete", "id", "/api/v1/persons/{id}", "/api/v2/persons/{id}", 6, 3),
  add = {
    kind = "add",
    v1 = { method = "POST", path = "/api/v1/persons", paging = "none", cost = 10 },
    v2 = { method = "POST", path = "/api/v2/persons", paging = "none", cost = 5 },
    custom_fields = true,
    params = {
      name = { type = "string", required = true, min_len = 1 },
      owner_id = { type = "id" },
      user_id = { type = "id", v1 = "owner_id", v2 = "owner_id" },
      org_id = { type = "id" },
      email = { type = "contacts", v2 = "emails" },
      emails = { type = "contacts", v1 = "email" },
      phone = { type = "contacts", v2 = "phones" },
      phones = { type = "contacts", v1 = "phone" },
      label = { type = "id", v2 = function(value, out) out.label_ids = { value } end },
      label_ids = { type = "ids" },
      visible_to = VISIBLE_TO,
      marketing_status = { type = "string", enum = { "no_consent", "unsubscribed", "subscribed", "archived" } },
      add_time = { type = "string" },
      birthday = { type = "date", v1 = false, hint = V2_ONLY },
      job_title = { type = "string", v1 = false, hint = V2_ONLY },
      notes = { type = "string", v1 = false, hint = V2_ONLY },
      postal_address = { type = "object", v1 = false, hint = V2_ONLY },
    },
  },
}

------------------------------------------------------------------------------
-- Option lists behind the seed's SELECT properties.
------------------------------------------------------------------------------
M.users = {
  object = "user",
  list = {
    kind = "list",
    v1 = { method = "GET", path = "/api/v1/users", paging = "none", cost = 20 },
    params = {},
  },
}

M.filters = {
  object = "filter",
  list = {
    kind = "list",
    v1 = { method = "GET", path = "/api/v1/filters", paging = "none", cost = 20 },
    params = {
      type = { type = "string", enum = { "deals", "leads", "org", "people", "products", "activity", "projects" } },
    },
  },
}

M.stages = {
  object = "stage",
  list = {
    kind = "list",
    v1 = { method = "GET", path = "/api/v1/stages", paging = "offset", cost = 10 },
    v2 = { method = "GET", path = "/api/v2/stages", paging = "cursor", cost = 5 },
    params = merge(OFFSET_PAGING, {
      pipeline_id = { type = "id" },
      sort_by = { type = "string", enum = { "id", "update_time", "add_time", "order_nr" }, v1 = false,
                  hint = V2_ONLY },
      sort_direction = { type = "string", enum = SORT_DIRECTIONS, v1 = false, hint = V2_ONLY },
    }),
  },
}

M.pipelines = {
  object = "pipeline",
  list = {
    kind = "list",
    v1 = { method = "GET", path = "/api/v1/pipelines", paging = "none", cost = 10 },
    v2 = { method = "GET", path = "/api/v2/pipelines", paging = "cursor", cost = 5 },
    params = {
      sort_by = { type = "string", enum = { "id", "update_time", "add_time" }, v1 = false, hint = V2_ONLY },
      sort_direction = { type = "string", enum = SORT_DIRECTIONS, v1 = false, hint = V2_ONLY },
      limit = { type = "integer", min = 1, max = 500, v1 = false,
                hint = "API v1 returns every pipeline in one answer" },
      cursor = { type = "string", v1 = false, hint = "API v1 returns every pipeline in one answer" },
    },
  },
}

------------------------------------------------------------------------------
-- Updates (the triggers' "updated" events need them): v2 PATCH, v1 PUT.
------------------------------------------------------------------------------
for _, r in ipairs({ "deals", "organizations", "persons" }) do
  local res = M[r]
  res.update = update_of(res.add, "id",
    { method = "PUT", path = "/api/v1/" .. r .. "/{id}", paging = "none", cost = 10 },
    { method = "PATCH", path = "/api/v2/" .. r .. "/{id}", paging = "none", cost = 5 })
end
M.leads.update = update_of(M.leads.add, "uuid",
  { method = "PATCH", path = "/api/v1/leads/{id}", paging = "none", cost = 10 })
M.leads.update.params.is_archived = { type = "boolean" }
M.leads.update.params.value = { type = "money" } -- pipedrive.null clears it

------------------------------------------------------------------------------
-- Activities (the New Activity trigger)
------------------------------------------------------------------------------
local ACTIVITY_FIELDS = {
  subject = { type = "string" },
  type = { type = "string" },
  due_date = { type = "date" },
  due_time = { type = "string" },
  duration = { type = "string" },
  deal_id = { type = "id" },
  lead_id = { type = "uuid" },
  person_id = { type = "id" },
  org_id = { type = "id" },
  owner_id = { type = "id", v1 = "user_id" },
  user_id = { type = "id", v2 = "owner_id" },
  note = { type = "string" },
  public_description = { type = "string" },
  done = { type = "boolean", v1 = function(value, out) out.done = value and 1 or 0 end },
  busy = { type = "boolean", v1 = "busy_flag" },
  priority = { type = "integer", v1 = false, hint = V2_ONLY },
}

M.activities = {
  object = "activity",
  id_type = "id",
  list = {
    kind = "list",
    v1 = { method = "GET", path = "/api/v1/activities", paging = "offset", cost = 20 },
    v2 = { method = "GET", path = "/api/v2/activities", paging = "cursor", cost = 10 },
    params = merge(OFFSET_PAGING, OWNER_AS_USER, {
      filter_id = { type = "id" },
      done = { type = "boolean", v1 = function(value, out) out.done = value and 1 or 0 end },
      deal_id = { type = "id", v1 = false, hint = V2_ONLY },
      person_id = { type = "id", v1 = false, hint = V2_ONLY },
      org_id = { type = "id", v1 = false, hint = V2_ONLY },
      updated_since = { type = "string", v1 = false, hint = V2_ONLY },
      sort_by = { type = "string", enum = { "id", "update_time", "add_time", "due_date" }, v1 = false, hint = V2_ONLY },
      sort_direction = { type = "string", enum = SORT_DIRECTIONS, v1 = false, hint = V2_ONLY },
    }),
  },
  get = by_id("get", "id", "/api/v1/activities/{id}", "/api/v2/activities/{id}", 2, 1),
  delete = by_id("delete", "id", "/api/v1/activities/{id}", "/api/v2/activities/{id}", 6, 3),
  add = {
    kind = "add",
    v1 = { method = "POST", path = "/api/v1/activities", paging = "none", cost = 10 },
    v2 = { method = "POST", path = "/api/v2/activities", paging = "none", cost = 5 },
    params = ACTIVITY_FIELDS,
  },
}
M.activities.update = update_of(M.activities.add, "id",
  { method = "PUT", path = "/api/v1/activities/{id}", paging = "none", cost = 10 },
  { method = "PATCH", path = "/api/v2/activities/{id}", paging = "none", cost = 5 })

------------------------------------------------------------------------------
-- Webhooks (v1 only; the triggers manage them)
------------------------------------------------------------------------------
M.webhooks = {
  object = "webhook",
  id_type = "id",
  list = {
    kind = "list",
    v1 = { method = "GET", path = "/api/v1/webhooks", paging = "none", cost = 10 },
    params = {},
  },
  add = {
    kind = "add",
    v1 = { method = "POST", path = "/api/v1/webhooks", paging = "none", cost = 10 },
    params = {
      subscription_url = { type = "string", required = true, min_len = 1 },
      event_action = { type = "string", required = true,
                       enum = { "create", "change", "delete", "added", "updated", "deleted", "merged", "*" } },
      event_object = { type = "string", required = true,
                       enum = { "activity", "activityType", "deal", "lead", "note", "organization", "person",
                                "pipeline", "product", "stage", "user", "*" } },
      name = { type = "string", required = true, min_len = 1, max_len = 255 },
      user_id = { type = "id" },
      http_auth_user = { type = "string" },
      http_auth_password = { type = "string" },
      version = { type = "string", enum = { "1.0", "2.0" } },
    },
  },
  delete = by_id("delete", "id", "/api/v1/webhooks/{id}", nil, 6),
}

-- The resources in a stable order (for docs, the CLI and tests).
M.RESOURCES = { "deals", "leads", "organizations", "persons", "activities", "users", "filters", "stages",
                "pipelines", "webhooks" }
M.FUNCTIONS = { "list", "each", "add", "search", "get", "update", "delete" }

return M
