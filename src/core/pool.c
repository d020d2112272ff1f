// pool.c — the thread pool behind every parallel kernel. One job at a time, cut into nth slices; a new job id
// wakes the workers, and every thread (the caller included) claims slices from one counter until none is left.
// The caller then waits only for slices still running, never for a worker that has not started: a worker
// descheduled by other load costs nothing. Waiting threads spin briefly, then sleep on a condition variable.
//
// More threads than CPUs this process may use (affinity, cgroup quota) would make waiting threads hold the
// CPUs the working ones need, and each job would pay a round of context switches: generation fell from 136 t/s
// at -t 1 to 5 t/s at -t 8 on 2 CPUs. So the pool starts at most that many OS threads; every kernel still sees
// nth = n_threads, so results match a pool of n_threads real threads bit for bit.
#include "core/pool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>

#define LL_POOL_SPIN_S 5e-4 // a waiting thread spins this long before it sleeps

struct ll_pool {
    int n;                  // slices per job (what kernels see as nth)
    int n_os;               // OS threads running them, caller included: min(n, allowed CPUs)
    pthread_t *threads;
    struct worker_arg *args;
    pthread_mutex_t mu;
    pthread_cond_t cv;      // workers wait here for the next job
    pthread_cond_t done_cv; // the caller waits here for the last slice
    _Atomic uint64_t job;   // (job id << 32) | the next slice to claim; a new id wakes the workers
    _Atomic int done;       // slices of the current job finished
    _Atomic int caller_waiting;
    _Atomic int sleeping;   // workers waiting on cv
    _Atomic bool stop;
    uint32_t id;            // the current job's id (the caller's copy)
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

// Claims the next slice of job `id` into *ith; false when that job has none left (or a newer job started).
// A successful claim keeps job `id` (its fn and ctx) alive until the slice is counted done.
static bool claim(ll_pool *p, uint32_t id, int *ith) {
    uint64_t w = atomic_load(&p->job);
    for (;;) {
        if ((uint32_t)(w >> 32) != id || (uint32_t)w >= (uint32_t)p->n) return false;
        if (atomic_compare_exchange_weak(&p->job, &w, w + 1)) { *ith = (int)(uint32_t)w; return true; }
    }
}

// Runs slices of job `id` until none is left to claim.
static void run_slices(ll_pool *p, uint32_t id, bool worker) {
    int ith;
    while (claim(p, id, &ith)) {
        p->fn(p->ctx, ith, p->n);
        // seq_cst: pairs with the caller's caller_waiting = 1 then done check (one of the two sees the other)
        if (atomic_fetch_add(&p->done, 1) + 1 == p->n && worker && atomic_load(&p->caller_waiting)) {
            pthread_mutex_lock(&p->mu);
            pthread_cond_signal(&p->done_cv);
            pthread_mutex_unlock(&p->mu);
        }
    }
}

// Waits until the job id differs from seen and returns it (or seen once the pool stops). Spins for a bounded
// time (decode issues jobs microseconds apart), yielding now and then, then sleeps.
static uint32_t wait_job(ll_pool *p, uint32_t seen) {
    uint32_t id;
    int spins = 0;
    double t0 = 0;
    while ((id = (uint32_t)(atomic_load_explicit(&p->job, memory_order_acquire) >> 32)) == seen) {
        if (atomic_load_explicit(&p->stop, memory_order_acquire)) return seen;
        if (++spins % 256 != 0) { cpu_relax(); continue; }
        if (t0 == 0) t0 = ll_time_s();
        if (ll_time_s() - t0 < LL_POOL_SPIN_S) {
            if (spins % 4096 == 0) sched_yield();
            continue;
        }
        pthread_mutex_lock(&p->mu);
        atomic_fetch_add(&p->sleeping, 1); // seq_cst: pairs with ll_pool_run's job store then sleeping check
        while ((uint32_t)(atomic_load(&p->job) >> 32) == seen && !atomic_load(&p->stop))
            pthread_cond_wait(&p->cv, &p->mu);
        atomic_fetch_sub(&p->sleeping, 1);
        pthread_mutex_unlock(&p->mu);
        spins = 0;
        t0 = 0;
    }
    return id;
}

static void *worker_main(void *arg) {
    struct worker_arg *a = arg;
    ll_pool *p = a->p;
    uint32_t seen = 0;
    for (;;) {
        seen = wait_job(p, seen);
        if (atomic_load_explicit(&p->stop, memory_order_acquire)) return NULL;
        run_slices(p, seen, true);
    }
}

ll_pool *ll_pool_init(int n_threads, ll_error *err) {
    if (n_threads < 1) n_threads = 1;
    ll_pool *p = ll_calloc(1, sizeof *p, err);
    if (!p) return NULL;
    int allowed = ll_sys_allowed_cpus();
    p->n = n_threads;
    p->n_os = n_threads < allowed ? n_threads : allowed;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    pthread_cond_init(&p->done_cv, NULL);
    if (p->n_os > 1) {
        p->threads = ll_calloc((size_t)p->n_os, sizeof *p->threads, err);
        p->args = ll_calloc((size_t)p->n_os, sizeof *p->args, err);
        if (!p->threads || !p->args) { p->n_os = 0; ll_pool_free(p); return NULL; }
        for (int i = 1; i < p->n_os; i++) {
            p->args[i] = (struct worker_arg){p, i};
            if (pthread_create(&p->threads[i], NULL, worker_main, &p->args[i]) != 0) {
                p->n_os = i; // the ones started so far
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
    for (int i = 1; i < p->n_os && p->threads; i++) pthread_join(p->threads[i], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    pthread_cond_destroy(&p->done_cv);
    free(p->threads);
    free(p->args);
    free(p);
}

int ll_pool_size(const ll_pool *p) { return p ? p->n : 1; }

int ll_pool_os_threads(const ll_pool *p) { return p ? p->n_os : 1; }

void ll_pool_run(ll_pool *p, ll_pool_fn fn, void *ctx) {
    if (!p || p->n == 1) { fn(ctx, 0, 1); return; }
    p->fn = fn;
    p->ctx = ctx;
    atomic_store_explicit(&p->done, 0, memory_order_relaxed);
    p->id = p->id + 1 ? p->id + 1 : 1; // 0 is the workers' initial "seen"
    atomic_store(&p->job, (uint64_t)p->id << 32); // seq_cst: publishes fn, ctx, done; pairs with sleeping++
    if (p->n_os > 1 && atomic_load(&p->sleeping) > 0) {
        pthread_mutex_lock(&p->mu);
        pthread_cond_broadcast(&p->cv);
        pthread_mutex_unlock(&p->mu);
    }
    run_slices(p, p->id, false);
    // All slices are claimed; wait for those still running on workers: spin briefly, then sleep until the
    // last one signals (a long slice, or a worker descheduled by others mid-slice).
    double t0 = 0;
    for (int spins = 1; atomic_load_explicit(&p->done, memory_order_acquire) < p->n; spins++) {
        if (spins % 256 != 0) { cpu_relax(); continue; }
        if (t0 == 0) t0 = ll_time_s();
        else if (ll_time_s() - t0 > LL_POOL_SPIN_S) break;
    }
    if (atomic_load_explicit(&p->done, memory_order_acquire) < p->n) {
        pthread_mutex_lock(&p->mu);
        atomic_store(&p->caller_waiting, 1);
        while (atomic_load(&p->done) < p->n) pthread_cond_wait(&p->done_cv, &p->mu);
        atomic_store(&p->caller_waiting, 0);
        pthread_mutex_unlock(&p->mu);
    }
}
