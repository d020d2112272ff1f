// llama2c.c — llama2.c checkpoints (legacy 7-int32 header and the "ak42" version-1 export) and tokenizer.bin,
// presented as an in-memory GGUF: arch "llama", F32 tensor views into the mapped checkpoint (no copy).
// Layouts: llama2.c export.py (legacy_export, version1_export) and run.c (memory_map_weights, build_tokenizer).
#include "formats/llama2c.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define L2C_MAGIC 0x616b3432u // "ak42" read as a little-endian uint32
#define L2C_LEGACY_HEADER 28  // 7 x int32
#define L2C_V1_HEADER 256     // magic, version, 7 x int32, uint8 shared flag, zero padding

// Sanity bounds: far above any real llama2.c model, low enough that every size below fits in 64 bits.
#define L2C_MAX_DIM (1 << 16)
#define L2C_MAX_HIDDEN (1 << 20)
#define L2C_MAX_LAYERS 1024
#define L2C_MAX_VOCAB (1 << 22)
#define L2C_MAX_SEQ (1 << 22)

typedef struct l2c_hparams {
    int32_t dim, hidden, n_layers, n_heads, n_kv_heads, vocab, seq_len; // vocab made positive
    bool shared;                                                        // classifier = token embedding
    int version;                                                        // 0 legacy, 1 ak42
    uint64_t header;                                                    // bytes before the first weight
} l2c_hparams;

// File offsets of each weight array. Per-layer arrays are stacked: layer i starts at base + i * per_layer.
typedef struct l2c_layout {
    uint64_t tok, rms_att, wq, wk, wv, wo, rms_ffn, w1, w2, w3, rms_final, wcls, end;
} l2c_layout;

bool ll_llama2c_probe(const char *path) {
    // Regular files only (a FIFO would block the open and eat the bytes); the rest is for the GGUF reader to report.
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) return false; // unreadable: let the GGUF reader report it
    struct stat st;
    char magic[4] = {0};
    ssize_t n = fstat(fd, &st) == 0 && S_ISREG(st.st_mode) ? read(fd, magic, 4) : -1;
    close(fd);
    return n == 4 && memcmp(magic, "GGUF", 4) != 0;
}

static int32_t rd_i32(const uint8_t *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return v;
}

// ---- header -------------------------------------------------------------------------------------------
static ll_status check_field(const char *path, const char *what, int32_t v, int32_t max, ll_error *err) {
    if (v <= 0 || v > max)
        return ll_err_set(err, LL_ERR_FORMAT,
                          "%s: not a GGUF file (it does not start with \"GGUF\") and not a llama2.c checkpoint "
                          "either: its llama2.c header field %s = %d is out of range (expected 1..%d)",
                          path, what, v, max);
    return LL_OK;
}

