/* response.h: the error objects of response.c, which http.c and oauth.c
 * build too (one constructor, one metatable). Declarations only. */
#ifndef PD_RESPONSE_H
#define PD_RESPONSE_H

#include "pd.h"

static void pd_error_new(lua_State *L, const char *kind, int status, const char *message, const char *method,
                         const char *path);
static int pd_is_object(lua_State *L, int idx);

#endif
