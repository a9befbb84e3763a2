/* Float math written so the compiler vectorizes the loops that call it (no libm call inside a loop). */
#ifndef TB_VMATH_H
#define TB_VMATH_H

#include <stdint.h>
#include <string.h>

/* e^x by range reduction to [-ln2/2, ln2/2], a degree-6 polynomial and an exponent add: within a few float32
 * ulps of expf; inputs are clamped to [-87, 88] (below e^-87 a result is as good as 0). */
static inline float tb_expf(float x) {
    x = x > 88.0f ? 88.0f : x;
    x = x < -87.0f ? -87.0f : x;
    const float round = 12582912.0f; /* 1.5 * 2^23: adding it rounds to an integer */
    float n = (x * 1.44269504088896341f + round) - round;
    float r = x - n * 0.693359375f; /* ln2 split in two: the first part is exact in float32 */
    r = r + n * 2.12194440e-4f;
    /* Taylor coefficients of e^r to r^6: error below 2e-8 relative on |r| <= ln2/2 */
    float p = 1.0f + r * (1.0f + r * (0.5f + r * (1.66666672e-1f + r * (4.16666679e-2f +
                                                                      r * (8.33333377e-3f + r * 1.38888892e-3f)))));
    int32_t bits = ((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

#endif
