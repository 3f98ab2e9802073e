/* medseg segment: one image, one prompt, a mask (and optionally an overlay picture). */
#include "cli/cli.h"
#include "core/common.h"
#include "io/npy.h"
#include "io/png.h"
#include "workflow/overlay.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

static void segment_usage(FILE *f)
{
    fprintf(f,
            "usage: medseg segment IMAGE (--box x0,y0,x1,y1 | --point x,y[,label] ...) -o MASK.png [options]\n"
            "\n"
            "Segments one object in a PNG, JPEG or BMP image. Coordinates are pixels of the original\n"
            "image (x = column, y = row). Writes a 0/255 PNG mask of the image's size.\n"
            "\n"
            "prompt (at least one of):\n"
            "  --box x0,y0,x1,y1       a box around the object\n"
            "  --point x,y[,label]     a click; label 1 = object (default), 0 = background; repeatable\n"
            "  --mask-input FILE.npy   low-res logits [256,256] of a previous prediction (--save-logits)\n"
            "output:\n"
            "  -o, --output MASK.png   the mask (required)\n"
            "  --overlay PICTURE.png   the image with the mask tinted and outlined and the prompt drawn\n"
            "  --multimask             SAM's three candidate masks (tokens 1..3), written as\n"
            "                          MASK-1.png, MASK-2.png, MASK-3.png\n"
            "  --best                  of the three candidates, keep the one with the best predicted IoU\n"
            "                          (default: SAM's single-mask output, token 0)\n"
            "  --save-logits FILE.npy  the chosen mask's low-res logits, for a later --mask-input\n"
            "  --json                  print the result as one JSON object\n"
            "options:\n"
            "  --model NAME|PATH       model name or .safetensors file (default: minisam)\n"
            "  --threads N             threads (default: all cores)\n"
            "  --precision f32|bf16    encoder products in bf16 where the CPU has it (default f32)\n"
            "volumes (.nii, .nii.gz, .nrrd, .npz, DICOM): see medseg segment VOLUME --help\n");
}

/* cli_parse_numbers into floats. */
static int parse_floats(const char *s, float *v, int max)
{
    double d[8];
    int n = max <= 8 ? cli_parse_numbers(s, d, max) : -1;
    for (int k = 0; k < n; k++) v[k] = (float)d[k];
    return n;
}

/* Builds "<stem>-<k>.png" from "<stem>.png". */
static void numbered_path(char *out, size_t n, const char *path, int k)
{
    const char *dot = strrchr(path, '.');
    const char *slash = strrchr(path, '/');
    if (dot && (!slash || dot > slash))
        snprintf(out, n, "%.*s-%d%s", (int)(dot - path), path, k, dot);
    else
        snprintf(out, n, "%s-%d", path, k);
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

int cmd_segment3d(int argc, char **argv); /* cmd_segment3d.c: volumes */

/* A volume input or output (NIfTI, NRRD, npz, DICOM file or folder) or a 3D-only option sends the
 * call to cmd_segment3d; everything else stays on the 2D path below. */
static int is_volume_call(int argc, char **argv)
{
    static const char *const opts3d[] = {"--box3d", "--slice", "--prompts", "--cache", "--png-dir", "--intensity",
                                         "--window", "--propagation", "--series", "--z-range", "--label", "--rule",
                                         "--no-propagate", "--expand", "--expand-frac", "--min-iou",
                                         "--mask-feedback", "--points", "--key-fallback"};
    static const char *const exts[] = {".nii", ".nii.gz", ".nrrd", ".npz", ".dcm"};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        for (size_t k = 0; k < sizeof opts3d / sizeof opts3d[0]; k++)
            if (!strcmp(a, opts3d[k])) return 1;
        if (a[0] == '-') continue;
        size_t n = strlen(a);
        for (size_t k = 0; k < sizeof exts / sizeof exts[0]; k++) {
            size_t m = strlen(exts[k]);
            if (n > m && !strcasecmp(a + n - m, exts[k])) return 1;
        }
        struct stat sb;
        if (stat(a, &sb) == 0 && S_ISDIR(sb.st_mode)) return 1; /* a DICOM folder */
    }
    return 0;
}

