/* PNG reader and writers on libpng.
 *
 * Reader: every PNG colour type and bit depth, interlaced or not, decoded to the channels
 * Pillow 9.4's Image.open() gives (ref: PIL/PngImagePlugin.py _MODES), so that
 * ms_image_to_rgb(result) equals Image.open(f).convert('RGB') byte for byte:
 *   grey 1/2/4/8-bit      -> 1 channel, low depths scaled to 0..255 (PIL "1"/"L;2"/"L;4"/"L")
 *   grey 16-bit           -> 1 channel, min(v, 255): Pillow opens it as mode "I" and its I->L/RGB
 *                            conversion clips, it does not scale (a 16-bit CT PNG comes out
 *                            mostly white there too)
 *   grey+alpha 8/16-bit   -> 4 channels RGBA (grey replicated; 16-bit: high bytes, as Pillow's
 *                            "LA;16B" -> RGBA)
 *   RGB / RGBA 8/16-bit   -> 3 / 4 channels (16-bit: high byte, Pillow "RGB;16B")
 *   palette               -> 1 channel if every palette entry is grey and there is no tRNS,
 *                            else RGB, or RGBA when tRNS gives the palette transparency
 *   tRNS on grey or RGB   -> ignored (Pillow keeps it only as info["transparency"])
 * gAMA/sRGB/iCCP are ignored, as Pillow does. Errors (bad CRC in critical chunks, truncation,
 * bad zlib data) come back as MEDSEG_ERR_FORMAT, never a longjmp out of the library. */
#include "io/png.h"
#include "io/image_formats.h"

#include <png.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const uint8_t *buf;
    size_t len, pos;
    char msg[200];
} png_ctx;

static void png_err_cb(png_structp p, png_const_charp msg)
{
    png_ctx *c = (png_ctx *)png_get_error_ptr(p);
    if (c && !c->msg[0]) snprintf(c->msg, sizeof c->msg, "%s", msg);
    png_longjmp(p, 1);
}

static void png_warn_cb(png_structp p, png_const_charp msg)
{
    (void)p;
    (void)msg;
}

static void png_read_cb(png_structp p, png_bytep out, size_t n)
{
    png_ctx *c = (png_ctx *)png_get_io_ptr(p);
    if (n > c->len - c->pos) {
        snprintf(c->msg, sizeof c->msg, "truncated PNG data");
        png_longjmp(p, 1);
    }
    memcpy(out, c->buf + c->pos, n);
    c->pos += n;
}

int ms_is_png(const uint8_t *buf, size_t len)
{
    static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    return len >= 8 && memcmp(buf, sig, 8) == 0;
}

/* State that must survive a longjmp lives here, not in automatic variables. */
typedef struct {
    png_structp p;
    png_infop info;
    uint8_t *raw;
    png_bytep *rows;
} png_state;

