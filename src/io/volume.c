/* The volume type: allocation, geometry, value access, dispatch of medseg_volume_load by content
 * and medseg_volume_save by extension, label-map output, and the gzip helpers the NIfTI and NRRD
 * code share. Format readers/writers live in nifti.c, nrrd.c, npz.c, dicom.c and image.c. */
#include "io/volume_extra.h"
#include "io/dicom.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <png.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

/* ---------------------------------------------------------------- dtypes */

size_t ms_voxel_type_size(medseg_dtype t)
{
    switch (t) {
    case MEDSEG_DT_U8: case MEDSEG_DT_I8: return 1;
    case MEDSEG_DT_U16: case MEDSEG_DT_I16: return 2;
    case MEDSEG_DT_U32: case MEDSEG_DT_I32: case MEDSEG_DT_F32: return 4;
    case MEDSEG_DT_U64: case MEDSEG_DT_I64: case MEDSEG_DT_F64: return 8;
    }
    return 0;
}

const char *ms_voxel_type_name(medseg_dtype t)
{
    switch (t) {
    case MEDSEG_DT_U8: return "uint8";
    case MEDSEG_DT_I8: return "int8";
    case MEDSEG_DT_U16: return "uint16";
    case MEDSEG_DT_I16: return "int16";
    case MEDSEG_DT_U32: return "uint32";
    case MEDSEG_DT_I32: return "int32";
    case MEDSEG_DT_U64: return "uint64";
    case MEDSEG_DT_I64: return "int64";
    case MEDSEG_DT_F32: return "float32";
    case MEDSEG_DT_F64: return "float64";
    }
    return "invalid";
}

int ms_voxel_type_is_float(medseg_dtype t) { return t == MEDSEG_DT_F32 || t == MEDSEG_DT_F64; }

/* ---------------------------------------------------------------- allocation and geometry */

medseg_status ms_volume_alloc(medseg_volume *v, int64_t nx, int64_t ny, int64_t nz, int channels,
                              medseg_dtype dtype, const char *name, medseg_error *err)
{
    memset(v, 0, sizeof *v);
    if (!name) name = "volume";
    size_t es = ms_voxel_type_size(dtype);
    if (!es) return ms_error(err, MEDSEG_ERR_ARG, "%s: invalid voxel type %d", name, (int)dtype);
    if (channels != 1 && channels != 3)
        return ms_error(err, MEDSEG_ERR_UNSUPPORTED, "%s: %d channels per voxel (1 or 3 supported)", name, channels);
    if (nx < 1 || ny < 1 || nz < 1)
        return ms_error(err, MEDSEG_ERR_FORMAT, "%s: invalid dimensions %lld x %lld x %lld", name, (long long)nx,
                        (long long)ny, (long long)nz);
    if (nx > MS_VOLUME_MAX_SIDE || ny > MS_VOLUME_MAX_SIDE || nz > MS_VOLUME_MAX_SIDE)
        return ms_error(err, MEDSEG_ERR_NOMEM, "%s: dimensions %lld x %lld x %lld exceed the cap of %lld a side", name,
                        (long long)nx, (long long)ny, (long long)nz, (long long)MS_VOLUME_MAX_SIDE);
    uint64_t count = (uint64_t)nx * (uint64_t)ny; /* each factor <= 2^16: no overflow before the check */
    if (count > MS_VOLUME_MAX_VALUES || count * (uint64_t)nz > MS_VOLUME_MAX_VALUES ||
        count * (uint64_t)nz * (uint64_t)channels > MS_VOLUME_MAX_VALUES)
        return ms_error(err, MEDSEG_ERR_NOMEM, "%s: %lld x %lld x %lld x %d values exceed the cap of %llu", name,
                        (long long)nx, (long long)ny, (long long)nz, channels,
                        (unsigned long long)MS_VOLUME_MAX_VALUES);
    count *= (uint64_t)nz * (uint64_t)channels;
    v->data = ms_calloc((size_t)count, es, err, name);
    if (!v->data) return MEDSEG_ERR_NOMEM;
    v->dim[0] = nx;
    v->dim[1] = ny;
    v->dim[2] = nz;
    v->channels = channels;
    v->dtype = dtype;
    v->scl_slope = 1;
    v->scl_inter = 0;
    for (int r = 0; r < 3; r++) {
        v->spacing[r] = 1;
        v->affine[r][r] = 1;
    }
    v->source_space = MEDSEG_SPACE_RAS;
    return MEDSEG_OK;
}

