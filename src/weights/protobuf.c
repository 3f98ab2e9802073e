/* Defensive protobuf wire reader + ONNX subset (see protobuf.h).
 * ref: https://protobuf.dev/programming-guides/encoding/ ; onnx/onnx.proto (field numbers) */
#include "weights/protobuf.h"

#include <stdlib.h>
#include <string.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the ONNX reader assumes a little-endian host (raw_data is little-endian)"
#endif

#define MS_ONNX_MAX_STR ((size_t)1 << 16)   /* longest name we accept */
#define MS_ONNX_MAX_ITEMS ((size_t)1 << 22) /* nodes, initializers, inputs per node ... */
#define MS_ONNX_MAX_DIM ((int64_t)1 << 40)

/* ---------------------------------------------------------------- wire format */

void ms_pb_init(ms_pb *r, const uint8_t *p, size_t len, int depth)
{
    r->p = p;
    r->len = len;
    r->pos = 0;
    r->depth = depth;
}

int ms_pb_read_varint(const uint8_t *p, size_t len, size_t *pos, uint64_t *v)
{
    uint64_t x = 0;
    size_t i = *pos;
    for (int k = 0; k < 10; k++) {
        if (i >= len) return 0;
        uint8_t b = p[i++];
        if (k == 9 && b > 1) return 0; /* would overflow 64 bits */
        x |= (uint64_t)(b & 0x7f) << (7 * k);
        if (!(b & 0x80)) {
            *pos = i;
            *v = x;
            return 1;
        }
    }
    return 0; /* more than 10 bytes */
}

int ms_pb_next(ms_pb *r, ms_pb_field *f, const char **why)
{
    if (r->pos >= r->len) return 0;
    uint64_t key;
    if (!ms_pb_read_varint(r->p, r->len, &r->pos, &key)) {
        *why = "bad or truncated field key";
        return -1;
    }
    uint64_t field = key >> 3;
    if (field == 0 || field > 0x1fffffff) {
        *why = "invalid field number";
        return -1;
    }
    f->field = (uint32_t)field;
    f->wire = (int)(key & 7);
    f->v = 0;
    f->data = NULL;
    f->len = 0;
    switch (f->wire) {
    case MS_PB_VARINT:
        if (!ms_pb_read_varint(r->p, r->len, &r->pos, &f->v)) {
            *why = "bad or truncated varint";
            return -1;
        }
        return 1;
    case MS_PB_I64:
        if (r->len - r->pos < 8) {
            *why = "truncated fixed64";
            return -1;
        }
        for (int k = 7; k >= 0; k--) f->v = (f->v << 8) | r->p[r->pos + (size_t)k];
        r->pos += 8;
        return 1;
    case MS_PB_I32:
        if (r->len - r->pos < 4) {
            *why = "truncated fixed32";
            return -1;
        }
        for (int k = 3; k >= 0; k--) f->v = (f->v << 8) | r->p[r->pos + (size_t)k];
        r->pos += 4;
        return 1;
    case MS_PB_LEN: {
        uint64_t n;
        if (!ms_pb_read_varint(r->p, r->len, &r->pos, &n)) {
            *why = "bad or truncated length";
            return -1;
        }
        if (n > r->len - r->pos) {
            *why = "length past the end of the enclosing message";
            return -1;
        }
        f->data = r->p + r->pos;
        f->len = (size_t)n;
        r->pos += (size_t)n;
        return 1;
    }
    default:
        *why = "unsupported wire type (group or invalid)";
        return -1;
    }
}

int ms_pb_sub(const ms_pb *parent, const ms_pb_field *f, ms_pb *child)
{
    if (f->wire != MS_PB_LEN || parent->depth + 1 > MS_PB_MAX_DEPTH) return 0;
    ms_pb_init(child, f->data, f->len, parent->depth + 1);
    return 1;
}

/* ---------------------------------------------------------------- helpers */

typedef struct {
    const char *what;  /* file name for messages */
    medseg_error *err;
} pctx;

