/* The value policy of `medseg convert` (src/workflow/convert.c) on synthetic volumes: which type
 * each target gets, refusals when values cannot be held exactly, exact conversion, and the
 * display affine. The end-to-end checks against nibabel/pydicom/dcm2niix are in
 * tests/cli_info_convert.sh. */
#include "io/volume.h"
#include "testutil.h"
#include "workflow/convert.h"

#include <math.h>

/* A 2x2xnz volume of type t holding the given values (as double, converted by the caller's type). */
static void make(medseg_volume *v, medseg_dtype t, int nz, int channels, const double *vals, int n)
{
    medseg_error err = {0};
    memset(v, 0, sizeof *v);
    CHECK_OK(ms_volume_alloc(v, 2, 2, nz, channels, t, "test", &err), &err);
    if (!v->data) return;
    CHECK(ms_volume_count(v) == (size_t)n, "count %zu vs %d", ms_volume_count(v), n);
    for (int i = 0; i < n; i++) {
        switch (t) {
        case MEDSEG_DT_U8: ((uint8_t *)v->data)[i] = (uint8_t)vals[i]; break;
        case MEDSEG_DT_I16: ((int16_t *)v->data)[i] = (int16_t)vals[i]; break;
        case MEDSEG_DT_U16: ((uint16_t *)v->data)[i] = (uint16_t)vals[i]; break;
        case MEDSEG_DT_I32: ((int32_t *)v->data)[i] = (int32_t)vals[i]; break;
        case MEDSEG_DT_I64: ((int64_t *)v->data)[i] = (int64_t)vals[i]; break;
        case MEDSEG_DT_F32: ((float *)v->data)[i] = (float)vals[i]; break;
        case MEDSEG_DT_F64: ((double *)v->data)[i] = vals[i]; break;
        default: CHECK(0, "type not handled by the test"); break;
        }
    }
}

/* Plans v for format with requested type; returns the status, fills plan. */
static medseg_status plan_for(const medseg_volume *v, ms_out_format f, medseg_dtype req, ms_convert_plan *plan,
                              medseg_error *err)
{
    ms_value_stats s;
    ms_volume_stats(v, &s);
    return ms_convert_plan_make(plan, v, &s, f, req, "out", err);
}

static void test_names(void)
{
    CHECK(ms_out_format_from_path("a/b.nii.gz") == MS_OUT_NII_GZ, "nii.gz");
    CHECK(ms_out_format_from_path("B.NII.GZ") == MS_OUT_NII_GZ, "upper case");
    CHECK(ms_out_format_from_path("b.nii") == MS_OUT_NII, "nii");
    CHECK(ms_out_format_from_path("b.nrrd") == MS_OUT_NRRD, "nrrd");
    CHECK(ms_out_format_from_path("b.npz") == MS_OUT_NPZ, "npz");
    CHECK(ms_out_format_from_path("b.png") == MS_OUT_PNG, "png");
    CHECK(ms_out_format_from_path("b.nii.gz.bak") == MS_OUT_NONE, "bak");
    CHECK(ms_out_format_from_path("b.jpg") == MS_OUT_NONE, "jpg is not written");
    CHECK(ms_voxel_type_from_name("int16") == MEDSEG_DT_I16, "int16");
    CHECK(ms_voxel_type_from_name("F32") == MEDSEG_DT_F32, "F32");
    CHECK(ms_voxel_type_from_name("double") == MEDSEG_DT_F64, "double");
    CHECK(ms_voxel_type_from_name("int12") == 0, "int12");
}

