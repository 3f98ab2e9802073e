/* NRRD (teem) volumes with attached data, read and written by hand (Debian has no C NRRD library
 * apart from teem itself).
 *
 * Read: magic NRRD0001..NRRD0005, then "field: value" lines (case-insensitive field names;
 * "key:=value" pairs and "#" comments skipped) up to a blank line, then the data. Fields used:
 * type, dimension (2 or 3; or 3/4 with a first axis of 3 colour/vector samples), sizes,
 * encoding (raw, gzip; others named in the error), endian, byte skip (raw: >= 0 or -1),
 * space (LPS/RAS/LAS and their long names; scanner-xyz and 3D-right-handed are taken as RAS),
 * space directions (any signs), space origin, spacings (when there are no space directions),
 * kinds. Detached data ("data file") is refused.
 * Write: NRRD0004, gzip, space left-posterior-superior, directions and origin from the affine.
 *
 * ref: http://teem.sourceforge.net/nrrd/format.html */
#include "io/volume_extra.h"

#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define NRRD_MAX_HEADER ((size_t)1 << 20)

static const struct {
    const char *name;
    medseg_dtype t;
} nrrd_types[] = {
    {"signed char", MEDSEG_DT_I8}, {"int8", MEDSEG_DT_I8}, {"int8_t", MEDSEG_DT_I8},
    {"uchar", MEDSEG_DT_U8}, {"unsigned char", MEDSEG_DT_U8}, {"uint8", MEDSEG_DT_U8}, {"uint8_t", MEDSEG_DT_U8},
    {"short", MEDSEG_DT_I16}, {"short int", MEDSEG_DT_I16}, {"signed short", MEDSEG_DT_I16},
    {"signed short int", MEDSEG_DT_I16}, {"int16", MEDSEG_DT_I16}, {"int16_t", MEDSEG_DT_I16},
    {"ushort", MEDSEG_DT_U16}, {"unsigned short", MEDSEG_DT_U16}, {"unsigned short int", MEDSEG_DT_U16},
    {"uint16", MEDSEG_DT_U16}, {"uint16_t", MEDSEG_DT_U16},
    {"int", MEDSEG_DT_I32}, {"signed int", MEDSEG_DT_I32}, {"int32", MEDSEG_DT_I32}, {"int32_t", MEDSEG_DT_I32},
    {"uint", MEDSEG_DT_U32}, {"unsigned int", MEDSEG_DT_U32}, {"uint32", MEDSEG_DT_U32}, {"uint32_t", MEDSEG_DT_U32},
    {"longlong", MEDSEG_DT_I64}, {"long long", MEDSEG_DT_I64}, {"long long int", MEDSEG_DT_I64},
    {"signed long long", MEDSEG_DT_I64}, {"signed long long int", MEDSEG_DT_I64}, {"int64", MEDSEG_DT_I64},
    {"int64_t", MEDSEG_DT_I64},
    {"ulonglong", MEDSEG_DT_U64}, {"unsigned long long", MEDSEG_DT_U64}, {"unsigned long long int", MEDSEG_DT_U64},
    {"uint64", MEDSEG_DT_U64}, {"uint64_t", MEDSEG_DT_U64},
    {"float", MEDSEG_DT_F32}, {"double", MEDSEG_DT_F64},
};

typedef struct {
    medseg_dtype type;
    int dimension;
    int64_t sizes[4];
    int nsizes;
    int encoding; /* 0 raw, 1 gzip */
    int big_endian;
    int64_t byte_skip;
    int space; /* 0 none, 1 RAS, 2 LPS, 3 LAS */
    int has_dirs, has_origin, has_spacings;
    double dirs[4][3];
    int dir_none[4];
    double origin[3];
    double spacings[4];
    char kinds[4][32];
    int nkinds;
} nrrd_header;

static void trim(char *s)
{
    size_t n = strlen(s);
    while (n && isspace((unsigned char)s[n - 1])) s[--n] = 0;
    size_t i = 0;
    while (s[i] && isspace((unsigned char)s[i])) i++;
    if (i) memmove(s, s + i, n - i + 1);
}

