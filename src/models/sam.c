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

/* Lists the first top-level prefixes (two name components) with tensor counts, for the message
 * of an unrecognised layout. */
static void describe_layout(const ms_tensors *ts, char *out, size_t len)
{
    enum { MAXP = 8 };
    char pre[MAXP][64];
    int cnt[MAXP], np = 0, other = 0;
    for (size_t i = 0; i < ts->n; i++) {
        const char *nm = ts->t[i].name ? ts->t[i].name : "";
        const char *d1 = strchr(nm, '.');
        const char *d2 = d1 ? strchr(d1 + 1, '.') : NULL;
        size_t l = d2 ? (size_t)(d2 - nm) : strlen(nm);
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
    size_t o = (size_t)snprintf(out, len, "%zu tensors:", ts->n);
    for (int k = 0; k < np && o < len; k++) o += (size_t)snprintf(out + o, len - o, " %s.* (%d)", pre[k], cnt[k]);
    if (other && o < len) snprintf(out + o, len - o, " and %d more", other);
}

medseg_status ms_sam_detect(const ms_tensors *ts, ms_sam_config *cfg, medseg_error *err)
{
    memset(cfg, 0, sizeof *cfg);
    if (!ts) return ms_error(err, MEDSEG_ERR_ARG, "model: no tensors");
    if (ms_tensors_find(ts, "image_encoder.patch_embed.seq.0.c.weight") &&
        ms_tensors_find(ts, "image_encoder.layers.0.blocks.0.conv1.c.weight")) {
        tiny_vit_hparams hp;
        medseg_status st = tiny_vit_detect(ts, &hp, err);
        if (st != MEDSEG_OK) return st;
        cfg->arch = MS_ARCH_TINY_VIT;
        snprintf(cfg->arch_name, sizeof cfg->arch_name, "tiny_vit_sam");
        cfg->img_size = SAM_IMG_SIZE;
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
        char what[400];
        describe_layout(ts, what, sizeof what);
        return ms_error(err, MEDSEG_ERR_MODEL,
                        "model: not a known SAM-family layout (no image_encoder.patch_embed.seq.0.c.weight / "
                        "layers.0.blocks.0.conv1 of TinyViT, no image_encoder.pos_embed / blocks.0.attn.qkv.weight "
                        "of ViT); found %s", what);
    }
    if (!ms_tensors_find(ts, "prompt_encoder.pe_layer.positional_encoding_gaussian_matrix") ||
        !ms_tensors_find(ts, "mask_decoder.iou_token.weight"))
        return ms_error(err, MEDSEG_ERR_MODEL, "model: image encoder found but prompt_encoder.* or mask_decoder.* "
                        "is missing");
    const char *preset = ms_tensors_get_meta(ts, "medseg.preset");
    snprintf(cfg->preset, sizeof cfg->preset, "%s", preset && *preset ? preset : "sam");
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
    return prompt_encoder_forward(&m->pe, coords, labels, n, box, mask_input, sparse_out, n_tokens, dense_out, err);
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
