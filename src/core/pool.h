// pool.h — a fixed thread pool for data-parallel kernels: run fn(ctx, ith, nth) on nth threads (the caller
// is thread 0) and return when all are done. Waiting threads spin briefly (decode issues hundreds of
// small jobs per token), then sleep on a condition variable. At most one OS thread per CPU this process may
// use: a pool of more threads runs its nth slices on fewer OS threads (see pool.c).
#ifndef LL_POOL_H
#define LL_POOL_H

#include "core/core.h"

typedef struct ll_pool ll_pool;
typedef void (*ll_pool_fn)(void *ctx, int ith, int nth);

ll_pool *ll_pool_init(int n_threads, ll_error *err); // n_threads >= 1; 1 = no worker threads
void ll_pool_free(ll_pool *p);
int ll_pool_size(const ll_pool *p);       // nth: the slices of every job (n_threads)
int ll_pool_os_threads(const ll_pool *p); // OS threads running them, caller included: min(nth, allowed CPUs)
// Runs fn on every thread; p may be NULL (runs fn(ctx, 0, 1) on the caller).
void ll_pool_run(ll_pool *p, ll_pool_fn fn, void *ctx);

// Split [0, n) into nth nearly equal parts: thread ith gets [*lo, *hi). Parts are multiples of `quantum`.
static inline void ll_split_range(int64_t n, int ith, int nth, int64_t quantum, int64_t *lo, int64_t *hi) {
    int64_t units = (n + quantum - 1) / quantum;
    int64_t per = units / nth, extra = units % nth;
    int64_t u0 = ith * per + (ith < extra ? ith : extra);
    int64_t u1 = u0 + per + (ith < extra ? 1 : 0);
    *lo = u0 * quantum < n ? u0 * quantum : n;
    *hi = u1 * quantum < n ? u1 * quantum : n;
}

#endif
