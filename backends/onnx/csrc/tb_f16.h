/* The F16 GEMV/GEMM entry point: y[m, n] = sum_k x[m, k] * w[n, k], w in IEEE half precision with row n
 * contiguous (GGUF's layout of an F16 output or embedding tensor), float32 products and sums. Used for an
 * F16 LM head that reads 2 bytes per weight, as llama.cpp's does. Functions are named th_* (float work: not
 * the add-only tk_* kernels). */
#ifndef TB_F16_H
#define TB_F16_H

#include <stddef.h>
#include <stdint.h>

#include "tb_driver.h"

/* Columns n0 .. n1 - 1 of one row: y[n] = dot(x[0 .. K-1], w[n * K .. n * K + K - 1]). */
typedef void (*th_cols_fn)(const float *x, size_t K, const uint16_t *w, size_t n0, size_t n1, float *y);

/* out[i] = h[i] widened to float32 (exact) for i < n. */
typedef void (*th_widen_fn)(const uint16_t *h, size_t n, float *out);
/* out[i] = x[i] rounded to the nearest half, ties to even, for i < n. */
typedef void (*th_narrow_fn)(const float *x, size_t n, uint16_t *out);

void th_portable_cols(const float *x, size_t K, const uint16_t *w, size_t n0, size_t n1, float *y);
void th_portable_widen(const uint16_t *h, size_t n, float *out);
void th_portable_narrow(const float *x, size_t n, uint16_t *out);
float th_half_to_float(uint16_t h);
/* f rounded to the nearest half, ties to even (as a float32 -> float16 cast); overflow gives infinity. */
uint16_t th_float_to_half(float f);
#if defined(__x86_64__) || defined(__i386__)
void th_f16c_cols(const float *x, size_t K, const uint16_t *w, size_t n0, size_t n1, float *y);
void th_f16c_widen(const uint16_t *h, size_t n, float *out);
void th_f16c_narrow(const float *x, size_t n, uint16_t *out);
#endif
#if defined(__aarch64__)
void th_neon_cols(const float *x, size_t K, const uint16_t *w, size_t n0, size_t n1, float *y);
void th_neon_widen(const uint16_t *h, size_t n, float *out);
void th_neon_narrow(const float *x, size_t n, uint16_t *out);
#endif

/* The path the next call uses: "f16c" (x86 with AVX2, FMA and F16C), "neon" (aarch64) or "portable";
 * TRITBENCH_KERNEL=portable forces the portable one. */
const char *th_kernel_name(void);
/* Widens n halves on the same path: TernaryMatMul's float16 X (an attention output in an f16 KV graph). */
void th_widen(const uint16_t *h, size_t n, float *out);
/* The narrowing function of that path (an f16 KV cache's new rows). */
th_narrow_fn th_narrower(void);
int th_matmul(const float *x, size_t M, size_t K, const uint16_t *w, size_t N, float *y, tb_parallel_for pfor,
              void *runner);

#endif
