/* safetensors reader (mmap, every offset checked) and atomic writer (sorted, 64-byte aligned).
 * Format: u64 little-endian header length N, N bytes of JSON
 *   {"__metadata__": {"k": "v"}, "name": {"dtype": "F32", "shape": [..], "data_offsets": [b, e]}}
 * then the data region; offsets are relative to the start of the data region. */
#include "weights/tensors.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define ST_MAX_HEADER ((uint64_t)100 * 1024 * 1024)
#define ST_ALIGN 64
#define ST_MAX_TENSORS 20000 /* names are checked for duplicates pairwise: keep that bounded */

static int dtype_from_name(const char *s, ms_dtype *out)
{
    static const struct { const char *n; ms_dtype d; } tab[] = {
        {"F32", MS_F32}, {"F64", MS_F64}, {"F16", MS_F16}, {"BF16", MS_BF16}, {"I64", MS_I64},
        {"I32", MS_I32}, {"I16", MS_I16}, {"I8", MS_I8},   {"U8", MS_U8},     {"BOOL", MS_BOOL},
    };
    for (size_t i = 0; i < sizeof tab / sizeof tab[0]; i++)
        if (!strcmp(s, tab[i].n)) {
            *out = tab[i].d;
            return 1;
        }
    return 0;
}

/* A JSON number that is a non-negative integer representable exactly (< 2^53). */
static int json_uint(const cJSON *j, uint64_t *out)
{
    if (!cJSON_IsNumber(j)) return 0;
    double v = j->valuedouble;
    if (!(v >= 0) || v > 9007199254740992.0 || floor(v) != v) return 0;
    *out = (uint64_t)v;
    return 1;
}

static medseg_status parse_tensor(const char *path, const cJSON *e, const uint8_t *data, uint64_t data_len,
                                  ms_tensors *out, medseg_error *err)
{
    const char *name = e->string;
    if (!name || !*name) return ms_error(err, MEDSEG_ERR_FORMAT, "%s: tensor with an empty name", path);
    if (!cJSON_IsObject(e)) return ms_error(err, MEDSEG_ERR_FORMAT, "%s: tensor '%s' is not an object", path, name);
    const cJSON *jd = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    const cJSON *js = cJSON_GetObjectItemCaseSensitive(e, "shape");
    const cJSON *jo = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    if (!cJSON_IsString(jd) || !cJSON_IsArray(js) || !cJSON_IsArray(jo))
        return ms_error(err, MEDSEG_ERR_FORMAT, "%s: tensor '%s' lacks dtype/shape/data_offsets", path, name);
    ms_dtype dt;
    if (!dtype_from_name(jd->valuestring, &dt))
        return ms_error(err, MEDSEG_ERR_UNSUPPORTED, "%s: tensor '%s' has unsupported dtype '%.16s'", path, name,
                        jd->valuestring);
    int ndim = cJSON_GetArraySize(js);
    if (ndim > MS_MAX_NDIM)
        return ms_error(err, MEDSEG_ERR_UNSUPPORTED, "%s: tensor '%s' has %d dimensions (at most %d)", path, name,
                        ndim, MS_MAX_NDIM);
    int64_t shape[MS_MAX_NDIM];
    size_t nbytes = ms_dtype_size(dt);
    int k = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, js)
    {
        uint64_t v;
        if (!json_uint(it, &v))
            return ms_error(err, MEDSEG_ERR_FORMAT, "%s: tensor '%s' has a bad shape entry", path, name);
        if (v > (uint64_t)data_len || !ms_mul_size(nbytes, (size_t)v, &nbytes))
            return ms_error(err, MEDSEG_ERR_FORMAT, "%s: tensor '%s' shape is larger than the file", path, name);
        shape[k++] = (int64_t)v;
    }
    uint64_t b, en;
    if (cJSON_GetArraySize(jo) != 2 || !json_uint(cJSON_GetArrayItem(jo, 0), &b) ||
        !json_uint(cJSON_GetArrayItem(jo, 1), &en))
        return ms_error(err, MEDSEG_ERR_FORMAT, "%s: tensor '%s' has bad data_offsets", path, name);
    if (b > en || en > data_len)
        return ms_error(err, MEDSEG_ERR_FORMAT,
                        "%s: tensor '%s' data [%llu, %llu) lies outside the %llu-byte data region (truncated?)", path,
                        name, (unsigned long long)b, (unsigned long long)en, (unsigned long long)data_len);
    if (en - b != (uint64_t)nbytes)
        return ms_error(err, MEDSEG_ERR_FORMAT, "%s: tensor '%s' spans %llu bytes but its shape needs %zu", path,
                        name, (unsigned long long)(en - b), nbytes);
    const uint8_t *p = data + b;
    size_t esz = ms_dtype_size(dt);
    medseg_status st;
    if (((uintptr_t)p % esz) != 0) {
        /* misaligned for its element type (files written by other tools): copy */
        st = ms_tensors_add(out, name, dt, ndim, shape, p, err);
    } else {
        st = ms_tensors_add_owned(out, name, dt, ndim, shape, NULL, err);
        if (!st) {
            ms_tensor *t = &out->t[out->n - 1];
            t->data = (void *)p;
            t->owned = 0;
        }
    }
    if (st && err && strncmp(err->message, path, strlen(path)) != 0) {
        char m[sizeof err->message];
        snprintf(m, sizeof m, "%s", err->message);
        ms_error(err, st, "%s: %s", path, m);
    }
    return st;
}

