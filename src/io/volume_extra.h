/* Internal additions to src/io/volume.h (volume.h is frozen): the per-format header kept in
 * medseg_volume.priv, the DICOM entry point that dicom.c provides, gzip helpers shared by the
 * NIfTI and NRRD code, and the npz boxes reader. */
#ifndef MS_VOLUME_EXTRA_H
#define MS_VOLUME_EXTRA_H

#include "io/volume.h"

/* Every medseg_volume.priv starts with this header, so medseg_volume_free and
 * ms_volume_copy_geometry can release and duplicate a format's header without knowing it. */
typedef enum { MS_PRIV_NIFTI = 1, MS_PRIV_DICOM = 2, MS_PRIV_OTHER = 3 } ms_priv_kind;
typedef struct ms_volume_priv {
    int kind;                                                       /* ms_priv_kind */
    void (*free_fn)(struct ms_volume_priv *p);                      /* releases p itself too */
    struct ms_volume_priv *(*clone_fn)(const struct ms_volume_priv *p); /* deep copy or NULL */
} ms_volume_priv;

/* Written by the dicom helper in src/io/dicom.c: a DICOM file, or a folder holding DICOM files;
 * series_uid NULL = the folder must hold one series. */
medseg_status ms_dicom_read_path(const char *path, const char *series_uid, medseg_volume *out, medseg_error *err);

/* ---- gzip ---- */
int ms_is_gzip(const uint8_t *buf, size_t len);
/* Inflates gzip (or zlib) data, concatenated gzip members included, stopping once max_out bytes
 * are produced. *out is malloc'd; *out_len < max_out means the stream ended first. A corrupt
 * stream is an error; a stream cut short returns what was decoded with *truncated = 1. Once
 * max_out bytes are out, the rest of the stream (up to 1 MiB more) is decoded and discarded to
 * check that it ends intact: a file cut inside the gzip trailer also sets *truncated. */
medseg_status ms_gunzip(const uint8_t *in, size_t in_len, size_t max_out, const char *name, uint8_t **out,
                        size_t *out_len, int *truncated, medseg_error *err);

/* Output file that is atomic (temporary + rename) and optionally gzip-compressed. */
typedef struct {
    ms_atomic_file af;
    int gz;
    int failed;
    void *zs; /* z_stream when gz */
} ms_vol_out;
medseg_status ms_vol_out_open(ms_vol_out *o, const char *path, int gz, medseg_error *err);
void ms_vol_out_write(ms_vol_out *o, const void *buf, size_t n); /* errors reported at commit */
/* Everything written after this call is gzip-compressed (one gzip member to the end). */
medseg_status ms_vol_out_start_gzip(ms_vol_out *o, medseg_error *err);
medseg_status ms_vol_out_commit(ms_vol_out *o, medseg_error *err);
void ms_vol_out_abort(ms_vol_out *o);

/* 1 if path ends with suffix (ASCII case-insensitive). */
int ms_path_has_suffix(const char *path, const char *suffix);

/* NIfTI writer with options: drop_ext drops the header extensions of the kept header (a label
 * map must not inherit its image's extensions); labelmap sets intent "label" and no scaling. */
medseg_status ms_nifti_write_ex(const char *path, const medseg_volume *v, int drop_ext, int labelmap,
                                medseg_error *err);

/* Reads `boxes` of a challenge .npz: *boxes is malloc'd [n][ncols] (row-major), as float64. */
medseg_status ms_npz_read_boxes(const char *path, double **boxes, int *n, int *ncols, medseg_error *err);

#endif
