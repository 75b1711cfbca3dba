-- Failures: runtime errors come back as nil, err (one printable line, no
-- secrets); misuse raises before anything is sent and changes nothing.
local sandbox = require "support.sandbox"
local pipedrive = require "pipedrive"

local raises = require("support.util").raises

describe("errors", function()
  local sb, pd

  setup(function()
    sb = sandbox.start{ api_token = "s3cret-token-value" }
    pd = sb.client()
  end)

  teardown(function()
    pd.close()
    sb.stop()
  end)

  it("a wrong token gives kind unauthorized, status 401, one line without the token", function()
    local bad = pipedrive.new{ api_token = "wrong-T0KEN-xyz", base_url = sb.url }
    local deals, err = bad.deals.list()
    assert.is_nil(deals)
    assert.equal("unauthorized", err.kind)
    assert.equal(401, err.status)
    assert.equal("GET", err.method)
    assert.equal("/api/v2/deals", err.path)
    local line = tostring(err)
    assert.is_nil(line:find("\n"))
    assert.is_nil(line:find("wrong-T0KEN-xyz", 1, true))
    assert.matches("unauthorized", line)
    assert.is_nil(tostring(bad):find("wrong-T0KEN-xyz", 1, true))
    bad.close()
  end)

  it("a missing record gives not_found with Pipedrive's message", function()
    local _, err = pd.deals.get(999999)
    assert.equal("not_found", err.kind)
    assert.equal(404, err.status)
    assert.equal("/api/v2/deals/999999", err.path)
    assert.is_string(err.message)
    assert.is_table(err.body)
    assert.is_false(err.body.success)
  end)

  it("a refused connection gives kind network", function()
    local dead = pipedrive.new{ api_token = "x", base_url = "http://127.0.0.1:1", timeout = 2 }
    local v, err = dead.deals.list()
    assert.is_nil(v)
    assert.equal("network", err.kind)
    assert.is_nil(tostring(err):find("\n"))
    dead.close()
  end)

  it("an answer the server rejects gives kind validation and changes nothing", function()
    local before = sb.state()
    local v, err = pd.deals.list{ filter_id = 987654 }
    assert.is_nil(v)
    assert.equal("validation", err.kind)
    assert.equal(400, err.status)
    assert.same(before, sb.state())
  end)

  describe("misuse raises naming the function and field, and sends nothing", function()
    local cases = {
      { "deals.add without title", function() return pd.deals.add{ value = 5 } end,
        "pipedrive.deals.add: field 'title' is required" },
      { "deals.add with a title of the wrong type", function() return pd.deals.add{ title = 5 } end,
        "pipedrive.deals.add: field 'title' must be a string" },
      { "deals.add with an unknown field", function() return pd.deals.add{ title = "x", titel = "y" } end,
        "pipedrive.deals.add: unknown field 'titel'" },
      { "deals.get with a bad id", function() return pd.deals.get("abc") end,
        "pipedrive.deals.get: field 'id' must be a positive integer id" },
      { "deals.get without id", function() return pd.deals.get() end,
        "pipedrive.deals.get: field 'id' is required" },
      { "deals.search with a one-letter term", function() return pd.deals.search{ term = "a" } end,
        "pipedrive.deals.search: field 'term' must have at least 2 characters" },
      { "deals.search without term", function() return pd.deals.search{} end,
        "pipedrive.deals.search: field 'term' is required" },
      { "deals.list with a bad status", function() return pd.deals.list{ status = "closed" } end,
        "pipedrive.deals.list: field 'status' must be one of" },
      { "deals.list with a limit over 500", function() return pd.deals.list{ limit = 501 } end,
        "pipedrive.deals.list: field 'limit' must be at most 500" },
      { "leads.get with a numeric id", function() return pd.leads.get(5) end,
        "pipedrive.leads.get: field 'id' must be a lead id" },
      { "persons.add with a bad email entry", function() return pd.persons.add{ name = "x", email = { 5 } } end,
        "pipedrive.persons.add: field 'email' must be" },
      { "organizations.list with a non-table", function() return pd.organizations.list(5) end,
        "pipedrive.organizations.list: expected a table of arguments" },
      { "deals.each with a bad max_items", function() return pd.deals.each{ max_items = -1 } end,
        "pipedrive.deals.each: max_items must be" },
    }
    for _, c in ipairs(cases) do
      it(c[1], function()
        sb.clear_requests()
        local before = sb.state()
        local msg = raises(c[2])
        assert.matches(c[3], msg, 1, true)
        assert.same({}, sb.requests())
        assert.same(before, sb.state())
      end)
    end

    it("a one-letter term is fine with exact_match", function()
      local hits = assert(pd.deals.search{ term = "a", exact_match = true })
      assert.equal(0, #hits)
    end)
  end)

  it("pipedrive.new refuses bad options", function()
    assert.matches("api_token", raises(pipedrive.new, { base_url = sb.url }))
    assert.matches("unknown option 'apitoken'", raises(pipedrive.new, { apitoken = "x" }))
    assert.matches("plain http", raises(pipedrive.new, { api_token = "x", base_url = "http://example.com" }))
    assert.matches("api must be", raises(pipedrive.new, { api_token = "x", api = "v3" }))
  end)

  it("an OAuth token whose api_domain hides another host (user@host) sends nothing", function()
    local token = { access_token = "at-1234567890", refresh_token = "rt-1234567890", token_type = "Bearer",
                    expires_at = os.time() + 3600, api_domain = "http://localhost@evil.example" }
    local hops = {}
    local c = pipedrive.new{ oauth = { client_id = "c", client_secret = "s", redirect_uri = "http://127.0.0.1:1/cb",
                                       store = { token = token, on_token = function() return true end } },
                             oauth_url = sb.url, retries = false,
                             log = function(e) if e.url then hops[#hops + 1] = e.url end end }
    assert.equal("https://api.pipedrive.com", c.base_url())
    local v, err = c.deals.list()
    assert.is_nil(v)
    assert.equal("reauth_required", err.kind)
    assert.matches("api_domain is refused: it must not hold a user name or password", tostring(err))
    assert.is_nil(tostring(err):find("evil", 1, true))
    assert.same({}, hops)
    c.close()
    assert.matches("oauth_url: must not hold a user name", raises(pipedrive.new, {
      oauth = { client_id = "c", client_secret = "s", redirect_uri = "http://127.0.0.1:1/cb" },
      oauth_url = "http://127.0.0.1@evil.example" }))
  end)

  it("pipedrive.new reads base_url as libcurl does: user information, queries and other schemes are refused", function()
    -- libcurl would connect to evil.example: the part before @ is a user name, not the host.
    local msg = raises(pipedrive.new, { api_token = "x", base_url = "http://localhost@evil.example" })
    assert.equal("pipedrive.new: base_url must not hold a user name or password (user@host)", msg:gsub("^.-:%d+: ", ""))
    msg = raises(pipedrive.new, { api_token = "x", base_url = "https://u:s3cret@api.pipedrive.com" })
    assert.is_nil(msg:find("s3cret", 1, true))
    assert.matches("user name or password", msg)
    assert.matches("query or fragment", raises(pipedrive.new, { api_token = "x", base_url = "https://h/?a=1" }))
    assert.matches("got 'ftp:'", raises(pipedrive.new, { api_token = "x", base_url = "ftp://h/" }))
    assert.matches("absolute https:// URL", raises(pipedrive.new, { api_token = "x", base_url = "api.pipedrive.com" }))
    -- A base ending in the API's own prefix names the fix; another path (a proxy's prefix) stays.
    msg = raises(pipedrive.new, { api_token = "x", base_url = "https://acme.pipedrive.com/api/v1/" })
    assert.equal("pipedrive.new: base_url must not end in the API's path /api/v1 (the client adds /api/v1 and"
      .. " /api/v2): use https://acme.pipedrive.com", msg:gsub("^.-:%d+: ", ""))
    assert.matches("use https://h$", raises(pipedrive.new, { api_token = "x", base_url = "https://h/v1" }))
    assert.matches("use https://h$", raises(pipedrive.new, { api_token = "x", base_url = "https://h/API/V2" }))
    local proxied = pipedrive.new{ api_token = "x", base_url = "https://proxy.example/pipedrive/" }
    assert.equal("https://proxy.example/pipedrive", proxied.base_url())
    proxied.close()
    -- Loopback over plain http by any of its names; the base is what was parsed, without trailing slashes.
    for _, url in ipairs({ "http://127.0.0.1:9/", "http://LOCALHOST:9", "http://[::1]:9//" }) do
      local c = pipedrive.new{ api_token = "x", base_url = url }
      assert.equal((url:lower():gsub("/+$", "")), c.base_url())
      c.close()
    end
  end)
end)
