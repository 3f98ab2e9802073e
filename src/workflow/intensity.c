/* Intensity presets (see intensity.h).
 * ref: bowang-lab/MedSAM pre_CT_MR.py (CT window W400/L40 and the 0.5-99.5 % rule for MR),
 *      computational-cell-analytics/micro-sam micro_sam/util.py _to_image (per-slice min-max),
 *      numpy 1.24 lib/function_base.py _quantile / _lerp (percentile, method "linear"). */
#include "workflow/intensity.h"
#include "io/volume.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

/* Named CT windows. The soft-tissue (abdomen) window is the one MedSAM's pre_CT_MR.py uses
 * (WINDOW_LEVEL = 40, WINDOW_WIDTH = 400, citing Radiopaedia); the others are Radiopaedia's
 * "Windowing (CT)" table (radiopaedia.org/articles/windowing-ct): liver W150 L30, lung W1500 L-600,
 * bone W1800 L400, brain W80 L40. */
static const struct {
    const char *name;
    double width, level;
} k_windows[] = {
    {"abdomen", 400, 40}, {"soft-tissue", 400, 40}, {"soft_tissue", 400, 40}, {"liver", 150, 30},
    {"lung", 1500, -600}, {"bone", 1800, 400},      {"brain", 80, 40},
};

medseg_status ms_intensity_parse(const char *s, ms_intensity_spec *out, medseg_error *err)
{
    memset(out, 0, sizeof *out);
    if (!s || !*s) return ms_error(err, MEDSEG_ERR_ARG, "empty intensity preset");
    if (!strcmp(s, "auto")) out->kind = MS_INT_AUTO;
    else if (!strcmp(s, "none")) out->kind = MS_INT_NONE;
    else if (!strcmp(s, "percentile")) out->kind = MS_INT_PERCENTILE;
    else if (!strcmp(s, "minmax")) out->kind = MS_INT_MINMAX;
    if (out->kind != MS_INT_AUTO || !strcmp(s, "auto")) {
        snprintf(out->name, sizeof out->name, "%s", s);
        return MEDSEG_OK;
    }
    for (size_t i = 0; i < sizeof k_windows / sizeof k_windows[0]; i++) {
        if (!strcmp(s, k_windows[i].name)) {
            out->kind = MS_INT_WINDOW;
            out->width = k_windows[i].width;
            out->level = k_windows[i].level;
            snprintf(out->name, sizeof out->name, "%s", k_windows[i].name);
            return MEDSEG_OK;
        }
    }
    /* "W,L" */
    char *end;
    errno = 0;
    double w = strtod(s, &end);
    if (end != s && *end == ',' && !errno) {
        const char *p = end + 1;
        double l = strtod(p, &end);
        if (end != p && !*end && !errno && isfinite(w) && isfinite(l) && w > 0) {
            out->kind = MS_INT_WINDOW;
            out->width = w;
            out->level = l;
            snprintf(out->name, sizeof out->name, "W%g,L%g", w, l);
            return MEDSEG_OK;
        }
    }
    return ms_error(err, MEDSEG_ERR_ARG,
                    "intensity preset '%s': expected auto, none, percentile, minmax, abdomen, soft-tissue, liver, "
                    "lung, bone, brain, or W,L with W > 0 (e.g. 400,40)",
                    s);
}

static int has_scaling(const medseg_volume *v)
{
    return !(v->scl_slope == 1.0 && v->scl_inter == 0.0) && v->scl_slope != 0.0;
}

/* Real value (scaling applied). */
static double real_at(const medseg_volume *v, size_t n)
{
    double s = ms_voxel_stored(v->data, v->dtype, n);
    return has_scaling(v) ? s * v->scl_slope + v->scl_inter : s;
}

static int is_int_dtype(medseg_dtype t)
{
    return t != MEDSEG_DT_F32 && t != MEDSEG_DT_F64;
}

