// test_cuda_seq.c — the CUDA backend with several sequences in one KV cache (issue 18): attention of tokens of
// different sequences at their own positions (decode of N sequences, mixed batches) in F32 and F16 caches against a
// float64 host reference and the CPU backend; the cache store per token; forward steps recorded as CUDA graphs for
// two contexts (keys) with their own buffers, replayed at new positions and sequences, against the same ops run one
// by one on a second backend without graphs; reserve, mem_info, plan_bytes and copy. Skips without a GPU.
#include "cuda_util.h"

#include "types/quant.h"

// ---- the float64 reference: token t attends to rows row0[t] .. row0[t] + pos[t] (F32 cache, rows of kvd) ----
static void attn_ref(float *out, const float *q, const float *kc, const float *vc, const ll_batch_pos *bp,
                     const ll_attn_params *p) {
    const int hd = p->head_dim, kvd = p->n_head_kv * hd, G = p->n_head / p->n_head_kv;
    int most = 0;
    for (int t = 0; t < bp->n_tok; t++) most = bp->pos[t] + 1 > most ? bp->pos[t] + 1 : most;
    double *sc = malloc((size_t)most * sizeof *sc), *acc = malloc((size_t)hd * sizeof *acc);
    for (int t = 0; t < bp->n_tok; t++)
        for (int h = 0; h < p->n_head; h++) {
            const float *qr = q + ((size_t)t * p->n_head + h) * hd;
            const size_t off = (size_t)(h / G) * hd;
            const int n = bp->pos[t] + 1;
            double mx = -INFINITY, sum = 0;
            for (int j = 0; j < n; j++) {
                const float *kr = kc + (size_t)(bp->row0[t] + j) * kvd + off;
                double d = 0;
                for (int i = 0; i < hd; i++) d += (double)qr[i] * kr[i];
                sc[j] = d * p->scale;
                mx = sc[j] > mx ? sc[j] : mx;
            }
            for (int i = 0; i < hd; i++) acc[i] = 0;
            for (int j = 0; j < n; j++) {
                const double e = exp(sc[j] - mx);
                const float *vr = vc + (size_t)(bp->row0[t] + j) * kvd + off;
                sum += e;
                for (int i = 0; i < hd; i++) acc[i] += e * vr[i];
            }
            for (int i = 0; i < hd; i++) out[((size_t)t * p->n_head + h) * hd + i] = (float)(acc[i] / sum);
        }
    free(sc), free(acc);
}