static medseg_status png_decode_inner(png_state *s, png_ctx *ctx, const char *name, medseg_image *out,
                                      medseg_error *err)
{
    if (setjmp(png_jmpbuf(s->p))) {
        medseg_image_free(out);
        return ms_error(err, MEDSEG_ERR_FORMAT, "%s: %s", name, ctx->msg[0] ? ctx->msg : "corrupt PNG");
    }
    png_set_read_fn(s->p, ctx, png_read_cb);
    /* Our own caps are checked below; lift libpng's 1e6-pixel default user limits to them. */
    png_set_user_limits(s->p, MEDSEG_MAX_DIM, MEDSEG_MAX_DIM);
    png_read_info(s->p, s->info);
    png_uint_32 w, h;
    int depth, ctype, interlace;
    png_get_IHDR(s->p, s->info, &w, &h, &depth, &ctype, &interlace, NULL, NULL);
    if (w == 0 || h == 0 || w > MEDSEG_MAX_DIM || h > MEDSEG_MAX_DIM ||
        (uint64_t)w * h > MS_IMAGE_MAX_PIXELS)
        return ms_error(err, MEDSEG_ERR_NOMEM, "%s: PNG of %ux%u pixels is over medseg's limit (%d a side, %llu in total)",
                        name, (unsigned)w, (unsigned)h, MEDSEG_MAX_DIM, (unsigned long long)MS_IMAGE_MAX_PIXELS);

    png_colorp pal = NULL;
    int npal = 0;
    png_bytep trans = NULL;
    int ntrans = 0;
    if (ctype == PNG_COLOR_TYPE_PALETTE) {
        if (!png_get_PLTE(s->p, s->info, &pal, &npal) || npal <= 0)
            return ms_error(err, MEDSEG_ERR_FORMAT, "%s: palette PNG without a PLTE chunk", name);
        if (png_get_valid(s->p, s->info, PNG_INFO_tRNS)) png_get_tRNS(s->p, s->info, &trans, &ntrans, NULL);
        png_set_packing(s->p); /* 1/2/4-bit indices -> one byte each, unscaled */
    } else if (ctype == PNG_COLOR_TYPE_GRAY && depth < 8) {
        png_set_expand_gray_1_2_4_to_8(s->p);
    }
    if (interlace != PNG_INTERLACE_NONE) png_set_interlace_handling(s->p);
    png_read_update_info(s->p, s->info);
    size_t rowbytes = png_get_rowbytes(s->p, s->info);
    int bps = depth == 16 ? 2 : 1;
    int in_ch = png_get_channels(s->p, s->info);
    if (rowbytes < (size_t)w * in_ch * bps)
        return ms_error(err, MEDSEG_ERR_FORMAT, "%s: unexpected PNG row size", name);

    size_t total;
    if (!ms_mul_size(rowbytes, h, &total))
        return ms_error(err, MEDSEG_ERR_NOMEM, "%s: PNG too large", name);
    s->raw = ms_malloc(total, err, "PNG rows");
    s->rows = ms_malloc((size_t)h * sizeof *s->rows, err, "PNG row pointers");
    if (!s->raw || !s->rows) {
        if (err) snprintf(err->message, sizeof err->message, "%s: out of memory decoding PNG", name);
        return MEDSEG_ERR_NOMEM;
    }
    for (png_uint_32 y = 0; y < h; y++) s->rows[y] = s->raw + (size_t)y * rowbytes;
    png_read_image(s->p, s->rows);

    /* Output channel count. */
    int gray_pal = 0, out_ch;
    int has_alpha_pal = 0;
    if (ctype == PNG_COLOR_TYPE_PALETTE) {
        gray_pal = 1;
        for (int i = 0; i < npal; i++)
            if (pal[i].red != pal[i].green || pal[i].red != pal[i].blue) gray_pal = 0;
        if (trans && ntrans > 0) gray_pal = 0, has_alpha_pal = 1;
        out_ch = gray_pal ? 1 : has_alpha_pal ? 4 : 3;
    } else if (ctype == PNG_COLOR_TYPE_GRAY) {
        out_ch = 1;
    } else if (ctype == PNG_COLOR_TYPE_GRAY_ALPHA) {
        out_ch = 4;
    } else if (ctype == PNG_COLOR_TYPE_RGB) {
        out_ch = 3;
    } else if (ctype == PNG_COLOR_TYPE_RGB_ALPHA) {
        out_ch = 4;
    } else {
        return ms_error(err, MEDSEG_ERR_UNSUPPORTED, "%s: PNG colour type %d not supported", name, ctype);
    }
    medseg_status st = ms_image_alloc(out, (int)w, (int)h, out_ch, name, err);
    if (st) return st;

    for (png_uint_32 y = 0; y < h; y++) {
        const uint8_t *r = s->rows[y];
        uint8_t *o = out->data + (size_t)y * w * out_ch;
        if (ctype == PNG_COLOR_TYPE_PALETTE) {
            for (png_uint_32 x = 0; x < w; x++) {
                int i = r[x];
                /* Out-of-range indices read as black (opaque). */
                uint8_t cr = 0, cg = 0, cb = 0, ca = 255;
                if (i < npal) cr = pal[i].red, cg = pal[i].green, cb = pal[i].blue;
                if (i < ntrans) ca = trans[i];
                if (out_ch == 1) {
                    o[x] = cr;
                } else {
                    o[x * out_ch] = cr, o[x * out_ch + 1] = cg, o[x * out_ch + 2] = cb;
                    if (out_ch == 4) o[x * 4 + 3] = ca;
                }
            }
        } else if (depth == 16 && ctype == PNG_COLOR_TYPE_GRAY) {
            for (png_uint_32 x = 0; x < w; x++) {
                unsigned v = (unsigned)r[2 * x] << 8 | r[2 * x + 1];
                o[x] = v > 255 ? 255 : (uint8_t)v;
            }
        } else if (ctype == PNG_COLOR_TYPE_GRAY_ALPHA) {
            for (png_uint_32 x = 0; x < w; x++) {
                uint8_t g = r[2 * x * bps], a = r[(2 * x + 1) * bps];
                o[4 * x] = o[4 * x + 1] = o[4 * x + 2] = g;
                o[4 * x + 3] = a;
            }
        } else if (depth == 16) {
            for (png_uint_32 x = 0; x < w * (png_uint_32)out_ch; x++) o[x] = r[2 * x];
        } else {
            memcpy(o, r, (size_t)w * out_ch);
        }
    }
    return MEDSEG_OK;
}

