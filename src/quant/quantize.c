// quantize.c — the file quantizer: llama-quantize's per-tensor type choice (the mixes of llama.cpp's
// llama-quant.cpp, no imatrix), then a streaming pass that converts each tensor row by row on the thread pool.
#include "quant/quantize.h"

#include <inttypes.h>
#include <regex.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "core/pool.h"
#include "formats/llama2c.h"

// ---- file types -------------------------------------------------------------------------------------------
typedef struct ftype_row {
    const char *name;
    ll_ftype ftype;
    ll_type type; // llama.cpp's llama_ftype_get_default_type
} ftype_row;

static const ftype_row k_ftypes[] = {
    {"Q8_0", LL_FTYPE_Q8_0, LL_TYPE_Q8_0},       {"Q4_0", LL_FTYPE_Q4_0, LL_TYPE_Q4_0},
    {"Q4_1", LL_FTYPE_Q4_1, LL_TYPE_Q4_1},       {"Q5_0", LL_FTYPE_Q5_0, LL_TYPE_Q5_0},
    {"Q5_1", LL_FTYPE_Q5_1, LL_TYPE_Q5_1},       {"Q4_K_S", LL_FTYPE_Q4_K_S, LL_TYPE_Q4_K},
    {"Q4_K_M", LL_FTYPE_Q4_K_M, LL_TYPE_Q4_K},   {"Q5_K_S", LL_FTYPE_Q5_K_S, LL_TYPE_Q5_K},
    {"Q5_K_M", LL_FTYPE_Q5_K_M, LL_TYPE_Q5_K},   {"Q6_K", LL_FTYPE_Q6_K, LL_TYPE_Q6_K},
    {"F16", LL_FTYPE_F16, LL_TYPE_F16},          {"BF16", LL_FTYPE_BF16, LL_TYPE_BF16},
    {"F32", LL_FTYPE_ALL_F32, LL_TYPE_F32},
    {"Q4_K", LL_FTYPE_Q4_K_M, LL_TYPE_Q4_K},     {"Q5_K", LL_FTYPE_Q5_K_M, LL_TYPE_Q5_K}, // llama-quantize's aliases
};
#define N_FTYPES (sizeof k_ftypes / sizeof k_ftypes[0])

bool ll_ftype_from_name(const char *name, ll_ftype *out) {
    for (size_t i = 0; i < N_FTYPES; i++)
        if (strcasecmp(name, k_ftypes[i].name) == 0) {
            *out = k_ftypes[i].ftype;
            return true;
        }
    return false;
}

static const ftype_row *ftype_find(ll_ftype f) {
    for (size_t i = 0; i < N_FTYPES; i++)
        if (k_ftypes[i].ftype == f) return &k_ftypes[i];
    return NULL;
}

const char *ll_ftype_name(ll_ftype f) {
    const ftype_row *r = ftype_find(f);
    return r ? r->name : "unknown";
}

ll_type ll_ftype_default_type(ll_ftype f) {
    const ftype_row *r = ftype_find(f);
    LL_ASSERT(r != NULL);
    return r->type;
}

const char *ll_ftype_list(void) {
    return "Q8_0, Q6_K, Q5_K_M, Q5_K_S, Q5_1, Q5_0, Q4_K_M, Q4_K_S, Q4_1, Q4_0, F16, BF16, F32";
}

ll_quantize_params ll_quantize_default_params(void) { return (ll_quantize_params){.ftype = LL_FTYPE_Q8_0}; }

static bool is_quantized_type(uint32_t t) {
    return t != LL_TYPE_F32 && t != LL_TYPE_F16 && t != LL_TYPE_BF16 && t != LL_TYPE_F64 && t != LL_TYPE_I8 &&
           t != LL_TYPE_I16 && t != LL_TYPE_I32 && t != LL_TYPE_I64;
}

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && memcmp(s + n - k, suffix, k) == 0;
}

