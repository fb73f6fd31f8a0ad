/* The pointwise MLP's forward and backward passes over a range of rows, eight rows per
 * vector (see _mlp.c, which includes this once per instruction set, NAME() giving the
 * functions their suffix).
 *
 * Layer i maps width[i] -> width[i + 1] values:  a <- relu?(W_i a + b_i (+ a if residual)),
 * W_i row-major (width[i + 1], width[i]); flags bit 0: residual, bit 1: ReLU. A block's
 * activations stay in small arrays (the L1 cache); the backward pass recomputes the forward
 * one, SB blocks at a time, so that each weight-gradient accumulator is loaded and stored
 * once per SB blocks. Sums run over several independent accumulators: a chain of dependent
 * FMAs would wait out each one's latency. */

static inline void NAME(load)(v8 *dst, const float *x, long rows_left, long rs, long cs,
                              int width) {
    for (int c = 0; c < width; c++) {
        float tmp[8] = {0};
        if (rs == 1 && rows_left >= 8) {
            __builtin_memcpy(tmp, x + c * cs, sizeof tmp);
        } else {
            for (long j = 0; j < 8 && j < rows_left; j++) tmp[j] = x[j * rs + c * cs];
        }
        __builtin_memcpy(&dst[c], tmp, sizeof tmp);
    }
}

static inline void NAME(store)(float *x, const v8 *src, long rows_left, long rs, long cs,
                               int width) {
    for (int c = 0; c < width; c++) {
        float tmp[8];
        __builtin_memcpy(tmp, &src[c], sizeof tmp);
        if (rs == 1 && rows_left >= 8) {
            __builtin_memcpy(x + c * cs, tmp, sizeof tmp);
        } else {
            for (long j = 0; j < 8 && j < rows_left; j++) x[j * rs + c * cs] = tmp[j];
        }
    }
}

/* y[o] = bias[o] + sum_k m[o * so + k * sk] x[k] for o < out (bias may be NULL). */
static inline void NAME(matvec)(int out, int in, const float *m, long so, long sk,
                                const float *bias, const v8 *x, v8 *y) {
    int o = 0;
    for (; o + 8 <= out; o += 8) {
        v8 acc[8];
        for (int j = 0; j < 8; j++) acc[j] = (v8){0} + (bias ? bias[o + j] : 0.0f);
        const float *mo = m + o * so;
        for (int k = 0; k < in; k++) {
            const v8 xk = x[k];
            const float *mk = mo + k * sk;
            for (int j = 0; j < 8; j++) acc[j] += mk[j * so] * xk;
        }
        for (int j = 0; j < 8; j++) y[o + j] = acc[j];
    }
    for (; o < out; o++) {
        v8 p[4] = {{0}, {0}, {0}, {0}};
        const float *mo = m + o * so;
        int k = 0;
        for (; k + 4 <= in; k += 4) {
            for (int j = 0; j < 4; j++) p[j] += mo[(k + j) * sk] * x[k + j];
        }
        for (; k < in; k++) p[0] += mo[k * sk] * x[k];
        y[o] = ((p[0] + p[1]) + (p[2] + p[3])) + (bias ? bias[o] : 0.0f);
    }
}

/* acts[0] holds the input; acts[i + 1] gets layer i's output. */
static inline void NAME(forward_block)(v8 (*acts)[MAXW], int layers, const int *width,
                                       const int *flags, const float *const *w,
                                       const float *const *b) {
    for (int i = 0; i < layers; i++) {
        const int in = width[i], out = width[i + 1];
        v8 *z = acts[i + 1];
        NAME(matvec)(out, in, w[i], in, 1, b[i], acts[i], z);
        if (flags[i] & 1) {
            for (int o = 0; o < out; o++) z[o] += acts[i][o];
        }
        if (flags[i] & 2) {
            for (int o = 0; o < out; o++) z[o] = (v8)((v8i)z[o] & (z[o] > 0));
        }
    }
}

