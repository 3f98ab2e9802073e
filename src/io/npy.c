#include "io/npy.h"

#include <stdlib.h>
#include <string.h>

#define NPY_MAX_BYTES ((size_t)1 << 34) /* 16 GiB cap on one array */

static const struct {
    const char *descr;
    ms_npy_dtype dtype;
    size_t size;
} npy_types[] = {
    {"|u1", MS_NPY_U8, 1},   {"<u1", MS_NPY_U8, 1},   {"|i1", MS_NPY_I8, 1},  {"<i1", MS_NPY_I8, 1},
    {"|b1", MS_NPY_BOOL, 1}, {"<u2", MS_NPY_U16, 2},  {"<i2", MS_NPY_I16, 2}, {"<u4", MS_NPY_U32, 4},
    {"<i4", MS_NPY_I32, 4},  {"<u8", MS_NPY_U64, 8},  {"<i8", MS_NPY_I64, 8}, {"<f4", MS_NPY_F32, 4},
    {"<f8", MS_NPY_F64, 8},
};

/* Finds 'key': in the header dict and returns a pointer just after the colon. */
static const char *dict_value(const char *h, size_t n, const char *key)
{
    size_t kl = strlen(key);
    for (size_t i = 0; i + kl + 2 < n; i++) {
        if ((h[i] == '\'' || h[i] == '"') && memcmp(h + i + 1, key, kl) == 0 && h[i + 1 + kl] == h[i]) {
            const char *p = h + i + kl + 2;
            while (p < h + n && (*p == ' ' || *p == ':')) p++;
            return p < h + n ? p : NULL; /* a key at the very end has no value */
        }
    }
    return NULL;
}

medseg_status ms_npy_parse(const uint8_t *buf, size_t len, const char *name, ms_npy *out, medseg_error *err)
{
    memset(out, 0, sizeof *out);
    if (len < 10 || memcmp(buf, "\x93NUMPY", 6) != 0)
        return ms_error(err, MEDSEG_ERR_FORMAT, "%s: not a .npy array (bad magic)", name);
    int major = buf[6];
    size_t hlen, hoff;
    if (major == 1) {
        hlen = buf[8] | (size_t)buf[9] << 8;
        hoff = 10;
    } else if (major == 2 || major == 3) {
        if (len < 12) return ms_error(err, MEDSEG_ERR_FORMAT, "%s: truncated .npy header", name);
        hlen = buf[8] | (size_t)buf[9] << 8 | (size_t)buf[10] << 16 | (size_t)buf[11] << 24;
        hoff = 12;
    } else {
        return ms_error(err, MEDSEG_ERR_UNSUPPORTED, "%s: .npy format version %d", name, major);
    }
    if (hlen > 65536 || hoff + hlen > len)
        return ms_error(err, MEDSEG_ERR_FORMAT, "%s: truncated .npy header", name);
    const char *h = (const char *)buf + hoff;
    const char *d = dict_value(h, hlen, "descr");
    const char *fo = dict_value(h, hlen, "fortran_order");
    const char *sh = dict_value(h, hlen, "shape");
    if (!d || !fo || !sh) return ms_error(err, MEDSEG_ERR_FORMAT, "%s: .npy header lacks descr/fortran_order/shape", name);
    if ((size_t)(h + hlen - fo) < 5 || strncmp(fo, "False", 5) != 0)
        return ms_error(err, MEDSEG_ERR_UNSUPPORTED, "%s: Fortran-order .npy arrays are not supported", name);
    if (*d != '\'' && *d != '"') return ms_error(err, MEDSEG_ERR_FORMAT, "%s: bad .npy descr", name);
    int found = 0;
    for (size_t i = 0; i < sizeof npy_types / sizeof npy_types[0]; i++) {
        if (d + 4 < h + hlen && memcmp(d + 1, npy_types[i].descr, 3) == 0 && d[4] == d[0]) {
            out->dtype = npy_types[i].dtype;
            out->elem_size = npy_types[i].size;
            found = 1;
            break;
        }
    }
    if (!found) {
        char descr[16] = {0};
        for (int i = 0; i < 15 && d + 1 + i < h + hlen && d[1 + i] != d[0]; i++) descr[i] = d[1 + i];
        return ms_error(err, MEDSEG_ERR_UNSUPPORTED, "%s: .npy dtype '%s' is not supported", name, descr);
    }
    if (*sh != '(') return ms_error(err, MEDSEG_ERR_FORMAT, "%s: bad .npy shape", name);
    const char *p = sh + 1, *end = h + hlen;
    size_t count = 1;
    while (p < end && *p != ')') {
        while (p < end && (*p == ' ' || *p == ',')) p++;
        if (p < end && *p == ')') break;
        if (p >= end || *p < '0' || *p > '9') return ms_error(err, MEDSEG_ERR_FORMAT, "%s: bad .npy shape", name);
        int64_t v = 0;
        while (p < end && *p >= '0' && *p <= '9') {
            v = v * 10 + (*p - '0');
            if (v > ((int64_t)1 << 40)) return ms_error(err, MEDSEG_ERR_FORMAT, "%s: .npy dimension too large", name);
            p++;
        }
        if (out->ndim >= 8) return ms_error(err, MEDSEG_ERR_UNSUPPORTED, "%s: .npy has more than 8 dimensions", name);
        out->shape[out->ndim++] = v;
        if (!ms_mul_size(count, (size_t)v, &count)) return ms_error(err, MEDSEG_ERR_FORMAT, "%s: .npy size overflows", name);
    }
    size_t nbytes;
    if (!ms_mul_size(count, out->elem_size, &nbytes) || nbytes > NPY_MAX_BYTES)
        return ms_error(err, MEDSEG_ERR_NOMEM, "%s: .npy array too large", name);
    size_t off = hoff + hlen;
    if (len - off < nbytes)
        return ms_error(err, MEDSEG_ERR_FORMAT, "%s: .npy data truncated (%zu of %zu bytes)", name, len - off, nbytes);
    out->data = ms_malloc(nbytes, err, name);
    if (!out->data) return MEDSEG_ERR_NOMEM;
    memcpy(out->data, buf + off, nbytes);
    out->count = count;
    return MEDSEG_OK;
}

