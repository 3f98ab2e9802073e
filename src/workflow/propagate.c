/* 3D propagation of a prompt through a volume (see propagate.h).
 * ref: bowang-lab/MedSAM branch LiteMedSAM, CVPR24_LiteMedSAM_infer.py MedSAM_infer_npz_3D (box rule);
 *      computational-cell-analytics/micro-sam micro_sam/multi_dimensional_segmentation.py
 *      segment_mask_in_volume and prompt_based_segmentation.py segment_from_mask (projections,
 *      IoU stop). */
#include "workflow/propagate.h"
#include "models/sam.h"
#include "workflow/embed_cache.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define EMB_FLOATS ((size_t)MS_EMBED_DIM * MS_EMBED_HW * MS_EMBED_HW)
#define LOWRES_FLOATS ((size_t)MEDSEG_LOWRES * MEDSEG_LOWRES)

/* ------------------------------------------------------------ slice source */

typedef struct {
    int64_t z; /* -1: free */
    uint64_t used;
    float *emb;
} mem_slot;

struct ms_slice_source {
    medseg_session *s;
    const medseg_volume *v;
    ms_intensity it;
    ms_embed_cache *cache;
    mem_slot *slots;
    int n_slots;
    uint64_t clock;
    int64_t current; /* slice the session holds, -1 none */
    int encoded, from_disk, from_memory;
    ms_slice_progress_fn progress;
    void *progress_user;
};

ms_slice_source *ms_slice_source_create(medseg_session *s, const medseg_volume *v, const ms_intensity *it,
                                        ms_embed_cache *cache, int mem_slices, medseg_error *err)
{
    ms_error_clear(err);
    if (!s || !v || !it || !v->data || v->dim[0] <= 0 || v->dim[1] <= 0 || v->dim[2] <= 0) {
        ms_error(err, MEDSEG_ERR_ARG, "slice source: no session or empty volume");
        return NULL;
    }
    if (v->dim[0] > MEDSEG_MAX_DIM || v->dim[1] > MEDSEG_MAX_DIM) {
        ms_error(err, MEDSEG_ERR_ARG, "slice source: slices of %lldx%lld are over the %d-pixel limit",
                 (long long)v->dim[0], (long long)v->dim[1], MEDSEG_MAX_DIM);
        return NULL;
    }
    ms_slice_source *src = ms_calloc(1, sizeof *src, err, "slice source");
    if (!src) return NULL;
    src->s = s;
    src->v = v;
    src->it = *it;
    src->cache = cache;
    src->current = -1;
    src->n_slots = mem_slices > 0 ? mem_slices : 64;
    if (src->n_slots > v->dim[2]) src->n_slots = (int)v->dim[2];
    src->slots = ms_calloc((size_t)src->n_slots, sizeof *src->slots, err, "slice embeddings");
    if (!src->slots) {
        free(src);
        return NULL;
    }
    for (int i = 0; i < src->n_slots; i++) src->slots[i].z = -1;
    return src;
}

void ms_slice_source_free(ms_slice_source *src)
{
    if (!src) return;
    for (int i = 0; i < src->n_slots; i++) free(src->slots[i].emb);
    free(src->slots);
    free(src);
}

medseg_session *ms_slice_source_session(ms_slice_source *src)
{
    return src->s;
}

const medseg_volume *ms_slice_source_volume(const ms_slice_source *src)
{
    return src->v;
}

void ms_slice_source_set_progress(ms_slice_source *src, ms_slice_progress_fn fn, void *user)
{
    src->progress = fn;
    src->progress_user = user;
}

void ms_slice_source_counts(const ms_slice_source *src, int *encoded, int *from_disk, int *from_memory)
{
    if (encoded) *encoded = src->encoded;
    if (from_disk) *from_disk = src->from_disk;
    if (from_memory) *from_memory = src->from_memory;
}

