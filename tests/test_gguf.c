// test_gguf.c — GGUF reader, builder and writer: round trips, the real reference files, one test per class of
// malformed file (bytes composed by hand here, independently of the writer), getters, atomic writes.
#include "testutil.h"

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include "formats/gguf.h"

// ---- a byte composer for hand-made files ----------------------------------------------------------------
typedef struct tb {
    uint8_t *p;
    size_t n, cap;
} tb;

static void tb_put(tb *b, const void *d, size_t n) {
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
        assert_non_null(b->p);
    }
    memcpy(b->p + b->n, d, n);
    b->n += n;
}
static void tb_u8(tb *b, uint8_t v) { tb_put(b, &v, 1); }
static void tb_u32(tb *b, uint32_t v) { tb_put(b, &v, 4); }
static void tb_u64(tb *b, uint64_t v) { tb_put(b, &v, 8); }
static void tb_str(tb *b, const char *s) { tb_u64(b, strlen(s)); tb_put(b, s, strlen(s)); }
static void tb_zero(tb *b, size_t n) { while (n--) tb_u8(b, 0); }
static void tb_pad(tb *b, size_t a) { while (b->n % a) tb_u8(b, 0); }
static void tb_hdr(tb *b, uint32_t version, uint64_t n_tensors, uint64_t n_kv) {
    tb_put(b, "GGUF", 4);
    tb_u32(b, version);
    tb_u64(b, n_tensors);
    tb_u64(b, n_kv);
}
static void tb_kv_u32(tb *b, const char *k, uint32_t v) { tb_str(b, k); tb_u32(b, LL_GGUF_UINT32); tb_u32(b, v); }
static void tb_kv_str(tb *b, const char *k, const char *v) { tb_str(b, k); tb_u32(b, LL_GGUF_STRING); tb_str(b, v); }
static void tb_tensor(tb *b, const char *name, uint32_t n_dims, const int64_t *ne, uint32_t type, uint64_t off) {
    tb_str(b, name);
    tb_u32(b, n_dims);
    for (uint32_t d = 0; d < n_dims; d++) tb_u64(b, (uint64_t)ne[d]);
    tb_u32(b, type);
    tb_u64(b, off);
}

// Open b's bytes from an exact-size copy (so a reader overrun is an out-of-bounds access under ASan).
static ll_status tb_open(const tb *b, ll_gguf **g, ll_error *err) {
    void *copy = malloc(b->n ? b->n : 1);
    memcpy(copy, b->p, b->n);
    ll_status s = ll_gguf_open_memory(g, copy, b->n, "bad.gguf", err);
    if (s == LL_OK) ll_gguf_free(*g);
    free(copy);
    return s;
}

// The file must be refused with status st and a message that starts with the name and contains each needle.
static void expect_fail(tb *b, ll_status st, const char *needle1, const char *needle2) {
    ll_gguf *g = NULL;
    ll_error err = {0};
    ll_status s = tb_open(b, &g, &err);
    if (s != st || strncmp(err.message, "bad.gguf: ", 10) != 0 || !strstr(err.message, needle1) ||
        (needle2 && !strstr(err.message, needle2)))
        fail_msg("status %d (want %d), message: %s (want '%s' and '%s')", s, st, err.message, needle1,
                 needle2 ? needle2 : "");
    free(b->p);
    *b = (tb){0};
}

// A small valid file: 3 KVs, an F32 [8] and a Q8_0 [32, 2] tensor; it ends exactly at the last tensor byte.
static void tb_valid(tb *b) {
    tb_hdr(b, 3, 2, 3);
    tb_kv_str(b, "general.architecture", "llama");
    tb_kv_u32(b, "llama.block_count", 2);
    tb_str(b, "tokenizer.ggml.tokens");
    tb_u32(b, LL_GGUF_ARRAY);
    tb_u32(b, LL_GGUF_STRING);
    tb_u64(b, 2);
    tb_str(b, "a");
    tb_str(b, "bc");
    tb_tensor(b, "a", 1, (int64_t[]){8}, LL_TYPE_F32, 0);
    tb_tensor(b, "b", 2, (int64_t[]){32, 2}, LL_TYPE_Q8_0, 32);
    tb_pad(b, 32);
    for (int i = 0; i < 32 + 68; i++) tb_u8(b, (uint8_t)i);
}

static void test_valid_small(void **state) {
    (void)state;
    tb b = {0};
    tb_valid(&b);
    ll_gguf *g;
    ll_error err;
    assert_int_equal(ll_gguf_open_memory(&g, b.p, b.n, "ok.gguf", &err), LL_OK);
    assert_int_equal(g->n_kv, 3);
    assert_int_equal(g->n_tensors, 2);
    const ll_gguf_tensor *t = ll_gguf_find_tensor(g, "b");
    assert_non_null(t);
    assert_int_equal(t->nbytes, 68);
    assert_int_equal(t->ne[0], 32);
    assert_int_equal(t->ne[1], 2);
    assert_int_equal(t->ne[2], 1);
    assert_ptr_equal(t->data, b.p + b.n - 68);
    assert_null(ll_gguf_find_tensor(g, "c"));
    ll_gguf_free(g);
    free(b.p);
}

// ---- one test per malformed-file class ------------------------------------------------------------------
static void test_bad_magic(void **state) {
    (void)state;
    tb b = {0};
    tb_put(&b, "GGUX", 4);
    tb_u32(&b, 3);
    tb_u64(&b, 0);
    tb_u64(&b, 0);
    expect_fail(&b, LL_ERR_FORMAT, "not a GGUF file", "bad magic");
    tb_put(&b, "GG", 2);
    expect_fail(&b, LL_ERR_FORMAT, "not a GGUF file", NULL);
}

