/* JPEG reader on libjpeg(-turbo), with the library defaults Pillow 9.4 also uses (JDCT_ISLOW,
 * fancy upsampling), so pixels equal Image.open(f).convert('RGB') byte for byte
 * (ref: Pillow src/decode.c + libImaging/JpegDecode.c; verified on the Kvasir JPEGs).
 *   greyscale          -> 1 channel
 *   YCbCr / RGB        -> 3 channels (libjpeg's colour conversion)
 *   CMYK / YCCK        -> 3 channels: Pillow's CMYK->RGB, r = MULDIV255(255 - c, 255 - k), on
 *                         samples inverted first (Pillow always assumes Adobe polarity, "CMYK;I")
 * libjpeg errors longjmp back here and become MEDSEG_ERR_FORMAT; a file that ends early (libjpeg
 * only warns and pads) is an error too, as in Pillow ("image file is truncated"). */
#include "io/image_formats.h"

#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>
#include <jerror.h>

typedef struct {
    struct jpeg_error_mgr pub;
    jmp_buf jb;
    int truncated;
    char msg[JMSG_LENGTH_MAX];
} jpeg_err_ctx;

static void jpeg_error_exit_cb(j_common_ptr c)
{
    jpeg_err_ctx *e = (jpeg_err_ctx *)c->err;
    (*c->err->format_message)(c, e->msg);
    longjmp(e->jb, 1);
}

static void jpeg_emit_message_cb(j_common_ptr c, int level)
{
    jpeg_err_ctx *e = (jpeg_err_ctx *)c->err;
    if (level < 0) {
        c->err->num_warnings++;
        if (c->err->msg_code == JWRN_JPEG_EOF) e->truncated = 1;
    }
}

static void jpeg_output_message_cb(j_common_ptr c)
{
    (void)c;
}

int ms_is_jpeg(const uint8_t *buf, size_t len)
{
    return len >= 3 && buf[0] == 0xFF && buf[1] == 0xD8 && buf[2] == 0xFF;
}

typedef struct {
    struct jpeg_decompress_struct cinfo;
    jpeg_err_ctx jerr;
    uint8_t *row;
} jpeg_state;

static inline uint8_t muldiv255(int a, int b)
{
    int t = a * b + 128;
    return (uint8_t)(((t >> 8) + t) >> 8);
}

static medseg_status jpeg_decode_inner(jpeg_state *s, const uint8_t *buf, size_t len, const char *name,
                                       medseg_image *out, medseg_error *err)
{
    struct jpeg_decompress_struct *ci = &s->cinfo;
    if (setjmp(s->jerr.jb)) {
        medseg_image_free(out);
        return ms_error(err, MEDSEG_ERR_FORMAT, "%s: corrupt JPEG: %s", name, s->jerr.msg);
    }
    jpeg_create_decompress(ci);
    jpeg_mem_src(ci, buf, (unsigned long)len);
    if (jpeg_read_header(ci, TRUE) != JPEG_HEADER_OK)
        return ms_error(err, MEDSEG_ERR_FORMAT, "%s: no JPEG image", name);
    if (s->jerr.truncated) return ms_error(err, MEDSEG_ERR_FORMAT, "%s: truncated JPEG data", name);
    unsigned w = ci->image_width, h = ci->image_height;
    if (w == 0 || h == 0 || w > MEDSEG_MAX_DIM || h > MEDSEG_MAX_DIM || (uint64_t)w * h > MS_IMAGE_MAX_PIXELS)
        return ms_error(err, MEDSEG_ERR_NOMEM, "%s: JPEG of %ux%u pixels is over medseg's limit", name, w, h);
    int cmyk = 0, out_ch;
    switch (ci->jpeg_color_space) {
    case JCS_GRAYSCALE: ci->out_color_space = JCS_GRAYSCALE; out_ch = 1; break;
    case JCS_YCbCr: case JCS_RGB: ci->out_color_space = JCS_RGB; out_ch = 3; break;
    case JCS_CMYK: case JCS_YCCK: ci->out_color_space = JCS_CMYK; out_ch = 3; cmyk = 1; break;
    default:
        return ms_error(err, MEDSEG_ERR_UNSUPPORTED, "%s: JPEG colour space %d not supported", name,
                        (int)ci->jpeg_color_space);
    }
    jpeg_start_decompress(ci);
    if ((int)ci->output_components != (cmyk ? 4 : out_ch) || ci->output_width != w || ci->output_height != h)
        return ms_error(err, MEDSEG_ERR_FORMAT, "%s: unexpected JPEG output geometry", name);
    medseg_status st = ms_image_alloc(out, (int)w, (int)h, out_ch, name, err);
    if (st) return st;
    if (cmyk) {
        s->row = ms_malloc((size_t)w * 4, err, "JPEG row");
        if (!s->row) return MEDSEG_ERR_NOMEM;
    }
    while (ci->output_scanline < h) {
        unsigned y = ci->output_scanline;
        JSAMPROW r = cmyk ? s->row : out->data + (size_t)y * w * out_ch;
        if (jpeg_read_scanlines(ci, &r, 1) != 1) break;
        if (s->jerr.truncated) return ms_error(err, MEDSEG_ERR_FORMAT, "%s: truncated JPEG data", name);
        if (cmyk) {
            uint8_t *o = out->data + (size_t)y * w * 3;
            for (unsigned x = 0; x < w; x++) {
                /* inverted samples: 255 - c' = c */
                int c = s->row[4 * x], m = s->row[4 * x + 1], yy = s->row[4 * x + 2], k = s->row[4 * x + 3];
                o[3 * x] = muldiv255(c, k);
                o[3 * x + 1] = muldiv255(m, k);
                o[3 * x + 2] = muldiv255(yy, k);
            }
        }
    }
    if (s->jerr.truncated || ci->output_scanline < h)
        return ms_error(err, MEDSEG_ERR_FORMAT, "%s: truncated JPEG data", name);
    jpeg_finish_decompress(ci);
    return MEDSEG_OK;
}

medseg_status ms_jpeg_decode(const uint8_t *buf, size_t len, const char *name, medseg_image *out, medseg_error *err)
{
    memset(out, 0, sizeof *out);
    if (!ms_is_jpeg(buf, len)) return ms_error(err, MEDSEG_ERR_FORMAT, "%s: not a JPEG file", name);
    jpeg_state *s = ms_calloc(1, sizeof *s, err, "JPEG decoder");
    if (!s) return MEDSEG_ERR_NOMEM;
    s->cinfo.err = jpeg_std_error(&s->jerr.pub);
    s->jerr.pub.error_exit = jpeg_error_exit_cb;
    s->jerr.pub.emit_message = jpeg_emit_message_cb;
    s->jerr.pub.output_message = jpeg_output_message_cb;
    medseg_status st = jpeg_decode_inner(s, buf, len, name, out, err);
    jpeg_destroy_decompress(&s->cinfo);
    free(s->row);
    free(s);
    if (st) medseg_image_free(out);
    return st;
}
