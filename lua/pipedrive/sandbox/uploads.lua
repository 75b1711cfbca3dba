--- The sandbox's multipart/form-data endpoints: files (POST/GET /v1/files,
-- GET/DELETE /v1/files/{id}) and a person's picture (POST/DELETE
-- /v1/persons/{id}/picture), answering in the shapes of Pipedrive's v1
-- OpenAPI file. `parse` reads a multipart body (init.lua's read_body hands it
-- any request whose content type is multipart/form-data); `route` is asked
-- before the other routers. Uploaded files live in `app.uploads` (cleared by
-- the app's reset); their bytes are kept, bounded by the server's body limit.
local compat = require "pipedrive.compat"
local json = require "pipedrive.sandbox.json"
local time = require "pipedrive.sandbox.time"
local check = require "pipedrive.sandbox.check"

local array, null = json.array, json.null
local fail, invalid = check.fail, check.invalid

local M = {}

-- The parameter `name` of a header value (`form-data; name="x"`), quoted or not.
local function header_param(value, name)
  local v = value:match(';%s*' .. name .. '%s*=%s*"([^"]*)"') or value:match(';%s*' .. name .. '%s*=%s*([^;%s]+)')
  return v
end

--- A multipart/form-data body -> { multipart = true, fields = { name = text },
-- files = { name = { filename, type, data } } }; a malformed body is a 400.
function M.parse(body, content_type)
  local boundary = header_param(";" .. (content_type or ""):gsub("^[^;]*", ""), "boundary")
  if not boundary or boundary == "" then invalid("content-type", "multipart/form-data without a boundary") end
  local delim = "--" .. boundary
  local out = { multipart = true, fields = {}, files = {} }
  local at = body:find(delim, 1, true)
  if not at then fail(400, "Malformed multipart body: no boundary line") end
  at = at + #delim
  while true do
    if body:sub(at, at + 1) == "--" then return out end -- the closing delimiter
    if body:sub(at, at + 1) ~= "\r\n" then fail(400, "Malformed multipart body: bad boundary line") end
    local head_end = body:find("\r\n\r\n", at + 2, true)
    if not head_end then fail(400, "Malformed multipart body: part without headers") end
    local headers = {}
    for line in body:sub(at + 2, head_end - 1):gmatch("[^\r\n]+") do
      local k, v = line:match("^([^:]+):%s*(.-)%s*$")
      if k then headers[k:lower()] = v end
    end
    local next_at = body:find("\r\n" .. delim, head_end + 4, true)
    if not next_at then fail(400, "Malformed multipart body: part not closed by the boundary") end
    local data = body:sub(head_end + 4, next_at - 1)
    local disp = headers["content-disposition"] or ""
    local name = header_param(disp, "name")
    if not disp:lower():find("^%s*form%-data") or not name then
      fail(400, "Malformed multipart body: a part without Content-Disposition: form-data; name")
    end
    local filename = header_param(disp, "filename")
    if filename then
      out.files[name] = { filename = filename, type = headers["content-type"] or "application/octet-stream", data = data }
    else
      out.fields[name] = data
    end
    at = next_at + 2 + #delim
  end
end

-- The checked multipart body of ctx: the parts, or a 400 like Pipedrive's.
local function parts(ctx)
  local b = ctx.body
  if type(b) ~= "table" or not b.multipart then
    invalid("content-type", "expected multipart/form-data")
  end
  return b
end

-- An optional integer form field (a positive id).
local function int_field(p, name)
  local v = p.fields[name]
  if v == nil then return null end
  local n = v:match("^%d+$") and compat.tointeger(tonumber(v))
  if not n or n < 1 then invalid(name, "must be a positive integer") end
  return n
end

local function uploads(app)
  local u = app.uploads
  if not u then
    u = { files = {}, by_id = {}, last_id = 0, pictures = {}, last_picture = 0 }
    app.uploads = u
  end
  return u
end

local FILE_TYPES = { png = "img", jpg = "img", jpeg = "img", gif = "img", pdf = "pdf", txt = "text", csv = "text",
                     doc = "doc", docx = "doc", xls = "spreadsheet", xlsx = "spreadsheet" }

-- A file record as Pipedrive's v1 answers it (nulls where nothing is associated).
local function file_record(app, f)
  local host = "https://sandbox.pipedrive.com"
  -- Pipedrive sends null where nothing is associated; the schema says otherwise,
  -- so nulls are written only with real_nulls (as elsewhere in the sandbox).
  local none = app.store.real_nulls and null or nil
  local function v(x) if x == null then return none end return x end
  local deal = f.deal_id ~= null and app.store:live("deal", f.deal_id)
  local person = f.person_id ~= null and app.store:live("person", f.person_id)
  return {
    id = f.id, user_id = app.store:me().id, deal_id = v(f.deal_id), person_id = v(f.person_id), org_id = v(f.org_id),
    product_id = v(f.product_id), activity_id = v(f.activity_id), lead_id = v(f.lead_id),
    project_id = v(f.project_id), log_id = none, add_time = time.v1(f.add_time), update_time = time.v1(f.update_time),
    file_name = f.file_name, file_type = FILE_TYPES[(f.file_name:match("%.(%w+)$") or ""):lower()] or "other",
    file_size = #f.data, active_flag = f.active, inline_flag = false, remote_location = "s3", remote_id = none,
    cid = "", s3_bucket = "", mail_message_id = "", mail_template_id = "",
    deal_name = deal and deal.title or "", person_name = person and person.name or "", org_name = "",
    product_name = "", lead_name = "", url = ("%s/v1/files/%d/download"):format(host, f.id),
    name = f.name or f.file_name, description = f.description or "",
  }
end

--- POST /v1/files: one `file` part plus optional association ids.
function M.add_file(app, ctx)
  local p = parts(ctx)
  local file = p.files.file
  if not file then invalid("file", "is required (a multipart part with a filename)") end
  local u = uploads(app)
  local deal_id, person_id = int_field(p, "deal_id"), int_field(p, "person_id")
  if deal_id ~= null and not app.store:live("deal", deal_id) then fail(404, "Deal not found") end
  if person_id ~= null and not app.store:live("person", person_id) then fail(404, "Person not found") end
  local lead_id = p.fields.lead_id or null
  u.last_id = u.last_id + 1
  local now = app.store:now()
  local f = { id = u.last_id, deal_id = deal_id, person_id = person_id, org_id = int_field(p, "org_id"),
              product_id = int_field(p, "product_id"), activity_id = int_field(p, "activity_id"),
              project_id = int_field(p, "project_id"), lead_id = lead_id, file_name = file.filename,
              data = file.data, content_type = file.type, add_time = now, update_time = now, active = true }
  u.files[#u.files + 1] = f
  u.by_id[f.id] = f
  return 200, { success = true, data = file_record(app, f) }
end

--- GET /v1/files: offset paging (start, limit up to 100), newest last.
function M.list_files(app, ctx)
  local start = ctx.q:int("start", { min = 0 }) or 0
  local limit = ctx.q:int("limit", { min = 1, clamp = 100 }) or 100
  local live = {}
  for _, f in ipairs(uploads(app).files) do
    if f.active then live[#live + 1] = f end
  end
  local page = array()
  for i = start + 1, math.min(#live, start + limit) do page[#page + 1] = file_record(app, live[i]) end
  local more = #live > start + limit
  local pagination = { start = start, limit = limit, more_items_in_collection = more }
  if more then pagination.next_start = start + limit end
  return 200, { success = true, data = page, additional_data = { pagination = pagination } }
end

local function live_file(app, id)
  local f = uploads(app).by_id[id]
  if not f or not f.active then fail(404, "File not found") end
  return f
end

function M.get_file(app, ctx)
  return 200, { success = true, data = file_record(app, live_file(app, ctx.id)) }
end

--- PUT /v1/files/{id}: the visible name and the description (form or JSON fields).
function M.update_file(app, ctx)
  local f = live_file(app, ctx.id)
  local b = ctx.body
  if type(b) ~= "table" or b.multipart then invalid("content-type", "expected a form or JSON body") end
  for _, k in ipairs({ "name", "description" }) do
    local v = b:string(k)
    if v ~= nil then f[k] = v end
  end
  f.update_time = app.store:now()
  return 200, { success = true, data = file_record(app, f) }
end

function M.delete_file(app, ctx)
  live_file(app, ctx.id).active = false
  return 200, { success = true, data = { id = ctx.id } }
end

--- POST /v1/persons/{id}/picture: one `file` part (an image), optional crop fields.
function M.add_picture(app, ctx)
  local p = parts(ctx)
  local file = p.files.file
  if not file then invalid("file", "is required (a multipart part with a filename)") end
  if not file.type:match("^image/") and not (file.filename:lower():match("%.png$")
      or file.filename:lower():match("%.jpe?g$") or file.filename:lower():match("%.gif$")) then
    invalid("file", "must be a GIF, JPG or PNG image")
  end
  for _, k in ipairs({ "crop_x", "crop_y", "crop_width", "crop_height" }) do
    if p.fields[k] ~= nil and not p.fields[k]:match("^%d+$") then invalid(k, "must be an integer") end
  end
  if not app.store:live("person", ctx.id) then fail(404, "Person not found") end
  local u = uploads(app)
  u.last_picture = u.last_picture + 1
  local now = time.v1(app.store:now())
  local base = ("https://sandbox-profile-pics.pipedrive.com/%d"):format(u.last_picture)
  local pic = { id = u.last_picture, item_type = "person", item_id = ctx.id, active_flag = true,
                add_time = now, update_time = now, added_by_user_id = app.store:me().id,
                pictures = { ["128"] = base .. "_128.jpg", ["512"] = base .. "_512.jpg" } }
  u.pictures[ctx.id] = { picture = pic, size = #file.data }
  return 200, { success = true, data = pic }
end

function M.delete_picture(app, ctx)
  local u = uploads(app)
  if not app.store:live("person", ctx.id) then fail(404, "Person not found") end
  local pic = u.pictures[ctx.id]
  if not pic then fail(404, "Picture not found") end
  u.pictures[ctx.id] = nil
  return 200, { success = true, data = { id = pic.picture.id } }
end

local FILE = { kind = "file" }
local PERSON = { kind = "person" }

--- methods, resource, path id for the upload endpoints; nil for any other path.
function M.route(version, segs)
  if version ~= "v1" then return nil end
  local n, top = #segs, segs[1]
  if top == "files" then
    if n == 1 then return { GET = M.list_files, POST = M.add_file }, FILE end
    if n == 2 then return { GET = M.get_file, PUT = M.update_file, DELETE = M.delete_file }, FILE, segs[2] end
  elseif top == "persons" and n == 3 and segs[3] == "picture" then
    return { POST = M.add_picture, DELETE = M.delete_picture }, PERSON, segs[2]
  end
  return nil
end

return M
