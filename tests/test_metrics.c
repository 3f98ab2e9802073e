/* Metrics and prompt simulation: hand-computed shapes, brute-force distance checks, the MT19937
 * stream numpy uses, the CVPR25 click rule on small cases, and agreement with an independent scipy
 * implementation (tests/metrics_oracle.py) on real masks from ../shared/data (2D and 3D,
 * anisotropic spacing). */
#include "testutil.h"
#include "io/volume.h"
#include "workflow/metrics.h"
#include "workflow/prompt_sim.h"

#include <math.h>
#include <unistd.h>

static uint8_t *zeros(size_t n)
{
    uint8_t *m = calloc(n, 1);
    if (!m) exit(2);
    return m;
}

static void box2(uint8_t *m, int w, int x0, int y0, int x1, int y1) /* inclusive */
{
    for (int y = y0; y <= y1; y++)
        for (int x = x0; x <= x1; x++) m[y * w + x] = 1;
}

static ms_metrics metr(const uint8_t *p, const uint8_t *g, int64_t nx, int64_t ny, int64_t nz, const double sp[3],
                       double tol)
{
    ms_metrics m;
    medseg_error e;
    CHECK_OK(ms_metrics_compute(&m, p, g, nx, ny, nz, sp, tol, &e), &e);
    return m;
}

#define NEAR(a, b, tol) (fabs((a) - (b)) <= (tol))

static void test_squares(void)
{
    /* two 10x10 squares, the second shifted 2 px right (worked out in docs/eval.md) */
    int w = 30, h = 20;
    uint8_t *a = zeros(600), *b = zeros(600);
    box2(a, w, 5, 5, 14, 14);
    box2(b, w, 7, 5, 16, 14);
    const double one[3] = {1, 1, 1};
    ms_metrics m = metr(a, b, w, h, 1, one, 1.0);
    CHECK(NEAR(m.dice, 0.8, 1e-12), "dice %g", m.dice);
    CHECK(NEAR(m.iou, 80.0 / 120.0, 1e-12), "iou %g", m.iou);
    CHECK(NEAR(m.nsd, 40.0 / 72.0, 1e-12), "nsd(1) %g want %g", m.nsd, 40.0 / 72.0);
    CHECK(NEAR(m.hd95, 2.0, 1e-12), "hd95 %g", m.hd95);
    m = metr(a, b, w, h, 1, one, 2.0);
    CHECK(NEAR(m.nsd, 1.0, 1e-12), "nsd(2) %g", m.nsd);
    /* the same with x spacing 0.5 mm: the 2 px shift is 1 mm; per side 16 distances 0, 2 of
     * 0.5 mm (top/bottom rows at x+1) and 18 of 1 mm (the rest), so NSD(0.5) = 36/72 */
    const double sx[3] = {0.5, 1, 1};
    m = metr(a, b, w, h, 1, sx, 0.5);
    CHECK(NEAR(m.hd95, 1.0, 1e-12), "hd95 aniso %g", m.hd95);
    CHECK(NEAR(m.nsd, 0.5, 1e-12), "nsd aniso %g", m.nsd);
    /* identical */
    m = metr(a, a, w, h, 1, one, 0.0);
    CHECK(m.dice == 1 && m.iou == 1 && m.nsd == 1 && m.hd95 == 0, "identical %g %g %g %g", m.dice, m.iou, m.nsd, m.hd95);
    /* empty conventions */
    uint8_t *z = zeros(600);
    m = metr(z, z, w, h, 1, one, 1.0);
    CHECK(m.dice == 1 && m.iou == 1 && m.nsd == 1 && m.hd95 == 0, "both empty");
    m = metr(z, a, w, h, 1, one, 1.0);
    CHECK(m.dice == 0 && m.iou == 0 && m.nsd == 0 && isinf(m.hd95), "pred empty");
    m = metr(a, z, w, h, 1, one, 1.0);
    CHECK(m.dice == 0 && m.nsd == 0 && isinf(m.hd95), "gt empty");
    /* a square touching the image edge: edge pixels are border (outside = background) */
    uint8_t *full = zeros(600), *bd = zeros(600);
    box2(full, w, 0, 0, 29, 19);
    ms_mask_border(bd, full, w, h, 1);
    int nb = 0;
    for (int i = 0; i < 600; i++) nb += bd[i];
    CHECK(nb == 2 * 30 + 2 * 18, "full-image border %d", nb);
    free(a), free(b), free(z), free(full), free(bd);
}

