// stream.c — an independent STREAM-style bandwidth program (plain C loops, pthreads, no llmlab code), to check
// `llmlab bench hw`'s CPU read bandwidth against: read (sum), copy, triad over arrays far larger than the caches.
//
//   cc -O3 -march=native -pthread bench/stream.c -o build/stream && build/stream -t 2 -m 512
//
// Bytes are counted as STREAM does (read 1, copy 2, triad 3 arrays per pass); the best and the median of the
// repetitions are printed, after one untimed pass. Each thread initialises the slice it later uses. Arrays ask
// for transparent huge pages like `bench hw` does (--small-pages: not), since one thread's stream over 4 KiB
// pages loses ~15% to TLB misses on some machines. The main thread is worker 0 and the threads meet at a
// spinning barrier (as OpenMP's STREAM does): waking sleeping threads each pass would be timed too.
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

enum { OP_INIT, OP_READ, OP_COPY, OP_TRIAD, OP_STOP };

// Sense-reversing barrier: the last thread to arrive flips the sense the others spin on.
typedef struct barrier {
    _Atomic int count, sense;
    int n;
} barrier;

static void barrier_wait(barrier *b, int *local) {
    *local = !*local;
    if (atomic_fetch_add(&b->count, 1) == b->n - 1) {
        atomic_store(&b->count, 0);
        atomic_store(&b->sense, *local);
        return;
    }
    for (unsigned spins = 1; atomic_load(&b->sense) != *local; spins++)
        if (spins % 4096 == 0) sched_yield(); // an oversubscribed machine still runs the thread that is late
}

typedef struct shared {
    float *a, *b, *c;
    size_t n;
    int nth;
    _Atomic int op;
    barrier bar;
    double sums[256];
} shared;

typedef struct worker {
    shared *s;
    int ith, sense;
} worker;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

// Four partial sums of 64-byte vectors (GNU C vector types: the compiler lowers them to AVX-512, AVX or NEON
// registers): one running scalar sum would be bound by the add latency, not by memory, and compilers do not
// reassociate float sums on their own. The width matters on one thread, whose bandwidth is set by how many
// bytes its loads keep in flight. Chunks of 2^20 floats go to a double total, so a sum of ones stays exact.
typedef float v16f __attribute__((vector_size(64)));

static double sum(const float *x, size_t n) {
    double t = 0;
    for (size_t c = 0; c < n; c += (size_t)1 << 20) {
        size_t e = n - c < ((size_t)1 << 20) ? n : c + ((size_t)1 << 20), i = c;
        v16f p0 = {0}, p1 = {0}, p2 = {0}, p3 = {0}, v;
        for (; i + 64 <= e; i += 64) {
            memcpy(&v, x + i, 64); p0 += v;
            memcpy(&v, x + i + 16, 64); p1 += v;
            memcpy(&v, x + i + 32, 64); p2 += v;
            memcpy(&v, x + i + 48, 64); p3 += v;
        }
        for (; i < e; i++) t += x[i];
        v = (p0 + p1) + (p2 + p3);
        for (int u = 0; u < 16; u++) t += v[u];
    }
    return t;
}

// Thread ith's slice of one pass of op; false for OP_STOP.
static int work(shared *s, int ith, int op) {
    size_t lo = s->n * (size_t)ith / (size_t)s->nth, hi = s->n * (size_t)(ith + 1) / (size_t)s->nth;
    float *a = s->a, *b = s->b, *c = s->c;
    switch (op) {
    case OP_INIT:
        for (size_t i = lo; i < hi; i++) { a[i] = 1.0f; b[i] = 2.0f; c[i] = 0.0f; }
        break;
    case OP_READ: s->sums[ith] = sum(a + lo, hi - lo); break;
    case OP_COPY: for (size_t i = lo; i < hi; i++) c[i] = a[i]; break;
    case OP_TRIAD: for (size_t i = lo; i < hi; i++) a[i] = b[i] + 3.0f * c[i]; break;
    default: return 0;
    }
    return 1;
}

