/* 3D segmentation by prompt propagation: segment a key slice from the user's prompt, then walk
 * slice by slice up and down the volume, prompting each slice from its neighbour's result.
 *
 *   ms_slice_source   gives a session the image embedding of slice z of one volume: from memory
 *                     (each slice is encoded at most once per source), from an embedding cache on
 *                     disk (embed_cache.h), or by running the encoder (and filling the cache).
 *   ms_propagate      one object: key slice, then z+1.., then z-1.. .
 *
 * Modes (how a slice is prompted from its neighbour's mask M and low-res logits L):
 *   box        tight box of M grown by expand_px + expand_frac * max(W, H) per side, clipped to the
 *              image. LiteMedSAM's 3D rule is expand_frac = 3/256, key box again when M is empty
 *              (ref: bowang-lab/MedSAM branch LiteMedSAM, CVPR24_LiteMedSAM_infer.py, MedSAM_infer_npz_3D)
 *   box+mask   the box above plus M as mask_input: L itself (mask_feedback 1) or M turned into
 *              +-6.9 pseudo-logits on the 256 grid (mask_feedback 2, micro-sam's "mask" projection;
 *              ref: micro_sam/prompt_based_segmentation.py segment_from_mask, _compute_logits_from_mask)
 *   point      one positive click at the maximum of M's inner distance (EDT to the background,
 *              image border counts as background; first maximum in row-major order)
 *   points     n_points positive clicks: the inner-distance maximum, then greedy max-min spread
 *              over pixels at least 2 px deep; plus up to 4 background clicks at the midpoints of
 *              the sides of M's box grown by max(3 px, the box expansion)
 * Stops (per direction): the z-range end, an empty mask ("vanished", fewer than min_area pixels),
 * or IoU(M_z, M_z+-1) < min_iou ("iou"); the slice that triggers "iou" is discarded.
 *
 * Coordinates: x = column (i), y = row (j), z = slice (k) of the medseg_volume; masks are
 * [nz][ny][nx] bytes, 0/1, i fastest, the volume's own layout. */
#ifndef MS_PROPAGATE_H
#define MS_PROPAGATE_H

#include "core/common.h"
#include "workflow/intensity.h"

typedef struct ms_embed_cache ms_embed_cache; /* workflow/embed_cache.h */

/* ------------------------------------------------------------ slice source */

typedef struct ms_slice_source ms_slice_source;

/* Progress callback: called after each slice made ready (done of total known so far). */
typedef void (*ms_slice_progress_fn)(void *user, int64_t z, const char *how /* "encoded"|"disk"|"memory" */);

/* s: the session to load slices into (borrowed; the source owns nothing of it). v: the volume
 * (borrowed, must outlive the source). it: resolved intensity mapping. cache: NULL or an open
 * embedding cache whose key matches (v, it, model). mem_slices: how many embeddings to keep in
 * memory (4 MiB each; 0 = default 64, LRU). */
ms_slice_source *ms_slice_source_create(medseg_session *s, const medseg_volume *v, const ms_intensity *it,
                                        ms_embed_cache *cache, int mem_slices, medseg_error *err);
/* After this, the session holds slice z (image size dim[0] x dim[1]). */
medseg_status ms_slice_source_select(ms_slice_source *src, int64_t z, medseg_error *err);
medseg_session *ms_slice_source_session(ms_slice_source *src);
const medseg_volume *ms_slice_source_volume(const ms_slice_source *src);
void ms_slice_source_set_progress(ms_slice_source *src, ms_slice_progress_fn fn, void *user);
/* Counters since creation: slices run through the encoder, read from disk, served from memory. */
void ms_slice_source_counts(const ms_slice_source *src, int *encoded, int *from_disk, int *from_memory);
void ms_slice_source_free(ms_slice_source *src);

/* ------------------------------------------------------------ propagation */

typedef enum { MS_PROP_BOX = 0, MS_PROP_BOX_MASK = 1, MS_PROP_POINT = 2, MS_PROP_POINTS = 3 } ms_prop_mode;

typedef struct {
    ms_prop_mode mode;
    double expand_px;   /* box growth per side, pixels */
    double expand_frac; /* plus this fraction of max(W, H) (LiteMedSAM: 3/256) */
    double min_iou;     /* stop a direction when IoU with the previous slice's mask < min_iou (0: never) */
    int min_area;       /* a mask with fewer pixels counts as vanished (>= 1) */
    int key_fallback;   /* box modes: an empty neighbour mask -> prompt with the key box again
                           (LiteMedSAM) instead of stopping */
    int mask_feedback;  /* box+mask: 1 = previous low-res logits, 2 = previous mask as pseudo-logits */
    int n_points;       /* points mode: 2..MEDSEG_MAX_POINTS */
    medseg_output_mode output; /* SINGLE (token 0) or BEST */
} ms_prop_options;

/* The measured defaults (docs/propagation.md). */
ms_prop_options ms_prop_default(void);
/* LiteMedSAM's 3D rule exactly as the golden protocol propagate_litemedsam_midbox states. */
ms_prop_options ms_prop_litemedsam(void);
/* "box" | "box+mask" | "point" | "points" -> mode. */
medseg_status ms_prop_parse_mode(const char *s, ms_prop_mode *out, medseg_error *err);
const char *ms_prop_mode_name(ms_prop_mode m);

/* One object's prompt in volume coordinates. */
typedef struct {
    int64_t key_z;  /* the slice the user prompted */
    int has_box;
    float box[4];   /* x0, y0, x1, y1 on key_z (pixels, as medseg_prompt.box) */
    int n_points;
    float points[MEDSEG_MAX_POINTS][3]; /* x, y, z; points on key_z prompt the key slice, points on
                                           other slices are added when propagation reaches them */
    int labels[MEDSEG_MAX_POINTS];      /* 1 object, 0 background */
    int64_t z0, z1; /* slices allowed, inclusive (clipped to the volume); z0 > z1: whole volume */
} ms_prop_prompt;

/* The challenge convention: box3d = x0,y0,z0,x1,y1,z1 (inclusive voxel indices) -> key slice
 * (z0 + z1) / 2 (floor), box x0,y0,x1,y1 on it, range z0..z1. Checks it against the volume. */
medseg_status ms_prop_prompt_from_box3d(const double box3d[6], const medseg_volume *v, ms_prop_prompt *out,
                                        medseg_error *err);

typedef struct {
    int64_t z_first, z_last; /* slices with a non-empty mask (-1, -1 when empty) */
    int64_t voxels;
    int n_decoded;           /* decoder runs */
    char stop_down[16], stop_up[16]; /* "range", "vanished", "iou" */
} ms_prop_result;

/* Propagates one object. mask [nz][ny][nx] (0/1) is overwritten (zeroed first). */
medseg_status ms_propagate(ms_slice_source *src, const ms_prop_prompt *p, const ms_prop_options *o, uint8_t *mask,
                           ms_prop_result *r, medseg_error *err);

/* Convenience for callers with one session and one volume (no disk cache): resolves the
 * intensity preset (NULL = "auto"), makes a slice source and propagates. */
medseg_status ms_propagate_volume(medseg_session *s, const medseg_volume *v, const char *intensity,
                                  const ms_prop_prompt *p, const ms_prop_options *o, uint8_t *mask,
                                  ms_prop_result *r, medseg_error *err);

#endif
