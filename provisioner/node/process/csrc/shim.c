/* provisioner-shim: the detached supervisor of ONE executable.
 *
 * Started by provisioner/node/process/supervise.py (ShimLaunch) with
 *   fd 0  a pipe that brings the launch spec (NUL-separated key / value pairs, see
 *         spec.c) and then EOF; EOF alone means the launch was abandoned: exit 0,
 *   fd 1, 2  /dev/null,
 *   fd 3  the write end of the launcher's readiness pipe,
 * in a session of its own. It forks once (the launcher reaps the parent at once; the
 * shim is adopted by init, is no session leader and so can never get a terminal) and
 * then, per run, forks its child, which becomes its own session / process group,
 * joins the leaf cgroup(s) before exec (so everything it ever starts is inside),
 * switches user and directory and execs the spec's argv (`/bin/sh -c COMMAND`, or
 * nsenter into the cell's namespaces first). Setup failures travel back through a
 * close-on-exec report pipe, so "working_dir missing" is reported as such. Once the
 * status file says how the first start went (running or failed) the readiness pipe is
 * closed; it is closed by the kernel should the shim die before.
 *
 * One poll loop reads stdout and stderr line by line into the log files (logs.c) and
 * a signalfd (SIGCHLD, SIGTERM, SIGINT); timeouts drive the restart back-off and the
 * stop grace. SIGTERM stops: SIGTERM to the child's group and the leaf, wait
 * stop_grace_s, then kill everything left in the leaf (leaf.c); exit once state
 * "stopped" is written. When the child exits by itself the rest of its leaf is killed
 * too (systemd's KillMode=control-group), so a restart never runs next to leftovers.
 *
 * The Python version of this loop was provisioner/node/shim.py (with a fork server and
 * pre-forked spares to hide its start-up cost); the behaviour is the same. */
#include "shim.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <math.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define READY_FD 3
#define DRAIN_TIMEOUT_S 2.0 /* after the leaf is empty the pipes must reach EOF */
#define KILL_TIMEOUT_S 5.0
#define LEAF_POLL_MIN_S 0.0005
#define LEAF_POLL_MAX_S 0.02

static struct spec S;
static struct status st;
static struct logwriter logw;
static struct splitter out_split, err_split;
static int ready_fd = READY_FD;
static int sig_fd = -1;
static int out_fd = -1, err_fd = -1;
static pid_t child; /* unreaped child, 0 if none: its pid (= pgid) cannot be reused */
static int stop_requested;
static int status_broken; /* the last status write failed */

static int terminal(const char *state) {
    return !strcmp(state, "exited") || !strcmp(state, "stopped") || !strcmp(state, "failed");
}

static void crash_note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void crash_note(const char *fmt, ...) {
    if (!S.crash_log || !*S.crash_log)
        return;
    int fd = open(S.crash_log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
    if (fd < 0)
        return;
    char line[2048];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line - 1, fmt, ap);
    va_end(ap);
    if (n > 0) {
        if ((size_t)n > sizeof line - 2)
            n = (int)sizeof line - 2;
        line[n++] = '\n';
        write_all(fd, line, (size_t)n);
    }
    close(fd);
}

/* When the start cannot go on: tell the launcher through the readiness pipe and exit. */
static void refuse(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3), noreturn));
static void refuse(int code, const char *fmt, ...) {
    char msg[1024] = "E";
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg + 1, sizeof msg - 1, fmt, ap);
    va_end(ap);
    write_all(READY_FD, msg, strlen(msg));
    status_discard(); /* a tmp file made ahead, unused */
    _exit(code);
}

/* Write the status (every change is written). */
static void publish(void) {
    status_broken = status_write(&S, &st) < 0;
    if (status_broken) {
        crash_note("cannot write status file %s: %s", S.status_file, strerror(errno));
        return;
    }
    if (ready_fd < 0 && !terminal(st.state))
        status_prepare(&S); /* the next write's file, made while we wait */
}