// ggml_n_dims: dimensions up to the last one above 1 (a [64, 1] tensor counts as 1-D).
static int n_dims_of(const ll_gguf_tensor *t) {
    for (int d = LL_GGUF_MAX_DIMS - 1; d >= 1; d--)
        if (t->ne[d] > 1) return d + 1;
    return 1;
}

// ---- which tensors are quantized at all (llama.cpp tensor_allows_quantization) ---------------------------
// Substrings that keep a 2-D weight in its source type: norms, MoE gates, tiny conv/mixing weights,
// positional and token-type embeddings, multimodal parts.
static const char *const k_keep[] = {
    "_norm.weight", "ffn_gate_inp.weight", "ffn_gate_tid2eid.weight", "altup", "laurel", "per_layer_model_proj",
    "ssm_conv1d", "shortconv.conv.weight", "indexer.k_proj.weight", "indexer.q_proj.weight",
    "time_mix_first.weight", "time_mix_w0.weight", "time_mix_w1.weight", "time_mix_w2.weight",
    "time_mix_v0.weight", "time_mix_v1.weight", "time_mix_v2.weight", "time_mix_a0.weight", "time_mix_a1.weight",
    "time_mix_a2.weight", "time_mix_g1.weight", "time_mix_g2.weight", "time_mix_decay_w1.weight",
    "time_mix_decay_w2.weight", "time_mix_lerp_fused.weight", "attn_rel_b.weight", ".position_embd",
    "sam.pos_embd", "sam.neck.", "sam.net_", ".rel_pos", ".patch_embd", ".patch_merger", "a.rvq.codebook",
    "mm.a.code_embd",
};

static bool allows_quantization(const ll_gguf_tensor *t) {
    if (n_dims_of(t) < 2 || !ends_with(t->name, "weight")) return false;
    if (!strcmp(t->name, "position_embd.weight") || !strcmp(t->name, "token_types.weight")) return false;
    for (size_t i = 0; i < sizeof k_keep / sizeof k_keep[0]; i++)
        if (strstr(t->name, k_keep[i])) return false;
    return true;
}

// ---- categories and the mix rules (llama.cpp llama_tensor_get_type_impl, for the file types above) --------
typedef enum qcat {
    QCAT_OUTPUT, QCAT_TOKEN_EMBD, QCAT_ATTN_QKV, QCAT_ATTN_KV_B, QCAT_ATTN_V, QCAT_ATTN_K, QCAT_ATTN_Q,
    QCAT_ATTN_OUTPUT, QCAT_FFN_UP, QCAT_FFN_GATE, QCAT_FFN_DOWN, QCAT_OTHER,
} qcat;

static qcat category_of(const char *name) {
    if (!strcmp(name, "output.weight")) return QCAT_OUTPUT;
    if (!strcmp(name, "token_embd.weight") || !strcmp(name, "per_layer_token_embd.weight")) return QCAT_TOKEN_EMBD;
    static const struct { const char *sub; qcat c; } k[] = {
        {"attn_qkv.weight", QCAT_ATTN_QKV}, {"attn_kv_b.weight", QCAT_ATTN_KV_B}, {"attn_v.weight", QCAT_ATTN_V},
        {"attn_k.weight", QCAT_ATTN_K},     {"attn_q.weight", QCAT_ATTN_Q},       {"attn_output.weight", QCAT_ATTN_OUTPUT},
        {"ffn_up", QCAT_FFN_UP},            {"ffn_gate", QCAT_FFN_GATE},          {"ffn_down", QCAT_FFN_DOWN},
    };
    for (size_t i = 0; i < sizeof k / sizeof k[0]; i++)
        if (strstr(name, k[i].sub)) return k[i].c;
    return QCAT_OTHER;
}

static bool cat_is_attn_v(qcat c) { return c == QCAT_ATTN_V || c == QCAT_ATTN_QKV || c == QCAT_ATTN_KV_B; }

// What the mix rules need of the model, and the running counters (tensors are visited in output order).
typedef struct qstate {
    ll_ftype ftype;
    bool falcon, is_70b, tied;
    int n_layer, n_expert, n_attn_v;
    int i_attn_v, i_ffn_down;
} qstate;

