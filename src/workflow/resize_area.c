/* OpenCV 4.6 cv::resize(src, dst, (nw, nh), interpolation=INTER_AREA) on 8-bit images,
 * bit-exact: the resize of LiteMedSAM's resize_longest_side (bowang-lab/MedSAM@b0fab47, branch
 * LiteMedSAM, CVPR24_LiteMedSAM_infer.py resize_longest_side).
 *
 * ref: opencv 4.6.0 modules/imgproc/src/resize.cpp:
 *   cv::resize / hal::resize   scale_x = 1 / (nw / w) (both float64), "fast" when both scales are
 *                              integers (|scale - round(scale)| < DBL_EPSILON)
 *   resizeAreaFast_ + ResizeAreaFastVec (integer factors): 2x2 -> (a + b + c + d + 2) >> 2;
 *                              other factors: int sum * (1.f / area), rounded half to even
 *   computeResizeAreaTab + ResizeArea_Invoker (downscale by a non-integer factor): per-axis
 *                              (source, weight) tables in float64 -> float weights; rows are
 *                              accumulated horizontally in float, then vertically in float,
 *                              rounded half to even (saturate_cast<uchar>(float))
 *   INTER_AREA when enlarging: the bilinear path with the "area" coefficients
 *                              (fx = (dx+1) - (sx+1) / scale, fractional part), 11-bit fixed
 *                              point, VResizeLinearVec_32s8u's rounding (16-bit mul_hi).
 * Every path is compared with cv2.resize on random images by tests/test_preset_litemedsam.c
 * (through tests/preset_oracle.py). */
#include "workflow/preprocess.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* saturate_cast<uchar>(float): round half to even (cvRound = lrintf in the default mode) */
static uint8_t sat_u8f(float v)
{
    long r = lrintf(v);
    return (uint8_t)(r < 0 ? 0 : r > 255 ? 255 : r);
}

/* ------------------------------------------------------------------ integer factors */

// src [h][w][c] -> dst [h/sy][w/sx][c], sx, sy integers, w = sx * nw, h = sy * nh
static void area_fast(const uint8_t *src, int w, int c, uint8_t *dst, int nw, int nh, int sx, int sy)
{
    size_t srow = (size_t)w * c, drow = (size_t)nw * c;
    if (sx == 2 && sy == 2) { /* ResizeAreaFastVec fast_mode: integer mean with +2 rounding */
        for (int y = 0; y < nh; y++) {
            const uint8_t *s0 = src + (size_t)(2 * y) * srow, *s1 = s0 + srow;
            uint8_t *d = dst + (size_t)y * drow;
            for (int x = 0; x < nw; x++)
                for (int ch = 0; ch < c; ch++) {
                    size_t i = (size_t)(2 * x) * c + ch;
                    d[(size_t)x * c + ch] = (uint8_t)((s0[i] + s0[i + c] + s1[i] + s1[i + c] + 2) >> 2);
                }
        }
        return;
    }
    float scale = 1.f / (float)(sx * sy);
    for (int y = 0; y < nh; y++) {
        uint8_t *d = dst + (size_t)y * drow;
        for (int x = 0; x < nw; x++)
            for (int ch = 0; ch < c; ch++) {
                int sum = 0;
                for (int j = 0; j < sy; j++) {
                    const uint8_t *s = src + (size_t)(y * sy + j) * srow + (size_t)x * sx * c + ch;
                    for (int i = 0; i < sx; i++) sum += s[(size_t)i * c];
                }
                d[(size_t)x * c + ch] = sat_u8f((float)sum * scale);
            }
    }
}

/* ------------------------------------------------------------------ general downscale */

typedef struct {
    int di, si; /* destination index, source index (pixels, not channels) */
    float alpha;
} area_tap;

/* ref: resize.cpp computeResizeAreaTab. tab needs at most 2 * ssize + dsize entries. */
static int area_tab(int ssize, int dsize, double scale, area_tap *tab)
{
    int k = 0;
    for (int dx = 0; dx < dsize; dx++) {
        double fsx1 = dx * scale, fsx2 = fsx1 + scale;
        double cell = scale < ssize - fsx1 ? scale : ssize - fsx1;
        int sx1 = (int)ceil(fsx1), sx2 = (int)floor(fsx2);
        if (sx2 > ssize - 1) sx2 = ssize - 1;
        if (sx1 > sx2) sx1 = sx2;
        if (sx1 - fsx1 > 1e-3) tab[k++] = (area_tap){dx, sx1 - 1, (float)((sx1 - fsx1) / cell)};
        for (int sx = sx1; sx < sx2; sx++) tab[k++] = (area_tap){dx, sx, (float)(1.0 / cell)};
        if (fsx2 - sx2 > 1e-3) {
            double a = fsx2 - sx2 < 1.0 ? fsx2 - sx2 : 1.0;
            if (a > cell) a = cell;
            tab[k++] = (area_tap){dx, sx2, (float)(a / cell)};
        }
    }
    return k;
}

