/* date.h: what date.c gives response.c. Declarations only. */
#ifndef PD_DATE_H
#define PD_DATE_H

static int pd_http_date(const char *s, double *out);

#endif
