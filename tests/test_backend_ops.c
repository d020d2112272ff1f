// test_backend_ops.c — the backend conformance suite, part 1: matmul, matmul3, matmul_add, matmul_add_rmsnorm,
// matmul_swiglu on every weight type, and rmsnorm, add_bias, rope, swiglu, add, get_rows, topk, copy, on every
// backend of the registry against src/backend/ref.c (harness and tolerances: backend_ops.h; the KV cache ops and
// attention: test_backend_kv.c). Shapes: small odd ones and real models' (SmolLM 576/1536, 2048/8192, 4096 GQA).
#include "backend_ops.h"

// ---- matmul, matmul3, matmul_add, matmul_add_rmsnorm, matmul_swiglu ------------------------------------------------

typedef struct mm_shape {
    int ne0, ne1, ntok[3];
} mm_shape;

// Small odd shapes (no 16-row groups, a tail of every SIMD width), SmolLM's 576/1536, a 2048/8192 model's FFN.
// Token counts: 1 (decode, matvec paths), below and above CUDA's 8-row int8 batches and the GEMM switch (9), odd.
static const mm_shape k_mm_shapes[] = {
    {67, 13, {1, 5, 0}},       {96, 13, {1, 5, 0}},    {768, 37, {1, 3, 17}}, {576, 1536, {1, 7, 33}},
    {1536, 576, {1, 33, 0}},   {2048, 8192, {1, 16, 0}}, {8192, 2048, {1, 9, 0}},
};

static void one_matmul(tb *t, const ll_weight *w, int n_tok, uint64_t seed) {
    const size_t nx = (size_t)n_tok * w->ne0, ny = (size_t)n_tok * w->ne1;
    float *x = x_make((int)w->ne0, n_tok, seed), *y = h_floats(ny), *ref = h_floats(ny);
    float *dx = d_up(t, x, nx * 4), *dy = d_nan(t, ny);
    t->o->matmul(t->b, w, dx, dy, n_tok);
    d_down(t, y, dy, ny * 4);
    ll_ref_matmul(w, x, ref, n_tok);
    mm_model m = mm_model_make(w, x, n_tok);
    char what[160], label[64];
    snprintf(what, sizeof what, "%s matmul %s %lldx%lld n_tok %d", t->e->name, ll_type_name(w->type),
             (long long)w->ne0, (long long)w->ne1, n_tok);
    snprintf(label, sizeof label, "matmul %s", ll_type_name(w->type));
    mm_check(what, label, &m, y, ref, true, 0, NULL);
    mm_model_free(&m);
    d_free(t, dx), d_free(t, dy);
    free(x), free(y), free(ref);
}

static void t_matmul(tb *t) {
    for (int ti = 0; ti < N_WTYPES; ti++) {
        const uint32_t ty = k_wtypes[ti];
        if (!type_ok(t, LL_OP_MATMUL, ty, "matmul")) continue;
        for (size_t si = 0; si < sizeof k_mm_shapes / sizeof k_mm_shapes[0]; si++) {
            const mm_shape *s = &k_mm_shapes[si];
            if (!w_fits(ty, s->ne0)) continue;
            ll_weight w = w_make(ty, s->ne0, s->ne1, 100 + si);
            const ll_weight *ws[] = {&w};
            tb_prepare(t, ws, 1, 33, 16);
            for (int k = 0; k < 3 && s->ntok[k]; k++) one_matmul(t, &w, s->ntok[k], 7 * si + k);
            w_free(&w);
        }
    }
}

// q, k, v weights of one layer: types (one or three) and sizes.
typedef struct qkv_shape {
    int dim, q_out, kv_out, ntok[2];
} qkv_shape;

