// lab.h — the model lab: `bench model` (llama-bench-style speed, load time, memory and roofline fractions of a
// model file), `fit` (will a model fit, and how fast will it run, from the header or a preset) and `report`.
#ifndef LL_LAB_H
#define LL_LAB_H

#include <stdio.h>

#include <cjson/cJSON.h>

#include "core/core.h"
#include "model/presets.h"

// ---- ceilings: what the roofline fractions and fit's predictions divide by --------------------------------
typedef struct ll_lab_ceil {
    double read_gbps;    // memory read bandwidth, GB/s (0 = unknown)
    double gemm_gflops;  // dense GEMM peak, GFLOPS (0 = unknown)
    double int8_gops;    // int8 GEMM peak, GOPS (0 = unknown): quantized weights' prompt ceiling (integer dots)
    char read_src[256];  // where each came from: "memory.json: cpu read, 2 threads (avx512)" / "quick measurement ..."
    char gemm_src[256];
    char int8_src[256];
    uint64_t mem_avail;  // bytes the device can give now (0 = unknown)
    uint64_t mem_total;
    char mem_src[128];
} ll_lab_ceil;

// From DIR/memory.json, DIR/gemm.json and DIR/system_info.json (results of `bench hw`) for device ("cpu" or
// "cuda" = the first GPU). Fields stay 0 when a file or a row is absent. true when anything was found.
bool ll_lab_ceil_load(const char *dir, const char *device, ll_lab_ceil *c);
// Quick measurement on the spot (CPU only): a timed sum over a buffer of `bytes` (0 = min(1 GiB, 1/4 of
// available)) and a timed F32 ll_matmul (1024 x 1024 weights, 256 tokens), n_threads threads (0 = logical).
void ll_lab_ceil_measure(ll_lab_ceil *c, size_t bytes, int n_threads);
// Load, then measure whatever is still missing (CPU), saying so in the *_src fields.
void ll_lab_ceil_get(const char *dir, const char *device, int n_threads, ll_lab_ceil *c);

// ---- fit ----------------------------------------------------------------------------------------------
// A matrix decode multiplies by, with how many of that type and shape one token uses: y (n_out) = W x (n_in).
#define LL_LAB_MAX_MATS 32
typedef struct ll_lab_mat {
    uint32_t type; // ll_type
    int n_in, n_out, count;
} ll_lab_mat;

// Shapes and sizes of a model without its data: from a GGUF header or a preset.
typedef struct ll_lab_shape {
    char name[128], arch[32];
    int n_embd, n_layer, n_head, n_head_kv, head_dim, n_ff, n_vocab, n_ctx_train;
    bool tied;
    uint64_t n_params;       // every weight
    uint64_t n_matrix;       // parameters of 2-D tensors (matrices and embeddings)
    uint64_t n_embd_table;   // token_embd parameters (not read per token unless tied)
    uint64_t file_weights;   // bytes of the tensors in the file (0 for presets)
    char file_type[16];      // general.file_type ("Q4_K_M"), else blk.0.attn_q.weight's type ("" for presets)
    // The matrices of one decoded token, grouped by (type, n_in, n_out): every blk.* 2-D weight and the output
    // (token_embd when tied). Presets: F16 (ll_lab_mats_retype gives another type).
    ll_lab_mat mats[LL_LAB_MAX_MATS];
    int n_mats;
    uint32_t kv_type;        // the KV cache's row type (LL_TYPE_F16 unless set: the engine's default)
    int n_seq;               // sequences of n_ctx positions each (1 unless set)
} ll_lab_shape;

ll_status ll_lab_shape_from_gguf(const char *path, ll_lab_shape *s, ll_error *err);
void ll_lab_shape_from_preset(const ll_preset *p, ll_lab_shape *s);

// The candidate types fit chooses among, best quality first, with their effective bits per weight.
typedef struct ll_lab_qtype {
    const char *name;
    double bpw;
    uint32_t type; // the tensor type most matrices get (Q4_K for Q4_K_M): what the calibration times
} ll_lab_qtype;
#define LL_LAB_N_QTYPES 6
const ll_lab_qtype *ll_lab_qtype_at(int i);
const ll_lab_qtype *ll_lab_qtype_find(const char *name); // case-insensitive; NULL when not a fit type

