/* build_request: one operation's arguments -> { method, url, headers, body }.
 *
 * This is the only place that turns values into URL and body text, so the
 * encoding rules live in one spot (docs/ARCHITECTURE.md, "build_request").
 * Misuse raises "build_request: ..." naming the field; header values, the
 * base URL (which may hold credentials) and query values are never quoted in
 * a message, only field and header names are. */
#include <stdlib.h>
#include <string.h>

#include "pd.h"
#include "json.h"
#include "url.h"
#include "multipart.h"

/* A URL longer than this is refused: servers and proxies reject such URLs
 * anyway (typically above 8-64 KB), better to fail before sending. */
#define PD_REQ_URL_MAX ((size_t)64 * 1024)
/* Form bodies carry OAuth fields: a few hundred bytes. */
#define PD_FORM_MAX ((size_t)1024 * 1024)
#define PD_HEADER_NAME_MAX 128

/* Copies a caller-supplied name (a field or header name) for a message:
 * printable ASCII only and cut short, so a message stays one short line. */
static const char *pd_req_name(const char *s, size_t n, char *out, size_t cap) {
  size_t i, w = 0;
  for (i = 0; i < n && w + 4 < cap; i++) {
    unsigned char c = (unsigned char)s[i];
    out[w++] = (c >= 0x20 && c < 0x7F) ? (char)c : '?';
  }
  if (i < n) {
    memcpy(out + w, "...", 3);
    w += 3;
  }
  out[w] = '\0';
  return out;
}

/* Pushes a userdata with the string keys of table t sorted bytewise (plus a
 * table anchoring those strings) and returns their number: queries and forms
 * come out the same for the same arguments, whatever the hash order. */
static int pd_req_sorted_keys(lua_State *L, int t, const char *what, pd_jkey **out) {
  int n = 0, i = 0, kt;
  pd_jkey *keys;
  lua_pushnil(L);
  while (lua_next(L, t)) {
    lua_pop(L, 1);
    if (lua_type(L, -1) != LUA_TSTRING) {
      pd_raise(L, "build_request: %s keys must be strings, got %s", what, luaL_typename(L, -1));
      return 0;
    }
    if (n == INT_MAX / (int)sizeof *keys) {
      pd_raise(L, "build_request: too many %s fields", what);
      return 0;
    }
    n++;
  }
  keys = (pd_jkey *)pd_newuserdata(L, (size_t)(n ? n : 1) * sizeof *keys);
  lua_createtable(L, n, 0);
  kt = lua_gettop(L);
  lua_pushnil(L);
  while (lua_next(L, t) && i < n) {
    lua_pop(L, 1);
    lua_pushvalue(L, -1);
    lua_rawseti(L, kt, i + 1);
    keys[i].s = lua_tolstring(L, -1, &keys[i].n);
    keys[i].slot = i + 1;
    i++;
  }
  lua_settop(L, kt);
  qsort(keys, (size_t)i, sizeof *keys, pd_jkey_cmp);
  *out = keys;
  return i;
}

/* Appends one query or form value. Arrays (query only) are joined with a
 * literal "," after encoding each item, which is how Pipedrive reads list
 * parameters such as ids=1,2,3. core.null is refused: "absent" is nil, and
 * there is no way to send a JSON null in a query string. */
static void pd_req_value(lua_State *L, pd_buf *b, int idx, const char *what, const pd_jkey *key, int allow_array) {
  char name[80];
  int r = pd_url_append_scalar(L, b, idx);
  if (r == 1) return;
  pd_req_name(key->s, key->n, name, sizeof name);
  if (r < 0) {
    pd_raise(L, "build_request: %s field '%s' is not a finite number", what, name);
    return;
  }
  if (lua_type(L, idx) == LUA_TLIGHTUSERDATA && !lua_touserdata(L, idx)) {
    pd_raise(L, "build_request: %s field '%s' is pipedrive.null; leave it out (nil) instead", what, name);
    return;
  }
  if (lua_type(L, idx) == LUA_TTABLE && allow_array) {
    size_t count = 0, n = (size_t)lua_rawlen(L, idx), i;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
      lua_pop(L, 1);
      count++;
    }
    if (count == 0) {
      pd_raise(L, "build_request: %s field '%s' is an empty array", what, name);
      return;
    }
    if (count != n) {
      pd_raise(L, "build_request: %s field '%s' must be a scalar or an array 1..n of scalars", what, name);
      return;
    }
    for (i = 1; i <= n; i++) {
      if (i > 1) pd_buf_addc(b, ',');
      lua_rawgeti(L, idx, (lua_Integer)i);
      r = pd_url_append_scalar(L, b, lua_gettop(L));
      lua_pop(L, 1);
      if (r != 1) {
        pd_raise(L, "build_request: %s field '%s' has an item %d that is not a string, finite number or boolean",
                 what, name, (int)i);
        return;
      }
    }
    return;
  }
  pd_raise(L, "build_request: %s field '%s' must be a string, number, boolean%s, got %s", what, name,
           allow_array ? " or array of them" : "", luaL_typename(L, idx));
}

