-- pipedrive.token_file shared by several OS processes, against the sandbox's
-- OAuth server (which rotates the refresh token on every refresh, like
-- Pipedrive): issue 13's cases 5 (a second process adopts the token the first
-- saved), 6 (a token that cannot be saved is nil, err, kept in memory, the file
-- untouched), 7 (a malformed token is refused when the file is read) and 9 (the
-- file's and its directory's ownership and modes, symbolic links).
local sandbox = require "support.sandbox"
local pipedrive = require "pipedrive"
local core = require "pipedrive.core"

local CLIENT_ID, CLIENT_SECRET = "tf-client", "tf-secret-Kx27"
local LUA = os.getenv("LUA") or "lua5.4"
local free_port = require("support.util").free_port

local function q(s) return "'" .. tostring(s):gsub("'", [['\'']]) .. "'" end

local function capture(cmd)
  local p = assert(io.popen(cmd))
  local out = p:read("*a")
  p:close()
  return out
end

local function sh(cmd)
  local ok = os.execute(cmd)
  return ok == true or ok == 0
end

local function browser(url)
  os.execute("curl -s -L -o /dev/null --max-time 10 '" .. url:gsub("'", "%%27") .. "' &")
end

-- The shell command that runs spec/support/token_user.lua in a clean
-- environment (after the shell `prelude`, e.g. a ulimit).
local function user_cmd(prelude, ...)
  local args = {}
  for i, a in ipairs({ ... }) do args[i] = q(a) end
  local run = ("%s exec %s spec/support/token_user.lua %s"):format(prelude or "", LUA, table.concat(args, " "))
  return ("env -i PATH=%s LUA_PATH=%s LUA_CPATH=%s PD_CLIENT_ID=%s PD_CLIENT_SECRET=%s sh -c %s 2>&1"):format(
    q(os.getenv("PATH") or "/usr/bin:/bin"), q(package.path), q(package.cpath), q(CLIENT_ID), q(CLIENT_SECRET), q(run))
end

