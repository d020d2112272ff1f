// quantize.h — the file quantizer: a GGUF (or a llama2.c checkpoint) to a GGUF of another type, tensor by tensor
// and streaming, with llama-quantize's per-tensor type mixes (no imatrix) so every tensor's bytes match llama.cpp.
#ifndef LL_QUANTIZE_H
#define LL_QUANTIZE_H

#include "formats/gguf.h"

// llama.cpp's llama_ftype numbers: the value written to general.file_type.
typedef enum ll_ftype {
    LL_FTYPE_ALL_F32 = 0,
    LL_FTYPE_F16 = 1,
    LL_FTYPE_Q4_0 = 2,
    LL_FTYPE_Q4_1 = 3,
    LL_FTYPE_Q8_0 = 7,
    LL_FTYPE_Q5_0 = 8,
    LL_FTYPE_Q5_1 = 9,
    LL_FTYPE_Q4_K_S = 14,
    LL_FTYPE_Q4_K_M = 15,
    LL_FTYPE_Q5_K_S = 16,
    LL_FTYPE_Q5_K_M = 17,
    LL_FTYPE_Q6_K = 18,
    LL_FTYPE_BF16 = 32,
} ll_ftype;

// "Q4_K_M", "q8_0", "F16", "F32" ... (case-insensitive); false when not one of the supported file types.
bool ll_ftype_from_name(const char *name, ll_ftype *out);
const char *ll_ftype_name(ll_ftype f);
// The tensor type most weights get (Q4_K for Q4_K_S and Q4_K_M, ...).
ll_type ll_ftype_default_type(ll_ftype f);
// "Q8_0, Q4_0, ..." for usage messages.
const char *ll_ftype_list(void);

// --tensor-type PATTERN=TYPE: PATTERN is a POSIX extended regex searched anywhere in the tensor name (as
// llama.cpp's std::regex_search); the first pattern that matches decides, as in llama-quantize.
typedef struct ll_quant_override {
    const char *pattern;
    ll_type type;
} ll_quant_override;

typedef struct ll_quantize_params {
    ll_ftype ftype;
    int n_threads;                       // 0 = physical cores
    bool allow_requantize;               // accept quantized input tensors (dequantized, then quantized again)
    const ll_quant_override *overrides;  // n_overrides entries; only used for quantized file types (llama.cpp)
    int n_overrides;
    const char *tokenizer_path;          // llama2.c input: its tokenizer.bin (default: tokenizer.bin beside it)
    volatile int *interrupt;             // optional: non-zero stops the run (no output file is left)
    bool progress;                       // progress bar on stderr
    bool verbose;                        // one line per tensor on stderr
} ll_quantize_params;

typedef struct ll_quantize_stats {
    uint64_t n_tensors, n_quantized, n_fallback;
    uint64_t n_elements;          // of all tensors
    uint64_t bytes_in, bytes_out; // tensor data bytes
    double seconds;
} ll_quantize_stats;

ll_quantize_params ll_quantize_default_params(void);

// One tensor's decision, in output order (the order llama-quantize writes: non-block tensors by name, then
// blocks by layer number, tensors of a block by name).
typedef struct ll_quant_choice {
    const ll_gguf_tensor *src;
    ll_type type;   // what it is written as
    bool fallback;  // the mix's type did not fit the row length
} ll_quant_choice;

// Decide every tensor's type for g without writing anything. *out has g->n_tensors entries (free()).
ll_status ll_quantize_plan(const ll_gguf *g, const ll_quantize_params *p, ll_quant_choice **out, ll_error *err);

// Quantize the file in_path into out_path (written to OUT.tmp.PID, renamed when complete: on failure or
// interrupt no OUT is left and an existing OUT is untouched). st may be NULL.
ll_status ll_quantize_file(const char *in_path, const char *out_path, const ll_quantize_params *p,
                           ll_quantize_stats *st, ll_error *err);

#endif
