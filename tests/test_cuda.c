// test_cuda.c — the CUDA backend against independent references: every op against the CPU backend on random
// inputs (outputs poisoned with NaN first), matmuls against dequantize-to-f32 + a float64 host dot, and whole
// models (cuda vs cpu logits, golden logits, greedy tokens). Skips with a message where no GPU answers.
#include "cuda_util.h"

#include "model/model.h"
#include "types/quant.h"

// ---- the weight decoders as host code (runs without a GPU) ---------------------------------------------------
static void test_decoders_host(void **state) {
#if defined(LL_HAVE_CUDA) && LL_HAVE_CUDA
    char why[512] = "";
    int n = ll_backend_cuda_check_decoders(why, sizeof why);
    if (n < 0) fail_msg("%s", why);
    printf("# note: %d (type, row length) cases of the device decoders match the C dequantizers\n", n);
    assert_true(n >= 20);
#else
    TU_SKIP("built without CUDA: no device decoders to check");
#endif
}

// ---- element-wise and per-row ops --------------------------------------------------------------------------
// RMSNorm at row lengths that take each path of k_rmsnorm: x held in registers for one round (1000) or two
// (8192), rows not of float4s (1001), rows past what registers hold (16640: read twice), several rows each.
static void test_rmsnorm_sizes(void **state) {
    NEED_GPU();
    uint64_t s = 13;
    const int ns[] = {1000, 1001, 8192, 16640}, nt = 3;
    for (int k = 0; k < 4; k++) {
        const int n = ns[k];
        float *g = rand_floats(n, &s, 1.0f);
        ll_weight wg = vec_weight(g, n, "gain");
        const ll_weight *ws[] = {&wg};
        duo d = duo_init(ws, 1, 8, 16);
        float *x = rand_floats((size_t)n * nt, &s, 3.0f), *ref = malloc((size_t)n * nt * sizeof *ref);
        d.cpu->ops->rmsnorm(d.cpu, ref, x, &wg, n, nt, 1e-5f);
        float *dx = to_dev(d.gpu, x, (size_t)n * nt), *dy = poisoned_dev(d.gpu, (size_t)n * nt);
        d.gpu->ops->rmsnorm(d.gpu, dy, dx, &wg, n, nt, 1e-5f);
        float *got = from_dev(d.gpu, dy, (size_t)n * nt);
        char what[64];
        snprintf(what, sizeof what, "rmsnorm, rows of %d", n);
        check_close(what, got, ref, (size_t)n * nt, TOL_F32);
        d.gpu->ops->free(d.gpu, dx), d.gpu->ops->free(d.gpu, dy);
        duo_free(&d);
        free(g), free(x), free(ref), free(got);
    }
}

static void test_rows_ops(void **state) {
    NEED_GPU();
    uint64_t s = 11;
    const int n = 1000, nt = 5;
    float *g = rand_floats(n, &s, 1.0f), *bias = rand_floats(n, &s, 0.5f);
    ll_weight wg = vec_weight(g, n, "gain"), wb = vec_weight(bias, n, "bias");
    const ll_weight *ws[] = {&wg, &wb};
    duo d = duo_init(ws, 2, 8, 16);
    float *x = rand_floats((size_t)n * nt, &s, 3.0f), *u = rand_floats((size_t)n * nt, &s, 2.0f);
    // CPU results on host copies.
    float *ref = malloc((size_t)n * nt * sizeof *ref);
    d.cpu->ops->rmsnorm(d.cpu, ref, x, &wg, n, nt, 1e-5f);
    float *dx = to_dev(d.gpu, x, (size_t)n * nt), *dy = poisoned_dev(d.gpu, (size_t)n * nt);
    d.gpu->ops->rmsnorm(d.gpu, dy, dx, &wg, n, nt, 1e-5f);
    float *got = from_dev(d.gpu, dy, (size_t)n * nt);
    check_close("rmsnorm", got, ref, (size_t)n * nt, TOL_F32);
    free(got);
    d.gpu->ops->rmsnorm(d.gpu, dx, dx, &wg, n, nt, 1e-5f); // in place
    got = from_dev(d.gpu, dx, (size_t)n * nt);
    check_close("rmsnorm in place", got, ref, (size_t)n * nt, TOL_F32);
    free(got);
    // add_bias, swiglu, add on fresh copies
    memcpy(ref, x, (size_t)n * nt * sizeof *ref);
    d.cpu->ops->add_bias(d.cpu, ref, &wb, n, nt);
    d.gpu->ops->upload(d.gpu, dx, x, (size_t)n * nt * sizeof *x);
    d.gpu->ops->add_bias(d.gpu, dx, &wb, n, nt);
    got = from_dev(d.gpu, dx, (size_t)n * nt);
    check_close("add_bias", got, ref, (size_t)n * nt, TOL_F32);
    free(got);
    float *du = to_dev(d.gpu, u, (size_t)n * nt);
    d.cpu->ops->swiglu(d.cpu, ref, u, n, nt);
    d.gpu->ops->swiglu(d.gpu, dx, du, n, nt);
    got = from_dev(d.gpu, dx, (size_t)n * nt);
    check_close("swiglu", got, ref, (size_t)n * nt, TOL_F32);
    free(got);
    d.cpu->ops->add(d.cpu, ref, u, (size_t)n * nt);
    d.gpu->ops->add(d.gpu, dx, du, (size_t)n * nt);
    got = from_dev(d.gpu, dx, (size_t)n * nt);
    check_close("add", got, ref, (size_t)n * nt, TOL_F32);
    free(got);
    d.gpu->ops->free(d.gpu, dx);
    d.gpu->ops->free(d.gpu, dy);
    d.gpu->ops->free(d.gpu, du);
    duo_free(&d);
    free(g), free(bias), free(x), free(u), free(ref);
}

// ---- topk (sampling's candidates on the device) ------------------------------------------------------------
// Random rows of several lengths (one block, several passes) with many ties (values on a coarse grid), -0 and
// +0, NaN, +-inf and rows with fewer candidates than k; vals and ids compared exactly, the count too.
static void test_topk(void **state) {
    NEED_GPU();
    ll_error err = {0};
    ll_backend *g = NULL;
    if (ll_backend_init(&g, "cuda", 1, &err) != LL_OK) fail_msg("cuda init: %s", err.message);
    const int ns[] = {1, 7, 2048, 2049, 32000, 128256, 262144}, ks[] = {1, 2, 41, 100, 512};
    uint64_t s = 5;
    float vals[LL_BACKEND_TOPK_MAX], rv[LL_BACKEND_TOPK_MAX];
    int32_t ids[LL_BACKEND_TOPK_MAX], ri[LL_BACKEND_TOPK_MAX];
    for (size_t a = 0; a < sizeof ns / sizeof ns[0]; a++) {
        const int n = ns[a];
        float *x = malloc((size_t)n * sizeof *x);
        for (int variant = 0; variant < 3; variant++) {
            for (int i = 0; i < n; i++) {
                float u = tu_rng_uniform(&s);
                x[i] = variant == 0 ? u * 20.0f : roundf(u * 8.0f) * 0.5f; // 1: ties everywhere
                if (variant == 2) { // specials: a few of each, and most values NaN / -inf
                    uint64_t r = tu_rng_u64(&s) % 16;
                    x[i] = r < 6 ? NAN : r < 11 ? -INFINITY : r == 11 ? INFINITY : r == 12 ? -0.0f : r == 13 ? 0.0f : x[i];
                }
            }
            if (variant == 2 && n > 3) x[n - 1] = INFINITY, x[0] = -0.0f;
            float *dx = to_dev(g, x, (size_t)n);
            for (size_t b = 0; b < sizeof ks / sizeof ks[0]; b++) {
                const int k = ks[b];
                const int want = tu_best_of(x, n, k, rv, ri);
                tu_poison(vals, LL_BACKEND_TOPK_MAX);
                const int got = g->ops->topk(g, dx, n, k, vals, ids);
                if (got != want) fail_msg("topk n %d k %d variant %d: %d candidates, want %d", n, k, variant, got, want);
                for (int i = 0; i < got; i++)
                    if (ids[i] != ri[i] || memcmp(&vals[i], &rv[i], sizeof(float)))
                        fail_msg("topk n %d k %d variant %d, rank %d: (%d, %a), want (%d, %a)", n, k, variant, i, ids[i],
                                 (double)vals[i], ri[i], (double)rv[i]);
            }
            g->ops->free(g, dx);
        }
        free(x);
    }
    ll_backend_free(g);
}

// ---- RoPE: normal, NeoX, partial rotary, frequency factors, contiguous and scattered positions ---------
static void test_rope(void **state) {
    NEED_GPU();
    uint64_t s = 12;
    const int n_head = 4, hd = 64, nt = 6;
    float *ff = rand_floats(hd / 2, &s, 0.4f);
    for (int i = 0; i < hd / 2; i++) ff[i] += 1.5f; // divisors in [1.1, 1.9]
    ll_weight wf = vec_weight(ff, hd / 2, "rope_freqs");
    const ll_weight *ws[] = {&wf};
    duo d = duo_init(ws, 1, 8, 64);
    int32_t run[6] = {7, 8, 9, 10, 11, 12}, scat[6] = {0, 31, 5, 5, 60, 2};
    size_t n = (size_t)nt * n_head * hd;
    for (int c = 0; c < 8; c++) {
        ll_rope_params p = {n_head, hd, (c & 1) ? hd / 2 : hd, 10000.0f, (c & 2) != 0, (c & 4) ? ff : NULL};
        const int32_t *pos = (c & 1) ? scat : run;
        float *x = rand_floats(n, &s, 2.0f);
        float *dx = to_dev(d.gpu, x, n);
        d.cpu->ops->rope(d.cpu, x, pos, nt, &p);
        d.gpu->ops->rope(d.gpu, dx, pos, nt, &p);
        float *got = from_dev(d.gpu, dx, n);
        char what[64];
        snprintf(what, sizeof what, "rope case %d (n_rot %d, neox %d, ff %d)", c, p.n_rot, p.neox,
                 p.freq_factors != NULL);
        check_close(what, got, x, n, TOL_F32);
        free(got), free(x);
        d.gpu->ops->free(d.gpu, dx);
    }
    duo_free(&d);
    free(ff);
}

