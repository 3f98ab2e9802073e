/* Intensity presets (src/workflow/intensity.c): hand-computed values, the auto rule, parsing, and
 * every voxel of synthetic and real volumes against an independent numpy oracle
 * (tests/intensity_oracle.py, MedSAM's and micro-sam's formulas). */
#include "io/volume.h"
#include "testutil.h"
#include "workflow/intensity.h"

#include <stdlib.h>
#include <unistd.h>

#ifndef MEDSEG_SOURCE_DIR
#define MEDSEG_SOURCE_DIR "."
#endif

static char tmpdir[256];

/* Deterministic pseudo-random numbers (xorshift64*). */
static uint64_t rng = 0x9E3779B97F4A7C15ull;
static double urand(void)
{
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return (double)((rng * 2685821657736338717ull) >> 11) / 9007199254740992.0;
}

/* Maps every slice with the preset and compares with the oracle's answer, voxel by voxel. */
static void check_oracle(const char *label, const medseg_volume *v, const char *dtype, const char *spec_s,
                         const char *oracle_preset)
{
    medseg_error err;
    size_t npix = (size_t)v->dim[0] * v->dim[1], n = npix * v->dim[2];
    float *f = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) f[i] = (float)medseg_volume_value(v, i);
    char in[512], out[512], cmd[2048];
    snprintf(in, sizeof in, "%s/in.npy", tmpdir);
    snprintf(out, sizeof out, "%s/out.npy", tmpdir);
    int64_t shape[3] = {v->dim[2], v->dim[1], v->dim[0]};
    CHECK_OK(ms_npy_save(in, MS_NPY_F32, 3, shape, f, &err), &err);
    free(f);
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s/tests/intensity_oracle.py %s %s %s %s", MEDSEG_SOURCE_DIR, in, dtype,
             oracle_preset, out);
    int rc = system(cmd);
    CHECK(rc == 0, "%s: oracle failed (%s)", label, cmd);
    if (rc) return;
    ms_npy want = tu_npy(out);
    CHECK(want.count == n && want.dtype == MS_NPY_U8, "%s: oracle shape", label);
    if (want.count != n) {
        ms_npy_free(&want);
        return;
    }
    ms_intensity_spec spec;
    ms_intensity it;
    CHECK_OK(ms_intensity_parse(spec_s, &spec, &err), &err);
    CHECK_OK(ms_intensity_resolve(v, &spec, &it, &err), &err);
    size_t bad = 0, first = (size_t)-1;
    int got_first = 0;
    for (int64_t k = 0; k < v->dim[2]; k++) {
        medseg_image img;
        CHECK_OK(ms_intensity_slice(v, &it, k, &img, &err), &err);
        if (!img.data) break;
        for (size_t i = 0; i < npix; i++) {
            uint8_t g = img.data[3 * i];
            if (img.data[3 * i + 1] != g || img.data[3 * i + 2] != g) bad++;
            if (g != ((uint8_t *)want.data)[k * npix + i]) {
                if (first == (size_t)-1) {
                    first = k * npix + i;
                    got_first = g;
                }
                bad++;
            }
        }
        medseg_image_free(&img);
    }
    printf("%-44s %-50s %zu voxels, %zu differ%s\n", label, it.desc, n, bad, bad ? "" : " -> OK");
    CHECK(bad == 0, "%s: %zu voxels differ from numpy; first at %zu: got %d want %d", label, bad, first, got_first,
          first == (size_t)-1 ? -1 : ((uint8_t *)want.data)[first]);
    ms_npy_free(&want);
}

