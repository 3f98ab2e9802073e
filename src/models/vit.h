/* SAM ViT image encoder (ImageEncoderViT: SAM vit_b / vit_l / vit_h, MedSAM, MedicoSAM),
 * channel-last ([H*W, C]) throughout. Weights are bound by official state_dict names
 * (image_encoder.patch_embed.proj, pos_embed, blocks.N.{norm1,attn.qkv,attn.proj,attn.rel_pos_h,
 * attn.rel_pos_w,norm2,mlp.lin1,mlp.lin2}, neck.0..3) straight from the tensor set (no copies),
 * except the small relative-position tables (resized once, get_rel_pos) and the neck 3x3 kernel
 * (reordered to [OC, 3, 3, IC]).
 *
 * ref: segment_anything/modeling/image_encoder.py @dca509f (ImageEncoderViT, Block, Attention,
 *      get_rel_pos, add_decomposed_rel_pos, window_partition, window_unpartition, PatchEmbed),
 *      segment_anything/modeling/common.py (MLPBlock, LayerNorm2d), build_sam.py (_build_sam) */
#ifndef MS_VIT_H
#define MS_VIT_H

#include "core/threadpool.h"
#include "models/neck.h"
#include "weights/tensors.h"

#define VIT_MAX_DEPTH 64

/* Hyper-parameters read from the weight shapes (see vit_detect). */
typedef struct {
    int embed_dim;  /* pos_embed [1, G, G, C]: C (768 / 1024 / 1280) */
    int depth;      /* number of blocks.N (12 / 24 / 32) */
    int heads;      /* C / head_dim, head_dim = rel_pos_h columns (12 / 16 / 16) */
    int mlp_dim;    /* mlp.lin1 rows (4C) */
    int patch;      /* patch_embed.proj kernel side (16) */
    int in_chans;   /* patch_embed.proj input channels (3) */
    int grid;       /* G, tokens per side (64) */
    int img_size;   /* G * patch (1024) */
    int window;     /* window side of the non-global blocks: rel_pos_h rows = 2 * window - 1 (14) */
    int n_global;   /* blocks with global attention: rel_pos_h rows = 2 * G - 1 */
    int global_idx[VIT_MAX_DEPTH];
} vit_hparams;

/* One Block. The attention grid side is `size` (window, or grid for a global block); rel_h /
 * rel_w are get_rel_pos(size, size, rel_pos_*) as [2*size - 1, head_dim] tables: relative
 * offset dy = qy - ky is row dy + size - 1. */
typedef struct {
    int window;                       /* 0: global attention */
    int size;                         /* attention grid side */
    const float *norm1_w, *norm1_b;   /* [C] */
    const float *qkv_w, *qkv_b;       /* [3C, C], [3C]: q, k, v each C wide, heads side by side */
    const float *proj_w, *proj_b;     /* [C, C], [C] */
    float *rel_h, *rel_w;             /* owned: [2*size - 1, hd] */
    const float *norm2_w, *norm2_b;   /* [C] */
    const float *lin1_w, *lin1_b;     /* [mlp, C], [mlp] */
    const float *lin2_w, *lin2_b;     /* [C, mlp], [C] */
} vit_block;

/* bf16 copies of one block's matrix weights (same layouts as the f32 ones). */
typedef struct {
    const uint16_t *qkv, *proj, *lin1, *lin2;
} vit_block16;

typedef struct {
    vit_hparams hp;
    const float *pe_w, *pe_b;          /* patch_embed.proj [C, in, P, P] used as [C, in*P*P], [C] */
    const float *pos_embed;            /* [G*G, C] */
    vit_block blk[VIT_MAX_DEPTH];
    sam_neck neck;                      /* neck.0..3 (neck.h) */
    /* bf16 precision (kernels.h, ms_precision_get): the block weights converted once, on the first
     * bf16 forward (vit_prepare_bf16); NULL until then. */
    uint16_t *w16;
    vit_block16 blk16[VIT_MAX_DEPTH];
} vit_model;

/* Reads the hyper-parameters from image_encoder.* names and shapes (pos_embed, patch_embed.proj,
 * blocks.N.attn.rel_pos_h, mlp.lin1); fails with a message naming the first thing that does not
 * fit. Does not look at the data. */
medseg_status vit_detect(const ms_tensors *ts, vit_hparams *hp, medseg_error *err);

/* "vit_b_sam" / "vit_l_sam" / "vit_h_sam" for the official (embed_dim, depth, heads, global
 * blocks) of build_sam.py, else "vit_sam" (same code, other sizes). */
const char *vit_arch_name(const vit_hparams *hp);

/* Binds (tensors must outlive the model), checks every shape. On failure *m is released. */
medseg_status vit_bind(vit_model *m, const vit_hparams *hp, const ms_tensors *ts, medseg_error *err);
void vit_release(vit_model *m);

// rel_pos [L, C] -> out [q_size, k_size, C]: rel_pos resized to 2*max(q,k)-1 rows by linear
// interpolation (align_corners=False) when L differs, then gathered at the scaled offsets.
// ref: image_encoder.py get_rel_pos
void vit_get_rel_pos(float *out, const float *rel_pos, int L, int C, int q_size, int k_size);

/* Converts the block weights to bf16 once (idempotent, thread-safe: a model shared by sessions
 * is prepared under a lock; the copies are freed by vit_release). vit_forward calls it itself
 * when the precision is bf16. */
medseg_status vit_prepare_bf16(const vit_model *m, medseg_error *err);

/* Multiply-add FLOPs (2 per multiply-add) of one forward pass: every matrix product (patch
 * embedding, qkv, attention scores and values over the keys actually used, the decomposed
 * rel-pos products, proj, MLP, neck convolutions); element-wise work not counted. */
double vit_flops(const vit_hparams *hp);

typedef void (*vit_probe_fn)(void *user, const char *stage, const float *data, int ndim, const int64_t *shape);

/* Scratch for one forward pass, planned once from the model. */
typedef struct vit_state vit_state;
vit_state *vit_state_create(const vit_model *m, int n_threads, medseg_error *err);
void vit_state_free(vit_state *s);
/* 1 if s was planned for model m and at least n_threads threads. */
int vit_state_fits(const vit_state *s, const vit_model *m, int n_threads);

/* Wall time of the last forward (ms): per stage and, summed over the blocks, per part of a block
 * (norm1 + qkv, attention core of windowed / global blocks, proj + residual, norm2 + MLP). */
typedef struct {
    double patch_embed, blocks[VIT_MAX_DEPTH], neck, total;
    double qkv, attn_window, attn_global, proj, mlp;
} vit_timing;

/* input [in_chans, S, S] (CHW, S = img_size) -> embedding [256, G, G] (CHW). In bf16 precision
 * (ms_precision_get() at the call) qkv, proj, the MLP, the patch embedding, the neck and the
 * global attention's two products run in bf16 with f32 accumulation; layer norms, softmax, GELU,
 * the rel-pos bias and the windowed attention stay f32. Probes (if fn):
 * "patch_embed" (before + pos_embed) and "blocks.i" as [1, G, G, C] (BHWC), like the PyTorch
 * module outputs. timing may be NULL. */
medseg_status vit_forward(const vit_model *m, vit_state *s, ms_pool *pool, const float *input, float *embedding,
                          vit_probe_fn probe, void *probe_user, vit_timing *timing, medseg_error *err);

#endif
