// test_llama2c.c — the llama2.c importer: stories260K.bin + tok512.bin against ggml-org's stories260K.gguf
// (every tensor bit for bit, tokens, scores, types), a version-1 "ak42" file written here, unshared
// classifiers, the written GGUF, and malformed checkpoints/tokenizers each refused with a clear message.
#include "testutil.h"

#include <sys/stat.h>
#include <unistd.h>

#include "formats/gguf.h"
#include "formats/llama2c.h"

static char g_dir[64];

static const char *tmp_path(const char *name) {
    static char buf[4][256];
    static int slot;
    char *b = buf[slot++ & 3];
    snprintf(b, sizeof buf[0], "%s/%s", g_dir, name);
    return b;
}

static void write_bytes(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, n, f), n);
    fclose(f);
}

static int setup(void **state) {
    (void)state;
    snprintf(g_dir, sizeof g_dir, "/tmp/llmlab-l2c-XXXXXX");
    return mkdtemp(g_dir) ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    return system(cmd) == 0 ? 0 : -1;
}

// Every tensor of ref is in got with the same type, shape and bytes; same tensor count.
static void assert_same_tensors(const ll_gguf *got, const ll_gguf *ref) {
    assert_int_equal(got->n_tensors, ref->n_tensors);
    for (uint64_t i = 0; i < ref->n_tensors; i++) {
        const ll_gguf_tensor *r = &ref->tensors[i], *t = ll_gguf_find_tensor(got, r->name);
        if (!t) fail_msg("tensor %s missing", r->name);
        assert_int_equal(t->type, r->type);
        assert_int_equal(t->n_dims, r->n_dims);
        for (int d = 0; d < LL_GGUF_MAX_DIMS; d++) assert_int_equal(t->ne[d], r->ne[d]);
        assert_int_equal(t->nbytes, r->nbytes);
        if (memcmp(t->data, r->data, r->nbytes)) fail_msg("tensor %s differs", r->name);
    }
}

static uint32_t get_u32(const ll_gguf *g, const char *key) {
    uint32_t v = 0;
    ll_error err;
    if (ll_gguf_get_u32(g, key, &v, &err)) fail_msg("%s", err.message);
    return v;
}

// Tokens and scores equal stories260K.gguf's; token types compared and reported.
static void assert_same_vocab(const ll_gguf *got, const ll_gguf *ref) {
    const ll_gguf_kv *tg = ll_gguf_find(got, "tokenizer.ggml.tokens"), *tr = ll_gguf_find(ref, "tokenizer.ggml.tokens");
    assert_non_null(tg);
    assert_int_equal(tg->arr_n, tr->arr_n);
    assert_int_equal(tg->nbytes, tr->nbytes);
    assert_memory_equal(tg->data, tr->data, tr->nbytes); // same strings, same order
    const ll_gguf_kv *sg = ll_gguf_find(got, "tokenizer.ggml.scores"), *sr = ll_gguf_find(ref, "tokenizer.ggml.scores");
    assert_non_null(sg);
    assert_int_equal(sg->arr_type, LL_GGUF_FLOAT32);
    assert_int_equal(sg->arr_n, sr->arr_n);
    assert_memory_equal(sg->data, sr->data, sr->nbytes); // bit-equal, -0.0 included
    const ll_gguf_kv *yg = ll_gguf_find(got, "tokenizer.ggml.token_type"),
                     *yr = ll_gguf_find(ref, "tokenizer.ggml.token_type");
    assert_non_null(yg);
    int diff = 0;
    for (uint64_t i = 0; i < yr->arr_n; i++) diff += ll_gguf_arr_i64(yg, i) != ll_gguf_arr_i64(yr, i);
    printf("# note: token_type differences vs %s: %d of %llu\n", ref->path, diff, (unsigned long long)yr->arr_n);
    assert_int_equal(diff, 0);
    ll_str m;
    ll_error err;
    assert_int_equal(ll_gguf_get_str(got, "tokenizer.ggml.model", &m, &err), LL_OK);
    assert_true(ll_str_eq(m, "llama"));
    assert_int_equal(get_u32(got, "tokenizer.ggml.bos_token_id"), 1);
    assert_int_equal(get_u32(got, "tokenizer.ggml.eos_token_id"), 2);
    assert_int_equal(get_u32(got, "tokenizer.ggml.unknown_token_id"), 0);
}

