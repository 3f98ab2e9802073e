/* SAM mask decoder with its two-way transformer (see mask_decoder.h).
 *
 * Layout: prompt tokens are rows [T, 256]; the image side stays channel-major [256, 64*64] as
 * it arrives (NCHW), so no transposes are needed and the LayerNorms over channels vectorise
 * along the pixels.
 *
 * The two cross attentions touch all 4096 image tokens. Instead of projecting the image tokens
 * to q/k/v (four [4096,256]x[256,128] products per block), the token side is folded into the
 * projection weights, which is exact algebra:
 *   token->image: scores_h = (q_h Wk_h / sqrt(d)) @ (keys + pe)^T, the key bias adds a constant
 *     to every score of a row and cancels in the softmax; since each softmax row sums to 1,
 *     attn_h @ (keys Wv_h^T + bv_h) = (attn_h @ keys) Wv_h^T + bv_h.
 *   image->token: scores_h = (keys + pe) @ (Wq_h^T k_h / sqrt(d)) + bq_h k_h / sqrt(d), and
 *     out_proj(concat_h attn_h v_h) = sum_h attn_h (v_h Wo_h^T) + bo.
 * Each then costs two [8T, 256] x [256, 4096]-sized products (T = number of tokens, 7 for a box
 * or one click, 9 for three clicks) instead of [4096, 256] x [256, 128] ones: about half the
 * work for T < 16 (more work above; prompts that large are rare, the results stay exact).
 * Other savings: the final attention computes only the 5 output-token rows that are read; the
 * output upscaling (two transposed convs, LayerNorm2d, GELUs, hypernetwork product) runs in
 * cache-sized blocks of the grid and never materialises its 32x256x256 intermediate; with an
 * ms_md_image_cache the first block's image-side projections come precomputed.
 *
 * Streaming (see decode): the image side is swept in two passes over chunks of I2T_CHUNK pixels,
 * one per block (image->token attention + norm4). The token->image attention that comes next
 * (block 1's, then the final one) needs only the tokens for its queries, so it is accumulated in
 * the same sweep with per-chunk softmax slots, while each chunk is in cache: keys + pe and the
 * [8T, 4096] score matrices are never written out.
 *
 * Upscaling folded into the blocks (with the image cache): the first transposed conv is linear,
 * U^T keys2 with U [256 in, 256 (co, dy, dx)], and keys2 = norm4_1(keys1 + A1 + b1) where
 * A1 = vo1^T probs1 has rank 8T, keys1 = norm4_0(src + A0 + b0) likewise. Writing a LayerNorm
 * over channels as rstd_p (w * (x - mean_p)) + b, for every pixel p:
 *   U^T keys2 = rstd2_p (U1^T x2 - mean2_p colsum(U1)) + U^T bn1,   U1 = diag(wn1) U,
 *   U1^T x2   = U1^T keys1 + (vo1 U1)^T probs1 + U1^T b1,
 *   U1^T keys1 = rstd1_p (U2^T src + (vo0 U2)^T probs0 + U2^T b0 - mean1_p colsum(U2)) + U1^T bn0,
 *   U2 = diag(wn0) U1,
 * where U2^T src is per image (cache). So the [256, 256] x [256, 4096] product of every decode
 * becomes two rank-8T updates, done by the image passes as 256 extra rows of their products
 * (vo @ U1 or U2) plus a per-pixel epilogue after each norm4. Exact algebra; the rounding
 * differs (the tests' golden comparisons bound it).
 *
 * ref: segment_anything/modeling/mask_decoder.py, transformer.py, common.py @dca509f */
#include "models/mask_decoder.h"

#include "core/kernels.h"
#include "models/prompt_encoder.h"

#include <cblas.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define D MS_MD_DIM
#define HW (MS_MD_GRID * MS_MD_GRID)
#define NH MS_MD_HEADS
#define UP1 (D / 4)         /* 64 channels after the first transposed conv */
#define UP2 (D / 8)         /* 32 channels after the second */
#define LN_EPS 1e-5f        /* nn.LayerNorm default */
#define LN2D_EPS 1e-6f      /* LayerNorm2d default */

/* ------------------------------------------------------------------ weight table */

#define MD_W(name, field, nd, ...) {"mask_decoder." name, 1, nd, {__VA_ARGS__}, offsetof(ms_mask_decoder, field), 0}
#define MD_L(name, field, nd, ...)                                                                               \
    {"mask_decoder.transformer.layers.%d." name, MS_MD_DEPTH, nd, {__VA_ARGS__},                                 \
     offsetof(ms_mask_decoder, layers[0].field), sizeof(ms_md_block)}
/* the 8 tensors of one Attention module with internal dimension ci */
#define MD_ATTN(L, prefix, field, ci)                                                                            \
    L(prefix ".q_proj.weight", field.q_w, 2, ci, D), L(prefix ".q_proj.bias", field.q_b, 1, ci),                \
        L(prefix ".k_proj.weight", field.k_w, 2, ci, D), L(prefix ".k_proj.bias", field.k_b, 1, ci),            \
        L(prefix ".v_proj.weight", field.v_w, 2, ci, D), L(prefix ".v_proj.bias", field.v_b, 1, ci),            \
        L(prefix ".out_proj.weight", field.out_w, 2, D, ci), L(prefix ".out_proj.bias", field.out_b, 1, D)
