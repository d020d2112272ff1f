// qmatmul_x86.c — x86 kernels for quantized weights: AVX-512 VNNI (vpdpbusd on 256-bit vectors) or AVX2
// (vpmaddubsw) integer dots per 32-block, scales in f32; tiles of rows x tokens so a block serves every token.
#include "backend/cpu/matmul_q.h"

#if !defined(LL_PORTABLE) && defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) &&          \
    defined(__AVX512VNNI__)
#define QX_VNNI 1
#define QX_ISA "avx512vnni"
#define QX_NT 4 // token tile: 4 rows x 4 tokens of ymm accumulators (32 ymm registers with AVX-512)
#elif !defined(LL_PORTABLE) && defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#define QX_AVX2 1
#define QX_ISA "avx2"
#define QX_NT 2 // 16 ymm registers: 4 rows x 2 tokens
#endif

#if defined(QX_VNNI) || defined(QX_AVX2)
#include <immintrin.h>

#include "backend/cpu/kquant_x86.h"

#define INLINE static inline __attribute__((always_inline))

static inline size_t al64(size_t n) { return ll_align_up(n, 64); }

// ---- signed int8 x int8 dots of 32 pairs, summed in 8 int32 lanes ---------------------------------------------
// vpdpbusd multiplies unsigned by signed bytes: with x' = x + 128 (x ^ 0x80), sum x' w = sum x w + 128 sum w, so
// a prepared weight carries -128 sum w (per lane) as the accumulator's start. AVX2's vpmaddubsw (also unsigned x
// signed, saturating int16 pairs) gets |w| and x with w's sign instead: |w|, |x| <= 127 never saturate.
typedef struct qw {
    __m256i a, b; // VNNI: w, -128 * lane sums of w; AVX2: |w|, w
} qw;

INLINE qw qw_prep(__m256i w) {
#if defined(QX_VNNI)
    __m256i c = _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_set1_epi8((char)0x80), w);
    return (qw){w, _mm256_sub_epi32(_mm256_setzero_si256(), c)};
#else
    return (qw){_mm256_sign_epi8(w, w), w};
#endif
}

INLINE __m256i qx_prep(__m256i x) {
#if defined(QX_VNNI)
    return _mm256_xor_si256(x, _mm256_set1_epi8((char)0x80));
#else
    return x;
#endif
}

INLINE __m256i q_idot(qw w, __m256i x) {
#if defined(QX_VNNI)
    return _mm256_dpbusd_epi32(w.b, x, w.a);
#else
    return _mm256_madd_epi16(_mm256_maddubs_epi16(w.a, _mm256_sign_epi8(x, w.b)), _mm256_set1_epi16(1));
#endif
}

INLINE float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

INLINE float fp16_at(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return _cvtsh_ss(h);
}

// ---- legacy blocks of 32 (Q8_0, Q4_0, Q5_0; activations Q8_0) ----------------------------------------------------

// The 32 nibbles of 16 bytes in element order: low nibbles are elements 0-15, high nibbles 16-31.
INLINE __m256i nibbles32(const uint8_t *qs) {
    __m128i q = _mm_loadu_si128((const __m128i *)qs), m = _mm_set1_epi8(0x0F);
    return _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(q, 4), m), _mm_and_si128(q, m));
}

// Byte j = 0xFF where bit j of the little-endian 32-bit qh is set.
INLINE __m256i bits32(const uint8_t *qh) {
    uint32_t v;
    memcpy(&v, qh, 4);
    const __m256i idx = _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202, 0x0101010101010101, 0);
    const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ULL);
    __m256i b = _mm256_shuffle_epi8(_mm256_set1_epi32((int)v), idx);
    return _mm256_cmpeq_epi8(_mm256_and_si256(b, bit), bit);
}

// Block b of a weight row as 32 signed int8 in element order, and its scale.
INLINE __m256i leg_unpack(uint32_t ty, const uint8_t *blk, float *d) {
    *d = fp16_at(blk);
    if (ty == LL_TYPE_Q8_0) return _mm256_loadu_si256((const __m256i *)(blk + 2));
    if (ty == LL_TYPE_Q4_0) return _mm256_sub_epi8(nibbles32(blk + 2), _mm256_set1_epi8(8));
    // Q5_0: qh (4 bytes) then qs
    __m256i hi = _mm256_and_si256(bits32(blk + 2), _mm256_set1_epi8(0x10));
    return _mm256_sub_epi8(_mm256_or_si256(nibbles32(blk + 6), hi), _mm256_set1_epi8(16));
}

static inline size_t leg_bytes(uint32_t ty) { return ty == LL_TYPE_Q8_0 ? 34 : ty == LL_TYPE_Q4_0 ? 18 : 22; }

// y[t][o + r] for R rows x T tokens from token t0: one ymm of f32 partial sums per (row, token); per block the R
// weight blocks are unpacked once and dotted with each token's block.
INLINE void leg_tile(uint32_t ty, const ll_mm_job *j, int o, int t0, const int R, const int T) {
    const int nb = j->n_in / 32;
    const size_t bs = leg_bytes(ty);
    const uint8_t *w = j->W + (size_t)o * j->row_bytes, *xq[QX_NT];
    const float *xd[QX_NT];
    for (int t = 0; t < T; t++) {
        xq[t] = (const uint8_t *)j->xa + (size_t)(t0 + t) * j->xa_stride + 2;
        xd[t] = (const float *)((const uint8_t *)j->xa + (size_t)(t0 + t) * j->xa_stride + al64((size_t)nb * 34));
    }
    __m256 acc[4][QX_NT];
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int t = 0; t < T; t++) acc[r][t] = _mm256_setzero_ps();
    for (int b = 0; b < nb; b++) {
        qw wv[4];
        float dw[4];
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) wv[r] = qw_prep(leg_unpack(ty, w + (size_t)r * j->row_bytes + (size_t)b * bs, &dw[r]));
#pragma GCC unroll 4
        for (int t = 0; t < T; t++) {
            __m256i xv = qx_prep(_mm256_loadu_si256((const __m256i *)(xq[t] + (size_t)b * 34)));
            float dx = xd[t][b];
#pragma GCC unroll 4
            for (int r = 0; r < R; r++)
                acc[r][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(q_idot(wv[r], xv)), _mm256_set1_ps(dw[r] * dx), acc[r][t]);
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int t = 0; t < T; t++) j->y[(size_t)(t0 + t) * (size_t)j->n_out + (size_t)(o + r)] = hsum8(acc[r][t]);
}

#if defined(QX_VNNI)
// Q4_0 / Q5_0 / Q8_0 with n_in a multiple of 64: two blocks per zmm, half the vector work of the per-block tile.
// Q4_0 (Q5_0 alike, bit 4 from qh, offset 16): the nibbles go in unsigned (q = u - 8) as [lo_b, lo_b+1, hi_b, hi_b+1] and x in the matching order;
// -8 sum x (the activations' exact block sums) starts int32 lanes 0 and 4; lanes 0-3 and 8-11 belong to block b.
// Q8_0: [w_b, w_b+1] signed, x ^ 0x80 and -128 sum w (per lane) as in the tiles; lanes 0-7 are block b.
// Scales: [d_b, d_b+1] spread to those lanes for weights and activations, one multiply per (row, token).
// Prefill: the 4 rows' prepared weights per block pair, made once per row group (zp_pack) and read by every
// token tile (P = true) instead of unpacking them again per tile.
typedef struct zp_pair {
    __m512i u[4], nc[4];
    __m512 dw[4];
} zp_pair;