static medseg_status check_volume(const medseg_volume *v, size_t *count, medseg_error *err)
{
    if (!v || !v->data || v->dim[0] <= 0 || v->dim[1] <= 0 || v->dim[2] <= 0 || (v->channels != 1 && v->channels != 3))
        return ms_error(err, MEDSEG_ERR_ARG, "intensity: empty volume or %d channels (1 or 3 expected)", v ? v->channels : 0);
    if (v->dtype < MEDSEG_DT_U8 || v->dtype > MEDSEG_DT_F64)
        return ms_error(err, MEDSEG_ERR_ARG, "intensity: unknown voxel type %d", (int)v->dtype);
    if (v->dim[0] > MEDSEG_MAX_DIM || v->dim[1] > MEDSEG_MAX_DIM)
        return ms_error(err, MEDSEG_ERR_ARG, "intensity: slice %lldx%lld over the %d-pixel limit", (long long)v->dim[0],
                        (long long)v->dim[1], MEDSEG_MAX_DIM);
    if (!ms_mul3_size((size_t)v->dim[0], (size_t)v->dim[1], (size_t)v->dim[2], count) ||
        !ms_mul_size(*count, (size_t)v->channels, count))
        return ms_error(err, MEDSEG_ERR_NOMEM, "intensity: volume too large");
    return MEDSEG_OK;
}

/* k-th smallest of a[0..n) (0-based), partially reordering a (Hoare partition quickselect). */
static double select_kth(double *a, size_t n, size_t k)
{
    ptrdiff_t lo = 0, hi = (ptrdiff_t)n - 1, kk = (ptrdiff_t)k;
    while (hi > lo) {
        double pivot = a[lo + (hi - lo) / 2];
        ptrdiff_t i = lo, j = hi;
        while (i <= j) {
            while (a[i] < pivot) i++;
            while (a[j] > pivot) j--;
            if (i <= j) {
                double t = a[i];
                a[i++] = a[j];
                a[j--] = t;
            }
        }
        if (kk <= j) hi = j;
        else if (kk >= i) lo = i;
        else return a[kk];
    }
    return a[kk];
}

/* numpy.percentile(x, p) with the default "linear" method, given the order statistics through
 * get(k) (the k-th smallest, 0-based) of n values. f32: the subtraction b - a happens in float32,
 * as numpy does for float32 input. ref: numpy 1.24 _quantile, _compute_virtual_index, _lerp. */
static double np_percentile(double p, size_t n, double (*get)(void *, size_t), void *ctx, int f32)
{
    double q = p / 100.0;
    double vi = (double)n * q + (1.0 + q * (1.0 - 1.0 - 1.0)) - 1.0; /* alpha = beta = 1 */
    double prev = floor(vi);
    size_t i0, i1;
    if (vi >= (double)n - 1) {
        i0 = i1 = n - 1;
    } else if (vi < 0) {
        i0 = i1 = 0;
    } else {
        i0 = (size_t)prev;
        i1 = i0 + 1;
    }
    double gamma = vi - prev;
    double a = get(ctx, i0), b = get(ctx, i1);
    double diff = f32 ? (double)((float)b - (float)a) : b - a;
    if (gamma >= 0.5) return b - diff * (1.0 - gamma);
    return a + diff * gamma;
}

typedef struct {
    double *vals; /* selection path */
    size_t n;
    const uint64_t *hist; /* histogram path: 65536 bins, value = bin + offset */
    double offset;
} order_ctx;

static double get_sel(void *c, size_t k)
{
    order_ctx *o = c;
    return select_kth(o->vals, o->n, k);
}

static double get_hist(void *c, size_t k)
{
    order_ctx *o = c;
    uint64_t acc = 0;
    for (size_t b = 0; b < 65536; b++) {
        acc += o->hist[b];
        if (acc > k) return (double)b + o->offset;
    }
    return 65535 + o->offset;
}

/* Percentile bounds of the strictly positive real values of v; *npos = how many there are. */
static medseg_status positive_percentiles(const medseg_volume *v, size_t count, int f32, double *p05, double *p995,
                                          size_t *npos, medseg_error *err)
{
    int small = !has_scaling(v) && (v->dtype == MEDSEG_DT_U8 || v->dtype == MEDSEG_DT_I8 ||
                                    v->dtype == MEDSEG_DT_U16 || v->dtype == MEDSEG_DT_I16);
    order_ctx o = {0};
    size_t n = 0;
    if (small) {
        uint64_t *hist = ms_calloc(65536, sizeof *hist, err, "intensity histogram");
        if (!hist) return MEDSEG_ERR_NOMEM;
        double off = (v->dtype == MEDSEG_DT_I8 || v->dtype == MEDSEG_DT_I16) ? -32768.0 : 0.0;
        for (size_t i = 0; i < count; i++) {
            double x = ms_voxel_stored(v->data, v->dtype, i);
            if (x > 0) {
                hist[(size_t)(x - off)]++;
                n++;
            }
        }
        o.hist = hist;
        o.offset = off;
        *npos = n;
        if (n) {
            *p05 = np_percentile(0.5, n, get_hist, &o, 0);
            *p995 = np_percentile(99.5, n, get_hist, &o, 0);
        }
        free(hist);
        return MEDSEG_OK;
    }
    for (size_t i = 0; i < count; i++)
        if (real_at(v, i) > 0) n++;
    *npos = n;
    if (!n) return MEDSEG_OK;
    double *vals = ms_malloc(n * sizeof(double), err, "intensity percentile values");
    if (!vals) return MEDSEG_ERR_NOMEM;
    size_t m = 0;
    for (size_t i = 0; i < count; i++) {
        double x = real_at(v, i);
        if (x > 0) vals[m++] = f32 ? (double)(float)x : x;
    }
    o.vals = vals;
    o.n = n;
    *p05 = np_percentile(0.5, n, get_sel, &o, f32);
    *p995 = np_percentile(99.5, n, get_sel, &o, f32);
    free(vals);
    return MEDSEG_OK;
}

