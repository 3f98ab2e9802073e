#!/usr/bin/python3
"""Independent reference reader for tests/test_volume_io.c (Debian python3-nibabel, numpy).

    volume_oracle.py read FILE[::KEY] ...

prints one JSON object per file and line, in medseg's index convention: voxel (i, j, k), i fastest
(nibabel / ITK order for NIfTI and NRRD; npz (D,H,W) arrays are indexed [k, j, i]):
  shape [nx, ny, nz], channels, dtype (stored type), sum/min/max of the real values (scaling
  applied), affine (3 rows of 4: voxel -> RAS mm), zooms, slope, inter, voxels [[i, j, k, c, value]...]
  at a few fixed positions and at the first maximum, and for NIfTI qform_code / sform_code.

NIfTI: nibabel (affine = get_best_affine: sform if sform_code > 0, else qform).
NRRD: a small reader written here (header lines, gzip or raw data, LPS/RAS space directions).
npz: numpy.load; KEY defaults to `imgs`; spacing (x, y, z) and direction/origin in SimpleITK's
LPS convention, converted to RAS by negating the first two rows.
"""
import gzip
import json
import sys

import numpy as np


def nrrd_read(path):
    raw = open(path, "rb").read()
    end = raw.index(b"\n\n")
    lines = raw[:end].decode("latin-1").split("\n")
    assert lines[0].startswith("NRRD000")
    f = {}
    for ln in lines[1:]:
        if ln.startswith("#") or ":=" in ln:
            continue
        k, v = ln.split(": ", 1)
        f[k.strip().lower()] = v.strip()
    types = {"short": "<i2", "int16": "<i2", "unsigned short": "<u2", "ushort": "<u2", "uint16": "<u2",
             "int": "<i4", "int32": "<i4", "uint8": "u1", "uchar": "u1", "unsigned char": "u1",
             "int8": "i1", "float": "<f4", "double": "<f8", "uint32": "<u4", "int64": "<i8", "uint64": "<u8"}
    dt = np.dtype(types[f["type"]])
    if f.get("endian", "little") == "big":
        dt = dt.newbyteorder(">")
    sizes = [int(s) for s in f["sizes"].split()]
    data = raw[end + 2:]
    if f["encoding"] in ("gzip", "gz"):
        data = gzip.decompress(data)
    n = int(np.prod(sizes))
    arr = np.frombuffer(data[:n * dt.itemsize], dtype=dt).reshape(sizes[::-1]).T  # [i, j, k]
    if arr.ndim == 2:
        arr = arr[:, :, None]
    A = np.eye(4)
    if "spacings" in f and "space directions" not in f:
        sp = [float(x) for x in f["spacings"].split()]
        for c, s in enumerate(sp[:3]):
            A[c, c] = abs(s)
    dirs = [d for d in f.get("space directions", "").replace(")", ") ").split() if d]
    vecs = [np.array([float(x) for x in d.strip("()").split(",")]) for d in dirs if d != "none"]
    if vecs:
        for c, v in enumerate(vecs):
            A[:3, c] = v
    if "space origin" in f:
        A[:3, 3] = [float(x) for x in f["space origin"].strip("()").split(",")]
    space = f.get("space", "").lower()
    if space in ("left-posterior-superior", "lps"):
        A[:2, :] *= -1
    return arr.astype(arr.dtype.newbyteorder("=")), A, str(np.dtype(types[f["type"]]).name)