static void test_bad_version(void **state) {
    (void)state;
    tb b = {0};
    tb_hdr(&b, 1, 0, 0);
    expect_fail(&b, LL_ERR_UNSUPPORTED, "version 1 is not supported", NULL);
    tb_hdr(&b, 4, 0, 0);
    expect_fail(&b, LL_ERR_UNSUPPORTED, "unsupported GGUF version 4", NULL);
    tb_hdr(&b, 0x03000000u, 0, 0); // a big-endian version 3
    expect_fail(&b, LL_ERR_UNSUPPORTED, "big-endian", NULL);
    tb_hdr(&b, 2, 0, 0); // version 2 is accepted
    ll_gguf *g;
    assert_int_equal(tb_open(&b, &g, NULL), LL_OK);
    free(b.p);
}

// Every proper prefix of a valid file is refused cleanly.
static void test_truncated_every_byte(void **state) {
    (void)state;
    tb b = {0};
    tb_valid(&b);
    ll_gguf *g;
    assert_int_equal(ll_gguf_open_memory(&g, b.p, b.n, "ok.gguf", NULL), LL_OK);
    size_t data_offset = (size_t)g->data_offset;
    ll_gguf_free(g);
    for (size_t n = 0; n < b.n; n++) {
        tb p = {.p = b.p, .n = n};
        ll_error err = {0};
        ll_status s = tb_open(&p, &g, &err);
        if (s != LL_ERR_FORMAT || strncmp(err.message, "bad.gguf: ", 10) != 0)
            fail_msg("prefix of %zu bytes: status %d: %s", n, s, err.message);
        if (n >= 8 && n < 24) assert_non_null(strstr(err.message, "truncated header"));
        if (n >= data_offset) assert_non_null(strstr(err.message, "is outside the file"));
    }
    free(b.p);
}

static void test_absurd_counts(void **state) {
    (void)state;
    tb b = {0};
    tb_hdr(&b, 3, 0, 1ull << 60);
    expect_fail(&b, LL_ERR_FORMAT, "claims 1152921504606846976 key/value pairs", NULL);
    tb_hdr(&b, 3, UINT64_MAX, 0);
    tb_zero(&b, 100);
    expect_fail(&b, LL_ERR_FORMAT, "claims 18446744073709551615 tensors", NULL);
    tb_hdr(&b, 3, 4, 2); // 2 KVs + 4 tensors need >= 128 bytes; 100 follow
    tb_zero(&b, 100);
    expect_fail(&b, LL_ERR_FORMAT, "claims 4 tensors", NULL);
}

static void test_absurd_string_length(void **state) {
    (void)state;
    tb b = {0};
    tb_hdr(&b, 3, 0, 1);
    tb_u64(&b, UINT64_MAX - 3); // key length
    tb_zero(&b, 20);
    expect_fail(&b, LL_ERR_FORMAT, "string length 18446744073709551612", "key of entry 0");
    tb_hdr(&b, 3, 0, 1);
    tb_str(&b, "general.name");
    tb_u32(&b, LL_GGUF_STRING);
    tb_u64(&b, 1ull << 40); // value length
    tb_zero(&b, 20);
    expect_fail(&b, LL_ERR_FORMAT, "key 'general.name': string at offset 48 has length 1099511627776", NULL);
}

static void test_array_length_overflow(void **state) {
    (void)state;
    tb b = {0};
    tb_hdr(&b, 3, 0, 1);
    tb_str(&b, "big");
    tb_u32(&b, LL_GGUF_ARRAY);
    tb_u32(&b, LL_GGUF_UINT32);
    tb_u64(&b, (1ull << 62) + 1); // * 4 bytes overflows u64
    tb_zero(&b, 16);
    expect_fail(&b, LL_ERR_FORMAT, "key 'big' holds 4611686018427387905 uint32 values", NULL);
    tb_hdr(&b, 3, 0, 1);
    tb_str(&b, "tokenizer.ggml.tokens");
    tb_u32(&b, LL_GGUF_ARRAY);
    tb_u32(&b, LL_GGUF_STRING);
    tb_u64(&b, 3);
    tb_str(&b, "a");
    tb_str(&b, "b");
    tb_u64(&b, 100); // third string runs past the end
    tb_zero(&b, 10);
    expect_fail(&b, LL_ERR_FORMAT, "'tokenizer.ggml.tokens': string 2 of 3 at offset", "length 100");
}

static void test_nested_array(void **state) {
    (void)state;
    tb b = {0};
    tb_hdr(&b, 3, 0, 1);
    tb_str(&b, "nest");
    tb_u32(&b, LL_GGUF_ARRAY);
    tb_u32(&b, LL_GGUF_ARRAY);
    tb_u64(&b, 1);
    tb_u32(&b, LL_GGUF_UINT8);
    tb_u64(&b, 1);
    tb_u8(&b, 0);
    expect_fail(&b, LL_ERR_FORMAT, "key 'nest' is a nested array", NULL);
}

static void test_unknown_value_type(void **state) {
    (void)state;
    tb b = {0};
    tb_hdr(&b, 3, 0, 1);
    tb_str(&b, "odd");
    tb_u32(&b, 13);
    tb_zero(&b, 8);
    expect_fail(&b, LL_ERR_FORMAT, "key 'odd' has unknown value type 13", NULL);
    tb_hdr(&b, 3, 0, 1);
    tb_str(&b, "odd_arr");
    tb_u32(&b, LL_GGUF_ARRAY);
    tb_u32(&b, 99);
    tb_u64(&b, 0);
    expect_fail(&b, LL_ERR_FORMAT, "key 'odd_arr' is an array of unknown element type 99", NULL);
}

static void test_bad_bool(void **state) {
    (void)state;
    tb b = {0};
    tb_hdr(&b, 3, 0, 1);
    tb_str(&b, "tokenizer.ggml.add_bos_token");
    tb_u32(&b, LL_GGUF_BOOL);
    tb_u8(&b, 2);
    expect_fail(&b, LL_ERR_FORMAT, "key 'tokenizer.ggml.add_bos_token': bool value 2", NULL);
    tb_hdr(&b, 3, 0, 1);
    tb_str(&b, "flags");
    tb_u32(&b, LL_GGUF_ARRAY);
    tb_u32(&b, LL_GGUF_BOOL);
    tb_u64(&b, 3);
    tb_u8(&b, 1);
    tb_u8(&b, 0);
    tb_u8(&b, 255);
    expect_fail(&b, LL_ERR_FORMAT, "key 'flags': bool value 255 at index 2", NULL);
}

