/* The predictor: SamPredictor of segment-anything @dca509f (segment_anything/predictor.py) as a
 * C session. set_image preprocesses and encodes once; predict transforms the prompt into the
 * encoder's input frame, runs the prompt encoder and mask decoder, picks the mask tokens and
 * upsamples the chosen low-res logits to the original size. */
#include "core/threadpool.h"
#include "models/sam.h"
#include "workflow/postprocess.h"
#include "workflow/preprocess.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* The preprocessing preset a model carries (medseg_model_info.preset; see preprocess.h). */
typedef enum { PRESET_UNKNOWN = 0, PRESET_SAM, PRESET_MEDSAM, PRESET_LITEMEDSAM } preset_id;

static preset_id preset_of(const ms_sam_config *c)
{
    if (!strcmp(c->preset, "sam")) return PRESET_SAM;
    if (!strcmp(c->preset, "medsam")) return PRESET_MEDSAM;
    if (!strcmp(c->preset, "litemedsam")) return PRESET_LITEMEDSAM;
    return PRESET_UNKNOWN;
}

struct medseg_model {
    ms_tensors ts; /* memory-mapped weights; the model binds pointers into them */
    ms_sam *sam;
    char path[4096];
};

struct medseg_session {
    const medseg_model *model;
    ms_pool *pool;
    ms_encoder_state *enc;
    float *input;     /* [3, S, S] encoder input */
    float *embedding; /* [256, 64, 64] */
    ms_sam_image_cache *cache; /* decoder work shared by every prompt without a mask input */
    int has_image;
    int width, height; /* original image size */
    int neww, newh;    /* size of the resized image inside the S x S input */
};

#define EMB_FLOATS ((size_t)MS_EMBED_DIM * MS_EMBED_HW * MS_EMBED_HW)
#define LOWRES_FLOATS ((size_t)MEDSEG_LOWRES * MEDSEG_LOWRES)

medseg_model *medseg_model_load(const char *path, medseg_error *err)
{
    ms_error_clear(err);
    medseg_model *m = ms_calloc(1, sizeof *m, err, "model");
    if (!m) return NULL;
    snprintf(m->path, sizeof m->path, "%s", path);
    ms_tensors_init(&m->ts);
    if (ms_safetensors_load(path, &m->ts, err) != MEDSEG_OK) {
        ms_tensors_free(&m->ts);
        free(m);
        return NULL;
    }
    m->sam = ms_sam_create(&m->ts, err);
    if (!m->sam) {
        ms_error_prefix(err, path); /* name the file whose weights were refused */
        ms_tensors_free(&m->ts);
        free(m);
        return NULL;
    }
    return m;
}

void medseg_model_get_info(const medseg_model *m, medseg_model_info *info)
{
    memset(info, 0, sizeof *info);
    const ms_sam_config *c = ms_sam_get_config(m->sam);
    snprintf(info->arch, sizeof info->arch, "%s", c->arch_name);
    snprintf(info->preset, sizeof info->preset, "%s", c->preset);
    info->image_size = c->img_size;
    info->n_params = c->n_params;
    info->n_tensors = (int)m->ts.n;
}

void medseg_model_free(medseg_model *m)
{
    if (!m) return;
    ms_sam_free(m->sam);
    ms_tensors_free(&m->ts);
    free(m);
}

medseg_session *medseg_session_create(const medseg_model *m, int threads, medseg_error *err)
{
    ms_error_clear(err);
    if (!m) {
        ms_error(err, MEDSEG_ERR_ARG, "medseg_session_create: no model");
        return NULL;
    }
    medseg_session *s = ms_calloc(1, sizeof *s, err, "session");
    if (!s) return NULL;
    s->model = m;
    int S = ms_sam_get_config(m->sam)->img_size;
    s->pool = ms_pool_create(threads, err);
    s->input = ms_alloc_aligned((size_t)3 * S * S * sizeof(float), err, "encoder input");
    s->embedding = s->input ? ms_alloc_aligned(EMB_FLOATS * sizeof(float), err, "image embedding") : NULL;
    if (!s->pool || !s->embedding) {
        medseg_session_free(s);
        return NULL;
    }
    return s;
}

void medseg_session_free(medseg_session *s)
{
    if (!s) return;
    ms_sam_encoder_state_free(s->enc);
    ms_sam_image_cache_free(s->cache);
    ms_pool_free(s->pool);
    free(s->input);
    free(s->embedding);
    free(s);
}

