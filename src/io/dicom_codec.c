/* DICOM pixel-data decoders: native frames (including 1-bit and YBR_FULL_422 layouts), RLE
 * Lossless (hand-written, PS3.5 Annex G), JPEG baseline/extended 8-bit (libjpeg-turbo), JPEG-LS
 * (CharLS C API), JPEG 2000 (OpenJPEG, J2K codestream or JP2 file from a memory stream).
 *
 * Colour: every decoder produces samples interleaved per pixel. JPEG baseline: libjpeg converts
 * YCbCr to RGB itself when the stream says it is YCbCr (JFIF marker, Adobe transform, or three
 * components with ids 1,2,3), as GDCM and Pillow do, so its output is RGB whatever the
 * PhotometricInterpretation (YBR_FULL_422 in the header then describes the stream, not the decoded
 * values); JPEG 2000 applies the codestream's RCT/ICT itself (YBR_RCT / YBR_ICT -> RGB). Native,
 * RLE and JPEG-LS data labelled YBR_FULL / YBR_FULL_422 are converted by
 * ms_dcm_postprocess_frame with the PS3.3 C.7.6.3.1.2 equations (the caller decides).
 *
 * Little-endian host assumed (values are copied with memcpy from little-endian data). */
#include "io/dicom.h"

#include <math.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <charls/charls.h>
#include <jpeglib.h>
#include <openjpeg.h>

size_t ms_dcm_value_size(const ms_dcm_pixel *px)
{
    if (px->bits_alloc <= 8) return 1;
    if (px->bits_alloc <= 16) return 2;
    return 4;
}

/* Stores integer v as value n of out (value size vs bytes, little endian). */
static void put_value(void *out, size_t n, size_t vs, int64_t v)
{
    uint8_t *o = (uint8_t *)out;
    if (vs == 1) o[n] = (uint8_t)v;
    else if (vs == 2) { uint16_t t = (uint16_t)v; memcpy(o + 2 * n, &t, 2); }
    else { uint32_t t = (uint32_t)v; memcpy(o + 4 * n, &t, 4); }
}

static int is_ybr422(const ms_dcm_pixel *px)
{
    return px->spp == 3 && !strcmp(px->photometric, "YBR_FULL_422");
}

/* ---------------------------------------------------------------- native */

// PixelData bytes, frame f -> out [rows, cols, spp]
// ref: PS3.5 8.1.1 (native pixel data encoding), 8.2 (1-bit packing LSB first); PS3.3 C.7.6.3.1.3
medseg_status ms_dcm_native_frame(const ms_dcm_pixel *px, const uint8_t *src, size_t n, int64_t frame, void *out,
                                  const char *name, medseg_error *err)
{
    size_t npix = (size_t)px->rows * (size_t)px->cols;
    size_t nval = npix * (size_t)px->spp;
    if (px->bits_alloc == 1) {
        if (px->spp != 1) return ms_error(err, MEDSEG_ERR_UNSUPPORTED, "%s: 1-bit data with %d samples per pixel", name, px->spp);
        uint64_t bit0 = (uint64_t)frame * (uint64_t)npix;
        uint64_t need = (bit0 + npix + 7) / 8;
        if (need > n) return ms_error(err, MEDSEG_ERR_FORMAT, "%s: PixelData holds %zu bytes, frame %lld needs %llu", name, n,
                                      (long long)frame, (unsigned long long)need);
        uint8_t *o = (uint8_t *)out;
        for (size_t p = 0; p < npix; p++) {
            uint64_t b = bit0 + p;
            o[p] = (uint8_t)((src[b >> 3] >> (b & 7)) & 1u);
        }
        return MEDSEG_OK;
    }
    size_t vs = ms_dcm_value_size(px);
    if (is_ybr422(px)) {
        /* Two luminance values share one Cb, Cr pair: Y0 Y1 Cb Cr; expanded to full YBR. */
        if (vs != 1 || px->cols % 2) return ms_error(err, MEDSEG_ERR_UNSUPPORTED, "%s: YBR_FULL_422 native data with %d bits or odd width", name, px->bits_alloc);
        size_t fb = npix * 2;
        if ((uint64_t)(frame + 1) * fb > n) return ms_error(err, MEDSEG_ERR_FORMAT, "%s: PixelData holds %zu bytes, frame %lld needs %zu more", name, n, (long long)frame, fb);
        const uint8_t *s = src + (size_t)frame * fb;
        uint8_t *o = (uint8_t *)out;
        for (size_t p = 0; p < npix; p += 2, s += 4) {
            o[3 * p + 0] = s[0]; o[3 * p + 1] = s[2]; o[3 * p + 2] = s[3];
            o[3 * p + 3] = s[1]; o[3 * p + 4] = s[2]; o[3 * p + 5] = s[3];
        }
        return MEDSEG_OK;
    }
    size_t fb = nval * vs;
    if ((uint64_t)(frame + 1) * (uint64_t)fb > (uint64_t)n)
        return ms_error(err, MEDSEG_ERR_FORMAT, "%s: PixelData holds %zu bytes, frame %lld needs %zu bytes more", name, n,
                        (long long)frame, fb);
    const uint8_t *s = src + (size_t)frame * fb;
    if (px->spp == 1 || px->planar == 0) {
        memcpy(out, s, fb);
    } else { /* planar: RRR.. GGG.. BBB.. -> RGBRGB.. */
        uint8_t *o = (uint8_t *)out;
        for (int c = 0; c < px->spp; c++)
            for (size_t p = 0; p < npix; p++)
                memcpy(o + (p * (size_t)px->spp + (size_t)c) * vs, s + ((size_t)c * npix + p) * vs, vs);
    }
    return MEDSEG_OK;
}

