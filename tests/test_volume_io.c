/* Volume readers and writers (src/io/volume.c, nifti.c, nrrd.c, npz.c, image.c):
 *  1. every image file under ../shared/data loads (walked, recognised by content), with the
 *     geometry ../shared/data/README.md states;
 *  2. NIfTI / NRRD / npz values and affines equal an independent reader (tests/volume_oracle.py:
 *     nibabel, a small numpy NRRD reader, numpy.load): sum, min, max, 11 voxels, 4x4 affine;
 *  3. the manifest's 3D statistics (voxel count and z range per label value) and image/label grids;
 *     the DeepLesion HU NIfTI windowed as README says equals the npz voxel for voxel;
 *  4. writers: label maps written like a NIfTI / NRRD / npz input, read back by nibabel/numpy with
 *     the same affine and values; round trips; PNG slices; refusals that leave nothing behind;
 *  5. bad input: truncated and corrupted copies, oversize and 4D headers, detached NRRD...;
 *  6. the fuzzing corpus tests/fuzz/corpus/volume through tests/fuzz/fuzz_volume.c, plus
 *     truncations and byte flips of each file. */
#include "testutil.h"
#include "io/volume_extra.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#define LLVMFuzzerTestOneInput ms_fuzz_one_volume
#include "fuzz/fuzz_volume.c"
#undef LLVMFuzzerTestOneInput

#ifndef MEDSEG_SOURCE_DIR
#error "MEDSEG_SOURCE_DIR must name the source tree (tests/tests.cmake defines it)"
#endif
#define ORACLE "/usr/bin/python3 " MEDSEG_SOURCE_DIR "/tests/volume_oracle.py"

static char g_tmp[512];

/* ---------------------------------------------------------------- small helpers */

static const char *tmp_path(const char *name)
{
    static char bufs[8][1024];
    static int k;
    char *b = bufs[k++ & 7];
    snprintf(b, 1024, "%s/%s", g_tmp, name);
    return b;
}

/* "data/..." in the shared folder, "tests/..." in the source tree. */
static const char *in_path(const char *rel)
{
    static char bufs[4][4096];
    static int k;
    if (strncmp(rel, "tests/", 6)) return tu_path("%s", rel);
    char *b = bufs[k++ & 3];
    snprintf(b, 4096, "%s/%s", MEDSEG_SOURCE_DIR, rel);
    return b;
}

static int file_exists(const char *p)
{
    struct stat sb;
    return stat(p, &sb) == 0;
}

static uint8_t *slurp(const char *path, size_t *len)
{
    uint8_t *b = NULL;
    medseg_error e;
    if (ms_read_file(path, (size_t)1 << 30, &b, len, &e) != MEDSEG_OK) {
        fprintf(stderr, "FATAL: %s\n", e.message);
        exit(2);
    }
    return b;
}

static void spit(const char *path, const void *d, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(d, 1, n, f) != n) {
        fprintf(stderr, "FATAL: cannot write %s\n", path);
        exit(2);
    }
    fclose(f);
}

static int ends_with(const char *s, const char *suf) { return ms_path_has_suffix(s, suf); }

/* "DICM" at 128 */
static int is_dicom_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    uint8_t h[132];
    size_t n = fread(h, 1, sizeof h, f);
    fclose(f);
    return n == 132 && memcmp(h + 128, "DICM", 4) == 0;
}

typedef struct {
    char **items;
    int n, cap;
} strlist;

static void sl_add(strlist *l, const char *s)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 64;
        l->items = realloc(l->items, (size_t)l->cap * sizeof *l->items);
    }
    l->items[l->n++] = strdup(s);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static void sl_free(strlist *l)
{
    for (int i = 0; i < l->n; i++) free(l->items[i]);
    free(l->items);
    memset(l, 0, sizeof *l);
}

/* Relative paths of the regular files under root/rel, sorted. */
static void walk(const char *root, const char *rel, strlist *out)
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s%s%s", root, rel[0] ? "/" : "", rel);
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char r[4096], full[8192];
        snprintf(r, sizeof r, "%s%s%s", rel, rel[0] ? "/" : "", e->d_name);
        snprintf(full, sizeof full, "%s/%s", root, r);
        struct stat sb;
        if (stat(full, &sb) != 0) continue;
        if (S_ISDIR(sb.st_mode)) walk(root, r, out);
        else if (S_ISREG(sb.st_mode)) sl_add(out, r);
    }
    closedir(d);
    qsort(out->items, (size_t)out->n, sizeof *out->items, cmp_str);
}

static double vol_sum(const medseg_volume *v, double *mn, double *mx)
{
    double s = 0;
    *mn = INFINITY;
    *mx = -INFINITY;
    size_t n = ms_volume_count(v);
    for (size_t i = 0; i < n; i++) {
        double x = medseg_volume_value(v, i);
        s += x;
        if (x < *mn) *mn = x;
        if (x > *mx) *mx = x;
    }
    return s;
}

static double voxel(const medseg_volume *v, int64_t i, int64_t j, int64_t k, int c)
{
    size_t n = (((size_t)k * (size_t)v->dim[1] + (size_t)j) * (size_t)v->dim[0] + (size_t)i) * (size_t)v->channels + (size_t)c;
    return medseg_volume_value(v, n);
}

/* ---------------------------------------------------------------- the oracle */

typedef struct {
    strlist specs;
    cJSON **res;
} oracle_batch;

/* Starts the oracle on every spec (path or path::key); it runs while the caller works. */
typedef struct {
    FILE *p;
    int next, n;
    char *line;
    size_t cap;
} oracle_stream;

static void oracle_start(oracle_stream *os, const strlist *specs)
{
    memset(os, 0, sizeof *os);
    size_t cl = strlen(ORACLE) + 16;
    for (int i = 0; i < specs->n; i++) cl += strlen(specs->items[i]) + 4;
    char *cmd = malloc(cl);
    strcpy(cmd, ORACLE " read");
    for (int i = 0; i < specs->n; i++) {
        strcat(cmd, " '");
        strcat(cmd, specs->items[i]);
        strcat(cmd, "'");
    }
    fflush(stdout);
    os->p = popen(cmd, "r");
    free(cmd);
    CHECK(os->p != NULL, "cannot run the oracle");
    os->n = specs->n;
    os->cap = 1 << 16;
    os->line = malloc(os->cap);
}

/* The oracle's result for the next spec, in order (NULL on failure: counted). */
static cJSON *oracle_next(oracle_stream *os, const char *spec)
{
    if (!os->p || os->next >= os->n) return NULL;
    os->next++;
    if (!fgets(os->line, (int)os->cap, os->p)) {
        CHECK(0, "oracle gave no result for %s", spec);
        return NULL;
    }
    size_t l = strlen(os->line);
    while (l == os->cap - 1 && os->line[l - 1] != '\n') { /* long line: grow */
        os->cap *= 2;
        os->line = realloc(os->line, os->cap);
        if (!fgets(os->line + l, (int)(os->cap - l), os->p)) break;
        l = strlen(os->line);
    }
    cJSON *j = cJSON_Parse(os->line);
    cJSON *err = j ? cJSON_GetObjectItem(j, "error") : NULL;
    CHECK(j && !err, "oracle failed on %s: %s", spec, err && cJSON_IsString(err) ? err->valuestring : os->line);
    if (err) {
        cJSON_Delete(j);
        j = NULL;
    }
    return j;
}

static void oracle_finish(oracle_stream *os)
{
    if (os->p) {
        int rc = pclose(os->p);
        CHECK(rc == 0 && os->next == os->n, "oracle exited with %d after %d of %d files (needs /usr/bin/python3 with nibabel)",
              rc, os->next, os->n);
    }
    free(os->line);
    memset(os, 0, sizeof *os);
}

/* Runs the oracle on every spec; results in o->res[i] (NULL on failure). */
static void oracle_run(oracle_batch *o)
{
    o->res = calloc((size_t)o->specs.n + 1, sizeof *o->res);
    oracle_stream os;
    oracle_start(&os, &o->specs);
    for (int i = 0; i < o->specs.n; i++) o->res[i] = oracle_next(&os, o->specs.items[i]);
    oracle_finish(&os);
}

static void oracle_free(oracle_batch *o)
{
    for (int i = 0; i < o->specs.n; i++)
        if (o->res && o->res[i]) cJSON_Delete(o->res[i]);
    free(o->res);
    sl_free(&o->specs);
}

static double jnum(const cJSON *o, const char *k)
{
    const cJSON *x = cJSON_GetObjectItem(o, k);
    return cJSON_IsNumber(x) ? x->valuedouble : NAN;
}

