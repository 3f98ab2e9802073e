/* NIfTI-1 and NIfTI-2 single-file images (.nii, .nii.gz) through nifticlib (libnifti2).
 *
 * Reading: the file is read (and gunzipped) into memory here, so every size in the header can be
 * checked against the bytes present and medseg's caps before anything is allocated, and the
 * errors name the file; the header is then handed to nifticlib (nifti_convert_n{1,2}hdr2nim),
 * which computes the qform/sform matrices. The nifti_image (without data) is kept in priv so a
 * label map written "like" this image keeps its qform/sform codes and matrices exactly.
 * Writing: nifticlib builds the binary header from a nifti_image (nifti_convert_nim2n{1,2}hdr);
 * header, extensions and data go through an atomic, optionally gzipped, output file.
 *
 * ref: NIfTI-1/2 specification (nifti1.h / nifti2.h): scl_slope 0 means unscaled; affine
 * method 3 (sform_code > 0), else method 2 (qform_code > 0), else method 1 (pixdim diagonal). */
#include "io/volume_extra.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <nifti2_io.h>

typedef struct {
    ms_volume_priv h;
    nifti_image *nim; /* header only: data == NULL */
} nifti_priv;

static void nifti_priv_free(ms_volume_priv *p)
{
    nifti_priv *np = (nifti_priv *)p;
    if (np->nim) {
        np->nim->data = NULL;
        nifti_image_free(np->nim);
    }
    free(np);
}

static ms_volume_priv *nifti_priv_clone(const ms_volume_priv *p)
{
    const nifti_priv *src = (const nifti_priv *)p;
    nifti_priv *np = calloc(1, sizeof *np);
    if (!np) return NULL;
    np->h = src->h;
    np->nim = nifti_copy_nim_info(src->nim);
    if (!np->nim) {
        free(np);
        return NULL;
    }
    np->nim->data = NULL;
    return &np->h;
}

static void nifticlib_silence(void) { nifti_set_debug_level(0); }

/* nifticlib reports through stderr at debug level > 0; medseg reports through medseg_error. */
static void quiet_nifticlib(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, nifticlib_silence);
}

/* NIfTI datatype -> medseg dtype and channels; 0 when not supported. */
static medseg_dtype dtype_from_nifti(int dt, int *channels)
{
    *channels = 1;
    switch (dt) {
    case DT_UINT8: return MEDSEG_DT_U8;
    case DT_INT8: return MEDSEG_DT_I8;
    case DT_UINT16: return MEDSEG_DT_U16;
    case DT_INT16: return MEDSEG_DT_I16;
    case DT_UINT32: return MEDSEG_DT_U32;
    case DT_INT32: return MEDSEG_DT_I32;
    case DT_UINT64: return MEDSEG_DT_U64;
    case DT_INT64: return MEDSEG_DT_I64;
    case DT_FLOAT32: return MEDSEG_DT_F32;
    case DT_FLOAT64: return MEDSEG_DT_F64;
    case DT_RGB24: *channels = 3; return MEDSEG_DT_U8;
    }
    return (medseg_dtype)0;
}

static int nifti_from_dtype(medseg_dtype t, int channels)
{
    if (channels == 3) return t == MEDSEG_DT_U8 ? DT_RGB24 : 0;
    switch (t) {
    case MEDSEG_DT_U8: return DT_UINT8;
    case MEDSEG_DT_I8: return DT_INT8;
    case MEDSEG_DT_U16: return DT_UINT16;
    case MEDSEG_DT_I16: return DT_INT16;
    case MEDSEG_DT_U32: return DT_UINT32;
    case MEDSEG_DT_I32: return DT_INT32;
    case MEDSEG_DT_U64: return DT_UINT64;
    case MEDSEG_DT_I64: return DT_INT64;
    case MEDSEG_DT_F32: return DT_FLOAT32;
    case MEDSEG_DT_F64: return DT_FLOAT64;
    }
    return 0;
}

static uint32_t bswap32(uint32_t x) { return (x >> 24) | ((x >> 8) & 0xff00) | ((x << 8) & 0xff0000) | (x << 24); }

static int32_t rd_i32(const uint8_t *p, int swap)
{
    uint32_t x;
    memcpy(&x, p, 4);
    if (swap) x = bswap32(x);
    return (int32_t)x;
}

