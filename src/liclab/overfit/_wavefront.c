/* The exact ARM of a wavefront step, in C (liclab.overfit._wavefront).
 *
 * One decoding step of liclab.overfit.wavefront.Wavefront.decode, less the range decoding:
 * gather the context of every latent of the step from the canvas, run the ARM
 * (liclab.overfit.exact.ExactARM: float64 products and sums of dyadic numbers, every one
 * exact, so the order of the sums and FMA do not matter), snap its two outputs
 * (liclab.overfit.laplace.snap) and copy each latent's window probabilities out of the bank;
 * then, once the range decoder has read the window symbols, write the latents into the
 * canvas. The Python loop keeps the range coder (constriction) and the escapes; the numpy
 * version of the same step (liclab.overfit.wavefront) stays the reference, and the tests
 * compare the two.
 *
 * The GIL is released while a step computes, so the image worker thread runs meanwhile.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <math.h>
#include <stdint.h>
#include <string.h>

#define MAX_LAYERS 10
#define MAX_WIDTH 128
#define MAX_GROUPS 16

typedef struct {
    PyObject_HEAD
    Py_buffer canvas;  /* float64, written */
    Py_buffer pos;     /* int32: canvas index of each latent, decoding order */
    Py_buffer offsets; /* int32: context offsets (the first points at a one) */
    Py_buffer coarse;  /* int32 (n, C): canvas indexes of the coarse context, or empty */
    Py_buffer grid;    /* int32 (n,): each latent's feature grid (-1: none), or empty */
    Py_buffer inputs;  /* int32 (F, 3): (feature grid g, grid j, shift s), grouped by g */
    Py_buffer cols0;   /* int64: the canvas column of each grid's first latent */
    Py_buffer bounds;  /* int64: step s decodes latents bounds[s] .. bounds[s + 1] - 1 */
    Py_buffer bank;    /* float64 (keys, cols): window probabilities */
    Py_buffer table;   /* float64 (rows, cols): this step's window rows, written */
    Py_buffer lo;      /* int64 (rows,): each latent's window start, written */
    Py_buffer scale;   /* int64 (rows,): each latent's scale index, written */
    /* float64: hidden layers (mi, m) then (m, m), the output (m, 2) ((mi, 2) without hidden
     * layers), then the stabiliser (mi, 2) if any: mi = k1 + c gathered values per latent */
    Py_buffer layers[MAX_LAYERS];
    int nbuf;          /* buffers held (for the destructor) */
    int nfbuf;         /* feature buffers held (grid, inputs, cols0) */
    int groups;        /* feature grids G (0: none) */
    Py_ssize_t fstart[MAX_GROUPS + 1]; /* inputs of grid g: rows fstart[g] .. fstart[g+1]-1 */
    Py_ssize_t cw, width, ctop; /* coarse columns; the canvas's width and top margin */
    int nlayers;       /* hidden layers */
    int skip;          /* a stabiliser follows the output layer */
    Py_ssize_t m, mi, k1, c, cols, keys, top, steps, start, count;
    int rounding;
    int mu_bits; /* the mean's grid 2^-mu_bits: keys are scale · 2^mu_bits + offset */
} Stepper;

static const char *BUFFER_NAMES[] = {
    "canvas", "pos", "offsets", "coarse", "bounds", "bank", "table", "lo", "scale",
};

static void release_all(Stepper *self) {
    Py_buffer *all[9 + MAX_LAYERS] = {
        &self->canvas, &self->pos, &self->offsets, &self->coarse, &self->bounds,
        &self->bank, &self->table, &self->lo, &self->scale,
    };
    for (int i = 0; i < MAX_LAYERS; i++) all[9 + i] = &self->layers[i];
    for (int i = 0; i < self->nbuf; i++) PyBuffer_Release(all[i]);
    self->nbuf = 0;
    Py_buffer *features[3] = {&self->grid, &self->inputs, &self->cols0};
    for (int i = 0; i < self->nfbuf; i++) PyBuffer_Release(features[i]);
    self->nfbuf = 0;
}

static void stepper_dealloc(Stepper *self) {
    release_all(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* A C-contiguous buffer of items of `size` bytes and numpy-style `kind` ('f' float, 'i'
 * signed int), `writable` or not. */
static int get(PyObject *obj, Py_buffer *view, Py_ssize_t size, char kind, int writable,
               const char *name) {
    int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj, view, flags) < 0) return -1;
    const char *f = view->format ? view->format : "B";
    if (*f == '<' || *f == '=' || *f == '@') f++;
    int ok = view->itemsize == size &&
             (kind == 'f' ? *f == 'd' : (*f == 'l' || *f == 'q' || *f == 'i'));
    if (!ok) {
        PyBuffer_Release(view);
        PyErr_Format(PyExc_TypeError, "%s: expected a contiguous %s%zd array", name,
                     kind == 'f' ? "float" : "int", size * 8);
        return -1;
    }
    return 0;
}

