/* AVX-512 (F, BW, VBMI) paths: per-row table lookups on zmm for few rows, and for GEMM "unit tables"
 * looked up with vpermb. This translation unit alone is
 * compiled with -mavx512f -mavx512bw -mavx512vbmi; the driver calls it only when the CPU and OS have them.
 *
 * A unit is 3 consecutive weights of a column along K, in both packings (tern2's pairs are regrouped into
 * triples when decoded). Its code d0 + 3*d1 + 9*d2 (digits d = t + 1) is < 27, so a unit's partial sums
 * for one activation row fit one zmm of 32 int16 entries, and one byte permute fetches them for 32 columns
 * at once: 96 weight-row products per lookup and one vpaddw, with no sign fix-up (the tern1.67 sign is
 * folded back into the code when decoding). Decoded codes are stored as byte pairs (2c, 2c + 1) so that
 * vpermb returns whole int16 entries: measured here, vpermb zmm runs 1.6x as often as vpermw zmm.
 * Decoding a tile costs about one row of lookups, so this path pays from a few rows on; fewer rows use
 * the per-row kernels at the end of this file.
 *
 * Exactness: int16 lanes hold at most TB_UNIT_BLOCK unit sums (|v| <= 381) before they are widened into
 * int32, so no partial sum can overflow for any K. */
#include <immintrin.h>

#include "tritbench.h"

/* Table entries (< 27) whose digit j is 0 (the weight is -1: subtract q_j) or 2 (+1: add q_j). */
static const __mmask32 TERN3_NEG[3] = {0x1249249, 0x1c0e07, 0x1ff};
static const __mmask32 TERN3_POS[3] = {0x4924924, 0x70381c0, 0x7fc0000};

/* One row's tables for `units` units from its int8 activations q (3 per unit): 32 int16 each. */
static void tk_avx512_unit_tables(const int8_t *q, size_t units, int16_t *tab) {
    for (; units; units--, q += 3, tab += 32) {
        __m512i v = _mm512_setzero_si512();
        for (int j = 0; j < 3; j++) {
            __m512i b = _mm512_set1_epi16(q[j]);
            v = _mm512_mask_sub_epi16(v, TERN3_NEG[j], v, b);
            v = _mm512_mask_add_epi16(v, TERN3_POS[j], v, b);
        }
        _mm512_storeu_si512(tab, v);
    }
}

/* 16 code bytes c -> 16 int16 lanes holding the byte indices (2c, 2c + 1) of entry c. */
static inline void tk_avx512_put16(__m128i codes, int16_t *dst) {
    __m256i c = _mm256_cvtepu8_epi16(codes);
    __m256i lo = _mm256_add_epi16(c, c);
    __m256i pair = _mm256_add_epi16(_mm256_add_epi16(lo, _mm256_slli_epi16(lo, 8)), _mm256_set1_epi16(0x100));
    _mm256_storeu_si256((__m256i *)dst, pair);
}

static inline __m256i ld(const void *p) { return _mm256_loadu_si256((const __m256i *)p); }

/* Index plane x (0..3: 32-byte vector x / 2, low or high nibbles) of one pair's 64 bytes. Byte i is group
 * i / 16 of the pair and tile column 16 * x + i % 16 (packing.py's layout). */
static inline __m256i tk_avx512_plane(const uint8_t *pair, int x) {
    __m256i raw = ld(pair + ((x >> 1) << 5));
    return _mm256_and_si256((x & 1) ? _mm256_srli_epi16(raw, 4) : raw, _mm256_set1_epi8(0x0f));
}

/* tern1.67: each step (duo) is 4 units, their code 13 -+ index by the sign bit. */
static inline __attribute__((always_inline)) void tk_avx512_decode3(const uint8_t *w, size_t nsteps, int16_t *codes,
                                                                    size_t cstride) {
    const __m256i zero = _mm256_setzero_si256(), c13 = _mm256_set1_epi8(13);
    for (; nsteps; nsteps--, w += TB_STEP_TERN167) {
        __m256i s = ld(w + 128);
        for (int p = 0; p < 2; p++, codes += cstride << 1) {
            for (int x = 0; x < 4; x++) {
                __m256i m = _mm256_cmpgt_epi8(zero, s); /* sign bit 1: code = 13 - index */
                s = _mm256_add_epi8(s, s);
                __m256i c = _mm256_add_epi8(c13, _mm256_sub_epi8(_mm256_xor_si256(tk_avx512_plane(w + (p << 6), x), m), m));
                tk_avx512_put16(_mm256_castsi256_si128(c), codes + (x << 4));
                tk_avx512_put16(_mm256_extracti128_si256(c, 1), codes + cstride + (x << 4));
            }
        }
    }
}

