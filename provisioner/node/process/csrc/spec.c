/* The launch spec: NUL-terminated key / value pairs ("key\0value\0..."), list keys
 * repeated. Written by provisioner/node/process/shimspec.py (native_spec_bytes). */
#include "shim.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int number(const char *key, const char *text, double *out, char *err, size_t errlen) {
    char *end;
    errno = 0;
    double v = strtod(text, &end);
    if (errno || end == text || *end || v < 0) {
        snprintf(err, errlen, "spec: bad number for %s: %s", key, text);
        return -1;
    }
    *out = v;
    return 0;
}

static int integer(const char *key, const char *text, long long *out, char *err,
                   size_t errlen) {
    char *end;
    errno = 0;
    long long v = strtoll(text, &end, 10);
    if (errno || end == text || *end || v < 0) {
        snprintf(err, errlen, "spec: bad integer for %s: %s", key, text);
        return -1;
    }
    *out = v;
    return 0;
}

static int append(char ***list, int *n, char *value) {
    char **grown = realloc(*list, sizeof(char *) * (size_t)(*n + 2));
    if (!grown)
        return -1;
    grown[(*n)++] = value;
    grown[*n] = NULL;
    *list = grown;
    return 0;
}

int spec_parse(struct spec *s, char *buf, size_t len, char *err, size_t errlen) {
    memset(s, 0, sizeof *s);
    s->uid = s->gid = -1;
    s->log_max_bytes = 8 << 20;
    s->log_keep = 3;
    s->log_max_line_bytes = 16 << 10;
    s->backoff_base_s = 1.0;
    s->backoff_cap_s = 60.0;
    s->backoff_reset_s = 10.0;
    s->launch_id = s->crash_log = "";
    int n_argv = 0, n_env = 0;
    int have_grace = 0, have_policy = 0;
    if (len == 0 || buf[len - 1] != '\0') {
        snprintf(err, errlen, "spec: empty or not NUL-terminated");
        return -1;
    }
    char *p = buf, *end = buf + len;
    while (p < end) {
        char *key = p;
        p += strlen(p) + 1;
        if (p >= end) {
            snprintf(err, errlen, "spec: key %s has no value", key);
            return -1;
        }
        char *value = p;
        p += strlen(p) + 1;
        long long iv;
        if (!strcmp(key, "name"))
            s->name = value;
        else if (!strcmp(key, "status_file"))
            s->status_file = value;
        else if (!strcmp(key, "log_dir"))
            s->log_dir = value;
        else if (!strcmp(key, "launch_id"))
            s->launch_id = value;
        else if (!strcmp(key, "crash_log"))
            s->crash_log = value;
        else if (!strcmp(key, "working_dir"))
            s->working_dir = value;
        else if (!strcmp(key, "chdir"))
            s->chdir_to = value;
        else if (!strcmp(key, "freezer_dir"))
            s->freezer_dir = value;
        else if (!strcmp(key, "leaf")) {
            if (s->n_leaf >= MAX_LIST) {
                snprintf(err, errlen, "spec: too many leaf directories");
                return -1;
            }
            s->leaf[s->n_leaf++] = value;
        } else if (!strcmp(key, "leaf_v2"))
            s->leaf_v2 = !strcmp(value, "1");
        else if (!strcmp(key, "unshare_cgroup"))
            s->unshare_cgroup = !strcmp(value, "1");
        else if (!strcmp(key, "argv")) {
            if (append(&s->argv, &n_argv, value) < 0)
                goto oom;
        } else if (!strcmp(key, "env")) {
            if (append(&s->envp, &n_env, value) < 0)
                goto oom;
        } else if (!strcmp(key, "stop_grace_s")) {
            s->stop_grace_text = value;
            have_grace = 1;
            if (number(key, value, &s->stop_grace_s, err, errlen) < 0)
                return -1;
        } else if (!strcmp(key, "settle_s")) {
            if (number(key, value, &s->settle_s, err, errlen) < 0)
                return -1;
        } else if (!strcmp(key, "backoff_base_s")) {
            if (number(key, value, &s->backoff_base_s, err, errlen) < 0)
                return -1;
        } else if (!strcmp(key, "backoff_cap_s")) {
            if (number(key, value, &s->backoff_cap_s, err, errlen) < 0)
                return -1;
        } else if (!strcmp(key, "backoff_reset_s")) {
            if (number(key, value, &s->backoff_reset_s, err, errlen) < 0)
                return -1;
        } else if (!strcmp(key, "restart_policy")) {
            have_policy = 1;
            if (!strcmp(value, "never"))
                s->restart_policy = RESTART_NEVER;
            else if (!strcmp(value, "on-failure"))
                s->restart_policy = RESTART_ON_FAILURE;
            else if (!strcmp(value, "always"))
                s->restart_policy = RESTART_ALWAYS;
            else {
                snprintf(err, errlen, "spec: bad restart policy %s", value);
                return -1;
            }
        } else if (!strcmp(key, "uid") || !strcmp(key, "gid") ||
                   !strcmp(key, "holder_pid")) {
            if (integer(key, value, &iv, err, errlen) < 0)
                return -1;
            if (key[0] == 'u')
                s->uid = (long)iv;
            else if (key[0] == 'g')
                s->gid = (long)iv;
            else
                s->holder_pid = (long)iv;
        } else if (!strcmp(key, "holder_start_time")) {
            if (integer(key, value, &iv, err, errlen) < 0)
                return -1;
            s->holder_start_time = (unsigned long long)iv;
        } else if (!strcmp(key, "log_max_bytes")) {
            if (integer(key, value, &s->log_max_bytes, err, errlen) < 0)
                return -1;
        } else if (!strcmp(key, "log_keep")) {
            if (integer(key, value, &s->log_keep, err, errlen) < 0)
                return -1;
        } else if (!strcmp(key, "log_max_line_bytes")) {
            if (integer(key, value, &s->log_max_line_bytes, err, errlen) < 0)
                return -1;
        } else {
            snprintf(err, errlen, "spec: unknown key %s", key);
            return -1;
        }
    }
    const char *missing = !s->name ? "name" : !s->status_file ? "status_file"
                        : !s->log_dir ? "log_dir" : !n_argv ? "argv"
                        : !s->n_leaf ? "leaf" : !have_grace ? "stop_grace_s"
                        : !have_policy ? "restart_policy" : NULL;
    if (missing) {
        snprintf(err, errlen, "spec: %s missing", missing);
        return -1;
    }
    /* Never trust a number past its limit (NaN compares false: clamped too). */
    if (!(s->stop_grace_s <= MAX_STOP_GRACE_S)) {
        s->stop_grace_s = MAX_STOP_GRACE_S;
        s->stop_grace_text = MAX_STOP_GRACE_TEXT;
    }
    if (!(s->settle_s <= MAX_SETTLE_S))
        s->settle_s = MAX_SETTLE_S;
    if (!(s->backoff_base_s <= MAX_BACKOFF_S))
        s->backoff_base_s = MAX_BACKOFF_S;
    if (!(s->backoff_cap_s <= MAX_BACKOFF_S))
        s->backoff_cap_s = MAX_BACKOFF_S;
    if (!(s->backoff_reset_s <= MAX_BACKOFF_S))
        s->backoff_reset_s = MAX_BACKOFF_S;
    if (s->log_keep > MAX_LOG_FILES_KEPT)
        s->log_keep = MAX_LOG_FILES_KEPT;
    if (s->log_max_line_bytes > MAX_LOG_LINE_BYTES || s->log_max_bytes > MAX_LOG_FILE_BYTES) {
        snprintf(err, errlen, "spec: log limits above %lld bytes per file or %lld per line",
                 MAX_LOG_FILE_BYTES, MAX_LOG_LINE_BYTES);
        return -1;
    }
    if (s->log_max_line_bytes < 16 || s->log_max_bytes < 4 * s->log_max_line_bytes + 64) {
        snprintf(err, errlen, "spec: bad log limits");
        return -1;
    }
    if (!s->envp && append(&s->envp, &n_env, NULL) < 0) /* an empty environment */
        goto oom;
    return 0;
oom:
    snprintf(err, errlen, "spec: out of memory");
    return -1;
}