// ---- rope_kv_store: RoPE of q and k and the cache store in one op, against rope, rope (CPU backend) and the rows
// stored on the host, in caches of two sequences (rows [0, n_ctx) and [n_ctx, 2 n_ctx)), F32, F16 and Q8_0; every
// other row must keep its value. The F16 cache holds the reference rounded to nearest even: the rows of k match to
// the f16 ulp where the device's f32 RoPE and the CPU's differ in the last bit (NMSE tolerance 1e-7), v exactly.
// Q8_0: the blocks of the reference quantizer; a k value on a rounding boundary may take the next code (amax/127
// of its block, ~5e-8 of the cache's NMSE each): tolerance 1e-6; v exactly.
static void rope_kv_case(duo *d, const float *ff, int c, uint32_t type, uint64_t *s) {
    const int nh = 8, nkv = 2, hd = 64, kvd = nkv * hd, n_ctx = 40, n_rows = 2 * n_ctx;
    // cases: 0 one token at 0 of sequence 0, 1 one at 17 of sequence 1 (partial rotation), 2 five of sequence 1 at
    // 17.. (NeoX), 3 five at 17.. with frequency divisors, 4 five tokens of both sequences at scattered positions
    const int nt = c < 2 ? 1 : 5, n_past = c == 0 ? 0 : 17;
    ll_rope_params p = {nh, hd, (c & 1) ? hd / 2 : hd, 10000.0f, c == 2, c == 3 ? ff : NULL};
    int32_t pos[8], row0[8];
    const int32_t mpos[5] = {3, 30, 4, 0, 39}, mrow[5] = {0, n_ctx, n_ctx, 0, 0};
    ll_batch_pos bp = ll_batch_pos_single(c == 0 ? 0 : n_ctx, n_past, nt, pos, row0);
    if (c == 4) {
        memcpy(pos, mpos, sizeof mpos), memcpy(row0, mrow, sizeof mrow);
        bp = (ll_batch_pos){nt, pos, row0, false, 0};
    }
    size_t nq = (size_t)nt * nh * hd, nk = (size_t)nt * kvd, nc = (size_t)n_rows * kvd;
    float *q = rand_floats(nq, s, 2.0f), *k = rand_floats(nk, s, 2.0f), *v = rand_floats(nk, s, 2.0f);
    float *kc = rand_floats(nc, s, 1.0f), *vc = rand_floats(nc, s, 1.0f);
    round_kv(kc, nc, type), round_kv(vc, nc, type);
    float *dq = to_dev(d->gpu, q, nq), *dk = to_dev(d->gpu, k, nk), *dv = to_dev(d->gpu, v, nk);
    void *dkc = kv_to_dev(d->gpu, kc, nc, type), *dvc = kv_to_dev(d->gpu, vc, nc, type);
    d->cpu->ops->rope(d->cpu, q, pos, nt, &p);
    ll_rope_params pk = p;
    pk.n_head = nkv;
    d->cpu->ops->rope(d->cpu, k, pos, nt, &pk);
    for (int t = 0; t < nt; t++) {
        memcpy(kc + (size_t)(row0[t] + pos[t]) * kvd, k + (size_t)t * kvd, (size_t)kvd * sizeof *k);
        memcpy(vc + (size_t)(row0[t] + pos[t]) * kvd, v + (size_t)t * kvd, (size_t)kvd * sizeof *v);
    }
    round_kv(kc, nc, type), round_kv(vc, nc, type);
    const ll_kv_cache kv = {dkc, dvc, type, n_ctx, n_rows};
    d->gpu->ops->rope_kv_store(d->gpu, dq, dk, dv, &kv, &bp, &p, nkv);
    float *gq = from_dev(d->gpu, dq, nq), *gk = from_dev(d->gpu, dk, nk), *gkc = kv_from_dev(d->gpu, dkc, nc, type),
          *gvc = kv_from_dev(d->gpu, dvc, nc, type);
    char what[96];
    snprintf(what, sizeof what, "rope_kv_store case %d %s (n_rot %d, neox %d, %d tokens): ", c, ll_type_name(type),
             p.n_rot, p.neox, nt);
    char w2[160];
    snprintf(w2, sizeof w2, "%sq", what), check_close(w2, gq, q, nq, TOL_F32);
    snprintf(w2, sizeof w2, "%sk", what), check_close(w2, gk, k, nk, TOL_F32);
    snprintf(w2, sizeof w2, "%sk cache", what);
    check_close(w2, gkc, kc, nc, type == LL_TYPE_Q8_0 ? 1e-6 : type == LL_TYPE_F16 ? 1e-7 : TOL_F32);
    snprintf(w2, sizeof w2, "%sv cache", what), check_close(w2, gvc, vc, nc, 0.0);
    void *bufs[] = {dq, dk, dv, dkc, dvc};
    for (int i = 0; i < 5; i++) d->gpu->ops->free(d->gpu, bufs[i]);
    free(q), free(k), free(v), free(kc), free(vc), free(gq), free(gk), free(gkc), free(gvc);
}

static void test_rope_kv_store(void **state) {
    NEED_GPU();
    uint64_t s = 13;
    const int hd = 64;
    float *ff = rand_floats(hd / 2, &s, 0.4f);
    for (int i = 0; i < hd / 2; i++) ff[i] += 1.5f;
    ll_weight wf = vec_weight(ff, hd / 2, "rope_freqs");
    const ll_weight *ws[] = {&wf};
    duo d = duo_init(ws, 1, 8, 40);
    for (int c = 0; c < 5; c++) {
        rope_kv_case(&d, ff, c, LL_TYPE_F32, &s);
        rope_kv_case(&d, ff, c, LL_TYPE_F16, &s);
        rope_kv_case(&d, ff, c, LL_TYPE_Q8_0, &s);
    }
    duo_free(&d);
    free(ff);
}

// ---- attention: prefill and decode, GQA/MHA, head dims 8..256, several splits ----------------------------
// One sequence at n_past, the second of two in the cache (its rows start at n_ctx; the first's rows and those past
// the causal edge are NaN: never read), against the CPU backend on an F32 cache. F16 and Q8_0: the GPU reads a cache
// of that type whose values the CPU's F32 cache holds exactly (round_kv first), so the same tolerances hold.
static void attn_case_t(int n_head, int n_kv, int hd, int n_past, int nt, uint64_t seed, uint32_t type) {
    uint64_t s = seed;
    const int n_ctx = n_past + nt + 3, kvd = n_kv * hd;
    duo d = duo_init(NULL, 0, nt, n_ctx);
    size_t kvn = (size_t)2 * n_ctx * kvd, qn = (size_t)nt * n_head * hd;
    float *k = rand_floats(kvn, &s, 1.0f), *v = rand_floats(kvn, &s, 1.0f), *q = rand_floats(qn, &s, 1.0f);
    for (size_t i = 0; i < kvn; i++)
        if (i < (size_t)n_ctx * kvd || i >= (size_t)(n_ctx + n_past + nt) * kvd) k[i] = v[i] = NAN;
    round_kv(k, kvn, type), round_kv(v, kvn, type);
    ll_attn_params p = {n_head, n_kv, hd, 1.0f / sqrtf((float)hd)};
    int32_t pos[1024], row0[1024];
    LL_ASSERT(nt <= 1024);
    const ll_batch_pos bp = ll_batch_pos_single(n_ctx, n_past, nt, pos, row0);
    const ll_kv_cache kv_cpu = {k, v, LL_TYPE_F32, n_ctx, 2 * n_ctx};
    float *ref = malloc(qn * sizeof *ref);
    d.cpu->ops->attention(d.cpu, ref, q, &kv_cpu, &bp, &p);
    void *dk = kv_to_dev(d.gpu, k, kvn, type), *dv = kv_to_dev(d.gpu, v, kvn, type);
    float *dq = to_dev(d.gpu, q, qn), *dout = poisoned_dev(d.gpu, qn);
    const ll_kv_cache kv = {dk, dv, type, n_ctx, 2 * n_ctx};
    d.gpu->ops->attention(d.gpu, dout, dq, &kv, &bp, &p);
    float *got = from_dev(d.gpu, dout, qn);
    char what[128];
    snprintf(what, sizeof what, "attention %s heads %d/%d dim %d past %d tokens %d", ll_type_name(type), n_head, n_kv,
             hd, n_past, nt);
    // batches of >= 16 tokens with head dim 64/128 run on the tensor cores with f16 operands (attention_mma.cu):
    // q, k, v and the probabilities rounded to f16 (2^-11 relative each) -> NMSE ~1e-6; the f32 kernels 1e-9
    bool mma = nt >= 16 && (hd == 64 || hd == 128);
    check_close(what, got, ref, qn, mma ? 4e-6 : 1e-9);
    void *bufs[] = {dk, dv, dq, dout};
    for (int i = 0; i < 4; i++) d.gpu->ops->free(d.gpu, bufs[i]);
    duo_free(&d);
    free(k), free(v), free(q), free(ref), free(got);
}

