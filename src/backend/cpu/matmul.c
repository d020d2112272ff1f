// matmul.c — y = W x on the CPU: the dispatch table (weight type -> kernels of the best ISA compiled in), the
// threaded driver (dot form for decode, packed panels for prefill), the scalar kernels and the reference.
#include "backend/cpu/matmul_impl.h"
#include "backend/cpu/matmul_q.h"

#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include "core/half.h"

// ---- scalar kernels: any type with a to_float in the traits table ------------------------------------------
// Portable builds run these; SIMD builds use them for types their ISA table lacks.

#define SC_ROWS 4 // dot: rows converted to f32 at a time, each reused by every token

static size_t sc_dot_tsp(int n_in) { return (size_t)SC_ROWS * (size_t)n_in * sizeof(float); }

// fp16 -> f32 through a table of all 65536 values (256 KB, filled once from half.h's exact conversion): a
// load per element instead of half.h's branches, 3-5x faster for the scalar decode.
static float sc_f16_table[65536];
static pthread_once_t sc_f16_once = PTHREAD_ONCE_INIT;
static void sc_f16_fill(void) {
    for (uint32_t h = 0; h < 65536; h++) sc_f16_table[h] = ll_fp16_to_fp32((uint16_t)h);
}

static void sc_f16_to_f32(const uint8_t *src, float *dst, int n) {
    const uint16_t *s = (const uint16_t *)src; // rows are 2-byte aligned (ll_matmul's contract)
    for (int i = 0; i < n; i++) dst[i] = sc_f16_table[s[i]];
}

// Row o, elements [k0, k0 + n) of W as f32 (k0, n multiples of the block size).
static void sc_row_to_f32(const ll_mm_job *j, int o, int k0, int n, float *dst) {
    const ll_type_traits *tt = ll_type_get(j->wtype);
    const uint8_t *src = j->W + (size_t)o * j->row_bytes + (size_t)(k0 / tt->blck) * tt->size;
    if (j->wtype == LL_TYPE_F16) sc_f16_to_f32(src, dst, n); // table filled by ll_matmul
    else tt->to_float(src, dst, n);
}

// Four partial sums per row: independent chains the compiler can overlap (and pair into SIMD lanes).
static float sc_dot_f32(const float *a, const float *b, int n) {
    float s[4] = {0, 0, 0, 0};
    int i = 0;
    for (; i + 4 <= n; i += 4)
        for (int u = 0; u < 4; u++) s[u] += a[i + u] * b[i + u];
    for (; i < n; i++) s[0] += a[i] * b[i];
    return (s[0] + s[1]) + (s[2] + s[3]);
}

static void sc_dot(const ll_mm_job *j, int r0, int r1, void *tsp) {
    float *wf = tsp; // (SC_ROWS, n_in)
    const float *x = j->xa;
    size_t n_in = (size_t)j->n_in;
    for (int o = r0; o < r1; o += SC_ROWS) {
        int nr = r1 - o < SC_ROWS ? r1 - o : SC_ROWS;
        for (int r = 0; r < nr; r++) sc_row_to_f32(j, o + r, 0, j->n_in, wf + r * n_in);
        for (int t = 0; t < j->n_tokens; t++)
            for (int r = 0; r < nr; r++)
                j->y[(size_t)t * (size_t)j->n_out + (size_t)(o + r)] = sc_dot_f32(wf + r * n_in, x + t * n_in, j->n_in);
    }
}

#define SC_MR 8
#define SC_NR 4

static void sc_pack(const ll_mm_job *j, int r0, int nr, int k0, int kc, float *dst, float *tmp) {
    for (int r = 0; r < SC_MR; r++) {
        if (r < nr) sc_row_to_f32(j, r0 + r, k0, kc, tmp);
        for (int k = 0; k < kc; k++) dst[k * SC_MR + r] = r < nr ? tmp[k] : 0.0f;
    }
}

