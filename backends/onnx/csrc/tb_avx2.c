/* AVX2 path (this translation unit alone is compiled with -mavx2 -mfma; the driver only calls it when
 * __builtin_cpu_supports("avx2")).
 *
 * Per pair of groups the row's tables are two registers: TL = low bytes of the 16 int16 entries of group
 * 2p (lane 0) and 2p+1 (lane 1), TH = the high bytes. One 32-byte index vector (one nibble plane of V0
 * or V1) then costs: 2 vpshufb (low and high bytes of 32 table values), [tern1.67: 2 vpxor with the sign
 * mask, giving ~v], 2 vpunpck{l,h}bw (back to int16) and 2 vpaddw. int16 sums are widened to int32 before
 * they can overflow: every 64 pairs (tern2, |v| <= 254) or 21 duos (tern1.67, |~v| <= 382), when the two
 * lanes (the two groups of a pair, same columns) are also added together. */
#include <immintrin.h>
#include <string.h>

#include "tritbench.h"


static inline __m256i ld(const void *p) { return _mm256_loadu_si256((const __m256i *)p); }

/* Add the two lanes of an int16 accumulator (8 columns) into 8 int32 sums. */
static inline void tk_avx2_flush(__m256i acc, int32_t *o) {
    __m128i s = _mm_add_epi16(_mm256_castsi256_si128(acc), _mm256_extracti128_si256(acc, 1));
    __m256i wide = _mm256_add_epi32(ld(o), _mm256_cvtepi16_epi32(s));
    _mm256_storeu_si256((__m256i *)o, wide);
}

#define TK_LOOKUP(ix, a0, a1)                                            \
    do {                                                                 \
        __m256i lo_ = _mm256_shuffle_epi8(tl, (ix));                     \
        __m256i hi_ = _mm256_shuffle_epi8(th, (ix));                     \
        a0 = _mm256_add_epi16(a0, _mm256_unpacklo_epi8(lo_, hi_));       \
        a1 = _mm256_add_epi16(a1, _mm256_unpackhi_epi8(lo_, hi_));       \
    } while (0)

#define TK_LOOKUP_SIGNED(ix, a0, a1)                                     \
    do {                                                                 \
        __m256i m_ = _mm256_cmpgt_epi8(zero, s);                         \
        s = _mm256_add_epi8(s, s);                                       \
        __m256i lo_ = _mm256_xor_si256(_mm256_shuffle_epi8(tl, (ix)), m_); \
        __m256i hi_ = _mm256_xor_si256(_mm256_shuffle_epi8(th, (ix)), m_); \
        a0 = _mm256_add_epi16(a0, _mm256_unpacklo_epi8(lo_, hi_));       \
        a1 = _mm256_add_epi16(a1, _mm256_unpackhi_epi8(lo_, hi_));       \
    } while (0)

#define TK_FLUSH_ALL(o)                                                  \
    do {                                                                 \
        tk_avx2_flush(a0, (o));                                          \
        tk_avx2_flush(a1, (o) + 8);                                      \
        tk_avx2_flush(a2, (o) + 16);                                     \
        tk_avx2_flush(a3, (o) + 24);                                     \
        tk_avx2_flush(a4, (o) + 32);                                     \
        tk_avx2_flush(a5, (o) + 40);                                     \
        tk_avx2_flush(a6, (o) + 48);                                     \
        tk_avx2_flush(a7, (o) + 56);                                     \
    } while (0)

/* One row, one 64-column tile, tern2. */
static void tk_avx2_tern2_row(const uint8_t *w, const uint8_t *tab, size_t npairs, int32_t *out) {
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    while (npairs) {
        size_t n = npairs < TB_FLUSH_TERN2 ? npairs : TB_FLUSH_TERN2;
        npairs -= n;
        __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
        for (; n; n--) {
            TB_PF(w);
            __m256i tl = ld(tab), th = ld(tab + 32);
            __m256i w0 = ld(w), w1 = ld(w + 32);
            TK_LOOKUP(_mm256_and_si256(w0, m4), a0, a1);
            TK_LOOKUP(_mm256_and_si256(_mm256_srli_epi16(w0, 4), m4), a2, a3);
            TK_LOOKUP(_mm256_and_si256(w1, m4), a4, a5);
            TK_LOOKUP(_mm256_and_si256(_mm256_srli_epi16(w1, 4), m4), a6, a7);
            w += TB_STEP_TERN2;
            tab += TB_TAB_PAIR;
        }
        TK_FLUSH_ALL(out);
    }
}

