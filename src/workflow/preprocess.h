/* Image preprocessing presets. "sam": SamPredictor.set_image of segment-anything @dca509f
 * (ResizeLongestSide + PIL bilinear on uint8, SAM mean/std, zero padding right/bottom). */
#ifndef MS_PREPROCESS_H
#define MS_PREPROCESS_H

#include "core/common.h"

/* ResizeLongestSide.get_preprocess_shape: s = target / max(h, w); newh = (int)(h*s + 0.5), ... */
void ms_longest_side_shape(int w, int h, int target, int *neww, int *newh);

/* Pillow 8-bit BILINEAR resize (ImagingResample, separable, horizontal pass first, fixed point),
 * bit-exact. src [h][w][c] -> dst [nh][nw][c]. Returns MEDSEG_ERR_NOMEM on allocation failure. */
medseg_status ms_resize_bilinear_pil(const uint8_t *src, int w, int h, int c, uint8_t *dst, int nw, int nh,
                                     medseg_error *err);

/* Converts any medseg_image to RGB the way PIL's convert('RGB') does (grey replicated, alpha
 * dropped). dst [h][w][3]. */
void ms_image_to_rgb(const medseg_image *img, uint8_t *dst);

/* The whole "sam" preset: RGB, resize longest side to target, normalise with SAM mean/std
 * ((v - mean) / std in float32), zero-pad to target x target. out: [3, target, target]. */
medseg_status ms_preprocess_sam(const medseg_image *img, int target, float *out, int *neww, int *newh,
                                medseg_error *err);

#endif