medseg_status ms_intensity_resolve(const medseg_volume *v, const ms_intensity_spec *spec, ms_intensity *out,
                                   medseg_error *err)
{
    memset(out, 0, sizeof *out);
    size_t count;
    medseg_status st = check_volume(v, &count, err);
    if (st) return st;
    out->f32 = v->dtype == MEDSEG_DT_F32 && !has_scaling(v);
    ms_intensity_kind kind = spec->kind;
    const char *why = "";

    /* whole-volume range of real values (needed by auto and both clip rules) */
    double vmin = INFINITY, vmax = -INFINITY;
    int integral = 1;
    for (size_t i = 0; i < count; i++) {
        double x = real_at(v, i);
        if (!isfinite(x))
            return ms_error(err, MEDSEG_ERR_FORMAT, "intensity: voxel %zu is not a finite number", i);
        if (x < vmin) vmin = x;
        if (x > vmax) vmax = x;
        if (integral && !is_int_dtype(v->dtype) && x != floor(x)) integral = 0;
    }
    if (has_scaling(v) && (v->scl_slope != floor(v->scl_slope) || v->scl_inter != floor(v->scl_inter))) integral = 0;

    double width = spec->width, level = spec->level;
    if (kind == MS_INT_AUTO) {
        if (v->dtype == MEDSEG_DT_U8 && !has_scaling(v)) {
            kind = MS_INT_NONE;
            why = ", auto: uint8 data";
        } else if (!strcmp(v->modality, "CT") || (integral && vmin <= -500)) {
            kind = MS_INT_WINDOW;
            width = 400;
            level = 40;
            why = !strcmp(v->modality, "CT") ? " (abdomen), auto: modality CT" : " (abdomen), auto: HU-like range";
        } else {
            kind = MS_INT_PERCENTILE;
            why = ", auto: not CT";
        }
    }
    out->kind = kind;
    switch (kind) {
    case MS_INT_NONE:
        out->lo = 0;
        out->hi = 255;
        snprintf(out->desc, sizeof out->desc, "none%s", why);
        break;
    case MS_INT_MINMAX:
        snprintf(out->desc, sizeof out->desc, "minmax per slice");
        break;
    case MS_INT_WINDOW: {
        out->lo = level - width / 2;
        out->hi = level + width / 2;
        if (out->f32) {
            out->lo = (float)out->lo;
            out->hi = (float)out->hi;
        }
        /* min/max of np.clip(volume, lo, hi) */
        out->mn = vmin < out->lo ? out->lo : vmin > out->hi ? out->hi : vmin;
        out->mx = vmax < out->lo ? out->lo : vmax > out->hi ? out->hi : vmax;
        if (spec->kind == MS_INT_AUTO || !spec->name[0] || spec->name[0] == 'W')
            snprintf(out->desc, sizeof out->desc, "window W%g L%g%s", width, level, why);
        else
            snprintf(out->desc, sizeof out->desc, "window W%g L%g (%s)", width, level, spec->name);
        break;
    }
    case MS_INT_PERCENTILE: {
        double p05 = 0, p995 = 0;
        size_t npos = 0;
        st = positive_percentiles(v, count, out->f32, &p05, &p995, &npos, err);
        if (st) return st;
        if (!npos) { /* nothing positive: MedSAM's rule is undefined; fall back to the full range */
            p05 = vmin;
            p995 = vmax;
        }
        out->lo = out->f32 ? (float)p05 : p05;
        out->hi = out->f32 ? (float)p995 : p995;
        out->mn = vmin < out->lo ? out->lo : vmin > out->hi ? out->hi : vmin;
        out->mx = vmax < out->lo ? out->lo : vmax > out->hi ? out->hi : vmax;
        snprintf(out->desc, sizeof out->desc, "percentile 0.5-99.5 of >0 [%.9g, %.9g]%s", out->lo, out->hi, why);
        break;
    }
    default:
        return ms_error(err, MEDSEG_ERR_ARG, "intensity: unknown preset kind %d", (int)kind);
    }
    return MEDSEG_OK;
}