static void check_affine(const char *label, const double a[3][4], const cJSON *rows, double tol)
{
    double maxd = 0;
    for (int r = 0; r < 3; r++)
        for (int c = 0; c < 4; c++) {
            const cJSON *x = cJSON_GetArrayItem(cJSON_GetArrayItem(rows, r), c);
            double w = cJSON_IsNumber(x) ? x->valuedouble : NAN;
            double d = fabs(a[r][c] - w) / fmax(1.0, fabs(w));
            if (!(d <= maxd)) maxd = d;
        }
    CHECK(maxd <= tol, "%s: affine differs from the oracle's by %g", label, maxd);
}

static double json_affine_diff(const cJSON *a, const cJSON *b)
{
    double d = 0;
    const cJSON *ra = cJSON_GetObjectItem(a, "affine"), *rb = cJSON_GetObjectItem(b, "affine");
    for (int r = 0; r < 3; r++)
        for (int c = 0; c < 4; c++) {
            const cJSON *x = cJSON_GetArrayItem(cJSON_GetArrayItem(ra, r), c), *y = cJSON_GetArrayItem(cJSON_GetArrayItem(rb, r), c);
            double t = (x && y) ? fabs(x->valuedouble - y->valuedouble) / fmax(1.0, fabs(y->valuedouble)) : INFINITY;
            if (!(t <= d)) d = t;
        }
    return d;
}

/* The volume equals the oracle's summary of the same file. */
static void check_vs_oracle(const char *label, const medseg_volume *v, const cJSON *o, int check_dtype)
{
    if (!o) return;
    const cJSON *shape = cJSON_GetObjectItem(o, "shape");
    for (int d = 0; d < 3; d++)
        CHECK(v->dim[d] == (int64_t)cJSON_GetArrayItem(shape, d)->valuedouble, "%s: dim %d = %lld, oracle %g", label, d,
              (long long)v->dim[d], cJSON_GetArrayItem(shape, d)->valuedouble);
    CHECK(v->channels == (int)jnum(o, "channels"), "%s: channels %d vs %g", label, v->channels, jnum(o, "channels"));
    if (v->dim[0] != (int64_t)cJSON_GetArrayItem(shape, 0)->valuedouble || v->channels != (int)jnum(o, "channels")) return;
    if (check_dtype) {
        const cJSON *dt = cJSON_GetObjectItem(o, "dtype");
        CHECK(cJSON_IsString(dt) && !strcmp(dt->valuestring, ms_voxel_type_name(v->dtype)), "%s: dtype %s, oracle %s", label,
              ms_voxel_type_name(v->dtype), cJSON_IsString(dt) ? dt->valuestring : "?");
    }
    double mn, mx, s = vol_sum(v, &mn, &mx);
    double ws = jnum(o, "sum");
    CHECK(fabs(s - ws) <= 1e-9 * (fabs(ws) + (double)ms_volume_count(v)), "%s: sum %.17g, oracle %.17g", label, s, ws);
    CHECK(mn == jnum(o, "min") || fabs(mn - jnum(o, "min")) <= 1e-12 * fabs(mn), "%s: min %.17g vs %.17g", label, mn, jnum(o, "min"));
    CHECK(mx == jnum(o, "max") || fabs(mx - jnum(o, "max")) <= 1e-12 * fabs(mx), "%s: max %.17g vs %.17g", label, mx, jnum(o, "max"));
    const cJSON *vx;
    cJSON_ArrayForEach(vx, cJSON_GetObjectItem(o, "voxels"))
    {
        int i = (int)cJSON_GetArrayItem(vx, 0)->valuedouble, j = (int)cJSON_GetArrayItem(vx, 1)->valuedouble;
        int k = (int)cJSON_GetArrayItem(vx, 2)->valuedouble, c = (int)cJSON_GetArrayItem(vx, 3)->valuedouble;
        double want = cJSON_GetArrayItem(vx, 4)->valuedouble, got = voxel(v, i, j, k, c);
        CHECK(got == want || fabs(got - want) <= 1e-12 * fabs(want), "%s: voxel (%d,%d,%d,%d) = %.17g, oracle %.17g", label,
              i, j, k, c, got, want);
    }
    check_affine(label, v->affine, cJSON_GetObjectItem(o, "affine"), 1e-6);
    const cJSON *z = cJSON_GetObjectItem(o, "zooms");
    for (int d = 0; d < 3; d++) {
        double w = cJSON_GetArrayItem(z, d)->valuedouble;
        CHECK(fabs(v->spacing[d] - w) <= 1e-6 * w, "%s: spacing[%d] = %.9g, oracle %.9g", label, d, v->spacing[d], w);
    }
    CHECK(fabs(v->scl_slope - jnum(o, "slope")) <= 1e-12 * fabs(v->scl_slope) &&
              fabs(v->scl_inter - jnum(o, "inter")) <= 1e-12,
          "%s: slope/inter %g %g vs %g %g", label, v->scl_slope, v->scl_inter, jnum(o, "slope"), jnum(o, "inter"));
}

/* ---------------------------------------------------------------- 1+2: every data file */

typedef struct {
    const char *rel;
    int nx, ny, nz, ch;
    const char *dtype;
    double sx, sy, sz; /* 0: not stated */
    const char *format;
} expect_t;

/* Geometry as ../shared/data/README.md states it. */
static const expect_t k_expect[] = {
    {"totalseg/example_ct_sm.nii.gz", 122, 101, 30, 1, "int16", 3, 3, 3, "nifti1"},
    {"totalseg/example_ct.nii.gz", 122, 101, 112, 1, "int32", 3, 3, 3, "nifti1"},
    {"totalseg/example_seg.nii.gz", 122, 101, 30, 1, "uint8", 3, 3, 3, "nifti1"},
    {"totalseg/example_seg_fast.nii.gz", 122, 101, 30, 1, "uint8", 3, 3, 3, "nifti1"},
    {"totalseg/example_ct_full_seg_v1_float64.nii.gz", 122, 101, 112, 1, "float64", 3, 3, 3, "nifti1"},
    {"totalseg/example_seg_dicom.nii.gz", 512, 512, 20, 1, "uint8", 0, 0, 2, "nifti1"},
    {"totalseg/example_mr_sm.nii.gz", 117, 91, 20, 1, "int16", 3, 3, 3, "nifti1"},
    {"totalseg/example_seg_mr.nii.gz", 117, 91, 20, 1, "uint8", 3, 3, 3, "nifti1"},
    {"deepmedic_brats2015/brats_2013_pat0001_1/Flair_subtrMeanDivStd.nii.gz", 240, 240, 155, 1, "float32", 1, 1, 1, "nifti1"},
    {"deepmedic_brats2015/brats_2013_pat0001_1/T1c_subtrMeanDivStd.nii.gz", 240, 240, 155, 1, "float32", 1, 1, 1, "nifti1"},
    {"deepmedic_brats2015/brats_2013_pat0001_1/OTMultiClass.nii.gz", 240, 240, 155, 1, "float32", 1, 1, 1, "nifti1"},
    {"deepmedic_brats2015/brats_2013_pat0001_1/brainmask.nii.gz", 240, 240, 155, 1, "int32", 1, 1, 1, "nifti1"},
    {"medsam2_recist_ct/DeepLesion_000015_01_01_103-115_HU.nii.gz", 512, 512, 13, 1, "int16", 0.9375, 0.9375, 5, "nifti1"},
    {"medsam2_recist_ct/CT_Lesion_000015_01_01_103-115.npz", 512, 512, 13, 1, "uint8", 0.9375, 0.9375, 5, "npz"},
    {"medsam2_recist_ct/CT_Lesion_000015_01_01_081-093.npz", 512, 512, 13, 1, "uint8", 0.9375, 0.9375, 5, "npz"},
    {"cvpr24_medsam_laptop_npz/2DBox_Mammography_demo.npz", 1726, 2604, 1, 3, "uint8", 0, 0, 0, "npz"},
    {"pyradiomics/brain1_image.nrrd", 256, 256, 25, 1, "int16", 0.78125, 0.78125, 6.5, "nrrd"},
    {"pyradiomics/brain1_label.nrrd", 256, 256, 25, 1, "int32", 0.78125, 0.78125, 6.5, "nrrd"},
    {"pyradiomics/breast1_image.nrrd", 45, 120, 21, 1, "int16", 0, 0, 0, "nrrd"},
    {"pyradiomics/breast1_label.nrrd", 45, 120, 21, 1, "int16", 0, 0, 0, "nrrd"},
    {"pyradiomics/prostate_phantom_subvolume.nrrd", 82, 67, 13, 1, "uint16", 0.5, 0.5, 3, "nrrd"},
    {"pyradiomics/prostate_phantom_subvolume-label.nrrd", 82, 67, 13, 1, "int16", 0.5, 0.5, 3, "nrrd"},
    {"dcmqi_ct3slice/liver_seg.nrrd", 512, 512, 3, 1, "int16", 0, 0, 1, "nrrd"},
    {"dcmqi_ct3slice/spine_seg.nrrd", 512, 512, 3, 1, "int16", 0, 0, 1, "nrrd"},
    {"totalseg/example_ct_dicom", 512, 512, 20, 1, NULL, 0, 0, 2, "dicom"},
    {"dcmqi_ct3slice/ct-3slice", 512, 512, 3, 1, NULL, 0, 0, 1, "dicom"},
    {"niivue_vsseg_mr_dicom", 512, 512, 12, 1, NULL, 0, 0, 1.5, "dicom"},
};