static void one_matmul3(tb *t, const uint32_t ty[3], const qkv_shape *s, uint64_t seed) {
    ll_weight w[3] = {w_make(ty[0], s->dim, s->q_out, seed), w_make(ty[1], s->dim, s->kv_out, seed + 1),
                      w_make(ty[2], s->dim, s->kv_out, seed + 2)};
    const ll_weight *ws[3] = {&w[0], &w[1], &w[2]};
    tb_prepare(t, ws, 3, s->ntok[1], 16);
    for (int k = 0; k < 2; k++) {
        const int n_tok = s->ntok[k];
        float *x = x_make(s->dim, n_tok, seed + k), *dx = d_up(t, x, (size_t)n_tok * s->dim * 4);
        float *dy[3], *hy[3], *ref[3];
        for (int i = 0; i < 3; i++) {
            size_t ny = (size_t)n_tok * w[i].ne1;
            dy[i] = d_nan(t, ny), hy[i] = h_floats(ny), ref[i] = h_floats(ny);
        }
        t->o->matmul3(t->b, ws, dx, dy, n_tok);
        ll_ref_matmul3(ws, x, ref, n_tok);
        for (int i = 0; i < 3; i++) {
            d_down(t, hy[i], dy[i], (size_t)n_tok * w[i].ne1 * 4);
            mm_model m = mm_model_make(&w[i], x, n_tok);
            char what[160], label[64];
            snprintf(what, sizeof what, "%s matmul3 %s/%s/%s dim %d n_tok %d: y[%d]", t->e->name, ll_type_name(ty[0]),
                     ll_type_name(ty[1]), ll_type_name(ty[2]), s->dim, n_tok, i);
            snprintf(label, sizeof label, "matmul3 %s", ll_type_name(ty[i]));
            mm_check(what, label, &m, hy[i], ref[i], true, 0, NULL);
            mm_model_free(&m);
            d_free(t, dy[i]), free(hy[i]), free(ref[i]);
        }
        d_free(t, dx), free(x);
    }
    for (int i = 0; i < 3; i++) w_free(&w[i]);
}

static const qkv_shape k_qkv_small = {576, 576, 192, {1, 9}};  // SmolLM: 9 heads, 3 kv heads, hd 64
static const qkv_shape k_qkv_small_k = {768, 768, 256, {1, 9}}; // K-quants (rows of 256): 12 heads, 4 kv heads
static const qkv_shape k_qkv_big = {4096, 4096, 1024, {1, 12}}; // 32 heads, 8 kv heads, hd 128

static void t_matmul3(tb *t) {
    if (!t->o->matmul3)
        TU_SKIP("%s: matmul3 is optional and NULL (the model code calls matmul three times)", t->e->name);
    for (int ti = 0; ti < N_WTYPES; ti++) {
        const uint32_t ty[3] = {k_wtypes[ti], k_wtypes[ti], k_wtypes[ti]};
        if (!type_ok(t, LL_OP_MATMUL, ty[0], "matmul3")) continue;
        one_matmul3(t, ty, w_fits(ty[0], k_qkv_small.dim) ? &k_qkv_small : &k_qkv_small_k, 300 + ti);
        // the 4096 shape for the commonest model types (the matmul test has every type at 2048/8192)
        if (ty[0] == LL_TYPE_F16 || ty[0] == LL_TYPE_Q8_0 || ty[0] == LL_TYPE_Q4_K)
            one_matmul3(t, ty, &k_qkv_big, 320 + ti);
    }
    const uint32_t mixed[3] = {LL_TYPE_Q4_K, LL_TYPE_Q8_0, LL_TYPE_Q6_K}; // a Q4_K_M file's mix: q, k, v of 3 types
    if (t->o->supports(t->b, LL_OP_MATMUL, mixed[0]) && t->o->supports(t->b, LL_OP_MATMUL, mixed[1]) &&
        t->o->supports(t->b, LL_OP_MATMUL, mixed[2]))
        one_matmul3(t, mixed, &k_qkv_big, 340);
}

