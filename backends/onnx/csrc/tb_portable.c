/* Portable C path: always compiled, the reference the SIMD paths are tested against through the op.
 * Tables here are plain int16 (16 per group, group 2p then 2p+1: the same 64 bytes per pair as the SIMD
 * paths' low/high byte split). Index arithmetic uses shifts and pointer increments only. */
#include <math.h>
#include <string.h>

#include "tritbench.h"

void tq_quantize_tail(const float *x, size_t k, float inv, int8_t *q) {
    for (size_t i = 0; i < k; i++) {
        long v = lrintf(x[i] * inv);
        q[i] = (int8_t)(v > 127 ? 127 : v < -127 ? -127 : v);
    }
}

float tq_portable_quantize(const float *x, size_t k, size_t kp, int8_t *q) {
    float absmax = 0.0f;
    for (size_t i = 0; i < k; i++) {
        float a = fabsf(x[i]);
        absmax = a > absmax ? a : absmax;
    }
    float inv = 127.0f / absmax;
    if (!(inv < INFINITY)) {
        memset(q, 0, kp);
        return 0.0f;
    }
    tq_quantize_tail(x, k, inv, q);
    memset(q + k, 0, kp - k);
    return absmax;
}

void tk_rescale(const int32_t *acc, size_t n, float rescale, float *y) {
    for (size_t i = 0; i < n; i++) y[i] = (float)acc[i] * rescale;
}

/* Weight digits (d - 1) of the table entries: tern2 entry i = d0 + 3*d1; tern1.67 entry i is code 13 + i. */
static const int8_t TERN2_P0[16] = {-1, 0, 1, -1, 0, 1, -1, 0, 1};
static const int8_t TERN2_P1[16] = {-1, -1, -1, 0, 0, 0, 1, 1, 1};
static const int8_t TERN3_P0[16] = {0, 1, -1, 0, 1, -1, 0, 1, -1, 0, 1, -1, 0, 1};
static const int8_t TERN3_P1[16] = {0, 0, 1, 1, 1, -1, -1, -1, 0, 0, 0, 1, 1, 1};
static const int8_t TERN3_P2[16] = {0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1};

static inline int16_t tk_pick(int8_t p, int16_t v) { return p > 0 ? v : p < 0 ? (int16_t)-v : 0; }

static void tk_portable_tables(int packing, const int8_t *q, size_t npairs, uint8_t *tab) {
    int16_t *t = (int16_t *)tab;
    size_t groups = npairs + npairs;
    for (size_t g = 0; g < groups; g++) {
        int16_t a = q[0], b = q[1];
        if (packing == TB_TERN2) {
            for (int i = 0; i < 16; i++) t[i] = (int16_t)(tk_pick(TERN2_P0[i], a) + tk_pick(TERN2_P1[i], b));
            q += 2;
        } else {
            int16_t c = q[2];
            for (int i = 0; i < 16; i++)
                t[i] = (int16_t)(tk_pick(TERN3_P0[i], a) + tk_pick(TERN3_P1[i], b) + tk_pick(TERN3_P2[i], c));
            q += 3;
        }
        t += 16;
    }
}

/* One pair of groups: 64 bytes of indices (two 32-byte vectors), signs given per index plane. */
static inline void tk_portable_pair(const uint8_t *w, const int16_t *t, const uint8_t *s, int plane0, int32_t *o) {
    for (int v = 0; v < 2; v++) {
        for (int lane = 0; lane < 2; lane++) {
            const int16_t *tg = t + (lane << 4);
            const uint8_t *wb = w + (v << 5) + (lane << 4);
            const uint8_t *sb = s ? s + (lane << 4) : NULL;
            int32_t *o0 = o + (v << 5);
            for (int c = 0; c < 16; c++) {
                int16_t lo = tg[wb[c] & 15], hi = tg[wb[c] >> 4];
                if (sb) {
                    int b = plane0 + (v << 1);
                    if ((sb[c] >> (7 - b)) & 1) lo = (int16_t)~lo;
                    if ((sb[c] >> (6 - b)) & 1) hi = (int16_t)~hi;
                }
                o0[c] += lo;
                o0[c + 16] += hi;
            }
        }
    }
}

static void tk_portable_tile(int packing, const uint8_t *w, const uint8_t *tab, size_t tab_stride, size_t rows,
                             size_t nsteps, int32_t *out) {
    for (size_t r = 0; r < rows; r++) {
        const uint8_t *wp = w;
        const int16_t *t = (const int16_t *)tab;
        for (size_t i = 0; i < nsteps; i++) {
            if (packing == TB_TERN2) {
                tk_portable_pair(wp, t, NULL, 0, out);
                wp += TB_STEP_TERN2;
                t += 32;
            } else {
                tk_portable_pair(wp, t, wp + 128, 0, out);
                tk_portable_pair(wp + 64, t + 32, wp + 128, 4, out);
                wp += TB_STEP_TERN167;
                t += 64;
            }
        }
        tab += tab_stride;
        out += TB_TILE_N;
    }
}

const tb_kernels tb_kernels_portable = {
    .name = "portable",
    .quantize = tq_portable_quantize,
    .tables = tk_portable_tables,
    .tile = tk_portable_tile,
};
