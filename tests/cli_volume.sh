#!/bin/bash
# medseg segment on volumes and medseg embed, end to end and with bad input.
#   bash tests/cli_volume.sh MEDSEG_BIN SHARED MODEL_DIR
# Every failure case must exit non-zero, name the problem, and leave no output file behind.
set -u
BIN=$1
SHARED=$2
export MEDSEG_MODEL_DIR=$3
PY=/usr/bin/python3
T=$(mktemp -d /tmp/medseg-clivol-XXXXXX)
trap 'chmod -R u+w "$T"; rm -rf "$T"' EXIT
fails=0
ok() { echo "ok   $1"; }
bad() { echo "FAIL $1"; fails=$((fails + 1)); }
NPZ=$SHARED/data/medsam2_recist_ct/CT_Lesion_000001_02_01_008-023.npz
MR=$SHARED/data/totalseg/example_mr_sm.nii.gz
C=$T/cache

# expect_fail NAME OUTPUT PATTERN -- ARGS...: non-zero exit, stderr matches PATTERN, OUTPUT absent
expect_fail() {
    local name=$1 out=$2 pat=$3
    shift 4
    "$BIN" "$@" > "$T/stdout" 2> "$T/stderr"
    local rc=$?
    if [ $rc -eq 0 ]; then bad "$name: exit 0"; return; fi
    if ! grep -qiE "$pat" "$T/stderr"; then bad "$name: stderr lacks /$pat/: $(head -c 300 "$T/stderr")"; return; fi
    if [ -n "$out" ] && ls "$out"* > /dev/null 2>&1; then bad "$name: left $(ls "$out"*)"; return; fi
    ok "$name (rc $rc: $(head -c 120 "$T/stderr"))"
}

# --- bad input first (nothing is encoded for these)
expect_fail "box3d outside the volume" "$T/o1.npz" "outside the volume" -- segment "$NPZ" --box3d 100,100,5,600,200,11 -o "$T/o1.npz"
expect_fail "box3d z-range outside" "$T/o2.npz" "outside the volume" -- segment "$NPZ" --box3d 100,100,5,200,200,40 -o "$T/o2.npz"
expect_fail "box3d reversed" "$T/o3.npz" "x0 <= x1" -- segment "$NPZ" --box3d 200,100,5,100,200,11 -o "$T/o3.npz"
expect_fail "box3d malformed" "$T/o4.npz" "expected x0,y0,z0,x1,y1,z1" -- segment "$NPZ" --box3d 1,2,3 -o "$T/o4.npz"
expect_fail "--z-range outside" "$T/o5.npz" "outside the volume" -- segment "$NPZ" --slice 8 --box 200,200,300,300 --z-range 2,99 -o "$T/o5.npz"
expect_fail "--slice outside" "$T/o6.npz" "outside the volume" -- segment "$NPZ" --slice 16 --box 200,200,300,300 -o "$T/o6.npz"
expect_fail "box outside the slice" "$T/o7.npz" "outside the 512x512 slice" -- segment "$NPZ" --slice 8 --box 200,200,700,300 -o "$T/o7.npz"
expect_fail "--box without --slice" "$T/o8.npz" "needs --slice" -- segment "$NPZ" --box 200,200,300,300 -o "$T/o8.npz"
expect_fail "point outside" "$T/o9.npz" "outside" -- segment "$NPZ" --point 10,10,30 -o "$T/o9.npz"
printf '{"objects": [{"label": 1, "box3d": [1,2,3' > "$T/broken.json"
expect_fail "truncated JSON" "$T/o10.npz" "not valid JSON" -- segment "$NPZ" --prompts "$T/broken.json" -o "$T/o10.npz"
echo '{"objects": [{"label": 1, "box3d": [100,100,5,200,200,11]}, {"label": 1, "slice": 8, "box": [1,1,20,20]}]}' > "$T/dup.json"
expect_fail "duplicate label" "$T/o11.npz" "used twice" -- segment "$NPZ" --prompts "$T/dup.json" -o "$T/o11.npz"
echo '{"objects": [{"label": 2, "slice": 8, "box": [1,1,20]}]}' > "$T/short.json"
expect_fail "box of 3 numbers" "$T/o12.npz" "4 numbers" -- segment "$NPZ" --prompts "$T/short.json" -o "$T/o12.npz"
echo '{"objects": [{"label": 3, "box3d": [100,100,5,200,200,99]}]}' > "$T/far.json"
expect_fail "JSON box3d outside" "$T/o13.npz" "outside the volume" -- segment "$NPZ" --prompts "$T/far.json" -o "$T/o13.npz"
echo '{"things": []}' > "$T/noobj.json"
expect_fail "JSON without objects" "$T/o14.npz" "objects" -- segment "$NPZ" --prompts "$T/noobj.json" -o "$T/o14.npz"
expect_fail "output folder missing" "$T/nodir/o.npz" "does not exist" -- segment "$NPZ" --box3d 100,100,5,200,200,11 -o "$T/nodir/o.npz"
mkdir "$T/ro" && chmod a-w "$T/ro"
if [ "$(id -u)" != 0 ]; then
    expect_fail "unwritable output folder" "$T/ro/o.npz" "not writable" -- segment "$NPZ" --box3d 100,100,5,200,200,11 -o "$T/ro/o.npz"