static void attn_case(int n_head, int n_kv, int hd, int n_past, int nt, uint64_t seed) {
    attn_case_t(n_head, n_kv, hd, n_past, nt, seed, LL_TYPE_F32);
    attn_case_t(n_head, n_kv, hd, n_past, nt, seed, LL_TYPE_F16);
    if (hd % 32 == 0) attn_case_t(n_head, n_kv, hd, n_past, nt, seed, LL_TYPE_Q8_0);
}

static void test_attention(void **state) {
    NEED_GPU();
    // the decode kernels: k_attn_split2 (the default) and k_attn_split (LLMLAB_CUDA_NOFUSE=attn2, read at init)
    for (int old = 0; old < 2; old++) {
        if (old) setenv("LLMLAB_CUDA_NOFUSE", "attn2", 1);
        attn_case(32, 8, 128, 4095, 1, 31); // a long context: 33 splits of 124 keys, 4 tiles each
        attn_case(8, 2, 64, 31, 1, 32);     // the last key alone in a second tile
        attn_case(4, 2, 256, 700, 2, 33);   // head dim 256: tiles of 16 keys
        attn_case(8, 8, 80, 95, 3, 34);     // head dim 80 (not a multiple of 32), 3 tokens
        attn_case(6, 3, 12, 64, 1, 35);     // head dim 12
    }
    unsetenv("LLMLAB_CUDA_NOFUSE");
    attn_case(8, 2, 64, 0, 17, 21);    // prefill from empty, GQA 4
    attn_case(4, 4, 128, 300, 1, 22);  // decode, MHA
    attn_case(32, 8, 128, 1500, 1, 23); // decode, Mistral shapes, many splits
    attn_case(32, 8, 128, 20, 1, 29);  // decode, Mistral shapes, a short context: most splits empty
    attn_case(8, 4, 8, 5, 3, 24);      // stories260K-like head dim 8
    attn_case(4, 1, 256, 40, 4, 25);   // MQA, head dim 256, two blocks of pairs
    attn_case(6, 2, 80, 100, 33, 26);  // head dim not a multiple of 32, batch after a prefix
    attn_case(32, 8, 128, 70, 130, 27); // prefill after a prefix, Mistral shapes: tensor cores, 3 query blocks
    attn_case(4, 4, 64, 0, 64, 28);     // one full query block from empty, head dim 64
}

// The batch kernels on more shapes: k_attn_mma2 (the default: 128 (token, head) pairs of a GQA group per block),
// then k_attn_mma (LLMLAB_CUDA_ATTN2=0). cu_attention_mma reads the variable at every call.
static void test_attention2(void **state) {
    NEED_GPU();
    for (int old = 0; old < 2; old++) {
        if (old) setenv("LLMLAB_CUDA_ATTN2", "0", 1);
        attn_case(8, 8, 64, 0, 64, 41);     // MHA, one block of 64 tokens (half the pairs of a block)
        attn_case(8, 2, 64, 37, 100, 42);   // GQA 4, tokens not a multiple of the tile, after a prefix
        attn_case(4, 1, 64, 0, 512, 43);    // GQA 4, 16 blocks per kv head
        attn_case(4, 4, 128, 37, 100, 44);  // MHA, head dim 128, after a prefix
        attn_case(8, 2, 128, 0, 64, 45);    // GQA 4, two blocks
        attn_case(32, 8, 128, 0, 512, 46);  // Mistral shapes, 512 tokens
        attn_case(32, 8, 128, 37, 512, 47); // the same after a prefix
        attn_case(4, 4, 64, 37, 512, 48);   // MHA 512 tokens after a prefix
        attn_case(6, 2, 128, 5, 100, 49);   // GQA 3: a block's pairs straddle tokens
    }
    unsetenv("LLMLAB_CUDA_ATTN2");
}

// ---- weights of every type --------------------------------------------------------------------------------
static const uint32_t k_types[] = {LL_TYPE_F32, LL_TYPE_F16, LL_TYPE_BF16, LL_TYPE_Q8_0,
                                   LL_TYPE_Q4_0, LL_TYPE_Q4_K, LL_TYPE_Q5_K, LL_TYPE_Q6_K};

// Random (rows, cols) matrix in type t; *deq gets what the CPU's to_float makes of it.
static void *make_weight(uint32_t t, int cols, int rows, uint64_t *s, float **deq) {
    const ll_type_traits *tr = ll_type_get(t);
    uint64_t rb;
    assert_true(tr && ll_type_row_size(t, (uint64_t)cols, &rb));
    float *f = rand_floats((size_t)cols * rows, s, 1.0f);
    uint8_t *w = malloc(rb * rows);
    for (int r = 0; r < rows; r++) {
        float *fr = f + (size_t)r * cols;
        uint8_t *wr = w + rb * r;
        if (t == LL_TYPE_F32) memcpy(wr, fr, (size_t)cols * 4);
        else if (t == LL_TYPE_F16) for (int i = 0; i < cols; i++) ((uint16_t *)wr)[i] = ll_fp32_to_fp16(fr[i]);
        else if (t == LL_TYPE_BF16) for (int i = 0; i < cols; i++) ((uint16_t *)wr)[i] = ll_fp32_to_bf16(fr[i]);
        else tr->from_float_ref(fr, wr, cols);
        tr->to_float(wr, fr, cols);
    }
    *deq = f;
    return w;
}

static void test_get_rows(void **state) {
    NEED_GPU();
    uint64_t s = 31;
    const int cols = 512, rows = 10, nt = 4;
    const int32_t ids[4] = {3, 0, 9, 3};
    for (size_t ti = 0; ti < sizeof k_types / sizeof k_types[0]; ti++) {
        float *deq;
        void *w = make_weight(k_types[ti], cols, rows, &s, &deq);
        ll_weight lw = {w, k_types[ti], cols, rows, "embd", false};
        const ll_weight *ws[] = {&lw};
        duo d = duo_init(ws, 1, 8, 8);
        float *ref = malloc((size_t)nt * cols * sizeof *ref);
        d.cpu->ops->get_rows(d.cpu, ref, &lw, ids, nt);
        float *dy = poisoned_dev(d.gpu, (size_t)nt * cols);
        d.gpu->ops->get_rows(d.gpu, dy, &lw, ids, nt);
        float *got = from_dev(d.gpu, dy, (size_t)nt * cols);
        char what[64];
        snprintf(what, sizeof what, "get_rows %s", ll_type_name(k_types[ti]));
        check_close(what, got, ref, (size_t)nt * cols, 1e-12);
        d.gpu->ops->free(d.gpu, dy);
        duo_free(&d);
        free(w), free(deq), free(ref), free(got);
    }
}

// ref (nt, rows) = float64 dots of x rows (nt, cols) with the weight rows deq (rows, cols).
static void dot_ref(const float *xr, int nt, int cols, const float *deq, int rows, float *ref) {
    for (int i = 0; i < nt; i++)
        for (int r = 0; r < rows; r++) {
            double acc = 0;
            for (int k = 0; k < cols; k++) acc += (double)xr[(size_t)i * cols + k] * deq[(size_t)r * cols + k];
            ref[(size_t)i * rows + r] = (float)acc;
        }
}

// y = x W^T against float64 dots of the dequantized weight; float types also against the CPU backend.
static void matmul_case(uint32_t t, int cols, int rows, int nt, uint64_t *s) {
    float *deq;
    void *w = make_weight(t, cols, rows, s, &deq);
    ll_weight lw = {w, t, cols, rows, "w", false};
    const ll_weight *ws[] = {&lw};
    duo d = duo_init(ws, 1, 32, 16);
    float *x = rand_floats((size_t)nt * cols, s, 1.0f), *ref = malloc((size_t)nt * rows * sizeof *ref);
    bool quant = t != LL_TYPE_F32 && t != LL_TYPE_F16 && t != LL_TYPE_BF16;
    bool gemm = quant ? nt >= 17 : nt >= 2; // cuda_internal.h: CU_GEMM_MIN_TOK_QUANT
    float *xr = malloc((size_t)nt * cols * sizeof *xr); // x as the kernel sees it
    memcpy(xr, x, (size_t)nt * cols * sizeof *xr);
#if defined(LL_HAVE_CUDA) && LL_HAVE_CUDA
    if (quant && !gemm) ll_backend_cuda_x8_roundtrip(x, xr, nt * cols);
#endif
    dot_ref(xr, nt, cols, deq, rows, ref);
    float *dx = to_dev(d.gpu, x, (size_t)nt * cols), *dy = poisoned_dev(d.gpu, (size_t)nt * rows);
    d.gpu->ops->matmul(d.gpu, &lw, dx, dy, nt);
    float *got = from_dev(d.gpu, dy, (size_t)nt * rows);
    double tol = !gemm || t == LL_TYPE_F32 ? TOL_F32 : t == LL_TYPE_BF16 ? TOL_GEMM_BF16 : TOL_GEMM_F16;
    char what[96];
    snprintf(what, sizeof what, "matmul %s %dx%d, %d tokens (%s)", ll_type_name(t), rows, cols, nt,
             gemm ? "GEMM" : "matvec");
    check_close(what, got, ref, (size_t)nt * rows, tol);
    // matmul_add on the same output: y += x W^T gives 2 ref
    d.gpu->ops->matmul_add(d.gpu, &lw, dx, dy, nt);
    float *got2 = from_dev(d.gpu, dy, (size_t)nt * rows), *ref2 = malloc((size_t)nt * rows * sizeof *ref2);
    for (size_t i = 0; i < (size_t)nt * rows; i++) ref2[i] = 2.0f * ref[i];
    char what2[128];
    snprintf(what2, sizeof what2, "%s, matmul_add", what);
    check_close(what2, got2, ref2, (size_t)nt * rows, tol);
    free(got2), free(ref2);
    if (!quant && d.cpu->ops->supports(d.cpu, LL_OP_MATMUL, t)) {
        float *cpu = malloc((size_t)nt * rows * sizeof *cpu);
        d.cpu->ops->matmul(d.cpu, &lw, x, cpu, nt);
        check_close(what, got, cpu, (size_t)nt * rows, tol > 1e-6 ? tol : 1e-6); // the CPU may round x to f16
        free(cpu);
    }
    d.gpu->ops->free(d.gpu, dx);
    d.gpu->ops->free(d.gpu, dy);
    duo_free(&d);
    free(w), free(deq), free(x), free(xr), free(ref), free(got);
}

