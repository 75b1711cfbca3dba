-- Unit specs of spec/support/openapi.lua: the JSON decoding (core.json_decode, objects marked), the schema validator
-- (shown to fail on each kind of wrong value, not only to pass) and the lookups in
-- Pipedrive's OpenAPI files. No sandbox needed.
local compat = require "pipedrive.compat"
local oa = require "support.openapi"

local function arr(t) return setmetatable(t or {}, oa.array_mt) end
local function obj(t) return setmetatable(t or {}, oa.object_mt) end

-- Validates and returns the problem list (empty when valid).
local function problems(schema, value, spec, opts)
  local ok, list, allowed = oa.validate(schema, value, spec, opts)
  assert.equal(ok, #list == 0)
  return list, allowed
end

local function has(list, text)
  for _, p in ipairs(list) do
    if p == text then return true end
  end
  return false, ("%q not among:\n  %s"):format(text, table.concat(list, "\n  "))
end

local function assert_has(list, text)
  assert(has(list, text))
end

describe("openapi.json_decode", function()
  -- Lua 5.1/LuaJIT have only doubles: 1.0 and 1 are the same value there.
  local it_int = compat.has_integers and it or pending
  it_int("keeps integers (no fraction, no exponent) apart from floats", function()
    local v = assert(oa.json_decode('{"a":1,"b":1.0,"c":1e2,"d":-0,"e":9223372036854775807,"f":-12.5e-1,"g":0}'))
    assert.equal("integer", compat.math_type(v.a))
    assert.equal("float", compat.math_type(v.b))
    assert.equal("float", compat.math_type(v.c))
    assert.equal(100.0, v.c)
    assert.equal("integer", compat.math_type(v.d))
    assert.equal(compat.maxinteger, v.e)
    assert.equal(-1.25, v.f)
    assert.equal(0, v.g)
  end)

  it("turns an integer literal beyond 64 bits into a float rather than wrapping", function()
    local v = assert(oa.json_decode("[9223372036854775808]"))
    assert.equal("float", compat.math_type(v[1]))
    assert.is_true(v[1] > 0)
  end)

  it("marks arrays and objects, also when empty, and decodes null as oa.null", function()
    local v = assert(oa.json_decode('{"a":[],"b":{},"c":null,"d":[null,1]}'))
    assert.equal(oa.object_mt, getmetatable(v))
    assert.equal(oa.array_mt, getmetatable(v.a))
    assert.equal(oa.object_mt, getmetatable(v.b))
    assert.equal(oa.null, v.c)
    assert.equal(2, #v.d)
    assert.equal("array", oa.kind(v.a))
    assert.equal("object", oa.kind(v.b))
    assert.equal("null", oa.kind(v.c))
  end)

  it("decodes escapes, including \\u surrogate pairs, to UTF-8", function()
    local v = assert(oa.json_decode([["a\"b\\c\/d\n\t\u00e9\ud83d\ude00"]]))
    assert.equal('a"b\\c/d\n\t\195\169\240\159\152\128', v)
  end)

  it("skips whitespace and reads literals", function()
    local v = assert(oa.json_decode(' \n{ "t" : true , "f" : false }\r\n'))
    assert.is_true(v.t)
    assert.is_false(v.f)
  end)

  for _, case in ipairs{
    { "[1,]", "unexpected character" },
    { "01", "leading zero" },
    { '"abc', "unterminated string" },
    { '"a\1b"', "control character" },
    { "{} x", "trailing garbage" },
    { '{"a" 1}', "expected ':'" },
    { '{a:1}', "expected a string key" },
    { '"\\ud800"', "lone high surrogate" },
    { '"\\q"', "invalid escape" },
    { "", "unexpected end" },
    { string.rep("[", 1100) .. string.rep("]", 1100), "nesting deeper than 1000" },
  } do
    it("refuses malformed text: " .. case[2], function()
      local v, err = oa.json_decode(case[1])
      assert.is_nil(v)
      assert.matches(case[2], err, 1, true)
    end)
  end
end)

describe("openapi.validate", function()
  it("accepts a value matching every kind of type", function()
    local schema = {
      type = "object",
      properties = {
        i = { type = "integer" }, n = { type = "number" }, f = { type = "number" },
        s = { type = "string" }, b = { type = "boolean" },
        a = { type = "array", items = { type = "integer" } }, o = { type = "object" },
      },
    }
    local list = problems(schema, obj{ i = 1, n = 2, f = 2.5, s = "x", b = false, a = arr{ 1, 2 }, o = obj{} })
    assert.same({}, list)
  end)

  it("reports wrong types with the JSON path, the expected and the actual type", function()
    local schema = {
      type = "object",
      properties = {
        data = { type = "array", items = {
          type = "object",
          properties = { owner_id = { type = "integer" }, title = { type = "string" }, active = { type = "boolean" } },
        } },
      },
    }
    local value = assert(oa.json_decode(
      '{"data":[{"owner_id":1},{"owner_id":2},{"owner_id":3},{"owner_id":"12","title":5,"active":"yes"}]}'))
    local list = problems(schema, value)
    assert.equal(3, #list)
    assert_has(list, '$.data[3].owner_id: expected integer, got string "12"')
    assert_has(list, "$.data[3].title: expected string, got integer 5")
    assert_has(list, '$.data[3].active: expected boolean, got string "yes"')
  end)

  local it_int = compat.has_integers and it or pending -- 5.1/LuaJIT: 7.0 is 7
  it_int("refuses a float where an integer is required, but takes an integer as a number", function()
    local int = { type = "integer" }
    assert_has(problems(int, assert(oa.json_decode("7.0"))), "$: expected integer, got number 7.0")
    assert_has(problems(int, 7.5), "$: expected integer, got number 7.5")
    assert.same({}, problems(int, assert(oa.json_decode("7"))))
    assert.same({}, problems({ type = "number" }, 7))
  end)

  it("tells arrays from objects", function()
    assert_has(problems({ type = "array" }, obj{ a = 1 }), "$: expected array, got object")
    assert_has(problems({ type = "object" }, arr{ 1 }), "$: expected object, got array")
    assert_has(problems({ type = "object" }, assert(oa.json_decode("[]"))), "$: expected object, got array")
    -- a hand-made {} can be either
    assert.same({}, problems({ type = "array" }, {}))
    assert.same({}, problems({ type = "object" }, {}))
  end)

  it("reports wrong array item types at each index", function()
    local schema = { type = "array", items = { type = "integer" } }
    local list = problems(schema, assert(oa.json_decode('[1, "2", 3, 4.5]')))
    assert.same({ '$[1]: expected integer, got string "2"', "$[3]: expected integer, got number 4.5" }, list)
  end)

  it("reports missing required properties, and not present-but-null ones as missing", function()
    local schema = {
      type = "object", required = { "amount", "currency" },
      properties = { amount = { type = "number" }, currency = { type = "string", nullable = true } },
    }
    assert.same({ "$.currency: required property missing" }, problems(schema, obj{ amount = 5 }))
    assert.same({}, problems(schema, obj{ amount = 5, currency = oa.null }))
  end)

  it("reports values outside an enum", function()
    local schema = { type = "string", enum = { "1", "3", "5", "7" } }
    assert.same({}, problems(schema, "3"))
    assert.same({ '$: expected one of "1", "3", "5", "7", got string "2"' }, problems(schema, "2"))
    assert.same({ "$: expected string, got integer 3" }, problems(schema, 3))
  end)

  it("refuses null unless the schema is nullable", function()
    local schema = {
      type = "object",
      properties = {
        person_id = { type = "integer" },
        org_id = { type = "integer", nullable = true },
        value = { type = "object", nullable = true, properties = { amount = { type = "number" } } },
        anything = {},
      },
    }
    assert.same({}, problems(schema, obj{ org_id = oa.null, value = oa.null, anything = oa.null }))
    assert.same({ "$.person_id: expected integer, got null (not nullable)" }, problems(schema, obj{ person_id = oa.null }))
    assert_has(problems({ type = "object" }, oa.null), "$: expected object, got null (not nullable)")
  end)

  it("treats cjson.null and lyaml.null as null too", function()
    local cjson = require "cjson"
    local lyaml = require "lyaml"
    assert.same({}, problems({ type = "string", nullable = true }, cjson.null))
    assert.same({}, problems({ type = "string", nullable = true }, lyaml.null))
    assert_has(problems({ type = "string" }, cjson.null), "$: expected string, got null (not nullable)")
  end)

  it("checks date, date-time and uuid formats loosely, and can ignore them", function()
    local schema = {
      type = "object",
      properties = {
        d = { type = "string", format = "date" }, t = { type = "string", format = "date-time" },
        u = { type = "string", format = "uuid" }, e = { type = "string", format = "email" },
      },
    }
    local good = obj{ d = "2024-01-31", t = "2024-01-31T10:00:00.123Z", u = "adf21080-0e10-11eb-879b-05d71fb426ec", e = "?" }
    assert.same({}, problems(schema, good))
    assert.same({}, problems(schema, obj{ t = "2024-01-31 10:00:00" }))
    local list = problems(schema, obj{ d = "31.01.2024", t = "yesterday", u = "42" })
    assert.equal(3, #list)
    assert_has(list, '$.d: expected format date, got string "31.01.2024"')
    assert_has(list, '$.u: expected format uuid, got string "42"')
    assert.same({}, problems(schema, obj{ d = "31.01.2024" }, nil, { formats = false }))
  end)

  it("checks minimum, maximum and lengths", function()
    assert_has(problems({ type = "integer", minimum = 1 }, 0), "$: expected a value >= 1, got 0")
    assert_has(problems({ type = "integer", maximum = 500 }, 501), "$: expected a value <= 500, got 501")
    assert_has(problems({ type = "string", maxLength = 3 }, "abcd"), "$: expected at most 3 characters, got 4")
    assert_has(problems({ type = "array", minItems = 1 }, arr{}), "$: expected at least 1 items, got 0")
  end)

  it("takes a schema without type but with properties as an object", function()
    local schema = { properties = { id = { type = "integer" } } }
    assert_has(problems(schema, "x"), '$: expected object, got string "x"')
    assert_has(problems(schema, obj{ id = "1" }), '$.id: expected integer, got string "1"')
  end)

  it("allows undeclared properties unless additionalProperties is false or undeclared = 'problem'", function()
    local schema = { type = "object", properties = { id = { type = "integer" } } }
    local unknown = {}
    assert.same({}, problems(schema, obj{ id = 1, extra = true }, nil, { unknown = unknown }))
    assert.is_true(unknown["$.extra"])
    local closed = { type = "object", properties = { id = { type = "integer" } }, additionalProperties = false }
    assert.same({ "$.extra: unexpected property (additionalProperties is false)" }, problems(closed, obj{ id = 1, extra = 1 }))
    assert.same({ "$.extra: property not in the schema" },
      problems(schema, obj{ id = 1, extra = 1 }, nil, { undeclared = "problem" }))
    -- free-form objects stay free-form
    assert.same({}, problems({ type = "object" }, obj{ x = 1 }, nil, { undeclared = "problem" }))
    assert.same({}, problems({ type = "object", properties = { a = {} }, additionalProperties = true },
      obj{ x = 1 }, nil, { undeclared = "problem" }))
  end)

  it("validates additionalProperties given as a schema", function()
    local schema = { type = "object", additionalProperties = { type = "integer" } }
    assert.same({ '$.b: expected integer, got string "2"' }, problems(schema, obj{ a = 1, b = "2" }))
  end)

  it("collects declared properties left out when asked", function()
    local absent = {}
    problems({ type = "object", properties = { a = {}, b = {} } }, obj{ a = 1 }, nil, { absent = absent })
    assert.same({ ["$.b"] = true }, absent)
  end)

  it("merges allOf branches: properties, required lists and additionalProperties together", function()
    local schema = {
      allOf = {
        { type = "object", required = { "id" }, properties = { id = { type = "integer" } } },
        { type = "object", required = { "name" }, properties = { name = { type = "string" } },
          additionalProperties = false },
      },
    }
    assert.same({}, problems(schema, obj{ id = 1, name = "x" }))
    local list = problems(schema, obj{ id = "1", other = 2 })
    assert.same({
      '$.id: expected integer, got string "1"',
      "$.name: required property missing",
      "$.other: unexpected property (additionalProperties is false)",
    }, list)
  end)

  it("applies every branch's rules to a property declared in several allOf branches", function()
    local schema = {
      allOf = {
        { type = "object", properties = { visible_to = { type = "string" } } },
        { type = "object", properties = { visible_to = { allOf = { { type = "string", enum = { "1", "3" } } } } } },
      },
    }
    assert.same({}, problems(schema, obj{ visible_to = "3" }))
    assert_has(problems(schema, obj{ visible_to = "2" }), '$.visible_to: expected one of "1", "3", got string "2"')
    assert_has(problems(schema, obj{ visible_to = 3 }), "$.visible_to: expected string, got integer 3")
  end)

  it("lets nullable next to allOf make the whole schema nullable, not otherwise", function()
    local inner = { type = "object", properties = { id = { type = "integer" } } }
    assert.same({}, problems({ nullable = true, allOf = { inner } }, oa.null))
    assert_has(problems({ allOf = { inner } }, oa.null), "$: expected object, got null (not nullable)")
  end)

  it("accepts oneOf/anyOf when at least one alternative matches, and explains when none does", function()
    local schema = {
      type = "object",
      properties = {
        email = { oneOf = { { type = "string" }, { type = "array", items = { type = "object",
          properties = { value = { type = "string" } } } } } },
        id = { anyOf = { { type = "integer" }, { type = "string", format = "uuid" } } },
      },
    }
    assert.same({}, problems(schema, obj{ email = "a@b", id = 5 }))
    assert.same({}, problems(schema, obj{ email = arr{ obj{ value = "a@b" } }, id = "adf21080-0e10-11eb-879b-05d71fb426ec" }))
    local list = problems(schema, obj{ email = arr{ obj{ value = 1 } }, id = true })
    assert.equal(2, #list)
    assert_has(list, "$.email: matches none of the 2 oneOf alternatives; nearest is #2: "
      .. "$.email[0].value: expected string, got integer 1")
    assert.matches("^%$%.id: matches none of the 2 anyOf alternatives", list[2])
    assert.same({}, problems({ oneOf = { { type = "integer" }, { type = "string", nullable = true } } }, oa.null))
    assert_has(problems({ oneOf = { { type = "integer" }, { type = "string" } } }, oa.null),
      "$: expected a value, got null (not nullable)")
  end)

  it("treats UPPER_SNAKE property names as placeholders for map keys", function()
    local schema = {
      type = "object",
      properties = { user = { type = "object", properties = {
        USER_ID = { type = "object", properties = { id = { type = "integer" }, has_pic = { type = "integer" } } },
      } } },
    }
    local value = assert(oa.json_decode('{"user":{"123":{"id":123,"has_pic":0},"9":{"id":"9","has_pic":0}}}'))
    assert.same({ '$.user.9.id: expected integer, got string "9"' }, problems(schema, value))
  end)

  it("compares YAML's numeric property keys as strings", function()
    local schema = { type = "object", properties = { [128] = { type = "string" } } }
    assert.same({ "$.128: expected string, got integer 1" }, problems(schema, obj{ ["128"] = 1 }))
  end)

  it("raises when given no schema, rather than passing everything", function()
    assert.has_error(function() oa.validate(nil, 1) end, "oa.validate: the schema must be a table, got nil")
  end)

  it("shows long and multi-line strings shortened, on one line", function()
    local list = problems({ type = "integer" }, "line one\nline two, and then a good deal more text")
    assert.same({ '$: expected integer, got string "line one\\nline two, and then a good de..."' }, list)
  end)

  it("quotes keys that are not plain names in paths", function()
    local schema = { type = "object", additionalProperties = { type = "integer" } }
    assert.same({ '$["a b"]: expected integer, got boolean true' }, problems(schema, obj{ ["a b"] = true }))
  end)

  describe("$ref", function()
    local spec = {
      components = { schemas = {
        User = { type = "object", properties = { id = { type = "integer" }, boss = { ["$ref"] = "#/components/schemas/User" } } },
        Alias = { ["$ref"] = "#/components/schemas/User" },
        Loop1 = { ["$ref"] = "#/components/schemas/Loop2" },
        Loop2 = { ["$ref"] = "#/components/schemas/Loop1" },
        SelfAll = { type = "object", allOf = { { ["$ref"] = "#/components/schemas/SelfAll" } },
          properties = { n = { type = "integer" } } },
        SelfAny = { anyOf = { { ["$ref"] = "#/components/schemas/SelfAny" }, { type = "integer" } } },
        ["a/b"] = { type = "string" },
      } },
    }

    it("resolves references, also chains and recursive data, lazily", function()
      local value = obj{ id = 1, boss = obj{ id = 2, boss = obj{ id = "3" } } }
      assert.same({ '$.boss.boss.id: expected integer, got string "3"' },
        problems({ ["$ref"] = "#/components/schemas/Alias" }, value, spec))
      assert.same({}, problems({ ["$ref"] = "#/components/schemas/a~1b" }, "x", spec))
    end)

    it("stops at reference cycles and allOf loops instead of recursing forever", function()
      local list = problems({ ["$ref"] = "#/components/schemas/Loop1" }, 1, spec)
      assert.equal(1, #list)
      assert.matches("^%$: schema error: %$ref cycle through", list[1])
      assert.same({}, problems({ ["$ref"] = "#/components/schemas/SelfAll" }, obj{ n = 1 }, spec))
      assert.same({ '$.n: expected integer, got string "1"' },
        problems({ ["$ref"] = "#/components/schemas/SelfAll" }, obj{ n = "1" }, spec))
      assert.same({}, problems({ ["$ref"] = "#/components/schemas/SelfAny" }, 3, spec))
    end)

    it("reports references it cannot follow", function()
      assert.same({ "$: schema error: unresolved $ref #/components/schemas/Nope" },
        problems({ ["$ref"] = "#/components/schemas/Nope" }, 1, spec))
      assert.same({ "$: schema error: unsupported $ref other.yaml#/X" }, problems({ ["$ref"] = "other.yaml#/X" }, 1, spec))
    end)
  end)

  describe("allow-lists and examples", function()
    local schema = {
      type = "object",
      properties = {
        data = { type = "array", items = { type = "object", properties = {
          won_time = { type = "string" }, person = { type = "object", properties = { id = { type = "integer" } } },
        } } },
        related = { type = "object", properties = { user = { type = "object", properties = {
          USER_ID = { type = "object", properties = { has_pic = { type = "integer" } } },
        } } } },
      },
    }
    local value = assert(oa.json_decode(
      '{"data":[{"won_time":null,"person":{"id":"1"}}],"related":{"user":{"5":{"has_pic":false}}}}'))

    it("moves allowed problems to the third result, with the reason", function()
      local ok, list, allowed = oa.validate(schema, value, nil, { allow = {
        ["$.data[].won_time"] = "open deals have no won time",
        ["$.related.user.*"] = "integer per schema, boolean per example",
      } })
      assert.is_false(ok)
      assert.same({ '$.data[0].person.id: expected integer, got string "1"' }, list)
      assert.same({
        "$.data[0].won_time: expected string, got null (not nullable) (allowed: open deals have no won time)",
        "$.related.user.5.has_pic: expected integer, got boolean false (allowed: integer per schema, boolean per example)",
      }, allowed)
    end)

    it("does not let an allow key match a longer name", function()
      local ok = oa.validate({ type = "object", properties = { ab = { type = "integer" } } }, obj{ ab = "x" }, nil,
        { allow = { ["$.a"] = "no" } })
      assert.is_false(ok)
    end)

    it("takes an allow function too", function()
      local ok, _, allowed = oa.validate({ type = "integer" }, "x", nil, { allow = function(path, msg)
        return path == "$" and msg:match("got string") and "test"
      end })
      assert.is_true(ok)
      assert.equal(1, #allowed)
    end)

    it("waives a type the official example itself shows at that place, and only that type", function()
      local example = { data = { { won_time = require("lyaml").null } }, related = { user = { ["8877"] = { has_pic = false } } } }
      local ok, list, allowed = oa.validate(schema, value, nil, { example = example })
      assert.is_false(ok)
      assert.same({ '$.data[0].person.id: expected integer, got string "1"' }, list)
      assert.equal(2, #allowed)
      assert.matches("the file's own example has a null here", allowed[1], 1, true)
      assert.matches("the file's own example has a boolean here", allowed[2], 1, true)
      local wrong = assert(oa.json_decode('{"data":[{"won_time":5}]}'))
      assert.is_false((oa.validate(schema, wrong, nil, { example = example })))
    end)

    it("accepts an undeclared property the official example has, when undeclared = 'problem'", function()
      local s = { type = "object", properties = { related = { type = "object", properties = { user = { type = "object" } } } } }
      local v = assert(oa.json_decode('{"related":{"user":{},"stage":{"1":{}},"pipeline":{}}}'))
      local example = { related = { user = {}, stage = { ["2"] = { id = 2 } } } }
      local ok, list, allowed = oa.validate(s, v, nil, { undeclared = "problem", example = example })
      assert.is_false(ok)
      assert.same({ "$.related.pipeline: property not in the schema" }, list)
      assert.same({ "$.related.stage: property not in the schema (allowed: the file's own example has it)" }, allowed)
    end)

    it("exposes the allow matcher, which names the entry that matched", function()
      local match = oa.allow_matcher{ ["$.a[].b"] = "why", ["$.c.*.d"] = "other" }
      assert.same({ "why", "$.a[].b" }, { match("$.a[12].b.x") })
      assert.same({ "other", "$.c.*.d" }, { match("$.c.77.d") })
      assert.is_nil(match("$.a[1].bb"))
      assert.is_nil(match("$.c.d"))
    end)

    it("normalizes paths: indexes to [] and numeric map keys to *", function()
      assert.equal("$.data[].x", oa.normalize_path("$.data[3].x"))
      assert.equal("$.related_objects.user.*.has_pic", oa.normalize_path("$.related_objects.user.123.has_pic"))
      assert.equal("$.a.1x", oa.normalize_path("$.a.1x"))
    end)

    it("caps the number of problems listed", function()
      local _, list = oa.validate({ type = "array", items = { type = "string" } }, arr{ 1, 2, 3, 4, 5 }, nil, { max = 2 })
      assert.equal(3, #list)
      assert.equal("... more problems left out", list[3])
    end)
  end)
end)

describe("Pipedrive's OpenAPI files", function()
  local v2, v1, old

  setup(function()
    v2, v1, old = oa.load("openapi-v2.yaml"), oa.load("openapi-v1.yaml"), oa.load("openapi-v1-2026-01-14.yaml")
  end)

  it("are found in the repository's openapi/ (or in $PIPEDRIVE_OPENAPI_DIR) and parsed once", function()
    local env = os.getenv("PIPEDRIVE_OPENAPI_DIR")
    if not env or env == "" then assert.matches("/openapi$", oa.dir()) end
    assert.equal(v2, oa.load("v2"))
    assert.equal(old, oa.load("v1-old"))
    assert.equal("3.0.1", v2.openapi)
    assert.equal("openapi-v1.yaml", oa.name(v1))
  end)

  it("document a JSON success schema for every endpoint the sandbox serves", function()
    local want = {
      { v2, "/deals", "get", 200 }, { v2, "/deals", "post", 200 }, { v2, "/deals/{id}", "get", 200 },
      { v2, "/deals/{id}", "delete", 200 }, { v2, "/deals/search", "get", 200 },
      { v2, "/persons", "get", 200 }, { v2, "/persons", "post", 200 }, { v2, "/persons/{id}", "get", 200 },
      { v2, "/persons/{id}", "delete", 200 }, { v2, "/persons/search", "get", 200 },
      { v2, "/organizations", "get", 200 }, { v2, "/organizations", "post", 200 },
      { v2, "/organizations/{id}", "get", 200 }, { v2, "/organizations/{id}", "delete", 200 },
      { v2, "/organizations/search", "get", 200 }, { v2, "/leads/search", "get", 200 },
      { v2, "/stages", "get", 200 }, { v2, "/pipelines", "get", 200 },
      { old, "/deals", "get", 200 }, { old, "/deals", "post", 201 }, { old, "/deals/{id}", "get", 200 },
      { old, "/deals/{id}", "delete", 200 }, { old, "/deals/search", "get", 200 },
      { old, "/persons", "get", 200 }, { old, "/persons", "post", 201 }, { old, "/persons/{id}", "get", 200 },
      { old, "/persons/{id}", "delete", 200 }, { old, "/persons/search", "get", 200 },
      { old, "/organizations", "get", 200 }, { old, "/organizations", "post", 201 },
      { old, "/organizations/{id}", "get", 200 }, { old, "/organizations/{id}", "delete", 200 },
      { old, "/organizations/search", "get", 200 }, { old, "/stages", "get", 200 }, { old, "/pipelines", "get", 200 },
      { v1, "/leads", "get", 200 }, { v1, "/leads", "post", 201 }, { v1, "/leads/{id}", "get", 200 },
      { v1, "/leads/{id}", "get", 404 }, { v1, "/leads/{id}", "delete", 200 }, { v1, "/leads/{id}", "delete", 404 },
      { v1, "/leads/search", "get", 200 }, { v1, "/users", "get", 200 }, { v1, "/filters", "get", 200 },
      { v1, "/leadLabels", "get", 200 }, { v1, "/currencies", "get", 200 },
      { v1, "/users/me", "get", 401 }, { v1, "/users/{id}", "get", 404 },
    }
    for _, w in ipairs(want) do
      local schema, err = oa.response_schema(w[1], w[2], w[3], w[4])
      assert(schema, err)
      assert.equal("table", type(schema))
    end
  end)

  it("say so when a response is not documented", function()
    local schema, err = oa.response_schema(v2, "/deals", "get", 404)
    assert.is_nil(schema)
    assert.equal("openapi-v2.yaml documents no 404 response for GET /deals (it has: 200)", err)
    assert.is_nil(oa.response_schema(v1, "/deals", "get", 200)) -- dropped from the current v1 file
    local _, err2 = oa.response_schema(v2, "/nope", "get", 200)
    assert.equal("openapi-v2.yaml documents no path /nope", err2)
  end)

  it("have examples that pass, except where the file contradicts itself (has_pic)", function()
    for _, w in ipairs{
      { v2, "/deals", "get", 200 }, { v2, "/persons", "get", 200 }, { v2, "/organizations/{id}", "get", 200 },
      { v2, "/deals/search", "get", 200 }, { v2, "/stages", "get", 200 }, { v2, "/pipelines", "get", 200 },
      { v1, "/leads", "get", 200 }, { v1, "/leads/{id}", "get", 404 }, { v1, "/users", "get", 200 },
      { v1, "/filters", "get", 200 }, { v1, "/leadLabels", "get", 200 }, { v1, "/currencies", "get", 200 },
      { old, "/persons", "get", 200 }, { old, "/organizations", "get", 200 }, { old, "/stages", "get", 200 },
      { old, "/pipelines", "get", 200 }, { old, "/persons/search", "get", 200 },
    } do
      local schema, example = assert(oa.response_schema(w[1], w[2], w[3], w[4]))
      local ok, list = oa.validate(schema, oa.from_yaml(example), w[1])
      assert(ok, w[2] .. ": " .. table.concat(list, "\n"))
    end
    local schema, example = oa.response_schema(old, "/deals", "get", 200)
    local _, list = oa.validate(schema, oa.from_yaml(example), old)
    assert.same({ "$.related_objects.user.8877.has_pic: expected integer, got boolean false" }, list)
    assert.is_true((oa.validate(schema, oa.from_yaml(example), old, { example = example })))
  end)

  it("can be walked whole: every response example in the three files validates without a schema error", function()
    for _, spec in ipairs{ v2, v1, old } do
      local checked = 0
      for path, item in pairs(spec.paths) do
        for method, op in pairs(item) do
          if type(op) == "table" and type(op.responses) == "table" then
            for status in pairs(op.responses) do
              local schema, example = oa.response_schema(spec, path, method, status)
              if schema and example ~= nil then
                checked = checked + 1
                local _, list = oa.validate(schema, oa.from_yaml(example), spec)
                for _, p in ipairs(list) do
                  assert.is_nil(p:find("schema error", 1, true), ("%s %s %s: %s"):format(method, path, status, p))
                end
              end
            end
          end
        end
      end
      assert.is_true(checked > 150, oa.name(spec) .. ": only " .. checked .. " examples")
    end
  end)

  describe("catch hand-made wrong responses", function()
    local function v2_deal(over)
      local d = obj{
        id = 1, title = "Deal", owner_id = 1, person_id = 2, org_id = 3, pipeline_id = 1, stage_id = 1,
        value = 1500, currency = "EUR", status = "open", is_deleted = false, is_archived = false,
        add_time = "2026-01-01T00:00:00Z", update_time = "2026-01-01T00:00:00Z", visible_to = 3,
        label_ids = arr{}, custom_fields = obj{}, probability = oa.null, lost_reason = oa.null,
        close_time = oa.null, expected_close_date = "2026-02-01",
      }
      for k, v in pairs(over or {}) do d[k] = v end
      return d
    end

    it("a v2 deal list", function()
      local schema = oa.response_schema(v2, "/deals", "get", 200)
      local good = obj{ success = true, data = arr{ v2_deal(), v2_deal{ id = 2, value = 99.5 } },
        additional_data = obj{ next_cursor = "abc" } }
      assert.same({}, problems(schema, good, v2))
      local bad = obj{ success = "true", data = arr{ v2_deal(), v2_deal{ owner_id = "1", label_ids = arr{ "x" },
        person_id = oa.null, value = "1500" } }, additional_data = obj{ next_cursor = 5 } }
      assert.same({
        "$.additional_data.next_cursor: expected string, got integer 5",
        '$.data[1].label_ids[0]: expected integer, got string "x"',
        '$.data[1].owner_id: expected integer, got string "1"',
        "$.data[1].person_id: expected integer, got null (not nullable)",
        '$.data[1].value: expected number, got string "1500"',
        '$.success: expected boolean, got string "true"',
      }, problems(schema, bad, v2))
    end)

    it("a v1 lead", function()
      local schema = oa.response_schema(v1, "/leads/{id}", "get", 200)
      local lead = obj{
        id = "adf21080-0e10-11eb-879b-05d71fb426ec", title = "Lead", owner_id = 1, creator_id = 1,
        label_ids = arr{}, person_id = 2, organization_id = oa.null, source_name = "API", is_archived = false,
        was_seen = false, value = obj{ amount = 10, currency = "EUR" }, expected_close_date = oa.null,
        add_time = "2026-01-01T10:00:00.000Z", update_time = "2026-01-01T10:00:00.000Z", visible_to = "3",
      }
      assert.same({}, problems(schema, obj{ success = true, data = lead }, v1))
      lead.visible_to = "2"
      lead.value = obj{ amount = "10" }
      lead.id = 17
      lead.owner_id = oa.null
      assert.same({
        "$.data.id: expected string, got integer 17",
        "$.data.owner_id: expected integer, got null (not nullable)",
        '$.data.value.amount: expected number, got string "10"',
        "$.data.value.currency: required property missing",
        '$.data.visible_to: expected one of "1", "3", "5", "7", got string "2"',
      }, problems(schema, obj{ success = true, data = lead }, v1))
      lead.value = oa.null -- nullable
      for _, p in ipairs(problems(schema, obj{ success = true, data = lead }, v1)) do
        assert.is_nil(p:find("$.data.value", 1, true))
      end
    end)

    it("a v1 deal with related objects", function()
      local schema = oa.response_schema(old, "/deals/{id}", "get", 200)
      local body = assert(oa.json_decode([[{"success":true,"data":{"id":1,"title":"D","value":10,"visible_to":"3",
        "user_id":{"id":1,"name":"U","email":"u@x","has_pic":false,"pic_hash":null,"active_flag":true,"value":1},
        "person_id":{"name":"P","email":[{"value":"p@x","primary":true,"label":"work"}],"value":2},
        "org_id":null},
        "related_objects":{"user":{"1":{"id":1,"name":"U","has_pic":0}},"person":{"2":{"id":"2"}}}}]]))
      assert.same({
        "$.data.org_id: expected object, got null (not nullable)",
        '$.related_objects.person.2.id: expected integer, got string "2"',
      }, problems(schema, body, old))
    end)

    it("an error body", function()
      local schema = oa.response_schema(v1, "/users/me", "get", 401)
      assert.same({}, problems(schema, obj{ success = false, error = "unauthorized access", errorCode = 401 }, v1))
      assert.same({ '$.errorCode: expected integer, got string "401"' },
        problems(schema, obj{ success = false, error = "unauthorized access", errorCode = "401" }, v1))
    end)
  end)
end)
