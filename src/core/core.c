// core.c — errors, checked allocation, read-only file maps, logging, time, machine memory facts and the
// progress bar (see core.h).
#include "core/core.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#if defined(__APPLE__)
#include <sys/sysctl.h>
#endif

const char *ll_status_name(ll_status s) {
    switch (s) {
    case LL_OK: return "ok";
    case LL_ERR_IO: return "i/o error";
    case LL_ERR_FORMAT: return "malformed input";
    case LL_ERR_MISSING: return "missing";
    case LL_ERR_UNSUPPORTED: return "not supported";
    case LL_ERR_NOMEM: return "out of memory";
    case LL_ERR_ARG: return "bad argument";
    case LL_ERR_INTERRUPTED: return "interrupted";
    case LL_ERR_INTERNAL: return "internal error";
    }
    return "unknown status";
}

ll_status ll_err_set(ll_error *err, ll_status s, const char *fmt, ...) {
    if (err) {
        err->status = s;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->message, sizeof err->message, fmt, ap);
        va_end(ap);
    }
    return s;
}

void ll_err_prefix(ll_error *err, const char *fmt, ...) {
    if (!err) return;
    char pre[512], old[sizeof err->message];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(pre, sizeof pre, fmt, ap);
    va_end(ap);
    memcpy(old, err->message, sizeof old);
    snprintf(err->message, sizeof err->message, "%s%s", pre, old);
}

_Noreturn void ll_panic(const char *file, int line, const char *what) {
    fprintf(stderr, "llmlab: internal error at %s:%d: %s\n(this is a bug in llmlab; please report it)\n", file,
            line, what);
    fflush(stderr);
    abort();
}

void *ll_malloc(size_t n, ll_error *err) {
    void *p = malloc(n ? n : 1);
    if (!p) ll_err_set(err, LL_ERR_NOMEM, "could not allocate %zu bytes", n);
    return p;
}

void *ll_calloc(size_t n, size_t size, ll_error *err) {
    size_t total;
    if (!ll_mul_ok(n, size, &total)) {
        ll_err_set(err, LL_ERR_NOMEM, "allocation of %zu x %zu bytes overflows", n, size);
        return NULL;
    }
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) ll_err_set(err, LL_ERR_NOMEM, "could not allocate %zu bytes", total);
    return p;
}

void *ll_aligned_alloc(size_t n, size_t align, ll_error *err) {
    void *p = NULL;
    if (posix_memalign(&p, align, n ? n : align) != 0) {
        ll_err_set(err, LL_ERR_NOMEM, "could not allocate %zu bytes", n);
        return NULL;
    }
    return p;
}

void ll_aligned_free(void *p) { free(p); }

char *ll_strndup(const char *s, size_t n) {
    char *d = malloc(n + 1);
    LL_ASSERT(d != NULL);
    memcpy(d, s, n);
    d[n] = 0;
    return d;
}

char *ll_strdup(const char *s) { return ll_strndup(s, strlen(s)); }

// ---- maps ---------------------------------------------------------------------------------------------
ll_status ll_map_open(ll_map **out, const char *path, ll_error *err) {
    *out = NULL;
    // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer forever (no effect on files)
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) return ll_err_set(err, LL_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return ll_err_set(err, LL_ERR_IO, "%s: cannot stat: %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return ll_err_set(err, LL_ERR_IO, "%s: not a regular file (%s); give a model file", path,
                          S_ISDIR(st.st_mode) ? "a directory" : S_ISFIFO(st.st_mode) ? "a pipe" : "a device or socket");
    }
    ll_map *m = calloc(1, sizeof *m);
    if (!m) { close(fd); return ll_err_set(err, LL_ERR_NOMEM, "out of memory mapping %s", path); }
    m->size = (size_t)st.st_size;
    m->path = ll_strdup(path);
    if (m->size > 0) {
        void *p = mmap(NULL, m->size, PROT_READ, MAP_SHARED, fd, 0);
        if (p == MAP_FAILED) {
            int e = errno;
            close(fd);
            free(m->path);
            free(m);
            return ll_err_set(err, LL_ERR_IO, "%s: cannot map %llu bytes: %s", path, (unsigned long long)st.st_size,
                              strerror(e));
        }
        m->data = p;
    }
    close(fd);
    *out = m;
    return LL_OK;
}

void ll_map_free(ll_map *m) {
    if (!m) return;
    if (m->data) munmap((void *)m->data, m->size);
    free(m->path);
    free(m);
}

