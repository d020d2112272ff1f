// special.c — what llama.cpp derives from the vocabulary after reading it: special ids (bos, eos, eot, ...) with
// its defaults and range rules, add_bos/add_eos, the end-of-generation set (ids and well-known texts), the
// special-token list used for partitioning, the byte-fallback ids and the token -> piece cache.
#include "tokenizer/tok_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KEY_ADD_BOS "tokenizer.ggml.add_bos_token"
#define KEY_ADD_EOS "tokenizer.ggml.add_eos_token"

// Read one id key. Absent: keep the default. Out of range (4294967295 is the usual "none"): warn and keep the
// default, as llama.cpp does. A default outside the vocabulary means none.
static ll_status read_id(const ll_tokenizer *t, const ll_gguf *g, const char *key, int32_t *id, ll_error *err) {
    if (*id >= t->n_vocab) *id = -1;
    if (!ll_gguf_find(g, key)) return LL_OK;
    int64_t v;
    ll_status st = ll_gguf_get_i64(g, key, &v, err);
    if (st != LL_OK) return st;
    if (v >= 0 && v < t->n_vocab) {
        *id = (int32_t)v;
    } else {
        ll_log(v == 4294967295 || v == -1 ? LL_LOG_DEBUG : LL_LOG_WARN,
               "%s: special token '%s' = %lld is not in the vocabulary (%d tokens); using %d", g->path, key,
               (long long)v, t->n_vocab, *id);
    }
    return LL_OK;
}

static ll_status read_ids(ll_tokenizer *t, const ll_gguf *g, int32_t fim[6], ll_error *err) {
    const struct {
        const char *key;
        int32_t *id;
    } keys[] = {
        {"tokenizer.ggml.bos_token_id", &t->bos},           {"tokenizer.ggml.eos_token_id", &t->eos},
        {"tokenizer.ggml.eot_token_id", &t->eot},           {"tokenizer.ggml.eom_token_id", &t->eom},
        {"tokenizer.ggml.unknown_token_id", &t->unk},       {"tokenizer.ggml.seperator_token_id", &t->sep},
        {"tokenizer.ggml.padding_token_id", &t->pad},       {"tokenizer.ggml.fim_pre_token_id", &fim[0]},
        {"tokenizer.ggml.fim_suf_token_id", &fim[1]},       {"tokenizer.ggml.fim_mid_token_id", &fim[2]},
        {"tokenizer.ggml.fim_pad_token_id", &fim[3]},       {"tokenizer.ggml.fim_rep_token_id", &fim[4]},
        {"tokenizer.ggml.fim_sep_token_id", &fim[5]},       {"tokenizer.ggml.prefix_token_id", &fim[0]},
        {"tokenizer.ggml.suffix_token_id", &fim[1]},        {"tokenizer.ggml.middle_token_id", &fim[2]},
    };
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        ll_status st = read_id(t, g, keys[i].key, keys[i].id, err);
        if (st != LL_OK) return st;
    }
    ll_status st = LL_OK;
    if (ll_gguf_find(g, KEY_ADD_BOS)) st = ll_gguf_get_bool(g, KEY_ADD_BOS, &t->add_bos, err);
    if (st == LL_OK && ll_gguf_find(g, KEY_ADD_EOS)) st = ll_gguf_get_bool(g, KEY_ADD_EOS, &t->add_eos, err);
    if (st != LL_OK) return st;
    bool bad_bos = t->add_bos && t->bos < 0;
    if (bad_bos || (t->add_eos && t->eos < 0))
        return ll_err_set(err, LL_ERR_FORMAT, "%s: the vocabulary adds a %s token ('%s' is true, or absent and true "
                          "by default) but 'tokenizer.ggml.%s_token_id' names no token of its %d", g->path,
                          bad_bos ? "BOS" : "EOS", bad_bos ? KEY_ADD_BOS : KEY_ADD_EOS, bad_bos ? "bos" : "eos",
                          t->n_vocab);
    return LL_OK;
}

