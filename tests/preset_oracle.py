#!/usr/bin/python3
"""Reference runs for the preprocessing-preset tests (test_preset_medsam, test_preset_litemedsam).

Test oracle only: run with Debian's /usr/bin/python3 (python3-numpy, python3-skimage,
python3-scipy, python3-opencv). The product never runs Python.

  preset_oracle.py stamp IN.safetensors OUT.safetensors key=value ...
      copies a safetensors file adding/overriding __metadata__ entries (e.g. medseg.preset=medsam,
      what `medseg model import` stamps for a MedSAM checkpoint).
  preset_oracle.py area OUTDIR
      random uint8 images and cv2.resize(..., interpolation=cv2.INTER_AREA) of them, for every path
      of OpenCV's INTER_AREA (2x2 and 3x3 integer factors, general shrink, enlarge, mixed).
      Writes case_<i>_src.npy / case_<i>_dst.npy and cases.txt ("i h w c nh nw" per line).
  preset_oracle.py spline OUTDIR
      random uint8 images and skimage.transform.resize(img, (nh, nw), order=3, preserve_range=True,
      anti_aliasing=True) (float64), enlarging and shrinking (anti-aliasing Gaussian), grey 2-D
      and 3-channel. Same file layout (dst is float64).
"""
import json
import os
import struct
import sys

import numpy as np


def stamp(src, dst, pairs):
    with open(src, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n).decode("utf-8"))
        meta = dict(header.get("__metadata__") or {})
        for p in pairs:
            k, v = p.split("=", 1)
            meta[k] = v
        header["__metadata__"] = meta
        hb = json.dumps(header, separators=(",", ":")).encode("utf-8")
        hb += b" " * ((8 - len(hb) % 8) % 8)
        tmp = dst + ".tmp"
        with open(tmp, "wb") as g:
            g.write(struct.pack("<Q", len(hb)))
            g.write(hb)
            while True:
                b = f.read(1 << 22)
                if not b:
                    break
                g.write(b)
    os.replace(tmp, dst)


AREA_CASES = [
    # h, w, c, nh, nw
    (64, 64, 3, 32, 32),     # 2x2 fast path
    (90, 60, 1, 30, 20),     # 3x3 integer path (rounding half to even)
    (54, 80, 3, 17, 26),     # general shrink (hc18-like ratio)
    (101, 37, 3, 33, 12),    # general shrink, odd sizes
    (257, 300, 1, 219, 256),  # general shrink near 1
    (40, 30, 3, 100, 75),    # enlarge (bilinear emulation), SIMD part + tail
    (13, 7, 3, 29, 16),      # enlarge, tiny
    (100, 37, 1, 256, 95),   # enlarge, grey, long rows
    (30, 70, 3, 45, 60),     # mixed: rows enlarged, columns shrunk
]

SPLINE_CASES = [
    # h, w, c, nh, nw
    (23, 31, 3, 64, 48),   # enlarge, RGB (channel-axis spline)
    (17, 12, 1, 40, 41),   # enlarge, grey 2-D
    (60, 45, 3, 25, 20),   # shrink: anti-aliasing Gaussian on both axes
    (70, 33, 1, 30, 50),   # shrink rows, enlarge columns
]


def area(outdir):
    import cv2
    rng = np.random.default_rng(20261124)
    lines = []
    for i, (h, w, c, nh, nw) in enumerate(AREA_CASES):
        shape = (h, w) if c == 1 else (h, w, c)
        src = rng.integers(0, 256, size=shape, dtype=np.uint8)
        if i % 2 == 0:  # smooth-ish content too, so ties and flat areas occur
            src[: h // 2] = (np.arange(w, dtype=np.int64)[None, :] * 7 % 256).astype(np.uint8)[..., None] if c > 1 \
                else (np.arange(w, dtype=np.int64)[None, :] * 7 % 256).astype(np.uint8)
        dst = cv2.resize(src, (nw, nh), interpolation=cv2.INTER_AREA)
        np.save(os.path.join(outdir, "case_%d_src.npy" % i), src)
        np.save(os.path.join(outdir, "case_%d_dst.npy" % i), dst)
        lines.append("%d %d %d %d %d %d" % (i, h, w, c, nh, nw))
    with open(os.path.join(outdir, "cases.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")


def spline(outdir):
    from skimage import transform
    rng = np.random.default_rng(20261125)
    lines = []
    for i, (h, w, c, nh, nw) in enumerate(SPLINE_CASES):
        shape = (h, w) if c == 1 else (h, w, c)
        src = rng.integers(0, 256, size=shape, dtype=np.uint8)
        out_shape = (nh, nw)
        dst = transform.resize(src, out_shape, order=3, preserve_range=True, anti_aliasing=True)
        np.save(os.path.join(outdir, "case_%d_src.npy" % i), src)
        np.save(os.path.join(outdir, "case_%d_dst.npy" % i), dst.astype(np.float64))
        lines.append("%d %d %d %d %d %d" % (i, h, w, c, nh, nw))
    with open(os.path.join(outdir, "cases.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")


def main():
    if len(sys.argv) >= 4 and sys.argv[1] == "stamp":
        stamp(sys.argv[2], sys.argv[3], sys.argv[4:])
    elif len(sys.argv) == 3 and sys.argv[1] == "area":
        area(sys.argv[2])
    elif len(sys.argv) == 3 and sys.argv[1] == "spline":
        spline(sys.argv[2])
    else:
        sys.stderr.write(__doc__)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