static void hand_values(void)
{
    medseg_error err;
    medseg_volume v;
    /* int16 "HU" voxels; window W400 L40 -> clip to [-160, 240], the data span the window, so
       t = (c + 160) / 400 * 255 truncated */
    static const int16_t hu[8] = {-1000, -160, -100, 0, 40, 239, 240, 1000};
    static const uint8_t want[8] = {0, 0, 38 /* 38.25 */, 102 /* 102.0 */, 127 /* 127.5 */, 254 /* 254.36 */, 255, 255};
    CHECK_OK(ms_volume_alloc(&v, 8, 1, 1, 1, MEDSEG_DT_I16, "hand", &err), &err);
    memcpy(v.data, hu, sizeof hu);
    ms_intensity_spec spec;
    ms_intensity it;
    CHECK_OK(ms_intensity_parse("abdomen", &spec, &err), &err);
    CHECK_OK(ms_intensity_resolve(&v, &spec, &it, &err), &err);
    CHECK(it.lo == -160 && it.hi == 240 && it.mn == -160 && it.mx == 240, "window bounds %g %g %g %g", it.lo, it.hi, it.mn,
          it.mx);
    medseg_image img;
    CHECK_OK(ms_intensity_slice(&v, &it, 0, &img, &err), &err);
    for (int i = 0; i < 8; i++)
        CHECK(img.data && img.data[3 * i] == want[i], "W400 L40: %d HU -> %d, want %d", hu[i], img.data ? img.data[3 * i] : -1,
              want[i]);
    medseg_image_free(&img);
    /* MedSAM normalises by the clipped VOLUME's min/max, not by the window: data 0..100 inside
       the window map 0 -> 0, 50 -> 127 (127.5), 100 -> 255 */
    int16_t *d = v.data;
    for (int i = 0; i < 8; i++) d[i] = (int16_t)(i == 0 ? 0 : i == 1 ? 50 : 100);
    CHECK_OK(ms_intensity_resolve(&v, &spec, &it, &err), &err);
    CHECK(ms_intensity_map_value(&it, 0) == 0 && ms_intensity_map_value(&it, 50) == 127 &&
              ms_intensity_map_value(&it, 100) == 255,
          "window on data inside it: %d %d %d", ms_intensity_map_value(&it, 0), ms_intensity_map_value(&it, 50),
          ms_intensity_map_value(&it, 100));
    /* lung W1500 L-600 -> [-1350, 150]; data -1350..150: -600 -> 750/1500*255 = 127.5 -> 127 */
    d[0] = -1350;
    d[1] = -600;
    d[2] = 150;
    CHECK_OK(ms_intensity_parse("lung", &spec, &err), &err);
    CHECK_OK(ms_intensity_resolve(&v, &spec, &it, &err), &err);
    CHECK(ms_intensity_map_value(&it, -600) == 127 && ms_intensity_map_value(&it, -2000) == 0 &&
              ms_intensity_map_value(&it, 149) == 254,
          "lung window");
    /* explicit W,L: 100,50 -> [0, 100] */
    CHECK_OK(ms_intensity_parse("100,50", &spec, &err), &err);
    CHECK(spec.kind == MS_INT_WINDOW && spec.width == 100 && spec.level == 50, "W,L parse");
    CHECK_OK(ms_intensity_resolve(&v, &spec, &it, &err), &err);
    CHECK(it.lo == 0 && it.hi == 100 && ms_intensity_map_value(&it, 33) == 84 /* 84.15 */, "W100 L50: 33 -> %d",
          ms_intensity_map_value(&it, 33));
    /* percentile by hand: voxels 0 (ignored) and 1..200 -> n = 200 positives;
       p0.5: vi = 200*0.005 + 0.995 - 1 = 0.995 -> 1 + 0.995 = 1.995; p99.5: vi = 199.005 - 0.005 = 198.005
       -> 199 + 0.005 = 199.005 */
    medseg_volume p;
    CHECK_OK(ms_volume_alloc(&p, 201, 1, 1, 1, MEDSEG_DT_U16, "hand", &err), &err);
    for (int i = 0; i <= 200; i++) ((uint16_t *)p.data)[i] = (uint16_t)i;
    CHECK_OK(ms_intensity_parse("percentile", &spec, &err), &err);
    CHECK_OK(ms_intensity_resolve(&p, &spec, &it, &err), &err);
    CHECK(fabs(it.lo - 1.995) < 1e-12 && fabs(it.hi - 199.005) < 1e-12, "percentile bounds %.15g %.15g", it.lo, it.hi);
    /* 100 -> (100 - 1.995) / 197.01 * 255 = 126.85 -> 126; 0 stays 0; 1 -> 0; 200 -> 255 */
    CHECK(ms_intensity_map_value(&it, 100) == 126 && ms_intensity_map_value(&it, 0) == 0 &&
              ms_intensity_map_value(&it, 1) == 0 && ms_intensity_map_value(&it, 200) == 255,
          "percentile values %d %d %d %d", ms_intensity_map_value(&it, 100), ms_intensity_map_value(&it, 0),
          ms_intensity_map_value(&it, 1), ms_intensity_map_value(&it, 200));
    medseg_volume_free(&p);
    medseg_volume_free(&v);
}

