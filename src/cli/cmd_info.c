/* medseg info FILE|DIR [--series UID] [--json]: what is in an image or volume file, or in a folder
 * of DICOM series: format, compression, dimensions, type, spacing, the voxel-to-world affine in the
 * file's own convention (RAS for NIfTI/npz/2D images, LPS for DICOM and NRRD), the range of the real
 * values, the scaling, modality and description. */
#include "cli/cli.h"
#include "core/common.h"
#include "io/dicom.h"
#include "io/volume.h"
#include "workflow/convert.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* One printable line on stderr (a reader may quote bytes of a hostile file), the exit code. */
static int fail_line(medseg_error *err)
{
    ms_error_make_printable(err);
    return cli_fail(err);
}

static void info_usage(FILE *f)
{
    fprintf(f,
            "usage: medseg info FILE|DIR [--series UID] [--json]\n"
            "\n"
            "Prints what an image or volume holds: format, compression (DICOM transfer syntax), dimensions,\n"
            "channels, data type, spacing, the voxel-to-world affine in the file's own convention (RAS+\n"
            "for NIfTI, npz and 2D images; LPS+ for DICOM and NRRD), the range of the real values (scaling\n"
            "applied), rescale slope/intercept, modality and series description.\n"
            "Reads NIfTI (.nii, .nii.gz), NRRD, challenge .npz, DICOM files and folders, PNG, JPEG, BMP.\n"
            "A folder is read as DICOM: every series in it is listed (UID, description, images, size);\n"
            "with several series, pick one with --series UID (without it only the list is printed).\n"
            "\n"
            "options:\n"
            "  --series UID   the series of a DICOM folder to describe\n"
            "  --json         print one JSON object instead of text\n");
}

/* Orientation letters of the affine's three axes in the given convention (nibabel aff2axcodes:
 * the world axis each voxel axis mostly points along, and its sign). */
static void axis_codes(double a[3][4], medseg_space space, char out[4])
{
    const char *pos = space == MEDSEG_SPACE_LPS ? "LPS" : "RAS";
    const char *neg = space == MEDSEG_SPACE_LPS ? "RAI" : "LPI";
    int used[3] = {0, 0, 0};
    for (int c = 0; c < 3; c++) {
        int best = -1;
        double bv = 0;
        for (int r = 0; r < 3; r++)
            if (!used[r] && fabs(a[r][c]) > bv) bv = fabs(a[r][c]), best = r;
        if (best < 0) {
            out[c] = '?';
            continue;
        }
        used[best] = 1;
        out[c] = a[best][c] > 0 ? pos[best] : neg[best];
    }
    out[3] = 0;
}

static const char *space_name(medseg_space s)
{
    return s == MEDSEG_SPACE_LPS ? "LPS" : "RAS";
}

static const char *space_why(const medseg_volume *v)
{
    if (v->source_space == MEDSEG_SPACE_LPS)
        return !strcmp(v->format, "nrrd") ? "NRRD space" : "DICOM patient coordinates";
    if (!strncmp(v->format, "nifti", 5)) return "NIfTI convention";
    return "medseg's convention for this format";
}

static void print_volume_text(const char *path, const medseg_volume *v, const ms_value_stats *s)
{
    double a[3][4];
    ms_volume_affine_in_source_space(v, a);
    char codes[4];
    axis_codes(a, v->source_space, codes);
    printf("file          %s\n", path);
    printf("format        %s\n", v->format[0] ? v->format : "?");
    printf("compression   %s\n", v->compression[0] ? v->compression : "none");
    printf("dimensions    %lld x %lld x %lld%s\n", (long long)v->dim[0], (long long)v->dim[1], (long long)v->dim[2],
           v->dim[2] == 1 ? " (2D)" : "");
    printf("channels      %d%s\n", v->channels, v->channels == 3 ? " (RGB)" : "");
    printf("data type     %s\n", ms_voxel_type_name(v->dtype));
    printf("spacing       %.6g x %.6g x %.6g mm\n", v->spacing[0], v->spacing[1], v->spacing[2]);
    printf("affine        voxel (i,j,k) -> world mm, %s+ (%s); i,j,k point to %s\n", space_name(v->source_space),
           space_why(v), codes);
    for (int r = 0; r < 3; r++)
        printf("              [ %12.6f %12.6f %12.6f %12.6f ]\n", a[r][0] + 0.0, a[r][1] + 0.0, a[r][2] + 0.0,
               a[r][3] + 0.0); /* + 0.0: no "-0.000000" */
    printf("              [ %12.6f %12.6f %12.6f %12.6f ]\n", 0.0, 0.0, 0.0, 1.0);
    if (isnan(s->min))
        printf("values        no finite values\n");
    else
        printf("values        %.10g .. %.10g (real values, scaling applied%s%s)\n", s->min, s->max,
               s->integral ? ", all integers" : "", s->n_nonfinite ? "; NaN/Inf present" : "");
    if (s->n_nonfinite) printf("non-finite    %zu values (NaN or Inf)\n", s->n_nonfinite);
    if (s->scaled && !isnan(s->stored_min))
        printf("stored        %.10g .. %.10g\n", s->stored_min, s->stored_max);
    printf("rescale       slope %.10g, intercept %.10g%s\n", v->scl_slope, v->scl_inter,
           s->scaled ? "" : " (none)");
    printf("modality      %s\n", v->modality[0] ? v->modality : "unknown");
    printf("description   %s\n", v->description[0] ? v->description : "");
}

