// test_crafted.c — a corpus of crafted GGUF files derived from stories260K.gguf (issue 24): counts and lengths
// near 2^64, overflowing dimension products, offsets past the end, bad alignment, duplicate names, unknown
// types, bad vocabularies, wrong head counts, NaN weights. Each is loaded through the API (ll_model_load; where
// that succeeds, ll_context_init, a one-token ll_eval and ll_generate) and through `llmlab run -m FILE -p hi -n 1`:
// the load fails with the expected ll_status and a message naming the one thing that is wrong; the command exits
// 1 with that message on stderr, nothing on stdout, and no crash or hang (60 s limit).
// The source file is parsed here (GGUF v3: magic, version, n_tensors u64, n_kv u64, KV pairs, tensor infos, pad,
// data) into records, a case edits them, and they are written out again (with optional byte patches after).
#include "testutil.h"

#include <time.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "llmlab.h"

#define MAX_KV 48
#define MAX_T 96

typedef struct kvrec {
    char key[160];
    uint32_t type;
    const uint8_t *val; // encoding after the type field (arrays: elem type, count, elements)
    size_t vlen;
    uint8_t own[64];    // small replacement values
    bool owned;         // the value is own[] (records are copied and moved: no pointer to it is kept)
} kvrec;

typedef struct trec {
    char name[96];
    uint32_t n_dims;
    uint64_t ne[4];
    uint32_t type;
    uint64_t off;
} trec;

typedef struct gmodel {
    uint32_t version;
    int n_kv, n_t;
    kvrec kv[MAX_KV];
    trec t[MAX_T];
    uint8_t *data; // owned copy of the data section
    size_t data_len;
    uint64_t align; // padding used when writing
    // layout of the last write
    size_t kv_pos[MAX_KV], val_pos[MAX_KV], t_pos[MAX_T], data_start;
} gmodel;

typedef struct blob {
    uint8_t *p;
    size_t n, cap;
} blob;

static const uint8_t *g_src;
static size_t g_src_len;
static gmodel g_orig;
static char g_dir[256];

static uint64_t le64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }
static uint32_t le32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }

static size_t vsize(uint32_t t) {
    static const size_t s[13] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
    return t < 13 ? s[t] : 0;
}

// Bytes of one value of type t at p (strings walked; arrays header + elements).
static size_t value_len(uint32_t t, const uint8_t *p) {
    if (t == 8) return 8 + (size_t)le64(p);
    if (t == 9) {
        uint32_t at = le32(p);
        uint64_t n = le64(p + 4);
        size_t off = 12;
        for (uint64_t i = 0; i < n; i++) off += at == 8 ? 8 + (size_t)le64(p + off) : vsize(at);
        return off;
    }
    return vsize(t);
}

static bool parse_src(gmodel *m) {
    const uint8_t *b = g_src;
    if (g_src_len < 24 || memcmp(b, "GGUF", 4)) return false;
    m->version = le32(b + 4);
    uint64_t nt = le64(b + 8), nk = le64(b + 16);
    if (nt > MAX_T || nk > MAX_KV) return false;
    size_t p = 24;
    m->align = 32;
    for (uint64_t i = 0; i < nk; i++) {
        kvrec *k = &m->kv[m->n_kv++];
        size_t kl = (size_t)le64(b + p);
        snprintf(k->key, sizeof k->key, "%.*s", (int)kl, (const char *)b + p + 8);
        p += 8 + kl;
        k->type = le32(b + p);
        p += 4;
        k->val = b + p;
        k->vlen = value_len(k->type, b + p);
        p += k->vlen;
    }
    for (uint64_t i = 0; i < nt; i++) {
        trec *t = &m->t[m->n_t++];
        size_t nl = (size_t)le64(b + p);
        snprintf(t->name, sizeof t->name, "%.*s", (int)nl, (const char *)b + p + 8);
        p += 8 + nl;
        t->n_dims = le32(b + p);
        p += 4;
        for (int d = 0; d < 4; d++) t->ne[d] = 1;
        for (uint32_t d = 0; d < t->n_dims; d++, p += 8) t->ne[d] = le64(b + p);
        t->type = le32(b + p);
        t->off = le64(b + p + 4);
        p += 12;
    }
    p = (p + 31) / 32 * 32;
    m->data = (uint8_t *)b + p; // borrowed in the original; copied per case
    m->data_len = g_src_len - p;
    return true;
}

static void put(blob *b, const void *src, size_t n) {
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2;
        b->p = realloc(b->p, b->cap);
        assert_non_null(b->p);
    }
    memcpy(b->p + b->n, src, n);
    b->n += n;
}
static void put32(blob *b, uint32_t v) { put(b, &v, 4); }
static void put64(blob *b, uint64_t v) { put(b, &v, 8); }