static int stepper_init(Stepper *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"canvas", "pos",    "offsets", "coarse",  "bounds",
                             "bank",   "table",  "lo",      "scale",   "layers",
                             "rounding", "mu_bits", "skip", "features", NULL};
    PyObject *obj[9], *layers, *skip = Py_None, *features = Py_None;
    int rounding, mu_bits;
    if (self->nbuf || self->nfbuf) release_all(self);
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOOOOOOOOOpi|OO", kwlist, &obj[0], &obj[1],
                                     &obj[2], &obj[3], &obj[4], &obj[5], &obj[6], &obj[7],
                                     &obj[8], &layers, &rounding, &mu_bits, &skip, &features))
        return -1;
    if (mu_bits < 0 || mu_bits > 16) {
        PyErr_SetString(PyExc_ValueError, "mu_bits: 0 to 16");
        return -1;
    }
    Py_buffer *views[9] = {&self->canvas, &self->pos,   &self->offsets,
                           &self->coarse, &self->bounds, &self->bank,
                           &self->table,  &self->lo,    &self->scale};
    const Py_ssize_t sizes[9] = {8, 4, 4, 4, 8, 8, 8, 8, 8};
    const char kinds[9] = {'f', 'i', 'i', 'i', 'i', 'f', 'f', 'i', 'i'};
    const int writable[9] = {1, 0, 0, 0, 0, 0, 1, 1, 1};
    for (int i = 0; i < 9; i++) {
        if (get(obj[i], views[i], sizes[i], kinds[i], writable[i], BUFFER_NAMES[i]) < 0)
            goto fail;
        self->nbuf++;
    }
    if (!PyList_Check(layers) || PyList_GET_SIZE(layers) < 1 ||
        PyList_GET_SIZE(layers) > MAX_LAYERS - 1) {
        PyErr_SetString(PyExc_ValueError, "layers: a list of 1 to 9 matrices");
        goto fail;
    }
    Py_ssize_t n = PyList_GET_SIZE(layers);
    for (Py_ssize_t i = 0; i < n; i++) {
        if (get(PyList_GET_ITEM(layers, i), &self->layers[i], 8, 'f', 0, "layers") < 0)
            goto fail;
        self->nbuf++;
    }
    self->skip = skip != Py_None;
    if (self->skip) {
        if (get(skip, &self->layers[n], 8, 'f', 0, "skip") < 0) goto fail;
        self->nbuf++;
    }
    self->nlayers = (int)n - 1;
    self->k1 = self->offsets.len / 4;
    Py_ssize_t npos = self->pos.len / 4;
    self->cw = self->coarse.len ? self->coarse.len / 4 / (npos ? npos : 1) : 0;
    Py_ssize_t nfeat = 0;
    self->groups = 0;
    if (features != Py_None) { /* (grid, inputs, cols0, width, top, G): gathered here */
        PyObject *fobj[3];
        int groups;
        if (!PyArg_ParseTuple(features, "OOOnni", &fobj[0], &fobj[1], &fobj[2], &self->width,
                              &self->ctop, &groups))
            goto fail;
        if (groups < 1 || groups > MAX_GROUPS) {
            PyErr_SetString(PyExc_ValueError, "Stepper: 1 to 16 feature grids");
            goto fail;
        }
        Py_buffer *fviews[3] = {&self->grid, &self->inputs, &self->cols0};
        const Py_ssize_t fsizes[3] = {4, 4, 8};
        const char *fnames[3] = {"grid", "inputs", "cols0"};
        for (int i = 0; i < 3; i++) {
            if (get(fobj[i], fviews[i], fsizes[i], 'i', 0, fnames[i]) < 0) goto fail;
            self->nfbuf++;
        }
        const int32_t *in = self->inputs.buf;
        const Py_ssize_t grids = self->cols0.len / 8;
        nfeat = self->inputs.len / 4 / 3;
        int ok = self->inputs.len == nfeat * 3 * 4 && self->grid.len == npos * 4 &&
                 self->width > 0 && self->ctop >= 0 && groups <= grids;
        int g0 = 0; /* inputs grouped by g: fstart[g] is the first row of g, or of a later g */
        for (Py_ssize_t t = 0; ok && t < nfeat; t++) {
            int32_t g = in[3 * t], j = in[3 * t + 1], sh = in[3 * t + 2];
            ok = g >= 0 && g >= g0 - 1 && g < groups && j >= 0 && j < grids && sh >= 0 &&
                 sh < 31;
            while (ok && g0 <= g) self->fstart[g0++] = t;
        }
        while (g0 <= groups) self->fstart[g0++] = nfeat;
        self->groups = groups;
        const int32_t *gr = self->grid.buf;
        for (Py_ssize_t i = 0; ok && i < npos; i++) ok = gr[i] >= -1 && gr[i] < self->groups;
        if (!ok) {
            PyErr_SetString(PyExc_ValueError, "Stepper: inconsistent feature inputs");
            goto fail;
        }
    }
    self->c = self->cw + nfeat + self->groups;
    self->mi = self->k1 + self->c;
    self->m = self->nlayers ? self->layers[0].len / 8 / self->mi : self->mi;
    self->cols = self->bank.ndim == 2 ? self->bank.shape[1] : 0;
    self->keys = self->cols ? self->bank.len / 8 / self->cols : 0;
    self->steps = self->bounds.len / 8 - 1;
    self->rounding = rounding;
    self->mu_bits = mu_bits;
    int ok = self->m <= MAX_WIDTH && self->mi <= MAX_WIDTH && self->m > 0 &&
             self->cols > 0 && self->steps >= 0 &&
             self->table.len / 8 % self->cols == 0 &&
             self->table.len / 8 / self->cols == self->lo.len / 8 &&
             self->lo.len == self->scale.len &&
             (self->cw == 0 || self->cw * npos * 4 == self->coarse.len);
    for (int i = 0; ok && i <= self->nlayers; i++) {
        Py_ssize_t in = i == 0 ? self->mi : self->m, out = i < self->nlayers ? self->m : 2;
        ok = self->layers[i].len == in * out * 8;
    }
    if (ok && self->skip) ok = self->layers[self->nlayers + 1].len == self->mi * 2 * 8;
    if (!ok) {
        PyErr_SetString(PyExc_ValueError, "Stepper: inconsistent shapes");
        goto fail;
    }
    /* the scale index's top: keys = scales · 2^mu_bits */
    self->top = (self->keys >> mu_bits) - 1;
    self->start = self->count = 0;
    return 0;