#define MD_MLP(prefix, field, j, out, in)                                                                        \
    {"mask_decoder." prefix ".layers." #j ".weight", MS_MD_TOKENS, 2, {out, in},                                 \
     offsetof(ms_mask_decoder, field##_w[0][j]), sizeof(const float *[3])},                                     \
    {"mask_decoder." prefix ".layers." #j ".bias", MS_MD_TOKENS, 1, {out},                                       \
     offsetof(ms_mask_decoder, field##_b[0][j]), sizeof(const float *[3])}

static const ms_weight_spec mask_decoder_table[] = {
    MD_ATTN(MD_L, "self_attn", self_attn, D),
    MD_L("norm1.weight", norm1_w, 1, D),
    MD_L("norm1.bias", norm1_b, 1, D),
    MD_ATTN(MD_L, "cross_attn_token_to_image", cross_token_to_image, MS_MD_CROSS),
    MD_L("norm2.weight", norm2_w, 1, D),
    MD_L("norm2.bias", norm2_b, 1, D),
    MD_L("mlp.lin1.weight", lin1_w, 2, MS_MD_MLP, D),
    MD_L("mlp.lin1.bias", lin1_b, 1, MS_MD_MLP),
    MD_L("mlp.lin2.weight", lin2_w, 2, D, MS_MD_MLP),
    MD_L("mlp.lin2.bias", lin2_b, 1, D),
    MD_L("norm3.weight", norm3_w, 1, D),
    MD_L("norm3.bias", norm3_b, 1, D),
    MD_L("norm4.weight", norm4_w, 1, D),
    MD_L("norm4.bias", norm4_b, 1, D),
    MD_ATTN(MD_L, "cross_attn_image_to_token", cross_image_to_token, MS_MD_CROSS),
    MD_ATTN(MD_W, "transformer.final_attn_token_to_image", final_attn, MS_MD_CROSS),
    MD_W("transformer.norm_final_attn.weight", norm_final_w, 1, D),
    MD_W("transformer.norm_final_attn.bias", norm_final_b, 1, D),
    MD_W("iou_token.weight", iou_token, 2, 1, D),
    MD_W("mask_tokens.weight", mask_tokens, 2, MS_MD_TOKENS, D),
    MD_W("output_upscaling.0.weight", up0_w, 4, D, UP1, 2, 2),
    MD_W("output_upscaling.0.bias", up0_b, 1, UP1),
    MD_W("output_upscaling.1.weight", up1_w, 1, UP1),
    MD_W("output_upscaling.1.bias", up1_b, 1, UP1),
    MD_W("output_upscaling.3.weight", up3_w, 4, UP1, UP2, 2, 2),
    MD_W("output_upscaling.3.bias", up3_b, 1, UP2),
    MD_MLP("output_hypernetworks_mlps.%d", hyper, 0, D, D),
    MD_MLP("output_hypernetworks_mlps.%d", hyper, 1, D, D),
    MD_MLP("output_hypernetworks_mlps.%d", hyper, 2, UP2, D),
    MD_W("iou_prediction_head.layers.0.weight", iou_w[0], 2, D, D),
    MD_W("iou_prediction_head.layers.0.bias", iou_b[0], 1, D),
    MD_W("iou_prediction_head.layers.1.weight", iou_w[1], 2, D, D),
    MD_W("iou_prediction_head.layers.1.bias", iou_b[1], 1, D),
    MD_W("iou_prediction_head.layers.2.weight", iou_w[2], 2, MS_MD_TOKENS, D),
    MD_W("iou_prediction_head.layers.2.bias", iou_b[2], 1, MS_MD_TOKENS),
};

medseg_status ms_mask_decoder_bind(ms_mask_decoder *md, const ms_tensors *ts, medseg_error *err)
{
    memset(md, 0, sizeof *md);
    medseg_status st = ms_bind_weight_table(md, mask_decoder_table,
                                            sizeof mask_decoder_table / sizeof mask_decoder_table[0], ts,
                                            "mask_decoder", err);
    if (st != MEDSEG_OK) memset(md, 0, sizeof *md);
    return st;
}

void ms_mask_decoder_release(ms_mask_decoder *md)
{
    if (md) memset(md, 0, sizeof *md);
}

/* ------------------------------------------------------------------ small helpers */

static void split_range(int n, int parts, int i, int *lo, int *hi)
{
    int q = n / parts, r = n % parts;
    *lo = i * q + (i < r ? i : r);
    *hi = *lo + q + (i < r ? 1 : 0);
}

static int task_count(ms_pool *pool, int max_tasks)
{
    int nt = ms_pool_size(pool);
    int n = nt > 1 ? 4 * nt : 1;
    return n < max_tasks ? n : max_tasks;
}

/* a*b + c: one fused instruction where the target has FMA (C11 mode turns off contraction), plain
 * multiply-add elsewhere (fmaf would become a slow library call) */
#if defined(__FMA__)
#define MD_FMA(a, b, c) fmaf((a), (b), (c))
#else
#define MD_FMA(a, b, c) ((a) * (b) + (c))
#endif

/* Inline, vectorisable exp and GELU for the loops of this file (the column softmax of the
 * image->token attention and the fused upscaling epilogues). */

// x -> e^x for x <= 88; about 1 ulp: 2^n * e^r, n = round(x / ln2), |r| <= ln2/2, Taylor to r^7
static inline float md_exp(float x)
{
    x = x < -87.0f ? -87.0f : x;
    x = x > 88.0f ? 88.0f : x;
    float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f; /* round to nearest */
    float r = MD_FMA(n, -0.693145751953125f, x); /* ln2 split hi + lo */
    r = MD_FMA(n, -1.428606765330187e-06f, r);
    float p = 1.0f / 5040.0f;
    p = MD_FMA(p, r, 1.0f / 720.0f);
    p = MD_FMA(p, r, 1.0f / 120.0f);
    p = MD_FMA(p, r, 1.0f / 24.0f);
    p = MD_FMA(p, r, 1.0f / 6.0f);
    p = MD_FMA(p, r, 0.5f);
    p = MD_FMA(p, r, 1.0f);
    p = MD_FMA(p, r, 1.0f);
    int32_t bits = ((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

/* erf(x) = x P(x^2) / Q(x^2) on |x| <= c = 3.92 (erf(c) rounds to 1 in float32), a (5,5)
 * rational fitted to math.erf in double by iterated weighted least squares (fit error 1.8e-8;
 * 3.9e-7 when evaluated in float32). Q > 0 on the whole interval. */
#define ERF_CLAMP 3.92f

// x -> x/2 (1 + erf(x / sqrt2)). ref: torch.nn.GELU (approximate='none')
static inline float md_gelu_one(float x)
{
    float z = x * 0.70710678118654752f;
    z = z > ERF_CLAMP ? ERF_CLAMP : z;
    z = z < -ERF_CLAMP ? -ERF_CLAMP : z;
    float zz = z * z;
    float p = 2.0463556430609437e-06f;
    p = MD_FMA(p, zz, 0.00028604664292747415f);
    p = MD_FMA(p, zz, 0.003804758980797486f);
    p = MD_FMA(p, zz, 0.05286611789421822f);
    p = MD_FMA(p, zz, 0.19128139316924508f);
    p = MD_FMA(p, zz, 1.1283790841222512f);
    float q = 3.8115529649630805e-05f;
    q = MD_FMA(q, zz, 0.001172653880349414f);
    q = MD_FMA(q, zz, 0.015045718026123634f);
    q = MD_FMA(q, zz, 0.11447292866836918f);
    q = MD_FMA(q, zz, 0.5028509292854102f);
    q = MD_FMA(q, zz, 1.0f);
    float erf = z * p / q;
    return 0.5f * x * (1.0f + erf);
}


// a [n], b [n] -> out [n] = a + b (out may alias a)
static void add_vec(float *out, const float *a, const float *b, size_t n)
{
    for (size_t i = 0; i < n; i++) out[i] = a[i] + b[i];
}

typedef struct {
    float *C;
    const float *A, *B;
    int M, N, K, transA, transB, ntasks;
    float beta;
} gemm_ctx;

static void gemm_task(void *vctx, int task, int thread)
{
    (void)thread;
    gemm_ctx *c = vctx;
    /* column blocks in multiples of 16 */
    int blocks = (c->N + 15) / 16, lo, hi;
    split_range(blocks, c->ntasks, task, &lo, &hi);
    int n0 = lo * 16, n1 = hi * 16 < c->N ? hi * 16 : c->N;
    if (n1 <= n0) return;
    const float *b = c->transB ? c->B + (size_t)n0 * c->K : c->B + n0;
    cblas_sgemm(CblasRowMajor, c->transA ? CblasTrans : CblasNoTrans, c->transB ? CblasTrans : CblasNoTrans, c->M,
                n1 - n0, c->K, 1.0f, c->A, c->transA ? c->M : c->K, b, c->transB ? c->K : c->N, c->beta, c->C + n0,
                c->N);
}

typedef struct {
    float *part; /* [ntasks, M, N] */
    const float *A, *B;
    int M, N, K, ntasks;
} gemm_splitk_ctx;

static void gemm_splitk_task(void *vctx, int task, int thread)
{
    (void)thread;
    gemm_splitk_ctx *c = vctx;
    int lo, hi;
    split_range(c->K, c->ntasks, task, &lo, &hi);
    float *out = c->part + (size_t)task * c->M * c->N;
    if (hi <= lo) {
        memset(out, 0, (size_t)c->M * c->N * sizeof(float));
        return;
    }
    /* A [M, K] row-major, B^T given as [N, K] row-major: columns lo..hi of both */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, c->M, c->N, hi - lo, 1.0f, c->A + lo, c->K, c->B + lo, c->K,
                0.0f, out, c->N);
}

// C [M, N] = A [M, K] @ B^T (B [N, K]) with K split over the pool and the partial products summed: for
// the long-K, narrow-N product attn @ keys^T, where a split over N would make every task pack all of A.
// Returns 0 (nothing done) when the partial buffers cannot be allocated.
static int md_gemm_splitk_bt(float *C, const float *A, const float *B, int M, int N, int K, ms_pool *pool)
{
    int nt = ms_pool_size(pool);
    float *part = malloc((size_t)nt * M * N * sizeof(float));
    if (!part) return 0;
    gemm_splitk_ctx c = {part, A, B, M, N, K, nt};
    ms_pool_run(pool, nt, gemm_splitk_task, &c);
    const size_t mn = (size_t)M * N;
    memcpy(C, part, mn * sizeof(float));
    for (int t = 1; t < nt; t++) add_vec(C, C, part + (size_t)t * mn, mn);
    free(part);
    return 1;
}

// C [M, N] = op(A) [M, K] @ op(B) [K, N] + beta C, split over column blocks of C: for the wide products
// here (N = 4096 or 16384) every task then packs only its own part of B. ref: torch.matmul
static void md_gemm(float *C, const float *A, const float *B, int M, int N, int K, int transA, int transB, float beta,
                    ms_pool *pool)
{
    ms_kernels_init();
    int nt = ms_pool_size(pool);
    gemm_ctx c = {C, A, B, M, N, K, transA, transB, nt, beta};
    if (nt > 1 && !transA && transB && beta == 0.0f && N <= 512 && K >= 2048 &&
        md_gemm_splitk_bt(C, A, B, M, N, K, pool))
        return;
    if (nt <= 1 || N < 64) {
        c.ntasks = 1;
        gemm_task(&c, 0, 0);
        return;
    }
    /* wide products: a few blocks per thread so that a thread slowed by other load is helped out */
    c.ntasks = N >= 4096 ? 4 * nt : nt;
    ms_pool_run(pool, c.ntasks, gemm_task, &c);
}

// a [n], b [n] -> sum a*b, in 16 independent lanes so that it vectorises without -ffast-math
static inline float dot_lanes(const float *a, const float *b, int n)
{
    enum { L = 16 };
    float lane[L];
    for (int l = 0; l < L; l++) lane[l] = 0.0f;
    int n0 = n - n % L;
    for (int k = 0; k < n0; k += L)
        for (int l = 0; l < L; l++) lane[l] += a[k + l] * b[k + l];
    for (int w = L / 2; w > 0; w /= 2) /* pairwise: a few vector adds instead of a serial chain */
        for (int l = 0; l < w; l++) lane[l] += lane[l + w];
    float acc = lane[0];
    for (int k = n0; k < n; k++) acc += a[k] * b[k];
    return acc;
}

typedef struct {
    float *out;
    const float *in, *w, *b;
    int N, IC, OC, ntasks;
} tlin_ctx;

static void tlin_task(void *vctx, int task, int thread)
{
    (void)thread;
    tlin_ctx *c = vctx;
    int lo, hi;
    split_range(c->OC, c->ntasks, task, &lo, &hi);
    for (int o = lo; o < hi; o++) {
        const float *w = c->w + (size_t)o * c->IC;
        for (int t = 0; t < c->N; t++)
            c->out[(size_t)t * c->OC + o] = dot_lanes(c->in + (size_t)t * c->IC, w, c->IC) + (c->b ? c->b[o] : 0.0f);
    }
}

// in [N, IC], w [OC, IC], b [OC] -> out [N, OC] for a handful of token rows: one pass over the
// weights, no packing (a BLAS call would copy every weight matrix first). ref: torch.nn.Linear
static void tokens_linear(float *out, const float *in, const float *w, const float *b, int N, int IC, int OC,
                          ms_pool *pool)
{
    if (N > 32) {
        ms_linear(out, in, w, b, N, IC, OC, pool);
        return;
    }
    int nt = ms_pool_size(pool);
    tlin_ctx c = {out, in, w, b, N, IC, OC, 1};
    if (nt <= 1 || (double)N * IC * OC < 1e6) { /* smaller: not worth a wake-up */
        tlin_task(&c, 0, 0);
        return;
    }
    c.ntasks = nt;
    ms_pool_run(pool, nt, tlin_task, &c);
}

typedef struct {
    float *src, *src_pe;
    const float *emb, *dense, *pe;
    int ntasks;
} src_ctx;

static void src_task(void *vctx, int task, int thread)
{
    (void)thread;
    src_ctx *c = vctx;
    const size_t n = (size_t)D * HW, per = (n + (size_t)c->ntasks - 1) / (size_t)c->ntasks, lo = per * (size_t)task;
    const size_t hi = lo + per < n ? lo + per : n;
    for (size_t i = lo; i < hi; i++) {
        float v = c->emb[i] + c->dense[i];
        c->src[i] = v;
        c->src_pe[i] = v + c->pe[i];
    }
}

// embedding, dense, image_pe [256, HW] -> src = embedding + dense, src_pe = src + image_pe
static void make_src(float *src, float *src_pe, const float *emb, const float *dense, const float *pe, ms_pool *pool)
{
    src_ctx c = {src, src_pe, emb, dense, pe, ms_pool_size(pool)};
    if (c.ntasks <= 1) {
        src_task(&c, 0, 0);
        return;
    }
    ms_pool_run(pool, c.ntasks, src_task, &c);
}

typedef struct {
    float *x;
    int rows, cols, ntasks;
} softmax_ctx;

static void softmax_task(void *vctx, int task, int thread)
{
    (void)thread;
    softmax_ctx *c = vctx;
    int lo, hi;
    split_range(c->rows, c->ntasks, task, &lo, &hi);
    ms_softmax_rows(c->x + (size_t)lo * c->cols, hi - lo, c->cols);
}

// x [rows, cols] -> softmax over each row, in place, split over the pool
static void softmax_rows_pool(float *x, int rows, int cols, ms_pool *pool)
{
    softmax_ctx c = {x, rows, cols, task_count(pool, rows)};
    if (c.ntasks <= 1) {
        ms_softmax_rows(x, rows, cols);
        return;
    }
    ms_pool_run(pool, c.ntasks, softmax_task, &c);
}

// x [N, in] -> out [N, out] through a 3-layer MLP with ReLU between. ref: mask_decoder.py MLP
static void mlp3_forward(float *out, float *tmp, const float *x, const float *const *w, const float *const *b,
                         int N, int hidden, int outdim)
{
    float *h1 = tmp, *h2 = tmp + (size_t)N * hidden;
    tokens_linear(h1, x, w[0], b[0], N, D, hidden, NULL);
    ms_relu(h1, (size_t)N * hidden);
    tokens_linear(h2, h1, w[1], b[1], N, hidden, hidden, NULL);
    ms_relu(h2, (size_t)N * hidden);
    tokens_linear(out, h2, w[2], b[2], N, hidden, outdim, NULL);
}

typedef struct {
    float *hyper_in, *iou, *tmp;
    const float *queries;
    const ms_mask_decoder *md;
} heads_ctx;

// task m < 4: hyper_in[m] [32] = output_hypernetworks_mlps[m](mask token m); task 4: iou [4] = iou_prediction_head(iou token)
static void heads_task(void *vctx, int m, int thread)
{
    (void)thread;
    heads_ctx *c = vctx;
    float *tmp = c->tmp + (size_t)m * 2 * D;
    if (m < MS_MD_TOKENS)
        mlp3_forward(c->hyper_in + m * UP2, tmp, c->queries + (size_t)(1 + m) * D, c->md->hyper_w[m], c->md->hyper_b[m],
                     1, D, UP2);
    else
        mlp3_forward(c->iou, tmp, c->queries, c->md->iou_w, c->md->iou_b, 1, D, MS_MD_TOKENS);
}

/* ------------------------------------------------------------------ attention on tokens */

// q_in [Nq, 256], k_in [Nk, 256], v_in [Nk, 256] -> out [Nq, 256]; internal dim ci, 8 heads.
// scratch: (Nq + 2 Nk + Nq) * ci + Nq * Nk floats. ref: transformer.py Attention.forward
static void attention_tokens(float *out, float *scratch, const float *q_in, const float *k_in, const float *v_in,
                             const ms_md_attention *a, int Nq, int Nk, int ci, ms_pool *pool)
{
    float *q = scratch, *k = q + (size_t)Nq * ci, *v = k + (size_t)Nk * ci, *o = v + (size_t)Nk * ci;
    float *s = o + (size_t)Nq * ci;
    const int dh = ci / NH;
    const float div = sqrtf((float)dh); /* torch divides the scores by sqrt(c_per_head) */
    tokens_linear(q, q_in, a->q_w, a->q_b, Nq, D, ci, pool);
    tokens_linear(k, k_in, a->k_w, a->k_b, Nk, D, ci, pool);
    tokens_linear(v, v_in, a->v_w, a->v_b, Nk, D, ci, pool);
    for (int h = 0; h < NH; h++) {
        for (int i = 0; i < Nq; i++)
            for (int j = 0; j < Nk; j++) {
                float acc = 0.0f;
                for (int e = 0; e < dh; e++) acc += q[(size_t)i * ci + h * dh + e] * k[(size_t)j * ci + h * dh + e];
                s[(size_t)i * Nk + j] = acc / div;
            }
        ms_softmax_rows(s, Nq, Nk);
        for (int i = 0; i < Nq; i++)
            for (int e = 0; e < dh; e++) {
                float acc = 0.0f;
                for (int j = 0; j < Nk; j++) acc += s[(size_t)i * Nk + j] * v[(size_t)j * ci + h * dh + e];
                o[(size_t)i * ci + h * dh + e] = acc;
            }
    }
    tokens_linear(out, o, a->out_w, a->out_b, Nq, ci, D, pool);
}

/* ------------------------------------------------------------------ cross attentions */

/* scratch floats needed by the two cross attentions for T tokens */
static size_t cross_scratch_floats(int T)
{
    return (size_t)NH * T * D * 3 + (size_t)T * MS_MD_CROSS * 3 + (size_t)NH * T + D;
}

// q [T, 128] (q_proj output) -> qk [8T, 256]: row h*T+t = q_{t,h} Wk_h / sqrt(dh). The k bias adds q.bk to
// a whole row of scores, which the softmax cancels.
static void t2i_query_keys(float *qk, const float *q, const ms_md_attention *a, int T)
{
    const int ci = MS_MD_CROSS, dh = ci / NH;
    const float scale = 1.0f / sqrtf((float)dh);
    for (int h = 0; h < NH; h++)
        for (int t = 0; t < T; t++) {
            float *row = qk + ((size_t)h * T + t) * D;
            memset(row, 0, D * sizeof(float));
            for (int e = 0; e < dh; e++) {
                float qv = q[(size_t)t * ci + h * dh + e] * scale;
                const float *wk = a->k_w + (size_t)(h * dh + e) * D;
                for (int c = 0; c < D; c++) row[c] += qv * wk[c];
            }
        }
}

// z [8T, 256] (attention-weighted keys, row h*T+t) -> out [T, 256] = out_proj(concat_h z_h Wv_h^T + bv_h);
// o: [T, 128] scratch
static void t2i_values_out(float *out, float *o, const float *z, const ms_md_attention *a, int T, ms_pool *pool)
{
    const int ci = MS_MD_CROSS, dh = ci / NH;
    for (int t = 0; t < T; t++)
        for (int h = 0; h < NH; h++) {
            const float *zr = z + ((size_t)h * T + t) * D;
            for (int e = 0; e < dh; e++)
                o[(size_t)t * ci + h * dh + e] = dot_lanes(zr, a->v_w + (size_t)(h * dh + e) * D, D) + a->v_b[h * dh + e];
        }
    tokens_linear(out, o, a->out_w, a->out_b, T, ci, D, pool);
}

// q_in [T, 256] (tokens + pe), keys_pe [256, HW], keys [256, HW] -> out [T, 256]; probs [8T, HW] scratch.
// The first block's token->image attention without the image cache (prompts with a mask input).
// ref: transformer.py Attention.forward (layers.0.cross_attn_token_to_image)
static void cross_token_to_image(float *out, float *probs, float *scratch, const float *q_in, const float *keys_pe,
                                 const float *keys, const ms_md_attention *a, int T, ms_pool *pool)
{
    const int ci = MS_MD_CROSS, R = NH * T;
    float *q = scratch;                  /* [T, ci] */
    float *qk = q + (size_t)T * ci;      /* [8T, 256]: row h*T+t = q_{t,h} Wk_h / sqrt(dh) */
    float *z = qk + (size_t)R * D;       /* [8T, 256]: attn @ keys */
    float *o = z + (size_t)R * D;        /* [T, ci] */
    tokens_linear(q, q_in, a->q_w, a->q_b, T, D, ci, pool);
    t2i_query_keys(qk, q, a, T);
    md_gemm(probs, qk, keys_pe, R, HW, D, 0, 0, 0.0f, pool);
    softmax_rows_pool(probs, R, HW, pool);
    md_gemm(z, probs, keys, R, D, HW, 0, 1, 0.0f, pool);
    t2i_values_out(out, o, z, a, T, pool);
}

#define I2T_CHUNK 256

// s [8T, n] (row stride ld; + cb [8T] per row if given) -> softmax over the T rows of each head, per column
static void softmax_heads_columns(float *s, const float *cb, int T, size_t ld, int n)
{
    float mx[I2T_CHUNK], sum[I2T_CHUNK];
    for (int h = 0; h < NH; h++) {
        float *base = s + (size_t)h * T * ld;
        for (int i = 0; i < n; i++) mx[i] = -INFINITY, sum[i] = 0.0f;
        for (int t = 0; t < T; t++) {
            float *row = base + (size_t)t * ld, cbv = cb ? cb[h * T + t] : 0.0f;
            for (int i = 0; i < n; i++) {
                row[i] += cbv;
                mx[i] = row[i] > mx[i] ? row[i] : mx[i];
            }
        }
        for (int t = 0; t < T; t++) {
            float *row = base + (size_t)t * ld;
            for (int i = 0; i < n; i++) {
                row[i] = md_exp(row[i] - mx[i]);
                sum[i] += row[i];
            }
        }
        for (int i = 0; i < n; i++) sum[i] = 1.0f / sum[i];
        for (int t = 0; t < T; t++) {
            float *row = base + (size_t)t * ld;
            for (int i = 0; i < n; i++) row[i] *= sum[i];
        }
    }
}

/* ------------------------------------------------------------------ channel layernorm */

typedef struct {
    const float *pe, *w, *b, *bias_in, *resid; /* resid [C, hw] or NULL */
    int C;
    size_t hw;
    float eps;
    /* folded upscaling (optional): h [256, hw] = rstd * (h + h_base + h_g - mean * h_s) + h_c */
    float *h;
    const float *h_base, *h_g, *h_s, *h_c;
} chan_ln_ctx;

// pixels p0 .. p0+n: x [C, n] (row stride ldx; (+ resid [C, n], row stride ldr, + bias_in) -> LayerNorm over
// C -> x; x + pe -> xpe [C, n] (row stride ldpe) when xpe is given. x and resid point at the chunk.
static void chan_ln_chunk(const chan_ln_ctx *c, size_t p0, size_t n, float *x, size_t ldx, const float *resid,
                          size_t ldr, float *xpe, size_t ldpe)
{
    float mean[I2T_CHUNK], var[I2T_CHUNK];
    const float inv_c = 1.0f / (float)c->C;
    for (size_t i = 0; i < n; i++) mean[i] = var[i] = 0.0f;
    for (int k = 0; k < c->C; k++) {
        float *row = x + (size_t)k * ldx;
        if (resid) {
            const float *rs = resid + (size_t)k * ldr;
            for (size_t i = 0; i < n; i++) row[i] += rs[i];
        }
        if (c->bias_in) {
            float bk = c->bias_in[k];
            for (size_t i = 0; i < n; i++) row[i] += bk;
        }
        for (size_t i = 0; i < n; i++) mean[i] += row[i];
    }
    for (size_t i = 0; i < n; i++) mean[i] *= inv_c;
    for (int k = 0; k < c->C; k++) {
        const float *row = x + (size_t)k * ldx;
        for (size_t i = 0; i < n; i++) {
            float d = row[i] - mean[i];
            var[i] += d * d;
        }
    }
    for (size_t i = 0; i < n; i++) var[i] = 1.0f / sqrtf(var[i] * inv_c + c->eps);
    for (int k = 0; k < c->C; k++) {
        float *row = x + (size_t)k * ldx;
        float wk = c->w[k], bk = c->b[k];
        for (size_t i = 0; i < n; i++) row[i] = (row[i] - mean[i]) * var[i] * wk + bk;
        if (xpe) {
            const float *pe = c->pe + (size_t)k * c->hw + p0;
            float *xo = xpe + (size_t)k * ldpe;
            for (size_t i = 0; i < n; i++) xo[i] = row[i] + pe[i];
        }
    }
    if (c->h) {
        /* the upscaling's first product of this LayerNorm's output, from that of its input */
        for (int o = 0; o < D; o++) {
            float *hr = c->h + (size_t)o * c->hw + p0;
            const float g = c->h_g[o], so = c->h_s[o], co = c->h_c[o];
            if (c->h_base) {
                const float *br = c->h_base + (size_t)o * c->hw + p0;
                for (size_t i = 0; i < n; i++) hr[i] = var[i] * (hr[i] + br[i] + g - mean[i] * so) + co;
            } else {
                for (size_t i = 0; i < n; i++) hr[i] = var[i] * (hr[i] + g - mean[i] * so) + co;
            }
        }
    }
}

/* ------------------------------------------------------------------ streamed token->image attention */

/* The token->image attention that follows an image->token update (block l+1's, or the final one)
 * does not need to wait for the whole image: its queries depend on the tokens only, which are
 * known before the update starts. So it is computed chunk by chunk of pixels while the update
 * runs: every chunk keeps its row maxima m, sums l = sum exp(scores - m) and
 * zt = keys @ exp(scores - m)^T, and the chunks are merged at the end with the usual rescaling
 * (exact algebra; only the rounding differs from one softmax over all pixels). One slot per chunk,
 * not per thread, so the result does not depend on the thread count or on which thread ran which
 * chunk. Neither the scores [8T, HW] nor keys + pe [256, HW] are ever written out. */
#define N_CHUNKS (HW / I2T_CHUNK)
/* per-thread scratch of an image pass: i2t probabilities [8T, CH], keys + pe [256, CH], streamed scores [8T, CH],
 * new keys [256, CH] */
#define PASS_STRIDE(R) ((size_t)(2 * (R) + 2 * D) * I2T_CHUNK)
typedef struct {
    const float *qk; /* [R, 256] */
    float *zt;       /* per chunk [256, R] */
    float *m, *l;    /* per chunk [R] */
    float *w;        /* [N_CHUNKS, R] merge weights */
    int R;
} t2i_stream;

static size_t t2i_stream_floats(int R)
{
    return (size_t)N_CHUNKS * ((size_t)D * R + 3 * (size_t)R);
}

static void t2i_stream_init(t2i_stream *st, float *buf, const float *qk, int R)
{
    st->qk = qk;
    st->R = R;
    st->zt = buf;
    st->m = buf + (size_t)N_CHUNKS * D * R;
    st->l = st->m + (size_t)N_CHUNKS * R;
    st->w = st->l + (size_t)N_CHUNKS * R;
}

// x [n] -> max, in 16 lanes
static inline float max_lanes(const float *x, int n)
{
    enum { L = 16 };
    float lane[L];
    for (int l = 0; l < L; l++) lane[l] = -INFINITY;
    int n0 = n - n % L;
    for (int k = 0; k < n0; k += L)
        for (int l = 0; l < L; l++) lane[l] = x[k + l] > lane[l] ? x[k + l] : lane[l];
    for (int k = n0; k < n; k++) lane[0] = x[k] > lane[0] ? x[k] : lane[0];
    float m = lane[0];
    for (int l = 1; l < L; l++) m = lane[l] > m ? lane[l] : m;
    return m;
}

// row [n] -> exp(row - mx) in place; returns the sum, in 16 lanes
static inline float exp_sum_lanes(float *row, int n, float mx)
{
    enum { L = 16 };
    float lane[L];
    for (int l = 0; l < L; l++) lane[l] = 0.0f;
    int n0 = n - n % L;
    for (int k = 0; k < n0; k += L)
        for (int l = 0; l < L; l++) {
            row[k + l] = md_exp(row[k + l] - mx);
            lane[l] += row[k + l];
        }
    for (int w = L / 2; w > 0; w /= 2)
        for (int l = 0; l < w; l++) lane[l] += lane[l + w];
    float acc = lane[0];
    for (int k = n0; k < n; k++) {
        row[k] = md_exp(row[k] - mx);
        acc += row[k];
    }
    return acc;
}

// keys chunk [256, I2T_CHUNK] (row stride ldk), kpe = that chunk + image_pe [256, I2T_CHUNK] -> slot `chunk`.
// s: [R, I2T_CHUNK] scratch
static void t2i_stream_chunk(const t2i_stream *st, int chunk, const float *keys, int ldk, const float *kpe, float *s)
{
    const int R = st->R, n = I2T_CHUNK;
    float *zt = st->zt + (size_t)chunk * D * R, *m = st->m + (size_t)chunk * R, *l = st->l + (size_t)chunk * R;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, R, n, D, 1.0f, st->qk, D, kpe, n, 0.0f, s, n);
    for (int r = 0; r < R; r++) {
        float *row = s + (size_t)r * n;
        m[r] = max_lanes(row, n);
        l[r] = exp_sum_lanes(row, n, m[r]);
    }
    /* zt [256, R] = keys [256, n] @ s^T (this operand order runs faster than s @ keys^T) */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, D, R, n, 1.0f, keys, ldk, s, n, 0.0f, zt, R);
}

// the chunk slots -> z [R, 256] = softmax(scores) @ keys^T
static void t2i_stream_finish(const t2i_stream *st, float *z)
{
    const int R = st->R;
    float *w = st->w;
    for (int r = 0; r < R; r++) {
        float M = -INFINITY, L = 0.0f;
        for (int t = 0; t < N_CHUNKS; t++) M = st->m[(size_t)t * R + r] > M ? st->m[(size_t)t * R + r] : M;
        for (int t = 0; t < N_CHUNKS; t++) {
            w[(size_t)t * R + r] = md_exp(st->m[(size_t)t * R + r] - M);
            L += w[(size_t)t * R + r] * st->l[(size_t)t * R + r];
        }
        for (int t = 0; t < N_CHUNKS; t++) w[(size_t)t * R + r] /= L;
    }
    /* sum the slots in place into slot 0 ([256, R], contiguous along r), then transpose */
    float *acc = st->zt;
    for (int c = 0; c < D; c++)
        for (int r = 0; r < R; r++) acc[(size_t)c * R + r] *= w[r];
    for (int t = 1; t < N_CHUNKS; t++) {
        const float *zt = st->zt + (size_t)t * D * R, *wt = w + (size_t)t * R;
        for (int c = 0; c < D; c++)
            for (int r = 0; r < R; r++) acc[(size_t)c * R + r] += zt[(size_t)c * R + r] * wt[r];
    }
    for (int c = 0; c < D; c++)
        for (int r = 0; r < R; r++) z[(size_t)r * D + c] = acc[(size_t)c * R + r];
}

/* The first block's token->image attention with the image cache: scores_h = (q_h / sqrt(dh)) @ k0_h and
 * o_h = softmax(scores_h) @ v0_h^T + bv_h, in one pass over pixel chunks with per-chunk softmax slots
 * merged as above (k0, v0: the per-image projections, 16 rows per head). */
typedef struct {
    const float *coef, *k0, *v0; /* coef [8T, dh] */
    float *acc, *m, *l;          /* per chunk: [8T, dh], [8T], [8T] */
    float *scratch;              /* [8T, I2T_CHUNK] per pool thread, row stride PASS_STRIDE */
    int T;
} t2i0_ctx;

static void t2i0_task(void *vctx, int chunk, int thread)
{
    t2i0_ctx *c = vctx;
    const int T = c->T, R = NH * T, dh = MS_MD_CROSS / NH, n = I2T_CHUNK;
    const size_t p0 = (size_t)chunk * n;
    float *s = c->scratch + (size_t)thread * PASS_STRIDE(R);
    float *acc = c->acc + (size_t)chunk * R * dh, *m = c->m + (size_t)chunk * R, *l = c->l + (size_t)chunk * R;
    for (int r = 0; r < R; r++) {
        const int h = r / T;
        float *dst = s + (size_t)r * n;
        const float *cf = c->coef + (size_t)r * dh;
        for (int i = 0; i < n; i++) dst[i] = 0.0f;
        for (int e = 0; e < dh; e++) {
            const float *src = c->k0 + (size_t)(h * dh + e) * HW + p0;
            float w = cf[e];
            for (int i = 0; i < n; i++) dst[i] += w * src[i];
        }
        m[r] = max_lanes(dst, n);
        l[r] = exp_sum_lanes(dst, n, m[r]);
        for (int e = 0; e < dh; e++)
            acc[(size_t)r * dh + e] = dot_lanes(dst, c->v0 + (size_t)(h * dh + e) * HW + p0, n);
    }
}

// q_in [T, 256] (tokens + pe), k0, v0 [128, HW] (cache) -> out [T, 256]. slots: N_CHUNKS * (8T * dh + 2 * 8T)
// floats; pass_scratch: PASS_STRIDE(8T) per pool thread; scratch: 2 T * 128 + 8T * dh floats.
// ref: transformer.py Attention.forward (layers.0.cross_attn_token_to_image)
static void cross_token_to_image_cached(float *out, float *slots, float *pass_scratch, float *scratch,
                                        const float *q_in, const float *k0, const float *v0, const ms_md_attention *a,
                                        int T, ms_pool *pool)
{
    const int ci = MS_MD_CROSS, dh = ci / NH, R = NH * T;
    float *q = scratch, *o = q + (size_t)T * ci, *coef = o + (size_t)T * ci;
    const float scale = 1.0f / sqrtf((float)dh);
    tokens_linear(q, q_in, a->q_w, a->q_b, T, D, ci, pool);
    for (int h = 0; h < NH; h++)
        for (int t = 0; t < T; t++)
            for (int e = 0; e < dh; e++) coef[((size_t)h * T + t) * dh + e] = q[(size_t)t * ci + h * dh + e] * scale;
    t2i0_ctx c = {coef, k0, v0, slots, slots + (size_t)N_CHUNKS * R * dh, slots + (size_t)N_CHUNKS * R * (dh + 1),
                  pass_scratch, T};
    ms_pool_run(pool, N_CHUNKS, t2i0_task, &c);
    /* merge the chunks: o_h[t] = sum_c e^(m_c - M) acc_c / sum_c e^(m_c - M) l_c + bv */
    for (int r = 0; r < R; r++) {
        const int h = r / T, t = r % T;
        float M = -INFINITY, L = 0.0f, ov[MS_MD_CROSS / NH];
        for (int k = 0; k < N_CHUNKS; k++) M = c.m[(size_t)k * R + r] > M ? c.m[(size_t)k * R + r] : M;
        for (int e = 0; e < dh; e++) ov[e] = 0.0f;
        for (int k = 0; k < N_CHUNKS; k++) {
            float w = md_exp(c.m[(size_t)k * R + r] - M);
            L += w * c.l[(size_t)k * R + r];
            for (int e = 0; e < dh; e++) ov[e] += w * c.acc[((size_t)k * R + r) * dh + e];
        }
        for (int e = 0; e < dh; e++) o[(size_t)t * ci + h * dh + e] = ov[e] / L + a->v_b[h * dh + e];
    }
    tokens_linear(out, o, a->out_w, a->out_b, T, ci, D, pool);
}

/* ------------------------------------------------------------------ image->token attention + norm4 */

/* The folded upscaling of one block (see "upscaling folded into the blocks" in decode): um is the
 * [256, 256] map carried through this block's norm4, base the per-image part (block 0) or NULL, s
 * the column sums of um, c the constant added after the LayerNorm. */
typedef struct {
    const float *um, *base, *s, *c;
} up_fold;


typedef struct {
    float *keys;             /* [256, HW] (the folded upscaling rows [256, HW] follow when mrows = 512) */
    const float *keys_pe_in; /* [256, HW] the block's keys + pe, or NULL: formed per chunk */
    const float *pe;         /* image_pe [256, HW] */
    float *scratch;          /* PASS_STRIDE(8T) floats per pool thread */
    const float *mq, *cb, *q0, *vo;
    const chan_ln_ctx *ln;
    const t2i_stream *next;  /* the following token->image attention */
    int keys_local;          /* the new keys go to a per-thread chunk buffer only (keys keeps the old ones) */
    int T, ntasks, mrows;    /* mrows: 256, or 512 with the folded upscaling rows (vo is [8T, mrows]) */
} i2t_ctx;

static void i2t_block_task(void *vctx, int task, int thread)
{
    i2t_ctx *c = vctx;
    const int T = c->T, R = NH * T, dh = MS_MD_CROSS / NH;
    float *s = c->scratch + (size_t)thread * PASS_STRIDE(R); /* [R, CH] */
    float *kpe = s + (size_t)R * I2T_CHUNK;                  /* [256, CH] */
    float *s2 = kpe + (size_t)D * I2T_CHUNK;                 /* [R, CH] */
    float *kloc = s2 + (size_t)R * I2T_CHUNK;                /* [256, CH] */
    int lo, hi;
    split_range(HW / I2T_CHUNK, c->ntasks, task, &lo, &hi);
    for (int blk = lo; blk < hi; blk++) {
        const size_t p0 = (size_t)blk * I2T_CHUNK;
        /* scores^T [8T, chunk] */
        if (c->q0) {
            for (int r = 0; r < R; r++) {
                const int h = r / T;
                float *dst = s + (size_t)r * I2T_CHUNK;
                const float *cf = c->mq + (size_t)r * dh;
                for (int i = 0; i < I2T_CHUNK; i++) dst[i] = 0.0f;
                for (int e = 0; e < dh; e++) {
                    const float *src = c->q0 + (size_t)(h * dh + e) * HW + p0;
                    float w = cf[e];
                    for (int i = 0; i < I2T_CHUNK; i++) dst[i] += w * src[i];
                }
            }
        } else {
            const float *kp = kpe;
            size_t ldk = I2T_CHUNK;
            if (c->keys_pe_in) {
                kp = c->keys_pe_in + p0;
                ldk = HW;
            } else {
                for (int k = 0; k < D; k++) {
                    const float *kr = c->keys + (size_t)k * HW + p0, *pr = c->pe + (size_t)k * HW + p0;
                    float *dst = kpe + (size_t)k * I2T_CHUNK;
                    for (int i = 0; i < I2T_CHUNK; i++) dst[i] = kr[i] + pr[i];
                }
            }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, R, I2T_CHUNK, D, 1.0f, c->mq, D, kp, (int)ldk, 0.0f,
                        s, I2T_CHUNK);
        }
        softmax_heads_columns(s, c->q0 ? NULL : c->cb, T, I2T_CHUNK, I2T_CHUNK);
        const float *resid = c->ln->resid ? c->ln->resid + p0 : NULL;
        if (c->keys_local) {
            /* the new keys are needed only by the streamed attention: kept in the thread's buffer, with the
               old keys as the residual; the folded upscaling rows still accumulate in place */
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, D, I2T_CHUNK, R, 1.0f, c->vo, c->mrows, s, I2T_CHUNK,
                        0.0f, kloc, I2T_CHUNK);
            if (c->mrows > D)
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, c->mrows - D, I2T_CHUNK, R, 1.0f, c->vo + D,
                            c->mrows, s, I2T_CHUNK, 1.0f, c->keys + (size_t)D * HW + p0, HW);
            chan_ln_chunk(c->ln, p0, I2T_CHUNK, kloc, I2T_CHUNK, c->keys + p0, HW, kpe, I2T_CHUNK);
            t2i_stream_chunk(c->next, blk, kloc, I2T_CHUNK, kpe, s2);
            continue;
        }
        /* a separate residual (and per-image upscaling part) is copied in first and accumulated onto: the
           same sums as adding it afterwards, without clearing the output first */
        chan_ln_ctx ln = *c->ln;
        if (resid) {
            for (int k = 0; k < D; k++)
                memcpy(c->keys + (size_t)k * HW + p0, resid + (size_t)k * HW, I2T_CHUNK * sizeof(float));
            resid = NULL;
        }
        if (ln.h && ln.h_base) {
            for (int o = 0; o < D; o++)
                memcpy(ln.h + (size_t)o * HW + p0, ln.h_base + (size_t)o * HW + p0, I2T_CHUNK * sizeof(float));
            ln.h_base = NULL;
        }
        /* keys[:, chunk] += vo^T @ probs (and the folded upscaling rows, stored right after keys) */
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, c->mrows, I2T_CHUNK, R, 1.0f, c->vo, c->mrows, s,
                    I2T_CHUNK, 1.0f, c->keys + p0, HW);
        /* norm4 (+ out_proj bias), keys + pe of the chunk for the next attention */
        chan_ln_chunk(&ln, p0, I2T_CHUNK, c->keys + p0, HW, NULL, 0, kpe, I2T_CHUNK);
        t2i_stream_chunk(c->next, blk, c->keys + p0, HW, kpe, s2);
    }
}