// matmul_swiglu: g = silu(x Wg^T) * (x Wu^T), against float64 dots (x through the int8 round trip where the
// fused int8 matvec runs); the GEMM path's tolerance for batches of 16.
static void swiglu_case(uint32_t t, int cols, int rows, int nt, uint64_t *s) {
    float *dg, *du;
    void *wg = make_weight(t, cols, rows, s, &dg), *wu = make_weight(t, cols, rows, s, &du);
    ll_weight lg = {wg, t, cols, rows, "gate", false}, lu = {wu, t, cols, rows, "up", false};
    const ll_weight *ws[] = {&lg, &lu};
    duo d = duo_init(ws, 2, 32, 16);
    float *x = rand_floats((size_t)nt * cols, s, 1.0f), *xr = malloc((size_t)nt * cols * sizeof *xr);
    float *ref = malloc((size_t)nt * rows * sizeof *ref);
    bool quant = t != LL_TYPE_F32 && t != LL_TYPE_F16 && t != LL_TYPE_BF16;
    bool gemm = quant ? nt >= 17 : nt >= 2;
    memcpy(xr, x, (size_t)nt * cols * sizeof *xr);
#if defined(LL_HAVE_CUDA) && LL_HAVE_CUDA
    if (quant && !gemm) ll_backend_cuda_x8_roundtrip(x, xr, nt * cols);
#endif
    for (int i = 0; i < nt; i++)
        for (int r = 0; r < rows; r++) {
            double a = 0, b = 0;
            for (int k = 0; k < cols; k++) {
                a += (double)xr[(size_t)i * cols + k] * dg[(size_t)r * cols + k];
                b += (double)xr[(size_t)i * cols + k] * du[(size_t)r * cols + k];
            }
            ref[(size_t)i * rows + r] = (float)(a / (1.0 + exp(-a)) * b);
        }
    float *dx = to_dev(d.gpu, x, (size_t)nt * cols), *dy = poisoned_dev(d.gpu, (size_t)nt * rows);
    float *dsc = poisoned_dev(d.gpu, (size_t)nt * rows);
    d.gpu->ops->matmul_swiglu(d.gpu, &lg, &lu, dx, dy, dsc, nt);
    float *got = from_dev(d.gpu, dy, (size_t)nt * rows);
    double tol = !gemm || t == LL_TYPE_F32 ? TOL_F32 : t == LL_TYPE_BF16 ? TOL_GEMM_BF16 : TOL_GEMM_F16;
    char what[96];
    snprintf(what, sizeof what, "matmul_swiglu %s %dx%d, %d tokens", ll_type_name(t), rows, cols, nt);
    check_close(what, got, ref, (size_t)nt * rows, tol * 4); // silu(a) b: two products' errors
    d.gpu->ops->free(d.gpu, dx);
    d.gpu->ops->free(d.gpu, dy);
    d.gpu->ops->free(d.gpu, dsc);
    duo_free(&d);
    free(wg), free(wu), free(dg), free(du), free(x), free(xr), free(ref), free(got);
}

// matmul3 (q, k, v on one x: one launch for quantized decode) against three single matmuls on the GPU. q and k
// are of type, v of vtype (Q6_K beside Q4_K/Q5_K takes the one launch too, as in llama.cpp's Q4_K_M mix).
static void matmul3_case(uint32_t type, uint32_t vtype, int cols, const int rows[3], int nt, uint64_t *s) {
    float *deq[3];
    void *w[3];
    ll_weight lw[3];
    for (int i = 0; i < 3; i++) {
        const uint32_t t = i == 2 ? vtype : type;
        w[i] = make_weight(t, cols, rows[i], s, &deq[i]);
        lw[i] = (ll_weight){w[i], t, cols, rows[i], "w", false};
    }
    const ll_weight *ws[] = {&lw[0], &lw[1], &lw[2]};
    duo d = duo_init(ws, 3, 32, 16);
    float *x = rand_floats((size_t)nt * cols, s, 1.0f), *dx = to_dev(d.gpu, x, (size_t)nt * cols);
    float *y3[3], *y1[3];
    for (int i = 0; i < 3; i++) {
        y3[i] = poisoned_dev(d.gpu, (size_t)nt * rows[i]);
        y1[i] = poisoned_dev(d.gpu, (size_t)nt * rows[i]);
        d.gpu->ops->matmul(d.gpu, &lw[i], dx, y1[i], nt);
    }
    d.gpu->ops->matmul3(d.gpu, ws, dx, y3, nt);
    for (int i = 0; i < 3; i++) {
        float *a = from_dev(d.gpu, y3[i], (size_t)nt * rows[i]), *b = from_dev(d.gpu, y1[i], (size_t)nt * rows[i]);
        char what[96];
        snprintf(what, sizeof what, "matmul3 %s (v %s), matrix %d, %d tokens", ll_type_name(type),
                 ll_type_name(vtype), i, nt);
        check_close(what, a, b, (size_t)nt * rows[i], TOL_F32);
        free(a), free(b);
        d.gpu->ops->free(d.gpu, y3[i]);
        d.gpu->ops->free(d.gpu, y1[i]);
        free(w[i]), free(deq[i]);
    }
    d.gpu->ops->free(d.gpu, dx);
    duo_free(&d);
    free(x);
}

static void test_matmul3(void **state) {
    NEED_GPU();
    uint64_t s = 47;
    const uint32_t types[] = {LL_TYPE_F16, LL_TYPE_Q8_0, LL_TYPE_Q4_0, LL_TYPE_Q4_K, LL_TYPE_Q6_K};
    // 12: two int8 passes (quantized), 20: the GEMM
    const int rows[3] = {64, 16, 16}, toks[] = {1, 3, 12, 20};
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++)
        for (int k = 0; k < 4; k++) matmul3_case(types[ti], types[ti], 512, rows, toks[k], &s);
    for (int k = 0; k < 4; k++) {
        matmul3_case(LL_TYPE_Q4_K, LL_TYPE_Q6_K, 512, rows, toks[k], &s);
        matmul3_case(LL_TYPE_Q5_K, LL_TYPE_Q6_K, 512, rows, toks[k], &s);
        matmul3_case(LL_TYPE_Q4_0, LL_TYPE_Q6_K, 512, rows, toks[k], &s); // no mixed kernel: three launches
    }
}

