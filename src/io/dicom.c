/* DICOM reader: Part 10 parser (hand-written, defensive), series grouping and sorting, geometry.
 * Pixel decoding is in dicom_codec.c. See dicom.h for the conventions.
 *
 * Parsing: the whole file is read (capped at MS_DICOM_MAX_FILE); the file meta group is explicit
 * VR LE; the dataset follows in its transfer syntax (implicit / explicit VR LE, deflated explicit
 * VR LE via zlib raw inflate; big endian is refused by name). Every element's length is checked
 * against the bytes left before use; sequences (defined or undefined length) are walked with a
 * depth cap, and the number of elements per file is capped. Only the tags listed in the brief are
 * interpreted; everything else is skipped.
 * ref: PS3.10 7.1 (file meta), PS3.5 7.1 (data element encoding), 7.5 (sequences), A.4
 * (encapsulated pixel data), PS3.3 C.7.6.16 (multi-frame functional groups). */
#include "io/dicom.h"
#include "io/volume.h"
#include "core/threadpool.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#define TAG(g, e) (((uint32_t)(g) << 16) | (uint32_t)(e))
#define UNDEF_LEN 0xffffffffu

/* ---------------------------------------------------------------- transfer syntaxes */

typedef struct {
    const char *uid;
    const char *name;
    ms_dcm_codec codec;
} ts_entry;

static const ts_entry k_ts[] = {
    {"1.2.840.10008.1.2", "Implicit VR Little Endian", MS_DCM_TS_IMPLICIT_LE},
    {"1.2.840.10008.1.2.1", "Explicit VR Little Endian", MS_DCM_TS_EXPLICIT_LE},
    {"1.2.840.10008.1.2.1.99", "Deflated Explicit VR Little Endian", MS_DCM_TS_DEFLATED_LE},
    {"1.2.840.10008.1.2.2", "Explicit VR Big Endian (retired)", MS_DCM_TS_EXPLICIT_BE},
    {"1.2.840.10008.1.2.4.50", "JPEG Baseline (Process 1)", MS_DCM_TS_JPEG_BASELINE},
    {"1.2.840.10008.1.2.4.51", "JPEG Extended (Process 2 & 4)", MS_DCM_TS_JPEG_EXTENDED},
    {"1.2.840.10008.1.2.4.57", "JPEG Lossless, Non-Hierarchical (Process 14)", MS_DCM_TS_JPEG_LOSSLESS},
    {"1.2.840.10008.1.2.4.70", "JPEG Lossless, Non-Hierarchical, First-Order Prediction (Process 14 [Selection Value 1])",
     MS_DCM_TS_JPEG_LOSSLESS},
    {"1.2.840.10008.1.2.4.80", "JPEG-LS Lossless Image Compression", MS_DCM_TS_JPEGLS},
    {"1.2.840.10008.1.2.4.81", "JPEG-LS Lossy (Near-Lossless) Image Compression", MS_DCM_TS_JPEGLS},
    {"1.2.840.10008.1.2.4.90", "JPEG 2000 Image Compression (Lossless Only)", MS_DCM_TS_J2K},
    {"1.2.840.10008.1.2.4.91", "JPEG 2000 Image Compression", MS_DCM_TS_J2K},
    {"1.2.840.10008.1.2.4.92", "JPEG 2000 Part 2 Multi-component Image Compression (Lossless Only)", MS_DCM_TS_OTHER},
    {"1.2.840.10008.1.2.4.93", "JPEG 2000 Part 2 Multi-component Image Compression", MS_DCM_TS_OTHER},
    {"1.2.840.10008.1.2.4.201", "High-Throughput JPEG 2000 Image Compression (Lossless Only)", MS_DCM_TS_J2K},
    {"1.2.840.10008.1.2.4.202", "High-Throughput JPEG 2000 with RPCL Options Image Compression (Lossless Only)", MS_DCM_TS_J2K},
    {"1.2.840.10008.1.2.4.203", "High-Throughput JPEG 2000 Image Compression", MS_DCM_TS_J2K},
    {"1.2.840.10008.1.2.4.100", "MPEG2 Main Profile / Main Level", MS_DCM_TS_OTHER},
    {"1.2.840.10008.1.2.4.101", "MPEG2 Main Profile / High Level", MS_DCM_TS_OTHER},
    {"1.2.840.10008.1.2.4.102", "MPEG-4 AVC/H.264 High Profile / Level 4.1", MS_DCM_TS_OTHER},
    {"1.2.840.10008.1.2.4.103", "MPEG-4 AVC/H.264 BD-compatible High Profile / Level 4.1", MS_DCM_TS_OTHER},
    {"1.2.840.10008.1.2.4.104", "MPEG-4 AVC/H.264 High Profile / Level 4.2 For 2D Video", MS_DCM_TS_OTHER},
    {"1.2.840.10008.1.2.4.105", "MPEG-4 AVC/H.264 High Profile / Level 4.2 For 3D Video", MS_DCM_TS_OTHER},
    {"1.2.840.10008.1.2.4.106", "MPEG-4 AVC/H.264 Stereo High Profile / Level 4.2", MS_DCM_TS_OTHER},
    {"1.2.840.10008.1.2.4.107", "HEVC/H.265 Main Profile / Level 5.1", MS_DCM_TS_OTHER},
    {"1.2.840.10008.1.2.4.108", "HEVC/H.265 Main 10 Profile / Level 5.1", MS_DCM_TS_OTHER},
    {"1.2.840.10008.1.2.5", "RLE Lossless", MS_DCM_TS_RLE},
};

static const ts_entry *ts_find(const char *uid)
{
    for (size_t i = 0; i < sizeof k_ts / sizeof k_ts[0]; i++)
        if (!strcmp(k_ts[i].uid, uid)) return &k_ts[i];
    return NULL;
}

const char *ms_dicom_ts_name(const char *uid)
{
    if (!uid || !*uid) return k_ts[0].name;
    const ts_entry *t = ts_find(uid);
    return t ? t->name : NULL;
}

/* ---------------------------------------------------------------- parsed header */

typedef struct {
    int has_ipp, has_iop, has_ps, has_rescale;
    double ipp[3], iop[6], ps[2];
    double slope, inter;
    double thickness, between; /* 0 when absent */
} dcm_geom;

typedef struct {
    char ts_uid[72];
    ms_dcm_codec codec;
    char sop_class[72], series_uid[72], description[128], modality[16];
    int series_number, instance_number;
    ms_dcm_pixel px;
    int64_t nframes;
    dcm_geom top, shared;
    dcm_geom *perframe; /* nframes entries when the file has a per-frame functional groups sequence */
    int64_t n_perframe;
    int has_padding;
    double padding;
    int n_wc, n_ww;
    double wc[4], ww[4];
    int seen_rows, seen_cols, seen_ba;
    /* PixelData (offsets into the dataset buffer) */
    int has_pixels, encapsulated;
    size_t pix_off, pix_len;
    size_t *frag_off, *frag_len; /* encapsulated fragments (value offsets into the buffer) */
    size_t *frag_item;           /* offset of each fragment's item tag, relative to the first one */
    int64_t nfrag, frag_cap;
    uint32_t *bot;
    int64_t nbot;
    uint8_t *inflated; /* owned dataset buffer for deflated transfer syntax */
} dcm_file;

static void dcm_file_free(dcm_file *f)
{
    free(f->perframe);
    free(f->frag_off);
    free(f->frag_len);
    free(f->frag_item);
    free(f->bot);
    free(f->inflated);
    memset(f, 0, sizeof *f);
}

/* ---------------------------------------------------------------- parser context */

typedef struct {
    const uint8_t *p; /* dataset buffer */
    size_t n;
    int explicit_vr;
    const char *name;
    medseg_error *err;
    long elements;
    dcm_file *f;
    int stop_at_pixels; /* header pass: stop at the top-level PixelData */
    int stopped;
} pctx;

typedef struct {
    uint32_t seq;   /* the sequence tag enclosing this level */
    int64_t item;   /* item index in it */
} path_ent;

static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static uint32_t rd32(const uint8_t *p) { return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24); }

static int vr_long(const char vr[2])
{
    static const char *k[] = {"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"};
    for (size_t i = 0; i < sizeof k / sizeof k[0]; i++)
        if (vr[0] == k[i][0] && vr[1] == k[i][1]) return 1;
    return 0;
}