// ---- attention over several sequences ------------------------------------------------------------------------
// n_seq sequences of n_ctx rows; token t is of sequence seq[t] at position pos[t]. Rows past each sequence's last
// position in the batch (and the rows of sequences without tokens) are NaN: never read. The GPU (cache of `type`)
// against the float64 reference on the same values (F16: rounded first; Q8_0: through its blocks, whose values the
// kernels take exactly) and the CPU backend (F32 cache of those values).
// Tolerances: the f32 split kernels 1e-9 NMSE; batches with runs of >= 16 tokens at head dim 64/128 take the
// tensor cores for those runs (f16 operands): 4e-6, as test_cuda's attention cases.
static void multi_case(ll_backend *gpu, ll_backend *cpu, int nh, int nkv, int hd, int n_ctx, int n_seq, int nt,
                       const int *seq, const int *pos, uint32_t type, uint64_t *s) {
    const int kvd = nkv * hd, n_rows = n_seq * n_ctx;
    const size_t nc = (size_t)n_rows * kvd, nq = (size_t)nt * nh * hd;
    int32_t *p32 = malloc((size_t)nt * sizeof *p32), *r32 = malloc((size_t)nt * sizeof *r32);
    int *top = malloc((size_t)n_seq * sizeof *top);
    for (int i = 0; i < n_seq; i++) top[i] = -1;
    bool mma = false;
    for (int t = 0; t < nt; t++) {
        p32[t] = pos[t], r32[t] = seq[t] * n_ctx;
        top[seq[t]] = pos[t] > top[seq[t]] ? pos[t] : top[seq[t]];
        int e = t + 1; // a run of one sequence at consecutive positions starting here
        while (e < nt && seq[e] == seq[t] && pos[e] == pos[e - 1] + 1) e++;
        if (e - t >= 16 && (hd == 64 || hd == 128) && !(t > 0 && seq[t - 1] == seq[t] && pos[t - 1] == pos[t] - 1))
            mma = true;
    }
    float *k = rand_floats(nc, s, 1.0f), *v = rand_floats(nc, s, 1.0f), *q = rand_floats(nq, s, 1.0f);
    for (int r = 0; r < n_rows; r++)
        if (r % n_ctx > top[r / n_ctx])
            for (int i = 0; i < kvd; i++) k[(size_t)r * kvd + i] = v[(size_t)r * kvd + i] = NAN;
    round_kv(k, nc, type), round_kv(v, nc, type);
    const ll_batch_pos bp = {nt, p32, r32, false, 0};
    const ll_attn_params p = {nh, nkv, hd, 1.0f / sqrtf((float)hd)};
    float *ref = malloc(nq * sizeof *ref), *cref = malloc(nq * sizeof *cref);
    attn_ref(ref, q, k, v, &bp, &p);
    char what[160];
    snprintf(what, sizeof what, "attention %s heads %d/%d dim %d, %d tokens of %d sequences (n_ctx %d)",
             ll_type_name(type), nh, nkv, hd, nt, n_seq, n_ctx);
    if (cpu) {
        const ll_kv_cache kvc = {k, v, LL_TYPE_F32, n_ctx, n_rows};
        cpu->ops->attention(cpu, cref, q, &kvc, &bp, &p);
        char w2[200];
        snprintf(w2, sizeof w2, "%s: the CPU backend against the float64 reference", what);
        check_close(w2, cref, ref, nq, 1e-9);
    }
    void *dk = kv_to_dev(gpu, k, nc, type), *dv = kv_to_dev(gpu, v, nc, type);
    float *dq = to_dev(gpu, q, nq), *dout = poisoned_dev(gpu, nq);
    const ll_kv_cache kv = {dk, dv, type, n_ctx, n_rows};
    gpu->ops->attention(gpu, dout, dq, &kv, &bp, &p);
    float *got = from_dev(gpu, dout, nq);
    check_close(what, got, ref, nq, mma ? 4e-6 : 1e-9);
    void *bufs[] = {dk, dv, dq, dout};
    for (int i = 0; i < 4; i++) gpu->ops->free(gpu, bufs[i]);
    free(p32), free(r32), free(top), free(k), free(v), free(q), free(ref), free(cref), free(got);
}

typedef struct shape {
    int nh, nkv, hd;
} shape;

// GQA 4 at head dims 64 and 128 (Mistral), MHA, GQA 3 at head dim 80 (the generic kernel), 16 heads per kv head
// (two blocks per token), head dim 12, head dim 256.
static const shape k_shapes[] = {{8, 2, 64}, {32, 8, 128}, {4, 4, 128}, {12, 4, 80}, {16, 1, 64}, {6, 3, 12}, {4, 2, 256}};

static duo duo_plain(int max_tok, int max_ctx) { return duo_init(NULL, 0, max_tok, max_ctx); }