/* One row, one 64-column tile, tern1.67. */
static void tk_avx2_tern3_row(const uint8_t *w, const uint8_t *tab, size_t nduos, int32_t *out) {
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    const __m256i zero = _mm256_setzero_si256();
    while (nduos) {
        size_t n = nduos < TB_FLUSH_TERN167 ? nduos : TB_FLUSH_TERN167;
        nduos -= n;
        __m256i a0 = zero, a1 = zero, a2 = zero, a3 = zero, a4 = zero, a5 = zero, a6 = zero, a7 = zero;
        for (; n; n--) {
            TB_PF(w);
            TB_PF(w + 64);
            TB_PF(w + 128);
            __m256i s = ld(w + 128);
            __m256i tl = ld(tab), th = ld(tab + 32);
            __m256i w0 = ld(w), w1 = ld(w + 32);
            TK_LOOKUP_SIGNED(_mm256_and_si256(w0, m4), a0, a1);
            TK_LOOKUP_SIGNED(_mm256_and_si256(_mm256_srli_epi16(w0, 4), m4), a2, a3);
            TK_LOOKUP_SIGNED(_mm256_and_si256(w1, m4), a4, a5);
            TK_LOOKUP_SIGNED(_mm256_and_si256(_mm256_srli_epi16(w1, 4), m4), a6, a7);
            tl = ld(tab + 64);
            th = ld(tab + 96);
            w0 = ld(w + 64);
            w1 = ld(w + 96);
            TK_LOOKUP_SIGNED(_mm256_and_si256(w0, m4), a0, a1);
            TK_LOOKUP_SIGNED(_mm256_and_si256(_mm256_srli_epi16(w0, 4), m4), a2, a3);
            TK_LOOKUP_SIGNED(_mm256_and_si256(w1, m4), a4, a5);
            TK_LOOKUP_SIGNED(_mm256_and_si256(_mm256_srli_epi16(w1, 4), m4), a6, a7);
            w += TB_STEP_TERN167;
            tab += 2 * TB_TAB_PAIR;
        }
        TK_FLUSH_ALL(out);
    }
}

static void tk_avx2_tile(int packing, const uint8_t *w, const uint8_t *tab, size_t tab_stride, size_t rows,
                         size_t nsteps, int32_t *out) {
    for (; rows; rows--) {
        if (packing == TB_TERN2)
            tk_avx2_tern2_row(w, tab, nsteps, out);
        else
            tk_avx2_tern3_row(w, tab, nsteps, out);
        tab += tab_stride;
        out += TB_TILE_N;
    }
}

/* Table entries' weight digits (d - 1), as in tb_portable.c. */
static const int16_t TERN2_P0[16] = {-1, 0, 1, -1, 0, 1, -1, 0, 1};
static const int16_t TERN2_P1[16] = {-1, -1, -1, 0, 0, 0, 1, 1, 1};
static const int16_t TERN3_P0[16] = {0, 1, -1, 0, 1, -1, 0, 1, -1, 0, 1, -1, 0, 1};
static const int16_t TERN3_P1[16] = {0, 0, 1, 1, 1, -1, -1, -1, 0, 0, 0, 1, 1, 1};
static const int16_t TERN3_P2[16] = {0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1};

/* 16 int16 entries -> [16 low bytes | 16 high bytes]. */
static inline __m256i tk_avx2_split_bytes(__m256i e) {
    const __m256i split = _mm256_setr_epi8(0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15,
                                           0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15);
    return _mm256_permute4x64_epi64(_mm256_shuffle_epi8(e, split), 0xd8);
}

