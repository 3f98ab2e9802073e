/* Replays the stored fuzzing corpus (tests/fuzz/corpus/<target>/) through the libFuzzer harnesses
 * (tests/fuzz/fuzz_<target>.c, compiled in here under other names, without libFuzzer), then a fixed
 * set of deterministic mutations of every stored file: bit flips, byte overwrites with boundary
 * values, truncations, insertions, deletions and duplicated chunks. Whatever fuzzing once found
 * stays in the corpus, so every test run re-checks it (SQLite's fuzzcheck idea).
 *
 * The test fails if the corpus is missing, if a harness crashes (the signal handler names the input
 * being run), if an input runs longer than MS_REPLAY_ALARM_S seconds, or, in the ASan/UBSan build,
 * on any memory error, undefined behaviour or leak.
 *
 * Environment: MEDSEG_FUZZ_MUTATIONS=N overrides the number of mutations per corpus file
 * (0: replay the stored files only); MEDSEG_FUZZ_TARGET=name replays one target. */
#include "testutil.h"

#include <dirent.h>
#include <signal.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define LLVMFuzzerTestOneInput ms_fuzz_one_image
#include "fuzz/fuzz_image.c"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput ms_fuzz_one_npy
#include "fuzz/fuzz_npy.c"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput ms_fuzz_one_safetensors
#include "fuzz/fuzz_safetensors.c"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput ms_fuzz_one_pickle
#include "fuzz/fuzz_pickle.c"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput ms_fuzz_one_pth
#include "fuzz/fuzz_pth.c"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput ms_fuzz_one_onnx
#include "fuzz/fuzz_onnx.c"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput ms_fuzz_one_npm_tarball
#include "fuzz/fuzz_npm_tarball.c"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput ms_fuzz_one_volume
#include "fuzz/fuzz_volume.c"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput ms_fuzz_one_dicom
#include "fuzz/fuzz_dicom.c"
#undef LLVMFuzzerTestOneInput

#ifndef MEDSEG_SOURCE_DIR
#error "MEDSEG_SOURCE_DIR must name the source tree (tests/tests.cmake defines it)"
#endif

#define MS_REPLAY_ALARM_S 30 /* one input running longer than this is a hang */
#define MS_REPLAY_MAX_FILES 4096

typedef struct {
    const char *name;
    int (*run)(const uint8_t *data, size_t size);
    long per_file; /* mutants of each corpus file ... */
    long budget;   /* ... but at most this many mutants for the whole target (the file-based
                      targets are slower per execution, and the fuzzed corpus keeps growing) */
} replay_target;

static const replay_target k_targets[] = {
    {"image", ms_fuzz_one_image, 2000, 60000},
    {"npy", ms_fuzz_one_npy, 3000, 120000},
    {"safetensors", ms_fuzz_one_safetensors, 2000, 40000},
    {"pickle", ms_fuzz_one_pickle, 2000, 60000},
    {"pth", ms_fuzz_one_pth, 1000, 8000},
    {"onnx", ms_fuzz_one_onnx, 1500, 15000},
    {"npm_tarball", ms_fuzz_one_npm_tarball, 600, 3000},
    {"volume", ms_fuzz_one_volume, 300, 6000},
    {"dicom", ms_fuzz_one_dicom, 300, 8000},
};

/* ---- what is running now, for the crash and hang handlers ---- */

static char g_current[4800];

static void replay_signal(int sig)
{
    const char *what = sig == SIGALRM ? "HANG (over the per-input time limit)" : "CRASH (fatal signal)";
    ssize_t r = write(2, "\ntest_fuzz_replay: ", 19);
    r = write(2, what, strlen(what));
    r = write(2, " while running ", 15);
    r = write(2, g_current, strlen(g_current));
    r = write(2, "\n", 1);
    (void)r;
    signal(sig, SIG_DFL);
    raise(sig);
}

/* ---- deterministic mutations ---- */

