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

/* LayerNorm over the last dimension: x [N, C] -> out [N, C]; out may alias in. */
void ms_layernorm(float *out, const float *in, const float *w, const float *b, int N, int C, float eps, ms_pool *pool);

/* Exact (erf) GELU, in place: torch.nn.GELU() default. */
void ms_gelu(float *x, size_t n, ms_pool *pool);
void ms_relu(float *x, size_t n);

/* Softmax over each row of x [rows, cols], in place (max subtracted, starts at -INFINITY). */
void ms_softmax_rows(float *x, int rows, int cols);

/* out[i] = a[i] + b[i]; out may alias a or b. */
void ms_add(float *out, const float *a, const float *b, size_t n);

#endif
