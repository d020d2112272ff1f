// model.h — a Llama-family model as hyperparameters plus weight views into the mapped file, the memory plan,
// and the context (KV cache + activations) that the forward pass runs in.
#ifndef LL_MODEL_H
#define LL_MODEL_H

#include <pthread.h>

#include "backend/backend.h"
#include "formats/gguf.h"
#include "tokenizer/tokenizer.h"

typedef struct ll_hparams {
    char arch[32];     // general.architecture: "llama" or "qwen2"
    int n_vocab;       // rows of token_embd
    int n_ctx_train;   // {arch}.context_length
    int n_embd;        // {arch}.embedding_length
    int n_layer;       // {arch}.block_count
    int n_head;        // {arch}.attention.head_count
    int n_head_kv;     // {arch}.attention.head_count_kv (default n_head)
    int head_dim;      // {arch}.attention.key_length (default n_embd / n_head)
    int n_ff;          // {arch}.feed_forward_length
    int n_rot;         // {arch}.rope.dimension_count (default head_dim)
    float rope_base;   // {arch}.rope.freq_base (default 10000)
    float rms_eps;     // {arch}.attention.layer_norm_rms_epsilon
    bool rope_neox;    // rotate (x[i], x[i + n_rot/2]) instead of (x[2i], x[2i+1]): qwen2
} ll_hparams;

typedef struct ll_layer {
    ll_weight attn_norm;        // (n_embd) F32
    ll_weight wq, wk, wv, wo;   // (n_embd -> n_head*hd), (n_embd -> n_kv*hd) x2, (n_head*hd -> n_embd)
    ll_weight bq, bk, bv;       // qwen2 biases (F32) or data == NULL
    ll_weight ffn_norm;         // (n_embd) F32
    ll_weight w_gate, w_up;     // (n_embd -> n_ff)
    ll_weight w_down;           // (n_ff -> n_embd)
} ll_layer;

// A backend with the model's weights where it runs (uploaded or repacked once), shared by every context of the
// model on that device. Made by the first context that asks for the device; freed with the model.
typedef struct ll_engine {
    ll_backend *be;
    int max_tok, max_ctx; // the scratch is sized for batches of max_tok tokens over max_ctx positions
} ll_engine;
#define LL_MODEL_MAX_ENGINES 4

struct ll_model {
    ll_hparams hp;
    ll_gguf *gguf;          // owns the map the weights point into
    ll_tokenizer *tok;
    ll_weight tok_embd;     // (n_vocab rows of n_embd)
    ll_weight output_norm;  // (n_embd) F32
    ll_weight output;       // (n_embd -> n_vocab); token_embd when tied
    ll_weight rope_freqs;   // optional per-dimension frequency divisors (n_rot/2), F32 (Llama 3.1+)
    ll_layer *layers;       // n_layer
    uint64_t n_params;
    uint64_t weight_bytes;  // bytes decode reads per token: every weight but the embedding table (unless tied)
    uint32_t wtype;         // the type of the layer matrices (blk.0.attn_q), for descriptions
    int n_threads;
    bool verbose;
    char *chat_template;    // tokenizer.chat_template or NULL
    char *name;             // general.name or the file's base name
    ll_engine engines[LL_MODEL_MAX_ENGINES];
    int n_engines;
    pthread_mutex_t lock;   // engines: made, grown and run by one context at a time
    bool lock_made;
};

// The memory a context needs, computed before anything is allocated, on the device that will run it.
typedef struct ll_plan {
    char device[16];      // the backend's name
    uint64_t weights;     // the weights' bytes: mapped file bytes (CPU) or their device copies
    bool weights_mapped;  // weights are file pages (the page cache), not device allocations
    uint64_t weights_new; // bytes the device must still give for the weights (0 once an engine has them)
    uint64_t kv;          // K and V caches of every sequence
    uint64_t activations; // per-batch buffers and logits
    uint64_t scratch;     // the backend's scratch (and, on CPU, repacked weights beyond their mapped bytes)
    uint64_t available;   // what the device says it can give now
    uint64_t total;       // the device's memory
    int n_ctx, n_batch, n_seq;
    uint32_t kv_type;
} ll_plan;

