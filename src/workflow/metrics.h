/* Segmentation metrics with voxel spacing: Dice, IoU, normalised surface Dice (NSD) at a
 * tolerance in mm, and HD95, in 2D (nz = 1) and 3D.
 *
 * Masks are 0/1 bytes laid out as medseg_volume: voxel (i, j, k) at (k*ny + j)*nx + i.
 *
 * Definitions (border-voxel variant, the one MONAI's compute_surface_dice /
 * compute_hausdorff_distance use; documented in docs/eval.md):
 *   border(A)  = voxels of A with at least one face neighbour (4-neighbourhood in 2D,
 *                6-neighbourhood in 3D) outside A; voxels beyond the array edge count as outside
 *                (A xor binary_erosion(A) with scipy's default cross structure, border_value 0).
 *   d(a, B)    = Euclidean distance in mm (spacing applied per axis) from voxel centre a to the
 *                nearest voxel centre of border(B); exact (separable Felzenszwalb-Huttenlocher EDT).
 *   NSD(tau)   = ( #{a in border(A): d(a,B) <= tau} + #{b in border(B): d(b,A) <= tau} )
 *                / ( |border(A)| + |border(B)| )
 *   HD95       = max( P95{d(a,B): a in border(A)}, P95{d(b,A): b in border(B)} ), P95 = numpy's
 *                default (linear interpolation) 95th percentile.
 *   Dice       = 2|A & B| / (|A| + |B|),  IoU = |A & B| / |A | B|.
 * Empty masks: both empty -> Dice 1, IoU 1, NSD 1, HD95 0; exactly one empty -> Dice 0, IoU 0,
 * NSD 0, HD95 +inf (INFINITY; written "inf" in CSV and left out of means).
 * This differs from the DeepMind surface-distance package (surfel-area weighting of the
 * boundary between voxels); the two agree closely but not exactly. */
#ifndef MS_METRICS_H
#define MS_METRICS_H

#include "core/common.h"

typedef struct {
    double dice, iou, nsd, hd95;
    int64_t n_pred, n_gt, n_inter; /* voxel counts */
} ms_metrics;

/* Squared Euclidean distance transform: out[v] = squared distance in mm^2 from voxel v to the
 * nearest voxel with site[v] != 0 (INFINITY when there is none). spacing[3] in mm along i, j, k.
 * Exact; separable lower-envelope algorithm (Felzenszwalb & Huttenlocher, 2012), one pass per
 * axis. */
medseg_status ms_edt_sq(double *out, const uint8_t *site, int64_t nx, int64_t ny, int64_t nz, const double spacing[3],
                        medseg_error *err);

/* border(mask) as defined above: out[v] = 1 on border voxels. */
void ms_mask_border(uint8_t *out, const uint8_t *mask, int64_t nx, int64_t ny, int64_t nz);

/* Dice and IoU only (no distances). */
void ms_metrics_overlap(ms_metrics *m, const uint8_t *pred, const uint8_t *gt, size_t n);

/* All four metrics. tol_mm is NSD's tolerance. */
medseg_status ms_metrics_compute(ms_metrics *m, const uint8_t *pred, const uint8_t *gt, int64_t nx, int64_t ny,
                                 int64_t nz, const double spacing[3], double tol_mm, medseg_error *err);

/* numpy.percentile(a, q) with the default linear method; sorts a in place. n >= 1. */
double ms_percentile(double *a, size_t n, double q);

#endif
