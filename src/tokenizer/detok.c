// detok.c — ids -> text: one token's piece, a whole sequence the way llama.cpp's llama_detokenize renders it,
// and the streaming detokenizer of llmlab.h that only ever hands out complete UTF-8 characters.
#include "tokenizer/tok_internal.h"

#include <stdlib.h>
#include <string.h>

// The piece as text (special = false: control and unknown tokens give nothing); NULL-free.
static const char *piece_ptr(const ll_tokenizer *t, int32_t id, bool special, size_t *n) {
    *n = 0;
    if (id < 0 || id >= t->n_vocab) return "";
    if (!special && (t->tok[id].attr & (LL_TOK_ATTR_UNKNOWN | LL_TOK_ATTR_CONTROL))) return "";
    *n = t->tok[id].plen;
    return t->pieces + t->tok[id].poff;
}

int ll_tokenizer_piece(const ll_tokenizer *t, int32_t id, bool special, char *buf, int cap) {
    size_t n;
    const char *p = piece_ptr(t, id, special, &n);
    if ((size_t)(cap > 0 ? cap : 0) < n) return -(int)n;
    if (n) memcpy(buf, p, n);
    return (int)n;
}

// llama.cpp's clean_up_tokenization_spaces passes, in place: " ?" " !" " ." " ," lose the space; a lone
// "'" between spaces loses both; " 's" " 'm" " 're" " 've" lose the space. Returns the new length.
static size_t clean_spaces(char *s, size_t n) {
    size_t m = n ? 1 : 0;
    for (size_t i = 1; i < n; i++) {
        char x = s[i];
        if (s[i - 1] == ' ' && (x == '?' || x == '!' || x == '.' || x == ',')) m--;
        s[m++] = x;
    }
    n = m, m = n ? 1 : 0;
    for (size_t i = 1; i < n; i++) {
        char x = s[i];
        if (x == '\'' && i + 1 < n && s[i - 1] == ' ' && s[i + 1] == ' ') {
            m--;
            s[++i] = '\0'; // as llama.cpp: the next space is overwritten, then skipped
        }
        s[m++] = x;
    }
    n = m, m = n ? 1 : 0;
    for (size_t i = 1; i < n; i++) {
        char x = s[i];
        if (s[i - 1] == ' ' && x == '\'' && i + 1 < n) {
            char x1 = s[i + 1], x2 = i + 2 < n ? s[i + 2] : 0;
            if (x1 == 's' || x1 == 'm' || (i + 2 < n && ((x1 == 'r' && x2 == 'e') || (x1 == 'v' && x2 == 'e')))) m--;
        }
        s[m++] = x;
    }
    return m;
}

int ll_tokenizer_detokenize(const ll_tokenizer *t, const int32_t *ids, int n, bool remove_special,
                            bool unparse_special, char *buf, int cap) {
    bool strip = t->add_space_prefix;
    if (n < 0) n = 0;
    if (remove_special && t->add_bos && n > 0 && ids[0] == t->bos) ids++, n--, strip = false;
    if (remove_special && t->add_eos && n > 0 && ids[n - 1] == t->eos) n--;
    size_t total = 0, room = cap > 0 ? (size_t)cap : 0;
    for (int i = 0; i < n; i++) {
        size_t k;
        const char *p = piece_ptr(t, ids[i], unparse_special, &k);
        if (strip && k > 0 && p[0] == ' ') p++, k--;
        strip = false;
        if (total + k <= room) memcpy(buf + total, p, k);
        total += k;
        if (total > INT32_MAX) return INT32_MIN + 1;
    }
    if (total > room) return -(int)total;
    if (t->clean_spaces) total = clean_spaces(buf, total);
    return (int)total;
}

// ---- streaming ------------------------------------------------------------------------------------------
struct ll_detok {
    const ll_tokenizer *t;
    uint8_t pend[4]; // the start of a character whose other bytes have not come yet
    size_t n_pend;
    bool strip, started;
    char *out; // 3 * (max piece + 3) + 1: every input byte may turn into a 3-byte U+FFFD
};

ll_detok *ll_detok_init_tok(const ll_tokenizer *t) {
    ll_detok *d = calloc(1, sizeof *d);
    if (d) d->out = malloc(3 * ((size_t)t->max_piece + 3) + 1);
    if (!d || !d->out) {
        free(d);
        ll_log(LL_LOG_ERROR, "detokenizer: out of memory");
        return NULL;
    }
    d->t = t;
    d->out[0] = 0;
    return d;
}

void ll_detok_set_strip_leading_space(ll_detok *d, bool strip) {
    if (d) d->strip = strip;
}

// Pending bytes then p[0..n): copy complete characters, U+FFFD for malformed bytes, keep an incomplete tail
// (or, at the end of the stream, turn it into U+FFFD too).
static const char *feed(ll_detok *d, const char *p, size_t n, bool final) {
    size_t total = d->n_pend + n, i = 0, o = 0, n_keep = 0;
    uint8_t keep[4];
    while (i < total) {
        uint8_t c[4];
        size_t k = total - i < 4 ? total - i : 4, len;
        for (size_t j = 0; j < k; j++) c[j] = i + j < d->n_pend ? d->pend[i + j] : (uint8_t)p[i + j - d->n_pend];
        int r = ll_utf8_check(c, k, &len);
        if (r == 0 && !final) {
            memcpy(keep, c, k);
            n_keep = k;
            break;
        }
        if (r == 1) memcpy(d->out + o, c, len);
        else memcpy(d->out + o, "\xef\xbf\xbd", 3); // U+FFFD REPLACEMENT CHARACTER
        o += r == 1 ? len : 3;
        i += r == 0 ? k : len;
    }
    memcpy(d->pend, keep, n_keep);
    d->n_pend = n_keep;
    d->out[o] = 0;
    return d->out;
}

const char *ll_detok_push(ll_detok *d, int32_t id) {
    if (!d) return "";
    size_t n;
    const char *p = piece_ptr(d->t, id, false, &n);
    if (n > 0 && !d->started) {
        d->started = true;
        if (d->strip && d->t->add_space_prefix && p[0] == ' ') p++, n--;
    }
    return feed(d, p, n, false);
}

const char *ll_detok_flush(ll_detok *d) { return d ? feed(d, "", 0, true) : ""; }

void ll_detok_free(ll_detok *d) {
    if (!d) return;
    free(d->out);
    free(d);
}
