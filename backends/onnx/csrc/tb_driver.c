/* Dispatch (CPU features, TRITBENCH_KERNEL), the matmul driver shared by the onnxruntime op and the plain
 * C API, and the plain C API itself (for tests and probes without onnxruntime). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tb_driver.h"

#if defined(__aarch64__)
#include <sys/auxv.h>
#endif

#define TB_EXPORT __attribute__((visibility("default")))

/* Per-thread scratch buffers that only grow. A fresh malloc of a few MB per call came back as fresh mmap'ed
 * pages: thousands of page faults per call, which cost more than the GEMM itself on a busy VM. Slot 0 is a
 * call's workspace (calling thread), slot 1 a task's scratch (any thread, the caller included). */
typedef struct {
    void *ptr[2];
    size_t size[2];
} tb_scratch;

static pthread_key_t tb_scratch_key;
static pthread_once_t tb_scratch_once = PTHREAD_ONCE_INIT;

static void tb_scratch_free(void *p) {
    tb_scratch *s = p;
    free(s->ptr[0]);
    free(s->ptr[1]);
    free(s);
}

static void tb_scratch_init(void) { pthread_key_create(&tb_scratch_key, tb_scratch_free); }

static void *tb_scratch_get(int slot, size_t size) {
    pthread_once(&tb_scratch_once, tb_scratch_init);
    tb_scratch *s = pthread_getspecific(tb_scratch_key);
    if (!s) {
        s = calloc(1, sizeof *s);
        if (!s || pthread_setspecific(tb_scratch_key, s)) {
            free(s);
            return NULL;
        }
    }
    if (s->size[slot] < size) {
        free(s->ptr[slot]);
        size = (size + 4095) & ~(size_t)4095;
        s->ptr[slot] = aligned_alloc(64, size);
        s->size[slot] = s->ptr[slot] ? size : 0;
    }
    return s->ptr[slot];
}

#if defined(__x86_64__) || defined(__i386__)
static int tb_has_avx2(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2");
}

/* libgcc also checks that the OS saves the zmm state (XCR0) before reporting AVX-512. */
static int tb_has_avx512(void) {
    __builtin_cpu_init();
    return tb_has_avx2() && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vbmi");
}
#endif

static const tb_kernels *tb_best(void) {
#if defined(__aarch64__)
    return &tb_kernels_neon; /* NEON is baseline on aarch64 */
#elif defined(__x86_64__) || defined(__i386__)
    if (tb_has_avx512()) return &tb_kernels_avx512;
    if (tb_has_avx2()) return &tb_kernels_avx2;
#endif
    return &tb_kernels_portable;
}

const tb_kernels *tb_select(char *err, size_t errlen) {
    const char *want = getenv("TRITBENCH_KERNEL");
    if (!want || !*want || !strcmp(want, "auto")) return tb_best();
    if (!strcmp(want, "portable")) return &tb_kernels_portable;
#if defined(__x86_64__) || defined(__i386__)
    if (!strcmp(want, "avx2")) {
        if (tb_has_avx2()) return &tb_kernels_avx2;
        snprintf(err, errlen, "TRITBENCH_KERNEL=avx2 but this CPU has no AVX2");
        return NULL;
    }
    if (!strcmp(want, "avx512")) {
        if (tb_has_avx512()) return &tb_kernels_avx512;
        snprintf(err, errlen, "TRITBENCH_KERNEL=avx512 but this CPU (or OS) has no AVX-512 F, BW and VBMI");
        return NULL;
    }
#endif
#if defined(__aarch64__)
    if (!strcmp(want, "neon")) return &tb_kernels_neon;
#endif
    snprintf(err, errlen, "TRITBENCH_KERNEL=%s is not a kernel path of this build (available: %s)", want,
             tritbench_available_kernels());
    return NULL;
}

int tb_packing_from_name(const char *name) {
    if (!strcmp(name, "tern2")) return TB_TERN2;
    if (!strcmp(name, "tern1.67")) return TB_TERN167;
    return -1;
}

/* Geometry of a K x N matrix in one packing. */
typedef struct {
    int packing;
    size_t kp, nsteps, ntiles, step_bytes, tile_bytes, tab_step, tab_row;
} tb_geom;