bool ll_same_file(const char *a, const char *b) {
    struct stat sa, sb;
    return a && b && stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

void ll_map_prefetch(const ll_map *m) {
    if (m && m->data) madvise((void *)m->data, m->size, MADV_WILLNEED);
}

// ---- logging ------------------------------------------------------------------------------------------
static ll_log_level g_log_level = LL_LOG_WARN; // the one global: the log sink's level

void ll_log_set_level(ll_log_level lvl) { g_log_level = lvl; }
ll_log_level ll_log_get_level(void) { return g_log_level; }

void ll_log(ll_log_level lvl, const char *fmt, ...) {
    if (lvl > g_log_level) return;
    static const char *const tag[] = {"error: ", "warning: ", "", ""};
    fputs(tag[lvl], stderr);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

// ---- time ---------------------------------------------------------------------------------------------
double ll_time_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

// ---- machine facts ------------------------------------------------------------------------------------
int ll_sys_logical_cores(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

int ll_sys_physical_cores(void) {
#if defined(__APPLE__)
    int n = 0;
    size_t len = sizeof n;
    if (sysctlbyname("hw.physicalcpu", &n, &len, NULL, 0) == 0 && n > 0) return n;
    return ll_sys_logical_cores();
#else
    // Count distinct (physical id, core id) pairs in /proc/cpuinfo; fall back to logical cores.
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return ll_sys_logical_cores();
    char line[256];
    int phys = -1, n = 0;
    int seen[1024][2];
    while (fgets(line, sizeof line, f)) {
        int v;
        if (sscanf(line, "physical id : %d", &v) == 1) phys = v;
        else if (sscanf(line, "core id : %d", &v) == 1) {
            bool dup = false;
            for (int i = 0; i < n; i++) dup |= seen[i][0] == phys && seen[i][1] == v;
            if (!dup && n < 1024) { seen[n][0] = phys; seen[n][1] = v; n++; }
        }
    }
    fclose(f);
    int logical = ll_sys_logical_cores();
    return n > 0 && n <= logical ? n : logical;
#endif
}

static uint64_t meminfo_kb(const char *key) {
    FILE *f = fopen("/proc/meminfo", "r");
    if (!f) return 0;
    char line[256];
    size_t kl = strlen(key);
    uint64_t v = 0;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, key, kl) == 0 && line[kl] == ':') {
            v = strtoull(line + kl + 1, NULL, 10);
            break;
        }
    }
    fclose(f);
    return v;
}

uint64_t ll_sys_mem_total(void) {
#if defined(__APPLE__)
    uint64_t n = 0;
    size_t len = sizeof n;
    sysctlbyname("hw.memsize", &n, &len, NULL, 0);
    return n;
#else
    return meminfo_kb("MemTotal") * 1024;
#endif
}

uint64_t ll_sys_mem_available(void) {
#if defined(__APPLE__)
    return ll_sys_mem_total() / 2; // macOS has no MemAvailable; a conservative half of RAM
#else
    uint64_t kb = meminfo_kb("MemAvailable");
    return kb ? kb * 1024 : ll_sys_mem_total() / 2;
#endif
}

uint64_t ll_sys_rss_peak(void) {
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0) return 0;
#if defined(__APPLE__)
    return (uint64_t)ru.ru_maxrss; // bytes on macOS
#else
    return (uint64_t)ru.ru_maxrss * 1024; // KiB on Linux
#endif
}

void ll_fmt_bytes(char *buf, size_t cap, double b) {
    const char *u[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int i = 0;
    while (b >= 1024 && i < 4) { b /= 1024; i++; }
    snprintf(buf, cap, i ? "%.2f %s" : "%.0f %s", b, u[i]);
}

// ---- progress -----------------------------------------------------------------------------------------
void ll_progress_init(ll_progress *p, const char *label, uint64_t total) {
    *p = (ll_progress){.label = label, .total = total ? total : 1, .t0 = ll_time_s(), .last_decile = -1,
                       .tty = isatty(2)};
}

static void progress_draw(ll_progress *p, bool final) {
    double now = ll_time_s(), el = now - p->t0;
    double frac = (double)p->done / (double)p->total;
    if (frac > 1) frac = 1;
    if (p->tty) {
        if (!final && now - p->last_draw < 0.1) return;
        p->last_draw = now;
        int w = 30, fill = (int)(frac * w);
        char bar[32];
        for (int i = 0; i < w; i++) bar[i] = i < fill ? '#' : '.';
        bar[w] = 0;
        double eta = frac > 0 ? el / frac - el : 0;
        fprintf(stderr, "\r%s [%s] %5.1f%%  %.1fs elapsed, ETA %.1fs ", p->label, bar, 100 * frac, el, eta);
        if (final) fputc('\n', stderr);
    } else {
        int d = (int)(frac * 10);
        if (d == p->last_decile && !final) return;
        p->last_decile = d;
        fprintf(stderr, "%s: %3.0f%% (%.1fs)\n", p->label, 100 * frac, el);
    }
    fflush(stderr);
}

void ll_progress_add(ll_progress *p, uint64_t n) {
    p->done += n;
    progress_draw(p, false);
}

void ll_progress_done(ll_progress *p) {
    p->done = p->total;
    progress_draw(p, true);
}
