/* The MedSAM / CVPR challenge .npz: a zip (libzip) of .npy arrays (npy.c).
 *
 * Keys: `imgs` (D,H,W) or (H,W,3) or (H,W); `gts`/`segs` label maps of the same layout; `boxes`
 * (n, 4) or (n, 6); `spacing` (3,) in (x, y, z) order, i.e. spacing[2] belongs to axis D;
 * `direction` (9,) and `origin` (3,).
 *
 * Geometry: `direction`/`origin` are taken as SimpleITK writes them (MedSAM2 builds these files
 * with SimpleITK): direction is the row-major 3x3 matrix whose column c is the world direction of
 * index axis c (x = W, y = H, z = D) in LPS, origin is in LPS mm. The RAS affine is then
 * diag(-1,-1,1) * [direction * diag(spacing) | origin]. Checked on the DeepLesion slab that
 * ships as both npz and NIfTI: the 3x3 part equals the NIfTI sform (which swaps x and y); the
 * npz origin is 0, not the scanner's. Without `direction` SimpleITK's identity (LPS) is assumed.
 *
 * ZIP64: numpy writes members with ZIP64 local headers (sizes 0xFFFFFFFF in the local header, real
 * sizes in the extra field); libzip reads them through the central directory. */
#include "io/volume_extra.h"
#include "io/npy.h"
#include "io/zip_member.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zip.h>

static zip_t *npz_open(const char *path, medseg_error *err)
{
    int zerr = 0;
    zip_t *z = zip_open(path, ZIP_RDONLY, &zerr);
    if (!z) {
        zip_error_t ze;
        zip_error_init_with_code(&ze, zerr);
        ms_error(err, zerr == ZIP_ER_NOENT || zerr == ZIP_ER_OPEN ? MEDSEG_ERR_IO : MEDSEG_ERR_FORMAT,
                 "%s: cannot read as npz (zip): %s", path, zip_error_strerror(&ze));
        zip_error_fini(&ze);
    }
    return z;
}

/* Reads member "<key>.npy" (or "<key>") into a parsed array. Missing member: MEDSEG_ERR_FORMAT
 * with *missing = 1. */
static medseg_status npz_member(zip_t *z, const char *path, const char *key, ms_npy *arr, int *missing,
                                medseg_error *err)
{
    memset(arr, 0, sizeof *arr);
    if (missing) *missing = 0;
    char name[256];
    snprintf(name, sizeof name, "%s.npy", key);
    zip_int64_t idx = zip_name_locate(z, name, 0);
    if (idx < 0) idx = zip_name_locate(z, key, 0);
    if (idx < 0) {
        if (missing) *missing = 1;
        return ms_error(err, MEDSEG_ERR_FORMAT, "%s: npz has no array '%s'", path, key);
    }
    char what[300];
    snprintf(what, sizeof what, "npz member %s", name);
    uint8_t *buf;
    size_t n;
    medseg_status st = ms_zip_read_member(z, path, idx, what, MS_VOLUME_MAX_FILE, &buf, &n, err);
    if (st) return st;
    char aname[512];
    snprintf(aname, sizeof aname, "%s: %s", path, name);
    st = ms_npy_parse(buf, n, aname, arr, err);
    free(buf);
    return st;
}

/* Element i of a numeric array as double (0 for bool false). */
static double npy_at(const ms_npy *a, size_t i)
{
    const void *d = a->data;
    switch (a->dtype) {
    case MS_NPY_U8: case MS_NPY_BOOL: return ((const uint8_t *)d)[i];
    case MS_NPY_I8: return ((const int8_t *)d)[i];
    case MS_NPY_U16: return ((const uint16_t *)d)[i];
    case MS_NPY_I16: return ((const int16_t *)d)[i];
    case MS_NPY_U32: return ((const uint32_t *)d)[i];
    case MS_NPY_I32: return ((const int32_t *)d)[i];
    case MS_NPY_U64: return (double)((const uint64_t *)d)[i];
    case MS_NPY_I64: return (double)((const int64_t *)d)[i];
    case MS_NPY_F32: return ((const float *)d)[i];
    case MS_NPY_F64: return ((const double *)d)[i];
    }
    return 0;
}

