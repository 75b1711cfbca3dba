/* luaopen_pipedrive_core: the C core of the pipedrive module.
 * A unity build (as luv does): each concern lives in its own file, included
 * here, so that every function can stay static and only luaopen_ is exported.
 * Each file stands on its own: it includes pd.h (raising, boxes, classes) and
 * the header of every other file it uses (json.h, url.h, date.h, response.h,
 * secret.h, http.h, clock.h), so `make check-units` compiles it alone.
 * Each provides one pd_<area>_open(L) that adds its functions to the module
 * table on the top of the stack. */
#include "pd.h"

#include "json.c"
#include "url.c"
#include "date.c"
#include "response.c"
#include "multipart.c"
#include "request.c"
#include "http.c"
#include "multi.c"
#include "secret.c"
#include "oauth.c"
#include "fs.c"
#include "clock.c"

PD_EXPORT int luaopen_pipedrive_core(lua_State *L);

/* Nothing here does I/O or touches globals: requiring the module is free of
 * side effects except libcurl's one-time global init inside pd_http_open. */
PD_EXPORT int luaopen_pipedrive_core(lua_State *L) {
  pd_box_open(L);
  lua_newtable(L);
  pd_json_open(L);
  pd_url_open(L);
  pd_date_open(L);
  pd_response_open(L);
  pd_request_open(L);
  pd_multipart_open(L);
  pd_http_open(L);
  pd_multi_open(L);
  pd_secret_open(L);
  pd_oauth_open(L);
  pd_fs_open(L);
  pd_clock_open(L);
  lua_pushliteral(L, "0.1.0");
  lua_setfield(L, -2, "_VERSION");
  return 1;
}
