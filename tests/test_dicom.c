/* DICOM reader tests: every DICOM under ../shared/data loads with the README's geometry; stored
 * values equal pydicom+GDCM's pixel_array exactly and voxel centres match dcm2niix's NIfTI within
 * 1e-3 mm with equal values (tests/dicom_oracle.py); the totalseg label overlays the DICOM volume;
 * synthetic files (explicit VR, RLE, planar RGB, YBR_FULL, deflated, big endian, JPEG-LS / JPEG /
 * JPEG 2000 encoded by GDCM, two series in one folder, per-slice rescale) read as the oracle says;
 * truncated, corrupted and random-byte copies give errors without crashing, in bounded time. */
#include "testutil.h"
#include "io/dicom.h"
#include "io/volume.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef MEDSEG_SOURCE_DIR
#error "MEDSEG_SOURCE_DIR must name the source tree (tests/tests.cmake defines it)"
#endif
#define PY "/usr/bin/python3"
#define ORACLE MEDSEG_SOURCE_DIR "/tests/dicom_oracle.py"

static char g_tmp[256];

/* Stored values as float64 (k, j, i, c order) + meta.txt for the oracle. */
static int dump_volume(const medseg_volume *v, const char *dir)
{
    char p[512];
    snprintf(p, sizeof p, "mkdir -p '%s'", dir);
    if (system(p) != 0) return 0;
    snprintf(p, sizeof p, "%s/vol.raw", dir);
    FILE *f = fopen(p, "wb");
    if (!f) return 0;
    size_t n = ms_volume_count(v);
    medseg_volume s = *v;
    s.scl_slope = 1;
    s.scl_inter = 0;
    for (size_t i = 0; i < n; i++) {
        double x = medseg_volume_value(&s, i);
        fwrite(&x, 8, 1, f);
    }
    fclose(f);
    snprintf(p, sizeof p, "%s/meta.txt", dir);
    f = fopen(p, "w");
    if (!f) return 0;
    fprintf(f, "%lld %lld %lld %d\n%.17g %.17g\n", (long long)v->dim[0], (long long)v->dim[1], (long long)v->dim[2],
            v->channels, v->scl_slope, v->scl_inter);
    for (int r = 0; r < 3; r++) fprintf(f, "%.17g %.17g %.17g %.17g\n", v->affine[r][0], v->affine[r][1], v->affine[r][2], v->affine[r][3]);
    fclose(f);
    return 1;
}

static void oracle_check(const medseg_volume *v, const char *dicom, const char *extra, const char *label)
{
    char dir[300], cmd[2048];
    snprintf(dir, sizeof dir, "%s/ours", g_tmp);
    CHECK(dump_volume(v, dir), "dump for %s", label);
    snprintf(cmd, sizeof cmd, PY " " ORACLE " check '%s' '%s' %s", dicom, dir, extra);
    printf("-- oracle: %s\n", label);
    fflush(stdout);
    int rc = system(cmd);
    CHECK(rc == 0, "oracle check of %s (%s) failed (status %d)", label, dicom, rc);
}

static double vox_world(const medseg_volume *v, int r, double i, double j, double k)
{
    return v->affine[r][0] * i + v->affine[r][1] * j + v->affine[r][2] * k + v->affine[r][3];
}

