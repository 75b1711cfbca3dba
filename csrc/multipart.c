/* multipart/form-data uploads (Pipedrive's files, product images, person
 * pictures). A request table may carry
 *   multipart = { { name = "file", path = "/tmp/a.pdf" | data = "...",
 *                   filename = "a.pdf", type = "application/pdf" }, ... }
 * This file is the one reader of that list:
 *   - build_request checks it and copies it into the finished request
 *     (pd_mp_push_checked), numbers and booleans turned into text;
 *   - http.c turns it into libcurl's mime handle (pd_mp_mime), so libcurl
 *     streams files from disk and writes the boundary itself;
 *   - core.multipart_body(parts) writes the same parts as one body string
 *     with a random boundary, for transports that take a string (OpenResty,
 *     a user's transport function).
 * Names, file names and types are refused when they hold a line break, NUL or
 * a double quote: they end up inside a header line. Messages name the part
 * and the field, never a value (a data part may be anything). */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <curl/curl.h>

#include "pd.h"
#include "json.h"
#include "secret.h"
#include "multipart.h"

/* A body built in memory (core.multipart_body) is refused past this size:
 * Pipedrive's own upload limit is far below it. */
#define PD_MP_BODY_MAX ((size_t)128 * 1024 * 1024)
#define PD_MP_NAME_MAX 255

/* True when s[0..n) may stand inside a quoted header parameter: no CR, LF,
 * NUL or double quote, and not empty. */
static int pd_mp_header_safe(const char *s, size_t n) {
  size_t i;
  if (n == 0 || n > PD_MP_NAME_MAX) return 0;
  for (i = 0; i < n; i++)
    if (s[i] == '\r' || s[i] == '\n' || s[i] == '\0' || s[i] == '"') return 0;
  return 1;
}

/* The number of parts of the list at t (a sequence 1..n of tables, at least
 * one, at most PD_MP_MAX_PARTS); raises naming `who` otherwise. */
static int pd_mp_count(lua_State *L, int t, const char *who) {
  int n = 0;
  size_t len;
  if (lua_type(L, t) != LUA_TTABLE) return pd_raise(L, "%s: field 'multipart' must be a list of parts", who);
  len = (size_t)lua_rawlen(L, t);
  lua_pushnil(L);
  while (lua_next(L, t)) {
    lua_pop(L, 1);
    n++;
  }
  if (n == 0 || (size_t)n != len) return pd_raise(L, "%s: field 'multipart' must be a list 1..n of parts", who);
  if (n > PD_MP_MAX_PARTS) return pd_raise(L, "%s: field 'multipart' has more than %d parts", who, PD_MP_MAX_PARTS);
  return n;
}

/* Reads part i of the list at t into p, leaving the part table and its five
 * fields on the stack (the caller restores its top when done with p). With
 * `convert`, a number or boolean `data` becomes its text (a form field such
 * as deal_id = 5). Raises naming `who`, the part and the field on misuse. */
static void pd_mp_read_part(lua_State *L, int t, int i, const char *who, int convert, pd_mp_part *p) {
  static const char *const fields[] = { "name", "path", "data", "filename", "type" };
  int pt, k;
  pd_checkstack(L, 10, who);
  memset(p, 0, sizeof *p);
  lua_rawgeti(L, t, i);
  pt = lua_gettop(L);
  if (lua_type(L, pt) != LUA_TTABLE) {
    pd_raise(L, "%s: multipart part %d must be a table { name, path or data, filename, type }", who, i);
    return;
  }
  lua_pushnil(L);
  while (lua_next(L, pt)) {
    int known = 0;
    lua_pop(L, 1);
    if (lua_type(L, -1) == LUA_TSTRING)
      for (k = 0; k < 5; k++)
        if (strcmp(lua_tostring(L, -1), fields[k]) == 0) known = 1;
    if (!known) {
      lua_pop(L, 1);
      pd_raise(L, "%s: multipart part %d has an unknown field (expected name, path, data, filename, type)", who, i);
      return;
    }
  }
  for (k = 0; k < 5; k++) {
    int ty;
    lua_getfield(L, pt, fields[k]);
    ty = lua_type(L, -1);
    if (ty == LUA_TNIL) continue;
    if (k == 2 && convert && (ty == LUA_TNUMBER || ty == LUA_TBOOLEAN)) {
      char num[PD_NUMBUF];
      size_t nn;
      if (ty == LUA_TBOOLEAN) {
        lua_pushstring(L, lua_toboolean(L, -1) ? "true" : "false");
      } else {
        nn = pd_fmt_number(L, -1, num, 0);
        if (!nn) {
          pd_raise(L, "%s: multipart part %d field 'data' is not a finite number", who, i);
          return;
        }
        lua_pushlstring(L, num, nn);
      }
      lua_replace(L, -2);
    } else if (ty != LUA_TSTRING) {
      pd_raise(L, "%s: multipart part %d field '%s' must be a string, got %s", who, i, fields[k],
               luaL_typename(L, -1));
      return;
    }
  }
  p->name = lua_tolstring(L, pt + 1, &p->name_len);
  p->path = lua_tostring(L, pt + 2);
  p->data = lua_tolstring(L, pt + 3, &p->data_len);
  p->filename = lua_tostring(L, pt + 4);
  p->type = lua_tostring(L, pt + 5);
  if (!p->name || !pd_mp_header_safe(p->name, p->name_len)) {
    pd_raise(L, "%s: multipart part %d needs a 'name' (1 to %d bytes, no line break, NUL or '\"')", who, i,
             PD_MP_NAME_MAX);
    return;
  }
  if ((p->path == NULL) == (p->data == NULL)) {
    pd_raise(L, "%s: multipart part %d needs exactly one of 'path' (a file to send) and 'data' (the content)", who, i);
    return;
  }
  if (p->path && (p->path[0] == '\0' || strlen(p->path) != (size_t)lua_rawlen(L, pt + 2))) {
    pd_raise(L, "%s: multipart part %d field 'path' must be a file name without NUL bytes", who, i);
    return;
  }
  if (p->filename && !pd_mp_header_safe(p->filename, (size_t)lua_rawlen(L, pt + 4))) {
    pd_raise(L, "%s: multipart part %d field 'filename' must be 1 to %d bytes, no line break, NUL or '\"'", who, i,
             PD_MP_NAME_MAX);
    return;
  }
  if (p->type) {
    size_t j, n = (size_t)lua_rawlen(L, pt + 5);
    int ok = n > 0 && n <= PD_MP_NAME_MAX && strchr(p->type, '/') != NULL;
    for (j = 0; ok && j < n; j++)
      if ((unsigned char)p->type[j] < 0x20 || (unsigned char)p->type[j] >= 0x7F || p->type[j] == '"') ok = 0;
    if (!ok) {
      pd_raise(L, "%s: multipart part %d field 'type' must be a media type such as image/png", who, i);
      return;
    }
  }
}

