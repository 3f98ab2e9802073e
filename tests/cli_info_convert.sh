#!/usr/bin/env bash
# `medseg info` and `medseg convert` on every image/volume of ../shared/data, checked against the
# field's reference tools (tests/reference_check.py: nibabel, pydicom+GDCM, dcm2niix, a numpy NRRD
# reader, numpy, Pillow), then bad input: truncated and corrupted copies of the data files and the
# fuzz corpora -> a result or one error line and a non-zero exit; never a crash, hang or partial file.
# usage: bash cli_info_convert.sh MEDSEG_BIN SHARED [MODEL_DIR]
set -u
BIN=${1:?medseg binary}
SHARED=${2:?shared folder}
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PY=/usr/bin/python3
for m in numpy nibabel pydicom gdcm PIL; do
    "$PY" -c "import $m" 2>/dev/null || { echo "FAIL: $PY cannot import $m (Debian python3-nibabel, python3-pydicom, python3-gdcm, python3-pil)"; exit 1; }
done
command -v dcm2niix >/dev/null || { echo "FAIL: dcm2niix not found (Debian package dcm2niix)"; exit 1; }

rc=0
"$PY" "$HERE/reference_check.py" check "$BIN" "$SHARED" || rc=1
corpora=()
for c in "$HERE/fuzz/corpus/volume" "$HERE/fuzz/corpus/dicom"; do
    [ -d "$c" ] && corpora+=(--fuzz-corpus "$c")
done
"$PY" "$HERE/reference_check.py" badinput "$BIN" "$SHARED" "${corpora[@]}" || rc=1
[ $rc -eq 0 ] && echo "cli_info_convert: OK" || echo "cli_info_convert: NOT OK"
exit $rc