uint8_t ms_intensity_map_value(const ms_intensity *it, double x)
{
    if (it->kind == MS_INT_NONE) {
        if (!(x > 0)) return 0;
        return x >= 255 ? 255 : (uint8_t)x;
    }
    if (it->kind == MS_INT_PERCENTILE && x == 0) return 0; /* image_data_pre[image_data == 0] = 0 */
    if (it->f32) {
        float lo = (float)it->lo, hi = (float)it->hi, mn = (float)it->mn, mx = (float)it->mx;
        float c = (float)x;
        c = c < lo ? lo : c > hi ? hi : c;
        float den = mx - mn;
        if (!(den > 0)) return 0;
        float t = ((c - mn) / den) * 255.0f;
        return t <= 0 ? 0 : t >= 255 ? 255 : (uint8_t)t;
    }
    double c = x < it->lo ? it->lo : x > it->hi ? it->hi : x;
    double den = it->mx - it->mn;
    if (!(den > 0)) return 0;
    double t = ((c - it->mn) / den) * 255.0;
    return t <= 0 ? 0 : t >= 255 ? 255 : (uint8_t)t;
}

medseg_status ms_intensity_slice(const medseg_volume *v, const ms_intensity *it, int64_t k, medseg_image *out,
                                 medseg_error *err)
{
    memset(out, 0, sizeof *out);
    size_t count;
    medseg_status st = check_volume(v, &count, err);
    if (st) return st;
    if (k < 0 || k >= v->dim[2])
        return ms_error(err, MEDSEG_ERR_ARG, "slice %lld is outside the volume (0..%lld)", (long long)k,
                        (long long)v->dim[2] - 1);
    size_t npix = (size_t)v->dim[0] * (size_t)v->dim[1];
    size_t nval = npix * (size_t)v->channels;
    size_t base = (size_t)k * nval;
    uint8_t *rgb = ms_malloc(npix * 3, err, "slice image");
    if (!rgb) return MEDSEG_ERR_NOMEM;
    uint8_t *u8 = v->channels == 3 ? rgb : ms_malloc(npix, err, "slice values");
    if (!u8) {
        free(rgb);
        return MEDSEG_ERR_NOMEM;
    }
    if (it->kind == MS_INT_MINMAX) {
        /* micro-sam _to_image: x = float32(v) - min; x = x / max(x); uint8(x * 255) */
        float mn = INFINITY;
        for (size_t i = 0; i < nval; i++) {
            float x = (float)real_at(v, base + i);
            if (x < mn) mn = x;
        }
        float mx = -INFINITY;
        for (size_t i = 0; i < nval; i++) {
            float x = (float)real_at(v, base + i) - mn;
            if (x > mx) mx = x;
        }
        for (size_t i = 0; i < nval; i++) {
            float x = (float)real_at(v, base + i) - mn;
            float t = mx > 0 ? (x / mx) * 255.0f : 0.0f;
            u8[i] = t <= 0 ? 0 : t >= 255 ? 255 : (uint8_t)t;
        }
    } else if (it->kind == MS_INT_NONE && v->dtype == MEDSEG_DT_U8 && !has_scaling(v)) {
        memcpy(u8, (const uint8_t *)v->data + base, nval);
    } else {
        for (size_t i = 0; i < nval; i++) u8[i] = ms_intensity_map_value(it, real_at(v, base + i));
    }
    if (v->channels == 1) {
        for (size_t i = 0; i < npix; i++) rgb[3 * i] = rgb[3 * i + 1] = rgb[3 * i + 2] = u8[i];
        free(u8);
    }
    out->width = (int)v->dim[0];
    out->height = (int)v->dim[1];
    out->channels = 3;
    out->data = rgb;
    return MEDSEG_OK;
}