// ---- end of generation ------------------------------------------------------------------------------------
static bool text_in(const ll_tokenizer *t, int32_t id, const char *const *list) {
    char c = ll_tok_text(t, id)[0]; // every listed text starts with one of these: skip the rest quickly
    if (c != '<' && c != '[' && c != '_' && c != '\xe2') return false;
    for (; *list; list++)
        if (t->tok[id].len == strlen(*list) && memcmp(ll_tok_text(t, id), *list, t->tok[id].len) == 0) return true;
    return false;
}

static void eog_add(ll_tokenizer *t, int32_t id) {
    if (id < 0) return;
    for (int i = 0; i < t->n_eog; i++)
        if (t->eog[i] == id) return;
    LL_ASSERT(t->n_eog < 64);
    t->eog[t->n_eog++] = id;
}

// Texts llama.cpp treats as end of turn / of generation / fill-in-the-middle markers when no key names them; a
// match is forced to control type.
static const char *const k_eot[] = {"<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>",
                                    "<|end_of_text|>", "<EOT>", "_<EOT>", "[EOT]",
                                    "<\xef\xbd\x9c" "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>",
                                    "<end_of_utterance>", NULL};
static const char *const k_eog[] = {"<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>",
                                    "<|calls|>", "<end_of_turn>", "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>",
                                    "_<EOT>", "[EOT]", "[EOS]", "<|end_of_text|>", "<end_of_utterance>", "<eos>",
                                    "<turn|>", "<|tool_response>",
                                    "<\xef\xbd\x9c" "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>", "[e~[",
                                    NULL};
static const char *const k_eom[] = {"<|eom_id|>", NULL};
static const char *const k_fim[6][9] = {
    {"<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<\xef\xbd\x9c" "fim\xe2\x96\x81" "begin\xef\xbd\x9c>", "<PRE>",
     "\xe2\x96\x81<PRE>", "<|code_prefix|>", "<|prefix|>", NULL},
    {"<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>", "<\xef\xbd\x9c" "fim\xe2\x96\x81hole\xef\xbd\x9c>", "<SUF>",
     "\xe2\x96\x81<SUF>", "<|code_suffix|>", "<|suffix|>", NULL},
    {"<|fim_middle|>", "<fim-middle>", "<fim_middle>", "<\xef\xbd\x9c" "fim\xe2\x96\x81" "end\xef\xbd\x9c>", "<MID>",
     "\xe2\x96\x81<MID>", "<|code_middle|>", "<|middle|>", NULL},
    {"<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]", NULL},
    {"<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>", NULL},
    {"<|file_sep|>", NULL},
};

static void force_control(ll_tokenizer *t, int32_t id) {
    if (!(t->tok[id].attr & LL_TOK_ATTR_CONTROL)) {
        ll_log(LL_LOG_DEBUG, "control-looking token %d '%s' was not control-type; treating it as control", id,
               ll_tok_text(t, id));
        t->tok[id].attr |= LL_TOK_ATTR_CONTROL;
    }
}

static const char *const k_oss_user[] = {"<|channel|>", "<|message|>", "<|start|>", "<|constrain|>", NULL};

static void find_markers(ll_tokenizer *t, int32_t fim[6]) {
    for (int32_t id = 0; id < t->n_vocab; id++) {
        if (t->eot < 0 && text_in(t, id, k_eot)) t->eot = id, force_control(t, id);
        if (t->eom < 0 && text_in(t, id, k_eom)) t->eom = id, force_control(t, id);
        for (int k = 0; k < 6; k++)
            if (fim[k] < 0 && text_in(t, id, k_fim[k])) fim[k] = id, force_control(t, id);
    }
}

