/* OAuth 2.0 authorization code flow for Pipedrive, without any I/O.
 *
 * This file turns the protocol into data, the same seam as the API calls:
 * the functions below build request tables { method, url, headers, body }
 * (the authorize URL, the token exchange, the refresh, the revocation) and
 * read response tables { status, headers, body } into a token table or an
 * error. The Lua layer hands requests to whatever transport it has (libcurl,
 * an OpenResty cosocket, a recorded fixture), so the whole flow can be tested
 * and embedded without this file ever opening a socket.
 *
 *   core.random_token(nbytes)                -> base64url string (state values)
 *   core.consttime_equal(a, b)               -> boolean
 *   core.base64_encode(s)                    -> standard, padded base64
 *   core.oauth_authorize_url{...}            -> URL string
 *   core.oauth_token_request{...}            -> request table (code or refresh grant)
 *   core.oauth_revoke_request{...}           -> request table
 *   core.oauth_parse_token(res, now, ctx)    -> token | nil, err
 *   core.oauth_needs_refresh(token, now, skew) -> boolean
 *
 * Secrets (client secret, codes, tokens) must never reach an error message:
 * argument errors name the field only, and server messages are scrubbed of
 * every secret we know plus anything that looks like a token before they are
 * shown. Memory rule: every malloc'd buffer is freed before anything that
 * may raise a Lua error runs; strings leave C through oauth_push_buf, which
 * pushes inside a protected call so that even a memory error frees first.
 */
#include "compat.h"
#include "buf.h"

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

/* getrandom(2) came with glibc 2.25; elsewhere /dev/urandom serves. (Not
 * __has_include: static analysers here cannot evaluate it.) */
#if defined(__linux__) && defined(__GLIBC__) && \
    (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 25))
#include <sys/random.h>
#define OAUTH_HAVE_GETRANDOM 1
#endif

#define OAUTH_DEFAULT_URL "https://oauth.pipedrive.com"
#define OAUTH_FIELD_MAX 4096u          /* ids, URIs, states, scopes */
#define OAUTH_SECRET_MAX 16384u        /* client secrets, codes, tokens */
#define OAUTH_REQ_MAX (64u * 1024u)    /* any URL, form body or header we build */
#define OAUTH_BODY_MAX (1024u * 1024u) /* token responses larger than this are not read */
#define OAUTH_JSON_STR_MAX (64u * 1024u)
#define OAUTH_JSON_DEPTH 64
#define OAUTH_MSG_MAX 320              /* bytes of a server message kept in an error */
#define OAUTH_EXPIRES_MAX 315360000    /* ten years: anything longer is not a lifetime */

/* ---------------------------------------------------------------------- */
/* Small shared helpers                                                   */
/* ---------------------------------------------------------------------- */

/* Overwrite memory that held a secret. A plain memset before free() may be
 * removed by the optimiser; stores through a volatile pointer may not. */
static void oauth_wipe(void *p, size_t n) {
  volatile unsigned char *v = (volatile unsigned char *)p;
  while (n--) *v++ = 0;
}

/* Wipe (when asked) and free a buffer in one step, so that error paths that
 * must release several buffers before raising stay short and uniform. */
static void oauth_buf_release(pd_buf *b, int wipe) {
  if (wipe && b->data) oauth_wipe(b->data, b->cap);
  pd_buf_free(b);
}

/* Body of the protected push: the only Lua call that touches a C buffer. */
static int oauth_push_buf_k(lua_State *L) {
  const pd_buf *b = (const pd_buf *)lua_touserdata(L, 1);
  lua_pushlstring(L, b->data ? b->data : "", b->len);
  return 1;
}

/* Every function registered by this file and fs.c carries oauth_push_buf_k
 * as upvalue 1, so pushing it later copies a value and allocates nothing
 * (on Lua 5.1 and LuaJIT, lua_pushcfunction would allocate a closure). */
#define OAUTH_PUSHER lua_upvalueindex(1)

/* Push a C buffer as a Lua string and free it, in that order, without ever
 * raising while the buffer is still allocated: the push runs under lua_pcall
 * (it can fail with a memory error), the buffer is released whatever
 * happened, and only then is a failure re-raised. Callers reserve stack
 * space before they allocate, so the two pushes here cannot fail. */
static void oauth_push_buf(lua_State *L, pd_buf *b, int wipe) {
  int rc;
  lua_pushvalue(L, OAUTH_PUSHER);
  lua_pushlightuserdata(L, b);
  rc = lua_pcall(L, 1, 1, 0);
  oauth_buf_release(b, wipe);
  if (rc != 0) lua_error(L);
}

/* Add functions to the module table on top of the stack, each with the
 * protected-push helper as its upvalue (see OAUTH_PUSHER). */
static void oauth_register(lua_State *L, const luaL_Reg *fns) {
  for (; fns->name; fns++) {
    lua_pushcfunction(L, oauth_push_buf_k);
    lua_pushcclosure(L, fns->func, 1);
    lua_setfield(L, -2, fns->name);
  }
}

/* Fill `out` with n bytes from the kernel's CSPRNG. getrandom(2) needs no
 * file descriptor (so it works in chroots and when fds run out); older
 * kernels and non-Linux systems fall back to /dev/urandom. Returns 0, or
 * -1 with errno set. Never raises: callers decide how to report. */
static int oauth_random_bytes(unsigned char *out, size_t n) {
  size_t got = 0;
  int fd, e;
#ifdef OAUTH_HAVE_GETRANDOM
  while (got < n) {
    ssize_t r = getrandom(out + got, n - got, 0);
    if (r < 0) {
      if (errno == EINTR) continue;
      break;
    }
    got += (size_t)r;
  }
  if (got == n) return 0;
  if (errno != ENOSYS && errno != EPERM) return -1;
  got = 0;
#endif
  do {
    fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) return -1;
  while (got < n) {
    ssize_t r = read(fd, out + got, n - got);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) {
      e = r == 0 ? EIO : errno;
      close(fd);
      errno = e;
      return -1;
    }
    got += (size_t)r;
  }
  close(fd);
  return 0;
}