// Blocks b, b+1 of one row (p: block b) as the zmm tile wants them: codes, -128 sum w (Q8_0) and scales.
INLINE void z_wprep(uint32_t ty, const uint8_t *p, size_t bs, __m512i sidx, __m512i *wv, __m512i *nc, __m512 *dw) {
    uint16_t h0, h1;
    memcpy(&h0, p, 2);
    memcpy(&h1, p + bs, 2);
    *dw = _mm512_permutexvar_ps(sidx, _mm512_castps128_ps512(_mm_cvtph_ps(_mm_insert_epi16(_mm_cvtsi32_si128(h0), h1, 1))));
    if (ty == LL_TYPE_Q4_0 || ty == LL_TYPE_Q5_0) {
        const size_t qo = ty == LL_TYPE_Q5_0 ? 6 : 2; // Q5_0: d, qh[4], qs[16]
        __m256i q = _mm256_loadu2_m128i((const __m128i *)(p + bs + qo), (const __m128i *)(p + qo));
        *wv = _mm512_and_si512(_mm512_inserti64x4(_mm512_castsi256_si512(q), _mm256_srli_epi16(q, 4), 1),
                               _mm512_set1_epi8(0x0F));
        if (ty == LL_TYPE_Q5_0) { // bit 4 of each code from qh, in the byte order above
            uint32_t b0, b1;
            memcpy(&b0, p + 2, 4);
            memcpy(&b1, p + bs + 2, 4);
            uint64_t m = (uint64_t)(b0 & 0xFFFF) | (uint64_t)(b1 & 0xFFFF) << 16 | (uint64_t)(b0 >> 16) << 32 |
                         (uint64_t)(b1 >> 16) << 48;
            *wv = _mm512_or_si512(*wv, _mm512_maskz_mov_epi8(m, _mm512_set1_epi8(0x10)));
        }
        *nc = _mm512_setzero_si512();
    } else {
        *wv = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(p + 2))),
                                 _mm256_loadu_si256((const __m256i *)(p + bs + 2)), 1);
        *nc = _mm512_sub_epi32(_mm512_setzero_si512(),
                               _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_set1_epi8((char)0x80), *wv));
    }
}

INLINE void leg_ztile_p(uint32_t ty, const ll_mm_job *j, const zp_pair *pp, const bool P, int o, int t0, const int R,
                        const int T) {
    const int nb = j->n_in / 32;
    const size_t bs = leg_bytes(ty), rb = j->row_bytes;
    const uint8_t *w = j->W + (size_t)o * rb, *xq[QX_NT];
    const float *xd[QX_NT];
    const int32_t *xs[QX_NT];
    for (int t = 0; t < T; t++) {
        const uint8_t *row = (const uint8_t *)j->xa + (size_t)(t0 + t) * j->xa_stride;
        xq[t] = row + 2;
        xd[t] = (const float *)(row + al64((size_t)nb * 34));
        xs[t] = (const int32_t *)(xd[t] + nb);
    }
    const bool q4 = ty == LL_TYPE_Q4_0 || ty == LL_TYPE_Q5_0; // unsigned codes, offset off
    const int off = ty == LL_TYPE_Q5_0 ? -16 : -8;
    const __m512i c80 = _mm512_set1_epi8((char)0x80);
    const __m512i xidx = _mm512_set_epi64(11, 10, 3, 2, 9, 8, 1, 0);
    const __m512i sidx = q4 ? _mm512_set_epi32(1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0)
                            : _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
    __m512 acc[4][QX_NT];
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int t = 0; t < T; t++) acc[r][t] = _mm512_setzero_ps();
    for (int b = 0; b < nb; b += 2) {
        __m512i wv[4], nc[4];
        __m512 dw[4];
#pragma GCC unroll 4
        for (int r = 0; r < R && P; r++) {
            wv[r] = pp[b / 2].u[r];
            nc[r] = pp[b / 2].nc[r];
            dw[r] = pp[b / 2].dw[r];
        }
#pragma GCC unroll 4
        for (int r = 0; r < R && !P; r++) {
            const uint8_t *p = w + (size_t)r * rb + (size_t)b * bs;
            z_wprep(ty, p, bs, sidx, &wv[r], &nc[r], &dw[r]);
        }
        if (T == 0) { // zp_pack
#pragma GCC unroll 4
            for (int r = 0; r < R; r++) {
                ((zp_pair *)pp)[b / 2].u[r] = wv[r];
                ((zp_pair *)pp)[b / 2].nc[r] = nc[r];
                ((zp_pair *)pp)[b / 2].dw[r] = dw[r];
            }
            continue;
        }
#pragma GCC unroll 4
        for (int t = 0; t < T; t++) {
            __m512i x0 = _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(xq[t] + (size_t)b * 34)));
            __m512i x1 = _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(xq[t] + (size_t)(b + 1) * 34)));
            __m512 dx = _mm512_permutexvar_ps(sidx, _mm512_castps128_ps512(_mm_castsi128_ps(_mm_loadl_epi64((const __m128i *)(xd[t] + b)))));
            __m512i xv, init = _mm512_setzero_si512();
            if (q4) {
                xv = _mm512_permutex2var_epi64(x0, xidx, x1);
                init = _mm512_mask_set1_epi32(_mm512_maskz_set1_epi32(0x0001, off * xs[t][b]), 0x0010, off * xs[t][b + 1]);
            } else {
                xv = _mm512_xor_si512(_mm512_inserti64x4(x0, _mm512_castsi512_si256(x1), 1), c80);
            }
#pragma GCC unroll 4
            for (int r = 0; r < R; r++) {
                __m512i dp = q4 ? _mm512_dpbusd_epi32(init, wv[r], xv) : _mm512_dpbusd_epi32(nc[r], xv, wv[r]);
                acc[r][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dp), _mm512_mul_ps(dw[r], dx), acc[r][t]);
            }
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int t = 0; t < T; t++) j->y[(size_t)(t0 + t) * (size_t)j->n_out + (size_t)(o + r)] = _mm512_reduce_add_ps(acc[r][t]);
}

INLINE void leg_ztile(uint32_t ty, const ll_mm_job *j, int o, int t0, const int R, const int T) {
    leg_ztile_p(ty, j, NULL, false, o, t0, R, T);
}

static size_t zp_tsp(int n_in) { return (size_t)(n_in / 64) * sizeof(zp_pair); }

// One pair of blocks (b, b + 1) of a row for lr_rows: acc + the pair's scaled int32 sums; accc gathers the
// offset terms (Q4_0/Q5_0). A function of its own so the caller keeps two accumulators in registers (indexing an
// array of them by the pair's parity put them on the stack: a store-to-load chain per pair).
INLINE __m512 lr_pair(uint32_t ty, const uint8_t *w, size_t bs, int b, const int8_t *lx, const float *xd, const float *xc,
                      __m512 acc, __m128 *accc_p) {
    const __m512i mlh = _mm512_mask_blend_epi64(0xCC, _mm512_set1_epi8(0x0F), _mm512_set1_epi8((char)0xF0));
    const __m512i c80 = _mm512_set1_epi8((char)0x80), m4 = _mm512_set1_epi8(0x0F), b4 = _mm512_set1_epi8(0x10);
    const __m512i shift = _mm512_maskz_mov_epi64(0xCC, _mm512_set1_epi16(4));
    const __m512i sidx = _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
    __m128 accc = *accc_p;
    const uint8_t *p = w + (size_t)b * bs;
    uint16_t h0, h1;
    memcpy(&h0, p, 2);
    memcpy(&h1, p + bs, 2);
    __m128 dw = _mm_cvtph_ps(_mm_cvtsi32_si128((int)((uint32_t)h0 | (uint32_t)h1 << 16)));
    __m128 sc2 = _mm_mul_ps(dw, _mm_castsi128_ps(_mm_loadl_epi64((const __m128i *)(xd + b))));
    __m512i xv = _mm512_loadu_si512((const void *)(lx + (size_t)b * 32)), dp;
    if (ty != LL_TYPE_Q8_0) { // the nibbles of both blocks (qs at 2, Q5_0 at 6: after qh[4]), each twice
        accc = _mm_fmadd_ps(dw, _mm_castsi128_ps(_mm_loadl_epi64((const __m128i *)(xc + b))), accc);
        const size_t qo = ty == LL_TYPE_Q5_0 ? 6 : 2;
        __m512i z = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(p + qo)))),
                                       _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(p + bs + qo))), 1);
        if (ty == LL_TYPE_Q4_0) {
            dp = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_and_si512(z, mlh), xv);
        } else { // Q5_0: codes (nibble | qh bit << 4) in 0..31
            uint32_t q0, q1;
            memcpy(&q0, p + 2, 4);
            memcpy(&q1, p + bs + 2, 4);
            z = _mm512_and_si512(_mm512_srlv_epi16(z, shift), m4);
            z = _mm512_or_si512(z, _mm512_maskz_mov_epi8((uint64_t)q0 | (uint64_t)q1 << 32, b4));
            dp = _mm512_dpbusd_epi32(_mm512_setzero_si512(), z, xv);
        }
    } else {
        __m512i z = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(p + 2))),
                                       _mm256_loadu_si256((const __m256i *)(p + bs + 2)), 1);
        dp = _mm512_sub_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), xv, z),
                              _mm512_dpbusd_epi32(_mm512_setzero_si512(), c80, z));
    }
    __m512 sc = _mm512_permutexvar_ps(sidx, _mm512_castps128_ps512(sc2));
    *accc_p = accc;
    return _mm512_fmadd_ps(_mm512_cvtepi32_ps(dp), sc, acc);
}

