/* Overlay rendering (see overlay.h). Pure pixel drawing into an RGB copy of the image. */
#include "workflow/overlay.h"
#include "io/png.h"
#include "workflow/preprocess.h"

#include <math.h>
#include <stdlib.h>

static void put(uint8_t *rgb, int w, int h, int x, int y, const uint8_t c[3])
{
    if (x < 0 || y < 0 || x >= w || y >= h) return;
    uint8_t *p = rgb + ((size_t)y * w + x) * 3;
    p[0] = c[0], p[1] = c[1], p[2] = c[2];
}

static void fill_rect(uint8_t *rgb, int w, int h, int x0, int y0, int x1, int y1, const uint8_t c[3])
{
    for (int y = y0; y <= y1; y++)
        for (int x = x0; x <= x1; x++) put(rgb, w, h, x, y, c);
}

static void draw_dot(uint8_t *rgb, int w, int h, float cx, float cy, int r, int border, const uint8_t fill[3],
                     const uint8_t edge[3])
{
    int x0 = (int)floorf(cx) - r - 1, x1 = (int)ceilf(cx) + r + 1;
    int y0 = (int)floorf(cy) - r - 1, y1 = (int)ceilf(cy) + r + 1;
    for (int y = y0; y <= y1; y++)
        for (int x = x0; x <= x1; x++) {
            float dx = (float)x + 0.5f - cx, dy = (float)y + 0.5f - cy;
            float d = sqrtf(dx * dx + dy * dy);
            if (d <= (float)r) put(rgb, w, h, x, y, d > (float)(r - border) ? edge : fill);
        }
}

medseg_status ms_overlay_write(const char *path, const medseg_image *img, const uint8_t *mask, int w, int h,
                               const medseg_prompt *prompt, medseg_error *err)
{
    if (!img || !img->data || !mask || img->width != w || img->height != h || w <= 0 || h <= 0)
        return ms_error(err, MEDSEG_ERR_ARG, "%s: overlay: mask size %dx%d does not match the image", path, w, h);
    uint8_t *rgb = ms_malloc((size_t)w * h * 3, err, "overlay image");
    if (!rgb) return MEDSEG_ERR_NOMEM;
    ms_image_to_rgb(img, rgb);

    static const uint8_t tint[3] = {30, 144, 255}, outline[3] = {255, 215, 0};
    static const uint8_t box_c[3] = {0, 230, 64}, pos_c[3] = {20, 200, 60}, neg_c[3] = {230, 30, 30},
                         edge_c[3] = {15, 15, 15};
    int side = w < h ? w : h;
    int thick = side / 400 + 1;

    /* translucent tint: 55 % image, 45 % colour */
    for (size_t i = 0; i < (size_t)w * h; i++)
        if (mask[i])
            for (int c = 0; c < 3; c++) rgb[3 * i + c] = (uint8_t)((rgb[3 * i + c] * 55 + tint[c] * 45 + 50) / 100);
    /* outline: mask pixels with a 4-neighbour outside the mask (or on the image border) */
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            if (!mask[(size_t)y * w + x]) continue;
            int edge = x == 0 || y == 0 || x == w - 1 || y == h - 1 || !mask[(size_t)y * w + x - 1] ||
                       !mask[(size_t)y * w + x + 1] || !mask[(size_t)(y - 1) * w + x] || !mask[(size_t)(y + 1) * w + x];
            if (edge) fill_rect(rgb, w, h, x - (thick - 1) / 2, y - (thick - 1) / 2, x + thick / 2, y + thick / 2, outline);
        }
    if (prompt) {
        if (prompt->has_box) {
            int bx0 = (int)lroundf(prompt->box[0]), by0 = (int)lroundf(prompt->box[1]);
            int bx1 = (int)lroundf(prompt->box[2]), by1 = (int)lroundf(prompt->box[3]);
            int t = thick + 1;
            fill_rect(rgb, w, h, bx0, by0, bx1, by0 + t - 1, box_c);
            fill_rect(rgb, w, h, bx0, by1 - t + 1, bx1, by1, box_c);
            fill_rect(rgb, w, h, bx0, by0, bx0 + t - 1, by1, box_c);
            fill_rect(rgb, w, h, bx1 - t + 1, by0, bx1, by1, box_c);
        }
        int r = side / 90 + 4, border = r / 4 + 1;
        int n = prompt->n_points < 0 ? 0 : prompt->n_points > MEDSEG_MAX_POINTS ? MEDSEG_MAX_POINTS : prompt->n_points;
        for (int i = 0; i < n; i++)
            draw_dot(rgb, w, h, prompt->points[i][0], prompt->points[i][1], r, border,
                     prompt->labels[i] == 1 ? pos_c : neg_c, edge_c);
    }
    medseg_status st = ms_png_write_rgb8(path, w, h, rgb, err);
    free(rgb);
    return st;
}
