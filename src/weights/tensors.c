/* Named tensor sets: the in-memory form every importer produces and the safetensors writer
 * consumes. */
#include "weights/tensors.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

size_t ms_dtype_size(ms_dtype d)
{
    switch (d) {
    case MS_F64: case MS_I64: return 8;
    case MS_F32: case MS_I32: return 4;
    case MS_F16: case MS_BF16: case MS_I16: return 2;
    case MS_I8: case MS_U8: case MS_BOOL: return 1;
    }
    return 0;
}

const char *ms_dtype_name(ms_dtype d)
{
    switch (d) {
    case MS_F32: return "F32";
    case MS_F64: return "F64";
    case MS_F16: return "F16";
    case MS_BF16: return "BF16";
    case MS_I64: return "I64";
    case MS_I32: return "I32";
    case MS_I16: return "I16";
    case MS_I8: return "I8";
    case MS_U8: return "U8";
    case MS_BOOL: return "BOOL";
    }
    return "?";
}

int64_t ms_tensor_numel(const ms_tensor *t)
{
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
    return n;
}

void ms_tensors_init(ms_tensors *ts)
{
    memset(ts, 0, sizeof *ts);
}

void ms_tensors_free(ms_tensors *ts)
{
    if (!ts) return;
    for (size_t i = 0; i < ts->n; i++) {
        free(ts->t[i].name);
        if (ts->t[i].owned) free(ts->t[i].data);
    }
    free(ts->t);
    for (size_t i = 0; i < ts->n_meta; i++) {
        free(ts->meta_key[i]);
        free(ts->meta_val[i]);
    }
    free(ts->meta_key);
    free(ts->meta_val);
    if (ts->map) munmap(ts->map, ts->map_len);
    memset(ts, 0, sizeof *ts);
}

ms_tensor *ms_tensors_find(const ms_tensors *ts, const char *name)
{
    for (size_t i = 0; i < ts->n; i++)
        if (!strcmp(ts->t[i].name, name)) return &ts->t[i];
    return NULL;
}

/* Validates shape and computes the byte size; fills *nbytes. */
static medseg_status check_shape(const char *name, ms_dtype dtype, int ndim, const int64_t *shape, size_t *nbytes,
                                 medseg_error *err)
{
    if ((unsigned)dtype > (unsigned)MS_BOOL) return ms_error(err, MEDSEG_ERR_ARG, "tensor '%s': bad dtype", name);
    if (ndim < 0 || ndim > MS_MAX_NDIM)
        return ms_error(err, MEDSEG_ERR_UNSUPPORTED, "tensor '%s': %d dimensions (at most %d)", name, ndim,
                        MS_MAX_NDIM);
    size_t n = ms_dtype_size(dtype);
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0) return ms_error(err, MEDSEG_ERR_ARG, "tensor '%s': negative dimension", name);
        if ((uint64_t)shape[i] > SIZE_MAX || !ms_mul_size(n, (size_t)shape[i], &n))
            return ms_error(err, MEDSEG_ERR_NOMEM, "tensor '%s': size overflows", name);
    }
    *nbytes = n;
    return MEDSEG_OK;
}

static medseg_status add_common(ms_tensors *ts, const char *name, ms_dtype dtype, int ndim, const int64_t *shape,
                                size_t nbytes, medseg_error *err, ms_tensor **out)
{
    if (ms_tensors_find(ts, name))
        return ms_error(err, MEDSEG_ERR_FORMAT, "duplicate tensor name '%s'", name);
    if (ts->n == ts->cap) {
        size_t cap = ts->cap ? ts->cap * 2 : 64;
        ms_tensor *nt = realloc(ts->t, cap * sizeof *nt);
        if (!nt) return ms_error(err, MEDSEG_ERR_NOMEM, "out of memory adding tensor '%s'", name);
        ts->t = nt;
        ts->cap = cap;
    }
    ms_tensor *t = &ts->t[ts->n];
    memset(t, 0, sizeof *t);
    t->name = strdup(name);
    if (!t->name) return ms_error(err, MEDSEG_ERR_NOMEM, "out of memory adding tensor '%s'", name);
    t->dtype = dtype;
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++) t->shape[i] = shape[i];
    t->nbytes = nbytes;
    *out = t;
    return MEDSEG_OK;
}