/* "(a,b,c)" -> 3 doubles; returns the position after ')' or NULL. */
static const char *parse_vec(const char *p, double *v)
{
    while (*p == ' ' || *p == '\t') p++;
    if (*p != '(') return NULL;
    p++;
    for (int i = 0; i < 3; i++) {
        char *end;
        v[i] = strtod(p, &end);
        if (end == p || !isfinite(v[i])) return NULL;
        p = end;
        while (*p == ' ' || *p == '\t') p++;
        if (i < 2) {
            if (*p != ',') return NULL;
            p++;
        }
    }
    if (*p != ')') return NULL;
    return p + 1;
}

static medseg_status parse_field(nrrd_header *h, const char *path, char *field, char *val, medseg_error *err)
{
    for (char *c = field; *c; c++) *c = (char)tolower((unsigned char)*c);
    if (!strcmp(field, "type")) {
        for (char *c = val; *c; c++) *c = (char)tolower((unsigned char)*c);
        for (size_t i = 0; i < sizeof nrrd_types / sizeof nrrd_types[0]; i++)
            if (!strcmp(val, nrrd_types[i].name)) {
                h->type = nrrd_types[i].t;
                return MEDSEG_OK;
            }
        return ms_error(err, MEDSEG_ERR_UNSUPPORTED, "%s: NRRD type '%.40s' is not supported", path, val);
    }
    if (!strcmp(field, "dimension")) {
        char *end;
        long d = strtol(val, &end, 10);
        if (end == val || d < 1 || d > 16) return ms_error(err, MEDSEG_ERR_FORMAT, "%s: bad NRRD dimension '%.40s'", path, val);
        if (d < 2 || d > 4)
            return ms_error(err, MEDSEG_ERR_UNSUPPORTED, "%s: NRRD dimension %ld (2 or 3 supported)", path, d);
        h->dimension = (int)d;
        return MEDSEG_OK;
    }
    if (!strcmp(field, "sizes")) {
        const char *p = val;
        h->nsizes = 0;
        while (*p) {
            while (*p == ' ' || *p == '\t') p++;
            if (!*p) break;
            if (h->nsizes >= 4) return ms_error(err, MEDSEG_ERR_UNSUPPORTED, "%s: NRRD has more than 4 sizes", path);
            char *end;
            long long s = strtoll(p, &end, 10);
            if (end == p || s < 1) return ms_error(err, MEDSEG_ERR_FORMAT, "%s: bad NRRD sizes '%.60s'", path, val);
            if (s > MS_VOLUME_MAX_SIDE)
                return ms_error(err, MEDSEG_ERR_NOMEM, "%s: NRRD size %lld exceeds the cap of %lld", path, s,
                                (long long)MS_VOLUME_MAX_SIDE);
            h->sizes[h->nsizes++] = s;
            p = end;
        }
        return MEDSEG_OK;
    }
    if (!strcmp(field, "encoding")) {
        for (char *c = val; *c; c++) *c = (char)tolower((unsigned char)*c);
        if (!strcmp(val, "raw")) h->encoding = 0;
        else if (!strcmp(val, "gzip") || !strcmp(val, "gz")) h->encoding = 1;
        else
            return ms_error(err, MEDSEG_ERR_UNSUPPORTED, "%s: NRRD encoding '%.20s' is not supported (raw and gzip are)", path,
                            val);
        return MEDSEG_OK;
    }
    if (!strcmp(field, "endian")) {
        for (char *c = val; *c; c++) *c = (char)tolower((unsigned char)*c);
        if (!strcmp(val, "little")) h->big_endian = 0;
        else if (!strcmp(val, "big")) h->big_endian = 1;
        else return ms_error(err, MEDSEG_ERR_FORMAT, "%s: bad NRRD endian '%.20s'", path, val);
        return MEDSEG_OK;
    }
    if (!strcmp(field, "byte skip") || !strcmp(field, "byteskip")) {
        char *end;
        long long s = strtoll(val, &end, 10);
        if (end == val || s < -1 || s > (long long)MS_VOLUME_MAX_FILE)
            return ms_error(err, MEDSEG_ERR_FORMAT, "%s: bad NRRD byte skip '%.20s'", path, val);
        h->byte_skip = s;
        return MEDSEG_OK;
    }
    if (!strcmp(field, "line skip") || !strcmp(field, "lineskip")) {
        if (strtol(val, NULL, 10) != 0)
            return ms_error(err, MEDSEG_ERR_UNSUPPORTED, "%s: NRRD line skip is not supported", path);
        return MEDSEG_OK;
    }
    if (!strcmp(field, "data file") || !strcmp(field, "datafile"))
        return ms_error(err, MEDSEG_ERR_UNSUPPORTED,
                        "%s: detached NRRD header (data file '%.60s') is not supported; use a single .nrrd file", path, val);
    if (!strcmp(field, "space")) {
        for (char *c = val; *c; c++) *c = (char)tolower((unsigned char)*c);
        if (!strcmp(val, "left-posterior-superior") || !strcmp(val, "lps")) h->space = 2;
        else if (!strcmp(val, "right-anterior-superior") || !strcmp(val, "ras") || !strcmp(val, "scanner-xyz") ||
                 !strcmp(val, "3d-right-handed"))
            h->space = 1;
        else if (!strcmp(val, "left-anterior-superior") || !strcmp(val, "las")) h->space = 3;
        else return ms_error(err, MEDSEG_ERR_UNSUPPORTED, "%s: NRRD space '%.40s' is not supported", path, val);
        return MEDSEG_OK;
    }
    if (!strcmp(field, "space dimension")) {
        if (strtol(val, NULL, 10) != 3)
            return ms_error(err, MEDSEG_ERR_UNSUPPORTED, "%s: NRRD space dimension '%.20s' (3 supported)", path, val);
        if (!h->space) h->space = 1;
        return MEDSEG_OK;
    }
    if (!strcmp(field, "space directions")) {
        const char *p = val;
        int n = 0;
        while (*p) {
            while (*p == ' ' || *p == '\t') p++;
            if (!*p) break;
            if (n >= 4) return ms_error(err, MEDSEG_ERR_FORMAT, "%s: too many NRRD space directions", path);
            if (!strncmp(p, "none", 4)) {
                h->dir_none[n++] = 1;
                p += 4;
                continue;
            }
            p = parse_vec(p, h->dirs[n]);
            if (!p) return ms_error(err, MEDSEG_ERR_FORMAT, "%s: bad NRRD space directions '%.80s'", path, val);
            n++;
        }
        h->has_dirs = n;
        return MEDSEG_OK;
    }
    if (!strcmp(field, "space origin")) {
        if (!parse_vec(val, h->origin)) return ms_error(err, MEDSEG_ERR_FORMAT, "%s: bad NRRD space origin '%.80s'", path, val);
        h->has_origin = 1;
        return MEDSEG_OK;
    }
    if (!strcmp(field, "spacings")) {
        const char *p = val;
        int n = 0;
        while (*p && n < 4) {
            while (*p == ' ' || *p == '\t') p++;
            if (!*p) break;
            char *end;
            double s = strtod(p, &end);
            if (end == p) { /* nan */
                while (*p && *p != ' ' && *p != '\t') p++;
                h->spacings[n++] = NAN;
                continue;
            }
            h->spacings[n++] = s;
            p = end;
        }
        h->has_spacings = n;
        return MEDSEG_OK;
    }
    if (!strcmp(field, "kinds")) {
        char *save = NULL;
        int n = 0;
        for (char *t = strtok_r(val, " \t", &save); t && n < 4; t = strtok_r(NULL, " \t", &save))
            snprintf(h->kinds[n++], sizeof h->kinds[0], "%s", t);
        h->nkinds = n;
        return MEDSEG_OK;
    }
    /* content, units, labels, min/max, measurement frame, thicknesses...: not needed */
    return MEDSEG_OK;
}