/* A JSON number that reads back as exactly x (cJSON's own printing may drop the 16th/17th
 * digit); NaN and Inf cannot be JSON numbers: null. */
static cJSON *json_number(double x)
{
    if (!isfinite(x)) return cJSON_CreateNull();
    char buf[40];
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(buf, sizeof buf, "%.*g", prec, x + 0.0); /* + 0.0: no "-0" */
        if (strtod(buf, NULL) == x) break;
    }
    return cJSON_CreateRaw(buf);
}

static cJSON *number_array(const double *x, int n)
{
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; i < n; i++) cJSON_AddItemToArray(a, json_number(x[i]));
    return a;
}

static void add_number_or_null(cJSON *o, const char *key, double x)
{
    cJSON_AddItemToObject(o, key, json_number(x));
}

static cJSON *volume_json(const char *path, const medseg_volume *v, const ms_value_stats *s)
{
    cJSON *o = cJSON_CreateObject();
    double a[3][4];
    ms_volume_affine_in_source_space(v, a);
    char codes[4];
    axis_codes(a, v->source_space, codes);
    cJSON_AddStringToObject(o, "file", path);
    cJSON_AddStringToObject(o, "format", v->format);
    cJSON_AddStringToObject(o, "compression", v->compression);
    double dims[3] = {(double)v->dim[0], (double)v->dim[1], (double)v->dim[2]};
    cJSON_AddItemToObject(o, "dims", number_array(dims, 3));
    cJSON_AddNumberToObject(o, "channels", v->channels);
    cJSON_AddStringToObject(o, "dtype", ms_voxel_type_name(v->dtype));
    cJSON_AddItemToObject(o, "spacing", number_array(v->spacing, 3));
    cJSON_AddStringToObject(o, "space", space_name(v->source_space));
    cJSON_AddStringToObject(o, "axis_codes", codes);
    cJSON *aff = cJSON_CreateArray();
    for (int r = 0; r < 3; r++) cJSON_AddItemToArray(aff, number_array(a[r], 4));
    const double last[4] = {0, 0, 0, 1};
    cJSON_AddItemToArray(aff, number_array(last, 4));
    cJSON_AddItemToObject(o, "affine", aff);
    cJSON *ras = cJSON_CreateArray();
    for (int r = 0; r < 3; r++) cJSON_AddItemToArray(ras, number_array(v->affine[r], 4));
    cJSON_AddItemToArray(ras, number_array(last, 4));
    cJSON_AddItemToObject(o, "affine_ras", ras);
    add_number_or_null(o, "min", s->min);
    add_number_or_null(o, "max", s->max);
    add_number_or_null(o, "stored_min", s->stored_min);
    add_number_or_null(o, "stored_max", s->stored_max);
    cJSON_AddBoolToObject(o, "integral", s->integral);
    cJSON_AddNumberToObject(o, "nonfinite", (double)s->n_nonfinite);
    add_number_or_null(o, "scl_slope", v->scl_slope);
    add_number_or_null(o, "scl_inter", v->scl_inter);
    cJSON_AddStringToObject(o, "modality", v->modality);
    cJSON_AddStringToObject(o, "description", v->description);
    return o;
}

static cJSON *series_json(const ms_dicom_series_info *si, int n)
{
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; i < n; i++) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "uid", si[i].uid);
        cJSON_AddStringToObject(o, "description", si[i].description);
        cJSON_AddStringToObject(o, "modality", si[i].modality);
        if (si[i].series_number >= 0)
            cJSON_AddNumberToObject(o, "series_number", si[i].series_number);
        else
            cJSON_AddNullToObject(o, "series_number");
        cJSON_AddNumberToObject(o, "files", si[i].n_files);
        cJSON_AddNumberToObject(o, "images", si[i].n_images);
        cJSON_AddNumberToObject(o, "rows", si[i].rows);
        cJSON_AddNumberToObject(o, "cols", si[i].cols);
        cJSON_AddStringToObject(o, "transfer_syntax", si[i].transfer_syntax);
        cJSON_AddItemToArray(a, o);
    }
    return a;
}