static void test_shared(void)
{
    medseg_volume v;
    medseg_error e;
    /* TotalSegmentator CT: 20 slices JPEG 2000, k=0 at z=-804.5, 2 mm spacing, label overlay. */
    const char *ts = tu_path("data/totalseg/example_ct_dicom");
    double t0 = ms_now_ms();
    CHECK_OK(ms_dicom_read_path(ts, NULL, &v, &e), &e);
    printf("totalseg/example_ct_dicom: %.0f ms\n", ms_now_ms() - t0);
    if (v.data) {
        CHECK(v.dim[0] == 512 && v.dim[1] == 512 && v.dim[2] == 20, "dims %lld %lld %lld", (long long)v.dim[0],
              (long long)v.dim[1], (long long)v.dim[2]);
        CHECK(v.dtype == MEDSEG_DT_U16 && v.scl_slope == 1 && v.scl_inter == -1024, "dtype %d slope %g inter %g", v.dtype,
              v.scl_slope, v.scl_inter);
        CHECK(fabs(v.affine[2][3] + 804.5) < 1e-6, "k=0 z %g", v.affine[2][3]);
        CHECK(fabs(v.spacing[2] - 2.0) < 1e-6, "slice spacing %g (SliceThickness is 3)", v.spacing[2]);
        CHECK(v.source_space == MEDSEG_SPACE_LPS && !strcmp(v.format, "dicom") && !strcmp(v.modality, "CT"), "meta");
        CHECK(strstr(v.compression, "JPEG 2000") != NULL, "compression '%s'", v.compression);
        char extra[1200];
        snprintf(extra, sizeof extra, "--dcm2niix --label '%s'", tu_path("data/totalseg/example_seg_dicom.nii.gz"));
        oracle_check(&v, ts, extra, "totalseg dicom");
        medseg_volume_free(&v);
    }
    /* dcmqi 3-slice CT: implicit VR, signed, k=0 is 03.dcm at z=-128.69, spacing 1.0 (thickness 1.25). */
    const char *ct3 = tu_path("data/dcmqi_ct3slice/ct-3slice");
    CHECK_OK(ms_dicom_read_path(ct3, NULL, &v, &e), &e);
    medseg_volume ct = v;
    if (v.data) {
        CHECK(v.dim[0] == 512 && v.dim[1] == 512 && v.dim[2] == 3, "ct3 dims");
        CHECK(v.dtype == MEDSEG_DT_I16 && v.scl_inter == -1024, "ct3 dtype %d inter %g", v.dtype, v.scl_inter);
        CHECK(fabs(v.affine[2][3] + 128.69) < 1e-3 && fabs(v.spacing[2] - 1.0) < 1e-4, "ct3 z0 %g dz %g", v.affine[2][3],
              v.spacing[2]);
        double mn = 1e9;
        for (size_t i = 0; i < ms_volume_count(&v); i++) { double x = medseg_volume_value(&v, i); if (x < mn) mn = x; }
        CHECK(mn == -3024, "ct3 min HU %g", mn);
        oracle_check(&v, ct3, "--dcm2niix", "dcmqi ct-3slice");
        /* k=0 must equal 03.dcm read alone */
        medseg_volume one;
        CHECK_OK(ms_dicom_read_path(tu_path("data/dcmqi_ct3slice/ct-3slice/03.dcm"), NULL, &one, &e), &e);
        if (one.data) {
            CHECK(one.dim[2] == 1 && !memcmp(one.data, v.data, 512 * 512 * 2), "k=0 is 03.dcm");
            CHECK(fabs(one.affine[2][3] + 128.69) < 1e-3, "03.dcm z");
            medseg_volume_free(&one);
        }
    }
    /* DICOM-SEG liver.dcm: 3 one-bit frames, same grid as the CT, frames z ascending. */
    const char *seg = tu_path("data/dcmqi_ct3slice/liver.dcm");
    CHECK_OK(ms_dicom_read_path(seg, NULL, &v, &e), &e);
    if (v.data) {
        CHECK(v.dim[0] == 512 && v.dim[1] == 512 && v.dim[2] == 3 && v.dtype == MEDSEG_DT_U8, "seg dims/dtype");
        size_t ones = 0, other = 0;
        for (size_t i = 0; i < ms_volume_count(&v); i++) {
            uint8_t b = ((uint8_t *)v.data)[i];
            ones += b == 1;
            other += b > 1;
        }
        CHECK(ones > 1000 && other == 0, "seg has %zu ones, %zu other values", ones, other);
        if (ct.data) {
            double md = 0;
            for (int r = 0; r < 3; r++)
                for (int c = 0; c < 4; c++) md = fmax(md, fabs(v.affine[r][c] - ct.affine[r][c]));
            CHECK(md < 1e-4, "SEG affine equals the CT's (max diff %g)", md);
        }
        oracle_check(&v, seg, "", "dcmqi liver.dcm SEG");
        medseg_volume_free(&v);
    }
    if (ct.data) medseg_volume_free(&ct);
    /* niivue MR: 12 slices, implicit VR, unsigned, no rescale. */
    const char *mr = tu_path("data/niivue_vsseg_mr_dicom");
    CHECK_OK(ms_dicom_read_path(mr, NULL, &v, &e), &e);
    if (v.data) {
        CHECK(v.dim[0] == 512 && v.dim[1] == 512 && v.dim[2] == 12 && v.dtype == MEDSEG_DT_U16, "mr dims/dtype");
        CHECK(v.scl_slope == 1 && v.scl_inter == 0 && !strcmp(v.modality, "MR"), "mr scaling/modality");
        CHECK(fabs(v.spacing[2] - 1.5) < 1e-3, "mr slice spacing %g", v.spacing[2]);
        oracle_check(&v, mr, "--dcm2niix", "niivue MR");
        medseg_volume_free(&v);
    }
    /* Series listing. */
    ms_dicom_series_info *inf = NULL;
    int n = 0;
    CHECK_OK(ms_dicom_list_series(ts, &inf, &n, &e), &e);
    CHECK(n == 1 && inf && inf[0].n_images == 20 && inf[0].rows == 512 && inf[0].cols == 512 &&
              strstr(inf[0].transfer_syntax, "JPEG 2000") && !strcmp(inf[0].modality, "CT"),
          "list_series totalseg: n=%d", n);
    if (n == 1) CHECK(inf[0].has_window && inf[0].window_width > 0, "window %g/%g", inf[0].window_center, inf[0].window_width);
    free(inf);
    /* A folder without DICOM files. */
    CHECK(ms_dicom_read_path(tu_path("data/pyradiomics"), NULL, &v, &e) == MEDSEG_ERR_FORMAT, "non-DICOM folder: %s", e.message);
    CHECK(ms_dicom_read_path(tu_path("data/README.md"), NULL, &v, &e) == MEDSEG_ERR_FORMAT, "non-DICOM file: %s", e.message);
    (void)vox_world;
}

