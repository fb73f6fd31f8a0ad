/* The synthesis's residual 3x3 convolutions (3 channels to 3) on planar float32 images, eight
 * columns per vector (see _mlp.c, which includes this once per instruction set, NAME() giving
 * the functions their suffix). "Valid" convolutions only: the caller pads (the forward pass
 * replicates the edges, the input gradient is a valid convolution of the zero-padded output
 * gradient with the flipped kernel).
 *
 * Planes: element (c, y, x) of an image is at c * ps + y * rs + x. */

/* out[c][y][x] = bias[c] + sum_{ci, ky, kx} w[((c * 3 + ci) * 3 + ky) * 3 + kx]
 *                                            * in[ci][y + ky][x + kx]
 * for output rows y0 <= y < y1 and 0 <= x < width (in has width + 2 columns). Each input
 * vector is loaded once for the three outputs; six accumulators (output, input channel's
 * parity) keep the FMA chains short. */
static void NAME(conv3_rows)(const float *in, long ips, long irs, float *out, long ops, long ors,
                             long y0, long y1, long width, const float *w, const float *bias) {
    for (long y = y0; y < y1; y++) {
        long x = 0;
        for (; x + 8 <= width; x += 8) {
            /* named accumulators: an array of vectors is kept on the stack by GCC */
            v8 a0 = {0}, a1 = {0}, a2 = {0}, b0 = {0}, b1 = {0}, b2 = {0};
            for (int ky = 0; ky < 3; ky++) {
                for (int ci = 0; ci < 3; ci++) {
                    const float *r = in + ci * ips + (y + ky) * irs + x;
                    v8 v0, v1, v2;
                    __builtin_memcpy(&v0, r, sizeof v0);
                    __builtin_memcpy(&v1, r + 1, sizeof v1);
                    __builtin_memcpy(&v2, r + 2, sizeof v2);
                    const float *k0 = w + (ci * 3 + ky) * 3, *k1 = k0 + 27, *k2 = k0 + 54;
                    if (ci & 1) {
                        b0 += k0[0] * v0 + k0[1] * v1 + k0[2] * v2;
                        b1 += k1[0] * v0 + k1[1] * v1 + k1[2] * v2;
                        b2 += k2[0] * v0 + k2[1] * v1 + k2[2] * v2;
                    } else {
                        a0 += k0[0] * v0 + k0[1] * v1 + k0[2] * v2;
                        a1 += k1[0] * v0 + k1[1] * v1 + k1[2] * v2;
                        a2 += k2[0] * v0 + k2[1] * v1 + k2[2] * v2;
                    }
                }
            }
            v8 s0 = a0 + b0 + bias[0], s1 = a1 + b1 + bias[1], s2 = a2 + b2 + bias[2];
            __builtin_memcpy(out + y * ors + x, &s0, sizeof s0);
            __builtin_memcpy(out + ops + y * ors + x, &s1, sizeof s1);
            __builtin_memcpy(out + 2 * ops + y * ors + x, &s2, sizeof s2);
        }
        for (; x < width; x++) {
            for (int c = 0; c < 3; c++) {
                const float *wc = w + c * 27;
                float s = 0.0f;
                for (int ky = 0; ky < 3; ky++)
                    for (int ci = 0; ci < 3; ci++)
                        for (int kx = 0; kx < 3; kx++)
                            s += wc[(ci * 3 + ky) * 3 + kx] * in[ci * ips + (y + ky) * irs + x + kx];
                out[c * ops + y * ors + x] = s + bias[c];
            }
        }
    }
}

/* gw[((c * 3 + ci) * 3 + ky) * 3 + kx] += sum_{y0 <= y < y1, x} g[c][y][x] * in[ci][y + ky][x + kx]
 * and gb[c] += sum g[c][y][x]; per input row (ci, ky), nine accumulators (c, kx) over the
 * row's vectors, each vector of g and of the input loaded once; row sums added up in double.
 * The accumulators are named variables: an array of vectors is kept on the stack by GCC. */
static void NAME(conv3_wgrad_rows)(const float *in, long ips, long irs, const float *g, long gps,
                                   long grs, long y0, long y1, long width, double *gw, double *gb) {
    for (long y = y0; y < y1; y++) {
        const float *gr[3] = {g + y * grs, g + gps + y * grs, g + 2 * gps + y * grs};
        for (int ci = 0; ci < 3; ci++) {
            for (int ky = 0; ky < 3; ky++) {
                const float *r = in + ci * ips + (y + ky) * irs;
                v8 a00 = {0}, a01 = {0}, a02 = {0}, a10 = {0}, a11 = {0}, a12 = {0};
                v8 a20 = {0}, a21 = {0}, a22 = {0};
                long x = 0;
                for (; x + 8 <= width; x += 8) {
                    v8 v0, v1, v2, g0, g1, g2;
                    __builtin_memcpy(&v0, r + x, sizeof v0);
                    __builtin_memcpy(&v1, r + x + 1, sizeof v1);
                    __builtin_memcpy(&v2, r + x + 2, sizeof v2);
                    __builtin_memcpy(&g0, gr[0] + x, sizeof g0);
                    __builtin_memcpy(&g1, gr[1] + x, sizeof g1);
                    __builtin_memcpy(&g2, gr[2] + x, sizeof g2);
                    a00 += g0 * v0, a01 += g0 * v1, a02 += g0 * v2;
                    a10 += g1 * v0, a11 += g1 * v1, a12 += g1 * v2;
                    a20 += g2 * v0, a21 += g2 * v1, a22 += g2 * v2;
                }
                v8 acc[3][3] = {{a00, a01, a02}, {a10, a11, a12}, {a20, a21, a22}};
                for (int c = 0; c < 3; c++) {
                    for (int kx = 0; kx < 3; kx++) {
                        double s = 0.0;
                        for (int j = 0; j < 8; j++) s += acc[c][kx][j];
                        for (long t = x; t < width; t++) s += (double)gr[c][t] * r[t + kx];
                        gw[((c * 3 + ci) * 3 + ky) * 3 + kx] += s;
                    }
                }
            }
        }
        for (int c = 0; c < 3; c++) {
            v8 acc = {0};
            long x = 0;
            for (; x + 8 <= width; x += 8) {
                v8 v;
                __builtin_memcpy(&v, gr[c] + x, sizeof v);
                acc += v;
            }
            double s = 0.0;
            for (int j = 0; j < 8; j++) s += acc[j];
            for (; x < width; x++) s += gr[c][x];
            gb[c] += s;
        }
    }
}
