/* F16 weights times float32 activations (tb_f16.h): the portable path, dispatch and the threaded driver. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tb_f16.h"

#define TB_EXPORT __attribute__((visibility("default")))
#define TH_CHUNK 64 /* columns per task: one task's weights (64 rows of K halves) stay in L2 for every row m */

float th_half_to_float(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, exp = (h >> 10) & 0x1fu, man = h & 0x3ffu, bits;
    if (exp == 0x1f) {
        bits = sign | 0x7f800000u | (man << 13); /* inf, nan */
    } else if (exp) {
        bits = sign | ((exp + 112u) << 23) | (man << 13);
    } else { /* zero or subnormal: man * 2^-24, exact in float */
        float v = ldexpf((float)man, -24);
        return sign ? -v : v;
    }
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

uint16_t th_float_to_half(float f) {
    uint32_t bits;
    memcpy(&bits, &f, sizeof bits);
    uint32_t sign = (bits >> 16) & 0x8000u, exp = (bits >> 23) & 0xffu, man = bits & 0x7fffffu;
    if (exp == 0xff) return (uint16_t)(sign | 0x7c00u | (man ? 0x200u | (man >> 13) : 0)); /* inf, nan */
    int e = (int)exp - 127 + 15; /* the half's biased exponent */
    if (e >= 31) return (uint16_t)(sign | 0x7c00u);
    uint32_t full = man | 0x800000u; /* the significand with its implicit bit, 24 bits */
    int shift = 13;                  /* bits dropped: 13 for a normal half, more for a subnormal */
    if (e <= 0) {
        if (e < -10) return (uint16_t)sign; /* below half the smallest subnormal: rounds to zero */
        shift = 14 - e;
        e = 0;
    }
    uint32_t kept = full >> shift, rest = full & ((1u << shift) - 1), half = 1u << (shift - 1);
    if (rest > half || (rest == half && (kept & 1u))) kept++; /* to nearest, ties to even */
    /* a normal half adds its exponent; a carry out of the significand moves into the exponent by itself */
    uint32_t h = e ? ((uint32_t)e << 10) + (kept - 0x400u) : kept;
    return (uint16_t)(sign | (h >= 0x7c00u ? 0x7c00u : h));
}

void th_portable_widen(const uint16_t *h, size_t n, float *out) {
    for (size_t i = 0; i < n; i++) out[i] = th_half_to_float(h[i]);
}

void th_portable_narrow(const float *x, size_t n, uint16_t *out) {
    for (size_t i = 0; i < n; i++) out[i] = th_float_to_half(x[i]);
}

void th_portable_cols(const float *x, size_t K, const uint16_t *w, size_t n0, size_t n1, float *y) {
    for (size_t n = n0; n < n1; n++) {
        const uint16_t *row = w + n * K;
        float acc = 0.0f;
        for (size_t k = 0; k < K; k++) acc += x[k] * th_half_to_float(row[k]);
        y[n] = acc;
    }
}

typedef struct {
    const char *name;
    th_cols_fn cols;
    th_widen_fn widen;
    th_narrow_fn narrow;
} th_path;

static const th_path *th_select(void) {
    static const th_path portable = {"portable", th_portable_cols, th_portable_widen, th_portable_narrow};
    const char *want = getenv("TRITBENCH_KERNEL");
#if defined(__x86_64__) || defined(__i386__)
    static const th_path f16c = {"f16c", th_f16c_cols, th_f16c_widen, th_f16c_narrow};
    __builtin_cpu_init();
    if (!(want && strcmp(want, "portable") == 0) && __builtin_cpu_supports("avx2") &&
        __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c"))
        return &f16c;
#elif defined(__aarch64__)
    static const th_path neon = {"neon", th_neon_cols, th_neon_widen, th_neon_narrow};
    if (!(want && strcmp(want, "portable") == 0)) return &neon; /* Advanced SIMD and FCVTL are baseline */
#else
    (void)want;
#endif
    return &portable;
}

const char *th_kernel_name(void) { return th_select()->name; }

void th_widen(const uint16_t *h, size_t n, float *out) { th_select()->widen(h, n, out); }

th_narrow_fn th_narrower(void) { return th_select()->narrow; }

typedef struct {
    th_cols_fn fn;
    const float *x;
    const uint16_t *w;
    float *y;
    size_t M, K, N;
} th_job;

static void th_task(void *user, size_t i) {
    const th_job *job = user;
    size_t n0 = i * TH_CHUNK, n1 = n0 + TH_CHUNK < job->N ? n0 + TH_CHUNK : job->N;
    for (size_t m = 0; m < job->M; m++) job->fn(job->x + m * job->K, job->K, job->w, n0, n1, job->y + m * job->N);
}

int th_matmul(const float *x, size_t M, size_t K, const uint16_t *w, size_t N, float *y, tb_parallel_for pfor,
              void *runner) {
    th_job job = {th_select()->cols, x, w, y, M, K, N};
    if (M == 0 || N == 0) return 0;
    return (pfor ? pfor : tb_serial_for)(runner, th_task, (N + TH_CHUNK - 1) / TH_CHUNK, &job);
}

/* Y[M, N] = X[M, K] @ W[N, K]^T with W in half precision, on the calling thread. Returns 0. */
TB_EXPORT int tritbench_f16_matmul(const float *x, int64_t M, int64_t K, const uint16_t *w, int64_t N, float *y) {
    if (M < 0 || K < 1 || N < 1) return -1;
    return th_matmul(x, (size_t)M, (size_t)K, w, (size_t)N, y, NULL, NULL);
}

TB_EXPORT const char *tritbench_f16_kernel_name(void) { return th_kernel_name(); }