/* ---------------------------------------------------------------- RLE */

/* One PackBits segment -> exactly `want` bytes at dst with stride (byte plane of a value).
 * ref: PS3.5 G.3.1 (RLE decoder). */
static int rle_segment(const uint8_t *s, size_t n, uint8_t *dst, size_t stride, size_t want)
{
    size_t i = 0, got = 0;
    while (got < want && i < n) {
        int h = (int8_t)s[i++];
        if (h >= 0) {
            size_t cnt = (size_t)h + 1;
            if (cnt > n - i) return 0;
            if (cnt > want - got) cnt = want - got;
            for (size_t k = 0; k < cnt; k++) dst[(got + k) * stride] = s[i + k];
            i += (size_t)h + 1;
            got += cnt;
        } else if (h != -128) {
            size_t cnt = (size_t)(1 - h);
            if (i >= n) return 0;
            uint8_t b = s[i++];
            if (cnt > want - got) cnt = want - got;
            for (size_t k = 0; k < cnt; k++) dst[(got + k) * stride] = b;
            got += cnt;
        }
    }
    return got == want;
}

// RLE frame (header + segments) -> out [rows, cols, spp]
// ref: PS3.5 Annex G (RLE Lossless: header of 16 uint32, one segment per byte plane, MSB first)
static medseg_status decode_rle(const ms_dcm_pixel *px, const uint8_t *src, size_t n, void *out, const char *name,
                                medseg_error *err)
{
    size_t vs = ms_dcm_value_size(px);
    if (px->bits_alloc % 8) return ms_error(err, MEDSEG_ERR_UNSUPPORTED, "%s: RLE with BitsAllocated %d", name, px->bits_alloc);
    size_t bps = (size_t)px->bits_alloc / 8;
    size_t nseg_want = bps * (size_t)px->spp;
    if (n < 64) return ms_error(err, MEDSEG_ERR_FORMAT, "%s: RLE frame shorter than its 64-byte header", name);
    uint32_t hdr[16];
    memcpy(hdr, src, 64);
    if (hdr[0] != nseg_want || nseg_want > 15)
        return ms_error(err, MEDSEG_ERR_FORMAT, "%s: RLE header has %u segments, %zu expected", name, hdr[0], nseg_want);
    size_t npix = (size_t)px->rows * (size_t)px->cols;
    uint8_t *o = (uint8_t *)out;
    memset(o, 0, npix * (size_t)px->spp * vs);
    for (size_t sg = 0; sg < nseg_want; sg++) {
        size_t beg = hdr[1 + sg];
        size_t end = (sg + 1 < nseg_want) ? hdr[2 + sg] : n;
        if (beg < 64 || beg > end || end > n)
            return ms_error(err, MEDSEG_ERR_FORMAT, "%s: RLE segment %zu offsets out of range", name, sg);
        size_t sample = sg / bps, byte_msb = sg % bps;
        size_t byte_le = bps - 1 - byte_msb;
        uint8_t *dst = o + sample * vs + byte_le;
        if (!rle_segment(src + beg, end - beg, dst, (size_t)px->spp * vs, npix))
            return ms_error(err, MEDSEG_ERR_FORMAT, "%s: RLE segment %zu decodes to fewer than %zu bytes", name, sg, npix);
    }
    return MEDSEG_OK;
}

