// cuda_q8.h — decode with int8 activations: the x row quantized to int8 (blocks of 32 with an f32 scale, as
// llama.cpp's q8_1 but with the scale and sums in arrays of their own), and per weight type a "unit" dot of
// unpacked codes with those int8 codes by dp4a (4 products + sum per instruction). Host code too, so that
// decode_check.cu checks every unit against the C dequantizers without a GPU.
#ifndef LL_CUDA_Q8_H
#define LL_CUDA_Q8_H

#include "backend/cuda/cuda_quant.h"

// The activation layout (cu_x8) is in cuda_internal.h.

#ifdef __CUDA_ARCH__
CU_HD int cu_dp4a(int a, int b, int c) { return __dp4a(a, b, c); }
#else
CU_HD int cu_dp4a(int a, int b, int c) {
    for (int i = 0; i < 4; i++) c += (int)(int8_t)(a >> 8 * i) * (int)(int8_t)(b >> 8 * i);
    return c;
}
#endif

// 16 bytes of x codes from element e (a multiple of 16) of row xq, as 4 words.
CU_HD void cu_x8_load16(const int8_t *xq, int64_t e, int v[4]) {
    int4 t = CU_LDG((const int4 *)(xq + e));
    v[0] = t.x, v[1] = t.y, v[2] = t.z, v[3] = t.w;
}

// A unit is UNIT elements of a row (not always contiguous); units per row = ne0 / UNIT. load() fetches the
// unit's weight bytes (W: registers), dotw() returns the unit's share of w_row . x given the row's x codes (xq),
// block scales (xd) and 16-sums (xs); dot() is both. The matvec issues the loads of its first units before it
// waits for the kernel that writes x (programmatic dependent launch, cuda_internal.h).

// Q4_0, repacked (cu_q_q4_0): unit = block b: 16 bytes, byte j = element j (low nibble), j + 16 (high).
// The codes' offset of 8 comes off as 8 * (x's sum over the block) = 8 * (xs[2b] + xs[2b + 1]), not per byte.
struct cu_q8_q4_0 {
    static constexpr int UNIT = 32;
    static constexpr int ROWS = 8, ROWS_LONG = 8; // rows per matvec block (see cu_dispatch_q8)
    struct W {
        uint4 q;
        uint16_t d;
    };
    CU_HD static W load(const cu_wview &w, int64_t row, int64_t b) {
        const int64_t blk = row * (w.ne0 / 32) + b;
        return W{CU_LDG((const uint4 *)(w.q + blk * 16)), CU_LDG(w.d + blk)};
    }
    CU_HD static float dotw(const W &u, int64_t b, const int8_t *xq, const float *xd, const float *xs) {
        int x[8];
        cu_x8_load16(xq, b * 32, x);
        cu_x8_load16(xq, b * 32 + 16, x + 4);
        const int qw[4] = {(int)u.q.x, (int)u.q.y, (int)u.q.z, (int)u.q.w};
        int s = 0;
#pragma unroll
        for (int i = 0; i < 4; i++) {
            s = cu_dp4a(qw[i] & 0x0F0F0F0F, x[i], s);
            s = cu_dp4a((qw[i] >> 4) & 0x0F0F0F0F, x[4 + i], s);
        }
        return cu_h2f(u.d) * (xd[b] * (float)s - 8.0f * (xs[2 * b] + xs[2 * b + 1]));
    }
    CU_HD static float dot(const cu_wview &w, int64_t row, int64_t b, const int8_t *xq, const float *xd,
                           const float *xs) {
        return dotw(load(w, row, b), b, xq, xd, xs);
    }
};

// Q8_0, repacked (cu_q_q8_0): unit = block b, 32 codes in two 16-byte loads.
struct cu_q8_q8_0 {
    static constexpr int UNIT = 32;
    static constexpr int ROWS = 4, ROWS_LONG = 4;
    struct W {
        int4 q0, q1;
        uint16_t d;
    };
    CU_HD static W load(const cu_wview &w, int64_t row, int64_t b) {
        const int64_t blk = row * (w.ne0 / 32) + b;
        const int4 *p = (const int4 *)(w.q + blk * 32);
        return W{CU_LDG(p), CU_LDG(p + 1), CU_LDG(w.d + blk)};
    }
    CU_HD static float dotw(const W &u, int64_t b, const int8_t *xq, const float *xd, const float *xs) {
        int x[8];
        cu_x8_load16(xq, b * 32, x);
        cu_x8_load16(xq, b * 32 + 16, x + 4);
        const int q[8] = {u.q0.x, u.q0.y, u.q0.z, u.q0.w, u.q1.x, u.q1.y, u.q1.z, u.q1.w};
        int s = 0;
#pragma unroll
        for (int i = 0; i < 8; i++) s = cu_dp4a(q[i], x[i], s);
        return cu_h2f(u.d) * xd[b] * (float)s;
    }
    CU_HD static float dot(const cu_wview &w, int64_t row, int64_t b, const int8_t *xq, const float *xd,
                           const float *xs) {
        return dotw(load(w, row, b), b, xq, xd, xs);
    }
};

