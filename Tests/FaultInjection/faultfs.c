// faultfs: an LD_PRELOAD shim that makes fdatasync/fsync fail the way Linux does when writeback
// fails (the "fsyncgate" case), for files whose path matches FAULTFS_MATCH.
//
// Why: issue 10 asks for proof that every acknowledged callback survives a failed disk sync. On
// Linux a failed writeback leaves the pages clean: the data written since the last successful sync
// may be gone from disk (and, once the pages are evicted, from the page cache too), the fsync that
// saw the error returns EIO once, and the next fsync returns 0. This shim models the harshest form
// of that: the failing sync reverts the file, at once and through the real syscalls, to its content
// at its last successful sync (old bytes and old size), returns -1 with errno EIO, and the next sync
// of the file succeeds.
//
// How: for every matching file (tracked by device and inode, whichever descriptor is used) the shim
// keeps an undo log: before each write, pwrite, writev, pwritev, ftruncate or fallocate it saves the
// bytes about to be overwritten (read through a private O_RDWR descriptor) and the size before. A
// successful sync drops the records made before it started; a failing sync applies them newest
// first. One mutex guards everything; writes to matching files hold it (so a write and a revert never
// interleave), syncs do not hold it while the real fdatasync runs. Other files pass straight through.
//
// Configuration (environment, read once):
//   FAULTFS_MATCH      ':'-separated patterns. "/prefix..." matches paths starting with it; a
//                      pattern with * ? [ is an fnmatch(3) glob on the whole path; anything else
//                      matches the file name exactly (callbacks.sqlite-wal). Required.
//   FAULTFS_FAIL_AT    fail the Nth matching fdatasync/fsync of the process (1-based)...
//   FAULTFS_FAIL_COUNT ...and the COUNT-1 after it (default 1).
//   FAULTFS_TRIGGER    fail the first FAULTFS_FAIL_COUNT matching syncs after this path exists.
//   FAULTFS_PROBABILITY fail each matching sync with this probability (0..1), FAULTFS_SEED seeds it.
//   FAULTFS_ONCE=1     at most one injected failure per process, whatever the above say.
//   FAULTFS_LOG        append the log here instead of stderr. FAULTFS_VERBOSE=1: log every
//                      tracked open and sync too.
// Every log line starts with "faultfs[PID]: "; an injected failure logs "faultfs[PID]: injected EIO".
//
// Out of scope: memory-mapped writes (SQLite's -shm index, msync), descriptors made by dup/dup2/
// fcntl(F_DUPFD) (not tracked), sync_file_range/syncfs/sync, O_DIRECT, and reporting the error
// once per open file description as Linux does (here it is reported once per file, to whichever
// descriptor syncs first). A failure reverts only the file synced, not its directory.
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

// ---- configuration and state

struct undo {
    off_t size_before;  // the file's size before the change
    off_t offset;       // where `data` was read from (the bytes the change overwrote)
    size_t length;
    unsigned char *data;
};

