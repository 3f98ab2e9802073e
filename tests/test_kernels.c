/* Every kernel of src/core/kernels.c and src/core/bf16.c against a plain reference loop (computed in
 * double; bf16 products against the bf16-rounded inputs), on odd
 * sizes, with no pool, a 1-thread pool and a multi-thread pool. */
#include "core/kernels.h"
#include "testutil.h"

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static float frand(void) /* uniform in [-1, 1) */
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)((rng >> 40) * (1.0 / 8388608.0)) - 1.0f;
}
static float *rand_buf(size_t n, float scale)
{
    float *p = malloc((n ? n : 1) * sizeof(float));
    for (size_t i = 0; i < n; i++) p[i] = frand() * scale;
    return p;
}

static void ref_linear(float *out, const float *in, const float *w, const float *b, int N, int IC, int OC)
{
    for (int i = 0; i < N; i++)
        for (int o = 0; o < OC; o++) {
            double s = b ? b[o] : 0.0;
            for (int k = 0; k < IC; k++) s += (double)in[(size_t)i * IC + k] * w[(size_t)o * IC + k];
            out[(size_t)i * OC + o] = (float)s;
        }
}

static void test_linear(ms_pool *pool, const char *tag)
{
    static const int sizes[][3] = {{1, 7, 5}, {3, 33, 17}, {97, 65, 131}, {1000, 31, 9}, {5, 256, 2048}};
    for (size_t t = 0; t < sizeof sizes / sizeof sizes[0]; t++) {
        int N = sizes[t][0], IC = sizes[t][1], OC = sizes[t][2];
        float *in = rand_buf((size_t)N * IC, 1), *w = rand_buf((size_t)OC * IC, 1), *b = rand_buf(OC, 1);
        float *got = malloc((size_t)N * OC * 4), *want = malloc((size_t)N * OC * 4);
        for (int withb = 0; withb < 2; withb++) {
            char label[128];
            snprintf(label, sizeof label, "linear %s N=%d IC=%d OC=%d bias=%d", tag, N, IC, OC, withb);
            for (size_t i = 0; i < (size_t)N * OC; i++) got[i] = NAN; /* must be overwritten */
            ms_linear(got, in, w, withb ? b : NULL, N, IC, OC, pool);
            ref_linear(want, in, w, withb ? b : NULL, N, IC, OC);
            tu_compare(label, got, want, (size_t)N * OC, 2e-5 * IC);
        }
        free(in), free(w), free(b), free(got), free(want);
    }
}

static void test_matmul(ms_pool *pool, const char *tag)
{
    static const int sizes[][3] = {{1, 1, 1}, {7, 9, 13}, {64, 49, 32}, {131, 67, 45}};
    for (size_t t = 0; t < sizeof sizes / sizeof sizes[0]; t++) {
        int M = sizes[t][0], N = sizes[t][1], K = sizes[t][2];
        float *A = rand_buf((size_t)M * K, 1), *B = rand_buf((size_t)K * N, 1), *C0 = rand_buf((size_t)M * N, 1);
        float *got = malloc((size_t)M * N * 4), *want = malloc((size_t)M * N * 4);
        for (int ta = 0; ta < 2; ta++)
            for (int tb = 0; tb < 2; tb++) {
                float alpha = 0.75f, beta = ta ? 0.5f : 0.0f;
                for (int i = 0; i < M; i++)
                    for (int j = 0; j < N; j++) {
                        double s = 0;
                        for (int k = 0; k < K; k++) {
                            double a = ta ? A[(size_t)k * M + i] : A[(size_t)i * K + k];
                            double bb = tb ? B[(size_t)j * K + k] : B[(size_t)k * N + j];
                            s += a * bb;
                        }
                        want[(size_t)i * N + j] = (float)(alpha * s + beta * C0[(size_t)i * N + j]);
                    }
                memcpy(got, C0, (size_t)M * N * 4);
                ms_matmul(got, A, B, M, N, K, ta, tb, alpha, beta, pool);
                char label[128];
                snprintf(label, sizeof label, "matmul %s %dx%dx%d tA=%d tB=%d", tag, M, N, K, ta, tb);
                tu_compare(label, got, want, (size_t)M * N, 2e-5 * K);
            }
        free(A), free(B), free(C0), free(got), free(want);
    }
}