static void test_stories_bit_equal(void **state) {
    (void)state;
    TU_NEED_SHARED(bin, "models/stories260K.bin");
    TU_NEED_SHARED(tok, "models/tok512.bin");
    TU_NEED_SHARED(ref_path, "models/stories260K.gguf");
    ll_error err;
    ll_gguf *got, *ref;
    if (ll_llama2c_open(&got, bin, tok, &err)) fail_msg("%s", err.message);
    assert_int_equal(ll_gguf_open(&ref, ref_path, &err), LL_OK);
    assert_int_equal(ref->n_tensors, 48);
    assert_same_tensors(got, ref);
    // the shared classifier is a view of the embedding's bytes
    assert_ptr_equal(ll_gguf_find_tensor(got, "output.weight")->data, ll_gguf_find_tensor(got, "token_embd.weight")->data);
    const char *same[] = {"llama.embedding_length", "llama.feed_forward_length", "llama.block_count",
                          "llama.attention.head_count", "llama.attention.head_count_kv", "llama.rope.dimension_count"};
    for (size_t i = 0; i < sizeof same / sizeof same[0]; i++) assert_int_equal(get_u32(got, same[i]), get_u32(ref, same[i]));
    assert_int_equal(get_u32(got, "llama.context_length"), 512); // the .gguf says 2048; trained at 512
    float eps, eps_ref;
    assert_int_equal(ll_gguf_get_f32(got, "llama.attention.layer_norm_rms_epsilon", &eps, &err), LL_OK);
    assert_int_equal(ll_gguf_get_f32(ref, "llama.attention.layer_norm_rms_epsilon", &eps_ref, &err), LL_OK);
    assert_true(eps == eps_ref);
    ll_str arch;
    assert_int_equal(ll_gguf_get_str(got, "general.architecture", &arch, &err), LL_OK);
    assert_true(ll_str_eq(arch, "llama"));
    assert_same_vocab(got, ref);
    // Through the writer and the reader: the file `llmlab convert` writes holds the same tensors.
    const char *out = tmp_path("stories.gguf");
    assert_int_equal(ll_gguf_write_file(got, out, &err), LL_OK);
    ll_gguf *back;
    if (ll_gguf_open(&back, out, &err)) fail_msg("%s", err.message);
    assert_same_tensors(back, ref);
    assert_same_vocab(back, ref);
    ll_gguf_free(back);
    ll_gguf_free(got);
    ll_gguf_free(ref);
}

// ---- a tiny writer for the other layouts, from the legacy file's arrays ---------------------------------
typedef struct arrays {
    int32_t hdr[7];
    const float *tok, *rms_att, *wq, *wk, *wv, *wo, *rms_ffn, *w1, *w2, *w3, *rms_final;
    size_t n_tok, n_att, n_q, n_kv, n_ffn, n_w, n_final;
} arrays;

// Split stories260K.bin (legacy, shared) into its arrays; sizes from the header (export.py legacy_export).
static char *load_legacy(const char *path, arrays *a, size_t *len) {
    char *b = tu_read_file(path, len);
    assert_non_null(b);
    memcpy(a->hdr, b, 28);
    size_t d = (size_t)a->hdr[0], h = (size_t)a->hdr[1], L = (size_t)a->hdr[2], V = (size_t)a->hdr[5];
    size_t kv = d / (size_t)a->hdr[3] * (size_t)a->hdr[4];
    const float *p = (const float *)(b + 28);
    a->n_tok = V * d, a->n_att = L * d, a->n_q = L * d * d, a->n_kv = L * kv * d, a->n_w = L * h * d, a->n_final = d;
    a->tok = p, p += a->n_tok;
    a->rms_att = p, p += a->n_att;
    a->wq = p, p += a->n_q;
    a->wk = p, p += a->n_kv;
    a->wv = p, p += a->n_kv;
    a->wo = p, p += a->n_q;
    a->rms_ffn = p, p += a->n_att;
    a->w1 = p, p += a->n_w;
    a->w2 = p, p += a->n_w;
    a->w3 = p, p += a->n_w;
    a->rms_final = p, p += d;
    size_t freq = (size_t)a->hdr[6] * (d / (size_t)a->hdr[3]); // real + imag, (seq_len, head_size/2) each
    assert_int_equal((size_t)((const char *)(p + freq) - b), *len);
    return b;
}

