/* HTTP(S) downloads with resume (libcurl) and the file checks of `medseg model fetch`. */
#ifndef MS_DOWNLOAD_H
#define MS_DOWNLOAD_H

#include "core/common.h"

typedef struct {
    const char *url;       /* http:// or https:// (redirects followed, other protocols refused) */
    const char *part_path; /* downloaded into this file; an existing one is resumed with a Range
                              request */
    int64_t expect_size;   /* bytes, or 0 when unknown (then the server's Content-Length is used) */
    const char *label;     /* names the download in progress lines (NULL: the file name) */
    int progress;          /* 0: quiet; 1: progress on stderr (a bar on a terminal, else a line
                              every ~10 %) */
} ms_download_opts;

/* Downloads o->url into o->part_path, resuming a partial file. On success *size is the file's
 * size. HTTP errors -> MEDSEG_ERR_IO with the URL and the status; an interrupted transfer ->
 * MEDSEG_ERR_IO saying the partial file is kept for the next attempt. */
medseg_status ms_download(const ms_download_opts *o, int64_t *size, medseg_error *err);

/* The git blob id of a file: SHA-1 of "blob <size>\0" followed by its bytes, as 40 hex digits. */
medseg_status ms_git_blob_sha1_file(const char *path, char hex[41], medseg_error *err);

/* xxHash XXH128 of a file as 32 hex digits, as `xxh128sum` prints it (micro-sam publishes its
 * models' checksums in this form). MEDSEG_ERR_UNSUPPORTED when medseg was built without
 * <xxhash.h> (Debian libxxhash-dev). */
medseg_status ms_xxh128_file(const char *path, char hex[33], medseg_error *err);
int ms_have_xxh128(void);

#endif