/* Reads one element header at *pos (< end). Items and delimiters (group FFFE) never carry a VR. */
static medseg_status read_elem(pctx *c, size_t *pos, size_t end, int explicit_vr, uint32_t *tag, char vr[2], uint32_t *len)
{
    size_t p = *pos;
    if (++c->elements > MS_DICOM_MAX_ELEMENTS)
        return ms_error(c->err, MEDSEG_ERR_FORMAT, "%s: more than %d data elements", c->name, MS_DICOM_MAX_ELEMENTS);
    if (end - p < 8) return ms_error(c->err, MEDSEG_ERR_FORMAT, "%s: truncated data element header at offset %zu", c->name, p);
    uint16_t g = rd16(c->p + p), e = rd16(c->p + p + 2);
    *tag = TAG(g, e);
    vr[0] = vr[1] = 0;
    if (g == 0xfffe || !explicit_vr) {
        *len = rd32(c->p + p + 4);
        *pos = p + 8;
        return MEDSEG_OK;
    }
    vr[0] = (char)c->p[p + 4];
    vr[1] = (char)c->p[p + 5];
    if (vr_long(vr)) {
        if (end - p < 12) return ms_error(c->err, MEDSEG_ERR_FORMAT, "%s: truncated data element header at offset %zu", c->name, p);
        *len = rd32(c->p + p + 8);
        *pos = p + 12;
    } else {
        if (!(vr[0] >= 'A' && vr[0] <= 'Z' && vr[1] >= 'A' && vr[1] <= 'Z'))
            return ms_error(c->err, MEDSEG_ERR_FORMAT, "%s: invalid VR at offset %zu (tag %04x,%04x)", c->name, p + 4, g, e);
        *len = rd16(c->p + p + 6);
        *pos = p + 8;
    }
    return MEDSEG_OK;
}

/* Copies a string value, trimming trailing spaces/NULs and leading spaces. */
static void get_str(char *dst, size_t cap, const uint8_t *v, uint32_t len)
{
    size_t b = 0, e = len;
    while (b < e && v[b] == ' ') b++;
    while (e > b && (v[e - 1] == ' ' || v[e - 1] == 0)) e--;
    size_t k = e - b;
    if (k >= cap) k = cap - 1;
    for (size_t i = 0; i < k; i++) {
        uint8_t ch = v[b + i];
        dst[i] = (ch >= 32 && ch < 127) ? (char)ch : '?';
    }
    dst[k] = 0;
}

/* Up to maxn backslash-separated numbers (DS/IS) -> out; returns how many parsed. */
static int get_nums(double *out, int maxn, const uint8_t *v, uint32_t len)
{
    char buf[512];
    size_t k = len < sizeof buf - 1 ? len : sizeof buf - 1;
    memcpy(buf, v, k);
    buf[k] = 0;
    for (size_t i = 0; i < k; i++)
        if (buf[i] == 0) buf[i] = ' ';
    int n = 0;
    char *s = buf;
    while (n < maxn) {
        char *bs = strchr(s, '\\');
        if (bs) *bs = 0;
        char *endp;
        double d = strtod(s, &endp);
        while (*endp == ' ') endp++;
        if (endp == s || *endp || !isfinite(d)) break;
        out[n++] = d;
        if (!bs) break;
        s = bs + 1;
    }
    return n;
}

static int get_int(const uint8_t *v, uint32_t len, int *out)
{
    double d;
    if (get_nums(&d, 1, v, len) != 1 || d < -2147483648.0 || d > 2147483647.0) return 0;
    *out = (int)d;
    return 1;
}

static int get_us(const uint8_t *v, uint32_t len, int *out)
{
    if (len < 2) return 0;
    *out = rd16(v);
    return 1;
}

/* Functional-group geometry values (depth >= 2 inside shared / per-frame items). */
static void geom_element(dcm_geom *g, uint32_t sub, uint32_t tag, const uint8_t *v, uint32_t len)
{
    if (sub == TAG(0x0020, 0x9113) && tag == TAG(0x0020, 0x0032)) g->has_ipp = get_nums(g->ipp, 3, v, len) == 3;
    else if (sub == TAG(0x0020, 0x9116) && tag == TAG(0x0020, 0x0037)) g->has_iop = get_nums(g->iop, 6, v, len) == 6;
    else if (sub == TAG(0x0028, 0x9110)) {
        if (tag == TAG(0x0028, 0x0030)) g->has_ps = get_nums(g->ps, 2, v, len) == 2;
        else if (tag == TAG(0x0018, 0x0050)) get_nums(&g->thickness, 1, v, len);
        else if (tag == TAG(0x0018, 0x0088)) get_nums(&g->between, 1, v, len);
    } else if (sub == TAG(0x0028, 0x9145)) {
        if (tag == TAG(0x0028, 0x1053)) { if (get_nums(&g->slope, 1, v, len) == 1) g->has_rescale |= 1; }
        else if (tag == TAG(0x0028, 0x1052)) { if (get_nums(&g->inter, 1, v, len) == 1) g->has_rescale |= 2; }
    }
}

/* A value element (not a sequence) found at the given path. */
static medseg_status on_value(pctx *c, const path_ent *path, int depth, uint32_t tag, const uint8_t *v, uint32_t len)
{
    dcm_file *f = c->f;
    if (depth == 2) {
        uint32_t fg = path[0].seq, sub = path[1].seq;
        if (fg == TAG(0x5200, 0x9229)) geom_element(&f->shared, sub, tag, v, len);
        else if (fg == TAG(0x5200, 0x9230) && f->perframe && path[0].item < f->n_perframe)
            geom_element(&f->perframe[path[0].item], sub, tag, v, len);
        return MEDSEG_OK;
    }
    if (depth != 0) return MEDSEG_OK;
    dcm_geom *g = &f->top;
    double d;
    switch (tag) {
    case TAG(0x0008, 0x0016): get_str(f->sop_class, sizeof f->sop_class, v, len); break;
    case TAG(0x0008, 0x0060): get_str(f->modality, sizeof f->modality, v, len); break;
    case TAG(0x0008, 0x103e): get_str(f->description, sizeof f->description, v, len); break;
    case TAG(0x0020, 0x000e): get_str(f->series_uid, sizeof f->series_uid, v, len); break;
    case TAG(0x0020, 0x0011): get_int(v, len, &f->series_number); break;
    case TAG(0x0020, 0x0013): get_int(v, len, &f->instance_number); break;
    case TAG(0x0020, 0x0032): g->has_ipp = get_nums(g->ipp, 3, v, len) == 3; break;
    case TAG(0x0020, 0x0037): g->has_iop = get_nums(g->iop, 6, v, len) == 6; break;
    case TAG(0x0028, 0x0030): g->has_ps = get_nums(g->ps, 2, v, len) == 2; break;
    case TAG(0x0018, 0x0050): get_nums(&g->thickness, 1, v, len); break;
    case TAG(0x0018, 0x0088): get_nums(&g->between, 1, v, len); break;
    case TAG(0x0028, 0x0010): f->seen_rows = get_us(v, len, &f->px.rows); break;
    case TAG(0x0028, 0x0011): f->seen_cols = get_us(v, len, &f->px.cols); break;
    case TAG(0x0028, 0x0002): get_us(v, len, &f->px.spp); break;
    case TAG(0x0028, 0x0004): get_str(f->px.photometric, sizeof f->px.photometric, v, len); break;
    case TAG(0x0028, 0x0006): get_us(v, len, &f->px.planar); break;
    case TAG(0x0028, 0x0100): f->seen_ba = get_us(v, len, &f->px.bits_alloc); break;
    case TAG(0x0028, 0x0101): get_us(v, len, &f->px.bits_stored); break;
    case TAG(0x0028, 0x0102): get_us(v, len, &f->px.high_bit); break;
    case TAG(0x0028, 0x0103): get_us(v, len, &f->px.pixel_rep); break;
    case TAG(0x0028, 0x1053): if (get_nums(&g->slope, 1, v, len) == 1) g->has_rescale |= 1; break;
    case TAG(0x0028, 0x1052): if (get_nums(&g->inter, 1, v, len) == 1) g->has_rescale |= 2; break;
    case TAG(0x0028, 0x0008):
        if (get_nums(&d, 1, v, len) == 1) {
            if (d < 1 || d > MS_DICOM_MAX_FRAMES || d != floor(d))
                return ms_error(c->err, MEDSEG_ERR_FORMAT, "%s: NumberOfFrames %g out of range (1..%d)", c->name, d, MS_DICOM_MAX_FRAMES);
            f->nframes = (int64_t)d;
        }
        break;
    case TAG(0x0028, 0x0120):
        if (len >= 2) {
            f->has_padding = 1;
            f->padding = f->px.pixel_rep ? (double)(int16_t)rd16(v) : (double)rd16(v);
        }
        break;
    case TAG(0x0028, 0x1050): f->n_wc = get_nums(f->wc, 4, v, len); break;
    case TAG(0x0028, 0x1051): f->n_ww = get_nums(f->ww, 4, v, len); break;
    default: break;
    }
    return MEDSEG_OK;
}

static medseg_status walk_dataset(pctx *c, size_t *pos, size_t end, int explicit_vr, int depth, path_ent *path, int undef_item);