static inline void tk_avx2_store_pair(__m256i e0, __m256i e1, uint8_t *tab) {
    __m256i s0 = tk_avx2_split_bytes(e0), s1 = tk_avx2_split_bytes(e1);
    _mm256_storeu_si256((__m256i *)tab, _mm256_permute2x128_si256(s0, s1, 0x20));
    _mm256_storeu_si256((__m256i *)(tab + 32), _mm256_permute2x128_si256(s0, s1, 0x31));
}

static void tk_avx2_tables(int packing, const int8_t *q, size_t npairs, uint8_t *tab) {
    if (packing == TB_TERN2) {
        const __m256i p0 = ld(TERN2_P0), p1 = ld(TERN2_P1);
        for (; npairs; npairs--) {
            __m256i e0 = _mm256_add_epi16(_mm256_sign_epi16(_mm256_set1_epi16(q[0]), p0),
                                          _mm256_sign_epi16(_mm256_set1_epi16(q[1]), p1));
            __m256i e1 = _mm256_add_epi16(_mm256_sign_epi16(_mm256_set1_epi16(q[2]), p0),
                                          _mm256_sign_epi16(_mm256_set1_epi16(q[3]), p1));
            tk_avx2_store_pair(e0, e1, tab);
            q += 4;
            tab += TB_TAB_PAIR;
        }
        return;
    }
    const __m256i p0 = ld(TERN3_P0), p1 = ld(TERN3_P1), p2 = ld(TERN3_P2);
    for (; npairs; npairs--) {
        __m256i e0 = _mm256_add_epi16(_mm256_add_epi16(_mm256_sign_epi16(_mm256_set1_epi16(q[0]), p0),
                                                       _mm256_sign_epi16(_mm256_set1_epi16(q[1]), p1)),
                                      _mm256_sign_epi16(_mm256_set1_epi16(q[2]), p2));
        __m256i e1 = _mm256_add_epi16(_mm256_add_epi16(_mm256_sign_epi16(_mm256_set1_epi16(q[3]), p0),
                                                       _mm256_sign_epi16(_mm256_set1_epi16(q[4]), p1)),
                                      _mm256_sign_epi16(_mm256_set1_epi16(q[5]), p2));
        tk_avx2_store_pair(e0, e1, tab);
        q += 6;
        tab += TB_TAB_PAIR;
    }
}

/* Per-row int8 quantization; rint via vcvtps2dq (round half to even, MXCSR default). */
static float tq_avx2_quantize(const float *x, size_t k, size_t kp, int8_t *q) {
    const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    __m256 m = _mm256_setzero_ps();
    size_t i = 0;
    for (; i + 8 <= k; i += 8) m = _mm256_max_ps(m, _mm256_and_ps(_mm256_loadu_ps(x + i), absmask));
    float lanes[8];
    _mm256_storeu_ps(lanes, m);
    float absmax = 0.0f;
    for (int j = 0; j < 8; j++) absmax = lanes[j] > absmax ? lanes[j] : absmax;
    for (; i < k; i++) {
        float a = x[i] < 0 ? -x[i] : x[i];
        absmax = a > absmax ? a : absmax;
    }
    float inv = 127.0f / absmax;
    if (!(inv < __builtin_inff())) {
        memset(q, 0, kp);
        return 0.0f;
    }
    const __m256 vinv = _mm256_set1_ps(inv);
    const __m256i lim = _mm256_set1_epi8(-127);
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    for (i = 0; i + 32 <= k; i += 32) {
        __m256i a = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + i), vinv));
        __m256i b = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + i + 8), vinv));
        __m256i c = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + i + 16), vinv));
        __m256i d = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + i + 24), vinv));
        __m256i bytes = _mm256_packs_epi16(_mm256_packs_epi32(a, b), _mm256_packs_epi32(c, d));
        bytes = _mm256_max_epi8(_mm256_permutevar8x32_epi32(bytes, order), lim);
        _mm256_storeu_si256((__m256i *)(q + i), bytes);
    }
    tq_quantize_tail(x + i, k - i, inv, q + i);
    memset(q + k, 0, kp - k);
    return absmax;
}

