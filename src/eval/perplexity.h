// perplexity.h — perplexity of a text exactly as llama.cpp's llama-perplexity computes it, and in the same
// streaming pass the distance of a model's next-token distributions from a base model's (KL-divergence, top-1).
#ifndef LL_PERPLEXITY_H
#define LL_PERPLEXITY_H

#include "llmlab.h"

// The method (llama.cpp perplexity(), non-strided): the ids are cut into n_chunk = floor(n_ids / n_ctx) chunks;
// chunk c is ids [c*n_ctx, (c+1)*n_ctx) with its first id replaced by BOS (when the text starts with BOS),
// evaluated from an empty KV cache; positions j = n_ctx/2 .. n_ctx-2 are scored: NLL of id j+1 under
// softmax(logits[j]). PPL = exp(mean NLL); its error is PPL * sqrt(var(NLL) / (n - 1)) (llama.cpp's estimate).
typedef struct ll_ppl_params {
    int n_ctx;        // chunk length (>= 4)
    int n_batch;      // tokens per ll_eval call, 1..n_ctx (0 = n_ctx); the result does not depend on it
    int n_threads;    // 0 = the model's
    int max_chunks;   // 0 = all
    volatile int *interrupt; // optional: non-zero stops after the current chunk (LL_ERR_INTERRUPTED, partial result)
    // Optional, after each chunk: chunks done, of n_chunk, running PPL, seconds since the start.
    void (*on_chunk)(void *ud, int done, int n_chunk, double ppl, double elapsed_s);
    void *ud;
} ll_ppl_params;

typedef struct ll_ppl_result {
    int n_ids, n_ctx, n_chunk, n_done; // n_done < n_chunk only when interrupted
    uint64_t n_scored;                 // positions scored
    double nll, ppl, ppl_stderr;       // mean NLL (nats), exp of it, and its error
    double seconds;
    // With a base model (KL(P_base || P_model) per scored position, natural log):
    bool has_base;
    double base_nll, base_ppl, base_ppl_stderr;
    double dppl;                                     // ppl - base_ppl
    double kld_mean, kld_stderr;
    double kld_median, kld_p90, kld_p95, kld_p99, kld_max; // percentiles: linear interpolation of the sorted values
    double top1_pct, top1_stderr_pct;                // argmax agreement (lowest id wins ties)
    double rms_dp_pct;                               // RMS of p_model(id) - p_base(id) of the correct id, in %
} ll_ppl_result;

ll_ppl_params ll_ppl_default_params(void);

// Text to ids as llama-perplexity -f reads it: one trailing '\n' dropped, tokenized with add_special (BOS when
// the vocabulary adds it), no special-token parsing. *ids is malloc'd.
// The whole text file at path, NUL-terminated (*len bytes before the NUL); NULL with err set. Free with free().
char *ll_ppl_read_text(const char *path, size_t *len, ll_error *err);
ll_status ll_ppl_tokenize(const ll_model *m, const char *text, size_t len, int32_t **ids, int *n_ids, ll_error *err);
// SHA-256 of the ids written as decimal numbers separated by single spaces plus one '\n' (manifest.json's form).
void ll_ppl_ids_sha256(const int32_t *ids, int n, char hex[65]);

// Evaluate m (and base, when not NULL: the same vocabulary is required) over ids. Makes its own contexts.
ll_status ll_ppl_run(ll_model *m, ll_model *base, const int32_t *ids, int n_ids, const ll_ppl_params *p,
                     ll_ppl_result *r, ll_error *err);

#endif
