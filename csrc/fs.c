/* Token-file primitives: the few file operations a credential store needs
 * and plain Lua cannot do safely.
 *
 *   core.write_file_atomic(path, data, mode = 384) -> true | nil, message
 *   core.file_info(path)                           -> info | nil, message, errno
 *   core.read_file(path, max_bytes = 1 MiB)        -> string | nil, message, errno
 *   core.open_private(path, lock_timeout)          -> file | nil, message, errno
 *     file:read(max_bytes = 1 MiB)                 -> string | nil, message, errno
 *     file:close()                                 (also releases the lock)
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
#include "clock.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

/* The sticky bit is XSI, hidden by _POSIX_C_SOURCE; its value is the same
 * on every Unix. */
#ifndef S_ISVTX
#define S_ISVTX 01000
#endif

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

/* The directory part of path[0..n) into dir (".", "/" or the path up to its
 * last slash), for opening the directory itself; returns the offset of the
 * last component in path. One split for the atomic write and the trusted open. */
static size_t pd_fs_split_dir(const char *path, size_t n, char *dir) {
  size_t k = n, base;
  while (k > 0 && path[k - 1] != '/') k--;
  base = k;
  if (k == 0) {
    dir[0] = '.';
    dir[1] = '\0';
  } else {
    if (k > 1) k--; /* drop the slash, but keep "/" itself */
    memcpy(dir, path, k);
    dir[k] = '\0';
  }
  return base;
}

/* Make the rename itself durable by syncing the directory that holds it.
 * Best effort: some file systems refuse to fsync a directory (EINVAL) and
 * by now the new contents are in place, so a failure here is not reported
 * as a failed write (the caller would wrongly believe the old file stayed). */
