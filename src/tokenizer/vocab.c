// vocab.c — the vocabulary from GGUF tokenizer.ggml.* metadata: token texts, scores and types, BPE merges,
// the hash tables behind text -> id and pair -> rank, and the accessors of tokenizer.h. Special ids, the
// end-of-generation set and the piece cache are built in special.c.
#include "tokenizer/tok_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KEY_MODEL "tokenizer.ggml.model"
#define KEY_PRE "tokenizer.ggml.pre"
#define KEY_TOKENS "tokenizer.ggml.tokens"
#define KEY_SCORES "tokenizer.ggml.scores"
#define KEY_TYPES "tokenizer.ggml.token_type"
#define KEY_MERGES "tokenizer.ggml.merges"
#define KEY_PREFIX "tokenizer.ggml.add_space_prefix"

ll_status ll_tok_special_init(ll_tokenizer *t, const ll_gguf *g, ll_error *err); // special.c

// ---- hashing --------------------------------------------------------------------------------------------
static uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

uint64_t ll_tok_hash(const char *s, size_t n) { // FNV-1a, then a finalizer so the low bits are usable
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)s[i]) * 0x100000001b3ull;
    return mix64(h ^ n);
}

int32_t ll_tok_lookup(const ll_tokenizer *t, const char *s, size_t n) {
    for (uint64_t h = ll_tok_hash(s, n) & t->tmap_mask;; h = (h + 1) & t->tmap_mask) {
        int32_t id = t->tmap[h];
        if (id < 0) return -1;
        if (t->tok[id].len == n && memcmp(ll_tok_text(t, id), s, n) == 0) return id;
    }
}

int32_t ll_tok_merge(const ll_tokenizer *t, int32_t left, int32_t right, int32_t *result) {
    if (!t->mmap) return -1;
    uint64_t key = ((uint64_t)(uint32_t)left << 32) | (uint32_t)right;
    for (uint64_t h = mix64(key) & t->mmap_mask;; h = (h + 1) & t->mmap_mask) {
        const ll_merge_slot *m = &t->mmap[h];
        if (m->key == UINT64_MAX) return -1;
        if (m->key == key) {
            *result = m->result;
            return m->rank;
        }
    }
}

// Smallest power of two >= 2n (load factor <= 1/2).
static uint64_t table_size(uint64_t n) {
    uint64_t s = 16;
    while (s < 2 * n) s *= 2;
    return s;
}

// ---- model kind and pre-tokenizer -------------------------------------------------------------------------
// tokenizer.ggml.pre names llama.cpp maps onto these three rules, with its per-name flags.
static const struct {
    const char *name;
    ll_pretok pre;
    bool llama3; // ignore_merges and add_bos = true by default
    bool clean_spaces;
} k_pre[] = {
    {"gpt-2", LL_PRETOK_GPT2, false, true},       {"phi-2", LL_PRETOK_GPT2, false, true},
    {"jina-es", LL_PRETOK_GPT2, false, true},     {"jina-de", LL_PRETOK_GPT2, false, true},
    {"gigachat", LL_PRETOK_GPT2, false, true},    {"jina-v2-es", LL_PRETOK_GPT2, false, true},
    {"jina-v2-de", LL_PRETOK_GPT2, false, true},  {"a.x-4.0", LL_PRETOK_GPT2, false, true},
    {"mellum", LL_PRETOK_GPT2, false, true},      {"modern-bert", LL_PRETOK_GPT2, false, true},
    {"exaone4", LL_PRETOK_GPT2, false, true},     {"mpt", LL_PRETOK_GPT2, false, true},
    {"olmo", LL_PRETOK_GPT2, false, true},        {"jais", LL_PRETOK_GPT2, false, true},
    {"trillion", LL_PRETOK_GPT2, false, false},   {"granite-docling", LL_PRETOK_GPT2, false, false},
    {"llama3", LL_PRETOK_LLAMA3, true, true},     {"llama-v3", LL_PRETOK_LLAMA3, true, true},
    {"llama-bpe", LL_PRETOK_LLAMA3, true, true},  {"falcon3", LL_PRETOK_LLAMA3, true, true},
    {"falcon-h1", LL_PRETOK_LLAMA3, true, true},  {"pixtral", LL_PRETOK_LLAMA3, true, true},
    {"midm-2.0", LL_PRETOK_LLAMA3, true, true},   {"lfm2", LL_PRETOK_LLAMA3, true, true},
    {"dbrx", LL_PRETOK_LLAMA3, false, true},      {"smaug-bpe", LL_PRETOK_LLAMA3, false, true},
    {"qwen2", LL_PRETOK_QWEN2, false, false},     {"deepseek-r1-qwen", LL_PRETOK_QWEN2, false, false},
    {"kormo", LL_PRETOK_QWEN2, false, false},     {"f2llmv2", LL_PRETOK_QWEN2, false, false},
    {"megrez", LL_PRETOK_QWEN2, false, true},     {"stablelm2", LL_PRETOK_QWEN2, false, true},
    {"hunyuan", LL_PRETOK_QWEN2, false, false},   {"solar-open", LL_PRETOK_QWEN2, false, false},
};

