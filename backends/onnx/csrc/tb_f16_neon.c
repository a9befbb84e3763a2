/* F16 weights times float32 activations on aarch64: FCVTL widens four halves to floats (base Advanced SIMD,
 * every ARMv8-A core: no FP16 arithmetic extension is needed, so cortex-a53 runs it too), FMLA accumulates. */
#include <arm_neon.h>

#include "tb_f16.h"

static inline float32x4_t th_widen_lo(uint16x8_t h) { return vcvt_f32_f16(vreinterpret_f16_u16(vget_low_u16(h))); }
static inline float32x4_t th_widen_hi(uint16x8_t h) { return vcvt_f32_f16(vreinterpret_f16_u16(vget_high_u16(h))); }

void th_neon_cols(const float *x, size_t K, const uint16_t *w, size_t n0, size_t n1, float *y) {
    for (size_t n = n0; n < n1; n++) {
        const uint16_t *row = w + n * K;
        float32x4_t a0 = vdupq_n_f32(0.0f), a1 = a0, a2 = a0, a3 = a0;
        size_t k = 0;
        for (; k + 16 <= K; k += 16) { /* 16 halves (32 bytes) per step, four independent accumulators */
            uint16x8_t h0 = vld1q_u16(row + k), h1 = vld1q_u16(row + k + 8);
            a0 = vfmaq_f32(a0, vld1q_f32(x + k), th_widen_lo(h0));
            a1 = vfmaq_f32(a1, vld1q_f32(x + k + 4), th_widen_hi(h0));
            a2 = vfmaq_f32(a2, vld1q_f32(x + k + 8), th_widen_lo(h1));
            a3 = vfmaq_f32(a3, vld1q_f32(x + k + 12), th_widen_hi(h1));
        }
        for (; k + 4 <= K; k += 4)
            a0 = vfmaq_f32(a0, vld1q_f32(x + k), vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(row + k))));
        float acc = vaddvq_f32(vaddq_f32(vaddq_f32(a0, a1), vaddq_f32(a2, a3)));
        for (; k < K; k++) acc += x[k] * th_half_to_float(row[k]);
        y[n] = acc;
    }
}

void th_neon_widen(const uint16_t *h, size_t n, float *out) {
    size_t i = 0;
    for (; i + 4 <= n; i += 4) vst1q_f32(out + i, vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(h + i))));
    for (; i < n; i++) out[i] = th_half_to_float(h[i]);
}

void th_neon_narrow(const float *x, size_t n, uint16_t *out) {
    size_t i = 0;
    for (; i + 4 <= n; i += 4) /* FCVTN rounds to nearest even (the default FPCR mode), as th_float_to_half */
        vst1_u16(out + i, vreinterpret_u16_f16(vcvt_f16_f32(vld1q_f32(x + i))));
    for (; i < n; i++) out[i] = th_float_to_half(x[i]);
}