static void check_expect(const char *rel, const medseg_volume *v)
{
    for (size_t i = 0; i < sizeof k_expect / sizeof k_expect[0]; i++) {
        const expect_t *e = &k_expect[i];
        if (strcmp(e->rel, rel)) continue;
        CHECK(v->dim[0] == e->nx && v->dim[1] == e->ny && v->dim[2] == e->nz && v->channels == e->ch,
              "%s: %lld x %lld x %lld x %d, README says %d x %d x %d x %d", rel, (long long)v->dim[0], (long long)v->dim[1],
              (long long)v->dim[2], v->channels, e->nx, e->ny, e->nz, e->ch);
        if (e->dtype) CHECK(!strcmp(ms_voxel_type_name(v->dtype), e->dtype), "%s: %s, README says %s", rel, ms_voxel_type_name(v->dtype), e->dtype);
        double sp[3] = {e->sx, e->sy, e->sz};
        for (int d = 0; d < 3; d++)
            if (sp[d] > 0) CHECK(fabs(v->spacing[d] - sp[d]) < 1e-3, "%s: spacing[%d] %g, README says %g", rel, d, v->spacing[d], sp[d]);
        CHECK(!strcmp(v->format, e->format), "%s: format '%s', expected %s", rel, v->format, e->format);
        return;
    }
}

/* README facts that are not plain geometry. */
static void check_quirks(const char *rel, const medseg_volume *v)
{
    if (strstr(rel, "brainmask.nii.gz")) {
        CHECK(fabs(v->scl_slope - 2.3283064e-10) < 1e-16 && v->scl_inter == 0.5, "brainmask: slope %g inter %g", v->scl_slope,
              v->scl_inter);
        double mn, mx;
        vol_sum(v, &mn, &mx);
        CHECK(fabs(mn) < 1e-6 && fabs(mx - 1) < 1e-6, "brainmask: scaled range %g..%g, README says 0..~1", mn, mx);
    }
    if (strstr(rel, "_HU.nii.gz")) /* sform swaps x and y */
        CHECK(v->affine[0][1] == -0.9375 && v->affine[1][0] == -0.9375 && v->affine[0][0] == 0 && v->affine[1][1] == 0,
              "HU NIfTI: sform rows %g %g / %g %g", v->affine[0][0], v->affine[0][1], v->affine[1][0], v->affine[1][1]);
    if (strstr(rel, "brain1_image.nrrd")) /* negative y in LPS space directions -> +y in RAS */
        CHECK(v->source_space == MEDSEG_SPACE_LPS && v->affine[1][1] > 0 && v->affine[0][0] < 0, "brain1: LPS->RAS");
    if (strstr(rel, "prostate_phantom_subvolume.nrrd")) /* negative x and y in LPS */
        CHECK(v->affine[0][0] == 0.5 && v->affine[1][1] == 0.5, "prostate phantom: LPS->RAS %g %g", v->affine[0][0], v->affine[1][1]);
    if (strstr(rel, "CT_Lesion_")) CHECK(v->spacing[2] == 5 && v->dim[2] >= 13 && v->dim[2] <= 16, "npz: spacing[2] is axis D");
}

static int g_dicom_ok = 1;

/* Every image file under data/, recognised by content: a folder of DICOM files is one series and
 * loads once; a DICOM file next to other files (dcmqi's liver.dcm) loads on its own. NIfTI,
 * NRRD and npz files are compared with the oracle, which runs meanwhile in its own process. */
static void test_all_files(void)
{
    const char *root = tu_path("data");
    strlist files = {0}, items = {0}, vols = {0};
    walk(root, "", &files);
    CHECK(files.n > 150, "found only %d files under %s", files.n, root);
    int n_dcm = 0;
    for (int f = 0; f < files.n; f++) {
        const char *rel = files.items[f];
        char full[4096];
        snprintf(full, sizeof full, "%s/%s", root, rel);
        int is_vol = ends_with(rel, ".nii.gz") || ends_with(rel, ".nii") || ends_with(rel, ".nrrd") || ends_with(rel, ".npz");
        int is_img = ends_with(rel, ".png") || ends_with(rel, ".jpg") || ends_with(rel, ".bmp");
        if (is_vol) {
            sl_add(&vols, full);
            sl_add(&items, rel);
            continue;
        }
        if (is_img) {
            sl_add(&items, rel);
            continue;
        }
        if (!is_dicom_file(full)) continue; /* README, csv, txt, tsv, SHA256SUMS, licence */
        char dir[4096];
        snprintf(dir, sizeof dir, "%s", rel);
        char *slash = strrchr(dir, '/');
        if (slash) *slash = 0;
        else dir[0] = 0;
        int all_dicom = 1;
        char fdir[8192];
        snprintf(fdir, sizeof fdir, "%s/%s", root, dir);
        DIR *d = opendir(fdir);
        struct dirent *e;
        while (d && (e = readdir(d))) {
            if (e->d_name[0] == '.') continue;
            char p[8448];
            snprintf(p, sizeof p, "%s/%s", fdir, e->d_name);
            if (!is_dicom_file(p)) all_dicom = 0;
        }
        if (d) closedir(d);
        const char *what = all_dicom ? dir : rel;
        int seen = 0;
        for (int i = 0; i < items.n; i++) seen |= !strcmp(items.items[i], what);
        if (!seen) {
            sl_add(&items, what);
            n_dcm++;
        }
    }
    oracle_stream os;
    oracle_start(&os, &vols);
    int n_ok = 0, n_img = 0, n_cmp = 0;
    for (int f = 0; f < items.n; f++) {
        const char *rel = items.items[f];
        char full[4096];
        snprintf(full, sizeof full, "%s/%s", root, rel);
        int is_vol = ends_with(rel, ".nii.gz") || ends_with(rel, ".nii") || ends_with(rel, ".nrrd") || ends_with(rel, ".npz");
        int is_img = ends_with(rel, ".png") || ends_with(rel, ".jpg") || ends_with(rel, ".bmp");
        medseg_volume v;
        medseg_error e;
        medseg_status st = medseg_volume_load(full, &v, &e);
        if (!is_vol && !is_img && st) g_dicom_ok = 0;
        CHECK(st == MEDSEG_OK, "%s does not load: %s", rel, e.message);
        cJSON *o = is_vol ? oracle_next(&os, full) : NULL;
        if (st) {
            cJSON_Delete(o);
            continue;
        }
        n_ok++;
        CHECK(v.spacing[0] > 0 && v.spacing[1] > 0 && v.spacing[2] > 0, "%s: spacing not positive", rel);
        check_expect(rel, &v);
        check_quirks(rel, &v);
        if (o) {
            check_vs_oracle(rel, &v, o, 1);
            n_cmp++;
            cJSON_Delete(o);
        }
        if (is_img) {
            n_img++;
            medseg_image im;
            CHECK_OK(medseg_image_load(full, &im, &e), &e);
            CHECK(v.dim[0] == im.width && v.dim[1] == im.height && v.dim[2] == 1 && v.dtype == MEDSEG_DT_U8 &&
                      v.channels == (im.channels == 1 ? 1 : 3),
                  "%s: image as volume %lld x %lld x %lld x %d, image %d x %d x %d", rel, (long long)v.dim[0],
                  (long long)v.dim[1], (long long)v.dim[2], v.channels, im.width, im.height, im.channels);
            if (im.channels == v.channels && im.data) CHECK(!memcmp(im.data, v.data, ms_volume_count(&v)), "%s: pixels differ", rel);
            medseg_image_free(&im);
        }
        medseg_volume_free(&v);
    }
    oracle_finish(&os);
    printf("data files: %d of %d loaded (%d 2D images, %d DICOM series/files); %d NIfTI/NRRD/npz equal the oracle's "
           "reading (sum, min, max, 11 voxels, affine, spacing, scaling)\n",
           n_ok, items.n, n_img, n_dcm, n_cmp);
    sl_free(&vols);
    sl_free(&items);
    sl_free(&files);
}