static medseg_status bad(pctx *c, const char *where, const char *why)
{
    return ms_error(c->err, MEDSEG_ERR_FORMAT, "%s: malformed ONNX protobuf in %s: %s", c->what, where, why);
}

static medseg_status copy_str(pctx *c, const ms_pb_field *f, const char *where, char **out)
{
    if (f->wire != MS_PB_LEN) return bad(c, where, "string field with wrong wire type");
    if (f->len > MS_ONNX_MAX_STR) return bad(c, where, "string too long");
    if (f->len && memchr(f->data, 0, f->len)) return bad(c, where, "NUL byte inside a name");
    char *s = ms_malloc(f->len + 1, c->err, "ONNX string");
    if (!s) return MEDSEG_ERR_NOMEM;
    if (f->len) memcpy(s, f->data, f->len);
    s[f->len] = 0;
    free(*out); /* a repeated scalar field: last one wins, as in protobuf */
    *out = s;
    return MEDSEG_OK;
}

static char *empty_str(medseg_error *err)
{
    char *s = ms_malloc(1, err, "ONNX string");
    if (s) s[0] = 0;
    return s;
}

/* Makes room for one more element in a growable array. */
static medseg_status grow(pctx *c, void **arr, size_t *cap, size_t n, size_t elsize, const char *what)
{
    if (n < *cap) return MEDSEG_OK;
    if (n >= MS_ONNX_MAX_ITEMS)
        return ms_error(c->err, MEDSEG_ERR_NOMEM, "%s: too many %s (cap %zu)", c->what, what, MS_ONNX_MAX_ITEMS);
    size_t nc = *cap ? *cap * 2 : 8;
    size_t bytes;
    if (!ms_mul_size(nc, elsize, &bytes)) return ms_error(c->err, MEDSEG_ERR_NOMEM, "%s: size overflow", c->what);
    void *p = realloc(*arr, bytes);
    if (!p) return ms_error(c->err, MEDSEG_ERR_NOMEM, "%s: out of memory for %s", c->what, what);
    memset((char *)p + *cap * elsize, 0, (nc - *cap) * elsize);
    *arr = p;
    *cap = nc;
    return MEDSEG_OK;
}

static size_t onnx_elsize(int dt)
{
    switch (dt) {
    case MS_ONNX_FLOAT: case MS_ONNX_INT32: return 4;
    case MS_ONNX_INT64: case MS_ONNX_DOUBLE: return 8;
    case MS_ONNX_UINT8: case MS_ONNX_INT8: case MS_ONNX_BOOL: return 1;
    case MS_ONNX_FLOAT16: return 2;
    default: return 0;
    }
}

/* Counts the varints of a packed field; 0 on a malformed payload. */
static int count_packed_varints(const uint8_t *p, size_t len, size_t *count)
{
    size_t pos = 0, n = 0;
    uint64_t v;
    while (pos < len) {
        if (!ms_pb_read_varint(p, len, &pos, &v)) return 0;
        n++;
    }
    *count = n;
    return 1;
}

/* ---------------------------------------------------------------- TensorProto */