static void test_layernorm(ms_pool *pool, const char *tag)
{
    static const int sizes[][2] = {{1, 1}, {5, 3}, {77, 160}, {4099, 64}};
    for (size_t t = 0; t < sizeof sizes / sizeof sizes[0]; t++) {
        int N = sizes[t][0], C = sizes[t][1];
        float *x = rand_buf((size_t)N * C, 3), *w = rand_buf(C, 1), *b = rand_buf(C, 1);
        for (int i = 0; i < N * C; i++) x[i] += 5.0f; /* offset mean: tests the centring */
        float *want = malloc((size_t)N * C * 4), *got = malloc((size_t)N * C * 4);
        float eps = 1e-5f;
        for (int i = 0; i < N; i++) {
            double m = 0, v = 0;
            for (int c = 0; c < C; c++) m += x[(size_t)i * C + c];
            m /= C;
            for (int c = 0; c < C; c++) v += (x[(size_t)i * C + c] - m) * (x[(size_t)i * C + c] - m);
            v /= C;
            for (int c = 0; c < C; c++)
                want[(size_t)i * C + c] = (float)((x[(size_t)i * C + c] - m) / sqrt(v + eps) * w[c] + b[c]);
        }
        char label[128];
        snprintf(label, sizeof label, "layernorm %s N=%d C=%d", tag, N, C);
        ms_layernorm(got, x, w, b, N, C, eps, pool);
        tu_compare(label, got, want, (size_t)N * C, 2e-5);
        snprintf(label, sizeof label, "layernorm in-place %s N=%d C=%d", tag, N, C);
        ms_layernorm(x, x, w, b, N, C, eps, pool);
        tu_compare(label, x, want, (size_t)N * C, 2e-5);
        free(x), free(w), free(b), free(want), free(got);
    }
}