/* Appends "k=v&k=v" for table t, sorted by key, after `first` (none if NUL). */
static void pd_req_pairs(lua_State *L, pd_buf *b, int t, const char *what, int allow_array, char first) {
  pd_jkey *keys;
  int n, i, top = lua_gettop(L);
  pd_checkstack(L, 6, "build_request");
  n = pd_req_sorted_keys(L, t, what, &keys);
  for (i = 0; i < n; i++) {
    if (i > 0) pd_buf_addc(b, '&');
    else if (first) pd_buf_addc(b, first);
    pd_url_append(b, keys[i].s, keys[i].n);
    pd_buf_addc(b, '=');
    lua_rawgeti(L, top + 2, keys[i].slot);
    lua_rawget(L, t);
    pd_req_value(L, b, lua_gettop(L), what, &keys[i], allow_array);
    lua_pop(L, 1);
  }
  lua_settop(L, top);
}

/* Expands "{name}" in the path template with percent-encoded parameters, so a
 * value like "a/b" or "../x" cannot change which endpoint is called. */
static void pd_req_path(lua_State *L, pd_buf *u, const char *p, size_t n, int params) {
  size_t i = 0;
  char name[80];
  while (i < n) {
    unsigned char c = (unsigned char)p[i];
    if (c == '{') {
      size_t j = i + 1;
      int r;
      while (j < n && p[j] != '}' && p[j] != '{') j++;
      if (j >= n || p[j] != '}') {
        pd_raise(L, "build_request: field 'path' has a '{' without a matching '}'");
        return;
      }
      pd_req_name(p + i + 1, j - i - 1, name, sizeof name);
      if (j == i + 1) {
        pd_raise(L, "build_request: field 'path' has an empty parameter name {}");
        return;
      }
      if (params) {
        lua_pushlstring(L, p + i + 1, j - i - 1);
        lua_rawget(L, params);
      } else {
        lua_pushnil(L);
      }
      if (lua_isnil(L, -1)) {
        pd_raise(L, "build_request: missing path parameter '%s'", name);
        return;
      }
      if (lua_type(L, -1) != LUA_TSTRING && lua_type(L, -1) != LUA_TNUMBER) {
        int isnull = lua_type(L, -1) == LUA_TLIGHTUSERDATA && !lua_touserdata(L, -1);
        pd_raise(L, "build_request: path parameter '%s' must be a string or a number, got %s", name,
                 isnull ? "pipedrive.null" : luaL_typename(L, -1));
        return;
      }
      if (lua_type(L, -1) == LUA_TSTRING && lua_rawlen(L, -1) == 0) {
        pd_raise(L, "build_request: path parameter '%s' is empty", name);
        return;
      }
      r = pd_url_append_scalar(L, u, lua_gettop(L));
      lua_pop(L, 1);
      if (r != 1) {
        pd_raise(L, "build_request: path parameter '%s' is not a finite number", name);
        return;
      }
      i = j + 1;
      continue;
    }
    if (c == '}') {
      pd_raise(L, "build_request: field 'path' has a '}' without a matching '{'");
      return;
    }
    if (c <= 0x20 || c >= 0x7F || c == '?' || c == '#') {
      pd_raise(L, "build_request: field 'path' may not contain spaces, control or non-ASCII bytes, '?' or '#' "
               "(put parameters in path_params or query)");
      return;
    }
    pd_buf_addc(u, (char)c);
    i++;
  }
}

/* RFC 9110 token characters: anything else in a header name would let a
 * caller split or smuggle headers. */
