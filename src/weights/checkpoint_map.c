/* Checkpoint name layouts other than the official one, mapped onto the official state_dict names
 * (image_encoder.*, prompt_encoder.*, mask_decoder.*), and the finiteness check of imported weights.
 *
 *  - micro-sam / MedicoSAM training checkpoints: keys carry the prefix "sam." (the TrainableSAM
 *    wrapper) and, when trained with DistributedDataParallel, "module." before it.
 *    ref: micro_sam/util.py _load_checkpoint (strips "sam."), export_custom_sam_model
 *    (prefix="sam."), the multi-GPU export example (strips "module.sam.")
 *    @computational-cell-analytics/micro-sam 3acdcd7
 *  - HuggingFace transformers SamModel (safetensors or pytorch_model.bin): vision_encoder.*,
 *    prompt_encoder.*, mask_decoder.*, shared_image_embedding.*. The table below is the inverse of
 *    the renaming in transformers/models/sam/convert_sam_to_hf.py (KEYS_TO_MODIFY_MAPPING,
 *    replace_keys) @huggingface/transformers 09cb93d. No tensor changes layout: HF keeps the fused
 *    qkv Linear [3C, C], pos_embed [1, 64, 64, C], rel_pos_h/w [2S-1, C/heads] and the neck's
 *    channel LayerNorms [256] exactly as SAM has them; the positional-encoding matrix is stored
 *    once as shared_image_embedding.positional_embedding (and possibly again, tied, as
 *    prompt_encoder.shared_embedding.positional_embedding). */
#include "weights/import.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NAME_MAX_LEN 512

static int starts(const char *s, const char *p)
{
    return !strncmp(s, p, strlen(p));
}

/* Replaces one exact dotted component sequence at the start of `rest` (after a prefix) */
typedef struct {
    const char *hf;   /* HF spelling of a name fragment that ends at a '.' or the name's end */
    const char *sam;  /* official spelling */
} frag_map;

/* HF suffix inside vision_encoder.layers.N. -> official suffix inside image_encoder.blocks.N. */
static const frag_map vit_block[] = {
    {"layer_norm1.", "norm1."},
    {"layer_norm2.", "norm2."},
    {"attn.", "attn."},
    {"mlp.", "mlp."},
};
/* vision_encoder.<x> -> image_encoder.<y> (outside the blocks) */
static const frag_map vit_other[] = {
    {"patch_embed.projection.", "patch_embed.proj."},
    {"pos_embed", "pos_embed"},
    {"neck.conv1.", "neck.0."},
    {"neck.layer_norm1.", "neck.1."},
    {"neck.conv2.", "neck.2."},
    {"neck.layer_norm2.", "neck.3."},
};
/* prompt_encoder.<x> */
static const frag_map prompt[] = {
    {"point_embed.", "point_embeddings."},
    {"not_a_point_embed.", "not_a_point_embed."},
    {"no_mask_embed.", "no_mask_embed."},
    {"mask_embed.conv1.", "mask_downscaling.0."},
    {"mask_embed.layer_norm1.", "mask_downscaling.1."},
    {"mask_embed.conv2.", "mask_downscaling.3."},
    {"mask_embed.layer_norm2.", "mask_downscaling.4."},
    {"mask_embed.conv3.", "mask_downscaling.6."},
};
/* mask_decoder.<x>, outside transformer.layers.N and the MLP heads */
static const frag_map decoder[] = {
    {"upscale_conv1.", "output_upscaling.0."},
    {"upscale_layer_norm.", "output_upscaling.1."},
    {"upscale_conv2.", "output_upscaling.3."},
    {"iou_token.", "iou_token."},
    {"mask_tokens.", "mask_tokens."},
    {"transformer.final_attn_token_to_image.", "transformer.final_attn_token_to_image."},
    {"transformer.layer_norm_final_attn.", "transformer.norm_final_attn."},
};
/* inside mask_decoder.transformer.layers.N. */
static const frag_map twoway_layer[] = {
    {"self_attn.", "self_attn."},
    {"cross_attn_token_to_image.", "cross_attn_token_to_image."},
    {"cross_attn_image_to_token.", "cross_attn_image_to_token."},
    {"mlp.", "mlp."},
    {"layer_norm1.", "norm1."},
    {"layer_norm2.", "norm2."},
    {"layer_norm3.", "norm3."},
    {"layer_norm4.", "norm4."},
};
/* inside the 3-layer MLP heads (iou_prediction_head., output_hypernetworks_mlps.N.) */
static const frag_map mlp3[] = {
    {"proj_in.", "layers.0."},
    {"layers.0.", "layers.1."},
    {"proj_out.", "layers.2."},
};