// Q4_0 / Q5_0 / Q8_0 x Q8_0 for one token (decode), one row at a time: each thread reads its rows as one sequential
// stream, which the hardware prefetcher follows on its own (the 4-row tiles read four interleaved streams and
// need software prefetches; on the CPU machine this kernel reads the 1B model's Q8_0 matrices ~30% faster).
// The activations' codes are first copied into the thread's scratch without the block headers (n_in bytes,
// in L1 beside the weight stream; a 192-byte per-pair layout with the scales spread out spilled to L2 at
// n_in = 8192 and ran at half speed). Per pair of blocks b, b+1 (64 elements): the codes in element order in
// one zmm (int32 lanes 0-7: block b, 8-15: block b+1), one vpdpbusd, one convert, one FMA by d_w * d_x.
// Q4_0: unsigned nibbles against signed x; the -8 offset joins in f32 per row: sum_b d_w[b] * (-8 d_x[b] sum x_b),
// with -8 d_x sum x per block made once per call.
// Q5_0: codes (nibble | qh bit << 4) in 0..31 against signed x, offset 16 in f32 as Q4_0's.
// Q8_0: x + 128 (unsigned) against signed w, minus 128 * sum w from a second vpdpbusd with 0x80 bytes.
INLINE void lr_rows(uint32_t ty, const ll_mm_job *j, int r0, int r1, void *tsp) {
    const int nb = j->n_in / 32;
    const size_t bs = leg_bytes(ty);
    int8_t *lx = tsp;
    float *xc = (float *)(lx + j->n_in); // -off * d_x * sum x per block (off: 8, 16, 0)
    const float off = ty == LL_TYPE_Q4_0 ? 8.0f : ty == LL_TYPE_Q5_0 ? 16.0f : 0.0f;
    ll_mmq_row v = ll_mmq_act_view(ty, j->xa, j->n_in);
    const float *xd = v.d;
    const int32_t *xs = v.aux;
    for (int b = 0; b < nb; b++) {
        __m256i xv = _mm256_loadu_si256((const __m256i *)(v.blocks + (size_t)b * 34 + 2));
        if (ty == LL_TYPE_Q8_0) xv = _mm256_xor_si256(xv, _mm256_set1_epi8((char)0x80));
        _mm256_storeu_si256((__m256i *)(lx + 32 * b), xv);
        xc[b] = -off * xd[b] * (float)xs[b]; // |16 sum x| <= 2^16: exact
    }
    // Q4_0: the high nibbles are masked in place (0xF0: 16x the code, lr_pair) and their int32 lanes (4-7, 12-15)
    // scaled by 1/16 once per row, instead of a shift per pair.
    const __m512 hi16 = _mm512_mask_blend_ps(0xF0F0, _mm512_set1_ps(1.0f), _mm512_set1_ps(1.0f / 16));
    for (int o = r0; o < r1; o++) {
        const uint8_t *w = j->W + (size_t)o * j->row_bytes;
        __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
        __m128 accc = _mm_setzero_ps();
        int b = 0;
        for (; b + 4 <= nb; b += 4) {
            acc0 = lr_pair(ty, w, bs, b, lx, xd, xc, acc0, &accc);
            acc1 = lr_pair(ty, w, bs, b + 2, lx, xd, xc, acc1, &accc);
        }
        if (b < nb) acc0 = lr_pair(ty, w, bs, b, lx, xd, xc, acc0, &accc);
        accc = _mm_add_ps(accc, _mm_movehdup_ps(accc));
        __m512 a = _mm512_add_ps(acc0, acc1);
        if (ty == LL_TYPE_Q4_0) a = _mm512_mul_ps(a, hi16); // the high nibbles' lanes were taken 16x
        j->y[o] = _mm512_reduce_add_ps(a) + _mm_cvtss_f32(accc);
    }
}
#endif

// ---- K-quants: super-blocks of 256 (Q4_K, Q5_K, Q6_K; activations Q8_K) ---------------------------------------
// Per super-block each of the R rows is unpacked into unsigned codes (L1 scratch) with its sub-block scales as
// int32 vectors; per token and 32 elements: an unsigned x signed dot, times the scale vector, summed in int32.
// The terms that need the activations' 16-sums (bsums) are one vpmaddwd per row and token:
// Q4_K/Q5_K: -dmin * sum_j m_j (bsum_2j + bsum_2j+1), scaled apart; Q6_K: codes are q + 32, so -32 sum_i sc_i bsum_i
// joins the integer sum.

INLINE __m256i q_udot(__m256i u, __m256i x) {
#if defined(QX_VNNI)
    return _mm256_dpbusd_epi32(_mm256_setzero_si256(), u, x);
#else
    return _mm256_madd_epi16(_mm256_maddubs_epi16(u, x), _mm256_set1_epi16(1)); // u <= 63: no saturation
#endif
}

#if defined(QX_VNNI)
#define KQ_W 64 // elements per vector step: zmm with AVX-512
typedef __m512i kq_vec;
#else
#define KQ_W 32
typedef __m256i kq_vec;
#endif

typedef struct kq_row {
    uint8_t u[LL_QK_K];  // unsigned codes in element order
    kq_vec sc[LL_QK_K / KQ_W]; // per KQ_W elements: int32 scale per lane (Q4_K/Q5_K: 8 lanes per sub-block of 32,
                               // Q6_K: 4 lanes per sub-block of 16)
    __m256i mb;          // int16 x 16 multipliers of the 16 bsums (Q4_K/Q5_K: m_j twice; Q6_K: sc_i)
    float d, dmin;       // dmin: Q4_K/Q5_K only
} kq_row;

INLINE void kq_unpack(uint32_t ty, const uint8_t *blk, kq_row *k) {
    ll_kq_codes_x86(ty, blk, k->u);
    if (ty == LL_TYPE_Q6_K) {
        const ll_block_q6_K *b = (const ll_block_q6_K *)blk;
#if defined(QX_VNNI)
        const __m512i rep4 = _mm512_set_epi32(3, 3, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1, 0, 0, 0, 0);
        for (int q = 0; q < 4; q++) {
            int32_t v;
            memcpy(&v, b->scales + 4 * q, 4);
            k->sc[q] = _mm512_permutexvar_epi32(rep4, _mm512_castsi128_si512(_mm_cvtepi8_epi32(_mm_cvtsi32_si128(v))));
        }
#else
        for (int q = 0; q < 8; q++)
            k->sc[q] = _mm256_set_m128i(_mm_set1_epi32(b->scales[2 * q + 1]), _mm_set1_epi32(b->scales[2 * q]));
#endif
        k->mb = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)b->scales));
        k->d = fp16_at((const uint8_t *)&b->d);
        return;
    }
    // Q4_K / Q5_K share the header: d, dmin, 12 scale bytes; Q5_K then has qh[32] before qs.
    const ll_block_q4_K *b = (const ll_block_q4_K *)blk;
    __m128i scm = ll_kq_scales_mins_x86(b->scales); // bytes 0-7: scales 0-7, 8-15: mins 0-7
