// encode.c — text -> ids: special-token partitioning (user-defined tokens always, control tokens when
// parse_special), BOS/EOS per the vocabulary, and the SPM or BPE merge of each raw-text fragment. Also the
// scratch buffers and merge heap both merges share.
#include "tokenizer/tok_internal.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

// ---- scratch and heap -----------------------------------------------------------------------------------
static bool grow(void **p, size_t n, size_t es) {
    size_t bytes;
    if (!ll_mul_ok(n, es, &bytes)) return false;
    void *q = realloc(*p, bytes ? bytes : 1);
    if (!q) return false;
    *p = q;
    return true;
}

bool ll_tok_scratch_syms(ll_tok_scratch *s, size_t n) {
    if (n <= s->sym_cap) return true;
    if (n > INT32_MAX / 3) return false;
    if (!grow((void **)&s->prev, n, 4) || !grow((void **)&s->next, n, 4) || !grow((void **)&s->id, n, 4) ||
        !grow((void **)&s->start, n, 4) || !grow((void **)&s->len, n, 4) || !grow((void **)&s->heap, 3 * n, sizeof *s->heap))
        return false;
    s->sym_cap = n;
    s->heap_cap = 3 * n; // n - 1 initial pairs + 2 per merge (at most n - 1 merges)
    return true;
}

bool ll_tok_scratch_buf(ll_tok_scratch *s, size_t n) {
    if (n <= s->buf_cap) return true;
    if (!grow((void **)&s->buf, n, 1)) return false;
    s->buf_cap = n;
    return true;
}

void ll_tok_scratch_free(ll_tok_scratch *s) {
    free(s->prev), free(s->next), free(s->id), free(s->start), free(s->len), free(s->heap), free(s->buf);
    free(s->cps), free(s->lens);
    memset(s, 0, sizeof *s);
}

// Binary min-heap on key.
void ll_tok_heap_push(ll_tok_scratch *s, ll_tok_heap_item it) {
    LL_ASSERT(s->heap_n < s->heap_cap);
    size_t i = s->heap_n++;
    while (i > 0 && s->heap[(i - 1) / 2].key > it.key) {
        s->heap[i] = s->heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    s->heap[i] = it;
}

ll_tok_heap_item ll_tok_heap_pop(ll_tok_scratch *s) {
    LL_ASSERT(s->heap_n > 0);
    ll_tok_heap_item top = s->heap[0], last = s->heap[--s->heap_n];
    size_t i = 0, n = s->heap_n;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && s->heap[c + 1].key < s->heap[c].key) c++;
        if (s->heap[c].key >= last.key) break;
        s->heap[i] = s->heap[c];
        i = c;
    }
    if (n > 0) s->heap[i] = last;
    return top;
}

// ---- special-token partitioning --------------------------------------------------------------------------
// A fragment: a matched special token (id >= 0) or raw text [off, off + len) of the input.
typedef struct frag {
    int32_t id;
    size_t off, len;
} frag;

typedef struct frags {
    frag *v;
    size_t n, cap;
} frags;

static bool frag_add(frags *f, frag x) {
    if (f->n == f->cap) {
        size_t cap = f->cap ? 2 * f->cap : 16;
        if (!grow((void **)&f->v, cap, sizeof *f->v)) return false;
        f->cap = cap;
    }
    f->v[f->n++] = x;
    return true;
}

// Split every raw fragment of *in at each occurrence of token id's text (left to right), into *out.
static bool split_on(const ll_tokenizer *t, int32_t id, const char *text, const frags *in, frags *out) {
    const char *tt = ll_tok_text(t, id);
    size_t tl = t->tok[id].len;
    out->n = 0;
    for (size_t i = 0; i < in->n; i++) {
        frag f = in->v[i];
        while (f.id < 0 && f.len >= tl) {
            const char *m = memmem(text + f.off, f.len, tt, tl);
            if (!m) break;
            size_t at = (size_t)(m - text);
            if (at > f.off && !frag_add(out, (frag){-1, f.off, at - f.off})) return false;
            if (!frag_add(out, (frag){id, 0, 0})) return false;
            f.len -= at + tl - f.off;
            f.off = at + tl;
        }
        if ((f.id >= 0 || f.len > 0) && !frag_add(out, f)) return false;
    }
    return true;
}

// llama.cpp's tokenizer_st_partition: special tokens longest first; control and unknown tokens only when
// parse_special. (The per-model LSTRIP/RSTRIP attributes llama.cpp sets for phi-3 and jina are not applied.)
static bool partition(const ll_tokenizer *t, const char *text, size_t len, bool parse_special, frags *f) {
    frags tmp = {0};
    bool ok = frag_add(f, (frag){-1, 0, len});
    for (int k = 0; ok && k < t->n_special; k++) {
        int32_t id = t->special[k];
        if (!parse_special && (t->tok[id].attr & (LL_TOK_ATTR_CONTROL | LL_TOK_ATTR_UNKNOWN))) continue;
        if (t->tok[id].len > len || !memmem(text, len, ll_tok_text(t, id), t->tok[id].len)) continue;
        ok = split_on(t, id, text, f, &tmp);
        frags sw = *f;
        *f = tmp;
        tmp = sw;
    }
    free(tmp.v);
    return ok;
}

// ---- encode ---------------------------------------------------------------------------------------------
static bool encode_frags(const ll_tokenizer *t, const char *text, const frags *f, ll_tok_scratch *s, ll_tok_out *o) {
    bool prev_special = true; // SPM: the first raw fragment, and any after a special token, get the space prefix
    for (size_t i = 0; i < f->n; i++) {
        if (f->v[i].id >= 0) {
            ll_tok_emit(o, f->v[i].id);
            prev_special = true;
            continue;
        }
        bool ok = t->kind == LL_TOK_SPM
                      ? ll_spm_encode(t, text + f->v[i].off, f->v[i].len, t->add_space_prefix && prev_special, s, o)
                      : ll_bpe_encode(t, text + f->v[i].off, f->v[i].len, s, o);
        if (!ok) return false;
        prev_special = false;
    }
    return true;
}

int ll_tokenizer_encode(const ll_tokenizer *t, const char *text, size_t len, bool add_special, bool parse_special,
                        int32_t *ids, int cap) {
    ll_tok_out o = {ids, cap > 0 ? (size_t)cap : 0, 0};
    frags f = {0};
    ll_tok_scratch s = {0};
    bool ok = true;
    if (add_special && t->add_bos) ll_tok_emit(&o, t->bos);
    if (len > 0) ok = partition(t, text, len, parse_special, &f) && encode_frags(t, text, &f, &s, &o);
    if (add_special && t->add_eos) ll_tok_emit(&o, t->eos);
    free(f.v);
    ll_tok_scratch_free(&s);
    if (!ok || o.n > INT_MAX) {
        ll_log(LL_LOG_ERROR, "tokenize: out of memory or input too long (%zu bytes)", len);
        return 0;
    }
    return o.n <= o.cap ? (int)o.n : -(int)o.n;
}
