/* libFuzzer harness: the safetensors loader (ms_safetensors_load maps a file, so the input goes
 * through the process's scratch file). */
#include "fuzz_util.h"
#include "weights/tensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > MS_FUZZ_MAX_INPUT) return 0;
    const char *path = ms_fuzz_file(data, size);
    if (!path) return 0;
    ms_tensors ts;
    medseg_error err;
    ms_tensors_init(&ts);
    if (ms_safetensors_load(path, &ts, &err) == MEDSEG_OK) {
        /* read every tensor the loader vouched for and every metadata string */
        volatile uint8_t acc = 0;
        for (size_t i = 0; i < ts.n; i++) {
            const ms_tensor *t = &ts.t[i];
            acc ^= (uint8_t)strlen(t->name);
            for (size_t b = 0; b < t->nbytes; b++) acc ^= ((const uint8_t *)t->data)[b];
        }
        for (size_t i = 0; i < ts.n_meta; i++) acc ^= (uint8_t)(strlen(ts.meta_key[i]) + strlen(ts.meta_val[i]));
        (void)acc;
        if (ts.n) (void)ms_tensors_find(&ts, ts.t[0].name);
    }
    ms_tensors_free(&ts);
    return 0;
}
