/* provisioner-shim: the detached supervisor of one executable (see shim.c). */
#ifndef PROVISIONER_SHIM_H
#define PROVISIONER_SHIM_H

#define _GNU_SOURCE
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define MAX_LIST 64 /* leaf directories, namespaces */
/* The limits of provisioner/limits.py (MAX_STOP_GRACE_S, MAX_BACKOFF_S, log sizes): the
 * launcher never sends more; a larger value (or nan / inf) is clamped, not trusted. */
#define MAX_STOP_GRACE_S 3600.0
#define MAX_STOP_GRACE_TEXT "3600.0"
#define MAX_SETTLE_S 60.0
#define MAX_BACKOFF_S 3600.0
#define MAX_LOG_FILE_BYTES (1LL << 30)
#define MAX_LOG_FILES_KEPT 100LL
#define MAX_LOG_LINE_BYTES (1LL << 20)

/* What the launcher asks (provisioner/node/process/shimspec.py: native_spec_bytes). */
struct spec {
    const char *name, *status_file, *log_dir, *launch_id, *crash_log;
    const char *stop_grace_text; /* echoed verbatim into the status (a JSON number) */
    double stop_grace_s, backoff_base_s, backoff_cap_s, backoff_reset_s;
    double settle_s;             /* 0: kill the whole leaf at once after the grace period */
    int restart_policy;          /* RESTART_NEVER / _ON_FAILURE / _ALWAYS */
    const char *leaf[MAX_LIST];
    int n_leaf;
    int leaf_v2;
    const char *freezer_dir;     /* NULL when none */
    char **argv;                 /* NULL-terminated */
    char **envp;                 /* NULL-terminated */
    const char *chdir_to;        /* NULL: nsenter does it */
    long uid, gid;               /* -1: unchanged */
    long holder_pid;             /* 0: no namespace target */
    int unshare_cgroup;          /* a cgroup namespace rooted at the leaf (isolate_process) */
    unsigned long long holder_start_time;
    const char *working_dir;     /* for the holder pre-flight check */
    long long log_max_bytes, log_keep, log_max_line_bytes;
};

enum { RESTART_NEVER, RESTART_ON_FAILURE, RESTART_ALWAYS };

/* spec.c */
int spec_parse(struct spec *s, char *buf, size_t len, char *err, size_t errlen);

/* util.c */
int64_t now_ns(void);            /* wall clock */
double mono_s(void);
unsigned long long proc_start_time(pid_t pid); /* 0 if unknown */
int write_all(int fd, const void *buf, size_t len);
ssize_t read_file(const char *path, char *buf, size_t cap); /* NUL-terminated */
int write_file(const char *path, const char *value);         /* one write(2) */
void sleep_s(double s);
void make_dirs(const char *dir); /* mkdir -p (errors show at the first use) */
/* Append S (LEN bytes) to OUT as UTF-8, each ill-formed subsequence replaced by
 * U+FFFD exactly as Python's bytes.decode("utf-8", "replace") does. */
struct buf { char *data; size_t len, cap; };
void buf_put(struct buf *b, const void *s, size_t len);
void buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void buf_utf8(struct buf *b, const unsigned char *s, size_t len);
void buf_json_string(struct buf *b, const char *s); /* "..." with escapes */

/* leaf.c */
int leaf_pids(const struct spec *s, pid_t *out, int cap); /* -1 on overflow */
int leaf_empty(const struct spec *s);
int leaf_kill_all(const struct spec *s, double timeout_s, char *err, size_t errlen);
void leaf_signal(const struct spec *s, int sig);
int leaf_kill_below(const struct spec *s); /* how many were killed */

/* logs.c */
struct logwriter {
    const char *dir;
    long long max_bytes, keep;
    long seq;      /* 0 until the first line */
    int fd;
    long long size;
};
struct splitter { char *buf; size_t len, max; };
void log_init(struct logwriter *w, const struct spec *s);
/* Feed DATA of one channel ('O' or 'E'); complete lines are written, stamped TS. */
void log_feed(struct logwriter *w, struct splitter *sp, char tag,
              const char *data, size_t len, int64_t ts);
void log_flush(struct logwriter *w, struct splitter *sp, char tag, int64_t ts);
void log_close(struct logwriter *w);

/* status.c */
struct status {
    const char *state;
    pid_t child_pid;
    unsigned long long child_start_time;
    int has_exit_code, exit_code, has_exit_signal, exit_signal;
    int64_t started_at_ns, exited_at_ns, next_start_at_ns; /* 0: null */
    long restart_count;
    char last_error[1024];
};
void status_premake(const char *run_dir); /* before the spec: the first tmp file */
void status_init(const struct spec *s);
int status_write(const struct spec *s, const struct status *st); /* 0 ok, -1 errno */
void status_prepare(const struct spec *s); /* make the next write's tmp file now */
void status_discard(void);

#endif