size_t ms_volume_count(const medseg_volume *v)
{
    if (!v || !v->data) return 0;
    return (size_t)v->dim[0] * (size_t)v->dim[1] * (size_t)v->dim[2] * (size_t)v->channels;
}

medseg_status ms_volume_copy_geometry(medseg_volume *dst, const medseg_volume *src, medseg_error *err)
{
    memcpy(dst->spacing, src->spacing, sizeof dst->spacing);
    memcpy(dst->affine, src->affine, sizeof dst->affine);
    dst->source_space = src->source_space;
    memcpy(dst->modality, src->modality, sizeof dst->modality);
    const ms_volume_priv *sp = (const ms_volume_priv *)src->priv;
    ms_volume_priv *old = (ms_volume_priv *)dst->priv;
    if (old && old != sp && old->free_fn) old->free_fn(old);
    dst->priv = NULL;
    if (sp && sp->clone_fn) {
        dst->priv = sp->clone_fn(sp);
        if (!dst->priv) return ms_error(err, MEDSEG_ERR_NOMEM, "volume: out of memory copying the format header");
    }
    return MEDSEG_OK;
}

double ms_voxel_stored(const void *data, medseg_dtype t, size_t n)
{
    switch (t) {
    case MEDSEG_DT_U8: return ((const uint8_t *)data)[n];
    case MEDSEG_DT_I8: return ((const int8_t *)data)[n];
    case MEDSEG_DT_U16: return ((const uint16_t *)data)[n];
    case MEDSEG_DT_I16: return ((const int16_t *)data)[n];
    case MEDSEG_DT_U32: return ((const uint32_t *)data)[n];
    case MEDSEG_DT_I32: return ((const int32_t *)data)[n];
    case MEDSEG_DT_U64: return (double)((const uint64_t *)data)[n];
    case MEDSEG_DT_I64: return (double)((const int64_t *)data)[n];
    case MEDSEG_DT_F32: return ((const float *)data)[n];
    case MEDSEG_DT_F64: return ((const double *)data)[n];
    }
    return 0;
}

double medseg_volume_value(const medseg_volume *v, size_t n)
{
    if (!v || !v->data || n >= ms_volume_count(v)) return NAN;
    double x = ms_voxel_stored(v->data, v->dtype, n);
    if (v->scl_slope == 1 && v->scl_inter == 0) return x;
    return x * v->scl_slope + v->scl_inter;
}

// slice k, channel c -> out [ny][nx] real values
void ms_volume_slice_f32(const medseg_volume *v, int64_t k, int c, float *out)
{
    size_t nx = (size_t)v->dim[0], ny = (size_t)v->dim[1], ch = (size_t)v->channels;
    size_t base = (size_t)k * nx * ny;
    int scaled = !(v->scl_slope == 1 && v->scl_inter == 0);
    for (size_t p = 0; p < nx * ny; p++) {
        double x = ms_voxel_stored(v->data, v->dtype, (base + p) * ch + (size_t)c);
        out[p] = (float)(scaled ? x * v->scl_slope + v->scl_inter : x);
    }
}

void ms_volume_spacing_from_affine(medseg_volume *v)
{
    for (int c = 0; c < 3; c++) {
        double s = sqrt(v->affine[0][c] * v->affine[0][c] + v->affine[1][c] * v->affine[1][c] +
                        v->affine[2][c] * v->affine[2][c]);
        v->spacing[c] = (isfinite(s) && s > 0) ? s : 1.0;
    }
}

void medseg_volume_free(medseg_volume *v)
{
    if (!v) return;
    free(v->data);
    ms_volume_priv *p = (ms_volume_priv *)v->priv;
    if (p && p->free_fn) p->free_fn(p);
    memset(v, 0, sizeof *v);
}