static void t_matmul_add(tb *t) {
    if (!t->o->matmul_add) TU_SKIP("%s: matmul_add is optional and NULL (matmul, then add)", t->e->name);
    static const mm_shape shapes[] = {{768, 37, {1, 3, 17}}, {1536, 576, {1, 9, 0}}};
    for (int ti = 0; ti < N_WTYPES; ti++) {
        const uint32_t ty = k_wtypes[ti];
        if (!type_ok(t, LL_OP_MATMUL, ty, "matmul_add")) continue;
        for (int si = 0; si < 2; si++) {
            ll_weight w = w_make(ty, shapes[si].ne0, shapes[si].ne1, 400 + si);
            const ll_weight *ws[] = {&w};
            tb_prepare(t, ws, 1, 17, 16);
            for (int k = 0; k < 3 && shapes[si].ntok[k]; k++) {
                const int n_tok = shapes[si].ntok[k];
                const size_t ny = (size_t)n_tok * w.ne1;
                uint64_t s = 410 + k;
                float *x = x_make((int)w.ne0, n_tok, s), *y0 = h_rand(ny, &s, 4.0f);
                float *y = h_floats(ny), *ref = h_floats(ny);
                float *dx = d_up(t, x, (size_t)n_tok * w.ne0 * 4), *dy = d_up(t, y0, ny * 4);
                t->o->matmul_add(t->b, &w, dx, dy, n_tok);
                d_down(t, y, dy, ny * 4);
                memcpy(ref, y0, ny * 4);
                ll_ref_matmul_add(&w, x, ref, n_tok);
                mm_model m = mm_model_make(&w, x, n_tok);
                for (size_t i = 0; i < ny; i++) m.A[i] += fabs(ref[i]) * 1e-6; // the final add's rounding
                char what[160], label[64];
                snprintf(what, sizeof what, "%s matmul_add %s %lldx%lld n_tok %d", t->e->name, ll_type_name(ty),
                         (long long)w.ne0, (long long)w.ne1, n_tok);
                snprintf(label, sizeof label, "matmul_add %s", ll_type_name(ty));
                mm_check(what, label, &m, y, ref, true, 0, NULL);
                mm_model_free(&m);
                d_free(t, dx), d_free(t, dy), free(x), free(y0), free(y), free(ref);
            }
            w_free(&w);
        }
    }
}

static void t_matmul_add_rmsnorm(tb *t) {
    if (!t->o->matmul_add_rmsnorm)
        TU_SKIP("%s: matmul_add_rmsnorm is optional and NULL (matmul_add, then rmsnorm)", t->e->name);
    const int ntoks[3] = {1, 5, 12};
    for (int ti = 0; ti < N_WTYPES; ti++) {
        const uint32_t ty = k_wtypes[ti];
        if (!type_ok(t, LL_OP_MATMUL, ty, "matmul_add_rmsnorm")) continue;
        ll_weight w = w_make(ty, 1536, 576, 500 + ti), g = w_vec(576, 501 + ti, 0.5f, 1.5f);
        const ll_weight *ws[] = {&w, &g};
        tb_prepare(t, ws, 2, 12, 16);
        for (int k = 0; k < 3; k++) {
            const int n_tok = ntoks[k];
            const size_t ny = (size_t)n_tok * 576;
            uint64_t s = 510 + k;
            float *in = x_make(1536, n_tok, s), *x0 = h_rand(ny, &s, 4.0f);
            float *hx = h_floats(ny), *hy = h_floats(ny), *rx = h_floats(ny), *ry = h_floats(ny);
            float *din = d_up(t, in, (size_t)n_tok * 1536 * 4), *dx = d_up(t, x0, ny * 4), *dy = d_nan(t, ny);
            t->o->matmul_add_rmsnorm(t->b, &w, din, dx, &g, dy, n_tok, 1e-5f);
            d_down(t, hy, dy, ny * 4);
            d_down(t, hx, dx, ny * 4);
            memcpy(rx, x0, ny * 4);
            ll_ref_matmul_add_rmsnorm(&w, in, rx, &g, ry, n_tok, 1e-5f);
            mm_model m = mm_model_make(&w, in, n_tok);
            for (size_t i = 0; i < ny; i++) m.A[i] += fabs(rx[i]) * 1e-6;
            char what[160], label[64];
            snprintf(what, sizeof what, "%s matmul_add_rmsnorm %s 1536x576 n_tok %d", t->e->name, ll_type_name(ty),
                     n_tok);
            snprintf(label, sizeof label, "matmul_add_rmsnorm x %s", ll_type_name(ty));
            mm_check(what, label, &m, hx, rx, true, 0, NULL);
            snprintf(label, sizeof label, "matmul_add_rmsnorm y %s", ll_type_name(ty));
            for (int r = 0; r < n_tok; r++) {
                const double ex = row_rel(hx + r * 576, rx + r * 576, 576), tol = 2 * ex + TOL_NORM;
                const double ey = row_rel(hy + r * 576, ry + r * 576, 576);
                note_err(label, ey == ey ? ey : INFINITY, tol);
                if (!(ey <= tol)) fail_msg("%s: y row %d: rel L2 %.3g (allowed %.3g: 2x x's %.3g + %.1g)", what, r, ey,
                                           tol, ex, TOL_NORM);
            }
            mm_model_free(&m);
            d_free(t, din), d_free(t, dx), d_free(t, dy);
            free(in), free(x0), free(hx), free(hy), free(rx), free(ry);
        }
        w_free(&w), w_free(&g);
    }
}