/* Pushes a checked copy of the parts list at t (only the known fields, data
 * as text), for build_request's result. Raises naming `who` on misuse. */
static void pd_mp_push_checked(lua_State *L, int t, const char *who) {
  int n = pd_mp_count(L, t, who), i, out;
  lua_createtable(L, n, 0);
  out = lua_gettop(L);
  for (i = 1; i <= n; i++) {
    pd_mp_part p;
    pd_mp_read_part(L, t, i, who, 1, &p);
    lua_createtable(L, 0, 4);
    lua_pushlstring(L, p.name, p.name_len);
    lua_setfield(L, -2, "name");
    if (p.path) {
      lua_pushstring(L, p.path);
      lua_setfield(L, -2, "path");
    } else {
      lua_pushlstring(L, p.data, p.data_len);
      lua_setfield(L, -2, "data");
    }
    if (p.filename) {
      lua_pushstring(L, p.filename);
      lua_setfield(L, -2, "filename");
    }
    if (p.type) {
      lua_pushstring(L, p.type);
      lua_setfield(L, -2, "type");
    }
    lua_rawseti(L, out, i);
    lua_settop(L, out);
  }
}

/* Checks that `path` names a regular file this process can read; writes why
 * not into err. A missing file is the caller's runtime failure (nil, err of
 * kind "file"), found before anything is sent. Returns 1 when readable. */
static int pd_mp_readable(const char *path, char *err, size_t errn) {
  struct stat st;
  FILE *f;
  const char *base = strrchr(path, '/');
  base = base ? base + 1 : path;
  if (stat(path, &st) != 0) {
    snprintf(err, errn, "cannot read file '%.200s': %s", base, strerror(errno));
    return 0;
  }
  if (!S_ISREG(st.st_mode)) {
    snprintf(err, errn, "cannot read file '%.200s': not a regular file", base);
    return 0;
  }
  f = fopen(path, "rb");
  if (!f) {
    snprintf(err, errn, "cannot read file '%.200s': %s", base, strerror(errno));
    return 0;
  }
  fclose(f);
  return 1;
}

/* Builds libcurl's mime handle for the parts list at t into *out (stored
 * there at once, so whoever owns *out frees it even when this raises on
 * misuse). File parts are streamed by libcurl from disk at transfer time.
 * Returns 0; -1 with err set when a file cannot be read; -2 with err set when
 * libcurl refuses a part (out of memory). */
static int pd_mp_mime(lua_State *L, CURL *easy, curl_mime **out, int t, char *err, size_t errn) {
  int n = pd_mp_count(L, t, "perform"), i, top = lua_gettop(L);
  *out = curl_mime_init(easy);
  if (!*out) {
    snprintf(err, errn, "out of memory for the multipart body");
    return -2;
  }
  for (i = 1; i <= n; i++) {
    pd_mp_part p;
    curl_mimepart *part;
    CURLcode rc = CURLE_OK;
    pd_mp_read_part(L, t, i, "perform", 0, &p);
    if (p.path && !pd_mp_readable(p.path, err, errn)) {
      lua_settop(L, top);
      return -1;
    }
    part = curl_mime_addpart(*out);
    if (!part) rc = CURLE_OUT_OF_MEMORY;
    if (rc == CURLE_OK) rc = curl_mime_name(part, p.name);
    if (rc == CURLE_OK) rc = p.path ? curl_mime_filedata(part, p.path) : curl_mime_data(part, p.data, p.data_len);
    if (rc == CURLE_OK && p.filename) rc = curl_mime_filename(part, p.filename);
    if (rc == CURLE_OK && p.type) rc = curl_mime_type(part, p.type);
    lua_settop(L, top);
    if (rc != CURLE_OK) {
      snprintf(err, errn, "multipart part %d: %s", i, curl_easy_strerror(rc));
      return -2;
    }
  }
  return 0;
}