static void serialize(gmodel *m, blob *b) {
    b->n = 0;
    put(b, "GGUF", 4);
    put32(b, m->version);
    put64(b, (uint64_t)m->n_t);
    put64(b, (uint64_t)m->n_kv);
    for (int i = 0; i < m->n_kv; i++) {
        m->kv_pos[i] = b->n;
        put64(b, strlen(m->kv[i].key));
        put(b, m->kv[i].key, strlen(m->kv[i].key));
        put32(b, m->kv[i].type);
        m->val_pos[i] = b->n;
        put(b, m->kv[i].owned ? m->kv[i].own : m->kv[i].val, m->kv[i].vlen);
    }
    for (int i = 0; i < m->n_t; i++) {
        const trec *t = &m->t[i];
        m->t_pos[i] = b->n;
        put64(b, strlen(t->name));
        put(b, t->name, strlen(t->name));
        put32(b, t->n_dims);
        for (uint32_t d = 0; d < t->n_dims; d++) put64(b, t->ne[d]);
        put32(b, t->type);
        put64(b, t->off);
    }
    static const uint8_t zeros[4096];
    put(b, zeros, (m->align - b->n % m->align) % m->align);
    m->data_start = b->n;
    put(b, m->data, m->data_len);
}

// ---- edits --------------------------------------------------------------------------------------------------
static int kv_find(const gmodel *m, const char *key) {
    for (int i = 0; i < m->n_kv; i++)
        if (!strcmp(m->kv[i].key, key)) return i;
    fail_msg("crafted: no key '%s' in the source model", key);
    return -1;
}
static int t_find(const gmodel *m, const char *name) {
    for (int i = 0; i < m->n_t; i++)
        if (!strcmp(m->t[i].name, name)) return i;
    fail_msg("crafted: no tensor '%s' in the source model", name);
    return -1;
}
static kvrec *kv_add(gmodel *m, const char *key) {
    assert_true(m->n_kv < MAX_KV);
    kvrec *k = &m->kv[m->n_kv++];
    memset(k, 0, sizeof *k);
    snprintf(k->key, sizeof k->key, "%s", key);
    return k;
}
static void kv_raw(kvrec *k, uint32_t type, const void *v, size_t n) {
    assert_true(n <= sizeof k->own);
    k->type = type;
    memcpy(k->own, v, n);
    k->owned = true;
    k->vlen = n;
}
static void set_u32(gmodel *m, const char *key, uint32_t v) { kv_raw(&m->kv[kv_find(m, key)], 4, &v, 4); }
static void set_str(kvrec *k, const char *s) {
    uint8_t b[64];
    uint64_t n = strlen(s);
    memcpy(b, &n, 8);
    memcpy(b + 8, s, n);
    kv_raw(k, 8, b, 8 + n);
}
static void kv_del(gmodel *m, const char *key) {
    int i = kv_find(m, key);
    memmove(&m->kv[i], &m->kv[i + 1], (size_t)(m->n_kv - i - 1) * sizeof m->kv[0]);
    m->n_kv--;
}
static float *tdata(gmodel *m, const char *name) { return (float *)(m->data + m->t[t_find(m, name)].off); }

// ---- the cases ----------------------------------------------------------------------------------------------
typedef struct crafted {
    const char *name;
    void (*edit)(gmodel *m);             // on the records, before writing
    void (*patch)(gmodel *m, blob *b);   // on the bytes, after writing (optional)
    ll_status want;                      // LL_OK: the load succeeds (NaN weights: generation must refuse)
    const char *msg1, *msg2;             // substrings the message must hold (msg2 optional)
} crafted;

static void p64(blob *b, size_t at, uint64_t v) { assert_true(at + 8 <= b->n); memcpy(b->p + at, &v, 8); }
static void p32(blob *b, size_t at, uint32_t v) { assert_true(at + 4 <= b->n); memcpy(b->p + at, &v, 4); }
static size_t val_at(gmodel *m, const char *key) { return m->val_pos[kv_find(m, key)]; }

