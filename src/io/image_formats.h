/* Internal: the per-format image decoders behind medseg_image_load. Each decodes a whole file
 * held in memory; name is used in error messages only. Conversions follow Pillow 9.4's
 * Image.open() modes (see image.c for the channel rules). */
#ifndef MS_IMAGE_FORMATS_H
#define MS_IMAGE_FORMATS_H

#include "core/common.h"

/* Largest accepted image: MEDSEG_MAX_DIM a side and this many pixels in total, which is where
 * Pillow refuses images (2 x Image.MAX_IMAGE_PIXELS, DecompressionBombError); checked from the
 * header, before anything is decoded. */
#define MS_IMAGE_MAX_PIXELS ((uint64_t)178956970)
/* Largest accepted image file. */
#define MS_IMAGE_MAX_FILE ((size_t)1 << 30)

/* Checks w x h against the caps; allocates out->data (w*h*c bytes) and fills the geometry. */
medseg_status ms_image_alloc(medseg_image *out, int w, int h, int c, const char *name, medseg_error *err);

int ms_is_png(const uint8_t *buf, size_t len);
int ms_is_jpeg(const uint8_t *buf, size_t len);
int ms_is_bmp(const uint8_t *buf, size_t len);

medseg_status ms_png_decode(const uint8_t *buf, size_t len, const char *name, medseg_image *out, medseg_error *err);
medseg_status ms_jpeg_decode(const uint8_t *buf, size_t len, const char *name, medseg_image *out, medseg_error *err);
medseg_status ms_bmp_decode(const uint8_t *buf, size_t len, const char *name, medseg_image *out, medseg_error *err);

#endif
