/* Attention for tritbench.GroupQueryAttention (tb_attn.h). Float work outside the add-only tk_* kernels.
 *
 * One task per (batch row, kv head, new token): it reads that head's K and V rows once for all the query heads
 * of its group, so a decode step reads the cache once; f16 rows widen as they are read (onnxruntime's CPU
 * GroupQueryAttention converted f16 rows per query head, and with the Casts around it took 3-4x the time of
 * those bytes at depth 1024). The loops over rows are per ISA (tb_attn_avx512.c, tb_attn_avx2.c,
 * tb_attn_neon.c, or the portable ones here), picked by the kernel path; the softmax's exp is tb_expf. */
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tb_attn.h"
#include "tb_f16.h"
#include "tb_vmath.h"

#define TA_BLOCK 64 /* cache rows per values call: their D-wide slices stay in L1 across its passes */

typedef struct {
    const tb_attn_args *a;
    ta_scores_fn scores;
    ta_values_fn values;
    atomic_int failed;
} tb_attn_job;

static inline float ta_elem(const void *rows, int f16, size_t at) {
    return f16 ? th_half_to_float(((const uint16_t *)rows)[at]) : ((const float *)rows)[at];
}

static void ta_portable_scores(const float *q, size_t G, size_t D, const void *rows, int f16, size_t n, float *s,
                               size_t ld) {
    for (size_t t = 0; t < n; t++)
        for (size_t h = 0; h < G; h++) {
            float acc = 0.0f;
            for (size_t d = 0; d < D; d++) acc += q[h * D + d] * ta_elem(rows, f16, t * D + d);
            s[h * ld + t] = acc;
        }
}

static void ta_portable_values(const float *p, size_t ld, size_t G, size_t D, const void *rows, int f16, size_t n,
                               float *o) {
    for (size_t t = 0; t < n; t++)
        for (size_t d = 0; d < D; d++) {
            float v = ta_elem(rows, f16, t * D + d);
            for (size_t h = 0; h < G; h++) o[h * D + d] += p[h * ld + t] * v;
        }
}

/* y = x with its first rot dimensions rotated by the angles of one position (cos/sin rows of rot / 2). */
static void tb_rotate(const float *restrict x, float *restrict y, size_t D, size_t rot, int interleaved,
                      const float *restrict c, const float *restrict s) {
    size_t half = rot / 2;
    if (interleaved) {
        for (size_t j = 0; j < half; j++) {
            float x0 = x[2 * j], x1 = x[2 * j + 1];
            y[2 * j] = x0 * c[j] - x1 * s[j];
            y[2 * j + 1] = x0 * s[j] + x1 * c[j];
        }
    } else {
        for (size_t j = 0; j < half; j++) {
            float x0 = x[j], x1 = x[j + half];
            y[j] = x0 * c[j] - x1 * s[j];
            y[j + half] = x0 * s[j] + x1 * c[j];
        }
    }
    for (size_t d = rot; d < D; d++) y[d] = x[d];
}

static void ta_task(void *user, size_t item) {
    tb_attn_job *job = user;
    const tb_attn_args *a = job->a;
    size_t i = item % a->S, g = item / a->S % a->KVH, b = item / a->S / a->KVH;
    size_t G = a->H / a->KVH, D = a->D, pos = a->past[b] + i, L = pos + 1, elem = a->kv_f16 ? 2 : 4;
    if (!G || !D) __builtin_unreachable(); /* the op checked the shapes */
    float *q = malloc((2 * G * D + G * L) * sizeof *q);
    if (!q) {
        atomic_store(&job->failed, 1);
        return;
    }
    float *o = q + G * D, *p = o + G * D;
    const float *src = a->qkv + ((b * a->S + i) * (a->H + 2 * a->KVH) + g * G) * D;
    for (size_t h = 0; h < G; h++) {
        if (a->rot)
            tb_rotate(src + h * D, q + h * D, D, a->rot, a->interleaved, a->cos + pos * (a->rot / 2),
                      a->sin + pos * (a->rot / 2));
        else
            memcpy(q + h * D, src + h * D, D * sizeof *q);
        for (size_t d = 0; d < D; d++) q[h * D + d] *= a->scale;
    }
    size_t head = (b * a->KVH + g) * a->P * D * elem; /* byte offset of this (row, kv head) in a cache */
    job->scores(q, G, D, (const char *)a->k + head, a->kv_f16, L, p, L);
    float inv[G];
    for (size_t h = 0; h < G; h++) { /* softmax numerators in place, and 1 / their sum */
        float *ph = p + h * L, m = ph[0], sum = 0.0f;
        for (size_t t = 1; t < L; t++) m = ph[t] > m ? ph[t] : m;
        for (size_t t = 0; t < L; t++) ph[t] = tb_expf(ph[t] - m);
        for (size_t t = 0; t < L; t++) sum += ph[t];
        inv[h] = 1.0f / sum;
    }
    memset(o, 0, G * D * sizeof *o);
    for (size_t t0 = 0; t0 < L; t0 += TA_BLOCK)
        job->values(p + t0, L, G, D, (const char *)a->v + head + t0 * D * elem, a->kv_f16,
                    L - t0 < TA_BLOCK ? L - t0 : TA_BLOCK, o);
    float *out = a->out + ((b * a->S + i) * a->H + g * G) * D;
    for (size_t h = 0; h < G; h++)
        for (size_t d = 0; d < D; d++) out[h * D + d] = o[h * D + d] * inv[h];
    free(q);
}