static uint64_t rng_next(uint64_t *s)
{
    /* splitmix64 */
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static uint64_t rng_below(uint64_t *s, uint64_t n)
{
    return n ? rng_next(s) % n : 0;
}

static uint64_t fnv1a(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 0x100000001b3ull;
    return h;
}

/* Applies 1..3 stacked mutations of src into dst (capacity cap >= len + 64); returns the length. */
static size_t mutate(uint8_t *dst, size_t cap, const uint8_t *src, size_t len, uint64_t *s)
{
    static const uint64_t interesting[] = {0, 1, 0x7f, 0x80, 0xff, 0x7fff, 0x8000, 0xffff, 0x7fffffff, 0x80000000u,
                                           0xffffffffu, 0x7fffffffffffffffull, 0x8000000000000000ull, ~0ull};
    memcpy(dst, src, len);
    size_t n = len;
    int k = 1 + (int)rng_below(s, 3);
    for (int m = 0; m < k; m++) {
        switch (rng_below(s, 7)) {
        case 0: /* flip 1..4 bits */
            if (n)
                for (int b = 1 + (int)rng_below(s, 4); b > 0; b--) {
                    size_t i = (size_t)rng_below(s, n);
                    dst[i] ^= (uint8_t)(1u << rng_below(s, 8));
                }
            break;
        case 1: /* overwrite 1..4 bytes with random values */
            if (n)
                for (int b = 1 + (int)rng_below(s, 4); b > 0; b--) dst[rng_below(s, n)] = (uint8_t)rng_next(s);
            break;
        case 2: { /* boundary value, 1/2/4/8 bytes little- or big-endian */
            size_t w = (size_t)1 << rng_below(s, 4);
            if (n < w) break;
            size_t i = (size_t)rng_below(s, n - w + 1);
            uint64_t v = interesting[rng_below(s, sizeof interesting / sizeof *interesting)];
            int be = (int)rng_below(s, 2);
            for (size_t b = 0; b < w; b++) dst[i + (be ? w - 1 - b : b)] = (uint8_t)(v >> (8 * b));
            break;
        }
        case 3: /* truncate */
            n = (size_t)rng_below(s, n + 1);
            break;
        case 4: { /* insert 1..16 random bytes */
            size_t c = 1 + (size_t)rng_below(s, 16);
            if (n + c > cap) break;
            size_t i = (size_t)rng_below(s, n + 1);
            memmove(dst + i + c, dst + i, n - i);
            for (size_t b = 0; b < c; b++) dst[i + b] = (uint8_t)rng_next(s);
            n += c;
            break;
        }
        case 5: { /* delete a range of 1..64 bytes */
            if (!n) break;
            size_t i = (size_t)rng_below(s, n);
            size_t c = 1 + (size_t)rng_below(s, 64);
            if (c > n - i) c = n - i;
            memmove(dst + i, dst + i + c, n - i - c);
            n -= c;
            break;
        }
        default: { /* copy a chunk of up to 64 bytes over another place */
            if (n < 2) break;
            size_t c = 1 + (size_t)rng_below(s, n < 64 ? n - 1 : 64);
            size_t from = (size_t)rng_below(s, n - c + 1), to = (size_t)rng_below(s, n - c + 1);
            memmove(dst + to, dst + from, c);
            break;
        }
        }
    }
    return n;
}

/* ---- corpus ---- */

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorted regular file names of dir (malloc'd array of malloc'd strings); -1 if dir is unreadable. */
static int list_files(const char *dir, char ***names)
{
    *names = NULL;
    DIR *d = opendir(dir);
    if (!d) return -1;
    char **v = calloc(MS_REPLAY_MAX_FILES, sizeof *v);
    int n = 0;
    struct dirent *e;
    while (v && (e = readdir(d)) && n < MS_REPLAY_MAX_FILES) {
        if (e->d_name[0] == '.') continue;
        char p[4400];
        struct stat sb;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        if (stat(p, &sb) != 0 || !S_ISREG(sb.st_mode)) continue;
        v[n++] = strdup(e->d_name);
    }
    closedir(d);
    if (!v) return -1;
    qsort(v, (size_t)n, sizeof *v, cmp_str);
    *names = v;
    return n;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

#if defined(__SANITIZE_ADDRESS__)
#define MS_REPLAY_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define MS_REPLAY_ASAN 1
#endif
#endif
#ifdef MS_REPLAY_ASAN
void __sanitizer_set_death_callback(void (*callback)(void));
/* ASan/UBSan print the report; this names the input that caused it. */
static void replay_death(void)
{
    fprintf(stderr, "\ntest_fuzz_replay: sanitizer report while running %s\n", g_current);
}
#endif

/* A stored file must run in this many seconds: the corpus holds the inputs that once made a parser
 * spin or balloon ("timeout-*" files), and a regression of their fix must fail the test, not just
 * slow it down. Mutants only have the hang limit (MS_REPLAY_ALARM_S). */
#ifdef MS_REPLAY_ASAN
#define MS_REPLAY_STORED_S 15.0
#else
#define MS_REPLAY_STORED_S 5.0
#endif

/* Runs one input from a buffer of exactly its size (as libFuzzer does), so that ASan flags a parser
 * reading even one byte past the end. */
static double run_one(const replay_target *t, const uint8_t *data, size_t size)
{
    uint8_t *exact = malloc(size ? size : 1);
    if (!exact) {
        fprintf(stderr, "test_fuzz_replay: out of memory\n");
        exit(1);
    }
    memcpy(exact, data, size);
    double t0 = now_s();
    alarm(MS_REPLAY_ALARM_S);
    t->run(exact, size);
    alarm(0);
    double dt = now_s() - t0;
    free(exact);
    return dt;
}

int main(void)
{
#ifdef MS_REPLAY_ASAN
    __sanitizer_set_death_callback(replay_death); /* keep the sanitizers' own SEGV reports */
#else
    signal(SIGSEGV, replay_signal);
    signal(SIGBUS, replay_signal);
    signal(SIGFPE, replay_signal);
    signal(SIGILL, replay_signal);
    signal(SIGABRT, replay_signal);
#endif
    signal(SIGALRM, replay_signal);

    const char *only = getenv("MEDSEG_FUZZ_TARGET");
    const char *mut_env = getenv("MEDSEG_FUZZ_MUTATIONS");
    long mut_override = mut_env && *mut_env ? strtol(mut_env, NULL, 10) : -1;

    for (size_t ti = 0; ti < sizeof k_targets / sizeof *k_targets; ti++) {
        const replay_target *t = &k_targets[ti];
        if (only && *only && strcmp(only, t->name) != 0) continue;
        char dir[4096];
        snprintf(dir, sizeof dir, "%s/tests/fuzz/corpus/%s", MEDSEG_SOURCE_DIR, t->name);
        char **names;
        int nf = list_files(dir, &names);
        CHECK(nf > 0, "no corpus files for target %s in %s", t->name, dir);
        if (nf <= 0) {
            free(names);
            continue;
        }
        long muts = t->budget / nf;
        if (muts > t->per_file) muts = t->per_file;
        if (muts < 16) muts = 16;
        if (mut_override >= 0) muts = mut_override;
        double t0 = now_s();
        long execs = 0, total_muts = 0;
        for (int i = 0; i < nf; i++) {
            char path[4400];
            snprintf(path, sizeof path, "%s/%s", dir, names[i]);
            uint8_t *buf = NULL;
            size_t len = 0;
            medseg_error err;
            medseg_status st = ms_read_file(path, MS_FUZZ_MAX_INPUT, &buf, &len, &err);
            CHECK(st == MEDSEG_OK, "%s", err.message);
            if (st) continue;
            snprintf(g_current, sizeof g_current, "%s (stored file)", path);
            double dt1 = run_one(t, buf, len);
            execs++;
            CHECK(dt1 <= MS_REPLAY_STORED_S, "%s took %.1f s (limit %.0f s): a parser spends too long on it", path,
                  dt1, MS_REPLAY_STORED_S);
            /* inputs stored for being slow or for a huge allocation are replayed as they are only: their
               mutants are just as slow (under ASan a multi-GiB allocation costs its shadow memory) */
            long file_muts = strncmp(names[i], "timeout-", 8) == 0 || strncmp(names[i], "oom-", 4) == 0 ? 0 : muts;
            total_muts += file_muts;
            size_t cap = len + 64 * 16 + 64;
            uint8_t *m = malloc(cap);
            CHECK(m != NULL, "out of memory");
            uint64_t seed = fnv1a(t->name) ^ fnv1a(names[i]);
            for (long k = 0; m && k < file_muts; k++) {
                uint64_t s = seed + (uint64_t)k * 0x632BE59BD9B4E019ull;
                size_t n = mutate(m, cap, buf, len, &s);
                snprintf(g_current, sizeof g_current, "%s, mutation %ld (MEDSEG_FUZZ_TARGET=%s)", path, k, t->name);
                run_one(t, m, n);
                execs++;
            }
            free(m);
            free(buf);
        }
        double dt = now_s() - t0;
        printf("%-12s %3d corpus files, %ld mutants (%ld per file), %ld executions in %.1f s\n", t->name, nf,
               total_muts, muts, execs, dt);
        CHECK(execs == nf + total_muts, "%s: %ld of %ld executions ran", t->name, execs, nf + total_muts);
        for (int i = 0; i < nf; i++) free(names[i]);
        free(names);
    }
    return tu_finish("test_fuzz_replay");
}
