/* Numerical kernels (see kernels.h). Matrix products go to ms_sgemm (gemm.c: oneDNN or OpenBLAS)
 * running single-threaded; parallelism comes from ms_pool only, by splitting rows (or output columns)
 * over tasks, so OpenBLAS threads and pool threads never compete for the cores. */
#include "core/kernels.h"

#include <cblas.h>
#include <math.h>
#if defined(__AVX512F__)
#include <immintrin.h>
#endif
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* a*b + c: one fused instruction where the target has FMA (C11 mode turns off contraction),
 * plain multiply-add elsewhere (fmaf would become a slow library call). */
#if defined(__FMA__)
#define MS_FMA(a, b, c) fmaf((a), (b), (c))
#else
#define MS_FMA(a, b, c) ((a) * (b) + (c))
#endif

/* ------------------------------------------------------------------ setup */

static pthread_once_t blas_once = PTHREAD_ONCE_INIT;
static void blas_single_thread(void)
{
    openblas_set_num_threads(1);
}
void ms_kernels_init(void)
{
    pthread_once(&blas_once, blas_single_thread);
}

/* Splits [0, n) into `parts` nearly equal ranges; returns range `i`. */
static void split_range(int n, int parts, int i, int *lo, int *hi)
{
    int q = n / parts, r = n % parts;
    *lo = i * q + (i < r ? i : r);
    *hi = *lo + q + (i < r ? 1 : 0);
}

/* Number of tasks for a job of `units` independent pieces: none when the job is too small to be
 * worth a wake-up; else up to MS_TASKS_PER_THREAD per thread (claimed dynamically, so a thread
 * that the OS delays does not hold the others back), each at least min_units big. */
#define MS_TASKS_PER_THREAD 4
static int n_tasks_for(const ms_pool *pool, int units, double total_flops)
{
    int nt = ms_pool_size(pool);
    if (nt <= 1 || total_flops < 2e5 || units <= 1) return 1;
    int want = nt * MS_TASKS_PER_THREAD;
    return units < want ? units : want;
}

/* ------------------------------------------------------------------ vector math */

/* expf for whole arrays: Cody-Waite reduction x = n ln2 + r, |r| <= ln2/2, degree-7 minimax
 * polynomial (Cephes coefficients), 2^n through the exponent bits. Branch-free so that gcc
 * vectorises the loops that call it; max relative error about 2 ulp on [-87, 88]. */
static inline float exp_vec(float x)
{
    float zero = x < -87.3365478515625f ? 0.0f : 1.0f; /* exp(-inf) and underflow give 0 */
    x = x > 88.3762626647949f ? 88.3762626647949f : x;
    x = x < -87.3365478515625f ? -87.3365478515625f : x;
    /* n = round(x / ln2) by the 1.5 * 2^23 trick (vectorises where floorf/rintf may not) */
    float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    float r = MS_FMA(n, -0.693359375f, x);
    r = MS_FMA(n, 2.12194440e-4f, r);
    float p = 1.9875691500e-4f;
    p = MS_FMA(p, r, 1.3981999507e-3f);
    p = MS_FMA(p, r, 8.3334519073e-3f);
    p = MS_FMA(p, r, 4.1665795894e-2f);
    p = MS_FMA(p, r, 1.6666665459e-1f);
    p = MS_FMA(p, r, 5.0000001201e-1f);
    p = MS_FMA(p * r, r, r) + 1.0f;
    int32_t bits = ((int32_t)n + 127) << 23; /* 2^n, n in [-126, 127] after the clamps */
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale * zero;
}

float ms_expf_approx(float x)
{
    return exp_vec(x);
}

/* GELU(x) = x/2 * (1 + erf(x/sqrt2)). erf(z) = z P(z^2) / Q(z^2) on |z| < 3.92 (degrees 6 and 5
 * in z^2, a near-minimax rational fitted for medseg by Lawson-weighted least squares; max error
 * 2e-9 in exact arithmetic, about 3.5e-7 evaluated in float), and +-1 beyond, where the float
 * erf is +-1 too. Absolute error of GELU below 1e-6 * max(1, |x|): the same order as torch's own
 * float evaluation of 1 + erf. Branch-free, so the loops over it vectorise. */
