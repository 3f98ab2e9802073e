/* Mask postprocessing: Sam.postprocess_masks of segment-anything @dca509f. F.interpolate
 * bilinear (align_corners=False, no antialias) 256 -> target x target, crop to [:newh, :neww],
 * bilinear to (H, W). Computed exactly as PyTorch's float32 upsample_bilinear2d. */
#ifndef MS_POSTPROCESS_H
#define MS_POSTPROCESS_H

#include "core/threadpool.h"

/* PyTorch-equivalent bilinear resize of one float plane [ih][iw] -> [oh][ow], align_corners=False. */
void ms_interp_bilinear(const float *in, int iw, int ih, float *out, int ow, int oh);

/* low_res [256][256] -> logits [H][W] at the original size, identical to the two-step
 * reference; never builds the target x target intermediate (allocates O(W + H + target)). */
medseg_status ms_postprocess_mask(const float *low_res, int lowres, int target, int neww, int newh, int W, int H,
                                  float *out, medseg_error *err);

/* The same, thresholded (logit > 0, Sam.mask_threshold) straight into a 0/1 mask [H][W], row
 * bands in parallel on pool (may be NULL). */
medseg_status ms_postprocess_mask_binary(const float *low_res, int lowres, int target, int neww, int newh, int W,
                                         int H, uint8_t *mask, ms_pool *pool, medseg_error *err);

#endif
