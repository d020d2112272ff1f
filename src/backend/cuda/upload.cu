// upload.cu — prepare for the CUDA backend: plan device memory (weights + scratch) against what the GPU has
// free, then stream every weight from the map through two pinned buffers (all quantized types repacked on the way).
#include "backend/cuda/cuda_internal.h"

#include <stdlib.h>
#include <string.h>

#define CU_STAGE_BYTES ((size_t)64 << 20) // each of the two pinned staging buffers
#define CU_ALIGN 256

// Repacked types: each GGUF block's payload (aligned runs once the blocks are back to back), and all the
// blocks' scales after them. Q8_0/Q4_0 keep d first in a block, Q6_K last: their scale part is that fp16 d.
// Q4_K/Q5_K: the payload is the block after its first 16 bytes ((Q5_K: qh, then) qs); the 16-byte scale part
// holds d and dmin, then the 8 scales and 8 mins unpacked from their 12-byte packing into four 24-bit fields, one
// per group of 64 elements (cu_k4r_field). The same bytes as the file.
static bool k45(uint32_t type) { return type == LL_TYPE_Q4_K || type == LL_TYPE_Q5_K; }
bool cu_repacked(uint32_t type) {
    return type == LL_TYPE_Q8_0 || type == LL_TYPE_Q4_0 || type == LL_TYPE_Q6_K || k45(type);
}
// GGUF bytes and elements per block, from the type table (src/types)
static size_t block_bytes(uint32_t type) { return ll_type_get(type)->size; }
size_t cu_repack_scale(uint32_t type) { return k45(type) ? 16 : 2; }
size_t cu_repack_payload(uint32_t type) { return block_bytes(type) - cu_repack_scale(type); }
static size_t n_blocks(const cu_wview *v) {
    return (size_t)(v->ne0 / ll_type_get(v->type)->blck) * (size_t)v->ne1;
}

// Q4_K/Q5_K's 16-byte scale part from a GGUF block (d, dmin, 12 bytes of packed 6-bit scales and mins, ...).
static void q4k_header(const uint8_t *blk, uint8_t out[16]) {
    uint64_t f[4]; // group g's 24 bits
    for (int g = 0; g < 4; g++) {
        uint8_t s0, m0, s1, m1;
        ll_quant_k4_scale_min(2 * g, blk + 4, &s0, &m0);
        ll_quant_k4_scale_min(2 * g + 1, blk + 4, &s1, &m1);
        f[g] = (uint64_t)s0 | (uint64_t)s1 << 6 | (uint64_t)m0 << 12 | (uint64_t)m1 << 18;
    }
    // the 96 bits f0 | f1 << 24 | f2 << 48 | f3 << 72 as w[1..3], after d, dmin in w[0]
    const uint64_t lo = f[0] | f[1] << 24 | f[2] << 48;
    uint32_t w[4] = {0, (uint32_t)lo, (uint32_t)(lo >> 32), (uint32_t)(f[2] >> 16 | f[3] << 8)};
    memcpy(&w[0], blk, 4);
    memcpy(out, w, 16);
}

void cu_repack_blocks(uint32_t type, const uint8_t *src, size_t n, uint8_t *q, uint8_t *d) {
    const size_t bsz = block_bytes(type), qs = cu_repack_payload(type), ds = cu_repack_scale(type);
    for (size_t i = 0; i < n; i++) {
        const uint8_t *b = src + i * bsz;
        if (k45(type)) {
            memcpy(q + i * qs, b + 16, qs);
            q4k_header(b, d + i * ds);
        } else {
            const size_t doff = type == LL_TYPE_Q6_K ? 208 : 0; // where d is in the block
            memcpy(q + i * qs, b + (doff ? 0 : 2), qs);
            memcpy(d + i * ds, b + doff, 2);
        }
    }
}

static int cmp_weight(const void *a, const void *b) {
    uintptr_t x = (uintptr_t)((const cu_weight *)a)->host, y = (uintptr_t)((const cu_weight *)b)->host;
    return x < y ? -1 : x > y;
}