/* ---------------------------------------------------------------- 3: manifest statistics */

static void test_manifest(void)
{
    size_t len;
    uint8_t *txt = slurp(tu_path("data/manifest.tsv"), &len);
    char *save = NULL;
    int rows = 0, rows3d = 0;
    char cur_label[4096] = "";
    medseg_volume lab = {0};
    int have_lab = 0;
    for (char *line = strtok_r((char *)txt, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        if (rows++ == 0) continue; /* header */
        char *col[9] = {0};
        int nc = 0;
        char *p = line;
        while (nc < 9) {
            col[nc++] = p;
            char *t = strchr(p, '\t');
            if (!t) break;
            *t = 0;
            p = t + 1;
        }
        if (nc < 9 || strcmp(col[2], "3D")) continue;
        rows3d++;
        const char *image = col[3], *label = col[4];
        double value = atof(col[5]);
        long want_vox = -1, z0 = -1, z1 = -1;
        const char *s = strstr(col[8], "voxels=");
        if (s) want_vox = atol(s + 7);
        s = s ? strstr(s, "; z=") : NULL;
        if (s) sscanf(s + 4, "%ld-%ld", &z0, &z1);
        if (strcmp(cur_label, label)) {
            if (have_lab) medseg_volume_free(&lab);
            have_lab = 0;
            snprintf(cur_label, sizeof cur_label, "%s", label);
            medseg_error e;
            char full[4200];
            snprintf(full, sizeof full, "%s", tu_path("data/%s", label));
            medseg_status st = ends_with(label, ".npz") ? ms_npz_read_volume(full, "gts", &lab, &e) : medseg_volume_load(full, &lab, &e);
            CHECK(st == MEDSEG_OK, "manifest label %s: %s", label, e.message);
            have_lab = st == MEDSEG_OK;
            if (have_lab) {
                /* the image and the label share one voxel grid */
                medseg_volume im;
                char ifull[4200];
                snprintf(ifull, sizeof ifull, "%s", tu_path("data/%s", image));
                struct stat sb;
                int is_dir = stat(ifull, &sb) == 0 && S_ISDIR(sb.st_mode);
                if (!is_dir || g_dicom_ok) {
                    st = medseg_volume_load(ifull, &im, &e);
                    CHECK(st == MEDSEG_OK, "manifest image %s: %s", image, e.message);
                    if (!st) {
                        CHECK(im.dim[0] == lab.dim[0] && im.dim[1] == lab.dim[1] && im.dim[2] == lab.dim[2],
                              "%s vs %s: grids differ (%lld x %lld x %lld vs %lld x %lld x %lld)", image, label,
                              (long long)im.dim[0], (long long)im.dim[1], (long long)im.dim[2], (long long)lab.dim[0],
                              (long long)lab.dim[1], (long long)lab.dim[2]);
                        medseg_volume_free(&im);
                    }
                }
            }
        }
        if (!have_lab) continue;
        long count = 0, k0 = -1, k1 = -1;
        size_t plane = (size_t)lab.dim[0] * (size_t)lab.dim[1];
        for (int64_t k = 0; k < lab.dim[2]; k++) {
            long c = 0;
            for (size_t q = 0; q < plane; q++) c += medseg_volume_value(&lab, (size_t)k * plane + q) == value;
            if (c) {
                if (k0 < 0) k0 = (long)k;
                k1 = (long)k;
            }
            count += c;
        }
        CHECK(count == want_vox && k0 == z0 && k1 == z1, "manifest %s value %g: %ld voxels z=%ld-%ld, manifest says %ld z=%ld-%ld",
              label, value, count, k0, k1, want_vox, z0, z1);
    }
    if (have_lab) medseg_volume_free(&lab);
    free(txt);
    CHECK(rows3d == 67, "manifest: %d 3D rows, README says 67", rows3d);
    printf("manifest: %d 3D rows checked (voxel counts, z ranges, image/label grids)\n", rows3d);
}

/* README: imgs = uint8(trunc((clip(HU, -185, 265) + 185) / 450 * 255)), voxel [i,j,k] = imgs[k,j,i]. */
static void test_hu_vs_npz(void)
{
    medseg_volume hu, np;
    medseg_error e;
    CHECK_OK(medseg_volume_load(tu_path("data/medsam2_recist_ct/DeepLesion_000015_01_01_103-115_HU.nii.gz"), &hu, &e), &e);
    CHECK_OK(medseg_volume_load(tu_path("data/medsam2_recist_ct/CT_Lesion_000015_01_01_103-115.npz"), &np, &e), &e);
    if (!hu.data || !np.data) return;
    size_t n = ms_volume_count(&hu), bad = 0;
    CHECK(n == ms_volume_count(&np), "HU / npz sizes differ");
    for (size_t i = 0; n == ms_volume_count(&np) && i < n; i++) {
        double x = medseg_volume_value(&hu, i);
        x = x < -185 ? -185 : x > 265 ? 265 : x;
        bad += (uint8_t)(int)((x + 185) / 450 * 255) != ((uint8_t *)np.data)[i];
    }
    CHECK(bad == 0, "HU NIfTI windowed differs from the npz at %zu voxels", bad);
    /* same orientation (3x3 part); the npz origin is 0 */
    double d = 0;
    for (int r = 0; r < 3; r++)
        for (int c = 0; c < 3; c++) d = fmax(d, fabs(hu.affine[r][c] - np.affine[r][c]));
    CHECK(d < 1e-6, "npz direction/spacing vs the NIfTI sform differ by %g", d);
    printf("DeepLesion: HU NIfTI windowed == npz for %zu voxels; 3x3 affines agree (%.1e)\n", n, d);
    medseg_volume_free(&hu);
    medseg_volume_free(&np);
}

/* ---------------------------------------------------------------- 4: writers */

static void fill_labels(medseg_volume *l)
{
    size_t n = ms_volume_count(l);
    for (size_t q = 0; q < n; q++) {
        size_t i = q % (size_t)l->dim[0], j = q / (size_t)l->dim[0] % (size_t)l->dim[1], k = q / (size_t)l->dim[0] / (size_t)l->dim[1];
        unsigned v = (unsigned)((i * 3 + j * 5 + k * 7) % 11);
        if (l->dtype == MEDSEG_DT_U8) ((uint8_t *)l->data)[q] = (uint8_t)v;
        else ((uint16_t *)l->data)[q] = (uint16_t)(v * 300);
    }
}

static int same_volume(const medseg_volume *a, const medseg_volume *b)
{
    if (a->dim[0] != b->dim[0] || a->dim[1] != b->dim[1] || a->dim[2] != b->dim[2] || a->channels != b->channels ||
        a->dtype != b->dtype)
        return 0;
    return !memcmp(a->data, b->data, ms_volume_count(a) * ms_voxel_type_size(a->dtype));
}

/* Largest affine difference relative to max(1, |entry|) (NIfTI-1 stores the sform as float32);
 * check_affine and json_affine_diff measure the same way. */
static double affine_diff(const medseg_volume *a, const medseg_volume *b)
{
    double d = 0;
    for (int r = 0; r < 3; r++)
        for (int c = 0; c < 4; c++) d = fmax(d, fabs(a->affine[r][c] - b->affine[r][c]) / fmax(1.0, fabs(b->affine[r][c])));
    return d;
}

static void test_writers(void)
{
    medseg_error e;
    typedef struct {
        const char *src;    /* like */
        const char *out;    /* label map name in tmp */
        medseg_dtype dt;
    } case_t;
    static const case_t cases[] = {
        {"data/totalseg/example_seg_dicom.nii.gz", "seg_dicom_labels.nii.gz", MEDSEG_DT_U8},
        {"data/totalseg/example_seg_dicom.nii.gz", "seg_dicom_labels.nii", MEDSEG_DT_U16},
        {"data/deepmedic_brats2015/brats_2013_pat0001_1/OTMultiClass.nii.gz", "brats_labels.nii.gz", MEDSEG_DT_U8},
        {"data/pyradiomics/brain1_image.nrrd", "brain1_labels.nrrd", MEDSEG_DT_U8},
        {"data/pyradiomics/brain1_image.nrrd", "brain1_labels.nii.gz", MEDSEG_DT_U8},
        {"data/pyradiomics/prostate_phantom_subvolume.nrrd", "prostate_labels.nrrd", MEDSEG_DT_U16},
        {"data/medsam2_recist_ct/CT_Lesion_000015_01_01_103-115.npz", "ct_lesion_segs.npz", MEDSEG_DT_U8},
        {"data/medsam2_recist_ct/DeepLesion_000015_01_01_103-115_HU.nii.gz", "hu_labels.nrrd", MEDSEG_DT_U8},
    };
    enum { NC = sizeof cases / sizeof cases[0] };
    oracle_batch ob = {0};
    medseg_volume likes[NC], labs[NC];
    for (int c = 0; c < NC; c++) {
        CHECK_OK(medseg_volume_load(tu_path("%s", cases[c].src), &likes[c], &e), &e);
        CHECK_OK(ms_volume_alloc(&labs[c], likes[c].dim[0], likes[c].dim[1], likes[c].dim[2], 1, cases[c].dt, "labels", &e), &e);
        fill_labels(&labs[c]);
        CHECK_OK(ms_volume_copy_geometry(&labs[c], &likes[c], &e), &e); /* for comparing with the oracle */
        CHECK_OK(ms_labelmap_save(tmp_path(cases[c].out), &labs[c], &likes[c], &e), &e);
        char spec[1200];
        snprintf(spec, sizeof spec, "%s%s", tmp_path(cases[c].out), ends_with(cases[c].out, ".npz") ? "::segs" : "");
        sl_add(&ob.specs, spec);
        sl_add(&ob.specs, tu_path("%s", cases[c].src));
        /* our own reader gets the same values and geometry back */
        medseg_volume back;
        memset(&back, 0, sizeof back);
        if (!ends_with(cases[c].out, ".npz")) CHECK_OK(medseg_volume_load(tmp_path(cases[c].out), &back, &e), &e);
        if (back.data && !ends_with(cases[c].out, ".npz")) { /* npz: `imgs` is absent by design */
            CHECK(same_volume(&back, &labs[c]), "%s: label values differ after reading back", cases[c].out);
            CHECK(affine_diff(&back, &likes[c]) < 1e-7, "%s: affine differs after reading back by %g", cases[c].out,
                  affine_diff(&back, &likes[c]));
        }
        medseg_volume_free(&back);
        if (ends_with(cases[c].out, ".npz")) {
            CHECK_OK(ms_npz_read_volume(tmp_path(cases[c].out), "segs", &back, &e), &e);
            CHECK(same_volume(&back, &labs[c]) && affine_diff(&back, &likes[c]) < 1e-7, "%s: segs differ after reading back",
                  cases[c].out);
            medseg_volume_free(&back);
        }
    }
    oracle_run(&ob);
    for (int c = 0; c < NC; c++) {
        const cJSON *got = ob.res[2 * c], *src = ob.res[2 * c + 1];
        if (!got || !src) continue;
        /* independent reader: same values as written, same affine as the source file */
        check_vs_oracle(cases[c].out, &labs[c], got, 1);
        double d = json_affine_diff(got, src);
        CHECK(d <= 1e-6, "%s: affine read by the oracle differs from %s's by %g", cases[c].out, cases[c].src, d);
        if (ends_with(cases[c].src, ".nii.gz") && (ends_with(cases[c].out, ".nii.gz") || ends_with(cases[c].out, ".nii"))) {
            CHECK(jnum(got, "qform_code") == jnum(src, "qform_code") && jnum(got, "sform_code") == jnum(src, "sform_code"),
                  "%s: qform/sform codes %g/%g, source %g/%g", cases[c].out, jnum(got, "qform_code"), jnum(got, "sform_code"),
                  jnum(src, "qform_code"), jnum(src, "sform_code"));
            CHECK(jnum(got, "intent_code") == 1002 && jnum(got, "n_extensions") == 0, "%s: intent %g, %g extensions",
                  cases[c].out, jnum(got, "intent_code"), jnum(got, "n_extensions"));
        }
        printf("label map %-26s like %-60s affine diff %.1e\n", cases[c].out, cases[c].src, d);
    }
    oracle_free(&ob);
    for (int c = 0; c < NC; c++) {
        medseg_volume_free(&labs[c]);
        medseg_volume_free(&likes[c]);
    }
}

/* medseg_volume_save of inputs in each format, read back by us and by the oracle. */
static void test_round_trips(void)
{
    static const struct {
        const char *src, *out;
    } rt[] = {
        {"data/totalseg/example_mr_sm.nii.gz", "mr_sm.nii.gz"},
        {"data/deepmedic_brats2015/brats_2013_pat0001_1/brainmask.nii.gz", "brainmask.nii"},
        {"data/totalseg/example_seg_mr.nii.gz", "seg_mr_ext.nii.gz"},
        {"data/totalseg/example_ct_full_seg_v1_float64.nii.gz", "seg_v1_float64.nrrd"},
        {"data/pyradiomics/brain1_image.nrrd", "brain1.nrrd"},
        {"data/pyradiomics/brain1_image.nrrd", "brain1.nii"},
        {"data/medsam2_recist_ct/CT_Lesion_000001_02_01_008-023.npz", "ct_lesion.npz"},
        {"data/medsam2_recist_ct/CT_Lesion_000001_02_01_008-023.npz", "ct_lesion.nii.gz"},
        {"data/kvasir_seg_medsam/images/cju0qoxqj9q6s0835b43399p4.jpg", "kvasir.npz"},
        {"data/kvasir_seg_medsam/images/cju0qoxqj9q6s0835b43399p4.jpg", "kvasir.png"},
        {"data/hc18_fetal_us/000_HC.png", "hc.nii.gz"},
        {"tests/fuzz/corpus/volume/n2_float32.nii", "n2_float32.nii.gz"},
        {"tests/fuzz/corpus/volume/rgb_color.nrrd", "rgb.nrrd"},
        {"tests/fuzz/corpus/volume/rgb_color.nrrd", "rgb.nii"},
    };
    enum { NR = sizeof rt / sizeof rt[0] };
    medseg_error e;
    oracle_batch ob = {0};
    for (int c = 0; c < NR; c++) {
        medseg_volume a, b;
        CHECK_OK(medseg_volume_load(in_path(rt[c].src), &a, &e), &e);
        if (!a.data) continue;
        CHECK_OK(medseg_volume_save(tmp_path(rt[c].out), &a, &e), &e);
        CHECK_OK(medseg_volume_load(tmp_path(rt[c].out), &b, &e), &e);
        if (b.data) {
            CHECK(same_volume(&a, &b), "%s -> %s: values differ", rt[c].src, rt[c].out);
            if (!ends_with(rt[c].out, ".png")) {
                CHECK(affine_diff(&a, &b) < 1e-7, "%s -> %s: affine differs by %g", rt[c].src, rt[c].out, affine_diff(&a, &b));
                CHECK(a.scl_slope == b.scl_slope && a.scl_inter == b.scl_inter, "%s: scaling %g %g -> %g %g", rt[c].out,
                      a.scl_slope, a.scl_inter, b.scl_slope, b.scl_inter);
            }
        }
        if (!ends_with(rt[c].out, ".png") && !ends_with(rt[c].src, ".png") && !ends_with(rt[c].src, ".jpg")) {
            sl_add(&ob.specs, tmp_path(rt[c].out));
            sl_add(&ob.specs, in_path(rt[c].src));
        }
        medseg_volume_free(&a);
        medseg_volume_free(&b);
    }
    oracle_run(&ob);
    for (int i = 0; i + 1 < ob.specs.n; i += 2) {
        const cJSON *got = ob.res[i], *src = ob.res[i + 1];
        if (!got || !src) continue;
        CHECK(jnum(got, "sum") == jnum(src, "sum") && jnum(got, "min") == jnum(src, "min") && jnum(got, "max") == jnum(src, "max"),
              "%s: oracle sum/min/max %.17g %g %g vs source %.17g %g %g", ob.specs.items[i], jnum(got, "sum"), jnum(got, "min"),
              jnum(got, "max"), jnum(src, "sum"), jnum(src, "min"), jnum(src, "max"));
        double d = json_affine_diff(got, src);
        CHECK(d <= 1e-6, "%s: oracle affine differs from the source's by %g", ob.specs.items[i], d);
        if (cJSON_GetObjectItem(src, "n_extensions") && cJSON_GetObjectItem(got, "n_extensions") && strstr(ob.specs.items[i], ".nii"))
            CHECK(jnum(got, "n_extensions") == jnum(src, "n_extensions") && jnum(got, "qform_code") == jnum(src, "qform_code") &&
                      jnum(got, "sform_code") == jnum(src, "sform_code"),
                  "%s: extensions/qform/sform %g/%g/%g vs source %g/%g/%g", ob.specs.items[i], jnum(got, "n_extensions"),
                  jnum(got, "qform_code"), jnum(got, "sform_code"), jnum(src, "n_extensions"), jnum(src, "qform_code"),
                  jnum(src, "sform_code"));
        printf("round trip %-40s oracle sum %.10g, affine diff %.1e\n", ob.specs.items[i] + strlen(g_tmp) + 1, jnum(got, "sum"), d);
    }
    oracle_free(&ob);
}

/* A NIfTI whose affine was changed after loading is written with the new affine (sform and
 * qform from it), not with the stale header. */
static void test_changed_affine(void)
{
    medseg_error e;
    medseg_volume v, b;
    CHECK_OK(medseg_volume_load(tu_path("data/totalseg/example_mr_sm.nii.gz"), &v, &e), &e);
    if (!v.data) return;
    v.affine[0][3] += 12.5;
    v.affine[2][3] -= 3;
    CHECK_OK(medseg_volume_save(tmp_path("moved.nii.gz"), &v, &e), &e);
    CHECK_OK(medseg_volume_load(tmp_path("moved.nii.gz"), &b, &e), &e);
    if (b.data) CHECK(affine_diff(&v, &b) < 1e-7, "changed affine not written (diff %g)", affine_diff(&v, &b));
    oracle_batch ob = {0};
    sl_add(&ob.specs, tmp_path("moved.nii.gz"));
    oracle_run(&ob);
    if (ob.res[0]) {
        check_affine("moved.nii.gz (nibabel)", v.affine, cJSON_GetObjectItem(ob.res[0], "affine"), 1e-6);
        CHECK(jnum(ob.res[0], "sform_code") > 0 && jnum(ob.res[0], "qform_code") > 0, "moved.nii.gz: codes %g %g",
              jnum(ob.res[0], "sform_code"), jnum(ob.res[0], "qform_code"));
    }
    oracle_free(&ob);
    medseg_volume_free(&b);
    medseg_volume_free(&v);
}

static void test_png_slices_and_refusals(void)
{
    medseg_error e;
    medseg_volume like, lab;
    CHECK_OK(medseg_volume_load(tu_path("data/medsam2_recist_ct/CT_Lesion_000015_01_01_081-093.npz"), &like, &e), &e);
    if (!like.data) return;
    CHECK_OK(ms_volume_alloc(&lab, like.dim[0], like.dim[1], like.dim[2], 1, MEDSEG_DT_U8, "labels", &e), &e);
    fill_labels(&lab);
    CHECK_OK(ms_labelmap_save_png_slices(g_tmp, "slice", &lab, &e), &e);
    size_t plane = (size_t)lab.dim[0] * (size_t)lab.dim[1];
    int good = 0;
    for (int64_t k = 0; k < lab.dim[2]; k++) {
        char name[64];
        snprintf(name, sizeof name, "slice_%04lld.png", (long long)k);
        medseg_image im;
        if (medseg_image_load(tmp_path(name), &im, &e) == MEDSEG_OK) {
            good += im.width == lab.dim[0] && im.height == lab.dim[1] && im.channels == 1 &&
                    !memcmp(im.data, (uint8_t *)lab.data + (size_t)k * plane, plane);
            medseg_image_free(&im);
        }
    }
    CHECK(good == lab.dim[2], "PNG slices: %d of %lld read back equal", good, (long long)lab.dim[2]);
    /* 2D label map as PNG, values as stored */
    medseg_volume l2;
    CHECK_OK(ms_volume_alloc(&l2, 7, 5, 1, 1, MEDSEG_DT_U8, "l2", &e), &e);
    fill_labels(&l2);
    medseg_volume im2 = l2;
    im2.priv = NULL;
    CHECK_OK(ms_labelmap_save(tmp_path("small_labels.png"), &l2, &im2, &e), &e);
    medseg_volume back;
    CHECK_OK(medseg_volume_load(tmp_path("small_labels.png"), &back, &e), &e);
    CHECK(back.data && same_volume(&back, &l2), "2D label PNG differs after reading back");
    medseg_volume_free(&back);
    medseg_volume_free(&l2);

    /* refusals: nothing may appear at the target path */
    medseg_volume small;
    CHECK_OK(ms_volume_alloc(&small, 4, 4, 4, 1, MEDSEG_DT_U8, "small", &e), &e);
    medseg_status st = ms_labelmap_save(tmp_path("mismatch.nii.gz"), &small, &like, &e);
    CHECK(st == MEDSEG_ERR_ARG && !file_exists(tmp_path("mismatch.nii.gz")), "geometry mismatch: %s", e.message);
    printf("refused (geometry mismatch): %s\n", e.message);
    st = ms_labelmap_save(tmp_path("no_such_dir/x.nii.gz"), &lab, &like, &e);
    CHECK(st == MEDSEG_ERR_IO, "missing folder: %d %s", st, e.message);
    st = ms_labelmap_save(tmp_path("x.mha"), &lab, &like, &e);
    CHECK(st == MEDSEG_ERR_ARG && !file_exists(tmp_path("x.mha")), "unknown extension: %s", e.message);
    st = medseg_volume_save(tmp_path("multi.png"), &lab, &e);
    CHECK(st != MEDSEG_OK && !file_exists(tmp_path("multi.png")), "3D volume to PNG: %s", e.message);
    medseg_volume f32;
    CHECK_OK(ms_volume_alloc(&f32, 4, 4, 4, 1, MEDSEG_DT_F32, "f32", &e), &e);
    st = ms_labelmap_save(tmp_path("float_labels.nii"), &f32, &small, &e);
    CHECK(st == MEDSEG_ERR_ARG && !file_exists(tmp_path("float_labels.nii")), "float label map: %s", e.message);
    medseg_volume_free(&f32);
    medseg_volume_free(&small);
    medseg_volume_free(&lab);
    medseg_volume_free(&like);
}

/* ---------------------------------------------------------------- 5: bad input */

/* Loading path must fail cleanly; returns the status. */
static medseg_status expect_fail(const char *what, const char *path)
{
    medseg_volume v;
    medseg_error e;
    memset(&e, 0, sizeof e);
    medseg_status st = medseg_volume_load(path, &v, &e);
    CHECK(st != MEDSEG_OK, "%s: loaded although it is bad", what);
    CHECK(st == MEDSEG_OK || (e.message[0] && strstr(e.message, path)), "%s: error does not name the file: '%s'", what, e.message);
    if (st == MEDSEG_OK) medseg_volume_free(&v);
    return st;
}

static void truncations(const char *src, const char *name)
{
    size_t len;
    uint8_t *b = slurp(src, &len);
    size_t cuts[] = {0, 3, 100, 200, 347, 351, 360, len / 3, len / 2, len - 9, len - 4, len - 1};
    int n = 0;
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        if (cuts[i] >= len) continue;
        char nm[256];
        snprintf(nm, sizeof nm, "trunc_%zu_%s", cuts[i], name);
        spit(tmp_path(nm), b, cuts[i]);
        expect_fail(nm, tmp_path(nm));
        n++;
    }
    printf("truncated copies of %s: %d refused\n", name, n);
    free(b);
}

