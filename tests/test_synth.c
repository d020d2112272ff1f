// test_synth.c — presets (parameter counts against the published ones) and `synth`: keys, tokenizer copy,
// tensor order/shapes/types, value scales, exact size prediction, determinism, F32/F16/BF16 consistency,
// and clean failures (missing directory, no room, bad arguments).
#include "testutil.h"

#include <sys/statvfs.h>
#include <unistd.h>

#include "core/half.h"
#include "model/presets.h"
#include "model/synth.h"

static char g_dir[64];

static const char *tmp_path(const char *name) {
    static char buf[4][256];
    static int slot;
    char *b = buf[slot++ & 3];
    snprintf(b, sizeof buf[0], "%s/%s", g_dir, name);
    return b;
}

static int setup(void **state) {
    (void)state;
    snprintf(g_dir, sizeof g_dir, "/tmp/llmlab-synth-XXXXXX");
    return mkdtemp(g_dir) ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    return system(cmd) == 0 ? 0 : -1;
}

static ll_synth_params params(const char *preset, uint32_t type, uint64_t seed) {
    ll_synth_params p = ll_synth_default_params();
    p.preset = preset;
    p.type = type;
    p.seed = seed;
    return p;
}

static ll_gguf *synth_open(const char *path, const ll_synth_params *p) {
    ll_error err;
    uint64_t predicted;
    ll_gguf *plan;
    if (ll_synth_plan(&plan, p, &predicted, &err)) fail_msg("%s", err.message);
    ll_gguf_free(plan);
    if (ll_synth_write(path, p, &err)) fail_msg("%s", err.message);
    ll_gguf *g;
    if (ll_gguf_open(&g, path, &err)) fail_msg("%s", err.message);
    assert_int_equal(g->map->size, predicted); // the disk check's prediction is exact
    return g;
}

static uint32_t get_u32(const ll_gguf *g, const char *key) {
    uint32_t v = 0;
    ll_error err;
    if (ll_gguf_get_u32(g, key, &v, &err)) fail_msg("%s", err.message);
    return v;
}

static float *to_f32(const ll_gguf_tensor *t, size_t *n) {
    *n = (size_t)(t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3]);
    float *x = malloc(*n * sizeof *x);
    const uint16_t *h = t->data;
    for (size_t i = 0; i < *n; i++)
        x[i] = t->type == LL_TYPE_F32 ? ((const float *)t->data)[i]
             : t->type == LL_TYPE_F16 ? ll_fp16_to_fp32(h[i]) : ll_bf16_to_fp32(h[i]);
    return x;
}

// Every tokenizer.* key of the vocab file is in g with the same type and bytes.
static void assert_vocab_copied(const ll_gguf *g, const char *vocab_rel) {
    const char *vp = tu_shared(vocab_rel);
    ll_gguf *v;
    ll_error err;
    assert_int_equal(ll_gguf_open(&v, vp, &err), LL_OK);
    int n = 0;
    for (uint64_t i = 0; i < v->n_kv; i++) {
        const ll_gguf_kv *a = &v->kv[i];
        if (strncmp(a->key, "tokenizer.", 10)) continue;
        const ll_gguf_kv *b = ll_gguf_find(g, a->key);
        if (!b) fail_msg("%s not copied", a->key);
        assert_int_equal(a->type, b->type);
        assert_int_equal(a->arr_n, b->arr_n);
        assert_int_equal(a->nbytes, b->nbytes);
        assert_memory_equal(a->data, b->data, a->nbytes);
        n++;
    }
    assert_true(n >= 5);
    ll_gguf_free(v);
}

