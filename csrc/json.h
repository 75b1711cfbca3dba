/* json.h: what json.c gives the other files of pipedrive.core (request.c,
 * response.c, url.c, oauth.c). Declarations only; json.c defines them. */
#ifndef PD_JSON_H
#define PD_JSON_H

#include "pd.h"

/* Room for any number pd_fmt_number writes: "%.17g" of a double needs 25 bytes. */
#define PD_NUMBUF 64
/* Modes of pd_json_decode_mode: json_decode's contract, or the lenient one
 * for text only a few members are picked out of (OAuth token answers). */
#define PD_JSON_STRICT 0
#define PD_JSON_LENIENT 1
#define PD_JSON_EXACT 2 /* strict, numbers a Lua number cannot hold exactly kept as their text */

/* A table key being sorted for output (object keys, query parameters). */
typedef struct pd_jkey {
  const char *s;
  size_t n;
  int slot; /* index of the key in the anchoring table */
} pd_jkey;

static void pd_push_array_mt(lua_State *L);
static size_t pd_fmt_number(lua_State *L, int idx, char *out, int mark_float);
static int pd_jkey_cmp(const void *a, const void *b);
static int pd_json_decode_mode(lua_State *L, const char *s, size_t n, int mode, char *err, size_t errlen);
static int pd_json_decode_buf(lua_State *L, const char *s, size_t n, char *err, size_t errlen);
static void pd_json_encode_push(lua_State *L, int idx, const char *fname);

#endif
