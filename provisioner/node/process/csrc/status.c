/* The status file: JSON with exactly the fields of provisioner.node.process.shimspec.ShimStatus,
 * replaced atomically (tmp file + rename) at every change. Not fsync'ed, on purpose
 * (see write_json_atomic in shimspec.py). The tmp file of the next write is created
 * ahead while the shim is idle: creating a file is the slow part on a busy ext4. The
 * first one is made even before the spec arrives (status_premake, in the run directory
 * the launcher names), while the launcher is still making the leaf. */
#include "shim.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static pid_t me;
static unsigned long long my_start_time;
static int next_fd = -1;
static char tmp_path[4200];  /* where next_fd is (or will be made) */

void status_premake(const char *run_dir) {
    /* O_EXCL: the name carries our pid, which another shim may get once we have forked
     * away from it; it must then make its own file, never open ours. */
    snprintf(tmp_path, sizeof tmp_path, "%s/.shim-%d.tmp", run_dir, (int)getpid());
    next_fd = open(tmp_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
}

void status_init(const struct spec *s) {
    me = getpid();
    my_start_time = proc_start_time(me);
    if (next_fd < 0) /* else the pre-made file is used first, then names like this one */
        snprintf(tmp_path, sizeof tmp_path, "%s.tmp.%d", s->status_file, (int)me);
}

void status_prepare(const struct spec *s) {
    (void)s;
    if (next_fd < 0)
        next_fd = open(tmp_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
}

void status_discard(void) {
    if (next_fd >= 0) {
        close(next_fd);
        next_fd = -1;
        unlink(tmp_path);
    }
}

static void opt_int(struct buf *b, const char *key, int has, long long value) {
    if (has)
        buf_printf(b, ",\"%s\":%lld", key, value);
    else
        buf_printf(b, ",\"%s\":null", key);
}

int status_write(const struct spec *s, const struct status *st) {
    struct buf b = {0};
    buf_put(&b, "{\"name\":", 8);
    buf_json_string(&b, s->name);
    buf_put(&b, ",\"state\":", 9);
    buf_json_string(&b, st->state);
    buf_printf(&b, ",\"shim_pid\":%d,\"shim_start_time\":%llu,\"leaf\":{\"dirs\":[",
               (int)me, my_start_time);
    for (int i = 0; i < s->n_leaf; i++) {
        if (i)
            buf_put(&b, ",", 1);
        buf_json_string(&b, s->leaf[i]);
    }
    buf_printf(&b, "],\"v2\":%s,\"freezer_dir\":", s->leaf_v2 ? "true" : "false");
    if (s->freezer_dir)
        buf_json_string(&b, s->freezer_dir);
    else
        buf_put(&b, "null", 4);
    buf_put(&b, "},\"status_file\":", 16);
    buf_json_string(&b, s->status_file);
    buf_put(&b, ",\"log_dir\":", 11);
    buf_json_string(&b, s->log_dir);
    buf_printf(&b, ",\"stop_grace_s\":%s,\"launch_id\":", s->stop_grace_text);
    buf_json_string(&b, s->launch_id);
    opt_int(&b, "child_pid", st->child_pid > 0, st->child_pid);
    opt_int(&b, "child_start_time", st->child_pid > 0 && st->child_start_time,
            (long long)st->child_start_time);
    opt_int(&b, "exit_code", st->has_exit_code, st->exit_code);
    opt_int(&b, "exit_signal", st->has_exit_signal, st->exit_signal);
    opt_int(&b, "started_at_ns", st->started_at_ns != 0, st->started_at_ns);
    opt_int(&b, "exited_at_ns", st->exited_at_ns != 0, st->exited_at_ns);
    opt_int(&b, "next_start_at_ns", st->next_start_at_ns != 0, st->next_start_at_ns);
    buf_printf(&b, ",\"restart_count\":%ld,\"last_error\":", st->restart_count);
    buf_json_string(&b, st->last_error);
    buf_printf(&b, ",\"updated_at_ns\":%lld}", (long long)now_ns());

    status_prepare(s);
    int fd = next_fd, rc = -1;
    next_fd = -1;
    if (fd >= 0) {
        rc = write_all(fd, b.data, b.len);
        close(fd);
        if (rc == 0)
            rc = rename(tmp_path, s->status_file);
        if (rc < 0)
            unlink(tmp_path);
    }
    /* From now on (the pre-made file, if any, is used up) tmp files carry our own pid. */
    snprintf(tmp_path, sizeof tmp_path, "%s.tmp.%d", s->status_file, (int)me);
    if (rc < 0 && fd >= 0 && errno == EXDEV) { /* pre-made on another file system */
        fd = open(tmp_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
        rc = fd < 0 ? -1 : write_all(fd, b.data, b.len);
        if (fd >= 0)
            close(fd);
        if (rc == 0)
            rc = rename(tmp_path, s->status_file);
        if (rc < 0)
            unlink(tmp_path);
    }
    free(b.data);
    return rc;
}
