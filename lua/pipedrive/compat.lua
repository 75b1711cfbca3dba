--- The few Lua differences between 5.1/LuaJIT, 5.2, 5.3 and 5.4 the library meets.
--
-- Lua 5.3+ has integers; 5.1, 5.2 and LuaJIT only doubles. There an integral number
-- within 2^53 counts as an integer (math_type(42.0) == "integer"), which is what the
-- JSON codec and the argument checks need: ids up to 2^53 are exact on every version.
-- Pure functions, no I/O, no state; the library and the sandbox use it alike.
local M = {}

local has_integers = math.type ~= nil
M.has_integers = has_integers

-- 2^53: beyond it a double no longer holds every integer.
local EXACT = 9007199254740992

M.maxinteger = math.maxinteger or EXACT
M.mininteger = math.mininteger or -EXACT

--- math.type: "integer", "float" or nil (not a number).
if has_integers then
  M.math_type = math.type
else
  function M.math_type(v)
    if type(v) ~= "number" then return nil end
    if v == math.floor(v) and v >= -EXACT and v <= EXACT then return "integer" end
    return "float"
  end
end

--- math.tointeger: the integer a number or numeric string stands for, else nil.
if has_integers then
  M.tointeger = math.tointeger
else
  function M.tointeger(v)
    if type(v) == "string" then v = tonumber(v) end
    if type(v) == "number" and v == math.floor(v) and v >= -EXACT and v <= EXACT then return v end
    return nil
  end
end

--- Floor division of integers (a // b).
if has_integers then
  M.idiv = load("return function(a, b) return a // b end")()
else
  function M.idiv(a, b) return math.floor(a / b) end
end

M.unpack = table.unpack or unpack -- luacheck: ignore 113

--- table.pack.
function M.pack(...)
  return { n = select("#", ...), ... }
end

--- A byte-exact check of UTF-8 as Lua 5.4's utf8.len sees it (no surrogates, nothing
-- past U+10FFFF, shortest forms only): the number of characters, or nil and the
-- position of the first bad byte.
local byte = string.byte
local function utf8_len(s)
  local i, n, count = 1, #s, 0
  while i <= n do
    local c = byte(s, i)
    local need, min
    if c < 0x80 then need, min = 0, 0
    elseif c >= 0xc2 and c <= 0xdf then need, min = 1, 0x80
    elseif c >= 0xe0 and c <= 0xef then need, min = 2, 0x800
    elseif c >= 0xf0 and c <= 0xf4 then need, min = 3, 0x10000
    else return nil, i end
    local cp = need == 0 and c or (c % (2 ^ (6 - need)))
    for j = 1, need do
      local d = byte(s, i + j)
      if not d or d < 0x80 or d > 0xbf then return nil, i end
      cp = cp * 64 + (d - 0x80)
    end
    if cp < min or cp > 0x10ffff or (cp >= 0xd800 and cp <= 0xdfff) then return nil, i end
    i = i + need + 1
    count = count + 1
  end
  return count
end
if utf8 and _VERSION == "Lua 5.4" then
  M.utf8_len = utf8.len
else
  M.utf8_len = utf8_len
end

--- utf8.char for one code point (0..0x10FFFF).
function M.utf8_char(cp)
  if cp < 0x80 then return string.char(cp) end
  if cp < 0x800 then return string.char(0xc0 + math.floor(cp / 64), 0x80 + cp % 64) end
  if cp < 0x10000 then
    return string.char(0xe0 + math.floor(cp / 4096), 0x80 + math.floor(cp / 64) % 64, 0x80 + cp % 64)
  end
  return string.char(0xf0 + math.floor(cp / 262144), 0x80 + math.floor(cp / 4096) % 64,
    0x80 + math.floor(cp / 64) % 64, 0x80 + cp % 64)
end

--- rawlen (5.1 has none, and its # never calls __len on a table anyway).
M.rawlen = rawlen or function(t) return #t end -- luacheck: ignore 143

--- Whether a coroutine can yield from inside pcall and metamethods: every version but
-- plain Lua 5.1 (LuaJIT can). The scheduler of pd.parallel needs it.
M.yield_across_pcall = _VERSION ~= "Lua 5.1" or rawget(_G, "jit") ~= nil

--- coroutine.isyieldable (5.3+, LuaJIT); before, "inside a coroutine" is the best guess.
M.isyieldable = coroutine.isyieldable or function()
  local co, main = coroutine.running()
  return co ~= nil and not main
end

--- os.execute's success as a boolean on every version (5.1 returns a status number).
function M.execute(cmd)
  local r = os.execute(cmd)
  return r == true or r == 0
end

--- The exit code of a shell command (os.execute's third result on 5.2+; 5.1 and
-- LuaJIT return the raw wait status).
function M.execute_code(cmd)
  local r, _, code = os.execute(cmd)
  if type(r) == "number" then
    if r >= 256 or r == 0 then return math.floor(r / 256) end
    return 128 + r -- killed by a signal
  end
  return code
end

--- load(text, name, mode, env) on every version: plain 5.1 has only loadstring and setfenv.
if pcall(load, "return 1") then
  M.load = load
else
  function M.load(text, name, _, env)
    local fn, err = loadstring(text, name) -- luacheck: ignore 113
    if fn and env then setfenv(fn, env) end -- luacheck: ignore 113
    return fn, err
  end
end

return M
