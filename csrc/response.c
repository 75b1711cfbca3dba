/* The error object and parse_response: an HTTP answer {status, headers, body}
 * becomes either data, info or nil, err (docs/ARCHITECTURE.md).
 *
 * Every failure the client reports, whatever its source (HTTP status, a body
 * that is not JSON, the transport), is a table with core.error_mt, so callers
 * handle one shape and tostring(err) always gives one printable line. That line
 * is built only from kind, status, method, path and message: headers and
 * response bodies never appear in it (they may hold tokens or whole HTML
 * pages), and a query string is cut off the path in case one slipped in. */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "pd.h"
#include "json.h"
#include "date.h"
#include "response.h"

static char pd_error_mt_key;

/* Bytes of a non-JSON error body kept in err.body_text, for debugging. */
#define PD_BODY_TEXT_MAX 512
/* Longest message tostring(err) shows; the field itself is kept whole. */
#define PD_ERR_LINE_MESSAGE_MAX 500

/* Pushes the error metatable kept in the registry: every error table shares it,
 * so each prints as one line without secrets. */
static void pd_push_error_mt(lua_State *L) {
  lua_pushlightuserdata(L, (void *)&pd_error_mt_key);
  lua_rawget(L, LUA_REGISTRYINDEX);
}

/* Appends s, at most max bytes (cut on a UTF-8 boundary, marked "..."), with
 * each run of control characters turned into one space: a message from a
 * server may contain newlines, and the contract is one line. */
static void pd_err_line_add(pd_buf *b, const char *s, size_t n, size_t max) {
  size_t i, cut = n;
  if (n > max) {
    cut = max;
    while (cut > 0 && ((unsigned char)s[cut] & 0xC0) == 0x80) cut--;
  }
  for (i = 0; i < cut; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c < 0x20 || c == 0x7F) {
      /* "\r\n" becomes one space, not two */
      if (i > 0 && ((unsigned char)s[i - 1] < 0x20 || s[i - 1] == 0x7F)) continue;
      c = ' ';
    }
    pd_buf_addc(b, (char)c);
  }
  if (cut < n) pd_buf_add(b, "...", 3);
}

/* Raw field access: the error table is ours, and tostring must not run user
 * code or fail while reporting a failure. Returns the string or NULL. */
static const char *pd_err_field(lua_State *L, int t, const char *name, size_t *n) {
  lua_pushstring(L, name);
  lua_rawget(L, t);
  if (lua_type(L, -1) == LUA_TSTRING) return lua_tolstring(L, -1, n);
  return NULL;
}

/* __tostring: "pipedrive: <kind> (HTTP <status>) <METHOD> <path>: <message>",
 * each part left out when absent. */
static int pd_error_tostring(lua_State *L) {
  pd_buf *b;
  const char *s;
  size_t n;
  if (lua_type(L, 1) != LUA_TTABLE) {
    lua_pushliteral(L, "pipedrive: error");
    return 1;
  }
  lua_settop(L, 1);
  pd_checkstack(L, 8, "pipedrive.error");
  b = pd_box_new(L, 2048);
  pd_buf_add(b, "pipedrive: ", 11);
  s = pd_err_field(L, 1, "kind", &n);
  if (s && n) pd_err_line_add(b, s, n, 40);
  else pd_buf_add(b, "error", 5);
  lua_pop(L, 1);
  lua_pushliteral(L, "status");
  lua_rawget(L, 1);
  if (lua_type(L, -1) == LUA_TNUMBER) {
    double st = (double)lua_tonumber(L, -1);
    if (st >= 0 && st < 1000) pd_buf_addf(b, " (HTTP %d)", (int)st);
  }
  lua_pop(L, 1);
  s = pd_err_field(L, 1, "method", &n);
  if (s && n) {
    pd_buf_addc(b, ' ');
    pd_err_line_add(b, s, n, 16);
  }
  lua_pop(L, 1);
  s = pd_err_field(L, 1, "path", &n);
  if (s && n) {
    pd_buf_addc(b, ' ');
    pd_err_line_add(b, s, strcspn(s, "?#"), 300);
  }
  lua_pop(L, 1);
  s = pd_err_field(L, 1, "message", &n);
  if (s && n) {
    pd_buf_add(b, ": ", 2);
    pd_err_line_add(b, s, n, PD_ERR_LINE_MESSAGE_MAX);
  }
  lua_pop(L, 1);
  pd_box_push(L, b);
  return 1;
}

