/* SAM ViT image encoder (ImageEncoderViT). See vit.h.
 *
 * Layout: the residual stream x is [G*G, C] in image order (PyTorch's B,H,W,C with B = 1), so
 * every Linear is one GEMM over all tokens. Work split (one ms_pool; ms_sgemm single-threaded
 * inside the tasks, as in tiny_vit.c):
 *   - patch_embed: the 16x16 stride-16 convolution is a GEMM on the patch matrix [G*G, in*P*P]
 *     (column order (c, ky, kx) = the flattened PyTorch kernel), built by row tasks.
 *   - windowed blocks: norm1 writes the tokens in window order (each window's valid tokens
 *     contiguous, tiny_vit.c's trick), qkv and proj are whole-map GEMMs, one task per window.
 *     Padding tokens are zero after norm1 (window_partition pads after the norm), so their
 *     q, k, v are the qkv bias; they are keys of the softmax but never computed as queries.
 *   - global blocks: no [heads, N, N] map. One task per (head, block of VIT_QBLOCK queries):
 *     scores [QB, N] by one GEMM, the decomposed rel-pos bias added per row, softmax, times v.
 *   - decomposed rel-pos bias: for queries q (unscaled), Th = q @ rel_h^T [nq, 2S-1] and
 *     Tw = q @ rel_w^T [nq, 2S-1] by GEMM; bias(q, ky, kx) = Th[q, qy-ky+S-1] + Tw[q, qx-kx+S-1]
 *     (the same dot products as add_decomposed_rel_pos's einsums).
 *   - MLP: tiles of rows (one per thread, vit_mlp_tile): norm2, lin1, GELU, lin2 accumulated
 *     into the residual stream.
 *   - neck: 1x1 GEMM, LayerNorm2d (LayerNorm over channels per pixel), 3x3 conv, LayerNorm2d.
 *   - softmax: each score row gets its rel-pos bias, max and exp in one visit while it sits in L1
 *     (ms_bias_softmax_row); the 1/sum is applied to the hd outputs after the value product.
 *   - bf16 precision (kernels.h ms_precision_get, read per forward): qkv, proj and the MLP use
 *     bf16 copies of the weights made once per model (vit_prepare_bf16) and bf16 activations,
 *     f32 accumulation (oneDNN, bf16.c); global attention computes q k^T and p v in bf16 from a
 *     bf16 copy of qkv (q pre-scaled, as the official code scales q first), rel-pos bias and
 *     softmax in f32. Windowed attention (2.5% of the FLOPs) stays f32.
 *
 * ref: segment_anything/modeling/image_encoder.py @dca509f */
#include "models/vit.h"

#include "core/kernels.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define VIT_LN_EPS 1e-6f    /* build_sam: norm_layer=partial(torch.nn.LayerNorm, eps=1e-6) */
#define VIT_QBLOCK 256      /* queries per global-attention task */
#define VIT_MLP_TILE 2048   /* most token rows per fused MLP tile (vit_mlp_tile) */
#define VIT_MAX_C 8192      /* caps on sizes read from a file */
#define VIT_MAX_GRID 256
#define VIT_MAX_PATCH 64

/* ------------------------------------------------------------------ detection */

/* Hyper-parameters from names and shapes:
 *   embed_dim, grid   pos_embed [1, G, G, C]
 *   patch, in_chans   patch_embed.proj.weight [C, in, P, P]; img_size = G * P
 *   depth             number of consecutive blocks.N.attn.qkv.weight
 *   head_dim          rel_pos_h columns; heads = C / head_dim
 *   global blocks     rel_pos_h rows == 2G - 1 (Attention built with input_size = (G, G))
 *   window            the other blocks: rel_pos_h rows = 2 * window - 1, the same in all
 *   mlp_dim           mlp.lin1.weight rows */
