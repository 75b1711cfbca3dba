/* libFuzzer harness: core.build_request (csrc/request.c, url.c, json.c).
 *
 * Input: fields separated by 0xFF (see harness.h).
 *   field 0   control bytes: [0] method and body kind, [1] base URL choice
 *   field 1   the path template (fuzzed: "{name}" placeholders, junk)
 *   fields 2+ one argument each: byte 0 says where it goes (path_params,
 *             query, headers, body, form), byte 1 its type; then the name,
 *             0xFE, the value. Types: string, integer (8 raw bytes), float
 *             (8 raw bytes, so NaN and infinities too), true, false,
 *             core.null, an array (value split at ','; "#n" items are
 *             integers), an empty table, a nested table.
 * Checks: misuse raises "build_request: ..." and never quotes a header,
 * query or form value (values holding a control byte or a byte >= 0x80 are
 * recognisable, since messages print names with those bytes as '?');
 * success gives a URL of visible ASCII, the base URL (less its trailing
 * slashes) followed by the path, where every query pair percent-decodes
 * back to a key and value that were given, in sorted key order. */
#include "core.c"
#include "harness.h"

enum { W_PARAMS, W_QUERY, W_HEADERS, W_BODY, W_FORM, W_COUNT };
static const char *const fz_where_name[W_COUNT] = { "path_params", "query", "headers", "body", "form" };

/* The values handed over, to look for in error messages: only those that
 * cannot appear in one legitimately. */
#define FZ_MAX_SECRETS 64
typedef struct fz_secret {
  const char *s;
  size_t n;
} fz_secret;

static int fz_recognisable(const char *s, size_t n) {
  size_t i;
  if (n < 4) return 0;
  for (i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c < 0x20 || c >= 0x80) return 1;
  }
  return 0;
}

/* Pushes the value of an argument field. */
static void fz_push_value(lua_State *L, unsigned type, const char *v, size_t vn, int depth) {
  switch (type % 10) {
    case 0: lua_pushlstring(L, v, vn); break;
    case 1: lua_pushinteger(L, (lua_Integer)fz_int(v, vn)); break;
    case 2: lua_pushnumber(L, (lua_Number)fz_double(v, vn)); break;
    case 3: lua_pushboolean(L, 1); break;
    case 4: lua_pushboolean(L, 0); break;
    case 5: lua_pushlightuserdata(L, NULL); break;
    case 6: { /* array of scalars */
      size_t i = 0, start = 0;
      lua_Integer k = 0;
      lua_newtable(L);
      for (i = 0; i <= vn; i++) {
        if (i == vn || v[i] == ',') {
          const char *item = v + start;
          size_t in = i - start;
          if (in > 1 && item[0] == '#') {
            char num[24];
            size_t dn = in - 1 < sizeof num - 1 ? in - 1 : sizeof num - 1;
            memcpy(num, item + 1, dn);
            num[dn] = '\0';
            lua_pushinteger(L, (lua_Integer)strtoll(num, NULL, 10)); /* stops at junk */
          } else {
            lua_pushlstring(L, item, in);
          }
          lua_rawseti(L, -2, ++k);
          start = i + 1;
        }
      }
      break;
    }
    case 7: lua_newtable(L); break;
    case 8: /* a table holding the value again, a few levels deep */
      lua_newtable(L);
      if (depth < 3) {
        fz_push_value(L, (unsigned)vn, v, vn, depth + 1);
        lua_setfield(L, -2, "x");
      }
      break;
    default: /* a sequence with a hole */
      lua_newtable(L);
      lua_pushlstring(L, v, vn);
      lua_rawseti(L, -2, 1);
      lua_pushlstring(L, v, vn);
      lua_rawseti(L, -2, 3);
  }
}

/* %XX-decodes s into out (as long as s); returns the length or -1 when s
 * holds a byte that should have been encoded. */
