-- The repository is self-contained: no file the build, the code or the specs use
-- names a path outside the checkout (the developers' shared reading folder
-- above all), and the OpenAPI files the specs validate against are the vendored
-- ones, unmodified (their digests are in openapi/README.md).
local util = require "support.util"

local function tracked_files()
  local files = {}
  local p = io.popen("git ls-files 2>/dev/null")
  for line in p:lines() do files[#files + 1] = line end
  p:close()
  if #files == 0 then -- an unpacked archive without .git
    p = io.popen("find . -type f -not -path './build*' -not -path './.git/*' | sed 's|^./||'")
    for line in p:lines() do files[#files + 1] = line end
    p:close()
  end
  return files
end

describe("the repository", function()
  it("names no path outside the checkout in any file but the notes that explain it", function()
    local files = tracked_files()
    assert.is_true(#files > 50)
    local offenders = {}
    local needle = "../" .. "shared" -- split so this file does not find itself
    for _, f in ipairs(files) do
      if not f:match("%.yaml$") then
        local text = util.read_file(f) or ""
        if text:find(needle, 1, true) then offenders[#offenders + 1] = f end
      end
    end
    assert.same({}, offenders)
  end)

  it("vendors Pipedrive's three OpenAPI files with the digests its note gives", function()
    local note = assert(util.read_file("openapi/README.md"))
    local n = 0
    for file, digest in note:gmatch("| `(openapi%-[%w%-]+%.yaml)` |[^\n]*`(%x+)` |\n") do
      local p = io.popen("sha256sum " .. file:gsub("^", "openapi/"))
      local sum = p:read("*l"):match("^(%x+)")
      p:close()
      assert.equal(digest, sum, file)
      n = n + 1
    end
    assert.equal(3, n)
  end)
end)
