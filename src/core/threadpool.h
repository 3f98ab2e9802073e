/* One fixed pool of worker threads. ms_pool_run splits [0, n_tasks) over the workers and the
 * calling thread and returns when all tasks are done. If the pool is already running a job for
 * another caller (concurrent predictions on one session), the tasks run inline on the calling
 * thread instead, so callers never block on each other. */
#ifndef MS_THREADPOOL_H
#define MS_THREADPOOL_H

#include "core/common.h"

typedef struct ms_pool ms_pool;
typedef void (*ms_task_fn)(void *ctx, int task, int thread);

ms_pool *ms_pool_create(int n_threads, medseg_error *err); /* n_threads <= 0: ms_num_cores() */
void ms_pool_free(ms_pool *p);
int ms_pool_size(const ms_pool *p); /* number of threads including the caller; 1 for NULL */
void ms_pool_run(ms_pool *p, int n_tasks, ms_task_fn fn, void *ctx); /* p may be NULL: inline */

#endif
