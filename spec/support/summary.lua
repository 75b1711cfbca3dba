-- busted output handler: the usual terminal output, then one closing line
-- "N passed, N failed" (", N skipped" when some were) that CI reads.
-- Errors outside a test (a spec file that fails to load) count as failed.
return function(options)
  local busted = require "busted"
  local name = os.getenv("CI") and "plainTerminal" or "utfTerminal"
  local handler = require("busted.outputHandlers." .. name)(options)
  local subscribe = handler.subscribe
  handler.subscribe = function(h, opts)
    subscribe(h, opts)
    busted.subscribe({ "suite", "end" }, function()
      local skipped = #handler.pendings
      io.write(("\n%d passed, %d failed%s\n"):format(#handler.successes, #handler.failures + #handler.errors,
        skipped > 0 and (", %d skipped"):format(skipped) or ""))
      io.flush()
      return nil, true
    end)
  end
  return handler
end
