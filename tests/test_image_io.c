/* Image I/O: every .png/.jpg/.bmp under the shared data folder, plus synthetic PNG/BMP/JPEG
 * variants, must decode to exactly what Pillow gives (tests/oracle_decode.py); corrupt and
 * truncated copies must fail cleanly; PNG writers round-trip; the overlay renders. */
#include "testutil.h"
#include "io/png.h"
#include "workflow/overlay.h"
#include "workflow/preprocess.h"

#include <dirent.h>
#include <stdlib.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#ifndef MEDSEG_SOURCE_DIR
#error "MEDSEG_SOURCE_DIR must be defined (CMake passes it to every test)"
#endif

static char tmpdir[256];
static char *files[512];
static int nfiles;

static int is_image_name(const char *n)
{
    const char *d = strrchr(n, '.');
    return d && (!strcasecmp(d, ".png") || !strcasecmp(d, ".jpg") || !strcasecmp(d, ".jpeg") || !strcasecmp(d, ".bmp"));
}

static void collect(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char p[4096];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        struct stat st;
        if (stat(p, &st) != 0) continue;
        if (S_ISDIR(st.st_mode)) collect(p);
        else if (is_image_name(e->d_name) && nfiles < 512) files[nfiles++] = strdup(p);
    }
    closedir(d);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int write_file(const char *path, const uint8_t *buf, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f) return 0;
    int ok = fwrite(buf, 1, n, f) == n;
    return fclose(f) == 0 && ok;
}

static void test_decode_all(void)
{
    int nshared = nfiles;
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s/tests/oracle_decode.py --make %s/synth", MEDSEG_SOURCE_DIR, tmpdir);
    int rc = system(cmd);
    CHECK(rc == 0, "synthetic image generator failed (needs /usr/bin/python3 with numpy and Pillow): %s", cmd);
    char sd[300];
    snprintf(sd, sizeof sd, "%s/synth", tmpdir);
    collect(sd);
    printf("%d image files under the shared data, %d synthetic\n", nshared, nfiles - nshared);
    CHECK(nshared >= 100, "expected the shared data's ~104 images, found %d", nshared);

    /* One oracle run for all files. */
    size_t cap = 1 << 20, len = 0;
    char *big = malloc(cap);
    len += snprintf(big, cap, "/usr/bin/python3 %s/tests/oracle_decode.py", MEDSEG_SOURCE_DIR);
    for (int i = 0; i < nfiles; i++) len += snprintf(big + len, cap - len, " '%s' '%s/ref_%d.npy'", files[i], tmpdir, i);
    rc = system(big);
    free(big);
    if (rc != 0) {
        CHECK(0, "FATAL: the Pillow oracle failed (rc %d); /usr/bin/python3 with numpy and Pillow is required", rc);
        return;
    }
    int nexact = 0;
    for (int i = 0; i < nfiles; i++) {
        medseg_image im;
        medseg_error e;
        medseg_status st = medseg_image_load(files[i], &im, &e);
        CHECK(st == MEDSEG_OK, "%s: %s", files[i], e.message);
        if (st) continue;
        char rp[600], rgbp[600];
        snprintf(rp, sizeof rp, "%s/ref_%d.npy", tmpdir, i);
        snprintf(rgbp, sizeof rgbp, "%s/ref_%d.rgb.npy", tmpdir, i);
        ms_npy ref = tu_npy(rp), refrgb = tu_npy(rgbp);
        int geo = ref.ndim == 3 && ref.shape[0] == im.height && ref.shape[1] == im.width && ref.shape[2] == im.channels;
        CHECK(geo, "%s: got %dx%dx%d, Pillow %lldx%lldx%lld", files[i], im.width, im.height, im.channels,
              (long long)ref.shape[1], (long long)ref.shape[0], (long long)ref.shape[2]);
        size_t nd = 0;
        if (geo)
            for (size_t k = 0; k < ref.count; k++) nd += im.data[k] != ((uint8_t *)ref.data)[k];
        uint8_t *rgb = malloc((size_t)im.width * im.height * 3);
        ms_image_to_rgb(&im, rgb);
        size_t nd_rgb = 0;
        if (refrgb.count == (size_t)im.width * im.height * 3)
            for (size_t k = 0; k < refrgb.count; k++) nd_rgb += rgb[k] != ((uint8_t *)refrgb.data)[k];
        else
            nd_rgb = (size_t)-1;
        CHECK(geo && nd == 0 && nd_rgb == 0, "%s: %zu bytes differ from Pillow, %zu differ from convert('RGB')",
              files[i], nd, nd_rgb);
        if (geo && nd == 0 && nd_rgb == 0) nexact++;
        if (i >= nshared || strstr(files[i], ".jpg"))
            printf("  %-40s %4dx%-4d c=%d  %zu / %zu bytes differ\n", strrchr(files[i], '/') + 1, im.width, im.height,
                   im.channels, nd, nd_rgb);
        free(rgb);
        ms_npy_free(&ref);
        ms_npy_free(&refrgb);
        medseg_image_free(&im);
    }
    printf("%d of %d files decode exactly as Pillow (native channels and convert('RGB'))\n", nexact, nfiles);
}