static void test_bad_key(void **state) {
    (void)state;
    tb b = {0};
    tb_hdr(&b, 3, 0, 2);
    tb_kv_u32(&b, "ok", 1);
    tb_kv_u32(&b, "", 1);
    expect_fail(&b, LL_ERR_FORMAT, "key 1", "is empty");
    tb_hdr(&b, 3, 0, 1);
    tb_u64(&b, 3);
    tb_put(&b, "a\0b", 3);
    tb_u32(&b, LL_GGUF_UINT8);
    tb_u8(&b, 0);
    expect_fail(&b, LL_ERR_FORMAT, "key 0", "NUL");
}

static void test_duplicate_key(void **state) {
    (void)state;
    tb b = {0};
    tb_hdr(&b, 3, 0, 4);
    tb_kv_u32(&b, "llama.block_count", 1);
    tb_kv_str(&b, "general.architecture", "llama");
    tb_kv_u32(&b, "x", 1);
    tb_kv_u32(&b, "llama.block_count", 2);
    expect_fail(&b, LL_ERR_FORMAT, "duplicate key 'llama.block_count' (entries 0 and 3)", NULL);
}

static void test_duplicate_tensor(void **state) {
    (void)state;
    tb b = {0};
    tb_hdr(&b, 3, 3, 0);
    tb_tensor(&b, "w", 1, (int64_t[]){8}, LL_TYPE_F32, 0);
    tb_tensor(&b, "v", 1, (int64_t[]){8}, LL_TYPE_F32, 32);
    tb_tensor(&b, "w", 1, (int64_t[]){8}, LL_TYPE_F32, 64);
    tb_pad(&b, 32);
    tb_zero(&b, 96);
    expect_fail(&b, LL_ERR_FORMAT, "duplicate tensor 'w' (entries 0 and 2)", NULL);
}

// One tensor info with the given fields followed by enough zero data for a 16-element F32 tensor.
static void one_tensor(tb *b, uint32_t n_dims, const int64_t *ne, uint32_t type, uint64_t off) {
    tb_hdr(b, 3, 1, 0);
    tb_tensor(b, "blk.0.w", n_dims, ne, type, off);
    tb_pad(b, 32);
    tb_zero(b, 64);
}

static void test_unknown_tensor_type(void **state) {
    (void)state;
    tb b = {0};
    one_tensor(&b, 1, (int64_t[]){16}, 4, 0); // id 4 was removed from ggml (Q4_2)
    expect_fail(&b, LL_ERR_UNSUPPORTED, "tensor 'blk.0.w' has unknown type id 4", NULL);
    one_tensor(&b, 1, (int64_t[]){16}, 1000, 0);
    expect_fail(&b, LL_ERR_UNSUPPORTED, "tensor 'blk.0.w' has unknown type id 1000", NULL);
    // A known type the engine cannot compute with (IQ2_XXS) is not a parse error.
    tb_hdr(&b, 3, 1, 0);
    tb_tensor(&b, "q", 1, (int64_t[]){256}, LL_TYPE_IQ2_XXS, 0);
    tb_pad(&b, 32);
    tb_zero(&b, 66);
    ll_gguf *g;
    assert_int_equal(tb_open(&b, &g, NULL), LL_OK);
    free(b.p);
}

static void test_too_many_dims(void **state) {
    (void)state;
    tb b = {0};
    one_tensor(&b, 5, (int64_t[]){2, 2, 2, 2, 1}, LL_TYPE_F32, 0);
    expect_fail(&b, LL_ERR_FORMAT, "tensor 'blk.0.w' has 5 dimensions", NULL);
}

static void test_bad_dim(void **state) {
    (void)state;
    tb b = {0};
    one_tensor(&b, 2, (int64_t[]){16, 0}, LL_TYPE_F32, 0);
    expect_fail(&b, LL_ERR_FORMAT, "tensor 'blk.0.w' dimension 1 is 0", NULL);
    one_tensor(&b, 2, (int64_t[]){-3, 1}, LL_TYPE_F32, 0);
    expect_fail(&b, LL_ERR_FORMAT, "tensor 'blk.0.w' dimension 0 is -3", NULL);
}

static void test_dims_overflow(void **state) {
    (void)state;
    tb b = {0};
    one_tensor(&b, 3, (int64_t[]){1ll << 32, 1ll << 31, 2}, LL_TYPE_F32, 0); // 2^64 elements
    expect_fail(&b, LL_ERR_FORMAT, "tensor 'blk.0.w' has too many elements", NULL);
    one_tensor(&b, 2, (int64_t[]){1ll << 40, 1ll << 22}, LL_TYPE_F32, 0); // 2^62 elements, 2^64 bytes
    expect_fail(&b, LL_ERR_FORMAT, "tensor 'blk.0.w' is too large", NULL);
}

static void test_row_not_block_multiple(void **state) {
    (void)state;
    tb b = {0};
    one_tensor(&b, 2, (int64_t[]){100, 2}, LL_TYPE_Q4_0, 0);
    expect_fail(&b, LL_ERR_FORMAT, "tensor 'blk.0.w' (Q4_0) has rows of 100 elements", "block size 32");
}

static void test_misaligned_offset(void **state) {
    (void)state;
    tb b = {0};
    tb_hdr(&b, 3, 2, 0);
    tb_tensor(&b, "a", 1, (int64_t[]){4}, LL_TYPE_F32, 0);
    tb_tensor(&b, "b", 1, (int64_t[]){4}, LL_TYPE_F32, 16);
    tb_pad(&b, 32);
    tb_zero(&b, 64);
    expect_fail(&b, LL_ERR_FORMAT, "tensor 'b' data offset 16 is not a multiple of the alignment 32", NULL);
    // With general.alignment = 16 the same layout is fine.
    tb_hdr(&b, 3, 2, 1);
    tb_kv_u32(&b, "general.alignment", 16);
    tb_tensor(&b, "a", 1, (int64_t[]){4}, LL_TYPE_F32, 0);
    tb_tensor(&b, "b", 1, (int64_t[]){4}, LL_TYPE_F32, 16);
    tb_pad(&b, 16);
    tb_zero(&b, 32);
    ll_gguf *g;
    assert_int_equal(tb_open(&b, &g, NULL), LL_OK);
    free(b.p);
}