medseg_status vit_detect(const ms_tensors *ts, vit_hparams *hp, medseg_error *err)
{
    char name[256];
    memset(hp, 0, sizeof *hp);
    const char *pn = "image_encoder.pos_embed";
    int G = ms_tensors_dim(ts, pn, 1, 4), C = ms_tensors_dim(ts, pn, 3, 4);
    if (G <= 0 || C <= 0 || ms_tensors_dim(ts, pn, 0, 4) != 1 || ms_tensors_dim(ts, pn, 2, 4) != G)
        return ms_error(err, MEDSEG_ERR_MODEL, "image_encoder: pos_embed is not [1, G, G, C]");
    if (G > VIT_MAX_GRID || C > VIT_MAX_C)
        return ms_error(err, MEDSEG_ERR_UNSUPPORTED, "image_encoder: pos_embed grid %d or width %d over the limits "
                        "(%d, %d)", G, C, VIT_MAX_GRID, VIT_MAX_C);
    const char *wn = "image_encoder.patch_embed.proj.weight";
    int P = ms_tensors_dim(ts, wn, 2, 4), in = ms_tensors_dim(ts, wn, 1, 4);
    if (ms_tensors_dim(ts, wn, 0, 4) != C || P <= 0 || ms_tensors_dim(ts, wn, 3, 4) != P || in <= 0 || in > 4 ||
        P > VIT_MAX_PATCH)
        return ms_error(err, MEDSEG_ERR_MODEL, "image_encoder: patch_embed.proj.weight is not [%d, in<=4, P, P] "
                        "(P <= %d)", C, VIT_MAX_PATCH);
    hp->embed_dim = C, hp->grid = G, hp->patch = P, hp->in_chans = in, hp->img_size = G * P;
    int depth = 0;
    for (;;) {
        snprintf(name, sizeof name, "image_encoder.blocks.%d.attn.qkv.weight", depth);
        if (!ms_tensors_find(ts, name)) break;
        if (++depth > VIT_MAX_DEPTH)
            return ms_error(err, MEDSEG_ERR_UNSUPPORTED, "image_encoder: more than %d ViT blocks", VIT_MAX_DEPTH);
    }
    if (depth == 0) return ms_error(err, MEDSEG_ERR_MODEL, "image_encoder: no blocks.0.attn.qkv.weight");
    hp->depth = depth;
    int hd = 0, window = 0, mlp = 0;
    for (int i = 0; i < depth; i++) {
        snprintf(name, sizeof name, "image_encoder.blocks.%d.attn.rel_pos_h", i);
        int rows = ms_tensors_dim(ts, name, 0, 2), cols = ms_tensors_dim(ts, name, 1, 2);
        if (rows <= 0 || cols <= 0 || C % cols)
            return ms_error(err, MEDSEG_ERR_MODEL, "image_encoder: %s missing or its head width does not divide %d "
                            "(only use_rel_pos=True ViTs are supported)", name, C);
        if (hd && cols != hd)
            return ms_error(err, MEDSEG_ERR_MODEL, "image_encoder: %s has head width %d, block 0 has %d", name, cols,
                            hd);
        hd = cols;
        if (rows == 2 * G - 1) {
            hp->global_idx[hp->n_global++] = i;
        } else {
            if (rows % 2 == 0 || rows > 2 * G - 1)
                return ms_error(err, MEDSEG_ERR_MODEL, "image_encoder: %s has %d rows: neither 2*window-1 nor "
                                "2*%d-1 (global)", name, rows, G);
            int ws = (rows + 1) / 2;
            if (window && ws != window)
                return ms_error(err, MEDSEG_ERR_UNSUPPORTED, "image_encoder: blocks differ in window size (%d, %d)",
                                window, ws);
            window = ws;
        }
        snprintf(name, sizeof name, "image_encoder.blocks.%d.mlp.lin1.weight", i);
        int m = ms_tensors_dim(ts, name, 0, 2);
        if (m <= 0 || m > 8 * VIT_MAX_C || (mlp && m != mlp))
            return ms_error(err, MEDSEG_ERR_MODEL, "image_encoder: %s missing or differs between blocks", name);
        mlp = m;
    }
    hp->heads = C / hd;
    hp->window = window;
    hp->mlp_dim = mlp;
    return MEDSEG_OK;
}

const char *vit_arch_name(const vit_hparams *hp)
{
    static const struct {
        const char *name;
        int C, depth, heads, g[4];
    } known[] = {/* build_sam.py: build_sam_vit_b / _l / _h */
                 {"vit_b_sam", 768, 12, 12, {2, 5, 8, 11}},
                 {"vit_l_sam", 1024, 24, 16, {5, 11, 17, 23}},
                 {"vit_h_sam", 1280, 32, 16, {7, 15, 23, 31}}};
    for (size_t k = 0; k < sizeof known / sizeof known[0]; k++) {
        int same = hp->embed_dim == known[k].C && hp->depth == known[k].depth && hp->heads == known[k].heads &&
                   hp->n_global == 4 && hp->window == 14 && hp->grid == 64 && hp->patch == 16;
        for (int i = 0; same && i < 4; i++) same = hp->global_idx[i] == known[k].g[i];
        if (same) return known[k].name;
    }
    return "vit_sam";
}

/* ------------------------------------------------------------------ bind */

// rel_pos [L, C] -> out [q_size, k_size, C]. ref: image_encoder.py get_rel_pos
void vit_get_rel_pos(float *out, const float *rel_pos, int L, int C, int q_size, int k_size)
{
    int M = 2 * (q_size > k_size ? q_size : k_size) - 1;
    double rq = fmax((double)k_size / q_size, 1.0), rk = fmax((double)q_size / k_size, 1.0);
    float fq = (float)rq, fk = (float)rk, off = (float)((k_size - 1) * rk);
    /* F.interpolate(mode="linear", align_corners=False) of the L rows to M rows, evaluated per
     * gathered row: src = max((i + 0.5) * L / M - 0.5, 0), lerp of rows floor(src) and the next */
    float scale = (float)L / (float)M;
    for (int i = 0; i < q_size; i++)
        for (int j = 0; j < k_size; j++) {
            long r = (long)((float)i * fq - (float)j * fk + off); /* .long() truncates; r >= 0 */
            if (r < 0) r = 0;
            if (r >= M) r = M - 1;
            float *o = out + ((size_t)i * k_size + j) * C;
            if (L == M) {
                memcpy(o, rel_pos + (size_t)r * C, (size_t)C * sizeof(float));
                continue;
            }
            float src = scale * ((float)r + 0.5f) - 0.5f;
            if (src < 0) src = 0;
            int i0 = (int)src, step = i0 < L - 1 ? 1 : 0;
            float l1 = src - (float)i0, l0 = 1.0f - l1;
            for (int c = 0; c < C; c++)
                o[c] = l0 * rel_pos[(size_t)i0 * C + c] + l1 * rel_pos[(size_t)(i0 + step) * C + c];
        }
}

void vit_release(vit_model *m)
{
    free(m->w16);
    for (int i = 0; i < VIT_MAX_DEPTH; i++) {
        free(m->blk[i].rel_h);
        free(m->blk[i].rel_w);
    }
    sam_neck_release(&m->neck);
    memset(m, 0, sizeof *m);
}

static pthread_mutex_t vit_bf16_mu = PTHREAD_MUTEX_INITIALIZER;