static ll_status parse_header(const ll_map *m, l2c_hparams *hp, ll_error *err) {
    const char *path = m->path;
    const uint8_t *p = m->data;
    memset(hp, 0, sizeof *hp);
    if (m->size >= 8 && rd_i32(p) == (int32_t)L2C_MAGIC) {
        int32_t version = rd_i32(p + 4);
        if (version != 1)
            return ll_err_set(err, LL_ERR_UNSUPPORTED,
                              "%s: llama2.c export version %d is not supported (only the legacy format and the "
                              "fp32 version 1; re-export with export.py --version 1 or 0)",
                              path, version);
        if (m->size < L2C_V1_HEADER)
            return ll_err_set(err, LL_ERR_FORMAT, "%s: truncated llama2.c v1 header (%zu bytes, need %d)", path,
                              m->size, L2C_V1_HEADER);
        hp->version = 1;
        hp->header = L2C_V1_HEADER;
        p += 8;
    } else {
        if (m->size < L2C_LEGACY_HEADER)
            return ll_err_set(err, LL_ERR_FORMAT, "%s: too small for a llama2.c checkpoint (%zu bytes)", path,
                              m->size);
        hp->header = L2C_LEGACY_HEADER;
    }
    hp->dim = rd_i32(p);
    hp->hidden = rd_i32(p + 4);
    hp->n_layers = rd_i32(p + 8);
    hp->n_heads = rd_i32(p + 12);
    hp->n_kv_heads = rd_i32(p + 16);
    hp->vocab = rd_i32(p + 20);
    hp->seq_len = rd_i32(p + 24);
    if (hp->version == 1) {
        uint8_t flag = p[28];
        if (flag > 1)
            return ll_err_set(err, LL_ERR_FORMAT, "%s: llama2.c v1 shared_classifier flag is %u (expected 0 or 1)",
                              path, flag);
        hp->shared = flag == 1;
    } else {
        // Legacy: a negative vocab_size flags a separate classifier (wcls) at the end of the file.
        hp->shared = hp->vocab > 0;
        if (hp->vocab < 0 && hp->vocab != INT32_MIN) hp->vocab = -hp->vocab;
    }
    ll_status s;
    if ((s = check_field(path, "dim", hp->dim, L2C_MAX_DIM, err)) ||
        (s = check_field(path, "hidden_dim", hp->hidden, L2C_MAX_HIDDEN, err)) ||
        (s = check_field(path, "n_layers", hp->n_layers, L2C_MAX_LAYERS, err)) ||
        (s = check_field(path, "n_heads", hp->n_heads, hp->dim, err)) ||
        (s = check_field(path, "n_kv_heads", hp->n_kv_heads, hp->n_heads, err)) ||
        (s = check_field(path, "vocab_size", hp->vocab, L2C_MAX_VOCAB, err)) ||
        (s = check_field(path, "seq_len", hp->seq_len, L2C_MAX_SEQ, err)))
        return s;
    if (hp->dim % hp->n_heads)
        return ll_err_set(err, LL_ERR_FORMAT, "%s: dim %d is not a multiple of n_heads %d", path, hp->dim,
                          hp->n_heads);
    if (hp->n_heads % hp->n_kv_heads)
        return ll_err_set(err, LL_ERR_FORMAT, "%s: n_heads %d is not a multiple of n_kv_heads %d", path,
                          hp->n_heads, hp->n_kv_heads);
    if ((hp->dim / hp->n_heads) % 2)
        return ll_err_set(err, LL_ERR_FORMAT, "%s: head size %d is odd (RoPE rotates pairs)", path,
                          hp->dim / hp->n_heads);
    if (hp->vocab < 3)
        return ll_err_set(err, LL_ERR_FORMAT, "%s: vocab_size %d is too small (ids 0..2 are unk, bos, eos)", path,
                          hp->vocab);
    return LL_OK;
}

// ---- layout -------------------------------------------------------------------------------------------
// Reserve a*b*c floats at *cur; false on overflow.
static bool take(uint64_t *cur, uint64_t *at, uint64_t a, uint64_t b, uint64_t c) {
    uint64_t n, bytes;
    *at = *cur;
    return ll_mul_u64(a, b, &n) && ll_mul_u64(n, c, &n) && ll_mul_u64(n, 4, &bytes) && ll_add_u64(*cur, bytes, cur);
}

static bool layout_compute(const l2c_hparams *hp, l2c_layout *lo) {
    uint64_t d = (uint64_t)hp->dim, h = (uint64_t)hp->hidden, L = (uint64_t)hp->n_layers, V = (uint64_t)hp->vocab;
    uint64_t kv = d / (uint64_t)hp->n_heads * (uint64_t)hp->n_kv_heads, hs = d / (uint64_t)hp->n_heads;
    uint64_t cur = hp->header, skip;
    bool ok = true;
    memset(lo, 0, sizeof *lo);
    if (hp->version == 0) { // export.py legacy_export
        ok = ok && take(&cur, &lo->tok, V, d, 1) && take(&cur, &lo->rms_att, L, d, 1);
        ok = ok && take(&cur, &lo->wq, L, d, d) && take(&cur, &lo->wk, L, kv, d) && take(&cur, &lo->wv, L, kv, d);
        ok = ok && take(&cur, &lo->wo, L, d, d) && take(&cur, &lo->rms_ffn, L, d, 1);
        ok = ok && take(&cur, &lo->w1, L, h, d) && take(&cur, &lo->w2, L, d, h) && take(&cur, &lo->w3, L, h, d);
        ok = ok && take(&cur, &lo->rms_final, d, 1, 1);
        // freq_cis_real, freq_cis_imag: (seq_len, head_size/2) each, unused (RoPE is recomputed)
        ok = ok && take(&cur, &skip, (uint64_t)hp->seq_len, hs / 2, 2);
    } else { // export.py version1_export: norms first, then the matrices
        ok = ok && take(&cur, &lo->rms_att, L, d, 1) && take(&cur, &lo->rms_ffn, L, d, 1);
        ok = ok && take(&cur, &lo->rms_final, d, 1, 1) && take(&cur, &lo->tok, V, d, 1);
        ok = ok && take(&cur, &lo->wq, L, d, d) && take(&cur, &lo->wk, L, kv, d) && take(&cur, &lo->wv, L, kv, d);
        ok = ok && take(&cur, &lo->wo, L, d, d);
        ok = ok && take(&cur, &lo->w1, L, h, d) && take(&cur, &lo->w2, L, d, h) && take(&cur, &lo->w3, L, h, d);
    }
    if (hp->shared) lo->wcls = lo->tok;
    else ok = ok && take(&cur, &lo->wcls, V, d, 1);
    lo->end = cur;
    return ok;
}

