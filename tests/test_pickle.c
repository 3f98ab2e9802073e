/* Safe pickle subset: hand-built pickles (the opcodes torch.save writes), refused globals,
 * malformed and hostile inputs, strided tensor views, and small .pth zips built here with libzip. */
#include "testutil.h"
#include "weights/import.h"
#include "weights/pickle.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zip.h>

typedef struct {
    uint8_t *b;
    size_t n, cap;
} pb;

static void put(pb *p, const void *d, size_t n)
{
    if (p->n + n > p->cap) {
        p->cap = (p->n + n) * 2 + 64;
        p->b = realloc(p->b, p->cap);
        if (!p->b) exit(2);
    }
    memcpy(p->b + p->n, d, n);
    p->n += n;
}
static void op(pb *p, uint8_t c) { put(p, &c, 1); }
static void u32(pb *p, uint32_t v)
{
    uint8_t b[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    put(p, b, 4);
}
static void ustr(pb *p, const char *s) /* BINUNICODE */
{
    op(p, 'X');
    u32(p, (uint32_t)strlen(s));
    put(p, s, strlen(s));
}
static void glob(pb *p, const char *mod, const char *name) /* GLOBAL */
{
    op(p, 'c');
    put(p, mod, strlen(mod));
    op(p, '\n');
    put(p, name, strlen(name));
    op(p, '\n');
}
static void i1(pb *p, uint8_t v) { op(p, 'K'), op(p, v); }

/* One state_dict entry as torch 1.13 writes it. The rebuild function is memoised in slot 0 on
   first use and fetched with BINGET afterwards (as in real files). */
static void entry(pb *p, int *memo_set, const char *name, const char *stype, const char *key, int numel, int offset,
                  int ndim, const int *size, const int *stride)
{
    ustr(p, name);
    if (!*memo_set) {
        glob(p, "torch._utils", "_rebuild_tensor_v2");
        op(p, 'q'), op(p, 0);
        *memo_set = 1;
    } else {
        op(p, 'h'), op(p, 0);
    }
    op(p, '(');
    op(p, '(');
    ustr(p, "storage");
    glob(p, "torch", stype);
    ustr(p, key);
    ustr(p, "cpu");
    i1(p, (uint8_t)numel);
    op(p, 't');
    op(p, 'Q');
    i1(p, (uint8_t)offset);
    op(p, '(');
    for (int d = 0; d < ndim; d++) i1(p, (uint8_t)size[d]);
    op(p, 't');
    op(p, '(');
    for (int d = 0; d < ndim; d++) i1(p, (uint8_t)stride[d]);
    op(p, 't');
    op(p, 0x89); /* requires_grad False */
    glob(p, "collections", "OrderedDict");
    op(p, ')');
    op(p, 'R');
    op(p, 't');
    op(p, 'R');
}

/* OrderedDict state_dict: w [2,3] and wt = w.t() share storage "0" (6 floats), sl = w[:, 1:3]
   (offset 1), n = int64 scalar in storage "1". */
static pb build_sd(int wrap_model)
{
    pb p = {0};
    int memo = 0;
    op(&p, 0x80), op(&p, 2);
    if (wrap_model) { /* {"model": sd, "epoch": 3} */
        op(&p, '}');
        ustr(&p, "epoch");
        i1(&p, 3);
        op(&p, 's');
        ustr(&p, "model");
    }
    glob(&p, "collections", "OrderedDict");
    op(&p, ')');
    op(&p, 'R');
    op(&p, '(');
    entry(&p, &memo, "w", "FloatStorage", "0", 6, 0, 2, (int[]){2, 3}, (int[]){3, 1});
    entry(&p, &memo, "wt", "FloatStorage", "0", 6, 0, 2, (int[]){3, 2}, (int[]){1, 3});
    entry(&p, &memo, "sl", "FloatStorage", "0", 6, 1, 2, (int[]){2, 2}, (int[]){3, 1});
    entry(&p, &memo, "n", "LongStorage", "1", 1, 0, 0, NULL, NULL);
    op(&p, 'u');
    op(&p, '}'); /* state_dict._metadata-like BUILD state */
    op(&p, 'b');
    if (wrap_model) op(&p, 's');
    op(&p, '.');
    return p;
}

static medseg_status parse(const pb *p, ms_pk_doc *doc, medseg_error *e)
{
    return ms_pk_parse(p->b, p->n, "t.pth: data.pkl", doc, e);
}

static void expect_fail(const char *label, const void *bytes, size_t n, medseg_status want, const char *needle)
{
    ms_pk_doc doc;
    medseg_error e;
    medseg_status st = ms_pk_parse(bytes, n, "x.pth: data.pkl", &doc, &e);
    CHECK(st != MEDSEG_OK, "%s: accepted", label);
    if (st == MEDSEG_OK) {
        ms_pk_doc_free(&doc);
        return;
    }
    if (want) CHECK(st == want, "%s: %s, want %s (%s)", label, medseg_status_name(st), medseg_status_name(want), e.message);
    CHECK(strstr(e.message, "x.pth: data.pkl") != NULL, "%s: message lacks the file: %s", label, e.message);
    if (needle) CHECK(strstr(e.message, needle) != NULL, "%s: message lacks '%s': %s", label, needle, e.message);
    printf("  %-34s -> %s\n", label, e.message);
}

static void test_state_dict(void)
{
    pb p = build_sd(0);
    ms_pk_doc doc;
    medseg_error e;
    CHECK_OK(parse(&p, &doc, &e), &e);
    const ms_pk_value *r = doc.root;
    CHECK(r && r->kind == MS_PK_DICT && r->n == 8, "root: kind %d, %zu items", r ? (int)r->kind : -1, r ? r->n : 0);
    const ms_pk_value *w = ms_pk_dict_get(r, "w"), *wt = ms_pk_dict_get(r, "wt"), *sl = ms_pk_dict_get(r, "sl"),
                      *n = ms_pk_dict_get(r, "n");
    CHECK(w && w->kind == MS_PK_TENSOR && w->dtype == MS_F32 && w->ndim == 2 && w->shape[0] == 2 &&
              w->shape[1] == 3 && w->stride[0] == 3 && w->stride[1] == 1 && w->storage &&
              !strcmp(w->storage->s, "0") && w->storage->numel == 6,
          "tensor w");
    CHECK(n && n->kind == MS_PK_TENSOR && n->dtype == MS_I64 && n->ndim == 0 && !strcmp(n->storage->s, "1"),
          "int64 scalar n");
    CHECK(ms_pk_dict_get(r, "missing") == NULL, "missing key");
    float stg[6] = {0, 1, 2, 3, 4, 5};
    float out[6];
    if (w && wt && sl) {
        CHECK_OK(ms_pk_tensor_copy(w, (const uint8_t *)stg, sizeof stg, out, sizeof out, "w", &e), &e);
        CHECK(!memcmp(out, stg, sizeof out), "w copy");
        CHECK(ms_pk_tensor_is_whole_storage(w, sizeof stg) && !ms_pk_tensor_is_whole_storage(wt, sizeof stg),
              "whole-storage detection");
        CHECK_OK(ms_pk_tensor_copy(wt, (const uint8_t *)stg, sizeof stg, out, sizeof out, "wt", &e), &e);
        const float want_t[6] = {0, 3, 1, 4, 2, 5};
        CHECK(!memcmp(out, want_t, sizeof out), "transposed view: %g %g %g %g %g %g", out[0], out[1], out[2], out[3],
              out[4], out[5]);
        CHECK_OK(ms_pk_tensor_copy(sl, (const uint8_t *)stg, sizeof stg, out, 4 * sizeof(float), "sl", &e), &e);
        const float want_s[4] = {1, 2, 4, 5};
        CHECK(!memcmp(out, want_s, sizeof want_s), "offset view: %g %g %g %g", out[0], out[1], out[2], out[3]);
        /* the same view over a storage that is too short: index bounds-checked */
        CHECK(ms_pk_tensor_copy(sl, (const uint8_t *)stg, 5 * sizeof(float), out, 4 * sizeof(float), "sl", &e) ==
                  MEDSEG_ERR_FORMAT,
              "short storage accepted");
        printf("  %-34s -> %s\n", "view past the storage", e.message);
    }
    ms_pk_doc_free(&doc);

    /* every strict prefix is refused (STOP is last) */
    int accepted = 0;
    for (size_t k = 0; k < p.n; k++) {
        if (ms_pk_parse(p.b, k, "x", &doc, &e) == MEDSEG_OK) {
            accepted++;
            ms_pk_doc_free(&doc);
        }
    }
    CHECK(accepted == 0, "%d truncated pickles accepted", accepted);

    /* random byte mutations: parse or fail cleanly (ASan/UBSan check memory) */
    srand(1234);
    int ok = 0;
    for (int it = 0; it < 3000; it++) {
        uint8_t *c = malloc(p.n);
        memcpy(c, p.b, p.n);
        int k = 1 + rand() % 3;
        for (int j = 0; j < k; j++) c[rand() % p.n] = (uint8_t)rand();
        if (ms_pk_parse(c, p.n, "x", &doc, &e) == MEDSEG_OK) {
            ok++;
            ms_pk_doc_free(&doc);
        }
        free(c);
    }
    printf("  random mutations that still parse: %d of 3000\n", ok);
    free(p.b);
}

static void test_refused(void)
{
    static const uint8_t os_system[] = "\x80\x02" "cos\nsystem\nq\x00X\x02\x00\x00\x00ls\x85R.";
    expect_fail("os.system", os_system, sizeof os_system - 1, MEDSEG_ERR_UNSUPPORTED, "refusing global 'os.system'");
    static const uint8_t ev[] = "\x80\x02" "c__builtin__\neval\nX\x01\x00\x00\x001\x85R.";
    expect_fail("__builtin__.eval", ev, sizeof ev - 1, MEDSEG_ERR_UNSUPPORTED, "'__builtin__.eval'");
    static const uint8_t sg[] = "\x80\x04\x8c\x08" "builtins\x8c\x04" "exec\x93.";
    expect_fail("STACK_GLOBAL builtins.exec", sg, sizeof sg - 1, MEDSEG_ERR_UNSUPPORTED, "'builtins.exec'");
    static const uint8_t tl[] = "\x80\x02" "ctorch\nload\n.";
    expect_fail("torch.load", tl, sizeof tl - 1, MEDSEG_ERR_UNSUPPORTED, "'torch.load'");
    static const uint8_t mod[] = "\x80\x02" "ctorch.nn.modules.linear\nLinear\n)\x81.";
    expect_fail("nn.Linear (a whole module)", mod, sizeof mod - 1, MEDSEG_ERR_UNSUPPORTED, "only state_dict");
    static const uint8_t call_storage[] = "\x80\x02" "ctorch\nFloatStorage\n)R.";
    expect_fail("calling a storage type", call_storage, sizeof call_storage - 1, MEDSEG_ERR_UNSUPPORTED, NULL);
    static const uint8_t inst[] = "\x80\x02(ios\nsystem\n.";
    expect_fail("INST opcode", inst, sizeof inst - 1, MEDSEG_ERR_UNSUPPORTED, "opcode 0x69");
}

static void test_malformed(void)
{
    expect_fail("empty", "", 0, MEDSEG_ERR_FORMAT, "no STOP");
    expect_fail("protocol only", "\x80\x02", 2, MEDSEG_ERR_FORMAT, NULL);
    expect_fail("protocol 9", "\x80\x09N.", 4, MEDSEG_ERR_UNSUPPORTED, NULL);
    expect_fail("STOP on empty stack", ".", 1, MEDSEG_ERR_FORMAT, "underflow");
    expect_fail("string past the end", "X\xf0\xff\xff\x0f" "abc.", 9, 0, NULL);
    expect_fail("string over the cap", "B\x00\x00\x00\x7f" "abc.", 9, MEDSEG_ERR_NOMEM, NULL);
    expect_fail("BINGET of unset memo", "h\x05.", 3, MEDSEG_ERR_FORMAT, "memo");
    expect_fail("memo index 2^32-1", "]r\xff\xff\xff\xff.", 7, MEDSEG_ERR_NOMEM, "memo");
    expect_fail("SETITEM on a list", "]K\x01K\x02s.", 7, MEDSEG_ERR_FORMAT, "non-dict");
    expect_fail("SETITEMS odd count", "}(K\x01u.", 6, MEDSEG_ERR_FORMAT, "odd");
    expect_fail("APPENDS without MARK", "]K\x01" "e.", 5, MEDSEG_ERR_FORMAT, "MARK");
    expect_fail("TUPLE2 of one", "K\x01\x86.", 4, MEDSEG_ERR_FORMAT, "underflow");
    expect_fail("pop across a MARK", "K\x01(\x85.", 5, MEDSEG_ERR_FORMAT, "underflow");
    expect_fail("LONG1 of 9 bytes", "\x8a\x09\x01\x02\x03\x04\x05\x06\x07\x08\x09.", 12, MEDSEG_ERR_UNSUPPORTED, NULL);
    expect_fail("REDUCE of a non-global", "K\x01)R.", 5, MEDSEG_ERR_FORMAT, NULL);
    static const uint8_t badkey[] = "\x80\x02(X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x04\x00\x00\x00../xX\x03"
                                    "\x00\x00\x00" "cpuK\x06tQ.";
    expect_fail("storage key with a path", badkey, sizeof badkey - 1, MEDSEG_ERR_FORMAT, "storage key");
    static const uint8_t negstride[] = "\x80\x02" "ctorch._utils\n_rebuild_tensor_v2\n((X\x07\x00\x00\x00storagectorch\n"
                                       "FloatStorage\nX\x01\x00\x00\x00" "0X\x03\x00\x00\x00" "cpuK\x06tQK\x00K\x02\x85"
                                       "J\xff\xff\xff\xff\x85\x89NtR.";
    expect_fail("negative stride", negstride, sizeof negstride - 1, MEDSEG_ERR_FORMAT, "negative");
    static const uint8_t huge[] = "\x80\x02" "ctorch._utils\n_rebuild_tensor_v2\n((X\x07\x00\x00\x00storagectorch\n"
                                  "FloatStorage\nX\x01\x00\x00\x00" "0X\x03\x00\x00\x00" "cpuK\x06tQK\x00"
                                  "\x8a\x06\x00\x00\x00\x00\x00\x01\x8a\x06\x00\x00\x00\x00\x00\x01\x86"
                                  "K\x01K\x01\x86\x89NtR.";
    expect_fail("shape 2^40 x 2^40", huge, sizeof huge - 1, MEDSEG_ERR_NOMEM, "2^50");

    /* a small but valid pickle with the less common opcodes */
    static const uint8_t misc[] = "\x80\x04\x95\x10\x00\x00\x00\x00\x00\x00\x00]\x94(\x8c\x01" "aG?\xf8\x00\x00\x00"
                                  "\x00\x00\x00\x8a\x02\xff\x7f" "J\xfe\xff\xff\xffM\x01\x01N\x88" "e.";
    ms_pk_doc doc;
    medseg_error e;
    CHECK_OK(ms_pk_parse(misc, sizeof misc - 1, "misc", &doc, &e), &e);
    const ms_pk_value *l = doc.root;
    CHECK(l && l->kind == MS_PK_LIST && l->n == 7, "misc list: %zu items", l ? l->n : 0);
    if (l && l->n == 7) {
        CHECK(l->items[0]->kind == MS_PK_STR && !strcmp(l->items[0]->s, "a"), "short unicode");
        CHECK(l->items[1]->kind == MS_PK_FLOAT && l->items[1]->f == 1.5, "BINFLOAT %g", l->items[1]->f);
        CHECK(l->items[2]->kind == MS_PK_INT && l->items[2]->i == 32767, "LONG1 %lld", (long long)l->items[2]->i);
        CHECK(l->items[3]->i == -2, "BININT %lld", (long long)l->items[3]->i);
        CHECK(l->items[4]->i == 257, "BININT2 %lld", (long long)l->items[4]->i);
        CHECK(l->items[5]->kind == MS_PK_NONE && l->items[6]->kind == MS_PK_BOOL && l->items[6]->i == 1, "None, True");
    }
    ms_pk_doc_free(&doc);
    static const uint8_t neg[] = "\x8a\x01\xff.";
    CHECK_OK(ms_pk_parse(neg, 4, "neg", &doc, &e), &e);
    CHECK(doc.root && doc.root->i == -1, "LONG1 -1");
    ms_pk_doc_free(&doc);
}

static void test_limits(void)
{
    /* nested lists: depth 60 is fine, depth 100 is refused */
    for (int depth = 60; depth <= 100; depth += 40) {
        pb p = {0};
        for (int i = 0; i < depth; i++) op(&p, ']');
        for (int i = 0; i < depth - 1; i++) op(&p, 'a');
        op(&p, '.');
        ms_pk_doc doc;
        medseg_error e;
        medseg_status st = ms_pk_parse(p.b, p.n, "x.pth: data.pkl", &doc, &e);
        if (depth == 60) {
            CHECK(st == MEDSEG_OK, "depth 60: %s", e.message);
            if (!st) ms_pk_doc_free(&doc);
        } else {
            expect_fail("lists nested 100 deep", p.b, p.n, MEDSEG_ERR_UNSUPPORTED, "nested");
        }
        free(p.b);
    }
    pb m = {0};
    for (int i = 0; i < 300; i++) op(&m, '(');
    op(&m, '.');
    expect_fail("300 open MARKs", m.b, m.n, MEDSEG_ERR_UNSUPPORTED, "MARK");
    free(m.b);
    /* a million stack entries (the same memoised list, so no new objects) */
    pb s = {0};
    op(&s, ']');
    op(&s, 'q'), op(&s, 0);
    for (int i = 0; i < MS_PK_MAX_STACK; i++) op(&s, 'h'), op(&s, 0);
    op(&s, '.');
    expect_fail("stack of a million", s.b, s.n, MEDSEG_ERR_NOMEM, "stack");
    free(s.b);
}

/* ---- .pth zips built with libzip */

static char tmpdir[256];

static int make_zip(const char *path, const char *const *names, const void *const *data, const size_t *lens, int n)
{
    int ze;
    zip_t *z = zip_open(path, ZIP_CREATE | ZIP_TRUNCATE, &ze);
    if (!z) return -1;
    for (int i = 0; i < n; i++) {
        zip_source_t *src = zip_source_buffer(z, data[i], lens[i], 0);
        zip_int64_t idx = src ? zip_file_add(z, names[i], src, ZIP_FL_OVERWRITE) : -1;
        if (idx < 0) {
            zip_source_free(src);
            zip_discard(z);
            return -1;
        }
        zip_set_file_compression(z, (zip_uint64_t)idx, ZIP_CM_STORE, 0);
    }
    return zip_close(z);
}

static void test_pth_zip(void)
{
    char path[512];
    snprintf(path, sizeof path, "%s/t.pth", tmpdir);
    float f[6] = {0, 1, 2, 3, 4, 5};
    int64_t nbt = 42;
    pb sd = build_sd(0), wrapped = build_sd(1);
    const char *names[] = {"t/data.pkl", "t/data/0", "t/data/1", "t/version"};
    const void *data[] = {sd.b, f, &nbt, "3\n"};
    size_t lens[] = {sd.n, sizeof f, sizeof nbt, 2};
    medseg_error e;
    ms_tensors ts;

    CHECK(make_zip(path, names, data, lens, 4) == 0, "zip written");
    CHECK_OK(ms_import_pth(path, &ts, &e), &e);
    CHECK(ts.n == 4, "%zu tensors", ts.n);
    const ms_tensor *wt = ms_tensors_find(&ts, "wt"), *n = ms_tensors_find(&ts, "n"), *w = ms_tensors_find(&ts, "w");
    const float want_t[6] = {0, 3, 1, 4, 2, 5};
    CHECK(w && w->nbytes == sizeof f && !memcmp(w->data, f, sizeof f), "w");
    CHECK(wt && wt->ndim == 2 && wt->shape[0] == 3 && !memcmp(wt->data, want_t, sizeof want_t), "wt");
    CHECK(n && n->dtype == MS_I64 && n->ndim == 0 && *(const int64_t *)n->data == 42, "int64 scalar");
    ms_tensors_free(&ts);

    /* {"model": state_dict, "epoch": 3} */
    data[0] = wrapped.b;
    lens[0] = wrapped.n;
    CHECK(make_zip(path, names, data, lens, 4) == 0, "zip written");
    CHECK_OK(ms_import_pth(path, &ts, &e), &e);
    CHECK(ts.n == 4, "under 'model': %zu tensors", ts.n);
    ms_tensors_free(&ts);
    data[0] = sd.b;
    lens[0] = sd.n;

    /* storage shorter than its declared size */
    lens[1] = 8;
    CHECK(make_zip(path, names, data, lens, 4) == 0, "zip written");
    CHECK(ms_import_pth(path, &ts, &e) == MEDSEG_ERR_FORMAT && strstr(e.message, "data/0"), "short storage: %s",
          e.message);
    printf("  %-34s -> %s\n", "short storage", e.message);
    lens[1] = sizeof f;
    /* storage missing */
    CHECK(make_zip(path, names, data, lens, 2) == 0, "zip written");
    CHECK(ms_import_pth(path, &ts, &e) == MEDSEG_ERR_FORMAT && strstr(e.message, "missing"), "missing storage: %s",
          e.message);
    printf("  %-34s -> %s\n", "missing storage", e.message);
    /* no data.pkl */
    CHECK(make_zip(path, names + 1, data + 1, lens + 1, 3) == 0, "zip written");
    CHECK(ms_import_pth(path, &ts, &e) == MEDSEG_ERR_FORMAT && strstr(e.message, "data.pkl"), "no data.pkl: %s",
          e.message);
    /* hostile pickle inside the zip: the message names the file and the global */
    static const char os_system[] = "\x80\x02" "cos\nsystem\nq\x00X\x02\x00\x00\x00ls\x85R.";
    data[0] = os_system;
    lens[0] = sizeof os_system - 1;
    CHECK(make_zip(path, names, data, lens, 4) == 0, "zip written");
    char want[600];
    snprintf(want, sizeof want, "%s: data.pkl: refusing global 'os.system' (only state_dict pickles are read)", path);
    CHECK(ms_import_pth(path, &ts, &e) == MEDSEG_ERR_UNSUPPORTED && !strcmp(e.message, want), "os.system in .pth: %s",
          e.message);
    printf("  %-34s -> %s\n", "os.system in a .pth", e.message);
    /* a dict holding a non-tensor */
    static const char notensor[] = "\x80\x02}X\x01\x00\x00\x00" "aK\x01s.";
    data[0] = notensor;
    lens[0] = sizeof notensor - 1;
    CHECK(make_zip(path, names, data, lens, 4) == 0, "zip written");
    CHECK(ms_import_pth(path, &ts, &e) == MEDSEG_ERR_FORMAT && strstr(e.message, "not a tensor"), "non-tensor: %s",
          e.message);
    remove(path);
    free(sd.b);
    free(wrapped.b);
}

int main(void)
{
    const char *t = getenv("TMPDIR");
    snprintf(tmpdir, sizeof tmpdir, "%s/test_pickle_XXXXXX", t && *t ? t : "/tmp");
    if (!mkdtemp(tmpdir)) return 2;
    test_state_dict();
    test_refused();
    test_malformed();
    test_limits();
    test_pth_zip();
    rmdir(tmpdir);
    return tu_finish("test_pickle");
}