medseg_status ms_tensors_add(ms_tensors *ts, const char *name, ms_dtype dtype, int ndim, const int64_t *shape,
                             const void *data, medseg_error *err)
{
    size_t nbytes;
    medseg_status st = check_shape(name, dtype, ndim, shape, &nbytes, err);
    if (st) return st;
    void *buf = ms_alloc_aligned(nbytes ? nbytes : 1, err, name);
    if (!buf) return MEDSEG_ERR_NOMEM;
    if (data) memcpy(buf, data, nbytes);
    else memset(buf, 0, nbytes);
    ms_tensor *t;
    st = add_common(ts, name, dtype, ndim, shape, nbytes, err, &t);
    if (st) {
        free(buf);
        return st;
    }
    t->data = buf;
    t->owned = 1;
    ts->n++;
    return MEDSEG_OK;
}

medseg_status ms_tensors_add_owned(ms_tensors *ts, const char *name, ms_dtype dtype, int ndim,
                                   const int64_t *shape, void *data, medseg_error *err)
{
    size_t nbytes;
    medseg_status st = check_shape(name, dtype, ndim, shape, &nbytes, err);
    if (st) {
        free(data);
        return st;
    }
    ms_tensor *t;
    st = add_common(ts, name, dtype, ndim, shape, nbytes, err, &t);
    if (st) {
        free(data);
        return st;
    }
    t->data = data;
    t->owned = 1;
    ts->n++;
    return MEDSEG_OK;
}

medseg_status ms_tensors_remove(ms_tensors *ts, const char *name)
{
    for (size_t i = 0; i < ts->n; i++) {
        if (strcmp(ts->t[i].name, name)) continue;
        free(ts->t[i].name);
        if (ts->t[i].owned) free(ts->t[i].data);
        memmove(&ts->t[i], &ts->t[i + 1], (ts->n - i - 1) * sizeof ts->t[0]);
        ts->n--;
        return MEDSEG_OK;
    }
    return MEDSEG_ERR_ARG;
}

medseg_status ms_tensors_set_meta(ms_tensors *ts, const char *key, const char *val, medseg_error *err)
{
    for (size_t i = 0; i < ts->n_meta; i++) {
        if (strcmp(ts->meta_key[i], key)) continue;
        char *v = strdup(val);
        if (!v) return ms_error(err, MEDSEG_ERR_NOMEM, "out of memory setting metadata '%s'", key);
        free(ts->meta_val[i]);
        ts->meta_val[i] = v;
        return MEDSEG_OK;
    }
    char **nk = realloc(ts->meta_key, (ts->n_meta + 1) * sizeof *nk);
    if (!nk) return ms_error(err, MEDSEG_ERR_NOMEM, "out of memory setting metadata '%s'", key);
    ts->meta_key = nk;
    char **nv = realloc(ts->meta_val, (ts->n_meta + 1) * sizeof *nv);
    if (!nv) return ms_error(err, MEDSEG_ERR_NOMEM, "out of memory setting metadata '%s'", key);
    ts->meta_val = nv;
    char *k = strdup(key), *v = strdup(val);
    if (!k || !v) {
        free(k);
        free(v);
        return ms_error(err, MEDSEG_ERR_NOMEM, "out of memory setting metadata '%s'", key);
    }
    ts->meta_key[ts->n_meta] = k;
    ts->meta_val[ts->n_meta] = v;
    ts->n_meta++;
    return MEDSEG_OK;
}

