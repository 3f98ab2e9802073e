/* SAM-family model: architecture detection, binding of the three modules, and the entry points
 * of sam.h. Image encoders: TinyViT (MobileSAM vit_t, tiny_vit.c) and ViT-B/L/H (vit.c); another
 * encoder is a new ms_arch value with its own detect/bind/forward.
 *
 * ref: segment_anything/modeling/sam.py @dca509f, mobile_sam/build_sam.py @34bbbfd */
#include "models/sam.h"

#include "models/mask_decoder.h"
#include "models/prompt_encoder.h"
#include "models/tiny_vit.h"
#include "models/vit.h"

#include <stdlib.h>
#include <string.h>

#define SAM_IMG_SIZE 1024 /* build_sam_vit_t: image_size; not recoverable from the weights */
/* LiteMedSAM's TinyViT(img_size=256) and PromptEncoder(input_image_size=(256, 256)):
 * bowang-lab/MedSAM@b0fab47 (branch LiteMedSAM) CVPR24_LiteMedSAM_infer.py, module level */
#define LITEMEDSAM_IMG_SIZE 256

struct ms_sam {
    ms_sam_config cfg;
    tiny_vit enc;
    vit_model vit;
    ms_prompt_encoder pe;
    ms_mask_decoder md;
    ms_probe_fn probe;
    void *probe_user;
};

struct ms_encoder_state {
    tv_state *tv;
    vit_state *vit;
};

/* Lists the top-level name prefixes with tensor counts, for the message of an unrecognised
 * layout: the first name component ("image_encoder.* (298)"), or the first two when every name
 * shares its first component (a wrapper such as "model." or "module."). */
static void describe_layout(const ms_tensors *ts, char *out, size_t len)
{
    enum { MAXP = 10 };
    char pre[MAXP][64];
    int cnt[MAXP], np = 0, other = 0, depth = 1;
    for (int pass = 0; pass < 2; pass++) {
        np = other = 0;
        for (size_t i = 0; i < ts->n; i++) {
            const char *nm = ts->t[i].name ? ts->t[i].name : "";
            const char *d = strchr(nm, '.');
            if (d && depth == 2) d = strchr(d + 1, '.');
            size_t l = d ? (size_t)(d - nm) : strlen(nm);
            if (l > 63) l = 63;
            int k;
            for (k = 0; k < np; k++)
                if (strlen(pre[k]) == l && !strncmp(pre[k], nm, l)) break;
            if (k == np) {
                if (np == MAXP) {
                    other++;
                    continue;
                }
                memcpy(pre[np], nm, l);
                pre[np][l] = 0;
                cnt[np++] = 0;
            }
            cnt[k]++;
        }
        if (np != 1 || depth == 2) break;
        depth = 2;
    }
    size_t o = (size_t)snprintf(out, len, "%zu tensors:", ts->n);
    for (int k = 0; k < np && o < len; k++) o += (size_t)snprintf(out + o, len - o, " %s.* (%d)", pre[k], cnt[k]);
    if (other && o < len) snprintf(out + o, len - o, " and %d more", other);
}

/* Tensors whose absence the unknown-layout message names, per image encoder family. */
static const char *const tiny_vit_keys[] = {"image_encoder.patch_embed.seq.0.c.weight",
                                            "image_encoder.layers.0.blocks.0.conv1.c.weight", NULL};
static const char *const vit_keys[] = {"image_encoder.pos_embed", "image_encoder.patch_embed.proj.weight",
                                       "image_encoder.blocks.0.attn.qkv.weight", NULL};
static const char *const head_keys[] = {"prompt_encoder.pe_layer.positional_encoding_gaussian_matrix",
                                        "mask_decoder.iou_token.weight", NULL};

