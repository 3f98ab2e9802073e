/* SAM prompt encoder (see prompt_encoder.h).
 *
 * ref: segment_anything/modeling/prompt_encoder.py @dca509f */
#include "models/prompt_encoder.h"

#include "core/kernels.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define PE_FEATS (MS_PE_DIM / 2) /* num_pos_feats of PositionEmbeddingRandom */
#define MASK_C1 (MS_PE_MASK_CHANS / 4)
#define MASK_H1 (MS_PE_MASK / 2) /* 128: after the first stride-2 conv */
#define LN2D_EPS 1e-6f           /* LayerNorm2d default eps */

#define PE_W(name, off, nd, ...) {"prompt_encoder." name, 1, nd, {__VA_ARGS__}, offsetof(ms_prompt_encoder, off), 0}

static const ms_weight_spec prompt_encoder_table[] = {
    PE_W("pe_layer.positional_encoding_gaussian_matrix", gauss, 2, 2, PE_FEATS),
    {"prompt_encoder.point_embeddings.%d.weight", 4, 2, {1, MS_PE_DIM}, offsetof(ms_prompt_encoder, point_embed),
     sizeof(const float *)},
    PE_W("not_a_point_embed.weight", not_a_point, 2, 1, MS_PE_DIM),
    PE_W("no_mask_embed.weight", no_mask, 2, 1, MS_PE_DIM),
    PE_W("mask_downscaling.0.weight", down0_w, 4, MASK_C1, 1, 2, 2),
    PE_W("mask_downscaling.0.bias", down0_b, 1, MASK_C1),
    PE_W("mask_downscaling.1.weight", down1_w, 1, MASK_C1),
    PE_W("mask_downscaling.1.bias", down1_b, 1, MASK_C1),
    PE_W("mask_downscaling.3.weight", down3_w, 4, MS_PE_MASK_CHANS, MASK_C1, 2, 2),
    PE_W("mask_downscaling.3.bias", down3_b, 1, MS_PE_MASK_CHANS),
    PE_W("mask_downscaling.4.weight", down4_w, 1, MS_PE_MASK_CHANS),
    PE_W("mask_downscaling.4.bias", down4_b, 1, MS_PE_MASK_CHANS),
    PE_W("mask_downscaling.6.weight", down6_w, 4, MS_PE_DIM, MS_PE_MASK_CHANS, 1, 1),
    PE_W("mask_downscaling.6.bias", down6_b, 1, MS_PE_DIM),
};

/* ------------------------------------------------------------------ positional encoding */

// xy [2] normalised to [0,1] -> out[c * stride], c < 256: [sin(2pi (2xy-1) G), cos(...)]
// ref: prompt_encoder.py PositionEmbeddingRandom._pe_encoding
static void pe_encoding(float *out, size_t stride, float x, float y, const float *gauss)
{
    const float two_pi = (float)(2.0 * 3.14159265358979323846);
    float cx = 2.0f * x - 1.0f, cy = 2.0f * y - 1.0f;
    for (int j = 0; j < PE_FEATS; j++) {
        float a = cx * gauss[j] + cy * gauss[PE_FEATS + j];
        a = two_pi * a;
        out[(size_t)j * stride] = (float)sin((double)a);
        out[(size_t)(PE_FEATS + j) * stride] = (float)cos((double)a);
    }
}

// (x, y) in input pixels -> out [256]. ref: PositionEmbeddingRandom.forward_with_coords (+0.5 done by caller)
static void pe_with_coords(float *out, float x, float y, const float *gauss)
{
    pe_encoding(out, 1, x / (float)MS_PE_INPUT, y / (float)MS_PE_INPUT, gauss);
}

// -> pe [256, 64, 64]. ref: PositionEmbeddingRandom.forward((64, 64)), PromptEncoder.get_dense_pe
static void dense_pe_forward(float *pe, const float *gauss)
{
    const size_t hw = (size_t)MS_PE_GRID * MS_PE_GRID;
    for (int i = 0; i < MS_PE_GRID; i++)
        for (int j = 0; j < MS_PE_GRID; j++) {
            float y = ((float)(i + 1) - 0.5f) / (float)MS_PE_GRID;
            float x = ((float)(j + 1) - 0.5f) / (float)MS_PE_GRID;
            pe_encoding(pe + (size_t)i * MS_PE_GRID + j, hw, x, y, gauss);
        }
}