static inline float gelu_one(float x)
{
    float z = x * 0.70710678118654752f;
    float zc = z > 3.92f ? 3.92f : (z < -3.92f ? -3.92f : z);
    float t = zc * zc;
    float p = -1.333558737014401e-08f;
    p = MS_FMA(p, t, 4.718956515797225e-06f);
    p = MS_FMA(p, t, 3.802646337978807e-04f);
    p = MS_FMA(p, t, 3.826910115347886e-03f);
    p = MS_FMA(p, t, 5.426140415157763e-02f);
    p = MS_FMA(p, t, 1.8457130957309467e-01f);
    p = MS_FMA(p, t, 1.1283791825058003f);
    float q = 6.342565446422662e-05f;
    q = MS_FMA(q, t, 1.30373703542083e-03f);
    q = MS_FMA(q, t, 1.5419937943835199e-02f);
    q = MS_FMA(q, t, 1.1372212285306986e-01f);
    q = MS_FMA(q, t, 4.9690561732287925e-01f);
    q = MS_FMA(q, t, 1.0f);
    float e = zc * p / q;
    e = z >= 3.92f ? 1.0f : (z <= -3.92f ? -1.0f : e);
    return 0.5f * x * (1.0f + e);
}

float ms_gelu_one(float x)
{
    return gelu_one(x);
}

/* ------------------------------------------------------------------ linear / matmul */

typedef struct {
    float *out;
    const float *in, *w, *b;
    int N, IC, OC, ntasks, by_rows;
} linear_ctx;

static void linear_rows(float *out, const float *in, const float *w, const float *b, int n, int IC, int oc0,
                        int oc1, int ldo)
{
    int m = oc1 - oc0;
    if (n <= 0 || m <= 0) return;
    if (b) {
        for (int i = 0; i < n; i++) memcpy(out + (size_t)i * ldo + oc0, b + oc0, (size_t)m * sizeof(float));
    }
    ms_sgemm(0, 1, n, m, IC, 1.0f, in, IC, w + (size_t)oc0 * IC, IC, b ? 1.0f : 0.0f, out + oc0, ldo);
}

static void linear_task(void *vctx, int task, int thread)
{
    (void)thread;
    linear_ctx *c = vctx;
    int lo, hi;
    if (c->by_rows) {
        split_range(c->N, c->ntasks, task, &lo, &hi);
        linear_rows(c->out + (size_t)lo * c->OC, c->in + (size_t)lo * c->IC, c->w, c->b, hi - lo, c->IC, 0, c->OC,
                    c->OC);
    } else {
        split_range(c->OC, c->ntasks, task, &lo, &hi);
        linear_rows(c->out, c->in, c->w, c->b, c->N, c->IC, lo, hi, c->OC);
    }
}

// in [N, IC], w [OC, IC], b [OC] -> out [N, OC]. ref: torch.nn.Linear
void ms_linear(float *out, const float *in, const float *w, const float *b, int N, int IC, int OC, ms_pool *pool)
{
    if (N <= 0 || OC <= 0) return;
    ms_kernels_init();
    if (IC <= 0) {
        for (int i = 0; i < N; i++)
            for (int o = 0; o < OC; o++) out[(size_t)i * OC + o] = b ? b[o] : 0.0f;
        return;
    }
    if (N >= MS_BF16_MIN_ROWS && ms_precision_get() == MS_PRECISION_BF16) {
        /* weights converted per call: one pass over [OC, IC], amortised over >= 256 rows */
        uint16_t *w16 = malloc((size_t)OC * IC * sizeof(uint16_t));
        medseg_status st = MEDSEG_ERR_NOMEM;
        if (w16) {
            ms_f32_to_bf16(w16, w, (size_t)OC * IC);
            st = ms_linear_bf16(out, in, w16, b, N, IC, OC, pool, NULL);
            free(w16);
        }
        if (st == MEDSEG_OK) return; /* else: the f32 path below */
    }
    linear_ctx c = {out, in, w, b, N, IC, OC, 1, 1};
    double flops = 2.0 * N * (double)IC * OC;
    int nt = ms_pool_size(pool);
    if (N >= 16 * nt) {
        /* >= 64 rows a task when possible, >= 1024 when there are enough rows for every thread:
         * a single-threaded sgemm is ~5% faster on 1024 rows than on 256 (bench/README.md) */
        int units = N >= 1024 * nt ? N / 1024 : N / 64 > nt ? N / 64 : nt;
        c.ntasks = n_tasks_for(pool, units, flops);
        c.by_rows = 1;
    } else {
        c.ntasks = n_tasks_for(pool, OC / 16, flops);
        c.by_rows = 0;
    }
    if (c.ntasks <= 1) {
        linear_rows(out, in, w, b, N, IC, 0, OC, OC);
        return;
    }
    ms_pool_run(pool, c.ntasks, linear_task, &c);
}