static void test_cubes(void)
{
    /* 6x6x6 cube shifted one slice along z, z spacing 2.5 mm: Dice 5/6, every border distance is
     * 0, 1 (x/y neighbours at 1 mm) or 2.5 (one slice), the largest 2.5 */
    int64_t nx = 12, ny = 12, nz = 12;
    size_t n = (size_t)(nx * ny * nz);
    uint8_t *a = zeros(n), *b = zeros(n);
    for (int k = 2; k <= 7; k++)
        for (int j = 3; j <= 8; j++)
            for (int i = 3; i <= 8; i++) {
                a[(k * ny + j) * nx + i] = 1;
                b[((k + 1) * ny + j) * nx + i] = 1;
            }
    const double sp[3] = {1, 1, 2.5};
    ms_metrics m = metr(a, b, nx, ny, nz, sp, 2.5);
    CHECK(NEAR(m.dice, 5.0 / 6.0, 1e-12), "cube dice %g", m.dice);
    CHECK(NEAR(m.nsd, 1.0, 1e-12), "cube nsd(2.5) %g", m.nsd);
    CHECK(m.hd95 > 0 && m.hd95 <= 2.5 + 1e-12, "cube hd95 %g", m.hd95);
    m = metr(a, b, nx, ny, nz, sp, 2.4);
    CHECK(m.nsd < 1.0, "cube nsd(2.4) %g", m.nsd);
    free(a), free(b);
}

static void test_discs(void)
{
    /* discs of radius 30 px, centres 6 px apart: boundary distances run from 0 to 6; HD95 between
     * 5 and 6 */
    int w = 128, h = 128;
    uint8_t *a = zeros((size_t)w * h), *b = zeros((size_t)w * h);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            a[y * w + x] = (x - 60) * (x - 60) + (y - 64) * (y - 64) <= 900;
            b[y * w + x] = (x - 66) * (x - 66) + (y - 64) * (y - 64) <= 900;
        }
    const double one[3] = {1, 1, 1};
    ms_metrics m = metr(a, b, w, h, 1, one, 2.0);
    CHECK(m.hd95 >= 5.0 && m.hd95 <= 6.0, "disc hd95 %g", m.hd95);
    CHECK(m.nsd > 0.2 && m.nsd < 0.6, "disc nsd %g", m.nsd);
    /* HD95 scales with the spacing */
    const double two[3] = {2, 2, 1};
    ms_metrics m2 = metr(a, b, w, h, 1, two, 4.0);
    CHECK(NEAR(m2.hd95, 2 * m.hd95, 1e-9), "disc hd95 scaled %g vs %g", m2.hd95, m.hd95);
    CHECK(NEAR(m2.nsd, m.nsd, 1e-12), "disc nsd scaled %g vs %g", m2.nsd, m.nsd);
    free(a), free(b);
}

