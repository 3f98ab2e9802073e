/* TinyViT image encoder (MobileSAM vit_t). See tiny_vit.h.
 *
 * Layout: every activation is channel-last, [H*W, C] row-major (PyTorch's B,L,C with B = 1), so
 * 1x1 convolutions and linears are single GEMMs, and the depthwise convolutions run vectorised
 * over channels. Only the input (CHW) and the embedding (CHW) are converted.
 *
 * Work split (all through one ms_pool; OpenBLAS runs single-threaded inside the tasks):
 *   - patch_embed: two im2col + GEMM convolutions, chunked by output rows.
 *   - MBConv and PatchMerging: "pointwise -> depthwise -> pointwise" fused per band of output
 *     rows, so the 4x-wide hidden map never leaves the cache; each task walks a contiguous chunk
 *     of rows band by band, keeping the overlapping hidden rows (only the chunk edges recompute).
 *   - TinyViTBlock attention: LayerNorm writes the tokens in window order (each window's valid
 *     tokens contiguous), so qkv and proj are whole-map GEMMs and a full window's q/k/v is one
 *     contiguous block; padding tokens are never computed (a zero token's LayerNorm is the norm
 *     bias, so its qkv is a constant row). One task per window for softmax(q k^T * scale + bias)
 *     v of the valid queries; the residual add scatters back to image order.
 *   - local_conv: depthwise 3x3 over the whole map (row chunks).
 *   - Mlp: tiles of rows: LayerNorm, fc1, GELU, fc2, residual add.
 *   - neck: 1x1 GEMM, LayerNorm2d (= LayerNorm over channels per pixel), 3x3 conv, LayerNorm2d.
 *
 * ref: mobile_sam/modeling/tiny_vit_sam.py @34bbbfd */
#include "models/tiny_vit.h"

#include "core/kernels.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define TV_BN_EPS 1e-5       /* torch.nn.BatchNorm2d default */
#define TV_LN_EPS 1e-5f      /* torch.nn.LayerNorm default (Attention.norm, Mlp.norm) */
#define TV_BAND_ROWS 4       /* output rows per fused MBConv / PatchMerging band */
#define TV_PDP_TASKS_PER_THREAD 4 /* contiguous row chunks per thread (halo recomputed per chunk) */
#define TV_MLP_TILE 256       /* token rows per fused Mlp tile */
#define TV_PE_ROWS 4         /* output rows per im2col chunk of the patch_embed convs */

/* ------------------------------------------------------------------ binding */

#define NSPEC(a) ((int)(sizeof(a) / sizeof((a)[0])))

static void conv_release(tv_conv *c)
{
    free(c->w);
    free(c->b);
    c->w = c->b = NULL;
}

/* Conv2d_BN (conv without bias + BatchNorm2d, eval) folded into one conv with bias:
 * s = gamma / sqrt(var + eps), w' = w * s, b' = beta - mean * s (float64, stored float32).
 * Layout of w': groups == 1 && k == 1: [oc, ic]; groups == oc (depthwise 3x3): [3, 3, oc];
 * groups == 1 && k == 3: [oc, 3, 3, ic]. ref: tiny_vit_sam.py Conv2d_BN.fuse */
static medseg_status bind_conv_bn(tv_conv *c, const ms_tensors *ts, const char *prefix, int ic, int oc, int k,
                                  int stride, int groups, medseg_error *err)
{
    const float *w, *g, *beta, *mean, *var;
    int icg = ic / groups;
    const ms_bind_row spec[] = {
        {".c.weight", 4, {oc, icg, k, k}, &w},
        {".bn.weight", 1, {oc}, &g},
        {".bn.bias", 1, {oc}, &beta},
        {".bn.running_mean", 1, {oc}, &mean},
        {".bn.running_var", 1, {oc}, &var},
    };
    medseg_status st = ms_bind_rows(ts, prefix, spec, NSPEC(spec), "image_encoder", err);
    if (st != MEDSEG_OK) return st;
    size_t per = (size_t)icg * k * k;
    c->w = ms_malloc((size_t)oc * per * sizeof(float), err, "folded conv weights");
    c->b = ms_malloc((size_t)oc * sizeof(float), err, "folded conv bias");
    if (!c->w || !c->b) {
        conv_release(c);
        return MEDSEG_ERR_NOMEM;
    }
    c->oc = oc, c->ic = ic, c->k = k, c->stride = stride, c->groups = groups;
    for (int o = 0; o < oc; o++) {
        double s = (double)g[o] / sqrt((double)var[o] + TV_BN_EPS);
        c->b[o] = (float)((double)beta[o] - (double)mean[o] * s);
        for (int i = 0; i < icg; i++)
            for (int t = 0; t < k * k; t++) {
                float v = (float)((double)w[((size_t)o * icg + i) * k * k + t] * s);
                if (groups == 1)
                    c->w[((size_t)o * k * k + t) * icg + i] = v; /* [oc, k, k, ic] */
                else
                    c->w[(size_t)t * oc + o] = v; /* depthwise: [k, k, oc] */
            }
    }
    return MEDSEG_OK;
}

/* attention_biases[:, attention_bias_idxs] for a ws x ws window: offsets (|dy|, |dx|) numbered
 * in order of first appearance over points in row-major order, pairs (p1, p2) row-major.
 * ref: tiny_vit_sam.py Attention.__init__ */
