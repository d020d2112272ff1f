// attention.c — the CPU backend's causal attention and KV cache store, over caches of F32, F16 or Q8_0 rows
// (ll_kv_cache) and tokens of many sequences at their own positions (ll_batch_pos). Tokens alone in their
// sequence's run of the batch (decode) go by kv head: the G query heads that share one read each cache row once
// (attn_group: the tg hot path), or one (token, head) pair at a time where G = 1 or there are fewer kv head units
// than threads (attn_one). Runs of consecutive positions of one sequence (prompts) go by tiles (attn_tile). All
// read the cache directly: F16 and Q8_0 values are converted exactly to float on the way (16 at a time, or a tile's
// rows), so the results are those of the float values the cache holds.
#include <math.h>
#include <string.h>

#include "backend/cpu/cpu_internal.h"
#include "core/half.h"
#include "types/quant.h"

#if !defined(LL_PORTABLE) && (defined(__F16C__) || defined(__AVX512F__) || defined(__AVX2__))
#include <immintrin.h>
#endif
#if !defined(LL_PORTABLE) && defined(__F16C__)
#define ATT_F16C 1
#endif

#define INLINE static inline __attribute__((always_inline))

enum { MAX_HD = 512 };
#define ATT_KT 16          // keys per tile (exp16_le0's width)
#define ATT_TQ 16          // tokens per tile, at most
#define ATT_GC 256         // keys per chunk of attn_group, at most
#define ATT_GMAX 64        // query heads per kv head that attn_group takes, at most
#define ATT_SCRATCH 32768  // floats of scratch per thread, at least

// ---- cache rows ------------------------------------------------------------------------------------------

bool ll_cpu_kv_type_ok(uint32_t type) {
    return type == LL_TYPE_F32 || type == LL_TYPE_F16 || type == LL_TYPE_Q8_0;
}

// Bytes of n values of a cache type (n a multiple of 32 for Q8_0).
static size_t kv_bytes(uint32_t type, int n) {
    uint64_t b;
    LL_ASSERT(ll_cpu_kv_type_ok(type) && ll_type_row_size(type, (uint64_t)n, &b));
    return (size_t)b;
}

INLINE float h2f(uint16_t h) {
#if defined(ATT_F16C)
    return _cvtsh_ss(h);
#else
    return ll_fp16_to_fp32(h);
#endif
}

// 16 halves to floats, exactly (binary16 -> binary32 is exact; the same values as ll_fp16_to_fp32).
INLINE void h16_f32(const uint16_t *h, float *f) {
#if defined(ATT_F16C) && defined(__AVX512F__)
    _mm512_storeu_ps(f, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)h)));
#elif defined(ATT_F16C)
    _mm256_storeu_ps(f, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)h)));
    _mm256_storeu_ps(f + 8, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(h + 8))));
#else
    for (int u = 0; u < 16; u++) f[u] = ll_fp16_to_fp32(h[u]);
#endif
}

// 16 Q8_0 codes times d, as ll_quant_to_float_q8_0 computes them (one full-width store: the plain loop went through
// four 4-lane stores that the 16-lane load after them could not forward, 3x slower).
INLINE void q16_f32(const int8_t *q, float d, float *f) {
#if !defined(LL_PORTABLE) && defined(__AVX512F__)
    __m512 x = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)q)));
    _mm512_storeu_ps(f, _mm512_mul_ps(x, _mm512_set1_ps(d)));
#elif !defined(LL_PORTABLE) && defined(__AVX2__)
    for (int h = 0; h < 2; h++) {
        __m256 x = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(q + 8 * h))));
        _mm256_storeu_ps(f + 8 * h, _mm256_mul_ps(x, _mm256_set1_ps(d)));
    }
#else
    for (int u = 0; u < 16; u++) f[u] = (float)q[u] * d;
#endif
}

// n values of a cache row (or a head's slice of it) to floats: what attention computes with.
static void kv_to_f32(uint32_t type, const uint8_t *src, float *dst, int n) {
    if (type == LL_TYPE_F32) {
        memcpy(dst, src, (size_t)n * sizeof *dst);
    } else if (type == LL_TYPE_F16) {
        const uint16_t *h = (const uint16_t *)src;
        int i = 0;
        for (; i + 16 <= n; i += 16) h16_f32(h + i, dst + i);
        for (; i < n; i++) dst[i] = ll_fp16_to_fp32(h[i]);
    } else { // n % 32 == 0
        const ll_block_q8_0 *b = (const ll_block_q8_0 *)src;
        for (int i = 0; i < n; i += 16) q16_f32(b[i / 32].qs + i % 32, h2f(b[i / 32].d), dst + i);
    }
}

