/* Overlay picture for people: the image with the mask tinted, its outline drawn, and the
 * prompt (box, clicks) on top, written as an RGB PNG (atomically). */
#ifndef MS_OVERLAY_H
#define MS_OVERLAY_H

#include "core/common.h"

/* img: any medseg_image (grey/RGB/RGBA); mask [h][w] 0/non-zero with w/h equal to the image's;
 * prompt may be NULL. Mask: translucent blue tint plus a solid yellow outline; box: green
 * rectangle; positive clicks: green dots, negative clicks: red dots, both with a dark border. */
medseg_status ms_overlay_write(const char *path, const medseg_image *img, const uint8_t *mask, int w, int h,
                               const medseg_prompt *prompt, medseg_error *err);

#endif
