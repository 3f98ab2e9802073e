/* Mask postprocessing: Sam.postprocess_masks of segment-anything @dca509f, computed exactly as
 * PyTorch 1.13's float32 CPU upsample_bilinear2d (align_corners=False, no antialias).
 * ref: segment_anything/modeling/sam.py Sam.postprocess_masks;
 *      aten/src/ATen/native/UpSample.h area_pixel_compute_scale / area_pixel_compute_source_index,
 *      aten/src/ATen/native/cpu/UpSampleKernel.cpp compute_source_index_and_lambda and
 *      cpu_upsample_linear_channels_last (the path a [1,1,H,W] tensor takes).
 * The arithmetic was pinned down against Debian's torch 1.13.1 (bit-exact on every size tried,
 * tests/test_postprocess.c):
 *   scale  = (float)in / (float)out                      (no scale factor given)
 *   src    = max(scale * (i + 0.5) - 0.5, 0) in double,  i0 = (int)src, i1 = min(i0 + 1, in - 1)
 *   l1     = (float)(src - i0) clamped to [0, 1],        l0 = 1.0f - l1
 *   w00 = h0*w0, w01 = h0*w1, w10 = h1*w0, w11 = h1*w1  (float products)
 *   out    = (float)(x00*w00 + x01*w01 + x10*w10 + x11*w11) summed left to right in double
 * (float x float products are exact in double, so FMA contraction cannot change the result). */
#include "workflow/postprocess.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* One axis of a bilinear resize: for each output index, two source indices and two weights. */
typedef struct {
    int i0, i1;
    float l0, l1;
} interp_tap;

/* Taps for output indices first .. first+n-1 of an in -> out resize. */
static void interp_axis_range(interp_tap *t, int in, int out, int first, int n)
{
    float scale = (float)in / (float)out;
    for (int k = 0; k < n; k++) {
        int i = first + k;
        if (in == out) {
            t[k].i0 = t[k].i1 = i;
            t[k].l0 = 1.0f, t[k].l1 = 0.0f;
            continue;
        }
        double src = (double)scale * (i + 0.5) - 0.5;
        if (src < 0) src = 0;
        int i0 = (int)src;
        int i1 = i0 + (i0 < in - 1 ? 1 : 0);
        double d = src - i0;
        float l1 = (float)(d < 0 ? 0 : d > 1 ? 1 : d);
        t[k].i0 = i0, t[k].i1 = i1;
        t[k].l1 = l1;
        t[k].l0 = 1.0f - l1;
    }
}

/* One output row from two source rows r0 (weight h0) and r1 (weight h1). */
static void interp_row(float *out, const float *r0, const float *r1, float h0, float h1, const interp_tap *tx, int n)
{
    for (int x = 0; x < n; x++) {
        int a = tx[x].i0, b = tx[x].i1;
        float w00 = h0 * tx[x].l0, w01 = h0 * tx[x].l1, w10 = h1 * tx[x].l0, w11 = h1 * tx[x].l1;
        double s = (double)r0[a] * w00;
        s += (double)r0[b] * w01;
        s += (double)r1[a] * w10;
        s += (double)r1[b] * w11;
        out[x] = (float)s;
    }
}

#define INTERP_BLOCK 512

// in [ih][iw] -> out [oh][ow]   (F.interpolate(mode='bilinear', align_corners=False), float32)
// ref: aten/src/ATen/native/cpu/UpSampleKernel.cpp cpu_upsample_linear_channels_last
// No heap allocation: output columns are processed in blocks with stack-held taps.
void ms_interp_bilinear(const float *in, int iw, int ih, float *out, int ow, int oh)
{
    interp_tap tx[INTERP_BLOCK];
    for (int xb = 0; xb < ow; xb += INTERP_BLOCK) {
        int n = ow - xb < INTERP_BLOCK ? ow - xb : INTERP_BLOCK;
        interp_axis_range(tx, iw, ow, xb, n);
        for (int y = 0; y < oh; y++) {
            interp_tap ty;
            interp_axis_range(&ty, ih, oh, y, 1);
            interp_row(out + (size_t)y * ow + xb, in + (size_t)ty.i0 * iw, in + (size_t)ty.i1 * iw, ty.l0, ty.l1, tx, n);
        }
    }
}

/* The taps of both resizes of Sam.postprocess_masks, shared by every row band. */
typedef struct {
    const float *low_res;
    int lowres, neww, W, H;
    interp_tap *ax, *ay, *bx, *by; /* low-res -> target (cropped) in x, y; crop -> (W, H) in x, y */
    float *out;                    /* [H][W] logits, or NULL */
    uint8_t *mask;                 /* [H][W] logits > 0, or NULL */
    float *scratch;                /* per task: 2 cropped target rows + 1 output row */
    int n_tasks;
} post_plan;