// Q4_K (HIGH false) / Q5_K (HIGH true), repacked (cu_q_k45), unit p (0..7) of a block as there: 16 bytes of
// qs = elements 64g + l0 + i (low nibbles, sub-block 2g) and 64g + 32 + l0 + i (high, sub-block 2g + 1),
// g = p/2, l0 = 16 (p%2). x = d*sc*q - dmin*m per sub-block: the min term is dmin*m*(x's 16-sum).
template <bool HIGH> struct cu_q8_k45 {
    static constexpr int UNIT = 32;
    static constexpr int ROWS = 8, ROWS_LONG = 8;
    static constexpr int P = cu_q_k45<HIGH>::P, QS_OFF = cu_q_k45<HIGH>::QS_OFF;
    struct W {
        uint4 q, h;  // h: Q5_K's high bits
        uint4 hd;    // the block's scale part: d, dmin, the four 24-bit fields
    };
    CU_HD static W load(const cu_wview &w, int64_t row, int64_t u) {
        const int64_t k = row * (w.ne0 / 256) + (u >> 3);
        const uint8_t *blk = w.q + k * P;
        const int p = (int)(u & 7), g = p >> 1, l0 = (p & 1) * 16;
        W r;
        r.q = CU_LDG((const uint4 *)(blk + QS_OFF + 32 * g + l0));
        r.h = HIGH ? CU_LDG((const uint4 *)(blk + l0)) : uint4{0, 0, 0, 0};
        r.hd = CU_LDG((const uint4 *)w.d + k);
        return r;
    }
    CU_HD static float dotw(const W &w, int64_t u, const int8_t *xq, const float *xd, const float *xs) {
        const int p = (int)(u & 7), g = p >> 1, l0 = (p & 1) * 16;
        const int64_t e0 = (u >> 3) * 256 + 64 * g + l0, e1 = e0 + 32; // first element of each run
        const int qw[4] = {(int)w.q.x, (int)w.q.y, (int)w.q.z, (int)w.q.w};
        const int hw[4] = {(int)w.h.x, (int)w.h.y, (int)w.h.z, (int)w.h.w};
        int x0[4], x1[4];
        cu_x8_load16(xq, e0, x0);
        cu_x8_load16(xq, e1, x1);
        int s0 = 0, s1 = 0;
#pragma unroll
        for (int i = 0; i < 4; i++) {
            int lo = qw[i] & 0x0F0F0F0F, hi = (qw[i] >> 4) & 0x0F0F0F0F;
            if (HIGH) {
                lo |= ((hw[i] >> (2 * g)) & 0x01010101) << 4;
                hi |= ((hw[i] >> (2 * g + 1)) & 0x01010101) << 4;
            }
            s0 = cu_dp4a(lo, x0[i], s0);
            s1 = cu_dp4a(hi, x1[i], s1);
        }
        const cu_k4r_group s = cu_k4r_group_of(w.hd, g);
        return s.d * (xd[e0 / 32] * (float)(s.sc0 * s0) + xd[e1 / 32] * (float)(s.sc1 * s1)) -
               s.dmin * ((float)s.m0 * xs[e0 / 16] + (float)s.m1 * xs[e1 / 16]);
    }
    CU_HD static float dot(const cu_wview &w, int64_t row, int64_t u, const int8_t *xq, const float *xd,
                           const float *xs) {
        return dotw(load(w, row, u), u, xq, xd, xs);
    }
};

