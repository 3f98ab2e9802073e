#!/usr/bin/python3
"""Oracle for `medseg info` and `medseg convert` (tests/cli_info_convert.sh runs it).

Every image/volume under <shared>/data (labels too) is converted by medseg and the result is
compared with independent reference readers:
  NIfTI   nibabel (stored values, scl_slope/scl_inter, sform/qform affine)
  DICOM   pydicom with the GDCM pixel handler (pixel_array, Rescale Slope/Intercept, geometry from
          ImagePositionPatient/ImageOrientationPatient/PixelSpacing as PS3.3 C.7.6.2.1.1 defines it)
          and dcm2niix (`dcm2niix -z y`, read back with nibabel) for series folders
  NRRD    a small reader below (numpy + gzip), independent of medseg's
  npz     numpy (SimpleITK geometry convention: world LPS = origin + direction . diag(spacing) . index)
  2D      Pillow
Comparison = world positions of voxel centres equal within 1e-3 mm (voxel indices mapped through
both affines; axis permutations and flips allowed) and real values (stored * slope + inter) equal
bit for bit at equal positions. `medseg info --json` is checked against the same references.

usage:
  reference_check.py check  MEDSEG_BIN SHARED [--only SUBSTRING] [--keep DIR]
  reference_check.py badinput MEDSEG_BIN SHARED [--fuzz-corpus DIR ...] [--budget SECONDS] [--corpus-max N]
Prints one line per check ("ok ..." / "FAIL ..."), a summary, and exits 1 on any failure.
"""
import glob
import gzip
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zlib

import numpy as np

TOL_MM = 1e-3
FAILS = []
PASSES = [0]


import threading  # noqa: E402

LOCK = threading.Lock()
# Runs in parallel (2 workers by default: the machines this runs on have 2 cores); each task has
# its own temporary folder, and ok/fail lines are whole lines.
WORKERS = int(os.environ.get("MEDSEG_TEST_WORKERS", "2"))


def ok(msg):
    with LOCK:
        PASSES[0] += 1
        print("ok   " + msg, flush=True)


def fail(msg):
    with LOCK:
        FAILS.append(msg)
        print("FAIL " + msg, flush=True)


def parallel(fn, items):
    from concurrent.futures import ThreadPoolExecutor
    if WORKERS <= 1:
        return [fn(x) for x in items]
    with ThreadPoolExecutor(max_workers=WORKERS) as ex:
        return list(ex.map(fn, items))


class Ref:
    """A volume as a reference tool reads it: vals[i, j, k, c] real values (float64),
    aff 4x4 voxel -> world RAS mm, plus what the file stores."""

    def __init__(self, vals, aff, stored_dtype=None, slope=1.0, inter=0.0, space="RAS", tool="", geometry=True):
        if vals.ndim == 3:
            vals = vals[..., None]
        self.vals = vals
        self.aff = np.asarray(aff, dtype=np.float64)
        self.stored_dtype = stored_dtype
        self.slope = float(slope)
        self.inter = float(inter)
        self.space = space          # the file's own convention
        self.tool = tool
        self.geometry = geometry    # False: the file has no geometry (2D images, bare npz)


def real(stored, slope, inter):
    x = stored.astype(np.float64)
    if slope != 1.0 or inter != 0.0:
        x = x * slope + inter
    return x


# ---------------------------------------------------------------- NIfTI (nibabel)

def nifti_ref(path):
    import nibabel as nib
    img = nib.load(path)
    hdr = img.header
    raw = np.asanyarray(img.dataobj.get_unscaled())
    dt = hdr.get_data_dtype()
    if dt.names:  # RGB24 / RGBA32 structured
        raw = np.stack([raw[n] for n in dt.names[:3]], axis=-1)
        if raw.ndim == 3:
            raw = raw[:, :, None, :]
        stored = np.dtype(dt[dt.names[0]])
    else:
        stored = raw.dtype
        shp = raw.shape
        if raw.ndim == 2:
            raw = raw[:, :, None]
        elif raw.ndim == 5 and shp[3] == 1:   # vector intent: (x, y, z, 1, c)
            raw = raw[:, :, :, 0, :]
        elif raw.ndim == 4 and shp[3] == 1:
            raw = raw[..., 0]
    slope = img.dataobj.slope
    inter = img.dataobj.inter
    slope = 1.0 if slope is None or not np.isfinite(slope) or slope == 0 else float(slope)
    inter = 0.0 if inter is None or not np.isfinite(inter) else float(inter)
    sform, scode = hdr.get_sform(coded=True)
    qform, qcode = hdr.get_qform(coded=True)
    if scode and scode > 0:
        aff = sform
    elif qcode and qcode > 0:
        aff = qform
    else:
        # NIfTI-1 "method 1" (nifti1.h): x = pixdim * index, no offset. nibabel's img.affine here
        # centres the volume instead; the standard's method is what medseg follows.
        pd = hdr["pixdim"]
        aff = np.diag([pd[1], pd[2], pd[3] if pd[3] > 0 else 1.0, 1.0])
    return Ref(real(raw, slope, inter), aff, stored, slope, inter, "RAS", "nibabel")


# ---------------------------------------------------------------- NRRD (own reader)

NRRD_TYPES = {
    "signed char": "i1", "int8": "i1", "int8_t": "i1", "uchar": "u1", "unsigned char": "u1", "uint8": "u1",
    "uint8_t": "u1", "short": "i2", "short int": "i2", "signed short": "i2", "signed short int": "i2",
    "int16": "i2", "int16_t": "i2", "ushort": "u2", "unsigned short": "u2", "unsigned short int": "u2",
    "uint16": "u2", "uint16_t": "u2", "int": "i4", "signed int": "i4", "int32": "i4", "int32_t": "i4",
    "uint": "u4", "unsigned int": "u4", "uint32": "u4", "uint32_t": "u4", "longlong": "i8",
    "long long": "i8", "long long int": "i8", "signed long long": "i8", "signed long long int": "i8",
    "int64": "i8", "int64_t": "i8", "ulonglong": "u8", "unsigned long long": "u8",
    "unsigned long long int": "u8", "uint64": "u8", "uint64_t": "u8", "float": "f4", "double": "f8",
}


def nrrd_vec(s):
    s = s.strip()
    if s == "none":
        return None
    return [float(x) for x in s.strip("()").split(",")]