// The view of w and its device bytes (GGUF bytes; repacked types: quants and scales each CU_ALIGN-rounded).
static ll_status plan_weight(const ll_weight *w, cu_weight *e, ll_error *err) {
    uint64_t row;
    size_t total;
    if (!cu_matmul_supports(w->type))
        return ll_err_set(err, LL_ERR_UNSUPPORTED, "weight %s has type %s, which the CUDA backend does not compute "
                          "yet (use --device cpu, or a Q8_0/Q4_0/Q4_K/Q5_K/Q6_K/F16/BF16 file)", w->name,
                          ll_type_name(w->type));
    if (w->ne0 < 1 || w->ne1 < 1 || !ll_type_row_size(w->type, (uint64_t)w->ne0, &row) ||
        !ll_mul_ok((size_t)row, (size_t)w->ne1, &total) || total > ((size_t)1 << 46))
        return ll_err_set(err, LL_ERR_FORMAT, "weight %s: bad shape %lld x %lld for type %s", w->name,
                          (long long)w->ne0, (long long)w->ne1, ll_type_name(w->type));
    e->host = w->data;
    e->v = (cu_wview){NULL, NULL, w->ne0, w->ne1, (size_t)row, w->type};
    if (cu_repacked(w->type)) {
        size_t nb = n_blocks(&e->v);
        e->bytes = ll_align_up(nb * cu_repack_payload(w->type), CU_ALIGN) +
                   ll_align_up(nb * cu_repack_scale(w->type), CU_ALIGN);
    } else {
        e->bytes = ll_align_up(total, CU_ALIGN);
    }
    return LL_OK;
}

// Two pinned buffers: fill one on the host while the other's copy runs.
typedef struct stager {
    uint8_t *pin[2];
    cudaEvent_t ev[2];
    int slot;
} stager;

static ll_status stage_take(stager *s, uint8_t **buf, ll_error *err) {
    CU_TRY(cudaEventSynchronize(s->ev[s->slot]));
    *buf = s->pin[s->slot];
    return LL_OK;
}

static ll_status stage_give(cu_impl *c, stager *s, ll_error *err) {
    CU_TRY(cudaEventRecord(s->ev[s->slot], c->stream));
    s->slot ^= 1;
    return LL_OK;
}

static ll_status copy_async(cu_impl *c, void *dst, const void *src, size_t n, ll_error *err) {
    CU_TRY(cudaMemcpyAsync(dst, src, n, cudaMemcpyHostToDevice, c->stream));
    return LL_OK;
}

static ll_status upload_raw(cu_impl *c, stager *s, const cu_weight *e, ll_error *err) {
    size_t total = e->v.row_bytes * (size_t)e->v.ne1;
    for (size_t off = 0; off < total; off += CU_STAGE_BYTES) {
        size_t n = total - off < CU_STAGE_BYTES ? total - off : CU_STAGE_BYTES;
        uint8_t *buf;
        ll_status st = stage_take(s, &buf, err);
        if (st != LL_OK) return st;
        memcpy(buf, (const uint8_t *)e->host + off, n);
        if ((st = copy_async(c, (uint8_t *)e->v.q + off, buf, n, err)) != LL_OK) return st;
        if ((st = stage_give(c, s, err)) != LL_OK) return st;
    }
    return LL_OK;
}

// GGUF blocks -> all payloads in block order, then all scales.
static ll_status upload_repacked(cu_impl *c, stager *s, const cu_weight *e, ll_error *err) {
    const size_t bsz = block_bytes(e->v.type), qs = cu_repack_payload(e->v.type), ds = cu_repack_scale(e->v.type);
    const size_t per = CU_STAGE_BYTES / bsz;
    const size_t nb = n_blocks(&e->v);
    const uint8_t *src = (const uint8_t *)e->host;
    for (size_t b0 = 0; b0 < nb; b0 += per) {
        size_t n = nb - b0 < per ? nb - b0 : per;
        uint8_t *buf;
        ll_status st = stage_take(s, &buf, err);
        if (st != LL_OK) return st;
        cu_repack_blocks(e->v.type, src + b0 * bsz, n, buf, buf + n * qs);
        if ((st = copy_async(c, (uint8_t *)e->v.q + b0 * qs, buf, n * qs, err)) != LL_OK) return st;
        if ((st = copy_async(c, (uint8_t *)e->v.d + b0 * ds, buf + n * qs, n * ds, err)) != LL_OK) return st;
        if ((st = stage_give(c, s, err)) != LL_OK) return st;
    }
    return LL_OK;
}