/* Byte-swaps n elements of size es in place. */
static void swap_elems(uint8_t *d, size_t n, size_t es)
{
    if (es < 2) return;
    for (size_t i = 0; i < n; i++) {
        uint8_t *e = d + i * es;
        for (size_t a = 0, b = es - 1; a < b; a++, b--) {
            uint8_t t = e[a];
            e[a] = e[b];
            e[b] = t;
        }
    }
}

/* The fields of either header version the reader checks before trusting it. */
typedef struct {
    int version; /* 1 or 2 */
    int swapped;
    size_t hsize; /* 348 or 540 */
    int64_t dim[8];
    int datatype, bitpix;
    double vox_offset;
    nifti_1_header h1;
    nifti_2_header h2;
} nifti_hdr_view;

static medseg_status parse_header(const uint8_t *b, size_t n, const char *path, nifti_hdr_view *hv, medseg_error *err)
{
    memset(hv, 0, sizeof *hv);
    if (n < 348) return ms_error(err, MEDSEG_ERR_FORMAT, "%s: truncated NIfTI header (%zu bytes)", path, n);
    int32_t sz = rd_i32(b, 0);
    if (sz == 348 || (int32_t)bswap32((uint32_t)sz) == 348) {
        hv->version = 1;
        hv->swapped = sz != 348;
        hv->hsize = 348;
        memcpy(&hv->h1, b, sizeof hv->h1);
        if (hv->swapped) swap_nifti_header(&hv->h1, 1);
        if (memcmp(hv->h1.magic, "ni1\0", 4) == 0)
            return ms_error(err, MEDSEG_ERR_UNSUPPORTED, "%s: two-file NIfTI (.hdr/.img pair) is not supported", path);
        if (memcmp(hv->h1.magic, "n+1\0", 4) != 0)
            return ms_error(err, MEDSEG_ERR_FORMAT, "%s: not a NIfTI-1 file (bad magic)", path);
        for (int i = 0; i < 8; i++) hv->dim[i] = hv->h1.dim[i];
        hv->datatype = hv->h1.datatype;
        hv->bitpix = hv->h1.bitpix;
        hv->vox_offset = hv->h1.vox_offset;
    } else if (sz == 540 || (int32_t)bswap32((uint32_t)sz) == 540) {
        if (n < 540) return ms_error(err, MEDSEG_ERR_FORMAT, "%s: truncated NIfTI-2 header (%zu bytes)", path, n);
        hv->version = 2;
        hv->swapped = sz != 540;
        hv->hsize = 540;
        memcpy(&hv->h2, b, sizeof hv->h2);
        if (hv->swapped) swap_nifti_header(&hv->h2, 2);
        if (memcmp(hv->h2.magic, "ni2\0", 4) == 0)
            return ms_error(err, MEDSEG_ERR_UNSUPPORTED, "%s: two-file NIfTI-2 (.hdr/.img pair) is not supported", path);
        /* the full signature, or its first 4 bytes as nifticlib 3.0 writes it */
        if (memcmp(hv->h2.magic, "n+2\0", 4) != 0 ||
            (memcmp(hv->h2.magic + 4, "\r\n\032\n", 4) != 0 && memcmp(hv->h2.magic + 4, "\0\0\0\0", 4) != 0))
            return ms_error(err, MEDSEG_ERR_FORMAT, "%s: not a NIfTI-2 file (bad magic)", path);
        for (int i = 0; i < 8; i++) hv->dim[i] = hv->h2.dim[i];
        hv->datatype = hv->h2.datatype;
        hv->bitpix = hv->h2.bitpix;
        hv->vox_offset = (double)hv->h2.vox_offset;
    } else {
        return ms_error(err, MEDSEG_ERR_FORMAT, "%s: not a NIfTI file (sizeof_hdr %d)", path, (int)sz);
    }
    int64_t nd = hv->dim[0];
    if (nd < 1 || nd > 7) return ms_error(err, MEDSEG_ERR_FORMAT, "%s: invalid NIfTI dim[0] = %lld", path, (long long)nd);
    for (int i = 1; i <= nd; i++)
        if (hv->dim[i] < 1)
            return ms_error(err, MEDSEG_ERR_FORMAT, "%s: invalid NIfTI dimension dim[%d] = %lld", path, i, (long long)hv->dim[i]);
    for (int i = (int)nd + 1; i < 8; i++) hv->dim[i] = 1; /* unused dimensions count as 1 */
    for (int i = 1; i <= 3; i++)
        if (hv->dim[i] > MS_VOLUME_MAX_SIDE)
            return ms_error(err, MEDSEG_ERR_NOMEM, "%s: NIfTI dimension %lld exceeds the cap of %lld", path,
                            (long long)hv->dim[i], (long long)MS_VOLUME_MAX_SIDE);
    for (int i = 4; i <= 7; i++)
        if (hv->dim[i] != 1)
            return ms_error(err, MEDSEG_ERR_UNSUPPORTED,
                            "%s: %lldD NIfTI with dim[%d] = %lld (%lld x %lld x %lld x %lld...): only one 3D volume is "
                            "supported; extract one volume first",
                            path, (long long)nd, i, (long long)hv->dim[i], (long long)hv->dim[1], (long long)hv->dim[2],
                            (long long)hv->dim[3], (long long)hv->dim[4]);
    int ch;
    if (!dtype_from_nifti(hv->datatype, &ch)) {
        const char *nm = nifti_datatype_to_string(hv->datatype);
        return ms_error(err, MEDSEG_ERR_UNSUPPORTED, "%s: NIfTI datatype %d (%s) is not supported", path, hv->datatype,
                        nm ? nm : "unknown");
    }
    if (hv->vox_offset == 0) hv->vox_offset = (double)hv->hsize + 4; /* old writers: 0 means right after the header */
    if (!(hv->vox_offset >= (double)hv->hsize + 4 || hv->vox_offset == (double)hv->hsize) ||
        !(hv->vox_offset < (double)MS_VOLUME_MAX_FILE))
        return ms_error(err, MEDSEG_ERR_FORMAT, "%s: invalid NIfTI vox_offset %g", path, hv->vox_offset);
    if (hv->vox_offset != floor(hv->vox_offset))
        return ms_error(err, MEDSEG_ERR_FORMAT, "%s: invalid NIfTI vox_offset %g", path, hv->vox_offset);
    return MEDSEG_OK;
}