static medseg_status build_bias_table(tv_block *b, int heads, int ws, medseg_error *err)
{
    int N = ws * ws;
    int *id = malloc((size_t)N * sizeof(int)); /* offset (dy*ws + dx) -> index */
    int *idx = malloc((size_t)N * N * sizeof(int));
    b->bias_table = ms_malloc((size_t)heads * N * N * sizeof(float), err, "attention bias table");
    if (!id || !idx || !b->bias_table) {
        free(id), free(idx), free(b->bias_table);
        b->bias_table = NULL;
        return ms_error(err, MEDSEG_ERR_NOMEM, "image_encoder: out of memory for attention bias table");
    }
    for (int i = 0; i < N; i++) id[i] = -1;
    int next = 0;
    for (int p1 = 0; p1 < N; p1++)
        for (int p2 = 0; p2 < N; p2++) {
            int dy = abs(p1 / ws - p2 / ws), dx = abs(p1 % ws - p2 % ws);
            int o = dy * ws + dx;
            if (id[o] < 0) id[o] = next++;
            idx[p1 * N + p2] = id[o];
        }
    for (int h = 0; h < heads; h++)
        for (int i = 0; i < N * N; i++) b->bias_table[(size_t)h * N * N + i] = b->biases[(size_t)h * N + idx[i]];
    free(id);
    free(idx);
    return MEDSEG_OK;
}

/* ------------------------------------------------------------------ detection */

/* MobileSAM's PatchMerging: stride 1 when out_dim is 320, 448 or 576, else 2.
 * ref: tiny_vit_sam.py PatchMerging.__init__ */
static int merge_stride(int out_dim)
{
    return (out_dim == 320 || out_dim == 448 || out_dim == 576) ? 1 : 2;
}

/* Hyper-parameters from names and shapes:
 *   embed_dims[0]  patch_embed.seq.2.c.weight rows; embed_dims[i>0] attn.qkv.weight columns
 *   depths[i]      number of consecutive layers.i.blocks.j present
 *   num_heads[i]   attention_biases rows
 *   window_sizes   attention_biases columns = number of distinct (|dy|, |dx|) offsets of a
 *                  ws x ws window = ws^2, so ws = sqrt(columns) (unambiguous)
 *   mlp_ratio      mlp.fc1.weight rows / dim; mbconv ratio conv1 rows / dim */
medseg_status tiny_vit_detect(const ms_tensors *ts, tiny_vit_hparams *hp, medseg_error *err)
{
    char name[256];
    memset(hp, 0, sizeof *hp);
    int d0 = ms_tensors_dim(ts, "image_encoder.patch_embed.seq.2.c.weight", 0, 4);
    if (d0 <= 0)
        return ms_error(err, MEDSEG_ERR_MODEL, "image_encoder: no patch_embed.seq.2.c.weight [C0, C0/2, k, k]");
    /* MobileSAM: two 3x3 stride-2 convs; LiteMedSAM: two 1x1 stride-1 convs (its PatchEmbed,
     * bowang-lab/MedSAM@b0fab47 branch LiteMedSAM, tiny_vit_sam.py). Both convs must agree. */
    int k0 = ms_tensors_dim(ts, "image_encoder.patch_embed.seq.0.c.weight", 2, 4);
    int k2 = ms_tensors_dim(ts, "image_encoder.patch_embed.seq.2.c.weight", 2, 4);
    if ((k0 != 3 && k0 != 1) || k2 != k0 ||
        ms_tensors_dim(ts, "image_encoder.patch_embed.seq.0.c.weight", 3, 4) != k0 ||
        ms_tensors_dim(ts, "image_encoder.patch_embed.seq.2.c.weight", 3, 4) != k0)
        return ms_error(err, MEDSEG_ERR_MODEL, "image_encoder: patch_embed.seq.0/2 kernels are %dx? and %dx? "
                        "(3x3 for MobileSAM, 1x1 for LiteMedSAM expected)", k0, k2);
    hp->pe_k = k0;
    int n = 0;
    for (;;) {
        snprintf(name, sizeof name, "image_encoder.layers.%d.blocks.0.", n);
        char key[300];
        snprintf(key, sizeof key, "%s%s", name, n == 0 ? "conv1.c.weight" : "attn.qkv.weight");
        if (!ms_tensors_find(ts, key)) break;
        if (n == TV_MAX_LAYERS)
            return ms_error(err, MEDSEG_ERR_UNSUPPORTED, "image_encoder: more than %d TinyViT layers", TV_MAX_LAYERS);
        n++;
    }
    if (n != TV_MAX_LAYERS)
        return ms_error(err, MEDSEG_ERR_MODEL, "image_encoder: found %d TinyViT layers (layers.0 with MBConv blocks, "
                        "then attention layers), expected %d", n, TV_MAX_LAYERS);
    hp->n_layers = n;
    for (int i = 0; i < n; i++) {
        int depth = 0;
        for (;;) {
            snprintf(name, sizeof name, "image_encoder.layers.%d.blocks.%d.%s", i, depth,
                     i == 0 ? "conv1.c.weight" : "attn.qkv.weight");
            if (!ms_tensors_find(ts, name)) break;
            if (++depth > TV_MAX_DEPTH)
                return ms_error(err, MEDSEG_ERR_UNSUPPORTED, "image_encoder: layers.%d has more than %d blocks", i,
                                TV_MAX_DEPTH);
        }
        hp->depths[i] = depth;
        if (i == 0) {
            int hid = ms_tensors_dim(ts, "image_encoder.layers.0.blocks.0.conv1.c.weight", 0, 4);
            int dim = ms_tensors_dim(ts, "image_encoder.layers.0.blocks.0.conv1.c.weight", 1, 4);
            if (dim != d0 || hid <= 0 || hid % dim)
                return ms_error(err, MEDSEG_ERR_MODEL, "image_encoder: layers.0.blocks.0.conv1.c.weight does not "
                                "fit patch_embed width %d", d0);
            hp->embed_dims[0] = dim;
            hp->mbconv_ratio = hid / dim;
            continue;
        }
        snprintf(name, sizeof name, "image_encoder.layers.%d.blocks.0.attn.qkv.weight", i);
        int dim = ms_tensors_dim(ts, name, 1, 2);
        if (dim <= 0 || ms_tensors_dim(ts, name, 0, 2) != 3 * dim)
            return ms_error(err, MEDSEG_ERR_MODEL, "image_encoder: %s is not [3C, C]", name);
        snprintf(name, sizeof name, "image_encoder.layers.%d.blocks.0.attn.attention_biases", i);
        int heads = ms_tensors_dim(ts, name, 0, 2), offs = ms_tensors_dim(ts, name, 1, 2);
        if (heads <= 0 || offs <= 0 || dim % heads)
            return ms_error(err, MEDSEG_ERR_MODEL, "image_encoder: %s missing or heads do not divide %d", name, dim);
        int ws = (int)lround(sqrt((double)offs));
        if (ws * ws != offs)
            return ms_error(err, MEDSEG_ERR_MODEL, "image_encoder: %s has %d offsets, not a square window", name, offs);
        snprintf(name, sizeof name, "image_encoder.layers.%d.blocks.0.mlp.fc1.weight", i);
        int hid = ms_tensors_dim(ts, name, 0, 2);
        if (hid <= 0 || hid % dim)
            return ms_error(err, MEDSEG_ERR_MODEL, "image_encoder: %s missing or not a multiple of %d", name, dim);
        if (i == 1) hp->mlp_ratio = hid / dim;
        else if (hid / dim != hp->mlp_ratio)
            return ms_error(err, MEDSEG_ERR_UNSUPPORTED, "image_encoder: layers differ in mlp ratio");
        hp->embed_dims[i] = dim;
        hp->num_heads[i] = heads;
        hp->window_sizes[i] = ws;
    }
    return MEDSEG_OK;
}

