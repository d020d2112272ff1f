// pretok.c — byte-level BPE pre-tokenizers as hand-written scanners over code points: GPT-2's regex and the
// Llama 3 / Qwen2 regex, giving the same splits as llama.cpp's unicode_regex_split for these patterns.
//   gpt-2:  's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//   llama3: (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|
//           \s+(?!\S)|\s+        (qwen2: \p{N} instead of \p{N}{1,3})
#include "tokenizer/tok_internal.h"

#define CAT_NONE (-1) // a position past the end: no class (so neither \s nor [^\s\p{L}\p{N}])

typedef struct scan {
    const uint32_t *cps;
    size_t n, start; // start: first code point of the word being built
    uint32_t *lens;
    size_t n_words;
} scan;

static int cat_at(const scan *s, size_t pos) { return pos < s->n ? (int)ll_ucat_of(s->cps[pos]) : CAT_NONE; }
static uint32_t cp_at(const scan *s, size_t pos) { return pos < s->n ? s->cps[pos] : UINT32_MAX; }

// Close the word [start, end) if it is not empty.
static void word_end(scan *s, size_t end) {
    if (end > s->start) s->lens[s->n_words++] = (uint32_t)(end - s->start);
    s->start = end;
}

static uint32_t ascii_lower(uint32_t c) { return c >= 'A' && c <= 'Z' ? c + 32 : c; }

// 's 't 're 've 'm 'll 'd at pos (case-insensitive when ci); returns the match length or 0.
static size_t contraction(const scan *s, size_t pos, bool ci) {
    if (s->cps[pos] != '\'' || pos + 1 >= s->n) return 0;
    uint32_t a = cp_at(s, pos + 1), b = pos + 2 < s->n ? cp_at(s, pos + 2) : 0;
    if (ci) a = ascii_lower(a), b = ascii_lower(b); // no non-ASCII letter lowercases to these
    if (a == 's' || a == 't' || a == 'm' || a == 'd') return 2;
    if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return 3;
    return 0;
}

// \s+(?!\S) then \s+ at pos (a whitespace run): keep the last blank for the next word unless the run ends
// the text. Returns the end of the word.
static size_t blank_run(const scan *s, size_t pos) {
    size_t nws = 0;
    while (cat_at(s, pos + nws) == LL_UCAT_SPACE) nws++;
    if (nws > 1 && pos + nws < s->n) return pos + nws - 1;
    return pos + (nws > 0 ? nws : 1); // nws == 0 cannot happen for a class-complete scanner; move on
}

static void split_gpt2(scan *s) {
    size_t pos = 0;
    while (pos < s->n) {
        uint32_t c = s->cps[pos];
        size_t k = contraction(s, pos, false);
        if (k) {
            word_end(s, pos += k);
            continue;
        }
        int cat2 = c == ' ' ? cat_at(s, pos + 1) : (int)ll_ucat_of(c); // the class after an optional space
        if (cat2 == LL_UCAT_LETTER || cat2 == LL_UCAT_NUMBER || cat2 == LL_UCAT_OTHER) {
            pos += c == ' ';
            while (cat_at(s, pos) == cat2) pos++;
            word_end(s, pos);
            continue;
        }
        word_end(s, pos = blank_run(s, pos));
    }
}

// max_digits: 3 for llama3, 1 for qwen2.
static void split_llama3(scan *s, size_t max_digits) {
    size_t pos = 0;
    while (pos < s->n) {
        uint32_t c = s->cps[pos];
        int cat = (int)ll_ucat_of(c);
        size_t k = contraction(s, pos, true);
        if (k) {
            word_end(s, pos += k);
            continue;
        }
        // [^\r\n\p{L}\p{N}]?\p{L}+
        if (c != '\r' && c != '\n' && cat != LL_UCAT_NUMBER &&
            (cat == LL_UCAT_LETTER || cat_at(s, pos + 1) == LL_UCAT_LETTER)) {
            pos++;
            while (cat_at(s, pos) == LL_UCAT_LETTER) pos++;
            word_end(s, pos);
            continue;
        }
        // \p{N}{1,max_digits}
        if (cat == LL_UCAT_NUMBER) {
            size_t ini = pos;
            while (cat_at(s, pos) == LL_UCAT_NUMBER) {
                if (++pos - ini >= max_digits) {
                    word_end(s, pos);
                    ini = pos;
                }
            }
            word_end(s, pos);
            continue;
        }
        // ' ?[^\s\p{L}\p{N}]+[\r\n]*'. As in llama.cpp, a space at the very end also takes this branch (its
        // "next class" is none); the word is the same single space \s+ would give.
        int cat2 = c == ' ' ? cat_at(s, pos + 1) : cat;
        if (cat2 == LL_UCAT_OTHER || cat2 == CAT_NONE) {
            pos += c == ' ';
            while (cat_at(s, pos) == LL_UCAT_OTHER) pos++;
            while (cp_at(s, pos) == '\r' || cp_at(s, pos) == '\n') pos++;
            word_end(s, pos);
            continue;
        }
        // \s*[\r\n]+ : up to the last \r or \n of the whitespace run
        size_t nws = 0, last_rn = 0;
        while (cat_at(s, pos + nws) == LL_UCAT_SPACE) {
            uint32_t c2 = s->cps[pos + nws];
            if (c2 == '\r' || c2 == '\n') last_rn = pos + nws + 1;
            nws++;
        }
        word_end(s, pos = last_rn > 0 ? last_rn : blank_run(s, pos));
    }
}

size_t ll_pretok_split(ll_pretok pre, const uint32_t *cps, size_t n, uint32_t *lens) {
    scan s = {cps, n, 0, lens, 0};
    switch (pre) {
    case LL_PRETOK_GPT2: split_gpt2(&s); break;
    case LL_PRETOK_LLAMA3: split_llama3(&s, 3); break;
    case LL_PRETOK_QWEN2: split_llama3(&s, 1); break;
    }
    word_end(&s, n);
    return s.n_words;
}
