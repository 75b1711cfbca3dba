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

describe("core.open_private", function()
  local function is_root() return capture("id -u"):match("^0%s") ~= nil end

  -- Starts a child that runs `code` (with `core`, `arg[1]`) and reads its first
  -- line (the child prints one when it holds what the test needs). Returns the
  -- line and the pipe; closing the pipe waits for the child.
  local function background(code, ...)
    local script = os.tmpname()
    spit(script, 'package.cpath = os.getenv("PD_CPATH")\nlocal core = require "pipedrive.core"\n' .. code)
    local cwd = os.getenv("PWD") or "."
    local cpath = package.cpath:gsub("[^;]+", function(e) return e:sub(1, 1) == "/" and e or cwd .. "/" .. e end)
    local args = {}
    for i, a in ipairs({ ... }) do args[i] = q(a) end
    local p = assert(io.popen(("PD_CPATH=%s %s %s %s 2>&1"):format(q(cpath), LUA, q(script), table.concat(args, " "))))
    local line = p:read("*l")
    return line, p, script
  end

  it("opens and reads a trusted file (0600, ours, in a directory only we can write), again and again", function()
    local path = tmp .. "/token.json"
    assert(core.write_file_atomic(path, '{"access_token":"a"}', 384))
    local f = assert(core.open_private(path))
    assert.equal('{"access_token":"a"}', f:read())
    assert.equal('{"access_token":"a"}', f:read(64))
    assert.is_false(f:locked())
    local s, msg = f:read(5)
    assert.is_nil(s)
    assert.truthy(msg:find("larger than 5 bytes", 1, true))
    assert.equal("pipedrive.private_file (open)", tostring(f))
    assert.is_true(f:close())
    assert.is_true(f:close())
    assert.equal("pipedrive.private_file (closed)", tostring(f))
    assert.has_error(function() f:read() end)
  end)

  it("a missing file in a trusted directory is ENOENT; a relative path works", function()
    local f, msg, errno = core.open_private(tmp .. "/nope")
    assert.is_nil(f)
    assert.equal(2, errno)
    assert.truthy(msg:find("No such file", 1, true))
    local out = child("cd " .. q(tmp) .. " && echo x > rel && chmod 600 rel", [[
      local f = assert(core.open_private("rel"))
      io.write(f:read())
    ]])
    assert.equal("x\n", out)
  end)

  it("refuses a symbolic link, even to a trusted file, without following it", function()
    local real = tmp .. "/real.json"
    assert(core.write_file_atomic(real, "secret", 384))
    assert(sh("ln -s real.json " .. q(tmp .. "/link.json")))
    local f, msg, errno = core.open_private(tmp .. "/link.json")
    assert.is_nil(f)
    assert.equal(40, errno) -- ELOOP
    assert.truthy(msg:find("symbolic link", 1, true), msg)
    assert.is_nil(msg:find("secret", 1, true))
  end)

  it("refuses a file others may read, naming the mode", function()
    local path = tmp .. "/token.json"
    for _, mode in ipairs({ "644", "640", "604", "611" }) do
      assert(core.write_file_atomic(path, "x", tonumber(mode, 8)))
      local f, msg, errno = core.open_private(path)
      assert.is_nil(f, mode)
      assert.equal(1, errno)
      assert.equal(path .. " can be read by others (mode " .. mode .. "): chmod 600 it or remove it", msg)
    end
    assert(core.write_file_atomic(path, "x", 256)) -- 0400 is fine
    assert(core.open_private(path)):close()
  end)

  it("refuses what is not a regular file, without blocking", function()
    assert(sh("mkfifo -m 600 " .. q(tmp .. "/fifo") .. " && mkdir -m 700 " .. q(tmp .. "/d")))
    for _, p in ipairs({ tmp .. "/fifo", tmp .. "/d", tmp .. "/", tmp .. "/d/..", tmp .. "/." }) do
      local f, msg = core.open_private(p)
      assert.is_nil(f, p)
      assert.equal(p .. " is not a regular file", msg)
    end
    assert.has_error(function() core.open_private("") end)
    assert.has_error(function() core.open_private("a\0b") end)
  end)

  it("refuses a directory others can write unless it is sticky", function()
    local path = tmp .. "/token.json"
    assert(core.write_file_atomic(path, "x", 384))
    for _, mode in ipairs({ "777", "770", "702" }) do
      assert(sh("chmod " .. mode .. " " .. q(tmp)))
      local f, msg, errno = core.open_private(path)
      assert.is_nil(f, mode)
      assert.equal(1, errno)
      assert.equal(("the directory %s of %s can be written by others (mode %s): chmod go-w it, or keep the token elsewhere")
        :format(tmp, path, mode), msg)
      -- also when the file does not exist yet: nothing may be created there
      local _, _, e2 = core.open_private(tmp .. "/new.json")
      assert.equal(1, e2)
    end
    assert(sh("chmod 1777 " .. q(tmp))) -- like /tmp: others cannot replace our file
    assert(core.open_private(path)):close()
    assert(sh("chmod 755 " .. q(tmp)))
    assert(core.open_private(path)):close()
  end)

  it("refuses a file or a directory that belongs to another user (run as root)", function()
    if not is_root() then
      pending("needs root to give a file to another user")
      return
    end
    local path = tmp .. "/token.json"
    assert(core.write_file_atomic(path, "x", 384))
    assert(sh("chown 65534 " .. q(path)))
    local f, msg, errno = core.open_private(path)
    assert.is_nil(f)
    assert.equal(1, errno)
    assert.equal(path .. " belongs to another user (uid 65534): refused; remove it to log in again", msg)
    assert(sh("chown 0 " .. q(path) .. " && mkdir -m 700 " .. q(tmp .. "/theirs")))
    assert(core.write_file_atomic(tmp .. "/theirs/t.json", "x", 384))
    assert(sh("chown 65534 " .. q(tmp .. "/theirs")))
    f, msg, errno = core.open_private(tmp .. "/theirs/t.json")
    assert.is_nil(f)
    assert.equal(1, errno)
    local want = "the directory " .. tmp .. "/theirs of " .. tmp .. "/theirs/t.json belongs to another user (uid 65534)"
    assert.truthy(msg:find(want, 1, true), msg)
  end)

  it("locks across processes: waits at most lock_timeout, then gets it once the holder is gone", function()
    local path = tmp .. "/token.json"
    assert(core.write_file_atomic(path, "A", 384))
    local line, p, script = background([[
      local f = assert(core.open_private(arg[1], 5))
      assert(f:locked())
      print("locked"); io.stdout:flush()
      core.sleep(1.0)
      f:close()
      print("released"); io.stdout:flush()
      core.sleep(0.5)
    ]], path)
    assert.equal("locked", line)
    local t0 = core.now()
    local f, msg, errno = core.open_private(path, 0.3)
    local waited = core.now() - t0
    assert.is_nil(f)
    assert.equal(110, errno) -- ETIMEDOUT
    assert.equal(path .. ": another process has held the lock for too long", msg)
    assert.is_true(waited >= 0.29 and waited < 0.9, tostring(waited))
    -- no timeout at all: one try
    t0 = core.now()
    assert.is_nil(core.open_private(path, 0))
    assert.is_true(core.now() - t0 < 0.1)
    -- without a lock the file opens at once
    assert(core.open_private(path)):close()
    -- a longer wait gets it when the holder closes
    t0 = core.now()
    f = assert(core.open_private(path, 5))
    waited = core.now() - t0
    assert.is_true(f:locked())
    assert.is_true(waited > 0.3 and waited < 2, tostring(waited))
    assert.equal("released", p:read("*l"))
    f:close()
    p:close()
    os.remove(script)
  end)

  it("a lock taken while the file is replaced is on the new file", function()
    local path = tmp .. "/token.json"
    assert(core.write_file_atomic(path, "A", 384))
    local line, p, script = background([[
      local f = assert(core.open_private(arg[1], 5))
      print("locked"); io.stdout:flush()
      core.sleep(0.4)
      assert(core.write_file_atomic(arg[1], "B", 384)) -- replaced while we hold the old file's lock
      core.sleep(0.3)
      f:close()
    ]], path)
    assert.equal("locked", line)
    local f = assert(core.open_private(path, 5)) -- opens "A", waits, then finds the name is "B" now
    assert.equal("B", f:read())
    assert.is_true(f:locked())
    -- and it excludes the others: a second process cannot take it now
    local out = child("true", [[
      local g, msg = core.open_private(arg[1], 0)
      io.write(tostring(g), " ", tostring(msg))
    ]], path)
    assert.equal("nil " .. path .. ": another process has held the lock for too long", out)
    f:close()
    out = child("true", [[
      local g = assert(core.open_private(arg[1], 0))
      io.write(g:read())
    ]], path)
    assert.equal("B", out)
    p:close()
    os.remove(script)
  end)
end)