static void kv_from_f32(uint32_t type, const float *src, uint8_t *dst, int n) {
    if (type == LL_TYPE_F32) {
        memcpy(dst, src, (size_t)n * sizeof *src);
    } else if (type == LL_TYPE_F16) {
        uint16_t *h = (uint16_t *)dst;
        for (int i = 0; i < n; i++) h[i] = ll_fp32_to_fp16(src[i]);
    } else {
        ll_quant_from_float_ref_q8_0(src, dst, n); // llama.cpp's reference quantizer: the row ggml would store
    }
}

void ll_cpu_kv_store(ll_backend *b, const ll_kv_cache *kv, const float *k, const float *v, int kvd,
                     const ll_batch_pos *bp) {
    const size_t rb = kv_bytes(kv->type, kvd);
    for (int t = 0; t < bp->n_tok; t++) {
        const int row = bp->row0[t] + bp->pos[t];
        LL_ASSERT(bp->pos[t] >= 0 && bp->pos[t] < kv->n_ctx && bp->row0[t] >= 0 && row < kv->n_rows);
        kv_from_f32(kv->type, k + (size_t)t * kvd, (uint8_t *)kv->k + (size_t)row * rb, kvd);
        kv_from_f32(kv->type, v + (size_t)t * kvd, (uint8_t *)kv->v + (size_t)row * rb, kvd);
    }
}

// ---- e^x ------------------------------------------------------------------------------------------------

// e^x for x <= 0 (softmax after subtracting the maximum), inline instead of a libm call per score: x = n ln2 + r
// with |r| <= ln2/2 (ln2 in two parts), e^r by Cephes' expf polynomial (relative error ~1e-7; test_model compares
// whole forwards with a float64 reference), times 2^n in the exponent bits. x < -87.3 gives 0, NaN gives NaN
// (a NaN or infinite score makes its row's output NaN, as in the float64 reference). The argument of the float
// to int conversion is clamped to [-87.3, 0] first (NaN to -87.3), so that it is always in range (a NaN there was
// undefined behaviour: issue 24); x > 0 (never passed) gives 1.
// The pieces of exp_le0: xc = x clamped, n = round(xc / ln2), and e^r for r = xc - n ln2 (|r| <= ln2/2).
static inline float exp_clamp(float x) { return x >= -87.3f ? (x <= 0.0f ? x : 0.0f) : -87.3f; }
static inline int32_t exp_n(float xc) { return -(int32_t)(0.5f - xc * 1.44269504f); }
static inline float exp_r(float xc, int32_t n) {
    float fn = (float)n, r = xc - fn * 0.693359375f + fn * 2.12194440e-4f;
    float p = ((((1.9875691500e-4f * r + 1.3981999507e-3f) * r + 8.3334519073e-3f) * r + 4.1665795894e-2f) * r +
               1.6666665459e-1f) * r + 5.0000001201e-1f;
    return p * r * r + r + 1.0f;
}
static inline float exp_2n(int32_t n) { return ll_bits_f32((uint32_t)(n + 127) << 23); } // n in [-126, 0]

static inline float exp_le0(float x) {
    float xc = exp_clamp(x);
    int32_t n = exp_n(xc);
    float e = exp_r(xc, n) * exp_2n(n);
    return x < -87.3f ? 0.0f : x == x ? e : x;
}

// exp_le0 on 16 values in place, as loops of fixed width over arrays (the vectorizer takes those; the scalar
// function's bit cast and branches kept it scalar): the same arithmetic, so the same results.
static inline void exp16_le0(float *x) {
    float xc[16], p[16], two[16];
    int32_t n[16];
    uint32_t bits[16];
    for (int i = 0; i < 16; i++) xc[i] = exp_clamp(x[i]);
    for (int i = 0; i < 16; i++) n[i] = exp_n(xc[i]);
    for (int i = 0; i < 16; i++) p[i] = exp_r(xc[i], n[i]);
    for (int i = 0; i < 16; i++) bits[i] = (uint32_t)(n[i] + 127) << 23;
    memcpy(two, bits, sizeof two);
    for (int i = 0; i < 16; i++) x[i] = x[i] < -87.3f ? 0.0f : x[i] == x[i] ? p[i] * two[i] : x[i];
}