/* Copies the header extensions found between the header and vox_offset into nim. */
static medseg_status read_extensions(const uint8_t *b, size_t voff, const nifti_hdr_view *hv, nifti_image *nim,
                                     const char *path, medseg_error *err)
{
    size_t pos = hv->hsize;
    if (voff < pos + 4 || b[pos] == 0) return MEDSEG_OK;
    pos += 4;
    for (int count = 0; pos + 8 <= voff; count++) {
        int32_t esize = rd_i32(b + pos, hv->swapped), ecode = rd_i32(b + pos + 4, hv->swapped);
        if (esize < 8 || (size_t)esize > voff - pos || count >= 4096)
            return ms_error(err, MEDSEG_ERR_FORMAT, "%s: invalid NIfTI header extension (size %d at byte %zu)", path,
                            (int)esize, pos);
        /* kept for writing when nifticlib knows the code (it prints and refuses others) */
        if (nifti_is_valid_ecode(ecode) && nifti_add_extension(nim, (const char *)b + pos + 8, esize - 8, ecode) != 0)
            return ms_error(err, MEDSEG_ERR_NOMEM, "%s: cannot keep NIfTI header extension", path);
        pos += (size_t)esize;
    }
    return MEDSEG_OK;
}

/* The voxel -> world matrix by the NIfTI rule: sform when sform_code > 0, else qform when
 * qform_code > 0, else the pixdim diagonal (method 1; pixdim <= 0 counts as 1). */
static void nim_affine(const nifti_image *nim, double a[3][4])
{
    const nifti_dmat44 *m = NULL;
    if (nim->sform_code > 0) m = &nim->sto_xyz;
    else if (nim->qform_code > 0) m = &nim->qto_xyz;
    for (int r = 0; r < 3; r++)
        for (int c = 0; c < 4; c++) a[r][c] = m ? m->m[r][c] : 0;
    if (!m)
        for (int r = 0; r < 3; r++) {
            double d = nim->pixdim[r + 1];
            a[r][r] = (isfinite(d) && d > 0) ? d : 1.0;
        }
}