medseg_status vit_prepare_bf16(const vit_model *cm, medseg_error *err)
{
    /* the bf16 copies are a cache owned by the model: built once under the lock, then read-only */
    vit_model *m = (vit_model *)cm;
    medseg_status st = MEDSEG_OK;
    pthread_mutex_lock(&vit_bf16_mu);
    if (!m->w16) {
        const size_t C = (size_t)m->hp.embed_dim, mlp = (size_t)m->hp.mlp_dim;
        const size_t per = 3 * C * C + C * C + 2 * mlp * C;
        uint16_t *w = ms_malloc(per * (size_t)m->hp.depth * sizeof(uint16_t), err, "bf16 encoder weights");
        if (!w) {
            st = MEDSEG_ERR_NOMEM;
        } else {
            for (int i = 0; i < m->hp.depth; i++) {
                const vit_block *b = &m->blk[i];
                uint16_t *p = w + per * (size_t)i;
                vit_block16 *d = &m->blk16[i];
                ms_f32_to_bf16(p, b->qkv_w, 3 * C * C), d->qkv = p, p += 3 * C * C;
                ms_f32_to_bf16(p, b->proj_w, C * C), d->proj = p, p += C * C;
                ms_f32_to_bf16(p, b->lin1_w, mlp * C), d->lin1 = p, p += mlp * C;
                ms_f32_to_bf16(p, b->lin2_w, mlp * C), d->lin2 = p;
            }
            m->w16 = w;
        }
    }
    pthread_mutex_unlock(&vit_bf16_mu);
    return st;
}

double vit_flops(const vit_hparams *hp)
{
    const double G = hp->grid, N = G * G, C = hp->embed_dim, mlp = hp->mlp_dim, P = hp->patch;
    double f = 2 * N * C * (hp->in_chans * P * P); /* patch embedding */
    int gi = 0;
    for (int i = 0; i < hp->depth; i++) {
        int global = gi < hp->n_global && hp->global_idx[gi] == i;
        if (global) gi++;
        double S = global ? G : hp->window, keys = S * S;
        f += 2 * N * C * 3 * C + 2 * N * C * C + 2 * 2 * N * C * mlp; /* qkv, proj, lin1 + lin2 */
        f += 2 * 2 * N * keys * C;                                     /* q k^T and attn v, all heads */
        f += 2 * 2 * N * (2 * S - 1) * C;                              /* q rel_h^T, q rel_w^T */
    }
    f += 2 * N * C * SAM_NECK_DIM + 2 * N * SAM_NECK_DIM * SAM_NECK_DIM * 9; /* neck 1x1 and 3x3 */
    return f;
}

#define NSPEC(a) ((int)(sizeof(a) / sizeof((a)[0])))

/* get_rel_pos(size, size, raw) as a [2*size-1, hd] table indexed by offset + size - 1: row
 * (i, j) of the [size, size, hd] gather depends on i - j only, so the table is its first row
 * reversed plus its first column. */
static float *rel_table(const float *raw, int L, int hd, int size, medseg_error *err)
{
    int M = 2 * size - 1;
    float *full = ms_malloc((size_t)size * size * hd * sizeof(float), err, "relative position table");
    float *t = ms_malloc((size_t)M * hd * sizeof(float), err, "relative position table");
    if (!full || !t) {
        free(full), free(t);
        return NULL;
    }
    vit_get_rel_pos(full, raw, L, hd, size, size);
    for (int d = -(size - 1); d <= size - 1; d++) {
        int i = d > 0 ? d : 0, j = i - d; /* i - j = d */
        memcpy(t + (size_t)(d + size - 1) * hd, full + ((size_t)i * size + j) * hd, (size_t)hd * sizeof(float));
    }
    free(full);
    return t;
}

medseg_status vit_bind(vit_model *m, const vit_hparams *hp, const ms_tensors *ts, medseg_error *err)
{
    memset(m, 0, sizeof *m);
    m->hp = *hp;
    const int C = hp->embed_dim, G = hp->grid, P = hp->patch, hd = C / hp->heads, mlp = hp->mlp_dim;
    medseg_status st;
    char p[256];
    if (hp->depth <= 0 || hp->depth > VIT_MAX_DEPTH || hp->heads <= 0 || C % hp->heads)
        return ms_error(err, MEDSEG_ERR_MODEL, "image_encoder: bad ViT hyper-parameters");
    const ms_bind_row top[] = {
        {"patch_embed.proj.weight", 4, {C, hp->in_chans, P, P}, &m->pe_w},
        {"patch_embed.proj.bias", 1, {C}, &m->pe_b},
        {"pos_embed", 4, {1, G, G, C}, &m->pos_embed},
    };
    if ((st = ms_bind_rows(ts, "image_encoder.", top, NSPEC(top), "image_encoder", err))) goto fail;
    if ((st = sam_neck_bind(&m->neck, ts, C, err))) goto fail;
    int gi = 0;
    for (int i = 0; i < hp->depth; i++) {
        vit_block *b = &m->blk[i];
        int global = gi < hp->n_global && hp->global_idx[gi] == i;
        if (global) gi++;
        b->window = global ? 0 : hp->window;
        b->size = global ? G : hp->window;
        if (b->size <= 0) {
            st = ms_error(err, MEDSEG_ERR_MODEL, "image_encoder: block %d has no window size", i);
            goto fail;
        }
        const int L = 2 * b->size - 1;
        const float *rh, *rw;
        const ms_bind_row spec[] = {
            {"norm1.weight", 1, {C}, &b->norm1_w},
            {"norm1.bias", 1, {C}, &b->norm1_b},
            {"attn.qkv.weight", 2, {3 * C, C}, &b->qkv_w},
            {"attn.qkv.bias", 1, {3 * C}, &b->qkv_b},
            {"attn.proj.weight", 2, {C, C}, &b->proj_w},
            {"attn.proj.bias", 1, {C}, &b->proj_b},
            {"attn.rel_pos_h", 2, {L, hd}, &rh},
            {"attn.rel_pos_w", 2, {L, hd}, &rw},
            {"norm2.weight", 1, {C}, &b->norm2_w},
            {"norm2.bias", 1, {C}, &b->norm2_b},
            {"mlp.lin1.weight", 2, {mlp, C}, &b->lin1_w},
            {"mlp.lin1.bias", 1, {mlp}, &b->lin1_b},
            {"mlp.lin2.weight", 2, {C, mlp}, &b->lin2_w},
            {"mlp.lin2.bias", 1, {C}, &b->lin2_b},
        };
        snprintf(p, sizeof p, "image_encoder.blocks.%d.", i);
        if ((st = ms_bind_rows(ts, p, spec, NSPEC(spec), "image_encoder", err))) goto fail;
        b->rel_h = rel_table(rh, L, hd, b->size, err);
        b->rel_w = rel_table(rw, L, hd, b->size, err);
        if (!b->rel_h || !b->rel_w) {
            st = MEDSEG_ERR_NOMEM;
            goto fail;
        }
    }
    snprintf(p, sizeof p, "image_encoder.blocks.%d.attn.qkv.weight", hp->depth);
    if (ms_tensors_find(ts, p)) {
        st = ms_error(err, MEDSEG_ERR_MODEL, "image_encoder: more blocks than the detected %d", hp->depth);
        goto fail;
    }
    return MEDSEG_OK;
fail:
    vit_release(m);
    return st;
}