static ll_status upload_all(cu_impl *c, ll_error *err) {
    stager s = {{NULL, NULL}, {NULL, NULL}, 0};
    ll_status st = LL_OK;
    double t0 = ll_time_s();
    size_t host_bytes = 0;
    for (int i = 0; i < 2 && st == LL_OK; i++) {
        cudaError_t e1 = cudaMallocHost((void **)&s.pin[i], CU_STAGE_BYTES);
        cudaError_t e2 = cudaEventCreateWithFlags(&s.ev[i], cudaEventDisableTiming);
        if (e1 != cudaSuccess || e2 != cudaSuccess)
            st = ll_err_set(err, LL_ERR_NOMEM, "%s:%d: pinned staging buffer of 64 MiB: %s", __FILE__, __LINE__,
                            cudaGetErrorString(e1 != cudaSuccess ? e1 : e2));
    }
    for (int i = 0; i < c->n_w && st == LL_OK; i++) {
        const cu_weight *e = &c->w[i];
        st = cu_repacked(e->v.type) ? upload_repacked(c, &s, e, err) : upload_raw(c, &s, e, err);
        host_bytes += e->v.row_bytes * (size_t)e->v.ne1;
    }
    cudaError_t es = cudaStreamSynchronize(c->stream);
    if (st == LL_OK && es != cudaSuccess)
        st = ll_err_set(err, LL_ERR_IO, "%s:%d: weight upload: %s", __FILE__, __LINE__, cudaGetErrorString(es));
    for (int i = 0; i < 2; i++) {
        if (s.pin[i]) (void)cudaFreeHost(s.pin[i]);
        if (s.ev[i]) (void)cudaEventDestroy(s.ev[i]);
    }
    double dt = ll_time_s() - t0;
    if (st == LL_OK)
        ll_log(LL_LOG_INFO, "cuda: uploaded %d weights, %.2f GB in %.2f s (%.2f GB/s)", c->n_w, host_bytes / 1e9, dt,
               dt > 0 ? host_bytes / 1e9 / dt : 0.0);
    return st;
}

// The table: one entry per distinct host pointer (a tied output shares token_embd's), sorted for lookup. skip:
// weights of types the backend does not compute are left out (plan_bytes) instead of failing (prepare).
static ll_status build_table(const ll_weight *const *ws, int n_ws, cu_weight **out, int *n_out, bool skip,
                             ll_error *err) {
    cu_weight *w = (cu_weight *)ll_calloc(n_ws > 0 ? (size_t)n_ws : 1, sizeof *w, err);
    *out = w, *n_out = 0;
    if (!w) return LL_ERR_NOMEM;
    int n = 0;
    for (int i = 0; i < n_ws; i++) {
        if (!ws[i]->data) continue;
        ll_status st = plan_weight(ws[i], &w[n], skip ? NULL : err);
        if (st != LL_OK && !skip) return st;
        if (st == LL_OK) n++;
    }
    qsort(w, (size_t)n, sizeof *w, cmp_weight);
    int u = 0;
    for (int i = 0; i < n; i++)
        if (u == 0 || w[u - 1].host != w[i].host) w[u++] = w[i];
    *n_out = u;
    return LL_OK;
}

// What the scratch is sized by: the weights' bytes, the longest row (at least 4096) and the largest quantized
// matrix as f16 (the prefill GEMM's dequantized copy).
typedef struct cu_sizes {
    size_t wbytes, max_ne0, deq;
} cu_sizes;

static cu_sizes sizes_of(const cu_weight *w, int n) {
    cu_sizes z = {0, 4096, 256};
    for (int i = 0; i < n; i++) {
        const cu_wview *v = &w[i].v;
        z.wbytes += w[i].bytes;
        if (v->ne1 > 1 && (size_t)v->ne0 > z.max_ne0) z.max_ne0 = (size_t)v->ne0;
        bool quant = v->type != LL_TYPE_F32 && v->type != LL_TYPE_F16 && v->type != LL_TYPE_BF16;
        if (quant && v->ne1 > 1 && (size_t)v->ne0 * (size_t)v->ne1 * 2 > z.deq) z.deq = (size_t)v->ne0 * (size_t)v->ne1 * 2;
    }
    return z;
}

