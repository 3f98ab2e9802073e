/* Reduced precision (bf16) matrix products through oneDNN, and the process-wide precision
 * switch (see kernels.h, "precision").
 *
 * Every product here is one oneDNN matmul primitive run on the calling thread only: parallelism
 * comes from ms_pool, as for the f32 kernels (each calling thread's OpenMP count is set to 1 by
 * ms_dnnl_thread_init, gemm.c).
 *
 * Primitives depend on the shapes and leading dimensions; creating one costs far more than a
 * small product, so every thread keeps its own small cache of them (thread-private, so that a
 * primitive and its library-managed scratchpad are never used by two threads at once). The
 * caches are listed in a global registry (so they stay reachable) and freed when their thread
 * exits. */
#include "core/kernels.h"

#include <oneapi/dnnl/dnnl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ precision switch */

static atomic_int g_precision = -1; /* -1: not decided yet */

int ms_bf16_available(void)
{
    static atomic_int avail = -1;
    int a = atomic_load(&avail);
    if (a < 0) {
        /* oneDNN's view of the CPU: native bf16 dot products (AVX512-BF16) or AMX-BF16. Without
         * them oneDNN would emulate bf16 on plain AVX-512, slower than f32. */
        unsigned isa = (unsigned)dnnl_get_effective_cpu_isa();
        a = (isa & (unsigned)dnnl_cpu_isa_avx512_core_bf16) == (unsigned)dnnl_cpu_isa_avx512_core_bf16;
        atomic_store(&avail, a);
    }
    return a;
}

ms_precision ms_precision_get(void)
{
    int p = atomic_load(&g_precision);
    if (p < 0) {
        const char *e = getenv("MEDSEG_PRECISION");
        p = (e && !strcmp(e, "bf16") && ms_bf16_available()) ? MS_PRECISION_BF16 : MS_PRECISION_F32;
        int expected = -1;
        if (!atomic_compare_exchange_strong(&g_precision, &expected, p)) p = expected;
    }
    return (ms_precision)p;
}

medseg_status ms_precision_set(ms_precision p, medseg_error *err)
{
    if (p != MS_PRECISION_F32 && p != MS_PRECISION_BF16)
        return ms_error(err, MEDSEG_ERR_ARG, "precision: unknown value %d", (int)p);
    if (p == MS_PRECISION_BF16 && !ms_bf16_available())
        return ms_error(err, MEDSEG_ERR_UNSUPPORTED,
                        "precision: bf16 needs a CPU with AVX512-BF16 or AMX-BF16 (oneDNN reports ISA 0x%x)",
                        (unsigned)dnnl_get_effective_cpu_isa());
    atomic_store(&g_precision, (int)p);
    return MEDSEG_OK;
}

medseg_status ms_precision_parse(const char *s, ms_precision *p, medseg_error *err)
{
    if (s && (!strcmp(s, "f32") || !strcmp(s, "fp32"))) *p = MS_PRECISION_F32;
    else if (s && !strcmp(s, "bf16")) *p = MS_PRECISION_BF16;
    else return ms_error(err, MEDSEG_ERR_ARG, "precision: '%s' is neither f32 nor bf16", s ? s : "(null)");
    return MEDSEG_OK;
}

/* ------------------------------------------------------------------ conversion */

// x [n] f32 -> out [n] bf16, round to nearest even; NaN stays NaN (quiet).
void ms_f32_to_bf16(uint16_t *out, const float *in, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, in + i, sizeof u);
        uint32_t r = (u + 0x7FFFu + ((u >> 16) & 1u)) >> 16;
        int nan = (u & 0x7FFFFFFFu) > 0x7F800000u;
        out[i] = (uint16_t)(nan ? ((u >> 16) | 0x40u) : r);
    }
}

// x [n] bf16 -> out [n] f32 (exact).
void ms_bf16_to_f32(float *out, const uint16_t *in, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint32_t u = (uint32_t)in[i] << 16;
        memcpy(out + i, &u, sizeof u);
    }
}

/* ------------------------------------------------------------------ per-thread primitive cache */

#define BF16_CACHE 48

typedef struct {
    int M, N, K, lda, ldb, ldc, transB, bias;
} gemm_key;

typedef struct bf16_cache {
    gemm_key key[BF16_CACHE];
    dnnl_primitive_t prim[BF16_CACHE];
    int n, next;
    dnnl_stream_t stream;
    struct bf16_cache *prev, *nextc; /* registry */
} bf16_cache;

static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static pthread_key_t g_key;
static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static dnnl_engine_t g_engine;
static dnnl_status_t g_engine_status = dnnl_runtime_error;
static bf16_cache *g_caches; /* every live thread's cache */