// The first 1/8 of layers, the last 1/8, and every third in between get more bits.
static bool use_more_bits(int i_layer, int n_layer) {
    return i_layer < n_layer / 8 || i_layer >= 7 * n_layer / 8 || (i_layer - n_layer / 8) % 3 == 2;
}

// Layer of an ffn tensor: the running count, or (MoE, whose expert tensors are not in layer order) the name.
static int ffn_layer(const qstate *q, int counter, const char *name) {
    int il = counter;
    if (q->n_expert > 1 && (sscanf(name, "blk.%d.", &il) != 1 || il < 0 || il >= q->n_layer)) il = counter;
    return il;
}

static ll_type output_type(const qstate *q, ll_type t, int64_t nx) {
    if (q->falcon || nx % ll_type_get(t)->blck != 0) return LL_TYPE_Q8_0;
    return t != LL_TYPE_Q8_0 ? LL_TYPE_Q6_K : t;
}

static ll_type attn_v_type(qstate *q, ll_type t) {
    ll_ftype f = q->ftype;
    if ((f == LL_FTYPE_Q4_K_M || f == LL_FTYPE_Q5_K_M) && use_more_bits(q->i_attn_v, q->n_attn_v)) t = LL_TYPE_Q6_K;
    else if (f == LL_FTYPE_Q4_K_S && q->i_attn_v < 4) t = LL_TYPE_Q5_K;
    // 70B: 8 heads share each attn_v, so it is 8x smaller than attn_q; more bits cost little.
    if (q->is_70b && (t == LL_TYPE_Q3_K || t == LL_TYPE_Q4_K)) t = LL_TYPE_Q5_K;
    if (q->n_expert == 8) t = LL_TYPE_Q8_0;
    q->i_attn_v++;
    return t;
}

static ll_type ffn_down_type(qstate *q, ll_type t, const char *name) {
    int il = ffn_layer(q, q->i_ffn_down, name), nl = q->n_layer;
    ll_ftype f = q->ftype;
    if (f == LL_FTYPE_Q4_K_M) {
        if (q->falcon) t = il < nl / 16 ? LL_TYPE_Q6_K : use_more_bits(il, nl) ? LL_TYPE_Q5_K : LL_TYPE_Q4_K;
        else if (use_more_bits(il, nl)) t = LL_TYPE_Q6_K;
    } else if (f == LL_FTYPE_Q5_K_M && use_more_bits(il, nl)) {
        t = LL_TYPE_Q6_K;
    } else if (f == LL_FTYPE_Q4_K_S && !q->falcon && il < nl / 8) {
        t = LL_TYPE_Q5_K;
    }
    q->i_ffn_down++;
    return t;
}

static ll_type mix_type(qstate *q, ll_type t, const ll_gguf_tensor *tn, qcat c) {
    ll_ftype f = q->ftype;
    if (c == QCAT_OUTPUT || (q->tied && c == QCAT_TOKEN_EMBD)) return output_type(q, t, tn->ne[0]);
    if (c == QCAT_TOKEN_EMBD) return t;
    if (cat_is_attn_v(c)) return attn_v_type(q, t);
    if (c == QCAT_ATTN_K) return q->n_expert == 8 ? LL_TYPE_Q8_0 : t;
    if (c == QCAT_FFN_DOWN) return ffn_down_type(q, t, tn->name);
    if (c == QCAT_ATTN_OUTPUT && !q->falcon && q->n_expert == 8 && (f == LL_FTYPE_Q4_K_S || f == LL_FTYPE_Q4_K_M))
        return LL_TYPE_Q5_K;
    return t;
}