/* Explicit BMP quirks: the shared 1-bit lesion mask and synthetic top-down files. */
static void test_bmp_quirks(void)
{
    medseg_image a, b;
    medseg_error e;
    CHECK_OK(medseg_image_load(tu_path("data/ph2_dermoscopy/IMD003_lesion.bmp"), &a, &e), &e);
    if (a.data) {
        CHECK(a.channels == 1 && a.width == 765 && a.height == 574, "1-bit BMP geometry %dx%dx%d", a.width, a.height,
              a.channels);
        size_t on = 0, other = 0;
        for (size_t i = 0; i < (size_t)a.width * a.height; i++) on += a.data[i] == 255, other += a.data[i] != 0 && a.data[i] != 255;
        CHECK(on > 0 && other == 0, "1-bit BMP values 0/255 (%zu on, %zu other)", on, other);
        medseg_image_free(&a);
    }
    char p1[600], p2[600];
    snprintf(p1, sizeof p1, "%s/synth/bmp_24bit.bmp", tmpdir);
    snprintf(p2, sizeof p2, "%s/synth/bmp_24bit_topdown.bmp", tmpdir);
    if (medseg_image_load(p1, &a, &e) == MEDSEG_OK) {
        if (medseg_image_load(p2, &b, &e) == MEDSEG_OK) {
            CHECK(a.width == b.width && a.height == b.height && !memcmp(a.data, b.data, (size_t)a.width * a.height * 3),
                  "bottom-up and top-down BMPs of the same pixels differ");
            medseg_image_free(&b);
        } else {
            CHECK(0, "%s", e.message);
        }
        medseg_image_free(&a);
    } else {
        CHECK(0, "%s", e.message);
    }
}

static void expect_fail(const char *path, const char *what)
{
    medseg_image im;
    medseg_error e;
    memset(&e, 0, sizeof e);
    medseg_status st = medseg_image_load(path, &im, &e);
    CHECK(st != MEDSEG_OK, "%s (%s) loaded", path, what);
    CHECK(im.data == NULL, "%s: data left after failure", path);
    CHECK(st == MEDSEG_OK || strstr(e.message, path) != NULL, "%s: error does not name the file: %s", path, e.message);
    if (st != MEDSEG_OK && strstr(what, "verbose")) printf("  %-28s -> %s\n", what, e.message);
}

