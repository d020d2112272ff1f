// test_quantize.c — the file quantizer against llama-quantize: every tensor's type, size and sha256 from the
// golden tensors.tsv files, the mix rules on synthetic layer counts, refusals, atomic output, thread invariance.
#include "testutil.h"

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/sha256.h"
#include "quant/quantize.h"

// ---- helpers --------------------------------------------------------------------------------------------------
static char g_dir[256]; // a temporary directory for this run's outputs

static const char *tmp_path(const char *name) {
    static char buf[4][512];
    static int slot;
    char *b = buf[slot++ & 3];
    snprintf(b, sizeof buf[0], "%s/%s", g_dir, name);
    return b;
}

static int setup_dir(void **state) {
    (void)state;
    snprintf(g_dir, sizeof g_dir, "/tmp/llmlab-test-quantize.XXXXXX");
    return mkdtemp(g_dir) ? 0 : -1;
}

static int teardown_dir(void **state) {
    (void)state;
    DIR *d = opendir(g_dir);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d)))
            if (e->d_name[0] != '.') unlink(tmp_path(e->d_name));
        closedir(d);
    }
    rmdir(g_dir);
    return 0;
}

// Files in the temporary directory whose name starts with prefix (outputs and OUT.tmp.PID leftovers).
static int count_files(const char *prefix) {
    DIR *d = opendir(g_dir);
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d)))
        n += strncmp(e->d_name, prefix, strlen(prefix)) == 0;
    if (d) closedir(d);
    return n;
}

// Under an emulator (run.sh sets LLMLAB_EXEC, e.g. qemu-aarch64) the 39 MB tiny-llama runs are left out: the
// scalar K-quant search is too slow there. stories260K and the mix-rule tests still run.
static bool emulated(void) {
    const char *e = getenv("LLMLAB_EXEC");
    return e && *e;
}

static ll_quantize_params params(ll_ftype f) {
    ll_quantize_params p = ll_quantize_default_params();
    p.ftype = f;
    p.n_threads = 2;
    return p;
}

typedef struct tsv_row {
    char name[96], type[16], sha[65];
    unsigned long long n_bytes;
} tsv_row;

