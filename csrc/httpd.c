/* luaopen_pipedrive_httpd: a small HTTP server on GNU libmicrohttpd.
 *
 * It serves the local sandbox and webhook listeners, so it trades features for
 * predictability: MHD runs without threads of its own ("external polling"),
 * and every Lua handler runs on the thread, and the coroutine, that called
 * srv:step() or srv:run(). Nothing here touches Lua from an MHD callback except
 * through lua_pcall, so a Lua error never unwinds through MHD's stack: all
 * request data is first copied into C memory, the Lua side is entered through
 * one protected call, and its answer is copied back to C before MHD sees it.
 *
 *   local srv = httpd.listen{ host = "127.0.0.1", port = 0, handler = fn,
 *                             max_body = 1048576, connection_timeout = 10,
 *                             request_timeout = 10, connection_limit = 256,
 *                             per_ip_limit = 32, log_errors = true }
 *   fn(req) -> status, headers, body      (req described at pd_httpd_dispatch)
 *   srv:port(), srv:host(), srv:step(seconds), srv:run(), srv:stop(), srv:close()
 *   srv:counters() -> { open, timed_out, evicted, refused, bad_request }
 *   httpd.now()                           monotonic seconds (clock.h, the same as core.now)
 *
 * The sandbox's fault injection is a build of its own: httpd_faults.c defines
 * PD_HTTPD_FAULTS and includes this file, giving pipedrive.sandbox.httpd with
 * what the PD_HTTPD_FAULTS sections add. pipedrive.httpd, which the webhook
 * listener and the login catcher use, is built without them and has none of
 * that code. With faults:
 *   fn(req) -> "drop"                     closes the connection without an answer
 *   fn(req) -> status, headers, body, { cut = n, drip = n, interval = s }
 *                                         fault answers: announce the whole body's
 *                                         length but send only its first `cut` bytes,
 *                                         then close; or send it `drip` bytes at a
 *                                         time, `interval` seconds apart (this blocks
 *                                         the server meanwhile: it is single-threaded)
 *   fn(req) -> status, headers, body, hold   answers `hold` seconds later without
 *                                         blocking the others (the sandbox's --latency):
 *                                         the connection is suspended meanwhile
 *   srv:stats([reset]) -> { held, peak_in_flight }
 */
#include "pd.h"
#include "clock.h"

#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <strings.h>
#include <time.h>
#include <sys/types.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <unistd.h>
#include <microhttpd.h>

#if MHD_VERSION < 0x00097206
#error "libmicrohttpd >= 0.9.72 is needed for MHD_run_wait"
#endif

/* Bytes of a chunked upload we read and drop after max_body was passed, so a
 * client still gets its 413; past this the connection is simply closed. */
#define PD_HTTPD_DISCARD_MAX (16u * 1024u * 1024u)
/* Cap on the response headers a handler may set (names and values together). */
#define PD_HTTPD_RESP_HEADERS_MAX (64u * 1024u)
/* Cap on the copied request headers; MHD's own memory pool limit is lower. */
#define PD_HTTPD_REQ_HEADERS_MAX (256u * 1024u)
/* A request_timeout of 0 (no deadline) stands for this many seconds. */
#define PD_HTTPD_NO_DEADLINE 1e15
/* The build: pipedrive.httpd unless httpd_faults.c asked for the sandbox's
 * (its own metatable name, so both modules can live in one Lua state). */
#ifndef PD_HTTPD_FAULTS
#define PD_HTTPD_FAULTS 0
#define PD_HTTPD_LUAOPEN luaopen_pipedrive_httpd
#define PD_HTTPD_MT "pipedrive.httpd"
#endif
#if PD_HTTPD_FAULTS
/* Longest a handler may hold an answer back (seconds). */
#define PD_HTTPD_HOLD_MAX 3600.0
#endif

struct pd_hreq;

/* One TCP connection, from MHD's "started" to its "closed" notification (the
 * socket context). While a request is still arriving (its head or its body)
 * the connection sits in the server's deadline list, oldest first: all share
 * one request_timeout, so the list is ordered by deadline too. A complete
 * request leaves the list; when it is over, a kept-alive connection joins
 * again at the tail with a new deadline for its next request. */
typedef struct pd_hconn {
  struct MHD_Connection *conn;
  int fd;
  int linked;  /* in the deadline list */
  int killed;  /* shut down by us (deadline or eviction); MHD closes it next */
  double deadline;
  struct pd_hconn *prev, *next;
} pd_hconn;

PD_EXPORT int PD_HTTPD_LUAOPEN(lua_State *L);

/* One server. `daemon` is NULL while the handle is closed. `L` is the state of
 * the coroutine inside step() and NULL otherwise: MHD only calls us from
 * within MHD_run_wait, which only step() calls. */
typedef struct pd_httpd {
  struct MHD_Daemon *daemon;
  lua_State *L;
  int handler_ref;
  size_t max_body;
  unsigned port;
  int ipv6;
  int log_errors;
  int stop_requested;
  int in_step;
  int close_pending;
  /* hostile-traffic limits (see pd_httpd_accept_cb and pd_httpd_sweep) */
  double request_timeout;  /* seconds for a whole request, head and body; 0: none */
  unsigned conn_limit;     /* connections at once, in total */
  pd_hconn *oldest, *newest; /* the deadline list: requests still arriving */
  unsigned open;           /* tracked connections not yet shut down by us */
  unsigned long timed_out, evicted, refused, bad_request;
#if PD_HTTPD_FAULTS
  struct pd_hreq *held;   /* suspended connections with an answer due, unordered */
  int held_count;
  int peak_in_flight;     /* most requests seen in flight at once (held + the one dispatched) */
#endif
  char host[INET6_ADDRSTRLEN];
} pd_httpd;

/* Per-request state, created by the URI log callback (the only place MHD shows
 * the request target exactly as the client sent it) and freed by the
 * completion callback. */
typedef struct pd_hreq {
  char *uri;
  pd_buf body;
  size_t discarded;
  int started;
  int too_large;
#if PD_HTTPD_FAULTS
  /* an answer held back (handler's `hold`): sent once `due` has passed */
  struct MHD_Response *held_resp;
  unsigned held_status;
  double due;
  struct MHD_Connection *conn;
  struct pd_hreq *next_held;
#endif
} pd_hreq;

/* What the protected dispatch needs, and what it hands back. Everything the
 * handler returns is copied into `resp_headers` ("name\0value\0" pairs) and
 * `status`; the body string stays on the Lua stack until MHD copied it. */