/* ------------------------------------------------------------------ bind */

void tiny_vit_release(tiny_vit *m)
{
    conv_release(&m->pe0);
    conv_release(&m->pe1);
    for (int i = 0; i < TV_MAX_LAYERS; i++) {
        tv_layer *L = &m->layers[i];
        for (int j = 0; j < TV_MAX_DEPTH; j++) {
            conv_release(&L->mb[j].conv1);
            conv_release(&L->mb[j].conv2);
            conv_release(&L->mb[j].conv3);
            conv_release(&L->blk[j].local_conv);
            free(L->blk[j].bias_table);
            free(L->blk[j].pad_qkv);
            L->blk[j].bias_table = L->blk[j].pad_qkv = NULL;
        }
        conv_release(&L->down.conv1);
        conv_release(&L->down.conv2);
        conv_release(&L->down.conv3);
    }
    sam_neck_release(&m->neck);
    memset(m, 0, sizeof *m);
}

static medseg_status bind_block(tv_block *b, const ms_tensors *ts, const char *p, int C, int heads, int ws, int hid,
                                medseg_error *err)
{
    const ms_bind_row spec[] = {
        {"attn.norm.weight", 1, {C}, &b->norm_w},
        {"attn.norm.bias", 1, {C}, &b->norm_b},
        {"attn.qkv.weight", 2, {3 * C, C}, &b->qkv_w},
        {"attn.qkv.bias", 1, {3 * C}, &b->qkv_b},
        {"attn.proj.weight", 2, {C, C}, &b->proj_w},
        {"attn.proj.bias", 1, {C}, &b->proj_b},
        {"attn.attention_biases", 2, {heads, ws * ws}, &b->biases},
        {"mlp.norm.weight", 1, {C}, &b->mlp_norm_w},
        {"mlp.norm.bias", 1, {C}, &b->mlp_norm_b},
        {"mlp.fc1.weight", 2, {hid, C}, &b->fc1_w},
        {"mlp.fc1.bias", 1, {hid}, &b->fc1_b},
        {"mlp.fc2.weight", 2, {C, hid}, &b->fc2_w},
        {"mlp.fc2.bias", 1, {C}, &b->fc2_b},
    };
    medseg_status st = ms_bind_rows(ts, p, spec, NSPEC(spec), "image_encoder", err);
    if (st != MEDSEG_OK) return st;
    char name[300];
    snprintf(name, sizeof name, "%slocal_conv", p);
    st = bind_conv_bn(&b->local_conv, ts, name, C, C, 3, 1, C, err);
    if (st != MEDSEG_OK) return st;
    b->pad_qkv = ms_malloc((size_t)3 * C * sizeof(float), err, "padding token qkv");
    if (!b->pad_qkv) return MEDSEG_ERR_NOMEM;
    for (int o = 0; o < 3 * C; o++) {
        float acc = b->qkv_b[o]; /* same accumulation as a GEMM row in float */
        for (int i = 0; i < C; i++) acc += b->qkv_w[(size_t)o * C + i] * b->norm_b[i];
        b->pad_qkv[o] = acc;
    }
    return build_bias_table(b, heads, ws, err);
}

