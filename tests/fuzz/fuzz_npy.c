/* libFuzzer harness: the .npy reader (ms_npy_parse, the path npz members take). */
#include "fuzz_util.h"
#include "io/npy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > MS_FUZZ_MAX_INPUT) return 0;
    ms_npy a;
    medseg_error err;
    memset(&a, 0, sizeof a);
    if (ms_npy_parse(data, size, "fuzz.npy", &a, &err) == MEDSEG_OK) {
        size_t nb = a.count * a.elem_size;
        volatile uint8_t acc = 0;
        for (size_t i = 0; i < nb; i++) acc ^= ((const uint8_t *)a.data)[i];
        (void)acc;
        ms_npy_free(&a);
    }
    return 0;
}