// Expected sd of each tensor (golden README section 4 scales) vs the drawn values; norms in [0.8, 1.2].
static void check_values(const ll_gguf *g, bool qwen) {
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const ll_gguf_tensor *t = &g->tensors[i];
        size_t n;
        float *x = to_f32(t, &n);
        assert_int_equal(tu_count_nonfinite(x, n), 0);
        double s = 0, ss = 0, lo = 1e9, hi = -1e9;
        for (size_t k = 0; k < n; k++) s += x[k], ss += (double)x[k] * x[k], lo = fmin(lo, x[k]), hi = fmax(hi, x[k]);
        double mean = s / (double)n, sd = sqrt(ss / (double)n - mean * mean);
        const char *nm = t->name;
        double inv = 1.0 / sqrt((double)t->ne[0]), want;
        if (strstr(nm, "_norm.")) {
            assert_true(lo >= 0.8 && hi < 1.2);
            assert_true(fabs(mean - 1.0) < 0.05);
            free(x);
            continue;
        }
        if (strstr(nm, ".bias")) want = 0.3;
        else if (!strcmp(nm, "token_embd.weight")) want = qwen ? 0.25 : 0.5;
        else if (!strcmp(nm, "output.weight")) want = 2 * inv;
        else if (strstr(nm, "attn_q.") || strstr(nm, "attn_k.")) want = 1.2 * inv;
        else want = inv;
        double tol = n >= 4096 ? 0.05 : 0.35; // small bias vectors: few samples
        if (fabs(sd / want - 1) > tol) fail_msg("%s: sd %g, want %g", nm, sd, want);
        assert_true(fabs(mean) < 4 * want / sqrt((double)n) + 1e-3);
        free(x);
    }
}

static void test_tiny_llama(void **state) {
    (void)state;
    TU_NEED_SHARED(vp, "models/vocab/ggml-vocab-llama-spm.gguf");
    ll_synth_params p = params("tiny", LL_TYPE_F16, 7);
    ll_gguf *g = synth_open(tmp_path("tiny.gguf"), &p);
    ll_str s;
    ll_error err;
    assert_int_equal(ll_gguf_get_str(g, "general.architecture", &s, &err), LL_OK);
    assert_true(ll_str_eq(s, "llama"));
    assert_int_equal(get_u32(g, "general.file_type"), 1);
    assert_int_equal(get_u32(g, "llama.embedding_length"), 64);
    assert_int_equal(get_u32(g, "llama.block_count"), 2);
    assert_int_equal(get_u32(g, "llama.feed_forward_length"), 128);
    assert_int_equal(get_u32(g, "llama.attention.head_count"), 4);
    assert_int_equal(get_u32(g, "llama.attention.head_count_kv"), 2);
    assert_int_equal(get_u32(g, "llama.rope.dimension_count"), 16);
    assert_int_equal(get_u32(g, "llama.vocab_size"), 32000);
    float f;
    assert_int_equal(ll_gguf_get_f32(g, "llama.rope.freq_base", &f, &err), LL_OK);
    assert_true(f == 10000.0f);
    assert_vocab_copied(g, "models/vocab/ggml-vocab-llama-spm.gguf");
    // llama.cpp's order and shapes: token_embd, 9 per block, output_norm, output
    const char *order[] = {"token_embd.weight", "blk.0.attn_norm.weight", "blk.0.attn_q.weight", "blk.0.attn_k.weight",
                           "blk.0.attn_v.weight", "blk.0.attn_output.weight", "blk.0.ffn_norm.weight",
                           "blk.0.ffn_gate.weight", "blk.0.ffn_down.weight", "blk.0.ffn_up.weight"};
    assert_int_equal(g->n_tensors, 1 + 2 * 9 + 2);
    for (int i = 0; i < 10; i++) assert_string_equal(g->tensors[i].name, order[i]);
    assert_string_equal(g->tensors[19].name, "output_norm.weight");
    assert_string_equal(g->tensors[20].name, "output.weight");
    struct { const char *n; int64_t ne0, ne1; uint32_t type; } want[] = {
        {"token_embd.weight", 64, 32000, LL_TYPE_F16}, {"blk.1.attn_norm.weight", 64, 1, LL_TYPE_F32},
        {"blk.1.attn_q.weight", 64, 64, LL_TYPE_F16},  {"blk.1.attn_k.weight", 64, 32, LL_TYPE_F16},
        {"blk.1.attn_v.weight", 64, 32, LL_TYPE_F16},  {"blk.1.attn_output.weight", 64, 64, LL_TYPE_F16},
        {"blk.1.ffn_gate.weight", 64, 128, LL_TYPE_F16}, {"blk.1.ffn_down.weight", 128, 64, LL_TYPE_F16},
        {"blk.1.ffn_up.weight", 64, 128, LL_TYPE_F16}, {"output.weight", 64, 32000, LL_TYPE_F16},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        const ll_gguf_tensor *t = ll_gguf_find_tensor(g, want[i].n);
        assert_non_null(t);
        assert_int_equal(t->ne[0], want[i].ne0);
        assert_int_equal(t->ne[1], want[i].ne1);
        assert_int_equal(t->n_dims, want[i].ne1 > 1 ? 2 : 1);
        assert_int_equal(t->type, want[i].type);
    }
    check_values(g, false);
    ll_gguf_free(g);
}

