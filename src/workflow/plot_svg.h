/* Hand-written SVG line charts (no dependency): axes with ticks and labels, one polyline with
 * markers per series, a legend. Used by medseg eval for mean Dice against correction iteration. */
#ifndef MS_PLOT_SVG_H
#define MS_PLOT_SVG_H

#include "core/common.h"

typedef struct {
    const char *name;  /* legend text */
    int n;             /* points */
    const double *x;   /* [n] */
    const double *y;   /* [n]; NaN points are skipped */
    int dashed;        /* 0 solid, 1 dashed, 2 dotted */
    int color;         /* palette index (0..7); < 0: the series' own index */
} ms_plot_series;

/* Writes the chart atomically. The y range is [ymin, ymax]; the x range covers every x (integer
 * ticks when all x are integers). */
medseg_status ms_plot_svg_lines(const char *path, const char *title, const char *xlabel, const char *ylabel,
                                const ms_plot_series *series, int n_series, double ymin, double ymax,
                                medseg_error *err);

#endif