// 8 rows x up to 4 tokens of accumulators; the r loop is the one a vectorizer can take.
static void sc_kern(const float *wp, const float *xp, int kc, int nt, float *y, size_t ldy, int nrows,
                    bool accumulate) {
    float c[SC_NR][SC_MR] = {{0}};
    for (int k = 0; k < kc; k++) {
        const float *w = wp + k * SC_MR;
        for (int t = 0; t < nt; t++) {
            float xv = xp[k * SC_NR + t];
            for (int r = 0; r < SC_MR; r++) c[t][r] += w[r] * xv;
        }
    }
    for (int t = 0; t < nt; t++)
        for (int r = 0; r < nrows; r++) y[t * ldy + r] = accumulate ? y[t * ldy + r] + c[t][r] : c[t][r];
}

#define SC_ROW(type)                                                                                           \
    {type, "scalar", 1, sc_dot, sc_dot_tsp, NULL, NULL, sc_pack, sc_kern, SC_MR, SC_NR}
static const ll_mm_ops k_scalar_ops[] = {SC_ROW(LL_TYPE_F32), SC_ROW(LL_TYPE_F16), SC_ROW(LL_TYPE_BF16)};

// The best kernels for this type in this build, NULL when it cannot be computed.
static const ll_mm_ops *mm_ops(uint32_t wtype) {
    const ll_mm_ops *o = ll_mm_find_x86(wtype);
    if (!o) o = ll_mm_find_neon(wtype);
    if (!o) o = ll_mmq_find_x86(wtype);
    if (!o) o = ll_mmq_find_neon(wtype);
    if (!o) o = ll_mmq_find_scalar(wtype);
    for (size_t i = 0; !o && i < sizeof k_scalar_ops / sizeof k_scalar_ops[0]; i++)
        if (k_scalar_ops[i].wtype == wtype) o = &k_scalar_ops[i];
    return o;
}

// ---- packed activations -------------------------------------------------------------------------------------

void ll_mm_pack_x(const float *x, int n_in, int nt, int nr, float *xp) {
    for (int t = 0; t < nr; t++) {
        if (t < nt)
            for (int k = 0; k < n_in; k++) xp[(size_t)k * (size_t)nr + (size_t)t] = x[(size_t)t * (size_t)n_in + (size_t)k];
        else
            for (int k = 0; k < n_in; k++) xp[(size_t)k * (size_t)nr + (size_t)t] = 0.0f;
    }
}

// ---- workspace ----------------------------------------------------------------------------------------------
// [shared: packed activations of one token tile (prefill), or every token's converted x (dot form)]
// [per thread: dot scratch, or a weight panel + LL_MM_KC floats]. Every region starts 64-byte aligned.

typedef struct mm_layout {
    size_t shared, per_thread;
} mm_layout;

static size_t al64(size_t n) { return ll_align_up(n, 64); }

static mm_layout mm_layout_of(const ll_mm_ops *o, int n_in, int n_tokens, bool gemm) {
    mm_layout l = {0, 0};
    if (gemm) {
        int tt = n_tokens < LL_MM_TT ? n_tokens : LL_MM_TT;
        size_t blocks = (size_t)((tt + o->nr - 1) / o->nr);
        l.shared = al64(blocks * (size_t)o->nr * (size_t)n_in * sizeof(float));
        l.per_thread = al64((size_t)o->mr * LL_MM_KC * sizeof(float)) + al64(LL_MM_KC * sizeof(float));
    } else {
        l.per_thread = al64(o->dot_tsp ? o->dot_tsp(n_in) : 0);
        if (o->xa_row) l.shared = (size_t)n_tokens * al64(o->xa_row(n_in));
    }
    return l;
}

static size_t mm_layout_bytes(mm_layout l, int n_threads) { return l.shared + l.per_thread * (size_t)n_threads; }