/* Walks the items of a sequence whose value starts at *pos; len = its length or UNDEF_LEN. */
static medseg_status walk_sequence(pctx *c, size_t *pos, size_t end, uint32_t len, int explicit_vr, int depth, path_ent *path,
                                   uint32_t seqtag)
{
    if (depth >= MS_DICOM_MAX_DEPTH)
        return ms_error(c->err, MEDSEG_ERR_FORMAT, "%s: sequences nested deeper than %d", c->name, MS_DICOM_MAX_DEPTH);
    size_t send = end;
    if (len != UNDEF_LEN) {
        if (len > end - *pos) return ms_error(c->err, MEDSEG_ERR_FORMAT, "%s: sequence (%04x,%04x) longer than the data left", c->name, seqtag >> 16, seqtag & 0xffff);
        send = *pos + len;
    }
    int is_perframe = depth == 0 && seqtag == TAG(0x5200, 0x9230);
    if (is_perframe && !c->f->perframe) {
        int64_t nf = c->f->nframes > 0 ? c->f->nframes : 1;
        c->f->perframe = (dcm_geom *)ms_calloc((size_t)nf, sizeof(dcm_geom), c->err, "per-frame groups");
        if (!c->f->perframe) return MEDSEG_ERR_NOMEM;
        c->f->n_perframe = nf;
    }
    int64_t item = 0;
    int delimited = 0;
    path[depth].seq = seqtag;
    while (*pos < send) {
        uint32_t tag = 0, ilen = 0;
        char vr[2] = {0, 0};
        medseg_status st = read_elem(c, pos, send, explicit_vr, &tag, vr, &ilen);
        if (st) return st;
        if (tag == TAG(0xfffe, 0xe0dd)) {
            if (len != UNDEF_LEN) return ms_error(c->err, MEDSEG_ERR_FORMAT, "%s: sequence delimiter inside a defined-length sequence", c->name);
            delimited = 1;
            break;
        }
        if (tag != TAG(0xfffe, 0xe000))
            return ms_error(c->err, MEDSEG_ERR_FORMAT, "%s: expected an item in sequence (%04x,%04x), found (%04x,%04x)", c->name,
                            seqtag >> 16, seqtag & 0xffff, tag >> 16, tag & 0xffff);
        path[depth].item = item++;
        if (ilen == UNDEF_LEN) {
            st = walk_dataset(c, pos, send, explicit_vr, depth + 1, path, 1);
        } else {
            if (ilen > send - *pos) return ms_error(c->err, MEDSEG_ERR_FORMAT, "%s: item longer than its sequence", c->name);
            st = walk_dataset(c, pos, *pos + ilen, explicit_vr, depth + 1, path, 0);
        }
        if (st) return st;
    }
    if (len == UNDEF_LEN && !delimited) return ms_error(c->err, MEDSEG_ERR_FORMAT, "%s: sequence (%04x,%04x) without its delimiter (truncated)", c->name, seqtag >> 16, seqtag & 0xffff);
    if (is_perframe && item != c->f->n_perframe)
        return ms_error(c->err, MEDSEG_ERR_FORMAT, "%s: %lld per-frame functional group items for %lld frames", c->name, (long long)item,
                        (long long)c->f->n_perframe);
    return MEDSEG_OK;
}

/* Encapsulated PixelData: basic offset table item, then fragment items, then the delimiter. */
static medseg_status walk_encapsulated(pctx *c, size_t *pos, size_t end, int keep)
{
    dcm_file *f = c->f;
    int first = 1;
    size_t first_item = 0;
    while (*pos < end) {
        size_t at = *pos;
        uint32_t tag = 0, len = 0;
        char vr[2] = {0, 0};
        medseg_status st = read_elem(c, pos, end, 0, &tag, vr, &len);
        if (st) return st;
        if (tag == TAG(0xfffe, 0xe0dd)) return MEDSEG_OK;
        if (tag != TAG(0xfffe, 0xe000) || len == UNDEF_LEN)
            return ms_error(c->err, MEDSEG_ERR_FORMAT, "%s: bad item (%04x,%04x) in encapsulated pixel data", c->name, tag >> 16, tag & 0xffff);
        if (len > end - *pos) return ms_error(c->err, MEDSEG_ERR_FORMAT, "%s: pixel data fragment longer than the file (truncated)", c->name);
        if (keep) {
            if (first) {
                if (len % 4) return ms_error(c->err, MEDSEG_ERR_FORMAT, "%s: basic offset table length %u is not a multiple of 4", c->name, len);
                if (len) {
                    f->bot = (uint32_t *)ms_malloc(len, c->err, "offset table");
                    if (!f->bot) return MEDSEG_ERR_NOMEM;
                    f->nbot = len / 4;
                    for (int64_t i = 0; i < f->nbot; i++) f->bot[i] = rd32(c->p + *pos + 4 * (size_t)i);
                }
            } else {
                if (f->nfrag >= MS_DICOM_MAX_FRAGMENTS)
                    return ms_error(c->err, MEDSEG_ERR_FORMAT, "%s: more than %d pixel data fragments", c->name, MS_DICOM_MAX_FRAGMENTS);
                if (f->nfrag == f->frag_cap) {
                    int64_t nc = f->frag_cap ? 2 * f->frag_cap : 64;
                    size_t *a = (size_t *)realloc(f->frag_off, (size_t)nc * sizeof(size_t));
                    if (a) f->frag_off = a;
                    size_t *b = (size_t *)realloc(f->frag_len, (size_t)nc * sizeof(size_t));
                    if (b) f->frag_len = b;
                    size_t *d = (size_t *)realloc(f->frag_item, (size_t)nc * sizeof(size_t));
                    if (d) f->frag_item = d;
                    if (!a || !b || !d) return ms_error(c->err, MEDSEG_ERR_NOMEM, "%s: out of memory (fragments)", c->name);
                    f->frag_cap = nc;
                }
                if (f->nfrag == 0) first_item = at;
                f->frag_off[f->nfrag] = *pos;
                f->frag_len[f->nfrag] = len;
                f->frag_item[f->nfrag] = at - first_item;
                f->nfrag++;
            }
        }
        first = 0;
        *pos += len;
    }
    return ms_error(c->err, MEDSEG_ERR_FORMAT, "%s: encapsulated pixel data without its sequence delimiter (truncated)", c->name);
}

/* Known sequence tags among those read (needed in implicit VR, where no VR says SQ). */
static int known_sq(uint32_t tag)
{
    return tag == TAG(0x5200, 0x9229) || tag == TAG(0x5200, 0x9230) || tag == TAG(0x0020, 0x9113) ||
           tag == TAG(0x0020, 0x9116) || tag == TAG(0x0028, 0x9110) || tag == TAG(0x0028, 0x9145);
}

static medseg_status walk_dataset(pctx *c, size_t *pos, size_t end, int explicit_vr, int depth, path_ent *path, int undef_item)
{
    while (*pos < end) {
        uint32_t tag = 0, len = 0;
        char vr[2] = {0, 0};
        medseg_status st;
        size_t at = *pos;
        /* Dataset trailing padding or stray bytes shorter than a header at the very end. */
        if (depth == 0 && end - at < 8 && !undef_item) {
            *pos = end;
            break;
        }
        st = read_elem(c, pos, end, explicit_vr, &tag, vr, &len);
        if (st) return st;
        if (tag == TAG(0xfffe, 0xe00d)) {
            if (!undef_item) return ms_error(c->err, MEDSEG_ERR_FORMAT, "%s: unexpected item delimiter at offset %zu", c->name, at);
            return MEDSEG_OK;
        }
        if ((tag >> 16) == 0xfffe)
            return ms_error(c->err, MEDSEG_ERR_FORMAT, "%s: unexpected item tag (fffe,%04x) at offset %zu", c->name, tag & 0xffff, at);
        if (tag == TAG(0x7fe0, 0x0010) && depth == 0) {
            if (c->f->has_pixels) return ms_error(c->err, MEDSEG_ERR_FORMAT, "%s: PixelData appears twice", c->name);
            c->f->has_pixels = 1;
            if (c->stop_at_pixels) {
                c->stopped = 1;
                c->f->encapsulated = len == UNDEF_LEN;
                c->f->pix_len = len == UNDEF_LEN ? 0 : (len <= end - *pos ? len : end - *pos);
                return MEDSEG_OK;
            }
        }
        int is_sq = (vr[0] == 'S' && vr[1] == 'Q') || (!explicit_vr && known_sq(tag));
        if (len == UNDEF_LEN) {
            if (tag == TAG(0x7fe0, 0x0010)) {
                int top = depth == 0;
                if (top) c->f->encapsulated = 1;
                st = walk_encapsulated(c, pos, end, top);
                if (st) return st;
                continue;
            }
            /* SQ, or UN / implicit VR of undefined length: a sequence (UN content is implicit VR LE). */
            int inner_explicit = (vr[0] == 'U' && vr[1] == 'N') ? 0 : explicit_vr;
            st = walk_sequence(c, pos, end, len, inner_explicit, depth, path, tag);
            if (st) return st;
            continue;
        }
        if (len > end - *pos)
            return ms_error(c->err, MEDSEG_ERR_FORMAT, "%s: element (%04x,%04x) of %u bytes at offset %zu runs past the end (truncated)",
                            c->name, tag >> 16, tag & 0xffff, len, at);
        if (is_sq) {
            size_t vend = *pos + len;
            st = walk_sequence(c, pos, vend, len, explicit_vr, depth, path, tag);
            if (st) return st;
            *pos = vend;
            continue;
        }
        if (tag == TAG(0x7fe0, 0x0010) && depth == 0) {
            c->f->pix_off = *pos;
            c->f->pix_len = len;
        } else {
            st = on_value(c, path, depth, tag, c->p + *pos, len);
            if (st) return st;
        }
        *pos += len;
    }
    if (undef_item) return ms_error(c->err, MEDSEG_ERR_FORMAT, "%s: item without its delimiter (truncated)", c->name);
    return MEDSEG_OK;
}