/* ---- row LUT (GEMM with many rows) ----
 * Tables T[unit][code][row] hold the partial sum of a whole weight code (4 weights for tern2, 3 for
 * tern1.67) for 16 * r16 rows; the inner loop is one code load and r16 vpaddw with a memory operand per
 * table unit and column: 4 (3) * 16 * r16 weight-rows per r16 + 1 loads, no decode, no shuffles. */

static inline __m256i ldq(const int16_t *p) { return _mm256_loadu_si256((const __m256i *)p); }
static inline void st(uint8_t *p, __m256i v) { _mm256_storeu_si256((__m256i *)p, v); }

/* Row tables. tern2: one table per pair of groups (4 weights, code = idx(2p) + 9 * idx(2p+1), 81 entries);
 * tern1.67: one per group (3 weights, code = 13 +- idx, 27 entries). Entry e holds sum_j (d_j - 1) * q_j for
 * the base-3 digits d_j of e, built digit by digit with adds and subtracts. */
static void tk_avx2_rowtab(int packing, const int16_t *qt, size_t units, size_t r16, uint8_t *tab) {
    size_t rstride = r16 << 4;                   /* int16 per K-row of qt */
    size_t entry = r16 << 5;                     /* bytes per table entry */
    __m256i sums[27];
    for (; units; units--) {
        for (size_t v = 0; v < r16 && packing == TB_TERN2; v++) {
            /* 81 = 9 x 9: entries of the first two weights in registers, plus each of the last two's 9 */
            const int16_t *q = qt + (v << 4);
            __m256i q0 = ldq(q), q1 = ldq(q + rstride), q2 = ldq(q + (rstride << 1)), q3 = ldq(q + (rstride << 1) + rstride);
            __m256i zero = _mm256_setzero_si256(), lo[9];
            __m256i p0[3] = {_mm256_sub_epi16(zero, q0), zero, q0}, p1[3] = {_mm256_sub_epi16(zero, q1), zero, q1};
            __m256i p2[3] = {_mm256_sub_epi16(zero, q2), zero, q2}, p3[3] = {_mm256_sub_epi16(zero, q3), zero, q3};
            for (int d1 = 0, e = 0; d1 < 3; d1++)
                for (int d0 = 0; d0 < 3; d0++, e++) lo[e] = _mm256_add_epi16(p0[d0], p1[d1]);
            uint8_t *t = tab + (v << 5);
            for (int d3 = 0; d3 < 3; d3++) {
                for (int d2 = 0; d2 < 3; d2++) {
                    __m256i hi = _mm256_add_epi16(p2[d2], p3[d3]);
                    for (int e = 0; e < 9; e++) {
                        st(t, _mm256_add_epi16(lo[e], hi));
                        t += entry;
                    }
                }
            }
        }
        for (size_t v = 0; v < r16 && packing != TB_TERN2; v++) {
            const int16_t *q = qt + (v << 4);
            size_t n = 1;
            sums[0] = _mm256_setzero_si256();
            for (size_t d = 0; d < 3; d++) {
                /* entries [0, n) cover digits < d; digit d = 0, 1, 2 adds -q, 0, +q: new entries e + n*d */
                __m256i a = ldq(q);
                for (size_t e = 0; e < n; e++) {
                    sums[e + n + n] = _mm256_add_epi16(sums[e], a);
                    sums[e + n] = sums[e];
                    sums[e] = _mm256_sub_epi16(sums[e], a);
                }
                n = n + n + n;
                q += rstride;
            }
            uint8_t *t = tab + (v << 5);
            for (size_t e = 0; e < n; e++) {
                st(t, sums[e]);
                t += entry;
            }
        }
        /* next unit: digits K-rows of qt, 81 or 27 entries (shifts and adds only) */
        qt += packing == TB_TERN2 ? rstride << 2 : (rstride << 1) + rstride;
        tab += packing == TB_TERN2 ? (entry << 6) + (entry << 4) + entry
                                   : (entry << 4) + (entry << 3) + (entry << 1) + entry;
    }
}

