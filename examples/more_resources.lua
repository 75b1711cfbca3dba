-- Beyond deals and persons: notes, products, deal fields, activity types,
-- currencies and lead labels, each with the standard verbs (every resource of
-- Pipedrive's API is generated from its OpenAPI files: README "Every Pipedrive
-- operation"), plus pd.call by operationId.
--
--   PIPEDRIVE_API_TOKEN=... PIPEDRIVE_BASE_URL=https://yourcompany.pipedrive.com lua5.4 examples/more_resources.lua
--
-- `make more-demo` runs it against a local sandbox.
local pipedrive = require "pipedrive"

local pd = pipedrive.new{
  api_token = assert(os.getenv("PIPEDRIVE_API_TOKEN"), "set PIPEDRIVE_API_TOKEN"),
  base_url = os.getenv("PIPEDRIVE_BASE_URL"),
}

-- Every call returns value, info or nil, err; `check` stops on an error.
local function check(value, info_or_err)
  if value == nil then
    io.stderr:write("failed: ", tostring(info_or_err), "\n")
    os.exit(1)
  end
  return value, info_or_err
end

local deal = check(pd.deals.add{ title = "Notes demo" })

-- Notes (API v1): add, get, update, list, delete.
local note = check(pd.notes.add{ content = "Called the buyer", deal_id = deal.id })
check(pd.notes.update(note.id, { content = "Called the buyer twice" }))
print("note:", check(pd.notes.get(note.id)).content)
for _, n in ipairs(check(pd.notes.list{ deal_id = deal.id })) do print("  listed note", n.id) end

-- Products (API v2), and a product on the deal.
local product = check(pd.products.add{ name = "Widget", code = "W-1" })
check(pd.products.update(product.id, { name = "Widget XL" }))
print("product:", check(pd.products.get(product.id)).name)
check(pd.deals.add_product{ id = deal.id, product_id = product.id, item_price = 10, quantity = 3 })
print("products on the deal:", #check(pd.deals.list_products(deal.id)))

-- Custom field definitions (API v2).
local fields = check(pd.deal_fields.list{ limit = 50 })
print("deal fields:", #fields)
local field = check(pd.deal_fields.add{ field_name = "Region", field_type = "varchar" })
print("new field:", field.field_code)
check(pd.deal_fields.delete(field.field_code))

-- Activity types, currencies, lead labels (API v1).
local atype = check(pd.activity_types.add{ name = "Site visit", icon_key = "car" })
check(pd.activity_types.update(atype.id, { name = "Site visit (on site)" }))
print("activity types:", #check(pd.activity_types.list{}))
check(pd.activity_types.delete(atype.id))
print("currencies:", #check(pd.currencies.list{ term = "EU" }))
local label = check(pd.lead_labels.add{ name = "Hot", color = "red" })
check(pd.lead_labels.update(label.id, { color = "orange" }))
print("lead labels:", #check(pd.lead_labels.list{}))
check(pd.lead_labels.delete(label.id))

-- Any operation by its OpenAPI operationId.
check(pd.call("addDealFollower", { id = deal.id, user_id = 1 }))
print("followers:", #check(pd.call("getDealFollowers", { id = deal.id })))

check(pd.notes.delete(note.id))
check(pd.products.delete(product.id))
check(pd.deals.delete(deal.id))
pd.close()
print("done")