// The cache lines of a head slice of hb bytes, PF_ROWS rows ahead: one kv head's slices are a row apart (2 or 4
// KiB), a stride the hardware prefetchers did not follow, so each row was a demand miss to DRAM once the cache
// outgrew the last-level cache (F16 then took as long as F32 at 16k positions).
#define PF_ROWS 16
INLINE void prefetch_slice(const uint8_t *p, size_t hb) {
    for (size_t o = 0; o < hb; o += 64) __builtin_prefetch(p + o, 0, 3);
}

// ---- one (token, head) pair ---------------------------------------------------------------------------------

typedef struct attn_job {
    cpu_impl *c;
    float *out;
    const float *q;
    const ll_kv_cache *kv;
    const ll_batch_pos *bp;
    const ll_attn_params *p;
    size_t row_bytes, head_bytes; // a cache row (n_head_kv heads), one head's slice of it
    int tq;                       // tokens per tile (0: no tiles)
    int gc;                       // keys per chunk of attn_group (0: attn_one per head)
} attn_job;

// Halving steps of fixed width (8, 4, 2, 1 lanes): vector adds, where a running sum was 16 dependent adds.
INLINE float sum16(float *acc) {
    for (int u = 0; u < 8; u++) acc[u] += acc[u + 8];
    for (int u = 0; u < 4; u++) acc[u] += acc[u + 4];
    for (int u = 0; u < 2; u++) acc[u] += acc[u + 2];
    return acc[0] + acc[1];
}

// q . k over hd values of a cache head slice of type ty (a constant after inlining), with 16 independent partial
// sums: a plain loop is one serial FMA chain (C forbids reassociating it), this form vectorizes to one 16-lane
// FMA per step. F16 and Q8_0 values are converted exactly to float first (Q8_0: d * q, as ll_quant_to_float_q8_0).
INLINE float key_dot(uint32_t ty, const float *q, const uint8_t *k, int hd) {
    float acc[16] = {0};
    int i = 0;
    if (ty == LL_TYPE_F32) {
        const float *kf = (const float *)k;
        for (; i + 16 <= hd; i += 16)
            for (int u = 0; u < 16; u++) acc[u] += q[i + u] * kf[i + u];
        for (; i < hd; i++) acc[0] += q[i] * kf[i];
    } else if (ty == LL_TYPE_F16) {
        const uint16_t *kh = (const uint16_t *)k;
        for (; i + 16 <= hd; i += 16) {
            float kf[16];
            h16_f32(kh + i, kf);
            for (int u = 0; u < 16; u++) acc[u] += q[i + u] * kf[u];
        }
        for (; i < hd; i++) acc[0] += q[i] * ll_fp16_to_fp32(kh[i]);
    } else { // Q8_0, hd % 32 == 0
        const ll_block_q8_0 *kb = (const ll_block_q8_0 *)k;
        for (int blk = 0; blk < hd / 32; blk++, q += 32) {
            const float d = h2f(kb[blk].d);
            float kf[16];
            q16_f32(kb[blk].qs, d, kf);
            for (int u = 0; u < 16; u++) acc[u] += q[u] * kf[u];
            q16_f32(kb[blk].qs + 16, d, kf);
            for (int u = 0; u < 16; u++) acc[u] += q[u + 16] * kf[u];
        }
    }
    return sum16(acc);
}

// acc (hd) += w v for a cache head slice v of type ty, in 16-wide steps of a fixed trip count (the -O2
// vectorizer takes those; a loop to hd stayed scalar).
INLINE void v_axpy(uint32_t ty, float *restrict acc, float w, const uint8_t *restrict v, int hd) {
    const int hd16 = hd / 16 * 16;
    if (ty == LL_TYPE_F32) {
        const float *vf = (const float *)v;
        for (int i = 0; i < hd16; i += 16)
            for (int u = 0; u < 16; u++) acc[i + u] += w * vf[i + u];
        for (int i = hd16; i < hd; i++) acc[i] += w * vf[i];
    } else if (ty == LL_TYPE_F16) {
        const uint16_t *vh = (const uint16_t *)v;
        for (int i = 0; i < hd16; i += 16) {
            float vf[16];
            h16_f32(vh + i, vf);
            for (int u = 0; u < 16; u++) acc[i + u] += w * vf[u];
        }
        for (int i = hd16; i < hd; i++) acc[i] += w * ll_fp16_to_fp32(vh[i]);
    } else {
        const ll_block_q8_0 *vb = (const ll_block_q8_0 *)v;
        for (int blk = 0; blk < hd / 32; blk++) {
            const float d = h2f(vb[blk].d);
            float *a = acc + blk * 32, vf[16];
            q16_f32(vb[blk].qs, d, vf);
            for (int u = 0; u < 16; u++) a[u] += w * vf[u];
            q16_f32(vb[blk].qs + 16, d, vf);
            for (int u = 0; u < 16; u++) a[u + 16] += w * vf[u];
        }
    }
}