static void one_matmul_swiglu(tb *t, uint32_t ty, int n_in, int n_ff, const int *ntoks, int n_cases, uint64_t seed) {
    ll_weight wg = w_make(ty, n_in, n_ff, seed), wu = w_make(ty, n_in, n_ff, seed + 1);
    const ll_weight *ws[] = {&wg, &wu};
    tb_prepare(t, ws, 2, ntoks[n_cases - 1], 16);
    for (int k = 0; k < n_cases; k++) {
        const int n_tok = ntoks[k];
        const size_t ny = (size_t)n_tok * n_ff;
        float *x = x_make(n_in, n_tok, seed + 10 + k), *g = h_floats(ny), *ref = h_floats(ny);
        float *rg = h_floats(ny), *ru = h_floats(ny);
        float *dx = d_up(t, x, (size_t)n_tok * n_in * 4), *dg = d_nan(t, ny), *du = d_nan(t, ny);
        t->o->matmul_swiglu(t->b, &wg, &wu, dx, dg, du, n_tok);
        d_down(t, g, dg, ny * 4);
        ll_ref_matmul_swiglu(&wg, &wu, x, ref, n_tok);
        ll_ref_matmul(&wg, x, rg, n_tok);
        ll_ref_matmul(&wu, x, ru, n_tok);
        mm_model mg = mm_model_make(&wg, x, n_tok), mu = mm_model_make(&wu, x, n_tok);
        char what[160], label[64];
        snprintf(what, sizeof what, "%s matmul_swiglu %s %dx%d n_tok %d", t->e->name, ll_type_name(ty), n_in, n_ff,
                 n_tok);
        snprintf(label, sizeof label, "matmul_swiglu %s", ll_type_name(ty));
        for (int r = 0; r < n_tok; r++) {
            const double ag = mm_row_allow(&mg, rg, r), au = mm_row_allow(&mu, ru, r);
            const double tol = 1.5 * sqrt(ag * ag + au * au) + TOL_SWIGLU;
            const double e = row_rel(g + (size_t)r * n_ff, ref + (size_t)r * n_ff, (size_t)n_ff);
            note_err(label, e == e ? e : INFINITY, tol);
            if (!(e <= tol)) fail_msg("%s: token %d: rel L2 %.3g (allowed %.3g)", what, r, e, tol);
        }
        mm_model_free(&mg), mm_model_free(&mu);
        d_free(t, dx), d_free(t, dg), d_free(t, du);
        free(x), free(g), free(ref), free(rg), free(ru);
    }
    w_free(&wg), w_free(&wu);
}

static void t_matmul_swiglu(tb *t) {
    if (!t->o->matmul_swiglu) TU_SKIP("%s: matmul_swiglu is optional and NULL (two matmuls and swiglu)", t->e->name);
    const int small[3] = {1, 9, 33}, big[2] = {1, 16};
    for (int ti = 0; ti < N_WTYPES; ti++) {
        const uint32_t ty = k_wtypes[ti];
        if (!type_ok(t, LL_OP_MATMUL, ty, "matmul_swiglu")) continue;
        if (w_fits(ty, 576)) one_matmul_swiglu(t, ty, 576, 1536, small, 3, 600 + 20 * ti);
        else one_matmul_swiglu(t, ty, 768, 1536, small, 3, 600 + 20 * ti);
        if (ty == LL_TYPE_F16 || ty == LL_TYPE_Q4_0 || ty == LL_TYPE_Q4_K)
            one_matmul_swiglu(t, ty, 2048, 8192, big, 2, 610 + 20 * ti);
    }
}

// ---- element-wise ops: rmsnorm, add_bias, swiglu, add, get_rows, copy, topk -----------------------------------------

