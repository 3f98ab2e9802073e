/* The "sam" preprocessing preset, bit-exact with SamPredictor.set_image of segment-anything
 * @dca509f: ResizeLongestSide (PIL bilinear on uint8), normalise with the SAM mean/std in float32,
 * zero-pad right/bottom.
 * ref: segment_anything/utils/transforms.py ResizeLongestSide.apply_image/get_preprocess_shape,
 *      segment_anything/modeling/sam.py Sam.preprocess,
 *      Pillow 9.4 src/libImaging/Resample.c (precompute_coeffs, normalize_coeffs_8bpc,
 *      ImagingResampleHorizontal_8bpc/Vertical_8bpc, ImagingResampleInner). */
#include "workflow/preprocess.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void ms_longest_side_shape(int w, int h, int target, int *neww, int *newh)
{
    double s = target * 1.0 / (double)(h > w ? h : w);
    *newh = (int)((double)h * s + 0.5);
    *neww = (int)((double)w * s + 0.5);
}

#define PIL_PRECISION_BITS 22 /* 32 - 8 - 2 */

/* Pillow's triangle filter, support 1. */
static double pil_bilinear_filter(double x)
{
    if (x < 0.0) x = -x;
    if (x < 1.0) return 1.0 - x;
    return 0.0;
}

/* Fixed-point taps of one axis: for output i, taps k[i*ksize + j] over input xmin..xmin+n-1.
 * bounds[2i] = xmin, bounds[2i+1] = n. Returns ksize, or 0 on allocation failure.
 * ref: Resample.c precompute_coeffs + normalize_coeffs_8bpc */
static int pil_coeffs(int in_size, int out_size, int **bounds_out, int32_t **k_out)
{
    double scale = (double)((float)in_size - 0.0f) / out_size;
    double filterscale = scale < 1.0 ? 1.0 : scale;
    double support = 1.0 * filterscale;
    int ksize = (int)ceil(support) * 2 + 1;
    int *bounds = malloc(sizeof(int) * 2 * (size_t)out_size);
    double *pre = malloc(sizeof(double) * (size_t)ksize * out_size);
    int32_t *k = malloc(sizeof(int32_t) * (size_t)ksize * out_size);
    if (!bounds || !pre || !k) {
        free(bounds), free(pre), free(k);
        return 0;
    }
    for (int xx = 0; xx < out_size; xx++) {
        double center = 0.0 + (xx + 0.5) * scale;
        double ww = 0.0, ss = 1.0 / filterscale;
        int xmin = (int)(center - support + 0.5);
        if (xmin < 0) xmin = 0;
        int xmax = (int)(center + support + 0.5);
        if (xmax > in_size) xmax = in_size;
        xmax -= xmin;
        double *kk = pre + (size_t)xx * ksize;
        int x;
        for (x = 0; x < xmax; x++) {
            double wgt = pil_bilinear_filter((x + xmin - center + 0.5) * ss);
            kk[x] = wgt;
            ww += wgt;
        }
        for (x = 0; x < xmax; x++)
            if (ww != 0.0) kk[x] /= ww;
        for (; x < ksize; x++) kk[x] = 0;
        bounds[xx * 2] = xmin;
        bounds[xx * 2 + 1] = xmax;
    }
    for (size_t i = 0; i < (size_t)ksize * out_size; i++)
        k[i] = pre[i] < 0 ? (int32_t)(-0.5 + pre[i] * (1 << PIL_PRECISION_BITS))
                          : (int32_t)(0.5 + pre[i] * (1 << PIL_PRECISION_BITS));
    free(pre);
    *bounds_out = bounds;
    *k_out = k;
    return ksize;
}

static inline uint8_t pil_clip8(int32_t v)
{
    v >>= PIL_PRECISION_BITS;
    return v < 0 ? 0 : v > 255 ? 255 : (uint8_t)v;
}

