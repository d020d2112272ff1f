// calib.c — the engine's decode speed on this machine, measured without the model's data: one-token ll_matmul
// calls over synthetic weights of the model's matrix shapes and types, repeated over enough copies that they
// stream from memory as a real model's weights do. fit predicts generation t/s from these timings.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/matmul.h"
#include "core/pool.h"
#include "lab/lab.h"

// Bytes of weights one timing pass reads: the model's own decode bytes per token, at most 4x the 32 MiB
// last-level cache of the machines this was written on. A model larger than that streams its weights from
// memory every token, and so does the calibration; a model that fits in the caches is timed from the caches.
#define CALIB_BYTES ((size_t)128 << 20)
#define CALIB_ROUNDS 3   // every shape is timed in each round: a burst of load elsewhere touches all shapes alike
#define CALIB_MIN_S 0.04 // timed seconds per shape and round (after one warm-up pass)
#define CALIB_MAX_SAMPLES 256

typedef struct samples {
    double t[CALIB_MAX_SAMPLES]; // seconds per call
    int n;
} samples;

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

// One shape: `copies` matrices of n_out rows laid out every `stride` bytes, each row the same quantized random
// row (speed does not depend on the values). Appends seconds per call to out; false when the type cannot be
// computed.
static bool time_mat(ll_pool *pool, uint8_t *buf, size_t cap, const ll_lab_mat *m, float *x, float *y, void *wsp,
                     samples *out) {
    const ll_type_traits *tt = ll_type_get(m->type);
    uint64_t rb;
    if (!tt || !tt->from_float_ref || !ll_matmul_supports(m->type) || !ll_type_row_size(m->type, (uint64_t)m->n_in, &rb))
        return false;
    if (rb > cap) return false;
    int rows = m->n_out;
    if ((uint64_t)rows * rb > cap) rows = (int)(cap / rb); // a slice of a huge matrix, scaled below
    if (rows < 1) rows = 1;
    // The layout the CPU backend runs this type in (ll_matmul_repack_type: 16-row groups where the build has them),
    // on a whole number of groups.
    uint32_t rt = rows >= 16 ? ll_matmul_repack_type(m->type, m->n_in, rows / 16 * 16) : 0;
    if (rt) { // whole groups, within the buffer (Q4_K's groups are 2.8% larger than its rows)
        const size_t gb = ll_matmul_repack_bytes(rt, m->n_in, 16);
        int groups = rows / 16;
        if ((size_t)groups * gb > cap) groups = (int)(cap / gb);
        if (groups < 1) rt = 0;
        else rows = 16 * groups;
    }
    size_t bytes = rt ? ll_matmul_repack_bytes(rt, m->n_in, rows) : (size_t)rows * rb, stride = (bytes + 63) / 64 * 64;
    int copies = (int)(cap / stride);
    if (copies < 1) copies = 1;
    uint64_t s = 0x9e3779b97f4a7c15ull;
    for (int i = 0; i < m->n_in; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        x[i] = (float)((double)(s >> 40) / (double)(1 << 24) - 0.5);
    }
    if (rt) { // 16 copies of one random row, repacked into the first group, then that group everywhere
        uint8_t *g16 = malloc((size_t)16 * rb);
        if (!g16) return false;
        tt->from_float_ref(x, g16, m->n_in);
        for (int r = 1; r < 16; r++) memcpy(g16 + (size_t)r * rb, g16, rb);
        const size_t gb = ll_matmul_repack_bytes(rt, m->n_in, 16);
        ll_matmul_repack(rt, g16, buf, m->n_in, 16);
        free(g16);
        for (int c = 0; c < copies; c++)
            for (int g = 0; g < rows / 16; g++)
                if (c || g) memcpy(buf + (size_t)c * stride + (size_t)g * gb, buf, gb);
    } else {
        tt->from_float_ref(x, buf, m->n_in); // the first row, from random values
        for (int c = 0; c < copies; c++)
            for (int r = 0; r < rows; r++)
                if (c || r) memcpy(buf + (size_t)c * stride + (size_t)r * rb, buf, rb);
    }
    double spent = 0;
    for (int pass = 0; out->n < CALIB_MAX_SAMPLES && (pass < 3 || spent < CALIB_MIN_S); pass++) {
        double t0 = ll_time_s();
        for (int c = 0; c < copies; c++) ll_matmul(pool, rt ? rt : m->type, buf + (size_t)c * stride, x, y, m->n_in, rows, 1, wsp);
        double dt = ll_time_s() - t0;
        if (pass == 0) continue; // warm-up: page faults, first touch
        out->t[out->n++] = dt / copies * (double)m->n_out / (double)rows;
        spent += dt;
    }
    return true;
}

