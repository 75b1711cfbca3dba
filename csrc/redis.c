/* luaopen_pipedrive_hiredis: one blocking connection to Redis over hiredis.
 *
 * The plain-Lua backend of pipedrive.redis (lua/pipedrive/redis.lua), which
 * owns everything above the wire: options, AUTH/SELECT, reconnects, the
 * retry interval, error objects. This module only moves one command and its
 * reply, so it stays small enough to check by reading:
 *
 *   local conn, msg = hiredis.connect{ host = "127.0.0.1", port = 6379, timeout = 1 }
 *                                  -- or { path = "/run/redis.sock", timeout = 1 }
 *   conn:command{ "SET", "k", "v" } -> reply | nil, message, kind
 *       kind "io":    the connection is broken (refused, reset, timed out); the
 *                     caller drops it and connects again
 *       kind "reply": Redis answered an error (message is its text), or the
 *                     reply could not be represented (nested too deeply)
 *   conn:forked()  -> true when the connection was made by another process
 *                     (a fork): its socket must not be used here
 *   conn:close()   idempotent; also __gc and __close
 *
 * Replies: status and bulk strings -> Lua strings (binary safe), integers ->
 * Lua integers, arrays -> sequences, nil -> false. An error reply nested in an
 * array fails the whole command with that error's text (kind "reply").
 *
 * No Lua error is raised while hiredis holds memory we would lose: the
 * argument vector is built and checked in Lua-owned memory first, and a reply
 * is held by a box whose __gc frees it while it is converted. The socket
 * timeout (SO_RCVTIMEO/SO_SNDTIMEO via redisSetTimeout) bounds every call. */
#include "pd.h"

#include <sys/time.h>
#include <sys/types.h>
#include <unistd.h>
#include <hiredis/hiredis.h>

#define PD_REDIS_MT "pipedrive.hiredis"
/* The largest command we send (all arguments together): Redis' own default
 * limit for one bulk string, so nothing legitimate is refused. */
#define PD_REDIS_COMMAND_MAX ((size_t)512 * 1024 * 1024)
/* The most arguments in one command. */
#define PD_REDIS_ARGS_MAX 1048576
/* How deeply arrays may nest in a reply (Redis' own replies nest 2 or 3 deep;
 * a script may build deeper ones, and each level costs Lua stack). */
#define PD_REDIS_DEPTH_MAX 32
/* The longest timeout we accept (seconds): a day. */
#define PD_REDIS_TIMEOUT_MAX 86400.0

typedef struct pd_redis {
  redisContext *ctx;
  pid_t pid; /* the process that connected */
} pd_redis;

/* A reply held across code that may raise (pushing strings and tables):
 * the box's __gc frees it if an error unwinds past the converter. */
typedef struct pd_redis_rbox {
  redisReply *reply;
} pd_redis_rbox;

static char pd_redis_rbox_key;

/* Frees the connection; close, __gc and __close all land here, so it must
 * be idempotent. */
static void pd_redis_release(lua_State *L, void *self) {
  pd_redis *r = (pd_redis *)self;
  (void)L;
  if (r->ctx) {
    redisFree(r->ctx);
    r->ctx = NULL;
  }
}

/* tostring's open/closed state. */
static int pd_redis_is_open(const void *self) {
  return ((const pd_redis *)self)->ctx != NULL;
}

/* __gc of a reply box: frees a reply an error left behind. */
static int pd_redis_rbox_gc(lua_State *L) {
  pd_redis_rbox *b = (pd_redis_rbox *)lua_touserdata(L, 1);
  if (b && b->reply) {
    freeReplyObject(b->reply);
    b->reply = NULL;
  }
  return 0;
}

/* Pushes an empty reply box (its metatable made once per state). Pushed
 * before hiredis is called, so a memory error here costs nothing. */
static pd_redis_rbox *pd_redis_rbox_new(lua_State *L) {
  pd_redis_rbox *b = (pd_redis_rbox *)pd_newuserdata(L, sizeof *b);
  b->reply = NULL;
  lua_pushlightuserdata(L, (void *)&pd_redis_rbox_key);
  lua_rawget(L, LUA_REGISTRYINDEX);
  lua_setmetatable(L, -2);
  return b;
}

/* Reads a timeout in seconds from field `timeout` of the table at idx into tv;
 * raises for anything but a number in (0, a day]. */
static void pd_redis_timeout(lua_State *L, int idx, struct timeval *tv) {
  double t;
  lua_getfield(L, idx, "timeout");
  if (lua_type(L, -1) != LUA_TNUMBER) pd_raise(L, "hiredis.connect: timeout must be a number");
  t = (double)lua_tonumber(L, -1);
  lua_pop(L, 1);
  if (!(t > 0 && t <= PD_REDIS_TIMEOUT_MAX)) pd_raise(L, "hiredis.connect: timeout must be > 0 and <= 86400");
  tv->tv_sec = (time_t)t;
  tv->tv_usec = (suseconds_t)((t - (double)tv->tv_sec) * 1e6);
  if (tv->tv_sec == 0 && tv->tv_usec == 0) tv->tv_usec = 1;
}

