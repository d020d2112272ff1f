// qgemm_x86.c — prefill (several tokens) with quantized weights on AVX-512 VNNI, and the SIMD activation
// quantizer. 16 weight rows are decoded once per call into a panel of unsigned 8-bit codes: one zmm holds 4
// consecutive codes of each of the 16 rows (row r in 32-bit lane r), with one f32 scale per row and sub-block;
// the microkernel runs 8 tokens past it, so one vpdpbusd (16 rows x 4 codes against 4 activation codes
// broadcast) is 64 products, each weight load serves 8 tokens and each activation load 16 rows.
#include "backend/cpu/matmul_q.h"

#include "core/half.h"

#if !defined(LL_PORTABLE) && defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) &&          \
    defined(__AVX512VNNI__)
#include <immintrin.h>

#include "backend/cpu/kquant_x86.h"

#define INLINE static inline __attribute__((always_inline))
#define GM_R 16 // panel rows (zmm lanes)
#define GM_T 8  // tokens per register tile: 8 int32 sums + 8 partial + 8 f32 accumulators

static inline size_t al64(size_t n) { return ll_align_up(n, 64); }

// ---- activations: llama.cpp's x86 Q8_0 / reference Q8_K quantizers, bit for bit (matmul_q.c is the spec) --------

// ll_quant_nearest_int on 16 lanes: the same float add and bit trick, so NaN and ties come out alike.
INLINE __m512i nearest16(__m512 f) {
    __m512i i = _mm512_castps_si512(_mm512_add_ps(f, _mm512_set1_ps(12582912.f)));
    return _mm512_sub_epi32(_mm512_and_si512(i, _mm512_set1_epi32(0x007fffff)), _mm512_set1_epi32(0x00400000));
}

// max |x| over 16 lanes ignoring NaN (vmaxps returns its second operand when either is NaN, as fmaxf would skip).
INLINE __m512 absmax16(__m512 acc, __m512 v) { return _mm512_max_ps(_mm512_abs_ps(v), acc); }

static void act_q8_0(uint32_t wtype, const float *x, void *row, int n_in) {
    const int nb = n_in / 32, off = ll_mmq_code_offset(wtype);
    ll_block_q8_0 *q = row;
    ll_mmq_row v = ll_mmq_act_view(wtype, row, n_in);
    float *dv = (float *)v.d, *sf = (float *)v.s;
    int32_t *isum = (int32_t *)v.aux, *c = (int32_t *)v.c;
    const __m512i lo = _mm512_set1_epi32(-127), hi = _mm512_set1_epi32(127);
    for (int b = 0; b < nb; b++, x += 32) {
        __m512 x0 = _mm512_loadu_ps(x), x1 = _mm512_loadu_ps(x + 16);
        float amax = _mm512_reduce_max_ps(absmax16(absmax16(_mm512_setzero_ps(), x0), x1));
        const float d = amax / 127.f, id = amax != 0.0f ? 127.f / amax : 0.0f;
        uint16_t dh = ll_fp32_to_fp16(d);
        __m512 vid = _mm512_set1_ps(id);
        __m512i q0 = _mm512_min_epi32(_mm512_max_epi32(nearest16(_mm512_mul_ps(x0, vid)), lo), hi);
        __m512i q1 = _mm512_min_epi32(_mm512_max_epi32(nearest16(_mm512_mul_ps(x1, vid)), lo), hi);
        _mm_storeu_si128((__m128i *)q[b].qs, _mm512_cvtepi32_epi8(q0));
        _mm_storeu_si128((__m128i *)(q[b].qs + 16), _mm512_cvtepi32_epi8(q1));
        q[b].d = dh;
        dv[b] = ll_fp16_to_fp32(dh);
        isum[b] = _mm512_reduce_add_epi32(_mm512_add_epi32(q0, q1));
        c[b] = -off * isum[b];
        sf[b] = 0.0f;
    }
}