/* ---------------------------------------------------------------- gzip helpers */

int ms_is_gzip(const uint8_t *buf, size_t len) { return len >= 3 && buf[0] == 0x1f && buf[1] == 0x8b && buf[2] == 8; }

medseg_status ms_gunzip(const uint8_t *in, size_t in_len, size_t max_out, const char *name, uint8_t **out,
                        size_t *out_len, int *truncated, medseg_error *err)
{
    *out = NULL;
    *out_len = 0;
    *truncated = 0;
    size_t cap = max_out < 65536 ? max_out : 65536;
    if (cap == 0) cap = 1;
    uint8_t *buf = ms_malloc(cap, err, name);
    if (!buf) return MEDSEG_ERR_NOMEM;
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    if (inflateInit2(&zs, 15 + 32) != Z_OK) {
        free(buf);
        return ms_error(err, MEDSEG_ERR_NOMEM, "%s: cannot start the gzip decoder", name);
    }
    size_t used = 0, done = 0;
    medseg_status st = MEDSEG_OK;
    while (done < max_out) {
        if (done == cap) {
            size_t ncap = cap > max_out / 2 ? max_out : cap * 2;
            uint8_t *nb = realloc(buf, ncap);
            if (!nb) {
                st = ms_error(err, MEDSEG_ERR_NOMEM, "%s: out of memory decompressing (%zu bytes)", name, ncap);
                break;
            }
            buf = nb;
            cap = ncap;
        }
        size_t in_chunk = in_len - used > (1u << 30) ? (1u << 30) : in_len - used;
        size_t out_chunk = cap - done > (1u << 30) ? (1u << 30) : cap - done;
        zs.next_in = (Bytef *)(uintptr_t)(in + used);
        zs.avail_in = (uInt)in_chunk;
        zs.next_out = buf + done;
        zs.avail_out = (uInt)out_chunk;
        int rc = inflate(&zs, Z_NO_FLUSH);
        used += in_chunk - zs.avail_in;
        done += out_chunk - zs.avail_out;
        if (rc == Z_STREAM_END) {
            /* another gzip member may follow (concatenated .gz) */
            if (used + 2 <= in_len && in[used] == 0x1f && in[used + 1] == 0x8b) {
                if (inflateReset(&zs) != Z_OK) break;
                continue;
            }
            break;
        }
        if (rc == Z_OK || rc == Z_BUF_ERROR) {
            if (zs.avail_out == 0) continue; /* output full: grow or stop at max_out */
            if (used == in_len) {           /* input exhausted before the end of the stream */
                *truncated = 1;
                break;
            }
            if (rc == Z_OK) continue;
        }
        st = ms_error(err, MEDSEG_ERR_FORMAT, "%s: corrupt gzip data (%s)", name, zs.msg ? zs.msg : "inflate error");
        break;
    }
    /* max_out reached: the rest of the stream must still be there and intact (a file cut inside
       the gzip trailer, or corrupt after the bytes needed, is refused); bytes beyond are skipped */
    if (!st && done == max_out && !*truncated) {
        uint8_t scratch[16384];
        size_t extra = 0;
        for (;;) {
            size_t in_chunk = in_len - used > (1u << 30) ? (1u << 30) : in_len - used;
            zs.next_in = (Bytef *)(uintptr_t)(in + used);
            zs.avail_in = (uInt)in_chunk;
            zs.next_out = scratch;
            zs.avail_out = sizeof scratch;
            int rc = inflate(&zs, Z_NO_FLUSH);
            used += in_chunk - zs.avail_in;
            extra += sizeof scratch - zs.avail_out;
            if (rc == Z_STREAM_END) break;
            if ((rc == Z_OK || rc == Z_BUF_ERROR) && zs.avail_out != 0 && used == in_len) {
                *truncated = 1;
                break;
            }
            if (rc != Z_OK && rc != Z_BUF_ERROR) {
                st = ms_error(err, MEDSEG_ERR_FORMAT, "%s: corrupt gzip data (%s)", name, zs.msg ? zs.msg : "inflate error");
                break;
            }
            if (extra > ((size_t)1 << 20)) break; /* trailing data: not ours to check */
        }
    }
    inflateEnd(&zs);
    if (st) {
        free(buf);
        return st;
    }
    *out = buf;
    *out_len = done;
    return MEDSEG_OK;
}