// softmax(q k^T * scale) v over n_keys cache rows from kb, vb (one head's slices, row_bytes apart) into o.
INLINE void attn_one_t(uint32_t ty, const attn_job *j, float *sc, const float *q, const uint8_t *kb,
                       const uint8_t *vb, int n_keys, float *o) {
    const int hd = j->p->head_dim;
    const size_t rb = j->row_bytes;
    float mx = -INFINITY;
    for (int s = 0; s < n_keys; s++) {
        if (s + PF_ROWS < n_keys) prefetch_slice(kb + (size_t)(s + PF_ROWS) * rb, j->head_bytes);
        sc[s] = key_dot(ty, q, kb + (size_t)s * rb, hd) * j->p->scale;
        if (sc[s] > mx) mx = sc[s];
    }
    double sum = 0;
    for (int s = 0; s < n_keys; s++) {
        sc[s] = exp_le0(sc[s] - mx);
        sum += sc[s];
    }
    float inv = (float)(1.0 / sum);
    float acc[MAX_HD]; // a local accumulator: the compiler knows it aliases nothing, so the loop vectorizes
    for (int i = 0; i < hd; i++) acc[i] = 0;
    for (int s = 0; s < n_keys; s++) {
        if (s + PF_ROWS < n_keys) prefetch_slice(vb + (size_t)(s + PF_ROWS) * rb, j->head_bytes);
        v_axpy(ty, acc, sc[s] * inv, vb + (size_t)s * rb, hd);
    }
    memcpy(o, acc, (size_t)hd * sizeof(float));
}

// One (token, head) pair: softmax(q k^T * scale) v over the rows row0[t] .. row0[t] + pos[t].
static void attn_one(const attn_job *j, float *sc, int t, int h) {
    const ll_attn_params *p = j->p;
    const int hd = p->head_dim, kh = h / (p->n_head / p->n_head_kv), n_keys = j->bp->pos[t] + 1;
    const size_t off = (size_t)j->bp->row0[t] * j->row_bytes + (size_t)kh * j->head_bytes;
    const uint8_t *kb = (const uint8_t *)j->kv->k + off, *vb = (const uint8_t *)j->kv->v + off;
    const float *q = j->q + ((size_t)t * p->n_head + h) * hd;
    float *o = j->out + ((size_t)t * p->n_head + h) * hd;
    switch (j->kv->type) {
    case LL_TYPE_F32: attn_one_t(LL_TYPE_F32, j, sc, q, kb, vb, n_keys, o); break;
    case LL_TYPE_F16: attn_one_t(LL_TYPE_F16, j, sc, q, kb, vb, n_keys, o); break;
    default: attn_one_t(LL_TYPE_Q8_0, j, sc, q, kb, vb, n_keys, o); break;
    }
}

// A decode token's G = n_head / n_head_kv query heads that read one kv head, together: each K and V row is read
// (and converted, for F16 and Q8_0) once for the G heads instead of G times (the decode step is bound by reading
// the cache). Keys go by in chunks of gc with an online softmax (running max m, sum l, accumulators rescaled when
// the max grows, as in attn_tile), so the scratch does not grow with the context.
// Scratch: sc (G x gc), acc (G x hd), m, l (G).
static int attn_gc(const ll_attn_params *p) {
    const int G = p->n_head / p->n_head_kv, hd = p->head_dim;
    int gc = (ATT_SCRATCH - G * (hd + 2)) / G / ATT_KT * ATT_KT;
    return G < 2 || G > ATT_GMAX ? 0 : gc > ATT_GC ? ATT_GC : gc >= ATT_KT ? gc : 0;
}

