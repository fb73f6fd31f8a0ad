/* liclab.overfit._mlp: the training passes of the overfitted codecs' pointwise MLPs (the
 * ARM and the synthesis's 1x1 layers) on a CPU, eight rows per vector, and of the synthesis's
 * 3x3 residual layers (3 channels), eight columns per vector; loaded through ctypes by
 * liclab.overfit.mlp (which falls back to PyTorch where this is not built).
 *
 * Built twice from _mlp_kernel.h and _conv3_kernel.h: for AVX2 + FMA, and for the compiler's
 * default target;
 * mlp_avx2() says which one this CPU runs. Plain C functions on pointers and element
 * strides: no Python API (the PyInit function only lets the build name the module). Results
 * differ from PyTorch's in float rounding only; the decoder never runs this code. */

#include <Python.h>

#define MAXW 64 /* widest layer */
#define MAXL 8  /* most layers */
#define SB 4    /* blocks of eight rows per weight-gradient update */

typedef float v8 __attribute__((vector_size(32)));
typedef int v8i __attribute__((vector_size(32)));

#pragma GCC push_options
#pragma GCC target("avx2,fma")
#define NAME(f) f##_avx2
#include "_mlp_kernel.h"
#include "_conv3_kernel.h"
#undef NAME
#pragma GCC pop_options

#define NAME(f) f##_default
#include "_mlp_kernel.h"
#include "_conv3_kernel.h"
#undef NAME

int mlp_avx2(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

int mlp_limits(int *maxw, int *maxl) {
    *maxw = MAXW;
    *maxl = MAXL;
    return 0;
}

int mlp_forward(int avx2, const float *x, long rows, long xrs, long xcs, float *y, long yrs,
                 long ycs, int layers, const int *width, const int *flags, const float *const *w,
                 const float *const *b) {
    (avx2 ? mlp_forward_avx2 : mlp_forward_default)(x, rows, xrs, xcs, y, yrs, ycs, layers,
                                                    width, flags, w, b);
    return 0;
}

/* gw_acc, gb_acc: per layer, float arrays of 8 * width[i+1] * width[i] and 8 * width[i+1],
 * 32-byte aligned, to which this adds (lane-wise partial sums). */
int mlp_backward(int avx2, const float *x, long rows, long xrs, long xcs, const float *gy,
                  long grs, long gcs, float *gx, int layers, const int *width, const int *flags,
                  const float *const *w, const float *const *b, float *const *gw_acc,
                  float *const *gb_acc) {
    (avx2 ? mlp_backward_avx2 : mlp_backward_default)(x, rows, xrs, xcs, gy, grs, gcs, gx,
                                                      layers, width, flags, w, b,
                                                      (v8 *const *)gw_acc, (v8 *const *)gb_acc);
    return 0;
}

/* 3x3 convolutions, 3 channels to 3, output rows y0..y1 (see _conv3_kernel.h). */
int conv3_forward(int avx2, const float *in, long ips, long irs, float *out, long ops, long ors,
                  long y0, long y1, long width, const float *w, const float *bias) {
    (avx2 ? conv3_rows_avx2 : conv3_rows_default)(in, ips, irs, out, ops, ors, y0, y1, width, w,
                                                  bias);
    return 0;
}

int conv3_wgrad(int avx2, const float *in, long ips, long irs, const float *g, long gps,
                long grs, long y0, long y1, long width, double *gw, double *gb) {
    (avx2 ? conv3_wgrad_rows_avx2 : conv3_wgrad_rows_default)(in, ips, irs, g, gps, grs, y0, y1,
                                                              width, gw, gb);
    return 0;
}

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_mlp", "C kernels loaded through ctypes", -1, NULL, NULL, NULL, NULL,
    NULL};

PyMODINIT_FUNC PyInit__mlp(void) { return PyModule_Create(&module); }