static void test_stats_and_nifti(void)
{
    medseg_error err = {0};
    medseg_volume v;
    const double ct[4] = {0, 1024, 4095, 2000};
    make(&v, MEDSEG_DT_U16, 1, 1, ct, 4);
    v.scl_inter = -1024;
    ms_value_stats s;
    ms_volume_stats(&v, &s);
    CHECK(s.min == -1024 && s.max == 3071 && s.stored_min == 0 && s.stored_max == 4095, "range %g..%g stored %g..%g",
          s.min, s.max, s.stored_min, s.stored_max);
    CHECK(s.integral && s.f32_exact && s.scaled && s.n_nonfinite == 0, "flags");
    ms_convert_plan p;
    /* NIfTI: stored uint16 with scl_inter kept */
    CHECK_OK(plan_for(&v, MS_OUT_NII_GZ, 0, &p, &err), &err);
    CHECK(p.keep_stored && p.dtype == MEDSEG_DT_U16, "nifti keeps stored: %d %s", p.keep_stored, ms_voxel_type_name(p.dtype));
    /* NRRD/npz: real values, narrowest exact = int16 */
    CHECK_OK(plan_for(&v, MS_OUT_NRRD, 0, &p, &err), &err);
    CHECK(!p.keep_stored && p.dtype == MEDSEG_DT_I16, "nrrd int16: %s", ms_voxel_type_name(p.dtype));
    CHECK_OK(plan_for(&v, MS_OUT_NPZ, 0, &p, &err), &err);
    CHECK(p.dtype == MEDSEG_DT_I16, "npz int16");
    medseg_volume out;
    CHECK_OK(ms_convert_apply(&out, &v, &p, &err), &err);
    if (out.data) {
        const int16_t *o = out.data;
        CHECK(o[0] == -1024 && o[1] == 0 && o[2] == 3071 && o[3] == 976, "applied %d %d %d %d", o[0], o[1], o[2], o[3]);
        CHECK(out.scl_slope == 1 && out.scl_inter == 0 && out.dtype == MEDSEG_DT_I16, "scaling reset");
        medseg_volume_free(&out);
    }
    /* a slope that float32 cannot carry: NIfTI gets real values too */
    v.scl_slope = 0.1;
    v.scl_inter = 0;
    CHECK_OK(plan_for(&v, MS_OUT_NII, 0, &p, &err), &err);
    CHECK(!p.keep_stored && p.dtype == MEDSEG_DT_F64, "slope 0.1 -> float64 real values, got %s keep %d",
          ms_voxel_type_name(p.dtype), p.keep_stored);
    /* a float32-exact slope is kept in NIfTI; its real values need float64 elsewhere */
    v.scl_slope = 0.25;
    v.scl_inter = 0.5;
    CHECK_OK(plan_for(&v, MS_OUT_NII, 0, &p, &err), &err);
    CHECK(p.keep_stored, "slope 0.25 kept");
    CHECK_OK(plan_for(&v, MS_OUT_NRRD, 0, &p, &err), &err);
    CHECK(p.dtype == MEDSEG_DT_F32, "quarter steps are float32-exact: %s", ms_voxel_type_name(p.dtype));
    medseg_volume_free(&v);
}

static void test_narrowest(void)
{
    medseg_error err = {0};
    medseg_volume v;
    ms_convert_plan p;
    const double a[4] = {0, 100, 200, 255};
    make(&v, MEDSEG_DT_U8, 1, 1, a, 4);
    v.scl_slope = 2; /* 0..510: uint16 */
    CHECK_OK(plan_for(&v, MS_OUT_NRRD, 0, &p, &err), &err);
    CHECK(p.dtype == MEDSEG_DT_U16, "0..510 -> uint16, got %s", ms_voxel_type_name(p.dtype));
    v.scl_inter = -10; /* -10..500: int16 */
    CHECK_OK(plan_for(&v, MS_OUT_NRRD, 0, &p, &err), &err);
    CHECK(p.dtype == MEDSEG_DT_I16, "-10..500 -> int16, got %s", ms_voxel_type_name(p.dtype));
    v.scl_slope = 1000; /* -10..254990: int32 */
    CHECK_OK(plan_for(&v, MS_OUT_NPZ, 0, &p, &err), &err);
    CHECK(p.dtype == MEDSEG_DT_I32, "-10..254990 -> int32, got %s", ms_voxel_type_name(p.dtype));
    v.scl_slope = 1, v.scl_inter = 0.5; /* halves: float32 */
    CHECK_OK(plan_for(&v, MS_OUT_NPZ, 0, &p, &err), &err);
    CHECK(p.dtype == MEDSEG_DT_F32, "halves -> float32, got %s", ms_voxel_type_name(p.dtype));
    medseg_volume_free(&v);

    /* int32 values beyond float32's 24-bit mantissa: --dtype float32 refused, float64 accepted */
    const double big[4] = {16777217, 0, 1, 2};
    make(&v, MEDSEG_DT_I32, 1, 1, big, 4);
    CHECK(plan_for(&v, MS_OUT_NRRD, MEDSEG_DT_F32, &p, &err) == MEDSEG_ERR_UNSUPPORTED, "2^24+1 in float32");
    CHECK(strstr(err.message, "float32") != NULL, "message names the type: %s", err.message);
    CHECK_OK(plan_for(&v, MS_OUT_NRRD, MEDSEG_DT_F64, &p, &err), &err);
    CHECK_OK(plan_for(&v, MS_OUT_NRRD, 0, &p, &err), &err);
    CHECK(p.keep_stored && p.dtype == MEDSEG_DT_I32, "unscaled int32 kept");
    medseg_volume_free(&v);

    /* int64 edge: 2^63 is out of int64's range (its max is 2^63 - 1) */
    medseg_volume w;
    const double e[4] = {0, 1, 2, 3};
    make(&w, MEDSEG_DT_F64, 1, 1, e, 4);
    ((double *)w.data)[3] = 9223372036854775808.0;
    ms_value_stats s;
    ms_volume_stats(&w, &s);
    CHECK(!ms_voxel_type_holds(MEDSEG_DT_I64, &s), "2^63 not in int64");
    CHECK(ms_voxel_type_holds(MEDSEG_DT_U64, &s), "2^63 in uint64");
    ((double *)w.data)[3] = -9223372036854775808.0;
    ms_volume_stats(&w, &s);
    CHECK(ms_voxel_type_holds(MEDSEG_DT_I64, &s), "-2^63 in int64");
    CHECK(!ms_voxel_type_holds(MEDSEG_DT_U64, &s), "negative not in uint64");
    medseg_volume_free(&w);
}

