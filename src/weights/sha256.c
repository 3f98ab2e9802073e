/* sha256 of a file, streamed through libcrypto's EVP interface (never the whole file in memory). */
#include "weights/import.h"

#include <errno.h>
#include <openssl/evp.h>
#include <string.h>

medseg_status ms_sha256_file(const char *path, char hex[65], medseg_error *err)
{
    hex[0] = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return ms_error(err, MEDSEG_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (!ctx || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1) {
        EVP_MD_CTX_free(ctx);
        fclose(f);
        return ms_error(err, MEDSEG_ERR_INTERNAL, "%s: cannot initialise sha256", path);
    }
    static const size_t chunk = 1 << 20;
    unsigned char *buf = ms_malloc(chunk, err, "sha256 buffer");
    if (!buf) {
        EVP_MD_CTX_free(ctx);
        fclose(f);
        return MEDSEG_ERR_NOMEM;
    }
    medseg_status st = MEDSEG_OK;
    for (;;) {
        size_t n = fread(buf, 1, chunk, f);
        if (n && EVP_DigestUpdate(ctx, buf, n) != 1) {
            st = ms_error(err, MEDSEG_ERR_INTERNAL, "%s: sha256 update failed", path);
            break;
        }
        if (n < chunk) {
            if (ferror(f)) st = ms_error(err, MEDSEG_ERR_IO, "%s: read failed", path);
            break;
        }
    }
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    if (!st && (EVP_DigestFinal_ex(ctx, md, &mdlen) != 1 || mdlen != 32))
        st = ms_error(err, MEDSEG_ERR_INTERNAL, "%s: sha256 final failed", path);
    if (!st) {
        for (int i = 0; i < 32; i++) snprintf(hex + 2 * i, 3, "%02x", md[i]);
        hex[64] = 0;
    }
    free(buf);
    EVP_MD_CTX_free(ctx);
    fclose(f);
    return st;
}