/* ------------------------------------------------------------------ state */

struct vit_state {
    const vit_model *model; /* the model the buffers were planned for */
    int n_threads;
    float *x;        /* [N, C] residual stream, image order */
    float *tn;       /* [N, C] norm1 output (window order for windowed blocks), then proj output */
    float *ao;       /* [N, C] attention output, heads side by side (same order as tn) */
    float *big;      /* [N, max(3C, in*P*P)]: qkv, or the patch matrix */
    float *scratch;  /* n_threads * per_thread */
    size_t per_thread;
    int mlp_tile;    /* token rows per MLP task (vit_mlp_tile) */
    /* bf16 precision only (untouched, so never resident, in f32): */
    uint16_t *qkv16;     /* [N, 3C]: scale * q, k, v of a global block */
    uint16_t *scratch16; /* n_threads * per_thread16: MLP tile inputs, attention probabilities */
    size_t per_thread16;
    int bf16;            /* precision of the running forward */
    const vit_model *m16; /* the model whose blk16 the forward uses */
    atomic_int failed;   /* a bf16 product failed inside a task */
};

int vit_state_fits(const vit_state *s, const vit_model *m, int n_threads)
{
    return s && s->model == m && s->n_threads >= n_threads;
}

static size_t max_sz(size_t a, size_t b)
{
    return a > b ? a : b;
}

/* Rows per MLP task: one tile per thread up to VIT_MLP_TILE rows (a single-threaded sgemm runs
 * ~5% faster on 2048 rows than on 256; bench/README.md), at least 256 so that many threads
 * still get large products, never more than the N tokens. */
static int vit_mlp_tile(int N, int n_threads)
{
    int t = (N + n_threads - 1) / n_threads;
    t = t < 256 ? 256 : t > VIT_MLP_TILE ? VIT_MLP_TILE : t;
    return t < N ? t : N;
}

/* floats of one attention task's scratch: scores [nq, nk], Th/Tw [nq, 2S-1], reversed Tw row,
 * 1/sum per query */
static size_t attn_floats(size_t nq, int S)
{
    return nq * (size_t)S * S + 2 * nq * (size_t)(2 * S - 1) + (size_t)S + nq;
}

vit_state *vit_state_create(const vit_model *m, int n_threads, medseg_error *err)
{
    if (n_threads < 1) n_threads = 1;
    vit_state *s = ms_calloc(1, sizeof *s, err, "encoder state");
    if (!s) return NULL;
    s->n_threads = n_threads;
    s->model = m;
    const vit_hparams *hp = &m->hp;
    const size_t N = (size_t)hp->grid * hp->grid, C = (size_t)hp->embed_dim;
    s->mlp_tile = vit_mlp_tile((int)N, n_threads);
    size_t pt = (size_t)s->mlp_tile * (C + (size_t)hp->mlp_dim + C);
    if (hp->window > 0) {
        size_t nw = (size_t)hp->window * hp->window;
        pt = max_sz(pt, nw * 3 * C + attn_floats(nw, hp->window));
    }
    if (hp->n_global > 0) pt = max_sz(pt, attn_floats(VIT_QBLOCK, hp->grid));
    pt = max_sz(pt, sam_neck_scratch(hp->grid, 1));
    pt = (pt + 15) & ~(size_t)15; /* keep every thread's scratch 64-byte aligned */
    s->per_thread = pt;
    size_t act = N * max_sz(C, SAM_NECK_DIM);
    size_t big = N * max_sz(3 * C, (size_t)hp->in_chans * hp->patch * hp->patch);
    s->x = ms_alloc_aligned(act * sizeof(float), err, "encoder activations");
    s->tn = ms_alloc_aligned(act * sizeof(float), err, "encoder activations");
    s->ao = ms_alloc_aligned(act * sizeof(float), err, "encoder activations");
    s->big = ms_alloc_aligned(big * sizeof(float), err, "encoder qkv");
    s->scratch = ms_alloc_aligned(pt * (size_t)n_threads * sizeof(float), err, "encoder scratch");
    size_t pt16 = (size_t)s->mlp_tile * (C + (size_t)hp->mlp_dim);
    if (hp->n_global > 0) pt16 = max_sz(pt16, (size_t)VIT_QBLOCK * N);
    s->per_thread16 = (pt16 + 31) & ~(size_t)31;
    s->scratch16 = ms_alloc_aligned(s->per_thread16 * (size_t)n_threads * sizeof(uint16_t), err, "encoder scratch");
    s->qkv16 = ms_alloc_aligned(N * 3 * C * sizeof(uint16_t), err, "encoder qkv");
    if (!s->x || !s->tn || !s->ao || !s->big || !s->scratch || !s->scratch16 || !s->qkv16) {
        vit_state_free(s);
        return NULL;
    }
    return s;
}

