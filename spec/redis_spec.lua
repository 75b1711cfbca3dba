-- pipedrive.redis against a real redis-server (spec/support/redis.lua): the
-- reply mapping, AUTH and SELECT, the url form, misuse, reconnects, the retry
-- interval, timeouts, EVALSHA with NOSCRIPT, and core.sha256_hex (FIPS 180
-- vectors), which names credentials in keys.
local core = require "pipedrive.core"
local compat = require "pipedrive.compat"
local util = require "support.util"
local redis_support = require "support.redis"

local function q(s) return "'" .. tostring(s):gsub("'", [['\'']]) .. "'" end

local function sha256sum(s)
  local path = os.tmpname()
  local f = assert(io.open(path, "wb"))
  f:write(s)
  f:close()
  local p = assert(io.popen("sha256sum " .. q(path)))
  local out = p:read("*a")
  p:close()
  os.remove(path)
  return out:match("^(%x+)")
end

describe("core.sha256_hex", function()
  it("gives the FIPS 180-2 test vectors", function()
    assert.equal("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", core.sha256_hex("abc"))
    assert.equal("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", core.sha256_hex(""))
    assert.equal("248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1",
      core.sha256_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"))
    assert.equal("cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1",
      core.sha256_hex("abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopq"
        .. "klmnopqrlmnopqrsmnopqrstnopqrstu"))
    assert.equal("cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0",
      core.sha256_hex(("a"):rep(1000000)))
  end)

  it("agrees with sha256sum around the padding boundaries, binary input included", function()
    for _, n in ipairs({ 1, 55, 56, 57, 63, 64, 65, 119, 120, 128, 1000 }) do
      local s = {}
      for i = 1, n do s[i] = string.char((i * 37 + n) % 256) end
      s = table.concat(s)
      assert.equal(sha256sum(s), core.sha256_hex(s), "length " .. n)
    end
  end)

  it("raises for a non-string", function()
    assert.has_error(function() core.sha256_hex({}) end)
  end)
end)

describe("core.url_userinfo", function()
  it("gives the decoded user and password, nil when absent", function()
    assert.same({ "", "p@ss:w" }, { core.url_userinfo("redis://:p%40ss%3Aw@h:1/2") })
    assert.same({ "u", "pw" }, { core.url_userinfo("redis://u:pw@h") })
    local u, p = core.url_userinfo("redis://h:1")
    assert.is_nil(u)
    assert.is_nil(p)
  end)

  it("never quotes the URL in its message", function()
    local u, p, msg = core.url_userinfo("nope://sec ret@h")
    assert.is_nil(u)
    assert.is_nil(p)
    assert.is_string(msg)
    assert.is_nil(msg:find("sec", 1, true))
  end)
end)

describe("pipedrive.redis options", function()
  local redis = require "pipedrive.redis"

  local function raises(opts, pattern)
    local msg = util.raises(redis.new, opts)
    assert.truthy(msg:find("pipedrive.redis", 1, true), msg)
    assert.truthy(msg:find(pattern, 1, true), msg .. " (expected " .. pattern .. ")")
    return msg
  end

  it("raises naming the field for misuse", function()
    raises({ hots = "x" }, "hots")
    raises({ port = "6379" }, "port")
    raises({ port = 0 }, "port")
    raises({ port = 1.5 }, "port")
    raises({ db = -1 }, "db")
    raises({ db = 1.5 }, "db")
    raises({ timeout = 0 }, "timeout")
    raises({ timeout = -1 }, "timeout")
    raises({ password = 5 }, "password")
    raises({ prefix = false }, "prefix")
    raises({ url = "redis://h", host = "h" }, "host")
    raises({ url = "redis://h", port = 1 }, "port")
    raises({ url = "redis://h", db = 1 }, "db")
    raises({ url = "redis://h", password = "x" }, "password")
    raises({ url = "http://h" }, "url")
    raises({ url = "not a url" }, "url")
    raises({ url = "redis://h/x" }, "url")
    raises("x", "options")
  end)

  it("never quotes a url's password when refusing it", function()
    local msg = raises({ url = "redis://:hunter2@h/notadb" }, "url")
    assert.is_nil(msg:find("hunter2", 1, true))
  end)

  it("pipedrive.redis and redis.new make the same class; tostring names host, port and db", function()
    local r = require("pipedrive").redis{ port = 7000, db = 2 }
    assert.equal("pipedrive.redis (127.0.0.1:7000 db 2)", tostring(r))
    assert.equal(getmetatable(redis.new{}), getmetatable(r))
    assert.equal("pipedrive.redis (unix.sock db 0)", tostring(redis.new{ path = "unix.sock" }))
    r:close()
  end)

  it("key joins parts after the prefix; token_key is a hash prefix", function()
    local r = redis.new{ prefix = "app:" }
    assert.equal("app:a:1:2.5:x", r:key("a", 1, 2.5, "x"))
    assert.equal("pipedrive:k", redis.new{}:key("k"))
    assert.has_error(function() r:key("a", {}) end)
    assert.has_error(function() r:key(true) end)
    local secret = "v1u:tok-EXAMPLE-1234567890"
    local k = r:token_key(secret)
    assert.equal(32, #k)
    assert.truthy(k:match("^%x+$"))
    assert.equal(core.sha256_hex(secret):sub(1, 32), k)
    assert.equal(k, redis.new{}:token_key(secret))
    assert.is_nil(k:find(secret, 1, true))
    assert.not_equal(k, r:token_key(secret .. "x"))
    assert.has_error(function() r:token_key("") end)
    assert.has_error(function() r:token_key(5) end)
  end)

  it("close is idempotent; every method raises afterwards", function()
    local r = redis.new{}
    assert.is_true(r:close())
    assert.is_true(r:close())
    assert.equal("pipedrive.redis (closed)", tostring(r))
    for _, call in ipairs({
      function() return r:command("PING") end, function() return r:eval("return 1") end,
      function() return r:key("a") end, function() return r:token_key("a") end,
      function() return r:now() end,
    }) do
      local msg = util.raises(call)
      assert.truthy(msg:find("pipedrive.redis: closed", 1, true), msg)
    end
  end)
end)

describe("pipedrive.redis against redis-server", function()
  if not redis_support.available() then
    pending("redis-server or pipedrive.hiredis is missing")
    return
  end
  local redis = require "pipedrive.redis"
  local srv

  setup(function() srv = redis_support.start() end)
  teardown(function() if srv then srv:stop() end end)

  it("does no I/O at construction: it connects on first use", function()
    local function connections()
      return tonumber(srv:cli("INFO", "stats"):match("total_connections_received:(%d+)"))
    end
    local before = connections()
    local r = redis.new{ port = srv.port }
    assert.equal(before + 1, connections()) -- only redis-cli's own
    assert.equal("PONG", r:command("PING"))
    assert.equal("PONG", r:command("PING"))
    assert.equal(before + 3, connections()) -- one for r, then redis-cli's second
    r:close()
  end)

  it("maps replies: strings with NUL bytes, integers, nil, status, nested arrays", function()
    local r = redis.new{ port = srv.port }
    assert.equal("OK", r:command("SET", "bin\0key", "a\0b\255"))
    assert.equal("a\0b\255", r:command("GET", "bin\0key"))
    assert.equal(false, r:command("GET", "missing"))
    local n = r:command("INCRBY", "counter", 41)
    assert.equal(41, n)
    assert.equal("integer", compat.math_type(n))
    assert.equal("PONG", r:command("PING"))
    assert.same({ 1, { "two", { 3, false } }, "OK" },
      r:eval("return {1, {'two', {3, false}}, redis.status_reply('OK')}"))
    assert.same({}, r:command("LRANGE", "none", 0, -1))
    assert.equal(false, r:command("BLPOP", "none", 0.01))
    r:close()
  end)

  it("a reply nested deeper than hiredis reads drops the connection; the next command reconnects", function()
    local r = redis.new{ port = srv.port }
    assert.same({ { { { { 1 } } } } }, r:eval("return {{{{{1}}}}}"))
    local v, err = r:eval("local t = {1} for i = 1, 12 do t = {t} end return t")
    assert.is_nil(v)
    assert.equal("redis_unavailable", err.kind)
    assert.equal("transfer", err.stage)
    assert.equal("PONG", r:command("PING"))
    r:close()
  end)

  it("sends integers as %d and floats in their shortest round-trip form", function()
    local r = redis.new{ port = srv.port }
    r:command("SET", "n1", 42)
    r:command("SET", "n2", 0.1)
    r:command("SET", "n3", 2 ^ 53)
    r:command("SET", "n4", -1.5e-7)
    assert.same({ "42", "0.1", "9007199254740992", "-1.5e-07" }, r:command("MGET", "n1", "n2", "n3", "n4"))
    assert.has_error(function() r:command("SET", "x", {}) end)
    assert.has_error(function() r:command("SET", "x", 0 / 0) end)
    assert.has_error(function() r:command(5) end)
    r:close()
  end)

  it("gives an error reply as kind redis with its code", function()
    local r = redis.new{ port = srv.port }
    r:command("LPUSH", "list", "x")
    local v, err = r:command("GET", "list")
    assert.is_nil(v)
    assert.equal("redis", err.kind)
    assert.equal("WRONGTYPE", err.code)
    assert.truthy(err.message:find("wrong kind", 1, true))
    assert.equal(getmetatable(err), core.error_mt)
    assert.is_nil(tostring(err):find("\n", 1, true))
    v, err = r:command("NOSUCHCOMMAND")
    assert.is_nil(v)
    assert.equal("ERR", err.code)
    v, err = r:eval("return {1, redis.error_reply('MYERR nested')}")
    assert.is_nil(v)
    assert.equal("MYERR", err.code)
    -- the connection is still usable after error replies
    assert.equal("PONG", r:command("PING"))
    r:close()
  end)

  it("selects the db given as an option or in the url", function()
    local a = redis.new{ port = srv.port, db = 3 }
    assert.equal("OK", a:command("SET", "where", "three"))
    assert.equal("three", srv:cli("-n", "3", "GET", "where"))
    assert.equal("", srv:cli("-n", "0", "GET", "where"))
    local b = redis.new{ url = srv.url .. "/3" }
    assert.equal("three", b:command("GET", "where"))
    assert.equal("pipedrive.redis (127.0.0.1:" .. srv.port .. " db 3)", tostring(b))
    a:close()
    b:close()
  end)

  it("loads a script once per connection, runs EVALSHA, and survives SCRIPT FLUSH", function()
    local r = redis.new{ port = srv.port }
    srv:cli("CONFIG", "RESETSTAT")
    local script = "return redis.call('INCRBY', KEYS[1], ARGV[1])"
    assert.equal(2, r:eval(script, { "ev" }, { 2 }))
    assert.equal(5, r:eval(script, { "ev" }, { 3 }))
    local stats = srv:cli("INFO", "commandstats")
    assert.equal("2", stats:match("cmdstat_evalsha:calls=(%d+)"))
    assert.equal("1", stats:match("cmdstat_script|load:calls=(%d+)") or stats:match("cmdstat_script:calls=(%d+)"))
    assert.is_nil(stats:match("cmdstat_eval:calls"))
    assert.equal("OK", srv:cli("SCRIPT", "FLUSH"))
    assert.equal(6, r:eval(script, { "ev" }, { 1 }))
    assert.equal(7, r:eval(script, { "ev" }, { 1 }))
    local v, err = r:eval("return redis.call('NOPE')")
    assert.is_nil(v)
    assert.equal("redis", err.kind)
    v, err = r:eval("this is not lua")
    assert.is_nil(v)
    assert.equal("redis", err.kind)
    assert.has_error(function() r:eval("return 1", { {} }) end)
    assert.has_error(function() r:eval("") end)
    r:close()
  end)

  it("now() is Redis's clock in float seconds", function()
    local r = redis.new{ port = srv.port }
    local t = assert(r:now())
    local unix = tonumber(srv:cli("TIME"):match("^(%d+)"))
    assert.is_true(math.abs(t - unix) < 2)
    assert.equal("float", compat.has_integers and math.type(t) or "float")
    r:close()
  end)
end)

describe("pipedrive.redis when the server goes away", function()
  if not redis_support.available() then
    pending("redis-server or pipedrive.hiredis is missing")
    return
  end
  local redis = require "pipedrive.redis"
  local srv

  before_each(function() srv = redis_support.start() end)
  after_each(function() if srv then srv:stop() end end)

  it("reconnects after the server restarts (EVALSHA loads again on the new connection)", function()
    local r = redis.new{ port = srv.port }
    assert.equal("OK", r:command("SET", "k", "v"))
    assert.equal(7, r:eval("return 7"))
    srv:restart()
    local v, err = r:command("GET", "k")
    -- the old connection is found broken: one failure of stage transfer, or a fresh answer
    if v == nil then
      assert.equal("redis_unavailable", err.kind)
      assert.equal("transfer", err.stage)
      v = r:command("GET", "k")
    end
    assert.equal(false, v) -- empty after the restart
    assert.equal(8, r:eval("return 8"))
    assert.equal(7, r:eval("return 7"))
    r:close()
  end)

  it("fails at once for retry_interval after a failed connect, then tries again", function()
    local INTERVAL = 2
    local r = redis.new{ port = srv.port, retry_interval = INTERVAL, timeout = 1 }
    assert.equal("PONG", r:command("PING"))
    srv:kill()
    local t0 = core.now()
    local v, err = r:command("PING")
    if v == nil and err.stage == "transfer" then
      t0 = core.now()
      v, err = r:command("PING")
    end
    local failed_at = core.now()
    assert.is_nil(v)
    assert.equal("redis_unavailable", err.kind)
    assert.equal("connect", err.stage)
    assert.is_true(failed_at - t0 < 1.5, "the first failure comes within the timeout")
    -- Redis is back, but within the interval no connect is attempted: every call fails at once
    srv:restart()
    for _ = 1, 50 do
      v, err = r:command("PING")
      assert.is_nil(v)
      assert.equal("redis_unavailable", err.kind)
      assert.equal("connect", err.stage)
    end
    assert.is_true(core.now() - failed_at < INTERVAL, "the checks ran within the interval")
    core.sleep(failed_at + INTERVAL + 0.05 - core.now())
    assert.equal("PONG", r:command("PING"))
    r:close()
  end)

  it("times out on a server that stopped answering, then recovers", function()
    local r = redis.new{ port = srv.port, timeout = 0.3 }
    assert.equal("PONG", r:command("PING"))
    srv:pause()
    local t0 = core.now()
    local v, err = r:command("PING")
    local took = core.now() - t0
    srv:resume()
    assert.is_nil(v)
    assert.equal("redis_unavailable", err.kind)
    assert.equal("transfer", err.stage)
    assert.is_true(took >= 0.25 and took < 2, "took " .. took)
    assert.equal("PONG", r:command("PING"))
    r:close()
  end)
end)

describe("pipedrive.redis with a password", function()
  if not redis_support.available() then
    pending("redis-server or pipedrive.hiredis is missing")
    return
  end
  local redis = require "pipedrive.redis"
  local PASSWORD = "pw-Secr3t-9f1c"
  local srv

  setup(function() srv = redis_support.start{ password = PASSWORD } end)
  teardown(function() if srv then srv:stop() end end)

  it("authenticates with the right password, as an option or in the url", function()
    local a = redis.new{ port = srv.port, password = PASSWORD }
    assert.equal("PONG", a:command("PING"))
    local b = redis.new{ url = "redis://:" .. PASSWORD .. "@127.0.0.1:" .. srv.port .. "/1" }
    assert.equal("OK", b:command("SET", "k", "v"))
    assert.equal("v", srv:cli("-n", "1", "GET", "k"))
    for _, r in ipairs({ a, b }) do
      assert.is_nil(tostring(r):find(PASSWORD, 1, true))
      for k, v in pairs(r) do
        assert.is_nil(tostring(k):find(PASSWORD, 1, true))
        assert.is_nil(tostring(v):find(PASSWORD, 1, true))
      end
      r:close()
    end
  end)

  it("a wrong or missing password is an error reply without the password", function()
    local wrong = "not-" .. PASSWORD
    local r = redis.new{ url = "redis://:" .. wrong .. "@127.0.0.1:" .. srv.port, retry_interval = 0 }
    local v, err = r:command("PING")
    assert.is_nil(v)
    assert.equal("redis", err.kind)
    assert.equal("WRONGPASS", err.code)
    assert.is_nil(tostring(err):find(wrong, 1, true))
    assert.is_nil(tostring(err):find(PASSWORD, 1, true))
    for _, x in pairs(err) do assert.is_nil(tostring(x):find(PASSWORD, 1, true)) end
    r:close()
    r = redis.new{ port = srv.port }
    v, err = r:command("GET", "k")
    assert.is_nil(v)
    assert.equal("NOAUTH", err.code)
    r:close()
  end)
end)