// A row length the type cannot take: k-quant -> the legacy type of about the same size; if that does not fit
// either (or the type is already a 32-block one, where llama.cpp gives up) -> F16.
static ll_type fallback_type(ll_type t, int64_t ncols, bool *fell) {
    int blck = ll_type_get(t)->blck;
    *fell = ncols % blck != 0;
    if (!*fell) return t;
    ll_type r = LL_TYPE_F16;
    switch (t) {
    case LL_TYPE_Q2_K: case LL_TYPE_Q3_K: r = LL_TYPE_Q4_0; break;
    case LL_TYPE_Q4_K: r = LL_TYPE_Q5_0; break;
    case LL_TYPE_Q5_K: r = LL_TYPE_Q5_1; break;
    case LL_TYPE_Q6_K: r = LL_TYPE_Q8_0; break;
    default: break;
    }
    if (ncols % ll_type_get(r)->blck != 0) r = LL_TYPE_F16;
    return r;
}

// ---- the plan -----------------------------------------------------------------------------------------------
// llama.cpp's tensor order: non-block tensors first, then by block number; by name within each.
static int layer_of(const char *name) {
    int il = -1;
    if (sscanf(name, "blk.%d.", &il) != 1) il = -1;
    return il;
}

static int cmp_choice(const void *a, const void *b) {
    const ll_gguf_tensor *x = ((const ll_quant_choice *)a)->src, *y = ((const ll_quant_choice *)b)->src;
    int lx = layer_of(x->name), ly = layer_of(y->name);
    if (lx != ly) return lx < ly ? -1 : 1;
    return strcmp(x->name, y->name);
}

static int kv_int(const ll_gguf *g, const char *arch, const char *suffix, int dflt) {
    char key[160];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    uint32_t v;
    if (!ll_gguf_find(g, key) || ll_gguf_get_u32(g, key, &v, NULL) != LL_OK || v > (1u << 20)) return dflt;
    return (int)v;
}

static void state_init(qstate *q, const ll_gguf *g, ll_ftype ftype) {
    *q = (qstate){.ftype = ftype, .tied = true};
    char arch[64] = "";
    ll_str s;
    if (ll_gguf_find(g, "general.architecture") && ll_gguf_get_str(g, "general.architecture", &s, NULL) == LL_OK)
        snprintf(arch, sizeof arch, "%.*s", (int)(s.len < 63 ? s.len : 63), s.ptr);
    int max_layer = -1;
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const char *n = g->tensors[i].name;
        qcat c = category_of(n);
        q->n_attn_v += cat_is_attn_v(c);
        if (c == QCAT_OUTPUT) q->tied = false;
        int il = layer_of(n);
        if (il > max_layer) max_layer = il;
    }
    q->falcon = !strcmp(arch, "falcon");
    q->n_layer = kv_int(g, arch, "block_count", max_layer + 1);
    q->n_expert = kv_int(g, arch, "expert_count", 0);
    int n_head = kv_int(g, arch, "attention.head_count", 0);
    int n_head_kv = kv_int(g, arch, "attention.head_count_kv", n_head);
    q->is_70b = !strcmp(arch, "llama") && q->n_layer == 80 && n_head != n_head_kv; // llama.cpp's LLM_TYPE_70B
}

// Compiled --tensor-type patterns.
typedef struct overrides {
    regex_t *re;
    int n;
} overrides;

static void overrides_free(overrides *o) {
    for (int i = 0; i < o->n; i++) regfree(&o->re[i]);
    free(o->re);
}

static ll_status overrides_init(overrides *o, const ll_quantize_params *p, ll_error *err) {
    *o = (overrides){0};
    if (p->n_overrides <= 0) return LL_OK;
    o->re = ll_calloc((size_t)p->n_overrides, sizeof *o->re, err);
    if (!o->re) return LL_ERR_NOMEM;
    for (int i = 0; i < p->n_overrides; i++) {
        const ll_quant_override *ov = &p->overrides[i];
        const ll_type_traits *tt = ll_type_get(ov->type);
        if (!tt || !tt->from_float_ref || ov->type == LL_TYPE_Q8_1 || ov->type == LL_TYPE_Q8_K) {
            overrides_free(o);
            return ll_err_set(err, LL_ERR_ARG, "--tensor-type %s=%s: llmlab cannot write type %s (use one of F32, "
                              "F16, BF16, Q8_0, Q6_K, Q5_K, Q5_1, Q5_0, Q4_K, Q4_1, Q4_0)", ov->pattern,
                              ll_type_name(ov->type), ll_type_name(ov->type));
        }
        int rc = regcomp(&o->re[i], ov->pattern, REG_EXTENDED | REG_NOSUB);
        if (rc != 0) {
            char msg[128];
            regerror(rc, &o->re[i], msg, sizeof msg);
            overrides_free(o);
            return ll_err_set(err, LL_ERR_ARG, "--tensor-type: pattern '%s' is not a valid regular expression: %s",
                              ov->pattern, msg);
        }
        o->n = i + 1;
    }
    return LL_OK;
}

