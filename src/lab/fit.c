// fit.c — "will it fit, and how fast": weights, KV cache, activations and overhead of a model (from its GGUF
// header or a preset) at a type and context, against a device's memory, with t/s predicted from ceilings.
#include <math.h>
#include <string.h>
#include <strings.h>

#include "formats/gguf.h"
#include "lab/lab.h"
#include "quant/quantize.h"
#include "types/types.h"

// Effective bits per weight. Single-type formats from their block geometry (bytes x 8 / elements per block);
// the _M mixes (llama-quantize gives some tensors Q6_K/Q5_K) from file sizes: Mistral-7B Q4_K_M is 4.37 GB
// for 7.24 B parameters = 4.83 bpw (BENCHMARKS.md); Q5_K_M the same mix one step up, ~5.67 bpw.
static const ll_lab_qtype k_qtypes[LL_LAB_N_QTYPES] = {
    {"F16", 16.0, LL_TYPE_F16},       {"Q8_0", 8.5, LL_TYPE_Q8_0},     {"Q6_K", 6.5625, LL_TYPE_Q6_K},
    {"Q5_K_M", 5.67, LL_TYPE_Q5_K}, {"Q4_K_M", 4.83, LL_TYPE_Q4_K}, {"Q4_0", 4.5, LL_TYPE_Q4_0},
};

const ll_lab_qtype *ll_lab_qtype_at(int i) { return i >= 0 && i < LL_LAB_N_QTYPES ? &k_qtypes[i] : NULL; }

const ll_lab_qtype *ll_lab_qtype_find(const char *name) {
    for (int i = 0; i < LL_LAB_N_QTYPES; i++)
        if (!strcasecmp(name, k_qtypes[i].name)) return &k_qtypes[i];
    return NULL;
}

static void add_mat(ll_lab_shape *s, uint32_t type, int64_t n_in, int64_t n_out, int count) {
    for (int i = 0; i < s->n_mats; i++) {
        ll_lab_mat *m = &s->mats[i];
        if (m->type == type && m->n_in == n_in && m->n_out == n_out) { m->count += count; return; }
    }
    if (s->n_mats < LL_LAB_MAX_MATS && n_in > 0 && n_out > 0 && n_in <= (1 << 30) && n_out <= (1 << 30))
        s->mats[s->n_mats++] = (ll_lab_mat){type, (int)n_in, (int)n_out, count};
}

void ll_lab_shape_from_preset(const ll_preset *p, ll_lab_shape *s) {
    memset(s, 0, sizeof *s);
    s->kv_type = LL_TYPE_F16, s->n_seq = 1;
    snprintf(s->name, sizeof s->name, "%s", p->name);
    snprintf(s->arch, sizeof s->arch, "%s", p->arch);
    s->n_embd = p->n_embd, s->n_layer = p->n_layer, s->n_head = p->n_head, s->n_head_kv = p->n_head_kv;
    s->head_dim = p->n_embd / p->n_head, s->n_ff = p->n_ff, s->n_vocab = p->n_vocab, s->n_ctx_train = p->n_ctx;
    s->tied = p->tied_embeddings;
    s->n_params = ll_preset_params(p);
    uint64_t d = (uint64_t)p->n_embd, kv = (uint64_t)s->head_dim * (uint64_t)p->n_head_kv;
    uint64_t vec = (uint64_t)p->n_layer * (2 * d + (p->qkv_bias ? d + 2 * kv : 0)) + d; // norms, biases
    s->n_matrix = s->n_params - vec;
    s->n_embd_table = (uint64_t)p->n_vocab * d;
    int qd = s->head_dim * p->n_head, kvd = s->head_dim * p->n_head_kv; // q, k, v, o, gate, up, down, output
    add_mat(s, LL_TYPE_F16, p->n_embd, qd, p->n_layer);
    add_mat(s, LL_TYPE_F16, p->n_embd, kvd, 2 * p->n_layer);
    add_mat(s, LL_TYPE_F16, qd, p->n_embd, p->n_layer);
    add_mat(s, LL_TYPE_F16, p->n_embd, p->n_ff, 2 * p->n_layer);
    add_mat(s, LL_TYPE_F16, p->n_ff, p->n_embd, p->n_layer);
    add_mat(s, LL_TYPE_F16, p->n_embd, p->n_vocab, 1);
}