// Decode of 5 sequences at different positions (rows not in order), both decode kernels (k_attn_split2, and
// k_attn_split under LLMLAB_CUDA_NOFUSE=attn2, read at init), F32 and F16 caches; then 16 sequences.
static void test_attention_decode_multi(void **state) {
    NEED_GPU();
    uint64_t s = 101;
    const int seq5[5] = {3, 0, 4, 1, 2}, pos5[5] = {0, 17, 64, 130, 299};
    for (int old = 0; old < 2; old++) {
        if (old) setenv("LLMLAB_CUDA_NOFUSE", "attn2", 1);
        duo d = duo_plain(16, 300);
        for (size_t i = 0; i < sizeof k_shapes / sizeof k_shapes[0]; i++) {
            const shape *h = &k_shapes[i];
            multi_case(d.gpu, old ? NULL : d.cpu, h->nh, h->nkv, h->hd, 300, 5, 5, seq5, pos5, LL_TYPE_F32, &s);
            multi_case(d.gpu, old ? NULL : d.cpu, h->nh, h->nkv, h->hd, 300, 5, 5, seq5, pos5, LL_TYPE_F16, &s);
            if (h->hd % 32 == 0) // Q8_0 caches: whole blocks per head
                multi_case(d.gpu, old ? NULL : d.cpu, h->nh, h->nkv, h->hd, 300, 5, 5, seq5, pos5, LL_TYPE_Q8_0, &s);
        }
        duo_free(&d);
    }
    unsetenv("LLMLAB_CUDA_NOFUSE");
    duo d = duo_plain(16, 200);
    int seq16[16], pos16[16];
    for (int t = 0; t < 16; t++) seq16[t] = (t * 7) % 16, pos16[t] = (t * 37) % 200;
    pos16[3] = 199, pos16[5] = 0;
    multi_case(d.gpu, d.cpu, 32, 8, 128, 200, 16, 16, seq16, pos16, LL_TYPE_F32, &s);
    multi_case(d.gpu, NULL, 32, 8, 128, 200, 16, 16, seq16, pos16, LL_TYPE_F16, &s);
    multi_case(d.gpu, NULL, 8, 2, 64, 200, 16, 16, seq16, pos16, LL_TYPE_F16, &s);
    multi_case(d.gpu, NULL, 32, 8, 128, 200, 16, 16, seq16, pos16, LL_TYPE_Q8_0, &s);
    duo_free(&d);
}

// Mixed batches: a prompt run of 20 tokens, single tokens, a run of 3 and a run of 16 from position 0 (the runs of
// 16 and more take the one-sequence path: the tensor cores at head dim 64/128), and a batch where one sequence's
// tokens are not adjacent (the later sees the earlier's row).
static void test_attention_mixed(void **state) {
    NEED_GPU();
    uint64_t s = 103;
    int seq[41], pos[41], n = 0;
    for (int i = 0; i < 20; i++) seq[n] = 2, pos[n++] = 5 + i;
    seq[n] = 0, pos[n++] = 40;
    for (int i = 0; i < 3; i++) seq[n] = 1, pos[n++] = 7 + i;
    seq[n] = 3, pos[n++] = 0;
    for (int i = 0; i < 16; i++) seq[n] = 4, pos[n++] = i;
    const int seq3[3] = {0, 1, 0}, pos3[3] = {3, 9, 4};
    duo d = duo_plain(64, 64);
    for (size_t i = 0; i < sizeof k_shapes / sizeof k_shapes[0]; i++) {
        const shape *h = &k_shapes[i];
        for (int f = 0; f < 3; f++) {
            const uint32_t type = f == 2 ? LL_TYPE_Q8_0 : f ? LL_TYPE_F16 : LL_TYPE_F32;
            if (f == 2 && h->hd % 32) continue;
            multi_case(d.gpu, f ? NULL : d.cpu, h->nh, h->nkv, h->hd, 64, 5, n, seq, pos, type, &s);
            multi_case(d.gpu, f ? NULL : d.cpu, h->nh, h->nkv, h->hd, 64, 2, 3, seq3, pos3, type, &s);
        }
    }
    duo_free(&d);
}