static const char oauth_b64_std[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
static const char oauth_b64_url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* Encode one group of 1..3 bytes into out (4 bytes of room); returns the
 * characters written. `url` picks the URL-safe alphabet without padding
 * (RFC 4648 section 5, for values that travel in URLs); otherwise the
 * standard padded alphabet (section 4, for HTTP Basic credentials). The C
 * buffer, the Lua buffer and the stack array users below all go through
 * this one group encoder, so there is a single place to get base64 right. */
static size_t oauth_b64_group(const unsigned char *s, size_t n, char *out, int url) {
  const char *abc = url ? oauth_b64_url : oauth_b64_std;
  unsigned v = (unsigned)s[0] << 16;
  size_t k = 0;
  if (n > 1) v |= (unsigned)s[1] << 8;
  if (n > 2) v |= s[2];
  out[k++] = abc[(v >> 18) & 63];
  out[k++] = abc[(v >> 12) & 63];
  if (n > 1) out[k++] = abc[(v >> 6) & 63];
  else if (!url) out[k++] = '=';
  if (n > 2) out[k++] = abc[v & 63];
  else if (!url) out[k++] = '=';
  return k;
}

/* Base64 of n bytes appended to a C buffer (see oauth_b64_group). */
static void oauth_b64_add(pd_buf *b, const unsigned char *s, size_t n, int url) {
  char q[4];
  size_t i;
  for (i = 0; i < n; i += 3) pd_buf_add(b, q, oauth_b64_group(s + i, n - i > 3 ? 3 : n - i, q, url));
}

/* Percent-encode everything but RFC 3986 unreserved characters. Used for
 * both query strings and application/x-www-form-urlencoded bodies: a space
 * becomes %20, which every form decoder accepts, so one encoder serves both
 * and no value can ever break out of its parameter. */
static void oauth_pct_add(pd_buf *b, const char *s, size_t n) {
  static const char hex[] = "0123456789ABCDEF";
  size_t i;
  for (i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
        c == '.' || c == '_' || c == '~') {
      pd_buf_addc(b, (char)c);
    } else {
      pd_buf_addc(b, '%');
      pd_buf_addc(b, hex[c >> 4]);
      pd_buf_addc(b, hex[c & 15]);
    }
  }
}

/* Append "name=<encoded value>", preceded by '&' unless first. */
static void oauth_param_add(pd_buf *b, int first, const char *name, const char *v, size_t n) {
  if (!first) pd_buf_addc(b, '&');
  pd_buf_adds(b, name);
  pd_buf_addc(b, '=');
  oauth_pct_add(b, v, n);
}

/* ASCII case-insensitive prefix test; server messages vary in case. */
static int oauth_has_prefix_ci(const char *s, size_t n, const char *prefix) {
  size_t i, m = strlen(prefix);
  if (n < m) return 0;
  for (i = 0; i < m; i++) {
    unsigned char a = (unsigned char)s[i], c = (unsigned char)prefix[i];
    if (a >= 'A' && a <= 'Z') a = (unsigned char)(a + 32);
    if (c >= 'A' && c <= 'Z') c = (unsigned char)(c + 32);
    if (a != c) return 0;
  }
  return 1;
}

/* True when every byte is visible ASCII (0x21..0x7e): what a token, a
 * client id or an api_domain must be before it goes into a header or URL.
 * It is what stops a CR/LF in a server answer from splitting a header. */
static int oauth_visible_ascii(const char *s, size_t n) {
  size_t i;
  for (i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c < 0x21 || c > 0x7e) return 0;
  }
  return 1;
}

/* True when the string holds no control characters (it may hold spaces and
 * UTF-8): the test for free-text inputs such as redirect URIs and scopes. */
static int oauth_no_controls(const char *s, size_t n) {
  size_t i;
  for (i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c < 0x20 || c == 0x7f) return 0;
  }
  return 1;
}

/* True for "http://host..." or "https://host..." made of visible ASCII:
 * the shape of the OAuth host and of the api_domain a token comes with. */
static int oauth_is_http_url(const char *s, size_t n) {
  size_t p = oauth_has_prefix_ci(s, n, "https://") ? 8 : oauth_has_prefix_ci(s, n, "http://") ? 7 : 0;
  return p > 0 && n > p && s[p] != '/' && oauth_visible_ascii(s, n);
}

/* ---------------------------------------------------------------------- */
/* Argument reading                                                       */
/* ---------------------------------------------------------------------- */

#define OAUTH_OPTIONAL 0
#define OAUTH_REQUIRED 1
#define OAUTH_TEXT 0     /* no control characters */
#define OAUTH_OPAQUE 2   /* visible ASCII only (ids, URLs, tokens) */
#define OAUTH_NOCOLON 4  /* no ':' (a Basic auth user id cannot hold one) */

/* Read t[field] as a string and leave it on the stack, which keeps it alive
 * while C holds the pointer. Raises naming the function and the field but
 * never quoting the value: the value may be a secret. Returns NULL (after
 * pushing nil) for an absent optional field. */
static const char *oauth_field(lua_State *L, int t, const char *fn, const char *field, int flags,
                               size_t max, size_t *len) {
  const char *s;
  int ty;
  lua_getfield(L, t, field);
  ty = lua_type(L, -1);
  *len = 0;
  if (ty == LUA_TNIL) {
    if (flags & OAUTH_REQUIRED) luaL_error(L, "%s: field '%s' is required", fn, field);
    return NULL;
  }
  if (ty != LUA_TSTRING) {
    luaL_error(L, "%s: field '%s' must be a string (got %s)", fn, field, lua_typename(L, ty));
    return NULL;
  }
  s = lua_tolstring(L, -1, len);
  if (*len == 0) luaL_error(L, "%s: field '%s' must not be empty", fn, field);
  if (*len > max) luaL_error(L, "%s: field '%s' is too long (at most %d bytes)", fn, field, (int)max);
  if ((flags & OAUTH_OPAQUE) ? !oauth_visible_ascii(s, *len) : !oauth_no_controls(s, *len))
    luaL_error(L, "%s: field '%s' contains characters that are not allowed", fn, field);
  if ((flags & OAUTH_NOCOLON) && memchr(s, ':', *len)) luaL_error(L, "%s: field '%s' must not contain ':'", fn, field);
  return s;
}

/* Read t.oauth_url (default Pipedrive's OAuth host), check it is an http(s)
 * origin without query or fragment, and drop trailing slashes so that the
 * fixed paths can be appended. Leaves the value on the stack. */
static const char *oauth_base(lua_State *L, int t, const char *fn, size_t *len) {
  const char *s = oauth_field(L, t, fn, "oauth_url", OAUTH_OPTIONAL | OAUTH_OPAQUE, OAUTH_FIELD_MAX, len);
  if (!s) {
    lua_pop(L, 1);
    lua_pushliteral(L, OAUTH_DEFAULT_URL);
    return lua_tolstring(L, -1, len);
  }
  if (!oauth_is_http_url(s, *len)) luaL_error(L, "%s: field 'oauth_url' must start with https:// or http://", fn);
  if (memchr(s, '?', *len) || memchr(s, '#', *len))
    luaL_error(L, "%s: field 'oauth_url' must not hold a query or fragment", fn);
  while (*len > 0 && s[*len - 1] == '/') (*len)--;
  return s;
}

/* ---------------------------------------------------------------------- */
/* random_token, consttime_equal, base64_encode                           */
/* ---------------------------------------------------------------------- */