size_t ll_matmul_wsize(uint32_t wtype, int n_in, int n_tokens, int n_threads) {
    const ll_mm_ops *o = mm_ops(wtype);
    if (!o || n_in <= 0 || n_tokens <= 0) return 0;
    if (n_threads < 1) n_threads = 1;
    // Enough for every n <= n_tokens: the dot form at up to dot_max_tokens, the panels above.
    int nd = n_tokens < o->dot_max_tokens ? n_tokens : o->dot_max_tokens;
    size_t s = mm_layout_bytes(mm_layout_of(o, n_in, nd, false), n_threads);
    if (n_tokens > o->dot_max_tokens) {
        size_t g = mm_layout_bytes(mm_layout_of(o, n_in, n_tokens, true), n_threads);
        if (g > s) s = g;
    }
    return s;
}

// ---- threaded driver ----------------------------------------------------------------------------------------

typedef struct mm_ctx {
    const ll_mm_ops *ops;
    ll_mm_job job;
    uint8_t *tsp;        // per-thread regions, tsp_bytes each
    size_t tsp_bytes;
    float *xp;           // prefill: packed activations of tokens [t0, t0 + tt)
    int t0, tt;
    int chunk, n_chunks; // output rows handed out `chunk` at a time, first come first served
    _Atomic int next;
    // Dot form (mm_dot_run): matrix m of n_jobs (1, or several on one x from ll_matmul_multi) has chunks of
    // chunks[m] rows numbered from first_chunk[m]. chunk / n_chunks above: the panel form's.
    int n_jobs;
    ll_mm_job jobs[LL_MM_MULTI];
    int chunks[LL_MM_MULTI], first_chunk[LL_MM_MULTI + 1];
} mm_ctx;

// Converted activations (e.g. Q8 blocks), once per call: tokens split over the threads.
static void mm_conv_thread(void *vctx, int ith, int nth) {
    mm_ctx *c = vctx;
    const ll_mm_job *j = &c->job;
    int64_t lo, hi;
    ll_split_range(j->n_tokens, ith, nth, 1, &lo, &hi);
    for (int64_t t = lo; t < hi; t++)
        c->ops->xa_conv(j->x + (size_t)t * (size_t)j->n_in, (uint8_t *)c->xp + (size_t)t * j->xa_stride, j->n_in);
}

static void mm_dot_thread(void *vctx, int ith, int nth) {
    (void)nth;
    mm_ctx *c = vctx;
    const ll_mm_ops *o = c->ops;
    uint8_t *tsp = c->tsp + (size_t)ith * c->tsp_bytes;
    for (;;) {
        int ch = atomic_fetch_add_explicit(&c->next, 1, memory_order_relaxed);
        if (ch >= c->first_chunk[c->n_jobs]) break;
        int m = 0;
        while (ch >= c->first_chunk[m + 1]) m++;
        ll_mm_job j = c->jobs[m];
        int r0 = (ch - c->first_chunk[m]) * c->chunks[m], r1 = r0 + c->chunks[m] < j.n_out ? r0 + c->chunks[m] : j.n_out;
        o->dot(&j, r0, r1, tsp);
    }
}

// Rows in chunks (multiples of 16), first come first served. Decode (< 4 tokens, memory-bound): 2 per thread:
// each chunk is one sequential stream the hardware prefetcher has to pick up again, so few long ones read faster
// (SmolLM-135M decode on the 2-core VM: Q8_0 146 -> 208 t/s, Q4_0 183 -> 262 against 16 per thread), and the
// second still lets a thread slowed by another process hand over part of its rows. More tokens (compute-bound):
// 16 per thread, for that balance.
static int mm_dot_chunk(int n_out, int n_tokens, int nth) {
    int cpt = n_tokens < 4 ? 2 : 16, q = 16, per = (int)(((int64_t)n_out + cpt * nth - 1) / (cpt * nth));
    return (per + q - 1) / q * q;
}