// ---- kv_store: each token's rows, every other row untouched (exact: F16 rounds to nearest even on both sides,
// Q8_0 blocks by the reference quantizer's arithmetic) ----
static void test_kv_store_multi(void **state) {
    NEED_GPU();
    uint64_t s = 107;
    const int n_ctx = 64, n_seq = 4, kvd = 128, nt = 4;
    const int32_t pos[4] = {5, 0, 63, 6}, row0[4] = {3 * n_ctx, 0, 2 * n_ctx, 3 * n_ctx};
    const ll_batch_pos bp = {nt, pos, row0, false, 0};
    duo d = duo_plain(8, n_ctx);
    for (int f = 0; f < 3; f++) {
        const uint32_t type = f == 2 ? LL_TYPE_Q8_0 : f ? LL_TYPE_F16 : LL_TYPE_F32;
        const size_t nc = (size_t)n_seq * n_ctx * kvd, nk = (size_t)nt * kvd;
        float *kc = rand_floats(nc, &s, 1.0f), *vc = rand_floats(nc, &s, 1.0f);
        float *k = rand_floats(nk, &s, 3.0f), *v = rand_floats(nk, &s, 3.0f);
        void *dkc = kv_to_dev(d.gpu, kc, nc, type), *dvc = kv_to_dev(d.gpu, vc, nc, type);
        float *dk = to_dev(d.gpu, k, nk), *dv = to_dev(d.gpu, v, nk);
        for (int t = 0; t < nt; t++) {
            memcpy(kc + (size_t)(row0[t] + pos[t]) * kvd, k + (size_t)t * kvd, (size_t)kvd * sizeof *k);
            memcpy(vc + (size_t)(row0[t] + pos[t]) * kvd, v + (size_t)t * kvd, (size_t)kvd * sizeof *v);
        }
        round_kv(kc, nc, type), round_kv(vc, nc, type);
        const ll_kv_cache kv = {dkc, dvc, type, n_ctx, n_seq * n_ctx};
        d.gpu->ops->kv_store(d.gpu, &kv, dk, dv, kvd, &bp);
        float *gk = kv_from_dev(d.gpu, dkc, nc, type), *gv = kv_from_dev(d.gpu, dvc, nc, type);
        char what[96];
        snprintf(what, sizeof what, "kv_store %s, 4 tokens of 3 sequences: k cache", ll_type_name(type));
        check_close(what, gk, kc, nc, 0.0);
        snprintf(what, sizeof what, "kv_store %s, 4 tokens of 3 sequences: v cache", ll_type_name(type));
        check_close(what, gv, vc, nc, 0.0);
        void *bufs[] = {dkc, dvc, dk, dv};
        for (int i = 0; i < 4; i++) d.gpu->ops->free(d.gpu, bufs[i]);
        free(kc), free(vc), free(k), free(v), free(gk), free(gv);
    }
    duo_free(&d);
}

// ---- forward steps as CUDA graphs, two contexts ---------------------------------------------------------------
#if defined(LL_HAVE_CUDA) && LL_HAVE_CUDA
// A step as the model runs a layer's attention block on the int8 path: get_rows of the token ids, q/k/v with RoPE
// and the cache store in one op (qkv_rope_store: the int8 matvec's epilogue), attention, the output projection.
#define G_VOCAB 50
#define G_DIM 64
#define G_NH 4
#define G_NKV 2
#define G_HD 64
#define G_OUT 40
#define G_MAXTOK 16

typedef struct gmodel {
    ll_weight emb, wq, wk, wv, wo;
    void *data[5];
    float *deq[5];
} gmodel;

typedef struct gctx { // one context's buffers on one backend
    float *x, *q, *k, *v, *att, *out;
    ll_kv_cache kv;
} gctx;

static void *g_weight(uint32_t t, int cols, int rows, uint64_t *s, float **deq) {
    const ll_type_traits *tr = ll_type_get(t);
    uint64_t rb = 0;
    LL_ASSERT(tr && ll_type_row_size(t, (uint64_t)cols, &rb));
    float *f = rand_floats((size_t)rows * cols, s, 1.0f);
    void *w = malloc(rb * (size_t)rows);
    if (t == LL_TYPE_F32) memcpy(w, f, (size_t)rows * cols * sizeof *f);
    else tr->from_float_ref(f, w, (int64_t)rows * cols);
    *deq = f;
    return w;
}