static int tb_attn_serial(void *runner, void (*fn)(void *, size_t), size_t total, void *user) {
    (void)runner;
    for (size_t i = 0; i < total; i++) fn(user, i);
    return 0;
}

/* The new tokens' K (rotated) and V rows into the cache, in its element type. */
static void tb_attn_store(const tb_attn_args *a) {
    size_t D = a->D, width = (a->H + 2 * a->KVH) * D;
    float k[D];
    for (size_t b = 0; b < a->B; b++)
        for (size_t i = 0; i < a->S; i++) {
            size_t pos = a->past[b] + i;
            const float *row = a->qkv + (b * a->S + i) * width;
            for (size_t g = 0; g < a->KVH; g++) {
                const float *ks = row + (a->H + g) * D, *vs = row + (a->H + a->KVH + g) * D;
                if (a->rot)
                    tb_rotate(ks, k, D, a->rot, a->interleaved, a->cos + pos * (a->rot / 2),
                              a->sin + pos * (a->rot / 2));
                else
                    memcpy(k, ks, D * sizeof *k);
                size_t at = ((b * a->KVH + g) * a->P + pos) * D;
                if (a->kv_f16) {
                    uint16_t *kc = (uint16_t *)a->k + at, *vc = (uint16_t *)a->v + at;
                    for (size_t d = 0; d < D; d++) {
                        kc[d] = th_float_to_half(k[d]);
                        vc[d] = th_float_to_half(vs[d]);
                    }
                } else {
                    memcpy((float *)a->k + at, k, D * sizeof *k);
                    memcpy((float *)a->v + at, vs, D * sizeof *k);
                }
            }
        }
}

int tb_attention(const tb_kernels *kern, const tb_attn_args *a, tb_parallel_for pfor, void *runner, char *err,
                 size_t errlen) {
    tb_attn_job job = {a, ta_portable_scores, ta_portable_values, 0};
    int fits = a->D <= TA_MAX_D; /* the kernel path was chosen for this CPU */
#if defined(__x86_64__) || defined(__i386__)
    if (fits && a->D % 16 == 0 && !strcmp(kern->name, "avx512"))
        job.scores = ta_avx512_scores, job.values = ta_avx512_values;
    else if (fits && a->D % 8 == 0 && (!strcmp(kern->name, "avx512") || !strcmp(kern->name, "avx2")) &&
             __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c"))
        job.scores = ta_avx2_scores, job.values = ta_avx2_values;
#elif defined(__aarch64__)
    if (fits && a->D % 4 == 0 && !strcmp(kern->name, "neon")) job.scores = ta_neon_scores, job.values = ta_neon_values;
#else
    (void)kern, (void)fits;
#endif
    if (!a->B || !a->S) return 0;
    tb_attn_store(a);
    int rc = (pfor ? pfor : tb_attn_serial)(runner, ta_task, a->B * a->KVH * a->S, &job);
    if (rc) snprintf(err, errlen, "onnxruntime's ParallelFor failed");
    else if (atomic_load(&job.failed)) snprintf(err, errlen, "out of memory");
    return rc || atomic_load(&job.failed) ? -1 : 0;
}
