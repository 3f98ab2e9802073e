/* libFuzzer harness: the image decoders behind medseg_image_load (png.c / jpeg.c / bmp.c), fed
 * from memory with the same content sniffing as image.c.
 *
 * PNG inputs are decoded twice: as they are, and with every chunk CRC recomputed. Without the
 * second pass nearly every mutation dies at libpng's CRC check and the fuzzer never reaches the
 * header/palette/transparency/row handling of png.c. */
#include "fuzz_util.h"
#include "io/image_formats.h"

#include <zlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint32_t fuzz_image_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* A copy of the PNG with the CRC of every complete chunk made correct; NULL if nothing changed. */
static uint8_t *fuzz_image_fix_png_crcs(const uint8_t *data, size_t size)
{
    uint8_t *c = malloc(size ? size : 1);
    if (!c) return NULL;
    memcpy(c, data, size);
    int changed = 0;
    size_t p = 8;
    while (p + 12 <= size) {
        uint32_t len = fuzz_image_be32(c + p);
        if (len > size - p - 12) break;
        uint32_t crc = (uint32_t)crc32(0L, c + p + 4, (uInt)len + 4);
        uint8_t *q = c + p + 8 + len;
        if (fuzz_image_be32(q) != crc) {
            q[0] = (uint8_t)(crc >> 24), q[1] = (uint8_t)(crc >> 16), q[2] = (uint8_t)(crc >> 8), q[3] = (uint8_t)crc;
            changed = 1;
        }
        p += 12 + (size_t)len;
    }
    if (!changed) {
        free(c);
        return NULL;
    }
    return c;
}

static void fuzz_image_decode(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > MS_FUZZ_MAX_INPUT) return 0;
    fuzz_image_decode(data, size);
    if (ms_is_png(data, size)) {
        uint8_t *fixed = fuzz_image_fix_png_crcs(data, size);
        if (fixed) fuzz_image_decode(fixed, size);
        free(fixed);
    }
    return 0;
}

static void fuzz_image_decode(const uint8_t *data, size_t size)
{
    medseg_image img;
    medseg_error err;
    memset(&img, 0, sizeof img);
    medseg_status st;
    if (ms_is_png(data, size)) st = ms_png_decode(data, size, "fuzz.png", &img, &err);
    else if (ms_is_jpeg(data, size)) st = ms_jpeg_decode(data, size, "fuzz.jpg", &img, &err);
    else if (ms_is_bmp(data, size)) st = ms_bmp_decode(data, size, "fuzz.bmp", &img, &err);
    else return;
    if (st == MEDSEG_OK) {
        /* read the claimed extent of the pixels (ASan flags a buffer smaller than w*h*c): the last
           byte and one byte per page, not every byte (a 164-Mpixel image is legal) */
        size_t n = (size_t)img.width * (size_t)img.height * (size_t)img.channels;
        volatile uint8_t acc = img.data[n - 1];
        for (size_t i = 0; i < n; i += 4096) acc ^= img.data[i];
        (void)acc;
    }
    medseg_image_free(&img);
}