static void put(FILE *f, const float *x, size_t n) { assert_int_equal(fwrite(x, 4, n, f), n); }

// export.py version1_export order; wcls appended when given (unshared).
static void write_v1(const char *path, const arrays *a, const float *wcls) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    uint8_t hdr[256] = {0};
    uint32_t magic = 0x616b3432;
    int32_t version = 1;
    memcpy(hdr, &magic, 4);
    memcpy(hdr + 4, &version, 4);
    memcpy(hdr + 8, a->hdr, 28);
    hdr[36] = wcls ? 0 : 1;
    fwrite(hdr, 1, 256, f);
    put(f, a->rms_att, a->n_att), put(f, a->rms_ffn, a->n_att), put(f, a->rms_final, a->n_final);
    put(f, a->tok, a->n_tok);
    put(f, a->wq, a->n_q), put(f, a->wk, a->n_kv), put(f, a->wv, a->n_kv), put(f, a->wo, a->n_q);
    put(f, a->w1, a->n_w), put(f, a->w2, a->n_w), put(f, a->w3, a->n_w);
    if (wcls) put(f, wcls, a->n_tok);
    fclose(f);
}

// Version 1, shared and unshared; legacy unshared (negative vocab_size + wcls at the end).
static void test_v1_and_unshared(void **state) {
    (void)state;
    TU_NEED_SHARED(bin, "models/stories260K.bin");
    TU_NEED_SHARED(tok, "models/tok512.bin");
    arrays a;
    size_t len;
    char *legacy = load_legacy(bin, &a, &len);
    ll_error err;
    ll_gguf *ref, *got;
    assert_int_equal(ll_llama2c_open(&ref, bin, tok, &err), LL_OK);

    const char *v1 = tmp_path("v1.bin");
    write_v1(v1, &a, NULL);
    if (ll_llama2c_open(&got, v1, tok, &err)) fail_msg("%s", err.message);
    assert_same_tensors(got, ref);
    ll_gguf_free(got);

    float *wcls = malloc(a.n_tok * 4);
    for (size_t i = 0; i < a.n_tok; i++) wcls[i] = -2.0f * a.tok[i] + 0.25f;
    write_v1(v1, &a, wcls);
    if (ll_llama2c_open(&got, v1, tok, &err)) fail_msg("%s", err.message);
    const ll_gguf_tensor *out = ll_gguf_find_tensor(got, "output.weight"), *emb = ll_gguf_find_tensor(got, "token_embd.weight");
    assert_memory_equal(out->data, wcls, a.n_tok * 4);
    assert_memory_equal(emb->data, a.tok, a.n_tok * 4);
    ll_gguf_free(got);

    // legacy unshared: the same bytes with vocab_size negated and wcls appended
    char *u = malloc(len + a.n_tok * 4);
    memcpy(u, legacy, len);
    int32_t negv = -a.hdr[5];
    memcpy(u + 20, &negv, 4);
    memcpy(u + len, wcls, a.n_tok * 4);
    const char *lu = tmp_path("legacy-unshared.bin");
    write_bytes(lu, u, len + a.n_tok * 4);
    if (ll_llama2c_open(&got, lu, tok, &err)) fail_msg("%s", err.message);
    assert_memory_equal(ll_gguf_find_tensor(got, "output.weight")->data, wcls, a.n_tok * 4);
    assert_memory_equal(ll_gguf_find_tensor(got, "token_embd.weight")->data, a.tok, a.n_tok * 4);
    assert_int_equal(ll_gguf_find_tensor(got, "output.weight")->ne[1], a.hdr[5]);
    ll_gguf_free(got);
    free(u);
    free(wcls);
    ll_gguf_free(ref);
    free(legacy);
}

