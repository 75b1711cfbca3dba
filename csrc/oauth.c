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
 *   core.oauth_authorize_url{...}            -> URL string
 *   core.oauth_token_request{...}            -> request table (code or refresh grant)
 *   core.oauth_revoke_request{...}           -> request table
 *   core.oauth_parse_token(res, now, ctx)    -> token | nil, err
 *   core.oauth_needs_refresh(token, now, skew) -> boolean
 *
 * Secrets (client secret, codes, tokens) must never reach an error message:
 * argument errors name the field only, and server messages are scrubbed of
 * every secret we know plus anything that looks like a token before they are
 * shown. Memory: every buffer is a box (pd.h) marked secret, so a Lua
 * error raised at any point frees and wipes it. Uses secret.c (base64), url.c (percent-encoding), json.c (the decoder)
 * and response.c (error tables), through their headers.
 */
#include <stdio.h>
#include <string.h>

#include "pd.h"
#include "json.h"
#include "response.h"
#include "secret.h"
#include "url.h"

#define PD_OAUTH_DEFAULT_URL "https://oauth.pipedrive.com"
#define PD_OAUTH_FIELD_MAX 4096u          /* ids, URIs, states, scopes */
#define PD_OAUTH_SECRET_MAX 16384u        /* client secrets, codes, tokens */
#define PD_OAUTH_REQ_MAX (64u * 1024u)    /* any URL, form body or header we build */
#define PD_OAUTH_BODY_MAX (1024u * 1024u) /* token responses larger than this are not read */
#define PD_OAUTH_JSON_STR_MAX (64u * 1024u) /* a body holding a string this long is not read */
#define PD_OAUTH_JSON_DEPTH 64            /* nor one nested deeper than this */
#define PD_OAUTH_MSG_MAX 320              /* bytes of a server message kept in an error */
#define PD_OAUTH_EXPIRES_MAX 315360000    /* ten years: anything longer is not a lifetime */

/* ---------------------------------------------------------------------- */
/* Small shared helpers                                                   */
/* ---------------------------------------------------------------------- */

/* Append "name=<encoded value>", preceded by '&' unless first. Used for
 * both the authorize query string and the form bodies: url.c's encoder
 * keeps only RFC 3986 unreserved characters, so a space becomes %20 (which
 * every form decoder accepts) and no value can break out of its parameter. */
static void pd_oauth_param_add(pd_buf *b, int first, const char *name, const char *v, size_t n) {
  if (!first) pd_buf_addc(b, '&');
  pd_buf_adds(b, name);
  pd_buf_addc(b, '=');
  pd_url_append(b, v, n);
}

/* ASCII case-insensitive prefix test; server messages vary in case. */
static int pd_oauth_has_prefix_ci(const char *s, size_t n, const char *prefix) {
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
static int pd_oauth_visible_ascii(const char *s, size_t n) {
  size_t i;
  for (i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c < 0x21 || c > 0x7e) return 0;
  }
  return 1;
}

/* True when the string holds no control characters (it may hold spaces and
 * UTF-8): the test for free-text inputs such as redirect URIs and scopes. */
static int pd_oauth_no_controls(const char *s, size_t n) {
  size_t i;
  for (i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c < 0x20 || c == 0x7f) return 0;
  }
  return 1;
}

/* True for "http://host..." or "https://host..." made of visible ASCII:
 * the shape of the OAuth host and of the api_domain a token comes with. */
static int pd_oauth_is_http_url(const char *s, size_t n) {
  size_t p = pd_oauth_has_prefix_ci(s, n, "https://") ? 8 : pd_oauth_has_prefix_ci(s, n, "http://") ? 7 : 0;
  return p > 0 && n > p && s[p] != '/' && pd_oauth_visible_ascii(s, n);
}

/* ---------------------------------------------------------------------- */
/* Argument reading                                                       */
/* ---------------------------------------------------------------------- */

#define PD_OAUTH_OPTIONAL 0
#define PD_OAUTH_REQUIRED 1
#define PD_OAUTH_TEXT 0     /* no control characters */
#define PD_OAUTH_OPAQUE 2   /* visible ASCII only (ids, URLs, tokens) */
#define PD_OAUTH_NOCOLON 4  /* no ':' (a Basic auth user id cannot hold one) */