static int tb_geometry(int64_t K, int64_t N, int packing, tb_geom *g) {
    if (K < 1 || N < 1 || (packing != TB_TERN2 && packing != TB_TERN167)) return -1;
    size_t kstep = packing == TB_TERN2 ? 4 : 12;
    g->packing = packing;
    g->nsteps = ((size_t)K + kstep - 1) / kstep;
    g->kp = g->nsteps * kstep;
    g->ntiles = ((size_t)N + TB_TILE_N - 1) / TB_TILE_N;
    g->step_bytes = packing == TB_TERN2 ? TB_STEP_TERN2 : TB_STEP_TERN167;
    g->tile_bytes = g->nsteps * g->step_bytes + (packing == TB_TERN2 ? 0 : 4 * TB_TILE_N);
    g->tab_step = packing == TB_TERN2 ? TB_TAB_PAIR : 2 * TB_TAB_PAIR;
    g->tab_row = g->nsteps * g->tab_step;
    return 0;
}

int64_t tb_packed_size(int64_t K, int64_t N, int packing) {
    tb_geom g;
    if (tb_geometry(K, N, packing, &g)) return -1;
    return (int64_t)(g.ntiles * g.tile_bytes);
}

/* Rows handled together per tile, and K steps per block so a block's tables for those rows stay in L2. */
#define TB_ROW_BLOCK 64
#define TB_TABLE_BUDGET (384u << 10)

typedef struct {
    const tb_kernels *kern;
    tb_geom g;
    const float *x;
    const uint8_t *packed;
    float *y;
    size_t M, K, N;
    float scale;
    int8_t *q;
    size_t kq; /* q's row stride, zero-filled past K: kp, or 3 * units on the unit-table path */
    uint8_t *tab;
    float *rescale;
    size_t kblock;
} tb_job;

static void tb_row_task(void *user, size_t m) {
    tb_job *job = user;
    int8_t *q = job->q + m * job->g.kp;
    float absmax = job->kern->quantize(job->x + m * job->K, job->K, job->g.kp, q);
    size_t npairs = job->g.packing == TB_TERN2 ? job->g.nsteps : 2 * job->g.nsteps;
    job->kern->tables(job->g.packing, q, npairs, job->tab + m * job->g.tab_row);
    job->rescale[m] = (absmax / 127.0f) * job->scale;
}

static void tb_tile_task(void *user, size_t tile) {
    tb_job *job = user;
    const tb_geom *g = &job->g;
    const uint8_t *w = job->packed + tile * g->tile_bytes;
    size_t n0 = tile * TB_TILE_N;
    size_t ncols = job->N - n0 < TB_TILE_N ? job->N - n0 : TB_TILE_N;
    int32_t acc[TB_ROW_BLOCK * TB_TILE_N] __attribute__((aligned(64)));
    int32_t corr[TB_TILE_N];
    if (g->packing == TB_TERN167)
        memcpy(corr, w + g->nsteps * g->step_bytes, sizeof corr);
    else
        memset(corr, 0, sizeof corr);
    for (size_t m0 = 0; m0 < job->M; m0 += TB_ROW_BLOCK) {
        size_t rows = job->M - m0 < TB_ROW_BLOCK ? job->M - m0 : TB_ROW_BLOCK;
        for (size_t r = 0; r < rows; r++) memcpy(acc + r * TB_TILE_N, corr, sizeof corr);
        for (size_t s0 = 0; s0 < g->nsteps; s0 += job->kblock) {
            size_t steps = g->nsteps - s0 < job->kblock ? g->nsteps - s0 : job->kblock;
            job->kern->tile(g->packing, w + s0 * g->step_bytes, job->tab + m0 * g->tab_row + s0 * g->tab_step,
                            g->tab_row, rows, steps, acc);
        }
        for (size_t r = 0; r < rows; r++)
            tk_rescale(acc + r * TB_TILE_N, ncols, job->rescale[m0 + r], job->y + (m0 + r) * job->N + n0);
    }
}

/* ---- row-LUT GEMM (paths with rowlut, M >= TB_ROWLUT_MIN_ROWS) ---- */
#define TB_ROWLUT_MIN_ROWS 24 /* measured: the per-row kernels are as fast up to ~16 rows */
#define TB_ROWLUT_TILES 4 /* tiles per task: they share each k-block's tables while those are in L2 */