static void test_png_and_nonfinite(void)
{
    medseg_error err = {0};
    medseg_volume v;
    ms_convert_plan p;
    const double a[8] = {0, 1, 2, 3, 4, 5, 6, 7};
    make(&v, MEDSEG_DT_U8, 2, 1, a, 8);
    CHECK(plan_for(&v, MS_OUT_PNG, 0, &p, &err) == MEDSEG_ERR_UNSUPPORTED, "3D to PNG refused");
    CHECK(strstr(err.message, "2 slices") != NULL, "message: %s", err.message);
    medseg_volume_free(&v);

    const double g[4] = {0, 255, 17, 3};
    make(&v, MEDSEG_DT_I16, 1, 1, g, 4);
    CHECK_OK(plan_for(&v, MS_OUT_PNG, 0, &p, &err), &err);
    CHECK(!p.keep_stored && p.dtype == MEDSEG_DT_U8, "int16 0..255 -> uint8 PNG");
    ((int16_t *)v.data)[1] = 256;
    CHECK(plan_for(&v, MS_OUT_PNG, 0, &p, &err) == MEDSEG_ERR_UNSUPPORTED, "256 refused");
    CHECK(strstr(err.message, "0..256") != NULL, "message gives the range: %s", err.message);
    ((int16_t *)v.data)[1] = -1;
    CHECK(plan_for(&v, MS_OUT_PNG, 0, &p, &err) == MEDSEG_ERR_UNSUPPORTED, "-1 refused");
    CHECK(plan_for(&v, MS_OUT_PNG, MEDSEG_DT_I16, &p, &err) == MEDSEG_ERR_UNSUPPORTED, "PNG int16 refused");
    medseg_volume_free(&v);

    const double rgb[12] = {0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 110};
    make(&v, MEDSEG_DT_U8, 1, 3, rgb, 12);
    CHECK_OK(plan_for(&v, MS_OUT_PNG, 0, &p, &err), &err);
    CHECK(p.keep_stored, "RGB uint8 PNG kept");
    medseg_volume_free(&v);

    /* NaN: kept by float targets, refused by integer types */
    const double f[4] = {1.5, NAN, -2, INFINITY};
    make(&v, MEDSEG_DT_F32, 1, 1, f, 4);
    ms_value_stats s;
    ms_volume_stats(&v, &s);
    CHECK(s.n_nonfinite == 2 && s.min == -2 && s.max == 1.5 && !s.integral, "nonfinite stats %zu %g %g",
          s.n_nonfinite, s.min, s.max);
    CHECK_OK(plan_for(&v, MS_OUT_NRRD, 0, &p, &err), &err);
    CHECK(p.keep_stored && p.dtype == MEDSEG_DT_F32, "float32 with NaN kept");
    CHECK(plan_for(&v, MS_OUT_NRRD, MEDSEG_DT_I32, &p, &err) == MEDSEG_ERR_UNSUPPORTED, "NaN to int refused");
    CHECK_OK(plan_for(&v, MS_OUT_NRRD, MEDSEG_DT_F64, &p, &err), &err);
    medseg_volume out;
    CHECK_OK(ms_convert_apply(&out, &v, &p, &err), &err);
    if (out.data) {
        const double *o = out.data;
        CHECK(o[0] == 1.5 && isnan(o[1]) && o[2] == -2 && isinf(o[3]), "float64 values");
        medseg_volume_free(&out);
    }
    medseg_volume_free(&v);
}

static void test_affine_display(void)
{
    medseg_volume v;
    const double a[4] = {0, 0, 0, 0};
    make(&v, MEDSEG_DT_U8, 1, 1, a, 4);
    v.affine[0][0] = -0.5, v.affine[0][3] = 10;
    v.affine[1][1] = -0.5, v.affine[1][3] = 20;
    v.affine[2][2] = 2, v.affine[2][3] = -30;
    v.source_space = MEDSEG_SPACE_LPS;
    double d[3][4];
    ms_volume_affine_in_source_space(&v, d);
    CHECK(d[0][0] == 0.5 && d[0][3] == -10 && d[1][1] == 0.5 && d[1][3] == -20 && d[2][2] == 2 && d[2][3] == -30,
          "LPS display");
    CHECK(!signbit(d[0][1]), "no negative zero");
    v.source_space = MEDSEG_SPACE_RAS;
    ms_volume_affine_in_source_space(&v, d);
    CHECK(d[0][0] == -0.5 && d[1][3] == 20, "RAS display unchanged");
    medseg_volume_free(&v);
}

int main(void)
{
    test_names();
    test_stats_and_nifti();
    test_narrowest();
    test_png_and_nonfinite();
    test_affine_display();
    return tu_finish("test_convert");
}