def nrrd_ref(path):
    blob = open(path, "rb").read()
    if not blob.startswith(b"NRRD000"):
        raise ValueError("not NRRD")
    m = re.search(b"\r?\n\r?\n", blob)
    head = blob[: m.start()].decode("latin-1").splitlines()
    data = blob[m.end():]
    f = {}
    for line in head[1:]:
        if line.startswith("#") or ":=" in line:
            continue
        k, _, v = line.partition(":")
        f[k.strip().lower()] = v.strip()
    dt = np.dtype(NRRD_TYPES[f["type"].lower()])
    if dt.itemsize > 1:
        dt = dt.newbyteorder("<" if f.get("endian", "little") == "little" else ">")
    sizes = [int(x) for x in f["sizes"].split()]
    enc = f["encoding"].lower()
    if enc in ("gzip", "gz"):
        data = zlib.decompress(data, 15 + 32)
    elif enc != "raw":
        raise ValueError("encoding " + enc)
    n = int(np.prod(sizes))
    arr = np.frombuffer(data[: n * dt.itemsize], dtype=dt).reshape(sizes[::-1]).T  # fastest axis first
    dirs = [nrrd_vec(x) for x in re.findall(r"\([^)]*\)|none", f.get("space directions", ""))]
    chan_axes = [a for a, d in enumerate(dirs) if d is None]
    space = f.get("space", "left-posterior-superior").lower()
    flip = {"left-posterior-superior": (-1, -1, 1), "lps": (-1, -1, 1), "right-anterior-superior": (1, 1, 1),
            "ras": (1, 1, 1), "left-anterior-superior": (-1, 1, 1), "las": (-1, 1, 1)}[space]
    spatial = [d for d in dirs if d is not None]
    if chan_axes:
        arr = np.moveaxis(arr, chan_axes[0], -1)
    else:
        arr = arr[..., None]
    if not spatial:  # no space directions: spacings
        sp = [float(x) for x in f.get("spacings", "1 1 1").split()]
        spatial = [[sp[a] if b == a else 0.0 for b in range(3)] for a in range(len(sp))]
    while arr.ndim < 4:
        arr = arr[:, :, None, :]
    aff = np.eye(4)
    for a, d in enumerate(spatial):
        d = list(d) + [0.0] * (3 - len(d))
        aff[:3, a] = [d[r] * flip[r] for r in range(3)]
    if len(spatial) == 2:
        nrm = np.cross(aff[:3, 0], aff[:3, 1])
        aff[:3, 2] = nrm / np.linalg.norm(nrm)
    org = nrrd_vec(f["space origin"]) if "space origin" in f else [0.0, 0.0, 0.0]
    org = list(org) + [0.0] * (3 - len(org))
    aff[:3, 3] = [org[r] * flip[r] for r in range(3)]
    return Ref(arr.astype(np.float64), aff, arr.dtype.newbyteorder("="), 1.0, 0.0,
               "LPS" if flip[0] < 0 else "RAS", "numpy NRRD reader")


# ---------------------------------------------------------------- npz (numpy)

def npz_ref(path, key="imgs"):
    z = np.load(path)
    a = z[key]
    if a.ndim == 3 and a.shape[2] == 3:
        vals = np.transpose(a, (1, 0, 2))[:, :, None, :]       # (H, W, 3) RGB -> (W, H, 1, 3)
    elif a.ndim == 4 and a.shape[3] == 3:
        vals = np.transpose(a, (2, 1, 0, 3))                   # (D, H, W, 3) -> (W, H, D, 3)
    elif a.ndim == 3:
        vals = np.transpose(a, (2, 1, 0))[..., None]           # (D, H, W) -> (W, H, D, 1)
    elif a.ndim == 2:
        vals = a.T[:, :, None, None]
    else:
        raise ValueError("npz %s: shape %s" % (key, a.shape))
    geometry = "spacing" in z
    sp = list(z["spacing"]) if "spacing" in z else [1.0, 1.0, 1.0]
    sp = [float(x) for x in sp] + [1.0] * (3 - len(sp))
    d = np.asarray(z["direction"], dtype=np.float64).reshape(3, 3) if "direction" in z else np.eye(3)
    o = [float(x) for x in z["origin"]] + [0.0] * (3 - len(z["origin"])) if "origin" in z else [0.0, 0.0, 0.0]
    aff = np.eye(4)
    aff[:3, :3] = d @ np.diag(sp)
    aff[:3, 3] = o
    aff[:2, :] *= -1   # SimpleITK's LPS -> RAS
    return Ref(vals.astype(np.float64), aff, a.dtype, 1.0, 0.0, "LPS", "numpy", geometry)


# ---------------------------------------------------------------- 2D images (Pillow)

def image_ref(path):
    from PIL import Image
    im = Image.open(path)
    im.load()
    if im.mode in ("L", "1", "P", "LA", "I;16", "I") and im.mode != "P":
        if im.mode == "1":
            im = im.convert("L")
        if im.mode == "LA":
            im = im.convert("L")
        a = np.asarray(im)
        vals = a.T[:, :, None, None]
    else:
        a = np.asarray(im.convert("RGB"))
        if a.shape[2] == 3 and (a[..., 0] == a[..., 1]).all() and (a[..., 1] == a[..., 2]).all() and im.mode == "P":
            pass
        vals = np.transpose(a, (1, 0, 2))[:, :, None, :]
    return Ref(vals.astype(np.float64), np.eye(4), a.dtype, 1.0, 0.0, "RAS", "Pillow", geometry=False)


# ---------------------------------------------------------------- DICOM (pydicom + GDCM)

def is_dicom(path):
    try:
        with open(path, "rb") as fh:
            b = fh.read(132)
        return len(b) == 132 and b[128:132] == b"DICM"
    except OSError:
        return False


