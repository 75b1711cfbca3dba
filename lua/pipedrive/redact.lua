--- The debug hook (`pipedrive.new{ log = function(event) end }`) and the
-- redaction it relies on: every event is a fresh copy of what was sent or
-- received, with each secret replaced by "***".
--
-- Replaced: the headers x-api-token, authorization, proxy-authorization,
-- cookie and set-cookie; the query or form parameters api_token, client_secret,
-- code, refresh_token, access_token, token, password, http_auth_password; the
-- same names as JSON object keys in bodies (OAuth token answers, webhook
-- bodies); and, as a last net, every literal occurrence of a secret the client
-- knows (its API token, OAuth client secret, access and refresh tokens).
local core = require "pipedrive.core"

local M = {}

local SECRET_HEADERS = { ["x-api-token"] = true, authorization = true, ["proxy-authorization"] = true,
                         cookie = true, ["set-cookie"] = true }
local SECRET_NAMES = { "api_token", "client_secret", "code", "refresh_token", "access_token", "token", "password",
                       "http_auth_password", "id_token", "code_verifier" }
local SECRET_SET = {}
for _, n in ipairs(SECRET_NAMES) do SECRET_SET[n] = true end

M.MASK = "***"

--- "a=1&code=xyz" -> "a=1&code=***" (names compared after percent-decoding).
function M.params(s)
  if type(s) ~= "string" or s == "" then return s end
  local out = {}
  for part in (s .. "&"):gmatch("([^&]*)&") do
    local name, eq = part:match("^([^=]*)(=?)")
    local plain = name:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end):gsub("+", " ")
    if SECRET_SET[plain:lower()] then part = name .. (eq ~= "" and "=" or "") .. M.MASK end
    out[#out + 1] = part
  end
  return table.concat(out, "&")
end

--- The URL with secret query parameters masked (and any user:password@),
-- read by core.url_parse (the parser libcurl uses); a text that is no URL
-- there is shown as a placeholder: it cannot be told which part is secret.
function M.url(u)
  if type(u) ~= "string" then return u end
  local p = core.url_parse(u)
  if not p then return "(not a URL)" end
  local out = p.origin
  if p.has_userinfo then out = out:gsub("^([^:]*://)", "%1" .. M.MASK .. "@", 1) end
  out = out .. p.path
  if p.query then out = out .. "?" .. M.params(p.query) end
  if p.fragment then out = out .. "#" .. p.fragment end
  return out
end

-- The end of the JSON string starting at the quote at `i`: the index of its
-- closing quote, or nil when it does not close.
local function string_end(s, i)
  local j = i + 1
  while j <= #s do
    local c = s:byte(j)
    if c == 92 then j = j + 2
    elseif c == 34 then return j
    else j = j + 1 end
  end
  return nil
end

--- JSON text with the string values of secret keys masked, at any depth.
-- Not a parser: it walks the strings so that escaped quotes cannot hide a value.
function M.json(s)
  if type(s) ~= "string" or not s:find('"', 1, true) then return s end
  local out, i, n = {}, 1, #s
  while i <= n do
    local q = s:find('"', i, true)
    if not q then break end
    local e = string_end(s, q)
    if not e then break end
    out[#out + 1] = s:sub(i, e)
    i = e + 1
    local key = s:sub(q + 1, e - 1)
    local colon = s:match("^%s*:%s*()", i)
    if colon and SECRET_SET[key:lower()] then
      out[#out + 1] = s:sub(i, colon - 1)
      if s:byte(colon) == 34 then
        local ve = string_end(s, colon)
        out[#out + 1] = '"' .. M.MASK .. '"'
        i = ve and ve + 1 or n + 1
      else
        i = colon
      end
    end
  end
  out[#out + 1] = s:sub(i)
  return table.concat(out)
end

--- A body by its content type: form parameters or JSON; other text is left
-- to the literal net.
function M.body(body, content_type)
  if type(body) ~= "string" then return body end
  local ct = type(content_type) == "string" and content_type:lower() or ""
  if ct:find("x-www-form-urlencoded", 1, true) then return M.params(body) end
  return M.json(body)
end

--- A multipart request's parts as the hook shows them: name, filename, type
-- and the file's path or the data's size, never the data itself.
function M.parts(parts)
  if type(parts) ~= "table" then return nil end
  local out = {}
  for i, part in ipairs(parts) do
    out[i] = { name = part.name, filename = part.filename, type = part.type, path = part.path,
               size = type(part.data) == "string" and #part.data or nil }
  end
  return out
end

--- A copy of a header table with secret values masked (names lower-cased).
function M.headers(h)
  local out = {}
  for k, v in pairs(h or {}) do
    local name = tostring(k):lower()
    out[name] = SECRET_HEADERS[name] and M.MASK or v
  end
  return out
end

--- Replaces every literal occurrence of each secret in the list (strings of
-- at least `min` bytes, default 4: shorter ones would mask common words) with
-- "***". The one scrubber: the debug hook's events and pd.triggers' log lines
-- and errors go through it.
function M.text(s, secrets, min)
  if type(s) ~= "string" then return s end
  min = min or 4
  for _, secret in ipairs(secrets) do
    if type(secret) == "string" and #secret >= min then
      local at = 1
      while true do
        local a, b = s:find(secret, at, true)
        if not a then break end
        s = s:sub(1, a - 1) .. M.MASK .. s:sub(b + 1)
        at = a + #M.MASK
      end
    end
  end
  return s
end
local scrub = M.text

local function scrub_all(t, secrets)
  for k, v in pairs(t) do
    if type(v) == "string" then t[k] = scrub(v, secrets)
    elseif type(v) == "table" then scrub_all(v, secrets) end
  end
  return t
end

--- Wraps a transport so that `log` sees each request and its response or
-- failure. `state` carries `attempt` and `redirect` (set by the caller before
-- each send) and `secrets()` (the literal net). A log function that raises
-- is the user's bug: its error propagates like any other Lua error, but only
-- from outside the transport (never through libcurl).
function M.wrap(send, log, state, now)
  return function(req)
    local t0 = now()
    local secrets = state.secrets()
    local base = { attempt = state.attempt or 1, redirect = state.redirect or 0, method = req.method,
                   url = M.url(req.url) }
    local ev = scrub_all({ type = "request", attempt = base.attempt, redirect = base.redirect, method = base.method,
                           url = base.url, headers = M.headers(req.headers),
                           body = M.body(req.body, (M.headers(req.headers))["content-type"]),
                           multipart = M.parts(req.multipart) }, secrets)
    log(ev)
    local res, err = send(req)
    local out = { attempt = base.attempt, redirect = base.redirect, method = base.method, url = ev.url,
                  elapsed = now() - t0 }
    if res then
      out.type, out.status = "response", res.status
      out.headers = M.headers(res.headers)
      out.body = M.body(res.body, out.headers["content-type"])
    else
      out.type = "error"
      if type(err) == "table" then
        out.kind, out.message, out.stage = err.kind, err.message, err.stage
      else
        out.kind, out.message = "network", tostring(err)
      end
    end
    log(scrub_all(out, secrets))
    return res, err
  end
end

return M
