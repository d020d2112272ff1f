// fuzz_gguf.c — libFuzzer target for the GGUF reader (`make fuzz`): each input is refused with a message naming
// the file, or parses into values and tensor views inside the input. -DLL_FUZZ_MAKE_CORPUS: writes the seeds.
#include "formats/gguf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static volatile uint64_t g_sink; // keeps the reads below from being optimized away

static void touch(const void *p, uint64_t n) {
    const uint8_t *b = p;
    if (n) g_sink += b[0] + b[n - 1];
}

// Every getter on every key (most fail with a type error; none may crash), every array element.
static void exercise_kv(const ll_gguf *g, const ll_gguf_kv *kv) {
    ll_error err;
    uint64_t u64;
    uint32_t u32, at;
    int64_t i64;
    float f;
    bool b;
    ll_str s;
    const uint8_t *data;
    uint64_t n;
    if (ll_gguf_find(g, kv->key) != kv) abort(); // keys are unique
    if (ll_gguf_get_u64(g, kv->key, &u64, &err) == LL_OK) g_sink += u64;
    if (ll_gguf_get_u32(g, kv->key, &u32, &err) == LL_OK) g_sink += u32;
    if (ll_gguf_get_i64(g, kv->key, &i64, &err) == LL_OK) g_sink += (uint64_t)i64;
    if (ll_gguf_get_f32(g, kv->key, &f, &err) == LL_OK) g_sink += f == f;
    if (ll_gguf_get_bool(g, kv->key, &b, &err) == LL_OK) g_sink += b;
    if (ll_gguf_get_str(g, kv->key, &s, &err) == LL_OK) touch(s.ptr, s.len), g_sink += ll_str_eq(s, "llama");
    if (ll_gguf_get_arr(g, kv->key, &at, &n, &data, &err) != LL_OK) return;
    touch(data, kv->nbytes);
    if (at == LL_GGUF_STRING) {
        ll_str *v = malloc((n ? n : 1) * sizeof *v); // n <= input size / 8: checked at parse
        if (!v) abort();
        ll_gguf_arr_strings(kv, v);
        for (uint64_t i = 0; i < n; i++) touch(v[i].ptr, v[i].len);
        free(v);
    } else {
        for (uint64_t i = 0; i < n; i++) g_sink += (uint64_t)ll_gguf_arr_i64(kv, i) + (ll_gguf_arr_f64(kv, i) > 0);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    ll_gguf *g;
    ll_error err;
    if (ll_gguf_open_memory(&g, data, size, "fuzz.gguf", &err) != LL_OK) {
        if (strncmp(err.message, "fuzz.gguf: ", 11) != 0) abort(); // every message names the file
        return 0;
    }
    for (uint64_t i = 0; i < g->n_kv; i++) exercise_kv(g, &g->kv[i]);
    // Tensor views: inside the input, aligned, found by name; then the whole file goes through the builder.
    ll_gguf *copy = ll_gguf_new("fuzz-copy");
    for (uint64_t i = 0; i < g->n_kv; i++) ll_gguf_copy_kv(copy, &g->kv[i]);
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const ll_gguf_tensor *t = &g->tensors[i];
        const uint8_t *p = t->data;
        if (p < data || t->nbytes > size || p - data > (ptrdiff_t)(size - t->nbytes)) abort();
        if (t->offset % g->alignment || ll_gguf_find_tensor(g, t->name) != t) abort();
        touch(p, t->nbytes);
        if (ll_gguf_add_tensor(copy, t->name, t->type, t->n_dims, t->ne, t->data, &err) != LL_OK) abort();
        if (copy->tensors[i].nbytes != t->nbytes) abort(); // offsets may differ: files may leave gaps
    }
    ll_gguf_free(copy);
    ll_gguf_free(g);
    return 0;
}

