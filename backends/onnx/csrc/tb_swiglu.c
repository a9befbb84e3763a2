/* The SwiGLU epilogue of a fused gate|up TernaryMatMul (activation="swiglu"): y = silu(gate) * up, gate the
 * first N/2 columns of z and up the rest. Float work outside the add-only tk_* kernels, written so the compiler
 * vectorizes it: exp by range reduction to [-ln2/2, ln2/2], a degree-6 polynomial and an exponent add, within
 * a few float32 ulps of expf (no libm call in the loop). On x86 this file is compiled three times (TB_SWIGLU_ROW
 * names the row function: baseline SSE2, AVX2, AVX-512F) and tb_swiglu picks the one of the kernel path. */
#include <stdint.h>
#include <string.h>

#include "tb_driver.h"

#ifndef TB_SWIGLU_ROW
#define TB_SWIGLU_ROW tb_swiglu_row_base
#define TB_SWIGLU_DISPATCH
#endif

void TB_SWIGLU_ROW(const float *restrict gate, const float *restrict up, size_t half, float *restrict out);

static inline float tb_expf(float x) {
    x = x > 88.0f ? 88.0f : x; /* e^88 is near float32's largest; below e^-87 a result is as good as 0 */
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

void TB_SWIGLU_ROW(const float *restrict gate, const float *restrict up, size_t half, float *restrict out) {
    for (size_t j = 0; j < half; j++) out[j] = gate[j] / (1.0f + tb_expf(-gate[j])) * up[j];
}

#ifdef TB_SWIGLU_DISPATCH
#if defined(__x86_64__) || defined(__i386__)
void tb_swiglu_row_avx2(const float *restrict gate, const float *restrict up, size_t half, float *restrict out);
void tb_swiglu_row_avx512(const float *restrict gate, const float *restrict up, size_t half, float *restrict out);
#endif

void tb_swiglu(const tb_kernels *kern, const float *z, size_t M, size_t half, float *y) {
    void (*row)(const float *restrict, const float *restrict, size_t, float *restrict) = tb_swiglu_row_base;
#if defined(__x86_64__) || defined(__i386__)
    if (!strcmp(kern->name, "avx512")) row = tb_swiglu_row_avx512; /* the path was chosen for this CPU */
    else if (!strcmp(kern->name, "avx2")) row = tb_swiglu_row_avx2;
#else
    (void)kern;
#endif
    for (size_t m = 0; m < M; m++) row(z + m * 2 * half, z + m * 2 * half + half, half, y + m * half);
}
#endif
