/* The executable's leaf cgroup(s): list the processes, kill them all.
 * Same rules as provisioner/node/leaf.py (read its docstring): on v2 cgroup.kill (or
 * freeze, SIGKILL everyone, thaw); on v1 freeze through the freezer hierarchy, SIGKILL
 * every member of every directory, thaw. A frozen task cannot fork, so the list is
 * final. */
#include "shim.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PROCS_BUF (1 << 16)

int leaf_pids(const struct spec *s, pid_t *out, int cap) {
    static char text[PROCS_BUF];
    int n = 0;
    for (int i = 0; i < s->n_leaf; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/cgroup.procs", s->leaf[i]);
        if (read_file(path, text, sizeof text) < 0)
            continue; /* a removed directory holds nothing */
        for (char *p = text; *p;) {
            char *end;
            long pid = strtol(p, &end, 10);
            if (end == p)
                break;
            p = end;
            int seen = 0;
            for (int k = 0; k < n; k++)
                seen |= out[k] == (pid_t)pid;
            if (!seen) {
                if (n >= cap)
                    return -1;
                out[n++] = (pid_t)pid;
            }
        }
    }
    return n;
}

int leaf_empty(const struct spec *s) {
    pid_t pids[1];
    return leaf_pids(s, pids, 1) == 0;
}

void leaf_signal(const struct spec *s, int sig) {
    static pid_t pids[8192];
    int n = leaf_pids(s, pids, 8192);
    if (n < 0)
        n = 8192;
    for (int i = 0; i < n; i++)
        kill(pids[i], sig);
}

/* Freeze (or thaw) through FILE, writing ON / OFF; when freezing, wait (bounded) for
 * the state file to say it is done. A freeze that never settles (a task stuck in D
 * state) only makes the kill less atomic, so it is not an error. */
static void set_frozen(const struct spec *s, int frozen) {
    char path[4096], state[256];
    if (s->leaf_v2) {
        snprintf(path, sizeof path, "%s/cgroup.freeze", s->leaf[0]);
        if (write_file(path, frozen ? "1" : "0") < 0 || !frozen)
            return;
        snprintf(path, sizeof path, "%s/cgroup.events", s->leaf[0]);
    } else {
        snprintf(path, sizeof path, "%s/freezer.state", s->freezer_dir);
        if (write_file(path, frozen ? "FROZEN" : "THAWED") < 0 || !frozen)
            return;
    }
    double deadline = mono_s() + 1.0;
    while (mono_s() < deadline) {
        if (read_file(path, state, sizeof state) < 0)
            return;
        if (s->leaf_v2 ? strstr(state, "frozen 1") != NULL : !strncmp(state, "FROZEN", 6))
            return;
        sleep_s(0.002);
    }
}

/* One freeze / SIGKILL everyone / thaw pass (or one cgroup.kill write). */
static void kill_round(const struct spec *s) {
    static pid_t pids[8192];
    if (s->leaf_v2) {
        char path[4096];
        snprintf(path, sizeof path, "%s/cgroup.kill", s->leaf[0]);
        if (access(path, F_OK) == 0) {
            write_file(path, "1");
            return;
        }
    }
    int can_freeze = s->leaf_v2 || s->freezer_dir != NULL;
    if (can_freeze)
        set_frozen(s, 1);
    int n = leaf_pids(s, pids, 8192);
    if (n < 0)
        n = 8192; /* the rest in the next round */
    for (int i = 0; i < n; i++)
        kill(pids[i], SIGKILL);
    if (can_freeze)
        set_frozen(s, 0); /* always: a frozen leaf would hang its processes forever */
}

int leaf_kill_all(const struct spec *s, double timeout_s, char *err, size_t errlen) {
    static pid_t pids[64];
    double deadline = mono_s() + timeout_s, next_round = 0;
    for (;;) {
        int n = leaf_pids(s, pids, 64);
        if (n == 0)
            return 0;
        double now = mono_s();
        if (now >= deadline) {
            int len = snprintf(err, errlen, "processes survived kill in %s:", s->leaf[0]);
            for (int i = 0; i < (n < 0 ? 64 : n) && len > 0 && (size_t)len < errlen; i++)
                len += snprintf(err + len, errlen - (size_t)len, " %d", (int)pids[i]);
            return -1;
        }
        if (now >= next_round) {
            next_round = now + 0.1; /* dying tasks take a moment to leave the list */
            kill_round(s);
        }
        sleep_s(0.002);
    }
}