medseg_status tiny_vit_bind(tiny_vit *m, const tiny_vit_hparams *hp, int img_size, const ms_tensors *ts,
                            medseg_error *err)
{
    memset(m, 0, sizeof *m);
    medseg_status st;
    char p[256];
    m->img_size = img_size;
    m->in_chans = 3;
    m->n_layers = hp->n_layers;
    int d0 = hp->embed_dims[0];
    if (img_size <= 0 || d0 % 2) return ms_error(err, MEDSEG_ERR_MODEL, "image_encoder: bad image size or width");
#define TRY(x)                                                                                                        \
    do {                                                                                                              \
        st = (x);                                                                                                     \
        if (st != MEDSEG_OK) goto fail;                                                                               \
    } while (0)
    m->pe_k = hp->pe_k == 1 ? 1 : 3;
    m->pe_stride = m->pe_k == 1 ? 1 : 2;
    if (img_size % (m->pe_stride * m->pe_stride))
        return ms_error(err, MEDSEG_ERR_MODEL, "image_encoder: image size %d not divisible by the patch stride", img_size);
    TRY(bind_conv_bn(&m->pe0, ts, "image_encoder.patch_embed.seq.0", 3, d0 / 2, m->pe_k, m->pe_stride, 1, err));
    TRY(bind_conv_bn(&m->pe1, ts, "image_encoder.patch_embed.seq.2", d0 / 2, d0, m->pe_k, m->pe_stride, 1, err));
    int res = img_size / (m->pe_stride * m->pe_stride);
    for (int i = 0; i < hp->n_layers; i++) {
        tv_layer *L = &m->layers[i];
        L->dim = hp->embed_dims[i];
        L->depth = hp->depths[i];
        L->heads = hp->num_heads[i];
        L->window = hp->window_sizes[i];
        L->res = res;
        L->has_downsample = i < hp->n_layers - 1;
        L->out_dim = L->has_downsample ? hp->embed_dims[i + 1] : L->dim;
        if (i == 0) {
            L->hidden = L->dim * hp->mbconv_ratio;
            for (int j = 0; j < L->depth; j++) {
                snprintf(p, sizeof p, "image_encoder.layers.0.blocks.%d.conv1", j);
                TRY(bind_conv_bn(&L->mb[j].conv1, ts, p, L->dim, L->hidden, 1, 1, 1, err));
                snprintf(p, sizeof p, "image_encoder.layers.0.blocks.%d.conv2", j);
                TRY(bind_conv_bn(&L->mb[j].conv2, ts, p, L->hidden, L->hidden, 3, 1, L->hidden, err));
                snprintf(p, sizeof p, "image_encoder.layers.0.blocks.%d.conv3", j);
                TRY(bind_conv_bn(&L->mb[j].conv3, ts, p, L->hidden, L->dim, 1, 1, 1, err));
            }
        } else {
            L->hidden = L->dim * hp->mlp_ratio;
            for (int j = 0; j < L->depth; j++) {
                snprintf(p, sizeof p, "image_encoder.layers.%d.blocks.%d.", i, j);
                TRY(bind_block(&L->blk[j], ts, p, L->dim, L->heads, L->window, L->hidden, err));
            }
        }
        int s = 1;
        if (L->has_downsample) {
            s = merge_stride(L->out_dim);
            snprintf(p, sizeof p, "image_encoder.layers.%d.downsample.conv1", i);
            TRY(bind_conv_bn(&L->down.conv1, ts, p, L->dim, L->out_dim, 1, 1, 1, err));
            snprintf(p, sizeof p, "image_encoder.layers.%d.downsample.conv2", i);
            TRY(bind_conv_bn(&L->down.conv2, ts, p, L->out_dim, L->out_dim, 3, s, L->out_dim, err));
            snprintf(p, sizeof p, "image_encoder.layers.%d.downsample.conv3", i);
            TRY(bind_conv_bn(&L->down.conv3, ts, p, L->out_dim, L->out_dim, 1, 1, 1, err));
        }
        L->out_res = (res - 1) / s + 1;
        res = L->out_res;
    }
    if (res != TV_OUT_HW) {
        st = ms_error(err, MEDSEG_ERR_UNSUPPORTED,
                      "image_encoder: last stage is %dx%d for a %d input; TinyViT-SAM needs %dx%d", res, res,
                      img_size, TV_OUT_HW, TV_OUT_HW);
        goto fail;
    }
    int C3 = m->layers[m->n_layers - 1].out_dim;
    TRY(sam_neck_bind(&m->neck, ts, C3, err));
    return MEDSEG_OK;
#undef TRY
fail:
    tiny_vit_release(m);
    return st;
}

/* ------------------------------------------------------------------ state */

struct tv_state {
    const tiny_vit *model; /* the model the buffers were planned for */
    int n_threads;
    float *in_hwc;    /* [S*S, 3] */
    float *pe_mid;    /* [S/2 * S/2, C0/2] */
    float *xa, *xb;   /* [max H*W*C] main activations */
    float *tn;        /* [max H*W*C] attention LayerNorm output, then proj output */
    float *qkv;       /* [max H*W*3C] */
    float *scratch;   /* n_threads * per_thread */
    size_t per_thread;
};