void vit_state_free(vit_state *s)
{
    if (!s) return;
    free(s->x);
    free(s->tn);
    free(s->ao);
    free(s->big);
    free(s->scratch);
    free(s->scratch16);
    free(s->qkv16);
    free(s);
}

/* ------------------------------------------------------------------ layers */

/* The patch matrix of one row of patches: in [ic, S, S] (CHW) -> rows [gy*G, (gy+1)*G) of
 * patches [G*G, ic*P*P], column order (c, ky, kx) = PyTorch's Conv2d weight flattening. */
typedef struct {
    const float *in;
    float *patches;
    int ic, S, G, P;
} patch_ctx;

static void patch_task(void *vctx, int gy, int thread)
{
    (void)thread;
    const patch_ctx *c = vctx;
    const int P = c->P, K = c->ic * P * P;
    for (int gx = 0; gx < c->G; gx++) {
        float *row = c->patches + ((size_t)gy * c->G + gx) * K;
        for (int ch = 0; ch < c->ic; ch++)
            for (int ky = 0; ky < P; ky++)
                memcpy(row + ((size_t)ch * P + ky) * P,
                       c->in + ((size_t)ch * c->S + (size_t)gy * P + ky) * c->S + (size_t)gx * P,
                       (size_t)P * sizeof(float));
    }
}

// in [ic, S, S] -> out [G*G, C] (BHWC, before + pos_embed); patches: [G*G, ic*P*P] scratch.
// ref: image_encoder.py PatchEmbed.forward (Conv2d kernel P stride P, permute to B,H,W,C)
static void vit_patch_embed(float *out, float *patches, const float *in, const float *w, const float *b, int ic,
                            int S, int G, int P, int C, ms_pool *pool)
{
    patch_ctx pc = {in, patches, ic, S, G, P};
    ms_pool_run(pool, G, patch_task, &pc);
    ms_linear(out, patches, w, b, G * G, ic * P * P, C, pool);
}

/* Attention of nq queries over a S x S grid of keys, one head, with the decomposed relative
 * position bias: out = softmax(scale * q k^T + rel_h + rel_w) v.
 * q [nq, hd] (row stride ldq; query r sits at grid (qy, qx) = ((q0 + r) / qw, (q0 + r) % qw)),
 * k, v [S*S, hd] (row stride ldk), rel_h, rel_w [2S-1, hd] -> out [nq, hd] (row stride ldo).
 * scr: attn_floats(nq, S) floats. Each score row gets its bias, max and exp in one visit while
 * it is in L1 (vit_bias_exp_row); the 1/sum of the softmax is applied to the hd outputs of the
 * row after the value product instead of to its S*S probabilities.
 * ref: image_encoder.py Attention.forward and add_decomposed_rel_pos */
static void vit_rel_attention(float *out, int ldo, const float *q, int ldq, int q0, int qw, const float *k,
                              const float *v, int ldk, const float *rel_h, const float *rel_w, int nq, int S, int hd,
                              float scale, float *scr)
{
    const int nk = S * S, M = 2 * S - 1;
    float *A = scr, *Th = A + (size_t)nq * nk, *Tw = Th + (size_t)nq * M, *twr = Tw + (size_t)nq * M;
    float *inv = twr + S;
    ms_sgemm(0, 1, nq, nk, hd, scale, q, ldq, k, ldk, 0.0f, A, nk);
    ms_sgemm(0, 1, nq, M, hd, 1.0f, q, ldq, rel_h, hd, 0.0f, Th, M);
    ms_sgemm(0, 1, nq, M, hd, 1.0f, q, ldq, rel_w, hd, 0.0f, Tw, M);
    for (int r = 0; r < nq; r++) {
        const int qy = (q0 + r) / qw, qx = (q0 + r) % qw;
        inv[r] = ms_bias_softmax_row(A + (size_t)r * nk, Th + (size_t)r * M + qy + S - 1,
                                     Tw + (size_t)r * M + qx + S - 1, S, twr);
    }
    ms_sgemm(0, 0, nq, hd, nk, 1.0f, A, nk, v, ldk, 0.0f, out, ldo);
    for (int r = 0; r < nq; r++) {
        float *o = out + (size_t)r * ldo;
        for (int d = 0; d < hd; d++) o[d] *= inv[r];
    }
}

/* Window order: the valid tokens of window (wy, wx) (windows row-major, tokens row-major inside)
 * are rows [win_offset, win_offset + hv*wv) of a [G*G, C] buffer; hv is the window's valid height. */
static size_t win_offset(int wy, int wx, int ws, int W, int hv)
{
    return (size_t)wy * ws * W + (size_t)wx * ws * hv;
}

typedef struct {
    const vit_block *b;
    const float *in;
    float *out;
    int G, C, ws, nW, add; /* add: out (image order) += in (window order); else norm1 into window order */
} perm_ctx;