static void test_gelu_softmax(ms_pool *pool, const char *tag)
{
    size_t n = 100003;
    float *x = rand_buf(n, 12), *want = malloc(n * 4);
    x[0] = 0.0f, x[1] = -0.0f, x[2] = 30.0f, x[3] = -30.0f, x[4] = 1e-8f, x[5] = -9.5f;
    double maxrel = 0, maxscaled = 0;
    for (size_t i = 0; i < n; i++) {
        double xd = x[i];
        want[i] = (float)(0.5 * xd * erfc(-xd / sqrt(2.0))); /* = x/2 (1 + erf(x/sqrt2)), no cancellation */
    }
    float *x0 = malloc(n * 4);
    memcpy(x0, x, n * 4);
    ms_gelu(x, n, pool);
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)x[i] - want[i]);
        double sc = d / fmax(1.0, fabs(x0[i]));
        if (sc > maxscaled) maxscaled = sc;
        if (want[i] > 0.5 && d / want[i] > maxrel) maxrel = d / want[i];
        if (x[i] != ms_gelu_one(x0[i])) maxscaled = INFINITY; /* array and scalar forms agree */
    }
    free(x0);
    char label[128];
    snprintf(label, sizeof label, "gelu %s vs 0.5x erfc(-x/sqrt2)", tag);
    tu_compare(label, x, want, n, 3e-6);
    CHECK(maxscaled < 1e-6, "gelu error / max(1,|x|) %.3g", maxscaled);
    CHECK(maxrel < 1e-6, "gelu relative error where gelu > 0.5: %.3g", maxrel);
    CHECK(x[0] == 0.0f && x[2] == 30.0f && x[3] == 0.0f, "gelu(0)=%g gelu(30)=%g gelu(-30)=%g", x[0], x[2], x[3]);

    /* expf on the whole float range that matters */
    double maxe = 0;
    for (int i = -8700; i <= 8800; i++) {
        float v = i * 0.01f;
        double r = fabs(ms_expf_approx(v) - exp((double)v)) / exp((double)v);
        if (r > maxe) maxe = r;
    }
    CHECK(maxe < 5e-7, "expf approx max relative error %.3g", maxe);

    static const int sizes[][2] = {{1, 1}, {3, 49}, {17, 196}, {5, 7}};
    for (size_t t = 0; t < sizeof sizes / sizeof sizes[0]; t++) {
        int R = sizes[t][0], C = sizes[t][1];
        float *s = rand_buf((size_t)R * C, 20), *w = malloc((size_t)R * C * 4);
        for (int r = 0; r < R; r++) {
            double mx = -INFINITY, sum = 0;
            for (int c = 0; c < C; c++) mx = fmax(mx, s[(size_t)r * C + c]);
            for (int c = 0; c < C; c++) sum += exp(s[(size_t)r * C + c] - mx);
            for (int c = 0; c < C; c++) w[(size_t)r * C + c] = (float)(exp(s[(size_t)r * C + c] - mx) / sum);
        }
        ms_softmax_rows(s, R, C);
        snprintf(label, sizeof label, "softmax %dx%d", R, C);
        tu_compare(label, s, w, (size_t)R * C, 1e-6);
        free(s), free(w);
    }
    float row[4] = {-INFINITY, 0.0f, -INFINITY, 0.0f};
    ms_softmax_rows(row, 1, 4);
    CHECK(row[0] == 0.0f && row[1] == 0.5f && row[3] == 0.5f, "softmax with -inf: %g %g %g %g", row[0], row[1],
          row[2], row[3]);
    float a[3] = {1, 2, 3}, b[3] = {0.5f, -2, 4};
    ms_add(a, a, b, 3);
    CHECK(a[0] == 1.5f && a[1] == 0.0f && a[2] == 7.0f, "ms_add");
    float r[3] = {-1, 0, 2};
    ms_relu(r, 3);
    CHECK(r[0] == 0 && r[1] == 0 && r[2] == 2, "ms_relu");
    free(x), free(want);
}

/* naive conv on [H, W, C] with PyTorch weight layout [OC, C/groups, KH, KW] */
static void ref_conv(float *out, const float *in, const float *w, const float *b, int H, int W, int C, int OC, int KH,
                     int KW, int stride, int pad, int groups)
{
    int OH = (H + 2 * pad - KH) / stride + 1, OW = (W + 2 * pad - KW) / stride + 1;
    int cpg = C / groups, opg = OC / groups;
    for (int oy = 0; oy < OH; oy++)
        for (int ox = 0; ox < OW; ox++)
            for (int o = 0; o < OC; o++) {
                int g = o / opg;
                double s = b ? b[o] : 0;
                for (int ci = 0; ci < cpg; ci++)
                    for (int ky = 0; ky < KH; ky++)
                        for (int kx = 0; kx < KW; kx++) {
                            int iy = oy * stride - pad + ky, ix = ox * stride - pad + kx;
                            if (iy < 0 || iy >= H || ix < 0 || ix >= W) continue;
                            s += (double)in[((size_t)iy * W + ix) * C + g * cpg + ci] *
                                 w[(((size_t)o * cpg + ci) * KH + ky) * KW + kx];
                        }
                out[((size_t)oy * OW + ox) * OC + o] = (float)s;
            }
}

