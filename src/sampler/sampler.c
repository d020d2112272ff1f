// sampler.c — the sampling chain of llmlab.h, in llama.cpp's default order: repetition penalty -> top-k ->
// top-p -> min-p -> temperature -> a seeded draw from the softmax (temp <= 0: argmax after the penalty).
//
// Determinism: the RNG is xoshiro256** (Blackman & Vigna, 2018) seeded through splitmix64, and every float
// step uses only IEEE-754 + - * / (and the exact floor) with an own exp instead of libm's, so the same seed and the same logits give the
// same ids on every platform (x86-64, arm64). Ties are broken by id everywhere (the lower id ranks first),
// so the result never depends on how a selection algorithm happened to order equal logits.
// Default seed: LL_SAMPLER_DEFAULT_SEED (42). Memory: all buffers are sized for n_vocab at init; sample()
// does not allocate.
#include "sampler/sampler.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#ifdef __clang__
#pragma STDC FP_CONTRACT OFF // no fused multiply-add: same roundings on every target (gcc -std=c11: off already)
#endif

#define LL_SAMPLER_DEFAULT_SEED 42u
#define LL_SAMPLER_MAX_LAST_N (1 << 20) // repeat_last_n cap: the history ring is int32 per entry

typedef struct smp_cand {
    float logit;
    int32_t id;
} smp_cand;

struct ll_sampler {
    ll_sampler_params p;
    int n_vocab;
    smp_cand *cand; // (n_vocab) working candidates
    double *w;      // (n_vocab) softmax weights, aligned with cand
    uint8_t *mark;  // (n_vocab) repetition penalty: id already penalized in this call (cleared after)
    int32_t *hist;  // (repeat_last_n) ring of the last accepted ids
    int hist_n, hist_pos;
    uint64_t rng[4]; // xoshiro256** state
};

// ---- RNG: xoshiro256**, state filled by splitmix64 as its authors recommend -------------------------------
static uint64_t smp_splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static inline uint64_t smp_rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t smp_rng_next(uint64_t s[4]) {
    uint64_t out = smp_rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = smp_rotl(s[3], 45);
    return out;
}

// Uniform in [0, 1): the top 53 bits, exact in a double.
static double smp_rng_uniform(uint64_t s[4]) { return (double)(smp_rng_next(s) >> 11) * (1.0 / 9007199254740992.0); }

// ---- e^x for x <= 0 from + - * only ------------------------------------------------------------------------
// Cody-Waite reduction x = k ln2 + r, |r| <= ln2/2 (ln2 split in a 32-bit head, so k*LN2_HI is exact), then the
// Taylor series of e^r to degree 13 (truncation < 1e-17 relative) and 2^k built from its bits. Relative error
// ~2e-16; the point is that the bits are the same on every IEEE-754 machine, which libm's exp does not promise.
// Below -708 (e^x < 3e-308) it returns 0: such a weight cannot change a draw. Branch-free, so loops over it
// vectorize (elementwise IEEE ops give the same bits in SIMD lanes as in scalar code).
static inline double smp_exp(double x) {
    const double LN2_HI = 6.93147180369123816490e-01, LN2_LO = 1.90821492927058770002e-10;
    double xc = x < -708.0 ? -708.0 : x > 0.0 ? 0.0 : x; // callers pass logit - max <= 0
    double kd = floor(xc * 1.44269504088896338700 + 0.5);  // k in [-1021, 0]
    double r = (xc - kd * LN2_HI) - kd * LN2_LO;
    double p = 1.0 / 6227020800.0; // Horner from 1/13! down to 1/0!
    p = p * r + 1.0 / 479001600.0;
    p = p * r + 1.0 / 39916800.0;
    p = p * r + 1.0 / 3628800.0;
    p = p * r + 1.0 / 362880.0;
    p = p * r + 1.0 / 40320.0;
    p = p * r + 1.0 / 5040.0;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    p = p * r + 1.0;
    p = p * r + 1.0;
    // 2^k: in 2^52 + (k + 1023) the low mantissa bits hold k + 1023 exactly; shift them into the exponent.
    union { double d; uint64_t u; } b = {.d = kd + (1023.0 + 4503599627370496.0)}, two_k;
    two_k.u = b.u << 52;
    return x < -708.0 ? 0.0 : p * two_k.d;
}

