// sha256.h — SHA-256 (FIPS 180-4) for fingerprinting tensor data and files: a streaming context plus a
// one-shot helper and a lowercase hex formatter. Used by the quant golden tests and file checksums.
#ifndef LL_SHA256_H
#define LL_SHA256_H

#include <stddef.h>
#include <stdint.h>

typedef struct ll_sha256 {
    uint32_t h[8];      // chaining state
    uint64_t n_bytes;   // message length so far
    uint8_t buf[64];    // partial block
    size_t n_buf;       // bytes in buf (< 64)
} ll_sha256;

void ll_sha256_init(ll_sha256 *c);
void ll_sha256_update(ll_sha256 *c, const void *data, size_t n);
void ll_sha256_final(ll_sha256 *c, uint8_t out[32]);
// One shot: digest of data[0..n).
void ll_sha256_hash(const void *data, size_t n, uint8_t out[32]);
// 64 lowercase hex digits + NUL into hex[65].
void ll_sha256_hex(const uint8_t digest[32], char hex[65]);

#endif