// Workers 1..nth-1: wait for a pass, do their slice, wait for the others.
static void *run(void *arg) {
    worker *w = arg;
    for (;;) {
        barrier_wait(&w->s->bar, &w->sense);
        if (!work(w->s, w->ith, atomic_load(&w->s->op))) return NULL;
        barrier_wait(&w->s->bar, &w->sense);
    }
}

// One pass of op on every thread, the caller being worker 0 (w0); returns its seconds.
static double pass(shared *s, worker *w0, int op) {
    atomic_store(&s->op, op);
    double t0 = now();
    barrier_wait(&s->bar, &w0->sense);
    work(s, 0, op);
    barrier_wait(&s->bar, &w0->sense);
    return now() - t0;
}

static int cmp(const void *x, const void *y) {
    double a = *(const double *)x, b = *(const double *)y;
    return a < b ? -1 : a > b;
}

int main(int argc, char **argv) {
    int nth = 1, reps = 10, huge = 1;
    size_t mib = 512;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-t") && i + 1 < argc) nth = atoi(argv[++i]);
        else if (!strcmp(argv[i], "-m") && i + 1 < argc) mib = (size_t)atol(argv[++i]);
        else if (!strcmp(argv[i], "-r") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--small-pages")) huge = 0;
        else {
            fprintf(stderr, "usage: stream [-t THREADS] [-m MIB_PER_ARRAY] [-r REPS] [--small-pages]\n");
            return 1;
        }
    }
    if (nth < 1 || nth > 256 || reps < 1 || reps > 1000 || mib < 1) {
        fprintf(stderr, "stream: -t 1..256, -r 1..1000, -m >= 1\n");
        return 1;
    }
    shared s = {.n = mib << 20 >> 2, .nth = nth};
    size_t bytes = s.n * sizeof(float);
    if (posix_memalign((void **)&s.a, 2 << 20, bytes) || posix_memalign((void **)&s.b, 2 << 20, bytes) ||
        posix_memalign((void **)&s.c, 2 << 20, bytes)) {
        fprintf(stderr, "stream: cannot allocate 3 x %zu MiB\n", mib);
        return 1;
    }
#ifdef MADV_HUGEPAGE
    if (huge) { // transparent huge pages, as `bench hw` asks for: fewer TLB misses on one thread's stream
        madvise(s.a, bytes, MADV_HUGEPAGE);
        madvise(s.b, bytes, MADV_HUGEPAGE);
        madvise(s.c, bytes, MADV_HUGEPAGE);
    }
#endif
    s.bar.n = nth;
    pthread_t th[256];
    worker w[256];
    for (int i = 0; i < nth; i++) {
        w[i] = (worker){&s, i, 0};
        if (i > 0 && pthread_create(&th[i], NULL, run, &w[i]) != 0) {
            fprintf(stderr, "stream: cannot start thread %d\n", i);
            return 1;
        }
    }
    pass(&s, &w[0], OP_INIT);
    printf("stream: %d thread%s, 3 arrays of %zu MiB, %s pages, %d repetitions (GB = 1e9 bytes)\n", nth,
           nth > 1 ? "s" : "", mib, huge ? "huge (madvise)" : "small", reps);
    const char *names[] = {"", "read", "copy", "triad"};
    const double moved[] = {0, 1, 2, 3};
    for (int op = OP_READ; op <= OP_TRIAD; op++) {
        double t[1000];
        pass(&s, &w[0], op); // warm-up
        for (int r = 0; r < reps; r++) t[r] = pass(&s, &w[0], op);
        qsort(t, (size_t)reps, sizeof t[0], cmp);
        double gb = moved[op] * (double)bytes / 1e9, med = t[reps / 2];
        printf("%-6s best %8.1f GB/s   median %8.1f GB/s\n", names[op], gb / t[0], gb / med);
        if (op == OP_READ) {
            double total = 0;
            for (int i = 0; i < nth; i++) total += s.sums[i];
            if (total != (double)s.n) printf("stream: read check failed: sum %.0f, expected %zu\n", total, s.n);
        }
    }
    atomic_store(&s.op, OP_STOP);
    barrier_wait(&s.bar, &w[0].sense);
    for (int i = 1; i < nth; i++) pthread_join(th[i], NULL);
    free(s.a);
    free(s.b);
    free(s.c);
    return 0;
}