typedef struct {
    tb_job *job;
    size_t m0, rows, r16, rb, kbsteps, kbgroups, kb_tab_bytes, nkb, ntasks;
    int16_t *qt;
    uint8_t *tabs;
    int failed; /* set (atomically) by a task that could not allocate its scratch */
} tb_rowlut_job;

static void tb_quant_task(void *user, size_t m) {
    tb_job *job = user;
    float absmax = job->kern->quantize(job->x + m * job->K, job->K, job->kq, job->q + m * job->kq);
    job->rescale[m] = (absmax / 127.0f) * job->scale;
}

static void tb_rowtab_task(void *user, size_t kb) {
    tb_rowlut_job *rj = user;
    tb_job *job = rj->job;
    size_t gk = job->g.packing == TB_TERN2 ? 4 : 3; /* K-rows per table unit */
    size_t k0 = kb * rj->kbgroups * gk, k1 = k0 + rj->kbgroups * gk;
    if (k1 > job->g.kp) k1 = job->g.kp;
    /* transpose this block's activations to qt[k][row] (row-major reads, stores stay in L1) */
    for (size_t r = 0; r < rj->rb; r++) {
        int16_t *dst = rj->qt + k0 * rj->rb + r;
        if (r < rj->rows) {
            const int8_t *src = job->q + (rj->m0 + r) * job->g.kp;
            for (size_t k = k0; k < k1; k++, dst += rj->rb) *dst = src[k];
        } else {
            for (size_t k = k0; k < k1; k++, dst += rj->rb) *dst = 0;
        }
    }
    job->kern->rowtab(job->g.packing, rj->qt + k0 * rj->rb, (k1 - k0) / gk, rj->r16,
                      rj->tabs + kb * rj->kb_tab_bytes);
}

static void tb_rowlut_task(void *user, size_t task) {
    tb_rowlut_job *rj = user;
    tb_job *job = rj->job;
    const tb_geom *g = &job->g;
    size_t t0 = task * TB_ROWLUT_TILES, t1 = t0 + TB_ROWLUT_TILES < g->ntiles ? t0 + TB_ROWLUT_TILES : g->ntiles;
    size_t acc_tile = TB_TILE_N * rj->rb;
    size_t acc_bytes = (t1 - t0) * acc_tile * sizeof(int32_t);
    int32_t *acc = tb_scratch_get(1, acc_bytes + TB_ROWLUT_GROUPS * TB_TILE_N * sizeof(uint16_t));
    if (!acc) {
        __atomic_store_n(&rj->failed, 1, __ATOMIC_RELAXED);
        return;
    }
    uint16_t *codes = (uint16_t *)((uint8_t *)acc + acc_bytes);
    memset(acc, 0, acc_bytes);
    for (size_t kb = 0; kb < rj->nkb; kb++) {
        size_t s0 = kb * rj->kbsteps, steps = g->nsteps - s0 < rj->kbsteps ? g->nsteps - s0 : rj->kbsteps;
        for (size_t t = t0; t < t1; t++)
            job->kern->rowlut(g->packing, job->packed + t * g->tile_bytes + s0 * g->step_bytes, steps,
                              rj->tabs + kb * rj->kb_tab_bytes, rj->r16, codes, acc + (t - t0) * acc_tile);
    }
    int32_t rowacc[TB_TILE_N];
    for (size_t t = t0; t < t1; t++) {
        size_t n0 = t * TB_TILE_N, ncols = job->N - n0 < TB_TILE_N ? job->N - n0 : TB_TILE_N;
        const int32_t *a = acc + (t - t0) * acc_tile;
        for (size_t r = 0; r < rj->rows; r++) {
            for (size_t c = 0; c < ncols; c++) rowacc[c] = a[c * rj->rb + r];
            tk_rescale(rowacc, ncols, job->rescale[rj->m0 + r], job->y + (rj->m0 + r) * job->N + n0);
        }
    }
}