static ll_type choose_type(qstate *q, const overrides *ov, const ll_quantize_params *p, const ll_gguf_tensor *t,
                           bool *fell) {
    *fell = false;
    if (!allows_quantization(t)) return (ll_type)t->type;
    ll_type def = ll_ftype_default_type(p->ftype);
    if (!is_quantized_type(def)) return def; // F16/BF16/F32 files: every 2-D weight, no mix, no overrides
    ll_type nt = def;
    bool manual = false;
    for (int i = 0; i < ov->n && !manual; i++)
        if (regexec(&ov->re[i], t->name, 0, NULL, 0) == 0) {
            nt = p->overrides[i].type;
            manual = true;
        }
    if (!manual) nt = mix_type(q, nt, t, category_of(t->name));
    return fallback_type(nt, t->ne[0], fell);
}

ll_status ll_quantize_plan(const ll_gguf *g, const ll_quantize_params *p, ll_quant_choice **out, ll_error *err) {
    *out = NULL;
    if (!ftype_find(p->ftype)) return ll_err_set(err, LL_ERR_ARG, "unknown file type %d", (int)p->ftype);
    ll_quant_choice *c = ll_calloc(g->n_tensors ? (size_t)g->n_tensors : 1, sizeof *c, err);
    if (!c) return LL_ERR_NOMEM;
    overrides ov;
    ll_status s = overrides_init(&ov, p, err);
    if (s != LL_OK) {
        free(c);
        return s;
    }
    for (uint64_t i = 0; i < g->n_tensors; i++) c[i].src = &g->tensors[i];
    qsort(c, (size_t)g->n_tensors, sizeof *c, cmp_choice);
    qstate q;
    state_init(&q, g, p->ftype);
    int n_fell = 0, first = -1;
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        c[i].type = choose_type(&q, &ov, p, c[i].src, &c[i].fallback);
        if (c[i].fallback && n_fell++ == 0) first = (int)i;
    }
    if (n_fell) // one line, not one per tensor (the verbose listing marks each)
        ll_log(LL_LOG_WARN, "%s: %d tensor(s) have rows that do not fit the chosen type's blocks and fall back, e.g. "
               "'%s' (%" PRId64 " columns) -> %s", g->path, n_fell, c[first].src->name, c[first].src->ne[0],
               ll_type_name(c[first].type));
    overrides_free(&ov);
    *out = c;
    return LL_OK;
}

// ---- the streaming pass ---------------------------------------------------------------------------------------
// One batch of rows of one tensor: each thread converts its rows to float (one row of scratch) and quantizes
// them into dst.
typedef struct qjob {
    const ll_type_traits *from, *to;
    const uint8_t *src; // first row of the batch
    uint8_t *dst;
    size_t src_row, dst_row;
    int64_t ne0, nrows;
    float **scratch;    // per thread: ne0 floats
    _Atomic int64_t bad_row; // first row holding NaN/inf, or -1
} qjob;

static void quant_rows(void *ctx, int ith, int nth) {
    qjob *j = ctx;
    int64_t lo, hi;
    ll_split_range(j->nrows, ith, nth, 1, &lo, &hi);
    float *f = j->scratch[ith];
    for (int64_t r = lo; r < hi; r++) {
        j->from->to_float(j->src + (size_t)r * j->src_row, f, j->ne0);
        for (int64_t k = 0; k < j->ne0; k++)
            if (!(f[k] - f[k] == 0.0f)) { // NaN or inf
                int64_t none = -1;
                atomic_compare_exchange_strong(&j->bad_row, &none, r);
                break;
            }
        j->to->from_float_ref(f, j->dst + (size_t)r * j->dst_row, j->ne0);
    }
}

