// test_qmatmul.c — ll_matmul with quantized weights (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K) against the
// scalar vec_dot on the same quantized activations, against the float64 dequantized reference, and end to end.
#include "testutil.h"

#include "golden.h"

#include "backend/cpu/matmul_q.h"
#include "core/half.h"
#include "llmlab.h"

static const uint32_t k_qtypes[] = {LL_TYPE_Q8_0, LL_TYPE_Q4_0, LL_TYPE_Q4_1, LL_TYPE_Q5_0,
                                    LL_TYPE_Q5_1, LL_TYPE_Q4_K, LL_TYPE_Q5_K, LL_TYPE_Q6_K};

// Weights: n_out rows quantized by the reference quantizer from values whose scale varies per row (and a
// zero block now and then). Activations: uniform with a few outliers and an all-zero 32-block.
static uint8_t *make_w(uint32_t ty, int n_in, int n_out, uint64_t seed, size_t *row_bytes) {
    uint64_t rb;
    assert_true(ll_type_row_size(ty, (uint64_t)n_in, &rb));
    uint8_t *W = malloc(rb * (size_t)n_out);
    float *row = malloc((size_t)n_in * sizeof(float));
    assert_true(W && row);
    for (int o = 0; o < n_out; o++) {
        float sc = 0.05f + (float)(o % 7);
        for (int i = 0; i < n_in; i++) row[i] = (i / 32) % 11 == 5 && o % 3 == 1 ? 0.0f : sc * tu_rng_uniform(&seed);
        ll_type_get(ty)->from_float_ref(row, W + (size_t)o * rb, n_in);
    }
    free(row);
    *row_bytes = (size_t)rb;
    return W;
}

static void make_x(float *x, int n_in, int nt, uint64_t seed) {
    for (int t = 0; t < nt; t++)
        for (int i = 0; i < n_in; i++) {
            float v = tu_rng_uniform(&seed) * (1.0f + (float)t);
            if (i % 61 == 7) v *= 9.0f;
            if (i / 32 == 1 && t % 2 == 1) v = 0.0f;
            x[(size_t)t * n_in + i] = v;
        }
}

// Reference 1: the same activation quantization, then the traits' scalar vec_dot (the spec).
static void ref_vecdot(uint32_t ty, const uint8_t *W, size_t rb, const float *x, float *y, int n_in, int n_out,
                       int nt) {
    void *row = ll_aligned_alloc(ll_mmq_act_row(ty, n_in), 64, NULL);
    for (int t = 0; t < nt; t++) {
        ll_mmq_act_quantize(ty, x + (size_t)t * n_in, row, n_in);
        for (int o = 0; o < n_out; o++) ll_type_get(ty)->vec_dot(n_in, &y[(size_t)t * n_out + o], W + (size_t)o * rb, row);
    }
    ll_aligned_free(row);
}

// Per output: sum |w x| (scale of f32 rounding) and the bound of the activation quantization error:
// per element |x - d q| <= amax_b/254 (rounding) + |x| 2^-10 (d stored as fp16); Q8_1's s = fp16(d sum q)
// adds |min_w| * 32 amax_b 2^-10 per block (the min is at most max |w| of the block).
static void bounds(uint32_t ty, const uint8_t *W, size_t rb, const float *x, int n_in, int n_out, int nt,
                   double *abssum, double *qbound) {
    float *w = malloc((size_t)n_in * sizeof(float));
    int blk = ll_mmq_act_type(ty) == LL_TYPE_Q8_K ? 256 : 32;
    for (int o = 0; o < n_out; o++) {
        ll_type_get(ty)->to_float(W + (size_t)o * rb, w, n_in);
        for (int t = 0; t < nt; t++) {
            const float *xt = x + (size_t)t * n_in;
            double s = 0, q = 0;
            for (int b = 0; b < n_in / blk; b++) {
                double amax = 0, wmax = 0;
                for (int i = b * blk; i < (b + 1) * blk; i++) {
                    amax = fmax(amax, fabs(xt[i]));
                    wmax = fmax(wmax, fabs(w[i]));
                }
                for (int i = b * blk; i < (b + 1) * blk; i++) {
                    s += fabs((double)w[i] * xt[i]);
                    q += fabs(w[i]) * (amax / 254 + fabs(xt[i]) / 1024);
                }
                if (ll_mmq_act_type(ty) == LL_TYPE_Q8_1) q += wmax * 32 * amax / 1024;
            }
            abssum[(size_t)t * n_out + o] = s;
            qbound[(size_t)t * n_out + o] = q * 1.01 + 1e-6 * s;
        }
    }
    free(w);
}

