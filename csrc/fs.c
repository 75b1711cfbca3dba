/* Token-file primitives: the few file operations a credential store needs
 * and plain Lua cannot do safely.
 *
 *   core.write_file_atomic(path, data, mode = 384) -> true | nil, message
 *   core.file_info(path)                           -> info | nil, message, errno
 *   core.read_file(path, max_bytes = 1 MiB)        -> string | nil, message, errno
 *
 * io.open cannot choose the mode of a new file (the umask decides, often
 * leaving it world-readable), cannot write atomically, and cannot tell who
 * owns a file or who may read it. A refresh token is a long-lived password,
 * so the store must never expose it, never leave half of it after a crash,
 * and refuse a file that others could have read or planted.
 *
 * These are expected failures (a missing directory, a full disk), so they
 * are returned as nil, "<path>: <reason>", errno in the io.open style;
 * only misuse (wrong argument types) raises. Error text names the path and
 * the OS reason, never the data. Needs secret.c (included before this file)
 * for randomness, the protected push and registration.
 */
#include "pd.h"
#include "secret.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#define PD_FS_READ_DEFAULT (1024 * 1024)
#define PD_FS_READ_LIMIT ((lua_Integer)1 << 30) /* refuse to even try past 1 GiB */
#ifndef PATH_MAX
#define PD_FS_PATH_MAX 4096
#else
#define PD_FS_PATH_MAX PATH_MAX
#endif

/* Push nil, "<path>: <what><strerror(e)>", e and return 3: the io.open
 * convention, so Lua callers can show the message or test the errno. */
static int pd_fs_fail(lua_State *L, const char *path, const char *what, int e) {
  lua_pushnil(L);
  lua_pushfstring(L, "%s: %s%s", path, what, strerror(e));
  lua_pushinteger(L, e);
  return 3;
}

/* Read a path argument: a non-empty string without NUL bytes (a NUL would
 * silently cut the path the kernel sees) and short enough for the fixed
 * buffers below. Misuse, so it raises. */
static const char *pd_fs_check_path(lua_State *L, int arg, size_t *n) {
  const char *p = luaL_checklstring(L, arg, n);
  luaL_argcheck(L, *n > 0, arg, "path must not be empty");
  luaL_argcheck(L, strlen(p) == *n, arg, "path must not contain NUL bytes");
  luaL_argcheck(L, *n < PD_FS_PATH_MAX - 64, arg, "path is too long");
  return p;
}

/* Write all n bytes, resuming after short writes and signals. */
static int pd_fs_write_all(int fd, const char *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

/* fsync, retried on EINTR. */
static int pd_fs_fsync(int fd) {
  int r;
  do r = fsync(fd);
  while (r < 0 && errno == EINTR);
  return r;
}

/* Make the rename itself durable by syncing the directory that holds it.
 * Best effort: some file systems refuse to fsync a directory (EINVAL) and
 * by now the new contents are in place, so a failure here is not reported
 * as a failed write (the caller would wrongly believe the old file stayed). */
static void pd_fs_sync_dir(const char *path, size_t n) {
  char dir[PD_FS_PATH_MAX];
  size_t k = n;
  int fd;
  while (k > 0 && path[k - 1] != '/') k--;
  if (k == 0) {
    dir[0] = '.';
    dir[1] = '\0';
  } else {
    if (k > 1) k--; /* drop the slash, but keep "/" itself */
    memcpy(dir, path, k);
    dir[k] = '\0';
  }
  do fd = open(dir, O_RDONLY | O_CLOEXEC | O_DIRECTORY);
  while (fd < 0 && errno == EINTR);
  if (fd < 0) return;
  (void)pd_fs_fsync(fd);
  (void)close(fd);
}

/* core.write_file_atomic(path, data, mode): replace `path` so that readers
 * (and a crash) see either the old contents or all of the new, never a
 * mix, and so that the new file has exactly `mode` from its first byte on:
 * the temporary file is created with O_EXCL (no following a planted
 * symlink, no sharing with another writer) and fchmod'ed, because the
 * umask would otherwise loosen or tighten the mode. On any failure the
 * temporary file is removed and the old file is left untouched. The
 * temporary name carries the pid and random bytes, so concurrent writers
 * in several processes never collide. */
static int pd_fs_write_file_atomic(lua_State *L) {
  size_t npath, ndata, k;
  const char *path = pd_fs_check_path(L, 1, &npath);
  const char *data = luaL_checklstring(L, 2, &ndata);
  lua_Integer mode = luaL_optinteger(L, 3, 0600);
  char tmp[PD_FS_PATH_MAX];
  unsigned char rnd[6];
  int fd, e, n;
  luaL_argcheck(L, mode >= 0 && mode <= 0777, 3, "mode must be permission bits (0 to 511)");
  if (pd_secret_random_bytes(rnd, sizeof rnd) != 0) return pd_fs_fail(L, path, "no randomness for a temporary name: ", errno);
  n = snprintf(tmp, sizeof tmp, "%s.tmp.%ld.", path, (long)getpid());
  if (n < 0 || (size_t)n + 2 * sizeof rnd >= sizeof tmp) return pd_fs_fail(L, path, "", ENAMETOOLONG);
  k = (size_t)n;
  for (n = 0; n < (int)sizeof rnd; n++) {
    tmp[k++] = "0123456789abcdef"[rnd[n] >> 4];
    tmp[k++] = "0123456789abcdef"[rnd[n] & 15];
  }
  tmp[k] = '\0';

  do fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, (mode_t)mode);
  while (fd < 0 && errno == EINTR);
  if (fd < 0) return pd_fs_fail(L, path, "cannot create a temporary file: ", errno);
  if (fchmod(fd, (mode_t)mode) != 0 || pd_fs_write_all(fd, data, ndata) != 0 || pd_fs_fsync(fd) != 0) {
    e = errno;
    (void)close(fd);
    (void)unlink(tmp);
    return pd_fs_fail(L, path, "cannot write: ", e);
  }
  if (close(fd) != 0) {
    /* NFS and some FUSE file systems report write errors only here. */
    e = errno;
    (void)unlink(tmp);
    return pd_fs_fail(L, path, "cannot write: ", e);
  }
  if (rename(tmp, path) != 0) {
    e = errno;
    (void)unlink(tmp);
    return pd_fs_fail(L, path, "cannot replace: ", e);
  }
  pd_fs_sync_dir(path, npath);
  lua_pushboolean(L, 1);
  return 1;
}