static medseg_status parse_tensor(pctx *c, ms_pb *r, ms_onnx_tensor *t)
{
    memset(t, 0, sizeof *t);
    t->msg = r->p;
    t->msg_len = r->len;
    size_t n_float = 0, n_i32 = 0, n_i64 = 0, n_f64 = 0;
    int has_raw = 0;
    ms_pb_field f;
    const char *why = NULL;
    int rc;
    medseg_status st;
    while ((rc = ms_pb_next(r, &f, &why)) == 1) {
        switch (f.field) {
        case 1: /* dims */
            if (f.wire == MS_PB_VARINT) {
                if (t->ndim >= MS_MAX_NDIM) return bad(c, "TensorProto", "too many dims");
                t->dims[t->ndim++] = (int64_t)f.v;
            } else if (f.wire == MS_PB_LEN) {
                size_t pos = 0;
                uint64_t v;
                while (pos < f.len) {
                    if (!ms_pb_read_varint(f.data, f.len, &pos, &v)) return bad(c, "TensorProto", "bad packed dims");
                    if (t->ndim >= MS_MAX_NDIM) return bad(c, "TensorProto", "too many dims");
                    t->dims[t->ndim++] = (int64_t)v;
                }
            } else
                return bad(c, "TensorProto", "dims with wrong wire type");
            break;
        case 2:
            if (f.wire != MS_PB_VARINT) return bad(c, "TensorProto", "data_type with wrong wire type");
            t->data_type = (int)(f.v > 1000 ? 1000 : f.v);
            break;
        case 3: return bad(c, "TensorProto", "segmented tensors are not supported");
        case 4: /* float_data */
            if (f.wire == MS_PB_LEN) {
                if (f.len % 4) return bad(c, "TensorProto", "packed float_data not a multiple of 4 bytes");
                n_float += f.len / 4;
            } else if (f.wire == MS_PB_I32)
                n_float++;
            else
                return bad(c, "TensorProto", "float_data with wrong wire type");
            break;
        case 5: /* int32_data */
        case 7: { /* int64_data */
            size_t k = 1;
            if (f.wire == MS_PB_LEN) {
                if (!count_packed_varints(f.data, f.len, &k)) return bad(c, "TensorProto", "bad packed integers");
            } else if (f.wire != MS_PB_VARINT)
                return bad(c, "TensorProto", "integer data with wrong wire type");
            if (f.field == 5) n_i32 += k; else n_i64 += k;
            break;
        }
        case 8:
            if ((st = copy_str(c, &f, "TensorProto.name", &t->name))) return st;
            break;
        case 9:
            if (f.wire != MS_PB_LEN) return bad(c, "TensorProto", "raw_data with wrong wire type");
            t->raw = f.data;
            t->raw_len = f.len;
            has_raw = 1;
            break;
        case 10:
            if (f.wire == MS_PB_LEN) {
                if (f.len % 8) return bad(c, "TensorProto", "packed double_data not a multiple of 8 bytes");
                n_f64 += f.len / 8;
            } else if (f.wire == MS_PB_I64)
                n_f64++;
            else
                return bad(c, "TensorProto", "double_data with wrong wire type");
            break;
        case 13:
            return ms_error(c->err, MEDSEG_ERR_UNSUPPORTED,
                            "%s: tensor with external data (weights in a separate file) is not supported", c->what);
        case 14:
            if (f.wire == MS_PB_VARINT && f.v == 1)
                return ms_error(c->err, MEDSEG_ERR_UNSUPPORTED,
                                "%s: tensor with external data (weights in a separate file) is not supported", c->what);
            break;
        default: break; /* unknown / unneeded field: skipped */
        }
    }
    if (rc < 0) return bad(c, "TensorProto", why);
    if (!t->name && !(t->name = empty_str(c->err))) return MEDSEG_ERR_NOMEM;

    int64_t numel = 1;
    for (int i = 0; i < t->ndim; i++) {
        if (t->dims[i] < 0 || t->dims[i] > MS_ONNX_MAX_DIM)
            return ms_error(c->err, MEDSEG_ERR_FORMAT, "%s: tensor '%s' has an invalid dimension", c->what, t->name);
        if (t->dims[i] && numel > (int64_t)MS_ONNX_TENSOR_CAP / t->dims[i])
            return ms_error(c->err, MEDSEG_ERR_NOMEM, "%s: tensor '%s' is larger than the 1 GiB cap", c->what, t->name);
        numel *= t->dims[i];
    }
    t->numel = numel;
    size_t es = onnx_elsize(t->data_type);
    if (!es) {
        /* a type we never decode: only its presence is recorded */
        t->nbytes = 0;
        t->n_typed = 0;
        return MEDSEG_OK;
    }
    if ((uint64_t)numel > MS_ONNX_TENSOR_CAP / es)
        return ms_error(c->err, MEDSEG_ERR_NOMEM, "%s: tensor '%s' is larger than the 1 GiB cap", c->what, t->name);
    t->nbytes = (size_t)numel * es;
    switch (t->data_type) {
    case MS_ONNX_FLOAT: t->n_typed = n_float; break;
    case MS_ONNX_INT64: t->n_typed = n_i64; break;
    case MS_ONNX_DOUBLE: t->n_typed = n_f64; break;
    default: t->n_typed = n_i32; break;
    }
    if (has_raw) {
        if (t->raw_len != t->nbytes)
            return ms_error(c->err, MEDSEG_ERR_FORMAT, "%s: tensor '%s': raw_data holds %zu bytes, its shape needs %zu",
                            c->what, t->name, t->raw_len, t->nbytes);
    } else if (t->n_typed != (size_t)numel) {
        return ms_error(c->err, MEDSEG_ERR_FORMAT, "%s: tensor '%s': %zu values present, its shape needs %lld", c->what,
                        t->name, t->n_typed, (long long)numel);
    }
    return MEDSEG_OK;
}