typedef struct {
    float *C;
    const float *A, *B;
    int M, N, K, transA, transB, ntasks;
    float alpha, beta;
} matmul_ctx;

static void matmul_part(const matmul_ctx *c, int m0, int m1)
{
    int m = m1 - m0;
    if (m <= 0) return;
    /* rows m0..m1 of op(A): A[m0.., :] when not transposed, columns m0.. of A [K, M] otherwise */
    const float *a = c->transA ? c->A + m0 : c->A + (size_t)m0 * c->K;
    int lda = c->transA ? c->M : c->K;
    int ldb = c->transB ? c->K : c->N;
    ms_sgemm(c->transA, c->transB, m, c->N, c->K, c->alpha, a, lda, c->B, ldb, c->beta, c->C + (size_t)m0 * c->N,
             c->N);
}

static void matmul_task(void *vctx, int task, int thread)
{
    (void)thread;
    matmul_ctx *c = vctx;
    int lo, hi;
    split_range(c->M, c->ntasks, task, &lo, &hi);
    matmul_part(c, lo, hi);
}

// op(A) [M, K] @ op(B) [K, N] -> C [M, N]. ref: torch.matmul
void ms_matmul(float *C, const float *A, const float *B, int M, int N, int K, int transA, int transB, float alpha,
               float beta, ms_pool *pool)
{
    if (M <= 0 || N <= 0) return;
    ms_kernels_init();
    if (K <= 0) {
        for (size_t i = 0; i < (size_t)M * N; i++) C[i] = beta == 0.0f ? 0.0f : beta * C[i];
        return;
    }
    matmul_ctx c = {C, A, B, M, N, K, transA, transB, 1, alpha, beta};
    c.ntasks = M >= 8 ? n_tasks_for(pool, M / 4, 2.0 * M * (double)N * K) : 1;
    if (c.ntasks <= 1) {
        matmul_part(&c, 0, M);
        return;
    }
    ms_pool_run(pool, c.ntasks, matmul_task, &c);
}

/* ------------------------------------------------------------------ layernorm */

typedef struct {
    float *out;
    const float *in, *w, *b;
    int N, C, ntasks;
    float eps;
} ln_ctx;

/* Sums and maxima in 16 independent lanes (vectorised without reassociation flags), lanes
 * combined pairwise at the end. */
#define MS_LANES 16
static float lane_sum(const float *x, int n)
{
    float acc[MS_LANES] = {0};
    int c = 0;
    for (; c + MS_LANES <= n; c += MS_LANES)
        for (int k = 0; k < MS_LANES; k++) acc[k] += x[c + k];
    for (int k = 0; c < n; c++, k++) acc[k] += x[c];
    for (int w = MS_LANES / 2; w > 0; w /= 2)
        for (int k = 0; k < w; k++) acc[k] += acc[k + w];
    return acc[0];
}