static void gmodel_init(gmodel *m, uint64_t *s) {
    const int rows[5] = {G_VOCAB, G_NH * G_HD, G_NKV * G_HD, G_NKV * G_HD, G_OUT};
    const int cols[5] = {G_DIM, G_DIM, G_DIM, G_DIM, G_NH * G_HD};
    const uint32_t types[5] = {LL_TYPE_F32, LL_TYPE_Q8_0, LL_TYPE_Q8_0, LL_TYPE_Q8_0, LL_TYPE_Q8_0};
    ll_weight *w[5] = {&m->emb, &m->wq, &m->wk, &m->wv, &m->wo};
    const char *names[5] = {"emb", "wq", "wk", "wv", "wo"};
    for (int i = 0; i < 5; i++) {
        m->data[i] = g_weight(types[i], cols[i], rows[i], s, &m->deq[i]);
        *w[i] = (ll_weight){m->data[i], types[i], cols[i], rows[i], names[i], false};
    }
}

static void gctx_init(gctx *g, ll_backend *b, uint32_t type, int n_ctx, int n_seq, const float *kc, const float *vc) {
    const size_t nc = (size_t)n_seq * n_ctx * G_NKV * G_HD;
    g->x = poisoned_dev(b, (size_t)G_MAXTOK * G_DIM);
    g->q = poisoned_dev(b, (size_t)G_MAXTOK * G_NH * G_HD);
    g->k = poisoned_dev(b, (size_t)G_MAXTOK * G_NKV * G_HD);
    g->v = poisoned_dev(b, (size_t)G_MAXTOK * G_NKV * G_HD);
    g->att = poisoned_dev(b, (size_t)G_MAXTOK * G_NH * G_HD);
    g->out = poisoned_dev(b, (size_t)G_MAXTOK * G_OUT);
    g->kv = (ll_kv_cache){kv_to_dev(b, kc, nc, type), kv_to_dev(b, vc, nc, type), type, n_ctx, n_seq * n_ctx};
}

static void gctx_free(gctx *g, ll_backend *b) {
    void *bufs[] = {g->x, g->q, g->k, g->v, g->att, g->out, g->kv.k, g->kv.v};
    for (int i = 0; i < 8; i++) b->ops->free(b, bufs[i]);
}

// One step; returns whether step_begin ran it as a recorded graph.
static bool g_step(ll_backend *b, const gmodel *m, gctx *g, const void *key, const int32_t *ids,
                   const ll_batch_pos *bp) {
    const int n = bp->n_tok;
    if (b->ops->step_begin && b->ops->step_begin(b, key, ids, bp)) return true;
    const ll_rope_params rp = {G_NH, G_HD, G_HD, 10000.0f, false, NULL};
    const ll_attn_params ap = {G_NH, G_NKV, G_HD, 1.0f / sqrtf((float)G_HD)};
    const ll_weight *w3[3] = {&m->wq, &m->wk, &m->wv};
    float *y3[3] = {g->q, g->k, g->v};
    b->ops->get_rows(b, g->x, &m->emb, ids, n);
    b->ops->qkv_rope_store(b, w3, g->x, y3, &g->kv, bp, &rp, G_NKV);
    b->ops->attention(b, g->att, g->q, &g->kv, bp, &ap);
    b->ops->matmul(b, &m->wo, g->att, g->out, n);
    if (b->ops->step_end) b->ops->step_end(b, true);
    return false;
}

typedef struct gsched {
    int ctx;      // 0: A, 1: B, 2: C
    int n;        // tokens
    int seq[12], pos[12];
    int replay;   // expected from step_begin on the graph backend: 1 replayed, 0 recorded
} gsched;