/* Keeps a copy of the session's current embedding for slice z (LRU slot). */
static void remember(ms_slice_source *src, int64_t z, const float *emb)
{
    int pick = 0;
    for (int i = 0; i < src->n_slots; i++) {
        if (src->slots[i].z < 0) {
            pick = i;
            break;
        }
        if (src->slots[i].used < src->slots[pick].used) pick = i;
    }
    mem_slot *sl = &src->slots[pick];
    if (!sl->emb) sl->emb = malloc(EMB_FLOATS * sizeof(float));
    if (!sl->emb) return; /* memory is an optimisation only */
    memcpy(sl->emb, emb, EMB_FLOATS * sizeof(float));
    sl->z = z;
    sl->used = ++src->clock;
}

medseg_status ms_slice_source_select(ms_slice_source *src, int64_t z, medseg_error *err)
{
    ms_error_clear(err);
    const medseg_volume *v = src->v;
    if (z < 0 || z >= v->dim[2])
        return ms_error(err, MEDSEG_ERR_ARG, "slice %lld is outside the volume (0..%lld)", (long long)z,
                        (long long)v->dim[2] - 1);
    if (src->current == z) return MEDSEG_OK;
    int w = (int)v->dim[0], h = (int)v->dim[1];
    medseg_status st;
    for (int i = 0; i < src->n_slots; i++) {
        if (src->slots[i].z == z) {
            src->current = -1;
            st = medseg_session_set_embedding(src->s, src->slots[i].emb, w, h, err);
            if (st) return st;
            src->slots[i].used = ++src->clock;
            src->current = z;
            src->from_memory++;
            if (src->progress) src->progress(src->progress_user, z, "memory");
            return MEDSEG_OK;
        }
    }
    medseg_image img;
    st = ms_intensity_slice(v, &src->it, z, &img, err);
    if (st) return st;
    src->current = -1;
    char key[65] = {0};
    const char *how = "encoded";
    int hit = 0;
    if (src->cache) {
        ms_embed_cache_key(src->cache, &img, key);
        float *emb = ms_alloc_aligned(EMB_FLOATS * sizeof(float), err, "cached embedding");
        if (!emb) {
            medseg_image_free(&img);
            return MEDSEG_ERR_NOMEM;
        }
        st = ms_embed_cache_get(src->cache, key, w, h, emb, &hit, err);
        if (!st && hit) {
            st = medseg_session_set_embedding(src->s, emb, w, h, err);
            how = "disk";
        }
        free(emb);
        if (st) {
            medseg_image_free(&img);
            return st;
        }
    }
    if (!hit) {
        st = medseg_session_set_image(src->s, &img, err);
        if (!st && src->cache) st = ms_embed_cache_put(src->cache, key, w, h, medseg_session_embedding(src->s), err);
    }
    medseg_image_free(&img);
    if (st) return st;
    if (hit) src->from_disk++;
    else src->encoded++;
    remember(src, z, medseg_session_embedding(src->s));
    src->current = z;
    if (src->progress) src->progress(src->progress_user, z, how);
    return MEDSEG_OK;
}

/* ------------------------------------------------------------ options */

ms_prop_options ms_prop_default(void)
{
    /* chosen on the dev set's 3D rows (docs/propagation.md): the neighbour's mask as pseudo-logits
       plus its tight box, no growth, no IoU stop */
    ms_prop_options o;
    memset(&o, 0, sizeof o);
    o.mode = MS_PROP_BOX_MASK;
    o.expand_px = 0;
    o.expand_frac = 0;
    o.min_iou = 0;
    o.min_area = 1;
    o.key_fallback = 0;
    o.mask_feedback = 2;
    o.n_points = 3;
    o.output = MEDSEG_OUTPUT_SINGLE;
    return o;
}

