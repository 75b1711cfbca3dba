-- luacheck: globals setup request, read globals wrk tid
-- wrk script for row 5: POSTs v2 "deal change" webhook bodies, each with its
-- own event id (so every one is dispatched, none is a duplicate), with HTTP
-- Basic auth hook:s3cret. Run by bench/run.lua: wrk -s bench/wrk_webhook.lua URL
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end

local counter = 0
local headers = {
  ["Content-Type"] = "application/json",
  ["Authorization"] = "Basic aG9vazpzM2NyZXQ=",
}
local template = '{"meta":{"action":"change","entity":"deal","company_id":"7701001",'
  .. '"correlation_id":"c0ffee00-0000-4000-8000-000000000001","entity_id":"42",'
  .. '"id":"%08d-0000-4000-8000-%012d","is_bulk_edit":false,"timestamp":"2026-11-28T12:00:00.250Z",'
  .. '"type":"general","user_id":"11","version":"2.0","webhook_id":"21","webhook_owner_id":"11",'
  .. '"change_source":"app","attempt":1,"host":"acme.pipedrive.com","permitted_user_ids":["11","12"]},'
  .. '"data":{"id":42,"title":"Acme renewal","value":48250.5,"currency":"EUR","status":"open",'
  .. '"stage_id":3,"pipeline_id":1,"owner_id":11,"person_id":99127,"org_id":48213,'
  .. '"update_time":"2026-11-28T12:00:00Z","add_time":"2026-03-02T09:14:27Z","label_ids":[12,17],'
  .. '"custom_fields":{"5ee2d8c9a1c24e4e8d1b0c7f3b2a1e9d4c6f8a0b":"Multi-year","a1b2":{"value":3,"label":"Tier 3"}}},'
  .. '"previous":{"stage_id":2,"update_time":"2026-11-27T10:00:00Z"}}'

function request()
  counter = counter + 1
  return wrk.format("POST", "/hook", headers, string.format(template, tid or 0, counter))
end
