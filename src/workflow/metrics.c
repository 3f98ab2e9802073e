/* Segmentation metrics: Dice, IoU, NSD, HD95 with voxel spacing (definitions in metrics.h and
 * docs/eval.md). Distances come from an exact separable Euclidean distance transform
 * (Felzenszwalb & Huttenlocher, "Distance Transforms of Sampled Functions", ToC 8(19), 2012),
 * computed on the bounding box of the two masks only (every site lies inside it, so distances
 * for voxels inside it are exact). */
#include "workflow/metrics.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Lower envelope of parabolas w*(x-q)^2 + f[q] over the finite f[q].
 * f [n] -> d [n]; v [n] and z [n+1] are scratch. All f infinite -> d infinite. */
static void edt_1d(double *d, const double *f, int64_t n, double w, int64_t *v, double *z)
{
    int64_t k = -1;
    for (int64_t q = 0; q < n; q++) {
        if (isinf(f[q])) continue;
        double fq = f[q] + w * (double)q * (double)q;
        double s = -INFINITY;
        while (k >= 0) {
            int64_t p = v[k];
            s = (fq - (f[p] + w * (double)p * (double)p)) / (2.0 * w * (double)(q - p));
            if (s <= z[k]) k--;
            else break;
        }
        if (k < 0) s = -INFINITY;
        k++;
        v[k] = q;
        z[k] = s;
        z[k + 1] = INFINITY;
    }
    if (k < 0) {
        for (int64_t x = 0; x < n; x++) d[x] = INFINITY;
        return;
    }
    k = 0;
    for (int64_t x = 0; x < n; x++) {
        while (z[k + 1] < (double)x) k++;
        double dx = (double)(x - v[k]);
        d[x] = w * dx * dx + f[v[k]];
    }
}

/* One EDT pass along an axis of length n with stride, over every line of the array. */
static void edt_pass(double *a, int64_t total, int64_t n, int64_t stride, double w, double *f, double *d,
                     int64_t *v, double *z)
{
    int64_t block = n * stride; /* lines start at b*block + r for r < stride */
    for (int64_t b = 0; b < total; b += block) {
        for (int64_t r = 0; r < stride; r++) {
            double *line = a + b + r;
            for (int64_t x = 0; x < n; x++) f[x] = line[x * stride];
            edt_1d(d, f, n, w, v, z);
            for (int64_t x = 0; x < n; x++) line[x * stride] = d[x];
        }
    }
}

// site [nz, ny, nx] -> out [nz, ny, nx] squared distance in mm^2 to the nearest site
// ref: Felzenszwalb & Huttenlocher 2012, algorithm DT(f) applied per axis (scipy's
// distance_transform_edt computes the same quantity for the complement)
medseg_status ms_edt_sq(double *out, const uint8_t *site, int64_t nx, int64_t ny, int64_t nz, const double spacing[3],
                        medseg_error *err)
{
    if (nx <= 0 || ny <= 0 || nz <= 0) return ms_error(err, MEDSEG_ERR_ARG, "edt: empty array");
    size_t total;
    if (!ms_mul3_size((size_t)nx, (size_t)ny, (size_t)nz, &total))
        return ms_error(err, MEDSEG_ERR_NOMEM, "edt: array too large");
    int64_t nmax = nx > ny ? nx : ny;
    if (nz > nmax) nmax = nz;
    double *f = ms_malloc(sizeof(double) * (size_t)nmax * 3 + sizeof(double), err, "edt scratch");
    int64_t *v = ms_malloc(sizeof(int64_t) * (size_t)nmax, err, "edt scratch");
    if (!f || !v) {
        free(f);
        free(v);
        return err ? err->status : MEDSEG_ERR_NOMEM;
    }
    double *d = f + nmax, *z = d + nmax;
    for (size_t i = 0; i < total; i++) out[i] = site[i] ? 0.0 : INFINITY;
    edt_pass(out, (int64_t)total, nx, 1, spacing[0] * spacing[0], f, d, v, z);
    if (ny > 1) edt_pass(out, (int64_t)total, ny, nx, spacing[1] * spacing[1], f, d, v, z);
    if (nz > 1) edt_pass(out, (int64_t)total, nz, nx * ny, spacing[2] * spacing[2], f, d, v, z);
    free(f);
    free(v);
    return MEDSEG_OK;
}

