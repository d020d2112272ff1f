// presets.h — named architectures at their real shapes (llama2-7b, mistral-7b, llama3-8b, llama-3.2-1b,
// qwen2.5-0.5b, smollm-135m, llama3-70b, ...): used by `synth` to write random-weight GGUFs and by `fit`.
#ifndef LL_PRESETS_H
#define LL_PRESETS_H

#include <stdbool.h>
#include <stdint.h>

typedef struct ll_preset {
    const char *name;    // "mistral-7b"
    const char *arch;    // GGUF general.architecture: "llama" or "qwen2"
    int n_embd, n_layer, n_head, n_head_kv, n_ff, n_vocab, n_ctx;
    float rope_base, rms_eps;
    bool tied_embeddings; // no output.weight
    bool qkv_bias;        // qwen2
    const char *vocab;    // which vocab GGUF fits: "llama-spm" or "gpt-2" (default for --vocab)
} ll_preset;

const ll_preset *ll_preset_find(const char *name);
const ll_preset *ll_preset_at(int i); // NULL past the end
// Parameter count (all weights, embeddings included).
uint64_t ll_preset_params(const ll_preset *p);

#endif
