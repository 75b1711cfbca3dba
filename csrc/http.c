/* The libcurl transport: core.http_new(opts) -> h, h:perform(req), h:close().
 * multi.c drives the same handles (http.h).
 *
 * One easy handle per client, reused, so libcurl keeps the connection alive
 * between calls. No Lua code runs while libcurl is on the stack: everything a
 * request needs is copied into C (or into libcurl) before curl_easy_perform,
 * the answer is collected into bounded C buffers, and Lua values are built
 * only after libcurl has returned. The buffers and the header list live in the
 * handle, not on the C stack, so a Lua error raised while pushing results (out
 * of memory) leaks nothing: the next perform or close frees them.
 *
 * Secrets: the API token travels in a request header. It is never copied into
 * an error, and error messages from libcurl are dropped when they quote a
 * header value or the query string. */
#include <ctype.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <curl/curl.h>

#include "pd.h"
#include "response.h"
#include "multipart.h"
#include "http.h"

/* Answer buffers up to this size are reused by the next request. */
#define PD_HTTP_KEEP_BUF (256u * 1024u)
#define PD_HTTP_DEFAULT_MAX_RESPONSE ((lua_Integer)64 * 1024 * 1024)

static int pd_curl_init_state = 0; /* 0 not tried, 1 ok, -1 failed */

/* Frees what one request left behind; called before and after each perform
 * and on close, so it must tolerate being called twice. */
static void pd_http_clear_request(pd_http *h) {
  curl_slist_free_all(h->req_headers);
  h->req_headers = NULL;
  if (h->mime) {
    /* detached from the easy handle first: it must not keep a freed pointer */
    if (h->easy) curl_easy_setopt(h->easy, CURLOPT_MIMEPOST, (curl_mime *)NULL);
    curl_mime_free(h->mime);
    h->mime = NULL;
  }
  h->file_failed = 0;
  free(h->url);
  h->url = NULL;
  /* Small buffers are kept for the next request (no regrowth per call);
   * one that held a large answer is given back. */
  if (h->body.cap > PD_HTTP_KEEP_BUF || h->body.failed) {
    pd_buf_free(&h->body);
    pd_buf_init(&h->body, 0); /* bounded by the write callback, against max_response */
  }
  h->body.len = 0;
  if (h->headers.cap > PD_HTTP_KEEP_BUF || h->headers.failed) {
    pd_buf_free(&h->headers);
    pd_buf_init(&h->headers, PD_HTTP_HEADERS_MAX);
  }
  h->headers.len = 0;
  h->too_large = h->headers_too_large = 0;
  h->nheaders = 0;
}

/* The one release path for close, __gc and __close. Idempotent. */
static void pd_http_release(pd_http *h) {
  pd_http_clear_request(h);
  pd_buf_free(&h->body);
  pd_buf_free(&h->headers);
  if (h->easy) {
    curl_easy_cleanup(h->easy);
    h->easy = NULL;
  }
  free(h->user_agent);
  h->user_agent = NULL;
  free(h->ca_file);
  h->ca_file = NULL;
}

/* A malloc'd copy of a Lua string, or NULL when out of memory. */
static char *pd_http_strdup(const char *s, size_t n) {
  char *p = (char *)malloc(n + 1);
  if (p) {
    memcpy(p, s, n);
    p[n] = '\0';
  }
  return p;
}

/* ----------------------------------------------------------- libcurl side */

/* Write callback: keeps the body, refusing to grow past max_response. Returning
 * less than given makes libcurl abort with CURLE_WRITE_ERROR. */
static size_t pd_http_write_cb(char *data, size_t size, size_t nmemb, void *ud) {
  pd_http *h = (pd_http *)ud;
  size_t n = size * nmemb;
  if (n > h->max_response - h->body.len) {
    h->too_large = 1;
    return 0;
  }
  pd_buf_add(&h->body, data, n);
  return pd_buf_failed(&h->body) ? 0 : n;
}

/* Header callback, one line at a time. A status line starts a new header set
 * (interim 100 responses, redirects), so only the final response's headers
 * remain. Names are lower-cased, values trimmed; folded lines are ignored. */
