--- The `pipedrive` command line: `pipedrive <resource> <action> [id|term] [--param value ...]`.
--
-- Resources, actions and parameters come from `pipedrive.operations`, so every
-- operation the module has is reachable and documented by `--help` without a
-- list kept here. `M.run(argv, env)` does the work and returns the exit code;
-- `env` carries the outside world (output writers, environment, terminal
-- facts), so specs call it in-process; `M.main(argv)` is `bin/pipedrive`.
-- Output formatting lives in `pipedrive.cli_output`.
local compat = require "pipedrive.compat"
local pipedrive = require "pipedrive"
local core = require "pipedrive.core"
local operations = require "pipedrive.operations"
local output = require "pipedrive.cli_output"

local M = {}

--- Exit codes scripts can test.
M.EXIT = { ok = 0, error = 1, usage = 2, not_found = 3, auth = 4, rate_limited = 5 }

local EXIT_BY_KIND = {
  not_found = M.EXIT.not_found, unauthorized = M.EXIT.auth, forbidden = M.EXIT.auth,
  reauth_required = M.EXIT.auth, rate_limited = M.EXIT.rate_limited, access_denied = M.EXIT.auth,
  invalid_client = M.EXIT.auth, invalid_grant = M.EXIT.auth,
}

local USAGE = "usage: pipedrive <resource> <action> [id|term] [--param value ...] [--json|--jsonl] [--fields a,b]"
  .. " [--all]  (pipedrive --help)"

-- The command's own options: name -> true when it takes a value. A parameter of
-- an operation with one of these names is written --param-NAME.
local OPTIONS = {
  help = false, version = false, json = false, jsonl = false, all = false, progress = false,
  ["no-progress"] = false, fields = true, ["base-url"] = true, ["api-version"] = true, ["api-token"] = true,
  ["token-file"] = true, ["json-body"] = true, data = true, width = true, retries = true, ["max-items"] = true,
  insecure = false,
}

-- The options of `pipedrive login` (only there: an operation's parameter may
-- have one of these names). The client secret has no flag: other users see
-- command lines in `ps`; it comes from PIPEDRIVE_CLIENT_SECRET or a file.
local LOGIN_OPTIONS = {
  ["client-id"] = true, ["client-secret-file"] = true, ["redirect-uri"] = true, ["oauth-url"] = true,
  scope = true, open = false, timeout = true,
}
-- The command's own options that mean something to login.
local LOGIN_COMMON = { help = true, ["token-file"] = true, insecure = true, retries = true }

local DEFAULT_REDIRECT_URI = "http://127.0.0.1:8976/callback"

local CUSTOM_FIELD_KEY = "^" .. ("%x"):rep(40) .. "$"

local TYPE_LABEL = {
  id = "ID", uuid = "UUID", integer = "N", number = "NUMBER", boolean = "", string = "TEXT", date = "YYYY-MM-DD",
  list = "A,B", ids = "ID,ID", uuids = "UUID,UUID", object = "JSON", contacts = "TEXT", scalar = "VALUE",
  string_or_object = "TEXT|JSON", money = "'AMOUNT CUR'|JSON", array = "JSON", any = "JSON", file = "JSON",
}

local BOOL_WORDS = { ["true"] = true, yes = true, on = true, ["1"] = true,
                     ["false"] = false, no = false, off = false, ["0"] = false }

-- The one positional argument each kind of action takes.
local function positional_of(op)
  if op.positional then return op.positional end
  if op.kind == "get" or op.kind == "delete" or op.kind == "update" then return "id" end
  if op.kind == "search" then return "term" end
  if op.kind == "call" and op.params.id and op.params.id.path then return "id" end
end