typedef struct pd_hcall {
  pd_httpd *srv;
  pd_hreq *rq;
  const char *method;
  const char *url;
  const char *version;
  pd_buf req_headers;
  char remote_addr[INET6_ADDRSTRLEN];
  int remote_port;
  int status;
#if PD_HTTPD_FAULTS
  int drop; /* the handler returned "drop": close without an answer */
  size_t cut;     /* body bytes to send before closing; SIZE_MAX: all */
  size_t drip;    /* bytes per write for a slow body; 0: at once */
  long drip_ns;   /* pause before each dripped piece but the first */
  double hold; /* the handler's fourth result: seconds to hold the answer back */
#endif
  pd_buf resp_headers;
} pd_hcall;

#if PD_HTTPD_FAULTS
/* A fault answer's body, owned by its MHD response (freed by pd_httpd_slow_free). */
typedef struct pd_slow {
  char *data;
  size_t len, cut, drip;
  long drip_ns;
} pd_slow;
#endif

/* ---------------------------------------------------------------- MHD side */

/* Refuses a request the server will not hand to Lua (bad framing, a NUL in the
 * path): a short answer and "Connection: close", so whatever follows on the
 * connection is never read as another request. */
static enum MHD_Result pd_httpd_refuse(pd_httpd *s, struct MHD_Connection *conn, unsigned status,
                                       const char *text) {
  struct MHD_Response *r;
  enum MHD_Result ok;
  s->bad_request++;
  r = MHD_create_response_from_buffer(strlen(text), (void *)(uintptr_t)text, MHD_RESPMEM_MUST_COPY);
  if (!r) return MHD_NO;
  MHD_add_response_header(r, "Content-Type", "text/plain; charset=utf-8");
  MHD_add_response_header(r, "Connection", "close");
  ok = MHD_queue_response(conn, status, r);
  MHD_destroy_response(r);
  return ok;
}

/* ------------------------------------------------ connections and deadlines */

/* Takes a connection out of the deadline list (no-op when it is not in it). */
static void pd_httpd_unlink(pd_httpd *s, pd_hconn *c) {
  if (!c->linked) return;
  if (c->prev) c->prev->next = c->next;
  else s->oldest = c->next;
  if (c->next) c->next->prev = c->prev;
  else s->newest = c->prev;
  c->prev = c->next = NULL;
  c->linked = 0;
}

/* Starts the clock for the connection's next request: the whole request must
 * be in by now + request_timeout, however the bytes trickle in (MHD's own
 * timeout is an idle timer that each byte restarts). */
static void pd_httpd_arm(pd_httpd *s, pd_hconn *c) {
  pd_httpd_unlink(s, c);
  if (c->killed) return;
  c->deadline = s->request_timeout > 0 ? pd_clock_mono() + s->request_timeout : PD_HTTPD_NO_DEADLINE;
  c->prev = s->newest;
  c->next = NULL;
  if (s->newest) s->newest->next = c;
  else s->oldest = c;
  s->newest = c;
  c->linked = 1;
}

/* Ends a connection from outside MHD's callbacks' control flow: shutdown(2)
 * (not close: MHD owns the descriptor) makes MHD's next read see the end and
 * close the connection itself, freeing everything through its callbacks. */
static void pd_httpd_kill(pd_httpd *s, pd_hconn *c) {
  pd_httpd_unlink(s, c);
  if (c->killed) return;
  c->killed = 1;
  s->open--;
  if (c->fd >= 0) shutdown(c->fd, SHUT_RDWR);
}

/* The socket context MHD keeps for a connection (NULL if it has none). */
static pd_hconn *pd_httpd_conn_of(struct MHD_Connection *conn) {
  const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
  return ci ? (pd_hconn *)ci->socket_context : NULL;
}

/* MHD's connection notifications: a record per TCP connection, in the
 * deadline list from the start. A connection we cannot track is shut down at
 * once rather than left without a deadline. Touches no Lua. */
static void pd_httpd_notify_cb(void *cls, struct MHD_Connection *conn, void **socket_context,
                               enum MHD_ConnectionNotificationCode toe) {
  pd_httpd *s = (pd_httpd *)cls;
  pd_hconn *c = (pd_hconn *)*socket_context;
  if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    c = (pd_hconn *)calloc(1, sizeof *c);
    if (!c) {
      if (ci) shutdown(ci->connect_fd, SHUT_RDWR);
      return;
    }
    c->conn = conn;
    c->fd = ci ? (int)ci->connect_fd : -1;
    s->open++;
    pd_httpd_arm(s, c);
    *socket_context = c;
    return;
  }
  if (!c) return;
  pd_httpd_unlink(s, c);
  if (!c->killed) s->open--;
  free(c);
  *socket_context = NULL;
}

/* Accept policy, before MHD takes a new connection: within connection_limit
 * it is accepted; at the limit the oldest connection whose request is still
 * arriving (most likely a slow client: a real delivery takes milliseconds) is
 * shut down to make room; when every connection is busy with a complete
 * request the newcomer is refused (MHD closes its socket). The per-address
 * cap is MHD's own (MHD_OPTION_PER_IP_CONNECTION_LIMIT). */
static enum MHD_Result pd_httpd_accept_cb(void *cls, const struct sockaddr *addr, socklen_t addrlen) {
  pd_httpd *s = (pd_httpd *)cls;
  (void)addr;
  (void)addrlen;
  if (s->open < s->conn_limit) return MHD_YES;
  if (!s->oldest) {
    s->refused++;
    return MHD_NO;
  }
  s->evicted++;
  pd_httpd_kill(s, s->oldest);
  return MHD_YES;
}

/* Shuts down every connection whose request is not complete by its deadline;
 * returns how many. */
static int pd_httpd_sweep(pd_httpd *s) {
  double now = pd_clock_mono();
  int n = 0;
  while (s->oldest && s->oldest->deadline <= now) {
    pd_httpd_kill(s, s->oldest);
    s->timed_out++;
    n++;
  }
  return n;
}

/* Counts Content-Length and Transfer-Encoding headers and checks their
 * values (MHD_get_connection_values callback). */
typedef struct pd_hframing {
  int cl, te, bad;
} pd_hframing;

static enum MHD_Result pd_httpd_framing_cb(void *cls, enum MHD_ValueKind kind, const char *key,
                                           const char *value) {
  pd_hframing *f = (pd_hframing *)cls;
  const char *p;
  (void)kind;
  if (!key) return MHD_YES;
  if (strcasecmp(key, "Content-Length") == 0) {
    f->cl++;
    if (!value || !*value) f->bad = 1;
    for (p = value; p && *p; p++)
      if (*p < '0' || *p > '9') f->bad = 1;
  } else if (strcasecmp(key, "Transfer-Encoding") == 0) {
    f->te++;
    if (!value || strcasecmp(value, "chunked") != 0) f->bad = 1;
  }
  return MHD_YES;
}