static void cache_destroy(void *v)
{
    bf16_cache *c = v;
    if (!c) return;
    pthread_mutex_lock(&g_mu);
    if (c->prev) c->prev->nextc = c->nextc;
    else g_caches = c->nextc;
    if (c->nextc) c->nextc->prev = c->prev;
    pthread_mutex_unlock(&g_mu);
    for (int i = 0; i < c->n; i++) dnnl_primitive_destroy(c->prim[i]);
    if (c->stream) dnnl_stream_destroy(c->stream);
    free(c);
}

static void bf16_init_once(void)
{
    pthread_key_create(&g_key, cache_destroy);
    g_engine_status = dnnl_engine_create(&g_engine, dnnl_cpu, 0);
}

static bf16_cache *thread_cache(medseg_error *err)
{
    pthread_once(&g_once, bf16_init_once);
    if (g_engine_status != dnnl_success) {
        ms_error(err, MEDSEG_ERR_INTERNAL, "bf16: oneDNN CPU engine unavailable (status %d)", (int)g_engine_status);
        return NULL;
    }
    bf16_cache *c = pthread_getspecific(g_key);
    if (c) return c;
    c = ms_calloc(1, sizeof *c, err, "bf16 primitive cache");
    if (!c) return NULL;
    if (dnnl_stream_create(&c->stream, g_engine, dnnl_stream_default_flags) != dnnl_success) {
        free(c);
        ms_error(err, MEDSEG_ERR_INTERNAL, "bf16: cannot create a oneDNN stream");
        return NULL;
    }
    ms_dnnl_thread_init(); /* this thread's OpenMP regions: 1 thread */
    pthread_mutex_lock(&g_mu);
    c->nextc = g_caches;
    if (g_caches) g_caches->prev = c;
    g_caches = c;
    pthread_mutex_unlock(&g_mu);
    pthread_setspecific(g_key, c);
    return c;
}

static void gemm_mds(const gemm_key *k, dnnl_memory_desc_t *a, dnnl_memory_desc_t *b, dnnl_memory_desc_t *c,
                     dnnl_memory_desc_t *bias)
{
    dnnl_dims_t da = {k->M, k->K}, db = {k->K, k->N}, dc = {k->M, k->N}, dbias = {1, k->N};
    dnnl_dims_t sa = {k->lda, 1}, sc = {k->ldc, 1}, sbias = {k->N, 1};
    dnnl_dims_t sb_t = {1, k->ldb}, sb_n = {k->ldb, 1};
    dnnl_memory_desc_init_by_strides(a, 2, da, dnnl_bf16, sa);
    dnnl_memory_desc_init_by_strides(b, 2, db, dnnl_bf16, k->transB ? sb_t : sb_n);
    dnnl_memory_desc_init_by_strides(c, 2, dc, dnnl_f32, sc);
    dnnl_memory_desc_init_by_strides(bias, 2, dbias, dnnl_f32, sbias);
}

static dnnl_primitive_t get_prim(bf16_cache *c, const gemm_key *k, medseg_error *err)
{
    for (int i = 0; i < c->n; i++)
        if (!memcmp(&c->key[i], k, sizeof *k)) return c->prim[i];
    dnnl_memory_desc_t a, b, d, bias;
    gemm_mds(k, &a, &b, &d, &bias);
    dnnl_matmul_desc_t md;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_primitive_t p = NULL;
    dnnl_status_t st = dnnl_matmul_desc_init(&md, &a, &b, k->bias ? &bias : NULL, &d);
    if (st == dnnl_success) st = dnnl_primitive_desc_create(&pd, &md, NULL, g_engine, NULL);
    if (st == dnnl_success) st = dnnl_primitive_create(&p, pd);
    if (pd) dnnl_primitive_desc_destroy(pd);
    if (st != dnnl_success) {
        ms_error(err, MEDSEG_ERR_INTERNAL, "bf16: oneDNN matmul %dx%dx%d not created (status %d)", k->M, k->N, k->K,
                 (int)st);
        return NULL;
    }
    int slot;
    if (c->n < BF16_CACHE) {
        slot = c->n++;
    } else { /* round-robin eviction */
        slot = c->next;
        c->next = (c->next + 1) % BF16_CACHE;
        dnnl_primitive_destroy(c->prim[slot]);
    }
    c->key[slot] = *k;
    c->prim[slot] = p;
    return p;
}

