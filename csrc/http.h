/* http.h: the libcurl handle of http.c, which multi.c's slots reuse so that
 * requests are loaded, and answers and errors pushed, by one piece of code.
 * The struct and the declarations of what multi.c calls; http.c defines them. */
#ifndef PD_HTTP_H
#define PD_HTTP_H

#include <curl/curl.h>

#include "pd.h"

#define PD_HTTP_MT "pipedrive.http"
/* libcurl itself refuses header lines above 100 KiB; this bounds their sum. */
#define PD_HTTP_HEADERS_MAX (1024u * 1024u)

/* One client. `easy` is NULL while closed; the other pointers are owned and
 * released by pd_http_release. */
typedef struct pd_http {
  CURL *easy;
  char *user_agent;
  char *ca_file;
  long timeout_ms;
  long connect_timeout_ms;
  long max_redirects;
  size_t max_response;
  int verify;
  /* per-request state, kept here so an error while building Lua values
   * cannot leak it */
  struct curl_slist *req_headers;
  char *url;
  curl_mime *mime;  /* a multipart request's parts (multipart.c), or NULL */
  int file_failed;  /* this request's file part could not be read: error kind "file" */
  pd_buf body;
  pd_buf headers; /* "name\0value\0" pairs, names lower-cased */
  int too_large;
  int headers_too_large;
  int static_set; /* the options that never change are set on `easy` */
  int compress;     /* this request asks for a compressed answer (req.compress) */
  int compress_set; /* what CURLOPT_ACCEPT_ENCODING is set to on `easy` */
  int nheaders;   /* header lines in `headers`, to size the Lua table */
  char method[8];
  char errbuf[CURL_ERROR_SIZE];
} pd_http;

static void pd_http_clear_request(pd_http *h);
static void pd_http_release(pd_http *h);
static char *pd_http_strdup(const char *s, size_t n);
static int pd_http_new(lua_State *L);
static CURLcode pd_http_load(lua_State *L, pd_http *h, int t);
static int pd_http_finish(lua_State *L, pd_http *h, CURLcode rc);

#endif
