/* Prompt encoder + mask decoder against ../shared/golden/minisam (official PyTorch SamPredictor
 * outputs): for 3 images x 4 prompts, the transformed prompts and the GOLDEN embedding go in;
 * sparse embeddings, token-0 and tokens-1..3 low-res logits and IoU predictions are compared.
 * The dense mask-prompt embedding and the dense positional encoding are compared with plain
 * double-precision loops written from the PyTorch formulas. Weight-table errors (missing,
 * misshapen tensors) are checked. A repeated call must give the same bits, and
 * mask_decoder_forward_tokens the full call's planes for the chosen tokens and nothing else.
 * Timings (median of 20, 1 and 2 threads) are printed only. */
#include "testutil.h"

#include "core/kernels.h"
#include "models/mask_decoder.h"
#include "models/prompt_encoder.h"
#include "weights/tensors.h"

#ifdef __SANITIZE_ADDRESS__
#define TIMING_REPS 2 /* timings mean nothing under the sanitizers */
#else
#define TIMING_REPS 20
#endif

static const char *images[] = {"medsam_demo", "amos_0004_75", "hc18_000"};
static const char *prompts[] = {"p0_box", "p1_point", "p2_points3", "p3_box_mask"};

static const char *model_path(void)
{
    static char buf[4096];
    const char *dir = getenv("MEDSEG_MODEL_DIR");
#ifdef MEDSEG_TEST_MODEL_DIR
    if (!dir || !*dir) dir = MEDSEG_TEST_MODEL_DIR;
#endif
    snprintf(buf, sizeof buf, "%s/minisam.safetensors", dir ? dir : ".");
    return buf;
}

static int file_exists(const char *p)
{
    FILE *f = fopen(p, "rb");
    if (f) fclose(f);
    return f != NULL;
}

typedef struct {
    float coords[2 * MEDSEG_MAX_POINTS];
    int labels[MEDSEG_MAX_POINTS];
    int n;
    float box[4];
    int has_box;
    ms_npy mask; /* count 0 when absent */
} prompt_in;

static prompt_in load_prompt(const char *img, const char *pr)
{
    prompt_in p;
    memset(&p, 0, sizeof p);
    const char *pc = tu_path("golden/minisam/%s/%s.point_coords.npy", img, pr);
    if (file_exists(pc)) {
        ms_npy c = tu_npy(pc), l = tu_npy(tu_path("golden/minisam/%s/%s.point_labels.npy", img, pr));
        p.n = (int)l.count;
        if (p.n > MEDSEG_MAX_POINTS || c.count != 2 * l.count) {
            fprintf(stderr, "FATAL: bad point files for %s/%s\n", img, pr);
            exit(2);
        }
        for (int i = 0; i < p.n; i++) {
            p.coords[2 * i] = ((float *)c.data)[2 * i];
            p.coords[2 * i + 1] = ((float *)c.data)[2 * i + 1];
            p.labels[i] = (int)((float *)l.data)[i];
        }
        ms_npy_free(&c);
        ms_npy_free(&l);
    }
    const char *bp = tu_path("golden/minisam/%s/%s.box.npy", img, pr);
    if (file_exists(bp)) {
        ms_npy b = tu_npy(bp);
        for (int i = 0; i < 4; i++) p.box[i] = ((float *)b.data)[i];
        p.has_box = 1;
        ms_npy_free(&b);
    }
    if (!strcmp(pr, "p3_box_mask")) p.mask = tu_npy(tu_path("golden/minisam/%s/p2_points3.low_res_logits.npy", img));
    return p;
}

/* ------------------------------------------------------------------ double-precision references */

static double ref_gelu(double x)
{
    return 0.5 * x * (1.0 + erf(x / sqrt(2.0)));
}

static void ref_ln2d(double *x, const float *w, const float *b, int C, int hw)
{
    for (int p = 0; p < hw; p++) {
        double u = 0, s = 0;
        for (int c = 0; c < C; c++) u += x[c * hw + p];
        u /= C;
        for (int c = 0; c < C; c++) s += (x[c * hw + p] - u) * (x[c * hw + p] - u);
        s /= C;
        for (int c = 0; c < C; c++) x[c * hw + p] = ref_gelu(w[c] * (x[c * hw + p] - u) / sqrt(s + 1e-6) + b[c]);
    }
}