// w[i] = e^((logit_i - mx) / temp) for i < n (at temp 1 the division is skipped: x / 1 == x, no bit changes),
// and their sum in index order (kept sequential: the order of a float sum is part of the result).
static double smp_weights(const smp_cand *c, int n, double mx, double temp, double *w) {
    if (temp == 1.0)
        for (int i = 0; i < n; i++) w[i] = smp_exp((double)c[i].logit - mx);
    else
        for (int i = 0; i < n; i++) w[i] = smp_exp(((double)c[i].logit - mx) / temp);
    double sum = 0;
    for (int i = 0; i < n; i++) sum += w[i];
    return sum;
}

// ---- candidate order: higher logit first, then lower id ----------------------------------------------------
static inline bool smp_before(smp_cand a, smp_cand b) {
    return a.logit > b.logit || (a.logit == b.logit && a.id < b.id);
}

// Sift c[i] down a binary heap of n entries whose root ranks last (so the root is the next to evict).
static void smp_sift(smp_cand *c, int n, int i) {
    smp_cand x = c[i];
    for (;;) {
        int ch = 2 * i + 1;
        if (ch >= n) break;
        if (ch + 1 < n && smp_before(c[ch], c[ch + 1])) ch++;
        if (!smp_before(x, c[ch])) break;
        c[i] = c[ch];
        i = ch;
    }
    c[i] = x;
}

static void smp_heapify(smp_cand *c, int n) {
    for (int i = n / 2 - 1; i >= 0; i--) smp_sift(c, n, i);
}

// Sort c[0..n) best first (heap sort: O(n log n) worst case, no allocation).
static void smp_sort(smp_cand *c, int n) {
    smp_heapify(c, n);
    for (int end = n - 1; end > 0; end--) { // the worst goes to the back
        smp_cand t = c[0];
        c[0] = c[end];
        c[end] = t;
        smp_sift(c, end, 0);
    }
}

// ---- params ------------------------------------------------------------------------------------------------
ll_sampler_params ll_sampler_default_params(void) {
    // llama.cpp's defaults (common_params_sampling), with a fixed seed instead of "random".
    return (ll_sampler_params){
        .temp = 0.8f,
        .top_k = 40,
        .top_p = 0.95f,
        .min_p = 0.05f,
        .repeat_penalty = 1.0f,
        .repeat_last_n = 64,
        .seed = LL_SAMPLER_DEFAULT_SEED,
    };
}

// The first thing wrong with p, or NULL. Ranges are inclusive; NaN fails every check.
static const char *smp_params_problem(const ll_sampler_params *p, int n_vocab) {
    if (n_vocab <= 0) return "n_vocab must be positive";
    if (!isfinite(p->temp)) return "temp must be a finite number (<= 0 means greedy)";
    if (p->top_k < 0) return "top_k must be >= 0 (0 = off)";
    if (!(p->top_p >= 0.0f && p->top_p <= 1.0f)) return "top_p must be in [0, 1] (1 = off)";
    if (!(p->min_p >= 0.0f && p->min_p <= 1.0f)) return "min_p must be in [0, 1] (0 = off)";
    if (!(p->repeat_penalty > 0.0f && isfinite(p->repeat_penalty))) return "repeat_penalty must be > 0 (1 = off)";
    if (p->repeat_last_n < 0 || p->repeat_last_n > LL_SAMPLER_MAX_LAST_N)
        return "repeat_last_n must be in [0, 1048576]";
    return NULL;
}

ll_sampler *ll_sampler_init(const ll_sampler_params *params, int n_vocab) {
    ll_sampler_params p = params ? *params : ll_sampler_default_params();
    const char *why = smp_params_problem(&p, n_vocab);
    if (why) {
        ll_log(LL_LOG_ERROR, "sampler: %s (temp %g, top_k %d, top_p %g, min_p %g, repeat_penalty %g, "
                             "repeat_last_n %d, n_vocab %d)", why, (double)p.temp, p.top_k, (double)p.top_p,
               (double)p.min_p, (double)p.repeat_penalty, p.repeat_last_n, n_vocab);
        return NULL;
    }
    ll_error err;
    ll_sampler *s = ll_calloc(1, sizeof *s, &err);
    if (!s) goto oom;
    s->p = p;
    s->n_vocab = n_vocab;
    size_t n = (size_t)n_vocab;
    s->cand = ll_calloc(n, sizeof *s->cand, &err);
    s->w = ll_calloc(n, sizeof *s->w, &err);
    s->mark = ll_calloc(n, 1, &err);
    s->hist = ll_calloc(p.repeat_last_n > 0 ? (size_t)p.repeat_last_n : 1, sizeof *s->hist, &err);
    if (!s->cand || !s->w || !s->mark || !s->hist) goto oom;
    uint64_t x = p.seed;
    for (int i = 0; i < 4; i++) s->rng[i] = smp_splitmix64(&x);
    return s;
oom:
    ll_log(LL_LOG_ERROR, "sampler: out of memory for n_vocab %d", n_vocab);
    ll_sampler_free(s);
    return NULL;
}