// BPE pre-tokenizer by name. A missing key, "default" and unknown names fall back to gpt-2's rule with a warning
// (llama.cpp refuses unknown names, and its "default" chains four regexes that gpt-2's only approximates).
static ll_status read_pre(ll_tokenizer *t, const ll_gguf *g, ll_error *err) {
    t->pre = LL_PRETOK_GPT2;
    t->clean_spaces = true;
    ll_str pre = {"default", 7};
    if (ll_gguf_find(g, KEY_PRE)) {
        ll_status st = ll_gguf_get_str(g, KEY_PRE, &pre, err);
        if (st != LL_OK) return st;
    }
    for (size_t i = 0; i < sizeof k_pre / sizeof k_pre[0]; i++) {
        if (!ll_str_eq(pre, k_pre[i].name)) continue;
        t->pre = k_pre[i].pre;
        t->clean_spaces = k_pre[i].clean_spaces;
        t->ignore_merges = t->add_bos = k_pre[i].llama3;
        return LL_OK;
    }
    ll_log(LL_LOG_WARN, "%s: BPE pre-tokenizer '%.*s' (key '%s') is not one llmlab implements; using gpt-2's, so "
           "tokens may differ from llama.cpp (re-convert the model with a known pre-tokenizer)", g->path,
           (int)(pre.len > 64 ? 64 : pre.len), pre.ptr, KEY_PRE);
    return LL_OK;
}

// tokenizer.ggml.model and the defaults llama.cpp gives each kind.
static ll_status read_kind(ll_tokenizer *t, const ll_gguf *g, ll_error *err) {
    ll_str model;
    ll_status st = ll_gguf_get_str(g, KEY_MODEL, &model, err);
    if (st != LL_OK) return st;
    t->eot = t->eom = t->sep = t->pad = -1;
    if (ll_str_eq(model, "llama")) {
        t->kind = LL_TOK_SPM;
        t->bos = 1, t->eos = 2, t->unk = 0;
        t->add_space_prefix = t->add_bos = true;
    } else if (ll_str_eq(model, "gpt2")) {
        t->kind = LL_TOK_BPE;
        t->bos = 11, t->eos = 11, t->unk = -1;
        st = read_pre(t, g, err);
        if (st != LL_OK) return st;
    } else {
        return ll_err_set(err, LL_ERR_UNSUPPORTED,
                          "%s: tokenizer model '%.*s' (key '%s') is not supported; llmlab reads 'llama' "
                          "(SentencePiece) and 'gpt2' (byte-level BPE) vocabularies", g->path,
                          (int)(model.len > 64 ? 64 : model.len), model.ptr, KEY_MODEL);
    }
    if (ll_gguf_find(g, KEY_PREFIX)) return ll_gguf_get_bool(g, KEY_PREFIX, &t->add_space_prefix, err);
    return LL_OK;
}

