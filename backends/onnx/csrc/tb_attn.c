/* Attention for tritbench.GroupQueryAttention (tb_attn.h). Float work outside the add-only tk_* kernels.
 *
 * One task per (batch row, kv head, block of up to 16 new tokens): it reads that head's K and V rows once for all
 * the query heads of its group and tokens of its block, so a decode step reads the cache once and a prefill
 * reads each row once per block; f16 rows widen as they are read (onnxruntime's CPU
 * GroupQueryAttention converted f16 rows per query head, and with the Casts around it took 3-4x the time of
 * those bytes at depth 1024). The loops over rows are per ISA (tb_attn_avx512.c, tb_attn_avx2.c,
 * tb_attn_neon.c, or the portable ones here), picked by the kernel path; the softmax's exp is tb_expf. */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tb_attn.h"
#include "tb_f16.h"
#include "tb_vmath.h"

#define TA_LANES 16 /* independent partial maxima and sums in the softmax */
#define TA_QUERIES 16 /* new tokens per task at most */
#define TA_BLOCK 64 /* cache rows per loop call: their D-wide slices stay in L1 across the values loop's passes */

/* Block j of a task's reads (K's blocks, then V's), as the rows a loop prefetches while it computes block j - 1:
 * the hardware prefetchers stop at 4 KB page boundaries (as for the ternary weights), and a (row, kv head)'s
 * rows span many pages at depth. */
static ta_ahead ta_block(const char *k, const char *v, size_t L, size_t row, size_t j) {
    size_t per = (L + TA_BLOCK - 1) / TA_BLOCK;
    if (j >= 2 * per) return (ta_ahead){NULL, 0, row};
    size_t t0 = (j % per) * TA_BLOCK, n = L - t0 < TA_BLOCK ? L - t0 : TA_BLOCK;
    return (ta_ahead){(j < per ? k : v) + t0 * row, n, row};
}

typedef struct {
    const tb_attn_args *a;
    ta_scores_fn scores;
    ta_values_fn values;
    size_t nq; /* new tokens per task */
    atomic_int failed;
} tb_attn_job;

static inline float ta_elem(const void *rows, int f16, size_t at) {
    return f16 ? th_half_to_float(((const uint16_t *)rows)[at]) : ((const float *)rows)[at];
}

static void ta_portable_scores(const float *q, size_t G, size_t D, const void *rows, int f16, size_t n, float *s,
                               size_t ld, const ta_ahead *pf) {
    for (size_t t = 0; t < n; t++) {
        ta_ahead_row(pf, t);
        for (size_t h = 0; h < G; h++) {
            float acc = 0.0f;
            for (size_t d = 0; d < D; d++) acc += q[h * D + d] * ta_elem(rows, f16, t * D + d);
            s[h * ld + t] = acc;
        }
    }
    ta_ahead_rest(pf, n);
}