static size_t pd_http_header_cb(char *data, size_t size, size_t nmemb, void *ud) {
  pd_http *h = (pd_http *)ud;
  size_t n = size * nmemb, i, colon, vs, ve;
  if (n >= 5 && memcmp(data, "HTTP/", 5) == 0) {
    h->headers.len = 0;
    h->nheaders = 0;
    return n;
  }
  for (colon = 0; colon < n && data[colon] != ':'; colon++) {}
  if (colon == 0 || colon == n || data[0] == ' ' || data[0] == '\t') return n;
  for (vs = colon + 1; vs < n && (data[vs] == ' ' || data[vs] == '\t'); vs++) {}
  for (ve = n; ve > vs && isspace((unsigned char)data[ve - 1]); ve--) {}
  for (i = 0; i < colon; i++) pd_buf_addc(&h->headers, (char)tolower((unsigned char)data[i]));
  pd_buf_addc(&h->headers, '\0');
  pd_buf_add(&h->headers, data + vs, ve - vs);
  pd_buf_addc(&h->headers, '\0');
  h->nheaders++;
  if (pd_buf_failed(&h->headers)) {
    h->headers_too_large = 1;
    return 0;
  }
  return n;
}

/* Sets the options that stay the same for every request of a handle once
 * (they survive between transfers on an easy handle), then on each request
 * those that change: URL, header list, method and body. The connection cache
 * (kept by the handle, not by options) survives. Returns the first libcurl
 * failure, CURLE_OK otherwise. */