// s's decode matrices at qt's tensor type (NULL: as they are); returns how many were written to out.
int ll_lab_mats_retype(const ll_lab_shape *s, const ll_lab_qtype *qt, ll_lab_mat *out);

// The engine's decode speed on this machine for a set of matrices (calib.c): seconds of one one-token ll_matmul
// of each, weights streamed from memory, and the GB/s of weights that is.
typedef struct ll_lab_calib {
    int n_threads, n;
    double s_per_call[LL_LAB_MAX_MATS];
    double gbps[LL_LAB_MAX_MATS];
    double seconds; // the calibration's own run time
    char src[256];
} ll_lab_calib;
ll_status ll_lab_calib_decode(const ll_lab_mat *mats, int n_mats, int n_threads, ll_lab_calib *c, ll_error *err);
// Sum over mats of count x seconds per call: the matrix time of one decoded token (NAN without a calibration).
double ll_lab_calib_token_s(const ll_lab_mat *mats, int n_mats, const ll_lab_calib *c);

typedef struct ll_lab_fit {
    uint64_t weights, kv, activations, overhead, total; // bytes
    uint64_t available;
    bool fits;
    double margin;          // available - total, bytes (negative when it does not fit)
    uint64_t weight_read;   // bytes read per generated token
    double flops_tok;       // FLOPs per prompt token (2 x matmul params + attention at ctx/2)
    double pred_tg, pred_pp; // t/s from the ceilings (0 when the ceiling is unknown): upper bounds
    double pred_tg_engine;   // t/s from the engine's calibrated matrix time per token (0 without a calibration)
    double tg_matrix_s;      // that matrix time, seconds per token
} ll_lab_fit;

// Weight bytes of shape s at type bpw (matrices at bpw, 1-D tensors F32); bpw <= 0: the file's own bytes.
uint64_t ll_lab_weight_bytes(const ll_lab_shape *s, double bpw);
// KV cache: 2 x n_layer x n_ctx x n_head_kv x head_dim x 4 (F32 today).
uint64_t ll_lab_kv_bytes(const ll_lab_shape *s, int n_ctx);
// Activations of the engine's plan for n_batch tokens (see plan.c), one row of logits.
uint64_t ll_lab_act_bytes(const ll_lab_shape *s, int n_batch);
uint64_t ll_lab_overhead_bytes(const char *device);
void ll_lab_fit_compute(const ll_lab_shape *s, double bpw, int n_ctx, int n_batch, const char *device,
                        const ll_lab_ceil *c, ll_lab_fit *f);
// The engine prediction: pred_tg_engine = 1 / (matrix time of mats per token), cal timing mats in order.
void ll_lab_fit_engine(ll_lab_fit *f, const ll_lab_mat *mats, int n_mats, const ll_lab_calib *cal);
// Largest context (<= cap) that fits in c->mem_avail at bpw; 0 when not even 1 fits.
int ll_lab_fit_max_ctx(const ll_lab_shape *s, double bpw, int n_batch, const char *device, const ll_lab_ceil *c,
                       int cap);

// The first type (best quality first) that fits at n_ctx; NULL when none does or memory is unknown.
const ll_lab_qtype *ll_lab_fit_best(const ll_lab_shape *s, int n_ctx, int n_batch, const char *device, const ll_lab_ceil *c);

// ---- bench model --------------------------------------------------------------------------------------
#define LL_LAB_MAX_LIST 8
#define LL_LAB_MAX_MODELS 16

typedef struct ll_lab_bench_cfg {
    const char *models[LL_LAB_MAX_MODELS];
    int n_models;
    int pp[LL_LAB_MAX_LIST], n_pp;       // prompt sizes (0 entries skip)
    int tg[LL_LAB_MAX_LIST], n_tg;
    int depth[LL_LAB_MAX_LIST], n_depth;
    int threads[LL_LAB_MAX_LIST], n_threads;
    int reps;
    int seqs[LL_LAB_MAX_LIST], n_seqs;   // parallel sequences (--sequences): aggregate pp and tg per count
    int seq_prompt;                      // prompt tokens per sequence before the tg of a --sequences test
    ll_cache_type cache_type;            // the KV cache's type (default F16)
    const char *device;                  // "cpu" or "cuda"
    const char *json_dir;                // NULL = results/raw/<hostname>
    const char *ceil_dir;                // where to find bench hw results (NULL = json_dir)
    bool no_cold;                        // skip the cold load
    bool progress;
    volatile int *interrupt;             // optional (Ctrl-C): non-zero stops after the current repetition; the
                                         // tests that finished are written, marked partial (LL_ERR_INTERRUPTED)
} ll_lab_bench_cfg;