/* Why a request's framing is refused, or NULL when it is unambiguous: one
 * Content-Length of digits, or one "Transfer-Encoding: chunked", never both.
 * Two lengths (equal or not), a length beside chunked, or another coding are
 * what request smuggling is made of: a proxy in front may read them the
 * other way, so the request is refused before any Lua runs. */
static const char *pd_httpd_framing_error(struct MHD_Connection *conn) {
  pd_hframing f = { 0, 0, 0 };
  MHD_get_connection_values(conn, MHD_HEADER_KIND, pd_httpd_framing_cb, &f);
  if (f.cl > 1) return "more than one Content-Length\n";
  if (f.te > 1) return "more than one Transfer-Encoding\n";
  if (f.cl && f.te) return "Content-Length with Transfer-Encoding\n";
  if (f.bad) return "malformed Content-Length or Transfer-Encoding\n";
  return NULL;
}

/* True when the raw request target's path (before '?') holds an encoded NUL:
 * MHD's decoded path would end there, so "/%00xyz" would pass for "/". */
static int pd_httpd_path_has_nul(const char *uri) {
  const char *p;
  for (p = uri; *p && *p != '?'; p++)
    if (p[0] == '%' && p[1] == '0' && p[2] == '0') return 1;
  return 0;
}

/* MHD calls this before it parses (and percent-decodes) the target; keeping
 * a copy is the only way to hand Lua the raw path and query string. */
static void *pd_httpd_uri_cb(void *cls, const char *uri, struct MHD_Connection *conn) {
  pd_hreq *rq;
  size_t n;
  (void)conn;
  rq = (pd_hreq *)calloc(1, sizeof *rq);
  if (!rq) return NULL;
  n = strlen(uri ? uri : "");
  rq->uri = (char *)malloc(n + 1);
  if (!rq->uri) {
    free(rq);
    return NULL;
  }
  memcpy(rq->uri, uri ? uri : "", n + 1);
  pd_buf_init(&rq->body, ((pd_httpd *)cls)->max_body);
  return rq;
}

/* The request is over (answered, timed out or the daemon stopped): free what
 * the URI callback allocated. Never touches Lua, so it is safe from any path,
 * including MHD_stop_daemon run by __gc. */
static void pd_httpd_done_cb(void *cls, struct MHD_Connection *conn, void **con_cls,
                             enum MHD_RequestTerminationCode toe) {
  pd_hreq *rq = (pd_hreq *)*con_cls;
  pd_httpd *s = (pd_httpd *)cls;
  pd_hconn *hc = conn ? pd_httpd_conn_of(conn) : NULL;
  /* The next request on a kept-alive connection gets a deadline of its own. */
  if (hc && toe == MHD_REQUEST_TERMINATED_COMPLETED_OK) pd_httpd_arm(s, hc);
  if (!rq) return;
#if PD_HTTPD_FAULTS
  if (rq->held_resp) MHD_destroy_response(rq->held_resp); /* the daemon stopped while it was held */
#endif
  pd_buf_free(&rq->body);
  free(rq->uri);
  free(rq);
  *con_cls = NULL;
}

/* Copies each request header as lower-cased "name\0value\0" so the Lua table
 * can be built later inside the protected call. */
static enum MHD_Result pd_httpd_header_cb(void *cls, enum MHD_ValueKind kind, const char *key,
                                          const char *value) {
  pd_buf *b = (pd_buf *)cls;
  const char *p;
  (void)kind;
  if (!key) return MHD_YES;
  for (p = key; *p; p++) pd_buf_addc(b, (*p >= 'A' && *p <= 'Z') ? (char)(*p - 'A' + 'a') : *p);
  pd_buf_addc(b, '\0');
  pd_buf_adds(b, value ? value : "");
  pd_buf_addc(b, '\0');
  return pd_buf_failed(b) ? MHD_NO : MHD_YES;
}

/* Answers with a short plain-text body; used for the errors the server itself
 * produces (413, 500), which never reach Lua. */
static enum MHD_Result pd_httpd_reply_text(struct MHD_Connection *conn, unsigned status, const char *text) {
  struct MHD_Response *r;
  enum MHD_Result ok;
  r = MHD_create_response_from_buffer(strlen(text), (void *)(uintptr_t)text, MHD_RESPMEM_MUST_COPY);
  if (!r) return MHD_NO;
  MHD_add_response_header(r, "Content-Type", "text/plain; charset=utf-8");
  ok = MHD_queue_response(conn, status, r);
  MHD_destroy_response(r);
  return ok;
}

#if PD_HTTPD_FAULTS
/* Content reader for fault answers: the length announced is the whole body,
 * but past `cut` bytes the connection is closed (MHD's END_WITH_ERROR), which
 * a client sees as a body cut short; with `drip`, pieces of that size go out
 * with a pause before each but the first. Touches no Lua. */
static ssize_t pd_httpd_slow_read(void *cls, uint64_t pos, char *buf, size_t max) {
  pd_slow *sl = (pd_slow *)cls;
  size_t n;
  if (pos >= (uint64_t)sl->cut || pos >= (uint64_t)sl->len) return MHD_CONTENT_READER_END_WITH_ERROR;
  n = sl->cut - (size_t)pos;
  if (n > sl->len - (size_t)pos) n = sl->len - (size_t)pos;
  if (n > max) n = max;
  if (sl->drip && n > sl->drip) n = sl->drip;
  if (sl->drip_ns > 0 && pos > 0) {
    struct timespec ts;
    ts.tv_sec = sl->drip_ns / 1000000000L;
    ts.tv_nsec = sl->drip_ns % 1000000000L;
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
  }
  memcpy(buf, sl->data + pos, n);
  return (ssize_t)n;
}

/* Frees a fault answer's body once MHD is done with the response. */
static void pd_httpd_slow_free(void *cls) {
  pd_slow *sl = (pd_slow *)cls;
  if (!sl) return;
  free(sl->data);
  free(sl);
}

/* A response for body[0..blen) that follows the handler's cut/drip options;
 * an ordinary copied buffer when it has none. NULL when out of memory. */
