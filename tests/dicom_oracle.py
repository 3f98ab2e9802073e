#!/usr/bin/python3
"""Test oracle for medseg's DICOM reader (tests/test_dicom.c calls it; never used by the product).

  dicom_oracle.py check DICOM_PATH OURDIR [--dcm2niix] [--label NIFTI]
      OURDIR holds what medseg read: vol.raw (float64 stored values, order k, j, i, c) and
      meta.txt (nx ny nz channels / slope inter / 12 affine numbers, RAS). Compares
        - stored values with pydicom's pixel_array (GDCM for compressed data), slices sorted
          independently by ImagePositionPatient projected on the slice normal: exact;
        - RescaleSlope/Intercept;
        - with --dcm2niix: dcm2niix's NIfTI (read by nibabel): every voxel centre's world position
          within 1e-3 mm of one of ours, and real values equal there;
        - with --label: the label NIfTI's voxel (i,j,k) lies at our voxel (i, ny-1-j, k) (the README's
          mapping for totalseg/example_seg_dicom.nii.gz), positions within 1e-3 mm.
      Prints one line per check; exit status 1 on any mismatch.
  dicom_oracle.py synth OUTDIR
      Writes small synthetic DICOM files with pydicom (and GDCM for JPEG-LS / JPEG baseline
      encoding) plus, per case, the expected stored values as <name>.npy (order k, j, i[, c]).
"""
import glob
import os
import subprocess
import sys
import tempfile

import numpy as np
import pydicom
from pydicom.pixel_data_handlers import gdcm_handler, numpy_handler

pydicom.config.pixel_data_handlers = [numpy_handler, gdcm_handler]

FAIL = 0


def report(ok, msg):
    global FAIL
    print(("OK   " if ok else "FAIL ") + msg)
    if not ok:
        FAIL += 1


def frames_of(ds):
    """[(ipp, iop, slope, inter, array2d_or_rgb)] for every frame of a dataset."""
    arr = ds.pixel_array
    nf = int(getattr(ds, "NumberOfFrames", 1) or 1)
    spp = int(getattr(ds, "SamplesPerPixel", 1))
    if nf == 1:
        arr = arr[None]
    if spp == 3:
        pi = str(ds.PhotometricInterpretation)
        tsuid = str(ds.file_meta.TransferSyntaxUID)
        # pydicom 2.3 + GDCM return YBR as stored for every transfer syntax, JPEG baseline included
        # (GDCM does not apply the JPEG colour transform when the header says YBR_FULL_422);
        # medseg returns RGB, so the oracle converts with PS3.3 C.7.6.3.1.2.
        if pi in ("YBR_FULL", "YBR_FULL_422"):
            arr = pydicom.pixel_data_handlers.util.convert_color_space(arr, pi, "RGB")
    shared = ds.get("SharedFunctionalGroupsSequence")
    perframe = ds.get("PerFrameFunctionalGroupsSequence")
    out = []
    for f in range(nf):
        ipp = ds.get("ImagePositionPatient")
        iop = ds.get("ImageOrientationPatient")
        slope = float(ds.get("RescaleSlope", 1))
        inter = float(ds.get("RescaleIntercept", 0))
        for grp in ([shared[0]] if shared else []) + ([perframe[f]] if perframe else []):
            if "PlanePositionSequence" in grp:
                ipp = grp.PlanePositionSequence[0].ImagePositionPatient
            if "PlaneOrientationSequence" in grp:
                iop = grp.PlaneOrientationSequence[0].ImageOrientationPatient
            if "PixelValueTransformationSequence" in grp:
                t = grp.PixelValueTransformationSequence[0]
                slope = float(t.get("RescaleSlope", slope))
                inter = float(t.get("RescaleIntercept", inter))
        out.append((None if ipp is None else np.array(ipp, float), None if iop is None else np.array(iop, float),
                    slope, inter, arr[f]))
    return out


