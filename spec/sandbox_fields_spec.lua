-- The sandbox's field definitions (/v1/xFields, /api/v2/xFields and their options) and the custom
-- field values records carry: checked per type, stored, answered v2 under custom_fields and v1 flat.
local cjson = require "cjson"

local support_app = require "support.app"
local new_app, call, ok_call = support_app.new_app, support_app.call, support_app.ok_call

local function field_by_name(list, name)
  for _, f in ipairs(list) do
    if f.name == name or f.field_name == name then return f end
  end
  return nil
end

local function option_id(f, label)
  for _, o in ipairs(f.options) do
    if o.label == label then return o.id end
  end
  error("no option " .. label)
end

describe("sandbox field definitions", function()
  local app
  before_each(function() app = new_app() end)

  it("lists the standard fields in v1 and v2, not editable, keyed as the records are", function()
    local v1 = ok_call(app, "GET", "/v1/dealFields").data
    local title = field_by_name(v1, "Title")
    assert.equal("title", title.key)
    assert.is_false(title.edit_flag)
    assert.equal("varchar", title.field_type)
    local status = field_by_name(v1, "Status")
    assert.same({ "open", "won", "lost", "deleted" }, { status.options[1].id, status.options[2].id,
                                                        status.options[3].id, status.options[4].id })
    local v2 = ok_call(app, "GET", "/api/v2/dealFields").data
    local value = field_by_name(v2, "Value")
    assert.equal("value", value.field_code)
    assert.is_false(value.is_custom_field)
    assert.equal("currency", value.subfields[2].field_code)
    assert.equal(#v1, #v2)
    -- leads use the deal fields
    assert.equal(#v1, #ok_call(app, "GET", "/v1/leadFields").data)
    assert.truthy(field_by_name(ok_call(app, "GET", "/v1/activityFields").data, "Subject"))
  end)

  it("adds, gets, renames and deletes a custom field in v1", function()
    local f = ok_call(app, "POST", "/v1/personFields", { body = { name = "Segment", field_type = "enum",
                                                                  options = { { label = "SMB" }, { label = "Big" } } } }).data
    assert.matches("^%x+$", f.key)
    assert.equal(40, #f.key)
    assert.is_true(f.edit_flag)
    assert.equal(2, #f.options)
    local got = ok_call(app, "GET", "/v1/personFields/" .. f.id).data
    assert.equal("Segment", got.name)
    local big = option_id(f, "Big")
    local upd = ok_call(app, "PUT", "/v1/personFields/" .. f.id, { body = {
      name = "Size", options = { { id = big, label = "Enterprise" }, { label = "Mid" } } } }).data
    assert.equal("Size", upd.name)
    assert.equal(2, #upd.options)
    assert.equal(big, upd.options[1].id)
    assert.equal("Enterprise", upd.options[1].label)
    ok_call(app, "DELETE", "/v1/personFields/" .. f.id)
    assert.equal(404, (call(app, "GET", "/v1/personFields/" .. f.id)))
    -- standard fields stay
    local name = field_by_name(ok_call(app, "GET", "/v1/personFields").data, "Name")
    assert.equal(403, (call(app, "DELETE", "/v1/personFields/" .. name.id)))
  end)

  it("bulk-deletes v1 fields by ids", function()
    local a = ok_call(app, "POST", "/v1/dealFields", { body = { name = "A", field_type = "varchar" } }).data
    local b = ok_call(app, "POST", "/v1/dealFields", { body = { name = "B", field_type = "double" } }).data
    local gone = ok_call(app, "DELETE", "/v1/dealFields", { query = { ids = a.id .. "," .. b.id } }).data
    assert.same({ a.id, b.id }, gone.id)
    assert.is_nil(field_by_name(ok_call(app, "GET", "/v1/dealFields").data, "A"))
  end)

  it("adds, patches and deletes a v2 field and its options", function()
    local f = ok_call(app, "POST", "/api/v2/dealFields", { body = { field_name = "Tier", field_type = "set",
                                                                     options = { { label = "Gold" } } } }).data
    assert.is_true(f.is_custom_field)
    local code = f.field_code
    local added = ok_call(app, "POST", "/api/v2/dealFields/" .. code .. "/options",
                          { body = { { label = "Silver" }, { label = "Bronze" } } }).data
    assert.same({ "Silver", "Bronze" }, { added[1].label, added[2].label })
    ok_call(app, "PATCH", "/api/v2/dealFields/" .. code .. "/options",
            { body = { { id = added[1].id, label = "Platinum" } } })
    ok_call(app, "DELETE", "/api/v2/dealFields/" .. code .. "/options", { body = { { id = added[2].id } } })
    local got = ok_call(app, "GET", "/api/v2/dealFields/" .. code).data
    local labels = {}
    for i, o in ipairs(got.options) do labels[i] = o.label end
    assert.same({ "Gold", "Platinum" }, labels)
    assert.equal("Renamed", ok_call(app, "PATCH", "/api/v2/dealFields/" .. code,
                                    { body = { field_name = "Renamed" } }).data.field_name)
    -- the v1 view of the same field
    local v1 = field_by_name(ok_call(app, "GET", "/v1/dealFields").data, "Renamed")
    assert.equal(code, v1.key)
    ok_call(app, "DELETE", "/api/v2/dealFields/" .. code)
    assert.equal(404, (call(app, "GET", "/api/v2/dealFields/" .. code)))
    assert.equal(400, (call(app, "POST", "/api/v2/dealFields", { body = { field_name = "x", field_type = "bogus" } })))
    assert.equal(400, (call(app, "POST", "/api/v2/dealFields", { body = { field_name = "x", field_type = "enum" } })))
  end)

  it("pages v2 field lists by cursor and v1 by start", function()
    local p1 = ok_call(app, "GET", "/api/v2/dealFields", { query = { limit = 5 } })
    assert.equal(5, #p1.data)
    local p2 = ok_call(app, "GET", "/api/v2/dealFields", { query = { limit = 5, cursor = p1.additional_data.next_cursor } })
    assert.are_not.equal(p1.data[1].field_code, p2.data[1].field_code)
    local v1 = ok_call(app, "GET", "/v1/dealFields", { query = { start = 5, limit = 5 } })
    assert.equal(p2.data[1].field_code, v1.data[1].key)
    assert.is_true(v1.additional_data.pagination.more_items_in_collection)
  end)

  it("seeds custom fields with the custom_fields option, kept across reset", function()
    local seeded = new_app{ custom_fields = true }
    local tier = field_by_name(ok_call(seeded, "GET", "/v1/dealFields").data, "Tier")
    assert.equal("enum", tier.field_type)
    assert.equal(3, #tier.options)
    ok_call(seeded, "POST", "/_sandbox/reset")
    assert.truthy(field_by_name(ok_call(seeded, "GET", "/v1/dealFields").data, "Tier"))
    assert.is_nil(field_by_name(ok_call(app, "GET", "/v1/dealFields").data, "Tier"))
  end)
end)

describe("sandbox custom field values", function()
  local app, F
  before_each(function()
    app = new_app{ custom_fields = true }
    F = {}
    for _, f in ipairs(ok_call(app, "GET", "/v1/dealFields").data) do F[f.name] = f end
  end)

  it("round-trips every type in v2 under custom_fields, and shows them flat in v1", function()
    local person = ok_call(app, "POST", "/api/v2/persons", { body = { name = "Sponsor" } }).data
    local org = ok_call(app, "POST", "/api/v2/organizations", { body = { name = "Partner" } }).data
    local gold, emea, apac = option_id(F.Tier, "Gold"), option_id(F.Regions, "EMEA"), option_id(F.Regions, "APAC")
    local cf = {
      [F["Renewal date"].key] = "2027-01-31", [F.Tier.key] = gold, [F.Regions.key] = { emea, apac },
      [F["Contract value"].key] = { value = 1200.5, currency = "USD" }, [F["Notes summary"].key] = "long text",
      [F.Seats.key] = 12, [F.Score.key] = 4.5, [F.Campaign.key] = "spring",
      [F.Term.key] = { value = "2027-01-01", ["until"] = "2027-12-31" },
      [F["Call window"].key] = { value = "09:00:00", ["until"] = "17:30:00" }, [F["Kick-off time"].key] = "10:15",
      [F.Site.key] = { value = "Main St 1, Berlin", locality = "Berlin", country = "Germany" },
      [F["Account manager"].key] = 2, [F.Partner.key] = org.id, [F.Sponsor.key] = person.id,
      [F.Hotline.key] = "+49 30 1", [F["Source tag"].key] = "web",
    }
    local d = ok_call(app, "POST", "/api/v2/deals", { body = { title = "Typed", custom_fields = cf } }).data
    local want = {}
    for k, v in pairs(cf) do want[k] = v end
    want[F["Kick-off time"].key] = "10:15:00"
    assert.same(want, d.custom_fields)
    assert.same(want, ok_call(app, "GET", "/api/v2/deals/" .. d.id).data.custom_fields)
    local v1 = ok_call(app, "GET", "/v1/deals/" .. d.id).data
    assert.equal(tostring(gold), v1[F.Tier.key])
    assert.equal(emea .. "," .. apac, v1[F.Regions.key])
    assert.equal(1200.5, v1[F["Contract value"].key])
    assert.equal("USD", v1[F["Contract value"].key .. "_currency"])
    assert.equal("2027-01-01", v1[F.Term.key])
    assert.equal("2027-12-31", v1[F.Term.key .. "_until"])
    assert.equal("Main St 1, Berlin", v1[F.Site.key])
    assert.equal("Berlin", v1[F.Site.key .. "_locality"])
    assert.equal("2027-01-31", v1[F["Renewal date"].key])
    -- option labels on request
    local labelled = ok_call(app, "GET", "/api/v2/deals/" .. d.id, { query = { include_option_labels = "true" } }).data
    assert.same({ id = gold, label = "Gold" }, labelled.custom_fields[F.Tier.key])
    -- only the keys asked for
    local only = ok_call(app, "GET", "/api/v2/deals", { query = { custom_fields = F.Tier.key } }).data[1]
    assert.same({ [F.Tier.key] = gold }, only.custom_fields)
  end)

  it("answers unset custom fields as null in v2 and v1", function()
    local d = ok_call(app, "POST", "/api/v2/deals", { body = { title = "Empty" } }).data
    assert.equal(cjson.null, d.custom_fields[F.Tier.key])
    local v1 = ok_call(app, "GET", "/v1/deals/" .. d.id).data
    assert.equal(cjson.null, v1[F.Tier.key])
    assert.equal(cjson.null, v1[F["Contract value"].key .. "_currency"])
  end)

  it("takes v1 flat values (side keys, ids as strings, set as a list) and clears with null", function()
    local silver, americas = option_id(F.Tier, "Silver"), option_id(F.Regions, "Americas")
    local emea = option_id(F.Regions, "EMEA")
    local body = { title = "Flat", [F.Tier.key] = tostring(silver), [F.Regions.key] = americas .. "," .. emea,
                   [F["Contract value"].key] = "99.5", [F["Contract value"].key .. "_currency"] = "eur",
                   [F.Term.key] = "2027-02-01", [F.Term.key .. "_until"] = "2027-02-28" }
    local d = ok_call(app, "POST", "/v1/deals", { body = body }, 201).data
    local v2 = ok_call(app, "GET", "/api/v2/deals/" .. d.id).data.custom_fields
    assert.equal(silver, v2[F.Tier.key])
    assert.same({ americas, emea }, v2[F.Regions.key])
    assert.same({ value = 99.5, currency = "EUR" }, v2[F["Contract value"].key])
    assert.same({ value = "2027-02-01", ["until"] = "2027-02-28" }, v2[F.Term.key])
    -- a currency alone keeps the amount; null clears
    ok_call(app, "PUT", "/v1/deals/" .. d.id, { body = { [F["Contract value"].key .. "_currency"] = "USD",
                                                         [F.Tier.key] = cjson.null } })
    v2 = ok_call(app, "GET", "/api/v2/deals/" .. d.id).data.custom_fields
    assert.same({ value = 99.5, currency = "USD" }, v2[F["Contract value"].key])
    assert.equal(cjson.null, v2[F.Tier.key])
    ok_call(app, "PATCH", "/api/v2/deals/" .. d.id, { body = { custom_fields = { [F.Regions.key] = cjson.null } } })
    assert.equal(cjson.null, ok_call(app, "GET", "/api/v2/deals/" .. d.id).data.custom_fields[F.Regions.key])
  end)

  it("round-trips person and organization custom fields", function()
    local pf, of = {}, {}
    for _, f in ipairs(ok_call(app, "GET", "/api/v2/personFields").data) do pf[f.field_name] = f end
    for _, f in ipairs(ok_call(app, "GET", "/v1/organizationFields").data) do of[f.name] = f end
    local smb = option_id(pf.Segment, "SMB")
    local p = ok_call(app, "POST", "/api/v2/persons", { body = { name = "Pat", custom_fields = {
      [pf.Segment.field_code] = smb, [pf.Nickname.field_code] = "P" } } }).data
    assert.equal(smb, p.custom_fields[pf.Segment.field_code])
    local v1p = ok_call(app, "GET", "/v1/persons/" .. p.id).data
    assert.equal("P", v1p[pf.Nickname.field_code])
    local o = ok_call(app, "POST", "/v1/organizations", { body = { name = "Org", [of["Revenue band"].key] = 5000,
                                                                   [of["Revenue band"].key .. "_currency"] = "USD" } },
                      201).data
    assert.equal(5000, o[of["Revenue band"].key])
    assert.same({ value = 5000, currency = "USD" },
                ok_call(app, "GET", "/api/v2/organizations/" .. o.id).data.custom_fields[of["Revenue band"].key])
  end)

  it("answers 400 for an unknown hash, a missing option and a wrong type, changing nothing", function()
    local cases = {
      { custom_fields = { [("f"):rep(40)] = "x" }, "does not exist" },
      { custom_fields = { [F.Tier.key] = 987654 }, "option 987654 does not exist" },
      { custom_fields = { [F.Regions.key] = { option_id(F.Regions, "EMEA"), 987654 } }, "option 987654" },
      { custom_fields = { [F.Regions.key] = {} }, "empty array" },
      { custom_fields = { [F["Renewal date"].key] = "31.01.2027" }, "YYYY-MM-DD" },
      { custom_fields = { [F["Contract value"].key] = 5 }, "{value, currency}" },
      { custom_fields = { [F.Sponsor.key] = 424242 }, "not found" },
    }
    for _, c in ipairs(cases) do
      local status, doc = call(app, "POST", "/api/v2/deals", { body = { title = "Bad", custom_fields = c.custom_fields } })
      assert.equal(400, status)
      assert.is_false(doc.success)
      assert.truthy(doc.error:find(c[1], 1, true), doc.error)
    end
    local status = call(app, "POST", "/v1/deals", { body = { title = "Bad", [F.Tier.key] = "987654" } })
    assert.equal(400, status)
    assert.equal(0, #ok_call(app, "GET", "/api/v2/deals").data)
  end)

  it("filters v2 lists by ids for batching (deals, persons, organizations)", function()
    local made = {}
    for _, what in ipairs({ { "deals", "title" }, { "persons", "name" }, { "organizations", "name" } }) do
      made[what[1]] = {}
      for i = 1, 4 do
        made[what[1]][i] = ok_call(app, "POST", "/api/v2/" .. what[1], { body = { [what[2]] = "n" .. i } }).data.id
      end
      local m = made[what[1]]
      local got = ok_call(app, "GET", "/api/v2/" .. what[1], { query = { ids = m[4] .. "," .. m[2] } }).data
      assert.same({ m[2], m[4] }, { got[1].id, got[2].id })
      assert.equal(2, #got)
    end
    local users = ok_call(app, "GET", "/v1/users").data
    assert.equal("Alex Sandbox", users[1].name)
  end)
end)