static void mm_packx_thread(void *vctx, int ith, int nth) {
    mm_ctx *c = vctx;
    int nr = c->ops->nr, n_in = c->job.n_in, nb = (c->tt + nr - 1) / nr;
    int64_t lo, hi;
    ll_split_range(nb, ith, nth, 1, &lo, &hi);
    for (int64_t b = lo; b < hi; b++) {
        int nt = c->tt - (int)b * nr < nr ? c->tt - (int)b * nr : nr;
        const float *x = c->job.x + (size_t)(c->t0 + b * nr) * (size_t)n_in;
        ll_mm_pack_x(x, n_in, nt, nr, c->xp + (size_t)b * (size_t)nr * (size_t)n_in);
    }
}

// One panel (mr rows) per chunk: for each K block, convert the panel once, then run every token block of
// the tile past it. (Prefetching the next panel's slice during the kernels measured slower: the pack
// prefetches along its own rows instead.)
static void mm_gemm_thread(void *vctx, int ith, int nth) {
    (void)nth;
    mm_ctx *c = vctx;
    const ll_mm_ops *o = c->ops;
    const ll_mm_job *j = &c->job;
    float *wp = (float *)(c->tsp + (size_t)ith * c->tsp_bytes);
    float *tmp = wp + al64((size_t)o->mr * LL_MM_KC * sizeof(float)) / sizeof(float);
    int nb = (c->tt + o->nr - 1) / o->nr;
    size_t ldy = (size_t)j->n_out;
    for (;;) {
        int ch = atomic_fetch_add_explicit(&c->next, 1, memory_order_relaxed);
        if (ch >= c->n_chunks) break;
        int r0 = ch * o->mr, nrows = j->n_out - r0 < o->mr ? j->n_out - r0 : o->mr;
        for (int k0 = 0; k0 < j->n_in; k0 += LL_MM_KC) {
            int kc = j->n_in - k0 < LL_MM_KC ? j->n_in - k0 : LL_MM_KC;
            o->pack(j, r0, nrows, k0, kc, wp, tmp);
            for (int b = 0; b < nb; b++) {
                int nt = c->tt - b * o->nr < o->nr ? c->tt - b * o->nr : o->nr;
                const float *xp = c->xp + ((size_t)b * (size_t)j->n_in + (size_t)k0) * (size_t)o->nr;
                float *y = j->y + (size_t)(c->t0 + b * o->nr) * ldy + (size_t)r0;
                o->kern(wp, xp, kc, nt, y, ldy, nrows, k0 > 0);
            }
        }
    }
}

// The dot form of ll_matmul / ll_matmul_multi: the activations converted once (when the type has a converter),
// then the rows of the n matrices handed out in chunks from one pool run.
static void mm_dot_run(ll_pool *pool, const ll_mm_ops *o, int n, const void *const *W, const float *x, float *const *y,
                       int n_in, const int *n_out, int n_tokens, size_t row_bytes, void *wsp) {
    const ll_type_traits *tt = ll_type_get(ll_mm_base_type(o->wtype));
    int nth = ll_pool_size(pool);
    mm_layout l = mm_layout_of(o, n_in, n_tokens, false);
    LL_ASSERT(wsp != NULL || mm_layout_bytes(l, nth) == 0);
    mm_ctx c = {
        .ops = o,
        .job = {o->wtype, W[0], row_bytes, x, x, (size_t)n_in * sizeof(float), y[0], n_in, n_out[0], n_tokens},
        .tsp = (uint8_t *)wsp + l.shared,
        .tsp_bytes = l.per_thread,
        .xp = wsp,
        .n_jobs = n,
    };
    if (o->xa_conv) {
        c.job.xa = wsp;
        c.job.xa_stride = al64(o->xa_row(n_in));
        // A few tokens: convert here, saving a pool round trip (a barrier that waits for a descheduled
        // worker on a busy machine); more: split over the threads.
        if (n_tokens < 4) mm_conv_thread(&c, 0, 1);
        else ll_pool_run(pool, mm_conv_thread, &c);
    }
    for (int m = 0; m < n; m++) {
        LL_ASSERT(tt->blck > 1 || (uintptr_t)W[m] % tt->size == 0); // plain types: element-aligned rows
        c.jobs[m] = c.job;
        c.jobs[m].W = W[m];
        c.jobs[m].y = y[m];
        c.jobs[m].n_out = n_out[m];
        c.chunks[m] = mm_dot_chunk(n_out[m], n_tokens, nth);
        c.first_chunk[m + 1] = c.first_chunk[m] + (n_out[m] + c.chunks[m] - 1) / c.chunks[m];
    }
    atomic_store(&c.next, 0);
    ll_pool_run(pool, mm_dot_thread, &c);
}

