#!/usr/bin/python3
"""Writes the checkpoint files test_checkpoints.c imports (test oracle; needs python3-torch).

    /usr/bin/python3 checkpoint_oracle.py SHARED OUTDIR

From the deterministic synthetic weights of SHARED/golden/vit_b/make_weights.py (SAM ViT-B, 314
tensors) and SHARED/golden/litemedsam/make_weights.py (LiteMedSAM, 435 tensors):

  vit_b_ref.safetensors        the reference: official names, as make_weights.py writes it
  vit_b_zip.pth                torch.save(state_dict)                    (zip format)
  vit_b_legacy.pth             torch.save(..., _use_new_zipfile_serialization=False)
  vit_b_microsam_train.pt      a micro-sam / torch_em training checkpoint: "model_state" with
                               "sam."-prefixed keys, optimizer state, counters, a pickled trainer
                               object of a class medseg cannot know, and a "decoder_state"
  vit_b_microsam_ddp_legacy.pt {"model_state": "module.sam."-prefixed keys, "decoder_state"},
                               legacy format
  vit_b_hf.safetensors         HuggingFace transformers SamModel names (safetensors)
  vit_b_hf_pytorch_model.bin   the same names with torch.save, both tied copies of the
                               positional-encoding matrix
  lite_ref.safetensors, lite_medsam.pth   LiteMedSAM reference and its torch.save state dict
  nan.pth, inf_legacy.pth      a state dict holding a NaN / an Inf
  hf_unknown.safetensors       HF-named file with a tensor outside SAM
  module.pth                   torch.save of an nn.Module (not a state dict)

The HF names are produced by hf_name() below, an independent implementation of the renaming that
transformers/models/sam/convert_sam_to_hf.py performs (official -> HF); medseg's C table maps the
other way, so the round trip tests both.
"""
import collections
import os
import re
import sys

import numpy as np
import torch


def hf_name(k):
    """Official SAM state_dict key -> transformers SamModel key."""
    parts = k.split(".")
    top, rest = parts[0], parts[1:]
    if top == "image_encoder":
        out = ["vision_encoder"]
        if rest[0] == "blocks":
            out += ["layers", rest[1]]
            sub = rest[2:]
            if sub[0] in ("norm1", "norm2"):
                sub = ["layer_" + sub[0]] + sub[1:]
            return ".".join(out + sub)
        if rest[0] == "patch_embed":
            return ".".join(out + ["patch_embed", "projection"] + rest[2:])
        if rest[0] == "neck":
            names = {"0": "conv1", "1": "layer_norm1", "2": "conv2", "3": "layer_norm2"}
            return ".".join(out + ["neck", names[rest[1]]] + rest[2:])
        return ".".join(out + rest)
    if top == "prompt_encoder":
        if rest[0] == "pe_layer":
            return "shared_image_embedding.positional_embedding"
        if rest[0] == "point_embeddings":
            return ".".join(["prompt_encoder", "point_embed"] + rest[1:])
        if rest[0] == "mask_downscaling":
            names = {"0": "conv1", "1": "layer_norm1", "3": "conv2", "4": "layer_norm2", "6": "conv3"}
            return ".".join(["prompt_encoder", "mask_embed", names[rest[1]]] + rest[2:])
        return k
    if top == "mask_decoder":
        mlp = {"0": "proj_in", "1": "layers.0", "2": "proj_out"}
        if rest[0] == "output_upscaling":
            names = {"0": "upscale_conv1", "1": "upscale_layer_norm", "3": "upscale_conv2"}
            return ".".join(["mask_decoder", names[rest[1]]] + rest[2:])
        if rest[0] == "iou_prediction_head":
            return ".".join(["mask_decoder", "iou_prediction_head", mlp[rest[2]]] + rest[3:])
        if rest[0] == "output_hypernetworks_mlps":
            return ".".join(["mask_decoder", "output_hypernetworks_mlps", rest[1], mlp[rest[3]]] + rest[4:])
        if rest[0] == "transformer":
            s = ".".join(rest[1:])
            s = re.sub(r"^layers\.(\d+)\.norm(\d)", r"layers.\1.layer_norm\2", s)
            s = s.replace("norm_final_attn", "layer_norm_final_attn")
            return "mask_decoder.transformer." + s
        return k
    raise ValueError(k)