// ---- tensors ------------------------------------------------------------------------------------------
// ne1 == 0: a vector of ne0.
static ll_status add_view(ll_gguf *g, const ll_map *m, const char *name, int64_t ne0, int64_t ne1, uint64_t off,
                          ll_error *err) {
    int64_t ne[2] = {ne0, ne1 ? ne1 : 1};
    uint64_t bytes = (uint64_t)ne[0] * (uint64_t)ne[1] * 4; // bounded by the layout check
    LL_ASSERT(off + bytes <= m->size);
    return ll_gguf_add_tensor(g, name, LL_TYPE_F32, ne1 ? 2 : 1, ne, m->data + off, err);
}

static ll_status add_tensors(ll_gguf *g, const ll_map *m, const l2c_hparams *hp, const l2c_layout *lo,
                             ll_error *err) {
    int64_t d = hp->dim, h = hp->hidden, V = hp->vocab, kv = (int64_t)hp->dim / hp->n_heads * hp->n_kv_heads;
    ll_status s = add_view(g, m, "token_embd.weight", d, V, lo->tok, err); // (vocab, dim)
    char name[64];
    for (int64_t i = 0; i < hp->n_layers && s == LL_OK; i++) {
        // ne = {row length, rows}: llama2.c's (out, in) matrices are GGUF's {in, out}
        struct { const char *n; int64_t ne0, ne1; uint64_t base; } t[] = {
            {"attn_norm", d, 0, lo->rms_att}, {"attn_q", d, d, lo->wq},       {"attn_k", d, kv, lo->wk},
            {"attn_v", d, kv, lo->wv},        {"attn_output", d, d, lo->wo},  {"ffn_norm", d, 0, lo->rms_ffn},
            {"ffn_gate", d, h, lo->w1},       {"ffn_down", h, d, lo->w2},     {"ffn_up", d, h, lo->w3},
        };
        for (size_t j = 0; j < sizeof t / sizeof t[0] && s == LL_OK; j++) {
            snprintf(name, sizeof name, "blk.%d.%s.weight", (int)i, t[j].n);
            uint64_t off = t[j].base + (uint64_t)i * (uint64_t)(t[j].ne0 * (t[j].ne1 ? t[j].ne1 : 1)) * 4;
            s = add_view(g, m, name, t[j].ne0, t[j].ne1, off, err);
        }
    }
    if (s == LL_OK) s = add_view(g, m, "output_norm.weight", d, 0, lo->rms_final, err);
    if (s == LL_OK) s = add_view(g, m, "output.weight", d, V, lo->wcls, err); // shared: same bytes as token_embd
    return s;
}

static void set_hparams(ll_gguf *g, const l2c_hparams *hp, const char *ckpt_path) {
    const char *base = strrchr(ckpt_path, '/');
    base = base ? base + 1 : ckpt_path;
    size_t n = strlen(base);
    if (n > 4 && !strcmp(base + n - 4, ".bin")) n -= 4;
    char *name = ll_strndup(base, n);
    ll_gguf_set_str(g, "general.architecture", "llama");
    ll_gguf_set_str(g, "general.name", name);
    free(name);
    ll_gguf_set_u32(g, "general.file_type", 0); // ALL_F32
    ll_gguf_set_u32(g, "llama.context_length", (uint32_t)hp->seq_len);
    ll_gguf_set_u32(g, "llama.embedding_length", (uint32_t)hp->dim);
    ll_gguf_set_u32(g, "llama.block_count", (uint32_t)hp->n_layers);
    ll_gguf_set_u32(g, "llama.feed_forward_length", (uint32_t)hp->hidden);
    ll_gguf_set_u32(g, "llama.attention.head_count", (uint32_t)hp->n_heads);
    ll_gguf_set_u32(g, "llama.attention.head_count_kv", (uint32_t)hp->n_kv_heads);
    ll_gguf_set_u32(g, "llama.rope.dimension_count", (uint32_t)(hp->dim / hp->n_heads));
    ll_gguf_set_f32(g, "llama.attention.layer_norm_rms_epsilon", 1e-5f); // llama2.c run.c rmsnorm
}