int ll_lab_mats_retype(const ll_lab_shape *s, const ll_lab_qtype *qt, ll_lab_mat *out) {
    int n = 0;
    for (int i = 0; i < s->n_mats; i++) {
        ll_lab_mat m = s->mats[i];
        if (qt) m.type = qt->type;
        int j = 0; // retyping can merge shapes that differed only by type
        while (j < n && !(out[j].type == m.type && out[j].n_in == m.n_in && out[j].n_out == m.n_out)) j++;
        if (j < n) out[j].count += m.count;
        else out[n++] = m;
    }
    return n;
}

static ll_status get_int(const ll_gguf *g, const char *arch, const char *key, int *out, bool required, ll_error *err) {
    char k[128];
    snprintf(k, sizeof k, "%s.%s", arch, key);
    if (!ll_gguf_find(g, k)) return required ? ll_err_set(err, LL_ERR_MISSING, "%s: missing required key '%s'", g->path, k) : LL_OK;
    uint32_t v;
    ll_status s = ll_gguf_get_u32(g, k, &v, err);
    if (s == LL_OK && v > (1u << 30)) return ll_err_set(err, LL_ERR_FORMAT, "%s: key '%s' = %u is out of range", g->path, k, v);
    if (s == LL_OK) *out = (int)v;
    return s;
}

// Sizes from the tensor table: every tensor's element count and bytes (header only; no tensor data is read).
static ll_status sum_tensors(const ll_gguf *g, ll_lab_shape *s, ll_error *err) {
    bool has_output = false;
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const ll_gguf_tensor *t = &g->tensors[i];
        uint64_t n = 1;
        for (uint32_t d = 0; d < t->n_dims; d++)
            if (!ll_mul_u64(n, (uint64_t)t->ne[d], &n))
                return ll_err_set(err, LL_ERR_FORMAT, "%s: tensor '%s' has too many elements", g->path, t->name);
        if (!ll_add_u64(s->n_params, n, &s->n_params) || !ll_add_u64(s->file_weights, t->nbytes, &s->file_weights))
            return ll_err_set(err, LL_ERR_FORMAT, "%s: tensor sizes overflow", g->path);
        if (t->n_dims >= 2) s->n_matrix += n;
        if (!strcmp(t->name, "token_embd.weight")) {
            s->n_embd_table = n;
            if (t->n_dims >= 2 && t->ne[1] <= (1 << 30)) s->n_vocab = (int)t->ne[1];
        }
        if (!strcmp(t->name, "output.weight")) has_output = true;
        if (t->n_dims == 2 && (!strncmp(t->name, "blk.", 4) || !strcmp(t->name, "output.weight")))
            add_mat(s, t->type, t->ne[0], t->ne[1], 1);
        if (!strcmp(t->name, "blk.0.attn_q.weight")) snprintf(s->file_type, sizeof s->file_type, "%s", ll_type_name(t->type));
    }
    s->tied = !has_output;
    if (!s->n_embd_table) return ll_err_set(err, LL_ERR_MISSING, "%s: missing required tensor 'token_embd.weight'", g->path);
    const ll_gguf_tensor *te = ll_gguf_find_tensor(g, "token_embd.weight");
    if (s->tied && te && te->n_dims == 2) add_mat(s, te->type, te->ne[0], te->ne[1], 1); // the output multiplies by it
    return LL_OK;
}