static medseg_dtype dtype_from_npy(ms_npy_dtype t)
{
    switch (t) {
    case MS_NPY_U8: case MS_NPY_BOOL: return MEDSEG_DT_U8;
    case MS_NPY_I8: return MEDSEG_DT_I8;
    case MS_NPY_U16: return MEDSEG_DT_U16;
    case MS_NPY_I16: return MEDSEG_DT_I16;
    case MS_NPY_U32: return MEDSEG_DT_U32;
    case MS_NPY_I32: return MEDSEG_DT_I32;
    case MS_NPY_U64: return MEDSEG_DT_U64;
    case MS_NPY_I64: return MEDSEG_DT_I64;
    case MS_NPY_F32: return MEDSEG_DT_F32;
    case MS_NPY_F64: return MEDSEG_DT_F64;
    }
    return (medseg_dtype)0;
}

/* Optional float vector member of exactly n elements: 1 when present and valid. */
static int npz_vector(zip_t *z, const char *path, const char *key, size_t n, double *out, medseg_error *err,
                      medseg_status *st)
{
    ms_npy a;
    int missing = 0;
    medseg_error e2;
    *st = npz_member(z, path, key, &a, &missing, &e2);
    if (*st) {
        if (missing) {
            *st = MEDSEG_OK;
            return 0;
        }
        if (err) *err = e2;
        return 0;
    }
    int ok = a.count == n;
    for (size_t i = 0; ok && i < n; i++) {
        out[i] = npy_at(&a, i);
        if (!isfinite(out[i])) ok = 0;
    }
    ms_npy_free(&a);
    if (!ok) *st = ms_error(err, MEDSEG_ERR_FORMAT, "%s: npz '%s' is not %zu finite numbers", path, key, n);
    return ok;
}

medseg_status ms_npz_read_volume(const char *path, const char *key, medseg_volume *out, medseg_error *err)
{
    memset(out, 0, sizeof *out);
    if (!key) key = "imgs";
    zip_t *z = npz_open(path, err);
    if (!z) return err ? err->status : MEDSEG_ERR_FORMAT;
    ms_npy a;
    medseg_status st = npz_member(z, path, key, &a, NULL, err);
    if (st) {
        zip_discard(z);
        return st;
    }
    int64_t nx, ny, nz;
    int ch = 1;
    if (a.ndim == 3 && a.shape[2] == 3) {
        /* (H,W,3) colour image (a (D,H,W) volume 3 voxels wide is read as colour: the challenge
           data has none) */
        ny = a.shape[0];
        nx = a.shape[1];
        nz = 1;
        ch = 3;
    } else if (a.ndim == 3) {
        nz = a.shape[0];
        ny = a.shape[1];
        nx = a.shape[2];
    } else if (a.ndim == 2) {
        ny = a.shape[0];
        nx = a.shape[1];
        nz = 1;
    } else {
        ms_npy_free(&a);
        zip_discard(z);
        return ms_error(err, MEDSEG_ERR_UNSUPPORTED, "%s: npz '%s' has %d dimensions (expected (D,H,W), (H,W,3) or (H,W))",
                        path, key, a.ndim);
    }
    medseg_dtype dt = dtype_from_npy(a.dtype);
    st = ms_volume_alloc(out, nx, ny, nz, ch, dt, path, err);
    if (st) {
        ms_npy_free(&a);
        zip_discard(z);
        return st;
    }
    memcpy(out->data, a.data, a.count * a.elem_size);
    ms_npy_free(&a);
    double spacing[3] = {1, 1, 1}, dir[9] = {1, 0, 0, 0, 1, 0, 0, 0, 1}, origin[3] = {0, 0, 0};
    int has_sp = npz_vector(z, path, "spacing", 3, spacing, err, &st);
    int has_dir = !st && npz_vector(z, path, "direction", 9, dir, err, &st);
    if (!st) npz_vector(z, path, "origin", 3, origin, err, &st);
    zip_discard(z);
    if (st) {
        medseg_volume_free(out);
        return st;
    }
    if (has_sp)
        for (int c = 0; c < 3; c++)
            if (!(spacing[c] > 0)) {
                medseg_volume_free(out);
                return ms_error(err, MEDSEG_ERR_FORMAT, "%s: npz spacing %g %g %g is not positive", path, spacing[0],
                                spacing[1], spacing[2]);
            }
    /* LPS (SimpleITK) -> RAS: negate the first two rows */
    for (int r = 0; r < 3; r++) {
        double s = r < 2 ? -1 : 1;
        for (int c = 0; c < 3; c++) out->affine[r][c] = s * dir[r * 3 + c] * spacing[c];
        out->affine[r][3] = s * origin[r];
    }
    /* Without `direction`, SimpleITK's default applies: the identity direction in LPS (as an
     * image written by SimpleITK without SetDirection would be read back), so the RAS affine is
     * diag(-sx, -sy, sz). */
    (void)has_dir;
    out->source_space = MEDSEG_SPACE_LPS;
    for (int c = 0; c < 3; c++) out->spacing[c] = spacing[c];
    snprintf(out->format, sizeof out->format, "npz");
    snprintf(out->compression, sizeof out->compression, "zip");
    return MEDSEG_OK;
}