static struct MHD_Response *pd_httpd_make_response(const pd_hcall *c, const char *body, size_t blen) {
  pd_slow *sl;
  struct MHD_Response *r;
  if (c->cut == SIZE_MAX && c->drip == 0)
    return MHD_create_response_from_buffer(blen, (void *)(uintptr_t)body, MHD_RESPMEM_MUST_COPY);
  sl = (pd_slow *)calloc(1, sizeof *sl);
  if (!sl) return NULL;
  sl->data = (char *)malloc(blen ? blen : 1);
  if (!sl->data) {
    free(sl);
    return NULL;
  }
  memcpy(sl->data, body, blen);
  sl->len = blen;
  sl->cut = c->cut;
  sl->drip = c->drip;
  sl->drip_ns = c->drip_ns;
  r = MHD_create_response_from_callback((uint64_t)blen, sl->drip ? sl->drip : 4096, pd_httpd_slow_read, sl,
                                        pd_httpd_slow_free);
  if (!r) pd_httpd_slow_free(sl);
  return r;
}
#else
/* The response for body[0..blen): a copy MHD owns. */
static struct MHD_Response *pd_httpd_make_response(const pd_hcall *c, const char *body, size_t blen) {
  (void)c;
  return MHD_create_response_from_buffer(blen, (void *)(uintptr_t)body, MHD_RESPMEM_MUST_COPY);
}
#endif

/* ---------------------------------------------------------------- Lua side */

/* Adds the traceback to a handler error for the server's stderr; runs as the
 * message handler of the protected call, so it must not fail itself. */
static int pd_httpd_traceback(lua_State *L) {
  const char *msg = lua_tostring(L, 1);
  if (msg) luaL_traceback(L, L, msg, 1);
  return 1;
}

/* Checks a header name or value the handler returned: a CR, LF or NUL would
 * let a handler split the response, so refuse them outright. */
static int pd_httpd_header_ok(const char *s, size_t n, int is_name) {
  size_t i;
  if (is_name && n == 0) return 0;
  for (i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c == '\r' || c == '\n' || c == '\0') return 0;
    if (is_name && (c <= ' ' || c == ':' || c >= 127)) return 0;
  }
  return 1;
}

/* The single protected entry into Lua for one request. Builds
 *   req = { method, path, raw_path, query_string, version, headers = {lowercase
 *           = value, repeats joined by ", "}, body, remote_addr, remote_port }
 * (path is MHD's percent-decoded path; raw_path and query_string are exactly as
 * sent, query_string without '?' and "" when absent), calls the handler, checks
 * what it returned and copies status and headers into C. Returns the body
 * string. Any error here becomes a 500 in the caller. */
static int pd_httpd_dispatch(lua_State *L) {
  pd_hcall *c = (pd_hcall *)lua_touserdata(L, 1);
  const char *uri = c->rq->uri, *q, *p, *end;
  lua_Integer status;
  int isnum;

  lua_createtable(L, 0, 10);
  lua_pushstring(L, c->method);
  lua_setfield(L, -2, "method");
  lua_pushstring(L, c->url);
  lua_setfield(L, -2, "path");
  q = strchr(uri, '?');
  if (q) {
    lua_pushlstring(L, uri, (size_t)(q - uri));
    lua_setfield(L, -2, "raw_path");
    lua_pushstring(L, q + 1);
  } else {
    lua_pushstring(L, uri);
    lua_setfield(L, -2, "raw_path");
    lua_pushliteral(L, "");
  }
  lua_setfield(L, -2, "query_string");
  lua_pushstring(L, c->version ? c->version : "");
  lua_setfield(L, -2, "version");

  lua_newtable(L);
  p = c->req_headers.data;
  end = p ? p + c->req_headers.len : p;
  while (p && p < end) {
    const char *name = p, *value = p + strlen(p) + 1;
    p = value + strlen(value) + 1;
    lua_getfield(L, -1, name);
    if (lua_isstring(L, -1)) {
      lua_pushliteral(L, ", ");
      lua_pushstring(L, value);
      lua_concat(L, 3);
    } else {
      lua_pop(L, 1);
      lua_pushstring(L, value);
    }
    lua_setfield(L, -2, name);
  }
  lua_setfield(L, -2, "headers");

  lua_pushlstring(L, c->rq->body.data ? c->rq->body.data : "", c->rq->body.len);
  lua_setfield(L, -2, "body");
  lua_pushstring(L, c->remote_addr);
  lua_setfield(L, -2, "remote_addr");
  lua_pushinteger(L, c->remote_port);
  lua_setfield(L, -2, "remote_port");

  lua_rawgeti(L, LUA_REGISTRYINDEX, c->srv->handler_ref);
  lua_insert(L, -2);
#if PD_HTTPD_FAULTS
  lua_call(L, 1, 4); /* stack: ctx, status, headers, body, hold or fault options */
  if (lua_type(L, 5) == LUA_TNUMBER) {
    double hold = (double)lua_tonumber(L, 5);
    if (hold > 0) c->hold = hold > PD_HTTPD_HOLD_MAX ? PD_HTTPD_HOLD_MAX : hold;
    lua_pushnil(L);
    lua_replace(L, 5);
  }

  if (lua_type(L, 2) == LUA_TSTRING && strcmp(lua_tostring(L, 2), "drop") == 0) {
    c->drop = 1;
    lua_pushliteral(L, "");
    return 1;
  }
#else
  lua_call(L, 1, 3); /* stack: ctx, status, headers, body */
#endif
  status = lua_tointegerx(L, 2, &isnum);
  if (!isnum || status < 200 || status > 599)
    return luaL_error(L, "handler must return an HTTP status 200-599 first, got %s", luaL_typename(L, 2));
  c->status = (int)status;

  if (!lua_isnil(L, 3)) {
    if (!lua_istable(L, 3)) return luaL_error(L, "handler's second result must be a headers table or nil");
    lua_pushnil(L);
    while (lua_next(L, 3)) {
      const char *k, *v;
      size_t kn, vn;
      if (lua_type(L, -2) != LUA_TSTRING || !lua_isstring(L, -1))
        return luaL_error(L, "response headers must map strings to strings");
      k = lua_tolstring(L, -2, &kn);
      v = lua_tolstring(L, -1, &vn); /* a number value converts in place, the key is untouched */
      if (!pd_httpd_header_ok(k, kn, 1) || !pd_httpd_header_ok(v, vn, 0))
        return luaL_error(L, "invalid response header %s", pd_httpd_header_ok(k, kn, 1) ? k : "name");
      pd_buf_add(&c->resp_headers, k, kn + 1);
      pd_buf_add(&c->resp_headers, v, vn + 1);
      lua_pop(L, 1);
    }
    if (pd_buf_failed(&c->resp_headers)) return luaL_error(L, "response headers too large");
  }

#if PD_HTTPD_FAULTS
  if (!lua_isnil(L, 5)) {
    lua_Number v;
    if (!lua_istable(L, 5)) return luaL_error(L, "handler's fourth result must be seconds to hold, a table of fault options, or nil");
    lua_getfield(L, 5, "cut");
    if (!lua_isnil(L, -1)) {
      v = lua_tonumber(L, -1);
      if (lua_type(L, -1) != LUA_TNUMBER || !(v >= 0)) return luaL_error(L, "fault option 'cut' must be a byte count");
      c->cut = v >= (lua_Number)INT_MAX ? (size_t)INT_MAX : (size_t)v;
    }
    lua_getfield(L, 5, "drip");
    if (!lua_isnil(L, -1)) {
      v = lua_tonumber(L, -1);
      if (lua_type(L, -1) != LUA_TNUMBER || !(v >= 1)) return luaL_error(L, "fault option 'drip' must be at least 1 byte");
      c->drip = v >= 65536 ? 65536 : (size_t)v;
    }
    lua_getfield(L, 5, "interval");
    if (!lua_isnil(L, -1)) {
      v = lua_tonumber(L, -1);
      if (lua_type(L, -1) != LUA_TNUMBER || !(v >= 0 && v <= 10))
        return luaL_error(L, "fault option 'interval' must be 0 to 10 seconds");
      c->drip_ns = (long)(v * 1e9);
    }
    lua_pop(L, 3);
  }
#endif
  if (lua_isnil(L, 4)) {
    lua_pushliteral(L, "");
  } else {
    if (lua_type(L, 4) != LUA_TSTRING) return luaL_error(L, "handler's third result must be a string body or nil");
    lua_pushvalue(L, 4);
  }
  return 1;
}