/* ---------------------------------------------------------------- synthetic */

/* Values equal the .npy (within tol; 0 = exactly); prints the largest difference. */
static int equal_npy_tol(const medseg_volume *v, const char *npy, const char *what, double tol)
{
    ms_npy a = tu_npy(npy);
    size_t n = ms_volume_count(v);
    int ok = a.count == n;
    size_t bad = 0;
    double maxd = 0;
    for (size_t i = 0; ok && i < n; i++) {
        double want;
        switch (a.dtype) {
        case MS_NPY_U8: want = ((uint8_t *)a.data)[i]; break;
        case MS_NPY_I16: want = ((int16_t *)a.data)[i]; break;
        case MS_NPY_U16: want = ((uint16_t *)a.data)[i]; break;
        case MS_NPY_F32: want = ((float *)a.data)[i]; break;
        default: want = NAN;
        }
        medseg_volume s = *v;
        if (v->dtype != MEDSEG_DT_F32) { s.scl_slope = 1; s.scl_inter = 0; }
        double d = fabs(medseg_volume_value(&s, i) - want);
        if (!(d <= tol)) bad++;
        if (d > maxd) maxd = d;
    }
    CHECK(ok && bad == 0, "%s: %zu values, npy %zu, %zu differ by more than %g", what, n, a.count, bad, tol);
    if (tol > 0) printf("%s: max difference %g (tolerance %g)\n", what, maxd, tol);
    ms_npy_free(&a);
    return ok && !bad;
}

static int equal_npy(const medseg_volume *v, const char *npy, const char *what)
{
    return equal_npy_tol(v, npy, what, 0);
}