static CURLcode pd_http_setopts(pd_http *h, const char *method, const char *body, size_t body_len, int has_body) {
  CURL *e = h->easy;
  CURLcode rc = CURLE_OK;
#define PD_SET(opt, val) \
  do { \
    if (rc == CURLE_OK) rc = curl_easy_setopt(e, opt, val); \
  } while (0)
  if (!h->static_set) {
    PD_SET(CURLOPT_NOSIGNAL, 1L);
#if CURL_AT_LEAST_VERSION(7, 85, 0)
    PD_SET(CURLOPT_PROTOCOLS_STR, "http,https");
    PD_SET(CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
#else
    PD_SET(CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
    PD_SET(CURLOPT_REDIR_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
    PD_SET(CURLOPT_USERAGENT, h->user_agent);
    PD_SET(CURLOPT_TIMEOUT_MS, h->timeout_ms);
    PD_SET(CURLOPT_CONNECTTIMEOUT_MS, h->connect_timeout_ms);
    PD_SET(CURLOPT_TCP_KEEPALIVE, 1L);
    PD_SET(CURLOPT_SSL_VERIFYPEER, h->verify ? 1L : 0L);
    PD_SET(CURLOPT_SSL_VERIFYHOST, h->verify ? 2L : 0L);
    if (h->ca_file) PD_SET(CURLOPT_CAINFO, h->ca_file);
    PD_SET(CURLOPT_FOLLOWLOCATION, h->max_redirects > 0 ? 1L : 0L);
    PD_SET(CURLOPT_MAXREDIRS, h->max_redirects);
    PD_SET(CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)h->max_response);
    PD_SET(CURLOPT_WRITEFUNCTION, pd_http_write_cb);
    PD_SET(CURLOPT_WRITEDATA, (void *)h);
    PD_SET(CURLOPT_HEADERFUNCTION, pd_http_header_cb);
    PD_SET(CURLOPT_HEADERDATA, (void *)h);
    PD_SET(CURLOPT_ERRORBUFFER, h->errbuf);
    PD_SET(CURLOPT_FAILONERROR, 0L);
    if (rc != CURLE_OK) return rc;
    h->static_set = 1;
  }
  PD_SET(CURLOPT_URL, h->url);
  PD_SET(CURLOPT_HTTPHEADER, h->req_headers);
  /* Compression when the request asks for it (lists and searches, whose pages
   * are large): whatever libcurl can decode; max_response counts decoded
   * bytes. A single record is small, and sending and checking the encoding
   * would cost more than it saves. Set only when it changes. */
  if (h->compress != h->compress_set) {
    PD_SET(CURLOPT_ACCEPT_ENCODING, h->compress ? "" : (const char *)NULL);
    if (rc == CURLE_OK) h->compress_set = h->compress;
  }

  /* Method: back to a plain GET first, then whatever this request needs. */
  PD_SET(CURLOPT_HTTPGET, 1L);
  PD_SET(CURLOPT_NOBODY, 0L);
  PD_SET(CURLOPT_CUSTOMREQUEST, (char *)NULL);
  if (strcmp(method, "HEAD") == 0) {
    PD_SET(CURLOPT_NOBODY, 1L);
  } else if (has_body || h->mime || strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0 ||
             strcmp(method, "PATCH") == 0) {
    /* Body-carrying methods always send one (an empty one counts), so that a
     * server sees Content-Length: 0 rather than a missing length. A multipart
     * request's body is its mime handle: libcurl writes the boundary and the
     * content type, and reads file parts from disk while sending. */
    if (h->mime) {
      PD_SET(CURLOPT_MIMEPOST, h->mime);
    } else {
      PD_SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
      PD_SET(CURLOPT_COPYPOSTFIELDS, has_body ? body : "");
    }
    if (strcmp(method, "POST") != 0) PD_SET(CURLOPT_CUSTOMREQUEST, method);
  } else if (strcmp(method, "GET") != 0) {
    PD_SET(CURLOPT_CUSTOMREQUEST, method);
  }
  /* libcurl silently sends a request again when a reused connection closes
   * before any answer; for POST and PATCH that can create a record twice. So
   * those always go on a fresh connection, which libcurl never resends on. */
  PD_SET(CURLOPT_FRESH_CONNECT, (strcmp(method, "POST") == 0 || strcmp(method, "PATCH") == 0) ? 1L : 0L);
#undef PD_SET
  return rc;
}

/* ------------------------------------------------------------- errors */

/* The URL's path for errors: no scheme, host, credentials, query or fragment. */
static void pd_http_push_path(lua_State *L, const char *url) {
  const char *p = strstr(url, "://"), *e;
  p = p ? p + 3 : url;
  p += strcspn(p, "/?#");
  e = p + strcspn(p, "?#");
  if (e == p) lua_pushliteral(L, "/");
  else lua_pushlstring(L, p, (size_t)(e - p));
}

/* True when `msg` quotes something secret-ish we sent: a header value or the
 * query string (or one of its values). Short values are skipped, they would
 * match by chance and cannot be a credential anyway. */
static int pd_http_msg_leaks(const pd_http *h, const char *msg) {
  const struct curl_slist *s;
  const char *q;
  for (s = h->req_headers; s; s = s->next) {
    const char *v = strchr(s->data, ':');
    if (!v) continue;
    v++;
    while (*v == ' ') v++;
    if (strlen(v) >= 4 && strstr(msg, v)) return 1;
  }
  q = h->url ? strchr(h->url, '?') : NULL;
  if (q) {
    char part[256];
    const char *p = q + 1;
    if (strchr(msg, '?')) return 1;
    while (*p && *p != '#') {
      size_t n = strcspn(p, "&#");
      const char *eq = memchr(p, '=', n);
      const char *v = eq ? eq + 1 : p;
      size_t vn = (size_t)(p + n - v);
      if (vn >= 4) {
        if (vn >= sizeof part) return 1; /* too long to check cheaply: assume the worst */
        memcpy(part, v, vn);
        part[vn] = '\0';
        if (strstr(msg, part)) return 1;
      }
      p += n;
      if (*p == '&') p++;
    }
  }
  return 0;
}

/* Pushes the error for a failed transfer: kind "timeout" or "network", a one
 * line message, method, path, and stage = "connect" when nothing of the
 * request was sent (safe to retry whatever the method) or "transfer". */
static void pd_http_push_error(lua_State *L, pd_http *h, CURLcode rc, const char *method) {
  char msg[320];
  const char *kind = h->file_failed ? "file" : rc == CURLE_OPERATION_TIMEDOUT ? "timeout" : "network";
  const char *stage = "transfer";
  long sent = 0;
  size_t i;

  if (h->too_large || (rc == CURLE_FILESIZE_EXCEEDED && !h->file_failed)) {
    snprintf(msg, sizeof msg, "response larger than %lu bytes", (unsigned long)h->max_response);
  } else if (h->headers_too_large) {
    snprintf(msg, sizeof msg, "response headers larger than %u bytes", (unsigned)PD_HTTP_HEADERS_MAX);
  } else if (h->file_failed) {
    snprintf(msg, sizeof msg, "%s", h->errbuf); /* the file's base name and why, from multipart.c */
  } else if (h->errbuf[0] && !pd_http_msg_leaks(h, h->errbuf)) {
    snprintf(msg, sizeof msg, "%s", h->errbuf);
  } else {
    snprintf(msg, sizeof msg, "%s", curl_easy_strerror(rc));
  }
  for (i = 0; msg[i]; i++)
    if ((unsigned char)msg[i] < 0x20 || msg[i] == 0x7f) msg[i] = ' ';
  while (i > 0 && msg[i - 1] == ' ') msg[--i] = '\0';

  if (h->file_failed) rc = CURLE_READ_ERROR; /* nothing was sent */
  switch (rc) {
  case CURLE_READ_ERROR:
    if (!h->file_failed) break;
    stage = "connect";
    break;
  case CURLE_COULDNT_RESOLVE_PROXY:
  case CURLE_COULDNT_RESOLVE_HOST:
  case CURLE_COULDNT_CONNECT:
  case CURLE_SSL_CONNECT_ERROR:
  case CURLE_PEER_FAILED_VERIFICATION:
  case CURLE_SSL_CACERT_BADFILE:
  case CURLE_SSL_CERTPROBLEM:
  case CURLE_SSL_CIPHER:
  case CURLE_SSL_ENGINE_NOTFOUND:
  case CURLE_SSL_ENGINE_SETFAILED:
  case CURLE_SSL_ISSUER_ERROR:
  case CURLE_SSL_CRL_BADFILE:
  case CURLE_UNSUPPORTED_PROTOCOL:
  case CURLE_URL_MALFORMAT:
    stage = "connect";
    break;
  default:
    /* e.g. a connect timeout: nothing sent means nothing to repeat */
    if (curl_easy_getinfo(h->easy, CURLINFO_REQUEST_SIZE, &sent) == CURLE_OK && sent == 0) stage = "connect";
    break;
  }

  pd_http_push_path(L, h->url ? h->url : "");
  pd_error_new(L, kind, 0, msg, method, lua_tostring(L, -1));
  lua_remove(L, -2);
  lua_pushstring(L, stage);
  lua_setfield(L, -2, "stage");
}

/* ------------------------------------------------------------- Lua API */

/* Returns the handle at index 1, raising if it was closed (as liolib does). */
static pd_http *pd_http_check(lua_State *L) {
  pd_http *h = (pd_http *)luaL_checkudata(L, 1, PD_HTTP_MT);
  if (!h->easy) luaL_error(L, "attempt to use a closed pipedrive.http handle");
  return h;
}

/* Reads an optional number option >= 0 (seconds or counts); raises naming it. */
static lua_Number pd_http_opt_num(lua_State *L, int t, const char *name, lua_Number def) {
  lua_Number v;
  lua_getfield(L, t, name);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    return def;
  }
  v = lua_tonumber(L, -1);
  if (lua_type(L, -1) != LUA_TNUMBER || !(v >= 0)) /* also refuses NaN */
    luaL_error(L, "http_new: '%s' must be a non-negative number", name);
  lua_pop(L, 1);
  return v;
}

/* Reads an optional string option into a malloc'd copy (NULL when absent);
 * refuses control characters, which would end up inside a header line. */
static const char *pd_http_opt_str(lua_State *L, int t, const char *name, size_t *len) {
  const char *s;
  size_t i;
  lua_getfield(L, t, name);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    return NULL;
  }
  if (lua_type(L, -1) != LUA_TSTRING) luaL_error(L, "http_new: '%s' must be a string", name);
  s = lua_tolstring(L, -1, len);
  for (i = 0; i < *len; i++)
    if ((unsigned char)s[i] < 0x20) luaL_error(L, "http_new: '%s' must not contain control characters", name);
  lua_pop(L, 1); /* still referenced by the options table */
  return s;
}