// Everything one run allocates once: the pool, per-thread scratch rows and one batch of output rows.
typedef struct qrun {
    const ll_quantize_params *p;
    ll_pool *pool;
    int n_threads;
    float **scratch;
    uint8_t *out;
    size_t out_cap;
    ll_progress prog;
    ll_quantize_stats st;
} qrun;

#define LL_QUANT_BATCH_BYTES ((size_t)4 << 20) // output bytes converted between writes

static bool interrupted(const qrun *r) { return r->p->interrupt && *r->p->interrupt; }

static ll_status write_tensor(qrun *r, const ll_gguf *g, const ll_quant_choice *c, ll_gguf_writer *w, ll_error *err) {
    const ll_gguf_tensor *t = c->src;
    if ((uint32_t)c->type == t->type) { // copied as is
        for (uint64_t off = 0; off < t->nbytes;) {
            if (interrupted(r)) return ll_err_set(err, LL_ERR_INTERRUPTED, "interrupted");
            size_t k = t->nbytes - off < LL_QUANT_BATCH_BYTES ? (size_t)(t->nbytes - off) : LL_QUANT_BATCH_BYTES;
            ll_status s = ll_gguf_writer_write(w, (const uint8_t *)t->data + off, k, err);
            if (s != LL_OK) return s;
            off += k;
            if (r->p->progress) ll_progress_add(&r->prog, k);
        }
        r->st.bytes_out += t->nbytes;
        return LL_OK;
    }
    uint64_t src_row, dst_row;
    LL_ASSERT(ll_type_row_size(t->type, (uint64_t)t->ne[0], &src_row));
    LL_ASSERT(ll_type_row_size(c->type, (uint64_t)t->ne[0], &dst_row));
    int64_t nrows = (int64_t)(t->nbytes / src_row);
    int64_t per = (int64_t)(r->out_cap / dst_row);
    LL_ASSERT(per >= 1);
    qjob j = {.from = ll_type_get(t->type), .to = ll_type_get(c->type), .src_row = (size_t)src_row,
              .dst_row = (size_t)dst_row, .ne0 = t->ne[0], .scratch = r->scratch, .dst = r->out};
    for (int64_t row = 0; row < nrows; row += per) {
        if (interrupted(r)) return ll_err_set(err, LL_ERR_INTERRUPTED, "interrupted");
        j.src = (const uint8_t *)t->data + (size_t)row * j.src_row;
        j.nrows = nrows - row < per ? nrows - row : per;
        atomic_store(&j.bad_row, -1);
        ll_pool_run(r->pool, quant_rows, &j);
        int64_t bad = atomic_load(&j.bad_row);
        if (bad >= 0)
            return ll_err_set(err, LL_ERR_FORMAT, "%s: tensor '%s' row %" PRId64 " holds NaN or infinite values; the "
                              "input is damaged (nothing was written)", g->path, t->name, row + bad);
        ll_status s = ll_gguf_writer_write(w, r->out, (size_t)j.nrows * j.dst_row, err);
        if (s != LL_OK) return s;
        if (r->p->progress) ll_progress_add(&r->prog, (uint64_t)j.nrows * src_row);
    }
    r->st.bytes_out += (uint64_t)nrows * dst_row;
    r->st.n_quantized++;
    return LL_OK;
}