static void run_fast(uint32_t ty, int nth, const void *W, const float *x, float *y, int n_in, int n_out, int nt) {
    size_t ws = ll_matmul_wsize(ty, n_in, nt, nth);
    uint8_t *wsp = ll_aligned_alloc(ws + 64, 64, NULL);
    assert_non_null(wsp);
    memset(wsp + ws, 0xA5, 64);
    tu_poison(y, (size_t)n_out * nt);
    ll_pool *pool = ll_pool_init(nth, NULL);
    assert_non_null(pool);
    ll_matmul(pool, ty, W, x, y, n_in, n_out, nt, wsp);
    ll_pool_free(pool);
    for (int i = 0; i < 64; i++) assert_int_equal(wsp[ws + i], 0xA5);
    ll_aligned_free(wsp);
}

// Tolerance vs the scalar vec_dot on identical quantized data: the integer block sums are exact, so only the
// f32 order of the per-block scale products differs: 2e-6 of sum |w x| (a dropped block is ~1/nb of it).
#define SAME_Q_TOL 2e-6

static void check_shape(uint32_t ty, int n_in, int n_out, int nt, uint64_t seed, double *worst_q) {
    size_t rb, ny = (size_t)n_out * nt;
    uint8_t *W = make_w(ty, n_in, n_out, seed, &rb);
    float *x = ll_aligned_alloc((size_t)n_in * nt * sizeof(float), 64, NULL);
    float *y = malloc(ny * sizeof(float)), *r1 = malloc(ny * sizeof(float)), *r2 = malloc(ny * sizeof(float));
    double *abssum = malloc(ny * sizeof(double)), *qb = malloc(ny * sizeof(double));
    assert_true(x && y && r1 && r2 && abssum && qb);
    make_x(x, n_in, nt, seed ^ 0x77);
    ref_vecdot(ty, W, rb, x, r1, n_in, n_out, nt);
    ll_matmul_ref(ty, W, x, r2, n_in, n_out, nt);
    bounds(ty, W, rb, x, n_in, n_out, nt, abssum, qb);
    // Where this build repacks the type (ll_matmul_repack_type: Q4_0 in 8-row groups on AVX-512 VNNI), the
    // repacked copy goes through the same checks.
    const uint32_t rt = ll_matmul_repack_type(ty, n_in, n_out);
    uint8_t *Wr = rt ? malloc(ll_matmul_repack_bytes(rt, n_in, n_out)) : NULL;
    if (rt) ll_matmul_repack(rt, W, Wr, n_in, n_out);
    for (int run = 0; run < (rt ? 6 : 3); run++) {
        const int nth = 1 + run % 3;
        const uint32_t ft = run < 3 ? ty : rt;
        run_fast(ft, nth, run < 3 ? (const void *)W : Wr, x, y, n_in, n_out, nt);
        int bad = 0;
        for (size_t i = 0; i < ny; i++) {
            double e1 = fabs((double)y[i] - r1[i]), e2 = fabs((double)y[i] - r2[i]);
            if (qb[i] > 0 && e2 / qb[i] > *worst_q) *worst_q = e2 / qb[i];
            if (!isfinite(y[i]) || !(e1 <= SAME_Q_TOL * abssum[i] + 1e-30) || !(e2 <= qb[i] + 1e-30)) {
                if (bad++ < 3)
                    printf("# %s%s [%s] n_in=%d n_out=%d tokens=%d threads=%d: out %zu got %.9g vecdot %.9g ref %.9g "
                           "(tol %.3g, %.3g)\n", ll_type_name(ty), ft != ty ? " (repacked)" : "", ll_matmul_isa(ft),
                           n_in, n_out, nt, nth, i, y[i], r1[i], r2[i], SAME_Q_TOL * abssum[i], qb[i]);
            }
        }
        assert_int_equal(bad, 0);
    }
    free(W);
    free(Wr);
    ll_aligned_free(x);
    free(y);
    free(r1);
    free(r2);
    free(abssum);
    free(qb);
}

