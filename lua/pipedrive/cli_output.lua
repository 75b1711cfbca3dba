--- Output of the command line (`pipedrive.cli`): human tables, key/value views
-- of one record, JSON documents and JSON lines.
--
-- Everything printed for a person goes through `cell`, which turns a decoded
-- value into one line of text without control characters: a record's title can
-- hold anything (an escape sequence, a newline), and a terminal must not obey
-- it. Widths are counted in terminal columns, not bytes, and text is cut only
-- between whole UTF-8 characters.
local compat = require "pipedrive.compat"
local core = require "pipedrive.core"

local null = core.null
local mtype = compat.math_type

local M = {}

------------------------------------------------------------------------------
-- Text width
------------------------------------------------------------------------------

-- Wide (two-column) and zero-width code point ranges: the common cases of East
-- Asian wide characters, emoji and combining marks. Not a full wcwidth, but it
-- keeps columns aligned for the scripts Pipedrive records are usually in.
local WIDE = {
  { 0x1100, 0x115F }, { 0x2E80, 0x303E }, { 0x3041, 0x33FF }, { 0x3400, 0x4DBF }, { 0x4E00, 0x9FFF },
  { 0xA000, 0xA4CF }, { 0xAC00, 0xD7A3 }, { 0xF900, 0xFAFF }, { 0xFE30, 0xFE4F }, { 0xFF00, 0xFF60 },
  { 0xFFE0, 0xFFE6 }, { 0x1F300, 0x1F64F }, { 0x1F900, 0x1F9FF }, { 0x20000, 0x3FFFD },
}
local ZERO = { { 0x0300, 0x036F }, { 0x200B, 0x200F }, { 0xFE00, 0xFE0F }, { 0x20D0, 0x20FF } }

local function in_ranges(ranges, cp)
  for _, r in ipairs(ranges) do
    if cp >= r[1] and cp <= r[2] then return true end
  end
  return false
end

local function cp_width(cp)
  if in_ranges(ZERO, cp) then return 0 end
  if cp >= 0x1100 and in_ranges(WIDE, cp) then return 2 end
  return 1
end

-- Splits `s` into characters: calls fn(bytes, code_point) for each one; a byte
-- that does not start a valid UTF-8 sequence comes as (byte, nil).
local function each_char(s, fn)
  local i, n = 1, #s
  while i <= n do
    local c = s:byte(i)
    local len, cp = 1, nil
    if c < 0x80 then
      cp = c
    elseif c >= 0xC2 and c <= 0xF4 then
      len = c >= 0xF0 and 4 or c >= 0xE0 and 3 or 2
      cp = c % (len == 2 and 32 or len == 3 and 16 or 8)
      for k = 1, len - 1 do
        local cc = s:byte(i + k)
        if not cc or cc < 0x80 or cc > 0xBF then
          cp = nil
          break
        end
        cp = cp * 64 + cc % 64
      end
      -- Overlong forms, surrogates and values past U+10FFFF are not text.
      local min = len == 2 and 0x80 or len == 3 and 0x800 or 0x10000
      if cp and (cp < min or cp > 0x10FFFF or (cp >= 0xD800 and cp <= 0xDFFF)) then cp = nil end
      if not cp then len = 1 end
    end
    fn(s:sub(i, i + len - 1), cp)
    i = i + len
  end
end

