/* Many transfers at once through libcurl's multi interface:
 *   m = core.multi_new(opts)       the same options as core.http_new
 *   id = m:add(req)                queues { method, url, headers, body }; misuse raises
 *   ... = m:step(seconds)          drives the transfers, waiting at most that long
 *                                  for one to finish; returns the finished ids
 *   res | nil, err = m:result(id)  the outcome of a finished transfer (frees its slot)
 *   m:remove(id)                   abandons a transfer (running or finished)
 *   m:pending()                    transfers added and not yet collected
 *   m:close()                      idempotent; also __gc and __close
 * Each slot is a pd_http (http.h), so requests are
 * loaded, and answers and errors pushed, by exactly the code h:perform uses.
 * The Lua scheduler (lua/pipedrive/scheduler.lua) decides what to add and who
 * gets which answer; this file only moves bytes.
 *
 * Connections are kept by the multi handle and shared by its transfers, so
 * consecutive transfers to one host reuse them. Slots and their easy handles
 * are kept after use and reused. No Lua code runs while libcurl is on the
 * stack: m:add loads the request into C before curl_multi_add_handle, and
 * m:step builds its results only after curl_multi_perform returned. */

#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <curl/curl.h>

#include "pd.h"
#include "clock.h"
#include "http.h"

#define PD_MULTI_MT "pipedrive.multi"
/* A bound on slots, far above any sane concurrency: it stops a loop that adds
 * without ever collecting from eating the process. */
#define PD_MULTI_MAX_SLOTS 4096

enum { PD_SLOT_FREE = 0, PD_SLOT_RUNNING, PD_SLOT_DONE, PD_SLOT_REPORTED };

typedef struct pd_slot {
  pd_http http; /* easy handle, request and answer buffers */
  int state;
  CURLcode rc;
} pd_slot;

/* `multi` is NULL once closed. `slots` grows as needed (pointers, so a slot's
 * address, which libcurl holds as CURLOPT_PRIVATE, never moves). */
typedef struct pd_multi {
  CURLM *multi;
  pd_slot **slots;
  int nslots;
  int active; /* slots not FREE */
  pd_http tmpl; /* options copied into each new slot; never has an easy handle */
} pd_multi;

/* Detaches a slot's easy handle from the multi handle if it is attached. */
static void pd_multi_detach(pd_multi *m, pd_slot *s) {
  if (s->state == PD_SLOT_RUNNING && m->multi && s->http.easy) curl_multi_remove_handle(m->multi, s->http.easy);
}

/* The one release path for close, __gc and __close. Idempotent. */
static void pd_multi_release(pd_multi *m) {
  int i;
  for (i = 0; i < m->nslots; i++) {
    pd_slot *s = m->slots[i];
    if (!s) continue;
    pd_multi_detach(m, s);
    pd_http_release(&s->http);
    free(s);
    m->slots[i] = NULL;
  }
  free(m->slots);
  m->slots = NULL;
  m->nslots = m->active = 0;
  if (m->multi) {
    curl_multi_cleanup(m->multi);
    m->multi = NULL;
  }
  pd_http_release(&m->tmpl);
}

/* The multi handle of argument 1, refusing a closed one with a clear error
 * instead of letting libcurl see a freed handle. */
static pd_multi *pd_multi_check(lua_State *L) {
  pd_multi *m = (pd_multi *)luaL_checkudata(L, 1, PD_MULTI_MT);
  if (!m->multi) luaL_error(L, "attempt to use a closed pipedrive.multi handle");
  return m;
}

/* core.multi_new([opts]): options as http_new. The options are checked by
 * http_new itself (one place), whose handle then serves as the template. */
static int pd_multi_new(lua_State *L) {
  pd_multi *m;
  pd_http *h;
  lua_settop(L, 1);
  lua_pushcfunction(L, pd_http_new);
  lua_pushvalue(L, 1);
  lua_call(L, 1, 1); /* 2: a checked http handle */
  h = (pd_http *)luaL_checkudata(L, 2, PD_HTTP_MT);
  m = (pd_multi *)pd_newuserdata(L, sizeof *m);
  memset(m, 0, sizeof *m);
  luaL_setmetatable(L, PD_MULTI_MT);
  /* Take over the template's options; its easy handle is not needed. */
  m->tmpl = *h;
  m->tmpl.easy = NULL;
  m->tmpl.req_headers = NULL;
  m->tmpl.url = NULL;
  pd_buf_init(&m->tmpl.body, 0);
  pd_buf_init(&m->tmpl.headers, PD_HTTP_HEADERS_MAX);
  curl_easy_cleanup(h->easy);
  h->easy = NULL;
  h->user_agent = h->ca_file = NULL; /* now owned by m->tmpl */
  m->multi = curl_multi_init();
  if (!m->multi) return luaL_error(L, "multi_new: curl_multi_init failed");
  return 1;
}