def summary(arr, affine, dtype, zooms, slope=1.0, inter=0.0, extra=None):
    """arr: [i, j, k] or [i, j, k, c] real values (float64)."""
    if arr.ndim == 3:
        arr = arr[..., None]
    nx, ny, nz, nc = arr.shape
    pos = [(0, 0, 0, 0), (nx - 1, ny - 1, nz - 1, nc - 1), (nx // 2, ny // 3, nz // 2, 0),
           (nx // 3, ny // 2, max(nz - 2, 0), nc - 1)]
    rs = np.random.RandomState(0)
    for _ in range(6):
        pos.append((rs.randint(nx), rs.randint(ny), rs.randint(nz), rs.randint(nc)))
    flat = arr.transpose(2, 1, 0, 3).ravel()  # k, j, i, c order = medseg's memory order
    am = int(np.argmax(flat))
    c = am % nc
    i = (am // nc) % nx
    j = (am // nc // nx) % ny
    k = am // nc // nx // ny
    pos.append((i, j, k, c))
    out = {
        "shape": [nx, ny, nz], "channels": nc, "dtype": dtype,
        "sum": float(np.sum(arr, dtype=np.float64)), "min": float(arr.min()), "max": float(arr.max()),
        "affine": [[float(x) for x in row] for row in affine[:3]],
        "zooms": [float(z) for z in zooms], "slope": float(slope), "inter": float(inter),
        "voxels": [[int(a), int(b), int(cc), int(d), float(arr[a, b, cc, d])] for a, b, cc, d in pos],
    }
    if extra:
        out.update(extra)
    return out


def read_one(spec):
    path, _, key = spec.partition("::")
    if path.endswith(".npz"):
        z = np.load(path)
        a = z[key or "imgs"]
        if a.ndim == 3 and a.shape[2] == 3:  # (H, W, 3)
            arr = a.transpose(1, 0, 2)[:, :, None, :]
        elif a.ndim == 3:  # (D, H, W)
            arr = a.transpose(2, 1, 0)
        else:  # (H, W)
            arr = a.T[:, :, None]
        sp = z["spacing"] if "spacing" in z.files else np.ones(3)
        A = np.eye(4)
        if "direction" in z.files:
            D = z["direction"].reshape(3, 3)
            A[:3, :3] = D * sp[None, :]
            if "origin" in z.files:
                A[:3, 3] = z["origin"]
            A[:2, :] *= -1
        else:  # SimpleITK's default: identity direction in LPS
            A[:3, :3] = np.diag(sp)
            A[:2, :] *= -1
        return summary(arr.astype(np.float64), A, str(a.dtype), sp)
    if path.endswith(".nrrd"):
        arr, A, dt = nrrd_read(path)
        arr = arr.astype(np.float64)
        if arr.ndim == 4:  # (3, i, j, k) colour first
            arr = np.moveaxis(arr, 0, -1)
        zooms = np.sqrt((A[:3, :3] ** 2).sum(axis=0))
        return summary(arr, A, dt, zooms)
    import nibabel as nib
    img = nib.load(path)
    h = img.header
    raw = np.asanyarray(img.dataobj)
    if raw.dtype.names:  # RGB24: (R, G, B) records -> a last axis of 3
        data = np.stack([raw[n] for n in raw.dtype.names], axis=-1).astype(np.float64)
        dt = "uint8"
    else:
        data = img.get_fdata(dtype=np.float64)
        dt = str(h.get_data_dtype())
    while data.ndim > 3 and data.shape[3] == 1:
        data = data[:, :, :, 0]
    slope, inter = img.dataobj.slope, img.dataobj.inter
    A = h.get_best_affine()
    return summary(data, A, dt, h.get_zooms()[:3],
                   1.0 if slope is None else slope, 0.0 if inter is None else inter,
                   {"qform_code": int(h["qform_code"]), "sform_code": int(h["sform_code"]),
                    "n_extensions": len(h.extensions), "vox_offset": float(h["vox_offset"]),
                    "intent_code": int(h["intent_code"])})


def main():
    if len(sys.argv) < 2 or sys.argv[1] != "read":
        sys.stderr.write(__doc__)
        return 2
    for spec in sys.argv[2:]:
        try:
            r = read_one(spec)
            r["path"] = spec
        except Exception as e:  # reported to the C test as a failure for this file
            r = {"path": spec, "error": "%s: %s" % (type(e).__name__, e)}
        print(json.dumps(r), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