/* token-side scratch of image_pass for T tokens */
static size_t image_pass_tok_floats(int T)
{
    return (size_t)T * MS_MD_CROSS * 2 + (size_t)NH * T * D * 3 + (size_t)NH * T + D;
}

// keys [256, HW] (residual, updated in place), k_in [T, 256] (tokens + pe), v_in [T, 256] ->
// keys = norm4(keys + attn_out); next accumulates the following token->image attention over the new keys.
// keys_pe_in: the block's keys + pe, or NULL to form it per chunk from keys + image_pe. With q0 (per-image
// q_proj(keys_pe) incl. bias) keys_pe is not read and the residual is resid instead of keys. With uf the
// folded upscaling rows after keys are updated too. With keys_local (and no resid) keys keeps the old values
// and the new ones live only in per-thread chunk buffers, for next. Works on chunks of I2T_CHUNK pixels,
// every stage of a chunk in cache. pass_scratch: PASS_STRIDE(8T) per pool thread; tok_scratch:
// image_pass_tok_floats(T).
// ref: transformer.py TwoWayAttentionBlock.forward (cross_attn_image_to_token, norm4)
static void image_pass(float *keys, const float *keys_pe_in, float *pass_scratch, float *tok_scratch,
                       const float *k_in, const float *v_in, const float *q0, const float *resid,
                       const float *image_pe, const ms_md_block *blk, const up_fold *uf, const t2i_stream *next,
                       int keys_local, int T, ms_pool *pool)
{
    const ms_md_attention *a = &blk->cross_image_to_token;
    const int ci = MS_MD_CROSS, dh = ci / NH, R = NH * T, ldv = uf ? 2 * D : D;
    float *k = tok_scratch;              /* [T, ci] */
    float *v = k + (size_t)T * ci;       /* [T, ci] */
    float *mq = v + (size_t)T * ci;      /* [8T, 256] (or [8T, dh] with q0): row h*T+t = k_{t,h} Wq_h / sqrt(dh) */
    float *vo = mq + (size_t)R * D;      /* [8T, ldv]: row h*T+t = Wo_h v_{t,h} (then that @ uf->um) */
    float *cb = vo + (size_t)R * ldv;    /* [8T]: bq_h . k_{t,h} / sqrt(dh) */
    float *g = cb + R;                   /* [256]: out_proj bias @ uf->um */
    const float scale = 1.0f / sqrtf((float)dh);
    tokens_linear(k, k_in, a->k_w, a->k_b, T, D, ci, pool);
    tokens_linear(v, v_in, a->v_w, a->v_b, T, D, ci, pool);
    for (int h = 0; h < NH; h++)
        for (int t = 0; t < T; t++) {
            size_t r = (size_t)h * T + t;
            if (q0) {
                for (int e = 0; e < dh; e++) mq[r * dh + e] = k[(size_t)t * ci + h * dh + e] * scale;
            } else {
                float *row = mq + r * D;
                memset(row, 0, D * sizeof(float));
                float bacc = 0.0f;
                for (int e = 0; e < dh; e++) {
                    float kv = k[(size_t)t * ci + h * dh + e] * scale;
                    const float *wq = a->q_w + (size_t)(h * dh + e) * D;
                    for (int c = 0; c < D; c++) row[c] += kv * wq[c];
                    bacc += kv * a->q_b[h * dh + e];
                }
                cb[r] = bacc;
            }
        }
    ms_kernels_init();
    /* vo rows of head h: v_h [T, dh] @ (out_w[:, head h] [256, dh])^T */
    for (int h = 0; h < NH; h++)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, D, dh, 1.0f, v + h * dh, ci, a->out_w + h * dh, ci,
                    0.0f, vo + (size_t)h * T * ldv, ldv);
    chan_ln_ctx ln = {image_pe, blk->norm4_w, blk->norm4_b, a->out_b, resid, D, HW, LN_EPS,
                      NULL, NULL, NULL, NULL, NULL};
    if (uf) {
        /* the upscaling rows: vo @ um, and the out_proj bias carried through um */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, R, D, D, 1.0f, vo, ldv, uf->um, D, 0.0f, vo + D, ldv);
        for (int o = 0; o < D; o++) g[o] = 0.0f;
        for (int ch = 0; ch < D; ch++) {
            const float bo = a->out_b[ch], *ur = uf->um + (size_t)ch * D;
            for (int o = 0; o < D; o++) g[o] += bo * ur[o];
        }
        ln.h = keys + (size_t)D * HW;
        ln.h_base = uf->base;
        ln.h_g = g;
        ln.h_s = uf->s;
        ln.h_c = uf->c;
    }
    i2t_ctx c = {keys, keys_pe_in, image_pe, pass_scratch, mq, cb, q0, vo, &ln, next, keys_local && !resid, T,
                 task_count(pool, HW / I2T_CHUNK), ldv};
    if (c.ntasks <= 1)
        i2t_block_task(&c, 0, 0);
    else
        ms_pool_run(pool, c.ntasks, i2t_block_task, &c);
}