/* Seconds (possibly fractional) to libcurl milliseconds; 0 stays "no limit"
 * and a positive value never rounds down to it. */
static long pd_http_ms(lua_Number s) {
  lua_Number ms = s * 1000;
  if (s == 0) return 0;
  if (ms < 1) return 1;
  if (ms > (lua_Number)LONG_MAX / 2) return LONG_MAX / 2;
  return (long)ms;
}

/* core.http_new([opts]) -> handle. Options are checked (misuse raises); the
 * handle is created closed and then acquires its easy handle. */
static int pd_http_new(lua_State *L) {
  pd_http *h;
  lua_Number timeout, connect_timeout, max_response, max_redirects;
  const char *ua, *ca;
  size_t ua_len = 0, ca_len = 0;
  int verify = 1;

  if (lua_isnoneornil(L, 1)) {
    lua_settop(L, 0);
    lua_newtable(L);
  }
  luaL_checktype(L, 1, LUA_TTABLE);
  timeout = pd_http_opt_num(L, 1, "timeout", 30);
  connect_timeout = pd_http_opt_num(L, 1, "connect_timeout", 10);
  max_response = pd_http_opt_num(L, 1, "max_response", (lua_Number)PD_HTTP_DEFAULT_MAX_RESPONSE);
  max_redirects = pd_http_opt_num(L, 1, "max_redirects", 0);
  if (max_response < 1 || max_response > (lua_Number)((size_t)-1 / 2))
    return luaL_error(L, "http_new: 'max_response' must be at least 1 byte");
  if (max_redirects > 100) return luaL_error(L, "http_new: 'max_redirects' must be at most 100");
  ua = pd_http_opt_str(L, 1, "user_agent", &ua_len);
  ca = pd_http_opt_str(L, 1, "ca_file", &ca_len);
  lua_getfield(L, 1, "verify");
  if (!lua_isnil(L, -1)) {
    if (!lua_isboolean(L, -1)) return luaL_error(L, "http_new: 'verify' must be a boolean");
    verify = lua_toboolean(L, -1);
  }
  lua_pop(L, 1);
  if (pd_curl_init_state != 1) return luaL_error(L, "http_new: libcurl could not be initialised");

  h = (pd_http *)pd_newuserdata(L, sizeof *h);
  memset(h, 0, sizeof *h);
  pd_buf_init(&h->body, 0);
  pd_buf_init(&h->headers, PD_HTTP_HEADERS_MAX);
  luaL_setmetatable(L, PD_HTTP_MT);

  h->timeout_ms = pd_http_ms(timeout);
  h->connect_timeout_ms = pd_http_ms(connect_timeout);
  h->max_response = (size_t)max_response;
  h->max_redirects = (long)max_redirects;
  h->verify = verify;
  h->user_agent = ua ? pd_http_strdup(ua, ua_len) : pd_http_strdup("pipedrive-lua/0.1", 17);
  h->ca_file = ca ? pd_http_strdup(ca, ca_len) : NULL;
  if (!h->user_agent || (ca && !h->ca_file)) return luaL_error(L, "http_new: out of memory");
  h->easy = curl_easy_init();
  if (!h->easy) return luaL_error(L, "http_new: curl_easy_init failed");
  return 1;
}

