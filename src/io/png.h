/* PNG output (libpng), written atomically (temporary file + rename). The reader lives in png.c
 * too and is reached through medseg_image_load (image_formats.h). */
#ifndef MS_PNG_H
#define MS_PNG_H

#include "core/common.h"

/* data [h][w] bytes, written as an 8-bit greyscale PNG with 0 -> 0 and any non-zero -> 255. */
medseg_status ms_png_write_gray8(const char *path, int w, int h, const uint8_t *data, medseg_error *err);

/* rgb [h][w][3] bytes, written as an 8-bit RGB PNG. */
medseg_status ms_png_write_rgb8(const char *path, int w, int h, const uint8_t *rgb, medseg_error *err);

#endif