medseg_status medseg_session_set_image(medseg_session *s, const medseg_image *img, medseg_error *err)
{
    ms_error_clear(err);
    if (!s || !img || !img->data || img->width <= 0 || img->height <= 0)
        return ms_error(err, MEDSEG_ERR_ARG, "medseg_session_set_image: empty image");
    if (img->channels != 1 && img->channels != 3 && img->channels != 4)
        return ms_error(err, MEDSEG_ERR_ARG, "medseg_session_set_image: %d channels (1, 3 or 4 expected)", img->channels);
    if (img->width > MEDSEG_MAX_DIM || img->height > MEDSEG_MAX_DIM)
        return ms_error(err, MEDSEG_ERR_ARG, "medseg_session_set_image: image %dx%d over the %d-pixel limit",
                        img->width, img->height, MEDSEG_MAX_DIM);
    const ms_sam_config *c = ms_sam_get_config(s->model->sam);
    s->has_image = 0;
    medseg_status st;
    switch (preset_of(c)) {
    case PRESET_SAM:
        st = ms_preprocess_sam(img, c->img_size, s->input, &s->neww, &s->newh, err);
        break;
    case PRESET_MEDSAM: /* the whole 1024 x 1024 input is the image, stretched */
        st = ms_preprocess_medsam(img, c->img_size, s->input, NULL, err);
        s->neww = s->newh = c->img_size;
        break;
    case PRESET_LITEMEDSAM:
        st = ms_preprocess_litemedsam(img, c->img_size, s->input, &s->neww, &s->newh, NULL, err);
        break;
    default:
        st = ms_error(err, MEDSEG_ERR_UNSUPPORTED, "preprocessing preset '%s' is not implemented", c->preset);
    }
    if (st) return st;
    st = ms_sam_encode(s->model->sam, &s->enc, s->pool, s->input, s->embedding, err);
    if (!st) st = ms_sam_prepare_image(s->model->sam, s->pool, s->embedding, &s->cache, err);
    if (st) return st;
    s->width = img->width;
    s->height = img->height;
    s->has_image = 1;
    return MEDSEG_OK;
}

const float *medseg_session_embedding(const medseg_session *s)
{
    return s && s->has_image ? s->embedding : NULL;
}

medseg_status medseg_session_set_embedding(medseg_session *s, const float *embedding, int width, int height,
                                           medseg_error *err)
{
    ms_error_clear(err);
    if (!s || !embedding || width <= 0 || height <= 0 || width > MEDSEG_MAX_DIM || height > MEDSEG_MAX_DIM)
        return ms_error(err, MEDSEG_ERR_ARG, "medseg_session_set_embedding: bad arguments");
    const ms_sam_config *c = ms_sam_get_config(s->model->sam);
    s->has_image = 0;
    memcpy(s->embedding, embedding, EMB_FLOATS * sizeof(float));
    medseg_status st = ms_sam_prepare_image(s->model->sam, s->pool, s->embedding, &s->cache, err);
    if (st) return st;
    if (preset_of(c) == PRESET_MEDSAM)
        s->neww = s->newh = c->img_size;
    else
        ms_longest_side_shape(width, height, c->img_size, &s->neww, &s->newh);
    s->width = width;
    s->height = height;
    s->has_image = 1;
    return MEDSEG_OK;
}

medseg_prompt medseg_prompt_default(void)
{
    medseg_prompt p;
    memset(&p, 0, sizeof p);
    p.output = MEDSEG_OUTPUT_SINGLE;
    return p;
}