/* Tell the launcher the status file says how the first start went. */
static void ready(void) {
    if (ready_fd >= 0) {
        close(ready_fd);
        ready_fd = -1;
        if (!terminal(st.state))
            status_prepare(&S);
    }
}

static void set_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void set_error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(st.last_error, sizeof st.last_error, fmt, ap);
    va_end(ap);
}

static void kill_leaf(void) {
    char err[512];
    if (leaf_kill_all(&S, KILL_TIMEOUT_S, err, sizeof err) < 0) {
        set_error("%s", err);
        crash_note("%s", err);
    }
}

/* ---- the child, between fork and exec ----------------------------------------- */

static void report(int fd, const char *fmt, ...) __attribute__((format(printf, 2, 3), noreturn));
static void report(int fd, const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (n > 0)
        write_all(fd, msg, (size_t)n < sizeof msg ? (size_t)n : sizeof msg - 1);
    _exit(127);
}

static void become(int out_w, int err_w, int report_w) __attribute__((noreturn));
static void become(int out_w, int err_w, int report_w) {
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL); /* a blocked mask survives exec */
    signal(SIGPIPE, SIG_DFL);              /* so does an ignored disposition */
    signal(SIGHUP, SIG_DFL);
    if (setsid() < 0)
        report(report_w, "setup: setsid: %s", strerror(errno));
    int null = open("/dev/null", O_RDONLY);
    if (null < 0 || dup2(null, 0) < 0 || dup2(out_w, 1) < 0 || dup2(err_w, 2) < 0)
        report(report_w, "setup: stdio: %s", strerror(errno));
    for (int i = 0; i < S.n_leaf; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/cgroup.procs", S.leaf[i]);
        if (write_file(path, "0") < 0)
            report(report_w, "cannot join leaf cgroup %s: %s", S.leaf[i], strerror(errno));
    }
    /* Now that it is in its leaf: a cgroup namespace rooted there, so the process sees
     * itself at "/" in /proc/self/cgroup (as upstream Aurae cells). nsenter is not told
     * to enter the holder's cgroup namespace, so this one is kept. */
    if (S.unshare_cgroup && unshare(CLONE_NEWCGROUP) < 0)
        report(report_w, "cannot make a cgroup namespace: %s", strerror(errno));
    if (S.gid >= 0 && (setgroups(0, NULL) < 0 || setgid((gid_t)S.gid) < 0))
        report(report_w, "cannot switch to uid %ld gid %ld: %s", S.uid, S.gid, strerror(errno));
    if (S.uid >= 0 && setuid((uid_t)S.uid) < 0)
        report(report_w, "cannot switch to uid %ld gid %ld: %s", S.uid, S.gid, strerror(errno));
    if (S.chdir_to && chdir(S.chdir_to) < 0)
        report(report_w, "working_dir '%s': %s", S.chdir_to, strerror(errno));
    execve(S.argv[0], S.argv, S.envp);
    report(report_w, "cannot execute %s: %s", S.argv[0], strerror(errno));
}

/* ---- the shim ---------------------------------------------------------------- */

static int preflight(void) {
    if (!S.holder_pid)
        return 0;
    if (proc_start_time((pid_t)S.holder_pid) != S.holder_start_time) {
        set_error("namespace holder %ld is gone", S.holder_pid);
        return -1;
    }
    /* The holder's root shows the cell's mount namespace: check the directory there. */
    char path[4200];
    struct stat sb;
    snprintf(path, sizeof path, "/proc/%ld/root%s", S.holder_pid,
             S.working_dir ? S.working_dir : "/");
    if (stat(path, &sb) < 0 || !S_ISDIR(sb.st_mode)) {
        set_error("working_dir '%s' does not exist in the cell", S.working_dir);
        return -1;
    }
    return 0;
}