local function lines(text)
  local t = {}
  for l in text:gmatch("[^\n]+") do t[#t + 1] = l end
  return t
end

describe("pipedrive.token_file shared by processes", function()
  local sb, dir

  setup(function()
    sb = sandbox.start{ args = { "--oauth-client", CLIENT_ID .. ":" .. CLIENT_SECRET, "--oauth-auto-approve",
                                 "--token-ttl", "2" } }
  end)
  teardown(function() sb.stop() end)

  before_each(function()
    dir = capture("mktemp -d"):gsub("%s+$", "")
    assert(dir:match("^/.+"))
  end)
  after_each(function()
    if dir and dir:match("^/.+") then sh("chmod -R u+w " .. q(dir) .. "; rm -rf " .. q(dir)) end
  end)

  local function counts(server) return select(2, (server or sb).admin("GET", "/_sandbox/oauth")) end

  local function client(store, server)
    return pipedrive.new{ oauth_url = (server or sb).url, oauth = { client_id = CLIENT_ID, client_secret = CLIENT_SECRET,
      store = store, redirect_uri = ("http://127.0.0.1:%d/callback"):format(free_port()) } }
  end

  -- Logs in and saves the token in path; returns the token.
  local function login(path, server)
    local pd = client(assert(pipedrive.token_file(path)), server)
    local t = assert(pd.oauth.login{ open = browser, quiet = true, timeout = 20 })
    pd.close()
    return t
  end

  local function file_token(path) return core.json_decode(assert(core.read_file(path))) end

  it("a process adopts the token another process refreshed and saved (case 5)", function()
    local path = dir .. "/token.json"
    local first = login(path)
    local mine = client(assert(pipedrive.token_file(path))) -- holds the first token in memory
    assert(mine.users.list())
    sb.admin("POST", "/_sandbox/oauth/expire")
    local before = counts()

    -- another process refreshes: Pipedrive rotates the refresh token, it saves the new one
    local out = lines(capture(user_cmd(nil, path, sb.url)))
    assert.same({ "ok", "token " .. file_token(path).access_token }, out)
    assert.not_equal(first.refresh_token, file_token(path).refresh_token)
    assert.equal(before.refreshes + 1, counts().refreshes)

    -- this process's token expired too: it reads the file under the lock and
    -- takes the saved token instead of refreshing with the rotated-out one
    local users, err = mine.users.list()
    assert.is_table(users, tostring(err))
    assert.equal(file_token(path).access_token, mine.oauth.token().access_token)
    assert.equal(before.refreshes + 1, counts().refreshes)
    assert.equal(before.failed_refreshes, counts().failed_refreshes)
    mine.close()
  end)

  it("two processes calling for several token lifetimes refresh one at a time and never fail", function()
    local path = dir .. "/token.json"
    login(path)
    local before = counts()
    local a = assert(io.popen(user_cmd(nil, path, sb.url, 5, 0.05)))
    local b = assert(io.popen(user_cmd(nil, path, sb.url, 5, 0.05)))
    local out_a, out_b = lines(a:read("*a")), lines(b:read("*a"))
    a:close()
    b:close()
    local after = counts()
    for _, out in ipairs({ out_a, out_b }) do
      assert.is_true(#out > 20, #out .. " calls")
      for i = 1, #out - 1 do assert.equal("ok", out[i]) end
    end
    -- two token lifetimes at least, each refreshed by one of the two
    assert.is_true(after.refreshes - before.refreshes >= 2, tostring(after.refreshes - before.refreshes))
    assert.equal(before.failed_refreshes, after.failed_refreshes)
  end)

  it("a process stuck at reauth_required takes the token of a later login from the file", function()
    local path = dir .. "/token.json"
    login(path)
    local mine = client(assert(pipedrive.token_file(path)))
    -- another process refreshes twice without this one taking part
    sb.admin("POST", "/_sandbox/oauth/expire")
    assert.equal("ok", lines(capture(user_cmd(nil, path, sb.url)))[1])
    sb.admin("POST", "/_sandbox/oauth/expire")
    assert.equal("ok", lines(capture(user_cmd(nil, path, sb.url)))[1])
    -- then revokes: the file is gone, this process's refresh token is refused
    local other = client(assert(pipedrive.token_file(path)))
    assert.is_true(other.oauth.revoke())
    other.close()
    assert.is_nil(core.file_info(path))
    local _, err = mine.users.list()
    assert.equal("reauth_required", err.kind)
    sb.clear_requests()
    _, err = mine.users.list()
    assert.equal("reauth_required", err.kind)
    assert.same({}, sb.requests()) -- stuck: nothing is sent
    -- a new login elsewhere: the next call uses it
    local again = login(path)
    local users, err2 = mine.users.list()
    assert.is_table(users, tostring(err2))
    assert.equal(again.access_token, mine.oauth.token().access_token)
    mine.close()
  end)

  it("a token that cannot be saved during a refresh is nil, err; kept in memory; the file untouched (case 6)", function()
    -- tokens that live long enough for every call after the refresh to use it
    local long = sandbox.start{ args = { "--oauth-client", CLIENT_ID .. ":" .. CLIENT_SECRET, "--oauth-auto-approve",
                                         "--token-ttl", "300" } }
    finally(function() long.stop() end)
    local path = dir .. "/token.json"
    login(path, long)
    local saved = assert(core.read_file(path))
    long.admin("POST", "/_sandbox/oauth/expire")
    local before = counts(long)
    -- The child may write no byte to any file (RLIMIT_FSIZE 0, also for root;
    -- SIGXFSZ ignored, so write() fails with EFBIG like on a full disk).
    local out = lines(capture(user_cmd("trap '' XFSZ; ulimit -f 0;", path, long.url, 0.5, 0.2)))
    assert.is_true(#out >= 3, table.concat(out, "\n"))
    assert.equal("err token_file pipedrive: token_file GET /api/v1/users: "
      .. "cannot save the token (kept in memory for this process only): "
      .. path .. ": cannot write: File too large", out[1])
    for i = 2, #out - 1 do assert.equal("ok", out[i]) end -- the new token, from memory
    assert.equal(before.refreshes + 1, counts(long).refreshes) -- refreshed once, not on every call
    assert.equal(saved, core.read_file(path))
    assert.not_equal("token " .. file_token(path).access_token, out[#out])
    assert.equal("token.json\n", capture("ls -A " .. q(dir))) -- no temporary file left
  end)

  it("a pd.oauth.refresh whose token cannot be saved returns nil, err in this process too", function()
    -- A file name so long that the temporary file beside it cannot have one
    -- (NAME_MAX): the file is read and locked, but no save can succeed (as root too).
    local path = dir .. "/" .. ("t"):rep(240)
    login(dir .. "/token.json")
    assert(sh("cp " .. q(dir .. "/token.json") .. " " .. q(path) .. " && chmod 600 " .. q(path)))
    local saved = assert(core.read_file(path))
    local pd = client(assert(pipedrive.token_file(path)))
    local ok, err = pd.oauth.refresh()
    assert.is_nil(ok)
    assert.equal("token_file", err.kind)
    assert.truthy(tostring(err):find("cannot save the token", 1, true), tostring(err))
    assert.truthy(tostring(err):find("File name too long", 1, true), tostring(err))
    assert.not_equal(core.json_decode(saved).access_token, pd.oauth.token().access_token)
    assert.equal(saved, core.read_file(path))
    assert(pd.users.list()) -- with the new token, from memory
    pd.close()
  end)

  describe("refuses a file it cannot trust, and never overwrites it", function()
    local function refused(path, pattern)
      local before = core.read_file(path)
      local store, err = pipedrive.token_file(path)
      assert.is_nil(store)
      assert.equal("token_file", err.kind)
      assert.truthy(tostring(err):find(pattern, 1, true), tostring(err))
      assert.is_nil(tostring(err):find("SECRETVALUE", 1, true))
      assert.equal(before, core.read_file(path))
    end
    local function put(path, text, mode)
      assert(core.write_file_atomic(path, text, mode or 384))
    end

    it("a token value with CR/LF, control characters or the wrong type (case 7)", function()
      local path = dir .. "/token.json"
      local bad = {
        { '{"access_token":"SECRETVALUE\\r\\nX-Injected: 1","refresh_token":"r"}', "field access_token" },
        { '{"access_token":"SECRETVALUE\\u0000"}', "field access_token" },
        { '{"access_token":"SECRET VALUE"}', "field access_token" },
        { '{"access_token":""}', "field access_token" },
        { '{"access_token":42}', "field access_token" },
        { '{"access_token":"a","refresh_token":"SECRETVALUE\\n"}', "field refresh_token" },
        { '{"access_token":"a","refresh_token":["x"]}', "field refresh_token" },
        { '{"access_token":"a","api_domain":"https://x.example\\r\\nHost: y"}', "field api_domain" },
        { '{"access_token":"a","token_type":{}}', "field token_type" },
        { '{"access_token":"a","expires_at":"soon"}', "field expires_at" },
        { '["access_token"]', "does not hold a saved token" },
      }
      for _, case in ipairs(bad) do
        put(path, case[1])
        refused(path, case[2])
      end
      put(path, '{"access_token":"a.b-c_d:1","refresh_token":"r","token_type":"Bearer","scope":"base, deals:full",'
        .. '"expires_at":1700000000,"expires_in":3599,"api_domain":"https://x.pipedrive.com"}')
      assert.equal("a.b-c_d:1", assert(pipedrive.token_file(path)).token.access_token)
    end)

    it("a symbolic link, a file others may read, a directory others may write (case 9)", function()
      local real = dir .. "/real.json"
      put(real, '{"access_token":"SECRETVALUE"}')
      assert(sh("ln -s real.json " .. q(dir .. "/link.json")))
      refused(dir .. "/link.json", "symbolic link")
      put(real, '{"access_token":"SECRETVALUE"}', 416) -- 0640
      refused(real, "can be read by others (mode 640)")
      put(real, '{"access_token":"SECRETVALUE"}')
      assert(sh("chmod 777 " .. q(dir)))
      refused(real, "can be written by others (mode 777)")
      -- no file yet: the directory is still checked, so nothing is saved there
      local store, err = pipedrive.token_file(dir .. "/new.json")
      assert.is_nil(store)
      assert.truthy(tostring(err):find("can be written by others", 1, true))
      assert(sh("chmod 1777 " .. q(dir))) -- sticky, like /tmp: accepted
      assert.equal("SECRETVALUE", assert(pipedrive.token_file(real)).token.access_token)
    end)

    it("a file or directory of another user (case 9; run as root)", function()
      if not capture("id -u"):match("^0%s") then
        pending("needs root to give a file to another user")
        return
      end
      local path = dir .. "/token.json"
      put(path, '{"access_token":"SECRETVALUE"}')
      assert(sh("chown 65534 " .. q(path)))
      refused(path, "belongs to another user (uid 65534)")
      assert(sh("chown 0 " .. q(path) .. " && chown 65534 " .. q(dir)))
      refused(path, "the directory " .. dir .. " of " .. path .. " belongs to another user (uid 65534)")
    end)
  end)
end)
