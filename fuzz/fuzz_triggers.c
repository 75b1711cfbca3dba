/* libFuzzer harness: webhook requests through lua/pipedrive/triggers.lua's
 * handle (the parsing, authentication and normalization of what Pipedrive
 * POSTs to a webhook), with the C core compiled in.
 *
 * One Lua state for the run: the standard libraries, pipedrive.core opened
 * from the linked-in csrc/core.c, and lua/pipedrive/triggers.lua found
 * through LUA_PATH (default "lua/?.lua;lua/?/init.lua", relative to the
 * repository root where fuzz/run.sh runs). Each input gets a fresh triggers
 * object (HTTP Basic user "hook", a password, dedupe memory of its own) with
 * one callback for "*" that checks the normalized event. Input: fields
 * separated by 0xFF (see harness.h):
 *   field 0   control: [0] webhook version (even "2.0", odd "1.0"),
 *             [1] what the callback does (ok, raise, return false, return nil, err),
 *             [2] Authorization (0: the right one, 1: none, else field 3 as given)
 *   field 1   method
 *   field 2   content-type (empty: no header)
 *   field 3   authorization header value (when control[2] says so)
 *   field 4   body
 *   rest      extra headers, name 0xFE value
 * Checks: handle never raises; the status is one handle may answer (200, 400,
 * 401, 405, 413, 415, 500, 503) and the body is JSON; the callback runs only
 * with the right credentials and sees a normalized event (event =
 * object.action, meta.version, meta.attempt >= 1, meta.dedupe_key, id an
 * integer or string, current/previous tables or nil, changed a sorted list of
 * strings without update_time on updates, raw the payload); when the callback
 * succeeded (200), the same request again is acknowledged without calling it;
 * no log line holds the password or its base64 form. */
#include "core.c"
#include "harness.h"

#include <lualib.h>

static lua_State *fz_L;
static int fz_run_ref = LUA_NOREF;

static const char fz_glue[] =
  "local triggers = require 'pipedrive.triggers'\n"
  "local core = require 'pipedrive.core'\n"
  "local PASSWORD = 'fz-PASSW0RD-secret'\n"
  "local CRED = core.base64_encode('hook:' .. PASSWORD)\n"
  "local ALLOWED = { [200] = true, [400] = true, [401] = true, [405] = true, [413] = true, [415] = true,\n"
  "                  [500] = true, [503] = true }\n"
  "local function check(ev)\n"
  "  if type(ev) ~= 'table' then return 'event is not a table' end\n"
  "  if type(ev.object) ~= 'string' or type(ev.action) ~= 'string' then return 'object/action' end\n"
  "  if ev.event ~= ev.object .. '.' .. ev.action then return 'event is not object.action' end\n"
  "  local m = ev.meta\n"
  "  if type(m) ~= 'table' then return 'no meta' end\n"
  "  if m.version ~= '1.0' and m.version ~= '2.0' then return 'meta.version' end\n"
  "  if math.type(m.attempt) ~= 'integer' or m.attempt < 1 then return 'meta.attempt' end\n"
  "  if type(m.dedupe_key) ~= 'string' then return 'meta.dedupe_key' end\n"
  "  if m.timestamp ~= nil and type(m.timestamp) ~= 'number' then return 'meta.timestamp' end\n"
  "  if ev.id ~= nil and math.type(ev.id) ~= 'integer' and type(ev.id) ~= 'string' then return 'id' end\n"
  "  if ev.current ~= nil and type(ev.current) ~= 'table' then return 'current' end\n"
  "  if ev.previous ~= nil and type(ev.previous) ~= 'table' then return 'previous' end\n"
  "  if type(ev.raw) ~= 'table' then return 'raw' end\n"
  "  if ev.action == 'updated' then\n"
  "    if type(ev.changed) ~= 'table' then return 'changed missing on an update' end\n"
  "    for i, k in ipairs(ev.changed) do\n"
  "      if type(k) ~= 'string' or k == 'update_time' then return 'changed holds ' .. tostring(k) end\n"
  "      if i > 1 and not (ev.changed[i - 1] < k) then return 'changed is not sorted' end\n"
  "    end\n"
  "  end\n"
  "end\n"
  "return function(version, mode, auth_mode, method, ct, auth, body, extra)\n"
  "  local bad, calls, logs = nil, 0, {}\n"
  "  local t = triggers.new(nil, { user = 'hook', password = PASSWORD, version = version, dedupe_max = 64,\n"
  "                                max_body = 4096, log = function(line) logs[#logs + 1] = line end })\n"
  "  t:on('*', function(ev)\n"
  "    calls = calls + 1\n"
  "    bad = bad or check(ev)\n"
  "    if mode == 1 then error('callback fails on purpose') end\n"
  "    if mode == 2 then return false end\n"
  "    if mode == 3 then return nil, 'no' end\n"
  "    return true\n"
  "  end)\n"
  "  local headers = {}\n"
  "  for k, v in pairs(extra) do headers[k] = v end\n"
  "  if ct ~= '' then headers['Content-Type'] = ct end\n"
  "  if auth_mode == 0 then headers.Authorization = 'Basic ' .. CRED\n"
  "  elseif auth_mode ~= 1 then headers.Authorization = auth end\n"
  "  local req = { method = method, headers = headers, body = body, remote_addr = '127.0.0.1' }\n"
  "  local status, rh, rb = t:handle(req)\n"
  "  if not ALLOWED[status] then return 'status ' .. tostring(status) end\n"
  "  if type(rh) ~= 'table' or type(rb) ~= 'string' then return 'headers/body' end\n"
  "  if core.json_decode(rb) == nil then return 'the answer is not JSON' end\n"
  "  if bad then return 'callback saw: ' .. bad end\n"
  "  local right = false\n"
  "  for k, v in pairs(headers) do\n"
  "    if k:lower() == 'authorization' and type(v) == 'string' and v:match('^%s*[Bb][Aa][Ss][Ii][Cc]%s+' .. CRED .. '%s*$') then right = true end\n"
  "  end\n"
  "  if calls > 0 and not right then return 'callback ran without the right credentials' end\n"
  "  if status == 200 and calls > 0 then\n"
  "    local before = calls\n"
  "    local s2 = t:handle(req)\n"
  "    if s2 ~= 200 or calls ~= before then return 'a handled event was not deduplicated' end\n"
  "  end\n"
  "  for _, line in ipairs(logs) do\n"
  "    if line:find(PASSWORD, 1, true) or line:find(CRED, 1, true) then return 'a log line holds the password' end\n"
  "  end\n"
  "  t:close()\n"
  "  return nil\n"
  "end\n";

