// kquant_x86.h — K-quant super-blocks unpacked with AVX2, shared by the one-token kernels (qmatmul_x86.c) and the
// prefill GEMM (qgemm_x86.c): the 256 codes in element order, and the 12-byte Q4_K/Q5_K scale/min packing.
// Include only where AVX2 is compiled in.
#ifndef LL_KQUANT_X86_H
#define LL_KQUANT_X86_H

#include <immintrin.h>
#include <string.h>

#include "types/quant.h"

#if defined(__AVX512VNNI__)
// acc + w . (the 4 signed bytes at p, in every lane): vpdpbusd with an embedded {1to16} broadcast, which
// compilers do not form from _mm512_set1_epi32 (a separate vpbroadcastd measured slower).
static inline __attribute__((always_inline)) __m512i ll_dpbusd_bcast(__m512i acc, __m512i w, const void *p) {
    __asm__("vpdpbusd %2%{1to16%}, %1, %0" : "+v"(acc) : "v"(w), "m"(*(const int32_t *)p));
    return acc;
}

// Run k (0..3) of a block of Q4_0 / Q5_0 / Q8_0 in 16-row groups (ty: the GGUF type; the layouts: matmul.h
// LL_MM_*_X16; p: the block): the unsigned codes of elements 4k..4k+3 (lo) and 16 + 4k..16 + 4k + 3 (hi) of the
// 16 rows, a row per int32 lane. Q4_0/Q5_0: the two nibbles, Q5_0's fifth bit added from its byte masks;
// Q8_0: its runs k and k + 4 (codes + 128 already).
static inline __attribute__((always_inline)) void ll_x16_run(uint32_t ty, const uint8_t *p, int k, __m512i *lo,
                                                             __m512i *hi) {
    if (ty == LL_TYPE_Q8_0) {
        *lo = _mm512_loadu_si512((const void *)(p + 32 + 64 * k));
        *hi = _mm512_loadu_si512((const void *)(p + 32 + 64 * (k + 4)));
        return;
    }
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    const __m512i q = _mm512_loadu_si512((const void *)(p + (ty == LL_TYPE_Q5_0 ? 96 : 32) + 64 * k));
    *lo = _mm512_and_si512(q, m4);
    *hi = _mm512_and_si512(_mm512_srli_epi16(q, 4), m4);
    if (ty == LL_TYPE_Q5_0) {
        const __m512i b4 = _mm512_set1_epi8(0x10);
        uint64_t ml, mh;
        memcpy(&ml, p + 32 + 16 * k, 8);
        memcpy(&mh, p + 40 + 16 * k, 8);
        *lo = _mm512_mask_add_epi8(*lo, (__mmask64)ml, *lo, b4); // bit 4 is clear: + is |
        *hi = _mm512_mask_add_epi8(*hi, (__mmask64)mh, *hi, b4);
    }
}
#endif

// 256 unsigned codes of one super-block at u, element order: Q6_K 0..63 (q + 32), Q4_K 0..15, Q5_K 0..31.
static inline void ll_kq_codes_x86(uint32_t ty, const uint8_t *blk, uint8_t *u) {
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    if (ty == LL_TYPE_Q6_K) {
        const ll_block_q6_K *b = (const ll_block_q6_K *)blk;
        const __m256i m2 = _mm256_set1_epi8(3);
        for (int h = 0; h < 2; h++) { // halves of 128: ql low nibbles, ql high nibbles, qh pairs of bits
            __m256i l0 = _mm256_loadu_si256((const __m256i *)(b->ql + 64 * h));
            __m256i l1 = _mm256_loadu_si256((const __m256i *)(b->ql + 64 * h + 32));
            __m256i qh = _mm256_loadu_si256((const __m256i *)(b->qh + 32 * h));
            __m256i h0 = _mm256_slli_epi16(_mm256_and_si256(qh, m2), 4);
            __m256i h1 = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2), m2), 4);
            __m256i h2 = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 4), m2), 4);
            __m256i h3 = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 6), m2), 4);
            uint8_t *o = u + 128 * h;
            _mm256_storeu_si256((__m256i *)o, _mm256_or_si256(_mm256_and_si256(l0, m4), h0));
            _mm256_storeu_si256((__m256i *)(o + 32), _mm256_or_si256(_mm256_and_si256(l1, m4), h1));
            _mm256_storeu_si256((__m256i *)(o + 64), _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4), h2));
            _mm256_storeu_si256((__m256i *)(o + 96), _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4), h3));
        }
        return;
    }
    // Q4_K / Q5_K: 4 groups of 64 = 32 low nibbles then 32 high nibbles of 32 qs bytes; Q5_K's fifth bit for
    // group g from bits 2g (low) and 2g + 1 (high) of qh.
    const uint8_t *qs = ty == LL_TYPE_Q5_K ? ((const ll_block_q5_K *)blk)->qs : ((const ll_block_q4_K *)blk)->qs;
    __m256i qh = ty == LL_TYPE_Q5_K ? _mm256_loadu_si256((const __m256i *)((const ll_block_q5_K *)blk)->qh)
                                    : _mm256_setzero_si256();
    const __m256i one = _mm256_set1_epi8(1);
    for (int g = 0; g < 4; g++) {
        __m256i q = _mm256_loadu_si256((const __m256i *)(qs + 32 * g));
        __m256i lo = _mm256_and_si256(q, m4), hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
        if (ty == LL_TYPE_Q5_K) {
            lo = _mm256_or_si256(lo, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2 * g), one), 4));
            hi = _mm256_or_si256(hi, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2 * g + 1), one), 4));
        }
        _mm256_storeu_si256((__m256i *)(u + 64 * g), lo);
        _mm256_storeu_si256((__m256i *)(u + 64 * g + 32), hi);
    }
}

// The 12-byte Q4_K/Q5_K packing (ll_quant_k4_scale_min) as 16 bytes: 0-7 the scales, 8-15 the mins. As three
// little-endian words v0 v1 v2: scales 0-3 are the low 6 bits of v0's bytes, mins 0-3 of v1's; scales 4-7 are
// v2's low nibbles with v0's top 2 bits above, mins 4-7 v2's high nibbles with v1's top 2 bits.
static inline __m128i ll_kq_scales_mins_x86(const uint8_t *scales12) {
    uint32_t v[3], w[4];
    memcpy(v, scales12, 12);
    w[0] = v[0] & 0x3f3f3f3fu;
    w[1] = (v[2] & 0x0f0f0f0fu) | (((v[0] >> 6) & 0x03030303u) << 4);
    w[2] = v[1] & 0x3f3f3f3fu;
    w[3] = ((v[2] >> 4) & 0x0f0f0f0fu) | (((v[1] >> 6) & 0x03030303u) << 4);
    return _mm_loadu_si128((const __m128i *)w);
}

#endif