// Values i .. i + 15 of a cache head slice of type ty as floats (i % 16 == 0; exact conversions).
INLINE void k16(uint32_t ty, const uint8_t *k, int i, float *f) {
    if (ty == LL_TYPE_F32) {
        memcpy(f, (const float *)k + i, 16 * sizeof *f);
    } else if (ty == LL_TYPE_F16) {
        h16_f32((const uint16_t *)k + i, f);
    } else {
        const ll_block_q8_0 *b = (const ll_block_q8_0 *)k + i / 32;
        q16_f32(b->qs + i % 32, h2f(b->d), f);
    }
}

// out[c] = q[c] . k for four query rows and one cache head slice (hd % 16 == 0): the slice is loaded and converted
// once for the four, 16 lanes of partial sums each.
INLINE void dots4(uint32_t ty, const float *const q[4], const uint8_t *k, int hd, float *out) {
    float a0[16] = {0}, a1[16] = {0}, a2[16] = {0}, a3[16] = {0};
    for (int i = 0; i < hd; i += 16) {
        float kf[16];
        k16(ty, k, i, kf);
        for (int u = 0; u < 16; u++) a0[u] += q[0][i + u] * kf[u];
        for (int u = 0; u < 16; u++) a1[u] += q[1][i + u] * kf[u];
        for (int u = 0; u < 16; u++) a2[u] += q[2][i + u] * kf[u];
        for (int u = 0; u < 16; u++) a3[u] += q[3][i + u] * kf[u];
    }
    out[0] = sum16(a0), out[1] = sum16(a1), out[2] = sum16(a2), out[3] = sum16(a3);
}

// acc[g] (G rows of hd) += w[g] v for one cache head slice v (hd % 16 == 0), converted once for the G rows.
INLINE void axpy_g(uint32_t ty, float *restrict acc, const float *restrict w, int G, const uint8_t *restrict v,
                   int hd) {
    for (int i = 0; i < hd; i += 16) {
        float vf[16];
        k16(ty, v, i, vf);
        for (int g = 0; g < G; g++)
            for (int u = 0; u < 16; u++) acc[(size_t)g * hd + i + u] += w[g] * vf[u];
    }
}

#if defined(__GNUC__) && !defined(__clang__)
__attribute__((optimize("tree-vectorize"))) // the 16-lane e^x loop (see attn_tile)
#endif
static void group_softmax(float *sc, int G, int C, int nk, float *m, float *l, float *acc, int hd) {
    const int nk16 = (nk + ATT_KT - 1) / ATT_KT * ATT_KT;
    for (int g = 0; g < G; g++) {
        float *sg = sc + (size_t)g * C, mx = -INFINITY, sum = 0.0f;
        for (int s = 0; s < nk; s++) mx = sg[s] > mx ? sg[s] : mx;
        for (int s = nk; s < nk16; s++) sg[s] = -INFINITY; // e^-inf = 0
        const float mn = mx > m[g] ? mx : m[g], corr = m[g] == -INFINITY ? 0.0f : exp_le0(m[g] - mn);
        for (int s0 = 0; s0 < nk16; s0 += ATT_KT) {
            for (int i = 0; i < ATT_KT; i++) sg[s0 + i] -= mn;
            exp16_le0(sg + s0);
            for (int i = 0; i < ATT_KT; i++) sum += sg[s0 + i];
        }
        l[g] = l[g] * corr + sum;
        m[g] = mn;
        if (corr != 1.0f)
            for (int d = 0; d < hd; d++) acc[(size_t)g * hd + d] *= corr;
    }
}

