/* tritbench.GroupQueryAttention's row loops with AVX2, FMA and F16C (tb_attn.h): an f16 row widens with
 * VCVTPH2PS as it is read, so the cache is read once per kv head and never copied. */
#include <immintrin.h>

#include "tb_attn.h"

static inline __m256 ta_chunk(const void *rows, int f16, size_t at) {
    return f16 ? _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)rows + at)))
               : _mm256_loadu_ps((const float *)rows + at);
}

static inline float ta_sum(__m256 v) {
    __m128 x = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    x = _mm_add_ps(x, _mm_movehl_ps(x, x));
    x = _mm_add_ss(x, _mm_movehdup_ps(x));
    return _mm_cvtss_f32(x);
}

void ta_avx2_scores(const float *q, size_t G, size_t D, const void *rows, int f16, size_t n, float *s, size_t ld) {
    size_t C = D / 8;
    __m256 k[TA_MAX_D / 8];
    for (size_t t = 0; t < n; t++) {
        for (size_t c = 0; c < C; c++) k[c] = ta_chunk(rows, f16, t * D + c * 8);
        for (size_t h = 0; h < G; h++) {
            const float *qh = q + h * D;
            __m256 acc = _mm256_mul_ps(k[0], _mm256_loadu_ps(qh));
            for (size_t c = 1; c < C; c++) acc = _mm256_fmadd_ps(k[c], _mm256_loadu_ps(qh + c * 8), acc);
            s[h * ld + t] = ta_sum(acc);
        }
    }
}

void ta_avx2_values(const float *p, size_t ld, size_t G, size_t D, const void *rows, int f16, size_t n, float *o) {
    for (size_t c = 0; c < D / 8; c++)
        for (size_t h0 = 0; h0 < G; h0 += TA_HEADS) {
            size_t hn = G - h0 < TA_HEADS ? G - h0 : TA_HEADS;
            __m256 acc[TA_HEADS];
            for (size_t j = 0; j < hn; j++) acc[j] = _mm256_loadu_ps(o + (h0 + j) * D + c * 8);
            for (size_t t = 0; t < n; t++) {
                __m256 v = ta_chunk(rows, f16, t * D + c * 8);
                for (size_t j = 0; j < hn; j++) acc[j] = _mm256_fmadd_ps(_mm256_set1_ps(p[(h0 + j) * ld + t]), v, acc[j]);
            }
            for (size_t j = 0; j < hn; j++) _mm256_storeu_ps(o + (h0 + j) * D + c * 8, acc[j]);
        }
}
