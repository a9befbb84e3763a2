/* tritbench.GroupQueryAttention's row loops on aarch64 (tb_attn.h, tb_attn_loops.h): FCVTL widens an f16 row as
 * it is read (base Advanced SIMD, no FP16 arithmetic extension), FMLA accumulates. */
#include <arm_neon.h>

#include "tb_attn.h"

#define TA_VEC float32x4_t
#define TA_W 4
#define TA_CHUNK(rows, f16, at)                                                        \
    ((f16) ? vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16((const uint16_t *)(rows) + (at)))) \
           : vld1q_f32((const float *)(rows) + (at)))
#define TA_LOAD(p) vld1q_f32(p)
#define TA_STORE(p, v) vst1q_f32(p, v)
#define TA_MUL(a, b) vmulq_f32(a, b)
#define TA_FMA(acc, a, b) vfmaq_f32(acc, a, b)
#define TA_SPLAT(x) vdupq_n_f32(x)
#define TA_SUM(v) vaddvq_f32(v)
#define TA_SCORES ta_neon_scores
#define TA_VALUES ta_neon_values
#include "tb_attn_loops.h"