// Take ownership of a parsed or built GGUF (freed on failure too) and make a model of it.
ll_status ll_model_from_gguf(ll_gguf *g, const ll_model_params *p, ll_model **out, ll_error *err);
ll_status ll_model_bind(ll_model *m, ll_error *err);                   // hparams + weights from m->gguf
// The distinct kinds of matmul weight (one layer's seven + the output): what sizes the workspace.
#define LL_MODEL_MATMUL_KINDS 8
int ll_model_matmul_weights(const ll_model *m, const ll_weight *out[LL_MODEL_MATMUL_KINDS]);
// Every weight the forward pass reads (what a device backend uploads); *n gets the count. malloc'd array.
const ll_weight **ll_model_all_weights(const ll_model *m, int *n);
// The plan of a context (n_seq sequences of n_ctx positions, batches of n_batch, n_logits rows of logits, a cache
// of kv_type) on backend be; eng: the engine that already holds the weights on be (NULL: they must be added).
void ll_plan_compute(const ll_model *m, ll_backend *be, const ll_engine *eng, int n_ctx, int n_batch, int n_logits,
                     int n_seq, uint32_t kv_type, ll_plan *p);
ll_status ll_plan_check(const ll_plan *p, const char *what, ll_error *err); // LL_ERR_NOMEM with the numbers
void ll_plan_print(const ll_plan *p);
// Bytes of one layer's K (or V) cache row of kvd values in type.
uint64_t ll_plan_kv_row_bytes(uint32_t type, int kvd);

struct ll_context {
    ll_model *m;
    ll_engine *eng;    // the model's engine on this context's device (not owned)
    ll_backend *be;    // eng->be
    int n_ctx, n_batch, n_threads, n_seq;
    uint32_t kv_type;  // LL_TYPE_F32, LL_TYPE_F16 or LL_TYPE_Q8_0
    size_t kv_row;     // bytes of one cache row (kvd values)
    // KV cache, per layer (n_seq * n_ctx rows of kvd values of kv_type), backend memory; sequence s owns rows
    // [s*n_ctx, (s+1)*n_ctx).
    uint8_t *k_cache, *v_cache;
    int *seq_len;      // (n_seq) positions cached per sequence
    int *next_buf;     // (n_seq) scratch of ll_decode's checks
    int32_t *seq_buf;  // (n_batch) sequence ids of an ll_eval chunk (all 0)
    int8_t *keep_buf;  // (n_batch) which tokens of an ll_eval chunk keep logits
    // Activations for a batch of up to n_batch tokens (backend memory).
    float *x, *xb, *xb2, *q, *hb, *hb2; // a batch's K and V pass through xb2 and hb2 on their way to the cache
    float *logits_dev; // (n_logits_cap, n_vocab) backend memory: the output matmul writes here
    float *logits;     // (n_logits_cap, n_vocab) host memory: rows of the last eval, downloaded when asked for
    int n_logits_cap;  // n_batch with all_logits, else n_seq
    int n_logits;      // rows valid in logits_dev (and in logits once logits_host)
    bool logits_host;  // logits holds them (ll_logits downloads them on first use after an eval)
    bool device_sample; // ll_sample may take the backend's topk (LLMLAB_DEVICE_SAMPLE=0: always the whole row)
    int32_t *pos, *row0; // (n_batch) the step's positions and first cache rows (ll_batch_pos)
    int32_t *out_row;  // (out_cap) per token of the last ll_decode batch: its row of logits, or -1
    int out_cap, n_out;
    volatile int *interrupt; // optional: set non-zero to stop between layers
};

// One forward step of n tokens (n <= n_batch), already validated: token t of sequence seq[t] at that sequence's
// next position (the tokens of a sequence in order); the logits of the tokens with keep[t] go to rows out_base,
// out_base + 1, ... of logits_dev. Advances the sequences' lengths. Called with the model's lock held.
ll_status ll_forward(ll_context *c, const int32_t *ids, const int32_t *seq, const int8_t *keep, int n, int out_base,
                     ll_error *err);

#endif