static void test_conv(ms_pool *pool, const char *tag)
{
    static const int cases[][4] = {{13, 11, 5, 1}, {13, 11, 5, 2}, {32, 32, 64, 2}, {9, 17, 37, 1}}; /* H W C stride */
    for (size_t t = 0; t < sizeof cases / sizeof cases[0]; t++) {
        int H = cases[t][0], W = cases[t][1], C = cases[t][2], s = cases[t][3];
        int OH = (H - 1) / s + 1, OW = (W - 1) / s + 1;
        float *in = rand_buf((size_t)H * W * C, 1), *w = rand_buf((size_t)C * 9, 1), *b = rand_buf(C, 1);
        float *wt = malloc((size_t)9 * C * 4);
        for (int c = 0; c < C; c++)
            for (int k = 0; k < 9; k++) wt[(size_t)k * C + c] = w[(size_t)c * 9 + k];
        float *got = malloc((size_t)OH * OW * C * 4), *want = malloc((size_t)OH * OW * C * 4);
        ref_conv(want, in, w, b, H, W, C, C, 3, 3, s, 1, C);
        ms_dwconv3x3_hwc(got, in, wt, b, H, W, C, s, pool);
        char label[128];
        snprintf(label, sizeof label, "dwconv3x3 %s %dx%dx%d s%d", tag, H, W, C, s);
        tu_compare(label, got, want, (size_t)OH * OW * C, 1e-5);
        free(in), free(w), free(b), free(wt), free(got), free(want);
    }
    /* dense conv: 3x3 stride 2 pad 1 (patch embed), 3x3 stride 1 pad 1 (neck), 1x1 */
    static const int dc[][7] = {{17, 15, 3, 16, 3, 2, 1}, {12, 13, 20, 24, 3, 1, 1}, {7, 9, 10, 6, 1, 1, 0}};
    for (size_t t = 0; t < sizeof dc / sizeof dc[0]; t++) {
        int H = dc[t][0], W = dc[t][1], C = dc[t][2], OC = dc[t][3], K = dc[t][4], s = dc[t][5], pad = dc[t][6];
        int OH = (H + 2 * pad - K) / s + 1, OW = (W + 2 * pad - K) / s + 1;
        float *in = rand_buf((size_t)H * W * C, 1), *w = rand_buf((size_t)OC * C * K * K, 1), *b = rand_buf(OC, 1);
        float *wt = malloc((size_t)OC * C * K * K * 4);
        for (int o = 0; o < OC; o++)
            for (int c = 0; c < C; c++)
                for (int k = 0; k < K * K; k++) wt[((size_t)o * K * K + k) * C + c] = w[((size_t)o * C + c) * K * K + k];
        float *got = malloc((size_t)OH * OW * OC * 4), *want = malloc((size_t)OH * OW * OC * 4);
        int rpc = 3;
        float *scr = malloc(ms_conv2d_hwc_scratch(OW, C, K, K, rpc, ms_pool_size(pool)) * 4);
        for (int withb = 0; withb < 2; withb++) {
            ref_conv(want, in, w, withb ? b : NULL, H, W, C, OC, K, K, s, pad, 1);
            ms_conv2d_hwc(got, scr, in, wt, withb ? b : NULL, H, W, C, OC, K, K, s, pad, rpc, pool);
            char label[128];
            snprintf(label, sizeof label, "conv2d %s %dx%dx%d->%d k%d s%d b%d", tag, H, W, C, OC, K, s, withb);
            tu_compare(label, got, want, (size_t)OH * OW * OC, 2e-5 * C * K);
        }
        free(in), free(w), free(b), free(wt), free(got), free(want), free(scr);
    }
}