static void test_tensor_outside_file(void **state) {
    (void)state;
    tb b = {0};
    tb_hdr(&b, 3, 1, 0);
    tb_tensor(&b, "token_embd.weight", 2, (int64_t[]){16, 4}, LL_TYPE_F32, 0);
    tb_pad(&b, 32);
    size_t ds = b.n;
    tb_zero(&b, 255); // one byte short of 256
    char want[256];
    snprintf(want, sizeof want,
             "tensor 'token_embd.weight' data [%zu, %zu) is outside the file (%zu bytes): the file is truncated or "
             "corrupt",
             ds, ds + 256, ds + 255);
    expect_fail(&b, LL_ERR_FORMAT, want, NULL);
    one_tensor(&b, 1, (int64_t[]){16}, LL_TYPE_F32, UINT64_MAX - 31); // offset + data start overflows
    expect_fail(&b, LL_ERR_FORMAT, "tensor 'blk.0.w' data offset 18446744073709551584 (64 bytes) is far outside the file",
                NULL); // the offset as stored, not a wrapped sum (18446744073709551615)
}

static void test_overlapping_tensors(void **state) {
    (void)state;
    tb b = {0};
    tb_hdr(&b, 3, 3, 0);
    tb_tensor(&b, "c", 1, (int64_t[]){8}, LL_TYPE_F32, 128);
    tb_tensor(&b, "a", 1, (int64_t[]){16}, LL_TYPE_F32, 0); // [0, 64)
    tb_tensor(&b, "b", 1, (int64_t[]){8}, LL_TYPE_F32, 32); // [32, 64)
    tb_pad(&b, 32);
    tb_zero(&b, 160);
    expect_fail(&b, LL_ERR_FORMAT, "tensors 'a'", "and 'b'");
}

static void test_bad_alignment(void **state) {
    (void)state;
    tb b = {0};
    uint32_t bad[] = {0, 48, 3};
    for (int i = 0; i < 3; i++) {
        tb_hdr(&b, 3, 0, 1);
        tb_kv_u32(&b, "general.alignment", bad[i]);
        expect_fail(&b, LL_ERR_FORMAT, "'general.alignment'", "nonzero power of two");
    }
    tb_hdr(&b, 3, 0, 1);
    tb_str(&b, "general.alignment");
    tb_u32(&b, LL_GGUF_STRING);
    tb_str(&b, "32");
    expect_fail(&b, LL_ERR_FORMAT, "key 'general.alignment' has type string; expected uint32", NULL);
}

// ---- getters --------------------------------------------------------------------------------------------
static void test_getters(void **state) {
    (void)state;
    ll_gguf *g = ll_gguf_new("mem.gguf");
    ll_error err;
    ll_gguf_set_u32(g, "u32", 7);
    ll_gguf_set_i32(g, "neg", -5);
    ll_gguf_set_u64(g, "big", 1ull << 40);
    ll_gguf_set_f32(g, "f", 0.25f);
    ll_gguf_set_bool(g, "b", true);
    ll_gguf_set_str(g, "s", "hello");
    ll_gguf_set_str(g, "s", "hello, world"); // replaces
    int16_t a16[] = {-1, 2, -300};
    ll_gguf_set_arr(g, "arr", LL_GGUF_INT16, 3, a16);
    double f64 = 1e300;
    ll_gguf_set_arr(g, "d", LL_GGUF_FLOAT64, 1, &f64);
    assert_int_equal(g->n_kv, 8);

    uint32_t u32;
    uint64_t u64;
    int64_t i64;
    float f;
    bool bo;
    ll_str s;
    assert_int_equal(ll_gguf_get_u32(g, "u32", &u32, &err), LL_OK);
    assert_int_equal(u32, 7);
    assert_int_equal(ll_gguf_get_i64(g, "neg", &i64, &err), LL_OK);
    assert_int_equal(i64, -5);
    assert_int_equal(ll_gguf_get_u64(g, "big", &u64, &err), LL_OK);
    assert_int_equal(u64, 1ull << 40);
    assert_int_equal(ll_gguf_get_u32(g, "big", &u32, &err), LL_ERR_FORMAT); // does not fit
    assert_non_null(strstr(err.message, "mem.gguf: key 'big' is 1099511627776, out of range for uint32"));
    assert_int_equal(ll_gguf_get_u64(g, "neg", &u64, &err), LL_ERR_FORMAT);
    assert_non_null(strstr(err.message, "key 'neg' is -5"));
    assert_int_equal(ll_gguf_get_f32(g, "f", &f, &err), LL_OK);
    assert_true(f == 0.25f);
    assert_int_equal(ll_gguf_get_bool(g, "b", &bo, &err), LL_OK);
    assert_true(bo);
    assert_int_equal(ll_gguf_get_str(g, "s", &s, &err), LL_OK);
    assert_true(ll_str_eq(s, "hello, world"));
    assert_false(ll_str_eq(s, "hello"));
    assert_int_equal(ll_gguf_get_u32(g, "s", &u32, &err), LL_ERR_FORMAT);
    assert_non_null(strstr(err.message, "mem.gguf: key 's' has type string; expected an integer"));
    assert_int_equal(ll_gguf_get_f32(g, "arr", &f, &err), LL_ERR_FORMAT);
    assert_non_null(strstr(err.message, "key 'arr' is an array of int16"));
    assert_int_equal(ll_gguf_get_u32(g, "nope", &u32, &err), LL_ERR_MISSING);
    assert_string_equal(err.message, "mem.gguf: missing required key 'nope'");
    uint32_t at;
    uint64_t n;
    const uint8_t *data;
    assert_int_equal(ll_gguf_get_arr(g, "arr", &at, &n, &data, &err), LL_OK);
    assert_int_equal(at, LL_GGUF_INT16);
    assert_int_equal(n, 3);
    const ll_gguf_kv *kv = ll_gguf_find(g, "arr");
    assert_int_equal(ll_gguf_arr_i64(kv, 2), -300);
    assert_true(ll_gguf_arr_f64(kv, 0) == -1.0);
    kv = ll_gguf_find(g, "d");
    assert_true(ll_gguf_arr_f64(kv, 0) == 1e300);
    assert_int_equal(ll_gguf_arr_i64(kv, 0), INT64_MAX); // saturates
    ll_gguf_set_f32(g, "u32", 1.5f); // type changes on replace
    assert_int_equal(ll_gguf_get_u32(g, "u32", &u32, &err), LL_ERR_FORMAT);
    assert_string_equal(ll_gguf_vtype_name(LL_GGUF_FLOAT64), "float64");
    ll_gguf_free(g);
}

