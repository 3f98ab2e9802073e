/* A safe reader for the subset of Python pickle (protocol 2..5) that torch.save writes into
 * data.pkl for a state_dict. It is a parser, never an executor: it builds a small value tree and
 * recognises a fixed whitelist of globals (collections.OrderedDict, torch._utils._rebuild_tensor_v2,
 * torch._utils._rebuild_parameter, torch.<T>Storage). Any other global is refused with its name
 * (ms_pk_parse), or, in lenient mode (ms_pk_parse_opts with MS_PK_LENIENT), kept as an opaque
 * placeholder that is never called, so a reader can step over trainer objects in a training
 * checkpoint to reach the state_dict. Every read is bounds-checked; stack depth, memo size, object count, nesting and string length
 * are capped. */
#ifndef MS_PICKLE_H
#define MS_PICKLE_H

#include "weights/tensors.h"

#define MS_PK_MAX_STACK 1000000      /* values on the pickle stack */
#define MS_PK_MAX_MARKS 256          /* open MARKs */
#define MS_PK_MAX_DEPTH 64           /* container nesting of the value tree */
#define MS_PK_MAX_MEMO 10000000      /* memo slots */
#define MS_PK_MAX_OBJECTS 20000000   /* values created */
#define MS_PK_MAX_STRING (16u << 20) /* bytes in one string */

typedef enum {
    MS_PK_NONE = 0,
    MS_PK_BOOL,
    MS_PK_INT,
    MS_PK_FLOAT,
    MS_PK_STR,     /* str or bytes */
    MS_PK_TUPLE,
    MS_PK_LIST,
    MS_PK_DICT,    /* dict or OrderedDict; items[2k] = key, items[2k+1] = value, in insertion order */
    MS_PK_GLOBAL,  /* one of the whitelisted globals (gid) */
    MS_PK_STORAGE, /* a persistent id ('storage', type, key, location, numel) */
    MS_PK_TENSOR,  /* _rebuild_tensor_v2(storage, offset, size, stride, ...) */
    MS_PK_OPAQUE   /* lenient mode only: a non-whitelisted global, or anything built from one; never
                      called, .s holds "module.name" of the global it came from */
} ms_pk_kind;

typedef enum {
    MS_PKG_ORDERED_DICT = 1,
    MS_PKG_REBUILD_TENSOR_V2,
    MS_PKG_REBUILD_PARAMETER,
    MS_PKG_STORAGE_TYPE, /* dtype in .dtype */
    MS_PKG_REBUILD_FROM_TYPE_V2 /* torch._tensor._rebuild_from_type_v2(func, type, args, state) */
} ms_pk_global;

typedef struct ms_pk_value ms_pk_value;
struct ms_pk_value {
    ms_pk_kind kind;
    int depth;                 /* nesting depth of containers below this value */
    int64_t i;                 /* BOOL, INT; TENSOR: storage offset in elements */
    double f;                  /* FLOAT */
    char *s;                   /* STR (NUL-terminated copy), STORAGE: key */
    size_t slen;               /* STR: length in bytes (may contain NULs) */
    ms_pk_value **items;       /* TUPLE, LIST, DICT */
    size_t n, cap;
    ms_pk_global gid;          /* GLOBAL */
    ms_dtype dtype;            /* GLOBAL storage type, STORAGE, TENSOR */
    int64_t numel;             /* STORAGE: elements */
    ms_pk_value *storage;      /* TENSOR */
    int ndim;                  /* TENSOR */
    int64_t shape[MS_MAX_NDIM], stride[MS_MAX_NDIM];
};

/* All values of one parse (an arena); freed together. */
typedef struct {
    ms_pk_value **vals;
    size_t n, cap;
    ms_pk_value *root;
    size_t end;                /* offset just past the STOP opcode */
    char first_opaque[160];    /* lenient mode: the first non-whitelisted global seen, or "" */
} ms_pk_doc;

/* Parse options. Strict (0): any global outside the whitelist is refused (ms_pk_parse).
 * MS_PK_LENIENT: such a global becomes an MS_PK_OPAQUE value; calling, building or instantiating it
 * yields another opaque value. Nothing is ever executed either way: this only lets a reader walk
 * past objects it does not need (optimizer or trainer state in a training checkpoint) to reach
 * the tensors it does. The caller decides what to do if what it needs is opaque. */
#define MS_PK_LENIENT 1u
medseg_status ms_pk_parse_opts(const uint8_t *buf, size_t len, const char *name, unsigned flags, ms_pk_doc *doc,
                               medseg_error *err);

/* Parses buf[0..len) up to STOP. name prefixes error messages ("x.pth: data.pkl"). */
medseg_status ms_pk_parse(const uint8_t *buf, size_t len, const char *name, ms_pk_doc *doc, medseg_error *err);
void ms_pk_doc_free(ms_pk_doc *doc);

/* Value of a str key in a DICT, or NULL. */
const ms_pk_value *ms_pk_dict_get(const ms_pk_value *dict, const char *key);

/* Copies a TENSOR view out of its storage bytes into a contiguous row-major buffer of out_len
 * bytes (= numel * dtype size), honouring storage offset and strides; every index is checked
 * against storage_len. */
medseg_status ms_pk_tensor_copy(const ms_pk_value *t, const uint8_t *storage, size_t storage_len, void *out,
                                size_t out_len, const char *name, medseg_error *err);
/* Bytes of the contiguous tensor (numel * dtype size), or an error on overflow. */
medseg_status ms_pk_tensor_nbytes(const ms_pk_value *t, size_t *nbytes, const char *name, medseg_error *err);
/* 1 if the view is the whole storage, row-major contiguous from offset 0. */
int ms_pk_tensor_is_whole_storage(const ms_pk_value *t, size_t storage_len);

#endif
