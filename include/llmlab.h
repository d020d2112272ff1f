// llmlab.h — the public C API: open a GGUF (or llama2.c) model, tokenize, evaluate token batches, read
// logits, sample, detokenize. Opaque handles; every fallible call returns an ll_status and fills an ll_error.
#ifndef LLMLAB_H
#define LLMLAB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define LLMLAB_VERSION "0.1.0"

typedef enum ll_status {
    LL_OK = 0,
    LL_ERR_IO,          // a file could not be opened, read, mapped or written
    LL_ERR_FORMAT,      // the input is malformed (bad magic, truncated, out-of-range field, ...)
    LL_ERR_MISSING,     // a required key or tensor is absent
    LL_ERR_UNSUPPORTED, // well-formed but not supported yet (tensor type, rope scaling, architecture)
    LL_ERR_NOMEM,       // would not fit: predicted before allocating, or an allocation failed
    LL_ERR_ARG,         // a bad argument from the caller (user flag, out-of-range id, ...)
    LL_ERR_INTERRUPTED, // stopped by the user
    LL_ERR_INTERNAL,
} ll_status;

// Every fallible call fills one of these: status plus a message that names the file/key/tensor and says
// what to do.
typedef struct ll_error {
    ll_status status;
    char message[1024];
} ll_error;

const char *ll_status_name(ll_status s);

typedef struct ll_model ll_model;     // weights + hyperparameters + tokenizer, read-only after load
typedef struct ll_context ll_context; // KV cache + activations for n_seq sequences (one by default)
typedef struct ll_sampler ll_sampler;

typedef struct ll_model_params {
    const char *tokenizer_path; // llama2.c checkpoints only: the tokenizer.bin beside it
    int n_threads;              // 0 = physical cores
    bool verbose;               // print the memory plan and the load details to stderr
} ll_model_params;

// The type of the KV cache's rows: F16 by default, as llama.cpp's (half the bytes of F32, which decode at long
// context reads every step); Q8_0 needs a head dimension that is a multiple of 32.
typedef enum ll_cache_type {
    LL_CACHE_F16 = 0,
    LL_CACHE_F32,
    LL_CACHE_Q8_0,
} ll_cache_type;
const char *ll_cache_type_name(ll_cache_type t); // "f16", "f32", "q8_0"
// "f16", "f32" or "q8_0" (as llama.cpp's --cache-type-k): false for anything else
bool ll_cache_type_parse(const char *s, ll_cache_type *out);

typedef struct ll_context_params {
    int n_ctx;   // positions per sequence; 0 = the model's training context, capped at 4096
    int n_batch; // most tokens evaluated in one forward call (prefill chunk), 0 = 512
    int n_threads; // 0 = the model's
    bool all_logits; // room for the logits of every token of a batch (perplexity, tests); else the last only
    const char *device; // "cpu", "cuda", or NULL = auto (the device of the model's engine if it has one, else
                        // CUDA when a device is found, else the CPU)
    int n_seq;          // sequences the context holds, each with n_ctx positions of KV cache; 0 = 1
    ll_cache_type cache_type; // default LL_CACHE_F16
    bool verbose;
} ll_context_params;

ll_model_params ll_model_default_params(void);
ll_context_params ll_context_default_params(void);

ll_status ll_model_load(const char *path, const ll_model_params *params, ll_model **out, ll_error *err);
void ll_model_free(ll_model *m);

int ll_model_n_vocab(const ll_model *m);
int ll_model_n_ctx_train(const ll_model *m);
int32_t ll_model_bos(const ll_model *m); // -1 when none
int32_t ll_model_eos(const ll_model *m);
bool ll_model_is_eog(const ll_model *m, int32_t id); // end of generation (eos, eot, ...)
const char *ll_model_arch(const ll_model *m);
const char *ll_model_chat_template(const ll_model *m); // tokenizer.chat_template or NULL
// A one-line description: architecture, parameters, type, size.
void ll_model_describe(const ll_model *m, char *buf, size_t cap);

// Tokenize: returns the number of ids written (<= cap), or -(needed) when cap is too small.
// add_special adds BOS/EOS as the vocabulary says; parse_special turns "<s>"-style text into control ids.
int ll_tokenize(const ll_model *m, const char *text, size_t len, bool add_special, bool parse_special, int32_t *ids,
                int cap);
// The bytes of one token as text (control tokens give "" unless special is true). Returns length, or
// -(needed) when cap is too small. Bytes of one UTF-8 character may be split across tokens: use ll_detok.
int ll_token_to_piece(const ll_model *m, int32_t id, bool special, char *buf, int cap);

// Streaming detokenizer: feed ids, get back only complete UTF-8 characters.
typedef struct ll_detok ll_detok;
ll_detok *ll_detok_init(const ll_model *m);
// Appends the text of id; returns a NUL-terminated string of what is ready to print (valid until the next call).
const char *ll_detok_push(ll_detok *d, int32_t id);
const char *ll_detok_flush(ll_detok *d); // what is left at the end (incomplete bytes as U+FFFD)
// Drop the leading space of the first piece with text (SentencePiece vocabularies that add a space prefix
// only), as llama_detokenize does: for text generated right after BOS. Off by default.
void ll_detok_set_strip_leading_space(ll_detok *d, bool strip);
void ll_detok_free(ll_detok *d);

