/* libFuzzer harness: the server of csrc/httpd.c under the sandbox and the
 * webhook listener, in its fault build (csrc/httpd_faults.c,
 * pipedrive.sandbox.httpd: the listener's code plus the fault options, so
 * both are covered): raw request bytes in, the request table
 * a handler sees, and what the server does with the handler's answer.
 *
 * One server on 127.0.0.1 (max_body 512) lives for the whole run; each input
 * is sent over a fresh TCP connection, the write side is shut, and srv:step
 * runs until the server has closed the connection or gone quiet (a
 * kept-alive connection or an incomplete request stays open). Input: fields separated
 * by 0xFF (see harness.h):
 *   field 0   control: [0] what the handler does (answer, raise, "drop",
 *             return junk, a fault answer cut short or dripped), [1..2] the
 *             status it returns (for fault answers: which options, how many bytes)
 *   field 1   a response header name, 0xFE, its value (may hold CR/LF)
 *   rest      the raw request (0xFF bytes in it are kept)
 * Checks, in the handler: method, path, raw_path, query_string, version,
 * body and remote_addr are strings; raw_path holds no '?' and no encoded NUL
 * (%00); header names are lower case; the body fits max_body; the framing is
 * unambiguous (one Content-Length of digits or "Transfer-Encoding: chunked",
 * never both: repeated headers arrive joined by ", "). On the wire: the answer
 * starts "HTTP/1.", and a header value holding CR or LF never splits the
 * response (the marker header after the line break must not appear). */
#include "httpd_faults.c"
#include "harness.h"

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#define FZ_MAX_BODY 512

static lua_State *fz_L;
static int fz_srv; /* stack index of the server */
static unsigned fz_port;

/* The current input's handler instructions. */
static unsigned fz_mode, fz_status;
static const char *fz_hname, *fz_hvalue;
static size_t fz_hname_n, fz_hvalue_n;

static int fz_handler(lua_State *L) {
  size_t n, k;
  const char *s;
  static const char *const fields[] = { "method", "path", "raw_path", "query_string", "version", "body",
                                        "remote_addr" };
  for (k = 0; k < sizeof fields / sizeof *fields; k++) {
    lua_getfield(L, 1, fields[k]);
    FZ_CHECK(lua_type(L, -1) == LUA_TSTRING, "req.%s is not a string", fields[k]);
    lua_pop(L, 1);
  }
  lua_getfield(L, 1, "raw_path");
  FZ_CHECK(!strchr(lua_tostring(L, -1), '?'), "raw_path holds a '?'");
  FZ_CHECK(!strstr(lua_tostring(L, -1), "%00"), "a path with an encoded NUL reached the handler");
  lua_getfield(L, 1, "body");
  FZ_CHECK(lua_rawlen(L, -1) <= FZ_MAX_BODY, "body over max_body reached the handler");
  lua_getfield(L, 1, "headers");
  lua_getfield(L, -1, "content-length");
  lua_getfield(L, -2, "transfer-encoding");
  if (lua_isstring(L, -2)) {
    s = lua_tolstring(L, -2, &n);
    FZ_CHECK(n > 0 && strspn(s, "0123456789") == n, "a request with Content-Length '%s' reached the handler", s);
    FZ_CHECK(lua_isnil(L, -1), "Content-Length with Transfer-Encoding reached the handler");
  }
  if (lua_isstring(L, -1))
    FZ_CHECK(strcasecmp(lua_tostring(L, -1), "chunked") == 0, "Transfer-Encoding '%s' reached the handler",
             lua_tostring(L, -1));
  lua_pop(L, 3);
  lua_getfield(L, 1, "headers");
  FZ_CHECK(lua_type(L, -1) == LUA_TTABLE, "req.headers");
  lua_pushnil(L);
  while (lua_next(L, -2)) {
    s = lua_tolstring(L, -2, &n);
    for (k = 0; k < n; k++) FZ_CHECK(!(s[k] >= 'A' && s[k] <= 'Z'), "header name not lower case: %s", s);
    FZ_CHECK(lua_type(L, -1) == LUA_TSTRING, "header value not a string");
    lua_pop(L, 1);
  }
  lua_settop(L, 1);
  switch (fz_mode % 7) {
    case 0:
    case 1:
      lua_pushinteger(L, (lua_Integer)fz_status);
      lua_newtable(L);
      lua_pushlstring(L, fz_hname, fz_hname_n);
      lua_pushlstring(L, fz_hvalue, fz_hvalue_n);
      lua_rawset(L, -3);
      lua_getfield(L, 1, "raw_path"); /* echo something of the request */
      return 3;
    case 2: return luaL_error(L, "handler fails on purpose");
    case 3: lua_pushliteral(L, "drop"); return 1;
    case 4: lua_pushliteral(L, "not a status"); return 1;
    case 6: /* a fault answer: body cut after some bytes, or dripped (no pause) */
      lua_pushinteger(L, 200);
      lua_pushnil(L);
      lua_getfield(L, 1, "raw_path");
      lua_pushliteral(L, "-a-body-long-enough-to-cut-and-drip");
      lua_concat(L, 2);
      lua_createtable(L, 0, 3);
      if (fz_status & 1) {
        lua_pushinteger(L, (lua_Integer)(fz_status >> 1) % 64);
        lua_setfield(L, -2, "cut");
      }
      if (fz_status & 2) {
        lua_pushinteger(L, 1 + (lua_Integer)(fz_status >> 2) % 16);
        lua_setfield(L, -2, "drip");
        lua_pushnumber(L, 0);
        lua_setfield(L, -2, "interval");
      }
      return 4;
    default:
      lua_pushinteger(L, 200);
      lua_pushinteger(L, 5); /* not a headers table */
      return 2;
  }
}