/* rows [y0, y1) of src [h][w][c] -> dst [y1-y0][nw][c] */
static void pil_resample_horizontal(uint8_t *dst, const uint8_t *src, int w, int c, int nw, int y0, int y1,
                                    int ksize, const int *bounds, const int32_t *kk)
{
    for (int y = y0; y < y1; y++) {
        const uint8_t *in = src + (size_t)y * w * c;
        uint8_t *o = dst + (size_t)(y - y0) * nw * c;
        for (int x = 0; x < nw; x++) {
            int xmin = bounds[2 * x], n = bounds[2 * x + 1];
            const int32_t *k = kk + (size_t)x * ksize;
            const uint8_t *p = in + (size_t)xmin * c;
            if (c == 1) {
                int32_t s = 1 << (PIL_PRECISION_BITS - 1);
                for (int j = 0; j < n; j++) s += p[j] * k[j];
                o[x] = pil_clip8(s);
            } else if (c == 3) {
                int32_t s0 = 1 << (PIL_PRECISION_BITS - 1), s1 = s0, s2 = s0;
                for (int j = 0; j < n; j++) {
                    s0 += p[3 * j] * k[j];
                    s1 += p[3 * j + 1] * k[j];
                    s2 += p[3 * j + 2] * k[j];
                }
                o[3 * x] = pil_clip8(s0), o[3 * x + 1] = pil_clip8(s1), o[3 * x + 2] = pil_clip8(s2);
            } else {
                for (int ch = 0; ch < c; ch++) {
                    int32_t s = 1 << (PIL_PRECISION_BITS - 1);
                    for (int j = 0; j < n; j++) s += p[c * j + ch] * k[j];
                    o[c * x + ch] = pil_clip8(s);
                }
            }
        }
    }
}

/* src [*][w][c] (row 0 = bounds origin) -> dst [nh][w][c]; acc: w*c int32 scratch */
static void pil_resample_vertical(uint8_t *dst, const uint8_t *src, int rowlen, int nh, int ksize, const int *bounds,
                                  const int32_t *kk, int32_t *acc)
{
    for (int y = 0; y < nh; y++) {
        int ymin = bounds[2 * y], n = bounds[2 * y + 1];
        const int32_t *k = kk + (size_t)y * ksize;
        for (int i = 0; i < rowlen; i++) acc[i] = 1 << (PIL_PRECISION_BITS - 1);
        for (int j = 0; j < n; j++) {
            const uint8_t *in = src + (size_t)(ymin + j) * rowlen;
            int32_t kj = k[j];
            for (int i = 0; i < rowlen; i++) acc[i] += in[i] * kj;
        }
        uint8_t *o = dst + (size_t)y * rowlen;
        for (int i = 0; i < rowlen; i++) o[i] = pil_clip8(acc[i]);
    }
}

// src [h][w][c] uint8 -> dst [nh][nw][c] uint8
// ref: Pillow Image.resize((nw, nh), BILINEAR) -> ImagingResampleInner
medseg_status ms_resize_bilinear_pil(const uint8_t *src, int w, int h, int c, uint8_t *dst, int nw, int nh,
                                     medseg_error *err)
{
    if (w <= 0 || h <= 0 || nw <= 0 || nh <= 0 || c <= 0)
        return ms_error(err, MEDSEG_ERR_ARG, "resize: bad sizes %dx%d -> %dx%d", w, h, nw, nh);
    int need_h = nw != w, need_v = nh != h;
    if (!need_h && !need_v) {
        memcpy(dst, src, (size_t)w * h * c);
        return MEDSEG_OK;
    }
    int *bh = NULL, *bv = NULL;
    int32_t *kh = NULL, *kv = NULL, *acc = NULL;
    uint8_t *tmp = NULL;
    medseg_status st = MEDSEG_OK;
    int ksh = 0, ksv = 0;
    if (need_h && !(ksh = pil_coeffs(w, nw, &bh, &kh))) goto nomem;
    if (need_v && !(ksv = pil_coeffs(h, nh, &bv, &kv))) goto nomem;
    if (need_h && need_v) {
        /* Horizontal pass over only the source rows the vertical pass reads. */
        int yfirst = bv[0], ylast = bv[2 * nh - 2] + bv[2 * nh - 1];
        for (int y = 0; y < nh; y++) bv[2 * y] -= yfirst;
        tmp = malloc((size_t)(ylast - yfirst) * nw * c);
        acc = malloc(sizeof(int32_t) * (size_t)nw * c);
        if (!tmp || !acc) goto nomem;
        pil_resample_horizontal(tmp, src, w, c, nw, yfirst, ylast, ksh, bh, kh);
        pil_resample_vertical(dst, tmp, nw * c, nh, ksv, bv, kv, acc);
    } else if (need_h) {
        pil_resample_horizontal(dst, src, w, c, nw, 0, h, ksh, bh, kh);
    } else {
        acc = malloc(sizeof(int32_t) * (size_t)w * c);
        if (!acc) goto nomem;
        pil_resample_vertical(dst, src, w * c, nh, ksv, bv, kv, acc);
    }
    goto done;
nomem:
    st = ms_error(err, MEDSEG_ERR_NOMEM, "resize: out of memory (%dx%d -> %dx%d)", w, h, nw, nh);
done:
    free(bh), free(bv), free(kh), free(kv), free(acc), free(tmp);
    return st;
}

