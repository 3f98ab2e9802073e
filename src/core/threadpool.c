/* Fixed pool of worker threads (see threadpool.h).
 *
 * One job at a time: ms_pool_run publishes (fn, ctx, n_tasks) under the mutex, bumps a
 * generation counter and wakes the workers; every participant (the workers and the caller)
 * claims task indices from an atomic counter until they run out. The caller returns once every
 * worker has reported that it left the job. A second caller that finds the pool busy runs its
 * tasks inline instead of waiting.
 *
 * Workers spin briefly on the generation counter before sleeping on the condition variable, so
 * the many short parallel sections of an encoder pass do not each pay a futex wake-up; the spin
 * yields now and then, so that on an oversubscribed machine it does not starve a thread of the
 * same process that shares its core. */
#include "core/threadpool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>

#define MS_POOL_MAX_THREADS 256
#define MS_POOL_SPIN 20000

struct ms_pool {
    int n_threads; /* including the caller */
    pthread_t *threads;
    pthread_mutex_t mu;
    pthread_cond_t wake; /* workers wait for a new generation */
    pthread_cond_t done; /* caller waits for all workers to leave the job */
    atomic_int busy;     /* 1 while a caller owns the pool */
    atomic_uint gen;     /* bumped for every job (and for shutdown) */
    atomic_int next;     /* next task index to claim */
    int n_tasks;
    ms_task_fn fn;
    void *ctx;
    int active; /* workers still inside the current job */
    int stop;
};

typedef struct {
    ms_pool *p;
    int index;
} ms_worker_arg;

static void run_tasks(ms_pool *p, int thread)
{
    for (;;) {
        int t = atomic_fetch_add_explicit(&p->next, 1, memory_order_relaxed);
        if (t >= p->n_tasks) break;
        p->fn(p->ctx, t, thread);
    }
}

static void *worker_main(void *arg)
{
    ms_worker_arg *wa = arg;
    ms_pool *p = wa->p;
    int index = wa->index;
    free(wa);
    unsigned seen = 0;
    for (;;) {
        /* spin a little, then sleep */
        unsigned g = atomic_load_explicit(&p->gen, memory_order_acquire);
        for (int s = 0; s < MS_POOL_SPIN && g == seen; s++) {
#if defined(__x86_64__) || defined(__i386__)
            __builtin_ia32_pause();
#endif
            if ((s & 255) == 255) sched_yield(); /* a thread sharing this core gets to run */
            g = atomic_load_explicit(&p->gen, memory_order_acquire);
        }
        pthread_mutex_lock(&p->mu);
        while (atomic_load_explicit(&p->gen, memory_order_acquire) == seen && !p->stop)
            pthread_cond_wait(&p->wake, &p->mu);
        if (p->stop) {
            pthread_mutex_unlock(&p->mu);
            return NULL;
        }
        seen = atomic_load_explicit(&p->gen, memory_order_acquire);
        pthread_mutex_unlock(&p->mu);

        run_tasks(p, index);

        pthread_mutex_lock(&p->mu);
        if (--p->active == 0) pthread_cond_signal(&p->done);
        pthread_mutex_unlock(&p->mu);
    }
}

ms_pool *ms_pool_create(int n_threads, medseg_error *err)
{
    if (n_threads <= 0) n_threads = ms_num_cores();
    if (n_threads > MS_POOL_MAX_THREADS) n_threads = MS_POOL_MAX_THREADS;
    ms_pool *p = ms_calloc(1, sizeof *p, err, "thread pool");
    if (!p) return NULL;
    p->n_threads = n_threads;
    atomic_init(&p->busy, 0);
    atomic_init(&p->gen, 0);
    atomic_init(&p->next, 0);
    if (pthread_mutex_init(&p->mu, NULL) != 0) {
        free(p);
        ms_error(err, MEDSEG_ERR_INTERNAL, "thread pool: mutex init failed");
        return NULL;
    }
    pthread_cond_init(&p->wake, NULL);
    pthread_cond_init(&p->done, NULL);
    if (n_threads > 1) {
        p->threads = ms_calloc((size_t)n_threads - 1, sizeof *p->threads, err, "thread pool");
        if (!p->threads) {
            ms_pool_free(p);
            return NULL;
        }
        for (int i = 1; i < n_threads; i++) {
            ms_worker_arg *wa = malloc(sizeof *wa);
            if (wa) wa->p = p, wa->index = i;
            if (!wa || pthread_create(&p->threads[i - 1], NULL, worker_main, wa) != 0) {
                free(wa);
                p->n_threads = i; /* only i-1 workers exist: free joins those */
                ms_pool_free(p);
                ms_error(err, MEDSEG_ERR_INTERNAL, "thread pool: cannot start thread %d of %d", i, n_threads);
                return NULL;
            }
        }
    }
    return p;
}

void ms_pool_free(ms_pool *p)
{
    if (!p) return;
    if (p->threads) {
        pthread_mutex_lock(&p->mu);
        p->stop = 1;
        atomic_fetch_add_explicit(&p->gen, 1, memory_order_release);
        pthread_cond_broadcast(&p->wake);
        pthread_mutex_unlock(&p->mu);
        for (int i = 1; i < p->n_threads; i++) pthread_join(p->threads[i - 1], NULL);
        free(p->threads);
    }
    pthread_cond_destroy(&p->wake);
    pthread_cond_destroy(&p->done);
    pthread_mutex_destroy(&p->mu);
    free(p);
}

int ms_pool_size(const ms_pool *p)
{
    return p ? p->n_threads : 1;
}

void ms_pool_run(ms_pool *p, int n_tasks, ms_task_fn fn, void *ctx)
{
    if (n_tasks <= 0) return;
    int expected = 0;
    if (!p || p->n_threads <= 1 || n_tasks == 1 ||
        !atomic_compare_exchange_strong(&p->busy, &expected, 1)) {
        for (int t = 0; t < n_tasks; t++) fn(ctx, t, 0);
        return;
    }
    pthread_mutex_lock(&p->mu);
    p->fn = fn;
    p->ctx = ctx;
    p->n_tasks = n_tasks;
    atomic_store_explicit(&p->next, 0, memory_order_relaxed);
    p->active = p->n_threads - 1;
    atomic_fetch_add_explicit(&p->gen, 1, memory_order_release);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);

    run_tasks(p, 0);

    pthread_mutex_lock(&p->mu);
    while (p->active > 0) pthread_cond_wait(&p->done, &p->mu);
    pthread_mutex_unlock(&p->mu);
    atomic_store(&p->busy, 0);
}