fail:
    release_all(self);
    return -1;
}

/* Eight latents at a time, as columns: x (m, 8) → relu(aᵀ x) (m, 8), rounded first if asked.
 * Each output element is one chain of m exact products and sums (any order gives the same
 * number), four output rows per pass over x; compiled for AVX-512, AVX2 + FMA and plain
 * x86-64 where the compiler supports choosing at run time. */
#define LANES 8
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define CLONES
#endif

CLONES
static void block_layer(const double *restrict x, const double *restrict a, double *restrict h,
                        Py_ssize_t m, Py_ssize_t out, int hidden, int rounding) {
    Py_ssize_t j = 0;
    for (; j + 4 <= out; j += 4) {
        double s0[LANES] = {0}, s1[LANES] = {0}, s2[LANES] = {0}, s3[LANES] = {0};
        for (Py_ssize_t i = 0; i < m; i++) {
            const double *restrict xi = x + i * LANES;
            const double w0 = a[i * out + j], w1 = a[i * out + j + 1];
            const double w2 = a[i * out + j + 2], w3 = a[i * out + j + 3];
            for (int b = 0; b < LANES; b++) {
                s0[b] += xi[b] * w0;
                s1[b] += xi[b] * w1;
                s2[b] += xi[b] * w2;
                s3[b] += xi[b] * w3;
            }
        }
        for (int b = 0; b < LANES; b++) {
            h[j * LANES + b] = s0[b];
            h[(j + 1) * LANES + b] = s1[b];
            h[(j + 2) * LANES + b] = s2[b];
            h[(j + 3) * LANES + b] = s3[b];
        }
    }
    for (; j < out; j++) {
        double s0[LANES] = {0};
        for (Py_ssize_t i = 0; i < m; i++) {
            const double w0 = a[i * out + j];
            for (int b = 0; b < LANES; b++) s0[b] += x[i * LANES + b] * w0;
        }
        for (int b = 0; b < LANES; b++) h[j * LANES + b] = s0[b];
    }
    if (hidden) {
        for (Py_ssize_t e = 0; e < out * LANES; e++) {
            double v = rounding ? rint(h[e]) : h[e];
            h[e] = v > 0.0 ? v : 0.0;
        }
    }
}

