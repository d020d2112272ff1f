// ref_forward.h — (included by test_model.c) a float64 reference Llama forward pass, written from the
// papers with no KV cache and no shared code with src/model, and random small models built in memory to run
// it against the engine on every shape variant.

typedef struct rand_cfg {
    const char *arch; // "llama" or "qwen2"
    int n_embd, n_layer, n_head, n_head_kv, n_ff, n_vocab, n_rot;
    uint32_t wtype;   // F32, F16 or BF16 for the matrices
    bool tied, bias, rope_freqs;
    float rope_base, eps;
} rand_cfg;

typedef struct rand_model {
    ll_gguf *g;
    void **bufs;
    int n_bufs;
} rand_model;

static void *rm_tensor(rand_model *rm, uint64_t *rng, const char *name, uint32_t type, int64_t ne0, int64_t ne1,
                       float scale, float offset) {
    size_t n = (size_t)(ne0 * ne1), es = type == LL_TYPE_F32 ? 4 : 2;
    void *buf = malloc(n * es);
    for (size_t i = 0; i < n; i++) {
        float v = offset + scale * tu_rng_uniform(rng);
        if (type == LL_TYPE_F32) ((float *)buf)[i] = v;
        else if (type == LL_TYPE_F16) ((uint16_t *)buf)[i] = ll_fp32_to_fp16(v);
        else ((uint16_t *)buf)[i] = ll_fp32_to_bf16(v);
    }
    int64_t ne[2] = {ne0, ne1};
    ll_error err;
    assert_int_equal(ll_gguf_add_tensor(rm->g, name, type, ne1 > 1 ? 2 : 1, ne, buf, &err), LL_OK);
    rm->bufs = realloc(rm->bufs, (size_t)(rm->n_bufs + 1) * sizeof *rm->bufs);
    rm->bufs[rm->n_bufs++] = buf;
    return buf;
}

// A byte-fallback SentencePiece vocabulary of n tokens: <unk> <s> </s>, 256 byte tokens, then filler.
static void rm_vocab(ll_gguf *g, int n) {
    ll_str *toks = calloc((size_t)n, sizeof *toks);
    float *scores = calloc((size_t)n, sizeof *scores);
    int32_t *types = calloc((size_t)n, sizeof *types);
    char(*txt)[16] = calloc((size_t)n, 16);
    for (int i = 0; i < n; i++) {
        if (i < 3) snprintf(txt[i], 16, "%s", (const char *[]){"<unk>", "<s>", "</s>"}[i]);
        else if (i < 259) snprintf(txt[i], 16, "<0x%02X>", i - 3);
        else snprintf(txt[i], 16, "t%d", i);
        toks[i] = (ll_str){txt[i], strlen(txt[i])};
        scores[i] = -(float)i;
        types[i] = i == 0 ? 2 : i < 3 ? 3 : i < 259 ? 6 : 1;
    }
    ll_gguf_set_str(g, "tokenizer.ggml.model", "llama");
    ll_gguf_set_arr_str(g, "tokenizer.ggml.tokens", (uint64_t)n, toks);
    ll_gguf_set_arr(g, "tokenizer.ggml.scores", LL_GGUF_FLOAT32, (uint64_t)n, scores);
    ll_gguf_set_arr(g, "tokenizer.ggml.token_type", LL_GGUF_INT32, (uint64_t)n, types);
    ll_gguf_set_u32(g, "tokenizer.ggml.bos_token_id", 1);
    ll_gguf_set_u32(g, "tokenizer.ggml.eos_token_id", 2);
    free(toks);
    free(scores);
    free(types);
    free(txt);
}