/* ---------------------------------------------------------------- JPEG (libjpeg-turbo) */

typedef struct {
    struct jpeg_error_mgr pub;
    jmp_buf jb;
    char msg[JMSG_LENGTH_MAX];
} jerr_mgr;

static void jerr_exit(j_common_ptr ci)
{
    jerr_mgr *e = (jerr_mgr *)ci->err;
    (*ci->err->format_message)(ci, e->msg);
    longjmp(e->jb, 1);
}

static void jerr_silent(j_common_ptr ci, int level) { (void)ci; (void)level; }

// JPEG baseline/extended 8-bit frame -> out [rows, cols, spp]  (libjpeg colour conversion kept)
// ref: ITU T.81 via libjpeg-turbo; PS3.5 8.2.1
static medseg_status decode_jpeg(const ms_dcm_pixel *px, const uint8_t *src, size_t n, void *out, const char *name,
                                 medseg_error *err)
{
    struct jpeg_decompress_struct ci;
    jerr_mgr je;
    uint8_t *volatile row = NULL;
    memset(&ci, 0, sizeof ci);
    ci.err = jpeg_std_error(&je.pub);
    je.pub.error_exit = jerr_exit;
    je.pub.emit_message = jerr_silent;
    je.msg[0] = 0;
    if (setjmp(je.jb)) {
        jpeg_destroy_decompress(&ci);
        free(row);
        int unsup = strstr(je.msg, "Unsupported") != NULL;
        return ms_error(err, unsup ? MEDSEG_ERR_UNSUPPORTED : MEDSEG_ERR_FORMAT, "%s: JPEG: %s", name, je.msg);
    }
    jpeg_create_decompress(&ci);
    if (n > (size_t)0x7fffffff) longjmp(je.jb, 1);
    jpeg_mem_src(&ci, src, (unsigned long)n);
    jpeg_read_header(&ci, TRUE);
    if (ci.data_precision != 8) {
        jpeg_destroy_decompress(&ci);
        return ms_error(err, MEDSEG_ERR_UNSUPPORTED, "%s: %d-bit JPEG (%s) needs 12-bit libjpeg support", name,
                        ci.data_precision, px->ts_uid);
    }
    if (ci.num_components != px->spp) {
        jpeg_destroy_decompress(&ci);
        return ms_error(err, MEDSEG_ERR_FORMAT, "%s: JPEG has %d components, SamplesPerPixel is %d", name,
                        ci.num_components, px->spp);
    }
    if ((int)ci.image_width != px->cols || (int)ci.image_height != px->rows) {
        jpeg_destroy_decompress(&ci);
        return ms_error(err, MEDSEG_ERR_FORMAT, "%s: JPEG is %ux%u, header says %dx%d", name, ci.image_width, ci.image_height,
                        px->cols, px->rows);
    }
    if (px->spp == 1) ci.out_color_space = JCS_GRAYSCALE;
    jpeg_start_decompress(&ci);
    if ((int)ci.output_width != px->cols || (int)ci.output_height != px->rows || ci.output_components != px->spp) {
        jpeg_destroy_decompress(&ci);
        return ms_error(err, MEDSEG_ERR_FORMAT, "%s: JPEG is %ux%u, header says %dx%d", name, ci.output_width,
                        ci.output_height, px->cols, px->rows);
    }
    size_t vs = ms_dcm_value_size(px);
    size_t rowlen = (size_t)ci.output_width * (size_t)ci.output_components;
    row = (uint8_t *)malloc(rowlen);
    if (!row) longjmp(je.jb, 1);
    while (ci.output_scanline < ci.output_height) {
        size_t y = ci.output_scanline;
        JSAMPROW rp = row;
        if (jpeg_read_scanlines(&ci, &rp, 1) != 1) break;
        for (size_t x = 0; x < rowlen; x++) put_value(out, y * rowlen + x, vs, row[x]);
    }
    jpeg_finish_decompress(&ci);
    jpeg_destroy_decompress(&ci);
    free(row);
    return MEDSEG_OK;
}

/* ---------------------------------------------------------------- JPEG-LS (CharLS) */