static int tb_matmul_rowlut(tb_job *job, tb_parallel_for pfor, void *runner, char *err, size_t errlen) {
    const tb_geom *g = &job->g;
    size_t M = job->M;
    tb_rowlut_job rj = {.job = job};
    rj.kbsteps = g->packing == TB_TERN2 ? TB_ROWLUT_STEPS_TERN2 : TB_ROWLUT_STEPS_TERN167;
    rj.kbgroups = g->packing == TB_TERN2 ? rj.kbsteps : rj.kbsteps * 4; /* table units per k-block */
    rj.nkb = (g->nsteps + rj.kbsteps - 1) / rj.kbsteps;
    rj.ntasks = (g->ntiles + TB_ROWLUT_TILES - 1) / TB_ROWLUT_TILES;
    size_t entries = g->packing == TB_TERN2 ? 81 : 27;
    /* rows per table block: 64 (tern1.67) or 32 (tern2, whose 81-entry tables are 3x larger) */
    size_t row_block = g->packing == TB_TERN2 ? 32 : TB_ROW_BLOCK;
    size_t max_rb = M < row_block ? ((M + 15) / 16 > 2 ? 64 : (M + 15) / 16 * 16) : row_block;
    size_t qt_bytes = (rj.nkb * rj.kbgroups * 4 * max_rb * sizeof(int16_t) + 63) & ~(size_t)63;
    size_t tab_bytes = rj.nkb * rj.kbgroups * entries * max_rb * sizeof(int16_t);
    size_t q_bytes = (M * g->kp + 63) & ~(size_t)63;
    uint8_t *work = tb_scratch_get(0, q_bytes + M * sizeof(float) + qt_bytes + tab_bytes);
    if (!work) {
        snprintf(err, errlen, "out of memory for %zu bytes of row tables", qt_bytes + tab_bytes);
        return -1;
    }
    job->q = (int8_t *)work;
    job->rescale = (float *)(work + q_bytes);
    rj.qt = (int16_t *)(work + ((q_bytes + M * sizeof(float) + 63) & ~(size_t)63));
    rj.tabs = (uint8_t *)rj.qt + qt_bytes;
    int rc = pfor(runner, tb_quant_task, M, job);
    for (size_t m0 = 0; !rc && m0 < M; m0 += row_block) {
        rj.m0 = m0;
        rj.rows = M - m0 < row_block ? M - m0 : row_block;
        rj.r16 = rj.rows <= 16 ? 1 : rj.rows <= 32 ? 2 : 4;
        rj.rb = rj.r16 * 16;
        rj.kb_tab_bytes = rj.kbgroups * entries * rj.rb * sizeof(int16_t);
        rc = pfor(runner, tb_rowtab_task, rj.nkb, &rj);
        if (!rc) rc = pfor(runner, tb_rowlut_task, rj.ntasks, &rj);
        if (!rc && __atomic_load_n(&rj.failed, __ATOMIC_RELAXED)) {
            snprintf(err, errlen, "out of memory for a task's accumulators");
            rc = -1;
        }
    }
    if (rc && !*err) snprintf(err, errlen, "onnxruntime's ParallelFor failed");
    return rc;
}

/* ---- unit-table GEMM (paths with units, M >= TB_UNIT_MIN_ROWS) ----
 * Per k-block of TB_UNIT_BLOCK units (3 K rows each): every row's tables (rows padded to 4 with zero
 * tables), then tasks of two tiles decode their codes once and run all rows over them, adding into int32
 * sums. Activations are stored with a row stride of 3 * units, zero-filled past K. */
#define TB_UNIT_MIN_ROWS 4 /* measured: from here on decoding once beats the per-row kernels */
#define TB_UNIT_ROWS 4     /* rows per gemm call */

typedef struct {
    tb_job *job;
    const tb_unit_kernels *uk;
    size_t Mp, sblock, units, ntasks, np, kb;
    int16_t *tabs;
    int32_t *acc;
    int failed;
} tb_unit_job;

static void tb_unit_tables_task(void *user, size_t m) {
    tb_unit_job *uj = user;
    tb_job *job = uj->job;
    size_t u0 = uj->kb * TB_UNIT_BLOCK, n = uj->units - u0 < TB_UNIT_BLOCK ? uj->units - u0 : TB_UNIT_BLOCK;
    int16_t *tab = uj->tabs + m * TB_UNIT_BLOCK * 32;
    if (m < job->M)
        uj->uk->tables(job->q + m * job->kq + u0 * 3, n, tab);
    else
        memset(tab, 0, n * 32 * sizeof(int16_t));
}