static void test_corrupt(void)
{
    const char *srcs[] = {tu_path("data/hc18_fetal_us/000_HC.png"),
                          tu_path("data/kvasir_seg_medsam/images/cju17hw9hr9c5098800fu4u8e.jpg"),
                          tu_path("data/ph2_dermoscopy/IMD002.bmp"), tu_path("data/ph2_dermoscopy/IMD003_lesion.bmp")};
    int ntrunc = 0, nflip_ok = 0, nflip = 0;
    for (int s = 0; s < 4; s++) {
        uint8_t *buf;
        size_t len;
        medseg_error e;
        if (ms_read_file(srcs[s], 1 << 28, &buf, &len, &e) != MEDSEG_OK) {
            CHECK(0, "%s", e.message);
            continue;
        }
        const char *ext = strrchr(srcs[s], '.');
        size_t cuts[] = {0, 1, 2, 8, 16, 30, 60, 200, len / 3, len / 2, len - len / 10};
        for (size_t c = 0; c < sizeof cuts / sizeof cuts[0]; c++) {
            char p[600];
            snprintf(p, sizeof p, "%s/trunc_%d_%zu%s", tmpdir, s, cuts[c], ext);
            write_file(p, buf, cuts[c]);
            expect_fail(p, c == 9 ? "truncated (verbose)" : "truncated");
            ntrunc++;
        }
        /* random byte corruption: must never crash; result may be OK or an error */
        uint32_t r = 99 + s;
        for (int k = 0; k < 40; k++) {
            uint8_t *cp = malloc(len);
            memcpy(cp, buf, len);
            for (int j = 0; j < 8; j++) {
                r = r * 1664525u + 1013904223u;
                size_t at = (r >> 4) % (len < 4096 ? len : 4096); /* headers and first data */
                if (k & 1) at = (r >> 4) % len;
                cp[at] ^= (uint8_t)(1 + (r >> 24) % 255);
            }
            char p[600];
            snprintf(p, sizeof p, "%s/flip_%d_%d%s", tmpdir, s, k, ext);
            write_file(p, cp, len);
            medseg_image im;
            medseg_status st = medseg_image_load(p, &im, &e);
            nflip++;
            if (st == MEDSEG_OK) {
                nflip_ok++;
                medseg_image_free(&im);
            } else {
                CHECK(strstr(e.message, p) != NULL, "error does not name the file: %s", e.message);
            }
            free(cp);
        }
        free(buf);
    }
    printf("%d truncated copies rejected; %d corrupted copies: %d still decoded, %d rejected cleanly\n", ntrunc, nflip,
           nflip_ok, nflip - nflip_ok);

    /* not an image, missing file, directory */
    char p[600];
    snprintf(p, sizeof p, "%s/x.bin", tmpdir);
    write_file(p, (const uint8_t *)"hello world, not an image", 25);
    medseg_image im;
    medseg_error e;
    CHECK(medseg_image_load(p, &im, &e) == MEDSEG_ERR_FORMAT, "x.bin");
    CHECK(strstr(e.message, "not a PNG, JPEG or BMP image") != NULL, "x.bin message: %s", e.message);
    printf("  %-28s -> %s\n", "not an image", e.message);
    snprintf(p, sizeof p, "%s/does_not_exist.png", tmpdir);
    CHECK(medseg_image_load(p, &im, &e) == MEDSEG_ERR_IO, "missing file -> IO error");
    CHECK(medseg_image_load(tmpdir, &im, &e) == MEDSEG_ERR_IO, "directory -> IO error");

    /* hostile headers: huge dimensions are refused before allocation */
    /* signature, IHDR 20000x20000 RGB, an empty IDAT, IEND: over the pixel cap */
    uint8_t png_huge[8 + 25 + 12 + 12] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n', 0, 0, 0, 13, 'I', 'H', 'D', 'R',
                                          0, 0, 0x4e, 0x20, 0, 0, 0x4e, 0x20, 8, 2, 0, 0, 0};
    memcpy(png_huge + 33, "\0\0\0\0IDAT", 8);
    memcpy(png_huge + 45, "\0\0\0\0IEND", 8);
    for (int c = 0; c < 3; c++) {
        static const int at[3][2] = {{12, 17}, {37, 4}, {49, 4}}; /* chunk type+data to checksum */
        uLong crc = crc32(0L, png_huge + at[c][0], (uInt)at[c][1]);
        for (int k = 0; k < 4; k++) png_huge[at[c][0] + at[c][1] + k] = (uint8_t)(crc >> (24 - 8 * k));
    }
    snprintf(p, sizeof p, "%s/huge.png", tmpdir);
    write_file(p, png_huge, sizeof png_huge);
    CHECK(medseg_image_load(p, &im, &e) == MEDSEG_ERR_NOMEM && strstr(e.message, "limit"), "huge PNG: %s", e.message);
    expect_fail(p, "PNG 20000x20000 (verbose)");
    /* a real JPEG with its SOF dimensions patched to 40000x40000 */
    {
        uint8_t *jb;
        size_t jl;
        if (ms_read_file(tu_path("data/kvasir_seg_medsam/images/cju17hw9hr9c5098800fu4u8e.jpg"), 1 << 24, &jb, &jl, &e) ==
            MEDSEG_OK) {
            int patched = 0;
            for (size_t k = 2; k + 9 < jl && !patched; k++)
                if (jb[k] == 0xFF && (jb[k + 1] == 0xC0 || jb[k + 1] == 0xC2)) {
                    jb[k + 5] = 0x9c, jb[k + 6] = 0x40, jb[k + 7] = 0x9c, jb[k + 8] = 0x40;
                    patched = 1;
                }
            CHECK(patched, "no SOF marker found");
            snprintf(p, sizeof p, "%s/huge.jpg", tmpdir);
            write_file(p, jb, jl);
            CHECK(medseg_image_load(p, &im, &e) == MEDSEG_ERR_NOMEM && strstr(e.message, "limit"), "huge JPEG: %s",
                  e.message);
            printf("  %-28s -> %s\n", "JPEG 40000x40000", e.message);
            free(jb);
        }
    }
    uint8_t bmp[54 + 16] = {'B', 'M'};
    bmp[10] = 54, bmp[14] = 40;
    int32_t wh[2] = {30000, 30000};
    memcpy(bmp + 18, wh, 8);
    bmp[26] = 1, bmp[28] = 24;
    snprintf(p, sizeof p, "%s/huge.bmp", tmpdir);
    write_file(p, bmp, sizeof bmp);
    expect_fail(p, "BMP 30000x30000 (verbose)");
    /* RLE8 -> unsupported */
    memset(bmp + 18, 0, 36);
    bmp[14] = 40, bmp[18] = 4, bmp[22] = 4, bmp[26] = 1, bmp[28] = 8, bmp[30] = 1;
    snprintf(p, sizeof p, "%s/rle.bmp", tmpdir);
    write_file(p, bmp, sizeof bmp);
    CHECK(medseg_image_load(p, &im, &e) == MEDSEG_ERR_UNSUPPORTED, "RLE BMP -> unsupported: %s", e.message);
    printf("  %-28s -> %s\n", "RLE8 BMP", e.message);
}

