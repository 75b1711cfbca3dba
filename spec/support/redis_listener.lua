-- A webhook listener process sharing its seen store through Redis, for
-- spec/redis_triggers_spec.lua (started by support.process):
--   redis_listener.lua --port-file F --redis URL --prefix P --runs FILE --flags DIR
-- Its deal.added callback appends the event's id to FILE (one line per run),
-- takes 0.3 s (so that deliveries to the other listeners arrive while it runs),
-- and fails the first time it runs for a deal titled "fail once" (a file in DIR
-- remembers that first time across processes). Log lines go to stderr.
local proc = require "support.process"
local core = require "pipedrive.core"
local pipedrive = require "pipedrive"
local triggers = require "pipedrive.triggers"

local o = proc.parse_args(arg)
local shared = pipedrive.redis{ url = o.redis, prefix = o.prefix, timeout = 0.5 }
local tr = triggers.new(nil, { user = "hook", password = "hook-pw-R7", seen = shared:seen(),
                               log = function(line, level)
                                 io.stderr:write(level, " ", line, "\n")
                                 io.stderr:flush()
                               end })
tr:on("deal.added", function(ev)
  local f = assert(io.open(o.runs, "a"))
  f:write(tostring(ev.id), "\n")
  f:close()
  core.sleep(0.3)
  if ev.current.title == "fail once" then
    local flag = o.flags .. "/failed-" .. tostring(ev.id)
    local h = io.open(flag, "rb")
    if h then
      h:close()
    else
      assert(io.open(flag, "wb")):close()
      error("fails the first time", 0)
    end
  end
end)
local port = assert(tr:listen{ port = 0, path = "/hook" })
proc.announce(o.port_file, port)
tr:serve{ timeout = 600 }