INLINE void attn_group_t(uint32_t ty, const attn_job *j, float *scr, int t, int kh) {
    const ll_attn_params *p = j->p;
    const int G = p->n_head / p->n_head_kv, hd = p->head_dim, C = j->gc, n_keys = j->bp->pos[t] + 1;
    const size_t rb = j->row_bytes, off = (size_t)j->bp->row0[t] * rb + (size_t)kh * j->head_bytes;
    const uint8_t *kb = (const uint8_t *)j->kv->k + off, *vb = (const uint8_t *)j->kv->v + off;
    const float *q0 = j->q + ((size_t)t * p->n_head + (size_t)kh * G) * hd; // the G heads' rows, one after another
    float *sc = scr, *acc = sc + (size_t)G * C, *m = acc + (size_t)G * hd, *l = m + G;
    for (int g = 0; g < G; g++) m[g] = -INFINITY, l[g] = 0.0f;
    memset(acc, 0, (size_t)G * hd * sizeof *acc);
    for (int k0 = 0; k0 < n_keys; k0 += C) {
        const int nk = n_keys - k0 < C ? n_keys - k0 : C;
        for (int s = 0; s < nk; s++) {
            const uint8_t *kr = kb + (size_t)(k0 + s) * rb;
            if (k0 + s + PF_ROWS < n_keys) prefetch_slice(kr + PF_ROWS * rb, j->head_bytes);
            for (int g0 = 0; g0 < G; g0 += 4) { // heads in fours (the last four repeat head G - 1 where G % 4)
                const float *q4[4];
                float d4[4];
                for (int c = 0; c < 4; c++) q4[c] = q0 + (size_t)(g0 + c < G ? g0 + c : G - 1) * hd;
                dots4(ty, q4, kr, hd, d4);
                for (int c = 0; c < 4 && g0 + c < G; c++) sc[(size_t)(g0 + c) * C + s] = d4[c] * p->scale;
            }
        }
        group_softmax(sc, G, C, nk, m, l, acc, hd);
        for (int s = 0; s < nk; s++) {
            float w[ATT_GMAX];
            for (int g = 0; g < G; g++) w[g] = sc[(size_t)g * C + s];
            if (k0 + s + PF_ROWS < n_keys) prefetch_slice(vb + (size_t)(k0 + s + PF_ROWS) * rb, j->head_bytes);
            axpy_g(ty, acc, w, G, vb + (size_t)(k0 + s) * rb, hd);
        }
    }
    for (int g = 0; g < G; g++) {
        const float inv = 1.0f / l[g];
        float *o = j->out + ((size_t)t * p->n_head + (size_t)kh * G + g) * hd;
        for (int d = 0; d < hd; d++) o[d] = acc[(size_t)g * hd + d] * inv;
    }
}

static void attn_group(const attn_job *j, float *scr, int t, int kh) {
    switch (j->kv->type) {
    case LL_TYPE_F32: attn_group_t(LL_TYPE_F32, j, scr, t, kh); break;
    case LL_TYPE_F16: attn_group_t(LL_TYPE_F16, j, scr, t, kh); break;
    default: attn_group_t(LL_TYPE_Q8_0, j, scr, t, kh); break;
    }
}

// ---- tiles: runs of consecutive positions of one sequence -------------------------------------------------

// A work unit is one kv head and a block of up to ATT_TQ consecutive tokens of one sequence, i.e. the tq x G query
// rows that read that head's keys (G = n_head / n_head_kv). Keys go by in tiles of ATT_KT, each transposed once
// (converted to float) into kT (hd x ATT_KT) for every row: a row's ATT_KT scores are hd multiply-adds of 16 lanes
// (no horizontal sum per key), then an online softmax (running max m, sum l, accumulator rescaled when the max
// grows; Milakov & Gimelshein 2018, as in FlashAttention) and P.V as 16-wide steps (F16 and Q8_0 V rows of the
// tile converted to float once, into vt). A row skips the tiles past its causal limit.
// Scratch per thread: ATT_SCRATCH floats (kT, vt, kr, m, l, the rows' accumulators).
size_t ll_cpu_attn_scratch_floats(int max_ctx) { return (size_t)(max_ctx > ATT_SCRATCH ? max_ctx : ATT_SCRATCH); }

static int attn_tq(const ll_attn_params *p) {
    const int G = p->n_head / p->n_head_kv, hd = p->head_dim;
    int tq = (ATT_SCRATCH - hd * (2 * ATT_KT + 1)) / (G * (hd + 2));
    return tq > ATT_TQ ? ATT_TQ : tq;
}

// One row's scores against the tile kT (hd x ATT_KT): four independent chains of multiply-adds (one chain of hd
// was the tile's critical path).
static inline void tile_scores(const float *q, const float *kT, int hd, float *s) {
    float s4[4][ATT_KT] = {{0}};
    int e = 0;
    for (; e + 4 <= hd; e += 4)
        for (int c = 0; c < 4; c++)
            for (int i = 0; i < ATT_KT; i++) s4[c][i] += q[e + c] * kT[(e + c) * ATT_KT + i];
    for (; e < hd; e++)
        for (int i = 0; i < ATT_KT; i++) s4[0][i] += q[e] * kT[e * ATT_KT + i];
    for (int i = 0; i < ATT_KT; i++) s[i] = (s4[0][i] + s4[1][i]) + (s4[2][i] + s4[3][i]);
}