static void put_i16(uint8_t *b, size_t off, int v) { b[off] = (uint8_t)(v & 255), b[off + 1] = (uint8_t)((v >> 8) & 255); }

static void put_f32(uint8_t *b, size_t off, float f) { memcpy(b + off, &f, 4); }

static void test_bad_nifti(void)
{
    medseg_error e;
    medseg_volume v;
    /* an uncompressed NIfTI-1 with a header extension, written by us from the MR label map */
    CHECK_OK(medseg_volume_load(tu_path("data/totalseg/example_seg_mr.nii.gz"), &v, &e), &e);
    CHECK_OK(medseg_volume_save(tmp_path("mr.nii"), &v, &e), &e);
    medseg_volume_free(&v);
    truncations(tmp_path("mr.nii"), "mr.nii");
    truncations(tu_path("data/totalseg/example_seg_mr.nii.gz"), "example_seg_mr.nii.gz");
    size_t len;
    uint8_t *orig = slurp(tmp_path("mr.nii"), &len);
    uint8_t *b = malloc(len);
    struct {
        const char *name;
        void (*patch)(uint8_t *);
        medseg_status want;
        const char *msg; /* substring of the error */
    } cases[] = {
        {"huge_dims", NULL, MEDSEG_ERR_NOMEM, "cap"},
        {"neg_dim", NULL, MEDSEG_ERR_FORMAT, "dim"},
        {"real_4d", NULL, MEDSEG_ERR_UNSUPPORTED, "4D"},
        {"complex", NULL, MEDSEG_ERR_UNSUPPORTED, "datatype"},
        {"vox_offset", NULL, MEDSEG_ERR_FORMAT, "truncated"},
        {"bitpix", NULL, MEDSEG_ERR_FORMAT, "bitpix"},
        {"sizeof_hdr", NULL, MEDSEG_ERR_FORMAT, "NIfTI"},
        {"ext_size", NULL, MEDSEG_ERR_FORMAT, "extension"},
        {"two_file", NULL, MEDSEG_ERR_UNSUPPORTED, "two-file"},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        memcpy(b, orig, len);
        const char *n = cases[c].name;
        if (!strcmp(n, "huge_dims")) put_i16(b, 42, 32767), put_i16(b, 44, 32767), put_i16(b, 46, 32767);
        if (!strcmp(n, "neg_dim")) put_i16(b, 44, -5);
        if (!strcmp(n, "real_4d")) put_i16(b, 40, 4), put_i16(b, 48, 2);
        if (!strcmp(n, "complex")) put_i16(b, 70, 32), put_i16(b, 72, 64);
        if (!strcmp(n, "vox_offset")) put_f32(b, 108, 1e9f);
        if (!strcmp(n, "bitpix")) put_i16(b, 72, 16);
        if (!strcmp(n, "sizeof_hdr")) b[0] = 0x7f;
        if (!strcmp(n, "ext_size")) b[352] = 1, memset(b + 356, 0x7f, 3);
        if (!strcmp(n, "two_file")) memcpy(b + 344, "ni1", 4);
        char nm[128];
        snprintf(nm, sizeof nm, "bad_%s.nii", n);
        spit(tmp_path(nm), b, len);
        memset(&e, 0, sizeof e);
        medseg_status st = medseg_volume_load(tmp_path(nm), &v, &e);
        CHECK(st == cases[c].want && strstr(e.message, cases[c].msg), "%s: status %d (want %d): %s", nm, st, cases[c].want, e.message);
        if (st == MEDSEG_OK) medseg_volume_free(&v);
        else printf("refused %-22s %s\n", nm, strstr(e.message, nm) ? strstr(e.message, nm) : e.message);
    }
    /* 4D with a single volume is fine */
    memcpy(b, orig, len);
    put_i16(b, 40, 4);
    put_i16(b, 48, 1);
    spit(tmp_path("one_volume_4d.nii"), b, len);
    CHECK_OK(medseg_volume_load(tmp_path("one_volume_4d.nii"), &v, &e), &e);
    if (v.data) CHECK(v.dim[2] == 20, "4D with dim[4] = 1: nz %lld", (long long)v.dim[2]);
    medseg_volume_free(&v);
    /* corrupt deflate data inside a .nii.gz */
    size_t gl;
    uint8_t *g = slurp(tu_path("data/totalseg/example_seg_mr.nii.gz"), &gl);
    for (size_t i = gl / 2; i < gl / 2 + 64 && i < gl; i++) g[i] ^= 0x5a;
    spit(tmp_path("corrupt.nii.gz"), g, gl);
    expect_fail("corrupt gzip", tmp_path("corrupt.nii.gz"));
    free(g);
    free(b);
    free(orig);
}