void ll_matmul(ll_pool *pool, uint32_t wtype, const void *W, const float *x, float *y, int n_in, int n_out,
               int n_tokens, void *wsp) {
    const ll_mm_ops *o = mm_ops(wtype);
    LL_ASSERT(o != NULL && n_in >= 0 && n_out >= 0 && n_tokens >= 0);
    if (n_out == 0 || n_tokens == 0) return;
    if (n_in == 0) {
        memset(y, 0, (size_t)n_out * (size_t)n_tokens * sizeof(float));
        return;
    }
    const ll_type_traits *tt = ll_type_get(ll_mm_base_type(wtype));
    uint64_t row_bytes; // a repacked layout: its GGUF type's, per row of its groups
    LL_ASSERT(ll_type_row_size(ll_mm_base_type(wtype), (uint64_t)n_in, &row_bytes));
    LL_ASSERT(tt->blck > 1 || (uintptr_t)W % tt->size == 0); // plain types: element-aligned rows
    LL_ASSERT(ll_mm_base_type(wtype) == wtype || n_out % LL_MM_X16_ROWS == 0);
    if (o->dot == sc_dot && wtype == LL_TYPE_F16) pthread_once(&sc_f16_once, sc_f16_fill);
    if (n_tokens <= o->dot_max_tokens) {
        mm_dot_run(pool, o, 1, &W, x, &y, n_in, &n_out, n_tokens, (size_t)row_bytes, wsp);
        return;
    }
    int nth = ll_pool_size(pool);
    mm_layout l = mm_layout_of(o, n_in, n_tokens, true);
    LL_ASSERT(wsp != NULL || mm_layout_bytes(l, nth) == 0);
    mm_ctx c = {
        .ops = o,
        .job = {wtype, W, (size_t)row_bytes, x, x, (size_t)n_in * sizeof(float), y, n_in, n_out, n_tokens},
        .tsp = (uint8_t *)wsp + l.shared,
        .tsp_bytes = l.per_thread,
        .xp = wsp,
    };
    c.chunk = o->mr;
    c.n_chunks = (n_out + o->mr - 1) / o->mr;
    for (c.t0 = 0; c.t0 < n_tokens; c.t0 += LL_MM_TT) {
        c.tt = n_tokens - c.t0 < LL_MM_TT ? n_tokens - c.t0 : LL_MM_TT;
        ll_pool_run(pool, mm_packx_thread, &c);
        atomic_store(&c.next, 0);
        ll_pool_run(pool, mm_gemm_thread, &c);
    }
}

void ll_matmul_multi(ll_pool *pool, uint32_t wtype, int n, const void *const *W, const float *x, float *const *y,
                     int n_in, const int *n_out, int n_tokens, void *wsp) {
    const ll_mm_ops *o = mm_ops(wtype);
    LL_ASSERT(o != NULL && n >= 1 && n <= LL_MM_MULTI && n_in >= 0 && n_tokens >= 0);
    bool some_empty = n_in == 0;
    for (int m = 0; m < n; m++) some_empty |= n_out[m] == 0;
    if (n == 1 || n_tokens > o->dot_max_tokens || n_tokens == 0 || some_empty) { // the panels: one by one
        for (int m = 0; m < n; m++) ll_matmul(pool, wtype, W[m], x, y[m], n_in, n_out[m], n_tokens, wsp);
        return;
    }
    uint64_t row_bytes;
    LL_ASSERT(ll_type_row_size(ll_mm_base_type(wtype), (uint64_t)n_in, &row_bytes));
    for (int m = 0; m < n; m++) LL_ASSERT(ll_mm_base_type(wtype) == wtype || n_out[m] % LL_MM_X16_ROWS == 0);
    if (o->dot == sc_dot && wtype == LL_TYPE_F16) pthread_once(&sc_f16_once, sc_f16_fill);
    mm_dot_run(pool, o, n, W, x, y, n_in, n_out, n_tokens, (size_t)row_bytes, wsp);
}