// ---- tokens ---------------------------------------------------------------------------------------------
// An optional per-token numeric array: NULL when absent, an error when it is not a numeric array of n.
static ll_status token_array(const ll_gguf *g, const char *key, uint64_t n, bool integer, const ll_gguf_kv **out,
                             ll_error *err) {
    *out = ll_gguf_find(g, key);
    if (!*out) return LL_OK;
    const ll_gguf_kv *kv = *out;
    uint32_t at = kv->arr_type;
    bool num = at <= LL_GGUF_INT32 || at == LL_GGUF_UINT64 || at == LL_GGUF_INT64 ||
               (!integer && (at == LL_GGUF_FLOAT32 || at == LL_GGUF_FLOAT64));
    if (kv->type != LL_GGUF_ARRAY || !num)
        return ll_err_set(err, LL_ERR_FORMAT, "%s: key '%s' must be an array of %s (it is %s of %s)", g->path, key,
                          integer ? "integers" : "numbers", ll_gguf_vtype_name(kv->type),
                          ll_gguf_vtype_name(kv->arr_type));
    if (kv->arr_n != n)
        return ll_err_set(err, LL_ERR_FORMAT, "%s: key '%s' has %llu entries but '%s' has %llu tokens; the "
                          "vocabulary is inconsistent (re-convert the model)", g->path, key,
                          (unsigned long long)kv->arr_n, KEY_TOKENS, (unsigned long long)n);
    return LL_OK;
}

static uint32_t attr_of_type(int64_t type) {
    switch (type) {
    case 1: return LL_TOK_ATTR_NORMAL;
    case 2: return LL_TOK_ATTR_UNKNOWN;
    case 3: return LL_TOK_ATTR_CONTROL;
    case 4: return LL_TOK_ATTR_USER_DEFINED;
    case 5: return LL_TOK_ATTR_UNUSED;
    case 6: return LL_TOK_ATTR_BYTE;
    default: return 0; // undefined: no piece, never matched
    }
}

static bool valid_utf8(const char *s, size_t n) {
    for (size_t i = 0, k; i < n; i += k)
        if (ll_utf8_check((const uint8_t *)s + i, n - i, &k) != 1) return false;
    return true;
}

static bool is_hex(char c) { return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'F') || (c >= 'a' && c <= 'f'); }

// Content checks where the text matters: byte tokens must read "<0xXX>", BPE texts must be UTF-8.
static ll_status check_token(const ll_tokenizer *t, const ll_gguf *g, int32_t i, ll_error *err) {
    const char *s = ll_tok_text(t, i);
    uint32_t n = t->tok[i].len;
    if ((t->tok[i].attr & LL_TOK_ATTR_BYTE) &&
        !(n == 6 && memcmp(s, "<0x", 3) == 0 && is_hex(s[3]) && is_hex(s[4]) && s[5] == '>'))
        return ll_err_set(err, LL_ERR_FORMAT, "%s: token %d ('%.*s') has type byte in '%s' but is not of the form "
                          "<0xXX>", g->path, i, (int)(n > 32 ? 32 : n), s, KEY_TYPES);
    if (t->kind == LL_TOK_BPE && !valid_utf8(s, n))
        return ll_err_set(err, LL_ERR_FORMAT, "%s: token %d of '%s' is not valid UTF-8; a byte-level BPE "
                          "vocabulary stores every token as UTF-8 text", g->path, i, KEY_TOKENS);
    return LL_OK;
}

// Copy the texts (an empty one becomes "[EMPTY_i]" as in llama.cpp) into one blob with 32-bit offsets.
static ll_status copy_texts(ll_tokenizer *t, const ll_gguf *g, const ll_str *txt, ll_error *err) {
    size_t total = 0;
    for (int i = 0; i < t->n_vocab; i++)
        if (!ll_add_ok(total, txt[i].len ? txt[i].len : 24, &total) || total >= UINT32_MAX)
            return ll_err_set(err, LL_ERR_FORMAT, "%s: the texts of '%s' exceed 4 GiB", g->path, KEY_TOKENS);
    t->blob = ll_malloc(total + 1, err);
    if (!t->blob) return err ? err->status : LL_ERR_NOMEM;
    uint32_t off = 0;
    int n_empty = 0, first_empty = -1;
    for (int i = 0; i < t->n_vocab; i++) {
        t->tok[i].off = off;
        if (txt[i].len) memcpy(t->blob + off, txt[i].ptr, txt[i].len);
        else if (n_empty++ == 0) first_empty = i;
        t->tok[i].len = txt[i].len ? (uint32_t)txt[i].len : (uint32_t)snprintf(t->blob + off, 25, "[EMPTY_%d]", i);
        off += t->tok[i].len;
    }
    if (n_empty) // one line, not one per token: a broken vocabulary would bury the real error under them
        ll_log(LL_LOG_WARN, "%s: %d empty token%s in '%s' (the first at index %d), named [EMPTY_<index>]", g->path,
               n_empty, n_empty == 1 ? "" : "s", KEY_TOKENS, first_empty);
    return LL_OK;
}

