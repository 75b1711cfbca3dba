--- JSON for the sandbox: its own encoder, and lua-cjson for decoding.
--
-- The sandbox must not share JSON code with the client it tests, so output is
-- written here:
--   * a table marked with `json.array(t)` is an array (so `{}` can be `[]`);
--     an unmarked non-empty sequence is an array too; anything else an object;
--   * object keys come out sorted, so the same data always gives the same text;
--   * integers are written as integers, and floats without a fraction too
--     (5000.0 -> 5000), so ids never appear as "123.0";
--   * strings are written byte for byte (UTF-8 stays as it is), only quotes,
--     backslashes and control characters are escaped.
-- Decoding uses lua-cjson, then turns every float that holds an integer into a
-- Lua integer (cjson reads all numbers as floats). JSON null is `json.null`
-- (cjson.null, a lightuserdata).
local compat = require "pipedrive.compat"
local cjson = require "cjson"

local M = {}

M.null = cjson.null

local array_mt = { __name = "pipedrive.sandbox.array" }
M.array_mt = array_mt

--- Marks `t` (a new table when nil) as a JSON array and returns it.
function M.array(t)
  return setmetatable(t or {}, array_mt)
end

function M.is_array(t)
  return getmetatable(t) == array_mt
end

local type, pairs, tostring, math_type, floor, huge = type, pairs, tostring, compat.math_type, math.floor, math.huge
local sort, concat, format, byte, find = table.sort, table.concat, string.format, string.byte, string.find
local null = M.null

local ESCAPES = {
  ['"'] = '\\"', ["\\"] = "\\\\", ["\b"] = "\\b", ["\f"] = "\\f",
  ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t",
}
local function escape_char(c)
  return ESCAPES[c] or format("\\u%04x", byte(c))
end

local function encode_string(s)
  if s:find('[%c"\\]') then s = s:gsub('[%c"\\]', escape_char) end
  return '"' .. s .. '"'
end
M.encode_string = encode_string

local function encode_number(n)
  if math_type(n) == "integer" then return format("%d", n) end
  if n ~= n or n == huge or n == -huge then error("json: cannot encode " .. tostring(n), 0) end
  if n == floor(n) and n > -2^53 and n < 2^53 then return format("%d", n) end
  local s = format("%.14g", n)
  if tonumber(s) ~= n then s = format("%.17g", n) end
  return s
end
M.encode_number = encode_number

local encode_value

-- Objects of one shape share their key set, so the sorted key order is
-- remembered per key set (found by the keys in traversal order), and each
-- key's '"key":' text is made once.
local sorted_keys, sorted_count = {}, 0
local key_texts, comma_key_texts, key_count = {}, {}, 0

local function key_text(key, comma)
  local text = encode_string(key) .. ":"
  if key_count < 10000 then
    key_count = key_count + 1
    key_texts[key] = text
    comma_key_texts[key] = "," .. text
  end
  return comma and ("," .. text) or text
end

local function object_keys(t)
  local keys, k = {}, 0
  for key in pairs(t) do
    if type(key) ~= "string" then error("json: object key " .. tostring(key) .. " is not a string", 0) end
    k = k + 1
    keys[k] = key
  end
  local sig = concat(keys, "\0")
  local sorted = sorted_keys[sig]
  if sorted then return sorted end
  sort(keys)
  if sorted_count >= 2000 then
    sorted_keys, sorted_count = {}, 0
  end
  sorted_keys[sig] = keys
  sorted_count = sorted_count + 1
  return keys
end

local function encode_table(t, out, n, depth)
  if depth > 100 then error("json: nesting too deep", 0) end
  local mt = getmetatable(t)
  if mt == array_mt or (mt == nil and t[1] ~= nil) then
    n = n + 1
    out[n] = "["
    for i = 1, #t do
      if i > 1 then
        n = n + 1
        out[n] = ","
      end
      n = encode_value(t[i], out, n, depth + 1)
    end
    n = n + 1
    out[n] = "]"
    return n
  end
  local keys = object_keys(t)
  n = n + 1
  out[n] = "{"
  for i = 1, #keys do
    local key = keys[i]
    n = n + 1
    if i == 1 then
      out[n] = key_texts[key] or key_text(key, false)
    else
      out[n] = comma_key_texts[key] or key_text(key, true)
    end
    local v = t[key]
    local tv = type(v)
    if tv == "string" then
      n = n + 1
      if find(v, '[%c"\\]') then
        out[n] = encode_string(v)
      else
        out[n] = '"' .. v .. '"'
      end
    elseif tv == "number" and math_type(v) == "integer" then
      n = n + 1
      out[n] = format("%d", v)
    elseif tv == "boolean" then
      n = n + 1
      out[n] = v and "true" or "false"
    elseif v == null then
      n = n + 1
      out[n] = "null"
    else
      n = encode_value(v, out, n, depth + 1)
    end
  end
  n = n + 1
  out[n] = "}"
  return n
end

function encode_value(v, out, n, depth)
  local tv = type(v)
  n = n + 1
  if tv == "string" then
    out[n] = encode_string(v)
  elseif tv == "number" then
    out[n] = encode_number(v)
  elseif tv == "boolean" then
    out[n] = v and "true" or "false"
  elseif v == nil or v == null then
    out[n] = "null"
  elseif tv == "table" then
    return encode_table(v, out, n - 1, depth)
  else
    error("json: cannot encode a " .. tv, 0)
  end
  return n
end

--- Lua value -> JSON text. Raises on functions, NaN/inf, non-string keys.
function M.encode(v)
  local out = {}
  encode_value(v, out, 0, 0)
  return concat(out)
end

-- cjson gives floats; whole numbers in the integer range become integers.
local function fix_numbers(v)
  local tv = type(v)
  if tv == "number" then
    return compat.tointeger(v) or v
  elseif tv == "table" then
    for k, x in pairs(v) do
      local tx = type(x)
      if tx == "number" or tx == "table" then v[k] = fix_numbers(x) end
    end
  end
  return v
end

local decoder = cjson.new()
decoder.decode_max_depth(200)

--- JSON text -> value, or nil and a message for malformed text.
function M.decode(s)
  if type(s) ~= "string" then return nil, "not a string" end
  local ok, v = pcall(decoder.decode, s)
  if not ok then return nil, tostring(v) end
  return fix_numbers(v)
end

return M
