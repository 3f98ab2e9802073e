/* SVG line charts for medseg eval (plot_svg.h). */
#include "workflow/plot_svg.h"

#include <math.h>
#include <string.h>

/* Colour-blind-safe palette (Okabe & Ito, 2008). */
static const char *const palette[] = {"#0072B2", "#D55E00", "#009E73", "#CC79A7",
                                      "#E69F00", "#56B4E9", "#000000", "#F0E442"};

static void xml_text(FILE *f, const char *s)
{
    for (; *s; s++) {
        if (*s == '<') fputs("&lt;", f);
        else if (*s == '>') fputs("&gt;", f);
        else if (*s == '&') fputs("&amp;", f);
        else if (*s == '"') fputs("&quot;", f);
        else fputc(*s, f);
    }
}

/* A "nice" tick step (1, 2, 5 x 10^k) giving about `target` ticks over span. */
static double nice_step(double span, int target)
{
    if (!(span > 0)) return 1;
    double raw = span / target, p = pow(10, floor(log10(raw))), m = raw / p;
    return (m < 1.5 ? 1 : m < 3.5 ? 2 : m < 7.5 ? 5 : 10) * p;
}

medseg_status ms_plot_svg_lines(const char *path, const char *title, const char *xlabel, const char *ylabel,
                                const ms_plot_series *series, int n_series, double ymin, double ymax,
                                medseg_error *err)
{
    double xmin = INFINITY, xmax = -INFINITY;
    for (int s = 0; s < n_series; s++)
        for (int i = 0; i < series[s].n; i++) {
            if (series[s].x[i] < xmin) xmin = series[s].x[i];
            if (series[s].x[i] > xmax) xmax = series[s].x[i];
        }
    if (!isfinite(xmin)) xmin = 0, xmax = 1;
    if (xmax <= xmin) xmin -= 0.5, xmax += 0.5;
    if (!(ymax > ymin)) ymin = 0, ymax = 1;

    const int W = 760, H = 460, L = 70, R = 220, T = 50, B = 60; /* canvas and margins */
    const double pw = W - L - R, ph = H - T - B;
#define PX(x) (L + ((x) - xmin) / (xmax - xmin) * pw)
#define PY(y) (T + (ymax - (y)) / (ymax - ymin) * ph)

    ms_atomic_file af;
    medseg_status st = ms_atomic_open(&af, path, err);
    if (st != MEDSEG_OK) return st;
    FILE *f = af.f;
    fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" "
               "font-family=\"Helvetica, Arial, sans-serif\" font-size=\"13\">\n", W, H, W, H);
    fprintf(f, "<rect width=\"%d\" height=\"%d\" fill=\"white\"/>\n", W, H);
    fprintf(f, "<text x=\"%d\" y=\"28\" font-size=\"16\" font-weight=\"bold\">", L);
    xml_text(f, title);
    fprintf(f, "</text>\n");

    /* y grid and ticks */
    double ys = nice_step(ymax - ymin, 6);
    for (double v = ceil(ymin / ys - 1e-9) * ys; v <= ymax + 1e-9 * ys; v += ys) {
        double y = PY(v);
        fprintf(f, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#dddddd\"/>\n", L, y, L + pw, y);
        fprintf(f, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"black\"/>\n", L - 5, y, L, y);
        fprintf(f, "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%.*f</text>\n", L - 8, y + 4,
                ys < 0.1 ? 2 : 1, v);
    }
    /* x ticks: integers when the data are integral */
    double xs = nice_step(xmax - xmin, 8);
    if (xs < 1) xs = 1;
    for (double v = ceil(xmin / xs - 1e-9) * xs; v <= xmax + 1e-9; v += xs) {
        double x = PX(v);
        fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"black\"/>\n", x, T + ph, x,
                T + ph + 5);
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%g</text>\n", x, T + ph + 20,
                fabs(v) < 1e-9 ? 0.0 : v);
    }
    /* axes and labels */
    fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"%.0f\" height=\"%.0f\" fill=\"none\" stroke=\"black\"/>\n", L, T, pw,
            ph);
    fprintf(f, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">", L + pw / 2, H - 15);
    xml_text(f, xlabel);
    fprintf(f, "</text>\n<text transform=\"translate(20,%.1f) rotate(-90)\" text-anchor=\"middle\">", T + ph / 2);
    xml_text(f, ylabel);
    fprintf(f, "</text>\n");

    /* series and legend */
    for (int s = 0; s < n_series; s++) {
        const ms_plot_series *se = &series[s];
        int ci = se->color >= 0 ? se->color : s;
        const char *col = palette[ci % (int)(sizeof palette / sizeof *palette)];
        const char *dash = se->dashed == 1 ? " stroke-dasharray=\"7,4\"" : se->dashed == 2 ? " stroke-dasharray=\"2,3\"" : "";
        fprintf(f, "<g stroke=\"%s\" fill=\"%s\">\n<polyline fill=\"none\" stroke-width=\"2\"%s points=\"", col, col,
                dash);
        for (int i = 0; i < se->n; i++)
            if (isfinite(se->y[i])) fprintf(f, "%.1f,%.1f ", PX(se->x[i]), PY(se->y[i]));
        fprintf(f, "\"/>\n");
        for (int i = 0; i < se->n; i++)
            if (isfinite(se->y[i]))
                fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\"><title>%g: %.4f</title></circle>\n",
                        PX(se->x[i]), PY(se->y[i]), se->x[i], se->y[i]);
        fprintf(f, "</g>\n");
        double ly = T + 10 + s * 20;
        fprintf(f, "<line x1=\"%.0f\" y1=\"%.1f\" x2=\"%.0f\" y2=\"%.1f\" stroke=\"%s\" stroke-width=\"2\"%s/>\n",
                L + pw + 15, ly, L + pw + 45, ly, col, dash);
        fprintf(f, "<circle cx=\"%.0f\" cy=\"%.1f\" r=\"3\" fill=\"%s\"/>\n", L + pw + 30, ly, col);
        fprintf(f, "<text x=\"%.0f\" y=\"%.1f\">", L + pw + 52, ly + 4);
        xml_text(f, se->name);
        fprintf(f, "</text>\n");
    }
    fprintf(f, "</svg>\n");
#undef PX
#undef PY
    if (ferror(f)) {
        ms_atomic_abort(&af);
        return ms_error(err, MEDSEG_ERR_IO, "%s: write failed", path);
    }
    return ms_atomic_commit(&af, err);
}