/* Appends one line, as libcurl reads it, to the handle's header list. */
static void pd_http_add_line(lua_State *L, pd_http *h, const char *line) {
  struct curl_slist *next = line ? curl_slist_append(h->req_headers, line) : NULL;
  if (!next) luaL_error(L, "perform: out of memory");
  h->req_headers = next;
}

/* Appends "Name: value"; an empty value needs libcurl's "Name;" form, since
 * "Name:" would instead remove the header. */
static void pd_http_add_header(lua_State *L, pd_http *h, const char *name, size_t nlen, const char *value,
                               size_t vlen) {
  struct curl_slist *next;
  pd_buf line;
  pd_buf_init(&line, 0);
  pd_buf_add(&line, name, nlen);
  if (vlen == 0) {
    pd_buf_addc(&line, ';');
  } else {
    pd_buf_add(&line, ": ", 2);
    pd_buf_add(&line, value, vlen);
  }
  next = pd_buf_failed(&line) ? NULL : curl_slist_append(h->req_headers, line.data);
  pd_buf_free(&line); /* before raising: curl_slist_append made its own copy */
  if (!next) luaL_error(L, "perform: out of memory");
  h->req_headers = next;
}

/* Checks a header: no CR, LF or NUL anywhere (they would inject lines), and
 * the name must be a plain token. Misuse, so it raises before sending; the
 * message names the header but never quotes its value. */