static void act_q8_K(uint32_t wtype, const float *x, void *row, int n_in) {
    const int nb = n_in / LL_QK_K, off = ll_mmq_code_offset(wtype);
    const bool k16 = ll_mmq_sub(wtype) == 16, mins = wtype == LL_TYPE_Q4_K || wtype == LL_TYPE_Q5_K;
    ll_block_q8_K *y = row;
    ll_mmq_row v = ll_mmq_act_view(wtype, row, n_in);
    float *dv = (float *)v.d, *sf = (float *)v.s;
    int32_t *aux = (int32_t *)v.aux, *c = (int32_t *)v.c;
    const __m512i lo = _mm512_set1_epi32(-128), hi = _mm512_set1_epi32(127);
    for (int b = 0; b < nb; b++, x += LL_QK_K) {
        __m512 m = _mm512_setzero_ps();
        for (int i = 0; i < 16; i++) m = absmax16(m, _mm512_loadu_ps(x + 16 * i));
        float amax = _mm512_reduce_max_ps(m);
        memset(&y[b], 0, sizeof y[b]);
        if (amax != 0.0f) {
            // The reference keeps the first element of largest |x|, with its sign.
            int first = 0;
            for (int i = 0; i < 16; i++) {
                __m512 ax = _mm512_abs_ps(_mm512_loadu_ps(x + 16 * i));
                __mmask16 e = _mm512_cmp_ps_mask(ax, _mm512_set1_ps(amax), _CMP_EQ_OQ);
                if (e) {
                    first = 16 * i + __builtin_ctz(e);
                    break;
                }
            }
            const float iscale = -127.f / x[first];
            __m512 vis = _mm512_set1_ps(iscale);
            for (int i = 0; i < 16; i++) {
                __m512i q = nearest16(_mm512_mul_ps(_mm512_loadu_ps(x + 16 * i), vis));
                q = _mm512_min_epi32(_mm512_max_epi32(q, lo), hi);
                _mm_storeu_si128((__m128i *)(y[b].qs + 16 * i), _mm512_cvtepi32_epi8(q));
                y[b].bsums[i] = (int16_t)_mm512_reduce_add_epi32(q);
            }
            y[b].d = 1 / iscale;
        }
        dv[b] = y[b].d;
        aux[b] = 0;
        for (int i = 0; i < 8; i++) {
            int s0 = y[b].bsums[2 * i], s1 = y[b].bsums[2 * i + 1];
            if (k16) {
                c[16 * b + 2 * i] = -off * s0;
                c[16 * b + 2 * i + 1] = -off * s1;
            } else {
                c[8 * b + i] = -off * (s0 + s1);
            }
            sf[8 * b + i] = mins ? (float)(s0 + s1) : 0.0f;
        }
    }
}

bool ll_qgemm_x86_act(uint32_t wtype, const float *x, void *row, int n_in) {
    uint32_t at = ll_mmq_act_type(wtype);
    if (at == LL_TYPE_Q8_0) act_q8_0(wtype, x, row, n_in);
    else if (at == LL_TYPE_Q8_K) act_q8_K(wtype, x, row, n_in);
    else return false;
    return true;
}

// ---- the panel ------------------------------------------------------------------------------------------------
// [codes: n_in / 4 zmm, zmm i = codes 4i..4i+3 of rows 0..15][S: (n_in / sub) x 16 f32: scale of each row's
// sub-block][M: (n_in / 32) x 16 f32, Q4_K/Q5_K: -dmin * m of each sub-block][tmp: 16 x 256 decoded codes and
// 16 x 16 scales of one super-block].
// Rows past the matrix have zero scales (their lanes are computed and dropped).

typedef struct gm_panel {
    __m512i *codes;
    float *S, *M;
    uint8_t *tmp;
} gm_panel;

static gm_panel gm_panel_at(void *tsp, int n_in, int sub) {
    uint8_t *p = tsp;
    gm_panel g;
    g.codes = (__m512i *)p;
    p += al64((size_t)n_in * GM_R);
    g.S = (float *)p;
    p += al64((size_t)(n_in / sub) * GM_R * 4);
    g.M = (float *)p;
    p += al64((size_t)(n_in / 32) * GM_R * 4);
    g.tmp = p;
    return g;
}