fi
mkdir "$T/adir.npz"
expect_fail "output is a folder" "" "is a folder" -- segment "$NPZ" --box3d 100,100,5,200,200,11 -o "$T/adir.npz"
expect_fail "unknown output extension" "$T/o15.xyz" "extension" -- segment "$NPZ" --box3d 100,100,5,200,200,11 -o "$T/o15.xyz"
head -c 3000 "$NPZ" > "$T/trunc.npz"
expect_fail "truncated volume" "$T/o16.npz" "trunc|corrupt|zip|npz" -- segment "$T/trunc.npz" --box3d 100,100,5,200,200,11 -o "$T/o16.npz"
expect_fail "bad intensity preset" "$T/o17.npz" "intensity preset" -- segment "$NPZ" --box3d 100,100,5,200,200,11 --intensity foo -o "$T/o17.npz"
expect_fail "embed without --cache" "" "no cache folder" -- embed "$NPZ"
expect_fail "embed --slices outside" "" "outside the volume" -- embed "$NPZ" --cache "$C" --slices 3,99

# --- end to end: embed three slices of the MR volume, then segment with the warm cache
if "$BIN" embed "$MR" --cache "$C" --slices 9,11 --json > "$T/embed.json" 2> "$T/stderr" &&
    grep -q '"encoded": 3' "$T/embed.json"; then ok "embed 3 slices"; else bad "embed: $(cat "$T/embed.json" "$T/stderr")"; fi
if "$BIN" embed "$MR" --cache "$C" --slices 9,11 --json > "$T/embed2.json" 2> /dev/null &&
    grep -q '"encoded": 0, "already_cached": 3' "$T/embed2.json"; then ok "embed again: all cached"; else bad "embed again: $(cat "$T/embed2.json")"; fi
# two objects (kidneys of example_seg_mr) from a prompts file, z limited to the cached slices
cat > "$T/two.json" << 'EOF'
{"objects": [{"label": 2, "slice": 10, "box": [32, 55, 43, 66], "z_range": [9, 11]},
             {"label": 7, "slice": 10, "box": [57, 32, 81, 48], "points": [[69, 39, 10, 1]], "z_range": [9, 11],
              "propagation": "points"}]}
EOF
mkdir "$T/png"
if "$BIN" segment "$MR" --prompts "$T/two.json" -o "$T/two.nii.gz" --cache "$C" --png-dir "$T/png" --json > "$T/two.out" 2> "$T/stderr" &&
    grep -q '"slices_encoded": 0' "$T/two.out"; then ok "segment with a warm cache runs no encoder"; else bad "warm segment: $(cat "$T/two.out" "$T/stderr")"; fi
"$PY" - "$MR" "$T/two.nii.gz" "$T/two.out" "$T/png" << 'EOF' && ok "label map: geometry, labels, z-range, stats, PNGs" || bad "label map check"
import json, os, sys
import nibabel as nib, numpy as np
img, lab, out, png = sys.argv[1:5]
a, b = nib.load(img), nib.load(lab)
assert a.shape == b.shape, (a.shape, b.shape)
assert np.allclose(a.affine, b.affine, atol=1e-5), (a.affine, b.affine)
d = np.asanyarray(b.dataobj)
vals = set(np.unique(d).tolist())
assert vals == {0, 2, 7}, vals
zs = np.where(d.any(axis=(0, 1)))[0]
assert zs.min() >= 9 and zs.max() <= 11, zs
s = json.load(open(out))
o = {x["label"]: x for x in s["objects"]}
assert o[2]["voxels"] == int((d == 2).sum()), (o[2], int((d == 2).sum()))
ml = (d == 2).sum() * np.prod(a.header.get_zooms()[:3]) / 1000
assert abs(o[2]["volume_ml"] - ml) < 1e-3, (o[2]["volume_ml"], ml)
assert len([f for f in os.listdir(png) if f.endswith(".png")]) == a.shape[2]
EOF
# the challenge form on the npz: segs (D,H,W), same shape as imgs, nothing outside z0..z1
if "$BIN" segment "$NPZ" --box3d 265,231,8,326,283,8 -o "$T/c.npz" > /dev/null 2> "$T/stderr" &&
    "$PY" -c "
import numpy as np, sys
s = np.load('$T/c.npz')['segs']; i = np.load('$NPZ')['imgs']
assert s.shape == i.shape, (s.shape, i.shape)
assert s[8].any() and not s[:8].any() and not s[9:].any()
"; then ok "npz output key segs (D,H,W), single-slice box3d"; else bad "npz output: $(cat "$T/stderr")"; fi
left=$(find "$T" -name '*.tmp.*' | head -3)
[ -z "$left" ] && ok "no temporary files left" || bad "temporary files left: $left"

echo "cli_volume: $fails failure(s)"
[ $fails -eq 0 ]
