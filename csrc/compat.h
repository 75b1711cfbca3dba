/* Lua C API differences between 5.1/LuaJIT, 5.2, 5.3 and 5.4, kept to what the core uses.
 * Everything here is a macro or a static inline function, so a file that uses
 * none of it pays nothing and gets no unused-function warning. */
#ifndef PD_COMPAT_H
#define PD_COMPAT_H

#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>
#include <math.h>

#if LUA_VERSION_NUM == 501

/* LuaJIT 2.1 (lualib.h names LUA_JITLIBNAME) already has the 5.2 auxiliary
 * functions; plain 5.1 lacks them. */
#ifndef LUA_JITLIBNAME
#define luaL_newlib(L, l) (lua_newtable(L), luaL_register(L, NULL, l))

/* Sets the metatable registered under tname on the value at the top. */
static inline void pd_setmetatable(lua_State *L, const char *tname) {
  luaL_getmetatable(L, tname);
  lua_setmetatable(L, -2);
}
#define luaL_setmetatable(L, t) pd_setmetatable(L, t)

/* Registers l into the table just below nup upvalues, each function sharing them. */
static inline void pd_setfuncs(lua_State *L, const luaL_Reg *l, int nup) {
  int i;
  for (; l->name != NULL; l++) {
    for (i = 0; i < nup; i++) lua_pushvalue(L, -nup);
    lua_pushcclosure(L, l->func, nup);
    lua_setfield(L, -(nup + 2), l->name);
  }
  lua_pop(L, nup);
}
#define luaL_setfuncs(L, l, n) pd_setfuncs(L, l, n)

/* msg plus a traceback through debug.traceback, which 5.1 offers only from Lua.
 * Used inside a message handler: anything missing leaves msg as it is. */
static inline void pd_traceback(lua_State *L, lua_State *L1, const char *msg, int level) {
  (void)L1;
  lua_getglobal(L, "debug");
  if (lua_istable(L, -1)) {
    lua_getfield(L, -1, "traceback");
    lua_remove(L, -2);
    if (lua_isfunction(L, -1)) {
      lua_pushstring(L, msg);
      lua_pushinteger(L, level + 1);
      if (lua_pcall(L, 2, 1, 0) == 0) return;
    }
  }
  lua_pop(L, 1);
  lua_pushstring(L, msg);
}
#define luaL_traceback(L, L1, m, lv) pd_traceback(L, L1, m, lv)
#endif /* !LUA_JITLIBNAME */

#define lua_rawlen(L, i) lua_objlen(L, i)
#ifndef LUA_OK
#define LUA_OK 0
#endif

/* 5.3's meaning on both 5.1 and LuaJIT (whose own version truncates 200.5):
 * a number with an integral value, else *isnum = 0. */
static inline lua_Integer pd_tointegerx(lua_State *L, int i, int *isnum) {
  lua_Number n = lua_tonumber(L, i);
  *isnum = lua_type(L, i) == LUA_TNUMBER && n == floor(n) && fabs(n) < 9007199254740992.0;
  return *isnum ? (lua_Integer)n : 0;
}
#define lua_tointegerx(L, i, isnum) pd_tointegerx(L, i, isnum)
#endif /* 501 */

#if LUA_VERSION_NUM >= 503
#define pd_isinteger(L, i) lua_isinteger(L, i)
#else
/* Before 5.3 every number is a double; an integral one within 2^53 counts as an integer. */
static inline int pd_isinteger(lua_State *L, int i) {
  lua_Number n;
  if (lua_type(L, i) != LUA_TNUMBER) return 0;
  n = lua_tonumber(L, i);
  return n == floor(n) && fabs(n) < 9007199254740992.0;
}
#endif

#if LUA_VERSION_NUM >= 504
#define pd_newuserdata(L, sz) lua_newuserdatauv(L, sz, 1)
#else
#define pd_newuserdata(L, sz) lua_newuserdata(L, sz)
#endif

#if defined(__GNUC__)
#define PD_EXPORT __attribute__((visibility("default")))
#else
#define PD_EXPORT
#endif

#endif
