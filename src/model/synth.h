// synth.h — random-weight GGUFs at a preset's real shapes with a real tokenizer (copied from a vocab GGUF),
// streamed to disk chunk by chunk so a 70B file never sits in memory. Same seed -> identical bytes.
#ifndef LL_SYNTH_H
#define LL_SYNTH_H

#include "formats/gguf.h"
#include "model/presets.h"

typedef struct ll_synth_params {
    const char *preset;     // ll_preset name, e.g. "mistral-7b"
    uint32_t type;          // LL_TYPE_F32, F16 or BF16: matrices and token_embd; norms and biases stay F32
    const char *vocab_path; // NULL: $LLMLAB_SHARED (default ../shared)/models/vocab/ggml-vocab-<preset->vocab>.gguf;
                            // "builtin": a 354-token byte-fallback vocabulary compiled in (no files needed)
    uint64_t seed;
    int n_layer;            // 0 = the preset's
    bool full_vocab;        // pad the token list with "[PADn]" (type UNUSED) up to the preset's real n_vocab
    bool progress;          // progress bar on stderr while writing (files of 64 MiB and more)
} ll_synth_params;

ll_synth_params ll_synth_default_params(void); // F16, seed 42, no progress

// The metadata and tensor declarations (no data) synth would write, and the predicted file size (exact
// for the default alignment). n_vocab is the vocab file's token count (see full_vocab).
ll_status ll_synth_plan(ll_gguf **out, const ll_synth_params *p, uint64_t *file_bytes, ll_error *err);

// Plan, check free disk space (statvfs) against the predicted size, then generate and write atomically.
ll_status ll_synth_write(const char *path, const ll_synth_params *p, ll_error *err);

// Fill dst[0..n) with elements [first, first+n) of the deterministic N(0, 1) stream `key` (approximate:
// a sum of four 16-bit uniforms, in [-3.47, 3.47]). Exposed for tests and the speed check.
void ll_synth_normal(uint64_t key, uint64_t first, float *dst, size_t n);

#endif