uint32_t ll_matmul_repack_type(uint32_t wtype, int n_in, int n_out) {
    if (n_in <= 0 || n_out <= 0 || n_out % LL_MM_X16_ROWS) return 0;
    const uint32_t to = wtype == LL_TYPE_Q4_0 ? LL_MM_Q4_0_X16 : wtype == LL_TYPE_Q5_0 ? LL_MM_Q5_0_X16
                      : wtype == LL_TYPE_Q8_0 ? LL_MM_Q8_0_X16 : wtype == LL_TYPE_Q4_K ? LL_MM_Q4_K_X16 : 0;
    if (!to || n_in % (wtype == LL_TYPE_Q4_K ? 256 : 32) || !mm_ops(to)) return 0;
    return to;
}

size_t ll_matmul_repack_bytes(uint32_t to, int n_in, int n_out) {
    LL_ASSERT(n_out % LL_MM_X16_ROWS == 0 && ll_mm_x16_block_bytes(to) > 0);
    return (size_t)n_out / 16 * (size_t)(n_in / (to == LL_MM_Q4_K_X16 ? 256 : 32)) * ll_mm_x16_block_bytes(to);
}

void ll_matmul_repack(uint32_t to, const void *W, void *dst, int n_in, int n_out) {
    LL_ASSERT(n_out % LL_MM_X16_ROWS == 0);
    const uint8_t *src = W;
    uint8_t *d = dst;
    if (to != LL_MM_Q4_K_X16) { // the legacy types: blocks of 32, fp16 d first
        LL_ASSERT(n_in % 32 == 0);
        const size_t nb = (size_t)n_in / 32, bs = ll_mm_x16_block_bytes(to);
        const size_t gbs = to == LL_MM_Q4_0_X16 ? 18 : to == LL_MM_Q5_0_X16 ? 22 : 34; // GGUF block bytes
        for (size_t g = 0; g < (size_t)n_out / 16; g++)
            for (size_t b = 0; b < nb; b++) {
                uint8_t *o = d + (g * nb + b) * bs;
                if (to == LL_MM_Q5_0_X16) memset(o + 32, 0, 64);
                for (size_t r = 0; r < 16; r++) {
                    const uint8_t *blk = src + ((16 * g + r) * nb + b) * gbs;
                    memcpy(o + 2 * r, blk, 2);
                    if (to == LL_MM_Q8_0_X16) { // codes + 128: unsigned bytes for vpdpbusd
                        for (size_t k = 0; k < 8; k++) {
                            uint32_t w4;
                            memcpy(&w4, blk + 2 + 4 * k, 4);
                            w4 ^= 0x80808080u;
                            memcpy(o + 32 + 64 * k + 4 * r, &w4, 4);
                        }
                        continue;
                    }
                    const size_t qo = to == LL_MM_Q5_0_X16 ? 6 : 2, co = to == LL_MM_Q5_0_X16 ? 96 : 32;
                    for (size_t k = 0; k < 4; k++) memcpy(o + co + 64 * k + 4 * r, blk + qo + 4 * k, 4);
                    if (to == LL_MM_Q5_0_X16) { // mask 2k + h, bit 4r + i = qh bit 16h + 4k + i
                        uint32_t qh;
                        memcpy(&qh, blk + 2, 4);
                        for (size_t k = 0; k < 4; k++)
                            for (size_t h = 0; h < 2; h++)
                                for (size_t i = 0; i < 4; i++)
                                    if (qh >> (16 * h + 4 * k + i) & 1) {
                                        const size_t bit = 4 * r + i;
                                        o[32 + 8 * (2 * k + h) + bit / 8] |= (uint8_t)(1u << (bit % 8));
                                    }
                    }
                }
            }
        return;
    }
    LL_ASSERT(to == LL_MM_Q4_K_X16 && n_in % 256 == 0);
    const size_t nb = (size_t)n_in / 256;
    for (size_t g = 0; g < (size_t)n_out / 16; g++)
        for (size_t b = 0; b < nb; b++) {
            uint8_t *o = d + (g * nb + b) * 2368;
            for (size_t r = 0; r < 16; r++) {
                const ll_block_q4_K *blk = (const ll_block_q4_K *)(src + ((16 * g + r) * nb + b) * 144);
                memcpy(o + 2 * r, &blk->d, 2);
                memcpy(o + 32 + 2 * r, &blk->dmin, 2);
                for (int j = 0; j < 8; j++)
                    ll_quant_k4_scale_min(j, blk->scales, o + 64 + 16 * j + r, o + 192 + 16 * j + r);
                for (size_t run = 0; run < 32; run++) memcpy(o + 320 + 64 * run + 4 * r, blk->qs + 4 * run, 4);
            }
        }
}