medseg_status ms_vol_out_open(ms_vol_out *o, const char *path, int gz, medseg_error *err)
{
    memset(o, 0, sizeof *o);
    medseg_status st = ms_atomic_open(&o->af, path, err);
    if (st) return st;
    if (gz) {
        st = ms_vol_out_start_gzip(o, err);
        if (st) {
            ms_atomic_abort(&o->af);
            return st;
        }
    }
    return MEDSEG_OK;
}

medseg_status ms_vol_out_start_gzip(ms_vol_out *o, medseg_error *err)
{
    if (o->gz) return MEDSEG_OK;
    z_stream *zs = calloc(1, sizeof *zs);
    /* level 3: on the 20-slice CT series (bench/convert.sh) 2.75x faster to deflate than zlib's
     * default 6 and no larger (4,664,946 vs 4,686,504 bytes) */
    if (!zs || deflateInit2(zs, 3, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
        free(zs);
        return ms_error(err, MEDSEG_ERR_NOMEM, "%s: cannot start the gzip encoder", o->af.path);
    }
    o->zs = zs;
    o->gz = 1;
    return MEDSEG_OK;
}

static void vol_out_deflate(ms_vol_out *o, const uint8_t *buf, size_t n, int flush)
{
    z_stream *zs = (z_stream *)o->zs;
    uint8_t chunk[65536];
    size_t pos = 0;
    do {
        size_t take = n - pos > (1u << 30) ? (1u << 30) : n - pos;
        zs->next_in = (Bytef *)(uintptr_t)(buf + pos);
        zs->avail_in = (uInt)take;
        int last = flush && pos + take == n;
        int rc;
        do {
            zs->next_out = chunk;
            zs->avail_out = sizeof chunk;
            rc = deflate(zs, last ? Z_FINISH : Z_NO_FLUSH);
            if (rc == Z_STREAM_ERROR) {
                o->failed = 1;
                return;
            }
            size_t have = sizeof chunk - zs->avail_out;
            if (have && fwrite(chunk, 1, have, o->af.f) != have) {
                o->failed = 1;
                return;
            }
        } while (zs->avail_out == 0 || (last && rc != Z_STREAM_END));
        pos += take;
    } while (pos < n);
}

void ms_vol_out_write(ms_vol_out *o, const void *buf, size_t n)
{
    if (o->failed || n == 0) return;
    if (o->gz) vol_out_deflate(o, buf, n, 0);
    else if (fwrite(buf, 1, n, o->af.f) != n) o->failed = 1;
}

medseg_status ms_vol_out_commit(ms_vol_out *o, medseg_error *err)
{
    if (o->gz && !o->failed) vol_out_deflate(o, (const uint8_t *)"", 0, 1);
    if (o->zs) {
        deflateEnd((z_stream *)o->zs);
        free(o->zs);
        o->zs = NULL;
    }
    if (o->failed) {
        int e = errno;
        ms_atomic_abort(&o->af);
        return ms_error(err, MEDSEG_ERR_IO, "%s: write failed: %s", o->af.path, e ? strerror(e) : "I/O error");
    }
    return ms_atomic_commit(&o->af, err);
}

void ms_vol_out_abort(ms_vol_out *o)
{
    if (o->zs) {
        deflateEnd((z_stream *)o->zs);
        free(o->zs);
        o->zs = NULL;
    }
    ms_atomic_abort(&o->af);
}

int ms_path_has_suffix(const char *path, const char *suffix)
{
    size_t n = strlen(path), m = strlen(suffix);
    if (m > n) return 0;
    for (size_t i = 0; i < m; i++)
        if (tolower((unsigned char)path[n - m + i]) != tolower((unsigned char)suffix[i])) return 0;
    return 1;
}

/* ---------------------------------------------------------------- load by content */

static int looks_nifti(const uint8_t *b, size_t n)
{
    if (n >= 348 && (memcmp(b + 344, "n+1\0", 4) == 0 || memcmp(b + 344, "ni1\0", 4) == 0)) return 1;
    if (n >= 12 && (memcmp(b + 4, "n+2\0", 4) == 0 || memcmp(b + 4, "ni2\0", 4) == 0)) return 1;
    return 0;
}

static medseg_status load_by_content(const char *path, const uint8_t *head, size_t n, medseg_volume *out,
                                     medseg_error *err);

medseg_status medseg_volume_load(const char *path, medseg_volume *out, medseg_error *err)
{
    if (!out) return ms_error(err, MEDSEG_ERR_ARG, "medseg_volume_load: no output volume");
    memset(out, 0, sizeof *out);
    if (!path) return ms_error(err, MEDSEG_ERR_ARG, "medseg_volume_load: no path");
    struct stat sb;
    if (stat(path, &sb) != 0) return ms_error(err, MEDSEG_ERR_IO, "%s: %s", path, strerror(errno));
    if (S_ISDIR(sb.st_mode)) return ms_dicom_read_path(path, NULL, out, err);
    FILE *f = fopen(path, "rb");
    if (!f) return ms_error(err, MEDSEG_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    uint8_t *head = ms_malloc(65536, err, path);
    if (!head) {
        fclose(f);
        return MEDSEG_ERR_NOMEM;
    }
    size_t n = fread(head, 1, 65536, f);
    fclose(f);
    medseg_status st = load_by_content(path, head, n, out, err);
    free(head);
    return st;
}

/* head: the first n bytes of the file (up to 64 KiB). */
static medseg_status load_by_content(const char *path, const uint8_t *head, size_t n, medseg_volume *out,
                                     medseg_error *err)
{
    if (ms_is_gzip(head, n)) {
        /* gzip: NIfTI when the decompressed start says so (the only gzipped volume format here) */
        uint8_t *dec = NULL;
        size_t dlen = 0;
        int trunc = 0;
        medseg_status st = ms_gunzip(head, n, 560, path, &dec, &dlen, &trunc, err);
        if (st) return st;
        int nii = looks_nifti(dec, dlen);
        free(dec);
        if (nii) return ms_nifti_read(path, out, err);
        return ms_error(err, MEDSEG_ERR_FORMAT, "%s: gzip file that does not hold a NIfTI image", path);
    }
    if (looks_nifti(head, n)) return ms_nifti_read(path, out, err);
    if (n >= 7 && memcmp(head, "NRRD000", 7) == 0) return ms_nrrd_read(path, out, err);
    if (n >= 4 && memcmp(head, "PK\3\4", 4) == 0) return ms_npz_read_volume(path, "imgs", out, err);
    if (n >= 8 && (memcmp(head, "\x89PNG", 4) == 0 || (head[0] == 0xff && head[1] == 0xd8) ||
                   (head[0] == 'B' && head[1] == 'M')))
        return ms_image_read_volume(path, out, err);
    if (ms_dicom_sniff(head, n)) return ms_dicom_read_path(path, NULL, out, err); /* DICM at 128, or no preamble */
    return ms_error(err, MEDSEG_ERR_FORMAT,
                    "%s: not a recognised volume or image (NIfTI, NRRD, npz, DICOM, PNG, JPEG, BMP)", path);
}

medseg_status medseg_volume_load_series(const char *dir, const char *series_uid, medseg_volume *out,
                                        medseg_error *err)
{
    if (!out) return ms_error(err, MEDSEG_ERR_ARG, "medseg_volume_load_series: no output volume");
    memset(out, 0, sizeof *out);
    if (!dir) return ms_error(err, MEDSEG_ERR_ARG, "medseg_volume_load_series: no path");
    return ms_dicom_read_path(dir, series_uid, out, err);
}

/* ---------------------------------------------------------------- PNG output of raw bytes */

typedef struct {
    jmp_buf jb;
    char msg[200];
} png_err_ctx;

static void vol_png_error(png_structp p, png_const_charp msg)
{
    png_err_ctx *c = (png_err_ctx *)png_get_error_ptr(p);
    snprintf(c->msg, sizeof c->msg, "%s", msg);
    longjmp(c->jb, 1);
}

static void vol_png_warning(png_structp p, png_const_charp msg)
{
    (void)p;
    (void)msg;
}

/* gray [h][w] (channels 1) or rgb [h][w][3] bytes, values as given, 8-bit PNG, atomic. */
static medseg_status write_png_raw(const char *path, int w, int h, int channels, const uint8_t *data,
                                   medseg_error *err)
{
    ms_atomic_file af;
    medseg_status st = ms_atomic_open(&af, path, err);
    if (st) return st;
    png_err_ctx ctx;
    ctx.msg[0] = 0;
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &ctx, vol_png_error, vol_png_warning);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!png || !info) {
        png_destroy_write_struct(&png, NULL);
        ms_atomic_abort(&af);
        return ms_error(err, MEDSEG_ERR_NOMEM, "%s: cannot start the PNG encoder", path);
    }
    volatile int failed = 0;
    if (setjmp(ctx.jb)) {
        failed = 1;
    } else {
        png_init_io(png, af.f);
        png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, 8, channels == 3 ? PNG_COLOR_TYPE_RGB : PNG_COLOR_TYPE_GRAY,
                     PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
        png_write_info(png, info);
        for (int y = 0; y < h; y++) png_write_row(png, (png_const_bytep)(data + (size_t)y * (size_t)w * (size_t)channels));
        png_write_end(png, NULL);
    }
    png_destroy_write_struct(&png, &info);
    if (failed) {
        ms_atomic_abort(&af);
        return ms_error(err, MEDSEG_ERR_IO, "%s: PNG write failed: %s", path, ctx.msg);
    }
    return ms_atomic_commit(&af, err);
}