int tiny_vit_state_threads(const tv_state *s)
{
    return s ? s->n_threads : 0;
}

int tiny_vit_state_fits(const tv_state *s, const tiny_vit *m, int n_threads)
{
    return s && s->model == m && s->n_threads >= n_threads;
}

static size_t max_sz(size_t a, size_t b)
{
    return a > b ? a : b;
}

/* floats of band scratch for a pointwise -> dw (stride s) -> pointwise band of R output rows */
static size_t band_floats(int W, int hid, int s, int R)
{
    int OW = (W - 1) / s + 1;
    size_t in_rows = (size_t)(R - 1) * s + 3;
    return in_rows * W * hid + (size_t)R * OW * hid;
}

tv_state *tiny_vit_state_create(const tiny_vit *m, int n_threads, medseg_error *err)
{
    if (n_threads < 1) n_threads = 1;
    tv_state *s = ms_calloc(1, sizeof *s, err, "encoder state");
    if (!s) return NULL;
    s->n_threads = n_threads;
    s->model = m;
    size_t S = (size_t)m->img_size, ps = (size_t)m->pe_stride;
    size_t pt = 0, act = 0, qkv = 0;
    /* patch embed im2col chunks (3x3 convs only; the 1x1 ones are plain GEMMs) */
    if (m->pe_k == 3) {
        pt = max_sz(pt, ms_conv2d_hwc_scratch((int)(S / 2), 3, 3, 3, TV_PE_ROWS, 1));
        pt = max_sz(pt, ms_conv2d_hwc_scratch((int)(S / 4), m->pe0.oc, 3, 3, TV_PE_ROWS, 1));
    }
    act = max_sz(act, (S / (ps * ps)) * (S / (ps * ps)) * (size_t)m->pe1.oc);
    for (int i = 0; i < m->n_layers; i++) {
        const tv_layer *L = &m->layers[i];
        size_t hw = (size_t)L->res * L->res;
        act = max_sz(act, hw * L->dim);
        act = max_sz(act, (size_t)L->out_res * L->out_res * L->out_dim);
        if (i == 0) pt = max_sz(pt, band_floats(L->res, L->hidden, 1, TV_BAND_ROWS));
        if (L->has_downsample) {
            int st = L->down.conv2.stride;
            pt = max_sz(pt, band_floats(L->res, L->out_dim, st, TV_BAND_ROWS));
        }
        if (i > 0) {
            size_t N = (size_t)L->window * L->window, C = (size_t)L->dim;
            pt = max_sz(pt, N * 3 * C + N * N);
            qkv = max_sz(qkv, hw * 3 * C);
            pt = max_sz(pt, (size_t)TV_MLP_TILE * (C + (size_t)L->hidden + C));
        }
    }
    pt = max_sz(pt, sam_neck_scratch(TV_OUT_HW, 1));
    act = max_sz(act, (size_t)TV_OUT_HW * TV_OUT_HW * SAM_NECK_DIM);
    pt = (pt + 15) & ~(size_t)15; /* keep every thread's scratch 64-byte aligned */
    s->per_thread = pt;
    s->in_hwc = ms_alloc_aligned(S * S * 3 * sizeof(float), err, "encoder input");
    s->pe_mid = ms_alloc_aligned((S / ps) * (S / ps) * (size_t)m->pe0.oc * sizeof(float), err, "encoder patch embed");
    s->xa = ms_alloc_aligned(act * sizeof(float), err, "encoder activations");
    s->xb = ms_alloc_aligned(act * sizeof(float), err, "encoder activations");
    s->tn = ms_alloc_aligned(act * sizeof(float), err, "encoder activations");
    s->qkv = ms_alloc_aligned((qkv ? qkv : 1) * sizeof(float), err, "encoder qkv");
    s->scratch = ms_alloc_aligned(pt * (size_t)n_threads * sizeof(float), err, "encoder scratch");
    if (!s->in_hwc || !s->pe_mid || !s->xa || !s->xb || !s->tn || !s->qkv || !s->scratch) {
        tiny_vit_state_free(s);
        return NULL;
    }
    return s;
}

void tiny_vit_state_free(tv_state *s)
{
    if (!s) return;
    free(s->in_hwc);
    free(s->pe_mid);
    free(s->xa);
    free(s->xb);
    free(s->tn);
    free(s->qkv);
    free(s->scratch);
    free(s);
}

/* ------------------------------------------------------------------ forward pieces */

/* Output rows [oy_start, oy_end) of conv1 (1x1) -> GELU -> conv2 (dw 3x3, stride s) -> GELU ->
 * conv3 (1x1) [-> + x -> GELU when residual]; x [H, W, C] -> y [OH, OW, D]. Works in bands of
 * TV_BAND_ROWS output rows; the hidden rows a band shares with the previous one are moved to the
 * front of the buffer rather than recomputed.
 * ref: tiny_vit_sam.py MBConv.forward (residual) and PatchMerging.forward (no residual) */
