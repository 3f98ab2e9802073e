/* Internal: DICOM reader (Part 10 files and folders of them) and its pixel-data decoders.
 * dicom.c parses files and assembles series into a medseg_volume; dicom_codec.c decodes one
 * frame of pixel data (native, RLE, JPEG baseline/extended, JPEG-LS, JPEG 2000).
 *
 * Geometry: DICOM patient coordinates are LPS; the volume's affine is RAS (rows 0 and 1 negated),
 * source_space = MEDSEG_SPACE_LPS. Voxel i = DICOM column, j = DICOM row, k = slice after sorting
 * by the projection of ImagePositionPatient on the slice normal (row x column direction cosines),
 * ascending, as dcm2niix does. ref: PS3.3 C.7.6.2.1.1 (Image Position / Orientation). */
#ifndef MS_DICOM_H
#define MS_DICOM_H

#include "core/common.h"

#include <stddef.h>
#include <stdint.h>

/* Caps on the work done per file and per folder. */
#define MS_DICOM_MAX_FILE ((size_t)2 << 30)      /* bytes of one file */
#define MS_DICOM_MAX_FILES 20000                 /* regular files scanned in one folder */
#define MS_DICOM_MAX_ELEMENTS 2000000            /* data elements walked in one file */
#define MS_DICOM_MAX_DEPTH 16                    /* nested sequences */
#define MS_DICOM_MAX_FRAMES 65536                /* frames of one file / slices of one series */
#define MS_DICOM_MAX_FRAGMENTS (1 << 20)         /* encapsulated fragments of one file */

/* One series found in a folder (or the one series of a single file). */
typedef struct {
    char uid[72];               /* SeriesInstanceUID ("" when the files have none) */
    char description[128];      /* SeriesDescription or "" */
    char modality[16];          /* Modality or "" */
    int series_number;          /* SeriesNumber, -1 when absent */
    int n_files;                /* files of this series */
    int n_images;               /* frames (slices) over all its files */
    int rows, cols;             /* of the first file (mixed sizes are reported when read) */
    char transfer_syntax[96];   /* transfer syntax name, e.g. "JPEG 2000 Image Compression (Lossless Only)" */
    int has_window;             /* WindowCenter/WindowWidth present in the first file */
    double window_center, window_width; /* their first values (real units, after rescale) */
} ms_dicom_series_info;

/* A file (one slice, or a multi-frame file) or a folder of files holding one DICOM series ->
 * one volume. A folder is scanned (regular files at its top level; non-DICOM files are ignored and
 * counted) and grouped by SeriesInstanceUID; series_uid picks one (NULL: the folder must hold
 * exactly one series, else MEDSEG_ERR_ARG listing UID, description, images and size of each).
 * Stored values are kept with RescaleSlope/Intercept in scl_slope/scl_inter when every slice has
 * the same pair; when they differ per slice, the volume holds float32 real values (slope 1, inter 0). */
medseg_status ms_dicom_read_path(const char *path, const char *series_uid, medseg_volume *out, medseg_error *err);

/* The series in a folder (or the one of a file): *out is malloc'd (free()), *n entries, sorted by
 * SeriesNumber then UID. A folder without any DICOM file gives MEDSEG_ERR_FORMAT. */
medseg_status ms_dicom_list_series(const char *dir, ms_dicom_series_info **out, int *n, medseg_error *err);

/* One DICOM file held in memory -> a volume (its frames sorted as a series). name is for messages.
 * This is the whole per-file path (parser, codecs, geometry) without the file system; the fuzzer
 * uses it. */
medseg_status ms_dicom_read_memory(const uint8_t *data, size_t n, const char *name, medseg_volume *out,
                                   medseg_error *err);

/* Lowers the cap on the values (voxels x channels) of one volume below MS_VOLUME_MAX_VALUES
 * (0 restores it). Process-wide; the fuzz harness uses it to stay inside libFuzzer's memory limit. */
void ms_dicom_set_value_cap(uint64_t cap);

/* 1 when buf (the first n bytes of a file) looks like DICOM: "DICM" at offset 128, or no preamble
 * but a group-0008 element in implicit VR LE at offset 0 (as dcm2niix accepts). */
int ms_dicom_sniff(const uint8_t *buf, size_t n);

/* Name of a transfer syntax UID ("" -> "Implicit VR Little Endian"), or NULL when unknown. */
const char *ms_dicom_ts_name(const char *uid);

/* ---- pixel-data decoding (dicom_codec.c) ---- */

typedef enum {
    MS_DCM_TS_IMPLICIT_LE = 0, MS_DCM_TS_EXPLICIT_LE, MS_DCM_TS_DEFLATED_LE, MS_DCM_TS_EXPLICIT_BE,
    MS_DCM_TS_JPEG_BASELINE, MS_DCM_TS_JPEG_EXTENDED, MS_DCM_TS_JPEG_LOSSLESS, MS_DCM_TS_JPEGLS,
    MS_DCM_TS_J2K, MS_DCM_TS_RLE, MS_DCM_TS_OTHER
} ms_dcm_codec;

/* Pixel module of a file, what the decoders need. */
typedef struct {
    int rows, cols;
    int spp;            /* SamplesPerPixel: 1 or 3 */
    int planar;         /* PlanarConfiguration (native / RLE input layout) */
    int bits_alloc;     /* 1, 8, 16 or 32 */
    int bits_stored;
    int high_bit;
    int pixel_rep;      /* 0 unsigned, 1 signed */
    char photometric[20];
    ms_dcm_codec codec;
    const char *ts_uid; /* for messages */
} ms_dcm_pixel;

/* Bytes per decoded value: 1 (bits_alloc 1 or 8), 2 or 4. */
size_t ms_dcm_value_size(const ms_dcm_pixel *px);

/* Decodes one compressed frame (the concatenated fragments of that frame) into out, which holds
 * rows*cols*spp values of ms_dcm_value_size bytes, samples interleaved per pixel (RGB as RGB; YBR
 * still YBR except where the codec converts: see dicom_codec.c). name is for messages. */
medseg_status ms_dcm_decode_frame(const ms_dcm_pixel *px, const uint8_t *src, size_t n, void *out,
                                  const char *name, medseg_error *err);

/* Native (uncompressed) frame f of the PixelData value (n bytes) into out (same layout as above;
 * 1-bit data unpacked LSB first, planar configuration 1 interleaved). */
medseg_status ms_dcm_native_frame(const ms_dcm_pixel *px, const uint8_t *src, size_t n, int64_t frame, void *out,
                                  const char *name, medseg_error *err);

/* In place on one decoded frame: sign extension from HighBit for signed data with
 * BitsStored < BitsAllocated, and YBR_FULL / YBR_FULL_422 -> RGB (PS3.3 C.7.6.3.1.2) when the
 * codec left the values in YBR. */
void ms_dcm_postprocess_frame(const ms_dcm_pixel *px, void *frame, int ybr_to_rgb);

#endif