#if defined(QX_VNNI)
    __m512i s32 = _mm512_cvtepu8_epi32(scm);
    for (int q = 0; q < 4; q++)
        k->sc[q] = _mm512_permutexvar_epi32(_mm512_inserti64x4(_mm512_set1_epi32(2 * q), _mm256_set1_epi32(2 * q + 1), 1), s32);
#else
    uint8_t scs[16];
    _mm_storeu_si128((__m128i *)scs, scm);
    for (int q = 0; q < 8; q++) k->sc[q] = _mm256_set1_epi32(scs[q]);
#endif
    __m128i mins = _mm_srli_si128(scm, 8);
    k->mb = _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(mins, mins));
    k->d = fp16_at((const uint8_t *)&b->d);
    k->dmin = fp16_at((const uint8_t *)&b->dmin);
}

// panel: the R rows unpacked, super-block major (panel[4 b + r]).
INLINE void kq_tile(uint32_t ty, const ll_mm_job *j, const kq_row *panel, int o, int t0, const int R, const int T) {
    const int nb = j->n_in / LL_QK_K;
    const ll_block_q8_K *xb[QX_NT];
    for (int t = 0; t < T; t++) xb[t] = (const ll_block_q8_K *)((const uint8_t *)j->xa + (size_t)(t0 + t) * j->xa_stride);
    __m256 acc[4][QX_NT];
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int t = 0; t < T; t++) acc[r][t] = _mm256_setzero_ps();
    for (int b = 0; b < nb; b++) {
        const kq_row *k = panel + 4 * b;
#pragma GCC unroll 4
        for (int t = 0; t < T; t++) {
            const ll_block_q8_K *x = &xb[t][b];
            __m256i is[4];
#if defined(QX_VNNI)
            __m512i iz[4];
#pragma GCC unroll 4
            for (int r = 0; r < R; r++) iz[r] = _mm512_setzero_si512();
#pragma GCC unroll 4
            for (int q = 0; q < 4; q++) {
                __m512i xv = _mm512_loadu_si512((const void *)(x->qs + 64 * q));
#pragma GCC unroll 4
                for (int r = 0; r < R; r++) {
                    __m512i dp = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_loadu_si512((const void *)(k[r].u + 64 * q)), xv);
                    iz[r] = _mm512_add_epi32(iz[r], _mm512_mullo_epi32(dp, k[r].sc[q]));
                }
            }
#pragma GCC unroll 4
            for (int r = 0; r < R; r++)
                is[r] = _mm256_add_epi32(_mm512_castsi512_si256(iz[r]), _mm512_extracti64x4_epi64(iz[r], 1));
#else
#pragma GCC unroll 4
            for (int r = 0; r < R; r++) is[r] = _mm256_setzero_si256();
#pragma GCC unroll 8
            for (int q = 0; q < 8; q++) {
                __m256i xv = _mm256_loadu_si256((const __m256i *)(x->qs + 32 * q));
#pragma GCC unroll 4
                for (int r = 0; r < R; r++) {
                    __m256i dp = q_udot(_mm256_loadu_si256((const __m256i *)(k[r].u + 32 * q)), xv);
                    is[r] = _mm256_add_epi32(is[r], _mm256_mullo_epi32(dp, k[r].sc[q]));
                }
            }
#endif
            __m256i bsum = _mm256_loadu_si256((const __m256i *)x->bsums);
#pragma GCC unroll 4
            for (int r = 0; r < R; r++) {
                __m256i mt = _mm256_madd_epi16(k[r].mb, bsum);
                if (ty == LL_TYPE_Q6_K) {
                    is[r] = _mm256_sub_epi32(is[r], _mm256_slli_epi32(mt, 5));
                    acc[r][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(is[r]), _mm256_set1_ps(k[r].d * x->d), acc[r][t]);
                } else {
                    acc[r][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(is[r]), _mm256_set1_ps(k[r].d * x->d), acc[r][t]);
                    acc[r][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(mt), _mm256_set1_ps(-k[r].dmin * x->d), acc[r][t]);
                }
            }
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int t = 0; t < T; t++) j->y[(size_t)(t0 + t) * (size_t)j->n_out + (size_t)(o + r)] = hsum8(acc[r][t]);
}

// ---- Q4_1 / Q5_1 (activations Q8_1): unsigned codes against signed x as they are; the min term m * s (s: the
// activations' fp16 d * sum of codes) per block in scalar f32 beside the vector sums.
INLINE __m256i leg1_unpack(uint32_t ty, const uint8_t *blk, float *d, float *m) {
    *d = fp16_at(blk);
    *m = fp16_at(blk + 2);
    if (ty == LL_TYPE_Q4_1) return nibbles32(blk + 4);
    return _mm256_or_si256(nibbles32(blk + 8), _mm256_and_si256(bits32(blk + 4), _mm256_set1_epi8(0x10)));
}

INLINE void leg1_tile(uint32_t ty, const ll_mm_job *j, int o, int t0, const int R, const int T) {
    const int nb = j->n_in / 32;
    const size_t bs = ty == LL_TYPE_Q4_1 ? 20 : 24;
    const uint8_t *w = j->W + (size_t)o * j->row_bytes, *xq[QX_NT];
    const float *xd[QX_NT], *xs[QX_NT];
    for (int t = 0; t < T; t++) {
        const uint8_t *row = (const uint8_t *)j->xa + (size_t)(t0 + t) * j->xa_stride;
        xq[t] = row + 4;
        xd[t] = (const float *)(row + al64((size_t)nb * 36));
        xs[t] = xd[t] + nb;
    }
    __m256 acc[4][QX_NT];
    float mn[4][QX_NT];
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int t = 0; t < T; t++) {
            acc[r][t] = _mm256_setzero_ps();
            mn[r][t] = 0;
        }
    for (int b = 0; b < nb; b++) {
        __m256i u[4];
        float dw[4], mw[4];
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) u[r] = leg1_unpack(ty, w + (size_t)r * j->row_bytes + (size_t)b * bs, &dw[r], &mw[r]);
#pragma GCC unroll 4
        for (int t = 0; t < T; t++) {
            __m256i xv = _mm256_loadu_si256((const __m256i *)(xq[t] + (size_t)b * 36));
            float dx = xd[t][b], sx = xs[t][b];
#pragma GCC unroll 4
            for (int r = 0; r < R; r++) {
                acc[r][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(q_udot(u[r], xv)), _mm256_set1_ps(dw[r] * dx), acc[r][t]);
                mn[r][t] += mw[r] * sx;
            }
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int t = 0; t < T; t++)
            j->y[(size_t)(t0 + t) * (size_t)j->n_out + (size_t)(o + r)] = hsum8(acc[r][t]) + mn[r][t];
}

typedef void (*qx_tile_fn)(const ll_mm_job *j, int o, int t0);

// Decode: the tiles fetch the next 4 rows as they go, which leaves a chunk's first 4 rows to the hardware
// prefetcher, ramping up on each of their streams: ask for all their lines at once instead.
static void q_prefetch_first(const ll_mm_job *j, int r0, int r1) {
    int n = r1 - r0 < 4 ? r1 - r0 : 4;
    const char *p = (const char *)j->W + (size_t)r0 * j->row_bytes;
    for (size_t e = 0; e < (size_t)n * j->row_bytes; e += 64) _mm_prefetch(p + e, _MM_HINT_T0);
}
typedef void (*kq_tile_fn)(const ll_mm_job *j, const kq_row *panel, int o, int t0);

// K-quants: 4 rows at a time are unpacked once into the thread's scratch (n_in/256 x 4 kq_rows, in L2), then
// every token tile runs past that panel.
static size_t kq_tsp(int n_in) { return (size_t)(n_in / LL_QK_K) * 4 * sizeof(kq_row); }

