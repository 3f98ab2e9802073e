/* Internal: the volume type's helpers and the per-format readers/writers behind
 * medseg_volume_load / medseg_volume_save (include/medseg.h). One file per format:
 * nifti.c (nifticlib), nrrd.c, npz.c (libzip + npy.c), dicom.c, and image.c for 2D files.
 *
 * Conventions every reader follows:
 *   - voxel (i,j,k) at data[((k*ny + j)*nx + i)*channels + c], i = column;
 *   - affine maps (i,j,k) to world RAS+ mm; LPS sources (DICOM, NRRD) are converted by negating
 *     the first two rows, and source_space says which the file used;
 *   - stored values are kept as stored; scl_slope/scl_inter carry the scaling (1/0 when none);
 *   - every size read from a file is checked against the bytes present and the caps below
 *     before anything is allocated; errors name the file. */
#ifndef MS_VOLUME_H
#define MS_VOLUME_H

#include "core/common.h"

/* Largest accepted volume: values (voxels x channels) and side length. */
#define MS_VOLUME_MAX_VALUES ((uint64_t)1 << 31)
#define MS_VOLUME_MAX_SIDE ((int64_t)1 << 16)
/* Largest accepted file (compressed or not) and largest decompressed payload. */
#define MS_VOLUME_MAX_FILE ((size_t)4 << 30)

size_t ms_voxel_type_size(medseg_dtype t);     /* 0 for an invalid type */
const char *ms_voxel_type_name(medseg_dtype t); /* "uint8", "int16", "float32", ... */
int ms_voxel_type_is_float(medseg_dtype t);
/* Stored value n (no scaling) of an array of type t, as double (exact but for 64-bit integers
 * beyond 2^53). */
double ms_voxel_stored(const void *data, medseg_dtype t, size_t n);

/* Zeroes *v, checks dims/channels against the caps, allocates zeroed data, sets identity
 * geometry (spacing 1, affine = diag(1,1,1)), slope 1, inter 0. name is for messages. */
medseg_status ms_volume_alloc(medseg_volume *v, int64_t nx, int64_t ny, int64_t nz, int channels,
                              medseg_dtype dtype, const char *name, medseg_error *err);
size_t ms_volume_count(const medseg_volume *v); /* nx*ny*nz*channels */

/* Copies geometry (dims excepted): spacing, affine, source_space, modality, and a deep copy of
 * the format header kept in priv when the format has one (so a label map written "like" an input
 * NIfTI keeps its qform/sform exactly). */
medseg_status ms_volume_copy_geometry(medseg_volume *dst, const medseg_volume *src, medseg_error *err);

/* Real values (scaling applied) of slice k, channel c, as float: out [ny][nx]. */
void ms_volume_slice_f32(const medseg_volume *v, int64_t k, int c, float *out);

/* Spacing from the affine's column norms. */
void ms_volume_spacing_from_affine(medseg_volume *v);

/* Per-format readers (path = file, or folder for DICOM). */
medseg_status ms_nifti_read(const char *path, medseg_volume *out, medseg_error *err);
medseg_status ms_nrrd_read(const char *path, medseg_volume *out, medseg_error *err);
medseg_status ms_npz_read_volume(const char *path, const char *key, medseg_volume *out, medseg_error *err);
medseg_status ms_image_read_volume(const char *path, medseg_volume *out, medseg_error *err);

/* Per-format writers (atomic). */
medseg_status ms_nifti_write(const char *path, const medseg_volume *v, medseg_error *err);
medseg_status ms_nrrd_write(const char *path, const medseg_volume *v, medseg_error *err);
medseg_status ms_npz_write_volume(const char *path, const char *key, const medseg_volume *v, medseg_error *err);

/* A label map (dtype U8 or U16, channels 1, same dims as like) written with like's geometry:
 * .nii/.nii.gz (like's NIfTI header kept when it has one), .nrrd, .npz (key `segs`, (D,H,W)),
 * .png (2D only). */
medseg_status ms_labelmap_save(const char *path, const medseg_volume *labels, const medseg_volume *like,
                               medseg_error *err);
/* One 8-bit PNG per slice: <dir>/<prefix>_<k, 4 digits>.png (values as stored, U8 only). */
medseg_status ms_labelmap_save_png_slices(const char *dir, const char *prefix, const medseg_volume *labels,
                                          medseg_error *err);

#endif
