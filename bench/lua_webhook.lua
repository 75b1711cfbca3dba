--- Row 5 of bench/RESULTS.md: the webhook listener (pipedrive.triggers on
-- pipedrive.httpd) dispatching every v2 deal event to a trivial callback.
--   lua5.4 bench/lua_webhook.lua PORT
local pipedrive = require "pipedrive"
local triggers = require("pipedrive.triggers").new(nil, { user = "hook", password = "s3cret" })
local handled = 0
triggers:on("deal.updated", function(ev) handled = handled + (ev.id and 1 or 0) end)
assert(triggers:listen{ port = tonumber(arg[1]), path = "/hook", connection_limit = 1024 })
io.stdout:write("listening ", arg[1], " (pipedrive ", pipedrive._VERSION, ")\n")
io.stdout:flush()
triggers:serve{}