medseg_status ms_safetensors_load(const char *path, ms_tensors *out, medseg_error *err)
{
    ms_tensors_init(out);
    int fd = open(path, O_RDONLY);
    if (fd < 0) return ms_error(err, MEDSEG_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return ms_error(err, MEDSEG_ERR_IO, "%s: not a regular file", path);
    }
    uint64_t fsize = (uint64_t)sb.st_size;
    if (fsize < 8 + 2) {
        close(fd);
        return ms_error(err, MEDSEG_ERR_FORMAT, "%s: %llu bytes is too short for a safetensors file", path,
                        (unsigned long long)fsize);
    }
    if (fsize > SIZE_MAX) {
        close(fd);
        return ms_error(err, MEDSEG_ERR_NOMEM, "%s: file too large to map", path);
    }
    void *map = mmap(NULL, (size_t)fsize, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED) return ms_error(err, MEDSEG_ERR_IO, "%s: mmap failed: %s", path, strerror(errno));
    out->map = map;
    out->map_len = (size_t)fsize;
    const uint8_t *m = map;
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | m[i];
    medseg_status st = MEDSEG_OK;
    cJSON *root = NULL;
    if (hlen > ST_MAX_HEADER) {
        st = ms_error(err, MEDSEG_ERR_FORMAT, "%s: header length %llu is over the %llu-byte limit (not safetensors?)",
                      path, (unsigned long long)hlen, (unsigned long long)ST_MAX_HEADER);
        goto fail;
    }
    if (hlen < 2 || hlen > fsize - 8) {
        st = ms_error(err, MEDSEG_ERR_FORMAT, "%s: header length %llu does not fit the %llu-byte file (truncated?)",
                      path, (unsigned long long)hlen, (unsigned long long)fsize);
        goto fail;
    }
    if (m[8] != '{') {
        st = ms_error(err, MEDSEG_ERR_FORMAT, "%s: header is not a JSON object (not safetensors?)", path);
        goto fail;
    }
    root = cJSON_ParseWithLength((const char *)m + 8, (size_t)hlen);
    if (!root || !cJSON_IsObject(root)) {
        st = ms_error(err, MEDSEG_ERR_FORMAT, "%s: header is not valid JSON", path);
        goto fail;
    }
    const uint8_t *data = m + 8 + hlen;
    uint64_t data_len = fsize - 8 - hlen;
    const cJSON *e;
    cJSON_ArrayForEach(e, root)
    {
        if (e->string && !strcmp(e->string, "__metadata__")) {
            if (!cJSON_IsObject(e)) {
                st = ms_error(err, MEDSEG_ERR_FORMAT, "%s: __metadata__ is not an object", path);
                goto fail;
            }
            const cJSON *kv;
            cJSON_ArrayForEach(kv, e)
            {
                if (!cJSON_IsString(kv) || !kv->string) {
                    st = ms_error(err, MEDSEG_ERR_FORMAT, "%s: __metadata__ value of '%.64s' is not a string", path,
                                  kv->string ? kv->string : "");
                    goto fail;
                }
                st = ms_tensors_set_meta(out, kv->string, kv->valuestring, err);
                if (st) goto fail;
            }
            continue;
        }
        if (out->n >= ST_MAX_TENSORS) {
            st = ms_error(err, MEDSEG_ERR_NOMEM, "%s: more than %d tensors", path, ST_MAX_TENSORS);
            goto fail;
        }
        st = parse_tensor(path, e, data, data_len, out, err);
        if (st) goto fail;
    }
    cJSON_Delete(root);
    return MEDSEG_OK;
fail:
    cJSON_Delete(root);
    ms_tensors_free(out);
    return st;
}

static int cmp_name_ptr(const void *a, const void *b)
{
    const ms_tensor *x = *(const ms_tensor *const *)a, *y = *(const ms_tensor *const *)b;
    return strcmp(x->name, y->name);
}

static uint64_t align_up(uint64_t v, uint64_t a)
{
    return (v + a - 1) / a * a;
}

