/* SAM prompt encoder: points, box corners and an optional low-resolution mask prompt become the
 * sparse tokens [T, 256] and the dense embedding [256, 64, 64] that the mask decoder consumes.
 * Bound to the official state_dict names prompt_encoder.*.
 *
 * ref: segment_anything/modeling/prompt_encoder.py @dca509f (PromptEncoder,
 *      PositionEmbeddingRandom) */
#ifndef MS_PROMPT_ENCODER_H
#define MS_PROMPT_ENCODER_H

#include "weights/tensors.h"

#define MS_PE_DIM 256        /* embed_dim */
#define MS_PE_GRID 64        /* image_embedding_size */
#define MS_PE_INPUT 1024     /* input_image_size */
#define MS_PE_MASK 256       /* mask_input_size = 4 * grid */
#define MS_PE_MASK_CHANS 16  /* mask_in_chans */

typedef struct {
    /* weights: views into the tensor set (which must outlive the encoder) */
    const float *gauss;              /* pe_layer.positional_encoding_gaussian_matrix [2, 128] */
    const float *point_embed[4];     /* point_embeddings.{0..3}.weight [1, 256]: neg, pos, box TL, box BR */
    const float *not_a_point;        /* not_a_point_embed.weight [1, 256] */
    const float *no_mask;            /* no_mask_embed.weight [1, 256] */
    const float *down0_w, *down0_b;  /* mask_downscaling.0: Conv2d(1, 4, k2, s2) [4,1,2,2], [4] */
    const float *down1_w, *down1_b;  /* mask_downscaling.1: LayerNorm2d(4) [4], [4] */
    const float *down3_w, *down3_b;  /* mask_downscaling.3: Conv2d(4, 16, k2, s2) [16,4,2,2], [16] */
    const float *down4_w, *down4_b;  /* mask_downscaling.4: LayerNorm2d(16) [16], [16] */
    const float *down6_w, *down6_b;  /* mask_downscaling.6: Conv2d(16, 256, k1) [256,16,1,1], [256] */
    float *dense_pe;                 /* owned: get_dense_pe() [256, 64, 64] */
} ms_prompt_encoder;

/* Binds prompt_encoder.* (shapes checked against the table in prompt_encoder.c) and precomputes
 * the dense positional encoding. On failure *pe is left released. */
medseg_status ms_prompt_encoder_bind(ms_prompt_encoder *pe, const ms_tensors *ts, medseg_error *err);
void ms_prompt_encoder_release(ms_prompt_encoder *pe);

/* coords [n, 2] (x, y in 1024-input pixels, already transformed), labels [n] in {1, 0, -1},
 * box NULL or [4] x0,y0,x1,y1, mask_input NULL or [256, 256] logits.
 * -> sparse_out [T, 256] (T = *n_tokens <= n + 2: points, then the padding point when there are
 *    points and no box, then the two box corners), dense_out [256, 64, 64], or NULL when only the sparse tokens
 *    are wanted. */
medseg_status prompt_encoder_forward(const ms_prompt_encoder *pe, const float *coords, const int *labels, int n,
                                     const float *box, const float *mask_input, float *sparse_out, int *n_tokens,
                                     float *dense_out, medseg_error *err);

/* [256, 64, 64]: the positional encoding of the image-embedding grid. */
const float *prompt_encoder_dense_pe(const ms_prompt_encoder *pe);


#endif