static void t_rmsnorm(tb *t) {
    static const int ns[] = {7, 576, 2048, 4099};
    for (int ni = 0; ni < 4; ni++) {
        const int n = ns[ni];
        ll_weight g = w_vec(n, 700 + ni, 0.25f, 2.0f);
        const ll_weight *ws[] = {&g};
        tb_prepare(t, ws, 1, 5, 16);
        for (int k = 0; k < 3; k++) {
            const int n_tok = k == 0 ? 1 : 5;
            const bool alias = k == 2; // y == x (in place)
            const size_t nx = (size_t)n_tok * n;
            uint64_t s = 710 + k;
            float *x = h_rand(nx, &s, 1.0f), *y = h_floats(nx), *ref = h_floats(nx);
            for (int r = 0; r < n_tok; r++) // rows of very different scales (1e-3 .. 1e3)
                for (int i = 0; i < n; i++) x[(size_t)r * n + i] *= powf(10.0f, (float)(r % 7 - 3));
            float *dx = d_up(t, x, nx * 4), *dy = alias ? dx : d_nan(t, nx);
            t->o->rmsnorm(t->b, dy, dx, &g, n, n_tok, 1e-6f);
            d_down(t, y, dy, nx * 4);
            ll_ref_rmsnorm(ref, x, &g, n, n_tok, 1e-6f);
            char what[128];
            snprintf(what, sizeof what, "%s rmsnorm n %d n_tok %d%s", t->e->name, n, n_tok, alias ? " in place" : "");
            check_rows(what, "rmsnorm", y, ref, n_tok, (size_t)n, TOL_NORM);
            d_free(t, dx);
            if (!alias) d_free(t, dy);
            free(x), free(y), free(ref);
        }
        w_free(&g);
    }
}

static void t_add_bias(tb *t) {
    static const int ns[] = {7, 576, 1536};
    for (int ni = 0; ni < 3; ni++) {
        const int n = ns[ni], n_tok = 1 + 2 * ni;
        ll_weight bias = w_vec(n, 800 + ni, -1.0f, 1.0f);
        const ll_weight *ws[] = {&bias};
        tb_prepare(t, ws, 1, n_tok, 16);
        uint64_t s = 810 + ni;
        float *x = h_rand((size_t)n * n_tok, &s, 3.0f), *y = h_floats((size_t)n * n_tok);
        float *dx = d_up(t, x, (size_t)n * n_tok * 4);
        t->o->add_bias(t->b, dx, &bias, n, n_tok);
        d_down(t, y, dx, (size_t)n * n_tok * 4);
        ll_ref_add_bias(x, &bias, n, n_tok);
        char what[128];
        snprintf(what, sizeof what, "%s add_bias n %d n_tok %d", t->e->name, n, n_tok);
        check_rows(what, "add_bias", y, x, n_tok, (size_t)n, 0);
        d_free(t, dx), free(x), free(y), w_free(&bias);
    }
}

static void t_swiglu(tb *t) {
    static const int ns[] = {7, 1536, 8192};
    tb_prepare(t, NULL, 0, 4, 16);
    for (int ni = 0; ni < 3; ni++)
        for (int n_tok = 1; n_tok <= 4; n_tok += 3) {
            const int n = ns[ni];
            const size_t m = (size_t)n * n_tok;
            uint64_t s = 900 + ni + n_tok;
            float *g = h_rand(m, &s, 8.0f), *u = h_rand(m, &s, 2.0f), *y = h_floats(m);
            g[0] = -100.0f, g[m - 1] = 90.0f; // e^-g past f32's range: silu = 0 and g
            float *dg = d_up(t, g, m * 4), *du = d_up(t, u, m * 4);
            t->o->swiglu(t->b, dg, du, n, n_tok);
            d_down(t, y, dg, m * 4);
            ll_ref_swiglu(g, u, n, n_tok);
            char what[128];
            snprintf(what, sizeof what, "%s swiglu n %d n_tok %d", t->e->name, n, n_tok);
            check_rows(what, "swiglu", y, g, n_tok, (size_t)n, TOL_SWIGLU);
            d_free(t, dg), d_free(t, du), free(g), free(u), free(y);
        }
}

