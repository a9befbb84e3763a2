/* tritbench.GroupQueryAttention's row loops on aarch64 (tb_attn.h): FCVTL widens an f16 row as it is read (base
 * Advanced SIMD, no FP16 arithmetic extension), FMLA accumulates. */
#include <arm_neon.h>

#include "tb_attn.h"

static inline float32x4_t ta_chunk(const void *rows, int f16, size_t at) {
    return f16 ? vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16((const uint16_t *)rows + at)))
               : vld1q_f32((const float *)rows + at);
}

void ta_neon_scores(const float *q, size_t G, size_t D, const void *rows, int f16, size_t n, float *s, size_t ld) {
    size_t C = D / 4;
    float32x4_t k[TA_MAX_D / 4];
    for (size_t t = 0; t < n; t++) {
        for (size_t c = 0; c < C; c++) k[c] = ta_chunk(rows, f16, t * D + c * 4);
        for (size_t h = 0; h < G; h++) {
            const float *qh = q + h * D;
            float32x4_t acc = vmulq_f32(k[0], vld1q_f32(qh));
            for (size_t c = 1; c < C; c++) acc = vfmaq_f32(acc, k[c], vld1q_f32(qh + c * 4));
            s[h * ld + t] = vaddvq_f32(acc);
        }
    }
}

void ta_neon_values(const float *p, size_t ld, size_t G, size_t D, const void *rows, int f16, size_t n, float *o) {
    for (size_t c = 0; c < D / 4; c++)
        for (size_t h0 = 0; h0 < G; h0 += TA_HEADS) {
            size_t hn = G - h0 < TA_HEADS ? G - h0 : TA_HEADS;
            float32x4_t acc[TA_HEADS];
            for (size_t j = 0; j < hn; j++) acc[j] = vld1q_f32(o + (h0 + j) * D + c * 4);
            for (size_t t = 0; t < n; t++) {
                float32x4_t v = ta_chunk(rows, f16, t * D + c * 4);
                for (size_t j = 0; j < hn; j++) acc[j] = vfmaq_n_f32(acc[j], v, p[(h0 + j) * ld + t]);
            }
            for (size_t j = 0; j < hn; j++) vst1q_f32(o + (h0 + j) * D + c * 4, acc[j]);
        }
}