static void pdp_chunk(const tv_conv *c1, const tv_conv *c2, const tv_conv *c3, const float *x, float *y, int H, int W,
                      int residual, int oy_start, int oy_end, float *scr)
{
    const int C = c1->ic, hid = c1->oc, D = c3->oc, s = c2->stride, R = TV_BAND_ROWS;
    const int OW = (W - 1) / s + 1;
    const size_t row = (size_t)W * hid;
    float *h1 = scr, *h2 = scr + (size_t)((R - 1) * s + 3) * row;
    int have_lo = 0, have_hi = 0; /* image rows currently in h1 */
    for (int oy0 = oy_start; oy0 < oy_end; oy0 += R) {
        int oy1 = oy0 + R < oy_end ? oy0 + R : oy_end;
        int lo = oy0 * s - 1 < 0 ? 0 : oy0 * s - 1;
        int hi = (oy1 - 1) * s + 2 > H ? H : (oy1 - 1) * s + 2;
        int from = lo;
        if (have_hi > lo && have_lo <= lo) { /* reuse the overlap */
            memmove(h1, h1 + (size_t)(lo - have_lo) * row, (size_t)(have_hi - lo) * row * sizeof(float));
            from = have_hi;
        }
        if (hi > from) {
            float *dst = h1 + (size_t)(from - lo) * row;
            ms_linear(dst, x + (size_t)from * W * C, c1->w, c1->b, (hi - from) * W, C, hid, NULL);
            ms_gelu(dst, (size_t)(hi - from) * row, NULL);
        }
        have_lo = lo, have_hi = hi;
        ms_dwconv3x3_rows(h2, h1, lo, H, W, hid, c2->w, c2->b, s, oy0, oy1);
        size_t n = (size_t)(oy1 - oy0) * OW;
        ms_gelu(h2, n * hid, NULL);
        float *out = y + (size_t)oy0 * OW * D;
        ms_linear(out, h2, c3->w, c3->b, (int)n, hid, D, NULL);
        if (residual) {
            ms_add(out, out, x + (size_t)oy0 * W * C, n * D);
            ms_gelu(out, n * D, NULL);
        }
    }
}

typedef struct {
    const tv_conv *c1, *c2, *c3;
    const float *x;
    float *y;
    int H, W, OH, residual, ntasks;
    tv_state *s;
} pdp_ctx;

static void pdp_task(void *vctx, int task, int thread)
{
    pdp_ctx *c = vctx;
    int lo = (int)((int64_t)c->OH * task / c->ntasks), hi = (int)((int64_t)c->OH * (task + 1) / c->ntasks);
    if (lo < hi)
        pdp_chunk(c->c1, c->c2, c->c3, c->x, c->y, c->H, c->W, c->residual, lo, hi,
                  c->s->scratch + (size_t)thread * c->s->per_thread);
}

// x [H*W, C] -> y [OH*OW, D]
static void run_pdp(const tv_conv *c1, const tv_conv *c2, const tv_conv *c3, const float *x, float *y, int H, int W,
                    int residual, tv_state *s, ms_pool *pool)
{
    int OH = (H - 1) / c2->stride + 1;
    int nt = ms_pool_size(pool) * TV_PDP_TASKS_PER_THREAD;
    if (nt > OH) nt = OH;
    pdp_ctx c = {c1, c2, c3, x, y, H, W, OH, residual, nt, s};
    ms_pool_run(pool, nt, pdp_task, &c);
}

/* Window order: the tokens of window (wy, wx) (windows row-major, the window's valid tokens
 * row-major inside it) occupy rows [win_offset, win_offset + hv*wv) of a [H*W, C] buffer. Every
 * window above holds ws*W tokens per window row; the windows to the left in the same row are
 * ws wide and hv tall. */
static size_t win_offset(int wy, int wx, int ws, int W, int hv)
{
    return (size_t)wy * ws * W + (size_t)wx * ws * hv;
}

typedef struct {
    const tv_block *b;
    const float *in; /* image order */
    float *out;      /* window order */
    int H, W, C, ws, nWx, add; /* add: out (image order) += in (window order) instead */
} perm_ctx;

/* One window row of tokens: LayerNorm from image order into window order (attention input), or
 * the residual add of window-order rows back into image order. */
static void perm_task(void *vctx, int task, int thread)
{
    (void)thread;
    perm_ctx *c = vctx;
    const int ws = c->ws, C = c->C, y0 = task * ws, hv = c->H - y0 < ws ? c->H - y0 : ws;
    for (int wx = 0; wx < c->nWx; wx++) {
        int x0 = wx * ws, wv = c->W - x0 < ws ? c->W - x0 : ws;
        size_t off = win_offset(task, wx, ws, c->W, hv);
        for (int i = 0; i < hv; i++) {
            size_t img = (size_t)(y0 + i) * c->W + x0, win = off + (size_t)i * wv;
            if (c->add)
                ms_add(c->out + img * C, c->out + img * C, c->in + win * C, (size_t)wv * C);
            else
                ms_layernorm(c->out + win * C, c->in + img * C, c->b->norm_w, c->b->norm_b, wv, C, TV_LN_EPS, NULL);
        }
    }
}

/* Softmax attention of one window, on window-order qkv [H*W, 3C] (LayerNorm and qkv already
 * applied): zero padding tokens (bottom/right, F.pad) take the constant pad_qkv (their LayerNorm
 * output is the norm bias), and softmax(q k^T * scale + bias) v of the valid (uncropped) queries
 * goes to out [H*W, C], window order, heads side by side.
 * ref: tiny_vit_sam.py TinyViTBlock.forward (pad, window view, crop) and Attention.forward */
typedef struct {
    const tv_block *b;
    const float *qkv;
    float *out;
    int H, W, C, heads, ws, nWx;
    tv_state *s;
} attn_ctx;

