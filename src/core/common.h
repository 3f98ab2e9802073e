/* Internal helpers shared by every part of libmedseg: error reporting, checked allocation,
 * atomic file output. Nothing here is public API. */
#ifndef MS_COMMON_H
#define MS_COMMON_H

#include "medseg.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#if defined(__GNUC__)
#define MS_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define MS_PRINTF(a, b)
#endif

/* Fills *err (may be NULL) with status and "printf" message; returns status so callers can
 * write `return ms_error(err, MEDSEG_ERR_FORMAT, "%s: truncated header", path);`. */
medseg_status ms_error(medseg_error *err, medseg_status status, const char *fmt, ...) MS_PRINTF(3, 4);
void ms_error_clear(medseg_error *err);
/* Prepends "<prefix>: " to err's message unless it already starts with prefix. */
void ms_error_prefix(medseg_error *err, const char *prefix);

/* Overflow-checked size arithmetic: returns 0 and leaves *out untouched on overflow. */
int ms_mul_size(size_t a, size_t b, size_t *out);
int ms_mul3_size(size_t a, size_t b, size_t c, size_t *out);

/* malloc/calloc that report out-of-memory through err (what names the purpose). 64-byte aligned
 * for ms_alloc_aligned (free with free()); from 2 MB on, 2 MB aligned and marked for transparent
 * huge pages (fewer TLB misses in the encoders' large products; ~1% on ViT-B). */
void *ms_malloc(size_t n, medseg_error *err, const char *what);
void *ms_calloc(size_t count, size_t size, medseg_error *err, const char *what);
void *ms_alloc_aligned(size_t n, medseg_error *err, const char *what);

/* Whole-file read with a size cap. *out is malloc'd (free()), NUL-terminated for convenience. */
medseg_status ms_read_file(const char *path, size_t cap, uint8_t **out, size_t *len, medseg_error *err);

/* Atomic output: ms_atomic_open writes to "<path>.tmp.<pid>.<n>" in the same folder;
 * ms_atomic_commit closes and renames onto path (fsync first); ms_atomic_abort closes and removes
 * the temporary. Never leaves a partial file at path. */
typedef struct {
    FILE *f;
    char tmp[4096];
    char path[4096];
} ms_atomic_file;
medseg_status ms_atomic_open(ms_atomic_file *af, const char *path, medseg_error *err);
medseg_status ms_atomic_commit(ms_atomic_file *af, medseg_error *err);
void ms_atomic_abort(ms_atomic_file *af);

/* Monotonic clock in milliseconds. */
double ms_now_ms(void);

/* Number of online cores (>= 1). */
int ms_num_cores(void);

#endif
