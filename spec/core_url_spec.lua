-- Unit specs of core.url_encode (csrc/url.c): RFC 3986 percent-encoding.
local core = require "pipedrive.core"

local enc = core.url_encode

describe("core.url_encode", function()
  it("keeps the unreserved characters", function()
    local unreserved = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~"
    assert.equal(unreserved, enc(unreserved))
  end)

  it("encodes reserved and other ASCII characters with upper-case hex", function()
    assert.equal("%20", enc(" "))
    assert.equal("%2B", enc("+"))
    assert.equal("%26%3D%3F%23%2F%3A%40%21%24%27%28%29%2A%2C%3B%5B%5D%25",
      enc("&=?#/:@!$'()*,;[]%"))
    assert.equal("%22%3C%3E%5C%5E%60%7B%7C%7D", enc('"<>\\^`{|}'))
    assert.equal("a%20b%26c%3Dd", enc("a b&c=d"))
  end)

  it("encodes every byte that is not unreserved, control bytes and NUL included", function()
    assert.equal("%00%01%0A%0D%1F%7F", enc("\0\1\n\r\31\127"))
    for b = 0, 255 do
      local c = string.char(b)
      local e = enc(c)
      if c:match("^[%w%-%._~]$") then
        assert.equal(c, e)
      else
        assert.equal(string.format("%%%02X", b), e)
      end
    end
  end)

  it("encodes UTF-8 byte by byte", function()
    assert.equal("Zo%C3%AB%20%C3%85ngstr%C3%B6m%20%E6%97%A5%E6%9C%AC", enc("Zoë Ångström 日本"))
    assert.equal("%F0%9F%98%80", enc("😀"))
    assert.equal("Zo%C3%AB%20%26%20Co%2F%3F", enc("Zoë & Co/?"))
  end)

  it("encodes the empty string and long strings", function()
    assert.equal("", enc(""))
    local long = ("a b"):rep(100000)
    assert.equal(("a%20b"):rep(100000), enc(long))
  end)

  it("refuses anything but a string", function()
    for _, v in ipairs { 5, true, {}, core.null } do
      local ok, msg = pcall(enc, v)
      assert.is_false(ok)
      assert.matches("^url_encode: expected a string, got ", msg)
    end
    local ok, msg = pcall(enc)
    assert.is_false(ok)
    assert.matches("url_encode: expected a string, got no value", msg, 1, true)
  end)
end)