-- The actions of a resource: the standard ones in the operations table's
-- order (FUNCTIONS), then the others (generated names), sorted.
local function actions_of(rname)
  local res, list, standard = operations[rname], {}, {}
  for _, fname in ipairs(operations.FUNCTIONS) do
    standard[fname] = true
    if type(res[fname]) == "table" and res[fname].kind then list[#list + 1] = fname end
  end
  local others = {}
  for fname, op in pairs(res) do
    if not standard[fname] and type(op) == "table" and op.kind then others[#others + 1] = fname end
  end
  table.sort(others)
  for _, fname in ipairs(others) do list[#list + 1] = fname end
  return list
end

local function is_resource(name)
  return operations.has(name)
end

-- "; did you mean X?" or "".
local function did_you_mean(name, candidates, prefix)
  local s = output.nearest(name, candidates)
  if not s then return "" end
  return ("; did you mean %s%s?"):format(prefix or "", s)
end

-- How a parameter is written on the command line.
local function flag_name(pname)
  if OPTIONS[pname:gsub("_", "-")] ~= nil then return "--param-" .. pname end
  return "--" .. pname
end

------------------------------------------------------------------------------
-- Help
------------------------------------------------------------------------------

local function sorted_params(op)
  local names = {}
  local pos = positional_of(op)
  for k, spec in pairs(op.params) do
    -- path parameters are flags too, but for the positional one (deals delete_follower ID --follower_id ID)
    if not spec.path or k ~= pos then names[#names + 1] = k end
  end
  table.sort(names, function(a, b)
    local ra, rb = op.params[a].required and 0 or 1, op.params[b].required and 0 or 1
    if ra ~= rb then return ra < rb end
    return a < b
  end)
  return names
end

local function action_synopsis(rname, fname, op)
  local parts = { "pipedrive", rname, fname }
  local pos = positional_of(op)
  if pos then parts[#parts + 1] = pos:upper() end
  for _, k in ipairs(sorted_params(op)) do
    local spec = op.params[k]
    if spec.required and k ~= pos then
      parts[#parts + 1] = flag_name(k) .. (TYPE_LABEL[spec.type] ~= "" and " " .. TYPE_LABEL[spec.type] or "")
    end
  end
  if op.require_one then
    -- "one of these is needed" (a lead's person or organization); renames such as org_id left out
    local alts = {}
    for _, k in ipairs(op.require_one[1]) do
      local spec = op.params[k]
      if spec and type(spec.v1) ~= "string" then
        alts[#alts + 1] = flag_name(k) .. (TYPE_LABEL[spec.type] ~= "" and " " .. TYPE_LABEL[spec.type] or "")
      end
    end
    if #alts > 0 then parts[#parts + 1] = "(" .. table.concat(alts, " | ") .. ")" end
  end
  for _, spec in pairs(op.params) do
    if not spec.required and not spec.path then
      parts[#parts + 1] = "[--param value ...]"
      break
    end
  end
  return table.concat(parts, " ")
end

local function general_help()
  local lines = {
    "pipedrive: Pipedrive CRM from the command line (pipedrive-lua " .. pipedrive._VERSION .. ")",
    "",
    USAGE,
    "",
    "resources and actions:",
  }
  local main = {}
  for _, r in ipairs(operations.RESOURCES) do
    main[r] = true
    local std = {}
    for _, fname in ipairs(operations.FUNCTIONS) do
      if type(operations[r][fname]) == "table" then std[#std + 1] = fname end
    end
    lines[#lines + 1] = ("  %-14s %s, ..."):format(r, table.concat(std, ", "))
  end
  -- The other resources by name only: listing their actions would load them all.
  local line = "  more:"
  for _, r in ipairs(operations.ALL_RESOURCES) do
    if not main[r] then
      if #line + #r + 2 > 100 then
        lines[#lines + 1] = line
        line = "       "
      end
      line = line .. " " .. r
    end
  end
  lines[#lines + 1] = line
  lines[#lines + 1] = ""
  lines[#lines + 1] = "  pipedrive login [--token-file PATH] [--open] ...   OAuth: log in, save the token (login --help)"
  local rest = {
    "",
    "examples:",
    "  pipedrive deals search acme",
    "  pipedrive deals get 12 --json",
    "  pipedrive persons add --name 'Ann' --email ann@x.io",
    "  pipedrive deals list --status open --all --jsonl > deals.jsonl",
    "",
    "options:",
    "  --json             one JSON document on stdout",
    "  --jsonl            one JSON record per line (listings)",
    "  --fields a,b,c     the columns or JSON fields to show (record keys, dotted paths)",
    "  --all              list: every page (with --max-items N at most N records)",
    "  --progress         a progress line on stderr with --all even when stderr is not a terminal",
    "  --no-progress      never a progress line",
    "  --json-body JSON   the parameters as a JSON object (--data JSON, --data @file.json, --data @- for stdin)",
    "  --width N          table width in columns (default: the terminal's, unlimited when not a terminal)",
    "  --base-url URL     Pipedrive's URL, https://HOST without a path (default $PIPEDRIVE_BASE_URL,"
      .. " https://$PIPEDRIVE_COMPANY_DOMAIN.pipedrive.com or https://api.pipedrive.com)",
    "  --api-version v1|v2  the API version (default v2 where Pipedrive has it)",
    "  --retries N        retries of a failed call (default 5; 0: none)",
    "  --token-file PATH  an OAuth token file (pipedrive.token_file); needs PIPEDRIVE_CLIENT_ID and"
      .. " PIPEDRIVE_CLIENT_SECRET",
    "  --api-token TOKEN  visible to other users in `ps`: prefer PIPEDRIVE_API_TOKEN",
    "  --insecure         allow a plain http:// --base-url to a host other than this machine (credentials unencrypted)",
    "  --help, --version",
    "",
    "credentials: PIPEDRIVE_API_TOKEN, or --token-file / PIPEDRIVE_TOKEN_FILE for OAuth",
    "             (`pipedrive login` logs in and saves the token there; pipedrive login --help).",
    "exit codes: 0 ok, 1 API or runtime error, 2 usage error, 3 not found, 4 authentication or permission,",
    "            5 rate limited after retries.",
    "Run `pipedrive <resource> --help` for its actions, `pipedrive <resource> <action> --help` for parameters.",
    "`pipedrive nginx-snippet` prints the nginx location OpenResty needs (README \"OpenResty\").",
  }
  for _, l in ipairs(rest) do lines[#lines + 1] = l end
  return table.concat(lines, "\n") .. "\n"
end

local function resource_help(rname)
  local lines = { ("usage: pipedrive %s <action> [id|term] [--param value ...]"):format(rname), "", "actions:" }
  for _, fname in ipairs(actions_of(rname)) do
    lines[#lines + 1] = "  " .. action_synopsis(rname, fname, operations[rname][fname])
  end
  lines[#lines + 1] = ""
  lines[#lines + 1] = ("Run `pipedrive %s <action> --help` for an action's parameters."):format(rname)
  return table.concat(lines, "\n") .. "\n"
end

local function action_help(rname, fname)
  local op = operations[rname][fname]
  local lines = { "usage: " .. action_synopsis(rname, fname, op) }
  local route = op.v2 or op.v1
  local where = ("%s %s"):format(route.method, route.path)
  if op.v2 and op.v1 then where = where .. ("   (--api-version v1: %s %s)"):format(op.v1.method, op.v1.path) end
  lines[#lines + 1] = "  " .. where
  if op.kind == "list" then
    lines[#lines + 1] = "  --all pages through everything (--max-items N); --jsonl streams one record per line"
  end
  lines[#lines + 1] = ""
  lines[#lines + 1] = "parameters (also --name=value; - and _ both work in names):"
  local rows = {}
  for _, k in ipairs(sorted_params(op)) do
    local spec = op.params[k]
    local label = TYPE_LABEL[spec.type] or "VALUE"
    local left = flag_name(k) .. (label ~= "" and " " .. label or "")
    local notes = {}
    if spec.required then notes[#notes + 1] = "required" end
    if spec.enum then notes[#notes + 1] = "one of " .. table.concat(spec.enum, ", ") end
    if spec.type == "list" or spec.type == "ids" or spec.type == "uuids" or spec.type == "contacts" then
      notes[#notes + 1] = "repeatable"
    end
    if spec.type == "boolean" then notes[#notes + 1] = "a flag: --" .. k .. ", --no-" .. k .. ", or =true/false" end
    if op.v2 and spec.v1 == false then notes[#notes + 1] = "v2 only" end
    if op.v2 and spec.v2 == false then notes[#notes + 1] = "v1 only" end
    rows[#rows + 1] = { left, table.concat(notes, "; ") }
  end
  local w = 0
  for _, r in ipairs(rows) do w = math.max(w, #r[1]) end
  for _, r in ipairs(rows) do lines[#lines + 1] = ("  %-" .. w .. "s  %s"):format(r[1], r[2]):gsub("%s+$", "") end
  if op.custom_fields then
    lines[#lines + 1] = "  custom fields: --<40-hex key> TEXT, or typed values in --json-body"
  end
  if op.require_one then lines[#lines + 1] = "  " .. op.require_one[2] end
  return table.concat(lines, "\n") .. "\n"
end

------------------------------------------------------------------------------
-- Arguments
------------------------------------------------------------------------------

local function usage_error(message, topic)
  return { usage = message, topic = topic }
end

-- Splits "a,b" items of every value given for a repeatable parameter.
local function split_all(values)
  local items = {}
  for _, v in ipairs(values) do
    for part in v:gmatch("[^,]+") do
      part = part:match("^%s*(.-)%s*$")
      if part ~= "" then items[#items + 1] = part end
    end
  end
  return items
end

local function decode_json(text, what)
  local v, err = core.json_decode(text)
  if v == nil then return nil, ("%s is not valid JSON: %s"):format(what, tostring(err)) end
  return v
end

-- One parameter's command-line strings -> the Lua value the module takes.
-- Values the module itself checks (ids, integers, enums) are passed on in a
-- form it accepts; its message then names the field.
local function typed(pname, spec, values)
  local t = spec.type
  local flag = flag_name(pname)
  if t == "list" then return table.concat(split_all(values), ",") end
  if t == "ids" then
    local items = split_all(values)
    for i, s in ipairs(items) do items[i] = compat.tointeger(tonumber(s)) or s end
    return core.array(items)
  end
  if t == "uuids" then return core.array(split_all(values)) end
  if t == "contacts" then
    if #values == 1 then return values[1] end
    local items = core.array()
    for i, v in ipairs(values) do items[i] = { value = v, primary = i == 1 } end
    return items
  end
  if #values > 1 then return nil, flag .. " is given more than once" end
  local s = values[1]
  if t == "boolean" then
    local b = BOOL_WORDS[s:lower()]
    if b == nil then return nil, ("%s takes true or false, got '%s'"):format(flag, s) end
    return b
  end
  if t == "id" or t == "integer" then return compat.tointeger(tonumber(s)) or s end
  if t == "number" then
    local n = tonumber(s)
    return n and (compat.tointeger(n) or n) or s
  end
  if t == "object" then
    local v, err = decode_json(s, flag)
    if v == nil then return nil, err end
    return v
  end
  if t == "string_or_object" then
    if s:match("^%s*{") then return decode_json(s, flag) end
    return s
  end
  if t == "money" then
    if s:match("^%s*{") then return decode_json(s, flag) end
    local amount, currency = s:match("^%s*([-+]?[%d.]+)%s+(%a%a%a)%s*$")
    if not amount or not tonumber(amount) then
      return nil, ("%s takes 'AMOUNT CURRENCY' (such as '5000 EUR') or a JSON object"):format(flag)
    end
    return { amount = compat.tointeger(tonumber(amount)) or tonumber(amount), currency = currency:upper() }
  end
  return s
end

local function read_data(text, env)
  if text:sub(1, 1) ~= "@" then return text end
  local path = text:sub(2)
  local body, err = env.read_file(path)
  if not body then return nil, ("--data: cannot read %s: %s"):format(path == "-" and "stdin" or path, tostring(err)) end
  return body
end

-- The command's own option names, sorted.
local function option_names()
  local names = {}
  for k in pairs(OPTIONS) do names[#names + 1] = k end
  table.sort(names)
  return names
end

-- What an unknown flag of an action may have meant: its parameters and the
-- command's options, written as the user writes ("-" or "_").
local function flag_candidates(op, typed_name)
  local hyphens = not typed_name:find("_", 1, true)
  local names = option_names()
  for k, spec in pairs(op.params) do
    if not spec.path then
      local f = flag_name(k):sub(3)
      names[#names + 1] = hyphens and f:gsub("_", "-") or f
    end
  end
  table.sort(names)
  return names
end

--- Parses argv. Returns a table { opts, resource, action, op, params = name -> {strings},
-- positional } or nil, usage_error.
local function parse(argv)
  local p = { opts = {}, params = {}, order = {}, words = {} }
  local i, rest = 1, false
  local function word(a)
    local words = p.words
    words[#words + 1] = a
    if #words == 1 then
      if a == "login" then
        p.login = true
        return
      end
      if not is_resource(a) then
        local names = { "login" }
        for _, r in ipairs(operations.ALL_RESOURCES) do names[#names + 1] = r end
        return usage_error(("unknown resource '%s'%s"):format(output.clean(a), did_you_mean(a, names)))
      end
      p.resource = a
    elseif p.login then
      -- not quoted: a secret pasted in the wrong place must not be echoed
      return usage_error("login takes options only, not arguments", "login")
    elseif #words == 2 then
      local op = operations[p.resource][a]
      if type(op) ~= "table" or not op.kind then
        local acts = actions_of(p.resource)
        local hint = did_you_mean(a, acts)
        -- the standard actions (the rest: pipedrive <resource> --help), or all when there are none
        local std = {}
        for _, f in ipairs(operations.FUNCTIONS) do
          if type(operations[p.resource][f]) == "table" then std[#std + 1] = f end
        end
        if #std > 0 then acts = std end
        return usage_error(("%s has no action '%s'%s"):format(p.resource, output.clean(a),
          hint ~= "" and hint or " (actions: " .. table.concat(acts, ", ") .. ")"), p.resource)
      end
      p.action, p.op = a, op
    elseif #words == 3 and positional_of(p.op) then
      p.positional = a
    else
      return usage_error(("unexpected argument '%s'"):format(output.clean(a)), p.resource)
    end
  end
  while i <= #argv do
    local a = argv[i]
    local problem
    if rest or a == "-" or a:sub(1, 1) ~= "-" or (tonumber(a) and #p.words >= 2) then
      problem = word(a)
    elseif a == "--" then
      rest = true
    elseif a == "-h" then
      p.opts.help = true
    elseif a:sub(1, 2) == "--" then
      local name, value = a:match("^%-%-([^=]+)=(.*)$")
      name = name or a:sub(3)
      local oname = name:gsub("_", "-")
      local takes = OPTIONS[oname]
      if p.login then
        takes = LOGIN_OPTIONS[oname]
        if takes == nil and LOGIN_COMMON[oname] then takes = OPTIONS[oname] end
      end
      if p.login and oname == "client-secret" then
        -- Refused without quoting anything after it: that would be the secret.
        problem = usage_error("login takes no --client-secret: other users see command lines (ps);"
          .. " set PIPEDRIVE_CLIENT_SECRET or give --client-secret-file PATH", "login")
      elseif p.login and takes == nil then
        local names = {}
        for k in pairs(LOGIN_OPTIONS) do names[#names + 1] = k end
        for k in pairs(LOGIN_COMMON) do names[#names + 1] = k end
        table.sort(names)
        problem = usage_error(("login has no option --%s%s"):format(output.clean(name),
          did_you_mean(name, names, "--")), "login")
      elseif takes ~= nil then
        if takes then
          if value == nil then
            i = i + 1
            value = argv[i]
            if value == nil then problem = usage_error(("--%s needs a value"):format(oname), p.resource) end
          end
        elseif value ~= nil then
          problem = usage_error(("--%s takes no value"):format(oname), p.resource)
        else
          value = true
        end
        if not problem and p.opts[oname] ~= nil then
          problem = usage_error(("--%s is given more than once"):format(oname), p.resource)
        end
        p.opts[oname] = value
      elseif not p.op then
        local hint = did_you_mean(name, option_names(), "--")
        problem = usage_error(("unknown option --%s%s"):format(output.clean(name),
          hint ~= "" and hint or " (an action's parameters come after the action)"), p.resource)
      else
        local pname = name:gsub("-", "_")
        local op = p.op
        local spec = op.params[pname]
        if not spec and pname:match("^param_") then
          pname = pname:sub(7)
          spec = op.params[pname]
        end
        local negated = false
        if not spec and pname:match("^no_") and op.params[pname:sub(4)]
          and op.params[pname:sub(4)].type == "boolean" then
          pname, negated = pname:sub(4), true
          spec = op.params[pname]
        end
        if not spec and op.custom_fields and name:match(CUSTOM_FIELD_KEY) then
          pname, spec = name, { type = "string" }
        end
        if not spec or spec.path or OPTIONS[name:gsub("_", "-")] ~= nil then
          problem = usage_error(("%s %s has no parameter --%s%s"):format(p.resource, p.action, output.clean(name),
            did_you_mean(name, flag_candidates(op, name), "--")), p.resource .. " " .. p.action)
        elseif spec.type == "boolean" and value == nil then
          local nxt = argv[i + 1]
          if not negated and nxt and BOOL_WORDS[nxt:lower()] ~= nil then
            value = nxt
            i = i + 1
          else
            value = negated and "false" or "true"
          end
        elseif value == nil then
          i = i + 1
          value = argv[i]
          if value == nil then
            problem = usage_error(("%s needs a value"):format(flag_name(pname)), p.resource .. " " .. p.action)
          end
        end
        if not problem then
          if not p.params[pname] then
            p.params[pname] = { spec = spec }
            p.order[#p.order + 1] = pname
          end
          local vals = p.params[pname]
          vals[#vals + 1] = value
        end
      end
    else
      problem = usage_error(("unknown option %s"):format(output.clean(a)), p.resource)
    end
    if problem then return nil, problem end
    i = i + 1
  end
  return p
end

-- The call's argument table: --json-body / --data first, then the flags, then
-- the positional id or term.
local function build_args(p, env)
  local args = {}
  local body = p.opts["json-body"] or p.opts.data
  if p.opts["json-body"] and p.opts.data then return nil, "give --json-body or --data, not both" end
  if body then
    local text, err = read_data(body, env)
    if not text then return nil, err end
    local v, jerr = decode_json(text, p.opts.data and "--data" or "--json-body")
    if v == nil then return nil, jerr end
    if type(v) ~= "table" or getmetatable(v) == core.array_mt then
      return nil, "--json-body must be a JSON object of parameters"
    end
    for k, x in pairs(v) do args[k] = x end
  end
  for _, pname in ipairs(p.order) do
    local vals = p.params[pname]
    local v, err = typed(pname, vals.spec, vals)
    if v == nil then return nil, err end
    args[pname] = v
  end
  -- A deal's value with its currency, as tables show it: --value "120 USD".
  local money = p.params.value
  if money and money.spec.type == "number" and p.op.params.currency and type(args.value) == "string" then
    local amount, currency = args.value:match("^%s*([-+]?[%d.]+)%s+(%a%a%a)%s*$")
    if amount and tonumber(amount) then
      currency = currency:upper()
      local given = p.params.currency and args.currency
      if given and tostring(given):upper() ~= currency then
        return nil, ("--value says %s but --currency says %s"):format(currency, output.clean(tostring(given)))
      end
      args.value, args.currency = compat.tointeger(tonumber(amount)) or tonumber(amount), currency
    end
  end
  local pos = positional_of(p.op)
  if p.positional then
    local v = p.positional
    if pos == "id" then v = compat.tointeger(tonumber(v)) or v end
    args[pos] = v
  elseif pos == "term" and args.term == nil then
    return nil, "a search term is missing"
  elseif pos == "id" and args.id == nil then
    return nil, "an id is missing"
  end
  return args
end

------------------------------------------------------------------------------
-- The client
------------------------------------------------------------------------------

local function company_url(domain)
  if domain:find("%.") then return "https://" .. domain end
  return "https://" .. domain .. ".pipedrive.com"
end

local function is_loopback(host)
  return host == "localhost" or host:match("^127%.%d+%.%d+%.%d+$") ~= nil or host == "[::1]"
end

-- Checks a base URL given by `source` (--base-url, PIPEDRIVE_BASE_URL, ...):
-- only scheme://host[:port] (the paths /api/v1 and /api/v2 are the client's
-- to add: a URL ending in /api/v1 would call /api/v1/api/v2/deals), and plain
-- http only to loopback unless --insecure. Returns the URL or nil, message;
-- the message quotes the scheme and host at most, never a path or query (a
-- token could be there).
local function check_url(url, source, insecure)
  local scheme, authority, rest = url:match("^(%a[%w+.-]*)://([^/?#]*)(.*)$")
  if not scheme or (scheme:lower() ~= "https" and scheme:lower() ~= "http") then
    return nil, ("%s must start with https:// (e.g. https://acme.pipedrive.com)"):format(source)
  end
  if authority:find("@", 1, true) then
    return nil, ("%s must not hold a user or password (credentials come from the environment)"):format(source)
  end
  if authority == "" or not authority:match("^[%w%.%-]+$") and not authority:match("^[%w%.%-]+:%d+$")
    and not authority:match("^%[[%x:%.]+%]:?%d*$") then
    return nil, ("%s has no valid host"):format(source)
  end
  local root = scheme:lower() .. "://" .. authority
  if rest ~= "" and rest ~= "/" then
    if rest:sub(1, 1) == "/" and not rest:find("[?#]") then
      return nil, ("%s must not have a path (the command adds /api/v1 or /api/v2 itself): use %s")
        :format(source, root)
    end
    return nil, ("%s must be only https://HOST, without a query or fragment: use %s"):format(source, root)
  end
  local host = authority:match("^(%[.*%])") or authority:match("^([^:]+)")
  if scheme:lower() == "http" and not insecure and not is_loopback(host) then
    return nil, ("%s uses plain http to %s, which is not this machine: use https://%s, or --insecure"
      .. " to send the credentials unencrypted anyway"):format(source, host, authority)
  end
  return root
end

-- The base URL from --base-url, PIPEDRIVE_BASE_URL or PIPEDRIVE_COMPANY_DOMAIN
-- (nil: the client's default), or nil, exit code, message.
local function base_url_of(p, env)
  local getenv = env.getenv
  local base, source = p.opts["base-url"], "--base-url"
  if base == nil then base, source = getenv("PIPEDRIVE_BASE_URL"), "PIPEDRIVE_BASE_URL" end
  if (base == nil or base == "") and (getenv("PIPEDRIVE_COMPANY_DOMAIN") or "") ~= "" then
    local domain = getenv("PIPEDRIVE_COMPANY_DOMAIN")
    if not domain:match("^[%w%-%.]+$") then
      return nil, M.EXIT.usage, "PIPEDRIVE_COMPANY_DOMAIN must be a name such as 'acme' or 'acme.pipedrive.com'"
    end
    base, source = company_url(domain), "PIPEDRIVE_COMPANY_DOMAIN"
  end
  if base == nil or base == "" then return false end
  local url, err = check_url(base, source, p.opts.insecure)
  if not url then return nil, M.EXIT.usage, err end
  return url
end

-- The OAuth host from --oauth-url (login) or PIPEDRIVE_OAUTH_URL; false for
-- Pipedrive's own, or nil, exit code, message.
local function oauth_url_of(p, env)
  local url, source = p.opts["oauth-url"], "--oauth-url"
  if url == nil then url, source = env.getenv("PIPEDRIVE_OAUTH_URL"), "PIPEDRIVE_OAUTH_URL" end
  if url == nil or url == "" then return false end
  local checked, err = check_url(url, source, p.opts.insecure)
  if not checked then return nil, M.EXIT.usage, err end
  return checked
end

--- Options for pipedrive.new from the command line and the environment.
-- Returns opts or nil, exit code, message.
local function client_options(p, env)
  local getenv = env.getenv
  local o = {}
  local base, bcode, berr = base_url_of(p, env)
  if base == nil then return nil, bcode, berr end
  if base then o.base_url = base end
  if p.opts.insecure then o.insecure = true end
  local api = p.opts["api-version"]
  if api ~= nil then
    if api ~= "v1" and api ~= "v2" then return nil, M.EXIT.usage, "--api-version takes v1 or v2" end
    o.api = api
  end
  if p.opts.retries ~= nil then
    local n = compat.tointeger(tonumber(p.opts.retries))
    if not n or n < 0 then return nil, M.EXIT.usage, "--retries takes a number of retries (0: none)" end
    o.retries = n > 0 and { max = n } or false
  end
  local token = p.opts["api-token"]
  if token ~= nil then
    env.stderr("pipedrive: warning: --api-token is visible to other users of this machine (ps);"
      .. " set PIPEDRIVE_API_TOKEN instead\n")
  end
  local token_file = p.opts["token-file"]
  if token == nil and token_file == nil then
    token = getenv("PIPEDRIVE_API_TOKEN")
    if token == "" then token = nil end
    if token == nil then token_file = getenv("PIPEDRIVE_TOKEN_FILE") end
    if token_file == "" then token_file = nil end
  end
  if token ~= nil then
    o.api_token = token
    return o
  end
  if token_file == nil then
    return nil, M.EXIT.auth, "no credentials: set PIPEDRIVE_API_TOKEN, or give --token-file with an OAuth token file"
  end
  local store, err = pipedrive.token_file(token_file)
  if not store then return nil, M.EXIT.auth, tostring(err.message or err) end
  if not store.token then
    return nil, M.EXIT.auth, token_file .. " holds no token yet: log in first (pipedrive login --token-file PATH)"
  end
  local id, secret = getenv("PIPEDRIVE_CLIENT_ID"), getenv("PIPEDRIVE_CLIENT_SECRET")
  if (id or "") == "" or (secret or "") == "" then
    return nil, M.EXIT.auth, "--token-file needs PIPEDRIVE_CLIENT_ID and PIPEDRIVE_CLIENT_SECRET (to refresh the token)"
  end
  o.oauth = { client_id = id, client_secret = secret, store = store,
              redirect_uri = (getenv("PIPEDRIVE_REDIRECT_URI") or "") ~= "" and getenv("PIPEDRIVE_REDIRECT_URI") or nil }
  local oauth_url, ocode, oerr = oauth_url_of(p, env)
  if oauth_url == nil then return nil, ocode, oerr end
  if oauth_url then o.oauth_url = oauth_url end
  return o
end

------------------------------------------------------------------------------
-- Running an action
------------------------------------------------------------------------------

-- A raised message from the module, without the position and with the
-- command's words: "pipedrive.deals.add: field 'title' is required" ->
-- "deals add: --title is required".
local function misuse_message(msg, p)
  msg = tostring(msg):gsub("^[^\n]-:%d+: ", "")
  msg = msg:gsub("^pipedrive%.(%w+)%.(%w+): ", "%1 %2: ")
  msg = msg:gsub("^pipedrive%.new: ", "")
  msg = msg:gsub("insecure = true", "--insecure")
  if p.op then
    msg = msg:gsub("field '([%w_]+)'", function(name)
      if name == positional_of(p.op) then return name end
      return flag_name(name)
    end)
  end
  return msg
end

local function is_misuse(msg)
  if type(msg) ~= "string" then return false end
  local m = msg:gsub("^[^\n]-:%d+: ", "")
  return m:match("^pipedrive%.") ~= nil
end

local function fields_of(p)
  local f = p.opts.fields
  if not f then return nil end
  local names = {}
  for part in f:gmatch("[^,]+") do
    part = part:match("^%s*(.-)%s*$")
    if part ~= "" then names[#names + 1] = part end
  end
  return #names > 0 and names or nil
end

local function writer(env) return env.stdout end

-- Warnings on stderr for --fields columns that no record shown filled.
local function warn_empty_fields(env, tracker)
  for _, line in ipairs(tracker.notes()) do env.stderr("pipedrive: warning: " .. line .. "\n") end
end

-- Output of a listing (list, search): rows are records (a search hit's item).
local function emit_rows(p, env, object, data, kind)
  local fields = fields_of(p)
  local cols = output.columns(object, fields)
  local out = writer(env)
  if fields then
    local tracker = output.field_tracker(cols)
    for _, x in ipairs(data) do tracker.add(kind == "search" and x.item or x) end
    warn_empty_fields(env, tracker)
  end
  local function doc(x)
    if fields then
      return output.pick(kind == "search" and x.item or x, cols)
    end
    if kind == "search" then
      local copy = {}
      for k, v in pairs(x) do copy[k] = v end
      copy.item = output.scrub(x.item)
      return copy
    end
    return output.scrub(x)
  end
  if p.opts.jsonl then
    for _, x in ipairs(data) do out(output.json(doc(x)) .. "\n") end
  elseif p.opts.json then
    local docs = core.array()
    for i, x in ipairs(data) do docs[i] = doc(x) end
    out(output.json(docs) .. "\n")
  else
    local rows = {}
    for i, x in ipairs(data) do rows[i] = output.scrub(kind == "search" and x.item or x) end
    if #rows == 0 then
      env.stderr(("pipedrive: no %s found\n"):format(p.resource))
      return
    end
    for _, line in ipairs(output.table_lines(rows, cols, env.width, not fields)) do out(line .. "\n") end
  end
end

local function emit_record(p, env, object, data)
  local fields = fields_of(p)
  local cols = fields and output.columns(object, fields)
  if cols then
    local tracker = output.field_tracker(cols)
    tracker.add(data)
    warn_empty_fields(env, tracker)
  end
  data = output.scrub(data)
  if p.opts.json or p.opts.jsonl then
    env.stdout(output.json(cols and output.pick(data, cols) or data) .. "\n")
  else
    for _, line in ipairs(output.record_lines(data, cols, env.width)) do env.stdout(line .. "\n") end
  end
end

-- list --all: every page through `each`; JSON lines and the JSON array are
-- written as records arrive, so memory stays constant however many there are.
local function list_all(p, env, pd, object, args)
  local max_items
  if p.opts["max-items"] then
    max_items = compat.tointeger(tonumber(p.opts["max-items"]))
    if not max_items or max_items < 0 then return nil, "usage", "--max-items takes a non-negative integer" end
    args.max_items = max_items
  end
  local page = compat.tointeger(args.limit) or 500
  local progress = env.progress
  local tty = env.isatty(2)
  local count = 0
  local function show(final)
    if not progress then return end
    if tty then
      env.stderr(final and "\r\27[K" or ("\r\27[Kpipedrive: %d %s fetched..."):format(count, p.resource))
    elseif final or count % page == 0 then
      env.stderr(("pipedrive: %d %s fetched%s\n"):format(count, p.resource, final and ", done" or ""))
    end
  end
  local fields = fields_of(p)
  local cols = output.columns(object, fields)
  local rows = {}
  local tracker = fields and output.field_tracker(cols)
  local function doc(x) return fields and output.pick(x, cols) or output.scrub(x) end
  if p.opts.json then env.stdout("[") end
  local ok, err = pcall(function()
    for rec in pd[p.resource].each(args) do
      count = count + 1
      if tracker then tracker.add(rec) end
      if p.opts.jsonl then
        env.stdout(output.json(doc(rec)) .. "\n")
      elseif p.opts.json then
        env.stdout((count > 1 and ",\n" or "") .. output.json(doc(rec)))
      else
        rows[#rows + 1] = output.scrub(rec)
      end
      if count % page == 0 or (tty and count % 50 == 0) then show(false) end
    end
  end)
  if p.opts.json then env.stdout("]\n") end
  show(true)
  if not ok then return nil, "error", err end
  if tracker then warn_empty_fields(env, tracker) end
  if not (p.opts.json or p.opts.jsonl) then
    if #rows == 0 then
      env.stderr(("pipedrive: no %s found\n"):format(p.resource))
    else
      for _, line in ipairs(output.table_lines(rows, cols, env.width, not fields)) do env.stdout(line .. "\n") end
    end
  end
  return true
end

-- Maps an error value from the module to the exit code and one line on stderr.
local function fail(env, err, p)
  if is_misuse(err) then
    env.stderr("pipedrive: " .. misuse_message(err, p) .. "\n")
    env.stderr((p.op and "usage: " .. action_synopsis(p.resource, p.action, p.op) or USAGE) .. "\n")
    return M.EXIT.usage
  end
  local line = tostring(err):gsub("[\r\n]+", " ")
  if not line:match("^pipedrive") then line = "pipedrive: " .. line end
  env.stderr(output.clean(line) .. "\n")
  if type(err) == "table" then return EXIT_BY_KIND[err.kind] or M.EXIT.error end
  return M.EXIT.error
end

local function execute(p, env)
  local rname, fname, op = p.resource, p.action, p.op
  local object = operations[rname].object
  local args, aerr = build_args(p, env)
  if not args then
    env.stderr(("pipedrive: %s %s: %s\n"):format(rname, fname, aerr))
    env.stderr("usage: " .. action_synopsis(rname, fname, op) .. "\n")
    return M.EXIT.usage
  end
  if p.opts.all and op.kind ~= "list" then
    env.stderr("pipedrive: --all works with list\n" .. USAGE .. "\n")
    return M.EXIT.usage
  end
  if p.opts.json and p.opts.jsonl then
    env.stderr("pipedrive: give --json or --jsonl, not both\n" .. USAGE .. "\n")
    return M.EXIT.usage
  end
  local copts, code, cmsg = client_options(p, env)
  if not copts then
    env.stderr("pipedrive: " .. cmsg .. "\n")
    return code
  end
  local okc, pd = pcall(pipedrive.new, copts)
  if not okc then return fail(env, pd, p) end
  local ok, a, b, c = pcall(function()
    if op.kind == "list" and p.opts.all then return list_all(p, env, pd, object, args) end
    return pd[rname][fname](args)
  end)
  pd.close()
  if not ok then return fail(env, a, p) end
  if op.kind == "list" and p.opts.all then
    if a then return M.EXIT.ok end
    if b == "usage" then
      env.stderr("pipedrive: " .. c .. "\n" .. USAGE .. "\n")
      return M.EXIT.usage
    end
    return fail(env, c, p)
  end
  local data, info = a, b
  if data == nil then return fail(env, info, p) end
  if op.kind == "list" or op.kind == "search" then
    emit_rows(p, env, object, data, op.kind)
    -- One page of several: say so on stderr (stdout stays the records only).
    if info and info.more then
      local hint = info.next_cursor and ("--cursor " .. output.clean(tostring(info.next_cursor)))
        or info.next_start and ("--start " .. output.clean(tostring(info.next_start))) or nil
      local shown = ("pipedrive: showed %d %s; there are more"):format(#data, op.kind == "list" and rname or "results")
      if op.kind == "list" then
        env.stderr(("%s: --all fetches every page%s\n"):format(shown, hint and " (or " .. hint .. " for the next page)" or ""))
      elseif hint then
        env.stderr(("%s: %s gives the next page\n"):format(shown, hint))
      end
    end
  elseif op.kind == "delete" then
    local id = type(data) == "table" and data.id or args.id
    if p.opts.json or p.opts.jsonl then
      env.stdout(output.json({ id = id }) .. "\n")
    else
      env.stdout(("deleted %s %s\n"):format(object, output.cell(id)))
    end
  else
    emit_record(p, env, object, data)
  end
  return M.EXIT.ok
end

------------------------------------------------------------------------------
-- login
------------------------------------------------------------------------------

local function login_help()
  return table.concat({
    "usage: pipedrive login --token-file PATH [--client-id ID] [--client-secret-file PATH] [--redirect-uri URI]",
    "                       [--oauth-url URL] [--scope SCOPES] [--open] [--timeout SECONDS] [--insecure]",
    "",
    "Logs in with OAuth 2.0 (authorization code): prints Pipedrive's authorize URL (--open also opens it with",
    "$BROWSER or xdg-open), catches the browser's redirect on the loopback --redirect-uri, exchanges the code",
    "and saves the token in the token file (mode 600), where the other commands find it (--token-file or",
    "PIPEDRIVE_TOKEN_FILE, with PIPEDRIVE_CLIENT_ID and PIPEDRIVE_CLIENT_SECRET to refresh it).",
    "",
    "  --token-file PATH          where the token is saved (default $PIPEDRIVE_TOKEN_FILE)",
    "  --client-id ID             the app's client id (default $PIPEDRIVE_CLIENT_ID)",
    "  --client-secret-file PATH  a file holding the client secret (- reads stdin); default $PIPEDRIVE_CLIENT_SECRET.",
    "                             There is no --client-secret: other users see command lines in `ps`",
    "  --redirect-uri URI         the app's callback, http://127.0.0.1:PORT/PATH (default $PIPEDRIVE_REDIRECT_URI,",
    "                             else " .. DEFAULT_REDIRECT_URI .. ")",
    "  --oauth-url URL            the OAuth host (default $PIPEDRIVE_OAUTH_URL, else https://oauth.pipedrive.com)",
    "  --scope SCOPES             the scopes to ask for (default: the app's)",
    "  --open                     open the URL in a browser ($BROWSER, else xdg-open)",
    "  --timeout SECONDS          how long to wait for the redirect (default 300)",
    "",
    "example:",
    "  export PIPEDRIVE_CLIENT_ID=... PIPEDRIVE_CLIENT_SECRET=... PIPEDRIVE_TOKEN_FILE=~/.pipedrive-token.json",
    "  pipedrive login --open && pipedrive users list",
  }, "\n") .. "\n"
end

-- The value of a login option, else of an environment variable; nil when
-- neither is set or both are empty.
local function option_or_env(p, env, flag, var)
  local v = p.opts[flag]
  if v == nil or v == "" then v = env.getenv(var) end
  if v == "" then return nil end
  return v
end

-- Opens `url` in the user's browser: $BROWSER, else xdg-open, in the
-- background, with the URL as one quoted argument.
local function open_in_browser(env, url)
  local browser = env.getenv("BROWSER")
  if browser == nil or browser == "" then browser = "xdg-open" end
  os.execute(("%s '%s' >/dev/null 2>&1 &"):format(browser, (url:gsub("'", "'\\''"))))
end

--- `pipedrive login`: pd.oauth.login with a token file store.
local function run_login(p, env)
  local function usage(msg)
    env.stderr("pipedrive: login: " .. msg .. "\nusage: pipedrive login --token-file PATH ...  (pipedrive login --help)\n")
    return M.EXIT.usage
  end
  local path = option_or_env(p, env, "token-file", "PIPEDRIVE_TOKEN_FILE")
  if not path then return usage("give --token-file PATH or set PIPEDRIVE_TOKEN_FILE: the token is saved there") end
  local client_id = option_or_env(p, env, "client-id", "PIPEDRIVE_CLIENT_ID")
  if not client_id then return usage("give --client-id ID or set PIPEDRIVE_CLIENT_ID") end
  local secret
  local secret_file = p.opts["client-secret-file"]
  if secret_file then
    local text = env.read_file(secret_file)
    secret = text and text:match("^%s*(.-)%s*$")
    if not secret or secret == "" then
      return usage(("--client-secret-file: cannot read a secret from %s")
        :format(secret_file == "-" and "stdin" or output.clean(secret_file)))
    end
  else
    secret = env.getenv("PIPEDRIVE_CLIENT_SECRET")
    if secret == "" then secret = nil end
  end
  if not secret then
    return usage("set PIPEDRIVE_CLIENT_SECRET or give --client-secret-file PATH (- reads stdin)")
  end
  local redirect = option_or_env(p, env, "redirect-uri", "PIPEDRIVE_REDIRECT_URI") or DEFAULT_REDIRECT_URI
  local rhost = redirect:match("^http://([%w%.%-%[%]:]-):%d+/[^?#]*$")
  if not (rhost == "127.0.0.1" or rhost == "localhost" or rhost == "[::1]") then
    return usage(("the redirect URI must be http://127.0.0.1:PORT/PATH (the command catches the redirect on this"
      .. " machine), got '%s'"):format(output.clean(redirect)))
  end
  local timeout = 300
  if p.opts.timeout then
    timeout = tonumber(p.opts.timeout)
    if not timeout or timeout <= 0 then return usage("--timeout takes a number of seconds") end
  end
  local oauth_url, ocode, oerr = oauth_url_of(p, env)
  if oauth_url == nil then
    env.stderr("pipedrive: login: " .. oerr .. "\n")
    return ocode
  end
  local store, serr = pipedrive.token_file(path)
  if not store then
    env.stderr("pipedrive: login: " .. output.clean(tostring(serr.message or serr)) .. "\n")
    return M.EXIT.error
  end
  local o = { oauth = { client_id = client_id, client_secret = secret, redirect_uri = redirect, store = store },
              oauth_url = oauth_url or nil, insecure = p.opts.insecure or nil }
  if p.opts.retries ~= nil then
    local n = compat.tointeger(tonumber(p.opts.retries))
    if not n or n < 0 then return usage("--retries takes a number of retries (0: none)") end
    o.retries = n > 0 and { max = n } or false
  end
  local okc, pd = pcall(pipedrive.new, o)
  if not okc then return fail(env, pd, p) end
  local ok, token, err = pcall(pd.oauth.login, {
    quiet = true, timeout = timeout, scope = p.opts.scope,
    open = function(url)
      env.stderr(("Open this URL in a browser and allow access:\n  %s\nwaiting for the redirect to %s ...\n")
        :format(url, redirect))
      if p.opts.open then env.open(url) end
    end,
  })
  pd.close()
  if not ok then return fail(env, token, p) end
  if not token then return fail(env, err, p) end
  env.stdout(("logged in: the token is saved in %s%s\n"):format(output.clean(path),
    token.api_domain and ("; calls go to " .. output.clean(token.api_domain)) or ""))
  return M.EXIT.ok
end

------------------------------------------------------------------------------
-- Entry points
------------------------------------------------------------------------------

--- Runs the command line `argv` (an array of strings, without the program
-- name) and returns the exit code. `env` (all optional):
--   stdout(s), stderr(s)   writers (default io.stdout / io.stderr)
--   getenv(name)           the environment (default os.getenv)
--   isatty(fd)             whether fd 1 / 2 is a terminal (default: false)
--   columns()              the terminal's width, when stdout is one (default: none)
--   read_file(path)        for --data @path and login's --client-secret-file; "-" is stdin (default: io)
--   open(url)              login --open: shows the authorize URL (default: $BROWSER, else xdg-open)
function M.run(argv, env)
  env = env or {}
  local e = {
    stdout = env.stdout or function(s) io.stdout:write(s) end,
    stderr = env.stderr or function(s) io.stderr:write(s) end,
    getenv = env.getenv or os.getenv,
    isatty = env.isatty or function() return false end,
    read_file = env.read_file or function(path)
      if path == "-" then return io.stdin:read("*a") end
      local f, err = io.open(path, "rb")
      if not f then return nil, err end
      local s = f:read("*a")
      f:close()
      return s
    end,
  }
  if argv and argv[1] == "nginx-snippet" then -- OpenResty's location, see pipedrive.nginx_snippet
    return require("pipedrive.nginx_snippet").command(argv, e)
  end
  local p, perr = parse(argv or {})
  if not p then
    e.stderr("pipedrive: " .. perr.usage .. "\n")
    local topic = perr.topic
    if topic == "login" then
      e.stderr("usage: pipedrive login --token-file PATH ...  (pipedrive login --help)\n")
    elseif topic and topic:find(" ") then
      local r, a = topic:match("^(%S+) (%S+)$")
      e.stderr("usage: " .. action_synopsis(r, a, operations[r][a]) .. "\n")
    elseif topic then
      e.stderr(("usage: pipedrive %s <%s> ...  (pipedrive %s --help)\n")
        :format(topic, table.concat(actions_of(topic), "|"), topic))
    else
      e.stderr(USAGE .. "\n")
    end
    return M.EXIT.usage
  end
  if p.login then
    if p.opts.help then
      e.stdout(login_help())
      return M.EXIT.ok
    end
    e.open = env.open or function(url) open_in_browser(e, url) end
    return run_login(p, e)
  end
  if p.opts.help then
    if p.op then
      e.stdout(action_help(p.resource, p.action))
    elseif p.resource then
      e.stdout(resource_help(p.resource))
    else
      e.stdout(general_help())
    end
    return M.EXIT.ok
  end
  if p.opts.version then
    e.stdout(("pipedrive %s (pipedrive-lua, %s)\n"):format(pipedrive._VERSION, _VERSION))
    return M.EXIT.ok
  end
  if not p.resource then
    e.stderr(USAGE .. "\n")
    return M.EXIT.usage
  end
  if not p.op then
    e.stderr(("pipedrive: %s needs an action: %s\n"):format(p.resource, table.concat(actions_of(p.resource), ", ")))
    e.stderr(("usage: pipedrive %s <action> ...  (pipedrive %s --help)\n"):format(p.resource, p.resource))
    return M.EXIT.usage
  end
  if p.opts.width then
    local w = compat.tointeger(tonumber(p.opts.width))
    if not w or w < 20 then
      e.stderr("pipedrive: --width takes a number of columns (20 or more)\n" .. USAGE .. "\n")
      return M.EXIT.usage
    end
    e.width = w
  elseif e.isatty(1) then
    local c = env.columns and env.columns()
    if c and c >= 20 then e.width = c end
  end
  e.progress = p.opts.all and not p.opts["no-progress"] and (p.opts.progress or e.isatty(2)) or false
  return execute(p, e)
end

-- Terminal facts for the real process: `test -t` in a shell that inherits our
-- descriptors, and the width from COLUMNS or stty.
local function real_isatty(fd)
  local ok = os.execute(("test -t %d"):format(fd))
  return ok == true or ok == 0
end

local function real_columns()
  local c = compat.tointeger(tonumber(os.getenv("COLUMNS") or ""))
  if c and c > 0 then return c end
  local f = io.popen("stty size </dev/tty 2>/dev/null", "r")
  if not f then return nil end
  local s = f:read("*a") or ""
  f:close()
  return compat.tointeger(tonumber(s:match("^%d+%s+(%d+)") or ""))
end

--- bin/pipedrive: runs `argv` with the process's streams and environment.
function M.main(argv)
  local cache = {}
  local list = {}
  for i = 1, #(argv or {}) do list[i] = argv[i] end
  return M.run(list, {
    isatty = function(fd)
      if cache[fd] == nil then cache[fd] = real_isatty(fd) end
      return cache[fd]
    end,
    columns = real_columns,
  })
end

return M