/* tern2: groups G0..G5 of three steps (2 weights each, index g = d0 + 3*d1) regrouped into four triples:
 * T0 = G0 + 9*(G1 % 3), T1 = G1 / 3 + 3*G2, T2 = G3 + 9*(G4 % 3), T3 = G4 / 3 + 3*G5, with 16-entry byte
 * tables (vpshufb). A missing step at the end of K reads as zero weights (index 4). */
static inline __attribute__((always_inline)) void tk_avx512_decode2(const uint8_t *w, size_t nsteps, int16_t *codes,
                                                                    size_t cstride) {
    const __m128i low9 = _mm_setr_epi8(0, 9, 18, 0, 9, 18, 0, 9, 18, 0, 0, 0, 0, 0, 0, 0);
    const __m128i high = _mm_setr_epi8(0, 0, 0, 1, 1, 1, 2, 2, 2, 0, 0, 0, 0, 0, 0, 0);
    const __m128i times3 = _mm_setr_epi8(0, 3, 6, 9, 12, 15, 18, 21, 24, 0, 0, 0, 0, 0, 0, 0);
    const __m256i zeros = _mm256_set1_epi8(4);
    for (; nsteps; nsteps = nsteps > 3 ? nsteps - 3 : 0, w += 3 * TB_STEP_TERN2, codes += cstride << 2) {
        for (int x = 0; x < 4; x++) {
            __m256i a = tk_avx512_plane(w, x);
            __m256i b = nsteps > 1 ? tk_avx512_plane(w + TB_STEP_TERN2, x) : zeros;
            __m256i c = nsteps > 2 ? tk_avx512_plane(w + 2 * TB_STEP_TERN2, x) : zeros;
            __m128i g0 = _mm256_castsi256_si128(a), g1 = _mm256_extracti128_si256(a, 1);
            __m128i g2 = _mm256_castsi256_si128(b), g3 = _mm256_extracti128_si256(b, 1);
            __m128i g4 = _mm256_castsi256_si128(c), g5 = _mm256_extracti128_si256(c, 1);
            int16_t *o = codes + (x << 4);
            tk_avx512_put16(_mm_add_epi8(g0, _mm_shuffle_epi8(low9, g1)), o);
            tk_avx512_put16(_mm_add_epi8(_mm_shuffle_epi8(high, g1), _mm_shuffle_epi8(times3, g2)), o + cstride);
            tk_avx512_put16(_mm_add_epi8(g3, _mm_shuffle_epi8(low9, g4)), o + (cstride << 1));
            tk_avx512_put16(_mm_add_epi8(_mm_shuffle_epi8(high, g4), _mm_shuffle_epi8(times3, g5)),
                            o + (cstride << 1) + cstride);
        }
    }
}

/* Decode nsteps steps of one tile into codes[unit][column] (int16 byte-index pairs, cstride int16 per
 * unit): ceil(nsteps * 4 / 3) units for tern2, 4 * nsteps for tern1.67. The row stride is one of two
 * constants, so the pointer steps stay shifts (no imul). */
static void tk_avx512_unit_decode(int packing, const uint8_t *w, size_t nsteps, int16_t *codes, size_t cstride) {
    if (packing == TB_TERN2) {
        if (cstride == 2 * TB_TILE_N)
            tk_avx512_decode2(w, nsteps, codes, 2 * TB_TILE_N);
        else
            tk_avx512_decode2(w, nsteps, codes, TB_TILE_N);
    } else {
        if (cstride == 2 * TB_TILE_N)
            tk_avx512_decode3(w, nsteps, codes, 2 * TB_TILE_N);
        else
            tk_avx512_decode3(w, nsteps, codes, TB_TILE_N);
    }
}

/* Four rows x NV zmm of 32 columns: acc[r * astride + c] += sum over units of T_r[u][code[u][c]].
 * tab holds the rows' tables (row stride tstride int16, 32 per unit), codes cstride int16 per unit. */