static void sweep(uint32_t ty) {
    static const int outs[] = {1, 5, 16, 37, 70};
    static const int toks[] = {1, 2, 3, 4, 5, 7, 8, 13, 33};
    bool k = ll_mmq_act_type(ty) == LL_TYPE_Q8_K;
    const int ins_leg[] = {32, 96, 288, 1024}, ins_k[] = {256, 512, 768, 1024};
    const int *ins = k ? ins_k : ins_leg;
    uint64_t seed = 1234 + ty;
    double worst_q = 0;
    int n = 0;
    for (int a = 0; a < 4; a++)
        for (int b = 0; b < 5; b++)
            for (int c = 0; c < 9; c++) {
                if ((a + b + c) % 3 != 0 && !(b == 4 && c == 8)) continue; // a spread of the grid, plus the big corner
                if (ins[a] == 1024 && toks[c] > 8) continue;
                check_shape(ty, ins[a], outs[b], toks[c], seed++, &worst_q);
                n++;
            }
    printf("# note: %s [%s]: %d shapes x 3 thread counts; worst |y - float64 ref| / act-quant bound = %.3f\n",
           ll_type_name(ty), ll_matmul_isa(ty), n, worst_q);
}

static void test_q8_0(void **state) { (void)state; sweep(LL_TYPE_Q8_0); }
static void test_q4_0(void **state) { (void)state; sweep(LL_TYPE_Q4_0); }
static void test_q4_1(void **state) { (void)state; sweep(LL_TYPE_Q4_1); }
static void test_q5_0(void **state) { (void)state; sweep(LL_TYPE_Q5_0); }
static void test_q5_1(void **state) { (void)state; sweep(LL_TYPE_Q5_1); }
static void test_q4_K(void **state) { (void)state; sweep(LL_TYPE_Q4_K); }
static void test_q5_K(void **state) { (void)state; sweep(LL_TYPE_Q5_K); }
static void test_q6_K(void **state) { (void)state; sweep(LL_TYPE_Q6_K); }

static void test_supports(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof k_qtypes / sizeof k_qtypes[0]; i++) {
        assert_true(ll_matmul_supports(k_qtypes[i]));
        printf("# note: %s -> %s\n", ll_type_name(k_qtypes[i]), ll_matmul_isa(k_qtypes[i]));
    }
    assert_false(ll_matmul_supports(LL_TYPE_Q2_K));
    assert_false(ll_matmul_supports(LL_TYPE_Q8_K));
}

// The activation quantizer against the reference Q8_0/Q8_1 quantizer: codes may differ only where x * id lies
// on a rounding tie (x86 rounds half to even, the reference half away from zero), by one.
static void test_act_quant(void **state) {
    (void)state;
    float x[256];
    uint64_t seed = 99;
    for (int i = 0; i < 256; i++) x[i] = tu_rng_uniform(&seed) * 3.0f;
    ll_block_q8_0 ref[8];
    ll_quant_from_float_ref_q8_0(x, ref, 256);
    void *row = ll_aligned_alloc(ll_mmq_act_row(LL_TYPE_Q4_0, 256), 64, NULL);
    ll_mmq_act_quantize(LL_TYPE_Q4_0, x, row, 256);
    const ll_block_q8_0 *q = row;
    ll_mmq_row v = ll_mmq_act_view(LL_TYPE_Q4_0, row, 256);
    for (int b = 0; b < 8; b++) {
        assert_int_equal(q[b].d, ref[b].d);
        assert_true(v.d[b] == ll_fp16_to_fp32(ref[b].d));
        int sum = 0;
        for (int i = 0; i < 32; i++) {
            assert_true(abs(q[b].qs[i] - ref[b].qs[i]) <= 1);
            sum += q[b].qs[i];
        }
        assert_int_equal(((const int32_t *)v.aux)[b], sum);
    }
    ll_aligned_free(row);
}