/* mask [256,256] -> dense [256,64,64] following PromptEncoder.mask_downscaling literally */
static void ref_mask_downscaling(float *out, const ms_prompt_encoder *pe, const float *mask)
{
    double *h1 = calloc(4 * 128 * 128, sizeof(double)), *h2 = calloc(16 * 64 * 64, sizeof(double));
    for (int o = 0; o < 4; o++)
        for (int y = 0; y < 128; y++)
            for (int x = 0; x < 128; x++) {
                double s = pe->down0_b[o];
                for (int dy = 0; dy < 2; dy++)
                    for (int dx = 0; dx < 2; dx++) s += (double)pe->down0_w[o * 4 + dy * 2 + dx] * mask[(2 * y + dy) * 256 + 2 * x + dx];
                h1[(o * 128 + y) * 128 + x] = s;
            }
    ref_ln2d(h1, pe->down1_w, pe->down1_b, 4, 128 * 128);
    for (int o = 0; o < 16; o++)
        for (int y = 0; y < 64; y++)
            for (int x = 0; x < 64; x++) {
                double s = pe->down3_b[o];
                for (int c = 0; c < 4; c++)
                    for (int dy = 0; dy < 2; dy++)
                        for (int dx = 0; dx < 2; dx++)
                            s += (double)pe->down3_w[((o * 4 + c) * 2 + dy) * 2 + dx] * h1[(c * 128 + 2 * y + dy) * 128 + 2 * x + dx];
                h2[(o * 64 + y) * 64 + x] = s;
            }
    ref_ln2d(h2, pe->down4_w, pe->down4_b, 16, 64 * 64);
    for (int o = 0; o < 256; o++)
        for (int p = 0; p < 4096; p++) {
            double s = pe->down6_b[o];
            for (int c = 0; c < 16; c++) s += (double)pe->down6_w[o * 16 + c] * h2[c * 4096 + p];
            out[o * 4096 + p] = (float)s;
        }
    free(h1);
    free(h2);
}

/* get_dense_pe literally: ((j+0.5)/64, (i+0.5)/64) -> [sin, cos](2 pi (2c - 1) @ G) */
static void ref_dense_pe(float *out, const float *g)
{
    for (int i = 0; i < 64; i++)
        for (int j = 0; j < 64; j++) {
            double x = 2.0 * (j + 0.5) / 64 - 1, y = 2.0 * (i + 0.5) / 64 - 1;
            for (int k = 0; k < 128; k++) {
                double a = 2 * M_PI * (x * g[k] + y * g[128 + k]);
                out[k * 4096 + i * 64 + j] = (float)sin(a);
                out[(128 + k) * 4096 + i * 64 + j] = (float)cos(a);
            }
        }
}

/* ------------------------------------------------------------------ checks */

static void check_bind_errors(const ms_tensors *full)
{
    ms_tensors ts;
    ms_tensors_init(&ts);
    medseg_error e;
    /* copy every prompt_encoder tensor, giving no_mask_embed a wrong shape and leaving out one */
    for (size_t i = 0; i < full->n; i++) {
        const ms_tensor *t = &full->t[i];
        if (strncmp(t->name, "prompt_encoder.", 15) != 0) continue;
        if (!strcmp(t->name, "prompt_encoder.mask_downscaling.6.bias")) continue;
        int64_t shape[MS_MAX_NDIM];
        memcpy(shape, t->shape, sizeof shape);
        if (!strcmp(t->name, "prompt_encoder.no_mask_embed.weight")) shape[1] = 255;
        CHECK_OK(ms_tensors_add(&ts, t->name, t->dtype, t->ndim, shape, t->data, &e), &e);
    }
    ms_prompt_encoder pe;
    medseg_status st = ms_prompt_encoder_bind(&pe, &ts, &e);
    CHECK(st == MEDSEG_ERR_MODEL && strstr(e.message, "no_mask_embed") && strstr(e.message, "[1,256]"),
          "wrong shape not reported: %s", e.message);
    printf("bad shape   -> %s\n", e.message);
    ms_tensors_remove(&ts, "prompt_encoder.no_mask_embed.weight");
    int64_t good[2] = {1, 256};
    CHECK_OK(ms_tensors_add(&ts, "prompt_encoder.no_mask_embed.weight", MS_F32, 2, good, NULL, &e), &e);
    st = ms_prompt_encoder_bind(&pe, &ts, &e);
    CHECK(st == MEDSEG_ERR_MODEL && strstr(e.message, "missing") && strstr(e.message, "mask_downscaling.6.bias"),
          "missing tensor not reported: %s", e.message);
    printf("missing     -> %s\n", e.message);
    ms_mask_decoder md;
    st = ms_mask_decoder_bind(&md, &ts, &e);
    CHECK(st == MEDSEG_ERR_MODEL && strstr(e.message, "mask_decoder"), "decoder without tensors: %s", e.message);
    printf("no decoder  -> %s\n", e.message);
    ms_tensors_free(&ts);
}

