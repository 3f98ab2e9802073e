#include "cli/cli.h"
#include "core/kernels.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cli_exit_code(medseg_status st)
{
    /* distinct exit codes per failure class; 1 is left for usage errors */
    switch (st) {
    case MEDSEG_OK: return 0;
    case MEDSEG_ERR_ARG: return 2;
    case MEDSEG_ERR_IO: return 3;
    case MEDSEG_ERR_FORMAT: return 4;
    case MEDSEG_ERR_UNSUPPORTED: return 5;
    case MEDSEG_ERR_MODEL: return 6;
    case MEDSEG_ERR_CHECKSUM: return 7;
    case MEDSEG_ERR_NOMEM: return 8;
    default: return 9;
    }
}

int cli_fail(const medseg_error *err)
{
    fprintf(stderr, "medseg: %s\n", err->message[0] ? err->message : medseg_status_name(err->status));
    return cli_exit_code(err->status ? err->status : MEDSEG_ERR_INTERNAL);
}

int cli_parse_numbers(const char *s, double *v, int max)
{
    int n = 0;
    const char *p = s;
    while (*p) {
        if (n == max) return -1;
        char *end;
        errno = 0;
        double d = strtod(p, &end);
        if (end == p || errno || !isfinite(d)) return -1;
        v[n++] = d;
        p = end;
        if (*p == ',') {
            p++;
            if (!*p) return -1;
        } else if (*p) {
            return -1;
        }
    }
    return n;
}

int cli_parse_long(const char *s, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (end == s || *end || errno || v < lo || v > hi) return 0;
    *out = v;
    return 1;
}

int cli_model_option(int argc, char **argv, int *i, const char **model, int *threads)
{
    const char *a = argv[*i];
    if (*i + 1 >= argc) return 0;
    if (!strcmp(a, "--model")) {
        *model = argv[++*i];
        return 1;
    }
    if (!strcmp(a, "--threads")) {
        long t;
        if (!cli_parse_long(argv[++*i], 1, 1024, &t)) {
            fprintf(stderr, "medseg: --threads '%s': expected a number from 1 to 1024\n", argv[*i]);
            return -1;
        }
        *threads = (int)t;
        return 1;
    }
    if (!strcmp(a, "--precision")) {
        medseg_error err;
        ms_precision p;
        ms_error_clear(&err);
        if (ms_precision_parse(argv[++*i], &p, &err) || ms_precision_set(p, &err)) return -cli_fail(&err);
        return 1;
    }
    return 0;
}

static void usage(FILE *f)
{
    fprintf(f,
            "medseg %s -- promptable medical image segmentation (SAM family) on the CPU\n"
            "\n"
            "usage: medseg COMMAND [options]    (medseg COMMAND --help for details)\n"
            "\n"
            "commands:\n"
            "  segment   segment an image from a box, clicks or a previous mask\n"
            "  model     import, fetch, list and inspect models\n"
            "  bench     time the image encoder and the decoder\n"
            "  embed     precompute per-slice embeddings of a volume into a cache folder\n"
            "  eval      score simulated prompts over a manifest (Dice, NSD, HD95, plots)\n"
            "  info      what an image, volume or DICOM folder holds (geometry, values)\n"
            "  convert   convert an image or volume to .nii(.gz), .nrrd, .npz or .png, values exact\n",
            MEDSEG_VERSION);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 1;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "segment")) return cmd_segment(argc - 1, argv + 1);
    if (!strcmp(cmd, "model")) return cmd_model(argc - 1, argv + 1);
    if (!strcmp(cmd, "bench")) return cmd_bench(argc - 1, argv + 1);
    if (!strcmp(cmd, "embed")) return cmd_embed(argc - 1, argv + 1);
    if (!strcmp(cmd, "eval")) return cmd_eval(argc - 1, argv + 1);
    if (!strcmp(cmd, "info")) return cmd_info(argc - 1, argv + 1);
    if (!strcmp(cmd, "convert")) return cmd_convert(argc - 1, argv + 1);
    if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(cmd, "--version")) {
        printf("medseg %s\n", MEDSEG_VERSION);
        return 0;
    }
    fprintf(stderr, "medseg: unknown command '%s'\n", cmd);
    usage(stderr);
    return 1;
}