size_t ll_qgemm_x86_tsp(int n_in) {
    return al64((size_t)n_in * GM_R) + (size_t)(n_in / 16 + n_in / 32) * GM_R * 4 + 128 + GM_R * (256 + 64);
}

// 16 rows x 32 codes (tmp rows `stride` bytes apart) -> 8 zmm: dst[i] lane r = codes 4i..4i+3 of row r. Each
// 128-bit lane l of A_q holds 4 dwords of row q + 4l; a 4x4 dword transpose inside the lanes puts rows 4l..4l+3
// side by side: 16 rows in order.
INLINE void gm_transpose(const uint8_t *tmp, size_t stride, __m512i *dst) {
    for (int h = 0; h < 2; h++) {
        __m512i a[4];
        for (int q = 0; q < 4; q++) {
            const uint8_t *p = tmp + (size_t)q * stride + 16 * h;
            __m512i v = _mm512_castsi128_si512(_mm_loadu_si128((const __m128i *)p));
            v = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)(p + 4 * stride)), 1);
            v = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)(p + 8 * stride)), 2);
            a[q] = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)(p + 12 * stride)), 3);
        }
        __m512i t0 = _mm512_unpacklo_epi32(a[0], a[1]), t1 = _mm512_unpackhi_epi32(a[0], a[1]);
        __m512i t2 = _mm512_unpacklo_epi32(a[2], a[3]), t3 = _mm512_unpackhi_epi32(a[2], a[3]);
        _mm512_store_si512(dst + 4 * h + 0, _mm512_unpacklo_epi64(t0, t2));
        _mm512_store_si512(dst + 4 * h + 1, _mm512_unpackhi_epi64(t0, t2));
        _mm512_store_si512(dst + 4 * h + 2, _mm512_unpacklo_epi64(t1, t3));
        _mm512_store_si512(dst + 4 * h + 3, _mm512_unpackhi_epi64(t1, t3));
    }
}

INLINE float fp16_at(const void *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return _cvtsh_ss(h);
}

// K-quant super-block of one row -> 256 unsigned codes at u (element order) and 16 f32 at sm: Q6_K the scales of
// its 16 sub-blocks, Q4_K/Q5_K the 8 scales then the 8 mins as -dmin * m.
INLINE void k_decode(uint32_t ty, const uint8_t *blk, uint8_t *u, float *sm) {
    ll_kq_codes_x86(ty, blk, u);
    if (ty == LL_TYPE_Q6_K) {
        const ll_block_q6_K *b = (const ll_block_q6_K *)blk;
        __m512 sc = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)b->scales)));
        _mm512_storeu_ps(sm, _mm512_mul_ps(sc, _mm512_set1_ps(fp16_at(&b->d))));
        return;
    }
    const ll_block_q4_K *b = (const ll_block_q4_K *)blk; // Q5_K shares the header: d, dmin, scales
    __m512 f = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(ll_kq_scales_mins_x86(b->scales)));
    __m512 dd = _mm512_insertf32x8(_mm512_set1_ps(fp16_at(&b->d)), _mm256_set1_ps(-fp16_at(&b->dmin)), 1);
    _mm512_storeu_ps(sm, _mm512_mul_ps(f, dd));
}

