/* The f32 matrix product every kernel calls (ms_sgemm, see kernels.h), and the choice of the
 * library behind it.
 *
 * Two libraries are linked: OpenBLAS and oneDNN. Measured on the ViT-B encoder's shapes, one
 * thread per product as the pool runs them (AVX-512 machine; bench/README.md has the table),
 * oneDNN's dnnl_sgemm is 5-10% faster on the linears at 1024-2048 rows and 11-13% on the global
 * attention's K = 64 products, while OpenBLAS has the smaller fixed cost per call on tiny
 * products (prompt decoder). So products of
 * at least MS_SGEMM_DNNL_FLOPS go to oneDNN, the rest to OpenBLAS. MEDSEG_SGEMM=openblas or
 * =onednn in the environment (read once) forces one library for every product, for comparisons.
 *
 * Both run on the calling thread only: parallelism comes from ms_pool. OpenBLAS is set to one
 * thread once per process (ms_kernels_init); oneDNN runs its parallel regions through OpenMP,
 * whose thread count is per calling thread, so each thread sets its own to 1 before its first
 * oneDNN call (ms_dnnl_thread_init). */
#include "core/kernels.h"

#include <cblas.h>
#include <dlfcn.h>
#include <oneapi/dnnl/dnnl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define MS_SGEMM_DNNL_FLOPS 4e5 /* 2*M*N*K from which oneDNN is used (auto mode) */

enum { BACKEND_AUTO = 0, BACKEND_OPENBLAS = 1, BACKEND_ONEDNN = 2 };
static atomic_int g_backend = -1;

static int backend(void)
{
    int b = atomic_load(&g_backend);
    if (b < 0) {
        const char *e = getenv("MEDSEG_SGEMM");
        b = BACKEND_AUTO;
        if (e && !strcmp(e, "openblas")) b = BACKEND_OPENBLAS;
        else if (e && !strcmp(e, "onednn")) b = BACKEND_ONEDNN;
        atomic_store(&g_backend, b);
    }
    return b;
}

static int use_dnnl(int M, int N, int K)
{
    int b = backend();
    if (b != BACKEND_AUTO) return b == BACKEND_ONEDNN;
    return 2.0 * M * (double)N * K >= MS_SGEMM_DNNL_FLOPS;
}

const char *ms_sgemm_library(int M, int N, int K)
{
    return use_dnnl(M, N, K) ? "oneDNN" : "OpenBLAS";
}

/* ------------------------------------------------------------------ oneDNN threading */

static pthread_once_t omp_once = PTHREAD_ONCE_INIT;
static void (*g_omp_set_num_threads)(int);
static _Thread_local int t_dnnl_ready;

static void omp_lookup(void)
{
    /* omp_set_num_threads of the libgomp that libdnnl loads, looked up at run time: no
     * link-time dependency on OpenMP. */
    void *f = dlsym(RTLD_DEFAULT, "omp_set_num_threads");
    memcpy(&g_omp_set_num_threads, &f, sizeof f); /* object -> function pointer (POSIX dlsym) */
}

void ms_dnnl_thread_init(void)
{
    if (t_dnnl_ready) return;
    pthread_once(&omp_once, omp_lookup);
    if (g_omp_set_num_threads) g_omp_set_num_threads(1); /* this thread's OpenMP regions: 1 thread */
    t_dnnl_ready = 1;
}

/* ------------------------------------------------------------------ sgemm */

// op(A) [M, K] (lda) @ op(B) [K, N] (ldb) -> C [M, N] (ldc) = alpha * op(A) op(B) + beta * C. ref: torch.matmul
void ms_sgemm(int transA, int transB, int M, int N, int K, float alpha, const float *A, int lda, const float *B,
              int ldb, float beta, float *C, int ldc)
{
    if (M <= 0 || N <= 0) return;
    if (K > 0 && use_dnnl(M, N, K)) {
        ms_dnnl_thread_init();
        if (dnnl_sgemm(transA ? 'T' : 'N', transB ? 'T' : 'N', M, N, K, alpha, A, lda, B, ldb, beta, C, ldc) ==
            dnnl_success)
            return;
        /* oneDNN refused (it checks arguments only): OpenBLAS computes the same product */
    }
    ms_kernels_init();
    cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans, M, N, K, alpha,
                A, lda, B, ldb, beta, C, ldc);
}