static void test_png_roundtrip(void)
{
    int w = 123, h = 45;
    uint8_t *m = malloc((size_t)w * h), *rgb = malloc((size_t)w * h * 3);
    for (int i = 0; i < w * h; i++) m[i] = (uint8_t)((i * 7) % 3 == 0 ? 0 : (i % 5) + 1);
    for (int i = 0; i < w * h * 3; i++) rgb[i] = (uint8_t)(i * 31 + 7);
    char p[600];
    medseg_error e;
    medseg_image im;
    snprintf(p, sizeof p, "%s/mask.png", tmpdir);
    CHECK_OK(ms_png_write_gray8(p, w, h, m, &e), &e);
    if (medseg_image_load(p, &im, &e) == MEDSEG_OK) {
        size_t bad = 0;
        for (int i = 0; i < w * h; i++) bad += im.data[i] != (m[i] ? 255 : 0);
        CHECK(im.channels == 1 && im.width == w && im.height == h && bad == 0, "gray8 round trip (%zu bad)", bad);
        medseg_image_free(&im);
    } else {
        CHECK(0, "%s", e.message);
    }
    snprintf(p, sizeof p, "%s/rgb.png", tmpdir);
    CHECK_OK(ms_png_write_rgb8(p, w, h, rgb, &e), &e);
    if (medseg_image_load(p, &im, &e) == MEDSEG_OK) {
        CHECK(im.channels == 3 && im.width == w && im.height == h && !memcmp(im.data, rgb, (size_t)w * h * 3),
              "rgb8 round trip");
        medseg_image_free(&im);
    } else {
        CHECK(0, "%s", e.message);
    }
    /* atomic: an unwritable destination leaves nothing behind and reports an error */
    snprintf(p, sizeof p, "%s/no_such_dir/mask.png", tmpdir);
    CHECK(ms_png_write_gray8(p, w, h, m, &e) == MEDSEG_ERR_IO, "unwritable path -> IO error");
    CHECK(ms_png_write_gray8(p, 0, h, m, &e) == MEDSEG_ERR_ARG, "zero width -> ARG error");
    free(m), free(rgb);
}