/* ---------------------------------------------------------------- file level */

int ms_dicom_sniff(const uint8_t *buf, size_t n)
{
    if (n >= 132 && !memcmp(buf + 128, "DICM", 4)) return 1;
    if (n < 8) return 0;
    uint16_t g = rd16(buf), e = rd16(buf + 2);
    uint32_t len = rd32(buf + 4);
    /* Implicit VR LE group 0008 element: small element number, a 4-byte length that fits. */
    return g == 0x0008 && e < 0x1000 && len <= 1024 && len <= n - 8 && (len % 2 == 0);
}

static medseg_status inflate_raw(const uint8_t *in, size_t n, const char *name, uint8_t **out, size_t *out_n, medseg_error *err)
{
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    if (inflateInit2(&zs, -15) != Z_OK) return ms_error(err, MEDSEG_ERR_INTERNAL, "%s: zlib init failed", name);
    size_t cap = n * 4 + 4096, used = 0;
    if (cap > MS_DICOM_MAX_FILE) cap = MS_DICOM_MAX_FILE;
    uint8_t *buf = (uint8_t *)malloc(cap);
    if (!buf) { inflateEnd(&zs); return ms_error(err, MEDSEG_ERR_NOMEM, "%s: out of memory (inflate)", name); }
    zs.next_in = (Bytef *)in;
    size_t in_left = n;
    int zr = Z_OK;
    for (;;) {
        if (used == cap) {
            if (cap >= MS_DICOM_MAX_FILE) { zr = Z_MEM_ERROR; break; }
            size_t nc = cap * 2 > MS_DICOM_MAX_FILE ? MS_DICOM_MAX_FILE : cap * 2;
            uint8_t *nb = (uint8_t *)realloc(buf, nc);
            if (!nb) { zr = Z_MEM_ERROR; break; }
            buf = nb;
            cap = nc;
        }
        uInt chunk_in = in_left > 0x40000000u ? 0x40000000u : (uInt)in_left;
        zs.avail_in = chunk_in;
        size_t room = cap - used;
        zs.next_out = buf + used;
        zs.avail_out = room > 0x40000000u ? 0x40000000u : (uInt)room;
        uInt before_out = zs.avail_out;
        zr = inflate(&zs, Z_NO_FLUSH);
        in_left -= chunk_in - zs.avail_in;
        used += before_out - zs.avail_out;
        if (zr == Z_STREAM_END) break;
        if (zr != Z_OK && zr != Z_BUF_ERROR) break;
        if (zr == Z_BUF_ERROR && in_left == 0 && zs.avail_out > 0) { zr = Z_DATA_ERROR; break; }
    }
    inflateEnd(&zs);
    if (zr != Z_STREAM_END) {
        free(buf);
        if (zr == Z_MEM_ERROR) return ms_error(err, MEDSEG_ERR_NOMEM, "%s: deflated dataset exceeds %zu bytes", name, MS_DICOM_MAX_FILE);
        return ms_error(err, MEDSEG_ERR_FORMAT, "%s: corrupt or truncated deflated dataset", name);
    }
    *out = buf;
    *out_n = used;
    return MEDSEG_OK;
}

/* Parses a whole file held in memory. On success f->px etc. are filled; with headers_only the walk
 * stops at the top-level PixelData (its offsets are then not valid). The dataset buffer used for
 * pixel offsets is *ds / *ds_n (data itself, or f->inflated). */
static medseg_status dcm_parse_inner(const uint8_t *data, size_t n, const char *name, int headers_only, dcm_file *f,
                                     const uint8_t **ds, size_t *ds_n, medseg_error *err)
{
    f->series_number = -1;
    f->instance_number = 0;
    f->nframes = 0;
    f->px.spp = 1;
    f->top.slope = 1;
    f->shared.slope = 1;
    size_t pos;
    pctx c = {data, n, 1, name, err, 0, f, headers_only, 0};
    if (n >= 132 && !memcmp(data + 128, "DICM", 4)) {
        pos = 132;
        /* File meta information: explicit VR LE, group 0002. */
        while (pos + 8 <= n && rd16(data + pos) == 0x0002) {
            uint32_t tag = 0, len = 0;
            char vr[2] = {0, 0};
            size_t at = pos;
            medseg_status st = read_elem(&c, &pos, n, 1, &tag, vr, &len);
            if (st) return st;
            if (len == UNDEF_LEN || len > n - pos)
                return ms_error(err, MEDSEG_ERR_FORMAT, "%s: file meta element (0002,%04x) at offset %zu runs past the end", name, tag & 0xffff, at);
            if (tag == TAG(0x0002, 0x0010)) get_str(f->ts_uid, sizeof f->ts_uid, data + pos, len);
            pos += len;
        }
        if (!f->ts_uid[0]) strcpy(f->ts_uid, "1.2.840.10008.1.2");
    } else if (ms_dicom_sniff(data, n)) {
        pos = 0;
        strcpy(f->ts_uid, "1.2.840.10008.1.2");
    } else {
        return ms_error(err, MEDSEG_ERR_FORMAT, "%s: not a DICOM file (no \"DICM\" at offset 128)", name);
    }
    const ts_entry *ts = ts_find(f->ts_uid);
    if (!ts) return ms_error(err, MEDSEG_ERR_UNSUPPORTED, "%s: unknown transfer syntax %s", name, f->ts_uid);
    f->codec = ts->codec;
    if (ts->codec == MS_DCM_TS_EXPLICIT_BE)
        return ms_error(err, MEDSEG_ERR_UNSUPPORTED, "%s: transfer syntax %s (%s) is not supported", name, ts->uid, ts->name);
    c.explicit_vr = ts->codec != MS_DCM_TS_IMPLICIT_LE;
    *ds = data;
    *ds_n = n;
    if (ts->codec == MS_DCM_TS_DEFLATED_LE) {
        size_t outn = 0;
        medseg_status st = inflate_raw(data + pos, n - pos, name, &f->inflated, &outn, err);
        if (st) return st;
        *ds = f->inflated;
        *ds_n = outn;
        c.p = f->inflated;
        c.n = outn;
        pos = 0;
    }
    path_ent path[MS_DICOM_MAX_DEPTH + 1];
    memset(path, 0, sizeof path);
    medseg_status st = walk_dataset(&c, &pos, c.n, c.explicit_vr, 0, path, 0);
    if (st) return st;

    /* Validate the pixel module. */
    ms_dcm_pixel *px = &f->px;
    if (!f->has_pixels) return ms_error(err, MEDSEG_ERR_FORMAT, "%s: no PixelData (not an image: SOP class %s)", name, f->sop_class[0] ? f->sop_class : "?");
    if (!f->seen_rows || !f->seen_cols || px->rows < 1 || px->cols < 1)
        return ms_error(err, MEDSEG_ERR_FORMAT, "%s: Rows/Columns missing or zero", name);
    if (!f->seen_ba) return ms_error(err, MEDSEG_ERR_FORMAT, "%s: BitsAllocated missing", name);
    if (px->bits_alloc != 1 && px->bits_alloc != 8 && px->bits_alloc != 16 && px->bits_alloc != 32)
        return ms_error(err, MEDSEG_ERR_UNSUPPORTED, "%s: BitsAllocated %d", name, px->bits_alloc);
    if (px->bits_stored == 0) px->bits_stored = px->bits_alloc;
    if (px->high_bit == 0 && px->bits_stored > 1) px->high_bit = px->bits_stored - 1;
    if (px->bits_stored > px->bits_alloc || px->high_bit >= px->bits_alloc)
        return ms_error(err, MEDSEG_ERR_FORMAT, "%s: BitsStored %d / HighBit %d do not fit BitsAllocated %d", name, px->bits_stored,
                        px->high_bit, px->bits_alloc);
    if (px->pixel_rep != 0 && px->pixel_rep != 1) return ms_error(err, MEDSEG_ERR_FORMAT, "%s: PixelRepresentation %d", name, px->pixel_rep);
    if (px->spp != 1 && px->spp != 3) return ms_error(err, MEDSEG_ERR_UNSUPPORTED, "%s: SamplesPerPixel %d", name, px->spp);
    if (px->spp == 3 && px->bits_alloc == 1) return ms_error(err, MEDSEG_ERR_UNSUPPORTED, "%s: 1-bit colour data", name);
    if (!px->photometric[0]) strcpy(px->photometric, px->spp == 3 ? "RGB" : "MONOCHROME2");
    if (f->nframes == 0) f->nframes = 1;
    if (f->perframe && f->n_perframe != f->nframes)
        return ms_error(err, MEDSEG_ERR_FORMAT, "%s: per-frame functional groups (%lld) do not match NumberOfFrames (%lld)", name,
                        (long long)f->n_perframe, (long long)f->nframes);
    px->codec = f->codec;
    px->ts_uid = NULL; /* set by the caller, which owns f for the decode */
    if (!headers_only) {
        if (f->encapsulated && f->nfrag == 0) return ms_error(err, MEDSEG_ERR_FORMAT, "%s: encapsulated pixel data without fragments", name);
        if (!f->encapsulated && f->codec != MS_DCM_TS_IMPLICIT_LE && f->codec != MS_DCM_TS_EXPLICIT_LE && f->codec != MS_DCM_TS_DEFLATED_LE)
            return ms_error(err, MEDSEG_ERR_FORMAT, "%s: transfer syntax %s needs encapsulated pixel data", name, f->ts_uid);
    }
    if (f->encapsulated && (f->codec == MS_DCM_TS_IMPLICIT_LE || f->codec == MS_DCM_TS_EXPLICIT_LE || f->codec == MS_DCM_TS_DEFLATED_LE))
        return ms_error(err, MEDSEG_ERR_FORMAT, "%s: encapsulated pixel data in an uncompressed transfer syntax", name);
    return MEDSEG_OK;
}

