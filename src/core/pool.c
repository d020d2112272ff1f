// pool.c — the thread pool behind every parallel kernel. One job at a time; a generation counter wakes
// workers, an atomic counter tells the caller when all finished.
#include "core/pool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>

#define LL_POOL_SPIN_S 5e-4 // a worker spins this long after its last job before it sleeps

struct ll_pool {
    int n;
    pthread_t *threads;
    struct worker_arg *args;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    _Atomic uint64_t gen;  // bumped once per job
    _Atomic int pending;   // workers still running the current job
    _Atomic int sleeping;  // workers waiting on cv
    _Atomic bool stop;
    ll_pool_fn fn;
    void *ctx;
};

struct worker_arg {
    ll_pool *p;
    int ith;
};

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

static void *worker_main(void *arg) {
    struct worker_arg *a = arg;
    ll_pool *p = a->p;
    uint64_t seen = 0;
    for (;;) {
        uint64_t g;
        int spins = 0;
        double t0 = 0;
        while ((g = atomic_load_explicit(&p->gen, memory_order_acquire)) == seen) {
            if (atomic_load_explicit(&p->stop, memory_order_acquire)) return NULL;
            // Spin for a bounded time (decode issues jobs microseconds apart), yielding now and then so an
            // oversubscribed machine (or an emulator) still runs the thread that has work.
            if (++spins % 256 != 0) { cpu_relax(); continue; }
            if (t0 == 0) t0 = ll_time_s();
            if (ll_time_s() - t0 < LL_POOL_SPIN_S) {
                if (spins % 4096 == 0) sched_yield();
                continue;
            }
            pthread_mutex_lock(&p->mu);
            atomic_fetch_add(&p->sleeping, 1);
            while (atomic_load(&p->gen) == seen && !atomic_load(&p->stop)) pthread_cond_wait(&p->cv, &p->mu);
            atomic_fetch_sub(&p->sleeping, 1);
            pthread_mutex_unlock(&p->mu);
            spins = 0;
            t0 = 0;
        }
        if (atomic_load_explicit(&p->stop, memory_order_acquire)) return NULL;
        seen = g;
        p->fn(p->ctx, a->ith, p->n);
        atomic_fetch_sub_explicit(&p->pending, 1, memory_order_release);
    }
}

ll_pool *ll_pool_init(int n_threads, ll_error *err) {
    if (n_threads < 1) n_threads = 1;
    ll_pool *p = ll_calloc(1, sizeof *p, err);
    if (!p) return NULL;
    p->n = n_threads;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    if (n_threads > 1) {
        p->threads = ll_calloc((size_t)n_threads, sizeof *p->threads, err);
        p->args = ll_calloc((size_t)n_threads, sizeof *p->args, err);
        if (!p->threads || !p->args) { ll_pool_free(p); return NULL; }
        for (int i = 1; i < n_threads; i++) {
            p->args[i] = (struct worker_arg){p, i};
            if (pthread_create(&p->threads[i], NULL, worker_main, &p->args[i]) != 0) {
                p->n = i; // the ones started so far
                ll_pool_free(p);
                ll_err_set(err, LL_ERR_NOMEM, "could not start thread %d of %d; try fewer threads (-t)", i, n_threads);
                return NULL;
            }
        }
    }
    return p;
}

void ll_pool_free(ll_pool *p) {
    if (!p) return;
    atomic_store(&p->stop, true);
    pthread_mutex_lock(&p->mu);
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    for (int i = 1; i < p->n && p->threads; i++) pthread_join(p->threads[i], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    free(p->threads);
    free(p->args);
    free(p);
}

int ll_pool_size(const ll_pool *p) { return p ? p->n : 1; }

void ll_pool_run(ll_pool *p, ll_pool_fn fn, void *ctx) {
    if (!p || p->n == 1) { fn(ctx, 0, 1); return; }
    p->fn = fn;
    p->ctx = ctx;
    atomic_store_explicit(&p->pending, p->n - 1, memory_order_relaxed);
    atomic_fetch_add(&p->gen, 1); // seq_cst: pairs with the worker's sleeping++ then gen check
    if (atomic_load(&p->sleeping) > 0) {
        pthread_mutex_lock(&p->mu);
        pthread_cond_broadcast(&p->cv);
        pthread_mutex_unlock(&p->mu);
    }
    fn(ctx, 0, p->n);
    // Spin briefly, then yield: on an oversubscribed machine a worker may be waiting for this very core.
    for (int spins = 0; atomic_load_explicit(&p->pending, memory_order_acquire) > 0; spins++) {
        if (spins < 20000 || spins % 256 != 0) cpu_relax();
        else sched_yield();
    }
}