/* Start one run: 0 once the child has exec'd, else -1 with st.last_error set. */
static int spawn(void) {
    if (preflight() < 0)
        return -1;
    int out[2], err[2], rep[2];
    if (pipe2(out, O_CLOEXEC) < 0)
        goto no_pipe;
    if (pipe2(err, O_CLOEXEC) < 0) {
        close(out[0]), close(out[1]);
        goto no_pipe;
    }
    if (pipe2(rep, O_CLOEXEC) < 0) { /* close-on-exec: EOF without data = exec'd */
        close(out[0]), close(out[1]), close(err[0]), close(err[1]);
        goto no_pipe;
    }
    pid_t pid = fork();
    if (pid == 0)
        become(out[1], err[1], rep[1]);
    close(out[1]), close(err[1]), close(rep[1]);
    if (pid < 0) {
        set_error("cannot fork: %s", strerror(errno)); /* e.g. EAGAIN at a pids limit */
        close(out[0]), close(err[0]), close(rep[0]);
        return -1;
    }
    char msg[1024];
    size_t len = 0;
    for (;;) {
        ssize_t n = read(rep[0], msg + len, sizeof msg - 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0 || (len += (size_t)n) >= sizeof msg - 1)
            break;
    }
    close(rep[0]);
    if (len) {
        msg[len] = '\0';
        waitpid(pid, NULL, 0);
        close(out[0]), close(err[0]);
        set_error("%s", msg);
        return -1;
    }
    child = pid;
    out_fd = out[0];
    err_fd = err[0];
    fcntl(out_fd, F_SETFL, O_NONBLOCK);
    fcntl(err_fd, F_SETFL, O_NONBLOCK);
    st.state = "running";
    st.child_pid = pid;
    st.child_start_time = proc_start_time(pid);
    st.started_at_ns = now_ns();
    st.has_exit_code = st.has_exit_signal = 0;
    st.exited_at_ns = st.next_start_at_ns = 0;
    publish();
    return 0;
no_pipe:
    set_error("cannot make pipes: %s", strerror(errno));
    return -1;
}

static void read_pipe(int *fd, struct splitter *sp, char tag) {
    static char chunk[65536];
    ssize_t n = read(*fd, chunk, sizeof chunk);
    if (n < 0)
        return; /* EAGAIN, EINTR: poll again */
    int64_t ts = now_ns();
    if (n > 0) {
        log_feed(&logw, sp, tag, chunk, (size_t)n, ts);
        return;
    }
    log_flush(&logw, sp, tag, ts);
    close(*fd);
    *fd = -1;
}

/* One poll round (TIMEOUT_S < 0: no timeout): pipe data, signals. */
static void wait_events(double timeout_s) {
    struct pollfd fds[3] = {{sig_fd, POLLIN, 0}, {out_fd, POLLIN, 0}, {err_fd, POLLIN, 0}};
    /* Capped at a minute (the loops call again): a double past INT_MAX ms is undefined
     * as an int, and came out as -1 (wait for ever) on x86-64. */
    int ms = timeout_s < 0 ? -1 : (int)ceil(fmin(timeout_s, 60.0) * 1000);
    if (poll(fds, 3, ms) <= 0)
        return;
    if (fds[0].revents) {
        struct signalfd_siginfo si;
        while (read(sig_fd, &si, sizeof si) == (ssize_t)sizeof si)
            if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT)
                stop_requested = 1;
    }
    if (fds[1].revents && out_fd >= 0)
        read_pipe(&out_fd, &out_split, 'O');
    if (fds[2].revents && err_fd >= 0)
        read_pipe(&err_fd, &err_split, 'E');
}

/* The wait status of the child if it has exited (it is then reaped and forgotten). */
static int reap(int *wstatus) {
    if (!child || waitpid(child, wstatus, WNOHANG) != child)
        return 0;
    child = 0; /* its pid may be recycled from now on: never signal it again */
    return 1;
}

