#include "core/common.h"

#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

const char *medseg_status_name(medseg_status s)
{
    switch (s) {
    case MEDSEG_OK: return "ok";
    case MEDSEG_ERR_ARG: return "invalid argument";
    case MEDSEG_ERR_IO: return "I/O error";
    case MEDSEG_ERR_FORMAT: return "corrupt or unrecognised file";
    case MEDSEG_ERR_UNSUPPORTED: return "unsupported";
    case MEDSEG_ERR_MODEL: return "model error";
    case MEDSEG_ERR_CHECKSUM: return "checksum mismatch";
    case MEDSEG_ERR_NOMEM: return "out of memory";
    case MEDSEG_ERR_INTERNAL: return "internal error";
    }
    return "unknown status";
}

medseg_status ms_error(medseg_error *err, medseg_status status, const char *fmt, ...)
{
    if (err) {
        err->status = status;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->message, sizeof err->message, fmt, ap);
        va_end(ap);
        /* messages quote bytes from untrusted files: keep them one printable line */
        for (char *c = err->message; *c; c++)
            if ((unsigned char)*c < 0x20 || (unsigned char)*c == 0x7f) *c = '?';
    }
    return status;
}

void ms_error_clear(medseg_error *err)
{
    if (err) {
        err->status = MEDSEG_OK;
        err->message[0] = 0;
    }
}

void ms_error_prefix(medseg_error *err, const char *prefix)
{
    if (!err || !prefix) return;
    size_t pl = strlen(prefix), ml = strlen(err->message);
    if (strncmp(err->message, prefix, pl) == 0) return;
    if (pl + 2 >= sizeof err->message) return;
    if (pl + 2 + ml >= sizeof err->message) ml = sizeof err->message - pl - 3;
    memmove(err->message + pl + 2, err->message, ml);
    memcpy(err->message, prefix, pl);
    err->message[pl] = ':';
    err->message[pl + 1] = ' ';
    err->message[pl + 2 + ml] = 0;
}

int ms_mul_size(size_t a, size_t b, size_t *out)
{
    if (a != 0 && b > SIZE_MAX / a) return 0;
    *out = a * b;
    return 1;
}

int ms_mul3_size(size_t a, size_t b, size_t c, size_t *out)
{
    size_t ab;
    return ms_mul_size(a, b, &ab) && ms_mul_size(ab, c, out);
}

void *ms_malloc(size_t n, medseg_error *err, const char *what)
{
    void *p = malloc(n ? n : 1);
    if (!p) ms_error(err, MEDSEG_ERR_NOMEM, "out of memory allocating %zu bytes for %s", n, what);
    return p;
}

void *ms_calloc(size_t count, size_t size, medseg_error *err, const char *what)
{
    void *p = calloc(count ? count : 1, size ? size : 1);
    if (!p) ms_error(err, MEDSEG_ERR_NOMEM, "out of memory allocating %zu x %zu bytes for %s", count, size, what);
    return p;
}

void *ms_alloc_aligned(size_t n, medseg_error *err, const char *what)
{
    void *p = NULL;
    const size_t huge = (size_t)2 << 20;
    size_t align = n >= huge ? huge : 64;
    size_t rounded = (n + align - 1) & ~(align - 1);
    if (rounded < n || posix_memalign(&p, align, rounded ? rounded : 64) != 0) {
        ms_error(err, MEDSEG_ERR_NOMEM, "out of memory allocating %zu bytes for %s", n, what);
        return NULL;
    }
#ifdef MADV_HUGEPAGE
    if (align == huge) madvise(p, rounded, MADV_HUGEPAGE);
#endif
    return p;
}

medseg_status ms_read_file(const char *path, size_t cap, uint8_t **out, size_t *len, medseg_error *err)
{
    *out = NULL;
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return ms_error(err, MEDSEG_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        return ms_error(err, MEDSEG_ERR_IO, "%s: not a regular file", path);
    }
    if ((uint64_t)st.st_size > cap) {
        fclose(f);
        return ms_error(err, MEDSEG_ERR_NOMEM, "%s: file is %lld bytes, over the %zu-byte limit", path,
                        (long long)st.st_size, cap);
    }
    size_t n = (size_t)st.st_size;
    uint8_t *buf = malloc(n + 1);
    if (!buf) {
        fclose(f);
        return ms_error(err, MEDSEG_ERR_NOMEM, "%s: out of memory reading %zu bytes", path, n);
    }
    if (n && fread(buf, 1, n, f) != n) {
        free(buf);
        fclose(f);
        return ms_error(err, MEDSEG_ERR_IO, "%s: read failed", path);
    }
    fclose(f);
    buf[n] = 0;
    *out = buf;
    *len = n;
    return MEDSEG_OK;
}

medseg_status ms_atomic_open(ms_atomic_file *af, const char *path, medseg_error *err)
{
    static atomic_int counter;
    memset(af, 0, sizeof *af);
    if (strlen(path) + 32 >= sizeof af->tmp)
        return ms_error(err, MEDSEG_ERR_ARG, "%s: path too long", path);
    snprintf(af->path, sizeof af->path, "%s", path);
    snprintf(af->tmp, sizeof af->tmp, "%s.tmp.%ld.%d", path, (long)getpid(), atomic_fetch_add(&counter, 1));
    af->f = fopen(af->tmp, "wb");
    if (!af->f) return ms_error(err, MEDSEG_ERR_IO, "%s: cannot create: %s", path, strerror(errno));
    return MEDSEG_OK;
}

medseg_status ms_atomic_commit(ms_atomic_file *af, medseg_error *err)
{
    int bad = 0;
    if (fflush(af->f) != 0) bad = errno ? errno : EIO;
    if (!bad && fsync(fileno(af->f)) != 0 && errno != EINVAL) bad = errno;
    if (fclose(af->f) != 0 && !bad) bad = errno ? errno : EIO;
    af->f = NULL;
    if (!bad && rename(af->tmp, af->path) != 0) bad = errno;
    if (bad) {
        remove(af->tmp);
        return ms_error(err, MEDSEG_ERR_IO, "%s: write failed: %s", af->path, strerror(bad));
    }
    return MEDSEG_OK;
}

void ms_atomic_abort(ms_atomic_file *af)
{
    if (af->f) fclose(af->f);
    af->f = NULL;
    if (af->tmp[0]) remove(af->tmp);
}

double ms_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

int ms_num_cores(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}