medseg_status ms_npz_read_boxes(const char *path, double **boxes, int *n, int *ncols, medseg_error *err)
{
    *boxes = NULL;
    *n = 0;
    *ncols = 0;
    zip_t *z = npz_open(path, err);
    if (!z) return err ? err->status : MEDSEG_ERR_FORMAT;
    ms_npy a;
    medseg_status st = npz_member(z, path, "boxes", &a, NULL, err);
    zip_discard(z);
    if (st) return st;
    int64_t rows, cols;
    if (a.ndim == 1 && (a.shape[0] == 4 || a.shape[0] == 6)) {
        rows = 1;
        cols = a.shape[0];
    } else if (a.ndim == 2 && (a.shape[1] == 4 || a.shape[1] == 6) && a.shape[0] <= 65536) {
        rows = a.shape[0];
        cols = a.shape[1];
    } else {
        ms_npy_free(&a);
        return ms_error(err, MEDSEG_ERR_FORMAT, "%s: npz 'boxes' must be (n, 4) or (n, 6)", path);
    }
    double *b = ms_malloc((size_t)(rows > 0 ? rows * cols : 1) * sizeof *b, err, path);
    if (!b) {
        ms_npy_free(&a);
        return MEDSEG_ERR_NOMEM;
    }
    for (size_t i = 0; i < (size_t)(rows * cols); i++) {
        b[i] = npy_at(&a, i);
        if (!isfinite(b[i])) {
            free(b);
            ms_npy_free(&a);
            return ms_error(err, MEDSEG_ERR_FORMAT, "%s: npz 'boxes' holds a non-finite value", path);
        }
    }
    ms_npy_free(&a);
    *boxes = b;
    *n = (int)rows;
    *ncols = (int)cols;
    return MEDSEG_OK;
}

/* ---------------------------------------------------------------- writer */

static const char *npy_descr(medseg_dtype t)
{
    switch (t) {
    case MEDSEG_DT_U8: return "|u1";
    case MEDSEG_DT_I8: return "|i1";
    case MEDSEG_DT_U16: return "<u2";
    case MEDSEG_DT_I16: return "<i2";
    case MEDSEG_DT_U32: return "<u4";
    case MEDSEG_DT_I32: return "<i4";
    case MEDSEG_DT_U64: return "<u8";
    case MEDSEG_DT_I64: return "<i8";
    case MEDSEG_DT_F32: return "<f4";
    case MEDSEG_DT_F64: return "<f8";
    }
    return NULL;
}

/* A .npy (format 1.0) in memory: header padded to 64 bytes, then the data. */
static uint8_t *npy_serialize(const char *descr, int ndim, const int64_t *shape, const void *data, size_t nbytes,
                              size_t *len, medseg_error *err, const char *path)
{
    char hdr[256];
    int n = snprintf(hdr, sizeof hdr, "{'descr': '%s', 'fortran_order': False, 'shape': (", descr);
    for (int i = 0; i < ndim; i++)
        n += snprintf(hdr + n, sizeof hdr - (size_t)n, "%lld,%s", (long long)shape[i], i + 1 < ndim ? " " : "");
    n += snprintf(hdr + n, sizeof hdr - (size_t)n, "), }");
    size_t total = 10 + (size_t)n + 1;
    size_t pad = (64 - total % 64) % 64;
    size_t hl = (size_t)n + pad + 1;
    *len = 10 + hl + nbytes;
    uint8_t *b = ms_malloc(*len, err, path);
    if (!b) return NULL;
    memcpy(b, "\x93NUMPY\x01\x00", 8);
    b[8] = (uint8_t)(hl & 255);
    b[9] = (uint8_t)(hl >> 8);
    memcpy(b + 10, hdr, (size_t)n);
    memset(b + 10 + n, ' ', pad);
    b[10 + (size_t)n + pad] = '\n';
    if (nbytes) memcpy(b + 10 + hl, data, nbytes);
    return b;
}