static ll_status build_tmap(ll_tokenizer *t, const ll_gguf *g, ll_error *err) {
    uint64_t size = table_size((uint64_t)t->n_vocab);
    t->tmap = ll_malloc(size * sizeof *t->tmap, err);
    if (!t->tmap) return err ? err->status : LL_ERR_NOMEM;
    memset(t->tmap, 0xff, size * sizeof *t->tmap);
    t->tmap_mask = size - 1;
    for (int32_t i = 0; i < t->n_vocab; i++) {
        const char *s = ll_tok_text(t, i);
        uint32_t n = t->tok[i].len;
        int32_t dup = ll_tok_lookup(t, s, n);
        if (dup >= 0)
            return ll_err_set(err, LL_ERR_FORMAT, "%s: duplicate token in '%s': '%.*s' has ids %d and %d (llama.cpp "
                              "refuses this vocabulary too; re-convert the model)", g->path, KEY_TOKENS,
                              (int)(n > 32 ? 32 : n), s, dup, i);
        uint64_t h = ll_tok_hash(s, n) & t->tmap_mask;
        while (t->tmap[h] >= 0) h = (h + 1) & t->tmap_mask;
        t->tmap[h] = i;
    }
    return LL_OK;
}

static ll_status read_tokens(ll_tokenizer *t, const ll_gguf *g, ll_error *err) {
    uint32_t at;
    uint64_t n;
    const uint8_t *data;
    ll_status st = ll_gguf_get_arr(g, KEY_TOKENS, &at, &n, &data, err);
    if (st != LL_OK) return st;
    if (at != LL_GGUF_STRING || n == 0 || n > INT32_MAX)
        return ll_err_set(err, LL_ERR_FORMAT, "%s: key '%s' must be a non-empty array of strings (it has %llu "
                          "elements of type %s)", g->path, KEY_TOKENS, (unsigned long long)n, ll_gguf_vtype_name(at));
    const ll_gguf_kv *scores, *types;
    if ((st = token_array(g, KEY_SCORES, n, false, &scores, err)) != LL_OK) return st;
    if ((st = token_array(g, KEY_TYPES, n, true, &types, err)) != LL_OK) return st;
    t->n_vocab = (int)n;
    t->tok = ll_calloc(n, sizeof *t->tok, err);
    ll_str *txt = ll_calloc(n, sizeof *txt, err);
    if (!t->tok || !txt) {
        free(txt);
        return err ? err->status : LL_ERR_NOMEM;
    }
    ll_gguf_arr_strings(ll_gguf_find(g, KEY_TOKENS), txt);
    st = copy_texts(t, g, txt, err);
    free(txt);
    if (st != LL_OK) return st;
    for (int32_t i = 0; i < t->n_vocab; i++) {
        t->tok[i].score = scores ? (float)ll_gguf_arr_f64(scores, (uint64_t)i) : 0.0f;
        t->tok[i].attr = types ? attr_of_type(ll_gguf_arr_i64(types, (uint64_t)i)) : LL_TOK_ATTR_NORMAL;
        if ((st = check_token(t, g, i, err)) != LL_OK) return st;
    }
    return build_tmap(t, g, err);
}

// ---- merges ---------------------------------------------------------------------------------------------
// One "left right" merge string: both halves and their concatenation must be tokens.
static ll_status add_merge(ll_tokenizer *t, const ll_gguf *g, ll_str m, int32_t rank, char *cat, ll_error *err) {
    const char *sp = m.len > 1 ? memchr(m.ptr + 1, ' ', m.len - 1) : NULL; // llama.cpp: find(' ', 1)
    size_t ll = sp ? (size_t)(sp - m.ptr) : 0, rl = sp ? m.len - ll - 1 : 0;
    int32_t l = sp ? ll_tok_lookup(t, m.ptr, ll) : -1, r = rl ? ll_tok_lookup(t, sp + 1, rl) : -1;
    int32_t res = -1;
    if (l >= 0 && r >= 0) {
        memcpy(cat, m.ptr, ll);
        memcpy(cat + ll, sp + 1, rl);
        res = ll_tok_lookup(t, cat, ll + rl);
    }
    if (res < 0)
        return ll_err_set(err, LL_ERR_FORMAT, "%s: merge %d of '%s' ('%.*s') does not split into two tokens whose "
                          "concatenation is a token; the merges do not match the vocabulary", g->path, rank,
                          KEY_MERGES, (int)(m.len > 64 ? 64 : m.len), m.ptr);
    uint64_t key = ((uint64_t)(uint32_t)l << 32) | (uint32_t)r;
    uint64_t h = mix64(key) & t->mmap_mask;
    while (t->mmap[h].key != UINT64_MAX && t->mmap[h].key != key) h = (h + 1) & t->mmap_mask;
    if (t->mmap[h].key == UINT64_MAX) t->mmap[h] = (ll_merge_slot){key, rank, res}; // a repeat keeps its first rank
    return LL_OK;
}