static void test_windows(void)
{
    static const int cases[][4] = {{14, 14, 3, 7}, {16, 9, 2, 7}, {5, 5, 4, 14}}; /* H W C ws */
    for (size_t t = 0; t < sizeof cases / sizeof cases[0]; t++) {
        int H = cases[t][0], W = cases[t][1], C = cases[t][2], ws = cases[t][3];
        int nH = (H + ws - 1) / ws, nW = (W + ws - 1) / ws;
        size_t nwin = (size_t)nH * nW * ws * ws * C;
        float *x = rand_buf((size_t)H * W * C, 1), *win = malloc(nwin * 4);
        ms_window_partition(win, x, H, W, C, ws);
        int bad = 0;
        /* the padded image, viewed [nH, ws, nW, ws, C] and transposed to [nH, nW, ws, ws, C] */
        for (int a = 0; a < nH; a++)
            for (int bq = 0; bq < nW; bq++)
                for (int i = 0; i < ws; i++)
                    for (int j = 0; j < ws; j++)
                        for (int c = 0; c < C; c++) {
                            int y = a * ws + i, xx = bq * ws + j;
                            float want = (y < H && xx < W) ? x[((size_t)y * W + xx) * C + c] : 0.0f;
                            float got = win[((((size_t)a * nW + bq) * ws + i) * ws + j) * C + c];
                            if (got != want) bad++;
                        }
        CHECK(bad == 0, "window partition %dx%d ws %d: %d wrong", H, W, ws, bad);
        float *y = calloc((size_t)H * W * C, 4);
        ms_window_merge_add(y, win, H, W, C, ws);
        bad = 0;
        for (size_t i = 0; i < (size_t)H * W * C; i++)
            if (y[i] != x[i]) bad++;
        CHECK(bad == 0, "window merge %dx%d ws %d: %d wrong", H, W, ws, bad);
        free(x), free(win), free(y);
    }
}

/* ms_bias_softmax_row against softmax(row + th[qy-ky+S-1] + tw[qx-kx+S-1]) in double */
static void test_bias_softmax(void)
{
    static const int sizes[] = {1, 3, 14, 17, 64};
    for (size_t t = 0; t < sizeof sizes / sizeof sizes[0]; t++) {
        int S = sizes[t], n = S * S, M = 2 * S - 1;
        float *row = rand_buf((size_t)n, 6), *th = rand_buf((size_t)M, 3), *tw = rand_buf((size_t)M, 3);
        float *got = malloc((size_t)n * 4), *want = malloc((size_t)n * 4), *twr = malloc((size_t)S * 4);
        int qy = S / 3, qx = S - 1 - S / 4;
        double mx = -INFINITY, sum = 0;
        double *v = malloc((size_t)n * sizeof(double));
        for (int ky = 0; ky < S; ky++)
            for (int kx = 0; kx < S; kx++) {
                v[ky * S + kx] = (double)row[ky * S + kx] + th[qy - ky + S - 1] + tw[qx - kx + S - 1];
                mx = fmax(mx, v[ky * S + kx]);
            }
        for (int k = 0; k < n; k++) sum += exp(v[k] - mx);
        for (int k = 0; k < n; k++) want[k] = (float)(exp(v[k] - mx) / sum);
        memcpy(got, row, (size_t)n * 4);
        float inv = ms_bias_softmax_row(got, th + qy + S - 1, tw + qx + S - 1, S, twr);
        for (int k = 0; k < n; k++) got[k] *= inv;
        char label[64];
        snprintf(label, sizeof label, "bias_softmax_row S=%d", S);
        tu_compare(label, got, want, (size_t)n, 2e-6);
        free(row), free(th), free(tw), free(got), free(want), free(twr), free(v);
    }
    float r[9], z[5] = {0, 0, 0, 0, 0}, twr[3];
    for (int k = 0; k < 9; k++) r[k] = -INFINITY;
    float inv = ms_bias_softmax_row(r, z + 2, z + 2, 3, twr);
    CHECK(fabsf(inv - 1.0f / 9) < 1e-7f && r[0] == 1.0f && r[8] == 1.0f, "all -inf row: uniform");
}

/* rounds x to bf16 and back (the reference for products of bf16 inputs) */
static void round_bf16(float *dst, const float *src, size_t n)
{
    uint16_t *h = malloc((n ? n : 1) * sizeof(uint16_t));
    ms_f32_to_bf16(h, src, n);
    ms_bf16_to_f32(dst, h, n);
    free(h);
}