/* prepare(step) -> n: the step's n latents' window rows, starts and scale indexes. */
static PyObject *stepper_prepare(Stepper *self, PyObject *arg) {
    Py_ssize_t step = PyLong_AsSsize_t(arg);
    if (step == -1 && PyErr_Occurred()) return NULL;
    if (step < 0 || step >= self->steps) {
        PyErr_SetString(PyExc_IndexError, "step out of range");
        return NULL;
    }
    const int64_t *bounds = self->bounds.buf;
    Py_ssize_t start = bounds[step], count = bounds[step + 1] - start;
    if (count > self->lo.len / 8 || start < 0 || start + count > self->pos.len / 4) {
        PyErr_SetString(PyExc_ValueError, "step larger than the table");
        return NULL;
    }
    self->start = start;
    self->count = count;
    const double *canvas = self->canvas.buf, *bank = self->bank.buf;
    const int32_t *pos = (const int32_t *)self->pos.buf + start;
    const int32_t *offsets = self->offsets.buf;
    const int32_t *coarse = (const int32_t *)self->coarse.buf + start * self->cw;
    const int32_t *grid = self->groups ? (const int32_t *)self->grid.buf + start : NULL;
    const int32_t *inputs = self->inputs.buf;
    const int64_t *cols0 = self->cols0.buf;
    const Py_ssize_t cw = self->cw, groups = self->groups, cwidth = self->width;
    const Py_ssize_t ctop = self->ctop, nfeat = self->c - self->cw - self->groups;
    double *table = self->table.buf;
    int64_t *lo = self->lo.buf, *scale = self->scale.buf;
    const Py_ssize_t m = self->m, mi = self->mi, k1 = self->k1, cols = self->cols;
    const Py_ssize_t ncanvas = self->canvas.len / 8;
    const double top = (double)self->top;
    const int mu_bits = self->mu_bits;
    int bad = 0;
    Py_BEGIN_ALLOW_THREADS
    double x0[MAX_WIDTH * LANES], x[MAX_WIDTH * LANES], h[MAX_WIDTH * LANES];
    double h2[2 * LANES];
    for (Py_ssize_t n0 = 0; n0 < count && !bad; n0 += LANES) {
        const Py_ssize_t lanes = count - n0 < LANES ? count - n0 : LANES;
        for (Py_ssize_t b = 0; b < LANES; b++) {
            const Py_ssize_t n = n0 + (b < lanes ? b : 0); /* spare lanes repeat a latent */
            for (Py_ssize_t i = 0; i < k1; i++) {
                Py_ssize_t at = (Py_ssize_t)pos[n] + offsets[i];
                if (at < 0 || at >= ncanvas) { bad = 1; at = 0; }
                x0[i * LANES + b] = canvas[at];
            }
            for (Py_ssize_t i = 0; i < cw; i++) {
                Py_ssize_t at = coarse[n * cw + i];
                if (at < 0 || at >= ncanvas) { bad = 1; at = 0; }
                x0[(k1 + i) * LANES + b] = canvas[at];
            }
            if (!groups) continue;
            /* inter-grid features: latent (y, x) of feature grid g reads grid j at
             * (y >> s, x >> s) for each (j, s) of g, into g's block; the other blocks are
             * zero; then one indicator per feature grid (g's is one) */
            const Py_ssize_t f0 = k1 + cw;
            for (Py_ssize_t i = 0; i < nfeat + groups; i++) x0[(f0 + i) * LANES + b] = 0.0;
            const int32_t g = grid[n];
            if (g < 0) continue;
            const Py_ssize_t y = (Py_ssize_t)pos[n] / cwidth - ctop;
            const Py_ssize_t xx = (Py_ssize_t)pos[n] % cwidth - cols0[g];
            for (Py_ssize_t t = self->fstart[g]; t < self->fstart[g + 1]; t++) {
                const int32_t j = inputs[3 * t + 1], sh = inputs[3 * t + 2];
                Py_ssize_t at = (ctop + (y >> sh)) * cwidth + cols0[j] + (xx >> sh);
                if (y < 0 || xx < 0 || at < 0 || at >= ncanvas) { bad = 1; at = 0; }
                x0[(f0 + t) * LANES + b] = canvas[at];
            }
            x0[(f0 + nfeat + g) * LANES + b] = 1.0;
        }
        const double *in = x0;
        Py_ssize_t width = mi;
        for (int l = 0; l < self->nlayers; l++) {
            block_layer(in, self->layers[l].buf, h, width, m, 1, self->rounding);
            memcpy(x, h, m * LANES * sizeof(double));
            in = x;
            width = m;
        }
        block_layer(in, self->layers[self->nlayers].buf, h, width, 2, 0, 0);
        if (self->skip) { /* the stabiliser: a second exact product of the gathered rows */
            block_layer(x0, self->layers[self->nlayers + 1].buf, h2, mi, 2, 0, 0);
            for (int e = 0; e < 2 * LANES; e++) h[e] += h2[e];
        }
        for (Py_ssize_t b = 0; b < lanes; b++) {
            const Py_ssize_t n = n0 + b;
            double o0 = rint(h[b]), o1 = rint(h[LANES + b]);
            o1 = o1 < 0.0 ? 0.0 : (o1 > top ? top : o1); /* NaN fails the test below */
            if (!(fabs(o0) < 0x1p60) || !(o1 >= 0.0)) { bad = 2; break; }
            int64_t mq = (int64_t)o0, s = (int64_t)o1;
            int64_t frac = mq & ((1 << mu_bits) - 1);
            lo[n] = (mq - frac) / ((int64_t)1 << mu_bits); /* exact: a multiple */
            scale[n] = s;
            memcpy(table + n * cols, bank + ((s << mu_bits) + frac) * cols, cols * sizeof(double));
        }
    }
    Py_END_ALLOW_THREADS
    if (bad) {
        PyErr_SetString(PyExc_ValueError,
                        bad == 1 ? "context outside the canvas" : "ARM output not finite");
        return NULL;
    }
    return PyLong_FromSsize_t(count);
}