/* The one constructor of error objects on the C side (http.c uses it too):
 * status 0 and NULL strings mean "absent". The path loses any query string,
 * which could carry a term the user searched for or a token. */
static void pd_error_new(lua_State *L, const char *kind, int status, const char *message, const char *method,
                         const char *path) {
  pd_checkstack(L, 4, "pipedrive.error");
  lua_createtable(L, 0, 8);
  if (kind) {
    lua_pushstring(L, kind);
    lua_setfield(L, -2, "kind");
  }
  if (status) {
    lua_pushinteger(L, status);
    lua_setfield(L, -2, "status");
  }
  if (message) {
    lua_pushstring(L, message);
    lua_setfield(L, -2, "message");
  }
  if (method) {
    lua_pushstring(L, method);
    lua_setfield(L, -2, "method");
  }
  if (path) {
    lua_pushlstring(L, path, strcspn(path, "?#"));
    lua_setfield(L, -2, "path");
  }
  pd_push_error_mt(L);
  lua_setmetatable(L, -2);
}

/* The status classes of docs/ARCHITECTURE.md. */
static const char *pd_status_kind(long st) {
  switch (st) {
    case 401: return "unauthorized";
    case 403: return "forbidden";
    case 404: case 410: return "not_found";
    case 400: case 422: return "validation";
    case 402: return "payment_required";
    case 405: case 415: return "unsupported";
    case 429: return "rate_limited";
    default: return (st >= 500 && st <= 599) ? "server" : "http";
  }
}

/* Reason phrases for the fallback message, so a body that says nothing (an
 * HTML page, an empty 502) still gives a readable error. */
static const char *pd_status_reason(long st) {
  switch (st) {
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 402: return "Payment Required";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 413: return "Payload Too Large";
    case 415: return "Unsupported Media Type";
    case 422: return "Unprocessable Entity";
    case 429: return "Too Many Requests";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return NULL;
  }
}

/* Pushes the number a header holds, or nil. Headers are read with
 * lua_getfield so a transport may give a case-insensitive table. The text is
 * parsed with the JSON number grammar: locale-free, integers stay integers. */
static int pd_header_number(lua_State *L, int headers, const char *name) {
  lua_getfield(L, headers, name);
  if (lua_type(L, -1) == LUA_TNUMBER) return 1;
  if (lua_type(L, -1) == LUA_TSTRING) {
    char err[160];
    size_t n;
    const char *s;
    s = lua_tolstring(L, -1, &n);
    while (n && (*s == ' ' || *s == '\t')) s++, n--;
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t')) n--;
    if (n && n < 40 && pd_json_decode_buf(L, s, n, err, sizeof err)) {
      if (lua_type(L, -1) == LUA_TNUMBER) {
        lua_remove(L, -2);
        return 1;
      }
      lua_pop(L, 1);
    }
  }
  lua_pop(L, 1);
  lua_pushnil(L);
  return 0;
}

/* Pushes retry_after in seconds or nil: Retry-After (delta seconds or a date),
 * else on 429 Pipedrive's x-ratelimit-reset (seconds left in the window). */
static void pd_push_retry_after(lua_State *L, int headers, long status) {
  if (pd_header_number(L, headers, "retry-after")) return;
  lua_pop(L, 1);
  lua_getfield(L, headers, "retry-after");
  if (lua_type(L, -1) == LUA_TSTRING) {
    double when;
    if (pd_http_date(lua_tostring(L, -1), &when)) {
      double delta = when - (double)time(NULL);
      lua_pop(L, 1);
      lua_pushinteger(L, delta > 0 ? (lua_Integer)delta : 0);
      return;
    }
  }
  lua_pop(L, 1);
  if (status == 429) {
    pd_header_number(L, headers, "x-ratelimit-reset");
    return;
  }
  lua_pushnil(L);
}

/* Whether the value at idx decoded from a JSON array (it carries array_mt):
 * Pipedrive answers [] and {} in places where only one is documented. */
static int pd_is_array(lua_State *L, int idx) {
  int r;
  if (lua_type(L, idx) != LUA_TTABLE || !lua_getmetatable(L, idx)) return 0;
  pd_push_array_mt(L);
  r = lua_rawequal(L, -1, -2);
  lua_pop(L, 2);
  return r;
}

/* Whether the value at idx is a table that did not come from a JSON array. */
static int pd_is_object(lua_State *L, int idx) {
  return lua_type(L, idx) == LUA_TTABLE && !pd_is_array(L, idx);
}