// qkv_rope_store (decode: the q/k/v matvec rotates and caches its own rows) against matmul3 + rope_kv_store on
// the GPU, both from poisoned outputs and the same random caches (three sequences' rows). NeoX rotation and
// batches past the int8 matvec take the unfused path inside the op: the same comparison holds. multi: the tokens
// are of the three sequences at scattered positions (n_past + 3 t, sequence t % 3), else one run of the second
// sequence at n_past. ctype: the cache's row type.
static void qkv_rope_case_t(uint32_t type, uint32_t vtype, int nh, int nkv, int hd, int n_rot, bool neox, bool with_ff,
                            int nt, int n_past, bool multi, uint32_t ctype, uint64_t *s) {
    const int cols = 256, n_ctx = n_past + 3 * nt + 2, kvd = nkv * hd, rows[3] = {nh * hd, kvd, kvd};
    float *deq[3], *ff = rand_floats((size_t)hd / 2, s, 0.4f);
    for (int i = 0; i < hd / 2; i++) ff[i] += 1.5f;
    void *w[3];
    ll_weight lw[4];
    for (int i = 0; i < 3; i++) {
        const uint32_t t = i == 2 ? vtype : type;
        w[i] = make_weight(t, cols, rows[i], s, &deq[i]);
        lw[i] = (ll_weight){w[i], t, cols, rows[i], i == 0 ? "q" : i == 1 ? "k" : "v", false};
    }
    lw[3] = vec_weight(ff, hd / 2, "rope_freqs");
    const ll_weight *ws[] = {&lw[0], &lw[1], &lw[2], &lw[3]};
    duo d = duo_init(ws, 4, 16, n_ctx);
    ll_rope_params p = {nh, hd, n_rot, 10000.0f, neox, with_ff ? ff : NULL};
    int32_t pos[16], row0[16];
    ll_batch_pos bp = ll_batch_pos_single(n_ctx, n_past, nt, pos, row0);
    if (multi) {
        for (int t = 0; t < nt; t++) pos[t] = n_past + 3 * t, row0[t] = (t % 3) * n_ctx;
        bp.single = false;
    }
    const size_t nc = (size_t)3 * n_ctx * kvd;
    float *x = rand_floats((size_t)nt * cols, s, 1.0f), *kc = rand_floats(nc, s, 1.0f), *vc = rand_floats(nc, s, 1.0f);
    float *dx = to_dev(d.gpu, x, (size_t)nt * cols), *ya[3], *yb[3];
    void *kca = kv_to_dev(d.gpu, kc, nc, ctype), *vca = kv_to_dev(d.gpu, vc, nc, ctype),
         *kcb = kv_to_dev(d.gpu, kc, nc, ctype), *vcb = kv_to_dev(d.gpu, vc, nc, ctype);
    const ll_kv_cache kva = {kca, vca, ctype, n_ctx, 3 * n_ctx}, kvb = {kcb, vcb, ctype, n_ctx, 3 * n_ctx};
    for (int i = 0; i < 3; i++) {
        ya[i] = poisoned_dev(d.gpu, (size_t)nt * rows[i]);
        yb[i] = poisoned_dev(d.gpu, (size_t)nt * rows[i]);
    }
    d.gpu->ops->matmul3(d.gpu, ws, dx, ya, nt);
    d.gpu->ops->rope_kv_store(d.gpu, ya[0], ya[1], ya[2], &kva, &bp, &p, nkv);
    d.gpu->ops->qkv_rope_store(d.gpu, ws, dx, yb, &kvb, &bp, &p, nkv);
    char what[200];
    const char *names[3] = {"q", "k", "v"};
    for (int i = 0; i < 3; i++) {
        float *a = from_dev(d.gpu, ya[i], (size_t)nt * rows[i]), *b = from_dev(d.gpu, yb[i], (size_t)nt * rows[i]);
        snprintf(what, sizeof what,
                 "qkv_rope_store %s (v %s) heads %d/%d dim %d rot %d neox %d ff %d, %d tokens at %d%s, %s cache: %s",
                 ll_type_name(type), ll_type_name(vtype), nh, nkv, hd, n_rot, neox, with_ff, nt, n_past,
                 multi ? " (3 sequences)" : "", ll_type_name(ctype), names[i]);
        check_close(what, b, a, (size_t)nt * rows[i], TOL_F32);
        free(a), free(b);
    }
    float *ka = kv_from_dev(d.gpu, kca, nc, ctype), *kb = kv_from_dev(d.gpu, kcb, nc, ctype),
          *va = kv_from_dev(d.gpu, vca, nc, ctype), *vb = kv_from_dev(d.gpu, vcb, nc, ctype);
    // F16 caches: a value at a rounding boundary may round either way when the two paths' f32 sums differ in the
    // last bit (one f16 ulp, 2^-11 relative): NMSE far below 1e-7
    const double tc = ctype == LL_TYPE_F16 ? 1e-7 : TOL_F32;
    snprintf(what, sizeof what, "qkv_rope_store %s, %d tokens at %d%s: %s k cache", ll_type_name(type), nt, n_past,
             multi ? " (3 sequences)" : "", ll_type_name(ctype));
    check_close(what, kb, ka, nc, tc);
    snprintf(what, sizeof what, "qkv_rope_store %s, %d tokens at %d%s: %s v cache", ll_type_name(type), nt, n_past,
             multi ? " (3 sequences)" : "", ll_type_name(ctype));
    check_close(what, vb, va, nc, tc);
    void *bufs[] = {dx, kca, vca, kcb, vcb, ya[0], ya[1], ya[2], yb[0], yb[1], yb[2]};
    for (int i = 0; i < 11; i++) d.gpu->ops->free(d.gpu, bufs[i]);
    duo_free(&d);
    for (int i = 0; i < 3; i++) free(w[i]), free(deq[i]);
    free(ff), free(x), free(kc), free(vc), free(ka), free(kb), free(va), free(vb);
}

static void qkv_rope_case(uint32_t type, uint32_t vtype, int nh, int nkv, int hd, int n_rot, bool neox, bool with_ff,
                          int nt, int n_past, uint64_t *s) {
    qkv_rope_case_t(type, vtype, nh, nkv, hd, n_rot, neox, with_ff, nt, n_past, false, LL_TYPE_F32, s);
}

static void test_qkv_rope_store(void **state) {
    NEED_GPU();
    uint64_t s = 61;
    // several sequences, F16 caches, two int8 passes (9..16 tokens take the int8 matvec: CU_GEMM_MIN_TOK_QUANT)
    qkv_rope_case_t(LL_TYPE_Q4_0, LL_TYPE_Q4_0, 8, 2, 64, 64, false, false, 5, 2, true, LL_TYPE_F32, &s);
    qkv_rope_case_t(LL_TYPE_Q4_0, LL_TYPE_Q4_0, 8, 2, 64, 64, false, false, 5, 2, true, LL_TYPE_F16, &s);
    qkv_rope_case_t(LL_TYPE_Q4_K, LL_TYPE_Q6_K, 8, 2, 128, 128, false, true, 16, 1, true, LL_TYPE_F16, &s);
    qkv_rope_case_t(LL_TYPE_Q8_0, LL_TYPE_Q8_0, 8, 2, 64, 64, false, false, 12, 7, false, LL_TYPE_F16, &s);
    qkv_rope_case_t(LL_TYPE_F16, LL_TYPE_F16, 8, 2, 64, 64, false, true, 1, 9, false, LL_TYPE_F16, &s);
    qkv_rope_case_t(LL_TYPE_Q4_0, LL_TYPE_Q4_0, 8, 2, 64, 64, true, false, 4, 5, true, LL_TYPE_F16, &s); // NeoX
    qkv_rope_case_t(LL_TYPE_Q4_K, LL_TYPE_Q4_K, 8, 2, 64, 64, false, false, 5, 3, true, LL_TYPE_Q8_0, &s); // unfused
    qkv_rope_case_t(LL_TYPE_Q8_0, LL_TYPE_Q8_0, 8, 2, 64, 64, false, false, 1, 3, false, LL_TYPE_Q8_0, &s);
    qkv_rope_case(LL_TYPE_Q4_0, LL_TYPE_Q4_0, 8, 2, 64, 64, false, false, 1, 5, &s);    // decode, fused
    qkv_rope_case(LL_TYPE_Q4_K, LL_TYPE_Q4_K, 8, 2, 128, 128, false, true, 3, 17, &s);  // 3 tokens, frequency divisors
    qkv_rope_case(LL_TYPE_Q8_0, LL_TYPE_Q8_0, 4, 4, 64, 32, false, false, 2, 0, &s);    // partial rotation, MHA
    qkv_rope_case(LL_TYPE_Q6_K, LL_TYPE_Q6_K, 8, 4, 8, 8, false, false, 1, 30, &s);     // head dim 8 (stories260K-like)
    qkv_rope_case(LL_TYPE_F16, LL_TYPE_F16, 8, 2, 64, 64, false, true, 1, 9, &s);      // the float matvec, fused
    qkv_rope_case(LL_TYPE_F16, LL_TYPE_F16, 8, 2, 64, 48, false, false, 1, 3, &s);     // float, partial rotation
    qkv_rope_case(LL_TYPE_Q4_0, LL_TYPE_Q4_0, 8, 2, 64, 64, true, false, 1, 5, &s);     // NeoX: not fused
    qkv_rope_case(LL_TYPE_Q4_K, LL_TYPE_Q4_K, 8, 2, 64, 64, false, false, 12, 4, &s);   // 12 tokens: two int8 passes, fused
    qkv_rope_case(LL_TYPE_F16, LL_TYPE_F16, 8, 2, 64, 64, false, false, 3, 4, &s);     // float batch: not fused
    qkv_rope_case(LL_TYPE_Q4_K, LL_TYPE_Q6_K, 8, 2, 128, 128, false, true, 1, 7, &s); // mixed types, fused
    qkv_rope_case(LL_TYPE_Q5_K, LL_TYPE_Q6_K, 8, 2, 64, 64, false, false, 2, 3, &s);  // mixed, 2 tokens
    qkv_rope_case(LL_TYPE_Q4_0, LL_TYPE_Q4_0, 8, 2, 6, 6, false, false, 1, 2, &s);     // head dim 6: not fused
}