static void NAME(mlp_forward)(const float *x, long rows, long xrs, long xcs, float *y, long yrs,
                              long ycs, int layers, const int *width, const int *flags,
                              const float *const *w, const float *const *b) {
    v8 acts[MAXL + 1][MAXW];
    for (long r = 0; r < rows; r += 8) {
        NAME(load)(acts[0], x + r * xrs, rows - r, xrs, xcs, width[0]);
        NAME(forward_block)(acts, layers, width, flags, w, b);
        NAME(store)(y + r * yrs, acts[layers], rows - r, yrs, ycs, width[layers]);
    }
}

/* Gradients of sum(gy * y): into gx (if not NULL, strided as x) and added to the
 * accumulators gw_acc[i] (width[i + 1] * width[i] vectors) and gb_acc[i] (width[i + 1]
 * vectors), which the caller sums over their eight lanes. Rows past the end are zero in x
 * and gy: they add nothing. */
static void NAME(mlp_backward)(const float *x, long rows, long xrs, long xcs, const float *gy,
                               long grs, long gcs, float *gx, int layers, const int *width,
                               const int *flags, const float *const *w, const float *const *b,
                               v8 *const *gw_acc, v8 *const *gb_acc) {
    v8 acts[SB][MAXL + 1][MAXW];
    v8 g[SB][MAXW], gin[MAXW];
    for (long r = 0; r < rows; r += 8 * SB) {
        const int nb = (int)((rows - r + 7) / 8 < SB ? (rows - r + 7) / 8 : SB);
        for (int s = 0; s < nb; s++) {
            const long rs = r + 8 * s;
            NAME(load)(acts[s][0], x + rs * xrs, rows - rs, xrs, xcs, width[0]);
            NAME(forward_block)(acts[s], layers, width, flags, w, b);
            NAME(load)(g[s], gy + rs * grs, rows - rs, grs, gcs, width[layers]);
        }
        for (int i = layers - 1; i >= 0; i--) {
            const int in = width[i], out = width[i + 1];
            if (flags[i] & 2) {
                for (int s = 0; s < nb; s++) {
                    for (int o = 0; o < out; o++) {
                        g[s][o] = (v8)((v8i)g[s][o] & (acts[s][i + 1][o] > 0));
                    }
                }
            }
            v8 *gw = gw_acc[i];
            for (int o = 0; o < out; o++) {
                v8 gbo = gb_acc[i][o];
                for (int s = 0; s < nb; s++) gbo += g[s][o];
                gb_acc[i][o] = gbo;
                v8 *restrict gwo = gw + (long)o * in;
                if (nb == SB) {
                    v8 go[SB];
                    for (int s = 0; s < SB; s++) go[s] = g[s][o];
                    for (int k = 0; k < in; k++) {
                        v8 acc = gwo[k];
                        for (int s = 0; s < SB; s++) acc += go[s] * acts[s][i][k];
                        gwo[k] = acc;
                    }
                } else {
                    for (int k = 0; k < in; k++) {
                        for (int s = 0; s < nb; s++) gwo[k] += g[s][o] * acts[s][i][k];
                    }
                }
            }
            if (i == 0 && gx == NULL) break;
            for (int s = 0; s < nb; s++) { /* g <- W_i^T g (+ g if residual) */
                NAME(matvec)(in, out, w[i], 1, in, NULL, g[s], gin);
                if (flags[i] & 1) {
                    for (int k = 0; k < in; k++) gin[k] += g[s][k];
                }
                for (int k = 0; k < in; k++) g[s][k] = gin[k];
            }
        }
        if (gx != NULL) {
            for (int s = 0; s < nb; s++) {
                const long rs = r + 8 * s;
                NAME(store)(gx + rs * xrs, g[s], rows - rs, xrs, xcs, width[0]);
            }
        }
    }
}