def read_series(path):
    files = [path] if os.path.isfile(path) else sorted(
        p for p in glob.glob(os.path.join(path, "*")) if os.path.isfile(p))
    frames = []
    for p in files:
        try:
            ds = pydicom.dcmread(p)
        except Exception:
            continue
        if "PixelData" not in ds:
            continue
        inst = int(ds.get("InstanceNumber", 0) or 0)
        for fi, fr in enumerate(frames_of(ds)):
            frames.append((inst, fi, fr))
    iop = frames[0][2][1]
    if iop is None:
        iop = np.array([1, 0, 0, 0, 1, 0], float)
    normal = np.cross(iop[:3], iop[3:])
    def key(t):
        inst, fi, fr = t
        return (float(np.dot(fr[0], normal)) if fr[0] is not None else 0.0, inst, fi)
    frames.sort(key=key)
    return [t[2] for t in frames]


def read_ours(d):
    with open(os.path.join(d, "meta.txt")) as fh:
        toks = fh.read().split()
    nx, ny, nz, ch = (int(t) for t in toks[:4])
    slope, inter = float(toks[4]), float(toks[5])
    aff = np.eye(4)
    aff[:3, :] = np.array([float(t) for t in toks[6:18]]).reshape(3, 4)
    vol = np.fromfile(os.path.join(d, "vol.raw"), dtype="<f8")
    vol = vol.reshape((nz, ny, nx, ch))
    return vol, slope, inter, aff


