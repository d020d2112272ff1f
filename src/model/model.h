// model.h — a Llama-family model as hyperparameters plus weight views into the mapped file, the memory plan,
// and the context (KV cache + activations) that the forward pass runs in.
#ifndef LL_MODEL_H
#define LL_MODEL_H

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
};

// The memory a context needs, computed before anything is allocated.
typedef struct ll_plan {
    uint64_t weights;     // mapped file bytes of the weights
    uint64_t kv;          // K and V caches
    uint64_t activations; // per-batch scratch, logits, matmul workspace
    uint64_t available;   // what the system says it can give (MemAvailable)
    uint64_t total;       // RAM
} ll_plan;

// Take ownership of a parsed or built GGUF (freed on failure too) and make a model of it.
ll_status ll_model_from_gguf(ll_gguf *g, const ll_model_params *p, ll_model **out, ll_error *err);
ll_status ll_model_bind(ll_model *m, ll_error *err);                   // hparams + weights from m->gguf
// The distinct kinds of matmul weight (one layer's seven + the output): what sizes the workspace.
#define LL_MODEL_MATMUL_KINDS 8
int ll_model_matmul_weights(const ll_model *m, const ll_weight *out[LL_MODEL_MATMUL_KINDS]);
// Every weight the forward pass reads (what a device backend uploads); *n gets the count. malloc'd array.
const ll_weight **ll_model_all_weights(const ll_model *m, int *n);
void ll_plan_compute(const ll_model *m, int n_ctx, int n_batch, int n_logits, int n_threads, ll_plan *p);
ll_status ll_plan_check(const ll_plan *p, const char *what, ll_error *err); // LL_ERR_NOMEM with the numbers
void ll_plan_print(const ll_plan *p, int n_ctx, int n_batch);

struct ll_context {
    ll_model *m;
    ll_backend *be;
    int n_ctx, n_batch, n_threads, n_past;
    // KV cache, per layer (n_ctx, n_head_kv*head_dim) F32, backend memory.
    float *k_cache, *v_cache;
    // Activations for a batch of up to n_batch tokens (backend memory).
    float *x, *xb, *xb2, *q, *hb, *hb2; // a batch's K and V pass through xb2 and hb2 on their way to the cache
    float *logits_dev; // (n_logits_cap, n_vocab) backend memory: the output matmul writes here
    float *logits;     // (n_logits_cap, n_vocab) host memory: rows of the last eval, downloaded when asked for
    int n_logits_cap;  // n_batch with all_logits, else 1
    int n_logits;      // rows valid in logits_dev (and in logits once logits_host)
    bool logits_host;  // logits holds them (ll_logits downloads them on first use after an eval)
    bool device_sample; // ll_sample may take the backend's topk (LLMLAB_DEVICE_SAMPLE=0: always the whole row)
    bool logits_all;   // rows are per token (else one row: the last token)
    int32_t *pos;      // (n_batch) positions of the batch
    volatile int *interrupt; // optional: set non-zero to stop between layers
};

// Forward n tokens (n <= n_batch) at positions n_past.. and advance n_past. Logits of every token when
// all_logits, else of the last one.
ll_status ll_forward(ll_context *c, const int32_t *ids, int n, bool all_logits, ll_error *err);

#endif