static void free_tensor(ms_onnx_tensor *t)
{
    free(t->name);
    t->name = NULL;
}

/* ---------------------------------------------------------------- Attribute / Node */

static medseg_status parse_attr(pctx *c, ms_pb *r, ms_onnx_attr *a)
{
    ms_pb_field f;
    const char *why = NULL;
    int rc;
    medseg_status st;
    while ((rc = ms_pb_next(r, &f, &why)) == 1) {
        switch (f.field) {
        case 1:
            if ((st = copy_str(c, &f, "AttributeProto.name", &a->name))) return st;
            break;
        case 2:
            if (f.wire != MS_PB_I32) return bad(c, "AttributeProto", "f with wrong wire type");
            {
                uint32_t bits = (uint32_t)f.v;
                memcpy(&a->f, &bits, 4);
            }
            break;
        case 3:
            if (f.wire != MS_PB_VARINT) return bad(c, "AttributeProto", "i with wrong wire type");
            a->i = (int64_t)f.v;
            break;
        case 5: {
            ms_pb sub;
            if (!ms_pb_sub(r, &f, &sub)) return bad(c, "AttributeProto", "bad tensor field or nesting too deep");
            if (a->has_t) free_tensor(&a->t);
            a->has_t = 1;
            if ((st = parse_tensor(c, &sub, &a->t))) return st;
            break;
        }
        case 20:
            if (f.wire != MS_PB_VARINT) return bad(c, "AttributeProto", "type with wrong wire type");
            a->type = (int)(f.v > 1000 ? 1000 : f.v);
            break;
        default: break;
        }
    }
    if (rc < 0) return bad(c, "AttributeProto", why);
    if (!a->name && !(a->name = empty_str(c->err))) return MEDSEG_ERR_NOMEM;
    return MEDSEG_OK;
}

static medseg_status add_name(pctx *c, const ms_pb_field *f, const char *where, char ***arr, size_t *n, size_t *cap)
{
    medseg_status st = grow(c, (void **)arr, cap, *n, sizeof(char *), where);
    if (st) return st;
    (*arr)[*n] = NULL;
    if ((st = copy_str(c, f, where, &(*arr)[*n]))) return st;
    (*n)++;
    return MEDSEG_OK;
}