// ref: resize.cpp ResizeArea_Invoker::operator() (T = uchar, WT = float)
static medseg_status area_general(const uint8_t *src, int w, int h, int c, uint8_t *dst, int nw, int nh,
                                  double scale_x, double scale_y, medseg_error *err)
{
    size_t nx = 2 * (size_t)w + nw + 2, ny = 2 * (size_t)h + nh + 2, dw = (size_t)nw * c;
    area_tap *xt = malloc(nx * sizeof *xt), *yt = malloc(ny * sizeof *yt);
    float *buf = malloc(2 * dw * sizeof(float));
    if (!xt || !yt || !buf) {
        free(xt), free(yt), free(buf);
        return ms_error(err, MEDSEG_ERR_NOMEM, "resize: out of memory (%dx%d -> %dx%d)", w, h, nw, nh);
    }
    float *sum = buf + dw;
    int nxt = area_tab(w, nw, scale_x, xt), nyt = area_tab(h, nh, scale_y, yt);
    for (size_t i = 0; i < dw; i++) sum[i] = 0.f;
    int prev_dy = yt[0].di;
    for (int j = 0; j < nyt; j++) {
        float beta = yt[j].alpha;
        int dy = yt[j].di;
        const uint8_t *S = src + (size_t)yt[j].si * w * c;
        for (size_t i = 0; i < dw; i++) buf[i] = 0.f;
        for (int k = 0; k < nxt; k++) {
            float a = xt[k].alpha;
            size_t di = (size_t)xt[k].di * c, si = (size_t)xt[k].si * c;
            for (int ch = 0; ch < c; ch++) {
                float prod = (float)S[si + ch] * a;
                buf[di + ch] = buf[di + ch] + prod;
            }
        }
        if (dy != prev_dy) {
            uint8_t *D = dst + (size_t)prev_dy * dw;
            for (size_t i = 0; i < dw; i++) {
                D[i] = sat_u8f(sum[i]);
                sum[i] = beta * buf[i];
            }
            prev_dy = dy;
        } else {
            for (size_t i = 0; i < dw; i++) {
                float prod = beta * buf[i];
                sum[i] = sum[i] + prod;
            }
        }
    }
    uint8_t *D = dst + (size_t)prev_dy * dw;
    for (size_t i = 0; i < dw; i++) D[i] = sat_u8f(sum[i]);
    free(xt), free(yt), free(buf);
    return MEDSEG_OK;
}

/* ------------------------------------------------------------------ enlarging */

#define COEF_BITS 11
#define COEF_ONE (1 << COEF_BITS)

/* One axis of INTER_AREA's bilinear emulation: source index and the two 11-bit weights.
 * ref: resize.cpp hal::resize, the `area_mode` branch of the coefficient tables */
static void linear_area_axis(int ssize, int dsize, double scale, double inv_scale, int *ofs, short *coef, int *lim)
{
    int xmax = dsize;
    for (int d = 0; d < dsize; d++) {
        int s = (int)floor(d * scale);
        float f = (float)((d + 1) - (s + 1) * inv_scale);
        f = f <= 0 ? 0.f : f - floorf(f);
        if (lim && s + 1 >= ssize) { /* x only: OpenCV clamps the column taps, not the row taps */
            if (d < xmax) xmax = d;
            if (s >= ssize - 1) f = 0, s = ssize - 1;
        }
        ofs[d] = s;
        coef[2 * d] = (short)lrintf((1.f - f) * COEF_ONE);
        coef[2 * d + 1] = (short)lrintf(f * COEF_ONE);
    }
    if (lim) *lim = xmax;
}

static inline int16_t sat_s16(int v)
{
    return (int16_t)(v < -32768 ? -32768 : v > 32767 ? 32767 : v);
}

/* v_mul_hi of int16 lanes: (a * b) >> 16 */
static inline int mulhi16(int16_t a, int16_t b)
{
    return ((int)a * (int)b) >> 16;
}