// header
static void e_magic(gmodel *m, blob *b) { memcpy(b->p, "GGML", 4); }
static void e_v1(gmodel *m) { m->version = 1; }
static void e_v7(gmodel *m) { m->version = 7; }
static void e_bigendian(gmodel *m) { m->version = 0x03000000; }
static void e_nt_max(gmodel *m, blob *b) { p64(b, 8, UINT64_MAX); }
static void e_nkv_max(gmodel *m, blob *b) { p64(b, 16, UINT64_MAX); }
static void e_nkv_2_63(gmodel *m, blob *b) { p64(b, 16, 1ull << 63); }
static void e_nt_plus1(gmodel *m, blob *b) { p64(b, 8, (uint64_t)m->n_t + 1); }
static void e_trunc_header(gmodel *m, blob *b) { b->n = 5000; }
static void e_trunc_infos(gmodel *m, blob *b) { b->n = m->t_pos[10] + 8 + strlen(m->t[10].name) + 4 + 4; }
static void e_trunc_data(gmodel *m, blob *b) { b->n -= 1000; }
// key/value pairs
static void e_keylen_max(gmodel *m, blob *b) { p64(b, m->kv_pos[0], UINT64_MAX); }
static void e_keylen_big(gmodel *m, blob *b) { p64(b, m->kv_pos[3], UINT64_MAX - 7); }
static void e_strlen_max(gmodel *m, blob *b) { p64(b, val_at(m, "general.architecture"), UINT64_MAX); }
static void e_tokens_n_max(gmodel *m, blob *b) { p64(b, val_at(m, "tokenizer.ggml.tokens") + 4, UINT64_MAX); }
static void e_scores_n_big(gmodel *m, blob *b) { p64(b, val_at(m, "tokenizer.ggml.scores") + 4, 1ull << 62); }
static void e_token100_len(gmodel *m, blob *b) {
    size_t p = val_at(m, "tokenizer.ggml.tokens") + 12;
    for (int i = 0; i < 100; i++) p += 8 + (size_t)le64(b->p + p);
    p64(b, p, UINT64_MAX - 1);
}
static void e_vtype_unknown(gmodel *m, blob *b) { p32(b, val_at(m, "general.name") - 4, 13); }
static void e_arr_elem_unknown(gmodel *m, blob *b) { p32(b, val_at(m, "tokenizer.ggml.token_type"), 99); }
static void e_arr_nested(gmodel *m, blob *b) { p32(b, val_at(m, "tokenizer.ggml.token_type"), 9); }
static void e_key_empty(gmodel *m) { m->kv[kv_find(m, "general.name")].key[0] = 0; }
static void e_key_nul(gmodel *m, blob *b) { b->p[m->kv_pos[kv_find(m, "general.name")] + 8 + 3] = 0; }
static void e_dup_key(gmodel *m) {
    kvrec *k = kv_add(m, "llama.embedding_length");
    uint32_t v = 64;
    kv_raw(k, 4, &v, 4);
}
static void e_bool_2(gmodel *m) { uint8_t v = 2; kv_raw(kv_add(m, "tokenizer.ggml.add_bos_token"), 7, &v, 1); }
static void e_align_3(gmodel *m) { uint32_t v = 3; kv_raw(kv_add(m, "general.alignment"), 4, &v, 4); }
static void e_align_str(gmodel *m) { set_str(kv_add(m, "general.alignment"), "32"); }
static void e_align_512(gmodel *m) {
    uint32_t v = 512;
    kv_raw(kv_add(m, "general.alignment"), 4, &v, 4);
    m->align = 512;
}
static void e_toff_misaligned(gmodel *m) { m->t[t_find(m, "blk.0.attn_q.weight")].off += 4; }
// hyperparameters
static void e_no_embd(gmodel *m) { kv_del(m, "llama.embedding_length"); }
static void e_no_arch(gmodel *m) { kv_del(m, "general.architecture"); }
static void e_arch_gpt2(gmodel *m) { set_str(&m->kv[kv_find(m, "general.architecture")], "gpt2"); }
static void e_blocks_0(gmodel *m) { set_u32(m, "llama.block_count", 0); }
static void e_blocks_huge(gmodel *m) {
    uint64_t v = 1ull << 40;
    kv_raw(&m->kv[kv_find(m, "llama.block_count")], 10, &v, 8);
}
static void e_blocks_6(gmodel *m) { set_u32(m, "llama.block_count", 6); }
static void e_embd_str(gmodel *m) { set_str(&m->kv[kv_find(m, "llama.embedding_length")], "64"); }
static void e_embd_neg(gmodel *m) { int32_t v = -64; kv_raw(&m->kv[kv_find(m, "llama.embedding_length")], 5, &v, 4); }
static void e_heads_0(gmodel *m) { set_u32(m, "llama.attention.head_count", 0); }
static void e_heads_12(gmodel *m) { set_u32(m, "llama.attention.head_count", 12); }
static void e_kvheads_3(gmodel *m) { set_u32(m, "llama.attention.head_count_kv", 3); }
static void e_kvheads_16(gmodel *m) { set_u32(m, "llama.attention.head_count_kv", 16); }
static void e_heads_16(gmodel *m) { set_u32(m, "llama.attention.head_count", 16); }
static void e_heads_4(gmodel *m) { set_u32(m, "llama.attention.head_count", 4); }
static void e_rot_7(gmodel *m) { set_u32(m, "llama.rope.dimension_count", 7); }
static void e_eps_nan(gmodel *m) {
    float v = NAN;
    kv_raw(&m->kv[kv_find(m, "llama.attention.layer_norm_rms_epsilon")], 6, &v, 4);
}
static void e_base_neg(gmodel *m) { float v = -1; kv_raw(kv_add(m, "llama.rope.freq_base"), 6, &v, 4); }
static void e_ctx_0(gmodel *m) { set_u32(m, "llama.context_length", 0); }
// tensor infos
static void e_ndims_5(gmodel *m) { m->t[t_find(m, "blk.1.attn_k.weight")].n_dims = 5; }
static void e_dim_0(gmodel *m) { m->t[t_find(m, "blk.1.attn_v.weight")].ne[1] = 0; }
static void e_dim_max(gmodel *m) { m->t[t_find(m, "output_norm.weight")].ne[0] = UINT64_MAX; }
static void e_dims_overflow(gmodel *m) {
    trec *t = &m->t[t_find(m, "blk.2.ffn_up.weight")];
    t->ne[0] = 1ull << 32;
    t->ne[1] = 1ull << 32;
}
static void e_bytes_overflow(gmodel *m) {
    trec *t = &m->t[t_find(m, "blk.2.ffn_gate.weight")];
    t->ne[0] = 1ull << 62; // 2^62 elements fit int64; 2^62 * 4 bytes do not fit u64
    t->ne[1] = 1;
}
static void e_type_unknown(gmodel *m) { m->t[t_find(m, "blk.3.attn_output.weight")].type = 99; }
static void e_type_block(gmodel *m) { m->t[t_find(m, "blk.0.ffn_down.weight")].type = 2; } // q4_0, rows of 172
static void e_type_vec_q8(gmodel *m) { m->t[t_find(m, "blk.0.attn_norm.weight")].type = 8; } // q8_0 norm
static void e_off_far(gmodel *m) { m->t[t_find(m, "output.weight")].off = UINT64_MAX - 31; }
static void e_off_end(gmodel *m) { m->t[t_find(m, "blk.4.ffn_norm.weight")].off = m->data_len; }
static void e_overlap(gmodel *m) {
    m->t[t_find(m, "blk.0.attn_k.weight")].off = m->t[t_find(m, "blk.0.attn_q.weight")].off;
}
static void e_dup_tensor(gmodel *m) { strcpy(m->t[t_find(m, "blk.1.attn_k.weight")].name, "blk.1.attn_q.weight"); }
static void e_tname_empty(gmodel *m) { m->t[t_find(m, "blk.1.ffn_up.weight")].name[0] = 0; }
static void e_missing_tensor(gmodel *m) { strcpy(m->t[t_find(m, "blk.2.ffn_up.weight")].name, "blk.2.ffn_upx.weight"); }
static void e_shape(gmodel *m) { m->t[t_find(m, "blk.0.attn_q.weight")].ne[1] = 32; }
static void e_shape_3d(gmodel *m) {
    trec *t = &m->t[t_find(m, "blk.3.ffn_gate.weight")];
    t->n_dims = 3;
    t->ne[1] = 86;
    t->ne[2] = 2;
}
static void e_embd_cols(gmodel *m) {
    trec *t = &m->t[t_find(m, "token_embd.weight")];
    t->ne[0] = 32;
    t->ne[1] = 1024;
}
static void e_vocab_rows(gmodel *m) {
    m->t[t_find(m, "token_embd.weight")].ne[1] = 256;
    m->t[t_find(m, "output.weight")].ne[1] = 256;
}
// vocabulary
static void e_no_tokens(gmodel *m) { kv_del(m, "tokenizer.ggml.tokens"); }
static void e_tok_model(gmodel *m) { set_str(&m->kv[kv_find(m, "tokenizer.ggml.model")], "wordpiece"); }
static void e_scores_short(gmodel *m) { // the last score dropped: 511 floats
    static uint8_t v[12 + 512 * 4];
    kvrec *k = &m->kv[kv_find(m, "tokenizer.ggml.scores")];
    memcpy(v, k->val, 12 + 511 * 4);
    uint64_t n = 511;
    memcpy(v + 4, &n, 8);
    k->val = v;
    k->vlen = 12 + 511 * 4;
}
static void e_scores_type(gmodel *m) { // one string instead of 512 floats
    uint8_t v[21];
    uint32_t at = 8;
    uint64_t n = 1, l = 1;
    memcpy(v, &at, 4);
    memcpy(v + 4, &n, 8);
    memcpy(v + 12, &l, 8);
    v[20] = 'x';
    kv_raw(&m->kv[kv_find(m, "tokenizer.ggml.scores")], 9, v, 21);
}
static void e_tokens_int(gmodel *m) {
    uint8_t v[16];
    uint32_t at = 5;
    uint64_t n = 1;
    int32_t x = 7;
    memcpy(v, &at, 4);
    memcpy(v + 4, &n, 8);
    memcpy(v + 12, &x, 4);
    kv_raw(&m->kv[kv_find(m, "tokenizer.ggml.tokens")], 9, v, 16);
}
static void e_token_dup(gmodel *m, blob *b) { // token 300's text copied over token 301's (equal lengths)
    size_t p = val_at(m, "tokenizer.ggml.tokens") + 12, q;
    for (int i = 0; i < 300; i++) p += 8 + (size_t)le64(b->p + p);
    q = p + 8 + (size_t)le64(b->p + p);
    for (int i = 301; i < 512; i++) {
        if (le64(b->p + q) == le64(b->p + p)) {
            memcpy(b->p + q + 8, b->p + p + 8, (size_t)le64(b->p + p));
            return;
        }
        q += 8 + (size_t)le64(b->p + q);
    }
    fail_msg("crafted: no token of the same length after token 300");
}
static void e_byte_token(gmodel *m, blob *b) { // token 3 is <0x00>, type byte (6): break its text
    size_t p = val_at(m, "tokenizer.ggml.tokens") + 12;
    for (int i = 0; i < 3; i++) p += 8 + (size_t)le64(b->p + p);
    assert_memory_equal(b->p + p + 8, "<0x00>", 6);
    memcpy(b->p + p + 8, "<0xZZ>", 6);
}
static void e_bos_str(gmodel *m) { set_str(&m->kv[kv_find(m, "tokenizer.ggml.bos_token_id")], "1"); }
// weights
static void e_nan_norm(gmodel *m) { tdata(m, "output_norm.weight")[5] = NAN; }
static void e_nan_embd(gmodel *m) { for (int i = 0; i < 512 * 64; i++) tdata(m, "token_embd.weight")[i] = NAN; }
static void e_inf_ffn(gmodel *m) { for (int i = 0; i < 172 * 64; i++) tdata(m, "blk.2.ffn_down.weight")[i] = INFINITY; }
static void e_nan_out(gmodel *m) { for (int i = 0; i < 512 * 64; i++) tdata(m, "output.weight")[i] = NAN; }