/* Codes of one pair's 4 index planes, as byte offsets code * entry into the group's table:
 * codes[group][column], 64 uint16 per group. */
static inline void tk_avx2_store_codes(__m256i code, int shift, uint16_t *row0, uint16_t *row1) {
    __m256i lo = _mm256_cvtepu8_epi16(_mm256_castsi256_si128(code));
    __m256i hi = _mm256_cvtepu8_epi16(_mm256_extracti128_si256(code, 1));
    _mm256_storeu_si256((__m256i *)row0, _mm256_slli_epi16(lo, shift));
    _mm256_storeu_si256((__m256i *)row1, _mm256_slli_epi16(hi, shift));
}

static void tk_avx2_decode(int packing, const uint8_t *w, size_t nsteps, int shift, uint16_t *codes) {
    const __m256i m4 = _mm256_set1_epi8(0x0f), zero = _mm256_setzero_si256(), c13 = _mm256_set1_epi8(13);
    for (; nsteps; nsteps--) {
        int pairs = packing == TB_TERN2 ? 1 : 2;
        __m256i s = packing == TB_TERN2 ? zero : ld(w + 128);
        for (int p = 0; p < pairs; p++) {
            const uint8_t *wp = w + (p << 6);
            for (int x = 0; x < 4; x++) {
                __m256i raw = ld(wp + ((x >> 1) << 5));
                __m256i idx = _mm256_and_si256((x & 1) ? _mm256_srli_epi16(raw, 4) : raw, m4);
                if (packing != TB_TERN2) {
                    __m256i m = _mm256_cmpgt_epi8(zero, s);
                    s = _mm256_add_epi8(s, s);
                    idx = _mm256_add_epi8(c13, _mm256_sub_epi8(_mm256_xor_si256(idx, m), m));
                }
                if (packing == TB_TERN2) {
                    __m256i a = _mm256_cvtepu8_epi16(_mm256_castsi256_si128(idx));
                    __m256i b = _mm256_cvtepu8_epi16(_mm256_extracti128_si256(idx, 1));
                    __m256i code = _mm256_add_epi16(a, _mm256_add_epi16(_mm256_slli_epi16(b, 3), b));
                    _mm256_storeu_si256((__m256i *)(codes + (x << 4)), _mm256_slli_epi16(code, shift));
                } else {
                    tk_avx2_store_codes(idx, shift, codes + (x << 4), codes + 64 + (x << 4));
                }
            }
            codes += packing == TB_TERN2 ? 64 : 128;
        }
        w += packing == TB_TERN2 ? TB_STEP_TERN2 : TB_STEP_TERN167;
    }
}

/* One column: acc (R16 vectors of 16 rows, int32 in memory) += sum over groups of T[g][code[g][c]].
 * Specialised per (entries per group, R16) so that the group stride is a constant: each group costs one
 * code load and R16 vpaddw with a memory operand. */
#define TK_ADD_ENTRY(e)                                                  \
    do {                                                                 \
        a0 = _mm256_add_epi16(a0, ld(e));                                \
        if (R16 > 1) a1 = _mm256_add_epi16(a1, ld((e) + 32));            \
        if (R16 > 2) a2 = _mm256_add_epi16(a2, ld((e) + 64));            \
        if (R16 > 2) a3 = _mm256_add_epi16(a3, ld((e) + 96));            \
    } while (0)

#define TK_WIDEN_ADD(i, a)                                                                                  \
    do {                                                                                                    \
        o[2 * (i)] = _mm256_add_epi32(o[2 * (i)], _mm256_cvtepi16_epi32(_mm256_castsi256_si128(a)));        \
        o[2 * (i) + 1] = _mm256_add_epi32(o[2 * (i) + 1], _mm256_cvtepi16_epi32(_mm256_extracti128_si256(a, 1))); \
    } while (0)