/* Output rows [y0, y1): each from two target-size rows, which are computed from the low-res
 * logits with exactly the operations of the two-step reference, and at most two held at once. */
static void post_rows(const post_plan *p, int y0, int y1, float *scratch)
{
    int neww = p->neww, lowres = p->lowres, W = p->W;
    float *i0row = scratch, *i1row = scratch + neww, *orow = scratch + 2 * (size_t)neww;
    const interp_tap *ax = p->ax, *ay = p->ay, *bx = p->bx, *by = p->by;
    int have0 = -1, have1 = -1; /* target-size row held in i0row / i1row */
    for (int y = y0; y < y1; y++) {
        int r0 = by[y].i0, r1 = by[y].i1;
        if (have0 != r0) {
            if (have1 == r0) {
                float *t = i0row;
                i0row = i1row, i1row = t;
                have1 = -1;
            } else {
                interp_row(i0row, p->low_res + (size_t)ay[r0].i0 * lowres, p->low_res + (size_t)ay[r0].i1 * lowres,
                           ay[r0].l0, ay[r0].l1, ax, neww);
            }
            have0 = r0;
        }
        if (have1 != r1) {
            if (r1 == r0) {
                memcpy(i1row, i0row, sizeof(float) * (size_t)neww);
            } else {
                interp_row(i1row, p->low_res + (size_t)ay[r1].i0 * lowres, p->low_res + (size_t)ay[r1].i1 * lowres,
                           ay[r1].l0, ay[r1].l1, ax, neww);
            }
            have1 = r1;
        }
        float *o = p->out ? p->out + (size_t)y * W : orow;
        interp_row(o, i0row, i1row, by[y].l0, by[y].l1, bx, W);
        if (p->mask) {
            uint8_t *m = p->mask + (size_t)y * W;
            for (int x = 0; x < W; x++) m[x] = o[x] > 0.0f; /* Sam.mask_threshold = 0.0 */
        }
    }
}

static void post_task(void *ctx, int task, int thread)
{
    const post_plan *p = ctx;
    int y0 = (int)((int64_t)p->H * task / p->n_tasks), y1 = (int)((int64_t)p->H * (task + 1) / p->n_tasks);
    post_rows(p, y0, y1, p->scratch + (size_t)task * (2 * (size_t)p->neww + p->W));
}

// low_res [lowres][lowres] -> out [H][W] logits and/or mask [H][W] (logit > 0)
// ref: segment_anything/modeling/sam.py Sam.postprocess_masks: interpolate to target x target,
//      crop [:newh, :neww], interpolate to (H, W); SamPredictor.predict thresholds at 0.0.
//      Fused: only the target-size rows the second resize reads are computed, never the whole
//      target x target intermediate; row bands run in parallel on the pool.
static medseg_status postprocess(const float *low_res, int lowres, int target, int neww, int newh, int W, int H,
                                 float *out, uint8_t *mask, ms_pool *pool, medseg_error *err)
{
    if (!low_res || (!out && !mask) || lowres <= 0 || target <= 0 || neww <= 0 || newh <= 0 || neww > target ||
        newh > target || W <= 0 || H <= 0 || W > MEDSEG_MAX_DIM || H > MEDSEG_MAX_DIM)
        return ms_error(err, MEDSEG_ERR_ARG, "postprocess: bad sizes (low-res %d, target %d, crop %dx%d, out %dx%d)",
                        lowres, target, neww, newh, W, H);
    int n_tasks = pool ? 4 * ms_pool_size(pool) : 1;
    if (n_tasks > H) n_tasks = H;
    size_t ntaps = (size_t)neww + newh + W + H;
    size_t per_task = 2 * (size_t)neww + W;
    size_t bytes = sizeof(interp_tap) * ntaps + sizeof(float) * per_task * n_tasks;
    uint8_t *mem = ms_malloc(bytes, err, "mask postprocessing scratch");
    if (!mem) return MEDSEG_ERR_NOMEM;
    post_plan p = {low_res, lowres, neww, W, H, NULL, NULL, NULL, NULL, out, mask, NULL, n_tasks};
    p.ax = (interp_tap *)mem, p.ay = p.ax + neww, p.bx = p.ay + newh, p.by = p.bx + W;
    p.scratch = (float *)(p.by + H);
    interp_axis_range(p.ax, lowres, target, 0, neww);
    interp_axis_range(p.ay, lowres, target, 0, newh);
    interp_axis_range(p.bx, neww, W, 0, W);
    interp_axis_range(p.by, newh, H, 0, H);
    ms_pool_run(pool, n_tasks, post_task, &p);
    free(mem);
    return MEDSEG_OK;
}