// ref: resize.cpp resizeGeneric_ with HResizeLinear<uchar, int, short, 2048> and
//      VResizeLinear<uchar, int, short, FixedPtCast<int, uchar, 22>, VResizeLinearVec_32s8u>
static medseg_status area_enlarge(const uint8_t *src, int w, int h, int c, uint8_t *dst, int nw, int nh,
                                  double scale_x, double scale_y, double inv_x, double inv_y, medseg_error *err)
{
    size_t dw = (size_t)nw * c;
    int *xofs = malloc(sizeof(int) * (size_t)nw), *yofs = malloc(sizeof(int) * (size_t)nh);
    short *ax = malloc(sizeof(short) * 2 * (size_t)nw), *ay = malloc(sizeof(short) * 2 * (size_t)nh);
    int *rows = malloc(sizeof(int) * 2 * dw);
    if (!xofs || !yofs || !ax || !ay || !rows) {
        free(xofs), free(yofs), free(ax), free(ay), free(rows);
        return ms_error(err, MEDSEG_ERR_NOMEM, "resize: out of memory (%dx%d -> %dx%d)", w, h, nw, nh);
    }
    int xmax;
    linear_area_axis(w, nw, scale_x, inv_x, xofs, ax, &xmax);
    linear_area_axis(h, nh, scale_y, inv_y, yofs, ay, NULL);
    int *r0 = rows, *r1 = rows + dw;
    for (int dy = 0; dy < nh; dy++) {
        int sy[2] = {yofs[dy], yofs[dy] + 1};
        if (sy[1] > h - 1) sy[1] = h - 1;
        for (int k = 0; k < 2; k++) { /* HResizeLinear: two taps up to xmax, the edge pixel * 2048 after */
            const uint8_t *S = src + (size_t)sy[k] * w * c;
            int *D = k ? r1 : r0;
            for (int dx = 0; dx < nw; dx++)
                for (int ch = 0; ch < c; ch++) {
                    size_t sx = (size_t)xofs[dx] * c + ch;
                    D[(size_t)dx * c + ch] = dx < xmax ? S[sx] * ax[2 * dx] + S[sx + c] * ax[2 * dx + 1]
                                                       : S[sx] * COEF_ONE;
                }
        }
        int16_t b0 = ay[2 * dy], b1 = ay[2 * dy + 1];
        uint8_t *D = dst + (size_t)dy * dw;
        /* VResizeLinearVec_32s8u: per value ((S0 >> 4) * b0 >> 16) + ((S1 >> 4) * b1 >> 16) (16-bit
         * v_mul_hi), + 2 >> 2, saturated. cv2 4.6 (Debian) rounds this way on every column, row
         * tails and rows shorter than a vector included (checked against cv2 for widths 5..225;
         * FixedPtCast's (S0 b0 + S1 b1 + 2^21) >> 22 would differ by one on some values). */
        for (size_t x = 0; x < dw; x++) {
            int v = mulhi16(sat_s16(r0[x] >> 4), b0) + mulhi16(sat_s16(r1[x] >> 4), b1);
            v = (v + 2) >> 2;
            D[x] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
        }
    }
    free(xofs), free(yofs), free(ax), free(ay), free(rows);
    return MEDSEG_OK;
}

// src [h][w][c] uint8 -> dst [nh][nw][c] uint8
// ref: cv2.resize(src, (nw, nh), interpolation=cv2.INTER_AREA), OpenCV 4.6.0
medseg_status ms_resize_area_cv(const uint8_t *src, int w, int h, int c, uint8_t *dst, int nw, int nh,
                                medseg_error *err)
{
    if (!src || !dst || w <= 0 || h <= 0 || nw <= 0 || nh <= 0 || c <= 0 || c > 4 || w > MEDSEG_MAX_DIM ||
        h > MEDSEG_MAX_DIM || nw > MEDSEG_MAX_DIM || nh > MEDSEG_MAX_DIM)
        return ms_error(err, MEDSEG_ERR_ARG, "resize: bad sizes %dx%dx%d -> %dx%d", w, h, c, nw, nh);
    if (nw == w && nh == h) {
        memcpy(dst, src, (size_t)w * h * c);
        return MEDSEG_OK;
    }
    double inv_x = (double)nw / w, inv_y = (double)nh / h;
    double scale_x = 1. / inv_x, scale_y = 1. / inv_y;
    int isx = (int)lrint(scale_x), isy = (int)lrint(scale_y);
    int fast = fabs(scale_x - isx) < DBL_EPSILON && fabs(scale_y - isy) < DBL_EPSILON;
    if (scale_x >= 1 && scale_y >= 1) {
        if (fast && w == isx * nw && h == isy * nh) {
            area_fast(src, w, c, dst, nw, nh, isx, isy);
            return MEDSEG_OK;
        }
        return area_general(src, w, h, c, dst, nw, nh, scale_x, scale_y, err);
    }
    return area_enlarge(src, w, h, c, dst, nw, nh, scale_x, scale_y, inv_x, inv_y, err);
}
