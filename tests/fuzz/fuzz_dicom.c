/* libFuzzer harness: the DICOM reader from memory (ms_dicom_read_memory: Part 10 parser, file
 * meta and dataset walk, sequences, encapsulated fragments, the RLE / JPEG / JPEG-LS / JPEG 2000
 * decoders, frame sorting and geometry), as one file of a series is read. */
#include "fuzz_util.h"
#include "io/dicom.h"
#include "io/volume.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > MS_FUZZ_MAX_INPUT) return 0;
    /* Compressed frames may expand a lot: keep each volume under 32 M values (libFuzzer's
     * default memory limit is 2 GB). */
    ms_dicom_set_value_cap((uint64_t)1 << 25);
    medseg_volume v;
    medseg_error err;
    if (ms_dicom_read_memory(data, size, "fuzz.dcm", &v, &err) == MEDSEG_OK) {
        size_t nb = ms_volume_count(&v) * ms_voxel_type_size(v.dtype);
        volatile uint8_t acc = 0;
        for (size_t i = 0; i < nb; i++) acc ^= ((const uint8_t *)v.data)[i];
        (void)acc;
        medseg_volume_free(&v);
    }
    return 0;
}