void ll_sampler_free(ll_sampler *s) {
    if (!s) return;
    free(s->cand);
    free(s->w);
    free(s->mark);
    free(s->hist);
    free(s);
}

void ll_sampler_accept(ll_sampler *s, int32_t id) {
    LL_ASSERT(id >= 0 && id < s->n_vocab);
    int cap = s->p.repeat_last_n;
    if (cap == 0) return;
    s->hist[s->hist_pos] = id;
    s->hist_pos = (s->hist_pos + 1) % cap;
    if (s->hist_n < cap) s->hist_n++;
}

// ---- the chain -------------------------------------------------------------------------------------------
// A logit as the chain sees it: NaN as -inf (never drawn), +inf as FLT_MAX.
static inline float smp_clean(float v) { return v == INFINITY ? 3.402823466e+38f : v > -INFINITY ? v : -INFINITY; }

// Whether the repetition penalty changes this call's logits.
static inline bool smp_penalizes(const ll_sampler *s) { return s->p.repeat_penalty != 1.0f && s->hist_n > 0; }

// The candidates (logit, id) in id order, penalized, without the ones that cannot be drawn: NaN counts as -inf
// and -inf is dropped; +inf becomes FLT_MAX (an infinite logit takes all the mass, shared equally). The
// repetition penalty is CTRL's (Keskar et al. 2019) as llama.cpp applies it: once per distinct id in the
// window, positive logits divided by the penalty, others multiplied. One pass over the vocabulary.
static int smp_load(ll_sampler *s, const float *logits) {
    smp_cand *c = s->cand;
    float pen = s->p.repeat_penalty;
    bool penalize = smp_penalizes(s);
    if (penalize)
        for (int j = 0; j < s->hist_n; j++) s->mark[s->hist[j]] = 1;
    int m = 0;
    for (int i = 0; i < s->n_vocab; i++) {
        float v = smp_clean(logits[i]);
        if (v == -INFINITY) continue; // -inf and NaN
        if (penalize && s->mark[i]) v = v > 0.0f ? v / pen : v * pen;
        if (v > -INFINITY) c[m++] = (smp_cand){v, i};
    }
    if (penalize)
        for (int j = 0; j < s->hist_n; j++) s->mark[s->hist[j]] = 0;
    return m;
}

// Keep the k best (k < n) in c[0..k), sorted best first: a heap of the k kept whose root is the worst of them,
// O(n log k) and O(n) when most candidates lose to the root at once.
static int smp_top_k(smp_cand *c, int n, int k) {
    smp_heapify(c, k);
    for (int i = k; i < n; i++) {
        if (smp_before(c[i], c[0])) {
            c[0] = c[i];
            smp_sift(c, k, 0);
        }
    }
    smp_sort(c, k);
    return k;
}

static float smp_max_logit(const smp_cand *c, int n, bool sorted) {
    if (sorted) return c[0].logit;
    float m = c[0].logit;
    for (int i = 1; i < n; i++) m = c[i].logit > m ? c[i].logit : m;
    return m;
}

static inline void smp_swap(smp_cand *c, double *w, int i, int j) {
    smp_cand t = c[i];
    c[i] = c[j];
    c[j] = t;
    double tw = w[i];
    w[i] = w[j];
    w[j] = tw;
}