// x8: codes, block scales, 16-sums of CU_X8_ROWS rows (max_ne0 is a multiple of 32 for quantized weights)
static size_t x8_n(size_t max_ne0) { return (size_t)CU_X8_ROWS * max_ne0; }
static size_t x8_bytes(size_t max_ne0) {
    const size_t n = x8_n(max_ne0);
    return ll_align_up(n, CU_ALIGN) + ll_align_up(n / 32 * 4, CU_ALIGN) + ll_align_up(n / 16 * 4, CU_ALIGN);
}
// The scratch that does not depend on the batch: the dequantized matrix, both x8 copies, the pending norm's sums.
static size_t fixed_bytes(const cu_sizes *z) {
    return z->deq + 2 * x8_bytes(z->max_ne0) + x8_n(z->max_ne0) / 32 * 4 + 3 * CU_ALIGN;
}
// The batch's: xh (f16 activations), the attention partials, the id slots, the bp arrays (device memory).
static size_t xh_bytes(size_t max_ne0, int max_tok) { return (size_t)max_tok * max_ne0 * 2; }
static size_t part_floats(size_t max_ne0, int max_tok) { return (size_t)(max_tok > 32 ? max_tok : 32) * max_ne0 * 2; }
static size_t ids_bytes(int max_tok) { return (size_t)CU_ID_SLOTS * max_tok * sizeof(int32_t); }
static size_t bp_bytes(int max_tok) { return (size_t)CU_BP_SLOTS * 2 * max_tok * sizeof(int32_t); }
static size_t batch_bytes(size_t max_ne0, int max_tok) {
    return xh_bytes(max_ne0, max_tok) + part_floats(max_ne0, max_tok) * sizeof(float) + ids_bytes(max_tok) +
           bp_bytes(max_tok) + 4 * CU_ALIGN;
}

uint64_t cu_plan_bytes(const ll_weight *const *ws, int n_ws, int max_tok, int max_ctx) {
    (void)max_ctx; // no scratch depends on it
    cu_weight *w = NULL;
    int n = 0;
    if (build_table(ws, n_ws, &w, &n, true, NULL) != LL_OK) {
        free(w);
        return 0;
    }
    const cu_sizes z = sizes_of(w, n);
    free(w);
    return (uint64_t)z.wbytes + fixed_bytes(&z) + batch_bytes(z.max_ne0, max_tok < 1 ? 1 : max_tok);
}

// The batch's scratch for max_tok tokens: allocated anew (the old one is kept when this fails), then swapped in.
static ll_status alloc_batch(cu_impl *c, int max_tok, ll_error *err) {
    void *xh = NULL, *part = NULL, *ids = NULL, *ids_pin = NULL, *bp = NULL, *bp_pin = NULL;
    int32_t *bp_host = (int32_t *)ll_calloc((size_t)CU_BP_SLOTS * 2 * max_tok, sizeof(int32_t), err);
    const size_t sizes[4] = {xh_bytes(c->max_ne0, max_tok), part_floats(c->max_ne0, max_tok) * sizeof(float),
                             ids_bytes(max_tok), bp_bytes(max_tok)};
    void **dev[4] = {&xh, &part, &ids, &bp};
    cudaError_t e = bp_host ? cudaSuccess : cudaErrorMemoryAllocation;
    for (int i = 0; i < 4 && e == cudaSuccess; i++) e = cudaMalloc(dev[i], sizes[i]);
    if (e == cudaSuccess) e = cudaMallocHost(&ids_pin, sizes[2]);
    if (e == cudaSuccess) e = cudaMallocHost(&bp_pin, sizes[3]);
    if (e != cudaSuccess) {
        for (int i = 0; i < 4; i++)
            if (*dev[i]) (void)cudaFree(*dev[i]);
        if (ids_pin) (void)cudaFreeHost(ids_pin);
        if (bp_pin) (void)cudaFreeHost(bp_pin);
        free(bp_host);
        (void)cudaGetLastError();
        size_t fr = 0, tot = 0;
        (void)cudaMemGetInfo(&fr, &tot);
        return ll_err_set(err, LL_ERR_NOMEM, "the CUDA scratch for batches of %d tokens (%.2f GiB) does not fit: "
                          "%.2f of %.2f GiB free on the GPU (%s): use a smaller batch (-b)", max_tok,
                          batch_bytes(c->max_ne0, max_tok) / 1073741824.0, fr / 1073741824.0, tot / 1073741824.0,
                          cudaGetErrorString(e));
    }
    if (c->stream) CU_TRY(cudaStreamSynchronize(c->stream)); // nothing in flight reads the old scratch
    void *old[4] = {c->xh, c->attn_part, c->ids_dev, c->bp_dev};
    for (int i = 0; i < 4; i++)
        if (old[i]) CU_TRY(cudaFree(old[i]));
    if (c->ids_pinned) CU_TRY(cudaFreeHost(c->ids_pinned));
    if (c->bp_pin) CU_TRY(cudaFreeHost(c->bp_pin));
    free(c->bp_host);
    c->xh = xh, c->xh_bytes = sizes[0];
    c->attn_part = (float *)part, c->attn_part_floats = sizes[1] / sizeof(float);
    c->ids_dev = (int32_t *)ids, c->ids_pinned = (int32_t *)ids_pin;
    c->bp_dev = (int32_t *)bp, c->bp_pin = (int32_t *)bp_pin, c->bp_host = bp_host;
    memset(c->bp_n, 0, sizeof c->bp_n);
    c->max_tok = max_tok;
    c->xh_src = NULL;
    return LL_OK;
}