/* core.random_token(nbytes = 32): a fresh unguessable value for the OAuth
 * `state` (CSRF protection) and similar nonces. 16..64 bytes keeps it from
 * being too weak or absurdly long; raises if the OS has no randomness,
 * because a predictable state would silently defeat its purpose. */
static int oauth_random_token(lua_State *L) {
  unsigned char raw[64];
  char out[88]; /* 64 bytes -> 86 characters */
  lua_Integer n = luaL_optinteger(L, 1, 32);
  size_t i, k = 0;
  luaL_argcheck(L, n >= 16 && n <= 64, 1, "random_token: nbytes must be between 16 and 64");
  if (oauth_random_bytes(raw, (size_t)n) != 0) {
    int e = errno;
    return luaL_error(L, "random_token: no randomness available: %s", strerror(e));
  }
  for (i = 0; i < (size_t)n; i += 3)
    k += oauth_b64_group(raw + i, (size_t)n - i > 3 ? 3 : (size_t)n - i, out + k, 1);
  oauth_wipe(raw, sizeof raw);
  lua_pushlstring(L, out, k);
  return 1;
}

/* core.consttime_equal(a, b): string equality whose running time depends
 * only on the length of the longer input, never on where the inputs first
 * differ, so comparing a received state or webhook password with the
 * expected one does not leak it a byte at a time. Bytes past the end of the
 * shorter string are read from index 0 (Lua strings always hold a NUL
 * there) and masked out; the length difference is folded into the result. */
static int oauth_consttime_equal(lua_State *L) {
  size_t la, lb, n, i;
  const unsigned char *a = (const unsigned char *)luaL_checklstring(L, 1, &la);
  const unsigned char *b = (const unsigned char *)luaL_checklstring(L, 2, &lb);
  volatile unsigned acc = 0;
  unsigned diff = 0;
  n = la > lb ? la : lb;
  for (i = 0; i < n; i++) {
    size_t ina = (size_t)0 - (size_t)(i < la); /* all ones while i is inside a */
    size_t inb = (size_t)0 - (size_t)(i < lb);
    unsigned ca = a[i & ina] & (unsigned)ina;
    unsigned cb = b[i & inb] & (unsigned)inb;
    diff |= (ca ^ cb) | ((unsigned)ina ^ (unsigned)inb);
  }
  acc = diff | (unsigned)(la != lb);
  lua_pushboolean(L, acc == 0);
  return 1;
}

/* core.base64_encode(s): standard padded base64, which HTTP Basic auth
 * needs and which Lua 5.x lacks. The output size is known in advance and
 * bounded by the input, so it is built in a Lua buffer directly. */
static int oauth_base64_encode(lua_State *L) {
  size_t n, i;
  const unsigned char *s = (const unsigned char *)luaL_checklstring(L, 1, &n);
  luaL_Buffer lb;
  char q[4];
  luaL_buffinit(L, &lb);
  for (i = 0; i < n; i += 3) luaL_addlstring(&lb, q, oauth_b64_group(s + i, n - i > 3 ? 3 : n - i, q, 0));
  luaL_pushresult(&lb);
  return 1;
}

/* ---------------------------------------------------------------------- */
/* Request builders                                                       */
/* ---------------------------------------------------------------------- */

/* Fail on an overgrown buffer: the buffer is released first, then the Lua
 * error is raised, so nothing leaks. Inputs are length-checked, so this
 * only fires if the limits above are changed inconsistently. */
static void oauth_buf_check(lua_State *L, pd_buf *b, int wipe, const char *fn) {
  if (!pd_buf_failed(b)) return;
  oauth_buf_release(b, wipe);
  luaL_error(L, "%s: request too large or out of memory", fn);
}

/* core.oauth_authorize_url{ oauth_url, client_id, redirect_uri, state, scope }:
 * the URL to send the user's browser to. Takes no client secret at all, so
 * a secret can never end up in a URL, a browser history or a proxy log.
 * `state` is required: a flow without it is open to login CSRF. `scope`
 * may be a string or a list of strings (joined with spaces). */
static int oauth_authorize_url(lua_State *L) {
  static const char fn[] = "oauth_authorize_url";
  const char *base, *id, *uri, *state, *scope = NULL;
  size_t nbase, nid, nuri, nstate, nscope = 0;
  pd_buf b;
  luaL_checktype(L, 1, LUA_TTABLE);
  luaL_checkstack(L, 20, fn);
  base = oauth_base(L, 1, fn, &nbase);
  id = oauth_field(L, 1, fn, "client_id", OAUTH_REQUIRED | OAUTH_OPAQUE, OAUTH_FIELD_MAX, &nid);
  uri = oauth_field(L, 1, fn, "redirect_uri", OAUTH_REQUIRED | OAUTH_TEXT, OAUTH_FIELD_MAX, &nuri);
  state = oauth_field(L, 1, fn, "state", OAUTH_REQUIRED | OAUTH_TEXT, OAUTH_FIELD_MAX, &nstate);
  lua_getfield(L, 1, "scope");
  if (lua_type(L, -1) == LUA_TTABLE) {
    /* A list of scopes: join with single spaces in a Lua buffer (Lua-owned
     * memory, so the element checks below may raise freely). */
    luaL_Buffer lb;
    int i, n = (int)lua_rawlen(L, -1), t = lua_gettop(L);
    if (n == 0) return luaL_error(L, "%s: field 'scope' must not be an empty list", fn);
    luaL_buffinit(L, &lb);
    for (i = 1; i <= n; i++) {
      size_t k;
      const char *e;
      lua_rawgeti(L, t, i);
      if (lua_type(L, -1) != LUA_TSTRING) return luaL_error(L, "%s: field 'scope' must hold only strings", fn);
      e = lua_tolstring(L, -1, &k);
      if (k == 0 || !oauth_visible_ascii(e, k))
        return luaL_error(L, "%s: field 'scope' entries must be non-empty words", fn);
      if (i > 1) luaL_addchar(&lb, ' ');
      luaL_addvalue(&lb);
    }
    luaL_pushresult(&lb);
    scope = lua_tolstring(L, -1, &nscope);
    if (nscope > OAUTH_FIELD_MAX) return luaL_error(L, "%s: field 'scope' is too long", fn);
  } else {
    lua_pop(L, 1);
    scope = oauth_field(L, 1, fn, "scope", OAUTH_OPTIONAL | OAUTH_TEXT, OAUTH_FIELD_MAX, &nscope);
  }
  pd_buf_init(&b, OAUTH_REQ_MAX);
  pd_buf_add(&b, base, nbase);
  pd_buf_adds(&b, "/oauth/authorize?");
  oauth_param_add(&b, 1, "client_id", id, nid);
  oauth_param_add(&b, 0, "redirect_uri", uri, nuri);
  oauth_param_add(&b, 0, "state", state, nstate);
  if (scope) oauth_param_add(&b, 0, "scope", scope, nscope);
  oauth_buf_check(L, &b, 0, fn);
  oauth_push_buf(L, &b, 0);
  return 1;
}