/* Read t[field] as a string and leave it on the stack, which keeps it alive
 * while C holds the pointer. Raises naming the function and the field but
 * never quoting the value: the value may be a secret. Returns NULL (after
 * pushing nil) for an absent optional field. */
static const char *pd_oauth_field(lua_State *L, int t, const char *fn, const char *field, int flags,
                               size_t max, size_t *len) {
  const char *s;
  int ty;
  lua_getfield(L, t, field);
  ty = lua_type(L, -1);
  *len = 0;
  if (ty == LUA_TNIL) {
    if (flags & PD_OAUTH_REQUIRED) luaL_error(L, "%s: field '%s' is required", fn, field);
    return NULL;
  }
  if (ty != LUA_TSTRING) {
    luaL_error(L, "%s: field '%s' must be a string (got %s)", fn, field, lua_typename(L, ty));
    return NULL;
  }
  s = lua_tolstring(L, -1, len);
  if (*len == 0) luaL_error(L, "%s: field '%s' must not be empty", fn, field);
  if (*len > max) luaL_error(L, "%s: field '%s' is too long (at most %d bytes)", fn, field, (int)max);
  if ((flags & PD_OAUTH_OPAQUE) ? !pd_oauth_visible_ascii(s, *len) : !pd_oauth_no_controls(s, *len))
    luaL_error(L, "%s: field '%s' contains characters that are not allowed", fn, field);
  if ((flags & PD_OAUTH_NOCOLON) && memchr(s, ':', *len)) luaL_error(L, "%s: field '%s' must not contain ':'", fn, field);
  return s;
}

/* Read t.oauth_url (default Pipedrive's OAuth host), check it is an http(s)
 * origin without query or fragment, and drop trailing slashes so that the
 * fixed paths can be appended. Leaves the value on the stack. */
static const char *pd_oauth_base(lua_State *L, int t, const char *fn, size_t *len) {
  const char *s = pd_oauth_field(L, t, fn, "oauth_url", PD_OAUTH_OPTIONAL | PD_OAUTH_OPAQUE, PD_OAUTH_FIELD_MAX, len);
  if (!s) {
    lua_pop(L, 1);
    lua_pushliteral(L, PD_OAUTH_DEFAULT_URL);
    return lua_tolstring(L, -1, len);
  }
  if (!pd_oauth_is_http_url(s, *len)) luaL_error(L, "%s: field 'oauth_url' must start with https:// or http://", fn);
  if (memchr(s, '?', *len) || memchr(s, '#', *len))
    luaL_error(L, "%s: field 'oauth_url' must not hold a query or fragment", fn);
  while (*len > 0 && s[*len - 1] == '/') (*len)--;
  return s;
}

/* ---------------------------------------------------------------------- */
/* Request builders                                                       */
/* ---------------------------------------------------------------------- */

/* Fails on an overgrown buffer. The buffer is a box's, so raising frees
 * (and wipes) it. Inputs are length-checked, so this only fires if the
 * limits above are changed inconsistently. */
static void pd_oauth_buf_check(lua_State *L, const pd_buf *b, const char *fn) {
  if (pd_buf_failed(b)) luaL_error(L, "%s: request too large or out of memory", fn);
}

/* Pushes a box's content as a string in place of the box (which must be on
 * the top of the stack) and frees it. */
static void pd_oauth_push_box(lua_State *L, pd_buf *b) {
  pd_box_push(L, b);
  lua_replace(L, -2);
}

/* core.oauth_authorize_url{ oauth_url, client_id, redirect_uri, state, scope }:
 * the URL to send the user's browser to. Takes no client secret at all, so
 * a secret can never end up in a URL, a browser history or a proxy log.
 * `state` is required: a flow without it is open to login CSRF. `scope`
 * may be a string or a list of strings (joined with spaces). */