/* Checks a prompt against the image; the message says what is wrong in user terms. */
static medseg_status check_prompt(const medseg_session *s, const medseg_prompt *p, medseg_error *err)
{
    if (p->n_points < 0 || p->n_points > MEDSEG_MAX_POINTS)
        return ms_error(err, MEDSEG_ERR_ARG, "%d points: at most %d are allowed", p->n_points, MEDSEG_MAX_POINTS);
    if (p->n_points == 0 && !p->has_box && !p->mask_input)
        return ms_error(err, MEDSEG_ERR_ARG, "no prompt: give a box, at least one point, or a mask input");
    if (p->output != MEDSEG_OUTPUT_SINGLE && p->output != MEDSEG_OUTPUT_MULTI && p->output != MEDSEG_OUTPUT_BEST)
        return ms_error(err, MEDSEG_ERR_ARG, "unknown output mode %d", (int)p->output);
    for (int i = 0; i < p->n_points; i++) {
        float x = p->points[i][0], y = p->points[i][1];
        if (!isfinite(x) || !isfinite(y) || x < 0 || y < 0 || x > s->width || y > s->height)
            return ms_error(err, MEDSEG_ERR_ARG, "point %d (%g,%g) is outside the %dx%d image", i + 1, x, y,
                            s->width, s->height);
        if (p->labels[i] != 0 && p->labels[i] != 1)
            return ms_error(err, MEDSEG_ERR_ARG, "point %d has label %d (1 = foreground, 0 = background)", i + 1,
                            p->labels[i]);
    }
    if (p->has_box) {
        const float *b = p->box;
        for (int i = 0; i < 4; i++)
            if (!isfinite(b[i])) return ms_error(err, MEDSEG_ERR_ARG, "box has a non-finite coordinate");
        if (b[2] <= b[0] || b[3] <= b[1])
            return ms_error(err, MEDSEG_ERR_ARG, "box %g,%g,%g,%g has zero or negative size (x0 < x1 and y0 < y1 needed)",
                            b[0], b[1], b[2], b[3]);
        if (b[0] < 0 || b[1] < 0 || b[2] > s->width || b[3] > s->height)
            return ms_error(err, MEDSEG_ERR_ARG, "box %g,%g,%g,%g is outside the %dx%d image", b[0], b[1], b[2], b[3],
                            s->width, s->height);
    }
    return MEDSEG_OK;
}