def dicom_frames(path):
    """Frames of one file: list of (position LPS, row_cos, col_cos, (dr, dc), real 2D/3D array,
    stored dtype, slope, inter, sort key info)."""
    import pydicom
    from pydicom.pixel_data_handlers import gdcm_handler, numpy_handler
    pydicom.config.pixel_data_handlers = [gdcm_handler, numpy_handler]
    ds = pydicom.dcmread(path)
    px = ds.pixel_array
    nfr = int(ds.get("NumberOfFrames", 1) or 1)
    spp = int(ds.get("SamplesPerPixel", 1))
    if nfr == 1:
        px = px[None]
    if spp == 1:
        px = px[..., None]
    slope = float(ds.get("RescaleSlope", 1.0) or 1.0)
    inter = float(ds.get("RescaleIntercept", 0.0) or 0.0)
    out = []
    shared = ds.get("SharedFunctionalGroupsSequence")
    perframe = ds.get("PerFrameFunctionalGroupsSequence")

    def pick(fg, seq, attr):
        if fg is None:
            return None
        s = fg.get(seq)
        if s and len(s) and attr in s[0]:
            return s[0].get(attr)
        return None

    for f in range(nfr):
        pf = perframe[f] if perframe is not None and f < len(perframe) else None
        sh = shared[0] if shared is not None and len(shared) else None
        ipp = pick(pf, "PlanePositionSequence", "ImagePositionPatient") or pick(sh, "PlanePositionSequence", "ImagePositionPatient") or ds.get("ImagePositionPatient")
        iop = pick(pf, "PlaneOrientationSequence", "ImageOrientationPatient") or pick(sh, "PlaneOrientationSequence", "ImageOrientationPatient") or ds.get("ImageOrientationPatient")
        ps = pick(pf, "PixelMeasuresSequence", "PixelSpacing") or pick(sh, "PixelMeasuresSequence", "PixelSpacing") or ds.get("PixelSpacing")
        fslope = pick(pf, "PixelValueTransformationSequence", "RescaleSlope") or pick(sh, "PixelValueTransformationSequence", "RescaleSlope")
        finter = pick(pf, "PixelValueTransformationSequence", "RescaleIntercept") or pick(sh, "PixelValueTransformationSequence", "RescaleIntercept")
        s_ = float(fslope) if fslope is not None else slope
        i_ = float(finter) if finter is not None else inter
        out.append(dict(ipp=np.array([float(x) for x in ipp]) if ipp is not None else None,
                        iop=np.array([float(x) for x in iop]) if iop is not None else None,
                        ps=[float(x) for x in ps] if ps is not None else [1.0, 1.0],
                        stored=px[f], slope=s_, inter=i_, file=path))
    return out, ds


def dicom_ref(paths):
    frames = []
    meta = None
    for p in paths:
        fr, ds = dicom_frames(p)
        frames += fr
        meta = meta or ds
    geometry = all(f["ipp"] is not None and f["iop"] is not None for f in frames)
    if geometry:
        iop = frames[0]["iop"]
        rowc, colc = iop[:3], iop[3:]
        nrm = np.cross(rowc, colc)
        frames.sort(key=lambda f: float(np.dot(f["ipp"], nrm)))
    dr, dc = frames[0]["ps"]  # PixelSpacing = row spacing (between rows), column spacing
    slopes = {(f["slope"], f["inter"]) for f in frames}
    stored = np.stack([f["stored"] for f in frames])            # (k, row, col, c)
    if len(slopes) == 1:
        slope, inter = slopes.pop()
        vals = real(stored, slope, inter)
    else:
        slope, inter = 1.0, 0.0
        vals = np.stack([real(f["stored"], f["slope"], f["inter"]) for f in frames])
    vals = np.transpose(vals, (2, 1, 0, 3))                     # (col i, row j, slice k, c)
    aff = np.eye(4)
    if geometry:
        aff[:3, 0] = rowc * dc     # i (column index) moves along the row direction cosine
        aff[:3, 1] = colc * dr
        p0 = frames[0]["ipp"]
        if len(frames) > 1:
            step = (frames[-1]["ipp"] - p0) / (len(frames) - 1)
            # every slice must lie on that grid (uniform spacing)
            for k, f in enumerate(frames):
                if np.linalg.norm(f["ipp"] - (p0 + k * step)) > TOL_MM:
                    raise ValueError("slice %d at %s is off the uniform grid" % (k, f["ipp"]))
        else:
            step = nrm * float(meta.get("SpacingBetweenSlices", meta.get("SliceThickness", 1.0)) or 1.0)
        aff[:3, 2] = step
        aff[:3, 3] = p0
        aff[:2, :] *= -1   # LPS -> RAS
    return Ref(vals, aff, stored.dtype, slope, inter, "LPS", "pydicom+GDCM", geometry)


def dcm2niix_ref(folder, tmp):
    out = os.path.join(tmp, "dcm2niix")
    os.makedirs(out, exist_ok=True)
    r = subprocess.run(["dcm2niix", "-z", "y", "-f", "ref", "-o", out, folder], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=120)
    files = sorted(glob.glob(os.path.join(out, "ref*.nii.gz")))
    if r.returncode != 0 or len(files) != 1:
        raise RuntimeError("dcm2niix exit %d, outputs %s: %s" % (r.returncode, files, r.stdout.decode()[-300:]))
    ref = nifti_ref(files[0])
    ref.tool = "dcm2niix"
    shutil.rmtree(out)
    return ref


# ---------------------------------------------------------------- comparison

