/* A growable byte buffer with a hard cap, shared by the C files of both modules.
 * Every function is static inline: each module includes this header, and a
 * file that uses part of it gets no unused-function warning.
 * A buffer marked secret (pd_box_new_secret in pd.h) is wiped before any of
 * its memory is given back: on growth and on free.
 * Growth doubles, so appending n bytes costs O(n) amortised; the cap bounds
 * memory whatever a peer sends. Failure (allocation or cap) is sticky: after
 * it, appends do nothing and pd_buf_failed() reports it, so callers check once. */
#ifndef PD_BUF_H
#define PD_BUF_H

#include <stdlib.h>
#include <string.h>
#include <stdarg.h>
#include <stdio.h>

typedef struct pd_buf {
  char *data;
  size_t len;
  size_t cap;   /* allocated bytes */
  size_t max;   /* hard limit on len; 0 means no limit beyond size_t */
  int failed;   /* 1 after an allocation failure or when max was exceeded */
  int secret;   /* 1: wipe every copy before its memory is released */
} pd_buf;

/* Overwrites n bytes at p. A plain memset before free() may be removed by
 * the optimiser; stores through a volatile pointer may not. */
static inline void pd_wipe(void *p, size_t n) {
  volatile unsigned char *v = (volatile unsigned char *)p;
  while (n--) *v++ = 0;
}

/* Start empty; no allocation until the first append. */
static inline void pd_buf_init(pd_buf *b, size_t max) {
  b->data = NULL;
  b->len = b->cap = 0;
  b->max = max;
  b->failed = 0;
  b->secret = 0;
}

/* The one way a buffer's memory is released (owners, boxes' __gc): wiped
 * first when the buffer is secret. Idempotent. */
static inline void pd_buf_free(pd_buf *b) {
  if (b->secret && b->data) pd_wipe(b->data, b->cap);
  free(b->data);
  b->data = NULL;
  b->len = b->cap = 0;
}

/* Make room for n more bytes plus a terminating NUL; 0 on failure (sticky). */
static inline int pd_buf_reserve(pd_buf *b, size_t n) {
  size_t need, ncap;
  char *p;
  if (b->failed) return 0;
  if (n > (size_t)-1 - b->len - 1 || (b->max && b->len + n > b->max)) {
    b->failed = 1;
    return 0;
  }
  need = b->len + n + 1;
  if (need <= b->cap) return 1;
  ncap = b->cap ? b->cap : 256;
  while (ncap < need) ncap = ncap > (size_t)-1 / 2 ? need : ncap * 2;
  if (b->secret) {
    /* realloc would free the old block unwiped: copy, wipe, free instead */
    p = (char *)malloc(ncap);
    if (p && b->data) {
      memcpy(p, b->data, b->len + 1);
      pd_wipe(b->data, b->cap);
    }
    if (p) free(b->data);
  } else {
    p = (char *)realloc(b->data, ncap);
  }
  if (!p) {
    b->failed = 1;
    return 0;
  }
  b->data = p;
  b->cap = ncap;
  return 1;
}

/* Appends n bytes (nothing after a failure). */
static inline void pd_buf_add(pd_buf *b, const void *s, size_t n) {
  if (!pd_buf_reserve(b, n)) return;
  if (n) memcpy(b->data + b->len, s, n);
  b->len += n;
  b->data[b->len] = '\0';
}

/* Appends one byte; the common case (room left) skips the reserve call. */
static inline void pd_buf_addc(pd_buf *b, char c) {
  if (b->len + 1 < b->cap && !b->failed) {
    b->data[b->len++] = c;
    b->data[b->len] = '\0';
    return;
  }
  pd_buf_add(b, &c, 1);
}

/* Appends a NUL-terminated string. */
static inline void pd_buf_adds(pd_buf *b, const char *s) { pd_buf_add(b, s, strlen(s)); }

/* Appends printf-formatted text: short results through a stack buffer,
 * long ones formatted again straight into the reserved room. */
#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
static inline void pd_buf_addf(pd_buf *b, const char *fmt, ...) {
  char tmp[128];
  va_list ap;
  int n;
  va_start(ap, fmt);
  n = vsnprintf(tmp, sizeof tmp, fmt, ap);
  va_end(ap);
  if (n < 0) {
    b->failed = 1;
    return;
  }
  if ((size_t)n < sizeof tmp) {
    pd_buf_add(b, tmp, (size_t)n);
    return;
  }
  if (!pd_buf_reserve(b, (size_t)n)) return;
  va_start(ap, fmt);
  vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
  va_end(ap);
  b->len += (size_t)n;
}

/* Whether an append failed (allocation or cap); sticky, so checked once. */
static inline int pd_buf_failed(const pd_buf *b) { return b->failed; }

#endif
