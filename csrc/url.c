/* url.c: the one home of URLs in the project.
 *   core.url_encode(s)          percent-encoding (query strings, form bodies, paths)
 *   core.url_parse(s)           the parts of an absolute URL, or nil, message
 *   core.url_resolve(base, ref) the absolute URL a reference (a Location) names
 *   core.is_loopback(host)      localhost, 127.0.0.0/8, ::1
 *   core.url_userinfo(s)        the decoded user and password of a URL (redis://:pw@host)
 * Parsing and resolving go through libcurl's URL API (curl_url), so the host
 * a caller checks is the host libcurl will connect to: no second parser can
 * disagree with the transport about "http://a@b:c@d/" or "HTTP://[::1]".
 *
 * Percent-encoding:
 *
 * One rule everywhere: RFC 3986 unreserved characters (A-Z a-z 0-9 - . _ ~)
 * are kept, every other byte becomes %XX with upper-case hex. Encoding more
 * than strictly needed is always safe, while encoding too little ("+", "&",
 * "/" or "#" in a search term) silently changes what the server reads. */

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <curl/curl.h>

#include "pd.h"
#include "json.h"
#include "url.h"

static const char pd_url_hex[] = "0123456789ABCDEF";

/* RFC 3986 unreserved characters: the only ones sent as they are, so no
 * value can change the meaning of a URL. */
static int pd_url_unreserved(unsigned char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
         c == '_' || c == '~';
}

/* Appends s[0..n) percent-encoded. Runs of unreserved bytes are copied in one
 * append, so plain ASCII costs one memcpy. */
static void pd_url_append(pd_buf *b, const char *s, size_t n) {
  const unsigned char *p = (const unsigned char *)s, *end = p + n, *run = p;
  while (p < end) {
    if (pd_url_unreserved(*p)) {
      p++;
      continue;
    }
    pd_buf_add(b, run, (size_t)(p - run));
    {
      char esc[3] = { '%', pd_url_hex[*p >> 4], pd_url_hex[*p & 15] };
      pd_buf_add(b, esc, 3);
    }
    run = ++p;
  }
  pd_buf_add(b, run, (size_t)(p - run));
}

/* Appends the scalar at idx as a query/form/path value: strings encoded,
 * integers in decimal, floats in their shortest round-trip form (no ".0": a
 * server reading "limit=5" must not see "5.0"), booleans as true/false.
 * Returns 1, or 0 for a value that is not a scalar (the caller names the
 * field in its error), or -1 for NaN/infinity. Never raises. */
static int pd_url_append_scalar(lua_State *L, pd_buf *b, int idx) {
  switch (lua_type(L, idx)) {
    case LUA_TSTRING: {
      size_t n;
      const char *s = lua_tolstring(L, idx, &n);
      pd_url_append(b, s, n);
      return 1;
    }
    case LUA_TNUMBER: {
      char num[PD_NUMBUF];
      size_t n = pd_fmt_number(L, idx, num, 0);
      if (!n) return -1;
      pd_url_append(b, num, n);
      return 1;
    }
    case LUA_TBOOLEAN:
      if (lua_toboolean(L, idx)) pd_buf_add(b, "true", 4);
      else pd_buf_add(b, "false", 5);
      return 1;
    default: return 0;
  }
}

/* core.url_encode(s). Only strings: encoding a number or nil by accident
 * would put "nil" into a URL, so that is refused. */
static int pd_url_encode_l(lua_State *L) {
  size_t n;
  const char *s;
  pd_buf *b;
  if (lua_type(L, 1) != LUA_TSTRING)
    return pd_raise(L, "url_encode: expected a string, got %s", luaL_typename(L, 1));
  s = lua_tolstring(L, 1, &n);
  if (n > ((size_t)-1 - 1) / 3) return pd_raise(L, "url_encode: string too long");
  b = pd_box_new(L, n * 3 + 1);
  pd_url_append(b, s, n);
  if (pd_buf_failed(b)) {
    pd_buf_free(b);
    return pd_raise(L, "url_encode: out of memory");
  }
  pd_box_push(L, b);
  return 1;
}

/* Longest URL url_parse and url_resolve take (request.c's limit on the URLs
 * it builds is the same figure): far beyond any real one. */
#define PD_URL_PARSE_MAX ((size_t)64 * 1024)

/* The message for a libcurl URL error. Never the URL itself (it may carry a
 * token in its query or userinfo), only what was wrong with it. */