// Lomuto partition of c[lo..hi) (with w) around the median of c[lo], c[mid], c[hi-1]: the ones ranking before
// the pivot first. Returns the pivot's index; *mass = the weight before it.
static int smp_partition(smp_cand *c, double *w, int lo, int hi, double *mass) {
    int mid = lo + (hi - lo) / 2, last = hi - 1;
    if (smp_before(c[mid], c[lo])) smp_swap(c, w, mid, lo);
    if (smp_before(c[last], c[mid])) smp_swap(c, w, last, mid);
    if (smp_before(c[mid], c[lo])) smp_swap(c, w, mid, lo); // now lo <= mid <= last in rank
    smp_swap(c, w, mid, last);
    smp_cand pv = c[last];
    double m = 0;
    int i = lo;
    for (int j = lo; j < last; j++) {
        if (smp_before(c[j], pv)) {
            m += w[j];
            smp_swap(c, w, i++, j);
        }
    }
    smp_swap(c, w, i, last);
    *mass = m;
    return i;
}

// Nucleus (Holtzman et al. 2019): the smallest best-first prefix whose softmax mass (temperature 1) is >= p,
// at least one. Sorted input (after top-k) is scanned. Unsorted input is not sorted: a quickselect on mass
// (partition, keep the side where the prefix ends; O(n) expected) moves the prefix to the front; the last
// small range is sorted and scanned, and a range that refuses to shrink is sorted too (O(n log n) bound).
// Before that, ids with weight below (1-p)*sum/(2n) are dropped: they can never be in the prefix (if one were,
// everything from it on would weigh > (1-p)*sum, yet that is at most n times its weight).
// Returns the new count; the kept ones are c[0..m), in no particular order when the input was unsorted.
static int smp_top_p(ll_sampler *s, smp_cand *c, int n, bool sorted, float p) {
    double *w = s->w, mx = smp_max_logit(c, n, sorted);
    double sum = smp_weights(c, n, mx, 1.0, w), target = (double)p * sum, acc = 0;
    int lo = 0, hi = n;
    if (!sorted) {
        double floor_w = 0.5 * (1.0 - (double)p) * sum / n;
        hi = 0;
        for (int i = 0; i < n; i++) {
            if (w[i] >= floor_w) {
                c[hi] = c[i];
                w[hi++] = w[i];
            }
        }
        for (int round = 0; hi - lo > 32 && round < 64; round++) {
            double mass;
            int pi = smp_partition(c, w, lo, hi, &mass);
            if (acc + mass >= target) {
                hi = pi; // the prefix ends before the pivot
            } else {
                acc += mass + w[pi];
                if (acc >= target) return pi + 1;
                lo = pi + 1;
            }
        }
        smp_sort(c + lo, hi - lo);
        for (int i = lo; i < hi; i++) w[i] = smp_exp((double)c[i].logit - mx);
    }
    for (int i = lo; i < hi; i++) {
        acc += w[i];
        if (acc >= target) return i + 1;
    }
    return hi > 0 ? hi : 1; // hi == 0: p == 0, and c[0] is the best
}

// min-p (Nguyen et al. 2024): drop ids with prob < min_p * p_max, i.e. e^(logit - max) < min_p. Keeps order.
static int smp_min_p(smp_cand *c, int n, bool sorted, float min_p) {
    double mx = smp_max_logit(c, n, sorted);
    int m = 0;
    for (int i = 0; i < n; i++)
        if (smp_exp((double)c[i].logit - mx) >= (double)min_p) c[m++] = c[i];
    return m;
}

// One draw from softmax(logit / temp) over c[0..n): u in [0,1) against the running sum, in candidate order.
static int32_t smp_draw(ll_sampler *s, const smp_cand *c, int n, double u) {
    double sum = smp_weights(c, n, smp_max_logit(c, n, false), (double)s->p.temp, s->w);
    double target = u * sum, cum = 0;
    int last = 0;
    for (int i = 0; i < n; i++) {
        if (s->w[i] <= 0) continue;
        cum += s->w[i];
        last = i;
        if (cum > target) return c[i].id;
    }
    return c[last].id; // u * sum rounded up to sum
}

// The chain after the candidates are loaded (c[0..m), in id order unless sorted) and u drawn: top-k, top-p,
// min-p, the draw.
static int32_t smp_chain(ll_sampler *s, int m, bool sorted, double u) {
    smp_cand *c = s->cand;
    if (m == 0) return 0;
    if (s->p.top_k > 0 && s->p.top_k < m) {
        m = sorted ? s->p.top_k : smp_top_k(c, m, s->p.top_k);
        sorted = true;
    }
    if (s->p.top_p < 1.0f && m > 1) {
        m = smp_top_p(s, c, m, sorted, s->p.top_p); // unsorted stays unsorted: only the max matters from here
    }
    if (s->p.min_p > 0.0f && m > 1) m = smp_min_p(c, m, sorted, s->p.min_p);
    LL_ASSERT(m >= 1);
    return smp_draw(s, c, m, u);
}