medseg_status ms_prompt_encoder_bind(ms_prompt_encoder *pe, const ms_tensors *ts, medseg_error *err)
{
    memset(pe, 0, sizeof *pe);
    medseg_status st = ms_bind_weight_table(pe, prompt_encoder_table,
                                            sizeof prompt_encoder_table / sizeof prompt_encoder_table[0], ts,
                                            "prompt_encoder", err);
    if (st != MEDSEG_OK) {
        memset(pe, 0, sizeof *pe);
        return st;
    }
    pe->dense_pe = ms_alloc_aligned((size_t)MS_PE_DIM * MS_PE_GRID * MS_PE_GRID * sizeof(float), err,
                                    "prompt encoder dense positional encoding");
    if (!pe->dense_pe) {
        memset(pe, 0, sizeof *pe);
        return err ? err->status : MEDSEG_ERR_NOMEM;
    }
    dense_pe_forward(pe->dense_pe, pe->gauss);
    return MEDSEG_OK;
}

void ms_prompt_encoder_release(ms_prompt_encoder *pe)
{
    if (!pe) return;
    free(pe->dense_pe);
    memset(pe, 0, sizeof *pe);
}

const float *prompt_encoder_dense_pe(const ms_prompt_encoder *pe)
{
    return pe->dense_pe;
}

/* ------------------------------------------------------------------ mask downscaling */

// in [C, 2H, 2W], w [OC, C, 2, 2], b [OC] -> out [OC, H, W]. ref: nn.Conv2d(C, OC, kernel_size=2, stride=2)
static void conv2x2_s2(float *out, const float *in, const float *w, const float *b, int C, int OC, int H, int W)
{
    const size_t ihw = (size_t)4 * H * W;
    for (int o = 0; o < OC; o++)
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++) {
                float s = b[o];
                for (int c = 0; c < C; c++) {
                    const float *k = w + ((size_t)o * C + c) * 4;
                    const float *p = in + (size_t)c * ihw + (size_t)(2 * y) * (2 * W) + 2 * x;
                    s += k[0] * p[0] + k[1] * p[1] + k[2] * p[2 * W] + k[3] * p[2 * W + 1];
                }
                out[((size_t)o * H + y) * W + x] = s;
            }
}

// x [C, HW] -> [C, HW] in place, normalised over C at each pixel. ref: common.py LayerNorm2d
static void layernorm2d_chw(float *x, const float *w, const float *b, int C, size_t hw, float eps)
{
    for (size_t p = 0; p < hw; p++) {
        float u = 0.0f;
        for (int c = 0; c < C; c++) u += x[(size_t)c * hw + p];
        u /= (float)C;
        float s = 0.0f;
        for (int c = 0; c < C; c++) {
            float d = x[(size_t)c * hw + p] - u;
            s += d * d;
        }
        s /= (float)C;
        float r = sqrtf(s + eps);
        for (int c = 0; c < C; c++) x[(size_t)c * hw + p] = w[c] * ((x[(size_t)c * hw + p] - u) / r) + b[c];
    }
}

// mask [256, 256] -> dense [256, 64, 64]. ref: PromptEncoder._embed_masks (mask_downscaling)
static medseg_status mask_downscaling_forward(const ms_prompt_encoder *pe, float *dense, const float *mask,
                                              medseg_error *err)
{
    const size_t hw1 = (size_t)MASK_H1 * MASK_H1, hw2 = (size_t)MS_PE_GRID * MS_PE_GRID;
    float *h1 = ms_malloc((MASK_C1 * hw1 + MS_PE_MASK_CHANS * hw2) * sizeof(float), err, "mask downscaling");
    if (!h1) return err ? err->status : MEDSEG_ERR_NOMEM;
    float *h2 = h1 + MASK_C1 * hw1;
    conv2x2_s2(h1, mask, pe->down0_w, pe->down0_b, 1, MASK_C1, MASK_H1, MASK_H1);
    layernorm2d_chw(h1, pe->down1_w, pe->down1_b, MASK_C1, hw1, LN2D_EPS);
    ms_gelu(h1, MASK_C1 * hw1, NULL);
    conv2x2_s2(h2, h1, pe->down3_w, pe->down3_b, MASK_C1, MS_PE_MASK_CHANS, MS_PE_GRID, MS_PE_GRID);
    layernorm2d_chw(h2, pe->down4_w, pe->down4_b, MS_PE_MASK_CHANS, hw2, LN2D_EPS);
    ms_gelu(h2, MS_PE_MASK_CHANS * hw2, NULL);
    /* 1x1 conv: dense [256, HW] = w [256, 16] @ h2 [16, HW] + b */
    for (int o = 0; o < MS_PE_DIM; o++)
        for (size_t p = 0; p < hw2; p++) dense[(size_t)o * hw2 + p] = pe->down6_b[o];
    ms_matmul(dense, pe->down6_w, h2, MS_PE_DIM, (int)hw2, MS_PE_MASK_CHANS, 0, 0, 1.0f, 1.0f, NULL);
    free(h1);
    return MEDSEG_OK;
}

