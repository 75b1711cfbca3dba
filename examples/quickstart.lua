-- A tour of the pipedrive module: add an organization, a person, a deal and a
-- lead; list, page, search, get; then delete them again.
--
--   PIPEDRIVE_API_TOKEN=... PIPEDRIVE_BASE_URL=https://yourcompany.pipedrive.com lua5.4 examples/quickstart.lua
--
-- `make demo` runs it against a local sandbox. Pass --v1 to use API v1 paths.
local pipedrive = require "pipedrive"

local api = (arg and arg[1] == "--v1") and "v1" or "v2"
local pd = pipedrive.new{
  api_token = assert(os.getenv("PIPEDRIVE_API_TOKEN"), "set PIPEDRIVE_API_TOKEN"),
  base_url = os.getenv("PIPEDRIVE_BASE_URL"),
  api = api,
}
print(("client: %s"):format(tostring(pd)))

-- Every call returns value, info or nil, err; `check` stops the tour on an error.
local function check(value, info_or_err)
  if value == nil then
    io.stderr:write("failed: ", tostring(info_or_err), "\n")
    os.exit(1)
  end
  return value, info_or_err
end

local org = check(pd.organizations.add{ name = "Ångström Industries" })
print(("added organization %d %q"):format(org.id, org.name))

local person = check(pd.persons.add{
  name = "Zoë Müller", org_id = org.id,
  email = { { value = "zoe@example.com", primary = true, label = "work" } },
  phone = { { value = "+49 30 1234567", primary = true } },
})
print(("added person %d %q"):format(person.id, person.name))

local deal = check(pd.deals.add{ title = "Ångström renewal", value = 5000, currency = "EUR",
                                 person_id = person.id, org_id = org.id })
print(("added deal %d %q worth %s %s"):format(deal.id, deal.title, tostring(deal.value), deal.currency))

local lead = check(pd.leads.add{ title = "Ångström upsell", person_id = person.id,
                                 value = { amount = 1200, currency = "EUR" } })
print(("added lead %s %q"):format(lead.id, lead.title))

-- A few more deals, so that paging has pages to walk.
for i = 1, 5 do check(pd.deals.add{ title = ("Tour deal %d"):format(i), value = i * 100 }) end

local first, info = check(pd.deals.list{ limit = 2 })
print(("first page: %d deals, more: %s"):format(#first, tostring(info.more)))

local n = 0
for d in pd.deals.each{ limit = 2 } do
  n = n + 1
  print(("  deal %d: %s"):format(d.id, d.title))
end
print(("paged through %d deals, 2 per page"):format(n))

local hits = check(pd.deals.search{ term = "renewal" })
print(("search 'renewal': %d hit(s), first %q (score %.2f)"):format(#hits, hits[1].item.title, hits[1].result_score))
local people = check(pd.persons.search{ term = "Zoë" })
print(("search 'Zoë': %d person(s)"):format(#people))

local got = check(pd.deals.get(deal.id))
print(("got deal %d: %q"):format(got.id, got.title))

local users = check(pd.users.list())
local stages = check(pd.stages.list())
print(("company: %d users, %d stages"):format(#users, #stages))

check(pd.leads.delete(lead.id))
check(pd.deals.delete(deal.id))
check(pd.persons.delete(person.id))
check(pd.organizations.delete(org.id))
print("deleted the lead, the deal, the person and the organization")

local gone, err = pd.deals.get(deal.id)
print(("getting the deleted deal: %s"):format(gone and "still there!" or tostring(err)))
pd.close()
print("done")
