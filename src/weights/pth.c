/* PyTorch torch.save checkpoints, read with the safe pickle subset (never executed):
 *  - zip format (torch >= 1.6): "<prefix>/data.pkl" + raw storages "<prefix>/data/<key>"
 *    ref: torch/serialization.py _save / _load (zip layout, persistent ids), torch/_utils.py
 *  - legacy format (torch.save(..., _use_new_zipfile_serialization=False), and every file written
 *    before torch 1.6): five pickles back to back -- magic number, protocol version, sys_info,
 *    the object (storages as persistent ids ('storage', type, key, location, numel, None)), the
 *    sorted list of storage keys -- then per key an int64 element count and the raw
 *    little-endian data. ref: torch/serialization.py _legacy_save / _legacy_load
 * The state_dict is taken from the top level or from under "model_state" (micro-sam / torch_em
 * training checkpoints, ref: micro_sam/util.py _load_checkpoint), "state_dict" or "model"; other
 * top-level entries (optimizer state, decoder_state, iteration counters, pickled trainer objects)
 * are skipped without being interpreted. */
#include "io/zip_member.h"
#include "weights/import.h"
#include "weights/pickle.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zip.h>

#define PTH_MAX_PKL ((zip_uint64_t)256 << 20)        /* data.pkl */
#define PTH_MAX_STORAGE ((zip_uint64_t)16 << 30)     /* one storage */
#define PTH_MAX_ENTRIES 1000000                      /* zip members */
#define PTH_MAX_TENSORS 20000 /* names are checked for duplicates pairwise */

typedef struct {
    char *key;
    uint8_t *buf; /* NULL once handed over to a tensor */
    size_t len;
    int uses;
    int borrowed; /* buf points into the mapped legacy file: never freed or handed over */
} storage_slot;

typedef struct {
    const char *path;
    zip_t *z;
    char prefix[512];
    storage_slot *slots;
    size_t n_slots;
    int legacy;
} pth_ctx;

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
    char what[600];
    snprintf(what, sizeof what, "storage data/%s", sl->key);
    if (!sl->buf && c->legacy) return ms_error(err, MEDSEG_ERR_FORMAT, "%s: missing %s", c->path, what);
    if (!sl->buf) {
        char member[700];
        snprintf(member, sizeof member, "%s/data/%s", c->prefix, sl->key);
        zip_int64_t idx = zip_name_locate(c->z, member, 0);
        if (idx < 0) return ms_error(err, MEDSEG_ERR_FORMAT, "%s: missing %s", c->path, what);
        medseg_status st = ms_zip_read_member(c->z, c->path, idx, what, PTH_MAX_STORAGE, &sl->buf, &sl->len, err);
        if (st) return st;
    }
    size_t want;
    if (!ms_mul_size((size_t)stg->numel, ms_dtype_size(stg->dtype), &want) || sl->len < want)
        return ms_error(err, MEDSEG_ERR_FORMAT, "%s: %s has %zu bytes, fewer than its %lld %s elements", c->path, what,
                        sl->len, (long long)stg->numel, ms_dtype_name(stg->dtype));
    return MEDSEG_OK;
}

/* The dict holding the tensors: under "model_state" (micro-sam / torch_em trainer and export
 * format: ref micro_sam/util.py _load_checkpoint, export_custom_sam_model; micro_sam/bioimageio/
 * model_export.py writes {"model_state", "decoder_state"}), "state_dict" or "model", else the top
 * level. */
static const ms_pk_value *find_state_dict(const ms_pk_value *root)
{
    static const char *keys[] = {"model_state", "state_dict", "model"};
    if (!root || root->kind != MS_PK_DICT) return NULL;
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        const ms_pk_value *v = ms_pk_dict_get(root, keys[i]);
        if (v && v->kind == MS_PK_DICT) return v;
    }
    return root;
}

/* Parsed object -> tensors: checks the state dict, then copies (or hands over) each tensor out of
 * its storage. pname names the pickle in messages. */