// Converting needs a source type we can read as float; quantized sources only with allow_requantize.
static ll_status check_choices(const ll_gguf *g, const ll_quant_choice *c, const ll_quantize_params *p, ll_error *err) {
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const ll_gguf_tensor *t = c[i].src;
        if ((uint32_t)c[i].type == t->type) continue;
        const ll_type_traits *from = ll_type_get(t->type);
        if (!from || !from->to_float)
            return ll_err_set(err, LL_ERR_UNSUPPORTED, "%s: tensor '%s' has type %s, which llmlab cannot convert to %s",
                              g->path, t->name, ll_type_name(t->type), ll_type_name(c[i].type));
        if (is_quantized_type(t->type) && !p->allow_requantize)
            return ll_err_set(err, LL_ERR_ARG, "%s: tensor '%s' is already quantized (%s); quantizing it again to %s "
                              "loses quality. Quantize from the F32/F16/BF16 original, or pass --allow-requantize",
                              g->path, t->name, ll_type_name(t->type), ll_type_name(c[i].type));
    }
    return LL_OK;
}

// Output header: every KV of the input (split keys dropped, as llama-quantize does), the file type and the
// quantization version; tensor infos in output order with their new types.
static ll_status build_meta(const ll_gguf *g, const ll_quant_choice *c, const ll_quantize_params *p, const char *out,
                            ll_gguf **meta, ll_error *err) {
    ll_gguf *m = ll_gguf_new(out);
    for (uint64_t i = 0; i < g->n_kv; i++)
        if (strcmp(g->kv[i].key, "split.no") && strcmp(g->kv[i].key, "split.count") &&
            strcmp(g->kv[i].key, "split.tensors.count"))
            ll_gguf_copy_kv(m, &g->kv[i]);
    ll_gguf_set_u32(m, "general.quantization_version", 2); // ggml's GGML_QNT_VERSION
    ll_gguf_set_u32(m, "general.file_type", (uint32_t)p->ftype);
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const ll_gguf_tensor *t = c[i].src;
        ll_status s = ll_gguf_add_tensor(m, t->name, c[i].type, t->n_dims, t->ne, NULL, err);
        if (s != LL_OK) {
            ll_gguf_free(m);
            return s;
        }
    }
    *meta = m;
    return LL_OK;
}

static void run_free(qrun *r) {
    if (r->scratch)
        for (int i = 0; i < r->n_threads; i++) free(r->scratch[i]);
    free(r->scratch);
    free(r->out);
    ll_pool_free(r->pool);
}

// Pool, one float row per thread and one output batch, sized for the largest tensor converted.
static ll_status run_init(qrun *r, const ll_gguf *g, const ll_quant_choice *c, const ll_quantize_params *p,
                          ll_error *err) {
    *r = (qrun){.p = p, .n_threads = p->n_threads > 0 ? p->n_threads : ll_sys_default_threads()};
    if (r->n_threads < 1) r->n_threads = 1;
    int64_t max_ne0 = 1;
    size_t max_row = 0;
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const ll_gguf_tensor *t = c[i].src;
        r->st.n_tensors++;
        r->st.bytes_in += t->nbytes;
        r->st.n_elements += (uint64_t)t->ne[0] * (uint64_t)t->ne[1] * (uint64_t)t->ne[2] * (uint64_t)t->ne[3];
        uint64_t row;
        if ((uint32_t)c[i].type == t->type || !ll_type_row_size(c[i].type, (uint64_t)t->ne[0], &row)) continue;
        if (t->ne[0] > max_ne0) max_ne0 = t->ne[0];
        if (row > max_row) max_row = (size_t)row;
    }
    r->out_cap = max_row > LL_QUANT_BATCH_BYTES ? max_row : LL_QUANT_BATCH_BYTES;
    r->pool = ll_pool_init(r->n_threads, err);
    r->scratch = r->pool ? ll_calloc((size_t)r->n_threads, sizeof *r->scratch, err) : NULL;
    r->out = r->scratch ? ll_malloc(r->out_cap, err) : NULL;
    bool ok = r->out != NULL;
    for (int i = 0; i < r->n_threads && ok; i++) ok = (r->scratch[i] = ll_malloc((size_t)max_ne0 * sizeof(float), err));
    if (!ok) {
        run_free(r);
        return LL_ERR_NOMEM;
    }
    return LL_OK;
}