struct file {
    dev_t dev;
    ino_t ino;
    char path[PATH_MAX];
    int private_fd;   // O_RDWR, for reading old bytes and reverting; -1 if it could not be opened
    int references;   // tracked descriptors open on it
    unsigned long appended, dropped;  // records ever made and ever dropped (a sync drops those before it)
    int syncing;      // syncs in flight: the file is not forgotten meanwhile
    struct undo *log;
    size_t count, capacity, bytes;
    struct file *next;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t once = PTHREAD_ONCE_INIT;
static struct file *files;
static struct file **table;  // descriptor -> tracked file
static long table_size;

static char **patterns;
static int pattern_count;
static long fail_at = -1, fail_count = 1, failures, triggered_failures;
static double probability = -1;
static unsigned int seed = 1;
static int fail_once, verbose, log_fd = 2;
static const char *trigger;
static unsigned long syncs;

static ssize_t (*real_write)(int, const void *, size_t);
static ssize_t (*real_pwrite)(int, const void *, size_t, off_t);
static ssize_t (*real_pwrite64)(int, const void *, size_t, off_t);
static ssize_t (*real_writev)(int, const struct iovec *, int);
static ssize_t (*real_pwritev)(int, const struct iovec *, int, off_t);
static ssize_t (*real_pwritev64)(int, const struct iovec *, int, off_t);
static int (*real_ftruncate)(int, off_t);
static int (*real_ftruncate64)(int, off_t);
static int (*real_fallocate)(int, int, off_t, off_t);
static int (*real_fallocate64)(int, int, off_t, off_t);
static int (*real_posix_fallocate)(int, off_t, off_t);
static int (*real_posix_fallocate64)(int, off_t, off_t);
static int (*real_fdatasync)(int);
static int (*real_fsync)(int);
static int (*real_close)(int);
static int (*real_open)(const char *, int, ...);
static int (*real_open64)(const char *, int, ...);
static int (*real_openat)(int, const char *, int, ...);
static int (*real_openat64)(int, const char *, int, ...);
static int (*real_creat)(const char *, mode_t);
static int (*real_creat64)(const char *, mode_t);
static int (*real___open_2)(const char *, int);
static int (*real___open64_2)(const char *, int);
static int (*real___openat_2)(int, const char *, int);
static int (*real___openat64_2)(int, const char *, int);

// Logs through the raw syscall: never through our own write().
static void say(const char *format, ...) {
    char line[PATH_MAX + 512];
    int used = snprintf(line, sizeof line, "faultfs[%d]: ", (int)getpid());
    va_list arguments;
    va_start(arguments, format);
    vsnprintf(line + used, sizeof line - (size_t)used - 1, format, arguments);
    va_end(arguments);
    size_t length = strlen(line);
    line[length++] = '\n';
    syscall(SYS_write, log_fd, line, length);
}

#define RESOLVE(name) real_##name = dlsym(RTLD_NEXT, #name)

static void initialize(void) {
    RESOLVE(write);
    RESOLVE(pwrite);
    RESOLVE(pwrite64);
    RESOLVE(writev);
    RESOLVE(pwritev);
    RESOLVE(pwritev64);
    RESOLVE(ftruncate);
    RESOLVE(ftruncate64);
    RESOLVE(fallocate);
    RESOLVE(fallocate64);
    RESOLVE(posix_fallocate);
    RESOLVE(posix_fallocate64);
    RESOLVE(fdatasync);
    RESOLVE(fsync);
    RESOLVE(close);
    RESOLVE(open);
    RESOLVE(open64);
    RESOLVE(openat);
    RESOLVE(openat64);
    RESOLVE(creat);
    RESOLVE(creat64);
    RESOLVE(__open_2);
    RESOLVE(__open64_2);
    RESOLVE(__openat_2);
    RESOLVE(__openat64_2);

    const char *value;
    if ((value = getenv("FAULTFS_LOG")) && *value) {
        int fd = (int)syscall(SYS_openat, AT_FDCWD, value, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (fd >= 0) log_fd = fd;
    }
    verbose = (value = getenv("FAULTFS_VERBOSE")) && *value && strcmp(value, "0") != 0;
    fail_once = (value = getenv("FAULTFS_ONCE")) && *value && strcmp(value, "0") != 0;
    if ((value = getenv("FAULTFS_FAIL_AT")) && *value) fail_at = strtol(value, NULL, 10);
    if ((value = getenv("FAULTFS_FAIL_COUNT")) && *value) fail_count = strtol(value, NULL, 10);
    if ((value = getenv("FAULTFS_PROBABILITY")) && *value) probability = strtod(value, NULL);
    if ((value = getenv("FAULTFS_SEED")) && *value) seed = (unsigned int)strtoul(value, NULL, 10);
    if ((value = getenv("FAULTFS_TRIGGER")) && *value) trigger = strdup(value);
    if ((value = getenv("FAULTFS_MATCH")) && *value) {
        char *copy = strdup(value), *saved = NULL;
        for (char *part = strtok_r(copy, ":", &saved); part; part = strtok_r(NULL, ":", &saved)) {
            patterns = realloc(patterns, sizeof *patterns * (size_t)(pattern_count + 1));
            patterns[pattern_count++] = part;
        }
    }
    struct rlimit limit;
    table_size = getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur != RLIM_INFINITY ? (long)limit.rlim_cur : 65536;
    if (table_size < 1024) table_size = 1024;
    if (table_size > (1L << 20)) table_size = 1L << 20;
    table = calloc((size_t)table_size, sizeof *table);
    say("active: match=%s fail_at=%ld fail_count=%ld trigger=%s probability=%g once=%d",
        (value = getenv("FAULTFS_MATCH")) ? value : "(nothing)", fail_at, fail_count, trigger ? trigger : "-",
        probability, fail_once);
}

static inline void ready(void) { pthread_once(&once, initialize); }

static int matches(const char *path) {
    const char *name = strrchr(path, '/');
    name = name ? name + 1 : path;
    for (int index = 0; index < pattern_count; index++) {
        const char *pattern = patterns[index];
        if (strpbrk(pattern, "*?[")) {
            if (fnmatch(pattern, path, 0) == 0) return 1;
        } else if (pattern[0] == '/') {
            if (strncmp(path, pattern, strlen(pattern)) == 0) return 1;
        } else if (strcmp(name, pattern) == 0) {
            return 1;
        }
    }
    return 0;
}

static off_t size_of(int fd) {
    struct stat status;
    return fstat(fd, &status) == 0 ? status.st_size : -1;
}

// The file behind tracked descriptor `fd`, or NULL; call with `lock` held.
static struct file *tracked(int fd) { return fd >= 0 && fd < table_size ? table[fd] : NULL; }

// Cheap check without the lock: most descriptors (sockets, other files) are never tracked.
static inline int maybe_tracked(int fd) {
    return fd >= 0 && fd < table_size && table && __atomic_load_n(&table[fd], __ATOMIC_ACQUIRE) != NULL;
}

// ---- the undo log

static void append(struct file *file, off_t size_before, off_t offset, size_t length) {
    if (file->count == file->capacity) {
        file->capacity = file->capacity ? file->capacity * 2 : 64;
        file->log = realloc(file->log, sizeof *file->log * file->capacity);
    }
    struct undo *record = &file->log[file->count++];
    file->appended++;
    record->size_before = size_before;
    record->offset = offset;
    record->length = 0;
    record->data = NULL;
    if (length > 0 && file->private_fd >= 0) {
        record->data = malloc(length);
        ssize_t got = 0;
        while ((size_t)got < length) {
            ssize_t count = syscall(SYS_pread64, file->private_fd, record->data + got, length - (size_t)got, offset + got);
            if (count < 0 && errno == EINTR) continue;
            if (count <= 0) break;
            got += count;
        }
        record->length = (size_t)got;
        file->bytes += (size_t)got;
    }
}

// Before a change of [offset, offset + length): saves the bytes it overwrites and the size before.
static void before_change(struct file *file, off_t offset, size_t length) {
    off_t size = file->private_fd >= 0 ? size_of(file->private_fd) : -1;
    if (size < 0) size = 0;
    size_t saved = 0;
    if (offset < size) saved = (size_t)(size - offset) < length ? (size_t)(size - offset) : length;
    append(file, size, offset, saved);
}

static void drop(struct file *file, size_t count) {
    for (size_t index = 0; index < count; index++) {
        file->bytes -= file->log[index].length;
        free(file->log[index].data);
    }
    memmove(file->log, file->log + count, sizeof *file->log * (file->count - count));
    file->count -= count;
    file->dropped += count;
}

// Applies the undo log newest first: the file is as at its last successful sync.
static void revert(struct file *file, size_t *reverted_records, size_t *reverted_bytes, off_t *size_from, off_t *size_to) {
    *reverted_records = file->count;
    *reverted_bytes = file->bytes;
    *size_from = file->private_fd >= 0 ? size_of(file->private_fd) : -1;
    for (size_t index = file->count; index-- > 0;) {
        struct undo *record = &file->log[index];
        if (file->private_fd < 0) break;
        size_t done = 0;
        while (done < record->length) {
            ssize_t count = syscall(SYS_pwrite64, file->private_fd, record->data + done, record->length - done, record->offset + (off_t)done);
            if (count < 0 && errno == EINTR) continue;
            if (count <= 0) {
                say("revert of %s failed at offset %lld: %s", file->path, (long long)(record->offset + (off_t)done), strerror(errno));
                break;
            }
            done += (size_t)count;
        }
        if (syscall(SYS_ftruncate, file->private_fd, record->size_before) != 0) {
            say("revert of %s: ftruncate(%lld) failed: %s", file->path, (long long)record->size_before, strerror(errno));
        }
    }
    drop(file, file->count);
    *size_to = file->private_fd >= 0 ? size_of(file->private_fd) : -1;
}

// ---- tracking descriptors

static void track(int fd) {
    if (fd < 0 || pattern_count == 0) return;
    if (fd >= table_size) {
        say("descriptor %d is beyond the table (%ld): not tracked", fd, table_size);
        return;
    }
    char link[64], path[PATH_MAX];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t length = syscall(SYS_readlinkat, AT_FDCWD, link, path, sizeof path - 1);
    if (length <= 0) return;
    path[length] = 0;
    static const char deleted[] = " (deleted)";
    if ((size_t)length > sizeof deleted - 1 && strcmp(path + length - (sizeof deleted - 1), deleted) == 0) {
        path[length - (sizeof deleted - 1)] = 0;
    }
    struct stat status;
    if (fstat(fd, &status) != 0 || !S_ISREG(status.st_mode)) return;
    int matched = matches(path);

    pthread_mutex_lock(&lock);
    struct file *file = files;
    while (file && !(file->dev == status.st_dev && file->ino == status.st_ino)) file = file->next;
    if (!file && matched) {
        file = calloc(1, sizeof *file);
        file->dev = status.st_dev;
        file->ino = status.st_ino;
        snprintf(file->path, sizeof file->path, "%s", path);
        file->private_fd = (int)syscall(SYS_openat, AT_FDCWD, link, O_RDWR | O_CLOEXEC);
        if (file->private_fd < 0) say("%s: no writable descriptor (%s): writes are not undone", path, strerror(errno));
        file->next = files;
        files = file;
    }
    if (file) {
        file->references++;
        __atomic_store_n(&table[fd], file, __ATOMIC_RELEASE);
        if (verbose) say("tracking fd %d: %s (size %lld)", fd, file->path, (long long)status.st_size);
    }
    pthread_mutex_unlock(&lock);
}

static void untrack(int fd) {
    if (!maybe_tracked(fd)) return;
    pthread_mutex_lock(&lock);
    struct file *file = tracked(fd);
    if (file) {
        __atomic_store_n(&table[fd], NULL, __ATOMIC_RELEASE);
        file->references--;
        struct stat status;
        // A file gone from the directory and no longer open is forgotten (its inode may be reused).
        // A private descriptor is never closed while the file has a name: closing any descriptor of a
        // file drops the process's POSIX locks on it (SQLite's).
        if (file->references == 0 && file->syncing == 0 && file->private_fd >= 0 && fstat(file->private_fd, &status) == 0 &&
            status.st_nlink == 0) {
            struct file **link = &files;
            while (*link != file) link = &(*link)->next;
            *link = file->next;
            drop(file, file->count);
            free(file->log);
            syscall(SYS_close, file->private_fd);
            if (verbose) say("forgetting %s (deleted)", file->path);
            free(file);
        }
    }
    pthread_mutex_unlock(&lock);
}

// ---- the hooks

#define OPEN_MODE(flags, mode)                                       \
    mode_t mode = 0;                                                 \
    if ((flags) & (O_CREAT | O_TMPFILE)) {                           \
        va_list arguments;                                           \
        va_start(arguments, flags);                                  \
        mode = (mode_t)va_arg(arguments, int);                       \
        va_end(arguments);                                           \
    }

int open(const char *path, int flags, ...) {
    ready();
    OPEN_MODE(flags, mode);
    int fd = real_open(path, flags, mode);
    track(fd);
    return fd;
}

int open64(const char *path, int flags, ...) {
    ready();
    OPEN_MODE(flags, mode);
    int fd = real_open64 ? real_open64(path, flags, mode) : real_open(path, flags, mode);
    track(fd);
    return fd;
}

int openat(int directory, const char *path, int flags, ...) {
    ready();
    OPEN_MODE(flags, mode);
    int fd = real_openat(directory, path, flags, mode);
    track(fd);
    return fd;
}

int openat64(int directory, const char *path, int flags, ...) {
    ready();
    OPEN_MODE(flags, mode);
    int fd = real_openat64 ? real_openat64(directory, path, flags, mode) : real_openat(directory, path, flags, mode);
    track(fd);
    return fd;
}

int creat(const char *path, mode_t mode) {
    ready();
    int fd = real_creat(path, mode);
    track(fd);
    return fd;
}

int creat64(const char *path, mode_t mode) {
    ready();
    int fd = real_creat64 ? real_creat64(path, mode) : real_creat(path, mode);
    track(fd);
    return fd;
}

int __open_2(const char *path, int flags) {
    ready();
    int fd = real___open_2(path, flags);
    track(fd);
    return fd;
}

int __open64_2(const char *path, int flags) {
    ready();
    int fd = real___open64_2 ? real___open64_2(path, flags) : real___open_2(path, flags);
    track(fd);
    return fd;
}

int __openat_2(int directory, const char *path, int flags) {
    ready();
    int fd = real___openat_2(directory, path, flags);
    track(fd);
    return fd;
}

int __openat64_2(int directory, const char *path, int flags) {
    ready();
    int fd = real___openat64_2 ? real___openat64_2(directory, path, flags) : real___openat_2(directory, path, flags);
    track(fd);
    return fd;
}

int close(int fd) {
    ready();
    untrack(fd);
    return real_close(fd);
}

// Where a write without an offset lands: the descriptor's position, or the end with O_APPEND.
static off_t position_of(int fd) {
    long flags = syscall(SYS_fcntl, fd, F_GETFL);
    if (flags >= 0 && (flags & O_APPEND)) return size_of(fd);
    return (off_t)syscall(SYS_lseek, fd, 0, SEEK_CUR);
}

static size_t total_length(const struct iovec *vectors, int count) {
    size_t total = 0;
    for (int index = 0; index < count; index++) total += vectors[index].iov_len;
    return total;
}

// Runs `call` with the change [offset, offset + length) recorded first, under the lock. `offset`
// -1: the descriptor's position.
#define UNDOABLE(fd, offset_expression, length_expression, call)                    \
    do {                                                                            \
        ready();                                                                    \
        if (!maybe_tracked(fd)) return call;                                        \
        pthread_mutex_lock(&lock);                                                  \
        struct file *file = tracked(fd);                                            \
        if (file) {                                                                 \
            off_t where = (offset_expression);                                      \
            if (where < 0) where = position_of(fd);                                 \
            if (where >= 0) before_change(file, where, (length_expression));        \
        }                                                                           \
        __typeof__(call) result = call;                                             \
        int saved_errno = errno;                                                    \
        pthread_mutex_unlock(&lock);                                                \
        errno = saved_errno;                                                        \
        return result;                                                              \
    } while (0)

ssize_t write(int fd, const void *buffer, size_t length) { UNDOABLE(fd, -1, length, real_write(fd, buffer, length)); }

ssize_t pwrite(int fd, const void *buffer, size_t length, off_t offset) {
    UNDOABLE(fd, offset, length, real_pwrite(fd, buffer, length, offset));
}

ssize_t pwrite64(int fd, const void *buffer, size_t length, off_t offset) {
    UNDOABLE(fd, offset, length, (real_pwrite64 ? real_pwrite64 : real_pwrite)(fd, buffer, length, offset));
}

ssize_t writev(int fd, const struct iovec *vectors, int count) {
    UNDOABLE(fd, -1, total_length(vectors, count), real_writev(fd, vectors, count));
}

ssize_t pwritev(int fd, const struct iovec *vectors, int count, off_t offset) {
    UNDOABLE(fd, offset, total_length(vectors, count), real_pwritev(fd, vectors, count, offset));
}

ssize_t pwritev64(int fd, const struct iovec *vectors, int count, off_t offset) {
    UNDOABLE(fd, offset, total_length(vectors, count), (real_pwritev64 ? real_pwritev64 : real_pwritev)(fd, vectors, count, offset));
}

// A size change: the bytes cut off (if it shrinks) and the old size are saved.
static off_t cut_from(int fd, off_t length) {
    off_t size = size_of(fd);
    return length < size ? length : size;
}

static size_t cut_length(int fd, off_t length) {
    off_t size = size_of(fd);
    return length < size ? (size_t)(size - length) : 0;
}

int ftruncate(int fd, off_t length) { UNDOABLE(fd, cut_from(fd, length), cut_length(fd, length), real_ftruncate(fd, length)); }

int ftruncate64(int fd, off_t length) {
    UNDOABLE(fd, cut_from(fd, length), cut_length(fd, length), (real_ftruncate64 ? real_ftruncate64 : real_ftruncate)(fd, length));
}

// Plain allocation changes only the size; punching or zeroing overwrites the range.
int fallocate(int fd, int mode, off_t offset, off_t length) {
    UNDOABLE(fd, offset, mode & ~FALLOC_FL_KEEP_SIZE ? (size_t)length : 0, real_fallocate(fd, mode, offset, length));
}

int fallocate64(int fd, int mode, off_t offset, off_t length) {
    UNDOABLE(fd, offset, mode & ~FALLOC_FL_KEEP_SIZE ? (size_t)length : 0,
        (real_fallocate64 ? real_fallocate64 : real_fallocate)(fd, mode, offset, length));
}

int posix_fallocate(int fd, off_t offset, off_t length) { UNDOABLE(fd, offset, 0, real_posix_fallocate(fd, offset, length)); }

int posix_fallocate64(int fd, off_t offset, off_t length) {
    UNDOABLE(fd, offset, 0, (real_posix_fallocate64 ? real_posix_fallocate64 : real_posix_fallocate)(fd, offset, length));
}

// Whether matching sync number `number` fails; call with `lock` held.
static int should_fail(unsigned long number) {
    if (fail_once && failures > 0) return 0;
    if (fail_at > 0 && (long)number >= fail_at && (long)number < fail_at + fail_count) return 1;
    if (trigger && triggered_failures < fail_count && syscall(SYS_faccessat, AT_FDCWD, trigger, F_OK, 0) == 0) {
        triggered_failures++;
        return 1;
    }
    if (probability > 0 && (double)rand_r(&seed) / ((double)RAND_MAX + 1) < probability) return 1;
    return 0;
}

static int sync_hook(int fd, int (*real)(int), const char *name) {
    ready();
    if (!maybe_tracked(fd)) return real(fd);
    pthread_mutex_lock(&lock);
    struct file *file = tracked(fd);
    if (!file) {
        pthread_mutex_unlock(&lock);
        return real(fd);
    }
    unsigned long number = ++syncs;
    if (should_fail(number)) {
        failures++;
        size_t records, bytes;
        off_t from, to;
        revert(file, &records, &bytes, &from, &to);
        say("injected EIO: %s #%lu of fd %d (%s): reverted to the last synced content: %zu changes undone (%zu bytes restored), "
            "size %lld -> %lld",
            name, number, fd, file->path, records, bytes, (long long)from, (long long)to);
        pthread_mutex_unlock(&lock);
        errno = EIO;
        return -1;
    }
    // Everything recorded so far is covered by this sync; later writes are not.
    unsigned long covered = file->appended;
    file->syncing++;
    pthread_mutex_unlock(&lock);
    int result = real(fd);
    int saved_errno = errno;
    pthread_mutex_lock(&lock);
    file->syncing--;
    if (result == 0 && covered > file->dropped) drop(file, (size_t)(covered - file->dropped));
    if (verbose) say("%s #%lu of fd %d (%s): %d", name, number, fd, file->path, result);
    pthread_mutex_unlock(&lock);
    errno = saved_errno;
    return result;
}

int fdatasync(int fd) { return sync_hook(fd, real_fdatasync, "fdatasync"); }

int fsync(int fd) { return sync_hook(fd, real_fsync, "fsync"); }
