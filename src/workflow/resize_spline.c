/* skimage.transform.resize(image, output_shape, order=3, preserve_range=True, anti_aliasing=True)
 * on a uint8 image, as MedSAM's inference script calls it (bowang-lab/MedSAM@d71e8a1
 * MedSAM_Inference.py), reproducing the float64 arithmetic of the libraries it runs on:
 *
 *   skimage 0.19.3 transform/_warps.py resize: uint8 -> float64 (preserve_range); factors =
 *     in / out per axis (the channel axis included, factor 1); anti-aliasing Gaussian with sigma
 *     max(0, (factor - 1) / 2) (a no-op when enlarging), mode "reflect" = ndimage "mirror";
 *     ndimage.zoom(..., order=3, mode="mirror", grid_mode=True); _clip_warp_output clips to the
 *     input's [min, max].
 *   scipy 1.10.1 ndimage/_filters.py gaussian_filter / gaussian_filter1d / _gaussian_kernel1d
 *     (radius int(4 sigma + 0.5), weights exp(-x^2 / (2 sigma^2)) / sum), src/ni_filters.c
 *     NI_Correlate1D (symmetric kernel: centre tap, then pairs), src/ni_support.c NI_ExtendLine
 *     (mirror).
 *   scipy 1.10.1 ndimage/_interpolation.py zoom -> spline_filter (spline_filter1d along every
 *     axis in order, float64), src/ni_splines.c apply_filter (gain, then one causal/anticausal
 *     pass with pole sqrt(3) - 2 and the mirror initialisations) and
 *     get_spline_interpolation_weights, src/ni_interpolation.c NI_ZoomShift (input coordinate
 *     ((o + 0.5) * in/out) - 0.5, mirrored; 4 taps per axis, mirrored at the borders; the 4^rank
 *     products accumulated with the last axis fastest, each tap's coefficient multiplied by the
 *     axis weights in axis order).
 *
 * The order of every floating-point operation follows those sources, so the float64 result is
 * the same to the last bit or nearly so (the uint8 cast that follows is sensitive to it: see
 * ../shared/golden/medsam_preset/README.md). The file is compiled in ISO C mode, where GCC does
 * not contract a * b + c into an FMA. */
#include "workflow/preprocess.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define SPLINE_POLE (-0.267949192431122706472553658494127633) /* sqrt(3) - 2: ni_splines.c get_filter_poles */
#define GAUSS_TRUNCATE 4.0                                     /* gaussian_filter default */
#define MAX_PIXELS ((size_t)1 << 28)                           /* cap on in/out values (2 GiB of float64) */

/* ni_interpolation.c map_coordinate, NI_EXTEND_MIRROR */
static double mirror_coord(double in, long len)
{
    if (in < 0) {
        if (len <= 1) return 0;
        long sz2 = 2 * len - 2;
        in = (double)sz2 * (double)(long)(-in / (double)sz2) + in;
        return in <= 1 - len ? in + (double)sz2 : -in;
    }
    if (in > len - 1) {
        if (len <= 1) return 0;
        long sz2 = 2 * len - 2;
        in -= (double)sz2 * (double)(long)(in / (double)sz2);
        if (in >= len) in = (double)sz2 - in;
    }
    return in;
}

/* integer index mirrored into [0, len): the periodic mirror NI_ExtendLine produces */
static long mirror_index(long i, long len)
{
    if (len <= 1) return 0;
    long p = 2 * len - 2;
    i %= p;
    if (i < 0) i += p;
    return i < len ? i : p - i;
}

/* ------------------------------------------------------------------ spline pre-filter */

// c [n] -> c [n] in place: the cubic B-spline coefficients of the samples, mirror boundary.
// ref: ni_splines.c apply_filter (_apply_filter_gain, _apply_filter, _init_causal_mirror,
//      _init_anticausal_mirror) for order 3
static void spline_filter_line(double *c, long n)
{
    if (n <= 1) return; /* NI_SplineFilter1D: len > 1 only */
    const double z = SPLINE_POLE;
    const double gain = (1.0 - z) * (1.0 - 1.0 / z);
    for (long i = 0; i < n; i++) c[i] *= gain;
    /* causal initialisation (mirror) */
    double z_i = z;
    const double z_n_1 = pow(z, (double)(n - 1));
    c[0] = c[0] + z_n_1 * c[n - 1];
    for (long i = 1; i < n - 1; ++i) {
        c[0] += z_i * (c[i] + z_n_1 * c[n - 1 - i]);
        z_i *= z;
    }
    c[0] /= 1 - z_n_1 * z_n_1;
    for (long i = 1; i < n; ++i) c[i] += z * c[i - 1];
    /* anticausal initialisation (mirror) */
    c[n - 1] = (z * c[n - 2] + c[n - 1]) * z / (z * z - 1);
    for (long i = n - 2; i >= 0; --i) c[i] = z * (c[i + 1] - c[i]);
}

/* Applies fn to every line of x [dims[0]][dims[1]][dims[2]] along axis, through a contiguous
 * line buffer (scipy's line buffers copy the same way). */
