/* Prompt simulation for evaluation (protocols in prompt_sim.h and docs/eval.md). */
#include "workflow/prompt_sim.h"
#include "workflow/metrics.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- MT19937 */

// ref: Matsumoto & Nishimura, mt19937ar.c init_genrand / genrand_int32 (numpy's legacy
// RandomState uses the same generator and seeding for an integer seed)
void ms_mt_seed(ms_mt19937 *r, uint32_t seed)
{
    r->mt[0] = seed;
    for (int i = 1; i < 624; i++)
        r->mt[i] = 1812433253u * (r->mt[i - 1] ^ (r->mt[i - 1] >> 30)) + (uint32_t)i;
    r->mti = 624;
}

uint32_t ms_mt_u32(ms_mt19937 *r)
{
    if (r->mti >= 624) {
        for (int i = 0; i < 624; i++) {
            uint32_t y = (r->mt[i] & 0x80000000u) | (r->mt[(i + 1) % 624] & 0x7fffffffu);
            r->mt[i] = r->mt[(i + 397) % 624] ^ (y >> 1) ^ ((y & 1u) ? 0x9908b0dfu : 0u);
        }
        r->mti = 0;
    }
    uint32_t y = r->mt[r->mti++];
    y ^= y >> 11;
    y ^= (y << 7) & 0x9d2c5680u;
    y ^= (y << 15) & 0xefc60000u;
    y ^= y >> 18;
    return y;
}

// ref: numpy legacy bounded integers (random_bounded_uint64 with use_masked, 32-bit branch)
uint64_t ms_mt_choice(ms_mt19937 *r, uint64_t n)
{
    if (n <= 1) return 0;
    uint64_t max = n - 1, mask = max;
    mask |= mask >> 1;
    mask |= mask >> 2;
    mask |= mask >> 4;
    mask |= mask >> 8;
    mask |= mask >> 16;
    uint64_t v;
    do v = ms_mt_u32(r) & mask;
    while (v > max);
    return v;
}

/* ---------------------------------------------------------------- boxes */

int ms_mask_bbox(const uint8_t *mask, int w, int h, int box[4])
{
    int x0 = w, y0 = h, x1 = -1, y1 = -1;
    for (int y = 0; y < h; y++) {
        const uint8_t *row = mask + (size_t)y * w;
        for (int x = 0; x < w; x++) {
            if (!row[x]) continue;
            if (x < x0) x0 = x;
            if (x > x1) x1 = x;
            if (y < y0) y0 = y;
            y1 = y;
        }
    }
    if (x1 < 0) return 0;
    box[0] = x0;
    box[1] = y0;
    box[2] = x1;
    box[3] = y1;
    return 1;
}

// ref: MedSAM train_one_gpu.py NpyDataset.__getitem__ (bbox_shift: each side moved outward by
// randint(0, shift)); drawn here with ms_mt_choice in the order x0, x1, y0, y1
void ms_box_jitter(int box[4], int jitter, int w, int h, ms_mt19937 *r)
{
    if (jitter <= 0) return;
    uint64_t n = (uint64_t)jitter + 1;
    int dx0 = (int)ms_mt_choice(r, n), dx1 = (int)ms_mt_choice(r, n);
    int dy0 = (int)ms_mt_choice(r, n), dy1 = (int)ms_mt_choice(r, n);
    box[0] = box[0] - dx0 < 0 ? 0 : box[0] - dx0;
    box[2] = box[2] + dx1 > w - 1 ? w - 1 : box[2] + dx1;
    box[1] = box[1] - dy0 < 0 ? 0 : box[1] - dy0;
    box[3] = box[3] + dy1 > h - 1 ? h - 1 : box[3] + dy1;
}

/* ---------------------------------------------------------------- points */