// Open a checkpoint whose header field i was set to v; expect a format error mentioning `want`.
static void expect_bad_header(const char *legacy, size_t len, int field, int32_t v, const char *tok,
                              const char *want) {
    char *b = malloc(len);
    memcpy(b, legacy, len);
    memcpy(b + 4 * field, &v, 4);
    const char *p = tmp_path("bad.bin");
    write_bytes(p, b, len);
    free(b);
    ll_error err = {0};
    ll_gguf *g = (ll_gguf *)1;
    ll_status s = ll_llama2c_open(&g, p, tok, &err);
    assert_int_equal(s, LL_ERR_FORMAT);
    assert_null(g);
    if (!strstr(err.message, want)) fail_msg("message '%s' does not mention '%s'", err.message, want);
}

static void test_malformed_checkpoints(void **state) {
    (void)state;
    TU_NEED_SHARED(bin, "models/stories260K.bin");
    TU_NEED_SHARED(tok, "models/tok512.bin");
    size_t len = 0;
    char *b = tu_read_file(bin, &len);
    assert_non_null(b);
    ll_error err = {0};
    ll_gguf *g;
    // truncated (one byte short, and just the header), and one trailing byte
    const char *p = tmp_path("cut.bin");
    write_bytes(p, b, len - 1);
    assert_int_equal(ll_llama2c_open(&g, p, tok, &err), LL_ERR_FORMAT);
    assert_non_null(strstr(err.message, "truncated"));
    write_bytes(p, b, 20);
    assert_int_equal(ll_llama2c_open(&g, p, tok, &err), LL_ERR_FORMAT);
    write_bytes(p, b, 28);
    assert_int_equal(ll_llama2c_open(&g, p, tok, &err), LL_ERR_FORMAT);
    char *longer = calloc(1, len + 1);
    memcpy(longer, b, len);
    write_bytes(p, longer, len + 1);
    free(longer);
    assert_int_equal(ll_llama2c_open(&g, p, tok, &err), LL_ERR_FORMAT);
    assert_non_null(strstr(err.message, "trailing"));
    // header fields: negative/zero dims, heads that do not divide, absurd sizes
    expect_bad_header(b, len, 0, -64, tok, "dim");
    expect_bad_header(b, len, 0, 0, tok, "dim");
    expect_bad_header(b, len, 1, -1, tok, "hidden_dim");
    expect_bad_header(b, len, 2, 0, tok, "n_layers");
    expect_bad_header(b, len, 3, 7, tok, "multiple of n_heads");    // 64 % 7
    expect_bad_header(b, len, 4, 3, tok, "multiple of n_kv_heads"); // 8 % 3
    expect_bad_header(b, len, 4, 16, tok, "n_kv_heads");            // more kv heads than heads
    expect_bad_header(b, len, 3, 64, tok, "odd");                   // head size 1
    expect_bad_header(b, len, 0, 0x7fffffff, tok, "dim");
    expect_bad_header(b, len, 1, 1 << 20, tok, "needs exactly");     // in bounds, but the file is far too small
    expect_bad_header(b, len, 5, INT32_MIN, tok, "vocab_size");
    expect_bad_header(b, len, 6, -5, tok, "seq_len");
    // ak42 with an unsupported version
    uint32_t magic[2] = {0x616b3432, 2};
    char *v2 = calloc(1, 512);
    memcpy(v2, magic, 8);
    write_bytes(p, v2, 512);
    free(v2);
    assert_int_equal(ll_llama2c_open(&g, p, tok, &err), LL_ERR_UNSUPPORTED);
    assert_non_null(strstr(err.message, "version 2"));
    // missing file
    assert_int_equal(ll_llama2c_open(&g, tmp_path("nope.bin"), tok, &err), LL_ERR_IO);
    free(b);
}

