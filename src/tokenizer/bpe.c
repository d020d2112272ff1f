// bpe.c — byte-level BPE encoding (tokenizer.ggml.model = "gpt2"): pre-tokenize into words, map each word's
// bytes through GPT-2's bytes_to_unicode, then apply merges lowest rank first (ties: leftmost) with a priority
// queue over the symbols of the word.
#include "tokenizer/tok_internal.h"

#include <stdlib.h>
#include <string.h>

static void try_pair(const ll_tokenizer *t, ll_tok_scratch *s, int32_t l, int32_t r) {
    if (l < 0 || r < 0 || s->id[l] < 0 || s->id[r] < 0) return; // every merge half is a token (checked at load)
    int32_t result;
    int32_t rank = ll_tok_merge(t, s->id[l], s->id[r], &result);
    if (rank < 0) return;
    ll_tok_heap_push(s, (ll_tok_heap_item){((uint64_t)(uint32_t)rank << 32) | (uint32_t)l, r, s->len[l] + s->len[r]});
}

// Byte-encode the word's code points into s->buf (each byte -> a 1-2 byte UTF-8 char). Returns the length.
static size_t encode_word(const uint32_t *cps, size_t n, char *b) {
    size_t len = 0;
    for (size_t i = 0; i < n; i++) {
        char u8[4];
        int k = ll_utf8_put(cps[i], u8);
        for (int j = 0; j < k; j++) len += (size_t)ll_utf8_put(ll_bpe_byte_to_cp((uint8_t)u8[j]), b + len);
    }
    return len;
}

// Merge the symbols of one encoded word (s->buf[0..n)) and emit its tokens.
static bool merge_word(const ll_tokenizer *t, size_t n, ll_tok_scratch *s, ll_tok_out *o) {
    if (t->ignore_merges) { // llama3-style: a word that is a token is taken whole
        int32_t id = ll_tok_lookup(t, s->buf, n);
        if (id >= 0) {
            ll_tok_emit(o, id);
            return true;
        }
    }
    size_t n_sym = 0;
    for (size_t off = 0; off < n; n_sym++) off += ll_utf8_lead_len((uint8_t)s->buf[off]);
    if (!ll_tok_scratch_syms(s, n_sym)) return false;
    size_t off = 0;
    for (size_t i = 0; i < n_sym; i++) {
        size_t l = ll_utf8_lead_len((uint8_t)s->buf[off]);
        if (l > n - off) l = n - off;
        s->start[i] = (uint32_t)off;
        s->len[i] = (uint32_t)l;
        s->id[i] = ll_tok_lookup(t, s->buf + off, l);
        s->prev[i] = (int32_t)i - 1;
        s->next[i] = i + 1 < n_sym ? (int32_t)i + 1 : -1;
        off += l;
    }
    s->heap_n = 0;
    for (size_t i = 1; i < n_sym; i++) try_pair(t, s, (int32_t)i - 1, (int32_t)i);
    while (s->heap_n > 0) {
        ll_tok_heap_item it = ll_tok_heap_pop(s);
        int32_t l = (int32_t)(it.key & 0xffffffffu), r = it.right;
        if (s->len[l] == 0 || s->len[r] == 0 || s->len[l] + s->len[r] != it.size) continue; // stale
        int32_t result;
        LL_ASSERT(ll_tok_merge(t, s->id[l], s->id[r], &result) >= 0);
        s->id[l] = result;
        s->len[l] += s->len[r];
        s->len[r] = 0;
        s->next[l] = s->next[r];
        if (s->next[r] >= 0) s->prev[s->next[r]] = l;
        try_pair(t, s, s->prev[l], l);
        try_pair(t, s, l, s->next[l]);
    }
    for (int32_t i = 0; i != -1; i = s->next[i]) {
        if (s->id[i] >= 0) {
            ll_tok_emit(o, s->id[i]);
            continue;
        }
        for (uint32_t j = 0; j < s->len[i]; j++) { // not a token: single bytes that happen to be tokens
            int32_t b = ll_tok_lookup(t, s->buf + s->start[i] + j, 1);
            if (b >= 0) ll_tok_emit(o, b);
        }
    }
    return true;
}

bool ll_bpe_encode(const ll_tokenizer *t, const char *text, size_t len, ll_tok_scratch *s, ll_tok_out *o) {
    if (len == 0) return true;
    if (len > INT32_MAX / 8) return false; // 8 encoded bytes per code point at most
    if (len > s->cps_cap) {
        uint32_t *c = realloc(s->cps, len * sizeof *c), *w = c ? realloc(s->lens, len * sizeof *w) : NULL;
        if (c) s->cps = c;
        if (!w) return false;
        s->lens = w;
        s->cps_cap = len;
    }
    size_t n_cp = 0;
    for (size_t pos = 0; pos < len;) s->cps[n_cp++] = ll_utf8_next((const uint8_t *)text, len, &pos);
    size_t n_words = ll_pretok_split(t->pre, s->cps, n_cp, s->lens);
    const uint32_t *w = s->cps;
    for (size_t i = 0; i < n_words; w += s->lens[i++]) {
        if (!ll_tok_scratch_buf(s, (size_t)s->lens[i] * 8)) return false;
        if (!merge_word(t, encode_word(w, s->lens[i], s->buf), s, o)) return false;
    }
    return true;
}