static rand_model rm_build(const rand_cfg *c, uint64_t seed) {
    rand_model rm = {ll_gguf_new("random-model"), NULL, 0};
    ll_gguf *g = rm.g;
    char k[96];
    ll_gguf_set_str(g, "general.architecture", c->arch);
#define KEY(s) (snprintf(k, sizeof k, "%s.%s", c->arch, s), k)
    ll_gguf_set_u32(g, KEY("embedding_length"), (uint32_t)c->n_embd);
    ll_gguf_set_u32(g, KEY("block_count"), (uint32_t)c->n_layer);
    ll_gguf_set_u32(g, KEY("feed_forward_length"), (uint32_t)c->n_ff);
    ll_gguf_set_u32(g, KEY("attention.head_count"), (uint32_t)c->n_head);
    ll_gguf_set_u32(g, KEY("attention.head_count_kv"), (uint32_t)c->n_head_kv);
    ll_gguf_set_u32(g, KEY("rope.dimension_count"), (uint32_t)c->n_rot);
    ll_gguf_set_u32(g, KEY("context_length"), 256);
    ll_gguf_set_f32(g, KEY("rope.freq_base"), c->rope_base);
    ll_gguf_set_f32(g, KEY("attention.layer_norm_rms_epsilon"), c->eps);
#undef KEY
    rm_vocab(g, c->n_vocab);
    uint64_t rng = seed;
    int hd = c->n_embd / c->n_head, kvd = c->n_head_kv * hd;
    float s_in = 1.5f / sqrtf((float)c->n_embd), s_ff = 1.5f / sqrtf((float)c->n_ff);
    rm_tensor(&rm, &rng, "token_embd.weight", c->wtype, c->n_embd, c->n_vocab, 1.0f, 0);
    for (int l = 0; l < c->n_layer; l++) {
        char n[64];
#define T(name, type, a, b, sc, off) (snprintf(n, sizeof n, "blk.%d.%s", l, name), rm_tensor(&rm, &rng, n, type, a, b, sc, off))
        T("attn_norm.weight", LL_TYPE_F32, c->n_embd, 1, 0.4f, 1.0f);
        T("attn_q.weight", c->wtype, c->n_embd, c->n_embd, 2 * s_in, 0);
        T("attn_k.weight", c->wtype, c->n_embd, kvd, 2 * s_in, 0);
        T("attn_v.weight", c->wtype, c->n_embd, kvd, s_in, 0);
        T("attn_output.weight", c->wtype, c->n_embd, c->n_embd, s_in, 0);
        if (c->bias) {
            T("attn_q.bias", LL_TYPE_F32, c->n_embd, 1, 0.3f, 0);
            T("attn_k.bias", LL_TYPE_F32, kvd, 1, 0.3f, 0);
            T("attn_v.bias", LL_TYPE_F32, kvd, 1, 0.3f, 0);
        }
        T("ffn_norm.weight", LL_TYPE_F32, c->n_embd, 1, 0.4f, 1.0f);
        T("ffn_gate.weight", c->wtype, c->n_embd, c->n_ff, s_in, 0);
        T("ffn_down.weight", c->wtype, c->n_ff, c->n_embd, s_ff, 0);
        T("ffn_up.weight", c->wtype, c->n_embd, c->n_ff, s_in, 0);
#undef T
    }
    rm_tensor(&rm, &rng, "output_norm.weight", LL_TYPE_F32, c->n_embd, 1, 0.4f, 1.0f);
    if (!c->tied) rm_tensor(&rm, &rng, "output.weight", c->wtype, c->n_embd, c->n_vocab, 2 * s_in, 0);
    if (c->rope_freqs) rm_tensor(&rm, &rng, "rope_freqs.weight", LL_TYPE_F32, c->n_rot / 2, 1, 0.9f, 2.0f);
    return rm;
}

// ---- the float64 reference ------------------------------------------------------------------------------
static double *ref_w(const ll_gguf *g, const char *name, int64_t *n_out) {
    const ll_gguf_tensor *t = ll_gguf_find_tensor(g, name);
    if (!t) return NULL;
    int64_t n = t->ne[0] * t->ne[1];
    float *f = malloc((size_t)n * sizeof *f);
    ll_type_get(t->type)->to_float(t->data, f, n);
    double *d = malloc((size_t)n * sizeof *d);
    for (int64_t i = 0; i < n; i++) d[i] = f[i];
    free(f);
    if (n_out) *n_out = n;
    return d;
}

static void ref_matvec(const double *W, const double *x, double *y, int n_in, int n_out) {
    for (int o = 0; o < n_out; o++) {
        double s = 0;
        for (int i = 0; i < n_in; i++) s += W[(size_t)o * n_in + i] * x[i];
        y[o] = s;
    }
}