/* Comma-separated list of the keys absent from ts ("none" when all are present). */
static void list_missing(const ms_tensors *ts, const char *const *keys, char *out, size_t len)
{
    size_t o = 0;
    out[0] = 0;
    for (int i = 0; keys[i] && o < len; i++)
        if (!ms_tensors_find(ts, keys[i])) o += (size_t)snprintf(out + o, len - o, "%s%s", o ? ", " : "", keys[i]);
    if (!out[0]) snprintf(out, len, "none");
}

medseg_status ms_sam_preset_check(const ms_sam_config *cfg, const char *preset, medseg_error *err)
{
    if (!preset || (strcmp(preset, "sam") && strcmp(preset, "medsam") && strcmp(preset, "litemedsam")))
        return ms_error(err, MEDSEG_ERR_MODEL, "model: unknown preprocessing preset '%s' (known: sam, medsam, "
                        "litemedsam)", preset ? preset : "(null)");
    int lite = cfg->arch == MS_ARCH_TINY_VIT && cfg->img_size == LITEMEDSAM_IMG_SIZE;
    int ok = lite ? !strcmp(preset, "litemedsam")
                  : cfg->arch == MS_ARCH_VIT ? (!strcmp(preset, "sam") || !strcmp(preset, "medsam"))
                                             : !strcmp(preset, "sam");
    if (!ok)
        return ms_error(err, MEDSEG_ERR_MODEL, "model: preprocessing preset '%s' does not fit architecture %s "
                        "(it takes %s)", preset, cfg->arch_name,
                        lite ? "litemedsam" : cfg->arch == MS_ARCH_VIT ? "sam or medsam" : "sam");
    return MEDSEG_OK;
}

medseg_status ms_sam_set_preset(ms_sam *m, const char *preset, medseg_error *err)
{
    if (!m) return ms_error(err, MEDSEG_ERR_ARG, "model: NULL model");
    medseg_status st = ms_sam_preset_check(&m->cfg, preset, err);
    if (st == MEDSEG_OK) snprintf(m->cfg.preset, sizeof m->cfg.preset, "%s", preset);
    return st;
}