static int pd_req_tchar(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || (c && strchr("!#$%&'*+-.^_`|~", c));
}

/* Copies the caller's headers with lower-cased names (HTTP names are case-
 * insensitive; one spelling lets content-type be set without duplicates). */
static void pd_req_headers(lua_State *L, int given, int out) {
  char lower[PD_HEADER_NAME_MAX + 1], name[80];
  lua_pushnil(L);
  while (lua_next(L, given)) {
    size_t n, vn, i;
    const char *k, *v;
    if (lua_type(L, -2) != LUA_TSTRING) {
      pd_raise(L, "build_request: header names must be strings, got %s", luaL_typename(L, -2));
      return;
    }
    k = lua_tolstring(L, -2, &n);
    pd_req_name(k, n, name, sizeof name);
    if (n == 0 || n > PD_HEADER_NAME_MAX) {
      pd_raise(L, "build_request: header name '%s' is empty or too long", name);
      return;
    }
    for (i = 0; i < n; i++) {
      unsigned char c = (unsigned char)k[i];
      if (!pd_req_tchar(c)) {
        pd_raise(L, "build_request: header name '%s' has a character not allowed in a header name", name);
        return;
      }
      lower[i] = (char)((c >= 'A' && c <= 'Z') ? c + 32 : c);
    }
    if (lua_type(L, -1) == LUA_TNUMBER) {
      char num[PD_NUMBUF];
      size_t nn = pd_fmt_number(L, -1, num, 0);
      if (!nn) {
        pd_raise(L, "build_request: header '%s' is not a finite number", name);
        return;
      }
      lua_pushlstring(L, num, nn);
      lua_replace(L, -2);
    } else if (lua_type(L, -1) != LUA_TSTRING) {
      pd_raise(L, "build_request: header '%s' must be a string, got %s", name, luaL_typename(L, -1));
      return;
    }
    v = lua_tolstring(L, -1, &vn);
    for (i = 0; i < vn; i++) {
      if (v[i] == '\r' || v[i] == '\n' || v[i] == '\0') {
        pd_raise(L, "build_request: header '%s' has a value with a line break or NUL byte", name);
        return;
      }
    }
    lua_pushlstring(L, lower, n);
    lua_pushvalue(L, -1);
    lua_rawget(L, out);
    if (!lua_isnil(L, -1)) {
      pd_raise(L, "build_request: header '%s' is given twice (names are case-insensitive)", name);
      return;
    }
    lua_pop(L, 1);
    lua_pushvalue(L, -2);
    lua_rawset(L, out);
    lua_pop(L, 1);
  }
}

/* Pushes r[name] and checks it is nil or of the given type. */
static void pd_req_field(lua_State *L, const char *name, int type, int required) {
  lua_getfield(L, 1, name);
  if (lua_type(L, -1) == type || (!required && lua_isnil(L, -1))) return;
  pd_raise(L, "build_request: field '%s' must be a %s, got %s", name, lua_typename(L, type), luaL_typename(L, -1));
}