// ---- builder + writer round trip --------------------------------------------------------------------------
static char g_dir[64];

static const char *tmp_path(const char *name) {
    static char buf[4][256];
    static int slot;
    char *b = buf[slot++ & 3];
    snprintf(b, sizeof buf[0], "%s/%s", g_dir, name);
    return b;
}

static int dir_count(void) {
    DIR *d = opendir(g_dir);
    int n = 0;
    for (struct dirent *e; (e = readdir(d));) n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

static void assert_same_gguf(const ll_gguf *a, const ll_gguf *b) {
    assert_int_equal(a->n_kv, b->n_kv);
    for (uint64_t i = 0; i < a->n_kv; i++) {
        const ll_gguf_kv *x = &a->kv[i], *y = ll_gguf_find(b, x->key);
        assert_non_null(y);
        assert_int_equal(x->type, y->type);
        assert_int_equal(x->arr_type, y->arr_type);
        assert_int_equal(x->arr_n, y->arr_n);
        assert_int_equal(x->nbytes, y->nbytes);
        assert_memory_equal(x->data, y->data, x->nbytes);
    }
    assert_int_equal(a->n_tensors, b->n_tensors);
    assert_int_equal(a->alignment, b->alignment);
    for (uint64_t i = 0; i < a->n_tensors; i++) {
        const ll_gguf_tensor *x = &a->tensors[i], *y = &b->tensors[i]; // order is kept
        assert_string_equal(x->name, y->name);
        assert_int_equal(x->type, y->type);
        assert_int_equal(x->n_dims, y->n_dims);
        for (int d = 0; d < LL_GGUF_MAX_DIMS; d++) assert_int_equal(x->ne[d], y->ne[d]);
        assert_int_equal(x->nbytes, y->nbytes);
        assert_int_equal(y->offset % b->alignment, 0);
        assert_memory_equal(x->data, y->data, x->nbytes);
    }
}

// A builder with every value type and four tensor types; data in *bufs (freed by the caller).
static ll_gguf *make_builder(uint8_t **bufs, uint32_t alignment) {
    ll_gguf *g = ll_gguf_new("built.gguf");
    ll_gguf_set_str(g, "general.architecture", "llama");
    if (alignment != LL_GGUF_DEFAULT_ALIGNMENT) ll_gguf_set_u32(g, "general.alignment", alignment);
    ll_gguf_set_u32(g, "llama.block_count", 3);
    ll_gguf_set_i32(g, "i32", -123456);
    ll_gguf_set_u64(g, "u64", 0xfedcba9876543210ull);
    ll_gguf_set_f32(g, "llama.attention.layer_norm_rms_epsilon", 1e-5f);
    ll_gguf_set_bool(g, "tokenizer.ggml.add_bos_token", true);
    ll_gguf_set_str(g, "empty", "");
    ll_str toks[] = {{"<unk>", 5}, {"", 0}, {"h\xc3\xa9llo", 6}, {"a\0b", 3}};
    ll_gguf_set_arr_str(g, "tokenizer.ggml.tokens", 4, toks);
    float scores[] = {0, -1.5f, 2.25f, 1e30f};
    ll_gguf_set_arr(g, "tokenizer.ggml.scores", LL_GGUF_FLOAT32, 4, scores);
    uint8_t u8s[] = {1, 2, 255};
    ll_gguf_set_arr(g, "u8s", LL_GGUF_UINT8, 3, u8s);
    int64_t i64s[] = {INT64_MIN, 0, INT64_MAX};
    ll_gguf_set_arr(g, "i64s", LL_GGUF_INT64, 3, i64s);
    uint8_t bools[] = {0, 1};
    ll_gguf_set_arr(g, "bools", LL_GGUF_BOOL, 2, bools);
    ll_gguf_set_arr(g, "none", LL_GGUF_UINT16, 0, NULL);
    ll_gguf_set_arr_str(g, "no_strings", 0, NULL);

    struct { const char *name; uint32_t type, n_dims; int64_t ne[4]; } spec[] = {
        {"token_embd.weight", LL_TYPE_F16, 2, {64, 10, 1, 1}},
        {"norm", LL_TYPE_F32, 1, {7, 1, 1, 1}},
        {"q4", LL_TYPE_Q4_0, 3, {64, 3, 2, 1}},
        {"k", LL_TYPE_Q4_K, 4, {256, 1, 2, 1}},
    };
    uint64_t seed = 42;
    for (int i = 0; i < 4; i++) {
        uint64_t row, rows = (uint64_t)(spec[i].ne[1] * spec[i].ne[2] * spec[i].ne[3]);
        assert_true(ll_type_row_size(spec[i].type, (uint64_t)spec[i].ne[0], &row));
        bufs[i] = malloc(row * rows);
        for (uint64_t j = 0; j < row * rows; j++) bufs[i][j] = (uint8_t)tu_rng_u64(&seed);
        assert_int_equal(ll_gguf_add_tensor(g, spec[i].name, spec[i].type, spec[i].n_dims, spec[i].ne, bufs[i], NULL),
                         LL_OK);
    }
    return g;
}

static void test_round_trip(void **state) {
    (void)state;
    uint32_t aligns[] = {32, 64, 1};
    for (int k = 0; k < 3; k++) {
        uint8_t *bufs[4];
        ll_gguf *g = make_builder(bufs, aligns[k]), *r;
        ll_error err;
        const char *path = tmp_path("rt.gguf");
        assert_int_equal(ll_gguf_write_file(g, path, &err), LL_OK);
        if (ll_gguf_open(&r, path, &err) != LL_OK) fail_msg("%s", err.message);
        assert_int_equal(r->version, 3);
        assert_int_equal(r->data_offset % aligns[k], 0);
        assert_same_gguf(g, r);
        ll_str toks[4];
        ll_gguf_arr_strings(ll_gguf_find(r, "tokenizer.ggml.tokens"), toks);
        assert_int_equal(toks[3].len, 3);
        assert_memory_equal(toks[3].ptr, "a\0b", 3);
        assert_true(ll_str_eq(toks[2], "h\xc3\xa9llo"));
        assert_true(ll_str_eq(toks[1], ""));

        // The same file streamed in odd-sized pieces is byte-identical.
        ll_gguf_writer *w;
        const char *path2 = tmp_path("rt2.gguf");
        assert_int_equal(ll_gguf_writer_open(&w, path2, g, &err), LL_OK);
        for (uint64_t i = 0; i < g->n_tensors; i++)
            for (uint64_t o = 0; o < g->tensors[i].nbytes; o += 7) {
                size_t n = g->tensors[i].nbytes - o < 7 ? (size_t)(g->tensors[i].nbytes - o) : 7;
                assert_int_equal(ll_gguf_writer_write(w, bufs[i] + o, n, &err), LL_OK);
            }
        assert_int_equal(ll_gguf_writer_finish(w, &err), LL_OK);
        size_t n1, n2;
        char *f1 = tu_read_file(path, &n1), *f2 = tu_read_file(path2, &n2);
        assert_int_equal(n1, n2);
        assert_memory_equal(f1, f2, n1);
        free(f1);
        free(f2);
        unlink(path);
        unlink(path2);
        ll_gguf_free(r);
        ll_gguf_free(g);
        for (int i = 0; i < 4; i++) free(bufs[i]);
    }
    assert_int_equal(dir_count(), 0);
}

static void test_builder_errors(void **state) {
    (void)state;
    ll_gguf *g = ll_gguf_new("b.gguf");
    ll_error err;
    int64_t ne[] = {100, 2};
    assert_int_equal(ll_gguf_add_tensor(g, "w", LL_TYPE_F32, 2, ne, NULL, &err), LL_OK);
    assert_int_equal(ll_gguf_add_tensor(g, "w", LL_TYPE_F32, 2, ne, NULL, &err), LL_ERR_ARG);
    assert_non_null(strstr(err.message, "duplicate tensor 'w'"));
    assert_int_equal(ll_gguf_add_tensor(g, "q", LL_TYPE_Q4_0, 2, ne, NULL, &err), LL_ERR_ARG);
    assert_non_null(strstr(err.message, "tensor 'q' (Q4_0)"));
    assert_int_equal(ll_gguf_add_tensor(g, "u", 77, 2, ne, NULL, &err), LL_ERR_ARG);
    ne[1] = 0;
    assert_int_equal(ll_gguf_add_tensor(g, "z", LL_TYPE_F32, 2, ne, NULL, &err), LL_ERR_ARG);
    assert_int_equal(ll_gguf_write_file(g, tmp_path("x.gguf"), &err), LL_ERR_ARG); // 'w' has no data
    assert_non_null(strstr(err.message, "tensor 'w' has no data"));
    assert_int_equal(dir_count(), 0);
    ll_gguf_free(g);
}

// ---- atomic writes ------------------------------------------------------------------------------------------
static void test_atomic_write(void **state) {
    (void)state;
    uint8_t *bufs[4];
    ll_gguf *g = make_builder(bufs, 32);
    ll_error err;
    const char *path = tmp_path("model.gguf");
    ll_gguf_writer *w;

    // Abort leaves nothing behind.
    assert_int_equal(ll_gguf_writer_open(&w, path, g, &err), LL_OK);
    assert_int_equal(ll_gguf_writer_write(w, bufs[0], 100, &err), LL_OK);
    assert_int_equal(dir_count(), 1); // the temporary file
    ll_gguf_writer_abort(w);
    assert_int_equal(dir_count(), 0);

    // An existing file is replaced only by finish.
    FILE *f = fopen(path, "wb");
    fputs("old", f);
    fclose(f);
    assert_int_equal(ll_gguf_writer_open(&w, path, g, &err), LL_OK);
    for (uint64_t i = 0; i < g->n_tensors; i++)
        assert_int_equal(ll_gguf_writer_write(w, bufs[i], (size_t)g->tensors[i].nbytes, &err), LL_OK);
    size_t n;
    char *old = tu_read_file(path, &n);
    assert_string_equal(old, "old");
    free(old);
    assert_int_equal(ll_gguf_writer_write(w, "x", 1, &err), LL_ERR_ARG); // beyond the declared bytes
    assert_non_null(strstr(err.message, "beyond the 4 declared tensors"));
    assert_int_equal(ll_gguf_writer_finish(w, &err), LL_OK);
    assert_int_equal(dir_count(), 1);
    ll_gguf *r;
    assert_int_equal(ll_gguf_open(&r, path, &err), LL_OK);
    assert_same_gguf(g, r);
    ll_gguf_free(r);

    // finish with missing bytes fails and keeps the old file.
    assert_int_equal(ll_gguf_writer_open(&w, path, g, &err), LL_OK);
    assert_int_equal(ll_gguf_writer_write(w, bufs[0], (size_t)g->tensors[0].nbytes, &err), LL_OK);
    assert_int_equal(ll_gguf_writer_finish(w, &err), LL_ERR_ARG);
    assert_non_null(strstr(err.message, "only 1 of 4 tensors were written"));
    assert_int_equal(dir_count(), 1);
    assert_int_equal(ll_gguf_open(&r, path, &err), LL_OK);
    ll_gguf_free(r);
    unlink(path);

    // An unwritable destination fails at open with a message naming it.
    assert_int_equal(ll_gguf_writer_open(&w, "/nonexistent-dir/x.gguf", g, &err), LL_ERR_IO);
    assert_non_null(strstr(err.message, "/nonexistent-dir/x.gguf"));
    ll_gguf_free(g);
    for (int i = 0; i < 4; i++) free(bufs[i]);
}

// ---- the real files -----------------------------------------------------------------------------------
static void test_stories260k(void **state) {
    (void)state;
    TU_NEED_SHARED(path, "models/stories260K.gguf");
    ll_gguf *g;
    ll_error err;
    if (ll_gguf_open(&g, path, &err) != LL_OK) fail_msg("%s", err.message);
    assert_int_equal(g->version, 3);
    assert_int_equal(g->n_tensors, 48);
    ll_str s;
    assert_int_equal(ll_gguf_get_str(g, "general.architecture", &s, &err), LL_OK);
    assert_true(ll_str_eq(s, "llama"));
    uint32_t v;
    assert_int_equal(ll_gguf_get_u32(g, "llama.embedding_length", &v, &err), LL_OK);
    assert_int_equal(v, 64);
    assert_int_equal(ll_gguf_get_u32(g, "llama.block_count", &v, &err), LL_OK);
    assert_int_equal(v, 5);
    assert_int_equal(ll_gguf_get_u32(g, "llama.attention.head_count_kv", &v, &err), LL_OK);
    assert_int_equal(v, 4);
    assert_int_equal(ll_gguf_get_u32(g, "llama.feed_forward_length", &v, &err), LL_OK);
    assert_int_equal(v, 172);
    float eps;
    assert_int_equal(ll_gguf_get_f32(g, "llama.attention.layer_norm_rms_epsilon", &eps, &err), LL_OK);
    assert_true(eps == 1e-5f);
    assert_int_equal(ll_gguf_get_f32(g, "llama.rope.freq_base", &eps, &err), LL_ERR_MISSING); // absent (README)
    assert_int_equal(ll_gguf_get_u32(g, "tokenizer.ggml.padding_token_id", &v, &err), LL_OK);
    assert_int_equal(v, 4294967295u);
    const ll_gguf_kv *kv = ll_gguf_find(g, "tokenizer.ggml.tokens");
    assert_non_null(kv);
    assert_int_equal(kv->arr_n, 512);
    for (uint64_t i = 0; i < g->n_tensors; i++) assert_int_equal(g->tensors[i].type, LL_TYPE_F32);
    const ll_gguf_tensor *t = ll_gguf_find_tensor(g, "token_embd.weight");
    assert_non_null(t);
    assert_int_equal(t->ne[0], 64);
    assert_int_equal(t->ne[1], 512);
    // The llama2.c checkpoint holds the same embedding after its 7-int32 header (README section 4).
    const char *bin = tu_shared("models/stories260K.bin");
    if (bin) {
        size_t n;
        char *b = tu_read_file(bin, &n);
        assert_true(n >= 28 + t->nbytes);
        assert_memory_equal(b + 28, t->data, t->nbytes);
        free(b);
    }
    const ll_gguf_tensor *o = ll_gguf_find_tensor(g, "output.weight");
    assert_non_null(o);
    assert_memory_equal(o->data, t->data, t->nbytes); // a copy of the embedding (README)
    ll_gguf_free(g);
}

// Copy every KV and tensor of a real file through the builder and writer: same content after reading back,
// and (same layout rules as llama.cpp's writer) the same bytes.
static void test_rewrite_real_file(void **state) {
    (void)state;
    TU_NEED_SHARED(path, "models/stories260K.gguf");
    ll_gguf *g, *b = ll_gguf_new("copy"), *r;
    ll_error err;
    assert_int_equal(ll_gguf_open(&g, path, &err), LL_OK);
    for (uint64_t i = 0; i < g->n_kv; i++) ll_gguf_copy_kv(b, &g->kv[i]);
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const ll_gguf_tensor *t = &g->tensors[i];
        assert_int_equal(ll_gguf_add_tensor(b, t->name, t->type, t->n_dims, t->ne, t->data, &err), LL_OK);
        assert_int_equal(b->tensors[i].offset, t->offset);
    }
    const char *out = tmp_path("copy.gguf");
    assert_int_equal(ll_gguf_write_file(b, out, &err), LL_OK);
    assert_int_equal(ll_gguf_open(&r, out, &err), LL_OK);
    assert_same_gguf(g, r);
    assert_int_equal(r->data_offset, g->data_offset);
    size_t n;
    char *bytes = tu_read_file(out, &n);
    assert_true(n >= g->map->size);
    assert_memory_equal(bytes, g->map->data, g->map->size);
    free(bytes);
    unlink(out);
    ll_gguf_free(r);
    ll_gguf_free(b);
    ll_gguf_free(g);
}

