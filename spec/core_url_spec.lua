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
