-- The rocks' contents and the OpenResty snippet they carry. (Installing the
-- rocks is rockspec/check.sh's job: it needs luarocks and a few seconds per
-- interpreter.) Here: each rockspec lists exactly its modules, the client
-- depends on Lua alone and no client module needs cjson, and
-- pipedrive.nginx_snippet / `pipedrive nginx-snippet` give
-- examples/openresty/pipedrive-location.conf byte for byte.
local util = require "support.util"
local cli = require "pipedrive.cli"

-- A rockspec's fields (a rockspec is Lua assignments to globals).
local function rockspec(path)
  local text = assert(util.read_file(path))
  local env = {}
  local chunk
  if rawget(_G, "setfenv") then
    chunk = assert(loadstring(text, "@" .. path)) -- luacheck: ignore 113
    setfenv(chunk, env)                           -- luacheck: ignore 113
  else
    chunk = assert(load(text, "@" .. path, "t", env))
  end
  chunk()
  return env
end

-- The module names of the .lua files in dir: lua/pipedrive/x.lua -> pipedrive.x
-- The modules under dir: its *.lua files and those of the packages (dir/pkg/*.lua,
-- pkg/init.lua being the package itself) named in the list `packages`.
local function modules_in(dir, packages)
  local names = {}
  local globs = dir .. "/*.lua"
  for _, pkg in ipairs(packages or {}) do globs = globs .. " " .. dir .. "/" .. pkg .. "/*.lua" end
  local p = io.popen("ls " .. globs)
  for f in p:lines() do
    local name = f:gsub("^lua/", ""):gsub("%.lua$", ""):gsub("/init$", ""):gsub("/", ".")
    names[#names + 1] = name
  end
  p:close()
  table.sort(names)
  return names
end

local function lua_modules_of(spec)
  local names = {}
  for name, src in pairs(spec.build.modules) do
    if type(src) == "string" then
      assert.equal("lua/" .. name:gsub("%.", "/") .. ".lua", (src:gsub("/init%.lua$", ".lua")), name)
      names[#names + 1] = name
    end
  end
  table.sort(names)
  return names
end

local function capture(argv)
  local out, err = {}, {}
  local code = cli.run(argv, {
    stdout = function(s) out[#out + 1] = s end,
    stderr = function(s) err[#err + 1] = s end,
  })
  return code, table.concat(out), table.concat(err)
end

describe("the pipedrive rock", function()
  local spec = rockspec("rockspec/pipedrive-0.1.0-1.rockspec")

  it("installs every client module and the three C modules, and nothing of the sandbox", function()
    assert.same(modules_in("lua/pipedrive", { "triggers", "operations", "operations/gen" }), lua_modules_of(spec))
    assert.same({ "csrc/core.c" }, spec.build.modules["pipedrive.core"].sources)
    assert.same({ "csrc/httpd.c" }, spec.build.modules["pipedrive.httpd"].sources)
    assert.same({ "csrc/redis.c" }, spec.build.modules["pipedrive.hiredis"].sources)
    assert.same({ "hiredis" }, spec.build.modules["pipedrive.hiredis"].libraries)
    assert.same({ header = "hiredis/hiredis.h", library = "hiredis" }, spec.external_dependencies.HIREDIS)
    assert.same({ pipedrive = "bin/pipedrive" }, spec.build.install.bin)
    assert.equal("builtin", spec.build.type)
  end)

  it("depends on Lua alone, and no client module requires cjson", function()
    assert.same({ "lua >= 5.1" }, spec.dependencies)
    local n = 0
    for _, src in pairs(spec.build.modules) do
      if type(src) == "string" then
        local text = assert(util.read_file(src))
        assert.is_nil(text:find("cjson", 1, true), src)
        n = n + 1
      end
    end
    assert.is_true(n > 10)
  end)

  it("names a release archive, a homepage and the MIT license the LICENSE file grants", function()
    assert.equal("https://github.com/pipedrive-lua/pipedrive-lua/archive/v0.1.0.tar.gz", spec.source.url)
    assert.equal("pipedrive-lua-0.1.0", spec.source.dir)
    assert.equal("https://github.com/pipedrive-lua/pipedrive-lua", spec.description.homepage)
    assert.equal("MIT", spec.description.license)
    local license = assert(util.read_file("LICENSE"))
    assert.truthy(license:find("MIT License\n\nCopyright (c) 2026 the pipedrive-lua authors\n", 1, true))
    assert.equal(spec.version:match("^(.-)%-%d+$"), require("pipedrive")._VERSION)
  end)
end)

describe("the pipedrive-sandbox rock", function()
  local spec = rockspec("rockspec/pipedrive-sandbox-0.1.0-1.rockspec")

  it("installs every sandbox module and the pipedrive-sandbox command", function()
    assert.same(modules_in("lua/pipedrive/sandbox"), lua_modules_of(spec))
    assert.same({ ["pipedrive-sandbox"] = "bin/pipedrive-sandbox" }, spec.build.install.bin)
  end)

  it("depends on the same version of pipedrive and on lua-cjson", function()
    assert.same({ "lua >= 5.1", "pipedrive == 0.1.0", "lua-cjson >= 2.1" }, spec.dependencies)
    assert.equal(rockspec("rockspec/pipedrive-0.1.0-1.rockspec").version, spec.version)
  end)
end)

describe("pipedrive.nginx_snippet", function()
  local conf = assert(util.read_file("examples/openresty/pipedrive-location.conf"))

  it("is examples/openresty/pipedrive-location.conf byte for byte", function()
    assert.equal(conf, require("pipedrive.nginx_snippet").text)
  end)

  it("is what `pipedrive nginx-snippet` prints", function()
    local code, out, err = capture({ "nginx-snippet" })
    assert.equal(0, code)
    assert.equal(conf, out)
    assert.equal("", err)
  end)

  it("`pipedrive nginx-snippet` refuses arguments with its usage (exit 2) and has --help", function()
    local code, out, err = capture({ "nginx-snippet", "--port", "80" })
    assert.equal(2, code)
    assert.equal("", out)
    assert.equal("pipedrive: nginx-snippet takes no arguments\n"
      .. "usage: pipedrive nginx-snippet  (prints the nginx location for OpenResty; README \"OpenResty\")\n", err)
    code, out, err = capture({ "nginx-snippet", "--help" })
    assert.equal(0, code)
    assert.truthy(out:find("^usage: pipedrive nginx%-snippet"))
    assert.equal("", err)
  end)

  it("is listed in the command's help", function()
    local code, out = capture({ "--help" })
    assert.equal(0, code)
    assert.truthy(out:find("`pipedrive nginx-snippet` prints the nginx location", 1, true))
  end)
end)