static void test_tiny_llama(void **state) {
    (void)state;
    TU_NEED_SHARED(path, "golden/tiny-llama/tiny-llama-f16.gguf");
    ll_gguf *g;
    ll_error err;
    if (ll_gguf_open(&g, path, &err) != LL_OK) fail_msg("%s", err.message);
    assert_int_equal(g->n_tensors, 39);
    assert_int_equal(g->alignment, 32);
    uint32_t v;
    assert_int_equal(ll_gguf_get_u32(g, "general.file_type", &v, &err), LL_OK);
    assert_int_equal(v, 1);
    assert_int_equal(ll_gguf_get_u32(g, "llama.attention.head_count_kv", &v, &err), LL_OK);
    assert_int_equal(v, 2);
    float fb;
    assert_int_equal(ll_gguf_get_f32(g, "llama.rope.freq_base", &fb, &err), LL_OK);
    assert_true(fb == 10000.0f);
    bool bos, eos;
    assert_int_equal(ll_gguf_get_bool(g, "tokenizer.ggml.add_bos_token", &bos, &err), LL_OK);
    assert_int_equal(ll_gguf_get_bool(g, "tokenizer.ggml.add_eos_token", &eos, &err), LL_OK);
    assert_true(bos && !eos);
    int n16 = 0, n32 = 0;
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const ll_gguf_tensor *t = &g->tensors[i];
        if (t->n_dims == 2) n16 += t->type == LL_TYPE_F16;
        else n32 += t->type == LL_TYPE_F32 && t->n_dims == 1;
    }
    assert_int_equal(n16, 30);
    assert_int_equal(n32, 9);
    const ll_gguf_tensor *t = ll_gguf_find_tensor(g, "output.weight");
    assert_non_null(t);
    assert_int_equal(t->ne[0], 256);
    assert_int_equal(t->ne[1], 32000);
    assert_int_equal(t->nbytes, 256 * 32000 * 2);
    ll_gguf_free(g);
}