/* Runs the Lua handler for a complete request and queues its answer. Called by
 * the access callback, hence inside MHD_run_wait inside step(); srv->L is the
 * caller's coroutine. The Lua stack is restored before returning to MHD. */
static enum MHD_Result pd_httpd_call_lua(pd_httpd *s, struct MHD_Connection *conn, pd_hreq *rq, const char *url,
                                         const char *method, const char *version) {
  lua_State *L = s->L;
  pd_hcall c;
  const union MHD_ConnectionInfo *ci;
  struct MHD_Response *r;
  enum MHD_Result ok = MHD_NO;
  const char *body, *p, *end;
  size_t blen;
  int top, st;

  if (!L || s->handler_ref == LUA_NOREF || s->close_pending)
    return pd_httpd_reply_text(conn, 503, "server is closing\n");
#if PD_HTTPD_FAULTS
  if (s->held_count + 1 > s->peak_in_flight) s->peak_in_flight = s->held_count + 1;
#endif
  memset(&c, 0, sizeof c);
  c.srv = s;
  c.rq = rq;
  c.method = method;
  c.url = url;
  c.version = version;
#if PD_HTTPD_FAULTS
  c.cut = SIZE_MAX;
#endif
  pd_buf_init(&c.req_headers, PD_HTTPD_REQ_HEADERS_MAX);
  pd_buf_init(&c.resp_headers, PD_HTTPD_RESP_HEADERS_MAX);
  strcpy(c.remote_addr, "");
  ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
  if (ci && ci->client_addr) {
    const struct sockaddr *sa = ci->client_addr;
    if (sa->sa_family == AF_INET) {
      const struct sockaddr_in *in4 = (const struct sockaddr_in *)(const void *)sa;
      inet_ntop(AF_INET, &in4->sin_addr, c.remote_addr, sizeof c.remote_addr);
      c.remote_port = ntohs(in4->sin_port);
    } else if (sa->sa_family == AF_INET6) {
      const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)(const void *)sa;
      inet_ntop(AF_INET6, &in6->sin6_addr, c.remote_addr, sizeof c.remote_addr);
      c.remote_port = ntohs(in6->sin6_port);
    }
  }
  MHD_get_connection_values(conn, MHD_HEADER_KIND, pd_httpd_header_cb, &c.req_headers);
  if (pd_buf_failed(&c.req_headers)) {
    pd_buf_free(&c.req_headers);
    return pd_httpd_reply_text(conn, 431, "request headers too large\n");
  }

  top = lua_gettop(L);
  if (!lua_checkstack(L, 16)) {
    pd_buf_free(&c.req_headers);
    return pd_httpd_reply_text(conn, 500, "handler error: Lua stack overflow\n");
  }
  /* Neither push allocates (light C functions, light userdata), so nothing
   * can raise before lua_pcall takes over. */
  lua_pushcfunction(L, pd_httpd_traceback);
  lua_pushcfunction(L, pd_httpd_dispatch);
  lua_pushlightuserdata(L, &c);
  st = lua_pcall(L, 1, 1, top + 1);
  pd_buf_free(&c.req_headers);

  if (st != LUA_OK) {
    pd_buf text;
    const char *msg = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "(error object is not a string)";
    size_t first = strcspn(msg, "\n");
    if (s->log_errors) {
      fprintf(stderr, "pipedrive.httpd: handler error for %s %s: %s\n", method, url, msg);
      fflush(stderr);
    }
    /* Only the first line, bounded: the traceback stays on stderr. */
    pd_buf_init(&text, 1024);
    pd_buf_addf(&text, "handler error: %.*s\n", (int)(first > 400 ? 400 : first), msg);
    ok = pd_httpd_reply_text(conn, 500, pd_buf_failed(&text) ? "handler error\n" : text.data);
    pd_buf_free(&text);
    goto out;
  }

#if PD_HTTPD_FAULTS
  if (c.drop) {
    ok = MHD_NO; /* MHD closes the connection without a response */
    goto out;
  }
#endif
  body = lua_tolstring(L, -1, &blen);
  r = pd_httpd_make_response(&c, body, blen);
  if (!r) {
    ok = MHD_NO;
    goto out;
  }
  p = c.resp_headers.data;
  end = p ? p + c.resp_headers.len : p;
  while (p && p < end) {
    const char *name = p, *value = p + strlen(p) + 1;
    p = value + strlen(value) + 1;
    /* MHD frames the body itself; a handler's own length would conflict. */
    if (strcasecmp(name, "content-length") == 0 || strcasecmp(name, "transfer-encoding") == 0) continue;
    if (MHD_add_response_header(r, name, value) != MHD_YES) {
      MHD_destroy_response(r);
      ok = pd_httpd_reply_text(conn, 500, "handler error: response header refused\n");
      goto out;
    }
  }