// Legacy blocks (Q8_0, Q4_0, Q5_0) straight from W: A_q holds 16 code bytes of rows q, q+4, q+8, q+12 (one per
// 128-bit lane), so the nibble split (or the xor) works on 4 rows at once and the 4x4 dword transpose of
// gm_transpose puts them in place; the 16 scales come in one gather. Rows past nr read row o (valid memory)
// with zero scales.
static void gm_pack_leg(uint32_t ty, const ll_mm_job *j, int o, int nr, gm_panel *g) {
    const size_t bs = ty == LL_TYPE_Q8_0 ? 34 : ty == LL_TYPE_Q4_0 ? 18 : 22, rb = j->row_bytes;
    const size_t qo = ty == LL_TYPE_Q5_0 ? 6 : 2;
    const int nb = j->n_in / 32;
    const uint8_t *w0 = j->W + (size_t)o * rb;
    size_t roff[GM_R];
    int32_t ri[GM_R];
    for (int r = 0; r < GM_R; r++) {
        roff[r] = (size_t)(r < nr ? r : 0) * rb;
        ri[r] = (int32_t)roff[r]; // 15 rows of at most a few 100 KB: fits
    }
    const __m512i vidx = _mm512_loadu_si512(ri), m4 = _mm512_set1_epi8(0x0F), b4 = _mm512_set1_epi8(0x10);
    const __mmask16 rm = (__mmask16)((1u << nr) - 1);
    for (int b = 0; b < nb; b++) {
        const uint8_t *p = w0 + (size_t)b * bs;
        __m512i dv = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), rm, vidx, p, 1);
        _mm512_store_ps(g->S + (size_t)b * GM_R, _mm512_cvtph_ps(_mm512_cvtepi32_epi16(dv)));
        __m512i a[2][4];
        for (int q = 0; q < 4; q++) {
            const uint8_t *r0 = p + roff[q] + qo, *r1 = p + roff[q + 4] + qo, *r2 = p + roff[q + 8] + qo,
                          *r3 = p + roff[q + 12] + qo;
#define LD16(p) _mm_loadu_si128((const __m128i *)(p))
#define LANES4(off)                                                                                            \
    _mm512_inserti32x4(_mm512_inserti32x4(_mm512_inserti32x4(_mm512_castsi128_si512(LD16(r0 + (off))),        \
                                                             LD16(r1 + (off)), 1),                             \
                                          LD16(r2 + (off)), 2),                                                \
                       LD16(r3 + (off)), 3)
            if (ty == LL_TYPE_Q8_0) {
                a[0][q] = _mm512_xor_si512(LANES4(0), _mm512_set1_epi8((char)0x80));
                a[1][q] = _mm512_xor_si512(LANES4(16), _mm512_set1_epi8((char)0x80));
            } else {
                __m512i raw = LANES4(0);
                a[0][q] = _mm512_and_si512(raw, m4);
                a[1][q] = _mm512_and_si512(_mm512_srli_epi16(raw, 4), m4);
            }
#undef LANES4
#undef LD16
            if (ty == LL_TYPE_Q5_0) { // bit 4 of code i of each row: bit i of its qh
                const uint8_t *rr[4] = {r0, r1, r2, r3};
                uint64_t ml = 0, mh = 0;
                for (int l = 0; l < 4; l++) {
                    uint32_t h;
                    memcpy(&h, rr[l] - 4, 4);
                    ml |= (uint64_t)(h & 0xFFFF) << (16 * l);
                    mh |= (uint64_t)(h >> 16) << (16 * l);
                }
                a[0][q] = _mm512_mask_add_epi8(a[0][q], (__mmask64)ml, a[0][q], b4); // bit 4 clear: + is |
                a[1][q] = _mm512_mask_add_epi8(a[1][q], (__mmask64)mh, a[1][q], b4);
            }
        }
        __m512i *dst = g->codes + (size_t)b * 8;
        for (int h = 0; h < 2; h++) {
            __m512i t0 = _mm512_unpacklo_epi32(a[h][0], a[h][1]), t1 = _mm512_unpackhi_epi32(a[h][0], a[h][1]);
            __m512i t2 = _mm512_unpacklo_epi32(a[h][2], a[h][3]), t3 = _mm512_unpackhi_epi32(a[h][2], a[h][3]);
            _mm512_store_si512(dst + 4 * h + 0, _mm512_unpacklo_epi64(t0, t2));
            _mm512_store_si512(dst + 4 * h + 1, _mm512_unpackhi_epi64(t0, t2));
            _mm512_store_si512(dst + 4 * h + 2, _mm512_unpacklo_epi64(t1, t3));
            _mm512_store_si512(dst + 4 * h + 3, _mm512_unpackhi_epi64(t1, t3));
        }
    }
}

