--- Redirects, followed here rather than by libcurl: libcurl drops
-- Authorization on a redirect to another host but keeps custom headers such
-- as x-api-token, so it would hand the API token to whatever host a Location
-- names. Each hop is a new request built from the previous one:
--
-- * at most `max` hops (pipedrive.new's max_redirects, default 0: a 3xx
--   answer is an error of kind "redirect", never followed);
-- * credentials (x-api-token, Authorization, Cookie, an api_token query
--   parameter) go only to the same origin (scheme, host and port) as the
--   request that carried them; to any other origin they are left out;
-- * 303, and 301/302 after a POST, continue as a GET without a body;
--   307/308 keep method and body, and a body is never sent to another origin;
-- * https never continues over plain http, except to loopback or with insecure.
--
-- Errors name the status and the hop, never the Location (it may carry tokens).
local core = require "pipedrive.core"

local M = {}

local REDIRECT = { [301] = true, [302] = true, [303] = true, [307] = true, [308] = true }
local CREDENTIAL_HEADERS = { ["x-api-token"] = true, authorization = true, cookie = true,
                             ["proxy-authorization"] = true }

-- The parsed http(s) URL (core.url_parse, libcurl's parser: the host read
-- here is the host libcurl connects to), or nil.
local function parse(url)
  local u = type(url) == "string" and core.url_parse(url)
  if not u or (u.scheme ~= "http" and u.scheme ~= "https") then return nil end
  return u
end

--- scheme, host (lower case), port (a string) of an absolute http(s) URL, or nil.
function M.origin(url)
  local u = parse(url)
  if not u then return nil end
  return u.scheme, u.host, tostring(u.port)
end

--- The absolute URL a Location header names, relative to `base` (nil when
-- libcurl cannot make one).
function M.resolve(base, location)
  return (core.url_resolve(base, location))
end

-- The URL `u` (parsed) without its api_token query parameters.
local function drop_api_token(url, u)
  if not u.query then return url end
  local kept = {}
  for part in u.query:gmatch("[^&]+") do
    if not part:lower():match("^api_token=") and part:lower() ~= "api_token" then kept[#kept + 1] = part end
  end
  return u.origin .. u.path .. (#kept > 0 and ("?" .. table.concat(kept, "&")) or "")
    .. (u.fragment and ("#" .. u.fragment) or "")
end

local function fail(req, status, message)
  local u = core.url_parse(req.url)
  return nil, setmetatable({ kind = "redirect", status = status, message = message, method = req.method,
                             path = u and u.path or "/" }, core.error_mt)
end

--- Wraps `send(req)` so that it follows up to `max` redirects as described
-- above. `state.redirect` is set to the hop number before each send (for the
-- debug hook); `insecure` allows https -> http to any host.
function M.wrap(send, max, insecure, state)
  state = state or {}
  return function(req)
    state.redirect = 0
    local res, err = send(req)
    local hop, current = 0, req
    while res and REDIRECT[res.status] do
      local location = res.headers and res.headers.location
      if type(location) ~= "string" or location == "" then return res end
      if hop >= max then
        local why = max == 0 and "redirects are not followed (max_redirects = 0)"
          or ("more than %d redirects (max_redirects)"):format(max)
        return fail(current, res.status, ("HTTP %d: %s"):format(res.status, why))
      end
      hop = hop + 1
      local target = M.resolve(current.url, location)
      local from, to = parse(current.url), parse(target)
      if not to then
        return fail(current, res.status, ("HTTP %d: redirect %d names no http(s) URL"):format(res.status, hop))
      end
      if to.has_userinfo then -- libcurl would send them as Basic credentials of the server's choosing
        return fail(current, res.status, ("HTTP %d: redirect %d carries credentials in the URL; not followed")
          :format(res.status, hop))
      end
      if from and from.scheme == "https" and to.scheme == "http" and not insecure and not core.is_loopback(to.host) then
        return fail(current, res.status, ("HTTP %d: redirect %d leaves https for plain http"):format(res.status, hop))
      end
      local same = from ~= nil and to.origin == from.origin
      local method, body, multipart = current.method, current.body, current.multipart
      if res.status == 303 or ((res.status == 301 or res.status == 302) and method == "POST") then
        method, body, multipart = (method == "HEAD" and "HEAD" or "GET"), nil, nil
      end
      if (body ~= nil or multipart ~= nil) and not same then
        return fail(current, res.status,
          ("HTTP %d: redirect %d to another host would resend the request body; not followed"):format(res.status, hop))
      end
      local headers = {}
      for k, v in pairs(current.headers or {}) do
        local name = tostring(k):lower()
        if not (not same and CREDENTIAL_HEADERS[name]) and not (body == nil and multipart == nil and name == "content-type") then
          headers[k] = v
        end
      end
      if not same then target = drop_api_token(target, to) end
      -- Credentials dropped once stay dropped: `current` is now the new hop.
      current = { method = method, url = target, headers = headers, body = body, multipart = multipart }
      state.redirect = hop
      res, err = send(current)
    end
    state.redirect = 0
    return res, err
  end
end

return M