static void test_tiny_qwen2(void **state) {
    (void)state;
    TU_NEED_SHARED(vp, "models/vocab/ggml-vocab-gpt-2.gguf");
    ll_synth_params p = params("tiny-qwen2", LL_TYPE_BF16, 3);
    ll_gguf *g = synth_open(tmp_path("qwen.gguf"), &p);
    assert_int_equal(get_u32(g, "general.file_type"), 32);
    assert_int_equal(get_u32(g, "qwen2.embedding_length"), 64);
    assert_int_equal(get_u32(g, "qwen2.vocab_size"), 50257);
    float eps;
    ll_error err;
    assert_int_equal(ll_gguf_get_f32(g, "qwen2.attention.layer_norm_rms_epsilon", &eps, &err), LL_OK);
    assert_true(eps == 1e-6f);
    assert_vocab_copied(g, "models/vocab/ggml-vocab-gpt-2.gguf");
    assert_non_null(ll_gguf_find(g, "tokenizer.ggml.merges"));
    assert_int_equal(g->n_tensors, 26); // like the golden tiny-qwen2: tied, q/k/v biases
    assert_null(ll_gguf_find_tensor(g, "output.weight"));
    const ll_gguf_tensor *b = ll_gguf_find_tensor(g, "blk.1.attn_k.bias");
    assert_non_null(b);
    assert_int_equal(b->type, LL_TYPE_F32);
    assert_int_equal(b->ne[0], 32);
    assert_non_null(ll_gguf_find_tensor(g, "blk.0.attn_q.bias"));
    assert_null(ll_gguf_find_tensor(g, "blk.0.attn_output.bias"));
    check_values(g, true);
    ll_gguf_free(g);
}

static char *slurp(const char *path, size_t *n) {
    char *b = tu_read_file(path, n);
    assert_non_null(b);
    return b;
}

// Same seed -> identical bytes; another seed -> same header, different data.
static void test_determinism(void **state) {
    (void)state;
    TU_NEED_SHARED(vp, "models/vocab/ggml-vocab-llama-spm.gguf");
    ll_error err;
    ll_synth_params p = params("tiny", LL_TYPE_F16, 11);
    p.n_layer = 1;
    const char *a = tmp_path("a.gguf"), *b = tmp_path("b.gguf"), *c = tmp_path("c.gguf");
    assert_int_equal(ll_synth_write(a, &p, &err), LL_OK);
    assert_int_equal(ll_synth_write(b, &p, &err), LL_OK);
    p.seed = 12;
    assert_int_equal(ll_synth_write(c, &p, &err), LL_OK);
    size_t na = 0, nb = 0, nc = 0;
    char *da = slurp(a, &na), *db = slurp(b, &nb), *dc = slurp(c, &nc);
    assert_int_equal(na, nb);
    assert_memory_equal(da, db, na);
    assert_int_equal(na, nc);
    size_t first_diff = 0;
    while (first_diff < na && da[first_diff] == dc[first_diff]) first_diff++;
    ll_gguf *g;
    assert_int_equal(ll_gguf_open(&g, a, &err), LL_OK);
    assert_true(first_diff >= g->data_offset && first_diff < na); // metadata equal, data not
    ll_gguf_free(g);
    free(da), free(db), free(dc);
}