static medseg_status parse_node(pctx *c, ms_pb *r, ms_onnx_node *nd)
{
    ms_pb_field f;
    const char *why = NULL;
    int rc;
    medseg_status st;
    size_t n_in = 0, cap_in = 0, n_out = 0, cap_out = 0, n_at = 0, cap_at = 0;
    while ((rc = ms_pb_next(r, &f, &why)) == 1) {
        switch (f.field) {
        case 1:
            st = add_name(c, &f, "NodeProto.input", &nd->inputs, &n_in, &cap_in);
            nd->n_inputs = (int)n_in;
            if (st) return st;
            break;
        case 2:
            st = add_name(c, &f, "NodeProto.output", &nd->outputs, &n_out, &cap_out);
            nd->n_outputs = (int)n_out;
            if (st) return st;
            break;
        case 3:
            if ((st = copy_str(c, &f, "NodeProto.name", &nd->name))) return st;
            break;
        case 4:
            if ((st = copy_str(c, &f, "NodeProto.op_type", &nd->op_type))) return st;
            break;
        case 5: {
            ms_pb sub;
            if (!ms_pb_sub(r, &f, &sub)) return bad(c, "NodeProto", "bad attribute field or nesting too deep");
            if ((st = grow(c, (void **)&nd->attrs, &cap_at, n_at, sizeof(ms_onnx_attr), "attributes"))) return st;
            memset(&nd->attrs[n_at], 0, sizeof(ms_onnx_attr));
            nd->n_attrs = (int)++n_at;
            if ((st = parse_attr(c, &sub, &nd->attrs[n_at - 1]))) return st;
            break;
        }
        default: break;
        }
    }
    if (rc < 0) return bad(c, "NodeProto", why);
    if (!nd->name && !(nd->name = empty_str(c->err))) return MEDSEG_ERR_NOMEM;
    if (!nd->op_type && !(nd->op_type = empty_str(c->err))) return MEDSEG_ERR_NOMEM;
    return MEDSEG_OK;
}

static void free_node(ms_onnx_node *nd)
{
    free(nd->name);
    free(nd->op_type);
    for (int i = 0; i < nd->n_inputs; i++) free(nd->inputs[i]);
    for (int i = 0; i < nd->n_outputs; i++) free(nd->outputs[i]);
    free(nd->inputs);
    free(nd->outputs);
    for (int i = 0; i < nd->n_attrs; i++) {
        free(nd->attrs[i].name);
        if (nd->attrs[i].has_t) free_tensor(&nd->attrs[i].t);
    }
    free(nd->attrs);
}

/* ValueInfoProto: only its name (field 1). */
static medseg_status parse_value_info(pctx *c, ms_pb *r, ms_pb_field *outer, char ***arr, size_t *n, size_t *cap)
{
    ms_pb_field f;
    const char *why = NULL;
    int rc;
    medseg_status st = grow(c, (void **)arr, cap, *n, sizeof(char *), "graph inputs/outputs");
    if (st) return st;
    (*arr)[*n] = NULL;
    (*n)++;
    (void)outer;
    while ((rc = ms_pb_next(r, &f, &why)) == 1)
        if (f.field == 1 && (st = copy_str(c, &f, "ValueInfoProto.name", &(*arr)[*n - 1]))) return st;
    if (rc < 0) return bad(c, "ValueInfoProto", why);
    if (!(*arr)[*n - 1] && !((*arr)[*n - 1] = empty_str(c->err))) return MEDSEG_ERR_NOMEM;
    return MEDSEG_OK;
}

/* ---------------------------------------------------------------- Graph / Model */

static medseg_status parse_graph(pctx *c, ms_pb *r, ms_onnx_model *m)
{
    ms_pb_field f;
    const char *why = NULL;
    int rc;
    medseg_status st;
    size_t cap_n = 0, cap_i = 0, cap_in = 0, cap_out = 0;
    while ((rc = ms_pb_next(r, &f, &why)) == 1) {
        ms_pb sub;
        switch (f.field) {
        case 1:
            if (!ms_pb_sub(r, &f, &sub)) return bad(c, "GraphProto", "bad node field");
            if ((st = grow(c, (void **)&m->nodes, &cap_n, m->n_nodes, sizeof(ms_onnx_node), "nodes"))) return st;
            memset(&m->nodes[m->n_nodes], 0, sizeof(ms_onnx_node));
            m->n_nodes++;
            if ((st = parse_node(c, &sub, &m->nodes[m->n_nodes - 1]))) return st;
            break;
        case 5:
            if (!ms_pb_sub(r, &f, &sub)) return bad(c, "GraphProto", "bad initializer field");
            if ((st = grow(c, (void **)&m->inits, &cap_i, m->n_inits, sizeof(ms_onnx_tensor), "initializers")))
                return st;
            memset(&m->inits[m->n_inits], 0, sizeof(ms_onnx_tensor));
            m->n_inits++;
            if ((st = parse_tensor(c, &sub, &m->inits[m->n_inits - 1]))) return st;
            break;
        case 11:
            if (!ms_pb_sub(r, &f, &sub)) return bad(c, "GraphProto", "bad input field");
            if ((st = parse_value_info(c, &sub, &f, &m->inputs, &m->n_inputs, &cap_in))) return st;
            break;
        case 12:
            if (!ms_pb_sub(r, &f, &sub)) return bad(c, "GraphProto", "bad output field");
            if ((st = parse_value_info(c, &sub, &f, &m->outputs, &m->n_outputs, &cap_out))) return st;
            break;
        default: break;
        }
    }
    if (rc < 0) return bad(c, "GraphProto", why);
    return MEDSEG_OK;
}