static void pd_http_check_header(lua_State *L, const char *name, size_t nn, const char *value, size_t vn) {
  size_t i;
  if (nn == 0) luaL_error(L, "perform: empty header name");
  for (i = 0; i < nn; i++) {
    unsigned char c = (unsigned char)name[i];
    if (c <= ' ' || c == ':' || c >= 127) luaL_error(L, "perform: invalid header name");
  }
  for (i = 0; i < vn; i++) {
    unsigned char c = (unsigned char)value[i];
    if (c == '\r' || c == '\n' || c == '\0') luaL_error(L, "perform: invalid value for header '%s'", name);
  }
}

/* Pushes { status, headers, body } from the handle's buffers. */
static void pd_http_push_response(lua_State *L, pd_http *h) {
  long status = 0;
  const char *p, *end;
  curl_easy_getinfo(h->easy, CURLINFO_RESPONSE_CODE, &status);
  lua_createtable(L, 0, 3);
  lua_pushinteger(L, (lua_Integer)status);
  lua_setfield(L, -2, "status");
  lua_createtable(L, 0, h->nheaders);
  p = h->headers.data;
  end = p ? p + h->headers.len : p;
  while (p && p < end) {
    const char *name = p, *value = p + strlen(p) + 1;
    p = value + strlen(value) + 1;
    lua_pushstring(L, value);
    lua_setfield(L, -2, name); /* a repeated header: the last one wins */
  }
  lua_setfield(L, -2, "headers");
  lua_pushlstring(L, h->body.data ? h->body.data : "", h->body.len);
  lua_setfield(L, -2, "body");
}

/* Reads the request table at `t` ({ method, url, headers, body }) into the
 * handle: URL and header list copied into C, every libcurl option set (the
 * body is copied by libcurl). Misuse raises before anything is sent; the
 * stack is left as it was. Shared by h:perform and the multi driver. Returns
 * the first libcurl failure of setting options, CURLE_OK otherwise. */
static CURLcode pd_http_load(lua_State *L, pd_http *h, int t) {
  const char *method, *url, *body = NULL;
  size_t url_len, body_len = 0, mlen;
  int has_body = 0, top = lua_gettop(L);
  CURLcode rc;

  luaL_checktype(L, t, LUA_TTABLE);
  lua_getfield(L, t, "method"); /* top+1 */
  method = lua_tolstring(L, top + 1, &mlen);
  if (lua_type(L, top + 1) != LUA_TSTRING ||
      (strcmp(method, "GET") && strcmp(method, "POST") && strcmp(method, "PUT") && strcmp(method, "PATCH") &&
       strcmp(method, "DELETE") && strcmp(method, "HEAD")))
    return (CURLcode)luaL_error(L, "perform: method must be GET, POST, PUT, PATCH, DELETE or HEAD");
  lua_getfield(L, t, "url"); /* top+2 */
  if (lua_type(L, top + 2) != LUA_TSTRING) return (CURLcode)luaL_error(L, "perform: url must be a string");
  url = lua_tolstring(L, top + 2, &url_len);
  if (strlen(url) != url_len) return (CURLcode)luaL_error(L, "perform: url must not contain NUL");
  lua_getfield(L, t, "body"); /* top+3 */
  if (!lua_isnil(L, top + 3)) {
    if (lua_type(L, top + 3) != LUA_TSTRING) return (CURLcode)luaL_error(L, "perform: body must be a string or nil");
    body = lua_tolstring(L, top + 3, &body_len);
    has_body = 1;
  }
  lua_getfield(L, t, "headers"); /* top+4 */
  if (!lua_isnil(L, top + 4) && !lua_istable(L, top + 4))
    return (CURLcode)luaL_error(L, "perform: headers must be a table");
  lua_getfield(L, t, "compress"); /* top+5 */
  h->compress = lua_toboolean(L, top + 5);
  lua_getfield(L, t, "multipart"); /* top+6 */
  if (!lua_isnil(L, top + 6) && has_body)
    return (CURLcode)luaL_error(L, "perform: give body or multipart, not both");

  pd_http_clear_request(h);
  memcpy(h->method, method, mlen + 1); /* one of the six names above */
  h->url = pd_http_strdup(url, url_len);
  if (!h->url) return (CURLcode)luaL_error(L, "perform: out of memory");
  h->errbuf[0] = '\0';
  if (!lua_isnil(L, top + 6)) {
    int r = pd_mp_mime(L, h->easy, &h->mime, top + 6, h->errbuf, sizeof h->errbuf);
    if (r != 0) {
      h->file_failed = r == -1;
      lua_settop(L, top);
      return r == -1 ? CURLE_READ_ERROR : CURLE_OUT_OF_MEMORY;
    }
  }
  if (lua_istable(L, top + 4)) {
    int has_expect = 0, has_type = 0;
    lua_pushnil(L);
    while (lua_next(L, top + 4)) {
      const char *k, *v;
      size_t kn, vn;
      if (lua_type(L, -2) != LUA_TSTRING || (lua_type(L, -1) != LUA_TSTRING && lua_type(L, -1) != LUA_TNUMBER))
        return (CURLcode)luaL_error(L, "perform: headers must map names to string values");
      k = lua_tolstring(L, -2, &kn);
      v = lua_tolstring(L, -1, &vn);
      pd_http_check_header(L, k, kn, v, vn);
      pd_http_add_header(L, h, k, kn, v, vn);
      if (strcasecmp(k, "expect") == 0) has_expect = 1;
      if (strcasecmp(k, "content-type") == 0) has_type = 1;
      lua_pop(L, 1);
    }
    /* libcurl's own defaults we do not want on a request with a body:
     * "Expect: 100-continue" costs a round trip on larger bodies, and a form
     * content type would mislabel JSON. (Without a body libcurl adds neither.) */
    if (has_body || strcmp(method, "GET") != 0) {
      if (!has_expect) pd_http_add_line(L, h, "Expect:");
      if (!has_type && !h->mime) pd_http_add_line(L, h, "Content-Type:");
    }
  } else if (has_body || strcmp(method, "GET") != 0) {
    pd_http_add_line(L, h, "Expect:");
    if (!h->mime) pd_http_add_line(L, h, "Content-Type:");
  }
  rc = pd_http_setopts(h, method, body, body_len, has_body);
  lua_settop(L, top);
  return rc;
}

