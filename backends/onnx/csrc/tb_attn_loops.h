/* The two loops of tb_attn.h over cache rows, written once for every ISA. An ISA file defines, then includes
 * this header:
 *   TA_VEC                      its float vector type, TA_W floats wide
 *   TA_CHUNK(rows, f16, at)     TA_W floats of a cache at element `at`, widened from halves when f16 is set
 *   TA_LOAD(p), TA_STORE(p, v)  float loads and stores
 *   TA_MUL(a, b), TA_FMA(acc, a, b) (acc + a * b), TA_SPLAT(x), TA_SUM(v) (the sum of a vector's lanes)
 *   TA_SCORES, TA_VALUES        the names of the two functions
 * The head size must be a multiple of TA_W and at most TA_MAX_D (tb_attention checks before it picks them). */

void TA_SCORES(const float *q, size_t G, size_t D, const void *rows, int f16, size_t n, float *s, size_t ld,
               const ta_ahead *pf) {
    size_t C = D / TA_W;
    TA_VEC k[TA_MAX_D / TA_W];
    for (size_t t = 0; t < n; t++) {
        ta_ahead_row(pf, t);
        for (size_t c = 0; c < C; c++) k[c] = TA_CHUNK(rows, f16, t * D + c * TA_W); /* the row, read once */
        for (size_t h = 0; h < G; h++) {
            const float *qh = q + h * D;
            TA_VEC acc = TA_MUL(k[0], TA_LOAD(qh));
            for (size_t c = 1; c < C; c++) acc = TA_FMA(acc, k[c], TA_LOAD(qh + c * TA_W));
            s[h * ld + t] = TA_SUM(acc);
        }
    }
    ta_ahead_rest(pf, n);
}

void TA_VALUES(const float *p, size_t ld, size_t G, size_t D, const void *rows, int f16, size_t n, float *o,
               const ta_ahead *pf) {
    for (size_t c = 0; c < D / TA_W; c++) /* a slice of every row at a time, TA_HEADS heads' sums in registers */
        for (size_t h0 = 0; h0 < G; h0 += TA_HEADS) {
            size_t hn = G - h0 < TA_HEADS ? G - h0 : TA_HEADS;
            TA_VEC acc[TA_HEADS];
            for (size_t j = 0; j < hn; j++) acc[j] = TA_LOAD(o + (h0 + j) * D + c * TA_W);
            for (size_t t = 0; t < n; t++) {
                if (!c && !h0) ta_ahead_row(pf, t); /* the first pass reads the rows from memory */
                TA_VEC v = TA_CHUNK(rows, f16, t * D + c * TA_W);
                for (size_t j = 0; j < hn; j++) acc[j] = TA_FMA(acc[j], TA_SPLAT(p[(h0 + j) * ld + t]), v);
            }
            for (size_t j = 0; j < hn; j++) TA_STORE(o + (h0 + j) * D + c * TA_W, acc[j]);
        }
    ta_ahead_rest(pf, n);
}