typedef struct {
    const ms_prompt_encoder *pe;
    const ms_mask_decoder *md;
    const float *emb;
    const prompt_in *p;
    float *sparse, *dense, *low_res, *iou;
    ms_pool *pool;
    const ms_md_image_cache *cache; /* used when set and the prompt has no mask input */
    unsigned token_mask;            /* 0: the all-token entry points; else mask_decoder_forward_tokens */
} run_args;

static medseg_status run_prompt(run_args *a, medseg_error *e)
{
    int T = 0;
    const prompt_in *p = a->p;
    medseg_status st = prompt_encoder_forward(a->pe, p->coords, p->labels, p->n, p->has_box ? p->box : NULL,
                                              p->mask.count ? p->mask.data : NULL, a->sparse, &T, a->dense, e);
    if (st) return st;
    if (a->token_mask)
        return mask_decoder_forward_tokens(a->md, a->pool, p->mask.count ? NULL : a->cache, a->emb,
                                           prompt_encoder_dense_pe(a->pe), a->sparse, T, a->dense, a->token_mask,
                                           a->low_res, a->iou, e);
    if (a->cache && !p->mask.count)
        return mask_decoder_forward_cached(a->md, a->pool, a->cache, prompt_encoder_dense_pe(a->pe), a->sparse, T,
                                           a->low_res, a->iou, e);
    return mask_decoder_forward(a->md, a->pool, a->emb, prompt_encoder_dense_pe(a->pe), a->sparse, T, a->dense,
                                a->low_res, a->iou, e);
}

