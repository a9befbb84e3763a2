/* The SwiGLU epilogue of a fused gate|up TernaryMatMul (activation="swiglu"): y = silu(gate) * up, gate the
 * first N/2 columns of z and up the rest. Float work outside the add-only tk_* kernels, written so the compiler
 * vectorizes it (tb_expf: no libm call in the loop). On x86 this file is compiled three times (TB_SWIGLU_ROW
 * names the row function: baseline SSE2, AVX2, AVX-512F) and tb_swiglu picks the one of the kernel path. */
#include <stdint.h>
#include <string.h>

#include "tb_driver.h"
#include "tb_vmath.h"

#ifndef TB_SWIGLU_ROW
#define TB_SWIGLU_ROW tb_swiglu_row_base
#define TB_SWIGLU_DISPATCH
#endif

void TB_SWIGLU_ROW(const float *restrict gate, const float *restrict up, size_t half, float *restrict out);

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