/* Applies the first matching row of `map` to `rest` and appends the result to out. */
static int apply(char *out, size_t cap, const char *prefix, const char *rest, const frag_map *map, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        size_t l = strlen(map[i].hf);
        int whole = map[i].hf[l - 1] != '.'; /* a full leaf name such as pos_embed */
        if (whole ? !strcmp(rest, map[i].hf) : !strncmp(rest, map[i].hf, l)) {
            int k = snprintf(out, cap, "%s%s%s", prefix, map[i].sam, whole ? "" : rest + l);
            return k > 0 && (size_t)k < cap;
        }
    }
    return 0;
}

/* "<digits>." at the start of s: returns the length including the dot, or 0 */
static size_t index_len(const char *s)
{
    size_t i = 0;
    while (s[i] >= '0' && s[i] <= '9' && i < 6) i++;
    return i > 0 && s[i] == '.' ? i + 1 : 0;
}

/* One HF name -> official name; 0 if the name is not part of the SAM layout. */
static int hf_to_sam(const char *hf, char *out, size_t cap)
{
    char pre[NAME_MAX_LEN];
    const char *r;
    size_t il;
    if (!strcmp(hf, "shared_image_embedding.positional_embedding") ||
        !strcmp(hf, "prompt_encoder.shared_embedding.positional_embedding")) {
        snprintf(out, cap, "prompt_encoder.pe_layer.positional_encoding_gaussian_matrix");
        return 1;
    }
    if (starts(hf, "vision_encoder.")) {
        r = hf + strlen("vision_encoder.");
        if (starts(r, "layers.") && (il = index_len(r + 7))) {
            snprintf(pre, sizeof pre, "image_encoder.blocks.%.*s", (int)il, r + 7);
            return apply(out, cap, pre, r + 7 + il, vit_block, sizeof vit_block / sizeof vit_block[0]);
        }
        return apply(out, cap, "image_encoder.", r, vit_other, sizeof vit_other / sizeof vit_other[0]);
    }
    if (starts(hf, "prompt_encoder.")) {
        r = hf + strlen("prompt_encoder.");
        return apply(out, cap, "prompt_encoder.", r, prompt, sizeof prompt / sizeof prompt[0]);
    }
    if (starts(hf, "mask_decoder.")) {
        r = hf + strlen("mask_decoder.");
        if (starts(r, "transformer.layers.") && (il = index_len(r + 19))) {
            snprintf(pre, sizeof pre, "mask_decoder.transformer.layers.%.*s", (int)il, r + 19);
            return apply(out, cap, pre, r + 19 + il, twoway_layer, sizeof twoway_layer / sizeof twoway_layer[0]);
        }
        if (starts(r, "iou_prediction_head."))
            return apply(out, cap, "mask_decoder.iou_prediction_head.", r + 20, mlp3, sizeof mlp3 / sizeof mlp3[0]);
        if (starts(r, "output_hypernetworks_mlps.") && (il = index_len(r + 26))) {
            snprintf(pre, sizeof pre, "mask_decoder.output_hypernetworks_mlps.%.*s", (int)il, r + 26);
            return apply(out, cap, pre, r + 26 + il, mlp3, sizeof mlp3 / sizeof mlp3[0]);
        }
        return apply(out, cap, "mask_decoder.", r, decoder, sizeof decoder / sizeof decoder[0]);
    }
    return 0;
}

static medseg_status rename_tensor(ms_tensor *t, const char *name, medseg_error *err)
{
    char *n = strdup(name);
    if (!n) return ms_error(err, MEDSEG_ERR_NOMEM, "out of memory renaming %s", t->name);
    free(t->name);
    t->name = n;
    return MEDSEG_OK;
}

static int same_tensor(const ms_tensor *a, const ms_tensor *b)
{
    if (a->dtype != b->dtype || a->ndim != b->ndim || a->nbytes != b->nbytes) return 0;
    for (int d = 0; d < a->ndim; d++)
        if (a->shape[d] != b->shape[d]) return 0;
    return !memcmp(a->data, b->data, a->nbytes);
}