static void t_add(tb *t) {
    static const size_t ns[] = {1, 7, 576 * 33, (size_t)1 << 20};
    tb_prepare(t, NULL, 0, 1, 16);
    for (int ni = 0; ni < 4; ni++) {
        const size_t n = ns[ni];
        uint64_t s = 1000 + ni;
        float *y = h_rand(n, &s, 3.0f), *x = h_rand(n, &s, 1.0f), *got = h_floats(n);
        float *dy = d_up(t, y, n * 4), *dx = d_up(t, x, n * 4);
        t->o->add(t->b, dy, dx, n);
        d_down(t, got, dy, n * 4);
        ll_ref_add(y, x, n);
        char what[128];
        snprintf(what, sizeof what, "%s add n %zu", t->e->name, n);
        check_rows(what, "add", got, y, 1, n, 0);
        d_free(t, dy), d_free(t, dx), free(y), free(x), free(got);
    }
}

static void t_get_rows(tb *t) {
    for (int ti = 0; ti < N_WTYPES; ti++) {
        const uint32_t ty = k_wtypes[ti];
        if (!type_ok(t, LL_OP_GET_ROWS, ty, "get_rows")) continue;
        const int ne0 = w_fits(ty, 576) ? 576 : 768, ne1 = 1001, n_tok = 9;
        ll_weight w = w_make(ty, ne0, ne1, 1100 + ti);
        const ll_weight *ws[] = {&w};
        tb_prepare(t, ws, 1, n_tok, 16);
        const int32_t ids[9] = {0, 1000, 17, 17, 500, 999, 3, 0, 256};
        const size_t ny = (size_t)n_tok * ne0;
        float *y = h_floats(ny), *ref = h_floats(ny), *dy = d_nan(t, ny);
        t->o->get_rows(t->b, dy, &w, ids, n_tok);
        d_down(t, y, dy, ny * 4);
        ll_ref_get_rows(ref, &w, ids, n_tok);
        char what[128], label[64];
        snprintf(what, sizeof what, "%s get_rows %s %dx%d", t->e->name, ll_type_name(ty), ne0, ne1);
        snprintf(label, sizeof label, "get_rows %s", is_quant(ty) ? "quantized" : ll_type_name(ty));
        check_rows(what, label, y, ref, n_tok, (size_t)ne0, is_quant(ty) ? TOL_GET_ROWS_Q : 0);
        d_free(t, dy), free(y), free(ref), w_free(&w);
    }
}

static void t_copy(tb *t) {
    static const size_t ns[] = {1, 3, 4101, (size_t)3 << 20};
    tb_prepare(t, NULL, 0, 1, 16);
    for (int ni = 0; ni < 4; ni++) {
        const size_t n = ns[ni], total = 2 * n + 64;
        uint8_t *a = malloc(total), *b = malloc(total), *got = malloc(total);
        assert_true(a && b && got);
        uint64_t s = 1200 + ni;
        for (size_t i = 0; i < total; i++) a[i] = (uint8_t)tu_rng_u64(&s), b[i] = (uint8_t)tu_rng_u64(&s);
        uint8_t *da = d_up(t, a, total), *db = d_up(t, b, total);
        // n bytes from offset 5 of a to offset n + 7 of b (rows of a cache start anywhere)
        t->o->copy(t->b, db + n + 7, da + 5, n);
        d_down(t, got, db, total);
        ll_ref_copy(b + n + 7, a + 5, n);
        note_err("copy", memcmp(got, b, total) ? 1 : 0, 0);
        if (memcmp(got, b, total)) fail_msg("%s copy of %zu bytes: the destination buffer differs", t->e->name, n);
        d_free(t, da), d_free(t, db), free(a), free(b), free(got);
    }
}