/* A free slot (index), creating one when none is free; raises when out of
 * memory or past PD_MULTI_MAX_SLOTS. */
static int pd_multi_free_slot(lua_State *L, pd_multi *m) {
  int i;
  pd_slot *s;
  for (i = 0; i < m->nslots; i++)
    if (m->slots[i] && m->slots[i]->state == PD_SLOT_FREE && m->slots[i]->http.easy && m->slots[i]->http.user_agent)
      return i;
  if (m->nslots >= PD_MULTI_MAX_SLOTS) luaL_error(L, "multi: more than %d transfers not collected", PD_MULTI_MAX_SLOTS);
  if ((m->nslots & (m->nslots - 1)) == 0) { /* 0, 1, 2, 4, ...: grow by doubling */
    int ncap = m->nslots ? m->nslots * 2 : 1;
    pd_slot **p = (pd_slot **)realloc(m->slots, (size_t)ncap * sizeof *p);
    if (!p) luaL_error(L, "multi: out of memory");
    m->slots = p;
  }
  s = (pd_slot *)calloc(1, sizeof *s);
  if (!s) luaL_error(L, "multi: out of memory");
  m->slots[m->nslots++] = s;
  s->http = m->tmpl;
  pd_buf_init(&s->http.body, 0);
  pd_buf_init(&s->http.headers, PD_HTTP_HEADERS_MAX);
  s->http.user_agent = pd_http_strdup(m->tmpl.user_agent, strlen(m->tmpl.user_agent));
  s->http.ca_file = m->tmpl.ca_file ? pd_http_strdup(m->tmpl.ca_file, strlen(m->tmpl.ca_file)) : NULL;
  s->http.easy = curl_easy_init();
  if (!s->http.user_agent || (m->tmpl.ca_file && !s->http.ca_file) || !s->http.easy)
    luaL_error(L, "multi: out of memory"); /* the slot stays FREE; release frees it */
  return m->nslots - 1;
}

/* m:add(req) -> id. The transfer starts at the next m:step. A failure to set
 * libcurl options is reported as that transfer's result, like a network error. */
static int pd_multi_add(lua_State *L) {
  pd_multi *m = pd_multi_check(L);
  int i;
  pd_slot *s;
  CURLcode rc;
  luaL_checktype(L, 2, LUA_TTABLE);
  i = pd_multi_free_slot(L, m);
  s = m->slots[i];
  rc = pd_http_load(L, &s->http, 2);
  if (rc == CURLE_OK) rc = curl_easy_setopt(s->http.easy, CURLOPT_PRIVATE, (void *)s);
  if (rc == CURLE_OK) {
    if (curl_multi_add_handle(m->multi, s->http.easy) != CURLM_OK) rc = CURLE_OUT_OF_MEMORY;
  }
  m->active++;
  if (rc == CURLE_OK) {
    s->state = PD_SLOT_RUNNING;
  } else {
    s->state = PD_SLOT_DONE;
    s->rc = rc;
  }
  lua_pushinteger(L, i + 1);
  return 1;
}

/* Moves the transfers libcurl reports finished to DONE; returns how many. */
static int pd_multi_collect(pd_multi *m) {
  CURLMsg *msg;
  int left, n = 0;
  while ((msg = curl_multi_info_read(m->multi, &left)) != NULL) {
    pd_slot *s = NULL;
    if (msg->msg != CURLMSG_DONE) continue;
    curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&s);
    if (!s) continue;
    s->rc = msg->data.result;
    curl_multi_remove_handle(m->multi, s->http.easy);
    s->state = PD_SLOT_DONE;
    n++;
  }
  return n;
}

/* m:step([seconds = 0]) -> id, id, ... (the transfers that finished since the
 * last step, possibly none). Drives every transfer, and waits for socket
 * activity until one finishes or `seconds` have passed. */
