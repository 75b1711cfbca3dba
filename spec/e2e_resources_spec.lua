-- Every seed action end to end against a sandbox, in both API modes:
-- add, get, list, each, search, delete for deals, leads, organizations, persons,
-- and list/each for users, filters, stages, pipelines.
local compat = require "pipedrive.compat"
local sandbox = require "support.sandbox"
local pipedrive = require "pipedrive"

local function id_of(ref)
  -- v1 records nest related ids ({ value = 5, name = ... }); v2 keeps them flat.
  if type(ref) == "table" then return ref.value or ref.id end
  return ref
end

for _, api in ipairs({ "v2", "v1" }) do
  describe("API " .. api, function()
    local sb, pd

    setup(function()
      sb = sandbox.start()
      pd = sb.client{ api = api }
    end)

    teardown(function()
      pd.close()
      sb.stop()
    end)

    describe("organizations", function()
      it("add, get, list, search, delete", function()
        local org, info = pd.organizations.add{ name = "Globex Ångström" }
        assert.is_table(org, tostring(info))
        assert.equal("integer", compat.math_type(org.id))
        assert.equal("Globex Ångström", org.name)
        assert.equal(api == "v1" and 201 or 200, info.status)
        assert.equal(api, info.api)

        local got = assert(pd.organizations.get(org.id))
        assert.equal(org.id, got.id)
        assert.equal("Globex Ångström", got.name)

        local list = assert(pd.organizations.list())
        assert.equal(1, #list)
        assert.equal(org.id, list[1].id)

        local hits = assert(pd.organizations.search{ term = "globex" })
        assert.equal(1, #hits)
        assert.equal(org.id, hits[1].item.id)
        assert.is_number(hits[1].result_score)

        local del, dinfo = pd.organizations.delete(org.id)
        assert.same({ id = org.id }, del)
        assert.equal(200, dinfo.status)

        local gone, err = pd.organizations.get(org.id)
        assert.is_nil(gone)
        assert.equal("not_found", err.kind)
        assert.equal(404, err.status)
      end)
    end)

    describe("persons", function()
      it("add with email and phone lists, get, list, search, delete", function()
        local org = assert(pd.organizations.add{ name = "Initech" })
        local p = assert(pd.persons.add{
          name = "Zoë Müller", org_id = org.id,
          email = { { value = "zoe@initech.example", primary = true, label = "work" } },
          phone = "+49 30 1234567",
        })
        assert.equal("integer", compat.math_type(p.id))
        assert.equal("Zoë Müller", p.name)
        local emails = api == "v2" and p.emails or p.email
        assert.equal("zoe@initech.example", emails[1].value)
        assert.is_true(emails[1].primary)
        local phones = api == "v2" and p.phones or p.phone
        assert.equal("+49 30 1234567", phones[1].value)
        assert.equal(org.id, id_of(p.org_id))

        local got = assert(pd.persons.get(p.id))
        assert.equal("Zoë Müller", got.name)

        local hits = assert(pd.persons.search("Zoë"))
        assert.equal(1, #hits)
        assert.equal(p.id, hits[1].item.id)
        local by_mail = assert(pd.persons.search{ term = "zoe@initech.example", fields = { "email" } })
        assert.equal(1, #by_mail)
        local none = assert(pd.persons.search{ term = "Zoë", fields = "email" })
        assert.equal(0, #none)

        assert.same({ id = p.id }, (pd.persons.delete(p.id)))
        local _, err = pd.persons.get(p.id)
        assert.equal("not_found", err.kind)
      end)
    end)

    describe("deals", function()
      it("add, get, list, search, delete with integers kept as integers", function()
        local d, info = pd.deals.add{ title = "Acme renewal", value = 5000, currency = "EUR", user_id = 1 }
        assert.is_table(d, tostring(info))
        assert.equal("integer", compat.math_type(d.id))
        assert.equal("Acme renewal", d.title)
        assert.equal(5000, tonumber(d.value))
        assert.equal("EUR", d.currency)
        assert.equal(1, id_of(api == "v2" and d.owner_id or d.user_id))

        local got = assert(pd.deals.get(d.id))
        assert.equal(d.id, got.id)
        assert.equal("integer", compat.math_type(got.id))
        assert.equal("integer", compat.math_type(id_of(got.stage_id)))

        local hits = assert(pd.deals.search{ term = "renewal", status = "open" })
        assert.equal(1, #hits)
        assert.equal(d.id, hits[1].item.id)
        assert.equal("deal", hits[1].item.type)
        local exact = assert(pd.deals.search{ term = "acme renewal", exact_match = true })
        assert.equal(1, #exact)
        local partial = assert(pd.deals.search{ term = "acme", exact_match = true })
        assert.equal(0, #partial)

        assert.same({ id = d.id }, (pd.deals.delete(d.id)))
        local gone, err = pd.deals.get(d.id)
        assert.is_nil(gone)
        assert.equal("not_found", err.kind)
        -- deleted deals leave the default list
        for deal in pd.deals.each() do assert.not_equal(d.id, deal.id) end
      end)

      it("lists with filters translated for the API version", function()
        local a = assert(pd.deals.add{ title = "Owned by 2", user_id = 2 })
        local b = assert(pd.deals.add{ title = "Owned by 1", owner_id = 1 })
        local mine = assert(pd.deals.list{ user_id = 2 })
        local ids = {}
        for _, d in ipairs(mine) do ids[d.id] = true end
        assert.is_true(ids[a.id])
        assert.is_nil(ids[b.id])
        local won = assert(pd.deals.list{ status = "won" })
        assert.equal(0, #won)
        local sorted = assert(pd.deals.list{ sort = "id DESC" })
        assert.is_true(sorted[1].id > sorted[#sorted].id)
      end)
    end)

    describe("leads", function()
      it("add, get, list, search, delete with a UUID id", function()
        local p = assert(pd.persons.add{ name = "Lead Person" })
        local l, info = pd.leads.add{ title = "Lead Ångström", person_id = p.id,
                                      value = { amount = 1200, currency = "EUR" } }
        assert.is_table(l, tostring(info))
        assert.matches("^%x+%-%x+%-%x+%-%x+%-%x+$", l.id)
        assert.equal("Lead Ångström", l.title)
        assert.equal(p.id, l.person_id)
        assert.equal(1200, l.value.amount)
        assert.equal(201, info.status)
        assert.equal("v1", info.api) -- leads CRUD exists only in v1

        local got = assert(pd.leads.get(l.id))
        assert.equal(l.id, got.id)
        local list = assert(pd.leads.list{ person_id = p.id })
        assert.equal(1, #list)
        local hits, sinfo = pd.leads.search{ term = "Ångström" }
        assert.is_table(hits, tostring(sinfo))
        assert.equal(1, #hits)
        assert.equal(l.id, hits[1].item.id)
        assert.equal(api, sinfo.api) -- lead search exists in both

        assert.same({ id = l.id }, (pd.leads.delete(l.id)))
        local _, err = pd.leads.get(l.id)
        assert.equal("not_found", err.kind)
      end)

      it("refuses a lead without person or organization before sending", function()
        local before = sb.state()
        local ok, msg = pcall(pd.leads.add, { title = "Orphan" })
        assert.is_false(ok)
        assert.matches("pipedrive.leads.add: a lead must be linked to a person_id or an organization_id", msg, 1, true)
        assert.same(before, sb.state())
      end)
    end)

    describe("option lists", function()
      it("lists users, filters, stages and pipelines", function()
        local users = assert(pd.users.list())
        assert.is_true(#users >= 2)
        assert.equal("integer", compat.math_type(users[1].id))
        local filters = assert(pd.filters.list{ type = "deals" })
        assert.is_true(#filters >= 1)
        for _, f in ipairs(filters) do assert.equal("deals", f.type) end
        local pipelines = assert(pd.pipelines.list())
        assert.is_true(#pipelines >= 1)
        local stages = assert(pd.stages.list{ pipeline_id = pipelines[1].id })
        assert.is_true(#stages >= 1)
        for _, s in ipairs(stages) do assert.equal(pipelines[1].id, s.pipeline_id) end
        local n = 0
        for u in pd.users.each() do
          n = n + 1
          assert.is_string(u.name)
        end
        assert.equal(#users, n)
      end)
    end)

    describe("paging", function()
      it("walks several pages with each and with list + info", function()
        sb.reset()
        sb.bulk("deal", 23, "Page")
        local seen, n = {}, 0
        for d in pd.deals.each{ limit = 5 } do
          assert.is_nil(seen[d.id])
          seen[d.id] = true
          n = n + 1
        end
        assert.equal(23, n)

        local page1, info1 = assert(pd.deals.list{ limit = 10 })
        assert.equal(10, #page1)
        assert.is_true(info1.more)
        local nxt = api == "v2" and { cursor = info1.next_cursor } or { start = info1.next_start }
        nxt.limit = 10
        local page2 = assert(pd.deals.list(nxt))
        assert.equal(10, #page2)
        assert.is_true(page2[1].id > page1[10].id)

        local capped = 0
        for _ in pd.deals.each{ limit = 5, max_items = 7 } do capped = capped + 1 end
        assert.equal(7, capped)
      end)

      it("raises the error object when a page fails", function()
        local bad = pipedrive.new{ api_token = "wrong-token", base_url = sb.url, api = api }
        local ok, err = pcall(function()
          for _ in bad.deals.each() do end
        end)
        assert.is_false(ok)
        assert.equal("unauthorized", err.kind)
        bad.close()
      end)
    end)
  end)
end