static void for_each_line(double *x, const long dims[3], int axis, double *line, void (*fn)(double *, long, void *),
                          void *ctx)
{
    const long st[3] = {dims[1] * dims[2], dims[2], 1};
    const int a1 = axis == 0 ? 1 : 0, a2 = axis == 2 ? 1 : 2;
    const long n = dims[axis], s = st[axis];
    for (long i = 0; i < dims[a1]; i++)
        for (long j = 0; j < dims[a2]; j++) {
            double *p = x + i * st[a1] + j * st[a2];
            for (long k = 0; k < n; k++) line[k] = p[k * s];
            fn(line, n, ctx);
            for (long k = 0; k < n; k++) p[k * s] = line[k];
        }
}

static void spline_fn(double *line, long n, void *ctx)
{
    (void)ctx;
    spline_filter_line(line, n);
}

/* ------------------------------------------------------------------ anti-aliasing Gaussian */

/* numpy's pairwise summation of a float64 array (numpy/core/src/umath/loops_utils.h.src
 * pairwise_sum, PW_BLOCKSIZE 128, 8 accumulators) */
static double np_pairwise_sum(const double *a, long n)
{
    if (n < 8) {
        double res = 0.;
        for (long i = 0; i < n; i++) res += a[i];
        return res;
    }
    if (n <= 128) {
        double r[8];
        for (int j = 0; j < 8; j++) r[j] = a[j];
        long i;
        for (i = 8; i < n - (n % 8); i += 8)
            for (int j = 0; j < 8; j++) r[j] += a[i + j];
        double res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for (; i < n; i++) res += a[i];
        return res;
    }
    long n2 = n / 2;
    n2 -= n2 % 8;
    return np_pairwise_sum(a, n2) + np_pairwise_sum(a + n2, n - n2);
}

typedef struct {
    const double *fw; /* centre of the kernel [-r, r] */
    long r;
    double *ext;      /* scratch: the line extended by r on each side */
} gauss_ctx;

// line [n] -> line [n]: correlation with the symmetric kernel, mirror extension.
// ref: ni_filters.c NI_Correlate1D (symmetric > 0 branch), ni_support.c NI_ExtendLine (MIRROR)
static void gauss_fn(double *line, long n, void *vctx)
{
    gauss_ctx *g = vctx;
    long r = g->r;
    double *e = g->ext + r;
    for (long i = -r; i < n + r; i++) e[i] = line[mirror_index(i, n)];
    for (long l = 0; l < n; l++) {
        const double *il = e + l;
        double acc = il[0] * g->fw[0];
        for (long j = -r; j < 0; j++) acc += (il[j] + il[-j]) * g->fw[j];
        line[l] = acc;
    }
}

/* gaussian_filter1d(x, sigma, axis, mode="mirror", truncate=4.0) in place. */
static medseg_status gauss_axis(double *x, const long dims[3], int axis, double sigma, double *line, medseg_error *err)
{
    long r = (long)(GAUSS_TRUNCATE * sigma + 0.5);
    long n = dims[axis];
    double *w = malloc(sizeof(double) * (size_t)(2 * r + 1));
    double *ext = malloc(sizeof(double) * (size_t)(n + 2 * r));
    if (!w || !ext) {
        free(w), free(ext);
        return ms_error(err, MEDSEG_ERR_NOMEM, "resize: out of memory for the anti-aliasing filter");
    }
    /* _gaussian_kernel1d: phi = exp(-0.5 / sigma2 * x ** 2); phi / phi.sum(); reversed (symmetric) */
    double sigma2 = sigma * sigma, f = -0.5 / sigma2;
    for (long i = -r; i <= r; i++) w[i + r] = exp(f * (double)(i * i));
    double s = np_pairwise_sum(w, 2 * r + 1);
    for (long i = 0; i <= 2 * r; i++) w[i] = w[i] / s;
    gauss_ctx g = {w + r, r, ext};
    for_each_line(x, dims, axis, line, gauss_fn, &g);
    free(w), free(ext);
    return MEDSEG_OK;
}

/* ------------------------------------------------------------------ zoom */

/* Per output index of one axis: the 4 mirrored input indices and the 4 cubic B-spline weights.
 * ref: ni_interpolation.c NI_ZoomShift (grid_mode coordinate, map_coordinate, edge offsets),
 *      ni_splines.c get_spline_interpolation_weights (order 3) */
static void zoom_axis(long in, long out, long *idx, double *wt)
{
    double zoom = (double)in / (double)out; /* _interpolation.py zoom: input.shape / output_shape */
    for (long k = 0; k < out; k++) {
        double cc = (double)k;
        cc += 0.5;
        cc *= zoom;
        cc -= 0.5;
        cc = mirror_coord(cc, in);
        long start = (long)floor(cc) - 1;
        for (int h = 0; h < 4; h++) idx[4 * k + h] = mirror_index(start + h, in);
        double x = cc - floor(cc), y = x, z = 1.0 - x;
        double *wv = wt + 4 * k;
        wv[1] = (y * y * (y - 2.0) * 3.0 + 4.0) / 6.0;
        wv[2] = (z * z * (z - 2.0) * 3.0 + 4.0) / 6.0;
        wv[0] = z * z * z / 6.0;
        wv[3] = 1.0;
        for (int i = 0; i < 3; ++i) wv[3] -= wv[i];
    }
}

