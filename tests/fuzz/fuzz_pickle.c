/* libFuzzer harness: the safe pickle subset (ms_pk_parse), and the tensor views it builds
 * (ms_pk_tensor_nbytes / ms_pk_tensor_copy against a zero storage of the declared size). */
#include "fuzz_util.h"
#include "weights/pickle.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Visits the value tree (bounded: the parser caps nesting at MS_PK_MAX_DEPTH) and exercises every
 * tensor view whose storage and output are at most 1 MiB. */
static void fuzz_pickle_visit(const ms_pk_value *v, int level, int *budget)
{
    if (!v || level > MS_PK_MAX_DEPTH + 2 || --*budget < 0) return;
    if (v->kind == MS_PK_TENSOR && v->storage) {
        medseg_error err;
        size_t nb = 0;
        size_t esz = ms_dtype_size(v->dtype);
        if (ms_pk_tensor_nbytes(v, &nb, "fuzz tensor", &err) == MEDSEG_OK && nb <= MS_FUZZ_MAX_INPUT &&
            v->storage->numel >= 0 && esz && (uint64_t)v->storage->numel <= MS_FUZZ_MAX_INPUT / esz) {
            size_t slen = (size_t)v->storage->numel * esz;
            uint8_t *stg = calloc(slen ? slen : 1, 1);
            uint8_t *out = malloc(nb ? nb : 1);
            if (stg && out) {
                (void)ms_pk_tensor_is_whole_storage(v, slen);
                (void)ms_pk_tensor_copy(v, stg, slen, out, nb, "fuzz tensor", &err);
                /* one byte short of the declared storage must still be refused cleanly */
                if (slen) (void)ms_pk_tensor_copy(v, stg, slen - 1, out, nb, "fuzz tensor", &err);
            }
            free(stg);
            free(out);
        }
    }
    if (v->kind == MS_PK_TUPLE || v->kind == MS_PK_LIST || v->kind == MS_PK_DICT)
        for (size_t i = 0; i < v->n; i++) fuzz_pickle_visit(v->items[i], level + 1, budget);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > MS_FUZZ_MAX_INPUT) return 0;
    ms_pk_doc doc;
    medseg_error err;
    memset(&doc, 0, sizeof doc);
    if (ms_pk_parse(data, size, "fuzz.pkl", &doc, &err) == MEDSEG_OK) {
        int budget = 100000;
        fuzz_pickle_visit(doc.root, 0, &budget);
        if (doc.root && doc.root->kind == MS_PK_DICT) {
            (void)ms_pk_dict_get(doc.root, "state_dict");
            (void)ms_pk_dict_get(doc.root, "model");
        }
    }
    ms_pk_doc_free(&doc);
    return 0;
}
