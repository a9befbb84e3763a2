/* tritbench.GroupQueryAttention's row loops with AVX-512F (tb_attn.h, tb_attn_loops.h): an f16 row widens with
 * VCVTPH2PS as it is read (F16C's 512-bit form, part of AVX-512F), so the cache is read once per kv head and
 * never copied. */
#include <immintrin.h>

#include "tb_attn.h"

#define TA_VEC __m512
#define TA_W 16
#define TA_CHUNK(rows, f16, at)                                                                   \
    ((f16) ? _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)((const uint16_t *)(rows) + (at)))) \
           : _mm512_loadu_ps((const float *)(rows) + (at)))
#define TA_LOAD(p) _mm512_loadu_ps(p)
#define TA_STORE(p, v) _mm512_storeu_ps(p, v)
#define TA_MUL(a, b) _mm512_mul_ps(a, b)
#define TA_FMA(acc, a, b) _mm512_fmadd_ps(a, b, acc)
#define TA_SPLAT(x) _mm512_set1_ps(x)
#define TA_SUM(v) _mm512_reduce_add_ps(v)
#define TA_SCORES ta_avx512_scores
#define TA_VALUES ta_avx512_values
#include "tb_attn_loops.h"