/* Appends the whole file at `path` to b; 0 with err set when it cannot be
 * read (or b's bound is passed). */
static int pd_mp_append_file(pd_buf *b, const char *path, char *err, size_t errn) {
  char chunk[16384];
  size_t got;
  int failed;
  FILE *f;
  if (!pd_mp_readable(path, err, errn)) return 0;
  f = fopen(path, "rb");
  if (!f) {
    snprintf(err, errn, "cannot read file: %s", strerror(errno));
    return 0;
  }
  while ((got = fread(chunk, 1, sizeof chunk, f)) > 0 && !pd_buf_failed(b)) pd_buf_add(b, chunk, got);
  failed = ferror(f);
  fclose(f);
  if (failed) {
    snprintf(err, errn, "cannot read file: read error");
    return 0;
  }
  return 1;
}

/* core.multipart_body(parts) -> body, content_type | nil, message
 * The parts as one multipart/form-data body with a random boundary (24 bytes
 * from the kernel, base64url: a collision with the content has probability
 * 2^-192). Misuse raises; an unreadable file or a body past PD_MP_BODY_MAX
 * returns nil, message. */
static int pd_mp_body_l(lua_State *L) {
  unsigned char rnd[24];
  pd_buf bnd;
  pd_buf *b;
  char err[320];
  int n, i, top;
  lua_settop(L, 1);
  n = pd_mp_count(L, 1, "multipart_body");
  if (pd_secret_random_bytes(rnd, sizeof rnd) != 0) return pd_raise(L, "multipart_body: no random bytes");
  pd_buf_init(&bnd, 0);
  pd_buf_adds(&bnd, "pipedrive-");
  pd_secret_b64_add(&bnd, rnd, sizeof rnd, 1);
  if (pd_buf_failed(&bnd)) {
    pd_buf_free(&bnd);
    return pd_raise(L, "multipart_body: out of memory");
  }
  lua_pushlstring(L, bnd.data, bnd.len); /* 2: the boundary, anchored */
  pd_buf_free(&bnd);
  b = pd_box_new(L, PD_MP_BODY_MAX); /* 3 */
  top = lua_gettop(L);
  for (i = 1; i <= n; i++) {
    pd_mp_part p;
    pd_mp_read_part(L, 1, i, "multipart_body", 1, &p);
    pd_buf_add(b, "--", 2);
    pd_buf_add(b, lua_tostring(L, 2), (size_t)lua_rawlen(L, 2));
    pd_buf_adds(b, "\r\nContent-Disposition: form-data; name=\"");
    pd_buf_add(b, p.name, p.name_len);
    pd_buf_addc(b, '"');
    if (p.filename || p.path) {
      const char *fn = p.filename;
      if (!fn) {
        fn = strrchr(p.path, '/');
        fn = fn ? fn + 1 : p.path;
        if (!pd_mp_header_safe(fn, strlen(fn))) fn = "file";
      }
      pd_buf_adds(b, "; filename=\"");
      pd_buf_adds(b, fn);
      pd_buf_addc(b, '"');
    }
    if (p.type || p.path || p.filename) {
      pd_buf_adds(b, "\r\nContent-Type: ");
      pd_buf_adds(b, p.type ? p.type : "application/octet-stream");
    }
    pd_buf_adds(b, "\r\n\r\n");
    if (p.path) {
      if (!pd_mp_append_file(b, p.path, err, sizeof err)) {
        pd_buf_free(b);
        lua_pushnil(L);
        lua_pushstring(L, err);
        return 2;
      }
    } else {
      pd_buf_add(b, p.data, p.data_len);
    }
    pd_buf_add(b, "\r\n", 2);
    lua_settop(L, top);
  }
  pd_buf_add(b, "--", 2);
  pd_buf_add(b, lua_tostring(L, 2), (size_t)lua_rawlen(L, 2));
  pd_buf_add(b, "--\r\n", 4);
  if (pd_buf_failed(b)) {
    pd_buf_free(b);
    lua_pushnil(L);
    lua_pushfstring(L, "multipart body larger than %d bytes", (int)PD_MP_BODY_MAX);
    return 2;
  }
  pd_box_push(L, b);
  lua_pushfstring(L, "multipart/form-data; boundary=%s", lua_tostring(L, 2));
  return 2;
}

/* Registers multipart_body in the module table on the top of the stack. */
static void pd_multipart_open(lua_State *L) {
  lua_pushcfunction(L, pd_mp_body_l);
  lua_setfield(L, -2, "multipart_body");
}