static float lane_sqdev(const float *x, int n, float m)
{
    float acc[MS_LANES] = {0};
    int c = 0;
    for (; c + MS_LANES <= n; c += MS_LANES)
        for (int k = 0; k < MS_LANES; k++) {
            float d = x[c + k] - m;
            acc[k] += d * d;
        }
    for (int k = 0; c < n; c++, k++) {
        float d = x[c] - m;
        acc[k] += d * d;
    }
    for (int w = MS_LANES / 2; w > 0; w /= 2)
        for (int k = 0; k < w; k++) acc[k] += acc[k + w];
    return acc[0];
}

static float lane_max(const float *x, int n)
{
    float acc[MS_LANES];
    for (int k = 0; k < MS_LANES; k++) acc[k] = -INFINITY;
    int c = 0;
    for (; c + MS_LANES <= n; c += MS_LANES)
        for (int k = 0; k < MS_LANES; k++) acc[k] = x[c + k] > acc[k] ? x[c + k] : acc[k];
    for (int k = 0; c < n; c++, k++) acc[k] = x[c] > acc[k] ? x[c] : acc[k];
    for (int w = MS_LANES / 2; w > 0; w /= 2)
        for (int k = 0; k < w; k++) acc[k] = acc[k + w] > acc[k] ? acc[k + w] : acc[k];
    return acc[0];
}

#if !defined(__AVX512F__)
/* x[i] = exp(x[i] - m) in place; returns the sum of the new values (one pass, 16 lanes). */
static float lane_exp_sum(float *x, int n, float m)
{
    float acc[MS_LANES] = {0};
    int c = 0;
    for (; c + MS_LANES <= n; c += MS_LANES)
        for (int k = 0; k < MS_LANES; k++) {
            float e = exp_vec(x[c + k] - m);
            x[c + k] = e;
            acc[k] += e;
        }
    for (int k = 0; c < n; c++, k++) {
        float e = exp_vec(x[c] - m);
        x[c] = e;
        acc[k] += e;
    }
    for (int w = MS_LANES / 2; w > 0; w /= 2)
        for (int k = 0; k < w; k++) acc[k] += acc[k + w];
    return acc[0];
}
#endif

/* Two-pass mean / biased variance in float lanes, as torch's CPU LayerNorm (float accumulation). */
static void layernorm_rows(float *out, const float *in, const float *w, const float *b, int n, int C, float eps)
{
    for (int i = 0; i < n; i++) {
        const float *x = in + (size_t)i * C;
        float *y = out + (size_t)i * C;
        float m = lane_sum(x, C) / (float)C;
        float var = lane_sqdev(x, C, m) / (float)C;
        float rstd = 1.0f / sqrtf(var + eps);
        if (w && b)
            for (int c = 0; c < C; c++) y[c] = (x[c] - m) * rstd * w[c] + b[c];
        else
            for (int c = 0; c < C; c++) y[c] = (x[c] - m) * rstd * (w ? w[c] : 1.0f) + (b ? b[c] : 0.0f);
    }
}

static void ln_task(void *vctx, int task, int thread)
{
    (void)thread;
    ln_ctx *c = vctx;
    int lo, hi;
    split_range(c->N, c->ntasks, task, &lo, &hi);
    layernorm_rows(c->out + (size_t)lo * c->C, c->in + (size_t)lo * c->C, c->w, c->b, hi - lo, c->C, c->eps);
}

// x [N, C] -> [N, C], normalised over C. ref: torch.nn.LayerNorm
void ms_layernorm(float *out, const float *in, const float *w, const float *b, int N, int C, float eps, ms_pool *pool)
{
    if (N <= 0 || C <= 0) return;
    ln_ctx c = {out, in, w, b, N, C, 1, eps};
    c.ntasks = n_tasks_for(pool, N, 8.0 * N * (double)C);
    if (c.ntasks <= 1) {
        layernorm_rows(out, in, w, b, N, C, eps);
        return;
    }
    ms_pool_run(pool, c.ntasks, ln_task, &c);
}

/* ------------------------------------------------------------------ activations */

typedef struct {
    float *x;
    size_t n;
    int ntasks;
} gelu_ctx;