// The three float types hold the same draws: F16/BF16 are the F32 values rounded.
static void test_types_consistent(void **state) {
    (void)state;
    TU_NEED_SHARED(vp, "models/vocab/ggml-vocab-llama-spm.gguf");
    ll_synth_params p = params("tiny", LL_TYPE_F32, 5);
    p.n_layer = 1;
    ll_gguf *g32 = synth_open(tmp_path("f32.gguf"), &p);
    p.type = LL_TYPE_F16;
    ll_gguf *g16 = synth_open(tmp_path("f16.gguf"), &p);
    p.type = LL_TYPE_BF16;
    ll_gguf *gbf = synth_open(tmp_path("bf16.gguf"), &p);
    assert_int_equal(get_u32(g32, "general.file_type"), 0);
    for (uint64_t i = 0; i < g32->n_tensors; i++) {
        const ll_gguf_tensor *t = &g32->tensors[i], *h = &g16->tensors[i], *bf = &gbf->tensors[i];
        assert_string_equal(t->name, h->name);
        size_t n = (size_t)(t->ne[0] * t->ne[1]);
        const float *x = t->data;
        if (h->type == LL_TYPE_F32) { // norms stay F32 in every file
            assert_memory_equal(t->data, h->data, n * 4);
            assert_memory_equal(t->data, bf->data, n * 4);
            continue;
        }
        assert_int_equal(h->type, LL_TYPE_F16);
        assert_int_equal(bf->type, LL_TYPE_BF16);
        const uint16_t *hh = h->data, *bb = bf->data;
        for (size_t k = 0; k < n; k++) {
            if (hh[k] != ll_fp32_to_fp16(x[k])) fail_msg("%s[%zu]: f16 differs", t->name, k);
            if (bb[k] != ll_fp32_to_bf16(x[k])) fail_msg("%s[%zu]: bf16 differs", t->name, k);
        }
    }
    ll_gguf_free(g32), ll_gguf_free(g16), ll_gguf_free(gbf);
}

// --layers, --full-vocab at a big preset: planned only (no data written).
static void test_plan_big(void **state) {
    (void)state;
    TU_NEED_SHARED(vp, "models/vocab/ggml-vocab-llama-spm.gguf");
    ll_synth_params p = params("llama3-8b", LL_TYPE_F16, 1);
    p.n_layer = 1;
    p.full_vocab = true;
    ll_gguf *g;
    uint64_t bytes;
    ll_error err;
    assert_int_equal(ll_synth_plan(&g, &p, &bytes, &err), LL_OK);
    assert_int_equal(get_u32(g, "llama.block_count"), 1);
    assert_int_equal(get_u32(g, "llama.vocab_size"), 128256);
    const ll_gguf_tensor *e = ll_gguf_find_tensor(g, "token_embd.weight");
    assert_int_equal(e->ne[0], 4096);
    assert_int_equal(e->ne[1], 128256);
    const ll_gguf_kv *tok = ll_gguf_find(g, "tokenizer.ggml.tokens");
    assert_int_equal(tok->arr_n, 128256);
    ll_str *s = calloc(tok->arr_n, sizeof *s);
    ll_gguf_arr_strings(tok, s);
    assert_true(ll_str_eq(s[1], "<s>"));
    assert_true(ll_str_eq(s[32000], "[PAD32000]"));
    free(s);
    const ll_gguf_kv *ty = ll_gguf_find(g, "tokenizer.ggml.token_type");
    assert_int_equal(ty->arr_n, 128256);
    assert_int_equal(ll_gguf_arr_i64(ty, 128255), 5);
    assert_int_equal(ll_gguf_arr_i64(ty, 1), 3);
    assert_int_equal(ll_gguf_find(g, "tokenizer.ggml.scores")->arr_n, 128256);
    // 2 x embedding + 1 block at F16, norms F32
    uint64_t d = 4096, kv = 1024, ff = 14336, V = 128256;
    uint64_t data = 2 * (2 * V * d + 2 * d * d + 2 * kv * d + 3 * ff * d) + 4 * 3 * d;
    assert_true(bytes > data && bytes < data + 4 * 1024 * 1024);
    ll_gguf_free(g);
    // without --full-vocab: the vocab file's 32000
    p.full_vocab = false;
    assert_int_equal(ll_synth_plan(&g, &p, &bytes, &err), LL_OK);
    assert_int_equal(get_u32(g, "llama.vocab_size"), 32000);
    ll_gguf_free(g);
}