#if PD_HTTPD_FAULTS
  if (c.hold > 0) {
    /* Kept for step() to send once due; the connection sleeps until then. */
    rq->held_resp = r;
    rq->held_status = (unsigned)c.status;
    rq->due = pd_clock_mono() + c.hold;
    rq->conn = conn;
    rq->next_held = s->held;
    s->held = rq;
    s->held_count++;
    MHD_suspend_connection(conn);
    ok = MHD_YES;
    goto out;
  }
#endif
  ok = MHD_queue_response(conn, (unsigned)c.status, r);
  MHD_destroy_response(r);
out:
  pd_buf_free(&c.resp_headers);
  lua_settop(L, top);
  return ok;
}

/* MHD's access callback, called several times per request: once when the
 * headers are in, then once per piece of upload, then with no data when the
 * request is complete. The body is gathered up to max_body; beyond it the
 * client gets 413 and Lua is never called. */
static enum MHD_Result pd_httpd_access_cb(void *cls, struct MHD_Connection *conn, const char *url,
                                          const char *method, const char *version, const char *upload_data,
                                          size_t *upload_data_size, void **con_cls) {
  pd_httpd *s = (pd_httpd *)cls;
  pd_hreq *rq = (pd_hreq *)*con_cls;
  pd_hconn *hc;

  if (!rq) return MHD_NO;
#if PD_HTTPD_FAULTS
  if (rq->held_resp) { /* resumed by step(): the held answer is due */
    struct MHD_Response *r = rq->held_resp;
    enum MHD_Result ok = MHD_queue_response(conn, rq->held_status, r);
    rq->held_resp = NULL;
    MHD_destroy_response(r);
    return ok;
  }
#endif
  if (!rq->started) {
    const char *cl, *expect, *why;
    rq->started = 1;
    /* Refused before anything is read or run: the connection then closes. */
    if (pd_httpd_path_has_nul(rq->uri)) {
      hc = pd_httpd_conn_of(conn);
      if (hc) pd_httpd_unlink(s, hc);
      return pd_httpd_refuse(s, conn, 400, "NUL in the request path\n");
    }
    why = pd_httpd_framing_error(conn);
    if (why) {
      hc = pd_httpd_conn_of(conn);
      if (hc) pd_httpd_unlink(s, hc);
      return pd_httpd_refuse(s, conn, 400, why);
    }
    /* A client that waits for "100 Continue" can be turned away before it
     * sends anything; others get their 413 once their body has been read. */
    cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Length");
    expect = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Expect");
    if (cl && expect && strcasecmp(expect, "100-continue") == 0) {
      char *e;
      unsigned long long len;
      errno = 0;
      len = strtoull(cl, &e, 10);
      if (e != cl && *e == '\0' && (errno == ERANGE || len > (unsigned long long)s->max_body)) {
        rq->too_large = 1;
        return pd_httpd_reply_text(conn, 413, "request body too large\n");
      }
    }
    return MHD_YES;
  }
  if (*upload_data_size) {
    size_t n = *upload_data_size;
    *upload_data_size = 0;
    if (!rq->too_large && n > s->max_body - rq->body.len) {
      rq->too_large = 1;
      pd_buf_free(&rq->body);
    }
    if (rq->too_large) {
      rq->discarded += n;
      return rq->discarded > PD_HTTPD_DISCARD_MAX ? MHD_NO : MHD_YES;
    }
    pd_buf_add(&rq->body, upload_data, n);
    return MHD_YES;
  }
  /* The request is complete: its deadline is met (a held answer or a slow
   * reader is MHD's idle timeout's business from here). */
  hc = pd_httpd_conn_of(conn);
  if (hc) pd_httpd_unlink(s, hc);
  if (rq->too_large) return pd_httpd_reply_text(conn, 413, "request body too large\n");
  if (pd_buf_failed(&rq->body)) return pd_httpd_reply_text(conn, 500, "out of memory\n");
  return pd_httpd_call_lua(s, conn, rq, url, method, version);
}

/* --------------------------------------------------------------- the handle */

/* The one release path, shared by close, __gc and __close. Idempotent. When
 * called from inside a handler (that is, inside MHD_run_wait) the daemon cannot
 * be stopped under MHD's feet, so the work is left for step() to finish. */
static void pd_httpd_release(lua_State *L, pd_httpd *s) {
  if (s->in_step) {
    s->close_pending = 1;
    s->stop_requested = 1;
    return;
  }
#if PD_HTTPD_FAULTS
  /* MHD cannot stop with suspended connections: wake them; the stop then
   * closes them and the completion callback frees their held answers. */
  while (s->held) {
    pd_hreq *rq = s->held;
    s->held = rq->next_held;
    rq->next_held = NULL;
    if (s->daemon) MHD_resume_connection(rq->conn);
  }
  s->held_count = 0;
#endif
  if (s->daemon) {
    MHD_stop_daemon(s->daemon);
    s->daemon = NULL;
  }
  if (s->handler_ref != LUA_NOREF) {
    luaL_unref(L, LUA_REGISTRYINDEX, s->handler_ref);
    s->handler_ref = LUA_NOREF;
  }
  s->close_pending = 0;
}

/* Returns the server at index 1, raising if it is closed (or being closed),
 * as using a closed file does in liolib. */
static pd_httpd *pd_httpd_check(lua_State *L) {
  pd_httpd *s = (pd_httpd *)luaL_checkudata(L, 1, PD_HTTPD_MT);
  if (!s->daemon || s->close_pending) luaL_error(L, "attempt to use a closed server");
  return s;
}

/* Reads an optional non-negative integer option, raising with the option's
 * name on a wrong type so misuse is caught at listen time. */
static lua_Integer pd_httpd_opt_int(lua_State *L, const char *name, lua_Integer def, lua_Integer max) {
  lua_Integer v;
  int isnum;
  lua_getfield(L, 1, name);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    return def;
  }
  v = lua_tointegerx(L, -1, &isnum);
  if (lua_type(L, -1) != LUA_TNUMBER || !isnum || v < 0 || v > max) luaL_error(L, "httpd.listen: '%s' must be an integer in 0..%d", name, (int)max);
  lua_pop(L, 1);
  return v;
}

/* httpd.listen(opts) -> server | nil, message. Bad options raise; a failure
 * to bind (port taken, address not local) is a runtime failure: nil, message. */
