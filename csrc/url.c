/* Percent-encoding for URLs, query strings and form bodies.
 *
 * One rule everywhere: RFC 3986 unreserved characters (A-Z a-z 0-9 - . _ ~)
 * are kept, every other byte becomes %XX with upper-case hex. Encoding more
 * than strictly needed is always safe, while encoding too little ("+", "&",
 * "/" or "#" in a search term) silently changes what the server reads. */

static const char pd_url_hex[] = "0123456789ABCDEF";

/* RFC 3986 unreserved characters: the only ones sent as they are, so no
 * value can change the meaning of a URL. */
static int pd_url_unreserved(unsigned char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
         c == '_' || c == '~';
}

/* Appends s[0..n) percent-encoded. Runs of unreserved bytes are copied in one
 * append, so plain ASCII costs one memcpy. */
static void pd_url_append(pd_buf *b, const char *s, size_t n) {
  const unsigned char *p = (const unsigned char *)s, *end = p + n, *run = p;
  while (p < end) {
    if (pd_url_unreserved(*p)) {
      p++;
      continue;
    }
    pd_buf_add(b, run, (size_t)(p - run));
    {
      char esc[3] = { '%', pd_url_hex[*p >> 4], pd_url_hex[*p & 15] };
      pd_buf_add(b, esc, 3);
    }
    run = ++p;
  }
  pd_buf_add(b, run, (size_t)(p - run));
}

/* Appends the scalar at idx as a query/form/path value: strings encoded,
 * integers in decimal, floats in their shortest round-trip form (no ".0": a
 * server reading "limit=5" must not see "5.0"), booleans as true/false.
 * Returns 1, or 0 for a value that is not a scalar (the caller names the
 * field in its error), or -1 for NaN/infinity. Never raises. */
static int pd_url_append_scalar(lua_State *L, pd_buf *b, int idx) {
  switch (lua_type(L, idx)) {
    case LUA_TSTRING: {
      size_t n;
      const char *s = lua_tolstring(L, idx, &n);
      pd_url_append(b, s, n);
      return 1;
    }
    case LUA_TNUMBER: {
      char num[PD_NUMBUF];
      size_t n = pd_fmt_number(L, idx, num, 0);
      if (!n) return -1;
      pd_url_append(b, num, n);
      return 1;
    }
    case LUA_TBOOLEAN:
      if (lua_toboolean(L, idx)) pd_buf_add(b, "true", 4);
      else pd_buf_add(b, "false", 5);
      return 1;
    default: return 0;
  }
}

/* core.url_encode(s). Only strings: encoding a number or nil by accident
 * would put "nil" into a URL, so that is refused. */
static int pd_url_encode_l(lua_State *L) {
  size_t n;
  const char *s;
  pd_buf *b;
  if (lua_type(L, 1) != LUA_TSTRING)
    return pd_raise(L, "url_encode: expected a string, got %s", luaL_typename(L, 1));
  s = lua_tolstring(L, 1, &n);
  if (n > ((size_t)-1 - 1) / 3) return pd_raise(L, "url_encode: string too long");
  b = pd_box_new(L, n * 3 + 1);
  pd_url_append(b, s, n);
  if (pd_buf_failed(b)) {
    pd_buf_free(b);
    return pd_raise(L, "url_encode: out of memory");
  }
  pd_box_push(L, b);
  return 1;
}

/* Registers url_encode in the module table on the top of the stack. */
static void pd_url_open(lua_State *L) {
  lua_pushcfunction(L, pd_url_encode_l);
  lua_setfield(L, -2, "url_encode");
}