medseg_status ms_onnx_parse(const uint8_t *buf, size_t len, const char *what, ms_onnx_model *m, medseg_error *err)
{
    memset(m, 0, sizeof *m);
    pctx c = {what, err};
    ms_pb r;
    ms_pb_init(&r, buf, len, 0);
    ms_pb_field f;
    const char *why = NULL;
    int rc, n_graph = 0;
    medseg_status st = MEDSEG_OK;
    if (len == 0) return ms_error(err, MEDSEG_ERR_FORMAT, "%s: empty file, not an ONNX model", what);
    while ((rc = ms_pb_next(&r, &f, &why)) == 1) {
        ms_pb sub;
        if (f.field == 1) {
            if (f.wire != MS_PB_VARINT) { st = bad(&c, "ModelProto", "ir_version with wrong wire type"); goto fail; }
            m->ir_version = (int64_t)f.v;
        } else if (f.field == 7) {
            if (n_graph++) { st = bad(&c, "ModelProto", "more than one graph"); goto fail; }
            if (!ms_pb_sub(&r, &f, &sub)) { st = bad(&c, "ModelProto", "bad graph field"); goto fail; }
            if ((st = parse_graph(&c, &sub, m))) goto fail;
        } else if (f.field == 8) {
            if (!ms_pb_sub(&r, &f, &sub)) { st = bad(&c, "ModelProto", "bad opset_import field"); goto fail; }
            ms_pb_field g;
            int rc2, default_domain = 1;
            int64_t ver = 0;
            while ((rc2 = ms_pb_next(&sub, &g, &why)) == 1) {
                if (g.field == 1 && g.wire == MS_PB_LEN && g.len > 0 &&
                    !(g.len == 7 && memcmp(g.data, "ai.onnx", 7) == 0))
                    default_domain = 0;
                else if (g.field == 2 && g.wire == MS_PB_VARINT)
                    ver = (int64_t)g.v;
            }
            if (rc2 < 0) { st = bad(&c, "OperatorSetIdProto", why); goto fail; }
            if (default_domain) m->opset = ver;
        }
    }
    if (rc < 0) { st = bad(&c, "ModelProto", why); goto fail; }
    if (!n_graph || m->ir_version <= 0) {
        st = ms_error(err, MEDSEG_ERR_FORMAT, "%s: not an ONNX model (no graph or no ir_version)", what);
        goto fail;
    }
    return MEDSEG_OK;
fail:
    ms_onnx_free(m);
    return st;
}

void ms_onnx_free(ms_onnx_model *m)
{
    if (!m) return;
    for (size_t i = 0; i < m->n_nodes; i++) free_node(&m->nodes[i]);
    for (size_t i = 0; i < m->n_inits; i++) free_tensor(&m->inits[i]);
    for (size_t i = 0; i < m->n_inputs; i++) free(m->inputs[i]);
    for (size_t i = 0; i < m->n_outputs; i++) free(m->outputs[i]);
    free(m->nodes);
    free(m->inits);
    free(m->inputs);
    free(m->outputs);
    memset(m, 0, sizeof *m);
}

/* ---------------------------------------------------------------- value decoding */

