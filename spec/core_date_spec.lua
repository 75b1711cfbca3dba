-- Unit specs of csrc/date.c: core.iso8601, the one date parser, and the HTTP
-- date of Retry-After as parse_response reads it.
local compat = require "pipedrive.compat"
local core = require "pipedrive.core"

local iso = core.iso8601

describe("core.iso8601", function()
  it("reads a bare date as midnight UTC", function()
    assert.equal(0, iso("1970-01-01"))
    assert.equal(1704153600, iso("2024-01-02"))
    assert.equal("integer", compat.math_type(iso("2024-01-02")))
  end)

  it("reads v1's 'YYYY-MM-DD HH:MM:SS' as UTC, and the T form", function()
    assert.equal(1704164645, iso("2024-01-02 03:04:05"))
    assert.equal(1704164645, iso("2024-01-02T03:04:05"))
    assert.equal(1704164645, iso("2024-01-02T03:04:05Z"))
    assert.equal(1704164645, iso("2024-01-02T03:04:05z"))
  end)

  it("applies offsets with or without a colon", function()
    assert.equal(1704164645 - 3600, iso("2024-01-02T03:04:05+01:00"))
    assert.equal(1704164645 + 5400, iso("2024-01-02T03:04:05-0130"))
  end)

  it("keeps a fraction as a float", function()
    local t = iso("2024-01-02T03:04:05.250Z")
    assert.equal(1704164645.25, t)
    assert.equal("float", compat.math_type(t))
    assert.equal(1704164645.5 - 7200, iso("2024-01-02T03:04:05.5+02:00"))
  end)

  it("counts leap years right", function()
    assert.equal(1709164800, iso("2024-02-29"))
    assert.equal(951782400, iso("2000-02-29"))
    assert.equal(4107542400, iso("2100-03-01"))
  end)

  it("gives nil for what is no date, a day that does not exist included", function()
    for _, s in ipairs{ "", "x", "2024-1-02", "2024-02-30", "2023-02-29", "1900-02-29", "2024-13-01", "2024-00-10",
                        "2024-01-02T03:04", "2024-01-02T24:00:00", "2024-01-02T03:60:00", "2024-01-02T03:04:05.Z",
                        "2024-01-02T03:04:05+1", "2024-01-02T03:04:05 UTC", "2024-01-02X03:04:05",
                        "2024-01-02T03:04:05Z ", " 2024-01-02", "2024-01-02\0" } do
      assert.is_nil(iso(s), s)
    end
    assert.is_nil(iso(nil))
    assert.is_nil(iso(1704153600))
    assert.is_nil(iso({}))
  end)
end)

describe("core.retry_after and err.rate_limit", function()
  it("retry_after reads Retry-After seconds, an HTTP date, or x-ratelimit-reset on a 429", function()
    assert.equal(7, core.retry_after{ status = 503, headers = { ["retry-after"] = "7" } })
    assert.equal(2, core.retry_after{ status = 429, headers = { ["x-ratelimit-reset"] = "2" } })
    assert.is_nil(core.retry_after{ status = 503, headers = { ["x-ratelimit-reset"] = "2" } })
    assert.is_nil(core.retry_after{ status = 503 })
    assert.equal(0, core.retry_after{ status = 429, headers = { ["retry-after"] = "Sun, 06 Nov 1994 08:49:37 GMT" } })
    local later = os.date("!%a, %d %b %Y %H:%M:%S GMT", os.time() + 120)
    local s = core.retry_after{ status = 429, headers = { ["retry-after"] = later } }
    assert.is_true(s >= 115 and s <= 120, tostring(s))
  end)

  it("a failed answer carries the rate-limit figures, so Lua never reads those headers", function()
    local _, err = core.parse_response({ status = 429, body = '{"success":false,"error":"slow down"}', headers = {
      ["x-ratelimit-limit"] = "80", ["x-ratelimit-remaining"] = "0", ["x-ratelimit-reset"] = "2",
      ["x-daily-requests-left"] = "1000" } }, { method = "GET", path = "/api/v2/deals" })
    assert.equal(2, err.retry_after)
    assert.same({ limit = 80, remaining = 0, reset = 2, daily_left = 1000 }, err.rate_limit)
    _, err = core.parse_response({ status = 500, body = "" }, {})
    assert.same({}, err.rate_limit)
  end)

  it("raises for a retry_after argument that is not a table", function()
    local raises = require("support.util").raises
    assert.matches("retry_after: expected a response table", raises(core.retry_after, "x"), 1, true)
  end)
end)