/* ------------------------------------------------------------------ output: upscaling + hypernetworks */

/* The upscaling runs in blocks of UP_ROWS rows of the 64x64 grid; every stage of a block stays in
 * the calling thread's cache-sized scratch (no [64, 128x128] or [32, 256x256] tensor is ever
 * materialised). A transposed conv with kernel 2 and stride 2 is one product per block:
 * out[(co, dy, dx), p] = sum_ci W[ci, (co, dy, dx)] in[ci, p]. */
#define UP_ROWS 2
#define UP_PIX (UP_ROWS * MS_MD_GRID)            /* grid pixels per block */
#define UP_UNITS (MS_MD_GRID / UP_ROWS)          /* blocks */
#define UP_SCRATCH ((size_t)UP1 * 4 * UP_PIX * 2 + (size_t)UP2 * 16 * UP_PIX + (size_t)(MS_MD_TOKENS + 1) * UP_PIX + 16)

typedef struct {
    float *low_res, *scratch;
    const float *keys, *hyper;
    const float *y; /* [256 (co, d1), HW] the first transposed conv with its bias, already folded; or NULL */
    const ms_mask_decoder *md;
    int ntasks;
    unsigned token_mask; /* bit m: write the logits of mask token m */
} upscale_ctx;

// keys[:, block] [256, UP_PIX] -> low_res pixels of the block, all 4 mask tokens
static void upscale_block(const upscale_ctx *c, int unit, float *scratch)
{
    const ms_mask_decoder *md = c->md;
    const int y0 = unit * UP_ROWS;
    const size_t p0 = (size_t)y0 * MS_MD_GRID;
    float *y1 = scratch;                          /* [(co, d1) 256, UP_PIX] */
    float *y1n = y1 + (size_t)UP1 * 4 * UP_PIX;   /* [co 64, (d1, p) 4 UP_PIX] */
    float *y2 = y1n + (size_t)UP1 * 4 * UP_PIX;   /* [(co2, d2) 128, (d1, p) 4 UP_PIX] */
    float *acc = y2 + (size_t)UP2 * 16 * UP_PIX;  /* [4, UP_PIX] */
    float *gk = acc + (size_t)MS_MD_TOKENS * UP_PIX; /* [UP_PIX] */
    size_t ld1 = UP_PIX;
    if (c->y) {
        /* folded into the blocks: bias included */
        y1 = (float *)c->y + p0;
        ld1 = HW;
    } else {
        /* ConvTranspose2d(256, 64, k2, s2) */
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, UP1 * 4, UP_PIX, D, 1.0f, md->up0_w, UP1 * 4,
                    c->keys + p0, HW, 0.0f, y1, UP_PIX);
    }
    /* + bias, LayerNorm2d(64) over co at every (d1, p), GELU -> y1n */
    {
        const float inv_c = 1.0f / (float)UP1;
        float mean[UP_PIX], rstd[UP_PIX];
        for (int d1 = 0; d1 < 4; d1++) {
            for (int i = 0; i < UP_PIX; i++) mean[i] = rstd[i] = 0.0f;
            for (int co = 0; co < UP1; co++) {
                float *row = y1 + (size_t)(co * 4 + d1) * ld1, bco = md->up0_b[co];
                if (c->y) {
                    for (int i = 0; i < UP_PIX; i++) mean[i] += row[i];
                    continue;
                }
                for (int i = 0; i < UP_PIX; i++) {
                    row[i] += bco;
                    mean[i] += row[i];
                }
            }
            for (int i = 0; i < UP_PIX; i++) mean[i] *= inv_c;
            for (int co = 0; co < UP1; co++) {
                const float *row = y1 + (size_t)(co * 4 + d1) * ld1;
                for (int i = 0; i < UP_PIX; i++) {
                    float dv = row[i] - mean[i];
                    rstd[i] += dv * dv;
                }
            }
            for (int i = 0; i < UP_PIX; i++) rstd[i] = 1.0f / sqrtf(rstd[i] * inv_c + LN2D_EPS);
            for (int co = 0; co < UP1; co++) {
                const float *row = y1 + (size_t)(co * 4 + d1) * ld1;
                float *dst = y1n + (size_t)co * 4 * UP_PIX + (size_t)d1 * UP_PIX;
                float w = md->up1_w[co], bb = md->up1_b[co];
                for (int i = 0; i < UP_PIX; i++) dst[i] = md_gelu_one((row[i] - mean[i]) * rstd[i] * w + bb);
            }
        }
    }
    /* ConvTranspose2d(64, 32, k2, s2) */
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, UP2 * 4, 4 * UP_PIX, UP1, 1.0f, md->up3_w, UP2 * 4, y1n,
                4 * UP_PIX, 0.0f, y2, 4 * UP_PIX);
    /* + bias, GELU, masks = hyper [4, 32] @ upscaled, scattered to (4y + 2dy1 + dy2, 4x + 2dx1 + dx2) */
    int sel[MS_MD_TOKENS], nsel = 0;
    for (int m = 0; m < MS_MD_TOKENS; m++)
        if (c->token_mask & (1u << m)) sel[nsel++] = m;
    for (int d1 = 0; d1 < 4; d1++)
        for (int d2 = 0; d2 < 4; d2++) {
            for (int i = 0; i < MS_MD_TOKENS * UP_PIX; i++) acc[i] = 0.0f;
            for (int k = 0; k < UP2; k++) {
                const float *src = y2 + (size_t)(k * 4 + d2) * 4 * UP_PIX + (size_t)d1 * UP_PIX;
                float bk = md->up3_b[k];
                if (nsel == MS_MD_TOKENS) {
                    float h0 = c->hyper[k], h1 = c->hyper[UP2 + k], h2 = c->hyper[2 * UP2 + k],
                          h3 = c->hyper[3 * UP2 + k];
                    for (int i = 0; i < UP_PIX; i++) {
                        float g = md_gelu_one(src[i] + bk);
                        acc[i] += h0 * g;
                        acc[UP_PIX + i] += h1 * g;
                        acc[2 * UP_PIX + i] += h2 * g;
                        acc[3 * UP_PIX + i] += h3 * g;
                    }
                } else { /* only the wanted tokens (same arithmetic per value) */
                    for (int i = 0; i < UP_PIX; i++) gk[i] = md_gelu_one(src[i] + bk);
                    for (int j = 0; j < nsel; j++) {
                        float hm = c->hyper[sel[j] * UP2 + k], *am = acc + (size_t)sel[j] * UP_PIX;
                        for (int i = 0; i < UP_PIX; i++) am[i] += hm * gk[i];
                    }
                }
            }
            int oy = 2 * (d1 >> 1) + (d2 >> 1), ox = 2 * (d1 & 1) + (d2 & 1);
            for (int j = 0; j < nsel; j++)
                for (int r = 0; r < UP_ROWS; r++) {
                    const int m = sel[j];
                    float *dst = c->low_res + (size_t)m * MS_MD_LOWRES * MS_MD_LOWRES +
                                 (size_t)(4 * (y0 + r) + oy) * MS_MD_LOWRES + ox;
                    const float *sv = acc + (size_t)m * UP_PIX + r * MS_MD_GRID;
                    for (int x = 0; x < MS_MD_GRID; x++) dst[4 * x] = sv[x];
                }
        }
}

