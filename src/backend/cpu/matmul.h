// matmul.h — the CPU matrix kernels: y = W x for one token (decode, matrix-vector) or many (prefill,
// blocked matrix-matrix). W is n_out rows of n_in elements of a GGUF type (ne0 = n_in), used in place
// from the map. x: (n_tokens, n_in) f32, y: (n_tokens, n_out) f32. The _ref version is the spec.
// Quantized weights (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K) multiply x quantized once per call to the
// 8-bit type of the format's vec_dot (Q8_0, Q8_1, Q8_K), as llama.cpp does: integer dots, f32 scales.
#ifndef LL_MATMUL_H
#define LL_MATMUL_H

#include "core/pool.h"
#include "types/types.h"

// A layout of our own, not a GGUF type: Q4_0 rows repacked in groups of 16 (ll_matmul_repack). Per group and per
// block b of 32 elements, 288 bytes: the 16 rows' fp16 scales (32 B), then 4 runs of 64 B, run j holding code
// bytes 4j..4j+3 of rows 0..15 in turn. A zmm load is then one 4-element step of 16 rows (both nibbles), one
// vpdpbusd per nibble against a broadcast of x: the int32 lanes are the rows, scaled once per block by one
// vector of 16 scales; the prefill panel (qgemm_x86.c) has this very arrangement. ll_matmul takes it as a wtype
// where ll_matmul_supports says so (AVX-512 VNNI builds); n_out a multiple of 16.
#define LL_MM_Q4_0_X16 0x10002u
// Q4_K the same way, per super-block of 256 and 16 rows (2368 bytes, 64 more than the rows' 16 x 144): d x 16,
// dmin x 16 (fp16), the 8 sub-block scales as bytes (8 runs of 16 rows), the 8 mins likewise, then 32 runs of
// 64 bytes: run 8g + k holds qs bytes 32g + 4k..+3 of rows 0..15 (low nibbles: sub-block 2g, high: 2g + 1).
#define LL_MM_Q4_K_X16 0x1000Cu
// Q5_0 (352 bytes per block and 16 rows): the 16 scales, then the qh bits as 8 byte masks (mask 2k + h, bit 4r + i:
// the high bit of element 16h + 4k + i of row r, so it joins run k's codes in one masked op), then 4 code runs as
// Q4_0's. Q8_0 (544 bytes): the 16 scales, then 8 runs of (4 code bytes x 16 rows), each code + 128 (unsigned).
#define LL_MM_Q5_0_X16 0x10006u
#define LL_MM_Q8_0_X16 0x10008u
#define LL_MM_X16_ROWS 16
// The GGUF type a layout holds (LL_MM_*_X16 -> its type; others: themselves).
static inline uint32_t ll_mm_base_type(uint32_t wtype) { return wtype & 0x10000u ? wtype & 0xFFFFu : wtype; }
// Bytes of one block (32 elements; Q4_K: 256) of a 16-row group in layout `to`; 0 for other values.
static inline size_t ll_mm_x16_block_bytes(uint32_t to) {
    return to == LL_MM_Q4_0_X16 ? 288 : to == LL_MM_Q5_0_X16 ? 352 : to == LL_MM_Q8_0_X16 ? 544
         : to == LL_MM_Q4_K_X16 ? 2368 : 0;
}
// Bytes of n_out rows (a multiple of 16) of n_in in layout `to`.
size_t ll_matmul_repack_bytes(uint32_t to, int n_in, int n_out);
// The repacked layout this build multiplies faster for (n_in, n_out) weights of type wtype, or 0 for none.
uint32_t ll_matmul_repack_type(uint32_t wtype, int n_in, int n_out);
// W (n_out rows of wtype) into dst in layout `to` (from ll_matmul_repack_type; ll_matmul_repack_bytes bytes);
// rows in groups of LL_MM_X16_ROWS, so a part of a matrix can be repacked on its own (n_out a multiple of 16).
void ll_matmul_repack(uint32_t to, const void *W, void *dst, int n_in, int n_out);

// true when ll_matmul computes with this weight type.
bool ll_matmul_supports(uint32_t wtype);
// Scratch bytes ll_matmul needs for these sizes (converted activations etc.); allocate once, up front.
size_t ll_matmul_wsize(uint32_t wtype, int n_in, int n_tokens, int n_threads);
// y[t][o] = sum_i W[o][i] * x[t][i]. wsp: ll_matmul_wsize bytes, 64-byte aligned.
void ll_matmul(ll_pool *pool, uint32_t wtype, const void *W, const float *x, float *y, int n_in, int n_out,
               int n_tokens, void *wsp);
// Up to LL_MM_MULTI matrices of one type and row length on the same x (q, k, v; gate, up): the activations are
// converted once and, at decode, every matrix's rows go out in one pool run. Same results as n ll_matmul calls;
// wsp: ll_matmul_wsize bytes for (wtype, n_in, n_tokens).
#define LL_MM_MULTI 3
void ll_matmul_multi(ll_pool *pool, uint32_t wtype, int n, const void *const *W, const float *x, float *const *y,
                     int n_in, const int *n_out, int n_tokens, void *wsp);
// Plain scalar reference (single thread, float64 accumulation): what every fast path is tested against.
void ll_matmul_ref(uint32_t wtype, const void *W, const float *x, float *y, int n_in, int n_out, int n_tokens);
// Which code path ll_matmul uses for this type on this build ("avx512", "avx2", "neon", "scalar").
const char *ll_matmul_isa(uint32_t wtype);

#endif