/* Adds one array to the archive; the buffer is handed to libzip (freed by it). */
static int npz_add(zip_t *z, const char *name, uint8_t *buf, size_t len)
{
    zip_source_t *src = zip_source_buffer(z, buf, len, 1);
    if (!src) {
        free(buf);
        return 0;
    }
    zip_int64_t idx = zip_file_add(z, name, src, ZIP_FL_OVERWRITE);
    if (idx < 0) {
        zip_source_free(src);
        return 0;
    }
    zip_set_file_compression(z, (zip_uint64_t)idx, ZIP_CM_DEFLATE, 1);
    return 1;
}

medseg_status ms_npz_write_volume(const char *path, const char *key, const medseg_volume *v, medseg_error *err)
{
    if (!path || !key || !v || !v->data) return ms_error(err, MEDSEG_ERR_ARG, "ms_npz_write_volume: bad arguments");
    const char *descr = npy_descr(v->dtype);
    if (!descr) return ms_error(err, MEDSEG_ERR_ARG, "%s: invalid voxel type", path);
    int64_t shape[4];
    int ndim;
    if (v->dim[2] == 1 && v->channels == 3) {
        shape[0] = v->dim[1], shape[1] = v->dim[0], shape[2] = 3, ndim = 3;
    } else if (v->dim[2] == 1) {
        shape[0] = v->dim[1], shape[1] = v->dim[0], ndim = 2;
    } else if (v->channels == 3) {
        shape[0] = v->dim[2], shape[1] = v->dim[1], shape[2] = v->dim[0], shape[3] = 3, ndim = 4;
    } else {
        shape[0] = v->dim[2], shape[1] = v->dim[1], shape[2] = v->dim[0], ndim = 3;
    }
    char tmp[4200];
    static int counter;
    int tn = snprintf(tmp, sizeof tmp, "%s.tmp.%ld.%d", path, (long)getpid(), __atomic_fetch_add(&counter, 1, __ATOMIC_RELAXED));
    if (tn < 0 || (size_t)tn >= sizeof tmp) return ms_error(err, MEDSEG_ERR_ARG, "%s: path too long", path);
    int zerr = 0;
    zip_t *z = zip_open(tmp, ZIP_CREATE | ZIP_TRUNCATE, &zerr);
    if (!z) {
        zip_error_t ze;
        zip_error_init_with_code(&ze, zerr);
        medseg_status st = ms_error(err, MEDSEG_ERR_IO, "%s: cannot create: %s", path, zip_error_strerror(&ze));
        zip_error_fini(&ze);
        return st;
    }
    size_t len;
    char name[300];
    snprintf(name, sizeof name, "%s.npy", key);
    uint8_t *b = npy_serialize(descr, ndim, shape, v->data, ms_volume_count(v) * ms_voxel_type_size(v->dtype), &len, err, path);
    int ok = b && npz_add(z, name, b, len);
    /* geometry, in the challenge's conventions: spacing (x,y,z); direction/origin in LPS */
    double sp[3] = {v->spacing[0], v->spacing[1], v->spacing[2]}, dir[9], org[3];
    for (int r = 0; r < 3; r++) {
        double s = r < 2 ? -1 : 1;
        for (int c = 0; c < 3; c++) dir[r * 3 + c] = s * v->affine[r][c] / (sp[c] > 0 ? sp[c] : 1);
        org[r] = s * v->affine[r][3];
    }
    int64_t s3 = 3, s9 = 9;
    if (ok) ok = (b = npy_serialize("<f8", 1, &s3, sp, sizeof sp, &len, err, path)) && npz_add(z, "spacing.npy", b, len);
    if (ok) ok = (b = npy_serialize("<f8", 1, &s9, dir, sizeof dir, &len, err, path)) && npz_add(z, "direction.npy", b, len);
    if (ok) ok = (b = npy_serialize("<f8", 1, &s3, org, sizeof org, &len, err, path)) && npz_add(z, "origin.npy", b, len);
    if (!ok) {
        char msg[200];
        snprintf(msg, sizeof msg, "%s", zip_strerror(z));
        zip_discard(z);
        remove(tmp);
        return ms_error(err, MEDSEG_ERR_IO, "%s: cannot build the npz: %s", path, msg);
    }
    if (zip_close(z) != 0) {
        char msg[200];
        snprintf(msg, sizeof msg, "%s", zip_strerror(z));
        zip_discard(z);
        remove(tmp);
        return ms_error(err, MEDSEG_ERR_IO, "%s: write failed: %s", path, msg);
    }
    if (rename(tmp, path) != 0) {
        int e = errno;
        remove(tmp);
        return ms_error(err, MEDSEG_ERR_IO, "%s: cannot rename the finished file: %s", path, strerror(e));
    }
    return MEDSEG_OK;
}
