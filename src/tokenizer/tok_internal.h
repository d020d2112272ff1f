// tok_internal.h — private to src/tokenizer: the tokenizer's layout, token-text lookup, the UTF-8 and Unicode
// class helpers, GPT-2's byte<->unicode map and the pre-tokenizer splitters (also used by the tests).
#ifndef LL_TOK_INTERNAL_H
#define LL_TOK_INTERNAL_H

#include "tokenizer/tokenizer.h"

// Token attributes as bit flags, the values of llama.cpp's llama_token_attr; GGUF token_type maps onto them
// (1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte; anything else: no flag = undefined).
enum {
    LL_TOK_ATTR_UNKNOWN = 1 << 0,
    LL_TOK_ATTR_UNUSED = 1 << 1,
    LL_TOK_ATTR_NORMAL = 1 << 2,
    LL_TOK_ATTR_CONTROL = 1 << 3,
    LL_TOK_ATTR_USER_DEFINED = 1 << 4,
    LL_TOK_ATTR_BYTE = 1 << 5,
};

typedef enum { LL_TOK_SPM, LL_TOK_BPE } ll_tok_kind;

// Pre-tokenizer rules (tokenizer.ggml.pre): GPT-2's regex, Llama 3's (digits in runs of 1-3), Qwen2's (single
// digits). All three are hand-written scanners that reproduce llama.cpp's splits.
typedef enum { LL_PRETOK_GPT2, LL_PRETOK_LLAMA3, LL_PRETOK_QWEN2 } ll_pretok;

typedef struct ll_tok_entry {
    uint32_t off, len;   // text in t->blob
    uint32_t poff, plen; // piece with special = true, in t->pieces
    float score;         // SPM merge priority
    uint32_t attr;       // LL_TOK_ATTR_* flags
} ll_tok_entry;

typedef struct ll_merge_slot {
    uint64_t key;   // (left id << 32) | right id; UINT64_MAX = empty
    int32_t rank;   // index in tokenizer.ggml.merges (first occurrence wins)
    int32_t result; // id of the merged text
} ll_merge_slot;

struct ll_tokenizer {
    ll_tok_kind kind;
    ll_pretok pre;
    int n_vocab;
    ll_tok_entry *tok; // [n_vocab]
    char *blob;        // all token texts, back to back (empty texts renamed "[EMPTY_i]" like llama.cpp)
    char *pieces;      // all pieces, back to back
    uint32_t max_piece;

    int32_t *tmap; // open addressing, token text -> id, -1 = empty; size tmap_mask + 1 (power of two)
    uint64_t tmap_mask;
    ll_merge_slot *mmap; // BPE only: merge pair -> rank; size mmap_mask + 1
    uint64_t mmap_mask;

    int32_t *special; // CONTROL / USER_DEFINED / UNKNOWN ids, longest text first (ties: lower id first)
    int n_special;
    int32_t *eog; // end-of-generation ids, sorted
    int n_eog;
    int32_t byte_id[256]; // SPM byte fallback: id of "<0xXX>" (or of the 1-byte text), -1 when absent

    int32_t bos, eos, eot, eom, unk, sep, pad; // -1 = none
    bool add_bos, add_eos, add_space_prefix, ignore_merges, clean_spaces;
};

// ---- token text lookup (vocab.c) ------------------------------------------------------------------------
uint64_t ll_tok_hash(const char *s, size_t n);
int32_t ll_tok_lookup(const ll_tokenizer *t, const char *s, size_t n); // -1 when absent
int32_t ll_tok_merge(const ll_tokenizer *t, int32_t left, int32_t right, int32_t *result); // rank or -1
static inline const char *ll_tok_text(const ll_tokenizer *t, int32_t id) { return t->blob + t->tok[id].off; }