// matmul_add_rmsnorm: x += in W^T, y = rmsnorm(x) * g, then what reads y: (0) a download (the pending norm runs
// as its own kernel), (1) a matmul, (2) matmul_swiglu, (3) matmul3 (each takes the pending norm: 1/rms applied to
// its sums), each followed by a download of y. x against float64 dots, y against a host norm of the downloaded x, the
// reader's output against float64 dots of the int8 round trip of x * g, times 1/rms, as the kernels compute.
// cols: the residual matrix's row length (in's).
static void add_norm_case(uint32_t t, int dim, int cols, int nt, int reader, uint64_t *s) {
    const int rows = 64;
    float *dw, *dc, *du, *gf = rand_floats((size_t)dim, s, 0.5f);
    for (int i = 0; i < dim; i++) gf[i] += 1.0f;
    void *w = make_weight(t, cols, dim, s, &dw), *wc = make_weight(t, dim, rows, s, &dc),
         *wu = make_weight(t, dim, rows, s, &du);
    ll_weight lw = {w, t, cols, dim, "o", false}, lc = {wc, t, dim, rows, "gate", false},
              lu = {wu, t, dim, rows, "up", false}, lg = vec_weight(gf, dim, "norm");
    const ll_weight *ws[] = {&lw, &lc, &lu, &lg};
    duo d = duo_init(ws, 4, 32, 16);
    const float eps = 1e-5f;
    const size_t nx = (size_t)nt * dim, nz = (size_t)nt * rows;
    float *x0 = rand_floats(nx, s, 2.0f), *in = rand_floats((size_t)nt * cols, s, 1.0f);
    float *dx = to_dev(d.gpu, x0, nx), *din = to_dev(d.gpu, in, (size_t)nt * cols), *dy = poisoned_dev(d.gpu, nx);
    float *dz = poisoned_dev(d.gpu, nz), *dz2 = poisoned_dev(d.gpu, nz), *dz3 = poisoned_dev(d.gpu, nz);
    d.gpu->ops->matmul_add_rmsnorm(d.gpu, &lw, din, dx, &lg, dy, nt, eps);
    if (reader == 1) d.gpu->ops->matmul(d.gpu, &lc, dy, dz, nt);
    if (reader == 2) d.gpu->ops->matmul_swiglu(d.gpu, &lc, &lu, dy, dz, dz2, nt);
    if (reader == 3) {
        const ll_weight *w3[3] = {&lc, &lu, &lc};
        float *y3[3] = {dz, dz2, dz3};
        d.gpu->ops->matmul3(d.gpu, w3, dy, y3, nt);
    }
    float *x = from_dev(d.gpu, dx, nx), *y = from_dev(d.gpu, dy, nx);
    char what[128];
    snprintf(what, sizeof what, "matmul_add_rmsnorm %s dim %d, %d tokens, reader %d", ll_type_name(t), dim, nt, reader);
    // x = x0 + in W^T (in through the int8 round trip)
    // (int8 types below CU_GEMM_MIN_TOK_QUANT = 17 tokens; the float matvec and the f16 GEMM take in as it is)
    const bool quant = t != LL_TYPE_F16 && t != LL_TYPE_BF16 && t != LL_TYPE_F32, q8 = quant && nt <= 16;
    const double rtol = !quant && nt >= 2 ? TOL_GEMM_F16 : TOL_F32; // float batches: the f16 GEMM (F16 weights)
    float *inr = malloc((size_t)nt * cols * sizeof *inr), *xref = malloc(nx * sizeof *xref);
    memcpy(inr, in, (size_t)nt * cols * sizeof *inr);
#if defined(LL_HAVE_CUDA) && LL_HAVE_CUDA
    if (q8) ll_backend_cuda_x8_roundtrip(in, inr, nt * cols);
#endif
    dot_ref(inr, nt, cols, dw, dim, xref);
    for (size_t i = 0; i < nx; i++) xref[i] += x0[i];
    char w2[160];
    snprintf(w2, sizeof w2, "%s: x", what);
    check_close(w2, x, xref, nx, !quant ? rtol : q8 ? TOL_F32 : TOL_GEMM_F16);
    // y = x / rms(x) * g of the x the GPU has
    float *yref = malloc(nx * sizeof *yref), *xg = malloc(nx * sizeof *xg), *sc = malloc((size_t)nt * sizeof *sc);
    for (int i = 0; i < nt; i++) {
        double ss = 0;
        for (int k = 0; k < dim; k++) ss += (double)x[(size_t)i * dim + k] * x[(size_t)i * dim + k];
        sc[i] = (float)(1.0 / sqrt(ss / dim + eps));
        for (int k = 0; k < dim; k++) {
            yref[(size_t)i * dim + k] = x[(size_t)i * dim + k] * sc[i] * gf[k];
            xg[(size_t)i * dim + k] = x[(size_t)i * dim + k] * gf[k];
        }
    }
    snprintf(w2, sizeof w2, "%s: y", what), check_close(w2, y, yref, nx, TOL_F32);
    if (reader > 0) {
        // the reader: dots with the round trip of x * g, times 1/rms (a download-first norm would quantize y
        // instead: within the int8 rounding of it, far outside TOL_F32); float weights: with x * g itself
        float *xr = malloc(nx * sizeof *xr), *za = malloc(nz * sizeof *za), *zb = malloc(nz * sizeof *zb);
        memcpy(xr, xg, nx * sizeof *xr);
#if defined(LL_HAVE_CUDA) && LL_HAVE_CUDA
        if (quant) ll_backend_cuda_x8_roundtrip(xg, xr, (int)nx);
#endif
        dot_ref(xr, nt, dim, dc, rows, za);
        dot_ref(xr, nt, dim, du, rows, zb);
        for (int i = 0; i < nt; i++)
            for (int r = 0; r < rows; r++) {
                const size_t e = (size_t)i * rows + r;
                za[e] *= sc[i], zb[e] *= sc[i];
            }
        float *z = from_dev(d.gpu, dz, nz);
        if (reader == 2) {
            for (size_t e = 0; e < nz; e++) za[e] = (float)(za[e] / (1.0 + exp(-(double)za[e])) * zb[e]);
            snprintf(w2, sizeof w2, "%s: swiglu", what), check_close(w2, z, za, nz, rtol * 4);
        } else {
            snprintf(w2, sizeof w2, "%s: reader", what), check_close(w2, z, za, nz, rtol);
        }
        if (reader == 3) {
            float *z2 = from_dev(d.gpu, dz2, nz), *z3 = from_dev(d.gpu, dz3, nz);
            snprintf(w2, sizeof w2, "%s: matmul3 second", what), check_close(w2, z2, zb, nz, rtol);
            snprintf(w2, sizeof w2, "%s: matmul3 third", what), check_close(w2, z3, za, nz, rtol);
            free(z2), free(z3);
        }
        free(z), free(xr), free(za), free(zb);
    }
    float *bufs[] = {dx, din, dy, dz, dz2, dz3};
    for (int i = 0; i < 6; i++) d.gpu->ops->free(d.gpu, bufs[i]);
    duo_free(&d);
    free(w), free(wc), free(wu), free(dw), free(dc), free(du), free(gf), free(x0), free(in), free(x), free(y);
    free(inr), free(xref), free(yref), free(xg), free(sc);
}

static void test_add_norm(void **state) {
    NEED_GPU();
    uint64_t s = 67;
    const uint32_t types[] = {LL_TYPE_Q8_0, LL_TYPE_Q4_0, LL_TYPE_Q4_K, LL_TYPE_Q5_K, LL_TYPE_Q6_K};
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++)
        for (int reader = 0; reader < 4; reader++) {
            add_norm_case(types[ti], 512, 256, 1, reader, &s);
            add_norm_case(types[ti], 4096, 256, 3, reader, &s);
        }
    // rows of 144 units: every block shape takes several passes over them, the last one partial (down's shape)
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) add_norm_case(types[ti], 1024, 4608, 2, 1, &s);
    add_norm_case(LL_TYPE_Q4_0, 4096, 256, 12, 0, &s); // a batch past CU_X8_ROWS: matmul_add (two int8 passes), rmsnorm
    add_norm_case(LL_TYPE_Q4_0, 4096, 256, 20, 0, &s); // past CU_GEMM_MIN_TOK_QUANT: the GEMM, then rmsnorm
    // float weights: matmul_add and rmsnorm, then each reader (the float matvec; a batch of 3: the f16 GEMM)
    const uint32_t ftypes[] = {LL_TYPE_F16, LL_TYPE_BF16, LL_TYPE_F32};
    for (size_t ti = 0; ti < sizeof ftypes / sizeof ftypes[0]; ti++)
        for (int reader = 0; reader < 4; reader++) {
            add_norm_case(ftypes[ti], 512, 256, 1, reader, &s);
            add_norm_case(ftypes[ti], 4096, 1024, 1, reader, &s);
        }
    add_norm_case(LL_TYPE_F16, 512, 256, 3, 2, &s);
}

// The int8 matvec on decode shapes beside test_matmul's: thousands of rows (many blocks, odd counts: the last
// block partial), rows of 14336 (several units per thread), batches of 2, 3 and 8 tokens, q/k/v with uneven
// matrices, against float64 dots (x through the int8 round trip) and three single matmuls.
static void test_mvq_shapes(void **state) {
    NEED_GPU();
    const uint32_t types[] = {LL_TYPE_Q8_0, LL_TYPE_Q4_0, LL_TYPE_Q4_K, LL_TYPE_Q5_K, LL_TYPE_Q6_K};
    const int rows3[3] = {4099, 515, 515};
    uint64_t s = 53;
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
        matmul_case(types[ti], 512, 4099, 1, &s);
        matmul_case(types[ti], 14336, 67, 2, &s);
        matmul_case(types[ti], 4096, 300, 8, &s);
        swiglu_case(types[ti], 256, 2051, 1, &s);
        swiglu_case(types[ti], 4096, 600, 3, &s);
        swiglu_case(types[ti], 4096, 2048, 2, &s); // rows % 32 == 0: the kernel that quantizes its output too
        swiglu_case(types[ti], 256, 64, 1, &s);
        matmul3_case(types[ti], types[ti], 256, rows3, 1, &s);
    }
    matmul3_case(LL_TYPE_Q4_K, LL_TYPE_Q6_K, 256, rows3, 1, &s);
}