#ifdef LL_FUZZ_MAKE_CORPUS
// ---- seed corpus: small valid files from the builder + writer, and a few malformed ones ---------------------
static void seed_llama(const char *dir) {
    char path[512];
    ll_gguf *g = ll_gguf_new("seed");
    ll_error err;
    ll_gguf_set_str(g, "general.architecture", "llama");
    ll_gguf_set_u32(g, "llama.embedding_length", 32);
    ll_gguf_set_u32(g, "llama.block_count", 1);
    ll_gguf_set_f32(g, "llama.attention.layer_norm_rms_epsilon", 1e-5f);
    ll_gguf_set_bool(g, "tokenizer.ggml.add_bos_token", true);
    ll_str toks[] = {{"<unk>", 5}, {"<s>", 3}, {"</s>", 4}, {"\xe2\x96\x81the", 6}, {"a", 1}, {"", 0}};
    ll_gguf_set_arr_str(g, "tokenizer.ggml.tokens", 6, toks);
    float scores[] = {0, 0, 0, -1, -2, -3};
    ll_gguf_set_arr(g, "tokenizer.ggml.scores", LL_GGUF_FLOAT32, 6, scores);
    int32_t types[] = {2, 3, 3, 1, 1, 1};
    ll_gguf_set_arr(g, "tokenizer.ggml.token_type", LL_GGUF_INT32, 6, types);
    static uint8_t buf[2048];
    for (size_t i = 0; i < sizeof buf; i++) buf[i] = (uint8_t)(i * 7);
    ll_gguf_add_tensor(g, "token_embd.weight", LL_TYPE_F16, 2, (int64_t[]){32, 6}, buf, &err);
    ll_gguf_add_tensor(g, "output_norm.weight", LL_TYPE_F32, 1, (int64_t[]){32}, buf, &err);
    ll_gguf_add_tensor(g, "blk.0.attn_q.weight", LL_TYPE_Q8_0, 2, (int64_t[]){32, 4}, buf, &err);
    snprintf(path, sizeof path, "%s/llama.gguf", dir);
    if (ll_gguf_write_file(g, path, &err) != LL_OK) fprintf(stderr, "%s\n", err.message);
    ll_gguf_free(g);

    g = ll_gguf_new("seed");
    ll_gguf_set_u32(g, "general.alignment", 64);
    ll_gguf_set_u64(g, "u64", 1ull << 40);
    ll_gguf_set_i32(g, "i32", -7);
    int16_t i16[] = {-1, 300};
    ll_gguf_set_arr(g, "i16", LL_GGUF_INT16, 2, i16);
    double f64[] = {1e300, -0.5};
    ll_gguf_set_arr(g, "f64", LL_GGUF_FLOAT64, 2, f64);
    uint8_t bools[] = {0, 1, 1};
    ll_gguf_set_arr(g, "bools", LL_GGUF_BOOL, 3, bools);
    ll_gguf_add_tensor(g, "q4", LL_TYPE_Q4_0, 1, (int64_t[]){64}, buf, &err);
    ll_gguf_add_tensor(g, "k", LL_TYPE_Q4_K, 1, (int64_t[]){256}, buf, &err);
    ll_gguf_add_tensor(g, "i8", LL_TYPE_I8, 3, (int64_t[]){3, 2, 1}, buf, &err);
    snprintf(path, sizeof path, "%s/quant-align64.gguf", dir);
    if (ll_gguf_write_file(g, path, &err) != LL_OK) fprintf(stderr, "%s\n", err.message);
    ll_gguf_free(g);

    g = ll_gguf_new("seed");
    ll_gguf_set_str(g, "general.name", "empty");
    snprintf(path, sizeof path, "%s/no-tensors.gguf", dir);
    if (ll_gguf_write_file(g, path, &err) != LL_OK) fprintf(stderr, "%s\n", err.message);
    ll_gguf_free(g);
}

// Variants of llama.gguf: version 2, truncated, a byte flipped in the header.
static void seed_variants(const char *dir) {
    char path[512];
    snprintf(path, sizeof path, "%s/llama.gguf", dir);
    FILE *f = fopen(path, "rb");
    if (!f) return;
    uint8_t b[4096];
    size_t n = fread(b, 1, sizeof b, f);
    fclose(f);
    struct { const char *name; size_t off; uint8_t v; } v[] = {
        {"v2.gguf", 4, 2}, {"truncated.gguf", 0, 0}, {"bad-version.gguf", 4, 1}, {"bad-count.gguf", 16, 0xff},
    };
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        uint8_t c[4096];
        memcpy(c, b, n);
        size_t m = strcmp(v[i].name, "truncated.gguf") == 0 ? n / 2 : n;
        if (m == n) c[v[i].off] = v[i].v;
        snprintf(path, sizeof path, "%s/%s", dir, v[i].name);
        f = fopen(path, "wb");
        fwrite(c, 1, m, f);
        fclose(f);
    }
}

// Hand-made malformed headers: a nested array, a bool of 2, two overlapping tensors.
static void put(FILE *f, const void *p, size_t n) { fwrite(p, 1, n, f); }
static void put32(FILE *f, uint32_t v) { put(f, &v, 4); }
static void put64(FILE *f, uint64_t v) { put(f, &v, 8); }
static void putstr(FILE *f, const char *s) { put64(f, strlen(s)); put(f, s, strlen(s)); }
static FILE *start(const char *dir, const char *name, uint64_t n_tensors, uint64_t n_kv) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    put(f, "GGUF", 4);
    put32(f, 3);
    put64(f, n_tensors);
    put64(f, n_kv);
    return f;
}

static void seed_malformed(const char *dir) {
    FILE *f = start(dir, "nested-array.gguf", 0, 1);
    putstr(f, "nest");
    put32(f, LL_GGUF_ARRAY);
    put32(f, LL_GGUF_ARRAY);
    put64(f, 1);
    put32(f, LL_GGUF_UINT8);
    put64(f, 1);
    put(f, "", 1);
    fclose(f);
    f = start(dir, "bad-bool.gguf", 0, 1);
    putstr(f, "tokenizer.ggml.add_bos_token");
    put32(f, LL_GGUF_BOOL);
    put(f, "\2", 1);
    fclose(f);
    f = start(dir, "overlap.gguf", 2, 0);
    for (int i = 0; i < 2; i++) {
        putstr(f, i ? "b" : "a");
        put32(f, 1);
        put64(f, 16);
        put32(f, LL_TYPE_F32);
        put64(f, (uint64_t)i * 32);
    }
    static const uint8_t zeros[128];
    put(f, zeros, (32 - 90 % 32) % 32 + 96); // infos end at 24 + 2 * 33 = 90
    fclose(f);
}

int main(int argc, char **argv) {
    const char *dir = argc > 1 ? argv[1] : "fuzz/corpus";
    seed_llama(dir);
    seed_variants(dir);
    seed_malformed(dir);
    return 0;
}
#endif
