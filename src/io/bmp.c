/* BMP reader, hand-written, for the layouts Pillow 9.4's BmpImagePlugin reads uncompressed
 * (ref: PIL/BmpImagePlugin.py BmpImageFile._bitmap), with the same pixel values:
 *   headers: OS/2 core (12 bytes), BITMAPINFOHEADER (40), 64, V4 (108), V5 (124)
 *   1/4/8-bit palettised  -> 1 channel if every palette entry is grey (r == g == b), else RGB;
 *                            indices past the palette read as black
 *   16-bit                -> RGB: BI_RGB is 5-5-5; BI_BITFIELDS 5-6-5 or 5-5-5; channels
 *                            scaled v * 255 / 31 (/ 63) as Pillow's "BGR;16"/"BGR;15" unpackers
 *   24-bit                -> RGB
 *   32-bit BI_RGB         -> RGB (fourth byte ignored, Pillow "BGRX")
 *   32-bit BI_BITFIELDS   -> RGB, or RGBA when the masks include alpha (Pillow's mask table;
 *                            all-zero masks mean BGRA)
 * Rows bottom-up (positive height) or top-down (negative height), padded to 4 bytes.
 * RLE4/RLE8, JPEG/PNG-in-BMP and other masks -> MEDSEG_ERR_UNSUPPORTED. */
#include "io/image_formats.h"

#include <stdlib.h>
#include <string.h>

static uint32_t rd32(const uint8_t *p) { return p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }
static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }

int ms_is_bmp(const uint8_t *buf, size_t len)
{
    return len >= 18 && buf[0] == 'B' && buf[1] == 'M';
}

enum { BI_RGB = 0, BI_RLE8 = 1, BI_RLE4 = 2, BI_BITFIELDS = 3, BI_JPEG = 4, BI_PNG = 5 };

/* Pixel layouts of 16/32-bit files. */
enum { L_PAL, L_BGR15, L_BGR16, L_BGR, L_BGRX, L_XBGR, L_ABGR, L_RGBA, L_BGRA };