/* Pushes the text of one entry of "errors": a string, or a table's
 * "message"/first string. Returns 0 (nothing pushed) when there is none. */
static int pd_push_error_text(lua_State *L, int idx) {
  idx = lua_gettop(L) + idx + 1;
  if (lua_type(L, idx) == LUA_TSTRING) {
    lua_pushvalue(L, idx);
    return 1;
  }
  if (lua_type(L, idx) != LUA_TTABLE) return 0;
  lua_getfield(L, idx, "message");
  if (lua_type(L, -1) == LUA_TSTRING) return 1;
  lua_pop(L, 1);
  lua_rawgeti(L, idx, 1);
  if (lua_type(L, -1) == LUA_TSTRING) return 1;
  lua_pop(L, 1);
  return 0;
}

/* Pushes the message Pipedrive put in an error body, or nothing (returns 0):
 * "error", else "message", else the first entry of "errors". Webhook errors
 * are {field: [messages]}: the bytewise smallest field is taken, so the same
 * body always gives the same message, shown as "field: message". */
static int pd_push_body_message(lua_State *L, int body) {
  static const char *const fields[] = { "error", "message" };
  int i, top = lua_gettop(L), errs, best;
  if (!pd_is_object(L, body)) return 0;
  for (i = 0; i < 2; i++) {
    lua_getfield(L, body, fields[i]);
    if (lua_type(L, -1) == LUA_TSTRING && lua_rawlen(L, -1) > 0) return 1;
    lua_pop(L, 1);
  }
  lua_getfield(L, body, "errors");
  errs = top + 1;
  if (lua_type(L, errs) == LUA_TSTRING && lua_rawlen(L, errs) > 0) return 1;
  if (lua_type(L, errs) == LUA_TTABLE) {
    lua_rawgeti(L, errs, 1);
    if (pd_push_error_text(L, -1)) {
      lua_replace(L, errs);
      lua_settop(L, errs);
      return 1;
    }
    lua_settop(L, errs);
    lua_pushnil(L);
    best = errs + 1;
    lua_pushnil(L);
    while (lua_next(L, errs)) {
      lua_pop(L, 1);
      if (lua_type(L, -1) != LUA_TSTRING) continue;
      if (!lua_isnil(L, best)) {
        size_t a, c;
        const char *x = lua_tolstring(L, -1, &a), *y = lua_tolstring(L, best, &c);
        int cmp = memcmp(x, y, a < c ? a : c);
        if (cmp > 0 || (cmp == 0 && a >= c)) continue;
      }
      lua_pushvalue(L, -1);
      lua_replace(L, best);
    }
    if (!lua_isnil(L, best)) {
      lua_pushvalue(L, best);
      lua_rawget(L, errs);
      if (pd_push_error_text(L, -1)) {
        lua_pushfstring(L, "%s: %s", lua_tostring(L, best), lua_tostring(L, -1));
        lua_replace(L, errs);
        lua_settop(L, errs);
        return 1;
      }
    }
  }
  lua_settop(L, top);
  return 0;
}

/* What parse_response works on, as absolute stack slots. */
typedef struct pd_resp {
  long status;
  int headers;   /* the headers table (given, or a new empty one) */
  int body;      /* the body string */
  int value;     /* the decoded body, or 0 */
  const char *method, *path;
} pd_resp;

/* Adds rate_limit = {limit, remaining, reset, daily_left} to the table on top,
 * with only the headers that were present. */
static void pd_resp_rate_limit(lua_State *L, const pd_resp *r) {
  static const char *const names[][2] = { { "x-ratelimit-limit", "limit" },
                                          { "x-ratelimit-remaining", "remaining" },
                                          { "x-ratelimit-reset", "reset" },
                                          { "x-daily-requests-left", "daily_left" } };
  int i;
  lua_createtable(L, 0, 4);
  for (i = 0; i < 4; i++) {
    if (pd_header_number(L, r->headers, names[i][0])) lua_setfield(L, -2, names[i][1]);
    else lua_pop(L, 1);
  }
  lua_setfield(L, -2, "rate_limit");
}