int cmd_segment(int argc, char **argv)
{
    if (is_volume_call(argc, argv)) return cmd_segment3d(argc, argv);
    const char *image_path = NULL, *out_path = NULL, *overlay_path = NULL, *model_name = "minisam";
    const char *mask_input_path = NULL, *logits_path = NULL;
    int threads = 0, json = 0, multimask = 0, best = 0;
    medseg_prompt prompt = medseg_prompt_default();
    medseg_error err;
    ms_error_clear(&err);

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int has_val = i + 1 < argc, mo_;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            segment_usage(stdout);
            return 0;
        } else if (!strcmp(a, "--box") && has_val) {
            if (parse_floats(argv[++i], prompt.box, 4) != 4) {
                fprintf(stderr, "medseg: --box '%s': expected x0,y0,x1,y1\n", argv[i]);
                return 1;
            }
            prompt.has_box = 1;
        } else if (!strcmp(a, "--point") && has_val) {
            float v[3];
            int n = parse_floats(argv[++i], v, 3);
            if (n < 2 || (n == 3 && v[2] != 0 && v[2] != 1)) {
                fprintf(stderr, "medseg: --point '%s': expected x,y or x,y,label with label 0 or 1\n", argv[i]);
                return 1;
            }
            if (prompt.n_points == MEDSEG_MAX_POINTS) {
                fprintf(stderr, "medseg: at most %d points\n", MEDSEG_MAX_POINTS);
                return 1;
            }
            prompt.points[prompt.n_points][0] = v[0];
            prompt.points[prompt.n_points][1] = v[1];
            prompt.labels[prompt.n_points++] = n == 3 ? (int)v[2] : 1;
        } else if (!strcmp(a, "--mask-input") && has_val) {
            mask_input_path = argv[++i];
        } else if ((!strcmp(a, "-o") || !strcmp(a, "--output")) && has_val) {
            out_path = argv[++i];
        } else if (!strcmp(a, "--overlay") && has_val) {
            overlay_path = argv[++i];
        } else if (!strcmp(a, "--save-logits") && has_val) {
            logits_path = argv[++i];
        } else if ((mo_ = cli_model_option(argc, argv, &i, &model_name, &threads)) != 0) {
            if (mo_ < 0) return -mo_;
        } else if (!strcmp(a, "--multimask")) {
            multimask = 1;
        } else if (!strcmp(a, "--best")) {
            best = 1;
        } else if (!strcmp(a, "--json")) {
            json = 1;
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "medseg: segment: unknown or incomplete option '%s' (see medseg segment --help)\n", a);
            return 1;
        } else if (!image_path) {
            image_path = a;
        } else {
            fprintf(stderr, "medseg: segment: unexpected argument '%s'\n", a);
            return 1;
        }
    }
    if (!image_path || !out_path) {
        fprintf(stderr, "medseg: segment: %s\n", !image_path ? "no IMAGE given" : "no output given (-o MASK.png)");
        segment_usage(stderr);
        return 1;
    }
    if (multimask && best) {
        fprintf(stderr, "medseg: segment: --multimask and --best exclude each other\n");
        return 1;
    }
    if (!prompt.has_box && prompt.n_points == 0 && !mask_input_path) {
        fprintf(stderr, "medseg: segment: no prompt: give --box, --point or --mask-input\n");
        return 2;
    }
    if (multimask && logits_path) {
        fprintf(stderr, "medseg: segment: --save-logits needs a single mask (not --multimask)\n");
        return 1;
    }
    prompt.output = multimask ? MEDSEG_OUTPUT_MULTI : best ? MEDSEG_OUTPUT_BEST : MEDSEG_OUTPUT_SINGLE;

    int rc = 0;
    medseg_model *model = NULL;
    medseg_session *sess = NULL;
    medseg_image img = {0};
    medseg_result res = {0};
    ms_npy mask_in = {0};
    char written[4][4096];
    int n_written = 0;

    /* Inputs first, so that a bad image or mask fails before the model is loaded. */
    if (medseg_image_load(image_path, &img, &err) != MEDSEG_OK) goto fail;
    if (mask_input_path) {
        if (ms_npy_load(mask_input_path, &mask_in, &err) != MEDSEG_OK) goto fail;
        if (mask_in.dtype != MS_NPY_F32 || mask_in.count != (size_t)MEDSEG_LOWRES * MEDSEG_LOWRES) {
            ms_error(&err, MEDSEG_ERR_FORMAT, "%s: expected float32 low-res logits of %dx%d values", mask_input_path,
                     MEDSEG_LOWRES, MEDSEG_LOWRES);
            goto fail;
        }
        prompt.mask_input = mask_in.data;
    }
    char model_path[4096];
    if (medseg_model_resolve(model_name, model_path, sizeof model_path, &err) != MEDSEG_OK) goto fail;
    model = medseg_model_load(model_path, &err);
    if (!model) goto fail;
    sess = medseg_session_create(model, threads, &err);
    if (!sess) goto fail;
    int tty = isatty(2);
    if (tty) fprintf(stderr, "medseg: encoding %s (%dx%d)...", image_path, img.width, img.height);
    double t0 = ms_now_ms();
    if (medseg_session_set_image(sess, &img, &err) != MEDSEG_OK) {
        if (tty) fprintf(stderr, "\n");
        goto fail;
    }
    double t1 = ms_now_ms();
    if (tty) fprintf(stderr, "\r\033[K");
    if (medseg_session_predict(sess, &prompt, &res, &err) != MEDSEG_OK) {
        ms_error_prefix(&err, image_path); /* prompt errors are about this image's geometry */
        goto fail;
    }
    double t2 = ms_now_ms();

    size_t npix = (size_t)res.width * res.height;
    uint8_t *m255 = malloc(npix);
    if (!m255) {
        ms_error(&err, MEDSEG_ERR_NOMEM, "out of memory");
        goto fail;
    }
    long area[3] = {0};
    for (int k = 0; k < res.n_masks; k++) {
        const uint8_t *m = res.masks + (size_t)k * npix;
        for (size_t i = 0; i < npix; i++) {
            m255[i] = m[i] ? 255 : 0;
            area[k] += m[i];
        }
        char path[4096];
        if (res.n_masks > 1) numbered_path(path, sizeof path, out_path, k + 1);
        else snprintf(path, sizeof path, "%s", out_path);
        if (ms_png_write_gray8(path, res.width, res.height, m255, &err) != MEDSEG_OK) {
            free(m255);
            goto fail;
        }
        snprintf(written[n_written++], sizeof written[0], "%s", path);
    }
    free(m255);
    if (overlay_path) {
        int k = 0; /* overlay the (first) mask; with --multimask the best-scoring candidate */
        for (int j = 1; j < res.n_masks; j++)
            if (res.iou[j] > res.iou[k]) k = j;
        if (ms_overlay_write(overlay_path, &img, res.masks + (size_t)k * npix, res.width, res.height, &prompt, &err) !=
            MEDSEG_OK)
            goto fail;
        snprintf(written[n_written++], sizeof written[0], "%s", overlay_path);
    }
    if (logits_path) {
        int64_t shape[2] = {MEDSEG_LOWRES, MEDSEG_LOWRES};
        if (ms_npy_save(logits_path, MS_NPY_F32, 2, shape, res.low_res_logits, &err) != MEDSEG_OK) goto fail;
        snprintf(written[n_written++], sizeof written[0], "%s", logits_path);
    }

    if (json) {
        printf("{\"image\": ");
        json_string(stdout, image_path);
        printf(", \"width\": %d, \"height\": %d, \"masks\": [", res.width, res.height);
        for (int k = 0; k < res.n_masks; k++) {
            printf("%s{\"path\": ", k ? ", " : "");
            json_string(stdout, written[k]);
            printf(", \"iou\": %.6f, \"token\": %d, \"area_px\": %ld}", res.iou[k], res.token[k], area[k]);
        }
        printf("]");
        if (overlay_path) {
            printf(", \"overlay\": ");
            json_string(stdout, overlay_path);
        }
        printf(", \"encoder_ms\": %.1f, \"decoder_ms\": %.1f}\n", t1 - t0, t2 - t1);
    } else {
        for (int k = 0; k < res.n_masks; k++)
            printf("mask: %s (%ld pixels, predicted IoU %.4f)\n", written[k], area[k], res.iou[k]);
        if (overlay_path) printf("overlay: %s\n", overlay_path);
        if (logits_path) printf("low-res logits: %s\n", logits_path);
        printf("time: encoder %.0f ms, decoder %.0f ms\n", t1 - t0, t2 - t1);
    }
    goto out;

fail:
    rc = cli_fail(&err);
    for (int k = 0; k < n_written; k++) remove(written[k]); /* never leave a partial result */
out:
    medseg_result_free(&res);
    medseg_session_free(sess);
    medseg_model_free(model);
    medseg_image_free(&img);
    ms_npy_free(&mask_in);
    return rc;
}