static void ta_portable_values(const float *p, size_t ld, size_t G, size_t D, const void *rows, int f16, size_t n,
                               float *o, const ta_ahead *pf) {
    for (size_t t = 0; t < n; t++) {
        ta_ahead_row(pf, t);
        for (size_t d = 0; d < D; d++) {
            float v = ta_elem(rows, f16, t * D + d);
            for (size_t h = 0; h < G; h++) o[h * D + d] += p[h * ld + t] * v;
        }
    }
    ta_ahead_rest(pf, n);
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

/* Softmax numerators of ph[0 .. valid - 1] in place, zeros up to ld (keys a causal query does not see); returns
 * 1 / their sum. In lanes: one running max or sum would be a chain of dependent operations, valid long. */
static float ta_softmax(float *ph, size_t valid, size_t ld) {
    float m = ph[0], sum = 0.0f, top[TA_LANES], part[TA_LANES] = {0};
    size_t t = 0;
    for (int j = 0; j < TA_LANES; j++) top[j] = ph[0];
    for (; t + TA_LANES <= valid; t += TA_LANES)
        for (int j = 0; j < TA_LANES; j++) top[j] = ph[t + j] > top[j] ? ph[t + j] : top[j];
    for (int j = 0; j < TA_LANES; j++) m = top[j] > m ? top[j] : m;
    for (; t < valid; t++) m = ph[t] > m ? ph[t] : m;
    for (t = 0; t < valid; t++) ph[t] = tb_expf(ph[t] - m);
    for (t = 0; t + TA_LANES <= valid; t += TA_LANES)
        for (int j = 0; j < TA_LANES; j++) part[j] += ph[t + j];
    for (int j = 0; j < TA_LANES; j++) sum += part[j];
    for (; t < valid; t++) sum += ph[t];
    memset(ph + valid, 0, (ld - valid) * sizeof *ph);
    return 1.0f / sum;
}

/* Queries per task: a block of new tokens shares each cache row it reads (prefill); bounded so that the
 * scores of a block (G x block x keys floats) stay near L2's size. */
static size_t ta_block_queries(const tb_attn_args *a) {
    size_t G = a->H / a->KVH, keys = a->P, nq = TA_QUERIES;
    while (nq > 1 && G * nq * keys > (size_t)1 << 16) nq /= 2;
    return nq < a->S ? nq : a->S;
}

static void ta_task(void *user, size_t item) {
    tb_attn_job *job = user;
    const tb_attn_args *a = job->a;
    size_t blocks = (a->S + job->nq - 1) / job->nq;
    size_t i0 = item % blocks * job->nq, g = item / blocks % a->KVH, b = item / blocks / a->KVH;
    size_t nq = a->S - i0 < job->nq ? a->S - i0 : job->nq;
    size_t G = a->H / a->KVH, D = a->D, past = a->past[b], L = past + i0 + nq, elem = a->kv_f16 ? 2 : 4;
    size_t Q = nq * G; /* stacked queries: token i0 + i, head h at i * G + h */
    if (!G || !D || !nq) __builtin_unreachable(); /* the op checked the shapes */
    float *q = malloc((2 * Q * D + Q * L) * sizeof *q);
    if (!q) {
        atomic_store(&job->failed, 1);
        return;
    }
    float *o = q + Q * D, *p = o + Q * D;
    for (size_t i = 0; i < nq; i++) {
        size_t pos = past + i0 + i;
        const float *src = a->qkv + ((b * a->S + i0 + i) * (a->H + 2 * a->KVH) + g * G) * D;
        for (size_t h = 0; h < G; h++) {
            float *qh = q + (i * G + h) * D;
            if (a->rot)
                tb_rotate(src + h * D, qh, D, a->rot, a->interleaved, a->cos + pos * (a->rot / 2),
                          a->sin + pos * (a->rot / 2));
            else
                memcpy(qh, src + h * D, D * sizeof *q);
            for (size_t d = 0; d < D; d++) qh[d] *= a->scale;
        }
    }
    size_t head = (b * a->KVH + g) * a->P * D * elem; /* byte offset of this (row, kv head) in a cache */
    const char *k = (const char *)a->k + head, *v = (const char *)a->v + head;
    size_t row = D * elem;
    size_t per = (L + TA_BLOCK - 1) / TA_BLOCK;
    ta_ahead first = ta_block(k, v, L, row, 0);
    ta_ahead_rest(&first, 0); /* the first block has no loop before it */
    for (size_t t0 = 0; t0 < L; t0 += TA_BLOCK) { /* scores, a block of rows at a time */
        size_t n = L - t0 < TA_BLOCK ? L - t0 : TA_BLOCK;
        ta_ahead next = ta_block(k, v, L, row, t0 / TA_BLOCK + 1);
        job->scores(q, Q, D, k + t0 * row, a->kv_f16, n, p + t0, L, &next);
    }
    float inv[Q];
    for (size_t j = 0; j < Q; j++) inv[j] = ta_softmax(p + j * L, past + i0 + j / G + 1, L);
    memset(o, 0, Q * D * sizeof *o);
    for (size_t t0 = 0; t0 < L; t0 += TA_BLOCK) {
        size_t n = L - t0 < TA_BLOCK ? L - t0 : TA_BLOCK;
        ta_ahead next = ta_block(k, v, L, row, per + t0 / TA_BLOCK + 1);
        job->values(p + t0, L, Q, D, v + t0 * row, a->kv_f16, n, o, &next);
    }
    for (size_t i = 0; i < nq; i++) {
        float *out = a->out + ((b * a->S + i0 + i) * a->H + g * G) * D;
        for (size_t h = 0; h < G; h++)
            for (size_t d = 0; d < D; d++) out[h * D + d] = o[(i * G + h) * D + d] * inv[i * G + h];
    }
    free(q);
}

/* The new tokens' K (rotated) and V rows into the cache, in its element type. */
static void tb_attn_store(const tb_attn_args *a) {
    size_t D = a->D, width = (a->H + 2 * a->KVH) * D;
    th_narrow_fn narrow = th_narrower();
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
                    narrow(k, D, (uint16_t *)a->k + at);
                    narrow(vs, D, (uint16_t *)a->v + at);
                } else {
                    memcpy((float *)a->k + at, k, D * sizeof *k);
                    memcpy((float *)a->v + at, vs, D * sizeof *k);
                }
            }
        }
}

int tb_attention(const tb_kernels *kern, const tb_attn_args *a, tb_parallel_for pfor, void *runner, char *err,
                 size_t errlen) {
    tb_attn_job job = {a, ta_portable_scores, ta_portable_values, ta_block_queries(a), 0};
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
    size_t tasks = a->B * a->KVH * ((a->S + job.nq - 1) / job.nq);
    int rc = (pfor ? pfor : tb_serial_for)(runner, ta_task, tasks, &job);
    if (rc) snprintf(err, errlen, "onnxruntime's ParallelFor failed");
    else if (atomic_load(&job.failed)) snprintf(err, errlen, "out of memory");
    return rc || atomic_load(&job.failed) ? -1 : 0;
}