#if defined(QX_VNNI)
// Q4_K x Q8_K for one token, straight from the GGUF blocks (no panel): decode reads each weight byte once, so
// unpacking to a panel first only adds work. Per 64 elements (32 bytes of nibbles = sub-blocks 2c and 2c+1):
// low and high nibbles side by side in one zmm against 64 activation bytes; vpmaddubsw gives int16 pair sums
// (|.| <= 2 * 15 * 128), vpdpwssd multiplies them by the sub-block's 6-bit scale (int16 lanes 0-15: sc[2c],
// 16-31: sc[2c+1]) into the super-block's int32 sum: no float work per sub-block. The min term uses the
// activations' 32-sums (xs, the row's s array): dmin * d_x * sum_j m[j] * xs[j], in f32.
static float q4k_row_dot_vnni(const uint8_t *w, const ll_block_q8_K *x, const float *xs, int nb) {
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    __m512 acc = _mm512_setzero_ps();
    __m256 accm = _mm256_setzero_ps();
    for (int b = 0; b < nb; b++) {
        const ll_block_q4_K *blk = (const ll_block_q4_K *)(w + (size_t)b * sizeof(ll_block_q4_K));
        const ll_block_q8_K *xb = &x[b];
        __m128i scm = ll_kq_scales_mins_x86(blk->scales); // bytes 0-7 scales, 8-15 mins
        __m512i s16 = _mm512_castsi256_si512(_mm256_cvtepu8_epi16(scm));
        __m512i isum = _mm512_setzero_si512();
#pragma GCC unroll 4
        for (int c = 0; c < 4; c++) {
            __m256i q = _mm256_loadu_si256((const __m256i *)(blk->qs + 32 * c));
            __m512i qq = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_and_si256(q, m4)),
                                            _mm256_and_si256(_mm256_srli_epi16(q, 4), m4), 1);
            __m512i p16 = _mm512_maddubs_epi16(qq, _mm512_loadu_si512((const void *)(xb->qs + 64 * c)));
            __m512i scv = _mm512_permutexvar_epi16(_mm512_inserti64x4(_mm512_set1_epi16((short)(2 * c)),
                                                                      _mm256_set1_epi16((short)(2 * c + 1)), 1), s16);
            isum = _mm512_dpwssd_epi32(isum, p16, scv);
        }
        float dx = xb->d;
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), _mm512_set1_ps(fp16_at((const uint8_t *)&blk->d) * dx), acc);
        __m256 mf = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(scm, 8)));
        accm = _mm256_fmadd_ps(_mm256_mul_ps(mf, _mm256_loadu_ps(xs + 8 * b)),
                               _mm256_set1_ps(fp16_at((const uint8_t *)&blk->dmin) * dx), accm);
    }
    return _mm512_reduce_add_ps(acc) - hsum8(accm);
}

// Q6_K x Q8_K for one token, from the GGUF blocks. Codes 0..63 (the stored value + 32) against signed
// activations: vpmaddubsw pair sums (|.| <= 2 * 63 * 128), vpdpwssd by the signed 8-bit sub-block scales (int16
// lanes 8k..8k+7 of a zmm = sub-block k of its 64 elements) into the super-block's int32 sum. The -32 offset
// comes back through the row's c array (-32 x the 16-element activation sums): d * d_x * sum_s sc[s] * c[s].
// Per half (128 elements): ql[64h..] low/high nibbles and qh[32h..] 2-bit pairs give four groups of 32 codes;
// groups 0|1 and 2|3 are each 64 consecutive elements.
static float q6k_row_dot_vnni(const uint8_t *w, const ll_block_q8_K *x, const int32_t *xc, int nb) {
    const __m256i m4 = _mm256_set1_epi8(0x0F), m3 = _mm256_set1_epi8(0x03), m30 = _mm256_set1_epi8(0x30);
    const __m512i rep8 = _mm512_set_epi64(0x0003000300030003, 0x0003000300030003, 0x0002000200020002,
                                          0x0002000200020002, 0x0001000100010001, 0x0001000100010001, 0, 0);
    __m512 acc = _mm512_setzero_ps();
    for (int b = 0; b < nb; b++) {
        const ll_block_q6_K *blk = (const ll_block_q6_K *)(w + (size_t)b * sizeof(ll_block_q6_K));
        const ll_block_q8_K *xb = &x[b];
        __m128i sc8 = _mm_loadu_si128((const __m128i *)blk->scales);
        __m512i s16 = _mm512_castsi256_si512(_mm256_cvtepi8_epi16(sc8));
        __m512i isum = _mm512_setzero_si512();
#pragma GCC unroll 2
        for (int h = 0; h < 2; h++) {
            __m256i l0 = _mm256_loadu_si256((const __m256i *)(blk->ql + 64 * h));
            __m256i l1 = _mm256_loadu_si256((const __m256i *)(blk->ql + 64 * h + 32));
            __m256i hb = _mm256_loadu_si256((const __m256i *)(blk->qh + 32 * h));
            __m256i g0 = _mm256_or_si256(_mm256_and_si256(l0, m4), _mm256_slli_epi16(_mm256_and_si256(hb, m3), 4));
            __m256i g1 = _mm256_or_si256(_mm256_and_si256(l1, m4),
                                         _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 2), m3), 4));
            __m256i g2 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4), _mm256_and_si256(hb, m30));
            __m256i g3 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                                         _mm256_and_si256(_mm256_srli_epi16(hb, 2), m30));
            __m512i c01 = _mm512_inserti64x4(_mm512_castsi256_si512(g0), g1, 1);
            __m512i c23 = _mm512_inserti64x4(_mm512_castsi256_si512(g2), g3, 1);
            __m512i p01 = _mm512_maddubs_epi16(c01, _mm512_loadu_si512((const void *)(xb->qs + 128 * h)));
            __m512i p23 = _mm512_maddubs_epi16(c23, _mm512_loadu_si512((const void *)(xb->qs + 128 * h + 64)));
            __m512i k01 = _mm512_add_epi16(rep8, _mm512_set1_epi16((short)(8 * h)));
            __m512i k23 = _mm512_add_epi16(rep8, _mm512_set1_epi16((short)(8 * h + 4)));
            isum = _mm512_dpwssd_epi32(isum, p01, _mm512_permutexvar_epi16(k01, s16));
            isum = _mm512_dpwssd_epi32(isum, p23, _mm512_permutexvar_epi16(k23, s16));
        }
        // + sum_s sc[s] * c[s], c = -32 * bsums (exact in f32: |.| < 2^24)
        __m512 off = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(sc8)),
                                   _mm512_cvtepi32_ps(_mm512_loadu_si512((const void *)(xc + 16 * b))));
        __m512 tot = _mm512_add_ps(_mm512_cvtepi32_ps(isum), off);
        acc = _mm512_fmadd_ps(tot, _mm512_set1_ps(fp16_at((const uint8_t *)&blk->d) * xb->d), acc);
    }
    return _mm512_reduce_add_ps(acc);
}
#endif

static void kq_rows(uint32_t ty, const ll_mm_job *j, int r0, int r1, kq_row *panel, const kq_tile_fn *t4,
                    const kq_tile_fn *t1) {
    const int nb = j->n_in / LL_QK_K;
#if defined(QX_VNNI)
    if ((ty == LL_TYPE_Q4_K || ty == LL_TYPE_Q6_K) && j->n_tokens == 1) {
        const ll_block_q8_K *x = (const ll_block_q8_K *)j->xa;
        ll_mmq_row v = ll_mmq_act_view(ty, j->xa, j->n_in);
        q_prefetch_first(j, r0, r1 < r0 + 2 ? r1 : r0 + 2);
        for (int o = r0; o < r1; o++) {
            const uint8_t *w = j->W + (size_t)o * j->row_bytes;
            // One sequential stream per thread, no software prefetch: prefetching the row after next at each
            // row's start measured 1.2-2x slower for 4.6 KB rows (Q4_K/Q6_K 2048 x 8192) and no faster for short.
            j->y[o] = ty == LL_TYPE_Q4_K ? q4k_row_dot_vnni(w, x, v.s, nb) : q6k_row_dot_vnni(w, x, v.c, nb);
        }
        return;
    }
#endif
    const size_t bs = ll_type_get(ty)->size;
    for (int o = r0; o < r1;) {
        int R = r1 - o >= 4 ? 4 : 1;
        for (int b = 0; b < nb; b++)
            for (int r = 0; r < R; r++) {
                const uint8_t *p = j->W + (size_t)(o + r) * j->row_bytes + (size_t)b * bs;
                if (j->n_tokens == 1) _mm_prefetch((const char *)(p + 4 * j->row_bytes), _MM_HINT_T0); // as leg_ztile
                kq_unpack(ty, p, &panel[4 * b + r]);
            }
        for (int t0 = 0; t0 < j->n_tokens; t0 += QX_NT) {
            int tn = j->n_tokens - t0 < QX_NT ? j->n_tokens - t0 : QX_NT;
            (R == 4 ? t4 : t1)[tn - 1](j, panel, o, t0);
        }
        o += R;
    }
}

