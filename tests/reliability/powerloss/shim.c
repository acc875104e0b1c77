/* Power-loss recorder: an LD_PRELOAD shim that logs every mutation of the files under one
 * directory, and every fsync of them, to an append-only log, while the real calls go through.
 *
 * PERDURE_PL_DIR  absolute, canonical directory to watch (the server's data dir)
 * PERDURE_PL_LOG  log file (outside that directory); one write(2) per record, so a SIGKILL
 *                 of the process never loses a record that describes a completed call
 *
 * Record: struct rec_header, then path_len bytes of path, then data_len bytes of data.
 * A mutation is logged *before* its call, under a lock held until the call returned and a DONE
 * record (arg = the call's result) followed it; so a kill between the two leaves a mutation with
 * no DONE: the one in flight, which may or may not have reached the page cache.
 *   WRITE     off = file offset, data = the bytes to write (DONE: how many were written)
 *   TRUNCATE  arg = new length
 *   SYNC      arg = the sequence number taken when fsync/fdatasync was *called*: every mutation
 *             of this file with a smaller seq is durable once the call returned (logged after)
 *   CREATE    the file did not exist before this open(O_CREAT)
 *   UNLINK    the name was removed
 *   RENAME    path = old name, data = new name
 *   DIRSYNC   like SYNC, for the watched directory itself (makes names durable)
 *   OPEN_SYNC the file was opened O_SYNC/O_DSYNC: each of its writes is durable on return
 *   DONE      the result of the mutation logged just before (negative: it failed)
 * Each record carries seq (global order, assigned under one lock) and a CLOCK_MONOTONIC time,
 * which the test compares with the moments its client saw acknowledgements.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

enum { OP_WRITE = 1, OP_TRUNCATE, OP_SYNC, OP_CREATE, OP_UNLINK, OP_RENAME, OP_DIRSYNC, OP_OPEN_SYNC, OP_DONE };

struct rec_header {
    uint32_t magic;
    uint32_t op;
    uint64_t seq;
    uint64_t t_ns;
    int64_t off;
    int64_t arg;
    uint32_t path_len;
    uint32_t data_len;
};

#define REC_MAGIC 0x504c5752u /* "RWLP" */
#define MAX_FDS 65536

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t once = PTHREAD_ONCE_INIT;
static char watch_dir[PATH_MAX];
static size_t watch_len;
static int log_fd = -1;
static uint64_t next_seq = 1;
static char *fd_path[MAX_FDS]; /* watched path of each open fd, NULL when not watched */
static unsigned char fd_sync[MAX_FDS];

static int (*real_open)(const char *, int, ...);
static int (*real_open64)(const char *, int, ...);
static int (*real_openat)(int, const char *, int, ...);
static int (*real_openat64)(int, const char *, int, ...);
static ssize_t (*real_write)(int, const void *, size_t);
static ssize_t (*real_pwrite)(int, const void *, size_t, off_t);
static ssize_t (*real_pwrite64)(int, const void *, size_t, off_t);
static ssize_t (*real_writev)(int, const struct iovec *, int);
static ssize_t (*real_pwritev)(int, const struct iovec *, int, off_t);
static ssize_t (*real_pwritev64)(int, const struct iovec *, int, off_t);
static int (*real_ftruncate)(int, off_t);
static int (*real_ftruncate64)(int, off_t);
static int (*real_fsync)(int);
static int (*real_fdatasync)(int);
static int (*real_close)(int);
static int (*real_unlink)(const char *);
static int (*real_rename)(const char *, const char *);
static int (*real_dup)(int);
static int (*real_dup2)(int, int);
static int (*real_dup3)(int, int, int);

