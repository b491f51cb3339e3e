/* Per-executable log files, in the format provisioner/node/process/logs.py reads and documents:
 * numbered files output-NNNNNNNN.log, one record per line "<ts_ns> <O|E>[+] <text>\n",
 * text as UTF-8 (ill-formed bytes replaced), overlong lines cut into pieces marked "+"
 * (never inside a UTF-8 sequence), rotation by size, `keep` older files kept. The
 * directory and the first file are made at the first line. */
#include "shim.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define READ_CHUNK 65536

void log_init(struct logwriter *w, const struct spec *s) {
    w->dir = s->log_dir;
    w->max_bytes = s->log_max_bytes;
    w->keep = s->log_keep;
    w->seq = 0;
    w->fd = -1;
    w->size = 0;
}

/* Number of "output-NNNNNNNN.log", or 0 if NAME is not a log file. */
static long seq_of(const char *name) {
    size_t len = strlen(name);
    if (len <= 11 || strncmp(name, "output-", 7) || strcmp(name + len - 4, ".log"))
        return 0;
    long seq = 0;
    for (const char *p = name + 7; p < name + len - 4; p++) {
        if (*p < '0' || *p > '9')
            return 0;
        seq = seq * 10 + (*p - '0');
    }
    return seq;
}

/* The newest number in the directory; with DROP_BELOW > 0 delete files numbered below it. */
static long scan(const char *dir, long drop_below) {
    DIR *d = opendir(dir);
    long newest = 0;
    if (!d)
        return 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        long seq = seq_of(e->d_name);
        if (seq > newest)
            newest = seq;
        if (seq > 0 && seq < drop_below) {
            char path[4096];
            snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
            unlink(path);
        }
    }
    closedir(d);
    return newest;
}

static int open_seq(struct logwriter *w) {
    char path[4096];
    snprintf(path, sizeof path, "%s/output-%08ld.log", w->dir, w->seq);
    w->fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    if (w->fd < 0)
        return -1;
    struct stat st;
    w->size = fstat(w->fd, &st) == 0 ? st.st_size : 0;
    if (w->seq - w->keep > 1) /* beyond `keep` (also after a restart with a smaller one) */
        scan(w->dir, w->seq - w->keep);
    return 0;
}

static int open_first(struct logwriter *w) {
    make_dirs(w->dir);
    long newest = scan(w->dir, 0);
    w->seq = newest ? newest : 1; /* append to the newest file */
    return open_seq(w);
}

static void flush_batch(struct logwriter *w, struct buf *batch) {
    if (batch->len && w->fd >= 0 && write_all(w->fd, batch->data, batch->len) == 0)
        w->size += (long long)batch->len;
    batch->len = 0;
}

/* Write LINES (pieces of one channel) stamped TS: one write per batch, rotating when a
 * record would not fit into the current file. */
static void write_line(struct logwriter *w, struct buf *batch, struct buf *rec, char tag,
                       int continued, const char *text, size_t len, int64_t ts) {
    rec->len = 0;
    buf_printf(rec, "%lld %c%s ", (long long)ts, tag, continued ? "+" : "");
    buf_utf8(rec, (const unsigned char *)text, len);
    buf_put(rec, "\n", 1);
    if (w->fd < 0 && open_first(w) < 0)
        return; /* cannot log (disk full, directory gone): the executable runs on */
    if (w->size + (long long)(batch->len + rec->len) > w->max_bytes) {
        flush_batch(w, batch);
        if (w->size > 0) {
            close(w->fd);
            w->seq++;
            if (open_seq(w) < 0)
                return;
        }
    }
    buf_put(batch, rec->data, rec->len);
}

static struct buf batch_buf, rec_buf;

static void ensure_buffer(struct splitter *sp) {
    if (!sp->buf) { /* never more than one incomplete line (<= max) plus one chunk */
        sp->buf = malloc(sp->max + READ_CHUNK + 1);
        if (!sp->buf)
            abort();
        sp->len = 0;
    }
}

void log_feed(struct logwriter *w, struct splitter *sp, char tag, const char *data,
              size_t len, int64_t ts) {
    ensure_buffer(sp);
    while (len) { /* callers read at most READ_CHUNK; be safe with more */
        size_t take = len < READ_CHUNK ? len : READ_CHUNK;
        memcpy(sp->buf + sp->len, data, take);
        sp->len += take;
        data += take;
        len -= take;
        unsigned char *buf = (unsigned char *)sp->buf;
        size_t start = 0, max = sp->max;
        while (start < sp->len) {
            size_t window = sp->len - start < max + 1 ? sp->len - start : max + 1;
            unsigned char *nl = memchr(buf + start, '\n', window);
            if (nl) {
                write_line(w, &batch_buf, &rec_buf, tag, 0, (char *)buf + start,
                           (size_t)(nl - (buf + start)), ts);
                start = (size_t)(nl - buf) + 1;
                continue;
            }
            if (sp->len - start <= max)
                break; /* an incomplete line that still fits: wait for more */
            size_t cut = start + max, back = cut;
            while (back > cut - 3 && (buf[back] & 0xC0) == 0x80)
                back--;
            if (back > start && (buf[back] & 0xC0) != 0x80)
                cut = back;
            write_line(w, &batch_buf, &rec_buf, tag, 1, (char *)buf + start, cut - start, ts);
            start = cut;
        }
        memmove(buf, buf + start, sp->len - start);
        sp->len -= start;
    }
    flush_batch(w, &batch_buf);
}

void log_flush(struct logwriter *w, struct splitter *sp, char tag, int64_t ts) {
    if (sp->buf && sp->len) {
        write_line(w, &batch_buf, &rec_buf, tag, 0, sp->buf, sp->len, ts);
        sp->len = 0;
        flush_batch(w, &batch_buf);
    }
}

void log_close(struct logwriter *w) {
    if (w->fd >= 0)
        close(w->fd);
    w->fd = -1;
}
