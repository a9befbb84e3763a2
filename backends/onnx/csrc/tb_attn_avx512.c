/* tritbench.GroupQueryAttention's row loops with AVX-512F (tb_attn.h): an f16 row widens with VCVTPH2PS as it is
 * read (F16C's 512-bit form, part of AVX-512F), so the cache is read once per kv head and never copied. */
#include <immintrin.h>

#include "tb_attn.h"

static inline __m512 ta_chunk(const void *rows, int f16, size_t at) {
    return f16 ? _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)((const uint16_t *)rows + at)))
               : _mm512_loadu_ps((const float *)rows + at);
}

void ta_avx512_scores(const float *q, size_t G, size_t D, const void *rows, int f16, size_t n, float *s, size_t ld) {
    size_t C = D / 16;
    __m512 k[TA_MAX_D / 16];
    for (size_t t = 0; t < n; t++) {
        for (size_t c = 0; c < C; c++) k[c] = ta_chunk(rows, f16, t * D + c * 16);
        for (size_t h = 0; h < G; h++) {
            const float *qh = q + h * D;
            __m512 acc = _mm512_mul_ps(k[0], _mm512_loadu_ps(qh));
            for (size_t c = 1; c < C; c++) acc = _mm512_fmadd_ps(k[c], _mm512_loadu_ps(qh + c * 16), acc);
            s[h * ld + t] = _mm512_reduce_add_ps(acc);
        }
    }
}

void ta_avx512_values(const float *p, size_t ld, size_t G, size_t D, const void *rows, int f16, size_t n, float *o) {
    for (size_t c = 0; c < D / 16; c++)
        for (size_t h0 = 0; h0 < G; h0 += TA_HEADS) {
            size_t hn = G - h0 < TA_HEADS ? G - h0 : TA_HEADS;
            __m512 acc[TA_HEADS];
            for (size_t j = 0; j < hn; j++) acc[j] = _mm512_loadu_ps(o + (h0 + j) * D + c * 16);
            for (size_t t = 0; t < n; t++) {
                __m512 v = ta_chunk(rows, f16, t * D + c * 16);
                for (size_t j = 0; j < hn; j++) acc[j] = _mm512_fmadd_ps(_mm512_set1_ps(p[(h0 + j) * ld + t]), v, acc[j]);
            }
            for (size_t j = 0; j < hn; j++) _mm512_storeu_ps(o + (h0 + j) * D + c * 16, acc[j]);
        }
}