#define KQ_FN(name, ty, R, T)                                                                                  \
    static void name##_##R##x##T(const ll_mm_job *j, const kq_row *p, int o, int t0) { kq_tile(ty, j, p, o, t0, R, T); }
#if QX_NT == 4
#define KQ_FNS(name, ty, R) KQ_FN(name, ty, R, 1) KQ_FN(name, ty, R, 2) KQ_FN(name, ty, R, 3) KQ_FN(name, ty, R, 4)
#else
#define KQ_FNS(name, ty, R) KQ_FN(name, ty, R, 1) KQ_FN(name, ty, R, 2)
#endif
#define KQ_TYPE(name, ty)                                                                                      \
    KQ_FNS(name, ty, 4)                                                                                        \
    KQ_FNS(name, ty, 1)                                                                                        \
    static void name##_dot(const ll_mm_job *j, int r0, int r1, void *tsp) {                                    \
        static const kq_tile_fn t4[QX_NT] = QX_LIST(name, 4), t1[QX_NT] = QX_LIST(name, 1);                    \
        kq_rows(ty, j, r0, r1, tsp, t4, t1);                                                                   \
    }                                                                                                          \
    static size_t name##_xrow(int n_in) { return ll_mmq_act_row(ty, n_in); }                                   \
    static void name##_xconv(const float *x, void *xa, int n_in) {                                             \
        if (!ll_qgemm_x86_act(ty, x, xa, n_in)) ll_mmq_act_quantize(ty, x, xa, n_in);                          \
    }

// Rows [r0, r1) in groups of 16 (in L1/L2 after the first token tile) x token tiles x 4-row tiles.
// t4[n - 1] / t1[n - 1]: the 4-row / 1-row tile for n tokens.
static void q_rows(const ll_mm_job *j, int r0, int r1, const qx_tile_fn *t4, const qx_tile_fn *t1) {
    if (j->n_tokens == 1) q_prefetch_first(j, r0, r1);
    for (int rb = r0; rb < r1; rb += 16) {
        int re = rb + 16 < r1 ? rb + 16 : r1;
        for (int t0 = 0; t0 < j->n_tokens; t0 += QX_NT) {
            int tn = j->n_tokens - t0 < QX_NT ? j->n_tokens - t0 : QX_NT;
            int o = rb;
            for (; o + 4 <= re; o += 4) t4[tn - 1](j, o, t0);
            for (; o < re; o++) t1[tn - 1](j, o, t0);
        }
    }
}

#define QX_FN(tile, name, ty, R, T)                                                                            \
    static void name##_##R##x##T(const ll_mm_job *j, int o, int t0) { tile(ty, j, o, t0, R, T); }
#if QX_NT == 4
#define QX_FNS(tile, name, ty, R)                                                                              \
    QX_FN(tile, name, ty, R, 1) QX_FN(tile, name, ty, R, 2) QX_FN(tile, name, ty, R, 3) QX_FN(tile, name, ty, R, 4)
#define QX_LIST(name, R) {name##_##R##x1, name##_##R##x2, name##_##R##x3, name##_##R##x4}
#else
#define QX_FNS(tile, name, ty, R) QX_FN(tile, name, ty, R, 1) QX_FN(tile, name, ty, R, 2)
#define QX_LIST(name, R) {name##_##R##x1, name##_##R##x2}
#endif

// One type: its tiles, the dot entry and the activation converter.
#define QX_TYPE(tile, name, ty)                                                                                \
    QX_FNS(tile, name, ty, 4)                                                                                  \
    QX_FNS(tile, name, ty, 1)                                                                                  \
    static void name##_dot(const ll_mm_job *j, int r0, int r1, void *tsp) {                                    \
        (void)tsp;                                                                                             \
        static const qx_tile_fn t4[QX_NT] = QX_LIST(name, 4), t1[QX_NT] = QX_LIST(name, 1);                    \
        q_rows(j, r0, r1, t4, t1);                                                                             \
    }                                                                                                          \
    static size_t name##_xrow(int n_in) { return ll_mmq_act_row(ty, n_in); }                                   \
    static void name##_xconv(const float *x, void *xa, int n_in) {                                             \
        if (!ll_qgemm_x86_act(ty, x, xa, n_in)) ll_mmq_act_quantize(ty, x, xa, n_in);                          \
    }

#if defined(QX_VNNI)
// Q4_0/Q5_0/Q8_0 tiles: two blocks per zmm where n_in allows (a multiple of 64), else one block per ymm.
INLINE void leg_tile2(uint32_t ty, const ll_mm_job *j, int o, int t0, const int R, const int T) {
    if (j->n_in % 64 == 0) leg_ztile(ty, j, o, t0, R, T);
    else leg_tile(ty, j, o, t0, R, T);
}
#else
#define leg_tile2 leg_tile
#endif
QX_TYPE(leg_tile2, q8_0, LL_TYPE_Q8_0)
QX_TYPE(leg_tile2, q4_0, LL_TYPE_Q4_0)
QX_TYPE(leg_tile2, q5_0, LL_TYPE_Q5_0)

#if defined(QX_VNNI)
// Q4_0/Q5_0/Q8_0 with 2-3 tokens (from GM_MIN_TOKENS on: qgemm_x86.c) and n_in % 64 == 0: each 4-row group is
// prepared once into the thread's scratch (zp_tsp: n_in/64 x 768 B, in L2) and every token tile reads it;
// otherwise the plain tiles.
#define ZP_TYPE(name, ty)                                                                                      \
    static void name##_zpack(const ll_mm_job *j, zp_pair *pp, int o) { leg_ztile_p(ty, j, pp, false, o, 0, 4, 0); } \
    static void name##_zp1(const ll_mm_job *j, const zp_pair *pp, int o, int t0) { leg_ztile_p(ty, j, pp, true, o, t0, 4, 1); } \
    static void name##_zp2(const ll_mm_job *j, const zp_pair *pp, int o, int t0) { leg_ztile_p(ty, j, pp, true, o, t0, 4, 2); } \
    static void name##_zp3(const ll_mm_job *j, const zp_pair *pp, int o, int t0) { leg_ztile_p(ty, j, pp, true, o, t0, 4, 3); } \
    static void name##_zp4(const ll_mm_job *j, const zp_pair *pp, int o, int t0) { leg_ztile_p(ty, j, pp, true, o, t0, 4, 4); } \
    static void name##_zdot(const ll_mm_job *j, int r0, int r1, void *tsp) {                                   \
        if (j->n_tokens == 1 && j->n_in % 64 == 0) {                                                           \
            lr_rows(ty, j, r0, r1, tsp);                                                                       \
            return;                                                                                            \
        }                                                                                                      \
        if (j->n_in % 64 != 0 || j->n_tokens == 1) {                                                           \
            name##_dot(j, r0, r1, tsp);                                                                        \
            return;                                                                                            \
        }                                                                                                      \
        static void (*const tp[4])(const ll_mm_job *, const zp_pair *, int, int) = {name##_zp1, name##_zp2,    \
                                                                                   name##_zp3, name##_zp4};   \
        int o = r0;                                                                                            \
        for (; o + 4 <= r1; o += 4) {                                                                          \
            name##_zpack(j, tsp, o);                                                                           \
            for (int t0 = 0; t0 < j->n_tokens; t0 += QX_NT) {                                                  \
                int tn = j->n_tokens - t0 < QX_NT ? j->n_tokens - t0 : QX_NT;                                   \
                tp[tn - 1](j, tsp, o, t0);                                                                     \
            }                                                                                                  \
        }                                                                                                      \
        if (o < r1) name##_dot(j, o, r1, tsp);                                                                 \
    }