static medseg_status write_png_volume(const char *path, const medseg_volume *v, medseg_error *err)
{
    if (v->dim[2] != 1)
        return ms_error(err, MEDSEG_ERR_ARG, "%s: PNG holds one slice, the volume has %lld", path, (long long)v->dim[2]);
    if (v->dim[0] > MEDSEG_MAX_DIM || v->dim[1] > MEDSEG_MAX_DIM)
        return ms_error(err, MEDSEG_ERR_ARG, "%s: image too large for PNG output", path);
    size_t n = ms_volume_count(v);
    const uint8_t *src = v->data;
    uint8_t *tmp = NULL;
    if (v->dtype != MEDSEG_DT_U8) {
        if (v->dtype != MEDSEG_DT_U16 || v->channels != 1)
            return ms_error(err, MEDSEG_ERR_UNSUPPORTED, "%s: PNG output needs uint8 values (have %s)", path,
                            ms_voxel_type_name(v->dtype));
        tmp = ms_malloc(n, err, path);
        if (!tmp) return MEDSEG_ERR_NOMEM;
        for (size_t i = 0; i < n; i++) {
            uint16_t x = ((const uint16_t *)v->data)[i];
            if (x > 255) {
                free(tmp);
                return ms_error(err, MEDSEG_ERR_UNSUPPORTED, "%s: label value %u does not fit an 8-bit PNG", path, x);
            }
            tmp[i] = (uint8_t)x;
        }
        src = tmp;
    }
    medseg_status st = write_png_raw(path, (int)v->dim[0], (int)v->dim[1], v->channels, src, err);
    free(tmp);
    return st;
}

