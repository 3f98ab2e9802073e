/* Value policy of `medseg convert` (see convert.h and docs/formats.md).
 * ref: the NIfTI-1 scaling rule "y = scl_slope * x + scl_inter when scl_slope != 0" (nifti1.h);
 *      DICOM PS3.3 C.11.1.1.2 (Rescale Slope/Intercept: output units = m*SV + b). */
#include "workflow/convert.h"

#include "io/volume.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && !strcasecmp(s + n - m, suffix);
}

ms_out_format ms_out_format_from_path(const char *path)
{
    if (!path) return MS_OUT_NONE;
    if (ends_with(path, ".nii.gz")) return MS_OUT_NII_GZ;
    if (ends_with(path, ".nii")) return MS_OUT_NII;
    if (ends_with(path, ".nrrd")) return MS_OUT_NRRD;
    if (ends_with(path, ".npz")) return MS_OUT_NPZ;
    if (ends_with(path, ".png")) return MS_OUT_PNG;
    return MS_OUT_NONE;
}

const char *ms_out_format_name(ms_out_format f)
{
    switch (f) {
    case MS_OUT_NII: return "NIfTI (.nii)";
    case MS_OUT_NII_GZ: return "NIfTI (.nii.gz)";
    case MS_OUT_NRRD: return "NRRD (.nrrd)";
    case MS_OUT_NPZ: return "npz (.npz)";
    case MS_OUT_PNG: return "PNG (.png)";
    default: return "unknown";
    }
}

medseg_dtype ms_voxel_type_from_name(const char *name)
{
    static const struct {
        const char *a, *b, *c;
        medseg_dtype t;
    } names[] = {
        {"uint8", "u8", "uchar", MEDSEG_DT_U8},     {"int8", "i8", "char", MEDSEG_DT_I8},
        {"uint16", "u16", "ushort", MEDSEG_DT_U16}, {"int16", "i16", "short", MEDSEG_DT_I16},
        {"uint32", "u32", "uint", MEDSEG_DT_U32},   {"int32", "i32", "int", MEDSEG_DT_I32},
        {"uint64", "u64", "ulong", MEDSEG_DT_U64},  {"int64", "i64", "long", MEDSEG_DT_I64},
        {"float32", "f32", "float", MEDSEG_DT_F32}, {"float64", "f64", "double", MEDSEG_DT_F64},
    };
    if (!name) return 0;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (!strcasecmp(name, names[i].a) || !strcasecmp(name, names[i].b) || !strcasecmp(name, names[i].c))
            return names[i].t;
    return 0;
}

static int is_scaled(const medseg_volume *v)
{
    return v->scl_slope != 1.0 || v->scl_inter != 0.0;
}

/* The real value the way every reader defines it: stored * slope + inter, in double. */
static double real_value(const medseg_volume *v, size_t n, int scaled)
{
    double x = ms_voxel_stored(v->data, v->dtype, n);
    return scaled ? x * v->scl_slope + v->scl_inter : x;
}

void ms_volume_stats(const medseg_volume *v, ms_value_stats *s)
{
    memset(s, 0, sizeof *s);
    s->min = s->max = s->stored_min = s->stored_max = NAN;
    s->integral = 1;
    s->f32_exact = 1;
    s->scaled = is_scaled(v);
    size_t n = v->data ? ms_volume_count(v) : 0;
    s->n_values = n;
    int any = 0;
    for (size_t i = 0; i < n; i++) {
        double x = ms_voxel_stored(v->data, v->dtype, i);
        double y = s->scaled ? x * v->scl_slope + v->scl_inter : x;
        if (!isfinite(y)) {
            s->n_nonfinite++;
            if (!isnan(y) && (double)(float)y != y) s->f32_exact = 0;
            continue;
        }
        if (!any) {
            s->min = s->max = y;
            s->stored_min = s->stored_max = x;
            any = 1;
        } else {
            if (y < s->min) s->min = y;
            if (y > s->max) s->max = y;
            if (x < s->stored_min) s->stored_min = x;
            if (x > s->stored_max) s->stored_max = x;
        }
        if (s->integral && y != floor(y)) s->integral = 0;
        if (s->f32_exact && (double)(float)y != y) s->f32_exact = 0;
    }
}

/* Range of the integer types as doubles (both ends exact in double). */
static int int_range(medseg_dtype t, double *lo, double *hi)
{
    switch (t) {
    case MEDSEG_DT_U8: *lo = 0, *hi = 255; return 1;
    case MEDSEG_DT_I8: *lo = -128, *hi = 127; return 1;
    case MEDSEG_DT_U16: *lo = 0, *hi = 65535; return 1;
    case MEDSEG_DT_I16: *lo = -32768, *hi = 32767; return 1;
    case MEDSEG_DT_U32: *lo = 0, *hi = 4294967295.0; return 1;
    case MEDSEG_DT_I32: *lo = -2147483648.0, *hi = 2147483647.0; return 1;
    /* 2^64 and 2^63 are the first values out of range; values are compared with < below */
    case MEDSEG_DT_U64: *lo = 0, *hi = 18446744073709551616.0; return 2;
    case MEDSEG_DT_I64: *lo = -9223372036854775808.0, *hi = 9223372036854775808.0; return 2;
    default: return 0;
    }
}