medseg_status ms_postprocess_mask(const float *low_res, int lowres, int target, int neww, int newh, int W, int H,
                                  float *out, medseg_error *err)
{
    return postprocess(low_res, lowres, target, neww, newh, W, H, out, NULL, NULL, err);
}

medseg_status ms_postprocess_mask_binary(const float *low_res, int lowres, int target, int neww, int newh, int W,
                                         int H, uint8_t *mask, ms_pool *pool, medseg_error *err)
{
    return postprocess(low_res, lowres, target, neww, newh, W, H, NULL, mask, pool, err);
}

/* ------------------------------------------------------------------ MedSAM / LiteMedSAM */

float ms_sigmoidf(float x)
{
    return (float)(1.0 / (1.0 + exp(-(double)x)));
}

typedef struct {
    const float *src; /* [croph][stride] */
    int stride, W, H;
    const interp_tap *tx, *ty;
    int sigmoid_first;
    float *out;
    uint8_t *mask;
    float *scratch; /* per task: one output row */
    int n_tasks;
} direct_plan;

static void direct_task(void *ctx, int task, int thread)
{
    (void)thread;
    const direct_plan *p = ctx;
    int y0 = (int)((int64_t)p->H * task / p->n_tasks), y1 = (int)((int64_t)p->H * (task + 1) / p->n_tasks);
    float *row = p->scratch + (size_t)task * p->W;
    for (int y = y0; y < y1; y++) {
        float *o = p->out ? p->out + (size_t)y * p->W : row;
        const interp_tap *t = &p->ty[y];
        interp_row(o, p->src + (size_t)t->i0 * p->stride, p->src + (size_t)t->i1 * p->stride, t->l0, t->l1, p->tx,
                   p->W);
        if (!p->mask) continue;
        uint8_t *m = p->mask + (size_t)y * p->W;
        if (p->sigmoid_first)
            for (int x = 0; x < p->W; x++) m[x] = o[x] > 0.5f;
        else
            for (int x = 0; x < p->W; x++) m[x] = ms_sigmoidf(o[x]) > 0.5f;
    }
}

// low_res [lowres][lowres] -> out [H][W] (probabilities or logits) and/or mask [H][W]
// ref: bowang-lab/MedSAM@d71e8a1 MedSAM_Inference.py medsam_inference (sigmoid, F.interpolate
//      to (H, W), > 0.5); bowang-lab/MedSAM@b0fab47 CVPR24_LiteMedSAM_infer.py
//      MedSAM_Lite.postprocess_masks (crop [:newh, :neww], F.interpolate to (H, W)) and
//      medsam_inference (sigmoid, > 0.5)
medseg_status ms_postprocess_direct(const float *low_res, int lowres, int cropw, int croph, int sigmoid_first, int W,
                                    int H, float *out, uint8_t *mask, ms_pool *pool, medseg_error *err)
{
    if (!low_res || (!out && !mask) || lowres <= 0 || cropw <= 0 || croph <= 0 || cropw > lowres || croph > lowres ||
        W <= 0 || H <= 0 || W > MEDSEG_MAX_DIM || H > MEDSEG_MAX_DIM)
        return ms_error(err, MEDSEG_ERR_ARG, "postprocess: bad sizes (low-res %d, crop %dx%d, out %dx%d)", lowres,
                        cropw, croph, W, H);
    int n_tasks = pool ? 4 * ms_pool_size(pool) : 1;
    if (n_tasks > H) n_tasks = H;
    size_t src_n = sigmoid_first ? (size_t)croph * cropw : 0;
    size_t bytes = sizeof(interp_tap) * ((size_t)W + H) + sizeof(float) * ((size_t)W * n_tasks + src_n);
    uint8_t *mem = ms_malloc(bytes, err, "mask postprocessing scratch");
    if (!mem) return MEDSEG_ERR_NOMEM;
    interp_tap *tx = (interp_tap *)mem, *ty = tx + W;
    float *scratch = (float *)(ty + H), *sig = scratch + (size_t)W * n_tasks;
    interp_axis_range(tx, cropw, W, 0, W);
    interp_axis_range(ty, croph, H, 0, H);
    direct_plan p = {low_res, lowres, W, H, tx, ty, sigmoid_first, out, mask, scratch, n_tasks};
    if (sigmoid_first) { /* torch.sigmoid(low_res_logits) before F.interpolate */
        for (int y = 0; y < croph; y++)
            for (int x = 0; x < cropw; x++) sig[(size_t)y * cropw + x] = ms_sigmoidf(low_res[(size_t)y * lowres + x]);
        p.src = sig;
        p.stride = cropw;
    }
    ms_pool_run(pool, n_tasks, direct_task, &p);
    free(mem);
    return MEDSEG_OK;
}