#define F LL_ERR_FORMAT
#define M LL_ERR_MISSING
#define U LL_ERR_UNSUPPORTED
static const crafted k_cases[] = {
    {"bad_magic", NULL, e_magic, F, "not a GGUF file", "not a llama2.c checkpoint"},
    {"version_1", e_v1, NULL, U, "GGUF version 1 is not supported", NULL},
    {"version_7", e_v7, NULL, U, "unsupported GGUF version 7", NULL},
    {"big_endian", e_bigendian, NULL, U, "big-endian", NULL},
    {"n_tensors_2^64-1", NULL, e_nt_max, F, "claims 18446744073709551615 tensors", NULL},
    {"n_kv_2^64-1", NULL, e_nkv_max, F, "claims 18446744073709551615 key/value pairs", NULL},
    {"n_kv_2^63", NULL, e_nkv_2_63, F, "claims 9223372036854775808 key/value pairs", NULL},
    {"n_tensors_plus_1", NULL, e_nt_plus1, F, "tensor name 48", "is empty"},
    {"truncated_header", NULL, e_trunc_header, F, "key 'tokenizer.ggml.tokens': string", "runs past the end"},
    {"truncated_infos", NULL, e_trunc_infos, F, "truncated header: the info of tensor 'blk.0.ffn_up.weight'", NULL},
    {"truncated_data", NULL, e_trunc_data, F, "tensor 'blk.4.ffn_up.weight' data", "outside the file"},
    {"key_len_2^64-1", NULL, e_keylen_max, F, "the key of entry 0", "string length 18446744073709551615"},
    {"key_len_2^64-8", NULL, e_keylen_big, F, "the key of entry 3", "string length 18446744073709551608"},
    {"str_len_2^64-1", NULL, e_strlen_max, F, "key 'general.architecture'", "length 18446744073709551615"},
    {"tokens_count_2^64-1", NULL, e_tokens_n_max, F, "key 'tokenizer.ggml.tokens' holds 18446744073709551615", NULL},
    {"scores_count_2^62", NULL, e_scores_n_big, F, "key 'tokenizer.ggml.scores' holds 4611686018427387904", NULL},
    {"token_len_2^64-2", NULL, e_token100_len, F, "key 'tokenizer.ggml.tokens': string 100 of 512", "18446744073709551614"},
    {"value_type_13", NULL, e_vtype_unknown, F, "key 'general.name' has unknown value type 13", NULL},
    {"array_elem_type_99", NULL, e_arr_elem_unknown, F, "key 'tokenizer.ggml.token_type' is an array of unknown element type 99", NULL},
    {"nested_array", NULL, e_arr_nested, F, "key 'tokenizer.ggml.token_type' is a nested array", NULL},
    {"empty_key", e_key_empty, NULL, F, "key 5", "is empty"},
    {"key_with_nul", NULL, e_key_nul, F, "key 5", "NUL byte"},
    {"duplicate_key", e_dup_key, NULL, F, "duplicate key 'llama.embedding_length'", NULL},
    {"bool_value_2", e_bool_2, NULL, F, "key 'tokenizer.ggml.add_bos_token': bool value 2", NULL},
    {"alignment_3", e_align_3, NULL, F, "key 'general.alignment' is 3", "power of two"},
    {"alignment_string", e_align_str, NULL, F, "key 'general.alignment' has type string", NULL},
    {"alignment_512", e_align_512, NULL, F, "tensor 'output.weight' data offset 131328 is not a multiple of the alignment 512", NULL},
    {"offset_misaligned", e_toff_misaligned, NULL, F, "tensor 'blk.0.attn_q.weight' data offset 262404", "alignment 32"},
    {"no_embedding_length", e_no_embd, NULL, M, "missing required key 'llama.embedding_length'", NULL},
    {"no_architecture", e_no_arch, NULL, M, "missing required key 'general.architecture'", NULL},
    {"architecture_gpt2", e_arch_gpt2, NULL, U, "architecture 'gpt2' is not supported", NULL},
    {"block_count_0", e_blocks_0, NULL, F, "'llama.block_count' = 0 is out of range", NULL},
    {"block_count_2^40", e_blocks_huge, NULL, F, "'llama.block_count' = 1099511627776 is out of range", NULL},
    {"block_count_6", e_blocks_6, NULL, M, "missing required tensor 'blk.5.attn_norm.weight'", NULL},
    {"embedding_length_string", e_embd_str, NULL, F, "key 'llama.embedding_length' has type string", NULL},
    {"embedding_length_-64", e_embd_neg, NULL, F, "key 'llama.embedding_length' is -64", NULL},
    {"context_length_0", e_ctx_0, NULL, F, "'llama.context_length' = 0 is out of range", NULL},
    {"head_count_0", e_heads_0, NULL, F, "'llama.attention.head_count' = 0 is out of range", NULL},
    {"head_count_12", e_heads_12, NULL, F, "12 heads do not divide embedding_length 64", NULL},
    {"head_count_kv_3", e_kvheads_3, NULL, F, "3 kv heads do not divide the 8 heads", "head_count_kv"},
    {"head_count_kv_16", e_kvheads_16, NULL, F, "16 kv heads do not divide the 8 heads", "head_count_kv"},
    {"head_count_16", e_heads_16, NULL, F, "rope.dimension_count 8 must be even and <= head size 4", NULL},
    {"head_count_4", e_heads_4, NULL, F, "tensor 'blk.0.attn_k.weight' has shape [64, 32]", "[64, 64]"},
    {"rope_dims_7", e_rot_7, NULL, F, "rope.dimension_count 7 must be even", NULL},
    {"rms_eps_nan", e_eps_nan, NULL, F, "'llama.attention.layer_norm_rms_epsilon' = nan is out of range", NULL},
    {"rope_base_-1", e_base_neg, NULL, F, "'llama.rope.freq_base' = -1 is out of range", NULL},
    {"n_dims_5", e_ndims_5, NULL, F, "tensor 'blk.1.attn_k.weight' has 5 dimensions", NULL},
    {"dim_0", e_dim_0, NULL, F, "tensor 'blk.1.attn_v.weight' dimension 1 is 0", NULL},
    {"dim_2^64-1", e_dim_max, NULL, F, "tensor 'output_norm.weight' dimension 0 is -1", "must be positive"},
    {"dims_product_overflow", e_dims_overflow, NULL, F, "tensor 'blk.2.ffn_up.weight' has too many elements", NULL},
    {"bytes_overflow", e_bytes_overflow, NULL, F, "tensor 'blk.2.ffn_gate.weight' is too large", NULL},
    {"tensor_type_99", e_type_unknown, NULL, U, "tensor 'blk.3.attn_output.weight' has unknown type id 99", NULL},
    {"q4_0_rows_of_172", e_type_block, NULL, F, "tensor 'blk.0.ffn_down.weight' (Q4_0) has rows of 172", NULL},
    {"q8_0_norm", e_type_vec_q8, NULL, U, "tensor 'blk.0.attn_norm.weight' has type Q8_0", "must be F32"},
    {"offset_2^64-32", e_off_far, NULL, F, "tensor 'output.weight' data offset 18446744073709551584", "far outside"},
    {"offset_at_end", e_off_end, NULL, F, "tensor 'blk.4.ffn_norm.weight' data", "outside the file"},
    {"overlapping_tensors", e_overlap, NULL, F, "'blk.0.attn_q.weight'", "'blk.0.attn_k.weight'"},
    {"duplicate_tensor", e_dup_tensor, NULL, F, "duplicate tensor 'blk.1.attn_q.weight'", NULL},
    {"empty_tensor_name", e_tname_empty, NULL, F, "tensor name 19", "is empty"},
    {"missing_tensor", e_missing_tensor, NULL, M, "missing required tensor 'blk.2.ffn_up.weight'", NULL},
    {"wrong_shape", e_shape, NULL, F, "tensor 'blk.0.attn_q.weight' has shape [64, 32]", "[64, 64]"},
    {"three_dims", e_shape_3d, NULL, F, "tensor 'blk.3.ffn_gate.weight' has 3 dimensions [64, 86, 2, 1]", NULL},
    {"embedding_columns", e_embd_cols, NULL, F, "token_embd.weight rows have 32 values but embedding_length is 64", NULL},
    {"vocab_over_rows", e_vocab_rows, NULL, F, "the vocabulary has 512 tokens but token_embd.weight only 256 rows", NULL},
    {"no_tokens", e_no_tokens, NULL, M, "missing required key 'tokenizer.ggml.tokens'", NULL},
    {"tokenizer_wordpiece", e_tok_model, NULL, U, "tokenizer model 'wordpiece'", "tokenizer.ggml.model"},
    {"scores_511", e_scores_short, NULL, F, "key 'tokenizer.ggml.scores' has 511 entries", NULL},
    {"scores_strings", e_scores_type, NULL, F, "key 'tokenizer.ggml.scores' must be an array of numbers", NULL},
    {"tokens_int32", e_tokens_int, NULL, F, "key 'tokenizer.ggml.tokens' must be a non-empty array of strings", NULL},
    {"duplicate_token", NULL, e_token_dup, F, "duplicate token in 'tokenizer.ggml.tokens'", NULL},
    {"byte_token_text", NULL, e_byte_token, F, "token 3 ('<0xZZ>') has type byte", NULL},
    {"bos_id_string", e_bos_str, NULL, F, "key 'tokenizer.ggml.bos_token_id' has type string", NULL},
    {"nan_output_norm", e_nan_norm, NULL, LL_OK, "non-finite logits", NULL},
    {"nan_token_embd", e_nan_embd, NULL, LL_OK, "non-finite logits", NULL},
    {"inf_ffn_down", e_inf_ffn, NULL, LL_OK, "non-finite logits", NULL},
    {"nan_output", e_nan_out, NULL, LL_OK, "non-finite logits", NULL},
};
#undef F
#undef M
#undef U
#define N_CASES ((int)(sizeof k_cases / sizeof k_cases[0]))

