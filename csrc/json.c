/* JSON text <-> Lua values for pipedrive.core.
 *
 * Why the core has its own codec rather than leaning on lua-cjson (which is
 * not always installed, and differs between its releases and forks):
 * - Integer fidelity on every Lua: an integer token stays a Lua integer on
 *   5.3/5.4 (a float id would print as "5.0" in a URL) and an exact double
 *   on 5.1/5.2/LuaJIT (integers beyond 2^53 become floats, as they must);
 *   integral floats are written with ".0" so they decode as floats again.
 * - Empty arrays: "[]" decodes to a table carrying core.array_mt and such a
 *   table encodes as "[]" again (label_ids = {} means "remove every label",
 *   while "{}" is refused by the API), on every Lua, without options.
 * - One behaviour everywhere: the same text gives the same values on all five
 *   interpreters, keys are written sorted (stable bodies, diffable logs), and
 *   invalid UTF-8, NaN, cycles and mixed tables are refused with the path of
 *   the bad value.
 * Speed, measured against Debian's lua-cjson 2.1.0 on Lua 5.4 (a 33 KB page
 * of 100 v2 deals; a Lua script timing 300 runs with os.clock, best of three
 * rounds, on the 2-core build machine): decode 140 us against 270 us (0.52x,
 * the decoder builds tables in batches), encode 364 us against 235 us
 * (1.55x: sorting keys and validating UTF-8 cost that; request bodies are
 * small, pages are what is decoded).
 *
 * Conventions (see docs/ARCHITECTURE.md, "Module pipedrive.core"):
 * - JSON null is core.null, a lightuserdata NULL (the same value as cjson.null).
 * - Arrays are marked by core.array_mt, a metatable whose fields are
 *   __name = "pipedrive.array" and __jsontype = "array". Decoded arrays carry it;
 *   the encoder also honours any metatable with a raw __jsontype field of
 *   "array" or "object" (dkjson's convention), so tables from other libraries
 *   keep their meaning.
 * - Numbers: a token without fraction or exponent that fits lua_Integer is an
 *   integer, every other number a float. Integral floats are encoded with a
 *   trailing ".0" so that they decode as floats again.
 */
#include <limits.h>
#include <locale.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pd.h"
#include "json.h"

#define PD_JSON_MAXDEPTH 1000
/* Largest JSON text json_encode produces; Pipedrive bodies are far smaller. */
#define PD_JSON_MAXOUT ((size_t)64 * 1024 * 1024)

/* Registry key of core.array_mt: the address of a static is unique per
 * process, so it cannot clash with any other library's registry entries. */
static char pd_array_mt_key;

/* Pushes core.array_mt (one per Lua state, kept in the registry). */
static void pd_push_array_mt(lua_State *L) {
  lua_pushlightuserdata(L, (void *)&pd_array_mt_key);
  lua_rawget(L, LUA_REGISTRYINDEX);
}

/* ------------------------------------------------------------------ UTF-8 */

/* Length (1..4) of the well-formed UTF-8 sequence at p, or 0 when it is
 * malformed, overlong, a surrogate or above U+10FFFF: JSON text is Unicode,
 * and passing broken bytes on would make the API, not us, reject the call. */
static int pd_utf8_seq(const unsigned char *p, const unsigned char *end) {
  unsigned c = p[0];
  if (c < 0x80) return 1;
  if (c < 0xC2) return 0;
  if (c < 0xE0) {
    if (end - p < 2 || (p[1] & 0xC0) != 0x80) return 0;
    return 2;
  }
  if (c < 0xF0) {
    if (end - p < 3 || (p[1] & 0xC0) != 0x80 || (p[2] & 0xC0) != 0x80) return 0;
    if (c == 0xE0 && p[1] < 0xA0) return 0;
    if (c == 0xED && p[1] >= 0xA0) return 0;
    return 3;
  }
  if (c < 0xF5) {
    if (end - p < 4 || (p[1] & 0xC0) != 0x80 || (p[2] & 0xC0) != 0x80 || (p[3] & 0xC0) != 0x80)
      return 0;
    if (c == 0xF0 && p[1] < 0x90) return 0;
    if (c == 0xF4 && p[1] >= 0x90) return 0;
    return 4;
  }
  return 0;
}

/* ---------------------------------------------------------------- numbers */

/* The C library formats and parses numbers with the locale's decimal point;
 * JSON and URLs always use ".". These two helpers translate between them so
 * that a program calling setlocale(LC_ALL, "de_DE") still speaks JSON. */
static void pd_num_to_dot(char *s) {
  const char *dp = localeconv()->decimal_point;
  size_t dl;
  char *at;
  if (!dp || !dp[0] || (dp[0] == '.' && !dp[1])) return;
  at = strstr(s, dp);
  if (!at) return;
  dl = strlen(dp);
  *at = '.';
  memmove(at + 1, at + dl, strlen(at + dl) + 1);
}

/* Shortest of %.15g/%.16g/%.17g that reads back as the same double, so 0.1
 * prints as "0.1" and not "0.10000000000000001". With mark_float an integral
 * result gets ".0" (JSON: 5000.0 must decode as a float again); without it
 * (query strings) the plain "5000" is kept. Returns 0 for NaN and infinities. */
static size_t pd_fmt_double(double v, char *out, int mark_float) {
  int prec;
  size_t len;
  if (isnan(v) || isinf(v)) return 0;
  for (prec = 15; prec <= 17; prec++) {
    int n = snprintf(out, PD_NUMBUF - 3, "%.*g", prec, v);
    if (n < 0 || n >= PD_NUMBUF - 3) return 0;
    if (strtod(out, NULL) == v) break;
  }
  pd_num_to_dot(out);
  len = strlen(out);
  if (mark_float && !strpbrk(out, ".e")) {
    memcpy(out + len, ".0", 3);
    len += 2;
  }
  return len;
}