static void test_bf16(ms_pool *pool)
{
    medseg_error err;
    /* conversion: round to nearest even, specials kept */
    static const struct {
        uint32_t in;
        uint16_t out;
    } cv[] = {{0x3F800000u, 0x3F80}, {0x3F808000u, 0x3F80}, {0x3F818000u, 0x3F82}, {0x3F808001u, 0x3F81},
              {0xBF80FFFFu, 0xBF81}, {0x7F800000u, 0x7F80}, {0xFF800000u, 0xFF80}, {0x00000000u, 0x0000},
              {0x80000000u, 0x8000}, {0x7F7FFFFFu, 0x7F80}, {0x00000001u, 0x0000}};
    for (size_t i = 0; i < sizeof cv / sizeof cv[0]; i++) {
        float f;
        uint16_t h;
        memcpy(&f, &cv[i].in, 4);
        ms_f32_to_bf16(&h, &f, 1);
        CHECK(h == cv[i].out, "bf16(0x%08x) = 0x%04x, want 0x%04x", cv[i].in, h, cv[i].out);
    }
    float qnan = NAN, back;
    uint16_t h;
    ms_f32_to_bf16(&h, &qnan, 1);
    ms_bf16_to_f32(&back, &h, 1);
    CHECK(isnan(back), "NaN -> bf16 -> f32 is not NaN (0x%04x)", h);
    uint32_t snan_bits = 0x7F800001u; /* a NaN whose payload is only in the dropped bits */
    float snan;
    memcpy(&snan, &snan_bits, 4);
    ms_f32_to_bf16(&h, &snan, 1);
    ms_bf16_to_f32(&back, &h, 1);
    CHECK(isnan(back), "low-payload NaN became 0x%04x", h);
    ms_precision p;
    CHECK(ms_precision_parse("bf16", &p, &err) == MEDSEG_OK && p == MS_PRECISION_BF16, "parse bf16");
    CHECK(ms_precision_parse("f32", &p, &err) == MEDSEG_OK && p == MS_PRECISION_F32, "parse f32");
    CHECK(ms_precision_parse("fp16", &p, &err) == MEDSEG_ERR_ARG, "parse fp16 must fail");
    if (!ms_bf16_available()) {
        printf("bf16: no native bf16 on this CPU: product tests skipped\n");
        CHECK(ms_precision_set(MS_PRECISION_BF16, &err) == MEDSEG_ERR_UNSUPPORTED, "bf16 must be refused");
        return;
    }

    /* products: against double sums of the bf16-rounded inputs (exact products, fp32 sums) */
    static const int sizes[][3] = {{1, 1, 1}, {7, 9, 13}, {64, 49, 32}, {300, 70, 129}};
    for (size_t t = 0; t < sizeof sizes / sizeof sizes[0]; t++) {
        int M = sizes[t][0], N = sizes[t][1], K = sizes[t][2];
        for (int tb = 0; tb < 2; tb++)
            for (int withb = 0; withb < 2; withb++) {
                int lda = K + 3, ldb = (tb ? K : N) + 2, ldc = N + 5; /* padded rows: strides must be honoured */
                size_t nb = (size_t)(tb ? N : K) * ldb;
                float *A = rand_buf((size_t)M * lda, 1), *B = rand_buf(nb, 1), *bias = rand_buf((size_t)N, 1);
                uint16_t *A16 = malloc((size_t)M * lda * 2), *B16 = malloc(nb * 2);
                ms_f32_to_bf16(A16, A, (size_t)M * lda);
                ms_f32_to_bf16(B16, B, nb);
                round_bf16(A, A, (size_t)M * lda);
                round_bf16(B, B, nb);
                float *got = malloc((size_t)M * ldc * 4), *want = malloc((size_t)M * N * 4), *g = malloc((size_t)M * N * 4);
                for (size_t i = 0; i < (size_t)M * ldc; i++) got[i] = NAN;
                for (int i = 0; i < M; i++)
                    for (int j = 0; j < N; j++) {
                        double sacc = withb ? bias[j] : 0.0;
                        for (int k = 0; k < K; k++)
                            sacc += (double)A[(size_t)i * lda + k] * (tb ? B[(size_t)j * ldb + k] : B[(size_t)k * ldb + j]);
                        want[(size_t)i * N + j] = (float)sacc;
                    }
                CHECK_OK(ms_gemm_bf16(got, ldc, A16, lda, B16, ldb, tb, withb ? bias : NULL, M, N, K, &err), &err);
                for (int i = 0; i < M; i++) memcpy(g + (size_t)i * N, got + (size_t)i * ldc, (size_t)N * 4);
                char label[96];
                snprintf(label, sizeof label, "gemm_bf16 %dx%dx%d tB=%d bias=%d", M, N, K, tb, withb);
                tu_compare(label, g, want, (size_t)M * N, 2e-6 * K);
                int pad_ok = 1; /* the padding columns of C are not written */
                for (int i = 0; i < M; i++)
                    for (int j = N; j < ldc; j++) pad_ok &= isnan(got[(size_t)i * ldc + j]);
                CHECK(pad_ok, "%s wrote outside its columns", label);
                free(A), free(B), free(bias), free(A16), free(B16), free(got), free(want), free(g);
            }
    }

    float c1;
    uint16_t a1 = 0x3F80;
    CHECK(ms_gemm_bf16(&c1, 1, &a1, 1, &a1, 1, 1, NULL, 1, 1, 2, &err) == MEDSEG_ERR_ARG, "lda < K must be refused");
    CHECK(ms_gemm_bf16(&c1, 1, &a1, 1, &a1, 1, 0, NULL, 1, 1, 1, &err) == MEDSEG_OK && c1 == 1.0f, "1x1x1: %g", c1);

    /* ms_linear_bf16 over a pool, and ms_linear / ms_conv2d_hwc switched by the precision */
    int N = 301, IC = 67, OC = 45;
    float *in = rand_buf((size_t)N * IC, 1), *w = rand_buf((size_t)OC * IC, 1), *b = rand_buf(OC, 1);
    float *inr = malloc((size_t)N * IC * 4), *wr = malloc((size_t)OC * IC * 4);
    round_bf16(inr, in, (size_t)N * IC);
    round_bf16(wr, w, (size_t)OC * IC);
    uint16_t *w16 = malloc((size_t)OC * IC * 2);
    ms_f32_to_bf16(w16, w, (size_t)OC * IC);
    float *got = malloc((size_t)N * OC * 4), *want = malloc((size_t)N * OC * 4), *f32 = malloc((size_t)N * OC * 4);
    ref_linear(want, inr, wr, b, N, IC, OC);
    CHECK_OK(ms_linear_bf16(got, in, w16, b, N, IC, OC, pool, &err), &err);
    tu_compare("linear_bf16 301x67->45", got, want, (size_t)N * OC, 2e-6 * IC);
    CHECK_OK(ms_precision_set(MS_PRECISION_BF16, &err), &err);
    CHECK(ms_precision_get() == MS_PRECISION_BF16, "precision not switched");
    ms_linear(got, in, w, b, N, IC, OC, pool);
    tu_compare("linear in bf16 mode (>= 256 rows)", got, want, (size_t)N * OC, 2e-6 * IC);
    ms_linear(got, in, w, b, 100, IC, OC, pool); /* < 256 rows: f32 */
    ms_precision_set(MS_PRECISION_F32, NULL);
    ms_linear(f32, in, w, b, 100, IC, OC, pool);
    CHECK(!memcmp(got, f32, (size_t)100 * OC * 4), "linear with < %d rows must stay f32 in bf16 mode", MS_BF16_MIN_ROWS);
    ms_linear(got, in, w, b, N, IC, OC, pool);
    ref_linear(want, in, w, b, N, IC, OC);
    tu_compare("linear back in f32 mode", got, want, (size_t)N * OC, 2e-5 * IC);
    free(in), free(w), free(b), free(inr), free(wr), free(w16), free(got), free(want), free(f32);

    int H = 19, W = 21, C = 8, CO = 16, K = 3, rpc = 4; /* 399 output pixels, stride 1, pad 1 */
    float *ci = rand_buf((size_t)H * W * C, 1), *cw = rand_buf((size_t)CO * K * K * C, 1), *cb = rand_buf(CO, 1);
    float *cir = malloc((size_t)H * W * C * 4), *cwr = malloc((size_t)CO * K * K * C * 4);
    round_bf16(cir, ci, (size_t)H * W * C);
    round_bf16(cwr, cw, (size_t)CO * K * K * C);
    float *wref = malloc((size_t)CO * C * K * K * 4); /* [OC, C, KH, KW] for ref_conv */
    for (int o = 0; o < CO; o++)
        for (int c = 0; c < C; c++)
            for (int k = 0; k < K * K; k++) wref[((size_t)o * C + c) * K * K + k] = cwr[((size_t)o * K * K + k) * C + c];
    float *cg = malloc((size_t)H * W * CO * 4), *cwant = malloc((size_t)H * W * CO * 4);
    float *scr = malloc(ms_conv2d_hwc_scratch(W, C, K, K, rpc, ms_pool_size(pool)) * 4);
    ref_conv(cwant, cir, wref, cb, H, W, C, CO, K, K, 1, 1, 1);
    CHECK_OK(ms_precision_set(MS_PRECISION_BF16, &err), &err);
    ms_conv2d_hwc(cg, scr, ci, cw, cb, H, W, C, CO, K, K, 1, 1, rpc, pool);
    ms_precision_set(MS_PRECISION_F32, NULL);
    tu_compare("conv2d in bf16 mode 19x21x8->16 k3", cg, cwant, (size_t)H * W * CO, 2e-6 * C * K * K);
    free(ci), free(cw), free(cb), free(cir), free(cwr), free(wref), free(cg), free(cwant), free(scr);
}

