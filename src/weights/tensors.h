/* A named set of tensors: what every importer produces, what the safetensors writer writes and
 * what the model loader binds. Names are the official PyTorch state_dict keys
 * (image_encoder.*, prompt_encoder.*, mask_decoder.*). */
#ifndef MS_TENSORS_H
#define MS_TENSORS_H

#include "core/common.h"

typedef enum {
    MS_F32 = 0, MS_F64, MS_F16, MS_BF16, MS_I64, MS_I32, MS_I16, MS_I8, MS_U8, MS_BOOL
} ms_dtype;

#define MS_MAX_NDIM 8

typedef struct {
    char *name;                 /* owned */
    ms_dtype dtype;
    int ndim;
    int64_t shape[MS_MAX_NDIM];
    void *data;                 /* points into an owned buffer or the mapped file */
    size_t nbytes;              /* element count * dtype size */
    int owned;                  /* 1: data was malloc'd for this tensor and is freed with the set */
} ms_tensor;

typedef struct {
    ms_tensor *t;
    size_t n, cap;
    /* string metadata (safetensors "__metadata__"): e.g. "medseg.arch", "medseg.preset",
       "medseg.source" */
    char **meta_key, **meta_val;
    size_t n_meta;
    void *map;                  /* mmap'ed file behind the tensors, or NULL */
    size_t map_len;
} ms_tensors;

size_t ms_dtype_size(ms_dtype d);
const char *ms_dtype_name(ms_dtype d);             /* safetensors spelling: "F32", "I64", ... */
int64_t ms_tensor_numel(const ms_tensor *t);

void ms_tensors_init(ms_tensors *ts);
void ms_tensors_free(ms_tensors *ts);
ms_tensor *ms_tensors_find(const ms_tensors *ts, const char *name);
/* Adds a tensor whose data is copied (data may be NULL: zero-filled). Fails on duplicate names. */
medseg_status ms_tensors_add(ms_tensors *ts, const char *name, ms_dtype dtype, int ndim,
                             const int64_t *shape, const void *data, medseg_error *err);
/* Adds a tensor taking ownership of a malloc'd buffer. */
medseg_status ms_tensors_add_owned(ms_tensors *ts, const char *name, ms_dtype dtype, int ndim,
                                   const int64_t *shape, void *data, medseg_error *err);
medseg_status ms_tensors_remove(ms_tensors *ts, const char *name);
medseg_status ms_tensors_set_meta(ms_tensors *ts, const char *key, const char *val, medseg_error *err);
const char *ms_tensors_get_meta(const ms_tensors *ts, const char *key);
/* Dimension d of tensor `name` when it exists with exactly ndim dimensions and that dimension is in
 * 1 .. 2^20 (a size read from a file, for architecture detection); otherwise -1. */
int ms_tensors_dim(const ms_tensors *ts, const char *name, int d, int ndim);

/* "[a,b,c]" into buf (truncated to len). */
void ms_format_shape(char *buf, size_t len, int ndim, const int64_t *shape);

/* The model loaders' one lookup: tensor `name` must exist, be F32, 4-byte aligned and have
 * exactly the shape [shape[0..ndim-1]]; otherwise MEDSEG_ERR_MODEL naming `who`, the tensor and
 * got/expected. *out points into the set's data. */
medseg_status ms_tensors_get_f32(const ms_tensors *ts, const char *name, int ndim, const int64_t *shape,
                                 const float **out, const char *who, medseg_error *err);

/* Declarative weight table (the SAM prompt encoder and mask decoder use it): one row per
 * official tensor name (name may hold one "%d", expanded for r = 0..reps-1), its float32 shape,
 * and where the bound pointer goes: *(const float **)(base + offset + r * stride). */
typedef struct {
    const char *name;
    int reps;
    int ndim;
    int64_t shape[4];
    size_t offset, stride;
} ms_weight_spec;

/* Checks every row (missing, not F32, wrong shape -> MEDSEG_ERR_MODEL with got/expected) and
 * fills the pointers. who names the module in messages. */
medseg_status ms_bind_weight_table(void *base, const ms_weight_spec *spec, size_t n_spec, const ms_tensors *ts,
                                   const char *who, medseg_error *err);

/* The same idea for tables written per module instance: row name = prefix + suffix, the pointer
 * goes to *dst. */
typedef struct {
    const char *suffix;
    int ndim;
    int64_t shape[4];
    const float **dst;
} ms_bind_row;
medseg_status ms_bind_rows(const ms_tensors *ts, const char *prefix, const ms_bind_row *rows, int n, const char *who,
                           medseg_error *err);

/* Sorts tensors by name (for deterministic files). */
void ms_tensors_sort(ms_tensors *ts);

/* safetensors (https://github.com/huggingface/safetensors format): 8-byte little-endian header
 * length, JSON header, raw little-endian data. Load maps the file read-only; every offset and
 * shape is checked against the file size. Save is atomic (temp file + rename), 64-byte aligned
 * data, tensors sorted by name. */
medseg_status ms_safetensors_load(const char *path, ms_tensors *out, medseg_error *err);
medseg_status ms_safetensors_save(const char *path, const ms_tensors *ts, medseg_error *err);

#endif
