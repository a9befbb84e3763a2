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

/* Rows a loop prefetches while it computes its own: row t of its call brings row t of `at` (rows of `bytes`
 * each, `rows` of them) towards L1, so the reads ahead are spread over the work instead of issued in one burst
 * (a burst of a block's lines filled the miss buffers and stalled the loop: one stream ran at 7-14 GB/s). */
typedef struct {
    const char *at; /* NULL when rows is 0: nothing ahead */
    size_t rows, bytes;
} ta_ahead;

static inline void ta_ahead_row(const ta_ahead *pf, size_t t) {
    if (t < pf->rows)
        for (size_t b = 0; b < pf->bytes; b += 64) __builtin_prefetch(pf->at + t * pf->bytes + b, 0, 3);
}

/* The rows a call of n rows left (the next block may be longer than this one). */
static inline void ta_ahead_rest(const ta_ahead *pf, size_t n) {
    for (size_t t = n; t < pf->rows; t++) ta_ahead_row(pf, t);
}

/* The two loops over cache rows, per ISA. Rows are D float32 or D halves (f16 set), row t at rows + t * D.
 * scores: s[h * ld + t] = q[h * D ..] . row t, for h < G and t < n.
 * values: o[h * D + d] += p[h * ld + t] * row t [d], for h < G, t < n and d < D.
 * Both prefetch the rows of `pf` as they go. */
typedef void (*ta_scores_fn)(const float *q, size_t G, size_t D, const void *rows, int f16, size_t n, float *s,
                             size_t ld, const ta_ahead *pf);
typedef void (*ta_values_fn)(const float *p, size_t ld, size_t G, size_t D, const void *rows, int f16, size_t n,
                             float *o, const ta_ahead *pf);
#define TA_LOOPS(isa)                                                                                               \
    void ta_##isa##_scores(const float *q, size_t G, size_t D, const void *rows, int f16, size_t n, float *s,        \
                           size_t ld, const ta_ahead *pf);                                                          \
    void ta_##isa##_values(const float *p, size_t ld, size_t G, size_t D, const void *rows, int f16, size_t n,      \
                           float *o, const ta_ahead *pf);
#if defined(__x86_64__) || defined(__i386__)
/* D a multiple of 16 (AVX-512F with F16C) or of 8 (AVX2, FMA, F16C), at most TA_MAX_D */
TA_LOOPS(avx512)
TA_LOOPS(avx2)
#endif
#if defined(__aarch64__)
/* D a multiple of 4, at most TA_MAX_D */
TA_LOOPS(neon)
#endif
#define TA_MAX_D 256
#define TA_HEADS 8 /* query heads whose sums the values loops keep in registers at once */

/* Writes the new tokens' K (rotated) and V rows into the cache at positions past[b] .. past[b] + S - 1, then
 * out = softmax(scale q k^T over positions 0 .. past[b] + s) v for each new token s. Vectorized for the ISA of
 * the kernel path `kern`. Returns 0, or -1 with a message in err. */
int tb_attention(const tb_kernels *kern, const tb_attn_args *a, tb_parallel_for pfor, void *runner, char *err,
                 size_t errlen);

#endif