// ---- tokenizer.bin --------------------------------------------------------------------------------------
// int32 max_token_length, then per token: float32 score, int32 len, len bytes (tokenizer.py export: spaces
// stand for SentencePiece's U+2581, and bos/eos are written as "\n<s>\n" / "\n</s>\n").
static uint32_t token_type_of(const char *t, size_t n) {
    static const char hex[] = "0123456789ABCDEF";
    if (n == 6 && !memcmp(t, "<0x", 3) && t[5] == '>' && strchr(hex, t[3]) && strchr(hex, t[4])) return 6; // BYTE
    if (n == 5 && !memcmp(t, "<unk>", 5)) return 2;                                                        // UNKNOWN
    if ((n == 3 && !memcmp(t, "<s>", 3)) || (n == 4 && !memcmp(t, "</s>", 4))) return 3;                   // CONTROL
    return 1;                                                                                               // NORMAL
}

// The GGUF form of one stored piece: ' ' -> U+2581 ("\xe2\x96\x81"); the bos/eos spellings restored.
static char *piece_to_gguf(const uint8_t *s, size_t n, size_t *out_n) {
    if (n == 5 && !memcmp(s, "\n<s>\n", 5)) { *out_n = 3; return ll_strdup("<s>"); }
    if (n == 6 && !memcmp(s, "\n</s>\n", 6)) { *out_n = 4; return ll_strdup("</s>"); }
    size_t spaces = 0;
    for (size_t i = 0; i < n; i++) spaces += s[i] == ' ';
    char *r = malloc(n + 2 * spaces + 1);
    LL_ASSERT(r != NULL);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == ' ') { memcpy(r + k, "\xe2\x96\x81", 3); k += 3; }
        else r[k++] = (char)s[i];
    }
    r[k] = 0;
    *out_n = k;
    return r;
}

typedef struct l2c_vocab {
    uint32_t n;
    ll_str *text; // each ptr malloc'd
    float *score;
    int32_t *type;
} l2c_vocab;

static void vocab_free(l2c_vocab *v) {
    if (v->text)
        for (uint32_t i = 0; i < v->n; i++) free((void *)v->text[i].ptr);
    free(v->text);
    free(v->score);
    free(v->type);
}

static ll_status vocab_parse(const ll_map *m, uint32_t n_vocab, l2c_vocab *v, ll_error *err) {
    const char *path = m->path;
    if (m->size < 4) return ll_err_set(err, LL_ERR_FORMAT, "%s: too small for a llama2.c tokenizer", path);
    int32_t max_len = rd_i32(m->data);
    if (max_len <= 0 || max_len > (1 << 20))
        return ll_err_set(err, LL_ERR_FORMAT, "%s: max_token_length %d is out of range; is this a llama2.c "
                          "tokenizer.bin?", path, max_len);
    v->n = n_vocab;
    v->text = calloc(n_vocab, sizeof *v->text);
    v->score = calloc(n_vocab, sizeof *v->score);
    v->type = calloc(n_vocab, sizeof *v->type);
    if (!v->text || !v->score || !v->type) return ll_err_set(err, LL_ERR_NOMEM, "%s: out of memory", path);
    size_t off = 4;
    for (uint32_t i = 0; i < n_vocab; i++) {
        if (m->size - off < 8)
            return ll_err_set(err, LL_ERR_FORMAT, "%s: ends after %u tokens, the checkpoint's vocab_size is %u "
                              "(does this tokenizer belong to this checkpoint? pass --tokenizer)", path, i, n_vocab);
        int32_t len = rd_i32(m->data + off + 4);
        if (len < 0 || len > max_len || (size_t)len > m->size - off - 8)
            return ll_err_set(err, LL_ERR_FORMAT, "%s: token %u has length %d (max_token_length %d, %zu bytes "
                              "left): truncated or corrupt", path, i, len, max_len, m->size - off - 8);
        memcpy(&v->score[i], m->data + off, 4);
        size_t tn;
        char *t = piece_to_gguf(m->data + off + 8, (size_t)len, &tn);
        v->text[i] = (ll_str){t, tn};
        v->type[i] = (int32_t)token_type_of(t, tn);
        off += 8 + (size_t)len;
    }
    if (off != m->size)
        return ll_err_set(err, LL_ERR_FORMAT, "%s: %zu bytes left after the %u tokens the checkpoint's vocab_size "
                          "asks for (does this tokenizer belong to this checkpoint? pass --tokenizer)",
                          path, m->size - off, n_vocab);
    return LL_OK;
}