int ms_voxel_type_holds(medseg_dtype t, const ms_value_stats *s)
{
    if (t == MEDSEG_DT_F64) return 1;
    if (t == MEDSEG_DT_F32) return s->f32_exact;
    double lo, hi;
    int kind = int_range(t, &lo, &hi);
    if (!kind) return 0;
    if (s->n_nonfinite || !s->integral) return 0;
    if (s->n_values == 0 || isnan(s->min)) return 1;
    if (s->min < lo) return 0;
    return kind == 1 ? s->max <= hi : s->max < hi;
}

/* The narrowest type that holds every real value exactly (see convert.h). */
static medseg_dtype narrowest_exact(const ms_value_stats *s)
{
    static const medseg_dtype unsigned_order[] = {MEDSEG_DT_U8, MEDSEG_DT_U16, MEDSEG_DT_U32};
    static const medseg_dtype signed_order[] = {MEDSEG_DT_I16, MEDSEG_DT_I32, MEDSEG_DT_I64};
    if (s->integral && !s->n_nonfinite) {
        if (!(s->min < 0))
            for (size_t i = 0; i < 3; i++)
                if (ms_voxel_type_holds(unsigned_order[i], s)) return unsigned_order[i];
        for (size_t i = 0; i < 3; i++)
            if (ms_voxel_type_holds(signed_order[i], s)) return signed_order[i];
    }
    return s->f32_exact ? MEDSEG_DT_F32 : MEDSEG_DT_F64;
}

static void range_text(char *buf, size_t len, const ms_value_stats *s)
{
    if (isnan(s->min))
        snprintf(buf, len, "no finite values%s", s->n_nonfinite ? " (NaN/Inf only)" : "");
    else
        snprintf(buf, len, "real values %.10g..%.10g%s%s", s->min, s->max, s->integral ? "" : " (not all integers)",
                 s->n_nonfinite ? ", with NaN/Inf" : "");
}

medseg_status ms_convert_plan_make(ms_convert_plan *plan, const medseg_volume *in, const ms_value_stats *s,
                                   ms_out_format format, medseg_dtype requested, const char *out_path,
                                   medseg_error *err)
{
    memset(plan, 0, sizeof *plan);
    plan->format = format;
    char range[160];
    range_text(range, sizeof range, s);
    if (format == MS_OUT_NONE)
        return ms_error(err, MEDSEG_ERR_ARG, "%s: unknown output format (use .nii, .nii.gz, .nrrd, .npz or .png)",
                        out_path);
    if (in->channels != 1 && in->channels != 3)
        return ms_error(err, MEDSEG_ERR_UNSUPPORTED, "%s: %d channels per voxel; only 1 or 3 (RGB) can be written",
                        out_path, in->channels);
    if (requested && !ms_voxel_type_size(requested))
        return ms_error(err, MEDSEG_ERR_ARG, "%s: invalid output data type", out_path);

    if (format == MS_OUT_PNG) {
        if (in->dim[2] != 1)
            return ms_error(err, MEDSEG_ERR_UNSUPPORTED,
                            "%s: PNG holds one 2D image, the input has %lld slices (write .nii.gz, .nrrd or .npz)",
                            out_path, (long long)in->dim[2]);
        if (requested && requested != MEDSEG_DT_U8)
            return ms_error(err, MEDSEG_ERR_UNSUPPORTED, "%s: PNG is written as uint8 only, not %s", out_path,
                            ms_voxel_type_name(requested));
        if (!ms_voxel_type_holds(MEDSEG_DT_U8, s))
            return ms_error(err, MEDSEG_ERR_UNSUPPORTED,
                            "%s: an 8-bit PNG cannot hold %s exactly (0..255 integers only); nothing written: "
                            "write .nii.gz, .nrrd or .npz instead",
                            out_path, range);
        plan->dtype = MEDSEG_DT_U8;
        plan->keep_stored = in->dtype == MEDSEG_DT_U8 && !s->scaled;
        snprintf(plan->note, sizeof plan->note, "uint8 %s (%s)", in->channels == 3 ? "RGB" : "grey", range);
        return MEDSEG_OK;
    }

    if (requested) {
        if (!ms_voxel_type_holds(requested, s))
            return ms_error(err, MEDSEG_ERR_UNSUPPORTED,
                            "%s: %s cannot hold the %s exactly; nothing written (the narrowest exact type is %s)",
                            out_path, ms_voxel_type_name(requested), range, ms_voxel_type_name(narrowest_exact(s)));
        plan->dtype = requested;
        plan->keep_stored = requested == in->dtype && !s->scaled;
        snprintf(plan->note, sizeof plan->note, "%s real values as requested (%s)", ms_voxel_type_name(requested), range);
        return MEDSEG_OK;
    }

    if (!s->scaled) {
        plan->keep_stored = 1;
        plan->dtype = in->dtype;
        snprintf(plan->note, sizeof plan->note, "stored %s values kept (no scaling; %s)", ms_voxel_type_name(in->dtype),
                 range);
        return MEDSEG_OK;
    }
    if (format == MS_OUT_NII || format == MS_OUT_NII_GZ) {
        /* scl_slope and scl_inter are float32 in the NIfTI-1 header */
        if ((double)(float)in->scl_slope == in->scl_slope && (double)(float)in->scl_inter == in->scl_inter &&
            in->scl_slope != 0.0 && isfinite(in->scl_slope) && isfinite(in->scl_inter)) {
            plan->keep_stored = 1;
            plan->dtype = in->dtype;
            snprintf(plan->note, sizeof plan->note, "stored %s values kept with scl_slope %.9g, scl_inter %.9g (%s)",
                     ms_voxel_type_name(in->dtype), in->scl_slope, in->scl_inter, range);
            return MEDSEG_OK;
        }
    }
    plan->dtype = narrowest_exact(s);
    snprintf(plan->note, sizeof plan->note, "scaling (slope %.9g, intercept %.9g) applied: %s real values (%s)",
             in->scl_slope, in->scl_inter, ms_voxel_type_name(plan->dtype), range);
    return MEDSEG_OK;
}