// ---- UTF-8 and Unicode classes (unicode.c, unicode_data.c) ------------------------------------------------
typedef enum { LL_UCAT_OTHER = 0, LL_UCAT_LETTER = 1, LL_UCAT_NUMBER = 2, LL_UCAT_SPACE = 3 } ll_ucat;
ll_ucat ll_ucat_of(uint32_t cp);

// Length of the UTF-8 sequence a lead byte announces, by its high nibble (1 for continuation bytes), as the
// SPM/BPE symbol splitters of llama.cpp do.
static inline size_t ll_utf8_lead_len(uint8_t b) {
    static const uint8_t k[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    return k[b >> 4];
}
// Decode one code point at s[*pos] the way llama.cpp does (no overlong/surrogate checks); a malformed
// sequence gives U+FFFD and advances one byte.
uint32_t ll_utf8_next(const uint8_t *s, size_t n, size_t *pos);
// Encode cp (> 0x10FFFF: U+FFFD); returns 1..4.
int ll_utf8_put(uint32_t cp, char *out);
// Strict check of the sequence at s[0..n): 1 = complete and valid (*len bytes), 0 = a valid prefix that needs
// more bytes, -1 = invalid (*len bytes to replace by one U+FFFD).
int ll_utf8_check(const uint8_t *s, size_t n, size_t *len);

// GPT-2 bytes_to_unicode: byte -> code point (printable bytes map to themselves, the rest to 256 + n), and back
// (-1 for a code point outside the map).
uint32_t ll_bpe_byte_to_cp(uint8_t b);
int ll_bpe_cp_to_byte(uint32_t cp);

// ---- pre-tokenizers (pretok.c) ---------------------------------------------------------------------------
// Split cps[0..n) into words; writes each word's length in code points to lens (room for n), returns the count.
size_t ll_pretok_split(ll_pretok pre, const uint32_t *cps, size_t n, uint32_t *lens);

// ---- merges (spm.c, bpe.c) ------------------------------------------------------------------------------
// Growable output of an encode call: ids beyond cap are counted, not stored.
typedef struct ll_tok_out {
    int32_t *ids;
    size_t cap, n;
} ll_tok_out;
static inline void ll_tok_emit(ll_tok_out *o, int32_t id) {
    if (o->n < o->cap) o->ids[o->n] = id;
    o->n++;
}

// Reusable scratch of one encode call (symbols and the merge heap), freed by ll_tok_scratch_free.
typedef struct ll_tok_heap_item {
    uint64_t key; // (priority << 32) | left symbol: smallest first
    int32_t right;
    uint32_t size; // bytes of left + right when pushed; a mismatch later means the entry is stale
} ll_tok_heap_item;
typedef struct ll_tok_scratch {
    int32_t *prev, *next, *id;
    uint32_t *start, *len;
    size_t sym_cap;
    ll_tok_heap_item *heap;
    size_t heap_n, heap_cap;
    char *buf; // SPM: escaped text; BPE: byte-encoded word
    size_t buf_cap;
    uint32_t *cps, *lens; // BPE: code points of a fragment and word lengths
    size_t cps_cap;
} ll_tok_scratch;
bool ll_tok_scratch_syms(ll_tok_scratch *s, size_t n);   // room for n symbols and 3n heap items
bool ll_tok_scratch_buf(ll_tok_scratch *s, size_t n);    // room for n bytes
void ll_tok_scratch_free(ll_tok_scratch *s);
void ll_tok_heap_push(ll_tok_scratch *s, ll_tok_heap_item it);
ll_tok_heap_item ll_tok_heap_pop(ll_tok_scratch *s);

// Tokenize one raw-text fragment (after special-token partitioning). false on allocation failure.
bool ll_spm_encode(const ll_tokenizer *t, const char *text, size_t len, bool prefix_space, ll_tok_scratch *s,
                   ll_tok_out *o);
bool ll_bpe_encode(const ll_tokenizer *t, const char *text, size_t len, ll_tok_scratch *s, ll_tok_out *o);

#endif