// ---- running a case -------------------------------------------------------------------------------------------
static const char *bin_path(void) {
    const char *b = getenv("LLMLAB_BIN");
    return b && *b ? b : "build/llmlab";
}

static bool has(const char *hay, const char *needle) { return !needle || strstr(hay, needle) != NULL; }

// The API: load; where it succeeds, a context, a one-token eval and a one-token generation.
static int api_case(const crafted *c, const char *path) {
    ll_error err = {0};
    ll_model *m = NULL;
    ll_status s = ll_model_load(path, NULL, &m, &err);
    int bad = 0;
    if (s != c->want) {
        printf("# %s: ll_model_load gave %s, want %s: %s\n", c->name, ll_status_name(s), ll_status_name(c->want),
               s ? err.message : "");
        bad = 1;
    } else if (s != LL_OK && (!has(err.message, c->msg1) || !has(err.message, c->msg2) || !strstr(err.message, path))) {
        printf("# %s: message lacks '%s'%s%s: %s\n", c->name, c->msg1, c->msg2 ? " / " : "", c->msg2 ? c->msg2 : "",
               err.message);
        bad = 1;
    } else if (s != LL_OK) {
        printf("# %-24s %s\n", c->name, err.message + strlen(path));
    }
    if (s != LL_OK) return bad;
    ll_context_params cp = ll_context_default_params();
    cp.n_ctx = 16;
    cp.device = "cpu";
    ll_context *ctx = NULL;
    if ((s = ll_context_init(m, &cp, &ctx, &err)) != LL_OK) {
        printf("# %s: ll_context_init: %s\n", c->name, err.message);
        ll_model_free(m);
        return 1;
    }
    int32_t tok = 1;
    if ((s = ll_eval(ctx, &tok, 1, false, &err)) != LL_OK) {
        bad = !has(err.message, c->msg1);
        printf("# %-24s ll_eval: %s\n", c->name, err.message);
    } else {
        int nv = ll_model_n_vocab(m), nonfinite = tu_count_nonfinite(ll_logits(ctx, -1), (size_t)nv);
        if (nonfinite == 0) { // the edit must reach the logits, else the generation check below proves nothing
            printf("# %s: the one-token eval gave %d finite logits: the crafted weights had no effect\n", c->name, nv);
            bad = 1;
        }
        ll_sampler_params sp = ll_sampler_default_params();
        sp.temp = 0;
        ll_sampler *smp = ll_sampler_init(&sp, ll_model_n_vocab(m));
        ll_gen_params gp = ll_gen_default_params();
        gp.max_tokens = 1;
        ll_gen_result res;
        ll_context_reset(ctx);
        s = ll_generate(ctx, smp, &tok, 1, &gp, NULL, NULL, &res, &err);
        if (s != LL_ERR_FORMAT || !has(err.message, c->msg1)) {
            printf("# %s: ll_generate gave %s (want LL_ERR_FORMAT '%s'): %s\n", c->name, ll_status_name(s), c->msg1,
                   s ? err.message : "");
            bad = 1;
        } else {
            printf("# %-24s ll_generate: %s\n", c->name, err.message);
        }
        ll_sampler_free(smp);
    }
    ll_context_free(ctx);
    ll_model_free(m);
    return bad;
}

