#!/usr/bin/python3
"""Test oracle for medseg's image I/O, resize and mask upsampling (run with /usr/bin/python3:
Debian's numpy, Pillow, torch). Used by tests/test_image_io.c, test_preprocess.c and
test_postprocess.c; never by the product.

  oracle_decode.py FILE OUT.npy [FILE OUT.npy ...]
      Decodes FILE with Pillow. Writes OUT.npy = uint8 [H,W,C] in medseg's channel convention
      (see src/io/image.c) and OUT.rgb.npy = Image.open(FILE).convert('RGB').
  oracle_decode.py --resize IN.npy NW NH OUT.npy
      uint8 [H,W,C] -> Pillow BILINEAR resize (per channel, mode 'L') -> uint8 [NH,NW,C].
  oracle_decode.py --interp IN.npy OH OW OUT.npy
      float32 [H,W] -> torch.nn.functional.interpolate(bilinear, align_corners=False) -> [OH,OW].
  oracle_decode.py --postprocess IN.npy NEWH NEWW H W OUT.npy
      float32 [256,256] -> Sam.postprocess_masks steps (1024x1024, crop, (H,W)) -> [H,W].
  oracle_decode.py --make DIR
      Writes synthetic images covering PNG/BMP variants the shared data lacks.
"""
import struct
import sys
import zlib

import numpy as np
from PIL import Image


def native(im):
    """Pillow image -> the array medseg_image_load must return."""
    m = im.mode
    if m in ("1", "L"):
        return np.array(im.convert("L"))[..., None]
    if m in ("I", "I;16", "I;16B"):
        return np.clip(np.array(im).astype(np.int64), 0, 255).astype(np.uint8)[..., None]
    if m in ("LA", "RGBA", "PA"):
        return np.array(im.convert("RGBA"))
    if m == "P":
        if "transparency" in im.info:
            return np.array(im.convert("RGBA"))
        pal = np.array(im.getpalette() or [], dtype=np.uint8).reshape(-1, 3)
        if len(pal) and (pal[:, 0] == pal[:, 1]).all() and (pal[:, 0] == pal[:, 2]).all():
            return np.array(im.convert("RGB"))[..., :1].copy()
        return np.array(im.convert("RGB"))
    return np.array(im.convert("RGB"))


def decode(pairs):
    for f, out in pairs:
        im = Image.open(f)
        im.load()
        a = native(im)
        np.save(out, np.ascontiguousarray(a))
        np.save(out[:-4] + ".rgb.npy", np.ascontiguousarray(np.array(im.convert("RGB"))))


def resize(inp, nw, nh, out):
    a = np.load(inp)
    chans = [np.array(Image.fromarray(a[..., c], "L").resize((nw, nh), Image.BILINEAR)) for c in range(a.shape[2])]
    np.save(out, np.ascontiguousarray(np.stack(chans, axis=-1)))


def interp(inp, oh, ow, out):
    import torch
    import torch.nn.functional as F
    torch.set_num_threads(1)
    x = torch.from_numpy(np.load(inp).astype(np.float32))[None, None]
    y = F.interpolate(x, (oh, ow), mode="bilinear", align_corners=False)
    np.save(out, y[0, 0].numpy())


def postprocess(inp, newh, neww, h, w, out):
    import torch
    import torch.nn.functional as F
    torch.set_num_threads(1)
    x = torch.from_numpy(np.load(inp).astype(np.float32)).reshape(1, 1, 256, 256)
    x = F.interpolate(x, (1024, 1024), mode="bilinear", align_corners=False)
    x = x[..., :newh, :neww]
    x = F.interpolate(x, (h, w), mode="bilinear", align_corners=False)
    np.save(out, x[0, 0].numpy())


# ---------------------------------------------------------------- synthetic files

def _chunk(t, d):
    return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)


