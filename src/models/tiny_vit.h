/* TinyViT image encoder as used by MobileSAM (vit_t) and LiteMedSAM (1x1 stride-1 patch embedding,
 * 256 input: bowang-lab/MedSAM@b0fab47 branch LiteMedSAM tiny_vit_sam.py PatchEmbed), channel-last ([H*W, C]) throughout.
 * Weights are bound by official state_dict names (image_encoder.*); Conv2d_BN pairs are folded
 * into one convolution with bias at bind time (in float64, stored float32); depthwise kernels
 * are reordered to [3, 3, C] and dense 3x3 kernels to [OC, 3, 3, IC].
 *
 * ref: mobile_sam/modeling/tiny_vit_sam.py @34bbbfd (TinyViT, Conv2d_BN, PatchEmbed, MBConv,
 *      PatchMerging, ConvLayer, BasicLayer, TinyViTBlock, Attention, Mlp, LayerNorm2d) */
#ifndef MS_TINY_VIT_H
#define MS_TINY_VIT_H

#include "core/threadpool.h"
#include "models/neck.h"
#include "weights/tensors.h"

#define TV_MAX_LAYERS 4
#define TV_MAX_DEPTH 16
#define TV_OUT_HW 64 /* TinyViT.forward_features views the last stage as 64 x 64 */

/* Conv2d_BN after folding: w in the layout the kernel wants, b [oc]. Owned. */
typedef struct {
    float *w, *b;
    int oc, ic, k, stride, groups;
} tv_conv;

/* MBConv: conv1 1x1 (C -> 4C), GELU, conv2 dw 3x3, GELU, conv3 1x1 (4C -> C), + x, GELU */
typedef struct {
    tv_conv conv1, conv2, conv3;
} tv_mbconv;

/* PatchMerging: conv1 1x1 (C -> D), GELU, conv2 dw 3x3 stride s, GELU, conv3 1x1 (D -> D) */
typedef struct {
    tv_conv conv1, conv2, conv3;
} tv_merge;

/* TinyViTBlock: windowed Attention (own LayerNorm, qkv, per-head softmax with relative bias,
 * proj) + residual, local_conv dw 3x3 (Conv2d_BN), Mlp (own LayerNorm, fc1, GELU, fc2) +
 * residual. */
typedef struct {
    const float *norm_w, *norm_b;  /* attn.norm [C] */
    const float *qkv_w, *qkv_b;    /* attn.qkv [3C, C], [3C] (per head: q, k, v of key_dim) */
    const float *proj_w, *proj_b;  /* attn.proj [C, C], [C] */
    const float *biases;           /* attn.attention_biases [heads, ws*ws] */
    float *bias_table;             /* owned: biases[:, attention_bias_idxs] [heads, N, N], N = ws*ws */
    float *pad_qkv;                /* owned: qkv of a zero padding token = qkv_w @ norm_b + qkv_b [3C] */
    tv_conv local_conv;            /* dw 3x3 */
    const float *mlp_norm_w, *mlp_norm_b;
    const float *fc1_w, *fc1_b;    /* [hidden, C] */
    const float *fc2_w, *fc2_b;    /* [C, hidden] */
} tv_block;

typedef struct {
    int dim, depth, heads, window, hidden; /* hidden: mlp (or MBConv) hidden width */
    int res;                              /* input side of this stage */
    int out_dim, out_res;                 /* after the downsample (= dim, res without one) */
    int has_downsample;
    tv_mbconv mb[TV_MAX_DEPTH];           /* layer 0 */
    tv_block blk[TV_MAX_DEPTH];           /* layers 1.. */
    tv_merge down;
} tv_layer;

typedef struct {
    int img_size, in_chans;
    int n_layers;
    int pe_k;         /* patch_embed kernel: 3 (MobileSAM, stride 2) or 1 (LiteMedSAM, stride 1) */
    int pe_stride;    /* 2 or 1: each patch_embed conv divides the side by this */
    tv_conv pe0, pe1; /* patch_embed.seq.0 (3 -> C0/2), seq.2 (C0/2 -> C0): 3x3 s2 or 1x1 s1 */
    tv_layer layers[TV_MAX_LAYERS];
    sam_neck neck;                      /* neck.0..3 (neck.h) */
} tiny_vit;

/* Hyper-parameters read from the weight shapes (see tiny_vit.c for how). */
typedef struct {
    int n_layers;
    int embed_dims[TV_MAX_LAYERS], depths[TV_MAX_LAYERS], num_heads[TV_MAX_LAYERS], window_sizes[TV_MAX_LAYERS];
    int mlp_ratio, mbconv_ratio;
    int pe_k; /* patch_embed conv kernel side: 3 = MobileSAM (3x3 stride 2, img 1024), 1 = LiteMedSAM
                 (1x1 stride 1, img 256; bowang-lab/MedSAM@b0fab47 LiteMedSAM tiny_vit_sam.py PatchEmbed) */
} tiny_vit_hparams;

/* Reads the hyper-parameters from image_encoder.* names and shapes; fails with a message naming
 * the first thing that does not fit. */
medseg_status tiny_vit_detect(const ms_tensors *ts, tiny_vit_hparams *hp, medseg_error *err);

/* Binds and folds (tensors must outlive the model). On failure *m is released. */
medseg_status tiny_vit_bind(tiny_vit *m, const tiny_vit_hparams *hp, int img_size, const ms_tensors *ts,
                            medseg_error *err);
void tiny_vit_release(tiny_vit *m);

typedef void (*tv_probe_fn)(void *user, const char *stage, const float *data, int ndim, const int64_t *shape);

/* Scratch for one forward pass, planned once from the model. */
typedef struct tv_state tv_state;
tv_state *tiny_vit_state_create(const tiny_vit *m, int n_threads, medseg_error *err);
void tiny_vit_state_free(tv_state *s);
int tiny_vit_state_threads(const tv_state *s);
/* 1 if s was planned for model m and at least n_threads threads. */
int tiny_vit_state_fits(const tv_state *s, const tiny_vit *m, int n_threads);

/* Per-stage wall time of the last forward (ms): patch_embed, layers.0 .. layers.3, neck. */
typedef struct {
    double patch_embed, layers[TV_MAX_LAYERS], neck, total;
} tv_timing;

/* input [3, S, S] (CHW) -> embedding [256, 64, 64] (CHW). The state must have been created for
 * at least ms_pool_size(pool) threads. Probes (if fn) get "patch_embed" as [1, C0, S/4, S/4]
 * (S/1 for the 1x1 LiteMedSAM patch embedding)
 * (NCHW) and "layers.i" as [1, L, C] (BLC), after the stage's downsample, like the PyTorch
 * module outputs. timing may be NULL. */
medseg_status tiny_vit_forward(const tiny_vit *m, tv_state *s, ms_pool *pool, const float *input, float *embedding,
                               tv_probe_fn probe, void *probe_user, tv_timing *timing, medseg_error *err);

#endif