static void upscale_task(void *vctx, int task, int thread)
{
    upscale_ctx *c = vctx;
    int lo, hi;
    split_range(UP_UNITS, c->ntasks, task, &lo, &hi);
    for (int u = lo; u < hi; u++) upscale_block(c, u, c->scratch + (size_t)thread * UP_SCRATCH);
}

// keys [256, HW] -> output_upscaling -> [32, 256, 256]; low_res [4, 256, 256] = hyper [4, 32] @ that.
// scratch: UP_SCRATCH floats per pool thread. ref: mask_decoder.py predict_masks (output_upscaling,
// hyper_in @ upscaled_embedding)
static void upscale_and_masks(float *low_res, float *scratch, const float *keys, const float *y, const float *hyper,
                              const ms_mask_decoder *md, unsigned token_mask, ms_pool *pool)
{
    ms_kernels_init();
    upscale_ctx c = {low_res, scratch, keys, hyper, y, md, task_count(pool, UP_UNITS), token_mask};
    if (c.ntasks <= 1)
        upscale_task(&c, 0, 0);
    else
        ms_pool_run(pool, c.ntasks, upscale_task, &c);
}

/* ------------------------------------------------------------------ forward */

// queries [T, 256] += attn [T, 256], then norm2, MLP (ReLU), residual, norm3 of block b. hid: [T, 2048]
// scratch; attn is overwritten. ref: transformer.py TwoWayAttentionBlock.forward
static void block_tail(float *queries, float *attn, float *hid, const ms_md_block *b, int T, ms_pool *pool)
{
    const size_t tok = (size_t)T * D;
    add_vec(queries, queries, attn, tok);
    ms_layernorm(queries, queries, b->norm2_w, b->norm2_b, T, D, LN_EPS, NULL);
    tokens_linear(hid, queries, b->lin1_w, b->lin1_b, T, D, MS_MD_MLP, pool);
    ms_relu(hid, (size_t)T * MS_MD_MLP);
    tokens_linear(attn, hid, b->lin2_w, b->lin2_b, T, MS_MD_MLP, D, pool);
    add_vec(queries, queries, attn, tok);
    ms_layernorm(queries, queries, b->norm3_w, b->norm3_b, T, D, LN_EPS, NULL);
}

