/* Numerical kernels shared by every model. Layout conventions: row-major, "tokens x channels"
 * ([N, C], channel fastest) unless a comment says otherwise. Every kernel has a plain reference
 * loop twin in tests/test_kernels.c. pool may be NULL (single thread). */
#ifndef MS_KERNELS_H
#define MS_KERNELS_H

#include "core/threadpool.h"

/* out [N, OC] = in [N, IC] @ w^T + b, w [OC, IC] (PyTorch nn.Linear layout), b [OC] or NULL.
 * out must not alias in. */
void ms_linear(float *out, const float *in, const float *w, const float *b, int N, int IC, int OC, ms_pool *pool);

/* C [M, N] = alpha * op(A) @ op(B) + beta * C, op = transpose when trans != 0; A is [M,K]
 * (or [K,M] when transA), B is [K,N] (or [N,K] when transB); row-major, tight leading dims. */
void ms_matmul(float *C, const float *A, const float *B, int M, int N, int K, int transA, int transB, float alpha,
               float beta, ms_pool *pool);

/* C [M, N] (row stride ldc) = alpha * op(A) @ op(B) + beta * C on the calling thread, row-major:
 * op(A) is A [M, K] (lda) or, when transA, A stored [K, M]; op(B) is B [K, N] (ldb) or, when
 * transB, B stored [N, K]. The one f32 product every kernel calls: oneDNN (dnnl_sgemm) for
 * products of at least 4e5 FLOPs, OpenBLAS below (src/core/gemm.c says why); MEDSEG_SGEMM=openblas
 * or =onednn forces one library. ms_sgemm_library names the library a product of that size uses. */
void ms_sgemm(int transA, int transB, int M, int N, int K, float alpha, const float *A, int lda, const float *B,
              int ldb, float beta, float *C, int ldc);
const char *ms_sgemm_library(int M, int N, int K);
/* Sets the calling thread's OpenMP thread count (oneDNN's) to 1, once per thread. */
void ms_dnnl_thread_init(void);

/* LayerNorm over the last dimension: x [N, C] -> out [N, C]; out may alias in. */
void ms_layernorm(float *out, const float *in, const float *w, const float *b, int N, int C, float eps, ms_pool *pool);

/* Exact (erf) GELU, in place: torch.nn.GELU() default. erf by a float rational approximation:
 * absolute error below 1e-6 * max(1, |x|), the order of torch's own float 1 + erf. */
void ms_gelu(float *x, size_t n, ms_pool *pool);
void ms_relu(float *x, size_t n);

/* Softmax over each row of x [rows, cols], in place (max subtracted, starts at -INFINITY; exp
 * about 2 ulp). A row that is all -INFINITY becomes uniform (torch gives NaN). */
void ms_softmax_rows(float *x, int rows, int cols);

/* One query row of attention scores with SAM's decomposed relative-position bias, softmax
 * numerator only: row [S*S] (keys (ky, kx) row-major) becomes exp(row + th[-ky] + tw[-kx] - max)
 * in place; returns 1 / (sum of the row), by which the caller scales the value product.
 * th, tw point at the query's own offset entry (qy + S - 1, qx + S - 1) of the [2S-1] tables;
 * twr is scratch [S]. A row that is all -INFINITY becomes all ones (returns 1/(S*S)). */
float ms_bias_softmax_row(float *row, const float *th, const float *tw, int S, float *twr);

/* out[i] = a[i] + b[i]; out may alias a or b. */
void ms_add(float *out, const float *a, const float *b, size_t n);

/* ---- additions (tiny_vit encoder) ---- */

/* Sets OpenBLAS to one thread once per process: parallelism comes from ms_pool only. Called by
 * ms_linear/ms_matmul/ms_conv2d_hwc themselves; call it before using cblas directly. */
void ms_kernels_init(void);

/* The vectorisable expf used by ms_softmax_rows (about 2 ulp) and the GELU of ms_gelu for one
 * value (absolute error below 1e-6 * max(1, |x|) against the exact erf formula); exposed for
 * tests. */
float ms_expf_approx(float x);
float ms_gelu_one(float x);

/* Depthwise 3x3 convolution, padding 1, channel-last: in [H, W, C], w [3, 3, C] (tap-major),
 * b [C] or NULL -> out [OH, OW, C], OH = (H - 1) / stride + 1. */
void ms_dwconv3x3_hwc(float *out, const float *in, const float *w, const float *b, int H, int W, int C, int stride,
                      ms_pool *pool);