medseg_status ms_npy_load(const char *path, ms_npy *out, medseg_error *err)
{
    uint8_t *buf;
    size_t len;
    memset(out, 0, sizeof *out);
    medseg_status st = ms_read_file(path, NPY_MAX_BYTES + 65536, &buf, &len, err);
    if (st) return st;
    st = ms_npy_parse(buf, len, path, out, err);
    free(buf);
    return st;
}

medseg_status ms_npy_save(const char *path, ms_npy_dtype dtype, int ndim, const int64_t *shape,
                          const void *data, medseg_error *err)
{
    const char *descr = NULL;
    size_t es = 0;
    for (size_t i = 0; i < sizeof npy_types / sizeof npy_types[0]; i++) {
        if (npy_types[i].dtype == dtype) {
            descr = npy_types[i].descr;
            es = npy_types[i].size;
            break;
        }
    }
    if (!descr || ndim < 0 || ndim > 8) return ms_error(err, MEDSEG_ERR_ARG, "%s: bad array for .npy", path);
    char hdr[256];
    int n = snprintf(hdr, sizeof hdr, "{'descr': '%s', 'fortran_order': False, 'shape': (", descr);
    size_t count = 1;
    for (int i = 0; i < ndim; i++) {
        n += snprintf(hdr + n, sizeof hdr - n, "%lld,%s", (long long)shape[i], i + 1 < ndim ? " " : "");
        count *= (size_t)shape[i];
    }
    n += snprintf(hdr + n, sizeof hdr - n, "), }");
    int total = 10 + n + 1;
    int pad = (64 - total % 64) % 64;
    ms_atomic_file af;
    medseg_status st = ms_atomic_open(&af, path, err);
    if (st) return st;
    uint16_t hl = (uint16_t)(n + pad + 1);
    unsigned char pre[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (unsigned char)(hl & 255), (unsigned char)(hl >> 8)};
    int ok = fwrite(pre, 1, 10, af.f) == 10 && fwrite(hdr, 1, (size_t)n, af.f) == (size_t)n;
    for (int i = 0; ok && i < pad; i++) ok = fputc(' ', af.f) != EOF;
    ok = ok && fputc('\n', af.f) != EOF;
    ok = ok && fwrite(data, es, count, af.f) == count;
    if (!ok) {
        ms_atomic_abort(&af);
        return ms_error(err, MEDSEG_ERR_IO, "%s: write failed", path);
    }
    return ms_atomic_commit(&af, err);
}

void ms_npy_free(ms_npy *a)
{
    free(a->data);
    memset(a, 0, sizeof *a);
}