static void write_text_nrrd(const char *name, const char *hdr, const void *data, size_t n)
{
    FILE *f = fopen(tmp_path(name), "wb");
    fputs(hdr, f);
    if (n) fwrite(data, 1, n, f);
    fclose(f);
}

static void test_bad_nrrd(void)
{
    truncations(tu_path("data/pyradiomics/breast1_label.nrrd"), "breast1_label.nrrd");
    int16_t d[24];
    for (int i = 0; i < 24; i++) d[i] = (int16_t)(i * 37 - 400);
    static const struct {
        const char *name, *hdr;
        medseg_status want;
        const char *msg;
    } cases[] = {
        {"detached.nrrd", "NRRD0004\ntype: short\ndimension: 3\nsizes: 4 3 2\nencoding: raw\ndata file: x.raw\n\n",
         MEDSEG_ERR_UNSUPPORTED, "detached"},
        {"bzip2.nrrd", "NRRD0004\ntype: short\ndimension: 3\nsizes: 4 3 2\nencoding: bzip2\n\n", MEDSEG_ERR_UNSUPPORTED, "bzip2"},
        {"ascii.nrrd", "NRRD0004\ntype: short\ndimension: 3\nsizes: 4 3 2\nencoding: ascii\n\n", MEDSEG_ERR_UNSUPPORTED, "ascii"},
        {"huge.nrrd", "NRRD0004\ntype: short\ndimension: 3\nsizes: 65536 65536 65536\nencoding: raw\n\n", MEDSEG_ERR_NOMEM, "cap"},
        {"overflow.nrrd", "NRRD0004\ntype: short\ndimension: 3\nsizes: 99999999999999999999 3 2\nencoding: raw\n\n",
         MEDSEG_ERR_NOMEM, "cap"},
        {"mismatch.nrrd", "NRRD0004\ntype: short\ndimension: 3\nsizes: 4 3\nencoding: raw\n\n", MEDSEG_ERR_FORMAT, "dimension"},
        {"short_data.nrrd", "NRRD0004\ntype: int\ndimension: 3\nsizes: 4 3 2\nencoding: raw\n\n", MEDSEG_ERR_FORMAT, "truncated"},
        {"no_blank.nrrd", "NRRD0004\ntype: short\ndimension: 3\nsizes: 4 3 2\nencoding: raw\n", MEDSEG_ERR_FORMAT, "blank line"},
        {"block.nrrd", "NRRD0004\ntype: block\ndimension: 3\nsizes: 4 3 2\nencoding: raw\n\n", MEDSEG_ERR_UNSUPPORTED, "block"},
        {"dim5.nrrd", "NRRD0004\ntype: short\ndimension: 5\nsizes: 4 3 2 1 1\nencoding: raw\n\n", MEDSEG_ERR_UNSUPPORTED, "dimension"},
        {"gzip_bad.nrrd", "NRRD0004\ntype: short\ndimension: 3\nsizes: 4 3 2\nencoding: gzip\n\n", MEDSEG_ERR_FORMAT, "gzip"},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        size_t nd = strstr(cases[c].name, "short_data") ? 40 : strstr(cases[c].name, "no_blank") ? 0 : sizeof d;
        write_text_nrrd(cases[c].name, cases[c].hdr, d, nd);
        medseg_volume v;
        medseg_error e;
        memset(&e, 0, sizeof e);
        medseg_status st = medseg_volume_load(tmp_path(cases[c].name), &v, &e);
        CHECK(st == cases[c].want && strstr(e.message, cases[c].msg), "%s: status %d (want %d): %s", cases[c].name, st,
              cases[c].want, e.message);
        if (st == MEDSEG_OK) medseg_volume_free(&v);
        else printf("refused %-22s %s\n", cases[c].name, strstr(e.message, cases[c].name));
    }
    /* valid variants: raw little/big endian with byte skip, RAS space, CRLF lines */
    write_text_nrrd("ok_raw.nrrd", "NRRD0004\r\n# c\r\ntype: int16\r\ndimension: 3\r\nspace: RAS\r\nsizes: 4 3 2\r\n"
                                   "space directions: (2,0,0) (0,-3,0) (0,0,4)\r\nspace origin: (1,2,3)\r\nendian: little\r\n"
                                   "encoding: raw\r\n\r\n", d, sizeof d);
    uint8_t be[4 + sizeof d];
    memset(be, 0xee, 4);
    for (int i = 0; i < 24; i++) be[4 + 2 * i] = (uint8_t)((uint16_t)d[i] >> 8), be[5 + 2 * i] = (uint8_t)(d[i] & 255);
    write_text_nrrd("ok_be.nrrd", "NRRD0004\ntype: short\ndimension: 3\nsizes: 4 3 2\nspacings: 0.5 0.6 0.7\nendian: big\n"
                                  "byte skip: 4\nencoding: raw\n\n", be, sizeof be);
    const char *ok[] = {"ok_raw.nrrd", "ok_be.nrrd"};
    for (int i = 0; i < 2; i++) {
        medseg_volume v;
        medseg_error e;
        CHECK_OK(medseg_volume_load(tmp_path(ok[i]), &v, &e), &e);
        if (!v.data) continue;
        CHECK(v.dtype == MEDSEG_DT_I16 && ms_volume_count(&v) == 24 && !memcmp(v.data, d, sizeof d), "%s: values", ok[i]);
        if (i == 0)
            CHECK(v.affine[0][0] == 2 && v.affine[1][1] == -3 && v.affine[2][2] == 4 && v.affine[0][3] == 1 && v.spacing[1] == 3,
                  "%s: RAS geometry", ok[i]);
        else CHECK(v.affine[0][0] == 0.5 && v.affine[1][1] == 0.6 && v.affine[2][2] == 0.7, "%s: spacings", ok[i]);
        medseg_volume_free(&v);
    }
}

