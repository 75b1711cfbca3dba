/* date.c: the one home of date parsing in the project.
 *   core.iso8601(s) -> seconds since the epoch, or nil
 * plus pd_http_date, the IMF-fixdate of Retry-After (response.c).
 * Both count days with pd_days_from_civil, so neither calls timegm (not in
 * C99 or POSIX) nor mktime (local time zone). Included by core.c. */
#include <stdio.h>
#include <string.h>

#include "pd.h"
#include "date.h"

/* Days from 1970-01-01 to the proleptic Gregorian date y-m-d (m 1..12): the
 * era/day-of-era count, exact for any year and free of time zones. */
static long pd_days_from_civil(long y, int m, int d) {
  long era, yoe, doy, doe;
  y -= m <= 2;
  era = (y >= 0 ? y : y - 399) / 400;
  yoe = y - era * 400;
  doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
  doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + doe - 719468;
}

/* Whether d is a day of month m in year y (leap years included): a date
 * that names no day is refused rather than rolled over into the next month. */
static int pd_date_valid(long y, int m, int d) {
  static const int mdays[] = { 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
  if (m < 1 || m > 12 || d < 1 || d > mdays[m - 1]) return 0;
  if (m == 2 && d == 29 && !((y % 4 == 0 && y % 100 != 0) || y % 400 == 0)) return 0;
  return 1;
}

/* Reads exactly n decimal digits at *p (advancing it); -1 when they are not there. */
static long pd_date_digits(const char **p, const char *end, int n) {
  long v = 0;
  int i;
  if (end - *p < n) return -1;
  for (i = 0; i < n; i++) {
    char c = (*p)[i];
    if (c < '0' || c > '9') return -1;
    v = v * 10 + (c - '0');
  }
  *p += n;
  return v;
}

/* Parses what Pipedrive and the sandbox write as a date or time:
 * "YYYY-MM-DD" (midnight UTC), or "YYYY-MM-DD[T or space]HH:MM:SS" with an
 * optional ".fraction" and an optional zone "Z", "z", "+hh:mm", "+hhmm"
 * (UTC when absent, as v1 writes its times). Stores seconds since the epoch
 * in *whole and the fraction in *frac; 0 for anything else, including a day
 * that does not exist. Seconds up to 60 (leap second) are accepted. */
static int pd_iso8601(const char *s, size_t n, long long *whole, double *frac) {
  const char *p = s, *end = s + n;
  long y, mo, d, h = 0, mi = 0, sec = 0, off = 0;
  *frac = 0;
  if ((y = pd_date_digits(&p, end, 4)) < 0 || p >= end || *p++ != '-') return 0;
  if ((mo = pd_date_digits(&p, end, 2)) < 0 || p >= end || *p++ != '-') return 0;
  if ((d = pd_date_digits(&p, end, 2)) < 0 || !pd_date_valid(y, (int)mo, (int)d)) return 0;
  if (p < end) {
    if (*p != 'T' && *p != ' ') return 0;
    p++;
    if ((h = pd_date_digits(&p, end, 2)) < 0 || p >= end || *p++ != ':') return 0;
    if ((mi = pd_date_digits(&p, end, 2)) < 0 || p >= end || *p++ != ':') return 0;
    if ((sec = pd_date_digits(&p, end, 2)) < 0) return 0;
    if (h > 23 || mi > 59 || sec > 60) return 0;
    if (p < end && *p == '.') {
      double scale = 0.1;
      const char *digits = ++p;
      while (p < end && *p >= '0' && *p <= '9') {
        *frac += (*p - '0') * scale;
        scale /= 10;
        p++;
      }
      if (p == digits) return 0;
    }
    if (p < end && (*p == 'Z' || *p == 'z')) {
      p++;
    } else if (p < end && (*p == '+' || *p == '-')) {
      int sign = *p++ == '+' ? 1 : -1;
      long oh, om;
      if ((oh = pd_date_digits(&p, end, 2)) < 0) return 0;
      if (p < end && *p == ':') p++;
      if ((om = pd_date_digits(&p, end, 2)) < 0) return 0;
      off = sign * (oh * 3600 + om * 60);
    }
    if (p != end) return 0;
  }
  *whole = (long long)pd_days_from_civil(y, (int)mo, (int)d) * 86400 + h * 3600 + mi * 60 + sec - off;
  return 1;
}

/* core.iso8601(s): seconds since the epoch, an integer when there is no
 * fraction (a float otherwise), or nil for anything that is not such a date.
 * Only strings are dates; other values give nil rather than raising, since
 * callers pass whatever a webhook or record carried. */
static int pd_date_iso8601_l(lua_State *L) {
  size_t n;
  const char *s;
  long long whole;
  double frac;
  if (lua_type(L, 1) != LUA_TSTRING) {
    lua_pushnil(L);
    return 1;
  }
  s = lua_tolstring(L, 1, &n);
  if (n > 64 || !pd_iso8601(s, n, &whole, &frac)) {
    lua_pushnil(L);
    return 1;
  }
  if (frac > 0) lua_pushnumber(L, (lua_Number)whole + frac);
  else lua_pushinteger(L, (lua_Integer)whole);
  return 1;
}

/* Seconds since the epoch of an IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT"),
 * the only date form RFC 9110 lets servers send in Retry-After. */
static int pd_http_date(const char *s, double *out) {
  static const char months[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
  char wd[4], mon[4];
  int day, year, hh, mi, ss;
  const char *at;
  if (sscanf(s, "%3[A-Za-z], %2d %3[A-Za-z] %4d %2d:%2d:%2d", wd, &day, mon, &year, &hh, &mi, &ss) != 7) return 0;
  at = strstr(months, mon);
  if (!at || strlen(mon) != 3 || (at - months) % 3) return 0;
  if (year < 1970 || year > 9999 || day < 1 || day > 31 || hh > 23 || mi > 59 || ss > 60 || hh < 0 || mi < 0 ||
      ss < 0)
    return 0;
  *out = (double)pd_days_from_civil(year, (int)(at - months) / 3 + 1, day) * 86400.0 + hh * 3600.0 + mi * 60.0 + ss;
  return 1;
}

/* Registers iso8601 in the module table on the top of the stack. */
static void pd_date_open(lua_State *L) {
  lua_pushcfunction(L, pd_date_iso8601_l);
  lua_setfield(L, -2, "iso8601");
}