void ll_lab_bench_cfg_init(ll_lab_bench_cfg *c); // pp 512, tg 128, depth 0, reps 5, cpu
// Runs every model, returns the model.json document (caller frees) and writes it to the JSON dir. Interrupted:
// returns LL_ERR_INTERRUPTED with *doc set (and written) holding what finished.
ll_status ll_lab_bench_run(const ll_lab_bench_cfg *cfg, cJSON **doc, ll_error *err);
// Print the tests of a model.json document as md, csv, json or jsonl.
void ll_lab_bench_print(FILE *f, const cJSON *doc, const char *format);

// ---- quality (the full run's step on a real model) ------------------------------------------------------
typedef struct ll_lab_quality_cfg {
    const char *model;       // the real model (the base every type is compared with)
    const char *text;        // the evaluation text
    const char *types;       // comma-separated file types (default "Q8_0,Q4_K_M,Q4_0")
    int n_ctx, max_chunks;   // default 512 (capped at the trained context), 10 chunks
    int n_threads;           // 0 = physical cores
    int n_batch;             // tokens per evaluation call (0 = n_ctx; does not change the result)
    const char *tokenizer;   // llama2.c bases only: their tokenizer.bin (NULL: beside the checkpoint)
    const char *json_dir;    // where quality.json goes (NULL with json_path NULL: nothing written)
    const char *json_path;   // instead: this file (`llmlab perplexity --sweep --json FILE`)
    const char *tool;        // the document's "tool" (NULL: the lab's quality step)
    cJSON **doc;             // non-NULL: the document is handed back here (the caller frees it)
    volatile int *interrupt; // Ctrl-C: the types that finished are written (partial), LL_ERR_INTERRUPTED
    bool progress;
} ll_lab_quality_cfg;

void ll_lab_quality_cfg_init(ll_lab_quality_cfg *c);
// One perplexity result as JSON, as `llmlab perplexity --json` and quality.json write it.
struct ll_ppl_result;
cJSON *ll_lab_ppl_result_json(const struct ll_ppl_result *r);
// Quantize cfg->model to each type in a temporary folder (removed), run llama.cpp's perplexity of each with
// KL-divergence against the model on cfg->text, and write json_dir/quality.json or json_path (schema
// "llmlab.quality/1"): the one sweep behind both the lab's quality step and `llmlab perplexity --sweep`.
ll_status ll_lab_quality_run(const ll_lab_quality_cfg *cfg, ll_error *err);

// ---- report -------------------------------------------------------------------------------------------
// Read DIR's JSON results (and OTHER's, when given) and write OUTDIR/REPORT.md and OUTDIR/report.html.
ll_status ll_lab_report(const char *dir, const char *other, const char *outdir, ll_error *err);

// ---- shared helpers -----------------------------------------------------------------------------------
void ll_lab_default_dir(char *buf, size_t cap);             // results/raw/<hostname>
cJSON *ll_lab_json_read(const char *path);                   // NULL when absent or unparsable
ll_status ll_lab_json_write(const char *dir, const char *name, const cJSON *doc, ll_error *err); // NAME.json, atomic
ll_status ll_lab_json_write_file(const char *path, const cJSON *doc, ll_error *err);             // PATH, atomic
ll_status ll_lab_write_text(const char *dir, const char *name, const char *text, ll_error *err); // atomic
// n files written together: every one to a temporary file first, then all renamed; when any cannot be written
// none is replaced (REPORT.md and report.html never disagree after a full disk).
ll_status ll_lab_write_texts(const char *dir, int n, const char *const *names, const char *const *texts, ll_error *err);
double ll_lab_num(const cJSON *o, const char *key);         // NAN when absent or not a number
const char *ll_lab_str(const cJSON *o, const char *key);    // "" when absent

// ---- command entry points (`llmlab bench model`, `llmlab bench`, `llmlab fit`, `llmlab report`) ---------
int ll_lab_bench_model_main(int argc, char **argv); // argv[0] = "model"
int ll_lab_bench_all_main(int argc, char **argv);   // argv[0] = "bench"

#endif