/* Formats the number at idx into out (PD_NUMBUF bytes): integers exactly,
 * floats by pd_fmt_double. Before Lua 5.3 every number is a double, so there
 * an integral value within 2^53 prints as an integer and nothing gets ".0". */
static size_t pd_fmt_number(lua_State *L, int idx, char *out, int mark_float) {
#if LUA_VERSION_NUM >= 503
  if (lua_isinteger(L, idx)) {
    int n = snprintf(out, PD_NUMBUF, "%lld", (long long)lua_tointeger(L, idx));
    return n > 0 ? (size_t)n : 0;
  }
  return pd_fmt_double((double)lua_tonumber(L, idx), out, mark_float);
#else
  double v = (double)lua_tonumber(L, idx);
  (void)mark_float;
  if (v == floor(v) && fabs(v) < 9007199254740992.0) {
    int n = snprintf(out, PD_NUMBUF, "%lld", (long long)v);
    return n > 0 ? (size_t)n : 0;
  }
  return pd_fmt_double(v, out, 0);
#endif
}

/* ---------------------------------------------------------------- decoder */

typedef struct pd_jdec {
  lua_State *L;
  const unsigned char *start, *p, *end;
  int depth;
  int mt_idx;           /* stack slot of core.array_mt */
  int scratch_idx;      /* stack slot of the scratch userdata (or nil) */
  unsigned char *scratch;
  size_t scratch_cap;
  const char *err;      /* first error: static text */
  size_t err_pos;       /* its 0-based byte offset */
  int err_ch;           /* offending byte, or -1 */
  int lenient;          /* PD_JSON_LENIENT: see pd_json_decode_mode */
  int exact;            /* json_decode's { exact = true }: see pd_jdec_number */
} pd_jdec;

/* Records the first error and unwinds by returning 0 up the recursion; the
 * caller drops everything pushed above its base, so nothing is raised. */
static int pd_jdec_fail(pd_jdec *d, const unsigned char *at, const char *msg, int show_char) {
  if (!d->err) {
    d->err = msg;
    d->err_pos = (size_t)(at - d->start);
    d->err_ch = (show_char && at < d->end) ? *at : -1;
  }
  return 0;
}

/* Skips JSON whitespace only (space, tab, CR, LF): anything else is a
 * syntax error that the caller reports at its position. */
static void pd_jdec_ws(pd_jdec *d) {
  while (d->p < d->end && (*d->p == ' ' || *d->p == '\t' || *d->p == '\n' || *d->p == '\r')) d->p++;
}

/* Escaped strings are unescaped into a scratch area that lives in a userdata
 * (collected if anything raises) and only grows, to the largest string seen. */
static unsigned char *pd_jdec_scratch(pd_jdec *d, size_t need) {
  if (need > d->scratch_cap) {
    size_t cap = d->scratch_cap ? d->scratch_cap : 64;
    size_t limit = (size_t)(d->end - d->start);
    while (cap < need) cap = cap > (size_t)-1 / 2 ? need : cap * 2;
    if (cap > limit && need <= limit) cap = limit;
    d->scratch = (unsigned char *)pd_newuserdata(d->L, cap ? cap : 1);
    lua_replace(d->L, d->scratch_idx);
    d->scratch_cap = cap;
  }
  return d->scratch;
}

/* Reads the four hex digits of a \u escape; 0 when one is not a hex digit,
 * so a broken escape is an error instead of a wrong character. */
static int pd_hex4(const unsigned char *p, unsigned *out) {
  unsigned v = 0;
  int i;
  for (i = 0; i < 4; i++) {
    unsigned c = p[i];
    v <<= 4;
    if (c >= '0' && c <= '9') v |= c - '0';
    else if (c >= 'a' && c <= 'f') v |= c - 'a' + 10;
    else if (c >= 'A' && c <= 'F') v |= c - 'A' + 10;
    else return 0;
  }
  *out = v;
  return 1;
}

/* Writes one code point as UTF-8 and returns its length: escapes in JSON
 * text become the same bytes Lua code would hold for the character. */
