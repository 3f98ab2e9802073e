/* Image preprocessing presets, chosen by the model (medseg_model_info.preset):
 * "sam": SamPredictor.set_image of segment-anything @dca509f (ResizeLongestSide + PIL bilinear
 *        on uint8, SAM mean/std, zero padding right/bottom); SAM, MedicoSAM, MobileSAM.
 * "medsam": MedSAM_Inference.py (bowang-lab/MedSAM@d71e8a1): skimage bicubic-spline resize to
 *        1024 x 1024 ignoring the aspect ratio, uint8, min-max; MedSAM.
 * "litemedsam": CVPR24_LiteMedSAM_infer.py (bowang-lab/MedSAM@b0fab47, branch LiteMedSAM):
 *        INTER_AREA resize of the longest side to 256, min-max, zero padding; LiteMedSAM. */
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

/* ---- "medsam" preset: MedSAM_Inference.py of bowang-lab/MedSAM@d71e8a1 ---- */

/* skimage 0.19.3 transform.resize(img, (nh, nw), order=3, preserve_range=True,
 * anti_aliasing=True) of a uint8 image, float64 out: Gaussian pre-filter when shrinking (sigma =
 * max(0, (in/out - 1) / 2) per axis, mode mirror, truncate 4), scipy 1.10.1 ndimage.zoom (cubic
 * B-spline, spline pre-filter along all three axes including the channel axis, mirror boundary,
 * grid_mode=True), clip to the input's [min, max]. src [h][w][c] -> dst [nh][nw][c].
 * resize_spline.c. */
medseg_status ms_resize_spline3(const uint8_t *src, int w, int h, int c, double *dst, int nw, int nh,
                                medseg_error *err);

/* The whole "medsam" preset: RGB, ms_resize_spline3 to target x target (aspect ratio not kept),
 * uint8 truncation, min-max to [0, 1] (float64 division, then float32), no mean/std.
 * out: [3, target, target]. resized_u8: NULL or [target][target][3], the uint8 image. */
medseg_status ms_preprocess_medsam(const medseg_image *img, int target, float *out, uint8_t *resized_u8,
                                   medseg_error *err);

/* ---- "litemedsam" preset: CVPR24_LiteMedSAM_infer.py of bowang-lab/MedSAM@b0fab47 ---- */

/* OpenCV 4.6 cv2.resize(src, (nw, nh), interpolation=cv2.INTER_AREA) on uint8, bit-exact.
 * src [h][w][c] -> dst [nh][nw][c], c <= 4. resize_area.c. */
medseg_status ms_resize_area_cv(const uint8_t *src, int w, int h, int c, uint8_t *dst, int nw, int nh,
                                medseg_error *err);

/* The whole "litemedsam" preset: RGB, resize the longest side to target with INTER_AREA
 * (ms_longest_side_shape), min-max to [0, 1] (float64 division, then float32), no mean/std,
 * zero padding right/bottom. out: [3, target, target]; resized_u8: NULL or [newh][neww][3]
 * (at most target x target). */
medseg_status ms_preprocess_litemedsam(const medseg_image *img, int target, float *out, int *neww, int *newh,
                                       uint8_t *resized_u8, medseg_error *err);

#endif