/* core.build_request(r) */
static int pd_build_request_l(lua_State *L) {
  char method[17];
  const char *s;
  size_t n, i;
  pd_buf *u;
  int out;
  enum { METHOD = 2, BASE, PATH, PARAMS, QUERY, HEADERS, BODY, FORM, MULTIPART };
  if (lua_type(L, 1) != LUA_TTABLE)
    return pd_raise(L, "build_request: expected a table, got %s", luaL_typename(L, 1));
  lua_settop(L, 1);
  pd_checkstack(L, 30, "build_request");
  pd_req_field(L, "method", LUA_TSTRING, 1);
  pd_req_field(L, "base_url", LUA_TSTRING, 1);
  pd_req_field(L, "path", LUA_TSTRING, 1);
  pd_req_field(L, "path_params", LUA_TTABLE, 0);
  pd_req_field(L, "query", LUA_TTABLE, 0);
  pd_req_field(L, "headers", LUA_TTABLE, 0);
  lua_getfield(L, 1, "body");
  if (!lua_isnil(L, BODY) && lua_type(L, BODY) != LUA_TTABLE)
    return pd_raise(L, "build_request: field 'body' must be a table (it is encoded as JSON), got %s",
                    luaL_typename(L, BODY));
  pd_req_field(L, "form", LUA_TTABLE, 0);
  lua_getfield(L, 1, "multipart");
  if (!lua_isnil(L, BODY) && !lua_isnil(L, FORM))
    return pd_raise(L, "build_request: give either 'body' or 'form', not both");
  if (!lua_isnil(L, MULTIPART) && (!lua_isnil(L, BODY) || !lua_isnil(L, FORM)))
    return pd_raise(L, "build_request: give either 'multipart' or 'body'/'form', not both");

  s = lua_tolstring(L, METHOD, &n);
  if (n == 0 || n >= sizeof method)
    return pd_raise(L, "build_request: field 'method' must be an HTTP method such as GET");
  for (i = 0; i < n; i++) {
    char c = s[i];
    if (c >= 'a' && c <= 'z') c = (char)(c - 32);
    if (c < 'A' || c > 'Z') return pd_raise(L, "build_request: field 'method' must be an HTTP method such as GET");
    method[i] = c;
  }
  method[n] = '\0';

  lua_createtable(L, 0, 4);
  out = lua_gettop(L);
  lua_pushstring(L, method);
  lua_setfield(L, out, "method");

  s = lua_tolstring(L, BASE, &n);
  if (!((n > 7 && memcmp(s, "http://", 7) == 0) || (n > 8 && memcmp(s, "https://", 8) == 0)))
    return pd_raise(L, "build_request: field 'base_url' must start with http:// or https://");
  for (i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c <= 0x20 || c >= 0x7F || c == '?' || c == '#')
      return pd_raise(L, "build_request: field 'base_url' may not contain spaces, control or non-ASCII bytes, "
                      "'?' or '#'");
  }
  while (n > 0 && s[n - 1] == '/') n--;
  u = pd_box_new(L, PD_REQ_URL_MAX);
  pd_buf_add(u, s, n);

  s = lua_tolstring(L, PATH, &n);
  if (n == 0 || s[0] != '/') return pd_raise(L, "build_request: field 'path' must start with '/'");
  pd_req_path(L, u, s, n, lua_isnil(L, PARAMS) ? 0 : PARAMS);
  if (!lua_isnil(L, QUERY)) pd_req_pairs(L, u, QUERY, "query", 1, '?');
  if (pd_buf_failed(u)) {
    pd_buf_free(u);
    return pd_raise(L, "build_request: URL longer than %d bytes", (int)PD_REQ_URL_MAX);
  }
  pd_box_push(L, u);
  lua_setfield(L, out, "url");
  lua_pop(L, 1);

  lua_newtable(L);
  if (!lua_isnil(L, HEADERS)) pd_req_headers(L, HEADERS, lua_gettop(L));
  if (!lua_isnil(L, BODY)) {
    pd_json_encode_push(L, BODY, "build_request: field 'body'");
    lua_setfield(L, out, "body");
    lua_pushliteral(L, "application/json");
    lua_setfield(L, -2, "content-type");
  } else if (!lua_isnil(L, FORM)) {
    pd_buf *f = pd_box_new(L, PD_FORM_MAX);
    pd_req_pairs(L, f, FORM, "form", 0, '\0');
    if (pd_buf_failed(f)) {
      pd_buf_free(f);
      return pd_raise(L, "build_request: form body longer than %d bytes", (int)PD_FORM_MAX);
    }
    pd_box_push(L, f);
    lua_setfield(L, out, "body");
    lua_pop(L, 1);
    lua_pushliteral(L, "application/x-www-form-urlencoded");
    lua_setfield(L, -2, "content-type");
  } else if (!lua_isnil(L, MULTIPART)) {
    /* The content type (with its boundary) is written by whoever builds the
     * body: libcurl's mime API, or core.multipart_body. */
    lua_pushliteral(L, "content-type");
    lua_rawget(L, -2);
    if (!lua_isnil(L, -1)) return pd_raise(L, "build_request: header 'content-type' is set by 'multipart'");
    lua_pop(L, 1);
    pd_mp_push_checked(L, MULTIPART, "build_request");
    lua_setfield(L, out, "multipart");
  }
  lua_setfield(L, out, "headers");
  lua_settop(L, out);
  return 1;
}

/* Registers build_request in the module table on the top of the stack. */
static void pd_request_open(lua_State *L) {
  lua_pushcfunction(L, pd_build_request_l);
  lua_setfield(L, -2, "build_request");
}