// Without a penalty to apply, greedy and top-k read the row directly instead of copying every candidate first
// (smp_load; ~2x faster greedy at a 128256-token vocabulary, bench/NOTES.md), with smp_load's rules.
// The argmax: the largest value, then its first id (the lowest among equals), in two branch-free passes; no
// candidate -> 0.
static int32_t smp_argmax_row(const float *logits, int n) {
    float mx = -INFINITY;
    for (int i = 0; i < n; i++) {
        const float v = smp_clean(logits[i]);
        mx = v > mx ? v : mx;
    }
    if (mx == -INFINITY) return 0; // no candidate
    for (int i = 0; i < n; i++)
        if (smp_clean(logits[i]) == mx) return i;
    return 0; // not reached
}

// The k best as smp_top_k keeps them from smp_load's candidates (the same heap operations in the same order, so
// the same result), sorted, and *m the number of candidates; -1 when m <= k: the chain then skips top-k and the
// caller loads the row.
static int smp_top_k_row(ll_sampler *s, const float *logits, int k, int *m_out) {
    smp_cand *c = s->cand;
    int m = 0;
    for (int i = 0; i < s->n_vocab; i++) {
        const float v = smp_clean(logits[i]);
        if (v == -INFINITY) continue;
        const smp_cand x = {v, i};
        if (m < k) {
            c[m] = x;
            if (m + 1 == k) smp_heapify(c, k);
        } else if (smp_before(x, c[0])) {
            c[0] = x;
            smp_sift(c, k, 0);
        }
        m++;
    }
    *m_out = m;
    if (m <= k) return -1;
    smp_sort(c, k);
    return k;
}

int32_t ll_sampler_sample(ll_sampler *s, const float *logits) {
    const bool penalize = smp_penalizes(s);
    if (s->p.temp <= 0.0f && !penalize) return smp_argmax_row(logits, s->n_vocab);
    if (s->p.temp <= 0.0f) { // greedy after the penalty: argmax, the lowest id among equals (c is in id order)
        int m = smp_load(s, logits), best = 0;
        smp_cand *c = s->cand;
        for (int i = 1; i < m; i++)
            if (c[i].logit > c[best].logit) best = i;
        return m ? c[best].id : 0;
    }
    double u = smp_rng_uniform(s->rng); // exactly one draw per call, whatever the chain keeps
    if (!penalize && s->p.top_k > 0) {
        int m, k = smp_top_k_row(s, logits, s->p.top_k, &m);
        if (k > 0) return smp_chain(s, k, true, u); // m > top_k: the chain's top-k step is done
    }
    return smp_chain(s, smp_load(s, logits), false, u);
}

// ---- from candidates chosen elsewhere (a device backend's top-k) ---------------------------------------------
int ll_sampler_top_wanted(const ll_sampler *s) {
    if (smp_penalizes(s)) return 0; // the penalty reorders: every logit is needed
    if (s->p.temp <= 0.0f) return 1;
    if (s->p.top_k > 0 && s->p.top_k < LL_SAMPLER_TOP_MAX) return s->p.top_k + 1;
    return 0;
}

bool ll_sampler_sample_top(ll_sampler *s, const float *vals, const int32_t *ids, int n, int32_t *out) {
    const int want = ll_sampler_top_wanted(s);
    LL_ASSERT(want > 0 && n >= 0 && n <= want);
    if (s->p.temp <= 0.0f) { // the argmax (and 0 when nothing can be drawn), as ll_sampler_sample
        *out = n ? ids[0] : 0;
        return true;
    }
    // top_k + 1 candidates prove that the vocabulary holds more than top_k: ll_sampler_sample's top-k step then
    // keeps exactly the first top_k of them, sorted. Fewer: that step would not run (and the draw's order would
    // be id order): not decidable from here.
    if (n < want) return false;
    for (int i = 0; i < n; i++) {
        LL_ASSERT(ids[i] >= 0 && ids[i] < s->n_vocab && vals[i] > -INFINITY && vals[i] < INFINITY);
        s->cand[i] = (smp_cand){vals[i], ids[i]};
    }
    double u = smp_rng_uniform(s->rng);
    *out = smp_chain(s, n, true, u);
    return true;
}