static void test_vocab_llama_spm(void **state) {
    (void)state;
    TU_NEED_SHARED(path, "models/vocab/ggml-vocab-llama-spm.gguf");
    ll_gguf *g;
    ll_error err;
    if (ll_gguf_open(&g, path, &err) != LL_OK) fail_msg("%s", err.message);
    assert_int_equal(g->n_tensors, 0);
    const ll_gguf_kv *kv = ll_gguf_find(g, "tokenizer.ggml.tokens");
    assert_non_null(kv);
    assert_int_equal(kv->arr_n, 32000);
    ll_str *toks = malloc(32000 * sizeof *toks);
    ll_gguf_arr_strings(kv, toks);
    assert_true(ll_str_eq(toks[0], "<unk>"));
    assert_true(ll_str_eq(toks[1], "<s>"));
    assert_true(ll_str_eq(toks[2], "</s>"));
    assert_true(ll_str_eq(toks[3], "<0x00>"));
    free(toks);
    kv = ll_gguf_find(g, "tokenizer.ggml.scores");
    assert_int_equal(kv->arr_type, LL_GGUF_FLOAT32);
    assert_int_equal(kv->arr_n, 32000);
    assert_int_equal(ll_gguf_arr_i64(ll_gguf_find(g, "tokenizer.ggml.token_type"), 1), 3); // <s> is CONTROL
    ll_str m;
    assert_int_equal(ll_gguf_get_str(g, "tokenizer.ggml.model", &m, &err), LL_OK);
    assert_true(ll_str_eq(m, "llama"));
    ll_gguf_free(g);
}

