/* clock.c: core.now() and core.sleep(seconds), the one clock of the Lua side
 * (the retry loop's backoff and deadline, pacing, the scheduler's timers, the
 * triggers' seen memory, the sandbox). core.now reads clock.h's pd_clock_mono,
 * which multi.c and httpd.c use too. Included by core.c (unity build). */
#include <errno.h>
#include <time.h>
#include "pd.h"
#include "clock.h"

/* core.now(): seconds from CLOCK_MONOTONIC as a float (not wall-clock time). */
static int pd_clock_now(lua_State *L) {
  double t = pd_clock_mono();
  if (t < 0) return luaL_error(L, "clock_gettime failed");
  lua_pushnumber(L, (lua_Number)t);
  return 1;
}

/* core.sleep(seconds): fractional seconds; 0, negative and NaN return at once,
 * more than a day is cut to a day. Resumes after signals (EINTR). */
static int pd_clock_sleep(lua_State *L) {
  double s = (double)luaL_checknumber(L, 1);
  struct timespec ts;
  if (!(s > 0)) return 0;
  if (s > 86400) s = 86400;
  ts.tv_sec = (time_t)s;
  ts.tv_nsec = (long)((s - (double)ts.tv_sec) * 1e9);
  if (ts.tv_nsec > 999999999L) ts.tv_nsec = 999999999L;
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
  return 0;
}

/* Registers now and sleep in the module table on the top of the stack: the
 * retry loop needs a clock that NTP adjustments cannot move backwards. */
static void pd_clock_open(lua_State *L) {
  lua_pushcfunction(L, pd_clock_now);
  lua_setfield(L, -2, "now");
  lua_pushcfunction(L, pd_clock_sleep);
  lua_setfield(L, -2, "sleep");
}