// JPEG-LS frame -> out [rows, cols, spp]
// ref: ITU T.87 via CharLS; PS3.5 8.2.3
static medseg_status decode_jpegls(const ms_dcm_pixel *px, const uint8_t *src, size_t n, void *out, const char *name,
                                   medseg_error *err)
{
    charls_jpegls_decoder *d = charls_jpegls_decoder_create();
    if (!d) return ms_error(err, MEDSEG_ERR_NOMEM, "%s: JPEG-LS decoder", name);
    medseg_status st = MEDSEG_OK;
    uint8_t *tmp = NULL;
    charls_frame_info fi;
    charls_interleave_mode im = CHARLS_INTERLEAVE_MODE_NONE;
    charls_jpegls_errc e = charls_jpegls_decoder_set_source_buffer(d, src, n);
    if (!e) e = charls_jpegls_decoder_read_header(d);
    if (!e) e = charls_jpegls_decoder_get_frame_info(d, &fi);
    if (!e) e = charls_jpegls_decoder_get_interleave_mode(d, &im);
    if (e) { st = ms_error(err, MEDSEG_ERR_FORMAT, "%s: JPEG-LS: %s", name, charls_get_error_message(e)); goto done; }
    if ((int)fi.width != px->cols || (int)fi.height != px->rows || fi.component_count != px->spp ||
        fi.bits_per_sample < 2 || fi.bits_per_sample > 16 || (fi.bits_per_sample > 8 && ms_dcm_value_size(px) < 2)) {
        st = ms_error(err, MEDSEG_ERR_FORMAT, "%s: JPEG-LS frame %ux%u, %d components, %d bits does not match the header", name,
                      fi.width, fi.height, fi.component_count, fi.bits_per_sample);
        goto done;
    }
    size_t bps = fi.bits_per_sample > 8 ? 2 : 1;
    size_t npix = (size_t)px->rows * (size_t)px->cols, spp = (size_t)px->spp;
    size_t need = npix * spp * bps, dsz = 0;
    e = charls_jpegls_decoder_get_destination_size(d, 0, &dsz);
    if (e || dsz != need) {
        st = ms_error(err, MEDSEG_ERR_FORMAT, "%s: JPEG-LS destination size %zu, %zu expected", name, dsz, need);
        goto done;
    }
    tmp = (uint8_t *)ms_malloc(need, err, "JPEG-LS frame");
    if (!tmp) { st = MEDSEG_ERR_NOMEM; goto done; }
    e = charls_jpegls_decoder_decode_to_buffer(d, tmp, need, 0);
    if (e) { st = ms_error(err, MEDSEG_ERR_FORMAT, "%s: JPEG-LS: %s", name, charls_get_error_message(e)); goto done; }
    size_t vs = ms_dcm_value_size(px);
    int planar = spp > 1 && im == CHARLS_INTERLEAVE_MODE_NONE;
    for (size_t p = 0; p < npix; p++)
        for (size_t c = 0; c < spp; c++) {
            size_t si = planar ? c * npix + p : p * spp + c;
            uint32_t v;
            if (bps == 1) v = tmp[si];
            else { uint16_t t; memcpy(&t, tmp + 2 * si, 2); v = t; }
            put_value(out, p * spp + c, vs, v);
        }
done:
    free(tmp);
    charls_jpegls_decoder_destroy(d);
    return st;
}

/* ---------------------------------------------------------------- JPEG 2000 (OpenJPEG) */

typedef struct {
    const uint8_t *p;
    size_t n, pos;
} j2k_mem;

static OPJ_SIZE_T j2k_read(void *buf, OPJ_SIZE_T nb, void *ud)
{
    j2k_mem *m = (j2k_mem *)ud;
    if (m->pos >= m->n) return (OPJ_SIZE_T)-1;
    size_t k = m->n - m->pos;
    if (k > nb) k = nb;
    memcpy(buf, m->p + m->pos, k);
    m->pos += k;
    return k;
}

static OPJ_OFF_T j2k_skip(OPJ_OFF_T nb, void *ud)
{
    j2k_mem *m = (j2k_mem *)ud;
    if (nb < 0) {
        if ((size_t)(-nb) > m->pos) return -1;
        m->pos -= (size_t)(-nb);
    } else {
        size_t k = (size_t)nb;
        if (k > m->n - m->pos) k = m->n - m->pos;
        m->pos += k;
        return (OPJ_OFF_T)k;
    }
    return nb;
}

static OPJ_BOOL j2k_seek(OPJ_OFF_T nb, void *ud)
{
    j2k_mem *m = (j2k_mem *)ud;
    if (nb < 0 || (uint64_t)nb > m->n) return OPJ_FALSE;
    m->pos = (size_t)nb;
    return OPJ_TRUE;
}