medseg_status medseg_session_predict(const medseg_session *s, const medseg_prompt *p, medseg_result *out,
                                     medseg_error *err)
{
    ms_error_clear(err);
    if (out) memset(out, 0, sizeof *out);
    if (!s || !p || !out) return ms_error(err, MEDSEG_ERR_ARG, "medseg_session_predict: NULL argument");
    if (!s->has_image) return ms_error(err, MEDSEG_ERR_ARG, "medseg_session_predict: no image set");
    medseg_status st = check_prompt(s, p, err);
    if (st) return st;
    const ms_sam_config *c = ms_sam_get_config(s->model->sam);

    /* Prompt coordinates into the encoder's input frame, per preset. */
    preset_id preset = preset_of(c);
    float coords[MEDSEG_MAX_POINTS][2], box[4];
    if (preset == PRESET_MEDSAM) {
        /* MedSAM_Inference.py: box_np / np.array([W, H, W, H]) * 1024 in float64 (divide first),
         * then float32. Points (not used by the script) get the same mapping. */
        double S = c->img_size, W = s->width, H = s->height;
        for (int i = 0; i < p->n_points; i++) {
            coords[i][0] = (float)((double)p->points[i][0] / W * S);
            coords[i][1] = (float)((double)p->points[i][1] / H * S);
        }
        if (p->has_box)
            for (int k = 0; k < 4; k++) box[k] = (float)((double)p->box[k] / (k & 1 ? H : W) * S);
    } else if (preset == PRESET_LITEMEDSAM) {
        /* CVPR24_LiteMedSAM_infer.py resize_box_to_256: ratio = 256 / max(H, W) (float64),
         * int(box[i] * ratio): truncation toward zero. Points (not used by the script) are
         * scaled by the same ratio without truncation. */
        double ratio = (double)c->img_size / (double)(s->width > s->height ? s->width : s->height);
        for (int i = 0; i < p->n_points; i++) {
            coords[i][0] = (float)((double)p->points[i][0] * ratio);
            coords[i][1] = (float)((double)p->points[i][1] * ratio);
        }
        if (p->has_box)
            for (int k = 0; k < 4; k++) box[k] = (float)trunc((double)p->box[k] * ratio);
    } else {
        /* ResizeLongestSide.apply_coords: x * (neww / w), y * (newh / h) in float64, then float32. */
        double sx = (double)s->neww / s->width, sy = (double)s->newh / s->height;
        for (int i = 0; i < p->n_points; i++) {
            coords[i][0] = (float)(p->points[i][0] * sx);
            coords[i][1] = (float)(p->points[i][1] * sy);
        }
        if (p->has_box) {
            box[0] = (float)(p->box[0] * sx);
            box[1] = (float)(p->box[1] * sy);
            box[2] = (float)(p->box[2] * sx);
            box[3] = (float)(p->box[3] * sy);
        }
    }

    float *sparse = NULL, *dense = NULL, *low_res = NULL;
    int n_tokens = 0;
    size_t npix;
    if (!ms_mul_size((size_t)s->width, (size_t)s->height, &npix))
        return ms_error(err, MEDSEG_ERR_NOMEM, "image too large");
    sparse = ms_malloc((size_t)(MEDSEG_MAX_POINTS + 2) * MS_EMBED_DIM * sizeof(float), err, "sparse prompt");
    /* the dense prompt is needed only with a mask input: otherwise the image cache holds its effect */
    int need_dense = p->mask_input || !s->cache;
    dense = sparse && need_dense ? ms_malloc(EMB_FLOATS * sizeof(float), err, "dense prompt") : NULL;
    low_res = sparse && (dense || !need_dense) ? ms_malloc(MS_NUM_MASK_TOKENS * LOWRES_FLOATS * sizeof(float), err, "low-res logits") : NULL;
    float iou[MS_NUM_MASK_TOKENS];
    if (!low_res) {
        st = MEDSEG_ERR_NOMEM;
        goto done;
    }
    st = ms_sam_prompt_encode(s->model->sam, p->n_points ? &coords[0][0] : NULL, p->labels, p->n_points,
                              p->has_box ? box : NULL, p->mask_input, sparse, &n_tokens, dense, err);
    if (st) goto done;
    /* SamPredictor.predict: token 0 for a single mask, tokens 1..3 for multimask (and BEST) */
    unsigned token_mask = p->output == MEDSEG_OUTPUT_SINGLE ? 0x1u : 0xEu;
    st = ms_sam_decode(s->model->sam, s->pool, s->embedding, s->cache, sparse, n_tokens, dense, p->mask_input != NULL,
                       token_mask, low_res, iou, err);
    if (st) goto done;

    /* Token choice: SamPredictor.predict slices tokens 1..3 when multimask_output, else token 0. */
    int tokens[3], nt = 0;
    if (p->output == MEDSEG_OUTPUT_SINGLE) {
        tokens[nt++] = 0;
    } else if (p->output == MEDSEG_OUTPUT_MULTI) {
        for (int t = 1; t <= 3; t++) tokens[nt++] = t;
    } else {
        int best = 1;
        for (int t = 2; t <= 3; t++)
            if (iou[t] > iou[best]) best = t;
        tokens[nt++] = best;
    }
    out->n_masks = nt;
    out->width = s->width;
    out->height = s->height;
    out->masks = ms_malloc(npix * nt, err, "masks");
    out->low_res_logits = out->masks ? ms_malloc(LOWRES_FLOATS * nt * sizeof(float), err, "low-res logits") : NULL;
    if (!out->low_res_logits) {
        medseg_result_free(out);
        st = MEDSEG_ERR_NOMEM;
        goto done;
    }
    for (int k = 0; k < nt; k++) {
        const float *lr = low_res + (size_t)tokens[k] * LOWRES_FLOATS;
        memcpy(out->low_res_logits + (size_t)k * LOWRES_FLOATS, lr, LOWRES_FLOATS * sizeof(float));
        out->iou[k] = iou[tokens[k]];
        out->token[k] = tokens[k];
        if (preset == PRESET_MEDSAM) /* sigmoid, one bilinear to (H, W), > 0.5 */
            st = ms_postprocess_direct(lr, MEDSEG_LOWRES, MEDSEG_LOWRES, MEDSEG_LOWRES, 1, s->width, s->height, NULL,
                                       out->masks + (size_t)k * npix, s->pool, err);
        else if (preset == PRESET_LITEMEDSAM) /* crop [:newh, :neww] of the 256 logits, bilinear, sigmoid > 0.5 */
            st = ms_postprocess_direct(lr, MEDSEG_LOWRES, s->neww * MEDSEG_LOWRES / c->img_size,
                                       s->newh * MEDSEG_LOWRES / c->img_size, 0, s->width, s->height, NULL,
                                       out->masks + (size_t)k * npix, s->pool, err);
        else
            st = ms_postprocess_mask_binary(lr, MEDSEG_LOWRES, c->img_size, s->neww, s->newh, s->width, s->height,
                                            out->masks + (size_t)k * npix, s->pool, err);
        if (st) break;
    }
    if (st) medseg_result_free(out);
done:
    free(sparse);
    free(dense);
    free(low_res);
    return st;
}

void medseg_result_free(medseg_result *r)
{
    if (!r) return;
    free(r->masks);
    free(r->low_res_logits);
    memset(r, 0, sizeof *r);
}