static size_t pd_utf8_put(unsigned char *o, unsigned cp) {
  if (cp < 0x80) {
    o[0] = (unsigned char)cp;
    return 1;
  }
  if (cp < 0x800) {
    o[0] = (unsigned char)(0xC0 | (cp >> 6));
    o[1] = (unsigned char)(0x80 | (cp & 0x3F));
    return 2;
  }
  if (cp < 0x10000) {
    o[0] = (unsigned char)(0xE0 | (cp >> 12));
    o[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
    o[2] = (unsigned char)(0x80 | (cp & 0x3F));
    return 3;
  }
  o[0] = (unsigned char)(0xF0 | (cp >> 18));
  o[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
  o[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
  o[3] = (unsigned char)(0x80 | (cp & 0x3F));
  return 4;
}

/* Decodes the string whose opening quote is at d->p and pushes it. Strings
 * without escapes (nearly all of them) are pushed straight from the input;
 * otherwise the closing quote is found first, which bounds the output (an
 * escape never expands), and the text is unescaped into the scratch area. */
/* Bytes that stand for themselves inside a JSON string: printable ASCII but
 * '"' and '\\'. The string scanner skips runs of them with one lookup each. */
static const unsigned char pd_jstr_plain[256] = {
  0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
  1,1,0,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,
  1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,0,1,1,1,
  1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,
  0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
  0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
  0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
  0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
};

/* Decodes a string onto the Lua stack. A string without escapes is pushed
 * straight from the input; only one with escapes is rebuilt in the scratch buffer. */
static int pd_jdec_string(pd_jdec *d) {
  const unsigned char *s = d->p + 1, *q = s, *t, *end = d->end;
  unsigned char *out;
  size_t w;
  while (q < end) {
    unsigned c;
    while (q < end && pd_jstr_plain[*q]) q++;
    if (q >= end) break;
    c = *q;
    if (c == '"') {
      lua_pushlstring(d->L, (const char *)s, (size_t)(q - s));
      d->p = q + 1;
      return 1;
    }
    if (c == '\\') break;
    if (c < 0x20) return pd_jdec_fail(d, q, "control character in string", 0);
    {
      int n = pd_utf8_seq(q, end);
      if (!n && !d->lenient) return pd_jdec_fail(d, q, "invalid UTF-8 in string", 0);
      q += n ? n : 1;
    }
  }
  if (q >= end) return pd_jdec_fail(d, d->p, "unterminated string", 0);
  t = q;
  while (t < end && *t != '"') {
    if (*t == '\\') {
      if (end - t < 2) break;
      t += 2;
    } else {
      t++;
    }
  }
  if (t >= end || *t != '"') return pd_jdec_fail(d, d->p, "unterminated string", 0);
  out = pd_jdec_scratch(d, (size_t)(t - s));
  w = (size_t)(q - s);
  memcpy(out, s, w);
  while (q < t) {
    unsigned c = *q;
    if (c == '\\') {
      unsigned e = q[1], cp, lo;
      switch (e) {
        case '"': case '\\': case '/': out[w++] = (unsigned char)e; q += 2; continue;
        case 'b': out[w++] = '\b'; q += 2; continue;
        case 'f': out[w++] = '\f'; q += 2; continue;
        case 'n': out[w++] = '\n'; q += 2; continue;
        case 'r': out[w++] = '\r'; q += 2; continue;
        case 't': out[w++] = '\t'; q += 2; continue;
        case 'u': break;
        default: return pd_jdec_fail(d, q, "invalid escape in string", 0);
      }
      if (t - q < 6 || !pd_hex4(q + 2, &cp)) return pd_jdec_fail(d, q, "invalid \\u escape in string", 0);
      if (cp >= 0xDC00 && cp <= 0xDFFF) {
        if (!d->lenient) return pd_jdec_fail(d, q, "lone low surrogate in string", 0);
        cp = 0xFFFD;
        q += 6;
      } else if (cp >= 0xD800 && cp <= 0xDBFF) {
        if (t - q < 12 || q[6] != '\\' || q[7] != 'u' || !pd_hex4(q + 8, &lo) || lo < 0xDC00 || lo > 0xDFFF) {
          if (!d->lenient) return pd_jdec_fail(d, q, "lone high surrogate in string", 0);
          cp = 0xFFFD; /* the next escape, if any, is read on its own */
          q += 6;
        } else {
          cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          q += 12;
        }
      } else {
        q += 6;
      }
      w += pd_utf8_put(out + w, cp);
    } else if (c < 0x20) {
      return pd_jdec_fail(d, q, "control character in string", 0);
    } else if (c < 0x80) {
      out[w++] = (unsigned char)c;
      q++;
    } else {
      int n = pd_utf8_seq(q, t);
      if (!n && !d->lenient) return pd_jdec_fail(d, q, "invalid UTF-8 in string", 0);
      if (!n) n = 1;
      memcpy(out + w, q, (size_t)n);
      w += (size_t)n;
      q += n;
    }
  }
  lua_pushlstring(d->L, (const char *)out, w);
  d->p = t + 1;
  return 1;
}

/* strtod on a copy: the token is not NUL-terminated in the input (which may
 * hold NUL bytes), and "." must become the locale's decimal point. Long tokens
 * (hundreds of digits are legal JSON) get a userdata instead of the stack. */
static int pd_jdec_float(pd_jdec *d, const unsigned char *tok, size_t n, double *out) {
  char small[96], *buf = small, *endp;
  const char *dp = localeconv()->decimal_point;
  size_t dl = (dp && dp[0]) ? strlen(dp) : 0, i, w = 0;
  int boxed = 0;
  if (n + dl + 1 > sizeof small) {
    buf = (char *)pd_newuserdata(d->L, n + dl + 1);
    boxed = 1;
  }
  for (i = 0; i < n; i++) {
    if (tok[i] == '.' && dl) {
      memcpy(buf + w, dp, dl);
      w += dl;
    } else {
      buf[w++] = (char)tok[i];
    }
  }
  buf[w] = '\0';
  *out = strtod(buf, &endp);
  i = (size_t)(endp - buf);
  if (boxed) lua_pop(d->L, 1);
  return i == w;
}

/* Integers stay integers when the token has no fraction or exponent and fits
 * lua_Integer; anything else (including integers beyond 64 bits) is a float.
 * In exact mode (ids, de-duplication keys) a number is never rounded: one
 * that is not an integer the Lua number type holds exactly (before 5.3:
 * within 2^53) is pushed as its own text. */
static int pd_jdec_number(pd_jdec *d) {
  const unsigned char *p = d->p, *e = d->end, *digits;
  int neg = 0, isfloat = 0;
  double v;
  if (*p == '-') {
    neg = 1;
    p++;
  }
  digits = p;
  if (p >= e || *p < '0' || *p > '9') return pd_jdec_fail(d, d->p, "invalid number", 0);
  if (*p == '0') {
    p++;
    if (p < e && *p >= '0' && *p <= '9') return pd_jdec_fail(d, d->p, "invalid number (leading zero)", 0);
  } else {
    while (p < e && *p >= '0' && *p <= '9') p++;
  }
  if (p < e && *p == '.') {
    p++;
    if (p >= e || *p < '0' || *p > '9') return pd_jdec_fail(d, d->p, "invalid number", 0);
    while (p < e && *p >= '0' && *p <= '9') p++;
    isfloat = 1;
  }
  if (p < e && (*p == 'e' || *p == 'E')) {
    p++;
    if (p < e && (*p == '+' || *p == '-')) p++;
    if (p >= e || *p < '0' || *p > '9') return pd_jdec_fail(d, d->p, "invalid number", 0);
    while (p < e && *p >= '0' && *p <= '9') p++;
    isfloat = 1;
  }
  if (!isfloat) {
#if LUA_VERSION_NUM >= 503
    unsigned long long u = 0, lim = (unsigned long long)LUA_MAXINTEGER + (neg ? 1u : 0u);
#else
    unsigned long long u = 0, lim = (unsigned long long)LLONG_MAX + (neg ? 1u : 0u);
#endif
    const unsigned char *q;
    int fits = 1;
    for (q = digits; q < p; q++) {
      unsigned dgt = (unsigned)(*q - '0');
      if (u > (lim - dgt) / 10) {
        fits = 0;
        break;
      }
      u = u * 10 + dgt;
    }
#if LUA_VERSION_NUM < 503
    if (fits && d->exact && u > 9007199254740992ull) fits = 0;
#endif
    if (fits) {
#if LUA_VERSION_NUM >= 503
      /* -(u - 1) - 1 reaches LUA_MININTEGER without signed overflow */
      lua_pushinteger(d->L, neg && u ? -(lua_Integer)(u - 1) - 1 : (lua_Integer)u);
#else
      lua_pushnumber(d->L, neg ? -(lua_Number)u : (lua_Number)u);
#endif
      d->p = p;
      return 1;
    }
  }
  if (d->exact) {
    lua_pushlstring(d->L, (const char *)d->p, (size_t)(p - d->p));
    d->p = p;
    return 1;
  }
  if (!pd_jdec_float(d, d->p, (size_t)(p - d->p), &v)) return pd_jdec_fail(d, d->p, "invalid number", 0);
  if (isinf(v) && !d->lenient) return pd_jdec_fail(d, d->p, "number out of range", 0);
  lua_pushnumber(d->L, (lua_Number)v);
  d->p = p;
  return 1;
}

static int pd_jdec_value(pd_jdec *d);

/* Containers count against the depth limit before anything is pushed, and
 * reserve Lua stack for the pieces one level holds (table, key, value). */
static int pd_jdec_enter(pd_jdec *d) {
  if (++d->depth > PD_JSON_MAXDEPTH) return pd_jdec_fail(d, d->p, "nesting deeper than 1000", 0);
  if (!lua_checkstack(d->L, 6)) return pd_jdec_fail(d, d->p, "out of Lua stack", 0);
  return 1;
}

/* Members held on the Lua stack before their table is made, so that most
 * objects and arrays get a table of the right size at once instead of being
 * rehashed as they grow (1, 2, 4, ... 64). Past this, the table is made and
 * the rest is inserted directly. */
#define PD_JDEC_BATCH 64

/* Makes the table for the `n` values (arrays) or key/value pairs (objects)
 * above stack slot `base`, moves them in, in order (a repeated key: the last
 * wins), and leaves only the table at base + 1. */
static void pd_jdec_flush(pd_jdec *d, int base, int n, int is_array) {
  lua_State *L = d->L;
  int i;
  if (is_array) {
    lua_createtable(L, n, 0);
    lua_pushvalue(L, d->mt_idx);
    lua_setmetatable(L, -2);
  } else {
    lua_createtable(L, 0, n);
  }
  for (i = 0; i < n; i++) {
    if (is_array) {
      lua_pushvalue(L, base + 1 + i);
      lua_rawseti(L, -2, i + 1);
    } else {
      lua_pushvalue(L, base + 1 + 2 * i);
      lua_pushvalue(L, base + 2 + 2 * i);
      lua_rawset(L, -3);
    }
  }
  if (n > 0) {
    lua_replace(L, base + 1);
    lua_settop(L, base + 1);
  }
}

/* Decodes an array into a table marked with array_mt (so an empty one encodes
 * back as []); the first PD_JDEC_BATCH items wait on the stack so the table is
 * made at its size for the common short array. */
static int pd_jdec_array(pd_jdec *d) {
  lua_State *L = d->L;
  int base = lua_gettop(L), n = 0, made = 0;
#if LUA_VERSION_NUM >= 503
  lua_Integer i = 0;
#else
  int i = 0;
#endif
  if (!pd_jdec_enter(d)) return 0;
  d->p++;
  pd_jdec_ws(d);
  if (d->p < d->end && *d->p == ']') {
    pd_jdec_flush(d, base, 0, 1);
    d->p++;
    d->depth--;
    return 1;
  }
  for (;;) {
    if (!made && n == PD_JDEC_BATCH) {
      pd_jdec_flush(d, base, n, 1);
      made = 1;
      i = n;
    }
    if (!lua_checkstack(L, 4)) return pd_jdec_fail(d, d->p, "out of Lua stack", 0);
    if (!pd_jdec_value(d)) return 0;
    if (made) lua_rawseti(L, -2, ++i);
    else n++;
    pd_jdec_ws(d);
    if (d->p >= d->end) return pd_jdec_fail(d, d->p, "unexpected end of input", 0);
    if (*d->p == ',') {
      d->p++;
      continue;
    }
    if (*d->p == ']') break;
    return pd_jdec_fail(d, d->p, "expected ',' or ']'", 1);
  }
  if (!made) pd_jdec_flush(d, base, n, 1);
  d->p++;
  d->depth--;
  return 1;
}

/* Decodes an object into a table made at its final size when it is short;
 * a repeated key keeps the last value. */
static int pd_jdec_object(pd_jdec *d) {
  lua_State *L = d->L;
  int base = lua_gettop(L), n = 0, made = 0;
  if (!pd_jdec_enter(d)) return 0;
  d->p++;
  pd_jdec_ws(d);
  if (d->p < d->end && *d->p == '}') {
    pd_jdec_flush(d, base, 0, 0);
    d->p++;
    d->depth--;
    return 1;
  }
  for (;;) {
    if (!made && n == PD_JDEC_BATCH) {
      pd_jdec_flush(d, base, n, 0);
      made = 1;
    }
    if (!lua_checkstack(L, 6)) return pd_jdec_fail(d, d->p, "out of Lua stack", 0);
    pd_jdec_ws(d);
    if (d->p >= d->end) return pd_jdec_fail(d, d->p, "unexpected end of input", 0);
    if (*d->p != '"') return pd_jdec_fail(d, d->p, "expected a string key", 1);
    if (!pd_jdec_string(d)) return 0;
    pd_jdec_ws(d);
    if (d->p >= d->end) return pd_jdec_fail(d, d->p, "unexpected end of input", 0);
    if (*d->p != ':') return pd_jdec_fail(d, d->p, "expected ':'", 1);
    d->p++;
    if (!pd_jdec_value(d)) return 0;
    if (made) lua_rawset(L, -3);
    else n++;
    pd_jdec_ws(d);
    if (d->p >= d->end) return pd_jdec_fail(d, d->p, "unexpected end of input", 0);
    if (*d->p == ',') {
      d->p++;
      continue;
    }
    if (*d->p == '}') break;
    return pd_jdec_fail(d, d->p, "expected ',' or '}'", 1);
  }
  if (!made) pd_jdec_flush(d, base, n, 0);
  d->p++;
  d->depth--;
  return 1;
}

/* Matches true, false or null exactly, so a prefix such as "nul" is refused. */
static int pd_jdec_literal(pd_jdec *d, const char *word, size_t n) {
  if ((size_t)(d->end - d->p) < n || memcmp(d->p, word, n) != 0)
    return pd_jdec_fail(d, d->p, "invalid literal (expected true, false or null)", 0);
  d->p += n;
  return 1;
}

/* Decodes any value, bounding the nesting depth so hostile input cannot
 * exhaust the C stack. */
static int pd_jdec_value(pd_jdec *d) {
  pd_jdec_ws(d);
  if (d->p >= d->end) return pd_jdec_fail(d, d->p, "unexpected end of input", 0);
  switch (*d->p) {
    case '{': return pd_jdec_object(d);
    case '[': return pd_jdec_array(d);
    case '"': return pd_jdec_string(d);
    case 't':
      if (!pd_jdec_literal(d, "true", 4)) return 0;
      lua_pushboolean(d->L, 1);
      return 1;
    case 'f':
      if (!pd_jdec_literal(d, "false", 5)) return 0;
      lua_pushboolean(d->L, 0);
      return 1;
    case 'n':
      if (!pd_jdec_literal(d, "null", 4)) return 0;
      lua_pushlightuserdata(d->L, NULL);
      return 1;
    default:
      if (*d->p == '-' || (*d->p >= '0' && *d->p <= '9')) return pd_jdec_number(d);
      return pd_jdec_fail(d, d->p, "unexpected character", 1);
  }
}

/* The decoder as the other files use it: pushes the value of s[0..n) and
 * returns 1, or pushes nothing, writes "what at byte N" (1-based) into err
 * and returns 0. Only a memory error can raise, and it leaks nothing: all
 * temporary memory belongs to Lua. The caller keeps s alive (on the stack).
 * `mode` PD_JSON_STRICT is the contract of json_decode. PD_JSON_LENIENT is
 * for text we only pick a few members out of (OAuth token answers): a lone
 * surrogate escape becomes U+FFFD, bytes that are not UTF-8 are kept as
 * they are and a number beyond double range becomes +-HUGE_VAL, so one
 * stray value in a server's answer cannot hide the error code next to it.
 * PD_JSON_EXACT is strict with numbers kept exact (see pd_jdec_number).
 * Everything else (grammar, depth) is the same. */
static int pd_json_decode_mode(lua_State *L, const char *s, size_t n, int mode, char *err, size_t errlen) {
  pd_jdec d;
  int base = lua_gettop(L), ok;
  if (!lua_checkstack(L, 8)) {
    snprintf(err, errlen, "out of Lua stack");
    return 0;
  }
  pd_push_array_mt(L);
  lua_pushnil(L);
  memset(&d, 0, sizeof d);
  d.L = L;
  d.start = d.p = (const unsigned char *)s;
  d.end = d.start + n;
  d.mt_idx = base + 1;
  d.scratch_idx = base + 2;
  d.lenient = mode == PD_JSON_LENIENT;
  d.exact = mode == PD_JSON_EXACT;
  ok = pd_jdec_value(&d);
  if (ok) {
    pd_jdec_ws(&d);
    if (d.p < d.end) ok = pd_jdec_fail(&d, d.p, "trailing garbage", 1);
  }
  if (!ok) {
    lua_settop(L, base);
    if (d.err_ch >= 0x21 && d.err_ch < 0x7F && d.err_ch != '\'')
      snprintf(err, errlen, "%s at byte %lu (found '%c')", d.err, (unsigned long)d.err_pos + 1, d.err_ch);
    else if (d.err_ch >= 0)
      snprintf(err, errlen, "%s at byte %lu (found byte 0x%02X)", d.err, (unsigned long)d.err_pos + 1,
               (unsigned)d.err_ch);
    else
      snprintf(err, errlen, "%s at byte %lu", d.err, (unsigned long)d.err_pos + 1);
    return 0;
  }
  lua_replace(L, base + 1);
  lua_settop(L, base + 1);
  return 1;
}

/* Strict decoding, the JSON of json_decode and of API responses. */
static int pd_json_decode_buf(lua_State *L, const char *s, size_t n, char *err, size_t errlen) {
  return pd_json_decode_mode(L, s, n, PD_JSON_STRICT, err, errlen);
}

/* core.json_decode(s [, { exact = true }]): malformed text is an expected
 * runtime condition (it comes from the network), so it is reported as nil,
 * message; only a non-string argument or bad options, which are programming
 * errors, raise. `exact` keeps numbers that would be rounded as their text
 * (webhook ids: two distinct ids must never become one float). */
static int pd_json_decode_l(lua_State *L) {
  char err[160];
  size_t n;
  const char *s;
  int mode = PD_JSON_STRICT;
  if (lua_type(L, 1) != LUA_TSTRING)
    return pd_raise(L, "json_decode: expected a string, got %s", luaL_typename(L, 1));
  if (!lua_isnoneornil(L, 2)) {
    if (lua_type(L, 2) != LUA_TTABLE) return pd_raise(L, "json_decode: options must be a table { exact = true }");
    lua_getfield(L, 2, "exact");
    if (!lua_isnil(L, -1) && lua_type(L, -1) != LUA_TBOOLEAN)
      return pd_raise(L, "json_decode: options.exact must be a boolean");
    if (lua_toboolean(L, -1)) mode = PD_JSON_EXACT;
  }
  s = lua_tolstring(L, 1, &n);
  lua_settop(L, 1);
  if (pd_json_decode_mode(L, s, n, mode, err, sizeof err)) return 1;
  lua_pushnil(L);
  lua_pushfstring(L, "json_decode: %s", err);
  return 2;
}

/* ---------------------------------------------------------------- encoder */

/* One open container: which child is being encoded. Frames live in the C
 * stack frames of the recursion, linked to their parent, so tracking the
 * path costs nothing until an error needs it. */
typedef struct pd_jframe {
  const struct pd_jframe *parent;
  const char *key;     /* NULL: array index */
  size_t keylen;
  long long index;
} pd_jframe;

typedef struct pd_jenc {
  lua_State *L;
  pd_buf *b;
  const char *fname;   /* prefix of raised messages */
  int depth;
  int visiting;        /* stack slot: tables being encoded, for cycle detection */
  int mt_idx;          /* stack slot of core.array_mt */
  const pd_jframe *top; /* innermost open container, NULL at the top level */
} pd_jenc;

/* Appends the path to the failing value (".person.email[2]") so that a caller
 * encoding a large request body can see which field is wrong. Keys are shown
 * only when printable, and cut short; values are never shown. */
static void pd_jenc_path(const pd_jenc *e, char *out, size_t cap) {
  const pd_jframe *chain[PD_JSON_MAXDEPTH], *fr;
  size_t w = 0;
  int i, levels = 0;
  out[0] = '\0';
  for (fr = e->top; fr && levels < PD_JSON_MAXDEPTH; fr = fr->parent) chain[levels++] = fr;
  for (i = levels - 1; i >= 0 && w + 48 < cap; i--) {
    const pd_jframe *f = chain[i];
    if (!f->key) {
      w += (size_t)snprintf(out + w, cap - w, "[%lld]", f->index);
    } else {
      size_t j, n = f->keylen > 32 ? 32 : f->keylen;
      int plain = f->keylen > 0 && f->keylen <= 40;
      for (j = 0; j < f->keylen && plain; j++) {
        unsigned char c = (unsigned char)f->key[j];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_')) plain = 0;
      }
      if (plain) {
        out[w++] = '.';
        memcpy(out + w, f->key, f->keylen);
        w += f->keylen;
      } else {
        out[w++] = '[';
        out[w++] = '"';
        for (j = 0; j < n; j++) {
          unsigned char c = (unsigned char)f->key[j];
          out[w++] = (c >= 0x20 && c < 0x7F && c != '"' && c != '\\') ? (char)c : '?';
        }
        if (n < f->keylen) {
          memcpy(out + w, "...", 3);
          w += 3;
        }
        out[w++] = '"';
        out[w++] = ']';
      }
      out[w] = '\0';
    }
  }
  if (i >= 0) snprintf(out + w, cap - w, "...");
}

/* Raises "<fname>: <what> at <path>". The output buffer is in a box, so the
 * long jump leaks nothing. */
static void pd_jenc_fail(pd_jenc *e, const char *msg) {
  char path[400];
  pd_jenc_path(e, path, sizeof path);
  pd_raise(e->L, "%s: %s%s%s", e->fname, msg, path[0] ? " at " : "", path);
}

/* Strings are checked for UTF-8 here so that a broken string is reported with
 * its path instead of being sent and refused by the server; valid UTF-8 is
 * copied as is (no \u escapes for non-ASCII), control characters escaped. */
static void pd_jenc_string(pd_jenc *e, const char *str, size_t n) {
  static const char hex[] = "0123456789abcdef";
  const unsigned char *s = (const unsigned char *)str, *end = s + n, *run = s;
  pd_buf *b = e->b;
  pd_buf_addc(b, '"');
  while (s < end) {
    unsigned c = *s;
    if (c >= 0x20 && c != '"' && c != '\\' && c < 0x80) {
      s++;
      continue;
    }
    if (c >= 0x80) {
      int k = pd_utf8_seq(s, end);
      if (!k) {
        pd_jenc_fail(e, "invalid UTF-8 in string");
        return;
      }
      s += k;
      continue;
    }
    pd_buf_add(b, run, (size_t)(s - run));
    switch (c) {
      case '"': pd_buf_add(b, "\\\"", 2); break;
      case '\\': pd_buf_add(b, "\\\\", 2); break;
      case '\n': pd_buf_add(b, "\\n", 2); break;
      case '\r': pd_buf_add(b, "\\r", 2); break;
      case '\t': pd_buf_add(b, "\\t", 2); break;
      case '\b': pd_buf_add(b, "\\b", 2); break;
      case '\f': pd_buf_add(b, "\\f", 2); break;
      default: {
        char u[6] = { '\\', 'u', '0', '0', hex[c >> 4], hex[c & 15] };
        pd_buf_add(b, u, 6);
      }
    }
    run = ++s;
  }
  pd_buf_add(b, run, (size_t)(s - run));
  pd_buf_addc(b, '"');
}

/* Orders object keys bytewise: encoded objects come out in one stable order,
 * which keeps request bodies and their logs comparable. */
static int pd_jkey_cmp(const void *a, const void *b) {
  const pd_jkey *x = (const pd_jkey *)a, *y = (const pd_jkey *)b;
  size_t n = x->n < y->n ? x->n : y->n;
  int c = memcmp(x->s, y->s, n);
  if (c) return c;
  return x->n < y->n ? -1 : (x->n > y->n ? 1 : 0);
}

static void pd_jenc_value(pd_jenc *e, int idx);

/* 0 = decide by the keys, 1 = array, 2 = object: array_mt itself, or a raw
 * __jsontype field in any metatable (raw, so no metamethod runs). */
static int pd_jenc_marker(pd_jenc *e, int idx) {
  lua_State *L = e->L;
  int kind = 0;
  if (!lua_getmetatable(L, idx)) return 0;
  if (lua_rawequal(L, -1, e->mt_idx)) {
    lua_pop(L, 1);
    return 1;
  }
  lua_pushliteral(L, "__jsontype");
  lua_rawget(L, -2);
  if (lua_type(L, -1) == LUA_TSTRING) {
    const char *t = lua_tostring(L, -1);
    if (strcmp(t, "array") == 0) kind = 1;
    else if (strcmp(t, "object") == 0) kind = 2;
  }
  lua_pop(L, 2);
  return kind;
}

/* Keys are sorted (bytewise) so that equal tables always give equal text:
 * request logs, signatures and specs can compare bodies. The keys are
 * anchored in a Lua table while their C pointers are in use. Key problems are
 * reported before depth++, so the path names the table itself. */
static void pd_jenc_object(pd_jenc *e, int idx, size_t count) {
  lua_State *L = e->L;
  pd_jkey *keys = (pd_jkey *)pd_newuserdata(L, count * sizeof *keys);
  pd_jframe f;
  int kt, i = 0, j;
  lua_createtable(L, count < INT_MAX ? (int)count : 0, 0);
  kt = lua_gettop(L);
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    lua_pop(L, 1);
    if (lua_type(L, -1) != LUA_TSTRING) {
      char msg[160];
      snprintf(msg, sizeof msg, "object key must be a string, got %s (a table is an array only when its keys are 1..n)",
               luaL_typename(L, -1));
      pd_jenc_fail(e, msg);
      return;
    }
    if ((size_t)i >= count) {
      pd_jenc_fail(e, "table changed while being encoded");
      return;
    }
    lua_pushvalue(L, -1);
    lua_rawseti(L, kt, i + 1);
    keys[i].s = lua_tolstring(L, -1, &keys[i].n);
    keys[i].slot = i + 1;
    i++;
  }
  qsort(keys, (size_t)i, sizeof *keys, pd_jkey_cmp);
  f.parent = e->top;
  f.index = 0;
  e->top = &f;
  e->depth++;
  pd_buf_addc(e->b, '{');
  for (j = 0; j < i && !pd_buf_failed(e->b); j++) {
    if (j) pd_buf_addc(e->b, ',');
    f.key = keys[j].s;
    f.keylen = keys[j].n;
    pd_jenc_string(e, keys[j].s, keys[j].n);
    pd_buf_addc(e->b, ':');
    lua_rawgeti(L, kt, keys[j].slot);
    lua_rawget(L, idx);
    pd_jenc_value(e, lua_gettop(L));
    lua_pop(L, 1);
  }
  pd_buf_addc(e->b, '}');
  e->depth--;
  e->top = f.parent;
  lua_pop(L, 2);
}

/* One pass over the keys decides the shape: a non-empty sequence 1..n (or a
 * marked array) is an array, anything else an object. Raw access only: the
 * encoder never runs metamethods, so what is sent is what the table holds. */
static void pd_jenc_table(pd_jenc *e, int idx) {
  lua_State *L = e->L;
  int marker, allint = 1;
  size_t count = 0;
  long long maxkey = 0, i;
  if (e->depth >= PD_JSON_MAXDEPTH) {
    pd_jenc_fail(e, "nesting deeper than 1000");
    return;
  }
  if (!lua_checkstack(L, 10)) {
    pd_jenc_fail(e, "out of Lua stack");
    return;
  }
  lua_pushvalue(L, idx);
  lua_rawget(L, e->visiting);
  if (lua_toboolean(L, -1)) {
    pd_jenc_fail(e, "cycle: a table contains itself");
    return;
  }
  lua_pop(L, 1);
  marker = pd_jenc_marker(e, idx);
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    lua_pop(L, 1);
    count++;
    if (!allint) continue;
#if LUA_VERSION_NUM >= 503
    if (lua_isinteger(L, -1) && lua_tointeger(L, -1) >= 1) {
      long long k = (long long)lua_tointeger(L, -1);
#else
    if (pd_isinteger(L, -1) && lua_tonumber(L, -1) >= 1 && lua_tonumber(L, -1) < 9e15) {
      long long k = (long long)lua_tonumber(L, -1);
#endif
      if (k > maxkey) maxkey = k;
    } else {
      allint = 0;
    }
  }
  if (marker == 1 && !(allint && (size_t)maxkey == count)) {
    pd_jenc_fail(e, "a table marked as array must have only the keys 1..n");
    return;
  }
  if (marker == 0 && count > 0 && allint && (size_t)maxkey != count) {
    char msg[120];
    snprintf(msg, sizeof msg, "array with holes: %lu keys, the largest %lld", (unsigned long)count, maxkey);
    pd_jenc_fail(e, msg);
    return;
  }
  lua_pushvalue(L, idx);
  lua_pushboolean(L, 1);
  lua_rawset(L, e->visiting);
  if (marker == 1 || (marker == 0 && count > 0 && allint)) {
    pd_jframe f;
    f.parent = e->top;
    f.key = NULL;
    f.keylen = 0;
    e->top = &f;
    e->depth++;
    pd_buf_addc(e->b, '[');
    for (i = 1; i <= maxkey && !pd_buf_failed(e->b); i++) {
      if (i > 1) pd_buf_addc(e->b, ',');
      f.index = i;
      lua_rawgeti(L, idx, (lua_Integer)i);
      pd_jenc_value(e, lua_gettop(L));
      lua_pop(L, 1);
    }
    pd_buf_addc(e->b, ']');
    e->depth--;
    e->top = f.parent;
  } else if (count == 0) {
    pd_buf_add(e->b, "{}", 2);
  } else {
    pd_jenc_object(e, idx, count);
  }
  lua_pushvalue(L, idx);
  lua_pushnil(L);
  lua_rawset(L, e->visiting);
}

/* Encodes the value at idx; everything JSON cannot hold raises here, before
 * any byte of the request is sent. */
static void pd_jenc_value(pd_jenc *e, int idx) {
  lua_State *L = e->L;
  char msg[64];
  switch (lua_type(L, idx)) {
    case LUA_TNIL: pd_buf_add(e->b, "null", 4); break;
    case LUA_TBOOLEAN:
      if (lua_toboolean(L, idx)) pd_buf_add(e->b, "true", 4);
      else pd_buf_add(e->b, "false", 5);
      break;
    case LUA_TNUMBER: {
      char num[PD_NUMBUF];
      size_t n = pd_fmt_number(L, idx, num, 1);
      if (!n) {
        pd_jenc_fail(e, "cannot encode NaN or infinity");
        return;
      }
      pd_buf_add(e->b, num, n);
      break;
    }
    case LUA_TSTRING: {
      size_t n;
      const char *s = lua_tolstring(L, idx, &n);
      pd_jenc_string(e, s, n);
      break;
    }
    case LUA_TTABLE: pd_jenc_table(e, idx); break;
    case LUA_TLIGHTUSERDATA:
      if (lua_touserdata(L, idx) == NULL) {
        pd_buf_add(e->b, "null", 4);
        break;
      }
      /* fall through */
    default:
      snprintf(msg, sizeof msg, "cannot encode %s", luaL_typename(L, idx));
      pd_jenc_fail(e, msg);
  }
}

/* The encoder as the other files use it: pushes the JSON text of the value at
 * idx; raises "<fname>: ..." for values JSON cannot hold. */
static void pd_json_encode_push(lua_State *L, int idx, const char *fname) {
  pd_jenc e;
  pd_buf *b;
  int box;
  idx = idx < 0 && idx > LUA_REGISTRYINDEX ? lua_gettop(L) + idx + 1 : idx;
  pd_checkstack(L, 8, fname);
  b = pd_box_new(L, PD_JSON_MAXOUT);
  box = lua_gettop(L);
  e.L = L;
  e.b = b;
  e.fname = fname;
  e.depth = 0;
  e.top = NULL;
  lua_newtable(L);
  e.visiting = lua_gettop(L);
  pd_push_array_mt(L);
  e.mt_idx = lua_gettop(L);
  pd_jenc_value(&e, idx);
  if (pd_buf_failed(b)) {
    pd_buf_free(b);
    pd_raise(L, "%s: JSON text larger than %d MiB or out of memory", fname, (int)(PD_JSON_MAXOUT >> 20));
  }
  pd_box_push(L, b);
  lua_replace(L, box);
  lua_settop(L, box);
}

/* core.json_encode(v): misuse (a value JSON cannot hold) raises, because it is
 * a bug in the caller, not a condition to handle at run time. */
static int pd_json_encode_l(lua_State *L) {
  lua_settop(L, 1);
  pd_json_encode_push(L, 1, "json_encode");
  return 1;
}

/* core.array(t): marks t (or a new table) as a JSON array, so that an empty
 * one still encodes as [] and a decoded one keeps its type. */
static int pd_json_array_l(lua_State *L) {
  if (lua_isnoneornil(L, 1)) {
    lua_settop(L, 0);
    lua_newtable(L);
  } else if (lua_type(L, 1) != LUA_TTABLE) {
    return pd_raise(L, "array: expected a table or nil, got %s", luaL_typename(L, 1));
  }
  lua_settop(L, 1);
  pd_push_array_mt(L);
  lua_setmetatable(L, 1);
  return 1;
}

/* Registry entries are reused when the module is opened again in the same
 * state, so arrays decoded before a re-require keep being recognised. */
static void pd_json_open(lua_State *L) {
  pd_push_array_mt(L);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushliteral(L, "pipedrive.array");
    lua_setfield(L, -2, "__name");
    lua_pushliteral(L, "array");
    lua_setfield(L, -2, "__jsontype");
    lua_pushlightuserdata(L, (void *)&pd_array_mt_key);
    lua_pushvalue(L, -2);
    lua_rawset(L, LUA_REGISTRYINDEX);
  }
  lua_setfield(L, -2, "array_mt");

  lua_pushlightuserdata(L, NULL);
  lua_setfield(L, -2, "null");
  lua_pushcfunction(L, pd_json_array_l);
  lua_setfield(L, -2, "array");
  lua_pushcfunction(L, pd_json_decode_l);
  lua_setfield(L, -2, "json_decode");
  lua_pushcfunction(L, pd_json_encode_l);
  lua_setfield(L, -2, "json_encode");
}
