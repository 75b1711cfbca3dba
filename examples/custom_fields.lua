-- Custom fields by name and related records, against a sandbox or your company:
--   PIPEDRIVE_API_TOKEN=... PIPEDRIVE_BASE_URL=http://127.0.0.1:8080 lua5.4 examples/custom_fields.lua
-- (start a sandbox first: bin/pipedrive-sandbox --port 8080). It adds two deal
-- fields and a deal.
local pipedrive = require "pipedrive"

local pd = pipedrive.new{ api_token = os.getenv("PIPEDRIVE_API_TOKEN"), base_url = os.getenv("PIPEDRIVE_BASE_URL"),
                          field_names = true }

-- Two fields, as an admin would make them in Pipedrive's settings.
local function field(name, ftype, options)
  return assert(pd.deal_fields.add{ field_name = name, field_type = ftype, options = options })
end
field("Tier", "enum", { { label = "Gold" }, { label = "Silver" } })
field("Budget", "monetary")

local deal = assert(pd.deals.add{ title = "Renewal", custom_fields = { Tier = "Gold",
  Budget = { value = 1200, currency = "EUR" } } })
print(deal.title, deal.custom_fields.Tier, deal.custom_fields.Budget.value, deal.custom_fields.Budget.currency)

for _, f in ipairs(assert(pd.fields("deal"))) do
  if f.custom then print("field", f.name, f.key, f.type) end
end

local page = assert(pd.deals.list{ limit = 100, expand = { "owner", "person", "organization", "stage" } })
for _, d in ipairs(page) do
  print(d.id, d.title, d.owner and d.owner.name, d.stage and d.stage.name, d.person and d.person.name)
end
pd.close()
