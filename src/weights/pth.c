/* PyTorch torch.save checkpoints (zip format, torch >= 1.6): "<prefix>/data.pkl" is read with the
 * safe pickle subset, tensors are copied out of the raw storages "<prefix>/data/<key>".
 * ref: torch/serialization.py _save / _load (zip layout, persistent ids), torch/_utils.py */
#include "weights/import.h"
#include "weights/pickle.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zip.h>
#include <zlib.h>

#define PTH_MAX_PKL ((zip_uint64_t)256 << 20)        /* data.pkl */
#define PTH_MAX_STORAGE ((zip_uint64_t)16 << 30)     /* one storage */
#define PTH_MAX_ENTRIES 1000000                      /* zip members */
#define PTH_MAX_TENSORS 20000 /* names are checked for duplicates pairwise */

typedef struct {
    char *key;
    uint8_t *buf; /* NULL once handed over to a tensor */
    size_t len;
    int uses;
} storage_slot;

typedef struct {
    const char *path;
    zip_t *z;
    char prefix[512];
    storage_slot *slots;
    size_t n_slots;
} pth_ctx;

static medseg_status read_member(pth_ctx *c, zip_int64_t idx, const char *what, zip_uint64_t cap, uint8_t **out,
                                 size_t *len, medseg_error *err)
{
    zip_stat_t zs;
    zip_stat_init(&zs);
    if (zip_stat_index(c->z, (zip_uint64_t)idx, 0, &zs) != 0 || !(zs.valid & ZIP_STAT_SIZE))
        return ms_error(err, MEDSEG_ERR_FORMAT, "%s: cannot stat %s", c->path, what);
    if (zs.size > cap || zs.size > SIZE_MAX - 64)
        return ms_error(err, MEDSEG_ERR_NOMEM, "%s: %s is %llu bytes, over the limit", c->path, what,
                        (unsigned long long)zs.size);
    /* Before allocating what the directory claims: the member's bytes must exist in the file, and
       its size must be reachable from them (equal when stored; deflate expands at most ~1032x). */
    struct stat sb;
    if (!(zs.valid & ZIP_STAT_COMP_SIZE) || !(zs.valid & ZIP_STAT_COMP_METHOD) || stat(c->path, &sb) != 0 ||
        zs.comp_size > (zip_uint64_t)sb.st_size ||
        (zs.comp_method == ZIP_CM_STORE && zs.size != zs.comp_size) ||
        (zs.comp_method != ZIP_CM_STORE && zs.size / 1032 > zs.comp_size + 1))
        return ms_error(err, MEDSEG_ERR_FORMAT, "%s: %s claims %llu bytes from %llu stored bytes: corrupt archive",
                        c->path, what, (unsigned long long)zs.size, (unsigned long long)zs.comp_size);
    size_t n = (size_t)zs.size;
    uint8_t *buf = ms_alloc_aligned(n ? n : 1, err, what);
    if (!buf) return MEDSEG_ERR_NOMEM;
    zip_file_t *f = zip_fopen_index(c->z, (zip_uint64_t)idx, 0);
    if (!f) {
        free(buf);
        return ms_error(err, MEDSEG_ERR_FORMAT, "%s: cannot open %s: %s", c->path, what, zip_strerror(c->z));
    }
    size_t got = 0;
    while (got < n) {
        zip_int64_t r = zip_fread(f, buf + got, n - got);
        if (r <= 0) break;
        got += (size_t)r;
    }
    /* the member must end where its directory entry says */
    uint8_t extra;
    int over = got == n && zip_fread(f, &extra, 1) > 0;
    const char *zerr = zip_file_strerror(f);
    char zmsg[160];
    snprintf(zmsg, sizeof zmsg, "%s", zerr ? zerr : "");
    zip_fclose(f);
    if (got != n || over) {
        free(buf);
        return ms_error(err, MEDSEG_ERR_FORMAT, "%s: %s is truncated or corrupt (%zu of %zu bytes read%s%s)", c->path,
                        what, got, n, zmsg[0] ? ": " : "", zmsg);
    }
    /* libzip does not verify the CRC of stored (uncompressed) members, which is what torch
       writes: check it here so a damaged file is refused instead of silently imported */
    if ((zs.valid & ZIP_STAT_CRC) && (uint32_t)crc32_z(crc32_z(0L, Z_NULL, 0), buf, n) != zs.crc) {
        free(buf);
        return ms_error(err, MEDSEG_ERR_FORMAT, "%s: %s is corrupt (CRC mismatch)", c->path, what);
    }
    *out = buf;
    *len = n;
    return MEDSEG_OK;
}