static void resolve(void) {
#define R(name) real_##name = dlsym(RTLD_NEXT, #name)
    R(open); R(open64); R(openat); R(openat64); R(write); R(pwrite); R(pwrite64); R(writev);
    R(pwritev); R(pwritev64); R(ftruncate); R(ftruncate64); R(fsync); R(fdatasync); R(close);
    R(unlink); R(rename); R(dup); R(dup2); R(dup3);
#undef R
    const char *dir = getenv("PERDURE_PL_DIR");
    const char *log = getenv("PERDURE_PL_LOG");
    if (dir == NULL || log == NULL || strlen(dir) >= sizeof watch_dir) return;
    strcpy(watch_dir, dir);
    watch_len = strlen(watch_dir);
    while (watch_len > 1 && watch_dir[watch_len - 1] == '/') watch_dir[--watch_len] = '\0';
    log_fd = real_open(log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
}

static void init(void) { pthread_once(&once, resolve); }

__attribute__((constructor)) static void shim_init(void) { init(); }

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* 0: not watched, 1: a file under the directory, 2: the directory itself. */
static int watched(const char *abs) {
    if (log_fd < 0 || strncmp(abs, watch_dir, watch_len) != 0) return 0;
    if (abs[watch_len] == '\0') return 2;
    return abs[watch_len] == '/' ? 1 : 0;
}

/* Absolute form of a name as the caller passed it (no symlink resolution: the watched
 * directory is given in canonical form and the server uses absolute paths under it). */
static int absolute(int dirfd, const char *name, char *out) {
    char base[PATH_MAX];
    if (name[0] == '/') return snprintf(out, PATH_MAX, "%s", name) < PATH_MAX ? 0 : -1;
    if (dirfd == AT_FDCWD) {
        if (getcwd(base, sizeof base) == NULL) return -1;
    } else {
        char link[64];
        snprintf(link, sizeof link, "/proc/self/fd/%d", dirfd);
        ssize_t n = readlink(link, base, sizeof base - 1);
        if (n < 0) return -1;
        base[n] = '\0';
    }
    return snprintf(out, PATH_MAX, "%s/%s", base, name) < PATH_MAX ? 0 : -1;
}

/* Append one record; caller holds the lock. Returns the record's seq. */
static uint64_t emit(uint32_t op, const char *path, int64_t off, int64_t arg, const struct iovec *iov,
                     int iovcnt, size_t data_len) {
    struct rec_header h = {REC_MAGIC, op, next_seq++, now_ns(), off, arg, (uint32_t)strlen(path),
                           (uint32_t)data_len};
    size_t total = sizeof h + h.path_len + data_len;
    char *buf = malloc(total);
    if (buf == NULL) abort();
    memcpy(buf, &h, sizeof h);
    memcpy(buf + sizeof h, path, h.path_len);
    size_t pos = sizeof h + h.path_len, left = data_len;
    for (int i = 0; i < iovcnt && left > 0; i++) {
        size_t n = iov[i].iov_len < left ? iov[i].iov_len : left;
        memcpy(buf + pos, iov[i].iov_base, n);
        pos += n;
        left -= n;
    }
    size_t done = 0;
    while (done < total) {
        ssize_t n = real_write(log_fd, buf + done, total - done);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) abort(); /* a record we cannot write makes the whole run meaningless */
        done += (size_t)n;
    }
    free(buf);
    return h.seq;
}

static void track(int fd, const char *abs, int flags) {
    if (fd < 0 || fd >= MAX_FDS) return;
    free(fd_path[fd]);
    fd_path[fd] = NULL;
    int kind = watched(abs);
    if (kind == 0) return;
    fd_path[fd] = strdup(abs);
    fd_sync[fd] = (flags & (O_SYNC | O_DSYNC)) != 0;
    if (kind == 1 && fd_sync[fd]) emit(OP_OPEN_SYNC, abs, 0, 0, NULL, 0, 0);
}

static int do_openat(int dirfd, const char *name, int flags, mode_t mode, int use64) {
    init();
    char abs[PATH_MAX];
    if (log_fd < 0 || absolute(dirfd, name, abs) != 0 || watched(abs) == 0) {
        if (dirfd == AT_FDCWD) return (use64 ? real_open64 : real_open)(name, flags, mode);
        return (use64 ? real_openat64 : real_openat)(dirfd, name, flags, mode);
    }
    pthread_mutex_lock(&lock);
    struct stat st;
    int existed = stat(abs, &st) == 0;
    uint32_t intent = 0;
    if (watched(abs) == 1 && !existed && (flags & O_CREAT)) intent = OP_CREATE;
    if (watched(abs) == 1 && existed && (flags & O_TRUNC) && (flags & O_ACCMODE) != O_RDONLY) intent = OP_TRUNCATE;
    if (intent) emit(intent, abs, 0, 0, NULL, 0, 0);
    int fd = dirfd == AT_FDCWD ? (use64 ? real_open64 : real_open)(name, flags, mode)
                               : (use64 ? real_openat64 : real_openat)(dirfd, name, flags, mode);
    int saved = errno;
    if (intent) emit(OP_DONE, abs, 0, fd >= 0 ? 0 : -1, NULL, 0, 0);
    if (fd >= 0) track(fd, abs, flags);
    pthread_mutex_unlock(&lock);
    errno = saved;
    return fd;
}