medseg_status ms_sam_detect(const ms_tensors *ts, ms_sam_config *cfg, medseg_error *err)
{
    memset(cfg, 0, sizeof *cfg);
    if (!ts) return ms_error(err, MEDSEG_ERR_ARG, "model: no tensors");
    const char *default_preset = "sam";
    if (ms_tensors_find(ts, "image_encoder.patch_embed.seq.0.c.weight") &&
        ms_tensors_find(ts, "image_encoder.layers.0.blocks.0.conv1.c.weight")) {
        tiny_vit_hparams hp;
        medseg_status st = tiny_vit_detect(ts, &hp, err);
        if (st != MEDSEG_OK) return st;
        cfg->arch = MS_ARCH_TINY_VIT;
        if (hp.pe_k == 1) { /* LiteMedSAM: 1x1 stride-1 patch embedding, TinyViT(img_size=256) */
            snprintf(cfg->arch_name, sizeof cfg->arch_name, "%s", MS_ARCH_NAME_LITEMEDSAM);
            cfg->img_size = LITEMEDSAM_IMG_SIZE;
            default_preset = "litemedsam";
        } else {
            snprintf(cfg->arch_name, sizeof cfg->arch_name, "tiny_vit_sam");
            cfg->img_size = SAM_IMG_SIZE;
        }
        cfg->n_layers = hp.n_layers;
        for (int i = 0; i < hp.n_layers && i < 4; i++) {
            cfg->embed_dims[i] = hp.embed_dims[i];
            cfg->depths[i] = hp.depths[i];
            cfg->num_heads[i] = hp.num_heads[i];
            cfg->window_sizes[i] = hp.window_sizes[i];
        }
        cfg->mlp_ratio = (float)hp.mlp_ratio;
    } else if (ms_tensors_find(ts, "image_encoder.pos_embed") &&
               ms_tensors_find(ts, "image_encoder.blocks.0.attn.qkv.weight")) {
        vit_hparams hp;
        medseg_status st = vit_detect(ts, &hp, err);
        if (st != MEDSEG_OK) return st;
        if (hp.grid != MS_EMBED_HW)
            return ms_error(err, MEDSEG_ERR_UNSUPPORTED, "model: ViT image encoder with a %dx%d token grid; the SAM "
                            "decoder needs %dx%d", hp.grid, hp.grid, MS_EMBED_HW, MS_EMBED_HW);
        cfg->arch = MS_ARCH_VIT;
        snprintf(cfg->arch_name, sizeof cfg->arch_name, "%s", vit_arch_name(&hp));
        cfg->img_size = hp.img_size;
        cfg->mlp_ratio = (float)hp.mlp_dim / (float)hp.embed_dim;
        cfg->vit_embed_dim = hp.embed_dim;
        cfg->vit_depth = hp.depth;
        cfg->vit_heads = hp.heads;
        cfg->vit_window = hp.window;
        cfg->vit_patch = hp.patch;
        cfg->vit_n_global = hp.n_global;
        for (int i = 0; i < hp.n_global && i < 8; i++) cfg->vit_global_idx[i] = hp.global_idx[i];
    } else {
        char what[300], miss[200];
        describe_layout(ts, what, sizeof what);
        list_missing(ts, tiny_vit_keys, miss, sizeof miss);
        char miss_vit[200];
        list_missing(ts, vit_keys, miss_vit, sizeof miss_vit);
        return ms_error(err, MEDSEG_ERR_MODEL,
                        "model: not a known SAM-family layout: missing for TinyViT (MobileSAM, LiteMedSAM): %s; "
                        "missing for ViT (SAM, MedSAM, MedicoSAM): %s; found %s", miss, miss_vit, what);
    }
    if (!ms_tensors_find(ts, "prompt_encoder.pe_layer.positional_encoding_gaussian_matrix") ||
        !ms_tensors_find(ts, "mask_decoder.iou_token.weight")) {
        char what[300], miss[200];
        describe_layout(ts, what, sizeof what);
        list_missing(ts, head_keys, miss, sizeof miss);
        return ms_error(err, MEDSEG_ERR_MODEL, "model: %s image encoder found but the prompt encoder or mask decoder "
                        "is missing (%s); found %s", cfg->arch_name, miss, what);
    }
    /* The preset comes from the file's metadata when import stamped one (a MedSAM checkpoint has
     * SAM ViT-B's names and shapes, so only the metadata can tell them apart), else from the
     * architecture. */
    const char *preset = ms_tensors_get_meta(ts, "medseg.preset");
    if (!preset || !*preset) preset = default_preset;
    medseg_status pst = ms_sam_preset_check(cfg, preset, err);
    if (pst != MEDSEG_OK) return pst;
    snprintf(cfg->preset, sizeof cfg->preset, "%s", preset);
    int64_t np = 0;
    for (size_t i = 0; i < ts->n; i++) {
        const char *nm = ts->t[i].name ? ts->t[i].name : "";
        size_t l = strlen(nm), sfx = strlen("num_batches_tracked");
        if (l >= sfx && !strcmp(nm + l - sfx, "num_batches_tracked")) continue;
        np += ms_tensor_numel(&ts->t[i]);
    }
    cfg->n_params = np;
    return MEDSEG_OK;
}

