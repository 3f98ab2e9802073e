/* The neck shared by SAM's image encoders (ViT-B/L/H and MobileSAM's TinyViT): 1x1 conv (no
 * bias) to 256 channels, LayerNorm2d, 3x3 conv pad 1 (no bias), LayerNorm2d, then the
 * channel-major [256, side, side] embedding.
 * ref: segment_anything/modeling/image_encoder.py ImageEncoderViT.neck,
 *      mobile_sam/modeling/tiny_vit_sam.py TinyViT.neck */
#ifndef MS_NECK_H
#define MS_NECK_H

#include "core/threadpool.h"
#include "weights/tensors.h"

#define SAM_NECK_DIM 256
#define SAM_NECK_ROWS 4 /* output rows per im2col chunk of the 3x3 conv */

typedef struct {
    int in_dim;
    const float *w0;           /* neck.0 [256, in_dim, 1, 1] used as [256, in_dim] */
    const float *ln1_w, *ln1_b; /* neck.1 LayerNorm2d(256), eps 1e-6 */
    float *w2;                 /* owned: neck.2 [256, 256, 3, 3] reordered [256, 3, 3, 256] */
    const float *ln3_w, *ln3_b; /* neck.3 LayerNorm2d */
} sam_neck;

/* Binds image_encoder.neck.* for an encoder whose last stage has in_dim channels. */
medseg_status sam_neck_bind(sam_neck *n, const ms_tensors *ts, int in_dim, medseg_error *err);
void sam_neck_release(sam_neck *n);

/* Scratch floats the 3x3 conv needs with n_threads pool threads on a side x side grid. */
size_t sam_neck_scratch(int side, int n_threads);

// x [side*side, in_dim] -> embedding [256, side, side]; tmp, tmp2 [side*side, 256]; tmp2 may
// alias x (x is last read before tmp2 is written); scratch: sam_neck_scratch floats per thread.
void sam_neck_forward(const sam_neck *n, float *embedding, float *tmp, float *tmp2, float *scratch, const float *x,
                      int side, ms_pool *pool);

#endif