// Q6_K, repacked (cu_q_q6_K: 208-byte payloads ql 128, qh 64, scales 16; d apart). Run j (0..3) of half h and
// l0 = 0 or 16: elements 128h + 32j + l0 + i (i < 16), low 4 bits from ql[64h + l0 + i] (j 0, 2: low/high nibble)
// or ql[64h + 32 + l0 + i] (j 1, 3), bits 2j, 2j+1 of qh[32h + l0 + i]; x = d * scale[8h + 2j + l0/16] * (q - 32).
// Unit p (0..7) of a block: h = p/4, l0 = 16 ((p/2)%2), runs jb = p%2 and jb + 2, which share their 16 ql bytes
// (low and high nibbles) and 16 qh bytes: 32 elements, so that a 4096-column row has as many units as a block has
// threads (64-element units left half of them idle there). One scale per run; a run is 16 elements, one 16-sum of
// x (xs), which takes the offset 32 off.
struct cu_q8_q6_K {
    static constexpr int UNIT = 32;
    static constexpr int ROWS = 4, ROWS_LONG = 2; // rows over 4096 columns: 2 (down 22.2 -> 21.0 us; o: 4)
    struct W {
        uint4 q, h, sc;
        uint16_t d;
    };
    CU_HD static W load(const cu_wview &w, int64_t row, int64_t u) {
        const int64_t k = row * (w.ne0 / 256) + (u >> 3);
        const uint8_t *blk = w.q + k * 208;
        const int p = (int)(u & 7), h = p >> 2, l0 = ((p >> 1) & 1) * 16, jb = p & 1;
        return W{CU_LDG((const uint4 *)(blk + 64 * h + 32 * jb + l0)),
                 CU_LDG((const uint4 *)(blk + 128 + 32 * h + l0)), CU_LDG((const uint4 *)(blk + 192)), CU_LDG(w.d + k)};
    }
    CU_HD static float dotw(const W &w, int64_t u, const int8_t *xq, const float *xd, const float *xs) {
        const int p = (int)(u & 7), h = p >> 2, l0 = ((p >> 1) & 1) * 16, jb = p & 1;
        const int qw[4] = {(int)w.q.x, (int)w.q.y, (int)w.q.z, (int)w.q.w};
        const int hw[4] = {(int)w.h.x, (int)w.h.y, (int)w.h.z, (int)w.h.w};
        const int64_t e0 = (u >> 3) * 256 + 128 * h + 32 * jb + l0, e1 = e0 + 64; // runs jb and jb + 2
        int x0[4], x1[4];
        cu_x8_load16(xq, e0, x0);
        cu_x8_load16(xq, e1, x1);
        int s0 = 0, s1 = 0;
#pragma unroll
        for (int i = 0; i < 4; i++) {
            // codes 0..63 (the offset 32 comes off below): run jb takes qh bits 2jb, 2jb+1; run jb + 2 bits
            // 2jb + 4, 2jb + 5, each moved to bits 4-5 of its byte
            const int c0 = (qw[i] & 0x0F0F0F0F) | ((hw[i] << (4 - 2 * jb)) & 0x30303030);
            const int c1 = ((qw[i] >> 4) & 0x0F0F0F0F) | ((hw[i] >> (2 * jb)) & 0x30303030);
            s0 = cu_dp4a(c0, x0[i], s0);
            s1 = cu_dp4a(c1, x1[i], s1);
        }
        const uint32_t scw[4] = {w.sc.x, w.sc.y, w.sc.z, w.sc.w}; // 16 int8 scales
        const int i0 = 8 * h + 2 * jb + (l0 >> 4), i1 = i0 + 4;     // runs jb and jb + 2
        const float sc0 = (float)(int8_t)(scw[i0 >> 2] >> (8 * (i0 & 3)));
        const float sc1 = (float)(int8_t)(scw[i1 >> 2] >> (8 * (i1 & 3)));
        const float a0 = xd[e0 / 32] * (float)s0 - 32.0f * xs[e0 / 16];
        const float a1 = xd[e1 / 32] * (float)s1 - 32.0f * xs[e1 / 16];
        return cu_h2f(w.d) * (sc0 * a0 + sc1 * a1);
    }
    CU_HD static float dot(const cu_wview &w, int64_t row, int64_t u, const int8_t *xq, const float *xd,
                           const float *xs) {
        return dotw(load(w, row, u), u, xq, xd, xs);
    }
};

// Calls f.template run<Q>() with the int8-activation unit for w's type; false when it has none. Q::ROWS: the rows
// a single matvec's block takes (o, down; ROWS_LONG for rows over 4096 columns), so that a thread has about eight
// 16-byte weight loads in flight per pass: 8 for the types of one load per unit (Q4_0, Q4_K, Q5_K), 4 for Q8_0
// (two) and Q6_K (three), 2 for Q6_K's long rows. Measured per shape with LLMLAB_CUDA_MVQ_ROWS (bench/NOTES.md,
// session 13): Q4_0/Q4_K down 16.2/17.2 us at 4 rows, 13.9/14.7 at 8; Q6_K down 22.2 at 4, 21.0 at 2, 24.8 at 8,
// Q6_K o 7.3 at 4, 8.0 at 2. q/k/v and gate/up take 4 rows whatever the type (matvec_q8.cu).
template <class F> static bool cu_dispatch_q8(const cu_wview &w, F &&f) {
    switch (w.type) {
    case LL_TYPE_Q8_0: f.template run<cu_q8_q8_0>(); return true;
    case LL_TYPE_Q4_0: f.template run<cu_q8_q4_0>(); return true;
    case LL_TYPE_Q4_K: f.template run<cu_q8_k45<false>>(); return true;
    case LL_TYPE_Q5_K: f.template run<cu_q8_k45<true>>(); return true;
    case LL_TYPE_Q6_K: f.template run<cu_q8_q6_K>(); return true;
    default: return false;
    }
}

// Host reference of the device x quantization (k_quant_x8): amax over the block, d = amax/127, codes =
// round-to-nearest-even(x * (127/amax)) in f32, so host and device agree bit for bit.
CU_HD void cu_x8_quantize_block(const float *x, int8_t *q, float *d, float *s16) {
    float amax = 0.0f;
    for (int i = 0; i < 32; i++) amax = fmaxf(amax, fabsf(x[i]));
    const float id = amax > 0.0f ? 127.0f / amax : 0.0f;
    int sum[2] = {0, 0};
    for (int i = 0; i < 32; i++) {
        float v = x[i] * id;
        int c = (int)rintf(v); // |v| <= 127
        q[i] = (int8_t)c;
        sum[i >> 4] += c;
    }
    *d = amax / 127.0f;
    s16[0] = *d * (float)sum[0];
    s16[1] = *d * (float)sum[1];
}

#endif