static long fz_pct_decode(const char *s, size_t n, char *out) {
  size_t i, w = 0;
  for (i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c == '%') {
      unsigned hi, lo;
      if (i + 2 >= n) return -1;
      hi = (unsigned char)s[i + 1];
      lo = (unsigned char)s[i + 2];
      hi = hi <= '9' ? hi - '0' : hi - 'A' + 10;
      lo = lo <= '9' ? lo - '0' : lo - 'A' + 10;
      if (hi > 15 || lo > 15) return -1;
      out[w++] = (char)(hi * 16 + lo);
      i += 2;
    } else if (pd_url_unreserved(c)) {
      out[w++] = (char)c;
    } else {
      return -1;
    }
  }
  return (long)w;
}

/* Checks the query part of a built URL against the query table at q:
 * key order, and that each pair decodes to a given string key whose value,
 * when a string, is the decoded value. */
static void fz_check_query(lua_State *L, const char *qs, size_t n, int q) {
  char *key = malloc(n + 1), *val = malloc(n + 1), *prev = malloc(n + 1);
  size_t i = 0, prevn = 0;
  int first = 1;
  FZ_CHECK(key && val && prev, "out of memory");
  while (i < n) {
    size_t a = i, eq, e;
    long kn, vn;
    while (i < n && qs[i] != '&') i++;
    e = i;
    for (eq = a; eq < e && qs[eq] != '='; eq++) {}
    FZ_CHECK(eq < e, "query pair without '=': %.*s", (int)(e - a), qs + a);
    kn = fz_pct_decode(qs + a, eq - a, key);
    FZ_CHECK(kn >= 0, "query key not percent-encoded: %.*s", (int)(eq - a), qs + a);
    /* values: items of an array are joined with a literal ',' */
    {
      size_t s = eq + 1, t;
      vn = 0;
      for (t = s; t <= e; t++) {
        if (t == e || qs[t] == ',') {
          long m = fz_pct_decode(qs + s, t - s, val + vn);
          FZ_CHECK(m >= 0, "query value not percent-encoded");
          vn += m;
          if (t < e) val[vn++] = ',';
          s = t + 1;
        }
      }
    }
    if (!first) {
      size_t m = prevn < (size_t)kn ? prevn : (size_t)kn;
      int c = memcmp(prev, key, m);
      FZ_CHECK(c < 0 || (c == 0 && prevn < (size_t)kn), "query keys are not sorted");
    }
    first = 0;
    memcpy(prev, key, (size_t)kn);
    prevn = (size_t)kn;
    lua_pushlstring(L, key, (size_t)kn);
    lua_rawget(L, q);
    FZ_CHECK(!lua_isnil(L, -1), "query key in the URL was not given: %.*s", (int)kn, key);
    if (lua_type(L, -1) == LUA_TSTRING) {
      size_t gn;
      const char *g = lua_tolstring(L, -1, &gn);
      FZ_CHECK(gn == (size_t)vn && memcmp(g, val, gn) == 0, "query value does not decode to the given one");
    }
    lua_pop(L, 1);
    if (i < n) i++;
  }
  free(key);
  free(val);
  free(prev);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static const char *const methods[] = { "GET", "post", "PATCH", "DELETE", "PUT", "", "G E T", "VERYLONGMETHODNAMEX" };
  static const char *const bases[] = { "https://x.pipedrive.com", "https://x.pipedrive.com/", "http://127.0.0.1:8080///",
                                       "https://api.pipedrive.com/v1", "ftp://nope", "https://a b", "http://" };
  fz_in in = { (const char *)data, (const char *)data + size };
  const char *ctl, *path, *f;
  size_t nctl, npath, nf;
  fz_secret secrets[FZ_MAX_SECRETS];
  int nsec = 0, rc, r, t[W_COUNT], i;
  const char *base;
  lua_State *L;
  if (!fz_field(&in, &ctl, &nctl) || !fz_field(&in, &path, &npath)) return 0;
  L = fz_new();
  lua_createtable(L, 0, 8); /* r at 2 */
  lua_pushstring(L, methods[fz_at(ctl, nctl, 0) % 8]);
  lua_setfield(L, 2, "method");
  base = bases[fz_at(ctl, nctl, 1) % 7];
  lua_pushstring(L, base);
  lua_setfield(L, 2, "base_url");
  lua_pushlstring(L, path, npath);
  lua_setfield(L, 2, "path");
  for (i = 0; i < W_COUNT; i++) {
    lua_newtable(L);
    t[i] = lua_gettop(L);
  }
  while (fz_field(&in, &f, &nf)) {
    const char *k, *v;
    size_t kn, vn;
    unsigned where = fz_at(f, nf, 0) % W_COUNT, type = fz_at(f, nf, 1);
    if (nf < 2) continue;
    fz_kv(f + 2, nf - 2, &k, &kn, &v, &vn);
    lua_pushlstring(L, k, kn);
    fz_push_value(L, type, v, vn, 0);
    lua_rawset(L, t[where]);
    if ((where == W_QUERY || where == W_HEADERS || where == W_FORM || where == W_BODY) && nsec < FZ_MAX_SECRETS &&
        fz_recognisable(v, vn)) {
      secrets[nsec].s = v;
      secrets[nsec].n = vn;
      nsec++;
    }
  }
  /* the body goes in when it has fields, or when asked for an empty one */
  for (i = 0; i < W_COUNT; i++) {
    int give = i == W_PARAMS || i == W_QUERY || i == W_HEADERS;
    if (i == W_BODY || i == W_FORM) {
      lua_pushnil(L);
      give = lua_next(L, t[i]) ? (lua_pop(L, 2), 1) : 0;
      if ((fz_at(ctl, nctl, 0) >> 3) % 4 == (unsigned)i - W_BODY + 1) give = 1;
    }
    if (give) {
      lua_pushvalue(L, t[i]);
      lua_setfield(L, 2, fz_where_name[i]);
    }
  }
  lua_pushvalue(L, 2);
  rc = fz_call(L, "build_request", 1, 1);
  r = lua_gettop(L);
  if (rc != LUA_OK) {
    FZ_CHECK(lua_type(L, r) == LUA_TSTRING, "build_request raised a non-string");
    FZ_CHECK(strncmp(lua_tostring(L, r), "build_request: ", 15) == 0, "message: %s", lua_tostring(L, r));
    for (i = 0; i < nsec; i++)
      FZ_CHECK(!fz_contains(L, r, secrets[i].s, secrets[i].n), "a value was quoted in: %s", lua_tostring(L, r));
  } else {
    size_t un, bn = strlen(base), pn = 0, k;
    const char *url, *qm;
    FZ_CHECK(lua_type(L, r) == LUA_TTABLE, "build_request returned no table");
    lua_getfield(L, r, "url");
    url = lua_tolstring(L, -1, &un);
    FZ_CHECK(url != NULL, "no url");
    for (k = 0; k < un; k++)
      FZ_CHECK((unsigned char)url[k] > 0x20 && (unsigned char)url[k] < 0x7F && url[k] != '#', "bad URL byte 0x%02x",
               (unsigned char)url[k]);
    while (bn > 0 && base[bn - 1] == '/') bn--;
    FZ_CHECK(un >= bn && memcmp(url, base, bn) == 0, "URL does not start with the base URL");
    qm = memchr(url, '?', un);
    FZ_CHECK(!qm || !memchr(qm + 1, '?', un - (size_t)(qm + 1 - url)), "two '?' in the URL");
    /* the path: the template with each {name} replaced, so equal up to the first '{' */
    while (pn < npath && path[pn] != '{') pn++;
    FZ_CHECK(un - bn >= pn && memcmp(url + bn, path, pn) == 0, "URL path does not follow the template");
    if (qm) fz_check_query(L, qm + 1, un - (size_t)(qm + 1 - url), t[W_QUERY]);
    lua_pop(L, 1);
    lua_getfield(L, r, "headers");
    FZ_CHECK(lua_type(L, -1) == LUA_TTABLE, "no headers table");
  }
  lua_close(L);
  return 0;
}