/* Brute force: squared distance to the nearest site, anisotropic, on random small volumes. */
static void test_edt_bruteforce(void)
{
    ms_mt19937 r;
    ms_mt_seed(&r, 7);
    for (int trial = 0; trial < 6; trial++) {
        int64_t nx = 5 + trial * 3, ny = 4 + trial * 2, nz = trial % 2 ? 1 : 3 + trial;
        size_t n = (size_t)(nx * ny * nz);
        uint8_t *site = zeros(n);
        int density = 2 + trial * 7;
        for (size_t i = 0; i < n; i++) site[i] = ms_mt_choice(&r, 100) < (uint64_t)density;
        if (trial == 5) memset(site, 0, n); /* no site: infinity everywhere */
        double sp[3] = {0.7 + 0.1 * trial, 1.3, 3.0};
        double *d = malloc(n * sizeof *d);
        medseg_error e;
        CHECK_OK(ms_edt_sq(d, site, nx, ny, nz, sp, &e), &e);
        double maxerr = 0;
        int bad_inf = 0;
        for (int64_t k = 0; k < nz; k++)
            for (int64_t j = 0; j < ny; j++)
                for (int64_t i = 0; i < nx; i++) {
                    double best = INFINITY;
                    for (int64_t kk = 0; kk < nz; kk++)
                        for (int64_t jj = 0; jj < ny; jj++)
                            for (int64_t ii = 0; ii < nx; ii++) {
                                if (!site[(kk * ny + jj) * nx + ii]) continue;
                                double dx = (ii - i) * sp[0], dy = (jj - j) * sp[1], dz = (kk - k) * sp[2];
                                double v = dx * dx + dy * dy + dz * dz;
                                if (v < best) best = v;
                            }
                    double got = d[(k * ny + j) * nx + i];
                    if (isinf(best) || isinf(got)) bad_inf += isinf(best) != isinf(got);
                    else if (fabs(got - best) > maxerr) maxerr = fabs(got - best);
                }
        CHECK(maxerr <= 1e-9 && !bad_inf, "edt trial %d: max err %g, inf mismatches %d", trial, maxerr, bad_inf);
        free(site);
        free(d);
    }
}

static void test_percentile(void)
{
    double a[] = {5, 1, 4, 2, 3};
    CHECK(NEAR(ms_percentile(a, 5, 95), 4.8, 1e-12), "p95 %g", ms_percentile(a, 5, 95));
    double b[] = {7};
    CHECK(ms_percentile(b, 1, 95) == 7, "p95 single");
    double c[] = {0, 10};
    CHECK(NEAR(ms_percentile(c, 2, 50), 5, 1e-12), "p50");
}