static void gelu_span(float *x, size_t n)
{
    for (size_t i = 0; i < n; i++) x[i] = gelu_one(x[i]);
}

static void gelu_task(void *vctx, int task, int thread)
{
    (void)thread;
    gelu_ctx *c = vctx;
    size_t per = (c->n + (size_t)c->ntasks - 1) / (size_t)c->ntasks;
    size_t lo = per * (size_t)task;
    if (lo >= c->n) return;
    size_t hi = lo + per > c->n ? c->n : lo + per;
    gelu_span(c->x + lo, hi - lo);
}

// x [n] -> [n] in place. ref: torch.nn.GELU (approximate='none')
void ms_gelu(float *x, size_t n, ms_pool *pool)
{
    int nt = ms_pool_size(pool);
    if (nt <= 1 || n < 16384) {
        gelu_span(x, n);
        return;
    }
    gelu_ctx c = {x, n, nt * MS_TASKS_PER_THREAD};
    ms_pool_run(pool, c.ntasks, gelu_task, &c);
}

// x [n] -> [n] in place. ref: torch.nn.ReLU
void ms_relu(float *x, size_t n)
{
    for (size_t i = 0; i < n; i++) x[i] = x[i] > 0.0f ? x[i] : 0.0f;
}

// x [rows, cols] -> [rows, cols] in place. ref: torch.softmax(dim=-1)
void ms_softmax_rows(float *x, int rows, int cols)
{
    for (int r = 0; r < rows; r++) {
        float *row = x + (size_t)r * cols;
        float mx = lane_max(row, cols);
        if (mx == -INFINITY) { /* all masked: torch gives NaN; keep it defined as uniform */
            for (int c = 0; c < cols; c++) row[c] = 1.0f / (float)cols;
            continue;
        }
        for (int c = 0; c < cols; c++) row[c] = exp_vec(row[c] - mx); /* vectorised */
        float s = lane_sum(row, cols);
        float inv = 1.0f / s;
        for (int c = 0; c < cols; c++) row[c] *= inv;
    }
}

#if defined(__AVX512F__)
/* exp_vec on 16 lanes: the same reduction and polynomial; 2^n applied by VSCALEFPS, which also
 * underflows to 0 and saturates by itself (no masks; the same values on [-87.3, 88.3], denormals
 * below -87.3 where exp_vec gives 0). 17% faster than building 2^n from exponent bits. */