// A: F32 cache, 3 sequences of 32 rows; B: F16 cache, 4 sequences of 48 rows; C: Q8_0 cache, 2 sequences of 40
// rows (q/k/v unfused: the store quantizes whole blocks). Single tokens, runs of one sequence and tokens of distinct
// sequences; (A, 3, run) and (A, 3, distinct) are different records; a 12-token step of 3 sequences (4 tokens
// each, later ones seeing the earlier ones' rows) takes two int8 passes.
static const gsched k_sched[] = {
    {0, 1, {1}, {10}, 0},
    {1, 1, {2}, {20}, 0},
    {0, 1, {2}, {5}, 1},
    {1, 4, {3, 0, 2, 1}, {7, 30, 21, 0}, 0},
    {1, 4, {1, 2, 0, 3}, {1, 22, 31, 8}, 1},
    {0, 3, {0, 0, 0}, {3, 4, 5}, 0},
    {0, 3, {0, 1, 2}, {6, 11, 6}, 0},
    {0, 3, {1, 1, 1}, {12, 13, 14}, 1},
    {1, 1, {0}, {40}, 1},
    {2, 1, {1}, {7}, 0},
    {2, 2, {0, 1}, {3, 9}, 0},
    {2, 1, {0}, {4}, 1},
    {2, 2, {1, 0}, {10, 5}, 1},
    {0, 12, {0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2}, {16, 20, 24, 17, 21, 25, 18, 22, 26, 19, 23, 27}, 0},
    {0, 12, {2, 1, 0, 2, 1, 0, 2, 1, 0, 2, 1, 0}, {28, 24, 20, 29, 25, 21, 30, 26, 22, 31, 27, 23}, 1},
};

static void g_compare(ll_backend *gb, ll_backend *rb, const gctx *g, const gctx *r, int n, const char *what) {
    float *a = from_dev(gb, g->out, (size_t)n * G_OUT), *b = from_dev(rb, r->out, (size_t)n * G_OUT);
    float *aa = from_dev(gb, g->att, (size_t)n * G_NH * G_HD), *ba = from_dev(rb, r->att, (size_t)n * G_NH * G_HD);
    char w2[160];
    // The same kernels in the same order, but a recorded step splits the keys for the whole n_ctx: the sums' order
    // differs (f32 rounding only, NMSE ~1e-14). The output projection quantizes the attention output to int8 codes:
    // a value at a rounding boundary may take the next code in one run and not the other, one code step (amax/127)
    // on one element of a row of 256 (~2e-6 of the row's NMSE): 1e-5 allows a few, a wrong position, row or token
    // gives ~1.
    snprintf(w2, sizeof w2, "%s: attention", what);
    check_close(w2, aa, ba, (size_t)n * G_NH * G_HD, 1e-10);
    snprintf(w2, sizeof w2, "%s: output projection", what);
    check_close(w2, a, b, (size_t)n * G_OUT, 1e-5);
    free(a), free(b), free(aa), free(ba);
}

static void g_compare_cache(ll_backend *gb, ll_backend *rb, const gctx *g, const gctx *r, const char *what) {
    const size_t nc = (size_t)g->kv.n_rows * G_NKV * G_HD;
    float *a = kv_from_dev(gb, g->kv.k, nc, g->kv.type), *b = kv_from_dev(rb, r->kv.k, nc, r->kv.type);
    float *av = kv_from_dev(gb, g->kv.v, nc, g->kv.type), *bv = kv_from_dev(rb, r->kv.v, nc, r->kv.type);
    char w2[128];
    snprintf(w2, sizeof w2, "%s: k cache", what);
    check_close(w2, a, b, nc, TOL_F32);
    snprintf(w2, sizeof w2, "%s: v cache", what);
    check_close(w2, av, bv, nc, TOL_F32);
    free(a), free(b), free(av), free(bv);
}