#define MODE_ARG(flags)                                                                     \
    mode_t mode = 0;                                                                        \
    if ((flags) & (O_CREAT | O_TMPFILE)) {                                                  \
        va_list ap;                                                                         \
        va_start(ap, flags);                                                                \
        mode = va_arg(ap, mode_t);                                                          \
        va_end(ap);                                                                         \
    }

int open(const char *name, int flags, ...) { MODE_ARG(flags) return do_openat(AT_FDCWD, name, flags, mode, 0); }
int open64(const char *name, int flags, ...) { MODE_ARG(flags) return do_openat(AT_FDCWD, name, flags, mode, 1); }
int openat(int d, const char *name, int flags, ...) { MODE_ARG(flags) return do_openat(d, name, flags, mode, 0); }
int openat64(int d, const char *name, int flags, ...) { MODE_ARG(flags) return do_openat(d, name, flags, mode, 1); }
int __open_2(const char *name, int flags) { return do_openat(AT_FDCWD, name, flags, 0, 0); }
int __open64_2(const char *name, int flags) { return do_openat(AT_FDCWD, name, flags, 0, 1); }
int __openat_2(int d, const char *name, int flags) { return do_openat(d, name, flags, 0, 0); }
int __openat64_2(int d, const char *name, int flags) { return do_openat(d, name, flags, 0, 1); }

static int is_tracked(int fd) { return fd >= 0 && fd < MAX_FDS && fd_path[fd] != NULL; }

/* Run one write-like call under the lock and log what it wrote. off < 0: at the fd's position. */
static ssize_t logged_write(int fd, const struct iovec *iov, int iovcnt, off_t off, ssize_t (*call)(void *),
                            void *ctx) {
    pthread_mutex_lock(&lock);
    if (!is_tracked(fd)) {
        pthread_mutex_unlock(&lock);
        return call(ctx);
    }
    off_t at = off;
    if (at < 0) {
        int fl = fcntl(fd, F_GETFL);
        struct stat st;
        if (fl >= 0 && (fl & O_APPEND) && fstat(fd, &st) == 0) at = st.st_size;
        else at = lseek(fd, 0, SEEK_CUR);
    }
    size_t len = 0;
    for (int i = 0; i < iovcnt; i++) len += iov[i].iov_len;
    emit(OP_WRITE, fd_path[fd], at, 0, iov, iovcnt, len);
    ssize_t n = call(ctx);
    int saved = errno;
    emit(OP_DONE, fd_path[fd], at, (int64_t)n, NULL, 0, 0);
    if (n > 0 && fd_sync[fd]) emit(OP_SYNC, fd_path[fd], 0, (int64_t)next_seq, NULL, 0, 0);
    pthread_mutex_unlock(&lock);
    errno = saved;
    return n;
}

struct wctx { int fd; const void *buf; size_t n; off_t off; const struct iovec *iov; int cnt; int kind; };

static ssize_t wcall(void *p) {
    struct wctx *c = p;
    switch (c->kind) {
    case 0: return real_write(c->fd, c->buf, c->n);
    case 1: return real_pwrite(c->fd, c->buf, c->n, c->off);
    case 2: return real_pwrite64(c->fd, c->buf, c->n, c->off);
    case 3: return real_writev(c->fd, c->iov, c->cnt);
    case 4: return real_pwritev(c->fd, c->iov, c->cnt, c->off);
    default: return real_pwritev64(c->fd, c->iov, c->cnt, c->off);
    }
}

static ssize_t one(int fd, const void *buf, size_t n, off_t off, int kind) {
    init();
    struct wctx c = {fd, buf, n, off, NULL, 0, kind};
    if (!is_tracked(fd)) return wcall(&c);
    struct iovec iov = {(void *)buf, n};
    return logged_write(fd, &iov, 1, kind == 0 ? -1 : off, wcall, &c);
}

static ssize_t many(int fd, const struct iovec *iov, int cnt, off_t off, int kind) {
    init();
    struct wctx c = {fd, NULL, 0, off, iov, cnt, kind};
    if (!is_tracked(fd)) return wcall(&c);
    return logged_write(fd, iov, cnt, kind == 3 ? -1 : off, wcall, &c);
}

