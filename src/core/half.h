// half.h — IEEE binary16 and bfloat16 <-> float32 conversions, bit-exact scalar versions (the reference for
// every SIMD conversion). fp16 rounding: round-to-nearest-even, like F16C's VCVTPS2PH with imm 0.
#ifndef LL_HALF_H
#define LL_HALF_H

#include <stdint.h>
#include <string.h>

static inline uint32_t ll_f32_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static inline float ll_bits_f32(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

static inline float ll_fp16_to_fp32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f, man = h & 0x3ff;
    if (exp == 0) {
        if (man == 0) return ll_bits_f32(sign);
        // subnormal: value = man * 2^-24
        float f = (float)man * (1.0f / 16777216.0f);
        return sign ? -f : f;
    }
    if (exp == 31) return ll_bits_f32(sign | 0x7f800000u | (man << 13)); // inf / nan
    return ll_bits_f32(sign | ((exp + 112) << 23) | (man << 13));
}

static inline uint16_t ll_fp32_to_fp16(float f) {
    uint32_t x = ll_f32_bits(f);
    uint32_t sign = (x >> 16) & 0x8000;
    uint32_t ax = x & 0x7fffffffu;
    if (ax >= 0x7f800000u) return (uint16_t)(sign | 0x7c00 | (ax > 0x7f800000u ? 0x200 | ((ax >> 13) & 0x3ff) : 0));
    if (ax >= 0x477ff000u) return (uint16_t)(sign | 0x7c00); // rounds to >= 65520: inf
    if (ax < 0x38800000u) {                                   // below the smallest normal half (2^-14)
        if (ax < 0x33000000u) return (uint16_t)sign;          // < 2^-25: rounds to 0
        uint32_t e = ax >> 23, m = (ax & 0x7fffff) | 0x800000;
        uint32_t shift = 126 - e;                            // 14 + (127 - e) - 1 ... places to drop
        uint32_t r = m >> shift, rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (r & 1))) r++;
        return (uint16_t)(sign | r);
    }
    uint32_t r = ax + 0xc8000000u; // rebias exponent 127 -> 15 (subtract 112 << 23)
    r = (r + 0x0fff + ((r >> 13) & 1)) >> 13; // round to nearest even
    return (uint16_t)(sign | r);
}

static inline float ll_bf16_to_fp32(uint16_t h) { return ll_bits_f32((uint32_t)h << 16); }

static inline uint16_t ll_fp32_to_bf16(float f) {
    uint32_t x = ll_f32_bits(f);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40); // quiet nan
    return (uint16_t)((x + 0x7fff + ((x >> 16) & 1)) >> 16);
}

#endif