static void pd_fs_sync_dir(const char *path, size_t n) {
  char dir[PD_FS_PATH_MAX];
  int fd;
  (void)pd_fs_split_dir(path, n, dir);
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

/* Read the whole of fd from offset 0 into b, at most max bytes, with pread
 * so that the same descriptor can be read again later (a locked token file
 * is read before and after a refresh). Returns 0, or an errno; *too_big is
 * set when the file holds more than max (it may have grown since fstat).
 * Checked by hand before each append (pd_buf's cap 0 would mean "no limit");
 * the buffer's own cap then only guards against a mistake. Never raises. */
static int pd_fs_slurp(int fd, pd_buf *b, size_t max, int *too_big) {
  off_t off = 0;
  *too_big = 0;
  for (;;) {
    char chunk[4096];
    ssize_t r = pread(fd, chunk, sizeof chunk, off);
    if (r < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    if (r == 0) return 0;
    if ((size_t)r > max - b->len) {
      *too_big = 1;
      return 0;
    }
    pd_buf_add(b, chunk, (size_t)r);
    if (pd_buf_failed(b)) return ENOMEM;
    off += r;
  }
}

/* Push the outcome of reading an open regular file `fd` (checked with fstat
 * here: only regular files are read, since a FIFO or a device in place of
 * the token file could block forever or never end) into the secret box b:
 * the string, or nil, message[, errno]. Closes fd first when close_fd is
 * set, so that nothing pushed (which may raise) can leak it. */
static int pd_fs_push_read(lua_State *L, int fd, int close_fd, pd_buf *b, lua_Integer max, const char *path) {
  struct stat st;
  int e = 0, too_big = 0, not_regular = 0;
  if (fstat(fd, &st) != 0) e = errno;
  else if (!S_ISREG(st.st_mode)) not_regular = 1;
  else if (st.st_size > (off_t)max) too_big = 1;
  else e = pd_fs_slurp(fd, b, (size_t)max, &too_big);
  if (close_fd) (void)close(fd);
  if (e != 0 || too_big || not_regular) {
    pd_buf_free(b);
    if (e != 0) return pd_fs_fail(L, path, "", e);
    lua_pushnil(L);
    if (not_regular) lua_pushfstring(L, "%s: not a regular file", path);
    else lua_pushfstring(L, "%s: file is larger than %d bytes", path, (int)max);
    return 2;
  }
  /* The file may hold a token: wipe the C copy once Lua has its own. */
  pd_box_push(L, b);
  return 1;
}

/* core.read_file(path, max_bytes = 1 MiB): the whole file, refusing one
 * larger than max_bytes, so a corrupted or hostile file cannot make us
 * allocate without bound. The descriptor is closed and the buffer freed
 * before anything can raise. */
static int pd_fs_read_file(lua_State *L) {
  size_t n;
  const char *path = pd_fs_check_path(L, 1, &n);
  lua_Integer max = luaL_optinteger(L, 2, PD_FS_READ_DEFAULT);
  pd_buf *b;
  int fd;
  luaL_argcheck(L, max >= 0 && max <= PD_FS_READ_LIMIT, 2, "max_bytes must be between 0 and 1 GiB");
  luaL_checkstack(L, 8, "read_file");
  /* The box exists before the file is opened, so nothing after can leak;
   * it is secret: the file may hold a token, and every C copy is wiped. */
  b = pd_box_new_secret(L, (size_t)max);
  do fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  while (fd < 0 && errno == EINTR);
  if (fd < 0) return pd_fs_fail(L, path, "", errno);
  return pd_fs_push_read(L, fd, 1, b, max, path);
}

/* ------------------------------------------------------------ private files
 * core.open_private(path, lock_timeout): a file that holds a credential,
 * opened only when it can be trusted, optionally with an advisory lock.
 *
 * Trusted means: the directory holding it is ours (or root's) and nobody
 * else can write to it, unless it is sticky (like /tmp: there others cannot
 * rename or remove our files); the file itself is a regular file (a
 * symbolic link is refused with O_NOFOLLOW, not followed), owned by the
 * effective user, with no group or other permission bits. Every check is
 * made with fstat on the open descriptors, never on a name that could be
 * swapped between the check and the open: the directory is opened first and
 * the file is opened relative to it (openat).
 *
 * The lock (flock, LOCK_EX) is how processes sharing one token file take
 * turns to refresh it. The file is replaced by rename on every save, so a
 * lock on the descriptor may end up on a name that no longer exists: after
 * taking it, the name is checked to still be the locked file, else the new
 * file is opened and locked instead. The wait polls with LOCK_NB up to
 * lock_timeout seconds, so a stuck holder cannot block us for ever. A crash
 * releases the lock (the kernel closes the descriptor). */

#define PD_PRIVATE_MT "pipedrive.private_file"
#define PD_FS_MSG_MAX (2 * PD_FS_PATH_MAX + 256)

typedef struct pd_private {
  int fd;
  int locked;
} pd_private;

/* One release for close, __gc and __close: closing drops the lock too. */
static void pd_private_release(lua_State *L, void *self) {
  pd_private *p = (pd_private *)self;
  (void)L;
  if (p->fd >= 0) (void)close(p->fd);
  p->fd = -1;
  p->locked = 0;
}

/* For tostring: open or closed (a private file shows nothing else). */
static int pd_private_is_open(const void *self) {
  return ((const pd_private *)self)->fd >= 0;
}

/* The open() of a path part, resumed after signals. */
static int pd_fs_openat(int dirfd, const char *name, int flags) {
  int fd;
  do fd = openat(dirfd, name, flags);
  while (fd < 0 && errno == EINTR);
  return fd;
}

/* Sleep a few milliseconds between lock attempts (resumed after signals). */
static void pd_fs_nap(long ms) {
  struct timespec ts;
  ts.tv_sec = 0;
  ts.tv_nsec = ms * 1000000L;
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

/* Open (and with lock_timeout >= 0, lock) the trusted file `base` in the
 * directory dirfd. Returns the descriptor, or -1 with *err the errno and
 * msg the reason (without the path's directory checks, done by the caller).
 * Never raises: the caller pushes the message after every descriptor is
 * closed. */
static int pd_fs_open_trusted(int dirfd, const char *path, const char *base, double lock_timeout, char *msg,
                              size_t msglen, int *err) {
  double deadline = lock_timeout >= 0 ? pd_clock_mono() + lock_timeout : 0;
  long nap = 2;
  int tries;
  for (tries = 0; tries < 10000; tries++) {
    struct stat st, now;
    int fd = pd_fs_openat(dirfd, base, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (fd < 0) {
      *err = errno;
      if (*err == ELOOP) snprintf(msg, msglen, "%s is a symbolic link: refused (keep the token in a regular file)", path);
      else snprintf(msg, msglen, "%s: %s", path, strerror(*err));
      return -1;
    }
    if (fstat(fd, &st) != 0) {
      *err = errno;
      (void)close(fd);
      snprintf(msg, msglen, "%s: %s", path, strerror(*err));
      return -1;
    }
    if (!S_ISREG(st.st_mode)) {
      (void)close(fd);
      *err = EINVAL;
      snprintf(msg, msglen, "%s is not a regular file", path);
      return -1;
    }
    if (st.st_uid != geteuid()) {
      (void)close(fd);
      *err = EPERM;
      snprintf(msg, msglen, "%s belongs to another user (uid %ld): refused; remove it to log in again", path,
               (long)st.st_uid);
      return -1;
    }
    if ((st.st_mode & 077) != 0) {
      (void)close(fd);
      *err = EPERM;
      snprintf(msg, msglen, "%s can be read by others (mode %o): chmod 600 it or remove it", path,
               (unsigned)(st.st_mode & 07777));
      return -1;
    }
    if (lock_timeout < 0) return fd;
    for (;;) {
      if (flock(fd, LOCK_EX | LOCK_NB) == 0) break;
      if (errno == EINTR) continue;
      if (errno != EWOULDBLOCK) {
        *err = errno;
        (void)close(fd);
        snprintf(msg, msglen, "%s: cannot lock: %s", path, strerror(*err));
        return -1;
      }
      if (pd_clock_mono() >= deadline) {
        (void)close(fd);
        *err = ETIMEDOUT;
        snprintf(msg, msglen, "%s: another process has held the lock for too long", path);
        return -1;
      }
      pd_fs_nap(nap);
      if (nap < 50) nap *= 2;
    }
    /* Locked; is the name still this file, or was it replaced meanwhile? */
    if (fstatat(dirfd, base, &now, AT_SYMLINK_NOFOLLOW) == 0 && now.st_dev == st.st_dev && now.st_ino == st.st_ino)
      return fd;
    (void)close(fd); /* replaced (or removed): lock what the name is now */
  }
  *err = EAGAIN;
  snprintf(msg, msglen, "%s: replaced too often while locking it", path);
  return -1;
}

static int pd_private_read(lua_State *L);
static int pd_private_locked(lua_State *L);

/* The class of core.open_private's files: read, locked, close. */
static const luaL_Reg pd_private_methods[] = {
    {"read", pd_private_read},
    {"locked", pd_private_locked},
    {NULL, NULL},
};
static const pd_class pd_private_class = {PD_PRIVATE_MT, pd_private_methods, pd_private_release, pd_private_is_open,
                                          NULL};

/* core.open_private(path, lock_timeout): see above. lock_timeout nil (or
 * negative): no lock. Failures are nil, message, errno: ENOENT when the
 * directory is trusted but the file does not exist (yet); EPERM when the
 * file or its directory cannot be trusted; ETIMEDOUT when the lock could not
 * be had. The message names the path, never the contents. */
static int pd_fs_open_private(lua_State *L) {
  size_t n, k;
  const char *path = pd_fs_check_path(L, 1, &n);
  double lock_timeout = luaL_optnumber(L, 2, -1);
  char dir[PD_FS_PATH_MAX], msg[PD_FS_MSG_MAX];
  const char *base;
  struct stat ds;
  int dirfd, fd, e = 0;
  pd_private *p;
  luaL_checkstack(L, 8, "open_private");
  k = pd_fs_split_dir(path, n, dir);
  base = path + k;
  if (*base == '\0' || strcmp(base, ".") == 0 || strcmp(base, "..") == 0) {
    lua_pushnil(L);
    lua_pushfstring(L, "%s is not a regular file", path);
    lua_pushinteger(L, EISDIR);
    return 3;
  }
  /* The object exists before any descriptor, so an out-of-memory raise
   * while creating it leaks nothing. */
  p = (pd_private *)pd_class_new(L, &pd_private_class, sizeof *p);
  p->fd = -1;
  do dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  while (dirfd < 0 && errno == EINTR);
  if (dirfd < 0) {
    e = errno;
    snprintf(msg, sizeof msg, "%s: %s", dir, strerror(e));
  } else if (fstat(dirfd, &ds) != 0) {
    e = errno;
    snprintf(msg, sizeof msg, "%s: %s", dir, strerror(e));
  } else if (ds.st_uid != geteuid() && ds.st_uid != 0) {
    e = EPERM;
    snprintf(msg, sizeof msg, "the directory %s of %s belongs to another user (uid %ld): keep the token in a directory of yours",
             dir, path, (long)ds.st_uid);
  } else if ((ds.st_mode & 022) != 0 && (ds.st_mode & S_ISVTX) == 0) {
    e = EPERM;
    snprintf(msg, sizeof msg, "the directory %s of %s can be written by others (mode %o): chmod go-w it, or keep the token elsewhere",
             dir, path, (unsigned)(ds.st_mode & 07777));
  } else {
    fd = pd_fs_open_trusted(dirfd, path, base, lock_timeout, msg, sizeof msg, &e);
    if (fd >= 0) {
      p->fd = fd;
      p->locked = lock_timeout >= 0;
    }
  }
  if (dirfd >= 0) (void)close(dirfd);
  if (e != 0) {
    lua_pushnil(L);
    lua_pushstring(L, msg);
    lua_pushinteger(L, e);
    return 3;
  }
  return 1;
}

/* file:read(max_bytes = 1 MiB): the whole file as it is now (read from the
 * start each time), bounded like core.read_file. */
static int pd_private_read(lua_State *L) {
  pd_private *p = (pd_private *)luaL_checkudata(L, 1, PD_PRIVATE_MT);
  lua_Integer max = luaL_optinteger(L, 2, PD_FS_READ_DEFAULT);
  pd_buf *b;
  luaL_argcheck(L, max >= 0 && max <= PD_FS_READ_LIMIT, 2, "max_bytes must be between 0 and 1 GiB");
  if (p->fd < 0) return pd_raise(L, "private_file:read: the file is closed");
  luaL_checkstack(L, 8, "private_file:read");
  b = pd_box_new_secret(L, (size_t)max);
  return pd_fs_push_read(L, p->fd, 0, b, max, "token file");
}

/* file:locked(): whether this descriptor holds the lock. */
static int pd_private_locked(lua_State *L) {
  pd_private *p = (pd_private *)luaL_checkudata(L, 1, PD_PRIVATE_MT);
  lua_pushboolean(L, p->fd >= 0 && p->locked);
  return 1;
}

/* Register this file's functions in the module table on top of the stack. */
static void pd_fs_open(lua_State *L) {
  static const luaL_Reg fns[] = {
      {"write_file_atomic", pd_fs_write_file_atomic},
      {"file_info", pd_fs_file_info},
      {"read_file", pd_fs_read_file},
      {"open_private", pd_fs_open_private},
      {NULL, NULL},
  };
  luaL_setfuncs(L, fns, 0);
  pd_class_register(L, &pd_private_class);
}