/* Builds nil, err for a failed call and returns 2 (the number of results). */
static int pd_resp_fail(lua_State *L, const pd_resp *r, const char *kind, const char *message, int keep_text) {
  int top = lua_gettop(L), err;
  const char *msg = message;
  char fallback[64];
  if (!msg) {
    int pushed = r->value ? pd_push_body_message(L, r->value) : 0;
    if (pushed == 1) {
      msg = lua_tostring(L, -1);
    } else {
      const char *reason = pd_status_reason(r->status);
      lua_settop(L, top);
      snprintf(fallback, sizeof fallback, "HTTP %ld%s%s", r->status, reason ? " " : "", reason ? reason : "");
      msg = fallback;
    }
  }
  pd_error_new(L, kind, (int)r->status, msg, r->method, r->path);
  err = lua_gettop(L);
  if (r->value) {
    lua_pushvalue(L, r->value);
    lua_setfield(L, err, "body");
    if (pd_is_object(L, r->value)) {
      lua_getfield(L, r->value, "error_info");
      if (lua_type(L, -1) == LUA_TSTRING) lua_setfield(L, err, "error_info");
      else lua_pop(L, 1);
      lua_getfield(L, r->value, "code");
      if (lua_type(L, -1) != LUA_TSTRING && lua_type(L, -1) != LUA_TNUMBER) {
        lua_pop(L, 1);
        lua_getfield(L, r->value, "errorCode");
      }
      if (lua_type(L, -1) == LUA_TSTRING || lua_type(L, -1) == LUA_TNUMBER) lua_setfield(L, err, "code");
      else lua_pop(L, 1);
    }
  } else if (keep_text) {
    size_t n;
    const char *s = lua_tolstring(L, r->body, &n);
    if (n) {
      lua_pushlstring(L, s, n > PD_BODY_TEXT_MAX ? PD_BODY_TEXT_MAX : n);
      lua_setfield(L, err, "body_text");
    }
  }
  if (!(r->status >= 200 && r->status <= 299)) {
    pd_push_retry_after(L, r->headers, r->status);
    lua_setfield(L, err, "retry_after");
  }
  lua_settop(L, err);
  pd_resp_rate_limit(L, r);
  lua_pushnil(L);
  lua_pushvalue(L, err);
  return 2;
}

/* Pushes t[name] when it is a table (JSON null and other values count as
 * absent), or nil; returns whether a table was pushed. */
static int pd_get_table(lua_State *L, int t, const char *name) {
  lua_getfield(L, t, name);
  if (lua_type(L, -1) == LUA_TTABLE) return 1;
  lua_pop(L, 1);
  lua_pushnil(L);
  return 0;
}

/* Success: pushes data, info. Paging state is read from where each API
 * version keeps it, so the Lua side only ever looks at info.more,
 * info.next_cursor and info.next_start. */