static void test_overlay(void)
{
    medseg_image im;
    medseg_error e;
    if (medseg_image_load(tu_path("data/hc18_fetal_us/000_HC.png"), &im, &e) != MEDSEG_OK) {
        CHECK(0, "%s", e.message);
        return;
    }
    medseg_image gt;
    CHECK_OK(medseg_image_load(tu_path("data/hc18_fetal_us/000_HC_Annotation_label01.png"), &gt, &e), &e);
    if (!gt.data) {
        medseg_image_free(&im);
        return;
    }
    /* fill the annotation ellipse row-wise so the overlay shows a region */
    uint8_t *mask = calloc((size_t)im.width * im.height, 1);
    for (int y = 0; y < gt.height; y++) {
        int x0 = -1, x1 = -1;
        for (int x = 0; x < gt.width; x++)
            if (gt.data[(size_t)y * gt.width * gt.channels + (size_t)x * gt.channels]) {
                if (x0 < 0) x0 = x;
                x1 = x;
            }
        for (int x = x0; x >= 0 && x <= x1; x++) mask[(size_t)y * im.width + x] = 1;
    }
    medseg_prompt pr;
    memset(&pr, 0, sizeof pr);
    pr.has_box = 1;
    pr.box[0] = 180, pr.box[1] = 90, pr.box[2] = 620, pr.box[3] = 460;
    pr.n_points = 2;
    pr.points[0][0] = 400, pr.points[0][1] = 280, pr.labels[0] = 1;
    pr.points[1][0] = 120, pr.points[1][1] = 60, pr.labels[1] = 0;
    char p[600];
    const char *keep = getenv("MEDSEG_OVERLAY_OUT");
    snprintf(p, sizeof p, "%s", keep && *keep ? keep : "");
    if (!p[0]) snprintf(p, sizeof p, "%s/overlay.png", tmpdir);
    CHECK_OK(ms_overlay_write(p, &im, mask, im.width, im.height, &pr, &e), &e);
    medseg_image ov;
    if (medseg_image_load(p, &ov, &e) == MEDSEG_OK) {
        CHECK(ov.channels == 3 && ov.width == im.width && ov.height == im.height, "overlay geometry");
        const uint8_t *c = ov.data + ((size_t)280 * ov.width + 400) * 3;
        CHECK(c[1] > c[0] && c[1] > c[2], "positive click drawn green (%d,%d,%d)", c[0], c[1], c[2]);
        c = ov.data + ((size_t)60 * ov.width + 120) * 3;
        CHECK(c[0] > c[1] && c[0] > c[2], "negative click drawn red (%d,%d,%d)", c[0], c[1], c[2]);
        medseg_image_free(&ov);
    } else {
        CHECK(0, "%s", e.message);
    }
    CHECK(ms_overlay_write(p, &im, mask, im.width + 1, im.height, &pr, &e) == MEDSEG_ERR_ARG, "size mismatch rejected");
    free(mask);
    medseg_image_free(&gt);
    medseg_image_free(&im);
}

int main(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/medseg_test_io_XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 2;
    }
    collect(tu_path("data"));
    qsort(files, (size_t)nfiles, sizeof files[0], cmp_str);
    test_decode_all();
    test_bmp_quirks();
    test_corrupt();
    test_png_roundtrip();
    test_overlay();
    for (int i = 0; i < nfiles; i++) free(files[i]);
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0) fprintf(stderr, "warning: could not remove %s\n", tmpdir);
    return tu_finish("test_image_io");
}