static void test_errors(void **state) {
    (void)state;
    TU_NEED_SHARED(vp, "models/vocab/ggml-vocab-llama-spm.gguf");
    ll_error err = {0};
    ll_synth_params p = params("tiny", LL_TYPE_F16, 1);
    const char *missing = tmp_path("nodir/x.gguf");
    assert_int_equal(ll_synth_write(missing, &p, &err), LL_ERR_IO);
    printf("# note: %s\n", err.message);
    assert_non_null(strstr(err.message, "nodir"));
    assert_int_equal(access(tmp_path("nodir"), F_OK), -1);
    p.preset = "llama9-1t";
    assert_int_equal(ll_synth_write(tmp_path("x.gguf"), &p, &err), LL_ERR_ARG);
    assert_non_null(strstr(err.message, "llama9-1t"));
    p = params("tiny", LL_TYPE_Q4_0, 1);
    assert_int_equal(ll_synth_write(tmp_path("x.gguf"), &p, &err), LL_ERR_ARG);
    p = params("tiny", LL_TYPE_F16, 1);
    p.vocab_path = tmp_path("no-vocab.gguf");
    assert_int_equal(ll_synth_write(tmp_path("x.gguf"), &p, &err), LL_ERR_IO);
    assert_non_null(strstr(err.message, "--vocab"));
    assert_int_equal(access(tmp_path("x.gguf"), F_OK), -1);
    // No room: the full llama3-70b at F32 (~282 GB) is refused before a byte is written, when it cannot fit.
    p = params("llama3-70b", LL_TYPE_F32, 1);
    p.full_vocab = true;
    ll_gguf *g;
    uint64_t need;
    assert_int_equal(ll_synth_plan(&g, &p, &need, &err), LL_OK);
    ll_gguf_free(g);
    struct statvfs st;
    assert_int_equal(statvfs(g_dir, &st), 0);
    if ((uint64_t)st.f_bavail * st.f_frsize >= need) {
        printf("# note: skipped the no-room case: %s has room for %llu bytes\n", g_dir, (unsigned long long)need);
        return;
    }
    assert_int_equal(ll_synth_write(tmp_path("big.gguf"), &p, &err), LL_ERR_IO);
    printf("# note: %s\n", err.message);
    assert_non_null(strstr(err.message, "free"));
    assert_int_equal(access(tmp_path("big.gguf"), F_OK), -1);
}

// Published parameter counts (Hugging Face model cards / safetensors totals).
static void test_presets(void **state) {
    (void)state;
    struct { const char *n; uint64_t params; } want[] = {
        {"llama2-7b", 6738415616ull},   {"mistral-7b", 7241732096ull},  {"llama3-8b", 8030261248ull},
        {"llama-3.2-1b", 1235814400ull}, {"qwen2.5-0.5b", 494032768ull}, {"smollm-135m", 134515008ull},
        {"llama3-70b", 70553706496ull},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        const ll_preset *p = ll_preset_find(want[i].n);
        if (!p) fail_msg("preset %s missing", want[i].n);
        if (ll_preset_params(p) != want[i].params)
            fail_msg("%s: %llu params, want %llu", want[i].n, (unsigned long long)ll_preset_params(p),
                     (unsigned long long)want[i].params);
    }
    int n = 0;
    while (ll_preset_at(n)) {
        const ll_preset *p = ll_preset_at(n++);
        assert_int_equal(p->n_embd % p->n_head, 0);
        assert_int_equal(p->n_head % p->n_head_kv, 0);
        assert_ptr_equal(ll_preset_find(p->name), p);
    }
    assert_true(n >= 9);
    assert_null(ll_preset_find("nope"));
}

// The approximate normal: moments, range, and pieces independent of how the stream is cut.
static void test_normal(void **state) {
    (void)state;
    size_t n = 1 << 20;
    float *x = malloc(n * sizeof *x), y[1000];
    ll_synth_normal(99, 0, x, n);
    double s = 0, ss = 0, s4 = 0, mx = 0;
    for (size_t i = 0; i < n; i++) s += x[i], ss += (double)x[i] * x[i], s4 += pow(x[i], 4), mx = fmax(mx, fabs(x[i]));
    double m = s / (double)n, var = ss / (double)n - m * m;
    assert_true(fabs(m) < 0.005);
    assert_true(fabs(var - 1) < 0.01);
    assert_true(mx <= 3.4642);
    double kurt = s4 / (double)n; // Irwin-Hall(4), standardized: 3 - 1.2/4 = 2.7
    assert_true(fabs(kurt - 2.7) < 0.05);
    ll_synth_normal(99, 0, y, 400);
    ll_synth_normal(99, 400, y + 400, 600);
    assert_memory_equal(x, y, sizeof y);
    ll_synth_normal(100, 0, y, 1000);
    assert_true(memcmp(x, y, sizeof y) != 0);
    free(x);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_presets),
        cmocka_unit_test(test_normal),
        cmocka_unit_test(test_tiny_llama),
        cmocka_unit_test(test_tiny_qwen2),
        cmocka_unit_test(test_determinism),
        cmocka_unit_test(test_types_consistent),
        cmocka_unit_test(test_plan_big),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