/* store(k, check) -> escaped: with check, True (nothing stored) if a window symbol is the
 * escape (cols - 1); else the latents lo + k of the last prepared step go into the canvas. */
static PyObject *stepper_store(Stepper *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "store(k, check)");
        return NULL;
    }
    int check = PyObject_IsTrue(args[1]);
    if (check < 0) return NULL;
    Py_buffer view;
    if (PyObject_GetBuffer(args[0], &view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) return NULL;
    const char *f = view.format ? view.format : "B";
    if (*f == '<' || *f == '=' || *f == '@') f++;
    int wide = view.itemsize == 8 && (*f == 'l' || *f == 'q');
    int narrow = view.itemsize == 4 && (*f == 'i' || *f == 'l');
    if ((!wide && !narrow) || view.len / view.itemsize != self->count) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "store: k is not the step's int32/int64 symbols");
        return NULL;
    }
    const Py_ssize_t count = self->count, escape = self->cols - 1;
    const int64_t *lo = self->lo.buf;
    const int32_t *pos = (const int32_t *)self->pos.buf + self->start;
    double *canvas = self->canvas.buf;
    if (check) {
        for (Py_ssize_t n = 0; n < count; n++) {
            int64_t k = wide ? ((int64_t *)view.buf)[n] : ((int32_t *)view.buf)[n];
            if (k == escape) {
                PyBuffer_Release(&view);
                Py_RETURN_TRUE;
            }
        }
    }
    for (Py_ssize_t n = 0; n < count; n++) {
        int64_t k = wide ? ((int64_t *)view.buf)[n] : ((int32_t *)view.buf)[n];
        canvas[pos[n]] = (double)(lo[n] + k);
    }
    PyBuffer_Release(&view);
    Py_RETURN_FALSE;
}

static PyMethodDef stepper_methods[] = {
    {"prepare", (PyCFunction)stepper_prepare, METH_O,
     "prepare(step) -> n: the step's window rows (table[:n]), starts (lo[:n]) and scale "
     "indexes (scale[:n])"},
    {"store", (PyCFunction)(void (*)(void))stepper_store, METH_FASTCALL,
     "store(k, check) -> escaped: write lo + k of the prepared step into the canvas (unless "
     "check and an escape symbol is among k)"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject StepperType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "liclab.overfit._wavefront.Stepper",
    .tp_basicsize = sizeof(Stepper),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Stepper(canvas, pos, offsets, coarse, bounds, bank, table, lo, scale, layers, "
              "rounding, mu_bits, skip=None, features=None): the exact ARM of a wavefront's "
              "steps; features = (grid, inputs, cols0, width, top) gathers the inter-grid "
              "inputs in C",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)stepper_init,
    .tp_dealloc = (destructor)stepper_dealloc,
    .tp_methods = stepper_methods,
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_wavefront",
    "The exact ARM of a wavefront step in C (see liclab.overfit.wavefront).", -1, NULL,
};

PyMODINIT_FUNC PyInit__wavefront(void) {
    if (PyType_Ready(&StepperType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (!m) return NULL;
    Py_INCREF(&StepperType);
    if (PyModule_AddObject(m, "Stepper", (PyObject *)&StepperType) < 0) {
        Py_DECREF(&StepperType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