ZP_TYPE(q8_0, LL_TYPE_Q8_0)
ZP_TYPE(q4_0, LL_TYPE_Q4_0)
ZP_TYPE(q5_0, LL_TYPE_Q5_0)
#endif
QX_TYPE(leg1_tile, q4_1, LL_TYPE_Q4_1)
QX_TYPE(leg1_tile, q5_1, LL_TYPE_Q5_1)
KQ_TYPE(q4_K, LL_TYPE_Q4_K)
KQ_TYPE(q5_K, LL_TYPE_Q5_K)
KQ_TYPE(q6_K, LL_TYPE_Q6_K)

#define QX_ROW(name, ty) {ty, QX_ISA, INT32_MAX, name##_dot, NULL, name##_xrow, name##_xconv, NULL, NULL, 0, 0}
#define KQ_ROW(name, ty) {ty, QX_ISA, INT32_MAX, name##_dot, kq_tsp, name##_xrow, name##_xconv, NULL, NULL, 0, 0}

#if defined(QX_VNNI)
// From GM_MIN_TOKENS tokens on, the panel GEMM of qgemm_x86.c (each weight row decoded once, 16 rows x 8 tokens
// per register tile); fewer tokens: the tiles above, which read the blocks in place.
#define GM_MIN_TOKENS 4
#define GM_WRAP(name, dotfn, tspfn)                                                                            \
    static void name##_gdot(const ll_mm_job *j, int r0, int r1, void *tsp) {                                   \
        if (j->n_tokens >= GM_MIN_TOKENS) ll_qgemm_x86(j, r0, r1, tsp);                                        \
        else dotfn(j, r0, r1, tsp);                                                                            \
    }                                                                                                          \
    static size_t name##_gtsp(int n_in) {                                                                      \
        size_t a = tspfn(n_in), b = ll_qgemm_x86_tsp(n_in);                                                    \
        return a > b ? a : b;                                                                                  \
    }
// Q4_0 / Q5_0 / Q8_0 in 16-row groups (LL_MM_*_X16, matmul.h), one token. Per block of a group: the 16 rows'
// scales in one load and one convert, times d_x; the codes in zmm runs, each 4 elements of all 16 rows: per nibble
// (Q8_0: per run) one vpdpbusd against 4 of x's codes broadcast from memory leaves each row's integer sum in its
// own int32 lane, scaled by one FMA per block. Q5_0's fifth bit joins the nibbles in one masked op from its
// per-run byte mask. The code offset (Q4_0 8, Q5_0 16, Q8_0 128 after the + 128): d_w (16 rows) times
// -off d_x (sum of the block's x codes), one FMA. A thread's rows are one sequential stream, 16 rows wide; the
// result is a store of 16 floats.
INLINE void x16_rows(uint32_t ty, const ll_mm_job *j, int r0, int r1, void *tsp) {
    const int nb = j->n_in / 32;
    const size_t bs = ll_mm_x16_block_bytes(0x10000u | ty);
    const float off = ty == LL_TYPE_Q4_0 ? 8.0f : ty == LL_TYPE_Q5_0 ? 16.0f : 128.0f;
    int8_t *lx = tsp;
    float *xc = (float *)(lx + al64((size_t)j->n_in)); // -off * d_x * (sum of the block's codes)
    ll_mmq_row v = ll_mmq_act_view(ty, j->xa, j->n_in);
    const float *xd = v.d;
    const int32_t *xs = v.aux;
    for (int b = 0; b < nb; b++) {
        _mm256_storeu_si256((__m256i *)(lx + 32 * b), _mm256_loadu_si256((const __m256i *)(v.blocks + (size_t)b * 34 + 2)));
        xc[b] = -off * xd[b] * (float)xs[b]; // |128 sum x| <= 2^19: exact
    }
    for (int o = r0; o < r1; o += 16) {
        const uint8_t *p = j->W + (size_t)(o / 16) * (size_t)nb * bs;
        __m512 acc = _mm512_setzero_ps(), offs = _mm512_setzero_ps();
        for (int b = 0; b < nb; b++, p += bs) {
            const __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p));
            const int8_t *x = lx + 32 * b;
            __m512i lo = _mm512_setzero_si512(), hi = _mm512_setzero_si512();
            for (int k = 0; k < 4; k++) {
                __m512i l, h;
                ll_x16_run(ty, p, k, &l, &h);
                lo = ll_dpbusd_bcast(lo, l, x + 4 * k);
                hi = ll_dpbusd_bcast(hi, h, x + 16 + 4 * k);
            }
            acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(lo, hi)), _mm512_mul_ps(dw, _mm512_set1_ps(xd[b])), acc);
            offs = _mm512_fmadd_ps(dw, _mm512_set1_ps(xc[b]), offs);
        }
        _mm512_storeu_ps(j->y + o, _mm512_add_ps(acc, offs));
    }
}

// Q4_K in 16-row groups (LL_MM_Q4_K_X16), one token, per super-block: each of the 32 code runs is 4 elements
// of 16 rows, one vpdpbusd per nibble against 4 of x's Q8_K codes broadcast: per sub-block an int32 sum per row
// lane, times the rows' scales (bytes widened to int32, vpmulld), summed over the 8 sub-blocks in int32
// (|sum| < 2^25); the mins: sum_j m_j (x's 32-sum of sub-block j), as floats. Then d_x d_w and d_x dmin_w.
static void x16k_rows(const ll_mm_job *j, int r0, int r1, void *tsp) {
    (void)tsp;
    const int nb = j->n_in / LL_QK_K;
    ll_mmq_row v = ll_mmq_act_view(LL_TYPE_Q4_K, j->xa, j->n_in);
    const ll_block_q8_K *xb = (const ll_block_q8_K *)v.blocks;
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    for (int o = r0; o < r1; o += 16) {
        const uint8_t *p = j->W + (size_t)(o / 16) * (size_t)nb * 2368;
        __m512 acc = _mm512_setzero_ps();
        for (int b = 0; b < nb; b++, p += 2368) {
            const int8_t *xq = xb[b].qs;
            const float *xs = v.s + 8 * b; // x's 32-sums, as floats
            __m512i isum = _mm512_setzero_si512();
            for (int g = 0; g < 4; g++) {
                __m512i lo = _mm512_setzero_si512(), hi = _mm512_setzero_si512();
                for (int k = 0; k < 8; k++) {
                    const __m512i q = _mm512_loadu_si512((const void *)(p + 320 + 64 * (8 * g + k)));
                    lo = ll_dpbusd_bcast(lo, _mm512_and_si512(q, m4), xq + 64 * g + 4 * k);
                    hi = ll_dpbusd_bcast(hi, _mm512_and_si512(_mm512_srli_epi16(q, 4), m4), xq + 64 * g + 32 + 4 * k);
                }
                const __m512i s0 = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(p + 64 + 16 * (2 * g))));
                const __m512i s1 = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(p + 64 + 16 * (2 * g + 1))));
                isum = _mm512_add_epi32(isum, _mm512_add_epi32(_mm512_mullo_epi32(lo, s0), _mm512_mullo_epi32(hi, s1)));
            }
            __m512 msum = _mm512_setzero_ps();
            for (int s = 0; s < 8; s++)
                msum = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(p + 192 + 16 * s)))),
                                       _mm512_set1_ps(xs[s]), msum);
            const __m512 xd = _mm512_set1_ps(v.d[b]);
            const __m512 dw = _mm512_mul_ps(_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p)), xd);
            const __m512 dm = _mm512_mul_ps(_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(p + 32))), xd);
            acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), dw, acc);
            acc = _mm512_fnmadd_ps(msum, dm, acc);
        }
        _mm512_storeu_ps(j->y + o, acc);
    }
}