/* hiredis.connect{ host, port, timeout } or { path, timeout } -> conn, or
 * nil, message. The object is pushed before connecting, so nothing that
 * raises can run while a redisContext is unowned; the connect itself is
 * bounded by the timeout, which then also applies to every read and write. */
static int pd_redis_connect(lua_State *L) {
  struct timeval tv;
  const char *host = NULL, *path = NULL;
  lua_Integer port = 6379;
  pd_redis *r;
  redisContext *c;
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  pd_redis_timeout(L, 1, &tv);
  lua_getfield(L, 1, "path");
  lua_getfield(L, 1, "host");
  lua_getfield(L, 1, "port"); /* slots 2, 3, 4 keep the strings alive */
  if (!lua_isnil(L, 2)) {
    if (lua_type(L, 2) != LUA_TSTRING) pd_raise(L, "hiredis.connect: path must be a string");
    path = lua_tostring(L, 2);
  } else {
    int isint = 0;
    if (lua_type(L, 3) != LUA_TSTRING) pd_raise(L, "hiredis.connect: host must be a string");
    host = lua_tostring(L, 3);
    if (!lua_isnil(L, 4)) port = lua_tointegerx(L, 4, &isint);
    if (!lua_isnil(L, 4) && (!isint || port < 1 || port > 65535))
      pd_raise(L, "hiredis.connect: port must be an integer in 1..65535");
  }
  r = (pd_redis *)pd_newuserdata(L, sizeof *r);
  r->ctx = NULL;
  r->pid = getpid();
  luaL_getmetatable(L, PD_REDIS_MT);
  lua_setmetatable(L, -2);
  c = path ? redisConnectUnixWithTimeout(path, tv) : redisConnectWithTimeout(host, (int)port, tv);
  if (!c) {
    lua_pushnil(L);
    lua_pushliteral(L, "cannot allocate a connection");
    return 2;
  }
  r->ctx = c; /* owned by the object from here on */
  if (c->err || redisSetTimeout(c, tv) != REDIS_OK) {
    lua_pushnil(L);
    lua_pushstring(L, c->errstr[0] ? c->errstr : "cannot connect");
    pd_redis_release(L, r);
    return 2;
  }
  return 1;
}

/* The first depth violation in a reply tree, checked before converting so
 * the conversion itself has nothing to refuse: returns 0 when the tree is
 * fine, 1 when it nests deeper than PD_REDIS_DEPTH_MAX; *err is set to the
 * first error reply found inside an array. */
static int pd_redis_check(const redisReply *rep, int depth, const redisReply **err) {
  size_t i;
  if (rep->type == REDIS_REPLY_ERROR) {
    if (!*err) *err = rep;
    return 0;
  }
  if (rep->type != REDIS_REPLY_ARRAY) return 0;
  if (depth >= PD_REDIS_DEPTH_MAX) return 1;
  for (i = 0; i < rep->elements; i++)
    if (rep->element[i] && pd_redis_check(rep->element[i], depth + 1, err)) return 1;
  return 0;
}

/* Pushes a checked reply as a Lua value (mapping in the header). May raise
 * on memory exhaustion only; the caller's box frees the reply then. */
static void pd_redis_push(lua_State *L, const redisReply *rep) {
  size_t i;
  pd_checkstack(L, 3, "hiredis command");
  if (!rep) {
    lua_pushboolean(L, 0);
    return;
  }
  switch (rep->type) {
    case REDIS_REPLY_STRING:
    case REDIS_REPLY_STATUS:
    case REDIS_REPLY_ERROR:
      lua_pushlstring(L, rep->str ? rep->str : "", rep->str ? rep->len : 0);
      break;
    case REDIS_REPLY_INTEGER:
      lua_pushinteger(L, (lua_Integer)rep->integer);
      break;
    case REDIS_REPLY_ARRAY:
      lua_createtable(L, rep->elements > 1000000 ? 1000000 : (int)rep->elements, 0);
      for (i = 0; i < rep->elements; i++) {
        pd_redis_push(L, rep->element[i]);
        lua_rawseti(L, -2, (int)(i + 1));
      }
      break;
    default: /* REDIS_REPLY_NIL */
      lua_pushboolean(L, 0);
      break;
  }
}