ms_sam *ms_sam_create(const ms_tensors *ts, medseg_error *err)
{
    ms_sam_config cfg;
    if (ms_sam_detect(ts, &cfg, err) != MEDSEG_OK) return NULL;
    ms_sam *m = ms_calloc(1, sizeof *m, err, "model");
    if (!m) return NULL;
    m->cfg = cfg;
    medseg_status st = MEDSEG_ERR_UNSUPPORTED;
    switch (cfg.arch) { /* one case per image encoder */
    case MS_ARCH_TINY_VIT: {
        tiny_vit_hparams hp;
        st = tiny_vit_detect(ts, &hp, err);
        if (st == MEDSEG_OK) st = tiny_vit_bind(&m->enc, &hp, cfg.img_size, ts, err);
        break;
    }
    case MS_ARCH_VIT: {
        vit_hparams hp;
        st = vit_detect(ts, &hp, err);
        if (st == MEDSEG_OK) st = vit_bind(&m->vit, &hp, ts, err);
        break;
    }
    default:
        ms_error(err, st, "model: no image encoder for architecture %s", cfg.arch_name);
        break;
    }
    if (st != MEDSEG_OK) {
        free(m);
        return NULL;
    }
    if (ms_prompt_encoder_bind(&m->pe, ts, err) != MEDSEG_OK) {
        tiny_vit_release(&m->enc);
        vit_release(&m->vit);
        free(m);
        return NULL;
    }
    if (ms_mask_decoder_bind(&m->md, ts, err) != MEDSEG_OK) {
        ms_prompt_encoder_release(&m->pe);
        tiny_vit_release(&m->enc);
        vit_release(&m->vit);
        free(m);
        return NULL;
    }
    return m;
}

void ms_sam_free(ms_sam *m)
{
    if (!m) return;
    tiny_vit_release(&m->enc);
    vit_release(&m->vit);
    ms_prompt_encoder_release(&m->pe);
    ms_mask_decoder_release(&m->md);
    free(m);
}

const ms_sam_config *ms_sam_get_config(const ms_sam *m)
{
    return m ? &m->cfg : NULL;
}

void ms_sam_set_probe(ms_sam *m, ms_probe_fn fn, void *user)
{
    if (!m) return;
    m->probe = fn;
    m->probe_user = user;
}

medseg_status ms_sam_encode(const ms_sam *m, ms_encoder_state **state, ms_pool *pool, const float *input,
                            float *embedding, medseg_error *err)
{
    if (!m || !state || !input || !embedding) return ms_error(err, MEDSEG_ERR_ARG, "encoder: NULL argument");
    int nt = ms_pool_size(pool);
    int vit = m->cfg.arch == MS_ARCH_VIT;
    if (*state && !(vit ? vit_state_fits((*state)->vit, &m->vit, nt)
                        : tiny_vit_state_fits((*state)->tv, &m->enc, nt))) { /* other model or more threads */
        ms_sam_encoder_state_free(*state);
        *state = NULL;
    }
    if (!*state) {
        ms_encoder_state *s = ms_calloc(1, sizeof *s, err, "encoder state");
        if (!s) return err ? err->status : MEDSEG_ERR_NOMEM;
        if (vit)
            s->vit = vit_state_create(&m->vit, nt, err);
        else
            s->tv = tiny_vit_state_create(&m->enc, nt, err);
        if (!s->tv && !s->vit) {
            free(s);
            return err ? err->status : MEDSEG_ERR_NOMEM;
        }
        *state = s;
    }
    if (vit) return vit_forward(&m->vit, (*state)->vit, pool, input, embedding, m->probe, m->probe_user, NULL, err);
    return tiny_vit_forward(&m->enc, (*state)->tv, pool, input, embedding, m->probe, m->probe_user, NULL, err);
}

void ms_sam_encoder_state_free(ms_encoder_state *s)
{
    if (!s) return;
    tiny_vit_state_free(s->tv);
    vit_state_free(s->vit);
    free(s);
}

