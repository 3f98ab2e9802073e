/* SAM-family model: image encoder (TinyViT for MobileSAM; ViT-B/L/H for SAM, MedSAM, MedicoSAM),
 * prompt encoder and mask decoder, bound to the official state_dict names of a tensor set. The architecture is
 * recognised from names and shapes (ms_sam_detect), never from a file name.
 *
 * ref: segment_anything/modeling/sam.py @dca509f, mobile_sam/modeling/tiny_vit_sam.py @34bbbfd,
 *      LiteMedSAM: bowang-lab/MedSAM@b0fab47 (branch LiteMedSAM) tiny_vit_sam.py, CVPR24_LiteMedSAM_infer.py */
#ifndef MS_SAM_H
#define MS_SAM_H

#include "core/threadpool.h"
#include "weights/tensors.h"

#define MS_EMBED_DIM 256     /* prompt/decoder transformer width */
#define MS_EMBED_HW 64       /* image embedding grid side */
#define MS_NUM_MASK_TOKENS 4 /* 1 single-mask token + 3 multimask tokens */

typedef enum { MS_ARCH_UNKNOWN = 0, MS_ARCH_TINY_VIT, MS_ARCH_VIT } ms_arch;

typedef struct {
    ms_arch arch;
    char arch_name[32];   /* "tiny_vit_sam", "tiny_vit_256_sam" (LiteMedSAM), "vit_b_sam", "vit_l_sam",
                             "vit_h_sam", "vit_sam" */
    char preset[16];      /* "sam", "medsam", "litemedsam": medseg.preset metadata, else by architecture */
    int img_size;         /* 1024; 256 for LiteMedSAM */
    /* TinyViT hyper-parameters, read from the weight shapes */
    int n_layers;         /* 4 */
    int embed_dims[4];    /* 64,128,160,320 */
    int depths[4];        /* 2,2,6,2 */
    int num_heads[4];     /* 0,4,5,10: layer 0 is convolutional (MBConv), no attention */
    int window_sizes[4];  /* 0,7,14,7: read from attention_biases columns (ws^2) */
    float mlp_ratio;      /* 4 */
    /* ViT (SAM vit_b / vit_l / vit_h) hyper-parameters, read from the weight shapes */
    int vit_embed_dim;    /* pos_embed [1, G, G, C]: 768 / 1024 / 1280 */
    int vit_depth;        /* blocks.N count: 12 / 24 / 32 */
    int vit_heads;        /* C / rel_pos_h columns: 12 / 16 / 16 */
    int vit_window;       /* rel_pos_h rows = 2 * window - 1 in windowed blocks: 14 */
    int vit_patch;        /* patch_embed.proj kernel: 16 */
    int vit_n_global;     /* blocks whose rel_pos_h has 2 * 64 - 1 rows: 4 */
    int vit_global_idx[8];/* 2,5,8,11 / 5,11,17,23 / 7,15,23,31 (first 8) */
    int64_t n_params;
} ms_sam_config;

typedef struct ms_sam ms_sam;

/* Architecture name of LiteMedSAM (TinyViT with a 1x1 stride-1 patch embedding, 256 input). */
#define MS_ARCH_NAME_LITEMEDSAM "tiny_vit_256_sam"

/* Whether a preprocessing preset ("sam", "medsam", "litemedsam") fits a detected architecture:
 * TinyViT 1024 (MobileSAM) takes "sam"; ViT takes "sam" (SAM, MedicoSAM) or "medsam" (MedSAM);
 * LiteMedSAM's TinyViT 256 takes "litemedsam". Anything else -> MEDSEG_ERR_MODEL naming both. */
medseg_status ms_sam_preset_check(const ms_sam_config *cfg, const char *preset, medseg_error *err);

/* Overrides the preset of a created model (after ms_sam_preset_check). The normal route is the
 * `medseg.preset` metadata key that import stamps into the safetensors file (read by ms_sam_detect). */
medseg_status ms_sam_set_preset(ms_sam *m, const char *preset, medseg_error *err);

/* Recognises the architecture from tensor names and shapes; on failure the message lists what
 * was found. */
medseg_status ms_sam_detect(const ms_tensors *ts, ms_sam_config *cfg, medseg_error *err);

/* Binds the tensors (which must outlive the model), checks every shape, folds BatchNorm into
 * the convolutions and precomputes constant tables (attention bias tables, the dense positional
 * encoding of the 64x64 grid). */
ms_sam *ms_sam_create(const ms_tensors *ts, medseg_error *err);
void ms_sam_free(ms_sam *m);
const ms_sam_config *ms_sam_get_config(const ms_sam *m);

/* Image encoder. input [3, S, S] (S = img_size, normalised and padded) -> embedding
 * [256, 64, 64]. Scratch memory is allocated on first use and kept in *state (free with
 * ms_sam_encoder_state_free), so repeated calls do not allocate. */
typedef struct ms_encoder_state ms_encoder_state;
medseg_status ms_sam_encode(const ms_sam *m, ms_encoder_state **state, ms_pool *pool,
                            const float *input, float *embedding, medseg_error *err);
void ms_sam_encoder_state_free(ms_encoder_state *s);

/* Debug probe: if set, the encoder calls it after named stages ("patch_embed", "layers.0", ...)
 * with the stage output in PyTorch layout (documented per stage in tiny_vit.c). */
typedef void (*ms_probe_fn)(void *user, const char *stage, const float *data, int ndim, const int64_t *shape);
void ms_sam_set_probe(ms_sam *m, ms_probe_fn fn, void *user);

/* Prompt encoder. coords: n points already in input-frame pixels (x,y of the resized image, as
 * SamPredictor.transform.apply_coords gives; 0..256 for LiteMedSAM, whose prompt encoder
 * normalises by 256), labels 1/0 (-1 = padding point); box: NULL or
 * x0,y0,x1,y1 in input-frame pixels. Adds the padding point itself when there is no box
 * (SamPredictor/PromptEncoder rule). sparse_out: [T, 256] with T <= n + 2 (returned in *n_tokens).
 * mask_input: NULL or [256, 256] logits; dense_out: [256, 64, 64] or NULL (sparse only). */
medseg_status ms_sam_prompt_encode(const ms_sam *m, const float *coords, const int *labels, int n,
                                   const float *box, const float *mask_input, float *sparse_out,
                                   int *n_tokens, float *dense_out, medseg_error *err);

/* Per-image decoder work that no prompt without a mask input changes (mask_decoder.h,
 * ms_md_image_cache): computed once per embedding, after the encoder. */
typedef struct ms_sam_image_cache ms_sam_image_cache;
medseg_status ms_sam_prepare_image(const ms_sam *m, ms_pool *pool, const float *embedding, ms_sam_image_cache **cache,
                                   medseg_error *err);
void ms_sam_image_cache_free(ms_sam_image_cache *cache);

/* Mask decoder. embedding [256,64,64], sparse [T,256], dense [256,64,64] -> low_res [4, 256, 256]
 * logits, of which only the planes of the mask tokens in token_mask are written (bit m = token m;
 * 0xF = all), and iou [4] (always all four). cache: NULL, or the embedding's prepared cache, which
 * is used only when the prompt has no mask input (has_mask_input == 0). Thread-safe (allocates its
 * own scratch); pool may be NULL. */
medseg_status ms_sam_decode(const ms_sam *m, ms_pool *pool, const float *embedding, const ms_sam_image_cache *cache,
                            const float *sparse, int n_tokens, const float *dense, int has_mask_input,
                            unsigned token_mask, float *low_res, float *iou, medseg_error *err);

#endif