static void ref_rmsnorm(double *y, const double *x, const double *w, int n, double eps) {
    double ss = 0;
    for (int i = 0; i < n; i++) ss += x[i] * x[i];
    double sc = 1.0 / sqrt(ss / n + eps);
    for (int i = 0; i < n; i++) y[i] = x[i] * sc * w[i];
}

static void ref_rope(double *v, int pos, int n_rot, double base, bool neox, const double *ff) {
    for (int j = 0; j < n_rot / 2; j++) {
        double th = pos * pow(base, -2.0 * j / n_rot) / (ff ? ff[j] : 1.0);
        int a = neox ? j : 2 * j, b = neox ? j + n_rot / 2 : 2 * j + 1;
        double x0 = v[a], x1 = v[b];
        v[a] = x0 * cos(th) - x1 * sin(th);
        v[b] = x0 * sin(th) + x1 * cos(th);
    }
}

// Logits (n, n_vocab) for tokens 0..n-1 from scratch: every layer sees all previous positions.
static double *ref_forward(const ll_gguf *g, const rand_cfg *c, const int32_t *ids, int n) {
    int d = c->n_embd, hd = d / c->n_head, kvd = c->n_head_kv * hd, group = c->n_head / c->n_head_kv;
    bool neox = !strcmp(c->arch, "qwen2");
    double *x = calloc((size_t)n * d, sizeof *x), *emb = ref_w(g, "token_embd.weight", NULL);
    for (int t = 0; t < n; t++) memcpy(x + (size_t)t * d, emb + (size_t)ids[t] * d, (size_t)d * sizeof *x);
    double *ff = c->rope_freqs ? ref_w(g, "rope_freqs.weight", NULL) : NULL;
    double *xb = malloc((size_t)d * sizeof *xb), *q = malloc((size_t)n * d * sizeof *q);
    double *K = malloc((size_t)n * kvd * sizeof *K), *V = malloc((size_t)n * kvd * sizeof *V);
    double *att = malloc((size_t)n * d * sizeof *att), *h1 = malloc((size_t)c->n_ff * sizeof *h1);
    double *h2 = malloc((size_t)c->n_ff * sizeof *h2), *tmp = malloc((size_t)d * sizeof *tmp), *sc = malloc((size_t)n * sizeof *sc);
    for (int l = 0; l < c->n_layer; l++) {
        char nm[64];
#define W(s) (snprintf(nm, sizeof nm, "blk.%d.%s", l, s), ref_w(g, nm, NULL))
        double *an = W("attn_norm.weight"), *wq = W("attn_q.weight"), *wk = W("attn_k.weight"), *wv = W("attn_v.weight"),
               *wo = W("attn_output.weight"), *fn = W("ffn_norm.weight"), *wg = W("ffn_gate.weight"),
               *wd = W("ffn_down.weight"), *wu = W("ffn_up.weight"), *bq = W("attn_q.bias"), *bk = W("attn_k.bias"),
               *bv = W("attn_v.bias");
#undef W
        for (int t = 0; t < n; t++) {
            ref_rmsnorm(xb, x + (size_t)t * d, an, d, c->eps);
            ref_matvec(wq, xb, q + (size_t)t * d, d, d);
            ref_matvec(wk, xb, K + (size_t)t * kvd, d, kvd);
            ref_matvec(wv, xb, V + (size_t)t * kvd, d, kvd);
            for (int i = 0; bq && i < d; i++) q[(size_t)t * d + i] += bq[i];
            for (int i = 0; bk && i < kvd; i++) K[(size_t)t * kvd + i] += bk[i], V[(size_t)t * kvd + i] += bv[i];
            for (int h = 0; h < c->n_head; h++) ref_rope(q + (size_t)t * d + h * hd, t, c->n_rot, c->rope_base, neox, ff);
            for (int h = 0; h < c->n_head_kv; h++) ref_rope(K + (size_t)t * kvd + h * hd, t, c->n_rot, c->rope_base, neox, ff);
        }
        for (int t = 0; t < n; t++) {
            for (int h = 0; h < c->n_head; h++) {
                const double *qh = q + (size_t)t * d + h * hd;
                int kh = h / group;
                double mx = -INFINITY, sum = 0;
                for (int s = 0; s <= t; s++) {
                    double dot = 0;
                    for (int i = 0; i < hd; i++) dot += qh[i] * K[(size_t)s * kvd + kh * hd + i];
                    sc[s] = dot / sqrt((double)hd);
                    mx = fmax(mx, sc[s]);
                }
                for (int s = 0; s <= t; s++) sum += (sc[s] = exp(sc[s] - mx));
                for (int i = 0; i < hd; i++) {
                    double o = 0;
                    for (int s = 0; s <= t; s++) o += sc[s] / sum * V[(size_t)s * kvd + kh * hd + i];
                    att[(size_t)t * d + h * hd + i] = o;
                }
            }
        }
        for (int t = 0; t < n; t++) {
            double *xt = x + (size_t)t * d;
            ref_matvec(wo, att + (size_t)t * d, tmp, d, d);
            for (int i = 0; i < d; i++) xt[i] += tmp[i];
            ref_rmsnorm(xb, xt, fn, d, c->eps);
            ref_matvec(wg, xb, h1, d, c->n_ff);
            ref_matvec(wu, xb, h2, d, c->n_ff);
            for (int i = 0; i < c->n_ff; i++) h1[i] = h1[i] / (1 + exp(-h1[i])) * h2[i];
            ref_matvec(wd, h1, tmp, c->n_ff, d);
            for (int i = 0; i < d; i++) xt[i] += tmp[i];
        }
        free(an), free(wq), free(wk), free(wv), free(wo), free(fn), free(wg), free(wd), free(wu), free(bq), free(bk), free(bv);
    }
    double *on = ref_w(g, "output_norm.weight", NULL), *out = c->tied ? emb : ref_w(g, "output.weight", NULL);
    double *logits = malloc((size_t)n * c->n_vocab * sizeof *logits);
    for (int t = 0; t < n; t++) {
        ref_rmsnorm(xb, x + (size_t)t * d, on, d, c->eps);
        ref_matvec(out, xb, logits + (size_t)t * c->n_vocab, d, c->n_vocab);
    }
    if (!c->tied) free(out);
    free(on), free(emb), free(ff), free(x), free(xb), free(q), free(K), free(V), free(att), free(h1), free(h2), free(tmp), free(sc);
    return logits;
}

