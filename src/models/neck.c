#include "models/neck.h"

#include "core/kernels.h"

#include <stdlib.h>
#include <string.h>

#define NECK_LN2D_EPS 1e-6f /* LayerNorm2d default */
_Static_assert(SAM_NECK_DIM % 16 == 0, "the embedding transpose moves 16 channels per task");

medseg_status sam_neck_bind(sam_neck *n, const ms_tensors *ts, int in_dim, medseg_error *err)
{
    memset(n, 0, sizeof *n);
    n->in_dim = in_dim;
    const float *w2_raw;
    const ms_bind_row rows[] = {
        {"neck.0.weight", 4, {SAM_NECK_DIM, in_dim, 1, 1}, &n->w0},
        {"neck.1.weight", 1, {SAM_NECK_DIM}, &n->ln1_w},
        {"neck.1.bias", 1, {SAM_NECK_DIM}, &n->ln1_b},
        {"neck.2.weight", 4, {SAM_NECK_DIM, SAM_NECK_DIM, 3, 3}, &w2_raw},
        {"neck.3.weight", 1, {SAM_NECK_DIM}, &n->ln3_w},
        {"neck.3.bias", 1, {SAM_NECK_DIM}, &n->ln3_b},
    };
    medseg_status st = ms_bind_rows(ts, "image_encoder.", rows, (int)(sizeof rows / sizeof rows[0]), "image_encoder", err);
    if (st) return st;
    n->w2 = ms_malloc((size_t)SAM_NECK_DIM * SAM_NECK_DIM * 9 * sizeof(float), err, "neck weights");
    if (!n->w2) return MEDSEG_ERR_NOMEM;
    /* [OC, C, 3, 3] -> [OC, 3, 3, C], the layout of ms_conv2d_hwc */
    for (int o = 0; o < SAM_NECK_DIM; o++)
        for (int c = 0; c < SAM_NECK_DIM; c++)
            for (int t = 0; t < 9; t++)
                n->w2[((size_t)o * 9 + t) * SAM_NECK_DIM + c] = w2_raw[((size_t)o * SAM_NECK_DIM + c) * 9 + t];
    return MEDSEG_OK;
}

void sam_neck_release(sam_neck *n)
{
    free(n->w2);
    memset(n, 0, sizeof *n);
}

size_t sam_neck_scratch(int side, int n_threads)
{
    return ms_conv2d_hwc_scratch(side, SAM_NECK_DIM, 3, 3, SAM_NECK_ROWS, n_threads);
}

/* x [HW, D] -> out [D, HW], 16 channels per task */
typedef struct {
    const float *x;
    float *out;
    int HW, D;
} tr_ctx;

static void hwc_to_chw_task(void *vctx, int task, int thread)
{
    (void)thread;
    const tr_ctx *c = vctx;
    for (int i = 0; i < c->HW; i++)
        for (int k = 0; k < 16; k++) c->out[(size_t)(task * 16 + k) * c->HW + i] = c->x[(size_t)i * c->D + task * 16 + k];
}

void sam_neck_forward(const sam_neck *n, float *embedding, float *tmp, float *tmp2, float *scratch, const float *x,
                      int side, ms_pool *pool)
{
    const int HW = side * side, D = SAM_NECK_DIM;
    ms_linear(tmp, x, n->w0, NULL, HW, n->in_dim, D, pool);
    ms_layernorm(tmp, tmp, n->ln1_w, n->ln1_b, HW, D, NECK_LN2D_EPS, pool);
    ms_conv2d_hwc(tmp2, scratch, tmp, n->w2, NULL, side, side, D, D, 3, 3, 1, 1, SAM_NECK_ROWS, pool);
    ms_layernorm(tmp2, tmp2, n->ln3_w, n->ln3_b, HW, D, NECK_LN2D_EPS, pool);
    tr_ctx tc = {tmp2, embedding, HW, D};
    ms_pool_run(pool, D / 16, hwc_to_chw_task, &tc);
}