static ll_status find_eog(ll_tokenizer *t, int32_t fim[6], ll_error *err) {
    find_markers(t, fim);
    t->eog = ll_malloc(sizeof *t->eog * 64, err); // 3 fim + one id per k_eog text + eos, eot, eom
    if (!t->eog) return err ? err->status : LL_ERR_NOMEM;
    for (int k = 3; k < 6; k++) eog_add(t, fim[k]); // fim pad, repo, file separator
    for (int32_t id = 0; id < t->n_vocab; id++) {
        if (text_in(t, id, k_eog)) eog_add(t, id), force_control(t, id);
        if (text_in(t, id, k_oss_user)) t->tok[id].attr = LL_TOK_ATTR_USER_DEFINED; // gpt-oss: always rendered
    }
    eog_add(t, t->eos), eog_add(t, t->eot), eog_add(t, t->eom);
    // o200k_harmony / solar-open: "<|end|>" ends a message, not the generation, when "<|return|>" and "<|call|>"
    // (or "<|calls|>" and "<|flush|>") exist.
    int32_t end_id = -1;
    bool has_return = false, has_call = false, has_flush = false;
    for (int i = 0; i < t->n_eog; i++) {
        const char *s = ll_tok_text(t, t->eog[i]);
        size_t n = t->tok[t->eog[i]].len;
        has_return |= n == 10 && memcmp(s, "<|return|>", 10) == 0;
        has_call |= (n == 8 && memcmp(s, "<|call|>", 8) == 0) || (n == 9 && memcmp(s, "<|calls|>", 9) == 0);
        has_flush |= n == 9 && memcmp(s, "<|flush|>", 9) == 0;
        if (n == 7 && memcmp(s, "<|end|>", 7) == 0) end_id = t->eog[i];
    }
    if (end_id >= 0 && has_call && (has_return || has_flush)) {
        for (int i = 0; i < t->n_eog; i++)
            if (t->eog[i] == end_id) t->eog[i] = t->eog[--t->n_eog];
        t->tok[end_id].attr = LL_TOK_ATTR_USER_DEFINED;
    }
    return LL_OK;
}

bool ll_tokenizer_is_eog(const ll_tokenizer *t, int32_t id) {
    for (int i = 0; i < t->n_eog; i++)
        if (t->eog[i] == id) return true;
    return false;
}

// ---- special list, byte ids, pieces ---------------------------------------------------------------------
typedef struct len_id {
    uint32_t len;
    int32_t id;
} len_id;

static int cmp_special(const void *a, const void *b) {
    const len_id *x = a, *y = b;
    if (x->len != y->len) return x->len > y->len ? -1 : 1; // longest first
    return x->id < y->id ? -1 : x->id > y->id;            // then by id (llama.cpp's sort is unstable here)
}

// Control, user-defined and unknown tokens, tried in this order when partitioning text.
static ll_status build_special(ll_tokenizer *t, ll_error *err) {
    uint32_t mask = LL_TOK_ATTR_CONTROL | LL_TOK_ATTR_USER_DEFINED | LL_TOK_ATTR_UNKNOWN;
    int n = 0;
    for (int32_t id = 0; id < t->n_vocab; id++) n += (t->tok[id].attr & mask) != 0;
    len_id *v = ll_calloc((size_t)n + 1, sizeof *v, err);
    t->special = ll_calloc((size_t)n + 1, sizeof *t->special, err);
    if (!v || !t->special) {
        free(v);
        return err ? err->status : LL_ERR_NOMEM;
    }
    n = 0;
    for (int32_t id = 0; id < t->n_vocab; id++)
        if (t->tok[id].attr & mask) v[n++] = (len_id){t->tok[id].len, id};
    qsort(v, (size_t)n, sizeof *v, cmp_special);
    for (int i = 0; i < n; i++) t->special[i] = v[i].id;
    t->n_special = n;
    free(v);
    return LL_OK;
}

// SPM byte fallback: "<0xXX>", else the 1-byte text itself (llama.cpp's byte_to_token).
static void find_byte_ids(ll_tokenizer *t) {
    for (int b = 0; b < 256; b++) {
        char hex[7], raw = (char)b;
        snprintf(hex, sizeof hex, "<0x%02X>", b);
        t->byte_id[b] = ll_tok_lookup(t, hex, 6);
        if (t->byte_id[b] < 0) t->byte_id[b] = ll_tok_lookup(t, &raw, 1);
    }
}