static medseg_status dcm_parse(const uint8_t *data, size_t n, const char *name, int headers_only, dcm_file *f,
                               const uint8_t **ds, size_t *ds_n, medseg_error *err)
{
    memset(f, 0, sizeof *f);
    medseg_status st = dcm_parse_inner(data, n, name, headers_only, f, ds, ds_n, err);
    if (st) dcm_file_free(f); /* nothing half-parsed survives an error */
    return st;
}

/* Geometry of frame fr: per-frame group, else shared group, else the top-level attributes. */
static dcm_geom frame_geom(const dcm_file *f, int64_t fr)
{
    dcm_geom g = f->top;
    const dcm_geom *s = &f->shared;
    const dcm_geom *p = (f->perframe && fr < f->n_perframe) ? &f->perframe[fr] : NULL;
    const dcm_geom *src[2] = {s, p};
    for (int i = 0; i < 2; i++) {
        const dcm_geom *q = src[i];
        if (!q) continue;
        if (q->has_ipp) { g.has_ipp = 1; memcpy(g.ipp, q->ipp, sizeof g.ipp); }
        if (q->has_iop) { g.has_iop = 1; memcpy(g.iop, q->iop, sizeof g.iop); }
        if (q->has_ps) { g.has_ps = 1; memcpy(g.ps, q->ps, sizeof g.ps); }
        if (q->thickness > 0) g.thickness = q->thickness;
        if (q->between > 0) g.between = q->between;
        if (q->has_rescale) {
            g.has_rescale = q->has_rescale;
            if (q->has_rescale & 1) g.slope = q->slope;
            if (q->has_rescale & 2) g.inter = q->inter;
        }
    }
    if (!(g.has_rescale & 1)) g.slope = 1;
    if (!(g.has_rescale & 2)) g.inter = 0;
    return g;
}

/* Bytes of encapsulated frame fr: *ptr into the buffer when it is one fragment, else a malloc'd
 * concatenation in *tmp. */
static medseg_status encap_frame(const dcm_file *f, const uint8_t *ds, int64_t fr, const char *name, const uint8_t **ptr,
                                 size_t *len, uint8_t **tmp, medseg_error *err)
{
    int64_t a = -1, b = -1; /* fragment range [a, b) */
    if (f->nframes == 1) {
        a = 0;
        b = f->nfrag;
    } else if (f->nbot == f->nframes) {
        /* Basic offset table: offsets of each frame's first fragment item from the first fragment's item. */
        int64_t start = -1, stop = f->nfrag;
        for (int64_t i = 0; i < f->nfrag; i++)
            if (f->frag_item[i] == f->bot[fr]) { start = i; break; }
        if (fr + 1 < f->nframes) {
            stop = -1;
            for (int64_t i = 0; i < f->nfrag; i++)
                if (f->frag_item[i] == f->bot[fr + 1]) { stop = i; break; }
        }
        if (start >= 0 && stop > start) { a = start; b = stop; }
    }
    if (a < 0 && f->nfrag == f->nframes) {
        a = fr;
        b = fr + 1;
    }
    if (a < 0) {
        /* No usable offset table: a frame starts at each fragment beginning with a codestream start marker. */
        int64_t k = -1;
        for (int64_t i = 0; i < f->nfrag; i++) {
            const uint8_t *s = ds + f->frag_off[i];
            size_t l = f->frag_len[i];
            int starts = l >= 4 && s[0] == 0xff && (s[1] == 0xd8 || (s[1] == 0x4f && s[2] == 0xff && s[3] == 0x51));
            starts |= l >= 12 && !memcmp(s, "\0\0\0\x0cjP  ", 8);
            if (starts || i == 0) k++;
            if (k == fr && a < 0) a = i;
            if (k == fr + 1) { b = i; break; }
        }
        if (a >= 0 && b < 0) b = f->nfrag;
        if (a < 0 || (fr == f->nframes - 1 && k != fr))
            return ms_error(err, MEDSEG_ERR_FORMAT, "%s: cannot split %lld fragments into %lld frames", name, (long long)f->nfrag,
                            (long long)f->nframes);
    }
    if (b - a == 1) {
        *ptr = ds + f->frag_off[a];
        *len = f->frag_len[a];
        return MEDSEG_OK;
    }
    size_t tot = 0;
    for (int64_t i = a; i < b; i++) tot += f->frag_len[i];
    uint8_t *t = (uint8_t *)ms_malloc(tot ? tot : 1, err, "frame fragments");
    if (!t) return MEDSEG_ERR_NOMEM;
    size_t o = 0;
    for (int64_t i = a; i < b; i++) {
        memcpy(t + o, ds + f->frag_off[i], f->frag_len[i]);
        o += f->frag_len[i];
    }
    *tmp = t;
    *ptr = t;
    *len = tot;
    return MEDSEG_OK;
}

static int needs_ybr_conversion(const dcm_file *f)
{
    if (f->px.spp != 3) return 0;
    if (strcmp(f->px.photometric, "YBR_FULL") && strcmp(f->px.photometric, "YBR_FULL_422")) return 0;
    /* libjpeg converts YCbCr itself (see dicom_codec.c). */
    return f->codec != MS_DCM_TS_JPEG_BASELINE && f->codec != MS_DCM_TS_JPEG_EXTENDED;
}

/* Decodes frame fr of a fully parsed file into out (rows*cols*spp values). */
static medseg_status decode_frame(const dcm_file *f, const uint8_t *ds, size_t ds_n, int64_t fr, const char *name, void *out,
                                  medseg_error *err)
{
    ms_dcm_pixel px = f->px;
    px.ts_uid = f->ts_uid;
    medseg_status st;
    if (!f->encapsulated) {
        if (f->pix_off > ds_n || f->pix_len > ds_n - f->pix_off)
            return ms_error(err, MEDSEG_ERR_FORMAT, "%s: PixelData outside the file", name);
        st = ms_dcm_native_frame(&px, ds + f->pix_off, f->pix_len, fr, out, name, err);
    } else {
        const uint8_t *p = NULL;
        size_t n = 0;
        uint8_t *tmp = NULL;
        st = encap_frame(f, ds, fr, name, &p, &n, &tmp, err);
        if (!st) st = ms_dcm_decode_frame(&px, p, n, out, name, err);
        free(tmp);
    }
    if (!st) ms_dcm_postprocess_frame(&px, out, needs_ybr_conversion(f));
    return st;
}

/* ---------------------------------------------------------------- series assembly */

static uint64_t g_value_cap = MS_VOLUME_MAX_VALUES;

void ms_dicom_set_value_cap(uint64_t cap)
{
    g_value_cap = cap && cap < MS_VOLUME_MAX_VALUES ? cap : MS_VOLUME_MAX_VALUES;
}

