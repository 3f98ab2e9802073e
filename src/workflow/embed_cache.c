/* Per-slice embedding cache on disk (see embed_cache.h for the key and the layout). */
#define _XOPEN_SOURCE 700
#include "core/kernels.h"
#include "workflow/embed_cache.h"
#include "models/sam.h"
#include "weights/import.h"

#include <errno.h>
#include <limits.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>

#define EMB_FLOATS ((size_t)MS_EMBED_DIM * MS_EMBED_HW * MS_EMBED_HW)
#define HEADER_BYTES (8 + 5 * 4 + 32)
#define MEMO_MAX_BYTES ((size_t)4 << 20)

struct ms_embed_cache {
    char dir[4096];
    char model_id[65];
};

static medseg_status make_dir(const char *path, medseg_error *err)
{
    if (mkdir(path, 0777) == 0 || errno == EEXIST) {
        struct stat st;
        if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) return MEDSEG_OK;
        return ms_error(err, MEDSEG_ERR_IO, "%s: exists and is not a folder", path);
    }
    return ms_error(err, MEDSEG_ERR_IO, "%s: cannot create folder: %s", path, strerror(errno));
}

/* Model id via the memo DIR/models.tsv: "abspath \t size \t mtime_ns \t sha256" per line. */
static medseg_status model_id(ms_embed_cache *c, const char *model_path, medseg_error *err)
{
    char abs[PATH_MAX];
    if (!realpath(model_path, abs)) return ms_error(err, MEDSEG_ERR_IO, "%s: %s", model_path, strerror(errno));
    struct stat st;
    if (stat(abs, &st) != 0) return ms_error(err, MEDSEG_ERR_IO, "%s: %s", model_path, strerror(errno));
    long long size = (long long)st.st_size;
    long long mtime = (long long)st.st_mtim.tv_sec * 1000000000LL + st.st_mtim.tv_nsec;
    char memo[4200];
    snprintf(memo, sizeof memo, "%s/models.tsv", c->dir);
    uint8_t *text = NULL;
    size_t len = 0;
    medseg_error e2;
    if (ms_read_file(memo, MEMO_MAX_BYTES, &text, &len, &e2) == MEDSEG_OK) {
        char *save = NULL;
        for (char *line = strtok_r((char *)text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
            char *tab1 = strchr(line, '\t');
            if (!tab1) continue;
            *tab1 = 0;
            long long s2, m2;
            char hex[65];
            if (!strcmp(line, abs) && sscanf(tab1 + 1, "%lld\t%lld\t%64s", &s2, &m2, hex) == 3 && s2 == size &&
                m2 == mtime && strlen(hex) == 64) {
                memcpy(c->model_id, hex, 65);
                free(text);
                return MEDSEG_OK;
            }
        }
        free(text);
        text = NULL;
    }
    medseg_status s = ms_sha256_file(abs, c->model_id, err);
    if (s) return s;
    /* rewrite the memo with this entry appended (atomic; a concurrent writer may lose an entry,
       which only costs a re-hash later) */
    ms_read_file(memo, MEMO_MAX_BYTES, &text, &len, &e2);
    ms_atomic_file af;
    if (ms_atomic_open(&af, memo, &e2) == MEDSEG_OK) {
        if (text && len) fwrite(text, 1, len, af.f);
        fprintf(af.f, "%s\t%lld\t%lld\t%s\n", abs, size, mtime, c->model_id);
        if (ms_atomic_commit(&af, &e2) != MEDSEG_OK) ms_atomic_abort(&af);
    }
    free(text);
    return MEDSEG_OK;
}

ms_embed_cache *ms_embed_cache_open(const char *dir, const char *model_path, medseg_error *err)
{
    ms_error_clear(err);
    if (!dir || !*dir || strlen(dir) > 3000) {
        ms_error(err, MEDSEG_ERR_ARG, "embedding cache: empty or too long folder name");
        return NULL;
    }
    ms_embed_cache *c = ms_calloc(1, sizeof *c, err, "embedding cache");
    if (!c) return NULL;
    snprintf(c->dir, sizeof c->dir, "%s", dir);
    if (make_dir(dir, err) || model_id(c, model_path, err)) {
        free(c);
        return NULL;
    }
    return c;
}

void ms_embed_cache_close(ms_embed_cache *c)
{
    free(c);
}

const char *ms_embed_cache_model_id(const ms_embed_cache *c)
{
    return c->model_id;
}

static void put_u32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static uint32_t get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void to_hex(const uint8_t *md, char hex[65])
{
    static const char d[] = "0123456789abcdef";
    for (int i = 0; i < 32; i++) {
        hex[2 * i] = d[md[i] >> 4];
        hex[2 * i + 1] = d[md[i] & 15];
    }
    hex[64] = 0;
}

static int from_hex(const char *hex, uint8_t md[32])
{
    for (int i = 0; i < 64; i++) {
        char ch = hex[i];
        int v = ch >= '0' && ch <= '9' ? ch - '0' : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : -1;
        if (v < 0) return 0;
        if (i & 1) md[i / 2] = (uint8_t)(md[i / 2] << 4 | v);
        else md[i / 2] = (uint8_t)v;
    }
    return hex[64] == 0;
}

void ms_embed_cache_key(const ms_embed_cache *c, const medseg_image *img, char hex[65])
{
    uint8_t md[32] = {0};
    unsigned int mdlen = 0;
    uint8_t dims[12];
    put_u32(dims, (uint32_t)img->width);
    put_u32(dims + 4, (uint32_t)img->height);
    put_u32(dims + 8, (uint32_t)img->channels);
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    static const char tag[] = "medseg-embed-v1";
    if (ctx && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1) {
        EVP_DigestUpdate(ctx, tag, sizeof tag);
        EVP_DigestUpdate(ctx, c->model_id, 64);
        EVP_DigestUpdate(ctx, dims, sizeof dims);
        EVP_DigestUpdate(ctx, img->data, (size_t)img->width * img->height * img->channels);
        /* bf16 embeddings differ from f32 ones: never serve one for the other (f32 keys unchanged) */
        if (ms_precision_get() == MS_PRECISION_BF16) EVP_DigestUpdate(ctx, "precision=bf16", 14);
        EVP_DigestFinal_ex(ctx, md, &mdlen);
    }
    EVP_MD_CTX_free(ctx);
    to_hex(md, hex);
}

static int entry_path(const ms_embed_cache *c, const char *key, char *out, size_t n, int mkparent)
{
    uint8_t md[32];
    if (strlen(key) != 64 || !from_hex(key, md)) return 0;
    snprintf(out, n, "%s/%.2s", c->dir, key);
    if (mkparent && make_dir(out, NULL) != MEDSEG_OK) return 0;
    snprintf(out, n, "%s/%.2s/%s.emb", c->dir, key, key);
    return 1;
}

int ms_embed_cache_has(const ms_embed_cache *c, const char *key)
{
    char path[4200];
    struct stat st;
    return entry_path(c, key, path, sizeof path, 0) && stat(path, &st) == 0 &&
           (size_t)st.st_size == HEADER_BYTES + EMB_FLOATS * sizeof(float);
}

medseg_status ms_embed_cache_get(ms_embed_cache *c, const char *key, int width, int height, float *emb, int *hit,
                                 medseg_error *err)
{
    *hit = 0;
    char path[4200];
    uint8_t want[32];
    if (!entry_path(c, key, path, sizeof path, 0) || !from_hex(key, want))
        return ms_error(err, MEDSEG_ERR_ARG, "embedding cache: malformed key");
    FILE *f = fopen(path, "rb");
    if (!f) return MEDSEG_OK; /* absent: a miss */
    uint8_t h[HEADER_BYTES];
    int ok = fread(h, 1, sizeof h, f) == sizeof h && !memcmp(h, "MSEMBED1", 8) && get_u32(h + 8) == 1 &&
             get_u32(h + 12) == (uint32_t)width && get_u32(h + 16) == (uint32_t)height &&
             get_u32(h + 20) == MS_EMBED_DIM && get_u32(h + 24) == MS_EMBED_HW && !memcmp(h + 28, want, 32);
    if (ok) ok = fread(emb, sizeof(float), EMB_FLOATS, f) == EMB_FLOATS && fgetc(f) == EOF;
    fclose(f);
    if (!ok) return MEDSEG_OK; /* truncated, foreign or corrupt entry: a miss, overwritten on put */
    uint8_t probe[4] = {1, 0, 0, 0};
    uint32_t one;
    memcpy(&one, probe, 4);
    if (one != 1) { /* big-endian host: the file is little-endian */
        for (size_t i = 0; i < EMB_FLOATS; i++) {
            uint32_t u;
            memcpy(&u, &emb[i], 4);
            u = get_u32((const uint8_t *)&u);
            memcpy(&emb[i], &u, 4);
        }
    }
    for (size_t i = 0; i < EMB_FLOATS; i++)
        if (!(emb[i] == emb[i]) || emb[i] > 1e30f || emb[i] < -1e30f) return MEDSEG_OK; /* not finite: a miss */
    *hit = 1;
    return MEDSEG_OK;
}

medseg_status ms_embed_cache_put(ms_embed_cache *c, const char *key, int width, int height, const float *emb,
                                 medseg_error *err)
{
    char path[4200];
    uint8_t md[32];
    if (!from_hex(key, md)) return ms_error(err, MEDSEG_ERR_ARG, "embedding cache: malformed key");
    if (!entry_path(c, key, path, sizeof path, 1))
        return ms_error(err, MEDSEG_ERR_IO, "%s: cannot create the cache folder for %.2s", c->dir, key);
    uint8_t h[HEADER_BYTES];
    memcpy(h, "MSEMBED1", 8);
    put_u32(h + 8, 1);
    put_u32(h + 12, (uint32_t)width);
    put_u32(h + 16, (uint32_t)height);
    put_u32(h + 20, MS_EMBED_DIM);
    put_u32(h + 24, MS_EMBED_HW);
    memcpy(h + 28, md, 32);
    ms_atomic_file af;
    medseg_status st = ms_atomic_open(&af, path, err);
    if (st) return st;
    int ok = fwrite(h, 1, sizeof h, af.f) == sizeof h;
    uint8_t probe[4] = {1, 0, 0, 0};
    uint32_t one;
    memcpy(&one, probe, 4);
    if (ok && one == 1) {
        ok = fwrite(emb, sizeof(float), EMB_FLOATS, af.f) == EMB_FLOATS;
    } else if (ok) {
        for (size_t i = 0; i < EMB_FLOATS && ok; i++) {
            uint32_t u;
            uint8_t b[4];
            memcpy(&u, &emb[i], 4);
            put_u32(b, u);
            ok = fwrite(b, 1, 4, af.f) == 4;
        }
    }
    if (!ok) {
        ms_atomic_abort(&af);
        return ms_error(err, MEDSEG_ERR_IO, "%s: write failed: %s", path, strerror(errno));
    }
    return ms_atomic_commit(&af, err);
}
