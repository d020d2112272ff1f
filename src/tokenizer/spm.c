// spm.c — SentencePiece-style encoding (tokenizer.ggml.model = "llama"): spaces become U+2581, then the adjacent
// pair whose concatenation is the highest-scoring token is merged until none is left (ties: leftmost), with a
// priority queue (O(n log n)); pieces that are not tokens fall back to <0xXX> byte tokens.
#include "tokenizer/tok_internal.h"

#include <string.h>

#define SPACE_MARK "\xe2\x96\x81" // U+2581 LOWER ONE EIGHTH BLOCK

// Heap key for "higher score first": map the float to an unsigned whose order is the float order, then invert.
static uint64_t score_key(float f) {
    uint32_t u;
    if (f == 0) f = 0; // -0 ties with +0, as in llama.cpp's comparison
    memcpy(&u, &f, 4);
    u = (u & 0x80000000u) ? ~u : (u | 0x80000000u);
    return (uint64_t)(~u);
}

static void try_pair(const ll_tokenizer *t, ll_tok_scratch *s, int32_t l, int32_t r) {
    if (l < 0 || r < 0) return;
    uint32_t size = s->len[l] + s->len[r];
    int32_t id = ll_tok_lookup(t, s->buf + s->start[l], size); // the pair is contiguous in the text
    if (id < 0) return;
    ll_tok_heap_push(s, (ll_tok_heap_item){(score_key(t->tok[id].score) << 32) | (uint32_t)l, r, size});
}

// A final symbol: its token, or one byte token per byte (unknown token when the vocabulary has no byte token;
// llama.cpp would throw there).
static void emit_symbol(const ll_tokenizer *t, const char *p, uint32_t n, ll_tok_out *o) {
    int32_t id = ll_tok_lookup(t, p, n);
    if (id >= 0) {
        ll_tok_emit(o, id);
        return;
    }
    for (uint32_t j = 0; j < n; j++) {
        int32_t b = t->byte_id[(uint8_t)p[j]];
        if (b < 0) b = t->unk;
        if (b >= 0) ll_tok_emit(o, b);
    }
}

// Escape into s->buf: optional leading space, every ' ' as U+2581. Returns the escaped length.
static size_t escape(const char *text, size_t len, bool prefix_space, char *b) {
    size_t n = 0;
    if (prefix_space) {
        memcpy(b, SPACE_MARK, 3);
        n = 3;
    }
    for (size_t i = 0; i < len; i++) {
        if (text[i] == ' ') {
            memcpy(b + n, SPACE_MARK, 3);
            n += 3;
        } else {
            b[n++] = text[i];
        }
    }
    return n;
}

bool ll_spm_encode(const ll_tokenizer *t, const char *text, size_t len, bool prefix_space, ll_tok_scratch *s,
                   ll_tok_out *o) {
    size_t cap;
    if (!ll_add_ok(len, 1, &cap) || !ll_mul_ok(cap, 3, &cap) || cap > INT32_MAX || !ll_tok_scratch_buf(s, cap))
        return false;
    size_t n = escape(text, len, prefix_space, s->buf);
    if (n == 0) return true;
    // One symbol per UTF-8 character (by the lead byte's announced length, clipped at the end).
    size_t n_sym = 0;
    for (size_t off = 0; off < n; n_sym++) off += ll_utf8_lead_len((uint8_t)s->buf[off]);
    if (!ll_tok_scratch_syms(s, n_sym)) return false;
    size_t off = 0;
    for (size_t i = 0; i < n_sym; i++) {
        size_t l = ll_utf8_lead_len((uint8_t)s->buf[off]);
        if (l > n - off) l = n - off;
        s->start[i] = (uint32_t)off;
        s->len[i] = (uint32_t)l;
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
        s->len[l] += s->len[r];
        s->len[r] = 0;
        s->next[l] = s->next[r];
        if (s->next[r] >= 0) s->prev[s->next[r]] = l;
        try_pair(t, s, s->prev[l], l);
        try_pair(t, s, l, s->next[l]);
    }
    for (int32_t i = 0; i != -1; i = s->next[i]) emit_symbol(t, s->buf + s->start[i], s->len[i], o);
    return true;
}