// embedding, image_pe, dense [256, 64, 64], sparse [n, 256] -> low_res [4, 256, 256], iou [4]
// ref: mask_decoder.py MaskDecoder.predict_masks, transformer.py TwoWayTransformer.forward
// With a cache, embedding and dense are not read (the cache holds src, src_pe and the first block's
// image-side projections).
static medseg_status decode(const ms_mask_decoder *md, ms_pool *pool, const ms_md_image_cache *cache,
                            const float *embedding, const float *image_pe, const float *sparse, int n_tokens,
                            const float *dense, unsigned token_mask, float *low_res, float *iou, medseg_error *err)
{
    if (!md || !md->iou_token) return ms_error(err, MEDSEG_ERR_ARG, "mask_decoder: not bound");
    if (n_tokens < 0 || n_tokens > MS_MD_MAX_SPARSE)
        return ms_error(err, MEDSEG_ERR_ARG, "mask_decoder: %d sparse tokens (at most %d)", n_tokens,
                        MS_MD_MAX_SPARSE);
    if ((!cache && (!embedding || !dense)) || !image_pe || !low_res || !iou || (n_tokens > 0 && !sparse))
        return ms_error(err, MEDSEG_ERR_ARG, "mask_decoder: missing input or output");
    if (cache && !cache->src) return ms_error(err, MEDSEG_ERR_ARG, "mask_decoder: image cache not prepared");
    token_mask &= (1u << MS_MD_TOKENS) - 1;

    const int T = 1 + MS_MD_TOKENS + n_tokens, R = NH * T, TO = 1 + MS_MD_TOKENS;
    const int nthreads = ms_pool_size(pool);
    /* with the upscaling folded into the blocks, its first product [256, HW] follows keys */
    const int fused = cache && cache->up_src;
    /* scratch: keys [256, HW] (+ folded upscaling [256, HW]), keys + pe [256, HW] for the first block
       without a cache, the first block's attention probabilities [8T, HW], per pool thread an upscaling
       block and an image-pass chunk, the streamed attention's accumulators, token buffers */
    const size_t tok = (size_t)T * D;
    const size_t n_keys = (size_t)D * HW * (fused ? 2 : 1), n_keys_pe = cache ? 0 : (size_t)D * HW;
    const size_t n_tokbuf = tok * 6 + (size_t)T * MS_MD_MLP + cross_scratch_floats(T) + (size_t)(T + 2 * T + T) * D +
                            (size_t)T * T + image_pass_tok_floats(T) + (size_t)R * D * 2 + (size_t)T * MS_MD_CROSS * 2 +
                            (size_t)(MS_MD_TOKENS + 1) * 2 * D + (size_t)MS_MD_TOKENS * UP2 + 64;
    const size_t n_probs = cache ? 0 : (size_t)R * HW;
    size_t total = n_keys + n_keys_pe + n_probs + (size_t)nthreads * UP_SCRATCH +
                   (size_t)nthreads * PASS_STRIDE(R) + t2i_stream_floats(R) + n_tokbuf;
    float *arena = ms_alloc_aligned(total * sizeof(float), err, "mask decoder scratch");
    if (!arena) return err ? err->status : MEDSEG_ERR_NOMEM;
    float *keys = arena, *up_y = fused ? keys + (size_t)D * HW : NULL;
    float *keys_pe = cache ? NULL : keys + n_keys;
    float *probs = keys + n_keys + n_keys_pe;
    float *up_scratch = probs + n_probs;
    float *pass_scratch = up_scratch + (size_t)nthreads * UP_SCRATCH;
    float *stream_buf = pass_scratch + (size_t)nthreads * PASS_STRIDE(R);
    float *queries = stream_buf + t2i_stream_floats(R), *query_pe = queries + tok, *qtmp = query_pe + tok;
    float *attn = qtmp + tok, *ik = attn + tok, *iv = ik + tok, *hid = iv + tok;
    float *hyper_in = hid + (size_t)T * MS_MD_MLP, *hyper_tmp = hyper_in + (size_t)MS_MD_TOKENS * UP2;
    float *tok_scratch = hyper_tmp + (size_t)(MS_MD_TOKENS + 1) * 2 * D;
    float *qk_next = tok_scratch + image_pass_tok_floats(T), *zbuf = qk_next + (size_t)R * D;
    float *qn = zbuf + (size_t)R * D, *obuf = qn + (size_t)T * MS_MD_CROSS;
    float *scratch = obuf + (size_t)T * MS_MD_CROSS;
    up_fold folds[MS_MD_DEPTH];
    if (fused) {
        folds[0] = (up_fold){cache->u2, cache->up_src, cache->s2, cache->c0};
        folds[1] = (up_fold){cache->u1, NULL, cache->s1, cache->c1};
    }

    /* tokens = [iou_token, mask_tokens, sparse]; they are also the query positional encoding */
    memcpy(queries, md->iou_token, D * sizeof(float));
    memcpy(queries + D, md->mask_tokens, (size_t)MS_MD_TOKENS * D * sizeof(float));
    if (n_tokens) memcpy(queries + (size_t)(1 + MS_MD_TOKENS) * D, sparse, (size_t)n_tokens * D * sizeof(float));
    memcpy(query_pe, queries, tok * sizeof(float));
    /* src = embedding + dense; keys_pe = src + image_pe (the cache has them for the first block) */
    if (!cache) make_src(keys, keys_pe, embedding, dense, image_pe, pool);

    /* Schedule. Block l is: self attention, token->image attention, MLP (token side), then the
       image->token attention + norm4 (image side). The token side of block l+1 up to its
       token->image attention needs only the tokens, so it runs before block l's image side, and that
       attention streams along with block l's image pass; likewise the final attention with the
       last block's. The first block's token->image attention reads the cache or keys_pe directly. */
    const ms_md_block *b0 = &md->layers[0];
    attention_tokens(queries, scratch, query_pe, query_pe, query_pe, &b0->self_attn, T, T, D, pool);
    ms_layernorm(queries, queries, b0->norm1_w, b0->norm1_b, T, D, LN_EPS, NULL);
    add_vec(qtmp, queries, query_pe, tok);
    if (cache)
        cross_token_to_image_cached(attn, stream_buf, pass_scratch, scratch, qtmp, cache->k0, cache->v0,
                                    &b0->cross_token_to_image, T, pool);
    else
        cross_token_to_image(attn, probs, scratch, qtmp, keys_pe, keys, &b0->cross_token_to_image, T, pool);
    block_tail(queries, attn, hid, b0, T, pool);
    for (int l = 0; l < MS_MD_DEPTH; l++) {
        const ms_md_block *b = &md->layers[l];
        const int last = l + 1 == MS_MD_DEPTH;
        /* keys and values of block l's image->token attention */
        add_vec(ik, queries, query_pe, tok);
        memcpy(iv, queries, tok * sizeof(float));
        /* the next token->image attention: its queries */
        const ms_md_attention *na = last ? &md->final_attn : &md->layers[l + 1].cross_token_to_image;
        const int Tn = last ? TO : T; /* the final attention: only the iou and mask token rows are read later */
        if (!last) {
            const ms_md_block *bn = &md->layers[l + 1];
            add_vec(qtmp, queries, query_pe, tok);
            attention_tokens(attn, scratch, qtmp, qtmp, queries, &bn->self_attn, T, T, D, pool);
            add_vec(queries, queries, attn, tok);
            ms_layernorm(queries, queries, bn->norm1_w, bn->norm1_b, T, D, LN_EPS, NULL);
        }
        add_vec(qtmp, queries, query_pe, (size_t)Tn * D);
        tokens_linear(qn, qtmp, na->q_w, na->q_b, Tn, D, MS_MD_CROSS, pool);
        t2i_query_keys(qk_next, qn, na, Tn);
        t2i_stream st;
        t2i_stream_init(&st, stream_buf, qk_next, NH * Tn);
        /* block l's image side, the next attention streamed along */
        const int cached = cache && l == 0;
        image_pass(keys, l == 0 ? keys_pe : NULL, pass_scratch, tok_scratch, ik, iv, cached ? cache->q0 : NULL,
                   cached ? cache->src : NULL, image_pe, b, fused ? &folds[l] : NULL, &st, fused && last, T, pool);
        t2i_stream_finish(&st, zbuf);
        t2i_values_out(attn, obuf, zbuf, na, Tn, pool);
        if (!last) {
            block_tail(queries, attn, hid, &md->layers[l + 1], T, pool);
        } else {
            add_vec(queries, queries, attn, (size_t)TO * D);
            ms_layernorm(queries, queries, md->norm_final_w, md->norm_final_b, TO, D, LN_EPS, NULL);
        }
    }

    /* hypernetwork MLPs on the 4 mask tokens, IoU head on the iou token: 5 independent tasks */
    heads_ctx hc = {hyper_in, iou, hyper_tmp, queries, md};
    ms_pool_run(pool, MS_MD_TOKENS + 1, heads_task, &hc);
    upscale_and_masks(low_res, up_scratch, keys, up_y, hyper_in, md, token_mask, pool);
    free(arena);
    return MEDSEG_OK;
}