static void q4kx16_dot(const ll_mm_job *j, int r0, int r1, void *tsp) {
    if (j->n_tokens == 1) x16k_rows(j, r0, r1, tsp);
    else ll_qgemm_x86(j, r0, r1, tsp);
}
static size_t q4kx16_tsp(int n_in) { return ll_qgemm_x86_tsp(n_in); }

// Q4_0 / Q5_0 / Q8_0 in 16-row groups, T = 2..4 tokens (T sequences' decode steps in one batch): x16_rows'
// arithmetic per token, in its order (the same sums, bit for bit), with each block's codes decoded once for all T
// tokens and x's codes broadcast from their Q8_0 blocks in place. The weights stay one sequential stream read
// once; each token adds 8 vpdpbusd and 2 FMAs per block of 16 rows. (The panel GEMM packs the activations into
// 8-token tiles: at 4 tokens half of each tile is idle and the packing is not amortized: ~1.5x one token where
// this gives ~2.5x, measured on llama-1B Q4_0 shapes.)
INLINE void x16_rows_n(uint32_t ty, const ll_mm_job *j, int r0, int r1, int t0, const int T) {
    const int nb = j->n_in / 32;
    const size_t bs = ll_mm_x16_block_bytes(0x10000u | ty);
    const float off = ty == LL_TYPE_Q4_0 ? 8.0f : ty == LL_TYPE_Q5_0 ? 16.0f : 128.0f;
    ll_mmq_row v[4];
    for (int t = 0; t < T; t++) v[t] = ll_mmq_act_view(ty, (const uint8_t *)j->xa + (size_t)(t0 + t) * j->xa_stride, j->n_in);
    for (int o = r0; o < r1; o += 16) {
        const uint8_t *p = j->W + (size_t)(o / 16) * (size_t)nb * bs;
        __m512 acc[4], offs[4];
#pragma GCC unroll 4
        for (int t = 0; t < T; t++) acc[t] = offs[t] = _mm512_setzero_ps();
        for (int b = 0; b < nb; b++, p += bs) {
            const __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p));
            __m512i lo[4], hi[4];
#pragma GCC unroll 4
            for (int t = 0; t < T; t++) lo[t] = hi[t] = _mm512_setzero_si512();
#pragma GCC unroll 4
            for (int k = 0; k < 4; k++) {
                __m512i l, h;
                ll_x16_run(ty, p, k, &l, &h);
#pragma GCC unroll 4
                for (int t = 0; t < T; t++) {
                    const int8_t *x = (const int8_t *)(v[t].blocks + (size_t)b * 34 + 2);
                    lo[t] = ll_dpbusd_bcast(lo[t], l, x + 4 * k);
                    hi[t] = ll_dpbusd_bcast(hi[t], h, x + 16 + 4 * k);
                }
            }
#pragma GCC unroll 4
            for (int t = 0; t < T; t++) {
                const float xd = v[t].d[b], xc = -off * xd * (float)((const int32_t *)v[t].aux)[b];
                acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(lo[t], hi[t])),
                                         _mm512_mul_ps(dw, _mm512_set1_ps(xd)), acc[t]);
                offs[t] = _mm512_fmadd_ps(dw, _mm512_set1_ps(xc), offs[t]);
            }
        }
#pragma GCC unroll 4
        for (int t = 0; t < T; t++)
            _mm512_storeu_ps(j->y + (size_t)(t0 + t) * (size_t)j->n_out + o, _mm512_add_ps(acc[t], offs[t]));
    }
}

// Up to X16_MAX_N tokens in groups of 4 (each group one pass over the weights), T a constant per instance.
#define X16_MAX_N 8
__attribute__((noinline)) static void x16_rows_many(uint32_t ty, const ll_mm_job *j, int r0, int r1) {
    for (int t0 = 0; t0 < j->n_tokens; t0 += 4) {
        const int T = j->n_tokens - t0 < 4 ? j->n_tokens - t0 : 4;
        if (T == 4) x16_rows_n(ty, j, r0, r1, t0, 4);
        else if (T == 3) x16_rows_n(ty, j, r0, r1, t0, 3);
        else if (T == 2) x16_rows_n(ty, j, r0, r1, t0, 2);
        else x16_rows_n(ty, j, r0, r1, t0, 1);
    }
}

// One token: x16_rows; 2..X16_MAX_N (decode steps of several sequences): x16_rows_many; more: the panel GEMM
// (qgemm_x86.c: a group is a panel).
#define X16_TYPE(name, ty)                                                                                     \
    static void name##x16_dot(const ll_mm_job *j, int r0, int r1, void *tsp) {                                 \
        if (j->n_tokens == 1) x16_rows(ty, j, r0, r1, tsp);                                                    \
        else if (j->n_tokens <= X16_MAX_N) x16_rows_many(ty, j, r0, r1);                                       \
        else ll_qgemm_x86(j, r0, r1, tsp);                                                                     \
    }
X16_TYPE(q4_0, LL_TYPE_Q4_0)
X16_TYPE(q5_0, LL_TYPE_Q5_0)
X16_TYPE(q8_0, LL_TYPE_Q8_0)
static size_t x16_tsp(int n_in) {
    size_t a = al64((size_t)n_in) + al64((size_t)(n_in / 32) * 4), b = ll_qgemm_x86_tsp(n_in);
    return a > b ? a : b;
}

GM_WRAP(q8_0, q8_0_zdot, zp_tsp)
GM_WRAP(q4_0, q4_0_zdot, zp_tsp)
GM_WRAP(q5_0, q5_0_zdot, zp_tsp)
GM_WRAP(q4_K, q4_K_dot, kq_tsp)
GM_WRAP(q5_K, q5_K_dot, kq_tsp)
GM_WRAP(q6_K, q6_K_dot, kq_tsp)
#define GM_ROW(name, ty) {ty, QX_ISA, INT32_MAX, name##_gdot, name##_gtsp, name##_xrow, name##_xconv, NULL, NULL, 0, 0}
#else
#define GM_ROW(name, ty) KQ_ROW(name, ty)
#endif

static const ll_mm_ops k_qx_ops[] = {
#if defined(QX_VNNI)
    GM_ROW(q8_0, LL_TYPE_Q8_0),
    GM_ROW(q4_0, LL_TYPE_Q4_0),
    GM_ROW(q5_0, LL_TYPE_Q5_0),
    {LL_MM_Q4_0_X16, QX_ISA, INT32_MAX, q4_0x16_dot, x16_tsp, q4_0_xrow, q4_0_xconv, NULL, NULL, 0, 0},
    {LL_MM_Q5_0_X16, QX_ISA, INT32_MAX, q5_0x16_dot, x16_tsp, q5_0_xrow, q5_0_xconv, NULL, NULL, 0, 0},
    {LL_MM_Q8_0_X16, QX_ISA, INT32_MAX, q8_0x16_dot, x16_tsp, q8_0_xrow, q8_0_xconv, NULL, NULL, 0, 0},
    {LL_MM_Q4_K_X16, QX_ISA, INT32_MAX, q4kx16_dot, q4kx16_tsp, q4_K_xrow, q4_K_xconv, NULL, NULL, 0, 0},
#else
    QX_ROW(q8_0, LL_TYPE_Q8_0),
    QX_ROW(q4_0, LL_TYPE_Q4_0),
    QX_ROW(q5_0, LL_TYPE_Q5_0),
#endif
    QX_ROW(q4_1, LL_TYPE_Q4_1),
    QX_ROW(q5_1, LL_TYPE_Q5_1),
    GM_ROW(q4_K, LL_TYPE_Q4_K),
    GM_ROW(q5_K, LL_TYPE_Q5_K),
    GM_ROW(q6_K, LL_TYPE_Q6_K),
};
#endif

const ll_mm_ops *ll_mmq_find_x86(uint32_t wtype) {
#if defined(QX_VNNI) || defined(QX_AVX2)
    for (size_t i = 0; i < sizeof k_qx_ops / sizeof k_qx_ops[0]; i++)
        if (k_qx_ops[i].wtype == wtype) return &k_qx_ops[i];
#endif
    (void)wtype;
    return NULL;
}