/* Push "Basic base64(id:secret)". The plain "id:secret" and the encoded
 * header both hold the secret, so both are wiped before they are freed;
 * only one buffer is alive when the push (which may raise) happens. */
static void oauth_push_basic(lua_State *L, const char *fn, const char *id, size_t nid, const char *secret,
                             size_t nsecret) {
  pd_buf cred, hdr;
  pd_buf_init(&cred, OAUTH_REQ_MAX);
  pd_buf_add(&cred, id, nid);
  pd_buf_addc(&cred, ':');
  pd_buf_add(&cred, secret, nsecret);
  oauth_buf_check(L, &cred, 1, fn);
  pd_buf_init(&hdr, OAUTH_REQ_MAX);
  pd_buf_adds(&hdr, "Basic ");
  oauth_b64_add(&hdr, (const unsigned char *)cred.data, cred.len, 0);
  oauth_buf_release(&cred, 1);
  oauth_buf_check(L, &hdr, 1, fn);
  oauth_push_buf(L, &hdr, 1);
}

/* Turn the three strings on top of the stack (url, body, authorization, in
 * that order) into the request table the transport expects. Only Lua
 * memory is involved here, so raising is harmless. */
static void oauth_make_request(lua_State *L) {
  lua_createtable(L, 0, 4);
  lua_pushliteral(L, "POST");
  lua_setfield(L, -2, "method");
  lua_pushvalue(L, -4);
  lua_setfield(L, -2, "url");
  lua_pushvalue(L, -3);
  lua_setfield(L, -2, "body");
  lua_createtable(L, 0, 3);
  lua_pushvalue(L, -3);
  lua_setfield(L, -2, "authorization");
  lua_pushliteral(L, "application/x-www-form-urlencoded");
  lua_setfield(L, -2, "content-type");
  lua_pushliteral(L, "application/json");
  lua_setfield(L, -2, "accept");
  lua_setfield(L, -2, "headers");
}

/* core.oauth_token_request{ oauth_url, client_id, client_secret, grant_type,
 * code, redirect_uri, refresh_token }: the POST to /oauth/token for either
 * grant. Pipedrive wants a form body (other content types get a 400) and
 * client credentials in HTTP Basic. Unknown grant types are refused rather
 * than passed through, so a typo cannot turn into a confusing server 400. */
static int oauth_token_request(lua_State *L) {
  static const char fn[] = "oauth_token_request";
  const char *base, *id, *secret, *grant, *code = NULL, *uri = NULL, *rt = NULL;
  size_t nbase, nid, nsecret, ngrant, ncode = 0, nuri = 0, nrt = 0;
  int is_code;
  pd_buf b;
  luaL_checktype(L, 1, LUA_TTABLE);
  luaL_checkstack(L, 24, fn);
  base = oauth_base(L, 1, fn, &nbase);
  id = oauth_field(L, 1, fn, "client_id", OAUTH_REQUIRED | OAUTH_OPAQUE | OAUTH_NOCOLON, OAUTH_FIELD_MAX, &nid);
  secret = oauth_field(L, 1, fn, "client_secret", OAUTH_REQUIRED | OAUTH_TEXT, OAUTH_SECRET_MAX, &nsecret);
  grant = oauth_field(L, 1, fn, "grant_type", OAUTH_REQUIRED | OAUTH_OPAQUE, OAUTH_FIELD_MAX, &ngrant);
  if (strcmp(grant, "authorization_code") == 0) {
    is_code = 1;
  } else if (strcmp(grant, "refresh_token") == 0) {
    is_code = 0;
  } else {
    return luaL_error(L, "%s: field 'grant_type' must be 'authorization_code' or 'refresh_token'", fn);
  }
  if (is_code) {
    code = oauth_field(L, 1, fn, "code", OAUTH_REQUIRED | OAUTH_TEXT, OAUTH_SECRET_MAX, &ncode);
    uri = oauth_field(L, 1, fn, "redirect_uri", OAUTH_REQUIRED | OAUTH_TEXT, OAUTH_FIELD_MAX, &nuri);
  } else {
    rt = oauth_field(L, 1, fn, "refresh_token", OAUTH_REQUIRED | OAUTH_OPAQUE, OAUTH_SECRET_MAX, &nrt);
  }

  pd_buf_init(&b, OAUTH_REQ_MAX);
  pd_buf_add(&b, base, nbase);
  pd_buf_adds(&b, "/oauth/token");
  oauth_buf_check(L, &b, 0, fn);
  oauth_push_buf(L, &b, 0);

  pd_buf_init(&b, OAUTH_REQ_MAX);
  if (is_code) {
    oauth_param_add(&b, 1, "grant_type", "authorization_code", 18);
    oauth_param_add(&b, 0, "code", code, ncode);
    oauth_param_add(&b, 0, "redirect_uri", uri, nuri);
  } else {
    oauth_param_add(&b, 1, "grant_type", "refresh_token", 13);
    oauth_param_add(&b, 0, "refresh_token", rt, nrt);
  }
  oauth_buf_check(L, &b, 1, fn);
  oauth_push_buf(L, &b, 1);

  oauth_push_basic(L, fn, id, nid, secret, nsecret);
  oauth_make_request(L);
  return 1;
}

/* core.oauth_revoke_request{ oauth_url, client_id, client_secret, token,
 * token_type_hint }: the POST to /oauth/revoke that ends a grant (revoking
 * the refresh token also kills its access tokens). The hint is optional
 * but, when given, must be one of the two values RFC 7009 defines. */
static int oauth_revoke_request(lua_State *L) {
  static const char fn[] = "oauth_revoke_request";
  const char *base, *id, *secret, *token, *hint;
  size_t nbase, nid, nsecret, ntoken, nhint;
  pd_buf b;
  luaL_checktype(L, 1, LUA_TTABLE);
  luaL_checkstack(L, 24, fn);
  base = oauth_base(L, 1, fn, &nbase);
  id = oauth_field(L, 1, fn, "client_id", OAUTH_REQUIRED | OAUTH_OPAQUE | OAUTH_NOCOLON, OAUTH_FIELD_MAX, &nid);
  secret = oauth_field(L, 1, fn, "client_secret", OAUTH_REQUIRED | OAUTH_TEXT, OAUTH_SECRET_MAX, &nsecret);
  token = oauth_field(L, 1, fn, "token", OAUTH_REQUIRED | OAUTH_OPAQUE, OAUTH_SECRET_MAX, &ntoken);
  hint = oauth_field(L, 1, fn, "token_type_hint", OAUTH_OPTIONAL | OAUTH_OPAQUE, OAUTH_FIELD_MAX, &nhint);
  if (hint && strcmp(hint, "refresh_token") != 0 && strcmp(hint, "access_token") != 0)
    return luaL_error(L, "%s: field 'token_type_hint' must be 'refresh_token' or 'access_token'", fn);

  pd_buf_init(&b, OAUTH_REQ_MAX);
  pd_buf_add(&b, base, nbase);
  pd_buf_adds(&b, "/oauth/revoke");
  oauth_buf_check(L, &b, 0, fn);
  oauth_push_buf(L, &b, 0);

  pd_buf_init(&b, OAUTH_REQ_MAX);
  oauth_param_add(&b, 1, "token", token, ntoken);
  if (hint) oauth_param_add(&b, 0, "token_type_hint", hint, nhint);
  oauth_buf_check(L, &b, 1, fn);
  oauth_push_buf(L, &b, 1);

  oauth_push_basic(L, fn, id, nid, secret, nsecret);
  oauth_make_request(L);
  return 1;
}