static void test_synthetic(void)
{
    char cmd[1024], p[512], q[512];
    snprintf(cmd, sizeof cmd, PY " " ORACLE " synth '%s/syn'", g_tmp);
    int rc = system(cmd);
    CHECK(rc == 0, "oracle synth failed (%d)", rc);
    if (rc) return;
    static const char *cases[] = {"explicit_s12", "explicit_s12_highbits", "rle_u16", "rle_rgb", "planar_rgb", "ybr_full",
                                  "deflated", "jpegls_u16", "jpegls_u8", "jpeg_baseline_u8", "j2k_u16",
                                  "enhanced_mf", "bits1_mf", "rle_mf", "nopreamble", "ybr_full_422", "j2k_mf", "jpegls_mf",
                                  "jpeg_baseline_ybr"};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        medseg_volume v;
        medseg_error e;
        snprintf(p, sizeof p, "%s/syn/%s.dcm", g_tmp, cases[c]);
        snprintf(q, sizeof q, "%s/syn/%s.npy", g_tmp, cases[c]);
        if (access(p, R_OK) != 0 || access(q, R_OK) != 0) {
            CHECK(0, "synthetic case %s was not generated", cases[c]);
            continue;
        }
        CHECK_OK(ms_dicom_read_path(p, NULL, &v, &e), &e);
        if (!v.data) continue;
        int chans = (strstr(cases[c], "rgb") || strstr(cases[c], "ybr")) ? 3 : 1;
        CHECK(v.channels == chans, "%s channels %d", cases[c], v.channels);
        /* JPEG YCbCr -> RGB: libjpeg's fixed-point conversion vs the oracle's float equations of
         * PS3.3 C.7.6.3.1.2 applied to GDCM's unconverted YCbCr: 1 apart at most. */
        double tol = strstr(cases[c], "jpeg_baseline_ybr") ? 1.0 : 0.0;
        if (equal_npy_tol(&v, q, cases[c], tol)) printf("synthetic %-24s %s OK\n", cases[c], v.compression);
        if (!strncmp(cases[c], "explicit_s12", 12)) CHECK(v.dtype == MEDSEG_DT_I16 && v.scl_inter == -1024, "s12 dtype");
        if (!strcmp(cases[c], "enhanced_mf")) {
            CHECK(v.scl_slope == 2 && v.scl_inter == -5, "enhanced: shared rescale %g %g", v.scl_slope, v.scl_inter);
            oracle_check(&v, p, "", "enhanced multi-frame (per-frame positions, sagittal)");
        }
        medseg_volume_free(&v);
    }
    medseg_volume v;
    medseg_error e;
    snprintf(p, sizeof p, "%s/syn/bigendian.dcm", g_tmp);
    medseg_status st = ms_dicom_read_path(p, NULL, &v, &e);
    CHECK(st == MEDSEG_ERR_UNSUPPORTED && strstr(e.message, "1.2.840.10008.1.2.2") && strstr(e.message, "Big Endian"),
          "big endian -> %d %s", st, e.message);
    printf("big endian: %s\n", e.message);
    /* JPEG lossless (process 14): libjpeg-turbo 2.1 cannot decode it -> named as unsupported */
    snprintf(p, sizeof p, "%s/syn/jpeg_lossless_u16.dcm", g_tmp);
    st = ms_dicom_read_path(p, NULL, &v, &e);
    CHECK(st == MEDSEG_ERR_UNSUPPORTED && strstr(e.message, "1.2.840.10008.1.2.4.70") && strstr(e.message, "Lossless"),
          "JPEG lossless -> %d %s", st, e.message);
    printf("JPEG lossless: %s\n", e.message);
    /* two series in one folder */
    snprintf(p, sizeof p, "%s/syn/two_series", g_tmp);
    char uids[2][80] = {"", ""};
    snprintf(q, sizeof q, "%s/syn/series_uids.txt", g_tmp);
    FILE *f = fopen(q, "r");
    if (f) {
        if (fscanf(f, "%79s %79s", uids[0], uids[1]) != 2) uids[0][0] = 0;
        fclose(f);
    }
    st = ms_dicom_read_path(p, NULL, &v, &e);
    CHECK(st == MEDSEG_ERR_ARG && uids[0][0] && strstr(e.message, uids[0]) && strstr(e.message, uids[1]),
          "two series -> %d %s", st, e.message);
    printf("two series: %s\n", e.message);
    CHECK_OK(ms_dicom_read_path(p, uids[0], &v, &e), &e);
    if (v.data) {
        snprintf(q, sizeof q, "%s/syn/series_a.npy", g_tmp);
        CHECK(v.dim[2] == 3 && fabs(v.affine[2][3] + 2.0) < 1e-9 && fabs(v.spacing[2] - 3.0) < 1e-9, "series a geometry");
        equal_npy(&v, q, "series a sorted by position");
        CHECK(fabs(v.spacing[0] - 0.75) < 1e-12 && fabs(v.spacing[1] - 0.5) < 1e-12, "PixelSpacing row/col order: %g %g",
              v.spacing[0], v.spacing[1]);
        medseg_volume_free(&v);
    }
    CHECK(ms_dicom_read_path(p, "1.2.3.4", &v, &e) == MEDSEG_ERR_ARG, "unknown series uid: %s", e.message);
    ms_dicom_series_info *inf = NULL;
    int n = 0;
    CHECK_OK(ms_dicom_list_series(p, &inf, &n, &e), &e);
    CHECK(n == 2 && inf && inf[0].n_images + inf[1].n_images == 5, "list two series: n=%d", n);
    free(inf);
    static const char *bad[] = {"mixed_sizes", "mixed_orient", "uneven"};
    static const char *want[] = {"mixed image sizes", "mixed slice orientations", "not evenly spaced"};
    for (int b = 0; b < 3; b++) {
        snprintf(p, sizeof p, "%s/syn/%s", g_tmp, bad[b]);
        st = ms_dicom_read_path(p, NULL, &v, &e);
        CHECK(st != MEDSEG_OK && strstr(e.message, want[b]), "%s -> %d %s", bad[b], st, e.message);
        printf("%s: %s\n", bad[b], e.message);
        if (st == MEDSEG_OK) medseg_volume_free(&v);
    }
    snprintf(p, sizeof p, "%s/syn/rescale_series", g_tmp);
    CHECK_OK(ms_dicom_read_path(p, NULL, &v, &e), &e);
    if (v.data) {
        CHECK(v.dtype == MEDSEG_DT_F32 && v.scl_slope == 1 && v.scl_inter == 0, "per-slice rescale -> float32");
        snprintf(q, sizeof q, "%s/syn/rescale_series.npy", g_tmp);
        equal_npy(&v, q, "per-slice rescale real values");
        medseg_volume_free(&v);
    }
}

