-- The command line, end to end against the sandbox: bin/pipedrive as a child
-- process (support.process.run) and pipedrive.cli.run in this process with
-- captured output. Every answer is checked by value against the sandbox.
local compat = require "pipedrive.compat"
local sandbox = require "support.sandbox"
local proc = require "support.process"
local cli = require "pipedrive.cli"
local output = require "pipedrive.cli_output"
local core = require "pipedrive.core"

local TOKEN = "cli-Secret-Tok3n-6f1d2c"

-- The real script in a child process, with only the environment given.
local function sh(sb, args, env, stdin)
  local e = { PIPEDRIVE_API_TOKEN = TOKEN, PIPEDRIVE_BASE_URL = sb.url }
  for k, v in pairs(env or {}) do e[k] = v or nil end -- false removes a variable
  return proc.run{ script = "bin/pipedrive", args = args, env = e, stdin = stdin }
end

-- pipedrive.cli.run in this process: returns { code, stdout, stderr }.
local function run(sb, args, opts)
  opts = opts or {}
  local out, err = {}, {}
  local vars = { PIPEDRIVE_API_TOKEN = TOKEN, PIPEDRIVE_BASE_URL = sb.url }
  for k, v in pairs(opts.env or {}) do vars[k] = v or nil end
  local code = cli.run(args, {
    stdout = opts.stdout or function(s) out[#out + 1] = s end,
    stderr = function(s) err[#err + 1] = s end,
    getenv = function(k) return vars[k] end,
    isatty = opts.isatty or function() return false end,
    columns = opts.columns,
    read_file = opts.read_file,
  })
  return { code = code, stdout = table.concat(out), stderr = table.concat(err) }
end

local function lines(s)
  local t = {}
  for l in s:gmatch("([^\n]*)\n") do t[#t + 1] = l end
  return t
end

-- A table's lines split into cells on runs of two or more spaces.
local function cells(line)
  local t = {}
  for c in (line .. "  "):gmatch("(.-)%s%s+") do t[#t + 1] = c end
  return t
end

local function json(s) return assert(core.json_decode(s)) end

describe("pipedrive CLI", function()
  local sb

  setup(function() sb = sandbox.start{ api_token = TOKEN } end)
  teardown(function() sb.stop() end)
  before_each(function() sb.reset() end)

  describe("bin/pipedrive as a process", function()
    it("adds, searches, gets and deletes a deal; table and JSON by value", function()
      local r = sh(sb, { "deals", "add", "--title", "Acme renewal", "--value", "5000", "--currency", "EUR", "--json" })
      assert.equal(0, r.code, r.stderr)
      local deal = json(r.stdout)
      assert.equal("Acme renewal", deal.title)
      assert.equal(5000, deal.value)
      assert.equal("EUR", deal.currency)
      assert.equal("integer", compat.math_type(deal.id))

      r = sh(sb, { "deals", "search", "acme" })
      assert.equal(0, r.code, r.stderr)
      local l = lines(r.stdout)
      assert.same({ "ID", "TITLE", "STATUS", "VALUE", "OWNER", "STAGE" }, { compat.unpack(cells(l[1]), 1, 6) })
      assert.equal(2, #l)
      assert.is_nil(l[1]:find("PERSON", 1, true)) -- a default column empty in every row is left out
      local row = cells(l[2])
      assert.equal(tostring(deal.id), row[1])
      assert.equal("Acme renewal", row[2])
      assert.equal("open", row[3])
      assert.equal("5000 EUR", row[4])

      r = sh(sb, { "deals", "get", tostring(deal.id) })
      assert.equal(0, r.code, r.stderr)
      local view = {}
      for _, line in ipairs(lines(r.stdout)) do
        local k, v = line:match("^(%S+)%s*(.*)$")
        view[k] = v
      end
      assert.equal("Acme renewal", view.title)
      assert.equal("5000", view.value)
      assert.equal(tostring(deal.id), view.id)
      assert.equal("id", lines(r.stdout)[1]:match("^%S+"))

      r = sh(sb, { "deals", "delete", tostring(deal.id), "--json" })
      assert.equal(0, r.code, r.stderr)
      assert.equal(deal.id, json(r.stdout).id)
      r = sh(sb, { "deals", "get", tostring(deal.id) })
      assert.equal(3, r.code)
      assert.equal("", r.stdout)
      assert.equal(1, #lines(r.stderr))
      assert.matches("not_found (HTTP 404)", r.stderr, 1, true)
    end)

    it("adds a person with repeated --email flags, the first primary", function()
      local r = sh(sb, { "persons", "add", "--name", "Ann Zoë", "--email", "ann@x.io", "--email=ann2@x.io",
                         "--phone", "+1 555 0100", "--json" })
      assert.equal(0, r.code, r.stderr)
      local p = json(r.stdout)
      assert.equal("Ann Zoë", p.name)
      assert.equal("ann@x.io", p.emails[1].value)
      assert.is_true(p.emails[1].primary)
      assert.equal("ann2@x.io", p.emails[2].value)
      assert.equal("+1 555 0100", p.phones[1].value)
      local state = sb.state()
      assert.equal(1, #state.persons)
    end)

    it("exit codes: 0, 2 usage, 3 not found, 4 auth, 5 rate limited, 1 other API errors", function()
      assert.equal(0, sh(sb, { "users", "list" }).code)
      for _, argv in ipairs({ {}, { "dealz", "list" }, { "deals", "frobnicate" }, { "deals", "list", "--bogus", "1" },
                              { "deals", "get" }, { "deals" }, { "deals", "get", "1", "2" }, { "--jsn" },
                              { "deals", "list", "--limit" }, { "users", "list", "--all", "--json", "--jsonl" } }) do
        local r = sh(sb, argv)
        assert.equal(2, r.code, table.concat(argv, " "))
        assert.equal("", r.stdout)
        assert.matches("usage: pipedrive", r.stderr, 1, true)
      end
      local unknown = sh(sb, { "dealz", "list" })
      assert.matches("unknown resource 'dealz'", unknown.stderr, 1, true)
      local flag = sh(sb, { "deals", "list", "--bogus", "1" })
      assert.matches("deals list has no parameter --bogus", flag.stderr, 1, true)
      -- the module's own checks are usage errors too, naming the flag
      local missing = sh(sb, { "deals", "add", "--value", "3" })
      assert.equal(2, missing.code)
      assert.matches("deals add: --title is required", missing.stderr, 1, true)
      local bad = sh(sb, { "deals", "list", "--status", "sideways" })
      assert.equal(2, bad.code)
      assert.matches("--status must be one of", bad.stderr, 1, true)

      assert.equal(3, sh(sb, { "persons", "get", "424242" }).code)
      local auth = sh(sb, { "deals", "list" }, { PIPEDRIVE_API_TOKEN = "wrong-token-value" })
      assert.equal(4, auth.code)
      assert.matches("unauthorized (HTTP 401)", auth.stderr, 1, true)
      local none = sh(sb, { "deals", "list" }, { PIPEDRIVE_API_TOKEN = false })
      assert.equal(4, none.code)
      assert.matches("no credentials", none.stderr, 1, true)

      sb.admin("POST", "/_sandbox/faults", { { match = { path = "/api/v2/deals" }, fault = "status", status = 429,
                                               retry_after = 0, count = 3 } })
      local limited = sh(sb, { "deals", "list", "--retries", "1" })
      assert.equal(5, limited.code)
      assert.matches("rate_limited (HTTP 429)", limited.stderr, 1, true)
      assert.matches("after 2 attempts", limited.stderr, 1, true)
      sb.admin("DELETE", "/_sandbox/faults")

      sb.admin("POST", "/_sandbox/faults", { { match = { path = "/api/v2/deals" }, fault = "status", status = 500,
                                               count = 1 } })
      local server = sh(sb, { "deals", "list", "--retries", "0" })
      assert.equal(1, server.code)
      assert.equal(1, #lines(server.stderr))
      sb.admin("DELETE", "/_sandbox/faults")
    end)

    it("never prints the API token, whatever fails", function()
      local runs = {
        sh(sb, { "deals", "list" }),
        sh(sb, { "deals", "get", "999" }),
        sh(sb, { "deals", "add" }),
        sh(sb, { "deals", "list", "--json", "--base-url", "http://127.0.0.1:1" , "--retries", "0" }),
        sh(sb, { "deals", "list", "--api-token", TOKEN }, { PIPEDRIVE_API_TOKEN = false }),
        sh(sb, { "deals", "list", "--api-token", TOKEN .. "x" }, { PIPEDRIVE_API_TOKEN = false }),
        sh(sb, { "webhooks", "add", "--subscription-url", "https://hooks.example/x", "--event-action", "*",
                 "--event-object", "deal", "--name", "cli", "--http-auth-user", "u",
                 "--http-auth-password", "hook-Pw-91" }),
        sh(sb, { "webhooks", "list", "--json" }),
        sh(sb, { "--help" }),
      }
      for _, r in ipairs(runs) do
        assert.is_nil(r.stdout:find(TOKEN, 1, true))
        assert.is_nil(r.stderr:find(TOKEN, 1, true))
        assert.is_nil(r.stdout:find("hook-Pw-91", 1, true))
      end
      assert.equal(4, runs[6].code)
      assert.equal(0, runs[5].code)
      assert.matches("warning: --api-token is visible", runs[5].stderr, 1, true)
      assert.equal(1, runs[4].code)
      assert.matches("network", runs[4].stderr, 1, true)
    end)

    it("--help, <resource> --help, <action> --help and --version come from the operations table", function()
      local r = sh(sb, { "--help" })
      assert.equal(0, r.code)
      for _, name in ipairs(require("pipedrive.operations").RESOURCES) do
        assert.matches("\n  " .. name .. " ", r.stdout, 1, true)
      end
      assert.matches("exit codes: 0 ok", r.stdout, 1, true)
      r = sh(sb, { "deals", "--help" })
      assert.equal(0, r.code)
      assert.matches("pipedrive deals add --title TEXT", r.stdout, 1, true)
      assert.matches("pipedrive deals get ID", r.stdout, 1, true)
      assert.matches("pipedrive deals search TERM", r.stdout, 1, true)
      r = sh(sb, { "deals", "list", "--help" })
      assert.equal(0, r.code)
      assert.matches("--status A,B%s+one of open, won, lost, deleted, all_not_deleted; repeatable", r.stdout)
      assert.matches("--ids ID,ID%s+repeatable; v2 only", r.stdout)
      assert.matches("GET /api/v2/deals", r.stdout, 1, true)
      r = sh(sb, { "webhooks", "add", "--help" })
      assert.matches("--param-version TEXT", r.stdout, 1, true)
      r = sh(sb, { "--version" })
      assert.equal(0, r.code)
      assert.matches("^pipedrive 0%.1%.0 ", r.stdout)
    end)

    it("takes the company domain from PIPEDRIVE_COMPANY_DOMAIN", function()
      local r = sh(sb, { "users", "list", "--retries", "0" },
        { PIPEDRIVE_BASE_URL = false, PIPEDRIVE_COMPANY_DOMAIN = "bad domain!" })
      assert.equal(2, r.code)
      assert.matches("PIPEDRIVE_COMPANY_DOMAIN", r.stderr, 1, true)
    end)
  end)

  describe("pipedrive.cli.run", function()
    it("reaches every resource's actions", function()
      local org = json(run(sb, { "organizations", "add", "--name", "Acme GmbH", "--address", "Main St 1", "--json" })
        .stdout)
      assert.equal("Acme GmbH", org.name)
      local person = json(run(sb, { "persons", "add", "--name", "Bo", "--org-id", tostring(org.id), "--json" }).stdout)
      local lead = run(sb, { "leads", "add", "--title", "Lead one", "--person_id", tostring(person.id),
                             "--value", "120 usd", "--json" })
      assert.equal(0, lead.code, lead.stderr)
      lead = json(lead.stdout)
      assert.same({ amount = 120, currency = "USD" }, { amount = lead.value.amount, currency = lead.value.currency })
      local got = run(sb, { "leads", "get", lead.id, "--fields", "id,title,value", "--json" })
      assert.same({ id = lead.id, title = "Lead one", value = { amount = 120, currency = "USD" } }, json(got.stdout))
      local leads = run(sb, { "leads", "list" })
      assert.equal("Lead one", cells(lines(leads.stdout)[2])[2])
      assert.equal(0, run(sb, { "leads", "delete", lead.id }).code)
      assert.equal(3, run(sb, { "leads", "get", lead.id }).code)

      local act = json(run(sb, { "activities", "add", "--subject", "Call Bo", "--type", "call",
                                 "--person-id", tostring(person.id), "--done", "--json" }).stdout)
      assert.equal("Call Bo", act.subject)
      assert.is_true(act.done)
      local upd = run(sb, { "activities", "update", tostring(act.id), "--no-done", "--json" })
      assert.equal(0, upd.code, upd.stderr)
      assert.is_false(json(upd.stdout).done)

      local orgs = run(sb, { "organizations", "search", "acme", "--jsonl" })
      local hit = json(lines(orgs.stdout)[1])
      assert.equal(org.id, hit.item.id)
      assert.is_number(hit.result_score)

      local stages = json(run(sb, { "stages", "list", "--json" }).stdout)
      local pipelines = json(run(sb, { "pipelines", "list", "--json" }).stdout)
      local filters = json(run(sb, { "filters", "list", "--type", "deals", "--json" }).stdout)
      local state = sb.state()
      assert.equal(#state.stages, #stages)
      assert.equal(#state.pipelines, #pipelines)
      assert.is_true(#filters >= 1)
      for _, f in ipairs(filters) do assert.equal("deals", f.type) end

      local users = run(sb, { "users", "list", "--fields", "id,name" })
      local ul = lines(users.stdout)
      assert.same({ "ID", "NAME" }, cells(ul[1]))
      assert.equal(#state.users + 1, #ul)

      local hook = run(sb, { "webhooks", "add", "--subscription-url", "https://hooks.example/p", "--event-action",
                             "added", "--event-object", "deal", "--name", "cli-hook", "--param-version", "1.0",
                             "--json" })
      assert.equal(0, hook.code, hook.stderr)
      hook = json(hook.stdout)
      assert.equal("1.0", hook.version)
      local hooks = lines(run(sb, { "webhooks", "list" }).stdout)
      assert.equal(2, #hooks)
      assert.same({ tostring(hook.id), "cli-hook", "deal.added", "https://hooks.example/p", "1.0", "1" },
        cells(hooks[2]))
      local del = run(sb, { "webhooks", "delete", tostring(hook.id) })
      assert.equal("deleted webhook " .. hook.id .. "\n", del.stdout)
      assert.equal(0, #sb.state().webhooks)
    end)

    it("runs list, search, get, update and delete of every resource that has them", function()
      local pd = sb.client()
      local person = assert(pd.persons.add{ name = "Quokka Person" })
      local made = {
        deals = assert(pd.deals.add{ title = "Quokka deal" }),
        persons = person,
        organizations = assert(pd.organizations.add{ name = "Quokka org" }),
        leads = assert(pd.leads.add{ title = "Quokka lead", person_id = person.id }),
        activities = assert(pd.activities.add{ subject = "Quokka call", type = "call" }),
      }
      local label = { deals = "title", leads = "title", activities = "subject", persons = "name",
                      organizations = "name" }
      for rname, rec in pairs(made) do
        local id = tostring(rec.id)
        local listed = json(run(sb, { rname, "list", "--json" }).stdout)
        local found = false
        for _, x in ipairs(listed) do found = found or x.id == rec.id end
        assert.is_true(found, rname .. " list")
        if require("pipedrive.operations")[rname].search then
          local hits = json(run(sb, { rname, "search", "quokka", "--json" }).stdout)
          assert.equal(rec.id, hits[1].item.id, rname .. " search")
        end
        assert.equal(rec.id, json(run(sb, { rname, "get", id, "--json" }).stdout).id, rname .. " get")
        local upd = run(sb, { rname, "update", id, "--" .. label[rname], "Renamed " .. rname, "--json" })
        assert.equal(0, upd.code, upd.stderr)
        assert.equal("Renamed " .. rname, json(upd.stdout)[label[rname]])
        local fields = run(sb, { rname, "get", id, "--fields", label[rname] })
        assert.equal("Renamed " .. rname, fields.stdout:match("^%S+%s+(.-)\n$"), rname .. " get --fields")
        assert.equal(0, run(sb, { rname, "delete", id }).code, rname .. " delete")
        assert.equal(3, run(sb, { rname, "get", id }).code, rname .. " get after delete")
      end
      pd.close()
    end)

    it("types values from the operations table: integers, booleans, arrays, --name=value", function()
      sb.clear_requests()
      assert.equal(0, run(sb, { "deals", "list", "--status=open,won", "--limit", "50", "--owner-id", "1" }).code)
      assert.equal(0, run(sb, { "deals", "search", "fixture", "--exact-match", "--param-fields", "title" }).code)
      local d = run(sb, { "deals", "add", "--title", "Typed", "--label-ids", "1,2", "--label-ids", "3",
                          "--probability", "12.5", "--visible-to", "3", "--json" })
      assert.equal(0, d.code, d.stderr)
      local reqs = sb.requests()
      assert.equal("limit=50&owner_id=1&status=open%2Cwon", reqs[1].query_string)
      assert.equal("exact_match=true&fields=title&term=fixture", reqs[2].query_string)
      local body = json(reqs[3].body)
      assert.same({ 1, 2, 3 }, body.label_ids)
      assert.equal(12.5, body.probability)
      assert.equal("integer", compat.math_type(body.visible_to))
      local bad = run(sb, { "deals", "list", "--limit", "lots" })
      assert.equal(2, bad.code)
      assert.matches("--limit must be an integer, got 'lots'", bad.stderr, 1, true)
      local badb = run(sb, { "deals", "search", "x1", "--exact-match=maybe" })
      assert.equal(2, badb.code)
      assert.matches("--exact_match takes true or false", badb.stderr, 1, true)
    end)

    it("--json-body and --data @file give complex bodies; flags override them", function()
      local files = { ["/x/body.json"] = '{"title":"From file","value":250,"currency":"USD"}' }
      local r = run(sb, { "deals", "add", "--data", "@/x/body.json", "--currency", "EUR", "--json" },
        { read_file = function(p) return files[p] end })
      assert.equal(0, r.code, r.stderr)
      local deal = json(r.stdout)
      assert.equal("From file", deal.title)
      assert.equal(250, deal.value)
      assert.equal("EUR", deal.currency)
      r = run(sb, { "organizations", "add", "--json-body", '{"name":"Nested","address":{"value":"Elm 2"}}', "--json" })
      assert.equal(0, r.code, r.stderr)
      assert.equal("Elm 2", json(r.stdout).address.value)
      r = run(sb, { "deals", "add", "--json-body", "[1,2]" })
      assert.equal(2, r.code)
      r = run(sb, { "deals", "add", "--json-body", "{nope" })
      assert.equal(2, r.code)
      assert.matches("not valid JSON", r.stderr, 1, true)
      -- the real script reads --data @- from stdin
      local p = sh(sb, { "deals", "add", "--data", "@-", "--json" }, nil, '{"title":"From stdin"}')
      assert.equal(0, p.code, p.stderr)
      assert.equal("From stdin", json(p.stdout).title)
    end)

    it("--all pages through everything with each; JSON lines, JSON and table agree", function()
      sb.bulk("deal", 230, "Bulk")
      sb.clear_requests()
      local r = run(sb, { "deals", "list", "--all", "--limit", "100", "--jsonl", "--progress" })
      assert.equal(0, r.code, r.stderr)
      local ids, seen = {}, {}
      for _, l in ipairs(lines(r.stdout)) do
        local rec = json(l)
        assert.is_nil(seen[rec.id])
        seen[rec.id] = true
        ids[#ids + 1] = rec.id
      end
      assert.equal(230, #ids)
      local pages = 0
      for _, q in ipairs(sb.requests()) do
        if q.path == "/api/v2/deals" then pages = pages + 1 end
      end
      assert.equal(3, pages)
      assert.same({ "pipedrive: 100 deals fetched", "pipedrive: 200 deals fetched",
                    "pipedrive: 230 deals fetched, done" }, lines(r.stderr))

      local whole = run(sb, { "deals", "list", "--all", "--limit", "100", "--json", "--fields", "id,title" })
      local arr = json(whole.stdout)
      assert.equal(230, #arr)
      assert.same({ id = ids[1], title = "Bulk 1" }, arr[1])
      assert.equal("", whole.stderr) -- no progress: stderr is not a terminal
      local tbl = run(sb, { "deals", "list", "--all", "--limit", "100", "--max-items", "150" })
      assert.equal(151, #lines(tbl.stdout))

      -- v1 pages by offset
      local v1 = run(sb, { "deals", "list", "--all", "--limit", "100", "--jsonl", "--api-version", "v1" })
      assert.equal(230, #lines(v1.stdout))
      local tty = run(sb, { "users", "list", "--all" }, { isatty = function(fd) return fd == 2 end })
      assert.matches("\r\27[K", tty.stderr, 1, true)
    end)

    it("--all --jsonl keeps memory constant", function()
      sb.bulk("deal", 3000, "Mem")
      collectgarbage()
      local samples, n = {}, 0
      local r = run(sb, { "deals", "list", "--all", "--limit", "100", "--jsonl" }, {
        stdout = function()
          n = n + 1
          if n % 250 == 0 then
            collectgarbage()
            samples[#samples + 1] = collectgarbage("count")
          end
        end,
      })
      assert.equal(0, r.code, r.stderr)
      assert.equal(3000, n)
      local lo, hi = math.huge, 0
      for i = 2, #samples do
        lo, hi = math.min(lo, samples[i]), math.max(hi, samples[i])
      end
      assert.is_true(hi - lo < 512, ("heap grew by %.0f KiB"):format(hi - lo))
    end)

    it("tables fit the width, cut UTF-8 whole and print no control characters", function()
      local title = "Zoë 日本語のとても長い取引名 with a long tail \27[31mred\nnext line"
      assert.equal(0, run(sb, { "deals", "add", "--title", title }).code)
      local r = run(sb, { "deals", "search", "tail", "--width", "40" })
      assert.equal(0, r.code, r.stderr)
      for _, l in ipairs(lines(r.stdout)) do
        assert.is_true(output.width(l) <= 40, l)
        assert.truthy(compat.utf8_len(l))
        assert.is_nil(l:find("%c"))
      end
      assert.equal(2, #lines(r.stdout))
      assert.matches("…", r.stdout, 1, true)
      -- a terminal's own width when stdout is one
      r = run(sb, { "deals", "search", "tail" }, { isatty = function(fd) return fd == 1 end,
                                                   columns = function() return 50 end })
      for _, l in ipairs(lines(r.stdout)) do assert.is_true(output.width(l) <= 50) end
      -- not a terminal: nothing cut
      r = run(sb, { "deals", "search", "tail", "--fields", "title" })
      assert.equal(output.clean(title), lines(r.stdout)[2])
      assert.equal(4, output.width("日本"))
      assert.equal("日本…", output.truncate("日本語の", 5))
    end)

    it("uses an OAuth token file with --token-file", function()
      local sbo = sandbox.start{ api_token = TOKEN, args = { "--oauth-client", "cli-client:cli-secret-77",
                                                            "--oauth-auto-approve" } }
      local dir = os.tmpname()
      os.remove(dir)
      assert(os.execute("mkdir -m 700 " .. dir))
      local path = dir .. "/token.json"
      local pipedrive = require "pipedrive"
      local httpd = require "pipedrive.httpd"
      local srv = httpd.listen{ port = 0, handler = function() return 204, {}, "" end }
      local port = srv:port()
      srv:close()
      local pd = pipedrive.new{ oauth = { client_id = "cli-client", client_secret = "cli-secret-77",
                                          redirect_uri = ("http://127.0.0.1:%d/callback"):format(port),
                                          store = assert(pipedrive.token_file(path)) }, oauth_url = sbo.url }
      assert(pd.oauth.login{ quiet = true, timeout = 20, open = function(url)
        os.execute("curl -s -L -o /dev/null --max-time 10 '" .. url:gsub("'", "%%27") .. "' &")
      end })
      pd.close()
      local env = { PIPEDRIVE_API_TOKEN = false, PIPEDRIVE_BASE_URL = sbo.url, PIPEDRIVE_CLIENT_ID = "cli-client",
                    PIPEDRIVE_CLIENT_SECRET = "cli-secret-77", PIPEDRIVE_OAUTH_URL = sbo.url }
      local r = run(sbo, { "users", "list", "--token-file", path, "--json" }, { env = env })
      assert.equal(0, r.code, r.stderr)
      assert.is_true(#json(r.stdout) >= 1)
      env.PIPEDRIVE_TOKEN_FILE = path
      r = run(sbo, { "deals", "list" }, { env = env })
      assert.equal(0, r.code, r.stderr)
      env.PIPEDRIVE_CLIENT_SECRET = false
      r = run(sbo, { "deals", "list" }, { env = env })
      assert.equal(4, r.code)
      assert.matches("PIPEDRIVE_CLIENT_SECRET", r.stderr, 1, true)
      local token = core.json_decode(assert(core.read_file(path))).access_token
      assert.is_nil(r.stderr:find(token, 1, true))
      sbo.stop()
      os.execute("rm -rf " .. dir)
    end)
  end)

  describe("what a new user runs into (issue 11)", function()
    it("a list that stops at one page says so on stderr, and only then", function()
      sb.bulk("deal", 127, "Paged")
      local r = sh(sb, { "deals", "list" })
      assert.equal(0, r.code, r.stderr)
      assert.equal(101, #lines(r.stdout))
      local note = lines(r.stderr)
      assert.equal(1, #note)
      local cursor = note[1]:match("^pipedrive: showed 100 deals; there are more: %-%-all fetches every page"
        .. " %(or %-%-cursor (%S+) for the next page%)$")
      assert.truthy(cursor, r.stderr)
      -- the note is on stderr only: --jsonl stdout stays records
      local j = run(sb, { "deals", "list", "--jsonl" })
      assert.equal(100, #lines(j.stdout))
      for _, l in ipairs(lines(j.stdout)) do assert.is_number(json(l).id) end
      assert.equal(r.stderr, j.stderr)
      -- the cursor it gives is the next page, and the last page says nothing
      local rest = run(sb, { "deals", "list", "--cursor", cursor, "--jsonl" })
      assert.equal(0, rest.code, rest.stderr)
      assert.equal(27, #lines(rest.stdout))
      assert.equal("Paged 101", json(lines(rest.stdout)[1]).title)
      assert.equal("", rest.stderr)
      local whole = run(sb, { "deals", "list", "--limit", "200", "--json" })
      assert.equal(127, #json(whole.stdout))
      assert.equal("", whole.stderr)
      assert.equal("", run(sb, { "deals", "list", "--all" }).stderr)
      -- v1 pages by offset
      local v1 = run(sb, { "deals", "list", "--api-version", "v1", "--limit", "50", "--fields", "id" })
      assert.equal(51, #lines(v1.stdout))
      assert.equal("pipedrive: showed 50 deals; there are more: --all fetches every page (or --start 50 for the"
        .. " next page)\n", v1.stderr)
      -- a search that has more pages tells the cursor
      local hits = run(sb, { "deals", "search", "paged", "--limit", "10", "--json" })
      assert.equal(10, #json(hits.stdout))
      assert.matches("^pipedrive: showed 10 results; there are more: %-%-cursor %S+ gives the next page\n$", hits.stderr)
    end)

    it("--insecure allows plain http to a host that is not loopback, and only with the flag", function()
      local port = sb.url:match(":(%d+)$")
      local url = "http://0.0.0.0:" .. port -- not loopback by name, yet this machine
      local r = sh(sb, { "users", "list", "--base-url", url })
      assert.equal(2, r.code)
      assert.equal("", r.stdout)
      assert.equal("pipedrive: --base-url uses plain http to 0.0.0.0, which is not this machine: use https://0.0.0.0:"
        .. port .. ", or --insecure to send the credentials unencrypted anyway\n", r.stderr)
      r = sh(sb, { "users", "list", "--base-url", url, "--insecure", "--json" })
      assert.equal(0, r.code, r.stderr)
      assert.equal(#sb.state().users, #json(r.stdout))
      r = sh(sb, { "users", "list", "--insecure" }, { PIPEDRIVE_BASE_URL = url })
      assert.equal(0, r.code, r.stderr)
      assert.matches("\n  --insecure ", sh(sb, { "--help" }).stdout, 1, true)
    end)

    it("refuses a base URL with a path, giving the URL without it", function()
      local r = run(sb, { "deals", "list", "--base-url", sb.url .. "/api/v1" })
      assert.equal(2, r.code)
      assert.equal("", r.stdout)
      assert.equal("pipedrive: --base-url must not have a path (the command adds /api/v1 or /api/v2 itself): use "
        .. sb.url .. "\n", r.stderr)
      r = run(sb, { "deals", "list" }, { env = { PIPEDRIVE_BASE_URL = sb.url .. "/api/v2/" } })
      assert.equal(2, r.code)
      assert.matches("^pipedrive: PIPEDRIVE_BASE_URL must not have a path", r.stderr)
      -- a query is refused without being quoted (it could hold a token)
      r = run(sb, { "deals", "list", "--base-url", sb.url .. "/?api_token=" .. TOKEN })
      assert.equal(2, r.code)
      assert.is_nil(r.stderr:find(TOKEN, 1, true))
      assert.matches("use " .. sb.url .. "\n", r.stderr, 1, true)
      sb.clear_requests()
      r = run(sb, { "deals", "list", "--base-url", sb.url .. "/" })
      assert.equal(0, r.code, r.stderr)
      assert.equal("/api/v2/deals", sb.requests()[1].path)
    end)

    it("suggests the nearest flag, resource or action", function()
      local cases = {
        { { "deals", "list", "--fileds", "id" },
          "pipedrive: deals list has no parameter --fileds; did you mean --fields?" },
        { { "deals", "list", "--owner-idd", "1" },
          "pipedrive: deals list has no parameter --owner-idd; did you mean --owner-id?" },
        { { "deals", "list", "--owner_idd", "1" },
          "pipedrive: deals list has no parameter --owner_idd; did you mean --owner_id?" },
        { { "deals", "search", "x", "--exact-mach" },
          "pipedrive: deals search has no parameter --exact-mach; did you mean --exact-match?" },
        { { "--jsn" }, "pipedrive: unknown option --jsn; did you mean --json?" },
        { { "dealz", "list" }, "pipedrive: unknown resource 'dealz'; did you mean deals?" },
        { { "logni" }, "pipedrive: unknown resource 'logni'; did you mean login?" },
        { { "deals", "lsit" }, "pipedrive: deals has no action 'lsit'; did you mean list?" },
        { { "login", "--tokn-file", "x" }, "pipedrive: login has no option --tokn-file; did you mean --token-file?" },
      }
      for _, c in ipairs(cases) do
        local r = run(sb, c[1])
        assert.equal(2, r.code, table.concat(c[1], " "))
        assert.equal(c[2], lines(r.stderr)[1])
        assert.matches("^usage: pipedrive", lines(r.stderr)[2])
      end
      -- nothing near: no guess
      local far = run(sb, { "deals", "list", "--zzzzzz", "1" })
      assert.equal("pipedrive: deals list has no parameter --zzzzzz", lines(far.stderr)[1])
      assert.equal("pipedrive: deals has no action 'frobnicate' (actions: list, add, search, get, update, delete)",
        lines(run(sb, { "deals", "frobnicate" }).stderr)[1])
    end)

    it("--value 'AMOUNT CUR' on deals, as tables show it", function()
      local r = sh(sb, { "deals", "add", "--title", "Priced", "--value", "120 USD", "--json" })
      assert.equal(0, r.code, r.stderr)
      local d = json(r.stdout)
      assert.equal(120, d.value)
      assert.equal("USD", d.currency)
      r = run(sb, { "deals", "update", tostring(d.id), "--value", "99.5 eur", "--json" })
      assert.equal(0, r.code, r.stderr)
      assert.equal(99.5, json(r.stdout).value)
      assert.equal("EUR", json(r.stdout).currency)
      r = run(sb, { "deals", "list", "--fields", "id,value,currency" })
      assert.same({ tostring(d.id), "99.5", "EUR" }, cells(lines(r.stdout)[2]))
      r = run(sb, { "deals", "list" })
      assert.equal("99.5 EUR", cells(lines(r.stdout)[2])[4])
      r = run(sb, { "deals", "add", "--title", "Both", "--value", "5 USD", "--currency", "EUR" })
      assert.equal(2, r.code)
      assert.matches("--value says USD but --currency says EUR", r.stderr, 1, true)
      assert.equal(0, run(sb, { "deals", "add", "--title", "Both", "--value", "5 USD", "--currency", "usd" }).code)
      r = run(sb, { "deals", "add", "--title", "Bad", "--value", "lots" })
      assert.equal(2, r.code)
      assert.matches("--value must be a number, got 'lots'", r.stderr, 1, true)
    end)

    it("dotted --fields reach into nested records, through a default column's name too", function()
      local pd = sb.client()
      local person = assert(pd.persons.add{ name = "Nested Ann", emails = { { value = "ann@nest.io", primary = true } } })
      assert(pd.deals.add{ title = "Owned", person_id = person.id })
      pd.close()
      local r = run(sb, { "persons", "list", "--fields", "id,name,emails.1.value" })
      assert.equal(0, r.code, r.stderr)
      assert.same({ tostring(person.id), "Nested Ann", "ann@nest.io" }, cells(lines(r.stdout)[2]))
      assert.equal("", r.stderr)
      -- v1 deals: owner is user_id = { name }; owner.name goes there
      r = run(sb, { "deals", "list", "--api-version", "v1", "--fields", "title,owner.name,user_id.email" })
      assert.same({ "TITLE", "OWNER.NAME", "USER_ID.EMAIL" }, cells(lines(r.stdout)[1]))
      local owner = sb.state().users[1]
      assert.same({ "Owned", owner.name, owner.email }, cells(lines(r.stdout)[2]))
      assert.equal("", r.stderr)
      -- search items: owner = { id }, stage = { name }
      r = run(sb, { "deals", "search", "owned", "--fields", "title,stage.name,owner.id" })
      assert.same({ "Owned", "Qualified", tostring(owner.id) }, cells(lines(r.stdout)[2]))
      -- v2 deals hold owner_id, a number: the column is empty and stderr says why
      r = run(sb, { "deals", "list", "--fields", "id,owner.name,titel" })
      assert.equal(0, r.code)
      assert.same({ "pipedrive: warning: --fields owner.name is empty in every record: owner_id holds a number,"
                      .. " not an object (--json shows all fields)",
                    "pipedrive: warning: --fields titel is empty in every record: the records have no titel; did you"
                      .. " mean title? (--json shows all fields)" }, lines(r.stderr))
      local all = run(sb, { "deals", "list", "--all", "--jsonl", "--fields", "id,owner.name" })
      assert.equal(1, #lines(all.stdout))
      assert.matches("--fields owner.name is empty in every record", all.stderr, 1, true)
    end)

    it("booleans such as --done=false work where the operation has them (activities)", function()
      local pd = sb.client()
      local open = assert(pd.activities.add{ subject = "Open call", type = "call" })
      local done = assert(pd.activities.add{ subject = "Done call", type = "call", done = true })
      pd.close()
      local function ids(args)
        local r = run(sb, args)
        assert.equal(0, r.code, r.stderr)
        local t = {}
        for _, a in ipairs(json(r.stdout)) do t[#t + 1] = a.id end
        return t
      end
      assert.same({ open.id }, ids({ "activities", "list", "--done=false", "--json" }))
      assert.same({ open.id }, ids({ "activities", "list", "--no-done", "--json" }))
      assert.same({ done.id }, ids({ "activities", "list", "--done", "--json" }))
      local r = run(sb, { "deals", "list", "--done=false" })
      assert.equal(2, r.code)
      assert.equal("pipedrive: deals list has no parameter --done", lines(r.stderr)[1])
    end)

    describe("pipedrive login", function()
      local sbo, dir, path, redirect
      local SECRET = "cli-Login-s3cret-9d"
      setup(function()
        sbo = sandbox.start{ api_token = TOKEN, args = { "--oauth-client", "cli-login:" .. SECRET,
                                                        "--oauth-auto-approve" } }
        dir = os.tmpname()
        os.remove(dir)
        assert(os.execute("mkdir -m 700 " .. dir))
        path = dir .. "/token.json"
        local srv = require("pipedrive.httpd").listen{ port = 0, handler = function() return 204, {}, "" end }
        redirect = ("http://127.0.0.1:%d/callback"):format(srv:port())
        srv:close()
      end)
      teardown(function()
        sbo.stop()
        os.execute("rm -rf " .. dir)
      end)
      before_each(function() os.remove(path) end)

      -- curl plays the browser: the sandbox approves at once and redirects to the login's port.
      local BROWSER = "curl -s -L -o /dev/null --max-time 10"
      local function env(extra)
        local e = { PIPEDRIVE_API_TOKEN = false, PIPEDRIVE_BASE_URL = false, PIPEDRIVE_OAUTH_URL = sbo.url,
                    PIPEDRIVE_CLIENT_ID = "cli-login", PIPEDRIVE_CLIENT_SECRET = SECRET,
                    PIPEDRIVE_REDIRECT_URI = redirect, BROWSER = BROWSER }
        for k, v in pairs(extra or {}) do e[k] = v end
        return e
      end

      it("logs in through the browser's redirect, saves the token file, and the other verbs use it", function()
        local r = sh(sbo, { "login", "--token-file", path, "--open", "--timeout", "20" }, env())
        assert.equal(0, r.code, r.stderr)
        assert.equal("logged in: the token is saved in " .. path .. "; calls go to " .. sbo.url .. "\n", r.stdout)
        local url = r.stderr:match("\n  (%S+)\n")
        assert.matches("^" .. sbo.url:gsub("%p", "%%%0") .. "/oauth/authorize%?client_id=cli%-login&", url)
        assert.equal(384, core.file_info(path).mode % 512) -- 0600
        local token = json(assert(core.read_file(path, 65536)))
        assert.is_string(token.access_token)
        assert.is_string(token.refresh_token)
        for _, text in ipairs({ r.stdout, r.stderr }) do
          assert.is_nil(text:find(SECRET, 1, true))
          assert.is_nil(text:find(token.access_token, 1, true))
          assert.is_nil(text:find(token.refresh_token, 1, true))
        end
        -- the other verbs read the file the login wrote
        local users = sh(sbo, { "users", "list", "--json" }, env{ PIPEDRIVE_TOKEN_FILE = path })
        assert.equal(0, users.code, users.stderr)
        assert.equal(#sbo.state().users, #json(users.stdout))
        local last = sbo.requests()
        assert.equal("/api/v1/users", last[#last].path)
        assert.is_string(last[#last].headers.authorization) -- Bearer, masked in the sandbox's log
        assert.is_nil(last[#last].headers["x-api-token"])
      end)

      it("takes the client id, secret file and redirect from flags; PIPEDRIVE_TOKEN_FILE for the file", function()
        local r = run(sbo, { "login", "--client-id", "cli-login", "--client-secret-file", "/x/secret",
                             "--redirect-uri", redirect, "--oauth-url", sbo.url, "--open", "--timeout", "20" },
          { env = env{ PIPEDRIVE_CLIENT_ID = false, PIPEDRIVE_CLIENT_SECRET = false, PIPEDRIVE_REDIRECT_URI = false,
                       PIPEDRIVE_OAUTH_URL = false, PIPEDRIVE_TOKEN_FILE = path },
            read_file = function(p) return p == "/x/secret" and SECRET .. "\n" or nil end })
        assert.equal(0, r.code, r.stderr)
        assert.is_string(json(assert(core.read_file(path, 65536))).access_token)
        assert.is_nil(r.stderr:find(SECRET, 1, true))
      end)

      it("never takes or prints the client secret on argv; usage and auth failures have their exit codes", function()
        local r = sh(sbo, { "login", "--token-file", path, "--client-secret", SECRET }, env())
        assert.equal(2, r.code)
        assert.is_nil(r.stderr:find(SECRET, 1, true))
        assert.matches("login takes no --client-secret", r.stderr, 1, true)
        r = sh(sbo, { "login", "--token-file", path, "--client-secret=" .. SECRET }, env())
        assert.equal(2, r.code)
        assert.is_nil(r.stderr:find(SECRET, 1, true))

        r = sh(sbo, { "login", SECRET }, env())
        assert.equal(2, r.code)
        assert.equal("pipedrive: login takes options only, not arguments\n"
          .. "usage: pipedrive login --token-file PATH ...  (pipedrive login --help)\n", r.stderr)
        r = sh(sbo, { "login", "--token-file", path }, env{ PIPEDRIVE_CLIENT_SECRET = false })
        assert.equal(2, r.code)
        assert.matches("set PIPEDRIVE_CLIENT_SECRET or give --client-secret-file", r.stderr, 1, true)
        r = sh(sbo, { "login" }, env())
        assert.equal(2, r.code)
        assert.matches("give --token-file PATH or set PIPEDRIVE_TOKEN_FILE", r.stderr, 1, true)
        r = sh(sbo, { "login", "--token-file", path, "--redirect-uri", "https://my.app/cb" }, env())
        assert.equal(2, r.code)
        assert.matches("the redirect URI must be http://127.0.0.1:PORT/PATH", r.stderr, 1, true)
        r = sh(sbo, { "login", "--token-file", path, "--oauth-url", sbo.url .. "/oauth" }, env())
        assert.equal(2, r.code)
        assert.matches("--oauth-url must not have a path", r.stderr, 1, true)

        -- a wrong secret: Pipedrive refuses the exchange (exit 4), nothing is saved or printed
        local wrong = SECRET .. "-wrong"
        r = sh(sbo, { "login", "--token-file", path, "--open", "--timeout", "20" }, env{ PIPEDRIVE_CLIENT_SECRET = wrong })
        assert.equal(4, r.code)
        assert.matches("invalid_client (HTTP 401)", r.stderr, 1, true)
        assert.is_nil(r.stderr:find(wrong, 1, true))
        assert.is_nil(core.file_info(path))
        -- no browser came: exit 1 after the timeout
        r = sh(sbo, { "login", "--token-file", path, "--timeout", "1" }, env())
        assert.equal(1, r.code)
        assert.matches("pipedrive: timeout: no redirect reached " .. redirect .. " within 1 s", r.stderr, 1, true)
        -- the redirect's port is taken: one line, exit 1
        local srv = require("pipedrive.httpd").listen{ port = tonumber(redirect:match(":(%d+)/")),
                                                      handler = function() return 204, {}, "" end }
        r = run(sbo, { "login", "--token-file", path, "--timeout", "1" }, { env = env() })
        srv:close()
        assert.equal(1, r.code)
        assert.matches("cannot listen on 127.0.0.1 port", r.stderr, 1, true)
      end)
    end)

    it("every example of --help and every synopsis of <resource> --help runs", function()
      sb.bulk("deal", 12, "Example")
      -- Words of a shell line: 'quoted' or plain; a redirection is the shell's.
      local function split(line)
        local t, pos = {}, 1
        line = line:gsub("%s*>.*$", "")
        while pos <= #line do
          local q = line:match("^'([^']*)'", pos)
          if q then
            t[#t + 1] = q
            pos = pos + #q + 2
          else
            local w = line:match("^(%S+)", pos)
            if not w then break end
            t[#t + 1] = w
            pos = pos + #w
          end
          pos = line:find("%S", pos) or #line + 1
        end
        return t
      end
      local help = run(sb, { "--help" }).stdout
      local examples = help:match("\nexamples:\n(.-)\n\n")
      local n = 0
      for line in examples:gmatch("[^\n]+") do
        local argv = split(line:match("^%s*pipedrive%s+(.*)$"))
        local r = run(sb, argv)
        assert.equal(0, r.code, line .. ": " .. r.stderr)
        n = n + 1
      end
      assert.is_true(n >= 4)

      local value = { title = "Help title", name = "Help name", subscription_url = "https://hooks.example/h",
                      event_action = "create", event_object = "deal", TERM = "help" }
      for _, rname in ipairs(require("pipedrive.operations").RESOURCES) do
        for line in run(sb, { rname, "--help" }).stdout:gmatch("\n  pipedrive ([^\n]+)") do
          -- the original component's actions (the overlay's); generated ones have specs of their own
          local action = line:match("^%S+ (%S+)")
          if require("pipedrive.operations.overlay")[rname][action] then
          sb.reset()
          local pd = sb.client()
          local person = assert(pd.persons.add{ name = "Help person" })
          local made = {
            deals = pd.deals.add{ title = "Help deal" }, persons = person,
            organizations = pd.organizations.add{ name = "Help org" },
            leads = pd.leads.add{ title = "Help lead", person_id = person.id },
            activities = pd.activities.add{ subject = "Help call", type = "call" },
            webhooks = pd.webhooks.add{ subscription_url = "https://hooks.example/w", event_action = "*",
                                        event_object = "deal", name = "help" },
          }
          pd.close()
          local argv = {}
          value.person_id = person.id -- (--person_id ID | --organization_id ID): the first one
          local synopsis = line:gsub(" %[%-%-param value %.%.%.%]$", ""):gsub("%((%-%-%S+ %S+)[^)]*%)", "%1")
          local pending
          for w in synopsis:gmatch("%S+") do
            if pending then
              argv[#argv + 1] = value[pending]
              pending = nil
            elseif w == "ID" then
              argv[#argv + 1] = tostring(made[rname].id)
            elseif w == "TERM" then
              argv[#argv + 1] = value.TERM
            elseif w:match("^%-%-") then
              argv[#argv + 1] = w
              pending = w:sub(3)
            else
              argv[#argv + 1] = w
            end
          end
          argv[#argv + 1] = "--json"
          local r = run(sb, argv)
          assert.equal(0, r.code, line .. ": " .. r.stderr)
          end
        end
      end
    end)
  end)
end)