static void print_tensor(uint64_t i, uint64_t n, const ll_quant_choice *c) {
    const ll_gguf_tensor *t = c->src;
    int64_t rows = t->ne[1] * t->ne[2] * t->ne[3];
    uint64_t row = 0;
    ll_type_row_size(c->type, (uint64_t)t->ne[0], &row);
    fprintf(stderr, "[%4" PRIu64 "/%4" PRIu64 "] %-32s [%6" PRId64 " x %6" PRId64 "] %-5s -> %-5s %9.3f -> %9.3f MiB%s\n",
            i + 1, n, t->name, t->ne[0], rows, ll_type_name(t->type), ll_type_name(c->type),
            (double)t->nbytes / 1048576.0, (double)(row * (uint64_t)rows) / 1048576.0, c->fallback ? " (fallback)" : "");
}

// llama2.c checkpoints are read through the importer; their tokenizer is beside them unless given.
static ll_status open_input(const char *path, const char *tok_path, ll_gguf **g, ll_error *err) {
    if (!ll_llama2c_probe(path)) return ll_gguf_open(g, path, err);
    char tok[4096];
    if (tok_path) {
        snprintf(tok, sizeof tok, "%s", tok_path);
    } else {
        const char *slash = strrchr(path, '/');
        int dir = slash ? (int)(slash - path + 1) : 0;
        snprintf(tok, sizeof tok, "%.*stokenizer.bin", dir, path);
    }
    return ll_llama2c_open(g, path, tok, err);
}

static ll_status stream_tensors(qrun *r, const ll_gguf *g, const ll_gguf *meta, const ll_quant_choice *c,
                                const char *out_path, ll_error *err) {
    ll_gguf_writer *w;
    ll_status s = ll_gguf_writer_open(&w, out_path, meta, err);
    if (s != LL_OK) return s;
    if (r->p->progress) ll_progress_init(&r->prog, "quantize", r->st.bytes_in);
    for (uint64_t i = 0; i < g->n_tensors && s == LL_OK; i++) {
        if (r->p->verbose) print_tensor(i, g->n_tensors, &c[i]);
        r->st.n_fallback += c[i].fallback;
        s = write_tensor(r, g, &c[i], w, err);
    }
    if (s != LL_OK) {
        ll_gguf_writer_abort(w);
        if (s == LL_ERR_INTERRUPTED)
            ll_err_set(err, s, "%s: interrupted; the output was not written (its temporary file is removed)", out_path);
        return s;
    }
    s = ll_gguf_writer_finish(w, err);
    if (r->p->progress && s == LL_OK && r->prog.tty) ll_progress_done(&r->prog); // (else the 100% line is out)
    return s;
}

ll_status ll_quantize_file(const char *in_path, const char *out_path, const ll_quantize_params *p,
                           ll_quantize_stats *st, ll_error *err) {
    double t0 = ll_time_s();
    if (ll_same_file(in_path, out_path))
        return ll_err_set(err, LL_ERR_ARG, "%s: the output is the input file; give another output path", out_path);
    if (ll_same_file(p->tokenizer_path, out_path))
        return ll_err_set(err, LL_ERR_ARG, "%s: the output is the tokenizer file; give another output path", out_path);
    ll_gguf *g = NULL, *meta = NULL;
    ll_quant_choice *c = NULL;
    ll_status s = open_input(in_path, p->tokenizer_path, &g, err);
    if (s == LL_OK) s = ll_quantize_plan(g, p, &c, err);
    if (s == LL_OK) s = check_choices(g, c, p, err);
    if (s == LL_OK) s = build_meta(g, c, p, out_path, &meta, err);
    qrun r;
    if (s == LL_OK && (s = run_init(&r, g, c, p, err)) == LL_OK) {
        s = stream_tensors(&r, g, meta, c, out_path, err);
        r.st.seconds = ll_time_s() - t0;
        if (st) *st = r.st;
        run_free(&r);
    }
    ll_gguf_free(meta);
    free(c);
    ll_gguf_free(g);
    return s;
}