// embedding, image_pe, dense [256, 64, 64], sparse [n, 256] -> low_res [4, 256, 256], iou [4]
// ref: mask_decoder.py MaskDecoder.predict_masks, transformer.py TwoWayTransformer.forward
medseg_status mask_decoder_forward(const ms_mask_decoder *md, ms_pool *pool, const float *embedding,
                                   const float *image_pe, const float *sparse, int n_tokens, const float *dense,
                                   float *low_res, float *iou, medseg_error *err)
{
    return decode(md, pool, NULL, embedding, image_pe, sparse, n_tokens, dense, MS_MD_ALL_TOKENS, low_res, iou, err);
}

// cache, image_pe [256, 64, 64], sparse [n, 256] -> low_res [4, 256, 256], iou [4]
medseg_status mask_decoder_forward_cached(const ms_mask_decoder *md, ms_pool *pool, const ms_md_image_cache *cache,
                                          const float *image_pe, const float *sparse, int n_tokens, float *low_res,
                                          float *iou, medseg_error *err)
{
    if (!cache || !cache->src) return ms_error(err, MEDSEG_ERR_ARG, "mask_decoder: image cache not prepared");
    return decode(md, pool, cache, NULL, image_pe, sparse, n_tokens, NULL, MS_MD_ALL_TOKENS, low_res, iou, err);
}