ms_prop_options ms_prop_litemedsam(void)
{
    ms_prop_options o = ms_prop_default();
    o.mode = MS_PROP_BOX;
    o.expand_px = 0;
    o.expand_frac = 3.0 / 256;
    o.min_iou = 0;
    o.key_fallback = 1;
    o.mask_feedback = 1;
    return o;
}

static const char *k_mode_names[] = {"box", "box+mask", "point", "points"};

const char *ms_prop_mode_name(ms_prop_mode m)
{
    return (unsigned)m < 4 ? k_mode_names[m] : "?";
}

medseg_status ms_prop_parse_mode(const char *s, ms_prop_mode *out, medseg_error *err)
{
    for (int i = 0; i < 4; i++)
        if (s && !strcmp(s, k_mode_names[i])) {
            *out = (ms_prop_mode)i;
            return MEDSEG_OK;
        }
    if (s && !strcmp(s, "mask")) {
        *out = MS_PROP_BOX_MASK;
        return MEDSEG_OK;
    }
    return ms_error(err, MEDSEG_ERR_ARG, "propagation mode '%s': expected box, box+mask, point or points", s ? s : "");
}

medseg_status ms_prop_prompt_from_box3d(const double b[6], const medseg_volume *v, ms_prop_prompt *out,
                                        medseg_error *err)
{
    memset(out, 0, sizeof *out);
    for (int i = 0; i < 6; i++)
        if (!isfinite(b[i]) || b[i] != floor(b[i]))
            return ms_error(err, MEDSEG_ERR_ARG, "box3d: coordinates must be whole voxel indices");
    if (b[3] < b[0] || b[4] < b[1] || b[5] < b[2])
        return ms_error(err, MEDSEG_ERR_ARG, "box3d %g,%g,%g,%g,%g,%g: need x0 <= x1, y0 <= y1, z0 <= z1", b[0], b[1],
                        b[2], b[3], b[4], b[5]);
    if (b[0] < 0 || b[1] < 0 || b[2] < 0 || b[3] >= (double)v->dim[0] || b[4] >= (double)v->dim[1] ||
        b[5] >= (double)v->dim[2])
        return ms_error(err, MEDSEG_ERR_ARG,
                        "box3d %g,%g,%g,%g,%g,%g is outside the volume (x 0..%lld, y 0..%lld, z 0..%lld)", b[0], b[1],
                        b[2], b[3], b[4], b[5], (long long)v->dim[0] - 1, (long long)v->dim[1] - 1,
                        (long long)v->dim[2] - 1);
    if (b[3] == b[0] || b[4] == b[1])
        return ms_error(err, MEDSEG_ERR_ARG, "box3d %g,%g,%g,%g,%g,%g has no area (x0 == x1 or y0 == y1)", b[0], b[1],
                        b[2], b[3], b[4], b[5]);
    out->z0 = (int64_t)b[2];
    out->z1 = (int64_t)b[5];
    out->key_z = (out->z0 + out->z1) / 2;
    out->has_box = 1;
    out->box[0] = (float)b[0];
    out->box[1] = (float)b[1];
    out->box[2] = (float)b[3];
    out->box[3] = (float)b[4];
    return MEDSEG_OK;
}

/* ------------------------------------------------------------ mask geometry */

// m [h, w] -> tight box (inclusive); returns the area
static int64_t mask_box(const uint8_t *m, int w, int h, int *x0, int *y0, int *x1, int *y1)
{
    int64_t area = 0;
    *x0 = w;
    *y0 = h;
    *x1 = -1;
    *y1 = -1;
    for (int y = 0; y < h; y++) {
        const uint8_t *row = m + (size_t)y * w;
        for (int x = 0; x < w; x++) {
            if (!row[x]) continue;
            area++;
            if (x < *x0) *x0 = x;
            if (x > *x1) *x1 = x;
            if (y < *y0) *y0 = y;
            if (y > *y1) *y1 = y;
        }
    }
    return area;
}

