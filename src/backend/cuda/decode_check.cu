// decode_check.cu — the CUDA backend's weight decoders (cuda_quant.h) and upload repacking run as host code
// against the C dequantizers and a float64 dot, so a machine without a GPU still tests the quant layouts.
#include "backend/cuda/cuda_q8.h"

#include <math.h>
#include <stdlib.h>

// Decode every unit of one row into out (ne0 floats) and sum its dot with x the way k_matvec does.
struct row_decode {
    const cu_wview *w;
    int64_t row;
    float *out;
    const float *x;
    double dot;
    template <class Q> void run() {
        dot = 0;
        for (int64_t u = 0; u < w->ne0 / (Q::R * Q::L); u++) {
            int64_t st[Q::R];
            float v[Q::R][Q::L], a[Q::R], b[Q::R];
            Q::starts(u, st);
            Q::load(*w, row, u, v, a, b);
            for (int r = 0; r < Q::R; r++) {
                float d = 0, xs = 0;
                for (int i = 0; i < Q::L; i++) {
                    out[st[r] + i] = fmaf(a[r], v[r][i], b[r]);
                    d = fmaf(v[r][i], x[st[r] + i], d);
                    xs += x[st[r] + i];
                }
                dot += a[r] * d + (Q::HAS_MIN ? b[r] * xs : 0.0f);
            }
        }
    }
};

// Sum of the int8-activation units (cuda_q8.h) of one row, as k_mmvq adds them.
struct row_dot_q8 {
    const cu_wview *w;
    int64_t row;
    const int8_t *xq;
    const float *xd, *xs;
    double dot;
    template <class Q> void run() {
        dot = 0;
        for (int64_t u = 0; u < w->ne0 / Q::UNIT; u++) dot += Q::dot(*w, row, u, xq, xd, xs);
    }
};

static float rnd(uint64_t *s) {
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((*s >> 40) * (1.0 / 16777216.0)) * 2 - 1;
}