def _pack_rows(a, depth):
    """a [h][w*ch] integer samples -> list of packed row bytes."""
    rows = []
    for r in a:
        if depth == 16:
            rows.append(r.astype(">u2").tobytes())
        elif depth == 8:
            rows.append(r.astype(np.uint8).tobytes())
        else:
            per = 8 // depth
            n = (len(r) + per - 1) // per
            b = bytearray(n)
            for i, v in enumerate(r):
                b[i // per] |= int(v) << (8 - depth * (i % per + 1))
            rows.append(bytes(b))
    return rows


def png_bytes(a, ctype, depth, interlace=False, plte=None, trns=None):
    h, w = a.shape[:2]
    a2 = a.reshape(h, -1)
    ch = a2.shape[1] // w
    raw = b""
    if not interlace:
        for r in _pack_rows(a2, depth):
            raw += b"\0" + r
    else:
        passes = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]
        for x0, y0, dx, dy in passes:
            sub = a[y0::dy, x0::dx]
            if sub.size == 0:
                continue
            sub = sub.reshape(sub.shape[0], -1)
            for r in _pack_rows(sub, depth):
                raw += b"\0" + r
    out = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, ctype, 0, 0, 1 if interlace else 0))
    if plte is not None:
        out += _chunk(b"PLTE", bytes(np.asarray(plte, dtype=np.uint8).reshape(-1)))
    if trns is not None:
        out += _chunk(b"tRNS", trns)
    return out + _chunk(b"IDAT", zlib.compress(raw)) + _chunk(b"IEND", b"")


def bmp_bytes(w, h, bits, rows_topdown, palette=None, topdown=False, comp=0, masks=None, hsize=40):
    """rows_topdown: list of h packed rows (unpadded); palette: list of (r,g,b)."""
    stride = ((w * bits + 31) >> 3) & ~3
    pix = b""
    order = rows_topdown if topdown else rows_topdown[::-1]
    for r in order:
        pix += r + b"\0" * (stride - len(r))
    pal = b""
    if palette is not None:
        for r, g, b in palette:
            pal += bytes([b, g, r, 0])
    extra = b""
    hdr = struct.pack("<IiiHHIIiiII", hsize, w, -h if topdown else h, 1, bits, comp, len(pix), 2835, 2835,
                      len(palette) if palette is not None else 0, 0)
    if hsize > 40:
        m = list(masks or [0, 0, 0, 0])
        hdr += struct.pack("<IIII", *m) + b"\0" * (hsize - 56)
    elif masks is not None:
        extra = struct.pack("<III", *masks[:3])
    off = 14 + len(hdr) + len(extra) + len(pal)
    body = hdr + extra + pal + pix
    return b"BM" + struct.pack("<IHHI", 14 + len(body), 0, 0, off) + body


