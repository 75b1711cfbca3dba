/* libFuzzer harness: core.json_decode and core.json_encode (csrc/json.c).
 *
 * Input byte 0 picks the mode, the rest is the text:
 *   even  json_decode(text). On success the value must encode (json_encode
 *         never raises for what json_decode made), the text it encodes to
 *         must decode to an equal value (same types, integer/float subtype,
 *         array marks, bit-equal floats) and re-encode to the same text.
 *         On failure the result is nil and "json_decode: ... at byte N".
 *   odd   json_encode(text) of the raw bytes as a Lua string: raises
 *         "invalid UTF-8" exactly when the bytes are not UTF-8, else gives
 *         a JSON string that decodes back to the same bytes. */
#include "core.c"
#include "harness.h"

/* Deep equality of the values at a and b as the codec defines it. */
static int fz_json_equal(lua_State *L, int a, int b, int depth) {
  int ta = lua_type(L, a), n = 0, m = 0;
  if (ta != lua_type(L, b) || depth > PD_JSON_MAXDEPTH + 1) return 0;
  switch (ta) {
    case LUA_TNUMBER: {
      double x, y;
      if (lua_isinteger(L, a) != lua_isinteger(L, b)) return 0;
      if (lua_isinteger(L, a)) return lua_tointeger(L, a) == lua_tointeger(L, b);
      x = lua_tonumber(L, a);
      y = lua_tonumber(L, b);
      return memcmp(&x, &y, sizeof x) == 0;
    }
    case LUA_TSTRING: {
      size_t na, nb;
      const char *x = lua_tolstring(L, a, &na), *y = lua_tolstring(L, b, &nb);
      return na == nb && memcmp(x, y, na) == 0;
    }
    case LUA_TBOOLEAN: return lua_toboolean(L, a) == lua_toboolean(L, b);
    case LUA_TLIGHTUSERDATA: return lua_touserdata(L, a) == lua_touserdata(L, b);
    case LUA_TTABLE: break;
    default: return 0;
  }
  FZ_CHECK(lua_checkstack(L, 6), "out of Lua stack");
  /* the same metatable: array_mt or none */
  if (lua_getmetatable(L, a)) {
    if (!lua_getmetatable(L, b)) {
      lua_pop(L, 1);
      return 0;
    }
    n = lua_rawequal(L, -1, -2);
    lua_pop(L, 2);
    if (!n) return 0;
  } else if (lua_getmetatable(L, b)) {
    lua_pop(L, 1);
    return 0;
  }
  n = 0;
  lua_pushnil(L);
  while (lua_next(L, a)) {
    int ok;
    n++;
    lua_pushvalue(L, -2);
    lua_rawget(L, b);
    ok = fz_json_equal(L, lua_gettop(L) - 1, lua_gettop(L), depth + 1);
    lua_pop(L, 2);
    if (!ok) {
      lua_pop(L, 1);
      return 0;
    }
  }
  lua_pushnil(L);
  while (lua_next(L, b)) {
    m++;
    lua_pop(L, 1);
  }
  return n == m;
}

static int fz_utf8_valid(const unsigned char *s, size_t n) {
  const unsigned char *end = s + n;
  while (s < end) {
    int k = pd_utf8_seq(s, end);
    if (!k) return 0;
    s += k;
  }
  return 1;
}

static void fz_decode_mode(lua_State *L, const char *text, size_t n) {
  int rc;
  size_t tn, tn2;
  const char *t, *t2;
  lua_pushlstring(L, text, n);
  rc = fz_call(L, "json_decode", 1, 2);
  FZ_CHECK(rc == LUA_OK, "json_decode raised: %s", lua_tostring(L, -1));
  if (lua_isnil(L, -2)) {
    FZ_CHECK(lua_type(L, -1) == LUA_TSTRING, "json_decode: nil without a message");
    FZ_CHECK(strncmp(lua_tostring(L, -1), "json_decode: ", 13) == 0 && strstr(lua_tostring(L, -1), " at byte "),
             "json_decode message: %s", lua_tostring(L, -1));
    return;
  }
  lua_pop(L, 1); /* v at top: index 2 */
  FZ_CHECK(lua_gettop(L) == 2, "stack");
  lua_pushvalue(L, 2);
  rc = fz_call(L, "json_encode", 1, 1);
  FZ_CHECK(rc == LUA_OK, "json_encode of a decoded value raised: %s", lua_tostring(L, -1));
  t = lua_tolstring(L, 3, &tn);
  FZ_CHECK(t != NULL, "json_encode returned no string");
  lua_pushvalue(L, 3);
  rc = fz_call(L, "json_decode", 1, 2);
  FZ_CHECK(rc == LUA_OK && !lua_isnil(L, -2), "encoded text does not decode: %s", lua_tostring(L, -1));
  lua_pop(L, 1); /* v2 at 4 */
  FZ_CHECK(fz_json_equal(L, 2, 4, 0), "round trip changed the value; text: %.*s", (int)(tn > 300 ? 300 : tn), t);
  lua_pushvalue(L, 4);
  rc = fz_call(L, "json_encode", 1, 1);
  FZ_CHECK(rc == LUA_OK, "json_encode of the round-tripped value raised: %s", lua_tostring(L, -1));
  t2 = lua_tolstring(L, 5, &tn2);
  FZ_CHECK(tn == tn2 && memcmp(t, t2, tn) == 0, "encoding is not stable: %.*s", (int)(tn > 300 ? 300 : tn), t);
}

static void fz_encode_mode(lua_State *L, const char *s, size_t n) {
  int rc, valid = fz_utf8_valid((const unsigned char *)s, n);
  lua_pushlstring(L, s, n);
  rc = fz_call(L, "json_encode", 1, 1);
  if (!valid) {
    FZ_CHECK(rc != LUA_OK && strstr(lua_tostring(L, -1), "json_encode: invalid UTF-8 in string"),
             "invalid UTF-8 not refused");
    return;
  }
  FZ_CHECK(rc == LUA_OK, "json_encode of a UTF-8 string raised: %s", lua_tostring(L, -1));
  rc = fz_call(L, "json_decode", 1, 2);
  FZ_CHECK(rc == LUA_OK && lua_type(L, -2) == LUA_TSTRING, "encoded string does not decode: %s",
           lua_tostring(L, -1));
  {
    size_t m;
    const char *back = lua_tolstring(L, -2, &m);
    FZ_CHECK(m == n && memcmp(back, s, n) == 0, "string round trip changed the bytes");
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  lua_State *L;
  if (size < 1) return 0;
  L = fz_new();
  if (data[0] & 1) fz_encode_mode(L, (const char *)data + 1, size - 1);
  else fz_decode_mode(L, (const char *)data + 1, size - 1);
  lua_close(L);
  return 0;
}