// a, b [n] -> |a & b| / |a | b| (1 when both are empty)
static double mask_iou(const uint8_t *a, const uint8_t *b, size_t n)
{
    size_t inter = 0, uni = 0;
    for (size_t i = 0; i < n; i++) {
        inter += a[i] & b[i];
        uni += a[i] | b[i];
    }
    return uni ? (double)inter / (double)uni : 1.0;
}

/* 1D squared distance transform of f[0..n) into d (Felzenszwalb & Huttenlocher 2012). */
static void edt_1d(const double *f, int n, double *d, int *v, double *z)
{
    int k = 0;
    v[0] = 0;
    z[0] = -INFINITY;
    z[1] = INFINITY;
    for (int q = 1; q < n; q++) {
        double s;
        for (;;) {
            int p = v[k];
            s = ((f[q] + (double)q * q) - (f[p] + (double)p * p)) / (2.0 * q - 2.0 * p);
            if (s <= z[k] && k > 0) k--;
            else break;
        }
        if (s <= z[k]) { /* k == 0 and the parabola at v[0] is dominated */
            v[0] = q;
            z[0] = -INFINITY;
            z[1] = INFINITY;
            continue;
        }
        k++;
        v[k] = q;
        z[k] = s;
        z[k + 1] = INFINITY;
    }
    k = 0;
    for (int q = 0; q < n; q++) {
        while (z[k + 1] < q) k++;
        double dq = (double)q - v[k];
        d[q] = dq * dq + f[v[k]];
    }
}

// m [h, w] -> d2 [h, w]: squared distance of each object pixel to the nearest background pixel,
// the outside of the image counting as background (0 on background)
static medseg_status inner_edt(const uint8_t *m, int w, int h, double *d2, medseg_error *err)
{
    int W = w + 2, H = h + 2, n = W > H ? W : H;
    double *g = ms_malloc((size_t)W * H * sizeof(double), err, "distance transform");
    double *f = ms_malloc((size_t)n * sizeof(double), err, "distance transform");
    double *d = ms_malloc((size_t)n * sizeof(double), err, "distance transform");
    double *z = ms_malloc((size_t)(n + 1) * sizeof(double), err, "distance transform");
    int *v = ms_malloc((size_t)n * sizeof(int), err, "distance transform");
    medseg_status st = MEDSEG_OK;
    if (!g || !f || !d || !z || !v) {
        st = MEDSEG_ERR_NOMEM;
        goto out;
    }
    const double big = 1e20;
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            int in = x > 0 && y > 0 && x <= w && y <= h && m[(size_t)(y - 1) * w + (x - 1)];
            g[(size_t)y * W + x] = in ? big : 0;
        }
    for (int x = 0; x < W; x++) { /* columns */
        for (int y = 0; y < H; y++) f[y] = g[(size_t)y * W + x];
        edt_1d(f, H, d, v, z);
        for (int y = 0; y < H; y++) g[(size_t)y * W + x] = d[y];
    }
    for (int y = 0; y < H; y++) { /* rows */
        for (int x = 0; x < W; x++) f[x] = g[(size_t)y * W + x];
        edt_1d(f, W, d, v, z);
        for (int x = 0; x < W; x++) g[(size_t)y * W + x] = d[x];
    }
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) d2[(size_t)y * w + x] = m[(size_t)y * w + x] ? g[(size_t)(y + 1) * W + x + 1] : 0;
out:
    free(g);
    free(f);
    free(d);
    free(z);
    free(v);
    return st;
}

/* Positive clicks from a mask: the inner-distance maximum, then greedy max-min spread over
 * pixels at least 2 px deep. Returns how many were placed (<= n). */