/* Wait for the running child to exit, handling a stop; returns its wait status. */
static int supervise_run(void) {
    int wstatus = 0, ended = 0, stopping = 0, settling = 0;
    double deadline = 0, poll_s = LEAF_POLL_MIN_S;
    for (;;) {
        if (!ended)
            ended = reap(&wstatus);
        if (stop_requested && !stopping) {
            stopping = 1;
            deadline = mono_s() + S.stop_grace_s;
            if (child)
                kill(-child, SIGTERM); /* its group: it is a session leader */
            leaf_signal(&S, SIGTERM);
        }
        if (ended && !stopping) {
            /* The main process ended by itself: nothing else of this run may outlive it. */
            kill_leaf();
            break;
        }
        if (ended && leaf_empty(&S))
            break; /* stopping, and everything in the leaf has gone */
        double timeout = -1, now = mono_s();
        if (stopping && now >= deadline && !ended && !settling && S.settle_s > 0) {
            /* The grace period is over, and the main process is a container runtime
             * (runc run): kill its container (the leaf's sub-cgroups) first and give it
             * SETTLE_S to exit by itself. runc then removes the container's state and
             * cgroups; killed together with it, it would leave them for a `runc
             * delete` to clear. */
            settling = 1;
            if (leaf_kill_below(&S) > 0)
                deadline = now + S.settle_s;
        }
        if (stopping && now >= deadline) {
            kill_leaf();
            if (child)
                kill(child, SIGKILL); /* a root child can move itself out of its leaf */
            timeout = LEAF_POLL_MAX_S;
        } else if (stopping && ended) {
            /* Poll the leaf: its other processes send us no SIGCHLD. Those killed with
             * the main one are usually gone within a millisecond: start short. */
            timeout = fmin(poll_s, fmax(0, deadline - now));
            poll_s = fmin(poll_s * 2, LEAF_POLL_MAX_S);
        } else if (stopping) {
            timeout = fmax(0, deadline - now);
        }
        wait_events(timeout);
    }
    double end = mono_s() + DRAIN_TIMEOUT_S;
    while ((out_fd >= 0 || err_fd >= 0) && mono_s() < end)
        wait_events(fmax(0, end - mono_s()));
    int64_t ts = now_ns(); /* a writer outside the leaf kept a pipe open: give up on it */
    if (out_fd >= 0) {
        log_flush(&logw, &out_split, 'O', ts);
        close(out_fd);
        out_fd = -1;
    }
    if (err_fd >= 0) {
        log_flush(&logw, &err_split, 'E', ts);
        close(err_fd);
        err_fd = -1;
    }
    return wstatus;
}

/* Supervise until the policy says done or a stop is requested; the exit code. */
static int run(void) {
    int step = 0, first = 1;
    double next_start = mono_s();
    for (;;) {
        while (!stop_requested && mono_s() < next_start)
            wait_events(fmax(0, next_start - mono_s()));
        if (stop_requested) {
            kill_leaf();
            st.state = "stopped";
            st.next_start_at_ns = 0;
            publish();
            return 0;
        }
        double started = mono_s();
        if (!first) {
            st.restart_count++;
            publish();
        }
        int failed_start = spawn() < 0;
        if (failed_start && first) {
            st.state = "failed";
            publish();
            if (status_broken)
                refuse(1, "cannot start %s: %s (and cannot write status file %s)", S.name,
                       st.last_error, S.status_file);
            return 1;
        }
        if (first && status_broken) { /* nobody could learn what runs: do not run it */
            if (child)
                kill(-child, SIGKILL);
            kill_leaf();
            refuse(1, "cannot write status file %s", S.status_file);
        }
        if (first)
            ready();
        int code = 127, sig = 0;
        if (!failed_start) {
            int ws = supervise_run();
            code = WIFEXITED(ws) ? WEXITSTATUS(ws) : -1;
            sig = WIFSIGNALED(ws) ? WTERMSIG(ws) : 0;
        }
        st.has_exit_code = code >= 0;
        st.exit_code = code;
        st.has_exit_signal = sig != 0;
        st.exit_signal = sig;
        st.exited_at_ns = now_ns();
        first = 0;
        if (stop_requested) {
            st.state = "stopped";
            publish();
            return 0;
        }
        int failed = sig != 0 || code != 0;
        if (S.restart_policy == RESTART_NEVER || (S.restart_policy == RESTART_ON_FAILURE && !failed)) {
            st.state = "exited";
            publish();
            return 0;
        }
        if (mono_s() - started >= S.backoff_reset_s)
            step = 0;
        double delay = fmin(S.backoff_cap_s, S.backoff_base_s * ldexp(1.0, step < 60 ? step : 60));
        step++;
        next_start = mono_s() + delay;
        st.state = "backoff";
        st.next_start_at_ns = now_ns() + (int64_t)(delay * 1e9);
        publish();
    }
}