/* Creates the server once. */
static void fz_server(void) {
  if (fz_L) return;
  fz_L = fz_open("pipedrive.sandbox.httpd", luaopen_pipedrive_sandbox_httpd);
  lua_getfield(fz_L, 1, "listen");
  lua_createtable(fz_L, 0, 6);
  lua_pushliteral(fz_L, "127.0.0.1");
  lua_setfield(fz_L, -2, "host");
  lua_pushinteger(fz_L, 0);
  lua_setfield(fz_L, -2, "port");
  lua_pushinteger(fz_L, FZ_MAX_BODY);
  lua_setfield(fz_L, -2, "max_body");
  lua_pushinteger(fz_L, 2);
  lua_setfield(fz_L, -2, "connection_timeout");
  lua_pushboolean(fz_L, 0);
  lua_setfield(fz_L, -2, "log_errors");
  lua_pushcfunction(fz_L, fz_handler);
  lua_setfield(fz_L, -2, "handler");
  FZ_CHECK(lua_pcall(fz_L, 1, 2, 0) == LUA_OK && !lua_isnil(fz_L, -2), "listen failed: %s", lua_tostring(fz_L, -1));
  lua_pop(fz_L, 1);
  fz_srv = lua_gettop(fz_L);
  lua_getfield(fz_L, fz_srv, "port");
  lua_pushvalue(fz_L, fz_srv);
  FZ_CHECK(lua_pcall(fz_L, 1, 1, 0) == LUA_OK, "port()");
  fz_port = (unsigned)lua_tointeger(fz_L, -1);
  lua_pop(fz_L, 1);
}

/* srv:step(0) */
static void fz_step(void) {
  lua_getfield(fz_L, fz_srv, "step");
  lua_pushvalue(fz_L, fz_srv);
  lua_pushnumber(fz_L, 0);
  FZ_CHECK(lua_pcall(fz_L, 2, 0, 0) == LUA_OK, "step: %s", lua_tostring(fz_L, -1));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fz_in in = { (const char *)data, (const char *)data + size };
  const char *ctl, *hdr, *req;
  size_t nctl, nhdr, nreq, sent = 0, got = 0;
  char answer[4096];
  struct sockaddr_in sa;
  int fd, i, closed = 0, idle = 0;
  if (!fz_field(&in, &ctl, &nctl) || !fz_field(&in, &hdr, &nhdr)) return 0;
  req = in.p <= in.end ? in.p : in.end;
  nreq = (size_t)(in.end - req);
  fz_mode = fz_at(ctl, nctl, 0);
  fz_status = (fz_at(ctl, nctl, 1) << 8 | fz_at(ctl, nctl, 2)) % 700;
  fz_kv(hdr, nhdr, &fz_hname, &fz_hname_n, &fz_hvalue, &fz_hvalue_n);
  fz_server();

  fd = socket(AF_INET, SOCK_STREAM, 0);
  FZ_CHECK(fd >= 0, "socket");
  memset(&sa, 0, sizeof sa);
  sa.sin_family = AF_INET;
  sa.sin_port = htons((uint16_t)fz_port);
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  FZ_CHECK(connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0, "connect");
  fcntl(fd, F_SETFL, O_NONBLOCK);
  /* Send, serve and read until the server closes the connection. */
  for (i = 0; i < 400 && !closed && idle < (got ? 3 : 8); i++) {
    ssize_t r;
    size_t before = got;
    if (sent < nreq) {
      r = send(fd, req + sent, nreq - sent, MSG_NOSIGNAL);
      if (r > 0) sent += (size_t)r;
      if (sent == nreq) shutdown(fd, SHUT_WR);
    } else if (i == 0) {
      shutdown(fd, SHUT_WR);
    }
    fz_step();
    for (;;) {
      char tmp[4096];
      r = recv(fd, tmp, sizeof tmp, 0);
      if (r > 0) {
        size_t keep = got < sizeof answer - 1 ? sizeof answer - 1 - got : 0;
        memcpy(answer + got, tmp, (size_t)r < keep ? (size_t)r : keep);
        got += (size_t)r < keep ? (size_t)r : keep;
        continue;
      }
      if (r == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) closed = 1;
      break;
    }
    /* A kept-alive connection is not closed by the server, and an
     * incomplete request waits for its timeout: once everything is sent,
     * a few quiet steps end the exchange (the server drops the connection
     * later, when it notices the close or the timeout). */
    idle = sent == nreq && got == before ? idle + 1 : 0;
    if (!closed && idle > 1) {
      struct pollfd p = { fd, POLLIN, 0 };
      poll(&p, 1, 1);
    }
  }
  if (getenv("FZ_DEBUG")) fprintf(stderr, "iterations %d closed %d got %zu\n", i, closed, got);
  close(fd);
  answer[got] = '\0';
  if (got) FZ_CHECK(got >= 7 && memcmp(answer, "HTTP/1.", 7) == 0, "answer is not HTTP: %.60s", answer);
  FZ_CHECK(!strstr(answer, "\nx-injected:"), "a handler's header value split the response");
  /* let the server finish with the connection before the next input */
  for (i = 0; i < 3; i++) fz_step();
  return 0;
}