static medseg_status map_hf(ms_tensors *ts, const char *src, medseg_error *err)
{
    /* map every name first (so an unknown name leaves the set untouched), then rename */
    char (*names)[NAME_MAX_LEN] = malloc((ts->n ? ts->n : 1) * sizeof *names);
    if (!names) return ms_error(err, MEDSEG_ERR_NOMEM, "%s: out of memory", src);
    medseg_status st = MEDSEG_OK;
    for (size_t i = 0; i < ts->n; i++) {
        if (!hf_to_sam(ts->t[i].name, names[i], NAME_MAX_LEN)) {
            st = ms_error(err, MEDSEG_ERR_MODEL,
                          "%s: HuggingFace SAM checkpoint with a tensor medseg cannot map: '%.200s' (expected "
                          "vision_encoder.*, prompt_encoder.*, mask_decoder.*, shared_image_embedding.*)",
                          src, ts->t[i].name);
            goto done;
        }
    }
    /* the tied copy of the positional-encoding matrix must equal the other one; it is dropped */
    for (size_t i = 0; i < ts->n; i++)
        for (size_t j = i + 1; j < ts->n; j++)
            if (!strcmp(names[i], names[j])) {
                if (!same_tensor(&ts->t[i], &ts->t[j])) {
                    st = ms_error(err, MEDSEG_ERR_MODEL, "%s: '%s' and '%s' both map to %s but differ", src,
                                  ts->t[i].name, ts->t[j].name, names[i]);
                    goto done;
                }
                names[j][0] = 0;
            }
    for (size_t i = 0; i < ts->n; i++)
        if (names[i][0] && (st = rename_tensor(&ts->t[i], names[i], err))) goto done;
    for (size_t i = ts->n; i-- > 0;)
        if (!names[i][0]) {
            char tmp[NAME_MAX_LEN];
            snprintf(tmp, sizeof tmp, "%s", ts->t[i].name);
            ms_tensors_remove(ts, tmp);
        }
done:
    free(names);
    return st;
}

medseg_status ms_checkpoint_map_names(ms_tensors *ts, const char *src, const char **layout, medseg_error *err)
{
    const char *lay = "official";
    int hf = 0, prefixed = 0;
    for (size_t i = 0; i < ts->n; i++) {
        const char *n = ts->t[i].name;
        if (starts(n, "vision_encoder.") || starts(n, "shared_image_embedding.")) hf = 1;
        if (starts(n, "sam.") || starts(n, "module.sam.") || starts(n, "module.")) prefixed = 1;
        if (strlen(n) >= NAME_MAX_LEN - 64)
            return ms_error(err, MEDSEG_ERR_FORMAT, "%s: tensor name over %d bytes", src, NAME_MAX_LEN - 64);
    }
    medseg_status st = MEDSEG_OK;
    if (prefixed) {
        /* micro-sam: strip "module." (DDP) then "sam." from every key that has them, as
           micro_sam/util.py _load_checkpoint does for "sam." */
        for (size_t i = 0; i < ts->n; i++) {
            const char *n = ts->t[i].name;
            if (starts(n, "module.")) n += 7;
            if (starts(n, "sam.")) n += 4;
            if (n != ts->t[i].name) {
                if (ms_tensors_find(ts, n))
                    return ms_error(err, MEDSEG_ERR_MODEL, "%s: '%s' and '%s' are both present", src, ts->t[i].name, n);
                char tmp[NAME_MAX_LEN];
                snprintf(tmp, sizeof tmp, "%s", n);
                if ((st = rename_tensor(&ts->t[i], tmp, err))) return st;
            }
        }
        lay = "micro-sam";
    }
    if (hf) {
        if ((st = map_hf(ts, src, err))) return st;
        lay = prefixed ? "huggingface-transformers (prefixed)" : "huggingface-transformers";
    }
    if (layout) *layout = lay;
    return MEDSEG_OK;
}

static float half_to_float(uint16_t h)
{
    uint32_t e = (h >> 10) & 0x1f;
    return e == 0x1f ? ((h & 0x3ff) ? NAN : INFINITY) : 0.0f; /* only finiteness matters here */
}

medseg_status ms_tensors_check_finite(const ms_tensors *ts, const char *src, medseg_error *err)
{
    for (size_t i = 0; i < ts->n; i++) {
        const ms_tensor *t = &ts->t[i];
        int64_t n = ms_tensor_numel(t);
        if ((size_t)n * ms_dtype_size(t->dtype) > t->nbytes) continue; /* not ours to judge here */
        for (int64_t k = 0; k < n; k++) {
            double v;
            switch (t->dtype) {
            case MS_F32: {
                float f;
                memcpy(&f, (const uint8_t *)t->data + 4 * k, 4);
                v = f;
                break;
            }
            case MS_F64: memcpy(&v, (const uint8_t *)t->data + 8 * k, 8); break;
            case MS_F16:
            case MS_BF16: {
                uint16_t h;
                memcpy(&h, (const uint8_t *)t->data + 2 * k, 2);
                v = t->dtype == MS_F16 ? half_to_float(h) : ((h & 0x7f80) == 0x7f80 ? ((h & 0x7f) ? NAN : INFINITY) : 0.0);
                break;
            }
            default: k = n; continue;
            }
            if (!isfinite(v)) {
                char shp[96];
                ms_format_shape(shp, sizeof shp, t->ndim, t->shape);
                return ms_error(err, MEDSEG_ERR_MODEL, "%s: tensor '%s' %s holds %s at flat index %lld (corrupt weights)",
                                src, t->name, shp, isnan(v) ? "NaN" : "Inf", (long long)k);
            }
        }
    }
    return MEDSEG_OK;
}