describe("core.url_parse", function()
  local parse = core.url_parse
  local raises = require("support.util").raises

  it("gives the parts of an https URL, the default port filled in", function()
    local u = assert(parse("https://api.pipedrive.com"))
    assert.equal("https", u.scheme)
    assert.equal("api.pipedrive.com", u.host)
    assert.equal(443, u.port)
    assert.equal("/", u.path)
    assert.is_nil(u.query)
    assert.is_nil(u.fragment)
    assert.is_false(u.has_userinfo)
    assert.equal("https://api.pipedrive.com", u.origin)
  end)

  it("lower-cases scheme and host, keeps path and query as they are, removes dot segments", function()
    local u = assert(parse("HTTP://LocalHost:8080/A/../B/c?X=1&y=%2F#Frag"))
    assert.equal("http", u.scheme)
    assert.equal("localhost", u.host)
    assert.equal(8080, u.port)
    assert.equal("/B/c", u.path)
    assert.equal("X=1&y=%2F", u.query)
    assert.equal("Frag", u.fragment)
    assert.equal("http://localhost:8080", u.origin)
  end)

  it("keeps the brackets of an IPv6 host; the origin leaves out a default port", function()
    local u = assert(parse("http://[::1]:80/x"))
    assert.equal("[::1]", u.host)
    assert.equal(80, u.port)
    assert.equal("http://[::1]", u.origin)
    u = assert(parse("https://h.example:443/"))
    assert.equal("https://h.example", u.origin)
    u = assert(parse("http://h.example:443/"))
    assert.equal("http://h.example:443", u.origin)
    assert.equal(443, u.port)
  end)

  it("reports userinfo, and the host is the one libcurl connects to", function()
    local u = assert(parse("https://user:secret@evil.example/"))
    assert.is_true(u.has_userinfo)
    assert.equal("evil.example", u.host)
    u = assert(parse("https://good.example@evil.example/"))
    assert.is_true(u.has_userinfo)
    assert.equal("evil.example", u.host)
  end)

  it("parses other schemes libcurl knows, leaving the choice to the caller", function()
    local u = assert(parse("ftp://files.example/a"))
    assert.equal("ftp", u.scheme)
    assert.equal(21, u.port)
  end)

  it("refuses what is not an absolute URL with a host, never quoting the URL", function()
    local cases = { "nope", "/relative/path", "https://", "http://a b/", "http://x\n/", "https://x.com:99999/",
                    "file:///etc/passwd", "https://h.example/a\0b", "" }
    for _, s in ipairs(cases) do
      local u, msg = parse(s)
      assert.is_nil(u, s)
      assert.is_string(msg)
      assert.truthy(#msg > 0)
    end
    local _, msg = parse("https://tok3n-s3cret@:99999/?api_token=tok3n-s3cret")
    assert.is_string(msg)
    assert.is_nil(msg:find("tok3n", 1, true))
    assert.equal("URL has a bad port number", select(2, parse("https://x.com:99999/")))
    assert.equal("URL has no valid scheme", select(2, parse("nope")))
  end)

  it("refuses an overlong URL without parsing it", function()
    local u, msg = parse("https://h.example/" .. ("a"):rep(70000))
    assert.is_nil(u)
    assert.equal("malformed URL", msg)
  end)

  it("raises for an argument that is not a string", function()
    assert.matches("url_parse: expected a string, got nil", raises(parse, nil), 1, true)
    assert.matches("url_parse: expected a string, got table", raises(parse, {}), 1, true)
  end)
end)

describe("core.url_resolve", function()
  local resolve = core.url_resolve
  local base = "https://a.example:8443/dir/page?x=1"

  it("resolves every form of reference a Location header may hold", function()
    assert.equal("https://a.example:8443/x", resolve(base, "/x"))
    assert.equal("https://a.example:8443/dir/y?z", resolve(base, "y?z"))
    assert.equal("https://a.example:8443/up", resolve(base, "../up"))
    assert.equal("https://other.example/p", resolve(base, "//other.example/p"))
    assert.equal("https://a.example:8443/dir/page?q=1", resolve(base, "?q=1"))
    assert.equal("https://a.example:8443/dir/page?x=1#frag", resolve(base, "#frag"))
    assert.equal("http://e.example/", resolve(base, "http://e.example/"))
  end)

  it("gives nil, message for a broken base or reference", function()
    local u, msg = resolve("not a url", "/x")
    assert.is_nil(u)
    assert.is_string(msg)
    u, msg = resolve(base, "http://bad host/")
    assert.is_nil(u)
    assert.is_string(msg)
    assert.is_nil(msg:find("bad host", 1, true))
  end)

  it("raises for arguments that are not strings", function()
    local raises = require("support.util").raises
    assert.matches("url_resolve: expected a string, got nil", raises(resolve, base, nil), 1, true)
    assert.matches("url_resolve: expected a string, got number", raises(resolve, 1, "/x"), 1, true)
  end)
end)

describe("core.is_loopback", function()
  local lo = core.is_loopback

  it("is true for localhost, 127.0.0.0/8 and ::1 in its spellings", function()
    for _, h in ipairs{ "localhost", "LocalHost", "localhost.", "127.0.0.1", "127.255.1.2", "[::1]", "::1",
                        "[0:0:0:0:0:0:0:1]", "::ffff:127.0.0.1" } do
      assert.is_true(lo(h), h)
    end
  end)

  it("is false for every other host, lookalikes included", function()
    for _, h in ipairs{ "", "128.0.0.1", "10.0.0.1", "[::2]", "::", "localhost.evil.example", "127.0.0.1.evil.example",
                        "evil-localhost", "[::1", "127.1", "localhost\0" } do
      assert.is_false(lo(h), h)
    end
  end)

  it("takes the host url_parse gives", function()
    assert.is_true(lo(core.url_parse("http://[::1]:9/").host))
    assert.is_true(lo(core.url_parse("http://LOCALHOST:9/").host))
    assert.is_false(lo(core.url_parse("http://example.com/").host))
  end)

  it("raises for a host that is not a string", function()
    local raises = require("support.util").raises
    assert.matches("is_loopback: expected a string, got nil", raises(lo, nil), 1, true)
  end)
end)