def make(d):
    import os
    rng = np.random.default_rng(1234)
    w, h = 37, 23
    files = {}
    for depth in (1, 2, 4, 8, 16):
        a = rng.integers(0, 1 << depth, (h, w))
        if depth == 16:
            a[0, :10] = np.arange(10) * 40  # values below and above 255
        files[f"png_grey{depth}.png"] = png_bytes(a, 0, depth)
    for depth in (8, 16):
        files[f"png_ga{depth}.png"] = png_bytes(rng.integers(0, 1 << depth, (h, w, 2)), 4, depth)
        files[f"png_rgb{depth}.png"] = png_bytes(rng.integers(0, 1 << depth, (h, w, 3)), 2, depth)
        files[f"png_rgba{depth}.png"] = png_bytes(rng.integers(0, 1 << depth, (h, w, 4)), 6, depth)
    files["png_rgb8_interlaced.png"] = png_bytes(rng.integers(0, 256, (h, w, 3)), 2, 8, interlace=True)
    files["png_grey16_interlaced.png"] = png_bytes(rng.integers(0, 300, (h, w)), 0, 16, interlace=True)
    files["png_grey1_interlaced.png"] = png_bytes(rng.integers(0, 2, (h, w)), 0, 1, interlace=True)
    plte = rng.integers(0, 256, (16, 3))
    files["png_pal4.png"] = png_bytes(rng.integers(0, 16, (h, w)), 3, 4, plte=plte)
    files["png_pal8_trns.png"] = png_bytes(rng.integers(0, 16, (h, w)), 3, 8, plte=plte,
                                           trns=bytes(rng.integers(0, 256, 10).astype(np.uint8)))
    gp = np.repeat(np.arange(0, 256, 64)[:, None], 3, axis=1)
    files["png_pal2_grey.png"] = png_bytes(rng.integers(0, 4, (h, w)), 3, 2, plte=gp)
    files["png_rgb8_trns_ignored.png"] = png_bytes(rng.integers(0, 256, (h, w, 3)), 2, 8, trns=b"\0\1\0\2\0\3")
    # BMP variants
    idx1 = rng.integers(0, 2, (h, w))
    rows1 = [bytes(np.packbits(r.astype(np.uint8))) for r in idx1]
    files["bmp_1bit_bw.bmp"] = bmp_bytes(w, h, 1, rows1, palette=[(0, 0, 0), (255, 255, 255)])
    files["bmp_1bit_colour_topdown.bmp"] = bmp_bytes(w, h, 1, rows1, palette=[(200, 10, 30), (5, 250, 90)], topdown=True)
    idx4 = rng.integers(0, 16, (h, w))
    rows4 = [bytes((np.pad(r, (0, len(r) % 2))[0::2] << 4 | np.pad(r, (0, len(r) % 2))[1::2]).astype(np.uint8)) for r in idx4]
    files["bmp_4bit.bmp"] = bmp_bytes(w, h, 4, rows4, palette=[tuple(int(v) for v in c) for c in plte])
    idx8 = rng.integers(0, 256, (h, w))
    rows8 = [bytes(r.astype(np.uint8)) for r in idx8]
    files["bmp_8bit_grey_topdown.bmp"] = bmp_bytes(w, h, 8, rows8, palette=[(i, i, i) for i in range(256)], topdown=True)
    files["bmp_8bit_colour.bmp"] = bmp_bytes(w, h, 8, rows8, palette=[tuple(int(v) for v in c) for c in rng.integers(0, 256, (256, 3))])
    rgb = rng.integers(0, 256, (h, w, 3)).astype(np.uint8)
    rows24 = [bytes(r[:, ::-1].reshape(-1)) for r in rgb]
    files["bmp_24bit.bmp"] = bmp_bytes(w, h, 24, rows24)
    files["bmp_24bit_topdown.bmp"] = bmp_bytes(w, h, 24, rows24, topdown=True)
    bgra = rng.integers(0, 256, (h, w, 4)).astype(np.uint8)
    rows32 = [bytes(r.reshape(-1)) for r in bgra]
    files["bmp_32bit_rgb.bmp"] = bmp_bytes(w, h, 32, rows32)
    files["bmp_32bit_bitfields_bgra_v5.bmp"] = bmp_bytes(w, h, 32, rows32, comp=3,
                                                         masks=[0xFF0000, 0xFF00, 0xFF, 0xFF000000], hsize=124)
    files["bmp_32bit_bitfields_bgrx.bmp"] = bmp_bytes(w, h, 32, rows32, comp=3, masks=[0xFF0000, 0xFF00, 0xFF])
    v16 = rng.integers(0, 65536, (h, w)).astype("<u2")
    rows16 = [bytes(r.tobytes()) for r in v16]
    files["bmp_16bit_555.bmp"] = bmp_bytes(w, h, 16, rows16)
    files["bmp_16bit_565.bmp"] = bmp_bytes(w, h, 16, rows16, comp=3, masks=[0xF800, 0x7E0, 0x1F])
    os.makedirs(d, exist_ok=True)
    for n, b in files.items():
        with open(os.path.join(d, n), "wb") as f:
            f.write(b)
    # a grey+alpha and palette image saved by Pillow itself
    Image.fromarray(rng.integers(0, 256, (h, w, 2)).astype(np.uint8), "LA").save(os.path.join(d, "pil_la.png"))
    Image.fromarray(rng.integers(0, 256, (h, w, 3)).astype(np.uint8)).save(os.path.join(d, "pil_q75.jpg"), quality=75)
    Image.fromarray(rng.integers(0, 256, (h, w)).astype(np.uint8)).save(os.path.join(d, "pil_grey.jpg"))
    Image.fromarray(rng.integers(0, 256, (h, w, 3)).astype(np.uint8)).save(os.path.join(d, "pil_prog.jpg"), progressive=True)
    Image.fromarray(rng.integers(0, 256, (h, w, 4)).astype(np.uint8), "RGBA").convert("CMYK").save(os.path.join(d, "pil_cmyk.jpg"))


def main(argv):
    if len(argv) >= 1 and argv[0] == "--resize":
        resize(argv[1], int(argv[2]), int(argv[3]), argv[4])
    elif len(argv) >= 1 and argv[0] == "--interp":
        interp(argv[1], int(argv[2]), int(argv[3]), argv[4])
    elif len(argv) >= 1 and argv[0] == "--postprocess":
        postprocess(argv[1], int(argv[2]), int(argv[3]), int(argv[4]), int(argv[5]), argv[6])
    elif len(argv) >= 1 and argv[0] == "--make":
        make(argv[1])
    elif len(argv) >= 2 and len(argv) % 2 == 0:
        decode(list(zip(argv[0::2], argv[1::2])))
    else:
        sys.stderr.write(__doc__)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
