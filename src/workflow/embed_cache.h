/* Per-slice image embeddings on disk, so that repeated segmentations of a volume only run the
 * decoder.
 *
 * Key. An embedding is a pure function of (the model's weights, the 8-bit RGB image the encoder
 * sees). The key of one slice is therefore
 *     sha256("medseg-embed-v1" | model id | width | height | the slice's RGB bytes)
 * where the RGB bytes are the output of the intensity preset (intensity.h) for that slice, so the
 * voxel data and the preset are both in it: another volume, another slice or another preset gives
 * other bytes and a miss; identical inputs share one entry, which is correct since they have the
 * same embedding. Model id = sha256 of the model file: content, not name, so a re-imported or
 * replaced file never serves stale embeddings and two copies of one model share entries. Hashing
 * a large model takes seconds, so the id is memoised in DIR/models.tsv keyed by (absolute path,
 * size, mtime in ns): a file rewritten in place changes its mtime and is hashed again.
 *
 * Layout: DIR/<first 2 hex of key>/<key>.emb, each file written atomically (temporary name then
 * rename), so an interrupted `medseg embed` leaves only complete entries and the next run resumes.
 * File: "MSEMBED1", u32 version 1, u32 width, u32 height, u32 C, u32 HW, 32-byte key,
 * then C*HW*HW float32 little-endian. Everything is checked on read; a bad entry is a miss. */
#ifndef MS_EMBED_CACHE_H
#define MS_EMBED_CACHE_H

#include "core/common.h"

typedef struct ms_embed_cache ms_embed_cache;

/* Opens (creating if needed) the cache folder dir for the model file model_path. */
ms_embed_cache *ms_embed_cache_open(const char *dir, const char *model_path, medseg_error *err);
void ms_embed_cache_close(ms_embed_cache *c);
/* The model id (64 hex digits). */
const char *ms_embed_cache_model_id(const ms_embed_cache *c);

/* Key of one slice image (RGB, 3 channels). */
void ms_embed_cache_key(const ms_embed_cache *c, const medseg_image *img, char hex[65]);
/* 1 if a complete entry exists for key (cheap: size check only). */
int ms_embed_cache_has(const ms_embed_cache *c, const char *key);
/* Reads the entry into emb ([256*64*64] floats). *hit = 0 when absent or invalid (not an error). */
medseg_status ms_embed_cache_get(ms_embed_cache *c, const char *key, int width, int height, float *emb, int *hit,
                                 medseg_error *err);
/* Writes the entry atomically. */
medseg_status ms_embed_cache_put(ms_embed_cache *c, const char *key, int width, int height, const float *emb,
                                 medseg_error *err);

#endif