// The SIMD activation quantizer of this build (the ops' xa_conv) against ll_mmq_act_quantize: every part of the
// row (blocks, d, aux, the prefill sums c and s) byte for byte, on data with zeros, ties, outliers, inf and NaN.
static void test_act_simd(void **state) {
    (void)state;
    const int n_in = 1024;
    float x[1024];
    uint64_t seed = 7;
    for (size_t k = 0; k < sizeof k_qtypes / sizeof k_qtypes[0]; k++) {
        uint32_t ty = k_qtypes[k];
        const ll_mm_ops *o = ll_mmq_find_x86(ty);
        if (!o) o = ll_mmq_find_neon(ty);
        if (!o || !o->xa_conv) continue;
        for (int pass = 0; pass < 4; pass++) {
            for (int i = 0; i < n_in; i++) x[i] = tu_rng_uniform(&seed) * (pass + 1.0f);
            for (int i = 256; i < 288; i++) x[i] = 0.0f;             // an all-zero 32-block
            for (int i = 512; i < 768; i++) x[i] = (float)(i % 9) - 4; // small integers: exact ties after scaling
            x[700] = -9.0f;                                           // the largest |x| of its block, negative ...
            x[701] = 9.0f;                                            // ... then the same |x| positive
            if (pass == 2) x[40] = NAN;
            if (pass == 3) x[900] = INFINITY;
            size_t rb = ll_mmq_act_row(ty, n_in);
            uint8_t *a = ll_aligned_alloc(rb, 64, NULL), *b = ll_aligned_alloc(rb, 64, NULL);
            assert_true(a && b);
            memset(a, 0x5A, rb);
            memset(b, 0x5A, rb);
            ll_mmq_act_quantize(ty, x, a, n_in);
            o->xa_conv(x, b, n_in);
            ll_mmq_row va = ll_mmq_act_view(ty, a, n_in), vb = ll_mmq_act_view(ty, b, n_in);
            int nb = n_in / ll_type_get(ll_mmq_act_type(ty))->blck;
            size_t blocks = (size_t)nb * ll_type_get(ll_mmq_act_type(ty))->size;
            assert_memory_equal(va.blocks, vb.blocks, blocks);
            assert_memory_equal(va.d, vb.d, (size_t)nb * 4);
            assert_memory_equal(va.aux, vb.aux, (size_t)nb * 4);
            assert_memory_equal(va.c, vb.c, (size_t)(n_in / ll_mmq_sub(ty)) * 4);
            assert_memory_equal(va.s, vb.s, (size_t)(n_in / 32) * 4);
            ll_aligned_free(a);
            ll_aligned_free(b);
        }
        printf("# note: %s activations [%s]: the kernels' converter is identical to ll_mmq_act_quantize\n", ll_type_name(ty),
               o->isa);
    }
}

// Prefill sizes: more tokens than one token tile of the panel kernels many times over, rows not a multiple of
// the panel, 1..3 threads.
static void test_prefill_shapes(void **state) {
    (void)state;
    static const uint32_t tys[] = {LL_TYPE_Q8_0, LL_TYPE_Q4_0, LL_TYPE_Q5_0, LL_TYPE_Q4_K, LL_TYPE_Q5_K, LL_TYPE_Q6_K};
    double worst_q = 0;
    for (size_t k = 0; k < sizeof tys / sizeof tys[0]; k++) {
        bool kq = ll_mmq_act_type(tys[k]) == LL_TYPE_Q8_K;
        check_shape(tys[k], kq ? 1536 : 576, 53, 130, 4242 + k, &worst_q);
        check_shape(tys[k], kq ? 2048 : 2080, 19, 67, 777 + k, &worst_q);
    }
    printf("# note: prefill shapes: worst |y - float64 ref| / act-quant bound = %.3f\n", worst_q);
}