const char *ms_tensors_get_meta(const ms_tensors *ts, const char *key)
{
    for (size_t i = 0; i < ts->n_meta; i++)
        if (!strcmp(ts->meta_key[i], key)) return ts->meta_val[i];
    return NULL;
}

static int cmp_tensor(const void *a, const void *b)
{
    return strcmp(((const ms_tensor *)a)->name, ((const ms_tensor *)b)->name);
}

void ms_tensors_sort(ms_tensors *ts)
{
    if (ts->n > 1) qsort(ts->t, ts->n, sizeof ts->t[0], cmp_tensor);
}

void ms_format_shape(char *buf, size_t len, int ndim, const int64_t *shape)
{
    if (!len) return;
    size_t o = 0;
    o += (size_t)snprintf(buf, len, "[");
    for (int d = 0; d < ndim && o < len; d++)
        o += (size_t)snprintf(buf + o, len - o, d ? ",%lld" : "%lld", (long long)shape[d]);
    if (o < len) snprintf(buf + o, len - o, "]");
}

medseg_status ms_tensors_get_f32(const ms_tensors *ts, const char *name, int ndim, const int64_t *shape,
                                 const float **out, const char *who, medseg_error *err)
{
    const ms_tensor *t = ms_tensors_find(ts, name);
    if (!t) return ms_error(err, MEDSEG_ERR_MODEL, "%s: missing tensor %s", who, name);
    if (t->dtype != MS_F32)
        return ms_error(err, MEDSEG_ERR_MODEL, "%s: tensor %s is %s, expected F32", who, name, ms_dtype_name(t->dtype));
    int same = t->ndim == ndim;
    for (int d = 0; same && d < ndim; d++) same = t->shape[d] == shape[d];
    if (!same) {
        char got[128], want[128];
        ms_format_shape(got, sizeof got, t->ndim, t->shape);
        ms_format_shape(want, sizeof want, ndim, shape);
        return ms_error(err, MEDSEG_ERR_MODEL, "%s: tensor %s has shape %s, expected %s", who, name, got, want);
    }
    if (!t->data || ((uintptr_t)t->data % sizeof(float)) != 0 || t->nbytes != (size_t)ms_tensor_numel(t) * sizeof(float))
        return ms_error(err, MEDSEG_ERR_MODEL, "%s: tensor %s data is missing or misaligned", who, name);
    *out = (const float *)t->data;
    return MEDSEG_OK;
}

medseg_status ms_bind_weight_table(void *base, const ms_weight_spec *spec, size_t n_spec, const ms_tensors *ts,
                                   const char *who, medseg_error *err)
{
    for (size_t i = 0; i < n_spec; i++) {
        const ms_weight_spec *s = &spec[i];
        for (int r = 0; r < s->reps; r++) {
            char name[256];
            snprintf(name, sizeof name, s->name, r);
            const float **dst = (const float **)((char *)base + s->offset + (size_t)r * s->stride);
            medseg_status st = ms_tensors_get_f32(ts, name, s->ndim, s->shape, dst, who, err);
            if (st) return st;
        }
    }
    return MEDSEG_OK;
}

medseg_status ms_bind_rows(const ms_tensors *ts, const char *prefix, const ms_bind_row *rows, int n, const char *who,
                           medseg_error *err)
{
    for (int i = 0; i < n; i++) {
        char name[256];
        snprintf(name, sizeof name, "%s%s", prefix, rows[i].suffix);
        medseg_status st = ms_tensors_get_f32(ts, name, rows[i].ndim, rows[i].shape, rows[i].dst, who, err);
        if (st) return st;
    }
    return MEDSEG_OK;
}

int ms_tensors_dim(const ms_tensors *ts, const char *name, int d, int ndim)
{
    const ms_tensor *t = ms_tensors_find(ts, name);
    if (!t || t->ndim != ndim || d < 0 || d >= t->ndim || t->shape[d] <= 0 || t->shape[d] > (1 << 20)) return -1;
    return (int)t->shape[d];
}
