// cuda_quant.h — device-side decoders of every weight type the CUDA backend computes with, one struct per
// type, shared by the matvec, dequantize and get_rows kernels (CUDA code: included by .cu files only).
#ifndef LL_CUDA_QUANT_H
#define LL_CUDA_QUANT_H

#include "backend/cuda/cuda_internal.h"

// A row is cut into units of R runs of L consecutive elements; a thread decodes one unit at a time:
//   element (start(u)[r] + i) of the row = a[r] * v[r][i] + b[r]    (b only when HAS_MIN)
// start() depends on the unit only, so x can be loaded once for several rows. L is 1 (scalar fallback for
// rows that are not 16-byte aligned) or a multiple of 4 (x read as float4). Units per row = ne0 / (R*L).

// Decoders are host code too (checked against the C dequantizers without a GPU); loads go through CU_LDG.
#ifdef __CUDA_ARCH__
#define CU_LDG(p) __ldg(p)
#else
#define CU_LDG(p) (*(p))
#endif
#define CU_HD __host__ __device__ __forceinline__

CU_HD float cu_h2f(uint16_t h) { return __half2float(__ushort_as_half(h)); }
CU_HD float cu_bf2f(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

// 16 bytes as 16 bytes (one aligned load).
CU_HD void cu_load16(const uint8_t *p, uint8_t out[16]) {
    uint4 v = CU_LDG((const uint4 *)p);
    memcpy(out, &v, 16);
}

template <int LW> struct cu_q_f32 { // LW = 4: rows 16-byte aligned; 1: scalar
    static constexpr int R = 1, L = LW;
    static constexpr bool HAS_MIN = false;
    CU_HD static void starts(int64_t u, int64_t st[R]) { st[0] = u * L; }
    CU_HD static void load(const cu_wview &w, int64_t row, int64_t u, float v[R][L], float a[R], float b[R]) {
        const float *p = (const float *)w.q + row * w.ne0 + u * L;
        if (L == 4) {
            float4 f = CU_LDG((const float4 *)p);
            v[0][0] = f.x; v[0][1] = f.y; v[0][2] = f.z; v[0][3] = f.w;
        } else {
            v[0][0] = CU_LDG(p);
        }
        a[0] = 1.0f;
        b[0] = 0.0f;
    }
};

template <int LW, bool BF> struct cu_q_half { // F16 (BF false) or BF16; LW = 8 (16-byte loads) or 1
    static constexpr int R = 1, L = LW;
    static constexpr bool HAS_MIN = false;
    CU_HD static void starts(int64_t u, int64_t st[R]) { st[0] = u * L; }
    CU_HD static float cvt(uint16_t h) {
        return BF ? cu_bf2f(h) : cu_h2f(h);
    }
    CU_HD static void load(const cu_wview &w, int64_t row, int64_t u, float v[R][L], float a[R], float b[R]) {
        const uint16_t *p = (const uint16_t *)w.q + row * w.ne0 + u * L;
        if (L == 8) {
            uint4 raw = CU_LDG((const uint4 *)p);
            uint32_t ws[4] = {raw.x, raw.y, raw.z, raw.w};
#pragma unroll
            for (int i = 0; i < 4; i++) {
                v[0][2 * i] = cvt((uint16_t)(ws[i] & 0xffff));
                v[0][2 * i + 1] = cvt((uint16_t)(ws[i] >> 16));
            }
        } else {
            v[0][0] = cvt(CU_LDG(p));
        }
        a[0] = 1.0f;
        b[0] = 0.0f;
    }
};

// Q8_0, repacked: the 32 quants of block k of row r at q + (r*nb + k)*32, its scale at d[r*nb + k].
// Unit = half a block (16 quants, one load).
struct cu_q_q8_0 {
    static constexpr int R = 1, L = 16;
    static constexpr bool HAS_MIN = false;
    CU_HD static void starts(int64_t u, int64_t st[R]) { st[0] = u * 16; }
    CU_HD static void load(const cu_wview &w, int64_t row, int64_t u, float v[R][L], float a[R], float b[R]) {
        int64_t nb = w.ne0 / 32;
        uint8_t q[16];
        cu_load16(w.q + row * w.ne0 + u * 16, q);
#pragma unroll
        for (int i = 0; i < 16; i++) v[0][i] = (float)(int8_t)q[i];
        a[0] = cu_h2f(CU_LDG(w.d + row * nb + u / 2));
        b[0] = 0.0f;
    }
};

// Q4_0, repacked: block k of row r: 16 bytes at q + (r*nb + k)*16 (byte j: element j low, j+16 high
// nibble), scale d[r*nb + k]; x = d * (q - 8). Unit = one block.
struct cu_q_q4_0 {
    static constexpr int R = 2, L = 16;
    static constexpr bool HAS_MIN = false;
    CU_HD static void starts(int64_t u, int64_t st[R]) { st[0] = u * 32; st[1] = u * 32 + 16; }
    CU_HD static void load(const cu_wview &w, int64_t row, int64_t u, float v[R][L], float a[R], float b[R]) {
        int64_t blk = row * (w.ne0 / 32) + u;
        uint8_t q[16];
        cu_load16(w.q + blk * 16, q);
#pragma unroll
        for (int i = 0; i < 16; i++) {
            v[0][i] = (float)((int)(q[i] & 0xF) - 8);
            v[1][i] = (float)((int)(q[i] >> 4) - 8);
        }
        a[0] = a[1] = cu_h2f(CU_LDG(w.d + blk));
        b[0] = b[1] = 0.0f;
    }
};

// Q4_K/Q5_K, repacked (upload.cu): the 24-bit field of group g (0..3, 64 elements) of a block's scale part h
// (h.x: d, dmin; h.y..h.w: the fields at bits 24g): the scale of sub-block 2g in bits 0-5, of 2g+1 in 6-11, their
// mins in 12-17 and 18-23. One funnel shift and a mask instead of unpacking the 12-byte GGUF packing per unit.
CU_HD uint32_t cu_k4r_field(const uint4 &h, int g) {
    const uint32_t lo = g < 2 ? h.y : g == 2 ? h.z : h.w, hi = g < 2 ? h.z : h.w;
    const int s = (24 * g) & 31;
#ifdef __CUDA_ARCH__
    return __funnelshift_r(lo, hi, s) & 0xffffff;
#else
    return (uint32_t)((((uint64_t)hi << 32) | lo) >> s) & 0xffffff;
#endif
}

// Group g of a repacked Q4_K/Q5_K block's scale part h: d, dmin, and the scales and mins of sub-blocks 2g, 2g+1.
typedef struct cu_k4r_group {
    float d, dmin;
    int sc0, sc1, m0, m1;
} cu_k4r_group;
CU_HD cu_k4r_group cu_k4r_group_of(const uint4 &h, int g) {
    const uint32_t f = cu_k4r_field(h, g);
    return cu_k4r_group{cu_h2f((uint16_t)(h.x & 0xffff)), cu_h2f((uint16_t)(h.x >> 16)), (int)(f & 63),
                        (int)((f >> 6) & 63), (int)((f >> 12) & 63), (int)(f >> 18)};
}

// Q4_K (HIGH false) / Q5_K (HIGH true), repacked: block k of row r = payload at q + (r*nb + k)*P (P = 128: qs;
// Q5_K 160: qh 32, then qs 128), scale part at ((uint4 *)d)[r*nb + k]. Unit p (0..7) of a block: group g = p/2
// of 64 elements, bytes l0 = (p%2)*16 .. +16 of its 32 qs bytes: elements 64g+l0+i (low nibble, sub-block 2g)
// and 64g+32+l0+i (high nibble, sub-block 2g+1). Q5_K's fifth bit: bit 2g / 2g+1 of qh[l0+i].
template <bool HIGH> struct cu_q_k45 {
    static constexpr int R = 2, L = 16;
    static constexpr bool HAS_MIN = true;
    static constexpr int P = HIGH ? 160 : 128, QS_OFF = HIGH ? 32 : 0;
    CU_HD static void starts(int64_t u, int64_t st[R]) {
        int p = (int)(u & 7), g = p >> 1, l0 = (p & 1) * 16;
        st[0] = (u >> 3) * 256 + 64 * g + l0;
        st[1] = st[0] + 32;
    }
    CU_HD static void load(const cu_wview &w, int64_t row, int64_t u, float v[R][L], float a[R], float b[R]) {
        const int64_t k = row * (w.ne0 / 256) + (u >> 3);
        const uint8_t *blk = w.q + k * P;
        int p = (int)(u & 7), g = p >> 1, l0 = (p & 1) * 16;
        uint8_t q[16], h[16];
        cu_load16(blk + QS_OFF + 32 * g + l0, q);
        if (HIGH) cu_load16(blk + l0, h);
#pragma unroll
        for (int i = 0; i < 16; i++) {
            int lo = q[i] & 0xF, hi = q[i] >> 4;
            if (HIGH) {
                lo |= ((h[i] >> (2 * g)) & 1) << 4;
                hi |= ((h[i] >> (2 * g + 1)) & 1) << 4;
            }
            v[0][i] = (float)lo;
            v[1][i] = (float)hi;
        }
        const cu_k4r_group s = cu_k4r_group_of(CU_LDG((const uint4 *)w.d + k), g);
        a[0] = s.d * (float)s.sc0;
        b[0] = -(s.dmin * (float)s.m0);
        a[1] = s.d * (float)s.sc1;
        b[1] = -(s.dmin * (float)s.m1);
    }
};

// Q6_K, repacked: block k of row r = its first 208 bytes (ql 128, qh 64, int8 scales 16) at q + (r*nb + k)*208,
// its fp16 d at d[r*nb + k]. Unit p (0..7) of a block: half h = p/4 (128 elements), l = l0..l0+7 with
// l0 = (p%4)*8; run j (0..3) = elements 128h + 32j + l of ql[64h + l] (j 0, 2: low/high nibble),
// ql[64h + 32 + l] (j 1, 3) and bits 2j..2j+1 of qh[32h + l]; x = d * scale[8h + 2j + l0/16] * (q - 32).
struct cu_q_q6_K {
    static constexpr int R = 4, L = 8;
    static constexpr bool HAS_MIN = false;
    CU_HD static void starts(int64_t u, int64_t st[R]) {
        int p = (int)(u & 7), h = p >> 2, l0 = (p & 3) * 8;
#pragma unroll
        for (int j = 0; j < 4; j++) st[j] = (u >> 3) * 256 + 128 * h + 32 * j + l0;
    }
    CU_HD static void load8(const uint8_t *p, uint8_t out[8]) { // 8-byte aligned
        uint2 v = CU_LDG((const uint2 *)p);
        memcpy(out, &v, 8);
    }
    CU_HD static void load(const cu_wview &w, int64_t row, int64_t u, float v[R][L], float a[R], float b[R]) {
        const int64_t k = row * (w.ne0 / 256) + (u >> 3);
        const uint8_t *blk = w.q + k * 208;
        int p = (int)(u & 7), h = p >> 2, l0 = (p & 3) * 8;
        uint8_t qa[8], qb[8], qh[8];
        load8(blk + 64 * h + l0, qa);
        load8(blk + 64 * h + 32 + l0, qb);
        load8(blk + 128 + 32 * h + l0, qh);
#pragma unroll
        for (int i = 0; i < 8; i++) {
            v[0][i] = (float)(((qa[i] & 0xF) | (((qh[i] >> 0) & 3) << 4)) - 32);
            v[1][i] = (float)(((qb[i] & 0xF) | (((qh[i] >> 2) & 3) << 4)) - 32);
            v[2][i] = (float)(((qa[i] >> 4) | (((qh[i] >> 4) & 3) << 4)) - 32);
            v[3][i] = (float)(((qb[i] >> 4) | (((qh[i] >> 6) & 3) << 4)) - 32);
        }
        float d = cu_h2f(CU_LDG(w.d + k));
        uint2 sw = CU_LDG((const uint2 *)(blk + 192 + 8 * h)); // this half's 8 scales
#pragma unroll
        for (int j = 0; j < 4; j++) {
            int idx = 2 * j + l0 / 16; // 0..7 within the half (l0/16 is 0 or 1): word j/2, byte idx%4
            uint32_t word = j < 2 ? sw.x : sw.y;
            a[j] = d * (float)(int8_t)((word >> (8 * (idx & 3))) & 0xff);
            b[j] = 0.0f;
        }
    }
};

// Calls f.template run<Q>() (f: a functor struct) with the decoder for w (the vector form when rows allow it).
// Returns false for a type without a decoder.
template <class F> static bool cu_dispatch(const cu_wview &w, F &&f) {
    bool vec_f = w.ne0 % 8 == 0; // float rows 16-byte aligned (the base is 256-aligned)
    switch (w.type) {
    case LL_TYPE_F32: vec_f ? f.template run<cu_q_f32<4>>() : f.template run<cu_q_f32<1>>(); return true;
    case LL_TYPE_F16:
        vec_f ? f.template run<cu_q_half<8, false>>() : f.template run<cu_q_half<1, false>>();
        return true;
    case LL_TYPE_BF16:
        vec_f ? f.template run<cu_q_half<8, true>>() : f.template run<cu_q_half<1, true>>();
        return true;
    case LL_TYPE_Q8_0: f.template run<cu_q_q8_0>(); return true;
    case LL_TYPE_Q4_0: f.template run<cu_q_q4_0>(); return true;
    case LL_TYPE_Q4_K: f.template run<cu_q_k45<false>>(); return true;
    case LL_TYPE_Q5_K: f.template run<cu_q_k45<true>>(); return true;
    case LL_TYPE_Q6_K: f.template run<cu_q_q6_K>(); return true;
    default: return false;
    }
}

#endif
