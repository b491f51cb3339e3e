/* Small helpers: clocks, /proc, whole-file reads and writes, growable buffers, UTF-8. */
#include "shim.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

double mono_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void sleep_s(double s) {
    if (s <= 0)
        return;
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
    }
}

ssize_t read_file(const char *path, char *buf, size_t cap) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    size_t len = 0;
    for (;;) {
        if (len + 1 >= cap) { /* too large for the caller's buffer */
            close(fd);
            errno = EFBIG;
            return -1;
        }
        ssize_t n = read(fd, buf + len, cap - 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int saved = errno;
            close(fd);
            errno = saved;
            return -1;
        }
        if (n == 0)
            break;
        len += (size_t)n;
    }
    close(fd);
    buf[len] = '\0';
    return (ssize_t)len;
}

int write_file(const char *path, const char *value) {
    /* One write(2): cgroup files act on each write and report errors there. */
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = write(fd, value, strlen(value));
    int saved = errno;
    close(fd);
    errno = saved;
    return n < 0 ? -1 : 0;
}

int write_all(int fd, const void *buf, size_t len) {
    const char *p = buf;
    while (len) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Field 22 of /proc/PID/stat (after the ")" that ends the command name). */
unsigned long long proc_start_time(pid_t pid) {
    char path[64], text[2048];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    if (read_file(path, text, sizeof text) < 0)
        return 0;
    char *p = strrchr(text, ')');
    if (!p)
        return 0;
    p++;
    for (int field = 3; field < 22; field++) { /* p: the space before FIELD */
        p = strchr(p + 1, ' ');
        if (!p)
            return 0;
    }
    return strtoull(p + 1, NULL, 10);
}

void buf_put(struct buf *b, const void *s, size_t len) {
    if (b->len + len + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + len + 1)
            cap *= 2;
        char *data = realloc(b->data, cap);
        if (!data)
            abort(); /* out of memory: nothing sensible is left to do */
        b->data = data;
        b->cap = cap;
    }
    memcpy(b->data + b->len, s, len);
    b->len += len;
    b->data[b->len] = '\0';
}

void buf_printf(struct buf *b, const char *fmt, ...) {
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n > 0)
        buf_put(b, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

/* Length of the well-formed UTF-8 sequence at S (1..4), or -(length of the maximal
 * ill-formed prefix) (Unicode 3.9, Table 3-7: the "maximal subpart" a decoder replaces
 * by one U+FFFD; CPython does the same). */
static int utf8_seq(const unsigned char *s, size_t len) {
    unsigned char c = s[0];
    if (c < 0x80)
        return 1;
    int need;
    unsigned char lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF)
        need = 1;
    else if (c >= 0xE0 && c <= 0xEF) {
        need = 2;
        if (c == 0xE0)
            lo = 0xA0;
        if (c == 0xED)
            hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        need = 3;
        if (c == 0xF0)
            lo = 0x90;
        if (c == 0xF4)
            hi = 0x8F;
    } else
        return -1;
    size_t i = 1;
    for (; i <= (size_t)need; i++) {
        if (i >= len || s[i] < lo || s[i] > hi)
            return -(int)i;
        lo = 0x80;
        hi = 0xBF;
    }
    return need + 1;
}

void buf_utf8(struct buf *b, const unsigned char *s, size_t len) {
    size_t i = 0, run = 0; /* run: start of well-formed bytes not yet copied */
    while (i < len) {
        int n = utf8_seq(s + i, len - i);
        if (n > 0) {
            i += (size_t)n;
            continue;
        }
        buf_put(b, s + run, i - run);
        buf_put(b, "\xEF\xBF\xBD", 3);
        i += (size_t)(-n);
        run = i;
    }
    buf_put(b, s + run, i - run);
}

void buf_json_string(struct buf *b, const char *s) {
    struct buf clean = {0};
    buf_utf8(&clean, (const unsigned char *)s, strlen(s));
    buf_put(b, "\"", 1);
    for (size_t i = 0; i < clean.len; i++) {
        unsigned char c = (unsigned char)clean.data[i];
        if (c == '"' || c == '\\') {
            char esc[2] = {'\\', (char)c};
            buf_put(b, esc, 2);
        } else if (c < 0x20) {
            buf_printf(b, "\\u%04x", c);
        } else {
            buf_put(b, &clean.data[i], 1);
        }
    }
    buf_put(b, "\"", 1);
    free(clean.data);
}

void make_dirs(const char *dir) {
    char path[4096];
    snprintf(path, sizeof path, "%s", dir);
    if (mkdir(path, 0750) == 0 || errno == EEXIST)
        return; /* the usual cases: one syscall */
    for (char *p = path + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        mkdir(path, 0750);
        *p = '/';
    }
    mkdir(path, 0750);
}
