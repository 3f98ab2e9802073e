/* Safe pickle subset for torch.save state_dicts: parses, never executes (see pickle.h).
 * ref: Python Lib/pickle.py opcode table (protocol 2..5), torch/_utils.py _rebuild_tensor_v2,
 *      torch/serialization.py _save (persistent id tuple). */
#include "weights/pickle.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const uint8_t *p;
    size_t len, pos;
    const char *name;
    medseg_error *err;
    ms_pk_doc *doc;
    ms_pk_value **stack;
    size_t sp, scap;
    size_t marks[MS_PK_MAX_MARKS];
    int nmarks;
    ms_pk_value **memo;
    size_t memo_cap, memo_count;
    size_t op_pos; /* offset of the opcode being executed, for messages */
    unsigned flags; /* MS_PK_LENIENT */
} pk_state;

static medseg_status fail(pk_state *s, medseg_status st, const char *what)
{
    return ms_error(s->err, st, "%s: %s at byte %zu", s->name, what, s->op_pos);
}

static void value_free(ms_pk_value *v)
{
    free(v->s);
    free(v->items);
    free(v);
}

void ms_pk_doc_free(ms_pk_doc *doc)
{
    if (!doc) return;
    for (size_t i = 0; i < doc->n; i++) value_free(doc->vals[i]);
    free(doc->vals);
    memset(doc, 0, sizeof *doc);
}

static ms_pk_value *new_value(pk_state *s, ms_pk_kind kind)
{
    ms_pk_doc *d = s->doc;
    if (d->n >= MS_PK_MAX_OBJECTS) {
        fail(s, MEDSEG_ERR_NOMEM, "too many objects");
        return NULL;
    }
    if (d->n == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 256;
        ms_pk_value **nv = realloc(d->vals, cap * sizeof *nv);
        if (!nv) {
            fail(s, MEDSEG_ERR_NOMEM, "out of memory");
            return NULL;
        }
        d->vals = nv;
        d->cap = cap;
    }
    ms_pk_value *v = calloc(1, sizeof *v);
    if (!v) {
        fail(s, MEDSEG_ERR_NOMEM, "out of memory");
        return NULL;
    }
    v->kind = kind;
    d->vals[d->n++] = v;
    return v;
}

static medseg_status push(pk_state *s, ms_pk_value *v)
{
    if (!v) return s->err ? s->err->status : MEDSEG_ERR_NOMEM;
    if (s->sp >= MS_PK_MAX_STACK) return fail(s, MEDSEG_ERR_NOMEM, "pickle stack too deep");
    if (s->sp == s->scap) {
        size_t cap = s->scap ? s->scap * 2 : 256;
        ms_pk_value **ns = realloc(s->stack, cap * sizeof *ns);
        if (!ns) return fail(s, MEDSEG_ERR_NOMEM, "out of memory");
        s->stack = ns;
        s->scap = cap;
    }
    s->stack[s->sp++] = v;
    return MEDSEG_OK;
}

static size_t floor_sp(const pk_state *s)
{
    return s->nmarks ? s->marks[s->nmarks - 1] : 0;
}

static ms_pk_value *pop(pk_state *s)
{
    if (s->sp <= floor_sp(s)) {
        fail(s, MEDSEG_ERR_FORMAT, "pickle stack underflow");
        return NULL;
    }
    return s->stack[--s->sp];
}

static ms_pk_value *top(pk_state *s)
{
    if (s->sp <= floor_sp(s)) {
        fail(s, MEDSEG_ERR_FORMAT, "pickle stack underflow");
        return NULL;
    }
    return s->stack[s->sp - 1];
}

/* Pops to the last MARK; the items are stack[*start .. s->sp) until the next push. */
static medseg_status pop_mark(pk_state *s, size_t *start)
{
    if (!s->nmarks) return fail(s, MEDSEG_ERR_FORMAT, "no MARK on the pickle stack");
    *start = s->marks[--s->nmarks];
    return MEDSEG_OK;
}

static medseg_status add_item(pk_state *s, ms_pk_value *c, ms_pk_value *v)
{
    if (c->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 4;
        ms_pk_value **ni = realloc(c->items, cap * sizeof *ni);
        if (!ni) return fail(s, MEDSEG_ERR_NOMEM, "out of memory");
        c->items = ni;
        c->cap = cap;
    }
    c->items[c->n++] = v;
    if (v->depth + 1 > c->depth) {
        c->depth = v->depth + 1;
        if (c->depth > MS_PK_MAX_DEPTH) return fail(s, MEDSEG_ERR_UNSUPPORTED, "containers nested too deeply");
    }
    return MEDSEG_OK;
}