/* One row of windows: norm1 from image order into window order, or the residual add back. */
static void perm_task(void *vctx, int wy, int thread)
{
    (void)thread;
    const perm_ctx *c = vctx;
    const int ws = c->ws, C = c->C, G = c->G, y0 = wy * ws, hv = G - y0 < ws ? G - y0 : ws;
    for (int wx = 0; wx < c->nW; wx++) {
        int x0 = wx * ws, wv = G - x0 < ws ? G - x0 : ws;
        size_t off = win_offset(wy, wx, ws, G, hv);
        for (int i = 0; i < hv; i++) {
            size_t img = (size_t)(y0 + i) * G + x0, win = off + (size_t)i * wv;
            if (c->add)
                ms_add(c->out + img * C, c->out + img * C, c->in + win * C, (size_t)wv * C);
            else
                ms_layernorm(c->out + win * C, c->in + img * C, c->b->norm1_w, c->b->norm1_b, wv, C, VIT_LN_EPS, NULL);
        }
    }
}

typedef struct {
    const vit_block *b;
    const float *qkv; /* [N, 3C] */
    float *out;       /* [N, C] */
    int G, C, heads, nW, nqb;
    float scale;
    const vit_state *s;
} attn_ctx;

/* One window, all heads: the window's valid tokens are queries; keys and values are the full
 * ws x ws padded window (padding tokens: q, k, v = qkv bias).
 * qkv [N, 3C] window order -> out rows of this window [nv, C] (window order, heads side by side).
 * ref: image_encoder.py Block.forward (window_partition, window_unpartition), Attention.forward */
static void window_task(void *vctx, int task, int thread)
{
    const attn_ctx *c = vctx;
    const vit_block *b = c->b;
    const int C = c->C, C3 = 3 * C, ws = b->window, N = ws * ws, hd = C / c->heads;
    const int wy = task / c->nW, wx = task % c->nW, y0 = wy * ws, x0 = wx * ws;
    const int hv = c->G - y0 < ws ? c->G - y0 : ws, wv = c->G - x0 < ws ? c->G - x0 : ws, nv = hv * wv;
    const size_t off = win_offset(wy, wx, ws, c->G, hv);
    const float *q = c->qkv + off * C3, *kv = q;
    float *scr = c->s->scratch + (size_t)thread * c->s->per_thread;
    float *att = scr;
    if (nv < N) { /* padded window: gather valid rows, bias rows for the padding */
        float *kvw = scr;
        att = scr + (size_t)N * C3;
        for (int i = 0; i < ws; i++)
            for (int j = 0; j < ws; j++)
                memcpy(kvw + (size_t)(i * ws + j) * C3, (i < hv && j < wv) ? q + (size_t)(i * wv + j) * C3 : b->qkv_b,
                       (size_t)C3 * sizeof(float));
        kv = kvw;
    }
    for (int h = 0; h < c->heads; h++)
        vit_rel_attention(c->out + off * C + (size_t)h * hd, C, q + (size_t)h * hd, C3, 0, wv,
                          kv + C + (size_t)h * hd, kv + 2 * C + (size_t)h * hd, C3, b->rel_h, b->rel_w, nv, ws, hd,
                          c->scale, att);
}

/* One (head, block of VIT_QBLOCK queries) of global attention over all G*G tokens.
 * qkv [N, 3C] image order -> out rows [q0, q0 + nq), columns of head h [nq, hd].
 * ref: image_encoder.py Attention.forward (window_size 0: input_size = (G, G)) */
static void global_task(void *vctx, int task, int thread)
{
    const attn_ctx *c = vctx;
    const vit_block *b = c->b;
    const int C = c->C, C3 = 3 * C, G = c->G, N = G * G, hd = C / c->heads;
    const int h = task / c->nqb, q0 = (task % c->nqb) * VIT_QBLOCK;
    const int nq = N - q0 < VIT_QBLOCK ? N - q0 : VIT_QBLOCK;
    float *scr = c->s->scratch + (size_t)thread * c->s->per_thread;
    vit_rel_attention(c->out + (size_t)q0 * C + (size_t)h * hd, C, c->qkv + (size_t)q0 * C3 + (size_t)h * hd, C3, q0,
                      G, c->qkv + C + (size_t)h * hd, c->qkv + 2 * C + (size_t)h * hd, C3, b->rel_h, b->rel_w, nq, G,
                      hd, c->scale, scr);
}

/* bf16 copy of a global block's qkv [N, 3C] with q pre-multiplied by the softmax scale (the
 * official code scales q before q @ k^T too), one task per VIT_QBLOCK rows. */
static void qkv16_task(void *vctx, int task, int thread)
{
    (void)thread;
    const attn_ctx *c = vctx;
    const int C = c->C, C3 = 3 * C, N = c->G * c->G, r0 = task * VIT_QBLOCK;
    const int r1 = r0 + VIT_QBLOCK < N ? r0 + VIT_QBLOCK : N;
    float q[VIT_MAX_C];
    for (int r = r0; r < r1; r++) {
        const float *src = c->qkv + (size_t)r * C3;
        uint16_t *dst = c->s->qkv16 + (size_t)r * C3;
        for (int i = 0; i < C; i++) q[i] = src[i] * c->scale;
        ms_f32_to_bf16(dst, q, (size_t)C);
        ms_f32_to_bf16(dst + C, src + C, 2 * (size_t)C);
    }
}

/* global_task in bf16: scores and the value product by oneDNN bf16 matmuls (f32 accumulation),
 * rel-pos bias (from the f32 q) and softmax in f32, probabilities rounded to bf16. */