// img [h][w][1|3|4] -> dst [h][w][3]   (PIL convert('RGB'): grey replicated, alpha dropped)
void ms_image_to_rgb(const medseg_image *img, uint8_t *dst)
{
    size_t n = (size_t)img->width * img->height;
    const uint8_t *s = img->data;
    if (img->channels == 3) {
        memcpy(dst, s, n * 3);
    } else if (img->channels == 1) {
        for (size_t i = 0; i < n; i++) dst[3 * i] = dst[3 * i + 1] = dst[3 * i + 2] = s[i];
    } else {
        for (size_t i = 0; i < n; i++) dst[3 * i] = s[4 * i], dst[3 * i + 1] = s[4 * i + 1], dst[3 * i + 2] = s[4 * i + 2];
    }
}

/* RGB copy of any medseg_image (grey replicated, alpha dropped), or the image's own data when it
 * is already RGB (*owned = NULL). */
static const uint8_t *rgb_view(const medseg_image *img, uint8_t **owned, medseg_error *err)
{
    *owned = NULL;
    if (img->channels == 3) return img->data;
    size_t n;
    if (!ms_mul3_size((size_t)img->width, (size_t)img->height, 3, &n)) {
        ms_error(err, MEDSEG_ERR_NOMEM, "preprocess: image too large");
        return NULL;
    }
    *owned = ms_malloc(n, err, "RGB copy");
    if (!*owned) return NULL;
    ms_image_to_rgb(img, *owned);
    return *owned;
}

/* The resized shape inside the target x target input: longest side = target, each side in
 * [1, target]. */
static void fitted_shape(const medseg_image *img, int target, int *nw, int *nh)
{
    ms_longest_side_shape(img->width, img->height, target, nw, nh);
    *nw = *nw < 1 ? 1 : *nw > target ? target : *nw;
    *nh = *nh < 1 ? 1 : *nh > target ? target : *nh;
}

static const float sam_mean[3] = {123.675f, 116.28f, 103.53f};
static const float sam_std[3] = {58.395f, 57.12f, 57.375f};