/* sform and qform (codes scode/qcode) both set from the volume's affine and spacing. */
static void set_xforms(nifti_image *nim, const medseg_volume *v, int scode, int qcode)
{
    nifti_dmat44 a;
    memset(&a, 0, sizeof a);
    for (int r = 0; r < 3; r++)
        for (int c = 0; c < 4; c++) a.m[r][c] = v->affine[r][c];
    a.m[3][3] = 1;
    nim->sform_code = scode;
    nim->sto_xyz = a;
    nim->sto_ijk = nifti_dmat44_inverse(a);
    double qb, qc, qd, qx, qy, qz, dx, dy, dz, qfac;
    nifti_dmat44_to_quatern(a, &qb, &qc, &qd, &qx, &qy, &qz, &dx, &dy, &dz, &qfac);
    nim->qform_code = qcode;
    nim->quatern_b = qb;
    nim->quatern_c = qc;
    nim->quatern_d = qd;
    nim->qoffset_x = qx;
    nim->qoffset_y = qy;
    nim->qoffset_z = qz;
    nim->qfac = qfac;
    nim->qto_xyz = nifti_quatern_to_dmat44(qb, qc, qd, qx, qy, qz, v->spacing[0], v->spacing[1], v->spacing[2], qfac);
    nim->qto_ijk = nifti_dmat44_inverse(nim->qto_xyz);
    nim->dx = nim->pixdim[1] = v->spacing[0];
    nim->dy = nim->pixdim[2] = v->spacing[1];
    nim->dz = nim->pixdim[3] = v->spacing[2];
    nim->pixdim[0] = qfac;
}