/* Pushes nil, message, kind and returns 3: the two failures of a command. */
static int pd_redis_fail(lua_State *L, const char *msg, size_t len, const char *kind) {
  lua_pushnil(L);
  lua_pushlstring(L, msg, len);
  lua_pushstring(L, kind);
  return 3;
}

/* conn:command{ name, arg... } -> reply, or nil, message, kind. Every
 * argument must be a string (pipedrive.redis formats numbers); the vectors
 * hiredis reads live in a userdata, the strings in the argument table, so a
 * raise while building them loses nothing, and hiredis runs only once they
 * are complete. */
static int pd_redis_command(lua_State *L) {
  pd_redis *r = (pd_redis *)luaL_checkudata(L, 1, PD_REDIS_MT);
  size_t n, i, total = 0;
  const char **argv;
  size_t *lens;
  pd_redis_rbox *box;
  const redisReply *nested = NULL;
  luaL_checktype(L, 2, LUA_TTABLE);
  lua_settop(L, 2);
  if (!r->ctx) return pd_raise(L, "hiredis command: connection is closed");
  n = (size_t)lua_rawlen(L, 2);
  if (n == 0 || n > PD_REDIS_ARGS_MAX) return pd_raise(L, "hiredis command: 1 to %d arguments expected", PD_REDIS_ARGS_MAX);
  argv = (const char **)pd_newuserdata(L, n * sizeof *argv); /* slot 3 */
  lens = (size_t *)pd_newuserdata(L, n * sizeof *lens);       /* slot 4 */
  for (i = 0; i < n; i++) {
    lua_rawgeti(L, 2, (int)(i + 1));
    if (lua_type(L, -1) != LUA_TSTRING)
      return pd_raise(L, "hiredis command: argument %d is a %s, not a string", (int)(i + 1), luaL_typename(L, -1));
    argv[i] = lua_tolstring(L, -1, &lens[i]); /* the table keeps it alive */
    lua_pop(L, 1);
    total += lens[i];
    if (total > PD_REDIS_COMMAND_MAX) return pd_raise(L, "hiredis command: command longer than 512 MiB");
  }
  box = pd_redis_rbox_new(L); /* slot 5 */
  if (r->pid != getpid()) return pd_redis_fail(L, "connection was made by another process", 38, "io");
  box->reply = (redisReply *)redisCommandArgv(r->ctx, (int)n, argv, lens);
  if (!box->reply) {
    const char *e = r->ctx->errstr[0] ? r->ctx->errstr : "connection lost";
    return pd_redis_fail(L, e, strlen(e), "io");
  }
  if (box->reply->type == REDIS_REPLY_ERROR) nested = box->reply;
  else if (pd_redis_check(box->reply, 0, &nested)) {
    freeReplyObject(box->reply);
    box->reply = NULL;
    return pd_redis_fail(L, "reply nested too deeply", 23, "reply");
  }
  if (nested) {
    int ret = pd_redis_fail(L, nested->str ? nested->str : "error", nested->str ? nested->len : 5, "reply");
    freeReplyObject(box->reply);
    box->reply = NULL;
    return ret;
  }
  pd_redis_push(L, box->reply);
  freeReplyObject(box->reply);
  box->reply = NULL;
  return 1;
}

/* conn:forked() -> whether another process made this connection: after a
 * fork both would share one socket and read each other's replies. */
static int pd_redis_forked(lua_State *L) {
  pd_redis *r = (pd_redis *)luaL_checkudata(L, 1, PD_REDIS_MT);
  lua_pushboolean(L, r->pid != getpid());
  return 1;
}

static const luaL_Reg pd_redis_methods[] = {
    {"command", pd_redis_command},
    {"forked", pd_redis_forked},
    {NULL, NULL},
};

static const pd_class pd_redis_class = { PD_REDIS_MT, pd_redis_methods, pd_redis_release, pd_redis_is_open, NULL };

PD_EXPORT int luaopen_pipedrive_hiredis(lua_State *L);

/* The module: connect, plus the metatables (class and reply box) made once
 * per Lua state. */
PD_EXPORT int luaopen_pipedrive_hiredis(lua_State *L) {
  static const luaL_Reg fns[] = {
      {"connect", pd_redis_connect},
      {NULL, NULL},
  };
  pd_class_register(L, &pd_redis_class);
  lua_pushlightuserdata(L, (void *)&pd_redis_rbox_key);
  lua_rawget(L, LUA_REGISTRYINDEX);
  if (lua_isnil(L, -1)) {
    lua_newtable(L);
    lua_pushcfunction(L, pd_redis_rbox_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushlightuserdata(L, (void *)&pd_redis_rbox_key);
    lua_pushvalue(L, -2);
    lua_rawset(L, LUA_REGISTRYINDEX);
  }
  lua_pop(L, 1);
  luaL_newlib(L, fns);
  return 1;
}
