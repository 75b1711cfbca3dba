/* secret.h: what secret.c gives oauth.c and fs.c. Declarations only. */
#ifndef PD_SECRET_H
#define PD_SECRET_H

#include "pd.h"

static int pd_secret_random_bytes(unsigned char *out, size_t n);
static void pd_secret_b64_add(pd_buf *b, const unsigned char *s, size_t n, int url);

#endif
