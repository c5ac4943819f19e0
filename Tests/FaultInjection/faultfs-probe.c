// faultfs-probe: runs file operations named on its command line, so a test can drive the faultfs
// shim (run it with LD_PRELOAD) through exactly the calls it means and check the files afterwards.
//
//   open NAME PATH rw|ro   open PATH as descriptor NAME (rw creates it)
//   pwrite NAME OFFSET TEXT, write NAME TEXT, writev NAME TEXT TEXT, truncate NAME SIZE
//   fdatasync NAME, fsync NAME   print "fdatasync NAME 0" or "fdatasync NAME -1 EIO"
//   read NAME              print "read NAME SIZE <content>"
//   threads N COUNT PATH   N threads each append COUNT lines to PATH and fdatasync after each
//   close NAME
// Exits 0 once every operation ran (a failed sync is output, not an error); 2 on misuse.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

static struct {
    char name[32];
    int fd;
} descriptors[32];
static int descriptor_count;

static int lookup(const char *name) {
    for (int index = 0; index < descriptor_count; index++) {
        if (strcmp(descriptors[index].name, name) == 0) return descriptors[index].fd;
    }
    fprintf(stderr, "faultfs-probe: no descriptor %s\n", name);
    exit(2);
}

static void report(const char *operation, const char *name, int result) {
    if (result == 0) {
        printf("%s %s 0\n", operation, name);
    } else {
        printf("%s %s -1 %s\n", operation, name, errno == EIO ? "EIO" : strerror(errno));
    }
    fflush(stdout);
}

struct appender {
    const char *path;
    int index, count;
};

static void *append_lines(void *argument) {
    struct appender *appender = argument;
    int fd = open(appender->path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) return NULL;
    for (int line = 0; line < appender->count; line++) {
        char text[64];
        int length = snprintf(text, sizeof text, "thread %d line %d\n", appender->index, line);
        if (write(fd, text, (size_t)length) != length) break;
        fdatasync(fd);
    }
    close(fd);
    return NULL;
}

int main(int count, char **arguments) {
    for (int index = 1; index < count;) {
        const char *operation = arguments[index];
#define NEED(n)                                                                        \
    if (index + (n) >= count) {                                                        \
        fprintf(stderr, "faultfs-probe: %s needs %d arguments\n", operation, (n));     \
        return 2;                                                                      \
    }
        if (strcmp(operation, "open") == 0) {
            NEED(3);
            int writable = strcmp(arguments[index + 3], "rw") == 0;
            int fd = open(arguments[index + 2], writable ? O_RDWR | O_CREAT | O_CLOEXEC : O_RDONLY | O_CLOEXEC, 0644);
            if (fd < 0 || descriptor_count == 32) {
                perror("faultfs-probe: open");
                return 2;
            }
            snprintf(descriptors[descriptor_count].name, sizeof descriptors[0].name, "%s", arguments[index + 1]);
            descriptors[descriptor_count++].fd = fd;
            index += 4;
        } else if (strcmp(operation, "pwrite") == 0) {
            NEED(3);
            const char *text = arguments[index + 3];
            if (pwrite(lookup(arguments[index + 1]), text, strlen(text), atoll(arguments[index + 2])) < 0) perror("pwrite");
            index += 4;
        } else if (strcmp(operation, "write") == 0) {
            NEED(2);
            const char *text = arguments[index + 2];
            if (write(lookup(arguments[index + 1]), text, strlen(text)) < 0) perror("write");
            index += 3;
        } else if (strcmp(operation, "writev") == 0) {
            NEED(3);
            struct iovec vectors[2] = {
                {arguments[index + 2], strlen(arguments[index + 2])}, {arguments[index + 3], strlen(arguments[index + 3])}};
            if (writev(lookup(arguments[index + 1]), vectors, 2) < 0) perror("writev");
            index += 4;
        } else if (strcmp(operation, "truncate") == 0) {
            NEED(2);
            if (ftruncate(lookup(arguments[index + 1]), atoll(arguments[index + 2])) != 0) perror("ftruncate");
            index += 3;
        } else if (strcmp(operation, "fdatasync") == 0 || strcmp(operation, "fsync") == 0) {
            NEED(1);
            int fd = lookup(arguments[index + 1]);
            report(operation, arguments[index + 1], operation[1] == 'd' ? fdatasync(fd) : fsync(fd));
            index += 2;
        } else if (strcmp(operation, "read") == 0) {
            NEED(1);
            int fd = lookup(arguments[index + 1]);
            struct stat status;
            fstat(fd, &status);
            char *content = calloc(1, (size_t)status.st_size + 1);
            ssize_t got = pread(fd, content, (size_t)status.st_size, 0);
            printf("read %s %lld %.*s\n", arguments[index + 1], (long long)status.st_size, (int)(got > 0 ? got : 0), content);
            fflush(stdout);
            free(content);
            index += 2;
        } else if (strcmp(operation, "threads") == 0) {
            NEED(3);
            int threads = atoi(arguments[index + 1]);
            pthread_t ids[64];
            struct appender appenders[64];
            if (threads > 64) threads = 64;
            for (int thread = 0; thread < threads; thread++) {
                appenders[thread] = (struct appender){arguments[index + 3], thread, atoi(arguments[index + 2])};
                pthread_create(&ids[thread], NULL, append_lines, &appenders[thread]);
            }
            for (int thread = 0; thread < threads; thread++) pthread_join(ids[thread], NULL);
            index += 4;
        } else if (strcmp(operation, "close") == 0) {
            NEED(1);
            close(lookup(arguments[index + 1]));
            index += 2;
        } else {
            fprintf(stderr, "faultfs-probe: unknown operation %s\n", operation);
            return 2;
        }
    }
    return 0;
}
