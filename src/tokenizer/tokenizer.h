// tokenizer.h — text <-> token ids from GGUF metadata: SentencePiece-style (tokenizer.ggml.model = "llama",
// score-driven merges with byte fallback) and byte-level BPE ("gpt2", rank-driven merges, with the gpt-2,
// llama-bpe/llama3 and qwen2 pre-tokenizer rules). Special/control tokens, BOS/EOS per metadata.
#ifndef LL_TOKENIZER_H
#define LL_TOKENIZER_H

#include "formats/gguf.h"

typedef struct ll_tokenizer ll_tokenizer;

// Reads tokenizer.ggml.* keys; validates ids (bos/eos/... in range, arrays of equal length, merges parse).
ll_status ll_tokenizer_init(ll_tokenizer **out, const ll_gguf *g, ll_error *err);
void ll_tokenizer_free(ll_tokenizer *t);

int ll_tokenizer_n_vocab(const ll_tokenizer *t);
int32_t ll_tokenizer_bos(const ll_tokenizer *t); // -1 when none
int32_t ll_tokenizer_eos(const ll_tokenizer *t);
bool ll_tokenizer_add_bos(const ll_tokenizer *t); // per metadata, with llama.cpp's defaults when absent
bool ll_tokenizer_is_eog(const ll_tokenizer *t, int32_t id);
bool ll_tokenizer_is_control(const ll_tokenizer *t, int32_t id);
// The token's text as stored (SPM: with U+2581 for spaces; BPE: GPT-2 byte-to-unicode form).
ll_str ll_tokenizer_token_text(const ll_tokenizer *t, int32_t id);
// Find a token by its stored text, -1 when absent (e.g. "<|im_end|>").
int32_t ll_tokenizer_find(const ll_tokenizer *t, const char *text);

// Same contract as ll_tokenize in llmlab.h.
int ll_tokenizer_encode(const ll_tokenizer *t, const char *text, size_t len, bool add_special, bool parse_special,
                        int32_t *ids, int cap);
// Same contract as ll_token_to_piece in llmlab.h (raw bytes; SPM space marker -> ' ', <0xXX> -> byte).
int ll_tokenizer_piece(const ll_tokenizer *t, int32_t id, bool special, char *buf, int cap);

// A whole sequence as llama.cpp's llama_detokenize renders it: the pieces concatenated; the first piece loses one
// leading space when the vocabulary adds a space prefix (SPM), except after a BOS that remove_special dropped;
// remove_special drops a leading BOS / trailing EOS the vocabulary adds; unparse_special renders control tokens;
// BPE vocabularies that ask for it get llama.cpp's clean-up of spaces before ?!., and contractions. Returns the
// length (no NUL is written), or -(needed) when cap is too small.
int ll_tokenizer_detokenize(const ll_tokenizer *t, const int32_t *ids, int n, bool remove_special,
                            bool unparse_special, char *buf, int cap);

// The streaming detokenizer of llmlab.h (ll_detok_push/flush/free are implemented with the tokenizer). It emits
// the pieces (special = false) concatenated, holding back an incomplete UTF-8 character until its last byte
// arrives; malformed bytes come out as U+FFFD, and flush turns a held-back incomplete character into U+FFFD.
// NULL when out of memory.
ll_detok *ll_detok_init_tok(const ll_tokenizer *t);

#endif