static medseg_status mask_points(const uint8_t *m, int w, int h, int n, float pts[][2], int *placed,
                                 medseg_error *err)
{
    *placed = 0;
    size_t npix = (size_t)w * h;
    double *d2 = ms_malloc(npix * sizeof(double), err, "distance map");
    if (!d2) return MEDSEG_ERR_NOMEM;
    medseg_status st = inner_edt(m, w, h, d2, err);
    if (st) {
        free(d2);
        return st;
    }
    size_t best = 0;
    for (size_t i = 1; i < npix; i++)
        if (d2[i] > d2[best]) best = i;
    if (d2[best] <= 0) {
        free(d2);
        return MEDSEG_OK;
    }
    pts[0][0] = (float)(best % (size_t)w);
    pts[0][1] = (float)(best / (size_t)w);
    *placed = 1;
    if (n > 1) {
        double *mind = ms_malloc(npix * sizeof(double), err, "point spread");
        if (!mind) {
            free(d2);
            return MEDSEG_ERR_NOMEM;
        }
        for (size_t i = 0; i < npix; i++) mind[i] = INFINITY;
        while (*placed < n) {
            double px = pts[*placed - 1][0], py = pts[*placed - 1][1];
            size_t arg = npix;
            for (size_t i = 0; i < npix; i++) {
                if (d2[i] < 4.0) continue;
                double dx = (double)(i % (size_t)w) - px, dy = (double)(i / (size_t)w) - py;
                double dd = dx * dx + dy * dy;
                if (dd < mind[i]) mind[i] = dd;
                if (arg == npix || mind[i] > mind[arg]) arg = i;
            }
            if (arg == npix || mind[arg] < 16.0) break; /* nothing 4 px away from the chosen clicks */
            pts[*placed][0] = (float)(arg % (size_t)w);
            pts[*placed][1] = (float)(arg / (size_t)w);
            (*placed)++;
        }
        free(mind);
    }
    free(d2);
    return MEDSEG_OK;
}

/* The previous mask as +-6.9 pseudo-logits on the 256 grid of the longest-side frame (area
 * average of the logits, zero padding): micro-sam's _compute_logits_from_mask with eps 1e-3. */
static void mask_pseudo_logits(const uint8_t *m, int w, int h, float *out)
{
    const double L = log((1 - 1e-3) / 1e-3);
    int side = w > h ? w : h;
    double scale = (double)side / MEDSEG_LOWRES; /* source pixels per grid cell */
    for (int gy = 0; gy < MEDSEG_LOWRES; gy++) {
        for (int gx = 0; gx < MEDSEG_LOWRES; gx++) {
            double sx0 = gx * scale, sx1 = (gx + 1) * scale, sy0 = gy * scale, sy1 = (gy + 1) * scale;
            if (sx0 >= w || sy0 >= h) {
                out[(size_t)gy * MEDSEG_LOWRES + gx] = 0;
                continue;
            }
            int x0 = (int)sx0, y0 = (int)sy0;
            int x1 = (int)ceil(sx1), y1 = (int)ceil(sy1);
            if (x1 > w) x1 = w;
            if (y1 > h) y1 = h;
            double on = 0, tot = 0;
            for (int y = y0; y < y1; y++) {
                double wy = fmin(sy1, y + 1.0) - fmax(sy0, (double)y);
                for (int x = x0; x < x1; x++) {
                    double wx = fmin(sx1, x + 1.0) - fmax(sx0, (double)x);
                    tot += wx * wy;
                    if (m[(size_t)y * w + x]) on += wx * wy;
                }
            }
            double frac = tot > 0 ? on / tot : 0;
            out[(size_t)gy * MEDSEG_LOWRES + gx] = (float)(L * (2 * frac - 1));
        }
    }
}

/* ------------------------------------------------------------ propagation */

typedef struct {
    uint8_t *mask;  /* [h][w] */
    float *logits;  /* [256][256] */
    int64_t area;
} slice_result;

static void add_user_points(medseg_prompt *pr, const ms_prop_prompt *p, int64_t z)
{
    for (int i = 0; i < p->n_points && pr->n_points < MEDSEG_MAX_POINTS; i++) {
        if ((int64_t)p->points[i][2] != z) continue;
        pr->points[pr->n_points][0] = p->points[i][0];
        pr->points[pr->n_points][1] = p->points[i][1];
        pr->labels[pr->n_points++] = p->labels[i];
    }
}

