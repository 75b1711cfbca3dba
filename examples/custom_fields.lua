-- Custom fields by name and related records, against a sandbox or your company:
--   PIPEDRIVE_API_TOKEN=... PIPEDRIVE_BASE_URL=http://127.0.0.1:8080 lua5.4 examples/custom_fields.lua
-- (start a sandbox first: bin/pipedrive-sandbox --port 8080). It adds two deal
-- fields and a deal.
local pipedrive = require "pipedrive"

local pd = pipedrive.new{ api_token = os.getenv("PIPEDRIVE_API_TOKEN"), base_url = os.getenv("PIPEDRIVE_BASE_URL"),
                          field_names = true }

-- Two fields, as an admin would make them in Pipedrive's settings.
local function field(name, ftype, options)
  local f = assert(pd.deal_fields.add{ field_name = name, field_type = ftype, options = options })
  if f.field_code == pipedrive.null or f.field_code == nil then
    -- A sandbox without a field store keeps what it is given: name the key ourselves.
    local key = (("%08x"):format(#name * 7919 + #ftype)):rep(5)
    local opts
    for i, o in ipairs(options or {}) do
      opts = opts or {}
      opts[i] = { id = i, label = o.label }
    end
    f = assert(pd.request("POST", "/api/v2/dealFields", { body = { field_name = name, name = name, field_code = key,
      key = key, field_type = ftype, is_custom_field = true, options = opts } }))
  end
  return f
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