static int kind_is_samples(const char *k)
{
    static const char *names[] = {"rgb-color", "3-color", "3-vector", "vector", "list", "point", "covariant-vector",
                                  "normal", "hsv-color", "xyz-color"};
    char low[32];
    size_t i = 0;
    for (; k[i] && i < sizeof low - 1; i++) low[i] = (char)tolower((unsigned char)k[i]);
    low[i] = 0;
    for (size_t j = 0; j < sizeof names / sizeof names[0]; j++)
        if (!strcmp(low, names[j])) return 1;
    return 0;
}

medseg_status ms_nrrd_read(const char *path, medseg_volume *out, medseg_error *err)
{
    memset(out, 0, sizeof *out);
    uint8_t *raw = NULL;
    size_t len = 0;
    medseg_status st = ms_read_file(path, MS_VOLUME_MAX_FILE, &raw, &len, err);
    if (st) return st;
    if (len < 8 || memcmp(raw, "NRRD000", 7) != 0 || raw[7] < '1' || raw[7] > '5') {
        free(raw);
        return ms_error(err, MEDSEG_ERR_FORMAT, "%s: not a NRRD file (NRRD0001..NRRD0005 magic)", path);
    }
    nrrd_header h;
    memset(&h, 0, sizeof h);
    h.encoding = -1;
    /* header lines */
    size_t pos = 0;
    int ended = 0, first = 1;
    char line[8192];
    while (pos < len && pos < NRRD_MAX_HEADER) {
        size_t e = pos;
        while (e < len && raw[e] != '\n') e++;
        if (e >= len) break; /* no newline: header never ends */
        size_t ll = e - pos;
        if (ll && raw[pos + ll - 1] == '\r') ll--;
        size_t start = pos;
        pos = e + 1;
        if (first) {
            first = 0;
            continue;
        }
        if (ll == 0) {
            ended = 1;
            break;
        }
        if (raw[start] == '#') continue;
        if (ll >= sizeof line) {
            free(raw);
            return ms_error(err, MEDSEG_ERR_FORMAT, "%s: NRRD header line over %zu bytes", path, sizeof line - 1);
        }
        memcpy(line, raw + start, ll);
        line[ll] = 0;
        if (memchr(line, 0, ll)) {
            free(raw);
            return ms_error(err, MEDSEG_ERR_FORMAT, "%s: NUL byte in the NRRD header", path);
        }
        char *colon = strstr(line, ":=");
        if (colon) continue; /* key/value pair */
        colon = strstr(line, ": ");
        if (!colon) {
            free(raw);
            return ms_error(err, MEDSEG_ERR_FORMAT, "%s: bad NRRD header line '%.60s'", path, line);
        }
        *colon = 0;
        char *val = colon + 2;
        trim(line);
        trim(val);
        st = parse_field(&h, path, line, val, err);
        if (st) {
            free(raw);
            return st;
        }
    }
    if (!ended) {
        free(raw);
        return ms_error(err, MEDSEG_ERR_FORMAT, "%s: NRRD header does not end with a blank line (truncated?)", path);
    }
    if (!h.type || !h.dimension || h.encoding < 0 || h.nsizes == 0) {
        free(raw);
        return ms_error(err, MEDSEG_ERR_FORMAT, "%s: NRRD header lacks type, dimension, sizes or encoding", path);
    }
    if (h.nsizes != h.dimension) {
        free(raw);
        return ms_error(err, MEDSEG_ERR_FORMAT, "%s: NRRD sizes (%d) do not match dimension %d", path, h.nsizes, h.dimension);
    }
    /* a leading axis of 3 samples per voxel (colour/vector) */
    int ch = 1, a0 = 0;
    int first_is_samples = (h.nkinds == h.dimension && kind_is_samples(h.kinds[0])) ||
                           (h.has_dirs == h.dimension && h.dir_none[0]);
    if (first_is_samples) {
        if (h.sizes[0] != 3)
        {
            free(raw);
            return ms_error(err, MEDSEG_ERR_UNSUPPORTED, "%s: NRRD with %lld samples per voxel (1 or 3 supported)", path,
                            (long long)h.sizes[0]);
        }
        ch = 3;
        a0 = 1;
    }
    int nsp = h.dimension - a0; /* spatial axes */
    if (nsp < 2 || nsp > 3) {
        free(raw);
        return ms_error(err, MEDSEG_ERR_UNSUPPORTED, "%s: NRRD with %d spatial axes (2 or 3 supported)", path, nsp);
    }
    int64_t n3[3] = {h.sizes[a0], h.sizes[a0 + 1], nsp == 3 ? h.sizes[a0 + 2] : 1};
    st = ms_volume_alloc(out, n3[0], n3[1], n3[2], ch, h.type, path, err);
    if (st) {
        free(raw);
        return st;
    }
    size_t es = ms_voxel_type_size(h.type);
    size_t nbytes = ms_volume_count(out) * es;
    if (nbytes > MS_VOLUME_MAX_FILE || (h.byte_skip > 0 && (size_t)h.byte_skip > MS_VOLUME_MAX_FILE - nbytes)) {
        medseg_volume_free(out);
        free(raw);
        return ms_error(err, MEDSEG_ERR_NOMEM, "%s: NRRD data of %zu bytes exceeds the cap of %zu", path, nbytes,
                        (size_t)MS_VOLUME_MAX_FILE);
    }
    const uint8_t *data = raw + pos;
    size_t avail = len - pos;
    uint8_t *dec = NULL;
    if (h.encoding == 1) {
        size_t skip = h.byte_skip > 0 ? (size_t)h.byte_skip : 0;
        if (h.byte_skip < 0) {
            medseg_volume_free(out);
            free(raw);
            return ms_error(err, MEDSEG_ERR_FORMAT, "%s: NRRD byte skip -1 is only valid with raw encoding", path);
        }
        size_t dlen = 0;
        int trunc = 0;
        st = ms_gunzip(data, avail, nbytes + skip, path, &dec, &dlen, &trunc, err);
        if (!st && (dlen < nbytes + skip || trunc))
            st = ms_error(err, MEDSEG_ERR_FORMAT, "%s: truncated NRRD data: %zu of %zu decompressed bytes%s", path, dlen,
                          nbytes + skip, trunc ? " (gzip stream cut short)" : "");
        if (st) {
            free(dec);
            medseg_volume_free(out);
            free(raw);
            return st;
        }
        memcpy(out->data, dec + skip, nbytes);
        free(dec);
    } else {
        size_t skip;
        if (h.byte_skip == -1) skip = avail >= nbytes ? avail - nbytes : 0;
        else skip = (size_t)h.byte_skip;
        if (skip > avail || avail - skip < nbytes) {
            medseg_volume_free(out);
            free(raw);
            return ms_error(err, MEDSEG_ERR_FORMAT, "%s: truncated NRRD data: %zu of %zu bytes", path,
                            avail > skip ? avail - skip : 0, nbytes);
        }
        memcpy(out->data, data + skip, nbytes);
    }
    free(raw);
    if (h.big_endian && es > 1) {
        uint8_t *d = out->data;
        size_t n = ms_volume_count(out);
        for (size_t i = 0; i < n; i++)
            for (size_t a = 0, b = es - 1; a < b; a++, b--) {
                uint8_t t = d[i * es + a];
                d[i * es + a] = d[i * es + b];
                d[i * es + b] = t;
            }
    }
    /* geometry in the file's space, then to RAS */
    double A[3][4];
    memset(A, 0, sizeof A);
    if (h.has_dirs) {
        if (h.has_dirs != h.dimension) {
            medseg_volume_free(out);
            return ms_error(err, MEDSEG_ERR_FORMAT, "%s: NRRD has %d space directions for dimension %d", path, h.has_dirs,
                            h.dimension);
        }
        for (int c = 0; c < nsp; c++) {
            if (h.dir_none[a0 + c]) {
                medseg_volume_free(out);
                return ms_error(err, MEDSEG_ERR_FORMAT, "%s: NRRD spatial axis %d has no space direction", path, a0 + c);
            }
            for (int r = 0; r < 3; r++) A[r][c] = h.dirs[a0 + c][r];
        }
        if (nsp == 2) { /* a 2D image in 3D space: unit normal for k */
            double *u = h.dirs[a0], *w = h.dirs[a0 + 1];
            double n[3] = {u[1] * w[2] - u[2] * w[1], u[2] * w[0] - u[0] * w[2], u[0] * w[1] - u[1] * w[0]};
            double nn = sqrt(n[0] * n[0] + n[1] * n[1] + n[2] * n[2]);
            for (int r = 0; r < 3; r++) A[r][2] = nn > 0 ? n[r] / nn : (r == 2);
        }
    } else {
        for (int c = 0; c < 3; c++) {
            double s = (c < nsp && h.has_spacings > a0 + c) ? h.spacings[a0 + c] : 1.0;
            A[c][c] = (isfinite(s) && s != 0) ? fabs(s) : 1.0;
        }
    }
    for (int r = 0; r < 3; r++) A[r][3] = h.has_origin ? h.origin[r] : 0;
    double sx = 1, sy = 1;
    if (h.space == 2) sx = sy = -1; /* LPS */
    else if (h.space == 3) sx = -1;  /* LAS */
    for (int c = 0; c < 4; c++) {
        out->affine[0][c] = sx * A[0][c];
        out->affine[1][c] = sy * A[1][c];
        out->affine[2][c] = A[2][c];
    }
    for (int r = 0; r < 3; r++)
        for (int c = 0; c < 4; c++) out->affine[r][c] += 0.0; /* no negative zeros */
    ms_volume_spacing_from_affine(out);
    out->source_space = h.space == 2 ? MEDSEG_SPACE_LPS : MEDSEG_SPACE_RAS;
    snprintf(out->format, sizeof out->format, "nrrd");
    snprintf(out->compression, sizeof out->compression, "%s", h.encoding == 1 ? "gzip" : "");
    return MEDSEG_OK;
}