/* Runs the decoder on the session's current slice; fills r (mask, logits, area). */
static medseg_status decode(medseg_session *s, medseg_prompt *pr, int w, int h, slice_result *r, int *n_decoded,
                            medseg_error *err)
{
    /* a lone positive click: the best of the three multimask candidates (micro-sam's
       use_best_multimask rule; token 0 alone tends to return a large region) */
    if (pr->n_points == 1 && pr->labels[0] == 1 && !pr->has_box && !pr->mask_input && pr->output == MEDSEG_OUTPUT_SINGLE)
        pr->output = MEDSEG_OUTPUT_BEST;
    medseg_result res;
    medseg_status st = medseg_session_predict(s, pr, &res, err);
    if (st) return st;
    (*n_decoded)++;
    size_t npix = (size_t)w * h;
    memcpy(r->mask, res.masks, npix);
    memcpy(r->logits, res.low_res_logits, LOWRES_FLOATS * sizeof(float));
    r->area = 0;
    for (size_t i = 0; i < npix; i++) r->area += r->mask[i];
    medseg_result_free(&res);
    return MEDSEG_OK;
}

/* Derives the prompt for the next slice from the neighbour's result. Returns 0 when no prompt can
 * be derived (empty neighbour and no fallback). */
static int derive_prompt(const ms_prop_options *o, const ms_prop_prompt *p, const slice_result *prev, int w, int h,
                         float *pseudo, medseg_prompt *pr, medseg_status *st, medseg_error *err)
{
    *pr = medseg_prompt_default();
    pr->output = o->output;
    *st = MEDSEG_OK;
    if (prev->area < o->min_area) {
        if (o->key_fallback && p->has_box && (o->mode == MS_PROP_BOX || o->mode == MS_PROP_BOX_MASK)) {
            pr->has_box = 1;
            memcpy(pr->box, p->box, sizeof pr->box);
            return 1;
        }
        return 0;
    }
    if (o->mode == MS_PROP_BOX || o->mode == MS_PROP_BOX_MASK) {
        int x0, y0, x1, y1;
        mask_box(prev->mask, w, h, &x0, &y0, &x1, &y1);
        double e = o->expand_px + o->expand_frac * (double)(w > h ? w : h);
        double bx0 = fmax(0, x0 - e), by0 = fmax(0, y0 - e), bx1 = fmin((double)w, x1 + e), by1 = fmin((double)h, y1 + e);
        if (bx1 <= bx0) bx1 = fmin((double)w, bx0 + 1), bx0 = bx1 - 1;
        if (by1 <= by0) by1 = fmin((double)h, by0 + 1), by0 = by1 - 1;
        pr->has_box = 1;
        pr->box[0] = (float)bx0;
        pr->box[1] = (float)by0;
        pr->box[2] = (float)bx1;
        pr->box[3] = (float)by1;
        if (o->mode == MS_PROP_BOX_MASK) {
            if (o->mask_feedback == 2) {
                mask_pseudo_logits(prev->mask, w, h, pseudo);
                pr->mask_input = pseudo;
            } else {
                pr->mask_input = prev->logits;
            }
        }
        return 1;
    }
    int n = o->mode == MS_PROP_POINT ? 1 : o->n_points;
    if (n < 1) n = 1;
    if (n > MEDSEG_MAX_POINTS / 2) n = MEDSEG_MAX_POINTS / 2;
    float pts[MEDSEG_MAX_POINTS][2];
    int placed = 0;
    *st = mask_points(prev->mask, w, h, n, pts, &placed, err);
    if (*st || !placed) return 0;
    for (int i = 0; i < placed; i++) {
        pr->points[i][0] = pts[i][0];
        pr->points[i][1] = pts[i][1];
        pr->labels[i] = 1;
    }
    pr->n_points = placed;
    if (o->mode == MS_PROP_POINTS) {
        /* background clicks: the midpoints of the sides of the mask's box grown by
           max(3 px, the box expansion), where they fall inside the image (micro-sam's "points"
           projection also adds negatives outside the object) */
        int x0, y0, x1, y1;
        mask_box(prev->mask, w, h, &x0, &y0, &x1, &y1);
        double e = fmax(3.0, o->expand_px + o->expand_frac * (double)(w > h ? w : h));
        double cx = 0.5 * (x0 + x1), cy = 0.5 * (y0 + y1);
        double neg[4][2] = {{x0 - e, cy}, {x1 + e, cy}, {cx, y0 - e}, {cx, y1 + e}};
        for (int i = 0; i < 4 && pr->n_points < MEDSEG_MAX_POINTS; i++) {
            if (neg[i][0] < 0 || neg[i][1] < 0 || neg[i][0] > w - 1 || neg[i][1] > h - 1) continue;
            pr->points[pr->n_points][0] = (float)neg[i][0];
            pr->points[pr->n_points][1] = (float)neg[i][1];
            pr->labels[pr->n_points++] = 0;
        }
    }
    return 1;
}

