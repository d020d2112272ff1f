// core.h — errors, always-on asserts, overflow-checked sizes, checked allocation, read-only file maps,
// logging, timers and memory facts. Every other layer includes this.
#ifndef LL_CORE_H
#define LL_CORE_H

#include "llmlab.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

// ---- errors -------------------------------------------------------------------------------------------
// Untrusted input: fill err and return its status. err may be NULL (then the message is dropped).
ll_status ll_err_set(ll_error *err, ll_status s, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
// Prefix an existing message ("file.gguf: " + message).
void ll_err_prefix(ll_error *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

// Broken internal invariant: print file:line and abort, in every build.
_Noreturn void ll_panic(const char *file, int line, const char *what);
#define LL_ASSERT(cond) ((cond) ? (void)0 : ll_panic(__FILE__, __LINE__, #cond))

// ---- overflow-checked arithmetic (true = ok) ------------------------------------------------------------
static inline bool ll_add_ok(size_t a, size_t b, size_t *r) { return !__builtin_add_overflow(a, b, r); }
static inline bool ll_mul_ok(size_t a, size_t b, size_t *r) { return !__builtin_mul_overflow(a, b, r); }
static inline bool ll_add_u64(uint64_t a, uint64_t b, uint64_t *r) { return !__builtin_add_overflow(a, b, r); }
static inline bool ll_mul_u64(uint64_t a, uint64_t b, uint64_t *r) { return !__builtin_mul_overflow(a, b, r); }
static inline size_t ll_align_up(size_t x, size_t a) { return (x + a - 1) / a * a; } // a > 0, caller checks range

// ---- allocation: internal allocations that fail are reported, never ignored ------------------------------
void *ll_malloc(size_t n, ll_error *err);           // NULL + LL_ERR_NOMEM message on failure
void *ll_calloc(size_t n, size_t size, ll_error *err); // overflow-checked
void *ll_aligned_alloc(size_t n, size_t align, ll_error *err);
void ll_aligned_free(void *p);
char *ll_strdup(const char *s);                     // aborts on OOM (small strings only)
char *ll_strndup(const char *s, size_t n);

// ---- read-only file map ---------------------------------------------------------------------------------
typedef struct ll_map {
    const uint8_t *data;
    size_t size;
    char *path;
} ll_map;
ll_status ll_map_open(ll_map **out, const char *path, ll_error *err);
void ll_map_free(ll_map *m);
// Advise the kernel that the whole map will be read soon (load-time prefetch).
void ll_map_prefetch(const ll_map *m);
// true when both paths exist and name the same file (device and inode: "d/x", "d/./x", a hard link, a symlink).
// Every writer checks its output against each input with it before writing.
bool ll_same_file(const char *a, const char *b);

// ---- temporary files of atomic writers (DEST.tmp.PID beside DEST, renamed into place; tmpfile.c) ----------
// Registers a temporary file for removal should SIGINT, SIGTERM or SIGHUP kill the process: while any is
// registered, those signals left at their default action get a handler that unlinks every registered file and
// re-raises (exit status 128 + signal). Returns a slot for ll_tmp_unregister, or -1 (no slot: not covered).
int ll_tmp_register(const char *path);
void ll_tmp_unregister(int slot);
// Async-signal-safe: unlinks every registered file (for a program's own signal handler before it _exits).
void ll_tmp_remove_all(void);
// Removes DEST.tmp.PID files beside dest whose process no longer runs, with a warning each; returns how many.
int ll_tmp_sweep_stale(const char *dest);

// ---- logging ------------------------------------------------------------------------------------------
typedef enum { LL_LOG_ERROR, LL_LOG_WARN, LL_LOG_INFO, LL_LOG_DEBUG } ll_log_level;
void ll_log_set_level(ll_log_level lvl);
ll_log_level ll_log_get_level(void);
void ll_log(ll_log_level lvl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

// ---- time ---------------------------------------------------------------------------------------------
double ll_time_s(void); // monotonic seconds

// ---- machine facts ------------------------------------------------------------------------------------
int ll_sys_physical_cores(void);
int ll_sys_logical_cores(void);
// CPUs this process may run on: the affinity mask (taskset, cpusets) capped by a cgroup v2/v1 CPU quota,
// rounded up; >= 1 (cpus.c).
int ll_sys_allowed_cpus(void);
// The default thread count: min(physical cores, allowed CPUs) -- SMT siblings add little to memory-bound decode.
int ll_sys_default_threads(void);
// The most threads a -t may ask for: 4 x allowed CPUs (at most 1024); more only thrashes the scheduler.
int ll_sys_max_threads(void);
// The cgroup CPU quota seen from proc_self_cgroup (/proc/self/cgroup format) with the hierarchy mounted at root
// (/sys/fs/cgroup), in whole CPUs; 0 = no quota. Exposed for tests with a fake tree.
int ll_sys_cgroup_cpus_at(const char *root, const char *proc_self_cgroup);
uint64_t ll_sys_mem_total(void);     // bytes
uint64_t ll_sys_mem_available(void); // bytes the system can give without swapping (Linux MemAvailable)
uint64_t ll_sys_rss_peak(void);      // bytes, this process
void ll_fmt_bytes(char *buf, size_t cap, double bytes); // "1.23 GiB"

// ---- progress bar on stderr (only when stderr is a terminal, else a line every 10%) ---------------------
typedef struct ll_progress {
    const char *label;
    uint64_t total, done;
    double t0, last_draw;
    int last_decile;
    bool tty;
} ll_progress;
void ll_progress_init(ll_progress *p, const char *label, uint64_t total);
void ll_progress_add(ll_progress *p, uint64_t n);
void ll_progress_done(ll_progress *p);

#endif