ll_status ll_lab_shape_from_gguf(const char *path, ll_lab_shape *s, ll_error *err) {
    memset(s, 0, sizeof *s);
    s->kv_type = LL_TYPE_F16, s->n_seq = 1;
    ll_gguf *g;
    ll_status st = ll_gguf_open(&g, path, err);
    if (st != LL_OK) return st;
    ll_str a, nm;
    st = ll_gguf_get_str(g, "general.architecture", &a, err);
    if (st == LL_OK) snprintf(s->arch, sizeof s->arch, "%.*s", (int)(a.len < 31 ? a.len : 31), a.ptr);
    const char *base = strrchr(path, '/');
    snprintf(s->name, sizeof s->name, "%s", base ? base + 1 : path);
    if (ll_gguf_find(g, "general.name") && ll_gguf_get_str(g, "general.name", &nm, NULL) == LL_OK && nm.len)
        snprintf(s->name, sizeof s->name, "%.*s", (int)(nm.len < 127 ? nm.len : 127), nm.ptr);
    if (st == LL_OK) st = get_int(g, s->arch, "embedding_length", &s->n_embd, true, err);
    if (st == LL_OK) st = get_int(g, s->arch, "block_count", &s->n_layer, true, err);
    if (st == LL_OK) st = get_int(g, s->arch, "attention.head_count", &s->n_head, true, err);
    s->n_head_kv = s->n_head;
    if (st == LL_OK) st = get_int(g, s->arch, "attention.head_count_kv", &s->n_head_kv, false, err);
    if (st == LL_OK) st = get_int(g, s->arch, "feed_forward_length", &s->n_ff, true, err);
    if (st == LL_OK) st = get_int(g, s->arch, "context_length", &s->n_ctx_train, false, err);
    if (st == LL_OK && (s->n_head < 1 || s->n_head_kv < 1 || s->n_embd < s->n_head || s->n_layer < 1))
        st = ll_err_set(err, LL_ERR_FORMAT, "%s: head counts (%d, %d), embedding_length %d or block_count %d out of range",
                        path, s->n_head, s->n_head_kv, s->n_embd, s->n_layer);
    if (st == LL_OK) s->head_dim = s->n_embd / s->n_head;
    if (st == LL_OK) st = get_int(g, s->arch, "attention.key_length", &s->head_dim, false, err);
    if (st == LL_OK) st = sum_tensors(g, s, err);
    uint64_t ft; // the file's type as users name it ("Q4_K_M"), else blk.0.attn_q's tensor type (set above)
    if (st == LL_OK && ll_gguf_find(g, "general.file_type") && ll_gguf_get_u64(g, "general.file_type", &ft, NULL) == LL_OK &&
        ft < 1024 && strcmp(ll_ftype_name((ll_ftype)ft), "unknown"))
        snprintf(s->file_type, sizeof s->file_type, "%s", ll_ftype_name((ll_ftype)ft));
    ll_gguf_free(g);
    return st;
}

uint64_t ll_lab_weight_bytes(const ll_lab_shape *s, double bpw) {
    if (bpw <= 0) return s->file_weights;
    return (uint64_t)llround((double)s->n_matrix * bpw / 8.0) + (s->n_params - s->n_matrix) * 4;
}

// K and V of every layer for n_seq sequences of n_ctx positions, rows of kv_type (plan.c's formula)
uint64_t ll_lab_kv_bytes(const ll_lab_shape *s, int n_ctx) {
    uint64_t row = 0;
    if (!ll_type_row_size(s->kv_type, (uint64_t)s->n_head_kv * (uint64_t)s->head_dim, &row))
        row = (uint64_t)s->n_head_kv * (uint64_t)s->head_dim * 4; // not whole Q8_0 blocks: the engine refuses it
    return 2ull * (uint64_t)s->n_layer * (uint64_t)n_ctx * (uint64_t)(s->n_seq > 0 ? s->n_seq : 1) * row;
}

// plan.c's formula: x, xb, xb2 (n_batch, max(n_embd, qd)); q (n_batch, qd); hb, hb2 (n_batch, n_ff); one row
// of logits; positions. The matmul workspace is counted in the overhead.
uint64_t ll_lab_act_bytes(const ll_lab_shape *s, int n_batch) {
    uint64_t qd = (uint64_t)s->n_head * s->head_dim, wide = qd > (uint64_t)s->n_embd ? qd : (uint64_t)s->n_embd;
    uint64_t per_tok = 3 * wide + qd + 2ull * s->n_ff;
    return (uint64_t)n_batch * per_tok * 4 + (uint64_t)s->n_vocab * 4 + (uint64_t)n_batch * 4;
}