// Q4_0 / Q5_0 / Q8_0 in 16-row groups (LL_MM_*_X16): the group is the panel already, but for the nibble split
// (Q5_0: and its fifth bit from the run's byte masks): run k of a block (elements 4k..4k+3 of the 16 rows) gives
// the panel's zmm k (low nibbles) and 4 + k (high); Q8_0's 8 runs are its 8 zmm as they are (codes + 128, as the
// panel keeps them). The 16 scales convert in one go. o is a multiple of 16 and nr 16 (n_out is).
static void gm_pack_x16(uint32_t ty, const ll_mm_job *j, int o, int nr, gm_panel *g) {
    LL_ASSERT(o % 16 == 0 && nr == 16);
    const uint32_t base = ll_mm_base_type(ty);
    const int nb = j->n_in / 32;
    const size_t bs = ll_mm_x16_block_bytes(ty);
    const uint8_t *p = j->W + (size_t)(o / 16) * (size_t)nb * bs;
    for (int b = 0; b < nb; b++, p += bs) {
        _mm512_store_ps(g->S + (size_t)b * GM_R, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p)));
        __m512i *dst = g->codes + (size_t)b * 8;
        for (int k = 0; k < 4; k++) {
            __m512i l, h;
            ll_x16_run(base, p, k, &l, &h);
            _mm512_store_si512(dst + k, l);
            _mm512_store_si512(dst + 4 + k, h);
        }
    }
}

// Q4_K in 16-row groups (LL_MM_Q4_K_X16): run 8c + k of a super-block is the panel's low-nibble zmm 16c + k and
// high-nibble zmm 16c + 8 + k (elements 64c + 4k and 64c + 32 + 4k of the 16 rows); S = d sc, M = -dmin m, each
// one vector of 16 rows per sub-block.
static void gm_pack_x16k(const ll_mm_job *j, int o, int nr, gm_panel *g) {
    LL_ASSERT(o % 16 == 0 && nr == 16);
    const int nb = j->n_in / LL_QK_K;
    const uint8_t *p = j->W + (size_t)(o / 16) * (size_t)nb * 2368;
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    for (int b = 0; b < nb; b++, p += 2368) {
        const __m512 d = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p));
        const __m512 dm = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(p + 32)));
        for (int s = 0; s < 8; s++) {
            __m512 sc = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(p + 64 + 16 * s))));
            __m512 mn = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(p + 192 + 16 * s))));
            _mm512_store_ps(g->S + ((size_t)b * 8 + s) * GM_R, _mm512_mul_ps(d, sc));
            _mm512_store_ps(g->M + ((size_t)b * 8 + s) * GM_R, _mm512_mul_ps(_mm512_sub_ps(_mm512_setzero_ps(), dm), mn));
        }
        __m512i *dst = g->codes + (size_t)b * 64;
        for (int c = 0; c < 4; c++)
            for (int k = 0; k < 8; k++) {
                const __m512i q = _mm512_loadu_si512((const void *)(p + 320 + 64 * (8 * c + k)));
                _mm512_store_si512(dst + 16 * c + k, _mm512_and_si512(q, m4));
                _mm512_store_si512(dst + 16 * c + 8 + k, _mm512_and_si512(_mm512_srli_epi16(q, 4), m4));
            }
    }
}