ssize_t write(int fd, const void *buf, size_t n) { return one(fd, buf, n, -1, 0); }
ssize_t pwrite(int fd, const void *buf, size_t n, off_t off) { return one(fd, buf, n, off, 1); }
ssize_t pwrite64(int fd, const void *buf, size_t n, off_t off) { return one(fd, buf, n, off, 2); }
ssize_t writev(int fd, const struct iovec *iov, int cnt) { return many(fd, iov, cnt, -1, 3); }
ssize_t pwritev(int fd, const struct iovec *iov, int cnt, off_t off) { return many(fd, iov, cnt, off, 4); }
ssize_t pwritev64(int fd, const struct iovec *iov, int cnt, off_t off) { return many(fd, iov, cnt, off, 5); }

static int truncate_with(int fd, off_t len, int (*call)(int, off_t)) {
    init();
    if (!is_tracked(fd)) return call(fd, len);
    pthread_mutex_lock(&lock);
    if (!is_tracked(fd)) {
        pthread_mutex_unlock(&lock);
        return call(fd, len);
    }
    emit(OP_TRUNCATE, fd_path[fd], 0, (int64_t)len, NULL, 0, 0);
    int rc = call(fd, len);
    int saved = errno;
    emit(OP_DONE, fd_path[fd], 0, rc, NULL, 0, 0);
    pthread_mutex_unlock(&lock);
    errno = saved;
    return rc;
}

int ftruncate(int fd, off_t len) { return truncate_with(fd, len, real_ftruncate); }
int ftruncate64(int fd, off_t len) { return truncate_with(fd, len, real_ftruncate64); }

/* The barrier covers what was logged before the call started; it is logged only on success. */
static int sync_with(int fd, int (*call)(int)) {
    init();
    if (!is_tracked(fd)) return call(fd);
    pthread_mutex_lock(&lock);
    uint64_t covered = next_seq;
    char *path = strdup(fd_path[fd]);
    pthread_mutex_unlock(&lock);
    int rc = call(fd);
    int saved = errno;
    if (rc == 0) {
        pthread_mutex_lock(&lock);
        emit(watched(path) == 2 ? OP_DIRSYNC : OP_SYNC, path, 0, (int64_t)covered, NULL, 0, 0);
        pthread_mutex_unlock(&lock);
    }
    free(path);
    errno = saved;
    return rc;
}

int fsync(int fd) { return sync_with(fd, real_fsync); }
int fdatasync(int fd) { return sync_with(fd, real_fdatasync); }

int close(int fd) {
    init();
    if (is_tracked(fd)) {
        pthread_mutex_lock(&lock);
        free(fd_path[fd]);
        fd_path[fd] = NULL;
        pthread_mutex_unlock(&lock);
    }
    return real_close(fd);
}

static int dup_track(int from, int to) {
    if (to >= 0 && to < MAX_FDS && (is_tracked(from) || is_tracked(to))) {
        pthread_mutex_lock(&lock);
        free(fd_path[to]);
        fd_path[to] = is_tracked(from) ? strdup(fd_path[from]) : NULL;
        fd_sync[to] = is_tracked(from) ? fd_sync[from] : 0;
        pthread_mutex_unlock(&lock);
    }
    return to;
}

int dup(int fd) { init(); return dup_track(fd, real_dup(fd)); }
int dup2(int fd, int to) { init(); return dup_track(fd, real_dup2(fd, to)); }
int dup3(int fd, int to, int flags) { init(); return dup_track(fd, real_dup3(fd, to, flags)); }

int unlink(const char *name) {
    init();
    char abs[PATH_MAX];
    if (log_fd < 0 || absolute(AT_FDCWD, name, abs) != 0 || watched(abs) != 1) return real_unlink(name);
    pthread_mutex_lock(&lock);
    emit(OP_UNLINK, abs, 0, 0, NULL, 0, 0);
    int rc = real_unlink(name);
    int saved = errno;
    emit(OP_DONE, abs, 0, rc, NULL, 0, 0);
    pthread_mutex_unlock(&lock);
    errno = saved;
    return rc;
}

int rename(const char *from, const char *to) {
    init();
    char a[PATH_MAX], b[PATH_MAX];
    if (log_fd < 0 || absolute(AT_FDCWD, from, a) != 0 || absolute(AT_FDCWD, to, b) != 0 ||
        (watched(a) != 1 && watched(b) != 1))
        return real_rename(from, to);
    pthread_mutex_lock(&lock);
    struct iovec iov = {b, strlen(b)};
    emit(OP_RENAME, a, 0, 0, &iov, 1, strlen(b));
    int rc = real_rename(from, to);
    int saved = errno;
    emit(OP_DONE, a, 0, rc, NULL, 0, 0);
    pthread_mutex_unlock(&lock);
    errno = saved;
    return rc;
}
