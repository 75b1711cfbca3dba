/* Shared part of the libFuzzer harnesses in fuzz/ (built by `make fuzz`).
 *
 * Each harness includes the module's C source first (csrc/core.c, a unity
 * build like core.so, or csrc/httpd.c), then this file; it embeds a Lua
 * state, opens the module in it and calls the module's functions exactly as
 * Lua code would, under lua_pcall. Only the harness binaries link liblua; the
 * modules themselves never do. The core harnesses use a fresh state per
 * input, so runs are independent and lua_close frees every Lua object:
 * whatever LeakSanitizer still finds was leaked by C code.
 *
 * Crashes are what ASan/UBSan report, plus FZ_CHECK failures: properties the
 * harness checks on the results (round trips, the secrets contract). */

#include <lualib.h>
#include <stdint.h>

/* Not every harness uses every helper below. */
#define FZ_HELPER static __attribute__((unused))

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FZ_CHECK(cond, ...)                                                              \
  do {                                                                                   \
    if (!(cond)) {                                                                       \
      fprintf(stderr, "\nfuzz check failed at %s:%d: %s\n  ", __FILE__, __LINE__, #cond); \
      fprintf(stderr, __VA_ARGS__);                                                      \
      fputc('\n', stderr);                                                               \
      abort();                                                                           \
    }                                                                                    \
  } while (0)

/* A new state with the module `open` opens (named `name`) at stack index 1. */
FZ_HELPER lua_State *fz_open(const char *name, lua_CFunction open) {
  lua_State *L = luaL_newstate();
  FZ_CHECK(L != NULL, "luaL_newstate failed");
  luaL_requiref(L, name, open, 0);
  return L;
}

/* For the core harnesses: a new state with pipedrive.core at index 1. */
#define fz_new() fz_open("pipedrive.core", luaopen_pipedrive_core)

/* Calls module[fn] (the module at index 1) with the nargs values on top of the stack, under pcall;
 * leaves nres results (or the error value) on top; returns the pcall status. */
FZ_HELPER int fz_call(lua_State *L, const char *fn, int nargs, int nres) {
  lua_getfield(L, 1, fn);
  FZ_CHECK(lua_type(L, -1) == LUA_TFUNCTION, "core.%s is missing", fn);
  lua_insert(L, -(nargs + 1));
  return lua_pcall(L, nargs, nres, 0);
}

/* ------------------------------------------------------------- input fields */

/* Inputs are fields separated by the byte 0xFF (which never occurs in UTF-8
 * text, so seeds stay readable); a field may hold a name and a value
 * separated by 0xFE. */
typedef struct fz_in {
  const char *p, *end;
} fz_in;

#define FZ_SEP '\xff'
#define FZ_KV '\xfe'

/* The next field (may be empty); 0 when the input is used up. */
FZ_HELPER int fz_field(fz_in *in, const char **s, size_t *n) {
  const char *q;
  if (in->p > in->end) return 0;
  q = in->p;
  while (q < in->end && *q != FZ_SEP) q++;
  *s = in->p;
  *n = (size_t)(q - in->p);
  in->p = q + 1;
  return 1;
}

/* Splits a field at the first 0xFE into name and value (value empty when
 * there is no 0xFE). */
FZ_HELPER void fz_kv(const char *s, size_t n, const char **k, size_t *kn, const char **v, size_t *vn) {
  const char *q = memchr(s, FZ_KV, n);
  *k = s;
  if (!q) {
    *kn = n;
    *v = s + n;
    *vn = 0;
    return;
  }
  *kn = (size_t)(q - s);
  *v = q + 1;
  *vn = n - *kn - 1;
}

/* Byte i of a field, 0 past its end. */
FZ_HELPER unsigned fz_at(const char *s, size_t n, size_t i) { return i < n ? (unsigned char)s[i] : 0u; }

/* Up to 8 bytes as a little-endian integer (sign from the top bit of 8). */
FZ_HELPER long long fz_int(const char *s, size_t n) {
  unsigned long long u = 0;
  size_t i;
  for (i = 0; i < n && i < 8; i++) u |= (unsigned long long)(unsigned char)s[i] << (8 * i);
  return (long long)u;
}

/* 8 bytes as a double (any bit pattern: NaN, infinities, subnormals). */
FZ_HELPER double fz_double(const char *s, size_t n) {
  unsigned char b[8] = { 0 };
  double d;
  memcpy(b, s, n < 8 ? n : 8);
  memcpy(&d, b, sizeof d);
  return d;
}

/* Whether the n bytes at needle occur in the Lua string at idx. */
FZ_HELPER int fz_contains(lua_State *L, int idx, const char *needle, size_t n) {
  size_t hn, i;
  const char *h;
  if (lua_type(L, idx) != LUA_TSTRING || n == 0) return 0;
  h = lua_tolstring(L, idx, &hn);
  for (i = 0; i + n <= hn; i++)
    if (memcmp(h + i, needle, n) == 0) return 1;
  return 0;
}

/* tostring(v) through the value's own __tostring (error_mt), pushed. */
FZ_HELPER void fz_tostring(lua_State *L, int idx) {
  luaL_tolstring(L, idx, NULL);
}