/* core.file_info(path): what a token store must check before trusting a
 * file: its permission bits (group/other bits set means others may have
 * read the token), its owner, its size, and whether it is a regular file.
 * lstat, not stat: a symlink is reported as what it is (not regular), so a
 * link planted in place of the token file is refused, not followed. */
static int pd_fs_file_info(lua_State *L) {
  size_t n;
  const char *path = pd_fs_check_path(L, 1, &n);
  struct stat st;
  if (lstat(path, &st) != 0) return pd_fs_fail(L, path, "", errno);
  lua_createtable(L, 0, 6);
  lua_pushinteger(L, (lua_Integer)(st.st_mode & 07777));
  lua_setfield(L, -2, "mode");
  lua_pushinteger(L, (lua_Integer)st.st_size);
  lua_setfield(L, -2, "size");
  lua_pushinteger(L, (lua_Integer)st.st_uid);
  lua_setfield(L, -2, "owner_uid");
  lua_pushboolean(L, S_ISREG(st.st_mode));
  lua_setfield(L, -2, "is_regular");
  lua_pushboolean(L, S_ISDIR(st.st_mode));
  lua_setfield(L, -2, "is_dir");
  lua_pushboolean(L, S_ISLNK(st.st_mode));
  lua_setfield(L, -2, "is_symlink");
  return 1;
}

/* core.read_file(path, max_bytes = 1 MiB): the whole file, refusing one
 * larger than max_bytes, so a corrupted or hostile file cannot make us
 * allocate without bound. Only regular files are read: a FIFO or a device
 * in place of the token file could block forever or never end. The limit
 * is checked while reading too, in case the file grows meanwhile. The
 * descriptor is closed and the buffer freed before anything can raise. */
static int pd_fs_read_file(lua_State *L) {
  size_t n;
  const char *path = pd_fs_check_path(L, 1, &n);
  lua_Integer max = luaL_optinteger(L, 2, PD_FS_READ_DEFAULT);
  struct stat st;
  pd_buf *b;
  int fd, e, too_big = 0;
  luaL_argcheck(L, max >= 0 && max <= PD_FS_READ_LIMIT, 2, "max_bytes must be between 0 and 1 GiB");
  luaL_checkstack(L, 8, "read_file");
  /* The box exists before the file is opened, so nothing after can leak;
   * it is secret: the file may hold a token, and every C copy is wiped. */
  b = pd_box_new_secret(L, (size_t)max);
  do fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  while (fd < 0 && errno == EINTR);
  if (fd < 0) return pd_fs_fail(L, path, "", errno);
  if (fstat(fd, &st) != 0) {
    e = errno;
    (void)close(fd);
    return pd_fs_fail(L, path, "", e);
  }
  if (!S_ISREG(st.st_mode)) {
    (void)close(fd);
    lua_pushnil(L);
    lua_pushfstring(L, "%s: not a regular file", path);
    return 2;
  }
  if (st.st_size > (off_t)max) {
    (void)close(fd);
    lua_pushnil(L);
    lua_pushfstring(L, "%s: file is larger than %d bytes", path, (int)max);
    return 2;
  }
  /* Checked by hand before each append (pd_buf's cap 0 would mean "no
   * limit"); the buffer's own cap then only guards against a mistake. */
  for (;;) {
    char chunk[4096];
    ssize_t r = read(fd, chunk, sizeof chunk);
    if (r < 0) {
      if (errno == EINTR) continue;
      e = errno;
      (void)close(fd);
      pd_buf_free(b);
      return pd_fs_fail(L, path, "", e);
    }
    if (r == 0) break;
    if ((size_t)r > (size_t)max - b->len) {
      too_big = 1;
      break;
    }
    pd_buf_add(b, chunk, (size_t)r);
    if (pd_buf_failed(b)) break;
  }
  (void)close(fd);
  if (too_big || pd_buf_failed(b)) {
    pd_buf_free(b);
    if (!too_big) return pd_fs_fail(L, path, "", ENOMEM);
    lua_pushnil(L);
    lua_pushfstring(L, "%s: file is larger than %d bytes", path, (int)max);
    return 2;
  }
  /* The file may hold a token: wipe the C copy once Lua has its own. */
  pd_box_push(L, b);
  return 1;
}

/* Register this file's functions in the module table on top of the stack. */
static void pd_fs_open(lua_State *L) {
  static const luaL_Reg fns[] = {
      {"write_file_atomic", pd_fs_write_file_atomic},
      {"file_info", pd_fs_file_info},
      {"read_file", pd_fs_read_file},
      {NULL, NULL},
  };
  luaL_setfuncs(L, fns, 0);
}
