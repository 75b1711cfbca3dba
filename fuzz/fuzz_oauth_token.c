/* libFuzzer harness: core.oauth_parse_token (csrc/oauth.c, secret.c, json.c
 * in its lenient mode, response.c's error objects).
 *
 * Input: fields separated by 0xFF (see harness.h).
 *   field 0   control: [0..1] status (big-endian, mod 1000), [2] flags: ctx
 *             given, refresh grant, status as a float; [3..6] now (int32)
 *   field 1   the body
 *   fields 2+ ctx.refresh_token, ctx.code, ctx.client_secret, ctx.access_token
 * Checks: no raise for any body; a token has a visible-ASCII access_token,
 * token_type "Bearer", 0 < expires_in and expires_at = now + expires_in, and
 * the refresh token of the body or, on a refresh without one, of ctx; a
 * failure is nil, err with error_mt and a kind, no copy of the body, an
 * oauth_error of [a-z_] only, and neither err.message nor tostring(err)
 * holds any ctx secret (checked for secrets that no message text can spell
 * by accident: token characters only, 8 or more, with a digit and a letter;
 * see oauth_scrub). */
#include "core.c"
#include "harness.h"

static int fz_checkable_secret(const char *s, size_t n) {
  size_t i;
  int digit = 0, alpha = 0;
  if (n < 8) return 0;
  for (i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c >= '0' && c <= '9') digit = 1;
    else if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) alpha = 1;
    else if (!strchr("-._~+/=:", c) || c == 0) return 0;
  }
  return digit && alpha;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static const char *const ctx_fields[] = { "refresh_token", "code", "client_secret", "access_token" };
  fz_in in = { (const char *)data, (const char *)data + size };
  const char *ctl, *body, *f;
  size_t nctl, nbody, nf;
  const char *sec[4];
  size_t nsec[4];
  int ns = 0, i, rc, top, has_ctx, refresh;
  unsigned status, flags;
  long long now;
  lua_State *L;
  if (!fz_field(&in, &ctl, &nctl) || !fz_field(&in, &body, &nbody)) return 0;
  status = ((fz_at(ctl, nctl, 0) << 8) | fz_at(ctl, nctl, 1)) % 1000;
  flags = fz_at(ctl, nctl, 2);
  now = (long long)(int32_t)(fz_at(ctl, nctl, 3) | fz_at(ctl, nctl, 4) << 8 | fz_at(ctl, nctl, 5) << 16 |
                             (uint32_t)fz_at(ctl, nctl, 6) << 24);
  has_ctx = !(flags & 1);
  refresh = (flags & 2) != 0;
  L = fz_new();
  lua_createtable(L, 0, 2); /* res at 2 */
  if (flags & 4) lua_pushnumber(L, (lua_Number)status + 0.25);
  else lua_pushinteger(L, (lua_Integer)status);
  lua_setfield(L, 2, "status");
  lua_pushlstring(L, body, nbody);
  lua_setfield(L, 2, "body");
  lua_pushinteger(L, (lua_Integer)now); /* now at 3 */
  lua_createtable(L, 0, 5);             /* ctx at 4 */
  lua_pushstring(L, refresh ? "refresh_token" : "authorization_code");
  lua_setfield(L, 4, "grant_type");
  for (i = 0; i < 4 && fz_field(&in, &f, &nf); i++) {
    if (nf == 0) continue;
    lua_pushlstring(L, f, nf);
    lua_setfield(L, 4, ctx_fields[i]);
    if (has_ctx && fz_checkable_secret(f, nf)) {
      sec[ns] = f;
      nsec[ns] = nf;
      ns++;
    }
  }
  if (!has_ctx) {
    lua_pop(L, 1);
    lua_pushnil(L);
  }
  top = lua_gettop(L);
  lua_pushvalue(L, 2);
  lua_pushvalue(L, 3);
  lua_pushvalue(L, 4);
  rc = fz_call(L, "oauth_parse_token", 3, 2);
  FZ_CHECK(rc == LUA_OK, "oauth_parse_token raised: %s", lua_tostring(L, -1));
  if (!lua_isnil(L, top + 1)) {
    int tok = top + 1;
    size_t n, k;
    const char *at;
    lua_Integer expires_in;
    FZ_CHECK(status >= 200 && status <= 299, "a token from HTTP %u", status);
    lua_getfield(L, tok, "access_token");
    at = lua_tolstring(L, -1, &n);
    FZ_CHECK(at && n > 0, "no access_token");
    for (k = 0; k < n; k++) FZ_CHECK(at[k] > 0x20 && at[k] < 0x7F, "access_token not visible ASCII");
    lua_getfield(L, tok, "token_type");
    FZ_CHECK(lua_type(L, -1) == LUA_TSTRING && strcmp(lua_tostring(L, -1), "Bearer") == 0, "token_type");
    lua_getfield(L, tok, "expires_in");
    lua_getfield(L, tok, "expires_at");
    FZ_CHECK(lua_isinteger(L, -2) && lua_isinteger(L, -1), "expires_in/expires_at not integers");
    expires_in = lua_tointeger(L, -2);
    FZ_CHECK(expires_in > 0 && lua_tointeger(L, -1) == now + expires_in, "expires_at != now + expires_in");
    lua_getfield(L, tok, "refresh_token");
    if (lua_isnil(L, -1) && has_ctx && refresh) {
      lua_getfield(L, 4, "refresh_token");
      FZ_CHECK(lua_isnil(L, -1), "the refresh token in use was not carried over");
      lua_pop(L, 1);
    }
    lua_pop(L, 5);
  } else {
    int err = top + 2;
    FZ_CHECK(lua_type(L, err) == LUA_TTABLE && lua_getmetatable(L, err), "err without metatable");
    lua_getfield(L, 1, "error_mt");
    FZ_CHECK(lua_rawequal(L, -1, -2), "err does not carry error_mt");
    lua_pop(L, 2);
    lua_getfield(L, err, "kind");
    FZ_CHECK(lua_type(L, -1) == LUA_TSTRING, "err.kind");
    lua_getfield(L, err, "body");
    lua_getfield(L, err, "body_text");
    FZ_CHECK(lua_isnil(L, -1) && lua_isnil(L, -2), "the body was copied into the error");
    lua_getfield(L, err, "oauth_error");
    if (!lua_isnil(L, -1)) {
      const char *c = lua_tostring(L, -1);
      FZ_CHECK(c && *c && strspn(c, "abcdefghijklmnopqrstuvwxyz_") == strlen(c), "oauth_error: %s", c);
    }
    lua_getfield(L, err, "message");
    fz_tostring(L, err);
    for (i = 0; i < ns; i++) {
      FZ_CHECK(!fz_contains(L, -2, sec[i], nsec[i]), "a secret is in err.message: %s", lua_tostring(L, -2));
      FZ_CHECK(!fz_contains(L, -1, sec[i], nsec[i]), "a secret is in tostring(err): %s", lua_tostring(L, -1));
    }
    lua_pop(L, 6);
  }
  lua_close(L);
  return 0;
}