/* Finds "<prefix>/data.pkl" with a single top folder. */
static medseg_status find_pickle(pth_ctx *c, zip_int64_t *idx, medseg_error *err)
{
    zip_int64_t n = zip_get_num_entries(c->z, 0);
    if (n < 0 || n > PTH_MAX_ENTRIES)
        return ms_error(err, MEDSEG_ERR_FORMAT, "%s: unreasonable number of zip entries", c->path);
    *idx = -1;
    for (zip_int64_t i = 0; i < n; i++) {
        const char *nm = zip_get_name(c->z, (zip_uint64_t)i, 0);
        if (!nm) continue;
        const char *slash = strchr(nm, '/');
        if (!slash || strcmp(slash, "/data.pkl") != 0) continue;
        size_t pl = (size_t)(slash - nm);
        if (pl + 1 >= sizeof c->prefix) continue;
        if (*idx >= 0) return ms_error(err, MEDSEG_ERR_FORMAT, "%s: more than one data.pkl", c->path);
        memcpy(c->prefix, nm, pl);
        c->prefix[pl] = 0;
        *idx = i;
    }
    if (*idx < 0)
        return ms_error(err, MEDSEG_ERR_FORMAT, "%s: zip file without <folder>/data.pkl (not a torch.save checkpoint)",
                        c->path);
    return MEDSEG_OK;
}

static storage_slot *slot_for(pth_ctx *c, const char *key)
{
    for (size_t i = 0; i < c->n_slots; i++)
        if (!strcmp(c->slots[i].key, key)) return &c->slots[i];
    return NULL;
}

static medseg_status load_slot(pth_ctx *c, storage_slot *sl, const ms_pk_value *stg, medseg_error *err)
{
    if (sl->buf) return MEDSEG_OK;
    char member[700], what[600];
    snprintf(member, sizeof member, "%s/data/%s", c->prefix, sl->key);
    snprintf(what, sizeof what, "storage data/%s", sl->key);
    zip_int64_t idx = zip_name_locate(c->z, member, 0);
    if (idx < 0) return ms_error(err, MEDSEG_ERR_FORMAT, "%s: missing %s", c->path, what);
    medseg_status st = read_member(c, idx, what, PTH_MAX_STORAGE, &sl->buf, &sl->len, err);
    if (st) return st;
    size_t want;
    if (!ms_mul_size((size_t)stg->numel, ms_dtype_size(stg->dtype), &want) || sl->len < want)
        return ms_error(err, MEDSEG_ERR_FORMAT, "%s: %s has %zu bytes, fewer than its %lld %s elements", c->path, what,
                        sl->len, (long long)stg->numel, ms_dtype_name(stg->dtype));
    return MEDSEG_OK;
}

/* The dict holding the tensors: the top level, or under "model" / "state_dict" / "model_state". */
static const ms_pk_value *find_state_dict(const ms_pk_value *root)
{
    static const char *keys[] = {"model", "state_dict", "model_state"};
    if (!root || root->kind != MS_PK_DICT) return NULL;
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        const ms_pk_value *v = ms_pk_dict_get(root, keys[i]);
        if (v && v->kind == MS_PK_DICT) return v;
    }
    return root;
}