/* ---------------------------------------------------------------------- */
/* A bounded JSON reader for token responses                              */
/* ---------------------------------------------------------------------- */

/* Token responses are flat objects of strings and numbers. This reader
 * decodes the top-level object's scalar members into a Lua table and
 * validates, then drops, nested values (Pipedrive error bodies may carry
 * `data: null` or objects). It is self-contained on purpose: it works
 * whatever json.c does or whether it is loaded, it needs no allocation of
 * its own (strings are built in Lua buffers), and every dimension is
 * bounded (body size, string length, nesting depth), so a hostile or
 * broken answer costs little and cannot crash anything. */
typedef struct oauth_js {
  const char *p, *end;
} oauth_js;

/* Skip JSON whitespace. */
static void oauth_js_ws(oauth_js *j) {
  while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r')) j->p++;
}

/* Value of one hex digit, or -1. */
static int oauth_js_hex(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* Read four hex digits of a \u escape; -1 when malformed. */
static long oauth_js_u4(oauth_js *j) {
  long v = 0;
  int i;
  if (j->end - j->p < 4) return -1;
  for (i = 0; i < 4; i++) {
    int h = oauth_js_hex(j->p[i]);
    if (h < 0) return -1;
    v = v * 16 + h;
  }
  j->p += 4;
  return v;
}

/* Append a code point as UTF-8 to a Lua buffer. */
static void oauth_js_utf8(luaL_Buffer *lb, unsigned long cp) {
  if (cp < 0x80) {
    luaL_addchar(lb, (char)cp);
  } else if (cp < 0x800) {
    luaL_addchar(lb, (char)(0xC0 | (cp >> 6)));
    luaL_addchar(lb, (char)(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    luaL_addchar(lb, (char)(0xE0 | (cp >> 12)));
    luaL_addchar(lb, (char)(0x80 | ((cp >> 6) & 0x3F)));
    luaL_addchar(lb, (char)(0x80 | (cp & 0x3F)));
  } else {
    luaL_addchar(lb, (char)(0xF0 | (cp >> 18)));
    luaL_addchar(lb, (char)(0x80 | ((cp >> 12) & 0x3F)));
    luaL_addchar(lb, (char)(0x80 | ((cp >> 6) & 0x3F)));
    luaL_addchar(lb, (char)(0x80 | (cp & 0x3F)));
  }
}

/* Read a string starting at the opening quote. With `push`, the decoded
 * text is pushed (escapes resolved, lone surrogates become U+FFFD);
 * without, it is only validated. Returns 0 on malformed or overlong input,
 * leaving the stack as it was. */
static int oauth_js_string(lua_State *L, oauth_js *j, int push) {
  luaL_Buffer lb;
  size_t n = 0;
  if (j->p >= j->end || *j->p != '"') return 0;
  j->p++;
  if (push) luaL_buffinit(L, &lb);
  for (;;) {
    unsigned char c;
    unsigned long cp;
    if (j->p >= j->end || ++n > OAUTH_JSON_STR_MAX) goto bad;
    c = (unsigned char)*j->p++;
    if (c == '"') break;
    if (c < 0x20) goto bad;
    if (c != '\\') {
      if (push) luaL_addchar(&lb, (char)c);
      continue;
    }
    if (j->p >= j->end) goto bad;
    c = (unsigned char)*j->p++;
    switch (c) {
      case '"': case '\\': case '/': cp = c; break;
      case 'b': cp = '\b'; break;
      case 'f': cp = '\f'; break;
      case 'n': cp = '\n'; break;
      case 'r': cp = '\r'; break;
      case 't': cp = '\t'; break;
      case 'u': {
        long u = oauth_js_u4(j);
        if (u < 0) goto bad;
        cp = (unsigned long)u;
        if (cp >= 0xD800 && cp <= 0xDBFF) {
          /* A high surrogate counts only when a low one follows. */
          if (j->end - j->p >= 6 && j->p[0] == '\\' && j->p[1] == 'u') {
            oauth_js save = *j;
            long lo;
            j->p += 2;
            lo = oauth_js_u4(j);
            if (lo >= 0xDC00 && lo <= 0xDFFF) {
              cp = 0x10000 + ((cp - 0xD800) << 10) + ((unsigned long)lo - 0xDC00);
            } else {
              *j = save;
              cp = 0xFFFD;
            }
          } else {
            cp = 0xFFFD;
          }
        } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
          cp = 0xFFFD;
        }
        break;
      }
      default: goto bad;
    }
    if (push) oauth_js_utf8(&lb, cp);
  }
  if (push) luaL_pushresult(&lb);
  return 1;
bad:
  if (push) {
    /* Close the Lua buffer so the stack is balanced, then drop its result. */
    luaL_pushresult(&lb);
    lua_pop(L, 1);
  }
  return 0;
}

/* Read a number per the JSON grammar. With `push`, push it as Lua would
 * read it (an integer when it has no fraction or exponent and fits,
 * otherwise a float); numbers longer than 63 characters are refused there.
 * Returns 0 when malformed. */
static int oauth_js_number(lua_State *L, oauth_js *j, int push) {
  const char *s = j->p;
  char tmp[64];
  size_t n;
  if (j->p < j->end && *j->p == '-') j->p++;
  if (j->p >= j->end) return 0;
  if (*j->p == '0') {
    j->p++;
  } else if (*j->p >= '1' && *j->p <= '9') {
    while (j->p < j->end && *j->p >= '0' && *j->p <= '9') j->p++;
  } else {
    return 0;
  }
  if (j->p < j->end && *j->p == '.') {
    j->p++;
    if (j->p >= j->end || *j->p < '0' || *j->p > '9') return 0;
    while (j->p < j->end && *j->p >= '0' && *j->p <= '9') j->p++;
  }
  if (j->p < j->end && (*j->p == 'e' || *j->p == 'E')) {
    j->p++;
    if (j->p < j->end && (*j->p == '+' || *j->p == '-')) j->p++;
    if (j->p >= j->end || *j->p < '0' || *j->p > '9') return 0;
    while (j->p < j->end && *j->p >= '0' && *j->p <= '9') j->p++;
  }
  if (!push) return 1;
  n = (size_t)(j->p - s);
  if (n >= sizeof tmp) return 0;
  memcpy(tmp, s, n);
  tmp[n] = '\0';
#if LUA_VERSION_NUM >= 503
  if (lua_stringtonumber(L, tmp) == 0) return 0;
#else
  lua_pushnumber(L, (lua_Number)strtod(tmp, NULL));
#endif
  return 1;
}

/* Match a literal such as "true". */
static int oauth_js_lit(oauth_js *j, const char *lit) {
  size_t n = strlen(lit);
  if ((size_t)(j->end - j->p) < n || memcmp(j->p, lit, n) != 0) return 0;
  j->p += n;
  return 1;
}

/* Validate and skip any value; nesting is capped so a deep body cannot
 * exhaust the C stack. */
static int oauth_js_skip(lua_State *L, oauth_js *j, int depth) {
  oauth_js_ws(j);
  if (j->p >= j->end) return 0;
  switch (*j->p) {
    case '"': return oauth_js_string(L, j, 0);
    case 't': return oauth_js_lit(j, "true");
    case 'f': return oauth_js_lit(j, "false");
    case 'n': return oauth_js_lit(j, "null");
    case '{': case '[': {
      char close = *j->p == '{' ? '}' : ']';
      int obj = close == '}';
      if (depth >= OAUTH_JSON_DEPTH) return 0;
      j->p++;
      oauth_js_ws(j);
      if (j->p < j->end && *j->p == close) {
        j->p++;
        return 1;
      }
      for (;;) {
        if (obj) {
          oauth_js_ws(j);
          if (!oauth_js_string(L, j, 0)) return 0;
          oauth_js_ws(j);
          if (j->p >= j->end || *j->p++ != ':') return 0;
        }
        if (!oauth_js_skip(L, j, depth + 1)) return 0;
        oauth_js_ws(j);
        if (j->p >= j->end) return 0;
        if (*j->p == ',') {
          j->p++;
          continue;
        }
        if (*j->p++ != close) return 0;
        return 1;
      }
    }
    default: return oauth_js_number(L, j, 0);
  }
}

/* Decode `s` as a JSON object and push a table of its scalar members
 * (strings, numbers, booleans; null and nested values are left out).
 * Returns 0 and pushes nothing when the text is not one well-formed object. */
static int oauth_js_object(lua_State *L, const char *s, size_t n) {
  oauth_js j;
  int top = lua_gettop(L), t;
  j.p = s;
  j.end = s + n;
  oauth_js_ws(&j);
  if (j.p >= j.end || *j.p != '{') return 0;
  j.p++;
  lua_newtable(L);
  t = lua_gettop(L);
  oauth_js_ws(&j);
  if (j.p < j.end && *j.p == '}') {
    j.p++;
  } else {
    for (;;) {
      oauth_js_ws(&j);
      if (!oauth_js_string(L, &j, 1)) goto bad; /* key */
      oauth_js_ws(&j);
      if (j.p >= j.end || *j.p++ != ':') goto bad;
      oauth_js_ws(&j);
      if (j.p >= j.end) goto bad;
      if (*j.p == '"') {
        if (!oauth_js_string(L, &j, 1)) goto bad;
      } else if (*j.p == '-' || (*j.p >= '0' && *j.p <= '9')) {
        if (!oauth_js_number(L, &j, 1)) goto bad;
      } else if (oauth_js_lit(&j, "true")) {
        lua_pushboolean(L, 1);
      } else if (oauth_js_lit(&j, "false")) {
        lua_pushboolean(L, 0);
      } else {
        if (!oauth_js_skip(L, &j, 1)) goto bad;
        lua_pushnil(L); /* null or nested: not kept */
      }
      if (lua_isnil(L, -1)) lua_pop(L, 2);
      else lua_rawset(L, t);
      oauth_js_ws(&j);
      if (j.p >= j.end) goto bad;
      if (*j.p == ',') {
        j.p++;
        continue;
      }
      if (*j.p++ != '}') goto bad;
      break;
    }
  }
  oauth_js_ws(&j);
  if (j.p != j.end) goto bad;
  return 1;
bad:
  lua_settop(L, top);
  return 0;
}

/* ---------------------------------------------------------------------- */
/* Token response parsing                                                 */
/* ---------------------------------------------------------------------- */

/* From response.c: pushes an error table carrying the shared error
 * metatable (core.error_mt). Repeating the declaration is harmless after
 * the definition and makes a changed signature fail loudly here. */
static void pd_error_new(lua_State *L, const char *kind, int status, const char *message, const char *method,
                         const char *path);

/* A secret we must keep out of messages: a pointer into a string that is
 * anchored on the Lua stack for as long as the struct is used. */
typedef struct oauth_secret {
  const char *s;
  size_t n;
} oauth_secret;

#define OAUTH_MAX_SECRETS 8

/* Add t[field] to the list of secrets when it is a non-empty string. The
 * value is left on the stack (anchoring the pointer). */
static void oauth_secret_from(lua_State *L, int t, const char *field, oauth_secret *list, int *count) {
  if (t == 0) {
    lua_pushnil(L);
    return;
  }
  lua_getfield(L, t, field);
  if (lua_type(L, -1) == LUA_TSTRING && *count < OAUTH_MAX_SECRETS) {
    size_t n;
    const char *s = lua_tolstring(L, -1, &n);
    if (n > 0) {
      list[*count].s = s;
      list[*count].n = n;
      (*count)++;
    }
  }
}

/* Characters that make up bearer tokens, codes and base64 blobs. */
static int oauth_tokenish(unsigned char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
         c == '_' || c == '~' || c == '+' || c == '/' || c == '=' || c == ':';
}

/* Copy a server-supplied message into `out` (size OAUTH_MSG_MAX) in a form
 * that is safe to show and log: every known secret is replaced by
 * "[redacted]", so is any run of 32 or more token characters (no word of
 * prose is that long, but every token is), control characters become
 * spaces, and the result is cut at a UTF-8 boundary. Defence in depth:
 * Pipedrive's messages do not quote tokens today, but nothing promises it. */
static void oauth_scrub(const char *msg, size_t n, const oauth_secret *sec, int nsec, char *out) {
  static const char red[] = "[redacted]";
  size_t i = 0, k = 0, cap = OAUTH_MSG_MAX - 1;
  while (i < n && k < cap) {
    int s, hit = 0;
    size_t run = 0;
    for (s = 0; s < nsec; s++) {
      if (sec[s].n <= n - i && memcmp(msg + i, sec[s].s, sec[s].n) == 0) {
        hit = 1;
        run = sec[s].n;
        break;
      }
    }
    if (!hit && oauth_tokenish((unsigned char)msg[i])) {
      while (i + run < n && oauth_tokenish((unsigned char)msg[i + run])) run++;
      if (run >= 32) hit = 1;
    }
    if (hit) {
      if (cap - k < sizeof red - 1) break;
      memcpy(out + k, red, sizeof red - 1);
      k += sizeof red - 1;
      i += run;
      continue;
    }
    out[k++] = ((unsigned char)msg[i] < 0x20 || msg[i] == 0x7f) ? ' ' : msg[i];
    i++;
  }
  if (i < n) {
    /* Cut: back off to a UTF-8 lead byte so the text stays valid. */
    while (k > 0 && ((unsigned char)out[k - 1] & 0xC0) == 0x80) k--;
    if (k > 0 && ((unsigned char)out[k - 1] & 0xC0) == 0xC0) k--;
  }
  out[k] = '\0';
}

/* Return t[field] if it is a string (pointer anchored in the table t),
 * else NULL. Raw access: a decoded body has no metatable. */
static const char *oauth_get_str(lua_State *L, int t, const char *field, size_t *n) {
  const char *s = NULL;
  lua_pushstring(L, field);
  lua_rawget(L, t);
  if (lua_type(L, -1) == LUA_TSTRING) s = lua_tolstring(L, -1, n);
  lua_pop(L, 1); /* the table keeps the string alive */
  return s;
}

/* Push nil and an OAuth error (method POST, path /oauth/token) and return
 * 2, the Lua convention for a failed call. `code` is the server's OAuth
 * error code, kept as err.oauth_error when it looks like one. */
static int oauth_fail(lua_State *L, const char *kind, int status, const char *message, const char *code) {
  lua_pushnil(L);
  pd_error_new(L, kind, status, message, "POST", "/oauth/token");
  if (code) {
    size_t i, n = strlen(code);
    int ok = n > 0 && n <= 64;
    for (i = 0; ok && i < n; i++) ok = (code[i] >= 'a' && code[i] <= 'z') || code[i] == '_';
    if (ok) {
      lua_pushstring(L, code);
      lua_setfield(L, -2, "oauth_error");
    }
  }
  return 2;
}

/* Integer value of t[field] when it is a finite number, rounded down;
 * `ok` tells whether it was one. */
static lua_Integer oauth_get_int(lua_State *L, int t, const char *field, int *ok) {
  lua_Integer v = 0;
  *ok = 0;
  lua_pushstring(L, field);
  lua_rawget(L, t);
  if (lua_type(L, -1) == LUA_TNUMBER) {
#if LUA_VERSION_NUM >= 503
    if (lua_isinteger(L, -1)) {
      v = lua_tointeger(L, -1);
      *ok = 1;
    } else
#endif
    {
      lua_Number d = lua_tonumber(L, -1);
      if (d == d && d > -1e15 && d < 1e15) {
        v = (lua_Integer)d;
        if ((lua_Number)v > d) v--; /* round down, not toward zero */
        *ok = 1;
      }
    }
  }
  lua_pop(L, 1);
  return v;
}

/* Check a 2xx body and push the token table, or return the decode error.
 * `obj` is the decoded body, `old_rt` the stack index of the refresh token
 * in use (0 when none): a refresh answer without a new refresh token means
 * the old one stays valid, so it is carried over. */
static int oauth_build_token(lua_State *L, int obj, int status, lua_Integer now, int old_rt) {
  const char *at, *tt, *rt, *scope, *dom;
  size_t nat = 0, ntt = 0, nrt = 0, nscope = 0, ndom = 0;
  lua_Integer expires_in;
  int ok;
  at = oauth_get_str(L, obj, "access_token", &nat);
  if (!at || nat == 0 || nat > OAUTH_SECRET_MAX || !oauth_visible_ascii(at, nat))
    return oauth_fail(L, "decode", status, "token response has no usable access_token", NULL);
  tt = oauth_get_str(L, obj, "token_type", &ntt);
  if (!tt || ntt != 6 || !oauth_has_prefix_ci(tt, ntt, "bearer"))
    return oauth_fail(L, "decode", status, "token response has a token_type other than Bearer", NULL);
  expires_in = oauth_get_int(L, obj, "expires_in", &ok);
  if (!ok || expires_in <= 0 || expires_in > OAUTH_EXPIRES_MAX)
    return oauth_fail(L, "decode", status, "token response has no positive expires_in", NULL);
  lua_pushliteral(L, "refresh_token");
  lua_rawget(L, obj);
  if (!lua_isnil(L, -1)) {
    rt = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &nrt) : NULL;
    if (!rt || nrt == 0 || nrt > OAUTH_SECRET_MAX || !oauth_visible_ascii(rt, nrt))
      return oauth_fail(L, "decode", status, "token response has an unusable refresh_token", NULL);
  } else if (old_rt) {
    lua_pop(L, 1);
    lua_pushvalue(L, old_rt);
  }
  /* the refresh token (or nil) stays on the stack until it is stored */
  lua_pushliteral(L, "api_domain");
  lua_rawget(L, obj);
  dom = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &ndom) : NULL;
  if (!lua_isnil(L, -1) && (!dom || ndom > OAUTH_FIELD_MAX || !oauth_is_http_url(dom, ndom)))
    return oauth_fail(L, "decode", status, "token response has an api_domain that is not an http(s) URL", NULL);
  lua_pop(L, 1); /* obj keeps the string alive */
  scope = oauth_get_str(L, obj, "scope", &nscope);

  lua_createtable(L, 0, 8);
  lua_pushlstring(L, at, nat);
  lua_setfield(L, -2, "access_token");
  lua_pushvalue(L, -2);
  lua_setfield(L, -2, "refresh_token");
  lua_pushliteral(L, "Bearer");
  lua_setfield(L, -2, "token_type");
  if (scope) {
    lua_pushlstring(L, scope, nscope);
    lua_setfield(L, -2, "scope");
  }
  lua_pushinteger(L, expires_in);
  lua_setfield(L, -2, "expires_in");
  lua_pushinteger(L, now + expires_in);
  lua_setfield(L, -2, "expires_at");
  if (dom) {
    lua_pushlstring(L, dom, ndom);
    lua_setfield(L, -2, "api_domain");
  }
  return 1;
}