medseg_status ms_nifti_read(const char *path, medseg_volume *out, medseg_error *err)
{
    memset(out, 0, sizeof *out);
    quiet_nifticlib();
    uint8_t *raw = NULL, *buf = NULL;
    size_t rawlen = 0, len = 0;
    medseg_status st = ms_read_file(path, MS_VOLUME_MAX_FILE, &raw, &rawlen, err);
    if (st) return st;
    int gz = ms_is_gzip(raw, rawlen), trunc = 0;
    if (gz) {
        st = ms_gunzip(raw, rawlen, 544, path, &buf, &len, &trunc, err);
        if (st) goto done;
    } else {
        buf = raw;
        len = rawlen;
    }
    nifti_hdr_view hv;
    st = parse_header(buf, len, path, &hv, err);
    if (st) goto done;
    int ch;
    medseg_dtype dt = dtype_from_nifti(hv.datatype, &ch);
    size_t es = ms_voxel_type_size(dt);
    /* dimension caps before any size arithmetic */
    uint64_t nvals = (uint64_t)hv.dim[1] * (uint64_t)hv.dim[2];
    if (nvals > MS_VOLUME_MAX_VALUES || nvals * (uint64_t)hv.dim[3] * (uint64_t)ch > MS_VOLUME_MAX_VALUES) {
        st = ms_error(err, MEDSEG_ERR_NOMEM, "%s: NIfTI volume %lld x %lld x %lld exceeds the cap of %llu values", path,
                      (long long)hv.dim[1], (long long)hv.dim[2], (long long)hv.dim[3],
                      (unsigned long long)MS_VOLUME_MAX_VALUES);
        goto done;
    }
    nvals *= (uint64_t)hv.dim[3] * (uint64_t)ch;
    size_t voff = (size_t)hv.vox_offset;
    size_t nbytes = (size_t)nvals * es;
    size_t need = voff + nbytes;
    if (need > MS_VOLUME_MAX_FILE) {
        st = ms_error(err, MEDSEG_ERR_NOMEM, "%s: NIfTI data of %zu bytes exceeds the cap of %zu", path, need,
                      (size_t)MS_VOLUME_MAX_FILE);
        goto done;
    }
    if (gz) {
        free(buf);
        buf = NULL;
        st = ms_gunzip(raw, rawlen, need, path, &buf, &len, &trunc, err);
        if (st) goto done;
    }
    if (len < need || trunc) {
        st = ms_error(err, MEDSEG_ERR_FORMAT, "%s: truncated NIfTI file: %zu of %zu bytes of %s%s", path, len, need,
                      gz ? "decompressed data" : "file", gz && trunc ? " (gzip stream cut short)" : "");
        goto done;
    }
    if (hv.datatype == DT_RGB24 ? hv.bitpix != 24 : hv.bitpix != (int)(es * 8)) {
        st = ms_error(err, MEDSEG_ERR_FORMAT, "%s: NIfTI bitpix %d does not match datatype %d", path, hv.bitpix, hv.datatype);
        goto done;
    }
    nifti_image *nim = hv.version == 1 ? nifti_convert_n1hdr2nim(hv.h1, NULL) : nifti_convert_n2hdr2nim(hv.h2, NULL);
    if (!nim) {
        st = ms_error(err, MEDSEG_ERR_FORMAT, "%s: nifticlib rejected the NIfTI header", path);
        goto done;
    }
    nim->data = NULL;
    nim->nifti_type = hv.version == 1 ? NIFTI_FTYPE_NIFTI1_1 : NIFTI_FTYPE_NIFTI2_1;
    /* nifticlib leaves the quaternion fields unset when qform_code is 0; keep them as stored so a
       file written "like" this one carries the same header */
    if (nim->qform_code <= 0) {
        if (hv.version == 1) {
            nim->quatern_b = hv.h1.quatern_b, nim->quatern_c = hv.h1.quatern_c, nim->quatern_d = hv.h1.quatern_d;
            nim->qoffset_x = hv.h1.qoffset_x, nim->qoffset_y = hv.h1.qoffset_y, nim->qoffset_z = hv.h1.qoffset_z;
            nim->qfac = hv.h1.pixdim[0] < 0 ? -1 : 1;
        } else {
            nim->quatern_b = hv.h2.quatern_b, nim->quatern_c = hv.h2.quatern_c, nim->quatern_d = hv.h2.quatern_d;
            nim->qoffset_x = hv.h2.qoffset_x, nim->qoffset_y = hv.h2.qoffset_y, nim->qoffset_z = hv.h2.qoffset_z;
            nim->qfac = hv.h2.pixdim[0] < 0 ? -1 : 1;
        }
    }
    st = read_extensions(buf, voff, &hv, nim, path, err);
    if (!st) st = ms_volume_alloc(out, hv.dim[1], hv.dim[2], hv.dim[3], ch, dt, path, err);
    if (st) {
        nifti_image_free(nim);
        goto done;
    }
    memcpy(out->data, buf + voff, nbytes);
    if (hv.swapped) swap_elems(out->data, (size_t)nvals, es);
    nim_affine(nim, out->affine);
    int finite = 1;
    for (int r = 0; r < 3; r++)
        for (int c = 0; c < 4; c++) finite &= isfinite(out->affine[r][c]) != 0;
    if (!finite) {
        nifti_image_free(nim);
        medseg_volume_free(out);
        st = ms_error(err, MEDSEG_ERR_FORMAT, "%s: NIfTI orientation matrix is not finite", path);
        goto done;
    }
    ms_volume_spacing_from_affine(out);
    double slope = nim->scl_slope, inter = nim->scl_inter;
    if (slope == 0 || !isfinite(slope)) {
        out->scl_slope = 1;
        out->scl_inter = 0;
    } else {
        out->scl_slope = slope;
        out->scl_inter = isfinite(inter) ? inter : 0;
    }
    out->source_space = MEDSEG_SPACE_RAS;
    snprintf(out->format, sizeof out->format, "nifti%d", hv.version);
    snprintf(out->compression, sizeof out->compression, "%s", gz ? "gzip" : "");
    snprintf(out->description, sizeof out->description, "%.79s", nim->descrip);
    nifti_priv *np = calloc(1, sizeof *np);
    if (!np) {
        nifti_image_free(nim);
        medseg_volume_free(out);
        st = ms_error(err, MEDSEG_ERR_NOMEM, "%s: out of memory", path);
        goto done;
    }
    np->h.kind = MS_PRIV_NIFTI;
    np->h.free_fn = nifti_priv_free;
    np->h.clone_fn = nifti_priv_clone;
    np->nim = nim;
    out->priv = &np->h;
done:
    if (buf != raw) free(buf);
    free(raw);
    return st;
}

/* ---------------------------------------------------------------- writer */