// Rows with ties (values on a grid of 1/8), NaN, +-inf, +-0; k below, at and above what the row holds.
static void t_topk(tb *t) {
    if (!t->o->topk) TU_SKIP("%s: topk is optional and NULL (the caller downloads the row)", t->e->name);
    static const int ns[] = {17, 1000, 32000, 151936};
    static const int ks[] = {1, 40, LL_BACKEND_TOPK_MAX};
    tb_prepare(t, NULL, 0, 1, 16);
    for (int ni = 0; ni < 4; ni++)
        for (int ki = 0; ki < 3; ki++) {
            const int n = ns[ni], k = ks[ki];
            uint64_t s = 1300 + 3 * ni + ki;
            float *x = h_floats((size_t)n);
            for (int i = 0; i < n; i++) {
                x[i] = roundf(tu_rng_uniform(&s) * 80.0f) / 8.0f;
                uint64_t r = tu_rng_u64(&s) % 97;
                if (r == 0) x[i] = NAN;
                if (r == 1) x[i] = -INFINITY;
                if (r == 2 && i % 5 == 0) x[i] = INFINITY;
                if (r == 3) x[i] = -0.0f;
                if (r == 4) x[i] = 0.0f;
            }
            if (n == 17) for (int i = 0; i < n; i += 2) x[i] = NAN; // fewer candidates than k
            float *dx = d_up(t, x, (size_t)n * 4), vals[LL_BACKEND_TOPK_MAX], rvals[LL_BACKEND_TOPK_MAX];
            int32_t ids[LL_BACKEND_TOPK_MAX], rids[LL_BACKEND_TOPK_MAX];
            const int got = t->o->topk(t->b, dx, n, k, vals, ids), want = ll_ref_topk(x, n, k, rvals, rids);
            int bad = got != want;
            for (int i = 0; i < want && !bad; i++)
                if (ids[i] != rids[i] || memcmp(&vals[i], &rvals[i], 4)) {
                    fail_msg("%s topk n %d k %d: candidate %d: got (%d, %.9g) want (%d, %.9g)", t->e->name, n, k, i,
                             ids[i], vals[i], rids[i], rvals[i]);
                }
            note_err("topk", bad, 0);
            if (bad) fail_msg("%s topk n %d k %d: %d candidates, want %d", t->e->name, n, k, got, want);
            d_free(t, dx), free(x);
        }
}

static void t_rope(tb *t) {
    static const float ff[64] = {1, 1, 1, 1.5f, 2, 2, 3, 4, 4, 4, 5, 6, 7, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8,
                                 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8,
                                 8, 8, 8, 8, 8, 8, 8, 8};
    const ll_rope_params cases[] = {
        {3, 32, 32, 10000.0f, false, NULL},  // small
        {9, 64, 64, 10000.0f, false, NULL},  // SmolLM
        {9, 64, 32, 10000.0f, true, NULL},   // partial rotary, NeoX pairs
        {32, 128, 128, 500000.0f, true, ff}, // Llama 3 style: frequency factors
        {8, 128, 128, 1e6f, false, ff},
    };
    tb_prepare(t, NULL, 0, 11, 16);
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        const ll_rope_params *p = &cases[ci];
        const int n_tok = ci % 2 ? 1 : 11, nd = p->n_head * p->head_dim;
        const int32_t pos[11] = {0, 1, 2, 8191, 5, 4000, 33, 34, 7, 1, 100};
        const int32_t pos1[1] = {(int32_t)(3000 + ci)};
        uint64_t s = 1400 + ci;
        float *x = h_rand((size_t)n_tok * nd, &s, 2.0f), *y = h_floats((size_t)n_tok * nd);
        float *dx = d_up(t, x, (size_t)n_tok * nd * 4);
        t->o->rope(t->b, dx, n_tok == 1 ? pos1 : pos, n_tok, p);
        d_down(t, y, dx, (size_t)n_tok * nd * 4);
        ll_ref_rope(x, n_tok == 1 ? pos1 : pos, n_tok, p);
        char what[160];
        snprintf(what, sizeof what, "%s rope %d heads hd %d n_rot %d base %g%s%s n_tok %d", t->e->name, p->n_head,
                 p->head_dim, p->n_rot, p->base, p->neox ? " neox" : "", p->freq_factors ? " freq_factors" : "", n_tok);
        check_rows(what, "rope", y, x, n_tok, (size_t)nd, TOL_ROPE);
        d_free(t, dx), free(x), free(y);
    }
}

static const op_test k_ops[] = {
    {"matmul", t_matmul},
    {"matmul3", t_matmul3},
    {"matmul_add", t_matmul_add},
    {"matmul_add_rmsnorm", t_matmul_add_rmsnorm},
    {"matmul_swiglu", t_matmul_swiglu},
    {"rmsnorm", t_rmsnorm},
    {"add_bias", t_add_bias},
    {"rope", t_rope},
    {"swiglu", t_swiglu},
    {"add", t_add},
    {"get_rows", t_get_rows},
    {"topk", t_topk},
    {"copy", t_copy},
};

int main(void) { return bo_run("backend_ops", k_ops, (int)(sizeof k_ops / sizeof k_ops[0])); }