/* ---------------------------------------------------------------- save by extension */

medseg_status medseg_volume_save(const char *path, const medseg_volume *v, medseg_error *err)
{
    if (!path || !v || !v->data) return ms_error(err, MEDSEG_ERR_ARG, "medseg_volume_save: no path or no volume");
    if (ms_path_has_suffix(path, ".nii") || ms_path_has_suffix(path, ".nii.gz")) return ms_nifti_write(path, v, err);
    if (ms_path_has_suffix(path, ".nrrd")) return ms_nrrd_write(path, v, err);
    if (ms_path_has_suffix(path, ".npz")) return ms_npz_write_volume(path, "imgs", v, err);
    if (ms_path_has_suffix(path, ".png")) return write_png_volume(path, v, err);
    return ms_error(err, MEDSEG_ERR_ARG, "%s: unknown output extension (.nii, .nii.gz, .nrrd, .npz, .png)", path);
}

medseg_status ms_labelmap_save(const char *path, const medseg_volume *labels, const medseg_volume *like,
                               medseg_error *err)
{
    if (!path || !labels || !labels->data || !like)
        return ms_error(err, MEDSEG_ERR_ARG, "ms_labelmap_save: no path, labels or reference volume");
    if ((labels->dtype != MEDSEG_DT_U8 && labels->dtype != MEDSEG_DT_U16) || labels->channels != 1)
        return ms_error(err, MEDSEG_ERR_ARG, "%s: a label map is uint8 or uint16 with one channel (have %s x %d)", path,
                        ms_voxel_type_name(labels->dtype), labels->channels);
    for (int d = 0; d < 3; d++)
        if (labels->dim[d] != like->dim[d])
            return ms_error(err, MEDSEG_ERR_ARG, "%s: label map %lld x %lld x %lld does not match the image %lld x %lld x %lld",
                            path, (long long)labels->dim[0], (long long)labels->dim[1], (long long)labels->dim[2],
                            (long long)like->dim[0], (long long)like->dim[1], (long long)like->dim[2]);
    /* a view: the labels' values with like's geometry and format header (nothing is copied) */
    medseg_volume view = *labels;
    memcpy(view.spacing, like->spacing, sizeof view.spacing);
    memcpy(view.affine, like->affine, sizeof view.affine);
    view.source_space = like->source_space;
    view.priv = like->priv;
    view.scl_slope = 1;
    view.scl_inter = 0;
    if (ms_path_has_suffix(path, ".nii") || ms_path_has_suffix(path, ".nii.gz"))
        return ms_nifti_write_ex(path, &view, 1, 1, err);
    if (ms_path_has_suffix(path, ".nrrd")) return ms_nrrd_write(path, &view, err);
    if (ms_path_has_suffix(path, ".npz")) return ms_npz_write_volume(path, "segs", &view, err);
    if (ms_path_has_suffix(path, ".png")) return write_png_volume(path, &view, err);
    return ms_error(err, MEDSEG_ERR_ARG, "%s: unknown label map extension (.nii, .nii.gz, .nrrd, .npz, .png)", path);
}

