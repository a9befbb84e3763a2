/* NEON path (aarch64 only, where NEON is baseline). Same tables as the AVX2 path: per pair of groups,
 * 16 low bytes of group 2p, 16 of group 2p+1, then the 32 high bytes. tbl fetches 16 table bytes per
 * instruction; zip1/zip2 rebuild int16; the tern1.67 sign flips both bytes (eor), giving ~v. No sdot/udot:
 * they multiply. */
#include <arm_neon.h>

#include "tritbench.h"

static inline void tk_neon_flush(int16x8_t acc, int32_t *o) {
    vst1q_s32(o, vaddq_s32(vld1q_s32(o), vmovl_s16(vget_low_s16(acc))));
    vst1q_s32(o + 4, vaddq_s32(vld1q_s32(o + 4), vmovl_high_s16(acc)));
}

static inline void tk_neon_add(uint8x16_t lo, uint8x16_t hi, int16x8_t *a0, int16x8_t *a1) {
    *a0 = vaddq_s16(*a0, vreinterpretq_s16_u8(vzip1q_u8(lo, hi)));
    *a1 = vaddq_s16(*a1, vreinterpretq_s16_u8(vzip2q_u8(lo, hi)));
}

/* One pair of groups for one row: acc[2x], acc[2x+1] hold plane x's columns 16x..16x+7, 16x+8..16x+15. */
static inline void tk_neon_pair(const uint8_t *w, const uint8_t *tab, const uint8_t *s, int plane0,
                                int16x8_t *acc) {
    const uint8x16_t m4 = vdupq_n_u8(0x0f);
    for (int lane = 0; lane < 2; lane++) {
        uint8x16_t tl = vld1q_u8(tab + (lane << 4)), th = vld1q_u8(tab + 32 + (lane << 4));
        uint8x16_t sign = s ? vld1q_u8(s + (lane << 4)) : vdupq_n_u8(0);
        if (s) sign = vshlq_u8(sign, vdupq_n_s8((int8_t)plane0));
        for (int v = 0; v < 2; v++) {
            uint8x16_t wb = vld1q_u8(w + (v << 5) + (lane << 4));
            uint8x16_t ilo = vandq_u8(wb, m4), ihi = vshrq_n_u8(wb, 4);
            uint8x16_t l0 = vqtbl1q_u8(tl, ilo), h0 = vqtbl1q_u8(th, ilo);
            uint8x16_t l1 = vqtbl1q_u8(tl, ihi), h1 = vqtbl1q_u8(th, ihi);
            if (s) {
                uint8x16_t m0 = vreinterpretq_u8_s8(vshrq_n_s8(vreinterpretq_s8_u8(sign), 7));
                sign = vshlq_n_u8(sign, 1);
                uint8x16_t m1 = vreinterpretq_u8_s8(vshrq_n_s8(vreinterpretq_s8_u8(sign), 7));
                sign = vshlq_n_u8(sign, 1);
                l0 = veorq_u8(l0, m0);
                h0 = veorq_u8(h0, m0);
                l1 = veorq_u8(l1, m1);
                h1 = veorq_u8(h1, m1);
            }
            tk_neon_add(l0, h0, &acc[v << 2], &acc[(v << 2) + 1]);
            tk_neon_add(l1, h1, &acc[(v << 2) + 2], &acc[(v << 2) + 3]);
        }
    }
}

static void tk_neon_row(int packing, const uint8_t *w, const uint8_t *tab, size_t nsteps, int32_t *out) {
    size_t flush = packing == TB_TERN2 ? TB_FLUSH_TERN2 : TB_FLUSH_TERN167;
    while (nsteps) {
        size_t n = nsteps < flush ? nsteps : flush;
        nsteps -= n;
        int16x8_t acc[8];
        for (int i = 0; i < 8; i++) acc[i] = vdupq_n_s16(0);
        for (; n; n--) {
            if (packing == TB_TERN2) {
                tk_neon_pair(w, tab, NULL, 0, acc);
                w += TB_STEP_TERN2;
                tab += TB_TAB_PAIR;
            } else {
                tk_neon_pair(w, tab, w + 128, 0, acc);
                tk_neon_pair(w + 64, tab + TB_TAB_PAIR, w + 128, 4, acc);
                w += TB_STEP_TERN167;
                tab += 2 * TB_TAB_PAIR;
            }
        }
        int32_t *o = out;
        for (int i = 0; i < 8; i++, o += 8) tk_neon_flush(acc[i], o);
    }
}

static void tk_neon_tile(int packing, const uint8_t *w, const uint8_t *tab, size_t tab_stride, size_t rows,
                         size_t nsteps, int32_t *out) {
    for (; rows; rows--) {
        tk_neon_row(packing, w, tab, nsteps, out);
        tab += tab_stride;
        out += TB_TILE_N;
    }
}

/* Weight digits (d - 1) of the table entries, as in tb_portable.c. */
static const int16_t TERN2_P[2][16] = {{-1, 0, 1, -1, 0, 1, -1, 0, 1}, {-1, -1, -1, 0, 0, 0, 1, 1, 1}};
static const int16_t TERN3_P[3][16] = {{0, 1, -1, 0, 1, -1, 0, 1, -1, 0, 1, -1, 0, 1},
                                       {0, 0, 1, 1, 1, -1, -1, -1, 0, 0, 0, 1, 1, 1},
                                       {0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1}};

/* e += p * a for p in {-1, 0, 1}, with masks and add/sub only. */
static inline void tk_neon_term(const int16_t *p, int16_t a, int16x8_t *e0, int16x8_t *e1) {
    int16x8_t va = vdupq_n_s16(a), zero = vdupq_n_s16(0);
    for (int h = 0; h < 2; h++) {
        int16x8_t pv = vld1q_s16(p + (h << 3));
        int16x8_t plus = vandq_s16(va, vreinterpretq_s16_u16(vcgtq_s16(pv, zero)));
        int16x8_t minus = vandq_s16(va, vreinterpretq_s16_u16(vcltq_s16(pv, zero)));
        int16x8_t *e = h ? e1 : e0;
        *e = vsubq_s16(vaddq_s16(*e, plus), minus);
    }
}

static void tk_neon_tables(int packing, const int8_t *q, size_t npairs, uint8_t *tab) {
    size_t groups = npairs + npairs;
    int g3 = packing != TB_TERN2;
    for (size_t g = 0; g < groups; g++) {
        int16x8_t e0 = vdupq_n_s16(0), e1 = e0;
        if (g3) {
            tk_neon_term(TERN3_P[0], q[0], &e0, &e1);
            tk_neon_term(TERN3_P[1], q[1], &e0, &e1);
            tk_neon_term(TERN3_P[2], q[2], &e0, &e1);
            q += 3;
        } else {
            tk_neon_term(TERN2_P[0], q[0], &e0, &e1);
            tk_neon_term(TERN2_P[1], q[1], &e0, &e1);
            q += 2;
        }
        uint8x16_t b0 = vreinterpretq_u8_s16(e0), b1 = vreinterpretq_u8_s16(e1);
        uint8_t *t = tab + ((g & 1) << 4);
        vst1q_u8(t, vuzp1q_u8(b0, b1));
        vst1q_u8(t + 32, vuzp2q_u8(b0, b1));
        if (g & 1) tab += TB_TAB_PAIR;
    }
}

const tb_kernels tb_kernels_neon = {
    .name = "neon",
    .quantize = tq_portable_quantize,
    .tables = tk_neon_tables,
    .tile = tk_neon_tile,
};
