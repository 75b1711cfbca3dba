/* The one monotonic clock of both C modules (core.now, multi's step deadline,
 * httpd's held answers and httpd.now). A header of static inline functions,
 * because pipedrive.core and pipedrive.httpd are separate shared objects that
 * export nothing but their luaopen_ entry points. */
#ifndef PD_CLOCK_H
#define PD_CLOCK_H

#include <time.h>

/* Seconds from CLOCK_MONOTONIC as a double (not wall-clock time, so NTP steps
 * cannot move it backwards); -1 if the clock cannot be read, which POSIX
 * allows only for an unsupported clock id. */
static inline double pd_clock_mono(void) {
  struct timespec ts;
  if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0) return -1;
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

#endif