// ---- generation: one sequence's stop conditions and streamed text ----------------------------------------
// ll_gen turns the ids sampled for one sequence into text that is safe to show: complete UTF-8, with any tail
// that could be the start of a stop string held back until it is decided. It does not evaluate anything: a
// caller driving many sequences in one batch keeps one ll_gen per sequence; ll_generate is the whole loop for one.
#define LL_GEN_MAX_STOPS 16     // stop strings per sequence
#define LL_GEN_MAX_STOP_LEN 256 // bytes per stop string

typedef enum ll_finish_reason {
    LL_FINISH_NONE = 0,    // not finished
    LL_FINISH_EOG,         // an end-of-generation token (eos, eot, ...)
    LL_FINISH_STOP,        // a stop string matched: neither it nor anything after it is emitted
    LL_FINISH_LENGTH,      // max_tokens generated
    LL_FINISH_CONTEXT,     // the context is full
    LL_FINISH_INTERRUPTED, // the interrupt flag, or the callback said stop
} ll_finish_reason;
const char *ll_finish_reason_name(ll_finish_reason r); // "eog", "stop", "length", "context", "interrupted", "none"

typedef struct ll_gen_params {
    int max_tokens;           // tokens to generate, -1 = until the context is full; an ending EOG token counts
    const char *const *stops; // n_stops stop strings (copied by ll_gen_init), each 1..LL_GEN_MAX_STOP_LEN bytes
    int n_stops;              // 0..LL_GEN_MAX_STOPS
    bool eog_ends;            // an end-of-generation token ends generation (default true; false: --ignore-eos)
    bool strip_leading_space; // as ll_detok_set_strip_leading_space: for text generated right after BOS
} ll_gen_params;

ll_gen_params ll_gen_default_params(void); // max_tokens -1, no stops, eog_ends true, no strip

typedef struct ll_gen ll_gen;
// NULL with err filled (LL_ERR_ARG) when a stop string is empty or too long, or there are too many.
ll_gen *ll_gen_init(const ll_model *m, const ll_gen_params *p, ll_error *err);
void ll_gen_free(ll_gen *g);
ll_status ll_gen_reset(ll_gen *g, ll_error *err); // a new sequence with the same parameters

// Feed one sampled id. *text (NUL-terminated, *len bytes, valid until the next call on g) is what may be
// emitted now. Returns LL_FINISH_NONE to go on, or why generation ended (EOG, STOP, LENGTH): then *text already
// holds everything that remains. After the end it returns the same reason and "".
ll_finish_reason ll_gen_push(ll_gen *g, int32_t id, const char **text, size_t *len);
// End for a reason the caller decides (CONTEXT, INTERRUPTED): *text gets the rest (held-back text that is not a
// stop match; an incomplete UTF-8 character as U+FFFD). Returns the reason the sequence ended with (the earlier
// one if it had already ended).
ll_finish_reason ll_gen_finish(ll_gen *g, ll_finish_reason reason, const char **text, size_t *len);
int ll_gen_n_tokens(const ll_gen *g);                // ids pushed so far
ll_finish_reason ll_gen_finish_reason(const ll_gen *g); // LL_FINISH_NONE while running

typedef struct ll_gen_result {
    int n_prompt;      // prompt tokens given
    int n_prompt_eval; // of them, evaluated: fewer when interrupted during the prompt
    int n_gen;         // tokens sampled (an ending EOG token included)
    double prompt_s;   // seconds in the prompt's ll_eval (up to the interruption when interrupted)
    double gen_s;      // seconds from the first sample to the end
    ll_finish_reason finish;
} ll_gen_result;

// Receives the text as it becomes safe to show; return false to stop (LL_FINISH_INTERRUPTED).
typedef bool (*ll_gen_callback)(const char *text, size_t len, void *user);

// The whole loop for one sequence: evaluate the prompt (n_prompt >= 1 ids after the n_past already cached) in
// one ll_eval, then sample (ll_sample, ll_sampler_accept for the repetition penalty), stream text to cb and
// evaluate one token at a time until EOG, a stop string, max_tokens, a full context, or the context's interrupt
// flag (ll_context_set_interrupt). Interruption is a finish reason, not an error: LL_OK. res is filled whatever
// the status.
ll_status ll_generate(ll_context *c, ll_sampler *s, const int32_t *prompt, int n_prompt, const ll_gen_params *p,
                      ll_gen_callback cb, void *user, ll_gen_result *res, ll_error *err);