static const char *pd_url_errmsg(CURLUcode rc) {
  switch (rc) {
    case CURLUE_NO_SCHEME: case CURLUE_BAD_SCHEME: return "URL has no valid scheme";
    case CURLUE_UNSUPPORTED_SCHEME: return "URL scheme is not supported";
    case CURLUE_NO_HOST: case CURLUE_BAD_HOSTNAME: return "URL has no valid host";
    case CURLUE_BAD_IPV6: return "URL has a malformed IPv6 address";
    case CURLUE_BAD_PORT_NUMBER: return "URL has a bad port number";
    case CURLUE_OUT_OF_MEMORY: return "out of memory";
    default: return "malformed URL";
  }
}

/* Pushes the part of u libcurl holds (lower-cased when asked) and returns
 * 1, or pushes nothing and returns 0 when there is none. libcurl's copy goes
 * through a box, so a memory error while pushing cannot leak it. */
static int pd_url_push_part(lua_State *L, CURLU *u, CURLUPart part, unsigned flags, int lower) {
  char *v = NULL;
  pd_buf *b = pd_box_new(L, 0);
  if (curl_url_get(u, part, &v, flags) != CURLUE_OK || !v) {
    curl_free(v);
    lua_pop(L, 1);
    return 0;
  }
  pd_buf_adds(b, v);
  curl_free(v);
  if (pd_buf_failed(b)) {
    pd_buf_free(b);
    pd_raise(L, "url_parse: out of memory");
  }
  if (lower) {
    size_t i;
    for (i = 0; i < b->len; i++) b->data[i] = (char)tolower((unsigned char)b->data[i]);
  }
  pd_box_push(L, b);
  lua_replace(L, -2);
  return 1;
}

/* Sets t[name] (t on the top) to a part of u when u has it. */
static void pd_url_set_part(lua_State *L, CURLU *u, CURLUPart part, const char *name, int lower) {
  if (pd_url_push_part(L, u, part, 0, lower)) lua_setfield(L, -2, name);
}

/* The handle of a URL box: a CURLU freed by __gc if a Lua error unwinds
 * past its owner, so a raise while building the result cannot leak it. */
typedef struct pd_urlbox {
  CURLU *u;
} pd_urlbox;

static char pd_urlbox_key;

/* Frees the CURLU of the box at idx now rather than at the next collection. */
static void pd_urlbox_close(lua_State *L, int idx) {
  pd_urlbox *b = (pd_urlbox *)lua_touserdata(L, idx);
  if (b && b->u) {
    curl_url_cleanup(b->u);
    b->u = NULL;
  }
}

/* __gc of a URL box: frees what an error left behind. */
static int pd_urlbox_gc(lua_State *L) {
  pd_urlbox_close(L, 1);
  return 0;
}

/* Pushes a box holding a new CURLU with `url` set (unknown schemes allowed,
 * so the caller decides which it accepts) and returns it, or returns NULL
 * with *rc set; the box is pushed either way. */
static CURLU *pd_urlbox_new(lua_State *L, const char *url, CURLUcode *rc) {
  pd_urlbox *b = (pd_urlbox *)pd_newuserdata(L, sizeof *b);
  b->u = NULL;
  lua_pushlightuserdata(L, (void *)&pd_urlbox_key);
  lua_rawget(L, LUA_REGISTRYINDEX);
  lua_setmetatable(L, -2);
  b->u = curl_url();
  if (!b->u) {
    *rc = CURLUE_OUT_OF_MEMORY;
    return NULL;
  }
  *rc = curl_url_set(b->u, CURLUPART_URL, url, CURLU_NON_SUPPORT_SCHEME);
  return *rc == CURLUE_OK ? b->u : NULL;
}

/* Argument i as a C string for fname, or NULL when it is too long or holds
 * a NUL byte (no URL does); anything but a string is misuse and raises. */
static const char *pd_url_checkarg(lua_State *L, int i, const char *fname) {
  size_t n;
  const char *s;
  if (lua_type(L, i) != LUA_TSTRING) {
    pd_raise(L, "%s: expected a string, got %s", fname, luaL_typename(L, i));
    return NULL;
  }
  s = lua_tolstring(L, i, &n);
  return (n > PD_URL_PARSE_MAX || strlen(s) != n) ? NULL : s;
}

/* Pushes nil, message and returns 2: the answer for a URL that cannot be used. */
static int pd_url_fail(lua_State *L, const char *message) {
  lua_pushnil(L);
  lua_pushstring(L, message);
  return 2;
}

/* core.url_parse(s) -> { scheme, host, port, path, query, fragment,
 * has_userinfo, origin } or nil, message. scheme and host are lower-cased,
 * an IPv6 host keeps its brackets ("[::1]"), port is an integer (the
 * scheme's default when absent; nil for a scheme libcurl has no default for),
 * path is at least "/" (dot segments removed, as libcurl sends it), query and
 * fragment are nil when absent, origin is "scheme://host" plus ":port" when
 * the port is not the default. Relative URLs and URLs with spaces or control
 * characters are refused. The message never quotes the URL. */