static int pd_oauth_authorize_url(lua_State *L) {
  static const char fn[] = "oauth_authorize_url";
  const char *base, *id, *uri, *state, *scope = NULL;
  size_t nbase, nid, nuri, nstate, nscope = 0;
  pd_buf *b;
  luaL_checktype(L, 1, LUA_TTABLE);
  luaL_checkstack(L, 20, fn);
  base = pd_oauth_base(L, 1, fn, &nbase);
  id = pd_oauth_field(L, 1, fn, "client_id", PD_OAUTH_REQUIRED | PD_OAUTH_OPAQUE, PD_OAUTH_FIELD_MAX, &nid);
  uri = pd_oauth_field(L, 1, fn, "redirect_uri", PD_OAUTH_REQUIRED | PD_OAUTH_TEXT, PD_OAUTH_FIELD_MAX, &nuri);
  state = pd_oauth_field(L, 1, fn, "state", PD_OAUTH_REQUIRED | PD_OAUTH_TEXT, PD_OAUTH_FIELD_MAX, &nstate);
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
      if (k == 0 || !pd_oauth_visible_ascii(e, k))
        return luaL_error(L, "%s: field 'scope' entries must be non-empty words", fn);
      if (i > 1) luaL_addchar(&lb, ' ');
      luaL_addvalue(&lb);
    }
    luaL_pushresult(&lb);
    scope = lua_tolstring(L, -1, &nscope);
    if (nscope > PD_OAUTH_FIELD_MAX) return luaL_error(L, "%s: field 'scope' is too long", fn);
  } else {
    lua_pop(L, 1);
    scope = pd_oauth_field(L, 1, fn, "scope", PD_OAUTH_OPTIONAL | PD_OAUTH_TEXT, PD_OAUTH_FIELD_MAX, &nscope);
  }
  b = pd_box_new_secret(L, PD_OAUTH_REQ_MAX);
  pd_buf_add(b, base, nbase);
  pd_buf_adds(b, "/oauth/authorize?");
  pd_oauth_param_add(b, 1, "client_id", id, nid);
  pd_oauth_param_add(b, 0, "redirect_uri", uri, nuri);
  pd_oauth_param_add(b, 0, "state", state, nstate);
  if (scope) pd_oauth_param_add(b, 0, "scope", scope, nscope);
  pd_oauth_buf_check(L, b, fn);
  pd_oauth_push_box(L, b);
  return 1;
}

/* Push "Basic base64(id:secret)". The plain "id:secret" and the encoded
 * header both hold the secret, so both are wiped before they are freed;
 * only one buffer is alive when the push (which may raise) happens. */
static void pd_oauth_push_basic(lua_State *L, const char *fn, const char *id, size_t nid, const char *secret,
                                size_t nsecret) {
  pd_buf *cred = pd_box_new_secret(L, PD_OAUTH_REQ_MAX), *hdr;
  pd_buf_add(cred, id, nid);
  pd_buf_addc(cred, ':');
  pd_buf_add(cred, secret, nsecret);
  pd_oauth_buf_check(L, cred, fn);
  hdr = pd_box_new_secret(L, PD_OAUTH_REQ_MAX);
  pd_buf_adds(hdr, "Basic ");
  pd_secret_b64_add(hdr, (const unsigned char *)cred->data, cred->len, 0);
  pd_buf_free(cred);
  pd_oauth_buf_check(L, hdr, fn);
  pd_oauth_push_box(L, hdr);
  lua_remove(L, -2); /* cred's box */
}

/* Turn the three strings on top of the stack (url, body, authorization, in
 * that order) into the request table the transport expects. Only Lua
 * memory is involved here, so raising is harmless. */
