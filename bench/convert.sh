#!/usr/bin/env bash
# bench/convert.sh -- `medseg convert` vs `dcm2niix -z y` on the same DICOM series, in one run.
#
#   bash bench/convert.sh [BUILD_DIR] [SERIES_DIR]
#
# Default series: ../shared/data/totalseg/example_ct_dicom (20 slices 512x512, JPEG 2000 lossless).
# Both tools read every file of the folder and write one gzip-compressed NIfTI (.nii.gz). Runs
# alternate (medseg, dcm2niix, medseg, ...) so that machine load hits both alike; RUNS (default 7,
# at least 5) timed runs each after one untimed warm-up each. Prints every time, the medians and
# the ratio medseg/dcm2niix (target <= 1.0), for wall time and for CPU time (user + sys: the
# steadier number on a loaded machine; medseg decodes slices on several threads, so its CPU time
# can exceed its wall time). Also prints the output sizes (the gzip level differs
# between the tools: compare sizes when comparing times). A measurement, not a test: never fails
# on time; exits non-zero only if a tool could not run.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"
build="${1:-$repo/build}"
shared="${MEDSEG_SHARED:-$repo/../shared}"
series="${2:-$shared/data/totalseg/example_ct_dicom}"
runs="${RUNS:-7}"
medseg="$build/medseg"

die() { echo "bench/convert.sh: $*" >&2; exit 1; }
[ -x "$medseg" ] || die "no medseg binary at $medseg (build first)"
command -v dcm2niix >/dev/null || die "dcm2niix not found (Debian package dcm2niix)"
[ -d "$series" ] || die "no series folder at $series (set MEDSEG_SHARED)"
[ "$runs" -ge 5 ] || die "RUNS must be >= 5"

work=$(mktemp -d "${TMPDIR:-/tmp}/bench_convert.XXXXXX")
trap 'rm -rf "$work"' EXIT

now_ns() { date +%s%N; }

run_medseg() {
    rm -f "$work/medseg.nii.gz"
    "$medseg" convert "$series" "$work/medseg.nii.gz" --quiet
}
run_dcm2niix() {
    rm -rf "$work/d2n"
    mkdir -p "$work/d2n"
    dcm2niix -z y -f ref -o "$work/d2n" "$series" >/dev/null
}

run_medseg || die "medseg convert failed"
run_dcm2niix || die "dcm2niix failed"

# one timed run: wall, user+sys CPU (ms) appended to the named arrays
TIMEFORMAT='%R %U %S'
timed() { # timed ARRAY_WALL ARRAY_CPU CMD...
    local -n w=$1 c=$2
    shift 2
    local t
    t=$( { time "$@" >/dev/null 2>&1; } 2>&1 | tail -1)
    read -r real user sys <<<"$t"
    w+=("$(echo "$real * 1000" | bc -l)")
    c+=("$(echo "($user + $sys) * 1000" | bc -l)")
}

declare -a mw mc dw dc
for ((r = 0; r < runs; r++)); do
    timed mw mc run_medseg
    timed dw dc run_dcm2niix
done

median() { printf '%s\n' "$@" | sort -g | awk '{a[NR] = $1} END {if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }
fmt_list() { for t in "$@"; do printf '%.0f ' "$t"; done; }
mmw=$(median "${mw[@]}"); mmc=$(median "${mc[@]}")
mdw=$(median "${dw[@]}"); mdc=$(median "${dc[@]}")
nfiles=$(find "$series" -maxdepth 1 -type f | wc -l)
echo "series: $series ($nfiles files)"
echo "runs:   $runs each, alternating, after one warm-up each; load average: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "medseg convert   wall ms: $(fmt_list "${mw[@]}")  cpu ms: $(fmt_list "${mc[@]}")"
echo "dcm2niix -z y    wall ms: $(fmt_list "${dw[@]}")  cpu ms: $(fmt_list "${dc[@]}")"
printf 'median medseg    wall %.0f ms, cpu %.0f ms   (output %s bytes)\n' "$mmw" "$mmc" "$(stat -c %s "$work/medseg.nii.gz")"
printf 'median dcm2niix  wall %.0f ms, cpu %.0f ms   (output %s bytes)\n' "$mdw" "$mdc" "$(stat -c %s "$work/d2n/ref.nii.gz")"
printf 'ratio medseg/dcm2niix: wall %.2fx, cpu %.2fx (target <= 1.0x wall)\n' "$(echo "$mmw / $mdw" | bc -l)" "$(echo "$mmc / $mdc" | bc -l)"
