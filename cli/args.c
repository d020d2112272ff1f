// args.c — the argument helpers shared by every subcommand: strict numeric parsing with ranges.
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "cli.h"
#include "core/core.h"

bool cli_int(const char *cmd, const char *flag, const char *val, long lo, long hi, long *out) {
    char *end;
    errno = 0;
    long v = strtol(val, &end, 10);
    if (errno || end == val || *end || v < lo || v > hi) {
        fprintf(stderr, "llmlab %s: %s expects an integer in [%ld, %ld], got '%s'\n", cmd, flag, lo, hi, val);
        return false;
    }
    *out = v;
    return true;
}

bool cli_float(const char *cmd, const char *flag, const char *val, double lo, double hi, double *out) {
    char *end;
    errno = 0;
    double v = strtod(val, &end);
    if (errno || end == val || *end || !(v >= lo && v <= hi)) {
        fprintf(stderr, "llmlab %s: %s expects a number in [%g, %g], got '%s'\n", cmd, flag, lo, hi, val);
        return false;
    }
    *out = v;
    return true;
}

bool cli_u64(const char *cmd, const char *flag, const char *val, uint64_t *out) {
    char *end;
    errno = 0;
    if (*val == '-') goto bad;
    unsigned long long v = strtoull(val, &end, 10);
    if (errno || end == val || *end) goto bad;
    *out = v;
    return true;
bad:
    fprintf(stderr, "llmlab %s: %s expects a non-negative integer, got '%s'\n", cmd, flag, val);
    return false;
}

const char *cli_value(const char *cmd, int argc, char **argv, int *i) {
    if (*i + 1 >= argc) {
        fprintf(stderr, "llmlab %s: %s needs a value (see llmlab %s --help)\n", cmd, argv[*i], cmd);
        return NULL;
    }
    return argv[++*i];
}

int cli_fail(const char *cmd, const ll_error *err) {
    fprintf(stderr, "llmlab %s: %s\n", cmd, err->message[0] ? err->message : ll_status_name(err->status));
    return 1;
}

bool cli_threads(const char *cmd, const char *flag, const char *val, int *out) {
    long v;
    if (!cli_int(cmd, flag, val, 1, 1 << 20, &v)) return false;
    int allowed = ll_sys_allowed_cpus(), max = ll_sys_max_threads();
    if (v > max) {
        fprintf(stderr,
                "llmlab %s: %s %ld is too many: this process may use %d CPU%s (affinity and cgroup quota), and more "
                "than %d threads only slows it down; leave %s out for %d\n",
                cmd, flag, v, allowed, allowed == 1 ? "" : "s", max, flag, ll_sys_default_threads());
        return false;
    }
    static bool warned;
    if (v > allowed && !warned) {
        warned = true;
        fprintf(stderr,
                "llmlab %s: warning: %s %ld is more than the %d CPU%s this process may use; the work is cut in %ld "
                "parts but runs on %d thread%s\n",
                cmd, flag, v, allowed, allowed == 1 ? "" : "s", v, allowed, allowed == 1 ? "" : "s");
    }
    *out = (int)v;
    return true;
}

int cli_default_threads(int n) { return n > 0 ? n : ll_sys_default_threads(); }