static ll_status add_tokenizer(ll_gguf *g, const char *tok_path, uint32_t n_vocab, ll_error *err) {
    ll_map *m;
    ll_status s = ll_map_open(&m, tok_path, err);
    if (s) {
        ll_err_prefix(err, "tokenizer: ");
        return s;
    }
    l2c_vocab v = {0};
    s = vocab_parse(m, n_vocab, &v, err);
    if (s == LL_OK) {
        ll_gguf_set_str(g, "tokenizer.ggml.model", "llama");
        ll_gguf_set_arr_str(g, "tokenizer.ggml.tokens", n_vocab, v.text);
        ll_gguf_set_arr(g, "tokenizer.ggml.scores", LL_GGUF_FLOAT32, n_vocab, v.score);
        ll_gguf_set_arr(g, "tokenizer.ggml.token_type", LL_GGUF_INT32, n_vocab, v.type);
        ll_gguf_set_u32(g, "tokenizer.ggml.bos_token_id", 1);
        ll_gguf_set_u32(g, "tokenizer.ggml.eos_token_id", 2);
        ll_gguf_set_u32(g, "tokenizer.ggml.unknown_token_id", 0);
    }
    vocab_free(&v);
    ll_map_free(m);
    return s;
}

// ---- open -----------------------------------------------------------------------------------------------
// tokenizer_path NULL: "tokenizer.bin" in the checkpoint's directory.
static char *default_tokenizer(const char *ckpt) {
    const char *slash = strrchr(ckpt, '/');
    size_t dir = slash ? (size_t)(slash - ckpt) + 1 : 0;
    char *r = malloc(dir + sizeof "tokenizer.bin");
    LL_ASSERT(r != NULL);
    memcpy(r, ckpt, dir);
    memcpy(r + dir, "tokenizer.bin", sizeof "tokenizer.bin");
    return r;
}

ll_status ll_llama2c_open(ll_gguf **out, const char *ckpt_path, const char *tokenizer_path, ll_error *err) {
    *out = NULL;
    ll_map *m;
    ll_status s = ll_map_open(&m, ckpt_path, err);
    if (s) return s;
    l2c_hparams hp;
    l2c_layout lo;
    if ((s = parse_header(m, &hp, err))) goto fail_map;
    if (!layout_compute(&hp, &lo)) {
        s = ll_err_set(err, LL_ERR_FORMAT, "%s: the header's shapes overflow a 64-bit size", ckpt_path);
        goto fail_map;
    }
    if (lo.end != m->size) {
        s = ll_err_set(err, LL_ERR_FORMAT,
                       "%s: file is %zu bytes but the header (dim %d, hidden %d, %d layers, %d/%d heads, vocab %d%s, "
                       "seq_len %d) needs exactly %llu: %s",
                       ckpt_path, m->size, hp.dim, hp.hidden, hp.n_layers, hp.n_heads, hp.n_kv_heads, hp.vocab,
                       hp.shared ? "" : " + classifier", hp.seq_len, (unsigned long long)lo.end,
                       lo.end > m->size ? "truncated download?" : "trailing bytes, or not a llama2.c checkpoint");
        goto fail_map;
    }
    ll_gguf *g = ll_gguf_new(ckpt_path);
    ll_gguf_adopt_map(g, m); // the views below point into it
    set_hparams(g, &hp, ckpt_path);
    char *tok = tokenizer_path ? NULL : default_tokenizer(ckpt_path);
    s = add_tokenizer(g, tokenizer_path ? tokenizer_path : tok, (uint32_t)hp.vocab, err);
    free(tok);
    if (s == LL_OK) s = add_tensors(g, m, &hp, &lo, err);
    if (s) {
        ll_gguf_free(g);
        return s;
    }
    *out = g;
    return LL_OK;
fail_map:
    ll_map_free(m);
    return s;
}