static inline __m512 exp16(__m512 x)
{
    x = _mm512_max_ps(_mm512_min_ps(x, _mm512_set1_ps(88.3762626647949f)), _mm512_set1_ps(-104.0f));
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fmadd_ps(n, _mm512_set1_ps(-0.693359375f), x);
    r = _mm512_fmadd_ps(n, _mm512_set1_ps(2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
    p = _mm512_add_ps(_mm512_fmadd_ps(_mm512_mul_ps(p, r), r, r), _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(p, n);
}

/* ms_bias_softmax_row with AVX-512: the bias pass keeps the row maximum in a register, the exp
 * pass the sum (1.8x the auto-vectorised loops on the ViT-B global rows, measured in L1). */
static float bias_softmax_row16(float *row, const float *th, const float *tw, int S, float *twr)
{
    const int n = S * S;
    for (int kx = 0; kx < S; kx++) twr[kx] = tw[-kx];
    const __mmask16 tail = (__mmask16)((1u << (S % 16)) - 1u);
    __m512 mx = _mm512_set1_ps(-INFINITY);
    for (int ky = 0; ky < S; ky++) {
        const __m512 h = _mm512_set1_ps(th[-ky]);
        float *ar = row + (size_t)ky * S;
        int kx = 0;
        for (; kx + 16 <= S; kx += 16) { /* (attn + rel_h) + rel_w */
            __m512 v = _mm512_add_ps(_mm512_add_ps(_mm512_loadu_ps(ar + kx), h), _mm512_loadu_ps(twr + kx));
            _mm512_storeu_ps(ar + kx, v);
            mx = _mm512_max_ps(mx, v);
        }
        if (tail) {
            __m512 v = _mm512_add_ps(_mm512_add_ps(_mm512_maskz_loadu_ps(tail, ar + kx), h),
                                     _mm512_maskz_loadu_ps(tail, twr + kx));
            _mm512_mask_storeu_ps(ar + kx, tail, v);
            mx = _mm512_mask_max_ps(mx, tail, mx, v);
        }
    }
    const float m = _mm512_reduce_max_ps(mx);
    if (m == -INFINITY) { /* all masked: uniform, as ms_softmax_rows */
        for (int c = 0; c < n; c++) row[c] = 1.0f;
        return 1.0f / (float)n;
    }
    const __m512 mv = _mm512_set1_ps(m);
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
    int c = 0;
    for (; c + 32 <= n; c += 32) {
        __m512 e0 = exp16(_mm512_sub_ps(_mm512_loadu_ps(row + c), mv));
        __m512 e1 = exp16(_mm512_sub_ps(_mm512_loadu_ps(row + c + 16), mv));
        _mm512_storeu_ps(row + c, e0);
        _mm512_storeu_ps(row + c + 16, e1);
        s0 = _mm512_add_ps(s0, e0);
        s1 = _mm512_add_ps(s1, e1);
    }
    for (; c < n; c += 16) {
        const __mmask16 k = n - c >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - c)) - 1u);
        __m512 e = exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, row + c), mv));
        _mm512_mask_storeu_ps(row + c, k, e);
        s0 = _mm512_mask_add_ps(s0, k, s0, e);
    }
    return 1.0f / _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
}
#endif

// row [S*S] scores of one query -> exp(row + bias - max) in place; returns 1 / sum.
// ref: image_encoder.py add_decomposed_rel_pos + Attention.forward (softmax(dim=-1))
float ms_bias_softmax_row(float *row, const float *th, const float *tw, int S, float *twr)
{
#if defined(__AVX512F__)
    return bias_softmax_row16(row, th, tw, S, twr);
#else
    const int n = S * S;
    for (int kx = 0; kx < S; kx++) twr[kx] = tw[-kx];
    for (int ky = 0; ky < S; ky++) {
        const float h = th[-ky];
        float *ar = row + (size_t)ky * S;
        for (int kx = 0; kx < S; kx++) ar[kx] = ar[kx] + h + twr[kx]; /* (attn + rel_h) + rel_w */
    }
    float mx = lane_max(row, n);
    if (mx == -INFINITY) { /* all masked: uniform, as ms_softmax_rows */
        for (int c = 0; c < n; c++) row[c] = 1.0f;
        return 1.0f / (float)n;
    }
    return 1.0f / lane_exp_sum(row, n, mx);
#endif
}

// a [n], b [n] -> out [n]
void ms_add(float *out, const float *a, const float *b, size_t n)
{
    for (size_t i = 0; i < n; i++) out[i] = a[i] + b[i];
}

/* ------------------------------------------------------------------ convolutions (channel-last) */

// rows [oy0, oy1) of dw3x3(in [H, W, C]) -> out [oy1-oy0, OW, C]; in points at image row in_row0.
void ms_dwconv3x3_rows(float *out, const float *in, int in_row0, int H, int W, int C, const float *w, const float *b,
                       int stride, int oy0, int oy1)
{
    const int s = stride, OW = (W - 1) / stride + 1;
    for (int oy = oy0; oy < oy1; oy++) {
        for (int ox = 0; ox < OW; ox++) {
            float *o = out + ((size_t)(oy - oy0) * OW + ox) * C;
            if (b)
                memcpy(o, b, (size_t)C * sizeof(float));
            else
                memset(o, 0, (size_t)C * sizeof(float));
            for (int ky = 0; ky < 3; ky++) {
                int iy = oy * s - 1 + ky;
                if (iy < 0 || iy >= H) continue;
                const float *row = in + (size_t)(iy - in_row0) * W * C;
                for (int kx = 0; kx < 3; kx++) {
                    int ix = ox * s - 1 + kx;
                    if (ix < 0 || ix >= W) continue;
                    const float *x = row + (size_t)ix * C;
                    const float *k = w + (size_t)(ky * 3 + kx) * C;
                    for (int ch = 0; ch < C; ch++) o[ch] += x[ch] * k[ch];
                }
            }
        }
    }
}