static void store_value(void *data, medseg_dtype t, size_t n, double y)
{
    switch (t) {
    case MEDSEG_DT_U8: ((uint8_t *)data)[n] = (uint8_t)y; break;
    case MEDSEG_DT_I8: ((int8_t *)data)[n] = (int8_t)y; break;
    case MEDSEG_DT_U16: ((uint16_t *)data)[n] = (uint16_t)y; break;
    case MEDSEG_DT_I16: ((int16_t *)data)[n] = (int16_t)y; break;
    case MEDSEG_DT_U32: ((uint32_t *)data)[n] = (uint32_t)y; break;
    case MEDSEG_DT_I32: ((int32_t *)data)[n] = (int32_t)y; break;
    case MEDSEG_DT_U64: ((uint64_t *)data)[n] = (uint64_t)y; break;
    case MEDSEG_DT_I64: ((int64_t *)data)[n] = (int64_t)y; break;
    case MEDSEG_DT_F32: ((float *)data)[n] = (float)y; break;
    case MEDSEG_DT_F64: ((double *)data)[n] = y; break;
    }
}

/* 1 when y converts to type t without change (the range check comes first: an out-of-range
 * float-to-integer conversion is undefined behaviour). */
static int exact_in(medseg_dtype t, double y)
{
    if (t == MEDSEG_DT_F64) return 1;
    if (t == MEDSEG_DT_F32) return isnan(y) || (double)(float)y == y;
    double lo, hi;
    int kind = int_range(t, &lo, &hi);
    if (!kind || !isfinite(y) || y != floor(y) || y < lo) return 0;
    return kind == 1 ? y <= hi : y < hi;
}

medseg_status ms_convert_apply(medseg_volume *out, const medseg_volume *in, const ms_convert_plan *plan,
                               medseg_error *err)
{
    if (plan->keep_stored)
        return ms_error(err, MEDSEG_ERR_INTERNAL, "convert: nothing to apply for a plan that keeps stored values");
    medseg_status st = ms_volume_alloc(out, in->dim[0], in->dim[1], in->dim[2], in->channels, plan->dtype,
                                       "converted volume", err);
    if (st) return st;
    st = ms_volume_copy_geometry(out, in, err);
    if (st) {
        medseg_volume_free(out);
        memset(out, 0, sizeof *out);
        return st;
    }
    memcpy(out->spacing, in->spacing, sizeof out->spacing);
    memcpy(out->affine, in->affine, sizeof out->affine);
    out->source_space = in->source_space;
    memcpy(out->format, in->format, sizeof out->format);
    memcpy(out->modality, in->modality, sizeof out->modality);
    memcpy(out->description, in->description, sizeof out->description);
    memcpy(out->compression, in->compression, sizeof out->compression);
    out->scl_slope = 1.0;
    out->scl_inter = 0.0;
    int scaled = is_scaled(in);
    size_t n = ms_volume_count(in);
    for (size_t i = 0; i < n; i++) {
        double y = real_value(in, i, scaled);
        if (!exact_in(plan->dtype, y)) {
            medseg_volume_free(out);
            memset(out, 0, sizeof *out);
            return ms_error(err, MEDSEG_ERR_UNSUPPORTED, "convert: value %.17g (value index %zu) is not exact in %s",
                            y, i, ms_voxel_type_name(plan->dtype));
        }
        store_value(out->data, plan->dtype, i, y);
    }
    return MEDSEG_OK;
}

void ms_volume_affine_in_source_space(const medseg_volume *v, double out[3][4])
{
    memcpy(out, v->affine, sizeof(double[3][4]));
    if (v->source_space == MEDSEG_SPACE_LPS)
        for (int r = 0; r < 2; r++)
            for (int c = 0; c < 4; c++) out[r][c] = out[r][c] == 0.0 ? 0.0 : -out[r][c];
}

void ms_error_make_printable(medseg_error *err)
{
    if (!err) return;
    for (char *c = err->message; *c; c++)
        if ((unsigned char)*c < 0x20 || (unsigned char)*c == 0x7f) *c = '?';
}