// Rows of the tile k0 .. k0 + nk - 1 (one head's slices): K transposed into kT (zero past nk), V as floats: *v0
// points at the first row's values and *vs is the stride in floats (F32: the cache itself; else vt).
static void tile_load(const attn_job *j, const uint8_t *kb, const uint8_t *vb, int k0, int nk, float *kT, float *vt,
                      float *kr, const float **v0, size_t *vs) {
    const int hd = j->p->head_dim;
    const uint32_t ty = j->kv->type;
    const size_t rb = j->row_bytes;
    for (int i = 0; i < ATT_KT; i++) {
        if (i >= nk) {
            for (int d = 0; d < hd; d++) kT[d * ATT_KT + i] = 0.0f;
            continue;
        }
        const uint8_t *k = kb + (size_t)(k0 + i) * rb;
        const float *kf = (const float *)k;
        if (ty != LL_TYPE_F32) kv_to_f32(ty, k, kr, hd), kf = kr;
        for (int d = 0; d < hd; d++) kT[d * ATT_KT + i] = kf[d];
    }
    if (ty == LL_TYPE_F32) {
        *v0 = (const float *)(vb + (size_t)k0 * rb);
        *vs = rb / sizeof(float);
        return;
    }
    for (int i = 0; i < nk; i++) kv_to_f32(ty, vb + (size_t)(k0 + i) * rb, vt + (size_t)i * hd, hd);
    *v0 = vt;
    *vs = (size_t)hd;
}

#if defined(__GNUC__) && !defined(__clang__)
__attribute__((optimize("tree-vectorize"))) // GCC's -O2 leaves the 16-lane e^x loop scalar (clang vectorizes at -O2)
#endif
static void attn_tile(const attn_job *j, float *scr, int kh, int t0, int tn) {
    const ll_attn_params *p = j->p;
    const int G = p->n_head / p->n_head_kv, hd = p->head_dim, rows = tn * G, hd16 = hd / 16 * 16;
    const int32_t *pos = j->bp->pos;
    float *kT = scr, *vt = kT + (size_t)hd * ATT_KT, *kr = vt + (size_t)hd * ATT_KT, *m = kr + hd, *l = m + rows,
          *acc = l + rows;
    const size_t off = (size_t)j->bp->row0[t0] * j->row_bytes + (size_t)kh * j->head_bytes;
    const uint8_t *kb = (const uint8_t *)j->kv->k + off, *vb = (const uint8_t *)j->kv->v + off;
    for (int r = 0; r < rows; r++) m[r] = -INFINITY, l[r] = 0.0f;
    memset(acc, 0, (size_t)rows * hd * sizeof *acc);
    const int n_keys = pos[t0 + tn - 1] + 1; // the last token's
    for (int k0 = 0; k0 < n_keys; k0 += ATT_KT) {
        const int nk = n_keys - k0 < ATT_KT ? n_keys - k0 : ATT_KT;
        const float *v0;
        size_t vs;
        tile_load(j, kb, vb, k0, nk, kT, vt, kr, &v0, &vs);
        for (int r = 0; r < rows; r++) {
            const int t = t0 + r / G, h = kh * G + r % G, vis = pos[t] + 1 - k0; // visible keys of the tile
            if (vis <= 0) continue;
            const int nv = vis < nk ? vis : nk;
            float s[ATT_KT];
            tile_scores(j->q + ((size_t)t * p->n_head + h) * hd, kT, hd, s);
            // fixed 16-lane loops (masked keys at -inf, e^-inf = 0): the -O2 vectorizer takes those
            float mt = -INFINITY;
            for (int i = 0; i < ATT_KT; i++) {
                s[i] = i < nv ? s[i] * p->scale : -INFINITY;
                mt = s[i] > mt ? s[i] : mt;
            }
            const float mn = mt > m[r] ? mt : m[r], corr = m[r] == -INFINITY ? 0.0f : exp_le0(m[r] - mn);
            float sum = 0.0f;
            for (int i = 0; i < ATT_KT; i++) s[i] -= mn;
            exp16_le0(s);
            for (int i = 0; i < ATT_KT; i++) sum += s[i];
            l[r] = l[r] * corr + sum;
            m[r] = mn;
            // a local copy of the row's accumulator: the compiler knows it aliases neither V nor the scratch, so
            // the 16-wide steps vectorize and stay in registers (through the scratch pointer they did not: 2x slower)
            float a[MAX_HD];
            float *ar = acc + (size_t)r * hd;
            for (int d = 0; d < hd; d++) a[d] = ar[d] * corr;
            for (int d = 0; d < hd16; d += 16) { // 16 dims in one register across the tile's keys: one store each
                float t16[16];
                for (int u = 0; u < 16; u++) t16[u] = a[d + u];
                for (int i = 0; i < nv; i++) {
                    const float *v = v0 + (size_t)i * vs + d, w = s[i];
                    for (int u = 0; u < 16; u++) t16[u] += w * v[u];
                }
                for (int u = 0; u < 16; u++) a[d + u] = t16[u];
            }
            for (int i = 0; i < nv; i++)
                for (int d = hd16; d < hd; d++) a[d] += s[i] * v0[(size_t)i * vs + d];
            memcpy(ar, a, (size_t)hd * sizeof *a);
        }
    }
    for (int r = 0; r < rows; r++) {
        const int t = t0 + r / G, h = kh * G + r % G;
        const float inv = 1.0f / l[r];
        float *o = j->out + ((size_t)t * p->n_head + h) * hd;
        for (int d = 0; d < hd; d++) o[d] = acc[(size_t)r * hd + d] * inv;
    }
}