static void global_task16(void *vctx, int task, int thread)
{
    const attn_ctx *c = vctx;
    vit_state *s = (vit_state *)c->s;
    const vit_block *b = c->b;
    const int C = c->C, C3 = 3 * C, G = c->G, N = G * G, hd = C / c->heads, M = 2 * G - 1;
    const int h = task / c->nqb, q0 = (task % c->nqb) * VIT_QBLOCK;
    const int nq = N - q0 < VIT_QBLOCK ? N - q0 : VIT_QBLOCK;
    float *A = s->scratch + (size_t)thread * s->per_thread, *Th = A + (size_t)nq * N, *Tw = Th + (size_t)nq * M;
    float *twr = Tw + (size_t)nq * M, *inv = twr + G;
    uint16_t *P = s->scratch16 + (size_t)thread * s->per_thread16;
    const uint16_t *q16 = s->qkv16 + (size_t)q0 * C3 + (size_t)h * hd, *k16 = s->qkv16 + C + (size_t)h * hd;
    const float *q = c->qkv + (size_t)q0 * C3 + (size_t)h * hd;
    float *out = c->out + (size_t)q0 * C + (size_t)h * hd;
    if (ms_gemm_bf16(A, N, q16, C3, k16, C3, 1, NULL, nq, N, hd, NULL)) {
        atomic_store(&s->failed, 1);
        return;
    }
    ms_sgemm(0, 1, nq, M, hd, 1.0f, q, C3, b->rel_h, hd, 0.0f, Th, M);
    ms_sgemm(0, 1, nq, M, hd, 1.0f, q, C3, b->rel_w, hd, 0.0f, Tw, M);
    for (int r = 0; r < nq; r++) {
        const int qy = (q0 + r) / G, qx = (q0 + r) % G;
        float *row = A + (size_t)r * N;
        inv[r] = ms_bias_softmax_row(row, Th + (size_t)r * M + qy + G - 1, Tw + (size_t)r * M + qx + G - 1, G, twr);
        ms_f32_to_bf16(P + (size_t)r * N, row, (size_t)N);
    }
    if (ms_gemm_bf16(out, C, P, N, s->qkv16 + 2 * C + (size_t)h * hd, C3, 0, NULL, nq, hd, N, NULL)) {
        atomic_store(&s->failed, 1);
        return;
    }
    for (int r = 0; r < nq; r++)
        for (int d = 0; d < hd; d++) out[(size_t)r * C + d] *= inv[r];
}

/* MLP on a tile of rows, residual included: x += lin2(GELU(lin1(norm2(x)))).
 * ref: image_encoder.py Block.forward (x + mlp(norm2(x))), common.py MLPBlock */
typedef struct {
    const vit_block *b;
    float *x;
    int N, C, mlp;
    const vit_state *s;
    const vit_block16 *b16; /* bf16 weights, or NULL for f32 */
} mlp_ctx;

static void mlp_task(void *vctx, int task, int thread)
{
    const mlp_ctx *c = vctx;
    const int tile = c->s->mlp_tile;
    int r0 = task * tile, r1 = r0 + tile > c->N ? c->N : r0 + tile, n = r1 - r0;
    if (n <= 0) return;
    float *t = c->s->scratch + (size_t)thread * c->s->per_thread;
    float *hbuf = t + (size_t)tile * c->C, *y = hbuf + (size_t)tile * c->mlp;
    float *x = c->x + (size_t)r0 * c->C;
    ms_layernorm(t, x, c->b->norm2_w, c->b->norm2_b, n, c->C, VIT_LN_EPS, NULL);
    if (c->b16) { /* bf16: inputs rounded, f32 accumulation and outputs */
        vit_state *s = (vit_state *)c->s;
        uint16_t *t16 = s->scratch16 + (size_t)thread * s->per_thread16, *h16 = t16 + (size_t)tile * c->C;
        ms_f32_to_bf16(t16, t, (size_t)n * c->C);
        int bad = ms_gemm_bf16(hbuf, c->mlp, t16, c->C, c->b16->lin1, c->C, 1, c->b->lin1_b, n, c->mlp, c->C, NULL);
        ms_gelu(hbuf, (size_t)n * c->mlp, NULL);
        ms_f32_to_bf16(h16, hbuf, (size_t)n * c->mlp);
        bad |= ms_gemm_bf16(y, c->C, h16, c->mlp, c->b16->lin2, c->mlp, 1, c->b->lin2_b, n, c->C, c->mlp, NULL);
        if (bad) atomic_store(&s->failed, 1);
        ms_add(x, x, y, (size_t)n * c->C);
    } else { /* lin2 accumulates straight into x (bias added first): no [n, C] temporary */
        ms_linear(hbuf, t, c->b->lin1_w, c->b->lin1_b, n, c->C, c->mlp, NULL);
        ms_gelu(hbuf, (size_t)n * c->mlp, NULL);
        for (int r = 0; r < n; r++) ms_add(x + (size_t)r * c->C, x + (size_t)r * c->C, c->b->lin2_b, (size_t)c->C);
        ms_sgemm(0, 1, n, c->C, c->mlp, 1.0f, hbuf, c->mlp, c->b->lin2_w, c->mlp, 1.0f, x, c->C);
    }
}

// x [G*G, C] -> x (in place): x = x + proj(attn(norm1(x))); x = x + mlp(norm2(x)).
// ref: image_encoder.py Block.forward
/* The block's all-token linears: f32 (ms_linear) or bf16 with the pre-converted weights. */
static void vit_linear(vit_state *s, float *out, const float *in, const float *w, const uint16_t *w16,
                       const float *bias, int N, int IC, int OC, ms_pool *pool)
{
    if (s->bf16) {
        if (ms_linear_bf16(out, in, w16, bias, N, IC, OC, pool, NULL)) atomic_store(&s->failed, 1);
    } else {
        ms_linear(out, in, w, bias, N, IC, OC, pool);
    }
}

