/* Prompt simulation for evaluation: prompts derived from a ground-truth mask (and, for the
 * correction protocols, the previous prediction), seeded and reproducible.
 *
 * Masks are 2D planes [h][w] of 0/1 bytes, x = column, y = row, as the predictor uses them.
 *
 * Protocols (docs/eval.md has the full text):
 *   box        tight GT bounding box [x0, y0, x1, y1], inclusive pixel indices; optionally each side
 *              moved outward by a uniform integer in [0, jitter] (MedSAM's training jitter,
 *              bbox_shift = 20), clipped to the image.
 *   point      one positive click at the maximum of the exact Euclidean distance transform of the
 *              GT padded with a 1-px background border; ties: first in row-major order.
 *   point_uniform  one positive click drawn uniformly from the GT pixels.
 *   cvpr25     one click per iteration at the EDT maximum of the largest error component
 *              (CVPR 2025 interactive challenge, JunMa11/CVPR-MedSegFMCompetition @748e862d,
 *              CVPR25_iter_eval.py: compute_edt / sample_coord).
 *   iterative  micro-sam: one positive click from the false negatives (or the true positives
 *              when there is none), one negative click from the false positives (or, when there is
 *              none, from the GT box grown by 3 px minus the GT, then from the background).
 *              ref: micro_sam/prompt_generators.py IterativePromptGenerator @3acdcd7. */
#ifndef MS_PROMPT_SIM_H
#define MS_PROMPT_SIM_H

#include "core/common.h"

/* MT19937 (Matsumoto & Nishimura), the generator behind numpy's legacy RandomState. */
typedef struct {
    uint32_t mt[624];
    int mti;
} ms_mt19937;

void ms_mt_seed(ms_mt19937 *r, uint32_t seed); /* init_genrand(seed) */
uint32_t ms_mt_u32(ms_mt19937 *r);             /* genrand_int32 */
/* Uniform index in [0, n): numpy's legacy RandomState.choice(n) / randint rule (masked rejection
 * with the smallest mask 2^b - 1 >= n - 1; 0 without a draw when n == 1). n >= 1, n <= 2^32. */
uint64_t ms_mt_choice(ms_mt19937 *r, uint64_t n);

/* Tight bounding box of the set pixels: box = x0, y0, x1, y1 (inclusive). Returns 0 if empty. */
int ms_mask_bbox(const uint8_t *mask, int w, int h, int box[4]);

/* Box jitter: each side moved outward by a uniform integer in [0, jitter], clipped to
 * [0, w-1] x [0, h-1]. jitter <= 0 leaves the box unchanged and draws nothing. */
void ms_box_jitter(int box[4], int jitter, int w, int h, ms_mt19937 *r);

/* Squared EDT of the set pixels of mask, padded with a 1-px background border (the image edge
 * counts as background): out[y*w+x] = squared distance (unit spacing) to the nearest unset pixel,
 * 0 on unset pixels. Exact (integer-valued doubles). */
medseg_status ms_edt_inside_padded(double *out, const uint8_t *mask, int w, int h, medseg_error *err);

/* `point` protocol: EDT maximum of the padded mask, first in row-major order. Returns 0 if the
 * mask is empty (x, y untouched), 1 otherwise, or -1 on allocation failure (err filled). */
int ms_point_edt_max(const uint8_t *mask, int w, int h, int *x, int *y, medseg_error *err);

/* Uniform pixel among the set pixels, row-major list, index by ms_mt_choice. 0 if empty. */
int ms_point_uniform(const uint8_t *mask, int w, int h, ms_mt19937 *r, int *x, int *y);

/* CVPR25 click: from prediction pred and ground truth gt, the click (x, y, label) of the rule
 * (8-connected components of pred xor gt, largest (ties: first in row-major order), its padded
 * EDT maximum candidates in row-major order, index from MT19937 re-seeded with seed (42 in the
 * challenge) and numpy's choice()). Returns 1 with a click, 0 when pred == gt (no click), -1 on
 * allocation failure. */
int ms_click_cvpr25(const uint8_t *pred, const uint8_t *gt, int w, int h, uint32_t seed, int *x, int *y,
                    int *label, medseg_error *err);

/* micro-sam iterative correction: one positive (pos[0], pos[1]) and one negative (neg[0],
 * neg[1]) click, drawn with r (ms_mt_choice over the row-major candidate list). Returns 1 on
 * success, 0 if gt is empty, -1 on allocation failure. */
int ms_clicks_iterative(const uint8_t *pred, const uint8_t *gt, int w, int h, ms_mt19937 *r, int pos[2],
                        int neg[2], medseg_error *err);

#endif