// Rows [o, o + nr) of W into the panel.
static void gm_pack(uint32_t ty, const ll_mm_job *j, int o, int nr, gm_panel *g) {
    if (ty == LL_MM_Q4_K_X16) {
        gm_pack_x16k(j, o, nr, g);
        return;
    }
    if (ty == LL_MM_Q4_0_X16 || ty == LL_MM_Q5_0_X16 || ty == LL_MM_Q8_0_X16) {
        gm_pack_x16(ty, j, o, nr, g);
        return;
    }
    if (ty == LL_TYPE_Q8_0 || ty == LL_TYPE_Q4_0 || ty == LL_TYPE_Q5_0) {
        gm_pack_leg(ty, j, o, nr, g);
        return;
    }
    // K-quants: per super-block each row's codes to tmp (16 x 256 B) and its 16 scales (mins) to tmp + 4096
    // (16 x 64 B), then the same 16 x 8-dword transposes for both.
    const int nb = j->n_in / LL_QK_K;
    const size_t bs = ll_type_get(ty)->size;
    uint8_t *sm = g->tmp + GM_R * 256;
    if (nr < GM_R) memset(g->tmp, 0, GM_R * (256 + 64));
    for (int b = 0; b < nb; b++) {
        for (int r = 0; r < nr; r++)
            k_decode(ty, j->W + (size_t)(o + r) * j->row_bytes + (size_t)b * bs, g->tmp + r * 256,
                     (float *)(sm + r * 64));
        for (int c = 0; c < 8; c++) gm_transpose(g->tmp + 32 * c, 256, g->codes + ((size_t)b * LL_QK_K + 32 * c) / 4);
        if (ty == LL_TYPE_Q6_K) { // S: 16 sub-blocks
            gm_transpose(sm, 64, (__m512i *)(g->S + (size_t)b * 16 * GM_R));
            gm_transpose(sm + 32, 64, (__m512i *)(g->S + (size_t)b * 16 * GM_R + 8 * GM_R));
        } else { // S and M: 8 sub-blocks each
            gm_transpose(sm, 64, (__m512i *)(g->S + (size_t)b * 8 * GM_R));
            gm_transpose(sm + 32, 64, (__m512i *)(g->M + (size_t)b * 8 * GM_R));
        }
    }
}

// ---- the microkernel --------------------------------------------------------------------------------------------
// y[t0 + t][o + r] for r < 16 (stored under mask) and t < T. Per activation block (XE elements, one scale dx) and
// per sub-block of SUB elements: the integer sum starts at the activation's c (the code offset's correction),
// takes SUB/4 vpdpbusd, is scaled by the rows' S (and Q4_K/Q5_K add M x the activations' 32-sums) into a
// partial sum, which is scaled by dx into the accumulator once per activation block.

typedef struct gm_act {
    const uint8_t *q[GM_T]; // first code of the row
    const float *d[GM_T], *s[GM_T];
    const int32_t *c[GM_T];
} gm_act;

INLINE int32_t ld32(const uint8_t *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return v;
}