static int pd_multi_step(lua_State *L) {
  pd_multi *m = pd_multi_check(L);
  double wait = luaL_optnumber(L, 2, 0), deadline;
  int running = 0, i, n = 0, ready = 0, spins = 0;
  if (!(wait > 0)) wait = 0;
  if (wait > 86400) wait = 86400;
  deadline = pd_clock_mono() + wait;
  for (i = 0; i < m->nslots; i++)
    if (m->slots[i] && m->slots[i]->state == PD_SLOT_DONE) ready++;
  for (;;) {
    double left;
    int fds = 0;
    if (curl_multi_perform(m->multi, &running) != CURLM_OK) break;
    ready += pd_multi_collect(m);
    if (ready > 0 || running == 0) break;
    left = deadline - pd_clock_mono();
    if (left <= 0) {
      /* No time left to wait, but do what is ready now (a loopback connect
       * completes at once; the request then goes out on the next perform),
       * a bounded number of rounds. */
      if (++spins > 8 || curl_multi_poll(m->multi, NULL, 0, 0, &fds) != CURLM_OK || fds == 0) break;
      continue;
    }
    /* libcurl shortens the wait to its own timers (timeouts, connects). */
    if (curl_multi_poll(m->multi, NULL, 0, (int)(left * 1000) + 1, NULL) != CURLM_OK) break;
  }
  if (!lua_checkstack(L, ready + 1)) return luaL_error(L, "multi: too many results");
  for (i = 0; i < m->nslots; i++) {
    pd_slot *s = m->slots[i];
    if (s && s->state == PD_SLOT_DONE) {
      s->state = PD_SLOT_REPORTED;
      lua_pushinteger(L, i + 1);
      n++;
    }
  }
  return n;
}

/* The slot for an id argument, raising on an id that was never handed out. */
static pd_slot *pd_multi_slot(lua_State *L, pd_multi *m) {
  lua_Integer id = luaL_checkinteger(L, 2);
  if (id < 1 || id > m->nslots || !m->slots[id - 1] || m->slots[id - 1]->state == PD_SLOT_FREE)
    luaL_error(L, "multi: no transfer %d", (int)id);
  return m->slots[id - 1];
}

/* m:result(id) -> { status, headers, body } | nil, err, for a finished
 * transfer; the slot is free again afterwards. */
static int pd_multi_result(lua_State *L) {
  pd_multi *m = pd_multi_check(L);
  pd_slot *s = pd_multi_slot(L, m);
  if (s->state == PD_SLOT_RUNNING) return luaL_error(L, "multi: transfer %d is still running", (int)lua_tointeger(L, 2));
  s->state = PD_SLOT_FREE;
  m->active--;
  return pd_http_finish(L, &s->http, s->rc);
}

/* m:remove(id): drops a transfer, running or finished, without its result. */
static int pd_multi_remove(lua_State *L) {
  pd_multi *m = pd_multi_check(L);
  pd_slot *s = pd_multi_slot(L, m);
  pd_multi_detach(m, s);
  pd_http_clear_request(&s->http);
  s->state = PD_SLOT_FREE;
  m->active--;
  return 0;
}

/* m:pending(): transfers added and not yet collected, so the scheduler and
 * pd.in_flight() can tell that nothing is left behind. */
static int pd_multi_pending(lua_State *L) {
  pd_multi *m = (pd_multi *)luaL_checkudata(L, 1, PD_MULTI_MT);
  lua_pushinteger(L, m->multi ? m->active : 0);
  return 1;
}

/* The class's release (m:close(), __gc, __close): every slot and the
 * multi handle. */
static void pd_multi_class_release(lua_State *L, void *self) {
  (void)L;
  pd_multi_release((pd_multi *)self);
}

/* Open until closed; tostring shows only that: slots hold request headers
 * with credentials. */
static int pd_multi_is_open(const void *self) {
  return ((const pd_multi *)self)->multi != NULL;
}

static const luaL_Reg pd_multi_methods[] = {
  {"add", pd_multi_add},       {"step", pd_multi_step},     {"result", pd_multi_result},
  {"remove", pd_multi_remove}, {"pending", pd_multi_pending}, {NULL, NULL},
};

static const pd_class pd_multi_class = { PD_MULTI_MT, pd_multi_methods, pd_multi_class_release, pd_multi_is_open,
                                         NULL };

/* Adds multi_new to the module table on the top of the stack. */
static void pd_multi_open(lua_State *L) {
  pd_class_register(L, &pd_multi_class);
  lua_pushcfunction(L, pd_multi_new);
  lua_setfield(L, -2, "multi_new");
}
