// cpus.c — how many CPUs this process may use: the affinity mask (taskset, cpusets) capped by a cgroup CPU
// quota (containers, CI runners), and the thread counts derived from it (see core.h).
#include "core/core.h"

#include <math.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// Reads the first line of root/dir/name into buf; false when absent.
static bool read_line(const char *root, const char *dir, const char *name, char *buf, size_t cap) {
    char path[1024];
    if (snprintf(path, sizeof path, "%s%s/%s", root, dir, name) >= (int)sizeof path) return false;
    FILE *f = fopen(path, "r");
    if (!f) return false;
    bool ok = fgets(buf, (int)cap, f) != NULL;
    fclose(f);
    return ok;
}

// CPUs granted by one cgroup directory's quota, 0 = no limit there. v2: cpu.max "QUOTA PERIOD" or "max PERIOD";
// v1: cpu.cfs_quota_us (-1 = none) and cpu.cfs_period_us. A fractional quota rounds up (1.5 CPUs -> 2).
static int quota_at(const char *root, const char *dir, bool v2) {
    char a[128], b[128];
    long long quota = -1, period = 0;
    if (v2) {
        if (!read_line(root, dir, "cpu.max", a, sizeof a)) return 0;
        if (!strncmp(a, "max", 3) || sscanf(a, "%lld %lld", &quota, &period) != 2) return 0;
    } else {
        if (!read_line(root, dir, "cpu.cfs_quota_us", a, sizeof a) || !read_line(root, dir, "cpu.cfs_period_us", b, sizeof b))
            return 0;
        quota = atoll(a);
        period = atoll(b);
    }
    if (quota <= 0 || period <= 0) return 0;
    double n = ceil((double)quota / (double)period);
    return n > 1024 ? 1024 : (int)n;
}

// The tightest quota on dir and each of its parents (a parent's quota also binds its children).
static int quota_up(const char *root, const char *dir, bool v2) {
    char d[512];
    snprintf(d, sizeof d, "%s", dir);
    int best = 0;
    for (;;) {
        int q = quota_at(root, d, v2);
        if (q > 0 && (best == 0 || q < best)) best = q;
        char *slash = strrchr(d, '/');
        if (!slash || d[0] == 0) break;
        *slash = 0; // "/a/b" -> "/a" -> "" (the root itself)
    }
    return best;
}

int ll_sys_cgroup_cpus_at(const char *root, const char *proc_self_cgroup) {
    FILE *f = fopen(proc_self_cgroup, "r");
    char line[1024];
    int best = 0;
    char rootbuf[512];
    while (f && fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = 0;
        // "0::/path" (v2) or "N:cpu,cpuacct:/path" (v1)
        char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        if (!c2) continue;
        *c2 = 0;
        const char *ctrls = c1 + 1, *path = c2 + 1;
        int q = 0;
        if (!*ctrls) {
            snprintf(rootbuf, sizeof rootbuf, "%s", root);
            q = quota_up(rootbuf, path, true); // ends at the root: a namespaced cgroup shows as "/"
        } else {
            bool cpu = false;
            char cl[256], *save = NULL;
            snprintf(cl, sizeof cl, "%s", ctrls);
            for (char *t = strtok_r(cl, ",", &save); t; t = strtok_r(NULL, ",", &save)) cpu |= !strcmp(t, "cpu");
            if (!cpu) continue;
            static const char *const mounts[] = {"/cpu", "/cpu,cpuacct", "/cpuacct,cpu"};
            for (int i = 0; i < 3 && !q; i++) {
                snprintf(rootbuf, sizeof rootbuf, "%s%s", root, mounts[i]);
                q = quota_up(rootbuf, path, false);
            }
        }
        if (q > 0 && (best == 0 || q < best)) best = q;
    }
    if (f) fclose(f);
    return best;
}

// Not cached: a test (or the program) may change its affinity; this reads a few small files.
int ll_sys_allowed_cpus(void) {
    int n = ll_sys_logical_cores();
#if defined(__linux__)
    cpu_set_t *set = CPU_ALLOC(4096);
    size_t sz = CPU_ALLOC_SIZE(4096);
    if (set && sched_getaffinity(0, sz, set) == 0) {
        int c = CPU_COUNT_S(sz, set);
        if (c > 0) n = c;
    }
    if (set) CPU_FREE(set);
    int q = ll_sys_cgroup_cpus_at("/sys/fs/cgroup", "/proc/self/cgroup");
    if (q > 0 && q < n) n = q;
#endif
    return n < 1 ? 1 : n;
}

int ll_sys_default_threads(void) {
    int phys = ll_sys_physical_cores(), allowed = ll_sys_allowed_cpus();
    return phys < allowed ? phys : allowed;
}

int ll_sys_max_threads(void) {
    int n = 4 * ll_sys_allowed_cpus();
    return n > 1024 ? 1024 : n;
}