/* The spec, read from fd 0 (a pipe) to EOF; NULL with *LEN 0 if the launcher closed it
 * without sending one (it gave up on this launch). */
static char *read_spec(size_t *len) {
    size_t cap = 8192, got = 0;
    char *buf = malloc(cap);
    while (buf) {
        if (got == cap) {
            if (cap >= (64u << 20)) { /* far beyond any real spec */
                errno = EFBIG;
                break;
            }
            char *grown = realloc(buf, cap *= 2);
            if (!grown)
                break;
            buf = grown;
        }
        ssize_t n = read(0, buf + got, cap - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            break;
        if (n == 0) {
            *len = got;
            return buf;
        }
        got += (size_t)n;
    }
    free(buf);
    *len = 0;
    return NULL;
}

int main(int argc, char **argv) {
    if (argc > 2 || fcntl(READY_FD, F_GETFD) < 0) {
        fprintf(stderr, "provisioner-shim is started by the provisioner's node layer "
                        "(spec on fd 0, readiness pipe on fd 3, optional RUN_DIR)\n");
        return 64;
    }
    signal(SIGPIPE, SIG_IGN); /* a launcher that has gone: EPIPE, not death */
    close_range(READY_FD + 1, ~0U, 0); /* nothing of the launcher's leaks into us */
    if (argc == 2) /* the first status file's inode, made while the launcher works */
        status_premake(argv[1]);
    size_t len = 0;
    char *raw = read_spec(&len);
    if (!raw)
        refuse(2, "cannot read the launch spec on fd 0: %s", strerror(errno));
    if (len == 0) { /* the launcher gave up before sending a spec: nothing to do */
        status_discard();
        return 0;
    }
    char err[512];
    if (spec_parse(&S, raw, len, err, sizeof err) < 0)
        refuse(2, "%s", err);
    pid_t pid = fork();
    if (pid < 0)
        refuse(1, "cannot fork the shim: %s", strerror(errno));
    if (pid > 0)
        _exit(0); /* the launcher reaps this parent at once; the shim lives on */

    char comm[16];
    snprintf(comm, sizeof comm, "shim:%s", S.name);
    prctl(PR_SET_NAME, comm);
    int null = open("/dev/null", O_RDONLY);
    if (null >= 0) {
        dup2(null, 0);
        close(null);
    }
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGCHLD);
    sigprocmask(SIG_BLOCK, &mask, NULL);
    signal(SIGHUP, SIG_IGN);
    sig_fd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
    if (sig_fd < 0)
        refuse(1, "signalfd: %s", strerror(errno));
    fcntl(READY_FD, F_SETFD, FD_CLOEXEC); /* our child must not hold it past its exec */

    char run_dir[4096];
    snprintf(run_dir, sizeof run_dir, "%s", S.status_file);
    char *slash = strrchr(run_dir, '/');
    if (slash && slash != run_dir) {
        *slash = '\0';
        make_dirs(run_dir);
    }
    status_init(&S);
    log_init(&logw, &S);
    out_split.max = err_split.max = (size_t)S.log_max_line_bytes;
    st.state = "starting";
    int code = run();
    status_discard();
    log_close(&logw);
    return code;
}
