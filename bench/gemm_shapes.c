/* gemm_shapes: the f32 products of the ViT-B encoder, one thread each (as medseg's pool runs
 * them), through oneDNN's dnnl_sgemm and OpenBLAS's cblas_sgemm, in one process. Prints GFLOP/s
 * (median of 11 timed repetitions after a warm-up) and the ratio oneDNN / OpenBLAS per shape.
 * This is the measurement behind ms_sgemm's choice of library (src/core/gemm.c) and the task
 * sizes of ms_linear and the ViT MLP (1024-2048 rows).
 *
 *   ./build/gemm_shapes            (run it on a quiet machine; it never fails on time)
 *
 * Shapes: [M x K] @ [K x N] with the encoder's leading dimensions (q, k, v are column slices of
 * the [N, 3C] qkv buffer, ld 2304). */
#include "core/kernels.h"

#include <cblas.h>
#include <oneapi/dnnl/dnnl.h>
#include <stdio.h>
#include <stdlib.h>

typedef struct {
    const char *name;
    int M, N, K, transB, lda, ldb, ldc, reps;
} shape;

static const shape SHAPES[] = {
    {"qkv, 256 rows", 256, 2304, 768, 1, 768, 768, 2304, 4},
    {"qkv, 512 rows", 512, 2304, 768, 1, 768, 768, 2304, 2},
    {"qkv, 1024 rows", 1024, 2304, 768, 1, 768, 768, 2304, 1},
    {"qkv, 2048 rows", 2048, 2304, 768, 1, 768, 768, 2304, 1},
    {"proj, 1024 rows", 1024, 768, 768, 1, 768, 768, 768, 2},
    {"mlp lin1, 256 rows", 256, 3072, 768, 1, 768, 768, 3072, 4},
    {"mlp lin1, 2048 rows", 2048, 3072, 768, 1, 768, 768, 3072, 1},
    {"mlp lin2, 256 rows", 256, 768, 3072, 1, 3072, 3072, 768, 4},
    {"mlp lin2, 2048 rows", 2048, 768, 3072, 1, 3072, 3072, 768, 1},
    {"global q k^T, 256 queries", 256, 4096, 64, 1, 2304, 2304, 4096, 4},
    {"global p v, 256 queries", 256, 64, 4096, 0, 4096, 2304, 768, 4},
    {"global q rel_h^T", 256, 127, 64, 1, 2304, 64, 127, 40},
    {"window q k^T", 196, 196, 64, 1, 2304, 2304, 196, 40},
    {"window p v", 196, 64, 196, 0, 196, 2304, 768, 40},
};

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static float *filled(size_t n)
{
    float *p = malloc((n + 16) * sizeof(float));
    if (!p) {
        fprintf(stderr, "gemm_shapes: out of memory\n");
        exit(1);
    }
    for (size_t i = 0; i < n + 16; i++) p[i] = (float)((i * 7919u) % 2001u) / 1000.0f - 1.0f;
    return p;
}

/* median GFLOP/s of 11 timed runs of reps products (library 0: oneDNN, 1: OpenBLAS) */
static double rate(const shape *s, int library, const float *A, const float *B, float *C)
{
    enum { RUNS = 11 };
    double t[RUNS];
    for (int r = -1; r < RUNS; r++) { /* r = -1: warm-up */
        double t0 = ms_now_ms();
        for (int i = 0; i < s->reps; i++) {
            if (library == 0)
                dnnl_sgemm('N', s->transB ? 'T' : 'N', s->M, s->N, s->K, 1.0f, A, s->lda, B, s->ldb, 0.0f, C, s->ldc);
            else
                cblas_sgemm(CblasRowMajor, CblasNoTrans, s->transB ? CblasTrans : CblasNoTrans, s->M, s->N, s->K, 1.0f,
                            A, s->lda, B, s->ldb, 0.0f, C, s->ldc);
        }
        if (r >= 0) t[r] = (ms_now_ms() - t0) / s->reps;
    }
    qsort(t, RUNS, sizeof t[0], cmp_double);
    return 2.0 * s->M * (double)s->N * s->K / (t[RUNS / 2] * 1e6);
}

int main(void)
{
    ms_kernels_init();     /* OpenBLAS: one thread */
    ms_dnnl_thread_init(); /* oneDNN: one OpenMP thread on this thread */
    printf("f32 products of the ViT-B encoder, one thread each, GFLOP/s (median of 11)\n");
    printf("%-28s %18s %9s %9s %8s\n", "product", "M x N x K", "oneDNN", "OpenBLAS", "ratio");
    for (size_t i = 0; i < sizeof SHAPES / sizeof SHAPES[0]; i++) {
        const shape *s = &SHAPES[i];
        size_t na = (size_t)s->M * s->lda, nb = (size_t)(s->transB ? s->N : s->K) * s->ldb;
        float *A = filled(na), *B = filled(nb), *C = filled((size_t)s->M * s->ldc);
        double d = rate(s, 0, A, B, C), o = rate(s, 1, A, B, C);
        char dims[40];
        snprintf(dims, sizeof dims, "%dx%dx%d", s->M, s->N, s->K);
        printf("%-28s %18s %9.1f %9.1f %7.2fx\n", s->name, dims, d, o, d / o);
        free(A);
        free(B);
        free(C);
    }
    return 0;
}