medseg_status ms_sam_prompt_encode(const ms_sam *m, const float *coords, const int *labels, int n, const float *box,
                                   const float *mask_input, float *sparse_out, int *n_tokens, float *dense_out,
                                   medseg_error *err)
{
    if (!m) return ms_error(err, MEDSEG_ERR_ARG, "prompt encoder: NULL model");
    int S = m->cfg.img_size;
    if (S == MS_PE_INPUT || S <= 0 || MS_PE_INPUT % S)
        return prompt_encoder_forward(&m->pe, coords, labels, n, box, mask_input, sparse_out, n_tokens, dense_out,
                                      err);
    /* A prompt encoder built with input_image_size S (LiteMedSAM: 256) normalises (c + 0.5) / S;
     * prompt_encoder.c divides by 1024. With k = 1024 / S a power of two, c' = k (c + 0.5) - 0.5 in
     * float gives (c' + 0.5) / 1024 == (c + 0.5) / S exactly (k(c + 0.5) and the +-0.5 are exact
     * for |c| < 2^20). ref: PromptEncoder._embed_points / _embed_boxes, PositionEmbeddingRandom.
     * forward_with_coords (coords / image_size). */
    const float k = (float)(MS_PE_INPUT / S);
    if (n < 0 || n > MEDSEG_MAX_POINTS)
        return ms_error(err, MEDSEG_ERR_ARG, "prompt_encoder: %d points (at most %d)", n, MEDSEG_MAX_POINTS);
    float c2[2 * MEDSEG_MAX_POINTS], b2[4];
    for (int i = 0; coords && i < 2 * n; i++) c2[i] = k * (coords[i] + 0.5f) - 0.5f;
    for (int i = 0; box && i < 4; i++) b2[i] = k * (box[i] + 0.5f) - 0.5f;
    return prompt_encoder_forward(&m->pe, coords ? c2 : NULL, labels, n, box ? b2 : NULL, mask_input, sparse_out,
                                  n_tokens, dense_out, err);
}

struct ms_sam_image_cache {
    ms_md_image_cache md;
};

medseg_status ms_sam_prepare_image(const ms_sam *m, ms_pool *pool, const float *embedding, ms_sam_image_cache **cache,
                                   medseg_error *err)
{
    ms_sam_image_cache_free(*cache);
    *cache = NULL;
    if (!m) return ms_error(err, MEDSEG_ERR_ARG, "mask decoder: NULL model");
    /* the dense prompt of every prompt without a mask input: no_mask_embed broadcast */
    size_t hw = (size_t)MS_EMBED_HW * MS_EMBED_HW;
    float *dense = ms_malloc(MS_EMBED_DIM * hw * sizeof(float), err, "dense prompt");
    float sparse[2 * MS_EMBED_DIM];
    int n_tokens;
    ms_sam_image_cache *c = dense ? ms_calloc(1, sizeof *c, err, "decoder image cache") : NULL;
    medseg_status st = c ? MEDSEG_OK : MEDSEG_ERR_NOMEM;
    if (!st) st = prompt_encoder_forward(&m->pe, NULL, NULL, 0, NULL, NULL, sparse, &n_tokens, dense, err);
    if (!st)
        st = mask_decoder_prepare_image(&m->md, pool, embedding, prompt_encoder_dense_pe(&m->pe), dense, &c->md, err);
    free(dense);
    if (st) {
        free(c);
        return st;
    }
    *cache = c;
    return MEDSEG_OK;
}

void ms_sam_image_cache_free(ms_sam_image_cache *cache)
{
    if (!cache) return;
    ms_md_image_cache_free(&cache->md);
    free(cache);
}

medseg_status ms_sam_decode(const ms_sam *m, ms_pool *pool, const float *embedding, const ms_sam_image_cache *cache,
                            const float *sparse, int n_tokens, const float *dense, int has_mask_input,
                            unsigned token_mask, float *low_res, float *iou, medseg_error *err)
{
    if (!m) return ms_error(err, MEDSEG_ERR_ARG, "mask decoder: NULL model");
    const ms_md_image_cache *c = cache && !has_mask_input ? &cache->md : NULL;
    return mask_decoder_forward_tokens(&m->md, pool, c, embedding, prompt_encoder_dense_pe(&m->pe), sparse, n_tokens,
                                       dense, token_mask, low_res, iou, err);
}