static int pd_resp_success(lua_State *L, const pd_resp *r, const char *paging, int search, int list) {
  int body = r->value, data, info, ad;
  lua_getfield(L, body, "data");
  data = lua_gettop(L);
  if (search) {
    if (pd_is_object(L, data)) {
      lua_getfield(L, data, "items");
      lua_replace(L, data);
    }
    if (lua_type(L, data) != LUA_TTABLE) {
      lua_newtable(L);
      pd_push_array_mt(L);
      lua_setmetatable(L, -2);
      lua_replace(L, data);
    }
  } else if (lua_isnil(L, data) || (lua_type(L, data) == LUA_TLIGHTUSERDATA && !lua_touserdata(L, data))) {
    /* A list answers "data": null when it is empty. Another call without
     * data (a webhook delete answers {"success": true}) gives core.null,
     * which is truthy, so `data ~= nil` still means success. */
    if (list) {
      lua_newtable(L);
      pd_push_array_mt(L);
      lua_setmetatable(L, -2);
    } else {
      lua_pushlightuserdata(L, NULL);
    }
    lua_replace(L, data);
  }
  lua_createtable(L, 0, 10);
  info = lua_gettop(L);
  lua_pushinteger(L, (lua_Integer)r->status);
  lua_setfield(L, info, "status");
  lua_pushvalue(L, r->headers);
  lua_setfield(L, info, "headers");
  pd_get_table(L, body, "related_objects");
  lua_setfield(L, info, "related_objects");
  pd_get_table(L, body, "additional_data");
  ad = lua_gettop(L);
  lua_pushvalue(L, ad);
  lua_setfield(L, info, "additional_data");
  lua_pushboolean(L, 0);
  lua_setfield(L, info, "more");
  if (!lua_isnil(L, ad) && strcmp(paging, "cursor") == 0) {
    lua_getfield(L, ad, "next_cursor");
    if (lua_type(L, -1) == LUA_TSTRING && lua_rawlen(L, -1) > 0) {
      lua_setfield(L, info, "next_cursor");
      lua_pushboolean(L, 1);
      lua_setfield(L, info, "more");
    } else {
      lua_pop(L, 1);
    }
  } else if (!lua_isnil(L, ad) && strcmp(paging, "offset") == 0) {
    int pg, more;
    if (!pd_get_table(L, ad, "pagination")) {
      lua_pop(L, 1);
      lua_pushvalue(L, ad);
    }
    pg = lua_gettop(L);
    lua_getfield(L, pg, "more_items_in_collection");
    more = lua_type(L, -1) == LUA_TBOOLEAN && lua_toboolean(L, -1);
    lua_pushboolean(L, more);
    lua_setfield(L, info, "more");
    lua_getfield(L, pg, "next_start");
    if (lua_type(L, pg + 2) != LUA_TNUMBER && more) {
      /* Some v1 schemas give only start and limit; the next page starts
       * where this one ends. */
      lua_getfield(L, pg, "start");
      lua_getfield(L, pg, "limit");
      if (pd_isinteger(L, -2) && pd_isinteger(L, -1) && lua_tonumber(L, -1) > 0) {
        /* In integers, and only when the sum fits: converting an
         * out-of-range double is undefined (found by fuzz_response).
         * Without next_start the client reports the page as undecodable. */
#if LUA_VERSION_NUM >= 503
        lua_Integer start = lua_tointeger(L, -2), limit = lua_tointeger(L, -1);
        if (start <= LUA_MAXINTEGER - limit) {
          lua_pushinteger(L, start + limit);
          lua_replace(L, pg + 2);
        }
#else
        lua_Number sum = lua_tonumber(L, -2) + lua_tonumber(L, -1);
        if (sum > -9007199254740992.0 && sum < 9007199254740992.0) {
          lua_pushinteger(L, (lua_Integer)sum);
          lua_replace(L, pg + 2);
        }
#endif
      }
      lua_settop(L, pg + 2);
    }
    if (lua_type(L, pg + 2) == LUA_TNUMBER) lua_setfield(L, info, "next_start");
    lua_settop(L, pg - 1);
  }
  lua_settop(L, info);
  pd_resp_rate_limit(L, r);
  return 2;
}

/* core.parse_response(res, ctx). Malformed arguments are the caller's bug and
 * raise; everything the server sent, however broken, is reported as nil, err. */