// ---- the op -----------------------------------------------------------------------------------------------

// End of the run of tokens from t: consecutive positions of one sequence.
static int run_end(const ll_batch_pos *bp, int t) {
    if (bp->single) return bp->n_tok;
    int e = t + 1;
    while (e < bp->n_tok && bp->row0[e] == bp->row0[t] && bp->pos[e] == bp->pos[e - 1] + 1) e++;
    return e;
}

// Work units, numbered across the batch and dealt out in turn: per run of two or more tokens (tiles on), its
// (token block, kv head) units, the costliest (last) token blocks first; per other token, its (token, head) pairs
// (under the causal mask a token costs pos + 1 keys, so contiguous ranges gave the last thread about three times
// the first one's work in a prefill).
static void attn_worker(void *vctx, int ith, int nth) {
    const attn_job *j = vctx;
    float *sc = j->c->scores + (size_t)ith * j->c->scr_floats;
    const int n_head = j->p->n_head, n_kv = j->p->n_head_kv, tq = j->tq;
    int64_t u = 0;
    for (int t = 0, e; t < j->bp->n_tok; t = e) {
        e = run_end(j->bp, t);
        if (e - t >= 2 && tq >= 1) {
            const int nblk = (e - t + tq - 1) / tq;
            for (int v = 0; v < nblk * n_kv; v++, u++) {
                if (u % nth != ith) continue;
                const int t0 = t + (nblk - 1 - v / n_kv) * tq;
                attn_tile(j, sc, v % n_kv, t0, e - t0 < tq ? e - t0 : tq);
            }
            continue;
        }
        for (int tt = t; tt < e; tt++) {
            if (j->gc) {
                for (int kh = 0; kh < n_kv; kh++, u++)
                    if (u % nth == ith) attn_group(j, sc, tt, kh);
            } else {
                for (int h = 0; h < n_head; h++, u++)
                    if (u % nth == ith) attn_one(j, sc, tt, h);
            }
        }
    }
}

void ll_cpu_attention(ll_backend *b, float *out, const float *q, const ll_kv_cache *kv, const ll_batch_pos *bp,
                      const ll_attn_params *p) {
    cpu_impl *c = b->impl;
    LL_ASSERT(p->n_head_kv > 0 && p->n_head % p->n_head_kv == 0 && p->head_dim <= MAX_HD);
    LL_ASSERT(kv->type != LL_TYPE_Q8_0 || p->head_dim % 32 == 0);
    for (int t = 0; t < bp->n_tok; t++)
        LL_ASSERT(bp->pos[t] >= 0 && bp->pos[t] < c->max_ctx && bp->pos[t] < kv->n_ctx && bp->row0[t] >= 0 &&
                  bp->row0[t] + bp->pos[t] < kv->n_rows);
    attn_job j = {c, out, q, kv, bp, p, kv_bytes(kv->type, p->n_head_kv * p->head_dim),
                  kv_bytes(kv->type, p->head_dim), bp->n_tok > 1 ? attn_tq(p) : 0, 0};
    // decode tokens by kv head groups where that leaves every thread work; else by single heads
    if (p->head_dim % 16 == 0 && (int64_t)bp->n_tok * p->n_head_kv >= c->n_threads)
        j.gc = attn_gc(p);
    ll_pool_run(c->pool, attn_worker, &j);
}
