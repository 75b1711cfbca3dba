/* Secret-handling primitives: randomness, constant-time comparison, base64,
 * and the rules for C memory that may hold a secret.
 *
 *   core.random_token(nbytes)   -> base64url string (OAuth state values, nonces)
 *   core.consttime_equal(a, b)  -> boolean
 *   core.base64_encode(s)       -> standard, padded base64
 *
 * Nothing here knows about OAuth: oauth.c (the flow) and fs.c (the token
 * file) both build on these, so they live in one place below both.
 * C memory that may hold a secret is a secret box (pd.h: pd_box_new_secret),
 * wiped on growth, on free and by the collector after an error.
 */
#include <stddef.h>
#include <string.h>

#include "pd.h"
#include "secret.h"

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

/* getrandom(2) came with glibc 2.25; elsewhere /dev/urandom serves. (Not
 * __has_include: static analysers here cannot evaluate it.) */
#if defined(__linux__) && defined(__GLIBC__) && \
    (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 25))
#include <sys/random.h>
#define PD_SECRET_HAVE_GETRANDOM 1
#endif

/* ---------------------------------------------------------------------- */
/* Randomness                                                             */
/* ---------------------------------------------------------------------- */

/* Fill `out` with n bytes from the kernel's CSPRNG. getrandom(2) needs no
 * file descriptor (so it works in chroots and when fds run out); older
 * kernels and non-Linux systems fall back to /dev/urandom. Returns 0, or
 * -1 with errno set. Never raises: callers decide how to report. */
static int pd_secret_random_bytes(unsigned char *out, size_t n) {
  size_t got = 0;
  int fd, e;
#ifdef PD_SECRET_HAVE_GETRANDOM
  while (got < n) {
    ssize_t r = getrandom(out + got, n - got, 0);
    if (r < 0) {
      if (errno == EINTR) continue;
      break;
    }
    got += (size_t)r;
  }
  if (got == n) return 0;
  if (errno != ENOSYS && errno != EPERM) return -1;
  got = 0;
#endif
  do {
    fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) return -1;
  while (got < n) {
    ssize_t r = read(fd, out + got, n - got);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) {
      e = r == 0 ? EIO : errno;
      close(fd);
      errno = e;
      return -1;
    }
    got += (size_t)r;
  }
  close(fd);
  return 0;
}

/* ---------------------------------------------------------------------- */
/* Base64                                                                 */
/* ---------------------------------------------------------------------- */