static void print_series_text(const char *dir, const ms_dicom_series_info *si, int n)
{
    printf("folder        %s\n", dir);
    printf("series        %d DICOM series\n", n);
    for (int i = 0; i < n; i++) {
        printf("  [%d] %s\n", i + 1, si[i].uid[0] ? si[i].uid : "(no SeriesInstanceUID)");
        char num[16] = "none";
        if (si[i].series_number >= 0) snprintf(num, sizeof num, "%d", si[i].series_number);
        printf("      series number %s, %s, \"%s\", %d images in %d files, %d x %d, %s\n", num,
               si[i].modality[0] ? si[i].modality : "modality unknown", si[i].description, si[i].n_images,
               si[i].n_files, si[i].cols, si[i].rows, si[i].transfer_syntax);
    }
}

static int print_json(cJSON *o)
{
    char *s = cJSON_Print(o);
    cJSON_Delete(o);
    if (!s) {
        fprintf(stderr, "medseg: info: out of memory printing JSON\n");
        return cli_exit_code(MEDSEG_ERR_NOMEM);
    }
    puts(s);
    free(s);
    return 0;
}

int cmd_info(int argc, char **argv)
{
    const char *path = NULL, *series = NULL;
    int json = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            info_usage(stdout);
            return 0;
        } else if (!strcmp(argv[i], "--json")) {
            json = 1;
        } else if (!strcmp(argv[i], "--series") && i + 1 < argc) {
            series = argv[++i];
        } else if (argv[i][0] == '-' && argv[i][1]) {
            fprintf(stderr, "medseg: info: unknown or incomplete option '%s'\n", argv[i]);
            info_usage(stderr);
            return 1;
        } else if (!path) {
            path = argv[i];
        } else {
            fprintf(stderr, "medseg: info: one FILE or DIR only ('%s')\n", argv[i]);
            return 1;
        }
    }
    if (!path) {
        info_usage(stderr);
        return 1;
    }

    medseg_error err = {0};
    struct stat st;
    if (stat(path, &st) != 0) {
        ms_error(&err, MEDSEG_ERR_IO, "%s: no such file or folder", path);
        return fail_line(&err);
    }
    int is_dir = S_ISDIR(st.st_mode);
    ms_dicom_series_info *si = NULL;
    int nseries = 0;
    cJSON *root = json ? cJSON_CreateObject() : NULL;
    if (is_dir) {
        medseg_status s = ms_dicom_list_series(path, &si, &nseries, &err);
        if (s) {
            cJSON_Delete(root);
            return fail_line(&err);
        }
        if (json) {
            cJSON_AddStringToObject(root, "folder", path);
            cJSON_AddItemToObject(root, "series", series_json(si, nseries));
        } else {
            print_series_text(path, si, nseries);
        }
        if (!series && nseries > 1) {
            if (json) {
                cJSON_AddNullToObject(root, "volume");
                cJSON_AddStringToObject(root, "hint", "several series: pick one with --series UID");
            } else {
                printf("\nseveral series: describe or convert one with --series UID\n");
            }
            free(si);
            return json ? print_json(root) : 0;
        }
        if (series) {
            int found = 0;
            for (int i = 0; i < nseries; i++) found |= !strcmp(si[i].uid, series);
            if (!found) {
                free(si);
                cJSON_Delete(root);
                ms_error(&err, MEDSEG_ERR_ARG, "%s: no series with SeriesInstanceUID %s (medseg info %s lists them)",
                         path, series, path);
                return fail_line(&err);
            }
        }
        if (!json) printf("\n");
    } else if (series) {
        cJSON_Delete(root);
        ms_error(&err, MEDSEG_ERR_ARG, "%s: --series applies to a folder of DICOM files", path);
        return fail_line(&err);
    }
    free(si);

    medseg_volume v;
    memset(&v, 0, sizeof v);
    medseg_status s = is_dir ? medseg_volume_load_series(path, series, &v, &err) : medseg_volume_load(path, &v, &err);
    if (s) {
        cJSON_Delete(root);
        return fail_line(&err);
    }
    ms_value_stats stats;
    ms_volume_stats(&v, &stats);
    int rc = 0;
    if (json) {
        cJSON *vo = volume_json(path, &v, &stats);
        if (is_dir) {
            cJSON_AddItemToObject(root, "volume", vo);
        } else {
            cJSON_Delete(root);
            root = vo;
        }
        rc = print_json(root);
    } else {
        print_volume_text(path, &v, &stats);
    }
    medseg_volume_free(&v);
    return rc;
}