static void test_prompts(void)
{
    /* MT19937 init_genrand(42): the values the golden README lists */
    ms_mt19937 r;
    ms_mt_seed(&r, 42);
    uint32_t w0 = ms_mt_u32(&r), w1 = ms_mt_u32(&r), w2 = ms_mt_u32(&r);
    CHECK(w0 == 1608637542u && w1 == 3421126067u && w2 == 4083286876u, "mt19937(42): %u %u %u", w0, w1, w2);
    /* numpy: np.random.seed(42); [np.random.choice(n) for n in (10, 3, 1000)] per fresh seed */
    const uint64_t ns[3] = {10, 3, 1000}, want[3] = {6, 2, 102};
    for (int i = 0; i < 3; i++) {
        ms_mt_seed(&r, 42);
        uint64_t got = ms_mt_choice(&r, ns[i]);
        CHECK(got == want[i], "choice(%llu) = %llu, numpy %llu", (unsigned long long)ns[i], (unsigned long long)got,
              (unsigned long long)want[i]);
    }
    /* bbox and EDT-maximum point: 5x3 rectangle at x 2..6, y 1..3 in a 9x5 image; the depth is 2
     * on the middle row x 3..5, first in row-major order is (3, 2) */
    int w = 9, h = 5;
    uint8_t *m = zeros((size_t)w * h);
    box2(m, w, 2, 1, 6, 3);
    int box[4], x = -1, y = -1;
    CHECK(ms_mask_bbox(m, w, h, box) && box[0] == 2 && box[1] == 1 && box[2] == 6 && box[3] == 3, "bbox");
    medseg_error e;
    CHECK(ms_point_edt_max(m, w, h, &x, &y, &e) == 1 && x == 3 && y == 2, "edt max point (%d,%d)", x, y);
    /* a mask touching the image edge: the edge counts as background */
    uint8_t *m2 = zeros((size_t)w * h);
    box2(m2, w, 0, 0, 4, 4);
    CHECK(ms_point_edt_max(m2, w, h, &x, &y, &e) == 1 && x == 2 && y == 2, "edt max padded (%d,%d)", x, y);
    /* CVPR25 click: prediction = the rectangle minus its right column -> one FN component, the
     * column x=6 (3 px, y 1..3), deepest pixel (6, 2) (depth 1 everywhere: 3 candidates, numpy's
     * choice(3) with seed 42 gives 2 -> (6, 3)); label 1 (under-segmented) */
    uint8_t *p = zeros((size_t)w * h);
    box2(p, w, 2, 1, 5, 3);
    int lab = -1;
    CHECK(ms_click_cvpr25(p, m, w, h, 42, &x, &y, &lab, &e) == 1 && x == 6 && y == 3 && lab == 1,
          "cvpr25 click (%d,%d,%d)", x, y, lab);
    /* two error components (FP of 2 px at the top-left, FN column of 3): the larger one (FN) */
    p[0] = p[1] = 1;
    CHECK(ms_click_cvpr25(p, m, w, h, 42, &x, &y, &lab, &e) == 1 && x == 6 && lab == 1, "cvpr25 largest (%d,%d,%d)",
          x, y, lab);
    /* tie 4 vs 4: a 4-px FN column below vs the 2x2 FP: the first in row-major order (FP, at y 0) wins */
    uint8_t *g3 = zeros((size_t)w * h), *p3 = zeros((size_t)w * h);
    box2(p3, w, 0, 0, 1, 1);       /* FP 2x2 at the top-left */
    box2(g3, w, 8, 1, 8, 4);       /* FN column of 4 at x=8 */
    CHECK(ms_click_cvpr25(p3, g3, w, h, 42, &x, &y, &lab, &e) == 1 && lab == 0 && x <= 1 && y <= 1,
          "cvpr25 tie (%d,%d,%d)", x, y, lab);
    CHECK(ms_click_cvpr25(m, m, w, h, 42, &x, &y, &lab, &e) == 0, "cvpr25 perfect: no click");
    /* micro-sam iterative: positive inside the FN, negative inside the FP, else the ring */
    ms_mt_seed(&r, 1);
    int pos[2], neg[2];
    CHECK(ms_clicks_iterative(p, m, w, h, &r, pos, neg, &e) == 1 && m[pos[1] * w + pos[0]] && !p[pos[1] * w + pos[0]] &&
              p[neg[1] * w + neg[0]] && !m[neg[1] * w + neg[0]],
          "iterative pos (%d,%d) neg (%d,%d)", pos[0], pos[1], neg[0], neg[1]);
    CHECK(ms_clicks_iterative(m, m, w, h, &r, pos, neg, &e) == 1 && m[pos[1] * w + pos[0]] && neg[0] >= 0 &&
              !m[neg[1] * w + neg[0]],
          "iterative perfect: pos in TP, neg in ring");
    /* jitter stays inside the image and only grows the box */
    int jb[4] = {2, 1, 6, 3};
    ms_mt_seed(&r, 3);
    ms_box_jitter(jb, 20, w, h, &r);
    CHECK(jb[0] <= 2 && jb[1] <= 1 && jb[2] >= 6 && jb[3] >= 3 && jb[0] >= 0 && jb[1] >= 0 && jb[2] <= 8 && jb[3] <= 4,
          "jitter box %d %d %d %d", jb[0], jb[1], jb[2], jb[3]);
    free(m), free(m2), free(p), free(g3), free(p3);
}

/* ---------------------------------------------------------------- oracle on real masks */

typedef struct {
    const char *name, *pred, *gt;
    double pv, gv;
    int shift[3];
    double tol;
} pair;