/* ---------------------------------------------------------------- writer */

/* NRRD's type names: ours (volume.c) except for the two float types. */
static const char *nrrd_type_name(medseg_dtype t)
{
    if (t == MEDSEG_DT_F32) return "float";
    if (t == MEDSEG_DT_F64) return "double";
    return ms_voxel_type_size(t) ? ms_voxel_type_name(t) : NULL;
}

medseg_status ms_nrrd_write(const char *path, const medseg_volume *v, medseg_error *err)
{
    if (!path || !v || !v->data) return ms_error(err, MEDSEG_ERR_ARG, "ms_nrrd_write: no path or no volume");
    const char *tn = nrrd_type_name(v->dtype);
    if (!tn) return ms_error(err, MEDSEG_ERR_ARG, "%s: invalid voxel type", path);
    if (v->scl_slope != 1 || v->scl_inter != 0)
        return ms_error(err, MEDSEG_ERR_UNSUPPORTED, "%s: NRRD cannot store scl_slope/scl_inter; rescale first", path);
    char hdr[2048];
    int n = snprintf(hdr, sizeof hdr, "NRRD0004\n# written by medseg\ntype: %s\ndimension: %d\nspace: left-posterior-superior\n",
                     tn, v->channels == 3 ? 4 : 3);
    if (v->channels == 3)
        n += snprintf(hdr + n, sizeof hdr - (size_t)n, "sizes: 3 %lld %lld %lld\n", (long long)v->dim[0],
                      (long long)v->dim[1], (long long)v->dim[2]);
    else
        n += snprintf(hdr + n, sizeof hdr - (size_t)n, "sizes: %lld %lld %lld\n", (long long)v->dim[0],
                      (long long)v->dim[1], (long long)v->dim[2]);
    /* RAS -> LPS: negate the first two rows */
    double L[3][4];
    for (int c = 0; c < 4; c++) {
        L[0][c] = -v->affine[0][c] + 0.0;
        L[1][c] = -v->affine[1][c] + 0.0;
        L[2][c] = v->affine[2][c] + 0.0;
    }
    n += snprintf(hdr + n, sizeof hdr - (size_t)n, "space directions: %s(%.17g,%.17g,%.17g) (%.17g,%.17g,%.17g) (%.17g,%.17g,%.17g)\n",
                  v->channels == 3 ? "none " : "", L[0][0], L[1][0], L[2][0], L[0][1], L[1][1], L[2][1], L[0][2], L[1][2],
                  L[2][2]);
    n += snprintf(hdr + n, sizeof hdr - (size_t)n, "kinds: %sdomain domain domain\nendian: little\nencoding: gzip\n",
                  v->channels == 3 ? "RGB-color " : "");
    n += snprintf(hdr + n, sizeof hdr - (size_t)n, "space origin: (%.17g,%.17g,%.17g)\n\n", L[0][3], L[1][3], L[2][3]);
    if (n < 0 || (size_t)n >= sizeof hdr) return ms_error(err, MEDSEG_ERR_INTERNAL, "%s: NRRD header too long", path);
    ms_vol_out o;
    medseg_status st = ms_vol_out_open(&o, path, 0, err);
    if (st) return st;
    ms_vol_out_write(&o, hdr, (size_t)n);
    /* the data part is one gzip stream after the plain-text header */
    st = ms_vol_out_start_gzip(&o, err);
    if (st) {
        ms_vol_out_abort(&o);
        return st;
    }
    ms_vol_out_write(&o, v->data, ms_volume_count(v) * ms_voxel_type_size(v->dtype));
    return ms_vol_out_commit(&o, err);
}