medseg_status ms_labelmap_save_png_slices(const char *dir, const char *prefix, const medseg_volume *labels,
                                          medseg_error *err)
{
    if (!dir || !prefix || !labels || !labels->data) return ms_error(err, MEDSEG_ERR_ARG, "ms_labelmap_save_png_slices: bad arguments");
    if (labels->dtype != MEDSEG_DT_U8 || labels->channels != 1)
        return ms_error(err, MEDSEG_ERR_ARG, "%s: PNG slices need a uint8 single-channel label map (have %s x %d)", dir,
                        ms_voxel_type_name(labels->dtype), labels->channels);
    if (labels->dim[0] > MEDSEG_MAX_DIM || labels->dim[1] > MEDSEG_MAX_DIM)
        return ms_error(err, MEDSEG_ERR_ARG, "%s: slices too large for PNG output", dir);
    struct stat sb;
    if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode)) return ms_error(err, MEDSEG_ERR_IO, "%s: not a folder", dir);
    size_t plane = (size_t)labels->dim[0] * (size_t)labels->dim[1];
    for (int64_t k = 0; k < labels->dim[2]; k++) {
        char path[4096];
        int n = snprintf(path, sizeof path, "%s/%s_%04lld.png", dir, prefix, (long long)k);
        if (n < 0 || (size_t)n >= sizeof path) return ms_error(err, MEDSEG_ERR_ARG, "%s: path too long", dir);
        medseg_status st = write_png_raw(path, (int)labels->dim[0], (int)labels->dim[1], 1,
                                         (const uint8_t *)labels->data + (size_t)k * plane, err);
        if (st) return st;
    }
    return MEDSEG_OK;
}
