"""PyTorch peer of `medseg bench` for a SAM ViT model: the official segment-anything image encoder
on the same safetensors weights, timed the same way (one warm-up, then RUNS timed runs, each
preceded by one fp32 matrix product of the shape medseg uses as its ceiling probe, so the ratio
encoder / (FLOPs / matmul rate) can be compared too). Prints one JSON object on stdout.

    /usr/bin/python3 bench/vit_torch_peer.py --weights W.safetensors [--threads 2] [--runs 5]
                                             [--gflop F]

Needs python3-torch and python3-numpy (Debian), and the official code: MEDSEG_SAM_REPO must name
a checkout of facebookresearch/segment-anything (the folder holding the segment_anything
package). Without it the script prints {"available": false, "reason": ...} and exits 0: the
benchmark then reports the peer as unavailable. This is a measurement helper, never part of the
product.

The input is the SAM-normalised synthetic image of `medseg bench` (the gradient and disc of
cmd_bench.c), as a [1, 3, 1024, 1024] tensor; preprocessing is not timed on this side."""
import argparse
import json
import os
import resource
import statistics
import sys
import time

import numpy as np


def load_safetensors(path):
    """name -> numpy array (float32 only; other dtypes are skipped), read with numpy alone."""
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
        base = 8 + n
        out = {}
        for name, info in header.items():
            if name == "__metadata__" or info.get("dtype") != "F32":
                continue
            a, b = info["data_offsets"]
            f.seek(base + a)
            out[name] = np.frombuffer(f.read(b - a), dtype="<f4").reshape(info["shape"]).copy()
    return out


def synthetic_input():
    """The bench image (cmd_bench.c synthetic_image), SAM mean/std normalised, CHW float32."""
    n = 1024
    y, x = np.mgrid[0:n, 0:n]
    rgb = np.stack([x * 255 // 1023, y * 255 // 1023, (x + y) * 255 // 2046], axis=-1).astype(np.float32)
    disc = (x - 600) ** 2 + (y - 450) ** 2 <= 180 * 180
    rgb[disc] = 230.0
    mean = np.array([123.675, 116.28, 103.53], np.float32)
    std = np.array([58.395, 57.12, 57.375], np.float32)
    return ((rgb - mean) / std).transpose(2, 0, 1)[None].copy()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--weights", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--gflop", type=float, default=0.0, help="encoder FLOPs (from medseg bench) for the ratio")
    args = ap.parse_args()

    repo = os.environ.get("MEDSEG_SAM_REPO", "")
    if not repo or not os.path.isdir(os.path.join(repo, "segment_anything")):
        print(json.dumps({"available": False, "reason": "MEDSEG_SAM_REPO does not name a segment-anything checkout"
                          f" ({repo or 'unset'})"}))
        return 0
    sys.path.insert(0, repo)
    import types

    import torch
    # The package's __init__ imports the predictor, which needs torchvision (not in Debian's
    # python3-torch); the encoder needs only segment_anything.modeling and build_sam, so the
    # package is registered without running its __init__.
    pkg = types.ModuleType("segment_anything")
    pkg.__path__ = [os.path.join(repo, "segment_anything")]
    sys.modules["segment_anything"] = pkg
    from segment_anything.build_sam import sam_model_registry

    torch.set_num_threads(args.threads)
    sd = load_safetensors(args.weights)
    width = sd["image_encoder.pos_embed"].shape[-1]
    kind = {768: "vit_b", 1024: "vit_l", 1280: "vit_h"}.get(width)
    if kind is None:
        print(json.dumps({"available": False, "reason": f"not a SAM ViT-B/L/H checkpoint (width {width})"}))
        return 0
    sam = sam_model_registry[kind](checkpoint=None)
    sam.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()}, strict=True)
    del sd
    sam.eval()
    enc = sam.image_encoder
    x = torch.from_numpy(synthetic_input())
    # the ceiling probe, same shape as medseg bench's ([2048, 768] @ [768, 3072])
    a = torch.rand(2048, 768) * 2 - 1
    w = (torch.rand(3072, 768) * 2 - 1) * 0.03
    gflop_probe = 2.0 * 2048 * 768 * 3072 / 1e9

    with torch.no_grad():
        torch.nn.functional.linear(a, w)
        emb = enc(x)  # warm-up
        t_enc, t_mm, ratios = [], [], []
        for _ in range(args.runs):
            t0 = time.perf_counter()
            torch.nn.functional.linear(a, w)
            t1 = time.perf_counter()
            emb = enc(x)
            t2 = time.perf_counter()
            t_mm.append((t1 - t0) * 1e3)
            t_enc.append((t2 - t1) * 1e3)
            if args.gflop > 0:
                ratios.append((t2 - t1) * (gflop_probe / (t1 - t0)) / args.gflop)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    med = statistics.median
    print(json.dumps({
        "available": True, "torch": torch.__version__, "model": kind, "threads": args.threads, "runs": args.runs,
        "encoder_ms": med(t_enc), "encoder_min_ms": min(t_enc), "encoder_max_ms": max(t_enc),
        "sgemm_gflops": gflop_probe / (med(t_mm) / 1e3), "sgemm_gflops_max": gflop_probe / (min(t_mm) / 1e3),
        "encoder_ratio_runs": med(ratios) if ratios else None,
        "embedding_mean": float(emb.mean()), "embedding_std": float(emb.std()),
        "peak_rss_mb": rss}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