// mask [nz, ny, nx] -> out [nz, ny, nx]: mask & ~erosion(mask) (cross structure, outside = 0;
// no z neighbours when nz == 1)
void ms_mask_border(uint8_t *out, const uint8_t *mask, int64_t nx, int64_t ny, int64_t nz)
{
    for (int64_t k = 0; k < nz; k++)
        for (int64_t j = 0; j < ny; j++)
            for (int64_t i = 0; i < nx; i++) {
                int64_t idx = (k * ny + j) * nx + i;
                if (!mask[idx]) {
                    out[idx] = 0;
                    continue;
                }
                int b = i == 0 || i == nx - 1 || j == 0 || j == ny - 1 || !mask[idx - 1] || !mask[idx + 1] ||
                        !mask[idx - nx] || !mask[idx + nx];
                if (!b && nz > 1)
                    b = k == 0 || k == nz - 1 || !mask[idx - nx * ny] || !mask[idx + nx * ny];
                out[idx] = (uint8_t)b;
            }
}

void ms_metrics_overlap(ms_metrics *m, const uint8_t *pred, const uint8_t *gt, size_t n)
{
    int64_t np = 0, ng = 0, ni = 0;
    for (size_t i = 0; i < n; i++) {
        int p = pred[i] != 0, g = gt[i] != 0;
        np += p;
        ng += g;
        ni += p & g;
    }
    m->n_pred = np;
    m->n_gt = ng;
    m->n_inter = ni;
    if (np + ng == 0) {
        m->dice = m->iou = 1.0;
    } else {
        m->dice = 2.0 * (double)ni / (double)(np + ng);
        m->iou = (double)ni / (double)(np + ng - ni);
    }
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double ms_percentile(double *a, size_t n, double q)
{
    qsort(a, n, sizeof *a, cmp_double);
    double idx = q / 100.0 * (double)(n - 1);
    size_t lo = (size_t)floor(idx);
    if (lo >= n - 1) return a[n - 1];
    double t = idx - (double)lo, x = a[lo], y = a[lo + 1], diff = y - x;
    /* numpy's _lerp: the two-sided form keeps the result monotone in t */
    return t >= 0.5 ? y - diff * (1.0 - t) : x + diff * t;
}

/* Distances from the border voxels of `from` to the nearest site of dist_sq (squared mm);
 * appends them to dst and counts those <= tol. */
static size_t collect(double *dst, const uint8_t *border, const double *dist_sq, size_t n, double tol, size_t *within)
{
    size_t c = 0;
    for (size_t i = 0; i < n; i++) {
        if (!border[i]) continue;
        double d = sqrt(dist_sq[i]);
        dst[c++] = d;
        if (d <= tol) (*within)++;
    }
    return c;
}

medseg_status ms_metrics_compute(ms_metrics *m, const uint8_t *pred, const uint8_t *gt, int64_t nx, int64_t ny,
                                 int64_t nz, const double spacing[3], double tol_mm, medseg_error *err)
{
    size_t n;
    if (nx <= 0 || ny <= 0 || nz <= 0 || !ms_mul3_size((size_t)nx, (size_t)ny, (size_t)nz, &n))
        return ms_error(err, MEDSEG_ERR_ARG, "metrics: invalid mask size");
    ms_metrics_overlap(m, pred, gt, n);
    if (m->n_pred == 0 && m->n_gt == 0) {
        m->nsd = 1.0;
        m->hd95 = 0.0;
        return MEDSEG_OK;
    }
    if (m->n_pred == 0 || m->n_gt == 0) {
        m->nsd = 0.0;
        m->hd95 = INFINITY;
        return MEDSEG_OK;
    }
    /* Bounding box of pred | gt: every border voxel (= every site) lies inside it. */
    int64_t lo[3] = {nx, ny, nz}, hi[3] = {-1, -1, -1};
    for (int64_t k = 0; k < nz; k++)
        for (int64_t j = 0; j < ny; j++) {
            const uint8_t *pr = pred + (k * ny + j) * nx, *gr = gt + (k * ny + j) * nx;
            for (int64_t i = 0; i < nx; i++) {
                if (!pr[i] && !gr[i]) continue;
                if (i < lo[0]) lo[0] = i;
                if (i > hi[0]) hi[0] = i;
                if (j < lo[1]) lo[1] = j;
                if (j > hi[1]) hi[1] = j;
                if (k < lo[2]) lo[2] = k;
                if (k > hi[2]) hi[2] = k;
            }
        }
    int64_t bx = hi[0] - lo[0] + 1, by = hi[1] - lo[1] + 1, bz = hi[2] - lo[2] + 1;
    size_t bn = (size_t)bx * (size_t)by * (size_t)bz;
    uint8_t *ba = NULL, *bb = NULL;
    double *da = NULL, *db = NULL, *dist = NULL;
    medseg_status st = MEDSEG_ERR_NOMEM;
    ba = ms_malloc(bn, err, "metrics border");
    bb = ms_malloc(bn, err, "metrics border");
    da = ms_malloc(bn * sizeof(double), err, "metrics distances");
    db = ms_malloc(bn * sizeof(double), err, "metrics distances");
    if (!ba || !bb || !da || !db) goto done;

    /* Borders use the full array's neighbourhood (the array edge counts as outside, the crop
     * edge does not). */
    for (int pass = 0; pass < 2; pass++) {
        const uint8_t *src = pass ? gt : pred;
        uint8_t *dst = pass ? bb : ba;
        for (int64_t k = 0; k < bz; k++)
            for (int64_t j = 0; j < by; j++)
                for (int64_t i = 0; i < bx; i++) {
                    int64_t gi = i + lo[0], gj = j + lo[1], gk = k + lo[2];
                    int64_t idx = (gk * ny + gj) * nx + gi;
                    uint8_t b = 0;
                    if (src[idx]) {
                        b = gi == 0 || gi == nx - 1 || gj == 0 || gj == ny - 1 || !src[idx - 1] || !src[idx + 1] ||
                            !src[idx - nx] || !src[idx + nx];
                        if (!b && nz > 1)
                            b = gk == 0 || gk == nz - 1 || !src[idx - nx * ny] || !src[idx + nx * ny];
                    }
                    dst[(k * by + j) * bx + i] = b;
                }
    }
    if ((st = ms_edt_sq(da, ba, bx, by, bz, spacing, err)) != MEDSEG_OK) goto done;
    if ((st = ms_edt_sq(db, bb, bx, by, bz, spacing, err)) != MEDSEG_OK) goto done;
    size_t na = 0, nb = 0;
    for (size_t i = 0; i < bn; i++) {
        na += ba[i];
        nb += bb[i];
    }
    st = MEDSEG_ERR_NOMEM;
    dist = ms_malloc((na + nb) * sizeof(double), err, "metrics distances");
    if (!dist) goto done;
    size_t within = 0;
    size_t ca = collect(dist, ba, db, bn, tol_mm, &within);       /* pred border -> gt border */
    size_t cb = collect(dist + ca, bb, da, bn, tol_mm, &within);  /* gt border -> pred border */
    m->nsd = (double)within / (double)(ca + cb);
    double pa = ms_percentile(dist, ca, 95.0), pb = ms_percentile(dist + ca, cb, 95.0);
    m->hd95 = pa > pb ? pa : pb;
    st = MEDSEG_OK;
done:
    free(ba);
    free(bb);
    free(da);
    free(db);
    free(dist);
    return st;
}