def load_generator(shared, sub):
    import importlib.util
    path = os.path.join(shared, "golden", sub, "make_weights.py")
    spec = importlib.util.spec_from_file_location("mw_" + sub, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


class TrainerConfig:
    """Stands for the trainer objects a torch_em checkpoint pickles (class unknown to medseg)."""

    def __init__(self):
        self.lr = 1e-5
        self.name = "vit_b_medical"


def write_safetensors_np(path, items):
    import json
    header, off = {}, 0
    for name, arr in items:
        nb = arr.nbytes
        header[name] = {"dtype": {np.float32: "F32", np.int64: "I64"}[arr.dtype.type], "shape": list(arr.shape),
                        "data_offsets": [off, off + nb]}
        off += nb
    header["__metadata__"] = {"format": "pt"}
    hb = json.dumps(header, separators=(",", ":")).encode()
    hb += b" " * ((8 - len(hb) % 8) % 8)
    with open(path, "wb") as f:
        f.write(len(hb).to_bytes(8, "little"))
        f.write(hb)
        for _, arr in items:
            f.write(np.ascontiguousarray(arr).tobytes())


def main():
    shared, out = sys.argv[1], sys.argv[2]
    os.makedirs(out, exist_ok=True)
    mw = load_generator(shared, "vit_b")
    spec = mw.sam_vit_b_spec()
    arrays = {name: mw.tensor_values(name, shape, c, h) for name, shape, c, h in spec}
    mw.write_safetensors(os.path.join(out, "vit_b_ref.safetensors"), [(n, arrays[n]) for n in sorted(arrays)],
                         {"format": "pt"})
    sd = collections.OrderedDict((name, torch.from_numpy(arrays[name])) for name, _, _, _ in spec)
    p = lambda n: os.path.join(out, n)

    torch.save(sd, p("vit_b_zip.pth"))
    torch.save(sd, p("vit_b_legacy.pth"), _use_new_zipfile_serialization=False)

    # micro-sam training checkpoint (torch_em DefaultTrainer.save_checkpoint layout)
    lin = torch.nn.Linear(4, 3)
    opt = torch.optim.Adam(lin.parameters(), lr=1e-4)
    lin(torch.ones(2, 4)).sum().backward()
    opt.step()
    decoder_state = collections.OrderedDict(
        [("decoder.base.weight", torch.full((8, 4), 0.25)), ("out_conv.bias", torch.zeros(3))])
    train = {
        "iteration": 1000, "epoch": 7, "best_epoch": 6, "best_metric": 0.1234, "current_metric": 0.2,
        "model_state": collections.OrderedDict(("sam." + k, v) for k, v in sd.items()),
        "optimizer_state": opt.state_dict(),
        "init": {"model_class": "micro_sam.training.trainable_sam.TrainableSAM", "trainer": TrainerConfig(),
                 "device": torch.device("cpu")},
        "decoder_state": decoder_state,
    }
    torch.save(train, p("vit_b_microsam_train.pt"))
    ddp = {"model_state": collections.OrderedDict(("module.sam." + k, v) for k, v in sd.items()),
           "decoder_state": decoder_state}
    torch.save(ddp, p("vit_b_microsam_ddp_legacy.pt"), _use_new_zipfile_serialization=False)

    # HuggingFace transformers names
    hf = [(hf_name(k), arrays[k]) for k, _, _, _ in spec]
    names = [n for n, _ in hf]
    assert len(set(names)) == len(names)
    write_safetensors_np(p("vit_b_hf.safetensors"), sorted(hf))
    hf_sd = collections.OrderedDict((n, torch.from_numpy(a)) for n, a in hf)
    pe = hf_sd["shared_image_embedding.positional_embedding"]
    hf_sd["prompt_encoder.shared_embedding.positional_embedding"] = pe  # tied: the same storage
    torch.save(hf_sd, p("vit_b_hf_pytorch_model.bin"))
    write_safetensors_np(p("hf_unknown.safetensors"),
                         [("vision_encoder.layers.0.attn.qkv.weight", np.ones((6, 2), np.float32)),
                          ("vision_encoder.adapter.weight", np.ones((2, 2), np.float32))])

    # LiteMedSAM
    lm = load_generator(shared, "litemedsam")
    lspec, litems = lm.build()
    lm.write_safetensors(p("lite_ref.safetensors"), litems, {"format": "pt"})
    lvals = dict(litems)
    torch.save(collections.OrderedDict((n, torch.from_numpy(lvals[n])) for n, *_ in lspec), p("lite_medsam.pth"))

    # bad weights
    bad = collections.OrderedDict(
        [("image_encoder.pos_embed", torch.zeros(1, 2, 2, 3)), ("image_encoder.blocks.0.attn.qkv.weight", torch.ones(9, 3))])
    bad["image_encoder.blocks.0.attn.qkv.weight"][4, 1] = float("nan")
    torch.save(bad, p("nan.pth"))
    bad["image_encoder.blocks.0.attn.qkv.weight"][4, 1] = 1.0
    bad["image_encoder.pos_embed"][0, 1, 0, 2] = float("-inf")
    torch.save(bad, p("inf_legacy.pth"), _use_new_zipfile_serialization=False)
    torch.save(torch.nn.Linear(2, 2), p("module.pth"))
    print("checkpoint_oracle: wrote", len(os.listdir(out)), "files to", out)


if __name__ == "__main__":
    main()