medseg_status ms_bmp_decode(const uint8_t *buf, size_t len, const char *name, medseg_image *out, medseg_error *err)
{
    memset(out, 0, sizeof *out);
    if (!ms_is_bmp(buf, len)) return ms_error(err, MEDSEG_ERR_FORMAT, "%s: not a BMP file", name);
    uint32_t offset = rd32(buf + 10);
    uint32_t hsize = rd32(buf + 14);
    if (hsize != 12 && hsize != 40 && hsize != 64 && hsize != 108 && hsize != 124)
        return ms_error(err, MEDSEG_ERR_UNSUPPORTED, "%s: unsupported BMP header size %u", name, (unsigned)hsize);
    if (len < 14 + (size_t)hsize) return ms_error(err, MEDSEG_ERR_FORMAT, "%s: truncated BMP header", name);
    const uint8_t *hd = buf + 14;
    int64_t w, h;
    int bits, topdown = 0, pal_entry;
    uint32_t comp = BI_RGB, colors = 0;
    uint32_t mask[4] = {0, 0, 0, 0};
    size_t pos = 14 + hsize; /* where a palette or 40-byte-header bitfield masks start */
    if (hsize == 12) {
        w = rd16(hd + 4);
        h = rd16(hd + 6);
        bits = rd16(hd + 10);
        pal_entry = 3;
    } else {
        w = (int32_t)rd32(hd + 4);
        int32_t hh = (int32_t)rd32(hd + 8);
        topdown = hh < 0;
        h = topdown ? -(int64_t)hh : hh;
        bits = rd16(hd + 14);
        comp = rd32(hd + 16);
        colors = rd32(hd + 32);
        pal_entry = 4;
        if (comp == BI_BITFIELDS) {
            if (hsize >= 56) {
                for (int i = 0; i < 4; i++) mask[i] = rd32(hd + 40 + 4 * i);
            } else if (hsize >= 52) {
                for (int i = 0; i < 3; i++) mask[i] = rd32(hd + 40 + 4 * i);
            } else {
                if (len < pos + 12) return ms_error(err, MEDSEG_ERR_FORMAT, "%s: truncated BMP bitfield masks", name);
                for (int i = 0; i < 3; i++) mask[i] = rd32(buf + pos + 4 * i);
                pos += 12;
            }
        }
    }
    if (w <= 0 || h <= 0) return ms_error(err, MEDSEG_ERR_FORMAT, "%s: bad BMP size %lldx%lld", name, (long long)w, (long long)h);
    if (w > MEDSEG_MAX_DIM || h > MEDSEG_MAX_DIM || (uint64_t)w * (uint64_t)h > MS_IMAGE_MAX_PIXELS)
        return ms_error(err, MEDSEG_ERR_NOMEM, "%s: BMP of %lldx%lld pixels is over medseg's limit", name, (long long)w,
                        (long long)h);
    if (comp == BI_RLE8 || comp == BI_RLE4)
        return ms_error(err, MEDSEG_ERR_UNSUPPORTED, "%s: RLE-compressed BMP is not supported", name);
    if (comp != BI_RGB && comp != BI_BITFIELDS)
        return ms_error(err, MEDSEG_ERR_UNSUPPORTED, "%s: BMP compression %u is not supported", name, (unsigned)comp);

    int layout, out_ch = 3;
    if (bits == 1 || bits == 4 || bits == 8) {
        if (comp != BI_RGB) return ms_error(err, MEDSEG_ERR_UNSUPPORTED, "%s: palettised BMP with bitfields", name);
        layout = L_PAL;
    } else if (bits == 16) {
        if (comp == BI_RGB || (mask[0] == 0x7C00 && mask[1] == 0x3E0 && mask[2] == 0x1F)) layout = L_BGR15;
        else if (mask[0] == 0xF800 && mask[1] == 0x7E0 && mask[2] == 0x1F) layout = L_BGR16;
        else return ms_error(err, MEDSEG_ERR_UNSUPPORTED, "%s: unsupported 16-bit BMP bitfields layout", name);
    } else if (bits == 24) {
        if (comp != BI_RGB && !(mask[0] == 0xFF0000 && mask[1] == 0xFF00 && mask[2] == 0xFF))
            return ms_error(err, MEDSEG_ERR_UNSUPPORTED, "%s: unsupported 24-bit BMP bitfields layout", name);
        layout = L_BGR;
    } else if (bits == 32) {
        if (comp == BI_RGB) {
            layout = L_BGRX;
        } else {
            static const struct { uint32_t m[4]; int layout; } tab[] = {
                {{0xFF0000, 0xFF00, 0xFF, 0}, L_BGRX},           {{0xFF000000, 0xFF0000, 0xFF00, 0}, L_XBGR},
                {{0xFF000000, 0xFF0000, 0xFF00, 0xFF}, L_ABGR},  {{0xFF, 0xFF00, 0xFF0000, 0xFF000000}, L_RGBA},
                {{0xFF0000, 0xFF00, 0xFF, 0xFF000000}, L_BGRA},  {{0, 0, 0, 0}, L_BGRA},
            };
            layout = -1;
            for (size_t i = 0; i < sizeof tab / sizeof tab[0]; i++)
                if (!memcmp(tab[i].m, mask, sizeof mask)) layout = tab[i].layout;
            if (layout < 0) return ms_error(err, MEDSEG_ERR_UNSUPPORTED, "%s: unsupported 32-bit BMP bitfields layout", name);
            if (layout == L_ABGR || layout == L_RGBA || layout == L_BGRA) out_ch = 4;
        }
    } else {
        return ms_error(err, MEDSEG_ERR_UNSUPPORTED, "%s: unsupported BMP bit depth %d", name, bits);
    }

    /* Palette (as Pillow: colours 0 means 2^bits; a data offset right after the header skips it). */
    uint8_t pal[256][3];
    memset(pal, 0, sizeof pal);
    if (layout == L_PAL) {
        if (colors == 0) colors = 1u << bits;
        if (colors > 65536) return ms_error(err, MEDSEG_ERR_FORMAT, "%s: bad BMP palette size %u", name, (unsigned)colors);
        if (offset == 14 + hsize) offset += 4 * colors;
        uint32_t nread = colors < 256 ? colors : 256;
        if (len < pos || (len - pos) / pal_entry < nread)
            return ms_error(err, MEDSEG_ERR_FORMAT, "%s: truncated BMP palette", name);
        int grey = 1;
        for (uint32_t i = 0; i < nread; i++) {
            const uint8_t *e = buf + pos + (size_t)i * pal_entry;
            pal[i][0] = e[2], pal[i][1] = e[1], pal[i][2] = e[0];
            if (e[0] != e[1] || e[0] != e[2]) grey = 0;
        }
        out_ch = grey ? 1 : 3;
        /* Indices past the stored entries stay black. */
    }

    size_t stride = (((size_t)w * bits + 31) >> 3) & ~(size_t)3;
    size_t need;
    if (!ms_mul_size(stride, (size_t)h, &need) || offset > len || len - offset < need)
        return ms_error(err, MEDSEG_ERR_FORMAT, "%s: truncated BMP pixel data", name);
    medseg_status st = ms_image_alloc(out, (int)w, (int)h, out_ch, name, err);
    if (st) return st;

    for (int64_t y = 0; y < h; y++) {
        const uint8_t *r = buf + offset + (size_t)(topdown ? y : h - 1 - y) * stride;
        uint8_t *o = out->data + (size_t)y * w * out_ch;
        for (int64_t x = 0; x < w; x++) {
            uint8_t *px = o + x * out_ch;
            switch (layout) {
            case L_PAL: {
                int idx;
                if (bits == 8) idx = r[x];
                else if (bits == 4) idx = (r[x >> 1] >> ((x & 1) ? 0 : 4)) & 15;
                else idx = (r[x >> 3] >> (7 - (x & 7))) & 1;
                if (out_ch == 1) px[0] = pal[idx][0];
                else px[0] = pal[idx][0], px[1] = pal[idx][1], px[2] = pal[idx][2];
                break;
            }
            case L_BGR15: {
                unsigned v = rd16(r + 2 * x);
                px[0] = (uint8_t)(((v >> 10) & 31) * 255 / 31);
                px[1] = (uint8_t)(((v >> 5) & 31) * 255 / 31);
                px[2] = (uint8_t)((v & 31) * 255 / 31);
                break;
            }
            case L_BGR16: {
                unsigned v = rd16(r + 2 * x);
                px[0] = (uint8_t)(((v >> 11) & 31) * 255 / 31);
                px[1] = (uint8_t)(((v >> 5) & 63) * 255 / 63);
                px[2] = (uint8_t)((v & 31) * 255 / 31);
                break;
            }
            case L_BGR: px[0] = r[3 * x + 2], px[1] = r[3 * x + 1], px[2] = r[3 * x]; break;
            case L_BGRX: px[0] = r[4 * x + 2], px[1] = r[4 * x + 1], px[2] = r[4 * x]; break;
            case L_XBGR: px[0] = r[4 * x + 3], px[1] = r[4 * x + 2], px[2] = r[4 * x + 1]; break;
            case L_ABGR: px[0] = r[4 * x + 3], px[1] = r[4 * x + 2], px[2] = r[4 * x + 1], px[3] = r[4 * x]; break;
            case L_RGBA: memcpy(px, r + 4 * x, 4); break;
            case L_BGRA: px[0] = r[4 * x + 2], px[1] = r[4 * x + 1], px[2] = r[4 * x], px[3] = r[4 * x + 3]; break;
            }
        }
    }
    return MEDSEG_OK;
}