static const pair pairs[] = {
    {"2d_lung_lobes", "sammed2d_demo/masks/s0114_111_lung_lower_lobe_left_000.png", "sammed2d_demo/masks/s0114_111_lung_upper_lobe_left_000.png", 255, 255, {0, 0, 0}, 2},
    {"2d_hip_far", "sammed2d_demo/masks/s0619_32_hip_left_000.png", "sammed2d_demo/masks/s0619_32_hip_left_001.png", 255, 255, {0, 0, 0}, 2},
    {"2d_hc18_shift", "hc18_fetal_us/000_HC_Annotation_label01.png", "hc18_fetal_us/000_HC_Annotation_label01.png", 1, 1, {5, -3, 0}, 2},
    {"2d_kvasir_shift", "kvasir_seg_medsam/masks/cju6v3bb2v7xo085090blubyw_label01.png", "kvasir_seg_medsam/masks/cju6v3bb2v7xo085090blubyw_label01.png", 1, 1, {-4, 7, 0}, 5},
    {"3d_liver_seg_vs_fast", "totalseg/example_seg_fast.nii.gz", "totalseg/example_seg.nii.gz", 5, 5, {0, 0, 0}, 3},
    {"3d_aorta_seg_vs_fast", "totalseg/example_seg_fast.nii.gz", "totalseg/example_seg.nii.gz", 52, 52, {0, 0, 0}, 2},
    {"3d_lesion_aniso_shift", "medsam2_recist_ct/CT_Lesion_000015_01_01_081-093.npz", "medsam2_recist_ct/CT_Lesion_000015_01_01_081-093.npz", 1, 1, {2, -1, 1}, 2},
};
#define NPAIRS ((int)(sizeof pairs / sizeof *pairs))

static int is2d(const char *p)
{
    size_t n = strlen(p);
    return n > 4 && (!strcmp(p + n - 4, ".png") || !strcmp(p + n - 4, ".bmp") || !strcmp(p + n - 4, ".jpg"));
}

/* mask = (file == value), as [nz][ny][nx]; spacing from the volume (2D: 1 mm). */
static uint8_t *load_mask(const char *rel, double value, int64_t dim[3], double sp[3])
{
    const char *path = tu_path("data/%s", rel);
    medseg_error e;
    uint8_t *m = NULL;
    if (is2d(rel)) {
        medseg_image img;
        if (medseg_image_load(path, &img, &e) != MEDSEG_OK) {
            CHECK(0, "%s", e.message);
            return NULL;
        }
        dim[0] = img.width, dim[1] = img.height, dim[2] = 1;
        sp[0] = sp[1] = sp[2] = 1;
        size_t n = (size_t)img.width * img.height;
        m = zeros(n);
        for (size_t i = 0; i < n; i++) m[i] = img.data[i * img.channels] == value;
        medseg_image_free(&img);
        return m;
    }
    medseg_volume v;
    size_t pl = strlen(rel);
    medseg_status st = pl > 4 && !strcmp(rel + pl - 4, ".npz") ? ms_npz_read_volume(path, "gts", &v, &e)
                                                               : medseg_volume_load(path, &v, &e);
    if (st != MEDSEG_OK) {
        CHECK(0, "%s", e.message);
        return NULL;
    }
    size_t n = (size_t)(v.dim[0] * v.dim[1] * v.dim[2]);
    m = zeros(n);
    for (size_t i = 0; i < n; i++) m[i] = medseg_volume_value(&v, i * (size_t)v.channels) == value;
    for (int a = 0; a < 3; a++) dim[a] = v.dim[a], sp[a] = v.spacing[a];
    medseg_volume_free(&v);
    return m;
}

