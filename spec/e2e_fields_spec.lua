-- field_names (custom fields by name, option labels) and expand (related
-- records in batches), end to end against the sandbox. What goes on the wire
-- is read back from the sandbox's request log.
local core = require "pipedrive.core"
local sandbox = require "support.sandbox"

local null = core.null

-- Adds a custom field through the sandbox's v2 *Fields endpoint (the sandbox makes the 40-hex
-- key and the option ids); returns the key and the option ids by label.
local function define(pd, resource, name, ftype, labels)
  local options
  if labels then
    options = {}
    for i, l in ipairs(labels) do options[i] = { label = l } end
  end
  local data = assert(pd.request("POST", "/api/v2/" .. resource, { body = { field_name = name, field_type = ftype,
    options = options } }))
  assert.matches("^%x+$", data.field_code)
  assert.equal(40, #data.field_code)
  local ids = {}
  if type(data.options) == "table" then
    for _, o in ipairs(data.options) do ids[o.label] = o.id end
  end
  return data.field_code, ids
end

local function count(log, pattern)
  local n = 0
  for _, r in ipairs(log) do
    if r.method == "GET" and r.path:match(pattern) then n = n + 1 end
  end
  return n
end

local function last_with(log, method, pattern)
  for i = #log, 1, -1 do
    if log[i].method == method and log[i].path:match(pattern) then return log[i] end
  end
end

local function raises(fn, pattern)
  local ok, err = pcall(fn)
  assert.is_false(ok)
  assert.matches(pattern, tostring(err))
  return err
end

describe("field_names and expand (sandbox)", function()
  local sb, keys
  local opt = {} -- field name -> option label -> id

  setup(function()
    sb = sandbox.start()
    local admin = sb.client()
    local function field(name, ftype, labels)
      local key, ids = define(admin, "dealFields", name, ftype, labels)
      opt[name] = ids
      return key
    end
    keys = {
      Region = field("Region", "varchar"),
      Notes = field("Notes", "text"),
      Score = field("Score", "double"),
      Hotline = field("Hotline", "phone"),
      ["Renewal date"] = field("Renewal date", "date"),
      ["Call at"] = field("Call at", "time"),
      Tier = field("Tier", "enum", { "Gold", "Silver", "Bronze" }),
      Tags = field("Tags", "set", { "EU", "US", "Enterprise" }),
      Budget = field("Budget", "monetary"),
      ["HQ address"] = field("HQ address", "address"),
      Term = field("Term", "daterange"),
      Shift = field("Shift", "timerange"),
      Champion = field("Champion", "user"),
      ["Partner org"] = field("Partner org", "org"),
      ["Referrer"] = field("Referrer", "people"),
    }
    admin.close()
  end)

  teardown(function()
    sb.stop()
  end)

  before_each(function() sb.clear_requests() end)

  local VALUES = {
    Region = "EMEA", Notes = "long text", Score = 4.5, Hotline = "+49 30 1234", ["Renewal date"] = "2027-01-31",
    ["Call at"] = "10:30:00", Tier = "Silver", Tags = { "EU", "Enterprise" },
    Budget = { value = 2300, currency = "EUR" },
    ["HQ address"] = { value = "Main St 1, Berlin", locality = "Berlin", country = "Germany" },
    Term = { value = "2027-01-01", ["until"] = "2027-12-31" },
    Shift = { value = "09:00:00", ["until"] = "17:00:00" },
    Champion = 1, ["Partner org"] = nil, Referrer = nil,
  }

  for _, api in ipairs({ "v2", "v1" }) do
    it("round-trips custom fields of every type by name, with only hashes and option ids on the wire (" .. api .. ")",
      function()
        local c = sb.client{ api = api, field_names = true }
        local org = assert(c.organizations.add{ name = "Partner " .. api })
        local person = assert(c.persons.add{ name = "Referrer " .. api })
        local values = {}
        for k, v in pairs(VALUES) do values[k] = v end
        values["Partner org"], values.Referrer = org.id, person.id
        local deal = assert(c.deals.add{ title = "Named " .. api, custom_fields = values })
        -- The answer: by name, labels.
        local cf = deal.custom_fields
        assert.equal("EMEA", cf.Region)
        assert.equal(4.5, cf.Score)
        assert.equal("Silver", cf.Tier)
        assert.same({ "EU", "Enterprise" }, { cf.Tags[1], cf.Tags[2] })
        assert.equal(2300, cf.Budget.value)
        assert.equal("2027-01-01", cf.Term.value)
        -- The sub-values (v1's <hash>_currency, _until and _<part> keys) come back in the v2 form.
        assert.equal("EUR", cf.Budget.currency)
        assert.same({ value = "Main St 1, Berlin", locality = "Berlin", country = "Germany" },
          { value = cf["HQ address"].value, locality = cf["HQ address"].locality, country = cf["HQ address"].country })
        assert.same({ value = "2027-01-01", ["until"] = "2027-12-31" }, cf.Term)
        assert.same({ value = "09:00:00", ["until"] = "17:00:00" }, cf.Shift)
        assert.equal("long text", cf.Notes)
        assert.equal("+49 30 1234", cf.Hotline)
        assert.equal("2027-01-31", cf["Renewal date"])
        assert.equal("10:30:00", cf["Call at"])
        assert.equal(1, cf.Champion)
        assert.equal(org.id, cf["Partner org"])
        assert.equal(person.id, cf.Referrer)
        assert.is_nil(deal[keys.Region])
        -- The wire: hashes and option ids only.
        local req = last_with(sb.requests(), "POST", "deals$")
        local body = core.json_decode(req.body)
        local sent = api == "v2" and body.custom_fields or body
        if api == "v2" then
          assert.equal(opt.Tier.Silver, sent[keys.Tier])
          assert.same({ opt.Tags.EU, opt.Tags.Enterprise }, { sent[keys.Tags][1], sent[keys.Tags][2] })
        else
          assert.equal(opt.Tier.Silver, tonumber(sent[keys.Tier]))
          local tags = sent[keys.Tags]
          if type(tags) == "string" then tags = { tags:match("^(%d+),(%d+)$") } end
          assert.same({ opt.Tags.EU, opt.Tags.Enterprise }, { tonumber(tags[1]), tonumber(tags[2]) })
        end
        -- no field name or option label anywhere in the body
        for name, v in pairs(VALUES) do
          assert.is_nil(req.body:find('"' .. name .. '"', 1, true), name)
          if type(v) == "string" and next(opt[name] or {}) then assert.is_nil(req.body:find(v, 1, true), v) end
        end
        assert.is_nil(req.body:find("Enterprise", 1, true))
        for k in pairs(api == "v2" and sent or {}) do assert.matches("^%x+$", k) end
        if api == "v2" then
          assert.same({ value = 2300, currency = "EUR" }, sent[keys.Budget])
        else
          assert.equal(2300, sent[keys.Budget])
          assert.equal("EUR", sent[keys.Budget .. "_currency"])
          assert.equal("2027-12-31", sent[keys.Term .. "_until"])
          assert.equal("Berlin", sent[keys["HQ address"] .. "_locality"])
          assert.equal("17:00:00", sent[keys.Shift .. "_until"])
        end
        -- Read back by get, list and update; ids still accepted.
        local got = assert(c.deals.get(deal.id))
        assert.equal("Silver", got.custom_fields.Tier)
        assert.equal("2027-01-31", got.custom_fields["Renewal date"])
        local upd = assert(c.deals.update(deal.id, { custom_fields = { Tier = opt.Tier.Bronze } }))
        assert.equal("Bronze", upd.custom_fields.Tier)
        local list = assert(c.deals.list{})
        local found
        for _, d in ipairs(list) do if d.id == deal.id then found = d end end
        assert.equal("Bronze", found.custom_fields.Tier)
        -- Without the option: Pipedrive's shape.
        local plain = assert(c.deals.get(deal.id, { field_names = false }))
        if api == "v2" then
          assert.equal(opt.Tier.Bronze, plain.custom_fields[keys.Tier])
          assert.same({ value = "2027-01-01", ["until"] = "2027-12-31" }, plain.custom_fields[keys.Term])
          assert.same({ value = 2300, currency = "EUR" }, plain.custom_fields[keys.Budget])
        else
          assert.equal(opt.Tier.Bronze, tonumber(plain[keys.Tier]))
          assert.equal("2027-12-31", plain[keys.Term .. "_until"])
          assert.equal("EUR", plain[keys.Budget .. "_currency"])
          assert.equal("Berlin", plain[keys["HQ address"] .. "_locality"])
        end
        c.close()
      end)
  end

  it("raises before sending for unknown names and labels, naming the closest", function()
    local c = sb.client{ field_names = true }
    assert(c.fields("deal"))
    sb.clear_requests()
    raises(function() c.deals.add{ title = "x", custom_fields = { Teir = "Gold" } } end, "unknown custom field 'Teir'.*'Tier'")
    raises(function() c.deals.add{ title = "x", custom_fields = { Tier = "Golt" } } end, "unknown option 'Golt'.*'Gold'")
    raises(function() c.deals.add{ title = "x", custom_fields = { Tags = { "EU", "Asia" } } } end, "unknown option 'Asia'")
    local log = sb.requests()
    assert.equal(0, count(log, "/deals$"))
    assert.equal(1, count(log, "dealFields")) -- one refresh for the unknown name, none for labels
    c.close()
  end)

  it("raises for a name two fields share, naming both hashes", function()
    local admin = sb.client()
    local a = define(admin, "dealFields", "Twin", "varchar")
    local b = define(admin, "dealFields", "Twin", "varchar")
    local c = sb.client{ field_names = true }
    local err = raises(function() c.deals.add{ title = "x", custom_fields = { Twin = "y" } } end, "shared by 2")
    assert.matches(a, err)
    assert.matches(b, err)
    c.close()
    admin.close()
  end)

  it("caches definitions and reads them again once for a field added by another client", function()
    local c = sb.client{ field_names = true }
    assert(c.deals.add{ title = "one", custom_fields = { Region = "A" } })
    assert(c.deals.add{ title = "two", custom_fields = { Region = "B" } })
    assert.equal(1, count(sb.requests(), "dealFields"))
    local fields = assert(c.fields("deal"))
    local seen
    for _, f in ipairs(fields) do if f.name == "Tier" then seen = f end end
    assert.equal(keys.Tier, seen.key)
    assert.equal("Gold", seen.options[1].label)
    assert.equal(1, count(sb.requests(), "dealFields"))
    local other = sb.client()
    local key = define(other, "dealFields", "Late field", "varchar")
    other.close()
    local d = assert(c.deals.add{ title = "three", custom_fields = { ["Late field"] = "now" } })
    assert.equal("now", d.custom_fields["Late field"])
    assert.equal(2, count(sb.requests(), "dealFields"))
    assert.equal("now", core.json_decode(last_with(sb.requests(), "POST", "deals$").body).custom_fields[key])
    c.close()
  end)

  it("expands owner, person and organization of a page of 100 deals in at most 4 requests", function()
    local admin = sb.client()
    local orgs, persons = {}, {}
    for i = 1, 5 do
      orgs[i] = assert(admin.organizations.add{ name = "Org " .. i })
      persons[i] = assert(admin.persons.add{ name = "Person " .. i, emails = { { value = "p" .. i .. "@x.example" } } })
    end
    for i = 1, 100 do
      assert(admin.deals.add{ title = "Bulk " .. i, org_id = orgs[i % 5 + 1].id, person_id = persons[i % 5 + 1].id })
    end
    local c = sb.client()
    sb.clear_requests()
    local deals = assert(c.deals.list{ limit = 100, expand = { "owner", "person", "organization" } })
    assert.equal(100, #deals)
    local log = sb.requests()
    assert.is_true(#log <= 4, "requests: " .. #log)
    for _, d in ipairs(deals) do
      assert.equal(d.owner_id, d.owner.id)
      assert.is_string(d.owner.name)
      if d.person_id ~= null and d.person_id then
        assert.equal(d.person_id, d.person.id)
        assert.matches("^Person ", d.person.name)
      end
      if d.org_id ~= null and d.org_id then
        assert.equal(d.org_id, d.organization.id)
        assert.matches("^Org ", d.organization.name)
      end
    end
    local pick
    for _, d in ipairs(deals) do
      if d.person and d.organization then pick = d end
    end
    assert.is_table(pick)
    -- Cached: the next page of the same people costs no more request.
    sb.clear_requests()
    local one = assert(c.deals.get(pick.id, { expand = { "owner", "person", "organization", "stage", "pipeline" } }))
    assert.equal(pick.owner.name, one.owner.name)
    assert.equal(pick.person.name, one.person.name)
    assert.is_string(one.stage.name)
    assert.is_string(one.pipeline.name)
    assert.equal(3, #sb.requests()) -- the deal, stages, pipelines
    -- each{ expand } pages the same way.
    local n = 0
    for d in c.deals.each{ expand = { "owner" }, max_items = 150 } do
      assert.is_string(d.owner.name)
      n = n + 1
    end
    assert.is_true(n >= 100)
    -- v1: the nested objects Pipedrive sends.
    local v1 = sb.client{ api = "v1" }
    sb.clear_requests()
    local d1 = assert(v1.deals.get(pick.id, { expand = { "owner", "person", "organization" } }))
    assert.equal(pick.owner.name, d1.owner.name)
    assert.equal(pick.person.name, d1.person.name)
    assert.same(pick.person.emails, d1.person.emails)
    assert.equal(pick.organization.name, d1.organization.name)
    assert.equal(1, #sb.requests())
    raises(function() c.deals.list{ expand = { "owners" } } end, "unknown relation 'owners'")
    v1.close()
    c.close()
    admin.close()
  end)

  it("delivers webhook events with named fields and expanded relations", function()
    local c = sb.client{ field_names = true }
    local tr = c.triggers{ user = "hook", password = "pw", field_names = true, expand = { "owner", "person" } }
    local got = {}
    tr:on("deal.added", function(ev) got.added = ev end)
    tr:on("deal.updated", function(ev) got.updated = ev end)
    tr:listen{ port = 0, path = "/hook" }
    assert(tr:enable())
    local person = assert(c.persons.add{ name = "Hooked person" })
    local deal = assert(c.deals.add{ title = "Hooked", person_id = person.id, custom_fields = { Tier = "Gold" } })
    assert(c.deals.update(deal.id, { custom_fields = { Tier = "Silver" } }))
    tr:serve{ stop_when = function() return got.added and got.updated end, timeout = 20 }
    assert.equal("Gold", got.added.current.custom_fields.Tier)
    assert.equal("Hooked person", got.added.current.person.name)
    assert.is_string(got.added.current.owner.name)
    assert.equal("Silver", got.updated.current.custom_fields.Tier)
    assert.equal("Gold", got.updated.previous.custom_fields.Tier)
    tr:disable()
    tr:close()
    c.close()
  end)
end)