// Decode (one token) at model row lengths: the one-row streaming kernels (Q4_0/Q8_0 from n_in % 64 == 0, Q4_K/
// Q6_K) and the tiles (odd block counts, Q5_0), row counts that split unevenly over 1..3 threads.
static void test_decode_shapes(void **state) {
    (void)state;
    static const uint32_t tys[] = {LL_TYPE_Q8_0, LL_TYPE_Q4_0, LL_TYPE_Q5_0, LL_TYPE_Q4_K, LL_TYPE_Q6_K};
    static const int ins_leg[] = {64, 576, 1568, 8192}, ins_k[] = {256, 1536, 2048, 8192};
    double worst_q = 0;
    for (size_t k = 0; k < sizeof tys / sizeof tys[0]; k++) {
        const int *ins = ll_mmq_act_type(tys[k]) == LL_TYPE_Q8_K ? ins_k : ins_leg;
        for (int a = 0; a < 4; a++) check_shape(tys[k], ins[a], a == 3 ? 45 : 131, 1, 99 + 7 * k + (uint64_t)a, &worst_q);
    }
    printf("# note: decode shapes: worst |y - float64 ref| / act-quant bound = %.3f\n", worst_q);
}

// Q4_0, Q5_0, Q8_0 and Q4_K repacked in 16-row groups (LL_MM_*_X16) where this build has them: row counts
// of one to many groups (uneven over 1..3 threads), odd block counts, decode, several sequences' decode (2..8 tokens:
// the groups of 4 of x16_rows_many) and prefill token counts.
// check_shape runs the repacked copy beside the plain one.
static void x16_sweep(uint32_t ty, const int ins[4]) {
    if (!ll_matmul_repack_type(ty, ins[0], 16)) {
        printf("# skip: no repacked %s layout in this build (%s)\n", ll_type_name(ty), ll_matmul_isa(ty));
        skip();
    }
    static const int outs[] = {16, 48, 80, 208}, toks[] = {1, 2, 3, 4, 5, 8, 17, 33}; // 2..8: several sequences' decode
    double worst_q = 0;
    int n = 0;
    for (int a = 0; a < 4; a++)
        for (int b = 0; b < 4; b++)
            for (int c = 0; c < 8; c++) {
                if (ins[a] == 8192 && toks[c] > 3) continue;
                if ((a + b + c) % 2) continue;
                check_shape(ty, ins[a], outs[b], toks[c], 555 + (uint64_t)n, &worst_q);
                n++;
            }
    printf("# note: %s repacked: %d shapes x 3 thread counts; worst |y - float64 ref| / act-quant bound = %.3f\n",
           ll_type_name(ty), n, worst_q);
}
static void test_q4_0_x16(void **state) {
    (void)state;
    static const int ins[4] = {32, 96, 2080, 8192};
    x16_sweep(LL_TYPE_Q4_0, ins);
}
static void test_q5_0_x16(void **state) {
    (void)state;
    static const int ins[4] = {32, 96, 576, 8192};
    x16_sweep(LL_TYPE_Q5_0, ins);
}
static void test_q8_0_x16(void **state) {
    (void)state;
    static const int ins[4] = {32, 96, 576, 8192};
    x16_sweep(LL_TYPE_Q8_0, ins);
}
static void test_q4_K_x16(void **state) {
    (void)state;
    static const int ins[4] = {256, 768, 1536, 8192};
    x16_sweep(LL_TYPE_Q4_K, ins);
}