// img [H][W][C] uint8 -> out [3][target][target] float32
// ref: segment_anything/predictor.py SamPredictor.set_image + modeling/sam.py Sam.preprocess
medseg_status ms_preprocess_sam(const medseg_image *img, int target, float *out, int *neww, int *newh,
                                medseg_error *err)
{
    if (!img || !img->data || img->width <= 0 || img->height <= 0 ||
        (img->channels != 1 && img->channels != 3 && img->channels != 4) || target <= 0)
        return ms_error(err, MEDSEG_ERR_ARG, "preprocess: invalid image or target size");
    int nw, nh;
    fitted_shape(img, target, &nw, &nh);
    /* A grey image is resized once and replicated: the three channels would be identical. */
    int c = img->channels == 1 ? 1 : 3;
    uint8_t *rgb = NULL;
    const uint8_t *src = img->data;
    if (img->channels == 4 && !(src = rgb_view(img, &rgb, err))) return err ? err->status : MEDSEG_ERR_NOMEM;
    uint8_t *rs = ms_malloc((size_t)nw * nh * c, err, "resized image");
    if (!rs) {
        free(rgb);
        return MEDSEG_ERR_NOMEM;
    }
    medseg_status st = ms_resize_bilinear_pil(src, img->width, img->height, c, rs, nw, nh, err);
    free(rgb);
    if (st) {
        free(rs);
        return st;
    }
    float lut[3][256];
    for (int ch = 0; ch < 3; ch++)
        for (int v = 0; v < 256; v++) lut[ch][v] = ((float)v - sam_mean[ch]) / sam_std[ch];
    size_t plane = (size_t)target * target;
    for (int y = 0; y < nh; y++) {
        float *o0 = out + (size_t)y * target, *o1 = o0 + plane, *o2 = o1 + plane;
        const uint8_t *r = rs + (size_t)y * nw * c;
        if (c == 1) {
            for (int x = 0; x < nw; x++) o0[x] = lut[0][r[x]], o1[x] = lut[1][r[x]], o2[x] = lut[2][r[x]];
        } else {
            for (int x = 0; x < nw; x++)
                o0[x] = lut[0][r[3 * x]], o1[x] = lut[1][r[3 * x + 1]], o2[x] = lut[2][r[3 * x + 2]];
        }
        size_t pad = sizeof(float) * (size_t)(target - nw);
        memset(o0 + nw, 0, pad), memset(o1 + nw, 0, pad), memset(o2 + nw, 0, pad);
    }
    for (int ch = 0; ch < 3; ch++)
        memset(out + ch * plane + (size_t)nh * target, 0, sizeof(float) * (size_t)(target - nh) * target);
    free(rs);
    if (neww) *neww = nw;
    if (newh) *newh = nh;
    return MEDSEG_OK;
}

/* (v - min) / clip(max - min, 1e-8): uint8 subtraction, float64 division, float32 result, as a
 * table over the 256 levels (entries outside [min, max] are never used).
 * ref: MedSAM_Inference.py module level / CVPR24_LiteMedSAM_infer.py MedSAM_infer_npz_2D:
 *      (img - img.min()) / np.clip(img.max() - img.min(), a_min=1e-8, a_max=None), then
 *      torch.tensor(...).float() */
static void minmax_lut(const uint8_t *v, size_t n, float lut[256])
{
    int lo = 255, hi = 0;
    for (size_t i = 0; i < n; i++) {
        if (v[i] < lo) lo = v[i];
        if (v[i] > hi) hi = v[i];
    }
    double den = hi - lo > 0 ? (double)(hi - lo) : 1e-8;
    for (int k = 0; k < 256; k++) lut[k] = k >= lo ? (float)((double)(k - lo) / den) : 0.0f;
}