medseg_status ms_safetensors_save(const char *path, const ms_tensors *ts, medseg_error *err)
{
    medseg_status st = MEDSEG_OK;
    const ms_tensor **order = NULL;
    cJSON *root = NULL;
    char *json = NULL;
    ms_atomic_file af;
    int opened = 0;

    order = ms_calloc(ts->n ? ts->n : 1, sizeof *order, err, "tensor order");
    if (!order) return MEDSEG_ERR_NOMEM;
    for (size_t i = 0; i < ts->n; i++) order[i] = &ts->t[i];
    qsort(order, ts->n, sizeof *order, cmp_name_ptr);
    for (size_t i = 1; i < ts->n; i++)
        if (!strcmp(order[i - 1]->name, order[i]->name)) {
            st = ms_error(err, MEDSEG_ERR_ARG, "%s: duplicate tensor name '%s'", path, order[i]->name);
            goto done;
        }

    root = cJSON_CreateObject();
    if (!root) goto nomem;
    if (ts->n_meta) {
        cJSON *md = cJSON_AddObjectToObject(root, "__metadata__");
        if (!md) goto nomem;
        for (size_t i = 0; i < ts->n_meta; i++)
            if (!cJSON_AddStringToObject(md, ts->meta_key[i], ts->meta_val[i])) goto nomem;
    }
    uint64_t off = 0;
    for (size_t i = 0; i < ts->n; i++) {
        const ms_tensor *t = order[i];
        if (!strcmp(t->name, "__metadata__") || !t->name[0]) {
            st = ms_error(err, MEDSEG_ERR_ARG, "%s: invalid tensor name '%s'", path, t->name);
            goto done;
        }
        if (t->ndim < 0 || t->ndim > MS_MAX_NDIM || (size_t)ms_tensor_numel(t) * ms_dtype_size(t->dtype) != t->nbytes) {
            st = ms_error(err, MEDSEG_ERR_INTERNAL, "%s: tensor '%s' size does not match its shape", path, t->name);
            goto done;
        }
        off = align_up(off, ST_ALIGN);
        uint64_t end = off + t->nbytes;
        if (end > 9007199254740992ULL) {
            st = ms_error(err, MEDSEG_ERR_NOMEM, "%s: data too large", path);
            goto done;
        }
        cJSON *o = cJSON_AddObjectToObject(root, t->name);
        if (!o || !cJSON_AddStringToObject(o, "dtype", ms_dtype_name(t->dtype))) goto nomem;
        cJSON *sh = cJSON_AddArrayToObject(o, "shape");
        if (!sh) goto nomem;
        for (int d = 0; d < t->ndim; d++) {
            cJSON *v = cJSON_CreateNumber((double)t->shape[d]);
            if (!v || !cJSON_AddItemToArray(sh, v)) goto nomem;
        }
        cJSON *ofs = cJSON_AddArrayToObject(o, "data_offsets");
        cJSON *b = cJSON_CreateNumber((double)off), *e = cJSON_CreateNumber((double)end);
        if (!ofs || !b || !e) {
            cJSON_Delete(b);
            cJSON_Delete(e);
            goto nomem;
        }
        cJSON_AddItemToArray(ofs, b);
        cJSON_AddItemToArray(ofs, e);
        off = end;
    }
    json = cJSON_PrintUnformatted(root);
    if (!json) goto nomem;
    size_t jlen = strlen(json);
    /* pad with spaces so the data region (and so every 64-aligned offset) starts on a 64-byte
       boundary of the file, which is a multiple of 8 as the format requires */
    uint64_t hlen = align_up(8 + jlen, ST_ALIGN) - 8;

    st = ms_atomic_open(&af, path, err);
    if (st) goto done;
    opened = 1;
    uint8_t lenb[8];
    for (int i = 0; i < 8; i++) lenb[i] = (uint8_t)(hlen >> (8 * i));
    int ok = fwrite(lenb, 1, 8, af.f) == 8 && fwrite(json, 1, jlen, af.f) == jlen;
    for (uint64_t i = jlen; ok && i < hlen; i++) ok = fputc(' ', af.f) != EOF;
    static const uint8_t zeros[ST_ALIGN];
    uint64_t pos = 0;
    for (size_t i = 0; ok && i < ts->n; i++) {
        const ms_tensor *t = order[i];
        uint64_t a = align_up(pos, ST_ALIGN);
        if (a > pos) ok = fwrite(zeros, 1, (size_t)(a - pos), af.f) == (size_t)(a - pos);
        pos = a;
        if (ok && t->nbytes) ok = fwrite(t->data, 1, t->nbytes, af.f) == t->nbytes;
        pos += t->nbytes;
    }
    if (!ok) {
        st = ms_error(err, MEDSEG_ERR_IO, "%s: write failed: %s", path, strerror(errno));
        goto done;
    }
    st = ms_atomic_commit(&af, err);
    opened = 0;
    goto done;
nomem:
    st = ms_error(err, MEDSEG_ERR_NOMEM, "%s: out of memory building the header", path);
done:
    if (opened) ms_atomic_abort(&af);
    free(json);
    cJSON_Delete(root);
    free(order);
    return st;
}
