// matmul_q.c — quantized weights on the CPU: activation quantization (once per ll_matmul call, as llama.cpp)
// and the scalar kernels, which run the traits' vec_dot (the spec) per row and token.
#include "backend/cpu/matmul_q.h"

#include <math.h>

#include "core/half.h"

uint32_t ll_mmq_act_type(uint32_t wtype) {
    switch (ll_mm_base_type(wtype)) {
    case LL_TYPE_Q4_0: case LL_TYPE_Q5_0: case LL_TYPE_Q8_0: return LL_TYPE_Q8_0;
    case LL_TYPE_Q4_1: case LL_TYPE_Q5_1: return LL_TYPE_Q8_1;
    case LL_TYPE_Q4_K: case LL_TYPE_Q5_K: case LL_TYPE_Q6_K: return LL_TYPE_Q8_K;
    default: return 0;
    }
}

static size_t al64(size_t n) { return ll_align_up(n, 64); }

int ll_mmq_sub(uint32_t wtype) { return wtype == LL_TYPE_Q6_K ? 16 : 32; }

int ll_mmq_code_offset(uint32_t wtype) {
    switch (ll_mm_base_type(wtype)) {
    case LL_TYPE_Q8_0: return 128;
    case LL_TYPE_Q4_0: return 8;
    case LL_TYPE_Q5_0: return 16;
    case LL_TYPE_Q6_K: return 32;
    default: return 0;
    }
}

size_t ll_mmq_act_row(uint32_t wtype, int n_in) {
    const ll_type_traits *at = ll_type_get(ll_mmq_act_type(wtype));
    LL_ASSERT(at != NULL && n_in % at->blck == 0);
    size_t nb = (size_t)(n_in / at->blck), n = (size_t)n_in;
    return al64(nb * at->size) + al64(nb * 8) + al64(n / (size_t)ll_mmq_sub(wtype) * 4) + al64(n / 32 * 4);
}

ll_mmq_row ll_mmq_act_view(uint32_t wtype, const void *row, int n_in) {
    const ll_type_traits *at = ll_type_get(ll_mmq_act_type(wtype));
    size_t nb = (size_t)(n_in / at->blck), n = (size_t)n_in;
    const uint8_t *p = row;
    const float *d = (const float *)(p + al64(nb * at->size));
    const int32_t *c = (const int32_t *)((const uint8_t *)d + al64(nb * 8));
    const float *sf = (const float *)((const uint8_t *)c + al64(n / (size_t)ll_mmq_sub(wtype) * 4));
    return (ll_mmq_row){p, d, d + nb, c, sf};
}

// The prefill side arrays c and s of a row whose blocks are written (ll_mmq_row).
static void act_side(uint32_t wtype, void *row, int n_in) {
    ll_mmq_row v = ll_mmq_act_view(wtype, row, n_in);
    int32_t *c = (int32_t *)v.c;
    float *sf = (float *)v.s;
    int sub = ll_mmq_sub(wtype), off = ll_mmq_code_offset(wtype);
    bool k = ll_mmq_act_type(wtype) == LL_TYPE_Q8_K;
    for (int i = 0; i < n_in / 32; i++) {
        int s32 = 0;
        if (k) {
            const ll_block_q8_K *b = (const ll_block_q8_K *)row + i / 8;
            s32 = b->bsums[2 * (i % 8)] + b->bsums[2 * (i % 8) + 1];
            if (sub == 16) {
                c[2 * i] = -off * b->bsums[2 * (i % 8)];
                c[2 * i + 1] = -off * b->bsums[2 * (i % 8) + 1];
            }
        } else if (ll_mmq_act_type(wtype) == LL_TYPE_Q8_0) {
            s32 = ((const int32_t *)v.aux)[i];
        }
        if (sub == 32) c[i] = -off * s32;
        sf[i] = wtype == LL_TYPE_Q4_K || wtype == LL_TYPE_Q5_K ? (float)s32 : 0.0f;
    }
}