#define TK_ROWLUT_COLUMN_FN(NAME, ENTRIES, RR)                                                      \
    static inline void NAME(const uint16_t *cp, const uint8_t *tab, size_t groups, int32_t *acc) {  \
        enum { R16 = (RR), GS = (ENTRIES) * 32 * (RR) };                                            \
        __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;                             \
        for (; groups >= 4; groups -= 4) {                                                          \
            TK_ADD_ENTRY(tab + cp[0]);                                                              \
            TK_ADD_ENTRY(tab + GS + cp[64]);                                                        \
            TK_ADD_ENTRY(tab + 2 * GS + cp[128]);                                                   \
            TK_ADD_ENTRY(tab + 3 * GS + cp[192]);                                                   \
            cp += 256;                                                                              \
            tab += 4 * GS;                                                                          \
        }                                                                                           \
        for (; groups; groups--) {                                                                  \
            TK_ADD_ENTRY(tab + cp[0]);                                                              \
            cp += 64;                                                                               \
            tab += GS;                                                                              \
        }                                                                                           \
        __m256i *o = (__m256i *)acc;                                                                \
        TK_WIDEN_ADD(0, a0);                                                                        \
        if (R16 > 1) TK_WIDEN_ADD(1, a1);                                                           \
        if (R16 > 2) TK_WIDEN_ADD(2, a2);                                                           \
        if (R16 > 2) TK_WIDEN_ADD(3, a3);                                                           \
    }

TK_ROWLUT_COLUMN_FN(tk_avx2_col81_r1, 81, 1)
TK_ROWLUT_COLUMN_FN(tk_avx2_col81_r2, 81, 2)
TK_ROWLUT_COLUMN_FN(tk_avx2_col81_r4, 81, 4)
TK_ROWLUT_COLUMN_FN(tk_avx2_col27_r1, 27, 1)
TK_ROWLUT_COLUMN_FN(tk_avx2_col27_r2, 27, 2)
TK_ROWLUT_COLUMN_FN(tk_avx2_col27_r4, 27, 4)

static void tk_avx2_rowlut(int packing, const uint8_t *w, size_t nsteps, const uint8_t *tab, size_t r16,
                           uint16_t *codes, int32_t *acc) {
    int shift = r16 == 1 ? 5 : r16 == 2 ? 6 : 7; /* r16 is 1, 2 or 4 */
    tk_avx2_decode(packing, w, nsteps, shift, codes);
    size_t groups = packing == TB_TERN2 ? nsteps : nsteps << 2; /* tables: one per pair / per group */
    size_t astride = r16 << 4;
    void (*col)(const uint16_t *, const uint8_t *, size_t, int32_t *);
    if (packing == TB_TERN2)
        col = r16 == 1 ? tk_avx2_col81_r1 : r16 == 2 ? tk_avx2_col81_r2 : tk_avx2_col81_r4;
    else
        col = r16 == 1 ? tk_avx2_col27_r1 : r16 == 2 ? tk_avx2_col27_r2 : tk_avx2_col27_r4;
    for (size_t c = 0; c < TB_TILE_N; c++) {
        col(codes + c, tab, groups, acc);
        acc += astride;
    }
}

const tb_kernels tb_kernels_avx2 = {
    .name = "avx2",
    .quantize = tq_avx2_quantize,
    .tables = tk_avx2_tables,
    .tile = tk_avx2_tile,
    .rowtab = tk_avx2_rowtab,
    .rowlut = tk_avx2_rowlut,
};

/* AVX-512 machines: the AVX2 tables with zmm per-row kernels for few rows, vpermb unit tables for GEMM
 * (tb_avx512.c). */
const tb_kernels tb_kernels_avx512 = {
    .name = "avx512",
    .quantize = tq_avx2_quantize,
    .tables = tk_avx2_tables,
    .tile = tk_avx512_tile,
    .rowtab = tk_avx2_rowtab,
    .rowlut = tk_avx2_rowlut,
    .units = &tb_unit_kernels_avx512,
};