static void j2k_msg(const char *msg, void *ud)
{
    char *b = (char *)ud;
    if (!b[0]) {
        snprintf(b, 200, "%s", msg);
        size_t l = strlen(b);
        while (l && (b[l - 1] == '\n' || b[l - 1] == '\r')) b[--l] = 0;
    }
}

static void j2k_quiet(const char *msg, void *ud) { (void)msg; (void)ud; }

// JPEG 2000 frame (J2K codestream or JP2) -> out [rows, cols, spp]
// ref: ITU T.800 via OpenJPEG; PS3.5 8.2.4
static medseg_status decode_j2k(const ms_dcm_pixel *px, const uint8_t *src, size_t n, void *out, const char *name,
                                medseg_error *err)
{
    static const uint8_t jp2sig[12] = {0, 0, 0, 0x0c, 'j', 'P', ' ', ' ', 0x0d, 0x0a, 0x87, 0x0a};
    OPJ_CODEC_FORMAT fmt;
    if (n >= 12 && !memcmp(src, jp2sig, 12)) fmt = OPJ_CODEC_JP2;
    else if (n >= 4 && src[0] == 0xff && src[1] == 0x4f && src[2] == 0xff && src[3] == 0x51) fmt = OPJ_CODEC_J2K;
    else return ms_error(err, MEDSEG_ERR_FORMAT, "%s: JPEG 2000 frame has neither a codestream nor a JP2 signature", name);

    char msg[256] = {0};
    j2k_mem mem = {src, n, 0};
    opj_codec_t *codec = opj_create_decompress(fmt);
    opj_stream_t *stream = opj_stream_create(1 << 16, OPJ_TRUE);
    opj_image_t *img = NULL;
    medseg_status st = MEDSEG_OK;
    if (!codec || !stream) { st = ms_error(err, MEDSEG_ERR_NOMEM, "%s: JPEG 2000 decoder", name); goto done; }
    opj_set_error_handler(codec, j2k_msg, msg);
    opj_set_warning_handler(codec, j2k_quiet, NULL);
    opj_set_info_handler(codec, j2k_quiet, NULL);
    opj_stream_set_user_data(stream, &mem, NULL);
    opj_stream_set_user_data_length(stream, n);
    opj_stream_set_read_function(stream, j2k_read);
    opj_stream_set_skip_function(stream, j2k_skip);
    opj_stream_set_seek_function(stream, j2k_seek);
    opj_dparameters_t prm;
    opj_set_default_decoder_parameters(&prm);
    if (!opj_setup_decoder(codec, &prm) || !opj_read_header(stream, codec, &img) || !img) {
        st = ms_error(err, MEDSEG_ERR_FORMAT, "%s: JPEG 2000: %s", name, msg[0] ? msg : "bad header");
        goto done;
    }
    /* The codestream's own size must match the DICOM header before anything is decoded. */
    if (img->x1 - img->x0 != (OPJ_UINT32)px->cols || img->y1 - img->y0 != (OPJ_UINT32)px->rows || img->numcomps < (OPJ_UINT32)px->spp ||
        img->numcomps > 4) {
        st = ms_error(err, MEDSEG_ERR_FORMAT, "%s: JPEG 2000 image is %ux%u with %u components, header says %dx%d with %d", name,
                      img->x1 - img->x0, img->y1 - img->y0, img->numcomps, px->cols, px->rows, px->spp);
        goto done;
    }
    if (!opj_decode(codec, stream, img) || !opj_end_decompress(codec, stream)) {
        st = ms_error(err, MEDSEG_ERR_FORMAT, "%s: JPEG 2000: %s", name, msg[0] ? msg : "decoding failed");
        goto done;
    }
    if ((int)img->numcomps < px->spp) {
        st = ms_error(err, MEDSEG_ERR_FORMAT, "%s: JPEG 2000 has %u components, SamplesPerPixel is %d", name, img->numcomps, px->spp);
        goto done;
    }
    for (int c = 0; c < px->spp; c++) {
        opj_image_comp_t *cp = &img->comps[c];
        if ((int)cp->w != px->cols || (int)cp->h != px->rows || cp->dx != 1 || cp->dy != 1 || !cp->data) {
            st = ms_error(err, MEDSEG_ERR_FORMAT, "%s: JPEG 2000 component %d is %ux%u (subsampling %u,%u), header says %dx%d",
                          name, c, cp->w, cp->h, cp->dx, cp->dy, px->cols, px->rows);
            goto done;
        }
        if (cp->prec > 32 || (size_t)((cp->prec + 7) / 8) > ms_dcm_value_size(px)) {
            st = ms_error(err, MEDSEG_ERR_FORMAT, "%s: JPEG 2000 precision %u exceeds BitsAllocated %d", name, cp->prec, px->bits_alloc);
            goto done;
        }
    }
    {
        size_t vs = ms_dcm_value_size(px), npix = (size_t)px->rows * (size_t)px->cols, spp = (size_t)px->spp;
        for (size_t c = 0; c < spp; c++) {
            const OPJ_INT32 *d = img->comps[c].data;
            for (size_t p = 0; p < npix; p++) put_value(out, p * spp + c, vs, d[p]);
        }
    }
done:
    if (img) opj_image_destroy(img);
    if (stream) opj_stream_destroy(stream);
    if (codec) opj_destroy_codec(codec);
    return st;
}