static void test_graph_steps(void **state) {
    NEED_GPU();
    uint64_t s = 109;
    gmodel m;
    gmodel_init(&m, &s);
    const ll_weight *ws[] = {&m.emb, &m.wq, &m.wk, &m.wv, &m.wo};
    ll_error err = {0};
    const char *env = getenv("LLMLAB_CUDA_GRAPHS");
    const bool graphs = !(env && !strcmp(env, "0"));
    ll_backend *gb = ll_backend_cuda_init(1, &err);
    setenv("LLMLAB_CUDA_GRAPHS", "0", 1); // the reference: the same ops one by one
    ll_backend *rb = ll_backend_cuda_init(1, &err);
    if (env) setenv("LLMLAB_CUDA_GRAPHS", env, 1);
    else unsetenv("LLMLAB_CUDA_GRAPHS");
    if (!gb || !rb) fail_msg("cuda init: %s", err.message);
    if (gb->ops->prepare(gb, ws, 5, G_MAXTOK, 48, &err) != LL_OK ||
        rb->ops->prepare(rb, ws, 5, G_MAXTOK, 48, &err) != LL_OK)
        fail_msg("prepare: %s", err.message);
    const int n_ctx[3] = {32, 48, 40}, n_seq[3] = {3, 4, 2};
    const uint32_t types[3] = {LL_TYPE_F32, LL_TYPE_F16, LL_TYPE_Q8_0};
    gctx g[3], r[3];
    for (int c = 0; c < 3; c++) {
        const size_t nc = (size_t)n_seq[c] * n_ctx[c] * G_NKV * G_HD;
        float *kc = rand_floats(nc, &s, 1.0f), *vc = rand_floats(nc, &s, 1.0f); // earlier tokens' rows
        gctx_init(&g[c], gb, types[c], n_ctx[c], n_seq[c], kc, vc);
        gctx_init(&r[c], rb, types[c], n_ctx[c], n_seq[c], kc, vc);
        free(kc), free(vc);
    }
    const void *keys[3] = {&g[0], &g[1], &g[2]};
    char what[128];
    for (size_t i = 0; i < sizeof k_sched / sizeof k_sched[0] + 2; i++) {
        // after the schedule: step_forget(A), then A's first step again; reserve, then it once more (both record)
        const bool extra = i >= sizeof k_sched / sizeof k_sched[0];
        const gsched *st = extra ? &k_sched[0] : &k_sched[i];
        if (extra && i == sizeof k_sched / sizeof k_sched[0]) gb->ops->step_forget(gb, keys[0]);
        if (extra && i > sizeof k_sched / sizeof k_sched[0]) {
            if (gb->ops->reserve(gb, 2 * G_MAXTOK, 64, &err) != LL_OK ||
                rb->ops->reserve(rb, 2 * G_MAXTOK, 64, &err) != LL_OK)
                fail_msg("reserve: %s", err.message);
        }
        const int c = st->ctx, n = st->n;
        int32_t ids[12], pos[12], row0[12];
        bool single = true;
        for (int t = 0; t < n; t++) {
            ids[t] = (int32_t)(tu_rng_u64(&s) % G_VOCAB);
            pos[t] = st->pos[t], row0[t] = st->seq[t] * n_ctx[c];
            if (t && (row0[t] != row0[0] || pos[t] != pos[0] + t)) single = false;
        }
        const ll_batch_pos bp = {n, pos, row0, single, single ? pos[0] : 0};
        const bool replayed = g_step(gb, &m, &g[c], keys[c], ids, &bp);
        (void)g_step(rb, &m, &r[c], keys[c], ids, &bp);
        snprintf(what, sizeof what, "step %zu (context %c, %d tokens%s)", i, 'A' + c, n, single ? ", one run" : "");
        if (graphs && replayed != (!extra && st->replay))
            fail_msg("%s: step_begin %s, expected %s", what, replayed ? "replayed a record" : "recorded",
                     !extra && st->replay ? "a replay" : "a record");
        g_compare(gb, rb, &g[c], &r[c], n, what);
    }
    g_compare_cache(gb, rb, &g[0], &r[0], "context A after the steps");
    g_compare_cache(gb, rb, &g[1], &r[1], "context B after the steps");
    g_compare_cache(gb, rb, &g[2], &r[2], "context C after the steps");
    for (int c = 0; c < 3; c++) gctx_free(&g[c], gb), gctx_free(&r[c], rb);
    ll_backend_free(gb);
    ll_backend_free(rb);
    for (int i = 0; i < 5; i++) free(m.data[i]), free(m.deq[i]);
}
#else
static void test_graph_steps(void **state) { TU_SKIP("built without CUDA: no graphs to record"); }
#endif

