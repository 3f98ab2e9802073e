/* One member of a zip archive (.pth checkpoints, .npz arrays), read whole and defensively. */
#ifndef MS_ZIP_MEMBER_H
#define MS_ZIP_MEMBER_H

#include "core/common.h"

#include <zip.h>

/* Member idx of z (opened from path) -> *out (64-byte aligned, free()), *len bytes. Refused
 * before any allocation: a size over cap (MEDSEG_ERR_NOMEM), or one the stored bytes cannot hold
 * (stored size != size, or more than deflate's ~1032x expansion, or more stored bytes than the
 * file has). Refused after reading: a short or overlong member, a CRC mismatch (checked here for
 * stored members too, which libzip does not). Messages name path and what (e.g. "data.pkl"). */
medseg_status ms_zip_read_member(zip_t *z, const char *path, zip_int64_t idx, const char *what, zip_uint64_t cap,
                                 uint8_t **out, size_t *len, medseg_error *err);

#endif
