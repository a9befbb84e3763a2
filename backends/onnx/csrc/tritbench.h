/* Internal interface between the driver (tb_driver.c) and the per-CPU kernel paths (tb_portable.c,
 * tb_avx2.c, tb_neon.c). The packed layouts are documented in backends/onnx/packing.py.
 *
 * Naming: functions named tk_* are the integer kernels and hold no multiply instruction (checked by
 * tests/test_onnx_disasm.py); tk_rescale is the one place that multiplies, a float per output.
 * tq_* quantize activations to int8 (float work, outside the integer kernel). */
#ifndef TRITBENCH_H
#define TRITBENCH_H

#include <stddef.h>
#include <stdint.h>

#define TB_TILE_N 64
#define TB_TERN2 0
#define TB_TERN167 1
/* Bytes of activation table per step and row: a step is one pair of groups (tern2, 4 K rows) or one duo
 * of pairs (tern1.67, 12 K rows); each pair has two 16-entry int16 tables split in low/high bytes. */
#define TB_TAB_PAIR 64
/* Weight bytes per step and tile. */
#define TB_STEP_TERN2 64
#define TB_STEP_TERN167 160

/* The per-row kernels' int16 flush interval, in steps: a lane sums one group's table values (|v| <= 254 per
 * tern2 pair, |~v| <= 382 per tern1.67 group, two groups of it a duo), then two lanes are added: 64 * 254 * 2
 * and 21 * 2 * 382 * 2 stay below 32768. The driver sizes k-blocks in these units. */
#define TB_FLUSH_TERN2 64
#define TB_FLUSH_TERN167 21

/* Weights are streamed once: the per-row kernels prefetch them 16 KB ahead into L2 (locality 2: prefetcht1).
 * The hardware prefetchers stop at 4 KB page boundaries; cold throughput doubled with this (nearer or L1
 * prefetches did worse). */
#define TB_PF(p) __builtin_prefetch((const char *)(p) + 16384, 0, 2)

/* Optional GEMM path on 32-entry unit tables (tb_avx512.c): a unit is 3 weights of one column along K
 * (k = 3u .. 3u + 2, in both packings), its code d0 + 3*d1 + 9*d2 < 27. */
typedef struct tb_unit_kernels {
    /* One row's tables: units * 32 int16 (entry e: the sum of the unit's activations weighted by e's
     * digits - 1), from units * 3 int8 activations. */
    void (*tables)(const int8_t *q, size_t units, int16_t *tab);
    /* nsteps steps of one tile -> int16 codes[unit][64 columns], cstride int16 per unit:
     * ceil(nsteps * 4 / 3) units (tern2; nsteps a multiple of 3 except at the end of K) or 4 * nsteps. */
    void (*decode)(int packing, const uint8_t *w, size_t nsteps, int16_t *codes, size_t cstride);
    /* Four rows, ncols (64 or 128) columns: acc[r * astride + c] += sum over units of the row's table
     * entry at code[u][c] (codes decoded with cstride = ncols); tables tstride int16 apart per row. At
     * most TB_UNIT_BLOCK units a call. */
    void (*gemm)(const int16_t *codes, size_t ncols, size_t units, const int16_t *tab, size_t tstride,
                 int32_t *acc, size_t astride);
} tb_unit_kernels;

/* Units per int16 block: 84 * 381 stays below 32767; 252 K rows are 63 tern2 or 21 tern1.67 steps. */
#define TB_UNIT_BLOCK 84

typedef struct tb_kernels {
    const char *name;
    /* Quantize one row of k floats to int8 (rint, clamp +-127), zero-fill up to kp; return absmax, or 0
     * (and all-zero q) when 127/absmax is not finite. */
    float (*quantize)(const float *x, size_t k, size_t kp, int8_t *q);
    /* Build one row's lookup tables: npairs * TB_TAB_PAIR bytes from kp = npairs * (4 or 6) int8. */
    void (*tables)(int packing, const int8_t *q, size_t npairs, uint8_t *tab);
    /* Add to out[r * 64 + c] (r < rows) the table sums of nsteps steps of one tile's weights w, reading
     * row r's tables at tab + r * tab_stride. tern1.67 negative groups add ~v = -v - 1: the driver adds
     * the per-column count stored after the tile's weights. */
    void (*tile)(int packing, const uint8_t *w, const uint8_t *tab, size_t tab_stride, size_t rows,
                 size_t nsteps, int32_t *out);
    /* Optional GEMM path for many rows ("row LUT"): tables indexed by a whole weight code (81 entries per
     * 4 weights for tern2, 27 per 3 weights for tern1.67) whose entries are vectors over 16 * r16 rows
     * (int16), so one code adds 4 (3) weights x 16 * r16 rows with r16 vector adds. NULL where a path has
     * none. rowtab: from qt (units * 4 (3) K-rows, each 16 * r16 int16 activations of consecutive rows)
     * build units * entries * 32 * r16 bytes of tables. */
    void (*rowtab)(int packing, const int16_t *qt, size_t units, size_t r16, uint8_t *tab);
    /* rowlut: for nsteps steps of one tile (at most TB_ROWLUT_STEPS), add the exact sums to
     * acc[c * 16 * r16 + r] (c < 64); codes is scratch of TB_ROWLUT_GROUPS * 64 uint16. */
    void (*rowlut)(int packing, const uint8_t *w, size_t nsteps, const uint8_t *tab, size_t r16, uint16_t *codes,
                   int32_t *acc);
    /* Optional unit-table GEMM (NULL where a path has none); preferred over rowlut for M >= TB_UNIT_MIN_ROWS. */
    const tb_unit_kernels *units;
} tb_kernels;

/* Row-LUT k-blocks: int16 sums of at most 64 tables of |v| <= 508 (tern2, 4 weights) or 84 of |v| <= 381
 * (tern1.67, 3 weights); tern2 blocks are halved to keep a block's tables within L2. */
#define TB_ROWLUT_STEPS_TERN2 32
#define TB_ROWLUT_STEPS_TERN167 21
#define TB_ROWLUT_GROUPS 84

extern const tb_kernels tb_kernels_portable;
#if defined(__x86_64__) || defined(__i386__)
extern const tb_kernels tb_kernels_avx2;
extern const tb_kernels tb_kernels_avx512;
extern const tb_unit_kernels tb_unit_kernels_avx512;
/* tb_kernels.tile on whole zmm (tb_avx512.c). */
void tk_avx512_tile(int packing, const uint8_t *w, const uint8_t *tab, size_t tab_stride, size_t rows, size_t nsteps,
                    int32_t *out);
#endif
#if defined(__aarch64__)
extern const tb_kernels tb_kernels_neon;
#endif

/* y[i] = (float)acc[i] * rescale. */
void tk_rescale(const int32_t *acc, size_t n, float rescale, float *y);

/* Portable helpers shared by the paths. */
float tq_portable_quantize(const float *x, size_t k, size_t kp, int8_t *q);
void tq_quantize_tail(const float *x, size_t k, float inv, int8_t *q);

#endif
