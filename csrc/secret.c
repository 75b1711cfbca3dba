/* Secret-handling primitives: randomness, constant-time comparison, base64,
 * and the rules for C memory that may hold a secret.
 *
 *   core.random_token(nbytes)   -> base64url string (OAuth state values, nonces)
 *   core.consttime_equal(a, b)  -> boolean
 *   core.base64_encode(s)       -> standard, padded base64
 *   core.sha256_hex(s)          -> 64 lower-case hex digits (FIPS 180-4 SHA-256)
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

/* ---------------------------------------------------------------------- */
/* SHA-256 (FIPS 180-4)                                                   */
/* ---------------------------------------------------------------------- */

/* The state of one digest: the eight working words, the bytes seen so far
 * and the partial block waiting for 64 bytes. */
typedef struct pd_sha256 {
  uint32_t h[8];
  uint64_t len;
  unsigned char block[64];
  size_t fill;
} pd_sha256;

static const uint32_t pd_sha256_k[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

/* 32-bit right rotation, the building block of the round functions. */
static uint32_t pd_sha256_ror(uint32_t x, unsigned n) {
  return (x >> n) | (x << (32 - n));
}

/* Starts a digest with the initial hash value of FIPS 180-4 section 5.3.3. */
static void pd_sha256_init(pd_sha256 *s) {
  static const uint32_t h0[8] = { 0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                  0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19 };
  memcpy(s->h, h0, sizeof h0);
  s->len = 0;
  s->fill = 0;
}

/* One 64-byte block through the compression function (section 6.2.2). */
static void pd_sha256_block(pd_sha256 *s, const unsigned char *p) {
  uint32_t w[64], a, b, c, d, e, f, g, h, t1, t2;
  int i;
  for (i = 0; i < 16; i++)
    w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 | (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
  for (i = 16; i < 64; i++) {
    uint32_t s0 = pd_sha256_ror(w[i - 15], 7) ^ pd_sha256_ror(w[i - 15], 18) ^ (w[i - 15] >> 3);
    uint32_t s1 = pd_sha256_ror(w[i - 2], 17) ^ pd_sha256_ror(w[i - 2], 19) ^ (w[i - 2] >> 10);
    w[i] = w[i - 16] + s0 + w[i - 7] + s1;
  }
  a = s->h[0], b = s->h[1], c = s->h[2], d = s->h[3], e = s->h[4], f = s->h[5], g = s->h[6], h = s->h[7];
  for (i = 0; i < 64; i++) {
    t1 = h + (pd_sha256_ror(e, 6) ^ pd_sha256_ror(e, 11) ^ pd_sha256_ror(e, 25)) + ((e & f) ^ (~e & g)) +
         pd_sha256_k[i] + w[i];
    t2 = (pd_sha256_ror(a, 2) ^ pd_sha256_ror(a, 13) ^ pd_sha256_ror(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
    h = g, g = f, f = e, e = d + t1, d = c, c = b, b = a, a = t1 + t2;
  }
  s->h[0] += a, s->h[1] += b, s->h[2] += c, s->h[3] += d;
  s->h[4] += e, s->h[5] += f, s->h[6] += g, s->h[7] += h;
  pd_wipe(w, sizeof w);
}

/* Feeds n bytes: whole blocks straight from the input, the rest buffered. */
static void pd_sha256_update(pd_sha256 *s, const unsigned char *p, size_t n) {
  s->len += n;
  while (n > 0) {
    size_t take = 64 - s->fill < n ? 64 - s->fill : n;
    if (s->fill == 0 && n >= 64) {
      pd_sha256_block(s, p);
      p += 64, n -= 64;
      continue;
    }
    memcpy(s->block + s->fill, p, take);
    s->fill += take, p += take, n -= take;
    if (s->fill == 64) {
      pd_sha256_block(s, s->block);
      s->fill = 0;
    }
  }
}

/* Pads (0x80, zeros, the bit length big-endian) and writes the 32-byte digest;
 * the state is wiped, since it was computed from a secret. */
static void pd_sha256_final(pd_sha256 *s, unsigned char out[32]) {
  uint64_t bits = s->len * 8;
  int i;
  s->block[s->fill++] = 0x80;
  if (s->fill > 56) {
    memset(s->block + s->fill, 0, 64 - s->fill);
    pd_sha256_block(s, s->block);
    s->fill = 0;
  }
  memset(s->block + s->fill, 0, 56 - s->fill);
  for (i = 0; i < 8; i++) s->block[56 + i] = (unsigned char)(bits >> (56 - 8 * i));
  pd_sha256_block(s, s->block);
  for (i = 0; i < 8; i++) {
    out[4 * i] = (unsigned char)(s->h[i] >> 24);
    out[4 * i + 1] = (unsigned char)(s->h[i] >> 16);
    out[4 * i + 2] = (unsigned char)(s->h[i] >> 8);
    out[4 * i + 3] = (unsigned char)s->h[i];
  }
  pd_wipe(s, sizeof *s);
}

/* core.sha256_hex(s): the digest of a string as lower-case hex. pipedrive.redis
 * names keys after a credential with it (never the credential itself), so the
 * name is stable across hosts and says nothing about the token. Our own code:
 * the core links only libcurl, and no crypto library is assumed. */
static int pd_secret_sha256_hex(lua_State *L) {
  static const char hex[] = "0123456789abcdef";
  size_t n;
  const unsigned char *p = (const unsigned char *)luaL_checklstring(L, 1, &n);
  pd_sha256 s;
  unsigned char d[32];
  char out[64];
  int i;
  pd_sha256_init(&s);
  pd_sha256_update(&s, p, n);
  pd_sha256_final(&s, d);
  for (i = 0; i < 32; i++) {
    out[2 * i] = hex[d[i] >> 4];
    out[2 * i + 1] = hex[d[i] & 15];
  }
  lua_pushlstring(L, out, 64);
  return 1;
}

/* Registers this file's functions in the module table on top of the stack. */
static void pd_secret_open(lua_State *L) {
  static const luaL_Reg fns[] = {
      {"random_token", pd_secret_random_token},
      {"consttime_equal", pd_secret_consttime_equal},
      {"base64_encode", pd_secret_base64_encode},
      {"sha256_hex", pd_secret_sha256_hex},
      {NULL, NULL},
  };
  luaL_setfuncs(L, fns, 0);
}