/* ---------------------------------------------------------------- corrupted input */

static uint32_t g_rng = 12345;
static uint32_t rnd(void) { g_rng = g_rng * 1664525u + 1013904223u; return g_rng >> 8; }

static void test_corrupt(void)
{
    const char *files[] = {"data/dcmqi_ct3slice/liver.dcm", "data/dcmqi_ct3slice/ct-3slice/01.dcm",
                           "data/totalseg/example_ct_dicom/CT.1.3.12.2.1107.5.1.4.60064.30000022120808113428000016573"};
    double t0 = ms_now_ms(), worst = 0;
    long runs = 0, oks = 0;
    for (size_t fi = 0; fi < sizeof files / sizeof files[0]; fi++) {
        uint8_t *buf;
        size_t n;
        medseg_error e;
        if (ms_read_file(tu_path("%s", files[fi]), (size_t)1 << 30, &buf, &n, &e) != MEDSEG_OK) {
            CHECK(0, "read %s: %s", files[fi], e.message);
            continue;
        }
        uint8_t *m = (uint8_t *)malloc(n + 64);
        int jobs = fi == 2 ? 60 : 300;
        for (int it = 0; it < jobs + 40; it++) {
            size_t len = n;
            memcpy(m, buf, n);
            if (it < 40) {
                len = (size_t)((double)n * it / 40.0); /* truncations, header to pixel data */
            } else {
                int kind = it % 3, cnt = 1 + (int)(rnd() % 8);
                for (int c = 0; c < cnt; c++) {
                    size_t at = rnd() % n;
                    if (kind == 0) m[at] ^= (uint8_t)(1u << (rnd() % 8));
                    else if (kind == 1) m[at] = (uint8_t)(rnd() & 0xff);
                    else { static const uint8_t b[] = {0, 0xff, 0xfe, 0x7f, 0x80}; m[at] = b[rnd() % 5]; }
                }
                if (it % 7 == 0) { /* corrupt something in the first 2 KB (header) */
                    size_t at = rnd() % (n < 2048 ? n : 2048);
                    m[at] = (uint8_t)rnd();
                }
            }
            medseg_volume v;
            double t = ms_now_ms();
            medseg_status st = ms_dicom_read_memory(m, len, "mutant", &v, &e);
            double dt = ms_now_ms() - t;
            if (dt > worst) worst = dt;
            runs++;
            if (st == MEDSEG_OK) { oks++; medseg_volume_free(&v); }
            else CHECK(e.message[0] != 0, "error without message");
        }
        /* truncated copy through the file path too */
        char path[300];
        snprintf(path, sizeof path, "%s/trunc.dcm", g_tmp);
        FILE *f = fopen(path, "wb");
        if (f) { fwrite(buf, 1, n / 2, f); fclose(f); }
        medseg_volume v;
        medseg_status st = ms_dicom_read_path(path, NULL, &v, &e);
        CHECK(st != MEDSEG_OK, "half of %s must not load", files[fi]);
        if (fi == 0) printf("truncated liver.dcm: %s\n", e.message);
        if (st == MEDSEG_OK) medseg_volume_free(&v);
        free(m);
        free(buf);
    }
    /* random bytes, with and without a DICM preamble */
    for (int it = 0; it < 200; it++) {
        uint8_t m[4096];
        size_t len = 8 + rnd() % (sizeof m - 8);
        for (size_t i = 0; i < len; i++) m[i] = (uint8_t)rnd();
        if (it % 2 && len > 140) memcpy(m + 128, "DICM", 4);
        medseg_volume v;
        medseg_error e;
        if (ms_dicom_read_memory(m, len, "random", &v, &e) == MEDSEG_OK) medseg_volume_free(&v);
        runs++;
    }
    double total = ms_now_ms() - t0;
    printf("corrupted inputs: %ld runs (%ld still loaded), %.0f ms total, worst %.1f ms\n", runs, oks, total, worst);
    CHECK(worst < 5000, "one corrupted input took %.0f ms", worst);
}

int main(void)
{
    snprintf(g_tmp, sizeof g_tmp, "/tmp/medseg_test_dicom_XXXXXX");
    if (!mkdtemp(g_tmp)) {
        perror("mkdtemp");
        return 2;
    }
    test_shared();
    test_synthetic();
    test_corrupt();
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_tmp);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", g_tmp);
    return tu_finish("test_dicom");
}