static medseg_status build_tensors(pth_ctx *c, const ms_pk_doc *doc, const char *pname, ms_tensors *out,
                                   medseg_error *err)
{
    const char *path = c->path;
    const ms_pk_value *sd = find_state_dict(doc->root);
    if (!sd) {
        if (doc->first_opaque[0])
            return ms_error(err, MEDSEG_ERR_UNSUPPORTED, "%s: refusing global '%s' (only state_dict pickles are read)",
                            pname, doc->first_opaque);
        return ms_error(err, MEDSEG_ERR_FORMAT, "%s: %s does not hold a dict (not a state_dict)", path,
                        c->legacy ? "the checkpoint" : "data.pkl");
    }
    size_t n_items = sd->n / 2;
    if (n_items > PTH_MAX_TENSORS)
        return ms_error(err, MEDSEG_ERR_NOMEM, "%s: %zu entries, over the limit of %d", path, n_items, PTH_MAX_TENSORS);
    /* storage slots and their use counts: a storage used by exactly one whole-storage tensor is
       handed over without a copy. Legacy files have their slots filled already. */
    if (!c->legacy) {
        c->slots = ms_calloc(n_items ? n_items : 1, sizeof *c->slots, err, "storage table");
        if (!c->slots) return MEDSEG_ERR_NOMEM;
    }
    for (size_t i = 0; i < n_items; i++) {
        const ms_pk_value *k = sd->items[2 * i], *v = sd->items[2 * i + 1];
        if (k->kind != MS_PK_STR || k->slen == 0 || strlen(k->s) != k->slen)
            return ms_error(err, MEDSEG_ERR_FORMAT, "%s: state_dict key %zu is not a name", path, i);
        if (v->kind == MS_PK_OPAQUE)
            return ms_error(err, MEDSEG_ERR_FORMAT,
                            "%s: state_dict entry '%.200s' is a pickled Python object (%.100s), not a tensor (save "
                            "model.state_dict() instead of the model)",
                            path, k->s, v->s ? v->s : "?");
        if (v->kind != MS_PK_TENSOR)
            return ms_error(err, MEDSEG_ERR_FORMAT, "%s: state_dict entry '%.200s' is not a tensor", path, k->s);
        storage_slot *sl = slot_for(c, v->storage->s);
        if (!sl && c->legacy)
            return ms_error(err, MEDSEG_ERR_FORMAT, "%s: tensor '%.200s' uses storage %s, which the file does not hold",
                            path, k->s, v->storage->s);
        if (!sl) {
            sl = &c->slots[c->n_slots++];
            sl->key = v->storage->s;
        }
        sl->uses++;
    }
    if (n_items == 0) return ms_error(err, MEDSEG_ERR_FORMAT, "%s: the state_dict holds no tensors", path);
    medseg_status st = MEDSEG_OK;
    for (size_t i = 0; i < n_items; i++) {
        const ms_pk_value *k = sd->items[2 * i], *v = sd->items[2 * i + 1];
        storage_slot *sl = slot_for(c, v->storage->s);
        if ((st = load_slot(c, sl, v->storage, err))) return st;
        char what[600];
        snprintf(what, sizeof what, "%s: tensor '%.200s'", path, k->s);
        size_t nb = 0;
        if ((st = ms_pk_tensor_nbytes(v, &nb, what, err))) return st;
        size_t stg_bytes = (size_t)v->storage->numel * ms_dtype_size(v->dtype);
        if (!sl->borrowed && sl->uses == 1 && ms_pk_tensor_is_whole_storage(v, stg_bytes) && stg_bytes == sl->len) {
            st = ms_tensors_add_owned(out, k->s, v->dtype, v->ndim, v->shape, sl->buf, err);
            sl->buf = NULL;
        } else {
            uint8_t *buf = ms_alloc_aligned(nb ? nb : 1, err, what);
            if (!buf) return MEDSEG_ERR_NOMEM;
            st = ms_pk_tensor_copy(v, sl->buf, sl->len, buf, nb, what, err);
            if (st) {
                free(buf);
                return st;
            }
            st = ms_tensors_add_owned(out, k->s, v->dtype, v->ndim, v->shape, buf, err);
            if (--sl->uses == 0 && !sl->borrowed) {
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
            return st;
        }
    }
    return MEDSEG_OK;
}

/* ---- legacy (non-zip) torch.save ---- */

#define LEGACY_MAX_KEYS 1000000

/* The first pickle: the magic number 0x1950a86a20f9469cfc6c as a 10-byte LONG1 (wider than the
 * pickle subset's 64-bit integers, so it is matched byte for byte). Returns its length or 0. */
static size_t legacy_magic_len(const uint8_t *p, size_t n)
{
    static const uint8_t magic[] = {0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, '.'};
    size_t pos = 0;
    if (n < 2 || p[0] != 0x80 || p[1] < 2 || p[1] > 5) return 0;
    pos = 2;
    if (n - pos >= 9 && p[pos] == 0x95) pos += 9; /* FRAME (protocol >= 4) */
    if (n - pos < sizeof magic || memcmp(p + pos, magic, sizeof magic) != 0) return 0;
    return pos + sizeof magic;
}

/* dtype of storage `key` as declared by any persistent id in the document (every storage in the
 * file is declared by the object pickle, also those of entries that are skipped) */
static int legacy_storage_dtype(const ms_pk_doc *doc, const char *key, ms_dtype *dt)
{
    for (size_t i = 0; i < doc->n; i++) {
        const ms_pk_value *v = doc->vals[i];
        if (v->kind == MS_PK_STORAGE && !strcmp(v->s, key)) {
            *dt = v->dtype;
            return 1;
        }
    }
    return 0;
}

static medseg_status import_legacy(pth_ctx *c, ms_tensors *out, medseg_error *err)
{
    const char *path = c->path;
    medseg_status st = MEDSEG_OK;
    ms_pk_doc small = {0}, doc = {0};
    uint8_t *map = NULL;
    size_t len = 0;
    int fd = open(path, O_RDONLY);
    if (fd < 0) return ms_error(err, MEDSEG_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || sb.st_size <= 0) {
        close(fd);
        return ms_error(err, MEDSEG_ERR_FORMAT, "%s: empty or unreadable file", path);
    }
    len = (size_t)sb.st_size;
    void *m = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (m == MAP_FAILED) return ms_error(err, MEDSEG_ERR_IO, "%s: cannot map: %s", path, strerror(errno));
    map = m;
    char pname[700];
    size_t pos = legacy_magic_len(map, len);
    if (!pos) {
        st = ms_error(err, MEDSEG_ERR_FORMAT, "%s: legacy torch.save file without the torch magic number", path);
        goto done;
    }
    /* 2: protocol version (1001) */
    snprintf(pname, sizeof pname, "%s: legacy torch.save, protocol-version pickle", path);
    if ((st = ms_pk_parse(map + pos, len - pos, pname, &small, err))) goto done;
    if (!small.root || small.root->kind != MS_PK_INT || small.root->i != 1001) {
        st = ms_error(err, MEDSEG_ERR_UNSUPPORTED, "%s: legacy torch.save protocol version %lld (1001 expected)", path,
                      small.root && small.root->kind == MS_PK_INT ? (long long)small.root->i : -1LL);
        goto done;
    }
    pos += small.end;
    ms_pk_doc_free(&small);
    /* 3: sys_info {protocol_version, little_endian, type_sizes} */
    snprintf(pname, sizeof pname, "%s: legacy torch.save, sys_info pickle", path);
    if ((st = ms_pk_parse(map + pos, len - pos, pname, &small, err))) goto done;
    const ms_pk_value *le = ms_pk_dict_get(small.root, "little_endian");
    if (!le || le->kind != MS_PK_BOOL || !le->i) {
        st = ms_error(err, MEDSEG_ERR_UNSUPPORTED, "%s: legacy torch.save file not written on a little-endian machine",
                      path);
        goto done;
    }
    pos += small.end;
    ms_pk_doc_free(&small);
    /* 4: the object */
    snprintf(pname, sizeof pname, "%s: legacy torch.save, object pickle", path);
    if ((st = ms_pk_parse_opts(map + pos, len - pos, pname, MS_PK_LENIENT, &doc, err))) goto done;
    pos += doc.end;
    /* 5: sorted storage keys */
    snprintf(pname, sizeof pname, "%s: legacy torch.save, storage-key pickle", path);
    if ((st = ms_pk_parse(map + pos, len - pos, pname, &small, err))) goto done;
    pos += small.end;
    const ms_pk_value *keys = small.root;
    if (!keys || keys->kind != MS_PK_LIST || keys->n > LEGACY_MAX_KEYS) {
        st = ms_error(err, MEDSEG_ERR_FORMAT, "%s: legacy storage-key list missing or malformed", path);
        goto done;
    }
    c->slots = ms_calloc(keys->n ? keys->n : 1, sizeof *c->slots, err, "storage table");
    if (!c->slots) {
        st = MEDSEG_ERR_NOMEM;
        goto done;
    }
    /* the storages, in key-list order: int64 element count, then the data */
    for (size_t i = 0; i < keys->n; i++) {
        const ms_pk_value *k = keys->items[i];
        ms_dtype dt;
        if (k->kind != MS_PK_STR || strlen(k->s) != k->slen || !legacy_storage_dtype(&doc, k->s, &dt)) {
            st = ms_error(err, MEDSEG_ERR_FORMAT, "%s: legacy storage key %zu is not declared by the checkpoint", path, i);
            goto done;
        }
        if (slot_for(c, k->s)) {
            st = ms_error(err, MEDSEG_ERR_FORMAT, "%s: legacy storage %s listed twice", path, k->s);
            goto done;
        }
        if (len - pos < 8) {
            st = ms_error(err, MEDSEG_ERR_FORMAT, "%s: truncated: storage %s (%zu of %zu) starts at byte %zu, past the end",
                          path, k->s, i + 1, keys->n, pos);
            goto done;
        }
        uint64_t numel = 0;
        for (int b = 7; b >= 0; b--) numel = (numel << 8) | map[pos + (size_t)b];
        pos += 8;
        size_t nb;
        if (numel > ((uint64_t)1 << 50) || !ms_mul_size((size_t)numel, ms_dtype_size(dt), &nb) || nb > len - pos) {
            st = ms_error(err, MEDSEG_ERR_FORMAT,
                          "%s: truncated: storage %s declares %llu %s elements, but only %zu bytes remain", path, k->s,
                          (unsigned long long)numel, ms_dtype_name(dt), len - pos);
            goto done;
        }
        storage_slot *sl = &c->slots[c->n_slots++];
        sl->key = k->s;
        sl->buf = map + pos;
        sl->len = nb;
        sl->borrowed = 1;
        pos += nb;
    }
    st = build_tensors(c, &doc, pname, out, err);
done:
    ms_pk_doc_free(&small);
    ms_pk_doc_free(&doc);
    if (map) munmap(map, len);
    return st;
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
    if (got >= 2 && magic[0] == 0x80 && magic[1] <= 5) {
        c.legacy = 1;
        st = import_legacy(&c, out, err);
        goto done;
    }
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
    if ((st = ms_zip_read_member(c.z, c.path, pidx, "data.pkl", PTH_MAX_PKL, &pkl, &pkl_len, err))) goto done;
    char pname[700];
    snprintf(pname, sizeof pname, "%s: data.pkl", path);
    if ((st = ms_pk_parse_opts(pkl, pkl_len, pname, MS_PK_LENIENT, &doc, err))) goto done;
    free(pkl);
    pkl = NULL;
    st = build_tensors(&c, &doc, pname, out, err);
done:
    free(pkl);
    for (size_t i = 0; i < c.n_slots; i++)
        if (!c.slots[i].borrowed) free(c.slots[i].buf);
    free(c.slots);
    ms_pk_doc_free(&doc);
    if (c.z) zip_discard(c.z);
    if (st) ms_tensors_free(out);
    return st;
}