/* one prompt against its golden files; tag names the path in the labels */
static void check_golden(const char *img, const char *pr, const char *tag, const float *sparse, const float *low_res,
                         const float *iou)
{
    char label[160];
    ms_npy gs = tu_npy(tu_path("golden/minisam/%s/%s.sparse_embeddings.npy", img, pr));
    ms_npy g0 = tu_npy(tu_path("golden/minisam/%s/%s.low_res_logits.npy", img, pr));
    ms_npy gm = tu_npy(tu_path("golden/minisam/%s/%s.multi_low_res_logits.npy", img, pr));
    ms_npy gi = tu_npy(tu_path("golden/minisam/%s/%s.iou_pred.npy", img, pr));
    ms_npy gmi = tu_npy(tu_path("golden/minisam/%s/%s.multi_iou_pred.npy", img, pr));
    snprintf(label, sizeof label, "%s/%s%s sparse", img, pr, tag);
    tu_compare(label, sparse, gs.data, gs.count, 1e-5);
    snprintf(label, sizeof label, "%s/%s%s low_res token 0", img, pr, tag);
    tu_compare(label, low_res, g0.data, g0.count, 1e-3);
    snprintf(label, sizeof label, "%s/%s%s low_res tokens 1..3", img, pr, tag);
    tu_compare(label, low_res + 256 * 256, gm.data, gm.count, 1e-3);
    snprintf(label, sizeof label, "%s/%s%s iou token 0", img, pr, tag);
    tu_compare(label, iou, gi.data, 1, 1e-4);
    snprintf(label, sizeof label, "%s/%s%s iou tokens 1..3", img, pr, tag);
    tu_compare(label, iou + 1, gmi.data, 3, 1e-4);
    ms_npy_free(&gs);
    ms_npy_free(&g0);
    ms_npy_free(&gm);
    ms_npy_free(&gi);
    ms_npy_free(&gmi);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(void)
{
    medseg_error e;
    ms_tensors ts;
    const char *mp = model_path();
    if (ms_safetensors_load(mp, &ts, &e) != MEDSEG_OK) {
        fprintf(stderr, "FATAL: %s\n", e.message);
        return 2;
    }
    ms_prompt_encoder pe;
    ms_mask_decoder md;
    CHECK_OK(ms_prompt_encoder_bind(&pe, &ts, &e), &e);
    CHECK_OK(ms_mask_decoder_bind(&md, &ts, &e), &e);
    if (tu_failures) return tu_finish("test_decoder_model");

    check_bind_errors(&ts);

    const size_t HWn = 256 * 64 * 64;
    float *sparse = malloc((MEDSEG_MAX_POINTS + 2) * 256 * sizeof(float));
    float *dense = malloc(HWn * sizeof(float)), *ref = malloc(HWn * sizeof(float));
    float *low_res = malloc(4 * 256 * 256 * sizeof(float)), iou[4];

    /* dense positional encoding */
    ref_dense_pe(ref, pe.gauss);
    tu_compare("dense_pe vs double formula", prompt_encoder_dense_pe(&pe), ref, HWn, 1e-5);

    ms_pool *pool2 = ms_pool_create(2, &e);
    CHECK(pool2 != NULL, "pool: %s", e.message);
    char label[160];
    int T0 = -1;
    for (int i = 0; i < 3; i++) {
        ms_npy emb = tu_npy(tu_path("golden/minisam/%s/embedding.npy", images[i]));
        CHECK(emb.count == HWn, "embedding size %zu", emb.count);
        /* per-image cache for prompts without a mask input (dense = no_mask_embed) */
        int T0c;
        ms_md_image_cache cache;
        CHECK_OK(prompt_encoder_forward(&pe, NULL, NULL, 0, NULL, NULL, sparse, &T0c, dense, &e), &e);
        CHECK_OK(mask_decoder_prepare_image(&md, pool2, emb.data, prompt_encoder_dense_pe(&pe), dense, &cache, &e), &e);
        for (int k = 0; k < 4; k++) {
            prompt_in p = load_prompt(images[i], prompts[k]);
            run_args a = {&pe, &md, emb.data, &p, sparse, dense, low_res, iou, pool2, NULL, 0};
            CHECK_OK(run_prompt(&a, &e), &e);
            check_golden(images[i], prompts[k], "", sparse, low_res, iou);
            if (p.mask.count) {
                ref_mask_downscaling(ref, &pe, p.mask.data);
                snprintf(label, sizeof label, "%s/%s dense (mask input)", images[i], prompts[k]);
                tu_compare(label, dense, ref, HWn, 1e-4);
            }
            /* same answer single-threaded */
            float *lr1 = malloc(4 * 256 * 256 * sizeof(float)), iou1[4];
            run_args a1 = a;
            a1.pool = NULL;
            a1.low_res = lr1;
            a1.iou = iou1;
            CHECK_OK(run_prompt(&a1, &e), &e);
            snprintf(label, sizeof label, "%s/%s 1 thread vs 2 threads", images[i], prompts[k]);
            tu_compare(label, lr1, low_res, 4 * 256 * 256, 1e-4);
            /* cached path: golden, and the uncached result */
            if (!p.mask.count) {
                a1.cache = &cache;
                a1.pool = pool2;
                CHECK_OK(run_prompt(&a1, &e), &e);
                check_golden(images[i], prompts[k], " cached", sparse, lr1, iou1);
                snprintf(label, sizeof label, "%s/%s cached vs uncached", images[i], prompts[k]);
                tu_compare(label, lr1, low_res, 4 * 256 * 256, 1e-4);
            }
            /* the same call again gives the same bits (no dependence on which thread ran what) */
            {
                float *lr2 = malloc(4 * 256 * 256 * sizeof(float)), iou2[4];
                float *lr3 = malloc(4 * 256 * 256 * sizeof(float)), iou3[4];
                run_args a2 = a1;
                a2.pool = pool2;
                a2.low_res = lr2;
                a2.iou = iou2;
                CHECK_OK(run_prompt(&a2, &e), &e);
                run_args a3 = a2;
                a3.low_res = lr3;
                a3.iou = iou3;
                CHECK_OK(run_prompt(&a3, &e), &e);
                snprintf(label, sizeof label, "%s/%s repeated call, 2 threads", images[i], prompts[k]);
                tu_compare(label, lr3, lr2, 4 * 256 * 256, 0.0);
                /* token subsets: the chosen planes equal the full call's, the others are not written */
                for (unsigned tm = 1; tm < 16; tm += 5) {
                    for (size_t j = 0; j < 4 * 256 * 256; j++) lr3[j] = 12345.0f;
                    a3.token_mask = tm;
                    CHECK_OK(run_prompt(&a3, &e), &e);
                    int planes_ok = 1;
                    for (int m = 0; m < 4; m++) {
                        const float *pl = lr3 + (size_t)m * 256 * 256, *want = lr2 + (size_t)m * 256 * 256;
                        for (size_t j = 0; j < 256 * 256; j++)
                            if ((tm >> m & 1) ? pl[j] != want[j] : pl[j] != 12345.0f) planes_ok = 0;
                    }
                    CHECK(planes_ok, "%s/%s token mask 0x%x: planes differ from the full call or were written",
                          images[i], prompts[k], tm);
                    snprintf(label, sizeof label, "%s/%s token mask 0x%x iou", images[i], prompts[k], tm);
                    tu_compare(label, iou3, iou2, 4, 0.0);
                }
                free(lr2);
                free(lr3);
            }
            free(lr1);
            ms_npy_free(&p.mask);
        }
        /* timings on the first image: box prompt and 3 points (print only) */
        if (i == 0) {
            for (int k = 0; k < 4; k += 2) {
                prompt_in p = load_prompt(images[i], prompts[k]);
                double tprep = ms_now_ms();
                ms_md_image_cache c2;
                CHECK_OK(mask_decoder_prepare_image(&md, pool2, emb.data, prompt_encoder_dense_pe(&pe), dense, &c2, &e),
                         &e);
                if (k == 0) printf("timing: mask_decoder_prepare_image, 2 threads: %.2f ms\n", ms_now_ms() - tprep);
                ms_md_image_cache_free(&c2);
                for (int run = 0; run < 4; run++) {
                    int th = 1 + (run & 1), cached = run >= 2;
                    ms_pool *pool = th == 1 ? NULL : pool2;
                    run_args a = {&pe, &md, emb.data, &p, sparse, dense, low_res, iou, pool, cached ? &cache : NULL, 0};
                    double t[20];
                    for (int r = 0; r < 3; r++) run_prompt(&a, &e);
                    for (int r = 0; r < TIMING_REPS; r++) {
                        double t0 = ms_now_ms();
                        run_prompt(&a, &e);
                        t[r] = ms_now_ms() - t0;
                    }
                    qsort(t, TIMING_REPS, sizeof t[0], cmp_double);
                    printf("timing %s: prompt encoder + mask decoder%s, %d thread(s): median of %d %.2f ms (min %.2f)\n",
                           prompts[k], cached ? " (image cache)" : "", th, TIMING_REPS,
                           0.5 * (t[(TIMING_REPS - 1) / 2] + t[TIMING_REPS / 2]), t[0]);
                }
                ms_npy_free(&p.mask);
            }
        }
        ms_md_image_cache_free(&cache);
        ms_npy_free(&emb);
    }

    /* no prompt at all (no points, no box, no mask): 5 tokens only, outputs defined */
    {
        ms_npy emb = tu_npy(tu_path("golden/minisam/%s/embedding.npy", images[0]));
        CHECK_OK(prompt_encoder_forward(&pe, NULL, NULL, 0, NULL, NULL, sparse, &T0, dense, &e), &e);
        CHECK(T0 == 0, "empty prompt gave %d sparse tokens", T0);
        CHECK_OK(mask_decoder_forward(&md, pool2, emb.data, prompt_encoder_dense_pe(&pe), sparse, 0, dense, low_res,
                                      iou, &e),
                 &e);
        int finite = 1;
        for (size_t j = 0; j < 4 * 256 * 256; j++) finite &= isfinite(low_res[j]) != 0;
        CHECK(finite && isfinite(iou[0]), "empty prompt gave non-finite output");
        ms_npy_free(&emb);
    }

    /* argument errors */
    int T;
    float bad[2] = {NAN, 3};
    int lab = 1;
    CHECK(prompt_encoder_forward(&pe, bad, &lab, 1, NULL, NULL, sparse, &T, dense, &e) == MEDSEG_ERR_ARG,
          "NaN point accepted");
    lab = 7;
    bad[0] = 1;
    CHECK(prompt_encoder_forward(&pe, bad, &lab, 1, NULL, NULL, sparse, &T, dense, &e) == MEDSEG_ERR_ARG,
          "label 7 accepted");
    CHECK(mask_decoder_forward(&md, NULL, dense, dense, sparse, -1, dense, low_res, iou, &e) == MEDSEG_ERR_ARG,
          "negative token count accepted");

    ms_pool_free(pool2);
    free(sparse);
    free(dense);
    free(ref);
    free(low_res);
    ms_prompt_encoder_release(&pe);
    ms_mask_decoder_release(&md);
    ms_tensors_free(&ts);
    return tu_finish("test_decoder_model");
}