medseg_status ms_onnx_tensor_f32(const ms_onnx_tensor *t, float *out, const char *what, medseg_error *err)
{
    if (t->data_type != MS_ONNX_FLOAT)
        return ms_error(err, MEDSEG_ERR_UNSUPPORTED, "%s: tensor '%s' has ONNX data type %d, expected float32", what,
                        t->name, t->data_type);
    if (t->raw) {
        if (t->raw_len != t->nbytes) return ms_error(err, MEDSEG_ERR_FORMAT, "%s: tensor '%s' size mismatch", what, t->name);
        if (t->raw_len) memcpy(out, t->raw, t->raw_len);
        return MEDSEG_OK;
    }
    ms_pb r;
    ms_pb_init(&r, t->msg, t->msg_len, 0);
    ms_pb_field f;
    const char *why = NULL;
    size_t k = 0, n = (size_t)t->numel;
    int rc;
    while ((rc = ms_pb_next(&r, &f, &why)) == 1) {
        if (f.field != 4) continue;
        if (f.wire == MS_PB_LEN) {
            size_t m = f.len / 4;
            if (m > n - k) return ms_error(err, MEDSEG_ERR_FORMAT, "%s: tensor '%s': too many values", what, t->name);
            if (m) memcpy(out + k, f.data, m * 4);
            k += m;
        } else if (f.wire == MS_PB_I32) {
            if (k >= n) return ms_error(err, MEDSEG_ERR_FORMAT, "%s: tensor '%s': too many values", what, t->name);
            uint32_t bits = (uint32_t)f.v;
            memcpy(out + k++, &bits, 4);
        }
    }
    if (rc < 0 || k != n)
        return ms_error(err, MEDSEG_ERR_FORMAT, "%s: tensor '%s': float_data holds %zu values, expected %zu", what,
                        t->name, k, n);
    return MEDSEG_OK;
}

medseg_status ms_onnx_tensor_i64(const ms_onnx_tensor *t, int64_t *out, const char *what, medseg_error *err)
{
    if (t->data_type != MS_ONNX_INT64 && t->data_type != MS_ONNX_INT32)
        return ms_error(err, MEDSEG_ERR_UNSUPPORTED, "%s: tensor '%s' has ONNX data type %d, expected an integer type",
                        what, t->name, t->data_type);
    size_t n = (size_t)t->numel;
    if (t->raw) {
        if (t->raw_len != t->nbytes) return ms_error(err, MEDSEG_ERR_FORMAT, "%s: tensor '%s' size mismatch", what, t->name);
        for (size_t i = 0; i < n; i++) {
            if (t->data_type == MS_ONNX_INT64) {
                memcpy(&out[i], t->raw + 8 * i, 8);
            } else {
                int32_t v;
                memcpy(&v, t->raw + 4 * i, 4);
                out[i] = v;
            }
        }
        return MEDSEG_OK;
    }
    uint32_t want = t->data_type == MS_ONNX_INT64 ? 7 : 5;
    ms_pb r;
    ms_pb_init(&r, t->msg, t->msg_len, 0);
    ms_pb_field f;
    const char *why = NULL;
    size_t k = 0;
    int rc;
    while ((rc = ms_pb_next(&r, &f, &why)) == 1) {
        if (f.field != want) continue;
        if (f.wire == MS_PB_VARINT) {
            if (k >= n) return ms_error(err, MEDSEG_ERR_FORMAT, "%s: tensor '%s': too many values", what, t->name);
            out[k++] = want == 5 ? (int64_t)(int32_t)f.v : (int64_t)f.v;
        } else if (f.wire == MS_PB_LEN) {
            size_t pos = 0;
            uint64_t v;
            while (pos < f.len) {
                if (!ms_pb_read_varint(f.data, f.len, &pos, &v) || k >= n)
                    return ms_error(err, MEDSEG_ERR_FORMAT, "%s: tensor '%s': bad integer data", what, t->name);
                out[k++] = want == 5 ? (int64_t)(int32_t)v : (int64_t)v;
            }
        }
    }
    if (rc < 0 || k != n)
        return ms_error(err, MEDSEG_ERR_FORMAT, "%s: tensor '%s': integer data holds %zu values, expected %zu", what,
                        t->name, k, n);
    return MEDSEG_OK;
}