// The command: exit 1, the message on stderr, nothing on stdout, within 60 s.
static int cli_case(const crafted *c, const char *path) {
    char cmd[2048], out[1024], errf[1024];
    snprintf(out, sizeof out, "%s/out", g_dir);
    snprintf(errf, sizeof errf, "%s/err", g_dir);
    const char *ex = getenv("LLMLAB_EXEC");
    snprintf(cmd, sizeof cmd, "timeout -k 5 60 %s '%s' run -m '%s' -p hi -n 1 >'%s' 2>'%s'", ex ? ex : "", bin_path(),
             path, out, errf);
    int rc = system(cmd);
    int code = WIFEXITED(rc) ? WEXITSTATUS(rc) : 128 + WTERMSIG(rc);
    size_t no = 0, ne = 0;
    char *o = tu_read_file(out, &no), *e = tu_read_file(errf, &ne);
    int bad = 0;
    if (code != 1 || !o || no != 0 || !e || !has(e, c->msg1) || !has(e, c->msg2)) {
        printf("# %s: llmlab run exited %d (want 1), stdout %zu bytes (want 0), stderr: %.400s\n", c->name, code, no,
               e ? e : "(unreadable)");
        bad = 1;
    }
    free(o);
    free(e);
    return bad;
}

static bool have_bin(void) { return access(bin_path(), X_OK) == 0; }