typedef struct {
    char *path;  /* file path (owned); NULL for the in-memory file */
    dcm_file h;  /* header (pixel offsets not kept) */
} dcm_entry;

typedef struct {
    int file;
    int64_t frame;
    dcm_geom g;
    double dist;
    int instance;
} dcm_slice;

static int cmp_slice(const void *pa, const void *pb)
{
    const dcm_slice *a = (const dcm_slice *)pa, *b = (const dcm_slice *)pb;
    if (a->dist < b->dist) return -1;
    if (a->dist > b->dist) return 1;
    if (a->instance != b->instance) return a->instance < b->instance ? -1 : 1;
    if (a->file != b->file) return a->file < b->file ? -1 : 1;
    return a->frame < b->frame ? -1 : a->frame > b->frame;
}

static medseg_dtype px_dtype(const ms_dcm_pixel *px)
{
    if (px->bits_alloc <= 8) return (px->pixel_rep && px->bits_alloc == 8) ? MEDSEG_DT_I8 : MEDSEG_DT_U8;
    if (px->bits_alloc == 16) return px->pixel_rep ? MEDSEG_DT_I16 : MEDSEG_DT_U16;
    return px->pixel_rep ? MEDSEG_DT_I32 : MEDSEG_DT_U32;
}

/* Reads a file fully (capped) and parses it. */
static medseg_status load_file(const char *path, int headers_only, dcm_file *f, uint8_t **buf, const uint8_t **ds, size_t *ds_n,
                               medseg_error *err)
{
    size_t n = 0;
    *buf = NULL;
    medseg_status st = ms_read_file(path, MS_DICOM_MAX_FILE, buf, &n, err);
    if (st) return st;
    st = dcm_parse(*buf, n, path, headers_only, f, ds, ds_n, err);
    if (st) {
        dcm_file_free(f);
        free(*buf);
        *buf = NULL;
    }
    return st;
}

/* Decoding work of one series: task i reads, parses and decodes file i into its slots. */
typedef struct {
    dcm_entry *ents;
    const uint8_t *mem;
    size_t mem_n;
    const char *label;
    const dcm_slice *sl;
    ms_dcm_pixel px;
    medseg_dtype stored;
    int same_scale;
    medseg_volume *out;
    size_t npix;
    int64_t *first, *slot;
    medseg_status *st;
    medseg_error *errs;
} dec_job;

static void decode_task(void *ctx, int i, int thread)
{
    (void)thread;
    dec_job *j = (dec_job *)ctx;
    medseg_error *err = &j->errs[i];
    dcm_entry *en = &j->ents[i];
    int64_t nf = en->h.nframes;
    dcm_file f;
    uint8_t *buf = NULL;
    const uint8_t *ds;
    size_t ds_n;
    const char *fname = en->path ? en->path : j->label;
    size_t vs_out = ms_voxel_type_size(j->out->dtype);
    void *tmp = NULL;
    medseg_status st;
    if (en->path) st = load_file(en->path, 0, &f, &buf, &ds, &ds_n, err);
    else st = dcm_parse(j->mem, j->mem_n, j->label, 0, &f, &ds, &ds_n, err);
    if (st) { j->st[i] = st; return; }
    if (f.px.rows != j->px.rows || f.px.cols != j->px.cols || f.px.spp != j->px.spp || f.px.bits_alloc != j->px.bits_alloc ||
        f.px.pixel_rep != j->px.pixel_rep || f.nframes != nf)
        st = ms_error(err, MEDSEG_ERR_IO, "%s: file changed while it was read", fname);
    if (!st && !j->same_scale) {
        tmp = ms_malloc(j->npix * ms_voxel_type_size(j->stored), err, "slice");
        if (!tmp) st = MEDSEG_ERR_NOMEM;
    }
    for (int64_t fr = 0; fr < nf && !st; fr++) {
        int64_t s = j->slot[j->first[i] + fr];
        uint8_t *dst = (uint8_t *)j->out->data + (size_t)s * j->npix * vs_out;
        if (j->same_scale) {
            st = decode_frame(&f, ds, ds_n, fr, fname, dst, err);
        } else {
            st = decode_frame(&f, ds, ds_n, fr, fname, tmp, err);
            if (!st) {
                float *o = (float *)dst;
                for (size_t q = 0; q < j->npix; q++)
                    o[q] = (float)(ms_voxel_stored(tmp, j->stored, q) * j->sl[s].g.slope + j->sl[s].g.inter);
            }
        }
    }
    free(tmp);
    dcm_file_free(&f);
    free(buf);
    j->st[i] = st;
}

static double dot3(const double *a, const double *b) { return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]; }

/* Builds the volume from the entries of one series. mem/mem_n: the in-memory file when entries
 * have no path (single entry). */