static void attn_task(void *vctx, int task, int thread)
{
    attn_ctx *c = vctx;
    const tv_block *b = c->b;
    const int C = c->C, C3 = 3 * c->C, ws = c->ws, N = ws * ws, heads = c->heads, kd = C / heads;
    const int wy = task / c->nWx, wx = task % c->nWx;
    const int y0 = wy * ws, x0 = wx * ws;
    const int hv = c->H - y0 < ws ? c->H - y0 : ws, wv = c->W - x0 < ws ? c->W - x0 : ws, nv = hv * wv;
    const size_t off = win_offset(wy, wx, ws, c->W, hv);
    const float *q = c->qkv + off * C3; /* [nv, 3C] valid tokens */
    const float *kv = q;                /* [N, 3C] whole window */
    float *kvw = c->s->scratch + (size_t)thread * c->s->per_thread;
    float *S = kvw + (size_t)N * C3; /* [nv, N] */
    if (nv < N) {
        for (int i = 0; i < ws; i++)
            for (int j = 0; j < ws; j++)
                memcpy(kvw + (size_t)(i * ws + j) * C3, (i < hv && j < wv) ? q + (size_t)(i * wv + j) * C3 : b->pad_qkv,
                       (size_t)C3 * sizeof(float));
        kv = kvw;
    }
    float *o = c->out + off * C;
    const float scale = (float)(1.0 / sqrt((double)kd));
    for (int h = 0; h < heads; h++) {
        const float *qh = q + (size_t)h * 3 * kd, *k = kv + (size_t)h * 3 * kd + kd, *v = k + kd;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nv, N, kd, 1.0f, qh, C3, k, C3, 0.0f, S, N);
        const float *bt = b->bias_table + (size_t)h * N * N;
        for (int r = 0; r < nv; r++) {
            const float *brow = bt + (size_t)((r / wv) * ws + r % wv) * N; /* the query's window position */
            float *srow = S + (size_t)r * N;
            for (int j = 0; j < N; j++) srow[j] = srow[j] * scale + brow[j];
        }
        ms_softmax_rows(S, nv, N);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nv, kd, N, 1.0f, S, N, v, C3, 0.0f,
                    o + (size_t)h * kd, C);
    }
}

/* Mlp on a tile of rows, residual included. ref: tiny_vit_sam.py Mlp.forward */
typedef struct {
    const tv_block *b;
    float *x;
    int L, C, hid;
    tv_state *s;
} mlp_ctx;

static void mlp_task(void *vctx, int task, int thread)
{
    mlp_ctx *c = vctx;
    int r0 = task * TV_MLP_TILE, r1 = r0 + TV_MLP_TILE > c->L ? c->L : r0 + TV_MLP_TILE, n = r1 - r0;
    if (n <= 0) return;
    float *t = c->s->scratch + (size_t)thread * c->s->per_thread;
    float *h = t + (size_t)TV_MLP_TILE * c->C, *y = h + (size_t)TV_MLP_TILE * c->hid;
    float *x = c->x + (size_t)r0 * c->C;
    ms_layernorm(t, x, c->b->mlp_norm_w, c->b->mlp_norm_b, n, c->C, TV_LN_EPS, NULL);
    ms_linear(h, t, c->b->fc1_w, c->b->fc1_b, n, c->C, c->hid, NULL);
    ms_gelu(h, (size_t)n * c->hid, NULL);
    ms_linear(y, h, c->b->fc2_w, c->b->fc2_b, n, c->hid, c->C, NULL);
    ms_add(x, x, y, (size_t)n * c->C);
}

/* x [H*W, C] -> x; tmp is a second [H*W, C] buffer. Returns the buffer holding the result.
 * ref: tiny_vit_sam.py TinyViTBlock.forward */
static float *tinyvit_block(const tv_block *b, const tv_layer *L, float *x, float *tmp, tv_state *s, ms_pool *pool)
{
    int H = L->res, W = L->res, C = L->dim, ws = L->window, HW = H * W;
    /* x = x + proj(window_attention(qkv(norm(x)))), the middle in window order */
    int nWy = (H + ws - 1) / ws, nWx = (W + ws - 1) / ws;
    perm_ctx ln = {b, x, s->tn, H, W, C, ws, nWx, 0};
    ms_pool_run(pool, nWy, perm_task, &ln);
    ms_linear(s->qkv, s->tn, b->qkv_w, b->qkv_b, HW, C, 3 * C, pool);
    attn_ctx ac = {b, s->qkv, tmp, H, W, C, L->heads, ws, nWx, s};
    ms_pool_run(pool, nWy * nWx, attn_task, &ac);
    ms_linear(s->tn, tmp, b->proj_w, b->proj_b, HW, C, C, pool);
    perm_ctx res = {b, s->tn, x, H, W, C, ws, nWx, 1};
    ms_pool_run(pool, nWy, perm_task, &res);
    /* local_conv, then x = x + mlp(x) */
    ms_dwconv3x3_hwc(tmp, x, b->local_conv.w, b->local_conv.b, H, W, C, 1, pool);
    mlp_ctx mc = {b, tmp, HW, C, L->hidden, s};
    ms_pool_run(pool, (HW + TV_MLP_TILE - 1) / TV_MLP_TILE, mlp_task, &mc);
    return tmp;
}

/* ------------------------------------------------------------------ forward */

typedef struct {
    const float *in;
    float *out;
    int S;
} chw_ctx;