// llama.cpp's x86 quantize_row_q8_0/_1: d = amax / 127 (stored fp16), codes = nearest-even(x * (127 / amax));
// Q8_1 adds s = fp16(d * sum of codes) with the unrounded d.
static void act_q8_legacy(const float *x, void *row, int n_in, bool q8_1) {
    int nb = n_in / 32;
    uint8_t *blocks = row;
    float *dv = (float *)(blocks + al64((size_t)nb * (q8_1 ? 36 : 34)));
    int32_t *isum = (int32_t *)(dv + nb);
    float *fs = (float *)(dv + nb);
    for (int b = 0; b < nb; b++, x += 32) {
        float amax = 0;
        for (int i = 0; i < 32; i++) amax = fmaxf(amax, fabsf(x[i]));
        const float d = amax / 127.f, id = amax != 0.0f ? 127.f / amax : 0.0f;
        uint16_t dh = ll_fp32_to_fp16(d);
        int8_t *qs = q8_1 ? ((ll_block_q8_1 *)blocks)[b].qs : ((ll_block_q8_0 *)blocks)[b].qs;
        int sum = 0;
        for (int i = 0; i < 32; i++) {
            int v = ll_quant_nearest_int(x[i] * id); // |x * id| <= 127 (+ rounding), NaN excluded below
            qs[i] = (int8_t)(v < -127 ? -127 : v > 127 ? 127 : v);
            sum += qs[i];
        }
        dv[b] = ll_fp16_to_fp32(dh);
        if (q8_1) {
            ll_block_q8_1 *q = &((ll_block_q8_1 *)blocks)[b];
            q->d = dh;
            q->s = ll_fp32_to_fp16((float)sum * d);
            fs[b] = ll_fp16_to_fp32(q->s);
        } else {
            ((ll_block_q8_0 *)blocks)[b].d = dh;
            isum[b] = sum;
        }
    }
}

void ll_mmq_act_quantize(uint32_t wtype, const float *x, void *row, int n_in) {
    uint32_t at = ll_mmq_act_type(wtype);
    if (at == LL_TYPE_Q8_0 || at == LL_TYPE_Q8_1) {
        act_q8_legacy(x, row, n_in, at == LL_TYPE_Q8_1);
        act_side(wtype, row, n_in);
        return;
    }
    LL_ASSERT(at == LL_TYPE_Q8_K);
    int nb = n_in / LL_QK_K;
    ll_quant_from_float_ref_q8_K(x, row, n_in);
    ll_mmq_row v = ll_mmq_act_view(wtype, row, n_in);
    float *d = (float *)v.d;
    int32_t *aux = (int32_t *)v.aux;
    for (int b = 0; b < nb; b++) {
        d[b] = ((const ll_block_q8_K *)row)[b].d;
        aux[b] = 0;
    }
    act_side(wtype, row, n_in);
}

// ---- scalar kernels ------------------------------------------------------------------------------------------

static void sq_dot(const ll_mm_job *j, int r0, int r1, void *tsp) {
    (void)tsp;
    const ll_type_traits *tt = ll_type_get(j->wtype);
    for (int t = 0; t < j->n_tokens; t++) {
        const uint8_t *xa = (const uint8_t *)j->xa + (size_t)t * j->xa_stride;
        float *y = j->y + (size_t)t * (size_t)j->n_out;
        for (int o = r0; o < r1; o++) tt->vec_dot(j->n_in, &y[o], j->W + (size_t)o * j->row_bytes, xa);
    }
}

#define SQ_TYPE(name, ty)                                                                                      \
    static size_t sq_row_##name(int n_in) { return ll_mmq_act_row(ty, n_in); }                                \
    static void sq_conv_##name(const float *x, void *xa, int n_in) { ll_mmq_act_quantize(ty, x, xa, n_in); }
SQ_TYPE(q4_0, LL_TYPE_Q4_0)
SQ_TYPE(q4_1, LL_TYPE_Q4_1)
SQ_TYPE(q5_0, LL_TYPE_Q5_0)
SQ_TYPE(q5_1, LL_TYPE_Q5_1)
SQ_TYPE(q8_0, LL_TYPE_Q8_0)
SQ_TYPE(q4_K, LL_TYPE_Q4_K)
SQ_TYPE(q5_K, LL_TYPE_Q5_K)
SQ_TYPE(q6_K, LL_TYPE_Q6_K)

// dot_max_tokens INT32_MAX: quantized types always take the dot form (the kernels block tokens themselves).
#define SQ_ROW(name, ty) {ty, "scalar", INT32_MAX, sq_dot, NULL, sq_row_##name, sq_conv_##name, NULL, NULL, 0, 0}
static const ll_mm_ops k_sq_ops[] = {
    SQ_ROW(q4_0, LL_TYPE_Q4_0), SQ_ROW(q4_1, LL_TYPE_Q4_1), SQ_ROW(q5_0, LL_TYPE_Q5_0), SQ_ROW(q5_1, LL_TYPE_Q5_1),
    SQ_ROW(q8_0, LL_TYPE_Q8_0), SQ_ROW(q4_K, LL_TYPE_Q4_K), SQ_ROW(q5_K, LL_TYPE_Q5_K), SQ_ROW(q6_K, LL_TYPE_Q6_K),
};

const ll_mm_ops *ll_mmq_find_scalar(uint32_t wtype) {
    for (size_t i = 0; i < sizeof k_sq_ops / sizeof k_sq_ops[0]; i++)
        if (k_sq_ops[i].wtype == wtype) return &k_sq_ops[i];
    return NULL;
}