static void pd_oauth_make_request(lua_State *L) {
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
static int pd_oauth_token_request(lua_State *L) {
  static const char fn[] = "oauth_token_request";
  const char *base, *id, *secret, *grant, *code = NULL, *uri = NULL, *rt = NULL;
  size_t nbase, nid, nsecret, ngrant, ncode = 0, nuri = 0, nrt = 0;
  int is_code;
  pd_buf *b;
  luaL_checktype(L, 1, LUA_TTABLE);
  luaL_checkstack(L, 24, fn);
  base = pd_oauth_base(L, 1, fn, &nbase);
  id = pd_oauth_field(L, 1, fn, "client_id", PD_OAUTH_REQUIRED | PD_OAUTH_OPAQUE | PD_OAUTH_NOCOLON, PD_OAUTH_FIELD_MAX, &nid);
  secret = pd_oauth_field(L, 1, fn, "client_secret", PD_OAUTH_REQUIRED | PD_OAUTH_TEXT, PD_OAUTH_SECRET_MAX, &nsecret);
  grant = pd_oauth_field(L, 1, fn, "grant_type", PD_OAUTH_REQUIRED | PD_OAUTH_OPAQUE, PD_OAUTH_FIELD_MAX, &ngrant);
  if (strcmp(grant, "authorization_code") == 0) {
    is_code = 1;
  } else if (strcmp(grant, "refresh_token") == 0) {
    is_code = 0;
  } else {
    return luaL_error(L, "%s: field 'grant_type' must be 'authorization_code' or 'refresh_token'", fn);
  }
  if (is_code) {
    code = pd_oauth_field(L, 1, fn, "code", PD_OAUTH_REQUIRED | PD_OAUTH_TEXT, PD_OAUTH_SECRET_MAX, &ncode);
    uri = pd_oauth_field(L, 1, fn, "redirect_uri", PD_OAUTH_REQUIRED | PD_OAUTH_TEXT, PD_OAUTH_FIELD_MAX, &nuri);
  } else {
    rt = pd_oauth_field(L, 1, fn, "refresh_token", PD_OAUTH_REQUIRED | PD_OAUTH_OPAQUE, PD_OAUTH_SECRET_MAX, &nrt);
  }

  b = pd_box_new_secret(L, PD_OAUTH_REQ_MAX);
  pd_buf_add(b, base, nbase);
  pd_buf_adds(b, "/oauth/token");
  pd_oauth_buf_check(L, b, fn);
  pd_oauth_push_box(L, b);

  b = pd_box_new_secret(L, PD_OAUTH_REQ_MAX);
  if (is_code) {
    pd_oauth_param_add(b, 1, "grant_type", "authorization_code", 18);
    pd_oauth_param_add(b, 0, "code", code, ncode);
    pd_oauth_param_add(b, 0, "redirect_uri", uri, nuri);
  } else {
    pd_oauth_param_add(b, 1, "grant_type", "refresh_token", 13);
    pd_oauth_param_add(b, 0, "refresh_token", rt, nrt);
  }
  pd_oauth_buf_check(L, b, fn);
  pd_oauth_push_box(L, b);

  pd_oauth_push_basic(L, fn, id, nid, secret, nsecret);
  pd_oauth_make_request(L);
  return 1;
}

/* core.oauth_revoke_request{ oauth_url, client_id, client_secret, token,
 * token_type_hint }: the POST to /oauth/revoke that ends a grant (revoking
 * the refresh token also kills its access tokens). The hint is optional
 * but, when given, must be one of the two values RFC 7009 defines. */
static int pd_oauth_revoke_request(lua_State *L) {
  static const char fn[] = "oauth_revoke_request";
  const char *base, *id, *secret, *token, *hint;
  size_t nbase, nid, nsecret, ntoken, nhint;
  pd_buf *b;
  luaL_checktype(L, 1, LUA_TTABLE);
  luaL_checkstack(L, 24, fn);
  base = pd_oauth_base(L, 1, fn, &nbase);
  id = pd_oauth_field(L, 1, fn, "client_id", PD_OAUTH_REQUIRED | PD_OAUTH_OPAQUE | PD_OAUTH_NOCOLON, PD_OAUTH_FIELD_MAX, &nid);
  secret = pd_oauth_field(L, 1, fn, "client_secret", PD_OAUTH_REQUIRED | PD_OAUTH_TEXT, PD_OAUTH_SECRET_MAX, &nsecret);
  token = pd_oauth_field(L, 1, fn, "token", PD_OAUTH_REQUIRED | PD_OAUTH_OPAQUE, PD_OAUTH_SECRET_MAX, &ntoken);
  hint = pd_oauth_field(L, 1, fn, "token_type_hint", PD_OAUTH_OPTIONAL | PD_OAUTH_OPAQUE, PD_OAUTH_FIELD_MAX, &nhint);
  if (hint && strcmp(hint, "refresh_token") != 0 && strcmp(hint, "access_token") != 0)
    return luaL_error(L, "%s: field 'token_type_hint' must be 'refresh_token' or 'access_token'", fn);

  b = pd_box_new_secret(L, PD_OAUTH_REQ_MAX);
  pd_buf_add(b, base, nbase);
  pd_buf_adds(b, "/oauth/revoke");
  pd_oauth_buf_check(L, b, fn);
  pd_oauth_push_box(L, b);

  b = pd_box_new_secret(L, PD_OAUTH_REQ_MAX);
  pd_oauth_param_add(b, 1, "token", token, ntoken);
  if (hint) pd_oauth_param_add(b, 0, "token_type_hint", hint, nhint);
  pd_oauth_buf_check(L, b, fn);
  pd_oauth_push_box(L, b);

  pd_oauth_push_basic(L, fn, id, nid, secret, nsecret);
  pd_oauth_make_request(L);
  return 1;
}

/* ---------------------------------------------------------------------- */
/* Token response parsing                                                 */
/* ---------------------------------------------------------------------- */

/* A secret we must keep out of messages: a pointer into a string that is
 * anchored on the Lua stack for as long as the struct is used. */
typedef struct pd_oauth_secret {
  const char *s;
  size_t n;
} pd_oauth_secret;

#define PD_OAUTH_MAX_SECRETS 8

/* Add t[field] to the list of secrets when it is a non-empty string. The
 * value is left on the stack (anchoring the pointer). */
static void pd_oauth_secret_from(lua_State *L, int t, const char *field, pd_oauth_secret *list, int *count) {
  if (t == 0) {
    lua_pushnil(L);
    return;
  }
  lua_getfield(L, t, field);
  if (lua_type(L, -1) == LUA_TSTRING && *count < PD_OAUTH_MAX_SECRETS) {
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
static int pd_oauth_tokenish(unsigned char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
         c == '_' || c == '~' || c == '+' || c == '/' || c == '=' || c == ':';
}

/* Copy a server-supplied message into `out` (size PD_OAUTH_MSG_MAX) in a form
 * that is safe to show and log: every known secret is replaced by
 * "[redacted]", so is any run of 32 or more token characters (no word of
 * prose is that long, but every token is), control characters become
 * spaces, and the result is cut at a UTF-8 boundary. Defence in depth:
 * Pipedrive's messages do not quote tokens today, but nothing promises it. */
static void pd_oauth_scrub(const char *msg, size_t n, const pd_oauth_secret *sec, int nsec, char *out) {
  static const char red[] = "[redacted]";
  size_t i = 0, k = 0, cap = PD_OAUTH_MSG_MAX - 1;
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
    if (!hit && pd_oauth_tokenish((unsigned char)msg[i])) {
      while (i + run < n && pd_oauth_tokenish((unsigned char)msg[i + run])) run++;
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

/* Whether every string in the decoded value at idx (keys included) is
 * shorter than PD_OAUTH_JSON_STR_MAX bytes and no table nests deeper than
 * PD_OAUTH_JSON_DEPTH levels (`depth` is idx's own level, 1 for the body).
 * These are the token reader's own bounds, tighter than json.c's: a token
 * answer is a flat object, so a body this large or deep is not one, and
 * refusing it keeps huge scopes and messages out of tokens and errors. The
 * walk is cheap (the body is at most 1 MiB) and never raises: a stack that
 * cannot grow counts as out of bounds. */
static int pd_oauth_json_bounded(lua_State *L, int idx, int depth) {
  if (depth > PD_OAUTH_JSON_DEPTH || !lua_checkstack(L, 3)) return 0;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    int ty = lua_type(L, -1), ok;
    ok = lua_type(L, -2) != LUA_TSTRING || lua_rawlen(L, -2) < PD_OAUTH_JSON_STR_MAX;
    if (ok && ty == LUA_TSTRING) ok = lua_rawlen(L, -1) < PD_OAUTH_JSON_STR_MAX;
    else if (ok && ty == LUA_TTABLE) ok = pd_oauth_json_bounded(L, lua_gettop(L), depth + 1);
    lua_pop(L, ok ? 1 : 2); /* keep the key for lua_next unless stopping */
    if (!ok) return 0;
  }
  return 1;
}

/* Decode a token endpoint answer with json.c's decoder and push it, or push
 * nothing and return 0 when it is not a JSON object within the bounds
 * above. Lenient mode (see pd_json_decode_mode): a stray byte or a lone
 * surrogate in a server's message must not hide the error code beside it.
 * The decoder's message is dropped: it describes a body that may well hold
 * a token, and errors never show the body. */
static int pd_oauth_decode_body(lua_State *L, const char *s, size_t n) {
  char err[96];
  int top = lua_gettop(L);
  if (!pd_json_decode_mode(L, s, n, PD_JSON_LENIENT, err, sizeof err)) return 0;
  if (pd_is_object(L, top + 1) && pd_oauth_json_bounded(L, top + 1, 1)) return 1;
  lua_settop(L, top);
  return 0;
}

/* Push t[field] of a decoded body when it is a string, number or boolean,
 * else nil, and return its type: a JSON null (core.null), object or array
 * member counts as absent, so "refresh_token": null keeps the refresh token
 * in use and a nested "error" object is not taken for an error code. */
static int pd_oauth_get_member(lua_State *L, int t, const char *field) {
  int ty;
  lua_getfield(L, t, field);
  ty = lua_type(L, -1);
  if (ty == LUA_TSTRING || ty == LUA_TNUMBER || ty == LUA_TBOOLEAN) return ty;
  lua_pop(L, 1);
  lua_pushnil(L);
  return LUA_TNIL;
}

/* Return t[field] if it is a string (pointer anchored in the table t),
 * else NULL. */
static const char *pd_oauth_get_str(lua_State *L, int t, const char *field, size_t *n) {
  const char *s = NULL;
  if (pd_oauth_get_member(L, t, field) == LUA_TSTRING) s = lua_tolstring(L, -1, n);
  lua_pop(L, 1); /* the table keeps the string alive */
  return s;
}

/* Push nil and an OAuth error (method POST, path /oauth/token) and return
 * 2, the Lua convention for a failed call. `code` is the server's OAuth
 * error code, kept as err.oauth_error when it looks like one. */
static int pd_oauth_fail(lua_State *L, const char *kind, int status, const char *message, const char *code) {
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
static lua_Integer pd_oauth_get_int(lua_State *L, int t, const char *field, int *ok) {
  lua_Integer v = 0;
  *ok = 0;
  if (pd_oauth_get_member(L, t, field) == LUA_TNUMBER) {
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
static int pd_oauth_build_token(lua_State *L, int obj, int status, lua_Integer now, int old_rt) {
  const char *at, *tt, *rt, *scope, *dom;
  size_t nat = 0, ntt = 0, nrt = 0, nscope = 0, ndom = 0;
  lua_Integer expires_in;
  int ok;
  at = pd_oauth_get_str(L, obj, "access_token", &nat);
  if (!at || nat == 0 || nat > PD_OAUTH_SECRET_MAX || !pd_oauth_visible_ascii(at, nat))
    return pd_oauth_fail(L, "decode", status, "token response has no usable access_token", NULL);
  tt = pd_oauth_get_str(L, obj, "token_type", &ntt);
  if (!tt || ntt != 6 || !pd_oauth_has_prefix_ci(tt, ntt, "bearer"))
    return pd_oauth_fail(L, "decode", status, "token response has a token_type other than Bearer", NULL);
  expires_in = pd_oauth_get_int(L, obj, "expires_in", &ok);
  if (!ok || expires_in <= 0 || expires_in > PD_OAUTH_EXPIRES_MAX)
    return pd_oauth_fail(L, "decode", status, "token response has no positive expires_in", NULL);
  if (pd_oauth_get_member(L, obj, "refresh_token") != LUA_TNIL) {
    rt = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &nrt) : NULL;
    if (!rt || nrt == 0 || nrt > PD_OAUTH_SECRET_MAX || !pd_oauth_visible_ascii(rt, nrt))
      return pd_oauth_fail(L, "decode", status, "token response has an unusable refresh_token", NULL);
  } else if (old_rt) {
    lua_pop(L, 1);
    lua_pushvalue(L, old_rt);
  }
  /* the refresh token (or nil) stays on the stack until it is stored */
  pd_oauth_get_member(L, obj, "api_domain");
  dom = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &ndom) : NULL;
  if (!lua_isnil(L, -1) && (!dom || ndom > PD_OAUTH_FIELD_MAX || !pd_oauth_is_http_url(dom, ndom)))
    return pd_oauth_fail(L, "decode", status, "token response has an api_domain that is not an http(s) URL", NULL);
  lua_pop(L, 1); /* obj keeps the string alive */
  scope = pd_oauth_get_str(L, obj, "scope", &nscope);

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
static int pd_oauth_parse_token(lua_State *L) {
  static const char fn[] = "oauth_parse_token";
  lua_Number dnow;
  lua_Integer now;
  int status, ctx = 0, obj = 0, old_rt = 0, nsec = 0, st;
  const char *body = NULL, *grant = NULL, *code = NULL, *desc = NULL, *msg = NULL;
  size_t nbody = 0, ngrant = 0, ncode = 0, ndesc = 0, nmsg = 0;
  pd_oauth_secret sec[PD_OAUTH_MAX_SECRETS];
  char text[PD_OAUTH_MSG_MAX];
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

  if (body && nbody <= PD_OAUTH_BODY_MAX && pd_oauth_decode_body(L, body, nbody)) obj = lua_gettop(L);

  st = status / 100;
  failed = 0;
  if (obj) {
    code = pd_oauth_get_str(L, obj, "error", &ncode);
    desc = pd_oauth_get_str(L, obj, "error_description", &ndesc);
    msg = pd_oauth_get_str(L, obj, "message", &nmsg);
    pd_oauth_get_member(L, obj, "success");
    failed = code != NULL || (lua_isboolean(L, -1) && !lua_toboolean(L, -1));
    lua_pop(L, 1);
  }
  if (st == 2 && obj && !failed) return pd_oauth_build_token(L, obj, status, now, old_rt);
  if (st == 2 && !obj) return pd_oauth_fail(L, "decode", status, "token response is not a JSON object", NULL);

  /* An error. Gather every secret we can see, then build the message. */
  pd_oauth_secret_from(L, ctx, "refresh_token", sec, &nsec);
  pd_oauth_secret_from(L, ctx, "code", sec, &nsec);
  pd_oauth_secret_from(L, ctx, "client_secret", sec, &nsec);
  pd_oauth_secret_from(L, ctx, "access_token", sec, &nsec);
  pd_oauth_secret_from(L, obj, "access_token", sec, &nsec);
  pd_oauth_secret_from(L, obj, "refresh_token", sec, &nsec);
  if (desc && ndesc > 0) pd_oauth_scrub(desc, ndesc, sec, nsec, text);
  else if (msg && nmsg > 0) pd_oauth_scrub(msg, nmsg, sec, nsec, text);
  else if (code && ncode > 0) pd_oauth_scrub(code, ncode, sec, nsec, text);
  else snprintf(text, sizeof text, "token endpoint answered HTTP %d", status);

  grant_err = (code && strcmp(code, "invalid_grant") == 0) || (msg && pd_oauth_has_prefix_ci(msg, nmsg, "Invalid grant")) ||
              (desc && pd_oauth_has_prefix_ci(desc, ndesc, "Invalid grant"));
  client_err = (code && strcmp(code, "invalid_client") == 0) ||
               (msg && pd_oauth_has_prefix_ci(msg, nmsg, "Invalid client")) ||
               (desc && pd_oauth_has_prefix_ci(desc, ndesc, "Invalid client"));
  if (st == 5) return pd_oauth_fail(L, "server", status, text, code);
  if (grant_err) return pd_oauth_fail(L, is_refresh ? "reauth_required" : "invalid_grant", status, text, code);
  if (client_err) return pd_oauth_fail(L, "invalid_client", status, text, code);
  if (st == 4 || st == 2) return pd_oauth_fail(L, "oauth", status, text, code);
  return pd_oauth_fail(L, "http", status, text, code);
}

/* core.oauth_needs_refresh(token, now, skew = 0): whether to refresh before
 * the next call. Refreshing `skew` seconds early keeps a request from
 * leaving with a token that expires in flight; a token whose expiry is
 * unknown is treated as expired, since using it blind risks a 401. */
static int pd_oauth_needs_refresh(lua_State *L) {
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
      {"oauth_authorize_url", pd_oauth_authorize_url},
      {"oauth_token_request", pd_oauth_token_request},
      {"oauth_revoke_request", pd_oauth_revoke_request},
      {"oauth_parse_token", pd_oauth_parse_token},
      {"oauth_needs_refresh", pd_oauth_needs_refresh},
      {NULL, NULL},
  };
  luaL_setfuncs(L, fns, 0);
}