static const char pd_secret_b64_std[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
static const char pd_secret_b64_url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* Encode one group of 1..3 bytes into out (4 bytes of room); returns the
 * characters written. `url` picks the URL-safe alphabet without padding
 * (RFC 4648 section 5, for values that travel in URLs); otherwise the
 * standard padded alphabet (section 4, for HTTP Basic credentials). The C
 * buffer, the Lua buffer and the stack array users below all go through
 * this one group encoder, so there is a single place to get base64 right. */
static size_t pd_secret_b64_group(const unsigned char *s, size_t n, char *out, int url) {
  const char *abc = url ? pd_secret_b64_url : pd_secret_b64_std;
  unsigned v = (unsigned)s[0] << 16;
  size_t k = 0;
  if (n > 1) v |= (unsigned)s[1] << 8;
  if (n > 2) v |= s[2];
  out[k++] = abc[(v >> 18) & 63];
  out[k++] = abc[(v >> 12) & 63];
  if (n > 1) out[k++] = abc[(v >> 6) & 63];
  else if (!url) out[k++] = '=';
  if (n > 2) out[k++] = abc[v & 63];
  else if (!url) out[k++] = '=';
  return k;
}

/* Base64 of n bytes appended to a C buffer (see pd_secret_b64_group): for
 * values built in malloc'd memory that must be wiped, such as the HTTP
 * Basic credentials oauth.c sends. */
static void pd_secret_b64_add(pd_buf *b, const unsigned char *s, size_t n, int url) {
  char q[4];
  size_t i;
  for (i = 0; i < n; i += 3) pd_buf_add(b, q, pd_secret_b64_group(s + i, n - i > 3 ? 3 : n - i, q, url));
}

/* ---------------------------------------------------------------------- */
/* random_token, consttime_equal, base64_encode                           */
/* ---------------------------------------------------------------------- */

/* core.random_token(nbytes = 32): a fresh unguessable value for the OAuth
 * `state` (CSRF protection) and similar nonces. 16..64 bytes keeps it from
 * being too weak or absurdly long; raises if the OS has no randomness,
 * because a predictable state would silently defeat its purpose. */
static int pd_secret_random_token(lua_State *L) {
  unsigned char raw[64];
  char out[88]; /* 64 bytes -> 86 characters */
  lua_Integer n = luaL_optinteger(L, 1, 32);
  size_t i, k = 0;
#if LUA_VERSION_NUM < 503
  /* luaL_optinteger truncates 20.5 before 5.3; refuse it as 5.3+ does */
  luaL_argcheck(L, lua_isnoneornil(L, 1) || pd_isinteger(L, 1), 1, "random_token: nbytes must be an integer");
#endif
  luaL_argcheck(L, n >= 16 && n <= 64, 1, "random_token: nbytes must be between 16 and 64");
  if (pd_secret_random_bytes(raw, (size_t)n) != 0) {
    int e = errno;
    return luaL_error(L, "random_token: no randomness available: %s", strerror(e));
  }
  for (i = 0; i < (size_t)n; i += 3)
    k += pd_secret_b64_group(raw + i, (size_t)n - i > 3 ? 3 : (size_t)n - i, out + k, 1);
  pd_wipe(raw, sizeof raw);
  lua_pushlstring(L, out, k);
  return 1;
}

/* core.consttime_equal(a, b): string equality whose running time depends
 * only on the length of the longer input, never on where the inputs first
 * differ, so comparing a received state or webhook password with the
 * expected one does not leak it a byte at a time. Bytes past the end of the
 * shorter string are read from index 0 (Lua strings always hold a NUL
 * there) and masked out; the length difference is folded into the result. */
static int pd_secret_consttime_equal(lua_State *L) {
  size_t la, lb, n, i;
  const unsigned char *a = (const unsigned char *)luaL_checklstring(L, 1, &la);
  const unsigned char *b = (const unsigned char *)luaL_checklstring(L, 2, &lb);
  volatile unsigned acc = 0;
  unsigned diff = 0;
  n = la > lb ? la : lb;
  for (i = 0; i < n; i++) {
    size_t ina = (size_t)0 - (size_t)(i < la); /* all ones while i is inside a */
    size_t inb = (size_t)0 - (size_t)(i < lb);
    unsigned ca = a[i & ina] & (unsigned)ina;
    unsigned cb = b[i & inb] & (unsigned)inb;
    diff |= (ca ^ cb) | ((unsigned)ina ^ (unsigned)inb);
  }
  acc = diff | (unsigned)(la != lb);
  lua_pushboolean(L, acc == 0);
  return 1;
}

/* core.base64_encode(s): standard padded base64, which HTTP Basic auth
 * needs and which Lua 5.x lacks. The output size is known in advance and
 * bounded by the input, so it is built in a Lua buffer directly. */
static int pd_secret_base64_encode(lua_State *L) {
  size_t n, i;
  const unsigned char *s = (const unsigned char *)luaL_checklstring(L, 1, &n);
  luaL_Buffer lb;
  char q[4];
  luaL_buffinit(L, &lb);
  for (i = 0; i < n; i += 3) luaL_addlstring(&lb, q, pd_secret_b64_group(s + i, n - i > 3 ? 3 : n - i, q, 0));
  luaL_pushresult(&lb);
  return 1;
}

/* Registers this file's functions in the module table on top of the stack. */
static void pd_secret_open(lua_State *L) {
  static const luaL_Reg fns[] = {
      {"random_token", pd_secret_random_token},
      {"consttime_equal", pd_secret_consttime_equal},
      {"base64_encode", pd_secret_base64_encode},
      {NULL, NULL},
  };
  luaL_setfuncs(L, fns, 0);
}
