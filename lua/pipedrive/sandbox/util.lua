--- Small helpers of the sandbox: query strings, form bodies, base64, case folding.
local M = {}

local char, byte, floor = string.char, string.byte, math.floor

local function hex_byte(h)
  return char(tonumber(h, 16))
end

--- Percent-decoding; `plus` turns "+" into a space (query strings and forms).
function M.url_decode(s, plus)
  if plus then s = s:gsub("+", " ") end
  return (s:gsub("%%(%x%x)", hex_byte))
end

--- "a=1&b=x%20y" -> { a = "1", b = "x y" }. A repeated name keeps its last value.
function M.parse_query(qs)
  local out = {}
  if not qs or qs == "" then return out end
  for pair in qs:gmatch("[^&]+") do
    local k, v = pair:match("^([^=]*)=(.*)$")
    if not k then k, v = pair, "" end
    k = M.url_decode(k, true)
    if k ~= "" then out[k] = M.url_decode(v, true) end
  end
  return out
end

--- An application/x-www-form-urlencoded body -> a table. Brackets build arrays:
-- `label[]=1&label[]=2`, `email[0][value]=a@b&email[0][primary]=true`.
function M.parse_form(body)
  local out = {}
  if not body or body == "" then return out end
  for pair in body:gmatch("[^&]+") do
    local k, v = pair:match("^([^=]*)=(.*)$")
    if not k then k, v = pair, "" end
    k, v = M.url_decode(k, true), M.url_decode(v, true)
    local name, rest = k:match("^([^%[]+)(.*)$")
    if name then
      if rest == "" then
        out[name] = v
      elseif rest == "[]" then
        local t = type(out[name]) == "table" and out[name] or {}
        t[#t + 1] = v
        out[name] = t
      else
        local idx, sub = rest:match("^%[(%d+)%](.*)$")
        if idx then
          local t = type(out[name]) == "table" and out[name] or {}
          out[name] = t
          local i = tonumber(idx) + 1
          local subname = sub:match("^%[([%w_]+)%]$")
          if subname then
            t[i] = type(t[i]) == "table" and t[i] or {}
            t[i][subname] = v
          elseif sub == "" then
            t[i] = v
          end
        end
      end
    end
  end
  return out
end

local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local B64_INDEX = {}
for i = 1, 64 do B64_INDEX[byte(B64, i)] = i - 1 end
B64_INDEX[byte("-")] = 62
B64_INDEX[byte("_")] = 63

--- Base64 without padding (the form of Pipedrive's cursors).
function M.b64_encode(s)
  local out = {}
  for i = 1, #s, 3 do
    local a, b, c = byte(s, i, i + 2)
    local n = a * 65536 + (b or 0) * 256 + (c or 0)
    local i1, i2, i3 = floor(n / 262144) + 1, floor(n / 4096) % 64 + 1, floor(n / 64) % 64 + 1
    out[#out + 1] = B64:sub(i1, i1) .. B64:sub(i2, i2)
    if b then out[#out + 1] = B64:sub(i3, i3) end
    if c then out[#out + 1] = B64:sub(n % 64 + 1, n % 64 + 1) end
  end
  return table.concat(out)
end

--- Base64 (standard or URL alphabet, padding optional) -> bytes, or nil.
function M.b64_decode(s)
  s = s:gsub("=+$", "")
  if #s % 4 == 1 then return nil end
  local out = {}
  for i = 1, #s, 4 do
    local n, count = 0, 0
    for j = i, math.min(i + 3, #s) do
      local v = B64_INDEX[byte(s, j)]
      if not v then return nil end
      n = n * 64 + v
      count = count + 1
    end
    n = n * 64 ^ (4 - count)
    out[#out + 1] = char(floor(n / 65536) % 256)
    if count > 2 then out[#out + 1] = char(floor(n / 256) % 256) end
    if count > 3 then out[#out + 1] = char(n % 256) end
  end
  return table.concat(out)
end

--- A version 4 UUID from a 32-bit linear congruential generator (exact in doubles,
-- so every Lua version gives the same ids from the same seed): uuid, next state.
function M.uuid4(state)
  local w = {}
  state = floor(state) % 4294967296
  for i = 1, 4 do
    state = (state * 1664525 + 1013904223) % 4294967296
    w[i] = state
  end
  local w2 = w[2] - floor(w[2] / 4096) % 16 * 4096 + 0x4000 -- version 4
  local w3 = w[3] % 0x40000000 + 0x80000000                  -- variant 10
  return ("%08x-%04x-%04x-%04x-%04x%08x"):format(w[1], floor(w2 / 65536), w2 % 65536,
    floor(w3 / 65536), w3 % 65536, w[4]), state
end

-- Case folding for matching: ASCII plus the Latin-1 and Latin Extended-A letters
-- (so "ZOË" finds "Zoë"). Other scripts compare byte for byte.
local function fold_latin1(c2)
  local b = byte(c2)
  if b >= 0x80 and b <= 0x9e and b ~= 0x97 then return "\195" .. char(b + 0x20) end
  return "\195" .. c2
end

local function fold_ext_a(lead, c2)
  local cp = (byte(lead) % 32) * 64 + byte(c2) % 64
  if cp >= 0x100 and cp <= 0x137 and cp % 2 == 0 then cp = cp + 1
  elseif cp >= 0x139 and cp <= 0x148 and cp % 2 == 1 then cp = cp + 1
  elseif cp >= 0x14a and cp <= 0x177 and cp % 2 == 0 then cp = cp + 1
  elseif cp == 0x178 then cp = 0xff
  elseif cp >= 0x179 and cp <= 0x17e and cp % 2 == 1 then cp = cp + 1 end
  if cp == 0xff then return "\195\191" end
  return char(0xc0 + floor(cp / 64), 0x80 + cp % 64)
end

function M.fold(s)
  s = s:lower()
  if s:find("[\195-\197]") then
    s = s:gsub("\195([\128-\158])", fold_latin1)
    s = s:gsub("([\196\197])([\128-\191])", fold_ext_a)
  end
  return s
end

--- Whether a string is a UUID (any version) in the 8-4-4-4-12 form.
function M.is_uuid(s)
  return type(s) == "string" and s:match("^%x%x%x%x%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%x%x%x%x%x%x%x%x$")
    ~= nil
end

--- A custom field key: 40 hexadecimal characters.
function M.is_custom_key(k)
  return type(k) == "string" and #k == 40 and k:match("^%x+$") ~= nil
end

M.floor = floor

return M