static double rel_l2_d(const float *a, const double *b, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) num += (a[i] - b[i]) * (a[i] - b[i]), den += b[i] * b[i];
    return sqrt(num / den);
}

// The engine three ways (one batch, one token at a time, batches of 3) against the reference.
static void check_ref(const rand_cfg *cfg, double tol) {
    rand_model rm = rm_build(cfg, 42);
    double *ref;
    enum { N = 11 };
    int32_t ids[N];
    uint64_t rng = 7;
    for (int i = 0; i < N; i++) ids[i] = (int32_t)(tu_rng_u64(&rng) % (uint64_t)cfg->n_vocab);
    ref = ref_forward(rm.g, cfg, ids, N);
    ll_error err = {0};
    ll_model *m;
    ll_model_params mp = ll_model_default_params();
    mp.n_threads = 2;
    if (ll_model_from_gguf(rm.g, &mp, &m, &err) != LL_OK) fail_msg("%s", err.message);
    int nv = cfg->n_vocab;
    float *got = malloc((size_t)N * nv * sizeof *got);
    for (int mode = 0; mode < 3; mode++) {
        ll_context_params cp = ll_context_default_params();
        cp.n_ctx = 64;
        cp.all_logits = true;
        cp.cache_type = LL_CACHE_F32; // the float64 reference keeps K and V unrounded
        cp.n_batch = mode == 2 ? 3 : 16;
        cp.n_threads = mode == 1 ? 1 : 2;
        ll_context *c;
        if (ll_context_init(m, &cp, &c, &err) != LL_OK) fail_msg("%s", err.message);
        tu_poison(got, (size_t)N * nv);
        if (mode == 0) {
            assert_int_equal(ll_eval(c, ids, N, true, &err), LL_OK);
            for (int t = 0; t < N; t++) memcpy(got + (size_t)t * nv, ll_logits(c, t), (size_t)nv * 4);
        } else {
            int step = mode == 1 ? 1 : 3;
            for (int t = 0; t < N; t += step) {
                int k = N - t < step ? N - t : step;
                assert_int_equal(ll_eval(c, ids + t, k, true, &err), LL_OK);
                for (int j = 0; j < k; j++) memcpy(got + (size_t)(t + j) * nv, ll_logits(c, j), (size_t)nv * 4);
            }
        }
        assert_int_equal(tu_count_nonfinite(got, (size_t)N * nv), 0);
        double r = rel_l2_d(got, ref, (size_t)N * nv);
        printf("# note: %s %s mode %d: rel L2 vs float64 reference %.3g (tolerance %.1g)\n", cfg->arch,
               ll_type_name(cfg->wtype), mode, r, tol);
        assert_true(r <= tol);
        ll_context_free(c);
    }
    free(got);
    free(ref);
    ll_model_free(m); // frees the gguf too
    for (int i = 0; i < rm.n_bufs; i++) free(rm.bufs[i]);
    free(rm.bufs);
}