static int pd_url_parse_l(lua_State *L) {
  const char *s = pd_url_checkarg(L, 1, "url_parse");
  CURLUcode rc;
  CURLU *u;
  char *user = NULL;
  int t;
  lua_settop(L, 1);
  if (!s) return pd_url_fail(L, "malformed URL");
  u = pd_urlbox_new(L, s, &rc); /* the box is slot 2 */
  if (!u) return pd_url_fail(L, pd_url_errmsg(rc));
  lua_createtable(L, 0, 9);
  t = lua_gettop(L);
  pd_url_set_part(L, u, CURLUPART_SCHEME, "scheme", 1);
  pd_url_set_part(L, u, CURLUPART_HOST, "host", 1);
  pd_url_set_part(L, u, CURLUPART_PATH, "path", 0);
  pd_url_set_part(L, u, CURLUPART_QUERY, "query", 0);
  pd_url_set_part(L, u, CURLUPART_FRAGMENT, "fragment", 0);
  lua_getfield(L, t, "host");
  if (lua_type(L, -1) != LUA_TSTRING || lua_rawlen(L, -1) == 0) {
    pd_urlbox_close(L, 2);
    return pd_url_fail(L, "URL has no valid host");
  }
  rc = curl_url_get(u, CURLUPART_USER, &user, 0);
  curl_free(user);
  lua_pushboolean(L, rc == CURLUE_OK);
  lua_setfield(L, t, "has_userinfo");
  /* port: the given one, else the scheme's default (none for a scheme
   * libcurl does not know); origin shows it only when it is not the default. */
  if (pd_url_push_part(L, u, CURLUPART_PORT, CURLU_DEFAULT_PORT, 0)) {
    lua_Integer port = (lua_Integer)strtol(lua_tostring(L, -1), NULL, 10);
    lua_pop(L, 1);
    lua_pushinteger(L, port);
    lua_setfield(L, t, "port");
  }
  lua_getfield(L, t, "scheme");
  lua_pushliteral(L, "://");
  lua_pushvalue(L, t + 1); /* host */
  if (pd_url_push_part(L, u, CURLUPART_PORT, CURLU_NO_DEFAULT_PORT, 0)) {
    lua_pushliteral(L, ":");
    lua_insert(L, -2);
    lua_concat(L, 5);
  } else {
    lua_concat(L, 3);
  }
  lua_setfield(L, t, "origin");
  pd_urlbox_close(L, 2);
  lua_settop(L, t);
  return 1;
}

/* core.url_resolve(base, ref) -> the absolute URL that ref names when found
 * in a document at base (RFC 3986 resolution, by libcurl: "/x", "x", "//h/x",
 * "?q" and absolute URLs), or nil, message. For redirects' Location. */
static int pd_url_resolve_l(lua_State *L) {
  const char *base = pd_url_checkarg(L, 1, "url_resolve");
  const char *ref = pd_url_checkarg(L, 2, "url_resolve");
  CURLUcode rc;
  CURLU *u;
  char *out = NULL;
  pd_buf *b;
  lua_settop(L, 2);
  if (!base || !ref) return pd_url_fail(L, "malformed URL");
  b = pd_box_new(L, 0);          /* slot 3: the answer's copy */
  u = pd_urlbox_new(L, base, &rc); /* slot 4 */
  /* A reference that is only a fragment keeps the base's path and query
   * (RFC 3986 5.2.2); libcurl 7.88 would drop the last path segment. */
  if (u && ref[0] == '#') rc = curl_url_set(u, CURLUPART_FRAGMENT, ref[1] ? ref + 1 : NULL, 0);
  else if (u) rc = curl_url_set(u, CURLUPART_URL, ref, CURLU_NON_SUPPORT_SCHEME);
  if (rc == CURLUE_OK) rc = curl_url_get(u, CURLUPART_URL, &out, 0);
  if (rc == CURLUE_OK && out) pd_buf_adds(b, out);
  curl_free(out);
  pd_urlbox_close(L, 4);
  if (rc != CURLUE_OK) return pd_url_fail(L, pd_url_errmsg(rc));
  if (pd_buf_failed(b)) {
    pd_buf_free(b);
    return pd_raise(L, "url_resolve: out of memory");
  }
  pd_box_push(L, b);
  return 1;
}

/* Pushes the percent-decoded user or password part of u (nil when absent)
 * through a secret box, and wipes libcurl's copy before freeing it: the part
 * is a credential. */