def check(path, ourdir, use_dcm2niix, label):
    vol, slope, inter, aff = read_ours(ourdir)
    nz, ny, nx, ch = vol.shape
    frames = read_series(path)
    report(len(frames) == nz, f"slice count: pydicom {len(frames)}, medseg {nz}")
    if len(frames) == nz:
        ref = np.stack([f[4] for f in frames]).astype(np.float64).reshape(nz, ny, nx, -1)
        slopes = {(f[2], f[3]) for f in frames}
        if len(slopes) > 1:  # medseg converts to real values
            ref = np.stack([f[4].astype(np.float64) * f[2] + f[3] for f in frames]).reshape(nz, ny, nx, -1)
            report(slope == 1 and inter == 0, f"per-slice rescale -> real values (slope {slope}, inter {inter})")
        else:
            s0, i0 = slopes.pop()
            report(s0 == slope and i0 == inter, f"rescale: pydicom {s0},{i0} medseg {slope},{inter}")
        same = ref.shape == vol.shape and np.array_equal(ref, vol)
        nd = int(np.sum(ref != vol)) if ref.shape == vol.shape else -1
        report(same, f"stored values vs pydicom+GDCM: {ref.size} values, {nd} differ, sum {ref.sum():.0f} vs {vol.sum():.0f}")
        # origin: first sorted slice's position (LPS) = our affine column 3 (RAS)
        if frames[0][0] is not None:
            lps = aff[:3, 3] * np.array([-1, -1, 1])
            report(np.allclose(lps, frames[0][0], atol=1e-4), f"origin {lps} vs first slice IPP {frames[0][0]}")
            last = aff[:3, :] @ np.array([0, 0, nz - 1, 1.0]) * np.array([-1, -1, 1])
            report(np.allclose(last, frames[-1][0], atol=1e-3), f"last slice position {last} vs IPP {frames[-1][0]}")
    real = vol[..., 0] * slope + inter  # (k, j, i)
    if use_dcm2niix:
        import nibabel as nib
        with tempfile.TemporaryDirectory() as td:
            r = subprocess.run(["dcm2niix", "-z", "n", "-b", "n", "-f", "out", "-o", td, path],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            niis = sorted(glob.glob(os.path.join(td, "*.nii")))
            report(r.returncode == 0 and len(niis) == 1, f"dcm2niix wrote {len(niis)} NIfTI (exit {r.returncode})")
            if niis:
                img = nib.load(niis[0])
                nd = np.asarray(img.get_fdata(dtype=np.float64))  # scl_slope / scl_inter applied
                A = img.affine
                ii, jj, kk = np.meshgrid(np.arange(nd.shape[0]), np.arange(nd.shape[1]), np.arange(nd.shape[2]),
                                         indexing="ij")
                idx = np.stack([ii.ravel(), jj.ravel(), kk.ravel(), np.ones(ii.size)])
                world = A @ idx
                ours = np.linalg.inv(aff) @ world
                rnd = np.rint(ours[:3]).astype(np.int64)
                back = aff @ np.vstack([rnd, np.ones(rnd.shape[1])])
                err = np.max(np.linalg.norm(back[:3] - world[:3], axis=0))
                inside = ((rnd[0] >= 0) & (rnd[0] < nx) & (rnd[1] >= 0) & (rnd[1] < ny) & (rnd[2] >= 0) &
                          (rnd[2] < nz)).all()
                report(nd.size == real.size and inside and err < 1e-3,
                       f"dcm2niix {nd.shape} voxel centres vs medseg: max position error {err:.2e} mm, all inside: {inside}")
                if inside:
                    mine = real[rnd[2], rnd[1], rnd[0]]
                    theirs = nd.ravel()
                    ndiff = int(np.sum(mine != theirs))
                    report(ndiff == 0, f"values at equal positions vs dcm2niix: {ndiff} of {theirs.size} differ")
    if label:
        import nibabel as nib
        img = nib.load(label)
        A = img.affine
        sh = img.shape
        ii, jj, kk = np.meshgrid(np.arange(sh[0]), np.arange(sh[1]), np.arange(sh[2]), indexing="ij")
        idx = np.stack([ii.ravel(), jj.ravel(), kk.ravel(), np.ones(ii.size)])
        ours = np.linalg.inv(aff) @ (A @ idx)
        want = np.stack([ii.ravel(), (ny - 1) - jj.ravel(), kk.ravel()])
        dev = np.max(np.abs(ours[:3] - want)) * max(abs(aff[0][0]), 1e-9)
        posdev = np.max(np.linalg.norm((aff @ np.vstack([want, np.ones(want.shape[1])]))[:3] - (A @ idx)[:3], axis=0))
        report(posdev < 1e-3, f"label {os.path.basename(label)} (i,j,k) -> medseg (i, {ny - 1}-j, k): max position error {posdev:.2e} mm")
        _ = dev
    return 1 if FAIL else 0


# ---------------------------------------------------------------- synthetic files

def base_ds(rows, cols, tsuid, series_uid, inst, z, bits=16, signed=False, spp=1, pi="MONOCHROME2"):
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import generate_uid
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = tsuid
    meta.ImplementationClassUID = generate_uid()
    ds = Dataset()
    ds.file_meta = meta
    ds.preamble = b"\0" * 128
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "CT"
    ds.SeriesInstanceUID = series_uid
    ds.SeriesDescription = "synthetic " + series_uid[-4:]
    ds.SeriesNumber = 1
    ds.InstanceNumber = inst
    ds.ImagePositionPatient = [-10.0, -20.0, z]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.PixelSpacing = [0.5, 0.75]
    ds.SliceThickness = 3.0
    ds.Rows, ds.Columns = rows, cols
    ds.SamplesPerPixel = spp
    ds.PhotometricInterpretation = pi
    if spp == 3:
        ds.PlanarConfiguration = 0
    ds.BitsAllocated = bits
    ds.BitsStored = bits if bits != 16 else 12
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 1 if signed else 0
    ds.RescaleSlope = 1
    ds.RescaleIntercept = -1024
    return ds


def synth(out):
    from pydicom.uid import (ExplicitVRLittleEndian, ImplicitVRLittleEndian, RLELossless, DeflatedExplicitVRLittleEndian,
                             ExplicitVRBigEndian, generate_uid)
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(7)
    rows, cols = 6, 5

    def save(ds, name, little=True, implicit=False):
        ds.is_little_endian = little
        ds.is_implicit_VR = implicit
        ds.save_as(os.path.join(out, name), write_like_original=False)

    # 1. explicit VR LE, signed 12-bit in 16 (negative values), 1 slice
    a = rng.integers(-2048, 2048, size=(rows, cols)).astype(np.int16)
    ds = base_ds(rows, cols, ExplicitVRLittleEndian, generate_uid(), 1, 5.0, signed=True)
    ds.PixelData = a.tobytes()
    save(ds, "explicit_s12.dcm")
    np.save(os.path.join(out, "explicit_s12.npy"), a[None])
    # 2. the same stored bits with garbage above HighBit: reader must sign-extend from HighBit
    raw = (a.astype(np.int32) & 0x0FFF) | 0x5000
    ds = base_ds(rows, cols, ExplicitVRLittleEndian, generate_uid(), 1, 5.0, signed=True)
    ds.PixelData = raw.astype(np.uint16).tobytes()
    save(ds, "explicit_s12_highbits.dcm")
    np.save(os.path.join(out, "explicit_s12_highbits.npy"), a[None])
    # 3. RLE, unsigned 16-bit and RGB 8-bit
    u = rng.integers(0, 4096, size=(rows, cols)).astype(np.uint16)
    u[2, :] = 77  # runs
    ds = base_ds(rows, cols, ExplicitVRLittleEndian, generate_uid(), 1, 0.0)
    ds.PixelData = u.tobytes()
    ds.compress(RLELossless, u)
    save(ds, "rle_u16.dcm")
    np.save(os.path.join(out, "rle_u16.npy"), u[None])
    rgb = rng.integers(0, 256, size=(rows, cols, 3)).astype(np.uint8)
    rgb[0:2, :, :] = 200
    ds = base_ds(rows, cols, ExplicitVRLittleEndian, generate_uid(), 1, 0.0, bits=8, spp=3, pi="RGB")
    del ds.RescaleSlope, ds.RescaleIntercept
    ds.PixelData = rgb.tobytes()
    ds.compress(RLELossless, rgb)
    save(ds, "rle_rgb.dcm")
    np.save(os.path.join(out, "rle_rgb.npy"), rgb[None])
    # 4. planar configuration 1, native RGB
    ds = base_ds(rows, cols, ExplicitVRLittleEndian, generate_uid(), 1, 0.0, bits=8, spp=3, pi="RGB")
    ds.PlanarConfiguration = 1
    ds.PixelData = np.ascontiguousarray(rgb.transpose(2, 0, 1)).tobytes()
    save(ds, "planar_rgb.dcm")
    np.save(os.path.join(out, "planar_rgb.npy"), rgb[None])
    # 5. YBR_FULL native -> RGB by the standard's equations (pydicom's convert_color_space as oracle)
    ybr = rng.integers(0, 256, size=(rows, cols, 3)).astype(np.uint8)
    ds = base_ds(rows, cols, ExplicitVRLittleEndian, generate_uid(), 1, 0.0, bits=8, spp=3, pi="YBR_FULL")
    ds.PixelData = ybr.tobytes()
    save(ds, "ybr_full.dcm")
    conv = pydicom.pixel_data_handlers.util.convert_color_space(ybr, "YBR_FULL", "RGB")
    np.save(os.path.join(out, "ybr_full.npy"), conv[None])
    # 6. deflated explicit VR LE
    ds = base_ds(rows, cols, DeflatedExplicitVRLittleEndian, generate_uid(), 1, 0.0)
    ds.PixelData = u.tobytes()
    save(ds, "deflated.dcm")
    np.save(os.path.join(out, "deflated.npy"), u[None])
    # 7. big endian: must be refused by name
    ds = base_ds(rows, cols, ExplicitVRBigEndian, generate_uid(), 1, 0.0)
    ds.PixelData = u.byteswap().tobytes()
    save(ds, "bigendian.dcm", little=False)
    # 8. folder with two series (3 + 2 slices, implicit VR, written in shuffled z order)
    d = os.path.join(out, "two_series")
    os.makedirs(d, exist_ok=True)
    s1, s2 = generate_uid(), generate_uid()
    vols = {}
    for uid, n, tag in ((s1, 3, "a"), (s2, 2, "b")):
        zs = [4.0, -2.0, 1.0][:n]
        for idx, z in enumerate(zs):
            v = (rng.integers(0, 1000, size=(rows, cols)) + int(z * 10) + 100).astype(np.uint16)
            vols[(uid, z)] = v
            ds = base_ds(rows, cols, ImplicitVRLittleEndian, uid, idx + 1, z)
            ds.PixelData = v.tobytes()
            save(ds, f"{tag}{idx}", implicit=True)
            os.replace(os.path.join(out, f"{tag}{idx}"), os.path.join(d, f"{tag}{idx}"))
    ds = base_ds(rows, cols, ExplicitVRLittleEndian, s1, 99, 0.0)  # a DICOM file without pixels: skipped
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.88.11"  # Basic Text SR
    save(ds, "report.dcm")
    os.replace(os.path.join(out, "report.dcm"), os.path.join(d, "report.dcm"))
    with open(os.path.join(d, "notes.txt"), "w") as fh:
        fh.write("not a DICOM file\n")
    np.save(os.path.join(out, "series_a.npy"), np.stack([vols[(s1, z)] for z in sorted([4.0, -2.0, 1.0])]))
    with open(os.path.join(out, "series_uids.txt"), "w") as fh:
        fh.write(f"{s1}\n{s2}\n")
    # 9. per-slice rescale differing -> float32 real values
    d = os.path.join(out, "rescale_series")
    os.makedirs(d, exist_ok=True)
    uid = generate_uid()
    real = []
    for idx, z in enumerate([0.0, 2.0]):
        v = rng.integers(0, 1000, size=(rows, cols)).astype(np.uint16)
        ds = base_ds(rows, cols, ExplicitVRLittleEndian, uid, idx + 1, z)
        ds.RescaleSlope = [1.0, 0.5][idx]
        ds.RescaleIntercept = [-1024, 3][idx]
        ds.PixelData = v.tobytes()
        save(ds, f"s{idx}.dcm")
        os.replace(os.path.join(out, f"s{idx}.dcm"), os.path.join(d, f"s{idx}.dcm"))
        real.append(v.astype(np.float64) * float(ds.RescaleSlope) + float(ds.RescaleIntercept))
    np.save(os.path.join(out, "rescale_series.npy"), np.stack(real).astype(np.float32))
    # 10b. broken series: mixed sizes, mixed orientations, uneven slice gaps -> errors
    for case in ("mixed_sizes", "mixed_orient", "uneven"):
        d = os.path.join(out, case)
        os.makedirs(d, exist_ok=True)
        uid = generate_uid()
        for idx, z in enumerate([0.0, 1.0, 5.0]):
            r = rows + 1 if (case == "mixed_sizes" and idx == 2) else rows
            ds = base_ds(r, cols, ExplicitVRLittleEndian, uid, idx + 1, z if case == "uneven" else float(idx))
            if case == "mixed_orient" and idx == 1:
                ds.ImageOrientationPatient = [1, 0, 0, 0, 0, -1]
            ds.PixelData = np.zeros((r, cols), np.uint16).tobytes()
            save(ds, f"{case}{idx}.dcm")
            os.replace(os.path.join(out, f"{case}{idx}.dcm"), os.path.join(d, f"{idx}.dcm"))
    # 11. enhanced multi-frame: per-frame PlanePositionSequence (frames stored z descending), shared
    #     orientation / pixel measures / rescale, sequences of undefined length (pydicom's default)
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence
    nf = 3
    mf = rng.integers(0, 3000, size=(nf, rows, cols)).astype(np.uint16)
    ds = base_ds(rows, cols, ExplicitVRLittleEndian, generate_uid(), 1, 0.0)
    for k in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "RescaleSlope", "RescaleIntercept"):
        delattr(ds, k)
    ds.NumberOfFrames = nf
    sh = Dataset()
    po = Dataset(); po.ImageOrientationPatient = [0, 1, 0, 0, 0, -1]  # sagittal
    pm = Dataset(); pm.PixelSpacing = [0.8, 0.6]; pm.SliceThickness = 2.0
    pt = Dataset(); pt.RescaleSlope = 2; pt.RescaleIntercept = -5; pt.RescaleType = "US"
    sh.PlaneOrientationSequence = Sequence([po])
    sh.PixelMeasuresSequence = Sequence([pm])
    sh.PixelValueTransformationSequence = Sequence([pt])
    ds.SharedFunctionalGroupsSequence = Sequence([sh])
    xs = [9.0, 3.0, 6.0]  # normal of this orientation is -x... sorted order checked against the oracle
    pf = []
    for f in range(nf):
        it = Dataset()
        pp = Dataset(); pp.ImagePositionPatient = [xs[f], -7.0, 11.0]
        it.PlanePositionSequence = Sequence([pp])
        pf.append(it)
    ds.PerFrameFunctionalGroupsSequence = Sequence(pf)
    ds.PixelData = mf.tobytes()
    save(ds, "enhanced_mf.dcm")
    normal = np.cross([0, 1, 0], [0, 0, -1])
    order = sorted(range(nf), key=lambda f: float(np.dot([xs[f], -7.0, 11.0], normal)))
    np.save(os.path.join(out, "enhanced_mf.npy"), mf[order])
    # 12. 1-bit multi-frame (SEG-like): 15 bits per frame, so frames are not byte aligned
    from pydicom.pixel_data_handlers.numpy_handler import pack_bits
    b1 = (rng.integers(0, 2, size=(nf, 3, 5))).astype(np.uint8)
    ds = base_ds(3, 5, ExplicitVRLittleEndian, generate_uid(), 1, 0.0, bits=1)
    ds.BitsStored, ds.HighBit = 1, 0
    del ds.RescaleSlope, ds.RescaleIntercept, ds.ImagePositionPatient
    ds.NumberOfFrames = nf
    pf = []
    for f in range(nf):
        it = Dataset(); pp = Dataset(); pp.ImagePositionPatient = [0.0, 0.0, float(f)]
        it.PlanePositionSequence = Sequence([pp]); pf.append(it)
    ds.PerFrameFunctionalGroupsSequence = Sequence(pf)
    ds.PixelData = pack_bits(b1.ravel())
    save(ds, "bits1_mf.dcm")
    np.save(os.path.join(out, "bits1_mf.npy"), b1)
    # 13. RLE multi-frame (one fragment per frame, empty offset table)
    ds = base_ds(rows, cols, ExplicitVRLittleEndian, generate_uid(), 1, 0.0)
    del ds.ImagePositionPatient
    ds.NumberOfFrames = nf
    ds.PixelData = mf.tobytes()
    ds.compress(RLELossless, mf)
    save(ds, "rle_mf.dcm")
    np.save(os.path.join(out, "rle_mf.npy"), mf)
    # 14. no preamble, no file meta: implicit VR LE dataset starting with group 0008 (dcm2niix accepts it)
    raw = open(os.path.join(out, "explicit_u8.dcm") if False else os.path.join(out, "two_series", "a0"), "rb").read()
    glen = int.from_bytes(raw[140:144], "little")  # (0002,0000) UL value
    open(os.path.join(out, "nopreamble.dcm"), "wb").write(raw[144 + glen:])
    np.save(os.path.join(out, "nopreamble.npy"), pydicom.dcmread(os.path.join(out, "two_series", "a0")).pixel_array[None])
    # 15. YBR_FULL_422 native (Y0 Y1 Cb Cr per pixel pair)
    ycc = rng.integers(0, 256, size=(rows, cols + 1, 3)).astype(np.uint8)
    ycc[:, 1::2, 1:] = ycc[:, 0::2, 1:]
    packed = np.empty((rows, (cols + 1) // 2, 4), np.uint8)
    packed[..., 0] = ycc[:, 0::2, 0]; packed[..., 1] = ycc[:, 1::2, 0]
    packed[..., 2] = ycc[:, 0::2, 1]; packed[..., 3] = ycc[:, 0::2, 2]
    ds = base_ds(rows, cols + 1, ExplicitVRLittleEndian, generate_uid(), 1, 0.0, bits=8, spp=3, pi="YBR_FULL_422")
    ds.PixelData = packed.tobytes()
    save(ds, "ybr_full_422.dcm")
    np.save(os.path.join(out, "ybr_full_422.npy"),
            pydicom.pixel_data_handlers.util.convert_color_space(ycc, "YBR_FULL", "RGB")[None])
    # 10. codecs encoded by GDCM: JPEG-LS lossless, JPEG baseline (8-bit gray), JPEG 2000
    try:
        import gdcm
        src = os.path.join(out, "explicit_u8.dcm")
        g8 = rng.integers(0, 256, size=(16, 16)).astype(np.uint8)
        g8[4:8, 4:12] = 128
        ds = base_ds(16, 16, ExplicitVRLittleEndian, generate_uid(), 1, 0.0, bits=8)
        ds.BitsStored, ds.HighBit = 8, 7
        ds.PixelData = g8.tobytes()
        save(ds, "explicit_u8.dcm")
        src16 = os.path.join(out, "explicit_u16.dcm")
        ds = base_ds(rows, cols, ExplicitVRLittleEndian, generate_uid(), 1, 0.0)
        ds.PixelData = u.tobytes()
        save(ds, "explicit_u16.dcm")
        src64 = os.path.join(out, "explicit_u16_64.dcm")  # GDCM's JPEG 2000 encoder needs a larger image
        b64 = rng.integers(0, 4096, size=(64, 48)).astype(np.uint16)
        ds = base_ds(64, 48, ExplicitVRLittleEndian, generate_uid(), 1, 0.0)
        ds.PixelData = b64.tobytes()
        save(ds, "explicit_u16_64.dcm")
        srcmf = os.path.join(out, "explicit_mf_64.dcm")  # multi-frame source for encapsulated frame splitting
        mf64 = rng.integers(0, 4096, size=(3, 64, 48)).astype(np.uint16)
        ds = base_ds(64, 48, ExplicitVRLittleEndian, generate_uid(), 1, 0.0)
        del ds.ImagePositionPatient
        ds.NumberOfFrames = 3
        ds.PixelData = mf64.tobytes()
        save(ds, "explicit_mf_64.dcm")
        srcrgb = os.path.join(out, "explicit_rgb_32.dcm")  # colour source for JPEG baseline (YCbCr in the stream)
        yy, xx = np.mgrid[0:32, 0:32]
        rgb32 = np.stack([xx * 8, yy * 8, (xx + yy) * 4], -1).astype(np.uint8)
        ds = base_ds(32, 32, ExplicitVRLittleEndian, generate_uid(), 1, 0.0, bits=8, spp=3, pi="RGB")
        del ds.RescaleSlope, ds.RescaleIntercept
        ds.PixelData = rgb32.tobytes()
        save(ds, "explicit_rgb_32.dcm")
        for name, src_file, setter in (("j2k_mf.dcm", srcmf, None), ("jpegls_mf.dcm", srcmf, None),
                                       ("jpeg_baseline_rgb.dcm", srcrgb, None),("jpegls_u16.dcm", src16, "SetForceLossless"),
                                       ("jpegls_u8.dcm", src, "SetForceLossless"),
                                       ("jpeg_baseline_u8.dcm", src, None),
                                       ("j2k_u16.dcm", src64, "SetForceLossless"),
                                       ("jpeg_lossless_u16.dcm", src16, None)):
            r = gdcm.ImageReader()
            r.SetFileName(src_file)
            if not r.Read():
                continue
            ch = gdcm.ImageChangeTransferSyntax()
            if name.startswith("jpegls"):
                ch.SetTransferSyntax(gdcm.TransferSyntax(gdcm.TransferSyntax.JPEGLSLossless))
            elif name.startswith("jpeg_lossless"):
                ch.SetTransferSyntax(gdcm.TransferSyntax(gdcm.TransferSyntax.JPEGLosslessProcess14_1))
            elif name.startswith("j2k"):
                ch.SetTransferSyntax(gdcm.TransferSyntax(gdcm.TransferSyntax.JPEG2000Lossless))
            else:
                ch.SetTransferSyntax(gdcm.TransferSyntax(gdcm.TransferSyntax.JPEGBaselineProcess1))
            ch.SetInput(r.GetImage())
            if not ch.Change():
                continue
            w = gdcm.ImageWriter()
            w.SetFileName(os.path.join(out, name))
            w.SetFile(r.GetFile())
            w.SetImage(ch.GetOutput())
            if not w.Write():
                continue
            if name == "jpeg_baseline_rgb.dcm":
                # GDCM labels its YCbCr stream "RGB" (it warns: not defined by the standard);
                # relabel as the standard wants for baseline colour: YBR_FULL_422.
                d = pydicom.dcmread(os.path.join(out, name))
                d.PhotometricInterpretation = "YBR_FULL_422"
                os.remove(os.path.join(out, name))
                name = "jpeg_baseline_ybr.dcm"
                d.save_as(os.path.join(out, name))
            fr = frames_of(pydicom.dcmread(os.path.join(out, name)))
            ref = np.stack([f[4] for f in fr])
            np.save(os.path.join(out, name[:-4] + ".npy"), ref)
    except ImportError:
        pass
    return 0


if __name__ == "__main__":
    if len(sys.argv) >= 4 and sys.argv[1] == "check":
        label = None
        if "--label" in sys.argv:
            label = sys.argv[sys.argv.index("--label") + 1]
        sys.exit(check(sys.argv[2], sys.argv[3], "--dcm2niix" in sys.argv, label))
    if len(sys.argv) == 3 and sys.argv[1] == "synth":
        sys.exit(synth(sys.argv[2]))
    print(__doc__)
    sys.exit(2)
