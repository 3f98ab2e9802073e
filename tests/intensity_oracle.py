"""Independent numpy oracle for src/workflow/intensity.c (called by tests/test_intensity.c).

  python3 intensity_oracle.py IN.npy DTYPE PRESET OUT.npy

IN.npy holds a (D, H, W) volume as float32; DTYPE (int16, int32, uint16, float32, float64) is the
voxel type it is cast back to first, so numpy's type rules match the original data's. PRESET:
  percentile      MedSAM pre_CT_MR.py, non-CT branch (0.5/99.5 percentiles of voxels > 0 of the
                  whole volume, clip, min-max of the clipped volume, zeros stay zero, np.uint8)
  window:W,L      MedSAM pre_CT_MR.py, CT branch (clip to L -+ W/2, min-max of the clipped volume)
  minmax          micro-sam util._to_image per slice
Writes the uint8 result (D, H, W). Written from the formulas in those scripts, not from medseg."""
import sys
import numpy as np

inp, dtype, preset, out = sys.argv[1:5]
x = np.load(inp).astype(dtype)
if preset == "percentile":
    pos = x[x > 0]
    lo, hi = np.percentile(pos, 0.5), np.percentile(pos, 99.5)
    y = np.clip(x, lo, hi)
    y = (y - np.min(y)) / (np.max(y) - np.min(y)) * 255.0
    y[x == 0] = 0
    y = np.uint8(y)
elif preset.startswith("window:"):
    w, l = (float(v) for v in preset[7:].split(","))
    y = np.clip(x, l - w / 2, l + w / 2)
    y = np.uint8((y - np.min(y)) / (np.max(y) - np.min(y)) * 255.0)
elif preset == "minmax":
    sl = []
    for s in x:
        t = s.astype("float32") - s.min()
        t = t / t.max()
        sl.append((t * 255).astype("uint8"))
    y = np.stack(sl)
else:
    sys.exit("unknown preset " + preset)
np.save(out, y)