/* core.oauth_parse_token(res, now, ctx): read the answer of a token request.
 * Returns the token table, or nil and an error whose kind says what to do:
 *   reauth_required  the refresh token was refused: only a new login helps
 *   invalid_grant    the code was refused (expired after 5 minutes, reused)
 *   invalid_client   wrong client id or secret: a configuration problem
 *   oauth            any other refusal (4xx, or a 2xx saying success=false)
 *   server           5xx: transient, retry later (even if the body names a
 *                    grant error, a server fault must not force a re-login)
 *   http             a status outside 2xx/4xx/5xx
 *   decode           a 2xx whose body is not a usable token
 * Pipedrive answers errors both as {"success":false,"message":"Invalid grant:
 * ..."} and as {"error":"invalid_grant","error_description":"..."}; both are
 * recognised. The body is never copied into the error (a malformed 2xx may
 * well hold a token) and the message is scrubbed of secrets. */
static int oauth_parse_token(lua_State *L) {
  static const char fn[] = "oauth_parse_token";
  lua_Number dnow;
  lua_Integer now;
  int status, ctx = 0, obj = 0, old_rt = 0, nsec = 0, st;
  const char *body = NULL, *grant = NULL, *code = NULL, *desc = NULL, *msg = NULL;
  size_t nbody = 0, ngrant = 0, ncode = 0, ndesc = 0, nmsg = 0;
  oauth_secret sec[OAUTH_MAX_SECRETS];
  char text[OAUTH_MSG_MAX];
  int is_refresh, failed, grant_err, client_err;

  luaL_checktype(L, 1, LUA_TTABLE);
  dnow = luaL_checknumber(L, 2);
  luaL_argcheck(L, dnow == dnow && dnow > -1e15 && dnow < 1e15, 2, "now must be a finite time in seconds");
  now = (lua_Integer)dnow;
  if ((lua_Number)now > dnow) now--;
  if (!lua_isnoneornil(L, 3)) {
    luaL_checktype(L, 3, LUA_TTABLE);
    ctx = 3;
  }
  lua_settop(L, 3);
  luaL_checkstack(L, 40, fn);

  lua_getfield(L, 1, "status");
  if (lua_type(L, -1) != LUA_TNUMBER) return luaL_error(L, "%s: field 'status' must be a number", fn);
  {
    lua_Number s = lua_tonumber(L, -1);
    status = (s >= 0 && s < 1000) ? (int)s : 0;
  }
  lua_pop(L, 1);
  lua_getfield(L, 1, "body");
  if (lua_type(L, -1) == LUA_TSTRING) body = lua_tolstring(L, -1, &nbody);
  else if (!lua_isnil(L, -1)) return luaL_error(L, "%s: field 'body' must be a string", fn);

  if (ctx) {
    lua_getfield(L, ctx, "grant_type");
    if (lua_type(L, -1) == LUA_TSTRING) grant = lua_tolstring(L, -1, &ngrant);
    lua_getfield(L, ctx, "refresh_token");
    if (lua_type(L, -1) == LUA_TSTRING && lua_rawlen(L, -1) > 0) old_rt = lua_gettop(L);
    else if (!lua_isnil(L, -1)) return luaL_error(L, "%s: ctx field 'refresh_token' must be a string", fn);
  }
  is_refresh = grant && strcmp(grant, "refresh_token") == 0;

  if (body && nbody <= OAUTH_BODY_MAX && oauth_js_object(L, body, nbody)) obj = lua_gettop(L);

  st = status / 100;
  failed = 0;
  if (obj) {
    code = oauth_get_str(L, obj, "error", &ncode);
    desc = oauth_get_str(L, obj, "error_description", &ndesc);
    msg = oauth_get_str(L, obj, "message", &nmsg);
    lua_pushliteral(L, "success");
    lua_rawget(L, obj);
    failed = code != NULL || (lua_isboolean(L, -1) && !lua_toboolean(L, -1));
    lua_pop(L, 1);
  }
  if (st == 2 && obj && !failed) return oauth_build_token(L, obj, status, now, old_rt);
  if (st == 2 && !obj) return oauth_fail(L, "decode", status, "token response is not a JSON object", NULL);

  /* An error. Gather every secret we can see, then build the message. */
  oauth_secret_from(L, ctx, "refresh_token", sec, &nsec);
  oauth_secret_from(L, ctx, "code", sec, &nsec);
  oauth_secret_from(L, ctx, "client_secret", sec, &nsec);
  oauth_secret_from(L, ctx, "access_token", sec, &nsec);
  oauth_secret_from(L, obj, "access_token", sec, &nsec);
  oauth_secret_from(L, obj, "refresh_token", sec, &nsec);
  if (desc && ndesc > 0) oauth_scrub(desc, ndesc, sec, nsec, text);
  else if (msg && nmsg > 0) oauth_scrub(msg, nmsg, sec, nsec, text);
  else if (code && ncode > 0) oauth_scrub(code, ncode, sec, nsec, text);
  else snprintf(text, sizeof text, "token endpoint answered HTTP %d", status);

  grant_err = (code && strcmp(code, "invalid_grant") == 0) || (msg && oauth_has_prefix_ci(msg, nmsg, "Invalid grant")) ||
              (desc && oauth_has_prefix_ci(desc, ndesc, "Invalid grant"));
  client_err = (code && strcmp(code, "invalid_client") == 0) ||
               (msg && oauth_has_prefix_ci(msg, nmsg, "Invalid client")) ||
               (desc && oauth_has_prefix_ci(desc, ndesc, "Invalid client"));
  if (st == 5) return oauth_fail(L, "server", status, text, code);
  if (grant_err) return oauth_fail(L, is_refresh ? "reauth_required" : "invalid_grant", status, text, code);
  if (client_err) return oauth_fail(L, "invalid_client", status, text, code);
  if (st == 4 || st == 2) return oauth_fail(L, "oauth", status, text, code);
  return oauth_fail(L, "http", status, text, code);
}