static void tb_unit_gemm_task(void *user, size_t task) {
    tb_unit_job *uj = user;
    tb_job *job = uj->job;
    const tb_geom *g = &job->g;
    size_t t0 = task * 2, nt = g->ntiles - t0 < 2 ? g->ntiles - t0 : 2, ncols = nt * TB_TILE_N;
    size_t s0 = uj->kb * uj->sblock, steps = g->nsteps - s0 < uj->sblock ? g->nsteps - s0 : uj->sblock;
    size_t u0 = uj->kb * TB_UNIT_BLOCK, units = uj->units - u0 < TB_UNIT_BLOCK ? uj->units - u0 : TB_UNIT_BLOCK;
    int16_t *codes = tb_scratch_get(1, TB_UNIT_BLOCK * ncols * sizeof(int16_t));
    if (!codes) {
        __atomic_store_n(&uj->failed, 1, __ATOMIC_RELAXED);
        return;
    }
    for (size_t t = 0; t < nt; t++)
        uj->uk->decode(g->packing, job->packed + (t0 + t) * g->tile_bytes + s0 * g->step_bytes, steps,
                       codes + t * TB_TILE_N, ncols);
    for (size_t m0 = 0; m0 < uj->Mp; m0 += TB_UNIT_ROWS)
        uj->uk->gemm(codes, ncols, units, uj->tabs + m0 * TB_UNIT_BLOCK * 32, TB_UNIT_BLOCK * 32,
                     uj->acc + m0 * uj->np + t0 * TB_TILE_N, uj->np);
}

static void tb_unit_rescale_task(void *user, size_t m) {
    tb_unit_job *uj = user;
    tb_job *job = uj->job;
    tk_rescale(uj->acc + m * uj->np, job->N, job->rescale[m], job->y + m * job->N);
}

static int tb_matmul_units(tb_job *job, tb_parallel_for pfor, void *runner, char *err, size_t errlen) {
    const tb_geom *g = &job->g;
    tb_unit_job uj = {.job = job, .uk = job->kern->units};
    size_t kstep = g->packing == TB_TERN2 ? 4 : 12;
    uj.sblock = 3 * TB_UNIT_BLOCK / kstep;
    uj.units = (g->kp + 2) / 3;
    job->kq = 3 * uj.units;
    uj.Mp = (job->M + TB_UNIT_ROWS - 1) / TB_UNIT_ROWS * TB_UNIT_ROWS;
    uj.np = g->ntiles * TB_TILE_N;
    uj.ntasks = (g->ntiles + 1) / 2;
    size_t q_bytes = (job->M * job->kq + 63) & ~(size_t)63;
    size_t r_bytes = (job->M * sizeof(float) + 63) & ~(size_t)63;
    size_t t_bytes = uj.Mp * TB_UNIT_BLOCK * 32 * sizeof(int16_t);
    size_t a_bytes = uj.Mp * uj.np * sizeof(int32_t);
    uint8_t *work = tb_scratch_get(0, q_bytes + r_bytes + t_bytes + a_bytes);
    if (!work) {
        snprintf(err, errlen, "out of memory for %zu bytes of unit tables and sums", t_bytes + a_bytes);
        return -1;
    }
    job->q = (int8_t *)work;
    job->rescale = (float *)(work + q_bytes);
    uj.tabs = (int16_t *)(work + q_bytes + r_bytes);
    uj.acc = (int32_t *)(work + q_bytes + r_bytes + t_bytes);
    memset(uj.acc, 0, a_bytes);
    int rc = pfor(runner, tb_quant_task, job->M, job);
    size_t nkb = (g->nsteps + uj.sblock - 1) / uj.sblock;
    for (uj.kb = 0; !rc && uj.kb < nkb; uj.kb++) {
        rc = pfor(runner, tb_unit_tables_task, uj.Mp, &uj);
        if (!rc) rc = pfor(runner, tb_unit_gemm_task, uj.ntasks, &uj);
        if (!rc && __atomic_load_n(&uj.failed, __ATOMIC_RELAXED)) {
            snprintf(err, errlen, "out of memory for a task's unit codes");
            return -1;
        }
    }
    if (!rc) rc = pfor(runner, tb_unit_rescale_task, job->M, &uj);
    if (rc && !*err) snprintf(err, errlen, "onnxruntime's ParallelFor failed");
    return rc;
}

int tb_serial_for(void *runner, void (*fn)(void *, size_t), size_t total, void *user) {
    (void)runner;
    for (size_t i = 0; i < total; i++) fn(user, i);
    return 0;
}