static medseg_status assemble(dcm_entry *ents, int nent, const uint8_t *mem, size_t mem_n, const char *label, medseg_volume *out,
                              medseg_error *err)
{
    medseg_status st = MEDSEG_OK;
    const dcm_file *f0 = &ents[0].h;
    /* Consistency of the pixel module across files. */
    for (int i = 1; i < nent; i++) {
        const dcm_file *f = &ents[i].h;
        if (f->px.rows != f0->px.rows || f->px.cols != f0->px.cols)
            return ms_error(err, MEDSEG_ERR_FORMAT, "%s: mixed image sizes in one series: %s is %dx%d, %s is %dx%d", label, ents[0].path,
                            f0->px.cols, f0->px.rows, ents[i].path, f->px.cols, f->px.rows);
        if (f->px.spp != f0->px.spp || f->px.bits_alloc != f0->px.bits_alloc || f->px.pixel_rep != f0->px.pixel_rep)
            return ms_error(err, MEDSEG_ERR_FORMAT, "%s: mixed pixel formats in one series (%s vs %s)", label, ents[0].path, ents[i].path);
    }
    int64_t nslices = 0;
    for (int i = 0; i < nent; i++) nslices += ents[i].h.nframes;
    if (nslices > MS_DICOM_MAX_FRAMES) return ms_error(err, MEDSEG_ERR_NOMEM, "%s: %lld slices exceed the cap", label, (long long)nslices);
    dcm_slice *sl = (dcm_slice *)ms_calloc((size_t)nslices, sizeof(dcm_slice), err, "slices");
    if (!sl) return MEDSEG_ERR_NOMEM;
    int64_t k = 0;
    int all_pos = 1;
    for (int i = 0; i < nent; i++)
        for (int64_t fr = 0; fr < ents[i].h.nframes; fr++, k++) {
            sl[k].file = i;
            sl[k].frame = fr;
            sl[k].g = frame_geom(&ents[i].h, fr);
            sl[k].instance = ents[i].h.instance_number;
            if (!sl[k].g.has_ipp || !sl[k].g.has_iop) all_pos = 0;
        }
    /* Orientation: every slice must share it. */
    double iop[6] = {1, 0, 0, 0, 1, 0};
    if (sl[0].g.has_iop) memcpy(iop, sl[0].g.iop, sizeof iop);
    for (int64_t s = 1; s < nslices; s++) {
        if (!sl[s].g.has_iop) continue;
        for (int q = 0; q < 6; q++)
            if (fabs(sl[s].g.iop[q] - iop[q]) > 1e-4) {
                st = ms_error(err, MEDSEG_ERR_FORMAT, "%s: mixed slice orientations in one series (slice %lld differs)", label, (long long)s);
                goto done;
            }
    }
    double r[3] = {iop[0], iop[1], iop[2]}, cc[3] = {iop[3], iop[4], iop[5]};
    double nr = sqrt(dot3(r, r)), nc = sqrt(dot3(cc, cc));
    if (nr < 1e-6 || nc < 1e-6) {
        st = ms_error(err, MEDSEG_ERR_FORMAT, "%s: ImageOrientationPatient has a zero vector", label);
        goto done;
    }
    double nrm[3] = {r[1] * cc[2] - r[2] * cc[1], r[2] * cc[0] - r[0] * cc[2], r[0] * cc[1] - r[1] * cc[0]};
    double nn = sqrt(dot3(nrm, nrm));
    if (nn < 1e-6) {
        st = ms_error(err, MEDSEG_ERR_FORMAT, "%s: ImageOrientationPatient row and column vectors are parallel", label);
        goto done;
    }
    for (int q = 0; q < 3; q++) nrm[q] /= nn;
    for (int64_t s = 0; s < nslices; s++) sl[s].dist = all_pos ? dot3(sl[s].g.ipp, nrm) : 0;
    qsort(sl, (size_t)nslices, sizeof *sl, cmp_slice);

    double ps[2] = {1, 1};
    if (sl[0].g.has_ps && sl[0].g.ps[0] > 0 && sl[0].g.ps[1] > 0) memcpy(ps, sl[0].g.ps, sizeof ps);
    double colk[3], origin[3] = {0, 0, 0};
    if (sl[0].g.has_ipp) memcpy(origin, sl[0].g.ipp, sizeof origin);
    if (all_pos && nslices > 1) {
        const double *p0 = sl[0].g.ipp, *p1 = sl[nslices - 1].g.ipp;
        for (int q = 0; q < 3; q++) colk[q] = (p1[q] - p0[q]) / (double)(nslices - 1);
        double dk = sqrt(dot3(colk, colk));
        for (int64_t s = 1; s < nslices; s++)
            if (sl[s].dist - sl[s - 1].dist < 1e-4) {
                st = ms_error(err, MEDSEG_ERR_FORMAT, "%s: two slices at the same position (%.4f mm along the normal; several "
                              "acquisitions or a multi-segment SEG in one series?)", label, sl[s].dist);
                goto done;
            }
        double tol = 0.01 + 0.02 * dk;
        for (int64_t s = 1; s < nslices - 1; s++) {
            double dev = 0;
            for (int q = 0; q < 3; q++) {
                double e = sl[s].g.ipp[q] - (p0[q] + colk[q] * (double)s);
                dev += e * e;
            }
            if (sqrt(dev) > tol) {
                st = ms_error(err, MEDSEG_ERR_UNSUPPORTED, "%s: slice positions are not evenly spaced (slice %lld is %.3f mm off the "
                              "line from the first to the last, spacing %.3f mm)", label, (long long)s, sqrt(dev), dk);
                goto done;
            }
        }
    } else {
        double sp = sl[0].g.between > 0 ? sl[0].g.between : sl[0].g.thickness > 0 ? sl[0].g.thickness : 1.0;
        for (int q = 0; q < 3; q++) colk[q] = nrm[q] * sp;
    }

    /* Scaling: the same pair everywhere -> kept; different per slice -> float32 real values. */
    int same_scale = 1;
    for (int64_t s = 1; s < nslices; s++)
        if (sl[s].g.slope != sl[0].g.slope || sl[s].g.inter != sl[0].g.inter) same_scale = 0;

    /* Native data: the PixelData present must hold every frame before anything is allocated. */
    for (int i = 0; i < nent; i++) {
        const dcm_file *f = &ents[i].h;
        if (f->encapsulated) continue;
        uint64_t bits = (uint64_t)f->px.rows * (uint64_t)f->px.cols * (uint64_t)f->px.spp * (uint64_t)f->px.bits_alloc;
        if (f->px.spp == 3 && !strcmp(f->px.photometric, "YBR_FULL_422")) bits = bits * 2 / 3;
        uint64_t need = (bits * (uint64_t)f->nframes + 7) / 8;
        if (f->pix_len < need) {
            st = ms_error(err, MEDSEG_ERR_FORMAT, "%s: PixelData holds %zu bytes, %lld frame(s) of %dx%d need %llu (truncated?)",
                          ents[i].path ? ents[i].path : label, f->pix_len, (long long)f->nframes, f->px.cols, f->px.rows,
                          (unsigned long long)need);
            goto done;
        }
    }
    if ((uint64_t)f0->px.rows * (uint64_t)f0->px.cols * (uint64_t)f0->px.spp * (uint64_t)nslices > g_value_cap) {
        st = ms_error(err, MEDSEG_ERR_NOMEM, "%s: %dx%dx%lld x %d values exceed the cap of %llu", label, f0->px.cols, f0->px.rows,
                      (long long)nslices, f0->px.spp, (unsigned long long)g_value_cap);
        goto done;
    }
    ms_dcm_pixel px = f0->px;
    medseg_dtype stored = px_dtype(&px);
    medseg_dtype vt = same_scale ? stored : MEDSEG_DT_F32;
    st = ms_volume_alloc(out, px.cols, px.rows, nslices, px.spp, vt, label, err);
    if (st) goto done;
    strcpy(out->format, "dicom");
    out->source_space = MEDSEG_SPACE_LPS;
    snprintf(out->modality, sizeof out->modality, "%s", f0->modality);
    snprintf(out->description, sizeof out->description, "%s", f0->description);
    {
        const char *tn = ms_dicom_ts_name(f0->ts_uid);
        snprintf(out->compression, sizeof out->compression, "%s", tn ? tn : f0->ts_uid);
    }
    out->scl_slope = same_scale ? sl[0].g.slope : 1.0;
    out->scl_inter = same_scale ? sl[0].g.inter : 0.0;
    {
        double lps[3][4];
        for (int q = 0; q < 3; q++) {
            lps[q][0] = r[q] / nr * ps[1];
            lps[q][1] = cc[q] / nc * ps[0];
            lps[q][2] = colk[q];
            lps[q][3] = origin[q];
        }
        for (int q = 0; q < 3; q++)
            for (int m = 0; m < 4; m++) out->affine[q][m] = (q < 2 ? -1.0 : 1.0) * lps[q][m];
        out->spacing[0] = ps[1];
        out->spacing[1] = ps[0];
        double dk = sqrt(dot3(colk, colk));
        out->spacing[2] = dk > 0 ? dk : 1.0;
    }

    /* Decode, file by file (each file read once), files spread over the thread pool. */
    {
        dec_job job;
        memset(&job, 0, sizeof job);
        job.ents = ents;
        job.mem = mem;
        job.mem_n = mem_n;
        job.label = label;
        job.sl = sl;
        job.px = px;
        job.stored = stored;
        job.same_scale = same_scale;
        job.out = out;
        job.npix = (size_t)px.rows * (size_t)px.cols * (size_t)px.spp;
        job.first = (int64_t *)ms_malloc(((size_t)nent + 1 + (size_t)nslices) * sizeof(int64_t), err, "slice map");
        job.st = (medseg_status *)ms_calloc((size_t)nent, sizeof(medseg_status), err, "decode status");
        job.errs = (medseg_error *)ms_calloc((size_t)nent, sizeof(medseg_error), err, "decode errors");
        if (!job.first || !job.st || !job.errs) {
            st = MEDSEG_ERR_NOMEM;
        } else {
            /* slot of (file i, frame fr) = job.slot[job.first[i] + fr] */
            job.slot = job.first + nent + 1;
            job.first[0] = 0;
            for (int i = 0; i < nent; i++) job.first[i + 1] = job.first[i] + ents[i].h.nframes;
            for (int64_t q = 0; q < nslices; q++) job.slot[job.first[sl[q].file] + sl[q].frame] = q;
            ms_pool *pool = NULL;
            if (nent > 1) {
                medseg_error pe;
                pool = ms_pool_create(0, &pe); /* NULL (inline) if threads cannot be started */
            }
            ms_pool_run(pool, nent, decode_task, &job);
            ms_pool_free(pool);
            for (int i = 0; i < nent; i++)
                if (job.st[i]) {
                    st = job.st[i];
                    if (err) *err = job.errs[i];
                    break;
                }
        }
        free(job.first);
        free(job.st);
        free(job.errs);
    }
    if (st) {
        medseg_volume_free(out);
        memset(out, 0, sizeof *out);
    }
done:
    free(sl);
    return st;
}

/* ---------------------------------------------------------------- folders */

typedef struct {
    dcm_entry *ents;
    int n, cap;
    int skipped;     /* non-DICOM or unreadable-as-DICOM files */
    char first_skip_msg[512];
} scan_result;

