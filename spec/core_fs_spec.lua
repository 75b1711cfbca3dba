-- Unit specs for the token-file primitives of pipedrive.core (csrc/fs.c):
-- atomic writes with an exact mode, lstat-based file_info, bounded reads.
-- Each test works in a fresh temporary directory.
local core = require "pipedrive.core"

local LUA = os.getenv("LUA") or "lua5.4"

local function q(s)
  return "'" .. tostring(s):gsub("'", [['\'']]) .. "'"
end

local function sh(cmd)
  local ok = os.execute(cmd)
  return ok == true or ok == 0
end

local function capture(cmd)
  local p = assert(io.popen(cmd))
  local out = p:read("*a")
  p:close()
  return out
end

local function slurp(path) return assert(require("support.util").read_file(path)) end

local function spit(path, s)
  local f = assert(io.open(path, "wb"))
  f:write(s)
  f:close()
end

-- Names in a directory, sorted, without . and ..
local function entries(dir)
  local t = {}
  for name in capture("ls -A " .. q(dir)):gmatch("[^\n]+") do t[#t + 1] = name end
  table.sort(t)
  return t
end

-- Runs `code` (Lua, with `core` and `arg[1..]` set) in a child process
-- after the shell `prelude`; returns what the child printed.
local function child(prelude, code, ...)
  local dir = os.getenv("TMPDIR") or "/tmp"
  local script = os.tmpname()
  spit(script, 'package.cpath = os.getenv("PD_CPATH")\nlocal core = require "pipedrive.core"\n' .. code)
  local args = {}
  for i, a in ipairs({ ... }) do args[i] = q(a) end
  -- The child runs elsewhere, so relative cpath entries are made absolute.
  local cwd = os.getenv("PWD") or "."
  local cpath = package.cpath:gsub("[^;]+", function(e) return e:sub(1, 1) == "/" and e or cwd .. "/" .. e end)
  local out = capture(("cd %s && PD_CPATH=%s sh -c %s 2>&1"):format(q(dir), q(cpath),
    q(prelude .. "; exec " .. LUA .. " " .. q(script) .. " " .. table.concat(args, " "))))
  os.remove(script)
  return out
end

local tmp

before_each(function()
  tmp = capture("mktemp -d"):gsub("%s+$", "")
  assert(tmp:match("^/.+"), "mktemp -d failed")
end)

after_each(function()
  if tmp and tmp:match("^/.+") then sh("rm -rf " .. q(tmp)) end
end)

describe("core.write_file_atomic", function()
  it("writes the data with mode 0600 by default", function()
    local path = tmp .. "/token.json"
    assert.is_true(core.write_file_atomic(path, "{\"a\":1}\0binary\255"))
    assert.equal("{\"a\":1}\0binary\255", slurp(path))
    local info = assert(core.file_info(path))
    assert.equal(384, info.mode)
    assert.same({ "token.json" }, entries(tmp))
  end)

  it("gives exactly the mode asked for, whatever the umask", function()
    local out = child("umask 000", [[
      assert(core.write_file_atomic(arg[1], "secret", 384))
      print(core.file_info(arg[1]).mode)
    ]], tmp .. "/a")
    assert.equal("384", out:match("^%s*(.-)%s*$"))
    out = child("umask 077", [[
      assert(core.write_file_atomic(arg[1], "public", tonumber("644", 8)))
      print(core.file_info(arg[1]).mode)
    ]], tmp .. "/b")
    assert.equal(tostring(tonumber("644", 8)), out:match("^%s*(.-)%s*$"))
    assert.same({ "a", "b" }, entries(tmp))
  end)

  it("replaces an existing file, tightening its mode", function()
    local path = tmp .. "/token.json"
    spit(path, "old contents that are longer")
    assert(sh("chmod 644 " .. q(path)))
    assert.is_true(core.write_file_atomic(path, "new", 384))
    assert.equal("new", slurp(path))
    assert.equal(384, core.file_info(path).mode)
    for i = 1, 20 do assert.is_true(core.write_file_atomic(path, "v" .. i)) end
    assert.equal("v20", slurp(path))
    assert.same({ "token.json" }, entries(tmp))
  end)

  it("replaces a symlink itself, never writing through it", function()
    local target, link = tmp .. "/elsewhere", tmp .. "/token.json"
    spit(target, "untouched")
    assert(sh("ln -s " .. q(target) .. " " .. q(link)))
    assert.is_true(core.write_file_atomic(link, "new"))
    assert.equal("untouched", slurp(target))
    assert.is_true(core.file_info(link).is_regular)
    assert.equal("new", slurp(link))
  end)

  it("returns nil and a message naming the path when the directory is missing", function()
    local path = tmp .. "/missing/token.json"
    local ok, msg, errno = core.write_file_atomic(path, "data")
    assert.is_nil(ok)
    assert.truthy(msg:find(path, 1, true), msg)
    assert.truthy(msg:find("No such file or directory", 1, true), msg)
    assert.equal(2, errno)
    assert.same({}, entries(tmp))
  end)

  it("leaves the old file intact and no temporary file when writing fails", function()
    local path = tmp .. "/token.json"
    spit(path, "old token")
    -- A file size limit of 0 makes every write fail (EFBIG) even for root.
    local out = child("trap '' XFSZ; ulimit -f 0", [[
      local ok, msg = core.write_file_atomic(arg[1], "new token that cannot be written")
      print(tostring(ok) .. "|" .. tostring(msg))
    ]], path)
    assert.truthy(out:match("^nil|"), out)
    assert.truthy(out:find(path, 1, true), out)
    assert.is_nil(out:find("new token", 1, true), out)
    assert.equal("old token", slurp(path))
    assert.same({ "token.json" }, entries(tmp))
  end)

  it("removes the temporary file when the final rename fails", function()
    local path = tmp .. "/token.json"
    assert(sh("mkdir " .. q(path) .. " && touch " .. q(path .. "/keep")))
    local ok, msg = core.write_file_atomic(path, "data")
    assert.is_nil(ok)
    assert.truthy(msg:find(path, 1, true), msg)
    assert.same({ "token.json" }, entries(tmp))
    assert.same({ "keep" }, entries(path))
  end)

  it("raises on misuse", function()
    assert.has_error(function() core.write_file_atomic("", "x") end)
    assert.has_error(function() core.write_file_atomic(tmp .. "/a\0b", "x") end)
    assert.has_error(function() core.write_file_atomic(tmp .. "/a", nil) end)
    assert.has_error(function() core.write_file_atomic(tmp .. "/a", "x", 4096) end)
    assert.has_error(function() core.write_file_atomic(tmp .. "/a", "x", -1) end)
    assert.has_error(function() core.write_file_atomic(tmp .. "/" .. ("n"):rep(5000), "x") end)
    assert.same({}, entries(tmp))
  end)
end)

describe("core.file_info", function()
  it("reports permission bits, size, owner and type", function()
    local path = tmp .. "/f"
    spit(path, "12345")
    assert(sh("chmod 640 " .. q(path)))
    local info = assert(core.file_info(path))
    assert.equal(tonumber("640", 8), info.mode)
    assert.equal(5, info.size)
    assert.equal(tonumber(capture("id -u")), info.owner_uid)
    assert.is_true(info.is_regular)
    assert.is_false(info.is_dir)
    assert.is_false(info.is_symlink)
    assert(sh("chmod 4600 " .. q(path)))
    assert.equal(tonumber("4600", 8), core.file_info(path).mode)
  end)

  it("describes directories and symlinks without following them", function()
    local info = assert(core.file_info(tmp))
    assert.is_true(info.is_dir)
    assert.is_false(info.is_regular)
    spit(tmp .. "/real", "x")
    assert(sh("ln -s real " .. q(tmp .. "/link")))
    info = assert(core.file_info(tmp .. "/link"))
    assert.is_true(info.is_symlink)
    assert.is_false(info.is_regular)
  end)

  it("returns nil, message, errno for a missing file", function()
    local info, msg, errno = core.file_info(tmp .. "/nope")
    assert.is_nil(info)
    assert.equal(tmp .. "/nope: No such file or directory", msg)
    assert.equal(2, errno)
  end)
end)

describe("core.read_file", function()
  it("reads the whole file, binary included", function()
    local path = tmp .. "/f"
    local data = ("\0\1\2\255 token\n"):rep(1000)
    spit(path, data)
    assert.equal(data, core.read_file(path))
    assert.equal(data, core.read_file(path, #data))
    assert.equal(data, core.read_file(path, #data + 1))
    spit(path, "")
    assert.equal("", core.read_file(path, 0))
  end)

  it("refuses files over the limit, 1 MiB by default", function()
    local path = tmp .. "/f"
    spit(path, "abcdef")
    local s, msg = core.read_file(path, 5)
    assert.is_nil(s)
    assert.equal(path .. ": file is larger than 5 bytes", msg)
    s, msg = core.read_file(path, 0)
    assert.is_nil(s)
    assert.truthy(msg:find("larger than 0 bytes", 1, true))
    spit(path, ("x"):rep(1024 * 1024))
    assert.equal(1024 * 1024, #core.read_file(path))
    spit(path, ("x"):rep(1024 * 1024 + 1))
    s, msg = core.read_file(path)
    assert.is_nil(s)
    assert.truthy(msg:find("larger than 1048576 bytes", 1, true), msg)
  end)

  it("refuses what is not a regular file, without blocking", function()
    local s, msg = core.read_file(tmp)
    assert.is_nil(s)
    assert.equal(tmp .. ": not a regular file", msg)
    assert(sh("mkfifo " .. q(tmp .. "/fifo")))
    s, msg = core.read_file(tmp .. "/fifo")
    assert.is_nil(s)
    assert.truthy(msg:find("not a regular file", 1, true))
  end)

  it("returns nil, message, errno for a missing file and raises on misuse", function()
    local s, msg, errno = core.read_file(tmp .. "/nope")
    assert.is_nil(s)
    assert.equal(tmp .. "/nope: No such file or directory", msg)
    assert.equal(2, errno)
    assert.has_error(function() core.read_file(tmp .. "/f", -1) end)
    assert.has_error(function() core.read_file(tmp .. "/f", 2 ^ 40) end)
    assert.has_error(function() core.read_file(nil) end)
  end)

  it("round-trips with write_file_atomic", function()
    local path = tmp .. "/token.json"
    local t = '{"access_token":"a","refresh_token":"r","expires_at":1700003599}'
    assert.is_true(core.write_file_atomic(path, t, 384))
    assert.equal(t, core.read_file(path, 65536))
  end)
end)