#define TK_AVX512_GEMM_FN(NAME, NV)                                                                      \
    static void NAME(const int16_t *codes, size_t units, const int16_t *tab, size_t tstride, \
                     int32_t *acc, size_t astride) {                                                     \
        __m512i a[4][NV];                                                                                \
        for (int r = 0; r < 4; r++)                                                                      \
            for (int j = 0; j < NV; j++) a[r][j] = _mm512_setzero_si512();                               \
        const int16_t *t0 = tab, *t1 = t0 + tstride, *t2 = t1 + tstride, *t3 = t2 + tstride;             \
        for (; units; units--) {                                                                         \
            __m512i ix[NV];                                                                              \
            for (int j = 0; j < NV; j++) ix[j] = _mm512_loadu_si512(codes + (j << 5));                   \
            __m512i t;                                                                                   \
            t = _mm512_loadu_si512(t0);                                                                  \
            for (int j = 0; j < NV; j++) a[0][j] = _mm512_add_epi16(a[0][j], _mm512_permutexvar_epi8(ix[j], t)); \
            t = _mm512_loadu_si512(t1);                                                                  \
            for (int j = 0; j < NV; j++) a[1][j] = _mm512_add_epi16(a[1][j], _mm512_permutexvar_epi8(ix[j], t)); \
            t = _mm512_loadu_si512(t2);                                                                  \
            for (int j = 0; j < NV; j++) a[2][j] = _mm512_add_epi16(a[2][j], _mm512_permutexvar_epi8(ix[j], t)); \
            t = _mm512_loadu_si512(t3);                                                                  \
            for (int j = 0; j < NV; j++) a[3][j] = _mm512_add_epi16(a[3][j], _mm512_permutexvar_epi8(ix[j], t)); \
            codes += NV << 5;                                                                            \
            t0 += 32;                                                                                    \
            t1 += 32;                                                                                    \
            t2 += 32;                                                                                    \
            t3 += 32;                                                                                    \
        }                                                                                                \
        for (int r = 0; r < 4; r++, acc += astride) {                                                    \
            for (int j = 0; j < NV; j++) {                                                               \
                int32_t *o = acc + (j << 5);                                                             \
                __m512i lo = _mm512_cvtepi16_epi32(_mm512_castsi512_si256(a[r][j]));                     \
                __m512i hi = _mm512_cvtepi16_epi32(_mm512_extracti64x4_epi64(a[r][j], 1));               \
                _mm512_storeu_si512(o, _mm512_add_epi32(_mm512_loadu_si512(o), lo));                     \
                _mm512_storeu_si512(o + 16, _mm512_add_epi32(_mm512_loadu_si512(o + 16), hi));           \
            }                                                                                            \
        }                                                                                                \
    }

TK_AVX512_GEMM_FN(tk_avx512_gemm_64, 2)
TK_AVX512_GEMM_FN(tk_avx512_gemm_128, 4)

static void tk_avx512_unit_gemm(const int16_t *codes, size_t ncols, size_t units, const int16_t *tab, size_t tstride,
                                int32_t *acc, size_t astride) {
    if (ncols == 2 * TB_TILE_N)
        tk_avx512_gemm_128(codes, units, tab, tstride, acc, astride);
    else
        tk_avx512_gemm_64(codes, units, tab, tstride, acc, astride);
}

/* ---- per-row kernels (few rows: decode steps) ----
 * The AVX2 per-row lookups (tb_avx2.c) on whole zmm: one 64-byte load is a step's two 32-byte vectors, so
 * its low nibbles are index planes 0 and 2 and its high nibbles planes 1 and 3, and the pair's two ymm
 * tables, broadcast to both halves, serve both. Half the instructions per weight byte of the ymm loop,
 * which at one thread was bound by its shuffles rather than by memory. Accumulator lanes: (group 2p,
 * group 2p+1) of columns c..c+7, then the same for columns c+32..c+39; flushes add each lane pair. */
/* Lanes (0 + 1) and (2 + 3) of an int16 accumulator, widened and added to columns o[0..7] and o[32..39]. */
static inline void tk_avx512_flush(__m512i acc, int32_t *o) {
    __m256i lo = _mm512_castsi512_si256(acc), hi = _mm512_extracti64x4_epi64(acc, 1);
    __m128i s0 = _mm_add_epi16(_mm256_castsi256_si128(lo), _mm256_extracti128_si256(lo, 1));
    __m128i s1 = _mm_add_epi16(_mm256_castsi256_si128(hi), _mm256_extracti128_si256(hi, 1));
    _mm256_storeu_si256((__m256i *)o, _mm256_add_epi32(ld(o), _mm256_cvtepi16_epi32(s0)));
    _mm256_storeu_si256((__m256i *)(o + 32), _mm256_add_epi32(ld(o + 32), _mm256_cvtepi16_epi32(s1)));
}

static inline void tk_avx512_flush_all(const __m512i a[4], int32_t *out) {
    for (int j = 0; j < 4; j++) tk_avx512_flush(a[j], out + (j << 3));
}

/* Table lookups of one index vector: 64 int16 values (low/high bytes from tl/th) into a0 (first 8 columns
 * of each lane) and a1 (last 8); neg: lanes whose group is negative get ~v (tern1.67). */
#define TK_ZLOOKUP(ix, neg, a0, a1)                                                          \
    do {                                                                                     \
        __m512i lo_ = _mm512_shuffle_epi8(tl, (ix)), hi_ = _mm512_shuffle_epi8(th, (ix));    \
        lo_ = _mm512_mask_sub_epi8(lo_, (neg), ones, lo_);                                   \
        hi_ = _mm512_mask_sub_epi8(hi_, (neg), ones, hi_);                                   \
        a0 = _mm512_add_epi16(a0, _mm512_unpacklo_epi8(lo_, hi_));                           \
        a1 = _mm512_add_epi16(a1, _mm512_unpackhi_epi8(lo_, hi_));                           \
    } while (0)