medseg_status ms_nifti_write(const char *path, const medseg_volume *v, medseg_error *err)
{
    return ms_nifti_write_ex(path, v, 0, 0, err);
}

medseg_status ms_nifti_write_ex(const char *path, const medseg_volume *v, int drop_ext, int labelmap,
                                medseg_error *err)
{
    quiet_nifticlib();
    if (!path || !v || !v->data) return ms_error(err, MEDSEG_ERR_ARG, "ms_nifti_write: no path or no volume");
    int gz = ms_path_has_suffix(path, ".nii.gz");
    if (!gz && !ms_path_has_suffix(path, ".nii"))
        return ms_error(err, MEDSEG_ERR_ARG, "%s: a NIfTI file name ends in .nii or .nii.gz", path);
    int dt = nifti_from_dtype(v->dtype, v->channels);
    if (!dt)
        return ms_error(err, MEDSEG_ERR_UNSUPPORTED, "%s: %s x %d channels cannot be stored in NIfTI", path,
                        ms_voxel_type_name(v->dtype), v->channels);
    const ms_volume_priv *pv = (const ms_volume_priv *)v->priv;
    nifti_image *nim = NULL;
    int64_t dims[8] = {3, v->dim[0], v->dim[1], v->dim[2], 1, 1, 1, 1};
    if (pv && pv->kind == MS_PRIV_NIFTI) {
        /* the source header: qform/sform codes, quaternion, qfac and srows stay exactly as read,
           unless the volume's affine no longer is the header's (then both are set from it) */
        nim = nifti_copy_nim_info(((const nifti_priv *)pv)->nim);
        if (!nim) return ms_error(err, MEDSEG_ERR_NOMEM, "%s: out of memory", path);
        nim->data = NULL;
        if (drop_ext) nifti_free_extensions(nim);
        double a[3][4], d = 0;
        nim_affine(nim, a);
        for (int r = 0; r < 3; r++)
            for (int c = 0; c < 4; c++) d = fmax(d, fabs(a[r][c] - v->affine[r][c]) / fmax(1.0, fabs(a[r][c])));
        if (!(d <= 1e-9))
            set_xforms(nim, v, nim->sform_code > 0 ? nim->sform_code : NIFTI_XFORM_SCANNER_ANAT,
                       nim->qform_code > 0 ? nim->qform_code : NIFTI_XFORM_SCANNER_ANAT);
    } else {
        nim = nifti_make_new_nim(dims, dt, 0);
        if (!nim) return ms_error(err, MEDSEG_ERR_NOMEM, "%s: nifticlib could not create a header", path);
        nim->data = NULL;
        set_xforms(nim, v, NIFTI_XFORM_SCANNER_ANAT, NIFTI_XFORM_SCANNER_ANAT);
        nim->xyz_units = NIFTI_UNITS_MM;
        snprintf(nim->descrip, sizeof nim->descrip, "%.79s", v->description);
    }
    /* dims and type from the volume */
    nim->ndim = nim->dim[0] = 3;
    nim->nx = nim->dim[1] = v->dim[0];
    nim->ny = nim->dim[2] = v->dim[1];
    nim->nz = nim->dim[3] = v->dim[2];
    nim->nt = nim->nu = nim->nv = nim->nw = 1;
    for (int i = 4; i < 8; i++) nim->dim[i] = 1;
    nim->nvox = v->dim[0] * v->dim[1] * v->dim[2];
    nim->datatype = dt;
    nifti_datatype_sizes(dt, &nim->nbyper, &nim->swapsize);
    if (labelmap) {
        nim->scl_slope = 0;
        nim->scl_inter = 0;
        nim->cal_min = nim->cal_max = 0;
        nim->intent_code = NIFTI_INTENT_LABEL;
        nim->intent_p1 = nim->intent_p2 = nim->intent_p3 = 0;
        memset(nim->intent_name, 0, sizeof nim->intent_name);
        snprintf(nim->descrip, sizeof nim->descrip, "medseg label map");
    } else if (v->scl_slope == 1 && v->scl_inter == 0) {
        nim->scl_slope = 0;
        nim->scl_inter = 0;
    } else {
        nim->scl_slope = v->scl_slope;
        nim->scl_inter = v->scl_inter;
    }
    int v2 = nim->nifti_type == NIFTI_FTYPE_NIFTI2_1 || v->dim[0] > 32767 || v->dim[1] > 32767 || v->dim[2] > 32767;
    nim->nifti_type = v2 ? NIFTI_FTYPE_NIFTI2_1 : NIFTI_FTYPE_NIFTI1_1;
    size_t hsize = v2 ? 540 : 348;
    /* extensions: esize includes its 8-byte head and is a multiple of 16 */
    size_t ext_bytes = 0;
    for (int i = 0; i < nim->num_ext; i++)
        ext_bytes += ((size_t)(nim->ext_list[i].esize >= 8 ? nim->ext_list[i].esize : 8) + 15) & ~(size_t)15;
    size_t voff = hsize + 4 + ext_bytes;
    voff = (voff + 15) & ~(size_t)15;
    nim->iname_offset = (int64_t)voff;
    uint8_t hdr[540];
    memset(hdr, 0, sizeof hdr);
    int rc;
    if (v2) {
        nifti_2_header h2;
        rc = nifti_convert_nim2n2hdr(nim, &h2);
        h2.vox_offset = (int64_t)voff;
        memcpy(h2.magic, "n+2\0\r\n\032\n", 8); /* nifticlib 3.0 leaves the last 4 bytes zero */
        if (nim->qform_code <= 0) { /* nifticlib zeroes an unused qform: keep the source's */
            h2.quatern_b = nim->quatern_b, h2.quatern_c = nim->quatern_c, h2.quatern_d = nim->quatern_d;
            h2.qoffset_x = nim->qoffset_x, h2.qoffset_y = nim->qoffset_y, h2.qoffset_z = nim->qoffset_z;
            h2.pixdim[0] = nim->qfac < 0 ? -1 : 1;
        }
        memcpy(hdr, &h2, 540);
    } else {
        nifti_1_header h1;
        rc = nifti_convert_nim2n1hdr(nim, &h1);
        h1.vox_offset = (float)voff;
        if (nim->qform_code <= 0) {
            h1.quatern_b = (float)nim->quatern_b, h1.quatern_c = (float)nim->quatern_c, h1.quatern_d = (float)nim->quatern_d;
            h1.qoffset_x = (float)nim->qoffset_x, h1.qoffset_y = (float)nim->qoffset_y, h1.qoffset_z = (float)nim->qoffset_z;
            h1.pixdim[0] = nim->qfac < 0 ? -1.0f : 1.0f;
        }
        memcpy(hdr, &h1, 348);
    }
    if (rc != 0) {
        nifti_image_free(nim);
        return ms_error(err, MEDSEG_ERR_INTERNAL, "%s: nifticlib could not build the header", path);
    }
    ms_vol_out o;
    medseg_status st = ms_vol_out_open(&o, path, gz, err);
    if (st) {
        nifti_image_free(nim);
        return st;
    }
    ms_vol_out_write(&o, hdr, hsize);
    uint8_t extender[4] = {nim->num_ext > 0 ? 1 : 0, 0, 0, 0};
    ms_vol_out_write(&o, extender, 4);
    size_t written = hsize + 4;
    for (int i = 0; i < nim->num_ext; i++) {
        const nifti1_extension *e = &nim->ext_list[i];
        size_t total = ((size_t)(e->esize >= 8 ? e->esize : 8) + 15) & ~(size_t)15;
        int32_t head[2] = {(int32_t)total, e->ecode};
        ms_vol_out_write(&o, head, 8);
        size_t dlen = e->edata && e->esize > 8 ? (size_t)e->esize - 8 : 0;
        if (dlen) ms_vol_out_write(&o, e->edata, dlen);
        static const uint8_t zeros[16] = {0};
        size_t pad = total - 8 - dlen;
        while (pad) {
            size_t k = pad > 16 ? 16 : pad;
            ms_vol_out_write(&o, zeros, k);
            pad -= k;
        }
        written += total;
    }
    while (written < voff) {
        ms_vol_out_write(&o, "", 1);
        written++;
    }
    ms_vol_out_write(&o, v->data, ms_volume_count(v) * ms_voxel_type_size(v->dtype));
    nifti_image_free(nim);
    return ms_vol_out_commit(&o, err);
}
