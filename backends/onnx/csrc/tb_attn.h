/* tritbench.GroupQueryAttention's kernel (tb_attn.c): causal attention of a batch's new tokens over a KV cache
 * that holds f16 or f32 rows in place, with rotary embedding, for grouped-query heads. */
#ifndef TB_ATTN_H
#define TB_ATTN_H

#include <stddef.h>
#include <stdint.h>

#include "tb_driver.h"

typedef struct {
    size_t B, S;            /* batch rows, new tokens per row */
    size_t H, KVH, D;       /* query heads, key/value heads (H % KVH == 0), head size */
    size_t P;               /* cache positions per (row, kv head) */
    size_t rot;             /* rotary dimensions (even, <= D; 0: no rotary) */
    int interleaved;        /* rotary pairs (2j, 2j + 1) if set, else (j, j + rot / 2) */
    int kv_f16;             /* cache elements are IEEE halves, else float32 */
    float scale;            /* of q . k */
    const float *qkv;       /* [B, S, (H + 2 KVH) D]: Q heads, then K heads, then V heads */
    void *k, *v;            /* [B, KVH, P, D]: rows 0 .. past[b] - 1 hold the past */
    const size_t *past;     /* [B]: the first new token of row b sits at position past[b] */
    const float *cos, *sin; /* [positions, rot / 2] */
    float *out;             /* [B, S, H D] */
} tb_attn_args;

/* The two loops over cache rows, per ISA. Rows are D float32 or D halves (f16 set), row t at rows + t * D.
 * scores: s[h * ld + t] = q[h * D ..] . row t, for h < G and t < n.
 * values: o[h * D + d] += p[h * ld + t] * row t [d], for h < G, t < n and d < D. */
typedef void (*ta_scores_fn)(const float *q, size_t G, size_t D, const void *rows, int f16, size_t n, float *s,
                             size_t ld);
typedef void (*ta_values_fn)(const float *p, size_t ld, size_t G, size_t D, const void *rows, int f16, size_t n,
                             float *o);
#if defined(__x86_64__) || defined(__i386__)
/* D a multiple of 16 (AVX-512F with F16C) or of 8 (AVX2, FMA, F16C), at most TA_MAX_D */
void ta_avx512_scores(const float *q, size_t G, size_t D, const void *rows, int f16, size_t n, float *s, size_t ld);
void ta_avx512_values(const float *p, size_t ld, size_t G, size_t D, const void *rows, int f16, size_t n, float *o);
void ta_avx2_scores(const float *q, size_t G, size_t D, const void *rows, int f16, size_t n, float *s, size_t ld);
void ta_avx2_values(const float *p, size_t ld, size_t G, size_t D, const void *rows, int f16, size_t n, float *o);
#endif
#if defined(__aarch64__)
/* D a multiple of 4, at most TA_MAX_D */
void ta_neon_scores(const float *q, size_t G, size_t D, const void *rows, int f16, size_t n, float *s, size_t ld);
void ta_neon_values(const float *p, size_t ld, size_t G, size_t D, const void *rows, int f16, size_t n, float *o);
#endif
#define TA_MAX_D 256
#define TA_HEADS 8 /* query heads whose sums the values loops keep in registers at once */

/* Writes the new tokens' K (rotated) and V rows into the cache at positions past[b] .. past[b] + S - 1, then
 * out = softmax(scale q k^T over positions 0 .. past[b] + s) v for each new token s. Vectorized for the ISA of
 * the kernel path `kern`. Returns 0, or -1 with a message in err. */
int tb_attention(const tb_kernels *kern, const tb_attn_args *a, tb_parallel_for pfor, void *runner, char *err,
                 size_t errlen);

#endif