/* ------------------------------------------------------------------ forward */

// points [n,2] + labels [n], box [4] or NULL, mask [256,256] or NULL -> sparse [T,256], dense [256,64,64]
// ref: PromptEncoder.forward, _embed_points, _embed_boxes
medseg_status prompt_encoder_forward(const ms_prompt_encoder *pe, const float *coords, const int *labels, int n,
                                     const float *box, const float *mask_input, float *sparse_out, int *n_tokens,
                                     float *dense_out, medseg_error *err)
{
    if (!pe || !pe->dense_pe) return ms_error(err, MEDSEG_ERR_ARG, "prompt_encoder: not bound");
    if (n < 0 || n > MEDSEG_MAX_POINTS)
        return ms_error(err, MEDSEG_ERR_ARG, "prompt_encoder: %d points (at most %d)", n, MEDSEG_MAX_POINTS);
    if (n > 0 && (!coords || !labels)) return ms_error(err, MEDSEG_ERR_ARG, "prompt_encoder: points without data");
    if (!sparse_out || !n_tokens) return ms_error(err, MEDSEG_ERR_ARG, "prompt_encoder: no output");
    for (int i = 0; i < n; i++) {
        if (!isfinite(coords[2 * i]) || !isfinite(coords[2 * i + 1]))
            return ms_error(err, MEDSEG_ERR_ARG, "prompt_encoder: point %d is not finite", i);
        if (labels[i] < -1 || labels[i] > 1)
            return ms_error(err, MEDSEG_ERR_ARG, "prompt_encoder: point %d has label %d (expected 1, 0 or -1)", i,
                            labels[i]);
    }
    if (box)
        for (int i = 0; i < 4; i++)
            if (!isfinite(box[i])) return ms_error(err, MEDSEG_ERR_ARG, "prompt_encoder: box is not finite");

    int t = 0;
    /* points, then the padding point (0, 0) with label -1 when there is no box */
    int pad = n > 0 && !box;
    for (int i = 0; i < n + pad; i++, t++) {
        float *o = sparse_out + (size_t)t * MS_PE_DIM;
        int label = i < n ? labels[i] : -1;
        if (label == -1) {
            memcpy(o, pe->not_a_point, MS_PE_DIM * sizeof(float)); /* embedding zeroed, then += not_a_point */
            continue;
        }
        pe_with_coords(o, coords[2 * i] + 0.5f, coords[2 * i + 1] + 0.5f, pe->gauss);
        const float *add = pe->point_embed[label == 1 ? 1 : 0];
        for (int c = 0; c < MS_PE_DIM; c++) o[c] += add[c];
    }
    if (box) {
        for (int k = 0; k < 2; k++, t++) {
            float *o = sparse_out + (size_t)t * MS_PE_DIM;
            pe_with_coords(o, box[2 * k] + 0.5f, box[2 * k + 1] + 0.5f, pe->gauss);
            const float *add = pe->point_embed[2 + k];
            for (int c = 0; c < MS_PE_DIM; c++) o[c] += add[c];
        }
    }
    *n_tokens = t;
    if (!dense_out) return MEDSEG_OK; /* the caller needs the sparse tokens only */

    if (mask_input) {
        for (size_t i = 0; i < (size_t)MS_PE_MASK * MS_PE_MASK; i++)
            if (!isfinite(mask_input[i])) return ms_error(err, MEDSEG_ERR_ARG, "prompt_encoder: mask input is not finite");
        return mask_downscaling_forward(pe, dense_out, mask_input, err);
    }
    const size_t hw = (size_t)MS_PE_GRID * MS_PE_GRID;
    for (int c = 0; c < MS_PE_DIM; c++) {
        float v = pe->no_mask[c];
        float *d = dense_out + (size_t)c * hw;
        for (size_t p = 0; p < hw; p++) d[p] = v;
    }
    return MEDSEG_OK;
}
