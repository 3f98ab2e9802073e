/* libFuzzer harness: the volume readers of src/io -- NIfTI-1/2 (.nii, .nii.gz), NRRD and the
 * challenge .npz (imgs, gts and boxes) -- through a scratch file: npz and NRRD by their magic,
 * everything else through medseg_volume_load's content dispatch (gzip sniffing, NIfTI-1/2; DICOM
 * and 2D images also get there, but have their own harnesses). Every volume
 * that loads is read in full (medseg_volume_value over all values) so ASan checks its size. */
#include "fuzz_util.h"
#include "io/volume_extra.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void ms_fuzz_volume_touch(medseg_volume *v)
{
    size_t n = ms_volume_count(v);
    volatile double acc = 0;
    for (size_t i = 0; i < n; i++) acc += medseg_volume_value(v, i);
    (void)acc;
    medseg_volume_free(v);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > MS_FUZZ_MAX_INPUT) return 0;
    const char *path = ms_fuzz_file(data, size);
    if (!path) return 0;
    medseg_volume v;
    medseg_error err;
    if (size >= 4 && memcmp(data, "PK\3\4", 4) == 0) {
        if (ms_npz_read_volume(path, "imgs", &v, &err) == MEDSEG_OK) ms_fuzz_volume_touch(&v);
        if (ms_npz_read_volume(path, "gts", &v, &err) == MEDSEG_OK) ms_fuzz_volume_touch(&v);
        double *boxes = NULL;
        int n = 0, nc = 0;
        if (ms_npz_read_boxes(path, &boxes, &n, &nc, &err) == MEDSEG_OK) {
            volatile double acc = 0;
            for (int i = 0; i < n * nc; i++) acc += boxes[i];
            (void)acc;
            free(boxes);
        }
        return 0;
    }
    medseg_status st;
    if (size >= 7 && memcmp(data, "NRRD000", 7) == 0) st = ms_nrrd_read(path, &v, &err);
    else st = medseg_volume_load(path, &v, &err); /* NIfTI (plain or gzip) or anything else: the content dispatch */
    if (st == MEDSEG_OK) ms_fuzz_volume_touch(&v);
    return 0;
}
