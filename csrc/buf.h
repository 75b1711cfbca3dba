/* A growable byte buffer with a hard cap, shared by the C files of both modules.
 * Every function is static: each module includes this header once (unity build).
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
} pd_buf;

/* Start empty; no allocation until the first append. */
static void pd_buf_init(pd_buf *b, size_t max) {
  b->data = NULL;
  b->len = b->cap = 0;
  b->max = max;
  b->failed = 0;
}

static void pd_buf_free(pd_buf *b) {
  free(b->data);
  b->data = NULL;
  b->len = b->cap = 0;
}

/* Make room for n more bytes plus a terminating NUL; 0 on failure (sticky). */
static int pd_buf_reserve(pd_buf *b, size_t n) {
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
  p = (char *)realloc(b->data, ncap);
  if (!p) {
    b->failed = 1;
    return 0;
  }
  b->data = p;
  b->cap = ncap;
  return 1;
}

static void pd_buf_add(pd_buf *b, const void *s, size_t n) {
  if (!pd_buf_reserve(b, n)) return;
  if (n) memcpy(b->data + b->len, s, n);
  b->len += n;
  b->data[b->len] = '\0';
}

static void pd_buf_addc(pd_buf *b, char c) {
  if (b->len + 1 < b->cap && !b->failed) {
    b->data[b->len++] = c;
    b->data[b->len] = '\0';
    return;
  }
  pd_buf_add(b, &c, 1);
}

static void pd_buf_adds(pd_buf *b, const char *s) { pd_buf_add(b, s, strlen(s)); }

#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
static void pd_buf_addf(pd_buf *b, const char *fmt, ...) {
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

static int pd_buf_failed(const pd_buf *b) { return b->failed; }

#endif