// One type at one row length: rows quantized by the reference quantizer, laid out as upload.cu does.
static bool check_one(uint32_t t, int cols, uint64_t *seed, char *why, size_t cap) {
    const int rows = 3;
    const ll_type_traits *tr = ll_type_get(t);
    uint64_t rb;
    if (!tr || !ll_type_row_size(t, (uint64_t)cols, &rb)) return snprintf(why, cap, "type %u: no row size", t), false;
    size_t raw_n = (size_t)rb * rows;
    uint8_t *raw = (uint8_t *)malloc(raw_n), *dev = (uint8_t *)malloc(2 * raw_n + 1024);
    float *f = (float *)malloc(sizeof(float) * cols * (rows + 4)), *x = f + cols * rows, *ref = x + cols, *got = ref + cols;
    float *xdq = got + cols, *xd = (float *)malloc(sizeof(float) * (cols / 16 * 3 + 2)), *xs = xd + cols / 32 + 1;
    int8_t *xq = (int8_t *)malloc((size_t)cols + 16);
    bool ok = raw && dev && f && xd && xq;
    const bool plain = t == LL_TYPE_F32 || t == LL_TYPE_F16 || t == LL_TYPE_BF16;
    for (int i = 0; ok && i < cols * (rows + 1); i++) f[i] = rnd(seed);
    for (int r = 0; ok && r < rows; r++) {
        uint8_t *wr = raw + rb * r;
        const float *fr = f + (size_t)cols * r;
        if (t == LL_TYPE_F32) memcpy(wr, fr, (size_t)cols * 4);
        else if (t == LL_TYPE_F16) for (int i = 0; i < cols; i++) ((uint16_t *)wr)[i] = ll_fp32_to_fp16(fr[i]);
        else if (t == LL_TYPE_BF16) for (int i = 0; i < cols; i++) ((uint16_t *)wr)[i] = ll_fp32_to_bf16(fr[i]);
        else tr->from_float_ref(fr, wr, cols);
    }
    uint8_t *base = (uint8_t *)(((uintptr_t)dev + 255) & ~(uintptr_t)255);
    cu_wview v = {base, NULL, cols, rows, (size_t)rb, t};
    if (ok && cu_repacked(t)) {
        size_t nb = raw_n / (cu_repack_payload(t) + cu_repack_scale(t));
        size_t qbytes = (nb * cu_repack_payload(t) + 255) & ~(size_t)255;
        cu_repack_blocks(t, raw, nb, base, base + qbytes);
        v.d = (const uint16_t *)(base + qbytes);
    } else if (ok) {
        memcpy(base, raw, raw_n);
    }
    // x as the int8 matvec sees it (host emulation of k_quant_x8), and that x dequantized
    for (int b = 0; ok && !plain && b < cols / 32; b++) {
        cu_x8_quantize_block(x + 32 * b, xq + 32 * b, &xd[b], &xs[2 * b]);
        for (int i = 0; i < 32; i++) xdq[32 * b + i] = xd[b] * (float)xq[32 * b + i];
    }
    for (int r = 0; ok && r < rows; r++) {
        tr->to_float(raw + rb * r, ref, cols);
        for (int i = 0; i < cols; i++) got[i] = NAN;
        row_decode dd = {&v, r, got, x, 0};
        if (!cu_dispatch(v, dd)) {
            snprintf(why, cap, "%s: no decoder", tr->name);
            ok = false;
            break;
        }
        double rd = 0, mag = 0, md = 0;
        for (int i = 0; i < cols; i++) {
            double e = fabs((double)got[i] - ref[i]);
            md = e > md || e != e ? e : md;
            rd += (double)ref[i] * x[i];
            mag += fabs((double)ref[i] * x[i]);
        }
        if (!(md <= 1e-6) || !(fabs(dd.dot - rd) <= 1e-5 * mag)) { // values are O(1): 1e-6 is a few ulps
            snprintf(why, cap, "%s, %d columns, row %d: decoded values differ by up to %.3g, dot %.7g vs %.7g",
                     tr->name, cols, r, md, dd.dot, rd);
            ok = false;
        }
        if (!ok || plain) continue;
        row_dot_q8 q8 = {&v, r, xq, xd, xs, 0};
        double r8 = 0, mag8 = 0;
        for (int i = 0; i < cols; i++) {
            r8 += (double)ref[i] * xdq[i];
            mag8 += fabs((double)ref[i] * xdq[i]);
        }
        if (!cu_dispatch_q8(v, q8) || !(fabs(q8.dot - r8) <= 1e-5 * mag8)) { // f32 scale products: ~1e-7
            snprintf(why, cap, "%s, %d columns, row %d: int8 dot %.7g vs %.7g (float64 of the dequantized row and "
                     "the dequantized int8 x)", tr->name, cols, r, q8.dot, r8);
            ok = false;
        }
    }
    free(raw), free(dev), free(f), free(xd), free(xq);
    return ok;
}

extern "C" int ll_backend_cuda_check_decoders(char *why, size_t cap) {
    static const uint32_t types[] = {LL_TYPE_F32, LL_TYPE_F16, LL_TYPE_BF16, LL_TYPE_Q8_0,
                                     LL_TYPE_Q4_0, LL_TYPE_Q4_K, LL_TYPE_Q5_K, LL_TYPE_Q6_K};
    static const int cols[] = {512, 1024, 168, 172}; // 172: rows not 16-byte aligned (scalar float path)
    uint64_t seed = 7;
    int n = 0;
    for (uint32_t t : types)
        for (int c : cols) {
            bool plain = t == LL_TYPE_F32 || t == LL_TYPE_F16 || t == LL_TYPE_BF16;
            if (!plain && c % 256) continue; // quantized: 512 and 1024 (every type's block divides them)
            if (!check_one(t, c, &seed, why, cap)) return -1;
            n++;
        }
    return n;
}

extern "C" void ll_backend_cuda_x8_roundtrip(const float *x, float *xdq, int n) {
    LL_ASSERT(n % 32 == 0);
    for (int b = 0; b < n / 32; b++) {
        int8_t q[32];
        float d, s16[2];
        cu_x8_quantize_block(x + 32 * b, q, &d, s16);
        for (int i = 0; i < 32; i++) xdq[32 * b + i] = d * (float)q[i];
    }
}
