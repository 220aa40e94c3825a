/* SHA-256 (FIPS 180-4) for a freestanding 32-bit guest: no libc, no 64-bit division. */
#ifndef VERIFIER_SHA256_H
#define VERIFIER_SHA256_H

#include <stdint.h>

struct sha256 {
    uint32_t state[8];
    uint32_t total_low;   /* bytes hashed, low 32 bits */
    uint32_t total_high;  /* bytes hashed, high 32 bits */
    uint8_t block[64];
    uint32_t used;        /* bytes waiting in block */
};

void sha256_init(struct sha256 *ctx);
void sha256_update(struct sha256 *ctx, const uint8_t *data, uint32_t len);
void sha256_final(struct sha256 *ctx, uint8_t digest[32]);

#endif
