"""Independent oracle for medseg's segmentation metrics (src/workflow/metrics.h), with scipy.

  /usr/bin/python3 tests/metrics_oracle.py SHARED SPEC.tsv

SPEC.tsv: one pair per line, tab-separated:
  name  pred_file  pred_value  gt_file  gt_value  dx,dy,dz  tol_mm
Files are relative to SHARED/data. The prediction is `pred_file == pred_value`, shifted by
(dx, dy, dz) voxels along (x, y, z) with zero fill; the ground truth is `gt_file == gt_value`.
2D images (.png/.bmp/.jpg; channel 0) have 1 mm pixels; NIfTI spacing comes from the header
zooms, npz spacing from its `spacing` key (x, y, z order, arrays (D, H, W)).

Prints one line per pair: name dice iou nsd hd95 (hd95 'inf' when exactly one mask is empty).

Definitions (the same as metrics.h, implemented separately): border = mask & ~binary_erosion(mask)
with the cross structure and border_value 0; distances from each border voxel of one mask to the
nearest border voxel of the other with distance_transform_edt(sampling=spacing); NSD = fraction of
both borders within tol; HD95 = max of the two directed np.percentile(.., 95).
"""
import os
import sys

import numpy as np
from PIL import Image
from scipy import ndimage


def load(shared, rel):
    path = os.path.join(shared, "data", rel)
    if rel.endswith(".npz"):
        z = np.load(path)
        return np.transpose(z["gts"], (2, 1, 0)), tuple(float(s) for s in z["spacing"])
    if rel.endswith(".nii") or rel.endswith(".nii.gz"):
        import nibabel as nib
        img = nib.load(path)
        return np.asanyarray(img.dataobj), tuple(float(s) for s in img.header.get_zooms()[:3])
    a = np.array(Image.open(path))
    if a.ndim == 3:
        a = a[..., 0]
    return a.T, (1.0, 1.0)  # (x, y) order like the volumes


def shift(m, d):
    out = np.zeros_like(m)
    src = []
    dst = []
    for ax in range(m.ndim):
        s = d[ax]
        n = m.shape[ax]
        if s >= 0:
            src.append(slice(0, max(n - s, 0)))
            dst.append(slice(s, n))
        else:
            src.append(slice(-s, n))
            dst.append(slice(0, max(n + s, 0)))
    out[tuple(dst)] = m[tuple(src)]
    return out


def metrics(p, g, spacing, tol):
    inter = np.logical_and(p, g).sum()
    sp, sg = p.sum(), g.sum()
    if sp + sg == 0:
        return 1.0, 1.0, 1.0, 0.0
    dice = 2 * inter / (sp + sg)
    iou = inter / (sp + sg - inter)
    if sp == 0 or sg == 0:
        return dice, iou, 0.0, float("inf")
    st = ndimage.generate_binary_structure(p.ndim, 1)
    bp = p & ~ndimage.binary_erosion(p, structure=st, border_value=0)
    bg = g & ~ndimage.binary_erosion(g, structure=st, border_value=0)
    dist_to_g = ndimage.distance_transform_edt(~bg, sampling=spacing)
    dist_to_p = ndimage.distance_transform_edt(~bp, sampling=spacing)
    d_pg = dist_to_g[bp]
    d_gp = dist_to_p[bg]
    nsd = ((d_pg <= tol).sum() + (d_gp <= tol).sum()) / (len(d_pg) + len(d_gp))
    hd95 = max(np.percentile(d_pg, 95), np.percentile(d_gp, 95))
    return dice, iou, nsd, hd95


def main():
    shared, spec = sys.argv[1], sys.argv[2]
    for line in open(spec):
        line = line.rstrip("\n")
        if not line:
            continue
        name, pf, pv, gf, gv, sh, tol = line.split("\t")
        pa, spacing = load(shared, pf)
        ga, _ = load(shared, gf)
        p = pa == float(pv)
        g = ga == float(gv)
        d = [int(v) for v in sh.split(",")][: p.ndim]
        p = shift(p, d)
        r = metrics(p, g, spacing[: p.ndim], float(tol))
        print(name, *("%.9g" % v for v in r))


if __name__ == "__main__":
    main()