medseg_status ms_png_decode(const uint8_t *buf, size_t len, const char *name, medseg_image *out, medseg_error *err)
{
    memset(out, 0, sizeof *out);
    if (!ms_is_png(buf, len)) return ms_error(err, MEDSEG_ERR_FORMAT, "%s: not a PNG file", name);
    png_ctx ctx = {buf, len, 0, {0}};
    png_state s = {0};
    s.p = png_create_read_struct(PNG_LIBPNG_VER_STRING, &ctx, png_err_cb, png_warn_cb);
    if (!s.p) return ms_error(err, MEDSEG_ERR_NOMEM, "%s: out of memory (libpng)", name);
    s.info = png_create_info_struct(s.p);
    medseg_status st;
    if (!s.info) st = ms_error(err, MEDSEG_ERR_NOMEM, "%s: out of memory (libpng)", name);
    else st = png_decode_inner(&s, &ctx, name, out, err);
    png_destroy_read_struct(&s.p, s.info ? &s.info : NULL, NULL);
    free(s.raw);
    free(s.rows);
    if (st) medseg_image_free(out);
    return st;
}

/* ---------------------------------------------------------------- writers */

typedef struct {
    png_structp p;
    png_infop info;
    uint8_t *row;
} png_wstate;

static medseg_status png_write_inner(png_wstate *s, png_ctx *ctx, FILE *f, int w, int h, int ch,
                                     const uint8_t *data, int binarise, const char *path, medseg_error *err)
{
    if (setjmp(png_jmpbuf(s->p)))
        return ms_error(err, MEDSEG_ERR_IO, "%s: PNG write failed: %s", path, ctx->msg[0] ? ctx->msg : "libpng error");
    png_init_io(s->p, f);
    png_set_IHDR(s->p, s->info, (png_uint_32)w, (png_uint_32)h, 8, ch == 1 ? PNG_COLOR_TYPE_GRAY : PNG_COLOR_TYPE_RGB,
                 PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_set_compression_level(s->p, 6);
    png_write_info(s->p, s->info);
    for (int y = 0; y < h; y++) {
        const uint8_t *src = data + (size_t)y * w * ch;
        if (binarise) {
            for (int x = 0; x < w; x++) s->row[x] = src[x] ? 255 : 0;
            png_write_row(s->p, s->row);
        } else {
            png_write_row(s->p, (png_const_bytep)src);
        }
    }
    png_write_end(s->p, NULL);
    return MEDSEG_OK;
}

static medseg_status png_write(const char *path, int w, int h, int ch, const uint8_t *data, int binarise,
                               medseg_error *err)
{
    if (w <= 0 || h <= 0 || w > MEDSEG_MAX_DIM || h > MEDSEG_MAX_DIM || !data)
        return ms_error(err, MEDSEG_ERR_ARG, "%s: bad image size %dx%d for PNG output", path, w, h);
    ms_atomic_file af;
    medseg_status st = ms_atomic_open(&af, path, err);
    if (st) return st;
    png_ctx ctx = {NULL, 0, 0, {0}};
    png_wstate s = {0};
    s.row = ms_malloc((size_t)w, err, "PNG row");
    s.p = png_create_write_struct(PNG_LIBPNG_VER_STRING, &ctx, png_err_cb, png_warn_cb);
    if (s.p) s.info = png_create_info_struct(s.p);
    if (!s.row || !s.p || !s.info) st = ms_error(err, MEDSEG_ERR_NOMEM, "%s: out of memory writing PNG", path);
    else st = png_write_inner(&s, &ctx, af.f, w, h, ch, data, binarise, path, err);
    if (s.p) png_destroy_write_struct(&s.p, s.info ? &s.info : NULL);
    free(s.row);
    if (st) {
        ms_atomic_abort(&af);
        return st;
    }
    return ms_atomic_commit(&af, err);
}

medseg_status ms_png_write_gray8(const char *path, int w, int h, const uint8_t *data, medseg_error *err)
{
    return png_write(path, w, h, 1, data, 1, err);
}

medseg_status ms_png_write_rgb8(const char *path, int w, int h, const uint8_t *rgb, medseg_error *err)
{
    return png_write(path, w, h, 3, rgb, 0, err);
}
