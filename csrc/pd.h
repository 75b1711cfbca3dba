/* pd.h: what every C file of both modules needs, in one place.
 *   - raising without leaking: pd_raise (a message starting with the
 *     function's name, no position prefix), pd_checkstack;
 *   - boxes, the one way to hold a C buffer across code that may raise: a
 *     pd_buf inside a full userdata whose __gc frees it (and wipes it first
 *     when the buffer is marked secret), so a Lua error unwinding past its
 *     owner loses nothing;
 *   - classes: a metatable per userdata type, registered by pd_class_register
 *     with one idempotent close (method close, __gc and __close) and a
 *     __tostring that shows the state and never a field's value (handles hold
 *     tokens in their request headers).
 * Everything is static inline: both modules include it, and a file that uses
 * only part of it gets no unused-function warning. Model: luasocket's
 * auxiliar unit. */
#ifndef PD_H
#define PD_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "compat.h"
#include "buf.h"

/* ----------------------------------------------------------------- raising */

/* Raises a formatted message as is. luaL_error would prefix the position of
 * the Lua caller; our messages start with the function's name instead
 * ("json_encode: ..."), so callers can match them and they read the same
 * wherever the call came from. Only lua_pushfstring formats (%s %d %c %f). */
static inline int pd_raise(lua_State *L, const char *fmt, ...) {
  va_list ap;
  lua_checkstack(L, 2);
  va_start(ap, fmt);
  lua_pushvfstring(L, fmt, ap);
  va_end(ap);
  return lua_error(L);
}

/* lua_checkstack that raises with the function's name, for the same reason. */
static inline void pd_checkstack(lua_State *L, int n, const char *fname) {
  if (!lua_checkstack(L, n)) pd_raise(L, "%s: out of Lua stack", fname);
}

/* ------------------------------------------------------------------ boxes */

/* The registry key of the box metatable: the address of a static, unique per
 * module, so it cannot clash with another library's registry entries. */
static inline void *pd_box_key(void) {
  static char key;
  return &key;
}

/* The box's finalizer: frees (wiping a secret buffer) whatever the buffer
 * still holds when an error unwound past its owner; on success the owner
 * has freed it already and this does nothing. */
static inline int pd_box_gc(lua_State *L) {
  pd_buf *b = (pd_buf *)lua_touserdata(L, 1);
  if (b) pd_buf_free(b);
  return 0;
}

/* Pushes a new box and returns its buffer (max bytes at most, 0: no limit).
 * Nothing is malloc'd yet, so a memory error raised here loses nothing. */
static inline pd_buf *pd_box_new(lua_State *L, size_t max) {
  pd_buf *b = (pd_buf *)pd_newuserdata(L, sizeof *b);
  pd_buf_init(b, max);
  lua_pushlightuserdata(L, pd_box_key());
  lua_rawget(L, LUA_REGISTRYINDEX);
  lua_setmetatable(L, -2);
  return b;
}

/* A box for a buffer that will hold a secret: every copy it leaves behind
 * (growth, free, the finalizer) is wiped first. */
static inline pd_buf *pd_box_new_secret(lua_State *L, size_t max) {
  pd_buf *b = pd_box_new(L, max);
  b->secret = 1;
  return b;
}

/* Pushes the box's content as a string and releases the memory at once rather
 * than waiting for the collector. If the push raises, __gc frees it later. */
static inline void pd_box_push(lua_State *L, pd_buf *b) {
  lua_pushlstring(L, b->data ? b->data : "", b->len);
  pd_buf_free(b);
}

/* Creates the box metatable once per Lua state (kept in the registry and
 * reused when the module is opened again). Called by each luaopen_. */
static inline void pd_box_open(lua_State *L) {
  lua_pushlightuserdata(L, pd_box_key());
  lua_rawget(L, LUA_REGISTRYINDEX);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushcfunction(L, pd_box_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushliteral(L, "pipedrive.buffer");
    lua_setfield(L, -2, "__name");
    lua_pushliteral(L, "pipedrive.buffer");
    lua_setfield(L, -2, "__metatable");
    lua_pushlightuserdata(L, pd_box_key());
    lua_pushvalue(L, -2);
    lua_rawset(L, LUA_REGISTRYINDEX);
  }
  lua_pop(L, 1);
}

/* ---------------------------------------------------------------- classes */

/* A userdata type. `release` frees everything the object owns and must be
 * idempotent (close, __gc and __close all call it); `is_open` tells the state
 * tostring shows; `describe`, when set, pushes the text shown for an open
 * object instead of "(open)" (it must not show a secret). */
typedef struct pd_class {
  const char *name;
  const luaL_Reg *methods;
  void (*release)(lua_State *L, void *self);
  int (*is_open)(const void *self);
  void (*describe)(lua_State *L, const void *self);
} pd_class;

/* close, __gc and __close of every class: the one release path, then true.
 * The class is upvalue 1. */
static inline int pd_class_close(lua_State *L) {
  const pd_class *c = (const pd_class *)lua_touserdata(L, lua_upvalueindex(1));
  c->release(L, luaL_checkudata(L, 1, c->name));
  lua_pushboolean(L, 1);
  return 1;
}

/* __tostring of every class: "<name> (open)" / "<name> (closed)", or the
 * class's own description of an open object. Never a field's value. */
static inline int pd_class_tostring(lua_State *L) {
  const pd_class *c = (const pd_class *)lua_touserdata(L, lua_upvalueindex(1));
  const void *self = luaL_checkudata(L, 1, c->name);
  if (!c->is_open(self)) lua_pushfstring(L, "%s (closed)", c->name);
  else if (c->describe) c->describe(L, self);
  else lua_pushfstring(L, "%s (open)", c->name);
  return 1;
}

/* Creates the class's metatable once per state: methods (plus close) under
 * __index, __gc, __close, __tostring and __name. */
static inline void pd_class_register(lua_State *L, const pd_class *c) {
  if (luaL_newmetatable(L, c->name)) {
    lua_pushlightuserdata(L, (void *)(uintptr_t)c);
    lua_pushcclosure(L, pd_class_close, 1);
    lua_pushvalue(L, -1);
    lua_setfield(L, -3, "__gc");
    lua_setfield(L, -2, "__close");
    lua_pushlightuserdata(L, (void *)(uintptr_t)c);
    lua_pushcclosure(L, pd_class_tostring, 1);
    lua_setfield(L, -2, "__tostring");
    lua_pushstring(L, c->name);
    lua_setfield(L, -2, "__name");
    lua_newtable(L);
    luaL_setfuncs(L, c->methods, 0);
    lua_pushlightuserdata(L, (void *)(uintptr_t)c);
    lua_pushcclosure(L, pd_class_close, 1);
    lua_setfield(L, -2, "close");
    lua_setfield(L, -2, "__index");
  }
  lua_pop(L, 1);
}

/* Pushes a new object of class c (size bytes, zeroed) with its metatable;
 * the caller fills it in before anything else may raise. */
static inline void *pd_class_new(lua_State *L, const pd_class *c, size_t size) {
  void *self = pd_newuserdata(L, size);
  memset(self, 0, size);
  luaL_getmetatable(L, c->name);
  lua_setmetatable(L, -2);
  return self;
}

#endif