static void pd_url_push_secret(lua_State *L, CURLU *u, CURLUPart part) {
  char *v = NULL;
  pd_buf *b = pd_box_new_secret(L, 0);
  if (curl_url_get(u, part, &v, CURLU_URLDECODE) != CURLUE_OK || !v) {
    curl_free(v);
    lua_pop(L, 1);
    lua_pushnil(L);
    return;
  }
  pd_buf_adds(b, v);
  pd_wipe(v, strlen(v));
  curl_free(v);
  if (pd_buf_failed(b)) {
    pd_buf_free(b);
    pd_raise(L, "url_userinfo: out of memory");
  }
  pd_box_push(L, b);
  lua_replace(L, -2);
}

/* core.url_userinfo(s) -> user, password (each decoded, nil when absent), or
 * nil, nil, message for a URL that cannot be parsed. url_parse only says
 * has_userinfo, so the credentials stay out of the table every caller logs
 * or keeps; the one reader of a redis:// URL's password asks for them here.
 * The message never quotes the URL. */
static int pd_url_userinfo_l(lua_State *L) {
  const char *s = pd_url_checkarg(L, 1, "url_userinfo");
  CURLUcode rc;
  CURLU *u;
  lua_settop(L, 1);
  if (!s) {
    lua_pushnil(L);
    lua_pushnil(L);
    lua_pushstring(L, "malformed URL");
    return 3;
  }
  u = pd_urlbox_new(L, s, &rc); /* slot 2 */
  if (!u) {
    lua_pushnil(L);
    lua_pushnil(L);
    lua_pushstring(L, pd_url_errmsg(rc));
    return 3;
  }
  pd_url_push_secret(L, u, CURLUPART_USER);
  pd_url_push_secret(L, u, CURLUPART_PASSWORD);
  pd_urlbox_close(L, 2);
  return 2;
}

/* Whether host (as url_parse gives it, or bare) is the local machine:
 * "localhost" (any case, with or without a final dot), an IPv4 address in
 * 127.0.0.0/8, or ::1 (bracketed or not, also as ::ffff:127.x.y.z). Only
 * literal addresses count: a name other than localhost is not looked up. */
static int pd_url_loopback(const char *h, size_t n) {
  char buf[64];
  unsigned char a[16];
  if ((n == 9 || (n == 10 && h[9] == '.')) && strncasecmp(h, "localhost", 9) == 0) return 1;
  if (n == 0 || n >= sizeof buf) return 0;
  if (h[0] == '[') {
    if (n < 3 || h[n - 1] != ']') return 0;
    memcpy(buf, h + 1, n - 2);
    buf[n - 2] = '\0';
  } else {
    memcpy(buf, h, n);
    buf[n] = '\0';
    if (inet_pton(AF_INET, buf, a) == 1) return a[0] == 127;
  }
  if (inet_pton(AF_INET6, buf, a) != 1) return 0;
  {
    static const unsigned char v4mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
    int i;
    for (i = 0; i < 15 && a[i] == 0; i++) {
    }
    if (i == 15 && a[15] == 1) return 1;
    return memcmp(a, v4mapped, 12) == 0 && a[12] == 127;
  }
}

/* core.is_loopback(host) -> boolean. Misuse (not a string) raises. */
static int pd_url_is_loopback_l(lua_State *L) {
  size_t n;
  const char *h;
  if (lua_type(L, 1) != LUA_TSTRING)
    return pd_raise(L, "is_loopback: expected a string, got %s", luaL_typename(L, 1));
  h = lua_tolstring(L, 1, &n);
  lua_pushboolean(L, strlen(h) == n && pd_url_loopback(h, n));
  return 1;
}

/* Registers the URL functions in the module table on the top of the stack,
 * and the URL box metatable in the registry (reused on a re-require). */
static void pd_url_open(lua_State *L) {
  lua_pushlightuserdata(L, (void *)&pd_urlbox_key);
  lua_rawget(L, LUA_REGISTRYINDEX);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushcfunction(L, pd_urlbox_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushliteral(L, "pipedrive.url");
    lua_setfield(L, -2, "__metatable");
    lua_pushlightuserdata(L, (void *)&pd_urlbox_key);
    lua_pushvalue(L, -2);
    lua_rawset(L, LUA_REGISTRYINDEX);
  }
  lua_pop(L, 1);
  lua_pushcfunction(L, pd_url_encode_l);
  lua_setfield(L, -2, "url_encode");
  lua_pushcfunction(L, pd_url_parse_l);
  lua_setfield(L, -2, "url_parse");
  lua_pushcfunction(L, pd_url_resolve_l);
  lua_setfield(L, -2, "url_resolve");
  lua_pushcfunction(L, pd_url_is_loopback_l);
  lua_setfield(L, -2, "is_loopback");
  lua_pushcfunction(L, pd_url_userinfo_l);
  lua_setfield(L, -2, "url_userinfo");
}