/* Pushes the outcome of a finished transfer, { status, headers, body } or
 * nil, err, and frees the request's buffers. Returns the number of values. */
static int pd_http_finish(lua_State *L, pd_http *h, CURLcode rc) {
  if (rc != CURLE_OK) {
    lua_pushnil(L);
    pd_http_push_error(L, h, rc, h->method);
    pd_http_clear_request(h);
    return 2;
  }
  pd_http_push_response(L, h);
  pd_http_clear_request(h);
  return 1;
}

/* h:perform{ method, url, headers = {name = value}, body = string|nil }
 *   -> { status, headers, body } | nil, err
 * Bad arguments raise; transport failures return nil, err (kind "timeout" or
 * "network", with stage). An HTTP error status is a response, not a failure. */
static int pd_http_perform(lua_State *L) {
  pd_http *h = pd_http_check(L);
  CURLcode rc;
  luaL_checktype(L, 2, LUA_TTABLE);
  lua_settop(L, 2);
  rc = pd_http_load(L, h, 2);
  /* From here to the end of curl_easy_perform nothing may raise. */
  if (rc == CURLE_OK) rc = curl_easy_perform(h->easy);
  return pd_http_finish(L, h, rc);
}

/* The class's release (h:close(), __gc, __close): the easy handle and its
 * connection, the buffers and the copied options. */
static void pd_http_class_release(lua_State *L, void *self) {
  (void)L;
  pd_http_release((pd_http *)self);
}

/* Open while it has its easy handle; tostring shows only that state, never a
 * URL, header or option value (they may hold secrets). */
static int pd_http_is_open(const void *self) {
  return ((const pd_http *)self)->easy != NULL;
}

static const luaL_Reg pd_http_methods[] = {
  {"perform", pd_http_perform}, {NULL, NULL},
};

static const pd_class pd_http_class = { PD_HTTP_MT, pd_http_methods, pd_http_class_release, pd_http_is_open, NULL };

/* Adds http_new to the module table on the top of the stack, creates the
 * handle metatable and runs libcurl's global init once per process. It is
 * never undone (curl_global_cleanup is unsafe while other code may use curl). */
static void pd_http_open(lua_State *L) {
  if (pd_curl_init_state == 0) pd_curl_init_state = curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK ? 1 : -1;
  pd_class_register(L, &pd_http_class);
  lua_pushcfunction(L, pd_http_new);
  lua_setfield(L, -2, "http_new");
}