INLINE void gm_tile(uint32_t ty, const ll_mm_job *j, const gm_panel *g, const gm_act *a, int o, int nr, int t0,
                    const int T) {
    const bool k = ty == LL_TYPE_Q4_K || ty == LL_TYPE_Q5_K || ty == LL_TYPE_Q6_K;
    const bool mins = ty == LL_TYPE_Q4_K || ty == LL_TYPE_Q5_K, init = ll_mmq_code_offset(ty) != 0;
    const int SUB = ty == LL_TYPE_Q6_K ? 16 : 32, XE = k ? 256 : 32, XB = k ? 292 : 34, NS = XE / SUB;
    const int nb = j->n_in / XE;
    __m512 acc[GM_T];
#pragma GCC unroll 8
    for (int t = 0; t < T; t++) acc[t] = _mm512_setzero_ps();
    const __m512i *W = g->codes;
    const float *S = g->S, *M = g->M;
    for (int b = 0; b < nb; b++) {
        __m512 ps[GM_T];
#pragma GCC unroll 16
        for (int s = 0; s < NS; s++) {
            __m512i ia[GM_T];
#pragma GCC unroll 8
            for (int t = 0; t < T; t++) ia[t] = init ? _mm512_set1_epi32(a->c[t][b * NS + s]) : _mm512_setzero_si512();
            const uint8_t *xo[GM_T];
#pragma GCC unroll 8
            for (int t = 0; t < T; t++) xo[t] = a->q[t] + (size_t)b * XB + (size_t)s * SUB;
#pragma GCC unroll 8
            for (int i = 0; i < SUB / 4; i++) {
                __m512i w = _mm512_load_si512(W + i);
#pragma GCC unroll 8
                for (int t = 0; t < T; t++) ia[t] = ll_dpbusd_bcast(ia[t], w, xo[t] + 4 * i);
            }
            W += SUB / 4;
            __m512 sv = _mm512_load_ps(S);
            S += GM_R;
#pragma GCC unroll 8
            for (int t = 0; t < T; t++) ps[t] = s == 0 ? _mm512_mul_ps(_mm512_cvtepi32_ps(ia[t]), sv)
                                                       : _mm512_fmadd_ps(_mm512_cvtepi32_ps(ia[t]), sv, ps[t]);
            if (mins) {
                __m512 mv = _mm512_load_ps(M);
                M += GM_R;
#pragma GCC unroll 8
                for (int t = 0; t < T; t++) ps[t] = _mm512_fmadd_ps(mv, _mm512_set1_ps(a->s[t][b * NS + s]), ps[t]);
            }
        }
#pragma GCC unroll 8
        for (int t = 0; t < T; t++) acc[t] = _mm512_fmadd_ps(ps[t], _mm512_set1_ps(a->d[t][b]), acc[t]);
    }
    __mmask16 m = (__mmask16)((1u << nr) - 1);
#pragma GCC unroll 8
    for (int t = 0; t < T; t++) _mm512_mask_storeu_ps(j->y + (size_t)(t0 + t) * (size_t)j->n_out + o, m, acc[t]);
}

typedef void (*gm_tile_fn)(const ll_mm_job *j, const gm_panel *g, const gm_act *a, int o, int nr, int t0);

#define GM_FN(name, ty, T)                                                                                     \
    static void name##_##T(const ll_mm_job *j, const gm_panel *g, const gm_act *a, int o, int nr, int t0) {    \
        gm_tile(ty, j, g, a, o, nr, t0, T);                                                                    \
    }
#define GM_TYPE(name, ty)                                                                                      \
    GM_FN(name, ty, 1) GM_FN(name, ty, 2) GM_FN(name, ty, 3) GM_FN(name, ty, 4) GM_FN(name, ty, 5)             \
    GM_FN(name, ty, 6) GM_FN(name, ty, 7) GM_FN(name, ty, 8)                                                   \
    static const gm_tile_fn name##_tiles[GM_T] = {name##_1, name##_2, name##_3, name##_4,                      \
                                                  name##_5, name##_6, name##_7, name##_8};
GM_TYPE(gq8_0, LL_TYPE_Q8_0)
GM_TYPE(gq4_0, LL_TYPE_Q4_0)
GM_TYPE(gq5_0, LL_TYPE_Q5_0)
GM_TYPE(gq4_K, LL_TYPE_Q4_K)
GM_TYPE(gq5_K, LL_TYPE_Q5_K)
GM_TYPE(gq6_K, LL_TYPE_Q6_K)

static const gm_tile_fn *gm_tiles(uint32_t ty) {
    switch (ty) {
    case LL_TYPE_Q8_0: case LL_MM_Q8_0_X16: return gq8_0_tiles;
    case LL_TYPE_Q4_0: case LL_MM_Q4_0_X16: return gq4_0_tiles;
    case LL_TYPE_Q5_0: case LL_MM_Q5_0_X16: return gq5_0_tiles;
    case LL_TYPE_Q4_K: case LL_MM_Q4_K_X16: return gq4_K_tiles;
    case LL_TYPE_Q5_K: return gq5_K_tiles;
    case LL_TYPE_Q6_K: return gq6_K_tiles;
    default: return NULL;
    }
}

bool ll_qgemm_x86_supports(uint32_t wtype) { return gm_tiles(wtype) != NULL; }