/* ---------------------------------------------------------------- dispatch and post-processing */

medseg_status ms_dcm_decode_frame(const ms_dcm_pixel *px, const uint8_t *src, size_t n, void *out, const char *name,
                                  medseg_error *err)
{
    if (px->bits_alloc == 1 && px->codec != MS_DCM_TS_RLE)
        return ms_error(err, MEDSEG_ERR_UNSUPPORTED, "%s: compressed 1-bit pixel data (%s)", name, px->ts_uid);
    switch (px->codec) {
    case MS_DCM_TS_RLE: return decode_rle(px, src, n, out, name, err);
    case MS_DCM_TS_JPEG_BASELINE:
    case MS_DCM_TS_JPEG_EXTENDED: return decode_jpeg(px, src, n, out, name, err);
    case MS_DCM_TS_JPEGLS: return decode_jpegls(px, src, n, out, name, err);
    case MS_DCM_TS_J2K: return decode_j2k(px, src, n, out, name, err);
    default: break;
    }
    const char *tn = ms_dicom_ts_name(px->ts_uid);
    return ms_error(err, MEDSEG_ERR_UNSUPPORTED, "%s: transfer syntax %s (%s) is not supported", name, px->ts_uid,
                    tn ? tn : "unknown");
}

// frame [rows, cols, spp] -> same, sign-extended / YBR_FULL converted to RGB
// ref: PS3.3 C.7.6.3.1.2 (YBR_FULL equations), C.7.6.3.1.1 (HighBit); pydicom convert_color_space rounding
void ms_dcm_postprocess_frame(const ms_dcm_pixel *px, void *frame, int ybr_to_rgb)
{
    size_t npix = (size_t)px->rows * (size_t)px->cols;
    size_t nval = npix * (size_t)px->spp;
    size_t vs = ms_dcm_value_size(px);
    if (px->pixel_rep == 1 && px->bits_alloc > 1 && px->high_bit + 1 < px->bits_alloc && px->high_bit >= 0) {
        uint32_t sign = 1u << px->high_bit;
        uint32_t ext = ~((sign << 1) - 1u);
        for (size_t i = 0; i < nval; i++) {
            if (vs == 1) { uint8_t *p = (uint8_t *)frame + i; if (*p & sign) *p = (uint8_t)(*p | ext); else *p = (uint8_t)(*p & ~ext); }
            else if (vs == 2) {
                uint16_t v; memcpy(&v, (uint8_t *)frame + 2 * i, 2);
                v = (uint16_t)((v & sign) ? (v | ext) : (v & ~ext));
                memcpy((uint8_t *)frame + 2 * i, &v, 2);
            } else {
                uint32_t v; memcpy(&v, (uint8_t *)frame + 4 * i, 4);
                v = (v & sign) ? (v | ext) : (v & ~ext);
                memcpy((uint8_t *)frame + 4 * i, &v, 4);
            }
        }
    }
    if (ybr_to_rgb && px->spp == 3 && vs == 1) {
        uint8_t *p = (uint8_t *)frame;
        for (size_t i = 0; i < npix; i++, p += 3) {
            double y = p[0], cb = p[1] - 128.0, cr = p[2] - 128.0;
            double r = y + 1.402 * cr;
            double g = y - (0.114 * 1.772 / 0.587) * cb - (0.299 * 1.402 / 0.587) * cr;
            double b = y + 1.772 * cb;
            double v[3] = {r, g, b};
            for (int c = 0; c < 3; c++) {
                double t = floor(v[c] + 0.5);
                p[c] = (uint8_t)(t < 0 ? 0 : t > 255 ? 255 : t);
            }
        }
    }
}
