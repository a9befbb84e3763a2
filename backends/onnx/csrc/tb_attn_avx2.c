/* tritbench.GroupQueryAttention's row loops with AVX2, FMA and F16C (tb_attn.h, tb_attn_loops.h): an f16 row
 * widens with VCVTPH2PS as it is read, so the cache is read once per kv head and never copied. */
#include <immintrin.h>

#include "tb_attn.h"

static inline float ta_sum(__m256 v) {
    __m128 x = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    x = _mm_add_ps(x, _mm_movehl_ps(x, x));
    x = _mm_add_ss(x, _mm_movehdup_ps(x));
    return _mm_cvtss_f32(x);
}

#define TA_VEC __m256
#define TA_W 8
#define TA_CHUNK(rows, f16, at)                                                                \
    ((f16) ? _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)(rows) + (at)))) \
           : _mm256_loadu_ps((const float *)(rows) + (at)))
#define TA_LOAD(p) _mm256_loadu_ps(p)
#define TA_STORE(p, v) _mm256_storeu_ps(p, v)
#define TA_MUL(a, b) _mm256_mul_ps(a, b)
#define TA_FMA(acc, a, b) _mm256_fmadd_ps(a, b, acc)
#define TA_SPLAT(x) _mm256_set1_ps(x)
#define TA_SUM(v) ta_sum(v)
#define TA_SCORES ta_avx2_scores
#define TA_VALUES ta_avx2_values
#include "tb_attn_loops.h"