static void run_all(ms_pool *pool, const char *tag)
{
    test_linear(pool, tag);
    test_matmul(pool, tag);
    test_layernorm(pool, tag);
    test_gelu_softmax(pool, tag);
    test_conv(pool, tag);
}

typedef struct {
    int *hits;
} count_ctx;
static void count_task(void *vctx, int task, int thread)
{
    count_ctx *c = vctx;
    (void)thread;
    __atomic_fetch_add(&c->hits[task], 1, __ATOMIC_RELAXED);
}

int main(void)
{
    medseg_error err;
    run_all(NULL, "nopool");
    ms_pool *p1 = ms_pool_create(1, &err);
    CHECK(p1 != NULL, "pool(1): %s", err.message);
    ms_pool *p3 = ms_pool_create(3, &err);
    CHECK(p3 != NULL, "pool(3): %s", err.message);
    CHECK(ms_pool_size(p3) == 3 && ms_pool_size(p1) == 1 && ms_pool_size(NULL) == 1, "pool sizes");
    run_all(p1, "1thr");
    run_all(p3, "3thr");
    test_windows();
    test_bias_softmax();
    test_bf16(NULL);
    test_bf16(p3);
    /* every task runs exactly once, over many jobs */
    int hits[37];
    count_ctx cc = {hits};
    int bad = 0;
    for (int rep = 0; rep < 500; rep++) {
        memset(hits, 0, sizeof hits);
        int n = 1 + rep % 37;
        ms_pool_run(p3, n, count_task, &cc);
        for (int i = 0; i < n; i++) bad += hits[i] != 1;
    }
    CHECK(bad == 0, "pool ran %d tasks a wrong number of times", bad);
    ms_pool_free(p1);
    ms_pool_free(p3);
    return tu_finish("test_kernels");
}