static void scan_free(scan_result *s)
{
    for (int i = 0; i < s->n; i++) {
        free(s->ents[i].path);
        dcm_file_free(&s->ents[i].h);
    }
    free(s->ents);
    memset(s, 0, sizeof *s);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Header pass over a folder's regular files (or over one file). */
static medseg_status scan(const char *path, scan_result *res, medseg_error *err)
{
    memset(res, 0, sizeof *res);
    struct stat sb;
    if (stat(path, &sb) != 0) return ms_error(err, MEDSEG_ERR_IO, "%s: %s", path, strerror(errno));
    char **names = NULL;
    int nn = 0;
    if (S_ISDIR(sb.st_mode)) {
        DIR *d = opendir(path);
        if (!d) return ms_error(err, MEDSEG_ERR_IO, "%s: %s", path, strerror(errno));
        int cap = 0;
        struct dirent *de;
        while ((de = readdir(d))) {
            if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
            if (nn >= MS_DICOM_MAX_FILES) {
                closedir(d);
                for (int i = 0; i < nn; i++) free(names[i]);
                free(names);
                return ms_error(err, MEDSEG_ERR_NOMEM, "%s: more than %d files in the folder", path, MS_DICOM_MAX_FILES);
            }
            size_t l = strlen(path) + strlen(de->d_name) + 2;
            char *full = (char *)malloc(l);
            if (!full) break;
            snprintf(full, l, "%s/%s", path, de->d_name);
            struct stat fb;
            if (stat(full, &fb) != 0 || !S_ISREG(fb.st_mode)) { free(full); continue; }
            if (nn == cap) {
                cap = cap ? 2 * cap : 64;
                char **nb = (char **)realloc(names, (size_t)cap * sizeof(char *));
                if (!nb) { free(full); break; }
                names = nb;
            }
            names[nn++] = full;
        }
        closedir(d);
        if (nn) qsort(names, (size_t)nn, sizeof(char *), cmp_str);
    } else if (S_ISREG(sb.st_mode)) {
        names = (char **)malloc(sizeof(char *));
        if (names) names[0] = strdup(path);
        if (!names || !names[0]) { free(names); return ms_error(err, MEDSEG_ERR_NOMEM, "%s: out of memory", path); }
        nn = 1;
    } else {
        return ms_error(err, MEDSEG_ERR_IO, "%s: not a file or folder", path);
    }
    int single = !S_ISDIR(sb.st_mode);
    medseg_status st = MEDSEG_OK;
    res->ents = (dcm_entry *)ms_calloc(nn ? (size_t)nn : 1, sizeof(dcm_entry), err, "file list");
    if (!res->ents) st = MEDSEG_ERR_NOMEM;
    for (int i = 0; i < nn && !st; i++) {
        uint8_t *buf;
        const uint8_t *ds;
        size_t ds_n;
        medseg_error e;
        dcm_file f;
        /* Cheap sniff first: skip obvious non-DICOM files without reading them whole. */
        uint8_t head[132];
        size_t hn = 0;
        FILE *fp = fopen(names[i], "rb");
        if (fp) { hn = fread(head, 1, sizeof head, fp); fclose(fp); }
        if (!ms_dicom_sniff(head, hn)) {
            if (single) st = ms_error(err, MEDSEG_ERR_FORMAT, "%s: not a DICOM file (no \"DICM\" at offset 128)", names[i]);
            res->skipped++;
            continue;
        }
        medseg_status fs = load_file(names[i], 1, &f, &buf, &ds, &ds_n, &e);
        if (fs) {
            /* A single file: its error is the answer. In a folder: DICOM files without images
             * (e.g. reports) are skipped and counted; a broken image file is an error. */
            if (single || fs == MEDSEG_ERR_NOMEM || fs == MEDSEG_ERR_UNSUPPORTED || strstr(e.message, ": no PixelData (") == NULL) {
                if (err) *err = e;
                st = fs;
                break;
            }
            res->skipped++;
            if (!res->first_skip_msg[0]) snprintf(res->first_skip_msg, sizeof res->first_skip_msg, "%s", e.message);
            continue;
        }
        free(buf);
        res->ents[res->n].path = names[i];
        names[i] = NULL;
        res->ents[res->n].h = f;
        res->n++;
    }
    for (int i = 0; i < nn; i++) free(names[i]);
    free(names);
    if (!st && res->n == 0)
        st = ms_error(err, MEDSEG_ERR_FORMAT, "%s: no DICOM image files found (%d other files ignored)", path, res->skipped);
    if (st) scan_free(res);
    return st;
}

/* Groups by SeriesInstanceUID: group[i] = series index of entry i; returns the number of series. */
static int group_series(const scan_result *res, int *group, int *first_of)
{
    int ns = 0;
    for (int i = 0; i < res->n; i++) {
        int g = -1;
        for (int s = 0; s < ns; s++)
            if (!strcmp(res->ents[first_of[s]].h.series_uid, res->ents[i].h.series_uid)) { g = s; break; }
        if (g < 0) { g = ns; first_of[ns++] = i; }
        group[i] = g;
    }
    return ns;
}

static void fill_info(const scan_result *res, const int *group, int s, int first, ms_dicom_series_info *inf)
{
    const dcm_file *f = &res->ents[first].h;
    memset(inf, 0, sizeof *inf);
    snprintf(inf->uid, sizeof inf->uid, "%s", f->series_uid);
    snprintf(inf->description, sizeof inf->description, "%s", f->description);
    snprintf(inf->modality, sizeof inf->modality, "%s", f->modality);
    inf->series_number = f->series_number;
    inf->rows = f->px.rows;
    inf->cols = f->px.cols;
    const char *tn = ms_dicom_ts_name(f->ts_uid);
    snprintf(inf->transfer_syntax, sizeof inf->transfer_syntax, "%s", tn ? tn : f->ts_uid);
    if (f->n_wc > 0 && f->n_ww > 0) {
        inf->has_window = 1;
        inf->window_center = f->wc[0];
        inf->window_width = f->ww[0];
    }
    for (int i = 0; i < res->n; i++)
        if (group[i] == s) {
            inf->n_files++;
            inf->n_images += (int)res->ents[i].h.nframes;
        }
}

static int cmp_info(const void *pa, const void *pb)
{
    const ms_dicom_series_info *a = (const ms_dicom_series_info *)pa, *b = (const ms_dicom_series_info *)pb;
    if (a->series_number != b->series_number) return a->series_number < b->series_number ? -1 : 1;
    return strcmp(a->uid, b->uid);
}

static medseg_status list_from_scan(const scan_result *res, ms_dicom_series_info **out, int *n, int **group_out, medseg_error *err)
{
    int *group = (int *)ms_malloc((size_t)res->n * sizeof(int) * 2, err, "series groups");
    if (!group) return MEDSEG_ERR_NOMEM;
    int *first = group + res->n;
    int ns = group_series(res, group, first);
    ms_dicom_series_info *inf = (ms_dicom_series_info *)ms_calloc((size_t)ns, sizeof *inf, err, "series list");
    if (!inf) { free(group); return MEDSEG_ERR_NOMEM; }
    for (int s = 0; s < ns; s++) fill_info(res, group, s, first[s], &inf[s]);
    *out = inf;
    *n = ns;
    if (group_out) *group_out = group;
    else free(group);
    return MEDSEG_OK;
}

medseg_status ms_dicom_list_series(const char *dir, ms_dicom_series_info **out, int *n, medseg_error *err)
{
    *out = NULL;
    *n = 0;
    scan_result res;
    medseg_status st = scan(dir, &res, err);
    if (st) return st;
    st = list_from_scan(&res, out, n, NULL, err);
    scan_free(&res);
    if (!st && *n > 1) qsort(*out, (size_t)*n, sizeof **out, cmp_info);
    return st;
}

medseg_status ms_dicom_read_path(const char *path, const char *series_uid, medseg_volume *out, medseg_error *err)
{
    memset(out, 0, sizeof *out);
    scan_result res;
    medseg_status st = scan(path, &res, err);
    if (st) return st;
    ms_dicom_series_info *inf = NULL;
    int ns = 0, *group = NULL;
    st = list_from_scan(&res, &inf, &ns, &group, err);
    if (st) { scan_free(&res); return st; }
    int pick = -1;
    if (series_uid) {
        for (int s = 0; s < ns; s++)
            if (!strcmp(inf[s].uid, series_uid)) pick = s;
        if (pick < 0) {
            char list[400] = "";
            for (int s = 0; s < ns; s++) {
                size_t l = strlen(list);
                snprintf(list + l, sizeof list - l, "%s%s", s ? ", " : "", inf[s].uid);
            }
            st = ms_error(err, MEDSEG_ERR_ARG, "%s: no series %s (found: %s)", path, series_uid, list);
        }
    } else if (ns > 1) {
        char list[480] = "";
        for (int s = 0; s < ns; s++) {
            size_t l = strlen(list);
            snprintf(list + l, sizeof list - l, "%s%s \"%s\" %d images %dx%d", s ? "; " : "", inf[s].uid, inf[s].description,
                     inf[s].n_images, inf[s].cols, inf[s].rows);
        }
        st = ms_error(err, MEDSEG_ERR_ARG, "%s: %d series, choose one by SeriesInstanceUID: %s", path, ns, list);
    } else {
        pick = 0;
    }
    if (!st) {
        /* Compact the chosen series' entries to the front (paths moved, not copied). */
        dcm_entry *sel = (dcm_entry *)ms_calloc((size_t)res.n, sizeof(dcm_entry), err, "series files");
        if (!sel) st = MEDSEG_ERR_NOMEM;
        else {
            int m = 0;
            for (int i = 0; i < res.n; i++)
                if (group[i] == pick) sel[m++] = res.ents[i];
            st = assemble(sel, m, NULL, 0, path, out, err);
            free(sel);
        }
    }
    free(inf);
    free(group);
    scan_free(&res);
    return st;
}

medseg_status ms_dicom_read_memory(const uint8_t *data, size_t n, const char *name, medseg_volume *out, medseg_error *err)
{
    memset(out, 0, sizeof *out);
    dcm_entry e;
    const uint8_t *ds;
    size_t ds_n;
    memset(&e, 0, sizeof e);
    medseg_status st = dcm_parse(data, n, name, 1, &e.h, &ds, &ds_n, err);
    if (!st) st = assemble(&e, 1, data, n, name, out, err);
    dcm_file_free(&e.h);
    return st;
}