static int pd_httpd_listen(lua_State *L) {
  pd_httpd *s;
  const char *host;
  lua_Integer port, timeout, limit, max_body, request_timeout, per_ip;
  struct sockaddr_in sa4;
  struct sockaddr_in6 sa6;
  struct sockaddr *sa;
#if PD_HTTPD_FAULTS
  unsigned int flags = MHD_USE_AUTO | MHD_ALLOW_SUSPEND_RESUME;
#else
  unsigned int flags = MHD_USE_AUTO;
#endif
  const union MHD_DaemonInfo *di;
  int err, log_errors;

  luaL_checktype(L, 1, LUA_TTABLE);
  lua_getfield(L, 1, "host");
  host = lua_isnil(L, -1) ? "127.0.0.1" : lua_tostring(L, -1);
  if (!host || lua_type(L, -1) == LUA_TNUMBER) return luaL_error(L, "httpd.listen: 'host' must be a string");
  lua_pop(L, 1); /* the option table still references the string */
  port = pd_httpd_opt_int(L, "port", 0, 65535);
  max_body = pd_httpd_opt_int(L, "max_body", 1048576, (lua_Integer)INT_MAX);
  timeout = pd_httpd_opt_int(L, "connection_timeout", 10, 86400);
  limit = pd_httpd_opt_int(L, "connection_limit", 256, 65536);
  request_timeout = pd_httpd_opt_int(L, "request_timeout", 10, 86400);
  per_ip = pd_httpd_opt_int(L, "per_ip_limit", 32, 65536);
  if (limit < 1) return luaL_error(L, "httpd.listen: 'connection_limit' must be at least 1");
  lua_getfield(L, 1, "handler");
  if (!lua_isfunction(L, -1)) return luaL_error(L, "httpd.listen: 'handler' must be a function");
  lua_getfield(L, 1, "log_errors");
  log_errors = lua_isnil(L, -1) || lua_toboolean(L, -1);
  lua_pop(L, 2);

  memset(&sa4, 0, sizeof sa4);
  memset(&sa6, 0, sizeof sa6);
  if (inet_pton(AF_INET, host, &sa4.sin_addr) == 1) {
    sa4.sin_family = AF_INET;
    sa4.sin_port = htons((uint16_t)port);
    sa = (struct sockaddr *)(void *)&sa4;
  } else if (inet_pton(AF_INET6, host, &sa6.sin6_addr) == 1) {
    sa6.sin6_family = AF_INET6;
    sa6.sin6_port = htons((uint16_t)port);
    sa = (struct sockaddr *)(void *)&sa6;
    flags |= MHD_USE_IPv6;
  } else {
    return luaL_error(L, "httpd.listen: 'host' must be a numeric IPv4 or IPv6 address, got '%s'", host);
  }

  /* Created closed, then acquired: a failure below leaves a valid handle
   * that __gc can release. */
  s = (pd_httpd *)pd_newuserdata(L, sizeof *s);
  memset(s, 0, sizeof *s);
  s->handler_ref = LUA_NOREF;
  s->max_body = (size_t)max_body;
  s->request_timeout = (double)request_timeout;
  s->conn_limit = (unsigned)limit;
  s->log_errors = log_errors;
  s->ipv6 = sa->sa_family == AF_INET6;
  snprintf(s->host, sizeof s->host, "%s", host);
  luaL_setmetatable(L, PD_HTTPD_MT);

  lua_getfield(L, 1, "handler");
  s->handler_ref = luaL_ref(L, LUA_REGISTRYINDEX);

  errno = 0;
  /* MHD's own total cap leaves room for connections we shut down (evicted
   * or late) that MHD has not closed yet; ours is enforced by accept_cb. */
  s->daemon = MHD_start_daemon(flags, (uint16_t)port, pd_httpd_accept_cb, s, pd_httpd_access_cb, s,
                               MHD_OPTION_SOCK_ADDR, sa,
                               MHD_OPTION_CONNECTION_LIMIT, (unsigned int)(2 * limit + 16),
                               MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned int)per_ip,
                               MHD_OPTION_NOTIFY_CONNECTION, pd_httpd_notify_cb, (void *)s,
                               MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)timeout,
                               MHD_OPTION_URI_LOG_CALLBACK, pd_httpd_uri_cb, (void *)s,
                               MHD_OPTION_NOTIFY_COMPLETED, pd_httpd_done_cb, (void *)s,
                               MHD_OPTION_END);
  err = errno;
  if (!s->daemon) {
    pd_httpd_release(L, s);
    lua_pushnil(L);
    lua_pushfstring(L, "httpd.listen: cannot listen on %s port %d%s%s", host, (int)port, err ? ": " : "",
                    err ? strerror(err) : "");
    return 2;
  }
  di = MHD_get_daemon_info(s->daemon, MHD_DAEMON_INFO_BIND_PORT);
  s->port = di ? di->port : (unsigned)port;
  return 1;
}

/* srv:port() -> the port actually bound (useful with port = 0). */
static int pd_httpd_port(lua_State *L) {
  pd_httpd *s = pd_httpd_check(L);
  lua_pushinteger(L, (lua_Integer)s->port);
  return 1;
}

/* srv:host() -> the address it listens on, as given to listen. */
static int pd_httpd_host(lua_State *L) {
  pd_httpd *s = pd_httpd_check(L);
  lua_pushstring(L, s->host);
  return 1;
}

#if PD_HTTPD_FAULTS
/* Resumes the held connections whose answer is due (MHD then calls the access
 * callback, which queues it). Returns -2 when none was due and none is left,
 * -1 when some were resumed and none is left, else the seconds until the next. */
static double pd_httpd_resume_due(pd_httpd *s) {
  pd_hreq **pp = &s->held;
  double now = pd_clock_mono(), next = -1;
  int resumed = 0;
  while (*pp) {
    pd_hreq *rq = *pp;
    if (rq->due <= now) {
      *pp = rq->next_held;
      rq->next_held = NULL;
      s->held_count--;
      MHD_resume_connection(rq->conn);
      resumed = 1;
    } else {
      if (next < 0 || rq->due - now < next) next = rq->due - now;
      pp = &rq->next_held;
    }
  }
  if (next < 0) return resumed ? -1 : -2;
  return next;
}
#endif

/* The body of step(): serve what is ready, waiting at most `ms`. Handlers run
 * on L from inside MHD_run_wait; a close requested by a handler is carried
 * out once MHD has returned. Returns 0 if MHD reported a failure. */
