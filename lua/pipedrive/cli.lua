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
  reauth_required = M.EXIT.auth, rate_limited = M.EXIT.rate_limited,
}

local USAGE = "usage: pipedrive <resource> <action> [id|term] [--param value ...] [--json|--jsonl] [--fields a,b]"
  .. " [--all]  (pipedrive --help)"

-- The command's own options: name -> true when it takes a value. A parameter of
-- an operation with one of these names is written --param-NAME.
local OPTIONS = {
  help = false, version = false, json = false, jsonl = false, all = false, progress = false,
  ["no-progress"] = false, fields = true, ["base-url"] = true, ["api-version"] = true, ["api-token"] = true,
  ["token-file"] = true, ["json-body"] = true, data = true, width = true, retries = true, ["max-items"] = true,
}

local CUSTOM_FIELD_KEY = "^" .. ("%x"):rep(40) .. "$"

local TYPE_LABEL = {
  id = "ID", uuid = "UUID", integer = "N", number = "NUMBER", boolean = "", string = "TEXT", date = "YYYY-MM-DD",
  list = "A,B", ids = "ID,ID", uuids = "UUID,UUID", object = "JSON", contacts = "TEXT", scalar = "VALUE",
  string_or_object = "TEXT|JSON", money = "'AMOUNT CUR'|JSON",
}

local BOOL_WORDS = { ["true"] = true, yes = true, on = true, ["1"] = true,
                     ["false"] = false, no = false, off = false, ["0"] = false }

-- The one positional argument each kind of action takes.
local function positional_of(op)
  if op.kind == "get" or op.kind == "delete" or op.kind == "update" then return "id" end
  if op.kind == "search" then return "term" end
end

-- The actions of a resource in the operations table's order.
local function actions_of(rname)
  local res, list = operations[rname], {}
  for _, fname in ipairs(operations.FUNCTIONS) do
    if type(res[fname]) == "table" and res[fname].kind then list[#list + 1] = fname end
  end
  return list
end

local function is_resource(name)
  for _, r in ipairs(operations.RESOURCES) do
    if r == name then return true end
  end
  return false
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
  for k, spec in pairs(op.params) do
    if not spec.path then names[#names + 1] = k end
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
  for _, r in ipairs(operations.RESOURCES) do
    lines[#lines + 1] = ("  %-14s %s"):format(r, table.concat(actions_of(r), ", "))
  end
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
    "  --base-url URL     Pipedrive's URL (default $PIPEDRIVE_BASE_URL, https://$PIPEDRIVE_COMPANY_DOMAIN.pipedrive.com"
      .. " or https://api.pipedrive.com)",
    "  --api-version v1|v2  the API version (default v2 where Pipedrive has it)",
    "  --retries N        retries of a failed call (default 5; 0: none)",
    "  --token-file PATH  an OAuth token file (pipedrive.token_file); needs PIPEDRIVE_CLIENT_ID and"
      .. " PIPEDRIVE_CLIENT_SECRET",
    "  --api-token TOKEN  visible to other users in `ps`: prefer PIPEDRIVE_API_TOKEN",
    "  --help, --version",
    "",
    "credentials: PIPEDRIVE_API_TOKEN, or --token-file / PIPEDRIVE_TOKEN_FILE for OAuth.",
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
  if op.v2 then where = where .. ("   (--api-version v1: %s %s)"):format(op.v1.method, op.v1.path) end
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

--- Parses argv. Returns a table { opts, resource, action, op, params = name -> {strings},
-- positional } or nil, usage_error.
local function parse(argv)
  local p = { opts = {}, params = {}, order = {}, words = {} }
  local i, rest = 1, false
  local function word(a)
    local words = p.words
    words[#words + 1] = a
    if #words == 1 then
      if not is_resource(a) then return usage_error(("unknown resource '%s'"):format(output.clean(a))) end
      p.resource = a
    elseif #words == 2 then
      local op = operations[p.resource][a]
      if type(op) ~= "table" or not op.kind then
        return usage_error(("%s has no action '%s' (actions: %s)")
          :format(p.resource, output.clean(a), table.concat(actions_of(p.resource), ", ")), p.resource)
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
      if takes ~= nil then
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
        problem = usage_error(("unknown option --%s (an action's parameters come after the action)")
          :format(output.clean(name)), p.resource)
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
          problem = usage_error(("%s %s has no parameter --%s"):format(p.resource, p.action, output.clean(name)),
            p.resource .. " " .. p.action)
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

--- Options for pipedrive.new from the command line and the environment.
-- Returns opts or nil, exit code, message.
local function client_options(p, env)
  local getenv = env.getenv
  local o = {}
  local base = p.opts["base-url"] or getenv("PIPEDRIVE_BASE_URL")
  if (base == nil or base == "") and (getenv("PIPEDRIVE_COMPANY_DOMAIN") or "") ~= "" then
    local domain = getenv("PIPEDRIVE_COMPANY_DOMAIN")
    if not domain:match("^[%w%-%.]+$") then
      return nil, M.EXIT.usage, "PIPEDRIVE_COMPANY_DOMAIN must be a name such as 'acme' or 'acme.pipedrive.com'"
    end
    base = company_url(domain)
  end
  if base ~= "" then o.base_url = base end
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
    return nil, M.EXIT.auth, token_file .. " holds no token yet: log in first (pd.oauth.login, see README)"
  end
  local id, secret = getenv("PIPEDRIVE_CLIENT_ID"), getenv("PIPEDRIVE_CLIENT_SECRET")
  if (id or "") == "" or (secret or "") == "" then
    return nil, M.EXIT.auth, "--token-file needs PIPEDRIVE_CLIENT_ID and PIPEDRIVE_CLIENT_SECRET (to refresh the token)"
  end
  o.oauth = { client_id = id, client_secret = secret, store = store,
              redirect_uri = (getenv("PIPEDRIVE_REDIRECT_URI") or "") ~= "" and getenv("PIPEDRIVE_REDIRECT_URI") or nil }
  local oauth_url = getenv("PIPEDRIVE_OAUTH_URL")
  if (oauth_url or "") ~= "" then o.oauth_url = oauth_url end
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

-- Output of a listing (list, search): rows are records (a search hit's item).
local function emit_rows(p, env, object, data, kind)
  local fields = fields_of(p)
  local cols = output.columns(object, fields)
  local out = writer(env)
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
  local function doc(x) return fields and output.pick(x, cols) or output.scrub(x) end
  if p.opts.json then env.stdout("[") end
  local ok, err = pcall(function()
    for rec in pd[p.resource].each(args) do
      count = count + 1
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
    if info and info.more and not (p.opts.json or p.opts.jsonl) and env.isatty(2) then
      local hint = info.next_cursor and ("--cursor " .. info.next_cursor)
        or info.next_start and ("--start " .. info.next_start) or nil
      if hint and op.kind == "list" then
        env.stderr(("pipedrive: more %s: --all for every page, or %s for the next\n"):format(rname, hint))
      elseif hint then
        env.stderr(("pipedrive: more results: %s for the next page\n"):format(hint))
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
-- Entry points
------------------------------------------------------------------------------

--- Runs the command line `argv` (an array of strings, without the program
-- name) and returns the exit code. `env` (all optional):
--   stdout(s), stderr(s)   writers (default io.stdout / io.stderr)
--   getenv(name)           the environment (default os.getenv)
--   isatty(fd)             whether fd 1 / 2 is a terminal (default: false)
--   columns()              the terminal's width, when stdout is one (default: none)
--   read_file(path)        for --data @path; "-" is stdin (default: io)
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
    if topic and topic:find(" ") then
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
