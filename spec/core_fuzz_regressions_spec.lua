-- What the fuzzers and sanitizers found in the C core, one case per finding,
-- written as plain calls so the normal suite replays them (and `make asan`
-- replays them under ASan+UBSan). The raw fuzzer inputs are kept in
-- fuzz/regressions/<target>/ and replayed by `make fuzz-regress`.
local compat = require "pipedrive.compat"
local core = require "pipedrive.core"

local V1_LIST = { method = "GET", path = "/v1/deals", paging = "offset" }

local function page(additional_data)
  return core.parse_response({ status = 200, headers = {},
    body = '{"success":true,"data":[{"id":1}],"additional_data":' .. additional_data .. "}" }, V1_LIST)
end

describe("fuzz regressions", function()
  -- fuzz/regressions/response/next_start_overflow: start + limit was added
  -- in doubles and converted back, undefined behaviour past 2^63.
  it("parse_response leaves next_start out when start + limit overflows", function()
    local _, info = page('{"pagination":{"start":9223372036854775807,"limit":1,"more_items_in_collection":true}}')
    assert.is_true(info.more)
    assert.is_nil(info.next_start)
    _, info = page('{"pagination":{"start":9223372036854775000,"limit":9223372036854775000,' ..
      '"more_items_in_collection":true}}')
    assert.is_nil(info.next_start)
  end)

  it("parse_response still adds start and limit exactly near the top of the range", function()
    local _, info = page('{"pagination":{"start":9223372036854775806,"limit":1,"more_items_in_collection":true}}')
    if not compat.has_integers then -- doubles: past 2^53 the sum is not exact, so there is no next_start
      assert.is_nil(info.next_start)
      return
    end
    assert.equal(compat.maxinteger, info.next_start)
    assert.equal("integer", compat.math_type(info.next_start))
    _, info = page('{"start":9007199254740993,"limit":2,"more_items_in_collection":true}')
    assert.equal(9007199254740995, info.next_start) -- exact: not rounded through a double
  end)
end)
