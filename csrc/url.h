/* url.h: what url.c gives request.c and oauth.c. Declarations only. */
#ifndef PD_URL_H
#define PD_URL_H

#include "pd.h"

static void pd_url_append(pd_buf *b, const char *s, size_t n);
static int pd_url_append_scalar(lua_State *L, pd_buf *b, int idx);

#endif
