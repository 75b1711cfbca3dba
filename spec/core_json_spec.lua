-- Unit specs of the C JSON codec (csrc/json.c): core.null, core.array_mt,
-- core.array, core.json_decode, core.json_encode.
local compat = require "pipedrive.compat"
local core = require "pipedrive.core"

local decode, encode, null, array = core.json_decode, core.json_encode, core.null, core.array

local raises = require("support.util").raises

-- decode must fail with nil, message (never raise, never crash)
local function bad(text, pattern)
  local v, msg = decode(text)
  assert.is_nil(v, "expected a decode error for " .. string.format("%q", text))
  assert.is_string(msg)
  assert.equal("json_decode: ", msg:sub(1, 13))
  if pattern then assert.matches(pattern, msg, 1, true) end
  return msg
end

describe("core.null and core.array", function()
  it("null is a lightuserdata NULL, equal to cjson.null", function()
    assert.equal("userdata", type(null))
    assert.equal(null, decode("null"))
    local ok, cjson = pcall(require, "cjson")
    if ok then assert.equal(cjson.null, null) end
    -- a full userdata or another pointer is not null
    assert.are_not.equal(null, io.stdout)
  end)

  it("array_mt carries its name and marker fields", function()
    assert.is_table(core.array_mt)
    assert.equal("pipedrive.array", core.array_mt.__name)
    assert.equal("array", core.array_mt.__jsontype)
  end)

  it("array() makes a new marked table, array(t) marks t and returns it", function()
    local a = array()
    assert.equal(core.array_mt, getmetatable(a))
    local t = { 1, 2 }
    assert.equal(t, array(t))
    assert.equal(core.array_mt, getmetatable(t))
    assert.matches("array: expected a table or nil, got number", raises(array, 5), 1, true)
  end)

  it("survives a second require of the module: arrays decoded before stay arrays", function()
    local a = decode("[]")
    package.loaded["pipedrive.core"] = nil
    local again = require "pipedrive.core"
    assert.equal(core.array_mt, again.array_mt)
    assert.equal("[]", again.json_encode(a))
  end)
end)

