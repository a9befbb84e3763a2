/* F16 weights times float32 activations on x86 with AVX2, FMA and F16C (compiled with -mavx2 -mfma -mf16c;
 * called only where the CPU has all three). */
#include <immintrin.h>

#include "tb_f16.h"

static float th_hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

void th_f16c_cols(const float *x, size_t K, const uint16_t *w, size_t n0, size_t n1, float *y) {
    for (size_t n = n0; n < n1; n++) {
        const uint16_t *row = w + n * K;
        __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
        size_t k = 0;
        for (; k + 32 <= K; k += 32) {
            a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + k), _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(row + k))), a0);
            a1 = _mm256_fmadd_ps(_mm256_loadu_ps(x + k + 8),
                                 _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(row + k + 8))), a1);
            a2 = _mm256_fmadd_ps(_mm256_loadu_ps(x + k + 16),
                                 _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(row + k + 16))), a2);
            a3 = _mm256_fmadd_ps(_mm256_loadu_ps(x + k + 24),
                                 _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(row + k + 24))), a3);
        }
        for (; k + 8 <= K; k += 8)
            a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + k), _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(row + k))), a0);
        float acc = th_hsum(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
        for (; k < K; k++) acc += x[k] * _cvtsh_ss(row[k]);
        y[n] = acc;
    }
}

void th_f16c_widen(const uint16_t *h, size_t n, float *out) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(out + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(h + i))));
    for (; i < n; i++) out[i] = _cvtsh_ss(h[i]);
}

void th_f16c_narrow(const float *x, size_t n, uint16_t *out) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) /* VCVTPS2PH rounds to nearest even, as th_float_to_half */
        _mm_storeu_si128((__m128i *)(out + i),
                         _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    for (; i < n; i++) out[i] = th_float_to_half(x[i]);
}