static void test_malformed_tokenizers(void **state) {
    (void)state;
    TU_NEED_SHARED(bin, "models/stories260K.bin");
    TU_NEED_SHARED(tok, "models/tok512.bin");
    ll_error err = {0};
    ll_gguf *g;
    // the 32000-token Llama 2 tokenizer does not belong to a 512-token model
    const char *big = tu_shared("models/tokenizer.bin");
    if (big) {
        assert_int_equal(ll_llama2c_open(&g, bin, big, &err), LL_ERR_FORMAT);
        assert_non_null(strstr(err.message, "tokenizer"));
    }
    size_t len = 0;
    char *t = tu_read_file(tok, &len);
    assert_non_null(t);
    const char *p = tmp_path("tok.bin");
    write_bytes(p, t, len - 3); // truncated in the last token
    assert_int_equal(ll_llama2c_open(&g, bin, p, &err), LL_ERR_FORMAT);
    assert_non_null(strstr(err.message, "truncated"));
    int32_t bad = -1;
    memcpy(t + 4 + 4, &bad, 4); // token 0's length
    write_bytes(p, t, len);
    assert_int_equal(ll_llama2c_open(&g, bin, p, &err), LL_ERR_FORMAT);
    memcpy(t, &bad, 4); // max_token_length
    write_bytes(p, t, len);
    assert_int_equal(ll_llama2c_open(&g, bin, p, &err), LL_ERR_FORMAT);
    assert_non_null(strstr(err.message, "max_token_length"));
    free(t);
    // default tokenizer: tokenizer.bin beside the checkpoint (absent in the temp dir)
    size_t blen = 0;
    char *b = tu_read_file(bin, &blen);
    assert_non_null(b);
    const char *lone = tmp_path("lone.bin");
    write_bytes(lone, b, blen);
    free(b);
    assert_int_equal(ll_llama2c_open(&g, lone, NULL, &err), LL_ERR_IO);
    assert_non_null(strstr(err.message, "tokenizer.bin"));
}

// The 32000-token Llama 2 tokenizer.bin against llama.cpp's ggml-vocab-llama-spm.gguf (same vocabulary):
// through a minimal legacy checkpoint (dim 2, 1 layer, vocab 32000, zero weights).
static void test_llama2_vocab(void **state) {
    (void)state;
    TU_NEED_SHARED(tok, "models/tokenizer.bin");
    TU_NEED_SHARED(vocab, "models/vocab/ggml-vocab-llama-spm.gguf");
    int32_t hdr[7] = {2, 2, 1, 1, 1, 32000, 1};
    // floats: embedding 32000*2, rms 2, wq 4, wk 4, wv 4, wo 4, rms 2, w1/w2/w3 4 each, final 2, freq 1+1
    size_t n_floats = 64000 + 2 + 16 + 2 + 12 + 2 + 2, len = 28 + 4 * n_floats;
    char *b = calloc(1, len);
    memcpy(b, hdr, 28);
    const char *p = tmp_path("v32000.bin");
    write_bytes(p, b, len);
    free(b);
    ll_error err;
    ll_gguf *got, *ref;
    if (ll_llama2c_open(&got, p, tok, &err)) fail_msg("%s", err.message);
    assert_int_equal(ll_gguf_open(&ref, vocab, &err), LL_OK);
    assert_same_vocab(got, ref);
    ll_gguf_free(got);
    ll_gguf_free(ref);
}

static void test_probe(void **state) {
    (void)state;
    TU_NEED_SHARED(bin, "models/stories260K.bin");
    TU_NEED_SHARED(gguf, "models/stories260K.gguf");
    assert_true(ll_llama2c_probe(bin));
    assert_false(ll_llama2c_probe(gguf));
    assert_false(ll_llama2c_probe(tmp_path("does-not-exist")));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stories_bit_equal),
        cmocka_unit_test(test_v1_and_unshared),
        cmocka_unit_test(test_malformed_checkpoints),
        cmocka_unit_test(test_malformed_tokenizers),
        cmocka_unit_test(test_llama2_vocab),
        cmocka_unit_test(test_probe),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