static void chw_to_hwc_task(void *vctx, int task, int thread)
{
    (void)thread;
    chw_ctx *c = vctx;
    size_t plane = (size_t)c->S * c->S;
    const float *r = c->in, *g = r + plane, *bl = g + plane;
    for (int x = 0; x < c->S; x++) {
        size_t i = (size_t)task * c->S + x;
        c->out[i * 3 + 0] = r[i];
        c->out[i * 3 + 1] = g[i];
        c->out[i * 3 + 2] = bl[i];
    }
}

static void probe_hwc_as_nchw(tv_probe_fn probe, void *user, const char *stage, const float *x, int H, int W, int C)
{
    float *t = malloc((size_t)H * W * C * sizeof(float));
    if (!t) return; /* debug aid only */
    for (size_t i = 0; i < (size_t)H * W; i++)
        for (int c = 0; c < C; c++) t[(size_t)c * H * W + i] = x[i * C + c];
    int64_t shape[4] = {1, C, H, W};
    probe(user, stage, t, 4, shape);
    free(t);
}

medseg_status tiny_vit_forward(const tiny_vit *m, tv_state *s, ms_pool *pool, const float *input, float *embedding,
                               tv_probe_fn probe, void *probe_user, tv_timing *timing, medseg_error *err)
{
    if (!m || !s || !input || !embedding) return ms_error(err, MEDSEG_ERR_ARG, "image_encoder: NULL argument");
    if (s->model != m)
        return ms_error(err, MEDSEG_ERR_ARG, "image_encoder: scratch state was planned for another model");
    if (ms_pool_size(pool) > s->n_threads)
        return ms_error(err, MEDSEG_ERR_ARG, "image_encoder: state planned for %d threads, pool has %d",
                        s->n_threads, ms_pool_size(pool));
    ms_kernels_init();
    tv_timing tm;
    memset(&tm, 0, sizeof tm);
    double t0 = ms_now_ms(), t = t0;
    const int S = m->img_size;

    /* patch_embed: conv (BN folded), GELU, conv. ref: PatchEmbed.forward. MobileSAM: 3x3 stride 2
     * twice; LiteMedSAM: 1x1 stride 1 twice (two GEMMs over the pixels). */
    chw_ctx cc = {input, s->in_hwc, S};
    ms_pool_run(pool, S, chw_to_hwc_task, &cc);
    float *x = s->xa, *y = s->xb;
    const int S1 = S / m->pe_stride, S2 = S1 / m->pe_stride;
    if (m->pe_k == 1) {
        ms_linear(s->pe_mid, s->in_hwc, m->pe0.w, m->pe0.b, S * S, 3, m->pe0.oc, pool);
        ms_gelu(s->pe_mid, (size_t)S1 * S1 * m->pe0.oc, pool);
        ms_linear(x, s->pe_mid, m->pe1.w, m->pe1.b, S1 * S1, m->pe0.oc, m->pe1.oc, pool);
    } else {
        ms_conv2d_hwc(s->pe_mid, s->scratch, s->in_hwc, m->pe0.w, m->pe0.b, S, S, 3, m->pe0.oc, 3, 3, 2, 1,
                      TV_PE_ROWS, pool);
        /* per-thread chunks: the conv uses scratch + thread * chunk; chunk <= per_thread by planning */
        ms_gelu(s->pe_mid, (size_t)S1 * S1 * m->pe0.oc, pool);
        ms_conv2d_hwc(x, s->scratch, s->pe_mid, m->pe1.w, m->pe1.b, S1, S1, m->pe0.oc, m->pe1.oc, 3, 3, 2, 1,
                      TV_PE_ROWS, pool);
    }
    if (probe) probe_hwc_as_nchw(probe, probe_user, "patch_embed", x, S2, S2, m->pe1.oc);
    tm.patch_embed = ms_now_ms() - t;

    for (int i = 0; i < m->n_layers; i++) {
        t = ms_now_ms();
        const tv_layer *L = &m->layers[i];
        for (int j = 0; j < L->depth; j++) {
            if (i == 0) {
                run_pdp(&L->mb[j].conv1, &L->mb[j].conv2, &L->mb[j].conv3, x, y, L->res, L->res, 1, s, pool);
                float *tswap = x;
                x = y, y = tswap;
            } else {
                float *r = tinyvit_block(&L->blk[j], L, x, y, s, pool);
                if (r != x) y = x, x = r;
            }
        }
        if (L->has_downsample) {
            run_pdp(&L->down.conv1, &L->down.conv2, &L->down.conv3, x, y, L->res, L->res, 0, s, pool);
            float *tswap = x;
            x = y, y = tswap;
        }
        if (probe) {
            char stage[32];
            snprintf(stage, sizeof stage, "layers.%d", i);
            int64_t shape[3] = {1, (int64_t)L->out_res * L->out_res, L->out_dim};
            probe(probe_user, stage, x, 3, shape);
        }
        tm.layers[i] = ms_now_ms() - t;
    }

    /* neck: conv 1x1 (no bias), LayerNorm2d, conv 3x3 pad 1 (no bias), LayerNorm2d. ref: TinyViT.neck */
    t = ms_now_ms();
    sam_neck_forward(&m->neck, embedding, y, x, s->scratch, x, TV_OUT_HW, pool);
    tm.neck = ms_now_ms() - t;
    tm.total = ms_now_ms() - t0;
    if (timing) *timing = tm;
    return MEDSEG_OK;
}
