/* medseg_image_load: reads a whole file (size-capped), recognises PNG, JPEG or BMP by its first
 * bytes (never by the extension) and decodes it with png.c / jpeg.c / bmp.c.
 *
 * Channels follow what Pillow 9.4's Image.open() holds, so that ms_image_to_rgb() of the result
 * equals Image.open(path).convert('RGB') byte for byte:
 *   1 = grey ("1", "L", 16-bit grey "I" clipped to 255, all-grey palettes),
 *   3 = RGB (RGB files, colour palettes, CMYK JPEGs converted as Pillow does),
 *   4 = RGBA (RGBA files, grey+alpha expanded to RGBA, palettes with PNG tRNS transparency).
 * 16-bit samples other than plain grey keep their high byte. */
#include "io/image_formats.h"

#include <stdlib.h>
#include <string.h>

medseg_status ms_image_alloc(medseg_image *out, int w, int h, int c, const char *name, medseg_error *err)
{
    memset(out, 0, sizeof *out);
    if (w <= 0 || h <= 0 || w > MEDSEG_MAX_DIM || h > MEDSEG_MAX_DIM || (uint64_t)w * (uint64_t)h > MS_IMAGE_MAX_PIXELS)
        return ms_error(err, MEDSEG_ERR_NOMEM, "%s: image of %dx%d pixels is over medseg's limit (%d a side, %llu in total)",
                        name, w, h, MEDSEG_MAX_DIM, (unsigned long long)MS_IMAGE_MAX_PIXELS);
    if (c != 1 && c != 3 && c != 4) return ms_error(err, MEDSEG_ERR_INTERNAL, "%s: %d channels", name, c);
    size_t n = (size_t)w * (size_t)h * (size_t)c;
    out->data = malloc(n);
    if (!out->data) return ms_error(err, MEDSEG_ERR_NOMEM, "%s: out of memory for a %dx%dx%d image", name, w, h, c);
    out->width = w;
    out->height = h;
    out->channels = c;
    return MEDSEG_OK;
}

medseg_status medseg_image_load(const char *path, medseg_image *out, medseg_error *err)
{
    if (!out) return ms_error(err, MEDSEG_ERR_ARG, "medseg_image_load: no output image");
    memset(out, 0, sizeof *out);
    if (!path) return ms_error(err, MEDSEG_ERR_ARG, "medseg_image_load: no path");
    uint8_t *buf;
    size_t len;
    medseg_status st = ms_read_file(path, MS_IMAGE_MAX_FILE, &buf, &len, err);
    if (st) return st;
    if (ms_is_png(buf, len)) st = ms_png_decode(buf, len, path, out, err);
    else if (ms_is_jpeg(buf, len)) st = ms_jpeg_decode(buf, len, path, out, err);
    else if (ms_is_bmp(buf, len)) st = ms_bmp_decode(buf, len, path, out, err);
    else st = ms_error(err, MEDSEG_ERR_FORMAT, "%s: not a PNG, JPEG or BMP image", path);
    free(buf);
    if (st) medseg_image_free(out);
    return st;
}

void medseg_image_free(medseg_image *img)
{
    if (!img) return;
    free(img->data);
    memset(img, 0, sizeof *img);
}

#include "io/volume.h"

/* A PNG/JPEG/BMP file as a uint8 volume with nz = 1: channels 1 for grey images, else 3 (alpha
 * dropped, as Pillow's convert('RGB') does). Identity geometry (pixels, spacing 1). */
medseg_status ms_image_read_volume(const char *path, medseg_volume *out, medseg_error *err)
{
    if (!out) return ms_error(err, MEDSEG_ERR_ARG, "ms_image_read_volume: no output volume");
    memset(out, 0, sizeof *out);
    medseg_image img;
    medseg_status st = medseg_image_load(path, &img, err);
    if (st) return st;
    int ch = img.channels == 1 ? 1 : 3;
    st = ms_volume_alloc(out, img.width, img.height, 1, ch, MEDSEG_DT_U8, path, err);
    if (st) {
        medseg_image_free(&img);
        return st;
    }
    uint8_t *d = out->data;
    size_t np = (size_t)img.width * (size_t)img.height;
    if (img.channels == ch) {
        memcpy(d, img.data, np * (size_t)ch);
    } else if (img.channels == 2) { /* grey + alpha -> RGB */
        for (size_t p = 0; p < np; p++) d[3 * p] = d[3 * p + 1] = d[3 * p + 2] = img.data[2 * p];
    } else { /* RGBA -> RGB */
        for (size_t p = 0; p < np; p++)
            for (int c = 0; c < 3; c++) d[3 * p + (size_t)c] = img.data[(size_t)img.channels * p + (size_t)c];
    }
    medseg_image_free(&img);
    /* which decoder: by the same signatures medseg_image_load uses */
    FILE *f = fopen(path, "rb");
    uint8_t head[32] = {0}; /* ms_is_bmp needs the first 18 bytes */
    size_t n = f ? fread(head, 1, sizeof head, f) : 0;
    if (f) fclose(f);
    snprintf(out->format, sizeof out->format, "%s",
             ms_is_png(head, n) ? "png" : ms_is_jpeg(head, n) ? "jpeg" : ms_is_bmp(head, n) ? "bmp" : "image");
    return MEDSEG_OK;
}