static ll_status read_merges(ll_tokenizer *t, const ll_gguf *g, ll_error *err) {
    const ll_gguf_kv *kv = ll_gguf_find(g, KEY_MERGES);
    if (!kv) return ll_err_set(err, LL_ERR_MISSING, "%s: missing required key '%s' (a gpt2 vocabulary needs its "
                               "merges)", g->path, KEY_MERGES);
    if (kv->type != LL_GGUF_ARRAY || kv->arr_type != LL_GGUF_STRING || kv->arr_n > INT32_MAX)
        return ll_err_set(err, LL_ERR_FORMAT, "%s: key '%s' must be an array of strings", g->path, KEY_MERGES);
    uint64_t size = table_size(kv->arr_n);
    size_t max_len = 0;
    ll_str *m = ll_calloc(kv->arr_n ? kv->arr_n : 1, sizeof *m, err);
    t->mmap = ll_malloc(size * sizeof *t->mmap, err);
    if (!m || !t->mmap) {
        free(m);
        return err ? err->status : LL_ERR_NOMEM;
    }
    memset(t->mmap, 0xff, size * sizeof *t->mmap);
    t->mmap_mask = size - 1;
    ll_gguf_arr_strings(kv, m);
    for (uint64_t i = 0; i < kv->arr_n; i++) max_len = m[i].len > max_len ? m[i].len : max_len;
    char *cat = ll_malloc(max_len + 1, err);
    ll_status st = cat ? LL_OK : (err ? err->status : LL_ERR_NOMEM);
    for (uint64_t i = 0; st == LL_OK && i < kv->arr_n; i++) st = add_merge(t, g, m[i], (int32_t)i, cat, err);
    free(cat);
    free(m);
    return st;
}

// ---- init / free / accessors --------------------------------------------------------------------------
ll_status ll_tokenizer_init(ll_tokenizer **out, const ll_gguf *g, ll_error *err) {
    *out = NULL;
    ll_tokenizer *t = ll_calloc(1, sizeof *t, err);
    if (!t) return err ? err->status : LL_ERR_NOMEM;
    ll_status st = read_kind(t, g, err);
    if (st == LL_OK) st = read_tokens(t, g, err);
    if (st == LL_OK && t->kind == LL_TOK_BPE) st = read_merges(t, g, err);
    if (st == LL_OK) st = ll_tok_special_init(t, g, err);
    if (st != LL_OK) {
        ll_tokenizer_free(t);
        return st;
    }
    *out = t;
    return LL_OK;
}

void ll_tokenizer_free(ll_tokenizer *t) {
    if (!t) return;
    free(t->tok), free(t->blob), free(t->pieces), free(t->tmap), free(t->mmap), free(t->special), free(t->eog);
    free(t);
}

int ll_tokenizer_n_vocab(const ll_tokenizer *t) { return t->n_vocab; }
int32_t ll_tokenizer_bos(const ll_tokenizer *t) { return t->bos; }
int32_t ll_tokenizer_eos(const ll_tokenizer *t) { return t->eos; }
bool ll_tokenizer_add_bos(const ll_tokenizer *t) { return t->add_bos; }

bool ll_tokenizer_is_control(const ll_tokenizer *t, int32_t id) {
    return id >= 0 && id < t->n_vocab && (t->tok[id].attr & LL_TOK_ATTR_CONTROL);
}

ll_str ll_tokenizer_token_text(const ll_tokenizer *t, int32_t id) {
    if (id < 0 || id >= t->n_vocab) return (ll_str){"", 0};
    return (ll_str){ll_tok_text(t, id), t->tok[id].len};
}

int32_t ll_tokenizer_find(const ll_tokenizer *t, const char *text) { return ll_tok_lookup(t, text, strlen(text)); }
