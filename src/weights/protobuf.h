/* A small, defensive protobuf wire-format reader and the subset of the ONNX schema the importers
 * need (ModelProto, GraphProto, NodeProto, AttributeProto, TensorProto). Nothing is trusted: every
 * varint is capped at 10 bytes, every length is checked against the enclosing message, nesting
 * is capped, tensor sizes are capped and element counts are checked against the bytes present.
 * Parsed objects point into the caller's buffer (which must outlive them); names are copied.
 *
 * ref: https://protobuf.dev/programming-guides/encoding/ (wire format),
 *      onnx/onnx.proto (field numbers) */
#ifndef MS_PROTOBUF_H
#define MS_PROTOBUF_H

#include "weights/tensors.h"

/* ---- wire format ---- */

enum { MS_PB_VARINT = 0, MS_PB_I64 = 1, MS_PB_LEN = 2, MS_PB_I32 = 5 };

#define MS_PB_MAX_DEPTH 16

typedef struct {
    const uint8_t *p; /* message bytes */
    size_t len;
    size_t pos;
    int depth;        /* nesting depth of this message (0 = top level) */
} ms_pb;

typedef struct {
    uint32_t field;   /* field number (>= 1) */
    int wire;         /* MS_PB_* */
    uint64_t v;       /* VARINT value, or the raw bits of I32 / I64 */
    const uint8_t *data; /* LEN payload */
    size_t len;
} ms_pb_field;

void ms_pb_init(ms_pb *r, const uint8_t *p, size_t len, int depth);
/* Reads one varint at p[*pos..len): at most 10 bytes, the 10th may only hold the top bit.
 * Returns 1 and advances *pos, or 0 on a truncated / overlong varint. */
int ms_pb_read_varint(const uint8_t *p, size_t len, size_t *pos, uint64_t *v);
/* Next field of the message. Returns 1 (field read), 0 (clean end), -1 (malformed: *why says
 * what). LEN payloads are bounds-checked against this message; groups are rejected. */
int ms_pb_next(ms_pb *r, ms_pb_field *f, const char **why);
/* Opens a LEN field as a nested message (one level deeper). Returns 0 past MS_PB_MAX_DEPTH. */
int ms_pb_sub(const ms_pb *parent, const ms_pb_field *f, ms_pb *child);

/* ---- ONNX subset ---- */

enum { MS_ONNX_FLOAT = 1, MS_ONNX_UINT8 = 2, MS_ONNX_INT8 = 3, MS_ONNX_INT32 = 6, MS_ONNX_INT64 = 7,
       MS_ONNX_BOOL = 9, MS_ONNX_FLOAT16 = 10, MS_ONNX_DOUBLE = 11 };

#define MS_ONNX_TENSOR_CAP ((size_t)1 << 30) /* bytes of one tensor */

typedef struct {
    char *name;              /* owned; "" if absent */
    int data_type;
    int ndim;
    int64_t dims[MS_MAX_NDIM];
    int64_t numel;
    size_t nbytes;           /* numel * element size (checked against the cap) */
    const uint8_t *msg;      /* the whole TensorProto (typed repeated fields are decoded lazily) */
    size_t msg_len;
    const uint8_t *raw;      /* raw_data, NULL if absent */
    size_t raw_len;
    size_t n_typed;          /* elements present in float_data / int32_data / int64_data */
} ms_onnx_tensor;

typedef struct {
    char *name;              /* owned */
    int type;                /* AttributeProto.type (1 FLOAT, 2 INT, 4 TENSOR, 7 INTS ...) */
    int64_t i;
    float f;
    int has_t;
    ms_onnx_tensor t;
} ms_onnx_attr;

typedef struct {
    char *name, *op_type;    /* owned; "" if absent */
    char **inputs;           /* owned; "" marks an omitted optional input */
    int n_inputs;
    char **outputs;
    int n_outputs;
    ms_onnx_attr *attrs;
    int n_attrs;
} ms_onnx_node;

typedef struct {
    int64_t ir_version;
    int64_t opset;           /* default-domain opset version, 0 if absent */
    ms_onnx_node *nodes;
    size_t n_nodes;
    ms_onnx_tensor *inits;
    size_t n_inits;
    char **inputs;           /* graph input names */
    size_t n_inputs;
    char **outputs;          /* graph output names */
    size_t n_outputs;
} ms_onnx_model;

/* Parses an ONNX ModelProto held in buf (which must outlive *m). what names the file in
 * messages. Tensors with external data or unsupported storage are rejected here. */
medseg_status ms_onnx_parse(const uint8_t *buf, size_t len, const char *what, ms_onnx_model *m,
                            medseg_error *err);
void ms_onnx_free(ms_onnx_model *m);

/* Copies a FLOAT tensor's values (raw_data or float_data) to out[t->numel]. */
medseg_status ms_onnx_tensor_f32(const ms_onnx_tensor *t, float *out, const char *what, medseg_error *err);
/* Copies an INT64 / INT32 tensor's values to out[t->numel] as int64. */
medseg_status ms_onnx_tensor_i64(const ms_onnx_tensor *t, int64_t *out, const char *what, medseg_error *err);

#endif