/* Output rows [oy0, oy1) of the same convolution, for banded (cache-sized) processing: in points
 * at image row in_row0 of the [H, W, C] map and must hold every row the band reads; out holds
 * [oy1 - oy0, OW, C]. */
void ms_dwconv3x3_rows(float *out, const float *in, int in_row0, int H, int W, int C, const float *w, const float *b,
                       int stride, int oy0, int oy1);

/* im2col of output rows [oy0, oy1): in [H, W, C] -> cols [(oy1-oy0)*OW, KH*KW*C], zero padding,
 * column order (ky, kx, c). */
void ms_im2col_hwc(float *cols, const float *in, int H, int W, int C, int KH, int KW, int stride, int pad, int OH,
                   int OW, int oy0, int oy1);

/* Dense convolution, channel-last: in [H, W, C], w [OC, KH, KW, C] (PyTorch [OC, C, KH, KW]
 * reordered), b [OC] or NULL -> out [OH, OW, OC]. Works in chunks of rows_per_chunk output rows;
 * scratch holds ms_conv2d_hwc_scratch(...) floats (one im2col chunk per pool thread). */
size_t ms_conv2d_hwc_scratch(int OW, int C, int KH, int KW, int rows_per_chunk, int n_threads);
void ms_conv2d_hwc(float *out, float *scratch, const float *in, const float *w, const float *b, int H, int W, int C,
                   int OC, int KH, int KW, int stride, int pad, int rows_per_chunk, ms_pool *pool);

/* Window partition with zero padding at the bottom/right to multiples of ws:
 * x [H, W, C] -> win [nH*nW, ws*ws, C] (windows row-major, tokens row-major inside a window). */
void ms_window_partition(float *win, const float *x, int H, int W, int C, int ws);
/* Inverse, accumulating and dropping the padding: x [H, W, C] += win [nH*nW, ws*ws, C]. */
void ms_window_merge_add(float *x, const float *win, int H, int W, int C, int ws);

/* ---- precision (bf16 through oneDNN, src/core/bf16.c) ---- */

/* Precision of the encoders' large matrix products. Process-wide; f32 unless MEDSEG_PRECISION=bf16
 * is set in the environment (read once, on first use; ignored when the CPU lacks native bf16) or
 * ms_precision_set() was called. In bf16 mode ms_linear and ms_conv2d_hwc products with at least
 * MS_BF16_MIN_ROWS rows (output pixels / tokens) run with bf16 inputs and weights and f32
 * accumulation and output; smaller ones (per-prompt decoder work) stay f32. The ViT encoder
 * (vit.c) also runs its global attention in bf16 then. */
typedef enum { MS_PRECISION_F32 = 0, MS_PRECISION_BF16 = 1 } ms_precision;
#define MS_BF16_MIN_ROWS 256
ms_precision ms_precision_get(void);
/* Fails (MEDSEG_ERR_UNSUPPORTED) for bf16 when ms_bf16_available() is 0. */
medseg_status ms_precision_set(ms_precision p, medseg_error *err);
/* "f32" / "fp32" / "bf16" -> *p. */
medseg_status ms_precision_parse(const char *s, ms_precision *p, medseg_error *err);
/* 1 if oneDNN sees native bf16 dot products on this CPU (AVX512-BF16 or AMX-BF16). */
int ms_bf16_available(void);

/* x [n] f32 -> [n] bf16 (round to nearest even, NaN kept), and back (exact). */
void ms_f32_to_bf16(uint16_t *out, const float *in, size_t n);
void ms_bf16_to_f32(float *out, const uint16_t *in, size_t n);

/* C [M, N] f32 (row stride ldc) = A [M, K] bf16 (stride lda) @ op(B) + bias, op(B) = B [K, N]
 * (stride ldb) or, when transB, B stored [N, K] (stride ldb); bias [N] f32 or NULL. fp32
 * accumulation (oneDNN matmul), on the calling thread only. */
medseg_status ms_gemm_bf16(float *C, int ldc, const uint16_t *A, int lda, const uint16_t *B, int ldb, int transB,
                           const float *bias, int M, int N, int K, medseg_error *err);

/* out [N, OC] = bf16(in [N, IC]) @ w^T + b, w [OC, IC] already bf16, b [OC] f32 or NULL; rows
 * split over the pool, converted 256 at a time. */
medseg_status ms_linear_bf16(float *out, const float *in, const uint16_t *w, const float *b, int N, int IC, int OC,
                             ms_pool *pool, medseg_error *err);

#endif