static void vit_block_forward(const vit_block *b, const vit_block16 *b16, const vit_hparams *hp, float *x,
                              vit_state *s, ms_pool *pool, vit_timing *tm)
{
    const int G = hp->grid, N = G * G, C = hp->embed_dim, hd = C / hp->heads;
    const float scale = (float)(1.0 / sqrt((double)hd)); /* head_dim ** -0.5 */
    double t = ms_now_ms(), t1;
    attn_ctx ac = {b, s->big, s->ao, G, C, hp->heads, 0, 0, scale, s};
    if (b->window > 0) {
        const int ws = b->window, nW = (G + ws - 1) / ws;
        perm_ctx ln = {b, x, s->tn, G, C, ws, nW, 0};
        ms_pool_run(pool, nW, perm_task, &ln);
        vit_linear(s, s->big, s->tn, b->qkv_w, b16 ? b16->qkv : NULL, b->qkv_b, N, C, 3 * C, pool);
        t1 = ms_now_ms(), tm->qkv += t1 - t, t = t1;
        ac.nW = nW;
        ms_pool_run(pool, nW * nW, window_task, &ac);
        t1 = ms_now_ms(), tm->attn_window += t1 - t, t = t1;
        vit_linear(s, s->tn, s->ao, b->proj_w, b16 ? b16->proj : NULL, b->proj_b, N, C, C, pool);
        perm_ctx res = {b, s->tn, x, G, C, ws, nW, 1};
        ms_pool_run(pool, nW, perm_task, &res);
    } else {
        ms_layernorm(s->tn, x, b->norm1_w, b->norm1_b, N, C, VIT_LN_EPS, pool);
        vit_linear(s, s->big, s->tn, b->qkv_w, b16 ? b16->qkv : NULL, b->qkv_b, N, C, 3 * C, pool);
        t1 = ms_now_ms(), tm->qkv += t1 - t, t = t1;
        ac.nqb = (N + VIT_QBLOCK - 1) / VIT_QBLOCK;
        if (s->bf16) {
            ms_pool_run(pool, ac.nqb, qkv16_task, &ac);
            ms_pool_run(pool, hp->heads * ac.nqb, global_task16, &ac);
        } else {
            ms_pool_run(pool, hp->heads * ac.nqb, global_task, &ac);
        }
        t1 = ms_now_ms(), tm->attn_global += t1 - t, t = t1;
        vit_linear(s, s->tn, s->ao, b->proj_w, b16 ? b16->proj : NULL, b->proj_b, N, C, C, pool);
        ms_add(x, x, s->tn, (size_t)N * C);
    }
    t1 = ms_now_ms(), tm->proj += t1 - t, t = t1;
    mlp_ctx mc = {b, x, N, C, hp->mlp_dim, s, s->bf16 ? b16 : NULL};
    ms_pool_run(pool, (N + s->mlp_tile - 1) / s->mlp_tile, mlp_task, &mc);
    tm->mlp += ms_now_ms() - t;
}

medseg_status vit_forward(const vit_model *m, vit_state *s, ms_pool *pool, const float *input, float *embedding,
                          vit_probe_fn probe, void *probe_user, vit_timing *timing, medseg_error *err)
{
    if (!m || !s || !input || !embedding) return ms_error(err, MEDSEG_ERR_ARG, "image_encoder: NULL argument");
    if (s->model != m)
        return ms_error(err, MEDSEG_ERR_ARG, "image_encoder: scratch state was planned for another model");
    if (ms_pool_size(pool) > s->n_threads)
        return ms_error(err, MEDSEG_ERR_ARG, "image_encoder: state planned for %d threads, pool has %d",
                        s->n_threads, ms_pool_size(pool));
    ms_kernels_init();
    medseg_status st;
    s->bf16 = ms_precision_get() == MS_PRECISION_BF16;
    if (s->bf16 && (st = vit_prepare_bf16(m, err))) return st;
    atomic_store(&s->failed, 0);
    const vit_hparams *hp = &m->hp;
    const int G = hp->grid, N = G * G, C = hp->embed_dim;
    const int64_t shape[4] = {1, G, G, C};
    vit_timing tm;
    memset(&tm, 0, sizeof tm);
    double t0 = ms_now_ms(), t = t0;

    vit_patch_embed(s->x, s->big, input, m->pe_w, m->pe_b, hp->in_chans, hp->img_size, G, hp->patch, C, pool);
    if (probe) probe(probe_user, "patch_embed", s->x, 4, shape);
    ms_add(s->x, s->x, m->pos_embed, (size_t)N * C); /* x + pos_embed */
    tm.patch_embed = ms_now_ms() - t;

    for (int i = 0; i < hp->depth; i++) {
        t = ms_now_ms();
        vit_block_forward(&m->blk[i], s->bf16 ? &m->blk16[i] : NULL, hp, s->x, s, pool, &tm);
        if (probe) {
            char stage[32];
            snprintf(stage, sizeof stage, "blocks.%d", i);
            probe(probe_user, stage, s->x, 4, shape);
        }
        tm.blocks[i] = ms_now_ms() - t;
    }

    t = ms_now_ms();
    sam_neck_forward(&m->neck, embedding, s->tn, s->ao, s->scratch, s->x, hp->grid, pool);
    tm.neck = ms_now_ms() - t;
    tm.total = ms_now_ms() - t0;
    if (timing) *timing = tm;
    if (atomic_load(&s->failed))
        return ms_error(err, MEDSEG_ERR_INTERNAL, "image_encoder: a bf16 matrix product failed (oneDNN)");
    return MEDSEG_OK;
}