// mask [h, w] -> out [h, w]: squared distance to the nearest unset pixel, frame of background
medseg_status ms_edt_inside_padded(double *out, const uint8_t *mask, int w, int h, medseg_error *err)
{
    int pw = w + 2, ph = h + 2;
    size_t pn = (size_t)pw * (size_t)ph;
    uint8_t *site = ms_malloc(pn, err, "edt sites");
    double *d = ms_malloc(pn * sizeof(double), err, "edt");
    if (!site || !d) {
        free(site);
        free(d);
        return MEDSEG_ERR_NOMEM;
    }
    memset(site, 1, pn);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) site[(size_t)(y + 1) * pw + x + 1] = !mask[(size_t)y * w + x];
    const double one[3] = {1, 1, 1};
    medseg_status st = ms_edt_sq(d, site, pw, ph, 1, one, err);
    if (st == MEDSEG_OK)
        for (int y = 0; y < h; y++) memcpy(out + (size_t)y * w, d + (size_t)(y + 1) * pw + 1, sizeof(double) * w);
    free(site);
    free(d);
    return st;
}

int ms_point_edt_max(const uint8_t *mask, int w, int h, int *x, int *y, medseg_error *err)
{
    size_t n = (size_t)w * (size_t)h;
    double *d = ms_malloc(n * sizeof(double), err, "edt");
    if (!d) return -1;
    if (ms_edt_inside_padded(d, mask, w, h, err) != MEDSEG_OK) {
        free(d);
        return -1;
    }
    double best = 0;
    size_t bi = 0;
    for (size_t i = 0; i < n; i++)
        if (d[i] > best) { /* strict: first maximum in row-major order */
            best = d[i];
            bi = i;
        }
    free(d);
    if (best <= 0) return 0;
    *x = (int)(bi % (size_t)w);
    *y = (int)(bi / (size_t)w);
    return 1;
}

int ms_point_uniform(const uint8_t *mask, int w, int h, ms_mt19937 *r, int *x, int *y)
{
    size_t n = (size_t)w * (size_t)h, cnt = 0;
    for (size_t i = 0; i < n; i++) cnt += mask[i] != 0;
    if (!cnt) return 0;
    size_t k = (size_t)ms_mt_choice(r, cnt);
    for (size_t i = 0; i < n; i++)
        if (mask[i] && k-- == 0) {
            *x = (int)(i % (size_t)w);
            *y = (int)(i / (size_t)w);
            break;
        }
    return 1;
}

/* ---------------------------------------------------------------- CVPR 2025 click rule */

/* 8-connected components of mask; keeps the largest (ties: the one whose first pixel in
 * row-major order comes first, which is the one labelled first by a row-major scan) as out = 0/1.
 * Returns its size (0 if mask is empty) or -1 on allocation failure. */
static int64_t largest_component8(uint8_t *out, const uint8_t *mask, int w, int h, medseg_error *err)
{
    size_t n = (size_t)w * (size_t)h;
    int32_t *lab = ms_calloc(n, sizeof(int32_t), err, "components");
    int32_t *queue = ms_malloc(n * sizeof(int32_t), err, "components");
    if (!lab || !queue) {
        free(lab);
        free(queue);
        return -1;
    }
    int32_t cur = 0, best_lab = 0;
    int64_t best_size = 0;
    for (size_t s = 0; s < n; s++) {
        if (!mask[s] || lab[s]) continue;
        cur++;
        size_t qh = 0, qt = 0;
        queue[qt++] = (int32_t)s;
        lab[s] = cur;
        while (qh < qt) {
            int32_t p = queue[qh++];
            int px = p % w, py = p / w;
            for (int dy = -1; dy <= 1; dy++)
                for (int dx = -1; dx <= 1; dx++) {
                    int nx = px + dx, ny = py + dy;
                    if ((!dx && !dy) || nx < 0 || ny < 0 || nx >= w || ny >= h) continue;
                    size_t q = (size_t)ny * w + nx;
                    if (mask[q] && !lab[q]) {
                        lab[q] = cur;
                        queue[qt++] = (int32_t)q;
                    }
                }
        }
        if ((int64_t)qt > best_size) {
            best_size = (int64_t)qt;
            best_lab = cur;
        }
    }
    for (size_t i = 0; i < n; i++) out[i] = best_lab && lab[i] == best_lab;
    free(lab);
    free(queue);
    return best_size;
}