// A new pool's worker starts on the caller's core; on a busy machine the scheduler can take a second or more to
// move it (measured here: ~650 us per job for the first ~2000 jobs, then 0.4 us), and the engine's own pool
// has long moved by the time it decodes. Run empty jobs until 100 of them take < 20 us each (at most 3 s).
static void noop(void *ctx, int ith, int nth) { (void)ctx, (void)ith, (void)nth; }

static void pool_settle(ll_pool *p) {
    double t_end = ll_time_s() + 3.0;
    while (ll_time_s() < t_end) {
        double t0 = ll_time_s();
        for (int i = 0; i < 100; i++) ll_pool_run(p, noop, NULL);
        if ((ll_time_s() - t0) / 100 < 20e-6) break;
    }
}

ll_status ll_lab_calib_decode(const ll_lab_mat *mats, int n_mats, int n_threads, ll_lab_calib *c, ll_error *err) {
    memset(c, 0, sizeof *c);
    if (n_threads <= 0) n_threads = ll_sys_default_threads();
    if (n_threads < 1) n_threads = 1;
    c->n_threads = n_threads;
    int max_in = 1, max_out = 1;
    size_t ws = 0;
    double total = 0; // decode bytes per token
    for (int i = 0; i < n_mats; i++) {
        uint64_t rb = 0;
        ll_type_row_size(mats[i].type, (uint64_t)mats[i].n_in, &rb);
        total += (double)rb * mats[i].n_out * mats[i].count;
        max_in = mats[i].n_in > max_in ? mats[i].n_in : max_in;
        max_out = mats[i].n_out > max_out ? mats[i].n_out : max_out;
        if (ll_matmul_supports(mats[i].type)) {
            size_t w = ll_matmul_wsize(mats[i].type, mats[i].n_in, 1, n_threads);
            ws = w > ws ? w : ws;
            const uint32_t rt = ll_matmul_repack_type(mats[i].type, mats[i].n_in, 16);
            w = rt ? ll_matmul_wsize(rt, mats[i].n_in, 1, n_threads) : 0; // time_mat may run the repacked layout
            ws = w > ws ? w : ws;
        }
    }
    double t0 = ll_time_s();
    ll_pool *pool = ll_pool_init(n_threads, err);
    if (!pool) return err->status;
    pool_settle(pool);
    size_t cap = total < (double)CALIB_BYTES ? (size_t)total : CALIB_BYTES;
    if (cap < 4096) cap = 4096;
    uint8_t *buf = ll_aligned_alloc(cap + 4096, 64, err);
    float *x = buf ? ll_aligned_alloc((size_t)max_in * sizeof(float), 64, err) : NULL;
    float *y = x ? ll_aligned_alloc((size_t)max_out * sizeof(float), 64, err) : NULL;
    void *wsp = y && ws ? ll_aligned_alloc(ws, 64, err) : NULL;
    samples *smp = calloc(LL_LAB_MAX_MATS, sizeof *smp);
    ll_status st = !buf || !x || !y || (ws && !wsp) || !smp ? ll_err_set(err, LL_ERR_NOMEM, "out of memory calibrating") : LL_OK;
    if (n_mats > LL_LAB_MAX_MATS) n_mats = LL_LAB_MAX_MATS;
    for (int r = 0; st == LL_OK && r < CALIB_ROUNDS; r++)
        for (int i = 0; i < n_mats; i++) time_mat(pool, buf, cap, &mats[i], x, y, wsp, &smp[i]);
    for (int i = 0; st == LL_OK && i < n_mats; i++) { // the median of every round's samples
        qsort(smp[i].t, (size_t)smp[i].n, sizeof smp[i].t[0], cmp_d);
        c->s_per_call[i] = smp[i].n ? smp[i].t[smp[i].n / 2] : NAN;
        uint64_t rb = 0;
        ll_type_row_size(mats[i].type, (uint64_t)mats[i].n_in, &rb);
        c->gbps[i] = (double)rb * mats[i].n_out / c->s_per_call[i] / 1e9;
        c->n = i + 1;
    }
    free(smp);
    ll_aligned_free(wsp), ll_aligned_free(y), ll_aligned_free(x), ll_aligned_free(buf);
    ll_pool_free(pool);
    c->seconds = ll_time_s() - t0;
    char b[32];
    ll_fmt_bytes(b, sizeof b, (double)cap);
    snprintf(c->src, sizeof c->src, "calibration: one-token ll_matmul on synthetic weights of each shape and type, "
             "%d threads, %s of copies per pass (%s), median of the passes of %d rounds over all shapes; %.1f s",
             n_threads, b,
             cap < CALIB_BYTES ? "the model's own bytes per token" : "streamed from memory", CALIB_ROUNDS, c->seconds);
    return st;
}

double ll_lab_calib_token_s(const ll_lab_mat *mats, int n_mats, const ll_lab_calib *c) {
    if (!c || c->n < n_mats || n_mats < 1) return NAN;
    double t = 0;
    for (int i = 0; i < n_mats; i++) t += mats[i].count * c->s_per_call[i];
    return t;
}
