/* The baseline for row 1 of bench/RESULTS.md: the least a Lua program can
 * spend on one deals.get. One libcurl easy handle reused (connection kept
 * alive), the body collected into a growing buffer and decoded by lua-cjson
 * into a Lua table, exactly what a hand-written client would do.
 *
 *   raw_curl URL N   -> one JSON line: calls, cpu_us (user+sys per call,
 *                       getrusage over the N calls after 100 warm-up calls),
 *                       wall_us, peak_rss_kb
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <curl/curl.h>
#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>

typedef struct {
  char *data;
  size_t len, cap;
} buf;

static size_t write_cb(char *p, size_t size, size_t n, void *ud) {
  buf *b = (buf *)ud;
  size_t add = size * n;
  if (b->len + add + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + add + 1) cap *= 2;
    b->data = realloc(b->data, cap);
    if (!b->data) return 0;
    b->cap = cap;
  }
  memcpy(b->data + b->len, p, add);
  b->len += add;
  return add;
}

static double user_seconds(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6;
}

static double sys_seconds(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

static double wall_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static long peak_rss_kb(void) {
  char line[256];
  long kb = -1;
  FILE *f = fopen("/proc/self/status", "r");
  if (!f) return -1;
  while (fgets(line, sizeof line, f))
    if (strncmp(line, "VmHWM:", 6) == 0) kb = strtol(line + 6, NULL, 10);
  fclose(f);
  return kb;
}

/* One GET and one decode; returns 0 on success. */
static int one(CURL *e, lua_State *L, buf *b) {
  long status = 0;
  b->len = 0;
  if (curl_easy_perform(e) != CURLE_OK) return 1;
  curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
  if (status != 200) return 1;
  lua_getfield(L, -1, "decode");
  lua_pushlstring(L, b->data, b->len);
  lua_call(L, 1, 1);
  if (!lua_istable(L, -1)) return 1;
  lua_pop(L, 1);
  return 0;
}

int main(int argc, char **argv) {
  CURL *e;
  lua_State *L;
  buf b = {0};
  struct curl_slist *h = NULL;
  long n, i;
  double u0, s0, w0;
  if (argc < 3) {
    fprintf(stderr, "usage: raw_curl URL N\n");
    return 2;
  }
  n = atol(argv[2]);
  curl_global_init(CURL_GLOBAL_DEFAULT);
  L = luaL_newstate();
  luaL_openlibs(L);
  lua_getglobal(L, "require");
  lua_pushliteral(L, "cjson");
  lua_call(L, 1, 1); /* cjson module stays on the stack */
  e = curl_easy_init();
  h = curl_slist_append(h, "x-api-token: bench-token");
  h = curl_slist_append(h, "accept: application/json");
  curl_easy_setopt(e, CURLOPT_URL, argv[1]);
  curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, write_cb);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, &b);
  curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
  for (i = 0; i < 100; i++)
    if (one(e, L, &b)) {
      fprintf(stderr, "raw_curl: request failed\n");
      return 1;
    }
  u0 = user_seconds();
  s0 = sys_seconds();
  w0 = wall_seconds();
  for (i = 0; i < n; i++)
    if (one(e, L, &b)) {
      fprintf(stderr, "raw_curl: request failed\n");
      return 1;
    }
  {
    double u = (user_seconds() - u0) * 1e6 / (double)n, s = (sys_seconds() - s0) * 1e6 / (double)n;
    printf("{\"calls\":%ld,\"cpu_us\":%.2f,\"user_us\":%.2f,\"sys_us\":%.2f,\"wall_us\":%.2f,\"peak_rss_kb\":%ld}\n", n,
           u + s, u, s, (wall_seconds() - w0) * 1e6 / (double)n, peak_rss_kb());
  }
  curl_slist_free_all(h);
  curl_easy_cleanup(e);
  lua_close(L);
  free(b.data);
  curl_global_cleanup();
  return 0;
}
