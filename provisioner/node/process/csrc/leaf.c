/* The executable's leaf cgroup(s): list the processes, kill them all.
 * Same rules as provisioner/node/process/leaf.py (read its docstring): on v2 cgroup.kill (or
 * freeze, SIGKILL everyone, thaw); on v1 freeze through the freezer hierarchy, SIGKILL
 * every member of every directory, thaw. A frozen task cannot fork, so the list is
 * final.
 *
 * "The leaf" includes its sub-cgroups: a container runtime (runc) puts the container
 * one cgroup below the leaf (<leaf>/ctr), and a root process could otherwise escape a
 * stop by making a sub-cgroup of its own. The v1 freezer and v2 cgroup.kill / freeze
 * act on the whole subtree; the listing descends into it. */
#include "shim.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define PROCS_BUF (1 << 16)
#define MAX_DEPTH 32 /* sub-cgroups below a leaf; deeper ones are not looked at */
#define PATH_CAP 4096

/* Call FN(PATH, ARG) for every sub-cgroup of PATH (a PATH_CAP buffer holding LEN
 * bytes, restored on return), parents before their children; stop at FN's first
 * negative result and return it. A kernfs directory's link count is 2 + its number of
 * subdirectories, so a leaf without any (the usual case) costs one stat, no listing. */
static int each_subdir(char *path, size_t len, int depth,
                       int (*fn)(const char *path, void *arg), void *arg) {
    struct stat sb;
    if (depth >= MAX_DEPTH || stat(path, &sb) < 0 || sb.st_nlink <= 2)
        return 0;
    DIR *d = opendir(path);
    if (!d)
        return 0; /* removed meanwhile: it holds nothing */
    int rc = 0;
    struct dirent *e;
    while (rc >= 0 && (e = readdir(d)) != NULL) {
        const char *name = e->d_name;
        if (name[0] == '.' && (!name[1] || (name[1] == '.' && !name[2])))
            continue;
        size_t n = strlen(name);
        if (len + 1 + n >= PATH_CAP)
            continue;
        path[len] = '/';
        memcpy(path + len + 1, name, n + 1);
        struct stat cs;
        int is_dir = e->d_type == DT_DIR ||
                     (e->d_type == DT_UNKNOWN && lstat(path, &cs) == 0 && S_ISDIR(cs.st_mode));
        if (is_dir) {
            rc = fn(path, arg);
            if (rc >= 0)
                rc = each_subdir(path, len + 1 + n, depth + 1, fn, arg);
        }
        path[len] = '\0';
    }
    closedir(d);
    return rc;
}

struct pid_list { pid_t *out; int n, cap; };

static void set_frozen(const struct spec *s, int frozen);

/* Add the pids of DIR's cgroup.procs to the list; -1 when it is full. */
static int add_procs(const char *dir, void *arg) {
    static char text[PROCS_BUF];
    struct pid_list *l = arg;
    char path[PATH_CAP + 16];
    snprintf(path, sizeof path, "%s/cgroup.procs", dir);
    if (read_file(path, text, sizeof text) < 0)
        return 0; /* a removed directory holds nothing */
    for (char *p = text; *p;) {
        char *end;
        long pid = strtol(p, &end, 10);
        if (end == p)
            break;
        p = end;
        int seen = 0;
        for (int k = 0; k < l->n; k++)
            seen |= l->out[k] == (pid_t)pid;
        if (!seen) {
            if (l->n >= l->cap)
                return -1;
            l->out[l->n++] = (pid_t)pid;
        }
    }
    return 0;
}

/* Add the members of every leaf directory to TOP and those of their sub-cgroups to
 * SUB (one list for both: all of them); -1 as soon as a list is full. */
static int collect(const struct spec *s, struct pid_list *top, struct pid_list *sub) {
    for (int i = 0; i < s->n_leaf; i++) {
        char path[PATH_CAP];
        size_t len = strlen(s->leaf[i]);
        if (len >= PATH_CAP)
            continue;
        memcpy(path, s->leaf[i], len + 1);
        if (add_procs(path, top) < 0 || each_subdir(path, len, 0, add_procs, sub) < 0)
            return -1;
    }
    return 0;
}

static int can_freeze(const struct spec *s) {
    return s->leaf_v2 || s->freezer_dir != NULL;
}

int leaf_pids(const struct spec *s, pid_t *out, int cap) {
    struct pid_list l = {out, 0, cap};
    return collect(s, &l, &l) < 0 ? -1 : l.n;
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

/* SIGKILL what runs in the leaf's sub-cgroups and not in the leaf itself (a
 * container below the runtime that supervises it), frozen meanwhile where a freezer
 * is, so that the container cannot fork past it; the runtime is left to notice. */
int leaf_kill_below(const struct spec *s) {
    static pid_t own[8192], below[8192];
    struct pid_list top = {own, 0, 8192}, sub = {below, 0, 8192};
    if (can_freeze(s))
        set_frozen(s, 1);
    collect(s, &top, &sub); /* a full list only leaves some for the leaf-wide kill */
    int killed = 0;
    for (int i = 0; i < sub.n; i++) {
        int in_leaf = 0;
        for (int k = 0; k < top.n && !in_leaf; k++)
            in_leaf = own[k] == below[i];
        if (!in_leaf && kill(below[i], SIGKILL) == 0)
            killed++;
    }
    if (can_freeze(s))
        set_frozen(s, 0);
    return killed;
}

static int thaw_v1(const char *dir, void *arg) {
    (void)arg;
    char path[PATH_CAP + 16];
    snprintf(path, sizeof path, "%s/freezer.state", dir);
    write_file(path, "THAWED");
    return 0;
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
        if (write_file(path, frozen ? "FROZEN" : "THAWED") < 0)
            return;
        if (!frozen) {
            /* A v1 sub-cgroup frozen by itself stays frozen when its parent thaws,
             * and its tasks would never die of their SIGKILL: thaw them all. */
            char sub[PATH_CAP];
            size_t len = strlen(s->freezer_dir);
            if (len < PATH_CAP) {
                memcpy(sub, s->freezer_dir, len + 1);
                each_subdir(sub, len, 0, thaw_v1, NULL);
            }
            return;
        }
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
    int frozen = can_freeze(s);
    if (frozen)
        set_frozen(s, 1);
    int n = leaf_pids(s, pids, 8192);
    if (n < 0)
        n = 8192; /* the rest in the next round */
    for (int i = 0; i < n; i++)
        kill(pids[i], SIGKILL);
    if (frozen)
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