static int g_ready;
static int setup(void **state) {
    const char *src = tu_shared("models/stories260K.gguf");
    if (!src) return 0;
    size_t n = 0;
    g_src = (const uint8_t *)tu_read_file(src, &n);
    g_src_len = n;
    if (!g_src || !parse_src(&g_orig)) return -1;
    snprintf(g_dir, sizeof g_dir, "/tmp/llmlab_crafted.XXXXXX");
    if (!mkdtemp(g_dir)) return -1;
    g_ready = 1;
    return 0;
}

static int teardown(void **state) {
    if (g_ready) {
        char cmd[512];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
        if (system(cmd) != 0) return -1;
    }
    free((void *)g_src);
    return 0;
}

// Writes case i's file; its path in path.
static void write_case(int i, char *path, size_t cap) {
    const crafted *c = &k_cases[i];
    static gmodel m;
    m = g_orig;
    m.data = malloc(g_orig.data_len);
    assert_non_null(m.data);
    memcpy(m.data, g_orig.data, g_orig.data_len);
    if (c->edit) c->edit(&m);
    blob b = {0};
    serialize(&m, &b);
    if (c->patch) c->patch(&m, &b);
    snprintf(path, cap, "%s/%02d_%s.gguf", g_dir, i, c->name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(b.p, 1, b.n, f), b.n);
    fclose(f);
    free(b.p);
    free(m.data);
}

