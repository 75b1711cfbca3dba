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
end)