static int hex_val(char c) { return c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10; }

// Growable byte buffer for the piece cache.
typedef struct pbuf {
    char *p;
    size_t n, cap;
    bool ok;
} pbuf;

static void put(pbuf *b, const char *s, size_t n) {
    if (!b->ok) return;
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->n + n) cap *= 2;
        char *q = realloc(b->p, cap);
        if (!q) {
            b->ok = false;
            return;
        }
        b->p = q, b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
}

// Byte-level BPE text -> bytes (llama.cpp's llama_decode_text, including its "[UNK_BYTE_0x..]" for a code point
// outside GPT-2's byte map).
static void bpe_decode(const char *s, size_t n, pbuf *b) {
    for (size_t pos = 0; pos < n;) {
        uint32_t cp = ll_utf8_next((const uint8_t *)s, n, &pos);
        int byte = ll_bpe_cp_to_byte(cp);
        if (byte >= 0) {
            char c = (char)byte;
            put(b, &c, 1);
            continue;
        }
        char u8[4], hex[3];
        int k = ll_utf8_put(cp, u8);
        put(b, "[UNK_BYTE_0x", 12);
        for (int j = 0; j < k; j++) snprintf(hex, sizeof hex, "%02x", (uint8_t)u8[j]), put(b, hex, 2);
        put(b, s, n);
        put(b, "]", 1);
    }
}

// The piece of a token with special = true (llama.cpp's token_to_piece cache).
static void piece_of(const ll_tokenizer *t, int32_t id, pbuf *b) {
    const char *s = ll_tok_text(t, id);
    size_t n = t->tok[id].len;
    uint32_t a = t->tok[id].attr;
    if (a & (LL_TOK_ATTR_UNKNOWN | LL_TOK_ATTR_CONTROL | LL_TOK_ATTR_USER_DEFINED)) {
        put(b, s, n);
    } else if (a & LL_TOK_ATTR_NORMAL) {
        if (t->kind == LL_TOK_BPE) {
            bpe_decode(s, n, b);
            return;
        }
        for (size_t i = 0; i < n; i++) { // U+2581 -> ' '
            bool mark = i + 2 < n && memcmp(s + i, "\xe2\x96\x81", 3) == 0;
            put(b, mark ? " " : s + i, 1);
            i += mark ? 2 : 0;
        }
    } else if (a & LL_TOK_ATTR_BYTE) { // "<0xXX>", checked at load
        char c = (char)(hex_val(s[3]) * 16 + hex_val(s[4]));
        put(b, &c, 1);
    } // unused / undefined: no text
}

static ll_status build_pieces(ll_tokenizer *t, ll_error *err) {
    pbuf b = {NULL, 0, 0, true};
    for (int32_t id = 0; id < t->n_vocab && b.ok; id++) {
        size_t start = b.n;
        piece_of(t, id, &b);
        if (b.n >= UINT32_MAX) b.ok = false;
        t->tok[id].poff = (uint32_t)start;
        t->tok[id].plen = (uint32_t)(b.n - start);
        if (t->tok[id].plen > t->max_piece) t->max_piece = t->tok[id].plen;
    }
    put(&b, "", 1);
    if (!b.ok) {
        free(b.p);
        return ll_err_set(err, LL_ERR_NOMEM, "tokenizer: out of memory building the piece cache");
    }
    t->pieces = b.p;
    return LL_OK;
}

ll_status ll_tok_special_init(ll_tokenizer *t, const ll_gguf *g, ll_error *err) {
    int32_t fim[6] = {-1, -1, -1, -1, -1, -1};
    ll_status st = read_ids(t, g, fim, err);
    if (st == LL_OK) st = find_eog(t, fim, err);
    if (st == LL_OK) st = build_special(t, err);
    if (st == LL_OK) st = build_pieces(t, err);
    if (st == LL_OK) find_byte_ids(t);
    return st;
}
