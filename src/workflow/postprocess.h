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

/* The MedSAM / LiteMedSAM postprocessing: one bilinear resize (PyTorch float32, align_corners=False)
 * of the low-res logits' top-left crop [croph][cropw] (row stride lowres) straight to [H][W].
 *   sigmoid_first = 1 ("medsam", MedSAM_Inference.py medsam_inference): sigmoid on the low-res
 *     logits, interpolate the probabilities, mask = prob > 0.5; out (NULL ok) gets the
 *     probabilities. Crop = the whole 256 x 256.
 *   sigmoid_first = 0 ("litemedsam", CVPR24_LiteMedSAM_infer.py MedSAM_Lite.postprocess_masks +
 *     medsam_inference): interpolate the logits cropped to [:newh, :neww], mask = sigmoid > 0.5;
 *     out (NULL ok) gets the interpolated logits.
 * mask may be NULL. Row bands run on pool (may be NULL). */
medseg_status ms_postprocess_direct(const float *low_res, int lowres, int cropw, int croph, int sigmoid_first, int W,
                                    int H, float *out, uint8_t *mask, ms_pool *pool, medseg_error *err);

/* torch.sigmoid in float32 (1 / (1 + exp(-x)), within an ulp of it). */
float ms_sigmoidf(float x);

#endif