ll_status cu_reserve(cu_impl *c, int max_tok, int max_ctx, ll_error *err) {
    if (!c->wmem) return ll_err_set(err, LL_ERR_ARG, "cuda reserve before prepare");
    if (max_ctx > c->max_ctx) c->max_ctx = max_ctx;
    if (max_tok <= c->max_tok) return LL_OK;
    return alloc_batch(c, max_tok, err);
}

ll_status cu_prepare(cu_impl *c, const ll_weight *const *ws, int n_ws, int max_tok, int max_ctx, ll_error *err) {
    cu_release(c);
    LL_ASSERT(max_tok >= 1 && max_ctx >= 1);
    ll_status st = build_table(ws, n_ws, &c->w, &c->n_w, false, err);
    if (st != LL_OK) return st;
    const cu_sizes z = sizes_of(c->w, c->n_w);
    c->max_tok = 0; // alloc_batch sets it
    c->max_ctx = max_ctx;
    c->max_ne0 = z.max_ne0;
    c->deq_bytes = z.deq;
    const size_t scratch = fixed_bytes(&z) + batch_bytes(z.max_ne0, max_tok);
    size_t fr = 0, tot = 0;
    CU_TRY(cudaMemGetInfo(&fr, &tot));
    if (z.wbytes + scratch > fr)
        return ll_err_set(err, LL_ERR_NOMEM, "the GPU has %.2f GiB free (of %.2f), but the weights need %.2f GiB "
                          "and the scratch for batches of %d tokens %.2f GiB: use a smaller quantization, a smaller "
                          "batch (-b) or --device cpu", fr / 1073741824.0, tot / 1073741824.0,
                          z.wbytes / 1073741824.0, max_tok, scratch / 1073741824.0);
    CU_TRY(cudaMalloc(&c->wmem, z.wbytes ? z.wbytes : CU_ALIGN));
    CU_TRY(cudaMalloc(&c->deq, c->deq_bytes));
    const size_t xb = x8_bytes(z.max_ne0), xn = x8_n(z.max_ne0);
    CU_TRY(cudaMalloc((void **)&c->x8_mem, 2 * xb));
    CU_TRY(cudaMalloc((void **)&c->norm_part, xn / 32 * sizeof(float)));
    cu_x8 *both[2] = {&c->x8, &c->x8b};
    for (int i = 0; i < 2; i++) {
        both[i]->q = (int8_t *)c->x8_mem + i * xb;
        both[i]->d = (float *)((uint8_t *)both[i]->q + ll_align_up(xn, CU_ALIGN));
        both[i]->s = (float *)((uint8_t *)both[i]->d + ll_align_up(xn / 32 * 4, CU_ALIGN));
        both[i]->ne0 = (int64_t)z.max_ne0;
    }
    if ((st = alloc_batch(c, max_tok, err)) != LL_OK) return st;
    size_t off = 0;
    for (int i = 0; i < c->n_w; i++) {
        cu_weight *e = &c->w[i];
        e->v.q = (const uint8_t *)c->wmem + off;
        if (cu_repacked(e->v.type)) {
            size_t nb = n_blocks(&e->v);
            e->v.d = (const uint16_t *)(e->v.q + ll_align_up(nb * cu_repack_payload(e->v.type), CU_ALIGN));
        }
        off += e->bytes;
    }
    return upload_all(c, err);
}
