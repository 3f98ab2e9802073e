/* medseg eval: runs simulated prompting over the rows of a manifest (the format of
 * ../shared/data/manifest.tsv), scores every prediction (metrics.h) and appends one CSV row per
 * object and iteration, flushed per object, so an interrupted run resumes where it stopped.
 * Embeddings are computed once per image and reused across objects, protocols and iterations.
 * docs/eval.md describes the protocols, the CSV and the summary. */
#ifndef MS_EVAL_H
#define MS_EVAL_H

#include "core/common.h"

#include <stdio.h>

/* Protocols (bit flags: one run may do several, sharing the embeddings). */
enum {
    MS_EVAL_BOX = 1,       /* tight GT box (+ optional jitter); 3D rows: box3d + propagation */
    MS_EVAL_POINT = 2,     /* one positive click (EDT maximum, or uniform) */
    MS_EVAL_ITERATIVE = 4, /* micro-sam: box (or point) then +1 positive +1 negative per iteration */
    MS_EVAL_CLICKS = 8     /* CVPR25: box then one click per iteration at the largest error */
};

enum { MS_EVAL_ROWS_2D = 1, MS_EVAL_ROWS_3D = 2 };

typedef struct {
    const char *manifest;   /* TSV; image/label paths relative to its folder */
    const char *model;      /* model name or .safetensors path (medseg_model_resolve) */
    const char *out_csv;    /* per-object CSV (appended; resumed); NULL: not written */
    const char *plot_svg;   /* mean Dice vs iteration per modality; NULL: none */
    unsigned prompts;       /* MS_EVAL_* flags */
    int iterations;         /* correction iterations after the first prompt; < 0: default
                               (iterative 7, clicks 5) */
    unsigned rows;          /* MS_EVAL_ROWS_* flags */
    uint32_t seed;          /* per-object generators are seeded with seed + manifest row index */
    int jitter;             /* box jitter, px (each side outward by U{0..jitter}) */
    int point_uniform;      /* point protocol: uniform inside the GT instead of the EDT maximum */
    int iterative_start_point; /* iterative: start from the EDT-maximum point (multimask, best IoU) */
    int feed_logits;        /* iterative: previous low-res logits as mask_input */
    int box3d_full;         /* 3D: key-slice box = the 3D box's x/y (CVPR24 `boxes`) instead of the
                               tight GT box on the middle slice */
    int prop_litemedsam;    /* 3D: LiteMedSAM's propagation rule (ms_prop_litemedsam) instead of
                               medseg's measured defaults (ms_prop_default) */
    double nsd_tol_mm;      /* NSD tolerance (default 2 mm; 2D images use 1 mm pixels) */
    int threads;            /* <= 0: all cores */
    int limit;              /* > 0: only the first `limit` matching rows (smoke tests) */
    FILE *log;              /* progress and row errors (stderr); may be NULL */
} ms_eval_options;

ms_eval_options ms_eval_default_options(void);

typedef struct {
    int rows_total;     /* manifest rows selected by `rows` */
    int rows_done;      /* rows evaluated in this run */
    int rows_resumed;   /* rows whose results were already in the CSV */
    int rows_failed;    /* rows that could not be read or run (reported on log) */
    int rows_skipped;   /* rows whose dim no selected protocol supports */
    int images_encoded; /* encoder runs (2D images and 3D slices) */
    double wall_s, encode_s, decode_s; /* 2D: encoder and decoder time */
    double propagate_s;                /* 3D: propagation time, slice encoding included */
} ms_eval_stats;

/* Runs the evaluation, writes the CSV and the plot, prints the summary table on out (stdout).
 * Returns an error only for problems with the run as a whole (manifest, model, CSV); row problems
 * are counted in stats->rows_failed. */
medseg_status ms_eval_run(const ms_eval_options *o, ms_eval_stats *stats, FILE *out, medseg_error *err);

#endif