static void shift_mask(uint8_t *m, const int64_t d[3], const int s[3])
{
    size_t n = (size_t)(d[0] * d[1] * d[2]);
    uint8_t *o = zeros(n);
    for (int64_t k = 0; k < d[2]; k++)
        for (int64_t j = 0; j < d[1]; j++)
            for (int64_t i = 0; i < d[0]; i++) {
                int64_t ti = i + s[0], tj = j + s[1], tk = k + s[2];
                if (ti < 0 || tj < 0 || tk < 0 || ti >= d[0] || tj >= d[1] || tk >= d[2]) continue;
                o[(tk * d[1] + tj) * d[0] + ti] = m[(k * d[1] + j) * d[0] + i];
            }
    memcpy(m, o, n);
    free(o);
}

static void test_oracle(void)
{
    char spec[] = "/tmp/medseg_metrics_specXXXXXX";
    int fd = mkstemp(spec);
    CHECK(fd >= 0, "mkstemp");
    if (fd < 0) return;
    FILE *f = fdopen(fd, "w");
    for (int i = 0; i < NPAIRS; i++)
        fprintf(f, "%s\t%s\t%g\t%s\t%g\t%d,%d,%d\t%g\n", pairs[i].name, pairs[i].pred, pairs[i].pv, pairs[i].gt,
                pairs[i].gv, pairs[i].shift[0], pairs[i].shift[1], pairs[i].shift[2], pairs[i].tol);
    fclose(f);
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s/tests/metrics_oracle.py %s %s", MEDSEG_SOURCE_DIR, tu_shared(),
             spec);
    FILE *pp = popen(cmd, "r");
    CHECK(pp != NULL, "popen %s", cmd);
    if (!pp) return;
    char line[1024];
    int seen = 0;
    while (fgets(line, sizeof line, pp)) {
        char name[256], hs[64];
        double od, oi, on, oh;
        if (sscanf(line, "%255s %lf %lf %lf %63s", name, &od, &oi, &on, hs) != 5) continue;
        oh = !strcmp(hs, "inf") ? INFINITY : atof(hs);
        int k = 0;
        while (k < NPAIRS && strcmp(pairs[k].name, name)) k++;
        if (k == NPAIRS) continue;
        seen++;
        int64_t dp[3], dg[3];
        double spp[3], spg[3];
        uint8_t *p = load_mask(pairs[k].pred, pairs[k].pv, dp, spp);
        uint8_t *g = load_mask(pairs[k].gt, pairs[k].gv, dg, spg);
        if (!p || !g) {
            free(p), free(g);
            continue;
        }
        CHECK(dp[0] == dg[0] && dp[1] == dg[1] && dp[2] == dg[2], "%s: grids differ", name);
        shift_mask(p, dp, pairs[k].shift);
        ms_metrics m = metr(p, g, dg[0], dg[1], dg[2], spg, pairs[k].tol);
        printf("%-24s dice %.6f/%.6f iou %.6f/%.6f nsd %.6f/%.6f hd95 %.4f/%.4f (medseg/scipy) spacing %g,%g,%g\n",
               name, m.dice, od, m.iou, oi, m.nsd, on, m.hd95, oh, spg[0], spg[1], spg[2]);
        CHECK(NEAR(m.dice, od, 1e-9) && NEAR(m.iou, oi, 1e-9), "%s: overlap differs", name);
        CHECK(NEAR(m.nsd, on, 1e-9), "%s: nsd %.9f vs scipy %.9f", name, m.nsd, on);
        CHECK((isinf(oh) && isinf(m.hd95)) || NEAR(m.hd95, oh, 1e-6), "%s: hd95 %.9f vs scipy %.9f", name, m.hd95, oh);
        free(p), free(g);
    }
    int rc = pclose(pp);
    CHECK(rc == 0, "oracle exit status %d", rc);
    CHECK(seen == NPAIRS, "oracle answered %d of %d pairs", seen, NPAIRS);
    unlink(spec);
}

int main(void)
{
    test_squares();
    test_cubes();
    test_discs();
    test_edt_bruteforce();
    test_percentile();
    test_prompts();
    test_oracle();
    return tu_finish("test_metrics");
}