static void test_matmul_swiglu(void **state) {
    NEED_GPU();
    uint64_t s = 43;
    const int toks[] = {1, 3, 16, 17}; // quantized: 16 tokens in two int8 passes, 17 the GEMM
    for (size_t ti = 0; ti < sizeof k_types / sizeof k_types[0]; ti++)
        for (int k = 0; k < 4; k++) swiglu_case(k_types[ti], 1024, 67, toks[k], &s);
}

static void test_matmul(void **state) {
    NEED_GPU();
    uint64_t s = 41;
    const int toks[] = {1, 3, 9, 16, 17}; // quantized: 9 and 16 tokens in two int8 passes, 17 the GEMM
    for (size_t ti = 0; ti < sizeof k_types / sizeof k_types[0]; ti++)
        for (int k = 0; k < 5; k++) {
            matmul_case(k_types[ti], 1024, 67, toks[k], &s);
            matmul_case(k_types[ti], 2816, 130, toks[k], &s);
        }
    // Prefill dequantization with rows of more than 128 units (two blocks per row, the second partial).
    for (int ti = 3; ti < (int)(sizeof k_types / sizeof k_types[0]); ti++) matmul_case(k_types[ti], 4608, 40, 17, &s);
    // Rows not 16-byte aligned: the scalar float path.
    for (int ti = 0; ti < 3; ti++) matmul_case(k_types[ti], 172, 33, 1, &s);
}

// Decode chains as the model runs them: matmul_swiglu then the down matvec on its output, attention then the
// output projection: the second matvec against float64 dots of the downloaded first output through the host
// quantization (bit-exact with the device's), so a stale int8 copy of an earlier input fails. Twice per case.
static void chain_ref(const float *in, int nt, int cols, const float *deq, int rows, float *ref) {
    float *xr = malloc((size_t)nt * cols * sizeof *xr);
#if defined(LL_HAVE_CUDA) && LL_HAVE_CUDA
    ll_backend_cuda_x8_roundtrip(in, xr, nt * cols);
#endif
    dot_ref(xr, nt, cols, deq, rows, ref);
    free(xr);
}

static void test_x8_chains(void **state) {
    NEED_GPU();
    uint64_t s = 53;
    const uint32_t types[] = {LL_TYPE_Q8_0, LL_TYPE_Q4_0, LL_TYPE_Q4_K, LL_TYPE_Q6_K};
    const int dim = 512, ff = 256, out_rows = 40, n_head = 8, n_kv = 2, hd = 64, n_past = 50, n_ctx = 64;
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
        const uint32_t t = types[ti];
        float *dg, *du, *dd, *dob;
        void *wg = make_weight(t, dim, ff, &s, &dg), *wu = make_weight(t, dim, ff, &s, &du);
        void *wd = make_weight(t, ff, out_rows, &s, &dd), *wo = make_weight(t, dim, out_rows, &s, &dob);
        ll_weight lg = {wg, t, dim, ff, "gate", false}, lu = {wu, t, dim, ff, "up", false},
                  ld = {wd, t, ff, out_rows, "down", false},
                  lo = {wo, t, dim, out_rows, "o", false};
        float *gain = rand_floats(dim, &s, 1.0f);
        ll_weight ln = vec_weight(gain, dim, "norm");
        const ll_weight *ws[] = {&lg, &lu, &ld, &lo, &ln};
        duo d = duo_init(ws, 5, 16, n_ctx);
        for (int rep = 0; rep < 2; rep++)
            for (int nt = 1; nt <= 3; nt += 2) {
                char what[128];
                // gate/up + SwiGLU -> down
                float *x = rand_floats((size_t)nt * dim, &s, 1.0f), *dx = to_dev(d.gpu, x, (size_t)nt * dim);
                float *dgv = poisoned_dev(d.gpu, (size_t)nt * ff), *dsc = poisoned_dev(d.gpu, (size_t)nt * ff);
                float *dy = poisoned_dev(d.gpu, (size_t)nt * out_rows);
                d.gpu->ops->matmul_swiglu(d.gpu, &lg, &lu, dx, dgv, dsc, nt);
                d.gpu->ops->matmul(d.gpu, &ld, dgv, dy, nt);
                float *g = from_dev(d.gpu, dgv, (size_t)nt * ff), *y = from_dev(d.gpu, dy, (size_t)nt * out_rows);
                float *ref = malloc((size_t)nt * out_rows * sizeof *ref);
                chain_ref(g, nt, ff, dd, out_rows, ref);
                snprintf(what, sizeof what, "%s swiglu -> down, %d tokens, run %d", ll_type_name(t), nt, rep);
                check_close(what, y, ref, (size_t)nt * out_rows, TOL_F32);
                // attention (decode kernels) -> output projection
                size_t kvn = (size_t)n_ctx * n_kv * hd, qn = (size_t)nt * n_head * hd;
                float *k = rand_floats(kvn, &s, 1.0f), *v = rand_floats(kvn, &s, 1.0f), *q = rand_floats(qn, &s, 1.0f);
                ll_attn_params p = {n_head, n_kv, hd, 1.0f / sqrtf((float)hd)};
                float *dk = to_dev(d.gpu, k, kvn), *dv = to_dev(d.gpu, v, kvn), *dq = to_dev(d.gpu, q, qn);
                float *dout = poisoned_dev(d.gpu, qn), *dy2 = poisoned_dev(d.gpu, (size_t)nt * out_rows);
                int32_t pos[4], row0[4];
                const ll_batch_pos bp = ll_batch_pos_single(0, n_past, nt, pos, row0);
                const ll_kv_cache kv = {dk, dv, LL_TYPE_F32, n_ctx, n_ctx};
                d.gpu->ops->attention(d.gpu, dout, dq, &kv, &bp, &p);
                d.gpu->ops->matmul(d.gpu, &lo, dout, dy2, nt);
                float *a = from_dev(d.gpu, dout, qn), *y2 = from_dev(d.gpu, dy2, (size_t)nt * out_rows);
                chain_ref(a, nt, dim, dob, out_rows, ref);
                snprintf(what, sizeof what, "%s attention -> o, %d tokens, run %d", ll_type_name(t), nt, rep);
                check_close(what, y2, ref, (size_t)nt * out_rows, TOL_F32);
                // rmsnorm (it writes the int8 copy too) -> o
                float *dn = poisoned_dev(d.gpu, (size_t)nt * dim), *dy3 = poisoned_dev(d.gpu, (size_t)nt * out_rows);
                d.gpu->ops->rmsnorm(d.gpu, dn, dx, &ln, dim, nt, 1e-5f);
                d.gpu->ops->matmul(d.gpu, &lo, dn, dy3, nt);
                float *xn = from_dev(d.gpu, dn, (size_t)nt * dim), *y3 = from_dev(d.gpu, dy3, (size_t)nt * out_rows);
                chain_ref(xn, nt, dim, dob, out_rows, ref);
                snprintf(what, sizeof what, "%s rmsnorm -> o, %d tokens, run %d", ll_type_name(t), nt, rep);
                check_close(what, y3, ref, (size_t)nt * out_rows, TOL_F32);
                float *bufs[] = {dx, dgv, dsc, dy, dk, dv, dq, dout, dy2, dn, dy3};
                for (int i = 0; i < 11; i++) d.gpu->ops->free(d.gpu, bufs[i]);
                free(x), free(g), free(y), free(ref), free(k), free(v), free(q), free(a), free(y2), free(xn), free(y3);
            }
        duo_free(&d);
        free(wg), free(wu), free(wd), free(wo), free(dg), free(du), free(dd), free(dob), free(gain);
    }
}

// ---- whole models ---------------------------------------------------------------------------------------------
static ll_context *ctx_on(ll_model *m, const char *device, bool all_logits) {
    ll_error err = {0};
    ll_context_params cp = ll_context_default_params();
    cp.n_ctx = 256;
    cp.n_batch = 64;
    cp.all_logits = all_logits;
    cp.device = device;
    ll_context *c = NULL;
    if (ll_context_init(m, &cp, &c, &err) != LL_OK) fail_msg("context on %s: %s", device, err.message);
    return c;
}

static ll_model *load(const char *path) {
    ll_error err = {0};
    ll_model_params mp = ll_model_default_params();
    mp.n_threads = 2;
    ll_model *m = NULL;
    if (ll_model_load(path, &mp, &m, &err) != LL_OK) fail_msg("load %s: %s", path, err.message);
    return m;
}

static int argmax(const float *x, int n) {
    int b = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[b]) b = i;
    return b;
}

static float top_gap(const float *x, int n) {
    int b = argmax(x, n);
    float second = -INFINITY;
    for (int i = 0; i < n; i++)
        if (i != b && x[i] > second) second = x[i];
    return x[b] - second;
}