// ---- reserve, mem_info, plan_bytes, copy --------------------------------------------------------------------
static void test_reserve_copy(void **state) {
    NEED_GPU();
    uint64_t s = 113;
    duo d = duo_plain(2, 16);
    ll_backend *b = d.gpu;
    ll_error err = {0};
    uint64_t fr = 0, tot = 0;
    b->ops->mem_info(b, &fr, &tot);
    if (!(fr > 0 && fr <= tot)) fail_msg("mem_info: free %llu of %llu", (unsigned long long)fr, (unsigned long long)tot);
    const uint64_t p2 = b->ops->plan_bytes(b, NULL, 0, 2, 16), p64 = b->ops->plan_bytes(b, NULL, 0, 64, 256);
    if (!(p2 > 0 && p64 > p2)) fail_msg("plan_bytes: %llu at 2 tokens, %llu at 64", (unsigned long long)p2,
                                        (unsigned long long)p64);
    assert_int_equal(b->ops->reserve(b, 1, 8, &err), LL_OK); // smaller: nothing to do
    assert_int_equal(b->ops->reserve(b, 64, 256, &err), LL_OK);
    assert_int_equal(d.cpu->ops->reserve(d.cpu, 64, 256, &err), LL_OK);
    // 41 tokens (a run of 20, singles, a run of 16) now fit the scratch
    int seq[41], pos[41], n = 0;
    for (int i = 0; i < 20; i++) seq[n] = 0, pos[n++] = 200 + i;
    seq[n] = 1, pos[n++] = 255;
    for (int i = 0; i < 3; i++) seq[n] = 2, pos[n++] = 7 + i;
    seq[n] = 3, pos[n++] = 0;
    for (int i = 0; i < 16; i++) seq[n] = 3, pos[n++] = 1 + i;
    multi_case(b, d.cpu, 32, 8, 128, 256, 4, n, seq, pos, LL_TYPE_F16, &s);
    multi_case(b, NULL, 12, 4, 80, 256, 4, n, seq, pos, LL_TYPE_F32, &s);
    // copy: sequence 0's rows (F16) to sequence 1's, the bytes as they are
    const size_t half = (size_t)16 * 64, nc = 2 * half;
    float *kc = rand_floats(nc, &s, 1.0f);
    void *dk = kv_to_dev(b, kc, nc, LL_TYPE_F16);
    b->ops->copy(b, (uint16_t *)dk + half, dk, half * 2);
    float *got = kv_from_dev(b, dk, nc, LL_TYPE_F16);
    round_f16(kc, nc);
    memcpy(kc + half, kc, half * sizeof *kc);
    check_close("copy of a sequence's F16 rows", got, kc, nc, 0.0);
    b->ops->free(b, dk);
    free(kc), free(got);
    duo_free(&d);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_attention_decode_multi), cmocka_unit_test(test_attention_mixed),
        cmocka_unit_test(test_kv_store_multi),         cmocka_unit_test(test_graph_steps),
        cmocka_unit_test(test_reserve_copy),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
