/* Intensity presets: a slice of a medseg_volume -> a 3-channel 8-bit image, the way the official
 * pipelines feed SAM-family models (grey replicated to RGB, then the model's own preprocessing).
 *
 *   none        stored values as they are (uint8 data, e.g. the challenge npz `imgs`, which is
 *               already windowed); other types are clamped to 0..255 and truncated
 *   window      CT window W/L: clip to [L - W/2, L + W/2], then min-max of the CLIPPED VOLUME to
 *               0..255, truncated to uint8 (MedSAM pre_CT_MR.py, CT branch)
 *   percentile  clip to the 0.5 / 99.5 percentiles of the strictly positive voxels of the whole
 *               volume, min-max of the clipped volume to 0..255, voxels == 0 stay 0, truncated
 *               (MedSAM pre_CT_MR.py, non-CT branch)
 *   minmax      per slice: (v - min) / max(v - min) * 255 in float32, truncated (micro-sam
 *               util._to_image)
 *   auto        uint8 -> none; modality CT, or integer-valued data reaching HU-like air values
 *               (min <= -500) -> window soft tissue W400 L40; else percentile
 *
 * Arithmetic follows numpy's type rules in those scripts: float32 volumes (no scaling) are
 * computed in float32, everything else in float64. */
#ifndef MS_INTENSITY_H
#define MS_INTENSITY_H

#include "core/common.h"

typedef enum {
    MS_INT_AUTO = 0,
    MS_INT_NONE,
    MS_INT_WINDOW,
    MS_INT_PERCENTILE,
    MS_INT_MINMAX
} ms_intensity_kind;

/* What the user asked for (parsed from a string). */
typedef struct {
    ms_intensity_kind kind;
    double width, level; /* MS_INT_WINDOW */
    char name[48];       /* canonical name: "auto", "none", "abdomen", "W400,L40", ... */
} ms_intensity_spec;

/* The mapping resolved for one volume (auto decided, whole-volume statistics computed). */
typedef struct {
    ms_intensity_kind kind; /* never MS_INT_AUTO */
    double lo, hi;          /* clip bounds (window, percentile) */
    double mn, mx;          /* min and max of the clipped volume: the 0 and 255 ends */
    int f32;                /* arithmetic in float32 (float32 voxels without scaling) */
    char desc[96];          /* human- and cache-readable: "window W400 L40 (abdomen)", ... */
} ms_intensity;

/* "auto" | "none" | "percentile" | "minmax" | a window name: "abdomen" (= "soft-tissue"), "liver",
 * "lung", "bone", "brain" | "W,L" (e.g. "400,40"). */
medseg_status ms_intensity_parse(const char *s, ms_intensity_spec *out, medseg_error *err);

/* Resolves spec against the volume (reads every voxel once for window/percentile). */
medseg_status ms_intensity_resolve(const medseg_volume *v, const ms_intensity_spec *spec, ms_intensity *out,
                                   medseg_error *err);

/* One real value -> uint8 under a resolved window/percentile/none mapping (not minmax, which needs
 * the slice). Exposed for tests. */
uint8_t ms_intensity_map_value(const ms_intensity *it, double v);

/* Slice k of v -> out: an RGB medseg_image of dim[0] x dim[1] (free with medseg_image_free).
 * 3-channel volumes are mapped per value. */
medseg_status ms_intensity_slice(const medseg_volume *v, const ms_intensity *it, int64_t k, medseg_image *out,
                                 medseg_error *err);

#endif