// tiny-llama F16, cuda vs cpu. (a) 24 tokens one at a time: every matmul is the f32 matvec on both sides, so
// the logits agree to float rounding (rel L2 <= 1e-4 per step). (b) The same 24 in one batch: the GEMM rounds
// activations to f16 as llama.cpp does, which ../shared/golden/README.md section 7 measures at ~8e-4 rel L2
// from an f32 engine (1e-3 at the worst position): tolerances 2e-3 overall, 3e-3 per position, as there.
static void test_model_tiny_llama_f16(void **state) {
    NEED_GPU();
    TU_NEED_SHARED(path, "golden/tiny-llama/tiny-llama-f16.gguf");
    ll_model *m = load(path);
    int nv = ll_model_n_vocab(m);
    int32_t ids[24];
    for (int i = 0; i < 24; i++) ids[i] = (int32_t)((i * 7919 + 1) % nv);
    ll_error err = {0};
    ll_context *cc = ctx_on(m, "cpu", false), *cg = ctx_on(m, "cuda", false);
    for (int i = 0; i < 24; i++) {
        assert_int_equal(ll_eval(cc, ids + i, 1, false, &err), LL_OK);
        assert_int_equal(ll_eval(cg, ids + i, 1, false, &err), LL_OK);
        assert_int_equal(tu_count_nonfinite(ll_logits(cg, -1), (size_t)nv), 0);
        double r = tu_rel_l2(ll_logits(cg, -1), ll_logits(cc, -1), (size_t)nv);
        if (!(r <= 1e-4)) fail_msg("decode step %d: rel L2 cuda vs cpu %.3g > 1e-4", i, r);
    }
    ll_context_free(cc);
    ll_context_free(cg);
    cc = ctx_on(m, "cpu", true), cg = ctx_on(m, "cuda", true);
    assert_int_equal(ll_eval(cc, ids, 24, true, &err), LL_OK);
    assert_int_equal(ll_eval(cg, ids, 24, true, &err), LL_OK);
    double num = 0, den = 0, worst = 0;
    for (int i = 0; i < 24; i++) {
        const float *g = ll_logits(cg, i), *c = ll_logits(cc, i);
        assert_int_equal(tu_count_nonfinite(g, (size_t)nv), 0);
        double r = tu_rel_l2(g, c, (size_t)nv), n2 = 0;
        for (int k = 0; k < nv; k++) n2 += (double)c[k] * c[k];
        num += r * r * n2, den += n2;
        if (r > worst) worst = r;
        if (top_gap(c, nv) > 0.1f) assert_int_equal(argmax(g, nv), argmax(c, nv));
    }
    printf("# note: tiny-llama F16 batch of 24: rel L2 cuda vs cpu %.3g (2e-3), worst position %.3g (3e-3)\n",
           sqrt(num / den), worst);
    assert_true(sqrt(num / den) <= 2e-3 && worst <= 3e-3);
    ll_context_free(cc);
    ll_context_free(cg);
    ll_model_free(m);
}

// Greedy 50 tokens after BOS + "Once upon a time" (ids from the golden file): cuda and cpu pick the same.
static void test_greedy_stories260k(void **state) {
    NEED_GPU();
    TU_NEED_SHARED(path, "golden/stories260K/stories260K.gguf");
    ll_model *m = load(path);
    ll_context *cc = ctx_on(m, "cpu", false), *cg = ctx_on(m, "cuda", false);
    int32_t prompt[] = {1, 403, 407, 261, 378};
    ll_error err = {0};
    assert_int_equal(ll_eval(cc, prompt, 5, false, &err), LL_OK);
    assert_int_equal(ll_eval(cg, prompt, 5, false, &err), LL_OK);
    int nv = ll_model_n_vocab(m);
    for (int i = 0; i < 50; i++) {
        int a = argmax(ll_logits(cc, -1), nv), b = argmax(ll_logits(cg, -1), nv);
        if (a != b) fail_msg("greedy step %d: cpu picks %d, cuda %d", i, a, b);
        int32_t id = a;
        assert_int_equal(ll_eval(cc, &id, 1, false, &err), LL_OK);
        assert_int_equal(ll_eval(cg, &id, 1, false, &err), LL_OK);
    }
    ll_context_free(cc);
    ll_context_free(cg);
    ll_model_free(m);
}

// ll_sample on the GPU: the candidates selected there give the ids that the whole downloaded row gives, draw for
// draw (two samplers, same seed), for greedy, top-k alone, the default chain (top-k 40, top-p, min-p, temp 0.8) and
// a top-k of 511 (512 candidates: the most topk serves, the whole 512-token vocabulary); and the device path is
// taken wherever it can be (the row never downloaded), with the repetition penalty only before any history.
static void test_sample_device(void **state) {
    NEED_GPU();
    TU_NEED_SHARED(path, "golden/stories260K/stories260K.gguf");
    ll_model *m = load(path);
    const int nv = ll_model_n_vocab(m);
    ll_error err = {0};
    for (int variant = 0; variant < 5; variant++) {
        ll_sampler_params p = ll_sampler_default_params();
        if (variant == 0) p.temp = 0.0f;
        if (variant == 1) p.top_k = 5, p.top_p = 1.0f, p.min_p = 0.0f, p.temp = 1.5f;
        if (variant == 3) p.top_k = 511, p.temp = 2.0f;
        if (variant == 4) p.repeat_penalty = 1.3f;     // needs every logit once there is history
        p.seed = 1234 + (uint64_t)variant;
        ll_sampler *a = ll_sampler_init(&p, nv), *b = ll_sampler_init(&p, nv);
        ll_context *cg = ctx_on(m, "cuda", false);
        int32_t id = 1, on_device = 0;
        for (int i = 0; i < 40; i++) {
            assert_int_equal(ll_eval(cg, &id, 1, false, &err), LL_OK);
            const int32_t x = ll_sample(cg, a);
            on_device += !cg->logits_host;
            const int32_t y = ll_sampler_sample(b, ll_logits(cg, -1));
            if (x != y) fail_msg("sampling variant %d, step %d: %d from the device's candidates, %d from the row", variant, i, x, y);
            ll_sampler_accept(a, x), ll_sampler_accept(b, y);
            id = x;
        }
        const int want = variant < 4 ? 40 : 1; // the penalty: the first step only (no history yet)
        if (on_device != want) fail_msg("sampling variant %d: %d of 40 steps on the device, want %d", variant, on_device, want);
        ll_sampler_free(a), ll_sampler_free(b);
        ll_context_free(cg);
    }
    ll_model_free(m);
}

// Quantized files on the GPU against llama.cpp's golden logits (README section 7 tolerances).
static void golden_quant(const char *model_rel, const char *logits_rel) {
    NEED_GPU();
    TU_NEED_SHARED(path, model_rel);
    TU_NEED_SHARED(lpath, logits_rel);
    TU_NEED_SHARED(ids_path, "golden/stories260K/stories260K.ids.txt");
    int32_t ids[64];
    int n = 0;
    char *txt = tu_read_file(ids_path, NULL);
    for (char *p = txt; n < 64;) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p) break;
        ids[n++] = (int32_t)v;
        p = end;
    }
    free(txt);
    ll_model *m = load(path);
    ll_context *cg = ctx_on(m, "cuda", true);
    ll_error err = {0};
    assert_int_equal(ll_eval(cg, ids, n, true, &err), LL_OK);
    int nv = ll_model_n_vocab(m);
    size_t glen = 0;
    float *gold = (float *)tu_read_file(lpath, &glen);
    assert_int_equal(glen, (size_t)n * nv * sizeof(float));
    float *ours = malloc(glen);
    for (int i = 0; i < n; i++) memcpy(ours + (size_t)i * nv, ll_logits(cg, i), (size_t)nv * sizeof(float));
    double r = tu_rel_l2(ours, gold, (size_t)n * nv);
    printf("# note: %s on cuda: rel L2 %.3g vs llama.cpp (tolerance 5e-2)\n", model_rel, r);
    assert_true(r <= 5e-2);
    // Again from position 0: the same logits (nothing left over from the first pass: the int8 copies of x,
    // the fused-quantization counters, the recorded decode step).
    ll_context_reset(cg);
    assert_int_equal(ll_eval(cg, ids, n, true, &err), LL_OK);
    for (int i = 0; i < n; i++)
        if (memcmp(ours + (size_t)i * nv, ll_logits(cg, i), (size_t)nv * sizeof(float)))
            fail_msg("%s: second pass, position %d: logits differ from the first pass", model_rel, i);
    free(ours), free(gold);
    ll_context_free(cg);
    ll_model_free(m);
}

static void test_golden_q8_0(void **state) {
    golden_quant("golden/stories260K/stories260K-Q8_0.gguf", "golden/stories260K/stories260K-Q8_0.logits.f32");
}
static void test_golden_q4_0(void **state) {
    golden_quant("golden/stories260K/stories260K-Q4_0.gguf", "golden/stories260K/stories260K-Q4_0.logits.f32");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_decoders_host), cmocka_unit_test(test_topk),
        cmocka_unit_test(test_rows_ops),    cmocka_unit_test(test_rope),
        cmocka_unit_test(test_attention),   cmocka_unit_test(test_attention2), cmocka_unit_test(test_get_rows),
        cmocka_unit_test(test_matmul),      cmocka_unit_test(test_matmul_swiglu), cmocka_unit_test(test_matmul3),
        cmocka_unit_test(test_mvq_shapes),
        cmocka_unit_test(test_x8_chains), cmocka_unit_test(test_add_norm), cmocka_unit_test(test_rmsnorm_sizes),
        cmocka_unit_test(test_rope_kv_store), cmocka_unit_test(test_qkv_rope_store),
        cmocka_unit_test(test_model_tiny_llama_f16),
        cmocka_unit_test(test_greedy_stories260k), cmocka_unit_test(test_sample_device), cmocka_unit_test(test_golden_q8_0),
        cmocka_unit_test(test_golden_q4_0),
    };
    ll_log_set_level(LL_LOG_INFO); // the device, cuBLAS and the upload rate (GB/s) in the log
    return cmocka_run_group_tests(tests, NULL, NULL);
}