static inline __m512i tk_avx512_bcast(const uint8_t *p) { return _mm512_broadcast_i64x4(ld(p)); }

/* One row, one 64-column tile, tern2 (no negative lanes: the mask is empty). */
static void tk_avx512_tern2_row(const uint8_t *w, const uint8_t *tab, size_t npairs, int32_t *out) {
    const __m512i m4 = _mm512_set1_epi8(0x0f), ones = _mm512_set1_epi8(-1);
    while (npairs) {
        size_t n = npairs < TB_FLUSH_TERN2 ? npairs : TB_FLUSH_TERN2;
        npairs -= n;
        __m512i a[4] = {_mm512_setzero_si512(), _mm512_setzero_si512(), _mm512_setzero_si512(),
                        _mm512_setzero_si512()};
        for (; n; n--) {
            TB_PF(w);
            __m512i tl = tk_avx512_bcast(tab), th = tk_avx512_bcast(tab + 32), v = _mm512_loadu_si512(w);
            TK_ZLOOKUP(_mm512_and_si512(v, m4), 0, a[0], a[1]);
            TK_ZLOOKUP(_mm512_and_si512(_mm512_srli_epi16(v, 4), m4), 0, a[2], a[3]);
            w += TB_STEP_TERN2;
            tab += TB_TAB_PAIR;
        }
        tk_avx512_flush_all(a, out);
    }
}

/* One row, one 64-column tile, tern1.67. The sign vector's bit 7 - j of byte i belongs to byte i of index
 * plane j (pair 0: planes 0-3, bits 7-4; pair 1: bits 3-0); with the vector broadcast to both halves, one
 * test per lookup picks plane x's bit in the low half and plane x + 2's in the high half. */
static void tk_avx512_tern3_row(const uint8_t *w, const uint8_t *tab, size_t nduos, int32_t *out) {
    const __m512i m4 = _mm512_set1_epi8(0x0f), ones = _mm512_set1_epi8(-1);
    const __m512i bit[4] = {
        _mm512_inserti64x4(_mm512_set1_epi8((char)0x80), _mm256_set1_epi8(0x20), 1),
        _mm512_inserti64x4(_mm512_set1_epi8(0x40), _mm256_set1_epi8(0x10), 1),
        _mm512_inserti64x4(_mm512_set1_epi8(0x08), _mm256_set1_epi8(0x02), 1),
        _mm512_inserti64x4(_mm512_set1_epi8(0x04), _mm256_set1_epi8(0x01), 1),
    };
    while (nduos) {
        size_t n = nduos < TB_FLUSH_TERN167 ? nduos : TB_FLUSH_TERN167;
        nduos -= n;
        __m512i a[4] = {_mm512_setzero_si512(), _mm512_setzero_si512(), _mm512_setzero_si512(),
                        _mm512_setzero_si512()};
        for (; n; n--) {
            TB_PF(w);
            TB_PF(w + 64);
            TB_PF(w + 128);
            __m512i s = tk_avx512_bcast(w + 128);
            for (int p = 0; p < 2; p++) {
                __m512i tl = tk_avx512_bcast(tab + (p << 6)), th = tk_avx512_bcast(tab + (p << 6) + 32);
                __m512i v = _mm512_loadu_si512(w + (p << 6));
                TK_ZLOOKUP(_mm512_and_si512(v, m4), _mm512_test_epi8_mask(s, bit[2 * p]), a[0], a[1]);
                TK_ZLOOKUP(_mm512_and_si512(_mm512_srli_epi16(v, 4), m4), _mm512_test_epi8_mask(s, bit[2 * p + 1]),
                           a[2], a[3]);
            }
            w += TB_STEP_TERN167;
            tab += 2 * TB_TAB_PAIR;
        }
        tk_avx512_flush_all(a, out);
    }
}

void tk_avx512_tile(int packing, const uint8_t *w, const uint8_t *tab, size_t tab_stride, size_t rows, size_t nsteps,
                    int32_t *out) {
    for (; rows; rows--) {
        if (packing == TB_TERN2)
            tk_avx512_tern2_row(w, tab, nsteps, out);
        else
            tk_avx512_tern3_row(w, tab, nsteps, out);
        tab += tab_stride;
        out += TB_TILE_N;
    }
}

const tb_unit_kernels tb_unit_kernels_avx512 = {
    .tables = tk_avx512_unit_tables,
    .decode = tk_avx512_unit_decode,
    .gemm = tk_avx512_unit_gemm,
};