static int pd_httpd_serve(lua_State *L, pd_httpd *s, int32_t ms) {
  enum MHD_Result r;
  s->in_step = 1;
  s->L = L;
  /* Connections past their deadline go first; MHD closes them in this pass.
   * The wait ends no later than the next deadline. */
  pd_httpd_sweep(s);
  if (s->oldest) {
    double next = s->oldest->deadline - pd_clock_mono();
    if (next < 0) next = 0;
    if (ms < 0 || next * 1000 < (double)ms) ms = (int32_t)(next * 1000) + 1;
  }
#if PD_HTTPD_FAULTS
  {
    double next = pd_httpd_resume_due(s);
    if (next >= 0 && (ms < 0 || next * 1000 < (double)ms)) ms = (int32_t)(next * 1000) + 1;
  }
  r = MHD_run_wait(s->daemon, ms);
  if (r == MHD_YES && pd_httpd_resume_due(s) != -2) r = MHD_run(s->daemon);
#else
  r = MHD_run_wait(s->daemon, ms);
#endif
  if (r == MHD_YES && pd_httpd_sweep(s) > 0) r = MHD_run(s->daemon);
  s->L = NULL;
  s->in_step = 0;
  if (s->close_pending) pd_httpd_release(L, s);
  return r == MHD_YES;
}

/* srv:step([seconds = 0]) -> true. Waits for activity at most that long
 * (a negative value waits indefinitely) and processes it. */
static int pd_httpd_step(lua_State *L) {
  pd_httpd *s = pd_httpd_check(L);
  lua_Number t = luaL_optnumber(L, 2, 0);
  int32_t ms;
  if (s->in_step) return luaL_error(L, "server:step called from inside its own handler");
  if (t < 0) ms = -1;
  else if (t * 1000 >= (lua_Number)INT32_MAX) ms = INT32_MAX;
  else ms = (int32_t)(t * 1000);
  if (!pd_httpd_serve(L, s, ms)) return luaL_error(L, "httpd: event loop failure");
  lua_pushboolean(L, 1);
  return 1;
}

/* srv:run(): serve until srv:stop() (or close) is called, typically from a
 * handler. A stop requested before run() started does not count. */
static int pd_httpd_run(lua_State *L) {
  pd_httpd *s = pd_httpd_check(L);
  if (s->in_step) return luaL_error(L, "server:run called from inside its own handler");
  s->stop_requested = 0;
  while (!s->stop_requested && s->daemon) {
    if (!pd_httpd_serve(L, s, 250)) return luaL_error(L, "httpd: event loop failure");
  }
  s->stop_requested = 0;
  lua_pushboolean(L, 1);
  return 1;
}

/* srv:stop(): makes run() return after the current request. */
static int pd_httpd_stop(lua_State *L) {
  pd_httpd *s = pd_httpd_check(L);
  s->stop_requested = 1;
  return 0;
}

/* srv:counters() -> { open (connections now), timed_out (shut down at their
 * request deadline), evicted (shut down to make room at connection_limit),
 * refused (turned away at connection_limit), bad_request (framing or path
 * refused with 400) }: what an operator needs to see an attack. MHD's
 * per-address refusals are not counted (MHD does not report them). */
static int pd_httpd_counters(lua_State *L) {
  pd_httpd *s = pd_httpd_check(L);
  lua_createtable(L, 0, 5);
  lua_pushinteger(L, (lua_Integer)s->open);
  lua_setfield(L, -2, "open");
  lua_pushinteger(L, (lua_Integer)s->timed_out);
  lua_setfield(L, -2, "timed_out");
  lua_pushinteger(L, (lua_Integer)s->evicted);
  lua_setfield(L, -2, "evicted");
  lua_pushinteger(L, (lua_Integer)s->refused);
  lua_setfield(L, -2, "refused");
  lua_pushinteger(L, (lua_Integer)s->bad_request);
  lua_setfield(L, -2, "bad_request");
  return 1;
}

#if PD_HTTPD_FAULTS
/* srv:stats([reset]) -> { held (answers held back now), peak_in_flight (most
 * requests in flight at once since the start or the last reset) }. */
static int pd_httpd_stats(lua_State *L) {
  pd_httpd *s = pd_httpd_check(L);
  lua_createtable(L, 0, 2);
  lua_pushinteger(L, s->held_count);
  lua_setfield(L, -2, "held");
  lua_pushinteger(L, s->peak_in_flight);
  lua_setfield(L, -2, "peak_in_flight");
  if (lua_toboolean(L, 2)) s->peak_in_flight = 0;
  return 1;
}
#endif

/* The class's release (srv:close(), __gc, __close): stop listening, drop
 * open connections and the handler reference. */
static void pd_httpd_class_release(lua_State *L, void *self) {
  pd_httpd_release(L, (pd_httpd *)self);
}

/* Open while listening and not being closed. */
static int pd_httpd_is_open(const void *self) {
  const pd_httpd *s = (const pd_httpd *)self;
  return s->daemon && !s->close_pending;
}

/* Shows where it listens; there is nothing secret in a server handle. */
static void pd_httpd_describe(lua_State *L, const void *self) {
  const pd_httpd *s = (const pd_httpd *)self;
  if (s->ipv6) lua_pushfstring(L, PD_HTTPD_MT " [%s]:%d", s->host, (int)s->port);
  else lua_pushfstring(L, PD_HTTPD_MT " %s:%d", s->host, (int)s->port);
}

static const luaL_Reg pd_httpd_methods[] = {
  {"port", pd_httpd_port}, {"host", pd_httpd_host}, {"step", pd_httpd_step}, {"run", pd_httpd_run},
  {"stop", pd_httpd_stop}, {"counters", pd_httpd_counters},
#if PD_HTTPD_FAULTS
  {"stats", pd_httpd_stats},
#endif
  {NULL, NULL},
};

static const pd_class pd_httpd_class = { PD_HTTPD_MT, pd_httpd_methods, pd_httpd_class_release, pd_httpd_is_open,
                                         pd_httpd_describe };

/* httpd.now(): the same monotonic clock as held answers, so the sandbox can
 * keep its 2-second rate windows without LuaSocket (os.time() only has whole
 * seconds). */
static int pd_httpd_lnow(lua_State *L) {
  lua_pushnumber(L, (lua_Number)pd_clock_mono());
  return 1;
}

/* Module entry: the server metatable and { listen, now, _VERSION }. Starts nothing. */
PD_EXPORT int PD_HTTPD_LUAOPEN(lua_State *L) {
  pd_class_register(L, &pd_httpd_class);
  lua_newtable(L);
  lua_pushcfunction(L, pd_httpd_listen);
  lua_setfield(L, -2, "listen");
  lua_pushcfunction(L, pd_httpd_lnow);
  lua_setfield(L, -2, "now");
  lua_pushliteral(L, "0.1.0");
  lua_setfield(L, -2, "_VERSION");
  return 1;
}