typedef struct {
    float *out;
    const float *in, *w, *b;
    int H, W, C, stride, OH, OW, ntasks;
} dw_ctx;

static void dw_task(void *vctx, int task, int thread)
{
    (void)thread;
    dw_ctx *c = vctx;
    int lo, hi;
    split_range(c->OH, c->ntasks, task, &lo, &hi);
    if (lo < hi)
        ms_dwconv3x3_rows(c->out + (size_t)lo * c->OW * c->C, c->in, 0, c->H, c->W, c->C, c->w, c->b, c->stride, lo,
                          hi);
}

// in [H, W, C], w [3, 3, C], b [C] or NULL -> out [OH, OW, C], padding 1. ref: nn.Conv2d(groups=C, k=3, pad=1)
void ms_dwconv3x3_hwc(float *out, const float *in, const float *w, const float *b, int H, int W, int C, int stride,
                      ms_pool *pool)
{
    int OH = (H - 1) / stride + 1, OW = (W - 1) / stride + 1;
    if (H <= 0 || W <= 0 || C <= 0) return;
    dw_ctx c = {out, in, w, b, H, W, C, stride, OH, OW, 1};
    int nt = ms_pool_size(pool);
    c.ntasks = n_tasks_for(pool, OH, 18.0 * OH * (double)OW * C);
    (void)nt;
    if (c.ntasks <= 1) {
        ms_dwconv3x3_rows(out, in, 0, H, W, C, w, b, stride, 0, OH);
        return;
    }
    ms_pool_run(pool, c.ntasks, dw_task, &c);
}

// in [H, W, C] -> cols [OH*OW, KH*KW*C] (zero padding), column order (ky, kx, c).
void ms_im2col_hwc(float *cols, const float *in, int H, int W, int C, int KH, int KW, int stride, int pad, int OH,
                   int OW, int oy0, int oy1)
{
    size_t K = (size_t)KH * KW * C;
    if (oy1 > OH) oy1 = OH;
    for (int oy = oy0; oy < oy1; oy++) {
        for (int ox = 0; ox < OW; ox++) {
            float *dst = cols + ((size_t)(oy - oy0) * OW + ox) * K;
            for (int ky = 0; ky < KH; ky++) {
                int iy = oy * stride - pad + ky;
                for (int kx = 0; kx < KW; kx++) {
                    int ix = ox * stride - pad + kx;
                    float *d = dst + (size_t)(ky * KW + kx) * C;
                    if (iy < 0 || iy >= H || ix < 0 || ix >= W)
                        memset(d, 0, (size_t)C * sizeof(float));
                    else
                        memcpy(d, in + ((size_t)iy * W + ix) * C, (size_t)C * sizeof(float));
                }
            }
        }
    }
}

typedef struct {
    float *out, *scratch;
    const float *in, *w, *b;
    int H, W, C, OC, KH, KW, stride, pad, OH, OW, rows_per_chunk, nchunks;
    const uint16_t *w16; /* bf16 copy of w in bf16 mode, else NULL */
} conv_ctx;

