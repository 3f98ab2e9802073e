/* NumPy .npy arrays (format 1.0/2.0/3.0): reader from a file or a memory buffer (npz members),
 * writer. Only little-endian/byte dtypes, C order. Shapes and sizes are checked against the
 * bytes present. */
#ifndef MS_NPY_H
#define MS_NPY_H

#include "core/common.h"

typedef enum { MS_NPY_U8, MS_NPY_I8, MS_NPY_U16, MS_NPY_I16, MS_NPY_U32, MS_NPY_I32, MS_NPY_U64,
               MS_NPY_I64, MS_NPY_F32, MS_NPY_F64, MS_NPY_BOOL } ms_npy_dtype;

typedef struct {
    ms_npy_dtype dtype;
    int ndim;
    int64_t shape[8];
    size_t count;       /* number of elements */
    size_t elem_size;
    void *data;         /* malloc'd, count * elem_size bytes */
} ms_npy;

/* name is used in error messages only. */
medseg_status ms_npy_parse(const uint8_t *buf, size_t len, const char *name, ms_npy *out, medseg_error *err);
medseg_status ms_npy_load(const char *path, ms_npy *out, medseg_error *err);
/* Writes float32 / uint8 arrays (atomic). */
medseg_status ms_npy_save(const char *path, ms_npy_dtype dtype, int ndim, const int64_t *shape,
                          const void *data, medseg_error *err);
void ms_npy_free(ms_npy *a);

#endif
