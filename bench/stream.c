// stream.c — an independent STREAM-style bandwidth program (plain C loops, pthreads, no llmlab code), to check
// `llmlab bench hw`'s CPU read bandwidth against: read (sum), copy, triad over arrays far larger than the caches.
//
//   cc -O3 -march=native -pthread bench/stream.c -o build/stream && build/stream -t 2 -m 512
//
// Bytes are counted as STREAM does (read 1, copy 2, triad 3 arrays per pass); the best and the median of the
// repetitions are printed, after one untimed pass. Each thread initialises the slice it later uses. Arrays ask
// for transparent huge pages like `bench hw` does (--small-pages: not), since one thread's stream over 4 KiB
// pages loses ~15% to TLB misses on some machines.
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

enum { OP_INIT, OP_READ, OP_COPY, OP_TRIAD, OP_STOP };

typedef struct shared {
    float *a, *b, *c;
    size_t n;
    int nth, op;
    pthread_barrier_t start, done;
    double sums[256];
} shared;

typedef struct worker {
    shared *s;
    int ith;
} worker;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

// Four partial sums of 8-float vectors (GNU C vector types: the compiler picks SSE, AVX or NEON): one running
// scalar sum would be bound by the add latency, not by memory, and compilers do not reassociate float sums on
// their own. Chunks of 2^20 floats go to a double total, so the sum of ones stays exact for the check.
typedef float v8f __attribute__((vector_size(32)));

static double sum(const float *x, size_t n) {
    double t = 0;
    for (size_t c = 0; c < n; c += (size_t)1 << 20) {
        size_t e = n - c < ((size_t)1 << 20) ? n : c + ((size_t)1 << 20), i = c;
        v8f p0 = {0}, p1 = {0}, p2 = {0}, p3 = {0}, v;
        for (; i + 32 <= e; i += 32) {
            memcpy(&v, x + i, 32); p0 += v;
            memcpy(&v, x + i + 8, 32); p1 += v;
            memcpy(&v, x + i + 16, 32); p2 += v;
            memcpy(&v, x + i + 24, 32); p3 += v;
        }
        for (; i < e; i++) t += x[i];
        v = (p0 + p1) + (p2 + p3);
        for (int u = 0; u < 8; u++) t += v[u];
    }
    return t;
}

static void *run(void *arg) {
    worker *w = arg;
    shared *s = w->s;
    size_t lo = s->n * (size_t)w->ith / (size_t)s->nth, hi = s->n * (size_t)(w->ith + 1) / (size_t)s->nth;
    for (;;) {
        pthread_barrier_wait(&s->start);
        float *a = s->a, *b = s->b, *c = s->c;
        switch (s->op) {
        case OP_INIT:
            for (size_t i = lo; i < hi; i++) { a[i] = 1.0f; b[i] = 2.0f; c[i] = 0.0f; }
            break;
        case OP_READ: s->sums[w->ith] = sum(a + lo, hi - lo); break;
        case OP_COPY: for (size_t i = lo; i < hi; i++) c[i] = a[i]; break;
        case OP_TRIAD: for (size_t i = lo; i < hi; i++) a[i] = b[i] + 3.0f * c[i]; break;
        default: return NULL;
        }
        pthread_barrier_wait(&s->done);
    }
}

// One pass of op on every thread; returns its seconds (the caller is not a worker, only the timer).
static double pass(shared *s, int op) {
    s->op = op;
    double t0 = now();
    pthread_barrier_wait(&s->start);
    pthread_barrier_wait(&s->done);
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
    pthread_barrier_init(&s.start, NULL, (unsigned)nth + 1);
    pthread_barrier_init(&s.done, NULL, (unsigned)nth + 1);
    pthread_t th[256];
    worker w[256];
    for (int i = 0; i < nth; i++) {
        w[i] = (worker){&s, i};
        pthread_create(&th[i], NULL, run, &w[i]);
    }
    pass(&s, OP_INIT);
    printf("stream: %d thread%s, 3 arrays of %zu MiB, %s pages, %d repetitions (GB = 1e9 bytes)\n", nth,
           nth > 1 ? "s" : "", mib, huge ? "huge (madvise)" : "small", reps);
    const char *names[] = {"", "read", "copy", "triad"};
    const double moved[] = {0, 1, 2, 3};
    for (int op = OP_READ; op <= OP_TRIAD; op++) {
        double t[1000];
        pass(&s, op); // warm-up
        for (int r = 0; r < reps; r++) t[r] = pass(&s, op);
        qsort(t, (size_t)reps, sizeof t[0], cmp);
        double gb = moved[op] * (double)bytes / 1e9, med = t[reps / 2];
        printf("%-6s best %8.1f GB/s   median %8.1f GB/s\n", names[op], gb / t[0], gb / med);
        if (op == OP_READ) {
            double total = 0;
            for (int i = 0; i < nth; i++) total += s.sums[i];
            if (total != (double)s.n) printf("stream: read check failed: sum %.0f, expected %zu\n", total, s.n);
        }
    }
    s.op = OP_STOP;
    pthread_barrier_wait(&s.start);
    for (int i = 0; i < nth; i++) pthread_join(th[i], NULL);
    free(s.a);
    free(s.b);
    free(s.c);
    return 0;
}
