// testutil.h — shared helpers for the cmocka test programs: where ../shared is, skipping with a message,
// reading files, comparing float arrays (rel L2, NMSE, NaN checks), a seeded RNG, the best candidates of a row.
#ifndef LL_TESTUTIL_H
#define LL_TESTUTIL_H

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

// Path of a file under LLMLAB_SHARED (default ../shared) in a static buffer, or NULL when it is absent.
static inline const char *tu_shared(const char *rel) {
    static char buf[8][4096];
    static int slot;
    const char *root = getenv("LLMLAB_SHARED");
    if (!root || !*root) root = "../shared";
    char *b = buf[slot++ & 7];
    snprintf(b, sizeof buf[0], "%s/%s", root, rel);
    FILE *f = fopen(b, "rb");
    if (!f) return NULL;
    fclose(f);
    return b;
}

// Skip the current test, saying why (TAP comment the runner shows).
#define TU_SKIP(...)                                                                                           \
    do {                                                                                                       \
        printf("# skip: ");                                                                                    \
        printf(__VA_ARGS__);                                                                                   \
        printf("\n");                                                                                          \
        fflush(stdout);                                                                                        \
        skip();                                                                                                \
    } while (0)

#define TU_NEED_SHARED(var, rel)                                                                               \
    const char *var = tu_shared(rel);                                                                          \
    if (!var) TU_SKIP("%s not found under LLMLAB_SHARED (default ../shared)", rel)

// Whole file into memory (NUL-terminated); NULL if unreadable.
static inline char *tu_read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) { free(b); b = NULL; }
    fclose(f);
    if (b) { b[n] = 0; if (len) *len = (size_t)n; }
    return b;
}

static inline int tu_count_nonfinite(const float *x, size_t n) {
    int c = 0;
    for (size_t i = 0; i < n; i++) c += !isfinite(x[i]);
    return c;
}

// ||a - b|| / ||b|| in double.
static inline double tu_rel_l2(const float *a, const float *b, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - b[i];
        num += d * d;
        den += (double)b[i] * b[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

// splitmix64: deterministic test inputs.
static inline uint64_t tu_rng_u64(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
static inline float tu_rng_uniform(uint64_t *s) { return (float)((tu_rng_u64(s) >> 40) * (1.0 / 16777216.0)) * 2.0f - 1.0f; }

// Poison: fill with NaN so a kernel that skips an output is caught.
static inline void tu_poison(float *x, size_t n) { for (size_t i = 0; i < n; i++) x[i] = NAN; }

// The k best of x as the sampler ranks logits (and backend.h's topk returns them): NaN and -inf left out, +inf as
// FLT_MAX, -0 as +0; by value descending, then index ascending; by a full sort. Returns how many (<= k).
typedef struct tu_cand {
    float v;
    int32_t i;
} tu_cand;

static inline int tu_cand_cmp(const void *a, const void *b) {
    const tu_cand *x = a, *y = b;
    if (x->v != y->v) return x->v > y->v ? -1 : 1;
    return x->i < y->i ? -1 : x->i > y->i;
}

static inline int tu_best_of(const float *x, int n, int k, float *vals, int32_t *ids) {
    tu_cand *r = malloc((size_t)n * sizeof *r);
    int m = 0;
    for (int i = 0; i < n; i++) {
        float v = x[i];
        if (!(v > -INFINITY)) continue;
        if (v == INFINITY) v = 3.402823466e+38f;
        r[m++] = (tu_cand){v == 0.0f ? 0.0f : v, i};
    }
    qsort(r, (size_t)m, sizeof *r, tu_cand_cmp);
    int got = m < k ? m : k;
    for (int i = 0; i < got; i++) vals[i] = r[i].v, ids[i] = r[i].i;
    free(r);
    return got;
}

#endif
