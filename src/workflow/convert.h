/* Value policy of `medseg convert`: which data type and scaling an output file gets so that every
 * real value (stored * scl_slope + scl_inter) of the input survives exactly, and a refusal with
 * one clear line when the target cannot hold the values. Geometry is never touched here: the
 * output volume carries the input's affine, spacing and metadata unchanged.
 *
 * Policy per target (docs/formats.md explains why):
 *   .nii / .nii.gz  stored values and scl_slope/scl_inter kept as they are, when the slope and
 *                   intercept are exact in the header's float32 fields; otherwise real values in
 *                   the narrowest exact type (below).
 *   .nrrd / .npz    no scaling field: unscaled inputs keep their stored type; scaled inputs become
 *                   real values in the narrowest exact type: an integer type when every real value
 *                   is an integer inside its range (uint8, uint16, uint32 for non-negative values;
 *                   int16, int32, int64 otherwise), else float32 when every value is exactly a
 *                   float32, else float64.
 *   .png            one 2D slice, 1 or 3 channels, integer real values in 0..255 (uint8); anything
 *                   else is refused.
 * A requested type (--dtype) is honoured only when every real value is exact in it. */
#ifndef MS_CONVERT_H
#define MS_CONVERT_H

#include "core/common.h"

/* Output formats, recognised by the output file name's extension. */
typedef enum {
    MS_OUT_NONE = 0,
    MS_OUT_NII,
    MS_OUT_NII_GZ,
    MS_OUT_NRRD,
    MS_OUT_NPZ,
    MS_OUT_PNG
} ms_out_format;

/* MS_OUT_NONE when the extension is not one medseg writes (case-insensitive). */
ms_out_format ms_out_format_from_path(const char *path);
const char *ms_out_format_name(ms_out_format f);

/* Parses a type name ("uint8", "int16", "float32", ... as ms_voxel_type_name prints them, plus
 * "u8"/"i16"/"f32"-style short forms); 0 when unknown. */
medseg_dtype ms_voxel_type_from_name(const char *name);

/* Statistics of the real values of a volume (all channels). */
typedef struct {
    size_t n_values;        /* values counted (voxels x channels) */
    size_t n_nonfinite;     /* NaN or +-Inf real values */
    double min, max;        /* over the finite real values; both NaN when there is none */
    double stored_min, stored_max; /* the same over the stored values (finite ones) */
    int integral;           /* every finite real value is an integer */
    int f32_exact;          /* every real value is exactly representable as float32 */
    int scaled;             /* slope != 1 or inter != 0 */
} ms_value_stats;

// v [nz, ny, nx, channels] -> stats
void ms_volume_stats(const medseg_volume *v, ms_value_stats *s);

/* 1 when every real value of v (described by s) is held exactly by type t. */
int ms_voxel_type_holds(medseg_dtype t, const ms_value_stats *s);

/* What a conversion does. */
typedef struct {
    ms_out_format format;
    int keep_stored;        /* 1: stored values, type and scaling written unchanged */
    medseg_dtype dtype;     /* output type (== input type when keep_stored) */
    char note[256];         /* one line: what is written and why */
} ms_convert_plan;

/* Decides the output type for writing in (with stats s) as format; requested 0 = automatic.
 * MEDSEG_ERR_UNSUPPORTED (message names the file, the values and what would hold them) when the
 * target cannot hold the real values exactly. out_path is for messages. */
medseg_status ms_convert_plan_make(ms_convert_plan *plan, const medseg_volume *in, const ms_value_stats *s,
                                   ms_out_format format, medseg_dtype requested, const char *out_path,
                                   medseg_error *err);

/* out = in with the values rewritten as the plan's type (real values, slope 1, inter 0), same
 * dims, channels, geometry and metadata. Only for plans with keep_stored == 0. Fails (and frees
 * out) if a value is not exact in the type, which the plan should have ruled out. */
medseg_status ms_convert_apply(medseg_volume *out, const medseg_volume *in, const ms_convert_plan *plan,
                               medseg_error *err);

/* The affine in the file's own convention: RAS as stored in medseg_volume for RAS sources, rows
 * 0 and 1 negated for LPS sources (DICOM, NRRD). */
void ms_volume_affine_in_source_space(const medseg_volume *v, double out[3][4]);

/* Replaces control characters (bytes < 0x20 and 0x7f) in err's message by '?', so that an error
 * quoting bytes of a hostile file stays one printable line on a terminal. */
void ms_error_make_printable(medseg_error *err);

#endif