static void test_bad_npz(void)
{
    const char *src = tu_path("data/medsam2_recist_ct/CT_Lesion_000015_01_01_081-093.npz");
    truncations(src, "ct_lesion.npz");
    size_t len;
    uint8_t *b = slurp(src, &len);
    /* corrupt deflate data in the first member */
    for (size_t i = 200; i < 260 && i < len; i++) b[i] ^= 0xa5;
    spit(tmp_path("corrupt.npz"), b, len);
    expect_fail("corrupt npz", tmp_path("corrupt.npz"));
    free(b);
    /* an npz without `imgs` */
    medseg_volume v;
    medseg_error e;
    CHECK_OK(ms_npz_read_volume(src, "gts", &v, &e), &e);
    CHECK_OK(ms_npz_write_volume(tmp_path("only_segs.npz"), "segs", &v, &e), &e);
    medseg_volume_free(&v);
    medseg_status st = medseg_volume_load(tmp_path("only_segs.npz"), &v, &e);
    CHECK(st == MEDSEG_ERR_FORMAT && strstr(e.message, "imgs"), "npz without imgs: %s", e.message);
    double *boxes;
    int n, nc;
    CHECK_OK(ms_npz_read_boxes(tu_path("data/cvpr24_medsam_laptop_npz/2DBox_Mammography_demo.npz"), &boxes, &n, &nc, &e), &e);
    CHECK(n == 4 && nc == 4, "boxes: %d x %d, README says 4 x 4", n, nc);
    if (n == 4 && nc == 4) {
        int ok = 1;
        for (int i = 0; i < 4; i++) ok &= boxes[i * 4] < boxes[i * 4 + 2] && boxes[i * 4 + 1] < boxes[i * 4 + 3] && boxes[i * 4] >= 0 &&
                                          boxes[i * 4 + 2] < 1726 && boxes[i * 4 + 3] < 2604;
        CHECK(ok, "boxes are not [x_min, y_min, x_max, y_max] inside the 1726 x 2604 image");
        printf("boxes: 4 x 4, first [%g %g %g %g]\n", boxes[0], boxes[1], boxes[2], boxes[3]);
    }
    free(boxes);
    st = ms_npz_read_boxes(src, &boxes, &n, &nc, &e);
    CHECK(st != MEDSEG_OK && boxes == NULL, "npz without boxes: %s", e.message);
}