/* core.oauth_needs_refresh(token, now, skew = 0): whether to refresh before
 * the next call. Refreshing `skew` seconds early keeps a request from
 * leaving with a token that expires in flight; a token whose expiry is
 * unknown is treated as expired, since using it blind risks a 401. */
static int oauth_needs_refresh(lua_State *L) {
  lua_Number now = luaL_checknumber(L, 2);
  lua_Number skew = luaL_optnumber(L, 3, 0);
  int needs = 1;
  if (lua_type(L, 1) == LUA_TTABLE) {
    lua_getfield(L, 1, "expires_at");
    if (lua_type(L, -1) == LUA_TNUMBER) needs = !(now + skew < lua_tonumber(L, -1));
  }
  lua_pushboolean(L, needs);
  return 1;
}

/* Register this file's functions in the module table on top of the stack. */
static void pd_oauth_open(lua_State *L) {
  static const luaL_Reg fns[] = {
      {"random_token", oauth_random_token},
      {"consttime_equal", oauth_consttime_equal},
      {"base64_encode", oauth_base64_encode},
      {"oauth_authorize_url", oauth_authorize_url},
      {"oauth_token_request", oauth_token_request},
      {"oauth_revoke_request", oauth_revoke_request},
      {"oauth_parse_token", oauth_parse_token},
      {"oauth_needs_refresh", oauth_needs_refresh},
      {NULL, NULL},
  };
  oauth_register(L, fns);
}
