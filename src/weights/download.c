/* HTTP(S) download with resume through libcurl, and the git blob id of a file (libcrypto).
 * The partial file is appended to in place; a Range request resumes it. */
#include "weights/download.h"

#include <curl/curl.h>
#include <errno.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#if defined(__has_include)
#if __has_include(<xxhash.h>)
#define XXH_INLINE_ALL /* header-only: no library to link */
#include <xxhash.h>
#define MS_HAVE_XXHASH 1
#endif
#endif

typedef struct {
    CURL *c;
    FILE *f;
    const ms_download_opts *o;
    int64_t offset;   /* bytes already in the file when this transfer started */
    int64_t got;      /* bytes written by this transfer */
    int64_t total;    /* expected final size, 0 if unknown */
    int checked;      /* the response code of the first body byte has been looked at */
    int restarted;    /* the server ignored the Range request: the file was truncated */
    int tty, last_tenth;
    double t0, last_draw;
    medseg_status fail; /* set by the write callback when it aborts */
    char why[200];
} dl_state;

static const char *base_name(const char *p)
{
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

static void draw(dl_state *s, int final)
{
    if (!s->o->progress) return;
    int64_t have = s->offset + s->got;
    double now = ms_now_ms(), sec = (now - s->t0) / 1000.0;
    double rate = sec > 0 ? (double)s->got / sec / 1e6 : 0;
    const char *label = s->o->label ? s->o->label : base_name(s->o->part_path);
    if (s->tty) {
        if (!final && now - s->last_draw < 200) return;
        s->last_draw = now;
        if (s->total > 0) {
            double frac = (double)have / (double)s->total;
            int w = 30, k = (int)(frac * w + 0.5);
            char bar[32];
            for (int i = 0; i < w; i++) bar[i] = i < k ? '#' : '.';
            bar[w] = 0;
            fprintf(stderr, "\r%s [%s] %5.1f%% %.1f/%.1f MB %.1f MB/s ", label, bar, 100 * frac, have / 1e6,
                    s->total / 1e6, rate);
        } else {
            fprintf(stderr, "\r%s %.1f MB %.1f MB/s ", label, have / 1e6, rate);
        }
        if (final) fputc('\n', stderr);
    } else {
        /* not a terminal: one line per tenth of the file (and the last one) */
        if (s->total <= 0) {
            if (final) fprintf(stderr, "%s: %.1f MB downloaded\n", label, have / 1e6);
            return;
        }
        int tenth = (int)(10 * have / s->total);
        if (tenth > s->last_tenth || (final && tenth != s->last_tenth)) {
            s->last_tenth = tenth;
            fprintf(stderr, "%s: %3d%% (%lld of %lld bytes)\n", label, tenth * 10, (long long)have,
                    (long long)s->total);
        }
    }
}

static size_t on_write(char *data, size_t size, size_t n, void *user)
{
    dl_state *s = user;
    size_t bytes = size * n;
    if (!s->checked) {
        s->checked = 1;
        long code = 0;
        curl_easy_getinfo(s->c, CURLINFO_RESPONSE_CODE, &code);
        curl_off_t cl = -1;
        curl_easy_getinfo(s->c, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &cl);
        if (s->offset > 0 && code == 200) {
            /* the server sent the whole file instead of the range: start over */
            if (fflush(s->f) != 0 || ftruncate(fileno(s->f), 0) != 0 || fseek(s->f, 0, SEEK_SET) != 0) {
                s->fail = MEDSEG_ERR_IO;
                snprintf(s->why, sizeof s->why, "cannot truncate the partial file: %s", strerror(errno));
                return 0;
            }
            s->offset = 0;
            s->restarted = 1;
        }
        if (cl >= 0) {
            int64_t total = s->offset + (int64_t)cl;
            if (s->o->expect_size > 0 && total != s->o->expect_size) {
                s->fail = MEDSEG_ERR_CHECKSUM;
                snprintf(s->why, sizeof s->why, "the server announces %lld bytes, the registry expects %lld",
                         (long long)total, (long long)s->o->expect_size);
                return 0;
            }
            s->total = total;
        }
        if (s->o->progress && s->offset > 0)
            fprintf(stderr, "%s: resuming at byte %lld\n", s->o->label ? s->o->label : base_name(s->o->part_path),
                    (long long)s->offset);
        s->last_tenth = s->total > 0 ? (int)(10 * s->offset / s->total) : 0;
    }
    if (s->o->expect_size > 0 && s->offset + s->got + (int64_t)bytes > s->o->expect_size) {
        s->fail = MEDSEG_ERR_CHECKSUM;
        snprintf(s->why, sizeof s->why, "the server sends more than the expected %lld bytes",
                 (long long)s->o->expect_size);
        return 0;
    }
    if (fwrite(data, 1, bytes, s->f) != bytes) {
        s->fail = MEDSEG_ERR_IO;
        snprintf(s->why, sizeof s->why, "cannot write the partial file: %s", strerror(errno));
        return 0;
    }
    s->got += (int64_t)bytes;
    draw(s, 0);
    return bytes;
}

medseg_status ms_download(const ms_download_opts *o, int64_t *size, medseg_error *err)
{
    if (!o || !o->url || !o->part_path) return ms_error(err, MEDSEG_ERR_ARG, "download: no URL or output file");
    if (strncmp(o->url, "http://", 7) && strncmp(o->url, "https://", 8))
        return ms_error(err, MEDSEG_ERR_ARG, "%s: only http:// and https:// URLs are downloaded", o->url);
    static int inited;
    if (!inited) {
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0)
            return ms_error(err, MEDSEG_ERR_INTERNAL, "cannot initialise libcurl");
        inited = 1;
    }
    dl_state s = {.o = o, .tty = isatty(2), .last_tenth = -1};
    struct stat sb;
    if (stat(o->part_path, &sb) == 0 && S_ISREG(sb.st_mode)) s.offset = (int64_t)sb.st_size;
    if (o->expect_size > 0 && s.offset > o->expect_size) s.offset = 0; /* cannot be ours: start over */
    s.f = fopen(o->part_path, s.offset > 0 ? "ab" : "wb");
    if (!s.f) return ms_error(err, MEDSEG_ERR_IO, "%s: cannot write: %s", o->part_path, strerror(errno));
    /* one download per .part: a second medseg fetching the same model waits for nothing, it stops */
    if (flock(fileno(s.f), LOCK_EX | LOCK_NB) != 0) {
        fclose(s.f);
        return ms_error(err, MEDSEG_ERR_IO, "%s: another download into this file is running", o->part_path);
    }
    if (o->expect_size > 0 && s.offset == o->expect_size) {
        /* already complete (an earlier run stopped after the transfer) */
        fclose(s.f);
        *size = s.offset;
        return MEDSEG_OK;
    }
    s.c = curl_easy_init();
    if (!s.c) {
        fclose(s.f);
        return ms_error(err, MEDSEG_ERR_INTERNAL, "cannot create a libcurl handle");
    }
    char ua[64];
    snprintf(ua, sizeof ua, "medseg/%s", MEDSEG_VERSION);
    char curl_msg[CURL_ERROR_SIZE] = "";
    curl_easy_setopt(s.c, CURLOPT_URL, o->url);
    curl_easy_setopt(s.c, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(s.c, CURLOPT_MAXREDIRS, 10L);
    curl_easy_setopt(s.c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(s.c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(s.c, CURLOPT_FAILONERROR, 1L);
    curl_easy_setopt(s.c, CURLOPT_CONNECTTIMEOUT, 30L);
    curl_easy_setopt(s.c, CURLOPT_LOW_SPEED_LIMIT, 1L); /* give up after 60 s without data */
    curl_easy_setopt(s.c, CURLOPT_LOW_SPEED_TIME, 60L);
    curl_easy_setopt(s.c, CURLOPT_USERAGENT, ua);
    curl_easy_setopt(s.c, CURLOPT_ERRORBUFFER, curl_msg);
    curl_easy_setopt(s.c, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(s.c, CURLOPT_WRITEDATA, &s);
    if (s.offset > 0) curl_easy_setopt(s.c, CURLOPT_RESUME_FROM_LARGE, (curl_off_t)s.offset);
    s.t0 = ms_now_ms();
    CURLcode rc = curl_easy_perform(s.c);
    long code = 0;
    curl_easy_getinfo(s.c, CURLINFO_RESPONSE_CODE, &code);
    if (s.tty && o->progress && s.got > 0 && rc != CURLE_OK) fputc('\n', stderr);
    int close_failed = fclose(s.f) != 0;
    curl_easy_cleanup(s.c);
    medseg_status st = MEDSEG_OK;
    int64_t have = s.offset + s.got;
    char total_txt[32] = "?";
    if (s.total > 0) snprintf(total_txt, sizeof total_txt, "%lld", (long long)s.total);
    if (s.fail) {
        st = ms_error(err, s.fail, "%s: %s", o->url, s.why);
    } else if (rc == CURLE_HTTP_RETURNED_ERROR && code == 416 && s.offset > 0 &&
               (o->expect_size <= 0 || s.offset == o->expect_size)) {
        /* "range not satisfiable" for a file we already hold entirely */
        have = s.offset;
    } else if (rc == CURLE_HTTP_RETURNED_ERROR) {
        st = ms_error(err, MEDSEG_ERR_IO, "%s: HTTP status %ld (%s)", o->url, code,
                      code == 404 ? "not found" : code == 403 ? "forbidden" : code >= 500 ? "server error" : "refused");
    } else if (rc != CURLE_OK) {
        st = ms_error(err, MEDSEG_ERR_IO,
                      "%s: download interrupted after %lld of %s bytes (%s); the partial file %s is kept: run the "
                      "same command again to resume",
                      o->url, (long long)have, total_txt, curl_msg[0] ? curl_msg : curl_easy_strerror(rc), o->part_path);
    } else if (close_failed) {
        st = ms_error(err, MEDSEG_ERR_IO, "%s: cannot write: %s", o->part_path, strerror(errno));
    } else if (s.total > 0 && have != s.total) {
        st = ms_error(err, MEDSEG_ERR_IO, "%s: got %lld of %lld bytes; the partial file %s is kept: run again to resume",
                      o->url, (long long)have, (long long)s.total, o->part_path);
    }
    if (st && have == 0) remove(o->part_path); /* nothing received: leave no empty .part behind */
    if (!st) {
        if (s.total <= 0) s.total = have;
        draw(&s, 1);
        *size = have;
    }
    return st;
}

medseg_status ms_git_blob_sha1_file(const char *path, char hex[41], medseg_error *err)
{
    hex[0] = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return ms_error(err, MEDSEG_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fileno(f), &sb) != 0) {
        fclose(f);
        return ms_error(err, MEDSEG_ERR_IO, "%s: cannot stat: %s", path, strerror(errno));
    }
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    char head[40];
    int hl = snprintf(head, sizeof head, "blob %lld", (long long)sb.st_size) + 1; /* with the NUL */
    medseg_status st = MEDSEG_OK;
    if (!ctx || EVP_DigestInit_ex(ctx, EVP_sha1(), NULL) != 1 || EVP_DigestUpdate(ctx, head, (size_t)hl) != 1)
        st = ms_error(err, MEDSEG_ERR_INTERNAL, "%s: cannot initialise sha1", path);
    unsigned char *buf = st ? NULL : ms_malloc(1 << 20, err, "sha1 buffer");
    if (!st && !buf) st = MEDSEG_ERR_NOMEM;
    while (!st) {
        size_t n = fread(buf, 1, 1 << 20, f);
        if (n && EVP_DigestUpdate(ctx, buf, n) != 1) st = ms_error(err, MEDSEG_ERR_INTERNAL, "%s: sha1 failed", path);
        if (n < (1 << 20)) {
            if (ferror(f)) st = ms_error(err, MEDSEG_ERR_IO, "%s: read failed", path);
            break;
        }
    }
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    if (!st && (EVP_DigestFinal_ex(ctx, md, &mdlen) != 1 || mdlen != 20))
        st = ms_error(err, MEDSEG_ERR_INTERNAL, "%s: sha1 failed", path);
    if (!st)
        for (int i = 0; i < 20; i++) snprintf(hex + 2 * i, 3, "%02x", md[i]);
    free(buf);
    EVP_MD_CTX_free(ctx);
    fclose(f);
    return st;
}

int ms_have_xxh128(void)
{
#ifdef MS_HAVE_XXHASH
    return 1;
#else
    return 0;
#endif
}

medseg_status ms_xxh128_file(const char *path, char hex[33], medseg_error *err)
{
    hex[0] = 0;
#ifdef MS_HAVE_XXHASH
    FILE *f = fopen(path, "rb");
    if (!f) return ms_error(err, MEDSEG_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    XXH3_state_t *state = XXH3_createState();
    unsigned char *buf = ms_malloc(1 << 20, err, "xxh128 buffer");
    medseg_status st = MEDSEG_OK;
    if (!buf) st = MEDSEG_ERR_NOMEM;
    else if (!state || XXH3_128bits_reset(state) != XXH_OK)
        st = ms_error(err, MEDSEG_ERR_INTERNAL, "%s: cannot initialise xxh128", path);
    while (!st) {
        size_t n = fread(buf, 1, 1 << 20, f);
        if (n && XXH3_128bits_update(state, buf, n) != XXH_OK)
            st = ms_error(err, MEDSEG_ERR_INTERNAL, "%s: xxh128 failed", path);
        if (n < (1 << 20)) {
            if (ferror(f)) st = ms_error(err, MEDSEG_ERR_IO, "%s: read failed", path);
            break;
        }
    }
    if (!st) {
        XXH128_canonical_t c;
        XXH128_canonicalFromHash(&c, XXH3_128bits_digest(state));
        for (int i = 0; i < 16; i++) snprintf(hex + 2 * i, 3, "%02x", c.digest[i]);
    }
    free(buf);
    XXH3_freeState(state);
    fclose(f);
    return st;
#else
    (void)path;
    return ms_error(err, MEDSEG_ERR_UNSUPPORTED, "xxh128: medseg was built without xxHash (libxxhash-dev)");
#endif
}
