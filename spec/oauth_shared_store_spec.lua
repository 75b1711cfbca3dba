-- An OAuth token store shared by several clients (as pipedrive.ngx.token_store is
-- by nginx workers): `load` gives every client the newest token, `lock` makes the
-- refreshes one at a time. Here without nginx, against the sandbox's OAuth server.
local pipedrive = require "pipedrive"
local sandbox = require "support.sandbox"

local CLIENT_ID, CLIENT_SECRET = "shared-client", "shared-secret-P4"

local free_port = require("support.util").free_port

-- The shape pipedrive.ngx.token_store returns, kept in a Lua table.
local function table_store()
  local s = { saved = nil, locks = 0, loads = 0 }
  s.store = {
    on_token = function(t) s.saved = t end,
    on_revoke = function() s.saved = nil end,
    load = function()
      s.loads = s.loads + 1
      return s.saved
    end,
    lock = function(fn)
      assert(not s.held, "the lock is taken twice")
      s.locks, s.held = s.locks + 1, true
      local r = { pcall(fn) }
      s.held = false
      if not r[1] then error(r[2], 0) end
      return r[2], r[3]
    end,
  }
  return s
end

describe("OAuth with a shared token store", function()
  local sb

  setup(function()
    sb = sandbox.start{ args = { "--oauth-client", CLIENT_ID .. ":" .. CLIENT_SECRET, "--oauth-auto-approve",
                                 "--token-ttl", "3" } }
  end)
  teardown(function() sb.stop() end)

  local function client(store)
    return pipedrive.new{ oauth = { client_id = CLIENT_ID, client_secret = CLIENT_SECRET, store = store,
                                    redirect_uri = ("http://127.0.0.1:%d/callback"):format(free_port()) },
                          oauth_url = sb.url, base_url = sb.url }
  end
  local function refreshes() return select(2, sb.admin("GET", "/_sandbox/oauth")).refreshes end

  it("refreshes once for all its clients; the others take the stored token", function()
    local s = table_store()
    local a = client(s.store)
    assert(a.oauth.login{ quiet = true, timeout = 20, open = function(url)
      os.execute("curl -s -L -o /dev/null --max-time 10 '" .. url:gsub("'", "%%27") .. "' &")
    end })
    assert.truthy(s.saved)
    s.store.token = s.saved
    local b, c = client(s.store), client(s.store)
    assert(b.users.list())
    sb.admin("POST", "/_sandbox/oauth/expire")
    local before = refreshes()
    assert(a.users.list()) -- expired: a refreshes under the lock and stores the new token
    assert.equal(before + 1, refreshes())
    assert.equal(1, s.locks)
    assert(b.users.list()) -- b's own copy is expired too, but the store has the new one
    assert(c.users.list())
    assert.equal(before + 1, refreshes())
    assert.equal(1, s.locks)
    assert.equal(s.saved.access_token, b.oauth.token().access_token)
  end)

  it("adopts, under the lock, a token another client stored while it waited", function()
    local s = table_store()
    local a = client(s.store)
    assert(a.oauth.login{ quiet = true, timeout = 20, open = function(url)
      os.execute("curl -s -L -o /dev/null --max-time 10 '" .. url:gsub("'", "%%27") .. "' &")
    end })
    local first = s.saved
    s.store.token = first
    -- b refreshes while a's newer token arrives in the store just before b gets the lock
    local lock = s.store.lock
    s.store.lock = function(fn)
      s.saved = { access_token = "from-another-worker", refresh_token = first.refresh_token, token_type = "Bearer",
                  expires_in = 3600, expires_at = os.time() + 3600, api_domain = first.api_domain }
      return lock(fn)
    end
    local b = client(s.store)
    local before = refreshes()
    assert.is_true(b.oauth.refresh())
    assert.equal(before, refreshes())
    assert.equal("from-another-worker", b.oauth.token().access_token)
  end)
end)