// img [H][W][C] uint8 -> out [3][target][target] float32 in [0, 1]
// ref: bowang-lab/MedSAM@d71e8a1 MedSAM_Inference.py (module level): np.repeat to 3 channels,
//      transform.resize(img_3c, (1024, 1024), order=3, preserve_range=True,
//      anti_aliasing=True).astype(np.uint8), min-max, torch.tensor(...).float().permute(2, 0, 1)
//      (resize's default mode "reflect" is ndimage's "mirror")
medseg_status ms_preprocess_medsam(const medseg_image *img, int target, float *out, uint8_t *resized_u8,
                                   medseg_error *err)
{
    if (!img || !img->data || img->width <= 0 || img->height <= 0 ||
        (img->channels != 1 && img->channels != 3 && img->channels != 4) || target <= 0 || !out)
        return ms_error(err, MEDSEG_ERR_ARG, "preprocess: invalid image or target size");
    uint8_t *owned;
    const uint8_t *rgb = rgb_view(img, &owned, err);
    if (!rgb) return err ? err->status : MEDSEG_ERR_NOMEM;
    size_t plane = (size_t)target * target, n3 = plane * 3;
    double *f = ms_malloc(n3 * sizeof(double), err, "resized image");
    uint8_t *u8 = resized_u8 ? resized_u8 : (f ? ms_malloc(n3, err, "resized image") : NULL);
    medseg_status st = u8 ? MEDSEG_OK : MEDSEG_ERR_NOMEM;
    if (!st) st = ms_resize_spline3(rgb, img->width, img->height, 3, f, target, target, err);
    free(owned);
    if (!st) {
        /* .astype(np.uint8): truncation toward zero; values are clipped to [0, 255] already */
        for (size_t i = 0; i < n3; i++) {
            double v = f[i];
            u8[i] = (uint8_t)(v <= 0 ? 0 : v >= 255 ? 255 : (int)v);
        }
        float lut[256];
        minmax_lut(u8, n3, lut);
        for (size_t p = 0; p < plane; p++) {
            out[p] = lut[u8[3 * p]];
            out[plane + p] = lut[u8[3 * p + 1]];
            out[2 * plane + p] = lut[u8[3 * p + 2]];
        }
    }
    free(f);
    if (u8 != resized_u8) free(u8);
    return st;
}

// img [H][W][C] uint8 -> out [3][target][target] float32 in [0, 1], zero padded
// ref: bowang-lab/MedSAM@b0fab47 (branch LiteMedSAM) CVPR24_LiteMedSAM_infer.py
//      MedSAM_infer_npz_2D: resize_longest_side (scale = 256 / max(h, w), int(x * scale + 0.5),
//      cv2.resize INTER_AREA), min-max, pad_image (np.pad zeros right/bottom), .float(), CHW
medseg_status ms_preprocess_litemedsam(const medseg_image *img, int target, float *out, int *neww, int *newh,
                                       uint8_t *resized_u8, medseg_error *err)
{
    if (!img || !img->data || img->width <= 0 || img->height <= 0 ||
        (img->channels != 1 && img->channels != 3 && img->channels != 4) || target <= 0 || !out)
        return ms_error(err, MEDSEG_ERR_ARG, "preprocess: invalid image or target size");
    int nw, nh;
    fitted_shape(img, target, &nw, &nh);
    /* INTER_AREA treats channels independently: a grey image is resized once and replicated */
    int c = img->channels == 1 ? 1 : 3;
    uint8_t *owned = NULL;
    const uint8_t *src = img->data;
    if (img->channels == 4 && !(src = rgb_view(img, &owned, err))) return err ? err->status : MEDSEG_ERR_NOMEM;
    uint8_t *rs = ms_malloc((size_t)nw * nh * c, err, "resized image");
    medseg_status st = rs ? ms_resize_area_cv(src, img->width, img->height, c, rs, nw, nh, err) : MEDSEG_ERR_NOMEM;
    free(owned);
    if (st) {
        free(rs);
        return st;
    }
    float lut[256];
    minmax_lut(rs, (size_t)nw * nh * c, lut);
    size_t plane = (size_t)target * target;
    memset(out, 0, 3 * plane * sizeof(float));
    for (int y = 0; y < nh; y++)
        for (int x = 0; x < nw; x++) {
            const uint8_t *p = rs + ((size_t)y * nw + x) * c;
            size_t o = (size_t)y * target + x;
            out[o] = lut[p[0]];
            out[plane + o] = lut[p[c == 1 ? 0 : 1]];
            out[2 * plane + o] = lut[p[c == 1 ? 0 : 2]];
            if (resized_u8) {
                uint8_t *r = resized_u8 + ((size_t)y * nw + x) * 3;
                r[0] = p[0], r[1] = p[c == 1 ? 0 : 1], r[2] = p[c == 1 ? 0 : 2];
            }
        }
    free(rs);
    if (neww) *neww = nw;
    if (newh) *newh = nh;
    return MEDSEG_OK;
}
