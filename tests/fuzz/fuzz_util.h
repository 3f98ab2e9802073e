/* Shared helpers of the libFuzzer harnesses (tests/fuzz/fuzz_*.c) and of the replay test
 * (tests/test_fuzz_replay.c), which #includes every harness into one program.
 *
 * Parsers that only read files get their input through a per-process anonymous file: a memfd
 * (Linux) or, failing that, a /tmp file unlinked right after creation. Either way the parser opens
 * it as /proc/self/fd/N, so nothing is left behind and parallel fuzzing jobs never collide. */
#ifndef MS_FUZZ_UTIL_H
#define MS_FUZZ_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/syscall.h>

/* Inputs over this many bytes are refused by every harness (the parsers' own caps are far higher;
 * this keeps each execution short). */
#define MS_FUZZ_MAX_INPUT ((size_t)1 << 20)

/* Writes data to the process's scratch file and returns its path (a static buffer), or NULL. */
static inline const char *ms_fuzz_file(const uint8_t *data, size_t size)
{
    static int fd = -1;
    static char path[64];
    if (fd < 0) {
#ifdef SYS_memfd_create
        fd = (int)syscall(SYS_memfd_create, "medseg-fuzz", 1u /* MFD_CLOEXEC */);
#endif
        if (fd < 0) {
            char tmpl[] = "/tmp/medseg-fuzz-XXXXXX";
            fd = mkstemp(tmpl);
            if (fd < 0) return NULL;
            unlink(tmpl);
        }
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    }
    if (ftruncate(fd, 0) != 0) return NULL;
    size_t done = 0;
    while (done < size) {
        ssize_t w = pwrite(fd, data + done, size - done, (off_t)done);
        if (w <= 0) return NULL;
        done += (size_t)w;
    }
    return path;
}

#endif