describe("core.json_decode", function()
  it("keeps integers as integers, other numbers as floats", function()
    local t = decode("[0, 1, -1, 42, 1.0, 1.5, -2.25, 1e3, 1E-2, 2.5e+2, -0]")
    local types = {}
    for i, v in ipairs(t) do types[i] = compat.math_type(v) end
    if compat.has_integers then
      assert.same({ "integer", "integer", "integer", "integer", "float", "float", "float", "float", "float",
                    "float", "integer" }, types)
    else -- 5.1/LuaJIT: only doubles, an integral one counts as an integer
      assert.same({ "integer", "integer", "integer", "integer", "integer", "float", "float", "integer", "float",
                    "integer", "integer" }, types)
    end
    assert.equal(42, t[4])
    assert.equal(1000.0, t[8])
    assert.equal(0.01, t[9])
    assert.equal(250.0, t[10])
  end)

  it("decodes the int64 limits exactly and goes to float beyond", function()
    local t = decode("[9223372036854775807, -9223372036854775808, 9223372036854775808, -9223372036854775809]")
    if not compat.has_integers then -- doubles: exact up to 2^53 only, the limits round to +-2^63
      assert.same({ 2^63, -2^63, 2^63, -2^63 }, t)
      return
    end
    assert.equal(compat.maxinteger, t[1])
    assert.equal("integer", compat.math_type(t[1]))
    assert.equal(compat.mininteger, t[2])
    assert.equal("integer", compat.math_type(t[2]))
    assert.equal("float", compat.math_type(t[3]))
    assert.equal(2^63, t[3])
    assert.equal("float", compat.math_type(t[4]))
    assert.equal(-2^63, t[4])
  end)

  it("decodes large ids (Pipedrive ids beyond 2^53) without loss", function()
    local t = decode('{"id": 9007199254740993}')
    assert.equal(9007199254740993, t.id)
    assert.equal("integer", compat.math_type(t.id))
  end)

  it("decodes floats exactly, long mantissas included", function()
    assert.equal(0.1, decode("0.1"))
    assert.equal(1 / 3, decode("0.33333333333333331"))
    assert.equal(5e-324, decode("5e-324"))
    assert.equal(1.7976931348623157e308, decode("1.7976931348623157e308"))
    local long = "0." .. ("0"):rep(300) .. "1"
    assert.equal(1e-301, decode(long))
    assert.equal(123.0, decode("123" .. "." .. ("0"):rep(500)))
  end)

  it("exact mode keeps numbers that would round as their text (webhook ids)", function()
    local text = "[0, -1, 42, 9007199254740992, 9007199254740993, 9223372036854775807, 9223372036854775808,"
      .. " 12345678901234567890123456789012345, 1.5, 42.0, 1e3, -0.0, 1e400, -9223372036854775808]"
    local t = decode(text, { exact = true })
    assert.same({ 0, -1, 42, 9007199254740992 }, { t[1], t[2], t[3], t[4] })
    for i = 1, 4 do assert.equal("integer", compat.math_type(t[i])) end
    if compat.has_integers then
      assert.equal("integer", compat.math_type(t[5]))
      assert.equal("9007199254740993", ("%d"):format(t[5]))
      assert.equal(compat.maxinteger, t[6])
      assert.equal(compat.mininteger, t[14])
    else -- doubles: exact up to 2^53 only
      assert.same({ "9007199254740993", "9223372036854775807", "-9223372036854775808" }, { t[5], t[6], t[14] })
    end
    assert.same({ "9223372036854775808", "12345678901234567890123456789012345", "1.5", "42.0", "1e3", "-0.0",
                  "1e400" }, { t[7], t[8], t[9], t[10], t[11], t[12], t[13] })
    -- the rest of the grammar is the same: strings, nesting, errors
    assert.same({ a = { "1.5" }, b = "x" }, decode('{"a": [1.5], "b": "x"}', { exact = true }))
    local v, msg = decode("[1.]", { exact = true })
    assert.is_nil(v)
    assert.matches("invalid number", msg, 1, true)
    assert.equal(1.5, decode("1.5", { exact = false }))
    assert.equal(1.5, decode("1.5", {}))
    assert.matches("options", raises(decode, "1", "exact"))
    assert.matches("exact must be a boolean", raises(decode, "1", { exact = 1 }))
  end)

  it("refuses numbers JSON does not allow", function()
    for _, s in ipairs { "01", "-", "+1", ".5", "1.", "1e", "1e+", "0x10", "NaN", "Infinity", "-Infinity",
                         "1.5.2", "--1", "- 1", "1 2" } do
      bad(s)
    end
    bad("01", "leading zero")
    bad("1e400", "number out of range")
    bad("-1e400", "number out of range")
  end)

  it("decodes literals and nested structures", function()
    local v = decode(' { "a" : [ true , false , null , { } , [ ] ] , "b" : "x" } ')
    assert.is_true(v.a[1])
    assert.is_false(v.a[2])
    assert.equal(null, v.a[3])
    assert.same({}, v.a[4])
    assert.is_nil(getmetatable(v.a[4]))
    assert.equal(core.array_mt, getmetatable(v.a[5]))
    assert.equal(core.array_mt, getmetatable(v.a))
    assert.is_nil(getmetatable(v))
    assert.equal(5, #v.a)
    assert.equal("x", v.b)
  end)

  it("keeps nulls in arrays as core.null, so arrays have no holes", function()
    local a = decode("[null, 1, null]")
    assert.equal(3, #a)
    assert.equal(null, a[1])
    assert.equal(null, a[3])
  end)

  it("lets the last of duplicate keys win", function()
    assert.equal(2, decode('{"a":1,"a":2}').a)
  end)

  it("decodes top-level scalars", function()
    assert.equal("s", decode('"s"'))
    assert.equal(5, decode(" 5 "))
    assert.is_true(decode("true"))
    assert.is_false(decode("false"))
  end)

  it("decodes escapes, \\u escapes and surrogate pairs to UTF-8", function()
    assert.equal('"\\/\b\f\n\r\t', decode([["\"\\\/\b\f\n\r\t"]]))
    assert.equal("é", decode([["\u00e9"]]))
    assert.equal("é", decode([["\u00E9"]]))
    assert.equal("日本", decode([["\u65e5\u672c"]]))
    assert.equal("😀", decode([["\ud83d\ude00"]]))
    assert.equal("\244\143\191\191", decode([["\udbff\udfff"]]))
    assert.equal("a\0b", decode([["a\u0000b"]]))
    assert.equal("x😀y\n", decode([["x\uD83D\uDE00y\n"]]))
  end)

  it("keeps raw UTF-8 (multi-byte names) as is", function()
    local name = "Zoë Ångström 日本 😀"
    assert.equal(name, decode('"' .. name .. '"'))
    assert.equal(name, decode('{"name":"' .. name .. '"}').name)
  end)

  it("refuses bad escapes, lone surrogates and control characters", function()
    bad([["\x"]], "invalid escape in string at byte 2")
    bad([["\u12"]], "invalid \\u escape")
    bad([["\u12G4"]], "invalid \\u escape")
    bad([["\ud83d"]], "lone high surrogate")
    bad([["\ud83dx"]], "lone high surrogate")
    bad([["\ud83d\u0041"]], "lone high surrogate")
    bad([["\ude00"]], "lone low surrogate")
    bad('"a\nb"', "control character in string at byte 3")
    bad('"a\tb"', "control character")
    bad('"\0"', "control character")
    bad('"abc', "unterminated string at byte 1")
    bad('"abc\\"', "unterminated string")
    bad('"\\', "unterminated string")
  end)

  it("refuses invalid UTF-8 in strings", function()
    bad('"\255"', "invalid UTF-8 in string at byte 2")
    bad('"\195"', "invalid UTF-8")
    bad('"\192\175"', "invalid UTF-8") -- overlong "/"
    bad('"\224\128\175"', "invalid UTF-8") -- overlong
    bad('"\237\160\128"', "invalid UTF-8") -- encoded surrogate
    bad('"\244\144\128\128"', "invalid UTF-8") -- above U+10FFFF
    bad('"\\n\255"', "invalid UTF-8") -- in the slow (escaped) path too
    bad('{"\255":1}', "invalid UTF-8")
  end)

  it("reports structural errors with a 1-based byte offset", function()
    assert.equal("json_decode: unexpected end of input at byte 1", bad(""))
    assert.equal("json_decode: unexpected end of input at byte 4", bad("   "))
    bad("[1,", "unexpected end of input at byte 4")
    bad("[1 2]", "expected ',' or ']' at byte 4 (found '2')")
    bad('{"a" 1}', "expected ':' at byte 6 (found '1')")
    bad("{1:2}", "expected a string key at byte 2 (found '1')")
    bad('{"a":1,}', "expected a string key at byte 8 (found '}')")
    bad("[1,]", "unexpected character at byte 4 (found ']')")
    bad("[1] x", "trailing garbage at byte 5 (found 'x')")
    bad("[1]\0", "trailing garbage at byte 4 (found byte 0x00)")
    bad("nul", "invalid literal")
    bad("tru", "invalid literal")
    bad("<html>", "unexpected character at byte 1 (found '<')")
    bad("\239\187\191{}", "unexpected character at byte 1 (found byte 0xEF)")
  end)

  it("limits nesting to 1000 levels without crashing", function()
    assert.is_table(decode(("["):rep(1000) .. ("]"):rep(1000)))
    bad(("["):rep(1001) .. ("]"):rep(1001), "nesting deeper than 1000 at byte 1001")
    bad(('{"a":'):rep(1001) .. "1" .. ("}"):rep(1001), "nesting deeper than 1000")
    bad(("["):rep(100000), "nesting deeper than 1000")
  end)

  it("refuses non-string arguments by raising", function()
    assert.matches("json_decode: expected a string, got nil", raises(decode, nil), 1, true)
    assert.matches("json_decode: expected a string, got no value", raises(decode), 1, true)
    assert.matches("json_decode: expected a string, got number", raises(decode, 5), 1, true)
  end)

  it("never reads past the end: every prefix of a valid text fails cleanly", function()
    local text = '{"a":[1,-2.5e3,"x\\u00e9\\ud83d\\ude00y",true,false,null,{"b":{}}],"c":"Zoë"}'
    assert.is_table(decode(text))
    for i = 0, #text - 1 do
      local v, msg = decode(text:sub(1, i))
      if v ~= nil then
        -- only a complete scalar prefix could decode; none exists for this text
        error("prefix " .. i .. " decoded")
      end
      assert.is_string(msg)
    end
  end)

  it("survives random bytes", function()
    math.randomseed(1234)
    local alphabet = '{}[]",:0123456789-+.eEtrufalsn\\u \t\n\r\0\255\195\169xd8'
    for _ = 1, 3000 do
      local parts = {}
      for j = 1, math.random(0, 40) do
        local k = math.random(1, #alphabet)
        parts[j] = alphabet:sub(k, k)
      end
      local s = table.concat(parts)
      local ok, v, msg = pcall(decode, s)
      assert.is_true(ok)
      if v == nil then assert.is_string(msg) end
    end
  end)
end)

describe("core.json_encode", function()
  it("encodes scalars", function()
    assert.equal("null", encode(nil))
    assert.equal("null", encode())
    assert.equal("null", encode(null))
    assert.equal("true", encode(true))
    assert.equal("false", encode(false))
    assert.equal("0", encode(0))
    assert.equal("-17", encode(-17))
    assert.equal(compat.has_integers and "9223372036854775807" or "9007199254740992", encode(compat.maxinteger))
    assert.equal(compat.has_integers and "-9223372036854775808" or "-9007199254740992", encode(compat.mininteger))
    assert.equal('"x"', encode("x"))
  end)

  it("writes floats in their shortest round-trip form, integral ones with .0", function()
    assert.equal("0.1", encode(0.1))
    assert.equal("1.5", encode(1.5))
    assert.equal("-2.25", encode(-2.25))
    -- 5.1/LuaJIT cannot tell 5000.0 from 5000: an integral double within 2^53 prints as an integer
    local dot0 = compat.has_integers and ".0" or ""
    assert.equal("5000" .. dot0, encode(5000.0))
    assert.equal("0" .. dot0, encode(0.0))
    assert.equal(compat.has_integers and "-0.0" or "0", encode(-0.0))
    assert.equal("0.3333333333333333", encode(1 / 3))
    assert.equal("1e+300", encode(1e300))
    assert.equal("1e-07", encode(1e-7))
    assert.equal("9007199254740992" .. dot0, encode(2.0^53))
    assert.equal("1.7976931348623157e+308", encode(1.7976931348623157e308))
    -- 15 significant digits already read back as the same denormal
    assert.equal("4.94065645841247e-324", encode(5e-324))
  end)

  it("round-trips floats bit for bit and keeps their type", function()
    math.randomseed(42)
    for _ = 1, 2000 do
      local x = (math.random() - 0.5) * 10 ^ math.random(-300, 300)
      local y = decode(encode(x))
      assert.equal(x, y)
      if compat.has_integers or x ~= math.floor(x) then assert.equal("float", compat.math_type(y)) end
    end
    for _, x in ipairs { 5000.0, -0.0, 1e15, 1e16, 1e17, 123456789012345680000.0 } do
      local y = decode(encode(x))
      assert.equal(x, y)
      if compat.has_integers then assert.equal("float", compat.math_type(y)) end
    end
  end)

  it("raises on NaN and infinities", function()
    assert.matches("json_encode: cannot encode NaN or infinity", raises(encode, 0 / 0), 1, true)
    assert.matches("json_encode: cannot encode NaN or infinity", raises(encode, math.huge), 1, true)
    assert.matches("at .x[2]", raises(encode, { x = { 1, -math.huge } }), 1, true)
  end)

  it("escapes quotes, backslashes and control characters, keeps UTF-8 and slashes", function()
    assert.equal([["a\"b\\c/d"]], encode('a"b\\c/d'))
    assert.equal([["\n\r\t\b\f"]], encode("\n\r\t\b\f"))
    assert.equal([["\u0000\u0001\u001f"]], encode("\0\1\31"))
    assert.equal('"\127"', encode("\127"))
    assert.equal('"Zoë Ångström 日本 😀"', encode("Zoë Ångström 日本 😀"))
  end)

  it("raises on invalid UTF-8, naming the place", function()
    assert.equal("json_encode: invalid UTF-8 in string", raises(encode, "\255"))
    assert.matches("json_encode: invalid UTF-8 in string at .person.name", raises(encode, { person = { name = "a\195" } }),
      1, true)
    assert.matches("invalid UTF-8", raises(encode, "\237\160\128"), 1, true)
    assert.matches('invalid UTF-8 in string at ["?"]', raises(encode, { a = 1, ["\255"] = 2 }), 1, true)
  end)

  it("encodes sequences as arrays and string-keyed tables as objects", function()
    assert.equal("[1,2,3]", encode({ 1, 2, 3 }))
    assert.equal('[1,"a",true,null]', encode({ 1, "a", true, null }))
    assert.equal('{"a":1}', encode({ a = 1 }))
    assert.equal('{"a":[1,{"b":[]}]}', encode({ a = { 1, { b = array() } } }))
  end)

  it("encodes empty tables as {} and marked ones as []", function()
    assert.equal("{}", encode({}))
    assert.equal("[]", encode(array()))
    assert.equal("[]", encode(setmetatable({}, { __jsontype = "array" })))
    assert.equal("{}", encode(setmetatable({}, { __jsontype = "object" })))
    assert.equal("[1,2]", encode(array { 1, 2 }))
  end)

  it("re-encodes a decoded empty array as [] and an empty object as {}", function()
    assert.equal('{"a":[],"b":{}}', encode(decode('{"a":[],"b":{}}')))
    assert.equal("[]", encode(decode("[]")))
  end)

  it("sorts object keys bytewise, so output is deterministic", function()
    local t = {}
    for _, k in ipairs { "zeta", "alpha", "Beta", "a", "aa", "_x", "10", "9", "é", "z" } do t[k] = 1 end
    assert.equal('{"10":1,"9":1,"Beta":1,"_x":1,"a":1,"aa":1,"alpha":1,"z":1,"zeta":1,"é":1}', encode(t))
    local big = {}
    for i = 1, 200 do big["k" .. i] = i end
    assert.equal(encode(big), encode(decode(encode(big))))
  end)

  it("refuses tables that are neither arrays nor string-keyed objects", function()
    assert.matches("json_encode: object key must be a string, got number", raises(encode, { 1, 2, x = 3 }), 1, true)
    assert.matches("json_encode: object key must be a string, got boolean", raises(encode, { [true] = 1 }), 1, true)
    assert.matches("json_encode: array with holes: 2 keys, the largest 3", raises(encode, { [1] = 1, [3] = 3 }), 1, true)
    assert.matches("object key must be a string, got number", raises(encode, { [1.5] = 1 }), 1, true)
    assert.matches("object key must be a string, got number", raises(encode, { [0] = 1 }), 1, true)
    assert.matches("json_encode: a table marked as array must have only the keys 1..n",
      raises(encode, array { 1, x = 2 }), 1, true)
    local msg = raises(encode, { o = setmetatable({ 1 }, { __jsontype = "object" }) })
    assert.matches("object key must be a string, got number", msg, 1, true)
    assert.equal(" at .o", msg:sub(-6))
  end)

  it("raises on values JSON cannot hold, with the path", function()
    assert.equal("json_encode: cannot encode function", raises(encode, print))
    assert.equal("json_encode: cannot encode function at .person.email[2]",
      raises(encode, { person = { email = { "a", print } } }))
    assert.equal("json_encode: cannot encode userdata at [1]", raises(encode, { io.stdout }))
    assert.equal("json_encode: cannot encode thread at .co", raises(encode, { co = coroutine.create(function() end) }))
    assert.equal('json_encode: cannot encode function at ["a b"]', raises(encode, { ["a b"] = print }))
  end)

  it("raises on cycles and on nesting deeper than 1000", function()
    local t = {}
    t.self = t
    assert.equal("json_encode: cycle: a table contains itself at .self", raises(encode, t))
    local a = {}
    a[1] = { { a } }
    assert.matches("cycle", raises(encode, a), 1, true)
    local deep = {}
    local cur = deep
    for _ = 1, 999 do
      cur[1] = {}
      cur = cur[1]
    end
    assert.equal(("["):rep(999) .. "{}" .. ("]"):rep(999), encode(deep))
    cur[1] = {}
    assert.matches("json_encode: nesting deeper than 1000", raises(encode, deep), 1, true)
  end)

  it("raises messages that start with the function name, without a position", function()
    local ok, msg = pcall(function()
      local s = encode({ f = print })
      return s
    end)
    assert.is_false(ok)
    assert.equal("json_encode: cannot encode function at .f", msg)
    ok, msg = pcall(function()
      local v = decode(5)
      return v
    end)
    assert.is_false(ok)
    assert.equal("json_decode: expected a string, got number", msg)
  end)

  it("encodes the same table twice when it is shared but not cyclic", function()
    local shared = { 1 }
    assert.equal('{"a":[1],"b":[1]}', encode({ a = shared, b = shared }))
  end)

  it("does not run metamethods", function()
    local t = setmetatable({ a = 1 }, { __index = function() error("no") end, __pairs = function() error("no") end })
    assert.equal('{"a":1}', encode(t))
  end)

  it("round-trips a Pipedrive-like document", function()
    -- beyond 2^53 only with integers (5.3+); 5.1/LuaJIT keep ids up to 2^53 exact
    local id = compat.has_integers and "9007199254740993" or "9007199254740991"
    local text = '{"additional_data":{"next_cursor":null},"data":[{"custom_fields":{},"id":' .. id .. ',' ..
      '"label_ids":[],"name":"Zoë Ångström 日本","value":1234.5}],"success":true}'
    local v = decode(text)
    assert.equal(text, encode(v))
    assert.equal(tonumber(id), v.data[1].id)
  end)
end)