/* Sets up the one state: libraries, core, LUA_PATH, the glue function. */
static void fz_init(void) {
  const char *path = getenv("LUA_PATH");
  fz_L = luaL_newstate();
  FZ_CHECK(fz_L != NULL, "luaL_newstate failed");
  luaL_openlibs(fz_L);
  luaL_requiref(fz_L, "pipedrive.core", luaopen_pipedrive_core, 0);
  lua_pop(fz_L, 1);
  lua_getglobal(fz_L, "package");
  lua_pushstring(fz_L, path ? path : "lua/?.lua;lua/?/init.lua");
  lua_setfield(fz_L, -2, "path");
  lua_pop(fz_L, 1);
  if (luaL_loadbuffer(fz_L, fz_glue, sizeof fz_glue - 1, "=fuzz_triggers") != LUA_OK ||
      lua_pcall(fz_L, 0, 1, 0) != LUA_OK) {
    FZ_CHECK(0, "cannot load the glue (run from the repository root or set LUA_PATH): %s",
             lua_tostring(fz_L, -1));
  }
  fz_run_ref = luaL_ref(fz_L, LUA_REGISTRYINDEX);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fz_in in = { (const char *)data, (const char *)data + size };
  const char *f[5] = { "", "POST", "", "", "" };
  size_t n[5] = { 0, 4, 0, 0, 0 };
  const char *s;
  size_t sn;
  int i, top, st;

  if (!fz_L) fz_init();
  top = lua_gettop(fz_L);
  for (i = 0; i < 5 && fz_field(&in, &s, &sn); i++) {
    f[i] = s;
    n[i] = sn;
  }
  lua_rawgeti(fz_L, LUA_REGISTRYINDEX, fz_run_ref);
  lua_pushstring(fz_L, fz_at(f[0], n[0], 0) % 2 ? "1.0" : "2.0");
  lua_pushinteger(fz_L, (lua_Integer)(fz_at(f[0], n[0], 1) % 5));
  lua_pushinteger(fz_L, (lua_Integer)fz_at(f[0], n[0], 2));
  lua_pushlstring(fz_L, f[1], n[1]);
  lua_pushlstring(fz_L, f[2], n[2]);
  lua_pushlstring(fz_L, f[3], n[3]);
  lua_pushlstring(fz_L, f[4], n[4]);
  lua_newtable(fz_L);
  while (fz_field(&in, &s, &sn)) {
    const char *k, *v;
    size_t kn, vn;
    fz_kv(s, sn, &k, &kn, &v, &vn);
    lua_pushlstring(fz_L, k, kn);
    lua_pushlstring(fz_L, v, vn);
    lua_rawset(fz_L, -3);
  }
  st = lua_pcall(fz_L, 8, 1, 0);
  FZ_CHECK(st == LUA_OK, "handle raised: %s", lua_tostring(fz_L, -1));
  FZ_CHECK(lua_isnil(fz_L, -1), "%s", lua_tostring(fz_L, -1));
  lua_settop(fz_L, top);
  if (lua_gc(fz_L, LUA_GCCOUNT, 0) > 64 * 1024) lua_gc(fz_L, LUA_GCCOLLECT, 0);
  return 0;
}