// ll_matmul_multi (q/k/v and gate/up on one x) gives what separate ll_matmul calls give, bit for bit: the same
// kernels on the same converted activations, rows handed out from one pool run. Decode and a few tokens (the
// dot form), 1..3 threads, matrices of different row counts; F16 too (plain type, no conversion).
static void test_matmul_multi(void **state) {
    (void)state;
    static const uint32_t tys[] = {LL_TYPE_Q8_0, LL_TYPE_Q4_0, LL_TYPE_Q4_K, LL_TYPE_Q6_K, LL_TYPE_F16};
    static const int toks[] = {1, 3, 9};
    const int n_in = 512, n_out[3] = {131, 32, 45};
    for (size_t k = 0; k < sizeof tys / sizeof tys[0]; k++)
        for (size_t t = 0; t < sizeof toks / sizeof toks[0]; t++)
            for (int nth = 1; nth <= 3; nth++) {
                int nt = toks[t];
                size_t rb;
                uint8_t *W[3];
                float *ys[3], *yr[3];
                for (int m = 0; m < 3; m++) {
                    W[m] = make_w(tys[k], n_in, n_out[m], 500 + 10 * k + (uint64_t)m, &rb);
                    ys[m] = malloc((size_t)n_out[m] * nt * sizeof(float));
                    yr[m] = malloc((size_t)n_out[m] * nt * sizeof(float));
                    assert_true(W[m] && ys[m] && yr[m]);
                    tu_poison(ys[m], (size_t)n_out[m] * nt);
                }
                float *x = ll_aligned_alloc((size_t)n_in * nt * sizeof(float), 64, NULL);
                assert_non_null(x);
                make_x(x, n_in, nt, 77 + t);
                size_t ws = ll_matmul_wsize(tys[k], n_in, nt, nth);
                uint8_t *wsp = ll_aligned_alloc(ws + 64, 64, NULL);
                ll_pool *pool = ll_pool_init(nth, NULL);
                assert_true(wsp && pool);
                for (int m = 0; m < 3; m++) ll_matmul(pool, tys[k], W[m], x, yr[m], n_in, n_out[m], nt, wsp);
                const void *Wc[3] = {W[0], W[1], W[2]};
                ll_matmul_multi(pool, tys[k], 3, Wc, x, ys, n_in, n_out, nt, wsp);
                for (int m = 0; m < 3; m++) {
                    if (memcmp(ys[m], yr[m], (size_t)n_out[m] * nt * sizeof(float)) != 0)
                        printf("# %s tokens=%d threads=%d matrix %d differs\n", ll_type_name(tys[k]), nt, nth, m);
                    assert_memory_equal(ys[m], yr[m], (size_t)n_out[m] * nt * sizeof(float));
                    free(W[m]);
                    free(ys[m]);
                    free(yr[m]);
                }
                ll_pool_free(pool);
                ll_aligned_free(wsp);
                ll_aligned_free(x);
            }
}

// Whole model: stories260K quantized by llama-quantize, all logits of the golden prompt (README section 7).
// Quantized goldens: README section 7's tolerances for quantized weights.
static const golden_tol k_quant = {5e-2, 1e-1, 0.5};

static void test_golden_q8_0(void **state) {
    TU_NEED_SHARED(model, "golden/stories260K/stories260K-Q8_0.gguf");
    check_golden(model, NULL, tu_shared("golden/stories260K/stories260K.ids.txt"),
                 tu_shared("golden/stories260K/stories260K-Q8_0.logits.f32"), NULL, k_quant);
}

static void test_golden_q4_0(void **state) {
    TU_NEED_SHARED(model, "golden/stories260K/stories260K-Q4_0.gguf");
    check_golden(model, NULL, tu_shared("golden/stories260K/stories260K.ids.txt"),
                 tu_shared("golden/stories260K/stories260K-Q4_0.logits.f32"), NULL, k_quant);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_supports),    cmocka_unit_test(test_act_quant),  cmocka_unit_test(test_q8_0),
        cmocka_unit_test(test_q4_0),        cmocka_unit_test(test_q4_1),       cmocka_unit_test(test_q5_0),
        cmocka_unit_test(test_q5_1),        cmocka_unit_test(test_q4_K),       cmocka_unit_test(test_q5_K),
        cmocka_unit_test(test_q6_K),        cmocka_unit_test(test_act_simd),   cmocka_unit_test(test_prefill_shapes),
        cmocka_unit_test(test_decode_shapes), cmocka_unit_test(test_q4_0_x16), cmocka_unit_test(test_q5_0_x16),
        cmocka_unit_test(test_q8_0_x16), cmocka_unit_test(test_q4_K_x16),
        cmocka_unit_test(test_matmul_multi),
        cmocka_unit_test(test_golden_q8_0), cmocka_unit_test(test_golden_q4_0),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