static medseg_status need(pk_state *s, size_t k)
{
    if (s->len - s->pos < k) return fail(s, MEDSEG_ERR_FORMAT, "truncated pickle");
    return MEDSEG_OK;
}

static uint64_t rd_le(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

static medseg_status push_int(pk_state *s, int64_t i)
{
    ms_pk_value *v = new_value(s, MS_PK_INT);
    if (v) v->i = i;
    return push(s, v);
}

static medseg_status push_string(pk_state *s, uint64_t n)
{
    if (n > MS_PK_MAX_STRING) return fail(s, MEDSEG_ERR_NOMEM, "string over the length limit");
    medseg_status st = need(s, (size_t)n);
    if (st) return st;
    ms_pk_value *v = new_value(s, MS_PK_STR);
    if (!v) return s->err ? s->err->status : MEDSEG_ERR_NOMEM;
    v->s = malloc((size_t)n + 1);
    if (!v->s) return fail(s, MEDSEG_ERR_NOMEM, "out of memory");
    memcpy(v->s, s->p + s->pos, (size_t)n);
    v->s[n] = 0;
    v->slen = (size_t)n;
    s->pos += (size_t)n;
    return push(s, v);
}

static medseg_status memo_put(pk_state *s, uint64_t idx)
{
    ms_pk_value *v = top(s);
    if (!v) return s->err->status;
    if (idx >= MS_PK_MAX_MEMO) return fail(s, MEDSEG_ERR_NOMEM, "memo index over the limit");
    if (idx >= s->memo_cap) {
        size_t cap = s->memo_cap ? s->memo_cap : 256;
        while (cap <= idx) cap *= 2;
        ms_pk_value **nm = realloc(s->memo, cap * sizeof *nm);
        if (!nm) return fail(s, MEDSEG_ERR_NOMEM, "out of memory");
        memset(nm + s->memo_cap, 0, (cap - s->memo_cap) * sizeof *nm);
        s->memo = nm;
        s->memo_cap = cap;
    }
    if (!s->memo[idx]) s->memo_count++;
    s->memo[idx] = v;
    return MEDSEG_OK;
}

static medseg_status memo_get(pk_state *s, uint64_t idx)
{
    if (idx >= s->memo_cap || !s->memo[idx]) return fail(s, MEDSEG_ERR_FORMAT, "memo lookup of an unset slot");
    return push(s, s->memo[idx]);
}

/* Copies a global's module/name into a message-safe form. */
static void printable(char *dst, size_t cap, const char *src)
{
    size_t j = 0;
    for (size_t i = 0; src[i] && j + 1 < cap; i++) dst[j++] = isprint((unsigned char)src[i]) ? src[i] : '?';
    dst[j] = 0;
}

static medseg_status resolve_global(pk_state *s, const char *mod, const char *name)
{
    static const struct { const char *n; ms_dtype d; } storages[] = {
        {"FloatStorage", MS_F32}, {"DoubleStorage", MS_F64}, {"HalfStorage", MS_F16}, {"BFloat16Storage", MS_BF16},
        {"LongStorage", MS_I64},  {"IntStorage", MS_I32},    {"ShortStorage", MS_I16}, {"CharStorage", MS_I8},
        {"ByteStorage", MS_U8},   {"BoolStorage", MS_BOOL},
    };
    ms_pk_global gid = 0;
    ms_dtype dt = MS_F32;
    if (!strcmp(mod, "collections") && !strcmp(name, "OrderedDict")) gid = MS_PKG_ORDERED_DICT;
    else if (!strcmp(mod, "torch._utils") && !strcmp(name, "_rebuild_tensor_v2")) gid = MS_PKG_REBUILD_TENSOR_V2;
    else if (!strcmp(mod, "torch._utils") &&
             (!strcmp(name, "_rebuild_parameter") || !strcmp(name, "_rebuild_parameter_with_state")))
        gid = MS_PKG_REBUILD_PARAMETER;
    else if (!strcmp(mod, "torch._tensor") && !strcmp(name, "_rebuild_from_type_v2")) gid = MS_PKG_REBUILD_FROM_TYPE_V2;
    else if (!strcmp(mod, "torch")) {
        for (size_t i = 0; i < sizeof storages / sizeof storages[0]; i++)
            if (!strcmp(name, storages[i].n)) {
                gid = MS_PKG_STORAGE_TYPE;
                dt = storages[i].d;
            }
    }
    if (!gid) {
        char m[128], n[128];
        printable(m, sizeof m, mod);
        printable(n, sizeof n, name);
        if (s->flags & MS_PK_LENIENT) {
            /* a placeholder that is never called: see ms_pk_parse_opts */
            ms_pk_value *o = new_value(s, MS_PK_OPAQUE);
            if (!o) return s->err->status;
            size_t need_len = strlen(m) + strlen(n) + 2;
            o->s = malloc(need_len);
            if (!o->s) return fail(s, MEDSEG_ERR_NOMEM, "out of memory");
            snprintf(o->s, need_len, "%s.%s", m, n);
            o->slen = need_len - 1;
            if (!s->doc->first_opaque[0]) snprintf(s->doc->first_opaque, sizeof s->doc->first_opaque, "%s", o->s);
            return push(s, o);
        }
        return ms_error(s->err, MEDSEG_ERR_UNSUPPORTED, "%s: refusing global '%s.%s' (only state_dict pickles are read)",
                        s->name, m, n);
    }
    ms_pk_value *v = new_value(s, MS_PK_GLOBAL);
    if (v) {
        v->gid = gid;
        v->dtype = dt;
    }
    return push(s, v);
}

/* GLOBAL: "module\nname\n" */
static medseg_status read_line(pk_state *s, char *out, size_t cap)
{
    size_t i = 0;
    for (;;) {
        if (s->pos >= s->len) return fail(s, MEDSEG_ERR_FORMAT, "truncated pickle");
        char c = (char)s->p[s->pos++];
        if (c == '\n') break;
        if (i + 1 >= cap) return fail(s, MEDSEG_ERR_FORMAT, "GLOBAL name too long");
        out[i++] = c;
    }
    out[i] = 0;
    if (!i) return fail(s, MEDSEG_ERR_FORMAT, "empty GLOBAL name");
    return MEDSEG_OK;
}

static int is_int(const ms_pk_value *v)
{
    return v && (v->kind == MS_PK_INT || v->kind == MS_PK_BOOL);
}

static medseg_status make_tuple(pk_state *s, size_t start)
{
    ms_pk_value *t = new_value(s, MS_PK_TUPLE);
    if (!t) return s->err->status;
    for (size_t i = start; i < s->sp; i++) {
        medseg_status st = add_item(s, t, s->stack[i]);
        if (st) return st;
    }
    s->sp = start;
    return push(s, t);
}

/* torch._utils._rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad,
 * backward_hooks[, metadata]) */
static medseg_status rebuild_tensor(pk_state *s, const ms_pk_value *args)
{
    if (args->kind != MS_PK_TUPLE || args->n < 6 || args->n > 7)
        return fail(s, MEDSEG_ERR_FORMAT, "_rebuild_tensor_v2 called with unexpected arguments");
    const ms_pk_value *stg = args->items[0], *off = args->items[1], *size = args->items[2], *stride = args->items[3];
    if (stg->kind != MS_PK_STORAGE) return fail(s, MEDSEG_ERR_FORMAT, "_rebuild_tensor_v2 without a storage");
    if (!is_int(off) || off->i < 0) return fail(s, MEDSEG_ERR_FORMAT, "_rebuild_tensor_v2 with a bad offset");
    if (size->kind != MS_PK_TUPLE || stride->kind != MS_PK_TUPLE || size->n != stride->n)
        return fail(s, MEDSEG_ERR_FORMAT, "_rebuild_tensor_v2 with a bad size/stride");
    if (size->n > MS_MAX_NDIM) return fail(s, MEDSEG_ERR_UNSUPPORTED, "tensor with too many dimensions");
    ms_pk_value *t = new_value(s, MS_PK_TENSOR);
    if (!t) return s->err->status;
    t->storage = (ms_pk_value *)stg;
    t->dtype = stg->dtype;
    t->i = off->i;
    t->ndim = (int)size->n;
    for (size_t d = 0; d < size->n; d++) {
        const ms_pk_value *a = size->items[d], *b = stride->items[d];
        if (!is_int(a) || !is_int(b) || a->i < 0 || b->i < 0)
            return fail(s, MEDSEG_ERR_FORMAT, "_rebuild_tensor_v2 with a negative or non-integer size/stride");
        t->shape[d] = a->i;
        t->stride[d] = b->i;
    }
    /* bound the element count (and with it every product of dimensions used later) */
    uint64_t numel = 1;
    for (int d = 0; d < t->ndim; d++) {
        if (t->shape[d] && numel > ((uint64_t)1 << 50) / (uint64_t)t->shape[d])
            return fail(s, MEDSEG_ERR_NOMEM, "tensor with more than 2^50 elements");
        numel *= (uint64_t)t->shape[d];
    }
    return push(s, t);
}

/* lenient mode: the result of calling / instantiating an opaque value is opaque too */
static medseg_status push_opaque(pk_state *s, const ms_pk_value *from)
{
    ms_pk_value *o = new_value(s, MS_PK_OPAQUE);
    if (!o) return s->err->status;
    if (from && from->s) {
        o->s = strdup(from->s);
        if (!o->s) return fail(s, MEDSEG_ERR_NOMEM, "out of memory");
        o->slen = strlen(o->s);
    }
    return push(s, o);
}

static medseg_status do_reduce(pk_state *s, int newobj)
{
    ms_pk_value *args = pop(s);
    if (!args) return s->err->status;
    ms_pk_value *fn = pop(s);
    if (!fn) return s->err->status;
    if (fn->kind == MS_PK_OPAQUE) return push_opaque(s, fn);
    if (fn->kind != MS_PK_GLOBAL) return fail(s, MEDSEG_ERR_FORMAT, "call of a non-global");
    if (args->kind != MS_PK_TUPLE) return fail(s, MEDSEG_ERR_FORMAT, "call arguments are not a tuple");
    switch (fn->gid) {
    case MS_PKG_ORDERED_DICT: {
        ms_pk_value *d = new_value(s, MS_PK_DICT);
        if (!d) return s->err->status;
        if (args->n == 1 && !newobj && args->items[0]->kind == MS_PK_LIST) {
            const ms_pk_value *l = args->items[0];
            for (size_t i = 0; i < l->n; i++) {
                const ms_pk_value *pr = l->items[i];
                if (pr->kind != MS_PK_TUPLE || pr->n != 2)
                    return fail(s, MEDSEG_ERR_FORMAT, "OrderedDict() item is not a pair");
                medseg_status st = add_item(s, d, pr->items[0]);
                if (!st) st = add_item(s, d, pr->items[1]);
                if (st) return st;
            }
        } else if (args->n != 0) {
            return fail(s, MEDSEG_ERR_FORMAT, "OrderedDict() with unexpected arguments");
        }
        return push(s, d);
    }
    case MS_PKG_REBUILD_TENSOR_V2:
        if (newobj) break;
        return rebuild_tensor(s, args);
    case MS_PKG_REBUILD_PARAMETER:
        if (newobj) break;
        if (args->n < 1 || args->items[0]->kind != MS_PK_TENSOR)
            return fail(s, MEDSEG_ERR_FORMAT, "_rebuild_parameter without a tensor");
        return push(s, args->items[0]);
    case MS_PKG_REBUILD_FROM_TYPE_V2:
        /* (func, new_type, args, state): only a tensor rebuilt by _rebuild_tensor_v2 is taken; the
           subclass (e.g. Parameter) does not change the data */
        if (newobj) break;
        if (args->n != 4 || args->items[0]->kind != MS_PK_GLOBAL || args->items[0]->gid != MS_PKG_REBUILD_TENSOR_V2 ||
            args->items[2]->kind != MS_PK_TUPLE)
            return fail(s, MEDSEG_ERR_UNSUPPORTED, "_rebuild_from_type_v2 of something other than a tensor");
        return rebuild_tensor(s, args->items[2]);
    case MS_PKG_STORAGE_TYPE: break;
    }
    return fail(s, MEDSEG_ERR_UNSUPPORTED, "unsupported call of a whitelisted global");
}

static medseg_status do_persid(pk_state *s)
{
    ms_pk_value *pid = pop(s);
    if (!pid) return s->err->status;
    /* zip format: ('storage', type, key, location, numel); legacy format: the same plus
       view_metadata, which torch >= 1.0 always writes as None (ref: torch/serialization.py
       _legacy_save persistent_id) */
    if (pid->kind != MS_PK_TUPLE || (pid->n != 5 && pid->n != 6) || pid->items[0]->kind != MS_PK_STR ||
        strcmp(pid->items[0]->s, "storage") != 0)
        return fail(s, MEDSEG_ERR_FORMAT, "persistent id is not a ('storage', ...) tuple");
    if (pid->n == 6 && pid->items[5]->kind != MS_PK_NONE)
        return fail(s, MEDSEG_ERR_UNSUPPORTED, "storage view in a legacy checkpoint (pre-1.0 torch.save)");
    const ms_pk_value *type = pid->items[1], *key = pid->items[2], *numel = pid->items[4];
    if (type->kind != MS_PK_GLOBAL || type->gid != MS_PKG_STORAGE_TYPE)
        return fail(s, MEDSEG_ERR_FORMAT, "persistent id without a storage type");
    if (key->kind != MS_PK_STR || key->slen == 0 || key->slen > 64)
        return fail(s, MEDSEG_ERR_FORMAT, "persistent id with a bad storage key");
    for (size_t i = 0; i < key->slen; i++)
        if (!isalnum((unsigned char)key->s[i]) && key->s[i] != '_')
            return fail(s, MEDSEG_ERR_FORMAT, "persistent id with a bad storage key");
    if (!is_int(numel) || numel->i < 0) return fail(s, MEDSEG_ERR_FORMAT, "persistent id with a bad size");
    ms_pk_value *v = new_value(s, MS_PK_STORAGE);
    if (!v) return s->err->status;
    v->dtype = type->dtype;
    v->numel = numel->i;
    v->s = strdup(key->s);
    if (!v->s) return fail(s, MEDSEG_ERR_NOMEM, "out of memory");
    v->slen = key->slen;
    return push(s, v);
}

static medseg_status step(pk_state *s, int *done)
{
    medseg_status st = MEDSEG_OK;
    s->op_pos = s->pos;
    uint8_t op = s->p[s->pos++];
    ms_pk_value *v, *w, *c;
    size_t start = 0;
    switch (op) {
    case 0x80: /* PROTO */
        if ((st = need(s, 1))) return st;
        if (s->p[s->pos] > 5) return fail(s, MEDSEG_ERR_UNSUPPORTED, "pickle protocol above 5");
        s->pos++;
        return MEDSEG_OK;
    case 0x95: /* FRAME: 8-byte length; frames are just a read-ahead hint */
        if ((st = need(s, 8))) return st;
        s->pos += 8;
        return MEDSEG_OK;
    case '.': /* STOP */
        v = pop(s);
        if (!v) return s->err->status;
        s->doc->root = v;
        *done = 1;
        return MEDSEG_OK;
    case '(': /* MARK */
        if (s->nmarks >= MS_PK_MAX_MARKS) return fail(s, MEDSEG_ERR_UNSUPPORTED, "too many nested MARKs");
        s->marks[s->nmarks++] = s->sp;
        return MEDSEG_OK;
    case '}': return push(s, new_value(s, MS_PK_DICT));
    case ']': return push(s, new_value(s, MS_PK_LIST));
    case ')': return push(s, new_value(s, MS_PK_TUPLE));
    case 't': /* TUPLE */
        if ((st = pop_mark(s, &start))) return st;
        return make_tuple(s, start);
    case 0x85: case 0x86: case 0x87: { /* TUPLE1/2/3 */
        size_t k = (size_t)(op - 0x84);
        if (s->sp < floor_sp(s) + k) return fail(s, MEDSEG_ERR_FORMAT, "pickle stack underflow");
        return make_tuple(s, s->sp - k);
    }
    case 'q': /* BINPUT */
        if ((st = need(s, 1))) return st;
        return memo_put(s, s->p[s->pos++]);
    case 'r': /* LONG_BINPUT */
        if ((st = need(s, 4))) return st;
        s->pos += 4;
        return memo_put(s, rd_le(s->p + s->pos - 4, 4));
    case 0x94: /* MEMOIZE */
        return memo_put(s, s->memo_count);
    case 'h': /* BINGET */
        if ((st = need(s, 1))) return st;
        return memo_get(s, s->p[s->pos++]);
    case 'j': /* LONG_BINGET */
        if ((st = need(s, 4))) return st;
        s->pos += 4;
        return memo_get(s, rd_le(s->p + s->pos - 4, 4));
    case 'X': case 'T': case 'B': /* BINUNICODE, BINSTRING, BINBYTES: 4-byte length */
        if ((st = need(s, 4))) return st;
        s->pos += 4;
        return push_string(s, rd_le(s->p + s->pos - 4, 4));
    case 0x8c: case 'U': case 'C': /* SHORT_BINUNICODE, SHORT_BINSTRING, SHORT_BINBYTES */
        if ((st = need(s, 1))) return st;
        return push_string(s, s->p[s->pos++]);
    case 0x8d: case 0x8e: /* BINUNICODE8, BINBYTES8 */
        if ((st = need(s, 8))) return st;
        s->pos += 8;
        return push_string(s, rd_le(s->p + s->pos - 8, 8));
    case 'J': /* BININT */
        if ((st = need(s, 4))) return st;
        s->pos += 4;
        return push_int(s, (int32_t)(uint32_t)rd_le(s->p + s->pos - 4, 4));
    case 'K': /* BININT1 */
        if ((st = need(s, 1))) return st;
        return push_int(s, s->p[s->pos++]);
    case 'M': /* BININT2 */
        if ((st = need(s, 2))) return st;
        s->pos += 2;
        return push_int(s, (int64_t)rd_le(s->p + s->pos - 2, 2));
    case 0x8a: case 0x8b: { /* LONG1, LONG4: little-endian two's complement */
        int lb = op == 0x8a ? 1 : 4;
        if ((st = need(s, (size_t)lb))) return st;
        uint64_t n = rd_le(s->p + s->pos, lb);
        s->pos += (size_t)lb;
        if (n > 8) return fail(s, MEDSEG_ERR_UNSUPPORTED, "integer wider than 64 bits");
        if ((st = need(s, (size_t)n))) return st;
        uint64_t u = rd_le(s->p + s->pos, (int)n);
        if (n > 0 && n < 8 && (s->p[s->pos + n - 1] & 0x80)) u |= ~(uint64_t)0 << (8 * n);
        s->pos += (size_t)n;
        return push_int(s, (int64_t)u);
    }
    case 'G': { /* BINFLOAT: big-endian double */
        if ((st = need(s, 8))) return st;
        uint64_t u = 0;
        for (int i = 0; i < 8; i++) u = (u << 8) | s->p[s->pos + i];
        s->pos += 8;
        v = new_value(s, MS_PK_FLOAT);
        if (v) memcpy(&v->f, &u, 8);
        return push(s, v);
    }
    case 'N': return push(s, new_value(s, MS_PK_NONE));
    case 0x88: case 0x89: /* NEWTRUE, NEWFALSE */
        v = new_value(s, MS_PK_BOOL);
        if (v) v->i = op == 0x88;
        return push(s, v);
    case 'c': { /* GLOBAL */
        char mod[256], name[256];
        if ((st = read_line(s, mod, sizeof mod)) || (st = read_line(s, name, sizeof name))) return st;
        return resolve_global(s, mod, name);
    }
    case 0x93: /* STACK_GLOBAL */
        w = pop(s);
        if (!w) return s->err->status;
        v = pop(s);
        if (!v) return s->err->status;
        if (v->kind != MS_PK_STR || w->kind != MS_PK_STR || strlen(v->s) != v->slen || strlen(w->s) != w->slen)
            return fail(s, MEDSEG_ERR_FORMAT, "STACK_GLOBAL without two strings");
        return resolve_global(s, v->s, w->s);
    case 'R': return do_reduce(s, 0);
    case 0x81: return do_reduce(s, 1); /* NEWOBJ */
    case 'b': /* BUILD: the state of a dict (state_dict._metadata) or tensor is not needed */
        w = pop(s);
        if (!w) return s->err->status;
        v = top(s);
        if (!v) return s->err->status;
        if (v->kind != MS_PK_DICT && v->kind != MS_PK_TENSOR && !(s->flags & MS_PK_LENIENT))
            return fail(s, MEDSEG_ERR_UNSUPPORTED, "BUILD of an unsupported object");
        return MEDSEG_OK;
    case 's': /* SETITEM */
        w = pop(s);
        if (!w) return s->err->status;
        v = pop(s);
        if (!v) return s->err->status;
        c = top(s);
        if (!c) return s->err->status;
        if (c->kind != MS_PK_DICT) return fail(s, MEDSEG_ERR_FORMAT, "SETITEM on a non-dict");
        if ((st = add_item(s, c, v))) return st;
        return add_item(s, c, w);
    case 'u': /* SETITEMS */
        if ((st = pop_mark(s, &start))) return st;
        if (start <= floor_sp(s) || s->stack[start - 1]->kind != MS_PK_DICT)
            return fail(s, MEDSEG_ERR_FORMAT, "SETITEMS on a non-dict");
        if ((s->sp - start) % 2) return fail(s, MEDSEG_ERR_FORMAT, "SETITEMS with an odd item count");
        c = s->stack[start - 1];
        for (size_t i = start; i < s->sp; i++)
            if ((st = add_item(s, c, s->stack[i]))) return st;
        s->sp = start;
        return MEDSEG_OK;
    case 'a': /* APPEND */
        w = pop(s);
        if (!w) return s->err->status;
        c = top(s);
        if (!c) return s->err->status;
        if (c->kind != MS_PK_LIST) return fail(s, MEDSEG_ERR_FORMAT, "APPEND on a non-list");
        return add_item(s, c, w);
    case 'e': /* APPENDS */
        if ((st = pop_mark(s, &start))) return st;
        if (start <= floor_sp(s) || s->stack[start - 1]->kind != MS_PK_LIST)
            return fail(s, MEDSEG_ERR_FORMAT, "APPENDS on a non-list");
        c = s->stack[start - 1];
        for (size_t i = start; i < s->sp; i++)
            if ((st = add_item(s, c, s->stack[i]))) return st;
        s->sp = start;
        return MEDSEG_OK;
    case 'Q': return do_persid(s); /* BINPERSID */
    case '0': /* POP */
        if (s->nmarks && s->sp == floor_sp(s)) {
            s->nmarks--;
            return MEDSEG_OK;
        }
        return pop(s) ? MEDSEG_OK : s->err->status;
    case '1': /* POP_MARK */
        if ((st = pop_mark(s, &start))) return st;
        s->sp = start;
        return MEDSEG_OK;
    case '2': /* DUP */
        v = top(s);
        return v ? push(s, v) : s->err->status;
    case 0x8f: /* EMPTY_SET: kept as a list */
        return push(s, new_value(s, MS_PK_LIST));
    case 0x90: /* ADDITEMS */
        if ((st = pop_mark(s, &start))) return st;
        if (start <= floor_sp(s) || s->stack[start - 1]->kind != MS_PK_LIST)
            return fail(s, MEDSEG_ERR_FORMAT, "ADDITEMS on a non-set");
        c = s->stack[start - 1];
        for (size_t i = start; i < s->sp; i++)
            if ((st = add_item(s, c, s->stack[i]))) return st;
        s->sp = start;
        return MEDSEG_OK;
    case 0x91: case 'l': /* FROZENSET, LIST: items since the MARK */
        if ((st = pop_mark(s, &start))) return st;
        c = new_value(s, MS_PK_LIST);
        if (!c) return s->err->status;
        for (size_t i = start; i < s->sp; i++)
            if ((st = add_item(s, c, s->stack[i]))) return st;
        s->sp = start;
        return push(s, c);
    case 'd': /* DICT: key/value pairs since the MARK */
        if ((st = pop_mark(s, &start))) return st;
        if ((s->sp - start) % 2) return fail(s, MEDSEG_ERR_FORMAT, "DICT with an odd item count");
        c = new_value(s, MS_PK_DICT);
        if (!c) return s->err->status;
        for (size_t i = start; i < s->sp; i++)
            if ((st = add_item(s, c, s->stack[i]))) return st;
        s->sp = start;
        return push(s, c);
    case 0x92: /* NEWOBJ_EX: cls, args, kwargs; only an opaque class (lenient mode) */
        if (!(w = pop(s)) || !(v = pop(s)) || !(c = pop(s))) return s->err->status;
        if (c->kind == MS_PK_OPAQUE) return push_opaque(s, c);
        return fail(s, MEDSEG_ERR_UNSUPPORTED, "NEWOBJ_EX of a whitelisted global");
    default: {
        char m[64];
        snprintf(m, sizeof m, "unsupported pickle opcode 0x%02x", op);
        return fail(s, MEDSEG_ERR_UNSUPPORTED, m);
    }
    }
}

medseg_status ms_pk_parse(const uint8_t *buf, size_t len, const char *name, ms_pk_doc *doc, medseg_error *err)
{
    return ms_pk_parse_opts(buf, len, name, 0, doc, err);
}

medseg_status ms_pk_parse_opts(const uint8_t *buf, size_t len, const char *name, unsigned flags, ms_pk_doc *doc,
                               medseg_error *err)
{
    memset(doc, 0, sizeof *doc);
    medseg_error local;
    pk_state s = {.p = buf, .len = len, .name = name, .err = err ? err : &local, .doc = doc, .flags = flags};
    ms_error_clear(s.err);
    medseg_status st = MEDSEG_OK;
    int done = 0;
    while (!done) {
        if (s.pos >= s.len) {
            s.op_pos = s.pos;
            st = fail(&s, MEDSEG_ERR_FORMAT, "truncated pickle (no STOP)");
            break;
        }
        st = step(&s, &done);
        if (st) break;
    }
    free(s.stack);
    free(s.memo);
    if (st) ms_pk_doc_free(doc);
    else doc->end = s.pos;
    return st;
}

const ms_pk_value *ms_pk_dict_get(const ms_pk_value *dict, const char *key)
{
    if (!dict || dict->kind != MS_PK_DICT) return NULL;
    size_t kl = strlen(key);
    const ms_pk_value *found = NULL; /* the last assignment wins, as in Python */
    for (size_t i = 0; i + 1 < dict->n; i += 2) {
        const ms_pk_value *k = dict->items[i];
        if (k->kind == MS_PK_STR && k->slen == kl && !memcmp(k->s, key, kl)) found = dict->items[i + 1];
    }
    return found;
}

medseg_status ms_pk_tensor_nbytes(const ms_pk_value *t, size_t *nbytes, const char *name, medseg_error *err)
{
    size_t n = ms_dtype_size(t->dtype);
    for (int d = 0; d < t->ndim; d++)
        if ((uint64_t)t->shape[d] > SIZE_MAX || !ms_mul_size(n, (size_t)t->shape[d], &n))
            return ms_error(err, MEDSEG_ERR_NOMEM, "%s: tensor size overflows", name);
    *nbytes = n;
    return MEDSEG_OK;
}

int ms_pk_tensor_is_whole_storage(const ms_pk_value *t, size_t storage_len)
{
    if (t->i != 0) return 0;
    int64_t expect = 1;
    for (int d = t->ndim - 1; d >= 0; d--) {
        if (t->shape[d] != 1 && t->stride[d] != expect) return 0;
        expect *= t->shape[d];
    }
    size_t nb = 0;
    if (ms_pk_tensor_nbytes(t, &nb, "", NULL)) return 0;
    return nb == storage_len;
}

medseg_status ms_pk_tensor_copy(const ms_pk_value *t, const uint8_t *storage, size_t storage_len, void *out,
                                size_t out_len, const char *name, medseg_error *err)
{
    size_t esz = ms_dtype_size(t->dtype), nb = 0;
    medseg_status st = ms_pk_tensor_nbytes(t, &nb, name, err);
    if (st) return st;
    if (nb != out_len) return ms_error(err, MEDSEG_ERR_INTERNAL, "%s: output buffer size mismatch", name);
    if (nb == 0) return MEDSEG_OK;
    uint64_t elems = storage_len / esz;
    if (t->storage && (uint64_t)t->storage->numel < elems) elems = (uint64_t)t->storage->numel;
    /* the furthest element the view touches: offset + sum (shape-1)*stride, overflow-checked */
    uint64_t last = (uint64_t)t->i;
    for (int d = 0; d < t->ndim; d++) {
        uint64_t ext = (uint64_t)(t->shape[d] - 1), str = (uint64_t)t->stride[d];
        if (str && ext > (UINT64_MAX - last) / str)
            return ms_error(err, MEDSEG_ERR_FORMAT, "%s: tensor view overflows", name);
        last += ext * str;
    }
    if (last >= elems)
        return ms_error(err, MEDSEG_ERR_FORMAT,
                        "%s: tensor view reaches element %llu of a storage of %llu elements", name,
                        (unsigned long long)last, (unsigned long long)elems);
    uint8_t *o = out;
    int contiguous = 1;
    int64_t expect = 1;
    for (int d = t->ndim - 1; d >= 0; d--) {
        if (t->shape[d] != 1 && t->stride[d] != expect) contiguous = 0;
        expect *= t->shape[d];
    }
    if (contiguous) {
        memcpy(o, storage + (size_t)t->i * esz, nb);
        return MEDSEG_OK;
    }
    /* general strided copy: walk the index in row-major order; the innermost dimension is a run */
    int nd = t->ndim;
    int64_t idx[MS_MAX_NDIM] = {0};
    int64_t inner = t->shape[nd - 1], istr = t->stride[nd - 1];
    size_t rows = nb / esz / (size_t)inner;
    for (size_t r = 0; r < rows; r++) {
        uint64_t base = (uint64_t)t->i;
        for (int d = 0; d < nd - 1; d++) base += (uint64_t)idx[d] * (uint64_t)t->stride[d];
        if (istr == 1) {
            memcpy(o, storage + base * esz, (size_t)inner * esz);
            o += (size_t)inner * esz;
        } else {
            for (int64_t k = 0; k < inner; k++) {
                memcpy(o, storage + (base + (uint64_t)k * (uint64_t)istr) * esz, esz);
                o += esz;
            }
        }
        for (int d = nd - 2; d >= 0; d--) {
            if (++idx[d] < t->shape[d]) break;
            idx[d] = 0;
        }
    }
    return MEDSEG_OK;
}
