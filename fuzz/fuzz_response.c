/* libFuzzer harness: core.parse_response and error_mt's __tostring
 * (csrc/response.c, json.c).
 *
 * Input: fields separated by 0xFF (see harness.h).
 *   field 0   control: [0..1] status (big-endian, mod 1100, so a few are
 *             out of range), [2] ctx.paging (none, cursor, offset, absent,
 *             bogus), [3] flags: search, list, method given, path given,
 *             headers absent, status as a float
 *   field 1   ctx.path (its query string must not reach tostring)
 *   fields 2+ headers "name 0xFE value"; a one-byte name picks one of the
 *             headers parse_response reads
 *   last      the body
 * Checks: the call raises only for the out-of-range status or the bogus
 * paging (misuse), with a "parse_response: " message; a failure is nil, err
 * where err carries error_mt, tostring(err) is one line that starts
 * "pipedrive: " and does not change when every header value and the query
 * string of ctx.path are replaced (so it quotes neither); a success gives
 * data and info with info.status. */
#include "core.c"
#include "harness.h"

static const char *const fz_headers[] = { "retry-after", "x-ratelimit-reset", "x-ratelimit-limit",
                                          "x-ratelimit-remaining", "x-daily-requests-left", "content-type" };

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static const char *const pagings[] = { "none", "cursor", "offset", NULL, "bogus" };
  fz_in in = { (const char *)data, (const char *)data + size };
  const char *ctl, *path, *f, *body = "";
  size_t nctl, npath, nf, nbody = 0;
  int rc, top, misuse;
  unsigned flags, status;
  const char *paging;
  lua_State *L;
  if (!fz_field(&in, &ctl, &nctl) || !fz_field(&in, &path, &npath)) return 0;
  status = ((fz_at(ctl, nctl, 0) << 8) | fz_at(ctl, nctl, 1)) % 1100;
  paging = pagings[fz_at(ctl, nctl, 2) % 5];
  flags = fz_at(ctl, nctl, 3);
  L = fz_new();
  lua_createtable(L, 0, 3); /* res at 2 */
  if (flags & 32) lua_pushnumber(L, (lua_Number)status + 0.5);
  else lua_pushinteger(L, (lua_Integer)status);
  lua_setfield(L, 2, "status");
  lua_newtable(L); /* headers at 3 */
  while (fz_field(&in, &f, &nf)) {
    const char *k, *v;
    size_t kn, vn;
    if (in.p > in.end) { /* the last field is the body */
      body = f;
      nbody = nf;
      break;
    }
    fz_kv(f, nf, &k, &kn, &v, &vn);
    if (kn == 1) lua_pushstring(L, fz_headers[(unsigned char)k[0] % 6]);
    else lua_pushlstring(L, k, kn);
    lua_pushlstring(L, v, vn);
    lua_rawset(L, 3);
  }
  if (!(flags & 16)) lua_setfield(L, 2, "headers");
  else lua_pop(L, 1);
  lua_pushlstring(L, body, nbody);
  lua_setfield(L, 2, "body");
  lua_createtable(L, 0, 5); /* ctx at 3 */
  if (flags & 4) {
    lua_pushstring(L, (flags & 64) ? "POST" : "GET");
    lua_setfield(L, 3, "method");
  }
  if (flags & 8) {
    lua_pushlstring(L, path, npath);
    lua_setfield(L, 3, "path");
  }
  if (paging) {
    lua_pushstring(L, paging);
    lua_setfield(L, 3, "paging");
  }
  lua_pushboolean(L, flags & 1);
  lua_setfield(L, 3, "search");
  lua_pushboolean(L, flags & 2);
  lua_setfield(L, 3, "list");

  misuse = status > 999 || (flags & 32) || (paging && strcmp(paging, "bogus") == 0);
  top = lua_gettop(L);
  lua_pushvalue(L, 2);
  lua_pushvalue(L, 3);
  rc = fz_call(L, "parse_response", 2, 2);
  if (rc != LUA_OK) {
    FZ_CHECK(misuse, "parse_response raised: %s", lua_tostring(L, -1));
    FZ_CHECK(lua_type(L, -1) == LUA_TSTRING && strncmp(lua_tostring(L, -1), "parse_response: ", 16) == 0,
             "message: %s", lua_tostring(L, -1));
  } else if (lua_isnil(L, top + 1)) {
    int err = top + 2;
    size_t ln, k;
    const char *line, *q;
    FZ_CHECK(!misuse, "misuse not refused");
    FZ_CHECK(lua_type(L, err) == LUA_TTABLE, "err is not a table");
    FZ_CHECK(lua_getmetatable(L, err), "err has no metatable");
    lua_getfield(L, 1, "error_mt");
    FZ_CHECK(lua_rawequal(L, -1, -2), "err does not carry error_mt");
    lua_pop(L, 2);
    lua_getfield(L, err, "kind");
    FZ_CHECK(lua_type(L, -1) == LUA_TSTRING, "err.kind missing");
    lua_pop(L, 1);
    fz_tostring(L, err);
    line = lua_tolstring(L, -1, &ln);
    FZ_CHECK(strncmp(line, "pipedrive: ", 11) == 0, "tostring: %s", line);
    for (k = 0; k < ln; k++) FZ_CHECK(line[k] != '\n' && line[k] != '\r', "tostring(err) is not one line: %s", line);
    /* Secrets: the line must not depend on header values or on the query
     * string. Same call again with every header value replaced and the
     * path's query string changed: the line must be the same. */
    lua_getfield(L, 2, "headers");
    if (lua_type(L, -1) == LUA_TTABLE) {
      lua_pushnil(L);
      while (lua_next(L, -2)) {
        lua_pop(L, 1);
        lua_pushvalue(L, -1);
        lua_pushliteral(L, "\x01other");
        lua_rawset(L, -4);
      }
    }
    lua_pop(L, 1);
    lua_getfield(L, 3, "path");
    if (lua_type(L, -1) == LUA_TSTRING) {
      size_t pn;
      const char *p = lua_tolstring(L, -1, &pn);
      q = memchr(p, '?', pn);
      if (q) {
        lua_pushlstring(L, p, (size_t)(q - p) + 1);
        lua_pushliteral(L, "other=1");
        lua_concat(L, 2);
        lua_setfield(L, 3, "path");
      }
    }
    lua_pop(L, 1);
    lua_pushvalue(L, 2);
    lua_pushvalue(L, 3);
    FZ_CHECK(fz_call(L, "parse_response", 2, 2) == LUA_OK && lua_isnil(L, -2), "second call differs");
    fz_tostring(L, -1);
    {
      size_t ln2;
      const char *line2 = lua_tolstring(L, -1, &ln2);
      FZ_CHECK(ln == ln2 && memcmp(line, line2, ln) == 0, "the line depends on headers or the query:\n  %s\n  %s",
               line, line2);
    }
    lua_pop(L, 4);
    /* __tostring on anything else must not fail either */
    lua_getfield(L, 1, "error_mt");
    lua_getfield(L, -1, "__tostring");
    lua_pushinteger(L, 5);
    FZ_CHECK(lua_pcall(L, 1, 1, 0) == LUA_OK, "__tostring(5) raised");
    lua_pop(L, 2);
  } else {
    FZ_CHECK(!misuse, "misuse not refused");
    FZ_CHECK(lua_type(L, top + 2) == LUA_TTABLE, "info is not a table");
    lua_getfield(L, top + 2, "status");
    FZ_CHECK(lua_isinteger(L, -1) && lua_tointeger(L, -1) == (lua_Integer)status && status >= 200 && status <= 299,
             "info.status");
    lua_pop(L, 1);
  }
  lua_close(L);
  return 0;
}
