-- docs/REFERENCE.md is generated (`make docs`, docs/gen/reference.lua): regenerate it
-- in memory and fail, quoting the first differing line, when the committed file is
-- stale. Also checks that the generator documents everything operations.lua holds.
local operations = require "pipedrive.operations"

local util = require "support.util"

local function read(path) return assert(util.read_file(path), "cannot read " .. path) end

local function lines(s)
  local out = {}
  for line in (s .. "\n"):gmatch("([^\n]*)\n") do out[#out + 1] = line end
  return out
end

describe("docs/REFERENCE.md", function()
  local text, stats

  setup(function()
    package.path = "docs/gen/?.lua;" .. package.path
    text, stats = require("reference").generate{ root = "." }
  end)

  it("is what `make docs` generates now", function()
    local committed = read("docs/REFERENCE.md")
    if committed ~= text then
      local a, b = lines(committed), lines(text)
      for i = 1, math.max(#a, #b) do
        if a[i] ~= b[i] then
          error(("docs/REFERENCE.md is stale: run `make docs`. First difference, line %d:\n  committed: %s\n"
            .. "  generated: %s"):format(i, tostring(a[i]), tostring(b[i])), 0)
        end
      end
    end
  end)

  it("has a section for every function of every resource the client exposes", function()
    local count = 0
    for _, rname in ipairs(operations.ALL_RESOURCES) do
      for fname, op in pairs(operations[rname]) do
        if type(op) == "table" and op.kind then
          count = count + 1
          assert.truthy(text:find("\n### pd." .. rname .. "." .. fname .. "\n", 1, true), rname .. "." .. fname)
          for pname in pairs(op.params or {}) do
            -- each parameter has its row in the function's table
            local section = text:match("\n### pd%." .. rname .. "%." .. fname .. "\n(.-)\n### ")
              or text:match("\n### pd%." .. rname .. "%." .. fname .. "\n(.*)$")
            assert.truthy(section:find("\n| `" .. pname .. "` |", 1, true), rname .. "." .. fname .. "." .. pname)
          end
        end
      end
      if operations[rname].list then
        count = count + 1
        assert.truthy(text:find("\n### pd." .. rname .. ".each\n", 1, true), rname .. ".each")
      end
    end
    assert.equal(count, stats.functions)
    -- nearly every parameter has a meaning from the OpenAPI files; the rest from the overlay
    assert.is_true(stats.described >= stats.params * 0.9, stats.described .. " of " .. stats.params)
    assert.same({}, stats.missing)
  end)

  it("README's resource table names every resource and function the client has", function()
    local readme = read("README.md")
    local table_text = assert(readme:match("\n| resource | functions |\n(.-)\n\n"), "README: no resource table")
    for _, rname in ipairs(operations.RESOURCES) do
      local row
      for line in table_text:gmatch("[^\n]+") do
        if line:find("`pd." .. rname .. "`", 1, true) then row = line end
      end
      assert(row, "README's resource table has no row for pd." .. rname)
      local fnames = {}
      -- the standard functions; the generated others are in the reference (README says so)
      for _, fname in ipairs(operations.FUNCTIONS) do
        local op = operations[rname][fname]
        if type(op) == "table" and op.kind then fnames[#fnames + 1] = fname end
      end
      if operations[rname].list then fnames[#fnames + 1] = "each" end
      for _, fname in ipairs(fnames) do
        assert(row:find("`" .. fname .. "`", 1, true), "README's row for pd." .. rname .. " lacks " .. fname)
      end
    end
  end)

  it("documents any operation the table holds, not a fixed list", function()
    local ops = {
      RESOURCES = { "widgets" }, FUNCTIONS = { "list" },
      widgets = {
        object = "widget",
        list = { kind = "list", v1 = { method = "GET", path = "/api/v1/users", paging = "none", cost = 1 },
                 params = { colour = { type = "string", enum = { "red", "blue" }, v2 = false, hint = "none" } } },
        spin = { kind = "action", v2 = { method = "POST", path = "/api/v2/deals", paging = "none", cost = 1 },
                 params = { title = { type = "string", required = true } } },
      },
    }
    local t = require("reference").generate{ root = ".", operations = ops }
    assert.truthy(t:find("### pd.widgets.list", 1, true))
    assert.truthy(t:find("### pd.widgets.each", 1, true))
    assert.truthy(t:find("### pd.widgets.spin", 1, true))
    assert.truthy(t:find("| `colour` | string |  | `red`, `blue` | v1 |", 1, true))
    -- the title's meaning comes from openapi-v2.yaml's POST /deals body
    assert.truthy(t:find("| `title` | string | yes |  | v2 | The title of the deal. |", 1, true))
  end)
end)