// ref: CVPR-MedSegFMCompetition @748e862d CVPR25_iter_eval.py, "Refinement clicks": error =
// pred xor gt, largest 8-connected component, compute_edt (padded), sample_coord (seeded choice)
int ms_click_cvpr25(const uint8_t *pred, const uint8_t *gt, int w, int h, uint32_t seed, int *x, int *y,
                    int *label, medseg_error *err)
{
    size_t n = (size_t)w * (size_t)h;
    uint8_t *e = ms_malloc(n, err, "error mask");
    uint8_t *comp = ms_malloc(n, err, "error component");
    double *d = ms_malloc(n * sizeof(double), err, "edt");
    int ret = -1;
    if (!e || !comp || !d) goto done;
    size_t ne = 0;
    for (size_t i = 0; i < n; i++) ne += (e[i] = (uint8_t)((pred[i] != 0) != (gt[i] != 0)));
    if (!ne) {
        ret = 0;
        goto done;
    }
    if (largest_component8(comp, e, w, h, err) < 0) goto done;
    if (ms_edt_inside_padded(d, comp, w, h, err) != MEDSEG_OK) goto done;
    double best = 0;
    uint64_t cnt = 0;
    for (size_t i = 0; i < n; i++) {
        if (d[i] > best) {
            best = d[i];
            cnt = 1;
        } else if (d[i] == best && best > 0) {
            cnt++;
        }
    }
    ms_mt19937 r;
    ms_mt_seed(&r, seed);
    uint64_t k = ms_mt_choice(&r, cnt);
    for (size_t i = 0; i < n; i++)
        if (d[i] == best && k-- == 0) {
            *x = (int)(i % (size_t)w);
            *y = (int)(i / (size_t)w);
            *label = gt[i] != 0;
            break;
        }
    ret = 1;
done:
    free(e);
    free(comp);
    free(d);
    return ret;
}

/* ---------------------------------------------------------------- micro-sam iterative */

/* Picks a uniform pixel among those where sel(i) holds; returns 0 if none. */
static int pick(const uint8_t *a, const uint8_t *b, int mode, int w, int h, ms_mt19937 *r, int out[2])
{
    size_t n = (size_t)w * (size_t)h, cnt = 0;
#define SEL(i) (mode == 0 ? (a[i] && !b[i]) : mode == 1 ? (a[i] && b[i]) : !a[i])
    for (size_t i = 0; i < n; i++) cnt += SEL(i);
    if (!cnt) return 0;
    size_t k = (size_t)ms_mt_choice(r, cnt);
    for (size_t i = 0; i < n; i++)
        if (SEL(i) && k-- == 0) {
            out[0] = (int)(i % (size_t)w);
            out[1] = (int)(i / (size_t)w);
            return 1;
        }
#undef SEL
    return 0;
}

// ref: micro_sam/prompt_generators.py @3acdcd7 IterativePromptGenerator: _get_positive_points
// (false negatives, else overlap), _get_negative_points (false positives, else the GT box grown by
// custom_df = 3 minus the GT, else the background); one np.random.choice per point
int ms_clicks_iterative(const uint8_t *pred, const uint8_t *gt, int w, int h, ms_mt19937 *r, int pos[2],
                        int neg[2], medseg_error *err)
{
    int box[4];
    if (!ms_mask_bbox(gt, w, h, box)) return 0;
    if (!pick(gt, pred, 0, w, h, r, pos) && !pick(gt, pred, 1, w, h, r, pos)) return 0;
    neg[0] = neg[1] = -1;
    if (pick(pred, gt, 0, w, h, r, neg)) return 1;
    size_t n = (size_t)w * (size_t)h;
    uint8_t *ring = ms_calloc(n, 1, err, "ring");
    if (!ring) return -1;
    int x0 = box[0] - 3 < 0 ? 0 : box[0] - 3, y0 = box[1] - 3 < 0 ? 0 : box[1] - 3;
    int x1 = box[2] + 4 > w ? w : box[2] + 4, y1 = box[3] + 4 > h ? h : box[3] + 4; /* exclusive */
    for (int y = y0; y < y1; y++)
        for (int x = x0; x < x1; x++) ring[(size_t)y * w + x] = 1;
    int ok = pick(ring, gt, 0, w, h, r, neg);
    free(ring);
    if (!ok) pick(gt, gt, 2, w, h, r, neg); /* background; none when the GT fills the image */
    return 1;
}
