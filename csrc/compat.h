/* Lua C API differences between 5.1/LuaJIT and 5.2+, kept to what the core uses. */
#ifndef PD_COMPAT_H
#define PD_COMPAT_H

#include <lua.h>
#include <lauxlib.h>

#if LUA_VERSION_NUM == 501
#ifndef LUAJIT_VERSION
/* Plain 5.1 lacks these; LuaJIT 2.1 provides them. */
#define luaL_newlib(L, l) (lua_newtable(L), luaL_register(L, NULL, l))
#endif
#define lua_rawlen(L, i) lua_objlen(L, i)
#endif

#if LUA_VERSION_NUM >= 503
#define pd_isinteger(L, i) lua_isinteger(L, i)
#else
/* Before 5.3 every number is a double; an integral one counts as an integer. */
static int pd_isinteger(lua_State *L, int i) {
  lua_Number n;
  if (lua_type(L, i) != LUA_TNUMBER) return 0;
  n = lua_tonumber(L, i);
  return n == (lua_Number)(long long)n;
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
