// presets.c — the named architectures at their published shapes (from each model's config.json / GGUF
// metadata), plus tiny ones for tests. n_vocab is the real model's; synth takes the vocab file's instead.
#include "model/presets.h"

#include <string.h>

// Sources: Llama-2-7b-hf, Mistral-7B-v0.1 (rope_theta 10000, max_position_embeddings 32768), Meta-Llama-3-8B,
// Llama-3.2-1B (tied; its llama3 rope scaling is not modelled), Qwen2.5-0.5B (tied, q/k/v bias, eps 1e-6),
// SmolLM-135M (tied), Meta-Llama-3-70B. "tiny" and "tiny-qwen2": n_vocab 0 = whatever the vocab file holds.
static const ll_preset k_presets[] = {
    // name           arch     embd  layer head kv  ff     vocab   ctx     rope      eps   tied   bias   vocab file
    {"llama2-7b",    "llama", 4096, 32, 32, 32, 11008, 32000,  4096,   10000.0f,  1e-5f, false, false, "llama-spm"},
    {"mistral-7b",   "llama", 4096, 32, 32, 8,  14336, 32000,  32768,  10000.0f,  1e-5f, false, false, "llama-spm"},
    {"llama3-8b",    "llama", 4096, 32, 32, 8,  14336, 128256, 8192,   500000.0f, 1e-5f, false, false, "llama-spm"},
    {"llama-3.2-1b", "llama", 2048, 16, 32, 8,  8192,  128256, 131072, 500000.0f, 1e-5f, true,  false, "llama-spm"},
    {"qwen2.5-0.5b", "qwen2", 896,  24, 14, 2,  4864,  151936, 32768,  1e6f,      1e-6f, true,  true,  "gpt-2"},
    {"smollm-135m",  "llama", 576,  30, 9,  3,  1536,  49152,  2048,   10000.0f,  1e-5f, true,  false, "llama-spm"},
    {"llama3-70b",   "llama", 8192, 80, 64, 8,  28672, 128256, 8192,   500000.0f, 1e-5f, false, false, "llama-spm"},
    {"tiny",         "llama", 64,   2,  4,  2,  128,   0,      2048,   10000.0f,  1e-5f, false, false, "llama-spm"},
    {"tiny-qwen2",   "qwen2", 64,   2,  4,  2,  128,   0,      4096,   1e6f,      1e-6f, true,  true,  "gpt-2"},
};

#define N_PRESETS (int)(sizeof k_presets / sizeof k_presets[0])

const ll_preset *ll_preset_find(const char *name) {
    for (int i = 0; i < N_PRESETS; i++)
        if (!strcmp(k_presets[i].name, name)) return &k_presets[i];
    return NULL;
}

const ll_preset *ll_preset_at(int i) { return i >= 0 && i < N_PRESETS ? &k_presets[i] : NULL; }

uint64_t ll_preset_params(const ll_preset *p) {
    uint64_t d = (uint64_t)p->n_embd, ff = (uint64_t)p->n_ff, V = (uint64_t)p->n_vocab;
    uint64_t kv = d / (uint64_t)p->n_head * (uint64_t)p->n_head_kv;
    uint64_t layer = 2 * d                // attn_norm, ffn_norm
                     + d * d + 2 * kv * d // q (d, d); k, v (kv, d)
                     + d * d              // attn_output
                     + 3 * ff * d;        // gate, up (ff, d); down (d, ff)
    if (p->qkv_bias) layer += d + 2 * kv;
    uint64_t n = V * d + (uint64_t)p->n_layer * layer + d; // token_embd, blocks, output_norm
    if (!p->tied_embeddings) n += V * d;                     // output
    return n;
}
