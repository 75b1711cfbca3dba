--- Row 5 of bench/RESULTS.md: the webhook listener (pipedrive.triggers on
-- pipedrive.httpd) dispatching every v2 deal event to a trivial callback.
--   lua5.4 bench/lua_webhook.lua PORT [CONNECTION_LIMIT]
-- Row 7 gives CONNECTION_LIMIT (room for its 1,000 slow connections, all from
-- one address, so the per-address cap is off); the request deadline is the default.
local pipedrive = require "pipedrive"
local triggers = require("pipedrive.triggers").new(nil, { user = "hook", password = "s3cret" })
local handled = 0
triggers:on("deal.updated", function(ev) handled = handled + (ev.id and 1 or 0) end)
assert(triggers:listen{ port = tonumber(arg[1]), path = "/hook", connection_limit = tonumber(arg[2]) or 1024,
                        per_ip_limit = arg[2] and 0 or nil })
io.stdout:write("listening ", arg[1], " (pipedrive ", pipedrive._VERSION, ")\n")
io.stdout:flush()
triggers:serve{}