ll_status ll_context_init(ll_model *m, const ll_context_params *params, ll_context **out, ll_error *err);
void ll_context_free(ll_context *c);
int ll_context_n_ctx(const ll_context *c);
int ll_context_n_past(const ll_context *c);
void ll_context_reset(ll_context *c); // forget the sequence (positions restart at 0)
// Keep only the first n_keep cached positions (rewind, e.g. to a shared chat prefix).
void ll_context_truncate(ll_context *c, int n_keep);
// A flag the caller may set (e.g. from a SIGINT handler) to stop ll_eval between layers (LL_ERR_INTERRUPTED).
void ll_context_set_interrupt(ll_context *c, volatile int *flag);

// Evaluate n tokens at positions n_past..n_past+n-1 (in chunks of n_batch). all_logits keeps the logits of
// every token (else only the last); it needs a context made with all_logits and n <= n_batch. Fails with
// LL_ERR_ARG when the context would overflow.
ll_status ll_eval(ll_context *c, const int32_t *ids, int n, bool all_logits, ll_error *err);
// Logits of the i-th token of the last ll_eval (i = -1: the last one). n_vocab floats. The first call after an
// eval copies them from the device (where the backend has one).
const float *ll_logits(ll_context *c, int i);

typedef struct ll_sampler_params {
    float temp;           // 0 = greedy
    int top_k;            // 0 = off
    float top_p;          // 1 = off
    float min_p;          // 0 = off
    float repeat_penalty; // 1 = off
    int repeat_last_n;    // how many recent tokens the penalty looks at
    uint64_t seed;        // default 42
} ll_sampler_params;

ll_sampler_params ll_sampler_default_params(void);
ll_sampler *ll_sampler_init(const ll_sampler_params *p, int n_vocab);
void ll_sampler_free(ll_sampler *s);
int32_t ll_sampler_sample(ll_sampler *s, const float *logits); // does not modify logits
void ll_sampler_accept(ll_sampler *s, int32_t id);             // remember id for the repetition penalty
// The next id from the last token's logits of c's last ll_eval: the same id as ll_sampler_sample(s,
// ll_logits(c, -1)), with the same draws. Where c's backend can select the best candidates on the device and s's
// chain starts from them (greedy, or top-k on with k < 512, and no repetition penalty to apply), only those are
// copied to the host (LLMLAB_DEVICE_SAMPLE=0: never).
int32_t ll_sample(ll_context *c, ll_sampler *s);

// ---- several sequences: batches -----------------------------------------------------------------------------
// A context holds n_seq sequences (ids 0 .. n_seq-1), each with n_ctx positions of KV cache of its own; the
// weights are the model's, loaded once per device however many contexts use them. ll_eval, ll_context_n_past and
// ll_context_truncate work on sequence 0. Contexts of one model may be made and used from one thread at a time
// (each forward step takes the model's engine lock).
typedef struct ll_batch {
    int n_tokens;   // tokens in use
    int cap;        // room for
    int32_t *token; // (cap) token ids
    int32_t *pos;   // (cap) the token's position in its sequence
    int32_t *seq;   // (cap) its sequence id
    int8_t *logits; // (cap) non-zero: keep this token's logits (ll_logits_ith, ll_sample_ith)
} ll_batch;

ll_status ll_batch_init(ll_batch *b, int cap, ll_error *err);
void ll_batch_free(ll_batch *b);
void ll_batch_clear(ll_batch *b);
// Appends a token; false (nothing added) when the batch is full.
bool ll_batch_add(ll_batch *b, int32_t token, int32_t pos, int32_t seq, bool logits);

// Evaluate a batch of tokens of any sequences in one forward pass (in chunks of n_batch tokens when it is larger):
// the weights are read once for all of them. Each sequence's tokens must continue it, in order: the first at its
// length (ll_seq_len), the next at that + 1, and so on. LL_ERR_ARG, nothing evaluated, for an unknown sequence id,
// a position gap, a token outside the vocabulary, a sequence that would outgrow n_ctx, or more kept logits than
// the context has room for (n_seq rows, or n_batch with all_logits).
ll_status ll_decode(ll_context *c, const ll_batch *b, ll_error *err);
// Logits of token i of the last ll_decode's batch (n_vocab floats), NULL when its logits flag was off.
const float *ll_logits_ith(ll_context *c, int i);
// The next id from token i's logits, as ll_sample does for the last token of an ll_eval.
int32_t ll_sample_ith(ll_context *c, ll_sampler *s, int i);

int ll_context_n_seq(const ll_context *c);
const char *ll_context_device(const ll_context *c); // the backend's name: "cpu", "cuda"
ll_cache_type ll_context_cache_type(const ll_context *c);
int ll_seq_len(const ll_context *c, int seq); // positions cached for seq; -1 for an unknown id
// Keep the first n_keep positions of seq (n_keep >= its length: nothing changes).
ll_status ll_seq_truncate(ll_context *c, int seq, int n_keep, ll_error *err);
// dst's first n positions = src's (its cache rows copied on the device: a shared prompt prefix is evaluated once);
// dst's length becomes n. n must not exceed src's length.
ll_status ll_seq_copy_prefix(ll_context *c, int src, int dst, int n, ll_error *err);

#ifdef __cplusplus
}
#endif
#endif