/* ---------------------------------------------------------------- 6: fuzz corpus */

static void test_fuzz_corpus(void)
{
    const char *dir = MEDSEG_SOURCE_DIR "/tests/fuzz/corpus/volume";
    strlist files = {0};
    walk(dir, "", &files);
    CHECK(files.n >= 10, "fuzz corpus %s has %d files", dir, files.n);
    oracle_batch ob = {0};
    long runs = 0;
    int seeds = 0;
    for (int f = 0; f < files.n; f++) {
        char p[4096];
        snprintf(p, sizeof p, "%s/%s", dir, files.items[f]);
        /* hand-made seeds have a file extension; libFuzzer's finds are named by their SHA-1 */
        int seed = strchr(files.items[f], '.') != NULL;
        size_t len;
        uint8_t *b = slurp(p, &len);
        ms_fuzz_one_volume(b, len);
        runs++;
        if (!len) {
            free(b);
            continue;
        }
        /* deterministic mutations: truncations and byte flips / boundary values */
        uint8_t *m = malloc(len);
        int ncut = seed ? 64 : 4, nmut = seed ? 300 : 12;
        for (int c = 0; c < ncut; c++, runs++) ms_fuzz_one_volume(b, (size_t)((double)len * c / ncut));
        uint32_t st = 12345u + (uint32_t)f;
        for (int r = 0; r < nmut; r++, runs++) {
            memcpy(m, b, len);
            for (int k = 0; k < 1 + r % 4; k++) {
                st = st * 1103515245u + 12345u;
                size_t at = (st >> 8) % len;
                static const uint8_t vals[] = {0x00, 0xff, 0x7f, 0x80, 0x01, 0xfe};
                m[at] = (r & 1) ? vals[(st >> 4) % 6] : (uint8_t)(m[at] ^ (1u << ((st >> 3) & 7)));
            }
            ms_fuzz_one_volume(m, len);
        }
        free(m);
        free(b);
        if (seed) { /* the seeds load, and agree with the oracle */
            medseg_volume v;
            medseg_error e;
            CHECK_OK(medseg_volume_load(p, &v, &e), &e);
            medseg_volume_free(&v);
            sl_add(&ob.specs, p);
            seeds++;
        }
    }
    oracle_run(&ob);
    for (int i = 0; i < ob.specs.n; i++) {
        medseg_volume v;
        medseg_error e;
        if (medseg_volume_load(ob.specs.items[i], &v, &e) == MEDSEG_OK) {
            check_vs_oracle(ob.specs.items[i] + strlen(dir) + 1, &v, ob.res[i], 1);
            medseg_volume_free(&v);
        }
    }
    printf("fuzz corpus: %d files (%d seeds checked against the oracle), %ld harness runs with mutations\n", files.n, seeds,
           runs);
    oracle_free(&ob);
    sl_free(&files);
}

/* Nothing but finished files in the scratch folder (no temporaries left by failed writes). */
static void test_no_temporaries(void)
{
    DIR *d = opendir(g_tmp);
    struct dirent *e;
    int tmps = 0;
    while (d && (e = readdir(d)))
        if (strstr(e->d_name, ".tmp.")) {
            tmps++;
            fprintf(stderr, "left behind: %s\n", e->d_name);
        }
    if (d) closedir(d);
    CHECK(tmps == 0, "%d temporary files left behind", tmps);
}

static void rm_rf(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char p[1400];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        struct stat sb;
        if (lstat(p, &sb) == 0 && S_ISDIR(sb.st_mode)) rm_rf(p);
        else unlink(p);
    }
    if (d) closedir(d);
    rmdir(dir);
}

int main(void)
{
    const char *t = getenv("TMPDIR");
    snprintf(g_tmp, sizeof g_tmp, "%s/medseg_test_volume_XXXXXX", t && *t ? t : "/tmp");
    if (!mkdtemp(g_tmp)) {
        perror("mkdtemp");
        return 2;
    }
    double t0 = ms_now_ms();
    test_all_files();
    if (!g_dicom_ok) printf("note: some DICOM input did not load (see the failures above)\n");
    /* npz label arrays too */
    oracle_batch og = {0};
    static const char *gts[] = {"CT_Lesion_000001_02_01_008-023.npz", "CT_Lesion_000015_01_01_081-093.npz",
                                "CT_Lesion_000015_01_01_103-115.npz"};
    for (int i = 0; i < 3; i++) {
        char s[4200];
        snprintf(s, sizeof s, "%s::gts", tu_path("data/medsam2_recist_ct/%s", gts[i]));
        sl_add(&og.specs, s);
    }
    oracle_run(&og);
    for (int i = 0; i < 3; i++) {
        medseg_volume v;
        medseg_error e;
        CHECK_OK(ms_npz_read_volume(tu_path("data/medsam2_recist_ct/%s", gts[i]), "gts", &v, &e), &e);
        if (v.data) check_vs_oracle(gts[i], &v, og.res[i], 1);
        medseg_volume_free(&v);
    }
    oracle_free(&og);
    printf("[%.1f s] data files\n", (ms_now_ms() - t0) / 1000);
    test_manifest();
    printf("[%.1f s] manifest\n", (ms_now_ms() - t0) / 1000);
    test_hu_vs_npz();
    test_writers();
    printf("[%.1f s] writers\n", (ms_now_ms() - t0) / 1000);
    test_round_trips();
    test_changed_affine();
    test_png_slices_and_refusals();
    printf("[%.1f s] round trips\n", (ms_now_ms() - t0) / 1000);
    test_bad_nifti();
    test_bad_nrrd();
    test_bad_npz();
    printf("[%.1f s] bad input\n", (ms_now_ms() - t0) / 1000);
    test_fuzz_corpus();
    test_no_temporaries();
    rm_rf(g_tmp);
    printf("time: %.1f s\n", (ms_now_ms() - t0) / 1000);
    return tu_finish("test_volume_io");
}