--- One line of printable text: control characters become spaces (a newline in
-- a note must not break the table), invalid UTF-8 bytes become U+FFFD.
function M.clean(s)
  if not s:find("[%c\128-\255]") then return s end
  local out = {}
  each_char(s, function(ch, cp)
    if cp == nil then
      out[#out + 1] = "\239\191\189"
    elseif cp < 0x20 or cp == 0x7F or (cp >= 0x80 and cp < 0xA0) then
      out[#out + 1] = " "
    else
      out[#out + 1] = ch
    end
  end)
  return table.concat(out)
end

--- Display width of clean text, in terminal columns.
function M.width(s)
  if not s:find("[\128-\255]") then return #s end
  local w = 0
  each_char(s, function(_, cp) w = w + (cp and cp_width(cp) or 1) end)
  return w
end

--- `s` cut to at most `max` columns, ending with an ellipsis when cut; never
-- splits a character.
function M.truncate(s, max)
  if M.width(s) <= max then return s end
  if max <= 0 then return "" end
  local out, w = {}, 0
  local done = false
  each_char(s, function(ch, cp)
    if done then return end
    local cw = cp and cp_width(cp) or 1
    if w + cw > max - 1 then
      done = true
      return
    end
    out[#out + 1] = ch
    w = w + cw
  end)
  return table.concat(out) .. "\226\128\166"
end

local function pad(s, w)
  return s .. (" "):rep(w - M.width(s))
end

------------------------------------------------------------------------------
-- Values as text
------------------------------------------------------------------------------

local function is_array(t)
  local mt = getmetatable(t)
  if mt and mt.__jsontype == "array" then return true end
  return t[1] ~= nil
end

local function number_text(v)
  if mtype(v) == "integer" then return ("%d"):format(v) end
  if v == math.floor(v) and v > -1e15 and v < 1e15 then return ("%d"):format(compat.tointeger(v)) end
  return ("%.14g"):format(v)
end

--- A decoded value as one cell of text: `{ name = ... }` (a v1 owner, a person)
-- shows the name, `{ value = ... }` (an email) the value, money as "amount CUR",
-- an array its items joined (the primary email first), other tables as JSON.
function M.cell(v)
  if v == nil or v == null then return "" end
  local t = type(v)
  if t == "string" then return M.clean(v) end
  if t == "number" then return number_text(v) end
  if t == "boolean" then return tostring(v) end
  if t ~= "table" then return "" end
  if is_array(v) then
    local parts = {}
    for _, x in ipairs(v) do
      local s = M.cell(x)
      if s ~= "" then
        if type(x) == "table" and x.primary == true then table.insert(parts, 1, s) else parts[#parts + 1] = s end
      end
    end
    return table.concat(parts, ", ")
  end
  if v.amount ~= nil and v.currency ~= nil then return M.cell(v.amount) .. " " .. M.cell(v.currency) end
  if v.name ~= nil and v.name ~= null then return M.cell(v.name) end
  if v.value ~= nil and v.value ~= null then return M.cell(v.value) end
  if v.id ~= nil and v.id ~= null then return M.cell(v.id) end
  local ok, s = pcall(core.json_encode, v)
  return ok and M.clean(s) or ""
end

------------------------------------------------------------------------------
-- Names
------------------------------------------------------------------------------

-- Edit distance between two short names (insertions, deletions,
-- substitutions and swaps of neighbours count one each), for "did you mean".
local function distance(a, b)
  if a == b then return 0 end
  local la, lb = #a, #b
  if math.abs(la - lb) > 3 then return math.abs(la - lb) end
  local d = {}
  for i = 0, la do d[i] = { [0] = i } end
  for j = 0, lb do d[0][j] = j end
  for i = 1, la do
    for j = 1, lb do
      local cost = a:byte(i) == b:byte(j) and 0 or 1
      local v = math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost)
      if i > 1 and j > 1 and a:byte(i) == b:byte(j - 1) and a:byte(i - 1) == b:byte(j) then
        v = math.min(v, d[i - 2][j - 2] + 1)
      end
      d[i][j] = v
    end
  end
  return d[la][lb]
end

--- The candidate nearest to `name` when it is near enough to be a typo (at
-- most two edits, and fewer than half the name's letters), else nil. Names
-- compare with "-" and "_" alike and in any case; ties go to the first.
function M.nearest(name, candidates)
  local key = name:lower():gsub("_", "-")
  local best, best_d
  for _, c in ipairs(candidates) do
    local d = distance(key, (c:lower():gsub("_", "-")))
    if d > 0 and (not best_d or d < best_d) then best, best_d = c, d end
  end
  if best_d and best_d <= 2 and best_d * 2 < #key then return best end
end

------------------------------------------------------------------------------
-- Columns
------------------------------------------------------------------------------

-- The default columns of each kind of record: a header and the keys that may
-- hold it, first present wins (v2 `owner_id`, v1 `user_id = { name }`, a search
-- item's `owner = { id }`). Records of kinds not listed show id and name/title.
local function money_of(value_key, currency_key)
  return function(r)
    local v = r[value_key]
    if v == nil or v == null then return nil end
    if type(v) == "table" then return v end
    local c = r[currency_key]
    if c == nil or c == null then return v end
    return M.cell(v) .. " " .. M.cell(c)
  end
end

local COLUMNS = {
  deal = { { "id" }, { "title" }, { "status" }, { "value", get = money_of("value", "currency") },
           { "owner", "owner_id", "user_id", "owner", "owner_name" }, { "stage", "stage_id", "stage" },
           { "person", "person_name", "person_id", "person" }, { "org", "org_name", "org_id", "organization" } },
  lead = { { "id" }, { "title" }, { "value", get = money_of("value", "currency") }, { "owner", "owner_id", "owner" },
           { "person", "person_id", "person" }, { "org", "organization_id", "organization" } },
  person = { { "id" }, { "name" }, { "email", "emails", "email", "primary_email" }, { "phone", "phones", "phone" },
             { "org", "org_name", "org_id", "organization" }, { "owner", "owner_id", "owner", "owner_name" } },
  organization = { { "id" }, { "name" }, { "address", "address" }, { "owner", "owner_id", "owner", "owner_name" } },
  activity = { { "id" }, { "subject" }, { "type" }, { "due_date" }, { "done" }, { "owner", "owner_id", "user_id" },
               { "deal", "deal_id" } },
  user = { { "id" }, { "name" }, { "email" }, { "active", "active_flag" }, { "admin", "is_admin" },
           { "you", "is_you" } },
  filter = { { "id" }, { "name" }, { "type" }, { "active", "active_flag" } },
  stage = { { "id" }, { "name" }, { "pipeline", "pipeline_id" }, { "order", "order_nr" } },
  pipeline = { { "id" }, { "name" }, { "active", "active", "active_flag" }, { "order", "order_nr" } },
  webhook = { { "id" }, { "name" }, { "event", get = function(r)
                return ("%s.%s"):format(M.cell(r.event_object), M.cell(r.event_action)) end },
              { "url", "subscription_url" }, { "version" }, { "active", "is_active" } },
}
local FALLBACK = { { "id" }, { "name", "name", "title", "subject" } }

local function column_value(col, r)
  if col.get then return col.get(r) end
  if #col == 1 then return r[col[1]] end
  for i = 2, #col do
    local v = r[col[i]]
    if v ~= nil and v ~= null then return v end
  end
  return nil
end

-- A dotted path into a record: "owner.name", "emails.1.value".
local function lookup(r, path)
  if r[path] ~= nil then return r[path] end
  local v = r
  for part in path:gmatch("[^.]+") do
    if type(v) ~= "table" then return nil end
    local x = v[part]
    if x == nil and tonumber(part) then x = v[tonumber(part)] end
    v = x
  end
  return v
end

--- The columns to show for records of `object`: `fields` (an array of names:
-- record keys, dotted paths, or a default column's header) or the defaults.
function M.columns(object, fields)
  local defaults = COLUMNS[object] or FALLBACK
  if not fields then return defaults end
  local by_header = {}
  for _, col in ipairs(defaults) do by_header[col[1]] = col end
  local cols = {}
  for _, name in ipairs(fields) do
    local known = by_header[name]
    -- "owner.name": when the record has no "owner", the first part may be a
    -- default column's header, found under its keys (v1's user_id = { name }).
    local head, rest = name:match("^([^.]+)%.(.+)$")
    local via = head and by_header[head]
    cols[#cols + 1] = { name, head = head or name, via = via or known, get = function(r)
      local v = lookup(r, name)
      if v == nil and known then return column_value(known, r) end
      if v == nil and via and r[head] == nil then
        local base = column_value(via, r)
        if type(base) == "table" then return lookup(base, rest) end
      end
      return v
    end }
  end
  return cols
end

-- The key of record `r` that a column's first part stands for: the part
-- itself, or the default column's first key present.
local function key_of(col, r)
  if r[col.head] ~= nil then return col.head end
  local via = col.via
  if via then
    for i = 2, #via do
      if r[via[i]] ~= nil and r[via[i]] ~= null then return via[i] end
    end
  end
end

local function nearest_key(name, r)
  local keys = {}
  for k in pairs(r) do
    if type(k) == "string" then keys[#keys + 1] = k end
  end
  table.sort(keys)
  local near = M.nearest(name, keys)
  if near then return near end
  for _, k in ipairs(keys) do
    if k:sub(1, #name + 1) == name .. "_" and (not near or #k < #near) then near = k end
  end
  return near
end

--- Watches the records shown under chosen columns (`--fields`) and tells
-- which columns stayed empty in all of them, and why when it can:
-- `t.add(record)` for each one, then `t.notes()` gives the warnings' lines.
function M.field_tracker(cols)
  local filled, sample, n = {}, nil, 0
  local t = {}
  function t.add(r)
    if type(r) ~= "table" then return end
    n = n + 1
    sample = sample or r
    for c, col in ipairs(cols) do
      if not filled[c] then
        local v = column_value(col, r)
        if v ~= nil and v ~= null then filled[c] = true end
      end
    end
  end
  function t.notes()
    local out = {}
    if n == 0 then return out end
    for c, col in ipairs(cols) do
      if not filled[c] then
        local why
        local key = key_of(col, sample)
        local v = key and sample[key]
        if key and col.head ~= col[1] and v ~= null and type(v) ~= "table" then
          why = ("%s holds a %s, not an object"):format(key, type(v))
        elseif not key then
          local near = nearest_key(col.head, sample)
          why = near and ("the records have no %s; did you mean %s?"):format(M.clean(col.head), near)
            or ("the records have no %s"):format(M.clean(col.head))
        end
        out[#out + 1] = ("--fields %s is empty in every record%s (--json shows all fields)")
          :format(M.clean(col[1]), why and ": " .. why or "")
      end
    end
    return out
  end
  return t
end

--- A record reduced to the chosen fields, for JSON output with --fields.
function M.pick(r, cols)
  local out = {}
  for _, col in ipairs(cols) do
    local v = column_value(col, r)
    if v ~= nil then out[col[1]] = v end
  end
  return out
end

------------------------------------------------------------------------------
-- Tables and views
------------------------------------------------------------------------------

local GAP = 2
local MIN_COL = 4

--- Lines of a table of `rows` (records) under `cols`, at most `width` columns
-- wide when width is given: the widest columns give way first, each down to
-- a floor of a few columns, then the last columns are left out; cut cells end
-- with an ellipsis. `drop_empty` leaves out columns empty in every row.
function M.table_lines(rows, cols, width, drop_empty)
  local cells, widths = {}, {}
  for i, r in ipairs(rows) do
    local line = {}
    for c, col in ipairs(cols) do line[c] = M.cell(column_value(col, r)) end
    cells[i] = line
  end
  if drop_empty then
    -- Default columns that are empty in every row (no person, no org) make room for the others.
    local kept, keep = {}, {}
    for c, col in ipairs(cols) do
      for _, line in ipairs(cells) do
        if line[c] ~= "" then
          keep[c] = true
          break
        end
      end
      if keep[c] or c == 1 then kept[#kept + 1] = col end
    end
    if #kept < #cols then
      for i, line in ipairs(cells) do
        local l = {}
        for c = 1, #cols do
          if keep[c] or c == 1 then l[#l + 1] = line[c] end
        end
        cells[i] = l
      end
      cols = kept
    end
  end
  for c, col in ipairs(cols) do widths[c] = M.width(col[1]) end
  for _, line in ipairs(cells) do
    for c, s in ipairs(line) do
      local w = M.width(s)
      if w > widths[c] then widths[c] = w end
    end
  end
  if width then
    -- Shrink the widest column, one column at a time, down to its floor; when
    -- every column is at its floor, leave out the last one.
    local n = #cols
    local floors = {}
    for c = 1, n do floors[c] = math.min(widths[c], math.max(MIN_COL, math.min(M.width(cols[c][1]), 6))) end
    local function excess()
      local t = GAP * (n - 1)
      for c = 1, n do t = t + widths[c] end
      return t - width
    end
    local over = excess()
    while over > 0 do
      local widest, at = 0, nil
      for c = 1, n do
        if widths[c] > floors[c] and widths[c] > widest then widest, at = widths[c], c end
      end
      if at then
        widths[at] = widths[at] - 1
        over = over - 1
      elseif n > 1 then
        n = n - 1
        over = excess()
      else
        break
      end
    end
    if n < #cols then
      local kept = {}
      for c = 1, n do kept[c] = cols[c] end
      cols = kept
      for _, line in ipairs(cells) do
        for c = #line, n + 1, -1 do line[c] = nil end
      end
    end
  end
  local out = {}
  local function emit(line)
    local parts = {}
    for c, s in ipairs(line) do
      s = M.truncate(s, widths[c])
      parts[c] = c == #line and s or pad(s, widths[c])
    end
    out[#out + 1] = (table.concat(parts, (" "):rep(GAP)):gsub("%s+$", ""))
  end
  local header = {}
  for c, col in ipairs(cols) do header[c] = col[1]:upper() end
  emit(header)
  for _, line in ipairs(cells) do emit(line) end
  return out
end

--- Lines showing one record as "key  value" pairs: the chosen columns, or
-- every field that is not null (id first, then by name).
function M.record_lines(r, cols, width)
  local pairs_ = {}
  if cols then
    for _, col in ipairs(cols) do pairs_[#pairs_ + 1] = { col[1], M.cell(column_value(col, r)) } end
  else
    local keys = {}
    for k, v in pairs(r) do
      if type(k) == "string" and v ~= null then keys[#keys + 1] = k end
    end
    table.sort(keys, function(a, b)
      if a == "id" or b == "id" then return a == "id" and b ~= "id" end
      return a < b
    end)
    for _, k in ipairs(keys) do pairs_[#pairs_ + 1] = { k, M.cell(r[k]) } end
  end
  local kw = 0
  for _, p in ipairs(pairs_) do kw = math.max(kw, M.width(p[1])) end
  local out = {}
  for _, p in ipairs(pairs_) do
    local v = p[2]
    if width then v = M.truncate(v, math.max(MIN_COL, width - kw - GAP)) end
    out[#out + 1] = (pad(p[1], kw) .. (" "):rep(GAP) .. v):gsub("%s+$", "")
  end
  return out
end

------------------------------------------------------------------------------
-- JSON
------------------------------------------------------------------------------

-- Fields that hold a secret in records Pipedrive sends back (a webhook's Basic
-- auth password): masked in every output, JSON included.
local SECRET_FIELDS = { http_auth_password = true }

--- A copy of a record without secrets (the record itself when it has none).
function M.scrub(r)
  if type(r) ~= "table" then return r end
  local copy
  for k in pairs(SECRET_FIELDS) do
    local v = r[k]
    if type(v) == "string" and v ~= "" then
      if not copy then
        copy = setmetatable({}, getmetatable(r))
        for kk, vv in pairs(r) do copy[kk] = vv end
      end
      copy[k] = "***"
    end
  end
  return copy or r
end

--- One JSON text (one line) of a decoded value; `{}` arrays stay `[]`.
function M.json(v)
  return core.json_encode(v)
end

return M
