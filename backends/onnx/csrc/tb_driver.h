/* The driver's interface to the onnxruntime op (tb_ort.c). */
#ifndef TB_DRIVER_H
#define TB_DRIVER_H

#include "tritbench.h"

/* Runs fn(user, i) for i < total, possibly in parallel; returns 0 on success. */
typedef int (*tb_parallel_for)(void *runner, void (*fn)(void *, size_t), size_t total, void *user);
/* A tb_parallel_for that runs every task on the calling thread (callers given no pool). */
int tb_serial_for(void *runner, void (*fn)(void *, size_t), size_t total, void *user);

const tb_kernels *tb_select(char *err, size_t errlen);
int tb_packing_from_name(const char *name);
int64_t tb_packed_size(int64_t K, int64_t N, int packing);
int tb_matmul(const tb_kernels *kern, const float *x, size_t M, size_t K, const uint8_t *packed, int packing,
              size_t N, float scale, float *y, tb_parallel_for pfor, void *runner, char *err, size_t errlen);
const char *tritbench_available_kernels(void);
/* y[m, j] = silu(z[m, j]) * z[m, half + j] for j < half: z is [M, 2 * half], y is [M, half]; vectorized for
 * the ISA of the kernel path `kern` (tb_swiglu.c). */
void tb_swiglu(const tb_kernels *kern, const float *z, size_t M, size_t half, float *y);

#endif