// The kernels keep activations in f32 for every weight type: ~3e-7 measured; 1e-4 leaves room for
// accumulation-order changes, while one wrong element or a misplaced rotation gives > 1e-2.
static void test_ref_llama_f32_gqa(void **state) {
    rand_cfg c = {"llama", 64, 2, 8, 2, 96, 300, 8, LL_TYPE_F32, false, false, false, 10000.0f, 1e-5f};
    check_ref(&c, 2e-5);
}

static void test_ref_llama_f16_mqa_partial_rope(void **state) {
    rand_cfg c = {"llama", 48, 3, 4, 1, 80, 280, 6, LL_TYPE_F16, false, false, false, 500000.0f, 1e-6f};
    check_ref(&c, 1e-4);
}

static void test_ref_qwen2_bf16_bias_tied(void **state) {
    rand_cfg c = {"qwen2", 64, 2, 4, 2, 64, 270, 16, LL_TYPE_BF16, true, true, false, 1e6f, 1e-6f};
    check_ref(&c, 1e-4);
}

static void test_ref_llama_rope_freqs_mha(void **state) {
    rand_cfg c = {"llama", 32, 2, 4, 4, 40, 260, 8, LL_TYPE_F32, true, false, true, 10000.0f, 1e-5f};
    check_ref(&c, 2e-5);
}

// Bad calls are refused with a message, never a crash: out-of-range ids, context overflow, too many logits.
static void test_ref_context_errors(void **state) {
    rand_cfg cfg = {"llama", 32, 1, 4, 2, 40, 260, 8, LL_TYPE_F32, false, false, false, 10000.0f, 1e-5f};
    rand_model rm = rm_build(&cfg, 1);
    ll_error err = {0};
    ll_model *m;
    assert_int_equal(ll_model_from_gguf(rm.g, NULL, &m, &err), LL_OK);
    ll_context_params cp = ll_context_default_params();
    cp.n_ctx = 8;
    ll_context *c;
    assert_int_equal(ll_context_init(m, &cp, &c, &err), LL_OK);
    int32_t bad = 260, ok[9] = {1, 5, 6, 7, 8, 9, 10, 11, 12};
    assert_int_equal(ll_eval(c, &bad, 1, false, &err), LL_ERR_ARG);
    assert_non_null(strstr(err.message, "outside the vocabulary"));
    assert_int_equal(ll_eval(c, ok, 9, false, &err), LL_ERR_ARG);
    assert_non_null(strstr(err.message, "context"));
    assert_int_equal(ll_eval(c, ok, 3, true, &err), LL_ERR_ARG); // context made without all_logits
    assert_int_equal(ll_eval(c, ok, 8, false, &err), LL_OK);
    assert_int_equal(ll_eval(c, ok, 1, false, &err), LL_ERR_ARG); // full
    ll_context_truncate(c, 4);
    assert_int_equal(ll_context_n_past(c), 4);
    assert_int_equal(ll_eval(c, ok, 1, false, &err), LL_OK);
    ll_context_free(c);
    ll_model_free(m);
    for (int i = 0; i < rm.n_bufs; i++) free(rm.bufs[i]);
    free(rm.bufs);
}