// A 70B-sized header (128k-token vocabulary, 723 tensor infos) parses quickly.
static void test_large_header(void **state) {
    (void)state;
    ll_gguf *g = ll_gguf_new("large.gguf");
    enum { NV = 128256, NT = 723 };
    ll_str *toks = malloc(NV * sizeof *toks);
    char *text = malloc(NV * 8);
    for (int i = 0; i < NV; i++) {
        toks[i].ptr = text + 8 * i;
        toks[i].len = (uint64_t)snprintf(text + 8 * i, 8, "t%d", i);
    }
    ll_gguf_set_arr_str(g, "tokenizer.ggml.tokens", NV, toks);
    for (int i = 0; i < NT; i++) {
        char name[64];
        snprintf(name, sizeof name, "blk.%d.w", i);
        assert_int_equal(ll_gguf_add_tensor(g, name, LL_TYPE_F32, 1, (int64_t[]){8}, text, NULL), LL_OK);
    }
    const char *path = tmp_path("large.gguf");
    ll_error err;
    assert_int_equal(ll_gguf_write_file(g, path, &err), LL_OK);
    ll_gguf *r;
    double t0 = ll_time_s();
    assert_int_equal(ll_gguf_open(&r, path, &err), LL_OK);
    printf("# note: parsed a %d-token, %d-tensor header in %.1f ms\n", NV, NT, (ll_time_s() - t0) * 1e3);
    assert_same_gguf(g, r);
    assert_non_null(ll_gguf_find_tensor(r, "blk.722.w"));
    unlink(path);
    ll_gguf_free(r);
    ll_gguf_free(g);
    free(toks);
    free(text);
}

static int setup(void **state) {
    (void)state;
    snprintf(g_dir, sizeof g_dir, "/tmp/llmlab-gguf-XXXXXX");
    return mkdtemp(g_dir) ? 0 : -1;
}
static int teardown(void **state) {
    (void)state;
    return rmdir(g_dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_small),
        cmocka_unit_test(test_bad_magic),
        cmocka_unit_test(test_bad_version),
        cmocka_unit_test(test_truncated_every_byte),
        cmocka_unit_test(test_absurd_counts),
        cmocka_unit_test(test_absurd_string_length),
        cmocka_unit_test(test_array_length_overflow),
        cmocka_unit_test(test_nested_array),
        cmocka_unit_test(test_unknown_value_type),
        cmocka_unit_test(test_bad_bool),
        cmocka_unit_test(test_bad_key),
        cmocka_unit_test(test_duplicate_key),
        cmocka_unit_test(test_duplicate_tensor),
        cmocka_unit_test(test_unknown_tensor_type),
        cmocka_unit_test(test_too_many_dims),
        cmocka_unit_test(test_bad_dim),
        cmocka_unit_test(test_dims_overflow),
        cmocka_unit_test(test_row_not_block_multiple),
        cmocka_unit_test(test_misaligned_offset),
        cmocka_unit_test(test_tensor_outside_file),
        cmocka_unit_test(test_overlapping_tensors),
        cmocka_unit_test(test_bad_alignment),
        cmocka_unit_test(test_getters),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_builder_errors),
        cmocka_unit_test(test_atomic_write),
        cmocka_unit_test(test_stories260k),
        cmocka_unit_test(test_rewrite_real_file),
        cmocka_unit_test(test_tiny_llama),
        cmocka_unit_test(test_vocab_llama_spm),
        cmocka_unit_test(test_large_header),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
