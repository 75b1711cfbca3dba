--- `pd.oauth.login{}` for scripts: shows (or opens) the authorize URL, catches
-- the browser's redirect on a loopback port, checks its state, exchanges the code.
--
-- It listens only on loopback, only for the redirect's path, only until the
-- first redirect that carries the matching state (or the timeout), and answers
-- the browser with a short page.
local core = require "pipedrive.core"

local M = {}

local PAGE = [[<!doctype html><html><head><meta charset="utf-8"><title>%s</title></head>
<body style="font-family:sans-serif;margin:3em"><h1>%s</h1><p>%s</p></body></html>]]

local function page(status, title, text)
  return status, { ["content-type"] = "text/html; charset=utf-8", ["cache-control"] = "no-store" },
    PAGE:format(title, title, text)
end

local function unescape(s)
  s = s:gsub("+", " ")
  return (s:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

local function parse_query(qs)
  local q = {}
  for pair in (qs or ""):gmatch("[^&]+") do
    local k, v = pair:match("^([^=]*)=?(.*)$")
    q[unescape(k)] = unescape(v)
  end
  return q
end

local function fail(kind, message)
  return nil, setmetatable({ kind = kind, message = message }, core.error_mt)
end

local function shell_quote(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

--- Runs the login. `auth` is the client's OAuth state (pipedrive.oauth).
-- args: open (true: run xdg-open; a function(url): call it), timeout (s, default 300),
-- scope, quiet (do not print the URL).
function M.run(auth, redirect_uri, args)
  args = args or {}
  if type(args) ~= "table" then error("pipedrive.oauth.login: expected a table", 3) end
  if type(redirect_uri) ~= "string" then
    error("pipedrive.oauth.login: pipedrive.new's oauth.redirect_uri is required, e.g. http://127.0.0.1:8976/callback", 3)
  end
  local u = core.url_parse(redirect_uri)
  local host = u and u.host
  if not u or u.scheme ~= "http" or u.has_userinfo or u.query or u.fragment
    or not (host == "127.0.0.1" or host == "localhost" or host == "[::1]") then
    error("pipedrive.oauth.login: redirect_uri must be http://127.0.0.1:PORT/path (loopback) to catch the redirect", 3)
  end
  local port, path = u.port, u.path
  local timeout = args.timeout or 300
  if type(timeout) ~= "number" or timeout <= 0 then error("pipedrive.oauth.login: timeout must be > 0", 3) end

  local url, state = auth.authorize_url{ scope = args.scope }
  local result
  local httpd = require "pipedrive.httpd"
  local srv, lerr = httpd.listen{
    host = host == "[::1]" and "::1" or "127.0.0.1",
    port = port,
    max_body = 4096,
    handler = function(req)
      if req.method ~= "GET" or req.path ~= path then return page(404, "Not found", "Nothing here.") end
      local q = parse_query(req.query_string)
      if type(q.state) ~= "string" or not core.consttime_equal(q.state, state) then
        return page(400, "Unexpected sign-in", "This redirect does not belong to the running login; it was ignored.")
      end
      if q.error then
        result = { error = q.error }
        return page(200, "Access declined", "Pipedrive access was declined. You can close this tab.")
      end
      if not q.code or q.code == "" then return page(400, "No code", "The redirect carried no code.") end
      result = { code = q.code }
      return page(200, "Signed in", "The script has its Pipedrive access now. You can close this tab.")
    end,
  }

  if not srv then return fail("network", tostring(lerr)) end -- the port is taken, most likely

  if not args.quiet then io.stderr:write("Open this URL to let the script use Pipedrive:\n  ", url, "\n") end
  if type(args.open) == "function" then
    args.open(url)
  elseif args.open == true then
    os.execute("xdg-open " .. shell_quote(url) .. " >/dev/null 2>&1 &")
  end

  local deadline = core.now() + timeout
  local ok, err = pcall(function()
    while not result and core.now() <= deadline do srv:step(0.2) end
  end)
  srv:close()
  if not ok then error(err, 0) end
  if not result then return fail("timeout", ("no redirect reached %s within %d s"):format(redirect_uri, timeout)) end
  if result.error then return fail("access_denied", "the user declined access (" .. result.error .. ")") end
  return auth.exchange(result.code, state)
end

return M