medseg_status ms_import_pth(const char *path, ms_tensors *out, medseg_error *err)
{
    ms_tensors_init(out);
    pth_ctx c = {.path = path};
    uint8_t *pkl = NULL;
    size_t pkl_len = 0;
    ms_pk_doc doc = {0};
    medseg_status st = MEDSEG_OK;

    FILE *f = fopen(path, "rb");
    if (!f) return ms_error(err, MEDSEG_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    uint8_t magic[4] = {0};
    size_t got = fread(magic, 1, 4, f);
    fclose(f);
    if (got >= 2 && magic[0] == 0x80 && magic[1] <= 5)
        return ms_error(err, MEDSEG_ERR_UNSUPPORTED,
                        "%s: legacy (pre-1.6) torch.save format is not supported yet (re-save it with a recent torch)",
                        path);
    if (got < 4 || memcmp(magic, "PK\3\4", 4) != 0)
        return ms_error(err, MEDSEG_ERR_FORMAT, "%s: not a PyTorch checkpoint (no zip signature)", path);

    int zerr = 0;
    c.z = zip_open(path, ZIP_RDONLY, &zerr);
    if (!c.z) {
        zip_error_t ze;
        zip_error_init_with_code(&ze, zerr);
        st = ms_error(err, MEDSEG_ERR_FORMAT, "%s: cannot read as zip: %s", path, zip_error_strerror(&ze));
        zip_error_fini(&ze);
        return st;
    }
    zip_int64_t pidx = -1;
    if ((st = find_pickle(&c, &pidx, err))) goto done;
    if ((st = read_member(&c, pidx, "data.pkl", PTH_MAX_PKL, &pkl, &pkl_len, err))) goto done;
    char pname[700];
    snprintf(pname, sizeof pname, "%s: data.pkl", path);
    if ((st = ms_pk_parse(pkl, pkl_len, pname, &doc, err))) goto done;
    free(pkl);
    pkl = NULL;

    const ms_pk_value *sd = find_state_dict(doc.root);
    if (!sd) {
        st = ms_error(err, MEDSEG_ERR_FORMAT, "%s: data.pkl does not hold a dict (not a state_dict)", path);
        goto done;
    }
    size_t n_items = sd->n / 2;
    if (n_items > PTH_MAX_TENSORS) {
        st = ms_error(err, MEDSEG_ERR_NOMEM, "%s: %zu entries, over the limit of %d", path, n_items, PTH_MAX_TENSORS);
        goto done;
    }
    /* storage slots and their use counts: a storage used by exactly one whole-storage tensor is
       handed over without a copy */
    c.slots = ms_calloc(n_items ? n_items : 1, sizeof *c.slots, err, "storage table");
    if (!c.slots) {
        st = MEDSEG_ERR_NOMEM;
        goto done;
    }
    for (size_t i = 0; i < n_items; i++) {
        const ms_pk_value *k = sd->items[2 * i], *v = sd->items[2 * i + 1];
        if (k->kind != MS_PK_STR || k->slen == 0 || strlen(k->s) != k->slen) {
            st = ms_error(err, MEDSEG_ERR_FORMAT, "%s: state_dict key %zu is not a name", path, i);
            goto done;
        }
        if (v->kind != MS_PK_TENSOR) {
            st = ms_error(err, MEDSEG_ERR_FORMAT, "%s: state_dict entry '%.200s' is not a tensor", path, k->s);
            goto done;
        }
        storage_slot *sl = slot_for(&c, v->storage->s);
        if (!sl) {
            sl = &c.slots[c.n_slots++];
            sl->key = v->storage->s;
        }
        sl->uses++;
    }
    if (n_items == 0) {
        st = ms_error(err, MEDSEG_ERR_FORMAT, "%s: the state_dict holds no tensors", path);
        goto done;
    }
    for (size_t i = 0; i < n_items; i++) {
        const ms_pk_value *k = sd->items[2 * i], *v = sd->items[2 * i + 1];
        storage_slot *sl = slot_for(&c, v->storage->s);
        if ((st = load_slot(&c, sl, v->storage, err))) goto done;
        char what[600];
        snprintf(what, sizeof what, "%s: tensor '%.200s'", path, k->s);
        size_t nb = 0;
        if ((st = ms_pk_tensor_nbytes(v, &nb, what, err))) goto done;
        size_t stg_bytes = (size_t)v->storage->numel * ms_dtype_size(v->dtype);
        if (sl->uses == 1 && ms_pk_tensor_is_whole_storage(v, stg_bytes) && stg_bytes == sl->len) {
            st = ms_tensors_add_owned(out, k->s, v->dtype, v->ndim, v->shape, sl->buf, err);
            sl->buf = NULL;
        } else {
            uint8_t *buf = ms_alloc_aligned(nb ? nb : 1, err, what);
            if (!buf) {
                st = MEDSEG_ERR_NOMEM;
                goto done;
            }
            st = ms_pk_tensor_copy(v, sl->buf, sl->len, buf, nb, what, err);
            if (st) {
                free(buf);
                goto done;
            }
            st = ms_tensors_add_owned(out, k->s, v->dtype, v->ndim, v->shape, buf, err);
            if (--sl->uses == 0) {
                free(sl->buf);
                sl->buf = NULL;
            }
        }
        if (st) {
            if (err && strncmp(err->message, path, strlen(path)) != 0) {
                char m[sizeof err->message];
                snprintf(m, sizeof m, "%s", err->message);
                ms_error(err, st, "%s: %s", path, m);
            }
            goto done;
        }
    }
done:
    free(pkl);
    for (size_t i = 0; i < c.n_slots; i++) free(c.slots[i].buf);
    free(c.slots);
    ms_pk_doc_free(&doc);
    if (c.z) zip_discard(c.z);
    if (st) ms_tensors_free(out);
    return st;
}