// CPU: the process, tokenizer, thread stacks and matmul workspace (64 MiB); CUDA: the context and the cuBLAS
// workspace on the device (512 MiB, a typical CUDA 12/13 context on an H100).
uint64_t ll_lab_overhead_bytes(const char *device) { return strcmp(device, "cpu") ? 512ull << 20 : 64ull << 20; }

void ll_lab_fit_compute(const ll_lab_shape *s, double bpw, int n_ctx, int n_batch, const char *device,
                        const ll_lab_ceil *c, ll_lab_fit *f) {
    memset(f, 0, sizeof *f);
    if (n_batch > n_ctx) n_batch = n_ctx;
    f->weights = ll_lab_weight_bytes(s, bpw);
    f->kv = ll_lab_kv_bytes(s, n_ctx);
    f->activations = ll_lab_act_bytes(s, n_batch);
    f->overhead = ll_lab_overhead_bytes(device);
    f->total = f->weights + f->kv + f->activations + f->overhead;
    f->available = c ? c->mem_avail : 0;
    f->margin = (double)f->available - (double)f->total;
    f->fits = f->available && f->total <= f->available;
    // Decode reads every weight but the embedding table (which it only indexes), unless that is tied.
    uint64_t embd = bpw > 0 ? (uint64_t)llround((double)s->n_embd_table * bpw / 8.0)
                            : (uint64_t)((double)s->file_weights * s->n_embd_table / (double)(s->n_params ? s->n_params : 1));
    f->weight_read = s->tied ? f->weights : f->weights - embd;
    uint64_t mm = s->tied ? s->n_matrix : s->n_matrix - s->n_embd_table;
    // Two flops per multiply-add; attention QK^T and PV at the prompt's mean position n_batch / 2.
    f->flops_tok = 2.0 * (double)mm + 4.0 * s->n_layer * (double)s->n_head * s->head_dim * (n_batch / 2.0);
    if (c && c->read_gbps > 0 && f->weight_read) f->pred_tg = c->read_gbps * 1e9 / (double)f->weight_read;
    if (c && c->gemm_gflops > 0) f->pred_pp = c->gemm_gflops * 1e9 / f->flops_tok;
}

void ll_lab_fit_engine(ll_lab_fit *f, const ll_lab_mat *mats, int n_mats, const ll_lab_calib *cal) {
    double t = ll_lab_calib_token_s(mats, n_mats, cal);
    f->tg_matrix_s = isfinite(t) ? t : 0;
    f->pred_tg_engine = isfinite(t) && t > 0 ? 1.0 / t : 0;
}

int ll_lab_fit_max_ctx(const ll_lab_shape *s, double bpw, int n_batch, const char *device, const ll_lab_ceil *c,
                       int cap) {
    if (!c->mem_avail) return 0;
    uint64_t fixed = ll_lab_weight_bytes(s, bpw) + ll_lab_act_bytes(s, n_batch) + ll_lab_overhead_bytes(device);
    uint64_t per = ll_lab_kv_bytes(s, 1);
    if (fixed >= c->mem_avail || !per) return 0;
    uint64_t n = (c->mem_avail - fixed) / per;
    return n > (uint64_t)cap ? cap : (int)n;
}

const ll_lab_qtype *ll_lab_fit_best(const ll_lab_shape *s, int n_ctx, int n_batch, const char *device, const ll_lab_ceil *c) {
    for (int i = 0; i < LL_LAB_N_QTYPES; i++) {
        ll_lab_fit f;
        ll_lab_fit_compute(s, k_qtypes[i].bpw, n_ctx, n_batch, device, c, &f);
        if (f.fits) return &k_qtypes[i];
    }
    return NULL;
}
