/* SAM mask decoder: two-way transformer between the prompt tokens and the 64x64 image
 * embedding, transposed-convolution upscaling, hypernetwork MLPs and the IoU head. Produces the
 * logits of all 4 mask tokens. Bound to the official state_dict names mask_decoder.*.
 *
 * ref: segment_anything/modeling/mask_decoder.py, transformer.py, common.py @dca509f */
#ifndef MS_MASK_DECODER_H
#define MS_MASK_DECODER_H

#include "core/threadpool.h"
#include "weights/tensors.h"

#define MS_MD_DIM 256       /* transformer_dim */
#define MS_MD_HEADS 8       /* num_heads */
#define MS_MD_DEPTH 2       /* TwoWayTransformer depth */
#define MS_MD_MLP 2048      /* mlp_dim */
#define MS_MD_CROSS 128     /* internal dim of the cross attentions (downsample_rate 2) */
#define MS_MD_TOKENS 4      /* num_mask_tokens */
#define MS_MD_GRID 64       /* image embedding side */
#define MS_MD_LOWRES 256    /* 4 * MS_MD_GRID */
#define MS_MD_MAX_SPARSE 256 /* most sparse prompt tokens accepted */

/* transformer.py Attention: q/k/v [internal, 256] projections, out_proj [256, internal] */
typedef struct {
    const float *q_w, *q_b, *k_w, *k_b, *v_w, *v_b, *out_w, *out_b;
} ms_md_attention;

/* transformer.py TwoWayAttentionBlock */
typedef struct {
    ms_md_attention self_attn;            /* internal 256 */
    const float *norm1_w, *norm1_b;
    ms_md_attention cross_token_to_image; /* internal 128 */
    const float *norm2_w, *norm2_b;
    const float *lin1_w, *lin1_b;         /* mlp.lin1 [2048, 256] */
    const float *lin2_w, *lin2_b;         /* mlp.lin2 [256, 2048] */
    const float *norm3_w, *norm3_b;
    const float *norm4_w, *norm4_b;
    ms_md_attention cross_image_to_token; /* internal 128 */
} ms_md_block;

typedef struct {
    ms_md_block layers[MS_MD_DEPTH];
    ms_md_attention final_attn;           /* final_attn_token_to_image, internal 128 */
    const float *norm_final_w, *norm_final_b;
    const float *iou_token;               /* [1, 256] */
    const float *mask_tokens;             /* [4, 256] */
    const float *up0_w, *up0_b;           /* output_upscaling.0 ConvTranspose2d(256, 64, k2, s2) [256,64,2,2] */
    const float *up1_w, *up1_b;           /* output_upscaling.1 LayerNorm2d(64) */
    const float *up3_w, *up3_b;           /* output_upscaling.3 ConvTranspose2d(64, 32, k2, s2) [64,32,2,2] */
    const float *hyper_w[MS_MD_TOKENS][3], *hyper_b[MS_MD_TOKENS][3]; /* output_hypernetworks_mlps.i.layers.j */
    const float *iou_w[3], *iou_b[3];     /* iou_prediction_head.layers.j */
} ms_mask_decoder;

/* Binds mask_decoder.* (every name and shape checked against the table in mask_decoder.c). The
 * tensor set must outlive the decoder. */
medseg_status ms_mask_decoder_bind(ms_mask_decoder *md, const ms_tensors *ts, medseg_error *err);
void ms_mask_decoder_release(ms_mask_decoder *md);

/* embedding, image_pe, dense [256, 64, 64] (NCHW, N = 1), sparse [n_tokens, 256]
 * -> low_res [4, 256, 256] logits of every mask token, iou [4].
 * Thread-safe: all scratch is allocated per call (one arena). pool may be NULL. The result does not
 * depend on which pool thread ran which part (a repeated call gives the same bits). */
medseg_status mask_decoder_forward(const ms_mask_decoder *md, ms_pool *pool, const float *embedding,
                                   const float *image_pe, const float *sparse, int n_tokens, const float *dense,
                                   float *low_res, float *iou, medseg_error *err);

/* Per-image precomputation for prompts without a mask input. With dense = no_mask_embed
 * broadcast, the first block's image side does not depend on the prompt: its token->image keys
 * and values and its image->token queries are projected once per image (about 0.8 GFLOP), and
 * the output upscaling's first transposed conv of src, carried through both norm4 weights, too
 * (0.5 GFLOP more; it replaces that conv's 0.5 GFLOP in every later decode by two rank-8T
 * updates). About 18.5 MB per image. */
typedef struct {
    float *src;    /* [256, HW] embedding + dense */
    float *src_pe; /* [256, HW] src + image_pe */
    float *k0;     /* [128, HW] layers.0.cross_attn_token_to_image k_proj(src_pe) without its bias */
    float *v0;     /* [128, HW] layers.0.cross_attn_token_to_image v_proj(src) without its bias */
    float *q0;     /* [128, HW] layers.0.cross_attn_image_to_token q_proj(src_pe) with its bias */
    /* The first transposed conv of the output upscaling, carried through both norm4 LayerNorms
     * (see mask_decoder.c, "upscaling folded into the blocks"): U = output_upscaling.0.weight as
     * [256 in, 256 (co, dy, dx)], U1 = diag(layers.1.norm4.weight) U, U2 = diag(layers.0.norm4.weight) U1. */
    float *up_src; /* [256, HW] U2^T src */
    float *u1, *u2; /* [256, 256] */
    float *s1, *s2; /* [256] column sums of U1, U2 */
    float *c0, *c1; /* [256] U1^T layers.0.norm4.bias; U^T layers.1.norm4.bias + output_upscaling.0.bias */
} ms_md_image_cache;

/* embedding, image_pe, dense [256, 64, 64] -> *cache (owned; free with ms_md_image_cache_free).
 * Valid for every prompt whose dense embedding equals this dense (no mask input). */
medseg_status mask_decoder_prepare_image(const ms_mask_decoder *md, ms_pool *pool, const float *embedding,
                                         const float *image_pe, const float *dense, ms_md_image_cache *cache,
                                         medseg_error *err);
void ms_md_image_cache_free(ms_md_image_cache *cache);

/* mask_decoder_forward for a prepared image: same outputs (up to float rounding), less work.
 * image_pe is still needed for the later blocks. Thread-safe; the cache is only read. */
medseg_status mask_decoder_forward_cached(const ms_mask_decoder *md, ms_pool *pool, const ms_md_image_cache *cache,
                                          const float *image_pe, const float *sparse, int n_tokens, float *low_res,
                                          float *iou, medseg_error *err);

#define MS_MD_ALL_TOKENS 0xFu /* token_mask: every mask token */

/* Either of the two above, writing the low-res logits only of the mask tokens whose bit is set in
 * token_mask (bit m = mask token m; MS_MD_ALL_TOKENS = all). The other [256, 256] planes of
 * low_res are not written; iou is always complete, and the written planes equal those of the full
 * call. With cache != NULL embedding and dense are not read (prompt without mask input); with
 * cache == NULL they are required. Saves the per-token part of the output upscaling (a little). */
medseg_status mask_decoder_forward_tokens(const ms_mask_decoder *md, ms_pool *pool, const ms_md_image_cache *cache,
                                          const float *embedding, const float *image_pe, const float *sparse,
                                          int n_tokens, const float *dense, unsigned token_mask, float *low_res,
                                          float *iou, medseg_error *err);

#endif