int tb_matmul(const tb_kernels *kern, const float *x, size_t M, size_t K, const uint8_t *packed, int packing,
              size_t N, float scale, float *y, tb_parallel_for pfor, void *runner, char *err, size_t errlen) {
    *err = 0;
    tb_job job = {.kern = kern, .x = x, .packed = packed, .y = y, .M = M, .K = K, .N = N, .scale = scale};
    if (tb_geometry((int64_t)K, (int64_t)N, packing, &job.g)) {
        snprintf(err, errlen, "bad geometry K=%zu N=%zu packing=%d", K, N, packing);
        return -1;
    }
    job.kq = job.g.kp;
    if (M == 0) return 0;
    if (!pfor) pfor = tb_serial_for;
    if (kern->units && M >= TB_UNIT_MIN_ROWS) return tb_matmul_units(&job, pfor, runner, err, errlen);
    if (kern->rowlut && M >= TB_ROWLUT_MIN_ROWS) return tb_matmul_rowlut(&job, pfor, runner, err, errlen);
    size_t qbytes = (M * job.g.kp + 63) & ~(size_t)63;
    size_t tbytes = M * job.g.tab_row;
    uint8_t *work = tb_scratch_get(0, qbytes + tbytes + M * sizeof(float) + 64);
    if (!work) {
        snprintf(err, errlen, "out of memory for %zu rows of activation tables", M);
        return -1;
    }
    job.q = (int8_t *)work;
    job.tab = work + qbytes;
    job.rescale = (float *)(work + qbytes + tbytes);
    size_t rows = M < TB_ROW_BLOCK ? M : TB_ROW_BLOCK;
    size_t chunk = packing == TB_TERN2 ? TB_FLUSH_TERN2 : TB_FLUSH_TERN167; /* k-blocks end at flushes */
    size_t kblock = TB_TABLE_BUDGET / (rows * job.g.tab_step) / chunk * chunk;
    job.kblock = kblock < chunk ? chunk : kblock;
    int rc = pfor(runner, tb_row_task, M, &job);
    if (!rc) rc = pfor(runner, tb_tile_task, job.g.ntiles, &job);
    if (rc) snprintf(err, errlen, "onnxruntime's ParallelFor failed");
    return rc;
}

/* ---- plain C API ---- */

TB_EXPORT const char *tritbench_available_kernels(void) {
#if defined(__aarch64__)
    return "neon,portable";
#elif defined(__x86_64__) || defined(__i386__)
    return tb_has_avx512() ? "avx512,avx2,portable" : tb_has_avx2() ? "avx2,portable" : "portable";
#else
    return "portable";
#endif
}

/* The path the next matmul will use (TRITBENCH_KERNEL honoured), or NULL if TRITBENCH_KERNEL is invalid. */
TB_EXPORT const char *tritbench_kernel_name(void) {
    char err[160];
    const tb_kernels *k = tb_select(err, sizeof err);
    return k ? k->name : NULL;
}

TB_EXPORT int64_t tritbench_packed_size(int64_t K, int64_t N, const char *packing) {
    return tb_packed_size(K, N, tb_packing_from_name(packing));
}

/* Y[M, N] = TernaryMatMul(X[M, K]) on the calling thread. Returns 0, or -1 with a message in err. */
TB_EXPORT int tritbench_matmul(const float *x, int64_t M, int64_t K, const uint8_t *packed, int64_t packed_bytes,
                               const char *packing, int64_t N, float scale, float *y, char *err, size_t errlen) {
    int p = tb_packing_from_name(packing);
    if (p < 0) {
        snprintf(err, errlen, "unknown packing '%s' (expected tern2 or tern1.67)", packing);
        return -1;
    }
    int64_t want = tb_packed_size(K, N, p);
    if (M < 0 || want < 0 || packed_bytes != want) {
        snprintf(err, errlen, "packed weights have %lld bytes; M=%lld K=%lld N=%lld %s needs %lld",
                 (long long)packed_bytes, (long long)M, (long long)K, (long long)N, packing, (long long)want);
        return -1;
    }
    const tb_kernels *kern = tb_select(err, errlen);
    if (!kern) return -1;
    return tb_matmul(kern, x, (size_t)M, (size_t)K, packed, p, (size_t)N, scale, y, NULL, NULL, err, errlen);
}
