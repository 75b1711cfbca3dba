-- The handlers of examples/openresty/nginx.conf. Module state is per nginx worker:
-- each worker makes its client once; the shared dict holds what workers share.
-- luacheck: globals ngx
local pipedrive = require "pipedrive"
local pdngx = require "pipedrive.ngx"
local core = require "pipedrive.core"

local M = {}
local pd, triggers

-- Under nginx, pipedrive.new picks the pipedrive.ngx transport by itself: the
-- calls go through the internal location /_pipedrive (pipedrive-location.conf).
local function client()
  if not pd then
    pd = pipedrive.new{ api_token = os.getenv("PIPEDRIVE_API_TOKEN"), base_url = os.getenv("PIPEDRIVE_BASE_URL") }
  end
  return pd
end

local function reply(status, value)
  ngx.status = status
  ngx.header["content-type"] = "application/json"
  ngx.say(core.json_encode(value))
end

function M.index()
  ngx.header["content-type"] = "text/plain"
  ngx.say("pipedrive-lua under nginx: try /deals, /deals/search?term=..., POST /pipedrive/webhook")
end

function M.deals()
  local deals, err = client().deals.list{ status = "open", limit = 20 }
  if not deals then return reply(502, { error = tostring(err) }) end
  local out = {}
  for i, d in ipairs(deals) do out[i] = { id = d.id, title = d.title, value = d.value, currency = d.currency } end
  return reply(200, core.array(out))
end

function M.search()
  local term = ngx.var.arg_term
  if not term or #term < 2 then return reply(400, { error = "give ?term= (2 characters or more)" }) end
  local found, err = client().deals.search{ term = ngx.unescape_uri(term) }
  if not found then return reply(502, { error = tostring(err) }) end
  local out = {}
  for i, hit in ipairs(found) do out[i] = { id = hit.item.id, title = hit.item.title, score = hit.result_score } end
  return reply(200, core.array(out))
end

-- Pipedrive's webhooks: answered at once, callbacks in ngx.timer.at, each event once
-- across the workers (the seen store in the shared dict).
function M.webhook()
  if not triggers then
    local password = os.getenv("PIPEDRIVE_WEBHOOK_PASSWORD")
    triggers = client().triggers{ user = password and "pipedrive" or nil, password = password,
                                  seen = pdngx.seen("pipedrive") }
    triggers:on("deal.*", function(ev)
      ngx.log(ngx.NOTICE, "deal ", ev.action, ": ", ev.id, " ", ev.current and ev.current.title or "")
    end)
  end
  return pdngx.webhook(triggers)   -- pdngx.webhook(triggers, { defer = false }): callbacks before the answer
end

return M
