/* libFuzzer harness: the torch.save zip importer (ms_import_pth: libzip + data.pkl + storages),
 * through the process's scratch file. */
#include "fuzz_util.h"
#include "weights/import.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > MS_FUZZ_MAX_INPUT) return 0;
    const char *path = ms_fuzz_file(data, size);
    if (!path) return 0;
    ms_tensors ts;
    medseg_error err;
    ms_tensors_init(&ts);
    if (ms_import_pth(path, &ts, &err) == MEDSEG_OK) {
        volatile uint8_t acc = 0;
        for (size_t i = 0; i < ts.n; i++)
            for (size_t b = 0; b < ts.t[i].nbytes; b++) acc ^= ((const uint8_t *)ts.t[i].data)[b];
        (void)acc;
    }
    ms_tensors_free(&ts);
    return 0;
}