static void auto_rule(void)
{
    medseg_error err;
    ms_intensity_spec spec;
    ms_intensity it;
    CHECK_OK(ms_intensity_parse("auto", &spec, &err), &err);
    medseg_volume v;
    CHECK_OK(ms_volume_alloc(&v, 4, 4, 2, 1, MEDSEG_DT_U8, "auto", &err), &err);
    ((uint8_t *)v.data)[3] = 200;
    CHECK_OK(ms_intensity_resolve(&v, &spec, &it, &err), &err);
    CHECK(it.kind == MS_INT_NONE, "uint8 -> none (%s)", it.desc);
    medseg_image img;
    CHECK_OK(ms_intensity_slice(&v, &it, 0, &img, &err), &err);
    CHECK(img.data && img.data[9] == 200 && img.data[10] == 200 && img.data[11] == 200, "none keeps uint8 values");
    medseg_image_free(&img);
    medseg_volume_free(&v);

    CHECK_OK(ms_volume_alloc(&v, 4, 4, 2, 1, MEDSEG_DT_I16, "auto", &err), &err);
    ((int16_t *)v.data)[0] = -1024;
    ((int16_t *)v.data)[1] = 300;
    CHECK_OK(ms_intensity_resolve(&v, &spec, &it, &err), &err);
    CHECK(it.kind == MS_INT_WINDOW && it.lo == -160 && it.hi == 240, "HU-like int16 -> W400 L40 (%s)", it.desc);
    ((int16_t *)v.data)[0] = 0;
    CHECK_OK(ms_intensity_resolve(&v, &spec, &it, &err), &err);
    CHECK(it.kind == MS_INT_PERCENTILE, "non-negative int16 without modality -> percentile (%s)", it.desc);
    snprintf(v.modality, sizeof v.modality, "CT");
    CHECK_OK(ms_intensity_resolve(&v, &spec, &it, &err), &err);
    CHECK(it.kind == MS_INT_WINDOW, "modality CT -> window (%s)", it.desc);
    medseg_volume_free(&v);

    CHECK_OK(ms_volume_alloc(&v, 4, 4, 2, 1, MEDSEG_DT_F32, "auto", &err), &err);
    ((float *)v.data)[0] = -900.5f;
    ((float *)v.data)[1] = 3.25f;
    CHECK_OK(ms_intensity_resolve(&v, &spec, &it, &err), &err);
    CHECK(it.kind == MS_INT_PERCENTILE && it.f32, "non-integral float32 -> percentile in float32 (%s)", it.desc);
    ((float *)v.data)[2] = NAN;
    CHECK(ms_intensity_resolve(&v, &spec, &it, &err) == MEDSEG_ERR_FORMAT, "NaN voxel refused");
    medseg_volume_free(&v);

    static const char *bad[] = {"", "window", "400", "400,", ",40", "0,40", "-5,40", "400,40,1", "abc", "nan,40"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CHECK(ms_intensity_parse(bad[i], &spec, &err) == MEDSEG_ERR_ARG, "'%s' must be refused", bad[i]);
    static const char *good[] = {"auto", "none", "percentile", "minmax", "abdomen", "soft-tissue", "liver",
                                 "lung", "bone", "brain", "1500,-600"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
        CHECK(ms_intensity_parse(good[i], &spec, &err) == MEDSEG_OK, "'%s' must parse", good[i]);
    CHECK_OK(ms_intensity_parse("liver", &spec, &err), &err);
    CHECK(spec.width == 150 && spec.level == 30, "liver = W150 L30");
    CHECK_OK(ms_intensity_parse("bone", &spec, &err), &err);
    CHECK(spec.width == 1800 && spec.level == 400, "bone = W1800 L400");
    CHECK_OK(ms_intensity_parse("brain", &spec, &err), &err);
    CHECK(spec.width == 80 && spec.level == 40, "brain = W80 L40");
}

static void synthetic_vs_numpy(void)
{
    medseg_error err;
    medseg_volume ct, mr;
    /* CT-like int16: air, soft tissue, bone, noise; odd sizes */
    CHECK_OK(ms_volume_alloc(&ct, 37, 29, 3, 1, MEDSEG_DT_I16, "ct", &err), &err);
    int16_t *c = ct.data;
    for (size_t i = 0; i < 37 * 29 * 3; i++) {
        double u = urand();
        c[i] = (int16_t)(u < 0.3 ? -1024 + urand() * 50 : u < 0.9 ? -200 + urand() * 500 : 200 + urand() * 1300);
    }
    check_oracle("synthetic int16 CT, abdomen", &ct, "int16", "abdomen", "window:400,40");
    check_oracle("synthetic int16 CT, liver", &ct, "int16", "liver", "window:150,30");
    check_oracle("synthetic int16 CT, percentile", &ct, "int16", "percentile", "percentile");
    check_oracle("synthetic int16 CT, minmax", &ct, "int16", "minmax", "minmax");
    /* MR-like float32: zero background, skewed positives, a few negatives */
    CHECK_OK(ms_volume_alloc(&mr, 41, 23, 4, 1, MEDSEG_DT_F32, "mr", &err), &err);
    float *m = mr.data;
    for (size_t i = 0; i < 41 * 23 * 4; i++) {
        double u = urand();
        m[i] = u < 0.25 ? 0.0f : u < 0.3 ? (float)(-urand() * 2) : (float)exp(urand() * 6) * 0.37f;
    }
    check_oracle("synthetic float32 MR, percentile", &mr, "float32", "percentile", "percentile");
    check_oracle("synthetic float32 MR, minmax", &mr, "float32", "minmax", "minmax");
    check_oracle("synthetic float32 MR, brain window", &mr, "float32", "brain", "window:80,40");
    medseg_volume_free(&ct);
    medseg_volume_free(&mr);
}

static void real_vs_numpy(void)
{
    medseg_error err;
    medseg_volume v;
    const char *flair = tu_path("data/deepmedic_brats2015/brats_2013_pat0001_1/Flair_subtrMeanDivStd.nii.gz");
    if (medseg_volume_load(flair, &v, &err) == MEDSEG_OK) {
        check_oracle("BraTS Flair (float32), percentile", &v, "float32", "percentile", "percentile");
        medseg_volume_free(&v);
    } else {
        CHECK(0, "cannot load %s: %s", flair, err.message);
    }
    const char *ct = tu_path("data/totalseg/example_ct_sm.nii.gz");
    if (medseg_volume_load(ct, &v, &err) == MEDSEG_OK) {
        check_oracle("TotalSegmentator CT, abdomen window", &v, ms_voxel_type_is_float(v.dtype) ? "float64" : "int32",
                     "abdomen", "window:400,40");
        medseg_volume_free(&v);
    } else {
        CHECK(0, "cannot load %s: %s", ct, err.message);
    }
}

int main(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/medseg-intensity-XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 2;
    }
    hand_values();
    auto_rule();
    synthetic_vs_numpy();
    real_vs_numpy();
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
    return tu_finish("test_intensity");
}