static int pd_parse_response_l(lua_State *L) {
  pd_resp r;
  const char *paging = "none";
  int search = 0, list = 0, ok = 0;
  size_t n;
  const char *s;
  char derr[160];
  if (lua_type(L, 1) != LUA_TTABLE)
    return pd_raise(L, "parse_response: expected a response table, got %s", luaL_typename(L, 1));
  if (!lua_isnoneornil(L, 2) && lua_type(L, 2) != LUA_TTABLE)
    return pd_raise(L, "parse_response: ctx must be a table, got %s", luaL_typename(L, 2));
  lua_settop(L, 2);
  pd_checkstack(L, 24, "parse_response");
  if (lua_isnil(L, 2)) {
    lua_newtable(L);
    lua_replace(L, 2);
  }
  memset(&r, 0, sizeof r);
  lua_getfield(L, 1, "status");
  if (!pd_isinteger(L, 3) || lua_tonumber(L, 3) < 0 || lua_tonumber(L, 3) > 999)
    return pd_raise(L, "parse_response: res.status must be an integer HTTP status, got %s", luaL_typename(L, 3));
  r.status = (long)lua_tonumber(L, 3);
  lua_getfield(L, 1, "headers");
  if (lua_isnil(L, 4)) {
    lua_pop(L, 1);
    lua_newtable(L);
  } else if (lua_type(L, 4) != LUA_TTABLE) {
    return pd_raise(L, "parse_response: res.headers must be a table, got %s", luaL_typename(L, 4));
  }
  r.headers = 4;
  lua_getfield(L, 1, "body");
  if (lua_isnil(L, 5)) {
    lua_pop(L, 1);
    lua_pushliteral(L, "");
  } else if (lua_type(L, 5) != LUA_TSTRING) {
    return pd_raise(L, "parse_response: res.body must be a string, got %s", luaL_typename(L, 5));
  }
  r.body = 5;
  lua_getfield(L, 2, "method");
  if (!lua_isnil(L, 6) && lua_type(L, 6) != LUA_TSTRING)
    return pd_raise(L, "parse_response: ctx.method must be a string");
  r.method = lua_tostring(L, 6);
  lua_getfield(L, 2, "path");
  if (!lua_isnil(L, 7) && lua_type(L, 7) != LUA_TSTRING)
    return pd_raise(L, "parse_response: ctx.path must be a string");
  r.path = lua_tostring(L, 7);
  lua_getfield(L, 2, "paging");
  if (!lua_isnil(L, 8)) {
    paging = lua_type(L, 8) == LUA_TSTRING ? lua_tostring(L, 8) : "";
    if (strcmp(paging, "cursor") && strcmp(paging, "offset") && strcmp(paging, "none"))
      return pd_raise(L, "parse_response: ctx.paging must be \"cursor\", \"offset\" or \"none\"");
  }
  lua_getfield(L, 2, "search");
  search = lua_toboolean(L, 9);
  lua_getfield(L, 2, "list");
  list = lua_toboolean(L, 10) || strcmp(paging, "none") != 0;
  lua_settop(L, 10);

  s = lua_tolstring(L, r.body, &n);
  if (n) ok = pd_json_decode_buf(L, s, n, derr, sizeof derr);
  if (ok) r.value = lua_gettop(L);

  if (r.status >= 200 && r.status <= 299) {
    char msg[200];
    if (!n) return pd_resp_fail(L, &r, "decode", "response body is empty", 0);
    if (!ok) {
      snprintf(msg, sizeof msg, "response body is not valid JSON (%s)", derr);
      return pd_resp_fail(L, &r, "decode", msg, 1);
    }
    if (!pd_is_object(L, r.value)) {
      r.value = 0;
      return pd_resp_fail(L, &r, "decode", "response body is not a JSON object", 1);
    }
    lua_getfield(L, r.value, "success");
    if (lua_type(L, -1) == LUA_TBOOLEAN && !lua_toboolean(L, -1)) {
      const char *kind = "http";
      lua_pop(L, 1);
      lua_getfield(L, r.value, "errorCode");
      if (pd_isinteger(L, -1) && lua_tonumber(L, -1) >= 400 && lua_tonumber(L, -1) <= 599)
        kind = pd_status_kind((long)lua_tonumber(L, -1));
      lua_pop(L, 1);
      return pd_resp_fail(L, &r, kind, NULL, 0);
    }
    lua_pop(L, 1);
    return pd_resp_success(L, &r, paging, search, list || search);
  }
  if (ok && lua_type(L, r.value) != LUA_TTABLE && lua_type(L, r.value) != LUA_TSTRING) {
    lua_pop(L, 1);
    r.value = 0;
  }
  return pd_resp_fail(L, &r, pd_status_kind(r.status), NULL, 1);
}

/* core.retry_after(res) -> seconds or nil: the wait an answer names, read
 * exactly as parse_response reads it for err.retry_after, for callers that
 * see a raw answer before any parsing (OAuth token calls in the retry loop). */
static int pd_retry_after_l(lua_State *L) {
  lua_Integer st;
  int isnum;
  if (lua_type(L, 1) != LUA_TTABLE)
    return pd_raise(L, "retry_after: expected a response table, got %s", luaL_typename(L, 1));
  lua_settop(L, 1);
  lua_getfield(L, 1, "status");
  st = lua_tointegerx(L, 2, &isnum);
  lua_getfield(L, 1, "headers");
  if (lua_type(L, 3) != LUA_TTABLE) {
    lua_pushnil(L);
    return 1;
  }
  pd_push_retry_after(L, 3, isnum ? (long)st : 0);
  return 1;
}

/* error_mt is kept in the registry (reused when the module is opened again in
 * the same state), so errors made before a re-require are still recognised. */
static void pd_response_open(lua_State *L) {
  pd_push_error_mt(L);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushcfunction(L, pd_error_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pushliteral(L, "pipedrive.error");
    lua_setfield(L, -2, "__name");
    lua_pushlightuserdata(L, (void *)&pd_error_mt_key);
    lua_pushvalue(L, -2);
    lua_rawset(L, LUA_REGISTRYINDEX);
  }
  lua_setfield(L, -2, "error_mt");
  lua_pushcfunction(L, pd_parse_response_l);
  lua_setfield(L, -2, "parse_response");
  lua_pushcfunction(L, pd_retry_after_l);
  lua_setfield(L, -2, "retry_after");
}
