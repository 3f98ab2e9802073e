/* See zip_member.h. */
#include "io/zip_member.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

medseg_status ms_zip_read_member(zip_t *z, const char *path, zip_int64_t idx, const char *what, zip_uint64_t cap,
                                 uint8_t **out, size_t *len, medseg_error *err)
{
    zip_stat_t zs;
    zip_stat_init(&zs);
    if (zip_stat_index(z, (zip_uint64_t)idx, 0, &zs) != 0 || !(zs.valid & ZIP_STAT_SIZE))
        return ms_error(err, MEDSEG_ERR_FORMAT, "%s: cannot stat %s", path, what);
    if (zs.size > cap || zs.size > SIZE_MAX - 64)
        return ms_error(err, MEDSEG_ERR_NOMEM, "%s: %s is %llu bytes, over the limit", path, what,
                        (unsigned long long)zs.size);
    /* Before allocating what the directory claims: the member's bytes must exist in the file, and
       its size must be reachable from them (equal when stored; deflate expands at most ~1032x). */
    struct stat sb;
    if (!(zs.valid & ZIP_STAT_COMP_SIZE) || !(zs.valid & ZIP_STAT_COMP_METHOD) || stat(path, &sb) != 0 ||
        zs.comp_size > (zip_uint64_t)sb.st_size ||
        (zs.comp_method == ZIP_CM_STORE && zs.size != zs.comp_size) ||
        (zs.comp_method != ZIP_CM_STORE && zs.size / 1032 > zs.comp_size + 1))
        return ms_error(err, MEDSEG_ERR_FORMAT, "%s: %s claims %llu bytes from %llu stored bytes: corrupt archive",
                        path, what, (unsigned long long)zs.size, (unsigned long long)zs.comp_size);
    size_t n = (size_t)zs.size;
    uint8_t *buf = ms_alloc_aligned(n ? n : 1, err, what);
    if (!buf) return MEDSEG_ERR_NOMEM;
    zip_file_t *f = zip_fopen_index(z, (zip_uint64_t)idx, 0);
    if (!f) {
        free(buf);
        return ms_error(err, MEDSEG_ERR_FORMAT, "%s: cannot open %s: %s", path, what, zip_strerror(z));
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
        return ms_error(err, MEDSEG_ERR_FORMAT, "%s: %s is truncated or corrupt (%zu of %zu bytes read%s%s)", path,
                        what, got, n, zmsg[0] ? ": " : "", zmsg);
    }
    /* libzip does not verify the CRC of stored (uncompressed) members, which is what torch and
       numpy write: check it here so a damaged file is refused instead of silently read */
    if ((zs.valid & ZIP_STAT_CRC) && (uint32_t)crc32_z(crc32_z(0L, Z_NULL, 0), buf, n) != zs.crc) {
        free(buf);
        return ms_error(err, MEDSEG_ERR_FORMAT, "%s: %s is corrupt (CRC mismatch)", path, what);
    }
    *out = buf;
    *len = n;
    return MEDSEG_OK;
}
