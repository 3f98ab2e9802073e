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

// low_res [lowres][lowres] -> out [H][W]
// ref: segment_anything/modeling/sam.py Sam.postprocess_masks: interpolate to target x target,
//      crop [:newh, :neww], interpolate to (H, W). Fused: only the target-size rows the second
//      resize reads are computed (each with exactly the operations of the two-step reference,
//      so the result is identical to it), and never more than two of them are held.
medseg_status ms_postprocess_mask(const float *low_res, int lowres, int target, int neww, int newh, int W, int H,
                                  float *out, medseg_error *err)
{
    if (!low_res || !out || lowres <= 0 || target <= 0 || neww <= 0 || newh <= 0 || neww > target || newh > target ||
        W <= 0 || H <= 0 || W > MEDSEG_MAX_DIM || H > MEDSEG_MAX_DIM)
        return ms_error(err, MEDSEG_ERR_ARG, "postprocess: bad sizes (low-res %d, target %d, crop %dx%d, out %dx%d)",
                        lowres, target, neww, newh, W, H);
    size_t ntaps = (size_t)neww + newh + W + H;
    size_t bytes = sizeof(interp_tap) * ntaps + sizeof(float) * 2 * (size_t)neww;
    uint8_t *mem = ms_malloc(bytes, err, "mask postprocessing scratch");
    if (!mem) return MEDSEG_ERR_NOMEM;
    interp_tap *ax = (interp_tap *)mem, *ay = ax + neww, *bx = ay + newh, *by = bx + W;
    float *i0row = (float *)(by + H), *i1row = i0row + neww; /* target-size rows, cropped */
    interp_axis_range(ax, lowres, target, 0, neww);
    interp_axis_range(ay, lowres, target, 0, newh);
    interp_axis_range(bx, neww, W, 0, W);
    interp_axis_range(by, newh, H, 0, H);

    int have0 = -1, have1 = -1; /* target-size row held in i0row / i1row */
    for (int y = 0; y < H; y++) {
        int r0 = by[y].i0, r1 = by[y].i1;
        if (have0 != r0) {
            if (have1 == r0) {
                float *t = i0row;
                i0row = i1row, i1row = t;
                have1 = -1;
            } else {
                interp_row(i0row, low_res + (size_t)ay[r0].i0 * lowres, low_res + (size_t)ay[r0].i1 * lowres, ay[r0].l0,
                           ay[r0].l1, ax, neww);
            }
            have0 = r0;
        }
        if (have1 != r1) {
            if (r1 == r0) {
                memcpy(i1row, i0row, sizeof(float) * (size_t)neww);
            } else {
                interp_row(i1row, low_res + (size_t)ay[r1].i0 * lowres, low_res + (size_t)ay[r1].i1 * lowres, ay[r1].l0,
                           ay[r1].l1, ax, neww);
            }
            have1 = r1;
        }
        interp_row(out + (size_t)y * W, i0row, i1row, by[y].l0, by[y].l1, bx, W);
    }
    free(mem);
    return MEDSEG_OK;
}