// (cache or embedding + dense), image_pe, sparse [n, 256] -> low_res planes of the tokens in token_mask, iou [4]
medseg_status mask_decoder_forward_tokens(const ms_mask_decoder *md, ms_pool *pool, const ms_md_image_cache *cache,
                                          const float *embedding, const float *image_pe, const float *sparse,
                                          int n_tokens, const float *dense, unsigned token_mask, float *low_res,
                                          float *iou, medseg_error *err)
{
    return decode(md, pool, cache, embedding, image_pe, sparse, n_tokens, dense, token_mask, low_res, iou, err);
}

// embedding, image_pe, dense [256, 64, 64] -> cache (src, src_pe [256, HW]; k0, v0, q0 [128, HW])
// ref: transformer.py TwoWayAttentionBlock (layers.0 projections of the image side)
medseg_status mask_decoder_prepare_image(const ms_mask_decoder *md, ms_pool *pool, const float *embedding,
                                         const float *image_pe, const float *dense, ms_md_image_cache *cache,
                                         medseg_error *err)
{
    if (!cache) return ms_error(err, MEDSEG_ERR_ARG, "mask_decoder: no cache");
    memset(cache, 0, sizeof *cache);
    if (!md || !md->iou_token) return ms_error(err, MEDSEG_ERR_ARG, "mask_decoder: not bound");
    if (!embedding || !image_pe || !dense) return ms_error(err, MEDSEG_ERR_ARG, "mask_decoder: missing input");
    const size_t n = (size_t)(3 * D + 3 * MS_MD_CROSS) * HW + (size_t)2 * D * D + (size_t)4 * D;
    float *buf = ms_alloc_aligned(n * sizeof(float), err, "mask decoder image cache");
    if (!buf) return err ? err->status : MEDSEG_ERR_NOMEM;
    cache->src = buf;
    cache->src_pe = buf + (size_t)D * HW;
    cache->k0 = cache->src_pe + (size_t)D * HW;
    cache->v0 = cache->k0 + (size_t)MS_MD_CROSS * HW;
    cache->q0 = cache->v0 + (size_t)MS_MD_CROSS * HW;
    cache->up_src = cache->q0 + (size_t)MS_MD_CROSS * HW;
    cache->u1 = cache->up_src + (size_t)D * HW;
    cache->u2 = cache->u1 + (size_t)D * D;
    cache->s1 = cache->u2 + (size_t)D * D;
    cache->s2 = cache->s1 + D;
    cache->c0 = cache->s2 + D;
    cache->c1 = cache->c0 + D;
    /* the upscaling's first transposed conv carried through both norm4 LayerNorms */
    {
        const float *w0 = md->layers[0].norm4_w, *b0 = md->layers[0].norm4_b;
        const float *w1 = md->layers[1].norm4_w, *b1 = md->layers[1].norm4_b;
        double s1[D], s2[D], c0[D], c1[D];
        for (int o = 0; o < D; o++) s1[o] = s2[o] = c0[o] = c1[o] = 0.0;
        for (int ch = 0; ch < D; ch++) {
            const float *ur = md->up0_w + (size_t)ch * D; /* [in, (co, dy, dx)] */
            float *u1 = cache->u1 + (size_t)ch * D, *u2 = cache->u2 + (size_t)ch * D;
            for (int o = 0; o < D; o++) {
                u1[o] = w1[ch] * ur[o];
                u2[o] = w0[ch] * u1[o];
                s1[o] += u1[o];
                s2[o] += u2[o];
                c0[o] += (double)b0[ch] * u1[o];
                c1[o] += (double)b1[ch] * ur[o];
            }
        }
        for (int o = 0; o < D; o++) {
            cache->s1[o] = (float)s1[o];
            cache->s2[o] = (float)s2[o];
            cache->c0[o] = (float)c0[o];
            cache->c1[o] = (float)(c1[o] + md->up0_b[o / 4]);
        }
    }
    const ms_md_block *b = &md->layers[0];
    make_src(cache->src, cache->src_pe, embedding, dense, image_pe, pool);
    md_gemm(cache->k0, b->cross_token_to_image.k_w, cache->src_pe, MS_MD_CROSS, HW, D, 0, 0, 0.0f, pool);
    md_gemm(cache->v0, b->cross_token_to_image.v_w, cache->src, MS_MD_CROSS, HW, D, 0, 0, 0.0f, pool);
    float *q0 = cache->q0;
    for (int c = 0; c < MS_MD_CROSS; c++) {
        float bq = b->cross_image_to_token.q_b[c];
        for (int p = 0; p < HW; p++) q0[(size_t)c * HW + p] = bq;
    }
    md_gemm(q0, b->cross_image_to_token.q_w, cache->src_pe, MS_MD_CROSS, HW, D, 0, 0, 1.0f, pool);
    md_gemm(cache->up_src, cache->u2, cache->src, D, HW, D, 1, 0, 0.0f, pool);
    return MEDSEG_OK;
}

void ms_md_image_cache_free(ms_md_image_cache *cache)
{
    if (!cache) return;
    free(cache->src);
    memset(cache, 0, sizeof *cache);
}