void ll_qgemm_x86(const ll_mm_job *j, int r0, int r1, void *tsp) {
    const gm_tile_fn *tiles = gm_tiles(j->wtype);
    LL_ASSERT(tiles != NULL);
    gm_panel g = gm_panel_at(tsp, j->n_in, ll_mmq_sub(j->wtype));
    // Offsets of the activation row's parts (the same for every token).
    ll_mmq_row v = ll_mmq_act_view(j->wtype, j->xa, j->n_in);
    const uint8_t *x0 = j->xa;
    size_t od = (size_t)((const uint8_t *)v.d - x0), oc = (size_t)((const uint8_t *)v.c - x0),
           os = (size_t)((const uint8_t *)v.s - x0), oq = ll_mmq_act_type(j->wtype) == LL_TYPE_Q8_K ? 4 : 2;
    const int ntiles = (j->n_tokens + GM_T - 1) / GM_T;
    for (int o = r0; o < r1; o += GM_R) {
        int nr = r1 - o < GM_R ? r1 - o : GM_R;
        if (o == r0) // the chunk's first rows: ask for all their lines at once rather than as the pack reaches them
            for (size_t e = 0; e < (size_t)nr * j->row_bytes; e += 64)
                _mm_prefetch((const char *)j->W + (size_t)o * j->row_bytes + e, _MM_HINT_T0);
        gm_pack(j->wtype, j, o, nr, &g);
        // The next 16 rows (one stretch of the map), prefetched into L2 a slice per token tile: the pack reads
        // 16 rows a block at a time, a pattern the hardware prefetchers follow too late (cache misses there
        // measured ~40% of the pack + kernel time on SmolLM shapes without this).
        int pe = o + 2 * GM_R < j->n_out ? o + 2 * GM_R : j->n_out;
        const char *pf = (const char *)j->W + (size_t)(o + GM_R) * j->row_bytes;
        size_t lines = pe > o + GM_R ? ((size_t)(pe - o - GM_R) * j->row_bytes + 63) / 64 : 0;
        size_t per = (lines + (size_t)ntiles - 1) / (size_t)ntiles, done = 0;
        for (int t0 = 0; t0 < j->n_tokens; t0 += GM_T) {
            int tn = j->n_tokens - t0 < GM_T ? j->n_tokens - t0 : GM_T;
            for (size_t e = done + per < lines ? done + per : lines; done < e; done++)
                _mm_prefetch(pf + 64 * done, _MM_HINT_T1);
            gm_act a;
            for (int t = 0; t < tn; t++) {
                const uint8_t *row = x0 + (size_t)(t0 + t) * j->xa_stride;
                a.q[t] = row + oq;
                a.d[t] = (const float *)(row + od);
                a.c[t] = (const int32_t *)(row + oc);
                a.s[t] = (const float *)(row + os);
            }
            // The next tile's output lines, for writing: its masked stores otherwise wait on the read for
            // ownership of 8 lines 4 n_out bytes apart (the output is rarely still in L2).
            for (int t = t0 + GM_T; t < t0 + 2 * GM_T && t < j->n_tokens; t++)
                _mm_prefetch((const char *)(j->y + (size_t)t * (size_t)j->n_out + o), _MM_HINT_ET0);
            tiles[tn - 1](j, &g, &a, o, nr, t0);
        }
    }
}

#else

bool ll_qgemm_x86_act(uint32_t wtype, const float *x, void *row, int n_in) {
    (void)wtype, (void)x, (void)row, (void)n_in;
    return false;
}
bool ll_qgemm_x86_supports(uint32_t wtype) {
    (void)wtype;
    return false;
}
size_t ll_qgemm_x86_tsp(int n_in) {
    (void)n_in;
    return 0;
}
void ll_qgemm_x86(const ll_mm_job *j, int r0, int r1, void *tsp) {
    (void)j, (void)r0, (void)r1, (void)tsp;
    LL_ASSERT(!"ll_qgemm_x86: not compiled in");
}

#endif
