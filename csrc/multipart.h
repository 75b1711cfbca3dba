/* multipart.h: what multipart.c gives request.c and http.c. Declarations only. */
#ifndef PD_MULTIPART_H
#define PD_MULTIPART_H

#include <curl/curl.h>

#include "pd.h"

/* One part as read from a Lua table: pointers into Lua strings that the
 * reader left on the stack (valid until the caller pops them). */
typedef struct pd_mp_part {
  const char *name, *path, *data, *filename, *type;
  size_t name_len, data_len;
} pd_mp_part;

/* At most this many parts per request: Pipedrive's uploads take a file and a few fields. */
#define PD_MP_MAX_PARTS 64

static int pd_mp_count(lua_State *L, int t, const char *who);
static void pd_mp_read_part(lua_State *L, int t, int i, const char *who, int convert, pd_mp_part *p);
static void pd_mp_push_checked(lua_State *L, int t, const char *who);
static int pd_mp_mime(lua_State *L, CURL *easy, curl_mime **out, int t, char *err, size_t errn);

#endif