medseg_status ms_propagate(ms_slice_source *src, const ms_prop_prompt *p, const ms_prop_options *o, uint8_t *mask,
                           ms_prop_result *r, medseg_error *err)
{
    ms_error_clear(err);
    ms_prop_result dummy;
    if (!r) r = &dummy;
    memset(r, 0, sizeof *r);
    r->z_first = r->z_last = -1;
    if (!src || !p || !o || !mask) return ms_error(err, MEDSEG_ERR_ARG, "ms_propagate: NULL argument");
    const medseg_volume *v = src->v;
    int w = (int)v->dim[0], h = (int)v->dim[1];
    int64_t nz = v->dim[2];
    size_t npix = (size_t)w * h;
    memset(mask, 0, npix * (size_t)nz);
    int64_t lo = 0, hi = nz - 1;
    if (p->z0 <= p->z1) {
        lo = p->z0 < 0 ? 0 : p->z0;
        hi = p->z1 >= nz ? nz - 1 : p->z1;
        if (lo > hi)
            return ms_error(err, MEDSEG_ERR_ARG, "z-range %lld..%lld is outside the volume (0..%lld)",
                            (long long)p->z0, (long long)p->z1, (long long)nz - 1);
    }
    if (p->key_z < lo || p->key_z > hi)
        return ms_error(err, MEDSEG_ERR_ARG, "key slice %lld is outside the z-range %lld..%lld", (long long)p->key_z,
                        (long long)lo, (long long)hi);
    if (o->mode < MS_PROP_BOX || o->mode > MS_PROP_POINTS)
        return ms_error(err, MEDSEG_ERR_ARG, "unknown propagation mode %d", (int)o->mode);
    if (o->mode == MS_PROP_BOX_MASK && o->mask_feedback != 1 && o->mask_feedback != 2)
        return ms_error(err, MEDSEG_ERR_ARG, "box+mask: mask_feedback must be 1 (logits) or 2 (pseudo-logits)");

    medseg_status st = MEDSEG_OK;
    slice_result key = {0}, prev = {0}, cur = {0};
    float *pseudo = NULL;
    key.mask = ms_malloc(npix, err, "mask");
    prev.mask = key.mask ? ms_malloc(npix, err, "mask") : NULL;
    cur.mask = prev.mask ? ms_malloc(npix, err, "mask") : NULL;
    key.logits = cur.mask ? ms_malloc(LOWRES_FLOATS * sizeof(float), err, "logits") : NULL;
    prev.logits = key.logits ? ms_malloc(LOWRES_FLOATS * sizeof(float), err, "logits") : NULL;
    cur.logits = prev.logits ? ms_malloc(LOWRES_FLOATS * sizeof(float), err, "logits") : NULL;
    pseudo = cur.logits ? ms_malloc(LOWRES_FLOATS * sizeof(float), err, "logits") : NULL;
    if (!pseudo) {
        st = MEDSEG_ERR_NOMEM;
        goto out;
    }
    medseg_session *s = src->s;

    /* key slice: the user's prompt */
    medseg_prompt pr = medseg_prompt_default();
    pr.output = o->output;
    if (p->has_box) {
        pr.has_box = 1;
        memcpy(pr.box, p->box, sizeof pr.box);
    }
    add_user_points(&pr, p, p->key_z);
    if (!pr.has_box && !pr.n_points) {
        st = ms_error(err, MEDSEG_ERR_ARG, "no prompt on the key slice %lld", (long long)p->key_z);
        goto out;
    }
    st = ms_slice_source_select(src, p->key_z, err);
    if (!st) st = decode(s, &pr, w, h, &key, &r->n_decoded, err);
    if (st) goto out;
    memcpy(mask + (size_t)p->key_z * npix, key.mask, npix);

    for (int dir = 1; dir >= -1; dir -= 2) {
        char *why = dir > 0 ? r->stop_up : r->stop_down;
        snprintf(why, sizeof r->stop_up, "range");
        memcpy(prev.mask, key.mask, npix);
        memcpy(prev.logits, key.logits, LOWRES_FLOATS * sizeof(float));
        prev.area = key.area;
        for (int64_t z = p->key_z + dir; z >= lo && z <= hi; z += dir) {
            if (!derive_prompt(o, p, &prev, w, h, pseudo, &pr, &st, err)) {
                if (st) goto out;
                snprintf(why, sizeof r->stop_up, "vanished");
                break;
            }
            add_user_points(&pr, p, z);
            st = ms_slice_source_select(src, z, err);
            if (!st) st = decode(s, &pr, w, h, &cur, &r->n_decoded, err);
            if (st) goto out;
            if (o->min_iou > 0 && prev.area >= o->min_area && mask_iou(prev.mask, cur.mask, npix) < o->min_iou) {
                snprintf(why, sizeof r->stop_up, "iou");
                break;
            }
            memcpy(mask + (size_t)z * npix, cur.mask, npix);
            slice_result t = prev;
            prev = cur;
            cur = t;
            if (prev.area < o->min_area && !o->key_fallback) {
                snprintf(why, sizeof r->stop_up, "vanished");
                break;
            }
        }
    }
    for (int64_t z = 0; z < nz; z++) {
        const uint8_t *m = mask + (size_t)z * npix;
        int64_t a = 0;
        for (size_t i = 0; i < npix; i++) a += m[i];
        if (a) {
            if (r->z_first < 0) r->z_first = z;
            r->z_last = z;
            r->voxels += a;
        }
    }
out:
    free(key.mask);
    free(prev.mask);
    free(cur.mask);
    free(key.logits);
    free(prev.logits);
    free(cur.logits);
    free(pseudo);
    return st;
}

medseg_status ms_propagate_volume(medseg_session *s, const medseg_volume *v, const char *intensity,
                                  const ms_prop_prompt *p, const ms_prop_options *o, uint8_t *mask,
                                  ms_prop_result *r, medseg_error *err)
{
    ms_intensity_spec spec;
    ms_intensity it;
    medseg_status st = ms_intensity_parse(intensity ? intensity : "auto", &spec, err);
    if (!st) st = ms_intensity_resolve(v, &spec, &it, err);
    if (st) return st;
    ms_slice_source *src = ms_slice_source_create(s, v, &it, NULL, 0, err);
    if (!src) return err ? err->status : MEDSEG_ERR_NOMEM;
    st = ms_propagate(src, p, o, mask, r, err);
    ms_slice_source_free(src);
    return st;
}