bool ll_matmul_supports(uint32_t wtype) { return mm_ops(wtype) != NULL; }

const char *ll_matmul_isa(uint32_t wtype) {
    const ll_mm_ops *o = mm_ops(wtype);
    return o ? o->isa : "none";
}

// ---- reference ------------------------------------------------------------------------------------------

// W[o][i] as a double, for the plain types (scalar half.h conversions; memcpy: any alignment).
static double ref_w(uint32_t wtype, const uint8_t *row, int i) {
    uint16_t h;
    float f;
    switch (wtype) {
    case LL_TYPE_F32: memcpy(&f, row + (size_t)i * 4, 4); return f;
    case LL_TYPE_F16: memcpy(&h, row + (size_t)i * 2, 2); return ll_fp16_to_fp32(h);
    case LL_TYPE_BF16: memcpy(&h, row + (size_t)i * 2, 2); return ll_bf16_to_fp32(h);
    default: LL_ASSERT(!"ref_w: not a plain type");
    }
    return 0;
}

void ll_matmul_ref(uint32_t wtype, const void *W, const float *x, float *y, int n_in, int n_out, int n_tokens) {
    const ll_type_traits *tt = ll_type_get(wtype);
    LL_ASSERT(tt != NULL && tt->to_float != NULL && n_in >= 0 && n_out >= 0 && n_tokens >= 0);
    uint64_t row_bytes;
    LL_ASSERT(ll_type_row_size(wtype, (uint64_t)n_in, &row_bytes));
    bool plain = wtype == LL_TYPE_F32 || wtype == LL_TYPE_F16 || wtype == LL_TYPE_BF16;
    float blk[256]; // one block of a quantized type, dequantized by the traits' reference to_float
    LL_ASSERT(tt->blck <= 256);
    for (int t = 0; t < n_tokens; t++) {
        const float *xt = x + (size_t)t * (size_t)n_in;
        for (int o = 0; o < n_out; o++) {
            const uint8_t *row = (const uint8_t *)W + (size_t)o * row_bytes;
            double s = 0;
            if (plain) {
                for (int i = 0; i < n_in; i++) s += ref_w(wtype, row, i) * (double)xt[i];
            } else {
                for (int b = 0; b < n_in / tt->blck; b++) {
                    tt->to_float(row + (size_t)b * tt->size, blk, tt->blck);
                    for (int i = 0; i < tt->blck; i++) s += (double)blk[i] * (double)xt[b * tt->blck + i];
                }
            }
            y[(size_t)t * (size_t)n_out + (size_t)o] = (float)s;
        }
    }
}
