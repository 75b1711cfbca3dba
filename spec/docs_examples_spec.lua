-- Documentation that cannot rot: every ```lua block of README.md, CONTRIBUTING.md and
-- docs/*.md runs against a fresh sandbox, and every command line starting with
-- `pipedrive ` in a ```sh block runs against one too.
--
-- How a block is run:
--   * ```lua: as a script of its own (a child interpreter) with PIPEDRIVE_API_TOKEN and
--     PIPEDRIVE_BASE_URL pointing at a sandbox started for it, and the checkout's
--     LUA_PATH/LUA_CPATH (and HOOK_PW, the README's webhook password).
--     A block that does not `require "pipedrive"` itself continues
--     the README's first example: it runs after the two lines that make `pipedrive`
--     and `pd` as that example does. It fails when it raises (an assert included) or
--     exits non-zero; what it prints is only shown on failure.
--   * ```sh: each line starting with `pipedrive ` (the `bin/pipedrive` of the checkout),
--     in order, in a temporary folder of its own and one sandbox per block; it must exit
--     0, or the code its comment names (`# ... exits 3`).
--   * Markers, an HTML comment on the line before the fence:
--       <!-- not run: reason -->     the block is skipped and counted with its reason;
--       <!-- file: path -->          the block must be the whole file (verbatim);
--       <!-- excerpt: path -->       its lines must appear in the file, in a row
--                                    (leading spaces aside).
--     A ```nginx block must carry file: or excerpt:. examples/openresty/ itself runs in a
--     real nginx below (examples/openresty/demo.sh), when nginx is installed.
local compat = require "pipedrive.compat"
local sandbox_spawn = require "pipedrive.sandbox.spawn"
local util = require "support.util"

local LUA = os.getenv("LUA") or "lua5.4"
-- The webhook password the README's triggers example reads from HOOK_PW.
local HOOK_PW = "docs-example-hook-password"
local PRELUDE = 'local pipedrive = require "pipedrive"; local pd = pipedrive.new{ api_token = '
  .. 'os.getenv("PIPEDRIVE_API_TOKEN"), base_url = os.getenv("PIPEDRIVE_BASE_URL") }'

local function q(s) return "'" .. tostring(s):gsub("'", [['\'']]) .. "'" end

local function read(path)
  local s = util.read_file(path)
  assert(s, "cannot read " .. path)
  return s
end

local function lines_of(s)
  local out = {}
  for line in (s:gsub("\n$", "") .. "\n"):gmatch("([^\n]*)\n") do out[#out + 1] = line end
  return out
end

-- The documents: README.md, CONTRIBUTING.md, docs/*.md (sorted).
local function documents()
  local list = { "README.md" }
  if util.read_file("CONTRIBUTING.md") then list[#list + 1] = "CONTRIBUTING.md" end
  local p = assert(io.popen("ls docs/*.md 2>/dev/null"))
  local more = {}
  for name in p:lines() do more[#more + 1] = name end
  p:close()
  table.sort(more)
  for _, name in ipairs(more) do list[#list + 1] = name end
  return list
end

-- Fenced blocks of a Markdown text: { lang, code, line, marker = { kind, value } }.
local function blocks_of(path)
  local out, lines = {}, lines_of(read(path))
  local i = 1
  while i <= #lines do
    local lang = lines[i]:match("^```(%S*)%s*$")
    if lang and lang ~= "" then
      local marker
      local j = i - 1
      while j > 0 and lines[j]:match("^%s*$") do j = j - 1 end
      local kind, value = (lines[j] or ""):match("^<!%-%-%s*([%w ]-):%s*(.-)%s*%-%->%s*$")
      if kind then marker = { kind = kind, value = value } end
      local code = {}
      local start = i
      i = i + 1
      while i <= #lines and not lines[i]:match("^```%s*$") do
        code[#code + 1] = lines[i]
        i = i + 1
      end
      out[#out + 1] = { lang = lang, code = table.concat(code, "\n") .. "\n", lines = code, line = start,
                        where = path .. ":" .. start, marker = marker }
    end
    i = i + 1
  end
  return out
end

local function trim(s) return (s:gsub("^%s+", ""):gsub("%s+$", "")) end

-- Checks a file: or excerpt: marker; returns true or false, reason.
local function matches_file(block)
  local path = block.marker.value
  local text = util.read_file(path)
  if not text then return false, "no file " .. path end
  if block.marker.kind == "file" then
    if text == block.code then return true end
    local a, b = lines_of(text), block.lines
    for i = 1, math.max(#a, #b) do
      if a[i] ~= b[i] then
        return false, ("differs from %s at line %d:\n  file:  %s\n  block: %s"):format(path, i, tostring(a[i]),
          tostring(b[i]))
      end
    end
    return false, "differs from " .. path .. " (trailing newline)"
  end
  local want = {}
  for i, l in ipairs(block.lines) do want[i] = trim(l) end
  local have = lines_of(text)
  for s = 1, #have - #want + 1 do
    local ok = true
    for k = 1, #want do
      if trim(have[s + k - 1]) ~= want[k] then
        ok = false
        break
      end
    end
    if ok then return true end
  end
  return false, "its lines do not appear in a row in " .. path
end

-- A sandbox for one block; returns it (stop it after).
local function fresh_sandbox()
  return sandbox_spawn.start{ lua = LUA }
end

-- package.path / cpath with the checkout's relative entries made absolute (blocks run elsewhere).
local function absolute(paths)
  local root = os.getenv("PWD") or "."
  local out = {}
  for entry in paths:gmatch("[^;]+") do
    out[#out + 1] = entry:sub(1, 1) == "/" and entry or (root .. "/" .. entry)
  end
  return table.concat(out, ";") .. ";;"
end

local function env_prefix(sb, extra)
  local parts = { "env", "-i", q("PATH=" .. (extra and extra.path or os.getenv("PATH") or "/usr/bin:/bin")),
                  q("HOME=" .. (extra and extra.home or os.getenv("HOME") or "/")),
                  q("LUA_PATH=" .. absolute(package.path)), q("LUA_CPATH=" .. absolute(package.cpath)),
                  q("PIPEDRIVE_API_TOKEN=" .. sb.api_token), q("PIPEDRIVE_BASE_URL=" .. sb.url),
                  q("HOOK_PW=" .. HOOK_PW) }
  if extra and extra.redis_url then parts[#parts + 1] = q("REDIS_URL=" .. extra.redis_url) end
  return table.concat(parts, " ")
end

-- A real Redis for the blocks that read REDIS_URL (README "Many workers and hosts"), started
-- on first need and kept for the run; nil when redis-server or pipedrive.hiredis is missing.
local redis_server
local function redis_url()
  if redis_server == nil then
    local redis = require "support.redis"
    redis_server = redis.available() and redis.start() or false
  end
  return redis_server and redis_server.url or nil
end

local function slurp_and_remove(path)
  local s = util.read_file(path) or ""
  os.remove(path)
  return s
end

local function tempdir()
  local dir = os.tmpname()
  os.remove(dir)
  assert(compat.execute("mkdir -p " .. q(dir .. "/bin")))
  return dir
end

-- Runs one lua block; returns true or false, output.
local function run_lua(block)
  local dir = tempdir()
  local script = dir .. "/block.lua"
  local src = block.code
  if not src:find('require%s*%(?%s*["\']pipedrive["\']') then src = PRELUDE .. "\n" .. src end
  local f = assert(io.open(script, "wb"))
  f:write(src)
  f:close()
  local extra = { home = dir }
  if src:find("REDIS_URL", 1, true) then
    extra.redis_url = redis_url()
    if not extra.redis_url then
      compat.execute("rm -rf " .. q(dir))
      return false, "this block needs Redis: redis-server and pipedrive.hiredis (./run deps installs them)"
    end
  end
  local sb = fresh_sandbox()
  local out = dir .. "/out"
  local ok = compat.execute(("cd %s && %s timeout 120 %s %s >%s 2>&1 </dev/null"):format(q(dir),
    env_prefix(sb, extra), q(LUA), q(script), q(out)))
  sb.stop()
  local output = slurp_and_remove(out)
  compat.execute("rm -rf " .. q(dir))
  return ok, output
end

-- The command lines of a sh block that start with `pipedrive ` (continuations joined),
-- each with the exit code its comment names (default 0).
local function cli_lines(block)
  local cmds, cur = {}, nil
  for _, line in ipairs(block.lines) do
    if cur then
      cur = cur .. " " .. trim(line)
    elseif line:match("^pipedrive ") then
      cur = line
    end
    if cur and not cur:match("\\%s*$") then
      local expect = tonumber(cur:match("#[^\n]-exits (%d+)")) or 0
      local cmd = cur:gsub("%s+#%s.*$", "")
      cmds[#cmds + 1] = { cmd = cmd, expect = expect }
      cur = nil
    elseif cur then
      cur = cur:gsub("\\%s*$", "")
    end
  end
  return cmds
end

-- Runs the CLI lines of one sh block in order against one sandbox; returns the count
-- run, and a failure message or nil.
local function run_cli(block, cmds)
  local dir = tempdir()
  local root = os.getenv("PWD") or "."
  local wrapper = dir .. "/bin/pipedrive"
  local f = assert(io.open(wrapper, "wb"))
  f:write(("#!/bin/sh\nexec %s %s \"$@\"\n"):format(q(LUA), q(root .. "/bin/pipedrive")))
  f:close()
  assert(compat.execute("chmod +x " .. q(wrapper)))
  local sb = fresh_sandbox()
  local failure
  local n = 0
  for _, c in ipairs(cmds) do
    local out = dir .. "/.out"
    local code = compat.execute_code(("cd %s && %s timeout 60 sh -c %s >%s 2>&1 </dev/null"):format(q(dir),
      env_prefix(sb, { path = dir .. "/bin:" .. (os.getenv("PATH") or "/usr/bin:/bin"), home = dir }), q(c.cmd),
      q(out)))
    local output = slurp_and_remove(out)
    n = n + 1
    if code ~= c.expect then
      failure = ("%s: `%s` exited %s, expected %d:\n%s"):format(block.where, c.cmd, tostring(code), c.expect, output)
      break
    end
  end
  sb.stop()
  compat.execute("rm -rf " .. q(dir))
  return n, failure
end

describe("documentation examples", function()
  local all = {}
  for _, path in ipairs(documents()) do
    for _, b in ipairs(blocks_of(path)) do all[#all + 1] = b end
  end
  local counts = { run = 0, not_run = 0, files = 0, cli = 0, reasons = {} }

  teardown(function()
    if redis_server then redis_server:stop() end
    local reasons = {}
    for r, n in pairs(counts.reasons) do reasons[#reasons + 1] = ("%d x %s"):format(n, r) end
    table.sort(reasons)
    io.stderr:write(("\ndocs examples: %d lua blocks run, %d not run (%s), %d blocks checked against files,"
      .. " %d CLI examples run\n"):format(counts.run, counts.not_run, table.concat(reasons, "; "), counts.files,
      counts.cli))
  end)

  it("finds the examples (the parser did not lose them)", function()
    local lua_blocks, sh_blocks = 0, 0
    for _, b in ipairs(all) do
      if b.lang == "lua" then lua_blocks = lua_blocks + 1 end
      if b.lang == "sh" then sh_blocks = sh_blocks + 1 end
    end
    assert.is_true(lua_blocks >= 10, "lua blocks: " .. lua_blocks)
    assert.is_true(sh_blocks >= 3, "sh blocks: " .. sh_blocks)
  end)

  for _, b in ipairs(all) do
    local m = b.marker
    if m and m.kind == "not run" then
      it(b.where .. " (" .. b.lang .. ") says why it is not run", function()
        assert.truthy(m.value:find("%S"), b.where .. ": give a reason after 'not run:'")
        counts.not_run = counts.not_run + 1
        counts.reasons[m.value] = (counts.reasons[m.value] or 0) + 1
      end)
    elseif m and (m.kind == "file" or m.kind == "excerpt") then
      it(b.where .. " is " .. (m.kind == "file" and "the file " or "an excerpt of ") .. m.value, function()
        local ok, why = matches_file(b)
        assert(ok, b.where .. ": " .. tostring(why))
        counts.files = counts.files + 1
      end)
    elseif m then
      it(b.where .. " has a known marker", function()
        error(b.where .. ": unknown marker '" .. m.kind .. "' (not run, file, excerpt)", 0)
      end)
    elseif b.lang == "lua" then
      it(b.where .. " runs against a sandbox", function()
        local ok, output = run_lua(b)
        assert(ok, ("%s failed:\n%s"):format(b.where, output))
        counts.run = counts.run + 1
      end)
    elseif b.lang == "nginx" then
      it(b.where .. " (nginx) is checked", function()
        error(b.where .. ": an nginx block needs <!-- file: path --> or <!-- excerpt: path -->", 0)
      end)
    elseif b.lang == "sh" then
      local cmds = cli_lines(b)
      if #cmds > 0 then
        it(b.where .. ": " .. #cmds .. " command line(s) run against a sandbox", function()
          local n, failure = run_cli(b, cmds)
          counts.cli = counts.cli + n
          assert(not failure, failure)
        end)
      end
    end
  end
end)

-- examples/openresty/ (shown verbatim in the README) in a real nginx.
describe("examples/openresty", function()
  local have_nginx = compat.execute("command -v nginx >/dev/null 2>&1")
    and util.read_file("/usr/lib/nginx/modules/ngx_http_lua_module.so") ~= nil
  if not have_nginx then
    pending("nginx with libnginx-mod-http-lua is not installed (./run installs it)")
    return
  end
  it("serves /deals from a sandbox through examples/openresty/demo.sh", function()
    -- demo.sh runs the sandbox on Lua 5.4 (build/) and nginx on LuaJIT (build/luajit/),
    -- whichever interpreter runs this suite
    for _, lua in ipairs({ "lua5.4", "luajit" }) do
      assert(compat.execute("env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL make -s --no-print-directory LUA=" .. lua
        .. " all >/dev/null"))
    end
    local out = os.tmpname()
    local code = compat.execute_code(("DEMO_ONCE=1 PORT=%d timeout 60 sh examples/openresty/demo.sh >%s 2>&1 </dev/null")
      :format(util.free_port(), q(out)))
    local text = slurp_and_remove(out)
    assert.equal(0, code, text)
    -- five fixture deals as the site's JSON
    local json = assert(text:match("GET /deals %->\n(%[.-%])"), text)
    local decoded = require("pipedrive.core").json_decode(json)
    assert.equal(5, #decoded, text)
    assert.equal("number", type(decoded[1].id))
  end)
end)