static void conv_chunk(void *vctx, int task, int thread)
{
    conv_ctx *c = vctx;
    int oy0 = task * c->rows_per_chunk;
    int oy1 = oy0 + c->rows_per_chunk > c->OH ? c->OH : oy0 + c->rows_per_chunk;
    if (oy0 >= oy1) return;
    size_t K = (size_t)c->KH * c->KW * c->C;
    float *cols = c->scratch + (size_t)thread * c->rows_per_chunk * c->OW * K;
    ms_im2col_hwc(cols, c->in, c->H, c->W, c->C, c->KH, c->KW, c->stride, c->pad, c->OH, c->OW, oy0, oy1);
    float *o = c->out + (size_t)oy0 * c->OW * c->OC;
    int n = (oy1 - oy0) * c->OW;
    if (c->w16) { /* bf16 mode: this chunk's columns converted, then one bf16 product */
        uint16_t *a = malloc((size_t)n * K * sizeof(uint16_t));
        if (a) {
            ms_f32_to_bf16(a, cols, (size_t)n * K);
            medseg_status st = ms_gemm_bf16(o, c->OC, a, (int)K, c->w16, (int)K, 1, c->b, n, c->OC, (int)K, NULL);
            free(a);
            if (st == MEDSEG_OK) return;
        }
    }
    linear_rows(o, cols, c->w, c->b, n, (int)K, 0, c->OC, c->OC);
}

size_t ms_conv2d_hwc_scratch(int OW, int C, int KH, int KW, int rows_per_chunk, int n_threads)
{
    return (size_t)n_threads * rows_per_chunk * OW * KH * KW * C;
}

// in [H, W, C], w [OC, KH, KW, C], b [OC] or NULL -> out [OH, OW, OC]. ref: nn.Conv2d (groups=1)
void ms_conv2d_hwc(float *out, float *scratch, const float *in, const float *w, const float *b, int H, int W, int C,
                   int OC, int KH, int KW, int stride, int pad, int rows_per_chunk, ms_pool *pool)
{
    ms_kernels_init();
    int OH = (H + 2 * pad - KH) / stride + 1, OW = (W + 2 * pad - KW) / stride + 1;
    if (OH <= 0 || OW <= 0) return;
    if (rows_per_chunk < 1) rows_per_chunk = 1;
    conv_ctx c = {out, scratch, in, w, b, H, W, C, OC, KH, KW, stride, pad, OH, OW, rows_per_chunk, 0, NULL};
    c.nchunks = (OH + rows_per_chunk - 1) / rows_per_chunk;
    uint16_t *w16 = NULL;
    if ((size_t)OH * OW >= MS_BF16_MIN_ROWS && ms_precision_get() == MS_PRECISION_BF16) {
        size_t nw = (size_t)OC * KH * KW * C;
        w16 = malloc(nw * sizeof(uint16_t)); /* NULL: f32 path */
        if (w16) ms_f32_to_bf16(w16, w, nw);
    }
    c.w16 = w16;
    ms_pool_run(pool, c.nchunks, conv_chunk, &c);
    free(w16);
}

/* ------------------------------------------------------------------ windows */

// x [H, W, C] -> win [nH*nW, ws*ws, C], zero padding at bottom/right to multiples of ws.
void ms_window_partition(float *win, const float *x, int H, int W, int C, int ws)
{
    int nH = (H + ws - 1) / ws, nW = (W + ws - 1) / ws;
    for (int wy = 0; wy < nH; wy++)
        for (int wx = 0; wx < nW; wx++)
            for (int i = 0; i < ws; i++)
                for (int j = 0; j < ws; j++) {
                    int y = wy * ws + i, xx = wx * ws + j;
                    float *d = win + (((size_t)(wy * nW + wx) * ws + i) * ws + j) * C;
                    if (y < H && xx < W)
                        memcpy(d, x + ((size_t)y * W + xx) * C, (size_t)C * sizeof(float));
                    else
                        memset(d, 0, (size_t)C * sizeof(float));
                }
}

// win [nH*nW, ws*ws, C] -> x [H, W, C] += win (padding dropped).
void ms_window_merge_add(float *x, const float *win, int H, int W, int C, int ws)
{
    int nW = (W + ws - 1) / ws;
    for (int y = 0; y < H; y++)
        for (int xx = 0; xx < W; xx++) {
            int wy = y / ws, wx = xx / ws, i = y % ws, j = xx % ws;
            const float *s = win + (((size_t)(wy * nW + wx) * ws + i) * ws + j) * C;
            float *d = x + ((size_t)y * W + xx) * C;
            for (int c = 0; c < C; c++) d[c] += s[c];
        }
}