def compare(name, ref, test, check_geometry=True):
    """Maps every voxel of ref to test through both affines; returns an error string or None."""
    R, T = ref.vals, test.vals
    if R.shape[3] != T.shape[3]:
        return "channels %d vs %d" % (R.shape[3], T.shape[3])
    if not check_geometry:
        if R.shape != T.shape:
            return "shape %s vs %s" % (R.shape, T.shape)
        perm, sign, off = [0, 1, 2], [1, 1, 1], [0, 0, 0]
    else:
        M = np.linalg.inv(test.aff) @ ref.aff
        perm, sign, used = [None] * 3, [1] * 3, set()
        for a in range(3):
            if R.shape[a] == 1:
                continue
            col = M[:3, a]
            p = int(np.argmax(np.abs(col)))
            s = 1 if col[p] > 0 else -1
            perm[a], sign[a] = p, s
            used.add(p)
        for a in range(3):
            if perm[a] is None:
                rest = [p for p in range(3) if p not in used and T.shape[p] == 1] or \
                       [p for p in range(3) if p not in used]
                perm[a] = rest[0]
                used.add(rest[0])
        if len(set(perm)) != 3:
            return "axes do not map one to one (M=%s)" % np.round(M, 4).tolist()
        t = M[:3, 3]
        off = [int(round(t[perm[a]])) for a in range(3)]
        # world positions of the corners (and the centre) through both affines
        worst = 0.0
        for ci in range(9):
            if ci == 8:
                ir = np.array([(R.shape[0] - 1) // 2, (R.shape[1] - 1) // 2, (R.shape[2] - 1) // 2], float)
            else:
                ir = np.array([(R.shape[a] - 1) if (ci >> a) & 1 else 0 for a in range(3)], float)
            it = np.zeros(3)
            for a in range(3):
                it[perm[a]] = sign[a] * ir[a] + off[a]
            pr = ref.aff @ np.append(ir, 1.0)
            pt = test.aff @ np.append(it, 1.0)
            worst = max(worst, float(np.linalg.norm(pr[:3] - pt[:3])))
        if worst > TOL_MM:
            return "voxel centres differ by up to %.4g mm (ref affine %s, test affine %s)" % (
                worst, np.round(ref.aff, 5).tolist(), np.round(test.aff, 5).tolist())
    # values at equal positions
    T2 = np.transpose(T, (perm[0], perm[1], perm[2], 3))
    sl = []
    for a in range(3):
        n = R.shape[a]
        if sign[a] > 0:
            lo, hi = off[a], off[a] + n
            if lo < 0 or hi > T2.shape[a]:
                return "axis %d: ref voxels map outside the output (%d..%d of %d)" % (a, lo, hi - 1, T2.shape[a])
            sl.append(slice(lo, hi))
        else:
            hi, lo = off[a], off[a] - n + 1
            if lo < 0 or hi >= T2.shape[a]:
                return "axis %d: ref voxels map outside the output (%d..%d of %d)" % (a, lo, hi, T2.shape[a])
            sl.append(slice(hi, lo - 1 if lo > 0 else None, -1))
    T3 = T2[tuple(sl)]
    if T3.shape != R.shape:
        return "mapped shape %s vs %s" % (T3.shape, R.shape)
    if not np.array_equal(T3, R, equal_nan=True):
        d = np.argwhere(~((T3 == R) | (np.isnan(T3) & np.isnan(R))))
        i = tuple(d[0])
        return "%d values differ; first at ref index %s: ref %r, medseg %r" % (len(d), i, R[i], T3[i])
    return None


def describe_map(ref, test):
    if test.vals.shape[:3] == ref.vals.shape[:3] and np.allclose(test.aff, ref.aff, atol=1e-6):
        return "same grid"
    return "grids differ by an axis flip/permutation, positions equal"


# ---------------------------------------------------------------- driver

def run(cmd, timeout=120):
    t0 = time.time()
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
    return r.returncode, r.stdout.decode("utf-8", "replace"), r.stderr.decode("utf-8", "replace"), time.time() - t0


def read_output(path):
    if path.endswith(".nii.gz") or path.endswith(".nii"):
        return nifti_ref(path)
    if path.endswith(".nrrd"):
        return nrrd_ref(path)
    if path.endswith(".npz"):
        return npz_ref(path)
    if path.endswith(".png"):
        return image_ref(path)
    raise ValueError(path)


def inputs(shared, only):
    data = os.path.join(shared, "data")
    items = []
    for root, dirs, files in os.walk(data):
        dirs.sort()
        dcm = sorted(f for f in files if is_dicom(os.path.join(root, f)))
        for f in sorted(files):
            p = os.path.join(root, f)
            low = f.lower()
            if low.endswith((".nii", ".nii.gz")):
                items.append(("nifti", p))
            elif low.endswith(".nrrd"):
                items.append(("nrrd", p))
            elif low.endswith(".npz"):
                items.append(("npz", p))
            elif low.endswith((".png", ".jpg", ".jpeg", ".bmp")):
                items.append(("image", p))
        if len(dcm) > 1:
            import pydicom
            uids = {str(pydicom.dcmread(os.path.join(root, f), stop_before_pixels=True).SeriesInstanceUID) for f in dcm}
            if len(uids) == 1:
                items.append(("dicomdir", root))
                items.append(("dicom", os.path.join(root, dcm[0])))   # one slice on its own
            else:
                for f in dcm:
                    items.append(("dicom", os.path.join(root, f)))
        elif len(dcm) == 1:
            items.append(("dicom", os.path.join(root, dcm[0])))
    return [(k, p) for k, p in items if not only or only in p]


def reference_for(kind, path, tmp):
    if kind == "nifti":
        return nifti_ref(path)
    if kind == "nrrd":
        return nrrd_ref(path)
    if kind == "npz":
        return npz_ref(path)
    if kind == "image":
        return image_ref(path)
    if kind == "dicom":
        return dicom_ref([path])
    if kind == "dicomdir":
        files = sorted(os.path.join(path, f) for f in os.listdir(path) if is_dicom(os.path.join(path, f)))
        return dicom_ref(files)
    raise ValueError(kind)


def expected_dtype(ref, fmt):
    """The output type docs/formats.md promises for an input read as ref."""
    scaled = ref.slope != 1.0 or ref.inter != 0.0
    if fmt == "png":
        return np.dtype("u1")
    if not scaled:
        return np.dtype(ref.stored_dtype)
    if fmt in ("nii.gz", "nii") and np.float32(ref.slope) == ref.slope and np.float32(ref.inter) == ref.inter:
        return np.dtype(ref.stored_dtype)
    v = ref.vals[np.isfinite(ref.vals)]
    if v.size and np.all(v == np.floor(v)) and v.size == ref.vals.size:
        lo, hi = v.min(), v.max()
        for t in (["u1", "u2", "u4"] if lo >= 0 else []) + ["i2", "i4", "i8"]:
            ii = np.iinfo(t)
            if lo >= ii.min and hi <= ii.max:
                return np.dtype(t)
    return np.dtype("f4") if np.array_equal(ref.vals.astype(np.float32).astype(np.float64), ref.vals,
                                            equal_nan=True) else np.dtype("f8")


def check_info(medseg, kind, path, ref):
    rc, out, err, dt = run([medseg, "info", path, "--json"])
    name = os.path.relpath(path, SHARED_DATA)
    if rc != 0:
        fail("info %s: exit %d: %s" % (name, rc, err.strip()))
        return
    try:
        j = json.loads(out)
    except ValueError as e:
        fail("info %s: invalid JSON (%s)" % (name, e))
        return
    if kind == "dicomdir":
        if not j.get("series") or len(j["series"]) != 1 or j["series"][0]["images"] != ref.vals.shape[2]:
            fail("info %s: series list %s" % (name, j.get("series")))
            return
        j = j["volume"]
    probs = []
    if [int(x) for x in j["dims"]] != list(ref.vals.shape[:3]):
        probs.append("dims %s vs %s" % (j["dims"], list(ref.vals.shape[:3])))
    if j["channels"] != ref.vals.shape[3]:
        probs.append("channels %s vs %d" % (j["channels"], ref.vals.shape[3]))
    fin = ref.vals[np.isfinite(ref.vals)]
    if fin.size and (j["min"] != float(fin.min()) or j["max"] != float(fin.max())):
        probs.append("range %r..%r vs %r..%r" % (j["min"], j["max"], float(fin.min()), float(fin.max())))
    if ref.stored_dtype is not None and np.dtype(ref.stored_dtype).name != j["dtype"] and kind != "image":
        probs.append("dtype %s vs %s" % (j["dtype"], np.dtype(ref.stored_dtype).name))
    if ref.geometry:
        a = np.array(j["affine"], dtype=np.float64)
        want = ref.aff.copy()
        if j["space"] != ref.space:
            probs.append("space %s vs %s" % (j["space"], ref.space))
        if ref.space == "LPS":
            want[:2, :] *= -1
        if not np.allclose(a, want, atol=1e-4):
            probs.append("affine (%s) %s vs %s" % (j["space"], a.tolist(), np.round(want, 6).tolist()))
    if abs(j["scl_slope"] - ref.slope) > 1e-12 * max(1, abs(ref.slope)) or abs(j["scl_inter"] - ref.inter) > 1e-9:
        probs.append("scaling %r/%r vs %r/%r" % (j["scl_slope"], j["scl_inter"], ref.slope, ref.inter))
    if probs:
        fail("info %s: %s" % (name, "; ".join(probs)))
    else:
        ok("info %s (%.2f s): %s %s %s, %s" % (name, dt, j["format"], "x".join(str(int(x)) for x in j["dims"]),
                                               j["dtype"], j["space"]))


def check_convert(medseg, kind, path, ref, fmt, tmp, refs_extra):
    name = os.path.relpath(path, SHARED_DATA)
    out = os.path.join(tmp, "out." + fmt)
    if os.path.exists(out):
        os.remove(out)
    rc, so, se, dt = run([medseg, "convert", path, out])
    if rc != 0:
        fail("convert %s -> .%s: exit %d: %s" % (name, fmt, rc, se.strip()))
        return
    leftovers = [f for f in os.listdir(tmp) if ".tmp." in f]
    if leftovers:
        fail("convert %s -> .%s: temporaries left: %s" % (name, fmt, leftovers))
    try:
        test = read_output(out)
    except Exception as e:  # noqa: BLE001 - any reader failure is a test failure
        fail("convert %s -> .%s: the reference reader cannot read the output: %s" % (name, fmt, e))
        return
    geo = ref.geometry and fmt != "png"
    probs = []
    e = compare(name, ref, test, check_geometry=geo)
    if e:
        probs.append("vs %s: %s" % (ref.tool, e))
    want = expected_dtype(ref, fmt)
    if ref.stored_dtype is not None and np.dtype(test.stored_dtype) != want and kind != "image":
        probs.append("stored type %s, docs/formats.md says %s" % (np.dtype(test.stored_dtype).name, want.name))
    for other in refs_extra:
        e = compare(name, other, test, check_geometry=True)
        if e:
            probs.append("vs %s: %s" % (other.tool, e))
    os.remove(out)
    if probs:
        fail("convert %s -> .%s: %s" % (name, fmt, "; ".join(probs)))
    else:
        extra = " and " + ", ".join(r.tool for r in refs_extra) if refs_extra else ""
        ok("convert %s -> .%s (%.2f s): values%s equal to %s%s; %s" % (
            name, fmt, dt, " and voxel positions" if geo else "", ref.tool, extra,
            np.dtype(test.stored_dtype).name))


def refusals(medseg, shared, tmp):
    """Targets that cannot hold the values: non-zero exit, one line, nothing written."""
    cases = [
        ("totalseg/example_ct_sm.nii.gz", "png", "3D volume to PNG"),
        ("dcmqi_ct3slice/ct-3slice/01.dcm", "png", "int16 CT slice to 8-bit PNG"),
        ("totalseg/example_ct_sm.nii.gz", "nii.gz", "HU into uint8", ["--dtype", "uint8"]),
        ("deepmedic_brats2015/brats_2013_pat0001_1/Flair_subtrMeanDivStd.nii.gz", "nrrd", "float32 into int16",
         ["--dtype", "int16"]),
        ("totalseg/example_ct_sm.nii.gz", "xyz", "unknown extension"),
    ]
    for c in cases:
        rel, fmt, what = c[0], c[1], c[2]
        extra = c[3] if len(c) > 3 else []
        src = os.path.join(shared, "data", rel)
        out = os.path.join(tmp, "refused." + fmt)
        rc, so, se, dt = run([medseg, "convert", src, out] + extra)
        lines = [l for l in se.splitlines() if l.strip()]
        left = [f for f in os.listdir(tmp) if f.startswith("refused")]
        if rc != 0 and rc < 128 and len(lines) == 1 and not left:
            ok("refused %s (exit %d): %s" % (what, rc, lines[0]))
        else:
            fail("refusal %s: exit %d, stderr %r, files left %s" % (what, rc, se, left))
    # output that cannot be written: a missing folder, a folder in the way of the rename
    src = os.path.join(shared, "data", "totalseg/example_ct_sm.nii.gz")
    blocked = os.path.join(tmp, "blocked")
    os.makedirs(os.path.join(blocked, "in_the_way.nii.gz"), exist_ok=True)
    for out, what in ((os.path.join(tmp, "no_such_dir", "x.nii.gz"), "output folder missing"),
                      (os.path.join(blocked, "in_the_way.nii.gz"), "a folder where the output goes"),
                      (os.path.join(blocked, "in_the_way.nii.gz", "sub", "x.nrrd"), "output below a missing folder")):
        rc, so, se, dt = run([medseg, "convert", src, out])
        lines = [l for l in se.splitlines() if l.strip()]
        left = [f for f in os.listdir(blocked) if f != "in_the_way.nii.gz"] + \
            [f for f in os.listdir(os.path.join(blocked, "in_the_way.nii.gz"))]
        if rc != 0 and rc < 128 and len(lines) == 1 and not left:
            ok("unwritable output, %s (exit %d): %s" % (what, rc, lines[0]))
        else:
            fail("unwritable output, %s: exit %d, stderr %r, files left %s" % (what, rc, se, left))
    shutil.rmtree(blocked)
    # accepted on request when exact: int16 HU as float32 and back to int16
    src = os.path.join(shared, "data", "totalseg/example_ct_sm.nii.gz")
    ref = nifti_ref(src)
    for dt_name, np_dt in (("float32", "f4"), ("int32", "i4")):
        out = os.path.join(tmp, "req.nrrd")
        rc, so, se, _ = run([medseg, "convert", src, out, "--dtype", dt_name])
        if rc != 0:
            fail("--dtype %s: exit %d: %s" % (dt_name, rc, se.strip()))
            continue
        t = nrrd_ref(out)
        e = compare("req", ref, t)
        if e or np.dtype(t.stored_dtype) != np.dtype(np_dt):
            fail("--dtype %s: %s, type %s" % (dt_name, e, t.stored_dtype))
        else:
            ok("--dtype %s: exact, voxel positions kept (NRRD written as %s)" % (dt_name, t.stored_dtype))
        os.remove(out)


def colour_dicom(medseg, tmp):
    """Synthetic colour DICOM written with pydicom (none is in shared/data): RGB with planar
    configuration 0 and 1, and YBR_FULL, which must come out as RGB by PS3.3 C.7.6.3.1.2 (pydicom's
    convert_color_space is the reference); oblique orientation, anisotropic pixels."""
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.pixel_data_handlers.util import convert_color_space
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid
    rng = np.random.default_rng(7)
    arr = rng.integers(0, 256, (7, 5, 3), dtype=np.uint8)
    for name, photometric, planar in (("rgb_planar0", "RGB", 0), ("rgb_planar1", "RGB", 1),
                                      ("ybr_full", "YBR_FULL", 0)):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.is_little_endian, ds.is_implicit_VR = True, False
        ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
        ds.SeriesInstanceUID, ds.StudyInstanceUID, ds.Modality = generate_uid(), generate_uid(), "OT"
        ds.Rows, ds.Columns = arr.shape[:2]
        ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, photometric, planar
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
        ds.ImagePositionPatient = [10, -20, 30]
        ds.ImageOrientationPatient = [0, 0.6, 0.8, 0, -0.8, 0.6]
        ds.PixelSpacing = [0.5, 0.25]
        ds.PixelData = (arr if planar == 0 else np.ascontiguousarray(arr.transpose(2, 0, 1))).tobytes()
        src = os.path.join(tmp, name + ".dcm")
        ds.save_as(src, write_like_original=False)
        ref = dicom_ref([src])
        if photometric != "RGB":
            rgb = convert_color_space(pydicom.dcmread(src).pixel_array, photometric, "RGB")
            ref.vals = np.transpose(rgb, (1, 0, 2))[:, :, None, :].astype(np.float64)
        for fmt in ("nii.gz", "nrrd", "png"):
            out = os.path.join(tmp, name + "." + fmt)
            rc, so, se, _ = run([medseg, "convert", src, out])
            if rc != 0:
                fail("colour DICOM %s -> .%s: exit %d: %s" % (name, fmt, rc, se.strip()))
                continue
            e = compare(name, ref, read_output(out), check_geometry=fmt != "png")
            (fail if e else ok)("colour DICOM %s -> .%s: %s" % (
                name, fmt, e or "3 channels, values equal to pydicom%s" % (
                    "" if fmt == "png" else ", voxel positions equal")))


def multi_series(medseg, shared, tmp):
    """A folder with two series: info lists both and exits 0; convert without --series refuses;
    with --series converts the chosen one."""
    d = os.path.join(tmp, "two_series")
    os.makedirs(d, exist_ok=True)
    a = sorted(glob.glob(os.path.join(shared, "data", "dcmqi_ct3slice", "ct-3slice", "*.dcm")))
    b = sorted(glob.glob(os.path.join(shared, "data", "niivue_vsseg_mr_dicom", "*.dcm")))[:2]
    for f in a + b:
        shutil.copy(f, d)
    import pydicom
    uid_a = str(pydicom.dcmread(a[0], stop_before_pixels=True).SeriesInstanceUID)
    rc, out, err, _ = run([medseg, "info", d])
    if rc == 0 and uid_a in out and "--series" in out:
        ok("info on a two-series folder lists both and says how to pick (exit 0)")
    else:
        fail("info two series: exit %d, %s %s" % (rc, out, err))
    rc, out, err, _ = run([medseg, "info", d, "--json"])
    try:
        j = json.loads(out)
        good = rc == 0 and len(j["series"]) == 2 and j["volume"] is None
    except ValueError:
        good = False
    (ok if good else fail)("info --json on two series: %s" % ("2 series, volume null" if good else out[:200]))
    o = os.path.join(tmp, "two.nii.gz")
    rc, out, err, _ = run([medseg, "convert", d, o])
    if rc != 0 and rc < 128 and not os.path.exists(o) and uid_a in err:
        ok("convert without --series refuses and lists the series (exit %d)" % rc)
    else:
        fail("convert two series without --series: exit %d, %s" % (rc, err))
    rc, out, err, _ = run([medseg, "convert", d, o, "--series", uid_a])
    if rc == 0:
        ref = dicom_ref(a)
        e = compare("two", ref, nifti_ref(o))
        (fail if e else ok)("convert --series picks the CT series%s" % (": " + e if e else ": values and positions equal"))
    else:
        fail("convert --series: exit %d: %s" % (rc, err))


def check_one(medseg, kind, path, tmp):
    name = os.path.relpath(path, SHARED_DATA)
    try:
        ref = reference_for(kind, path, tmp)
    except Exception as e:  # noqa: BLE001
        fail("reference %s: %s" % (name, e))
        return
    check_info(medseg, kind, path, ref)
    extra = []
    if kind == "dicomdir":
        try:
            extra.append(dcm2niix_ref(path, tmp))
        except Exception as e:  # noqa: BLE001
            fail("dcm2niix on %s: %s" % (name, e))
    nvals = ref.vals.size
    fmts = ["nii.gz"]
    if kind == "image":
        # every 2D file to .nii.gz; PNG round trips and the other targets on a few of each kind
        if re.search(r"(000_HC|IMD003_lesion|amos_0004_75|s0619_32_hip_left_000|cju0qoxqj9q6s0835b43399p4)", path):
            fmts += ["png", "nrrd", "npz", "nii"]
    elif nvals <= 3_000_000 or kind in ("dicomdir",):
        fmts += ["nrrd", "npz", "nii"]
        if ref.vals.shape[2] == 1:
            fmts.append("png")
    for fmt in fmts:
        if fmt == "png" and (ref.vals.shape[2] != 1 or expected_png_refusal(ref)):
            continue
        check_convert(medseg, kind, path, ref, fmt, tmp, extra if fmt == "nii.gz" else [])


def cmd_check(medseg, shared, only, keep):
    global SHARED_DATA
    SHARED_DATA = os.path.join(shared, "data")
    tmp = keep or tempfile.mkdtemp(prefix="refcheck.")
    os.makedirs(tmp, exist_ok=True)
    t_start = time.time()
    try:
        items = inputs(shared, only)
        print("# %d inputs under %s" % (len(items), SHARED_DATA), flush=True)
        def one(task):
            n, (kind, path) = task
            t = os.path.join(tmp, "t%d" % n)
            os.makedirs(t, exist_ok=True)
            try:
                check_one(medseg, kind, path, t)
            except Exception as e:  # noqa: BLE001 - a crash of the oracle is a failure, not an abort
                fail("oracle error on %s: %r" % (os.path.relpath(path, SHARED_DATA), e))
            shutil.rmtree(t, ignore_errors=True)
        parallel(one, list(enumerate(items)))
        refusals(medseg, shared, tmp)
        colour_dicom(medseg, tmp)
        if not only:
            multi_series(medseg, shared, tmp)
    finally:
        if not keep:
            shutil.rmtree(tmp, ignore_errors=True)
    print("%d ok, %d failed (%.1f s)" % (PASSES[0], len(FAILS), time.time() - t_start))
    return 1 if FAILS else 0


def expected_png_refusal(ref):
    v = ref.vals
    return not (np.all(np.isfinite(v)) and np.all(v == np.floor(v)) and v.min() >= 0 and v.max() <= 255)


# ---------------------------------------------------------------- bad input

def nifti_header_variants(raw):
    """Decompressed NIfTI-1 bytes -> hostile header edits (re-gzipped by the caller)."""
    import struct
    out = []

    def put(off, fmt, *v):
        b = bytearray(raw)
        struct.pack_into(fmt, b, off, *v)
        return bytes(b)
    out.append(("dims huge", put(42, "<3h", 30000, 30000, 30000)))
    out.append(("dim negative", put(42, "<h", -5)))
    out.append(("dim[0] 9", put(40, "<h", 9)))
    out.append(("datatype bogus", put(70, "<h", 77)))
    out.append(("vox_offset huge", put(108, "<f", 3.0e9)))
    out.append(("vox_offset negative", put(108, "<f", -100.0)))
    out.append(("sizeof_hdr wrong", put(0, "<i", 999)))
    out.append(("slope NaN", put(112, "<f", float("nan"))))
    out.append(("4D", put(40, "<5h", 4, 2, 2, 2, 7)))
    out.append(("extension size huge", put(352, "<4B", 1, 0, 0, 0) + b""))
    return out


def nrrd_header_variants(raw):
    head, sep, data = raw.partition(b"\n\n")
    out = []

    def sub(pat, rep):
        h2 = re.sub(pat, rep, head)
        return h2 + sep + data
    out.append(("sizes huge", sub(rb"sizes:[^\n]*", b"sizes: 100000 100000 100000")))
    out.append(("sizes negative", sub(rb"sizes:[^\n]*", b"sizes: -4 10 10")))
    out.append(("sizes zero", sub(rb"sizes:[^\n]*", b"sizes: 0 10 10")))
    out.append(("type bogus", sub(rb"type:[^\n]*", b"type: quaternion")))
    out.append(("encoding bzip2", sub(rb"encoding:[^\n]*", b"encoding: bzip2")))
    out.append(("dimension 9", sub(rb"dimension:[^\n]*", b"dimension: 9")))
    out.append(("directions garbage", sub(rb"space directions:[^\n]*", b"space directions: (1,0) (0,1,0,5) (nan,0,0)")))
    out.append(("detached data", sub(rb"encoding:[^\n]*", b"encoding: raw\ndata file: /etc/passwd")))
    out.append(("no blank line", head + b"\n" + data[:100]))
    return out


def mutants(path, data, rng, big):
    """(label, bytes) corrupted copies of one file."""
    n = len(data)
    out = []
    cuts = sorted({0, 7, min(131, n - 1), min(348, n - 1), n // 3, n - 1} if not big else
                  {0, min(348, n - 1), n // 2, n - 1})
    for c in cuts:
        if 0 <= c < n:
            out.append(("truncated at %d of %d" % (c, n), data[:c]))
    nflip = 2 if big else 6
    for t in range(nflip):
        b = bytearray(data)
        region = min(n, 2048) if t % 2 == 0 else n
        for _ in range(1 + t):
            o = int(rng.integers(0, region))
            b[o] ^= int(rng.integers(1, 256))
        out.append(("%d byte flips (%s)" % (1 + t, "header" if t % 2 == 0 else "anywhere"), bytes(b)))
    low = path.lower()
    if low.endswith(".nii.gz") and not big:
        raw = gzip.decompress(data)
        for lab, r2 in nifti_header_variants(raw):
            out.append(("nifti " + lab, gzip.compress(r2, 1)))
    if low.endswith(".nrrd"):
        for lab, r2 in nrrd_header_variants(data):
            out.append(("nrrd " + lab, r2))
    return out


def run_bad(medseg, f, outdir, label):
    """info and convert on one bad file; returns a list of problems."""
    probs = []
    for cmd in ("info", "convert"):
        for x in os.listdir(outdir):
            os.remove(os.path.join(outdir, x))
        out = os.path.join(outdir, "o.nii.gz")
        argv = ["timeout", "-s", "KILL", "20", medseg, cmd, f] + ([out] if cmd == "convert" else [])
        r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        err = r.stderr.decode("utf-8", "replace")
        lines = [l for l in err.split("\n") if l.strip()]
        rc = r.returncode
        if any(ord(ch) < 32 and ch != "\t" or ord(ch) == 127 for ch in err.replace("\n", "")):
            probs.append("%s: control characters in the error output: %r" % (cmd, err[:300]))
        if rc < 0 or rc >= 124:
            probs.append("%s: %s (exit %d) %s" % (cmd, "hang" if rc in (124, 137, -9) else "crash", rc, err[-400:]))
            continue
        if "Sanitizer" in err or "runtime error" in err:
            probs.append("%s: sanitizer report: %s" % (cmd, err[-600:]))
            continue
        left = [x for x in os.listdir(outdir) if x != "o.nii.gz"]
        if left:
            probs.append("%s: temporaries left: %s" % (cmd, left))
        if rc == 0:
            if cmd == "convert" and not os.path.exists(out):
                probs.append("convert: exit 0 but no output")
            continue
        if len(lines) != 1 or not lines[0].startswith("medseg: "):
            probs.append("%s: exit %d with %d stderr lines: %r" % (cmd, rc, len(lines), err[:300]))
        if cmd == "convert" and os.path.exists(out):
            probs.append("convert: exit %d but %s exists" % (rc, out))
    return probs


def cmd_badinput(medseg, shared, corpora, budget, corpus_max=60):
    t0 = time.time()
    data = os.path.join(shared, "data")
    tmp = tempfile.mkdtemp(prefix="badinput.")
    rng = np.random.default_rng(6)
    sources = []
    for root, dirs, files in os.walk(data):
        dirs.sort()
        dcm = sorted(f for f in files if is_dicom(os.path.join(root, f)))
        for f in sorted(files):
            p = os.path.join(root, f)
            if f.lower().endswith((".nii.gz", ".nii", ".nrrd", ".npz")):
                sources.append(p)
        # DICOM: the first file of each folder (a series shares its layout)
        sources += [os.path.join(root, f) for f in dcm[:1]]
    # one 2D file of each variant (the image readers have their own fuzzer)
    for rel in ("hc18_fetal_us/000_HC.png", "sammed2d_demo/images/s0619_32.png",
                "kvasir_seg_medsam/images/cju0qoxqj9q6s0835b43399p4.jpg", "ph2_dermoscopy/IMD003_lesion.bmp",
                "ph2_dermoscopy/IMD002_lesion.bmp"):
        sources.append(os.path.join(data, rel))
    # the mutants are drawn up front, in a fixed order, so the run is the same with any worker count
    tasks = []
    for src in sources:
        blob = open(src, "rb").read()
        # big = more than 8 MB of voxel data: fewer variants (each run decodes it all)
        raw_len = len(gzip.decompress(blob)) if blob[:2] == b"\x1f\x8b" else len(blob)
        for label, b in mutants(src, blob, rng, raw_len > 8_000_000):
            tasks.append((os.path.relpath(src, data), os.path.basename(src), label, b))
    nrun = [0]

    def one(task):
        n, (name, base, label, b) = task
        d = os.path.join(tmp, "t%d" % n)
        os.makedirs(os.path.join(d, "out"))
        f = os.path.join(d, "in_" + base)
        with open(f, "wb") as fh:
            fh.write(b)
        p = run_bad(medseg, f, os.path.join(d, "out"), label)
        shutil.rmtree(d, ignore_errors=True)
        return name, ["%s: %s" % (label, x) for x in p]

    try:
        results = parallel(one, list(enumerate(tasks)))
        nrun[0] += 2 * len(tasks)
        by_file = {}
        for name, probs in results:
            by_file.setdefault(name, []).extend(probs)
        for name in sorted(by_file, key=lambda x: [t[0] for t in tasks].index(x)):
            probs = by_file[name]
            if probs:
                for x in probs:
                    fail("bad input %s: %s" % (name, x))
            else:
                nm = sum(1 for t in tasks if t[0] == name)
                ok("bad input %s: %d corrupted copies, each gives a result or one error line" % (name, nm))
        # a series folder with one damaged slice
        ser = os.path.join(data, "dcmqi_ct3slice", "ct-3slice")
        d = os.path.join(tmp, "series")
        shutil.copytree(ser, d)
        os.makedirs(os.path.join(tmp, "series_out"))
        victim = os.path.join(d, "02.dcm")
        blob = open(victim, "rb").read()
        probs = []
        for label, b in [("truncated", blob[: len(blob) // 2]),
                         ("header flip", blob[:300] + bytes([blob[300] ^ 0x5a]) + blob[301:])]:
            with open(victim, "wb") as fh:
                fh.write(b)
            probs += ["%s: %s" % (label, x) for x in run_bad(medseg, d, os.path.join(tmp, "series_out"), label)]
            nrun[0] += 2
        (fail if probs else ok)("bad input: series folder with one damaged slice%s" % (
            ": " + "; ".join(probs) if probs else ""))
        # the fuzz corpora: at most corpus_max files each, spread evenly over the sorted names
        # (tests/test_fuzz_replay.c replays every file in-process)
        for c in corpora:
            files = sorted(f for f in glob.glob(os.path.join(c, "*")) if os.path.isfile(f))
            if len(files) > corpus_max:
                files = [files[(i * len(files)) // corpus_max] for i in range(corpus_max)]
            ctasks = [(os.path.relpath(c, os.path.dirname(c)), os.path.basename(f), "corpus " + os.path.basename(f),
                       open(f, "rb").read()) for f in files]
            res = parallel(one, [(len(tasks) + 1000 + i, t) for i, t in enumerate(ctasks)])
            nrun[0] += 2 * len(ctasks)
            probs = [x for _, p in res for x in p]
            (fail if probs else ok)("fuzz corpus %s (%d files)%s" % (c, len(files), (": " + "; ".join(probs[:10])) if probs else ""))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    dt = time.time() - t0
    print("%d runs, %d ok, %d failed (%.1f s, %d workers)" % (nrun[0], PASSES[0], len(FAILS), dt, WORKERS))
    if dt > budget:
        print("note: took %.0f s, over the %.0f s budget" % (dt, budget))
    return 1 if FAILS else 0


SHARED_DATA = ""

if __name__ == "__main__":
    args = sys.argv[1:]
    if len(args) < 3 or args[0] not in ("check", "badinput"):
        print(__doc__)
        sys.exit(2)
    mode, medseg, shared = args[0], os.path.abspath(args[1]), os.path.abspath(args[2])
    rest = args[3:]
    opt = {}
    i = 0
    while i < len(rest):
        opt.setdefault(rest[i].lstrip("-"), []).append(rest[i + 1])
        i += 2
    if mode == "check":
        sys.exit(cmd_check(medseg, shared, (opt.get("only") or [None])[0], (opt.get("keep") or [None])[0]))
    sys.exit(cmd_badinput(medseg, shared, opt.get("fuzz-corpus", []), float((opt.get("budget") or [90])[0]),
                          int((opt.get("corpus-max") or [60])[0])))