// tensors.tsv: a header, then name, type, n_bytes, sha256, ... per tensor in the quantized file's order.
static int read_tsv(const char *path, tsv_row **out) {
    char *text = tu_read_file(path, NULL);
    assert_non_null(text);
    int cap = 64, n = 0;
    tsv_row *rows = calloc((size_t)cap, sizeof *rows);
    char *save = NULL;
    strtok_r(text, "\n", &save); // header
    for (char *line = strtok_r(NULL, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        if (n == cap) rows = realloc(rows, (size_t)(cap *= 2) * sizeof *rows);
        tsv_row *r = &rows[n];
        if (sscanf(line, "%95[^\t]\t%15[^\t]\t%llu\t%64[0-9a-f]", r->name, r->type, &r->n_bytes, r->sha) == 4) n++;
    }
    free(text);
    *out = rows;
    return n;
}

// Compare a written file against a golden TSV: same tensors in the same order, type, bytes and sha256.
static int check_against_tsv(const char *out_path, const char *tsv_rel, const char *label) {
    const char *tsv = tu_shared(tsv_rel);
    if (!tsv) fail_msg("%s missing", tsv_rel);
    tsv_row *rows;
    int n = read_tsv(tsv, &rows), bad = 0;
    ll_gguf *g;
    ll_error err;
    if (ll_gguf_open(&g, out_path, &err) != LL_OK) fail_msg("%s", err.message);
    assert_int_equal((int)g->n_tensors, n);
    for (int i = 0; i < n; i++) {
        const ll_gguf_tensor *t = &g->tensors[i];
        uint8_t dig[32];
        char hex[65];
        ll_sha256_hash(t->data, (size_t)t->nbytes, dig);
        ll_sha256_hex(dig, hex);
        bool ok = !strcmp(t->name, rows[i].name) && !strcmp(ll_type_name(t->type), rows[i].type) &&
                  t->nbytes == rows[i].n_bytes && !strcmp(hex, rows[i].sha);
        if (!ok) {
            printf("# %s: tensor %d is %s %s %llu %.12s.., golden %s %s %llu %.12s..\n", label, i, t->name,
                   ll_type_name(t->type), (unsigned long long)t->nbytes, hex, rows[i].name, rows[i].type,
                   rows[i].n_bytes, rows[i].sha);
            bad++;
        }
    }
    printf("# note: %s: %d/%d tensors identical to llama-quantize's\n", label, n - bad, n);
    ll_gguf_free(g);
    free(rows);
    return bad;
}

static uint32_t kv_u32(const char *path, const char *key) {
    ll_gguf *g;
    ll_error err;
    uint32_t v = 0xffffffffu;
    if (ll_gguf_open(&g, path, &err) != LL_OK) fail_msg("%s", err.message);
    assert_int_equal(ll_gguf_get_u32(g, key, &v, &err), LL_OK);
    ll_gguf_free(g);
    return v;
}

static void file_sha(const char *path, char hex[65]) {
    size_t n = 0;
    char *b = tu_read_file(path, &n);
    assert_non_null(b);
    uint8_t d[32];
    ll_sha256_hash(b, n, d);
    ll_sha256_hex(d, hex);
    free(b);
}

// ---- golden: tiny-llama F16 to the five mixes llama-quantize was run with ---------------------------------------
static void test_golden_tiny_llama(void **state) {
    (void)state;
    if (emulated()) TU_SKIP("tiny-llama quantization is left out under an emulator (too slow there)");
    TU_NEED_SHARED(src, "golden/tiny-llama/tiny-llama-f16.gguf");
    static const struct { const char *name; ll_ftype f; } mixes[] = {
        {"Q8_0", LL_FTYPE_Q8_0}, {"Q4_0", LL_FTYPE_Q4_0}, {"Q4_K_M", LL_FTYPE_Q4_K_M},
        {"Q5_K_M", LL_FTYPE_Q5_K_M}, {"Q6_K", LL_FTYPE_Q6_K},
    };
    int bad = 0;
    for (size_t m = 0; m < sizeof mixes / sizeof mixes[0]; m++) {
        char rel[128], label[64];
        const char *out = tmp_path("tiny.gguf");
        ll_quantize_params p = params(mixes[m].f);
        ll_quantize_stats st;
        ll_error err;
        if (ll_quantize_file(src, out, &p, &st, &err) != LL_OK) fail_msg("%s: %s", mixes[m].name, err.message);
        assert_int_equal(st.n_tensors, 39);
        snprintf(rel, sizeof rel, "golden/tiny-llama/tiny-llama-%s.tensors.tsv", mixes[m].name);
        snprintf(label, sizeof label, "tiny-llama %s", mixes[m].name);
        bad += check_against_tsv(out, rel, label);
        assert_int_equal(kv_u32(out, "general.file_type"), (uint32_t)mixes[m].f);
        assert_int_equal(kv_u32(out, "general.quantization_version"), 2);
        unlink(out);
    }
    assert_int_equal(bad, 0);
    // llama.cpp's ftype numbers for the file types it writes (llama.h).
    assert_int_equal(LL_FTYPE_Q8_0, 7);
    assert_int_equal(LL_FTYPE_Q4_0, 2);
    assert_int_equal(LL_FTYPE_Q4_K_M, 15);
    assert_int_equal(LL_FTYPE_Q5_K_M, 17);
    assert_int_equal(LL_FTYPE_Q6_K, 18);
}

// ---- golden: stories260K (F32 GGUF and the llama2.c checkpoint) with --tensor-type ffn_down=f16 ----------------
static void test_golden_stories260k(void **state) {
    (void)state;
    TU_NEED_SHARED(gguf, "golden/stories260K/stories260K.gguf");
    TU_NEED_SHARED(bin, "golden/stories260K/stories260K.bin");
    TU_NEED_SHARED(tok, "golden/stories260K/tok512.bin");
    ll_quant_override ov = {"ffn_down", LL_TYPE_F16};
    static const struct { const char *name; ll_ftype f; } mixes[] = {{"Q8_0", LL_FTYPE_Q8_0}, {"Q4_0", LL_FTYPE_Q4_0}};
    int bad = 0;
    for (size_t m = 0; m < 2; m++) {
        char rel[128], label[64];
        snprintf(rel, sizeof rel, "golden/stories260K/stories260K-%s.tensors.tsv", mixes[m].name);
        ll_quantize_params p = params(mixes[m].f);
        p.overrides = &ov;
        p.n_overrides = 1;
        p.tokenizer_path = tok;
        ll_error err;
        const char *out = tmp_path("s.gguf");
        if (ll_quantize_file(gguf, out, &p, NULL, &err) != LL_OK) fail_msg("%s", err.message);
        snprintf(label, sizeof label, "stories260K.gguf %s", mixes[m].name);
        bad += check_against_tsv(out, rel, label);
        // From the GGUF the whole file is llama-quantize's, byte for byte (same KVs, order and padding).
        char want[65], got[65], grel[128];
        snprintf(grel, sizeof grel, "golden/stories260K/stories260K-%s.gguf", mixes[m].name);
        const char *golden = tu_shared(grel);
        if (golden) {
            file_sha(golden, want);
            file_sha(out, got);
            assert_string_equal(got, want);
        }
        const char *out2 = tmp_path("s-bin.gguf");
        if (ll_quantize_file(bin, out2, &p, NULL, &err) != LL_OK) fail_msg("%s", err.message);
        snprintf(label, sizeof label, "stories260K.bin %s", mixes[m].name);
        bad += check_against_tsv(out2, rel, label);
        unlink(out);
        unlink(out2);
    }
    assert_int_equal(bad, 0);
}

// ---- the mix rules on built models (independent reference: llama.cpp's rules worked out by hand) ---------------
// A llama-shaped GGUF header without data: n_layer blocks of the 7 matrices + 2 norms, optional output.weight.
static ll_gguf *fake_model(int n_layer, int64_t d, int64_t ff, bool with_output) {
    ll_gguf *g = ll_gguf_new("fake.gguf");
    ll_gguf_set_str(g, "general.architecture", "llama");
    ll_gguf_set_u32(g, "llama.block_count", (uint32_t)n_layer);
    ll_error err;
    int64_t emb[2] = {d, 1000}, vec[1] = {d};
    assert_int_equal(ll_gguf_add_tensor(g, "token_embd.weight", LL_TYPE_F16, 2, emb, NULL, &err), LL_OK);
    if (with_output) assert_int_equal(ll_gguf_add_tensor(g, "output.weight", LL_TYPE_F16, 2, emb, NULL, &err), LL_OK);
    assert_int_equal(ll_gguf_add_tensor(g, "output_norm.weight", LL_TYPE_F32, 1, vec, NULL, &err), LL_OK);
    for (int il = n_layer - 1; il >= 0; il--) { // reverse file order: the plan sorts by layer number
        static const char *mats[] = {"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"};
        for (int k = 0; k < 7; k++) {
            char n[64];
            int64_t ne[2] = {k == 6 ? ff : d, k == 6 ? d : k >= 4 ? ff : d};
            snprintf(n, sizeof n, "blk.%d.%s.weight", il, mats[k]);
            assert_int_equal(ll_gguf_add_tensor(g, n, LL_TYPE_F16, 2, ne, NULL, &err), LL_OK);
        }
        char n[64];
        snprintf(n, sizeof n, "blk.%d.attn_norm.weight", il);
        assert_int_equal(ll_gguf_add_tensor(g, n, LL_TYPE_F32, 1, vec, NULL, &err), LL_OK);
    }
    return g;
}

static const char *type_of(const ll_quant_choice *c, int n, const char *name) {
    for (int i = 0; i < n; i++)
        if (!strcmp(c[i].src->name, name)) return ll_type_name(c[i].type);
    fail_msg("no tensor %s in the plan", name);
    return NULL;
}

static void test_mix_rules(void **state) {
    (void)state;
    ll_error err;
    ll_quant_choice *c;
    // 16 layers, Q4_K_M: use_more_bits = i < 2 || i >= 14 || (i - 2) % 3 == 2 -> layers 0 1 4 7 10 13 14 15.
    ll_gguf *g = fake_model(16, 256, 512, true);
    ll_quantize_params p = params(LL_FTYPE_Q4_K_M);
    assert_int_equal(ll_quantize_plan(g, &p, &c, &err), LL_OK);
    int n = (int)g->n_tensors;
    const char *want6 = "1100100100100111";
    for (int il = 0; il < 16; il++) {
        char a[64], b[64], q[64];
        snprintf(a, sizeof a, "blk.%d.attn_v.weight", il);
        snprintf(b, sizeof b, "blk.%d.ffn_down.weight", il);
        snprintf(q, sizeof q, "blk.%d.attn_q.weight", il);
        const char *w = want6[il] == '1' ? "Q6_K" : "Q4_K";
        assert_string_equal(type_of(c, n, a), w);
        assert_string_equal(type_of(c, n, b), w);
        assert_string_equal(type_of(c, n, q), "Q4_K");
    }
    assert_string_equal(type_of(c, n, "output.weight"), "Q6_K");
    assert_string_equal(type_of(c, n, "token_embd.weight"), "Q4_K");
    assert_string_equal(type_of(c, n, "output_norm.weight"), "F32");
    // Output order: non-block tensors by name, then layers 0..15 (not file order), by name within a layer.
    assert_string_equal(c[0].src->name, "output.weight");
    assert_string_equal(c[3].src->name, "blk.0.attn_k.weight");
    assert_string_equal(c[n - 1].src->name, "blk.15.ffn_up.weight");
    free(c);
    // Q4_K_S: attn_v of the first 4 layers and ffn_down of the first n/8 (2) at Q5_K.
    p.ftype = LL_FTYPE_Q4_K_S;
    assert_int_equal(ll_quantize_plan(g, &p, &c, &err), LL_OK);
    assert_string_equal(type_of(c, n, "blk.3.attn_v.weight"), "Q5_K");
    assert_string_equal(type_of(c, n, "blk.4.attn_v.weight"), "Q4_K");
    assert_string_equal(type_of(c, n, "blk.1.ffn_down.weight"), "Q5_K");
    assert_string_equal(type_of(c, n, "blk.2.ffn_down.weight"), "Q4_K");
    free(c);
    // Q8_0 keeps output at Q8_0; F16 converts every matrix (norms stay F32) with no mix.
    p.ftype = LL_FTYPE_Q8_0;
    assert_int_equal(ll_quantize_plan(g, &p, &c, &err), LL_OK);
    assert_string_equal(type_of(c, n, "output.weight"), "Q8_0");
    free(c);
    p.ftype = LL_FTYPE_BF16;
    assert_int_equal(ll_quantize_plan(g, &p, &c, &err), LL_OK);
    assert_string_equal(type_of(c, n, "output.weight"), "BF16");
    assert_string_equal(type_of(c, n, "blk.0.attn_norm.weight"), "F32");
    free(c);
    ll_gguf_free(g);
}

// Tied embeddings and rows that fit no 256-block: token_embd takes output's rule, which picks Q8_0 at once for
// d = 96; Q4_K matrices fall back to Q5_0, Q5_K to Q5_1, Q6_K to Q8_0; ffn_down of 100 columns to F16.
static void test_mix_fallbacks(void **state) {
    (void)state;
    ll_error err;
    ll_quant_choice *c;
    ll_gguf *g = fake_model(2, 96, 100, false);
    int n = (int)g->n_tensors;
    ll_quantize_params p = params(LL_FTYPE_Q4_K_M);
    assert_int_equal(ll_quantize_plan(g, &p, &c, &err), LL_OK);
    assert_string_equal(type_of(c, n, "token_embd.weight"), "Q8_0");
    assert_string_equal(type_of(c, n, "blk.0.attn_q.weight"), "Q5_0");
    // 2 layers: use_more_bits is true for layer 1 only (1 >= 7*2/8): Q6_K, which falls back to Q8_0.
    assert_string_equal(type_of(c, n, "blk.0.attn_v.weight"), "Q5_0");
    assert_string_equal(type_of(c, n, "blk.1.attn_v.weight"), "Q8_0");
    assert_string_equal(type_of(c, n, "blk.0.ffn_down.weight"), "F16");
    for (int i = 0; i < n; i++) // the tied embedding took the output rule's Q8_0 directly: not a fallback
        assert_true(c[i].fallback == (strstr(c[i].src->name, "blk.") && !strstr(c[i].src->name, "norm")));
    free(c);
    p.ftype = LL_FTYPE_Q5_K_S;
    assert_int_equal(ll_quantize_plan(g, &p, &c, &err), LL_OK);
    assert_string_equal(type_of(c, n, "blk.1.attn_k.weight"), "Q5_1");
    free(c);
    // Overrides: the first matching pattern decides.
    ll_quant_override ov[2] = {{"blk\\.1\\..*attn", LL_TYPE_Q8_0}, {"attn_q", LL_TYPE_F16}};
    p.ftype = LL_FTYPE_Q4_0;
    p.overrides = ov;
    p.n_overrides = 2;
    assert_int_equal(ll_quantize_plan(g, &p, &c, &err), LL_OK);
    assert_string_equal(type_of(c, n, "blk.1.attn_q.weight"), "Q8_0");
    assert_string_equal(type_of(c, n, "blk.0.attn_q.weight"), "F16");
    assert_string_equal(type_of(c, n, "blk.0.attn_k.weight"), "Q4_0");
    free(c);
    ov[0].pattern = "(unclosed";
    assert_int_equal(ll_quantize_plan(g, &p, &c, &err), LL_ERR_ARG);
    assert_non_null(strstr(err.message, "(unclosed"));
    ov[0] = (ll_quant_override){"x", LL_TYPE_Q2_K}; // a type llmlab cannot write
    assert_int_equal(ll_quantize_plan(g, &p, &c, &err), LL_ERR_ARG);
    ll_gguf_free(g);
}

// Tied embeddings on a real file: tiny-qwen2 has no output.weight, token_embd (128 wide) -> Q6_K -> Q8_0.
static void test_tied_qwen2(void **state) {
    (void)state;
    TU_NEED_SHARED(src, "golden/tiny-qwen2/tiny-qwen2-f16.gguf");
    ll_gguf *g;
    ll_error err;
    ll_quant_choice *c;
    if (ll_gguf_open(&g, src, &err) != LL_OK) fail_msg("%s", err.message);
    ll_quantize_params p = params(LL_FTYPE_Q4_0);
    assert_int_equal(ll_quantize_plan(g, &p, &c, &err), LL_OK);
    int n = (int)g->n_tensors;
    assert_string_equal(type_of(c, n, "token_embd.weight"), "Q8_0");
    assert_string_equal(type_of(c, n, "blk.0.attn_q.bias"), "F32"); // 1-D: kept
    assert_string_equal(type_of(c, n, "blk.0.attn_q.weight"), "Q4_0");
    free(c);
    ll_gguf_free(g);
}

// ---- names, refusals, atomic output ----------------------------------------------------------------------------
static void test_type_names(void **state) {
    (void)state;
    ll_ftype f;
    assert_true(ll_ftype_from_name("q4_k_m", &f) && f == LL_FTYPE_Q4_K_M);
    assert_true(ll_ftype_from_name("BF16", &f) && f == LL_FTYPE_BF16 && f == 32);
    assert_true(ll_ftype_from_name("Q5_K", &f) && f == LL_FTYPE_Q5_K_M); // llama-quantize's alias
    assert_false(ll_ftype_from_name("Q7_0", &f));
    assert_false(ll_ftype_from_name("Q4_K_L", &f));
    assert_false(ll_ftype_from_name("", &f));
    assert_string_equal(ll_ftype_name(LL_FTYPE_Q5_K_S), "Q5_K_S");
}

static void test_refuse_quantized(void **state) {
    (void)state;
    TU_NEED_SHARED(q4, "golden/stories260K/stories260K-Q4_0.gguf");
    ll_quantize_params p = params(LL_FTYPE_Q8_0);
    ll_error err;
    const char *out = tmp_path("requant.gguf");
    assert_int_equal(ll_quantize_file(q4, out, &p, NULL, &err), LL_ERR_ARG);
    assert_non_null(strstr(err.message, "--allow-requantize"));
    assert_int_equal(count_files("requant"), 0);
    p.allow_requantize = true;
    assert_int_equal(ll_quantize_file(q4, out, &p, NULL, &err), LL_OK);
    ll_gguf *g;
    assert_int_equal(ll_gguf_open(&g, out, &err), LL_OK);
    assert_string_equal(ll_type_name(ll_gguf_find_tensor(g, "blk.0.attn_q.weight")->type), "Q8_0");
    assert_string_equal(ll_type_name(ll_gguf_find_tensor(g, "blk.0.ffn_down.weight")->type), "F16"); // kept
    ll_gguf_free(g);
    unlink(out);
    // The output may not be the input.
    p.allow_requantize = false;
    TU_NEED_SHARED(f32, "golden/stories260K/stories260K.gguf");
    assert_int_equal(ll_quantize_file(f32, f32, &p, NULL, &err), LL_ERR_ARG);
}

// An interrupted run and a run that fails half-way leave no OUT, no temporary file, and an old OUT untouched.
static void test_atomic_output(void **state) {
    (void)state;
    TU_NEED_SHARED(src, "golden/stories260K/stories260K.gguf");
    const char *out = tmp_path("atomic.gguf");
    FILE *f = fopen(out, "wb");
    fputs("old contents", f);
    fclose(f);
    volatile int stop = 1;
    ll_quantize_params p = params(LL_FTYPE_Q4_0);
    p.interrupt = &stop;
    ll_error err;
    assert_int_equal(ll_quantize_file(src, out, &p, NULL, &err), LL_ERR_INTERRUPTED);
    assert_int_equal(count_files("atomic.gguf"), 1); // the old file only, no atomic.gguf.tmp.PID
    char *back = tu_read_file(out, NULL);
    assert_string_equal(back, "old contents");
    free(back);
    unlink(out);

    // A NaN in the last tensor: the failure comes after the header and earlier tensors were written.
    ll_gguf *g = ll_gguf_new("nan.gguf");
    ll_gguf_set_str(g, "general.architecture", "llama");
    float a[64 * 4], b[64 * 4];
    for (int i = 0; i < 64 * 4; i++) a[i] = b[i] = (float)i / 100.0f;
    b[200] = NAN;
    int64_t ne[2] = {64, 4};
    assert_int_equal(ll_gguf_add_tensor(g, "blk.0.attn_q.weight", LL_TYPE_F32, 2, ne, a, &err), LL_OK);
    assert_int_equal(ll_gguf_add_tensor(g, "blk.1.attn_q.weight", LL_TYPE_F32, 2, ne, b, &err), LL_OK);
    const char *nan_in = tmp_path("nan-in.gguf");
    assert_int_equal(ll_gguf_write_file(g, nan_in, &err), LL_OK);
    ll_gguf_free(g);
    p.interrupt = NULL;
    assert_int_equal(ll_quantize_file(nan_in, tmp_path("nan-out.gguf"), &p, NULL, &err), LL_ERR_FORMAT);
    assert_non_null(strstr(err.message, "blk.1.attn_q.weight"));
    assert_int_equal(count_files("nan-out"), 0);
    // A directory that does not exist.
    assert_int_equal(ll_quantize_file(src, "/nonexistent-dir/x.gguf", &p, NULL, &err), LL_ERR_IO);
    // Not a model at all.
    assert_int_not_equal(ll_quantize_file("/nonexistent.gguf", tmp_path("none.gguf"), &p, NULL, &err), LL_OK);
    assert_int_equal(count_files("none"), 0);
}

// Threads split rows; the bytes cannot depend on how many.
static void test_threads_identical(void **state) {
    (void)state;
    const char *src = tu_shared(emulated() ? "golden/stories260K/stories260K.gguf"
                                           : "golden/tiny-llama/tiny-llama-f16.gguf");
    if (!src) TU_SKIP("the source model is not under LLMLAB_SHARED");
    char h1[65], h2[65];
    ll_error err;
    ll_quantize_params p = params(LL_FTYPE_Q5_K_S);
    p.n_threads = 1;
    assert_int_equal(ll_quantize_file(src, tmp_path("t1.gguf"), &p, NULL, &err), LL_OK);
    p.n_threads = 2;
    assert_int_equal(ll_quantize_file(src, tmp_path("t2.gguf"), &p, NULL, &err), LL_OK);
    file_sha(tmp_path("t1.gguf"), h1);
    file_sha(tmp_path("t2.gguf"), h2);
    assert_string_equal(h1, h2);
    unlink(tmp_path("t1.gguf"));
    unlink(tmp_path("t2.gguf"));
}

int main(void) {
    ll_log_set_level(LL_LOG_ERROR); // fallback warnings are expected here
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_type_names),
        cmocka_unit_test(test_mix_rules),
        cmocka_unit_test(test_mix_fallbacks),
        cmocka_unit_test(test_tied_qwen2),
        cmocka_unit_test(test_golden_stories260k),
        cmocka_unit_test(test_refuse_quantized),
        cmocka_unit_test(test_atomic_output),
        cmocka_unit_test(test_golden_tiny_llama),
        cmocka_unit_test(test_threads_identical),
    };
    return cmocka_run_group_tests(tests, setup_dir, teardown_dir);
}