// A [M, K] bf16 (lda), B [K, N] bf16 (ldb; [N, K] when transB), bias [N] f32 or NULL
//   -> C [M, N] f32 (ldc) = A @ op(B) + bias, fp32 accumulation. ref: torch.matmul / nn.Linear in bf16
medseg_status ms_gemm_bf16(float *C, int ldc, const uint16_t *A, int lda, const uint16_t *B, int ldb, int transB,
                           const float *bias, int M, int N, int K, medseg_error *err)
{
    if (M <= 0 || N <= 0) return MEDSEG_OK;
    if (!C || ldc < N || (K > 0 && (!A || !B || lda < K || ldb < (transB ? K : N))))
        return ms_error(err, MEDSEG_ERR_ARG, "bf16: matmul %dx%dx%d: NULL matrix or leading dimension too small "
                        "(lda %d, ldb %d, ldc %d)", M, N, K, lda, ldb, ldc);
    if (K <= 0) {
        for (int i = 0; i < M; i++)
            for (int j = 0; j < N; j++) C[(size_t)i * ldc + j] = bias ? bias[j] : 0.0f;
        return MEDSEG_OK;
    }
    bf16_cache *c = thread_cache(err);
    if (!c) return err ? err->status : MEDSEG_ERR_INTERNAL;
    gemm_key k = {M, N, K, lda, ldb, ldc, transB ? 1 : 0, bias ? 1 : 0};
    dnnl_primitive_t p = get_prim(c, &k, err);
    if (!p) return err ? err->status : MEDSEG_ERR_INTERNAL;
    dnnl_memory_desc_t ma, mb, mc, mbias;
    gemm_mds(&k, &ma, &mb, &mc, &mbias);
    dnnl_memory_t mem[4] = {NULL, NULL, NULL, NULL};
    dnnl_status_t st = dnnl_memory_create(&mem[0], &ma, g_engine, (void *)A);
    if (st == dnnl_success) st = dnnl_memory_create(&mem[1], &mb, g_engine, (void *)B);
    if (st == dnnl_success) st = dnnl_memory_create(&mem[2], &mc, g_engine, C);
    if (st == dnnl_success && bias) st = dnnl_memory_create(&mem[3], &mbias, g_engine, (void *)bias);
    if (st == dnnl_success) {
        dnnl_exec_arg_t args[4] = {
            {DNNL_ARG_SRC, mem[0]}, {DNNL_ARG_WEIGHTS, mem[1]}, {DNNL_ARG_DST, mem[2]}, {DNNL_ARG_BIAS, mem[3]}};
        st = dnnl_primitive_execute(p, c->stream, bias ? 4 : 3, args);
    }
    for (int i = 0; i < 4; i++)
        if (mem[i]) dnnl_memory_destroy(mem[i]);
    if (st != dnnl_success)
        return ms_error(err, MEDSEG_ERR_INTERNAL, "bf16: oneDNN matmul %dx%dx%d failed (status %d)", M, N, K, (int)st);
    return MEDSEG_OK;
}

/* ------------------------------------------------------------------ linear with bf16 weights */

#define BF16_ROWS 1024 /* rows converted and multiplied at a time (per-thread buffer) */

typedef struct {
    float *out;
    const float *in, *b;
    const uint16_t *w;
    int N, IC, OC, ntasks;
    atomic_int failed;
} lin16_ctx;

static void lin16_task(void *vctx, int task, int thread)
{
    (void)thread;
    lin16_ctx *c = vctx;
    int q = c->N / c->ntasks, r = c->N % c->ntasks;
    int lo = task * q + (task < r ? task : r), hi = lo + q + (task < r ? 1 : 0);
    if (lo >= hi) return;
    int rows = hi - lo < BF16_ROWS ? hi - lo : BF16_ROWS;
    uint16_t *a = malloc((size_t)rows * c->IC * sizeof(uint16_t));
    if (!a) {
        atomic_store(&c->failed, 1);
        return;
    }
    for (int r0 = lo; r0 < hi; r0 += BF16_ROWS) {
        int n = hi - r0 < BF16_ROWS ? hi - r0 : BF16_ROWS;
        ms_f32_to_bf16(a, c->in + (size_t)r0 * c->IC, (size_t)n * c->IC);
        if (ms_gemm_bf16(c->out + (size_t)r0 * c->OC, c->OC, a, c->IC, c->w, c->IC, 1, c->b, n, c->OC, c->IC, NULL)) {
            atomic_store(&c->failed, 1);
            break;
        }
    }
    free(a);
}

// in [N, IC] f32, w [OC, IC] bf16, b [OC] -> out [N, OC] f32. ref: torch.nn.Linear (bf16 autocast)
medseg_status ms_linear_bf16(float *out, const float *in, const uint16_t *w, const float *b, int N, int IC, int OC,
                             ms_pool *pool, medseg_error *err)
{
    if (N <= 0 || OC <= 0) return MEDSEG_OK;
    /* >= 1024 rows a task when every thread gets one (larger products run faster), else >= 64 */
    int nt = ms_pool_size(pool), units = N >= 1024 * nt ? N / 1024 : (N + 63) / 64;
    int want = nt > 1 ? nt * 4 : 1;
    lin16_ctx c = {out, in, b, w, N, IC, OC, units < want ? units : want, 0};
    if (c.ntasks < 1) c.ntasks = 1;
    ms_pool_run(pool, c.ntasks, lin16_task, &c);
    if (atomic_load(&c.failed)) return ms_error(err, MEDSEG_ERR_INTERNAL, "bf16: linear %dx%dx%d failed", N, OC, IC);
    return MEDSEG_OK;
}