static void test_corpus(void **state) {
    if (!g_ready) TU_SKIP("models/stories260K.gguf not found under LLMLAB_SHARED: the crafted corpus is not built");
    bool cli = have_bin();
    if (!cli) printf("# note: %s not found (LLMLAB_BIN): the command half of each case is skipped\n", bin_path());
    double t0 = (double)clock() / CLOCKS_PER_SEC;
    int n_bad = 0;
    for (int i = 0; i < N_CASES; i++) {
        char path[512];
        write_case(i, path, sizeof path);
        int bad = api_case(&k_cases[i], path);
        if (cli) bad |= cli_case(&k_cases[i], path);
        if (bad) printf("# FAILED case %d %s\n", i, k_cases[i].name);
        n_bad += bad;
    }
    printf("# %d crafted files, %d wrong (api CPU time %.2f s)\n", N_CASES, n_bad, (double)clock() / CLOCKS_PER_SEC - t0);
    assert_int_equal(n_bad, 0);
}

// The unmodified rewrite loads and generates: the corpus's failures come from its edits, not from the writer.
static void test_rewrite_loads(void **state) {
    if (!g_ready) TU_SKIP("models/stories260K.gguf not found under LLMLAB_SHARED: the crafted corpus is not built");
    static gmodel m;
    m = g_orig;
    blob b = {0};
    serialize(&m, &b);
    assert_int_equal(b.n, g_src_len);
    assert_memory_equal(b.p, g_src, g_src_len);
    free(b.p);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rewrite_loads),
        cmocka_unit_test(test_corpus),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