// src [h][w][c] uint8 -> dst [nh][nw][c] float64
medseg_status ms_resize_spline3(const uint8_t *src, int w, int h, int c, double *dst, int nw, int nh,
                                medseg_error *err)
{
    if (!src || !dst || w <= 0 || h <= 0 || nw <= 0 || nh <= 0 || c <= 0 || c > 4)
        return ms_error(err, MEDSEG_ERR_ARG, "resize: bad sizes %dx%dx%d -> %dx%d", w, h, c, nw, nh);
    size_t nin, nout;
    if (!ms_mul3_size((size_t)w, (size_t)h, (size_t)c, &nin) || !ms_mul3_size((size_t)nw, (size_t)nh, (size_t)c, &nout) ||
        nin > MAX_PIXELS || nout > MAX_PIXELS)
        return ms_error(err, MEDSEG_ERR_NOMEM, "resize: %dx%dx%d -> %dx%d is over the size cap", w, h, c, nw, nh);
    /* a single-channel image is a 2-D array for skimage (no channel axis) */
    const long dims[3] = {h, w, c};
    const int rank = c == 1 ? 2 : 3;
    long maxd = h > w ? h : w;
    double *x = malloc(nin * sizeof(double));
    double *line = malloc((size_t)(maxd > c ? maxd : c) * sizeof(double));
    long *yi = malloc(sizeof(long) * 4 * (size_t)nh), *xi = malloc(sizeof(long) * 4 * (size_t)nw);
    double *yw = malloc(sizeof(double) * 4 * (size_t)nh), *xw = malloc(sizeof(double) * 4 * (size_t)nw);
    medseg_status st = MEDSEG_OK;
    if (!x || !line || !yi || !xi || !yw || !xw) {
        st = ms_error(err, MEDSEG_ERR_NOMEM, "resize: out of memory (%dx%d -> %dx%d)", w, h, nw, nh);
        goto done;
    }
    int lo = 255, hi = 0;
    for (size_t i = 0; i < nin; i++) {
        x[i] = (double)src[i];
        if (src[i] < lo) lo = src[i];
        if (src[i] > hi) hi = src[i];
    }
    /* anti-aliasing: factors = in / out; sigma > 1e-15 only on shrinking axes */
    const double sig[2] = {fmax(0.0, ((double)h / (double)nh - 1) / 2), fmax(0.0, ((double)w / (double)nw - 1) / 2)};
    for (int a = 0; a < 2 && !st; a++)
        if (sig[a] > 1e-15) st = gauss_axis(x, dims, a, sig[a], line, err);
    if (st) goto done;
    /* spline_filter: spline_filter1d along axis 0, 1 (, 2) */
    for (int a = 0; a < rank; a++) for_each_line(x, dims, a, line, spline_fn, NULL);
    zoom_axis(h, nh, yi, yw);
    zoom_axis(w, nw, xi, xw);
    long ci[4 * 4];
    double cw[4 * 4];
    if (rank == 3) zoom_axis(c, c, ci, cw);
    const double fmin = lo, fmax_ = hi;
    for (long oy = 0; oy < nh; oy++) {
        const long *iy = yi + 4 * oy;
        const double *wy = yw + 4 * oy;
        for (long ox = 0; ox < nw; ox++) {
            const long *ix = xi + 4 * ox;
            const double *wx = xw + 4 * ox;
            for (long oc = 0; oc < c; oc++) {
                double t = 0.0;
                if (rank == 2) {
                    for (int a = 0; a < 4; a++) {
                        const double *row = x + iy[a] * w;
                        for (int b = 0; b < 4; b++) {
                            double coeff = row[ix[b]];
                            coeff *= wy[a];
                            coeff *= wx[b];
                            t += coeff;
                        }
                    }
                } else {
                    const long *icc = ci + 4 * oc;
                    const double *wc = cw + 4 * oc;
                    for (int a = 0; a < 4; a++) {
                        const double *row = x + iy[a] * w * c;
                        for (int b = 0; b < 4; b++) {
                            const double *px = row + ix[b] * c;
                            for (int d = 0; d < 4; d++) {
                                double coeff = px[icc[d]];
                                coeff *= wy[a];
                                coeff *= wx[b];
                                coeff *= wc[d];
                                t += coeff;
                            }
                        }
                    }
                }
                /* _clip_warp_output: np.clip(out, min, max) of the (unfiltered) input */
                dst[((size_t)oy * nw + ox) * c + oc] = t < fmin ? fmin : t > fmax_ ? fmax_ : t;
            }
        }
    }
done:
    free(x), free(line), free(yi), free(xi), free(yw), free(xw);
    return st;
}
