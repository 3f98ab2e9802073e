/* medseg convert IN OUT [--series UID] [--dtype TYPE]: any image or volume medseg reads to
 * .nii, .nii.gz, .nrrd, .npz or (2D) .png, real values exact and every voxel centre at the same
 * world position; refuses (non-zero exit, nothing written) when the target cannot hold the values.
 * The value policy lives in src/workflow/convert.c. */
#include "cli/cli.h"
#include "core/common.h"
#include "io/volume.h"
#include "workflow/convert.h"

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

/* One printable line on stderr (a reader may quote bytes of a hostile file), the exit code. */
static int fail_line(medseg_error *err)
{
    ms_error_make_printable(err);
    return cli_fail(err);
}

static void convert_usage(FILE *f)
{
    fprintf(f,
            "usage: medseg convert IN OUT [--series UID] [--dtype TYPE] [--quiet]\n"
            "\n"
            "Converts an image or volume (NIfTI, NRRD, npz, DICOM file or folder, PNG, JPEG, BMP) to\n"
            "OUT, whose extension picks the format: .nii, .nii.gz, .nrrd, .npz (key imgs) or .png (2D).\n"
            "Geometry is kept (every voxel centre at the same world position; PNG stores none) and values\n"
            "are exact (docs/formats.md):\n"
            "  .nii/.nii.gz  stored values with their scl_slope/scl_inter (e.g. DICOM rescale)\n"
            "  .nrrd/.npz    no scaling field: scaled inputs become real values in the narrowest exact\n"
            "                type (integer when all are integers, else float32, else float64)\n"
            "  .png          uint8 values 0..255 only, 1 or 3 channels, one slice\n"
            "When the target cannot hold the values exactly, nothing is written and the exit is non-zero.\n"
            "OUT is written atomically (it appears complete or not at all).\n"
            "\n"
            "options:\n"
            "  --series UID   the series to convert from a DICOM folder holding several\n"
            "                 (medseg info DIR lists them)\n"
            "  --dtype TYPE   write real values as TYPE (uint8, int16, uint16, int32, float32, float64,\n"
            "                 ...); refused unless every value is exact in TYPE\n"
            "  --quiet        print nothing on success\n");
}

static int is_identity_geometry(const medseg_volume *v)
{
    for (int r = 0; r < 3; r++)
        for (int c = 0; c < 4; c++)
            if (v->affine[r][c] != (r == c ? 1.0 : 0.0)) return 0;
    return 1;
}

int cmd_convert(int argc, char **argv)
{
    const char *in = NULL, *out = NULL, *series = NULL, *dtype_name = NULL;
    int quiet = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            convert_usage(stdout);
            return 0;
        } else if (!strcmp(argv[i], "--series") && i + 1 < argc) {
            series = argv[++i];
        } else if (!strcmp(argv[i], "--dtype") && i + 1 < argc) {
            dtype_name = argv[++i];
        } else if (!strcmp(argv[i], "--quiet") || !strcmp(argv[i], "-q")) {
            quiet = 1;
        } else if (argv[i][0] == '-' && argv[i][1]) {
            fprintf(stderr, "medseg: convert: unknown or incomplete option '%s'\n", argv[i]);
            convert_usage(stderr);
            return 1;
        } else if (!in) {
            in = argv[i];
        } else if (!out) {
            out = argv[i];
        } else {
            fprintf(stderr, "medseg: convert: unexpected argument '%s'\n", argv[i]);
            return 1;
        }
    }
    if (!in || !out) {
        convert_usage(stderr);
        return 1;
    }

    medseg_error err = {0};
    ms_out_format fmt = ms_out_format_from_path(out);
    if (fmt == MS_OUT_NONE) {
        ms_error(&err, MEDSEG_ERR_ARG, "%s: unknown output format (use .nii, .nii.gz, .nrrd, .npz or .png)", out);
        return fail_line(&err);
    }
    medseg_dtype requested = 0;
    if (dtype_name && !(requested = ms_voxel_type_from_name(dtype_name))) {
        ms_error(&err, MEDSEG_ERR_ARG, "convert: unknown --dtype '%s' (uint8, int8, uint16, int16, uint32, int32, "
                 "uint64, int64, float32, float64)", dtype_name);
        return fail_line(&err);
    }
    struct stat st;
    if (stat(in, &st) != 0) {
        ms_error(&err, MEDSEG_ERR_IO, "%s: no such file or folder", in);
        return fail_line(&err);
    }
    if (series && !S_ISDIR(st.st_mode)) {
        ms_error(&err, MEDSEG_ERR_ARG, "%s: --series applies to a folder of DICOM files", in);
        return fail_line(&err);
    }

    medseg_volume v;
    memset(&v, 0, sizeof v);
    medseg_status s = S_ISDIR(st.st_mode) ? medseg_volume_load_series(in, series, &v, &err)
                                          : medseg_volume_load(in, &v, &err);
    if (s) return fail_line(&err);

    ms_value_stats stats;
    ms_volume_stats(&v, &stats);
    ms_convert_plan plan;
    s = ms_convert_plan_make(&plan, &v, &stats, fmt, requested, out, &err);
    medseg_volume conv;
    memset(&conv, 0, sizeof conv);
    const medseg_volume *w = &v;
    if (!s && !plan.keep_stored) {
        s = ms_convert_apply(&conv, &v, &plan, &err);
        w = &conv;
    }
    if (!s) s = medseg_volume_save(out, w, &err);
    if (!s && !quiet) {
        printf("%s -> %s: %lld x %lld x %lld x %d, %s\n", in, out, (long long)v.dim[0], (long long)v.dim[1],
               (long long)v.dim[2], v.channels, plan.note);
        if (fmt == MS_OUT_PNG && !is_identity_geometry(&v))
            printf("note: PNG stores no spacing or orientation; the geometry of %s is not in %s\n", in, out);
    }
    if (!plan.keep_stored) medseg_volume_free(&conv);
    medseg_volume_free(&v);
    return s ? fail_line(&err) : 0;
}
